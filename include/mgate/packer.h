/*
 * packer.h - pack what the spool holds for a peer into bundle files.
 *
 * A packed bundle is a file in the spool's outgoing/ directory, kept
 * byte-identical until the peer acknowledges it, so a transfer can be
 * resumed at any offset, over any transport, or carried by hand.
 */
#ifndef MGATE_PACKER_H
#define MGATE_PACKER_H

#include <stddef.h>
#include <stdint.h>

#include "mgate/config.h"
#include "mgate/err.h"
#include "mgate/keys.h"
#include "mgate/spool.h"

struct peer_keys {
	const struct mg_config	*cfg;
	const struct mg_peer	*peer;
	struct mg_keypair	*self;		/* our private keys */
	struct mg_pubkey	 peer_pub;	/* the peer's public keys */
};

/* Load our private key and the peer's public key, saying what failed. */
enum mg_err peer_keys_load(const struct mg_config *, const struct mg_peer *,
	    struct peer_keys *, char *errbuf, size_t errlen);
void	peer_keys_free(struct peer_keys *);

struct pack_result {
	char		id[33];
	size_t		nmsg;
	size_t		nstatus;
	uint64_t	size;		/* bundle bytes */
	uint64_t	raw;		/* message bytes before compression */
};

/*
 * Pack the peer's queued mail (small before large, then oldest, up to
 * the peer's max_bundle_size) and its outbox records into one bundle.
 * MG_ENOTFOUND when there is nothing to send.
 */
enum mg_err packer_build(struct spool *, const struct peer_keys *,
	    struct pack_result *, char *errbuf, size_t errlen);

/*
 * Write an acknowledgement bundle (not kept in the spool) for the given
 * bundle IDs to path, durably.
 */
enum mg_err packer_write_ack(const struct peer_keys *, char *const *ids,
	    size_t n, const char *path, char *errbuf, size_t errlen);



struct bundle_status;
struct mg_buf;

/* Encode a status record for spool_outbox_add(). */
enum mg_err packer_status_encode(struct mg_buf *,
	    const struct bundle_status *);
#endif
