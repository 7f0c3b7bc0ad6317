/*
 * stream.h - buffered byte streams with deadlines over any transport.
 *
 * One struct mg_stream wraps a transport (a file descriptor now; TLS and
 * SSH channels plug in through struct mg_stream_ops) and adds buffering,
 * a per-operation timeout and a sticky error: after the first failure
 * every call fails the same way, so writers can chain calls and check
 * mg_stream_error() once at the commit point.  Protocol code (SMTP, sync,
 * spool files) uses only this interface, never the transport's own.
 */
#ifndef MGATE_STREAM_H
#define MGATE_STREAM_H

#include <stddef.h>
#include <sys/types.h>

#include "mgate/err.h"

struct mg_stream;

struct mg_stream_ops {
	/* Return bytes moved, 0 at EOF (read only), or -1 with *err set. */
	ssize_t	(*read)(void *ctx, void *, size_t, int timeout_ms,
		    enum mg_err *err);
	ssize_t	(*write)(void *ctx, const void *, size_t, int timeout_ms,
		    enum mg_err *err);
	void	(*close)(void *ctx);
};

#define MG_STREAM_BUFSIZ	65536

struct mg_stream *mg_stream_new(const struct mg_stream_ops *, void *ctx);
/* If own is set, mg_stream_close() closes fd too. */
struct mg_stream *mg_stream_fd(int fd, int own);
/* Read from rfd, write to wfd (a pipe pair, stdin and stdout). */
struct mg_stream *mg_stream_fd2(int rfd, int wfd, int own);
void	mg_stream_close(struct mg_stream *);
void	mg_stream_set_timeout(struct mg_stream *, int ms); /* <0: none */
enum mg_err mg_stream_error(const struct mg_stream *);

/* Up to n bytes; 0 at EOF; -1 on error. */
ssize_t	mg_stream_read(struct mg_stream *, void *, size_t n);
/* Exactly n bytes; MG_EDATA if EOF comes first (*got says how many). */
enum mg_err mg_stream_read_full(struct mg_stream *, void *, size_t n,
	    size_t *got);
/*
 * One line including its LF, at most max bytes.  *len = 0 at EOF.  A
 * line longer than max returns MG_ELIMIT with the first max bytes in buf
 * so the caller may report or continue it; the error is not sticky.
 */
enum mg_err mg_stream_getline(struct mg_stream *, char *buf, size_t max,
	    size_t *len);
enum mg_err mg_stream_write(struct mg_stream *, const void *, size_t);
enum mg_err mg_stream_puts(struct mg_stream *, const char *);
enum mg_err mg_stream_printf(struct mg_stream *, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
enum mg_err mg_stream_flush(struct mg_stream *);

/* Record framing over a stream: tag (1) + length (4, big-endian). */
enum mg_err mg_stream_put_field(struct mg_stream *, unsigned char tag,
	    const void *, size_t);
/* Reads a field header; MG_ELIMIT if the length exceeds max. */
enum mg_err mg_stream_get_field_hdr(struct mg_stream *, unsigned char *tag,
	    size_t *len, size_t max);

#endif
