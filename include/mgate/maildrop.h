/*
 * maildrop.h - the submission file: envelope and content as one
 * length-prefixed record stream, committed with fsync and rename.
 *
 * Layout (every field is tag, 4-byte big-endian length, bytes):
 *   magic "MGDROP\0\1" (8 bytes, not a field)
 *   'I' queue ID   'A' arrival (u64)   'U' user   'S' sender
 *   'E' ENVID (optional)   'T' RET (u64)   'B' body type (u64)
 *   'R' recipient, its value itself fields: 'a' address,
 *       'n' NOTIFY bits (u64), 'o' ORCPT (optional)
 *   'C' content, any number, each at most MAILDROP_CHUNK bytes
 *   'Z' end: u64 content size, then 32-byte SHA-256 of the content
 * A file is complete only with its 'Z' field and a matching digest.
 * The same file, renamed, is the spooled message's body file.
 */
#ifndef MGATE_MAILDROP_H
#define MGATE_MAILDROP_H

#include <stddef.h>
#include <sys/types.h>

#include "mgate/envelope.h"
#include "mgate/err.h"

#define MAILDROP_CHUNK		65536
#define MAILDROP_MAGIC		"MGDROP\0\1"
#define MAILDROP_MAGIC_LEN	8

struct maildrop_writer;
struct maildrop_reader;

/*
 * Create tmp/QID under spool (O_EXCL|O_NOFOLLOW, mode 0600).  env->qid
 * is filled in with a fresh ID.
 */
enum mg_err maildrop_create(const char *spool, struct mg_envelope *env,
	    struct maildrop_writer **);
/* The same, committing into spool/subdir instead of maildrop/. */
enum mg_err maildrop_create_in(const char *spool, const char *subdir,
	    struct mg_envelope *env, struct maildrop_writer **);
/* The same, writing the temporary file in spool/tmpdir. */
enum mg_err maildrop_create_at(const char *spool, const char *tmpdir,
	    const char *subdir, struct mg_envelope *env,
	    struct maildrop_writer **);
enum mg_err maildrop_put_envelope(struct maildrop_writer *,
	    const struct mg_envelope *);
enum mg_err maildrop_put_content(struct maildrop_writer *, const void *,
	    size_t);
uint64_t maildrop_size(const struct maildrop_writer *);
/*
 * The commit point: end field, fsync, rename into maildrop/, fsync the
 * directory.  The writer is freed whatever the result; on failure the
 * temporary file is removed.
 */
enum mg_err maildrop_commit(struct maildrop_writer *);
void	maildrop_abort(struct maildrop_writer *);

/* Open a committed file (maildrop or body) and read its envelope. */
enum mg_err maildrop_open(const char *path, struct maildrop_reader **,
	    char *errbuf, size_t errlen);
const struct mg_envelope *maildrop_envelope(const struct maildrop_reader *);
/*
 * Next piece of content; 0 at the verified end.  Returns -1 with *err
 * set on I/O error or on a digest or size mismatch (MG_ECORRUPT).
 */
ssize_t	maildrop_read(struct maildrop_reader *, void *, size_t,
	    enum mg_err *err);
/* Read and verify all content without keeping it. */
enum mg_err maildrop_verify(struct maildrop_reader *);
void	maildrop_close(struct maildrop_reader *);

#endif
