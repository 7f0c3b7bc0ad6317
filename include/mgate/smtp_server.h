/*
 * smtp_server.h - the gateway's SMTP listener.
 *
 * Accepts mail for the sites' domains from anyone (stored for the
 * site's next sync), mail from an authenticated site to anyone but only
 * as the site's own sender domains (delivered by the daemon), and, for
 * an authenticated site, the X-MGATE-SYNC verb that turns the session
 * into the sync protocol.  Durable before 250, always.
 */
#ifndef MGATE_SMTP_SERVER_H
#define MGATE_SMTP_SERVER_H

#include <signal.h>
#include <stddef.h>

#include "mgate/config.h"
#include "mgate/err.h"

struct smtpd_listener;

/*
 * Load the TLS certificate and key and bind every smtpd_listen address:
 * the part that needs root, done before the daemon drops privileges.
 */
enum mg_err smtpd_listen_open(const struct mg_config *,
	    struct smtpd_listener **, char *errbuf, size_t errlen);
/* Accept until *stop is set, one process per session (at most
 * smtpd_max_sessions). */
void	smtpd_serve(struct smtpd_listener *, const struct mg_config *,
	    volatile sig_atomic_t *stop);
void	smtpd_listener_free(struct smtpd_listener *);
/* smtpd_listen_open, smtpd_serve, free. */
enum mg_err smtpd_run(const struct mg_config *, volatile sig_atomic_t *stop,
	    char *errbuf, size_t errlen);
struct spool;

/* One session on a connected socket (the listener calls it in a child). */
void	smtpd_session(const struct mg_config *, void *tls_ctx, int fd,
	    const char *client);
/*
 * The same, using *sp as the queue database (opened at the first
 * message if NULL) and leaving it open in *sp for the next session.
 */
void	smtpd_session_keep(const struct mg_config *, void *tls_ctx, int fd,
	    const char *client, struct spool **sp);

#endif
