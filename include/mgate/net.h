/*
 * net.h - TCP connections with a deadline.
 *
 * Every transport (SSH, SMTP delivery, sync over SMTP) connects the
 * same way: non-blocking connect, poll for at most the timeout, then a
 * blocking socket with TCP_NODELAY.
 */
#ifndef MGATE_NET_H
#define MGATE_NET_H

#include <stddef.h>
#include <sys/socket.h>

/* Connect to one address; -1 with errno set (ETIMEDOUT on timeout). */
int	net_connect_addr(const struct sockaddr *, socklen_t, int timeout_ms);
/* Resolve host and try each address; -1 with errbuf saying why. */
int	net_connect(const char *host, unsigned port, int timeout_ms,
	    char *errbuf, size_t errlen);

#endif
