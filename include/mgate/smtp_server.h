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

/*
 * Bind every smtpd_listen address, then accept until *stop is set,
 * one process per session (at most smtpd_max_sessions).
 */
enum mg_err smtpd_run(const struct mg_config *, volatile sig_atomic_t *stop,
	    char *errbuf, size_t errlen);
/* One session on a connected socket (the listener calls it in a child). */
void	smtpd_session(const struct mg_config *, void *tls_ctx, int fd,
	    const char *client);

#endif
