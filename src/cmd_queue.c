/*
 * cmd_queue.c - `mgate queue' and the sendmail(8) command line.
 *
 * Parses the flags real mail programs pass (mailx: -i -t; mutt: -oem
 * -oi -- rcpts, -f, -B8BITMIME, -N, -R; git send-email: -i rcpts),
 * ignores the sendmail options that do not apply, refuses the rest, and
 * hands the message to submit_message().  Exit 0 only when the message
 * is on stable storage; EX_TEMPFAIL tells the caller to keep it.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include "mgate/cmd.h"
#include "mgate/envelope.h"
#include "mgate/log.h"
#include "mgate/spool.h"
#include "mgate/submit.h"

enum qmode { QM_DELIVER, QM_LIST };

struct qargs {
	struct submit_opts	 o;
	enum qmode		 mode;
	int			 foreground_pickup;	/* -odi */
	const char		*config;		/* -C */
};

/* An option's argument: attached (-fADDR) or the next word (-f ADDR). */
static const char *
optarg_of(int argc, char **argv, int *i, const char *attached)
{
	if (*attached)
		return attached;
	if (*i + 1 < argc)
		return argv[++*i];
	return NULL;
}

static int
parse_args(struct cmd_ctx *ctx, int argc, char **argv, struct qargs *q)
{
	const char	*a, *v;
	int		 i, n, only_rcpts = 0;

	if ((q->o.rcpts = calloc((size_t)argc + 1, sizeof(char *))) == NULL)
		return EX_OSERR;
	for (i = 0; i < argc; i++) {
		a = argv[i];
		if (only_rcpts || a[0] != '-' || a[1] == '\0') {
			q->o.rcpts[q->o.nrcpts++] = argv[i];
			continue;
		}
		if (strcmp(a, "--") == 0) {
			only_rcpts = 1;
			continue;
		}
		switch (a[1]) {
		case 't':
			q->o.extract = 1;
			break;
		case 'i':
			q->o.ignore_dots = 1;
			break;
		case 'f':
		case 'r':
			if ((v = optarg_of(argc, argv, &i, a + 2)) == NULL)
				goto missing;
			q->o.sender = v;
			break;
		case 'F':
			if ((v = optarg_of(argc, argv, &i, a + 2)) == NULL)
				goto missing;
			q->o.fullname = v;
			break;
		case 'N':
			if ((v = optarg_of(argc, argv, &i, a + 2)) == NULL)
				goto missing;
			if ((n = mg_notify_parse(v)) < 0) {
				cmd_die_msg(ctx, "-N %s: expected never, or a "
				    "list of success, failure, delay", v);
				return EX_USAGE;
			}
			q->o.notify = (unsigned)n;
			break;
		case 'R':
			if ((v = optarg_of(argc, argv, &i, a + 2)) == NULL)
				goto missing;
			if (!strcasecmp(v, "full"))
				q->o.ret = MG_RET_FULL;
			else if (!strcasecmp(v, "hdrs"))
				q->o.ret = MG_RET_HDRS;
			else {
				cmd_die_msg(ctx, "-R %s: expected full or "
				    "hdrs", v);
				return EX_USAGE;
			}
			break;
		case 'V':
			if ((v = optarg_of(argc, argv, &i, a + 2)) == NULL)
				goto missing;
			if (strlen(v) > 100 || strpbrk(v, " \t\r\n+=") ||
			    *v == '\0') {
				cmd_die_msg(ctx, "-V %s: an envelope ID is 1-100"
				    " printable characters without space, '+'"
				    " or '='", v);
				return EX_USAGE;
			}
			q->o.envid = v;
			break;
		case 'B':
			if ((v = optarg_of(argc, argv, &i, a + 2)) == NULL)
				goto missing;
			if (!strcasecmp(v, "8BITMIME"))
				q->o.body = MG_BODY_8BITMIME;
			else if (!strcasecmp(v, "7BIT"))
				q->o.body = MG_BODY_7BIT;
			else {
				cmd_die_msg(ctx, "-B %s: expected 7BIT or "
				    "8BITMIME", v);
				return EX_USAGE;
			}
			break;
		case 'C':
			if ((v = optarg_of(argc, argv, &i, a + 2)) == NULL)
				goto missing;
			q->config = v;
			break;
		case 'o':
			/* -oi is -i; -odi runs pickup now; the rest (-oem,
			 * -odb, -oQ..., ...) are sendmail tuning that has
			 * no meaning here, ignored as sendmail does. */
			if (strcmp(a, "-oi") == 0)
				q->o.ignore_dots = 1;
			else if (strcmp(a, "-odi") == 0)
				q->foreground_pickup = 1;
			else if (a[2] == '\0' && i + 1 < argc)
				i++;
			break;
		case 'O':
			if (a[2] == '\0' && i + 1 < argc)
				i++;
			break;
		case 'b':
			if (strcmp(a, "-bm") == 0)
				q->mode = QM_DELIVER;
			else if (strcmp(a, "-bp") == 0)
				q->mode = QM_LIST;
			else {
				cmd_die_msg(ctx, "%s: mode not supported (only "
				    "-bm and -bp)", a);
				return EX_USAGE;
			}
			break;
		case 'v':
			ctx->verbose++;
			break;
		case 'L':
		case 'X':
		case 'h':
			/* Sendmail options with an argument that do not
			 * apply: syslog label, traffic log, hop count. */
			if (a[2] == '\0' && i + 1 < argc)
				i++;
			break;
		case 'A':
		case 'U':
		case 'n':
		case 'm':
		case 'q':
		case 'G':
			break;
		default:
			cmd_die_msg(ctx, "unknown option %s (see mgate(8) for "
			    "the sendmail options understood)", a);
			return EX_USAGE;
		}
	}
	return EX_OK;
missing:
	cmd_die_msg(ctx, "option %s needs an argument", argv[i]);
	return EX_USAGE;
}

/*
 * Import the new file right away, without making the caller wait: a
 * detached grandchild runs pickup while the MUA already has its answer.
 */
static void
start_pickup(struct cmd_ctx *ctx, const struct mg_config *cfg, int wait)
{
	struct spool	*sp = NULL;
	char		 err[512];
	size_t		 picked;
	pid_t		 pid;
	int		 fd, status;

	if (!wait) {
		if ((pid = fork()) < 0)
			return;
		if (pid > 0) {
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			return;
		}
		setsid();
		if ((pid = fork()) != 0)
			_exit(0);
		if ((fd = open("/dev/null", O_RDWR)) >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			/* The MUA may read our stderr until EOF. */
			dup2(fd, 2);
			if (fd > 2)
				close(fd);
		}
		mg_log_set_dest(MG_LOG_SYSLOG);
	}
	(void)cmd_run_lock(cfg->spool_directory);
	if (spool_open(cfg->spool_directory, SPOOL_CREATE, &sp, err,
	    sizeof(err)) == MG_OK) {
		spool_pickup(sp, &picked);
		spool_close(sp);
	} else
		mg_warn("pickup: %s", err);
	if (!wait)
		_exit(0);
}

static int
queue_main(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct qargs		 q;
	struct mg_config	*cfg = NULL;
	struct passwd		*pw;
	char			 qid[MG_QID_LEN + 1], err[1024], login[64];
	enum mg_err		 e;
	int			 rc;

	memset(&q, 0, sizeof(q));
	if ((rc = parse_args(ctx, argc, argv, &q)) != EX_OK)
		goto out;
	if (q.config)
		ctx->config_path = q.config;
	if (q.mode == QM_LIST) {
		rc = cmd_list(ctx, 0, NULL);
		goto out;
	}
	if ((cfg = cmd_load_config(ctx)) == NULL) {
		rc = EX_CONFIG;
		goto out;
	}
	q.o.uid = getuid();
	if ((pw = getpwuid(q.o.uid)) != NULL)
		snprintf(login, sizeof(login), "%s", pw->pw_name);
	else
		snprintf(login, sizeof(login), "uid%lu",
		    (unsigned long)q.o.uid);
	q.o.user = login;
	e = submit_message(cfg, &q.o, STDIN_FILENO, qid, err, sizeof(err));
	if (e != MG_OK) {
		rc = mg_err_exit(e);
		cmd_die_msg(ctx, "%s%s", err, rc == EX_TEMPFAIL ?
		    " (temporary: the message was not queued; try again)" :
		    " (the message was not queued)");
		goto out;
	}
	if (q.o.sender)
		mg_info("%s: uid=%lu from=<%s>", qid, (unsigned long)q.o.uid,
		    strcmp(q.o.sender, "<>") == 0 ? "" : q.o.sender);
	else
		mg_info("%s: uid=%lu from=<%s@%s>", qid,
		    (unsigned long)q.o.uid, login, cfg->mydomain);
	if (ctx->verbose)
		fprintf(stderr, "%s: queued as %s\n", ctx->progname, qid);
	if (cfg->pickup_after_queue || q.foreground_pickup)
		start_pickup(ctx, cfg, q.foreground_pickup);
	rc = EX_OK;
out:
	free(q.o.rcpts);
	mg_config_free(cfg);
	return rc;
}

int
cmd_queue(struct cmd_ctx *ctx, int argc, char **argv)
{
	return queue_main(ctx, argc, argv);
}

int
cmd_sendmail(struct cmd_ctx *ctx, int argc, char **argv)
{
	return queue_main(ctx, argc, argv);
}
