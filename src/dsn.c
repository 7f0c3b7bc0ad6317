/*
 * dsn.c - render RFC 3464 multipart/report messages.
 *
 * The report has three parts: a short text for people, the
 * message/delivery-status fields (RFC 3464 section 2), and the original
 * message (RET=FULL, the default for failures) or its header only
 * (RET=HDRS, and always for successes and delays).  Text from remote
 * servers is cleaned of control characters before it goes into a field.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mgate/dsn.h"
#include "mgate/local.h"
#include "mgate/log.h"
#include "mgate/maildrop.h"

static void
clean(const char *in, char *out, size_t len)
{
	size_t n = 0;

	for (; in && *in && n + 1 < len; in++)
		out[n++] = (unsigned char)*in < 0x20 || *in == 0x7f ? ' ' : *in;
	out[n] = '\0';
}

static enum mg_err __attribute__((format(printf, 2, 3)))
put(struct local_dest *d, const char *fmt, ...)
{
	char	buf[4096];
	va_list	ap;
	int	n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return MG_ESOFTWARE;
	return local_write(d, buf, (size_t)n < sizeof(buf) ? (size_t)n :
	    sizeof(buf) - 1);
}

/* The original message, whole or up to the end of its header. */
static enum mg_err
put_original(struct local_dest *d, const char *path, int hdrs_only)
{
	struct maildrop_reader	*r = NULL;
	char			 err[256], buf[65536];
	ssize_t			 n;
	enum mg_err		 e = MG_OK;
	int			 bol = 1;

	if ((e = maildrop_open(path, &r, err, sizeof(err))) != MG_OK)
		return e;
	while ((n = maildrop_read(r, buf, sizeof(buf), &e)) > 0) {
		if (hdrs_only) {
			ssize_t i;

			for (i = 0; i < n; i++) {
				if (bol && (buf[i] == '\n' || (buf[i] ==
				    '\r' && i + 1 < n && buf[i + 1] == '\n')))
					break;
				bol = buf[i] == '\n';
			}
			if ((e = local_write(d, buf, (size_t)i)) != MG_OK)
				break;
			if (i < n)
				break;
			continue;
		}
		if ((e = local_write(d, buf, (size_t)n)) != MG_OK)
			break;
	}
	if (n < 0)
		e = MG_ECORRUPT;
	maildrop_close(r);
	return e;
}

enum mg_err
dsn_deliver(const struct mg_config *cfg, const struct spool_msg *m,
    const char *body_path, enum dsn_action act, const struct dsn_rcpt *rc,
    size_t n, char *err, size_t errlen)
{
	static const char *const action[] = { "failed", "delayed",
		"delivered", "relayed" };
	struct local_dest	*d = NULL;
	char			 date[64], stamp[32], arr[64], txt[1024];
	char			 boundary[64];
	time_t			 now = time(NULL), at;
	struct tm		 tm;
	enum mg_err		 e;
	int			 hdrs_only;

	if (m->env.sender[0] == '\0' || n == 0)
		return MG_OK;	/* nobody to tell: never bounce a bounce */
	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &tm);
	at = (time_t)m->env.arrival;
	localtime_r(&at, &tm);
	strftime(arr, sizeof(arr), "%a, %d %b %Y %H:%M:%S %z", &tm);
	snprintf(boundary, sizeof(boundary), "%s.%ld/%s", m->env.qid,
	    (long)now, cfg->myhostname);
	hdrs_only = act != DSN_FAILED || m->env.ret == MG_RET_HDRS;
	if ((e = local_open(cfg, m->env.user, "", &d, err, errlen)) != MG_OK)
		return e;
	e = put(d, "From: Mail Delivery System <MAILER-DAEMON@%s>\n"
	    "To: <%s>\n"
	    "Subject: %s\n"
	    "Date: %s\n"
	    "Message-ID: <%s.%s.dsn@%s>\n"
	    "Auto-Submitted: auto-replied\n"
	    "MIME-Version: 1.0\n"
	    "Content-Type: multipart/report; report-type=delivery-status;\n"
	    "\tboundary=\"%s\"\n\n"
	    "This is a MIME-encapsulated message.\n\n"
	    "--%s\n"
	    "Content-Type: text/plain; charset=us-ascii\n\n",
	    cfg->mydomain, m->env.sender,
	    act == DSN_FAILED ? "Undelivered Mail Returned to Sender" :
	    act == DSN_DELAYED ? "Delayed Mail (still being retried)" :
	    "Successful Mail Delivery Report",
	    date, stamp, m->env.qid, cfg->mydomain, boundary, boundary);
	if (e == MG_OK)
		e = put(d, "This is the mail system at host %s.\n\n%s\n\n",
		    cfg->myhostname, act == DSN_FAILED ?
		    "Your message could not be delivered to one or more "
		    "recipients.\nThe reasons are below; the message is "
		    "attached." : act == DSN_DELAYED ? "Your message has not "
		    "been delivered yet to the recipients below.\nThe gateway "
		    "keeps trying; you need not send it again." : act ==
		    DSN_RELAYED ? "Your message was delivered to the mail "
		    "servers of the recipients below.\nThose servers do not "
		    "send delivery reports: this is the last report you will "
		    "get." : "Your message was delivered to the recipients "
		    "below.");
	for (size_t i = 0; i < n && e == MG_OK; i++) {
		clean(rc[i].diag, txt, sizeof(txt));
		e = put(d, "<%s>: %s\n", m->env.rcpts[rc[i].idx].addr, txt);
	}
	if (e == MG_OK)
		e = put(d, "\n--%s\n"
		    "Content-Type: message/delivery-status\n\n"
		    "Reporting-MTA: dns; %s\n"
		    "X-Mgate-Queue-ID: %s\n",
		    boundary, cfg->myhostname, m->env.qid);
	if (e == MG_OK && m->env.envid)
		e = put(d, "Original-Envelope-Id: %s\n", m->env.envid);
	if (e == MG_OK)
		e = put(d, "Arrival-Date: %s\n", arr);
	for (size_t i = 0; i < n && e == MG_OK; i++) {
		const struct mg_rcpt *r = &m->env.rcpts[rc[i].idx];

		e = put(d, "\nFinal-Recipient: rfc822; %s\n", r->addr);
		if (e == MG_OK && r->orcpt)
			e = put(d, "Original-Recipient: %s\n", r->orcpt);
		if (e == MG_OK)
			e = put(d, "Action: %s\nStatus: %s\n", action[act],
			    rc[i].status && rc[i].status[0] ? rc[i].status :
			    act == DSN_FAILED ? "5.0.0" : act == DSN_DELAYED ?
			    "4.0.0" : "2.0.0");
		if (e == MG_OK && rc[i].remote && rc[i].remote[0]) {
			char host[300];

			clean(rc[i].remote, host, sizeof(host));
			host[strcspn(host, "[")] = '\0';
			e = put(d, "Remote-MTA: dns; %s\n", host);
		}
		if (e == MG_OK && rc[i].diag && rc[i].diag[0]) {
			clean(rc[i].diag, txt, sizeof(txt));
			e = put(d, "Diagnostic-Code: smtp; %s\n", txt);
		}
	}
	if (e == MG_OK)
		e = put(d, "\n--%s\nContent-Type: %s\n\n", boundary,
		    hdrs_only ? "text/rfc822-headers" : "message/rfc822");
	if (e == MG_OK)
		e = put_original(d, body_path, hdrs_only);
	if (e == MG_OK)
		e = put(d, "\n--%s--\n", boundary);
	if (e != MG_OK) {
		snprintf(err, errlen, "writing the report: %s",
		    mg_strerror(e));
		local_abort(d);
		return e;
	}
	return local_commit(d, err, errlen);
}
