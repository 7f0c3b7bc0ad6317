/*
 * submit.h - accept one message from a local program into the maildrop.
 *
 * This is the whole of `mgate queue' minus argument parsing: read the
 * message from a file descriptor as a stream, find recipients, add the
 * headers a careful MTA adds, and commit one maildrop file.  It returns
 * MG_OK only after the file is durable.  It never opens the database.
 */
#ifndef MGATE_SUBMIT_H
#define MGATE_SUBMIT_H

#include <stddef.h>
#include <sys/types.h>

#include "mgate/config.h"
#include "mgate/err.h"
#include "mgate/qid.h"

struct submit_opts {
	const char	 *sender;	/* -f, NULL: user@mydomain */
	const char	 *fullname;	/* -F, for an added From: */
	int		  extract;	/* -t: recipients from headers */
	int		  ignore_dots;	/* -i / -oi */
	unsigned	  notify;	/* -N, MG_NOTIFY_* bits */
	int		  ret;		/* -R, enum mg_ret */
	const char	 *envid;	/* -V */
	int		  body;		/* -B, enum mg_body */
	char		**rcpts;	/* command-line recipients */
	size_t		  nrcpts;
	const char	 *user;		/* login of the submitter */
	uid_t		  uid;
};

/*
 * On success *qid names the queued message.  On failure errbuf holds
 * one line saying what was wrong and what to do, and nothing is left in
 * the spool.
 */
enum mg_err submit_message(const struct mg_config *,
	    const struct submit_opts *, int fd, char qid[MG_QID_LEN + 1],
	    char *errbuf, size_t errlen);

#endif
