/*
 * stream.c - buffered streams with deadlines and sticky errors.
 *
 * The fd transport waits with poll(2) so a stalled peer becomes an
 * MG_ETEMP after the timeout instead of a hang.  Reads fill a fixed
 * buffer; writes collect in one and go out when it is full or on flush.
 * Memory per stream is two MG_STREAM_BUFSIZ buffers, whatever flows.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mgate/buf.h"
#include "mgate/stream.h"

struct mg_stream {
	const struct mg_stream_ops	*ops;
	void				*ctx;
	int				 timeout_ms;
	/*
	 * Sticky errors, one per direction: a peer that stopped reading
	 * may still have sent us bytes worth keeping (a sync receiver
	 * whose acknowledgement failed goes on storing what arrives).
	 */
	enum mg_err			 err;	/* reading */
	enum mg_err			 werr;	/* writing */
	size_t				 rpos, rlen;
	size_t				 wlen;
	unsigned char			 rbuf[MG_STREAM_BUFSIZ];
	unsigned char			 wbuf[MG_STREAM_BUFSIZ];
};

struct fd_ctx {
	int	fd;		/* reads */
	int	wfd;		/* writes: fd, or another (stdin/stdout) */
	int	own;
};

static int
fd_wait(int fd, short ev, int timeout_ms, enum mg_err *err)
{
	struct pollfd	pfd = { .fd = fd, .events = ev };
	int		r;

	if (timeout_ms < 0)
		return 0;
	do
		r = poll(&pfd, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		*err = MG_EIO;
		return -1;
	}
	if (r == 0) {
		errno = ETIMEDOUT;
		*err = MG_ETEMP;
		return -1;
	}
	return 0;
}

static ssize_t
fd_read(void *vctx, void *p, size_t n, int timeout_ms, enum mg_err *err)
{
	struct fd_ctx	*c = vctx;
	ssize_t		 r;

	for (;;) {
		if (fd_wait(c->fd, POLLIN, timeout_ms, err) < 0)
			return -1;
		if ((r = read(c->fd, p, n)) >= 0)
			return r;
		if (errno != EINTR && errno != EAGAIN) {
			*err = mg_err_from_errno(errno);
			if (*err == MG_ENOTFOUND || *err == MG_EEXIST)
				*err = MG_EIO;
			return -1;
		}
	}
}

static ssize_t
fd_write(void *vctx, const void *p, size_t n, int timeout_ms,
    enum mg_err *err)
{
	struct fd_ctx	*c = vctx;
	ssize_t		 r;

	for (;;) {
		if (fd_wait(c->wfd, POLLOUT, timeout_ms, err) < 0)
			return -1;
		if ((r = write(c->wfd, p, n)) >= 0)
			return r;
		if (errno != EINTR && errno != EAGAIN) {
			*err = errno == ENOSPC || errno == EDQUOT ?
			    MG_ENOSPC : MG_EIO;
			return -1;
		}
	}
}

static void
fd_close(void *vctx)
{
	struct fd_ctx *c = vctx;

	if (c->own) {
		close(c->fd);
		if (c->wfd != c->fd)
			close(c->wfd);
	}
	free(c);
}

static const struct mg_stream_ops fd_ops = { fd_read, fd_write, fd_close };

struct mg_stream *
mg_stream_new(const struct mg_stream_ops *ops, void *ctx)
{
	struct mg_stream *s;

	if ((s = malloc(sizeof(*s))) == NULL)
		return NULL;
	s->ops = ops;
	s->ctx = ctx;
	s->timeout_ms = -1;
	s->err = s->werr = MG_OK;
	s->rpos = s->rlen = s->wlen = 0;
	return s;
}

struct mg_stream *
mg_stream_fd(int fd, int own)
{
	return mg_stream_fd2(fd, fd, own);
}

struct mg_stream *
mg_stream_fd2(int rfd, int wfd, int own)
{
	struct fd_ctx		*c;
	struct mg_stream	*s;

	if ((c = malloc(sizeof(*c))) == NULL)
		return NULL;
	c->fd = rfd;
	c->wfd = wfd;
	c->own = own;
	if ((s = mg_stream_new(&fd_ops, c)) == NULL)
		free(c);
	return s;
}

void
mg_stream_close(struct mg_stream *s)
{
	if (s == NULL)
		return;
	if (s->ops->close)
		s->ops->close(s->ctx);
	free(s);
}

void
mg_stream_set_timeout(struct mg_stream *s, int ms)
{
	s->timeout_ms = ms;
}

enum mg_err
mg_stream_error(const struct mg_stream *s)
{
	return s->err != MG_OK ? s->err : s->werr;
}

static int
stream_fill(struct mg_stream *s)
{
	ssize_t		r;
	enum mg_err	e = MG_EIO;

	if (s->err != MG_OK)
		return -1;
	r = s->ops->read(s->ctx, s->rbuf, sizeof(s->rbuf), s->timeout_ms, &e);
	if (r < 0) {
		s->err = e;
		return -1;
	}
	s->rpos = 0;
	s->rlen = (size_t)r;
	return (int)(r > 0);
}

ssize_t
mg_stream_read(struct mg_stream *s, void *p, size_t n)
{
	size_t take;
	int r;

	if (s->err != MG_OK)
		return -1;
	if (n == 0)
		return 0;
	if (s->rpos == s->rlen) {
		/* Large reads bypass the buffer: no copy for bulk data. */
		if (n >= sizeof(s->rbuf)) {
			ssize_t		rr;
			enum mg_err	e = MG_EIO;

			rr = s->ops->read(s->ctx, p, n, s->timeout_ms, &e);
			if (rr < 0)
				s->err = e;
			return rr;
		}
		if ((r = stream_fill(s)) <= 0)
			return r;
	}
	take = s->rlen - s->rpos < n ? s->rlen - s->rpos : n;
	memcpy(p, s->rbuf + s->rpos, take);
	s->rpos += take;
	return (ssize_t)take;
}

enum mg_err
mg_stream_read_full(struct mg_stream *s, void *p, size_t n, size_t *got)
{
	size_t	done = 0;
	ssize_t	r;

	while (done < n) {
		r = mg_stream_read(s, (unsigned char *)p + done, n - done);
		if (r < 0)
			break;
		if (r == 0) {
			if (got)
				*got = done;
			return MG_EDATA;
		}
		done += (size_t)r;
	}
	if (got)
		*got = done;
	return done == n ? MG_OK : s->err;
}

enum mg_err
mg_stream_getline(struct mg_stream *s, char *buf, size_t max, size_t *len)
{
	size_t			 n = 0, avail, take;
	const unsigned char	*nl;
	int			 r;

	*len = 0;
	while (n < max) {
		if (s->rpos == s->rlen) {
			if ((r = stream_fill(s)) < 0)
				return s->err;
			if (r == 0)
				break;
		}
		avail = s->rlen - s->rpos;
		nl = memchr(s->rbuf + s->rpos, '\n', avail);
		take = nl ? (size_t)(nl - (s->rbuf + s->rpos)) + 1 : avail;
		if (take > max - n)
			take = max - n;
		memcpy(buf + n, s->rbuf + s->rpos, take);
		s->rpos += take;
		n += take;
		if (buf[n - 1] == '\n') {
			*len = n;
			return MG_OK;
		}
	}
	*len = n;
	return n == max ? MG_ELIMIT : MG_OK;
}

static enum mg_err
stream_drain(struct mg_stream *s)
{
	size_t		off = 0;
	ssize_t		r;
	enum mg_err	e = MG_EIO;

	while (off < s->wlen) {
		r = s->ops->write(s->ctx, s->wbuf + off, s->wlen - off,
		    s->timeout_ms, &e);
		if (r <= 0) {
			s->werr = r < 0 ? e : MG_EIO;
			return s->werr;
		}
		off += (size_t)r;
	}
	s->wlen = 0;
	return MG_OK;
}

enum mg_err
mg_stream_write(struct mg_stream *s, const void *p, size_t n)
{
	const unsigned char	*c = p;
	size_t			 take;

	if (s->werr != MG_OK)
		return s->werr;
	while (n > 0) {
		if (s->wlen == sizeof(s->wbuf) && stream_drain(s) != MG_OK)
			return s->werr;
		take = sizeof(s->wbuf) - s->wlen;
		if (take > n)
			take = n;
		memcpy(s->wbuf + s->wlen, c, take);
		s->wlen += take;
		c += take;
		n -= take;
	}
	return MG_OK;
}

enum mg_err
mg_stream_puts(struct mg_stream *s, const char *str)
{
	return mg_stream_write(s, str, strlen(str));
}

enum mg_err
mg_stream_printf(struct mg_stream *s, const char *fmt, ...)
{
	char	 small[1024], *big = NULL;
	va_list	 ap;
	int	 n;
	enum mg_err e;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return s->werr = MG_ESOFTWARE;
	if ((size_t)n < sizeof(small))
		return mg_stream_write(s, small, (size_t)n);
	if ((big = malloc((size_t)n + 1)) == NULL)
		return s->werr = MG_ENOMEM;
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	e = mg_stream_write(s, big, (size_t)n);
	free(big);
	return e;
}

enum mg_err
mg_stream_flush(struct mg_stream *s)
{
	if (s->werr != MG_OK)
		return s->werr;
	return stream_drain(s);
}

enum mg_err
mg_stream_put_field(struct mg_stream *s, unsigned char tag, const void *p,
    size_t n)
{
	unsigned char hdr[MG_FIELD_HDR];

	if (n > UINT32_MAX)
		return s->werr = MG_ELIMIT;
	hdr[0] = tag;
	mg_put_be32(hdr + 1, (uint32_t)n);
	mg_stream_write(s, hdr, sizeof(hdr));
	return mg_stream_write(s, p, n);
}

enum mg_err
mg_stream_get_field_hdr(struct mg_stream *s, unsigned char *tag,
    size_t *len, size_t max)
{
	unsigned char	hdr[MG_FIELD_HDR];
	enum mg_err	e;
	uint32_t	n;

	if ((e = mg_stream_read_full(s, hdr, sizeof(hdr), NULL)) != MG_OK)
		return e;
	n = mg_get_be32(hdr + 1);
	if (n > max)
		return MG_ELIMIT;
	*tag = hdr[0];
	*len = n;
	return MG_OK;
}
