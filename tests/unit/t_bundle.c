/*
 * t_bundle.c - the bundle codec: round trips, every rejection path with
 * its message, limits, resume offsets, golden files, the shared corpus.
 *
 * Test keys and golden bundles live in tests/data/bundle/ (under
 * MGATE_SRCDIR, default "."); MGATE_REGEN_GOLDEN=1 rewrites the golden
 * files (a deliberate format change, see tests/data/bundle/README).
 * MGATE_CORPUS names the corpus (default ../shared/corpus/
 * spamassassin-public); without it that part is skipped.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "mgate/buf.h"
#include "mgate/bundle.h"
#include "mgate/keys.h"
#include "tap.h"

static struct mg_keypair *alice, *bob, *mallory, *carol;
static const char *srcdir = ".";

/* ---- helpers ---- */

/* An array as a plain pointer, for is_str(). */
static const char *
S(const char *s)
{
	return s;
}

static int
read_file(const char *path, struct mg_buf *b)
{
	FILE	*f;
	char	 tmp[65536];
	size_t	 n;
	int	 rc = 0;

	if ((f = fopen(path, "rb")) == NULL)
		return -1;
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		if (mg_buf_append(b, tmp, n) != MG_OK) {
			rc = -1;
			break;
		}
	if (ferror(f))
		rc = -1;
	fclose(f);
	return rc;
}

static struct mg_keypair *
test_key(const char *name)
{
	struct mg_keypair	*kp = NULL;
	struct mg_buf		 b;
	char			 path[1024];
	const char		*s;

	mg_buf_init(&b, 4096);
	snprintf(path, sizeof(path), "%s/tests/data/bundle/%s.key", srcdir,
	    name);
	if (read_file(path, &b) != 0 || mg_buf_cstr(&b, &s) != MG_OK ||
	    keys_parse_private(s, &kp) != MG_OK) {
		diag("cannot load test key %s: %s", path, keys_errmsg());
		exit(1);
	}
	mg_buf_free(&b);
	return kp;
}

static enum mg_err
sink_buf(void *arg, const void *p, size_t n)
{
	return mg_buf_append(arg, p, n);
}

/* What the decoder handed us. */
struct got {
	int		 header;
	struct bundle_info info;
	int		 nmsg, ends, nstatus, nack, end;
	char		 qid[64], sender[256], envid[64];
	int		 ret;
	size_t		 nrcpt;
	char		 rcpt0[256], orcpt0[256];
	unsigned	 notify0;
	uint64_t	 size;
	struct mg_buf	 content;	/* last message, first 8 MiB */
	uint64_t	 content_len;
	EVP_MD_CTX	*md;
	unsigned char	 digest[32];
	struct bundle_status st;
	char		 st_strs[4][256];
	size_t		 ack_nb, ack_nm;
	unsigned char	 ack_b0[BUNDLE_ID_LEN];
	char		 ack_m1[64];
	int		 refuse_msg;
};

static enum mg_err
cb_header(void *arg, const struct bundle_info *i)
{
	struct got *g = arg;

	g->header++;
	g->info = *i;
	return MG_OK;
}

static enum mg_err
cb_msg_begin(void *arg, const struct bundle_msg *m)
{
	struct got *g = arg;

	if (g->refuse_msg)
		return MG_ENOSPC;
	g->nmsg++;
	snprintf(g->qid, sizeof(g->qid), "%s", m->qid);
	snprintf(g->sender, sizeof(g->sender), "%s", m->sender);
	snprintf(g->envid, sizeof(g->envid), "%s", m->envid);
	g->ret = m->ret;
	g->nrcpt = m->nrcpt;
	if (m->nrcpt > 0) {
		snprintf(g->rcpt0, sizeof(g->rcpt0), "%s", m->rcpts[0].addr);
		snprintf(g->orcpt0, sizeof(g->orcpt0), "%s", m->rcpts[0].orcpt);
		g->notify0 = m->rcpts[0].notify;
	}
	g->size = m->size;
	mg_buf_reset(&g->content);
	g->content_len = 0;
	EVP_DigestInit_ex(g->md, EVP_sha256(), NULL);
	return MG_OK;
}

static enum mg_err
cb_msg_data(void *arg, const void *p, size_t n)
{
	struct got *g = arg;

	if (g->content.len + n <= g->content.max)
		mg_buf_append(&g->content, p, n);
	g->content_len += n;
	EVP_DigestUpdate(g->md, p, n);
	return MG_OK;
}

static enum mg_err
cb_msg_end(void *arg)
{
	struct got *g = arg;

	g->ends++;
	EVP_DigestFinal_ex(g->md, g->digest, NULL);
	return MG_OK;
}

static enum mg_err
cb_status(void *arg, const struct bundle_status *s)
{
	struct got *g = arg;

	g->nstatus++;
	g->st = *s;
	snprintf(g->st_strs[0], 256, "%s", s->qid);
	snprintf(g->st_strs[1], 256, "%s", s->rcpt);
	snprintf(g->st_strs[2], 256, "%s", s->status);
	snprintf(g->st_strs[3], 256, "%s", s->diag);
	return MG_OK;
}

static enum mg_err
cb_ack(void *arg, const struct bundle_ack *a)
{
	struct got *g = arg;

	g->nack++;
	g->ack_nb = a->nbundle;
	g->ack_nm = a->nmsg;
	if (a->nbundle > 0)
		memcpy(g->ack_b0, a->bundle_ids[0], BUNDLE_ID_LEN);
	if (a->nmsg > 1)
		snprintf(g->ack_m1, sizeof(g->ack_m1), "%s", a->msg_ids[1]);
	return MG_OK;
}

static enum mg_err
cb_end(void *arg)
{
	((struct got *)arg)->end++;
	return MG_OK;
}

static void
got_init(struct got *g)
{
	memset(g, 0, sizeof(*g));
	mg_buf_init(&g->content, 8 << 20);
	g->md = EVP_MD_CTX_new();
}

static void
got_free(struct got *g)
{
	mg_buf_free(&g->content);
	EVP_MD_CTX_free(g->md);
}

static void
enc_params(struct bundle_enc_params *p, const unsigned char *id)
{
	static const unsigned char eph[32] = {
	    0x42, 0x11, 0x9a, 0x07, 0x5c, 0xe3, 0x2b, 0x90, 0x10, 0x20, 0x30,
	    0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0,
	    0xf0, 0x01, 0x12, 0x23, 0x34, 0x45, 0x56, 0x67, 0x78, 0x09 };

	memset(p, 0, sizeof(*p));
	p->sender_keys = alice;
	p->sender_name = "alice";
	p->receiver_name = "bob";
	p->receiver_pub = &bob->pub;
	p->id = id;
	p->ctime = 1700000000;
	p->eph_priv = eph;
}

static void
dec_params(struct bundle_dec_params *p, struct got *g,
    const struct bundle_limits *lim)
{
	memset(p, 0, sizeof(*p));
	p->self_keys = bob;
	p->self_name = "bob";
	p->senders = &alice->pub;
	p->nsenders = 1;
	p->sender_name = "alice";
	p->limits = lim;
	p->cb.header = cb_header;
	p->cb.msg_begin = cb_msg_begin;
	p->cb.msg_data = cb_msg_data;
	p->cb.msg_end = cb_msg_end;
	p->cb.status = cb_status;
	p->cb.ack = cb_ack;
	p->cb.end = cb_end;
	p->cb.arg = g;
}

/*
 * Decode buf fed in pieces of the given sizes (cycled; 0: all at once).
 * Returns the first error of feed/finish; msg gets the error text.
 */
static enum mg_err
decode(const void *buf, size_t len, const size_t *pieces, size_t npieces,
    struct got *g, const struct bundle_limits *lim, char *msg, size_t mlen,
    struct bundle_dec_params *override)
{
	struct bundle_dec_params p;
	struct bundle_dec	*d = NULL;
	const unsigned char	*c = buf;
	size_t			 off = 0, take, k = 0;
	enum mg_err		 e;

	dec_params(&p, g, lim);
	if (override != NULL) {
		override->cb = p.cb;
		override->limits = lim;
		p = *override;
	}
	if ((e = bundle_dec_new(&p, &d)) != MG_OK)
		return e;
	while (off < len) {
		take = npieces ? pieces[k++ % npieces] : len;
		if (take > len - off)
			take = len - off;
		if ((e = bundle_dec_feed(d, c + off, take)) != MG_OK)
			break;
		off += take;
	}
	if (e == MG_OK)
		e = bundle_dec_finish(d);
	if (msg != NULL)
		snprintf(msg, mlen, "%s", bundle_dec_errmsg(d));
	bundle_dec_free(d);
	return e;
}

static enum mg_err
decode_simple(const struct mg_buf *b, char *msg, size_t mlen,
    const struct bundle_limits *lim)
{
	struct got	g;
	enum mg_err	e;

	got_init(&g);
	e = decode(b->data, b->len, NULL, 0, &g, lim, msg, mlen, NULL);
	got_free(&g);
	return e;
}

static const unsigned char ID1[BUNDLE_ID_LEN] = {
	0x3f, 0xa9, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05,
	0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d };

/* One message with given content, written in pieces of `piece`. */
static enum mg_err
enc_one(struct bundle_enc *enc, const char *qid, const void *p, size_t n,
    size_t piece)
{
	static const struct bundle_rcpt r[2] = {
		{ "bob@example.org", BUNDLE_NOTIFY_FAILURE |
		    BUNDLE_NOTIFY_DELAY, "rfc822;bob@example.org" },
		{ "carol@example.net", 0, "" },
	};
	struct bundle_msg	 m = { qid, "alice@ship.example", "ENV-1",
				    BUNDLE_RET_HDRS, r, 2, n };
	const unsigned char	*c = p;
	size_t			 off = 0, take;
	enum mg_err		 e;

	if ((e = bundle_enc_msg_begin(enc, &m)) != MG_OK)
		return e;
	while (off < n) {
		take = piece && piece < n - off ? piece : n - off;
		if ((e = bundle_enc_msg_write(enc, c + off, take)) != MG_OK)
			return e;
		off += take;
	}
	return bundle_enc_msg_end(enc);
}

/* A bundle with one message of content p/n into out. */
static enum mg_err
make_bundle(struct mg_buf *out, const struct bundle_enc_params *pp,
    const void *p, size_t n)
{
	struct bundle_enc	*enc = NULL;
	enum mg_err		 e;

	if ((e = bundle_enc_new(pp, sink_buf, out, &enc)) != MG_OK)
		return e;
	if ((e = enc_one(enc, "Q1", p, n, 0)) == MG_OK)
		e = bundle_enc_finish(enc);
	bundle_enc_free(enc);
	return e;
}

static unsigned long long rng_state = 88172645463325252ULL;

static unsigned char
rnd8(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (unsigned char)(rng_state >> 24);
}

/* ---- tests ---- */

static void
test_round_trips(void)
{
	static const char c_crlf[] = "Subject: x\r\n\r\nline\rbare CR\n";
	static const char c_nul[] = "a\0b\0\0c\n";
	static const unsigned char c_ff[] = { 0xff, 0xfe, 0x00, 0xff, '\n',
	    0x80, 0xff };
	static const size_t odd[] = { 1, 7, 13, 4099, 65537, 3 };
	struct {
		const char	*name;
		const void	*p;
		size_t		 n;
	} cases[] = {
		{ "CR, LF, CRLF", c_crlf, sizeof(c_crlf) - 1 },
		{ "NUL bytes", c_nul, sizeof(c_nul) - 1 },
		{ "0xFF bytes", c_ff, sizeof(c_ff) },
		{ "empty message", "", 0 },
		{ "one byte", "x", 1 },
	};
	struct bundle_enc_params pp;
	struct mg_buf		 b;
	struct got		 g;
	char			 msg[512];
	size_t			 i, pieces1[] = { 1 };
	enum mg_err		 e;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		mg_buf_init(&b, 1 << 20);
		enc_params(&pp, ID1);
		e = make_bundle(&b, &pp, cases[i].p, cases[i].n);
		is_int(e, MG_OK, "encode: %s", cases[i].name);
		got_init(&g);
		/* byte-at-a-time feeding */
		e = decode(b.data, b.len, pieces1, 1, &g, NULL, msg,
		    sizeof(msg), NULL);
		is_int(e, MG_OK, "decode byte by byte: %s %s", cases[i].name,
		    msg);
		ok(g.nmsg == 1 && g.ends == 1 && g.end == 1 && g.header == 1,
		    "callbacks: one header, message, end (%s)", cases[i].name);
		ok(g.content_len == cases[i].n && g.content.len == cases[i].n &&
		    (cases[i].n == 0 || memcmp(g.content.data, cases[i].p,
		    cases[i].n) == 0), "content byte-identical: %s",
		    cases[i].name);
		if (i == 0) {
			is_str(S(g.qid), "Q1", "qid");
			is_str(S(g.sender), "alice@ship.example", "sender");
			is_str(S(g.envid), "ENV-1", "ENVID");
			is_int(g.ret, BUNDLE_RET_HDRS, "RET");
			is_int(g.nrcpt, 2, "two recipients");
			is_str(S(g.rcpt0), "bob@example.org", "recipient");
			is_str(S(g.orcpt0), "rfc822;bob@example.org", "ORCPT");
			is_int(g.notify0, BUNDLE_NOTIFY_FAILURE |
			    BUNDLE_NOTIFY_DELAY, "NOTIFY");
			is_str(S(g.info.id_hex), "3fa9000102030405060708090a0b0c0d",
			    "bundle ID in header");
			is_str(S(g.info.sender), "alice", "header sender");
			is_str(S(g.info.receiver), "bob", "header receiver");
			is_int(g.info.ctime, 1700000000, "header time");
			is_int(g.info.chunk_size, BUNDLE_CHUNK_DEFAULT,
			    "header chunk size");
		}
		got_free(&g);
		mg_buf_free(&b);
	}

	/* 5 MB, mixed text and noise, written and read in odd pieces. */
	{
		struct bundle_enc	*enc = NULL;
		unsigned char		*big = NULL, dg[32];
		size_t			 n = 5 * 1000 * 1000, j;

		big = malloc(n);
		for (j = 0; j < n; j++)
			big[j] = (j / 4096) % 3 == 0 ? rnd8() :
			    "From: a line of text\r\n"[j % 22];
		EVP_Digest(big, n, dg, NULL, EVP_sha256(), NULL);
		mg_buf_init(&b, 16 << 20);
		enc_params(&pp, ID1);
		e = bundle_enc_new(&pp, sink_buf, &b, &enc);
		if (e == MG_OK)
			e = enc_one(enc, "BIG", big, n, 4097);
		if (e == MG_OK)
			e = enc_one(enc, "SMALL", "tail\n", 5, 2);
		if (e == MG_OK)
			e = bundle_enc_finish(enc);
		is_int(e, MG_OK, "encode 5 MB message in 4097-byte pieces");
		bundle_enc_free(enc);
		got_init(&g);
		e = decode(b.data, b.len, odd, sizeof(odd) / sizeof(odd[0]),
		    &g, NULL, msg, sizeof(msg), NULL);
		is_int(e, MG_OK, "decode 5 MB in odd pieces %s", msg);
		is_int(g.nmsg, 2, "two messages");
		diag("5 MB message: %zu bytes of bundle", b.len);
		/* content holds the last message; check the big one by hash */
		{
			struct got g2;

			got_init(&g2);
			mg_buf_free(&b);
			mg_buf_init(&b, 16 << 20);
			make_bundle(&b, &pp, big, n);
			e = decode(b.data, b.len, odd, 6, &g2, NULL, msg,
			    sizeof(msg), NULL);
			ok(e == MG_OK && g2.content_len == n &&
			    memcmp(g2.digest, dg, 32) == 0,
			    "5 MB content identical (SHA-256)");
			got_free(&g2);
		}
		got_free(&g);
		mg_buf_free(&b);
		free(big);
	}
}

static void
test_records(void)
{
	struct bundle_enc_params pp;
	struct bundle_enc	*enc = NULL;
	struct bundle_status	 st = { "Q77", "x@example.com",
				    BUNDLE_ST_FAILED, "5.1.1", "mx.example.com",
				    "550 5.1.1 no such user", 1700000123, 0 };
	static const unsigned char bids[2][BUNDLE_ID_LEN] = {
		{ 1, 2, 3 }, { 4, 5, 6 } };
	static const char *const mids[] = { "Q1", "Q2", "Q3" };
	struct bundle_ack	 ack = { bids, 2, mids, 3 };
	struct mg_buf		 b;
	struct got		 g;
	char			 msg[512];
	enum mg_err		 e;

	mg_buf_init(&b, 1 << 20);
	enc_params(&pp, ID1);
	e = bundle_enc_new(&pp, sink_buf, &b, &enc);
	if (e == MG_OK)
		e = bundle_enc_status(enc, &st);
	if (e == MG_OK)
		e = bundle_enc_ack(enc, &ack);
	if (e == MG_OK)
		e = bundle_enc_finish(enc);
	is_int(e, MG_OK, "encode STATUS and ACK");
	bundle_enc_free(enc);
	got_init(&g);
	e = decode(b.data, b.len, NULL, 0, &g, NULL, msg, sizeof(msg), NULL);
	is_int(e, MG_OK, "decode STATUS and ACK %s", msg);
	ok(g.nstatus == 1 && g.st.state == BUNDLE_ST_FAILED &&
	    g.st.time == 1700000123, "status: state and time");
	is_str(S(g.st_strs[0]), "Q77", "status qid");
	is_str(S(g.st_strs[1]), "x@example.com", "status recipient");
	is_str(S(g.st_strs[2]), "5.1.1", "status RFC 3463 code");
	is_str(S(g.st_strs[3]), "550 5.1.1 no such user", "status diagnostic");
	ok(g.nack == 1 && g.ack_nb == 2 && g.ack_nm == 3 &&
	    memcmp(g.ack_b0, bids[0], BUNDLE_ID_LEN) == 0, "ack lists");
	is_str(S(g.ack_m1), "Q2", "ack message ID");
	is_str(bundle_state_name(BUNDLE_ST_DEFERRED), "deferred",
	    "state name");
	got_free(&g);
	mg_buf_free(&b);

	/* The next-hop DSN flag: absent unless set, and read back. */
	mg_buf_init(&b, 1 << 20);
	e = bundle_enc_new(&pp, sink_buf, &b, &enc);
	st.state = BUNDLE_ST_DELIVERED;
	st.next_hop_dsn = 1;
	if (e == MG_OK)
		e = bundle_enc_status(enc, &st);
	if (e == MG_OK)
		e = bundle_enc_finish(enc);
	bundle_enc_free(enc);
	got_init(&g);
	if (e == MG_OK)
		e = decode(b.data, b.len, NULL, 0, &g, NULL, msg, sizeof(msg),
		    NULL);
	is_int(e, MG_OK, "decode a STATUS with the next-hop DSN flag %s", msg);
	ok(g.nstatus == 1 && g.st.state == BUNDLE_ST_DELIVERED &&
	    g.st.next_hop_dsn == 1, "status: next-hop DSN flag read back");
	got_free(&g);
	mg_buf_free(&b);
	st.next_hop_dsn = 0;
	st.state = BUNDLE_ST_FAILED;

	/* An empty bundle (END only) is valid. */
	mg_buf_init(&b, 1 << 20);
	e = bundle_enc_new(&pp, sink_buf, &b, &enc);
	if (e == MG_OK)
		e = bundle_enc_finish(enc);
	bundle_enc_free(enc);
	is_int(decode_simple(&b, msg, sizeof(msg), NULL), MG_OK,
	    "empty bundle round trip (%zu bytes) %s", b.len, msg);
	mg_buf_free(&b);

	/* Without the preset dictionary. */
	mg_buf_init(&b, 1 << 20);
	pp.no_dict = 1;
	make_bundle(&b, &pp, "hello\n", 6);
	is_int(decode_simple(&b, msg, sizeof(msg), NULL), MG_OK,
	    "bundle without preset dictionary round trip %s", msg);
	mg_buf_free(&b);
}

static void
test_encoder_errors(void)
{
	struct bundle_enc_params pp;
	struct bundle_enc	*enc = NULL;
	struct bundle_msg	 m = { "Q", "", NULL, 0, NULL, 0, 5 };
	struct mg_buf		 b;

	mg_buf_init(&b, 1 << 20);
	enc_params(&pp, ID1);
	bundle_enc_new(&pp, sink_buf, &b, &enc);
	bundle_enc_msg_begin(enc, &m);
	is_int(bundle_enc_msg_write(enc, "123456", 6), MG_EDATA,
	    "content longer than declared size refused");
	ok(strstr(bundle_enc_errmsg(enc), "longer than its declared") != NULL,
	    "... message: %s", bundle_enc_errmsg(enc));
	bundle_enc_free(enc);
	bundle_enc_new(&pp, sink_buf, &b, &enc);
	bundle_enc_msg_begin(enc, &m);
	bundle_enc_msg_write(enc, "12", 2);
	is_int(bundle_enc_msg_end(enc), MG_EDATA,
	    "content shorter than declared size refused");
	is_int(bundle_enc_finish(enc), MG_EDATA, "encoder errors are sticky");
	bundle_enc_free(enc);
	pp.chunk_size = 100;
	is_int(bundle_enc_new(&pp, sink_buf, &b, &enc), MG_EUSAGE,
	    "chunk size below minimum refused");
	mg_buf_free(&b);
}

static void
test_determinism(void)
{
	struct bundle_enc_params pp;
	struct mg_buf		 a, b;

	mg_buf_init(&a, 1 << 20);
	mg_buf_init(&b, 1 << 20);
	enc_params(&pp, ID1);
	make_bundle(&a, &pp, "same\n", 5);
	make_bundle(&b, &pp, "same\n", 5);
	ok(a.len == b.len && memcmp(a.data, b.data, a.len) == 0,
	    "same IDs, time, keys, ephemeral key: same bytes");
	mg_buf_reset(&b);
	pp.eph_priv = NULL;
	pp.id = NULL;
	make_bundle(&b, &pp, "same\n", 5);
	ok(a.len == b.len && memcmp(a.data, b.data, a.len) != 0,
	    "fresh ID and ephemeral key: different bytes");
	mg_buf_free(&a);
	mg_buf_free(&b);
}

static void
test_auth(void)
{
	struct bundle_enc_params pp;
	struct bundle_dec_params dp;
	struct mg_pubkey	 two[2];
	struct mg_buf		 b;
	struct got		 g;
	char			 msg[512];
	enum mg_err		 e;

	/* Forged: signed by mallory, claims to be alice. */
	mg_buf_init(&b, 1 << 20);
	enc_params(&pp, ID1);
	pp.sender_keys = mallory;
	make_bundle(&b, &pp, "forged\n", 7);
	e = decode_simple(&b, msg, sizeof(msg), NULL);
	is_int(e, MG_EAUTH, "signature by another key refused");
	ok(strstr(msg, "bundle 3fa9000102030405060708090a0b0c0d: header from "
	    "'alice' is not signed by the expected key") != NULL,
	    "... message: %s", msg);
	/* The same bundle is fine when mallory's key is among the senders. */
	two[0] = alice->pub;
	two[1] = mallory->pub;
	got_init(&g);
	dec_params(&dp, &g, NULL);
	dp.senders = two;
	dp.nsenders = 2;
	e = decode(b.data, b.len, NULL, 0, &g, NULL, msg, sizeof(msg), &dp);
	ok(e == MG_OK && g.info.sender_index == 1,
	    "second accepted key matches (index %zu) %s", g.info.sender_index,
	    msg);
	got_free(&g);
	mg_buf_free(&b);

	/* Encrypted to carol's key. */
	mg_buf_init(&b, 1 << 20);
	enc_params(&pp, ID1);
	pp.receiver_pub = &carol->pub;
	make_bundle(&b, &pp, "for carol\n", 10);
	e = decode_simple(&b, msg, sizeof(msg), NULL);
	is_int(e, MG_EAUTH, "bundle encrypted to another peer refused");
	ok(strstr(msg, "not encrypted to this peer's key") != NULL,
	    "... message: %s", msg);
	mg_buf_free(&b);

	/* Our key, but addressed to another name. */
	mg_buf_init(&b, 1 << 20);
	enc_params(&pp, ID1);
	pp.receiver_name = "carol";
	make_bundle(&b, &pp, "x\n", 2);
	e = decode_simple(&b, msg, sizeof(msg), NULL);
	is_int(e, MG_EAUTH, "bundle addressed to another peer name refused");
	ok(strstr(msg, ": addressed to peer 'carol', but this is 'bob'") !=
	    NULL, "... message: %s", msg);
	mg_buf_free(&b);

	/* Signed by alice's key but claiming another sender name. */
	mg_buf_init(&b, 1 << 20);
	enc_params(&pp, ID1);
	pp.sender_name = "dave";
	make_bundle(&b, &pp, "x\n", 2);
	e = decode_simple(&b, msg, sizeof(msg), NULL);
	is_int(e, MG_EAUTH, "unexpected sender name refused");
	ok(strstr(msg, "sent by peer 'dave', expected 'alice'") != NULL,
	    "... message: %s", msg);
	mg_buf_free(&b);
}

/* Chunk boundaries of a bundle: offsets where each unit ends. */
static size_t
boundaries(const struct mg_buf *b, size_t *out, size_t max)
{
	size_t	off, n = 0;
	uint32_t w, len;

	off = BUNDLE_PREAMBLE_LEN + ((size_t)b->data[6] << 8 | b->data[7]);
	out[n++] = off;
	while (off + 4 <= b->len && n < max) {
		w = mg_get_be32(b->data + off);
		len = w & ~BUNDLE_CHUNK_LAST;
		off += 4 + len + BUNDLE_TAG_LEN;
		out[n++] = off;
		if (w & BUNDLE_CHUNK_LAST)
			break;
	}
	return n;
}

/* A multi-chunk bundle: 1 KiB chunks, incompressible content. */
static void
multi_chunk(struct mg_buf *b, size_t content)
{
	struct bundle_enc_params pp;
	unsigned char		*p = malloc(content);
	size_t			 i;

	for (i = 0; i < content; i++)
		p[i] = rnd8();
	mg_buf_init(b, 1 << 20);
	enc_params(&pp, ID1);
	pp.chunk_size = 1024;
	make_bundle(b, &pp, p, content);
	free(p);
}

/* Every residue of the stream length modulo the chunk size. */
static void
test_chunk_edges(void)
{
	struct bundle_enc_params pp;
	struct mg_buf		 b;
	unsigned char		 p[700];
	size_t			 n, i, bd[16], nb, full = 0, bad = 0;
	uint32_t		 lastlen;
	char			 msg[512];

	for (i = 0; i < sizeof(p); i++)
		p[i] = rnd8();
	mg_buf_init(&b, 1 << 20);
	for (n = 0; n < sizeof(p); n++) {
		mg_buf_reset(&b);
		enc_params(&pp, ID1);
		pp.chunk_size = 256;
		if (make_bundle(&b, &pp, p, n) != MG_OK ||
		    decode_simple(&b, msg, sizeof(msg), NULL) != MG_OK) {
			bad++;
			diag("%zu-byte message: %s", n, msg);
		}
		nb = boundaries(&b, bd, 16);
		lastlen = mg_get_be32(b.data + bd[nb - 2]) & ~BUNDLE_CHUNK_LAST;
		full += lastlen == 256 || lastlen == 0;
	}
	is_int(bad, 0, "messages of 0..%zu bytes in 256-byte chunks round "
	    "trip", sizeof(p) - 1);
	ok(full > 0, "... including %zu whose last chunk is full or empty",
	    full);
	mg_buf_free(&b);
}

static void
test_tamper(void)
{
	struct mg_buf	 b, t;
	size_t		 bd[64], nb, i, k, bad;
	char		 msg[512], want[128];
	uint64_t	 off;
	struct bundle_dec_params dp;
	struct got	 g;
	enum mg_err	 e;

	multi_chunk(&b, 6000);
	nb = boundaries(&b, bd, 64);
	diag("multi-chunk bundle: %zu bytes, %zu chunks", b.len, nb - 1);
	ok(nb >= 7 && bd[nb - 1] == b.len, "chunk framing spans the bundle");
	is_int(decode_simple(&b, msg, sizeof(msg), NULL), MG_OK,
	    "multi-chunk bundle decodes %s", msg);
	mg_buf_init(&t, 1 << 20);

	/* A flipped bit in each chunk's sealed bytes. */
	for (k = 0; k + 1 < nb; k++) {
		mg_buf_reset(&t);
		mg_buf_append(&t, b.data, b.len);
		t.data[bd[k] + 4 + (bd[k + 1] - bd[k] - 4) / 2] ^= 0x10;
		e = decode_simple(&t, msg, sizeof(msg), NULL);
		snprintf(want, sizeof(want), "bundle 3fa9000102030405060708090a"
		    "0b0c0d: chunk %zu failed authentication", k);
		ok(e == MG_EAUTH && strstr(msg, want) != NULL,
		    "bit flip in chunk %zu detected: %s", k, msg);
	}
	/* The last-chunk flag set on the first chunk. */
	mg_buf_reset(&t);
	mg_buf_append(&t, b.data, b.len);
	t.data[bd[0]] |= 0x80;
	e = decode_simple(&t, msg, sizeof(msg), NULL);
	is_int(e, MG_EAUTH, "forged last-chunk flag detected: %s", msg);
	/* A bit flipped in the preamble and in the sealed header. */
	mg_buf_reset(&t);
	mg_buf_append(&t, b.data, b.len);
	t.data[20] ^= 1;
	is_int(decode_simple(&t, msg, sizeof(msg), NULL), MG_EAUTH,
	    "flipped bit in the ephemeral key: %s", msg);
	mg_buf_reset(&t);
	mg_buf_append(&t, b.data, b.len);
	t.data[BUNDLE_PREAMBLE_LEN + 10] ^= 1;
	is_int(decode_simple(&t, msg, sizeof(msg), NULL), MG_EAUTH,
	    "flipped bit in the sealed header: %s", msg);

	/* Every bit position of every byte: some error, never success. */
	bad = 0;
	for (i = 0; i < b.len; i++) {
		mg_buf_reset(&t);
		mg_buf_append(&t, b.data, b.len);
		t.data[i] ^= (unsigned char)(1u << (i % 8));
		if (decode_simple(&t, NULL, 0, NULL) == MG_OK)
			bad++;
	}
	is_int(bad, 0, "a flipped bit anywhere (%zu positions) is detected",
	    b.len);

	/* Truncation at every boundary and in the middle of each chunk. */
	for (k = 0; k < nb - 1; k++) {
		size_t cut[2] = { bd[k], bd[k] + 7 };
		int j;

		for (j = 0; j < 2; j++) {
			mg_buf_reset(&t);
			mg_buf_append(&t, b.data, cut[j]);
			e = decode_simple(&t, msg, sizeof(msg), NULL);
			ok(e == MG_EDATA && strstr(msg, "truncated") != NULL,
			    "truncated at %zu (%s chunk %zu): %s", cut[j],
			    j ? "inside" : "before", k, msg);
			got_init(&g);
			dec_params(&dp, &g, NULL);
			e = bundle_resume_offset(&dp, t.data, t.len, &off);
			ok(e == MG_OK && off == bd[k],
			    "resume offset for a cut at %zu is %llu "
			    "(boundary %zu)", cut[j], (unsigned long long)off,
			    bd[k]);
			got_free(&g);
		}
	}
	/* Truncation at every byte: never success. */
	bad = 0;
	for (i = 0; i < b.len; i++) {
		mg_buf_reset(&t);
		mg_buf_append(&t, b.data, i);
		if (decode_simple(&t, NULL, 0, NULL) == MG_OK)
			bad++;
	}
	is_int(bad, 0, "truncation at any of %zu bytes is detected", b.len);
	/* Resume from the offset of a corrupt prefix, then the rest. */
	mg_buf_reset(&t);
	mg_buf_append(&t, b.data, bd[4] + 100);
	t.data[bd[3] + 50] ^= 4;	/* chunk 3 damaged in flight */
	got_init(&g);
	dec_params(&dp, &g, NULL);
	e = bundle_resume_offset(&dp, t.data, t.len, &off);
	ok(e == MG_EAUTH && off == bd[3],
	    "damaged chunk: resume from its start (%llu)",
	    (unsigned long long)off);
	got_free(&g);
	t.len = (size_t)off;
	mg_buf_append(&t, b.data + off, b.len - off);
	is_int(decode_simple(&t, msg, sizeof(msg), NULL), MG_OK,
	    "resumed transfer decodes %s", msg);
	/* Complete bundle: resume offset is its length. */
	got_init(&g);
	dec_params(&dp, &g, NULL);
	e = bundle_resume_offset(&dp, b.data, b.len, &off);
	ok(e == MG_OK && off == b.len, "complete bundle: resume offset = "
	    "length");
	got_free(&g);

	/* Reordered: chunks 1 and 2 swapped. */
	mg_buf_reset(&t);
	mg_buf_append(&t, b.data, bd[1]);
	mg_buf_append(&t, b.data + bd[2], bd[3] - bd[2]);
	mg_buf_append(&t, b.data + bd[1], bd[2] - bd[1]);
	mg_buf_append(&t, b.data + bd[3], b.len - bd[3]);
	e = decode_simple(&t, msg, sizeof(msg), NULL);
	ok(e == MG_EAUTH && strstr(msg, "chunk 1 failed authentication"),
	    "reordered chunks detected: %s", msg);
	/* Duplicated: chunk 1 twice. */
	mg_buf_reset(&t);
	mg_buf_append(&t, b.data, bd[2]);
	mg_buf_append(&t, b.data + bd[1], b.len - bd[1]);
	e = decode_simple(&t, msg, sizeof(msg), NULL);
	ok(e == MG_EAUTH && strstr(msg, "chunk 2 failed authentication"),
	    "duplicated chunk detected: %s", msg);
	/* Dropped: chunk 2 missing. */
	mg_buf_reset(&t);
	mg_buf_append(&t, b.data, bd[2]);
	mg_buf_append(&t, b.data + bd[3], b.len - bd[3]);
	e = decode_simple(&t, msg, sizeof(msg), NULL);
	ok(e == MG_EAUTH && strstr(msg, "chunk 2 failed authentication"),
	    "missing chunk detected: %s", msg);
	/* The last chunk again after the end. */
	mg_buf_reset(&t);
	mg_buf_append(&t, b.data, b.len);
	mg_buf_append(&t, b.data + bd[nb - 2], b.len - bd[nb - 2]);
	e = decode_simple(&t, msg, sizeof(msg), NULL);
	ok(e == MG_EDATA && strstr(msg, "trailing data after the last chunk"),
	    "duplicated last chunk detected: %s", msg);
	/* One byte of garbage after the end. */
	mg_buf_reset(&t);
	mg_buf_append(&t, b.data, b.len);
	mg_buf_append(&t, "\n", 1);
	e = decode_simple(&t, msg, sizeof(msg), NULL);
	ok(e == MG_EDATA && strstr(msg, "1 bytes of trailing data"),
	    "trailing garbage detected: %s", msg);
	/* A chunk of another bundle (same keys, other ID) spliced in. */
	{
		struct bundle_enc_params pp;
		struct mg_buf		 o;
		unsigned char		 id2[BUNDLE_ID_LEN];
		size_t			 obd[64];

		memcpy(id2, ID1, sizeof(id2));
		id2[15] ^= 1;
		mg_buf_init(&o, 1 << 20);
		enc_params(&pp, id2);
		pp.chunk_size = 1024;
		rng_state = 1;
		{
			unsigned char p[6000];

			for (i = 0; i < sizeof(p); i++)
				p[i] = rnd8();
			make_bundle(&o, &pp, p, sizeof(p));
		}
		boundaries(&o, obd, 64);
		mg_buf_reset(&t);
		mg_buf_append(&t, b.data, bd[1]);
		mg_buf_append(&t, o.data + obd[1], obd[2] - obd[1]);
		mg_buf_append(&t, b.data + bd[2], b.len - bd[2]);
		e = decode_simple(&t, msg, sizeof(msg), NULL);
		ok(e == MG_EAUTH && strstr(msg, "chunk 1 failed"),
		    "chunk from another bundle detected: %s", msg);
		mg_buf_free(&o);
	}
	mg_buf_free(&t);
	mg_buf_free(&b);
}

static void
test_format_errors(void)
{
	struct bundle_enc_params pp;
	struct bundle_enc	*enc = NULL;
	struct mg_buf		 b, t;
	char			 msg[512];
	enum mg_err		 e;

	mg_buf_init(&b, 1 << 20);
	mg_buf_init(&t, 1 << 20);
	enc_params(&pp, ID1);
	make_bundle(&b, &pp, "v\n", 2);

	mg_buf_append(&t, b.data, b.len);
	t.data[4] = 2;
	e = decode_simple(&t, msg, sizeof(msg), NULL);
	is_int(e, MG_EPROTO, "unknown version refused");
	is_str(S(msg), "bundle: unsupported bundle format version 2 (this mgate "
	    "reads version 1)", "... message");
	t.data[4] = 1;
	t.data[0] = 'X';
	e = decode_simple(&t, msg, sizeof(msg), NULL);
	is_int(e, MG_EDATA, "bad magic refused");
	is_str(S(msg), "bundle: not an mgate bundle (bad magic number)",
	    "... message");
	mg_buf_reset(&t);
	mg_buf_append(&t, "\x89MGB", 4);
	e = decode_simple(&t, msg, sizeof(msg), NULL);
	ok(e == MG_EDATA && strstr(msg, "truncated before the end of the "
	    "header"), "4-byte bundle: %s", msg);
	mg_buf_reset(&t);
	e = decode_simple(&t, msg, sizeof(msg), NULL);
	is_int(e, MG_EDATA, "empty input is not a bundle");

	/* Unknown record type, correctly sealed. */
	mg_buf_reset(&t);
	e = bundle_enc_new(&pp, sink_buf, &t, &enc);
	bundle_enc_raw_record(enc, 0x42, "??", 2);
	bundle_enc_finish(enc);
	bundle_enc_free(enc);
	e = decode_simple(&t, msg, sizeof(msg), NULL);
	is_int(e, MG_EPROTO, "unknown record type refused");
	is_str(S(msg), "bundle 3fa9000102030405060708090a0b0c0d: unknown record "
	    "type 0x42 (record 1); this mgate reads bundle format version 1",
	    "... message");

	/* A MESSAGE record with a field missing. */
	mg_buf_reset(&t);
	bundle_enc_new(&pp, sink_buf, &t, &enc);
	bundle_enc_raw_record(enc, BUNDLE_REC_MESSAGE, "q\0\0\0\1Q", 6);
	bundle_enc_finish(enc);
	bundle_enc_free(enc);
	e = decode_simple(&t, msg, sizeof(msg), NULL);
	ok(e == MG_EDATA && strstr(msg, "truncated field 'f'"),
	    "malformed MESSAGE record: %s", msg);

	/* END with a wrong record count. */
	mg_buf_reset(&t);
	bundle_enc_new(&pp, sink_buf, &t, &enc);
	bundle_enc_raw_record(enc, BUNDLE_REC_END,
	    "N\0\0\0\10\0\0\0\0\0\0\0\5", 13);
	bundle_enc_finish(enc);
	bundle_enc_free(enc);
	e = decode_simple(&t, msg, sizeof(msg), NULL);
	ok(e == MG_EDATA && strstr(msg, "END record counts 5 records"),
	    "END with wrong count: %s", msg);
	mg_buf_free(&t);
	mg_buf_free(&b);
}

/*
 * Re-seal a bundle's header after changing it: decrypt with bob's key,
 * let fix() edit the plaintext, sign with alice's key, encrypt again.
 */
static int
reseal(struct mg_buf *b, void (*fix)(unsigned char *, size_t))
{
	unsigned char	 shared[32], hkey[32], hdr[1024], sigmsg[2048];
	size_t		 hlen = (size_t)b->data[6] << 8 | b->data[7];
	size_t		 tlen = hlen - BUNDLE_TAG_LEN - BUNDLE_SIG_LEN, m = 0;
	size_t		 siglen = 64;
	EVP_CIPHER_CTX	*c = EVP_CIPHER_CTX_new();
	EVP_MD_CTX	*md = EVP_MD_CTX_new();
	EVP_PKEY	*k = NULL;
	int		 ok_ = 0;

	if (!bundle_x25519(bob->kx_priv, b->data + 8, shared) ||
	    !bundle_kdf(shared, b->data + 8, bob->pub.kx,
	    "mgate-bundle-v1 header", NULL, hkey) ||
	    !bundle_aead(c, 0, hkey, 0, b->data, BUNDLE_PREAMBLE_LEN,
	    b->data + BUNDLE_PREAMBLE_LEN, hlen - BUNDLE_TAG_LEN, hdr))
		goto out;
	fix(hdr, tlen);
	memcpy(sigmsg, BUNDLE_SIG_LABEL, BUNDLE_SIG_LABEL_LEN);
	m += BUNDLE_SIG_LABEL_LEN;
	memcpy(sigmsg + m, b->data, BUNDLE_PREAMBLE_LEN);
	m += BUNDLE_PREAMBLE_LEN;
	memcpy(sigmsg + m, hdr, tlen);
	m += tlen;
	memcpy(sigmsg + m, bob->pub.kx, 32);
	m += 32;
	k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL,
	    alice->sign_priv, 32);
	if (EVP_DigestSignInit(md, NULL, NULL, NULL, k) != 1 ||
	    EVP_DigestSign(md, hdr + tlen, &siglen, sigmsg, m) != 1 ||
	    !bundle_aead(c, 1, hkey, 0, b->data, BUNDLE_PREAMBLE_LEN, hdr,
	    hlen - BUNDLE_TAG_LEN, b->data + BUNDLE_PREAMBLE_LEN))
		goto out;
	ok_ = 1;
out:
	EVP_PKEY_free(k);
	EVP_MD_CTX_free(md);
	EVP_CIPHER_CTX_free(c);
	return ok_;
}

static void
fix_dict(unsigned char *h, size_t n)
{
	(void)n;
	h[16 + 8 + 1] ^= 0xff;		/* dictionary ID */
}

static void
fix_codec(unsigned char *h, size_t n)
{
	(void)n;
	h[16 + 8] = 9;
}

static void
fix_chunk(unsigned char *h, size_t n)
{
	(void)n;
	mg_put_be32(h + 16 + 8 + 1 + 8, 16);
}

static void
test_header_fields(void)
{
	struct bundle_enc_params pp;
	struct mg_buf		 b;
	char			 msg[512];
	enum mg_err		 e;
	struct {
		const char	*name;
		void		(*fix)(unsigned char *, size_t);
		enum mg_err	 want;
		const char	*text;
	} t[] = {
		{ "unknown dictionary", fix_dict, MG_EPROTO,
		  "compressed with preset dictionary" },
		{ "unknown codec", fix_codec, MG_EPROTO, "unknown codec 9" },
		{ "chunk size too small", fix_chunk, MG_ELIMIT,
		  "chunk size 16 outside" },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		mg_buf_init(&b, 1 << 20);
		enc_params(&pp, ID1);
		make_bundle(&b, &pp, "h\n", 2);
		ok(reseal(&b, t[i].fix), "re-sealed header (%s)", t[i].name);
		e = decode_simple(&b, msg, sizeof(msg), NULL);
		ok(e == t[i].want && strstr(msg, t[i].text) != NULL,
		    "%s refused: %s", t[i].name, msg);
		mg_buf_free(&b);
	}
}

static void
test_limits(void)
{
	struct bundle_enc_params pp;
	struct bundle_enc	*enc = NULL;
	struct bundle_limits	 lim;
	struct bundle_rcpt	 r[5] = { { "a@x", 0, "" }, { "b@x", 0, "" },
				    { "c@x", 0, "" }, { "d@x", 0, "" },
				    { "e@x", 0, "" } };
	struct bundle_msg	 m = { "QR", "", "", 0, r, 5, 1 };
	struct mg_buf		 b;
	struct got		 g;
	char			 msg[512], *big;
	size_t			 i;
	enum mg_err		 e;

	mg_buf_init(&b, 4 << 20);
	enc_params(&pp, ID1);
	make_bundle(&b, &pp, "0123456789", 10);

	bundle_limits_default(&lim);
	lim.max_message = 9;
	e = decode_simple(&b, msg, sizeof(msg), &lim);
	ok(e == MG_ELIMIT && strstr(msg, "message Q1: size 10 exceeds the "
	    "limit of 9 bytes"), "max_message: %s", msg);

	bundle_limits_default(&lim);
	lim.max_bundle = b.len - 1;
	e = decode_simple(&b, msg, sizeof(msg), &lim);
	ok(e == MG_ELIMIT && strstr(msg, "bundle larger than the limit"),
	    "max_bundle: %s", msg);

	bundle_limits_default(&lim);
	lim.max_record = 20;
	e = decode_simple(&b, msg, sizeof(msg), &lim);
	ok(e == MG_ELIMIT && strstr(msg, "record 1: "), "max_record: %s",
	    msg);

	bundle_limits_default(&lim);
	lim.max_rcpts = 1;
	e = decode_simple(&b, msg, sizeof(msg), &lim);
	ok(e == MG_ELIMIT && strstr(msg, "message Q1: more than 1 "
	    "recipients"), "max_rcpts: %s", msg);

	bundle_limits_default(&lim);
	lim.max_chunk = 4096;
	e = decode_simple(&b, msg, sizeof(msg), &lim);
	ok(e == MG_ELIMIT && strstr(msg, "chunk size 65536 outside"),
	    "max_chunk: %s", msg);

	bundle_limits_default(&lim);
	lim.max_output = 50;
	e = decode_simple(&b, msg, sizeof(msg), &lim);
	ok(e == MG_ELIMIT && strstr(msg, "decompressed size exceeds the "
	    "limit of 50 bytes"), "max_output: %s", msg);

	/* max_records: three messages, limit 2. */
	mg_buf_reset(&b);
	bundle_enc_new(&pp, sink_buf, &b, &enc);
	for (i = 0; i < 3; i++) {
		bundle_enc_msg_begin(enc, &m);
		bundle_enc_msg_write(enc, "x", 1);
		bundle_enc_msg_end(enc);
	}
	e = bundle_enc_finish(enc);
	bundle_enc_free(enc);
	bundle_limits_default(&lim);
	lim.max_records = 2;
	e = decode_simple(&b, msg, sizeof(msg), &lim);
	ok(e == MG_ELIMIT && strstr(msg, "more than 2 records"),
	    "max_records: %s", msg);
	lim.max_records = 4;	/* 3 messages + END */
	lim.max_rcpts = 5;
	is_int(decode_simple(&b, msg, sizeof(msg), &lim), MG_OK,
	    "exactly at the limits is fine %s", msg);

	/* Decompression bomb: 40 MB of zeros, stopped early. */
	big = calloc(1, 40 << 20);
	mg_buf_reset(&b);
	make_bundle(&b, &pp, big, 40 << 20);
	free(big);
	diag("bomb: 40 MiB in %zu bytes of bundle", b.len);
	got_init(&g);
	bundle_limits_default(&lim);
	lim.ratio_floor = 1 << 20;
	lim.max_ratio = 100;
	e = decode(b.data, b.len, NULL, 0, &g, &lim, msg, sizeof(msg), NULL);
	ok(e == MG_ELIMIT && strstr(msg, "refusing a likely decompression "
	    "bomb"), "bomb: %s", msg);
	ok(g.content_len < (2 << 20), "bomb stopped early (%llu bytes out)",
	    (unsigned long long)g.content_len);
	got_free(&g);
	/* With default limits the same 40 MiB is refused too (ratio 200). */
	e = decode_simple(&b, msg, sizeof(msg), NULL);
	ok(e == MG_ELIMIT, "bomb refused with default limits: %s", msg);

	/* A refusing callback stops the decoder with its error. */
	mg_buf_reset(&b);
	make_bundle(&b, &pp, "x", 1);
	got_init(&g);
	g.refuse_msg = 1;
	e = decode(b.data, b.len, NULL, 0, &g, NULL, msg, sizeof(msg), NULL);
	ok(e == MG_ENOSPC && strstr(msg, "message refused by the receiver"),
	    "callback refusal: %s", msg);
	got_free(&g);
	mg_buf_free(&b);
}

/* The golden bundle: fixed keys, ID, time, ephemeral key. */
static void
golden_bundle(struct mg_buf *b)
{
	struct bundle_enc_params pp;
	struct bundle_enc	*enc = NULL;
	static const struct bundle_rcpt r[] = {
		{ "postmaster@example.org", BUNDLE_NOTIFY_FAILURE,
		  "rfc822;postmaster@example.org" } };
	static const char body[] =
	    "From: Alice <alice@ship.example>\r\n"
	    "To: postmaster@example.org\r\n"
	    "Subject: golden\r\n"
	    "Message-ID: <golden-1@ship.example>\r\n"
	    "\r\n"
	    "Bytes: \x00\xff\r\x0a end.\r\n";
	struct bundle_msg	 m = { "GOLD1", "alice@ship.example", "ENV-G",
				    BUNDLE_RET_FULL, r, 1, sizeof(body) - 1 };
	struct bundle_status	 st = { "SITE7", "bob@example.net",
				    BUNDLE_ST_DEFERRED, "4.2.0",
				    "mx.example.net",
				    "451 4.2.0 greylisted, try later",
				    1700000100, 0 };
	static const unsigned char bid[1][BUNDLE_ID_LEN] = { { 0xb1 } };
	static const char *const mids[] = { "SITE5" };
	struct bundle_ack	 a = { bid, 1, mids, 1 };

	enc_params(&pp, ID1);
	pp.chunk_size = 256;
	bundle_enc_new(&pp, sink_buf, b, &enc);
	bundle_enc_msg_begin(enc, &m);
	bundle_enc_msg_write(enc, body, sizeof(body) - 1);
	bundle_enc_msg_end(enc);
	bundle_enc_status(enc, &st);
	bundle_enc_ack(enc, &a);
	/* Enough text for a few 256-byte chunks. */
	m.qid = "GOLD2";
	m.size = 2000;
	bundle_enc_msg_begin(enc, &m);
	for (int i = 0; i < 200; i++)
		bundle_enc_msg_write(enc, i % 7 ? "0123456789" : "ABCDEFGHIJ",
		    10);
	bundle_enc_msg_end(enc);
	if (bundle_enc_finish(enc) != MG_OK)
		diag("golden: %s", bundle_enc_errmsg(enc));
	bundle_enc_free(enc);
}

static void
test_golden(void)
{
	struct mg_buf	 b, f;
	char		 path[1024], msg[512];
	FILE		*fp;

	mg_buf_init(&b, 1 << 20);
	mg_buf_init(&f, 1 << 20);
	golden_bundle(&b);
	snprintf(path, sizeof(path), "%s/tests/data/bundle/golden-v1.mgb",
	    srcdir);
	if (getenv("MGATE_REGEN_GOLDEN") != NULL) {
		if ((fp = fopen(path, "wb")) != NULL) {
			fwrite(b.data, 1, b.len, fp);
			fclose(fp);
		}
		diag("rewrote %s (%zu bytes)", path, b.len);
	}
	ok(read_file(path, &f) == 0, "golden file %s readable", path);
	ok(f.len == b.len && memcmp(f.data, b.data, b.len) == 0,
	    "encoder output byte-identical to the golden file (%zu bytes)",
	    b.len);
	is_int(decode_simple(&f, msg, sizeof(msg), NULL), MG_OK,
	    "golden file decodes %s", msg);
	mg_buf_free(&b);
	mg_buf_free(&f);
}

/*
 * MGATE_FUZZ_SEEDS=DIR writes seed inputs for tests/fuzz/fuzz_bundle.c:
 * one byte (the harness's feeding piece size) then a valid bundle.
 */
static void
write_seed(const char *dir, const char *name, unsigned char piece,
    const struct mg_buf *b)
{
	char	 path[1024];
	FILE	*f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "wb")) == NULL)
		return;
	fputc(piece, f);
	fwrite(b->data, 1, b->len, f);
	fclose(f);
}

static void
fuzz_seeds(void)
{
	const char		*dir = getenv("MGATE_FUZZ_SEEDS");
	struct bundle_enc_params pp;
	struct bundle_enc	*enc = NULL;
	struct bundle_status	 st = { "S1", "r@x", BUNDLE_ST_DELIVERED,
				    "2.0.0", "mx", "250 ok", 1, 0 };
	static const char *const mids[] = { "A", "B" };
	struct bundle_ack	 a = { NULL, 0, mids, 2 };
	struct mg_buf		 b;

	if (dir == NULL)
		return;
	mg_buf_init(&b, 1 << 20);
	golden_bundle(&b);
	write_seed(dir, "golden", 0, &b);
	write_seed(dir, "golden-7", 7, &b);
	mg_buf_reset(&b);
	enc_params(&pp, ID1);
	{
		static const char hi[] = "Subject: hi\r\n\r\nhello\r\n";

		make_bundle(&b, &pp, hi, sizeof(hi) - 1);
	}
	write_seed(dir, "one-message", 0, &b);
	mg_buf_reset(&b);
	bundle_enc_new(&pp, sink_buf, &b, &enc);
	bundle_enc_status(enc, &st);
	bundle_enc_ack(enc, &a);
	bundle_enc_finish(enc);
	bundle_enc_free(enc);
	write_seed(dir, "status-ack", 3, &b);
	mg_buf_reset(&b);
	pp.chunk_size = 256;
	pp.no_dict = 1;
	{
		char text[3000];

		for (size_t i = 0; i < sizeof(text); i++)
			text[i] = (char)rnd8();
		make_bundle(&b, &pp, text, sizeof(text));
	}
	write_seed(dir, "multi-chunk-nodict", 0, &b);
	mg_buf_free(&b);
	diag("fuzz seeds written to %s", dir);
}

/* ---- the shared corpus ---- */

static int
cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

struct corpus_check {
	struct got	 g;
	unsigned char	(*want)[32];
	uint64_t	*wlen;
	size_t		 next, bad;
};

static enum mg_err
cc_end(void *arg)
{
	struct corpus_check *c = arg;

	EVP_DigestFinal_ex(c->g.md, c->g.digest, NULL);
	if (c->g.content_len != c->wlen[c->next] ||
	    memcmp(c->g.digest, c->want[c->next], 32) != 0)
		c->bad++;
	c->next++;
	return MG_OK;
}

static enum mg_err
cc_begin(void *arg, const struct bundle_msg *m)
{
	return cb_msg_begin(&((struct corpus_check *)arg)->g, m);
}

static enum mg_err
cc_data(void *arg, const void *p, size_t n)
{
	struct corpus_check *c = arg;

	c->g.content_len += n;
	return EVP_DigestUpdate(c->g.md, p, n) == 1 ? MG_OK : MG_ESOFTWARE;
}

static void
test_corpus(void)
{
	static const char *dirs[] = { "easy_ham", "easy_ham_2", "hard_ham",
	    "spam", "spam_2" };
	const char		*root = getenv("MGATE_CORPUS");
	char			 path[2048];
	struct mg_buf		 file, out;
	struct bundle_enc_params pp;
	struct bundle_dec_params dp;
	struct bundle_enc	*enc = NULL;
	struct bundle_dec	*dec = NULL;
	struct corpus_check	 cc;
	struct bundle_msg	 m;
	struct bundle_rcpt	 r = { "rcpt@example.org", 0, "" };
	uint64_t		 total = 0, bytes = 0;
	size_t			 nfiles = 0, d, i, nb = 0, inb = 0;
	enum mg_err		 e = MG_OK;
	const size_t		 per = 100;

	if (root == NULL)
		root = "../shared/corpus/spamassassin-public";
	snprintf(path, sizeof(path), "%s/easy_ham", root);
	if (access(path, R_OK) != 0) {
		ok(1, "# SKIP corpus not found at %s (set MGATE_CORPUS)", root);
		return;
	}
	memset(&cc, 0, sizeof(cc));
	got_init(&cc.g);
	mg_buf_init(&file, 1 << 30);
	mg_buf_init(&out, 1 << 30);
	cc.want = calloc(per, 32);
	cc.wlen = calloc(per, sizeof(uint64_t));
	for (d = 0; d < sizeof(dirs) / sizeof(dirs[0]); d++) {
		DIR		*dp_ = NULL;
		struct dirent	*de;
		char		**names = NULL;
		size_t		 nn = 0, cap = 0;

		snprintf(path, sizeof(path), "%s/%s", root, dirs[d]);
		if ((dp_ = opendir(path)) == NULL)
			continue;
		while ((de = readdir(dp_)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			if (nn == cap) {
				cap = cap ? cap * 2 : 1024;
				names = realloc(names, cap * sizeof(*names));
			}
			names[nn++] = strdup(de->d_name);
		}
		closedir(dp_);
		qsort(names, nn, sizeof(*names), cmpstr);
		for (i = 0; i <= nn; i++) {
			const unsigned char *p;
			size_t n;

			/* Flush a full bundle (or the last one). */
			if (enc != NULL && (inb == per || i == nn)) {
				if (e == MG_OK)
					e = bundle_enc_finish(enc);
				bundle_enc_free(enc);
				enc = NULL;
				dec_params(&dp, &cc.g, NULL);
				dp.cb.msg_begin = cc_begin;
				dp.cb.msg_data = cc_data;
				dp.cb.msg_end = cc_end;
				dp.cb.arg = &cc;
				cc.next = 0;
				if (e == MG_OK)
					e = bundle_dec_new(&dp, &dec);
				if (e == MG_OK)
					e = bundle_dec_feed(dec, out.data,
					    out.len);
				if (e == MG_OK)
					e = bundle_dec_finish(dec);
				if (e != MG_OK && dec != NULL)
					diag("%s", bundle_dec_errmsg(dec));
				if (cc.next != inb)
					cc.bad++;
				bundle_dec_free(dec);
				dec = NULL;
				total += out.len;
				nb++;
				inb = 0;
				mg_buf_reset(&out);
			}
			if (i == nn || e != MG_OK)
				break;
			snprintf(path, sizeof(path), "%s/%s/%s", root,
			    dirs[d], names[i]);
			mg_buf_reset(&file);
			if (read_file(path, &file) != 0) {
				e = MG_EIO;
				break;
			}
			/* Strip the mbox "From " line. */
			p = file.data;
			n = file.len;
			if (n >= 5 && memcmp(p, "From ", 5) == 0) {
				const unsigned char *nl = memchr(p, '\n', n);

				n -= nl ? (size_t)(nl + 1 - p) : n;
				p = nl ? nl + 1 : p + file.len;
			}
			if (enc == NULL) {
				enc_params(&pp, NULL);
				pp.eph_priv = NULL;
				e = bundle_enc_new(&pp, sink_buf, &out, &enc);
			}
			memset(&m, 0, sizeof(m));
			m.qid = names[i];
			m.sender = "corpus@example.org";
			m.rcpts = &r;
			m.nrcpt = 1;
			m.size = n;
			EVP_Digest(p, n, cc.want[inb], NULL, EVP_sha256(), NULL);
			cc.wlen[inb] = n;
			if (e == MG_OK)
				e = bundle_enc_msg_begin(enc, &m);
			if (e == MG_OK)
				e = bundle_enc_msg_write(enc, p, n);
			if (e == MG_OK)
				e = bundle_enc_msg_end(enc);
			inb++;
			nfiles++;
			bytes += n;
		}
		bundle_enc_free(enc);
		enc = NULL;
		for (i = 0; i < nn; i++)
			free(names[i]);
		free(names);
	}
	is_int(e, MG_OK, "corpus: every bundle encoded and verified");
	ok(nfiles > 0 && cc.bad == 0, "corpus: %zu messages (%llu bytes) in "
	    "%zu bundles of %zu came back byte-identical; %zu mismatches",
	    nfiles, (unsigned long long)bytes, nb, per, cc.bad);
	diag("corpus: %llu bytes of bundles, ratio %.2f",
	    (unsigned long long)total, total ? (double)bytes / total : 0.0);
	free(cc.want);
	free(cc.wlen);
	got_free(&cc.g);
	mg_buf_free(&file);
	mg_buf_free(&out);
}

int
main(void)
{
	int rc;

	if (getenv("MGATE_SRCDIR") != NULL)
		srcdir = getenv("MGATE_SRCDIR");
	alice = test_key("alice");
	bob = test_key("bob");
	mallory = test_key("mallory");
	carol = test_key("carol");

	test_round_trips();
	test_records();
	test_encoder_errors();
	test_determinism();
	test_auth();
	test_tamper();
	test_chunk_edges();
	test_format_errors();
	test_header_fields();
	test_limits();
	test_golden();
	fuzz_seeds();
	test_corpus();

	keys_free(alice);
	keys_free(bob);
	keys_free(mallory);
	keys_free(carol);
	rc = done();
	return rc;
}
