/*
 * addr.c - RFC 5322 address lists and RFC 5321 mailboxes.
 *
 * mg_addr_parse_list() turns the value of a To/Cc/Bcc header into
 * addr-specs; mg_addr_parse_one() does the same for one address from a
 * command line or an envelope; mg_addr_valid() checks that a string can
 * go into MAIL FROM or RCPT TO as it is.
 *
 * All input is untrusted: it comes from submitted messages and from the
 * arguments of whoever runs sendmail.  The parser is a lexer (comments,
 * folding and quoting handled in one place) under a recursive-descent
 * reader of the RFC 5322 grammar, obsolete syntax included.  Its depth
 * does not follow the input (comment nesting is a counter, groups do
 * not nest), it never reads past the length it was given, and it builds
 * each address in a fixed buffer of MG_ADDR_MAX bytes, so an over-long
 * address is an error, never a truncation.  Display names, comments
 * and encoded words are skipped, not decoded.  An address-list that
 * fails to parse leaves the list as it was: partial results from a
 * malformed header are never delivered to.
 */
#include <arpa/inet.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mgate/addr.h"

#define EXCERPT_MAX	60	/* bytes of input quoted in a message */

enum tok {
	T_END,
	T_ATOM,		/* 1*atext */
	T_QSTR,		/* quoted-string, quotes included */
	T_DLIT,		/* domain-literal, brackets included */
	T_SPECIAL,	/* one of < > @ , ; : . */
	T_ERR
};

struct lex {
	const unsigned char	*p;	/* next unread byte */
	const unsigned char	*end;
	enum tok		 type;	/* the current (lookahead) token */
	int			 ch;	/* its character, for T_SPECIAL */
	const unsigned char	*tok;	/* its text */
	size_t			 len;
};

/* One address being assembled; never longer than MG_ADDR_MAX. */
struct abuf {
	char	s[MG_ADDR_MAX + 1];
	size_t	len;
};

enum ctx {
	CTX_LIST,	/* an element of an address-list: groups allowed */
	CTX_GROUP,	/* a member of a group */
	CTX_ONE		/* the single address of mg_addr_parse_one() */
};

struct parser {
	struct lex		 lx;
	const unsigned char	*elem;	/* start of the element, for messages */
	const char		*domain;
	struct mg_addrlist	*list;	/* NULL: keep the address in `one' */
	struct abuf		*one;
	char			*errbuf;
	size_t			 errlen;
};

static int
is_atext(int c)
{
	/* RFC 6532 adds UTF-8 to atext; its validity is checked later. */
	if (c >= 0x80)
		return 1;
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static int
is_ctl(int c)
{
	return c < 0x20 || c == 0x7f;
}

/* dtext of RFC 5322 and dcontent of RFC 5321: printable but [ \ ]. */
static int
is_dtext(int c)
{
	return (c >= 33 && c <= 90) || (c >= 94 && c <= 126);
}

static int
to_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/*
 * Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong
 * forms, no surrogates, nothing past U+10FFFF), 0 if there is none.
 */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	unsigned char	lo = 0x80, hi = 0xbf;
	size_t		need, i;

	if (n == 0)
		return 0;
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		need = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		need = 3;
		if (s[0] == 0xe0)
			lo = 0xa0;
		else if (s[0] == 0xed)
			hi = 0x9f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		need = 4;
		if (s[0] == 0xf0)
			lo = 0x90;
		else if (s[0] == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (n < need || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < need; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return need;
}

/*
 * The text that goes into an addr-spec must be printable ASCII or
 * well-formed UTF-8: a control character or a stray 8-bit byte cannot
 * be carried by SMTP (RFC 5321, RFC 6531) and is likely an attack.
 */
static const char *
check_text(const unsigned char *s, size_t n)
{
	size_t	i, k;

	for (i = 0; i < n; i += k) {
		if (s[i] == '\0')
			return "NUL byte in address";
		if (is_ctl(s[i]))
			return "control character in address";
		if ((k = utf8_len(s + i, n - i)) == 0)
			return "8-bit byte that is not UTF-8 in address";
	}
	return NULL;
}

/*
 * A line break in a header value is legal only as folding: CRLF or LF
 * followed by WSP.  Returns the length of the break at s when it folds,
 * 0 when it is bare (and so a possible header injection).
 */
static size_t
fold_len(const unsigned char *s, const unsigned char *end)
{
	size_t	n = 0;

	if (s < end && *s == '\r')
		n++;
	if (s + n >= end || s[n] != '\n')
		return 0;
	n++;
	if (s + n < end && (s[n] == ' ' || s[n] == '\t'))
		return n;
	return 0;
}

/* The header's own terminator may be left on the value: allow it. */
static int
final_break(const unsigned char *s, const unsigned char *end)
{
	return (end - s == 1 && s[0] == '\n') ||
	    (end - s == 2 && s[0] == '\r' && s[1] == '\n');
}

/*
 * Skip the body of a comment, quoted string or domain literal starting
 * at lx->p (on the opening character), honouring quoted-pairs and
 * folding.  Comments nest; the others end at their first `close'.
 */
static const char *
skip_delimited(struct lex *lx, int open, int close, const char *unterm)
{
	const unsigned char	*q = lx->p + 1;
	size_t			 depth = 1, n;

	while (depth > 0) {
		if (q >= lx->end)
			return unterm;
		if (*q == '\\') {
			if (q + 1 >= lx->end)
				return unterm;
			if (q[1] == '\0')
				return "NUL byte";
			/* obs-qp may escape CR or LF: it would be bare. */
			if (q[1] == '\r' || q[1] == '\n')
				return "bare CR or LF";
			q += 2;
		} else if (*q == '\r' || *q == '\n') {
			if ((n = fold_len(q, lx->end)) == 0)
				return q + 1 >= lx->end || final_break(q,
				    lx->end) ? unterm : "bare CR or LF";
			q += n;
		} else if (*q == '\0')
			return "NUL byte";
		else if (*q == close) {
			depth--;
			q++;
		} else if (*q == open && open == '(') {
			depth++;
			q++;
		} else if (*q == open)
			return "'[' inside a domain literal";
		else
			q++;
	}
	lx->p = q;
	return NULL;
}

static const char *
skip_cfws(struct lex *lx)
{
	const char	*why;
	size_t		 n;

	while (lx->p < lx->end) {
		if (*lx->p == ' ' || *lx->p == '\t')
			lx->p++;
		else if (*lx->p == '\r' || *lx->p == '\n') {
			if ((n = fold_len(lx->p, lx->end)) > 0)
				lx->p += n;
			else if (final_break(lx->p, lx->end))
				lx->p = lx->end;
			else
				return "bare CR or LF";
		} else if (*lx->p == '(') {
			why = skip_delimited(lx, '(', ')',
			    "unterminated comment");
			if (why != NULL)
				return why;
		} else
			break;
	}
	return NULL;
}

/* Read the next token into lx; T_ERR with *why set on malformed input. */
static enum tok
lex_next(struct lex *lx, const char **why)
{
	const unsigned char	*start;
	int			 c;

	if ((*why = skip_cfws(lx)) != NULL)
		return lx->type = T_ERR;
	start = lx->tok = lx->p;
	lx->len = 0;
	if (lx->p >= lx->end)
		return lx->type = T_END;
	c = *lx->p;
	if (is_atext(c)) {
		while (lx->p < lx->end && is_atext(*lx->p))
			lx->p++;
		lx->type = T_ATOM;
	} else if (c == '"') {
		if ((*why = skip_delimited(lx, '"', '"',
		    "unterminated quoted string")) != NULL)
			return lx->type = T_ERR;
		lx->type = T_QSTR;
	} else if (c == '[') {
		if ((*why = skip_delimited(lx, '[', ']',
		    "unterminated domain literal")) != NULL)
			return lx->type = T_ERR;
		lx->type = T_DLIT;
	} else if (c != '\0' && strchr("<>@,;:.", c) != NULL) {
		lx->p++;
		lx->ch = c;
		lx->type = T_SPECIAL;
	} else {
		if (c == '\0')
			*why = "NUL byte";
		else if (c == ')')
			*why = "unbalanced ')'";
		else if (c == ']')
			*why = "unbalanced ']'";
		else if (c == '\\')
			*why = "backslash outside quotes";
		else
			*why = "control character";
		return lx->type = T_ERR;
	}
	lx->len = lx->p - start;
	return lx->type;
}

static int
tok_is(const struct parser *p, int c)
{
	return p->lx.type == T_SPECIAL && p->lx.ch == c;
}

static int
tok_is_word(const struct parser *p)
{
	return p->lx.type == T_ATOM || p->lx.type == T_QSTR;
}

/*
 * Fill errbuf with `why in "excerpt"', the excerpt being the input from
 * the start of the current element, made safe for a log line.
 */
static enum mg_err __attribute__((format(printf, 3, 4)))
fail(struct parser *p, enum mg_err e, const char *fmt, ...)
{
	char			 why[128], ex[EXCERPT_MAX + 8];
	const unsigned char	*s = p->elem, *end = p->lx.end;
	size_t			 i = 0, n = 0, k;
	va_list			 ap;

	if (p->errbuf == NULL || p->errlen == 0)
		return e;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	while (s + i < end && n < EXCERPT_MAX) {
		k = utf8_len(s + i, end - (s + i));
		if (k > 1) {
			memcpy(ex + n, s + i, k);
			n += k;
			i += k;
			continue;
		}
		ex[n++] = k == 0 || is_ctl(s[i]) ? '?' : s[i];
		i++;
	}
	if (s + i < end) {
		memcpy(ex + n, "...", 3);
		n += 3;
	}
	ex[n] = '\0';
	snprintf(p->errbuf, p->errlen, "%s in \"%s\"", why, ex);
	return e;
}

static enum mg_err
fail_unexpected(struct parser *p, const char *where)
{
	switch (p->lx.type) {
	case T_END:
		return fail(p, MG_EDATA, "unexpected end %s", where);
	case T_SPECIAL:
		return fail(p, MG_EDATA, "unexpected '%c' %s", p->lx.ch,
		    where);
	case T_QSTR:
		return fail(p, MG_EDATA, "unexpected quoted string %s",
		    where);
	case T_DLIT:
		return fail(p, MG_EDATA, "unexpected domain literal %s",
		    where);
	default:
		return fail(p, MG_EDATA, "unexpected word %s", where);
	}
}

static enum mg_err
advance(struct parser *p)
{
	const char	*why;

	if (lex_next(&p->lx, &why) == T_ERR)
		return fail(p, MG_EDATA, "%s", why);
	return MG_OK;
}

/* Consume a separator and note where the next element starts. */
static enum mg_err
next_elem(struct parser *p)
{
	const unsigned char	*s = p->lx.p;

	while (s < p->lx.end && (*s == ' ' || *s == '\t' || *s == '\r' ||
	    *s == '\n'))
		s++;
	p->elem = s;
	return advance(p);
}

/* a may be NULL: route domains are checked but not kept. */
static enum mg_err
abuf_put(struct parser *p, struct abuf *a, const void *s, size_t n)
{
	if (a == NULL)
		return MG_OK;
	if (n > MG_ADDR_MAX - a->len)
		return fail(p, MG_ELIMIT, "address longer than %d bytes",
		    MG_ADDR_MAX);
	memcpy(a->s + a->len, s, n);
	a->len += n;
	a->s[a->len] = '\0';
	return MG_OK;
}

static int
is_dot_string(const unsigned char *s, size_t n)
{
	size_t	i;

	if (n == 0 || s[0] == '.' || s[n - 1] == '.')
		return 0;
	for (i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (s[i + 1] == '.')
				return 0;
		} else if (!is_atext(s[i]))
			return 0;
	}
	return 1;
}

/*
 * local-part = word *("." word), CFWS allowed around the dots (obs).
 * The words are decoded and joined; the result is written unquoted when
 * it is a dot-string, else as one quoted-string, so "john"@x and
 * john@x come out the same and compare equal.
 */
static enum mg_err
parse_local(struct parser *p, struct abuf *a)
{
	unsigned char		 l[MG_LOCAL_MAX];
	char			 q[2 * MG_LOCAL_MAX + 2];
	const unsigned char	*s, *e;
	const char		*why;
	size_t			 ln = 0, qn = 0, i;
	enum mg_err		 err;

	if (!tok_is_word(p))
		return fail_unexpected(p, "where a local part was expected");
	for (;;) {
		if (p->lx.type == T_ATOM) {
			s = p->lx.tok;
			e = s + p->lx.len;
		} else {
			s = p->lx.tok + 1;
			e = p->lx.tok + p->lx.len - 1;
		}
		while (s < e) {
			/* The lexer has checked escapes and folding. */
			if (p->lx.type == T_QSTR && *s == '\\')
				s++;
			else if (p->lx.type == T_QSTR &&
			    (*s == '\r' || *s == '\n')) {
				s++;
				continue;
			}
			if (ln >= MG_LOCAL_MAX)
				return fail(p, MG_ELIMIT,
				    "local part longer than %d bytes",
				    MG_LOCAL_MAX);
			l[ln++] = *s++;
		}
		if ((err = advance(p)) != MG_OK)
			return err;
		if (!tok_is(p, '.'))
			break;
		if (ln >= MG_LOCAL_MAX)
			return fail(p, MG_ELIMIT,
			    "local part longer than %d bytes", MG_LOCAL_MAX);
		l[ln++] = '.';
		if ((err = advance(p)) != MG_OK)
			return err;
		if (!tok_is_word(p))
			return fail(p, MG_EDATA, "malformed local part");
	}
	if (tok_is_word(p))
		return fail(p, MG_EDATA, "malformed local part");
	if ((why = check_text(l, ln)) != NULL)
		return fail(p, MG_EDATA, "%s", why);
	if (is_dot_string(l, ln))
		return abuf_put(p, a, l, ln);
	q[qn++] = '"';
	for (i = 0; i < ln; i++) {
		if (l[i] == '"' || l[i] == '\\')
			q[qn++] = '\\';
		q[qn++] = l[i];
	}
	q[qn++] = '"';
	if (qn > MG_LOCAL_MAX)
		return fail(p, MG_ELIMIT, "local part longer than %d bytes",
		    MG_LOCAL_MAX);
	return abuf_put(p, a, q, qn);
}

/* "[" *dtext "]" with folding removed; obs quoted-pairs only for dtext. */
static enum mg_err
put_literal(struct parser *p, struct abuf *a)
{
	const unsigned char	*s = p->lx.tok + 1;
	const unsigned char	*e = p->lx.tok + p->lx.len - 1;
	unsigned char		 c;
	size_t			 n = 0;
	enum mg_err		 err;

	if ((err = abuf_put(p, a, "[", 1)) != MG_OK)
		return err;
	for (; s < e; s++) {
		c = *s;
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			continue;
		if (c == '\\')
			c = *++s;
		if (!is_dtext(c))
			return fail(p, MG_EDATA,
			    "invalid character in domain literal");
		if ((err = abuf_put(p, a, &c, 1)) != MG_OK)
			return err;
		n++;
	}
	if (n == 0)
		return fail(p, MG_EDATA, "empty domain literal");
	return abuf_put(p, a, "]", 1);
}

/* domain = dot-atom / domain-literal / obs-domain; the token after @. */
static enum mg_err
parse_domain(struct parser *p, struct abuf *a)
{
	const char	*why;
	enum mg_err	 err;

	if (p->lx.type == T_DLIT) {
		if ((err = put_literal(p, a)) != MG_OK)
			return err;
		return advance(p);
	}
	if (p->lx.type != T_ATOM)
		return fail(p, MG_EDATA, "missing domain after '@'");
	for (;;) {
		if ((why = check_text(p->lx.tok, p->lx.len)) != NULL)
			return fail(p, MG_EDATA, "%s", why);
		if ((err = abuf_put(p, a, p->lx.tok, p->lx.len)) != MG_OK)
			return err;
		if ((err = advance(p)) != MG_OK)
			return err;
		if (!tok_is(p, '.'))
			return MG_OK;
		if ((err = abuf_put(p, a, ".", 1)) != MG_OK)
			return err;
		if ((err = advance(p)) != MG_OK)
			return err;
		if (p->lx.type != T_ATOM)
			return fail(p, MG_EDATA, "malformed domain");
	}
}

/* addr-spec, or a bare local part qualified with p->domain. */
static enum mg_err
parse_addr_spec(struct parser *p, struct abuf *a)
{
	enum mg_err	err;

	if ((err = parse_local(p, a)) != MG_OK)
		return err;
	if (tok_is(p, '@')) {
		if ((err = abuf_put(p, a, "@", 1)) != MG_OK ||
		    (err = advance(p)) != MG_OK)
			return err;
		return parse_domain(p, a);
	}
	if (p->domain == NULL)
		return fail(p, MG_EDATA, "no domain");
	if ((err = abuf_put(p, a, "@", 1)) != MG_OK)
		return err;
	return abuf_put(p, a, p->domain, strlen(p->domain));
}

/*
 * obs-route = obs-domain-list ":", where obs-domain-list is
 * *(CFWS / ",") "@" domain *("," [CFWS] ["@" domain]).  Source routes
 * are ignored (RFC 5321 section 3.3), so the domains are only checked.
 */
static enum mg_err
parse_route(struct parser *p)
{
	enum mg_err	err;

	while (tok_is(p, ','))
		if ((err = advance(p)) != MG_OK)
			return err;
	if (!tok_is(p, '@'))
		return fail(p, MG_EDATA, "malformed route");
	for (;;) {
		if (tok_is(p, '@')) {
			if ((err = advance(p)) != MG_OK ||
			    (err = parse_domain(p, NULL)) != MG_OK)
				return err;
		}
		if (!tok_is(p, ','))
			break;
		if ((err = advance(p)) != MG_OK)
			return err;
	}
	if (!tok_is(p, ':'))
		return fail(p, MG_EDATA, "malformed route");
	return advance(p);
}

static enum mg_err
emit(struct parser *p, const struct abuf *a)
{
	enum mg_err	err;

	if (p->list == NULL) {
		*p->one = *a;
		return MG_OK;
	}
	err = mg_addrlist_add(p->list, a->s);
	if (err == MG_ELIMIT)
		return fail(p, err, "more than %zu addresses", p->list->max);
	if (err != MG_OK)
		return fail(p, err, "%s", mg_strerror(err));
	return MG_OK;
}

/* angle-addr / obs-angle-addr; the current token is '<'. */
static enum mg_err
parse_angle(struct parser *p)
{
	struct abuf	a;
	enum mg_err	err;

	a.len = 0;
	a.s[0] = '\0';
	if ((err = advance(p)) != MG_OK)
		return err;
	if (tok_is(p, '>'))
		return fail(p, MG_EDATA, "empty address <>");
	if (tok_is(p, '@') || tok_is(p, ','))
		if ((err = parse_route(p)) != MG_OK)
			return err;
	if (p->lx.type == T_END)
		return fail(p, MG_EDATA, "unterminated angle bracket");
	if ((err = parse_addr_spec(p, &a)) != MG_OK)
		return err;
	if (p->lx.type == T_END)
		return fail(p, MG_EDATA, "unterminated angle bracket");
	if (!tok_is(p, '>'))
		return fail_unexpected(p, "where '>' was expected");
	if ((err = advance(p)) != MG_OK)
		return err;
	return emit(p, &a);
}

static enum mg_err parse_address(struct parser *, enum ctx);

/*
 * group = display-name ":" [group-list] ";"; the current token is ':'.
 * Members are separated by commas, empty members allowed (obs).
 */
static enum mg_err
parse_group(struct parser *p)
{
	const unsigned char	*group = p->elem;
	enum mg_err		 err;

	if ((err = next_elem(p)) != MG_OK)
		return err;
	for (;;) {
		if (tok_is(p, ';'))
			return advance(p);
		if (p->lx.type == T_END)
			break;
		if (tok_is(p, ',')) {
			if ((err = next_elem(p)) != MG_OK)
				return err;
			continue;
		}
		if ((err = parse_address(p, CTX_GROUP)) != MG_OK)
			return err;
		if (p->lx.type == T_END)
			break;
		if (!tok_is(p, ',') && !tok_is(p, ';'))
			return fail_unexpected(p, "after an address");
	}
	p->elem = group;	/* name the whole group */
	return fail(p, MG_EDATA, "unterminated group");
}

/*
 * address = mailbox / group.  Which one is known only from the token
 * after the leading words: '<' (name-addr), ':' (group), '@' or the end
 * of the element (addr-spec).  So scan the words, then rewind the
 * lexer for an addr-spec, whose words are its local part.
 */
static enum mg_err
parse_address(struct parser *p, enum ctx ctx)
{
	struct lex	save = p->lx;
	struct abuf	a;
	size_t		nwords = 0;
	int		shape = 1, last = 0;	/* 1 word, 2 dot */
	enum mg_err	err;

	for (;;) {
		if (tok_is_word(p)) {
			if (last == 1)
				shape = 0;
			last = 1;
			nwords++;
		} else if (tok_is(p, '.')) {
			if (last != 1)
				shape = 0;
			last = 2;
		} else
			break;
		if ((err = advance(p)) != MG_OK)
			return err;
	}
	if (tok_is(p, '<'))
		return parse_angle(p);
	if (tok_is(p, ':')) {
		if (ctx == CTX_GROUP)
			return fail(p, MG_EDATA, "nested group");
		if (ctx == CTX_ONE)
			return fail(p, MG_EDATA, "group not allowed here");
		if (nwords == 0)
			return fail(p, MG_EDATA, "group without a name");
		return parse_group(p);
	}
	if (last == 0 && p->lx.type == T_END)
		return fail(p, MG_EDATA, "no address");
	if (last == 0)
		return fail_unexpected(p, "where an address was expected");
	if (!tok_is(p, '@') && !shape)
		return fail(p, MG_EDATA, "display name without an address");
	p->lx = save;
	a.len = 0;
	a.s[0] = '\0';
	if ((err = parse_addr_spec(p, &a)) != MG_OK)
		return err;
	return emit(p, &a);
}

static void
parser_init(struct parser *p, const char *text, size_t len,
    const char *domain, char *errbuf, size_t errlen)
{
	memset(p, 0, sizeof(*p));
	p->lx.p = p->elem = (const unsigned char *)text;
	p->lx.end = p->lx.p + len;
	p->domain = domain;
	p->errbuf = errbuf;
	p->errlen = errlen;
	if (errbuf != NULL && errlen > 0)
		errbuf[0] = '\0';
	while (p->elem < p->lx.end && (*p->elem == ' ' ||
	    *p->elem == '\t' || *p->elem == '\r' || *p->elem == '\n'))
		p->elem++;
}

void
mg_addrlist_init(struct mg_addrlist *l, size_t max)
{
	l->addrs = NULL;
	l->n = l->cap = 0;
	l->max = max;
}

void
mg_addrlist_free(struct mg_addrlist *l)
{
	size_t	i;

	for (i = 0; i < l->n; i++)
		free(l->addrs[i]);
	free(l->addrs);
	l->addrs = NULL;
	l->n = l->cap = 0;
}

/* Length of the local part of an addr-spec we produced (or strlen). */
static size_t
local_len(const char *a)
{
	const char	*s = a;

	if (*s == '"') {
		for (s++; *s != '\0' && *s != '"'; s++)
			if (*s == '\\' && s[1] != '\0')
				s++;
		if (*s == '"')
			s++;
	}
	return (s - a) + strcspn(s, "@");
}

/* Local parts are case-sensitive (RFC 5321 2.4), domains are not. */
static int
same_addr(const char *a, const char *b)
{
	size_t	la = local_len(a), lb = local_len(b);

	if (la != lb || memcmp(a, b, la) != 0)
		return 0;
	for (a += la, b += lb; *a != '\0' && *b != '\0'; a++, b++)
		if (to_lower((unsigned char)*a) != to_lower((unsigned char)*b))
			return 0;
	return *a == *b;
}

enum mg_err
mg_addrlist_add(struct mg_addrlist *l, const char *addr)
{
	char	**na, *copy;
	size_t	  i, ncap;

	if (addr == NULL)
		return MG_EDATA;
	for (i = 0; i < l->n; i++)
		if (same_addr(l->addrs[i], addr))
			return MG_OK;
	if (l->n >= l->max)
		return MG_ELIMIT;
	if (l->n == l->cap) {
		ncap = l->cap ? l->cap * 2 : 8;
		if (ncap < l->cap || ncap > SIZE_MAX / sizeof(*na))
			return MG_ENOMEM;
		if ((na = realloc(l->addrs, ncap * sizeof(*na))) == NULL)
			return MG_ENOMEM;
		l->addrs = na;
		l->cap = ncap;
	}
	if ((copy = strdup(addr)) == NULL)
		return MG_ENOMEM;
	l->addrs[l->n++] = copy;	/* the list owns the copy */
	return MG_OK;
}

enum mg_err
mg_addr_parse_list(const char *text, size_t len, const char *domain,
    struct mg_addrlist *l, char *errbuf, size_t errlen)
{
	struct parser	p;
	size_t		n0 = l->n;
	enum mg_err	err;

	if (text == NULL) {
		if (len != 0)
			return MG_EDATA;
		text = "";	/* no arithmetic on a null pointer */
	}
	parser_init(&p, text, len, domain, errbuf, errlen);
	p.list = l;
	if ((err = advance(&p)) != MG_OK)
		goto out;
	while (p.lx.type != T_END) {
		if (tok_is(&p, ',')) {
			if ((err = next_elem(&p)) != MG_OK)
				goto out;
			continue;
		}
		if ((err = parse_address(&p, CTX_LIST)) != MG_OK)
			goto out;
		if (p.lx.type != T_END && !tok_is(&p, ',')) {
			err = fail_unexpected(&p, "after an address");
			goto out;
		}
	}
out:
	if (err != MG_OK) {
		/* All or nothing: drop what this call added. */
		while (l->n > n0)
			free(l->addrs[--l->n]);
	}
	return err;
}

enum mg_err
mg_addr_parse_one(const char *text, const char *domain, int allow_null,
    char **out, char *errbuf, size_t errlen)
{
	struct parser	 p;
	struct abuf	 a;
	const char	*s, *e;
	enum mg_err	 err;

	*out = NULL;
	if (text == NULL)
		text = "";
	for (s = text; *s == ' ' || *s == '\t'; s++)
		;
	for (e = s + strlen(s); e > s && (e[-1] == ' ' || e[-1] == '\t'); e--)
		;
	parser_init(&p, s, e - s, domain, errbuf, errlen);
	/* Checked before parsing so that no folding is ever accepted. */
	if (strpbrk(s, "\r\n") != NULL)
		return fail(&p, MG_EDATA, "line break in address");
	if (e == s || (e - s == 2 && s[0] == '<' && s[1] == '>')) {
		if (!allow_null)
			return fail(&p, MG_EDATA, "null address not allowed");
		if ((*out = strdup("")) == NULL)
			return fail(&p, MG_ENOMEM, "out of memory");
		return MG_OK;
	}
	/* Later MTAs may be run with the address as an argument. */
	if (*s == '-')
		return fail(&p, MG_EDATA, "address begins with '-'");
	p.one = &a;
	if ((err = advance(&p)) != MG_OK ||
	    (err = parse_address(&p, CTX_ONE)) != MG_OK)
		return err;
	if (p.lx.type != T_END)
		return tok_is(&p, ',') ?
		    fail(&p, MG_EDATA, "more than one address") :
		    fail_unexpected(&p, "after the address");
	if (a.s[0] == '-')
		return fail(&p, MG_EDATA, "address begins with '-'");
	if (mg_addr_valid(a.s) != 0)
		return fail(&p, MG_EDATA, "not a valid RFC 5321 mailbox");
	if ((*out = strdup(a.s)) == NULL)
		return fail(&p, MG_ENOMEM, "out of memory");
	return MG_OK;
}

/* IPv4-address-literal: Snum 3("." Snum), Snum = 1*3DIGIT, 0..255. */
static int
valid_ipv4(const char *s, size_t n)
{
	size_t	i = 0, part, digits;
	int	v;

	for (part = 0; part < 4; part++) {
		if (part > 0) {
			if (i >= n || s[i] != '.')
				return 0;
			i++;
		}
		for (v = 0, digits = 0; i < n && s[i] >= '0' && s[i] <= '9';
		    i++, digits++) {
			if (digits == 3)
				return 0;
			v = v * 10 + (s[i] - '0');
		}
		if (digits == 0 || v > 255)
			return 0;
	}
	return i == n;
}

/* address-literal body (between the brackets) of RFC 5321 4.1.3. */
static int
valid_literal(const char *s, size_t n)
{
	char		 buf[MG_ADDR_MAX + 1];
	unsigned char	 in6[16];
	const char	*colon;
	size_t		 i, tag;

	if (n > 5 && strncasecmp(s, "IPv6:", 5) == 0) {
		memcpy(buf, s + 5, n - 5);
		buf[n - 5] = '\0';
		return inet_pton(AF_INET6, buf, in6) == 1;
	}
	if ((colon = memchr(s, ':', n)) == NULL)
		return valid_ipv4(s, n);
	tag = colon - s;
	/* General-address-literal: Ldh-str ":" 1*dcontent */
	if (tag == 0 || s[0] == '-' || s[tag - 1] == '-' || tag + 1 >= n)
		return 0;
	for (i = 0; i < tag; i++)
		if (!(to_lower(s[i]) >= 'a' && to_lower(s[i]) <= 'z') &&
		    !(s[i] >= '0' && s[i] <= '9') && s[i] != '-')
			return 0;
	for (i = tag + 1; i < n; i++)
		if (!is_dtext((unsigned char)s[i]))
			return 0;
	return 1;
}

/*
 * Local-part of RFC 5321 (Dot-string / Quoted-string), with RFC 6531
 * UTF-8.  Returns its length, 0 when s does not start with one.
 */
static size_t
valid_local(const unsigned char *s, size_t len)
{
	size_t	i, k, atom;

	if (s[0] == '"') {
		/* qtextSMTP / quoted-pairSMTP, plus UTF-8 */
		for (i = 1; i < len && s[i] != '"'; i += k) {
			if (s[i] == '\\') {
				if (i + 1 >= len || s[i + 1] < 32 ||
				    s[i + 1] > 126)
					return 0;
				k = 2;
			} else if (s[i] >= 32 && s[i] <= 126)
				k = 1;
			else if ((k = utf8_len(s + i, len - i)) < 2)
				return 0;
		}
		return i < len ? i + 1 : 0;
	}
	/* Atoms of atext separated by single dots. */
	for (i = 0;;) {
		for (atom = i; i < len && s[i] != '.' && is_atext(s[i]);
		    i += k)
			if ((k = utf8_len(s + i, len - i)) == 0)
				return 0;
		if (i == atom)
			return 0;
		if (i >= len || s[i] != '.')
			return i;
		i++;
	}
}

/* sub-domain *("." sub-domain): letters, digits, inner hyphens, UTF-8. */
static int
valid_domain(const unsigned char *s, size_t len)
{
	size_t	i, k, label;
	int	c;

	for (i = 0;; i++) {
		for (label = i; i < len && s[i] != '.'; i += k) {
			c = to_lower(s[i]);
			k = 1;
			if (c >= 0x80) {
				if ((k = utf8_len(s + i, len - i)) == 0)
					return 0;
			} else if (!(c >= 'a' && c <= 'z') &&
			    !(c >= '0' && c <= '9') && c != '-')
				return 0;
		}
		if (i == label || i - label > 63 || s[label] == '-' ||
		    s[i - 1] == '-')
			return 0;
		if (i >= len)
			return 1;
	}
}

int
mg_addr_valid(const char *addr)
{
	const unsigned char	*s = (const unsigned char *)addr;
	size_t			 len, ll;

	if (addr == NULL || (len = strlen(addr)) == 0 || len > MG_ADDR_MAX)
		return -1;
	if ((ll = valid_local(s, len)) == 0 || ll > MG_LOCAL_MAX ||
	    ll >= len || s[ll] != '@')
		return -1;
	s += ll + 1;
	len -= ll + 1;
	if (len == 0)
		return -1;
	if (s[0] == '[')
		return len > 2 && s[len - 1] == ']' &&
		    valid_literal((const char *)s + 1, len - 2) ? 0 : -1;
	return valid_domain(s, len) ? 0 : -1;
}
