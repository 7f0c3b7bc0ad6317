/*
 * err.h - mgate's one error code space.
 *
 * Library code returns an enum mg_err; only a command's main() turns it
 * into a sysexits(3) exit status, through mg_err_exit().  The codes say
 * what class of failure happened (temporary, permanent, configuration),
 * not where: the message logged next to it says where.
 */
#ifndef MGATE_ERR_H
#define MGATE_ERR_H

enum mg_err {
	MG_OK = 0,
	MG_ENOMEM,	/* out of memory: temporary */
	MG_EIO,		/* read/write/fsync failed: temporary */
	MG_ENOSPC,	/* disk full: temporary */
	MG_ETEMP,	/* other temporary failure (lock, deadlock, link) */
	MG_ECONFIG,	/* configuration is wrong */
	MG_EUSAGE,	/* command line is wrong */
	MG_EDATA,	/* input data is malformed */
	MG_ELIMIT,	/* input exceeds a configured limit */
	MG_ENOTFOUND,	/* no such object (queue ID, peer, file) */
	MG_EEXIST,	/* object already exists (duplicate ID) */
	MG_EPROTO,	/* peer violated the protocol */
	MG_EAUTH,	/* authentication or signature failed */
	MG_ENOPERM,	/* permission denied / unsafe permissions */
	MG_ESOFTWARE,	/* internal error: a bug */
	MG_ECORRUPT,	/* stored data is corrupt */
	MG_EUNAVAIL,	/* a needed service or file is missing */
};

const char *mg_strerror(enum mg_err);
int	mg_err_exit(enum mg_err);	/* sysexits.h code for a command */
int	mg_err_is_temp(enum mg_err);	/* 1 if retrying later may help */
enum mg_err mg_err_from_errno(int);	/* ENOSPC->MG_ENOSPC, ... */

#endif
