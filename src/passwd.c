/*
 * passwd.c - PBKDF2-HMAC-SHA256 password hashes (OpenSSL).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "mgate/passwd.h"

#define ITERATIONS	100000
#define SALT_LEN	16
#define HASH_LEN	32

enum mg_err
passwd_hash(const char *pw, char *out, size_t len)
{
	unsigned char	salt[SALT_LEN], h[HASH_LEN];
	unsigned char	sb[32], hb[64];

	if (getrandom(salt, sizeof(salt), 0) != sizeof(salt))
		return MG_ETEMP;
	if (!PKCS5_PBKDF2_HMAC(pw, (int)strlen(pw), salt, sizeof(salt),
	    ITERATIONS, EVP_sha256(), sizeof(h), h))
		return MG_ESOFTWARE;
	EVP_EncodeBlock(sb, salt, sizeof(salt));
	EVP_EncodeBlock(hb, h, sizeof(h));
	if ((size_t)snprintf(out, len, "pbkdf2-sha256$%d$%s$%s", ITERATIONS,
	    sb, hb) >= len)
		return MG_ELIMIT;
	return MG_OK;
}

int
passwd_verify(const char *pw, const char *hash)
{
	unsigned char	salt[64], want[64], got[HASH_LEN];
	char		sb[64], hb[96];
	int		iter, sl, hl;

	if (hash == NULL || sscanf(hash, "pbkdf2-sha256$%d$%63[^$]$%95s",
	    &iter, sb, hb) != 3 || iter < 1000 || iter > 10000000)
		return 0;
	sl = EVP_DecodeBlock(salt, (unsigned char *)sb, (int)strlen(sb));
	hl = EVP_DecodeBlock(want, (unsigned char *)hb, (int)strlen(hb));
	if (sl < SALT_LEN || hl < HASH_LEN)
		return 0;
	/* EVP_DecodeBlock counts padding bytes: use the known lengths. */
	if (!PKCS5_PBKDF2_HMAC(pw, (int)strlen(pw), salt, SALT_LEN, iter,
	    EVP_sha256(), sizeof(got), got))
		return 0;
	return CRYPTO_memcmp(got, want, HASH_LEN) == 0;
}
