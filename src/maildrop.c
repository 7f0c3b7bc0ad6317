/*
 * maildrop.c - write and read submission files.
 *
 * The writer is the commit point of `mgate queue': nothing is visible in
 * maildrop/ until the whole file is on stable storage, so a crash at any
 * moment leaves either nothing or a complete file.  The reader is the
 * only parser of these files; it trusts nothing (the spool directory may
 * be writable by local users), bounds every field and checks the digest.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "mgate/buf.h"
#include "mgate/fsutil.h"
#include "mgate/log.h"
#include "mgate/maildrop.h"
#include "mgate/stream.h"

#define FIELD_MAX	4096		/* envelope fields */
#define RCPT_MAX	100000
#define DIGEST_LEN	32

struct maildrop_writer {
	char		 tmp[4096];
	char		 dst[4096];
	char		 dir[4096];
	int		 fd;
	struct mg_stream *s;
	EVP_MD_CTX	*md;
	uint64_t	 size;
	size_t		 clen;		/* bytes pending in chunk */
	unsigned char	 chunk[MAILDROP_CHUNK];
};

struct maildrop_reader {
	struct mg_stream	*s;
	struct mg_envelope	 env;
	EVP_MD_CTX		*md;
	uint64_t		 seen;		/* content bytes returned */
	size_t			 left;		/* of the current 'C' field */
	int			 done;
};

enum mg_err
maildrop_create(const char *spool, struct mg_envelope *env,
    struct maildrop_writer **out)
{
	return maildrop_create_in(spool, "maildrop", env, out);
}

enum mg_err
maildrop_create_in(const char *spool, const char *subdir,
    struct mg_envelope *env, struct maildrop_writer **out)
{
	return maildrop_create_at(spool, "tmp", subdir, env, out);
}

enum mg_err
maildrop_create_at(const char *spool, const char *tmpdir, const char *subdir,
    struct mg_envelope *env, struct maildrop_writer **out)
{
	struct maildrop_writer	*w;
	enum mg_err		 e;

	*out = NULL;
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return MG_ENOMEM;
	w->fd = -1;
	if (mg_path(w->dir, sizeof(w->dir), "%s/%s", spool, subdir) != MG_OK) {
		e = MG_ELIMIT;
		goto fail;
	}
	for (int tries = 0; ; tries++) {
		mg_qid_new(env->qid);
		if (mg_path(w->tmp, sizeof(w->tmp), "%s/%s/%s", spool, tmpdir,
		    env->qid) != MG_OK ||
		    mg_path(w->dst, sizeof(w->dst), "%s/%s", w->dir,
		    env->qid) != MG_OK) {
			e = MG_ELIMIT;
			goto fail;
		}
		w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
		    O_CLOEXEC, 0600);
		if (w->fd >= 0)
			break;
		w->tmp[0] = '\0';	/* not ours: never unlink it */
		if (errno != EEXIST || tries > 10) {
			e = errno == ENOENT ? MG_EUNAVAIL :
			    mg_err_from_errno(errno);
			if (e == MG_ENOTFOUND)
				e = MG_EUNAVAIL;
			goto fail;
		}
	}
	if ((w->s = mg_stream_fd(w->fd, 0)) == NULL ||
	    (w->md = EVP_MD_CTX_new()) == NULL ||
	    !EVP_DigestInit_ex(w->md, EVP_sha256(), NULL)) {
		e = MG_ENOMEM;
		goto fail;
	}
	mg_stream_write(w->s, MAILDROP_MAGIC, MAILDROP_MAGIC_LEN);
	*out = w;
	return MG_OK;
fail:
	maildrop_abort(w);
	return e;
}

static enum mg_err
put_rcpt(struct mg_buf *b, const struct mg_rcpt *r)
{
	enum mg_err e;

	mg_buf_reset(b);
	if ((e = mg_buf_put_str(b, 'a', r->addr)) != MG_OK ||
	    (e = mg_buf_put_field_u64(b, 'n', r->notify)) != MG_OK)
		return e;
	if (r->orcpt && (e = mg_buf_put_str(b, 'o', r->orcpt)) != MG_OK)
		return e;
	return MG_OK;
}

enum mg_err
maildrop_put_envelope(struct maildrop_writer *w,
    const struct mg_envelope *env)
{
	struct mg_buf	b;
	enum mg_err	e = MG_OK;

	/* The reader refuses fields over FIELD_MAX: never write one. */
	if (env->sender == NULL)
		return MG_EDATA;
	if (strlen(env->sender) > FIELD_MAX || (env->user &&
	    strlen(env->user) > FIELD_MAX) || (env->envid &&
	    strlen(env->envid) > FIELD_MAX))
		return MG_ELIMIT;
	for (size_t i = 0; i < env->nrcpt; i++)
		if (strlen(env->rcpts[i].addr) + (env->rcpts[i].orcpt ?
		    strlen(env->rcpts[i].orcpt) : 0) + 3 * MG_FIELD_HDR + 8 >
		    FIELD_MAX)
			return MG_ELIMIT;
	mg_buf_init(&b, 3 * FIELD_MAX);
	if ((e = mg_buf_put_str(&b, 'I', env->qid)) != MG_OK ||
	    (e = mg_buf_put_field_u64(&b, 'A', env->arrival)) != MG_OK ||
	    (e = mg_buf_put_str(&b, 'U', env->user)) != MG_OK ||
	    (e = mg_buf_put_str(&b, 'S', env->sender)) != MG_OK ||
	    (env->envid && (e = mg_buf_put_str(&b, 'E', env->envid))) ||
	    (e = mg_buf_put_field_u64(&b, 'T', (uint64_t)env->ret)) != MG_OK ||
	    (e = mg_buf_put_field_u64(&b, 'B', (uint64_t)env->body)) != MG_OK ||
	    (env->priority != MG_PRIO_NORMAL && (e = mg_buf_put_field_u64(&b,
	    'P', (uint64_t)env->priority)) != MG_OK))
		goto out;
	mg_stream_write(w->s, b.data, b.len);
	for (size_t i = 0; i < env->nrcpt; i++) {
		if ((e = put_rcpt(&b, &env->rcpts[i])) != MG_OK)
			goto out;
		mg_stream_put_field(w->s, 'R', b.data, b.len);
	}
	e = mg_stream_error(w->s);
out:
	mg_buf_free(&b);
	return e;
}

static enum mg_err
flush_chunk(struct maildrop_writer *w)
{
	if (w->clen == 0)
		return mg_stream_error(w->s);
	mg_stream_put_field(w->s, 'C', w->chunk, w->clen);
	w->clen = 0;
	return mg_stream_error(w->s);
}

enum mg_err
maildrop_put_content(struct maildrop_writer *w, const void *p, size_t n)
{
	const unsigned char	*c = p;
	size_t			 take;
	enum mg_err		 e;

	if (!EVP_DigestUpdate(w->md, p, n))
		return MG_ESOFTWARE;
	w->size += n;
	while (n > 0) {
		take = sizeof(w->chunk) - w->clen;
		if (take > n)
			take = n;
		memcpy(w->chunk + w->clen, c, take);
		w->clen += take;
		c += take;
		n -= take;
		if (w->clen == sizeof(w->chunk) &&
		    (e = flush_chunk(w)) != MG_OK)
			return e;
	}
	return MG_OK;
}

uint64_t
maildrop_size(const struct maildrop_writer *w)
{
	return w->size;
}

enum mg_err
maildrop_commit(struct maildrop_writer *w)
{
	unsigned char	end[8 + DIGEST_LEN];
	unsigned int	dlen = 0;
	enum mg_err	e;

	if ((e = flush_chunk(w)) != MG_OK)
		goto fail;
	mg_put_be64(end, w->size);
	if (!EVP_DigestFinal_ex(w->md, end + 8, &dlen) || dlen != DIGEST_LEN) {
		e = MG_ESOFTWARE;
		goto fail;
	}
	mg_stream_put_field(w->s, 'Z', end, sizeof(end));
	if ((e = mg_stream_flush(w->s)) != MG_OK)
		goto fail;
	if (fsync(w->fd) < 0) {
		e = errno == ENOSPC ? MG_ENOSPC : MG_EIO;
		goto fail;
	}
	if (close(w->fd) < 0) {
		w->fd = -1;
		e = errno == ENOSPC ? MG_ENOSPC : MG_EIO;
		goto fail;
	}
	w->fd = -1;
	if (rename(w->tmp, w->dst) < 0) {
		e = mg_err_from_errno(errno);
		goto fail;
	}
	w->tmp[0] = '\0';	/* nothing to clean up any more */
	if ((e = mg_fsync_dir(w->dir)) != MG_OK) {
		/*
		 * The name may not be durable.  Take it back so the caller's
		 * temporary failure is the whole truth: the MUA keeps the
		 * message, and no copy appears later.
		 */
		int saved = errno;

		unlink(w->dst);
		errno = saved;
		goto fail;
	}
	maildrop_abort(w);
	return MG_OK;
fail:
	maildrop_abort(w);
	return e;
}

void
maildrop_abort(struct maildrop_writer *w)
{
	int saved = errno;

	if (w == NULL)
		return;
	mg_stream_close(w->s);
	if (w->fd >= 0)
		close(w->fd);
	if (w->tmp[0])
		unlink(w->tmp);
	EVP_MD_CTX_free(w->md);
	free(w);
	errno = saved;
}

/* Reader */

static enum mg_err __attribute__((format(printf, 3, 4)))
rerr(char *errbuf, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, errlen, fmt, ap);
	va_end(ap);
	return MG_ECORRUPT;
}

static enum mg_err
get_str(const unsigned char *p, size_t n, char **out)
{
	free(*out);
	*out = NULL;
	return mg_field_str(p, n, out);
}

static enum mg_err
parse_rcpt(struct mg_envelope *env, const unsigned char *p, size_t n)
{
	struct mg_rd		 rd;
	uint8_t			 tag;
	const unsigned char	*v;
	size_t			 vn;
	char			*addr = NULL, *orcpt = NULL;
	uint64_t		 notify = 0;
	enum mg_err		 e = MG_OK;

	mg_rd_init(&rd, p, n);
	while (!mg_rd_eof(&rd)) {
		if ((e = mg_rd_field(&rd, &tag, &v, &vn)) != MG_OK)
			goto fail;
		switch (tag) {
		case 'a':
			e = get_str(v, vn, &addr);
			break;
		case 'o':
			e = get_str(v, vn, &orcpt);
			break;
		case 'n':
			e = mg_field_u64(v, vn, &notify);
			break;
		default:
			e = MG_EDATA;
		}
		if (e != MG_OK)
			goto fail;
	}
	if (addr == NULL || notify > 0xff) {
		e = MG_EDATA;
		goto fail;
	}
	if (mg_envelope_add_rcpt(env, addr, orcpt, (unsigned)notify) < 0)
		return MG_ENOMEM;
	return MG_OK;
fail:
	free(addr);
	free(orcpt);
	return e;
}

enum mg_err
maildrop_open(const char *path, struct maildrop_reader **out, char *errbuf,
    size_t errlen)
{
	struct maildrop_reader	*r;
	unsigned char		 magic[MAILDROP_MAGIC_LEN] = { 0 }, tag;
	unsigned char		 val[FIELD_MAX];
	size_t			 n;
	uint64_t		 u;
	int			 fd;
	enum mg_err		 e;

	*out = NULL;
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		e = mg_err_from_errno(errno);
		snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
		return e;
	}
	if ((r = calloc(1, sizeof(*r))) != NULL)
		r->env.priority = MG_PRIO_NORMAL;
	if (r == NULL || (r->s = mg_stream_fd(fd, 1)) == NULL ||
	    (r->md = EVP_MD_CTX_new()) == NULL ||
	    !EVP_DigestInit_ex(r->md, EVP_sha256(), NULL)) {
		if (r == NULL || r->s == NULL)
			close(fd);
		maildrop_close(r);
		snprintf(errbuf, errlen, "%s: out of memory", path);
		return MG_ENOMEM;
	}
	if (mg_stream_read_full(r->s, magic, sizeof(magic), NULL) != MG_OK &&
	    mg_stream_error(r->s) != MG_OK) {
		e = mg_stream_error(r->s);
		snprintf(errbuf, errlen, "%s: read error: %s", path,
		    strerror(errno));
		goto fail;
	}
	if (memcmp(magic, MAILDROP_MAGIC, sizeof(magic)) != 0) {
		e = rerr(errbuf, errlen, "%s: not an mgate queue file", path);
		goto fail;
	}
	for (;;) {
		tag = '?';
		e = mg_stream_get_field_hdr(r->s, &tag, &n, MAILDROP_CHUNK);
		if (e == MG_OK && tag == 'C') {
			r->left = n;
			break;
		}
		if (e == MG_OK && tag == 'Z') {
			/* Empty content: maildrop_read checks the end. */
			r->done = -1;
			r->left = n;
			break;
		}
		if (e == MG_OK && n > FIELD_MAX)
			e = MG_ELIMIT;
		if (e == MG_OK)
			e = mg_stream_read_full(r->s, val, n, NULL);
		if (e != MG_OK && mg_stream_error(r->s) != MG_OK) {
			/* A read error is not damage: say so, keep the file. */
			e = mg_stream_error(r->s);
			snprintf(errbuf, errlen, "%s: read error: %s", path,
			    strerror(errno));
			goto fail;
		}
		if (e != MG_OK) {
			e = rerr(errbuf, errlen, "%s: truncated or oversized "
			    "envelope field", path);
			goto fail;
		}
		switch (tag) {
		case 'I':
			if (n != MG_QID_LEN)
				goto bad;
			memcpy(r->env.qid, val, n);
			r->env.qid[n] = '\0';
			if (!mg_qid_valid(r->env.qid))
				goto bad;
			continue;
		case 'A':
			e = mg_field_u64(val, n, &r->env.arrival);
			break;
		case 'U':
			e = get_str(val, n, &r->env.user);
			break;
		case 'S':
			e = get_str(val, n, &r->env.sender);
			break;
		case 'E':
			e = get_str(val, n, &r->env.envid);
			break;
		case 'T':
			e = mg_field_u64(val, n, &u);
			if (e == MG_OK && u > MG_RET_HDRS)
				goto bad;
			r->env.ret = (int)u;
			break;
		case 'B':
			e = mg_field_u64(val, n, &u);
			if (e == MG_OK && u > MG_BODY_8BITMIME)
				goto bad;
			r->env.body = (int)u;
			break;
		case 'P':
			e = mg_field_u64(val, n, &u);
			if (e == MG_OK && u > MG_PRIO_HIGH)
				goto bad;
			r->env.priority = (int)u;
			break;
		case 'R':
			if (r->env.nrcpt >= RCPT_MAX)
				goto bad;
			e = parse_rcpt(&r->env, val, n);
			break;
		default:
			goto bad;
		}
		if (e == MG_ENOMEM)
			goto fail;
		if (e != MG_OK)
			goto bad;
	}
	if (r->env.qid[0] == '\0' || r->env.sender == NULL ||
	    r->env.nrcpt == 0)
		goto bad;
	if (r->env.user == NULL && (r->env.user = strdup("")) == NULL) {
		e = MG_ENOMEM;
		goto fail;
	}
	*out = r;
	return MG_OK;
bad:
	e = rerr(errbuf, errlen, "%s: malformed envelope (field '%c')", path,
	    tag >= 0x20 && tag < 0x7f ? tag : '?');
fail:
	maildrop_close(r);
	return e;
}

const struct mg_envelope *
maildrop_envelope(const struct maildrop_reader *r)
{
	return &r->env;
}

static enum mg_err
check_end(struct maildrop_reader *r, size_t n)
{
	unsigned char	end[8 + DIGEST_LEN], md[DIGEST_LEN];
	unsigned int	dlen = 0;
	unsigned char	extra;

	if (n != sizeof(end))
		return MG_ECORRUPT;
	if (mg_stream_read_full(r->s, end, sizeof(end), NULL) != MG_OK)
		return mg_stream_error(r->s) != MG_OK ? mg_stream_error(r->s) :
		    MG_ECORRUPT;
	if (!EVP_DigestFinal_ex(r->md, md, &dlen) || dlen != DIGEST_LEN)
		return MG_ESOFTWARE;
	if (mg_get_be64(end) != r->seen ||
	    memcmp(md, end + 8, DIGEST_LEN) != 0)
		return MG_ECORRUPT;
	/* Nothing may follow the end field. */
	if (mg_stream_read(r->s, &extra, 1) != 0)
		return mg_stream_error(r->s) != MG_OK ? mg_stream_error(r->s) :
		    MG_ECORRUPT;
	r->env.size = r->seen;
	r->done = 1;
	return MG_OK;
}

ssize_t
maildrop_read(struct maildrop_reader *r, void *p, size_t n, enum mg_err *err)
{
	unsigned char	tag;
	size_t		len;
	ssize_t		got;
	enum mg_err	e;

	if (r->done == 1)
		return 0;
	if (r->done == -1) {	/* 'Z' header already consumed */
		if ((e = check_end(r, r->left)) != MG_OK)
			goto fail;
		return 0;
	}
	while (r->left == 0) {
		if ((e = mg_stream_get_field_hdr(r->s, &tag, &len,
		    MAILDROP_CHUNK)) != MG_OK) {
			e = mg_stream_error(r->s) != MG_OK ?
			    mg_stream_error(r->s) : MG_ECORRUPT;
			goto fail;
		}
		if (tag == 'Z') {
			if ((e = check_end(r, len)) != MG_OK)
				goto fail;
			return 0;
		}
		if (tag != 'C') {
			e = MG_ECORRUPT;
			goto fail;
		}
		r->left = len;
	}
	if (n > r->left)
		n = r->left;
	if ((got = mg_stream_read(r->s, p, n)) <= 0) {
		e = got < 0 ? mg_stream_error(r->s) : MG_ECORRUPT;
		goto fail;
	}
	EVP_DigestUpdate(r->md, p, (size_t)got);
	r->left -= (size_t)got;
	r->seen += (uint64_t)got;
	return got;
fail:
	*err = e;
	return -1;
}

enum mg_err
maildrop_verify(struct maildrop_reader *r)
{
	unsigned char	buf[MAILDROP_CHUNK];
	ssize_t		n;
	enum mg_err	e = MG_OK;

	while ((n = maildrop_read(r, buf, sizeof(buf), &e)) > 0)
		;
	return n < 0 ? e : MG_OK;
}

void
maildrop_close(struct maildrop_reader *r)
{
	if (r == NULL)
		return;
	mg_stream_close(r->s);
	mg_envelope_free(&r->env);
	EVP_MD_CTX_free(r->md);
	free(r);
}
