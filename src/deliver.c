/*
 * deliver.c - queue runs, delivery workers and outcomes.
 *
 * Berkeley DB handles do not survive fork(), so the parent closes its
 * spool before starting workers and each worker opens its own; all of
 * them share the environment through its locks.
 *
 * Outcomes (struct mg_result) become recipient states:
 *   2xx              delivered  (status record: delivered, MX and reply)
 *   4xx, no answer   deferred   (retry after retry_first, doubling up to
 *                                maximal_backoff; the first deferral is
 *                                reported to the site)
 *   5xx, expiry,     bounced    (status record: failed, RFC 3463 status
 *   loop, policy                 and diagnostic; the site writes the DSN)
 * A kill between an MX's 250 and our commit makes the next run send the
 * message again: that window is the only way to a duplicate, as in any
 * MTA.  (The repeat is not yet marked as such in the log.)
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mgate/buf.h"
#include "mgate/bundle.h"
#include "mgate/deliver.h"
#include "mgate/dns.h"
#include "mgate/log.h"
#include "mgate/maildrop.h"
#include "mgate/packer.h"
#include "mgate/result.h"
#include "mgate/smtp_client.h"
#include "mgate/spool.h"

#define RCPTS_PER_TXN	100

struct job {
	char	qid[MG_QID_LEN + 1];
	size_t	idx;
	char	domain[256];
	int	worker;		/* which worker takes it */
};

struct run {
	const struct mg_config	*cfg;
	struct spool		*sp;
	struct job		*jobs;
	size_t			 n, cap;
	time_t			 now;
	struct deliver_stats	*st;
	int			 oom;
};

static const char *
domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at ? at + 1 : "";
}

static int
sender_allowed(const struct mg_config *cfg, const struct mg_envelope *env)
{
	const struct mg_peer	*p;
	const char		*dom, *list, *q;
	size_t			 dl;

	if (env->peer == NULL || env->sender[0] == '\0')
		return 1;	/* local mail; bounces have no sender */
	if ((p = mg_config_peer(cfg, env->peer)) == NULL ||
	    (list = p->sender_domains) == NULL)
		return 0;
	dom = domain_of(env->sender);
	dl = strlen(dom);
	for (q = list; *q; ) {
		size_t n;

		while (*q == ',' || *q == ' ')
			q++;
		n = strcspn(q, ", ");
		if (n == dl && n > 0 && strncasecmp(q, dom, n) == 0)
			return 1;
		q += n;
	}
	return 0;
}

static int
map_state(enum mg_rclass c)
{
	return c == MG_R_OK ? BUNDLE_ST_DELIVERED : c == MG_R_PERM ?
	    BUNDLE_ST_FAILED : BUNDLE_ST_DEFERRED;
}

/*
 * Record one recipient's outcome, with its status record for the site
 * when the message came from one.
 */
static enum mg_rclass
record(struct spool *sp, const struct mg_config *cfg,
    const struct spool_msg *m, size_t idx, const struct mg_result *r,
    time_t now)
{
	struct bundle_status	 bs;
	struct mg_buf		 b;
	const struct spool_rcpt_state *rs = &m->rs[idx];
	enum rcpt_state		 to;
	uint64_t		 next = 0, wait;
	int			 report = 0, mark = 0;
	char			 text[900];
	struct mg_result	 rr = *r;

	if (rr.cls == MG_R_TEMP && (uint64_t)now + cfg->retry_first >
	    m->env.arrival + cfg->maximal_queue_lifetime) {
		/* Out of time: the last temporary error becomes final. */
		mg_result_set(&rr, MG_R_PERM, r->code, "4.4.7", r->remote,
		    "message expired after %llu days in the queue; last "
		    "error: %s", (unsigned long long)
		    cfg->maximal_queue_lifetime / 86400, r->text);
	}
	switch (rr.cls) {
	case MG_R_OK:
		to = RS_DELIVERED;
		report = 1;
		break;
	case MG_R_PERM:
		to = RS_BOUNCED;
		report = 1;
		break;
	default:
		to = RS_DEFERRED;
		wait = cfg->retry_first;
		for (uint32_t i = 0; i < rs->attempts && wait <
		    cfg->maximal_backoff; i++)
			wait *= 2;
		if (wait > cfg->maximal_backoff)
			wait = cfg->maximal_backoff;
		next = (uint64_t)now + wait;
		report = mark = !rs->reported;
		break;
	}
	snprintf(text, sizeof(text), "%s%s%s", rr.text, rr.remote[0] ?
	    " via " : "", rr.remote);
	mg_buf_init(&b, 64 * 1024);
	if (report && m->env.peer) {
		memset(&bs, 0, sizeof(bs));
		bs.qid = m->env.peer_qid;
		bs.rcpt = m->env.rcpts[idx].addr;
		bs.state = map_state(rr.cls);
		bs.status = rr.status;
		bs.remote = rr.remote;
		bs.diag = rr.text;
		bs.time = now;
		bs.next_hop_dsn = rr.cls == MG_R_OK && rr.next_hop_dsn;
		if (packer_status_encode(&b, &bs) != MG_OK)
			b.len = 0;
	}
	if (spool_rcpt_result(sp, m->env.qid, idx, to, text, next, mark,
	    b.len ? m->env.peer : NULL, b.data, b.len) != MG_OK)
		mg_warn("%s: to=<%s>: cannot record the outcome; the next run "
		    "will try again", m->env.qid, m->env.rcpts[idx].addr);
	mg_info("%s: to=<%s>, relay=%s, tries=%u, status=%s (%s)",
	    m->env.qid, m->env.rcpts[idx].addr, rr.remote[0] ? rr.remote :
	    "none", rs->attempts + 1, to == RS_DELIVERED ? "sent" :
	    to == RS_BOUNCED ? "bounced" : "deferred", rr.text);
	mg_buf_free(&b);
	return rr.cls;
}

static void
count(struct deliver_stats *st, enum mg_rclass c)
{
	if (c == MG_R_OK)
		st->delivered++;
	else if (c == MG_R_PERM)
		st->bounced++;
	else
		st->deferred++;
}

/* Received: fields in the message's header section. */
static int
received_count(const char *path)
{
	struct maildrop_reader	*r = NULL;
	char			 err[256], buf[65536];
	ssize_t			 n;
	enum mg_err		 e;
	int			 cnt = 0, bol = 1, done = 0;
	size_t			 seen = 0;

	if (maildrop_open(path, &r, err, sizeof(err)) != MG_OK)
		return 0;
	while (!done && seen < 4 * 1024 * 1024 &&
	    (n = maildrop_read(r, buf, sizeof(buf), &e)) > 0) {
		for (ssize_t i = 0; i < n && !done; i++) {
			if (bol) {
				if (buf[i] == '\n' || (buf[i] == '\r' &&
				    i + 1 < n && buf[i + 1] == '\n'))
					done = 1;
				else if (n - i >= 9 && strncasecmp(buf + i,
				    "Received:", 9) == 0)
					cnt++;
			}
			bol = buf[i] == '\n';
		}
		seen += (size_t)n;
	}
	maildrop_close(r);
	return cnt;
}

static int
policy_for(const struct mg_config *cfg, const char *domain)
{
	const char	*q = cfg->smtp_tls_policy_map;
	size_t		 dl = strlen(domain);

	while (q && *q) {
		size_t n, pn;
		char   pol[16];

		while (*q == ',' || *q == ' ')
			q++;
		n = strcspn(q, "=, ");
		if (q[n] != '=')
			break;
		pn = strcspn(q + n + 1, ", ");
		if (pn < sizeof(pol)) {
			memcpy(pol, q + n + 1, pn);
			pol[pn] = '\0';
			if (n == dl && strncasecmp(q, domain, n) == 0 &&
			    tls_policy_parse(pol) >= 0)
				return tls_policy_parse(pol);
		}
		q += n + 1 + pn;
	}
	return cfg->smtp_tls_policy;
}

/* The transaction whose final dot is about to go out. */
struct inflight {
	struct spool	*sp;
	const char	*qid;
	const size_t	*idx;
	size_t		 n;
};

/*
 * From the final dot until the outcome's commit, a kill means the MX
 * may have the mail while we do not know it: mark the recipients, so
 * that the next attempt can say it may be a repeat.
 */
static void
mark_inflight(void *arg)
{
	struct inflight *f = arg;

	if (spool_rcpt_inflight(f->sp, f->qid, f->idx, f->n,
	    (uint64_t)time(NULL)) != MG_OK)
		mg_warn("%s: cannot mark the delivery in progress; a kill "
		    "now could repeat it unannounced", f->qid);
}

/* Say so when an earlier attempt was cut off after its final dot. */
static void
warn_repeats(const struct spool_msg *m, const size_t *idx, size_t k,
    const char *domain)
{
	for (size_t i = 0; i < k; i++) {
		const struct spool_rcpt_state *rs = &m->rs[idx[i]];

		if (rs->inflight == 0)
			continue;
		mg_warn("%s: to=<%s>, possible repeat: an earlier delivery to "
		    "%s was cut off after the end of data (%llu s ago); if "
		    "that server had accepted it, the recipient gets the "
		    "message twice", m->env.qid, m->env.rcpts[idx[i]].addr,
		    domain, (unsigned long long)((uint64_t)time(NULL) >
		    rs->inflight ? (uint64_t)time(NULL) - rs->inflight : 0));
	}
}

/* A worker: every job with this domain and worker number. */
static int
worker(const struct mg_config *cfg, struct job *jobs, size_t n,
    const char *domain, int wno, int outfd)
{
	struct deliver_stats	 st;
	struct spool		*sp = NULL;
	struct dns_cfg		 dc;
	struct dns_route	 route;
	struct smtp_params	 sp_;
	struct inflight		 fl;
	struct smtp_session	*ss = NULL;
	struct spool_msg	 m;
	struct mg_result	 fail, *res = NULL;
	size_t			*idx = NULL, k;
	char			 err[512], why[256], path[4200];
	char			 prepend[1024], date[64];
	enum dns_status		 ds;
	time_t			 now = time(NULL);
	struct tm		 tm;

	memset(&route, 0, sizeof(route));
	memset(&m, 0, sizeof(m));
	memset(&st, 0, sizeof(st));
	if (spool_open(cfg->spool_directory, 0, &sp, err, sizeof(err)) !=
	    MG_OK) {
		mg_warn("delivery to %s: %s", domain, err);
		return 1;
	}
	if (dns_cfg_parse(cfg->dns_resolver, &dc) < 0)
		dns_cfg_parse(NULL, &dc);
	ds = dns_route(&dc, domain, &route, why, sizeof(why));
	memset(&sp_, 0, sizeof(sp_));
	sp_.helo = cfg->smtp_helo_name;
	sp_.tls_policy = policy_for(cfg, domain);
	sp_.cafile = cfg->smtp_tls_ca_file;
	sp_.connect_timeout_ms = (int)cfg->smtp_connect_timeout * 1000;
	sp_.command_timeout_ms = (int)cfg->smtp_command_timeout * 1000;
	sp_.data_timeout_ms = (int)cfg->smtp_data_timeout * 1000;
	sp_.before_dot = mark_inflight;
	sp_.before_dot_arg = &fl;
	memset(&fl, 0, sizeof(fl));
	fl.sp = sp;
	if ((idx = calloc(RCPTS_PER_TXN, sizeof(*idx))) == NULL ||
	    (res = calloc(RCPTS_PER_TXN, sizeof(*res))) == NULL)
		goto out;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	for (size_t j = 0; j < n; j++) {
		if (jobs[j].worker != wno || strcmp(jobs[j].domain, domain))
			continue;
		if (j > 0 && strcmp(jobs[j].qid, jobs[j - 1].qid) == 0 &&
		    jobs[j - 1].worker == wno &&
		    strcmp(jobs[j - 1].domain, domain) == 0)
			continue;	/* taken with the previous job */
		if (spool_msg_get(sp, jobs[j].qid, &m) != MG_OK)
			continue;
		/* This message's recipients in this domain, in one go. */
		k = 0;
		for (size_t i = j; i < n && k < RCPTS_PER_TXN &&
		    strcmp(jobs[i].qid, jobs[j].qid) == 0; i++)
			if (jobs[i].worker == wno &&
			    strcmp(jobs[i].domain, domain) == 0 &&
			    jobs[i].idx < m.env.nrcpt)
				idx[k++] = jobs[i].idx;
		memset(res, 0, RCPTS_PER_TXN * sizeof(*res));
		if (ds != DNS_OK) {
			size_t sl = strcspn(why, " ");

			mg_result_set(&fail, ds == DNS_PERM ? MG_R_PERM :
			    MG_R_TEMP, 0, NULL, "", "%s", why[sl] ? why + sl + 1 :
			    why);
			snprintf(fail.status, sizeof(fail.status), "%.*s",
			    (int)(sl < sizeof(fail.status) ? sl : 0), why);
			for (size_t i = 0; i < k; i++)
				res[i] = fail;
			goto outcome;
		}
		if (spool_body_path(sp, m.env.qid, path, sizeof(path)) !=
		    MG_OK) {
			mg_warn("%s: body file missing; left for the "
			    "operator", m.env.qid);
			spool_msg_free(&m);
			continue;
		}
		if (received_count(path) > (int)cfg->max_received_headers) {
			mg_result_set(&fail, MG_R_PERM, 0, "5.4.6", "",
			    "mail loop: more than %llu Received: fields",
			    (unsigned long long)cfg->max_received_headers);
			for (size_t i = 0; i < k; i++)
				res[i] = fail;
			goto outcome;
		}
		snprintf(prepend, sizeof(prepend), "Received: from %s (via "
		    "mgate sync)\r\n\tby %s (mgate) id %s;\r\n\t%s\r\n",
		    m.env.peer ? m.env.peer : "localhost", cfg->myhostname,
		    m.env.qid, date);
		for (size_t t = 0; !smtp_usable(ss) && t < route.n; t++) {
			smtp_close(ss);
			ss = NULL;
			if (route.t[t].addr.ss_family == AF_INET)
				((struct sockaddr_in *)&route.t[t].addr)->
				    sin_port = htons((uint16_t)cfg->smtp_port);
			else
				((struct sockaddr_in6 *)&route.t[t].addr)->
				    sin6_port = htons((uint16_t)cfg->smtp_port);
			if (smtp_open(&sp_, route.t[t].host,
			    (struct sockaddr *)&route.t[t].addr,
			    route.t[t].addrlen, &ss, &fail) != MG_OK)
				mg_info("%s: %s", domain, fail.text);
		}
		if (!smtp_usable(ss)) {
			/* Nobody answered: the last reason stands for all. */
			if (fail.cls == MG_R_PERM)
				fail.cls = MG_R_TEMP;
			for (size_t i = 0; i < k; i++)
				res[i] = fail;
			goto outcome;
		}
		/*
		 * Without an ENVID of the sender's, give the site's queue ID:
		 * a report the MX sends later names it, and the site can
		 * match the report to its message (late_bounce.c).
		 */
		if (m.env.envid == NULL && m.env.peer_qid != NULL)
			m.env.envid = strdup(m.env.peer_qid);
		warn_repeats(&m, idx, k, domain);
		fl.qid = m.env.qid;
		fl.idx = idx;
		fl.n = k;
		if (smtp_send(ss, &m.env, idx, k, path, prepend, res) !=
		    MG_OK) {
			smtp_close(ss);
			ss = NULL;
		}
outcome:
		for (size_t i = 0; i < k; i++)
			count(&st, record(sp, cfg, &m, idx[i], &res[i],
			    time(NULL)));
		spool_msg_free(&m);
	}
out:
	{
		/* Tell the parent what happened: 3 counters, one write. */
		unsigned long v[3] = { st.delivered, st.deferred, st.bounced };

		if (write(outfd, v, sizeof(v)) != sizeof(v))
			mg_warn("delivery to %s: cannot report counts", domain);
	}
	smtp_close(ss);
	dns_route_free(&route);
	free(idx);
	free(res);
	spool_close(sp);
	return 0;
}

static int
collect(const struct spool_msg *m, void *arg)
{
	struct run	*r = arg;
	struct job	*nj;
	struct mg_result fail;
	int		 allowed = -1;

	if (m->env.via != NULL)		/* for a site: goes by sync */
		return 0;
	for (size_t i = 0; i < m->env.nrcpt; i++) {
		const struct spool_rcpt_state *rs = &m->rs[i];

		if (rs->state != RS_QUEUED && rs->state != RS_DEFERRED)
			continue;
		if (rs->next_try > (uint64_t)r->now)
			continue;
		if (allowed < 0)
			allowed = sender_allowed(r->cfg, &m->env);
		if (!allowed) {
			mg_result_set(&fail, MG_R_PERM, 0, "5.7.1", "",
			    "sender domain of <%s> is not permitted for site "
			    "%s (sender_domains)", m->env.sender,
			    m->env.peer ? m->env.peer : "?");
			record(r->sp, r->cfg, m, i, &fail, r->now);
			count(r->st, MG_R_PERM);
			continue;
		}
		if (r->n == r->cap) {
			r->cap = r->cap ? r->cap * 2 : 256;
			if ((nj = realloc(r->jobs, r->cap * sizeof(*nj))) ==
			    NULL) {
				r->oom = 1;
				return 1;
			}
			r->jobs = nj;
		}
		nj = &r->jobs[r->n++];
		memcpy(nj->qid, m->env.qid, sizeof(nj->qid));
		nj->idx = i;
		snprintf(nj->domain, sizeof(nj->domain), "%s",
		    domain_of(m->env.rcpts[i].addr));
		for (char *p = nj->domain; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		nj->worker = 0;
	}
	return 0;
}

static int
by_domain(const void *x, const void *y)
{
	const struct job	*a = x, *b = y;
	int			 c = strcmp(a->domain, b->domain);

	if (c)
		return c;
	if ((c = strcmp(a->qid, b->qid)))
		return c;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

struct done_arg {
	char	(*qids)[MG_QID_LEN + 1];
	size_t	 n, cap;
};

static int
find_done(const struct spool_msg *m, void *arg)
{
	struct done_arg	*d = arg;
	void		*nq;

	for (size_t i = 0; i < m->env.nrcpt; i++)
		/* Mail carried to a site is done once the site has it. */
		if (!rcpt_state_final(m->rs[i].state) && !(m->env.via &&
		    m->rs[i].state == RS_ACCEPTED))
			return 0;
	if (m->env.peer == NULL && m->env.via == NULL && m->env.nrcpt > 0 &&
	    m->rs[0].bundle != NULL)
		return 0;	/* a site's own message: keep its history */
	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 64;
		if ((nq = realloc(d->qids, d->cap * sizeof(*d->qids))) == NULL)
			return 1;
		d->qids = nq;
	}
	memcpy(d->qids[d->n++], m->env.qid, MG_QID_LEN + 1);
	return 0;
}

enum mg_err
deliver_run(const struct mg_config *cfg, struct deliver_stats *st,
    char *errbuf, size_t errlen)
{
	struct run		 r;
	struct done_arg		 d = { NULL, 0, 0 };
	size_t			 nworkers = 0, running = 0;
	pid_t			 pid;
	int			 status, pfd[2] = { -1, -1 };
	unsigned long		 v[3];
	enum mg_err		 e;

	memset(&r, 0, sizeof(r));
	memset(st, 0, sizeof(*st));
	r.cfg = cfg;
	r.st = st;
	r.now = time(NULL);
	if ((e = spool_open(cfg->spool_directory, 0, &r.sp, errbuf, errlen)))
		return e;
	e = spool_walk(r.sp, collect, &r);
	spool_close(r.sp);
	r.sp = NULL;
	if (e != MG_OK || r.oom) {
		snprintf(errbuf, errlen, "reading the queue: %s",
		    mg_strerror(r.oom ? MG_ENOMEM : e));
		free(r.jobs);
		return r.oom ? MG_ENOMEM : e;
	}
	if (r.n > 1)
		qsort(r.jobs, r.n, sizeof(*r.jobs), by_domain);
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		snprintf(errbuf, errlen, "pipe: %s", strerror(errno));
		free(r.jobs);
		return MG_ETEMP;
	}
	/*
	 * Spread each domain's messages over up to destination_concurrency
	 * workers, whole messages each, round robin.
	 */
	for (size_t i = 0, w = 0; i < r.n; i++) {
		if (i == 0 || strcmp(r.jobs[i].domain, r.jobs[i - 1].domain)) {
			w = 0;
			st->domains++;
		} else if (strcmp(r.jobs[i].qid, r.jobs[i - 1].qid))
			w = (w + 1) % cfg->destination_concurrency;
		r.jobs[i].worker = (int)w;
	}
	for (size_t i = 0; i < r.n; i++) {
		int	seen = 0;

		for (size_t k = 0; k < i; k++)
			if (r.jobs[k].worker == r.jobs[i].worker &&
			    strcmp(r.jobs[k].domain, r.jobs[i].domain) == 0) {
				seen = 1;
				break;
			}
		if (seen)
			continue;
		while (running >= cfg->delivery_concurrency) {
			if (wait(&status) > 0)
				running--;
			else if (errno != EINTR)
				break;
		}
		fflush(NULL);
		if ((pid = fork()) == 0) {
			close(pfd[0]);
			_exit(worker(cfg, r.jobs, r.n, r.jobs[i].domain,
			    r.jobs[i].worker, pfd[1]));
		}
		if (pid > 0) {
			running++;
			nworkers++;
		} else
			mg_warn("fork: %s", strerror(errno));
	}
	while (running > 0) {
		if (wait(&status) > 0)
			running--;
		else if (errno != EINTR)
			break;
	}
	close(pfd[1]);
	while (read(pfd[0], v, sizeof(v)) == sizeof(v)) {
		st->delivered += v[0];
		st->deferred += v[1];
		st->bounced += v[2];
	}
	close(pfd[0]);
	free(r.jobs);
	/* Count outcomes and drop finished messages (status records are
	 * already in the outbox, committed with each outcome). */
	if ((e = spool_open(cfg->spool_directory, 0, &r.sp, errbuf, errlen)))
		return e;
	spool_walk(r.sp, find_done, &d);
	if (d.n > 0) {
		char	**dq = calloc(d.n, sizeof(*dq));
		size_t	  removed;

		/* In batches: one fsync per hundred messages, not each. */
		for (size_t i = 0; dq && i < d.n; i++)
			dq[i] = d.qids[i];
		if (dq == NULL || spool_msgs_delete(r.sp, dq, d.n,
		    "all recipients done", &removed) != MG_OK)
			mg_warn("daemon: finished messages not all removed; "
			    "the next run will");
		free(dq);
	}
	free(d.qids);
	spool_close(r.sp);
	return MG_OK;
}
