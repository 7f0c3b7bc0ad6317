/*
 * log.h - one line per event, to syslog or stderr.
 *
 * Lines about a message start with its queue ID, Postfix style:
 *   mg_info("%s: from=<%s>, size=%zu, nrcpt=%zu", qid, ...);
 * mg_warn_errno() and mg_err_errno() append ": strerror(errno)".
 */
#ifndef MGATE_LOG_H
#define MGATE_LOG_H

#include <stdarg.h>

enum mg_log_dest { MG_LOG_STDERR, MG_LOG_SYSLOG, MG_LOG_NONE };

void	mg_log_init(const char *ident, enum mg_log_dest);
void	mg_log_set_dest(enum mg_log_dest);
void	mg_log_set_verbose(int);
void	mg_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	mg_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	mg_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	mg_warn_errno(const char *, ...) __attribute__((format(printf, 1, 2)));
void	mg_error(const char *, ...) __attribute__((format(printf, 1, 2)));
void	mg_error_errno(const char *, ...) __attribute__((format(printf, 1, 2)));

#endif
