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

#endif
