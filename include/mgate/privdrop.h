/*
 * privdrop.h - give up root for good, the way a daemon should.
 *
 * The gateway daemon starts as root only to bind the SMTP port and read
 * its TLS key; everything after that (the spool, DNS, peers' data) runs
 * as daemon_user.  The spool must already belong to that user: the drop
 * checks it, so that a wrong setup fails at start with a clear message
 * instead of at the first commit.
 */
#ifndef MGATE_PRIVDROP_H
#define MGATE_PRIVDROP_H

#include <stddef.h>

#include "mgate/err.h"

/*
 * Become user (name or numeric uid) with its primary group and
 * supplementary groups; fails unless the change is irreversible and the
 * spool directory is owned by that user.  Without root, succeeds only
 * when the process already runs as that user.
 */
enum mg_err priv_drop(const char *user, const char *spool,
	    char *errbuf, size_t errlen);

#endif
