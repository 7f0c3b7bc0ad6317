/*
 * history.c - expire the site's record of mail whose fate is known.
 *
 * Only messages this site sent (no peer, no via) whose every recipient
 * is delivered or bounced qualify, counted from the last change of any
 * recipient: a late bounce that arrives restarts the clock.  Removal
 * goes through spool_msgs_delete, a hundred per transaction.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mgate/history.h"
#include "mgate/log.h"

struct expire_arg {
	uint64_t	  before;	/* last change older than this */
	char		**qids;
	size_t		  n, cap;
	int		  oom;
};

static int
collect(const struct spool_msg *m, void *arg)
{
	struct expire_arg	*a = arg;
	uint64_t		 last = 0;
	char			**nq;

	if (m->env.peer != NULL || m->env.via != NULL || m->env.nrcpt == 0)
		return 0;
	for (size_t i = 0; i < m->env.nrcpt; i++) {
		if (!rcpt_state_final(m->rs[i].state))
			return 0;
		if (m->rs[i].updated > last)
			last = m->rs[i].updated;
	}
	if (last >= a->before)
		return 0;
	if (a->n == a->cap) {
		a->cap = a->cap ? a->cap * 2 : 64;
		if ((nq = realloc(a->qids, a->cap * sizeof(*nq))) == NULL) {
			a->oom = 1;
			return 1;
		}
		a->qids = nq;
	}
	if ((a->qids[a->n] = strdup(m->env.qid)) == NULL) {
		a->oom = 1;
		return 1;
	}
	a->n++;
	return 0;
}

enum mg_err
history_expire(struct spool *sp, const struct mg_config *cfg,
    size_t *removed)
{
	struct expire_arg	a;
	uint64_t		now = (uint64_t)time(NULL);
	size_t			n = 0;
	enum mg_err		e;

	memset(&a, 0, sizeof(a));
	a.before = now > cfg->history_lifetime ? now -
	    cfg->history_lifetime : 0;
	if ((e = spool_walk(sp, collect, &a)) == MG_OK && a.oom)
		e = MG_ENOMEM;
	if (e == MG_OK && a.n > 0)
		e = spool_msgs_delete(sp, a.qids, a.n, "history_lifetime "
		    "over", &n);
	if (e != MG_OK)
		mg_warn("history: cannot remove old delivered mail: %s",
		    mg_strerror(e));
	for (size_t i = 0; i < a.n; i++)
		free(a.qids[i]);
	free(a.qids);
	if (removed)
		*removed = n;
	return e;
}
