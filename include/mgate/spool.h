/*
 * spool.h - the durable queue: a Berkeley DB transactional environment
 * for metadata and state, plus one body file per message.
 *
 * Layout under the spool directory:
 *   maildrop/QID   committed submissions waiting for pickup
 *   tmp/           submissions being written (never read)
 *   queue/QID      body files of spooled messages (maildrop format)
 *   corrupt/       files pickup could not parse, kept for the operator
 *   db/            the Berkeley DB environment (msg, rcpt, seen)
 *
 * Every state change is one synchronous transaction; callers never see
 * cursors, transactions or DB handles.  Deadlocks are retried inside.
 * Nothing outside spool*.c touches Berkeley DB.
 */
#ifndef MGATE_SPOOL_H
#define MGATE_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "mgate/envelope.h"
#include "mgate/err.h"

/* Per-recipient life; the order is the order of progress. */
enum rcpt_state {
	RS_QUEUED,	/* waiting for the next bundle */
	RS_HELD,	/* held by the operator */
	RS_BUNDLED,	/* in a bundle not yet acknowledged */
	RS_ACCEPTED,	/* the gateway stored it durably */
	RS_DEFERRED,	/* the gateway is retrying */
	RS_DELIVERED,	/* final: accepted by the recipient's MX */
	RS_BOUNCED,	/* final: failed permanently */
	RS_NSTATES
};

const char *rcpt_state_name(enum rcpt_state);
int	rcpt_state_final(enum rcpt_state);

struct spool_rcpt_state {
	enum rcpt_state	 state;
	uint64_t	 updated;	/* seconds since the epoch */
	char		*result;	/* last result text, or NULL */
	char		*bundle;	/* bundle ID it travelled in, or NULL */
	uint64_t	 next_try;	/* gateway: not before this time */
	uint32_t	 attempts;	/* gateway: delivery attempts so far */
	int		 reported;	/* gateway: first deferral reported */
	/*
	 * gateway: when the end of data went to a server in an attempt
	 * whose outcome is not recorded yet; set on a later load, that
	 * attempt was cut off and the server may already have the mail.
	 */
	uint64_t	 inflight;
};

/* A spooled message: its envelope plus per-recipient state. */
struct spool_msg {
	struct mg_envelope	 env;
	struct spool_rcpt_state	*rs;	/* env.nrcpt entries */
};

void	spool_msg_free(struct spool_msg *);

struct spool;

#define SPOOL_CREATE	0x01	/* create the layout if missing */

/*
 * Open the spool at dir: make the layout (with SPOOL_CREATE), open the
 * environment with recovery if a previous process died.  errbuf says
 * what failed and on which path.
 */
enum mg_err spool_open(const char *dir, int flags, struct spool **,
	    char *errbuf, size_t errlen);
void	spool_close(struct spool *);
const char *spool_dir(const struct spool *);

/*
 * Insert a message whose body file is already at body_path-to-be; the
 * recipients start in RS_QUEUED.  MG_EEXIST if the queue ID is known
 * (the insert is idempotent: callers treat that as done).
 */
enum mg_err spool_msg_create(struct spool *, const struct mg_envelope *);
/* Fetch a message and its recipients; MG_ENOTFOUND if unknown. */
enum mg_err spool_msg_get(struct spool *, const char *qid,
	    struct spool_msg *);
/*
 * Call fn for every message in queue-ID (age) order.  fn returns 0 to go
 * on, non-zero to stop.  The walk reads a snapshot one message at a time.
 */
enum mg_err spool_walk(struct spool *,
	    int (*fn)(const struct spool_msg *, void *), void *arg);
/* Set one recipient's state and result (NULL keeps the old text). */
enum mg_err spool_rcpt_update(struct spool *, const char *qid, size_t idx,
	    enum rcpt_state, const char *result, const char *bundle);
/*
 * Move every recipient of qid whose state bit is in from_mask to state
 * `to'.  *changed (may be NULL) counts them.
 */
enum mg_err spool_msg_transition(struct spool *, const char *qid,
	    unsigned from_mask, enum rcpt_state to, size_t *changed);
#define RS_BIT(s)	(1u << (s))
/* Remove the message's records and body file. */
enum mg_err spool_msg_delete(struct spool *, const char *qid);
/*
 * The same for many, up to 100 per transaction; with why, each removal
 * is logged as "QID: removed (why)".  *removed counts the messages
 * found and removed.
 */
enum mg_err spool_msgs_delete(struct spool *, char **qids, size_t n,
	    const char *why, size_t *removed);
/* Path of the body file (queue/QID, or maildrop/QID if not moved yet). */
enum mg_err spool_body_path(struct spool *, const char *qid, char *,
	    size_t);

/* Seen-ID memory: bundles and other IDs already committed. */
enum mg_err spool_seen_add(struct spool *, const char *kind,
	    const char *id);
/* MG_OK if seen, MG_ENOTFOUND if not. */
enum mg_err spool_seen_check(struct spool *, const char *kind,
	    const char *id);

/* Import committed maildrop files; *picked counts new messages. */
enum mg_err spool_pickup(struct spool *, size_t *picked);

/*
 * Outgoing bundles (spool_bundle.c).  A bundle's life at the sender:
 *   spool_bundle_begin   its messages' queued recipients become
 *                        "bundled" with the bundle ID (state BUILDING)
 *   (the bundle file is written to outgoing/ID and fsync'd)
 *   spool_bundle_ready   the file is complete: it may be offered
 *   spool_bundle_acked   the peer committed it: recipients "accepted",
 *                        the record goes, the caller removes the file
 * A BUILDING bundle found later (a crash) is undone with
 * spool_bundle_abandon, which puts its recipients back to "queued".
 * Bundle IDs are 32 lower-case hex digits.
 */
enum spool_bundle_state { SB_BUILDING, SB_READY };

struct spool_bundle {
	char		  id[33];
	char		 *peer;
	int		  state;	/* enum spool_bundle_state */
	uint64_t	  created;
	uint64_t	  size;		/* bytes of the bundle file */
	char		**qids;
	size_t		  nqid;
};

void	spool_bundle_free(struct spool_bundle *);
int	spool_bundle_id_valid(const char *);
enum mg_err spool_bundle_begin(struct spool *, const char *id,
	    const char *peer, char *const *qids, size_t n);
/*
 * The file is complete.  If outbox_last is not 0, the bundle also holds
 * the peer's outbox records up to that sequence number: they leave the
 * outbox in the same transaction.
 */
enum mg_err spool_bundle_ready(struct spool *, const char *id,
	    uint64_t size, uint64_t outbox_last);
enum mg_err spool_bundle_abandon(struct spool *, const char *id);
/* *nrcpt counts recipients moved to "accepted". */
enum mg_err spool_bundle_acked(struct spool *, const char *id,
	    size_t *nrcpt);
/* Every bundle for peer (NULL: all) in creation order. */
enum mg_err spool_bundle_list(struct spool *, const char *peer,
	    struct spool_bundle **, size_t *n);
enum mg_err spool_bundle_get(struct spool *, const char *id,
	    struct spool_bundle *);
/* Path of outgoing/ID. */
enum mg_err spool_bundle_path(struct spool *, const char *id, char *,
	    size_t);

/*
 * Import at the receiver: in one transaction, unless the bundle ID was
 * seen before (MG_EEXIST), create every message whose (peer, peer_qid)
 * is new and remember the bundle and each message.  Body files must
 * already be durable at queue/QID.  *created counts new messages;
 * dup[i] is set for messages skipped as already known.
 */
enum mg_err spool_import(struct spool *, const char *peer,
	    const char *bundle_id, const struct mg_envelope *msgs, size_t n,
	    int *dup, size_t *created);

/*
 * A delivery attempt's outcome, in one transaction: the recipient's new
 * state, result text and next attempt time (attempts counted), and, if
 * peer is given, a status record for that peer's outbox.  mark_reported
 * sets the recipient's "first deferral reported" flag.
 */
enum mg_err spool_rcpt_result(struct spool *, const char *qid, size_t idx,
	    enum rcpt_state, const char *result, uint64_t next_try,
	    int mark_reported, const char *peer, const void *rec,
	    size_t reclen);

/*
 * Note that the end of data is about to go to a server for these
 * recipients of qid (spool_rcpt_result clears it).  Written without
 * fsync: it must survive a killed daemon, and costs no disk flush.
 */
enum mg_err spool_rcpt_inflight(struct spool *, const char *qid,
	    const size_t *idx, size_t n, uint64_t when);

/* Update the recipient of qid whose address is addr. */
enum mg_err spool_rcpt_update_addr(struct spool *, const char *qid,
	    const char *addr, enum rcpt_state, const char *result);

/*
 * The outbox: status records waiting to travel to a peer.  Each is an
 * opaque, already-encoded record (the caller's format), kept in order.
 */
enum mg_err spool_outbox_add(struct spool *, const char *peer,
	    const void *rec, size_t len);
/*
 * Call fn for up to max records for peer, oldest first.  fn returns 0
 * to go on.  *last receives the sequence number of the last one given.
 */
enum mg_err spool_outbox_walk(struct spool *, const char *peer, size_t max,
	    int (*fn)(const void *, size_t, void *), void *arg,
	    uint64_t *last);
/* Remove files in outgoing/ that no bundle record names (crash debris). */
void	spool_bundle_sweep(struct spool *);

#endif
