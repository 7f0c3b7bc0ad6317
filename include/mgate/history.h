/*
 * history.h - how long a site remembers the mail it sent.
 *
 * A site keeps each message it sent after every recipient's fate is
 * known, so that `mgate list' and `mgate status' can say what happened
 * and a remote MTA's late bounce can still be matched to it
 * (late_bounce.c).  After history_lifetime without news it goes.
 */
#ifndef MGATE_HISTORY_H
#define MGATE_HISTORY_H

#include <stddef.h>

#include "mgate/config.h"
#include "mgate/spool.h"

/*
 * Remove the site's own messages whose recipients are all final and
 * unchanged for history_lifetime.  *removed counts them (may be NULL).
 */
enum mg_err history_expire(struct spool *, const struct mg_config *,
	    size_t *removed);

#endif
