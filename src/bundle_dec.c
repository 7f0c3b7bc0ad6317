/*
 * bundle_dec.c - the bundle decoder: a push parser with callbacks.
 *
 * Role: verify and unpack a bundle (mgate-bundle(5)) fed in pieces of
 * any size, as they come off a transport.  Layers, each a small state
 * machine: input framing (preamble, sealed header, chunks) -> chunk
 * authentication -> inflate -> record framing -> callbacks.
 *
 * Untrusted input: every byte.  No length is used before it is checked
 * against what the format and the limits allow; no chunk is inflated
 * before its tag verified; inflate output is produced in bounded pieces
 * and counted against the total and ratio limits before it is parsed, so
 * a decompression bomb stops within one output buffer.  Memory: one
 * chunk in, one chunk out, one inflate buffer, one record's metadata.
 *
 * Never: call back with unverified bytes; accept a bundle whose END,
 * last-chunk flag or end of deflate stream is missing (finish() says
 * so); continue after an error (errors are sticky).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <zlib.h>

#include "mgate/buf.h"
#include "mgate/bundle.h"

#define OUTBUF		65536

enum in_state { IN_PREAMBLE, IN_HEADER, IN_CHUNK_HDR, IN_CHUNK, IN_DONE };
enum rec_state { REC_HDR, REC_BODY, REC_CONTENT, REC_AFTER_END };

struct bundle_dec {
	struct bundle_dec_params p;
	struct bundle_limits	 lim;
	enum mg_err		 err;
	char			 msg[512];
	int			 verify_only;	/* no record callbacks */

	/* input framing */
	enum in_state		 in;
	unsigned char		 pre[BUNDLE_PREAMBLE_LEN];
	unsigned char		*acc;		/* header or sealed chunk */
	size_t			 acc_cap, need, have;
	uint64_t		 in_total;	/* bytes fed */
	uint64_t		 verified;	/* end of last verified unit */
	uint32_t		 clen;		/* current chunk's text length */
	int			 clast;
	uint64_t		 cidx;

	/* header */
	int			 have_info;
	struct bundle_info	 info;
	unsigned char		 body_key[32];
	EVP_CIPHER_CTX		*cctx;

	/* inflate */
	z_stream		 z;
	int			 z_live, z_end;
	unsigned char		*plain;
	unsigned char		*obuf;
	uint64_t		 z_in, z_out;

	/* records */
	enum rec_state		 rs;
	unsigned char		 rhdr[MG_FIELD_HDR];
	size_t			 rhave;
	uint8_t			 rtype;
	uint32_t		 rlen;
	struct mg_buf		 rec;		/* one record's payload */
	struct mg_buf		 strs;		/* its strings, NUL-ended */
	uint64_t		 records;
	uint64_t		 msg_left;
	char			 qid[80];	/* current message, for errors */
	struct bundle_rcpt	*rcpts;
	size_t			 rcpt_cap;
	const char		**ids;
	size_t			 ids_cap;
	int			 end_seen;
};

static enum mg_err __attribute__((format(printf, 3, 4)))
dec_fail(struct bundle_dec *d, enum mg_err e, const char *fmt, ...)
{
	va_list	ap;
	int	n;

	if (d->err != MG_OK)
		return d->err;
	if (d->have_info)
		n = snprintf(d->msg, sizeof(d->msg), "bundle %s: ",
		    d->info.id_hex);
	else
		n = snprintf(d->msg, sizeof(d->msg), "bundle: ");
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(d->msg))
		vsnprintf(d->msg + n, sizeof(d->msg) - (size_t)n, fmt, ap);
	va_end(ap);
	return d->err = e;
}

static enum mg_err
cb_fail(struct bundle_dec *d, enum mg_err e, const char *what)
{
	return dec_fail(d, e, "%s refused by the receiver: %s", what,
	    mg_strerror(e));
}

enum mg_err
bundle_dec_new(const struct bundle_dec_params *pp, struct bundle_dec **out)
{
	struct bundle_dec *d = NULL;

	*out = NULL;
	if (pp == NULL || pp->self_keys == NULL ||
	    (pp->nsenders > 0 && pp->senders == NULL) || pp->nsenders == 0)
		return MG_EUSAGE;
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return MG_ENOMEM;
	d->p = *pp;
	if (pp->limits != NULL)
		d->lim = *pp->limits;
	else
		bundle_limits_default(&d->lim);
	d->p.limits = NULL;
	if (d->lim.max_chunk > BUNDLE_CHUNK_MAX)
		d->lim.max_chunk = BUNDLE_CHUNK_MAX;
	mg_buf_init(&d->rec, d->lim.max_record);
	mg_buf_init(&d->strs, (size_t)d->lim.max_record + 1);
	d->in = IN_PREAMBLE;
	d->need = BUNDLE_PREAMBLE_LEN;
	if ((d->cctx = EVP_CIPHER_CTX_new()) == NULL) {
		bundle_dec_free(d);
		return MG_ENOMEM;
	}
	*out = d;
	return MG_OK;
}

void
bundle_dec_free(struct bundle_dec *d)
{
	if (d == NULL)
		return;
	if (d->z_live)
		inflateEnd(&d->z);
	EVP_CIPHER_CTX_free(d->cctx);
	free(d->acc);
	free(d->plain);
	free(d->obuf);
	free(d->rcpts);
	free(d->ids);
	mg_buf_free(&d->rec);
	mg_buf_free(&d->strs);
	OPENSSL_cleanse(d->body_key, sizeof(d->body_key));
	free(d);
}

const char *
bundle_dec_errmsg(const struct bundle_dec *d)
{
	return d->err == MG_OK ? "" : d->msg;
}

const struct bundle_info *
bundle_dec_info(const struct bundle_dec *d)
{
	return d->have_info ? &d->info : NULL;
}

uint64_t
bundle_dec_verified_offset(const struct bundle_dec *d)
{
	return d->verified;
}

uint64_t
bundle_dec_chunks(const struct bundle_dec *d)
{
	return d->cidx;
}

/* ---- records ---- */

/* The next field, which must carry tag; strings get a NUL-ended copy. */
static enum mg_err
rd_expect(struct bundle_dec *d, struct mg_rd *r, uint8_t tag,
    const unsigned char **v, size_t *n)
{
	uint8_t t;

	if (mg_rd_field(r, &t, v, n) != MG_OK)
		return dec_fail(d, MG_EDATA, "record %llu: truncated field "
		    "'%c'", (unsigned long long)d->records, tag);
	if (t != tag)
		return dec_fail(d, MG_EDATA, "record %llu: field 0x%02x where "
		    "'%c' was expected", (unsigned long long)d->records, t,
		    tag);
	return MG_OK;
}

static enum mg_err
rd_str(struct bundle_dec *d, struct mg_rd *r, uint8_t tag, const char **s)
{
	const unsigned char	*v;
	size_t			 n;
	char			*p;

	if (rd_expect(d, r, tag, &v, &n) != MG_OK)
		return d->err;
	if (memchr(v, '\0', n) != NULL)
		return dec_fail(d, MG_EDATA, "record %llu: NUL byte in field "
		    "'%c'", (unsigned long long)d->records, tag);
	/* strs was reserved for the whole record: no reallocation here. */
	p = (char *)d->strs.data + d->strs.len;
	if (mg_buf_append(&d->strs, v, n) != MG_OK ||
	    mg_buf_put_u8(&d->strs, 0) != MG_OK)
		return dec_fail(d, MG_ESOFTWARE, "string space exhausted");
	*s = p;
	return MG_OK;
}

static enum mg_err
rd_u8(struct bundle_dec *d, struct mg_rd *r, uint8_t tag, uint8_t *u)
{
	const unsigned char	*v;
	size_t			 n;

	if (rd_expect(d, r, tag, &v, &n) != MG_OK)
		return d->err;
	if (n != 1)
		return dec_fail(d, MG_EDATA, "record %llu: field '%c' has "
		    "length %zu, not 1", (unsigned long long)d->records, tag, n);
	*u = v[0];
	return MG_OK;
}

static enum mg_err
rd_u64(struct bundle_dec *d, struct mg_rd *r, uint8_t tag, uint64_t *u)
{
	const unsigned char	*v;
	size_t			 n;

	if (rd_expect(d, r, tag, &v, &n) != MG_OK)
		return d->err;
	if (mg_field_u64(v, n, u) != MG_OK)
		return dec_fail(d, MG_EDATA, "record %llu: field '%c' is not "
		    "a 64-bit integer", (unsigned long long)d->records, tag);
	return MG_OK;
}

static int
rd_peek(const struct mg_rd *r)
{
	return r->off < r->len ? r->p[r->off] : -1;
}

static enum mg_err
rec_message(struct bundle_dec *d, struct mg_rd *r)
{
	struct bundle_msg	 m;
	struct bundle_rcpt	*nr;
	size_t			 ncap;
	uint8_t			 u8;
	enum mg_err		 e;

	memset(&m, 0, sizeof(m));
	if (rd_str(d, r, BF_QID, &m.qid) != MG_OK)
		return d->err;
	snprintf(d->qid, sizeof(d->qid), "%s", m.qid);
	if (m.qid[0] == '\0')
		return dec_fail(d, MG_EDATA, "record %llu: empty queue ID",
		    (unsigned long long)d->records);
	if (rd_str(d, r, BF_SENDER, &m.sender) != MG_OK ||
	    rd_str(d, r, BF_ENVID, &m.envid) != MG_OK ||
	    rd_u8(d, r, BF_RET, &u8) != MG_OK)
		return d->err;
	if (u8 > BUNDLE_RET_HDRS)
		return dec_fail(d, MG_EDATA, "message %s: invalid RET value "
		    "%u", d->qid, u8);
	m.ret = u8;
	while (rd_peek(r) == BF_RCPT) {
		if (m.nrcpt >= d->lim.max_rcpts)
			return dec_fail(d, MG_ELIMIT, "message %s: more than "
			    "%u recipients", d->qid, d->lim.max_rcpts);
		if (m.nrcpt == d->rcpt_cap) {
			ncap = d->rcpt_cap ? d->rcpt_cap * 2 : 16;
			if (ncap > d->lim.max_rcpts)
				ncap = d->lim.max_rcpts;
			if ((nr = reallocarray(d->rcpts, ncap,
			    sizeof(*nr))) == NULL)
				return dec_fail(d, MG_ENOMEM, "out of memory");
			d->rcpts = nr;
			d->rcpt_cap = ncap;
		}
		nr = &d->rcpts[m.nrcpt];
		if (rd_str(d, r, BF_RCPT, &nr->addr) != MG_OK ||
		    rd_u8(d, r, BF_NOTIFY, &u8) != MG_OK ||
		    rd_str(d, r, BF_ORCPT, &nr->orcpt) != MG_OK)
			return d->err;
		nr->notify = u8;
		m.nrcpt++;
	}
	m.rcpts = d->rcpts;
	if (rd_u64(d, r, BF_SIZE, &m.size) != MG_OK)
		return d->err;
	if (!mg_rd_eof(r))
		return dec_fail(d, MG_EDATA, "message %s: unexpected field "
		    "0x%02x", d->qid, (unsigned)rd_peek(r));
	if (m.size > d->lim.max_message)
		return dec_fail(d, MG_ELIMIT, "message %s: size %llu exceeds "
		    "the limit of %llu bytes", d->qid,
		    (unsigned long long)m.size,
		    (unsigned long long)d->lim.max_message);
	if (!d->verify_only && d->p.cb.msg_begin != NULL &&
	    (e = d->p.cb.msg_begin(d->p.cb.arg, &m)) != MG_OK)
		return cb_fail(d, e, "message");
	d->msg_left = m.size;
	d->rs = REC_CONTENT;
	return MG_OK;
}

static enum mg_err
rec_status(struct bundle_dec *d, struct mg_rd *r)
{
	struct bundle_status	st;
	uint64_t		t;
	uint8_t			u8;
	enum mg_err		e;

	memset(&st, 0, sizeof(st));
	if (rd_str(d, r, BF_QID, &st.qid) != MG_OK ||
	    rd_str(d, r, BF_RCPT, &st.rcpt) != MG_OK ||
	    rd_u8(d, r, BF_STATE, &u8) != MG_OK ||
	    rd_str(d, r, BF_STATUS, &st.status) != MG_OK ||
	    rd_str(d, r, BF_REMOTE, &st.remote) != MG_OK ||
	    rd_str(d, r, BF_DIAG, &st.diag) != MG_OK ||
	    rd_u64(d, r, BF_TIME, &t) != MG_OK)
		return d->err;
	/* Optional, present only when set. */
	if (!mg_rd_eof(r) && rd_peek(r) == BF_NEXT_HOP_DSN) {
		uint8_t flag;

		if (rd_u8(d, r, BF_NEXT_HOP_DSN, &flag) != MG_OK)
			return d->err;
		if (flag != 1)
			return dec_fail(d, MG_EDATA, "status record %llu: "
			    "next-hop DSN flag %u", (unsigned long long)
			    d->records, flag);
		st.next_hop_dsn = 1;
	}
	if (!mg_rd_eof(r))
		return dec_fail(d, MG_EDATA, "status record %llu: unexpected "
		    "field 0x%02x", (unsigned long long)d->records,
		    (unsigned)rd_peek(r));
	if (u8 < BUNDLE_ST_ACCEPTED || u8 > BUNDLE_ST_FAILED)
		return dec_fail(d, MG_EDATA, "status record %llu: unknown "
		    "state %u", (unsigned long long)d->records, u8);
	st.state = u8;
	st.time = (int64_t)t;
	if (!d->verify_only && d->p.cb.status != NULL &&
	    (e = d->p.cb.status(d->p.cb.arg, &st)) != MG_OK)
		return cb_fail(d, e, "status record");
	return MG_OK;
}

static enum mg_err
rec_ack(struct bundle_dec *d, struct mg_rd *r)
{
	struct bundle_ack	 a;
	const unsigned char	*v, *first = NULL;
	const char		*s;
	size_t			 n, ncap;
	uint8_t			 t;
	const char		**ni;
	enum mg_err		 e;

	memset(&a, 0, sizeof(a));
	/* Bundle IDs, contiguous in strs, then message IDs. */
	while (rd_peek(r) == BF_BUNDLE_ID) {
		if (mg_rd_field(r, &t, &v, &n) != MG_OK || n != BUNDLE_ID_LEN)
			return dec_fail(d, MG_EDATA, "ack record %llu: bad "
			    "bundle ID field", (unsigned long long)d->records);
		if (first == NULL)
			first = d->strs.data + d->strs.len;
		if (mg_buf_append(&d->strs, v, n) != MG_OK)
			return dec_fail(d, MG_ESOFTWARE, "ack space exhausted");
		a.nbundle++;
	}
	a.bundle_ids = (const unsigned char (*)[BUNDLE_ID_LEN])first;
	while (rd_peek(r) == BF_MSG_ID) {
		if (rd_str(d, r, BF_MSG_ID, &s) != MG_OK)
			return d->err;
		if (a.nmsg == d->ids_cap) {
			ncap = d->ids_cap ? d->ids_cap * 2 : 64;
			if ((ni = reallocarray(d->ids, ncap,
			    sizeof(*ni))) == NULL)
				return dec_fail(d, MG_ENOMEM, "out of memory");
			d->ids = ni;
			d->ids_cap = ncap;
		}
		d->ids[a.nmsg++] = s;
	}
	a.msg_ids = d->ids;
	if (!mg_rd_eof(r))
		return dec_fail(d, MG_EDATA, "ack record %llu: unexpected "
		    "field 0x%02x", (unsigned long long)d->records,
		    (unsigned)rd_peek(r));
	if (!d->verify_only && d->p.cb.ack != NULL &&
	    (e = d->p.cb.ack(d->p.cb.arg, &a)) != MG_OK)
		return cb_fail(d, e, "ack record");
	return MG_OK;
}

static enum mg_err
rec_end(struct bundle_dec *d, struct mg_rd *r)
{
	uint64_t	n;
	enum mg_err	e;

	if (rd_u64(d, r, BF_COUNT, &n) != MG_OK)
		return d->err;
	if (!mg_rd_eof(r))
		return dec_fail(d, MG_EDATA, "END record: unexpected field");
	if (n != d->records - 1)
		return dec_fail(d, MG_EDATA, "END record counts %llu records, "
		    "%llu were read", (unsigned long long)n,
		    (unsigned long long)(d->records - 1));
	d->end_seen = 1;
	d->rs = REC_AFTER_END;
	if (!d->verify_only && d->p.cb.end != NULL &&
	    (e = d->p.cb.end(d->p.cb.arg)) != MG_OK)
		return cb_fail(d, e, "END record");
	return MG_OK;
}

static enum mg_err
rec_dispatch(struct bundle_dec *d)
{
	struct mg_rd r;

	mg_rd_init(&r, d->rec.data, d->rec.len);
	mg_buf_reset(&d->strs);
	/* Strings and IDs are never longer than the record holding them. */
	if (mg_buf_reserve(&d->strs, d->rec.len + 1) != MG_OK)
		return dec_fail(d, MG_ENOMEM, "out of memory");
	d->rs = REC_HDR;
	switch (d->rtype) {
	case BUNDLE_REC_MESSAGE:
		return rec_message(d, &r);
	case BUNDLE_REC_STATUS:
		return rec_status(d, &r);
	case BUNDLE_REC_ACK:
		return rec_ack(d, &r);
	case BUNDLE_REC_END:
		return rec_end(d, &r);
	}
	return dec_fail(d, MG_ESOFTWARE, "record type 0x%02x", d->rtype);
}

static int
rec_known(uint8_t t)
{
	return t == BUNDLE_REC_MESSAGE || t == BUNDLE_REC_STATUS ||
	    t == BUNDLE_REC_ACK || t == BUNDLE_REC_END;
}

/* Decompressed bytes, in order, through the record state machine. */
static enum mg_err
rec_feed(struct bundle_dec *d, const unsigned char *p, size_t n)
{
	size_t		take;
	enum mg_err	e;

	while (n > 0 && d->err == MG_OK) {
		switch (d->rs) {
		case REC_HDR:
			take = MG_FIELD_HDR - d->rhave;
			if (take > n)
				take = n;
			memcpy(d->rhdr + d->rhave, p, take);
			d->rhave += take;
			p += take;
			n -= take;
			if (d->rhave < MG_FIELD_HDR)
				break;
			d->rhave = 0;
			d->rtype = d->rhdr[0];
			d->rlen = mg_get_be32(d->rhdr + 1);
			d->records++;
			if (!rec_known(d->rtype))
				return dec_fail(d, MG_EPROTO, "unknown record "
				    "type 0x%02x (record %llu); this mgate "
				    "reads bundle format version %d",
				    d->rtype, (unsigned long long)d->records,
				    BUNDLE_VERSION);
			if (d->records > d->lim.max_records)
				return dec_fail(d, MG_ELIMIT, "more than %llu "
				    "records",
				    (unsigned long long)d->lim.max_records);
			if (d->rlen > d->lim.max_record)
				return dec_fail(d, MG_ELIMIT, "record %llu: "
				    "%u bytes of metadata exceed the limit of "
				    "%u", (unsigned long long)d->records,
				    d->rlen, d->lim.max_record);
			mg_buf_reset(&d->rec);
			d->rs = REC_BODY;
			if (d->rlen == 0 && rec_dispatch(d) != MG_OK)
				return d->err;
			break;
		case REC_BODY:
			take = d->rlen - d->rec.len;
			if (take > n)
				take = n;
			if (mg_buf_append(&d->rec, p, take) != MG_OK)
				return dec_fail(d, MG_ENOMEM, "out of memory");
			p += take;
			n -= take;
			if (d->rec.len == d->rlen && rec_dispatch(d) != MG_OK)
				return d->err;
			break;
		case REC_CONTENT:
			take = d->msg_left < n ? (size_t)d->msg_left : n;
			if (take > 0 && !d->verify_only &&
			    d->p.cb.msg_data != NULL &&
			    (e = d->p.cb.msg_data(d->p.cb.arg, p, take)) !=
			    MG_OK)
				return cb_fail(d, e, "message content");
			d->msg_left -= take;
			p += take;
			n -= take;
			break;
		case REC_AFTER_END:
			return dec_fail(d, MG_EDATA, "data after the END "
			    "record");
		}
		if (d->rs == REC_CONTENT && d->msg_left == 0) {
			d->rs = REC_HDR;
			if (!d->verify_only && d->p.cb.msg_end != NULL &&
			    (e = d->p.cb.msg_end(d->p.cb.arg)) != MG_OK)
				return cb_fail(d, e, "message end");
		}
	}
	return d->err;
}

/* ---- chunks ---- */

static enum mg_err
dec_inflate(struct bundle_dec *d, size_t len)
{
	size_t	got;
	int	r;

	d->z.next_in = d->plain;
	d->z.avail_in = (uInt)len;
	d->z_in += len;
	for (;;) {
		if (d->z_end) {
			if (d->z.avail_in > 0)
				return dec_fail(d, MG_EDATA, "chunk %llu: data "
				    "after the end of the compressed stream",
				    (unsigned long long)d->cidx - 1);
			break;
		}
		d->z.next_out = d->obuf;
		d->z.avail_out = OUTBUF;
		r = inflate(&d->z, Z_NO_FLUSH);
		got = OUTBUF - d->z.avail_out;
		if (r == Z_STREAM_END)
			d->z_end = 1;
		else if (r == Z_BUF_ERROR) {
			/* No progress possible: all input used. */
			if (d->clast)
				return dec_fail(d, MG_EDATA, "compressed stream "
				    "incomplete at the last chunk");
			break;
		} else if (r != Z_OK)
			return dec_fail(d, MG_EDATA, "chunk %llu: corrupt "
			    "compressed data (%s)",
			    (unsigned long long)d->cidx - 1,
			    d->z.msg ? d->z.msg : "inflate error");
		d->z_out += got;
		if (d->z_out > d->lim.max_output)
			return dec_fail(d, MG_ELIMIT, "decompressed size "
			    "exceeds the limit of %llu bytes",
			    (unsigned long long)d->lim.max_output);
		/* Against input inflate actually consumed, not the chunk. */
		if (d->z_out > d->lim.ratio_floor &&
		    d->z_out / d->lim.max_ratio > (uint64_t)d->z.total_in)
			return dec_fail(d, MG_ELIMIT, "decompression ratio "
			    "over %u:1 (%llu bytes from %llu): refusing a "
			    "likely decompression bomb", d->lim.max_ratio,
			    (unsigned long long)d->z_out,
			    (unsigned long long)d->z.total_in);
		if (got > 0 && rec_feed(d, d->obuf, got) != MG_OK)
			return d->err;
		/* Input used up and output not full: wait for more. */
		if (!d->z_end && d->z.avail_in == 0 && d->z.avail_out != 0) {
			if (d->clast)
				return dec_fail(d, MG_EDATA, "compressed stream "
				    "incomplete at the last chunk");
			break;
		}
	}
	if (d->clast) {
		if (!d->z_end)
			return dec_fail(d, MG_EDATA, "compressed stream "
			    "incomplete at the last chunk");
		if (!d->end_seen || d->rs != REC_AFTER_END)
			return dec_fail(d, MG_EDATA, "bundle ends without an "
			    "END record");
	} else if (d->z_end)
		return dec_fail(d, MG_EDATA, "compressed stream ends in "
		    "chunk %llu, which is not flagged last",
		    (unsigned long long)d->cidx - 1);
	return MG_OK;
}

static enum mg_err
dec_chunk(struct bundle_dec *d)
{
	unsigned char aad[29];

	bundle_chunk_aad(aad, d->info.id, d->cidx, d->clast);
	if (!bundle_aead(d->cctx, 0, d->body_key, d->cidx, aad, sizeof(aad),
	    d->acc, d->clen, d->plain))
		return dec_fail(d, MG_EAUTH, "chunk %llu failed authentication "
		    "(corrupted, forged, reordered or duplicated)",
		    (unsigned long long)d->cidx);
	d->cidx++;
	d->verified = d->in_total;
	return dec_inflate(d, d->clen);
}

/* ---- header ---- */

static enum mg_err
dec_preamble(struct bundle_dec *d)
{
	size_t hlen;

	if (memcmp(d->pre, BUNDLE_MAGIC, BUNDLE_MAGIC_LEN) != 0)
		return dec_fail(d, MG_EDATA, "not an mgate bundle (bad magic "
		    "number)");
	if (d->pre[4] != BUNDLE_VERSION)
		return dec_fail(d, MG_EPROTO, "unsupported bundle format "
		    "version %u (this mgate reads version %d)", d->pre[4],
		    BUNDLE_VERSION);
	if (d->pre[5] != BUNDLE_SUITE_1)
		return dec_fail(d, MG_EPROTO, "unsupported cipher suite %u",
		    d->pre[5]);
	hlen = (size_t)d->pre[6] << 8 | d->pre[7];
	if (hlen < BUNDLE_HDR_FIXED + 2 + BUNDLE_SIG_LEN + BUNDLE_TAG_LEN ||
	    hlen > BUNDLE_HDR_FIXED + 2 * BUNDLE_NAME_MAX + BUNDLE_SIG_LEN +
	    BUNDLE_TAG_LEN)
		return dec_fail(d, MG_EDATA, "header length %zu out of range",
		    hlen);
	if ((d->acc = malloc(hlen)) == NULL)
		return dec_fail(d, MG_ENOMEM, "out of memory");
	d->acc_cap = hlen;
	d->need = hlen;
	d->in = IN_HEADER;
	return MG_OK;
}

static int
name_eq(const char *expect, const char *got)
{
	return expect == NULL || strcmp(expect, got) == 0;
}

static enum mg_err
dec_header(struct bundle_dec *d)
{
	unsigned char	 eph_pub[32], shared[32], hkey[32];
	unsigned char	 hdr[BUNDLE_HDR_FIXED + 2 * BUNDLE_NAME_MAX +
			     BUNDLE_SIG_LEN];
	unsigned char	 sigmsg[BUNDLE_SIG_LABEL_LEN + BUNDLE_PREAMBLE_LEN +
			     sizeof(hdr) + 32];
	unsigned char	 zeros[BUNDLE_DICT_ID_LEN];
	char		 fpr[MG_KEY_FPR_LEN];
	const unsigned char *kx = d->p.self_keys->pub.kx;
	size_t		 hlen = d->need - BUNDLE_TAG_LEN, tlen, off, n, i, mlen;
	EVP_PKEY	*pk = NULL;
	EVP_MD_CTX	*md = NULL;
	int		 found = 0, use_dict;
	enum mg_err	 e = MG_OK;

	memcpy(eph_pub, d->pre + 8, 32);
	if (!bundle_x25519(d->p.self_keys->kx_priv, eph_pub, shared) ||
	    !bundle_kdf(shared, eph_pub, kx, "mgate-bundle-v1 header", NULL,
	    hkey) ||
	    !bundle_aead(d->cctx, 0, hkey, 0, d->pre, BUNDLE_PREAMBLE_LEN,
	    d->acc, hlen, hdr)) {
		e = dec_fail(d, MG_EAUTH, "header failed authentication: the "
		    "bundle is not encrypted to this peer's key (wrong "
		    "receiver) or is corrupted");
		goto out;
	}
	/* Parse: fixed part, two names, signature. */
	tlen = hlen - BUNDLE_SIG_LEN;
	off = 0;
	memcpy(d->info.id, hdr, BUNDLE_ID_LEN);
	off += BUNDLE_ID_LEN;
	bundle_id_hex(d->info.id, d->info.id_hex);
	d->info.ctime = (int64_t)mg_get_be64(hdr + off);
	off += 8;
	d->info.codec = hdr[off++];
	memcpy(d->info.dict_id, hdr + off, BUNDLE_DICT_ID_LEN);
	off += BUNDLE_DICT_ID_LEN;
	d->info.chunk_size = mg_get_be32(hdr + off);
	off += 4;
	d->info.version = d->pre[4];
	n = hdr[off++];
	if (off + n + 1 > tlen)
		goto malformed;
	memcpy(d->info.sender, hdr + off, n);
	d->info.sender[n] = '\0';
	off += n;
	if (n == 0 || strlen(d->info.sender) != n)
		goto malformed;
	n = hdr[off++];
	if (off + n != tlen)
		goto malformed;
	memcpy(d->info.receiver, hdr + off, n);
	d->info.receiver[n] = '\0';
	if (n == 0 || strlen(d->info.receiver) != n)
		goto malformed;
	d->have_info = 1;	/* errors now name the bundle */
	/* Signature: label, preamble, header, our X25519 public key. */
	mlen = 0;
	memcpy(sigmsg, BUNDLE_SIG_LABEL, BUNDLE_SIG_LABEL_LEN);
	mlen += BUNDLE_SIG_LABEL_LEN;
	memcpy(sigmsg + mlen, d->pre, BUNDLE_PREAMBLE_LEN);
	mlen += BUNDLE_PREAMBLE_LEN;
	memcpy(sigmsg + mlen, hdr, tlen);
	mlen += tlen;
	memcpy(sigmsg + mlen, kx, 32);
	mlen += 32;
	if ((md = EVP_MD_CTX_new()) == NULL) {
		e = dec_fail(d, MG_ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < d->p.nsenders && !found; i++) {
		pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL,
		    d->p.senders[i].sign, MG_KEY_LEN);
		if (pk != NULL && EVP_MD_CTX_reset(md) == 1 &&
		    EVP_DigestVerifyInit(md, NULL, NULL, NULL, pk) == 1 &&
		    EVP_DigestVerify(md, hdr + tlen, BUNDLE_SIG_LEN, sigmsg,
		    mlen) == 1) {
			found = 1;
			d->info.sender_index = i;
		}
		EVP_PKEY_free(pk);
		pk = NULL;
	}
	if (!found) {
		keys_fingerprint(&d->p.senders[0], fpr, sizeof(fpr));
		e = dec_fail(d, MG_EAUTH, "header from '%s' is not signed by "
		    "%s (%s%s): forged, or signed by another peer's key",
		    d->info.sender, d->p.nsenders == 1 ? "the expected key" :
		    "any expected key", fpr, d->p.nsenders > 1 ? ", ..." : "");
		goto out;
	}
	if (!name_eq(d->p.self_name, d->info.receiver)) {
		e = dec_fail(d, MG_EAUTH, "addressed to peer '%s', but this "
		    "is '%s'", d->info.receiver, d->p.self_name);
		goto out;
	}
	if (!name_eq(d->p.sender_name, d->info.sender)) {
		e = dec_fail(d, MG_EAUTH, "sent by peer '%s', expected '%s'",
		    d->info.sender, d->p.sender_name);
		goto out;
	}
	if (d->info.codec != BUNDLE_CODEC_DEFLATE) {
		e = dec_fail(d, MG_EPROTO, "unknown codec %u", d->info.codec);
		goto out;
	}
	memset(zeros, 0, sizeof(zeros));
	use_dict = memcmp(d->info.dict_id, zeros, sizeof(zeros)) != 0;
	if (use_dict && memcmp(d->info.dict_id, bundle_dict_id,
	    BUNDLE_DICT_ID_LEN) != 0) {
		e = dec_fail(d, MG_EPROTO, "compressed with preset dictionary "
		    "%02x%02x%02x%02x%02x%02x%02x%02x, which this mgate does "
		    "not have (it has %02x%02x%02x%02x%02x%02x%02x%02x)",
		    d->info.dict_id[0], d->info.dict_id[1], d->info.dict_id[2],
		    d->info.dict_id[3], d->info.dict_id[4], d->info.dict_id[5],
		    d->info.dict_id[6], d->info.dict_id[7], bundle_dict_id[0],
		    bundle_dict_id[1], bundle_dict_id[2], bundle_dict_id[3],
		    bundle_dict_id[4], bundle_dict_id[5], bundle_dict_id[6],
		    bundle_dict_id[7]);
		goto out;
	}
	if (d->info.chunk_size < BUNDLE_CHUNK_MIN ||
	    d->info.chunk_size > d->lim.max_chunk) {
		e = dec_fail(d, MG_ELIMIT, "chunk size %u outside %u..%u",
		    d->info.chunk_size, BUNDLE_CHUNK_MIN, d->lim.max_chunk);
		goto out;
	}
	if (!bundle_kdf(shared, eph_pub, kx, "mgate-bundle-v1 body",
	    d->info.id, d->body_key)) {
		e = dec_fail(d, MG_ESOFTWARE, "key derivation failed");
		goto out;
	}
	/* Buffers for chunks, sized by the (now authenticated) header. */
	free(d->acc);
	d->acc = NULL;
	if ((d->acc = malloc(d->info.chunk_size + BUNDLE_TAG_LEN)) == NULL ||
	    (d->plain = malloc(d->info.chunk_size)) == NULL ||
	    (d->obuf = malloc(OUTBUF)) == NULL) {
		e = dec_fail(d, MG_ENOMEM, "out of memory");
		goto out;
	}
	d->acc_cap = d->info.chunk_size + BUNDLE_TAG_LEN;
	if (inflateInit2(&d->z, -15) != Z_OK) {
		e = dec_fail(d, MG_ENOMEM, "inflateInit failed");
		goto out;
	}
	d->z_live = 1;
	if (use_dict && inflateSetDictionary(&d->z, bundle_dict,
	    (uInt)bundle_dict_len) != Z_OK) {
		e = dec_fail(d, MG_ESOFTWARE, "inflateSetDictionary failed");
		goto out;
	}
	d->verified = d->in_total;
	if (!d->verify_only && d->p.cb.header != NULL &&
	    (e = d->p.cb.header(d->p.cb.arg, &d->info)) != MG_OK) {
		e = cb_fail(d, e, "header");
		goto out;
	}
	goto out;
malformed:
	e = dec_fail(d, MG_EDATA, "malformed header");
out:
	EVP_MD_CTX_free(md);
	OPENSSL_cleanse(shared, sizeof(shared));
	OPENSSL_cleanse(hkey, sizeof(hkey));
	return e;
}

/* ---- input framing ---- */

enum mg_err
bundle_dec_feed(struct bundle_dec *d, const void *vp, size_t n)
{
	const unsigned char	*p = vp;
	unsigned char		*dst;
	size_t			 take;
	uint32_t		 w;

	if (d->err != MG_OK)
		return d->err;
	while (n > 0) {
		if (d->in == IN_DONE)
			return dec_fail(d, MG_EDATA, "%zu bytes of trailing "
			    "data after the last chunk", n);
		take = d->need - d->have;
		if (take > n)
			take = n;
		if (d->in_total + take > d->lim.max_bundle)
			return dec_fail(d, MG_ELIMIT, "bundle larger than the "
			    "limit of %llu bytes",
			    (unsigned long long)d->lim.max_bundle);
		dst = d->in == IN_PREAMBLE ? d->pre :
		    d->in == IN_CHUNK_HDR ? d->pre : d->acc;
		memcpy(dst + d->have, p, take);
		d->have += take;
		d->in_total += take;
		p += take;
		n -= take;
		if (d->have < d->need)
			break;
		d->have = 0;
		switch (d->in) {
		case IN_PREAMBLE:
			if (dec_preamble(d) != MG_OK)
				return d->err;
			break;
		case IN_HEADER:
			if (dec_header(d) != MG_OK)
				return d->err;
			d->in = IN_CHUNK_HDR;
			d->need = 4;
			break;
		case IN_CHUNK_HDR:
			/* pre[] is free after the header: reuse it. */
			w = mg_get_be32(d->pre);
			d->clast = (w & BUNDLE_CHUNK_LAST) != 0;
			d->clen = w & ~BUNDLE_CHUNK_LAST;
			if (d->clen > d->info.chunk_size ||
			    (!d->clast && d->clen != d->info.chunk_size))
				return dec_fail(d, MG_EDATA, "chunk %llu: "
				    "length %u does not match the chunk size "
				    "%u (corrupted)",
				    (unsigned long long)d->cidx, d->clen,
				    d->info.chunk_size);
			d->in = IN_CHUNK;
			d->need = d->clen + BUNDLE_TAG_LEN;
			break;
		case IN_CHUNK:
			if (dec_chunk(d) != MG_OK)
				return d->err;
			if (d->clast) {
				d->in = IN_DONE;
				d->need = 0;
			} else {
				d->in = IN_CHUNK_HDR;
				d->need = 4;
			}
			break;
		case IN_DONE:
			break;
		}
	}
	return d->err;
}

enum mg_err
bundle_dec_finish(struct bundle_dec *d)
{
	if (d->err != MG_OK)
		return d->err;
	if (d->in == IN_DONE)
		return MG_OK;
	if (!d->have_info)
		return dec_fail(d, MG_EDATA, "truncated before the end of the "
		    "header (%llu bytes)", (unsigned long long)d->in_total);
	return dec_fail(d, MG_EDATA, "truncated: %llu chunks verified, the "
	    "last chunk is missing (%llu bytes received, %llu verified)",
	    (unsigned long long)d->cidx, (unsigned long long)d->in_total,
	    (unsigned long long)d->verified);
}

enum mg_err
bundle_resume_offset(const struct bundle_dec_params *pp, const void *p,
    size_t n, uint64_t *off)
{
	struct bundle_dec	*d = NULL;
	enum mg_err		 e;

	*off = 0;
	if ((e = bundle_dec_new(pp, &d)) != MG_OK)
		return e;
	d->verify_only = 1;
	e = bundle_dec_feed(d, p, n);
	*off = d->verified;
	bundle_dec_free(d);
	return e;
}
