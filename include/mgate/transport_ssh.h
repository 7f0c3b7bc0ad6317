/*
 * transport_ssh.h - a byte stream to a command on a peer, over SSH.
 *
 * libssh2 as the client: TCP connect with a deadline, the host key
 * checked against known_hosts (only an exact match of the key stored
 * for "host" or "[host]:port" proceeds), public-key login, and one exec
 * channel whose stdin/stdout become an mg_stream.  Every failure is
 * temporary for mail (the link, not the message) and the message says
 * what failed and what to do.
 */
#ifndef MGATE_TRANSPORT_SSH_H
#define MGATE_TRANSPORT_SSH_H

#include <stddef.h>

#include "mgate/err.h"

struct mg_stream;
struct ssh_conn;

struct ssh_params {
	const char	*host;
	unsigned	 port;		/* 0: 22 */
	const char	*user;
	const char	*identity_file;	/* private key; .pub beside it */
	const char	*known_hosts;
	const char	*command;	/* what to exec on the peer */
	int		 connect_timeout_ms;
	int		 io_timeout_ms;
};

/*
 * Connect, verify, log in and start the command.  MG_EAUTH for a host
 * key or login refusal, MG_ETEMP for everything the link did.
 */
enum mg_err ssh_connect(const struct ssh_params *, struct ssh_conn **,
	    char *errbuf, size_t errlen);
/* The channel as a stream; owned by the connection. */
struct mg_stream *ssh_stream(struct ssh_conn *);
/* Signal EOF to the remote command (it sees end of its stdin). */
void	ssh_send_eof(struct ssh_conn *);
/* What the remote command wrote to its stderr, so far (one line). */
const char *ssh_remote_stderr(struct ssh_conn *);
/* Remote exit status, or -1 if unknown yet. */
int	ssh_exit_status(struct ssh_conn *);
void	ssh_close(struct ssh_conn *);
/* Bytes moved over the TCP connection, both ways. */
void	ssh_wire_bytes(struct ssh_conn *, unsigned long long *out,
	    unsigned long long *in);

#endif
