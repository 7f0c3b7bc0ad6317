/*
 * dsn.h - RFC 3464 delivery status notifications, written at the site.
 *
 * The site keeps its copy of every message until it is done, so it
 * renders the report itself from the compact status records the
 * gateway sends: one multipart/report per message and event, into the
 * submitting user's local mailbox.  Never for the null sender, never for
 * a recipient that asked NOTIFY=NEVER.
 */
#ifndef MGATE_DSN_H
#define MGATE_DSN_H

#include <stddef.h>
#include <stdint.h>

#include "mgate/config.h"
#include "mgate/err.h"
#include "mgate/spool.h"

/*
 * RELAYED: handed to an MTA that offered no DSN extension, so this is
 * the last word the sender gets (RFC 3464 2.3.3).
 */
enum dsn_action { DSN_FAILED, DSN_DELAYED, DSN_DELIVERED, DSN_RELAYED,
	DSN_NACTIONS };

struct dsn_rcpt {
	size_t		 idx;		/* recipient index in the message */
	const char	*status;	/* RFC 3463 */
	const char	*remote;	/* "mx.example.net[192.0.2.1]" or "" */
	const char	*diag;		/* the remote server's words */
};

/*
 * Write one report about rcpts (all with the same action) of message m,
 * whose body file is at body_path, to the sender's local mailbox.
 */
enum mg_err dsn_deliver(const struct mg_config *, const struct spool_msg *,
	    const char *body_path, enum dsn_action, const struct dsn_rcpt *,
	    size_t n, char *errbuf, size_t errlen);

#endif
