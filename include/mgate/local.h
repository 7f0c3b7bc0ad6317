/*
 * local.h - deliver a message to a local user's mailbox.
 *
 * Maildir (tmp/, fsync, rename into new/, fsync the directory), mbox
 * (locked append with >From quoting, fsync) or an MDA run with execv
 * and the message on its standard input (never a shell).  Writes are
 * streamed: open, write pieces, commit.
 */
#ifndef MGATE_LOCAL_H
#define MGATE_LOCAL_H

#include <stddef.h>

#include "mgate/config.h"
#include "mgate/err.h"

struct local_dest;

/* user: the login whose mailbox it is; sender for mbox's From_ line. */
enum mg_err local_open(const struct mg_config *, const char *user,
	    const char *sender, struct local_dest **, char *errbuf,
	    size_t errlen);
enum mg_err local_write(struct local_dest *, const void *, size_t);
/* Durable on MG_OK; frees the destination either way. */
enum mg_err local_commit(struct local_dest *, char *errbuf, size_t errlen);
void	local_abort(struct local_dest *);

#endif
