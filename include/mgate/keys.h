/*
 * keys.h - a peer's key pair: Ed25519 to sign, X25519 to agree keys.
 *
 * Every mgate peer (a site or a gateway) has one key pair.  Bundles are
 * signed with the sender's Ed25519 key and encrypted to the receiver's
 * X25519 key (see bundle.h and mgate-bundle(5)).
 *
 * Public key file: one line, the only form ever shown to people or put
 * in a configuration file:
 *
 *	mgate-peer-1 <base64 Ed25519 public> <base64 X25519 public> [comment]
 *
 * Private key file (mode 0600, created O_EXCL|O_NOFOLLOW, fsync'd): one
 * text line
 *
 *	mgate-private-1 <base64 Ed25519 seed> <base64 X25519 private>
 *
 * base64 is RFC 4648 with padding (44 characters for 32 bytes).  The
 * public halves are derived from the private ones on load, so the two
 * files cannot disagree silently.  A private key file that group or
 * others may read or write is refused with MG_ENOPERM.
 *
 * Functions return an enum mg_err; the reason in words (naming the file
 * and what to do) is in keys_errmsg(), valid until the next call from
 * the same thread.
 */
#ifndef MGATE_KEYS_H
#define MGATE_KEYS_H

#include <stddef.h>

#include "mgate/err.h"

#define MG_KEY_LEN		32	/* raw Ed25519 / X25519 key bytes */
#define MG_KEY_COMMENT_MAX	128
#define MG_KEY_FPR_LEN		52	/* "SHA256:" + 43 base64 + NUL, rounded */

struct mg_pubkey {
	unsigned char	sign[MG_KEY_LEN];	/* Ed25519 public */
	unsigned char	kx[MG_KEY_LEN];		/* X25519 public */
	char		comment[MG_KEY_COMMENT_MAX];
};

struct mg_keypair {
	struct mg_pubkey pub;
	unsigned char	sign_priv[MG_KEY_LEN];	/* Ed25519 seed */
	unsigned char	kx_priv[MG_KEY_LEN];	/* X25519 private */
};

/* New key pair into two new files; neither may exist.  comment: NULL ok. */
enum mg_err keys_generate(const char *private_path, const char *public_path);
enum mg_err keys_generate_comment(const char *private_path,
	    const char *public_path, const char *comment);

/* Load a private key file (checks its mode); *out is freed by keys_free. */
enum mg_err keys_load_private(const char *path, struct mg_keypair **out);
/* The same from a "mgate-private-1 ..." line already in memory (tests). */
enum mg_err keys_parse_private(const char *line, struct mg_keypair **out);
void	keys_free(struct mg_keypair *);	/* wipes the private halves */

/* A public key from a file (first non-comment line) or from one line. */
enum mg_err keys_load_public(const char *path, struct mg_pubkey *out);
enum mg_err keys_parse_public(const char *line, struct mg_pubkey *out);
/* The "mgate-peer-1 ..." line (with a newline) for a public key. */
enum mg_err keys_format_public(const struct mg_pubkey *, char *buf,
	    size_t len);

/* "SHA256:<base64 of SHA-256(Ed25519 pub || X25519 pub)>", no padding. */
void	keys_fingerprint(const struct mg_pubkey *, char *buf, size_t len);

const char *keys_errmsg(void);

#endif
