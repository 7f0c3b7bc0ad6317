/*
 * result.h - the outcome of a delivery attempt, as data.
 *
 * One struct flows from the SMTP client to the scheduler, the status
 * records for the site, the DSN writer and the log: class, the reply
 * code, the RFC 3463 status, the host that said it and its words.
 */
#ifndef MGATE_RESULT_H
#define MGATE_RESULT_H

enum mg_rclass { MG_R_NONE, MG_R_OK, MG_R_TEMP, MG_R_PERM };

struct mg_result {
	enum mg_rclass	cls;
	int		code;		/* SMTP reply code, 0 if none */
	char		status[16];	/* RFC 3463 "5.1.1" */
	char		remote[300];	/* "mx.example.net[192.0.2.1]" or "" */
	char		text[512];	/* one line, printable */
	/*
	 * 2xx from a server that offered the DSN extension, so NOTIFY went
	 * on with the message and success reports are its job now
	 * (RFC 3461 6.2); mg_result_set clears it.
	 */
	int		next_hop_dsn;
};

void	mg_result_set(struct mg_result *, enum mg_rclass, int code,
	    const char *status, const char *remote, const char *fmt, ...)
	    __attribute__((format(printf, 6, 7)));

#endif
