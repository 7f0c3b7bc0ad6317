/*
 * cmd_sync.c - `mgate sync', `mgate serve' and `mgate authorized-key'.
 *
 * sync runs at the site when a link comes up: it takes the per-peer
 * lock, packs what is queued, connects (SSH), and runs the client side
 * of the sync protocol.  serve is the gateway's end, started by sshd as
 * the forced command of the site's key; the peer it serves is named on
 * its command line by the gateway's admin, never by the data.  A link
 * failure is temporary: mail stays queued and sync exits EX_TEMPFAIL.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/time.h>
#include <sysexits.h>
#include <unistd.h>

#include "mgate/cmd.h"
#include "mgate/fsutil.h"
#include "mgate/log.h"
#include "mgate/packer.h"
#include "mgate/spool.h"
#include "mgate/stream.h"
#include "mgate/sync.h"
#include "mgate/history.h"
#include "mgate/inbound.h"
#include "mgate/smarthost.h"
#include "mgate/transport_smtp.h"
#include "mgate/transport_ssh.h"

static int
peer_lock(const char *spool, const char *what, const char *peer, int wait)
{
	char	path[4200];
	int	fd;

	if (mg_path(path, sizeof(path), "%s/%s-%s.lock", spool, what, peer))
		return -1;
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
	    0600)) < 0)
		return -1;
	while (flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) < 0) {
		if (errno == EINTR)
			continue;
		close(fd);
		return errno == EWOULDBLOCK ? -2 : -1;
	}
	return fd;
}

static double
now_s(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return tv.tv_sec + tv.tv_usec / 1e6;
}


/* transport = smarthost: relay the queue message by message. */
static int
smarthost_sync(struct cmd_ctx *ctx, const struct mg_config *cfg,
    const struct mg_peer *peer, int wait)
{
	struct spool		*sp = NULL;
	struct smarthost_stats	 st;
	char			 err[1024];
	size_t			 picked;
	double			 t0 = now_s();
	enum mg_err		 e;
	int			 lock = -1, rc = EX_OK;

	if ((e = spool_open(cfg->spool_directory, SPOOL_CREATE, &sp, err,
	    sizeof(err))) != MG_OK) {
		cmd_die_msg(ctx, "%s", err);
		return mg_err_exit(e);
	}
	if ((lock = peer_lock(cfg->spool_directory, "sync", peer->name,
	    wait)) < 0) {
		cmd_die_msg(ctx, "another sync with %s is running; try again "
		    "later, or use --wait", peer->name);
		spool_close(sp);
		return EX_TEMPFAIL;
	}
	spool_pickup(sp, &picked);
	err[0] = '\0';
	if ((e = smarthost_run(sp, cfg, peer, &st, err, sizeof(err))) !=
	    MG_OK) {
		cmd_die_msg(ctx, "relay through %s: %s; mail stays queued",
		    peer->host, err);
		rc = e == MG_ECONFIG ? EX_CONFIG : EX_TEMPFAIL;
	}
	printf("sync %s (smarthost %s): %lu message%s tried, %lu recipient%s "
	    "delivered, %lu bounced, %lu deferred; %.1fs\n", peer->name,
	    peer->host, st.messages, st.messages == 1 ? "" : "s",
	    st.delivered, st.delivered == 1 ? "" : "s", st.bounced,
	    st.deferred, now_s() - t0);
	close(lock);
	spool_close(sp);
	return rc;
}

int
cmd_sync(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mg_config	*cfg = NULL;
	const struct mg_peer	*peer;
	struct spool		*sp = NULL;
	struct ssh_conn		*conn = NULL;
	struct smtp_sync_conn	*sconn = NULL;
	struct peer_keys	 pk;
	struct sync_ctx		 x;
	struct ssh_params	 sp_;
	const char		*pname = NULL;
	char			 err[1024], serr_[1024];
	unsigned long long	 wout = 0, win = 0;
	size_t			 picked;
	double			 t0 = now_s();
	enum mg_err		 e;
	int			 rc = EX_OK, lock = -1, wait = 0;

	memset(&pk, 0, sizeof(pk));
	memset(&x, 0, sizeof(x));
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--peer") == 0 && i + 1 < argc)
			pname = argv[++i];
		else if (strcmp(argv[i], "--wait") == 0)
			wait = 1;
		else {
			cmd_die_msg(ctx, "usage: mgate sync [--peer NAME] "
			    "[--wait]");
			return EX_USAGE;
		}
	}
	if ((cfg = cmd_load_config(ctx)) == NULL)
		return EX_CONFIG;
	if ((peer = cmd_pick_peer(ctx, cfg, pname)) == NULL) {
		rc = EX_CONFIG;
		goto out;
	}
	if (peer->transport == MG_TR_SMARTHOST) {
		rc = smarthost_sync(ctx, cfg, peer, wait);
		goto out;
	}
	if (peer->transport != MG_TR_SSH && peer->transport != MG_TR_SMTP) {
		cmd_die_msg(ctx, "peer %s: transport %s cannot sync yet (use "
		    "ssh, or export/import for file)", peer->name,
		    mg_transport_name(peer->transport));
		rc = EX_CONFIG;
		goto out;
	}
	if ((e = spool_open(cfg->spool_directory, SPOOL_CREATE, &sp, err,
	    sizeof(err))) != MG_OK) {
		cmd_die_msg(ctx, "%s", err);
		rc = mg_err_exit(e);
		goto out;
	}
	if ((lock = peer_lock(cfg->spool_directory, "sync", peer->name,
	    wait)) < 0) {
		cmd_die_msg(ctx, lock == -2 ? "another sync with %s is "
		    "running; try again later, or use --wait" :
		    "cannot take the sync lock for %s", peer->name);
		rc = EX_TEMPFAIL;
		goto out;
	}
	if ((e = peer_keys_load(cfg, peer, &pk, err, sizeof(err))) != MG_OK) {
		cmd_die_msg(ctx, "%s", err);
		rc = mg_err_exit(e);
		goto out;
	}
	spool_pickup(sp, &picked);
	memset(&sp_, 0, sizeof(sp_));
	sp_.host = peer->host;
	sp_.port = (unsigned)peer->port;
	sp_.user = peer->user;
	sp_.identity_file = peer->identity_file;
	sp_.known_hosts = peer->known_hosts;
	sp_.command = "mgate serve";
	sp_.connect_timeout_ms = (int)peer->connect_timeout * 1000;
	sp_.io_timeout_ms = (int)peer->io_timeout * 1000;
	if (peer->transport == MG_TR_SMTP)
		e = smtp_sync_connect(peer, cfg->local_name, &sconn, err,
		    sizeof(err));
	else
		e = ssh_connect(&sp_, &conn, err, sizeof(err));
	if (e != MG_OK) {
		cmd_die_msg(ctx, "%s; mail stays queued", err);
		rc = e == MG_ECONFIG ? EX_CONFIG : EX_TEMPFAIL;
		goto out;
	}
	x.sp = sp;
	x.cfg = cfg;
	x.pk = &pk;
	x.s = conn ? ssh_stream(conn) : smtp_sync_stream(sconn);
	x.progress = isatty(STDERR_FILENO);
	x.err = err;
	x.errlen = sizeof(err);
	e = sync_client(&x);
	if (conn)
		ssh_wire_bytes(conn, &wout, &win);
	else
		smtp_sync_wire_bytes(sconn, &wout, &win);
	if (e != MG_OK) {
		snprintf(serr_, sizeof(serr_), "%s", conn ?
		    ssh_remote_stderr(conn) : "");
		cmd_die_msg(ctx, "sync with %s failed: %s%s%s%s", peer->name,
		    err, serr_[0] ? " [remote: " : "", serr_,
		    serr_[0] ? "]" : "");
		rc = EX_TEMPFAIL;
	}
	if (conn)
		ssh_send_eof(conn);
	/* Mail for our users came down with the status records. */
	if (cfg->role == MG_ROLE_SITE) {
		size_t n = 0;

		inbound_deliver(sp, cfg, &n);
		history_expire(sp, cfg, NULL);
	}
	printf("sync %s: up %llu message%s in %llu bundle%s (%llu bytes, "
	    "%llu before compression), down %llu message%s and %llu "
	    "status record%s (%llu bytes); wire %llu out, %llu in; "
	    "%.1fs%s\n", peer->name,
	    (unsigned long long)x.st.up_msgs, x.st.up_msgs == 1 ? "" : "s",
	    (unsigned long long)x.st.up_bundles,
	    x.st.up_bundles == 1 ? "" : "s",
	    (unsigned long long)x.st.up_bytes,
	    (unsigned long long)x.st.up_raw,
	    (unsigned long long)x.st.down_msgs,
	    x.st.down_msgs == 1 ? "" : "s",
	    (unsigned long long)x.st.down_status,
	    x.st.down_status == 1 ? "" : "s",
	    (unsigned long long)x.st.down_bytes, wout, win, now_s() - t0,
	    rc == EX_OK ? "" : " (incomplete: run sync again)");
	fflush(stdout);
out:
	ssh_close(conn);
	smtp_sync_close(sconn);
	peer_keys_free(&pk);
	if (lock >= 0)
		close(lock);
	spool_close(sp);
	mg_config_free(cfg);
	return rc;
}

int
cmd_serve(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mg_config	*cfg = NULL;
	const struct mg_peer	*peer;
	struct spool		*sp = NULL;
	struct peer_keys	 pk;
	struct sync_ctx		 x;
	struct mg_stream	*s = NULL;
	const char		*pname = NULL;
	char			 err[1024];
	enum mg_err		 e;
	int			 rc = EX_OK, lock = -1;

	memset(&pk, 0, sizeof(pk));
	memset(&x, 0, sizeof(x));
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--peer") == 0 && i + 1 < argc)
			pname = argv[++i];
		else {
			cmd_die_msg(ctx, "usage: mgate serve --peer NAME");
			return EX_USAGE;
		}
	}
	if (pname == NULL) {
		cmd_die_msg(ctx, "usage: mgate serve --peer NAME (run by sshd "
		    "as the forced command of the peer's key)");
		return EX_USAGE;
	}
	if ((cfg = cmd_load_config(ctx)) == NULL)
		return EX_CONFIG;
	if ((peer = mg_config_peer(cfg, pname)) == NULL) {
		cmd_die_msg(ctx, "%s: no [peer %s] section", cfg->path, pname);
		rc = EX_CONFIG;
		goto out;
	}
	if ((e = spool_open(cfg->spool_directory, SPOOL_CREATE, &sp, err,
	    sizeof(err))) != MG_OK) {
		cmd_die_msg(ctx, "%s", err);
		rc = mg_err_exit(e);
		goto out;
	}
	/* One session per peer at a time; a newer one waits its turn. */
	if ((lock = peer_lock(cfg->spool_directory, "serve", peer->name,
	    1)) < 0) {
		cmd_die_msg(ctx, "cannot take the serve lock for %s",
		    peer->name);
		rc = EX_TEMPFAIL;
		goto out;
	}
	if ((e = peer_keys_load(cfg, peer, &pk, err, sizeof(err))) != MG_OK) {
		cmd_die_msg(ctx, "%s", err);
		rc = mg_err_exit(e);
		goto out;
	}
	if ((s = mg_stream_fd2(STDIN_FILENO, STDOUT_FILENO, 0)) == NULL) {
		rc = EX_OSERR;
		goto out;
	}
	mg_stream_set_timeout(s, (int)peer->io_timeout * 1000);
	x.sp = sp;
	x.cfg = cfg;
	x.pk = &pk;
	x.s = s;
	x.err = err;
	x.errlen = sizeof(err);
	if ((e = sync_server(&x)) != MG_OK) {
		mg_warn("serve %s: %s", peer->name, err);
		cmd_die_msg(ctx, "%s", err);
		rc = EX_TEMPFAIL;
	} else
		mg_info("serve %s: received %llu message%s in %llu bundle%s, "
		    "sent %llu bundle%s", peer->name,
		    (unsigned long long)x.st.down_msgs,
		    x.st.down_msgs == 1 ? "" : "s",
		    (unsigned long long)x.st.down_bundles,
		    x.st.down_bundles == 1 ? "" : "s",
		    (unsigned long long)x.st.up_bundles,
		    x.st.up_bundles == 1 ? "" : "s");
out:
	mg_stream_close(s);
	peer_keys_free(&pk);
	if (lock >= 0)
		close(lock);
	spool_close(sp);
	mg_config_free(cfg);
	return rc;
}

int
cmd_authorized_key(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mg_config	*cfg = NULL;
	const char		*pname = NULL, *file = NULL;
	char			 line[8192], exe[PATH_MAX], conf[PATH_MAX];
	FILE			*fp;
	ssize_t			 n;
	int			 rc = EX_OK;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--peer") == 0 && i + 1 < argc)
			pname = argv[++i];
		else if (file == NULL && argv[i][0] != '-')
			file = argv[i];
		else
			pname = NULL, i = argc;
	}
	if (pname == NULL || file == NULL) {
		cmd_die_msg(ctx, "usage: mgate authorized-key --peer NAME "
		    "SSH-PUBLIC-KEY-FILE");
		return EX_USAGE;
	}
	if ((cfg = cmd_load_config(ctx)) == NULL)
		return EX_CONFIG;
	if (mg_config_peer(cfg, pname) == NULL) {
		cmd_die_msg(ctx, "%s: no [peer %s] section: define the peer "
		    "first", cfg->path, pname);
		rc = EX_CONFIG;
		goto out;
	}
	if ((fp = fopen(file, "r")) == NULL) {
		cmd_die_msg(ctx, "%s: %s", file, strerror(errno));
		rc = EX_NOINPUT;
		goto out;
	}
	if (fgets(line, sizeof(line), fp) == NULL) {
		fclose(fp);
		cmd_die_msg(ctx, "%s: empty", file);
		rc = EX_DATAERR;
		goto out;
	}
	fclose(fp);
	line[strcspn(line, "\r\n")] = '\0';
	if (strncmp(line, "ssh-ed25519 ", 12) != 0 &&
	    strncmp(line, "ecdsa-sha2-nistp256 ", 20) != 0) {
		cmd_die_msg(ctx, "%s: not an Ed25519 or ECDSA OpenSSH public "
		    "key (libssh2 cannot log in with RSA; make one with "
		    "ssh-keygen -t ed25519)", file);
		rc = EX_DATAERR;
		goto out;
	}
	if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) < 0)
		snprintf(exe, sizeof(exe), "mgate");
	else
		exe[n] = '\0';
	if (realpath(cfg->path, conf) == NULL)
		snprintf(conf, sizeof(conf), "%s", cfg->path);
	if (strpbrk(exe, "\" \\") || strpbrk(conf, "\" \\") ||
	    strpbrk(pname, "\" \\")) {
		cmd_die_msg(ctx, "paths with spaces, quotes or backslashes "
		    "cannot go in a forced command");
		rc = EX_CONFIG;
		goto out;
	}
	printf("restrict,command=\"%s -c %s serve --peer %s\" %s\n", exe,
	    conf, pname, line);
out:
	mg_config_free(cfg);
	return rc;
}
