/*
 * fsutil.h - file-system helpers with the durability discipline.
 *
 * Durable means: data written, the file fsync'd, renamed into place,
 * and the directory fsync'd.  These helpers return enum mg_err with
 * errno left set so callers can log strerror(errno).
 */
#ifndef MGATE_FSUTIL_H
#define MGATE_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

#include "mgate/err.h"

enum mg_err mg_write_all(int fd, const void *, size_t);
enum mg_err mg_fsync_dir(const char *dir);
/* mkdir -p with mode for each created component. */
enum mg_err mg_mkdirs(const char *path, mode_t mode);
/* snprintf into buf; MG_ELIMIT if it does not fit. */
enum mg_err mg_path(char *buf, size_t len, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));

#endif
