/*
 * inbound.h - at the site: deliver mail that came from the gateway.
 *
 * Mail for the site's users arrives in bundles from the gateway and is
 * queued like any message (with the gateway as its peer).  This puts
 * each such message into its recipients' local mailboxes (Maildir, mbox
 * or an MDA, as configured), marks them delivered, and removes the
 * message once every recipient is done.  A recipient whose mailbox
 * cannot take it now stays queued for the next run.
 */
#ifndef MGATE_INBOUND_H
#define MGATE_INBOUND_H

#include "mgate/config.h"
#include "mgate/spool.h"

/* *delivered counts recipients delivered in this run. */
enum mg_err inbound_deliver(struct spool *, const struct mg_config *,
	    size_t *delivered);

#endif
