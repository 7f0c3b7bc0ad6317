/*
 * transport_tls.c - OpenSSL 3 behind struct mg_stream.
 *
 * The socket is non-blocking underneath and every SSL call that wants
 * I/O waits with poll(2) for at most the stream's timeout, so a peer
 * that stops mid-record costs a deadline, not a hang.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
		struct in6_addr	a6;
		struct in_addr	a4;

		if (inet_pton(AF_INET, p->servername, &a4) == 1 ||
		    inet_pton(AF_INET6, p->servername, &a6) == 1) {
			/* An address: check the certificate's IP names. */
			if (p->verify && !X509_VERIFY_PARAM_set1_ip_asc(
			    SSL_get0_param(t->ssl), p->servername))
				goto ssl_fail;
		} else {
			SSL_set_tlsext_host_name(t->ssl, p->servername);
			if (p->verify && !SSL_set1_host(t->ssl,
			    p->servername))
				goto ssl_fail;
		}
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
	if (p->pin_sha256 && p->pin_sha256[0]) {
		X509		*crt = SSL_get1_peer_certificate(t->ssl);
		unsigned char	 md[EVP_MAX_MD_SIZE];
		unsigned int	 mdlen = 0;
		char		 hex[2 * EVP_MAX_MD_SIZE + 1];

		hex[0] = '\0';
		if (crt && X509_digest(crt, EVP_sha256(), md, &mdlen))
			for (unsigned i = 0; i < mdlen; i++)
				snprintf(hex + 2 * i, 3, "%02x", md[i]);
		X509_free(crt);
		if (strcasecmp(hex, p->pin_sha256) != 0) {
			snprintf(errbuf, errlen, "TLS certificate of %s does "
			    "not match the pinned fingerprint (got %s)",
			    p->servername, hex[0] ? hex : "none");
			tls_close(t);
			return MG_EAUTH;
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

struct tls_server_ctx {
	SSL_CTX	*ctx;
};

enum mg_err
tls_server_ctx_new(const char *cert, const char *key,
    struct tls_server_ctx **out, char *errbuf, size_t errlen)
{
	struct tls_server_ctx *c;

	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return MG_ENOMEM;
	if ((c->ctx = SSL_CTX_new(TLS_server_method())) == NULL ||
	    !SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION) ||
	    SSL_CTX_use_certificate_chain_file(c->ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(c->ctx) != 1) {
		snprintf(errbuf, errlen, "TLS certificate %s or key %s: %s",
		    cert, key, ERR_reason_error_string(ERR_peek_last_error())
		    ? ERR_reason_error_string(ERR_peek_last_error()) :
		    "unusable");
		tls_server_ctx_free(c);
		return MG_ECONFIG;
	}
	*out = c;
	return MG_OK;
}

void
tls_server_ctx_free(struct tls_server_ctx *c)
{
	if (c == NULL)
		return;
	SSL_CTX_free(c->ctx);
	free(c);
}

enum mg_err
tls_server(int fd, struct tls_server_ctx *sc, int timeout_ms,
    struct mg_stream **out, char *info, size_t infolen, char *errbuf,
    size_t errlen)
{
	struct tls_ctx	*t;
	int		 r;

	*out = NULL;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return MG_ENOMEM;
	t->fd = fd;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	/* The stream owns a reference of its own to the shared context. */
	SSL_CTX_up_ref(sc->ctx);
	t->ctx = sc->ctx;
	if ((t->ssl = SSL_new(t->ctx)) == NULL || !SSL_set_fd(t->ssl, fd)) {
		snprintf(errbuf, errlen, "TLS setup failed");
		tls_close(t);
		return MG_ETEMP;
	}
	for (;;) {
		ERR_clear_error();
		if ((r = SSL_accept(t->ssl)) == 1)
			break;
		if (tls_wait(t, r, timeout_ms) < 0) {
			snprintf(errbuf, errlen, "TLS handshake failed: %s",
			    ERR_reason_error_string(ERR_peek_last_error()) ?
			    ERR_reason_error_string(ERR_peek_last_error()) :
			    "connection closed");
			tls_close(t);
			return MG_ETEMP;
		}
	}
	if (info)
		snprintf(info, infolen, "%s %s", SSL_get_version(t->ssl),
		    SSL_get_cipher_name(t->ssl));
	if ((*out = mg_stream_new(&tls_ops, t)) == NULL) {
		tls_close(t);
		return MG_ENOMEM;
	}
	mg_stream_set_timeout(*out, timeout_ms);
	return MG_OK;
}
