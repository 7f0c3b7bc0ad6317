/*
 * spool_bundle.c - bundles, imports and the outbox in the queue database.
 *
 * Outgoing bundles are files (outgoing/ID) named by an ID we made, with
 * a record in bundle.db; their messages' recipients carry the bundle ID
 * while "bundled".  A bundle file is kept byte-identical until the peer
 * acknowledges it, so an interrupted transfer resumes at any offset.
 * Imports commit a whole bundle in one transaction, keyed for dedup by
 * the bundle ID and by each message's (peer, peer queue ID).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "mgate/fsutil.h"
#include "mgate/log.h"
#include "spool_int.h"

static uint64_t
now_usec(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000000 + (uint64_t)tv.tv_usec;
}

int
spool_bundle_id_valid(const char *id)
{
	size_t i;

	for (i = 0; i < 32; i++)
		if (!((id[i] >= '0' && id[i] <= '9') ||
		    (id[i] >= 'a' && id[i] <= 'f')))
			return 0;
	return id[i] == '\0';
}

void
spool_bundle_free(struct spool_bundle *b)
{
	if (b == NULL)
		return;
	for (size_t i = 0; i < b->nqid; i++)
		free(b->qids[i]);
	free(b->qids);
	free(b->peer);
	memset(b, 0, sizeof(*b));
}

static enum mg_err
enc_bundle(struct mg_buf *b, const struct spool_bundle *sb)
{
	enum mg_err e;

	if ((e = mg_buf_put_str(b, 'p', sb->peer)) ||
	    (e = mg_buf_put_field_u64(b, 's', (uint64_t)sb->state)) ||
	    (e = mg_buf_put_field_u64(b, 'c', sb->created)) ||
	    (e = mg_buf_put_field_u64(b, 'z', sb->size)))
		return e;
	for (size_t i = 0; i < sb->nqid; i++)
		if ((e = mg_buf_put_str(b, 'q', sb->qids[i])))
			return e;
	return MG_OK;
}

static enum mg_err
dec_bundle(const void *p, size_t n, struct spool_bundle *sb)
{
	struct mg_rd		 rd;
	uint8_t			 tag;
	const unsigned char	*v;
	size_t			 vn;
	uint64_t		 u;
	char			*q, **nq;
	enum mg_err		 e = MG_OK;

	mg_rd_init(&rd, p, n);
	while (!mg_rd_eof(&rd) && e == MG_OK) {
		if (mg_rd_field(&rd, &tag, &v, &vn) != MG_OK)
			return MG_ECORRUPT;
		switch (tag) {
		case 'p':
			free(sb->peer);
			sb->peer = NULL;
			e = mg_field_str(v, vn, &sb->peer);
			break;
		case 's':
			e = mg_field_u64(v, vn, &u);
			sb->state = (int)u;
			break;
		case 'c':
			e = mg_field_u64(v, vn, &sb->created);
			break;
		case 'z':
			e = mg_field_u64(v, vn, &sb->size);
			break;
		case 'q':
			if ((e = mg_field_str(v, vn, &q)) != MG_OK)
				break;
			if ((nq = realloc(sb->qids, (sb->nqid + 1) *
			    sizeof(*nq))) == NULL) {
				free(q);
				e = MG_ENOMEM;
				break;
			}
			sb->qids = nq;
			sb->qids[sb->nqid++] = q;
			break;
		default:
			break;
		}
	}
	if (e == MG_OK && sb->peer == NULL)
		e = MG_ECORRUPT;
	return e == MG_EDATA ? MG_ECORRUPT : e;
}

/* Move recipients of qid in state `from' (and bundle, if given) to `to'. */
static int
move_rcpts(struct spool *sp, DB_TXN *txn, const char *qid,
    enum rcpt_state from, const char *bundle, enum rcpt_state to,
    const char *result, const char *newbundle, size_t *moved)
{
	struct mg_rcpt		 rc;
	struct spool_rcpt_state	 rs;
	struct mg_buf		 b;
	unsigned char		 rk[RKEY_LEN];
	DBT			 key, val;
	int			 r = 0;

	mg_buf_init(&b, VAL_MAX);
	for (size_t i = 0; ; i++) {
		memset(&rc, 0, sizeof(rc));
		memset(&rs, 0, sizeof(rs));
		rcpt_key(rk, qid, i);
		dbt_init(&key, rk, sizeof(rk));
		dbt_init(&val, NULL, 0);
		if ((r = sp->rcpt->get(sp->rcpt, txn, &key, &val, DB_RMW))) {
			if (r == DB_NOTFOUND)
				r = 0;
			break;
		}
		if (dec_rcpt(val.data, val.size, &rc, &rs) != MG_OK) {
			r = EINVAL;
			goto next;
		}
		if (rs.state != from || (bundle && (rs.bundle == NULL ||
		    strcmp(rs.bundle, bundle) != 0)))
			goto next;
		rs.state = to;
		rs.updated = (uint64_t)time(NULL);
		if (result) {
			free(rs.result);
			rs.result = strdup(result);
		}
		free(rs.bundle);
		rs.bundle = newbundle ? strdup(newbundle) : NULL;
		mg_buf_reset(&b);
		if (enc_rcpt(&b, &rc, &rs) != MG_OK) {
			r = EINVAL;
			goto next;
		}
		dbt_init(&val, b.data, b.len);
		if ((r = sp->rcpt->put(sp->rcpt, txn, &key, &val, 0)) == 0)
			(*moved)++;
next:
		free(rc.addr);
		free(rc.orcpt);
		free(rs.result);
		free(rs.bundle);
		if (r)
			break;
	}
	mg_buf_free(&b);
	return r;
}

static int
put_bundle(struct spool *sp, DB_TXN *txn, const struct spool_bundle *sb)
{
	struct mg_buf	b;
	DBT		key, val;
	int		r;

	mg_buf_init(&b, 16 * 1024 * 1024);
	if (enc_bundle(&b, sb) != MG_OK) {
		mg_buf_free(&b);
		return ENOMEM;
	}
	dbt_init(&key, sb->id, 32);
	dbt_init(&val, b.data, b.len);
	r = sp->bundle->put(sp->bundle, txn, &key, &val, 0);
	mg_buf_free(&b);
	return r;
}

static int
get_bundle(struct spool *sp, DB_TXN *txn, const char *id,
    struct spool_bundle *sb, int rmw)
{
	DBT	key, val;
	int	r;

	spool_bundle_free(sb);
	dbt_init(&key, id, 32);
	dbt_init(&val, NULL, 0);
	if ((r = sp->bundle->get(sp->bundle, txn, &key, &val,
	    rmw ? DB_RMW : 0)) != 0)
		return r;
	memcpy(sb->id, id, 32);
	sb->id[32] = '\0';
	return dec_bundle(val.data, val.size, sb) == MG_OK ? 0 : EINVAL;
}

struct begin_arg {
	struct spool_bundle	sb;
	size_t			moved;
};

static int
begin_fn(struct spool *sp, DB_TXN *txn, void *varg)
{
	struct begin_arg	*a = varg;
	int			 r;

	a->moved = 0;
	for (size_t i = 0; i < a->sb.nqid; i++)
		if ((r = move_rcpts(sp, txn, a->sb.qids[i], RS_QUEUED, NULL,
		    RS_BUNDLED, NULL, a->sb.id, &a->moved)) != 0)
			return r;
	return put_bundle(sp, txn, &a->sb);
}

enum mg_err
spool_bundle_begin(struct spool *sp, const char *id, const char *peer,
    char *const *qids, size_t n)
{
	struct begin_arg a;

	if (!spool_bundle_id_valid(id))
		return MG_EDATA;
	memset(&a, 0, sizeof(a));
	memcpy(a.sb.id, id, 33);
	a.sb.peer = (char *)peer;
	a.sb.state = SB_BUILDING;
	a.sb.created = now_usec();	/* bundles of one second keep order */
	a.sb.qids = (char **)qids;
	a.sb.nqid = n;
	return spool_txn(sp, begin_fn, &a);
}

struct state_arg {
	const char	*id;
	int		 state;
	uint64_t	 size;
	uint64_t	 outbox_last;
	int		 found;
};

static int outbox_trim(struct spool *, DB_TXN *, const char *, uint64_t);

static int
ready_fn(struct spool *sp, DB_TXN *txn, void *varg)
{
	struct state_arg	*a = varg;
	struct spool_bundle	 sb;
	int			 r;

	memset(&sb, 0, sizeof(sb));
	if ((r = get_bundle(sp, txn, a->id, &sb, 1)) != 0) {
		a->found = 0;
		spool_bundle_free(&sb);
		return r == DB_NOTFOUND ? 0 : r;
	}
	a->found = 1;
	sb.state = a->state;
	sb.size = a->size;
	r = put_bundle(sp, txn, &sb);
	if (r == 0 && a->outbox_last)
		r = outbox_trim(sp, txn, sb.peer, a->outbox_last);
	spool_bundle_free(&sb);
	return r;
}

enum mg_err
spool_bundle_ready(struct spool *sp, const char *id, uint64_t size,
    uint64_t outbox_last)
{
	struct state_arg	a = { id, SB_READY, size, outbox_last, 0 };
	enum mg_err		e;

	if (!spool_bundle_id_valid(id))
		return MG_ENOTFOUND;
	if ((e = spool_txn(sp, ready_fn, &a)) != MG_OK)
		return e;
	return a.found ? MG_OK : MG_ENOTFOUND;
}

struct finish_arg {
	const char	*id;
	enum rcpt_state	 to;
	const char	*result;
	size_t		 moved;
	int		 found;
};

static int
finish_fn(struct spool *sp, DB_TXN *txn, void *varg)
{
	struct finish_arg	*a = varg;
	struct spool_bundle	 sb;
	DBT			 key;
	int			 r;

	memset(&sb, 0, sizeof(sb));
	a->moved = 0;
	if ((r = get_bundle(sp, txn, a->id, &sb, 1)) != 0) {
		a->found = 0;
		spool_bundle_free(&sb);
		return r == DB_NOTFOUND ? 0 : r;
	}
	a->found = 1;
	for (size_t i = 0; i < sb.nqid && r == 0; i++)
		r = move_rcpts(sp, txn, sb.qids[i], RS_BUNDLED, a->id, a->to,
		    a->result, a->to == RS_QUEUED ? NULL : a->id, &a->moved);
	spool_bundle_free(&sb);
	if (r)
		return r;
	dbt_init(&key, a->id, 32);
	return sp->bundle->del(sp->bundle, txn, &key, 0);
}

static enum mg_err
bundle_finish(struct spool *sp, const char *id, enum rcpt_state to,
    const char *result, size_t *moved)
{
	struct finish_arg	a = { id, to, result, 0, 0 };
	enum mg_err		e;

	if (!spool_bundle_id_valid(id))
		return MG_ENOTFOUND;
	if ((e = spool_txn(sp, finish_fn, &a)) != MG_OK)
		return e;
	if (moved)
		*moved = a.moved;
	return a.found ? MG_OK : MG_ENOTFOUND;
}

enum mg_err
spool_bundle_abandon(struct spool *sp, const char *id)
{
	return bundle_finish(sp, id, RS_QUEUED, NULL, NULL);
}

enum mg_err
spool_bundle_acked(struct spool *sp, const char *id, size_t *nrcpt)
{
	return bundle_finish(sp, id, RS_ACCEPTED, "accepted by the gateway",
	    nrcpt);
}

struct list_arg {
	const char		*peer;
	struct spool_bundle	*v;
	size_t			 n;
	enum mg_err		 e;
};

static int
list_fn(struct spool *sp, DB_TXN *txn, void *varg)
{
	struct list_arg		*a = varg;
	struct spool_bundle	 sb, *nv;
	DBC			*c;
	DBT			 key, val;
	int			 r, r2;

	for (size_t i = 0; i < a->n; i++)
		spool_bundle_free(&a->v[i]);
	a->n = 0;
	if ((r = sp->bundle->cursor(sp->bundle, txn, &c, 0)) != 0)
		return r;
	dbt_init(&key, NULL, 0);
	dbt_init(&val, NULL, 0);
	while ((r = c->get(c, &key, &val, DB_NEXT)) == 0) {
		memset(&sb, 0, sizeof(sb));
		if (key.size != 32 || dec_bundle(val.data, val.size, &sb)) {
			spool_bundle_free(&sb);
			continue;
		}
		memcpy(sb.id, key.data, 32);
		sb.id[32] = '\0';
		if (a->peer && strcmp(a->peer, sb.peer) != 0) {
			spool_bundle_free(&sb);
			continue;
		}
		if ((nv = realloc(a->v, (a->n + 1) * sizeof(*nv))) == NULL) {
			spool_bundle_free(&sb);
			a->e = MG_ENOMEM;
			break;
		}
		a->v = nv;
		a->v[a->n++] = sb;
	}
	r2 = c->close(c);
	if (r == DB_NOTFOUND)
		r = 0;
	return r ? r : r2;
}

static int
by_created(const void *x, const void *y)
{
	const struct spool_bundle *a = x, *b = y;

	if (a->created != b->created)
		return a->created < b->created ? -1 : 1;
	return strcmp(a->id, b->id);
}

enum mg_err
spool_bundle_list(struct spool *sp, const char *peer,
    struct spool_bundle **out, size_t *n)
{
	struct list_arg	a = { peer, NULL, 0, MG_OK };
	enum mg_err	e;

	*out = NULL;
	*n = 0;
	e = spool_txn(sp, list_fn, &a);
	if (e == MG_OK)
		e = a.e;
	if (e != MG_OK) {
		for (size_t i = 0; i < a.n; i++)
			spool_bundle_free(&a.v[i]);
		free(a.v);
		return e;
	}
	if (a.n > 1)
		qsort(a.v, a.n, sizeof(*a.v), by_created);
	*out = a.v;
	*n = a.n;
	return MG_OK;
}

struct getb_arg {
	const char		*id;
	struct spool_bundle	*sb;
	int			 found;
};

static int
getb_fn(struct spool *sp, DB_TXN *txn, void *varg)
{
	struct getb_arg	*a = varg;
	int		 r = get_bundle(sp, txn, a->id, a->sb, 0);

	a->found = r == 0;
	return r == DB_NOTFOUND ? 0 : r;
}

enum mg_err
spool_bundle_get(struct spool *sp, const char *id, struct spool_bundle *sb)
{
	struct getb_arg	a = { id, sb, 0 };
	enum mg_err	e;

	memset(sb, 0, sizeof(*sb));
	if (!spool_bundle_id_valid(id))
		return MG_ENOTFOUND;
	if ((e = spool_txn(sp, getb_fn, &a)) != MG_OK)
		return e;
	return a.found ? MG_OK : MG_ENOTFOUND;
}

enum mg_err
spool_bundle_path(struct spool *sp, const char *id, char *buf, size_t len)
{
	if (!spool_bundle_id_valid(id))
		return MG_ENOTFOUND;
	return mg_path(buf, len, "%s/outgoing/%s", sp->dir, id);
}

void
spool_bundle_sweep(struct spool *sp)
{
	struct spool_bundle	 sb;
	char			 dir[4200], path[4300];
	DIR			*d;
	struct dirent		*de;

	if (mg_path(dir, sizeof(dir), "%s/outgoing", sp->dir) != MG_OK ||
	    (d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		char id[33];

		/* outgoing/ID and outgoing/ID.tmp */
		if (strlen(de->d_name) < 32)
			continue;
		memcpy(id, de->d_name, 32);
		id[32] = '\0';
		if (!spool_bundle_id_valid(id) || (de->d_name[32] != '\0' &&
		    strcmp(de->d_name + 32, ".tmp") != 0))
			continue;
		if (de->d_name[32] == '\0' &&
		    spool_bundle_get(sp, id, &sb) != MG_ENOTFOUND) {
			spool_bundle_free(&sb);
			continue;
		}
		if (mg_path(path, sizeof(path), "%s/%s", dir, de->d_name) ==
		    MG_OK && unlink(path) == 0)
			mg_info("bundle %s: removed unfinished file", id);
	}
	closedir(d);
}

/* Import */

struct import_arg {
	const char			*peer;
	const char			*bundle_id;
	const struct mg_envelope	*msgs;
	size_t				 n;
	int				*dup;
	size_t				 created;
	int				 seen_bundle;
};

static int
seen_put(struct spool *sp, DB_TXN *txn, const char *k, int *existed)
{
	unsigned char	t[8];
	DBT		key, val;
	int		r;

	dbt_init(&key, k, strlen(k));
	dbt_init(&val, NULL, 0);
	r = sp->seen->get(sp->seen, txn, &key, &val, DB_RMW);
	if (r != 0 && r != DB_NOTFOUND)
		return r;
	*existed = r == 0;
	if (*existed)
		return 0;
	mg_put_be64(t, (uint64_t)time(NULL));
	dbt_init(&val, t, sizeof(t));
	return sp->seen->put(sp->seen, txn, &key, &val, 0);
}

static int
import_fn(struct spool *sp, DB_TXN *txn, void *varg)
{
	struct import_arg	*a = varg;
	char			 k[600];
	int			 r, existed;

	a->created = 0;
	snprintf(k, sizeof(k), "bundle:%s:%s", a->peer, a->bundle_id);
	if ((r = seen_put(sp, txn, k, &existed)) != 0)
		return r;
	if ((a->seen_bundle = existed))
		return 0;
	for (size_t i = 0; i < a->n; i++) {
		const struct mg_envelope *env = &a->msgs[i];

		snprintf(k, sizeof(k), "msg:%s:%s", a->peer, env->peer_qid);
		if ((r = seen_put(sp, txn, k, &existed)) != 0)
			return r;
		if ((a->dup[i] = existed))
			continue;
		if ((r = put_message(sp, txn, env, DB_NOOVERWRITE)) != 0)
			return r;
		a->created++;
	}
	return 0;
}

enum mg_err
spool_import(struct spool *sp, const char *peer, const char *bundle_id,
    const struct mg_envelope *msgs, size_t n, int *dup, size_t *created)
{
	struct import_arg	a = { peer, bundle_id, msgs, n, dup, 0, 0 };
	enum mg_err		e;

	*created = 0;
	if ((e = spool_txn(sp, import_fn, &a)) != MG_OK)
		return e;
	if (a.seen_bundle)
		return MG_EEXIST;
	*created = a.created;
	return MG_OK;
}

enum mg_err
spool_rcpt_update_addr(struct spool *sp, const char *qid, const char *addr,
    enum rcpt_state st, const char *result)
{
	struct spool_msg	m;
	enum mg_err		e;

	if ((e = spool_msg_get(sp, qid, &m)) != MG_OK)
		return e;
	e = MG_ENOTFOUND;
	for (size_t i = 0; i < m.env.nrcpt; i++)
		if (strcmp(m.env.rcpts[i].addr, addr) == 0) {
			e = spool_rcpt_update(sp, qid, i, st, result, NULL);
			break;
		}
	spool_msg_free(&m);
	return e;
}

/* Outbox */

static size_t
outbox_key(unsigned char *k, const char *peer, uint64_t seq)
{
	size_t n = strlen(peer);

	memcpy(k, peer, n);
	k[n] = '\0';
	mg_put_be64(k + n + 1, seq);
	return n + 9;
}

struct obadd_arg {
	const char	*peer;
	const void	*rec;
	size_t		 len;
};

static int
outbox_put(struct spool *sp, DB_TXN *txn, const char *peer, const void *rec,
    size_t len)
{
	unsigned char		 k[300];
	size_t			 kn;
	uint64_t		 seq = 1;
	DBC			*c;
	DBT			 key, val;
	int			 r, r2;

	/* The next sequence number: one past the peer's last key. */
	kn = outbox_key(k, peer, UINT64_MAX);
	if ((r = sp->outbox->cursor(sp->outbox, txn, &c, 0)) != 0)
		return r;
	dbt_init(&key, k, kn);
	key.flags = DB_DBT_USERMEM;
	key.ulen = sizeof(k);
	dbt_init(&val, NULL, 0);
	val.flags = DB_DBT_PARTIAL;
	r = c->get(c, &key, &val, DB_SET_RANGE);
	if (r == 0)
		r = c->get(c, &key, &val, DB_PREV);
	else if (r == DB_NOTFOUND)
		r = c->get(c, &key, &val, DB_LAST);
	if (r == 0 && key.size == kn && memcmp(key.data, peer, kn - 8) == 0)
		seq = mg_get_be64((unsigned char *)key.data + kn - 8) + 1;
	r2 = c->close(c);
	if (r && r != DB_NOTFOUND)
		return r;
	if (r2)
		return r2;
	kn = outbox_key(k, peer, seq);
	dbt_init(&key, k, kn);
	dbt_init(&val, rec, len);
	return sp->outbox->put(sp->outbox, txn, &key, &val, DB_NOOVERWRITE);
}

static int
obadd_fn(struct spool *sp, DB_TXN *txn, void *varg)
{
	struct obadd_arg *a = varg;

	return outbox_put(sp, txn, a->peer, a->rec, a->len);
}

enum mg_err
spool_outbox_add(struct spool *sp, const char *peer, const void *rec,
    size_t len)
{
	struct obadd_arg a = { peer, rec, len };

	if (strlen(peer) > 255)
		return MG_ELIMIT;
	return spool_txn(sp, obadd_fn, &a);
}

struct obwalk_arg {
	const char	*peer;
	size_t		 max;
	int		(*fn)(const void *, size_t, void *);
	void		*arg;
	uint64_t	 last;
	size_t		 given;
};

static int
obwalk_fn(struct spool *sp, DB_TXN *txn, void *varg)
{
	struct obwalk_arg	*a = varg;
	unsigned char		 k[300];
	size_t			 kn;
	DBC			*c;
	DBT			 key, val;
	int			 r, r2, stop = 0;

	/* Callbacks may run again if the transaction is retried. */
	a->last = 0;
	a->given = 0;
	kn = outbox_key(k, a->peer, 0);
	if ((r = sp->outbox->cursor(sp->outbox, txn, &c, 0)) != 0)
		return r;
	dbt_init(&key, k, kn);
	key.flags = DB_DBT_USERMEM;
	key.ulen = sizeof(k);
	dbt_init(&val, NULL, 0);
	for (r = c->get(c, &key, &val, DB_SET_RANGE); r == 0 && !stop &&
	    a->given < a->max; r = c->get(c, &key, &val, DB_NEXT)) {
		if (key.size != kn || memcmp(key.data, a->peer, kn - 8) != 0)
			break;
		a->last = mg_get_be64((unsigned char *)key.data + kn - 8);
		a->given++;
		stop = a->fn(val.data, val.size, a->arg);
	}
	r2 = c->close(c);
	if (r == DB_NOTFOUND)
		r = 0;
	return r ? r : r2;
}

enum mg_err
spool_outbox_walk(struct spool *sp, const char *peer, size_t max,
    int (*fn)(const void *, size_t, void *), void *arg, uint64_t *last)
{
	struct obwalk_arg	a = { peer, max, fn, arg, 0, 0 };
	enum mg_err		e;

	if (strlen(peer) > 255)
		return MG_ELIMIT;
	e = spool_txn(sp, obwalk_fn, &a);
	*last = a.last;
	return e;
}

static int
outbox_trim(struct spool *sp, DB_TXN *txn, const char *peer, uint64_t last)
{
	unsigned char	 k[300];
	size_t		 kn;
	DBC		*c;
	DBT		 key, val;
	int		 r, r2;

	kn = outbox_key(k, peer, 0);
	if ((r = sp->outbox->cursor(sp->outbox, txn, &c, 0)))
		return r;
	dbt_init(&key, k, kn);
	key.flags = DB_DBT_USERMEM;
	key.ulen = sizeof(k);
	dbt_init(&val, NULL, 0);
	val.flags = DB_DBT_PARTIAL;
	for (r = c->get(c, &key, &val, DB_SET_RANGE); r == 0;
	    r = c->get(c, &key, &val, DB_NEXT)) {
		if (key.size != kn || memcmp(key.data, peer, kn - 8) ||
		    mg_get_be64((unsigned char *)key.data + kn - 8) > last)
			break;
		if ((r = c->del(c, 0)) != 0)
			break;
	}
	r2 = c->close(c);
	if (r == DB_NOTFOUND)
		r = 0;
	return r ? r : r2;
}

/*
 * Read, change and write back recipient idx of qid inside txn: mod gets
 * the decoded state.  *found says whether the record exists (a missing
 * one is no error: the message may have been deleted meanwhile).
 */
static int
rcpt_modify(struct spool *sp, DB_TXN *txn, const char *qid, size_t idx,
    void (*mod)(struct spool_rcpt_state *, const void *), const void *arg,
    int *found)
{
	struct mg_rcpt		 rc;
	struct spool_rcpt_state	 rs;
	struct mg_buf		 b;
	unsigned char		 rk[RKEY_LEN];
	DBT			 key, val;
	int			 r;

	memset(&rc, 0, sizeof(rc));
	memset(&rs, 0, sizeof(rs));
	mg_buf_init(&b, VAL_MAX);
	rcpt_key(rk, qid, idx);
	dbt_init(&key, rk, sizeof(rk));
	dbt_init(&val, NULL, 0);
	*found = 0;
	if ((r = sp->rcpt->get(sp->rcpt, txn, &key, &val, DB_RMW)) != 0) {
		if (r == DB_NOTFOUND)
			r = 0;
		goto out;
	}
	*found = 1;
	if (dec_rcpt(val.data, val.size, &rc, &rs) != MG_OK) {
		r = EINVAL;
		goto out;
	}
	mod(&rs, arg);
	if (enc_rcpt(&b, &rc, &rs) != MG_OK) {
		r = EINVAL;
		goto out;
	}
	dbt_init(&val, b.data, b.len);
	r = sp->rcpt->put(sp->rcpt, txn, &key, &val, 0);
out:
	free(rc.addr);
	free(rc.orcpt);
	free(rs.result);
	free(rs.bundle);
	mg_buf_free(&b);
	return r;
}

struct result_arg {
	const char	*qid;
	size_t		 idx;
	enum rcpt_state	 state;
	const char	*result;
	uint64_t	 next_try;
	int		 mark_reported;
	const char	*peer;
	const void	*rec;
	size_t		 reclen;
	int		 found;
};

static void
set_result(struct spool_rcpt_state *rs, const void *varg)
{
	const struct result_arg *a = varg;

	rs->state = a->state;
	rs->updated = (uint64_t)time(NULL);
	rs->next_try = a->next_try;
	rs->attempts++;
	rs->inflight = 0;
	if (a->mark_reported)
		rs->reported = 1;
	free(rs->result);
	rs->result = a->result ? strdup(a->result) : NULL;
}

static int
result_fn(struct spool *sp, DB_TXN *txn, void *varg)
{
	struct result_arg	*a = varg;
	int			 r;

	if ((r = rcpt_modify(sp, txn, a->qid, a->idx, set_result, a,
	    &a->found)) != 0 || !a->found)
		return r;
	if (a->peer && a->rec)
		r = outbox_put(sp, txn, a->peer, a->rec, a->reclen);
	return r;
}

struct inflight_arg {
	const char	*qid;
	const size_t	*idx;
	size_t		 n;
	uint64_t	 when;
};

static void
set_inflight(struct spool_rcpt_state *rs, const void *varg)
{
	rs->inflight = ((const struct inflight_arg *)varg)->when;
}

static int
inflight_fn(struct spool *sp, DB_TXN *txn, void *varg)
{
	struct inflight_arg	*a = varg;
	int			 r = 0, found;

	for (size_t i = 0; i < a->n && r == 0; i++)
		r = rcpt_modify(sp, txn, a->qid, a->idx[i], set_inflight, a,
		    &found);
	return r;
}

enum mg_err
spool_rcpt_inflight(struct spool *sp, const char *qid, const size_t *idx,
    size_t n, uint64_t when)
{
	struct inflight_arg a = { qid, idx, n, when };

	if (!mg_qid_valid(qid))
		return MG_EDATA;
	return spool_txn_flags(sp, inflight_fn, &a, DB_TXN_WRITE_NOSYNC);
}

enum mg_err
spool_rcpt_result(struct spool *sp, const char *qid, size_t idx,
    enum rcpt_state state, const char *result, uint64_t next_try,
    int mark_reported, const char *peer, const void *rec, size_t reclen)
{
	struct result_arg	a = { qid, idx, state, result, next_try,
	    mark_reported, peer, rec, reclen, 0 };
	enum mg_err		e;

	if (!mg_qid_valid(qid) || (peer && strlen(peer) > 255))
		return MG_EDATA;
	if ((e = spool_txn(sp, result_fn, &a)) != MG_OK)
		return e;
	return a.found ? MG_OK : MG_ENOTFOUND;
}
