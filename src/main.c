/*
 * main.c - the mgate program: global options and command dispatch.
 *
 * Invoked as "sendmail" it is `mgate queue' with sendmail's command
 * line; as "mailq" it is `mgate list'.  Otherwise the first non-option
 * argument names the command.  Commands return sysexits(3) codes.
 */
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "mgate/cmd.h"
#include "mgate/log.h"

#define MGATE_VERSION	"0.1"

static const struct {
	const char	*name;
	int		(*fn)(struct cmd_ctx *, int, char **);
	const char	*help;
} commands[] = {
	{ "init", cmd_init, "create the spool directory and queue database" },
	{ "queue", cmd_queue, "queue a message from stdin (sendmail flags)" },
	{ "pickup", cmd_pickup, "import submitted messages into the queue" },
	{ "list", cmd_list, "list queued messages and recipients [--json]" },
	{ "status", cmd_status, "one message's recipients, states and results" },
	{ "cat", cmd_cat, "print a queued message as it will be sent" },
	{ "hold", cmd_hold, "hold messages: they stay until released" },
	{ "release", cmd_release, "release held messages" },
	{ "delete", cmd_delete, "delete messages from the queue" },
	{ "keygen", cmd_keygen, "make a key pair for bundles" },
	{ "export", cmd_export, "write queued mail for a peer to a bundle file" },
	{ "import", cmd_import, "import a bundle file and write its ack" },
	{ "sync", cmd_sync, "exchange bundles with a peer over its link" },
	{ "serve", cmd_serve, "the gateway's end of sync (sshd forced command)" },
	{ "passwd-hash", cmd_passwd_hash,
	  "hash a site's SMTP password (from stdin) for smtp_password_hash" },
	{ "daemon", cmd_daemon, "the gateway's delivery engine [--once]" },
	{ "authorized-key", cmd_authorized_key,
	  "print the authorized_keys line for a peer's SSH key" },
	{ "check-config", cmd_check_config,
	  "validate and print the configuration [--keys]" },
};

#define NCMDS	(sizeof(commands) / sizeof(commands[0]))

void
cmd_die_msg(const struct cmd_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", ctx->progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

struct mg_config *
cmd_load_config(const struct cmd_ctx *ctx)
{
	struct mg_config	*cfg = NULL;
	char			 err[1024];

	if (mg_config_load(ctx->config_path, &cfg, err, sizeof(err)) != MG_OK) {
		cmd_die_msg(ctx, "%s", err);
		return NULL;
	}
	mg_log_set_dest(cfg->log_destination == MG_LD_STDERR ?
	    MG_LOG_STDERR : MG_LOG_SYSLOG);
	return cfg;
}

const struct mg_peer *
cmd_pick_peer(const struct cmd_ctx *ctx, const struct mg_config *cfg,
    const char *name)
{
	const struct mg_peer *p;

	if (name == NULL && (name = cfg->default_peer) == NULL) {
		cmd_die_msg(ctx, "%s: which peer? use --peer NAME or set "
		    "default_peer", cfg->path);
		return NULL;
	}
	if ((p = mg_config_peer(cfg, name)) == NULL)
		cmd_die_msg(ctx, "%s: no [peer %s] section", cfg->path, name);
	return p;
}

static void
usage(FILE *fp)
{
	fprintf(fp, "usage: mgate [-v] [-c config] command [args]\n\n"
	    "commands:\n");
	for (size_t i = 0; i < NCMDS; i++)
		fprintf(fp, "  %-14s %s\n", commands[i].name, commands[i].help);
	fprintf(fp, "\nAs sendmail(8) it queues a message; as mailq(1) it "
	    "lists the queue.  See mgate(8).\n");
}

int
main(int argc, char **argv)
{
	struct cmd_ctx	 ctx = { "mgate", NULL, 0 };
	char		*base, *copy;
	int		 i;

	if (argc < 1)
		return EX_USAGE;
	/* A peer that goes away is an error to report, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	if ((copy = strdup(argv[0])) == NULL)
		return EX_OSERR;
	base = basename(copy);
	if (strcmp(base, "sendmail") == 0 || strcmp(base, "mailq") == 0) {
		ctx.progname = strcmp(base, "sendmail") == 0 ? "sendmail" :
		    "mailq";
		mg_log_init(ctx.progname, MG_LOG_STDERR);
		free(copy);
		if (strcmp(ctx.progname, "mailq") == 0)
			return cmd_list(&ctx, argc - 1, argv + 1);
		return cmd_sendmail(&ctx, argc - 1, argv + 1);
	}
	free(copy);
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			ctx.config_path = argv[++i];
		else if (strcmp(argv[i], "-v") == 0)
			ctx.verbose++;
		else if (strcmp(argv[i], "-h") == 0 ||
		    strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return EX_OK;
		} else if (strcmp(argv[i], "--version") == 0) {
			printf("mgate %s\n", MGATE_VERSION);
			return EX_OK;
		} else {
			fprintf(stderr, "mgate: unknown option %s\n", argv[i]);
			usage(stderr);
			return EX_USAGE;
		}
	}
	if (i == argc) {
		usage(stderr);
		return EX_USAGE;
	}
	for (size_t k = 0; k < NCMDS; k++)
		if (strcmp(argv[i], commands[k].name) == 0) {
			char ident[64];

			snprintf(ident, sizeof(ident), "mgate/%s",
			    commands[k].name);
			mg_log_init(strdup(ident), MG_LOG_STDERR);
			mg_log_set_verbose(ctx.verbose);
			return commands[k].fn(&ctx, argc - i - 1, argv + i + 1);
		}
	fprintf(stderr, "mgate: unknown command '%s'\n", argv[i]);
	usage(stderr);
	return EX_USAGE;
}
