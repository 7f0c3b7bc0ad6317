/*
 * packer.c - build bundle files from the spool.
 *
 * The order of events makes a crash at any point harmless:
 *   1. spool_bundle_begin: chosen recipients become "bundled" (BUILDING)
 *   2. the bundle is written to outgoing/ID.tmp, fsync'd, renamed, and
 *      the directory fsync'd
 *   3. spool_bundle_ready: READY, and the outbox records it carries go
 * A BUILDING bundle left by a crash is abandoned on the next run (its
 * recipients return to "queued"), and a stray file is swept.
 * Message content streams from the body file into the encoder; nothing
 * holds a whole message.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mgate/buf.h"
#include "mgate/bundle.h"
#include "mgate/fsutil.h"
#include "mgate/header.h"
#include "mgate/log.h"
#include "mgate/maildrop.h"
#include "mgate/packer.h"

#define OUTBOX_BATCH	10000

enum mg_err
peer_keys_load(const struct mg_config *cfg, const struct mg_peer *peer,
    struct peer_keys *pk, char *errbuf, size_t errlen)
{
	enum mg_err e;

	memset(pk, 0, sizeof(*pk));
	pk->cfg = cfg;
	pk->peer = peer;
	if (cfg->private_key == NULL) {
		snprintf(errbuf, errlen, "%s: private_key is not set (make "
		    "one with `mgate keygen')", cfg->path);
		return MG_ECONFIG;
	}
	if (peer->public_key == NULL) {
		snprintf(errbuf, errlen, "%s:%d: peer %s has no public_key "
		    "(the file its `mgate keygen' made)", cfg->path,
		    peer->line, peer->name);
		return MG_ECONFIG;
	}
	if ((e = keys_load_private(cfg->private_key, &pk->self)) != MG_OK) {
		snprintf(errbuf, errlen, "%s", keys_errmsg());
		return e == MG_ENOPERM ? e : MG_ECONFIG;
	}
	if ((e = keys_load_public(peer->public_key, &pk->peer_pub)) != MG_OK) {
		snprintf(errbuf, errlen, "%s", keys_errmsg());
		keys_free(pk->self);
		pk->self = NULL;
		return MG_ECONFIG;
	}
	return MG_OK;
}

void
peer_keys_free(struct peer_keys *pk)
{
	keys_free(pk->self);
	pk->self = NULL;
}

enum mg_err
packer_status_encode(struct mg_buf *b, const struct bundle_status *st)
{
	enum mg_err e;

	if ((e = mg_buf_put_str(b, 'q', st->qid)) ||
	    (e = mg_buf_put_str(b, 'a', st->rcpt)) ||
	    (e = mg_buf_put_field_u64(b, 's', (uint64_t)st->state)) ||
	    (e = mg_buf_put_str(b, 'c', st->status)) ||
	    (e = mg_buf_put_str(b, 'h', st->remote)) ||
	    (e = mg_buf_put_str(b, 'd', st->diag)) ||
	    (e = mg_buf_put_field_u64(b, 't', (uint64_t)st->time)) ||
	    (st->next_hop_dsn && (e = mg_buf_put_field_u64(b, 'D', 1))))
		return e;
	return MG_OK;
}

static unsigned
notify_to_bundle(unsigned n)
{
	return ((n & MG_NOTIFY_SUCCESS) ? BUNDLE_NOTIFY_SUCCESS : 0) |
	    ((n & MG_NOTIFY_FAILURE) ? BUNDLE_NOTIFY_FAILURE : 0) |
	    ((n & MG_NOTIFY_DELAY) ? BUNDLE_NOTIFY_DELAY : 0) |
	    ((n & MG_NOTIFY_NEVER) ? BUNDLE_NOTIFY_NEVER : 0);
}

/* Candidates: messages with queued recipients, not received from a peer. */
struct cand {
	char		qid[MG_QID_LEN + 1];
	uint64_t	size;
	int		priority;
};

struct select_arg {
	const char	*peer;
	int		 gateway;
	struct cand	*v;
	size_t		 n;
	size_t		 cap;
	int		 oom;
};

static int
select_fn(const struct spool_msg *m, void *varg)
{
	struct select_arg	*a = varg;
	struct cand		*nv;
	int			 queued = 0;

	/*
	 * A site sends its own mail to its gateway; a gateway sends a site
	 * only what was accepted for it (inbound mail).  Mail that came
	 * from a peer is never sent back to one.
	 */
	if (a->gateway ? (m->env.via == NULL || strcmp(m->env.via, a->peer)) :
	    (m->env.peer != NULL || m->env.via != NULL))
		return 0;
	for (size_t i = 0; i < m->env.nrcpt; i++)
		if (m->rs[i].state == RS_QUEUED)
			queued = 1;
	if (!queued)
		return 0;
	if (a->n == a->cap) {
		a->cap = a->cap ? a->cap * 2 : 64;
		if ((nv = realloc(a->v, a->cap * sizeof(*nv))) == NULL) {
			a->oom = 1;
			return 1;
		}
		a->v = nv;
	}
	memcpy(a->v[a->n].qid, m->env.qid, sizeof(a->v[a->n].qid));
	a->v[a->n].size = m->env.size;
	a->v[a->n].priority = m->env.priority;
	a->n++;
	return 0;
}

/* Urgent first, then small before large, then oldest (queue-ID order). */
static int
by_size(const void *x, const void *y)
{
	const struct cand *a = x, *b = y;

	if (a->priority != b->priority)
		return a->priority > b->priority ? -1 : 1;
	if (a->size != b->size)
		return a->size < b->size ? -1 : 1;
	return strcmp(a->qid, b->qid);
}

/*
 * Inside a bundle the order is free (it commits whole), and deflate only
 * sees the last 32 KiB: a handful of messages.  Mail of one list or one
 * thread shares footers, quoted text and header fields, so putting it
 * side by side makes the bundle smaller: about 9% on the corpus ham.
 * The key: List-Id, then the subject without Re:/Fwd:/[tag] prefixes,
 * then the From domain.
 */
/*
 * A cut link resumes at the last whole chunk, so the chunk is what a cut
 * can cost: 16 KiB is two seconds of a 64 kbit/s link, where 64 KiB was
 * eight.  Each chunk costs 20 bytes (length and tag): 0.12%.
 */
#define PACKER_CHUNK	16384

#define SIMKEY_LEN	256
#define SIMKEY_HEAD	16384	/* header bytes looked at */

struct simkey {
	char	 key[SIMKEY_LEN];
	size_t	 pos;		/* selection order: the tie-break */
	char	*qid;
};

static void
key_part(char *dst, size_t dlen, const char *v, size_t n, int subject)
{
	size_t	o = strlen(dst), i = 0;

	if (o + 2 > dlen)
		return;
	for (;;) {	/* "Re: [list] Fwd: " and the like */
		while (i < n && (v[i] == ' ' || v[i] == '\t'))
			i++;
		if (subject && n - i >= 3 && strncasecmp(v + i, "re:", 3) == 0)
			i += 3;
		else if (subject && n - i >= 4 &&
		    strncasecmp(v + i, "fwd:", 4) == 0)
			i += 4;
		else if (subject && n - i >= 3 &&
		    strncasecmp(v + i, "fw:", 3) == 0)
			i += 3;
		else if (subject && i < n && v[i] == '[' &&
		    memchr(v + i, ']', n - i))
			i = (size_t)((const char *)memchr(v + i, ']', n - i) -
			    v) + 1;
		else
			break;
	}
	for (; i < n && o + 2 < dlen; i++)
		if (v[i] != '\r' && v[i] != '\n')
			dst[o++] = (char)tolower((unsigned char)v[i]);
	dst[o++] = '\001';
	dst[o] = '\0';
}

static void
similarity_key(struct spool *sp, const char *qid, char *key, size_t klen)
{
	struct maildrop_reader	*r = NULL;
	char			 path[4200], err[256], *buf;
	const char		*list = NULL, *subj = NULL, *from = NULL;
	size_t			 have = 0, ll = 0, sl = 0, fl = 0;
	ssize_t			 n;
	enum mg_err		 e;

	key[0] = '\0';
	if ((buf = malloc(SIMKEY_HEAD)) == NULL)
		return;
	if (spool_body_path(sp, qid, path, sizeof(path)) != MG_OK ||
	    maildrop_open(path, &r, err, sizeof(err)) != MG_OK)
		goto out;
	while (have < SIMKEY_HEAD && (n = maildrop_read(r, buf + have,
	    SIMKEY_HEAD - have, &e)) > 0)
		have += (size_t)n;
	for (size_t off = 0, in_field = 0; off < have;) {
		const char	*nl = memchr(buf + off, '\n', have - off);
		size_t		 len = nl ? (size_t)(nl - buf - off) + 1 :
		    have - off, name_len = 0, colon = 0;
		enum mg_hline	 t;

		if (!nl)
			break;	/* a cut line says nothing reliable */
		t = mg_header_classify(buf + off, len, (int)in_field,
		    &name_len, &colon);
		if (t == MG_HLINE_END || t == MG_HLINE_BODY)
			break;
		if (t == MG_HLINE_FIELD) {
			const char *v = buf + off + colon + 1;
			size_t	    vl = len - colon - 1;

			if (name_len == 7 && strncasecmp(buf + off, "list-id",
			    7) == 0 && !list)
				list = v, ll = vl;
			else if (name_len == 7 && strncasecmp(buf + off,
			    "subject", 7) == 0 && !subj)
				subj = v, sl = vl;
			else if (name_len == 4 && strncasecmp(buf + off,
			    "from", 4) == 0 && !from) {
				const char *at = memchr(v, '@', vl);

				if (at)
					fl = vl - (size_t)(at - v), from = at;
			}
			in_field = 1;
		}
		off += len;
	}
	/* No list: after the lists ('~' sorts late), grouped by thread. */
	key_part(key, klen, list ? list : "~", list ? ll : 1, 0);
	key_part(key, klen, subj ? subj : "", sl, 1);
	key_part(key, klen, from ? from : "", fl, 0);
out:
	maildrop_close(r);
	free(buf);
}

static int
by_similarity(const void *x, const void *y)
{
	const struct simkey *a = x, *b = y;
	int c = strcmp(a->key, b->key);

	if (c)
		return c;
	return a->pos < b->pos ? -1 : a->pos > b->pos;
}

/* Reorder qids[0..n) by similarity; on any failure keep the order. */
static void
cluster(struct spool *sp, char **qids, size_t n)
{
	struct simkey *k;

	if (n < 3 || (k = calloc(n, sizeof(*k))) == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		similarity_key(sp, qids[i], k[i].key, sizeof(k[i].key));
		k[i].pos = i;
		k[i].qid = qids[i];
	}
	qsort(k, n, sizeof(*k), by_similarity);
	for (size_t i = 0; i < n; i++)
		qids[i] = k[i].qid;
	free(k);
}

struct pack {
	struct spool		*sp;
	const struct peer_keys	*pk;
	struct bundle_enc	*enc;
	int			 fd;
	char			*err;
	size_t			 errlen;
	struct pack_result	*res;
};

static enum mg_err
sink_fd(void *arg, const void *p, size_t n)
{
	struct pack *pk = arg;

	return mg_write_all(pk->fd, p, n);
}

static enum mg_err
pack_message(struct pack *p, const char *qid, const char *bid)
{
	struct spool_msg	 m;
	struct maildrop_reader	*r = NULL;
	struct bundle_rcpt	*br = NULL;
	struct bundle_msg	 bm;
	char			 path[4200], err[512];
	unsigned char		 buf[65536];
	ssize_t			 n;
	size_t			 k = 0;
	enum mg_err		 e;

	if ((e = spool_msg_get(p->sp, qid, &m)) != MG_OK)
		return e == MG_ENOTFOUND ? MG_OK : e;	/* deleted */
	if ((br = calloc(m.env.nrcpt, sizeof(*br))) == NULL) {
		e = MG_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < m.env.nrcpt; i++) {
		if (m.rs[i].state != RS_BUNDLED || m.rs[i].bundle == NULL ||
		    strcmp(m.rs[i].bundle, bid) != 0)
			continue;
		br[k].addr = m.env.rcpts[i].addr;
		br[k].orcpt = m.env.rcpts[i].orcpt;
		br[k].notify = notify_to_bundle(m.env.rcpts[i].notify);
		k++;
	}
	if (k == 0)	/* held or deleted between selection and marking */
		goto out;
	if ((e = spool_body_path(p->sp, qid, path, sizeof(path))) != MG_OK ||
	    (e = maildrop_open(path, &r, err, sizeof(err))) != MG_OK) {
		snprintf(p->err, p->errlen, "%s: cannot read body file: %s",
		    qid, e == MG_ENOTFOUND ? "missing" : err);
		goto out;
	}
	memset(&bm, 0, sizeof(bm));
	bm.qid = qid;
	bm.sender = m.env.sender;
	bm.envid = m.env.envid;
	bm.ret = m.env.ret;
	bm.rcpts = br;
	bm.nrcpt = k;
	bm.size = m.env.size;
	if ((e = bundle_enc_msg_begin(p->enc, &bm)) != MG_OK)
		goto enc_fail;
	while ((n = maildrop_read(r, buf, sizeof(buf), &e)) > 0)
		if ((e = bundle_enc_msg_write(p->enc, buf, (size_t)n)))
			goto enc_fail;
	if (n < 0) {
		snprintf(p->err, p->errlen, "%s: body file %s is corrupt or "
		    "unreadable: %s", qid, path, mg_strerror(e));
		goto out;
	}
	if ((e = bundle_enc_msg_end(p->enc)) != MG_OK)
		goto enc_fail;
	p->res->nmsg++;
	p->res->raw += m.env.size;
	goto out;
enc_fail:
	snprintf(p->err, p->errlen, "%s: bundle encoder: %s", qid,
	    bundle_enc_errmsg(p->enc));
out:
	maildrop_close(r);
	free(br);
	spool_msg_free(&m);
	return e;
}

struct obpack {
	struct pack	*p;
	enum mg_err	 e;
};

static int
outbox_fn(const void *rec, size_t len, void *varg)
{
	struct obpack		*o = varg;
	struct bundle_status	 st;
	struct mg_rd		 rd;
	uint8_t			 tag;
	const unsigned char	*v;
	size_t			 vn;
	uint64_t		 u;
	char			*s[5] = { NULL, NULL, NULL, NULL, NULL };

	memset(&st, 0, sizeof(st));
	mg_rd_init(&rd, rec, len);
	while (!mg_rd_eof(&rd)) {
		int slot = -1;

		if (mg_rd_field(&rd, &tag, &v, &vn) != MG_OK)
			goto bad;
		switch (tag) {
		case 'q': slot = 0; break;
		case 'a': slot = 1; break;
		case 'c': slot = 2; break;
		case 'h': slot = 3; break;
		case 'd': slot = 4; break;
		case 's':
			if (mg_field_u64(v, vn, &u) != MG_OK)
				goto bad;
			st.state = (int)u;
			break;
		case 't':
			if (mg_field_u64(v, vn, &u) != MG_OK)
				goto bad;
			st.time = (int64_t)u;
			break;
		case 'D':
			if (mg_field_u64(v, vn, &u) != MG_OK)
				goto bad;
			st.next_hop_dsn = u != 0;
			break;
		default:
			break;
		}
		if (slot >= 0) {
			free(s[slot]);
			s[slot] = NULL;
			if (mg_field_str(v, vn, &s[slot]) != MG_OK)
				goto bad;
		}
	}
	if (s[0] == NULL || s[1] == NULL)
		goto bad;
	st.qid = s[0];
	st.rcpt = s[1];
	st.status = s[2] ? s[2] : "";
	st.remote = s[3] ? s[3] : "";
	st.diag = s[4] ? s[4] : "";
	if ((o->e = bundle_enc_status(o->p->enc, &st)) == MG_OK)
		o->p->res->nstatus++;
	else
		snprintf(o->p->err, o->p->errlen, "status for %s: %s", st.qid,
		    bundle_enc_errmsg(o->p->enc));
	goto out;
bad:
	/* A record we wrote ourselves and cannot read: skip, say so. */
	mg_warn("outbox: skipping an unreadable status record");
out:
	for (int i = 0; i < 5; i++)
		free(s[i]);
	return o->e != MG_OK;
}

static enum mg_err
open_tmp(const char *path, int *fd)
{
	if ((*fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600)) < 0)
		return mg_err_from_errno(errno);
	return MG_OK;
}

static enum mg_err
commit_file(int fd, const char *tmp, const char *dst, const char *dir)
{
	struct stat st;

	/* Never rename over a device, a directory or a link: /dev/null! */
	if (lstat(dst, &st) == 0 && !S_ISREG(st.st_mode)) {
		errno = EEXIST;
		return MG_EEXIST;
	}
	if (fsync(fd) < 0)
		return errno == ENOSPC ? MG_ENOSPC : MG_EIO;
	if (rename(tmp, dst) < 0)
		return mg_err_from_errno(errno);
	return mg_fsync_dir(dir);
}

static void
random_id(char id[33])
{
	unsigned char raw[BUNDLE_ID_LEN];

	if (getrandom(raw, sizeof(raw), 0) != sizeof(raw))
		abort();	/* no entropy: never make a guessable ID */
	bundle_id_hex(raw, id);
}

static void
hex_to_raw(const char *hex, unsigned char *raw)
{
	for (int i = 0; i < BUNDLE_ID_LEN; i++) {
		unsigned v;

		sscanf(hex + 2 * i, "%2x", &v);
		raw[i] = (unsigned char)v;
	}
}

static int
peek_fn(const void *rec, size_t len, void *arg)
{
	return 1;
}

/* Undo bundles a crash left half-built, and sweep stray files. */
static void
recover_building(struct spool *sp, const char *peer)
{
	struct spool_bundle	*v = NULL;
	size_t			 n = 0;
	char			 path[4200];

	if (spool_bundle_list(sp, peer, &v, &n) != MG_OK)
		return;
	for (size_t i = 0; i < n; i++) {
		if (v[i].state != SB_BUILDING)
			continue;
		if (spool_bundle_abandon(sp, v[i].id) == MG_OK) {
			mg_info("bundle %s: abandoned unfinished bundle for %s"
			    "; its mail is queued again", v[i].id, peer);
			if (spool_bundle_path(sp, v[i].id, path,
			    sizeof(path)) == MG_OK)
				unlink(path);
		}
	}
	for (size_t i = 0; i < n; i++)
		spool_bundle_free(&v[i]);
	free(v);
	spool_bundle_sweep(sp);
}

enum mg_err
packer_build(struct spool *sp, const struct peer_keys *pk,
    struct pack_result *res, char *errbuf, size_t errlen)
{
	struct select_arg		 sel = { NULL, 0, NULL, 0, 0, 0 };
	struct bundle_enc_params	 bp;
	struct pack			 p;
	struct obpack			 ob;
	char				**qids = NULL;
	char				 dst[4200], tmp[4300], dir[4200];
	unsigned char			 rawid[BUNDLE_ID_LEN];
	uint64_t			 total = 0, last = 0;
	size_t				 nq = 0, have_status = 0;
	enum mg_err			 e;
	int				 begun = 0;

	memset(res, 0, sizeof(*res));
	memset(&p, 0, sizeof(p));
	p.sp = sp;
	p.pk = pk;
	p.fd = -1;
	p.err = errbuf;
	p.errlen = errlen;
	p.res = res;
	errbuf[0] = '\0';
	recover_building(sp, pk->peer->name);
	sel.peer = pk->peer->name;
	sel.gateway = pk->cfg->role == MG_ROLE_GATEWAY;

	if ((e = spool_walk(sp, select_fn, &sel)) != MG_OK || sel.oom) {
		snprintf(errbuf, errlen, "reading the queue: %s",
		    mg_strerror(sel.oom ? MG_ENOMEM : e));
		e = sel.oom ? MG_ENOMEM : e;
		goto out;
	}
	if (sel.n > 1)
		qsort(sel.v, sel.n, sizeof(*sel.v), by_size);
	if ((qids = calloc(sel.n + 1, sizeof(*qids))) == NULL) {
		e = MG_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < sel.n; i++) {
		/* One message larger than the limit still goes, alone. */
		if (nq > 0 && total + sel.v[i].size >
		    pk->peer->max_bundle_size)
			break;
		qids[nq++] = sel.v[i].qid;
		total += sel.v[i].size;
	}
	/* Anything in the outbox? A peek decides whether to pack at all. */
	if (spool_outbox_walk(sp, pk->peer->name, 1, peek_fn, NULL, &last)
	    != MG_OK)
		last = 0;
	have_status = last != 0;
	if (nq == 0 && !have_status) {
		e = MG_ENOTFOUND;
		goto out;
	}
	random_id(res->id);
	hex_to_raw(res->id, rawid);
	if ((e = spool_bundle_begin(sp, res->id, pk->peer->name, qids, nq))) {
		snprintf(errbuf, errlen, "marking mail as bundled: %s",
		    mg_strerror(e));
		goto out;
	}
	begun = 1;
	if ((e = spool_bundle_path(sp, res->id, dst, sizeof(dst))) ||
	    (e = mg_path(tmp, sizeof(tmp), "%s.tmp", dst)) ||
	    (e = mg_path(dir, sizeof(dir), "%s/outgoing", spool_dir(sp))))
		goto out;
	if ((e = open_tmp(tmp, &p.fd)) != MG_OK) {
		snprintf(errbuf, errlen, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	memset(&bp, 0, sizeof(bp));
	bp.sender_keys = pk->self;
	bp.sender_name = pk->cfg->local_name;
	bp.receiver_name = pk->peer->name;
	bp.receiver_pub = &pk->peer_pub;
	bp.id = rawid;
	bp.chunk_size = PACKER_CHUNK;
	if ((e = bundle_enc_new(&bp, sink_fd, &p, &p.enc)) != MG_OK) {
		snprintf(errbuf, errlen, "bundle encoder: %s",
		    p.enc ? bundle_enc_errmsg(p.enc) : mg_strerror(e));
		goto out;
	}
	cluster(sp, qids, nq);
	for (size_t i = 0; i < nq; i++)
		if ((e = pack_message(&p, qids[i], res->id)) != MG_OK)
			goto out;
	ob.p = &p;
	ob.e = MG_OK;
	last = 0;
	if (have_status && ((e = spool_outbox_walk(sp, pk->peer->name,
	    OUTBOX_BATCH, outbox_fn, &ob, &last)) != MG_OK ||
	    (e = ob.e) != MG_OK))
		goto out;
	if ((e = bundle_enc_finish(p.enc)) != MG_OK) {
		snprintf(errbuf, errlen, "bundle encoder: %s",
		    bundle_enc_errmsg(p.enc));
		goto out;
	}
	res->size = bundle_enc_bytes_out(p.enc);
	if ((e = commit_file(p.fd, tmp, dst, dir)) != MG_OK) {
		snprintf(errbuf, errlen, "%s: cannot commit bundle file: %s",
		    dst, strerror(errno));
		goto out;
	}
	if ((e = spool_bundle_ready(sp, res->id, res->size, last)) != MG_OK) {
		snprintf(errbuf, errlen, "bundle %s: %s", res->id,
		    mg_strerror(e));
		unlink(dst);
		goto out;
	}
	begun = 0;
	mg_info("bundle %s: for %s, %zu message%s, %zu status record%s, "
	    "%llu bytes from %llu", res->id, pk->peer->name, res->nmsg,
	    res->nmsg == 1 ? "" : "s", res->nstatus, res->nstatus == 1 ?
	    "" : "s", (unsigned long long)res->size,
	    (unsigned long long)res->raw);
out:
	if (p.fd >= 0) {
		close(p.fd);
		if (e != MG_OK)
			unlink(tmp);
	}
	bundle_enc_free(p.enc);
	if (begun && spool_bundle_abandon(sp, res->id) != MG_OK)
		mg_warn("bundle %s: could not undo; the next run will",
		    res->id);
	free(qids);
	free(sel.v);
	if (e != MG_OK && e != MG_ENOTFOUND && errbuf[0] == '\0')
		snprintf(errbuf, errlen, "packing a bundle for %s: %s",
		    pk->peer->name, mg_strerror(e));
	return e;
}

enum mg_err
packer_write_ack(const struct peer_keys *pk, char *const *ids, size_t n,
    const char *path, char *errbuf, size_t errlen)
{
	struct bundle_enc_params	 bp;
	struct bundle_ack		 ack;
	struct pack			 p;
	struct pack_result		 res;
	unsigned char			(*raw)[BUNDLE_ID_LEN] = NULL;
	char				 tmp[4200], dir[4200], *slash;
	enum mg_err			 e;

	memset(&p, 0, sizeof(p));
	p.fd = -1;
	p.res = &res;
	if ((e = mg_path(tmp, sizeof(tmp), "%s.tmp", path)) ||
	    (e = mg_path(dir, sizeof(dir), "%s", path))) {
		snprintf(errbuf, errlen, "%s: path too long", path);
		return e;
	}
	if ((slash = strrchr(dir, '/')) != NULL)
		*(slash == dir ? slash + 1 : slash) = '\0';
	else
		strcpy(dir, ".");
	if ((raw = calloc(n ? n : 1, sizeof(*raw))) == NULL)
		return MG_ENOMEM;
	for (size_t i = 0; i < n; i++)
		hex_to_raw(ids[i], raw[i]);
	unlink(tmp);
	if ((e = open_tmp(tmp, &p.fd)) != MG_OK) {
		snprintf(errbuf, errlen, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	memset(&bp, 0, sizeof(bp));
	bp.sender_keys = pk->self;
	bp.sender_name = pk->cfg->local_name;
	bp.receiver_name = pk->peer->name;
	bp.receiver_pub = &pk->peer_pub;
	memset(&ack, 0, sizeof(ack));
	ack.bundle_ids = (const unsigned char (*)[BUNDLE_ID_LEN])raw;
	ack.nbundle = n;
	if ((e = bundle_enc_new(&bp, sink_fd, &p, &p.enc)) != MG_OK ||
	    (e = bundle_enc_ack(p.enc, &ack)) != MG_OK ||
	    (e = bundle_enc_finish(p.enc)) != MG_OK) {
		snprintf(errbuf, errlen, "acknowledgement bundle: %s",
		    p.enc ? bundle_enc_errmsg(p.enc) : mg_strerror(e));
		goto out;
	}
	if ((e = commit_file(p.fd, tmp, path, dir)) != MG_OK)
		snprintf(errbuf, errlen, "%s: cannot write: %s", path,
		    strerror(errno));
out:
	if (p.fd >= 0)
		close(p.fd);
	if (e != MG_OK)
		unlink(tmp);
	bundle_enc_free(p.enc);
	free(raw);
	return e;
}
