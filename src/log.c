/*
 * log.c - event logging to syslog or stderr.
 *
 * Each call writes exactly one line.  On stderr the line reads
 * "mgate/queue: warning: TEXT"; in syslog the ident carries the program
 * name and the priority carries the level.  Nothing here knows about mail.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "mgate/log.h"

static const char	*log_ident = "mgate";
static enum mg_log_dest	 log_dest = MG_LOG_STDERR;
static int		 log_verbose;

void
mg_log_init(const char *ident, enum mg_log_dest dest)
{
	log_ident = ident;
	mg_log_set_dest(dest);
}

void
mg_log_set_dest(enum mg_log_dest dest)
{
	log_dest = dest;
	if (dest == MG_LOG_SYSLOG)
		openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
mg_log_set_verbose(int v)
{
	log_verbose = v;
}

static void
log_emit(int pri, const char *tag, int err, const char *fmt, va_list ap)
{
	char	 line[2048];
	size_t	 n;
	int	 r;

	if (log_dest == MG_LOG_NONE)
		return;
	r = vsnprintf(line, sizeof(line), fmt, ap);
	n = r < 0 ? 0 : (size_t)r >= sizeof(line) ? sizeof(line) - 1 : (size_t)r;
	if (err)
		snprintf(line + n, sizeof(line) - n, ": %s", strerror(err));
	/* One event, one line: never let data split a log line. */
	for (char *p = line; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	if (log_dest == MG_LOG_SYSLOG)
		syslog(pri, "%s%s", tag, line);
	else
		fprintf(stderr, "%s: %s%s\n", log_ident, tag, line);
}

#define LOG_FN(name, pri, tag, witherr, gate)			\
void								\
name(const char *fmt, ...)					\
{								\
	va_list	ap;						\
	int	saved = errno;					\
	if (!(gate))						\
		return;						\
	va_start(ap, fmt);					\
	log_emit(pri, tag, witherr ? saved : 0, fmt, ap);	\
	va_end(ap);						\
	errno = saved;						\
}

LOG_FN(mg_info, LOG_INFO, "", 0, 1)
LOG_FN(mg_debug, LOG_DEBUG, "debug: ", 0, log_verbose)
LOG_FN(mg_warn, LOG_WARNING, "warning: ", 0, 1)
LOG_FN(mg_warn_errno, LOG_WARNING, "warning: ", 1, 1)
LOG_FN(mg_error, LOG_ERR, "error: ", 0, 1)
LOG_FN(mg_error_errno, LOG_ERR, "error: ", 1, 1)
