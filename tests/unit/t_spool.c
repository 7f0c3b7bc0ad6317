/*
 * t_spool.c - unit tests for spool.c: the Berkeley DB queue and its body
 * files, in a throwaway spool under /tmp.
 *
 * The verbs one by one (create, get, walk, update, transition, delete,
 * seen IDs, pickup) with what each must return, then the situations a
 * real site has: pickup finishing what a killed pickup left, corrupt
 * submissions set aside, two handles in one process, and another
 * process creating messages while this one reads.
 * Set T_VERBOSE=1 to see mgate's log lines on stderr.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mgate/envelope.h"
#include "mgate/log.h"
#include "mgate/maildrop.h"
#include "mgate/qid.h"
#include "mgate/spool.h"
#include "tap.h"

static char dir[64];

static const char *
cs(const char *s)
{
	return s;
}

static int
exists(const char *sub, const char *name)
{
	char		path[512];
	struct stat	st;

	snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
	return lstat(path, &st) == 0;
}

static int
count_dir(const char *sub)
{
	char		 path[256];
	DIR		*d;
	struct dirent	*de;
	int		 n = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

/*
 * Capture mgate's log lines (and Berkeley DB's, which go through
 * mg_warn) in a file for a while, to look for signs of recovery.
 */
static int saved_fd = -1;
static char capture_path[128];

static void
capture_begin(void)
{
	int fd;

	snprintf(capture_path, sizeof(capture_path), "%s.log", dir);
	fflush(stderr);
	saved_fd = dup(2);
	fd = open(capture_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 2);
	close(fd);
	mg_log_set_dest(MG_LOG_STDERR);
}

/* Stop capturing; 1 if the log mentions recovery or a panic. */
static int
capture_end(void)
{
	char	 line[1024];
	FILE	*fp;
	int	 found = 0;

	fflush(stderr);
	dup2(saved_fd, 2);
	close(saved_fd);
	mg_log_set_dest(getenv("T_VERBOSE") ? MG_LOG_STDERR : MG_LOG_NONE);
	if ((fp = fopen(capture_path, "r")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), fp) != NULL)
		if (strstr(line, "PANIC") || strstr(line, "run recovery") ||
		    strstr(line, "DB_RUNRECOVERY")) {
			if (!found)
				diag("  log: %.*s", (int)strcspn(line, "\n"),
				    line);
			found = 1;
		}
	fclose(fp);
	unlink(capture_path);
	return found;
}

/* A test envelope with a fixed queue ID and n recipients. */
static void
make_env(struct mg_envelope *env, uint64_t usec, size_t n, const char *tag)
{
	char a[128], o[128];

	memset(env, 0, sizeof(*env));
	mg_qid_make(env->qid, usec, (uint32_t)usec * 7919u);
	env->arrival = usec / 1000000;
	env->user = strdup("bob");
	env->sender = strdup(tag);
	env->envid = usec % 2 ? NULL : strdup("ENV-ID");
	env->ret = (int)(usec % 3);
	env->body = (int)(usec % 3);
	env->size = usec % 100000;
	env->priority = (int)(usec % 3);	/* low, normal, high */
	if (usec % 4 == 1) {
		env->peer = strdup("gw");
		env->peer_qid = strdup("0123456789ABCDEF");
		env->via = strdup("site-b");
	}
	for (size_t i = 0; i < n; i++) {
		snprintf(a, sizeof(a), "r%zu+%s@example.net", i, tag);
		snprintf(o, sizeof(o), "rfc822;R%zu@example.net", i);
		mg_envelope_add_rcpt(env, strdup(a), i % 2 ? strdup(o) : NULL,
		    (unsigned)(i % 3 == 0 ? MG_NOTIFY_NEVER :
		    MG_NOTIFY_FAILURE | MG_NOTIFY_DELAY));
	}
}

static int
same_str(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	    (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static int
same_env(const struct mg_envelope *a, const struct mg_envelope *b,
    const char **why)
{
	*why = "qid";
	if (strcmp(a->qid, b->qid))
		return 0;
	*why = "arrival";
	if (a->arrival != b->arrival)
		return 0;
	*why = "user";
	if (!a->user || !b->user || strcmp(a->user, b->user))
		return 0;
	*why = "sender";
	if (!a->sender || !b->sender || strcmp(a->sender, b->sender))
		return 0;
	*why = "envid";
	if ((a->envid == NULL) != (b->envid == NULL) ||
	    (a->envid && strcmp(a->envid, b->envid)))
		return 0;
	*why = "ret/body";
	if (a->ret != b->ret || a->body != b->body)
		return 0;
	*why = "size";
	if (a->size != b->size)
		return 0;
	*why = "priority";
	if (a->priority != b->priority)
		return 0;
	*why = "peer/peer_qid/via";
	if (!same_str(a->peer, b->peer) || !same_str(a->peer_qid,
	    b->peer_qid) || !same_str(a->via, b->via))
		return 0;
	*why = "nrcpt";
	if (a->nrcpt != b->nrcpt)
		return 0;
	for (size_t i = 0; i < a->nrcpt; i++) {
		*why = "rcpt";
		if (strcmp(a->rcpts[i].addr, b->rcpts[i].addr) ||
		    a->rcpts[i].notify != b->rcpts[i].notify ||
		    (a->rcpts[i].orcpt == NULL) != (b->rcpts[i].orcpt == NULL) ||
		    (a->rcpts[i].orcpt && strcmp(a->rcpts[i].orcpt,
		    b->rcpts[i].orcpt)))
			return 0;
	}
	*why = "";
	return 1;
}

static void
test_open(struct spool **out)
{
	char		 err[512], nested[128];
	struct spool	*sp = (struct spool *)&sp;
	static const char *const subs[] = { "maildrop", "tmp", "queue",
		"corrupt", "db" };
	int		 all = 1;

	snprintf(nested, sizeof(nested), "%s/missing", dir);
	is_int(spool_open(nested, 0, &sp, err, sizeof(err)), MG_EUNAVAIL,
	    "open: missing spool without SPOOL_CREATE is MG_EUNAVAIL");
	ok(sp == NULL && strstr(err, nested) != NULL,
	    "open: no handle, message names the directory");

	snprintf(nested, sizeof(nested), "%s/a/b/spool", dir);
	if (is_int(spool_open(nested, SPOOL_CREATE, &sp, err, sizeof(err)),
	    MG_OK, "open: SPOOL_CREATE makes a nested spool"))
		spool_close(sp);
	else
		diag("  %s", err);

	if (!is_int(spool_open(dir, SPOOL_CREATE, &sp, err, sizeof(err)),
	    MG_OK, "open: SPOOL_CREATE")) {
		diag("  %s", err);
		*out = NULL;
		return;
	}
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		char		path[256];
		struct stat	st;

		snprintf(path, sizeof(path), "%s/%s", dir, subs[i]);
		if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode) ||
		    (st.st_mode & 0777) != 0700) {
			all = 0;
			diag("  %s missing or not mode 0700", path);
		}
	}
	ok(all, "open: layout created with mode 0700");
	is_str(spool_dir(sp), cs(dir), "open: spool_dir");
	spool_close(sp);
	/* Reopen the existing spool without SPOOL_CREATE. */
	if (!is_int(spool_open(dir, 0, &sp, err, sizeof(err)), MG_OK,
	    "open: existing spool without SPOOL_CREATE"))
		diag("  %s", err);
	*out = sp;
}

static const uint64_t base = 1700000000000000ULL;

static void
test_create_get(struct spool *sp)
{
	struct mg_envelope	 env, other;
	struct spool_msg	 m;
	const char		*why = "";
	int			 good = 1;

	make_env(&env, base + 500, 4, "create@example.org");
	is_int(spool_msg_create(sp, &env), MG_OK, "create: MG_OK");
	is_int(spool_msg_create(sp, &env), MG_EEXIST,
	    "create: again is MG_EEXIST");
	/* Same ID, other content: the first record stays. */
	make_env(&other, base + 500, 1, "intruder@example.org");
	is_int(spool_msg_create(sp, &other), MG_EEXIST,
	    "create: same ID, different envelope is MG_EEXIST");
	mg_envelope_free(&other);

	memset(&m, 0xa5, sizeof(m));
	if (is_int(spool_msg_get(sp, env.qid, &m), MG_OK, "get: MG_OK")) {
		if (!ok(same_env(&env, &m.env, &why),
		    "get: envelope equal to what was created"))
			diag("  differs in %s", why);
		for (size_t i = 0; i < m.env.nrcpt; i++)
			if (m.rs[i].state != RS_QUEUED ||
			    m.rs[i].result != NULL || m.rs[i].bundle != NULL ||
			    m.rs[i].updated != env.arrival)
				good = 0;
		ok(good, "get: every recipient queued, no result, no bundle, "
		    "updated = arrival");
		spool_msg_free(&m);
	}
	/* The null sender and no ENVID. */
	{
		struct mg_envelope e2;

		make_env(&e2, base + 501, 1, "");
		is_int(spool_msg_create(sp, &e2), MG_OK, "create: null sender");
		if (is_int(spool_msg_get(sp, e2.qid, &m), MG_OK,
		    "get: null sender")) {
			ok(same_env(&e2, &m.env, &why) && m.env.sender[0] ==
			    '\0' && m.env.envid == NULL,
			    "get: sender \"\" and no ENVID kept");
			spool_msg_free(&m);
		}
		mg_envelope_free(&e2);
	}
	{
		char unknown[MG_QID_LEN + 1];

		mg_qid_make(unknown, base + 499, 1);
		is_int(spool_msg_get(sp, unknown, &m), MG_ENOTFOUND,
		    "get: unknown ID is MG_ENOTFOUND");
	}
	is_int(spool_msg_get(sp, "../../etc/passwd", &m), MG_ENOTFOUND,
	    "get: invalid ID is MG_ENOTFOUND");
	is_int(spool_msg_get(sp, "", &m), MG_ENOTFOUND,
	    "get: empty ID is MG_ENOTFOUND");
	mg_envelope_free(&env);
}

struct walk_ctx {
	char	 qids[64][MG_QID_LEN + 1];
	size_t	 n;
	size_t	 stop_after;	/* 0: never */
	int	 bad;
};

static int
walk_fn(const struct spool_msg *m, void *arg)
{
	struct walk_ctx *w = arg;

	if (w->n < 64)
		memcpy(w->qids[w->n], m->env.qid, MG_QID_LEN + 1);
	if (m->env.nrcpt == 0 || m->rs == NULL)
		w->bad++;
	w->n++;
	return w->stop_after && w->n >= w->stop_after;
}

static void
test_walk(struct spool *sp)
{
	/* Created out of order; the walk must give them in ID order. */
	static const uint64_t offs[] = { 900, 100, 700, 300, 200, 800, 600 };
	struct walk_ctx		 w;
	struct mg_envelope	 env;
	int			 sorted = 1;

	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		make_env(&env, base + offs[i], 2, "walk");
		spool_msg_create(sp, &env);
		mg_envelope_free(&env);
	}
	memset(&w, 0, sizeof(w));
	is_int(spool_walk(sp, walk_fn, &w), MG_OK, "walk: MG_OK");
	is_int(w.n, 9, "walk: 7 new + 2 earlier messages");
	is_int(w.bad, 0, "walk: every message comes with its recipients");
	for (size_t i = 1; i < w.n && i < 64; i++)
		if (strcmp(w.qids[i - 1], w.qids[i]) >= 0)
			sorted = 0;
	ok(sorted, "walk: in queue-ID (age) order");
	ok(w.n > 0 && mg_qid_usec(w.qids[0]) == base + 100,
	    "walk: oldest first");

	memset(&w, 0, sizeof(w));
	w.stop_after = 3;
	is_int(spool_walk(sp, walk_fn, &w), MG_OK, "walk: stopped early");
	is_int(w.n, 3, "walk: fn's non-zero return stops it");
}

static void
test_update(struct spool *sp)
{
	struct mg_envelope	 env;
	struct spool_msg	 m;
	time_t			 now = time(NULL);
	static const char	 odd[] = "550 5.1.1 <x>: no\r\nsuch user\xff";

	make_env(&env, base + 1000, 3, "upd");
	spool_msg_create(sp, &env);
	is_int(spool_rcpt_update(sp, env.qid, 1, RS_DEFERRED,
	    "451 4.3.0 try again later", "BNDL0001"), MG_OK,
	    "update: MG_OK");
	if (is_int(spool_msg_get(sp, env.qid, &m), MG_OK, "update: get")) {
		ok(m.rs[1].state == RS_DEFERRED, "update: state set");
		is_str(m.rs[1].result, "451 4.3.0 try again later",
		    "update: result text stored");
		is_str(m.rs[1].bundle, "BNDL0001", "update: bundle stored");
		ok(m.rs[1].updated >= (uint64_t)now - 1 &&
		    m.rs[1].updated <= (uint64_t)time(NULL) + 1,
		    "update: updated is now");
		ok(m.rs[0].state == RS_QUEUED && m.rs[0].result == NULL &&
		    m.rs[2].state == RS_QUEUED,
		    "update: other recipients untouched");
		is_str(m.env.rcpts[1].addr, env.rcpts[1].addr,
		    "update: address kept");
		ok(m.env.rcpts[1].notify == env.rcpts[1].notify &&
		    m.env.rcpts[1].orcpt && env.rcpts[1].orcpt &&
		    !strcmp(m.env.rcpts[1].orcpt, env.rcpts[1].orcpt),
		    "update: NOTIFY and ORCPT kept");
		spool_msg_free(&m);
	}
	/* NULL result and bundle keep the old ones. */
	is_int(spool_rcpt_update(sp, env.qid, 1, RS_ACCEPTED, NULL, NULL),
	    MG_OK, "update: NULL texts");
	if (is_int(spool_msg_get(sp, env.qid, &m), MG_OK, "update: get 2")) {
		ok(m.rs[1].state == RS_ACCEPTED, "update: new state");
		is_str(m.rs[1].result, "451 4.3.0 try again later",
		    "update: NULL result keeps the old text");
		is_str(m.rs[1].bundle, "BNDL0001",
		    "update: NULL bundle keeps the old one");
		spool_msg_free(&m);
	}
	/* A result with CR, LF and 0xFF comes back byte for byte. */
	is_int(spool_rcpt_update(sp, env.qid, 2, RS_BOUNCED, odd, "B2"),
	    MG_OK, "update: odd bytes in the result");
	if (is_int(spool_msg_get(sp, env.qid, &m), MG_OK, "update: get 3")) {
		is_str(m.rs[2].result, cs(odd), "update: result with CR LF 0xFF "
		    "intact");
		ok(m.rs[2].state == RS_BOUNCED, "update: bounced");
		spool_msg_free(&m);
	}
	is_int(spool_rcpt_update(sp, env.qid, 3, RS_DELIVERED, "x", NULL),
	    MG_ENOTFOUND, "update: index past the last recipient");
	{
		char unknown[MG_QID_LEN + 1];

		mg_qid_make(unknown, base + 1001, 5);
		is_int(spool_rcpt_update(sp, unknown, 0, RS_DELIVERED, "x",
		    NULL), MG_ENOTFOUND, "update: unknown message");
	}
	is_int(spool_rcpt_update(sp, "nope", 0, RS_DELIVERED, "x", NULL),
	    MG_ENOTFOUND, "update: invalid ID");
	mg_envelope_free(&env);
}

static void
test_transition(struct spool *sp)
{
	struct mg_envelope	 env;
	struct spool_msg	 m;
	size_t			 changed = 99;

	make_env(&env, base + 2000, 5, "trans");
	spool_msg_create(sp, &env);
	spool_rcpt_update(sp, env.qid, 1, RS_DEFERRED, "later", NULL);
	spool_rcpt_update(sp, env.qid, 2, RS_DELIVERED, "250 ok", NULL);
	spool_rcpt_update(sp, env.qid, 3, RS_BUNDLED, NULL, "B9");
	/* states: queued, deferred, delivered, bundled, queued */

	is_int(spool_msg_transition(sp, env.qid,
	    RS_BIT(RS_QUEUED) | RS_BIT(RS_DEFERRED), RS_HELD, &changed),
	    MG_OK, "hold: MG_OK");
	is_int(changed, 3, "hold: queued and deferred recipients held");
	if (is_int(spool_msg_get(sp, env.qid, &m), MG_OK, "hold: get")) {
		ok(m.rs[0].state == RS_HELD && m.rs[1].state == RS_HELD &&
		    m.rs[4].state == RS_HELD, "hold: those three are held");
		ok(m.rs[2].state == RS_DELIVERED && m.rs[3].state ==
		    RS_BUNDLED, "hold: delivered and bundled untouched");
		is_str(m.rs[1].result, "later", "hold: result kept");
		is_str(m.rs[3].bundle, "B9", "hold: bundle kept");
		spool_msg_free(&m);
	}
	is_int(spool_msg_transition(sp, env.qid, RS_BIT(RS_HELD), RS_HELD,
	    &changed), MG_OK, "hold again: MG_OK");
	is_int(changed, 3, "hold again: counts the held ones");
	is_int(spool_msg_transition(sp, env.qid, RS_BIT(RS_HELD), RS_QUEUED,
	    &changed), MG_OK, "release: MG_OK");
	is_int(changed, 3, "release: three released");
	if (is_int(spool_msg_get(sp, env.qid, &m), MG_OK, "release: get")) {
		ok(m.rs[0].state == RS_QUEUED && m.rs[1].state == RS_QUEUED &&
		    m.rs[4].state == RS_QUEUED && m.rs[2].state ==
		    RS_DELIVERED && m.rs[3].state == RS_BUNDLED,
		    "release: queued again, others untouched");
		spool_msg_free(&m);
	}
	is_int(spool_msg_transition(sp, env.qid, RS_BIT(RS_BOUNCED),
	    RS_QUEUED, &changed), MG_OK, "transition: empty match MG_OK");
	is_int(changed, 0, "transition: nothing changed");
	is_int(spool_msg_transition(sp, env.qid, RS_BIT(RS_BUNDLED),
	    RS_QUEUED, NULL), MG_OK, "transition: changed may be NULL");
	{
		char unknown[MG_QID_LEN + 1];

		mg_qid_make(unknown, base + 2001, 5);
		is_int(spool_msg_transition(sp, unknown, ~0u, RS_HELD,
		    &changed), MG_ENOTFOUND, "transition: unknown message");
	}
	is_int(spool_msg_transition(sp, "bad/id", ~0u, RS_HELD, &changed),
	    MG_ENOTFOUND, "transition: invalid ID");
	ok(strcmp(rcpt_state_name(RS_HELD), "held") == 0 &&
	    strcmp(rcpt_state_name(RS_NSTATES), "unknown") == 0 &&
	    rcpt_state_final(RS_DELIVERED) && rcpt_state_final(RS_BOUNCED) &&
	    !rcpt_state_final(RS_DEFERRED), "state names and finality");
	mg_envelope_free(&env);
}

static void
test_delete(struct spool *sp)
{
	struct mg_envelope	 env;
	struct spool_msg	 m;
	struct walk_ctx		 w;
	char			 body[512], bp[512];
	int			 fd, listed = 0;

	make_env(&env, base + 3000, 3, "del");
	spool_msg_create(sp, &env);
	snprintf(body, sizeof(body), "%s/queue/%s", dir, env.qid);
	fd = open(body, O_WRONLY | O_CREAT, 0600);
	close(fd);
	is_int(spool_body_path(sp, env.qid, bp, sizeof(bp)), MG_OK,
	    "body_path: found in queue/");
	is_str(cs(bp), cs(body), "body_path: queue/QID");
	is_int(spool_msg_delete(sp, env.qid), MG_OK, "delete: MG_OK");
	is_int(spool_msg_get(sp, env.qid, &m), MG_ENOTFOUND,
	    "delete: then get is MG_ENOTFOUND");
	ok(!exists("queue", env.qid), "delete: body file removed");
	is_int(spool_body_path(sp, env.qid, bp, sizeof(bp)), MG_ENOTFOUND,
	    "body_path: gone after delete");
	is_int(spool_msg_delete(sp, env.qid), MG_ENOTFOUND,
	    "delete: twice is MG_ENOTFOUND");
	is_int(spool_rcpt_update(sp, env.qid, 0, RS_HELD, NULL, NULL),
	    MG_ENOTFOUND, "delete: recipients gone too");
	memset(&w, 0, sizeof(w));
	spool_walk(sp, walk_fn, &w);
	for (size_t i = 0; i < w.n && i < 64; i++)
		if (!strcmp(w.qids[i], env.qid))
			listed = 1;
	ok(!listed, "delete: not in the walk");
	/* Re-creating the same ID after delete works (fresh record). */
	is_int(spool_msg_create(sp, &env), MG_OK,
	    "delete: the ID can be created again");
	if (is_int(spool_msg_get(sp, env.qid, &m), MG_OK, "delete: get new")) {
		ok(m.env.nrcpt == 3 && m.rs[0].state == RS_QUEUED,
		    "delete: new record is fresh");
		spool_msg_free(&m);
	}
	spool_msg_delete(sp, env.qid);
	is_int(spool_msg_delete(sp, "../x"), MG_ENOTFOUND,
	    "delete: invalid ID");
	mg_envelope_free(&env);
}

static void
test_seen(struct spool *sp)
{
	is_int(spool_seen_check(sp, "bundle", "B-0001"), MG_ENOTFOUND,
	    "seen: unknown is MG_ENOTFOUND");
	is_int(spool_seen_add(sp, "bundle", "B-0001"), MG_OK, "seen: add");
	is_int(spool_seen_add(sp, "bundle", "B-0001"), MG_EEXIST,
	    "seen: second add is MG_EEXIST");
	is_int(spool_seen_check(sp, "bundle", "B-0001"), MG_OK,
	    "seen: check finds it");
	is_int(spool_seen_check(sp, "bundle", "B-0002"), MG_ENOTFOUND,
	    "seen: another ID not seen");
	is_int(spool_seen_check(sp, "ack", "B-0001"), MG_ENOTFOUND,
	    "seen: kinds are separate");
	is_int(spool_seen_add(sp, "ack", "B-0001"), MG_OK,
	    "seen: same ID, other kind");
	is_int(spool_seen_check(sp, "bundle", "B-000"), MG_ENOTFOUND,
	    "seen: prefix does not match");
	{
		char	id[32];
		int	bad = 0;

		for (int i = 0; i < 200; i++) {
			snprintf(id, sizeof(id), "id%d", i);
			if (spool_seen_add(sp, "many", id) != MG_OK)
				bad++;
		}
		for (int i = 0; i < 200; i++) {
			snprintf(id, sizeof(id), "id%d", i);
			if (spool_seen_check(sp, "many", id) != MG_OK ||
			    spool_seen_add(sp, "many", id) != MG_EEXIST)
				bad++;
		}
		is_int(bad, 0, "seen: 200 IDs added once, found, refused twice");
	}
}

/* A committed maildrop file; env->qid is set by maildrop_create. */
static enum mg_err
drop(struct mg_envelope *env, const char *content, size_t len)
{
	struct maildrop_writer	*w = NULL;
	enum mg_err		 e;

	if ((e = maildrop_create(dir, env, &w)) != MG_OK)
		return e;
	if ((e = maildrop_put_envelope(w, env)) != MG_OK ||
	    (e = maildrop_put_content(w, content, len)) != MG_OK) {
		maildrop_abort(w);
		return e;
	}
	env->size = len;
	return maildrop_commit(w);
}

static void
test_pickup(struct spool *sp)
{
	struct mg_envelope	 env[3], env4;
	struct spool_msg	 m;
	size_t			 picked = 99;
	const char		*why = "";
	char			 bp[512];
	int			 all = 1;
	static const char	 b0[] = "Subject: one\n\nbody\n";
	static const char	 b2[] = "Subject: three\r\n\r\n\0\xff";
	static const char	*const bodies[] = { b0, "", b2 };
	static const size_t	 blens[] = { sizeof(b0) - 1, 0,
	    sizeof(b2) - 1 };

	for (int i = 0; i < 3; i++) {
		make_env(&env[i], 0, (size_t)i + 1, i == 1 ? "" : "p@x");
		env[i].arrival = 1700000000 + (uint64_t)i;
		is_int(drop(&env[i], bodies[i], blens[i]), MG_OK,
		    "pickup: maildrop file %d committed", i);
	}
	is_int(count_dir("maildrop"), 3, "pickup: three files waiting");
	is_int(spool_pickup(sp, &picked), MG_OK, "pickup: MG_OK");
	is_int(picked, 3, "pickup: picked 3");
	is_int(count_dir("maildrop"), 0, "pickup: maildrop/ empty");
	for (int i = 0; i < 3; i++) {
		if (!exists("queue", env[i].qid))
			all = 0;
		if (spool_msg_get(sp, env[i].qid, &m) != MG_OK) {
			all = 0;
			continue;
		}
		if (!same_env(&env[i], &m.env, &why)) {
			all = 0;
			diag("  message %d differs in %s", i, why);
		}
		spool_msg_free(&m);
		if (spool_body_path(sp, env[i].qid, bp, sizeof(bp)) != MG_OK ||
		    strstr(bp, "/queue/") == NULL)
			all = 0;
	}
	ok(all, "pickup: bodies in queue/, envelopes in the database, equal");
	/* The body file in queue/ is still a readable maildrop file. */
	{
		struct maildrop_reader	*r = NULL;
		char			 err[256], buf[64];
		ssize_t			 n;
		enum mg_err		 e = MG_OK;

		spool_body_path(sp, env[2].qid, bp, sizeof(bp));
		is_int(maildrop_open(bp, &r, err, sizeof(err)), MG_OK,
		    "pickup: body file opens");
		if (r) {
			n = maildrop_read(r, buf, sizeof(buf), &e);
			ok(n == (ssize_t)blens[2] &&
			    memcmp(buf, b2, blens[2]) == 0,
			    "pickup: body content intact");
			maildrop_close(r);
		}
	}
	picked = 99;
	is_int(spool_pickup(sp, &picked), MG_OK, "pickup again: MG_OK");
	is_int(picked, 0, "pickup again: picks 0 (idempotent)");

	/*
	 * A pickup killed after its commit but before the rename: the file
	 * is still in maildrop/ and its ID already in the database.
	 */
	make_env(&env4, 0, 2, "crash@x");
	drop(&env4, "x\n", 2);
	is_int(spool_msg_create(sp, &env4), MG_OK,
	    "half-done pickup: records committed");
	is_int(spool_pickup(sp, &picked), MG_OK, "half-done pickup: MG_OK");
	is_int(picked, 0, "half-done pickup: not counted twice");
	ok(exists("queue", env4.qid) && !exists("maildrop", env4.qid),
	    "half-done pickup: file moved to queue/");
	{
		struct walk_ctx w;
		int n = 0;

		memset(&w, 0, sizeof(w));
		spool_walk(sp, walk_fn, &w);
		for (size_t i = 0; i < w.n && i < 64; i++)
			if (!strcmp(w.qids[i], env4.qid))
				n++;
		is_int(n, 1, "half-done pickup: listed exactly once");
	}
	for (int i = 0; i < 3; i++)
		mg_envelope_free(&env[i]);
	mg_envelope_free(&env4);
}

static void
test_pickup_corrupt(struct spool *sp)
{
	char			 name[MG_QID_LEN + 1], path[512];
	struct mg_envelope	 good, trunc, moved;
	struct spool_msg	 m;
	size_t			 picked = 99;
	FILE			*fp;
	int			 before;

	before = count_dir("corrupt");
	/* Garbage under a valid queue-ID name. */
	mg_qid_make(name, base + 5000, 1);
	snprintf(path, sizeof(path), "%s/maildrop/%s", dir, name);
	fp = fopen(path, "w");
	fputs("From: nobody\n\nthis is not a maildrop file\n", fp);
	fclose(fp);
	/* A real file, truncated. */
	make_env(&trunc, 0, 1, "t@x");
	drop(&trunc, "0123456789abcdef", 16);
	snprintf(path, sizeof(path), "%s/maildrop/%s", dir, trunc.qid);
	truncate(path, 60);
	/* A real file renamed to another valid ID. */
	make_env(&moved, 0, 1, "m@x");
	drop(&moved, "m\n", 2);
	{
		char to[512], other[MG_QID_LEN + 1];

		mg_qid_make(other, base + 5001, 2);
		snprintf(path, sizeof(path), "%s/maildrop/%s", dir, moved.qid);
		snprintf(to, sizeof(to), "%s/maildrop/%s", dir, other);
		rename(path, to);
		strcpy(moved.qid, other);
	}
	/* A file whose name is not a queue ID: ignored, left alone. */
	snprintf(path, sizeof(path), "%s/maildrop/README", dir);
	fp = fopen(path, "w");
	fputs("not mail\n", fp);
	fclose(fp);
	/* And one good message among them. */
	make_env(&good, 0, 1, "g@x");
	drop(&good, "good\n", 5);

	is_int(spool_pickup(sp, &picked), MG_OK, "corrupt: pickup MG_OK");
	is_int(picked, 1, "corrupt: only the good message picked");
	ok(exists("corrupt", name) && !exists("maildrop", name),
	    "corrupt: garbage file moved to corrupt/");
	ok(exists("corrupt", trunc.qid) && !exists("maildrop", trunc.qid),
	    "corrupt: truncated file moved to corrupt/");
	ok(exists("corrupt", moved.qid) && !exists("maildrop", moved.qid),
	    "corrupt: file whose ID does not match its name moved");
	is_int(count_dir("corrupt") - before, 3, "corrupt: three set aside");
	is_int(spool_msg_get(sp, name, &m), MG_ENOTFOUND,
	    "corrupt: garbage not in the database");
	is_int(spool_msg_get(sp, trunc.qid, &m), MG_ENOTFOUND,
	    "corrupt: truncated not in the database");
	is_int(spool_msg_get(sp, moved.qid, &m), MG_ENOTFOUND,
	    "corrupt: mismatched not in the database");
	if (is_int(spool_msg_get(sp, good.qid, &m), MG_OK,
	    "corrupt: the good one is queued"))
		spool_msg_free(&m);
	ok(exists("maildrop", "README"), "corrupt: non-ID names left alone");
	snprintf(path, sizeof(path), "%s/maildrop/README", dir);
	unlink(path);
	mg_envelope_free(&good);
	mg_envelope_free(&trunc);
	mg_envelope_free(&moved);
}

/*
 * Two spool_open calls for one spool in one process, while another
 * spool may be open too; the directory may be spelled differently.
 * Both handles must work, and the first must stay registered as alive:
 * another process opening the spool afterwards must not run recovery
 * under it.
 */
static void
two_handles(const char *label, const char *path_a, const char *path_b,
    const char *other, uint64_t usec)
{
	struct spool		*a = NULL, *b = NULL, *o = NULL;
	char			 err[512], seen_id[64];
	struct mg_envelope	 ea, eb;
	struct spool_msg	 m;
	struct walk_ctx		 w;
	int			 seen_a = 0, seen_b = 0;

	snprintf(seen_id, sizeof(seen_id), "TWO-%s", label);
	if (other != NULL && spool_open(other, SPOOL_CREATE, &o, err,
	    sizeof(err)) != MG_OK)
		diag("  cannot open %s: %s", other, err);
	if (!is_int(spool_open(path_a, 0, &a, err, sizeof(err)), MG_OK,
	    "two handles (%s): first open", label))
		diag("  %s", err);
	if (!is_int(spool_open(path_b, 0, &b, err, sizeof(err)), MG_OK,
	    "two handles (%s): second open", label))
		diag("  %s", err);
	if (a == NULL || b == NULL)
		goto out;
	make_env(&ea, usec, 2, "via-a");
	make_env(&eb, usec + 1, 2, "via-b");
	is_int(spool_msg_create(a, &ea), MG_OK,
	    "two handles (%s): create via A", label);
	if (is_int(spool_msg_get(b, ea.qid, &m), MG_OK,
	    "two handles (%s): B sees A's message", label))
		spool_msg_free(&m);
	is_int(spool_msg_create(b, &eb), MG_OK,
	    "two handles (%s): create via B", label);
	if (is_int(spool_msg_get(a, eb.qid, &m), MG_OK,
	    "two handles (%s): A sees B's message", label))
		spool_msg_free(&m);
	is_int(spool_rcpt_update(a, eb.qid, 0, RS_HELD, "held by A", NULL),
	    MG_OK, "two handles (%s): A updates B's message", label);
	if (is_int(spool_msg_get(b, eb.qid, &m), MG_OK,
	    "two handles (%s): B reads the update", label)) {
		ok(m.rs[0].state == RS_HELD, "two handles (%s): update "
		    "visible", label);
		spool_msg_free(&m);
	}
	is_int(spool_seen_add(a, "bundle", seen_id), MG_OK,
	    "two handles (%s): seen add via A", label);
	is_int(spool_seen_check(b, "bundle", seen_id), MG_OK,
	    "two handles (%s): seen check via B", label);
	is_int(spool_seen_add(b, "bundle", seen_id), MG_EEXIST,
	    "two handles (%s): seen add via B is MG_EEXIST", label);
	memset(&w, 0, sizeof(w));
	is_int(spool_walk(a, walk_fn, &w), MG_OK,
	    "two handles (%s): walk via A", label);
	for (size_t i = 0; i < w.n && i < 64; i++) {
		seen_a += !strcmp(w.qids[i], ea.qid);
		seen_b += !strcmp(w.qids[i], eb.qid);
	}
	ok(seen_a == 1 && seen_b == 1, "two handles (%s): walk lists both "
	    "once", label);
	is_int(spool_msg_delete(b, ea.qid), MG_OK,
	    "two handles (%s): B deletes", label);
	is_int(spool_msg_get(a, ea.qid, &m), MG_ENOTFOUND,
	    "two handles (%s): A sees the delete", label);
	spool_msg_delete(a, eb.qid);
	mg_envelope_free(&ea);
	mg_envelope_free(&eb);
	/* Closing one handle leaves the other working. */
	spool_close(b);
	b = NULL;
	is_int(spool_seen_check(a, "bundle", seen_id), MG_OK,
	    "two handles (%s): A works after B is closed", label);
out:
	if (a != NULL) {
		pid_t	pid;
		int	st = -1, recovered;

		capture_begin();
		fflush(stdout);
		if ((pid = fork()) == 0) {
			struct spool *c = NULL;

			if (spool_open(dir, 0, &c, err, sizeof(err)) != MG_OK) {
				mg_warn("child: %s", err);
				_exit(10);
			}
			spool_close(c);
			_exit(0);
		}
		waitpid(pid, &st, 0);
		spool_seen_check(a, "bundle", seen_id);
		recovered = capture_end();
		ok(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		    "two handles (%s): another process opens the spool "
		    "(status %d)", label, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		ok(!recovered, "two handles (%s): no recovery ran under the "
		    "live first handle", label);
	}
	spool_close(a);
	spool_close(b);
	spool_close(o);
}

static void
test_two_handles(void)
{
	char slash[128], dotted[128], nested[128];

	snprintf(slash, sizeof(slash), "%s/", dir);
	snprintf(dotted, sizeof(dotted), "%s/./db/..", dir);
	snprintf(nested, sizeof(nested), "%s/a/b/spool", dir);
	two_handles("same path", dir, dir, NULL, base + 6000);
	two_handles("trailing slash", dir, slash, NULL, base + 6010);
	two_handles("dot components", dir, dotted, NULL, base + 6020);
	two_handles("another spool opened first", dir, dir, nested,
	    base + 6030);
}

#define CHILD_MSGS	20

static int
count_fn(const struct spool_msg *m, void *arg)
{
	size_t *n = arg;

	if (m->env.sender && !strcmp(m->env.sender, "child"))
		(*n)++;
	return 0;
}

static void
test_fork(struct spool *sp)
{
	pid_t		 pid;
	int		 st = -1, done_child = 0, rounds = 0, errors = 0;
	size_t		 n = 0, maxseen = 0, shrink = 0;
	enum mg_err	 e;

	capture_begin();
	fflush(stdout);
	if ((pid = fork()) == 0) {
		/* The child opens its own handle: never the parent's. */
		struct spool		*c = NULL;
		char			 err[512];
		struct mg_envelope	 env;
		int			 bad = 0;

		if (spool_open(dir, 0, &c, err, sizeof(err)) != MG_OK)
			_exit(10);
		for (int i = 0; i < CHILD_MSGS; i++) {
			make_env(&env, base + 10000 + (uint64_t)i, 3, "child");
			if (spool_msg_create(c, &env) != MG_OK)
				bad++;
			if (spool_rcpt_update(c, env.qid, 2, RS_DEFERRED,
			    "child update", NULL) != MG_OK)
				bad++;
			mg_envelope_free(&env);
		}
		spool_close(c);
		_exit(bad ? 11 : 0);
	}
	ok(pid > 0, "fork: child started");
	/* Read while the child writes. */
	while (!done_child) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			done_child = 1;
		n = 0;
		if ((e = spool_walk(sp, count_fn, &n)) != MG_OK) {
			errors++;
			diag("  walk during child writes: %s", mg_strerror(e));
		}
		if (n < maxseen)
			shrink++;
		if (n > maxseen)
			maxseen = n;
		rounds++;
		usleep(2000);	/* let the child make progress */
	}
	ok(!capture_end(), "fork: the child's open ran no recovery under "
	    "the parent");
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	    "fork: child created %d messages (status %d)", CHILD_MSGS,
	    WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	is_int(errors, 0, "fork: parent reads never failed (%d rounds)",
	    rounds);
	is_int(shrink, 0, "fork: the count never went down");
	n = 0;
	is_int(spool_walk(sp, count_fn, &n), MG_OK, "fork: final walk");
	is_int(n, CHILD_MSGS, "fork: parent sees every child message");
	{
		char			 qid[MG_QID_LEN + 1];
		struct spool_msg	 m;

		mg_qid_make(qid, base + 10000 + CHILD_MSGS - 1,
		    (uint32_t)(base + 10000 + CHILD_MSGS - 1) * 7919u);
		if (is_int(spool_msg_get(sp, qid, &m), MG_OK,
		    "fork: last child message readable")) {
			ok(m.env.nrcpt == 3 && m.rs[2].state == RS_DEFERRED &&
			    m.rs[2].result && !strcmp(m.rs[2].result,
			    "child update"), "fork: child's update visible");
			spool_msg_free(&m);
		}
	}
}

static int
rm_fn(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	return remove(path);
}

int
main(void)
{
	struct spool *sp = NULL;

	mg_log_init("t_spool", getenv("T_VERBOSE") ? MG_LOG_STDERR :
	    MG_LOG_NONE);
	strcpy(dir, "/tmp/t_spool.XXXXXX");
	if (!ok(mkdtemp(dir) != NULL, "temp spool dir"))
		return done();
	test_open(&sp);
	if (sp != NULL) {
		test_create_get(sp);
		test_walk(sp);
		test_update(sp);
		test_transition(sp);
		test_delete(sp);
		test_seen(sp);
		test_pickup(sp);
		test_pickup_corrupt(sp);
		test_fork(sp);
		spool_close(sp);
		test_two_handles();
	}
	nftw(dir, rm_fn, 16, FTW_DEPTH | FTW_PHYS);
	return done();
}
