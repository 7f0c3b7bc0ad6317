/*
 * smtp_client.c - the SMTP client: sessions and transactions.
 *
 * Everything the server sends is untrusted: replies are read a line at
 * a time with a bound, their codes checked for consistency, their text
 * cleaned of control characters before it reaches logs and reports.
 * The message goes out in CRLF lines with dot-stuffing, whatever line
 * endings it was stored with: a bare LF or a bare CR becomes CRLF, so
 * nothing ambiguous reaches the wire (see RFC 5321 2.3.8 and the SMTP
 * smuggling attacks).  After STARTTLS the plaintext stream, with any
 * bytes the server sent early, is thrown away.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "mgate/log.h"
#include "mgate/maildrop.h"
#include "mgate/net.h"
#include "mgate/smtp_client.h"
#include "mgate/stream.h"
#include "mgate/transport_tls.h"

#define REPLY_LINE_MAX	1002	/* 1000 + slack for sloppy servers */
#define REPLY_LINES_MAX	100

struct smtp_session {
	const struct smtp_params	*p;
	int				 fd;
	struct mg_stream		*s;
	char				 mxname[256];
	char				 remote[300];
	char				 tlsinfo[128];
	unsigned			 ext;
	unsigned long long		 size_limit;
	int				 usable;
};

void
mg_result_set(struct mg_result *r, enum mg_rclass cls, int code,
    const char *status, const char *remote, const char *fmt, ...)
{
	va_list ap;

	r->cls = cls;
	r->code = code;
	r->next_hop_dsn = 0;
	snprintf(r->status, sizeof(r->status), "%s", status ? status : "");
	snprintf(r->remote, sizeof(r->remote), "%s", remote ? remote : "");
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof(r->text), fmt, ap);
	va_end(ap);
	for (char *p = r->text; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
}

static const char *const policy_names[] = { "none", "may", "encrypt",
	"verify", NULL };

int
tls_policy_parse(const char *s)
{
	for (int i = 0; policy_names[i]; i++)
		if (strcasecmp(s, policy_names[i]) == 0)
			return i;
	return -1;
}

const char *
tls_policy_name(int p)
{
	return p >= 0 && p <= TLS_POLICY_VERIFY ? policy_names[p] : "?";
}

static void
parse_ext(const char *kw, unsigned *ext, unsigned long long *size)
{
	if (strncasecmp(kw, "PIPELINING", 10) == 0)
		*ext |= SMTP_EXT_PIPELINING;
	else if (strncasecmp(kw, "SIZE", 4) == 0 && (kw[4] == '\0' ||
	    kw[4] == ' ')) {
		*ext |= SMTP_EXT_SIZE;
		if (size && kw[4] == ' ')
			*size = strtoull(kw + 5, NULL, 10);
	} else if (strncasecmp(kw, "8BITMIME", 8) == 0)
		*ext |= SMTP_EXT_8BITMIME;
	else if (strncasecmp(kw, "SMTPUTF8", 8) == 0)
		*ext |= SMTP_EXT_SMTPUTF8;
	else if (strcasecmp(kw, "DSN") == 0)
		*ext |= SMTP_EXT_DSN;
	else if (strcasecmp(kw, "STARTTLS") == 0)
		*ext |= SMTP_EXT_STARTTLS;
	else if (strcasecmp(kw, "ENHANCEDSTATUSCODES") == 0)
		*ext |= SMTP_EXT_ENHANCED;
}

static int
parse_status(const char *t, int code, char *status, size_t len)
{
	int	a, b, c, n = 0;

	if (sscanf(t, "%1d.%3d.%3d%n", &a, &b, &c, &n) == 3 &&
	    (t[n] == ' ' || t[n] == '\0') && a == code / 100 &&
	    (a == 2 || a == 4 || a == 5)) {
		snprintf(status, len, "%d.%d.%d", a, b, c);
		return n + (t[n] == ' ');
	}
	return 0;
}

enum mg_err
smtp_reply_read(struct mg_stream *s, int *code, char *text, size_t textlen,
    char *status, size_t statuslen, unsigned *ext)
{
	char		line[REPLY_LINE_MAX + 1];
	size_t		n, tl = 0;
	int		c = 0, first = 1;
	enum mg_err	e;

	if (ext)
		*ext = 0;
	if (status && statuslen)
		status[0] = '\0';
	if (textlen)
		text[0] = '\0';
	for (int lines = 0; lines < REPLY_LINES_MAX; lines++) {
		e = mg_stream_getline(s, line, REPLY_LINE_MAX, &n);
		if (e == MG_ELIMIT)
			return MG_EPROTO;
		if (e != MG_OK)
			return e;
		if (n == 0)
			return MG_ETEMP;	/* connection closed */
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			n--;
		line[n] = '\0';
		if (n < 3 || !isdigit((unsigned char)line[0]) ||
		    !isdigit((unsigned char)line[1]) ||
		    !isdigit((unsigned char)line[2]) ||
		    (n > 3 && line[3] != ' ' && line[3] != '-') ||
		    line[0] < '2' || line[0] > '5')
			return MG_EPROTO;
		int lc = (line[0] - '0') * 100 + (line[1] - '0') * 10 +
		    (line[2] - '0');
		if (!first && lc != c)
			return MG_EPROTO;
		c = lc;
		const char *t = n > 4 ? line + 4 : "";
		if (ext && !first)
			parse_ext(t, ext, NULL);
		if (status && statuslen && status[0] == '\0')
			t += parse_status(t, c, status, statuslen);
		else if (status && statuslen) {
			char dummy[16];

			t += parse_status(t, c, dummy, sizeof(dummy));
		}
		if (textlen && tl + 2 < textlen && (first || ext == NULL)) {
			int w = snprintf(text + tl, textlen - tl, "%s%s",
			    first ? "" : " ", t);
			if (w > 0)
				tl += (size_t)w < textlen - tl ? (size_t)w :
				    textlen - tl - 1;
		}
		first = 0;
		if (n == 3 || line[3] == ' ') {
			*code = c;
			for (char *p = text; p && *p; p++)
				if ((unsigned char)*p < 0x20 || *p == 0x7f)
					*p = ' ';
			return MG_OK;
		}
	}
	return MG_EPROTO;
}

/* Why a read or write failed, in words for the result text. */
static const char *
io_why(enum mg_err e)
{
	if (errno == ETIMEDOUT)
		return "timed out waiting for the server";
	if (e == MG_EPROTO)
		return "malformed reply";
	return "connection closed or reset";
}

static void
default_status(int code, char *status, size_t len)
{
	if (status[0] == '\0')
		snprintf(status, len, "%d.0.0", code / 100);
}

/* One command, one reply. */
static enum mg_err
cmd(struct smtp_session *ss, int timeout_ms, int *code, char *text,
    size_t textlen, char *status, size_t slen, unsigned *ext,
    const char *fmt, ...) __attribute__((format(printf, 9, 10)));

static enum mg_err
cmd(struct smtp_session *ss, int timeout_ms, int *code, char *text,
    size_t textlen, char *status, size_t slen, unsigned *ext,
    const char *fmt, ...)
{
	char	line[2048];
	va_list	ap;
	int	n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		return MG_ELIMIT;
	memcpy(line + n, "\r\n", 2);
	mg_stream_set_timeout(ss->s, timeout_ms);
	if (mg_stream_write(ss->s, line, (size_t)n + 2) != MG_OK ||
	    mg_stream_flush(ss->s) != MG_OK)
		return MG_ETEMP;
	return smtp_reply_read(ss->s, code, text, textlen, status, slen, ext);
}


static enum mg_err
ehlo(struct smtp_session *ss, struct mg_result *r)
{
	char		text[512], st[16];
	int		code = 0;
	unsigned	ext = 0;
	enum mg_err	e;

	ss->size_limit = 0;
	e = cmd(ss, ss->p->command_timeout_ms, &code, text, sizeof(text), st,
	    sizeof(st), &ext, "EHLO %s", ss->p->helo);
	if (e == MG_OK && code / 100 == 5) {
		ext = 0;
		e = cmd(ss, ss->p->command_timeout_ms, &code, text,
		    sizeof(text), st, sizeof(st), NULL, "HELO %s",
		    ss->p->helo);
	}
	if (e != MG_OK) {
		mg_result_set(r, MG_R_TEMP, 0, "4.4.2", ss->remote, "lost "
		    "connection with %s during EHLO (%s)", ss->remote,
		    io_why(e));
		return MG_ETEMP;
	}
	if (code / 100 != 2) {
		default_status(code, st, sizeof(st));
		mg_result_set(r, code / 100 == 5 ? MG_R_PERM : MG_R_TEMP, code,
		    st, ss->remote, "%d %s (in reply to EHLO)", code, text);
		return MG_ETEMP;
	}
	/* A SIZE limit is enforced by the server's 552 to MAIL FROM. */
	ss->ext = ext;
	return MG_OK;
}

static enum mg_err
starttls(struct smtp_session *ss, struct mg_result *r)
{
	struct tls_client_params	 tp;
	struct mg_stream		*ts = NULL;
	char				 text[512], st[16], err[512];
	int				 code = 0;
	enum mg_err			 e;

	e = cmd(ss, ss->p->command_timeout_ms, &code, text, sizeof(text), st,
	    sizeof(st), NULL, "STARTTLS");
	if (e != MG_OK || code != 220) {
		mg_result_set(r, MG_R_TEMP, code, "4.7.5", ss->remote,
		    "STARTTLS refused by %s: %d %s", ss->remote, code, text);
		return MG_ETEMP;
	}
	/* Whatever came with or after the 220 in plaintext is dropped. */
	mg_stream_close(ss->s);
	ss->s = NULL;
	memset(&tp, 0, sizeof(tp));
	tp.servername = ss->mxname;
	tp.verify = ss->p->tls_policy == TLS_POLICY_VERIFY;
	tp.cafile = ss->p->cafile;
	tp.timeout_ms = ss->p->command_timeout_ms;
	tp.info = ss->tlsinfo;
	tp.infolen = sizeof(ss->tlsinfo);
	if ((e = tls_client(ss->fd, &tp, &ts, err, sizeof(err))) != MG_OK) {
		mg_result_set(r, MG_R_TEMP, 0, e == MG_EAUTH ? "4.7.5" :
		    "4.7.0", ss->remote, "%s", err);
		return e;
	}
	ss->s = ts;
	return ehlo(ss, r);
}

/* AUTH PLAIN, only ever under TLS. */
static enum mg_err
auth(struct smtp_session *ss, struct mg_result *r)
{
	char		plain[1100], text[512], st[16];
	unsigned char	b64[1600];
	int		code = 0, n;
	enum mg_err	e;

	if (ss->tlsinfo[0] == '\0') {
		mg_result_set(r, MG_R_TEMP, 0, "4.7.5", ss->remote, "no TLS "
		    "with %s: the password is never sent in clear",
		    ss->remote);
		return MG_ETEMP;
	}
	n = snprintf(plain, sizeof(plain), "%c%s%c%s", 0, ss->p->auth_user,
	    0, ss->p->auth_pass);
	if (n < 0 || (size_t)n >= sizeof(plain))
		return MG_ELIMIT;
	EVP_EncodeBlock(b64, (unsigned char *)plain, n);
	explicit_bzero(plain, sizeof(plain));
	e = cmd(ss, ss->p->command_timeout_ms, &code, text, sizeof(text), st,
	    sizeof(st), NULL, "AUTH PLAIN %s", b64);
	explicit_bzero(b64, sizeof(b64));
	if (e != MG_OK || code != 235) {
		mg_result_set(r, MG_R_TEMP, code, "4.7.8", ss->remote,
		    "login as %s refused by %s: %d %s", ss->p->auth_user,
		    ss->remote, code, text);
		return MG_EAUTH;
	}
	return MG_OK;
}

enum mg_err
smtp_open(const struct smtp_params *p, const char *mxname,
    const struct sockaddr *sa, socklen_t salen, struct smtp_session **out,
    struct mg_result *r)
{
	struct smtp_session	*ss;
	char			 addr[INET6_ADDRSTRLEN], text[512], st[16];
	int			 code = 0;
	enum mg_err		 e;

	*out = NULL;
	if ((ss = calloc(1, sizeof(*ss))) == NULL)
		return MG_ENOMEM;
	ss->p = p;
	ss->fd = -1;
	snprintf(ss->mxname, sizeof(ss->mxname), "%s", mxname);
	addr[0] = '\0';
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
		    addr, sizeof(addr));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6,
		    &((const struct sockaddr_in6 *)sa)->sin6_addr, addr,
		    sizeof(addr));
	snprintf(ss->remote, sizeof(ss->remote), "%s[%s]", mxname, addr);
	if ((ss->fd = net_connect_addr(sa, salen, p->connect_timeout_ms)) < 0) {
		mg_result_set(r, MG_R_TEMP, 0, "4.4.1", ss->remote,
		    "connect to %s: %s", ss->remote, strerror(errno));
		e = MG_ETEMP;
		goto fail;
	}
	if (p->implicit_tls) {
		struct tls_client_params	tp;
		char				err[512];

		memset(&tp, 0, sizeof(tp));
		tp.servername = mxname;
		tp.verify = p->tls_policy == TLS_POLICY_VERIFY;
		tp.cafile = p->cafile;
		tp.timeout_ms = p->command_timeout_ms;
		tp.info = ss->tlsinfo;
		tp.infolen = sizeof(ss->tlsinfo);
		if ((e = tls_client(ss->fd, &tp, &ss->s, err, sizeof(err)))) {
			mg_result_set(r, MG_R_TEMP, 0, "4.7.5", ss->remote,
			    "%s", err);
			goto fail;
		}
	} else if ((ss->s = mg_stream_fd(ss->fd, 0)) == NULL) {
		e = MG_ENOMEM;
		goto fail;
	}
	mg_stream_set_timeout(ss->s, p->command_timeout_ms);
	if ((e = smtp_reply_read(ss->s, &code, text, sizeof(text), st,
	    sizeof(st), NULL)) != MG_OK) {
		mg_result_set(r, MG_R_TEMP, 0, "4.4.2", ss->remote,
		    "no greeting from %s (%s)", ss->remote, io_why(e));
		goto fail;
	}
	if (code != 220) {
		default_status(code, st, sizeof(st));
		mg_result_set(r, MG_R_TEMP, code, st, ss->remote,
		    "%d %s (greeting)", code, text);
		e = MG_ETEMP;
		goto fail;
	}
	if ((e = ehlo(ss, r)) != MG_OK)
		goto fail;
	if (p->tls_policy != TLS_POLICY_NONE && !p->implicit_tls) {
		if (ss->ext & SMTP_EXT_STARTTLS) {
			e = starttls(ss, r);
			if (e != MG_OK && p->tls_policy == TLS_POLICY_MAY) {
				/* Opportunistic: say so, then go without. */
				struct smtp_params p2 = *p;

				mg_warn("%s: TLS failed (%s); retrying without "
				    "TLS as the policy for this domain is may",
				    ss->remote, r->text);
				smtp_close(ss);
				p2.tls_policy = TLS_POLICY_NONE;
				e = smtp_open(&p2, mxname, sa, salen, out, r);
				if (*out)
					(*out)->p = p;
				return e;
			}
			if (e != MG_OK)
				goto fail;
		} else if (p->tls_policy >= TLS_POLICY_ENCRYPT) {
			mg_result_set(r, MG_R_TEMP, 0, "4.7.5", ss->remote,
			    "%s does not offer STARTTLS, which the TLS policy "
			    "(%s) requires; not sent", ss->remote,
			    tls_policy_name(p->tls_policy));
			e = MG_ETEMP;
			goto fail;
		}
	}
	if (p->auth_user && (e = auth(ss, r)) != MG_OK)
		goto fail;
	ss->usable = 1;
	*out = ss;
	return MG_OK;
fail:
	smtp_close(ss);
	return e;
}

int
smtp_usable(const struct smtp_session *ss)
{
	return ss && ss->usable;
}

const char *
smtp_remote(const struct smtp_session *ss)
{
	return ss->remote;
}

const char *
smtp_tls_info(const struct smtp_session *ss)
{
	return ss->tlsinfo;
}

/* RFC 3461 xtext: '+', '=' and non-graphic bytes as +HH. */
static void
xtext(const char *in, char *out, size_t len)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)in; *p &&
	    n + 4 < len; p++) {
		if (*p < 33 || *p > 126 || *p == '+' || *p == '=')
			n += (size_t)snprintf(out + n, len - n, "+%02X", *p);
		else
			out[n++] = (char)*p;
	}
	out[n] = '\0';
}

static int
non_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return 1;
	return 0;
}

/* Streams the body with CRLF line ends and dot-stuffing. */
struct dotenc {
	struct mg_stream	*s;
	unsigned char		 buf[65536 + 8];
	size_t			 n;
	int			 bol;
	int			 cr;
};

static void
dot_flush(struct dotenc *d)
{
	mg_stream_write(d->s, d->buf, d->n);
	d->n = 0;
}

static void
dot_put(struct dotenc *d, const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = p[i];

		/* Room for the most one byte can become: CRLF + "..". */
		if (d->n + 4 > sizeof(d->buf))
			dot_flush(d);
		if (d->cr) {
			d->cr = 0;
			d->buf[d->n++] = '\r';
			d->buf[d->n++] = '\n';
			d->bol = 1;
			if (c == '\n')
				continue;
		}
		if (c == '\r') {
			d->cr = 1;
			continue;
		}
		if (c == '\n') {
			d->buf[d->n++] = '\r';
			d->buf[d->n++] = '\n';
			d->bol = 1;
			continue;
		}
		if (d->bol && c == '.')
			d->buf[d->n++] = '.';
		d->buf[d->n++] = c;
		d->bol = 0;
	}
}

static void
dot_end(struct dotenc *d)
{
	if (d->n + 5 > sizeof(d->buf))
		dot_flush(d);
	if (d->cr || !d->bol) {
		d->buf[d->n++] = '\r';
		d->buf[d->n++] = '\n';
	}
	memcpy(d->buf + d->n, ".\r\n", 3);
	d->n += 3;
	dot_flush(d);
}

static void
all_results(struct mg_result *res, const size_t n, enum mg_rclass cls,
    int code, const char *st, const char *remote, const char *text)
{
	for (size_t i = 0; i < n; i++)
		mg_result_set(&res[i], cls, code, st, remote, "%s", text);
}

static enum mg_rclass
cls_of(int code)
{
	return code / 100 == 2 ? MG_R_OK : code / 100 == 5 ? MG_R_PERM :
	    MG_R_TEMP;
}

enum mg_err
smtp_send(struct smtp_session *ss, const struct mg_envelope *env,
    const size_t *rcpts, size_t n, const char *body_path,
    const char *prepend, struct mg_result *res)
{
	struct maildrop_reader	*rd = NULL;
	struct dotenc		*d = NULL;
	char			 line[2048], text[512], st[16], err[512];
	char			 xt[600];
	unsigned char		 buf[65536];
	int			 code, pipelining, accepted = 0, *rok = NULL;
	size_t			 len;
	ssize_t			 got;
	enum mg_err		 e = MG_OK;
	int			 utf8;

	pipelining = (ss->ext & SMTP_EXT_PIPELINING) != 0;
	if ((rok = calloc(n ? n : 1, sizeof(*rok))) == NULL ||
	    (d = calloc(1, sizeof(*d))) == NULL) {
		all_results(res, n, MG_R_TEMP, 0, "4.3.0", ss->remote,
		    "out of memory");
		e = MG_ENOMEM;
		goto out;
	}
	if ((ss->ext & SMTP_EXT_SIZE) && ss->size_limit &&
	    env->size > ss->size_limit) {
		all_results(res, n, MG_R_PERM, 552, "5.3.4", ss->remote,
		    "message too large for the recipient's server");
		goto out;
	}
	if ((e = maildrop_open(body_path, &rd, err, sizeof(err))) != MG_OK) {
		all_results(res, n, MG_R_TEMP, 0, "4.3.0", ss->remote, err);
		goto out;
	}
	utf8 = non_ascii(env->sender);
	for (size_t i = 0; i < n; i++)
		utf8 |= non_ascii(env->rcpts[rcpts[i]].addr);
	/* MAIL FROM with the extensions the server offered. */
	len = (size_t)snprintf(line, sizeof(line), "MAIL FROM:<%s>",
	    env->sender);
	if (ss->ext & SMTP_EXT_SIZE)
		len += (size_t)snprintf(line + len, sizeof(line) - len,
		    " SIZE=%llu", (unsigned long long)env->size);
	if (env->body == MG_BODY_8BITMIME && (ss->ext & SMTP_EXT_8BITMIME))
		len += (size_t)snprintf(line + len, sizeof(line) - len,
		    " BODY=8BITMIME");
	if (utf8 && (ss->ext & SMTP_EXT_SMTPUTF8))
		len += (size_t)snprintf(line + len, sizeof(line) - len,
		    " SMTPUTF8");
	if (ss->ext & SMTP_EXT_DSN) {
		if (env->ret)
			len += (size_t)snprintf(line + len, sizeof(line) - len,
			    " RET=%s", env->ret == MG_RET_FULL ? "FULL" :
			    "HDRS");
		if (env->envid) {
			xtext(env->envid, xt, sizeof(xt));
			len += (size_t)snprintf(line + len, sizeof(line) - len,
			    " ENVID=%s", xt);
		}
	}
	mg_stream_set_timeout(ss->s, ss->p->command_timeout_ms);
	mg_stream_printf(ss->s, "%s\r\n", line);
	if (!pipelining) {
		mg_stream_flush(ss->s);
		goto mail_reply;
	}
rcpt_cmds:
	for (size_t i = 0; i < n; i++) {
		const struct mg_rcpt *rc = &env->rcpts[rcpts[i]];

		len = (size_t)snprintf(line, sizeof(line), "RCPT TO:<%s>",
		    rc->addr);
		if ((ss->ext & SMTP_EXT_DSN) && rc->notify)
			len += (size_t)snprintf(line + len, sizeof(line) - len,
			    " NOTIFY=%s", mg_notify_str(rc->notify));
		if ((ss->ext & SMTP_EXT_DSN) && rc->orcpt) {
			const char *o = strncasecmp(rc->orcpt, "rfc822;", 7)
			    == 0 ? rc->orcpt + 7 : rc->orcpt;

			xtext(o, xt, sizeof(xt));
			len += (size_t)snprintf(line + len, sizeof(line) - len,
			    " ORCPT=rfc822;%s", xt);
		}
		mg_stream_printf(ss->s, "%s\r\n", line);
		if (!pipelining) {
			mg_stream_flush(ss->s);
			if ((e = smtp_reply_read(ss->s, &code, text,
			    sizeof(text), st, sizeof(st), NULL)) != MG_OK)
				goto lost;
			default_status(code, st, sizeof(st));
			mg_result_set(&res[i], cls_of(code), code, st,
			    ss->remote, "%d %s%s%s", code, st, " ", text);
			if (code / 100 == 2)
				rok[i] = 1, accepted++;
			if (code == 421)
				goto gone;
		}
	}
	if (!pipelining) {
		if (accepted == 0)
			goto rset;
		mg_stream_printf(ss->s, "DATA\r\n");
		mg_stream_flush(ss->s);
		goto data_reply;
	}
	mg_stream_printf(ss->s, "DATA\r\n");
	if (mg_stream_flush(ss->s) != MG_OK)
		goto lost;
mail_reply:
	if ((e = smtp_reply_read(ss->s, &code, text, sizeof(text), st,
	    sizeof(st), NULL)) != MG_OK)
		goto lost;
	default_status(code, st, sizeof(st));
	if (code / 100 != 2) {
		/* The sender was refused: that is every recipient's fate. */
		char why[600];

		snprintf(why, sizeof(why), "%d %s %s (in reply to MAIL FROM)",
		    code, st, text);
		all_results(res, n, cls_of(code), code, st, ss->remote, why);
		if (code == 421)
			goto gone;
		if (pipelining) {
			/* Drain the RCPT and DATA replies already queued. */
			for (size_t i = 0; i <= n; i++)
				if (smtp_reply_read(ss->s, &code, text,
				    sizeof(text), st, sizeof(st), NULL))
					goto lost_quiet;
			if (code == 354)
				goto empty_data;
		}
		goto rset;
	}
	if (!pipelining)
		goto rcpt_cmds;
	for (size_t i = 0; i < n; i++) {
		if ((e = smtp_reply_read(ss->s, &code, text, sizeof(text), st,
		    sizeof(st), NULL)) != MG_OK)
			goto lost;
		default_status(code, st, sizeof(st));
		mg_result_set(&res[i], cls_of(code), code, st, ss->remote,
		    "%d %s %s", code, st, text);
		if (code / 100 == 2)
			rok[i] = 1, accepted++;
		if (code == 421)
			goto gone;
	}
data_reply:
	if ((e = smtp_reply_read(ss->s, &code, text, sizeof(text), st,
	    sizeof(st), NULL)) != MG_OK)
		goto lost;
	if (code != 354) {
		default_status(code, st, sizeof(st));
		for (size_t i = 0; i < n; i++)
			if (rok[i])
				mg_result_set(&res[i], cls_of(code) == MG_R_OK ?
				    MG_R_TEMP : cls_of(code), code, st,
				    ss->remote, "%d %s %s (in reply to DATA)",
				    code, st, text);
		if (code == 421)
			goto gone;
		goto rset;
	}
	if (accepted == 0)
		goto empty_data;
	/* The message, CRLF and dot-stuffed, after our trace header. */
	mg_stream_set_timeout(ss->s, ss->p->command_timeout_ms);
	d->s = ss->s;
	d->bol = 1;
	if (prepend)
		mg_stream_write(ss->s, prepend, strlen(prepend));
	while ((got = maildrop_read(rd, buf, sizeof(buf), &e)) > 0)
		dot_put(d, buf, (size_t)got);
	if (got < 0) {
		/* Our copy is bad: end the transfer without a dot. */
		all_results(res, n, MG_R_TEMP, 0, "4.3.0", ss->remote,
		    "body file corrupt; not sent");
		ss->usable = 0;
		goto out;
	}
	if (ss->p->before_dot)
		ss->p->before_dot(ss->p->before_dot_arg);
	dot_end(d);
	mg_stream_set_timeout(ss->s, ss->p->data_timeout_ms);
	if (mg_stream_flush(ss->s) != MG_OK ||
	    (e = smtp_reply_read(ss->s, &code, text, sizeof(text), st,
	    sizeof(st), NULL)) != MG_OK)
		goto lost;
	default_status(code, st, sizeof(st));
	for (size_t i = 0; i < n; i++)
		if (rok[i]) {
			mg_result_set(&res[i], cls_of(code), code, st,
			    ss->remote, "%d %s %s", code, st, text);
			res[i].next_hop_dsn = (ss->ext & SMTP_EXT_DSN) != 0;
		}
	if (code == 421)
		goto gone;
	goto out;
empty_data:
	mg_stream_printf(ss->s, ".\r\n");
	if (mg_stream_flush(ss->s) != MG_OK ||
	    smtp_reply_read(ss->s, &code, text, sizeof(text), st, sizeof(st),
	    NULL) != MG_OK)
		goto lost_quiet;
rset:
	if (cmd(ss, ss->p->command_timeout_ms, &code, text, sizeof(text), st,
	    sizeof(st), NULL, "RSET") != MG_OK || code / 100 != 2)
		ss->usable = 0;
	goto out;
lost:
	/* Everything not yet answered is deferred: we do not know. */
	for (size_t i = 0; i < n; i++)
		if (res[i].cls == MG_R_NONE || rok[i])
			mg_result_set(&res[i], MG_R_TEMP, 0, "4.4.2",
			    ss->remote, "lost connection with %s (%s)",
			    ss->remote, io_why(e));
lost_quiet:
	ss->usable = 0;
	e = MG_ETEMP;
	goto out;
gone:
	/* 421: the server is closing; the rest waits for another try. */
	for (size_t i = 0; i < n; i++)
		if (res[i].cls == MG_R_NONE || (rok[i] && res[i].cls ==
		    MG_R_OK && code == 421))
			mg_result_set(&res[i], MG_R_TEMP, code, "4.3.2",
			    ss->remote, "%d %s (server closing)", code, text);
	ss->usable = 0;
	e = MG_ETEMP;
out:
	for (size_t i = 0; i < n; i++)
		if (res[i].cls == MG_R_NONE)
			mg_result_set(&res[i], MG_R_TEMP, 0, "4.4.2",
			    ss->remote, "no answer for this recipient");
	maildrop_close(rd);
	free(d);
	free(rok);
	return e == MG_OK && ss->usable ? MG_OK : MG_ETEMP;
}

void
smtp_close(struct smtp_session *ss)
{
	char	text[64], st[16];
	int	code;

	if (ss == NULL)
		return;
	if (ss->s && ss->usable) {
		ss->usable = 0;
		cmd(ss, 5000, &code, text, sizeof(text), st, sizeof(st), NULL,
		    "QUIT");
	}
	mg_stream_close(ss->s);
	if (ss->fd >= 0)
		close(ss->fd);
	free(ss);
}
