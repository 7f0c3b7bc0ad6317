/*
 * late_bounce.h - bounces that come back as mail, matched to the
 * message they are about.
 *
 * An MX can accept a message and fail it later; its report then comes
 * to the site's sender as ordinary inbound mail.  When that mail is a
 * delivery status report (RFC 3464: null sender, multipart/report with
 * a message/delivery-status part) and names one of the site's own
 * messages (its Original-Envelope-Id, which the gateway sets to the
 * site's queue ID, or the Received: trace mgate adds at submission),
 * the failed recipients of that message become "bounced", so that
 * `mgate list' and `mgate status' tell the truth.
 */
#ifndef MGATE_LATE_BOUNCE_H
#define MGATE_LATE_BOUNCE_H

#include <stddef.h>

#include "mgate/config.h"
#include "mgate/qid.h"
#include "mgate/spool.h"

#define LB_MAX_RCPTS	64

struct late_bounce_rcpt {
	char	addr[320];		/* Final-Recipient, without "rfc822;" */
	char	action[16];
	char	status[16];
	char	diag[400];
};

struct late_bounce {
	char			envid[128];	/* Original-Envelope-Id */
	char			trace_qid[MG_QID_LEN + 1];
	char			reporting_mta[256];
	struct late_bounce_rcpt	rcpt[LB_MAX_RCPTS];
	size_t			nrcpt;
};

/*
 * Read the message in the body file at path (bounded memory, line by
 * line).  Returns 1 and fills *lb when it is a delivery status report,
 * 0 when it is not (or cannot be read).  myhostname finds mgate's own
 * Received: trace in a returned message or header section.
 */
int	late_bounce_parse(const char *path, const char *myhostname,
	    struct late_bounce *lb);

/*
 * Mark the failed recipients of the message lb names as bounced.
 * report_qid (the report's own queue ID) goes into the log.  Returns
 * the number of recipients changed.
 */
size_t	late_bounce_apply(struct spool *, const char *report_qid,
	    const struct late_bounce *lb);

#endif
