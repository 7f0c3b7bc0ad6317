/*
 * keys.c - generate, store, load and fingerprint peer key pairs.
 *
 * Input seen: key files named in the configuration, and public key lines
 * pasted by an operator; both are parsed strictly (exact field count and
 * lengths, no trailing junk).  Private halves live only in struct
 * mg_keypair and are wiped by keys_free().  Every primitive is OpenSSL's
 * (EVP_PKEY for keys, EVP_EncodeBlock/DecodeBlock for base64, EVP_Digest
 * for SHA-256); nothing here is hand-rolled.
 *
 * Never: follow a symlink to a private key, overwrite an existing key,
 * or accept a private key file that anyone but its owner may access.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "mgate/keys.h"

#define PUB_MAGIC	"mgate-peer-1"
#define PRIV_MAGIC	"mgate-private-1"
#define B64_KEY_LEN	44		/* base64 of 32 bytes, padded */
#define LINE_MAX_LEN	4096

static __thread char keys_msg[512];

static void __attribute__((format(printf, 1, 2)))
keys_set_msg(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(keys_msg, sizeof(keys_msg), fmt, ap);
	va_end(ap);
}

/* Put "path: " in front of the current message (truncating its end). */
static void
keys_prefix_msg(const char *path)
{
	size_t	plen = strlen(path) + 2, mlen = strlen(keys_msg);

	if (plen >= sizeof(keys_msg))
		return;
	if (mlen > sizeof(keys_msg) - 1 - plen)
		mlen = sizeof(keys_msg) - 1 - plen;
	memmove(keys_msg + plen, keys_msg, mlen);
	keys_msg[plen + mlen] = '\0';
	memcpy(keys_msg, path, plen - 2);
	memcpy(keys_msg + plen - 2, ": ", 2);
}

const char *
keys_errmsg(void)
{
	return keys_msg;
}

static void
b64_key(const unsigned char key[MG_KEY_LEN], char out[B64_KEY_LEN + 1])
{
	EVP_EncodeBlock((unsigned char *)out, key, MG_KEY_LEN);
}

/* Strict: exactly 44 characters, one '=' of padding, 32 bytes out. */
static int
unb64_key(const char *s, size_t n, unsigned char key[MG_KEY_LEN])
{
	unsigned char	tmp[36];
	int		r;

	if (n != B64_KEY_LEN || s[B64_KEY_LEN - 1] != '=' ||
	    s[B64_KEY_LEN - 2] == '=')
		return -1;
	r = EVP_DecodeBlock(tmp, (const unsigned char *)s, B64_KEY_LEN);
	if (r != MG_KEY_LEN + 1) {
		OPENSSL_cleanse(tmp, sizeof(tmp));
		return -1;
	}
	memcpy(key, tmp, MG_KEY_LEN);
	OPENSSL_cleanse(tmp, sizeof(tmp));
	return 0;
}

/* Fill pub->sign and pub->kx from the private halves. */
static enum mg_err
derive_public(struct mg_keypair *kp)
{
	EVP_PKEY	*ed = NULL, *x = NULL;
	size_t		 n;
	enum mg_err	 e = MG_ESOFTWARE;

	ed = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL,
	    kp->sign_priv, MG_KEY_LEN);
	x = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL,
	    kp->kx_priv, MG_KEY_LEN);
	if (ed == NULL || x == NULL) {
		keys_set_msg("cannot use key material (OpenSSL refused it)");
		goto out;
	}
	n = MG_KEY_LEN;
	if (EVP_PKEY_get_raw_public_key(ed, kp->pub.sign, &n) != 1 ||
	    n != MG_KEY_LEN)
		goto out;
	n = MG_KEY_LEN;
	if (EVP_PKEY_get_raw_public_key(x, kp->pub.kx, &n) != 1 ||
	    n != MG_KEY_LEN)
		goto out;
	e = MG_OK;
out:
	EVP_PKEY_free(ed);
	EVP_PKEY_free(x);
	return e;
}

static enum mg_err
gen_raw(const char *alg, unsigned char priv[MG_KEY_LEN])
{
	EVP_PKEY	*k = NULL;
	size_t		 n = MG_KEY_LEN;
	enum mg_err	 e = MG_ESOFTWARE;

	if ((k = EVP_PKEY_Q_keygen(NULL, NULL, alg)) == NULL) {
		keys_set_msg("%s key generation failed", alg);
		goto out;
	}
	if (EVP_PKEY_get_raw_private_key(k, priv, &n) != 1 || n != MG_KEY_LEN)
		goto out;
	e = MG_OK;
out:
	EVP_PKEY_free(k);
	return e;
}

enum mg_err
keys_format_public(const struct mg_pubkey *pub, char *buf, size_t len)
{
	char	a[B64_KEY_LEN + 1], b[B64_KEY_LEN + 1];
	int	r;

	b64_key(pub->sign, a);
	b64_key(pub->kx, b);
	r = snprintf(buf, len, "%s %s %s%s%s\n", PUB_MAGIC, a, b,
	    pub->comment[0] ? " " : "", pub->comment);
	if (r < 0 || (size_t)r >= len)
		return MG_ELIMIT;
	return MG_OK;
}

static enum mg_err
write_file(const char *path, mode_t mode, const char *text)
{
	size_t		 n = strlen(text), off = 0;
	ssize_t		 w;
	int		 fd = -1;
	enum mg_err	 e = MG_OK;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    mode);
	if (fd < 0) {
		e = errno == EEXIST ? MG_EEXIST : mg_err_from_errno(errno);
		keys_set_msg("cannot create %s: %s", path, strerror(errno));
		return e;
	}
	while (off < n) {
		if ((w = write(fd, text + off, n - off)) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		off += (size_t)w;
	}
	if (off < n || fsync(fd) != 0) {
		e = mg_err_from_errno(errno);
		keys_set_msg("cannot write %s: %s", path, strerror(errno));
	}
	if (close(fd) != 0 && e == MG_OK) {
		e = mg_err_from_errno(errno);
		keys_set_msg("cannot write %s: %s", path, strerror(errno));
	}
	if (e != MG_OK)
		unlink(path);
	return e;
}

/* Make the new directory entries durable too. */
static void
fsync_parent(const char *path)
{
	char	dir[4096];
	char	*slash;
	int	fd;

	if (strlen(path) >= sizeof(dir))
		return;
	strcpy(dir, path);
	if ((slash = strrchr(dir, '/')) == NULL)
		strcpy(dir, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

enum mg_err
keys_generate_comment(const char *private_path, const char *public_path,
    const char *comment)
{
	struct mg_keypair	 kp;
	char			 a[B64_KEY_LEN + 1], b[B64_KEY_LEN + 1];
	char			 line[LINE_MAX_LEN];
	int			 priv_made = 0;
	enum mg_err		 e;

	memset(&kp, 0, sizeof(kp));
	if (comment != NULL) {
		if (strlen(comment) >= sizeof(kp.pub.comment) ||
		    strpbrk(comment, "\r\n") != NULL) {
			keys_set_msg("key comment too long or contains a "
			    "line break");
			e = MG_EUSAGE;
			goto out;
		}
		strcpy(kp.pub.comment, comment);
	}
	if ((e = gen_raw("ED25519", kp.sign_priv)) != MG_OK ||
	    (e = gen_raw("X25519", kp.kx_priv)) != MG_OK ||
	    (e = derive_public(&kp)) != MG_OK)
		goto out;
	b64_key(kp.sign_priv, a);
	b64_key(kp.kx_priv, b);
	snprintf(line, sizeof(line), "%s %s %s\n", PRIV_MAGIC, a, b);
	if ((e = write_file(private_path, 0600, line)) != MG_OK)
		goto out;
	priv_made = 1;
	if ((e = keys_format_public(&kp.pub, line, sizeof(line))) != MG_OK ||
	    (e = write_file(public_path, 0644, line)) != MG_OK)
		goto out;
	fsync_parent(private_path);
	fsync_parent(public_path);
out:
	if (e != MG_OK && priv_made)
		unlink(private_path);	/* never leave half a key pair */
	OPENSSL_cleanse(a, sizeof(a));
	OPENSSL_cleanse(b, sizeof(b));
	OPENSSL_cleanse(line, sizeof(line));
	OPENSSL_cleanse(&kp, sizeof(kp));
	return e;
}

enum mg_err
keys_generate(const char *private_path, const char *public_path)
{
	return keys_generate_comment(private_path, public_path, NULL);
}

/* Next space-separated word of s at *pos; returns its length. */
static size_t
next_word(const char *s, size_t *pos, const char **w)
{
	size_t i = *pos, start;

	while (s[i] == ' ' || s[i] == '\t')
		i++;
	start = i;
	while (s[i] != '\0' && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' &&
	    s[i] != '\r')
		i++;
	*w = s + start;
	*pos = i;
	return i - start;
}

static int
rest_is_eol(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '\r')
		s++;
	if (*s == '\n')
		s++;
	return *s == '\0';
}

enum mg_err
keys_parse_private(const char *line, struct mg_keypair **out)
{
	struct mg_keypair	*kp = NULL;
	const char		*w;
	size_t			 pos = 0, n;
	enum mg_err		 e = MG_EDATA;

	*out = NULL;
	if ((kp = calloc(1, sizeof(*kp))) == NULL) {
		keys_set_msg("out of memory");
		return MG_ENOMEM;
	}
	n = next_word(line, &pos, &w);
	if (n != strlen(PRIV_MAGIC) || memcmp(w, PRIV_MAGIC, n) != 0) {
		keys_set_msg("not an mgate private key (expected \"%s\")",
		    PRIV_MAGIC);
		goto out;
	}
	n = next_word(line, &pos, &w);
	if (unb64_key(w, n, kp->sign_priv) != 0)
		goto bad;
	n = next_word(line, &pos, &w);
	if (unb64_key(w, n, kp->kx_priv) != 0)
		goto bad;
	if (!rest_is_eol(line + pos))
		goto bad;
	if ((e = derive_public(kp)) != MG_OK)
		goto out;
	*out = kp;	/* ownership to the caller */
	kp = NULL;
	e = MG_OK;
	goto out;
bad:
	keys_set_msg("malformed mgate private key line");
	e = MG_EDATA;
out:
	keys_free(kp);
	return e;
}

enum mg_err
keys_parse_public(const char *line, struct mg_pubkey *out)
{
	struct mg_pubkey	 pk;
	const char		*w, *c, *end;
	size_t			 pos = 0, n;

	memset(&pk, 0, sizeof(pk));
	n = next_word(line, &pos, &w);
	if (n != strlen(PUB_MAGIC) || memcmp(w, PUB_MAGIC, n) != 0) {
		keys_set_msg("not an mgate public key (expected a line "
		    "starting \"%s\")", PUB_MAGIC);
		return MG_EDATA;
	}
	n = next_word(line, &pos, &w);
	if (unb64_key(w, n, pk.sign) != 0)
		goto bad;
	n = next_word(line, &pos, &w);
	if (unb64_key(w, n, pk.kx) != 0)
		goto bad;
	c = line + pos;
	while (*c == ' ' || *c == '\t')
		c++;
	end = c + strcspn(c, "\r\n");
	if (!rest_is_eol(end))
		goto bad;
	if ((size_t)(end - c) >= sizeof(pk.comment)) {
		keys_set_msg("public key comment longer than %d bytes",
		    MG_KEY_COMMENT_MAX - 1);
		return MG_ELIMIT;
	}
	memcpy(pk.comment, c, (size_t)(end - c));
	*out = pk;
	return MG_OK;
bad:
	keys_set_msg("malformed mgate public key line");
	return MG_EDATA;
}

/* Read a small key file whole (at most LINE_MAX_LEN - 1 bytes). */
static enum mg_err
read_small(int fd, const char *path, char *buf, size_t len)
{
	size_t	off = 0;
	ssize_t	r;

	for (;;) {
		if (off == len - 1) {
			keys_set_msg("%s: too large for a key file", path);
			return MG_ELIMIT;
		}
		r = read(fd, buf + off, len - 1 - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			keys_set_msg("cannot read %s: %s", path,
			    strerror(errno));
			return mg_err_from_errno(errno);
		}
		if (r == 0)
			break;
		off += (size_t)r;
	}
	buf[off] = '\0';
	if (memchr(buf, '\0', off) != NULL) {
		keys_set_msg("%s: contains a NUL byte, not a key file", path);
		return MG_EDATA;
	}
	return MG_OK;
}

enum mg_err
keys_load_private(const char *path, struct mg_keypair **out)
{
	struct stat	st;
	char		buf[LINE_MAX_LEN];
	int		fd = -1;
	enum mg_err	e;

	*out = NULL;
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		e = errno == ENOENT ? MG_ENOTFOUND : errno == ELOOP ?
		    MG_ENOPERM : mg_err_from_errno(errno);
		keys_set_msg("cannot open private key %s: %s%s", path,
		    strerror(errno), errno == ELOOP ?
		    " (symbolic links are refused)" : "");
		goto out;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		keys_set_msg("private key %s is not a regular file", path);
		e = MG_EDATA;
		goto out;
	}
	if ((st.st_mode & 077) != 0) {
		keys_set_msg("private key %s is accessible by group or "
		    "others (mode %04o); it must be private: chmod 600 %s",
		    path, (unsigned)(st.st_mode & 07777), path);
		e = MG_ENOPERM;
		goto out;
	}
	if (st.st_uid != geteuid() && st.st_uid != 0) {
		keys_set_msg("private key %s is owned by uid %u, not by us "
		    "(uid %u)", path, (unsigned)st.st_uid,
		    (unsigned)geteuid());
		e = MG_ENOPERM;
		goto out;
	}
	if ((e = read_small(fd, path, buf, sizeof(buf))) != MG_OK)
		goto out;
	if ((e = keys_parse_private(buf, out)) != MG_OK)
		keys_prefix_msg(path);
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	if (fd >= 0)
		close(fd);
	return e;
}

enum mg_err
keys_load_public(const char *path, struct mg_pubkey *out)
{
	char		 buf[LINE_MAX_LEN];
	char		*line, *nl = NULL;
	int		 fd = -1;
	enum mg_err	 e;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		e = errno == ENOENT ? MG_ENOTFOUND : mg_err_from_errno(errno);
		keys_set_msg("cannot open public key %s: %s", path,
		    strerror(errno));
		goto out;
	}
	if ((e = read_small(fd, path, buf, sizeof(buf))) != MG_OK)
		goto out;
	/* The first line that is neither blank nor a # comment. */
	for (line = buf; *line != '\0'; line = nl + 1) {
		nl = line + strcspn(line, "\n");
		if (*line != '#' && line[strspn(line, " \t\r")] != '\n' &&
		    line[strspn(line, " \t\r")] != '\0')
			break;
		if (*nl == '\0') {
			line = nl;
			break;
		}
	}
	if (*line == '\0') {
		keys_set_msg("%s: no public key in the file", path);
		e = MG_EDATA;
		goto out;
	}
	if (*nl == '\n')
		nl[1] = '\0';	/* parse just that line */
	if ((e = keys_parse_public(line, out)) != MG_OK)
		keys_prefix_msg(path);
out:
	if (fd >= 0)
		close(fd);
	return e;
}

void
keys_fingerprint(const struct mg_pubkey *pub, char *buf, size_t len)
{
	unsigned char	in[2 * MG_KEY_LEN], md[32];
	char		b64[48];
	unsigned int	mdlen = 0;
	size_t		n;

	memcpy(in, pub->sign, MG_KEY_LEN);
	memcpy(in + MG_KEY_LEN, pub->kx, MG_KEY_LEN);
	if (EVP_Digest(in, sizeof(in), md, &mdlen, EVP_sha256(), NULL) != 1) {
		snprintf(buf, len, "SHA256:?");
		return;
	}
	EVP_EncodeBlock((unsigned char *)b64, md, sizeof(md));
	n = strlen(b64);
	while (n > 0 && b64[n - 1] == '=')
		b64[--n] = '\0';
	snprintf(buf, len, "SHA256:%s", b64);
}

void
keys_free(struct mg_keypair *kp)
{
	if (kp == NULL)
		return;
	OPENSSL_cleanse(kp, sizeof(*kp));
	free(kp);
}
