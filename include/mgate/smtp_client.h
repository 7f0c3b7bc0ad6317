/*
 * smtp_client.h - deliver messages to one SMTP server.
 *
 * A session: connect, greeting, EHLO (HELO if refused), STARTTLS as the
 * policy says, then any number of transactions (connection reuse), each
 * with a result per recipient.  Replies are parsed by smtp_reply_read,
 * which bounds line length and line count.
 */
#ifndef MGATE_SMTP_CLIENT_H
#define MGATE_SMTP_CLIENT_H

#include <stddef.h>
#include <sys/socket.h>

#include "mgate/envelope.h"
#include "mgate/err.h"
#include "mgate/result.h"

struct mg_stream;

enum tls_policy { TLS_POLICY_NONE, TLS_POLICY_MAY, TLS_POLICY_ENCRYPT,
	TLS_POLICY_VERIFY };

int	tls_policy_parse(const char *);
const char *tls_policy_name(int);

#define SMTP_EXT_PIPELINING	0x01
#define SMTP_EXT_SIZE		0x02
#define SMTP_EXT_8BITMIME	0x04
#define SMTP_EXT_SMTPUTF8	0x08
#define SMTP_EXT_DSN		0x10
#define SMTP_EXT_STARTTLS	0x20
#define SMTP_EXT_ENHANCED	0x40

struct smtp_params {
	const char	*helo;		/* our name */
	int		 tls_policy;	/* enum tls_policy */
	const char	*cafile;
	int		 connect_timeout_ms;
	int		 command_timeout_ms;	/* RFC 5321 4.5.3.2: 5 min */
	int		 data_timeout_ms;	/* final dot: 10 min */
	int		 implicit_tls;	/* TLS from the first byte (port 465) */
	const char	*auth_user;	/* AUTH PLAIN after TLS, if set */
	const char	*auth_pass;
	/*
	 * Called just before the final dot of a message goes out: from
	 * then on the server may have the mail, whatever happens to us.
	 */
	void		(*before_dot)(void *);
	void		*before_dot_arg;
};

struct smtp_session;

/*
 * Connect to addr (a host of name mxname) and get to the point where a
 * transaction can start.  On failure r says why (class TEMP or PERM for
 * this host; callers try the next host either way).
 */
enum mg_err smtp_open(const struct smtp_params *, const char *mxname,
	    const struct sockaddr *, socklen_t, struct smtp_session **,
	    struct mg_result *r);
int	smtp_usable(const struct smtp_session *);
const char *smtp_remote(const struct smtp_session *);
const char *smtp_tls_info(const struct smtp_session *);

/*
 * One transaction: MAIL FROM, RCPT TO for rcpts[0..n), DATA with the
 * content from body_fd's maildrop file (path), with `prepend' (already
 * CRLF-terminated header lines) before it.  res[i] receives each
 * recipient's outcome.  Returns MG_OK if the session may be reused.
 */
enum mg_err smtp_send(struct smtp_session *, const struct mg_envelope *,
	    const size_t *rcpts, size_t n, const char *body_path,
	    const char *prepend, struct mg_result *res);
void	smtp_close(struct smtp_session *);	/* QUIT, then close */

/*
 * Read one reply (all its lines) with at most 1000 bytes a line and 100
 * lines.  *code gets the 3-digit code, text the last line's text with
 * the enhanced status, if any, in status.  MG_EPROTO if malformed.
 */
enum mg_err smtp_reply_read(struct mg_stream *, int *code, char *text,
	    size_t textlen, char *status, size_t statuslen, unsigned *ext);

#endif
