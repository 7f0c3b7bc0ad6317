/*
 * t_header.c - unit tests for header.c (line classification, field
 * names and values) and envelope.c's RFC 3461 NOTIFY syntax.
 *
 * Tables: each header line with the field-open flag and the class it
 * must get; field spans with the names they match; NOTIFY strings with
 * the bits (or -1) they must parse to and the text they format back to.
 */
#include <stdio.h>
#include <string.h>

#include "mgate/envelope.h"
#include "mgate/header.h"
#include "tap.h"

#define T(s)	s, sizeof(s) - 1

static const char *const cls_name[] = { "FIELD", "CONT", "END", "BODY" };

static const struct {
	const char	*what;
	const char	*line;
	size_t		 len;
	int		 in_field;
	enum mg_hline	 want;
} classify_cases[] = {
	{ "simple field", T("Subject: hi\n"), 0, MG_HLINE_FIELD },
	{ "simple field while a field is open", T("Subject: hi\n"), 1,
	  MG_HLINE_FIELD },
	{ "field CRLF", T("To: a@b\r\n"), 0, MG_HLINE_FIELD },
	{ "field without line ending", T("To: a@b"), 0, MG_HLINE_FIELD },
	{ "field with empty value", T("X-Empty:\n"), 0, MG_HLINE_FIELD },
	{ "field without space after colon", T("X:y\n"), 0, MG_HLINE_FIELD },
	{ "one-char name", T("X: y\n"), 0, MG_HLINE_FIELD },
	{ "name with every printable but colon",
	  T("!\"#$%&'()*+,-./09;<=>?@AZ[\\]^_`az{|}~: v\n"), 0,
	  MG_HLINE_FIELD },
	{ "colon inside value", T("Date: Mon, 1 Jan 2024 10:00:00\n"), 0,
	  MG_HLINE_FIELD },
	{ "8-bit in value is fine", T("Subject: caf\xc3\xa9\n"), 0,
	  MG_HLINE_FIELD },
	{ "space continuation", T(" more\n"), 1, MG_HLINE_CONT },
	{ "tab continuation", T("\tmore\n"), 1, MG_HLINE_CONT },
	{ "tab continuation CRLF", T("\tmore\r\n"), 1, MG_HLINE_CONT },
	{ "whitespace-only continuation", T(" \n"), 1, MG_HLINE_CONT },
	{ "space line without open field", T(" more\n"), 0, MG_HLINE_BODY },
	{ "tab line without open field", T("\tmore\n"), 0, MG_HLINE_BODY },
	{ "blank LF", T("\n"), 0, MG_HLINE_END },
	{ "blank LF, field open", T("\n"), 1, MG_HLINE_END },
	{ "blank CRLF", T("\r\n"), 0, MG_HLINE_END },
	{ "blank CRLF, field open", T("\r\n"), 1, MG_HLINE_END },
	{ "empty (EOF)", "", 0, 0, MG_HLINE_END },
	{ "empty (EOF), field open", "", 0, 1, MG_HLINE_END },
	{ "bare CR is not blank", T("\r"), 0, MG_HLINE_BODY },
	{ "CR CR LF is not blank", T("\r\r\n"), 0, MG_HLINE_BODY },
	{ "mbox From line", T("From alice@example.org Mon Jan  1 00:00:00 "
	  "2024\n"), 0, MG_HLINE_BODY },
	{ "mbox From line, field open", T("From alice@example.org Mon Jan  1 "
	  "00:00:00 2024\n"), 1, MG_HLINE_BODY },
	{ ">From line", T(">From x\n"), 0, MG_HLINE_BODY },
	{ "From: is a field", T("From: a@b\n"), 0, MG_HLINE_FIELD },
	{ "leading colon", T(": value\n"), 0, MG_HLINE_BODY },
	{ "leading colon, field open", T(":x\n"), 1, MG_HLINE_BODY },
	/* RFC 5322 4.5: obs-optional allows WSP between name and colon. */
	{ "space before colon (obsolete form)", T("Subject : x\n"), 0,
	  MG_HLINE_FIELD },
	{ "tab before colon (obsolete form)", T("Bcc\t: x\n"), 0,
	  MG_HLINE_FIELD },
	{ "two words before colon", T("Sub ject: x\n"), 0, MG_HLINE_BODY },
	{ "8-bit in name", T("Sub\xe9ject: x\n"), 0, MG_HLINE_BODY },
	{ "0xff in name", T("\xff: x\n"), 0, MG_HLINE_BODY },
	{ "NUL in name", T("Sub\0ject: x\n"), 0, MG_HLINE_BODY },
	{ "control char in name", T("Sub\x01ject: x\n"), 0, MG_HLINE_BODY },
	{ "DEL in name", T("Sub\x7fject: x\n"), 0, MG_HLINE_BODY },
	{ "no colon at all", T("Hello world\n"), 0, MG_HLINE_BODY },
	{ "name without colon", T("Subject\n"), 0, MG_HLINE_BODY },
	{ "name without colon or ending", T("Subject"), 0, MG_HLINE_BODY },
	{ "body text, field open", T("plain text\n"), 1, MG_HLINE_BODY },
	{ "MIME boundary", T("--boundary\n"), 0, MG_HLINE_BODY },
	/* The length is authoritative: a colon past len does not count. */
	{ "colon beyond len", "Subject: x\n", 7, 0, MG_HLINE_BODY },
	{ "len 0 is the end, whatever follows", "\n\n", 0, 1, MG_HLINE_END },
};

static void
test_classify(void)
{
	for (size_t i = 0; i < sizeof(classify_cases) /
	    sizeof(classify_cases[0]); i++) {
		enum mg_hline got = mg_header_classify(classify_cases[i].line,
		    classify_cases[i].len, classify_cases[i].in_field, NULL, NULL);

		if (!ok(got == classify_cases[i].want, "classify: %s",
		    classify_cases[i].what))
			diag("  got %s, expected %s", (unsigned)got < 4 ?
			    cls_name[got] : "?", cls_name[classify_cases[i].want]);
	}
}

/*
 * A header section split the way a caller does: classify each line,
 * open a field at FIELD, extend it at CONT, stop at END or BODY.
 */
static size_t
split(const char *buf, size_t len, struct mg_hfield *f, size_t max,
    size_t *end)
{
	size_t	off = 0, n = 0, ll, nl_ = 0, co = 0;
	int	open = 0;

	while (off < len) {
		const char *nl = memchr(buf + off, '\n', len - off);

		ll = nl ? (size_t)(nl - (buf + off)) + 1 : len - off;
		switch (mg_header_classify(buf + off, ll, open, &nl_, &co)) {
		case MG_HLINE_FIELD:
			if (n == max)
				return n;
			f[n].off = off;
			f[n].len = ll;
			f[n].name_len = nl_;
			f[n].colon = co;
			n++;
			open = 1;
			break;
		case MG_HLINE_CONT:
			f[n - 1].len += ll;
			break;
		case MG_HLINE_END:
			*end = off + ll;
			return n;
		case MG_HLINE_BODY:
			*end = off;
			return n;
		}
		off += ll;
	}
	*end = off;
	return n;
}

static const char *
cs(const char *s)
{
	return s;
}

static void
test_fields(void)
{
	static const char msg[] =
	    "From: Alice <a@example.org>\r\n"
	    "subject: Hello\r\n"
	    "\tworld\r\n"
	    "X-Empty:\n"
	    "TO:b@example.net,\n"
	    " c@example.net\n"
	    "Content-Type: text/plain\n"
	    "\n"
	    "body: not a field\n";
	struct mg_hfield	f[10];
	size_t			n, end, vlen;
	const char		*v;
	char			val[128];

	n = split(msg, sizeof(msg) - 1, f, 10, &end);
	is_int(n, 5, "split: five fields");
	is_int(end, strstr(msg, "body:") - msg, "split: header ends before "
	    "the body");
	if (n != 5)
		return;

	static const struct {
		size_t		 i;
		const char	*name;
		int		 want;
	} is_cases[] = {
		{ 0, "From", 1 }, { 0, "from", 1 }, { 0, "FROM", 1 },
		{ 0, "Fro", 0 }, { 0, "From:", 0 }, { 0, "Froma", 0 },
		{ 0, "", 0 }, { 0, "To", 0 },
		{ 1, "Subject", 1 }, { 1, "SUBJECT", 1 }, { 1, "sUbJeCt", 1 },
		{ 1, "Subjec", 0 },
		{ 2, "x-empty", 1 }, { 2, "X-EMPTY", 1 }, { 2, "X_Empty", 0 },
		{ 3, "To", 1 }, { 3, "to", 1 }, { 3, "T", 0 }, { 3, "Tox", 0 },
		{ 4, "content-type", 1 }, { 4, "Content-Type ", 0 },
	};
	for (size_t i = 0; i < sizeof(is_cases) / sizeof(is_cases[0]); i++)
		is_int(mg_hfield_is(msg, &f[is_cases[i].i], is_cases[i].name),
		    is_cases[i].want, "mg_hfield_is(field %zu, \"%s\")",
		    is_cases[i].i, is_cases[i].name);

	static const struct {
		size_t		 i;
		const char	*value;
	} val_cases[] = {
		{ 0, " Alice <a@example.org>\r\n" },
		{ 1, " Hello\r\n\tworld\r\n" },
		{ 2, "\n" },
		{ 3, "b@example.net,\n c@example.net\n" },
		{ 4, " text/plain\n" },
	};
	for (size_t i = 0; i < sizeof(val_cases) / sizeof(val_cases[0]);
	    i++) {
		v = mg_hfield_value(msg, &f[val_cases[i].i], &vlen);
		if (vlen >= sizeof(val))
			vlen = sizeof(val) - 1;
		memcpy(val, v, vlen);
		val[vlen] = '\0';
		is_str(cs(val), val_cases[i].value,
		    "mg_hfield_value(field %zu) is raw, folding kept",
		    val_cases[i].i);
	}
	/* The value pointer is right after the colon, inside buf. */
	v = mg_hfield_value(msg, &f[3], &vlen);
	ok(v == msg + f[3].off + 3, "mg_hfield_value points after 'TO:'");

	/* A field at the very end of the buffer with no line ending. */
	{
		static const char m2[] = "A: b";
		struct mg_hfield g[2];

		n = split(m2, sizeof(m2) - 1, g, 2, &end);
		is_int(n, 1, "split: last field without line ending");
		v = mg_hfield_value(m2, &g[0], &vlen);
		ok(vlen == 2 && memcmp(v, " b", 2) == 0,
		    "mg_hfield_value: value without line ending");
		ok(mg_hfield_is(m2, &g[0], "a"), "mg_hfield_is: one letter");
	}
	/* The obsolete form: white space between name and colon. */
	{
		static const char m3[] = "Bcc \t: x@y\n";
		struct mg_hfield g[2];

		n = split(m3, sizeof(m3) - 1, g, 2, &end);
		is_int(n, 1, "split: obsolete 'Bcc :' is a field");
		ok(mg_hfield_is(m3, &g[0], "Bcc"), "mg_hfield_is: 'Bcc :' is Bcc");
		v = mg_hfield_value(m3, &g[0], &vlen);
		ok(vlen == 5 && memcmp(v, " x@y\n", 5) == 0,
		    "mg_hfield_value: after the colon of 'Bcc :'");
	}
}

static const struct {
	const char	*in;
	int		 want;		/* bits, or -1 */
	const char	*fmt;		/* mg_notify_str(want) */
} notify_cases[] = {
	{ "never", MG_NOTIFY_NEVER, "NEVER" },
	{ "NEVER", MG_NOTIFY_NEVER, "NEVER" },
	{ "Never", MG_NOTIFY_NEVER, "NEVER" },
	{ "success", MG_NOTIFY_SUCCESS, "SUCCESS" },
	{ "failure", MG_NOTIFY_FAILURE, "FAILURE" },
	{ "delay", MG_NOTIFY_DELAY, "DELAY" },
	{ "success,failure,delay",
	  MG_NOTIFY_SUCCESS | MG_NOTIFY_FAILURE | MG_NOTIFY_DELAY,
	  "SUCCESS,FAILURE,DELAY" },
	{ "delay,failure,success",
	  MG_NOTIFY_SUCCESS | MG_NOTIFY_FAILURE | MG_NOTIFY_DELAY,
	  "SUCCESS,FAILURE,DELAY" },
	{ "SUCCESS,Delay", MG_NOTIFY_SUCCESS | MG_NOTIFY_DELAY,
	  "SUCCESS,DELAY" },
	{ "FaIlUrE", MG_NOTIFY_FAILURE, "FAILURE" },
	{ "failure,failure", MG_NOTIFY_FAILURE, "FAILURE" },
	{ "never,never", MG_NOTIFY_NEVER, "NEVER" },
	{ "NEVER,SUCCESS", -1, NULL },
	{ "success,never", -1, NULL },
	{ "never,delay", -1, NULL },
	{ "failure,never,delay", -1, NULL },
	{ "", -1, NULL },
	{ ",", -1, NULL },
	{ "success,", -1, NULL },
	{ ",success", -1, NULL },
	{ "success,,failure", -1, NULL },
	{ " success", -1, NULL },
	{ "success ", -1, NULL },
	{ "success, failure", -1, NULL },
	{ "successes", -1, NULL },
	{ "succes", -1, NULL },
	{ "nev", -1, NULL },
	{ "neverx", -1, NULL },
	{ "none", -1, NULL },
	{ "success;failure", -1, NULL },
};

static void
test_notify(void)
{
	for (size_t i = 0; i < sizeof(notify_cases) / sizeof(notify_cases[0]);
	    i++) {
		int got = mg_notify_parse(notify_cases[i].in);

		is_int(got, notify_cases[i].want, "mg_notify_parse(\"%s\")",
		    notify_cases[i].in);
		if (notify_cases[i].fmt != NULL && got > 0)
			is_str(mg_notify_str((unsigned)got),
			    notify_cases[i].fmt, "mg_notify_str(parse(\"%s\"))",
			    notify_cases[i].in);
	}
	is_str(mg_notify_str(0), "", "mg_notify_str(0) is empty");
	is_str(mg_notify_str(0xf), "NEVER,SUCCESS,FAILURE,DELAY",
	    "mg_notify_str(all bits) fits");
	is_str(mg_notify_str(0xf0 | MG_NOTIFY_DELAY), "DELAY",
	    "mg_notify_str ignores unknown bits");
	/* Every valid combination formats and parses back to itself. */
	{
		int bad = 0;

		for (unsigned b = 1; b < 16; b++) {
			if ((b & MG_NOTIFY_NEVER) && b != MG_NOTIFY_NEVER)
				continue;
			if (mg_notify_parse(mg_notify_str(b)) != (int)b) {
				bad++;
				diag("  bits %#x -> '%s'", b, mg_notify_str(b));
			}
		}
		is_int(bad, 0, "NOTIFY format/parse round trip, all "
		    "combinations");
	}
}

int
main(void)
{
	test_classify();
	test_fields();
	test_notify();
	return done();
}
