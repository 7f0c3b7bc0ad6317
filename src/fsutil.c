/*
 * fsutil.c - write-all, directory fsync and mkdir -p.
 *
 * A rename is durable only after the directory holding the new name is
 * fsync'd; mg_fsync_dir() is the second half of every commit point.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mgate/fsutil.h"

enum mg_err
mg_write_all(int fd, const void *p, size_t n)
{
	const char	*c = p;
	ssize_t		 r;

	while (n > 0) {
		if ((r = write(fd, c, n)) < 0) {
			if (errno == EINTR)
				continue;
			return errno == ENOSPC || errno == EDQUOT ?
			    MG_ENOSPC : MG_EIO;
		}
		if (r == 0) {
			errno = EIO;
			return MG_EIO;
		}
		c += r;
		n -= (size_t)r;
	}
	return MG_OK;
}

enum mg_err
mg_fsync_dir(const char *dir)
{
	int fd, r, saved;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return mg_err_from_errno(errno) == MG_ENOTFOUND ?
		    MG_EUNAVAIL : MG_EIO;
	r = fsync(fd);
	saved = errno;
	close(fd);
	errno = saved;
	return r < 0 ? (saved == ENOSPC ? MG_ENOSPC : MG_EIO) : MG_OK;
}

enum mg_err
mg_mkdirs(const char *path, mode_t mode)
{
	char		 tmp[4096];
	size_t		 len;
	struct stat	 st;

	if ((len = strlen(path)) == 0 || len >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return MG_ELIMIT;
	}
	memcpy(tmp, path, len + 1);
	for (char *p = tmp + 1; ; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(tmp, mode) < 0 && errno != EEXIST)
			return mg_err_from_errno(errno);
		if (stat(tmp, &st) < 0 || !S_ISDIR(st.st_mode)) {
			errno = ENOTDIR;
			return MG_EIO;
		}
		*p = c;
		if (c == '\0')
			break;
	}
	return MG_OK;
}

enum mg_err
mg_path(char *buf, size_t len, const char *fmt, ...)
{
	va_list	ap;
	int	n;

	va_start(ap, fmt);
	n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= len) {
		errno = ENAMETOOLONG;
		return MG_ELIMIT;
	}
	return MG_OK;
}
