/*
 * sync.h - the sync protocol: move bundles both ways over one stream.
 *
 * The engine runs over any struct mg_stream (an SSH channel, a TLS
 * socket, a pipe).  Frames are tag (1 byte) + length (4 bytes, big
 * endian) + payload, as everywhere in mgate; see mgate-sync(5).
 *
 *   client                          server
 *   HELLO  ------------------------>
 *          <------------------------ HELLO
 *   OFFER  (id, size)* ------------>              upload
 *          <------------------------ RESUME (id, offset)*
 *   DATA   (id, offset, bytes)* --->
 *   END    (id)* , FIN ------------>
 *          <------------------------ ACK (id, ok, text)*
 *          <------------------------ OFFER          download
 *   RESUME ------------------------>
 *          <------------------------ DATA*, END*, FIN
 *   ACK*   ------------------------>
 *
 * A receiver acknowledges a bundle only after it committed it durably;
 * a sender marks its mail accepted only on that acknowledgement.  A
 * receiver that already committed a bundle answers RESUME with "have
 * it all", so a cut between the data and the ACK never doubles mail.
 * Partial bundles are kept and resumed from the last verified chunk.
 */
#ifndef MGATE_SYNC_H
#define MGATE_SYNC_H

#include <stdint.h>

#include "mgate/config.h"
#include "mgate/err.h"
#include "mgate/packer.h"
#include "mgate/spool.h"

#define SYNC_VERSION	1

struct sync_stats {
	uint64_t	up_bundles, up_msgs, up_bytes, up_resent_from;
	uint64_t	down_bundles, down_msgs, down_status, down_bytes;
	uint64_t	up_raw;		/* message bytes before compression */
	uint64_t	skipped;	/* bundle bytes the receiver had */
	uint64_t	rejected;	/* bundles the peer refused */
};

struct sync_ctx {
	struct spool		*sp;
	const struct mg_config	*cfg;
	struct peer_keys	*pk;	/* our keys, the peer and its key */
	struct mg_stream	*s;
	int			 progress;	/* draw a progress bar */
	struct sync_stats	 st;
	char			*err;
	size_t			 errlen;
};

/* The site's side: upload, then download. */
enum mg_err sync_client(struct sync_ctx *);
/* The gateway's side (mgate serve): download, then upload. */
enum mg_err sync_server(struct sync_ctx *);

#endif
