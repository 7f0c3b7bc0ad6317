/*
 * t_qid.c - unit tests for qid.c: queue ID shape, uniqueness, order and
 * validation.
 *
 * Queue IDs name files, so mg_qid_valid() is a security check: the
 * table of invalid strings holds everything that must never reach a
 * path (separators, dot-dot, lower case, wrong length, 8-bit bytes).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgate/qid.h"
#include "tap.h"

#define ALPHA	"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#define NIDS	100000

static const char *
cs(const char *s)
{
	return s;
}

static int
in_alphabet(const char *s)
{
	for (; *s; s++)
		if (strchr(ALPHA, *s) == NULL)
			return 0;
	return 1;
}

static int
cmp_id(const void *a, const void *b)
{
	return memcmp(a, b, MG_QID_LEN + 1);
}

static void
test_format_and_uniqueness(void)
{
	char	(*ids)[MG_QID_LEN + 1];
	size_t	 bad_len = 0, bad_alpha = 0, invalid = 0, dups = 0;
	size_t	 unsorted = 0;

	ids = calloc(NIDS, sizeof(*ids));
	for (size_t i = 0; i < NIDS; i++) {
		memset(ids[i], '!', sizeof(ids[i]));
		mg_qid_new(ids[i]);
		if (strlen(ids[i]) != MG_QID_LEN)
			bad_len++;
		if (!in_alphabet(ids[i]))
			bad_alpha++;
		if (!mg_qid_valid(ids[i]))
			invalid++;
		/* IDs from one clock never go backwards (time prefix). */
		if (i > 0 && memcmp(ids[i - 1], ids[i], 11) > 0)
			unsorted++;
	}
	is_int(bad_len, 0, "mg_qid_new: %d IDs are all 16 chars", NIDS);
	is_int(bad_alpha, 0, "mg_qid_new: all in Crockford base32");
	is_int(invalid, 0, "mg_qid_new: all pass mg_qid_valid");
	is_int(unsorted, 0, "mg_qid_new: time prefix never decreases");
	qsort(ids, NIDS, sizeof(*ids), cmp_id);
	for (size_t i = 1; i < NIDS; i++)
		if (memcmp(ids[i - 1], ids[i], MG_QID_LEN) == 0)
			dups++;
	is_int(dups, 0, "mg_qid_new: %d IDs are unique", NIDS);
	free(ids);
}

static const struct {
	uint64_t	 usec;
	uint32_t	 rnd;
	const char	*want;
} make_cases[] = {
	{ 0, 0, "0000000000000000" },
	{ 1, 1, "0000000000100001" },
	{ 31, 31, "0000000000Z0000Z" },
	{ (1ULL << 55) - 1, 0x1ffffff, "ZZZZZZZZZZZZZZZZ" },
	{ 32, 32, "0000000001000010" },
};

static void
test_make(void)
{
	char	 id[MG_QID_LEN + 1];

	for (size_t i = 0; i < sizeof(make_cases) / sizeof(make_cases[0]);
	    i++) {
		mg_qid_make(id, make_cases[i].usec, make_cases[i].rnd);
		is_str(cs(id), make_cases[i].want, "mg_qid_make(%llu, %u)",
		    (unsigned long long)make_cases[i].usec,
		    (unsigned)make_cases[i].rnd);
	}
	/* Only the low 25 random bits are used. */
	mg_qid_make(id, 5, 0xfe000000u);
	is_str(cs(id), "0000000000500000", "mg_qid_make: rnd bits above 25 "
	    "ignored");
}

static void
test_order_and_usec(void)
{
	static const uint64_t usecs[] = {
		0, 1, 2, 31, 32, 33, 1023, 1024, 999999, 1000000,
		1700000000000000ULL, 1700000000000001ULL,
		1700000000123456ULL, 1800000000000000ULL,
		4102444800000000ULL,		/* 2100-01-01 */
		(1ULL << 55) - 2, (1ULL << 55) - 1,
	};
	char	 prev[MG_QID_LEN + 1], id[MG_QID_LEN + 1];
	size_t	 n = sizeof(usecs) / sizeof(usecs[0]);
	size_t	 misorder = 0, wrong_usec = 0;
	uint64_t got;

	prev[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		/* Random part deliberately decreasing: time must dominate. */
		mg_qid_make(id, usecs[i], (uint32_t)(0x1ffffff - i * 1000));
		if (i > 0 && strcmp(prev, id) >= 0) {
			misorder++;
			diag("  %s !< %s", prev, id);
		}
		if ((got = mg_qid_usec(id)) != usecs[i]) {
			wrong_usec++;
			diag("  usec %llu -> %s -> %llu",
			    (unsigned long long)usecs[i], id,
			    (unsigned long long)got);
		}
		strcpy(prev, id);
	}
	is_int(misorder, 0, "IDs with increasing usec sort increasing");
	is_int(wrong_usec, 0, "mg_qid_usec inverts mg_qid_make");

	/* Many random times: order and round trip. */
	misorder = wrong_usec = 0;
	srandom(12345);
	uint64_t t = 1600000000000000ULL;
	prev[0] = '\0';
	for (int i = 0; i < 10000; i++) {
		t += 1 + (uint64_t)(random() % 5000000);
		mg_qid_make(id, t, (uint32_t)random());
		if (i > 0 && strcmp(prev, id) >= 0)
			misorder++;
		if (mg_qid_usec(id) != t)
			wrong_usec++;
		strcpy(prev, id);
	}
	is_int(misorder, 0, "10000 increasing random times sort");
	is_int(wrong_usec, 0, "10000 random times round trip");

	/* mg_qid_new's time is now, give or take. */
	mg_qid_new(id);
	got = mg_qid_usec(id);
	ok(got > 1700000000000000ULL && got < 4102444800000000ULL,
	    "mg_qid_new encodes the current time (%llu)",
	    (unsigned long long)got);
}

static const struct {
	const char	*s;
	int		 valid;
	const char	*what;
} valid_cases[] = {
	{ "0000000000000000", 1, "all zeros" },
	{ "ZZZZZZZZZZZZZZZZ", 1, "all Z" },
	{ "0123456789ABCDEF", 1, "digits and letters" },
	{ "GHJKMNPQRSTVWXYZ", 1, "upper letters" },
	{ "", 0, "empty" },
	{ "000000000000000", 0, "15 chars" },
	{ "00000000000000000", 0, "17 chars" },
	{ "0123456789abcdef", 0, "lower case" },
	{ "000000000000000a", 0, "one lower case" },
	{ "000000000000000I", 0, "I not in Crockford" },
	{ "000000000000000L", 0, "L not in Crockford" },
	{ "000000000000000O", 0, "O not in Crockford" },
	{ "000000000000000U", 0, "U not in Crockford" },
	{ "00000000/0000000", 0, "slash" },
	{ "../0000000000000", 0, "dot dot slash" },
	{ "..", 0, "dot dot" },
	{ "0000000000000..0", 0, "dots inside" },
	{ ".000000000000000", 0, "leading dot" },
	{ "0000000 00000000", 0, "space" },
	{ "000000000000000\n", 0, "newline" },
	{ "00000000000000\xc3\x89", 0, "UTF-8" },
	{ "000000000000000\xff", 0, "0xff" },
	{ "0000000000000000/", 0, "trailing slash" },
	{ "-000000000000000", 0, "leading dash" },
	{ "000000000000000*", 0, "glob" },
};

static void
test_valid(void)
{
	for (size_t i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]);
	    i++)
		is_int(mg_qid_valid(valid_cases[i].s), valid_cases[i].valid,
		    "mg_qid_valid: %s", valid_cases[i].what);
}

int
main(void)
{
	test_format_and_uniqueness();
	test_make();
	test_order_and_usec();
	test_valid();
	return done();
}
