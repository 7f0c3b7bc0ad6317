/*
 * cmd.h - the commands of the mgate program.
 *
 * Each command gets the arguments after its name and the global options
 * already parsed, and returns a sysexits(3) status.  Only main.c and the
 * cmd_*.c files map errors to exit codes or print to the user.
 */
#ifndef MGATE_CMD_H
#define MGATE_CMD_H

#include "mgate/config.h"

struct cmd_ctx {
	const char	*progname;	/* "mgate", "sendmail", "mailq" */
	const char	*config_path;	/* -c, NULL: default lookup */
	int		 verbose;
};

/* Load the configuration or print why not; returns NULL on failure. */
struct mg_config *cmd_load_config(const struct cmd_ctx *);
/* The peer named, or default_peer; NULL after saying why. */
const struct mg_peer *cmd_pick_peer(const struct cmd_ctx *,
	    const struct mg_config *, const char *name);
/* Print "progname: message" to stderr. */
void	cmd_die_msg(const struct cmd_ctx *, const char *, ...)
	    __attribute__((format(printf, 2, 3)));

int	cmd_init(struct cmd_ctx *, int, char **);
/* Take turns with other pickups; fd held to exit, -1 on error. */
int	cmd_run_lock(const char *spool);
int	cmd_queue(struct cmd_ctx *, int, char **);
int	cmd_sendmail(struct cmd_ctx *, int, char **);
int	cmd_pickup(struct cmd_ctx *, int, char **);
int	cmd_list(struct cmd_ctx *, int, char **);
int	cmd_status(struct cmd_ctx *, int, char **);
int	cmd_cat(struct cmd_ctx *, int, char **);
int	cmd_hold(struct cmd_ctx *, int, char **);
int	cmd_release(struct cmd_ctx *, int, char **);
int	cmd_delete(struct cmd_ctx *, int, char **);
int	cmd_keygen(struct cmd_ctx *, int, char **);
int	cmd_export(struct cmd_ctx *, int, char **);
int	cmd_import(struct cmd_ctx *, int, char **);
int	cmd_sync(struct cmd_ctx *, int, char **);
int	cmd_serve(struct cmd_ctx *, int, char **);
int	cmd_authorized_key(struct cmd_ctx *, int, char **);
int	cmd_passwd_hash(struct cmd_ctx *, int, char **);
int	cmd_daemon(struct cmd_ctx *, int, char **);
int	cmd_check_config(struct cmd_ctx *, int, char **);

#endif
