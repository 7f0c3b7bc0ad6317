/*
 * deliver.h - the gateway's delivery engine: queue runs and workers.
 *
 * A queue run reads the spool, bounces what expired or may not be sent,
 * groups due recipients by destination domain, and hands each group to
 * a worker process (global and per-domain limits).  A worker resolves
 * the domain's mail exchangers, delivers over SMTP with connection reuse
 * and several recipients per transaction, and records every recipient's
 * outcome in one transaction together with the status record for the
 * site that sent the message.
 */
#ifndef MGATE_DELIVER_H
#define MGATE_DELIVER_H

#include "mgate/config.h"
#include "mgate/err.h"

struct deliver_stats {
	unsigned long	delivered, deferred, bounced, domains;
};

/* One queue run; waits for its workers.  Opens and closes the spool. */
enum mg_err deliver_run(const struct mg_config *, struct deliver_stats *,
	    char *errbuf, size_t errlen);

#endif
