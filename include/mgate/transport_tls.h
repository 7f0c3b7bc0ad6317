/*
 * transport_tls.h - TLS (OpenSSL 3) under the stream interface.
 *
 * A client handshake on a connected socket gives a new mg_stream; any
 * bytes buffered on the plaintext stream before it are simply never
 * read again (the caller closes that stream), so nothing a peer sent
 * before the handshake can be taken as sent under TLS.
 */
#ifndef MGATE_TRANSPORT_TLS_H
#define MGATE_TRANSPORT_TLS_H

#include <stddef.h>

#include "mgate/err.h"

struct mg_stream;

struct tls_client_params {
	const char	*servername;	/* SNI and, with verify, the name */
	int		 verify;	/* chain + host name */
	const char	*cafile;	/* NULL: the system's store */
	int		 timeout_ms;
	char		*info;		/* out: "TLSv1.3 CIPHER", or NULL */
	size_t		 infolen;
	const char	*pin_sha256;	/* hex SHA-256 of the certificate */
};

/*
 * TLS 1.2 or newer on fd (not owned: the caller closes it after the
 * stream).  MG_EAUTH when verification failed, MG_ETEMP otherwise.
 */
enum mg_err tls_client(int fd, const struct tls_client_params *,
	    struct mg_stream **, char *errbuf, size_t errlen);

/* The server side: one context (certificate and key) for all sessions. */
struct tls_server_ctx;

enum mg_err tls_server_ctx_new(const char *cert, const char *key,
	    struct tls_server_ctx **, char *errbuf, size_t errlen);
void	tls_server_ctx_free(struct tls_server_ctx *);
enum mg_err tls_server(int fd, struct tls_server_ctx *, int timeout_ms,
	    struct mg_stream **, char *info, size_t infolen, char *errbuf,
	    size_t errlen);

#endif
