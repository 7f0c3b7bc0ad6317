/*
 * inbound.c - local delivery of mail received from the gateway.
 *
 * The local user is the recipient's local part, lower-cased, with any
 * "+detail" dropped; it must look like a login (letters, digits, '.',
 * '_', '-'), since it names a mailbox.  Exactly-once has the usual MTA
 * window: a kill between the mailbox's rename and the state commit
 * delivers that recipient again on the next run.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgate/inbound.h"
#include "mgate/late_bounce.h"
#include "mgate/local.h"
#include "mgate/log.h"
#include "mgate/maildrop.h"

struct pending {
	char	(*qids)[MG_QID_LEN + 1];
	size_t	 n, cap;
	int	 oom;
};

static int
collect(const struct spool_msg *m, void *arg)
{
	struct pending	*p = arg;
	void		*nq;

	if (m->env.peer == NULL)
		return 0;
	for (size_t i = 0; i < m->env.nrcpt; i++) {
		if (m->rs[i].state != RS_QUEUED)
			continue;
		if (p->n == p->cap) {
			p->cap = p->cap ? p->cap * 2 : 32;
			if ((nq = realloc(p->qids, p->cap *
			    sizeof(*p->qids))) == NULL) {
				p->oom = 1;
				return 1;
			}
			p->qids = nq;
		}
		memcpy(p->qids[p->n++], m->env.qid, MG_QID_LEN + 1);
		break;
	}
	return 0;
}

static int
local_user(const char *addr, char *out, size_t len)
{
	size_t n = 0;

	for (const char *p = addr; *p && *p != '@' && *p != '+'; p++) {
		if (n + 1 >= len || !(isalnum((unsigned char)*p) ||
		    *p == '.' || *p == '_' || *p == '-'))
			return -1;
		out[n++] = (char)tolower((unsigned char)*p);
	}
	out[n] = '\0';
	return n > 0 && out[0] != '.' && out[0] != '-' ? 0 : -1;
}

static enum mg_err
deliver_one(struct spool *sp, const struct mg_config *cfg,
    const struct spool_msg *m, size_t idx, const char *path)
{
	struct maildrop_reader	*r = NULL;
	struct local_dest	*d = NULL;
	char			 user[64], err[512], buf[65536];
	ssize_t			 n;
	enum mg_err		 e;

	if (local_user(m->env.rcpts[idx].addr, user, sizeof(user)) < 0) {
		spool_rcpt_update(sp, m->env.qid, idx, RS_BOUNCED,
		    "5.1.3 no local user for this address", NULL);
		mg_warn("%s: to=<%s>: no local user for this address; held "
		    "as bounced", m->env.qid, m->env.rcpts[idx].addr);
		return MG_OK;
	}
	if ((e = maildrop_open(path, &r, err, sizeof(err))) != MG_OK)
		goto fail;
	if ((e = local_open(cfg, user, m->env.sender, &d, err,
	    sizeof(err))) != MG_OK)
		goto fail;
	while ((n = maildrop_read(r, buf, sizeof(buf), &e)) > 0)
		if ((e = local_write(d, buf, (size_t)n)) != MG_OK)
			break;
	if (n < 0 || e != MG_OK) {
		local_abort(d);
		d = NULL;
		snprintf(err, sizeof(err), "%s", mg_strerror(e));
		goto fail;
	}
	e = local_commit(d, err, sizeof(err));
	d = NULL;
	if (e != MG_OK)
		goto fail;
	maildrop_close(r);
	spool_rcpt_update(sp, m->env.qid, idx, RS_DELIVERED,
	    "delivered to the local mailbox", NULL);
	mg_info("%s: to=<%s>, relay=local, user=%s, status=sent", m->env.qid,
	    m->env.rcpts[idx].addr, user);
	return MG_OK;
fail:
	maildrop_close(r);
	local_abort(d);
	mg_warn("%s: to=<%s>: local delivery failed, will retry: %s",
	    m->env.qid, m->env.rcpts[idx].addr, err);
	return e;
}

enum mg_err
inbound_deliver(struct spool *sp, const struct mg_config *cfg,
    size_t *delivered)
{
	struct pending		p = { NULL, 0, 0, 0 };
	struct spool_msg	m;
	char			path[4200];
	enum mg_err		e;
	int			done;

	*delivered = 0;
	if ((e = spool_walk(sp, collect, &p)) != MG_OK || p.oom) {
		free(p.qids);
		return p.oom ? MG_ENOMEM : e;
	}
	for (size_t i = 0; i < p.n; i++) {
		if (spool_msg_get(sp, p.qids[i], &m) != MG_OK)
			continue;
		if (spool_body_path(sp, m.env.qid, path, sizeof(path)) !=
		    MG_OK) {
			spool_msg_free(&m);
			continue;
		}
		/* A report about our own mail: record what it says first. */
		if (m.env.sender[0] == '\0') {
			struct late_bounce *lb = malloc(sizeof(*lb));

			if (lb && late_bounce_parse(path, cfg->myhostname, lb))
				late_bounce_apply(sp, m.env.qid, lb);
			free(lb);
		}
		done = 1;
		for (size_t k = 0; k < m.env.nrcpt; k++) {
			if (m.rs[k].state != RS_QUEUED)
				continue;
			if (deliver_one(sp, cfg, &m, k, path) == MG_OK)
				(*delivered)++;
			else
				done = 0;
		}
		spool_msg_free(&m);
		if (done && spool_msg_delete(sp, p.qids[i]) == MG_OK)
			mg_info("%s: removed (delivered locally)", p.qids[i]);
	}
	free(p.qids);
	return MG_OK;
}
