/*
 * bundle.c - the bundle encoder, and the crypto shared with the decoder.
 *
 * Role: turn records (messages with streamed content, status reports,
 * acknowledgements) into one bundle as specified in mgate-bundle(5):
 * preamble, signed and encrypted header, then a raw deflate stream
 * primed with the preset dictionary, cut into fixed-size chunks each
 * sealed with ChaCha20-Poly1305.  Output goes to a sink callback as it
 * is produced; memory is two chunk buffers plus zlib's deflate state.
 *
 * Input seen: only what the local caller passes (spool data), never
 * bytes from a peer.  Every primitive is OpenSSL's or zlib's.
 *
 * Never: reuse a (key, nonce) pair within a bundle; emit a chunk before
 * it is sealed; emit bytes after an error (the encoder is then dead and
 * the caller must discard what the sink received).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <zlib.h>

#include "mgate/buf.h"
#include "mgate/bundle.h"
#include "mgate/stream.h"

/* ---- shared crypto (used by bundle_dec.c too) ---- */

int
bundle_x25519(const unsigned char *priv, const unsigned char *peer,
    unsigned char shared[32])
{
	EVP_PKEY	*a = NULL, *b = NULL;
	EVP_PKEY_CTX	*ctx = NULL;
	size_t		 n = 32;
	int		 ok = 0, i, acc = 0;

	a = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, 32);
	b = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, 32);
	if (a == NULL || b == NULL)
		goto out;
	if ((ctx = EVP_PKEY_CTX_new(a, NULL)) == NULL ||
	    EVP_PKEY_derive_init(ctx) != 1 ||
	    EVP_PKEY_derive_set_peer(ctx, b) != 1 ||
	    EVP_PKEY_derive(ctx, shared, &n) != 1 || n != 32)
		goto out;
	/* A low-order peer key gives all zeros: refuse it. */
	for (i = 0; i < 32; i++)
		acc |= shared[i];
	ok = acc != 0;
out:
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(a);
	EVP_PKEY_free(b);
	return ok;
}

int
bundle_x25519_pub(const unsigned char *priv, unsigned char pub[32])
{
	EVP_PKEY	*k = NULL;
	size_t		 n = 32;
	int		 ok = 0;

	k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, 32);
	if (k != NULL && EVP_PKEY_get_raw_public_key(k, pub, &n) == 1 &&
	    n == 32)
		ok = 1;
	EVP_PKEY_free(k);
	return ok;
}

/*
 * key = HKDF-SHA256(ikm = shared, salt = eph_pub || rcpt_pub,
 *                   info = label [|| bundle id]), 32 bytes.
 */
int
bundle_kdf(const unsigned char *shared, const unsigned char *eph_pub,
    const unsigned char *rcpt_pub, const char *label,
    const unsigned char *id, unsigned char key[32])
{
	EVP_KDF		*kdf = NULL;
	EVP_KDF_CTX	*kctx = NULL;
	OSSL_PARAM	 params[5], *p = params;
	unsigned char	 salt[64], info[64 + BUNDLE_ID_LEN];
	size_t		 ilen = strlen(label);
	int		 ok = 0;

	if (ilen > 64)
		return 0;
	memcpy(salt, eph_pub, 32);
	memcpy(salt + 32, rcpt_pub, 32);
	memcpy(info, label, ilen);
	if (id != NULL) {
		memcpy(info + ilen, id, BUNDLE_ID_LEN);
		ilen += BUNDLE_ID_LEN;
	}
	if ((kdf = EVP_KDF_fetch(NULL, "HKDF", NULL)) == NULL ||
	    (kctx = EVP_KDF_CTX_new(kdf)) == NULL)
		goto out;
	*p++ = OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0);
	*p++ = OSSL_PARAM_construct_octet_string("key", (void *)shared, 32);
	*p++ = OSSL_PARAM_construct_octet_string("salt", salt, sizeof(salt));
	*p++ = OSSL_PARAM_construct_octet_string("info", info, ilen);
	*p = OSSL_PARAM_construct_end();
	ok = EVP_KDF_derive(kctx, key, 32, params) == 1;
out:
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	return ok;
}

int
bundle_aead(void *vctx, int enc, const unsigned char key[32], uint64_t nonce,
    const unsigned char *aad, size_t aadlen, const unsigned char *in,
    size_t inlen, unsigned char *out)
{
	EVP_CIPHER_CTX	*ctx = vctx;
	unsigned char	 iv[12];
	int		 n, ok = 0;

	if (inlen > INT32_MAX || aadlen > INT32_MAX)
		return 0;
	memset(iv, 0, 4);
	mg_put_be64(iv + 4, nonce);
	if (EVP_CipherInit_ex2(ctx, EVP_chacha20_poly1305(), key, iv, enc,
	    NULL) != 1)
		goto out;
	if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG,
	    BUNDLE_TAG_LEN, (void *)(in + inlen)) != 1)
		goto out;
	if (EVP_CipherUpdate(ctx, NULL, &n, aad, (int)aadlen) != 1)
		goto out;
	if (inlen > 0 && EVP_CipherUpdate(ctx, out, &n, in, (int)inlen) != 1)
		goto out;
	if (EVP_CipherFinal_ex(ctx, out + inlen, &n) != 1)
		goto out;
	if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG,
	    BUNDLE_TAG_LEN, out + inlen) != 1)
		goto out;
	ok = 1;
out:
	return ok;
}

void
bundle_chunk_aad(unsigned char aad[29], const unsigned char *id,
    uint64_t idx, int last)
{
	memcpy(aad, "MGBc", 4);
	memcpy(aad + 4, id, BUNDLE_ID_LEN);
	mg_put_be64(aad + 4 + BUNDLE_ID_LEN, idx);
	aad[28] = last ? 1 : 0;
}

void
bundle_id_hex(const unsigned char *id, char *out)
{
	static const char hex[] = "0123456789abcdef";
	int i;

	for (i = 0; i < BUNDLE_ID_LEN; i++) {
		out[2 * i] = hex[id[i] >> 4];
		out[2 * i + 1] = hex[id[i] & 15];
	}
	out[2 * BUNDLE_ID_LEN] = '\0';
}

const char *
bundle_state_name(int st)
{
	switch (st) {
	case BUNDLE_ST_ACCEPTED:	return "accepted";
	case BUNDLE_ST_DELIVERED:	return "delivered";
	case BUNDLE_ST_DEFERRED:	return "deferred";
	case BUNDLE_ST_FAILED:		return "failed";
	default:			return "unknown";
	}
}

void
bundle_limits_default(struct bundle_limits *l)
{
	l->max_bundle = (uint64_t)2 << 30;	/* 2 GiB */
	l->max_message = (uint64_t)256 << 20;	/* 256 MiB */
	l->max_records = 1000000;
	l->max_rcpts = 1000;
	l->max_output = (uint64_t)8 << 30;	/* 8 GiB */
	l->max_ratio = 200;
	l->ratio_floor = (uint64_t)16 << 20;
	l->max_record = 1 << 20;
	l->max_chunk = BUNDLE_CHUNK_MAX;
}

/* ---- encoder ---- */

struct bundle_enc {
	bundle_sink_fn	 sink;
	void		*arg;
	enum mg_err	 err;
	char		 msg[256];
	unsigned char	 id[BUNDLE_ID_LEN];
	char		 id_hex[BUNDLE_ID_HEX];
	unsigned char	 body_key[32];
	EVP_CIPHER_CTX	*cctx;
	z_stream	 z;
	int		 z_live;
	uint32_t	 chunk_size;
	unsigned char	*plain;		/* chunk_size + 1: compressed, unsealed */
	unsigned char	*sealed;	/* 4 + chunk_size + tag */
	uint64_t	 chunk_idx;
	uint64_t	 records;
	uint64_t	 bytes_in, bytes_out;
	int		 in_msg;
	uint64_t	 msg_left;
	int		 finished;
	struct mg_buf	 rec;		/* one record's metadata */
};

static enum mg_err __attribute__((format(printf, 3, 4)))
enc_fail(struct bundle_enc *enc, enum mg_err e, const char *fmt, ...)
{
	va_list	ap;
	int	n;

	if (enc->err != MG_OK)
		return enc->err;
	n = snprintf(enc->msg, sizeof(enc->msg), "bundle %s: ", enc->id_hex);
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(enc->msg))
		vsnprintf(enc->msg + n, sizeof(enc->msg) - (size_t)n, fmt, ap);
	va_end(ap);
	return enc->err = e;
}

static enum mg_err
enc_emit(struct bundle_enc *enc, const void *p, size_t n)
{
	enum mg_err e;

	if ((e = enc->sink(enc->arg, p, n)) != MG_OK)
		return enc_fail(enc, e, "output failed: %s", mg_strerror(e));
	enc->bytes_out += n;
	return MG_OK;
}

/* Seal plain[0..len) as chunk chunk_idx and hand it to the sink. */
static enum mg_err
enc_seal(struct bundle_enc *enc, size_t len, int last)
{
	unsigned char aad[29];

	bundle_chunk_aad(aad, enc->id, enc->chunk_idx, last);
	mg_put_be32(enc->sealed, (uint32_t)len | (last ? BUNDLE_CHUNK_LAST : 0));
	if (!bundle_aead(enc->cctx, 1, enc->body_key, enc->chunk_idx, aad,
	    sizeof(aad), enc->plain, len, enc->sealed + 4))
		return enc_fail(enc, MG_ESOFTWARE, "chunk %llu: sealing "
		    "failed", (unsigned long long)enc->chunk_idx);
	enc->chunk_idx++;
	return enc_emit(enc, enc->sealed, 4 + len + BUNDLE_TAG_LEN);
}

/*
 * Run deflate over p[0..n), then flush as asked.  deflate writes into a
 * buffer one byte larger than a chunk: a chunk is sealed (not last) only
 * once a byte beyond it exists, so the chunk in which the stream ends is
 * always the one flagged last, and it is never empty.  (zlib may report
 * a full output buffer and then finish with no more output, so "the
 * buffer is full" alone does not mean more is coming.)
 */
/* plain holds chunk_size + 1 bytes: seal a chunk, keep the extra byte. */
static enum mg_err
enc_spill(struct bundle_enc *enc)
{
	if (enc_seal(enc, enc->chunk_size, 0) != MG_OK)
		return enc->err;
	enc->plain[0] = enc->plain[enc->chunk_size];
	enc->z.next_out = enc->plain + 1;
	enc->z.avail_out = enc->chunk_size;
	return MG_OK;
}

static enum mg_err
enc_deflate(struct bundle_enc *enc, const void *p, size_t n, int flush)
{
	uInt	take;
	int	f, r;

	if (enc->err != MG_OK)
		return enc->err;
	enc->z.next_in = (unsigned char *)(uintptr_t)p;
	enc->bytes_in += n;
	do {
		/* avail_in is a uInt: at most 1 GiB per round. */
		take = n > (1u << 30) ? (1u << 30) : (uInt)n;
		n -= take;
		enc->z.avail_in = take;
		f = n == 0 ? flush : Z_NO_FLUSH;
		for (;;) {
			if (enc->z.avail_out == 0 && enc_spill(enc) != MG_OK)
				return enc->err;
			r = deflate(&enc->z, f);
			if (r == Z_STREAM_END)
				return MG_OK;
			if (r != Z_OK && r != Z_BUF_ERROR)
				return enc_fail(enc, MG_ESOFTWARE,
				    "deflate failed (%d)", r);
			if (f != Z_FINISH && enc->z.avail_in == 0 &&
			    enc->z.avail_out != 0)
				break;
		}
	} while (n > 0);
	return MG_OK;
}

static enum mg_err
enc_record(struct bundle_enc *enc, uint8_t type, const void *p, size_t n)
{
	unsigned char hdr[MG_FIELD_HDR];

	if (enc->err != MG_OK)
		return enc->err;
	if (enc->finished || enc->in_msg)
		return enc_fail(enc, MG_ESOFTWARE, "record 0x%02x out of "
		    "order", type);
	if (n > UINT32_MAX)
		return enc_fail(enc, MG_ELIMIT, "record too large");
	hdr[0] = type;
	mg_put_be32(hdr + 1, (uint32_t)n);
	enc->records++;
	if (enc_deflate(enc, hdr, sizeof(hdr), Z_NO_FLUSH) != MG_OK)
		return enc->err;
	return enc_deflate(enc, p, n, Z_NO_FLUSH);
}

static enum mg_err
enc_sink_stream(void *arg, const void *p, size_t n)
{
	return mg_stream_write(arg, p, n);
}

static int
name_ok(const char *s)
{
	return s != NULL && s[0] != '\0' && strlen(s) <= BUNDLE_NAME_MAX;
}

/* Preamble and sealed header, straight to the sink. */
static enum mg_err
enc_header(struct bundle_enc *enc, const struct bundle_enc_params *pp,
    const unsigned char *eph_priv, uint32_t chunk_size, int use_dict,
    int64_t ctime)
{
	unsigned char	 eph_pub[32], shared[32], hkey[32];
	unsigned char	 hdr[BUNDLE_HDR_FIXED + 2 * BUNDLE_NAME_MAX +
			     BUNDLE_SIG_LEN];
	unsigned char	 sigmsg[BUNDLE_SIG_LABEL_LEN + BUNDLE_PREAMBLE_LEN +
			     sizeof(hdr) + 32];
	unsigned char	 out[BUNDLE_PREAMBLE_LEN + sizeof(hdr) +
			     BUNDLE_TAG_LEN];
	unsigned char	*pre = out;
	size_t		 slen = strlen(pp->sender_name);
	size_t		 rlen = strlen(pp->receiver_name);
	size_t		 hlen, siglen = BUNDLE_SIG_LEN, mlen;
	EVP_PKEY	*sk = NULL;
	EVP_MD_CTX	*md = NULL;
	enum mg_err	 e = MG_OK;

	if (!bundle_x25519_pub(eph_priv, eph_pub) ||
	    !bundle_x25519(eph_priv, pp->receiver_pub->kx, shared) ||
	    !bundle_kdf(shared, eph_pub, pp->receiver_pub->kx,
	    "mgate-bundle-v1 header", NULL, hkey) ||
	    !bundle_kdf(shared, eph_pub, pp->receiver_pub->kx,
	    "mgate-bundle-v1 body", enc->id, enc->body_key)) {
		e = enc_fail(enc, MG_EDATA, "key agreement with the "
		    "receiver's X25519 key failed (bad key?)");
		goto out;
	}
	/* Header plaintext. */
	hlen = 0;
	memcpy(hdr, enc->id, BUNDLE_ID_LEN);
	hlen += BUNDLE_ID_LEN;
	mg_put_be64(hdr + hlen, (uint64_t)ctime);
	hlen += 8;
	hdr[hlen++] = BUNDLE_CODEC_DEFLATE;
	if (use_dict)
		memcpy(hdr + hlen, bundle_dict_id, BUNDLE_DICT_ID_LEN);
	else
		memset(hdr + hlen, 0, BUNDLE_DICT_ID_LEN);
	hlen += BUNDLE_DICT_ID_LEN;
	mg_put_be32(hdr + hlen, chunk_size);
	hlen += 4;
	hdr[hlen++] = (unsigned char)slen;
	memcpy(hdr + hlen, pp->sender_name, slen);
	hlen += slen;
	hdr[hlen++] = (unsigned char)rlen;
	memcpy(hdr + hlen, pp->receiver_name, rlen);
	hlen += rlen;
	/* Preamble. */
	memcpy(pre, BUNDLE_MAGIC, BUNDLE_MAGIC_LEN);
	pre[4] = BUNDLE_VERSION;
	pre[5] = BUNDLE_SUITE_1;
	pre[6] = (unsigned char)((hlen + BUNDLE_SIG_LEN + BUNDLE_TAG_LEN) >> 8);
	pre[7] = (unsigned char)(hlen + BUNDLE_SIG_LEN + BUNDLE_TAG_LEN);
	memcpy(pre + 8, eph_pub, 32);
	/* Signature over label, preamble, header, receiver's X25519 key. */
	mlen = 0;
	memcpy(sigmsg, BUNDLE_SIG_LABEL, BUNDLE_SIG_LABEL_LEN);
	mlen += BUNDLE_SIG_LABEL_LEN;
	memcpy(sigmsg + mlen, pre, BUNDLE_PREAMBLE_LEN);
	mlen += BUNDLE_PREAMBLE_LEN;
	memcpy(sigmsg + mlen, hdr, hlen);
	mlen += hlen;
	memcpy(sigmsg + mlen, pp->receiver_pub->kx, 32);
	mlen += 32;
	sk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL,
	    pp->sender_keys->sign_priv, MG_KEY_LEN);
	if (sk == NULL || (md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestSignInit(md, NULL, NULL, NULL, sk) != 1 ||
	    EVP_DigestSign(md, hdr + hlen, &siglen, sigmsg, mlen) != 1 ||
	    siglen != BUNDLE_SIG_LEN) {
		e = enc_fail(enc, MG_ESOFTWARE, "signing the header failed");
		goto out;
	}
	hlen += BUNDLE_SIG_LEN;
	if (!bundle_aead(enc->cctx, 1, hkey, 0, pre, BUNDLE_PREAMBLE_LEN, hdr,
	    hlen, out + BUNDLE_PREAMBLE_LEN)) {
		e = enc_fail(enc, MG_ESOFTWARE, "sealing the header failed");
		goto out;
	}
	e = enc_emit(enc, out, BUNDLE_PREAMBLE_LEN + hlen + BUNDLE_TAG_LEN);
out:
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(sk);
	OPENSSL_cleanse(shared, sizeof(shared));
	OPENSSL_cleanse(hkey, sizeof(hkey));
	OPENSSL_cleanse(hdr, sizeof(hdr));
	OPENSSL_cleanse(sigmsg, sizeof(sigmsg));
	return e;
}

enum mg_err
bundle_enc_new(const struct bundle_enc_params *pp, bundle_sink_fn sink,
    void *arg, struct bundle_enc **out)
{
	struct bundle_enc	*enc = NULL;
	unsigned char		 eph[32];
	uint32_t		 cs;
	int64_t			 ctime;
	enum mg_err		 e = MG_OK;

	*out = NULL;
	if (pp == NULL || sink == NULL || pp->sender_keys == NULL ||
	    pp->receiver_pub == NULL || !name_ok(pp->sender_name) ||
	    !name_ok(pp->receiver_name))
		return MG_EUSAGE;
	cs = pp->chunk_size ? pp->chunk_size : BUNDLE_CHUNK_DEFAULT;
	if (cs < BUNDLE_CHUNK_MIN || cs > BUNDLE_CHUNK_MAX ||
	    pp->level < 0 || pp->level > 9)
		return MG_EUSAGE;
	if ((enc = calloc(1, sizeof(*enc))) == NULL)
		return MG_ENOMEM;
	enc->sink = sink;
	enc->arg = arg;
	enc->chunk_size = cs;
	mg_buf_init(&enc->rec, (size_t)1 << 20);
	if (pp->id != NULL)
		memcpy(enc->id, pp->id, BUNDLE_ID_LEN);
	else if (RAND_bytes(enc->id, BUNDLE_ID_LEN) != 1) {
		e = MG_ESOFTWARE;
		goto out;
	}
	bundle_id_hex(enc->id, enc->id_hex);
	if (pp->eph_priv != NULL)
		memcpy(eph, pp->eph_priv, 32);
	else if (RAND_priv_bytes(eph, sizeof(eph)) != 1) {
		e = MG_ESOFTWARE;
		goto out;
	}
	if ((enc->plain = malloc((size_t)cs + 1)) == NULL ||
	    (enc->sealed = malloc(4 + (size_t)cs + BUNDLE_TAG_LEN)) == NULL ||
	    (enc->cctx = EVP_CIPHER_CTX_new()) == NULL) {
		e = MG_ENOMEM;
		goto out;
	}
	if (deflateInit2(&enc->z, pp->level ? pp->level : 9, Z_DEFLATED, -15,
	    9, Z_DEFAULT_STRATEGY) != Z_OK) {
		e = MG_ENOMEM;
		goto out;
	}
	enc->z_live = 1;
	if (!pp->no_dict && deflateSetDictionary(&enc->z, bundle_dict,
	    (uInt)bundle_dict_len) != Z_OK) {
		e = MG_ESOFTWARE;
		goto out;
	}
	enc->z.next_out = enc->plain;
	enc->z.avail_out = cs + 1;
	ctime = pp->ctime ? pp->ctime : (int64_t)time(NULL);
	if ((e = enc_header(enc, pp, eph, cs, !pp->no_dict, ctime)) != MG_OK)
		goto out;
	*out = enc;	/* ownership to the caller */
	enc = NULL;
out:
	OPENSSL_cleanse(eph, sizeof(eph));
	bundle_enc_free(enc);
	return e;
}

enum mg_err
bundle_enc_new_stream(const struct bundle_enc_params *pp,
    struct mg_stream *s, struct bundle_enc **out)
{
	return bundle_enc_new(pp, enc_sink_stream, s, out);
}

static int
str_ok(const char *s)
{
	return s == NULL || strlen(s) <= UINT32_MAX / 2;
}

enum mg_err
bundle_enc_msg_begin(struct bundle_enc *enc, const struct bundle_msg *m)
{
	struct mg_buf	*b = &enc->rec;
	uint8_t		 u8;
	size_t		 i;
	enum mg_err	 e = MG_OK;

	if (enc->err != MG_OK)
		return enc->err;
	if (m->qid == NULL || m->qid[0] == '\0' || !str_ok(m->sender) ||
	    !str_ok(m->envid) || m->ret < BUNDLE_RET_NONE ||
	    m->ret > BUNDLE_RET_HDRS || (m->nrcpt > 0 && m->rcpts == NULL))
		return enc_fail(enc, MG_EUSAGE, "invalid message metadata");
	mg_buf_reset(b);
	e = mg_buf_put_str(b, BF_QID, m->qid);
	if (e == MG_OK)
		e = mg_buf_put_str(b, BF_SENDER, m->sender);
	if (e == MG_OK)
		e = mg_buf_put_str(b, BF_ENVID, m->envid);
	u8 = (uint8_t)m->ret;
	if (e == MG_OK)
		e = mg_buf_put_field(b, BF_RET, &u8, 1);
	for (i = 0; e == MG_OK && i < m->nrcpt; i++) {
		if (m->rcpts[i].addr == NULL || m->rcpts[i].notify > 0xff)
			return enc_fail(enc, MG_EUSAGE, "message %s: invalid "
			    "recipient %zu", m->qid, i);
		u8 = (uint8_t)m->rcpts[i].notify;
		e = mg_buf_put_str(b, BF_RCPT, m->rcpts[i].addr);
		if (e == MG_OK)
			e = mg_buf_put_field(b, BF_NOTIFY, &u8, 1);
		if (e == MG_OK)
			e = mg_buf_put_str(b, BF_ORCPT, m->rcpts[i].orcpt);
	}
	if (e == MG_OK)
		e = mg_buf_put_field_u64(b, BF_SIZE, m->size);
	if (e != MG_OK)
		return enc_fail(enc, e, "message %s: metadata too large",
		    m->qid);
	if (enc_record(enc, BUNDLE_REC_MESSAGE, b->data, b->len) != MG_OK)
		return enc->err;
	enc->in_msg = 1;
	enc->msg_left = m->size;
	return MG_OK;
}

enum mg_err
bundle_enc_msg_write(struct bundle_enc *enc, const void *p, size_t n)
{
	if (enc->err != MG_OK)
		return enc->err;
	if (!enc->in_msg)
		return enc_fail(enc, MG_ESOFTWARE, "content outside a message");
	if (n > enc->msg_left)
		return enc_fail(enc, MG_EDATA, "message content longer than "
		    "its declared size");
	enc->msg_left -= n;
	return enc_deflate(enc, p, n, Z_NO_FLUSH);
}

enum mg_err
bundle_enc_msg_end(struct bundle_enc *enc)
{
	if (enc->err != MG_OK)
		return enc->err;
	if (!enc->in_msg)
		return enc_fail(enc, MG_ESOFTWARE, "message end outside a "
		    "message");
	if (enc->msg_left != 0)
		return enc_fail(enc, MG_EDATA, "message content %llu bytes "
		    "shorter than its declared size",
		    (unsigned long long)enc->msg_left);
	enc->in_msg = 0;
	return MG_OK;
}

enum mg_err
bundle_enc_status(struct bundle_enc *enc, const struct bundle_status *st)
{
	struct mg_buf	*b = &enc->rec;
	uint8_t		 u8 = (uint8_t)st->state;
	enum mg_err	 e;

	if (enc->err != MG_OK)
		return enc->err;
	if (st->qid == NULL || st->rcpt == NULL || st->state < 1 ||
	    st->state > 0xff)
		return enc_fail(enc, MG_EUSAGE, "invalid status record");
	mg_buf_reset(b);
	e = mg_buf_put_str(b, BF_QID, st->qid);
	if (e == MG_OK)
		e = mg_buf_put_str(b, BF_RCPT, st->rcpt);
	if (e == MG_OK)
		e = mg_buf_put_field(b, BF_STATE, &u8, 1);
	if (e == MG_OK)
		e = mg_buf_put_str(b, BF_STATUS, st->status);
	if (e == MG_OK)
		e = mg_buf_put_str(b, BF_REMOTE, st->remote);
	if (e == MG_OK)
		e = mg_buf_put_str(b, BF_DIAG, st->diag);
	if (e == MG_OK)
		e = mg_buf_put_field_u64(b, BF_TIME, (uint64_t)st->time);
	if (e == MG_OK && st->next_hop_dsn) {
		u8 = 1;
		e = mg_buf_put_field(b, BF_NEXT_HOP_DSN, &u8, 1);
	}
	if (e != MG_OK)
		return enc_fail(enc, e, "status for %s: record too large",
		    st->qid);
	return enc_record(enc, BUNDLE_REC_STATUS, b->data, b->len);
}

enum mg_err
bundle_enc_ack(struct bundle_enc *enc, const struct bundle_ack *a)
{
	struct mg_buf	*b = &enc->rec;
	size_t		 i;
	enum mg_err	 e = MG_OK;

	if (enc->err != MG_OK)
		return enc->err;
	mg_buf_reset(b);
	for (i = 0; e == MG_OK && i < a->nbundle; i++)
		e = mg_buf_put_field(b, BF_BUNDLE_ID, a->bundle_ids[i],
		    BUNDLE_ID_LEN);
	for (i = 0; e == MG_OK && i < a->nmsg; i++) {
		if (a->msg_ids[i] == NULL || a->msg_ids[i][0] == '\0')
			return enc_fail(enc, MG_EUSAGE, "empty message ID "
			    "in ack");
		e = mg_buf_put_str(b, BF_MSG_ID, a->msg_ids[i]);
	}
	if (e != MG_OK)
		return enc_fail(enc, e, "ack record too large");
	return enc_record(enc, BUNDLE_REC_ACK, b->data, b->len);
}

enum mg_err
bundle_enc_raw_record(struct bundle_enc *enc, uint8_t type, const void *p,
    size_t n)
{
	return enc_record(enc, type, p, n);
}

enum mg_err
bundle_enc_finish(struct bundle_enc *enc)
{
	unsigned char	cnt[MG_FIELD_HDR + 8];

	if (enc->err != MG_OK)
		return enc->err;
	if (enc->in_msg)
		return enc_fail(enc, MG_ESOFTWARE, "finish inside a message");
	/* END carries the number of records before it. */
	cnt[0] = BF_COUNT;
	mg_put_be32(cnt + 1, 8);
	mg_put_be64(cnt + MG_FIELD_HDR, enc->records);
	if (enc_record(enc, BUNDLE_REC_END, cnt, sizeof(cnt)) != MG_OK)
		return enc->err;
	enc->finished = 1;
	if (enc_deflate(enc, NULL, 0, Z_FINISH) != MG_OK)
		return enc->err;
	if (enc->z.avail_out == 0 && enc_spill(enc) != MG_OK)
		return enc->err;
	return enc_seal(enc, enc->chunk_size + 1 - enc->z.avail_out, 1);
}

void
bundle_enc_free(struct bundle_enc *enc)
{
	if (enc == NULL)
		return;
	if (enc->z_live)
		deflateEnd(&enc->z);
	EVP_CIPHER_CTX_free(enc->cctx);
	free(enc->plain);
	free(enc->sealed);
	mg_buf_free(&enc->rec);
	OPENSSL_cleanse(enc->body_key, sizeof(enc->body_key));
	free(enc);
}

const unsigned char *
bundle_enc_id(const struct bundle_enc *enc)
{
	return enc->id;
}

const char *
bundle_enc_errmsg(const struct bundle_enc *enc)
{
	return enc->err == MG_OK ? "" : enc->msg;
}

uint64_t
bundle_enc_bytes_out(const struct bundle_enc *enc)
{
	return enc->bytes_out;
}

uint64_t
bundle_enc_bytes_in(const struct bundle_enc *enc)
{
	return enc->bytes_in;
}
