/*
 * t_addr.c - unit tests for addr.c: RFC 5322 address lists, single
 * command-line/envelope addresses and RFC 5321 mailbox validation.
 *
 * Each table row is one input and what must come out of it: the
 * addr-specs joined by '|' on success, or the error code and a piece of
 * the errbuf message on failure.  Lists must be left unchanged when
 * parsing fails, so every list case also checks the count on error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgate/addr.h"
#include "tap.h"

#define A10	"aaaaaaaaaa"
#define L64	A10 A10 A10 A10 A10 A10 "aaaa"		/* 64-byte local part */
#define L65	L64 "a"
#define D63	A10 A10 A10 A10 A10 A10 "ddd"		/* 63-byte label */
/* L64 "@" D63 "." D63 "." D63 "." = 64+1+64*3 = 257: trim to size below. */
#define D61	A10 A10 A10 A10 A10 A10 "d"
/* 64 + 1 + 63 + 1 + 63 + 1 + 61 = 254 */
#define ADDR254	L64 "@" D63 "." D63 "." D61
#define ADDR255	L64 "@" D63 "." D63 "." D61 "x"

struct list_case {
	const char	*name;
	const char	*in;
	size_t		 len;	/* 0: strlen(in) */
	const char	*domain;
	size_t		 max;	/* 0: 100 */
	enum mg_err	 want;
	const char	*out;	/* addresses joined by '|', or errbuf part */
};

#define ORG	"example.org"

static const struct list_case list_cases[] = {
	/* Plain forms. */
	{ "addr-spec", "a@b.example", 0, ORG, 0, MG_OK, "a@b.example" },
	{ "name-addr", "John Doe <jdoe@example.com>", 0, ORG, 0, MG_OK,
	  "jdoe@example.com" },
	{ "angle-addr without name", "<jdoe@example.com>", 0, ORG, 0, MG_OK,
	  "jdoe@example.com" },
	{ "quoted display name with comma",
	  "\"Doe, John\" <jdoe@example.com>, m@x.org", 0, ORG, 0, MG_OK,
	  "jdoe@example.com|m@x.org" },
	{ "encoded word left alone",
	  "=?UTF-8?B?SsO2cmc=?= <j@example.com>", 0, ORG, 0, MG_OK,
	  "j@example.com" },
	{ "obs-phrase with dot", "J. Smith <js@example.com>", 0, ORG, 0,
	  MG_OK, "js@example.com" },
	{ "RFC 5322 A.1.2",
	  "Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>",
	  0, ORG, 0, MG_OK, "mary@x.test|jdoe@example.org|one@y.test" },
	{ "RFC 5322 A.1.2 quoted specials",
	  "<boss@nil.test>, \"Giant; \\\"Big\\\" Box\" <sysservices@"
	  "example.net>", 0, ORG, 0, MG_OK,
	  "boss@nil.test|sysservices@example.net" },
	{ "8-bit display name left alone", "J\xf6rg <j@example.com>", 0,
	  ORG, 0, MG_OK, "j@example.com" },

	/* Groups. */
	{ "empty group", "Undisclosed:;", 0, ORG, 0, MG_OK, "" },
	{ "empty group with spaces", "undisclosed-recipients: ;", 0, ORG, 0,
	  MG_OK, "" },
	{ "group members", "team: a@x.example, b@y.example;", 0, ORG, 0,
	  MG_OK, "a@x.example|b@y.example" },
	{ "group then mailbox", "team: a@x, b@y;, c@z", 0, ORG, 0, MG_OK,
	  "a@x|b@y|c@z" },
	{ "RFC 5322 A.1.3",
	  "A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;",
	  0, ORG, 0, MG_OK, "c@a.test|joe@where.test|jdoe@one.test" },
	{ "group with empty members", "g: , a@b, ,;", 0, ORG, 0, MG_OK,
	  "a@b" },
	{ "group member qualified", "g: root;", 0, ORG, 0, MG_OK,
	  "root@example.org" },

	/* Comments. */
	{ "comments inside addr-spec", "a(comment)@(c)b.example", 0, ORG, 0,
	  MG_OK, "a@b.example" },
	{ "leading and trailing comments", "(lead) a@b (trail)", 0, ORG, 0,
	  MG_OK, "a@b" },
	{ "nested comments", "(a (b) c) x@y", 0, ORG, 0, MG_OK, "x@y" },
	{ "RFC 5322 A.5 comments",
	  "Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
	  0, ORG, 0, MG_OK, "pete@silly.test" },
	{ "comment between elements", "<a@b> (x) , (y) <c@d>", 0, ORG, 0,
	  MG_OK, "a@b|c@d" },
	{ "comment-only value", "  (nobody) ", 0, ORG, 0, MG_OK, "" },

	/* Quoted local parts and obs-local-part. */
	{ "quoted local part kept", "\"john doe\"@example.com", 0, ORG, 0,
	  MG_OK, "\"john doe\"@example.com" },
	{ "needless quotes removed", "\"john\"@example.com", 0, ORG, 0,
	  MG_OK, "john@example.com" },
	{ "quoted-pair of a letter", "\"jo\\hn\"@example.com", 0, ORG, 0,
	  MG_OK, "john@example.com" },
	{ "escaped quote re-escaped", "\"a\\\"b\"@x", 0, ORG, 0, MG_OK,
	  "\"a\\\"b\"@x" },
	{ "quoted dots need quotes", "\"a..b\"@x", 0, ORG, 0, MG_OK,
	  "\"a..b\"@x" },
	{ "obs-local-part with spaces", "john . doe @ example . com", 0,
	  ORG, 0, MG_OK, "john.doe@example.com" },
	{ "obs-local-part mixed words", "john.\"doe\"@x", 0, ORG, 0, MG_OK,
	  "john.doe@x" },
	{ "obs-local-part requoted", "\"john doe\".x@y", 0, ORG, 0, MG_OK,
	  "\"john doe.x\"@y" },
	{ "empty quoted local part", "\"\"@x", 0, ORG, 0, MG_OK,
	  "\"\"@x" },

	/* Routes, literals, qualification. */
	{ "obs-route dropped", "<@route1,@route2:user@host>", 0, ORG, 0,
	  MG_OK, "user@host" },
	{ "obs-route with empty entries", "Joe <,@a.example,,@b:j@c>", 0,
	  ORG, 0, MG_OK, "j@c" },
	{ "domain literal", "user@[192.0.2.1]", 0, ORG, 0, MG_OK,
	  "user@[192.0.2.1]" },
	{ "domain literal with spaces", "user@[ 192.0.2.1 ]", 0, ORG, 0,
	  MG_OK, "user@[192.0.2.1]" },
	{ "IPv6 literal", "<user@[IPv6:2001:db8::1]>", 0, ORG, 0, MG_OK,
	  "user@[IPv6:2001:db8::1]" },
	{ "bare local part qualified", "root", 0, ORG, 0, MG_OK,
	  "root@example.org" },
	{ "angle local part qualified", "Admin <root>", 0, ORG, 0, MG_OK,
	  "root@example.org" },
	{ "quoted local part qualified", "\"a b\"", 0, ORG, 0, MG_OK,
	  "\"a b\"@example.org" },
	{ "bare local part, no domain", "root", 0, NULL, 0, MG_EDATA,
	  "no domain" },

	/* Folding and empty elements. */
	{ "CRLF folding", "a@b,\r\n c@d", 0, ORG, 0, MG_OK, "a@b|c@d" },
	{ "LF folding with tab", "a@b,\n\tc@d", 0, ORG, 0, MG_OK,
	  "a@b|c@d" },
	{ "mixed folding", "A <a@b>,\r\n\tB\n <c@d>,\r\n  e@f", 0, ORG, 0,
	  MG_OK, "a@b|c@d|e@f" },
	{ "whitespace-only folded line", "a@b,\r\n \r\n c@d", 0, ORG, 0,
	  MG_OK, "a@b|c@d" },
	{ "folding inside quoted local part", "\"john\r\n doe\"@x", 0, ORG,
	  0, MG_OK, "\"john doe\"@x" },
	{ "folding inside comment", "a@b (one\r\n two)", 0, ORG, 0, MG_OK,
	  "a@b" },
	{ "trailing CRLF", "a@b\r\n", 0, ORG, 0, MG_OK, "a@b" },
	{ "empty list elements", "a@b, , c@d", 0, ORG, 0, MG_OK,
	  "a@b|c@d" },
	{ "leading and trailing commas", ", a@b,,", 0, ORG, 0, MG_OK,
	  "a@b" },
	{ "empty value", "", 0, ORG, 0, MG_OK, "" },

	/* Dedup. */
	{ "exact duplicate", "a@b, a@b", 0, ORG, 0, MG_OK, "a@b" },
	{ "domain case ignored", "a@EXAMPLE.com, a@example.COM", 0, ORG, 0,
	  MG_OK, "a@EXAMPLE.com" },
	{ "local case kept", "A@x, a@x", 0, ORG, 0, MG_OK, "A@x|a@x" },
	{ "quoted and unquoted same", "\"john\"@x, john@x", 0, ORG, 0,
	  MG_OK, "john@x" },
	{ "duplicate in group", "a@b, g: a@B;", 0, ORG, 0, MG_OK, "a@b" },

	/* UTF-8 (RFC 6532). */
	{ "UTF-8 local and domain",
	  "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf"
	  "\xe5\x91\x8a", 0, ORG, 0, MG_OK,
	  "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf"
	  "\xe5\x91\x8a" },
	{ "UTF-8 with display name", "Jos\xc3\xa9 <jos\xc3\xa9@ex\xc3\xa4"
	  "mple.org>", 0, ORG, 0, MG_OK,
	  "jos\xc3\xa9@ex\xc3\xa4mple.org" },
	{ "Latin-1 byte in local part", "a\xe9@x", 0, ORG, 0, MG_EDATA,
	  "not UTF-8" },
	{ "0xff in domain", "a@x\xff", 0, ORG, 0, MG_EDATA, "not UTF-8" },
	{ "overlong UTF-8", "\xc0\xaf@x", 0, ORG, 0, MG_EDATA,
	  "not UTF-8" },
	{ "UTF-16 surrogate", "\xed\xa0\x80@x", 0, ORG, 0, MG_EDATA,
	  "not UTF-8" },

	/* Malformed input. */
	{ "unterminated comment", "foo (bar", 0, ORG, 0, MG_EDATA,
	  "unterminated comment in \"foo (bar\"" },
	{ "unterminated nested comment", "a@b (x (y)", 0, ORG, 0, MG_EDATA,
	  "unterminated comment" },
	{ "unterminated quote", "\"foo@bar", 0, ORG, 0, MG_EDATA,
	  "unterminated quoted string" },
	{ "unterminated angle", "Name <a@b", 0, ORG, 0, MG_EDATA,
	  "unterminated angle bracket" },
	{ "unterminated angle, no addr", "Name <", 0, ORG, 0, MG_EDATA,
	  "unterminated angle bracket" },
	{ "unterminated literal", "a@[1.2.3.4", 0, ORG, 0, MG_EDATA,
	  "unterminated domain literal" },
	{ "unterminated group", "team: a@b", 0, ORG, 0, MG_EDATA,
	  "unterminated group" },
	{ "missing domain", "a@", 0, ORG, 0, MG_EDATA,
	  "missing domain after '@'" },
	{ "missing domain before comma", "a@, b@c", 0, ORG, 0, MG_EDATA,
	  "missing domain" },
	{ "trailing dot in domain", "a@b.", 0, ORG, 0, MG_EDATA,
	  "malformed domain" },
	{ "double dot in domain", "a@b..c", 0, ORG, 0, MG_EDATA,
	  "malformed domain" },
	{ "double dot in local part", "a..b@c", 0, ORG, 0, MG_EDATA,
	  "malformed local part" },
	{ "leading dot in local part", ".a@c", 0, ORG, 0, MG_EDATA, "" },
	{ "missing local part", "@example.com", 0, ORG, 0, MG_EDATA, "" },
	{ "control char in atom", "a\x01" "b@c", 0, ORG, 0, MG_EDATA,
	  "control character" },
	{ "control char in quoted local", "\"a\x01" "b\"@c", 0, ORG, 0,
	  MG_EDATA, "control character in address" },
	{ "tab in quoted local", "\"a\tb\"@c", 0, ORG, 0, MG_EDATA,
	  "control character in address" },
	{ "NUL byte", "a\0b@c", 5, ORG, 0, MG_EDATA, "NUL byte" },
	{ "NUL in comment", "a@c (x\0y)", 9, ORG, 0, MG_EDATA, "NUL byte" },
	{ "bare CRLF (header injection)", "a@b\r\nBcc: c@d", 0, ORG, 0,
	  MG_EDATA, "bare CR or LF" },
	{ "bare CR", "a@b\rc", 0, ORG, 0, MG_EDATA, "bare CR or LF" },
	{ "escaped CR in quotes", "\"a\\\r\"@b", 0, ORG, 0, MG_EDATA,
	  "bare CR or LF" },
	{ "nested group", "g1: g2: a@b;;", 0, ORG, 0, MG_EDATA,
	  "nested group" },
	{ "group without a name", ":;", 0, ORG, 0, MG_EDATA,
	  "group without a name" },
	{ "unquoted space in local part", "john doe@example.com", 0, ORG, 0,
	  MG_EDATA, "malformed local part" },
	{ "phrase without address", "Undisclosed recipients", 0, ORG, 0,
	  MG_EDATA, "display name without an address" },
	{ "empty angle brackets", "<>", 0, ORG, 0, MG_EDATA,
	  "empty address <>" },
	{ "missing comma", "a@b c@d", 0, ORG, 0, MG_EDATA,
	  "after an address" },
	{ "stray semicolon", "a@b; c@d", 0, ORG, 0, MG_EDATA,
	  "unexpected ';'" },
	{ "unbalanced paren", "a@b)", 0, ORG, 0, MG_EDATA,
	  "unbalanced ')'" },
	{ "backslash outside quotes", "\\a@b", 0, ORG, 0, MG_EDATA,
	  "backslash" },
	{ "empty domain literal", "a@[]", 0, ORG, 0, MG_EDATA,
	  "empty domain literal" },
	{ "8-bit in domain literal", "a@[1.2.3.\xc3\xa9]", 0, ORG, 0,
	  MG_EDATA, "invalid character in domain literal" },
	{ "malformed route", "<@:a@b>", 0, ORG, 0, MG_EDATA,
	  "missing domain" },
	{ "route without colon", "<@a.example a@b>", 0, ORG, 0, MG_EDATA,
	  "malformed route" },
	{ "bare CR/LF in comment", "a@b, (c\r\nd)", 0, ORG, 0, MG_EDATA,
	  "bare CR or LF" },
	{ "excerpt names the element", "a@b, c@d, foo (bar", 0, ORG, 0,
	  MG_EDATA, "in \"foo (bar\"" },
	{ "excerpt hides control chars", "\"x\x01y", 0, ORG, 0, MG_EDATA,
	  "in \"\"x?y\"" },
	{ "excerpt truncated",
	  "(" A10 A10 A10 A10 A10 A10 A10 A10, 0, ORG, 0, MG_EDATA,
	  "\"(" A10 A10 A10 A10 A10 "aaaaaaaaa...\"" },

	/* Limits. */
	{ "64-byte local part", L64 "@x", 0, ORG, 0, MG_OK, L64 "@x" },
	{ "65-byte local part", L65 "@x", 0, ORG, 0, MG_ELIMIT,
	  "local part longer than 64" },
	{ "quoting pushes local part past 64",
	  "\"" A10 A10 A10 A10 A10 A10 "a b\"@x", 0, ORG, 0, MG_ELIMIT,
	  "local part" },
	{ "254-byte address", ADDR254, 0, ORG, 0, MG_OK, ADDR254 },
	{ "255-byte address", ADDR255, 0, ORG, 0, MG_ELIMIT,
	  "address longer than 254" },
	{ "qualification past 254", L64, 0,
	  D63 "." D63 "." D63 "." D63, 0, MG_ELIMIT, "address longer" },
	{ "list at max", "a@b, c@d", 0, ORG, 2, MG_OK, "a@b|c@d" },
	{ "list past max", "a@b, c@d, e@f", 0, ORG, 2, MG_ELIMIT,
	  "more than 2 addresses" },
	{ "duplicates do not count", "a@b, c@d, a@B", 0, ORG, 2, MG_OK,
	  "a@b|c@d" },
	{ "group past max", "g: a@b, c@d, e@f;", 0, ORG, 2, MG_ELIMIT,
	  "more than 2" },
};

struct one_case {
	const char	*name;
	const char	*in;
	const char	*domain;
	int		 allow_null;
	enum mg_err	 want;
	const char	*out;	/* address, or errbuf part */
};

static const struct one_case one_cases[] = {
	{ "plain", "a@b.example", ORG, 0, MG_OK, "a@b.example" },
	{ "angle", "<a@b.example>", ORG, 0, MG_OK, "a@b.example" },
	{ "name-addr", "Name <a@b.example>", ORG, 0, MG_OK, "a@b.example" },
	{ "trimmed", " \t a@b.example \t", ORG, 0, MG_OK, "a@b.example" },
	{ "comment", "a@b.example (me)", ORG, 0, MG_OK, "a@b.example" },
	{ "bare local qualified", "root", ORG, 0, MG_OK,
	  "root@example.org" },
	{ "bare local, no domain", "root", NULL, 0, MG_EDATA, "no domain" },
	{ "null allowed", "<>", ORG, 1, MG_OK, "" },
	{ "empty allowed", "", ORG, 1, MG_OK, "" },
	{ "blank allowed", "  ", ORG, 1, MG_OK, "" },
	{ "null refused", "<>", ORG, 0, MG_EDATA, "null address" },
	{ "empty refused", "", ORG, 0, MG_EDATA, "null address" },
	{ "option injection", "-oQ/tmp/x@y", ORG, 0, MG_EDATA,
	  "begins with '-'" },
	{ "option injection in angle", "<-x@y>", ORG, 0, MG_EDATA,
	  "begins with '-'" },
	{ "option injection, quoted", "\"-x\"@y", ORG, 0, MG_EDATA,
	  "begins with '-'" },
	{ "CRLF refused", "a@b\r\nBcc: c@d", ORG, 0, MG_EDATA,
	  "line break" },
	{ "folding refused", "a@b\r\n (x)", ORG, 0, MG_EDATA, "line break" },
	{ "two addresses", "a@b, c@d", ORG, 0, MG_EDATA,
	  "more than one address" },
	{ "group refused", "g: a@b;", ORG, 0, MG_EDATA, "group not allowed" },
	{ "invalid for SMTP", "a@b_c.example", ORG, 0, MG_EDATA,
	  "not a valid RFC 5321 mailbox" },
	{ "domain literal", "a@[192.0.2.1]", ORG, 0, MG_OK,
	  "a@[192.0.2.1]" },
	{ "bad IPv4 literal", "a@[192.0.2.256]", ORG, 0, MG_EDATA,
	  "not a valid" },
	{ "quoted kept", "\"john doe\"@example.com", ORG, 0, MG_OK,
	  "\"john doe\"@example.com" },
	{ "65-byte local", L65 "@x", ORG, 0, MG_ELIMIT, "local part" },
	{ "trailing garbage", "a@b>", ORG, 0, MG_EDATA, "unexpected '>'" },
	{ "UTF-8", "\xc3\xa9@\xc3\xa9.example", ORG, 0, MG_OK,
	  "\xc3\xa9@\xc3\xa9.example" },
};

struct valid_case {
	const char	*in;
	int		 want;
};

static const struct valid_case valid_cases[] = {
	{ "a@b", 0 },
	{ "a.b@c.d", 0 },
	{ "a+tag@sub-domain.example", 0 },
	{ "\"john doe\"@x.example", 0 },
	{ "\"a\\\"b\"@x", 0 },
	{ "a@[192.0.2.1]", 0 },
	{ "a@[IPv6:::1]", 0 },
	{ "a@[ipv6:2001:db8::1]", 0 },
	{ "a@[x-tag:stuff]", 0 },
	{ "\xe7\x94\xa8@\xe4\xbe\x8b.\xe5\xb9\xbf", 0 },
	{ "a@xn--bcher-kva.example", 0 },
	{ "a@" D63 ".x", 0 },
	{ ADDR254, 0 },
	{ "", -1 },
	{ "a", -1 },
	{ "@b", -1 },
	{ "a@", -1 },
	{ "a..b@c", -1 },
	{ ".a@c", -1 },
	{ "a.@c", -1 },
	{ "a@-b.c", -1 },
	{ "a@b-.c", -1 },
	{ "a@b..c", -1 },
	{ "a@b.", -1 },
	{ "a b@c", -1 },
	{ "a@b@c", -1 },
	{ "\"a@b", -1 },
	{ "\"a\tb\"@c", -1 },
	{ "a@b_c", -1 },
	{ "a@[300.1.1.1]", -1 },
	{ "a@[1.2.3]", -1 },
	{ "a@[IPv6:zz]", -1 },
	{ "a@[1.2.3.4", -1 },
	{ "a@[]", -1 },
	{ "a\xff@b", -1 },
	{ "a@b\xc0\xaf", -1 },
	{ L65 "@x", -1 },
	{ "a@" D63 "d.x", -1 },
	{ ADDR255, -1 },
};

#define NITEMS(a)	(sizeof(a) / sizeof((a)[0]))

static void
join(const struct mg_addrlist *l, char *buf, size_t len)
{
	size_t	i, n = 0;

	buf[0] = '\0';
	for (i = 0; i < l->n; i++)
		n += snprintf(buf + n, n < len ? len - n : 0, "%s%s",
		    i ? "|" : "", l->addrs[i]);
}

static void
run_list_cases(void)
{
	const struct list_case	*c;
	struct mg_addrlist	 l;
	char			 buf[2048], err[256];
	const char		*got = buf;
	size_t			 i, len;
	enum mg_err		 e;

	for (i = 0; i < NITEMS(list_cases); i++) {
		c = &list_cases[i];
		len = c->len ? c->len : strlen(c->in);
		mg_addrlist_init(&l, c->max ? c->max : 100);
		e = mg_addr_parse_list(c->in, len, c->domain, &l, err,
		    sizeof(err));
		if (c->want == MG_OK) {
			join(&l, buf, sizeof(buf));
			if (is_int(e, MG_OK, "list: %s: parses", c->name))
				is_str(got, c->out, "list: %s: result",
				    c->name);
			else
				diag("  errbuf: %s", err);
		} else {
			is_int(e, c->want, "list: %s: %s", c->name,
			    mg_strerror(c->want));
			if (!ok(l.n == 0 && strstr(err, c->out) != NULL,
			    "list: %s: message and empty list", c->name))
				diag("  n=%zu errbuf '%s', want '%s'", l.n,
				    err, c->out);
		}
		mg_addrlist_free(&l);
	}
}

static void
run_one_cases(void)
{
	const struct one_case	*c;
	char			*out, err[256];
	size_t			 i;
	enum mg_err		 e;

	for (i = 0; i < NITEMS(one_cases); i++) {
		c = &one_cases[i];
		out = NULL;
		e = mg_addr_parse_one(c->in, c->domain, c->allow_null, &out,
		    err, sizeof(err));
		if (c->want == MG_OK) {
			if (is_int(e, MG_OK, "one: %s: parses", c->name))
				is_str(out, c->out, "one: %s: result",
				    c->name);
			else
				diag("  errbuf: %s", err);
		} else {
			is_int(e, c->want, "one: %s: %s", c->name,
			    mg_strerror(c->want));
			if (!ok(out == NULL && strstr(err, c->out) != NULL,
			    "one: %s: message", c->name))
				diag("  errbuf '%s', want '%s'", err, c->out);
		}
		free(out);
	}
}

static void
run_valid_cases(void)
{
	size_t	i;

	for (i = 0; i < NITEMS(valid_cases); i++)
		is_int(mg_addr_valid(valid_cases[i].in), valid_cases[i].want,
		    "valid: '%s'", valid_cases[i].in);
	is_int(mg_addr_valid(NULL), -1, "valid: NULL");
}

/* The list API on its own: dedup, max, failure leaves the list alone. */
static void
run_list_api(void)
{
	struct mg_addrlist	l;
	char			err[256];
	size_t			i;
	enum mg_err		e;

	mg_addrlist_init(&l, 2);
	is_int(mg_addrlist_add(&l, "a@b"), MG_OK, "add: first");
	is_int(mg_addrlist_add(&l, "a@B"), MG_OK, "add: duplicate accepted");
	is_int(l.n, 1, "add: duplicate not stored");
	is_int(mg_addrlist_add(&l, "c@d"), MG_OK, "add: second");
	is_int(mg_addrlist_add(&l, "e@f"), MG_ELIMIT, "add: past max");
	is_int(mg_addrlist_add(&l, "c@D"), MG_OK, "add: duplicate at max");
	mg_addrlist_free(&l);
	is_int(l.n, 0, "free: list empty");

	/* A failed parse removes only what it added itself. */
	mg_addrlist_init(&l, 10);
	mg_addrlist_add(&l, "x@y");
	e = mg_addr_parse_list("a@b, c@d, bad@", 14, ORG, &l, err,
	    sizeof(err));
	is_int(e, MG_EDATA, "rollback: error");
	ok(l.n == 1 && strcmp(l.addrs[0], "x@y") == 0,
	    "rollback: earlier entries kept, new ones dropped");
	e = mg_addr_parse_list("a@b, x@Y", 8, ORG, &l, err, sizeof(err));
	ok(e == MG_OK && l.n == 2, "append after earlier entries");
	mg_addrlist_free(&l);

	/* Growth past the first allocation. */
	mg_addrlist_init(&l, 1000);
	for (i = 0, e = MG_OK; i < 100 && e == MG_OK; i++) {
		snprintf(err, sizeof(err), "u%zu@example.org", i);
		e = mg_addrlist_add(&l, err);
	}
	ok(e == MG_OK && l.n == 100 && strcmp(l.addrs[99],
	    "u99@example.org") == 0, "add: 100 addresses");
	mg_addrlist_free(&l);

	/* NULL text with zero length is an empty list; errbuf optional. */
	mg_addrlist_init(&l, 10);
	is_int(mg_addr_parse_list(NULL, 0, ORG, &l, NULL, 0), MG_OK,
	    "parse_list: NULL, 0");
	is_int(mg_addr_parse_list("a@", 2, ORG, &l, NULL, 0), MG_EDATA,
	    "parse_list: no errbuf");
	/* len bounds the input: the rest of the string is not read. */
	is_int(mg_addr_parse_list("a@b, garbage <", 3, ORG, &l, err,
	    sizeof(err)), MG_OK, "parse_list: len respected");
	ok(l.n == 1 && strcmp(l.addrs[0], "a@b") == 0,
	    "parse_list: len respected, result");
	mg_addrlist_free(&l);

	/* A tiny errbuf is filled safely. */
	mg_addrlist_init(&l, 10);
	memset(err, 'x', sizeof(err));
	e = mg_addr_parse_list("foo (bar", 8, ORG, &l, err, 8);
	ok(e == MG_EDATA && strlen(err) == 7, "errbuf truncated to errlen");
	mg_addrlist_free(&l);
}

int
main(void)
{
	run_list_cases();
	run_one_cases();
	run_valid_cases();
	run_list_api();
	return done();
}
