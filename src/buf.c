/*
 * buf.c - bounded buffers, big-endian integers and tag+length fields.
 *
 * Every size computation is checked for overflow before it is used; a
 * reader never trusts a length it has not compared with what remains.
 */
#include <stdlib.h>
#include <string.h>

#include "mgate/buf.h"

void
mg_buf_init(struct mg_buf *b, size_t max)
{
	b->data = NULL;
	b->len = b->cap = 0;
	b->max = max;
}

void
mg_buf_free(struct mg_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void
mg_buf_reset(struct mg_buf *b)
{
	b->len = 0;
}

enum mg_err
mg_buf_reserve(struct mg_buf *b, size_t extra)
{
	size_t		 need, ncap;
	unsigned char	*n;

	if (extra > b->max || b->len > b->max - extra)
		return MG_ELIMIT;
	need = b->len + extra + 1;	/* room for mg_buf_cstr's NUL */
	if (need <= b->cap)
		return MG_OK;
	ncap = b->cap ? b->cap : 256;
	while (ncap < need)
		ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
	if (ncap > b->max + 1)
		ncap = b->max + 1;
	if ((n = realloc(b->data, ncap)) == NULL)
		return MG_ENOMEM;
	b->data = n;
	b->cap = ncap;
	return MG_OK;
}

enum mg_err
mg_buf_append(struct mg_buf *b, const void *p, size_t n)
{
	enum mg_err e;

	if ((e = mg_buf_reserve(b, n)) != MG_OK)
		return e;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	return MG_OK;
}

void
mg_put_be32(unsigned char *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

void
mg_put_be64(unsigned char *p, uint64_t v)
{
	mg_put_be32(p, v >> 32);
	mg_put_be32(p + 4, (uint32_t)v);
}

uint32_t
mg_get_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

uint64_t
mg_get_be64(const unsigned char *p)
{
	return (uint64_t)mg_get_be32(p) << 32 | mg_get_be32(p + 4);
}

enum mg_err
mg_buf_put_u8(struct mg_buf *b, uint8_t v)
{
	return mg_buf_append(b, &v, 1);
}

enum mg_err
mg_buf_put_u32(struct mg_buf *b, uint32_t v)
{
	unsigned char p[4];

	mg_put_be32(p, v);
	return mg_buf_append(b, p, 4);
}

enum mg_err
mg_buf_put_u64(struct mg_buf *b, uint64_t v)
{
	unsigned char p[8];

	mg_put_be64(p, v);
	return mg_buf_append(b, p, 8);
}

enum mg_err
mg_buf_put_field(struct mg_buf *b, uint8_t tag, const void *p, size_t n)
{
	unsigned char	hdr[MG_FIELD_HDR];
	enum mg_err	e;

	if (n > UINT32_MAX)
		return MG_ELIMIT;
	hdr[0] = tag;
	mg_put_be32(hdr + 1, (uint32_t)n);
	if ((e = mg_buf_reserve(b, sizeof(hdr) + n)) != MG_OK)
		return e;
	mg_buf_append(b, hdr, sizeof(hdr));
	return mg_buf_append(b, p, n);
}

enum mg_err
mg_buf_put_str(struct mg_buf *b, uint8_t tag, const char *s)
{
	return mg_buf_put_field(b, tag, s ? s : "", s ? strlen(s) : 0);
}

enum mg_err
mg_buf_put_field_u64(struct mg_buf *b, uint8_t tag, uint64_t v)
{
	unsigned char p[8];

	mg_put_be64(p, v);
	return mg_buf_put_field(b, tag, p, 8);
}

enum mg_err
mg_buf_cstr(struct mg_buf *b, const char **out)
{
	enum mg_err e;

	if ((e = mg_buf_reserve(b, 0)) != MG_OK)
		return e;
	b->data[b->len] = '\0';
	*out = (const char *)b->data;
	return MG_OK;
}

void
mg_rd_init(struct mg_rd *r, const void *p, size_t n)
{
	r->p = p;
	r->len = n;
	r->off = 0;
}

int
mg_rd_eof(const struct mg_rd *r)
{
	return r->off >= r->len;
}

enum mg_err
mg_rd_bytes(struct mg_rd *r, size_t n, const unsigned char **out)
{
	if (n > r->len - r->off)
		return MG_EDATA;
	*out = r->p + r->off;
	r->off += n;
	return MG_OK;
}

enum mg_err
mg_rd_u8(struct mg_rd *r, uint8_t *v)
{
	const unsigned char *p;

	if (mg_rd_bytes(r, 1, &p) != MG_OK)
		return MG_EDATA;
	*v = p[0];
	return MG_OK;
}

enum mg_err
mg_rd_u32(struct mg_rd *r, uint32_t *v)
{
	const unsigned char *p;

	if (mg_rd_bytes(r, 4, &p) != MG_OK)
		return MG_EDATA;
	*v = mg_get_be32(p);
	return MG_OK;
}

enum mg_err
mg_rd_u64(struct mg_rd *r, uint64_t *v)
{
	const unsigned char *p;

	if (mg_rd_bytes(r, 8, &p) != MG_OK)
		return MG_EDATA;
	*v = mg_get_be64(p);
	return MG_OK;
}

enum mg_err
mg_rd_field(struct mg_rd *r, uint8_t *tag, const unsigned char **p,
    size_t *n)
{
	uint32_t len;

	if (mg_rd_u8(r, tag) != MG_OK || mg_rd_u32(r, &len) != MG_OK)
		return MG_EDATA;
	*n = len;
	return mg_rd_bytes(r, len, p);
}

enum mg_err
mg_field_u64(const unsigned char *p, size_t n, uint64_t *v)
{
	if (n != 8)
		return MG_EDATA;
	*v = mg_get_be64(p);
	return MG_OK;
}

enum mg_err
mg_field_str(const unsigned char *p, size_t n, char **out)
{
	char *s;

	if (memchr(p, '\0', n) != NULL)
		return MG_EDATA;
	if ((s = malloc(n + 1)) == NULL)
		return MG_ENOMEM;
	memcpy(s, p, n);
	s[n] = '\0';
	*out = s;
	return MG_OK;
}
