/*
 * spool.c - the queue database and body files.
 *
 * Berkeley DB 5.3 with DB_INIT_TXN and synchronous commits: a commit
 * that returned is on disk (kill -9 trials lost nothing; NOSYNC modes
 * lose acknowledged commits, so they are never used).  A process that
 * opens the environment alone runs recovery (see spool_db_open); lock
 * waits time out and failchk finds killed lock holders.  Five btrees:
 *   msg   QID -> envelope fields
 *   rcpt  QID + be32 index -> recipient fields and state
 *   seen  "kind:id" -> u64 time (bundle IDs and the like)
 *   bundle, outbox: see spool_bundle.c
 * Values use the tag+length fields of buf.h, so a record written by one
 * version is read field by field, unknown tags skipped.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <db.h>

#include "mgate/buf.h"
#include "mgate/fsutil.h"
#include "mgate/log.h"
#include "mgate/maildrop.h"
#include "mgate/qid.h"
#include "mgate/spool.h"
#include "spool_int.h"

#define TXN_RETRIES	500	/* about 10 s of a busy lock */


static const char *const state_names[RS_NSTATES] = {
	[RS_QUEUED] = "queued",
	[RS_HELD] = "held",
	[RS_BUNDLED] = "bundled",
	[RS_ACCEPTED] = "accepted",
	[RS_DEFERRED] = "deferred",
	[RS_DELIVERED] = "delivered",
	[RS_BOUNCED] = "bounced",
};

const char *
rcpt_state_name(enum rcpt_state s)
{
	return (unsigned)s < RS_NSTATES ? state_names[s] : "unknown";
}

int
rcpt_state_final(enum rcpt_state s)
{
	return s == RS_DELIVERED || s == RS_BOUNCED;
}

void
spool_msg_free(struct spool_msg *m)
{
	if (m == NULL)
		return;
	if (m->rs)
		for (size_t i = 0; i < m->env.nrcpt; i++) {
			free(m->rs[i].result);
			free(m->rs[i].bundle);
		}
	free(m->rs);
	m->rs = NULL;
	mg_envelope_free(&m->env);
}

static enum mg_err
db_err(int r)
{
	switch (r) {
	case 0:
		return MG_OK;
	case DB_NOTFOUND:
		return MG_ENOTFOUND;
	case DB_KEYEXIST:
		return MG_EEXIST;
	case DB_LOCK_DEADLOCK:
	case DB_LOCK_NOTGRANTED:
	case DB_RUNRECOVERY:
		return MG_ETEMP;
	case ENOSPC:
		return MG_ENOSPC;
	case ENOMEM:
		return MG_ENOMEM;
	default:
		return MG_EIO;
	}
}

static int lock_file(const char *, const char *, int);

/*
 * Recovery only after a death.  A process that opens the environment
 * alone used to recover it every time: the regions rebuilt, the log
 * read, a checkpoint (tens of ms and several fsyncs per command, and
 * per SMTP session).  Now db/active counts the processes inside the
 * environment (under db/gate); the last one out, if every one before it
 * closed cleanly (the count is back to zero) and its own close was clean,
 * leaves db/clean.  The next process alone finds db/clean, removes it
 * (durably: a machine crash afterwards must recover) and joins the
 * regions as they are.  A killed process never decrements the count, so
 * nobody leaves db/clean until a recovery has reset it.
 */
static long
active_get(int fd)
{
	char	b[32];
	ssize_t	n = pread(fd, b, sizeof(b) - 1, 0);

	if (n <= 0)
		return 0;
	b[n] = '\0';
	return strtol(b, NULL, 10);
}

static void
active_set(int fd, long v)
{
	char	b[32];
	int	n = snprintf(b, sizeof(b), "%ld\n", v);

	if (pwrite(fd, b, (size_t)n, 0) != n || ftruncate(fd, n) < 0)
		mg_warn("spool: cannot update the queue database's user "
		    "count: %s", strerror(errno));
}

/* Under db/gate: leave db/clean if we are the last and all was clean. */
static void
clean_close(struct spool *sp, int ok)
{
	char	dir[4200];
	int	gate, act;
	long	n;

	if (mg_path(dir, sizeof(dir), "%s/db", sp->dir) != MG_OK ||
	    (gate = lock_file(dir, "gate", LOCK_EX)) < 0)
		return;
	if ((act = lock_file(dir, "active", LOCK_EX)) >= 0) {
		n = active_get(act) - 1;
		if (ok && n >= 0) {
			active_set(act, n);
			/* The last: nobody else holds db/users. */
			if (n == 0 && sp->users_fd >= 0 &&
			    flock(sp->users_fd, LOCK_EX | LOCK_NB) == 0) {
				int fd = lock_file(dir, "clean", LOCK_EX);

				if (fd >= 0)
					close(fd);
			}
		}
		close(act);
	}
	if (sp->users_fd >= 0)
		close(sp->users_fd);
	sp->users_fd = -1;
	close(gate);
}

/*
 * Databases close with DB_NOSYNC: every change is already in the
 * synchronously flushed log, and a flush here would wait on the log's
 * mutex, which a killed process may hold.
 */
static void
spool_db_close(struct spool *sp)
{
	int ok = !sp->tainted;

	if (sp->msg && sp->msg->close(sp->msg, DB_NOSYNC) != 0)
		ok = 0;
	if (sp->rcpt && sp->rcpt->close(sp->rcpt, DB_NOSYNC) != 0)
		ok = 0;
	if (sp->seen && sp->seen->close(sp->seen, DB_NOSYNC) != 0)
		ok = 0;
	if (sp->bundle && sp->bundle->close(sp->bundle, DB_NOSYNC) != 0)
		ok = 0;
	if (sp->outbox && sp->outbox->close(sp->outbox, DB_NOSYNC) != 0)
		ok = 0;
	if (sp->env && sp->env->close(sp->env, 0) != 0)
		ok = 0;
	sp->msg = sp->rcpt = sp->seen = sp->bundle = sp->outbox = NULL;
	sp->env = NULL;
	if (sp->counted && sp->pid == getpid())
		clean_close(sp, ok);
	sp->counted = 0;
	sp->tainted = 0;
	if (sp->users_fd >= 0)
		close(sp->users_fd);
	sp->users_fd = -1;
}

static int
open_db(struct spool *sp, DB **dbp, const char *name)
{
	int r;

	if ((r = db_create(dbp, sp->env, 0)) != 0)
		return r;
	r = (*dbp)->open(*dbp, NULL, name, NULL, DB_BTREE,
	    DB_CREATE | DB_AUTO_COMMIT, 0600);
	return r;
}

static int
spool_isalive(DB_ENV *env, pid_t pid, db_threadid_t tid, u_int32_t flags)
{
	return kill(pid, 0) == 0 || errno == EPERM;
}

static void
db_errcall(const DB_ENV *env, const char *pfx, const char *msg)
{
	mg_warn("spool database: %s", msg);
}

/*
 * Who recovers the environment, and when.  Every process that uses it
 * holds a shared flock on db/users; a process that can take it
 * exclusively is alone, and only then opens with DB_RECOVER, which
 * rebuilds the regions and rolls the log forward, whatever a killed
 * process left (a held mutex included).  db/gate serialises the opens,
 * so the exclusive test and the switch to shared cannot race.  A
 * process joining others opens without recovery; if failchk then says
 * a dead process left the environment unusable, it says so and the
 * last process out makes room for the next one to recover.
 */
static void
on_open_alarm(int sig)
{
	static const char m[] = "mgate: the queue database did not open "
	    "within 60 s (a killed process may hold it); try again\n";

	(void)sig;
	(void)!write(2, m, sizeof(m) - 1);
	_exit(75);
}

static int
lock_file(const char *dir, const char *name, int how)
{
	char	path[4200];
	int	fd;

	if (mg_path(path, sizeof(path), "%s/%s", dir, name) != MG_OK ||
	    (fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
	    0600)) < 0)
		return -1;
	while (flock(fd, how) < 0) {
		if (errno == EINTR)
			continue;
		close(fd);
		return -2;
	}
	return fd;
}

static void
db_msgcall(const DB_ENV *env, const char *msg)
{
	/* Never stdout: that is serve's protocol stream and list's JSON. */
	mg_info("spool database: %s", msg);
}

/*
 * Alone under db/gate: 0 if the last process left the environment clean
 * (db/clean, now removed durably), else -1: recover.
 */
static int
clean_marker_take(const char *dbdir)
{
	char	path[4200];

	if (mg_path(path, sizeof(path), "%s/clean", dbdir) != MG_OK ||
	    unlink(path) < 0)
		return -1;
	return mg_fsync_dir(dbdir) == MG_OK ? 0 : -1;
}

/* Under db/gate: one more process inside; a recovery starts from zero. */
static void
count_in(const char *dbdir, int recovering)
{
	int act = lock_file(dbdir, "active", LOCK_EX);

	if (act < 0)
		return;
	active_set(act, (recovering ? 0 : active_get(act)) + 1);
	close(act);
}

static enum mg_err
spool_db_open(struct spool *sp, char *errbuf, size_t errlen)
{
	char	path[4096];
	int	r;
	int	gate = -1, users = -1, alone;
	struct sigaction sa, old;
	u_int32_t flags = DB_CREATE | DB_INIT_LOCK | DB_INIT_LOG |
	    DB_INIT_MPOOL | DB_INIT_TXN | DB_FAILCHK;

	if (mg_path(path, sizeof(path), "%s/db", sp->dir) != MG_OK) {
		snprintf(errbuf, errlen, "%s: path too long", sp->dir);
		return MG_ELIMIT;
	}
	if ((gate = lock_file(path, "gate", LOCK_EX)) < 0) {
		snprintf(errbuf, errlen, "%s: cannot lock the queue database: "
		    "%s", path, strerror(errno));
		return errno == ENOSPC ? MG_ENOSPC : MG_ETEMP;
	}
	/* Under gate, nobody holds users exclusively but us. */
	users = lock_file(path, "users", LOCK_EX | LOCK_NB);
	if ((alone = users >= 0)) {
		if (clean_marker_take(path) != 0)
			flags |= DB_RECOVER;
	} else if ((users = lock_file(path, "users", LOCK_SH)) < 0) {
		snprintf(errbuf, errlen, "%s: cannot lock the queue database: "
		    "%s", path, strerror(errno));
		close(gate);
		return MG_ETEMP;
	}
	count_in(path, (flags & DB_RECOVER) != 0);
	sp->counted = 1;
	if ((r = db_env_create(&sp->env, 0)) != 0)
		goto fail;
	sp->env->set_errcall(sp->env, db_errcall);
	sp->env->set_msgcall(sp->env, db_msgcall);
	/* Small mail records: a 2 MB cache is plenty and keeps RSS low. */
	sp->env->set_cachesize(sp->env, 0, 2 * 1024 * 1024, 1);
	/*
	 * Touch and write the shared regions at creation: on a full disk
	 * the open fails with ENOSPC instead of a SIGBUS later.
	 */
	sp->env->set_flags(sp->env, DB_REGION_INIT, 1);
	/*
	 * A process killed with a lock held must not stall the others:
	 * lock waits time out, and failchk (with is_alive) finds dead
	 * holders so that the environment can be recovered.
	 */
	sp->env->set_thread_count(sp->env, 256);
	sp->env->set_isalive(sp->env, spool_isalive);
	sp->env->set_timeout(sp->env, 5 * 1000000, DB_SET_LOCK_TIMEOUT);
	sp->env->set_lk_detect(sp->env, DB_LOCK_DEFAULT);
	/* A whole imported bundle commits in one transaction. */
	sp->env->set_lk_max_locks(sp->env, 20000);
	sp->env->set_lk_max_objects(sp->env, 20000);
	/* Small log files: a spool may live on a small card. */
	sp->env->set_lg_max(sp->env, 1024 * 1024);
	sp->env->log_set_config(sp->env, DB_LOG_AUTO_REMOVE, 1);
	/* A mutex a killed process held would hang the open: bound it. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_open_alarm;
	sigaction(SIGALRM, &sa, &old);
	alarm(60);
	r = sp->env->open(sp->env, path, flags, 0600);
	alarm(0);
	sigaction(SIGALRM, &old, NULL);
	if (r != 0)
		goto fail;
	if ((r = open_db(sp, &sp->msg, "msg.db")) != 0 ||
	    (r = open_db(sp, &sp->rcpt, "rcpt.db")) != 0 ||
	    (r = open_db(sp, &sp->seen, "seen.db")) != 0 ||
	    (r = open_db(sp, &sp->bundle, "bundle.db")) != 0 ||
	    (r = open_db(sp, &sp->outbox, "outbox.db")) != 0)
		goto fail;
	if (alone && users >= 0)	/* now let others join */
		flock(users, LOCK_SH);
	sp->users_fd = users;
	close(gate);
	return MG_OK;
fail:
	if (r == DB_RUNRECOVERY)
		snprintf(errbuf, errlen, "%s: a killed process left the queue "
		    "database needing recovery, which runs when no other mgate"
		    " process is using it; try again", path);
	else
		snprintf(errbuf, errlen, "%s: cannot open the queue database: "
		    "%s", path, db_strerror(r));
	/*
	 * We hold db/gate: no clean_close now.  The count stays one too
	 * high, so nobody leaves db/clean before the next recovery.
	 */
	sp->counted = 0;
	spool_db_close(sp);
	if (users >= 0)
		close(users);
	close(gate);
	return r == ENOSPC ? MG_ENOSPC : r == EACCES ? MG_ENOPERM : MG_ETEMP;
}

/* The spools this process has open, shared by further opens of each. */
static struct spool *open_spools;

enum mg_err
spool_open(const char *dir, int flags, struct spool **out, char *errbuf,
    size_t errlen)
{
	static const char *const subdirs[] = { "maildrop", "tmp", "queue",
		"corrupt", "db", "outgoing", "incoming" };
	struct spool	*sp;
	char		 path[4096];
	struct stat	 st;
	enum mg_err	 e;

	*out = NULL;
	/*
	 * One environment handle per process: a second open of the same
	 * directory shares the first (never across fork).
	 */
	if (stat(dir, &st) == 0)
		for (sp = open_spools; sp; sp = sp->next)
			if (sp->pid == getpid() && sp->dev == st.st_dev &&
			    sp->ino == st.st_ino && sp->env) {
				sp->refs++;
				*out = sp;
				return MG_OK;
			}
	if ((sp = calloc(1, sizeof(*sp))) == NULL) {
		snprintf(errbuf, errlen, "out of memory");
		return MG_ENOMEM;
	}
	sp->refs = 1;
	sp->pid = getpid();
	sp->users_fd = -1;
	if (mg_path(sp->dir, sizeof(sp->dir), "%s", dir) != MG_OK) {
		snprintf(errbuf, errlen, "spool_directory is too long");
		e = MG_ECONFIG;
		goto fail;
	}
	if (stat(dir, &st) < 0 && !(flags & SPOOL_CREATE)) {
		snprintf(errbuf, errlen, "%s: spool directory missing: %s "
		    "(check spool_directory in mgate.conf)", dir,
		    strerror(errno));
		e = MG_EUNAVAIL;
		goto fail;
	}
	for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
		if (mg_path(path, sizeof(path), "%s/%s", dir, subdirs[i]) ||
		    ((flags & SPOOL_CREATE) ? mg_mkdirs(path, 0700) :
		    stat(path, &st) < 0 ? MG_EUNAVAIL : MG_OK) != MG_OK) {
			snprintf(errbuf, errlen, "%s: cannot %s spool "
			    "directory: %s", path, (flags & SPOOL_CREATE) ?
			    "create" : "find", strerror(errno));
			e = errno == ENOSPC ? MG_ENOSPC : errno == EACCES ?
			    MG_ENOPERM : MG_EUNAVAIL;
			goto fail;
		}
	}
	if ((e = spool_db_open(sp, errbuf, errlen)) != MG_OK)
		goto fail;
	if (stat(dir, &st) == 0) {
		sp->dev = st.st_dev;
		sp->ino = st.st_ino;
	}
	/* A child of fork() must not reuse its parent's handles. */
	if (open_spools && open_spools->pid != getpid())
		open_spools = NULL;
	sp->next = open_spools;
	open_spools = sp;
	*out = sp;
	return MG_OK;
fail:
	free(sp);
	return e;
}

void
spool_close(struct spool *sp)
{
	if (sp == NULL || --sp->refs > 0)
		return;
	for (struct spool **pp = &open_spools; *pp; pp = &(*pp)->next)
		if (*pp == sp) {
			*pp = sp->next;
			break;
		}
	/* Checkpoint when the log has grown, not on every read-only run. */
	if (sp->env)
		sp->env->txn_checkpoint(sp->env, 256, 1, 0);
	spool_db_close(sp);
	free(sp);
}

const char *
spool_dir(const struct spool *sp)
{
	return sp->dir;
}

/*
 * Run fn inside a transaction, retrying on deadlock and reopening the
 * environment once if another process ran recovery under us.
 * commit_flags 0 is a synchronous commit; DB_TXN_WRITE_NOSYNC survives
 * the death of the process but not of the machine.
 */

enum mg_err
spool_txn(struct spool *sp, txn_fn fn, void *arg)
{
	return spool_txn_flags(sp, fn, arg, 0);
}

enum mg_err
spool_txn_flags(struct spool *sp, txn_fn fn, void *arg, uint32_t commit_flags)
{
	DB_TXN	*txn;
	int	 r, reopened = 0;
	char	 err[512];

	for (int tries = 0; tries < TXN_RETRIES; tries++) {
		if (sp->env == NULL) {
			/*
			 * After a panic the others need a moment to let go
			 * before one of them, alone, can recover.
			 */
			if (spool_db_open(sp, err, sizeof(err)) != MG_OK) {
				if (tries + 10 >= TXN_RETRIES) {
					mg_warn("%s", err);
					return MG_ETEMP;
				}
				usleep(100 * 1000);
				tries += 4;
				continue;
			}
		}
		/*
		 * Never block on a lock: a holder that was killed would keep
		 * a blocked waiter asleep forever (lock timeouts are only
		 * checked when another process runs into the lock).  A busy
		 * lock is retried here instead, with a growing pause.
		 */
		if ((r = sp->env->txn_begin(sp->env, NULL, &txn,
		    DB_TXN_NOWAIT)) != 0)
			goto retry;
		if ((r = fn(sp, txn, arg)) != 0) {
			txn->abort(txn);
			goto retry;
		}
		/* Synchronous unless asked: the environment sets no NOSYNC. */
		if ((r = txn->commit(txn, commit_flags)) == 0)
			return MG_OK;
retry:
		if (r == DB_RUNRECOVERY && reopened < 3) {
			/* The environment needs recovery: start over. */
			sp->tainted = 1;
			spool_db_close(sp);
			reopened++;
			continue;
		}
		if (r != DB_LOCK_DEADLOCK && r != DB_LOCK_NOTGRANTED)
			return db_err(r);
		/*
		 * A lock that stays held may belong to a process that died:
		 * failchk frees what it can and says when only recovery can
		 * help; then we close and reopen, which recovers if we are
		 * alone and otherwise joins once the others are gone.
		 */
		if (r == DB_LOCK_NOTGRANTED && tries > 0 && tries % 50 == 0 &&
		    sp->env && sp->env->failchk(sp->env, 0) ==
		    DB_RUNRECOVERY && reopened < 3) {
			/*
			 * A killed process holds what nobody else can free.
			 * Mark the environment panicked: every process then
			 * lets go, and the first to reopen alone recovers.
			 */
			mg_warn("spool: a killed process left locks held; "
			    "recovering the queue database");
			sp->env->set_flags(sp->env, DB_PANIC_ENVIRONMENT, 1);
			sp->tainted = 1;
			spool_db_close(sp);
			reopened++;
			continue;
		}
		usleep(1000 * (tries < 20 ? tries + 1 : 20));
	}
	return MG_ETEMP;
}

void
dbt_init(DBT *d, const void *p, size_t n)
{
	memset(d, 0, sizeof(*d));
	d->data = (void *)p;
	d->size = (u_int32_t)n;
}

void
rcpt_key(unsigned char key[RKEY_LEN], const char *qid, size_t idx)
{
	memcpy(key, qid, MG_QID_LEN);
	mg_put_be32(key + MG_QID_LEN, (uint32_t)idx);
}

enum mg_err
enc_msg(struct mg_buf *b, const struct mg_envelope *env)
{
	enum mg_err e;

	if ((e = mg_buf_put_field_u64(b, 'A', env->arrival)) ||
	    (e = mg_buf_put_str(b, 'U', env->user)) ||
	    (e = mg_buf_put_str(b, 'S', env->sender)) ||
	    (env->envid && (e = mg_buf_put_str(b, 'E', env->envid))) ||
	    (e = mg_buf_put_field_u64(b, 'T', (uint64_t)env->ret)) ||
	    (e = mg_buf_put_field_u64(b, 'B', (uint64_t)env->body)) ||
	    (e = mg_buf_put_field_u64(b, 'p', (uint64_t)env->priority)) ||
	    (e = mg_buf_put_field_u64(b, 'Z', env->size)) ||
	    (e = mg_buf_put_field_u64(b, 'N', env->nrcpt)) ||
	    (env->peer && (e = mg_buf_put_str(b, 'P', env->peer))) ||
	    (env->peer_qid && (e = mg_buf_put_str(b, 'Q', env->peer_qid))) ||
	    (env->via && (e = mg_buf_put_str(b, 'V', env->via))))
		return e;
	return MG_OK;
}

enum mg_err
enc_rcpt(struct mg_buf *b, const struct mg_rcpt *r,
    const struct spool_rcpt_state *rs)
{
	enum mg_err e;

	if ((e = mg_buf_put_str(b, 'a', r->addr)) ||
	    (r->orcpt && (e = mg_buf_put_str(b, 'o', r->orcpt))) ||
	    (e = mg_buf_put_field_u64(b, 'n', r->notify)) ||
	    (e = mg_buf_put_field_u64(b, 's', rs->state)) ||
	    (e = mg_buf_put_field_u64(b, 'u', rs->updated)) ||
	    (rs->result && (e = mg_buf_put_str(b, 'r', rs->result))) ||
	    (rs->bundle && (e = mg_buf_put_str(b, 'b', rs->bundle))) ||
	    (rs->next_try && (e = mg_buf_put_field_u64(b, 'x',
	    rs->next_try))) ||
	    (rs->attempts && (e = mg_buf_put_field_u64(b, 'k',
	    rs->attempts))) ||
	    (rs->reported && (e = mg_buf_put_field_u64(b, 'f', 1))) ||
	    (rs->inflight && (e = mg_buf_put_field_u64(b, 'i',
	    rs->inflight))))
		return e;
	return MG_OK;
}

static enum mg_err
dec_str(const unsigned char *v, size_t n, char **out)
{
	free(*out);
	*out = NULL;
	return mg_field_str(v, n, out);
}

enum mg_err
dec_msg(const void *p, size_t n, struct mg_envelope *env, uint64_t *nrcpt)
{
	struct mg_rd		 rd;
	uint8_t			 tag;
	const unsigned char	*v;
	size_t			 vn;
	uint64_t		 u;
	enum mg_err		 e = MG_OK;

	mg_rd_init(&rd, p, n);
	while (!mg_rd_eof(&rd) && e == MG_OK) {
		if (mg_rd_field(&rd, &tag, &v, &vn) != MG_OK)
			return MG_ECORRUPT;
		switch (tag) {
		case 'A': e = mg_field_u64(v, vn, &env->arrival); break;
		case 'U': e = dec_str(v, vn, &env->user); break;
		case 'S': e = dec_str(v, vn, &env->sender); break;
		case 'E': e = dec_str(v, vn, &env->envid); break;
		case 'T': e = mg_field_u64(v, vn, &u); env->ret = (int)u;
			break;
		case 'B': e = mg_field_u64(v, vn, &u); env->body = (int)u;
			break;
		case 'p': e = mg_field_u64(v, vn, &u);
			env->priority = u <= MG_PRIO_HIGH ? (int)u : MG_PRIO_NORMAL;
			break;
		case 'Z': e = mg_field_u64(v, vn, &env->size); break;
		case 'N': e = mg_field_u64(v, vn, nrcpt); break;
		case 'P': e = dec_str(v, vn, &env->peer); break;
		case 'Q': e = dec_str(v, vn, &env->peer_qid); break;
		case 'V': e = dec_str(v, vn, &env->via); break;
		default: break;		/* a newer version's field */
		}
	}
	if (e == MG_OK && (env->sender == NULL || env->user == NULL))
		e = MG_ECORRUPT;
	return e == MG_EDATA ? MG_ECORRUPT : e;
}

enum mg_err
dec_rcpt(const void *p, size_t n, struct mg_rcpt *r,
    struct spool_rcpt_state *rs)
{
	struct mg_rd		 rd;
	uint8_t			 tag;
	const unsigned char	*v;
	size_t			 vn;
	uint64_t		 u = 0;
	enum mg_err		 e = MG_OK;

	mg_rd_init(&rd, p, n);
	while (!mg_rd_eof(&rd) && e == MG_OK) {
		if (mg_rd_field(&rd, &tag, &v, &vn) != MG_OK)
			return MG_ECORRUPT;
		switch (tag) {
		case 'a': e = dec_str(v, vn, &r->addr); break;
		case 'o': e = dec_str(v, vn, &r->orcpt); break;
		case 'n': e = mg_field_u64(v, vn, &u); r->notify = (unsigned)u;
			break;
		case 's': e = mg_field_u64(v, vn, &u);
			if (e == MG_OK && u >= RS_NSTATES)
				e = MG_ECORRUPT;
			rs->state = (enum rcpt_state)u;
			break;
		case 'u': e = mg_field_u64(v, vn, &rs->updated); break;
		case 'r': e = dec_str(v, vn, &rs->result); break;
		case 'b': e = dec_str(v, vn, &rs->bundle); break;
		case 'x': e = mg_field_u64(v, vn, &rs->next_try); break;
		case 'k': e = mg_field_u64(v, vn, &u);
			rs->attempts = (uint32_t)u;
			break;
		case 'f': e = mg_field_u64(v, vn, &u);
			rs->reported = u != 0;
			break;
		case 'i': e = mg_field_u64(v, vn, &rs->inflight); break;
		default: break;
		}
	}
	if (e == MG_OK && r->addr == NULL)
		e = MG_ECORRUPT;
	return e == MG_EDATA ? MG_ECORRUPT : e;
}

/*
 * Write a message's record and its recipients' records (all queued)
 * inside txn: the one way a message enters the database.
 */
int
put_message(struct spool *sp, DB_TXN *txn, const struct mg_envelope *env,
    u_int32_t msgflags)
{
	struct spool_rcpt_state	 rs = { .state = RS_QUEUED };
	struct mg_buf		 b;
	unsigned char		 rk[RKEY_LEN];
	DBT			 key, val;
	int			 r = 0;

	mg_buf_init(&b, VAL_MAX);
	if (enc_msg(&b, env) != MG_OK) {
		r = EINVAL;
		goto out;
	}
	dbt_init(&key, env->qid, MG_QID_LEN);
	dbt_init(&val, b.data, b.len);
	if ((r = sp->msg->put(sp->msg, txn, &key, &val, msgflags)) != 0)
		goto out;
	rs.updated = env->arrival;
	for (size_t i = 0; i < env->nrcpt; i++) {
		mg_buf_reset(&b);
		if (enc_rcpt(&b, &env->rcpts[i], &rs) != MG_OK) {
			r = EINVAL;
			goto out;
		}
		rcpt_key(rk, env->qid, i);
		dbt_init(&key, rk, sizeof(rk));
		dbt_init(&val, b.data, b.len);
		if ((r = sp->rcpt->put(sp->rcpt, txn, &key, &val, 0)) != 0)
			goto out;
	}
out:
	mg_buf_free(&b);
	return r;
}

struct create_arg {
	const struct mg_envelope	*env;
	int				 existed;
};

static int
create_fn(struct spool *sp, DB_TXN *txn, void *varg)
{
	struct create_arg	*a = varg;
	DBT			 key, val;
	int			 r;

	dbt_init(&key, a->env->qid, MG_QID_LEN);
	dbt_init(&val, NULL, 0);
	r = sp->msg->get(sp->msg, txn, &key, &val, DB_RMW);
	if ((a->existed = r == 0) || r != DB_NOTFOUND)
		return r;
	return put_message(sp, txn, a->env, 0);
}

enum mg_err
spool_msg_create(struct spool *sp, const struct mg_envelope *env)
{
	struct create_arg	a = { env, 0 };
	enum mg_err		e;

	if ((e = spool_txn(sp, create_fn, &a)) != MG_OK)
		return e;
	return a.existed ? MG_EEXIST : MG_OK;
}

struct get_arg {
	const char		*qid;
	struct spool_msg	*m;
	enum mg_err		 e;
};

static int
get_fn(struct spool *sp, DB_TXN *txn, void *varg)
{
	struct get_arg		*a = varg;
	struct spool_msg	*m = a->m;
	unsigned char		 rk[RKEY_LEN];
	uint64_t		 nrcpt = 0;
	DBT			 key, val;
	int			 r;

	spool_msg_free(m);
	memset(m, 0, sizeof(*m));
	a->e = MG_OK;
	dbt_init(&key, a->qid, MG_QID_LEN);
	dbt_init(&val, NULL, 0);
	if ((r = sp->msg->get(sp->msg, txn, &key, &val, 0)) != 0) {
		if (r == DB_NOTFOUND)
			a->e = MG_ENOTFOUND;
		return r == DB_NOTFOUND ? 0 : r;
	}
	memcpy(m->env.qid, a->qid, MG_QID_LEN);
	m->env.qid[MG_QID_LEN] = '\0';
	m->env.priority = MG_PRIO_NORMAL;	/* records older than 'p' */
	if ((a->e = dec_msg(val.data, val.size, &m->env, &nrcpt)) != MG_OK)
		return 0;
	if (nrcpt > 1000000) {
		a->e = MG_ECORRUPT;
		return 0;
	}
	if ((m->env.rcpts = calloc(nrcpt ? nrcpt : 1, sizeof(*m->env.rcpts)))
	    == NULL || (m->rs = calloc(nrcpt ? nrcpt : 1, sizeof(*m->rs)))
	    == NULL) {
		a->e = MG_ENOMEM;
		return 0;
	}
	m->env.nrcpt = nrcpt;
	for (size_t i = 0; i < nrcpt; i++) {
		rcpt_key(rk, a->qid, i);
		dbt_init(&key, rk, sizeof(rk));
		dbt_init(&val, NULL, 0);
		if ((r = sp->rcpt->get(sp->rcpt, txn, &key, &val, 0)) != 0) {
			if (r != DB_NOTFOUND)
				return r;
			a->e = MG_ECORRUPT;
			return 0;
		}
		if ((a->e = dec_rcpt(val.data, val.size, &m->env.rcpts[i],
		    &m->rs[i])) != MG_OK)
			return 0;
	}
	return 0;
}

enum mg_err
spool_msg_get(struct spool *sp, const char *qid, struct spool_msg *m)
{
	struct get_arg	a = { qid, m, MG_OK };
	enum mg_err	e;

	memset(m, 0, sizeof(*m));
	if (!mg_qid_valid(qid))
		return MG_ENOTFOUND;
	if ((e = spool_txn(sp, get_fn, &a)) != MG_OK)
		e = e;
	else
		e = a.e;
	if (e != MG_OK)
		spool_msg_free(m);
	return e;
}

struct next_arg {
	char	qid[MG_QID_LEN + 1];	/* in: last seen ("" first), out */
	int	found;
};

static int
next_fn(struct spool *sp, DB_TXN *txn, void *varg)
{
	struct next_arg	*a = varg;
	DBC		*c;
	DBT		 key, val;
	int		 r, r2;

	a->found = 0;
	if ((r = sp->msg->cursor(sp->msg, txn, &c, 0)) != 0)
		return r;
	dbt_init(&key, a->qid, strlen(a->qid));
	key.flags = DB_DBT_USERMEM;
	key.ulen = sizeof(a->qid);
	dbt_init(&val, NULL, 0);
	val.flags = DB_DBT_PARTIAL;	/* the key is all we want */
	if (a->qid[0] == '\0')
		r = c->get(c, &key, &val, DB_FIRST);
	else if ((r = c->get(c, &key, &val, DB_SET_RANGE)) == 0 &&
	    key.size == MG_QID_LEN && memcmp(key.data, a->qid, key.size) == 0)
		r = c->get(c, &key, &val, DB_NEXT);
	if (r == 0 && key.size == MG_QID_LEN) {
		a->qid[MG_QID_LEN] = '\0';
		a->found = 1;
	}
	r2 = c->close(c);
	if (r == DB_NOTFOUND)
		r = 0;
	return r ? r : r2;
}

enum mg_err
spool_walk(struct spool *sp, int (*fn)(const struct spool_msg *, void *),
    void *arg)
{
	struct next_arg		a;
	struct spool_msg	m;
	enum mg_err		e;

	memset(&a, 0, sizeof(a));
	memset(&m, 0, sizeof(m));
	for (;;) {
		if ((e = spool_txn(sp, next_fn, &a)) != MG_OK)
			return e;
		if (!a.found)
			return MG_OK;
		e = spool_msg_get(sp, a.qid, &m);
		if (e == MG_ENOTFOUND)	/* deleted meanwhile */
			continue;
		if (e != MG_OK)
			return e;
		if (fn(&m, arg) != 0) {
			spool_msg_free(&m);
			return MG_OK;
		}
		spool_msg_free(&m);
	}
}

struct upd_arg {
	const char	*qid;
	size_t		 idx;		/* SIZE_MAX: every recipient */
	unsigned	 from_mask;	/* with idx == SIZE_MAX */
	enum rcpt_state	 to;
	const char	*result;
	const char	*bundle;
	size_t		 changed;
	enum mg_err	 e;
};

static int
upd_one(struct spool *sp, DB_TXN *txn, struct upd_arg *a, size_t idx,
    int *missing)
{
	struct mg_rcpt		 rc = { NULL, NULL, 0 };
	struct spool_rcpt_state	 rs = { .state = RS_QUEUED };
	struct mg_buf		 b;
	unsigned char		 rk[RKEY_LEN];
	DBT			 key, val;
	int			 r;

	*missing = 0;
	mg_buf_init(&b, VAL_MAX);
	rcpt_key(rk, a->qid, idx);
	dbt_init(&key, rk, sizeof(rk));
	dbt_init(&val, NULL, 0);
	if ((r = sp->rcpt->get(sp->rcpt, txn, &key, &val, DB_RMW)) != 0) {
		if (r == DB_NOTFOUND) {
			*missing = 1;
			r = 0;
		}
		goto out;
	}
	if ((a->e = dec_rcpt(val.data, val.size, &rc, &rs)) != MG_OK)
		goto out;
	if (a->idx == SIZE_MAX && !(a->from_mask & RS_BIT(rs.state)))
		goto out;
	rs.state = a->to;
	rs.updated = (uint64_t)time(NULL);
	if (a->result) {
		free(rs.result);
		if ((rs.result = strdup(a->result)) == NULL) {
			a->e = MG_ENOMEM;
			goto out;
		}
	}
	if (a->bundle) {
		free(rs.bundle);
		if ((rs.bundle = strdup(a->bundle)) == NULL) {
			a->e = MG_ENOMEM;
			goto out;
		}
	}
	if ((a->e = enc_rcpt(&b, &rc, &rs)) != MG_OK)
		goto out;
	dbt_init(&val, b.data, b.len);
	if ((r = sp->rcpt->put(sp->rcpt, txn, &key, &val, 0)) == 0)
		a->changed++;
out:
	free(rc.addr);
	free(rc.orcpt);
	free(rs.result);
	free(rs.bundle);
	mg_buf_free(&b);
	return r;
}

static int
upd_fn(struct spool *sp, DB_TXN *txn, void *varg)
{
	struct upd_arg	*a = varg;
	int		 r, missing;

	a->changed = 0;
	a->e = MG_OK;
	if (a->idx != SIZE_MAX) {
		r = upd_one(sp, txn, a, a->idx, &missing);
		if (r == 0 && missing)
			a->e = MG_ENOTFOUND;
		return r;
	}
	for (size_t i = 0; ; i++) {
		if ((r = upd_one(sp, txn, a, i, &missing)) != 0)
			return r;
		if (a->e != MG_OK)
			return 0;
		if (missing) {
			if (i == 0)
				a->e = MG_ENOTFOUND;
			return 0;
		}
	}
}

enum mg_err
spool_rcpt_update(struct spool *sp, const char *qid, size_t idx,
    enum rcpt_state to, const char *result, const char *bundle)
{
	struct upd_arg	a = { qid, idx, 0, to, result, bundle, 0, MG_OK };
	enum mg_err	e;

	if (!mg_qid_valid(qid) || idx == SIZE_MAX)
		return MG_ENOTFOUND;
	if ((e = spool_txn(sp, upd_fn, &a)) != MG_OK)
		return e;
	return a.e;
}

enum mg_err
spool_msg_transition(struct spool *sp, const char *qid, unsigned from_mask,
    enum rcpt_state to, size_t *changed)
{
	struct upd_arg	a = { qid, SIZE_MAX, from_mask, to, NULL, NULL, 0,
	    MG_OK };
	enum mg_err	e;

	if (!mg_qid_valid(qid))
		return MG_ENOTFOUND;
	if ((e = spool_txn(sp, upd_fn, &a)) != MG_OK)
		return e;
	if (changed)
		*changed = a.changed;
	return a.e;
}

struct del_arg {
	const char	*qid;
	int		 found;
};

static int
del_fn(struct spool *sp, DB_TXN *txn, void *varg)
{
	struct del_arg	*a = varg;
	unsigned char	 rk[RKEY_LEN];
	DBT		 key;
	int		 r;

	dbt_init(&key, a->qid, MG_QID_LEN);
	r = sp->msg->del(sp->msg, txn, &key, 0);
	a->found = r == 0;
	if (r != 0 && r != DB_NOTFOUND)
		return r;
	for (size_t i = 0; ; i++) {
		rcpt_key(rk, a->qid, i);
		dbt_init(&key, rk, sizeof(rk));
		if ((r = sp->rcpt->del(sp->rcpt, txn, &key, 0)) != 0)
			return r == DB_NOTFOUND ? 0 : r;
	}
}

int
pickup_lock(struct spool *sp)
{
	char	path[4200];
	int	fd;

	if (mg_path(path, sizeof(path), "%s/pickup.lock", sp->dir) != MG_OK)
		return -1;
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
	    0600)) < 0)
		return -1;
	while (flock(fd, LOCK_EX) < 0)
		if (errno != EINTR) {
			close(fd);
			return -1;
		}
	return fd;
}

struct dels_arg {
	char	**qids;
	size_t	  n;
	int	 *found;
};

static int
dels_fn(struct spool *sp, DB_TXN *txn, void *varg)
{
	struct dels_arg	*a = varg;
	int		 r;

	for (size_t i = 0; i < a->n; i++) {
		struct del_arg d = { a->qids[i], 0 };

		if ((r = del_fn(sp, txn, &d)) != 0)
			return r;
		a->found[i] = d.found;
	}
	return 0;
}

enum mg_err
spool_msgs_delete(struct spool *sp, char **qids, size_t n, const char *why,
    size_t *removed)
{
	struct dels_arg	a = { qids, 0, NULL };
	char		path[4200];
	enum mg_err	e = MG_OK;
	int		lock;

	*removed = 0;
	for (size_t i = 0; i < n; i++)
		if (!mg_qid_valid(qids[i]))
			return MG_EDATA;
	if ((a.found = calloc(n ? n : 1, sizeof(*a.found))) == NULL)
		return MG_ENOMEM;
	/* Serialise with pickup, which renames body files into queue/. */
	if ((lock = pickup_lock(sp)) < 0) {
		free(a.found);
		return MG_EIO;
	}
	/* One commit (one fsync) per batch, not per message. */
	for (size_t off = 0; off < n && e == MG_OK; off += a.n) {
		a.qids = qids + off;
		a.n = n - off < 100 ? n - off : 100;
		if ((e = spool_txn(sp, dels_fn, &a)) != MG_OK)
			break;
		for (size_t i = 0; i < a.n; i++) {
			if (!a.found[i])
				continue;
			(*removed)++;
			if (why)
				mg_info("%s: removed (%s)", a.qids[i], why);
			/* Committed: now the body; a crash here leaves an
			 * orphan file, which pickup's sweep removes. */
			if (mg_path(path, sizeof(path), "%s/queue/%s",
			    sp->dir, a.qids[i]) == MG_OK)
				unlink(path);
			if (mg_path(path, sizeof(path), "%s/maildrop/%s",
			    sp->dir, a.qids[i]) == MG_OK)
				unlink(path);
		}
	}
	close(lock);
	free(a.found);
	return e;
}

enum mg_err
spool_msg_delete(struct spool *sp, const char *qid)
{
	char		*one = (char *)qid;
	size_t		 n;
	enum mg_err	 e;

	if (!mg_qid_valid(qid))
		return MG_ENOTFOUND;
	if ((e = spool_msgs_delete(sp, &one, 1, NULL, &n)) != MG_OK)
		return e;
	return n ? MG_OK : MG_ENOTFOUND;
}

enum mg_err
spool_body_path(struct spool *sp, const char *qid, char *buf, size_t len)
{
	if (!mg_qid_valid(qid))
		return MG_ENOTFOUND;
	if (mg_path(buf, len, "%s/queue/%s", sp->dir, qid) != MG_OK)
		return MG_ELIMIT;
	if (access(buf, F_OK) == 0)
		return MG_OK;
	/* Picked up, but the rename into queue/ did not happen yet. */
	if (mg_path(buf, len, "%s/maildrop/%s", sp->dir, qid) != MG_OK)
		return MG_ELIMIT;
	return access(buf, F_OK) == 0 ? MG_OK : MG_ENOTFOUND;
}

struct seen_arg {
	const char	*key;
	int		 add;
	int		 found;
};

static int
seen_fn(struct spool *sp, DB_TXN *txn, void *varg)
{
	struct seen_arg	*a = varg;
	unsigned char	 t[8];
	DBT		 key, val;
	int		 r;

	dbt_init(&key, a->key, strlen(a->key));
	dbt_init(&val, NULL, 0);
	r = sp->seen->get(sp->seen, txn, &key, &val, a->add ? DB_RMW : 0);
	a->found = r == 0;
	if (r != 0 && r != DB_NOTFOUND)
		return r;
	if (!a->add || a->found)
		return 0;
	mg_put_be64(t, (uint64_t)time(NULL));
	dbt_init(&val, t, sizeof(t));
	return sp->seen->put(sp->seen, txn, &key, &val, 0);
}

static enum mg_err
seen_op(struct spool *sp, const char *kind, const char *id, int add)
{
	char		key[512];
	struct seen_arg	a = { key, add, 0 };
	enum mg_err	e;

	if (mg_path(key, sizeof(key), "%s:%s", kind, id) != MG_OK)
		return MG_ELIMIT;
	if ((e = spool_txn(sp, seen_fn, &a)) != MG_OK)
		return e;
	if (add)
		return a.found ? MG_EEXIST : MG_OK;
	return a.found ? MG_OK : MG_ENOTFOUND;
}

enum mg_err
spool_seen_add(struct spool *sp, const char *kind, const char *id)
{
	return seen_op(sp, kind, id, 1);
}

enum mg_err
spool_seen_check(struct spool *sp, const char *kind, const char *id)
{
	return seen_op(sp, kind, id, 0);
}

/*
 * Pickup: import committed maildrop files, one transaction each.  The
 * file is renamed into queue/ only after its records commit, so a crash
 * anywhere leaves a state the next pickup finishes: a file still in
 * maildrop/ whose ID is already in the database is simply moved.
 */
static void
move_corrupt(struct spool *sp, const char *name, const char *why)
{
	char from[4200], to[4200];

	if (mg_path(from, sizeof(from), "%s/maildrop/%s", sp->dir, name) ||
	    mg_path(to, sizeof(to), "%s/corrupt/%s", sp->dir, name))
		return;
	mg_warn("%s: moved to %s/corrupt: %s", name, sp->dir, why);
	if (rename(from, to) < 0)
		mg_warn_errno("%s: cannot move to corrupt/", name);
}

static enum mg_err
pickup_one(struct spool *sp, const char *name, size_t *picked)
{
	struct maildrop_reader		*r = NULL;
	const struct mg_envelope	*env;
	char				 path[4200], dst[4200], err[512];
	enum mg_err			 e;

	if (mg_path(path, sizeof(path), "%s/maildrop/%s", sp->dir, name) ||
	    mg_path(dst, sizeof(dst), "%s/queue/%s", sp->dir, name))
		return MG_ELIMIT;
	if ((e = maildrop_open(path, &r, err, sizeof(err))) != MG_OK) {
		if (e == MG_ENOTFOUND)	/* deleted meanwhile */
			return MG_OK;
		if (e == MG_ECORRUPT)
			move_corrupt(sp, name, err);
		else
			mg_warn("%s", err);
		return e == MG_ECORRUPT ? MG_OK : e;
	}
	env = maildrop_envelope(r);
	if (strcmp(env->qid, name) != 0) {
		maildrop_close(r);
		move_corrupt(sp, name, "queue ID does not match file name");
		return MG_OK;
	}
	if ((e = maildrop_verify(r)) != MG_OK) {
		maildrop_close(r);
		if (e == MG_ECORRUPT)
			move_corrupt(sp, name, "content digest mismatch");
		return e == MG_ECORRUPT ? MG_OK : e;
	}
	e = spool_msg_create(sp, env);
	if (e == MG_OK) {
		mg_info("%s: from=<%s>, size=%llu, nrcpt=%zu (queue active)",
		    env->qid, env->sender, (unsigned long long)env->size,
		    env->nrcpt);
		(*picked)++;
	}
	maildrop_close(r);
	if (e != MG_OK && e != MG_EEXIST)
		return e;
	if (rename(path, dst) < 0 && errno != ENOENT) {
		mg_warn_errno("%s: cannot move %s to %s", name, path, dst);
		return MG_EIO;
	}
	return MG_OK;
}

static int
name_filter(const struct dirent *d)
{
	return mg_qid_valid(d->d_name);
}

static void
sweep_tmp(struct spool *sp)
{
	char		 dir[4200], path[4300];
	DIR		*d;
	struct dirent	*de;
	struct stat	 st;
	time_t		 now = time(NULL);

	if (mg_path(dir, sizeof(dir), "%s/tmp", sp->dir) != MG_OK ||
	    (d = opendir(dir)) == NULL)
		return;
	/*
	 * A file left in tmp/ belongs to a submission that never reached
	 * its commit point, so its sender was told it failed.  Give live
	 * writers a day before removing it.
	 */
	while ((de = readdir(d)) != NULL) {
		if (!mg_qid_valid(de->d_name) ||
		    mg_path(path, sizeof(path), "%s/%s", dir, de->d_name) ||
		    lstat(path, &st) < 0 || now - st.st_mtime < 86400)
			continue;
		if (unlink(path) == 0)
			mg_info("%s: removed stale temporary file",
			    de->d_name);
	}
	closedir(d);
}

/*
 * Body files in queue/ that no message record names: an import that
 * staged them and then failed or died, or a delete cut short.  Nobody
 * acknowledged them, so removing them loses nothing.  The age test keeps
 * files of an import still running.
 */
static void
sweep_orphans(struct spool *sp)
{
	struct spool_msg	 m;
	char			 dir[4200], path[4300];
	DIR			*d;
	struct dirent		*de;
	struct stat		 st;
	time_t			 now = time(NULL);

	if (mg_path(dir, sizeof(dir), "%s/queue", sp->dir) != MG_OK ||
	    (d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (!mg_qid_valid(de->d_name) ||
		    mg_path(path, sizeof(path), "%s/%s", dir, de->d_name) ||
		    lstat(path, &st) < 0 || now - st.st_mtime < 6 * 3600)
			continue;
		if (spool_msg_get(sp, de->d_name, &m) != MG_ENOTFOUND) {
			spool_msg_free(&m);
			continue;
		}
		if (unlink(path) == 0)
			mg_info("%s: removed body file of no queued message",
			    de->d_name);
	}
	closedir(d);
}

enum mg_err
spool_pickup(struct spool *sp, size_t *picked)
{
	struct dirent	**list = NULL;
	char		  dir[4200];
	int		  n, lock;
	enum mg_err	  e = MG_OK, e1;

	*picked = 0;
	if (mg_path(dir, sizeof(dir), "%s/maildrop", sp->dir) != MG_OK)
		return MG_ELIMIT;
	if ((lock = pickup_lock(sp)) < 0) {
		mg_warn_errno("%s/pickup.lock: cannot lock", sp->dir);
		return MG_ETEMP;
	}
	if ((n = scandir(dir, &list, name_filter, alphasort)) < 0) {
		mg_warn_errno("%s: cannot read directory", dir);
		close(lock);
		return MG_EUNAVAIL;
	}
	for (int i = 0; i < n; i++) {
		if (e == MG_OK &&
		    (e1 = pickup_one(sp, list[i]->d_name, picked)) != MG_OK) {
			mg_warn("%s: pickup failed: %s", list[i]->d_name,
			    mg_strerror(e1));
			e = e1;
		}
		free(list[i]);
	}
	free(list);
	if (n > 0) {
		char qdir[4200];

		/* The renames become durable here, all at once. */
		if (mg_path(qdir, sizeof(qdir), "%s/queue", sp->dir) == MG_OK)
			mg_fsync_dir(qdir);
		mg_fsync_dir(dir);
	}
	sweep_tmp(sp);
	sweep_orphans(sp);
	close(lock);
	return e;
}
