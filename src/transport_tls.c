/*
 * transport_tls.c - OpenSSL 3 behind struct mg_stream.
 *
 * The socket is non-blocking underneath and every SSL call that wants
 * I/O waits with poll(2) for at most the stream's timeout, so a peer
 * that stops mid-record costs a deadline, not a hang.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "mgate/stream.h"
#include "mgate/transport_tls.h"

struct tls_ctx {
	int	 fd;
	SSL_CTX	*ctx;
	SSL	*ssl;
};

static int
tls_wait(struct tls_ctx *t, int ret, int timeout_ms)
{
	struct pollfd	pfd = { .fd = t->fd };
	int		err = SSL_get_error(t->ssl, ret), r;

	if (err == SSL_ERROR_WANT_READ)
		pfd.events = POLLIN;
	else if (err == SSL_ERROR_WANT_WRITE)
		pfd.events = POLLOUT;
	else
		return -1;
	do
		r = poll(&pfd, 1, timeout_ms < 0 ? -1 : timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		errno = ETIMEDOUT;
	return r > 0 ? 0 : -1;
}

static ssize_t
tls_read(void *vctx, void *p, size_t n, int timeout_ms, enum mg_err *err)
{
	struct tls_ctx	*t = vctx;
	size_t		 got = 0;
	int		 r;

	for (;;) {
		ERR_clear_error();
		if ((r = SSL_read_ex(t->ssl, p, n, &got)) == 1)
			return (ssize_t)got;
		if (SSL_get_error(t->ssl, r) == SSL_ERROR_ZERO_RETURN)
			return 0;
		if (tls_wait(t, r, timeout_ms) < 0) {
			*err = MG_ETEMP;
			return -1;
		}
	}
}

static ssize_t
tls_write(void *vctx, const void *p, size_t n, int timeout_ms,
    enum mg_err *err)
{
	struct tls_ctx	*t = vctx;
	size_t		 put = 0;
	int		 r;

	for (;;) {
		ERR_clear_error();
		if ((r = SSL_write_ex(t->ssl, p, n, &put)) == 1)
			return (ssize_t)put;
		if (tls_wait(t, r, timeout_ms) < 0) {
			*err = MG_ETEMP;
			return -1;
		}
	}
}

static void
tls_close(void *vctx)
{
	struct tls_ctx *t = vctx;

	if (t->ssl) {
		SSL_shutdown(t->ssl);
		SSL_free(t->ssl);
	}
	SSL_CTX_free(t->ctx);
	free(t);
}

static const struct mg_stream_ops tls_ops = { tls_read, tls_write,
	tls_close };

enum mg_err
tls_client(int fd, const struct tls_client_params *p,
    struct mg_stream **out, char *errbuf, size_t errlen)
{
	struct tls_ctx	*t;
	long		 vr;
	int		 r;

	*out = NULL;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return MG_ENOMEM;
	t->fd = fd;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	if ((t->ctx = SSL_CTX_new(TLS_client_method())) == NULL ||
	    !SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION))
		goto ssl_fail;
	if (p->verify) {
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
		if ((p->cafile ? SSL_CTX_load_verify_locations(t->ctx,
		    p->cafile, NULL) : SSL_CTX_set_default_verify_paths(
		    t->ctx)) != 1) {
			snprintf(errbuf, errlen, "cannot load CA certificates"
			    " from %s", p->cafile ? p->cafile : "the system");
			tls_close(t);
			return MG_ECONFIG;
		}
	} else
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_NONE, NULL);
	if ((t->ssl = SSL_new(t->ctx)) == NULL || !SSL_set_fd(t->ssl, fd))
		goto ssl_fail;
	if (p->servername && p->servername[0] != '[') {
		SSL_set_tlsext_host_name(t->ssl, p->servername);
		if (p->verify && !SSL_set1_host(t->ssl, p->servername))
			goto ssl_fail;
	}
	for (;;) {
		ERR_clear_error();
		if ((r = SSL_connect(t->ssl)) == 1)
			break;
		if (tls_wait(t, r, p->timeout_ms) < 0) {
			vr = SSL_get_verify_result(t->ssl);
			if (p->verify && vr != X509_V_OK) {
				snprintf(errbuf, errlen, "TLS certificate of %s "
				    "not trusted: %s", p->servername,
				    X509_verify_cert_error_string(vr));
				tls_close(t);
				return MG_EAUTH;
			}
			snprintf(errbuf, errlen, "TLS handshake with %s "
			    "failed: %s", p->servername, errno == ETIMEDOUT ?
			    "timeout" : ERR_reason_error_string(
			    ERR_peek_last_error()) ? ERR_reason_error_string(
			    ERR_peek_last_error()) : "connection closed");
			tls_close(t);
			return MG_ETEMP;
		}
	}
	if (p->info)
		snprintf(p->info, p->infolen, "%s %s",
		    SSL_get_version(t->ssl), SSL_get_cipher_name(t->ssl));
	if ((*out = mg_stream_new(&tls_ops, t)) == NULL) {
		tls_close(t);
		return MG_ENOMEM;
	}
	mg_stream_set_timeout(*out, p->timeout_ms);
	return MG_OK;
ssl_fail:
	snprintf(errbuf, errlen, "TLS setup failed: %s",
	    ERR_reason_error_string(ERR_peek_last_error()) ?
	    ERR_reason_error_string(ERR_peek_last_error()) : "unknown");
	tls_close(t);
	return MG_ETEMP;
}
