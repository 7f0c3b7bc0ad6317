/*
 * spool_int.h - what spool*.c files share and nothing else may see:
 * the Berkeley DB handles, the transaction runner and record codecs.
 */
#ifndef MGATE_SPOOL_INT_H
#define MGATE_SPOOL_INT_H

#include <sys/types.h>

#include <db.h>

#include "mgate/buf.h"
#include "mgate/envelope.h"
#include "mgate/qid.h"
#include "mgate/spool.h"

#define RKEY_LEN	(MG_QID_LEN + 4)
#define VAL_MAX		(64 * 1024)

struct spool {
	char	 dir[4096];
	int	 refs;		/* opens in this process share one handle */
	pid_t	 pid;
	dev_t	 dev;		/* the directory, whatever path named it */
	ino_t	 ino;
	struct spool *next;	/* this process's open spools */
	int	 users_fd;	/* shared flock: we use the environment */
	int	 counted;	/* our open is in db/active (clean_close) */
	int	 tainted;	/* saw DB_RUNRECOVERY or panicked it */
	DB_ENV	*env;
	DB	*msg;		/* QID -> envelope */
	DB	*rcpt;		/* QID + be32 index -> recipient and state */
	DB	*seen;		/* "kind:id" -> time */
	DB	*bundle;	/* bundle ID hex -> outgoing bundle record */
	DB	*outbox;	/* peer + be64 seq -> status record to send */
};

/* fn returns 0 or a Berkeley DB error; deadlocks are retried. */
typedef int (*txn_fn)(struct spool *, DB_TXN *, void *);

enum mg_err spool_txn(struct spool *, txn_fn, void *);
enum mg_err spool_txn_flags(struct spool *, txn_fn, void *,
	    uint32_t commit_flags);
void	dbt_init(DBT *, const void *, size_t);
void	rcpt_key(unsigned char key[RKEY_LEN], const char *qid, size_t idx);
enum mg_err enc_msg(struct mg_buf *, const struct mg_envelope *);
enum mg_err dec_msg(const void *, size_t, struct mg_envelope *,
	    uint64_t *nrcpt);
enum mg_err enc_rcpt(struct mg_buf *, const struct mg_rcpt *,
	    const struct spool_rcpt_state *);
enum mg_err dec_rcpt(const void *, size_t, struct mg_rcpt *,
	    struct spool_rcpt_state *);
int	pickup_lock(struct spool *);
int	put_message(struct spool *, DB_TXN *, const struct mg_envelope *,
	    u_int32_t msgflags);

#endif
