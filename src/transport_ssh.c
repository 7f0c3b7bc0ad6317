/*
 * transport_ssh.c - the SSH transport (libssh2 1.10).
 *
 * Host keys: libssh2 negotiates the first host-key type in its own
 * preference list, which may not be the one known_hosts holds; then a
 * check says "not found" instead of "mismatch".  So the preference is
 * set, before the handshake, to exactly the types stored for this host.
 * The lookup name is "host" for port 22 and "[host]:port" otherwise, as
 * OpenSSH writes them; libssh2 would also accept a bare "host" entry for
 * another port, which we do not.
 *
 * The session runs in blocking mode with libssh2's timeout, so every
 * read and write has a deadline; keepalives make a dead link show.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libssh2.h>
#include <openssl/evp.h>

#include "mgate/log.h"
#include "mgate/net.h"
#include "mgate/stream.h"
#include "mgate/transport_ssh.h"

struct ssh_conn {
	int			 sock;
	LIBSSH2_SESSION		*session;
	LIBSSH2_CHANNEL		*channel;
	struct mg_stream	*stream;
	int			 io_timeout_ms;
	char			 stderr_buf[1024];
	size_t			 stderr_len;
	unsigned long long	 wire_out, wire_in;
};

static int ssh_lib_ready;

static enum mg_err __attribute__((format(printf, 4, 5)))
serr(char *buf, size_t len, enum mg_err e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	return e;
}

/* Count bytes on the wire through libssh2's send/recv callbacks. */
static ssize_t
cb_send(libssh2_socket_t fd, const void *p, size_t n, int flags,
    void **abstract)
{
	struct ssh_conn	*c = *abstract;
	ssize_t		 r = send(fd, p, n, flags | MSG_NOSIGNAL);

	if (r > 0)
		c->wire_out += (unsigned long long)r;
	return r < 0 ? -errno : r;
}

static ssize_t
cb_recv(libssh2_socket_t fd, void *p, size_t n, int flags,
    void **abstract)
{
	struct ssh_conn	*c = *abstract;
	ssize_t		 r = recv(fd, p, n, flags);

	if (r > 0)
		c->wire_in += (unsigned long long)r;
	return r < 0 ? -errno : r;
}


static const char *
kh_type_method(int typemask)
{
	switch (typemask & LIBSSH2_KNOWNHOST_KEY_MASK) {
	case LIBSSH2_KNOWNHOST_KEY_ED25519: return "ssh-ed25519";
	case LIBSSH2_KNOWNHOST_KEY_ECDSA_256: return "ecdsa-sha2-nistp256";
	case LIBSSH2_KNOWNHOST_KEY_ECDSA_384: return "ecdsa-sha2-nistp384";
	case LIBSSH2_KNOWNHOST_KEY_ECDSA_521: return "ecdsa-sha2-nistp521";
	case LIBSSH2_KNOWNHOST_KEY_SSHRSA: return "ssh-rsa";
	default: return NULL;
	}
}

static int
hostkey_kh_type(int type)
{
	switch (type) {
	case LIBSSH2_HOSTKEY_TYPE_ED25519: return LIBSSH2_KNOWNHOST_KEY_ED25519;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_256:
		return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_384:
		return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_521:
		return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
	case LIBSSH2_HOSTKEY_TYPE_RSA: return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
	default: return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
	}
}

static const char *
hostkey_type_name(int type)
{
	switch (type) {
	case LIBSSH2_HOSTKEY_TYPE_ED25519: return "ed25519";
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return "ecdsa";
	case LIBSSH2_HOSTKEY_TYPE_RSA: return "rsa";
	default: return "unknown";
	}
}

/* Host-key types stored for lookup name, as a method preference list. */
static void
kh_prefs(LIBSSH2_KNOWNHOSTS *kh, const char *name, char *pref, size_t len)
{
	struct libssh2_knownhost	*k = NULL;
	const char			*m;

	pref[0] = '\0';
	while (libssh2_knownhost_get(kh, &k, k) == 0) {
		if (k->name == NULL || strcmp(k->name, name) != 0 ||
		    (m = kh_type_method(k->typemask)) == NULL ||
		    strstr(pref, m) != NULL)
			continue;
		if (pref[0])
			strncat(pref, ",", len - strlen(pref) - 1);
		strncat(pref, m, len - strlen(pref) - 1);
	}
}

static int
kh_has_hashed(LIBSSH2_KNOWNHOSTS *kh)
{
	struct libssh2_knownhost *k = NULL;

	while (libssh2_knownhost_get(kh, &k, k) == 0)
		if (k->name == NULL)
			return 1;
	return 0;
}

static void
fingerprint(LIBSSH2_SESSION *s, char *out, size_t len)
{
	const char	*h = libssh2_hostkey_hash(s, LIBSSH2_HOSTKEY_HASH_SHA256);
	unsigned char	 b64[64];
	int		 n;

	if (h == NULL) {
		snprintf(out, len, "(unknown)");
		return;
	}
	n = EVP_EncodeBlock(b64, (const unsigned char *)h, 32);
	while (n > 0 && b64[n - 1] == '=')
		n--;
	b64[n] = '\0';
	snprintf(out, len, "SHA256:%s", b64);
}

static enum mg_err
check_hostkey(struct ssh_conn *c, LIBSSH2_KNOWNHOSTS *kh, const char *name,
    const struct ssh_params *p, char *err, size_t errlen)
{
	const char	*key;
	size_t		 keylen;
	int		 type, r;
	char		 fpr[80];

	if ((key = libssh2_session_hostkey(c->session, &keylen, &type)) ==
	    NULL)
		return serr(err, errlen, MG_ETEMP, "%s: no host key received",
		    p->host);
	fingerprint(c->session, fpr, sizeof(fpr));
	r = libssh2_knownhost_check(kh, name, key, keylen,
	    LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW |
	    hostkey_kh_type(type), NULL);
	switch (r) {
	case LIBSSH2_KNOWNHOST_CHECK_MATCH:
		return MG_OK;
	case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
		return serr(err, errlen, MG_EAUTH, "%s: HOST KEY CHANGED: the "
		    "%s key offered (%s) is not the one in %s; nothing was "
		    "sent.  If the gateway's key really changed, replace its "
		    "line for %s in that file", name, hostkey_type_name(type),
		    fpr, p->known_hosts, name);
	case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
		return serr(err, errlen, MG_EAUTH, "%s: unknown host: no %s "
		    "key for %s in %s (offered %s); nothing was sent.  To trust"
		    " it, verify the fingerprint with the gateway's admin, then:"
		    " ssh-keyscan -p %u -t %s %s >> %s", name,
		    hostkey_type_name(type), name, p->known_hosts, fpr,
		    p->port ? p->port : 22, hostkey_type_name(type), p->host,
		    p->known_hosts);
	default:
		return serr(err, errlen, MG_EAUTH, "%s: cannot check the host "
		    "key against %s", name, p->known_hosts);
	}
}

static const char *
ssh_errmsg(LIBSSH2_SESSION *s)
{
	char	*msg = NULL;

	libssh2_session_last_error(s, &msg, NULL, 0);
	return msg ? msg : "unknown error";
}

static void
drain_stderr(struct ssh_conn *c)
{
	char	buf[512];
	ssize_t	n;

	if (c->channel == NULL)
		return;
	libssh2_session_set_blocking(c->session, 0);
	while ((n = libssh2_channel_read_stderr(c->channel, buf,
	    sizeof(buf))) > 0) {
		size_t room = sizeof(c->stderr_buf) - 1 - c->stderr_len;

		if ((size_t)n > room)
			n = (ssize_t)room;
		memcpy(c->stderr_buf + c->stderr_len, buf, (size_t)n);
		c->stderr_len += (size_t)n;
	}
	c->stderr_buf[c->stderr_len] = '\0';
	for (char *q = c->stderr_buf; *q; q++)
		if (*q == '\n' || *q == '\r')
			*q = ' ';
	libssh2_session_set_blocking(c->session, 1);
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/*
 * libssh2 1.10's blocking calls give up when a keepalive falls due, as
 * "timed out waiting on socket", whatever the session timeout says.
 * So a timeout is ours to judge: send the keepalive and go on waiting
 * until the stream's own deadline has passed with no progress.
 */
static int
keep_waiting(struct ssh_conn *c, ssize_t r, double start, int timeout_ms)
{
	int next;

	if (r != LIBSSH2_ERROR_TIMEOUT && r != LIBSSH2_ERROR_EAGAIN)
		return 0;
	if (timeout_ms >= 0 && now_ms() - start >= timeout_ms)
		return 0;
	libssh2_keepalive_send(c->session, &next);
	return 1;
}

static ssize_t
ch_read(void *ctx, void *p, size_t n, int timeout_ms, enum mg_err *err)
{
	struct ssh_conn	*c = ctx;
	double		 start = now_ms();
	ssize_t		 r;

	do
		r = libssh2_channel_read(c->channel, p, n);
	while (r < 0 && keep_waiting(c, r, start, timeout_ms));
	if (r >= 0) {
		if (r == 0 || libssh2_channel_eof(c->channel))
			drain_stderr(c);
		return r;
	}
	*err = MG_ETEMP;
	mg_debug("ssh read: %s", ssh_errmsg(c->session));
	return -1;
}

static ssize_t
ch_write(void *ctx, const void *p, size_t n, int timeout_ms,
    enum mg_err *err)
{
	struct ssh_conn	*c = ctx;
	double		 start = now_ms();
	ssize_t		 r;

	do
		r = libssh2_channel_write(c->channel, p, n);
	while (r < 0 && keep_waiting(c, r, start, timeout_ms));
	if (r >= 0)
		return r;
	*err = MG_ETEMP;
	mg_debug("ssh write: %s", ssh_errmsg(c->session));
	return -1;
}

static const struct mg_stream_ops ch_ops = { ch_read, ch_write, NULL };

enum mg_err
ssh_connect(const struct ssh_params *p, struct ssh_conn **out, char *err,
    size_t errlen)
{
	struct ssh_conn		*c;
	LIBSSH2_KNOWNHOSTS	*kh = NULL;
	char			 name[300], pref[256], pub[4200];
	unsigned		 port = p->port ? p->port : 22;
	enum mg_err		 e;
	int			 r;

	*out = NULL;
	if (!ssh_lib_ready) {
		if (libssh2_init(0) != 0)
			return serr(err, errlen, MG_ETEMP, "libssh2_init "
			    "failed");
		ssh_lib_ready = 1;
	}
	if (p->known_hosts == NULL || p->identity_file == NULL)
		return serr(err, errlen, MG_ECONFIG, "SSH needs known_hosts "
		    "and identity_file in the peer's section");
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return MG_ENOMEM;
	c->sock = -1;
	c->io_timeout_ms = p->io_timeout_ms;
	if (port == 22)
		snprintf(name, sizeof(name), "%s", p->host);
	else
		snprintf(name, sizeof(name), "[%s]:%u", p->host, port);

	if ((c->session = libssh2_session_init_ex(NULL, NULL, NULL, c)) ==
	    NULL) {
		e = serr(err, errlen, MG_ENOMEM, "cannot start an SSH session");
		goto fail;
	}
	libssh2_session_callback_set(c->session, LIBSSH2_CALLBACK_SEND,
	    (void *)cb_send);
	libssh2_session_callback_set(c->session, LIBSSH2_CALLBACK_RECV,
	    (void *)cb_recv);
	if ((kh = libssh2_knownhost_init(c->session)) == NULL ||
	    libssh2_knownhost_readfile(kh, p->known_hosts,
	    LIBSSH2_KNOWNHOST_FILE_OPENSSH) < 0) {
		e = serr(err, errlen, MG_ECONFIG, "%s: cannot read known "
		    "hosts file", p->known_hosts);
		goto fail;
	}
	kh_prefs(kh, name, pref, sizeof(pref));
	/*
	 * Hashed entries (ssh-keygen -H, Debian's default) hide their
	 * names: offer the usual types and let the exact check decide.
	 */
	if (pref[0] == '\0' && kh_has_hashed(kh))
		snprintf(pref, sizeof(pref), "ssh-ed25519,ecdsa-sha2-nistp256,"
		    "ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,ssh-rsa");
	if (pref[0] == '\0') {
		e = serr(err, errlen, MG_EAUTH, "%s: no host key for %s in %s;"
		    " nothing was sent.  Ask the gateway's admin for its key "
		    "fingerprint, then: ssh-keyscan -p %u -t ed25519 %s >> %s",
		    p->host, name, p->known_hosts, port, p->host,
		    p->known_hosts);
		goto fail;
	}
	if (libssh2_session_method_pref(c->session, LIBSSH2_METHOD_HOSTKEY,
	    pref) != 0) {
		e = serr(err, errlen, MG_EAUTH, "%s: host key types %s are not "
		    "supported by libssh2", name, pref);
		goto fail;
	}
	/*
	 * Offer only what a current sshd takes, strongest first, with a
	 * fallback each for older ones: libssh2's full lists cost about
	 * 700 bytes of the client's KEXINIT, a tenth of a second at
	 * 64 kbit/s, on every sync.
	 */
	if (libssh2_session_method_pref(c->session, LIBSSH2_METHOD_KEX,
	    "curve25519-sha256,curve25519-sha256@libssh.org,"
	    "ecdh-sha2-nistp256,diffie-hellman-group14-sha256") != 0 ||
	    libssh2_session_method_pref(c->session, LIBSSH2_METHOD_CRYPT_CS,
	    "aes128-ctr,aes256-ctr") != 0 ||
	    libssh2_session_method_pref(c->session, LIBSSH2_METHOD_CRYPT_SC,
	    "aes128-ctr,aes256-ctr") != 0 ||
	    libssh2_session_method_pref(c->session, LIBSSH2_METHOD_MAC_CS,
	    "hmac-sha2-256,hmac-sha1") != 0 ||
	    libssh2_session_method_pref(c->session, LIBSSH2_METHOD_MAC_SC,
	    "hmac-sha2-256,hmac-sha1") != 0) {
		e = serr(err, errlen, MG_ESOFTWARE, "%s: libssh2 refuses the "
		    "algorithm preferences: %s", name, ssh_errmsg(c->session));
		goto fail;
	}
	if ((c->sock = net_connect(p->host, port, p->connect_timeout_ms, err,
	    errlen)) < 0) {
		e = MG_ETEMP;
		goto fail;
	}
	libssh2_session_set_blocking(c->session, 1);
	libssh2_session_set_timeout(c->session, p->connect_timeout_ms);
	if ((r = libssh2_session_handshake(c->session, c->sock)) != 0) {
		e = serr(err, errlen, MG_ETEMP, "%s: SSH handshake failed: %s",
		    name, ssh_errmsg(c->session));
		goto fail;
	}
	if ((e = check_hostkey(c, kh, name, p, err, errlen)) != MG_OK)
		goto fail;
	snprintf(pub, sizeof(pub), "%s.pub", p->identity_file);
	if (access(pub, R_OK) != 0)
		pub[0] = '\0';
	if (libssh2_userauth_publickey_fromfile(c->session, p->user,
	    pub[0] ? pub : NULL, p->identity_file, NULL) != 0) {
		e = serr(err, errlen, MG_EAUTH, "%s: login as %s with %s "
		    "refused: %s (is the key in the gateway's authorized_keys?"
		    " see mgate authorized-key)", name, p->user,
		    p->identity_file, ssh_errmsg(c->session));
		goto fail;
	}
	libssh2_keepalive_config(c->session, 1, 15);
	libssh2_session_set_timeout(c->session, p->io_timeout_ms);
	if ((c->channel = libssh2_channel_open_session(c->session)) == NULL ||
	    libssh2_channel_exec(c->channel, p->command) != 0) {
		e = serr(err, errlen, MG_ETEMP, "%s: cannot start the remote "
		    "command: %s", name, ssh_errmsg(c->session));
		goto fail;
	}
	if ((c->stream = mg_stream_new(&ch_ops, c)) == NULL) {
		e = MG_ENOMEM;
		goto fail;
	}
	mg_stream_set_timeout(c->stream, p->io_timeout_ms);
	libssh2_knownhost_free(kh);
	*out = c;
	return MG_OK;
fail:
	if (kh)
		libssh2_knownhost_free(kh);
	ssh_close(c);
	return e;
}

struct mg_stream *
ssh_stream(struct ssh_conn *c)
{
	return c->stream;
}

void
ssh_send_eof(struct ssh_conn *c)
{
	if (c->channel)
		libssh2_channel_send_eof(c->channel);
}

const char *
ssh_remote_stderr(struct ssh_conn *c)
{
	drain_stderr(c);
	return c->stderr_buf;
}

int
ssh_exit_status(struct ssh_conn *c)
{
	if (c->channel == NULL || !libssh2_channel_eof(c->channel))
		return -1;
	return libssh2_channel_get_exit_status(c->channel);
}

void
ssh_wire_bytes(struct ssh_conn *c, unsigned long long *out,
    unsigned long long *in)
{
	*out = c->wire_out;
	*in = c->wire_in;
}

void
ssh_close(struct ssh_conn *c)
{
	if (c == NULL)
		return;
	mg_stream_close(c->stream);
	if (c->channel) {
		libssh2_session_set_timeout(c->session, 2000);
		libssh2_channel_close(c->channel);
		libssh2_channel_free(c->channel);
	}
	if (c->session) {
		libssh2_session_set_timeout(c->session, 2000);
		libssh2_session_disconnect(c->session, "mgate: done");
		libssh2_session_free(c->session);
	}
	if (c->sock >= 0)
		close(c->sock);
	free(c);
}
