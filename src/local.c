/*
 * local.c - local delivery: Maildir, mbox or an MDA.
 *
 * The mailbox path comes from local_mailbox with %u (login) and %h (home
 * directory) expanded from the password database, never from message
 * data.  Maildir names follow the usual time.pid_counter.host pattern.
 * The MDA's argument vector is mda_command split at spaces, %u
 * expanded: no shell ever sees message data.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mgate/fsutil.h"
#include "mgate/local.h"
#include "mgate/log.h"

struct local_dest {
	int	 kind;		/* enum mg_local */
	int	 fd;
	pid_t	 pid;
	char	 tmp[4200];
	char	 dst[4200];
	char	 dir[4200];
	int	 bol;		/* mbox: at the start of a line */
	char	 pend[64];
	size_t	 npend;
};

static enum mg_err
expand(const char *pat, const char *user, char *out, size_t len)
{
	struct passwd	*pw = getpwnam(user);
	size_t		 n = 0;

	for (const char *p = pat; *p; p++) {
		const char *sub = NULL;

		if (*p == '%' && p[1] == 'u')
			sub = user;
		else if (*p == '%' && p[1] == 'h') {
			if (pw == NULL)
				return MG_ENOTFOUND;
			sub = pw->pw_dir;
		}
		if (sub) {
			if (n + strlen(sub) >= len)
				return MG_ELIMIT;
			memcpy(out + n, sub, strlen(sub));
			n += strlen(sub);
			p++;
			continue;
		}
		if (n + 1 >= len)
			return MG_ELIMIT;
		out[n++] = *p;
	}
	out[n] = '\0';
	return MG_OK;
}

static enum mg_err
maildir_open(struct local_dest *d, const char *box, char *err, size_t elen)
{
	static unsigned	counter;
	struct timeval	tv;
	char		host[128], sub[4300];
	const char	*subs[] = { "tmp", "new", "cur" };

	for (size_t i = 0; i < 3; i++) {
		if (mg_path(sub, sizeof(sub), "%s/%s", box, subs[i]) ||
		    mg_mkdirs(sub, 0700) != MG_OK) {
			snprintf(err, elen, "%s: cannot create Maildir: %s",
			    box, strerror(errno));
			return MG_ETEMP;
		}
	}
	gettimeofday(&tv, NULL);
	if (gethostname(host, sizeof(host)) < 0)
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';
	for (char *p = host; *p; p++)
		if (*p == '/' || *p == ':')
			*p = '_';
	if (mg_path(d->tmp, sizeof(d->tmp), "%s/tmp/%ld.M%ldP%dQ%u.%s", box,
	    (long)tv.tv_sec, (long)tv.tv_usec, (int)getpid(), ++counter,
	    host) || mg_path(d->dst, sizeof(d->dst), "%s/new/%s", box,
	    strrchr(d->tmp, '/') + 1) || mg_path(d->dir, sizeof(d->dir),
	    "%s/new", box))
		return MG_ELIMIT;
	if ((d->fd = open(d->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600)) < 0) {
		snprintf(err, elen, "%s: %s", d->tmp, strerror(errno));
		d->tmp[0] = '\0';
		return MG_ETEMP;
	}
	return MG_OK;
}

static enum mg_err
mbox_open(struct local_dest *d, const char *box, const char *sender,
    char *err, size_t elen)
{
	char	line[600];
	time_t	now = time(NULL);
	int	n;

	if ((d->fd = open(box, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW |
	    O_CLOEXEC, 0600)) < 0) {
		snprintf(err, elen, "%s: %s", box, strerror(errno));
		return MG_ETEMP;
	}
	if (flock(d->fd, LOCK_EX) < 0) {
		snprintf(err, elen, "%s: cannot lock: %s", box,
		    strerror(errno));
		return MG_ETEMP;
	}
	n = snprintf(line, sizeof(line), "From %s %s", sender[0] ? sender :
	    "MAILER-DAEMON", ctime(&now));
	d->bol = 1;
	return mg_write_all(d->fd, line, (size_t)n);
}

static enum mg_err
mda_open(struct local_dest *d, const struct mg_config *cfg,
    const char *user, char *err, size_t elen)
{
	char	*argv[32], cmd[1024], *p, *save = NULL;
	int	 pfd[2], argc = 0;

	if (cfg->mda_command == NULL) {
		snprintf(err, elen, "local_delivery = mda needs mda_command");
		return MG_ECONFIG;
	}
	if (expand(cfg->mda_command, user, cmd, sizeof(cmd)) != MG_OK) {
		snprintf(err, elen, "mda_command: cannot expand for %s", user);
		return MG_ECONFIG;
	}
	for (p = strtok_r(cmd, " ", &save); p && argc < 31;
	    p = strtok_r(NULL, " ", &save))
		argv[argc++] = p;
	argv[argc] = NULL;
	if (argc == 0 || argv[0][0] != '/') {
		snprintf(err, elen, "mda_command must start with an absolute "
		    "path");
		return MG_ECONFIG;
	}
	if (pipe2(pfd, O_CLOEXEC) < 0 || (d->pid = fork()) < 0) {
		snprintf(err, elen, "cannot start the MDA: %s",
		    strerror(errno));
		return MG_ETEMP;
	}
	if (d->pid == 0) {
		dup2(pfd[0], 0);
		execv(argv[0], argv);
		_exit(75);
	}
	close(pfd[0]);
	d->fd = pfd[1];
	return MG_OK;
}

enum mg_err
local_open(const struct mg_config *cfg, const char *user,
    const char *sender, struct local_dest **out, char *err, size_t elen)
{
	struct local_dest	*d;
	char			 box[4096];
	enum mg_err		 e;

	*out = NULL;
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return MG_ENOMEM;
	d->fd = -1;
	d->kind = cfg->local_delivery;
	if (d->kind != MG_LOCAL_MDA &&
	    (e = expand(cfg->local_mailbox, user, box, sizeof(box))) != MG_OK) {
		snprintf(err, elen, "no mailbox for user '%s' (%s)", user,
		    e == MG_ENOTFOUND ? "no such user" : "path too long");
		free(d);
		return MG_ETEMP;
	}
	switch (d->kind) {
	case MG_LOCAL_MAILDIR:
		e = maildir_open(d, box, err, elen);
		break;
	case MG_LOCAL_MBOX:
		e = mbox_open(d, box, sender, err, elen);
		break;
	default:
		e = mda_open(d, cfg, user, err, elen);
		break;
	}
	if (e != MG_OK) {
		local_abort(d);
		return e;
	}
	*out = d;
	return MG_OK;
}

/*
 * mbox: mboxrd quoting, a '>' added to every line matching ^>*From .
 * The start of each line is held in pend until it is known to match or
 * not; a line of more '>' than pend holds is passed through as is.
 */
static enum mg_err
mbox_write(struct local_dest *d, const unsigned char *p, size_t n)
{
	char		out[8192 + sizeof(d->pend) + 2];
	size_t		k = 0, gt;
	enum mg_err	e;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];

		if (k >= 8192) {
			if ((e = mg_write_all(d->fd, out, k)) != MG_OK)
				return e;
			k = 0;
		}
		if (!d->bol) {
			out[k++] = (char)c;
			d->bol = c == '\n';
			continue;
		}
		d->pend[d->npend++] = (char)c;
		for (gt = 0; gt < d->npend && d->pend[gt] == '>'; gt++)
			;
		if (gt == d->npend && d->npend < sizeof(d->pend) - 1)
			continue;		/* only '>' so far */
		if (d->npend - gt < 5 && d->npend < sizeof(d->pend) - 1 &&
		    memcmp(d->pend + gt, "From ", d->npend - gt) == 0)
			continue;		/* could still be From_ */
		if (d->npend - gt == 5 && memcmp(d->pend + gt, "From ", 5) == 0)
			out[k++] = '>';
		memcpy(out + k, d->pend, d->npend);
		k += d->npend;
		d->bol = c == '\n';
		d->npend = 0;
	}
	return mg_write_all(d->fd, out, k);
}

enum mg_err
local_write(struct local_dest *d, const void *p, size_t n)
{
	if (d->kind == MG_LOCAL_MBOX)
		return mbox_write(d, p, n);
	return mg_write_all(d->fd, p, n);
}

enum mg_err
local_commit(struct local_dest *d, char *err, size_t elen)
{
	enum mg_err	e = MG_OK;
	int		status;

	switch (d->kind) {
	case MG_LOCAL_MAILDIR:
		if (fsync(d->fd) < 0 || close(d->fd) < 0) {
			d->fd = -1;
			snprintf(err, elen, "%s: %s", d->tmp, strerror(errno));
			e = MG_ETEMP;
			break;
		}
		d->fd = -1;
		if (rename(d->tmp, d->dst) < 0 ||
		    mg_fsync_dir(d->dir) != MG_OK) {
			snprintf(err, elen, "%s: %s", d->dst, strerror(errno));
			e = MG_ETEMP;
			break;
		}
		d->tmp[0] = '\0';
		break;
	case MG_LOCAL_MBOX:
		if (d->npend)
			mg_write_all(d->fd, d->pend, d->npend);
		/* A blank line ends the message for mbox readers. */
		if ((e = mg_write_all(d->fd, d->bol ? "\n" : "\n\n",
		    d->bol ? 1 : 2)) != MG_OK || fsync(d->fd) < 0) {
			snprintf(err, elen, "mbox: %s", strerror(errno));
			e = MG_ETEMP;
		}
		break;
	default:
		close(d->fd);
		d->fd = -1;
		while (waitpid(d->pid, &status, 0) < 0 && errno == EINTR)
			;
		d->pid = 0;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			snprintf(err, elen, "MDA failed (status %d)",
			    WIFEXITED(status) ? WEXITSTATUS(status) : -1);
			e = MG_ETEMP;
		}
		break;
	}
	local_abort(d);
	return e;
}

void
local_abort(struct local_dest *d)
{
	if (d == NULL)
		return;
	if (d->fd >= 0)
		close(d->fd);
	if (d->kind == MG_LOCAL_MAILDIR && d->tmp[0])
		unlink(d->tmp);
	if (d->pid > 0) {
		kill(d->pid, SIGTERM);
		waitpid(d->pid, NULL, 0);
	}
	free(d);
}
