/*
 * submit.c - the submission path: stdin to a committed maildrop file.
 *
 * The input is untrusted and may be any size.  Only the header section
 * is held in memory (bounded by header_size_limit); the body streams
 * through a fixed buffer into the maildrop writer.  Headers are added
 * on top of the message, never interleaved, so the submitted bytes
 * follow them unchanged (Bcc fields excepted, which are removed):
 *   Received: by MYHOSTNAME (mgate, from userid UID) id QID; DATE
 *   Date:, Message-ID: and From: when the message lacks them.
 * Added lines use the message's own line ending (CRLF or LF).
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mgate/addr.h"
#include "mgate/buf.h"
#include "mgate/envelope.h"
#include "mgate/header.h"
#include "mgate/log.h"
#include "mgate/maildrop.h"
#include "mgate/stream.h"
#include "mgate/submit.h"

#define MAX_FIELDS	10000
#define BODY_LINE_MAX	65536

struct hdr {
	struct mg_buf		 buf;	/* the header section as read */
	struct mg_hfield	*f;
	size_t			 nf;
	size_t			 cap;
	int			 crlf;	/* first line ended in CRLF */
	int			 ended_blank; /* section ended at a blank line */
	int			 eof;	/* input ended inside the header */
};

struct submit {
	const struct mg_config		*cfg;
	const struct submit_opts	*o;
	struct mg_stream		*in;
	struct hdr			 h;
	struct mg_envelope		 env;
	struct maildrop_writer		*w;
	char				*line;	/* first body line */
	size_t				 linelen;
	uint64_t			 inbytes; /* bytes read from input */
	char				*err;
	size_t				 errlen;
};

static enum mg_err __attribute__((format(printf, 3, 4)))
fail(struct submit *s, enum mg_err e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->err, s->errlen, fmt, ap);
	va_end(ap);
	return e;
}

static int
is_dot_line(const char *l, size_t n)
{
	return (n == 1 && l[0] == '.') || (n == 2 && l[0] == '.' &&
	    l[1] == '\n') || (n == 3 && l[0] == '.' && l[1] == '\r' &&
	    l[2] == '\n');
}

static enum mg_err
add_field(struct hdr *h, size_t off, size_t len, size_t name_len,
    size_t colon)
{
	struct mg_hfield *n;

	if (h->nf == h->cap) {
		if (h->cap >= MAX_FIELDS)
			return MG_ELIMIT;
		h->cap = h->cap ? h->cap * 2 : 32;
		if ((n = realloc(h->f, h->cap * sizeof(*n))) == NULL)
			return MG_ENOMEM;
		h->f = n;
	}
	h->f[h->nf].off = off;
	h->f[h->nf].len = len;
	h->f[h->nf].name_len = name_len;
	h->f[h->nf].colon = colon;
	h->nf++;
	return MG_OK;
}

/*
 * Read the header section.  Stops at the blank line (kept as the first
 * body line), at the first line that is not a header (likewise kept),
 * at a lone "." when dots end input, or at EOF.
 */
static enum mg_err
read_header(struct submit *s)
{
	struct hdr	*h = &s->h;
	uint64_t	 limit = s->cfg->header_size_limit;
	size_t		 n, max = limit + 1, name_len = 0, colon = 0;
	enum mg_err	 e;
	enum mg_hline	 kind;

	if ((s->line = malloc(max > BODY_LINE_MAX ? max : BODY_LINE_MAX))
	    == NULL)
		return fail(s, MG_ENOMEM, "out of memory reading the header");
	for (;;) {
		e = mg_stream_getline(s->in, s->line, max, &n);
		if (e == MG_ELIMIT)
			return fail(s, MG_ELIMIT, "message header exceeds "
			    "header_size_limit (%llu bytes); shorten it or "
			    "raise the limit in mgate.conf",
			    (unsigned long long)limit);
		if (e != MG_OK)
			return fail(s, MG_EIO, "cannot read the message: %s",
			    mg_strerror(e));
		s->inbytes += n;
		if (n == 0 || (!s->o->ignore_dots && is_dot_line(s->line, n))) {
			h->eof = 1;
			return MG_OK;
		}
		if (h->buf.len == 0 && h->nf == 0)
			h->crlf = n >= 2 && s->line[n - 2] == '\r' &&
			    s->line[n - 1] == '\n';
		kind = mg_header_classify(s->line, n, h->nf > 0, &name_len,
		    &colon);
		if (kind == MG_HLINE_END || kind == MG_HLINE_BODY) {
			h->ended_blank = kind == MG_HLINE_END;
			s->linelen = n;
			return MG_OK;
		}
		if (h->buf.len + n > limit)
			return fail(s, MG_ELIMIT, "message header exceeds "
			    "header_size_limit (%llu bytes); shorten it or "
			    "raise the limit in mgate.conf",
			    (unsigned long long)limit);
		if (kind == MG_HLINE_FIELD) {
			if ((e = add_field(h, h->buf.len, 0, name_len, colon)))
				return fail(s, e, e == MG_ELIMIT ? "message "
				    "has more than %d header fields" :
				    "out of memory", MAX_FIELDS);
		}
		if ((e = mg_buf_append(&h->buf, s->line, n)) != MG_OK)
			return fail(s, e, "out of memory reading the header");
		h->f[h->nf - 1].len += n;
	}
}

static int
find_field(const struct submit *s, const char *name)
{
	for (size_t i = 0; i < s->h.nf; i++)
		if (mg_hfield_is((const char *)s->h.buf.data, &s->h.f[i], name))
			return 1;
	return 0;
}

/* The first word of a field's value, lower-cased, for keyword tests. */
static void
first_word(const char *v, size_t n, char *out, size_t len)
{
	size_t i = 0, k = 0;

	while (i < n && (v[i] == ' ' || v[i] == '\t'))
		i++;
	while (i < n && k + 1 < len && v[i] != ' ' && v[i] != '\t' &&
	    v[i] != '\r' && v[i] != '\n' && v[i] != '(' && v[i] != ';')
		out[k++] = (char)tolower((unsigned char)v[i++]);
	out[k] = '\0';
}

/*
 * What goes first over an expensive link: RFC 2156 Priority and
 * Importance, the common X-Priority (1-2 high, 4-5 low), and
 * Precedence: bulk, list or junk (low).
 */
static int
message_priority(const struct submit *s)
{
	const char	*buf = (const char *)s->h.buf.data, *v;
	char		 w[16];
	size_t		 n;

	for (size_t i = 0; i < s->h.nf; i++) {
		const struct mg_hfield *f = &s->h.f[i];

		v = mg_hfield_value(buf, f, &n);
		first_word(v, n, w, sizeof(w));
		if (mg_hfield_is(buf, f, "Priority")) {
			if (!strcmp(w, "urgent"))
				return MG_PRIO_HIGH;
			if (!strcmp(w, "non-urgent"))
				return MG_PRIO_LOW;
		} else if (mg_hfield_is(buf, f, "Importance")) {
			if (!strcmp(w, "high"))
				return MG_PRIO_HIGH;
			if (!strcmp(w, "low"))
				return MG_PRIO_LOW;
		} else if (mg_hfield_is(buf, f, "X-Priority")) {
			if (w[0] == '1' || w[0] == '2')
				return MG_PRIO_HIGH;
			if (w[0] == '4' || w[0] == '5')
				return MG_PRIO_LOW;
		} else if (mg_hfield_is(buf, f, "Precedence")) {
			if (!strcmp(w, "bulk") || !strcmp(w, "list") ||
			    !strcmp(w, "junk"))
				return MG_PRIO_LOW;
		}
	}
	return MG_PRIO_NORMAL;
}

static enum mg_err
add_rcpt(struct submit *s, const char *addr)
{
	char *a;

	for (size_t i = 0; i < s->env.nrcpt; i++)
		if (strcmp(s->env.rcpts[i].addr, addr) == 0)
			return MG_OK;
	if (s->env.nrcpt >= s->cfg->recipient_limit)
		return fail(s, MG_ELIMIT, "more than %llu recipients "
		    "(recipient_limit)",
		    (unsigned long long)s->cfg->recipient_limit);
	if ((a = strdup(addr)) == NULL ||
	    mg_envelope_add_rcpt(&s->env, a, NULL, s->o->notify) < 0)
		return fail(s, MG_ENOMEM, "out of memory");
	return MG_OK;
}

static enum mg_err
collect_rcpts(struct submit *s)
{
	static const char *const rcpt_fields[] = { "To", "Cc", "Bcc" };
	struct mg_addrlist	 list;
	char			 why[256], *addr = NULL;
	const char		*v;
	size_t			 vlen;
	enum mg_err		 e = MG_OK;

	for (size_t i = 0; i < s->o->nrcpts; i++) {
		e = mg_addr_parse_one(s->o->rcpts[i], s->cfg->mydomain, 0,
		    &addr, why, sizeof(why));
		if (e != MG_OK)
			return fail(s, e == MG_ENOMEM ? e : MG_EDATA,
			    "bad recipient address: %s", why);
		e = add_rcpt(s, addr);
		free(addr);
		if (e != MG_OK)
			return e;
	}
	if (!s->o->extract)
		return MG_OK;
	mg_addrlist_init(&list, s->cfg->recipient_limit);
	for (size_t i = 0; i < s->h.nf && e == MG_OK; i++)
		for (size_t k = 0; k < 3; k++) {
			if (!mg_hfield_is((const char *)s->h.buf.data,
			    &s->h.f[i], rcpt_fields[k]))
				continue;
			v = mg_hfield_value((const char *)s->h.buf.data,
			    &s->h.f[i], &vlen);
			e = mg_addr_parse_list(v, vlen, s->cfg->mydomain,
			    &list, why, sizeof(why));
			if (e != MG_OK)
				e = fail(s, e == MG_ENOMEM ? e : e == MG_ELIMIT
				    ? MG_ELIMIT : MG_EDATA, "bad address in "
				    "%s: header: %s", rcpt_fields[k], why);
			break;
		}
	for (size_t i = 0; i < list.n && e == MG_OK; i++)
		e = add_rcpt(s, list.addrs[i]);
	mg_addrlist_free(&list);
	return e;
}

static enum mg_err
put(struct submit *s, const void *p, size_t n)
{
	enum mg_err e;

	if (!s->cfg->allow_nul_bytes && memchr(p, '\0', n) != NULL)
		return fail(s, MG_EDATA, "message contains NUL bytes, which "
		    "mail cannot carry (set allow_nul_bytes = yes to accept "
		    "them)");
	if (maildrop_size(s->w) + n > s->cfg->message_size_limit)
		return fail(s, MG_ELIMIT, "message exceeds message_size_limit"
		    " (%llu bytes)",
		    (unsigned long long)s->cfg->message_size_limit);
	if ((e = maildrop_put_content(s->w, p, n)) != MG_OK)
		return fail(s, e, "cannot write to the spool: %s%s%s",
		    mg_strerror(e), errno ? ": " : "",
		    errno ? strerror(errno) : "");
	return MG_OK;
}

static enum mg_err __attribute__((format(printf, 2, 3)))
put_line(struct submit *s, const char *fmt, ...)
{
	char	line[2048];
	va_list	ap;
	int	n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		return fail(s, MG_ELIMIT, "added header too long");
	if (s->h.crlf)
		line[n++] = '\r';
	line[n++] = '\n';
	return put(s, line, (size_t)n);
}

/* A display name needs quotes unless it is plain atext and spaces. */
static void
quote_name(const char *in, char *out, size_t outlen)
{
	size_t	n = 0;
	int	plain = 1;

	for (const char *p = in; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == ' ' ||
		    (unsigned char)*p >= 0x80 || strchr("!#$%&'*+-/=?^_`{|}~",
		    *p)))
			plain = 0;
	if (plain) {
		snprintf(out, outlen, "%s", in);
		return;
	}
	out[n++] = '"';
	for (const char *p = in; *p && n + 3 < outlen; p++) {
		if (*p == '\r' || *p == '\n')
			continue;
		if (*p == '"' || *p == '\\')
			out[n++] = '\\';
		out[n++] = *p;
	}
	out[n++] = '"';
	out[n] = '\0';
}

static enum mg_err
put_added_headers(struct submit *s)
{
	char		 date[64], name[512];
	time_t		 now = (time_t)s->env.arrival;
	struct tm	 tm;
	enum mg_err	 e;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	if ((e = put_line(s, "Received: by %s (mgate, from userid %lu)",
	    s->cfg->myhostname, (unsigned long)s->o->uid)) ||
	    (e = put_line(s, "\tid %s; %s", s->env.qid, date)))
		return e;
	if (!find_field(s, "Date") && (e = put_line(s, "Date: %s", date)))
		return e;
	if (!find_field(s, "Message-ID")) {
		char stamp[32];

		strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &tm);
		if ((e = put_line(s, "Message-ID: <%s.%s@%s>", stamp,
		    s->env.qid, s->cfg->mydomain)))
			return e;
	}
	if (!find_field(s, "From")) {
		const char *addr = s->env.sender;
		char	    fallback[MG_ADDR_MAX + 1];

		if (s->env.sender[0] == '\0') {
			snprintf(fallback, sizeof(fallback),
			    "MAILER-DAEMON@%s", s->cfg->mydomain);
			addr = fallback;
		} else if (s->o->sender == NULL) {
			snprintf(fallback, sizeof(fallback), "%s@%s",
			    s->o->user, s->cfg->mydomain);
			addr = fallback;
		}
		if (s->o->fullname && s->o->fullname[0]) {
			quote_name(s->o->fullname, name, sizeof(name));
			e = put_line(s, "From: %s <%s>", name, addr);
		} else
			e = put_line(s, "From: %s", addr);
		if (e)
			return e;
	}
	return MG_OK;
}

static enum mg_err
put_header(struct submit *s)
{
	enum mg_err e;

	for (size_t i = 0; i < s->h.nf; i++) {
		if (mg_hfield_is((const char *)s->h.buf.data, &s->h.f[i],
		    "Bcc"))
			continue;
		if ((e = put(s, s->h.buf.data + s->h.f[i].off, s->h.f[i].len)))
			return e;
	}
	/*
	 * A message with no header at all gets a blank line after the
	 * added fields, or its first line would read as a header.
	 */
	if (s->h.nf == 0 && !s->h.ended_blank &&
	    (e = put(s, s->h.crlf ? "\r\n" : "\n", s->h.crlf ? 2 : 1)))
		return e;
	return MG_OK;
}

static enum mg_err
copy_body(struct submit *s)
{
	size_t		n;
	ssize_t		r;
	enum mg_err	e;
	int		bol = 1;	/* at the beginning of a line */

	if (s->linelen && (e = put(s, s->line, s->linelen)) != MG_OK)
		return e;
	if (s->h.eof)
		return MG_OK;
	if (s->o->ignore_dots) {
		/* Bulk copy: no line structure to respect. */
		while ((r = mg_stream_read(s->in, s->line, BODY_LINE_MAX)) > 0) {
			s->inbytes += (uint64_t)r;
			if ((e = put(s, s->line, (size_t)r)) != MG_OK)
				return e;
		}
		if (r < 0)
			return fail(s, MG_EIO, "cannot read the message: %s",
			    strerror(errno));
		return MG_OK;
	}
	for (;;) {
		e = mg_stream_getline(s->in, s->line, BODY_LINE_MAX, &n);
		if (e != MG_OK && e != MG_ELIMIT)
			return fail(s, MG_EIO, "cannot read the message: %s",
			    mg_strerror(e));
		if (n == 0)
			return MG_OK;
		s->inbytes += n;
		if (bol && is_dot_line(s->line, n))
			return MG_OK;
		if ((e = put(s, s->line, n)) != MG_OK)
			return e;
		bol = s->line[n - 1] == '\n';
	}
}

static enum mg_err
make_envelope(struct submit *s)
{
	char	why[256];
	char	*sender = NULL;

	s->env.arrival = (uint64_t)time(NULL);
	s->env.ret = s->o->ret;
	s->env.body = s->o->body;
	if ((s->env.user = strdup(s->o->user)) == NULL)
		return fail(s, MG_ENOMEM, "out of memory");
	if (s->o->envid && (s->env.envid = strdup(s->o->envid)) == NULL)
		return fail(s, MG_ENOMEM, "out of memory");
	if (s->o->sender) {
		if (mg_addr_parse_one(s->o->sender, s->cfg->mydomain, 1,
		    &sender, why, sizeof(why)) != MG_OK)
			return fail(s, MG_EDATA, "bad sender address (-f): %s",
			    why);
	} else if (asprintf(&sender, "%s@%s", s->o->user,
	    s->cfg->mydomain) < 0)
		return fail(s, MG_ENOMEM, "out of memory");
	else if (mg_addr_valid(sender) != 0) {
		fail(s, MG_EDATA, "cannot make a sender address from login "
		    "'%s'; give one with -f", s->o->user);
		free(sender);
		return MG_EDATA;
	}
	s->env.sender = sender;
	return MG_OK;
}

enum mg_err
submit_message(const struct mg_config *cfg, const struct submit_opts *o,
    int fd, char qid[MG_QID_LEN + 1], char *errbuf, size_t errlen)
{
	struct submit	s;
	enum mg_err	e;

	memset(&s, 0, sizeof(s));
	s.cfg = cfg;
	s.o = o;
	s.err = errbuf;
	s.errlen = errlen;
	mg_buf_init(&s.h.buf, cfg->header_size_limit);
	errbuf[0] = '\0';
	if ((s.in = mg_stream_fd(fd, 0)) == NULL) {
		e = fail(&s, MG_ENOMEM, "out of memory");
		goto out;
	}
	if ((e = make_envelope(&s)) != MG_OK ||
	    (e = read_header(&s)) != MG_OK)
		goto out;
	if (s.inbytes == 0 || (s.h.eof && s.h.buf.len == 0)) {
		e = fail(&s, MG_EDATA, "empty message: nothing to send on "
		    "standard input");
		goto out;
	}
	if ((e = collect_rcpts(&s)) != MG_OK)
		goto out;
	s.env.priority = message_priority(&s);
	if (s.env.nrcpt == 0) {
		e = fail(&s, MG_EUSAGE, "no recipients: name them as "
		    "arguments, or use -t to take them from To, Cc and Bcc");
		goto out;
	}
	e = maildrop_create(cfg->spool_directory, &s.env, &s.w);
	if (e != MG_OK) {
		if (e == MG_EUNAVAIL)
			e = fail(&s, MG_ETEMP, "spool %s is missing or not "
			    "initialised (run `mgate init' once to create it)",
			    cfg->spool_directory);
		else
			e = fail(&s, mg_err_is_temp(e) ? MG_ETEMP : e,
			    "cannot create a file in %s/tmp: %s",
			    cfg->spool_directory, strerror(errno));
		goto out;
	}
	if ((e = maildrop_put_envelope(s.w, &s.env)) != MG_OK) {
		e = fail(&s, e, "cannot write to the spool: %s",
		    strerror(errno));
		goto out;
	}
	if ((e = put_added_headers(&s)) != MG_OK ||
	    (e = put_header(&s)) != MG_OK ||
	    (e = copy_body(&s)) != MG_OK)
		goto out;
	e = maildrop_commit(s.w);
	s.w = NULL;
	if (e != MG_OK) {
		e = fail(&s, e, "cannot commit the message to %s: %s",
		    cfg->spool_directory, strerror(errno));
		goto out;
	}
	memcpy(qid, s.env.qid, sizeof(s.env.qid));
out:
	maildrop_abort(s.w);
	mg_stream_close(s.in);
	mg_envelope_free(&s.env);
	mg_buf_free(&s.h.buf);
	free(s.h.f);
	free(s.line);
	return e;
}
