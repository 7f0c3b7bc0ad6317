/*
 * smarthost.h - relay queued mail through a submission server.
 *
 * For a site without an mgate gateway: `transport = smarthost' sends
 * each queued message to the peer's host (587 with STARTTLS, or 465
 * with TLS from the first byte), logged in with AUTH PLAIN, reusing
 * the connection.  At the site the usual semantics hold: 2xx is
 * delivered, 5xx becomes a local DSN, 4xx or a dead link leaves the
 * mail queued for the next run.
 */
#ifndef MGATE_SMARTHOST_H
#define MGATE_SMARTHOST_H

#include "mgate/config.h"
#include "mgate/spool.h"

struct smarthost_stats {
	unsigned long	messages, delivered, bounced, deferred;
};

/* MG_OK when every message was tried; MG_ETEMP when the link failed. */
enum mg_err smarthost_run(struct spool *, const struct mg_config *,
	    const struct mg_peer *, struct smarthost_stats *, char *errbuf,
	    size_t errlen);

#endif
