/*
 * smtp_server.c - the gateway's ESMTP server (RFC 5321).
 *
 * Everything a client sends is hostile.  Command lines are bounded
 * (1000 bytes), a session ends after smtpd_max_errors errors or
 * smtpd_timeout of silence, recipients and message size are limited.
 * Hardening against the known attacks:
 *   - DATA ends only at CRLF "." CRLF; "\n.\n", "\n.\r\n" and "\r.\r\n"
 *     are message content (SMTP smuggling), and the stored message
 *     keeps them as data, which delivery later sends as harmless lines.
 *   - After STARTTLS the plaintext stream, with anything the client
 *     pipelined behind the command, is thrown away, and the session
 *     starts over (a fresh EHLO is required): no pre-TLS byte can act
 *     as a post-TLS command.
 *   - AUTH is offered and accepted only under TLS.
 *   - Never an open relay: without AUTH only the sites' domains are
 *     accepted as recipients; an authenticated site may send only as
 *     its own sender domains.
 * A message is committed (body file fsync'd, record committed) before
 * the 250 reply.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "mgate/addr.h"
#include "mgate/envelope.h"
#include "mgate/log.h"
#include "mgate/maildrop.h"
#include "mgate/packer.h"
#include "mgate/passwd.h"
#include "mgate/smtp_server.h"
#include "mgate/spool.h"
#include "mgate/stream.h"
#include "mgate/sync.h"
#include "mgate/transport_tls.h"

#define CMD_MAX		1000
#define MAX_LISTEN	16

static pid_t daemon_pid;	/* woken up when mail is queued */

struct session {
	const struct mg_config	*cfg;
	struct tls_server_ctx	*tls;
	int			 fd;
	struct mg_stream	*s;
	char			 client[128];
	char			 helo[256];
	int			 esmtp;
	int			 tls_on;
	const struct mg_peer	*auth;		/* authenticated site */
	unsigned		 errors;
	int			 quit;		/* end without another reply */
	/* the transaction */
	int			 in_mail;
	struct mg_envelope	 env;
	const struct mg_peer	*via;		/* inbound for this site */
	uint64_t		 declared_size;
	struct maildrop_writer	*bdat;		/* BDAT in progress */
	int			 bdat_cr;	/* a CR ended the last chunk */
	int			 bdat_failed;
	struct spool		*sp;		/* opened at the first message */
	int			 keep_sp;	/* sp belongs to the worker */
};

static void __attribute__((format(printf, 2, 3)))
reply(struct session *ss, const char *fmt, ...)
{
	char	line[1024];
	va_list	ap;
	int	n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)sizeof(line) - 3;
	/* Text echoed from the client (a parameter name) may hold a bare
	 * CR or other control bytes: never let it break the reply line. */
	for (int i = 0; i < n; i++)
		if (((unsigned char)line[i] < 0x20 && line[i] != '\t') ||
		    line[i] == 0x7f)
			line[i] = '?';
	memcpy(line + n, "\r\n", 2);
	mg_stream_write(ss->s, line, (size_t)n + 2);
	mg_stream_flush(ss->s);
	if (line[0] == '4' || line[0] == '5')
		ss->errors++;
}

static void
reset_txn(struct session *ss)
{
	mg_envelope_free(&ss->env);
	memset(&ss->env, 0, sizeof(ss->env));
	ss->in_mail = 0;
	ss->via = NULL;
	ss->declared_size = 0;
	maildrop_abort(ss->bdat);
	ss->bdat = NULL;
	ss->bdat_cr = 0;
	ss->bdat_failed = 0;
}

static int
in_list(const char *list, const char *dom)
{
	size_t dl = strlen(dom);

	for (const char *q = list ? list : ""; *q; ) {
		size_t n;

		while (*q == ',' || *q == ' ')
			q++;
		n = strcspn(q, ", ");
		if (n == dl && n && strncasecmp(q, dom, n) == 0)
			return 1;
		q += n;
	}
	return 0;
}

static const struct mg_peer *
site_for_domain(const struct mg_config *cfg, const char *dom)
{
	for (const struct mg_peer *p = cfg->peers; p; p = p->next)
		if (in_list(p->domains, dom))
			return p;
	return NULL;
}

/*
 * Is addr one of the site's recipients?  Entries are addresses or bare
 * local parts; "+detail" and case do not matter.
 */
static int
site_has_rcpt(const struct mg_peer *site, const char *addr)
{
	char		 list[4096], *tok, *save = NULL;
	const char	*at = strrchr(addr, '@');
	size_t		 ll, lp;

	if (site->recipients == NULL)
		return 1;
	if (at == NULL)
		return 0;
	ll = (size_t)(at - addr);
	lp = strcspn(addr, "+");
	if (lp > ll)
		lp = ll;
	snprintf(list, sizeof(list), "%s", site->recipients);
	for (tok = strtok_r(list, ", \t", &save); tok;
	    tok = strtok_r(NULL, ", \t", &save)) {
		const char *tat = strrchr(tok, '@');
		size_t	    tl = tat ? (size_t)(tat - tok) : strlen(tok);

		if (tat && strcasecmp(tat, at) != 0)
			continue;
		if ((tl == lp && strncasecmp(tok, addr, lp) == 0) ||
		    (tl == ll && strncasecmp(tok, addr, ll) == 0))
			return 1;
	}
	return 0;
}

static const char *
domain_of(const char *a)
{
	const char *at = strrchr(a, '@');

	return at ? at + 1 : "";
}

/* "<addr> PARAM=... PARAM=..." after "MAIL FROM:" or "RCPT TO:". */
static int
parse_path(const char *arg, char *addr, size_t alen, char **params)
{
	const char	*p = arg, *end;
	size_t		 n;

	while (*p == ' ')
		p++;
	if (*p != '<')
		return -1;
	if ((end = strchr(p, '>')) == NULL)
		return -1;
	n = (size_t)(end - p - 1);
	if (n >= alen)
		return -1;
	memcpy(addr, p + 1, n);
	addr[n] = '\0';
	/* Source routes (RFC 5321 C): drop "@a,@b:". */
	if (addr[0] == '@') {
		char *colon = strchr(addr, ':');

		if (colon == NULL)
			return -1;
		memmove(addr, colon + 1, strlen(colon + 1) + 1);
	}
	*params = (char *)end + 1;
	return 0;
}

/* Next "KEY=VALUE" or "KEY" from *p; NULL at the end. */
static char *
next_param(char **p, char **val)
{
	char *k;

	while (**p == ' ')
		(*p)++;
	if (**p == '\0')
		return NULL;
	k = *p;
	*p += strcspn(*p, " ");
	if (**p)
		*(*p)++ = '\0';
	if ((*val = strchr(k, '=')) != NULL)
		*(*val)++ = '\0';
	return k;
}

/* RFC 3461 xtext decoding; -1 if malformed. */
static int
xtext_decode(const char *in, char *out, size_t len)
{
	size_t n = 0;

	for (; *in; in++) {
		if (n + 1 >= len)
			return -1;
		if (*in == '+') {
			unsigned v;

			if (!isxdigit((unsigned char)in[1]) ||
			    !isxdigit((unsigned char)in[2]) ||
			    sscanf(in + 1, "%2x", &v) != 1)
				return -1;
			out[n++] = (char)v;
			in += 2;
		} else if ((unsigned char)*in < 33 || *in == '=' ||
		    (unsigned char)*in > 126)
			return -1;
		else
			out[n++] = *in;
	}
	out[n] = '\0';
	return 0;
}

static void
cmd_mail(struct session *ss, char *arg)
{
	char	addr[MG_ADDR_MAX + 2], *params, *k, *v, buf[256];

	if (ss->helo[0] == '\0') {
		reply(ss, "503 5.5.1 Say EHLO first");
		return;
	}
	if (ss->in_mail) {
		reply(ss, "503 5.5.1 Nested MAIL command");
		return;
	}
	if (parse_path(arg, addr, sizeof(addr), &params) < 0 ||
	    (addr[0] && mg_addr_valid(addr) != 0)) {
		reply(ss, "501 5.1.7 Bad sender address syntax");
		return;
	}
	reset_txn(ss);	/* what a refused MAIL left (ENVID, SIZE) */
	ss->env.priority = MG_PRIO_NORMAL;
	while ((k = next_param(&params, &v)) != NULL) {
		if (!strcasecmp(k, "SIZE") && v) {
			ss->declared_size = strtoull(v, NULL, 10);
			if (ss->declared_size > ss->cfg->message_size_limit) {
				reply(ss, "552 5.3.4 Message size exceeds fixed "
				    "limit");
				return;
			}
		} else if (!strcasecmp(k, "BODY") && v) {
			ss->env.body = !strcasecmp(v, "8BITMIME") ?
			    MG_BODY_8BITMIME : MG_BODY_7BIT;
		} else if (!strcasecmp(k, "RET") && v) {
			ss->env.ret = !strcasecmp(v, "FULL") ? MG_RET_FULL :
			    !strcasecmp(v, "HDRS") ? MG_RET_HDRS : -1;
			if (ss->env.ret < 0) {
				ss->env.ret = 0;
				reply(ss, "501 5.5.4 Bad RET parameter");
				return;
			}
		} else if (!strcasecmp(k, "ENVID") && v) {
			if (xtext_decode(v, buf, sizeof(buf)) < 0 ||
			    strlen(buf) > 100) {
				reply(ss, "501 5.5.4 Bad ENVID parameter");
				return;
			}
			free(ss->env.envid);
			ss->env.envid = strdup(buf);
		} else if (!strcasecmp(k, "SMTPUTF8") && !v) {
			continue;
		} else if (!strcasecmp(k, "AUTH") && v) {
			continue;	/* RFC 4954: informational here */
		} else {
			reply(ss, "555 5.5.4 Unsupported parameter %.40s", k);
			return;
		}
	}
	if (ss->auth && addr[0] && !in_list(ss->auth->sender_domains,
	    domain_of(addr))) {
		reply(ss, "553 5.7.1 <%s>: Sender address not owned by site "
		    "%s", addr, ss->auth->name);
		return;
	}
	if ((ss->env.sender = strdup(addr)) == NULL ||
	    (ss->env.user = strdup("")) == NULL) {
		reply(ss, "451 4.3.0 Out of memory");
		return;
	}
	ss->in_mail = 1;
	reply(ss, "250 2.1.0 Ok");
}

static void
cmd_rcpt(struct session *ss, char *arg)
{
	char			 addr[MG_ADDR_MAX + 2], *params, *k, *v;
	char			 orcpt[600] = "", *a, *o;
	const struct mg_peer	*site;
	int			 notify = 0;

	if (!ss->in_mail) {
		reply(ss, "503 5.5.1 Need MAIL command");
		return;
	}
	if (parse_path(arg, addr, sizeof(addr), &params) < 0 || !addr[0] ||
	    mg_addr_valid(addr) != 0) {
		reply(ss, "501 5.1.3 Bad recipient address syntax");
		return;
	}
	while ((k = next_param(&params, &v)) != NULL) {
		if (!strcasecmp(k, "NOTIFY") && v) {
			if ((notify = mg_notify_parse(v)) < 0) {
				reply(ss, "501 5.5.4 Bad NOTIFY parameter");
				return;
			}
		} else if (!strcasecmp(k, "ORCPT") && v) {
			if (strncasecmp(v, "rfc822;", 7) != 0 ||
			    xtext_decode(v + 7, orcpt + 7, sizeof(orcpt) - 7)
			    < 0) {
				reply(ss, "501 5.5.4 Bad ORCPT parameter");
				return;
			}
			memcpy(orcpt, "rfc822;", 7);
		} else {
			reply(ss, "555 5.5.4 Unsupported parameter %.40s", k);
			return;
		}
	}
	if (ss->env.nrcpt >= ss->cfg->recipient_limit) {
		reply(ss, "452 4.5.3 Too many recipients");
		return;
	}
	site = site_for_domain(ss->cfg, domain_of(addr));
	if (ss->auth == NULL || site != NULL) {
		/* Inbound: only for a site, one site per transaction. */
		if (site == NULL) {
			reply(ss, "554 5.7.1 <%s>: Relay access denied", addr);
			return;
		}
		if (!site_has_rcpt(site, addr)) {
			reply(ss, "550 5.1.1 <%s>: Recipient address rejected: "
			    "no such user here", addr);
			return;
		}
		if (ss->env.nrcpt > 0 && ss->via != site) {
			reply(ss, "452 4.5.3 <%s>: Send it in another "
			    "transaction", addr);
			return;
		}
		ss->via = site;
	} else if (ss->via != NULL) {
		reply(ss, "452 4.5.3 <%s>: Send it in another transaction",
		    addr);
		return;
	}
	a = strdup(addr);
	o = orcpt[0] ? strdup(orcpt) : NULL;
	if (a == NULL || mg_envelope_add_rcpt(&ss->env, a, o,
	    (unsigned)notify) < 0) {
		reply(ss, "451 4.3.0 Out of memory");
		return;
	}
	reply(ss, "250 2.1.5 Ok");
}

static enum mg_err
start_message(struct session *ss, struct maildrop_writer **w)
{
	char		 date[64], line[1024];
	time_t		 now = time(NULL);
	struct tm	 tm;
	enum mg_err	 e;
	int		 n;

	ss->env.arrival = (uint64_t)now;
	if (ss->auth) {
		free(ss->env.peer);
		ss->env.peer = strdup(ss->auth->name);
	}
	if (ss->via) {
		free(ss->env.via);
		ss->env.via = strdup(ss->via->name);
	}
	if ((e = maildrop_create_in(ss->cfg->spool_directory, "queue",
	    &ss->env, w)) != MG_OK)
		return e;
	if (ss->auth && (ss->env.peer_qid = strdup(ss->env.qid)) == NULL)
		return MG_ENOMEM;
	if ((e = maildrop_put_envelope(*w, &ss->env)) != MG_OK)
		return e;
	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	n = snprintf(line, sizeof(line), "Received: from %s (%s)\n\tby %s "
	    "(mgate) with %s%s%s id %s%s%s%s;\n\t%s\n", ss->helo, ss->client,
	    ss->cfg->myhostname, ss->esmtp ? "ESMTP" : "SMTP",
	    ss->tls_on ? "S" : "", ss->auth ? "A" : "", ss->env.qid,
	    ss->env.nrcpt == 1 ? "\n\tfor <" : "", ss->env.nrcpt == 1 ?
	    ss->env.rcpts[0].addr : "", ss->env.nrcpt == 1 ? ">" : "", date);
	for (char *p = line; *p; p++)	/* HELO text is the client's */
		if ((unsigned char)*p < 0x20 && *p != '\n' && *p != '\t')
			*p = '?';
	return maildrop_put_content(*w, line, (size_t)n);
}

/* Commit a finished message: body durable, then the record. */
static void
finish_message(struct session *ss, struct maildrop_writer *w, int toobig)
{
	char		 err[512];
	enum mg_err	 e = MG_OK;

	if (toobig) {
		maildrop_abort(w);
		reply(ss, "552 5.3.4 Message size exceeds fixed limit");
		return;
	}
	ss->env.size = maildrop_size(w);
	if ((e = maildrop_commit(w)) != MG_OK) {
		reply(ss, "451 4.3.0 Cannot store the message (%s)",
		    mg_strerror(e));
		return;
	}
	/*
	 * The queue database is opened once per session, at its first
	 * message, and kept for the next ones: joining the environment
	 * (regions, five databases, failchk) costs more than a commit.
	 */
	if (ss->sp == NULL && (e = spool_open(ss->cfg->spool_directory, 0,
	    &ss->sp, err, sizeof(err))) != MG_OK)
		mg_warn("%s: %s", ss->env.qid, err);
	if (e == MG_OK)
		e = spool_msg_create(ss->sp, &ss->env);
	if (e != MG_OK) {
		char path[4200];

		snprintf(path, sizeof(path), "%s/queue/%s",
		    ss->cfg->spool_directory, ss->env.qid);
		unlink(path);
		reply(ss, "451 4.3.0 Cannot queue the message (%s)",
		    mg_strerror(e));
		return;
	}
	mg_info("%s: client=%s, from=<%s>, size=%llu, nrcpt=%zu%s%s%s%s",
	    ss->env.qid, ss->client, ss->env.sender,
	    (unsigned long long)ss->env.size, ss->env.nrcpt,
	    ss->via ? ", for site " : "", ss->via ? ss->via->name : "",
	    ss->auth ? ", sasl=" : "", ss->auth ? ss->auth->name : "");
	reply(ss, "250 2.0.0 Ok: queued as %s", ss->env.qid);
	if (ss->via == NULL && daemon_pid > 1)
		kill(daemon_pid, SIGHUP);	/* deliver it now */
}

static void
cmd_data(struct session *ss)
{
	struct maildrop_writer	*w = NULL;
	char			*line = NULL;
	size_t			 n;
	uint64_t		 total = 0;
	int			 bol = 1, toobig = 0, failed = 0, held_cr = 0;
	enum mg_err		 e;

	if (!ss->in_mail || ss->env.nrcpt == 0) {
		reply(ss, "503 5.5.1 Need RCPT command");
		return;
	}
	if (ss->bdat) {
		reply(ss, "503 5.5.1 DATA after BDAT");
		return;
	}
	if ((line = malloc(65537)) == NULL ||
	    start_message(ss, &w) != MG_OK) {
		free(line);
		maildrop_abort(w);
		reply(ss, "451 4.3.0 Cannot store the message");
		reset_txn(ss);
		return;
	}
	reply(ss, "354 End data with <CR><LF>.<CR><LF>");
	for (;;) {
		e = mg_stream_getline(ss->s, line, 65536, &n);
		if ((e != MG_OK && e != MG_ELIMIT) || n == 0) {
			/* The client went away: nothing was accepted. */
			maildrop_abort(w);
			free(line);
			reset_txn(ss);
			ss->quit = 1;
			return;
		}
		/*
		 * A CR that ended the previous piece (a line longer than the
		 * buffer) pairs with an LF that starts this one.
		 */
		if (held_cr) {
			held_cr = 0;
			if (line[0] == '\n') {
				if (!toobig && !failed &&
				    maildrop_put_content(w, "\n", 1) != MG_OK)
					failed = 1;
				total++;
				bol = 1;
				if (n == 1)
					continue;
				memmove(line, line + 1, --n);
			} else {
				if (!toobig && !failed &&
				    maildrop_put_content(w, "\r", 1) != MG_OK)
					failed = 1;
				total++;
				bol = 0;
			}
		}
		/* Only CRLF . CRLF ends the data: a line that starts right
		 * after a CRLF and is exactly ".\r\n". */
		if (bol && n == 3 && memcmp(line, ".\r\n", 3) == 0)
			break;
		if (line[n - 1] == '\r') {
			held_cr = 1;
			if (--n == 0)
				continue;
		}
		{
			const char	*p = line;
			size_t		 len = n;
			int		 crlf = n >= 2 && line[n - 2] == '\r' &&
			    line[n - 1] == '\n';

			if (bol && p[0] == '.') {	/* dot-stuffing */
				p++;
				len--;
			}
			if (crlf)	/* store LF line ends */
				len--, ((char *)p)[len - 1] = '\n';
			total += len;
			if (total > ss->cfg->message_size_limit)
				toobig = 1;
			if (!toobig && !failed &&
			    maildrop_put_content(w, p, len) != MG_OK)
				failed = 1;
			bol = crlf;
		}
	}
	free(line);
	if (failed) {
		maildrop_abort(w);
		reply(ss, "451 4.3.0 Cannot store the message");
	} else
		finish_message(ss, w, toobig);
	reset_txn(ss);
}

static void
cmd_bdat(struct session *ss, char *arg)
{
	char		*end = arg, buf[65536];
	uint64_t	 size = 0, left;
	int		 last = 0;
	size_t		 want;

	errno = 0;
	if (isdigit((unsigned char)*arg))
		size = strtoull(arg, &end, 10);
	if (end == arg || errno == ERANGE || (*end != ' ' && *end != '\0')) {
		reply(ss, "501 5.5.4 Syntax: BDAT size [LAST]");
		return;
	}
	while (*end == ' ')
		end++;
	if (!strcasecmp(end, "LAST"))
		last = 1;
	else if (*end) {
		reply(ss, "501 5.5.4 Syntax: BDAT size [LAST]");
		return;
	}
	if (size > ss->cfg->message_size_limit) {
		/* We will not read that much: refuse and hang up. */
		reply(ss, "552 5.3.4 Chunk larger than the message size "
		    "limit");
		ss->quit = 1;
		return;
	}
	/* The chunk is read whatever happens: it is not commands. */
	if (!ss->in_mail || ss->env.nrcpt == 0) {
		for (left = size; left > 0; left -= want) {
			want = left < sizeof(buf) ? (size_t)left : sizeof(buf);
			if (mg_stream_read_full(ss->s, buf, want, NULL))
				return;
		}
		reply(ss, "503 5.5.1 Need RCPT command");
		return;
	}
	if (ss->bdat == NULL && start_message(ss, &ss->bdat) != MG_OK)
		ss->bdat_failed = 1;
	for (left = size; left > 0; left -= want) {
		want = left < sizeof(buf) ? (size_t)left : sizeof(buf);
		if (mg_stream_read_full(ss->s, buf, want, NULL) != MG_OK) {
			reset_txn(ss);
			ss->quit = 1;
			return;
		}
		if (ss->bdat_failed)
			continue;
		/* CRLF -> LF, across chunk boundaries too. */
		size_t k = 0;
		char   out[sizeof(buf) + 1];

		if (ss->bdat_cr && buf[0] != '\n')
			out[k++] = '\r';
		ss->bdat_cr = 0;
		for (size_t i = 0; i < want; i++) {
			if (buf[i] == '\r' && i + 1 == want) {
				ss->bdat_cr = 1;
				continue;
			}
			if (buf[i] == '\r' && buf[i + 1] == '\n')
				continue;
			out[k++] = buf[i];
		}
		if (maildrop_size(ss->bdat) + k > ss->cfg->message_size_limit ||
		    maildrop_put_content(ss->bdat, out, k) != MG_OK)
			ss->bdat_failed = 2;
	}
	if (!last) {
		if (ss->bdat_failed)
			reply(ss, "%s", ss->bdat_failed == 2 ? "552 5.3.4 "
			    "Message size exceeds fixed limit" :
			    "451 4.3.0 Cannot store the message");
		else
			reply(ss, "250 2.0.0 %llu octets received",
			    (unsigned long long)size);
		return;
	}
	if (ss->bdat_failed) {
		reply(ss, "%s", ss->bdat_failed == 2 ? "552 5.3.4 Message "
		    "size exceeds fixed limit" : "451 4.3.0 Cannot store "
		    "the message");
	} else {
		if (ss->bdat_cr)
			maildrop_put_content(ss->bdat, "\r", 1);
		finish_message(ss, ss->bdat, 0);
		ss->bdat = NULL;
	}
	reset_txn(ss);
}

static void
cmd_ehlo(struct session *ss, char *arg, int esmtp)
{
	while (*arg == ' ')
		arg++;
	if (*arg == '\0' || strlen(arg) > 255) {
		reply(ss, "501 5.5.4 Syntax: %s hostname", esmtp ? "EHLO" :
		    "HELO");
		return;
	}
	reset_txn(ss);
	snprintf(ss->helo, sizeof(ss->helo), "%s", arg);
	for (char *p = ss->helo; *p; p++)
		if (!isgraph((unsigned char)*p))
			*p = '?';
	ss->esmtp = esmtp;
	if (!esmtp) {
		reply(ss, "250 %s", ss->cfg->myhostname);
		return;
	}
	mg_stream_printf(ss->s, "250-%s\r\n250-PIPELINING\r\n250-SIZE %llu\r\n"
	    "250-8BITMIME\r\n250-SMTPUTF8\r\n250-DSN\r\n"
	    "250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n",
	    ss->cfg->myhostname,
	    (unsigned long long)ss->cfg->message_size_limit);
	if (ss->tls && !ss->tls_on)
		mg_stream_printf(ss->s, "250-STARTTLS\r\n");
	if (ss->tls_on && !ss->auth)
		mg_stream_printf(ss->s, "250-AUTH PLAIN LOGIN\r\n");
	if (ss->auth)
		mg_stream_printf(ss->s, "250-X-MGATE-SYNC\r\n");
	reply(ss, "250 HELP");
}

static void
cmd_starttls(struct session *ss)
{
	struct mg_stream	*ts = NULL;
	char			 info[128], err[256];

	if (ss->tls == NULL || ss->tls_on) {
		reply(ss, "502 5.5.1 STARTTLS not available");
		return;
	}
	reply(ss, "220 2.0.0 Ready to start TLS");
	/*
	 * Drop the plaintext stream and whatever the client pipelined
	 * behind STARTTLS: none of it may count as said under TLS.
	 */
	mg_stream_close(ss->s);
	ss->s = NULL;
	if (tls_server(ss->fd, ss->tls, (int)ss->cfg->smtpd_timeout * 1000,
	    &ts, info, sizeof(info), err, sizeof(err)) != MG_OK) {
		mg_info("%s: %s", ss->client, err);
		ss->quit = 1;
		return;
	}
	ss->s = ts;
	ss->tls_on = 1;
	ss->helo[0] = '\0';
	ss->auth = NULL;
	reset_txn(ss);
	mg_info("%s: TLS established (%s)", ss->client, info);
}

/* Decoded base64 into out (NUL-terminated); -1 if malformed. */
static int
b64_decode(const char *in, char *out, size_t len)
{
	size_t	n = strlen(in);
	int	r;

	if (n == 0 || n % 4 || (n / 4) * 3 + 1 > len)
		return -1;
	if ((r = EVP_DecodeBlock((unsigned char *)out,
	    (const unsigned char *)in, (int)n)) < 0)
		return -1;
	if (in[n - 1] == '=')
		r--;
	if (in[n - 2] == '=')
		r--;
	out[r] = '\0';
	return r;
}

static int
read_cmd(struct session *ss, char *line, size_t max);

static void
auth_check(struct session *ss, const char *user, const char *pass)
{
	const struct mg_peer *p;

	for (p = ss->cfg->peers; p; p = p->next) {
		const char *login = p->user && strcmp(p->user, "mgate") ?
		    p->user : p->name;

		if (strcmp(login, user) == 0 && p->smtp_password_hash &&
		    passwd_verify(pass, p->smtp_password_hash)) {
			ss->auth = p;
			mg_info("%s: authenticated as site %s", ss->client,
			    p->name);
			reply(ss, "235 2.7.0 Authentication successful");
			return;
		}
	}
	mg_warn("%s: authentication failed for '%.64s'", ss->client, user);
	sleep(1);	/* slow down guessing */
	reply(ss, "535 5.7.8 Authentication credentials invalid");
}

static void
cmd_auth(struct session *ss, char *arg)
{
	char	buf[1024], user[512], line[CMD_MAX + 2], *mech, *init;
	int	n;

	if (!ss->tls_on) {
		reply(ss, "538 5.7.11 Encryption required for requested "
		    "authentication mechanism");
		return;
	}
	if (ss->auth || ss->in_mail) {
		reply(ss, "503 5.5.1 Already authenticated or in a "
		    "transaction");
		return;
	}
	mech = arg;
	init = mech + strcspn(mech, " ");
	if (*init)
		*init++ = '\0';
	if (!strcasecmp(mech, "PLAIN")) {
		if (*init == '\0') {
			reply(ss, "334 ");
			if (read_cmd(ss, line, sizeof(line)) != 0)
				goto done;	/* gone, or answered */
			init = line;
		}
		if ((n = b64_decode(init, buf, sizeof(buf))) < 0) {
			reply(ss, "501 5.5.2 Cannot decode response");
			return;
		}
		/* authzid \0 authcid \0 password */
		const char *authc = memchr(buf, '\0', (size_t)n);
		const char *pw = authc ? memchr(authc + 1, '\0', (size_t)n -
		    (size_t)(authc + 1 - buf)) : NULL;

		if (authc == NULL || pw == NULL) {
			reply(ss, "501 5.5.2 Malformed PLAIN response");
			return;
		}
		/* RFC 4616: a site may act only as itself. */
		if (buf[0] != '\0' && strcmp(buf, authc + 1) != 0) {
			reply(ss, "535 5.7.8 Authorization identity refused");
			goto done;
		}
		auth_check(ss, authc + 1, pw + 1);
	} else if (!strcasecmp(mech, "LOGIN")) {
		reply(ss, "334 VXNlcm5hbWU6");
		if (read_cmd(ss, line, sizeof(line)) != 0)
			goto done;
		if (b64_decode(line, user, sizeof(user)) < 0) {
			reply(ss, "501 5.5.2 Cannot decode response");
			return;
		}
		reply(ss, "334 UGFzc3dvcmQ6");
		if (read_cmd(ss, line, sizeof(line)) != 0)
			goto done;
		if (b64_decode(line, buf, sizeof(buf)) < 0) {
			reply(ss, "501 5.5.2 Cannot decode response");
			return;
		}
		auth_check(ss, user, buf);
	} else
		reply(ss, "504 5.5.4 Unrecognized authentication type");
done:
	explicit_bzero(buf, sizeof(buf));
	explicit_bzero(line, sizeof(line));
}

static void
cmd_sync(struct session *ss)
{
	struct spool		*sp = NULL;
	struct peer_keys	 pk;
	struct sync_ctx		 x;
	char			 err[1024];
	enum mg_err		 e;
	int			 lock = -1;

	if (ss->auth == NULL) {
		reply(ss, "530 5.7.0 Authentication required");
		return;
	}
	if ((e = spool_open(ss->cfg->spool_directory, 0, &sp, err,
	    sizeof(err))) != MG_OK ||
	    (e = peer_keys_load(ss->cfg, ss->auth, &pk, err, sizeof(err)))) {
		mg_warn("sync for %s: %s", ss->auth->name, err);
		reply(ss, "454 4.3.0 Sync not available now");
		spool_close(sp);
		return;
	}
	/* One session per site at a time, as for mgate serve. */
	{
		char path[4200];

		snprintf(path, sizeof(path), "%s/serve-%s.lock",
		    ss->cfg->spool_directory, ss->auth->name);
		if ((lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC |
		    O_NOFOLLOW, 0600)) < 0 || flock(lock, LOCK_EX) < 0) {
			reply(ss, "454 4.3.0 Sync not available now");
			if (lock >= 0)
				close(lock);
			peer_keys_free(&pk);
			spool_close(sp);
			return;
		}
	}
	reply(ss, "220 2.0.0 Go ahead with sync");
	memset(&x, 0, sizeof(x));
	x.sp = sp;
	x.cfg = ss->cfg;
	x.pk = &pk;
	x.s = ss->s;
	x.err = err;
	x.errlen = sizeof(err);
	if (sync_server(&x) != MG_OK)
		mg_warn("sync over SMTP with %s: %s", ss->auth->name, err);
	else
		mg_info("sync over SMTP with %s: received %llu message%s",
		    ss->auth->name, (unsigned long long)x.st.down_msgs,
		    x.st.down_msgs == 1 ? "" : "s");
	peer_keys_free(&pk);
	spool_close(sp);
	close(lock);
	/* The stream belonged to the sync protocol: end, saying nothing. */
	ss->quit = 1;
}

/*
 * A command line without its line end: 0, or 1 when it was refused and
 * answered already (too long, NUL), or -1 when the session must end.
 */
static int
read_cmd(struct session *ss, char *line, size_t max)
{
	size_t		n;
	enum mg_err	e;

	e = mg_stream_getline(ss->s, line, CMD_MAX, &n);
	if (e == MG_ELIMIT) {
		/* Swallow the rest of the over-long line. */
		do
			e = mg_stream_getline(ss->s, line, CMD_MAX, &n);
		while (e == MG_ELIMIT);
		if (e != MG_OK || n == 0)
			return -1;
		reply(ss, "500 5.5.2 Line too long");
		line[0] = '\0';
		return 1;
	}
	if (e != MG_OK || n == 0)
		return -1;
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	line[n] = '\0';
	if (memchr(line, '\0', n) != NULL) {
		reply(ss, "500 5.5.2 NUL in command");
		line[0] = '\0';
		return 1;
	}
	return 0;
}

void
smtpd_session(const struct mg_config *cfg, void *tls, int fd,
    const char *client)
{
	smtpd_session_keep(cfg, tls, fd, client, NULL);
}

void
smtpd_session_keep(const struct mg_config *cfg, void *tls, int fd,
    const char *client, struct spool **keep)
{
	struct session	ss;
	char		line[CMD_MAX + 2], *arg;
	int		r;

	memset(&ss, 0, sizeof(ss));
	ss.cfg = cfg;
	ss.tls = tls;
	ss.fd = fd;
	if (keep) {
		ss.sp = *keep;
		ss.keep_sp = 1;
	}
	snprintf(ss.client, sizeof(ss.client), "%s", client);
	if ((ss.s = mg_stream_fd(fd, 0)) == NULL)
		return;
	mg_stream_set_timeout(ss.s, (int)cfg->smtpd_timeout * 1000);
	mg_info("connect from %s", ss.client);
	reply(&ss, "220 %s ESMTP mgate", cfg->myhostname);
	while (ss.s && !ss.quit && ss.errors < cfg->smtpd_max_errors) {
		if ((r = read_cmd(&ss, line, sizeof(line))) < 0)
			break;
		if (r > 0 || line[0] == '\0') {
			if (r == 0)
				reply(&ss, "500 5.5.2 Error: bad syntax");
			continue;
		}
		arg = line + strcspn(line, " ");
		if (*arg)
			*arg++ = '\0';
		if (!strcasecmp(line, "EHLO"))
			cmd_ehlo(&ss, arg, 1);
		else if (!strcasecmp(line, "HELO"))
			cmd_ehlo(&ss, arg, 0);
		else if (!strcasecmp(line, "STARTTLS") && !*arg)
			cmd_starttls(&ss);
		else if (!strcasecmp(line, "AUTH"))
			cmd_auth(&ss, arg);
		else if (!strcasecmp(line, "MAIL") &&
		    !strncasecmp(arg, "FROM:", 5))
			cmd_mail(&ss, arg + 5);
		else if (!strcasecmp(line, "RCPT") &&
		    !strncasecmp(arg, "TO:", 3))
			cmd_rcpt(&ss, arg + 3);
		else if (!strcasecmp(line, "DATA") && !*arg)
			cmd_data(&ss);
		else if (!strcasecmp(line, "BDAT"))
			cmd_bdat(&ss, arg);
		else if (!strcasecmp(line, "RSET")) {
			reset_txn(&ss);
			reply(&ss, "250 2.0.0 Ok");
		} else if (!strcasecmp(line, "NOOP"))
			reply(&ss, "250 2.0.0 Ok");
		else if (!strcasecmp(line, "VRFY"))
			reply(&ss, "252 2.0.0 Send some mail, I'll try my "
			    "best");
		else if (!strcasecmp(line, "X-MGATE-SYNC") && !*arg)
			cmd_sync(&ss);
		else if (!strcasecmp(line, "QUIT")) {
			reply(&ss, "221 2.0.0 Bye");
			break;
		} else
			reply(&ss, "502 5.5.2 Error: command not recognized");
	}
	if (ss.s && !ss.quit && ss.errors >= cfg->smtpd_max_errors)
		reply(&ss, "421 4.7.0 %s Error: too many errors",
		    cfg->myhostname);
	reset_txn(&ss);
	mg_stream_close(ss.s);
	if (keep)
		*keep = ss.sp;	/* the worker's, for its next session */
	else
		spool_close(ss.sp);
	mg_info("disconnect from %s", ss.client);
}

static int
bind_one(const char *spec, char *err, size_t errlen)
{
	char		 host[256], port[16];
	const char	*colon;
	struct addrinfo	 hints, *res = NULL;
	int		 fd = -1, one = 1, r;

	if (spec[0] == '[') {
		const char *end = strchr(spec, ']');

		if (!end || end[1] != ':' || (size_t)(end - spec) > 250)
			goto bad;
		snprintf(host, sizeof(host), "%.*s", (int)(end - spec - 1),
		    spec + 1);
		snprintf(port, sizeof(port), "%s", end + 2);
	} else {
		if ((colon = strrchr(spec, ':')) == NULL ||
		    (size_t)(colon - spec) > 250)
			goto bad;
		snprintf(host, sizeof(host), "%.*s", (int)(colon - spec), spec);
		snprintf(port, sizeof(port), "%s", colon + 1);
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
	if ((r = getaddrinfo(host, port, &hints, &res)) != 0) {
		snprintf(err, errlen, "smtpd_listen %s: %s", spec,
		    gai_strerror(r));
		return -1;
	}
	if ((fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC |
	    SOCK_NONBLOCK, 0)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) < 0 ||
	    listen(fd, 64) < 0) {
		snprintf(err, errlen, "smtpd_listen %s: %s", spec,
		    strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
bad:
	snprintf(err, errlen, "smtpd_listen: '%s' is not address:port", spec);
	return -1;
}

struct smtpd_listener {
	struct tls_server_ctx	*tls;
	struct pollfd		 pfd[MAX_LISTEN];
	size_t			 nl;
};

void
smtpd_listener_free(struct smtpd_listener *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->nl; i++)
		close(l->pfd[i].fd);
	tls_server_ctx_free(l->tls);
	free(l);
}

enum mg_err
smtpd_listen_open(const struct mg_config *cfg, struct smtpd_listener **out,
    char *err, size_t errlen)
{
	struct smtpd_listener	*l;
	char			 list[1024], *tok, *save = NULL;
	enum mg_err		 e;

	*out = NULL;
	if ((l = calloc(1, sizeof(*l))) == NULL) {
		snprintf(err, errlen, "smtpd: out of memory");
		return MG_ENOMEM;
	}
	if (cfg->smtpd_tls_cert_file && cfg->smtpd_tls_key_file &&
	    (e = tls_server_ctx_new(cfg->smtpd_tls_cert_file,
	    cfg->smtpd_tls_key_file, &l->tls, err, errlen)) != MG_OK) {
		free(l);
		return e;
	}
	snprintf(list, sizeof(list), "%s", cfg->smtpd_listen);
	for (tok = strtok_r(list, ", ", &save); tok && l->nl < MAX_LISTEN;
	    tok = strtok_r(NULL, ", ", &save)) {
		if ((l->pfd[l->nl].fd = bind_one(tok, err, errlen)) < 0) {
			smtpd_listener_free(l);
			return MG_ECONFIG;
		}
		l->pfd[l->nl++].events = POLLIN;
	}
	*out = l;
	return MG_OK;
}

/*
 * Sessions run in pre-forked workers, as Postfix's smtpd does: each
 * accepts connections itself and keeps the queue database open from one
 * session to the next, so that a session costs neither a fork nor
 * joining the database.  The listener keeps one spare worker idle while
 * fewer than smtpd_max_sessions exist; beyond that, connections wait in
 * the kernel's backlog until a worker is free.  A worker exits after
 * WORKER_MAX_USE sessions or WORKER_MAX_IDLE seconds without one.
 */
#define WORKER_MAX_USE	100
#define WORKER_MAX_IDLE	60

struct wstatus {
	pid_t	pid;
	char	busy;
};

static void
worker_say(int fd, int busy)
{
	struct wstatus w = { getpid(), (char)busy };

	/* Atomic (< PIPE_BUF); a lost one only delays a spare worker. */
	(void)!write(fd, &w, sizeof(w));
}

static void
worker_main(struct smtpd_listener *l, const struct mg_config *cfg,
    int status_fd, volatile sig_atomic_t *stop)
{
	struct spool	*sp = NULL;
	unsigned	 used = 0, idle = 0;

	while (!*stop && used < WORKER_MAX_USE && idle < WORKER_MAX_IDLE) {
		if (poll(l->pfd, l->nl, 1000) <= 0) {
			idle++;
			continue;
		}
		for (size_t i = 0; i < l->nl && !*stop; i++) {
			struct sockaddr_storage	sa;
			socklen_t		sl = sizeof(sa);
			char			host[INET6_ADDRSTRLEN + 8] = "?";
			int			c;

			if (!(l->pfd[i].revents & POLLIN))
				continue;
			/* Another worker may have taken it: EAGAIN. */
			if ((c = accept4(l->pfd[i].fd, (struct sockaddr *)&sa,
			    &sl, SOCK_CLOEXEC)) < 0)
				continue;
			getnameinfo((struct sockaddr *)&sa, sl, host + 1,
			    sizeof(host) - 2, NULL, 0, NI_NUMERICHOST);
			host[0] = '[';
			strcat(host, "]");
			worker_say(status_fd, 1);
			smtpd_session_keep(cfg, l->tls, c, host, &sp);
			close(c);
			worker_say(status_fd, 0);
			used++;
			idle = 0;
		}
	}
	spool_close(sp);
}

void
smtpd_serve(struct smtpd_listener *l, const struct mg_config *cfg,
    volatile sig_atomic_t *stop)
{
	struct wstatus	*w;
	size_t		 nw = 0, max = cfg->smtpd_max_sessions, idle = 0;
	int		 st[2];
	pid_t		 pid;

	daemon_pid = getppid();
	/*
	 * Done once here rather than in every worker: the time zone
	 * (Received: dates) and OpenSSL's configuration and SHA-256
	 * implementation (message digests).
	 */
	tzset();
	{
		unsigned char	md[EVP_MAX_MD_SIZE];
		unsigned int	mdlen;

		(void)EVP_Digest("", 0, md, &mdlen, EVP_sha256(), NULL);
	}
	if ((w = calloc(max, sizeof(*w))) == NULL ||
	    pipe2(st, O_CLOEXEC | O_NONBLOCK) < 0) {
		mg_error("smtpd: cannot start workers: %s", strerror(errno));
		free(w);
		return;
	}
	mg_info("smtpd: listening on %s%s", cfg->smtpd_listen, l->tls ?
	    " (STARTTLS)" : "");
	while (!*stop) {
		struct pollfd	pf = { st[0], POLLIN, 0 };
		struct wstatus	m;
		int		ws;

		/* Workers that ended (used up, idle, or killed). */
		while ((pid = waitpid(-1, &ws, WNOHANG)) > 0)
			for (size_t i = 0; i < nw; i++)
				if (w[i].pid == pid) {
					if (!w[i].busy)
						idle--;
					w[i] = w[--nw];
					break;
				}
		/* One spare worker, within the limit. */
		if (idle == 0 && nw < max) {
			fflush(NULL);
			if ((pid = fork()) == 0) {
				close(st[0]);
				worker_main(l, cfg, st[1], stop);
				_exit(0);
			}
			if (pid > 0) {
				w[nw].pid = pid;
				w[nw++].busy = 0;
				idle++;
			} else
				mg_warn("smtpd: fork: %s", strerror(errno));
		}
		if (poll(&pf, 1, 1000) <= 0)
			continue;
		while (read(st[0], &m, sizeof(m)) == sizeof(m))
			for (size_t i = 0; i < nw; i++)
				if (w[i].pid == m.pid && w[i].busy != m.busy) {
					w[i].busy = m.busy;
					if (m.busy)
						idle--;
					else
						idle++;
					break;
				}
	}
	/* Stop: idle workers leave at once, busy ones end their session. */
	for (size_t i = 0; i < nw; i++)
		kill(w[i].pid, SIGTERM);
	for (int t = 0; t < 50 && waitpid(-1, NULL, WNOHANG) >= 0; t++) {
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		usleep(100 * 1000);
	}
	for (size_t i = 0; i < nw; i++)
		kill(w[i].pid, SIGKILL);
	while (waitpid(-1, NULL, 0) > 0)
		;
	close(st[0]);
	close(st[1]);
	free(w);
}

enum mg_err
smtpd_run(const struct mg_config *cfg, volatile sig_atomic_t *stop,
    char *err, size_t errlen)
{
	struct smtpd_listener	*l;
	enum mg_err		 e;

	if ((e = smtpd_listen_open(cfg, &l, err, errlen)) != MG_OK)
		return e;
	smtpd_serve(l, cfg, stop);
	smtpd_listener_free(l);
	return MG_OK;
}
