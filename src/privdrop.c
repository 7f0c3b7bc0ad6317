/*
 * privdrop.c - switch the daemon from root to daemon_user.
 *
 * The order matters and follows OpenSSH's permanently_set_uid(): groups
 * first (initgroups, setresgid) while still root, then setresuid, then
 * prove that root cannot be regained.  A failure at any step is fatal
 * to the caller: a daemon that meant to drop root and did not must not
 * go on.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mgate/privdrop.h"

static int
lookup(const char *user, uid_t *uid, gid_t *gid, char *name, size_t nlen)
{
	struct passwd	*pw;
	char		*end;
	unsigned long	 n;

	errno = 0;
	if ((pw = getpwnam(user)) == NULL && user[0] >= '0' &&
	    user[0] <= '9') {
		n = strtoul(user, &end, 10);
		if (*end == '\0')
			pw = getpwuid((uid_t)n);
	}
	if (pw == NULL)
		return -1;
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	snprintf(name, nlen, "%s", pw->pw_name);
	return 0;
}

static enum mg_err
check_spool(const char *spool, uid_t uid, const char *name, char *err,
    size_t errlen)
{
	struct stat	st;

	if (stat(spool, &st) < 0) {
		snprintf(err, errlen, "spool %s: %s", spool, strerror(errno));
		return MG_ECONFIG;
	}
	if (st.st_uid != uid) {
		snprintf(err, errlen, "spool %s is owned by uid %lu, not by "
		    "daemon_user %s (uid %lu): chown -R %s %s", spool,
		    (unsigned long)st.st_uid, name, (unsigned long)uid, name,
		    spool);
		return MG_ENOPERM;
	}
	return MG_OK;
}

enum mg_err
priv_drop(const char *user, const char *spool, char *err, size_t errlen)
{
	char		name[256];
	uid_t		uid;
	gid_t		gid;
	enum mg_err	e;

	if (lookup(user, &uid, &gid, name, sizeof(name)) < 0) {
		snprintf(err, errlen, "daemon_user %s: no such user%s%s", user,
		    errno ? ": " : "", errno ? strerror(errno) : "");
		return MG_ECONFIG;
	}
	if (uid == 0) {
		snprintf(err, errlen, "daemon_user %s is root: name an "
		    "unprivileged user that owns the spool", user);
		return MG_ECONFIG;
	}
	if ((e = check_spool(spool, uid, name, err, errlen)) != MG_OK)
		return e;
	if (geteuid() != 0) {
		if (geteuid() == uid && getuid() == uid)
			return MG_OK;
		snprintf(err, errlen, "daemon_user %s (uid %lu): running as "
		    "uid %lu, which cannot switch users: start as root or as "
		    "%s", name, (unsigned long)uid, (unsigned long)geteuid(),
		    name);
		return MG_ENOPERM;
	}
	if (initgroups(name, gid) < 0 || setresgid(gid, gid, gid) < 0 ||
	    setresuid(uid, uid, uid) < 0) {
		snprintf(err, errlen, "cannot become daemon_user %s: %s", name,
		    strerror(errno));
		return MG_ENOPERM;
	}
	/* Paranoia, as OpenSSH: regaining root must now be impossible. */
	if (setuid(0) != -1 || seteuid(0) != -1) {
		snprintf(err, errlen, "dropped to %s but could regain root: "
		    "refusing to run", name);
		return MG_ESOFTWARE;
	}
	return MG_OK;
}
