/*
 * cmd_daemon.c - `mgate daemon': the gateway's delivery engine.
 *
 * Setup reads as a checklist: parse the command line, load the
 * configuration, bind the listener's sockets and read its TLS key
 * (root's part), drop privileges to daemon_user, check the spool opens,
 * take the queue runner's lock, then run queue passes until told to
 * stop.  SIGTERM and SIGINT end the loop after the current pass
 * (workers finish their transactions); SIGHUP starts a pass now.
 * With --once, one pass and exit: for tests and cron.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "mgate/cmd.h"
#include "mgate/deliver.h"
#include "mgate/log.h"
#include "mgate/privdrop.h"
#include "mgate/smtp_server.h"
#include "mgate/spool.h"

static volatile sig_atomic_t stop, wake;

static void
on_signal(int sig)
{
	if (sig == SIGHUP)
		wake = 1;
	else
		stop = 1;
}

static int
daemon_lock(const char *spool)
{
	char	path[4200];
	int	fd;

	snprintf(path, sizeof(path), "%s/daemon.lock", spool);
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
	    0600)) < 0)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		return fd;
	mg_info("daemon: another queue runner (or its workers) is busy; "
	    "waiting for it");
	while (flock(fd, LOCK_EX) < 0)
		if (errno != EINTR) {
			close(fd);
			return -1;
		}
	return fd;
}

int
cmd_daemon(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mg_config	*cfg = NULL;
	struct spool		*sp = NULL;
	struct deliver_stats	 st;
	struct sigaction	 sa;
	char			 err[1024];
	size_t			 picked;
	enum mg_err		 e;
	int			 once = 0, rc = EX_OK;
	pid_t			 listener = -1;
	struct smtpd_listener	*lsn = NULL;
	int			 lock = -1;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--once") == 0)
			once = 1;
		else {
			cmd_die_msg(ctx, "usage: mgate daemon [--once]");
			return EX_USAGE;
		}
	}
	if ((cfg = cmd_load_config(ctx)) == NULL)
		return EX_CONFIG;
	if (cfg->smtpd_listen && !once &&
	    (e = smtpd_listen_open(cfg, &lsn, err, sizeof(err))) != MG_OK) {
		cmd_die_msg(ctx, "%s", err);
		rc = mg_err_exit(e);
		goto out;
	}
	if (cfg->daemon_user) {
		if ((e = priv_drop(cfg->daemon_user, cfg->spool_directory, err,
		    sizeof(err))) != MG_OK) {
			cmd_die_msg(ctx, "%s", err);
			rc = mg_err_exit(e);
			goto out;
		}
	} else if (geteuid() == 0)
		mg_warn("daemon: running as root: set daemon_user to the "
		    "user that owns %s", cfg->spool_directory);
	if ((e = spool_open(cfg->spool_directory, SPOOL_CREATE, &sp, err,
	    sizeof(err))) != MG_OK) {
		cmd_die_msg(ctx, "%s", err);
		rc = mg_err_exit(e);
		goto out;
	}
	spool_close(sp);
	sp = NULL;
	/*
	 * One queue runner at a time (two would send every message
	 * twice).  The lock passes to the workers by fork, so even a
	 * killed runner's orphaned workers hold it until they finish.
	 */
	if ((lock = daemon_lock(cfg->spool_directory)) < 0) {
		cmd_die_msg(ctx, "%s/daemon.lock: %s", cfg->spool_directory,
		    strerror(errno));
		rc = EX_TEMPFAIL;
		goto out;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	mg_info("daemon: started, spool %s", cfg->spool_directory);
	if (lsn) {
		/* The listener runs beside the queue runs, in its own process. */
		fflush(NULL);
		if ((listener = fork()) == 0) {
			smtpd_serve(lsn, cfg, &stop);
			_exit(EX_OK);
		}
		if (listener < 0)
			mg_error("daemon: cannot start the SMTP listener: %s",
			    strerror(errno));
		/* The queue runner's workers must not hold the sockets. */
		smtpd_listener_free(lsn);
		lsn = NULL;
	}
	while (!stop) {
		/* Mail submitted on the gateway itself goes out too. */
		if (spool_open(cfg->spool_directory, 0, &sp, err,
		    sizeof(err)) == MG_OK) {
			spool_pickup(sp, &picked);
			spool_close(sp);
			sp = NULL;
		}
		if ((e = deliver_run(cfg, &st, err, sizeof(err))) != MG_OK) {
			mg_warn("daemon: queue run: %s", err);
			if (once) {
				rc = mg_err_exit(e);
				break;
			}
		} else if (st.delivered + st.deferred + st.bounced > 0)
			mg_info("daemon: queue run: %lu delivered, %lu "
			    "deferred, %lu bounced, %lu domain%s",
			    st.delivered, st.deferred, st.bounced,
			    st.domains, st.domains == 1 ? "" : "s");
		if (once)
			break;
		/* Reap the listener's exit, if it stopped: say so. */
		if (listener > 0 && waitpid(listener, NULL, WNOHANG) ==
		    listener) {
			mg_error("daemon: the SMTP listener stopped (see above);"
			    " queue runs go on");
			listener = -1;
		}
		for (uint64_t s = 0; s < cfg->queue_run_interval && !stop &&
		    !wake; s++)
			sleep(1);
		wake = 0;
	}
	if (listener > 0) {
		kill(listener, SIGTERM);
		waitpid(listener, NULL, 0);
	}
	mg_info("daemon: stopped");
out:
	smtpd_listener_free(lsn);
	if (lock >= 0)
		close(lock);
	spool_close(sp);
	mg_config_free(cfg);
	return rc;
}
