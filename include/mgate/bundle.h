/*
 * bundle.h - the bundle format and its streaming authenticated codec.
 *
 * A bundle carries mail (MESSAGE records), delivery outcomes (STATUS)
 * and acknowledgements (ACK) from one peer to another over any byte
 * transport.  The byte-level format is specified in mgate-bundle(5):
 * a cleartext preamble with an ephemeral X25519 key, a header signed
 * with the sender's Ed25519 key and encrypted to the receiver, then one
 * raw-deflate stream (preset dictionary) cut into fixed-size chunks,
 * each sealed with ChaCha20-Poly1305 and bound to the bundle ID, its
 * index and a last-chunk flag.
 *
 * Encoder: bundle_enc_new() writes to a sink (callback or mg_stream);
 * records are added in order, message content is streamed in pieces of
 * any size; bundle_enc_finish() writes END and the last chunk.  Memory
 * is a few chunk-sized buffers plus zlib's state, whatever the content.
 * Given the same bundle ID, time, keys and ephemeral key the bytes are
 * identical (golden files in tests/data/bundle/ pin them).
 *
 * Decoder: a push parser.  bundle_dec_feed() takes bytes as they
 * arrive, in pieces of any size, and calls back for the header and for
 * each record.  Every chunk is authenticated before any byte of it is
 * decompressed or handed to a callback.
 *
 * THE COMMIT CONTRACT.  Callbacks see data from verified chunks only,
 * but a bundle may still turn out truncated, reordered or followed by
 * garbage.  A receiver must therefore stage what the callbacks give it
 * and commit nothing until bundle_dec_finish() returns MG_OK, which
 * means: the header verified, every chunk verified in order, the chunk
 * flagged last was seen, the deflate stream ended there, the END
 * record was the last record, and no byte followed.  After any error
 * the decoder is dead (every later call returns the same error) and
 * bundle_dec_errmsg() says why, naming the bundle ID once it is known.
 * Replay (a bundle ID already seen) is the caller's check, from the
 * ID in the header callback.
 *
 * Resume: bundle_dec_verified_offset() is the number of input bytes up
 * to the end of the last verified chunk (or of the header); a transfer
 * cut anywhere can restart from there.  bundle_resume_offset() computes
 * it for a stored prefix.
 */
#ifndef MGATE_BUNDLE_H
#define MGATE_BUNDLE_H

#include <stddef.h>
#include <stdint.h>

#include "mgate/err.h"
#include "mgate/keys.h"

struct mg_stream;

#define BUNDLE_VERSION		1
#define BUNDLE_ID_LEN		16
#define BUNDLE_ID_HEX		(2 * BUNDLE_ID_LEN + 1)
#define BUNDLE_DICT_ID_LEN	8
#define BUNDLE_NAME_MAX		255	/* peer names, bytes */
#define BUNDLE_CHUNK_DEFAULT	65536
#define BUNDLE_CHUNK_MIN	256
#define BUNDLE_CHUNK_MAX	(1024 * 1024)

/* DSN NOTIFY (RFC 3461) bits; 0 means "not given". */
#define BUNDLE_NOTIFY_SUCCESS	0x01
#define BUNDLE_NOTIFY_FAILURE	0x02
#define BUNDLE_NOTIFY_DELAY	0x04
#define BUNDLE_NOTIFY_NEVER	0x08

enum bundle_ret { BUNDLE_RET_NONE = 0, BUNDLE_RET_FULL, BUNDLE_RET_HDRS };

enum bundle_state {
	BUNDLE_ST_ACCEPTED = 1,	/* the gateway holds it durably */
	BUNDLE_ST_DELIVERED,	/* the next hop said 2xx */
	BUNDLE_ST_DEFERRED,	/* 4xx or no route yet: will retry */
	BUNDLE_ST_FAILED,	/* 5xx or expired: the site writes the DSN */
};
const char *bundle_state_name(int);

enum bundle_codec { BUNDLE_CODEC_DEFLATE = 1 };	/* raw RFC 1951 */

struct bundle_rcpt {
	const char	*addr;
	unsigned	 notify;	/* BUNDLE_NOTIFY_* */
	const char	*orcpt;		/* "rfc822;a@b" or NULL/"" */
};

struct bundle_msg {
	const char			*qid;
	const char			*sender;	/* "" is the null sender */
	const char			*envid;		/* NULL or "" if none */
	int				 ret;		/* enum bundle_ret */
	const struct bundle_rcpt	*rcpts;
	size_t				 nrcpt;
	uint64_t			 size;		/* content bytes */
};

struct bundle_status {
	const char	*qid;
	const char	*rcpt;
	int		 state;		/* enum bundle_state */
	const char	*status;	/* RFC 3463 "5.1.1", or "" */
	const char	*remote;	/* remote host, or "" */
	const char	*diag;		/* diagnostic text, or "" */
	int64_t		 time;		/* seconds since the epoch */
	/*
	 * Delivered to a server that offered DSN and was given NOTIFY: it
	 * sends any success report itself, the site must not (field D).
	 */
	int		 next_hop_dsn;
};

struct bundle_ack {
	const unsigned char	(*bundle_ids)[BUNDLE_ID_LEN];
	size_t			 nbundle;
	const char *const	*msg_ids;
	size_t			 nmsg;
};

/* What the verified header says. */
struct bundle_info {
	unsigned	 version;
	unsigned char	 id[BUNDLE_ID_LEN];
	char		 id_hex[BUNDLE_ID_HEX];
	char		 sender[BUNDLE_NAME_MAX + 1];
	char		 receiver[BUNDLE_NAME_MAX + 1];
	int64_t		 ctime;
	unsigned	 codec;
	unsigned char	 dict_id[BUNDLE_DICT_ID_LEN];
	uint32_t	 chunk_size;
	size_t		 sender_index;	/* which expected key signed it */
};

/* ---- encoder ---- */

typedef enum mg_err (*bundle_sink_fn)(void *arg, const void *, size_t);

struct bundle_enc_params {
	const struct mg_keypair	*sender_keys;
	const char		*sender_name;
	const char		*receiver_name;
	const struct mg_pubkey	*receiver_pub;
	const unsigned char	*id;		/* 16 bytes; NULL: random */
	int64_t			 ctime;		/* 0: now */
	/*
	 * 32-byte X25519 private key; NULL: a fresh one (always, outside
	 * tests: reusing it with other content reuses AEAD nonces).
	 */
	const unsigned char	*eph_priv;
	uint32_t		 chunk_size;	/* 0: BUNDLE_CHUNK_DEFAULT */
	int			 level;		/* zlib level; 0: 9 */
	int			 no_dict;	/* test/bench: no preset dict */
};

struct bundle_enc;

enum mg_err bundle_enc_new(const struct bundle_enc_params *,
	    bundle_sink_fn, void *arg, struct bundle_enc **);
enum mg_err bundle_enc_new_stream(const struct bundle_enc_params *,
	    struct mg_stream *, struct bundle_enc **);
/* A message: begin (size is binding), content in any pieces, end. */
enum mg_err bundle_enc_msg_begin(struct bundle_enc *,
	    const struct bundle_msg *);
enum mg_err bundle_enc_msg_write(struct bundle_enc *, const void *, size_t);
enum mg_err bundle_enc_msg_end(struct bundle_enc *);
enum mg_err bundle_enc_status(struct bundle_enc *,
	    const struct bundle_status *);
enum mg_err bundle_enc_ack(struct bundle_enc *, const struct bundle_ack *);
/* END record, last chunk; then the sink has the whole bundle. */
enum mg_err bundle_enc_finish(struct bundle_enc *);
void	bundle_enc_free(struct bundle_enc *);
const unsigned char *bundle_enc_id(const struct bundle_enc *);
const char *bundle_enc_errmsg(const struct bundle_enc *);
/* Bytes given to the sink so far; plaintext bytes compressed so far. */
uint64_t bundle_enc_bytes_out(const struct bundle_enc *);
uint64_t bundle_enc_bytes_in(const struct bundle_enc *);
/* Tests and fuzzing only: a record of any type with a raw payload. */
enum mg_err bundle_enc_raw_record(struct bundle_enc *, uint8_t type,
	    const void *, size_t);

/* ---- decoder ---- */

struct bundle_limits {
	uint64_t	max_bundle;	/* input bytes */
	uint64_t	max_message;	/* content bytes of one message */
	uint64_t	max_records;
	uint32_t	max_rcpts;	/* per message */
	uint64_t	max_output;	/* decompressed bytes in all */
	uint32_t	max_ratio;	/* decompressed / compressed ... */
	uint64_t	ratio_floor;	/* ... checked past this output */
	uint32_t	max_record;	/* one record's metadata bytes */
	uint32_t	max_chunk;	/* largest chunk size accepted */
};

void	bundle_limits_default(struct bundle_limits *);

struct bundle_dec_cb {
	enum mg_err (*header)(void *, const struct bundle_info *);
	enum mg_err (*msg_begin)(void *, const struct bundle_msg *);
	enum mg_err (*msg_data)(void *, const void *, size_t);
	enum mg_err (*msg_end)(void *);
	enum mg_err (*status)(void *, const struct bundle_status *);
	enum mg_err (*ack)(void *, const struct bundle_ack *);
	/* END record verified; commit only after bundle_dec_finish(). */
	enum mg_err (*end)(void *);
	void	*arg;
};

struct bundle_dec_params {
	const struct mg_keypair	*self_keys;	/* our private keys */
	const char		*self_name;	/* NULL: not checked */
	const struct mg_pubkey	*senders;	/* accepted signers, >= 1 */
	size_t			 nsenders;
	const char		*sender_name;	/* NULL: not checked */
	const struct bundle_limits *limits;	/* NULL: defaults */
	struct bundle_dec_cb	 cb;		/* NULL members: ignored */
};

struct bundle_dec;

enum mg_err bundle_dec_new(const struct bundle_dec_params *,
	    struct bundle_dec **);
enum mg_err bundle_dec_feed(struct bundle_dec *, const void *, size_t);
/* At end of input: MG_OK only for a complete, verified bundle. */
enum mg_err bundle_dec_finish(struct bundle_dec *);
void	bundle_dec_free(struct bundle_dec *);
const char *bundle_dec_errmsg(const struct bundle_dec *);
/* NULL until the header has been verified. */
const struct bundle_info *bundle_dec_info(const struct bundle_dec *);
uint64_t bundle_dec_verified_offset(const struct bundle_dec *);
uint64_t bundle_dec_chunks(const struct bundle_dec *);

/*
 * The offset to resume a transfer from, given the bytes received so far:
 * the end of the last verified chunk (0 if the header is incomplete).
 * Returns MG_OK for a clean prefix (or a complete bundle), otherwise the
 * error that stopped verification; *off is set in both cases.  Record
 * callbacks are not called; limits still apply.
 */
enum mg_err bundle_resume_offset(const struct bundle_dec_params *,
	    const void *, size_t, uint64_t *off);

/* Hex form of an ID, for logs: out has BUNDLE_ID_HEX bytes. */
void	bundle_id_hex(const unsigned char *id, char *out);

/* The preset dictionary (src/bundle_dict.c, built by tools/mkdict.py). */
extern const unsigned char bundle_dict[];
extern const size_t bundle_dict_len;
extern const unsigned char bundle_dict_id[BUNDLE_DICT_ID_LEN];

/* ---- internal to src/bundle*.c (shared constants of the format) ---- */

#define BUNDLE_MAGIC		"\x89MGB"
#define BUNDLE_MAGIC_LEN	4
#define BUNDLE_SUITE_1		1	/* X25519,HKDF-SHA256,C20P1305,Ed25519 */
#define BUNDLE_PREAMBLE_LEN	40	/* magic 4, ver 1, suite 1, hlen 2, eph 32 */
#define BUNDLE_TAG_LEN		16
#define BUNDLE_SIG_LEN		64
#define BUNDLE_HDR_FIXED	39	/* id 16, ctime 8, codec 1, dict 8,
				   chunk 4, name lengths 1+1 */
#define BUNDLE_CHUNK_LAST	0x80000000u

enum bundle_rec_type {
	BUNDLE_REC_MESSAGE = 0x01,
	BUNDLE_REC_STATUS = 0x02,
	BUNDLE_REC_ACK = 0x03,
	BUNDLE_REC_END = 0x7f,
};

/* Field tags inside records (tag + u32 length + bytes, as buf.h). */
enum bundle_field {
	BF_QID = 'q', BF_SENDER = 'f', BF_ENVID = 'e', BF_RET = 'r',
	BF_RCPT = 'R', BF_NOTIFY = 'n', BF_ORCPT = 'o', BF_SIZE = 's',
	BF_STATE = 'S', BF_STATUS = 'c', BF_REMOTE = 'h', BF_DIAG = 'd',
	BF_TIME = 't', BF_BUNDLE_ID = 'b', BF_MSG_ID = 'm', BF_COUNT = 'N',
	BF_NEXT_HOP_DSN = 'D',
};

int	bundle_kdf(const unsigned char *shared, const unsigned char *eph_pub,
	    const unsigned char *rcpt_pub, const char *label,
	    const unsigned char *id, unsigned char key[32]);
int	bundle_x25519(const unsigned char *priv, const unsigned char *peer,
	    unsigned char shared[32]);
int	bundle_x25519_pub(const unsigned char *priv, unsigned char pub[32]);
/*
 * AEAD seal/open with ChaCha20-Poly1305, the tag after the text; ctx is
 * an EVP_CIPHER_CTX to reuse.  Returns 1 on success, 0 on failure.
 */
int	bundle_aead(void *ctx, int enc, const unsigned char key[32],
	    uint64_t nonce,
	    const unsigned char *aad, size_t aadlen, const unsigned char *in,
	    size_t inlen, unsigned char *out);
void	bundle_chunk_aad(unsigned char aad[29], const unsigned char *id,
	    uint64_t idx, int last);
/* The bytes Ed25519 signs: label, preamble, header, receiver's X25519. */
#define BUNDLE_SIG_LABEL	"mgate-bundle-v1-signature"
#define BUNDLE_SIG_LABEL_LEN	(sizeof(BUNDLE_SIG_LABEL) - 1)

#endif
