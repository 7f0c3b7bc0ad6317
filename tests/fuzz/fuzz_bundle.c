/*
 * fuzz_bundle.c - libFuzzer harness for the bundle decoder.
 *
 * The decoder is given the test keys (tests/data/bundle/, compiled in
 * here so the harness needs no files) as receiver bob expecting alice,
 * and fed the input in pieces whose sizes come from the first input
 * byte, so the push parser's piece boundaries are fuzzed too.  Tight
 * limits keep each run fast.  Seeds: tests/fuzz/corpus_bundle/ (valid
 * bundles made by the encoder, see tests/data/bundle/README).
 *
 * Two modes, chosen by the first byte.  Below 0x80: the rest is a whole
 * bundle, fed in pieces of that many bytes (0: at once), which fuzzes
 * framing and the header.  Since everything after the header is sealed,
 * random bytes rarely get further, so 0x80 and above: the rest is a
 * plaintext RECORD STREAM, which the harness deflates (with the preset
 * dictionary) and seals into 256-byte chunks behind a valid header made
 * by the encoder with a fixed ephemeral key, reaching inflate, record
 * parsing, limits and callbacks.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined (make fuzz).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <zlib.h>

#include "mgate/buf.h"
#include "mgate/bundle.h"
#include "mgate/keys.h"

static struct mg_keypair *bob;
static struct mg_pubkey alice_pub;

static enum mg_err
f_data(void *arg, const void *p, size_t n)
{
	volatile unsigned char x = 0;
	const unsigned char *c = p;

	(void)arg;
	for (size_t i = 0; i < n; i += 4096)
		x ^= c[i];
	(void)x;
	return MG_OK;
}

static enum mg_err
f_msg(void *arg, const struct bundle_msg *m)
{
	(void)arg;
	return strlen(m->qid) + (m->nrcpt ? strlen(m->rcpts[m->nrcpt - 1].addr)
	    : 0) < (size_t)-1 ? MG_OK : MG_EDATA;
}

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static struct mg_keypair *alice;

static enum mg_err
f_sink(void *arg, const void *p, size_t n)
{
	return mg_buf_append(arg, p, n);
}

/* A valid bundle whose record stream is rec[0..n). */
static int
seal_records(const uint8_t *rec, size_t n, struct mg_buf *out)
{
	static const unsigned char id[BUNDLE_ID_LEN] = { 0xf0, 0x22 };
	static const unsigned char eph[32] = { 7, 7, 7, 7, 7, 7, 7, 7, 7 };
	struct bundle_enc_params pp;
	struct bundle_enc	*enc = NULL;
	unsigned char		 epub[32], shared[32], key[32], aad[29];
	unsigned char		*z = NULL, sealed[4 + 256 + BUNDLE_TAG_LEN];
	size_t			 zlen, off, clen;
	EVP_CIPHER_CTX		*c = NULL;
	z_stream		 zs;
	uint64_t		 idx = 0;
	int			 ok = 0, last = 0;

	memset(&pp, 0, sizeof(pp));
	pp.sender_keys = alice;
	pp.sender_name = "alice";
	pp.receiver_name = "bob";
	pp.receiver_pub = &bob->pub;
	pp.id = id;
	pp.ctime = 1;
	pp.eph_priv = eph;
	pp.chunk_size = 256;
	/* Header only: the encoder is freed before any chunk. */
	if (bundle_enc_new(&pp, f_sink, out, &enc) != MG_OK)
		return 0;
	bundle_enc_free(enc);
	memset(&zs, 0, sizeof(zs));
	if (!bundle_x25519_pub(eph, epub) ||
	    !bundle_x25519(eph, bob->pub.kx, shared) ||
	    !bundle_kdf(shared, epub, bob->pub.kx, "mgate-bundle-v1 body", id,
	    key) || (c = EVP_CIPHER_CTX_new()) == NULL ||
	    deflateInit2(&zs, 6, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY) !=
	    Z_OK)
		goto out;
	deflateSetDictionary(&zs, bundle_dict, (uInt)bundle_dict_len);
	/* The whole stream first, then cut: the last chunk is never empty. */
	zlen = deflateBound(&zs, (uLong)n) + 16;
	if ((z = malloc(zlen)) == NULL)
		goto out;
	zs.next_in = (unsigned char *)(uintptr_t)rec;
	zs.avail_in = (uInt)n;
	zs.next_out = z;
	zs.avail_out = (uInt)zlen;
	if (deflate(&zs, Z_FINISH) != Z_STREAM_END)
		goto out;
	zlen = zs.total_out;
	for (off = 0; ; off += clen) {
		clen = zlen - off > 256 ? 256 : zlen - off;
		last = off + clen == zlen;
		bundle_chunk_aad(aad, id, idx, last);
		mg_put_be32(sealed, (uint32_t)clen |
		    (last ? BUNDLE_CHUNK_LAST : 0));
		if (!bundle_aead(c, 1, key, idx, aad, sizeof(aad), z + off,
		    clen, sealed + 4) || mg_buf_append(out, sealed, 4 + clen +
		    BUNDLE_TAG_LEN) != MG_OK)
			goto out;
		idx++;
		if (last)
			break;
	}
	ok = last;
out:
	free(z);
	deflateEnd(&zs);
	EVP_CIPHER_CTX_free(c);
	return ok;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bundle_dec_params p;
	struct bundle_limits	 lim;
	struct bundle_dec	*d = NULL;
	size_t			 piece, off, take;
	uint64_t		 roff;

	struct mg_buf		 inner;

	mg_buf_init(&inner, 4 << 20);
	if (alice == NULL && keys_parse_private("mgate-private-1 "
	    "/IsZq4bkFTr4HVSUy60mbTN9VatMGlaxLoevdI0YSiI= "
	    "IE7lnQnkd+VTNSn30WlbHSpVAJTDfw/fEnvIOcAYtFo=", &alice) != MG_OK)
		abort();
	if (bob == NULL) {
		if (keys_parse_private("mgate-private-1 "
		    "06ydsEJhx/z0VDz7btQVD96jsWa/tarKrVYc9pBMHAQ= "
		    "CPrpHhccaFUHQbBIzIA0YOae1DkHOo7Lm0fMGnbwo2U=", &bob) != MG_OK ||
		    keys_parse_public("mgate-peer-1 "
		    "xwG/kTH7NdziJkCeYiFBsrz02wMxOQ48oxGea/XTeUA= "
		    "r16AZhIg6mnYawC8+rjXIOtzY4wN+HgJYOKQ1AILMCs=",
		    &alice_pub) != MG_OK)
			abort();
	}
	if (size < 1)
		return 0;
	piece = data[0] == 0 || data[0] >= 0x80 ? size : data[0];
	if (data[0] >= 0x80) {
		if (size > (1 << 16) || !seal_records(data + 1, size - 1,
		    &inner))
			goto out;
		data = inner.data;
		size = inner.len;
		piece = size;
	} else {
		data++;
		size--;
	}
	bundle_limits_default(&lim);
	lim.max_bundle = 1 << 20;
	lim.max_output = 8 << 20;
	lim.ratio_floor = 1 << 20;
	lim.max_record = 1 << 16;
	lim.max_chunk = 1 << 16;
	memset(&p, 0, sizeof(p));
	p.self_keys = bob;
	p.self_name = "bob";
	p.senders = &alice_pub;
	p.nsenders = 1;
	p.limits = &lim;
	p.cb.msg_begin = f_msg;
	p.cb.msg_data = f_data;
	if (bundle_dec_new(&p, &d) != MG_OK)
		abort();
	for (off = 0; off < size; off += take) {
		take = size - off < piece ? size - off : piece;
		if (bundle_dec_feed(d, data + off, take) != MG_OK)
			break;
	}
	if (bundle_dec_finish(d) != MG_OK && bundle_dec_errmsg(d)[0] == '\0')
		abort();	/* every error has a message */
	bundle_dec_free(d);
	(void)bundle_resume_offset(&p, data, size, &roff);
	if (roff > size)
		abort();
out:
	mg_buf_free(&inner);
	return 0;
}
