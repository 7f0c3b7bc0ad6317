/*
 * transport_smtp.c - reach the gateway's sync protocol through SMTP.
 *
 * TLS is not optional here: the password and the bundles go only over a
 * verified TLS session, and anything the server said before the
 * handshake is dropped with the plaintext stream.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "mgate/net.h"
#include "mgate/smtp_client.h"
#include "mgate/stream.h"
#include "mgate/transport_smtp.h"
#include "mgate/transport_tls.h"

struct smtp_sync_conn {
	int			 fd;
	struct mg_stream	*s;
};


static enum mg_err
expect(struct mg_stream *s, int want, const char *what, char *err,
    size_t errlen)
{
	char	text[512], st[16];
	int	code = 0;

	if (smtp_reply_read(s, &code, text, sizeof(text), st, sizeof(st),
	    NULL) != MG_OK) {
		snprintf(err, errlen, "lost the connection waiting for the "
		    "reply to %s", what);
		return MG_ETEMP;
	}
	if (code != want) {
		snprintf(err, errlen, "gateway refused %s: %d %s", what, code,
		    text);
		return code == 535 ? MG_EAUTH : MG_ETEMP;
	}
	return MG_OK;
}

static enum mg_err
read_password(const char *path, char *pw, size_t len, char *err,
    size_t errlen)
{
	struct stat	st;
	FILE		*fp;

	if (path == NULL) {
		snprintf(err, errlen, "transport smtp needs password_file in "
		    "the peer's section");
		return MG_ECONFIG;
	}
	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return MG_ECONFIG;
	}
	if (fstat(fileno(fp), &st) == 0 && (st.st_mode & 077)) {
		fclose(fp);
		snprintf(err, errlen, "%s: readable by others; chmod 600 it",
		    path);
		return MG_ENOPERM;
	}
	if (fgets(pw, (int)len, fp) == NULL)
		pw[0] = '\0';
	fclose(fp);
	pw[strcspn(pw, "\r\n")] = '\0';
	if (pw[0] == '\0') {
		snprintf(err, errlen, "%s: empty password file", path);
		return MG_ECONFIG;
	}
	return MG_OK;
}

enum mg_err
smtp_sync_connect(const struct mg_peer *p, const char *login,
    struct smtp_sync_conn **out, char *err, size_t errlen)
{
	struct smtp_sync_conn		*c;
	struct tls_client_params	 tp;
	struct mg_stream		*ts = NULL;
	char				 pw[512], plain[1100];
	unsigned char			 b64[1600];
	const char			*user;
	size_t				 n;
	int				 tmo = (int)p->io_timeout * 1000;
	enum mg_err			 e;

	*out = NULL;
	if ((e = read_password(p->password_file, pw, sizeof(pw), err,
	    errlen)) != MG_OK)
		return e;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return MG_ENOMEM;
	c->fd = -1;
	if ((c->fd = net_connect(p->host, p->port ? (unsigned)p->port : 587,
	    (int)p->connect_timeout * 1000, err, errlen)) < 0) {
		e = MG_ETEMP;
		goto fail;
	}
	if ((c->s = mg_stream_fd(c->fd, 0)) == NULL) {
		e = MG_ENOMEM;
		goto fail;
	}
	mg_stream_set_timeout(c->s, tmo);
	if ((e = expect(c->s, 220, "the connection", err, errlen)))
		goto fail;
	mg_stream_printf(c->s, "EHLO %s\r\n", login);
	mg_stream_flush(c->s);
	{
		char		text[512], st[16];
		unsigned	ext = 0;
		int		code = 0;

		if (smtp_reply_read(c->s, &code, text, sizeof(text), st,
		    sizeof(st), &ext) != MG_OK || code != 250) {
			snprintf(err, errlen, "gateway refused EHLO");
			e = MG_ETEMP;
			goto fail;
		}
		if (!(ext & SMTP_EXT_STARTTLS)) {
			snprintf(err, errlen, "gateway %s offers no STARTTLS; "
			    "nothing sent", p->host);
			e = MG_EAUTH;
			goto fail;
		}
	}
	mg_stream_printf(c->s, "STARTTLS\r\n");
	mg_stream_flush(c->s);
	if ((e = expect(c->s, 220, "STARTTLS", err, errlen)))
		goto fail;
	mg_stream_close(c->s);		/* nothing said in clear survives */
	c->s = NULL;
	memset(&tp, 0, sizeof(tp));
	tp.servername = p->host;
	tp.verify = p->tls_fingerprint == NULL;
	tp.cafile = p->tls_ca_file;
	tp.pin_sha256 = p->tls_fingerprint;
	tp.timeout_ms = tmo;
	if ((e = tls_client(c->fd, &tp, &ts, err, errlen)) != MG_OK)
		goto fail;
	c->s = ts;
	mg_stream_printf(c->s, "EHLO %s\r\n", login);
	mg_stream_flush(c->s);
	if ((e = expect(c->s, 250, "EHLO", err, errlen)))
		goto fail;
	user = p->user && strcmp(p->user, "mgate") ? p->user : login;
	n = (size_t)snprintf(plain, sizeof(plain), "%c%s%c%s", 0, user, 0, pw);
	EVP_EncodeBlock(b64, (unsigned char *)plain, (int)n);
	explicit_bzero(plain, sizeof(plain));
	explicit_bzero(pw, sizeof(pw));
	mg_stream_printf(c->s, "AUTH PLAIN %s\r\n", b64);
	explicit_bzero(b64, sizeof(b64));
	mg_stream_flush(c->s);
	if ((e = expect(c->s, 235, "the login", err, errlen)))
		goto fail;
	mg_stream_printf(c->s, "X-MGATE-SYNC\r\n");
	mg_stream_flush(c->s);
	if ((e = expect(c->s, 220, "X-MGATE-SYNC", err, errlen)))
		goto fail;
	*out = c;
	return MG_OK;
fail:
	smtp_sync_close(c);
	return e;
}

struct mg_stream *
smtp_sync_stream(struct smtp_sync_conn *c)
{
	return c->s;
}

void
smtp_sync_wire_bytes(struct smtp_sync_conn *c, unsigned long long *out,
    unsigned long long *in)
{
	(void)c;
	*out = *in = 0;		/* not counted on this transport yet */
}

void
smtp_sync_close(struct smtp_sync_conn *c)
{
	if (c == NULL)
		return;
	mg_stream_close(c->s);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}
