/*
 * late_bounce.c - match a delivery status report that arrived as mail
 * to the site's message it reports on, and record the failures.
 *
 * The report is read once, line by line through a bounded buffer: a
 * report is untrusted input of any size, and only a few short fields
 * matter.  Lines longer than the buffer are cut; what is cut is never a
 * field we use whole.  Nothing here trusts the report beyond what it
 * claims about one of our own messages, and only for its failed
 * recipients: a forged report can at worst mark as bounced a recipient
 * that the forger already knew of (it needs our queue ID).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mgate/late_bounce.h"
#include "mgate/log.h"
#include "mgate/maildrop.h"

#define LINE_MAX_LB	2048
#define CTYPE_MAX	1024

enum field { F_NONE, F_CTYPE, F_DIAG };

struct scan {
	struct late_bounce	*lb;
	const char		*host;
	int			 in_header;
	int			 is_report;	/* header: multipart/report */
	char			 ctype[CTYPE_MAX];
	int			 in_ds;		/* inside message/delivery-status */
	int			 trace_next;	/* last line was our Received: */
	enum field		 last;
	struct late_bounce_rcpt	*cur;
};

/* Copy the value of "Name: value" (whitespace trimmed) into dst. */
static void
value(const char *v, char *dst, size_t dlen)
{
	size_t n;

	while (*v == ' ' || *v == '\t')
		v++;
	n = strlen(v);
	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	if (n >= dlen)
		n = dlen - 1;
	memcpy(dst, v, n);
	dst[n] = '\0';
}

static int
is_field(const char *line, const char *name, const char **v)
{
	size_t n = strlen(name);

	if (strncasecmp(line, name, n) != 0 || line[n] != ':')
		return 0;
	*v = line + n + 1;
	return 1;
}

/* "rfc822; a@b" -> "a@b" (the address type is required by RFC 3464). */
static void
address(const char *v, char *dst, size_t dlen)
{
	const char *semi = strchr(v, ';');

	value(semi ? semi + 1 : v, dst, dlen);
	if (dst[0] == '<') {
		size_t n = strlen(dst);

		if (n >= 2 && dst[n - 1] == '>') {
			memmove(dst, dst + 1, n - 2);
			dst[n - 2] = '\0';
		}
	}
}

/* Our own trace: "Received: by HOST (mgate, ...)" then "\tid QID; ...". */
static void
trace(struct scan *s, const char *line)
{
	const char *p;

	if (s->trace_next && (line[0] == ' ' || line[0] == '\t')) {
		p = line;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncmp(p, "id ", 3) == 0 && strlen(p + 3) > MG_QID_LEN &&
		    p[3 + MG_QID_LEN] == ';' && s->lb->trace_qid[0] == '\0') {
			char q[MG_QID_LEN + 1];

			memcpy(q, p + 3, MG_QID_LEN);
			q[MG_QID_LEN] = '\0';
			if (mg_qid_valid(q))
				memcpy(s->lb->trace_qid, q, sizeof(q));
		}
	}
	s->trace_next = 0;
	if (strncasecmp(line, "Received: by ", 13) == 0 &&
	    strncasecmp(line + 13, s->host, strlen(s->host)) == 0 &&
	    strncmp(line + 13 + strlen(s->host), " (mgate", 7) == 0)
		s->trace_next = 1;
}

static void
ds_line(struct scan *s, const char *line)
{
	struct late_bounce	*lb = s->lb;
	const char		*v;

	if ((line[0] == ' ' || line[0] == '\t') && s->last == F_DIAG &&
	    s->cur) {
		size_t have = strlen(s->cur->diag);

		if (have + 2 < sizeof(s->cur->diag)) {	/* unfold: one space */
			s->cur->diag[have++] = ' ';
			value(line, s->cur->diag + have,
			    sizeof(s->cur->diag) - have);
		}
		return;
	}
	s->last = F_NONE;
	if (is_field(line, "Original-Envelope-Id", &v))
		value(v, lb->envid, sizeof(lb->envid));
	else if (is_field(line, "Reporting-MTA", &v))
		value(v, lb->reporting_mta, sizeof(lb->reporting_mta));
	else if (is_field(line, "Final-Recipient", &v)) {
		s->cur = lb->nrcpt < LB_MAX_RCPTS ? &lb->rcpt[lb->nrcpt++] :
		    NULL;
		if (s->cur) {
			memset(s->cur, 0, sizeof(*s->cur));
			address(v, s->cur->addr, sizeof(s->cur->addr));
		}
	} else if (s->cur && is_field(line, "Action", &v))
		value(v, s->cur->action, sizeof(s->cur->action));
	else if (s->cur && is_field(line, "Status", &v))
		value(v, s->cur->status, sizeof(s->cur->status));
	else if (s->cur && is_field(line, "Diagnostic-Code", &v)) {
		value(v, s->cur->diag, sizeof(s->cur->diag));
		s->last = F_DIAG;
	}
}

static void
header_line(struct scan *s, const char *line)
{
	const char *v;

	if ((line[0] == ' ' || line[0] == '\t') && s->last == F_CTYPE) {
		size_t have = strlen(s->ctype);

		if (have + 2 < sizeof(s->ctype)) {
			s->ctype[have++] = ' ';
			value(line, s->ctype + have, sizeof(s->ctype) - have);
		}
		return;
	}
	s->last = F_NONE;
	if (is_field(line, "Content-Type", &v)) {
		value(v, s->ctype, sizeof(s->ctype));
		s->last = F_CTYPE;
	}
}

static void
line(struct scan *s, const char *l)
{
	if (s->in_header) {
		if (l[0] == '\0') {
			s->in_header = 0;
			s->last = F_NONE;
			s->is_report = strcasestr(s->ctype,
			    "multipart/report") && strcasestr(s->ctype,
			    "delivery-status");
			return;
		}
		header_line(s, l);
		return;
	}
	trace(s, l);
	if (l[0] == '-' && l[1] == '-') {	/* a boundary ends the part */
		s->in_ds = 0;
		s->cur = NULL;
		return;
	}
	if (s->in_ds) {
		ds_line(s, l);
		return;
	}
	if (strncasecmp(l, "Content-Type:", 13) == 0 &&
	    strcasestr(l + 13, "message/delivery-status"))
		s->in_ds = 1;
}

int
late_bounce_parse(const char *path, const char *myhostname,
    struct late_bounce *lb)
{
	struct maildrop_reader	*r = NULL;
	struct scan		 s;
	char			 err[256], buf[8192], *l = NULL;
	size_t			 ll = 0;
	ssize_t			 n;
	enum mg_err		 e;

	memset(lb, 0, sizeof(*lb));
	memset(&s, 0, sizeof(s));
	s.lb = lb;
	s.host = myhostname ? myhostname : "";
	s.in_header = 1;
	if ((l = malloc(LINE_MAX_LB + 1)) == NULL ||
	    maildrop_open(path, &r, err, sizeof(err)) != MG_OK) {
		free(l);
		return 0;
	}
	while ((n = maildrop_read(r, buf, sizeof(buf), &e)) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] != '\n') {
				if (ll < LINE_MAX_LB)
					l[ll++] = buf[i];
				continue;
			}
			if (ll > 0 && l[ll - 1] == '\r')
				ll--;
			l[ll] = '\0';
			line(&s, l);
			ll = 0;
		}
	}
	if (ll > 0) {
		l[ll] = '\0';
		line(&s, l);
	}
	maildrop_close(r);
	free(l);
	return n == 0 && s.is_report && lb->nrcpt > 0;
}

/* The site's own message the report names, if there is one. */
static int
find_original(struct spool *sp, const struct late_bounce *lb,
    struct spool_msg *m)
{
	const char *cand[2] = { lb->envid, lb->trace_qid };

	for (int i = 0; i < 2; i++) {
		if (!mg_qid_valid(cand[i]) ||
		    spool_msg_get(sp, cand[i], m) != MG_OK)
			continue;
		/* Only mail this site sent out, never inbound mail. */
		if (m->env.peer == NULL && m->env.via == NULL)
			return 1;
		spool_msg_free(m);
	}
	return 0;
}

size_t
late_bounce_apply(struct spool *sp, const char *report_qid,
    const struct late_bounce *lb)
{
	struct spool_msg	m;
	size_t			changed = 0;
	char			text[900];

	memset(&m, 0, sizeof(m));
	if (!find_original(sp, lb, &m)) {
		mg_info("%s: a delivery status report about a message not in "
		    "this spool (envelope id \"%s\", trace id \"%s\")",
		    report_qid, lb->envid, lb->trace_qid);
		return 0;
	}
	for (size_t i = 0; i < lb->nrcpt; i++) {
		const struct late_bounce_rcpt *br = &lb->rcpt[i];

		if (strcasecmp(br->action, "failed") != 0 ||
		    br->status[0] != '5')
			continue;
		for (size_t k = 0; k < m.env.nrcpt; k++) {
			if (strcasecmp(m.env.rcpts[k].addr, br->addr) != 0 ||
			    m.rs[k].state == RS_BOUNCED)
				continue;
			snprintf(text, sizeof(text), "%s late bounce from %s: "
			    "%s (report %s)", br->status, lb->reporting_mta[0] ?
			    lb->reporting_mta : "a remote MTA", br->diag[0] ?
			    br->diag : "no diagnostic", report_qid);
			if (spool_rcpt_update(sp, m.env.qid, k, RS_BOUNCED,
			    text, NULL) != MG_OK)
				continue;
			mg_info("%s: to=<%s>, status=bounced (%s)", m.env.qid,
			    m.env.rcpts[k].addr, text);
			changed++;
		}
	}
	spool_msg_free(&m);
	return changed;
}
