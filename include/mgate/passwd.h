/*
 * passwd.h - SMTP AUTH passwords, stored only as salted PBKDF2 hashes.
 *
 * Format: "pbkdf2-sha256$ITERATIONS$SALT$HASH", salt and hash in
 * base64.  Made by `mgate passwd-hash'; checked in constant time.
 */
#ifndef MGATE_PASSWD_H
#define MGATE_PASSWD_H

#include <stddef.h>

#include "mgate/err.h"

enum mg_err passwd_hash(const char *password, char *out, size_t len);
/* 1 if password matches hash, 0 if not or if hash is malformed. */
int	passwd_verify(const char *password, const char *hash);

#endif
