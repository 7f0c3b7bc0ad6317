/*
 * smarthost.c - relay the site's queue through a submission server.
 *
 * TLS is always required and verified (the server's name against its
 * certificate, with tls_ca_file or the system's CAs): a password and
 * mail go nowhere in clear.  Message order is the queue's (oldest
 * first); a connection is tried at each of the host's addresses in turn,
 * and when none answers the run ends, so a dead link costs one attempt.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mgate/dsn.h"
#include "mgate/log.h"
#include "mgate/smarthost.h"
#include "mgate/smtp_client.h"

struct todo {
	char	(*qids)[MG_QID_LEN + 1];
	size_t	 n, cap;
	int	 oom;
};

static int
collect(const struct spool_msg *m, void *arg)
{
	struct todo	*t = arg;
	void		*nq;

	if (m->env.peer || m->env.via)
		return 0;
	for (size_t i = 0; i < m->env.nrcpt; i++)
		if (m->rs[i].state == RS_QUEUED) {
			if (t->n == t->cap) {
				t->cap = t->cap ? t->cap * 2 : 32;
				if ((nq = realloc(t->qids, t->cap *
				    sizeof(*t->qids))) == NULL) {
					t->oom = 1;
					return 1;
				}
				t->qids = nq;
			}
			memcpy(t->qids[t->n++], m->env.qid, MG_QID_LEN + 1);
			break;
		}
	return 0;
}

static int
read_secret(const char *path, char *pw, size_t len)
{
	struct stat	st;
	FILE		*fp;

	if ((fp = fopen(path, "r")) == NULL)
		return -1;
	if (fstat(fileno(fp), &st) < 0 || (st.st_mode & 077) ||
	    fgets(pw, (int)len, fp) == NULL) {
		fclose(fp);
		return -1;
	}
	fclose(fp);
	pw[strcspn(pw, "\r\n")] = '\0';
	return pw[0] == '\0' ? -1 : 0;	/* an empty password is a mistake */
}

enum mg_err
smarthost_run(struct spool *sp, const struct mg_config *cfg,
    const struct mg_peer *peer, struct smarthost_stats *st, char *err,
    size_t errlen)
{
	struct todo		 t = { NULL, 0, 0, 0 };
	struct smtp_params	 p;
	struct smtp_session	*ss = NULL;
	struct addrinfo		 hints, *ai = NULL, *a;
	struct spool_msg	 m;
	struct mg_result	*res = NULL, fail;
	struct dsn_rcpt		*dr = NULL;
	size_t			*idx = NULL, k, nd;
	char			 pw[512], port[16], path[4200], derr[512];
	unsigned		 portn = peer->port ? (unsigned)peer->port : 587;
	enum mg_err		 e = MG_OK;
	int			 r;

	memset(st, 0, sizeof(*st));
	memset(&p, 0, sizeof(p));
	mg_result_set(&fail, MG_R_TEMP, 0, "4.4.1", peer->host,
	    "no connection to %s", peer->host);
	p.helo = cfg->myhostname;
	p.tls_policy = TLS_POLICY_VERIFY;
	p.cafile = peer->tls_ca_file;
	p.connect_timeout_ms = (int)peer->connect_timeout * 1000;
	p.command_timeout_ms = (int)peer->io_timeout * 1000;
	p.data_timeout_ms = (int)peer->io_timeout * 1000;
	p.implicit_tls = portn == 465;
	if (peer->password_file) {
		if (read_secret(peer->password_file, pw, sizeof(pw)) < 0) {
			snprintf(err, errlen, "%s: unreadable, empty, or "
			    "readable by others (chmod 600)",
			    peer->password_file);
			return MG_ECONFIG;
		}
		p.auth_user = peer->user;
		p.auth_pass = pw;
	}
	if ((e = spool_walk(sp, collect, &t)) != MG_OK || t.oom) {
		snprintf(err, errlen, "reading the queue: %s",
		    mg_strerror(t.oom ? MG_ENOMEM : e));
		e = t.oom ? MG_ENOMEM : e;
		goto out;
	}
	if (t.n == 0)
		goto out;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%u", portn);
	if ((r = getaddrinfo(peer->host, port, &hints, &ai)) != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", peer->host,
		    gai_strerror(r));
		e = MG_ETEMP;
		goto out;
	}
	for (size_t i = 0; i < t.n; i++) {
		if (spool_msg_get(sp, t.qids[i], &m) != MG_OK)
			continue;
		free(idx);
		free(res);
		free(dr);
		idx = calloc(m.env.nrcpt, sizeof(*idx));
		res = calloc(m.env.nrcpt, sizeof(*res));
		dr = calloc(m.env.nrcpt, sizeof(*dr));
		if (!idx || !res || !dr) {
			spool_msg_free(&m);
			e = MG_ENOMEM;
			goto out;
		}
		for (k = 0, nd = 0; k < m.env.nrcpt; k++)
			if (m.rs[k].state == RS_QUEUED)
				idx[nd++] = k;
		if (!smtp_usable(ss)) {
			smtp_close(ss);
			ss = NULL;
			/* Each of the host's addresses in turn (RFC 5321 5.1). */
			for (a = ai; a && ss == NULL; a = a->ai_next)
				if (smtp_open(&p, peer->host, a->ai_addr,
				    a->ai_addrlen, &ss, &fail) != MG_OK)
					ss = NULL;
			if (ss == NULL) {
				snprintf(err, errlen, "%s", fail.text);
				spool_msg_free(&m);
				e = MG_ETEMP;	/* the link: try later */
				goto out;
			}
		}
		if (spool_body_path(sp, m.env.qid, path, sizeof(path)) != MG_OK) {
			spool_msg_free(&m);
			continue;
		}
		st->messages++;
		smtp_send(ss, &m.env, idx, nd, path, NULL, res);
		k = 0;
		for (size_t j = 0; j < nd; j++) {
			const char *addr = m.env.rcpts[idx[j]].addr;
			char	    text[900];

			snprintf(text, sizeof(text), "%s", res[j].text);
			switch (res[j].cls) {
			case MG_R_OK:
				spool_rcpt_update(sp, m.env.qid, idx[j],
				    RS_DELIVERED, text, NULL);
				st->delivered++;
				break;
			case MG_R_PERM:
				spool_rcpt_update(sp, m.env.qid, idx[j],
				    RS_BOUNCED, text, NULL);
				st->bounced++;
				if (!(m.env.rcpts[idx[j]].notify &
				    MG_NOTIFY_NEVER) &&
				    (m.env.rcpts[idx[j]].notify == 0 ||
				    (m.env.rcpts[idx[j]].notify &
				    MG_NOTIFY_FAILURE))) {
					dr[k].idx = idx[j];
					dr[k].status = res[j].status;
					dr[k].remote = res[j].remote;
					dr[k].diag = res[j].text;
					k++;
				}
				break;
			default:
				spool_rcpt_update(sp, m.env.qid, idx[j],
				    RS_QUEUED, text, NULL);
				st->deferred++;
				break;
			}
			mg_info("%s: to=<%s>, relay=%s, status=%s (%s)",
			    m.env.qid, addr, res[j].remote, res[j].cls ==
			    MG_R_OK ? "sent" : res[j].cls == MG_R_PERM ?
			    "bounced" : "deferred", res[j].text);
		}
		if (k > 0 && dsn_deliver(cfg, &m, path, DSN_FAILED, dr, k,
		    derr, sizeof(derr)) != MG_OK)
			mg_warn("%s: cannot deliver the bounce report: %s",
			    m.env.qid, derr);
		spool_msg_free(&m);
	}
out:
	explicit_bzero(pw, sizeof(pw));
	smtp_close(ss);
	if (ai)
		freeaddrinfo(ai);
	free(t.qids);
	free(idx);
	free(res);
	free(dr);
	return e;
}
