/*
 * t_record.c - unit tests for the record layers: buf.c (bounded buffers,
 * tag+length fields, struct mg_rd), stream.c (getline limits, read_full,
 * field framing over pipes) and maildrop.c (the submission file).
 *
 * Everything that crosses a process boundary in mgate is one of these
 * records, so the tests feed them every byte that line-based formats
 * choke on (CR, LF, NUL, 0xFF), sizes around the 64 KiB chunk and
 * stream buffer, and every truncation: a reader must fail cleanly
 * (MG_EDATA, MG_ECORRUPT), never read past the end or accept a damaged
 * file.  Run under ASan and valgrind, out-of-bounds reads fail too.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mgate/buf.h"
#include "mgate/envelope.h"
#include "mgate/log.h"
#include "mgate/maildrop.h"
#include "mgate/stream.h"
#include "tap.h"

/* Deterministic pseudo-random bytes (xorshift64*). */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t
rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

static unsigned char *
random_bytes(size_t n)
{
	unsigned char *p = malloc(n ? n : 1);

	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(rng() >> 32);
	/* Make sure the awkward bytes are there whatever the seed. */
	if (n >= 8) {
		p[0] = '\0';
		p[1] = '\r';
		p[2] = '\n';
		p[3] = 0xff;
		p[n - 1] = '\0';
		p[n / 2] = '\n';
	}
	return p;
}

/* --- buf.c: encoding, limits ------------------------------------------ */

static void
test_buf_encoding(void)
{
	struct mg_buf	b;
	const char	*s;
	static const unsigned char want[] = {
		'x', 0, 0, 0, 2, 'a', 'b',			/* field */
		0x01, 0x02, 0x03, 0x04,				/* u32 */
		0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,	/* u64 */
		0xff,						/* u8 */
		'n', 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x01, 0x2c,	/* u64 fld */
		'e', 0, 0, 0, 0,				/* NULL */
		'E', 0, 0, 0, 0,				/* "" */
		's', 0, 0, 0, 3, '\r', '\n', 0xff,		/* str */
	};

	mg_buf_init(&b, 1024);
	mg_buf_put_field(&b, 'x', "ab", 2);
	mg_buf_put_u32(&b, 0x01020304);
	mg_buf_put_u64(&b, 0x0102030405060708ULL);
	mg_buf_put_u8(&b, 0xff);
	mg_buf_put_field_u64(&b, 'n', 300);
	mg_buf_put_str(&b, 'e', NULL);
	mg_buf_put_str(&b, 'E', "");
	mg_buf_put_str(&b, 's', "\r\n\xff");
	ok(b.len == sizeof(want) && memcmp(b.data, want, b.len) == 0,
	    "buf: big-endian tag+length encoding, byte for byte");
	is_int(mg_buf_cstr(&b, &s), MG_OK, "buf: cstr");
	ok(s == (const char *)b.data && s[b.len] == '\0' &&
	    b.len == sizeof(want), "buf: cstr adds a NUL without changing "
	    "len");
	{
		unsigned char p[8];

		mg_put_be32(p, 0xdeadbeef);
		is_int(mg_get_be32(p), 0xdeadbeef, "be32 round trip");
		mg_put_be64(p, 0xfedcba9876543210ULL);
		ok(mg_get_be64(p) == 0xfedcba9876543210ULL &&
		    p[0] == 0xfe && p[7] == 0x10, "be64 round trip");
	}
	mg_buf_free(&b);
	ok(b.data == NULL && b.len == 0, "buf: free resets");
}

static void
test_buf_limit(void)
{
	struct mg_buf	 b;
	unsigned char	 snap[64];
	unsigned char	 big[64];
	const char	*s;

	memset(big, 'q', sizeof(big));
	mg_buf_init(&b, 16);
	is_int(mg_buf_append(&b, "0123456789abcdef", 16), MG_OK,
	    "limit: fill to max exactly");
	memcpy(snap, b.data, 16);
	is_int(mg_buf_append(&b, "x", 1), MG_ELIMIT,
	    "limit: one byte past max is MG_ELIMIT");
	ok(b.len == 16 && memcmp(b.data, snap, 16) == 0,
	    "limit: buffer unchanged after MG_ELIMIT");
	is_int(mg_buf_put_u8(&b, 1), MG_ELIMIT, "limit: put_u8 at max");
	is_int(mg_buf_cstr(&b, &s), MG_OK, "limit: cstr works at max");
	ok(s && s[16] == '\0' && memcmp(s, snap, 16) == 0,
	    "limit: cstr at max terminates");
	is_int(mg_buf_append(&b, "", 0), MG_OK, "limit: empty append at max");

	mg_buf_reset(&b);
	is_int(b.len, 0, "limit: reset empties");
	is_int(mg_buf_put_field(&b, 't', big, 12), MG_ELIMIT,
	    "limit: field of 5+12 > 16 refused");
	is_int(b.len, 0, "limit: no header left behind by a refused field");
	is_int(mg_buf_put_field(&b, 't', big, 11), MG_OK,
	    "limit: field of 5+11 = 16 fits");
	mg_buf_reset(&b);
	mg_buf_append(&b, big, 13);
	memcpy(snap, b.data, 13);
	is_int(mg_buf_put_u32(&b, 7), MG_ELIMIT, "limit: u32 at len 13");
	mg_buf_reset(&b);
	mg_buf_append(&b, big, 9);
	is_int(mg_buf_put_u64(&b, 7), MG_ELIMIT, "limit: u64 at len 9");
	ok(b.len == 9 && memcmp(b.data, big, 9) == 0,
	    "limit: unchanged after refused u64");
	is_int(mg_buf_put_field_u64(&b, 'u', 7), MG_ELIMIT,
	    "limit: u64 field (13 bytes) at len 9");
	is_int(b.len, 9, "limit: unchanged after refused u64 field");
	is_int(mg_buf_put_str(&b, 's', "abcdefghij"), MG_ELIMIT,
	    "limit: string field");
	is_int(b.len, 9, "limit: unchanged after refused string");
	is_int(mg_buf_reserve(&b, SIZE_MAX), MG_ELIMIT,
	    "limit: reserve SIZE_MAX");
	is_int(mg_buf_reserve(&b, SIZE_MAX - 4), MG_ELIMIT,
	    "limit: reserve near SIZE_MAX (no overflow)");
	is_int(mg_buf_reserve(&b, 8), MG_ELIMIT, "limit: reserve past max");
	is_int(mg_buf_reserve(&b, 7), MG_OK, "limit: reserve up to max");
	is_int(b.len, 9, "limit: reserve does not change len");
	/* A length that does not fit the u32 of a field. */
	mg_buf_free(&b);
	mg_buf_init(&b, SIZE_MAX);
	is_int(mg_buf_put_field(&b, 'h', big, (size_t)UINT32_MAX + 1),
	    MG_ELIMIT, "limit: field over 4 GiB refused before copying");
	is_int(b.len, 0, "limit: nothing written");
	mg_buf_free(&b);

	/* max 0: nothing but the empty string fits. */
	mg_buf_init(&b, 0);
	is_int(mg_buf_append(&b, "", 0), MG_OK, "limit: max 0, empty append");
	is_int(mg_buf_append(&b, "a", 1), MG_ELIMIT, "limit: max 0, 1 byte");
	is_int(mg_buf_cstr(&b, &s), MG_OK, "limit: max 0, cstr");
	ok(s && *s == '\0', "limit: max 0, cstr is empty");
	mg_buf_free(&b);

	/* Growth in odd steps to a large max keeps every byte. */
	{
		unsigned char	*src = random_bytes(300000);
		size_t		 off = 0, step = 1, fails = 0;

		mg_buf_init(&b, 300000);
		while (off < 300000) {
			size_t n = step < 300000 - off ? step : 300000 - off;

			if (mg_buf_append(&b, src + off, n) != MG_OK)
				fails++;
			off += n;
			step = step * 3 + 1;
			if (step > 70000)
				step = 7;
		}
		ok(fails == 0 && b.len == 300000 &&
		    memcmp(b.data, src, 300000) == 0,
		    "limit: 300000 bytes appended in odd steps intact");
		is_int(mg_buf_append(&b, "x", 1), MG_ELIMIT,
		    "limit: full large buffer refuses one more");
		ok(b.cap <= 300001, "limit: capacity never beyond max + 1 "
		    "(%zu)", b.cap);
		mg_buf_free(&b);
		free(src);
	}
}

/* --- buf.c: field codec round trip and truncation ------------------- */

struct payload {
	uint8_t		 tag;
	size_t		 len;
	unsigned char	*p;
};

static const size_t payload_sizes[] = {
	0, 1, 2, 3, 4, 5, 8, 255, 256, 4096, 65535, 65536, 65537, 70000,
};

static struct payload *
make_payloads(size_t *np)
{
	size_t		 n = sizeof(payload_sizes) / sizeof(payload_sizes[0]);
	struct payload	*pl = calloc(n + 5, sizeof(*pl));
	size_t		 k = 0;

	for (size_t i = 0; i < n; i++, k++) {
		pl[k].tag = (uint8_t)(i * 37);
		pl[k].len = payload_sizes[i];
		pl[k].p = random_bytes(payload_sizes[i]);
	}
	/* Short awkward ones. */
	pl[k].tag = 0x00; pl[k].len = 1; pl[k].p = malloc(1);
	pl[k].p[0] = '\0'; k++;
	pl[k].tag = 0xff; pl[k].len = 1; pl[k].p = malloc(1);
	pl[k].p[0] = 0xff; k++;
	pl[k].tag = '\r'; pl[k].len = 2; pl[k].p = malloc(2);
	memcpy(pl[k].p, "\r\n", 2); k++;
	pl[k].tag = '\n'; pl[k].len = 5; pl[k].p = malloc(5);
	memcpy(pl[k].p, "\n.\r\n\0", 5); k++;
	pl[k].tag = 'Z'; pl[k].len = 0; pl[k].p = malloc(1); k++;
	*np = k;
	return pl;
}

static void
free_payloads(struct payload *pl, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(pl[i].p);
	free(pl);
}

/*
 * Decode what encode_all wrote from data[0..len): MG_OK if every field
 * came back identical, MG_EDATA (the reader's verdict) if it stopped.
 * Any other outcome is reported through *mismatch.
 */
static enum mg_err
decode_all(const unsigned char *data, size_t len, const struct payload *pl,
    size_t n, int *mismatch)
{
	struct mg_rd		 rd;
	uint8_t			 tag;
	const unsigned char	*v;
	size_t			 vn;
	uint32_t		 u32;
	uint64_t		 u64;
	enum mg_err		 e;

	*mismatch = 0;
	mg_rd_init(&rd, data, len);
	if ((e = mg_rd_u32(&rd, &u32)) != MG_OK)
		return e;
	if (u32 != 0xcafef00d)
		*mismatch = 1;
	for (size_t i = 0; i < n; i++) {
		if ((e = mg_rd_field(&rd, &tag, &v, &vn)) != MG_OK)
			return e;
		if (tag != pl[i].tag || vn != pl[i].len ||
		    (vn && memcmp(v, pl[i].p, vn) != 0))
			*mismatch = 1;
		if (v < data || v + vn > data + len)
			*mismatch = 1;
	}
	if ((e = mg_rd_u64(&rd, &u64)) != MG_OK)
		return e;
	if (u64 != 0x0123456789abcdefULL)
		*mismatch = 1;
	if ((e = mg_rd_field(&rd, &tag, &v, &vn)) != MG_OK)
		return e;
	if ((e = mg_field_u64(v, vn, &u64)) != MG_OK)
		return e;
	if (tag != 'q' || u64 != UINT64_MAX)
		*mismatch = 1;
	if ((e = mg_rd_u8(&rd, &tag)) != MG_OK)
		return e;
	if (tag != 0x7f)
		*mismatch = 1;
	if (!mg_rd_eof(&rd))
		*mismatch = 1;
	return MG_OK;
}

/*
 * Encode the payloads (those of at most maxsize bytes) with u32, u64,
 * u64-field and u8 around them, then decode the whole and every cut.
 * all_cuts: every cut position; otherwise every position within 6 bytes
 * of a field boundary and every 997th.  Each cut is decoded from an
 * exact-size copy, so an over-read is caught by ASan or valgrind.
 */
static void
codec_run(const char *what, size_t maxsize, int all_cuts)
{
	struct payload	*all, *pl;
	size_t		 nall, n = 0, len;
	struct mg_buf	 b;
	enum mg_err	 e;
	int		 mismatch;
	unsigned char	*cut, *near;
	size_t		 tried = 0, cut_ok = 0, cut_other = 0;
	size_t		 cut_mismatch = 0;

	all = make_payloads(&nall);
	pl = calloc(nall, sizeof(*pl));
	for (size_t i = 0; i < nall; i++)
		if (all[i].len <= maxsize)
			pl[n++] = all[i];
	mg_buf_init(&b, 1 << 20);
	e = mg_buf_put_u32(&b, 0xcafef00d);
	for (size_t i = 0; i < n && e == MG_OK; i++)
		e = mg_buf_put_field(&b, pl[i].tag, pl[i].p, pl[i].len);
	if (e == MG_OK)
		e = mg_buf_put_u64(&b, 0x0123456789abcdefULL);
	if (e == MG_OK)
		e = mg_buf_put_field_u64(&b, 'q', UINT64_MAX);
	if (e == MG_OK)
		e = mg_buf_put_u8(&b, 0x7f);
	is_int(e, MG_OK, "codec %s: %zu fields (CR, LF, NUL, 0xFF, empty%s) "
	    "encoded", what, n, maxsize > 65536 ? ", 64 KiB +-1" : "");
	len = b.len;

	cut = malloc(len);
	memcpy(cut, b.data, len);
	e = decode_all(cut, len, pl, n, &mismatch);
	is_int(e, MG_OK, "codec %s: decodes", what);
	ok(!mismatch, "codec %s: every field identical after the round trip",
	    what);
	free(cut);

	/* Positions near boundaries: mark them. */
	near = calloc(len + 1, 1);
	{
		size_t off = 4;

		for (size_t i = 0; i <= n + 2; i++) {
			for (size_t d = 0; d < 7; d++) {
				if (off + d <= len)
					near[off + d] = 1;
				if (off >= d)
					near[off - d] = 1;
			}
			if (i < n)
				off += MG_FIELD_HDR + pl[i].len;
			else
				off += i == n ? 8 : 13;
		}
	}
	for (size_t c = 0; c < len; c++) {
		if (!all_cuts && !near[c] && c % 997 != 0)
			continue;
		tried++;
		cut = malloc(c ? c : 1);
		memcpy(cut, b.data, c);
		e = decode_all(cut, c, pl, n, &mismatch);
		if (e == MG_OK)
			cut_ok++;
		else if (e != MG_EDATA)
			cut_other++;
		if (mismatch)
			cut_mismatch++;
		free(cut);
	}
	is_int(cut_ok, 0, "codec %s: none of %zu truncations decodes", what,
	    tried);
	is_int(cut_other, 0, "codec %s: every truncation is MG_EDATA", what);
	is_int(cut_mismatch, 0, "codec %s: fields before a cut still intact",
	    what);
	free(near);
	mg_buf_free(&b);
	free(pl);
	free_payloads(all, nall);
}

static void
test_field_codec(void)
{
	codec_run("small", 4096, 1);
	codec_run("large", SIZE_MAX, 0);

	/* Hostile lengths. */
	{
		static const unsigned char huge[] = { 'x', 0xff, 0xff, 0xff,
		    0xff, 'a' };
		static const unsigned char over[] = { 'x', 0, 0, 0, 2, 'a' };
		struct mg_rd		 rd;
		uint8_t			 tag;
		const unsigned char	*v = NULL;
		size_t			 vn = 0;

		mg_rd_init(&rd, huge, sizeof(huge));
		is_int(mg_rd_field(&rd, &tag, &v, &vn), MG_EDATA,
		    "codec: length 0xffffffff with 1 byte left");
		mg_rd_init(&rd, over, sizeof(over));
		is_int(mg_rd_field(&rd, &tag, &v, &vn), MG_EDATA,
		    "codec: length one past the end");
		mg_rd_init(&rd, over, 0);
		ok(mg_rd_eof(&rd), "codec: empty reader is at eof");
		is_int(mg_rd_u8(&rd, &tag), MG_EDATA, "codec: u8 from nothing");
		mg_rd_init(&rd, over, 3);
		{
			uint32_t u;
			uint64_t w;
			const unsigned char *pp;

			is_int(mg_rd_u32(&rd, &u), MG_EDATA,
			    "codec: u32 from 3 bytes");
			is_int(mg_rd_u64(&rd, &w), MG_EDATA,
			    "codec: u64 from 3 bytes");
			is_int(mg_rd_bytes(&rd, 4, &pp), MG_EDATA,
			    "codec: 4 bytes from 3");
			is_int(mg_rd_bytes(&rd, 3, &pp), MG_OK,
			    "codec: 3 bytes from 3");
			ok(pp == over && mg_rd_eof(&rd), "codec: at eof");
			is_int(mg_rd_bytes(&rd, SIZE_MAX, &pp), MG_EDATA,
			    "codec: SIZE_MAX bytes at eof");
		}
	}

	/* Field value helpers. */
	{
		static const unsigned char eight[9] = { 0, 0, 0, 0, 0, 0, 1, 0,
		    9 };
		uint64_t	 u = 42;
		char		*s = NULL;

		is_int(mg_field_u64(eight, 8, &u), MG_OK, "field_u64: 8 bytes");
		is_int(u, 256, "field_u64: value");
		is_int(mg_field_u64(eight, 7, &u), MG_EDATA, "field_u64: 7");
		is_int(mg_field_u64(eight, 9, &u), MG_EDATA, "field_u64: 9");
		is_int(mg_field_u64(eight, 0, &u), MG_EDATA, "field_u64: 0");
		is_int(mg_field_str((const unsigned char *)"a\0b", 3, &s),
		    MG_EDATA, "field_str: NUL inside refused");
		ok(s == NULL, "field_str: nothing allocated on refusal");
		is_int(mg_field_str((const unsigned char *)"a\r\n\xff", 4, &s),
		    MG_OK, "field_str: CR LF 0xFF accepted");
		is_str(s, "a\r\n\xff", "field_str: value");
		free(s);
		s = NULL;
		is_int(mg_field_str((const unsigned char *)"", 0, &s), MG_OK,
		    "field_str: empty");
		is_str(s, "", "field_str: empty value is \"\"");
		free(s);
	}
}

/* --- stream.c over pipes -------------------------------------------- */

/*
 * A pipe whose write end a child fills with data in pieces of `piece'
 * bytes (0: random 1..9000) and then closes.  Returns the read end.
 */
static int
feed(const void *data, size_t len, size_t piece, pid_t *pid)
{
	int fds[2];

	if (pipe(fds) < 0)
		return -1;
	fflush(stdout);
	if ((*pid = fork()) == 0) {
		const unsigned char *p = data;
		size_t off = 0;

		close(fds[0]);
		while (off < len) {
			size_t n = piece ? piece : 1 + (size_t)(rng() % 9000);
			ssize_t w;

			if (n > len - off)
				n = len - off;
			if ((w = write(fds[1], p + off, n)) <= 0)
				_exit(1);
			off += (size_t)w;
		}
		_exit(0);
	}
	close(fds[1]);
	return fds[0];
}

static int
reap(pid_t pid)
{
	int st;

	if (waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

struct gl_step {
	enum mg_err	 e;
	const char	*bytes;		/* NULL: EOF (len 0) */
	size_t		 len;
};

#define S(s)	{ MG_OK, s, sizeof(s) - 1 }
#define L(s)	{ MG_ELIMIT, s, sizeof(s) - 1 }
#define EOFS	{ MG_OK, NULL, 0 }

static const struct {
	const char	*what;
	const char	*in;
	size_t		 inlen;
	size_t		 max;
	struct gl_step	 steps[6];
} getline_cases[] = {
	{ "two lines", "abc\ndef\n", 8, 10, { S("abc\n"), S("def\n"), EOFS } },
	{ "longer than max", "abcdefg\n", 8, 3,
	  { L("abc"), L("def"), S("g\n"), EOFS } },
	{ "line of max bytes with LF", "abcd\nx\n", 7, 5,
	  { S("abcd\n"), S("x\n"), EOFS } },
	{ "LF is the byte past max", "abcde\n", 6, 5,
	  { L("abcde"), S("\n"), EOFS } },
	{ "last line without LF", "abc\nxy", 6, 10,
	  { S("abc\n"), S("xy"), EOFS } },
	{ "empty lines, max 1", "\n\n", 2, 1, { S("\n"), S("\n"), EOFS } },
	{ "CRLF kept", "a\r\nb\r\n", 6, 10, { S("a\r\n"), S("b\r\n"), EOFS } },
	{ "bare CR is not an end", "a\rb\n", 4, 10, { S("a\rb\n"), EOFS } },
	{ "NUL and 0xFF inside", "a\0\xff\n\0\n", 6, 10,
	  { S("a\0\xff\n"), S("\0\n"), EOFS } },
	{ "empty input", "", 0, 10, { EOFS, EOFS } },
};

static void
test_getline(void)
{
	char	 buf[128];
	size_t	 len;
	pid_t	 pid;

	for (size_t i = 0; i < sizeof(getline_cases) /
	    sizeof(getline_cases[0]); i++) {
		int			 fd, bad = 0;
		struct mg_stream	*s;

		/* One byte at a time: lines split over many reads. */
		fd = feed(getline_cases[i].in, getline_cases[i].inlen, 1, &pid);
		s = mg_stream_fd(fd, 1);
		for (int k = 0; k < 6; k++) {
			const struct gl_step *st = &getline_cases[i].steps[k];
			enum mg_err e;

			if (st->e == MG_OK && st->bytes == NULL && k > 0 &&
			    getline_cases[i].steps[k - 1].bytes == NULL)
				break;
			memset(buf, '#', sizeof(buf));
			e = mg_stream_getline(s, buf, getline_cases[i].max,
			    &len);
			if (e != st->e || len != st->len ||
			    (st->len && memcmp(buf, st->bytes, st->len)) ||
			    buf[getline_cases[i].max] != '#') {
				bad++;
				diag("  step %d: got %d len %zu, want %d len "
				    "%zu", k, e, len, st->e, st->len);
			}
			if (st->bytes == NULL)
				break;
		}
		ok(!bad, "getline: %s", getline_cases[i].what);
		mg_stream_close(s);
		reap(pid);
	}

	/* A long line across stream buffer refills. */
	{
		size_t		 n = 150000;
		unsigned char	*in = malloc(n + 1), *out = malloc(n + 1);
		struct mg_stream *s;
		enum mg_err	 e;
		int		 fd;

		memset(in, 'h', n);
		in[n - 1] = '\n';
		in[n] = 'T';
		fd = feed(in, n + 1, 0, &pid);
		s = mg_stream_fd(fd, 1);
		e = mg_stream_getline(s, (char *)out, 65536, &len);
		ok(e == MG_ELIMIT && len == 65536 && memcmp(out, in, len) == 0,
		    "getline: 150000-byte line, max 65536: MG_ELIMIT, first "
		    "65536 bytes");
		e = mg_stream_getline(s, (char *)out, 65536, &len);
		ok(e == MG_ELIMIT && len == 65536, "getline: the next 65536");
		e = mg_stream_getline(s, (char *)out, 65536, &len);
		ok(e == MG_OK && len == n - 2 * 65536 && out[len - 1] == '\n',
		    "getline: the rest, with its LF");
		e = mg_stream_getline(s, (char *)out, 65536, &len);
		ok(e == MG_OK && len == 1 && out[0] == 'T',
		    "getline: then the last unterminated line");
		mg_stream_close(s);
		reap(pid);

		/* The same line fits a larger max in one piece. */
		fd = feed(in, n, 0, &pid);
		s = mg_stream_fd(fd, 1);
		e = mg_stream_getline(s, (char *)out, n, &len);
		ok(e == MG_OK && len == n && memcmp(out, in, n) == 0,
		    "getline: 150000-byte line with max 150000 in one call");
		mg_stream_close(s);
		reap(pid);
		free(in);
		free(out);
	}
}

static void
test_read_full(void)
{
	size_t		 n = 1 << 20, got = 12345;
	unsigned char	*in = random_bytes(n), *out = malloc(n + 16);
	struct mg_stream *s;
	enum mg_err	 e;
	pid_t		 pid;
	char		 line[64];
	size_t		 len;
	int		 fd;

	fd = feed(in, n, 0, &pid);
	s = mg_stream_fd(fd, 1);
	e = mg_stream_read_full(s, out, n, &got);
	ok(e == MG_OK && got == n && memcmp(in, out, n) == 0,
	    "read_full: 1 MiB through a pipe in random pieces, intact");
	e = mg_stream_read_full(s, out, 1, &got);
	ok(e == MG_EDATA && got == 0, "read_full: at EOF is MG_EDATA, got 0");
	mg_stream_close(s);
	is_int(reap(pid), 0, "read_full: writer child ok");

	/* Short input: MG_EDATA with the count. */
	fd = feed(in, 100000, 0, &pid);
	s = mg_stream_fd(fd, 1);
	got = 0;
	e = mg_stream_read_full(s, out, 100005, &got);
	ok(e == MG_EDATA && got == 100000 && memcmp(in, out, got) == 0,
	    "read_full: EOF 5 bytes early is MG_EDATA, got says 100000");
	mg_stream_close(s);
	reap(pid);

	/* getline then read_full: buffered bytes are not lost. */
	memcpy(in, "HEADER\n", 7);
	fd = feed(in, 300000, 0, &pid);
	s = mg_stream_fd(fd, 1);
	e = mg_stream_getline(s, line, sizeof(line), &len);
	ok(e == MG_OK && len == 7 && memcmp(line, "HEADER\n", 7) == 0,
	    "mixed: getline first");
	e = mg_stream_read_full(s, out, 300000 - 7, &got);
	ok(e == MG_OK && memcmp(out, in + 7, 300000 - 7) == 0,
	    "mixed: read_full continues right after the line");
	mg_stream_close(s);
	reap(pid);

	/* A stalled writer: the timeout turns into MG_ETEMP, sticky. */
	{
		int fds[2];
		ssize_t r;

		if (pipe(fds) == 0) {
			s = mg_stream_fd(fds[0], 1);
			mg_stream_set_timeout(s, 50);
			r = mg_stream_read(s, out, 10);
			ok(r < 0 && mg_stream_error(s) == MG_ETEMP,
			    "timeout: a silent pipe gives MG_ETEMP");
			write(fds[1], "data\n", 5);
			e = mg_stream_getline(s, line, sizeof(line), &len);
			is_int(e, MG_ETEMP, "timeout: the error is sticky");
			mg_stream_close(s);
			close(fds[1]);
		}
	}
	free(in);
	free(out);
}

/* Field framing: a child writes fields with mg_stream_put_field. */
static void
test_stream_fields(void)
{
	struct payload	*pl;
	size_t		 n, bad = 0;
	int		 fds[2];
	pid_t		 pid;
	struct mg_stream *s;
	unsigned char	 tag;
	size_t		 len;
	unsigned char	*buf = calloc(1, 80000);
	enum mg_err	 e;

	pl = make_payloads(&n);
	if (pipe(fds) < 0)
		return;
	fflush(stdout);
	if ((pid = fork()) == 0) {
		close(fds[0]);
		s = mg_stream_fd(fds[1], 1);
		for (size_t i = 0; i < n; i++)
			mg_stream_put_field(s, pl[i].tag, pl[i].p, pl[i].len);
		/* A field longer than the reader's max, then a short one. */
		mg_stream_put_field(s, 'L', buf, 1001);
		mg_stream_put_field(s, 'k', "ok", 2);
		mg_stream_write(s, "\x01\x00\x00", 3);	/* cut header */
		e = mg_stream_flush(s);
		mg_stream_close(s);
		_exit(e == MG_OK ? 0 : 1);
	}
	close(fds[1]);
	s = mg_stream_fd(fds[0], 1);
	for (size_t i = 0; i < n; i++) {
		e = mg_stream_get_field_hdr(s, &tag, &len, 70000);
		if (e != MG_OK || tag != pl[i].tag || len != pl[i].len) {
			bad++;
			continue;
		}
		if (mg_stream_read_full(s, buf, len, NULL) != MG_OK ||
		    (len && memcmp(buf, pl[i].p, len)))
			bad++;
	}
	is_int(bad, 0, "stream fields: %zu fields through a pipe intact", n);
	tag = 0;
	len = 77;
	e = mg_stream_get_field_hdr(s, &tag, &len, 1000);
	is_int(e, MG_ELIMIT, "stream fields: length over max is MG_ELIMIT");
	/* The caller may skip it: the stream is not broken. */
	e = mg_stream_read_full(s, buf, 1001, NULL);
	is_int(e, MG_OK, "stream fields: MG_ELIMIT is not sticky");
	e = mg_stream_get_field_hdr(s, &tag, &len, 1000);
	ok(e == MG_OK && tag == 'k' && len == 2, "stream fields: next field");
	mg_stream_read_full(s, buf, 2, NULL);
	e = mg_stream_get_field_hdr(s, &tag, &len, 1000);
	is_int(e, MG_EDATA, "stream fields: header cut short is MG_EDATA");
	e = mg_stream_get_field_hdr(s, &tag, &len, 1000);
	is_int(e, MG_EDATA, "stream fields: EOF is MG_EDATA");
	mg_stream_close(s);
	is_int(reap(pid), 0, "stream fields: writer flushed ok");
	free_payloads(pl, n);
	free(buf);
}

/* --- maildrop.c ----------------------------------------------------- */

static char spool[64];

static int
count_dir(const char *sub)
{
	char		 path[256];
	DIR		*d;
	struct dirent	*de;
	int		 n = 0;

	snprintf(path, sizeof(path), "%s/%s", spool, sub);
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void
empty_dir(const char *sub)
{
	char		 path[256], f[512];
	DIR		*d;
	struct dirent	*de;

	snprintf(path, sizeof(path), "%s/%s", spool, sub);
	if ((d = opendir(path)) == NULL)
		return;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			snprintf(f, sizeof(f), "%s/%s", path, de->d_name);
			unlink(f);
		}
	closedir(d);
}

static char *
xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* A test envelope: nrcpt recipients with every NOTIFY form and ORCPT. */
static void
make_env(struct mg_envelope *env, size_t nrcpt, const char *sender)
{
	static const unsigned notify[] = {
		0, MG_NOTIFY_NEVER, MG_NOTIFY_SUCCESS, MG_NOTIFY_FAILURE,
		MG_NOTIFY_DELAY, MG_NOTIFY_SUCCESS | MG_NOTIFY_FAILURE,
		MG_NOTIFY_SUCCESS | MG_NOTIFY_FAILURE | MG_NOTIFY_DELAY,
	};
	char addr[128], orcpt[160];

	memset(env, 0, sizeof(*env));
	env->arrival = 1700000000 + nrcpt;
	env->user = strdup("alice");
	env->sender = strdup(sender);
	env->envid = strdup("QQ314159+2Benv=3D");
	env->ret = MG_RET_HDRS;
	env->body = MG_BODY_8BITMIME;
	env->priority = (int)(nrcpt % 3);	/* low, normal, high */
	for (size_t i = 0; i < nrcpt; i++) {
		snprintf(addr, sizeof(addr), "rcpt%zu@example.org", i);
		snprintf(orcpt, sizeof(orcpt), "rfc822;Rcpt%zu@Example.ORG", i);
		mg_envelope_add_rcpt(env, strdup(addr), i % 3 == 0 ? NULL :
		    strdup(orcpt), notify[i % 7]);
	}
}

static int
same_env(const struct mg_envelope *a, const struct mg_envelope *b,
    const char **why)
{
	*why = "qid";
	if (strcmp(a->qid, b->qid))
		return 0;
	*why = "arrival";
	if (a->arrival != b->arrival)
		return 0;
	*why = "user";
	if (strcmp(a->user ? a->user : "", b->user ? b->user : ""))
		return 0;
	*why = "sender";
	if (a->sender == NULL || b->sender == NULL ||
	    strcmp(a->sender, b->sender))
		return 0;
	*why = "envid";
	if ((a->envid == NULL) != (b->envid == NULL) ||
	    (a->envid && strcmp(a->envid, b->envid)))
		return 0;
	*why = "ret/body/priority";
	if (a->ret != b->ret || a->body != b->body ||
	    a->priority != b->priority)
		return 0;
	*why = "nrcpt";
	if (a->nrcpt != b->nrcpt)
		return 0;
	for (size_t i = 0; i < a->nrcpt; i++) {
		*why = "rcpt addr";
		if (strcmp(a->rcpts[i].addr, b->rcpts[i].addr))
			return 0;
		*why = "rcpt notify";
		if (a->rcpts[i].notify != b->rcpts[i].notify)
			return 0;
		*why = "rcpt orcpt";
		if ((a->rcpts[i].orcpt == NULL) != (b->rcpts[i].orcpt == NULL) ||
		    (a->rcpts[i].orcpt && strcmp(a->rcpts[i].orcpt,
		    b->rcpts[i].orcpt)))
			return 0;
	}
	*why = "";
	return 1;
}

/*
 * Write a maildrop file; content goes in pieces of `piece' bytes
 * (0: random sizes).  Returns the commit result; path gets the file.
 */
static enum mg_err
write_drop(struct mg_envelope *env, const unsigned char *content,
    size_t len, size_t piece, char *path, size_t pathlen)
{
	struct maildrop_writer	*w = NULL;
	enum mg_err		 e;
	size_t			 off = 0;

	if ((e = maildrop_create(spool, env, &w)) != MG_OK)
		return e;
	if ((e = maildrop_put_envelope(w, env)) != MG_OK) {
		maildrop_abort(w);
		return e;
	}
	while (off < len) {
		size_t n = piece ? piece : 1 + (size_t)(rng() % 100000);

		if (n > len - off)
			n = len - off;
		if ((e = maildrop_put_content(w, content + off, n)) != MG_OK) {
			maildrop_abort(w);
			return e;
		}
		off += n;
	}
	if (maildrop_size(w) != len) {
		maildrop_abort(w);
		return MG_ESOFTWARE;
	}
	snprintf(path, pathlen, "%s/maildrop/%s", spool, env->qid);
	return maildrop_commit(w);
}

/*
 * Read a maildrop file back with reads of `chunk' bytes.  Returns
 * MG_OK, maildrop_open's error, or maildrop_read's *err.
 */
static enum mg_err
read_drop(const char *path, size_t chunk, struct mg_envelope *envout,
    unsigned char **content, size_t *len, int *stage)
{
	struct maildrop_reader	*r = NULL;
	char			 err[512];
	enum mg_err		 e;
	struct mg_buf		 b;
	unsigned char		*tmp;
	ssize_t			 n;

	*stage = 0;
	if ((e = maildrop_open(path, &r, err, sizeof(err))) != MG_OK)
		return e;
	*stage = 1;
	tmp = malloc(chunk);
	mg_buf_init(&b, 64 << 20);
	e = MG_OK;
	while ((n = maildrop_read(r, tmp, chunk, &e)) > 0)
		if (mg_buf_append(&b, tmp, (size_t)n) != MG_OK) {
			n = -1;
			e = MG_ESOFTWARE;
			break;
		}
	free(tmp);
	if (n == 0) {
		e = MG_OK;
		/* Reads after the end keep returning 0. */
		if (maildrop_read(r, &chunk, 1, &e) != 0)
			e = MG_ESOFTWARE;
	}
	if (e == MG_OK && envout) {
		const struct mg_envelope *re = maildrop_envelope(r);

		memset(envout, 0, sizeof(*envout));
		memcpy(envout->qid, re->qid, sizeof(re->qid));
		envout->arrival = re->arrival;
		envout->user = xstrdup(re->user);
		envout->sender = xstrdup(re->sender);
		envout->envid = xstrdup(re->envid);
		envout->ret = re->ret;
		envout->body = re->body;
		envout->priority = re->priority;
		envout->size = re->size;
		for (size_t i = 0; i < re->nrcpt; i++)
			mg_envelope_add_rcpt(envout, xstrdup(re->rcpts[i].addr),
			    xstrdup(re->rcpts[i].orcpt), re->rcpts[i].notify);
	}
	maildrop_close(r);
	if (content && e == MG_OK) {
		*content = b.data;
		*len = b.len;
	} else
		mg_buf_free(&b);
	return e;
}

static void
test_maildrop_round_trip(void)
{
	static const struct {
		size_t		 size;
		size_t		 nrcpt;
		const char	*sender;
		size_t		 piece;		/* writer pieces, 0 random */
		size_t		 chunk;		/* reader buffer */
	} cases[] = {
		{ 0, 1, "", 0, 100 },
		{ 1, 2, "", 1, 1 },
		{ 65535, 7, "bounce@example.org", 1000, 1 },
		{ 65536, 3, "", 65536, 65536 },
		{ 65537, 50, "a\r\nb\xff@x", 0, 4096 },
		{ 65537, 1, "s@x", 65537, 65537 },
		{ 131072, 4, "s@x", 0, 70000 },
		{ 1 << 20, 300, "", 0, 65536 },
		{ 1 << 20, 1, "big@example.org", 1 << 20, 1000000 },
		{ 1 << 20, 2, "", 0, 333 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mg_envelope	 env, got;
		unsigned char		*content, *back = NULL;
		size_t			 blen = 0;
		char			 path[512];
		const char		*why = "";
		enum mg_err		 e;
		int			 stage;
		struct stat		 st;

		make_env(&env, cases[i].nrcpt, cases[i].sender);
		content = random_bytes(cases[i].size);
		e = write_drop(&env, content, cases[i].size, cases[i].piece,
		    path, sizeof(path));
		if (!is_int(e, MG_OK, "maildrop %zu bytes, %zu rcpts: commit",
		    cases[i].size, cases[i].nrcpt))
			goto next;
		ok(stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
		    (st.st_mode & 0777) == 0600, "maildrop %zu: file in "
		    "maildrop/ with mode 0600", cases[i].size);
		is_int(count_dir("tmp"), 0, "maildrop %zu: tmp/ empty after "
		    "commit", cases[i].size);
		memset(&got, 0, sizeof(got));
		e = read_drop(path, cases[i].chunk, &got, &back, &blen, &stage);
		if (!is_int(e, MG_OK, "maildrop %zu: read back (reads of %zu)",
		    cases[i].size, cases[i].chunk))
			goto next;
		if (!ok(same_env(&env, &got, &why), "maildrop %zu: envelope "
		    "identical", cases[i].size))
			diag("  differs in %s", why);
		is_int(got.size, cases[i].size, "maildrop %zu: env.size",
		    cases[i].size);
		ok(blen == cases[i].size && (blen == 0 ||
		    memcmp(back, content, blen) == 0),
		    "maildrop %zu: content identical", cases[i].size);
		mg_envelope_free(&got);
next:
		free(back);
		free(content);
		mg_envelope_free(&env);
		empty_dir("maildrop");
	}

	/* No ENVID, RET and BODY unset, NULL user, ORCPT "". */
	{
		struct mg_envelope	 env, got;
		char			 path[512];
		const char		*why;
		int			 stage;

		memset(&env, 0, sizeof(env));
		env.sender = strdup("");
		env.priority = MG_PRIO_NORMAL;	/* the default: not written */
		mg_envelope_add_rcpt(&env, strdup("x@y"), strdup(""), 0);
		is_int(write_drop(&env, (const unsigned char *)"", 0, 0, path,
		    sizeof(path)), MG_OK, "maildrop minimal: commit");
		is_int(read_drop(path, 10, &got, NULL, NULL, &stage), MG_OK,
		    "maildrop minimal: read");
		ok(got.envid == NULL, "maildrop minimal: no ENVID stays NULL");
		ok(got.user && *got.user == '\0',
		    "maildrop minimal: NULL user reads as \"\"");
		ok(got.nrcpt == 1 && got.rcpts[0].orcpt &&
		    *got.rcpts[0].orcpt == '\0',
		    "maildrop minimal: empty ORCPT kept");
		ok(same_env(&env, &got, &why), "maildrop minimal: same");
		mg_envelope_free(&got);
		mg_envelope_free(&env);
		empty_dir("maildrop");
	}

	/* The reader's recipient limit: 100000 recipients are fine. */
	{
		struct mg_envelope	 env, got;
		char			 path[512];
		const char		*why = "";
		int			 stage;

		make_env(&env, 100000, "many@example.org");
		is_int(write_drop(&env, (const unsigned char *)"x", 1, 0, path,
		    sizeof(path)), MG_OK, "maildrop 100000 rcpts: commit");
		is_int(read_drop(path, 10, &got, NULL, NULL, &stage), MG_OK,
		    "maildrop 100000 rcpts: read");
		if (!ok(same_env(&env, &got, &why),
		    "maildrop 100000 rcpts: identical"))
			diag("  differs in %s", why);
		mg_envelope_free(&got);
		mg_envelope_free(&env);
		empty_dir("maildrop");
	}
}

/* Offset of the first 'C' (or 'Z') field of a maildrop image. */
static size_t
content_offset(const unsigned char *img, size_t len)
{
	struct mg_rd		 rd;
	uint8_t			 tag;
	const unsigned char	*v, *start;
	size_t			 vn;

	mg_rd_init(&rd, img, len);
	mg_rd_bytes(&rd, MAILDROP_MAGIC_LEN, &start);
	for (;;) {
		size_t off = rd.off;

		if (mg_rd_field(&rd, &tag, &v, &vn) != MG_OK)
			return 0;
		if (tag == 'C' || tag == 'Z')
			return off;
	}
}

static unsigned char *
slurp(const char *path, size_t *len)
{
	struct stat	 st;
	unsigned char	*p;
	int		 fd;

	if ((fd = open(path, O_RDONLY)) < 0 || fstat(fd, &st) < 0)
		return NULL;
	p = malloc((size_t)st.st_size + 1);
	if (read(fd, p, (size_t)st.st_size) != st.st_size) {
		free(p);
		close(fd);
		return NULL;
	}
	close(fd);
	*len = (size_t)st.st_size;
	return p;
}

static int
spit(const char *path, const unsigned char *p, size_t len)
{
	int fd, r;

	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0)
		return -1;
	r = write(fd, p, len) == (ssize_t)len ? 0 : -1;
	close(fd);
	return r;
}

/*
 * Damaged files.  Every damaged image must be refused: by maildrop_open
 * (MG_ECORRUPT) or by maildrop_read (-1 with MG_ECORRUPT).
 */
static void
test_maildrop_damage(void)
{
	struct mg_envelope	 env;
	unsigned char		*content, *img, *dmg;
	size_t			 clen = 3 * 65536 + 1234, ilen = 0, coff;
	char			 path[512], bad[512];
	size_t			 tried = 0, accepted = 0, wrongcode = 0;
	size_t			 at_open = 0, at_read = 0;
	int			 stage;
	enum mg_err		 e;

	make_env(&env, 40, "");
	content = random_bytes(clen);
	if (!is_int(write_drop(&env, content, clen, 0, path, sizeof(path)),
	    MG_OK, "damage: original committed"))
		return;
	img = slurp(path, &ilen);
	ok(img != NULL && ilen > clen, "damage: original read (%zu bytes)",
	    ilen);
	if (img == NULL)
		return;
	coff = content_offset(img, ilen);
	ok(coff > 8 && coff < 4000 && img[coff] == 'C',
	    "damage: first content field at %zu", coff);
	snprintf(bad, sizeof(bad), "%s/damaged", spool);
	is_int(read_drop(path, 4096, NULL, NULL, NULL, &stage), MG_OK,
	    "damage: the undamaged file reads");

	/*
	 * Truncations: every 997th offset through the file, and every
	 * offset through the envelope and the first field header.
	 */
	for (size_t cut = 0; cut < ilen; cut++) {
		if (cut % 997 != 0 && cut > coff + MG_FIELD_HDR + 2 &&
		    cut < ilen - 50)
			continue;
		tried++;
		spit(bad, img, cut);
		e = read_drop(bad, 65536, NULL, NULL, NULL, &stage);
		if (e == MG_OK)
			accepted++;
		else if (e != MG_ECORRUPT) {
			wrongcode++;
			diag("  cut at %zu: %s (stage %d)", cut,
			    mg_strerror(e), stage);
		}
		if (e != MG_OK)
			stage ? at_read++ : at_open++;
	}
	is_int(accepted, 0, "damage: none of %zu truncated files accepted",
	    tried);
	is_int(wrongcode, 0, "damage: every truncation is MG_ECORRUPT");
	ok(at_open > 0 && at_read > 0, "damage: refused at open (%zu) and "
	    "at read (%zu)", at_open, at_read);

	/* One flipped byte anywhere from the first content field on. */
	dmg = malloc(ilen);
	tried = accepted = wrongcode = 0;
	for (size_t pos = coff; pos < ilen; pos++) {
		if ((pos - coff) % 997 != 0 && pos > coff + MG_FIELD_HDR &&
		    pos < ilen - (MG_FIELD_HDR + 40))
			continue;
		for (int bit = 0; bit < 8; bit += 7) {
			tried++;
			memcpy(dmg, img, ilen);
			dmg[pos] ^= (unsigned char)(1u << bit);
			spit(bad, dmg, ilen);
			e = read_drop(bad, 4096, NULL, NULL, NULL, &stage);
			if (e == MG_OK)
				accepted++;
			else if (e != MG_ECORRUPT) {
				wrongcode++;
				diag("  flip at %zu bit %d: %s", pos, bit,
				    mg_strerror(e));
			}
		}
	}
	is_int(accepted, 0, "damage: none of %zu files with a flipped "
	    "content/end byte accepted", tried);
	is_int(wrongcode, 0, "damage: every flip is MG_ECORRUPT");

	/* Bytes after the end field. */
	memcpy(dmg, img, ilen);
	{
		unsigned char *more = malloc(ilen + 1);

		memcpy(more, img, ilen);
		more[ilen] = '\n';
		spit(bad, more, ilen + 1);
		is_int(read_drop(bad, 4096, NULL, NULL, NULL, &stage),
		    MG_ECORRUPT, "damage: a byte after the end field");
		free(more);
	}
	/* Wrong magic. */
	dmg[7] ^= 1;
	spit(bad, dmg, ilen);
	is_int(read_drop(bad, 4096, NULL, NULL, NULL, &stage), MG_ECORRUPT,
	    "damage: wrong magic");
	ok(stage == 0, "damage: wrong magic refused at open");
	/* An unknown envelope tag. */
	memcpy(dmg, img, ilen);
	dmg[MAILDROP_MAGIC_LEN] = 'Q';
	spit(bad, dmg, ilen);
	is_int(read_drop(bad, 4096, NULL, NULL, NULL, &stage), MG_ECORRUPT,
	    "damage: unknown envelope tag");
	/* Missing file, symlink. */
	snprintf(bad, sizeof(bad), "%s/nonexistent", spool);
	is_int(read_drop(bad, 4096, NULL, NULL, NULL, &stage), MG_ENOTFOUND,
	    "maildrop_open: missing file is MG_ENOTFOUND");
	snprintf(bad, sizeof(bad), "%s/link", spool);
	symlink(path, bad);
	ok(read_drop(bad, 4096, NULL, NULL, NULL, &stage) != MG_OK,
	    "maildrop_open: refuses a symlink");
	unlink(bad);
	snprintf(bad, sizeof(bad), "%s/damaged", spool);
	unlink(bad);

	free(dmg);
	free(img);
	free(content);
	mg_envelope_free(&env);
	empty_dir("maildrop");
}

static void
test_maildrop_abort(void)
{
	struct mg_envelope	 env, env2;
	struct maildrop_writer	*w = NULL, *w2 = NULL;
	unsigned char		*content = random_bytes(200000);
	char			 path[512];
	struct stat		 st;

	make_env(&env, 3, "a@b");
	make_env(&env2, 3, "a@b");
	is_int(maildrop_create(spool, &env, &w), MG_OK, "abort: create");
	ok(mg_qid_valid(env.qid), "abort: create fills in a valid qid");
	snprintf(path, sizeof(path), "%s/tmp/%s", spool, env.qid);
	ok(stat(path, &st) == 0, "abort: file is in tmp/ while written");
	is_int(maildrop_create(spool, &env2, &w2), MG_OK, "abort: second "
	    "create");
	ok(strcmp(env.qid, env2.qid) != 0, "abort: distinct qids");
	maildrop_put_envelope(w, &env);
	maildrop_put_content(w, content, 200000);
	is_int(count_dir("maildrop"), 0, "abort: nothing in maildrop/ "
	    "before commit");
	maildrop_abort(w);
	ok(stat(path, &st) < 0 && errno == ENOENT, "abort: tmp file gone");
	maildrop_abort(w2);	/* right after create */
	is_int(count_dir("tmp"), 0, "abort: tmp/ empty");
	is_int(count_dir("maildrop"), 0, "abort: maildrop/ empty");
	maildrop_abort(NULL);
	ok(1, "abort: NULL is a no-op");

	/* A missing spool: create fails cleanly, leaves nothing. */
	{
		struct maildrop_writer	*w3 = (struct maildrop_writer *)&w3;
		char			 nos[128];

		snprintf(nos, sizeof(nos), "%s/no-such-spool", spool);
		is_int(maildrop_create(nos, &env, &w3), MG_EUNAVAIL,
		    "create: missing spool is MG_EUNAVAIL");
		ok(w3 == NULL, "create: no writer on failure");
	}
	mg_envelope_free(&env);
	mg_envelope_free(&env2);
	free(content);
}

/*
 * The writer must not commit what the reader refuses: a commit that
 * returned MG_OK is the promise that the message will be delivered.
 */
static void
test_maildrop_writer_reader_agree(void)
{
	static const struct {
		const char	*what;
		size_t		 sender, envid, addr, orcpt;
	} cases[] = {
		{ "sender of 4000 bytes", 4000, 10, 10, 0 },
		{ "sender of 4096 bytes", 4096, 10, 10, 0 },
		{ "sender of 4097 bytes", 4097, 10, 10, 0 },
		{ "ENVID of 4096 bytes", 10, 4096, 10, 0 },
		{ "ENVID of 5000 bytes", 10, 5000, 10, 0 },
		{ "address of 4073 bytes", 10, 10, 4073, 0 },
		{ "address of 4074 bytes", 10, 10, 4074, 0 },
		{ "address of 4090 bytes", 10, 10, 4090, 0 },
		{ "address + ORCPT of 2036 + 2037 bytes", 10, 10, 2036, 2037 },
		{ "address + ORCPT of 3000 bytes each", 10, 10, 3000, 3000 },
		{ "all just fitting", 4096, 4096, 2000, 2000 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mg_envelope	 env, got;
		char			 path[512];
		char			*s;
		enum mg_err		 e, r = MG_OK;
		int			 stage;

		memset(&env, 0, sizeof(env));
		env.user = strdup("u");
		s = malloc(cases[i].sender + 1);
		memset(s, 's', cases[i].sender);
		s[cases[i].sender] = '\0';
		env.sender = s;
		s = malloc(cases[i].envid + 1);
		memset(s, 'e', cases[i].envid);
		s[cases[i].envid] = '\0';
		env.envid = s;
		s = malloc(cases[i].addr + 1);
		memset(s, 'a', cases[i].addr);
		s[cases[i].addr] = '\0';
		{
			char *o = NULL;

			if (cases[i].orcpt) {
				o = malloc(cases[i].orcpt + 1);
				memset(o, 'o', cases[i].orcpt);
				o[cases[i].orcpt] = '\0';
			}
			mg_envelope_add_rcpt(&env, s, o, 0);
		}
		e = write_drop(&env, (const unsigned char *)"body\n", 5, 0,
		    path, sizeof(path));
		if (e == MG_OK)
			r = read_drop(path, 100, &got, NULL, NULL, &stage);
		if (!ok(e != MG_OK || r == MG_OK, "writer/reader agree: %s "
		    "(commit: %s, read: %s)", cases[i].what, mg_strerror(e),
		    e == MG_OK ? mg_strerror(r) : "not tried"))
			diag("  maildrop_commit returned MG_OK for a file that "
			    "maildrop_open refuses");
		if (e == MG_OK && r == MG_OK)
			mg_envelope_free(&got);
		is_int(count_dir("tmp"), 0, "writer/reader agree: %s: tmp/ "
		    "empty", cases[i].what);
		mg_envelope_free(&env);
		empty_dir("maildrop");
	}
}

static void
rmspool(void)
{
	char p[256];

	empty_dir("tmp");
	empty_dir("maildrop");
	snprintf(p, sizeof(p), "%s/tmp", spool);
	rmdir(p);
	snprintf(p, sizeof(p), "%s/maildrop", spool);
	rmdir(p);
	rmdir(spool);
}

int
main(void)
{
	char p[256];

	mg_log_init("t_record", MG_LOG_STDERR);
	test_buf_encoding();
	test_buf_limit();
	test_field_codec();
	test_getline();
	test_read_full();
	test_stream_fields();

	strcpy(spool, "/tmp/t_record.XXXXXX");
	if (!ok(mkdtemp(spool) != NULL, "temp spool"))
		return done();
	snprintf(p, sizeof(p), "%s/tmp", spool);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/maildrop", spool);
	mkdir(p, 0700);
	test_maildrop_round_trip();
	test_maildrop_damage();
	test_maildrop_abort();
	test_maildrop_writer_reader_agree();
	rmspool();
	return done();
}
