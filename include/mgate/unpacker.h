/*
 * unpacker.h - apply a received bundle to the spool.
 *
 * The bundle is verified completely (every chunk, the signature, the
 * sender and receiver names) while its messages are staged as body
 * files; only then does one transaction commit them, so a forged,
 * truncated or corrupted bundle changes nothing.  A bundle whose ID was
 * committed before is a replay: nothing changes, and the caller
 * acknowledges it again (the first acknowledgement may have been lost).
 */
#ifndef MGATE_UNPACKER_H
#define MGATE_UNPACKER_H

#include <stddef.h>

#include "mgate/config.h"
#include "mgate/err.h"
#include "mgate/keys.h"
#include "mgate/spool.h"

struct unpack_result {
	char	id[33];		/* bundle ID, once the header verified */
	char	peer[256];	/* the sending peer */
	int	replay;		/* committed before: nothing changed */
	size_t	nmsg;		/* messages in the bundle */
	size_t	created;	/* new messages queued */
	size_t	dups;		/* messages known from an earlier bundle */
	size_t	nstatus;	/* status records applied */
	size_t	nack;		/* our bundles acknowledged */
};

/*
 * Apply the bundle in the file at path.  peer: the only acceptable
 * sender (as when the transport authenticated it), or NULL for any
 * configured peer.  self: our private keys.
 */
enum mg_err unpacker_apply(struct spool *, const struct mg_config *,
	    const struct mg_keypair *self, const char *peer,
	    const char *path, struct unpack_result *, char *errbuf,
	    size_t errlen);

#endif
