/*
 * err.c - names and exit codes for enum mg_err.
 *
 * The one table that maps error classes to sysexits(3) codes lives here,
 * so every command exits the same way for the same failure.
 */
#include <errno.h>
#include <stddef.h>
#include <sysexits.h>

#include "mgate/err.h"

static const struct {
	const char	*text;
	int		 exit;
	int		 temp;
} err_tab[] = {
	[MG_OK] =	 { "success",			EX_OK,		0 },
	[MG_ENOMEM] =	 { "out of memory",		EX_TEMPFAIL,	1 },
	[MG_EIO] =	 { "I/O error",			EX_TEMPFAIL,	1 },
	[MG_ENOSPC] =	 { "no space left on device",	EX_TEMPFAIL,	1 },
	[MG_ETEMP] =	 { "temporary failure",		EX_TEMPFAIL,	1 },
	[MG_ECONFIG] =	 { "configuration error",	EX_CONFIG,	0 },
	[MG_EUSAGE] =	 { "usage error",		EX_USAGE,	0 },
	[MG_EDATA] =	 { "malformed input",		EX_DATAERR,	0 },
	[MG_ELIMIT] =	 { "limit exceeded",		EX_DATAERR,	0 },
	[MG_ENOTFOUND] = { "not found",			EX_NOINPUT,	0 },
	[MG_EEXIST] =	 { "already exists",		EX_CANTCREAT,	0 },
	[MG_EPROTO] =	 { "protocol error",		EX_PROTOCOL,	1 },
	[MG_EAUTH] =	 { "authentication failed",	EX_NOPERM,	0 },
	[MG_ENOPERM] =	 { "permission denied",		EX_NOPERM,	0 },
	[MG_ESOFTWARE] = { "internal software error",	EX_SOFTWARE,	0 },
	[MG_ECORRUPT] =	 { "stored data is corrupt",	EX_SOFTWARE,	0 },
	[MG_EUNAVAIL] =	 { "service unavailable",	EX_UNAVAILABLE,	1 },
};

#define NERR	(sizeof(err_tab) / sizeof(err_tab[0]))

const char *
mg_strerror(enum mg_err e)
{
	if ((unsigned)e >= NERR || err_tab[e].text == NULL)
		return "unknown error";
	return err_tab[e].text;
}

int
mg_err_exit(enum mg_err e)
{
	if ((unsigned)e >= NERR)
		return EX_SOFTWARE;
	return err_tab[e].exit;
}

int
mg_err_is_temp(enum mg_err e)
{
	return (unsigned)e < NERR && err_tab[e].temp;
}

enum mg_err
mg_err_from_errno(int e)
{
	switch (e) {
	case 0:
		return MG_OK;
	case ENOMEM:
		return MG_ENOMEM;
	case ENOSPC:
	case EDQUOT:
		return MG_ENOSPC;
	case ENOENT:
		return MG_ENOTFOUND;
	case EEXIST:
		return MG_EEXIST;
	case EACCES:
	case EPERM:
		return MG_ENOPERM;
	case EAGAIN:
	case EINTR:
	case ETIMEDOUT:
		return MG_ETEMP;
	default:
		return MG_EIO;
	}
}
