/*
 * unpacker.c - verify a received bundle and commit what it carries.
 *
 * Everything in a bundle is hostile until the decoder has verified the
 * whole of it.  Messages are streamed into body files under new local
 * queue IDs (never a name the peer chose) while decoding; status and
 * acknowledgement records are collected.  After bundle_dec_finish()
 * says the bundle is complete and authentic, statuses and acks are
 * applied (idempotent), then one transaction imports the messages and
 * marks the bundle ID seen.  On any failure the staged files go.
 */
#include <dirent.h>
#include <errno.h>
#include <sys/file.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mgate/addr.h"
#include "mgate/bundle.h"
#include "mgate/dsn.h"
#include "mgate/envelope.h"
#include "mgate/fsutil.h"
#include "mgate/log.h"
#include "mgate/maildrop.h"
#include "mgate/unpacker.h"

struct staged_status {
	char	*qid;
	char	*rcpt;
	int	 state;
	char	*text;
	char	*status;
	char	*remote;
	char	*diag;
	int	 next_hop_dsn;
};

struct unpack {
	struct spool			*sp;
	const struct mg_config		*cfg;
	const struct mg_peer		**peers;	/* by sender index */
	struct unpack_result		*res;
	struct mg_envelope		*msgs;
	size_t				 nmsgs;
	size_t				 cap;
	struct maildrop_writer		*w;		/* message in flight */
	struct staged_status		*st;
	size_t				 nst;
	char				**acks;
	size_t				 nack;
	char				*err;
	size_t				 errlen;
};

static enum mg_err __attribute__((format(printf, 3, 4)))
uerr(struct unpack *u, enum mg_err e, const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(u->err, u->errlen, fmt, ap);
	va_end(ap);
	return e;
}

static enum mg_err
cb_header(void *arg, const struct bundle_info *bi)
{
	struct unpack		*u = arg;
	const struct mg_peer	*p = u->peers[bi->sender_index];
	char			 key[600];

	if (strcmp(bi->sender, p->name) != 0)
		return uerr(u, MG_EAUTH, "bundle %s: signed with the key of "
		    "peer %s but claims to come from '%s'", bi->id_hex,
		    p->name, bi->sender);
	memcpy(u->res->id, bi->id_hex, sizeof(u->res->id));
	snprintf(u->res->peer, sizeof(u->res->peer), "%s", p->name);
	snprintf(key, sizeof(key), "%s:%s", p->name, bi->id_hex);
	if (spool_seen_check(u->sp, "bundle", key) == MG_OK) {
		u->res->replay = 1;
		return MG_EEXIST;	/* stop: nothing more to do */
	}
	return MG_OK;
}

static unsigned
notify_from_bundle(unsigned n)
{
	return ((n & BUNDLE_NOTIFY_SUCCESS) ? MG_NOTIFY_SUCCESS : 0) |
	    ((n & BUNDLE_NOTIFY_FAILURE) ? MG_NOTIFY_FAILURE : 0) |
	    ((n & BUNDLE_NOTIFY_DELAY) ? MG_NOTIFY_DELAY : 0) |
	    ((n & BUNDLE_NOTIFY_NEVER) ? MG_NOTIFY_NEVER : 0);
}

static enum mg_err
cb_msg_begin(void *arg, const struct bundle_msg *bm)
{
	struct unpack		*u = arg;
	struct mg_envelope	*env, *nv;
	enum mg_err		 e;

	if (!mg_qid_valid(bm->qid))
		return uerr(u, MG_EDATA, "bundle %s: message with an invalid "
		    "queue ID", u->res->id);
	if (bm->sender[0] != '\0' && mg_addr_valid(bm->sender) != 0)
		return uerr(u, MG_EDATA, "bundle %s: message %s: invalid "
		    "sender address", u->res->id, bm->qid);
	if (bm->nrcpt == 0)
		return uerr(u, MG_EDATA, "bundle %s: message %s has no "
		    "recipients", u->res->id, bm->qid);
	if (u->nmsgs == u->cap) {
		u->cap = u->cap ? u->cap * 2 : 16;
		if ((nv = realloc(u->msgs, u->cap * sizeof(*nv))) == NULL)
			return MG_ENOMEM;
		u->msgs = nv;
	}
	env = &u->msgs[u->nmsgs];
	memset(env, 0, sizeof(*env));
	u->nmsgs++;
	env->arrival = (uint64_t)time(NULL);
	env->ret = bm->ret;
	env->priority = MG_PRIO_NORMAL;
	if ((env->sender = strdup(bm->sender)) == NULL ||
	    (env->user = strdup("")) == NULL ||
	    (env->peer = strdup(u->res->peer)) == NULL ||
	    (env->peer_qid = strdup(bm->qid)) == NULL ||
	    (bm->envid && bm->envid[0] &&
	    (env->envid = strdup(bm->envid)) == NULL))
		return MG_ENOMEM;
	for (size_t i = 0; i < bm->nrcpt; i++) {
		char *a, *o = NULL;

		if (mg_addr_valid(bm->rcpts[i].addr) != 0)
			return uerr(u, MG_EDATA, "bundle %s: message %s: "
			    "invalid recipient address", u->res->id, bm->qid);
		if ((a = strdup(bm->rcpts[i].addr)) == NULL ||
		    (bm->rcpts[i].orcpt && bm->rcpts[i].orcpt[0] &&
		    (o = strdup(bm->rcpts[i].orcpt)) == NULL)) {
			free(a);
			return MG_ENOMEM;
		}
		if (mg_envelope_add_rcpt(env, a, o,
		    notify_from_bundle(bm->rcpts[i].notify)) < 0)
			return MG_ENOMEM;
	}
	/* The body goes straight to queue/ under a queue ID of ours. */
	if ((e = maildrop_create_at(spool_dir(u->sp), "stage",
	    "queue", env, &u->w)) ||
	    (e = maildrop_put_envelope(u->w, env)))
		return uerr(u, e, "staging message %s: %s", bm->qid,
		    strerror(errno));
	return MG_OK;
}

static enum mg_err
cb_msg_data(void *arg, const void *p, size_t n)
{
	struct unpack	*u = arg;
	enum mg_err	 e;

	if ((e = maildrop_put_content(u->w, p, n)) != MG_OK)
		return uerr(u, e, "staging a message: %s", strerror(errno));
	return MG_OK;
}

static enum mg_err
cb_msg_end(void *arg)
{
	struct unpack	*u = arg;
	enum mg_err	 e;

	u->msgs[u->nmsgs - 1].size = maildrop_size(u->w);
	e = maildrop_commit(u->w);
	u->w = NULL;
	if (e != MG_OK)
		return uerr(u, e, "staging a message: %s", strerror(errno));
	return MG_OK;
}

static int
state_from_bundle(int s)
{
	switch (s) {
	case BUNDLE_ST_ACCEPTED: return RS_ACCEPTED;
	case BUNDLE_ST_DELIVERED: return RS_DELIVERED;
	case BUNDLE_ST_DEFERRED: return RS_DEFERRED;
	case BUNDLE_ST_FAILED: return RS_BOUNCED;
	default: return -1;
	}
}

static enum mg_err
cb_status(void *arg, const struct bundle_status *bs)
{
	struct unpack		*u = arg;
	struct staged_status	*n, *s;
	char			 text[1024];
	int			 st;

	if ((st = state_from_bundle(bs->state)) < 0)
		return uerr(u, MG_EDATA, "bundle %s: unknown status state %d",
		    u->res->id, bs->state);
	if ((n = realloc(u->st, (u->nst + 1) * sizeof(*n))) == NULL)
		return MG_ENOMEM;
	u->st = n;
	s = &u->st[u->nst];
	/* The server's words carry the code; the status stands alone. */
	snprintf(text, sizeof(text), "%s%s%s%s", bs->diag[0] ? bs->diag :
	    bs->status, bs->remote[0] ? " (" : "", bs->remote,
	    bs->remote[0] ? ")" : "");
	s->qid = strdup(bs->qid);
	s->rcpt = strdup(bs->rcpt);
	s->text = strdup(text);
	s->status = strdup(bs->status);
	s->remote = strdup(bs->remote);
	s->diag = strdup(bs->diag);
	s->state = st;
	s->next_hop_dsn = bs->next_hop_dsn;
	u->nst++;
	if (!s->qid || !s->rcpt || !s->text || !s->status || !s->remote ||
	    !s->diag)
		return MG_ENOMEM;
	return MG_OK;
}

static enum mg_err
cb_ack(void *arg, const struct bundle_ack *ba)
{
	struct unpack	*u = arg;
	char		**n;

	for (size_t i = 0; i < ba->nbundle; i++) {
		if ((n = realloc(u->acks, (u->nack + 1) * sizeof(*n))) == NULL)
			return MG_ENOMEM;
		u->acks = n;
		if ((u->acks[u->nack] = malloc(BUNDLE_ID_HEX)) == NULL)
			return MG_ENOMEM;
		bundle_id_hex(ba->bundle_ids[i], u->acks[u->nack]);
		u->nack++;
	}
	return MG_OK;
}

static void
apply_acks(struct unpack *u)
{
	struct spool_bundle	sb;
	char			path[4200];
	size_t			n;

	for (size_t i = 0; i < u->nack; i++) {
		if (spool_bundle_get(u->sp, u->acks[i], &sb) != MG_OK)
			continue;	/* acknowledged before */
		if (strcmp(sb.peer, u->res->peer) != 0) {
			mg_warn("bundle %s: acknowledgement from %s, but it "
			    "was sent to %s: ignored", u->acks[i],
			    u->res->peer, sb.peer);
			spool_bundle_free(&sb);
			continue;
		}
		spool_bundle_free(&sb);
		if (spool_bundle_acked(u->sp, u->acks[i], &n) != MG_OK)
			continue;
		if (spool_bundle_path(u->sp, u->acks[i], path,
		    sizeof(path)) == MG_OK)
			unlink(path);
		mg_info("bundle %s: acknowledged by %s, %zu recipient%s "
		    "accepted", u->acks[i], u->res->peer, n, n == 1 ? "" :
		    "s");
		u->res->nack++;
	}
}

/*
 * Which report a recipient asked for on this outcome, if any.  The
 * gateway always hands mail to another MTA, so success is "relayed"
 * (RFC 3461 6.2.2.2): reported here only when that MTA did not offer
 * DSN; when it did, NOTIFY went along and the success report is its
 * job, and a second one from us would be a duplicate.
 */
static int
wants_dsn(const struct mg_rcpt *r, const struct staged_status *s,
    enum dsn_action *act)
{
	if (r->notify & MG_NOTIFY_NEVER)
		return 0;
	switch (s->state) {
	case RS_BOUNCED:
		*act = DSN_FAILED;
		return r->notify == 0 || (r->notify & MG_NOTIFY_FAILURE);
	case RS_DELIVERED:
		*act = DSN_RELAYED;
		return (r->notify & MG_NOTIFY_SUCCESS) && !s->next_hop_dsn;
	case RS_DEFERRED:
		*act = DSN_DELAYED;
		return (r->notify & MG_NOTIFY_DELAY) != 0;
	default:
		return 0;
	}
}

/*
 * Apply status records message by message.  A recipient already in the
 * reported state is left alone, so a status applied twice (a crash
 * before the bundle's commit) changes nothing and reports nothing.
 * Reports go out one per message and kind of event.
 */
static void
apply_statuses(struct unpack *u)
{
	struct spool_msg	 m;
	struct dsn_rcpt		*dr = NULL;
	int			*acts = NULL, *done = NULL;
	char			 path[4200], err[512] = "";

	if (u->nst == 0)
		return;
	if ((done = calloc(u->nst, sizeof(*done))) == NULL ||
	    (dr = calloc(u->nst, sizeof(*dr))) == NULL ||
	    (acts = calloc(u->nst, sizeof(*acts))) == NULL)
		goto out;
	for (size_t i = 0; i < u->nst; i++) {
		size_t nd[DSN_NACTIONS] = { 0 };

		if (done[i])
			continue;
		if (!mg_qid_valid(u->st[i].qid) ||
		    spool_msg_get(u->sp, u->st[i].qid, &m) != MG_OK) {
			done[i] = 1;
			continue;
		}
		/* Every status for this message, in bundle order. */
		for (size_t j = i; j < u->nst; j++) {
			struct staged_status	*s = &u->st[j];
			enum dsn_action		 act;
			size_t			 k;

			if (done[j] || strcmp(s->qid, u->st[i].qid) != 0)
				continue;
			done[j] = 1;
			for (k = 0; k < m.env.nrcpt; k++)
				if (strcmp(m.env.rcpts[k].addr, s->rcpt) == 0)
					break;
			if (k == m.env.nrcpt || m.rs[k].state ==
			    (enum rcpt_state)s->state ||
			    rcpt_state_final(m.rs[k].state))
				continue;
			if (spool_rcpt_update(u->sp, s->qid, k,
			    (enum rcpt_state)s->state, s->text, NULL) != MG_OK)
				continue;
			m.rs[k].state = (enum rcpt_state)s->state;
			mg_info("%s: to=<%s>, status=%s (%s) via %s", s->qid,
			    s->rcpt, rcpt_state_name(s->state), s->text,
			    u->res->peer);
			u->res->nstatus++;
			if (!wants_dsn(&m.env.rcpts[k], s, &act)) {
				if (s->next_hop_dsn && s->state == RS_DELIVERED
				    && (m.env.rcpts[k].notify &
				    MG_NOTIFY_SUCCESS))
					mg_info("%s: to=<%s>: success report "
					    "left to %s, which took NOTIFY",
					    s->qid, s->rcpt, s->remote);
				continue;
			}
			/* Grouped by action: dr[] holds three runs. */
			acts[j] = (int)act;
			dr[j].idx = k;
			dr[j].status = s->status;
			dr[j].remote = s->remote;
			dr[j].diag = s->diag;
			nd[act]++;
		}
		for (int act = 0; act < DSN_NACTIONS; act++) {
			struct dsn_rcpt	*grp;
			size_t		 g = 0;

			if (nd[act] == 0)
				continue;
			if ((grp = calloc(nd[act], sizeof(*grp))) == NULL)
				break;
			for (size_t j = i; j < u->nst && g < nd[act]; j++)
				if (dr[j].status && acts[j] == act &&
				    strcmp(u->st[j].qid, u->st[i].qid) == 0)
					grp[g++] = dr[j];
			if (spool_body_path(u->sp, m.env.qid, path,
			    sizeof(path)) != MG_OK ||
			    dsn_deliver(u->cfg, &m, path, (enum dsn_action)act,
			    grp, g, err, sizeof(err)) != MG_OK)
				mg_warn("%s: cannot deliver the delivery report "
				    "to %s: %s", m.env.qid, m.env.user, err);
			else
				mg_info("%s: sender delivery report (%s) "
				    "delivered to %s", m.env.qid, act ==
				    DSN_FAILED ? "failed" : act == DSN_DELAYED ?
				    "delayed" : act == DSN_RELAYED ? "relayed" :
				    "delivered", m.env.user);
			free(grp);
		}
		spool_msg_free(&m);
	}
out:
	free(done);
	free(dr);
	free(acts);
}

static void
unstage(struct unpack *u, const int *keep)
{
	char path[4200];

	for (size_t i = 0; i < u->nmsgs; i++) {
		if (keep && keep[i] == 0)
			continue;
		if (u->msgs[i].qid[0] && mg_path(path, sizeof(path),
		    "%s/queue/%s", spool_dir(u->sp), u->msgs[i].qid) == MG_OK)
			unlink(path);
	}
}

static enum mg_err
load_senders(const struct mg_config *cfg, const char *peer,
    struct mg_pubkey **keys, const struct mg_peer ***peers, size_t *n,
    char *errbuf, size_t errlen)
{
	const struct mg_peer	*p;
	size_t			 cnt = 0;

	for (p = cfg->peers; p; p = p->next)
		cnt++;
	*keys = calloc(cnt ? cnt : 1, sizeof(**keys));
	*peers = calloc(cnt ? cnt : 1, sizeof(**peers));
	if (*keys == NULL || *peers == NULL)
		return MG_ENOMEM;
	*n = 0;
	for (p = cfg->peers; p; p = p->next) {
		if (peer && strcmp(peer, p->name) != 0)
			continue;
		if (p->public_key == NULL)
			continue;
		if (keys_load_public(p->public_key, &(*keys)[*n]) != MG_OK) {
			snprintf(errbuf, errlen, "%s", keys_errmsg());
			return MG_ECONFIG;
		}
		(*peers)[(*n)++] = p;
	}
	if (*n == 0) {
		snprintf(errbuf, errlen, "%s: no peer%s%s with a public_key "
		    "to check bundles against", cfg->path, peer ? " named " :
		    "", peer ? peer : "");
		return MG_ECONFIG;
	}
	return MG_OK;
}

static int
stage_begin(const char *spool)
{
	char		 dir[4200], path[4400];
	DIR		*d;
	struct dirent	*de;
	int		 fd;

	if (mg_path(dir, sizeof(dir), "%s/stage", spool) != MG_OK ||
	    mg_mkdirs(dir, 0700) != MG_OK ||
	    mg_path(path, sizeof(path), "%s/stage.lock", spool) ||
	    (fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
	    0600)) < 0)
		return -1;
	while (flock(fd, LOCK_EX) < 0)
		if (errno != EINTR) {
			close(fd);
			return -1;
		}
	if ((d = opendir(dir)) != NULL) {
		while ((de = readdir(d)) != NULL)
			if (mg_qid_valid(de->d_name) && mg_path(path,
			    sizeof(path), "%s/%s", dir, de->d_name) == MG_OK)
				unlink(path);
		closedir(d);
	}
	return fd;
}

enum mg_err
unpacker_apply(struct spool *sp, const struct mg_config *cfg,
    const struct mg_keypair *self, const char *peer, const char *path,
    struct unpack_result *res, char *errbuf, size_t errlen)
{
	struct unpack		 u;
	struct bundle_dec_params dp;
	struct bundle_dec	*dec = NULL;
	struct mg_pubkey	*keys = NULL;
	unsigned char		 buf[65536];
	int			*dup = NULL;
	size_t			 nsenders = 0;
	ssize_t			 n = 0;
	int			 stage_lock = -1;
	int			 fd = -1;
	enum mg_err		 e;

	memset(res, 0, sizeof(*res));
	memset(&u, 0, sizeof(u));
	/*
	 * One import stages at a time, in stage/: whatever is
	 * there when we hold the lock was left by a killed import.
	 */
	if ((stage_lock = stage_begin(spool_dir(sp))) < 0) {
		snprintf(errbuf, errlen, "%s/stage: %s", spool_dir(sp),
		    strerror(errno));
		return MG_ETEMP;
	}
	u.sp = sp;
	u.cfg = cfg;
	u.res = res;
	u.err = errbuf;
	u.errlen = errlen;
	errbuf[0] = '\0';
	if ((e = load_senders(cfg, peer, &keys, &u.peers, &nsenders, errbuf,
	    errlen)) != MG_OK)
		goto out;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		e = uerr(&u, mg_err_from_errno(errno) == MG_ENOTFOUND ?
		    MG_ENOTFOUND : MG_EIO, "%s: %s", path, strerror(errno));
		goto out;
	}
	memset(&dp, 0, sizeof(dp));
	dp.nsenders = nsenders;
	dp.self_keys = self;
	dp.self_name = cfg->local_name;
	dp.senders = keys;
	dp.cb.header = cb_header;
	dp.cb.msg_begin = cb_msg_begin;
	dp.cb.msg_data = cb_msg_data;
	dp.cb.msg_end = cb_msg_end;
	dp.cb.status = cb_status;
	dp.cb.ack = cb_ack;
	dp.cb.arg = &u;
	if ((e = bundle_dec_new(&dp, &dec)) != MG_OK)
		goto out;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if ((e = bundle_dec_feed(dec, buf, (size_t)n)) != MG_OK)
			break;
	if (n < 0) {
		e = uerr(&u, MG_EIO, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (e == MG_OK)
		e = bundle_dec_finish(dec);
	if (res->replay) {
		mg_info("bundle %s: from %s was committed before: nothing "
		    "changed", res->id, res->peer);
		unstage(&u, NULL);
		e = MG_OK;
		goto out;
	}
	if (e != MG_OK) {
		if (errbuf[0] == '\0')
			snprintf(errbuf, errlen, "%s: %s", path,
			    bundle_dec_errmsg(dec));
		goto fail;
	}
	/* Verified.  Idempotent updates first, then the one commit. */
	apply_acks(&u);
	apply_statuses(&u);
	res->nmsg = u.nmsgs;
	if ((dup = calloc(u.nmsgs ? u.nmsgs : 1, sizeof(*dup))) == NULL) {
		e = MG_ENOMEM;
		goto fail;
	}
	e = spool_import(sp, res->peer, res->id, u.msgs, u.nmsgs, dup,
	    &res->created);
	if (e == MG_EEXIST) {
		/* Another process committed it meanwhile. */
		res->replay = 1;
		unstage(&u, NULL);
		e = MG_OK;
		goto out;
	}
	if (e != MG_OK) {
		uerr(&u, e, "bundle %s: cannot commit: %s", res->id,
		    mg_strerror(e));
		goto fail;
	}
	unstage(&u, dup);
	for (size_t i = 0; i < u.nmsgs; i++) {
		if (dup[i]) {
			res->dups++;
			continue;
		}
		mg_info("%s: from=<%s>, size=%llu, nrcpt=%zu, peer=%s, "
		    "peer_id=%s, bundle=%s", u.msgs[i].qid, u.msgs[i].sender,
		    (unsigned long long)u.msgs[i].size, u.msgs[i].nrcpt,
		    res->peer, u.msgs[i].peer_qid, res->id);
	}
	goto out;
fail:
	maildrop_abort(u.w);
	u.w = NULL;
	unstage(&u, NULL);
out:
	maildrop_abort(u.w);
	if (fd >= 0)
		close(fd);
	bundle_dec_free(dec);
	for (size_t i = 0; i < u.nmsgs; i++)
		mg_envelope_free(&u.msgs[i]);
	free(u.msgs);
	for (size_t i = 0; i < u.nst; i++) {
		free(u.st[i].qid);
		free(u.st[i].rcpt);
		free(u.st[i].text);
		free(u.st[i].status);
		free(u.st[i].remote);
		free(u.st[i].diag);
	}
	free(u.st);
	for (size_t i = 0; i < u.nack; i++)
		free(u.acks[i]);
	free(u.acks);
	free(u.peers);
	free(keys);
	free(dup);
	close(stage_lock);
	return e;
}
