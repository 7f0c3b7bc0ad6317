/*
 * cmd_spool.c - commands that look at and manage the queue:
 * pickup, list (mailq, sendmail -bp), cat, hold, release, delete.
 *
 * Output for people is one line per message and one per recipient;
 * `list --json' is for scripts and escapes every string it prints.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "mgate/cmd.h"
#include "mgate/log.h"
#include "mgate/maildrop.h"
#include "mgate/spool.h"

/*
 * Commands that pick up take turns: two pickups (or a pickup and a
 * list) never share the database, so a pickup killed mid-transaction
 * leaves the next one alone with it, and that one recovers.  The lock
 * is held until the process exits.
 */
int
cmd_run_lock(const char *spool)
{
	char	path[4200];
	int	fd;

	if (snprintf(path, sizeof(path), "%s/pickup.run", spool) >=
	    (int)sizeof(path) || (fd = open(path, O_RDWR | O_CREAT |
	    O_CLOEXEC | O_NOFOLLOW, 0600)) < 0)
		return -1;
	while (flock(fd, LOCK_EX) < 0)
		if (errno != EINTR) {
			close(fd);
			return -1;
		}
	return fd;
}

static struct spool *
open_spool(struct cmd_ctx *ctx, struct mg_config **cfgp, int *rc)
{
	struct spool	*sp = NULL;
	char		 err[1024];
	enum mg_err	 e;

	if ((*cfgp = cmd_load_config(ctx)) == NULL) {
		*rc = EX_CONFIG;
		return NULL;
	}
	/* Before the database is open; released at exit. */
	(void)cmd_run_lock((*cfgp)->spool_directory);
	e = spool_open((*cfgp)->spool_directory, SPOOL_CREATE, &sp, err,
	    sizeof(err));
	if (e != MG_OK) {
		cmd_die_msg(ctx, "%s", err);
		*rc = mg_err_exit(e);
		return NULL;
	}
	*rc = EX_OK;
	return sp;
}

int
cmd_init(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mg_config	*cfg = NULL;
	struct spool		*sp;
	int			 rc;

	if (argc > 0) {
		cmd_die_msg(ctx, "usage: mgate init");
		return EX_USAGE;
	}
	if ((sp = open_spool(ctx, &cfg, &rc)) != NULL) {
		printf("spool ready at %s\n", spool_dir(sp));
		spool_close(sp);
	}
	mg_config_free(cfg);
	return rc;
}

int
cmd_pickup(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mg_config	*cfg = NULL;
	struct spool		*sp;
	size_t			 picked = 0;
	enum mg_err		 e;
	int			 rc;

	if (argc > 0) {
		cmd_die_msg(ctx, "usage: mgate pickup");
		return EX_USAGE;
	}
	if ((sp = open_spool(ctx, &cfg, &rc)) == NULL)
		goto out;
	if ((e = spool_pickup(sp, &picked)) != MG_OK) {
		cmd_die_msg(ctx, "pickup stopped: %s (files left in maildrop/ "
		    "are retried next time)", mg_strerror(e));
		rc = mg_err_exit(e);
	}
	if (ctx->verbose)
		fprintf(stderr, "%s: %zu message%s picked up\n", ctx->progname,
		    picked, picked == 1 ? "" : "s");
	spool_close(sp);
out:
	mg_config_free(cfg);
	return rc;
}

struct list_state {
	int		 json;
	size_t		 nmsg;
	size_t		 nrcpt;
	uint64_t	 bytes;
	time_t		 now;
};

static void
json_str(const char *s)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)(s ? s : "");
	    *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	putchar('"');
}

static void
fmt_age(char *buf, size_t len, time_t age)
{
	if (age < 0)
		age = 0;
	if (age < 120)
		snprintf(buf, len, "%lds", (long)age);
	else if (age < 7200)
		snprintf(buf, len, "%ldm", (long)age / 60);
	else if (age < 172800)
		snprintf(buf, len, "%ldh", (long)age / 3600);
	else
		snprintf(buf, len, "%ldd", (long)age / 86400);
}

static int
list_one(const struct spool_msg *m, void *arg)
{
	struct list_state	*st = arg;
	char			 age[32];

	if (st->json) {
		printf("%s\n  {\"id\": \"%s\", \"size\": %llu, \"arrival\": "
		    "%llu, \"sender\": ", st->nmsg ? "," : "", m->env.qid,
		    (unsigned long long)m->env.size,
		    (unsigned long long)m->env.arrival);
		json_str(m->env.sender);
		printf(", \"user\": ");
		json_str(m->env.user);
		if (m->env.envid) {
			printf(", \"envid\": ");
			json_str(m->env.envid);
		}
		if (m->env.via) {
			printf(", \"via\": ");
			json_str(m->env.via);
		}
		if (m->env.peer) {
			printf(", \"peer\": ");
			json_str(m->env.peer);
			printf(", \"peer_id\": ");
			json_str(m->env.peer_qid);
		}
		printf(", \"recipients\": [");
		for (size_t i = 0; i < m->env.nrcpt; i++) {
			printf("%s\n    {\"address\": ", i ? "," : "");
			json_str(m->env.rcpts[i].addr);
			printf(", \"state\": \"%s\", \"updated\": %llu",
			    rcpt_state_name(m->rs[i].state),
			    (unsigned long long)m->rs[i].updated);
			if (m->rs[i].result) {
				printf(", \"result\": ");
				json_str(m->rs[i].result);
			}
			if (m->rs[i].bundle) {
				printf(", \"bundle\": ");
				json_str(m->rs[i].bundle);
			}
			printf("}");
		}
		printf("]}");
	} else {
		if (st->nmsg == 0)
			printf("%-16s %10s %5s  %s\n", "QUEUE ID", "SIZE",
			    "AGE", "SENDER");
		fmt_age(age, sizeof(age), st->now - (time_t)m->env.arrival);
		printf("%-16s %10llu %5s  <%s>", m->env.qid,
		    (unsigned long long)m->env.size, age, m->env.sender);
		if (m->env.peer)
			printf("  from %s (%s)", m->env.peer, m->env.peer_qid);
		putchar('\n');
		for (size_t i = 0; i < m->env.nrcpt; i++) {
			printf("  %-10s %s", rcpt_state_name(m->rs[i].state),
			    m->env.rcpts[i].addr);
			if (m->rs[i].result)
				printf(" (%s)", m->rs[i].result);
			putchar('\n');
		}
	}
	st->nmsg++;
	st->nrcpt += m->env.nrcpt;
	st->bytes += m->env.size;
	return 0;
}

int
cmd_list(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mg_config	*cfg = NULL;
	struct spool		*sp;
	struct list_state	 st;
	size_t			 picked;
	enum mg_err		 e;
	int			 rc;

	memset(&st, 0, sizeof(st));
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			st.json = 1;
		else {
			cmd_die_msg(ctx, "usage: mgate list [--json]");
			return EX_USAGE;
		}
	}
	if ((sp = open_spool(ctx, &cfg, &rc)) == NULL)
		goto out;
	/* Show what was submitted, not what pickup got to so far. */
	if ((e = spool_pickup(sp, &picked)) != MG_OK) {
		cmd_die_msg(ctx, "pickup before listing failed (%s): messages "
		    "still in maildrop/ are not shown; they are safe and are "
		    "picked up next time", mg_strerror(e));
		rc = mg_err_exit(e);
	}
	st.now = time(NULL);
	if (st.json)
		printf("[");
	e = spool_walk(sp, list_one, &st);
	if (st.json)
		printf("%s]\n", st.nmsg ? "\n" : "");
	else if (st.nmsg == 0)
		printf("Mail queue is empty\n");
	else
		printf("-- %llu bytes in %zu message%s, %zu recipient%s\n",
		    (unsigned long long)st.bytes, st.nmsg,
		    st.nmsg == 1 ? "" : "s", st.nrcpt, st.nrcpt == 1 ? "" :
		    "s");
	if (e != MG_OK) {
		cmd_die_msg(ctx, "reading the queue: %s", mg_strerror(e));
		rc = mg_err_exit(e);
	}
	if (fflush(stdout) == EOF && rc == EX_OK)
		rc = EX_IOERR;
	spool_close(sp);
out:
	mg_config_free(cfg);
	return rc;
}

int
cmd_cat(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mg_config	*cfg = NULL;
	struct spool		*sp;
	struct maildrop_reader	*r = NULL;
	struct spool_msg	 m;
	char			 path[4200], err[1024], buf[65536];
	size_t			 picked;
	ssize_t			 n;
	enum mg_err		 e;
	int			 rc;

	if (argc != 1) {
		cmd_die_msg(ctx, "usage: mgate cat QUEUE-ID");
		return EX_USAGE;
	}
	if ((sp = open_spool(ctx, &cfg, &rc)) == NULL)
		goto out;
	spool_pickup(sp, &picked);	/* an ID `queue -v' just printed */
	if ((e = spool_msg_get(sp, argv[0], &m)) != MG_OK ||
	    (e = spool_body_path(sp, argv[0], path, sizeof(path))) != MG_OK) {
		if (e == MG_ENOTFOUND)
			cmd_die_msg(ctx, "%s: no such message in the queue "
			    "(see mgate list)", argv[0]);
		else
			cmd_die_msg(ctx, "%s: %s", argv[0], mg_strerror(e));
		rc = mg_err_exit(e);
		goto close;
	}
	spool_msg_free(&m);
	if ((e = maildrop_open(path, &r, err, sizeof(err))) != MG_OK) {
		cmd_die_msg(ctx, "%s", err);
		rc = mg_err_exit(e);
		goto close;
	}
	while ((n = maildrop_read(r, buf, sizeof(buf), &e)) > 0)
		if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
			break;
	if (n < 0) {
		cmd_die_msg(ctx, "%s: %s: %s", argv[0], path,
		    e == MG_ECORRUPT ? "body file is corrupt (size or digest "
		    "mismatch)" : mg_strerror(e));
		rc = mg_err_exit(e);
	} else if (fflush(stdout) == EOF || ferror(stdout)) {
		cmd_die_msg(ctx, "writing to standard output: %s",
		    strerror(errno));
		rc = EX_IOERR;
	}
	maildrop_close(r);
close:
	spool_close(sp);
out:
	mg_config_free(cfg);
	return rc;
}

static void
fmt_time(char *buf, size_t len, uint64_t t)
{
	time_t		tt = (time_t)t;
	struct tm	tm;

	if (t == 0) {
		snprintf(buf, len, "-");
		return;
	}
	localtime_r(&tt, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

int
cmd_status(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mg_config	*cfg = NULL;
	struct spool		*sp;
	struct spool_msg	 m;
	char			 t1[32], t2[32];
	size_t			 picked;
	enum mg_err		 e;
	int			 rc, bad = EX_OK;

	if (argc < 1) {
		cmd_die_msg(ctx, "usage: mgate status QUEUE-ID...");
		return EX_USAGE;
	}
	if ((sp = open_spool(ctx, &cfg, &rc)) == NULL)
		goto out;
	spool_pickup(sp, &picked);
	for (int i = 0; i < argc; i++) {
		if ((e = spool_msg_get(sp, argv[i], &m)) != MG_OK) {
			cmd_die_msg(ctx, "%s: %s", argv[i], e == MG_ENOTFOUND ?
			    "no such message in the queue" : mg_strerror(e));
			bad = e == MG_ENOTFOUND ? EX_NOINPUT : mg_err_exit(e);
			continue;
		}
		fmt_time(t1, sizeof(t1), m.env.arrival);
		printf("%s\n  sender:   <%s> (user %s)\n  size:     %llu bytes"
		    "\n  arrived:  %s\n", m.env.qid, m.env.sender,
		    m.env.user[0] ? m.env.user : "-",
		    (unsigned long long)m.env.size, t1);
		if (m.env.envid)
			printf("  envid:    %s\n", m.env.envid);
		if (m.env.peer)
			printf("  from:     peer %s, its queue ID %s\n",
			    m.env.peer, m.env.peer_qid);
		if (m.env.via)
			printf("  for:      site %s (carried by its next sync)\n",
			    m.env.via);
		for (size_t k = 0; k < m.env.nrcpt; k++) {
			const struct spool_rcpt_state *r = &m.rs[k];

			fmt_time(t1, sizeof(t1), r->updated);
			printf("  <%s>\n    state:    %s since %s\n",
			    m.env.rcpts[k].addr, rcpt_state_name(r->state), t1);
			if (r->result)
				printf("    result:   %s\n", r->result);
			if (r->bundle)
				printf("    bundle:   %s\n", r->bundle);
			if (r->attempts) {
				fmt_time(t2, sizeof(t2), r->next_try);
				printf("    attempts: %u%s%s\n", r->attempts,
				    r->state == RS_DEFERRED ? ", next " : "",
				    r->state == RS_DEFERRED ? t2 : "");
			}
		}
		spool_msg_free(&m);
	}
	rc = bad;
	spool_close(sp);
out:
	mg_config_free(cfg);
	return rc;
}

enum manage_op { OP_HOLD, OP_RELEASE, OP_DELETE };

static int
manage(struct cmd_ctx *ctx, int argc, char **argv, enum manage_op op)
{
	static const char *const names[] = { "hold", "release", "delete" };
	struct mg_config	*cfg = NULL;
	struct spool		*sp;
	size_t			 changed;
	enum mg_err		 e;
	int			 rc, bad = EX_OK;

	if (argc < 1) {
		cmd_die_msg(ctx, "usage: mgate %s QUEUE-ID...", names[op]);
		return EX_USAGE;
	}
	if ((sp = open_spool(ctx, &cfg, &rc)) == NULL)
		goto out;
	spool_pickup(sp, &changed);
	for (int i = 0; i < argc; i++) {
		changed = 0;
		switch (op) {
		case OP_HOLD:
			e = spool_msg_transition(sp, argv[i],
			    RS_BIT(RS_QUEUED), RS_HELD, &changed);
			break;
		case OP_RELEASE:
			e = spool_msg_transition(sp, argv[i],
			    RS_BIT(RS_HELD), RS_QUEUED, &changed);
			break;
		default:
			e = spool_msg_delete(sp, argv[i]);
			changed = 1;
			break;
		}
		if (e == MG_ENOTFOUND) {
			cmd_die_msg(ctx, "%s: no such message in the queue",
			    argv[i]);
			bad = EX_NOINPUT;
			continue;
		}
		if (e != MG_OK) {
			cmd_die_msg(ctx, "%s: %s failed: %s", argv[i],
			    names[op], mg_strerror(e));
			bad = mg_err_exit(e);
			continue;
		}
		if (op == OP_DELETE)
			mg_info("%s: removed by operator", argv[i]);
		else if (changed)
			mg_info("%s: %s by operator (%zu recipient%s)",
			    argv[i], op == OP_HOLD ? "held" : "released",
			    changed, changed == 1 ? "" : "s");
		else
			cmd_die_msg(ctx, "%s: nothing to %s (no recipient is "
			    "%s)", argv[i], names[op], op == OP_HOLD ?
			    "queued" : "held");
	}
	rc = bad;
	spool_close(sp);
out:
	mg_config_free(cfg);
	return rc;
}

int
cmd_hold(struct cmd_ctx *ctx, int argc, char **argv)
{
	return manage(ctx, argc, argv, OP_HOLD);
}

int
cmd_release(struct cmd_ctx *ctx, int argc, char **argv)
{
	return manage(ctx, argc, argv, OP_RELEASE);
}

int
cmd_delete(struct cmd_ctx *ctx, int argc, char **argv)
{
	return manage(ctx, argc, argv, OP_DELETE);
}
