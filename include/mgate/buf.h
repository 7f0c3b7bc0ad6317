/*
 * buf.h - bounded byte buffers and length-prefixed field encoding.
 *
 * A struct mg_buf grows on demand up to the maximum given at init; an
 * append past it fails with MG_ELIMIT and leaves the buffer unchanged.
 * The put_/get_ helpers encode integers big-endian and fields as
 * tag (1 byte) + length (4 bytes, big-endian) + bytes: the one binary
 * record shape used in maildrop files, spool records and bundles.
 * struct mg_rd reads such data from memory; every getter checks bounds
 * and fails with MG_EDATA on truncation, never reading past the end.
 */
#ifndef MGATE_BUF_H
#define MGATE_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "mgate/err.h"

#define MG_FIELD_HDR	5	/* tag + u32 length */

struct mg_buf {
	unsigned char	*data;
	size_t		 len;
	size_t		 cap;
	size_t		 max;
};

void	mg_buf_init(struct mg_buf *, size_t max);
void	mg_buf_free(struct mg_buf *);
void	mg_buf_reset(struct mg_buf *);
enum mg_err mg_buf_reserve(struct mg_buf *, size_t extra);
enum mg_err mg_buf_append(struct mg_buf *, const void *, size_t);
enum mg_err mg_buf_put_u8(struct mg_buf *, uint8_t);
enum mg_err mg_buf_put_u32(struct mg_buf *, uint32_t);
enum mg_err mg_buf_put_u64(struct mg_buf *, uint64_t);
enum mg_err mg_buf_put_field(struct mg_buf *, uint8_t tag, const void *,
	    size_t);
enum mg_err mg_buf_put_str(struct mg_buf *, uint8_t tag, const char *);
enum mg_err mg_buf_put_field_u64(struct mg_buf *, uint8_t tag, uint64_t);
/* NUL-terminated copy of the contents (for text built in a buffer). */
enum mg_err mg_buf_cstr(struct mg_buf *, const char **);

struct mg_rd {
	const unsigned char	*p;
	size_t			 len;
	size_t			 off;
};

void	mg_rd_init(struct mg_rd *, const void *, size_t);
int	mg_rd_eof(const struct mg_rd *);
enum mg_err mg_rd_u8(struct mg_rd *, uint8_t *);
enum mg_err mg_rd_u32(struct mg_rd *, uint32_t *);
enum mg_err mg_rd_u64(struct mg_rd *, uint64_t *);
enum mg_err mg_rd_bytes(struct mg_rd *, size_t, const unsigned char **);
enum mg_err mg_rd_field(struct mg_rd *, uint8_t *tag,
	    const unsigned char **, size_t *);
/* A field's value as a u64 (8 bytes big-endian); MG_EDATA otherwise. */
enum mg_err mg_field_u64(const unsigned char *, size_t, uint64_t *);
/* A field's value as a fresh NUL-terminated string; MG_EDATA on NUL. */
enum mg_err mg_field_str(const unsigned char *, size_t, char **);

void	mg_put_be32(unsigned char *, uint32_t);
void	mg_put_be64(unsigned char *, uint64_t);
uint32_t mg_get_be32(const unsigned char *);
uint64_t mg_get_be64(const unsigned char *);

#endif
