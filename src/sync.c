/*
 * sync.c - the sync protocol engine (see sync.h and mgate-sync(5)).
 *
 * Everything the peer sends is checked: frame sizes are bounded before
 * anything is allocated, bundle IDs must be 32 hex digits and are used
 * in file names only after that, data must arrive at exactly the offset
 * the receiver asked for, and a bundle is applied only through the
 * unpacker, which verifies it whole before committing anything.  The
 * peer's name comes from our configuration (the transport authenticated
 * it), never from the stream.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mgate/buf.h"
#include "mgate/bundle.h"
#include "mgate/fsutil.h"
#include "mgate/log.h"
#include "mgate/stream.h"
#include "mgate/sync.h"
#include "mgate/unpacker.h"

#define F_HELLO		'H'
#define F_OFFER		'O'
#define F_RESUME	'R'
#define F_DATA		'D'
#define F_END		'E'
#define F_FIN		'F'
#define F_ACK		'A'

#define FRAME_MAX	(1024 * 1024)
#define DATA_PIECE	65536
#define MAX_OFFERS	1000
#define HAVE_ALL	UINT64_MAX
#define ENTRY_LEN	40	/* 32 hex ID + be64 */
#define MAX_PACKS	64	/* bundles packed per sync */

static enum mg_err __attribute__((format(printf, 3, 4)))
xerr(struct sync_ctx *x, enum mg_err e, const char *fmt, ...)
{
	va_list ap;

	if (x->err[0] != '\0')	/* keep the first, most specific reason */
		return e;
	va_start(ap, fmt);
	vsnprintf(x->err, x->errlen, fmt, ap);
	va_end(ap);
	return e;
}

static enum mg_err
link_err(struct sync_ctx *x, const char *what)
{
	enum mg_err e = mg_stream_error(x->s);

	return xerr(x, e == MG_OK ? MG_EPROTO : MG_ETEMP, "link to %s lost "
	    "while %s (%s)", x->pk->peer->name, what, e == MG_OK ?
	    "unexpected end of stream" : mg_strerror(e));
}

static enum mg_err
send_frame(struct sync_ctx *x, unsigned char type, const void *p,
    size_t n)
{
	mg_stream_put_field(x->s, type, p, n);
	return mg_stream_error(x->s);
}

static enum mg_err
recv_frame(struct sync_ctx *x, unsigned char *type, struct mg_buf *b,
    const char *what)
{
	size_t		n;
	enum mg_err	e;

	mg_buf_reset(b);
	if ((e = mg_stream_get_field_hdr(x->s, type, &n, FRAME_MAX)) != MG_OK) {
		if (e == MG_ELIMIT)
			return xerr(x, MG_EPROTO, "%s sent a frame larger than "
			    "%d bytes while %s", x->pk->peer->name, FRAME_MAX,
			    what);
		return link_err(x, what);
	}
	if (mg_buf_reserve(b, n) != MG_OK)
		return xerr(x, MG_ENOMEM, "out of memory");
	if (mg_stream_read_full(x->s, b->data, n, NULL) != MG_OK)
		return link_err(x, what);
	b->len = n;
	return MG_OK;
}

static enum mg_err
hello(struct sync_ctx *x, int first)
{
	struct mg_buf	b;
	unsigned char	type;
	uint64_t	ver = 0;
	enum mg_err	e;
	struct mg_rd	rd;

	mg_buf_init(&b, FRAME_MAX);
	if (first) {
		mg_buf_put_field_u64(&b, 'v', SYNC_VERSION);
		mg_buf_put_str(&b, 'n', x->cfg->local_name);
		if ((e = send_frame(x, F_HELLO, b.data, b.len)) != MG_OK ||
		    (e = mg_stream_flush(x->s)) != MG_OK) {
			e = link_err(x, "saying hello");
			goto out;
		}
	}
	if ((e = recv_frame(x, &type, &b, "waiting for hello")) != MG_OK)
		goto out;
	if (type != F_HELLO) {
		e = xerr(x, MG_EPROTO, "%s did not start with hello (is the "
		    "remote command `mgate serve'?)", x->pk->peer->name);
		goto out;
	}
	mg_rd_init(&rd, b.data, b.len);
	while (!mg_rd_eof(&rd)) {
		uint8_t			 tag;
		const unsigned char	*v;
		size_t			 vn;

		if (mg_rd_field(&rd, &tag, &v, &vn) != MG_OK) {
			e = xerr(x, MG_EPROTO, "malformed hello from %s",
			    x->pk->peer->name);
			goto out;
		}
		if (tag == 'v')
			mg_field_u64(v, vn, &ver);
	}
	if (ver != SYNC_VERSION) {
		e = xerr(x, MG_EPROTO, "%s speaks sync version %llu, we speak "
		    "%d: upgrade the older side", x->pk->peer->name,
		    (unsigned long long)ver, SYNC_VERSION);
		goto out;
	}
	if (!first) {
		mg_buf_reset(&b);
		mg_buf_put_field_u64(&b, 'v', SYNC_VERSION);
		mg_buf_put_str(&b, 'n', x->cfg->local_name);
		if ((e = send_frame(x, F_HELLO, b.data, b.len)) != MG_OK ||
		    (e = mg_stream_flush(x->s)) != MG_OK)
			e = link_err(x, "saying hello");
	}
out:
	mg_buf_free(&b);
	return e;
}

/* ---- sending bundles ---- */

static void
progress(struct sync_ctx *x, uint64_t done, uint64_t total, time_t t0)
{
	double	el = difftime(time(NULL), t0), rate;

	if (!x->progress || total == 0)
		return;
	rate = el > 0 ? (double)done / el : 0;
	fprintf(stderr, "\r%s: up %6.1f/%.1f KiB  %6.1f KiB/s  ETA %4.0fs ",
	    x->pk->peer->name, done / 1024.0, total / 1024.0, rate / 1024.0,
	    rate > 0 ? (double)(total - done) / rate : 0.0);
}

static void
pack_all(struct sync_ctx *x)
{
	struct pack_result	res;
	char			err[512];
	enum mg_err		e;

	for (int i = 0; i < MAX_PACKS; i++) {
		e = packer_build(x->sp, x->pk, &res, err, sizeof(err));
		if (e == MG_ENOTFOUND)
			return;
		if (e != MG_OK) {
			mg_warn("packing for %s: %s", x->pk->peer->name, err);
			return;
		}
		x->st.up_raw += res.raw;
	}
}

static enum mg_err
send_bundle_data(struct sync_ctx *x, const char *id, uint64_t off,
    uint64_t size, uint64_t *sent, uint64_t total, time_t t0)
{
	unsigned char	 hdr[MG_FIELD_HDR + ENTRY_LEN];
	unsigned char	 buf[DATA_PIECE];
	char		 path[4200];
	ssize_t		 n;
	int		 fd;
	enum mg_err	 e = MG_OK;

	if ((e = spool_bundle_path(x->sp, id, path, sizeof(path))) != MG_OK)
		return e;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return xerr(x, MG_EIO, "bundle %s: %s: %s", id, path,
		    strerror(errno));
	if (lseek(fd, (off_t)off, SEEK_SET) < 0) {
		close(fd);
		return xerr(x, MG_EIO, "bundle %s: seek: %s", id,
		    strerror(errno));
	}
	while (off < size) {
		size_t want = size - off < sizeof(buf) ? size - off :
		    sizeof(buf);

		if ((n = read(fd, buf, want)) <= 0) {
			e = xerr(x, MG_EIO, "bundle %s: %s shorter than "
			    "recorded", id, path);
			break;
		}
		hdr[0] = F_DATA;
		mg_put_be32(hdr + 1, (uint32_t)(ENTRY_LEN + (size_t)n));
		memcpy(hdr + MG_FIELD_HDR, id, 32);
		mg_put_be64(hdr + MG_FIELD_HDR + 32, off);
		mg_stream_write(x->s, hdr, sizeof(hdr));
		if ((e = mg_stream_write(x->s, buf, (size_t)n)) != MG_OK) {
			e = link_err(x, "sending data");
			break;
		}
		off += (uint64_t)n;
		*sent += (uint64_t)n;
		x->st.up_bytes += (uint64_t)n;
		progress(x, *sent, total, t0);
	}
	close(fd);
	if (e == MG_OK && send_frame(x, F_END, id, 32) != MG_OK)
		e = link_err(x, "sending data");
	return e;
}

static void
bundle_done(struct sync_ctx *x, const char *id, const char *how)
{
	struct spool_bundle	sb;
	char			path[4200];
	size_t			nrcpt = 0;

	if (spool_bundle_get(x->sp, id, &sb) == MG_OK) {
		x->st.up_msgs += sb.nqid;
		spool_bundle_free(&sb);
	}
	if (spool_bundle_acked(x->sp, id, &nrcpt) == MG_OK &&
	    spool_bundle_path(x->sp, id, path, sizeof(path)) == MG_OK)
		unlink(path);
	x->st.up_bundles++;
	mg_info("bundle %s: %s by %s, %zu recipient%s accepted", id, how,
	    x->pk->peer->name, nrcpt, nrcpt == 1 ? "" : "s");
}

static enum mg_err
send_phase(struct sync_ctx *x)
{
	struct spool_bundle	*v = NULL;
	struct mg_buf		 b;
	struct mg_rd		 rd;
	size_t			 nb = 0, noff = 0, pending = 0;
	unsigned char		 type, entry[ENTRY_LEN];
	uint64_t		*offs = NULL, total = 0, sent = 0;
	time_t			 t0 = time(NULL);
	enum mg_err		 e = MG_OK;

	mg_buf_init(&b, FRAME_MAX);
	pack_all(x);
	if ((e = spool_bundle_list(x->sp, x->pk->peer->name, &v, &nb)))
		goto out;
	/* Offer every finished bundle, oldest first. */
	for (size_t i = 0; i < nb && noff < MAX_OFFERS; i++) {
		if (v[i].state != SB_READY)
			continue;
		memcpy(entry, v[i].id, 32);
		mg_put_be64(entry + 32, v[i].size);
		if ((e = mg_buf_append(&b, entry, sizeof(entry))) != MG_OK)
			goto out;
		if (i != noff) {	/* compact the READY ones to the front */
			struct spool_bundle t = v[noff];

			v[noff] = v[i];
			v[i] = t;
		}
		noff++;
	}
	if ((e = send_frame(x, F_OFFER, b.data, b.len)) != MG_OK ||
	    (e = mg_stream_flush(x->s)) != MG_OK) {
		e = link_err(x, "offering bundles");
		goto out;
	}
	if ((e = recv_frame(x, &type, &b, "waiting for the resume offsets")))
		goto out;
	if (type != F_RESUME || b.len != noff * ENTRY_LEN) {
		e = xerr(x, MG_EPROTO, "%s answered the offer with a malformed "
		    "resume frame", x->pk->peer->name);
		goto out;
	}
	if ((offs = calloc(noff ? noff : 1, sizeof(*offs))) == NULL) {
		e = MG_ENOMEM;
		goto out;
	}
	mg_rd_init(&rd, b.data, b.len);
	for (size_t i = 0; i < noff; i++) {
		const unsigned char *p;

		mg_rd_bytes(&rd, ENTRY_LEN, &p);
		if (memcmp(p, v[i].id, 32) != 0) {
			e = xerr(x, MG_EPROTO, "%s answered for bundles we did "
			    "not offer", x->pk->peer->name);
			goto out;
		}
		offs[i] = mg_get_be64(p + 32);
		if (offs[i] != HAVE_ALL && offs[i] > v[i].size) {
			e = xerr(x, MG_EPROTO, "%s asked to resume bundle %s "
			    "past its end", x->pk->peer->name, v[i].id);
			goto out;
		}
		if (offs[i] != HAVE_ALL)
			total += v[i].size - offs[i];
	}
	for (size_t i = 0; i < noff; i++) {
		if (offs[i] == HAVE_ALL) {
			/* Committed before our last link dropped. */
			x->st.skipped += v[i].size;
			bundle_done(x, v[i].id, "already committed");
			continue;
		}
		if (offs[i] > 0) {
			x->st.skipped += offs[i];
			mg_info("bundle %s: resuming at byte %llu of %llu",
			    v[i].id, (unsigned long long)offs[i],
			    (unsigned long long)v[i].size);
		}
		if ((e = send_bundle_data(x, v[i].id, offs[i], v[i].size,
		    &sent, total, t0)) != MG_OK)
			goto out;
		pending++;
	}
	if ((e = send_frame(x, F_FIN, NULL, 0)) != MG_OK ||
	    (e = mg_stream_flush(x->s)) != MG_OK) {
		e = link_err(x, "sending data");
		goto out;
	}
	if (x->progress && total)
		fputc('\n', stderr);
	/* Acknowledgements, one per bundle sent, after the peer commits. */
	while (pending > 0) {
		char	id[33];
		int	ok;

		if ((e = recv_frame(x, &type, &b, "waiting for "
		    "acknowledgements")) != MG_OK)
			goto out;
		if (type != F_ACK || b.len < 33) {
			e = xerr(x, MG_EPROTO, "%s sent a malformed "
			    "acknowledgement", x->pk->peer->name);
			goto out;
		}
		memcpy(id, b.data, 32);
		id[32] = '\0';
		ok = b.data[32] == 0;
		pending--;
		if (!spool_bundle_id_valid(id))
			continue;
		if (ok)
			bundle_done(x, id, "committed");
		else {
			x->st.rejected++;
			mg_error("bundle %s: rejected by %s: %.*s", id,
			    x->pk->peer->name, (int)(b.len - 33),
			    (const char *)b.data + 33);
			xerr(x, MG_EPROTO, "bundle %s: rejected by %s: %.*s",
			    id, x->pk->peer->name, (int)(b.len - 33),
			    (const char *)b.data + 33);
		}
	}
out:
	for (size_t i = 0; i < nb; i++)
		spool_bundle_free(&v[i]);
	free(v);
	free(offs);
	mg_buf_free(&b);
	if (e == MG_OK && x->st.rejected)
		e = MG_EPROTO;
	return e;
}

/* ---- receiving bundles ---- */

struct incoming {
	char		id[33];
	uint64_t	size;
	uint64_t	have;		/* bytes in the .part file */
	int		fd;
	int		done;
};

static enum mg_err
part_path(struct sync_ctx *x, const char *id, char *buf, size_t len)
{
	return mg_path(buf, len, "%s/incoming/%s.%s.part", spool_dir(x->sp),
	    x->pk->peer->name, id);
}

/*
 * How much of a partial bundle is good: run a decoder over it and keep
 * what verified.  Streams the file; memory does not depend on its size.
 */
static uint64_t
verified_prefix(struct sync_ctx *x, const char *path)
{
	struct bundle_dec_params	 dp;
	struct bundle_dec		*dec = NULL;
	unsigned char			 buf[65536];
	ssize_t				 n;
	uint64_t			 off = 0;
	int				 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	memset(&dp, 0, sizeof(dp));
	dp.self_keys = x->pk->self;
	dp.senders = &x->pk->peer_pub;
	dp.nsenders = 1;
	if (bundle_dec_new(&dp, &dec) == MG_OK) {
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			if (bundle_dec_feed(dec, buf, (size_t)n) != MG_OK)
				break;
		off = bundle_dec_verified_offset(dec);
	}
	bundle_dec_free(dec);
	close(fd);
	return off;
}

static enum mg_err
send_ack(struct sync_ctx *x, const char *id, int ok, const char *text)
{
	struct mg_buf	b;
	enum mg_err	e;

	mg_buf_init(&b, 4096);
	mg_buf_append(&b, id, 32);
	mg_buf_put_u8(&b, ok ? 0 : 1);
	mg_buf_append(&b, text, strlen(text) > 2000 ? 2000 : strlen(text));
	e = send_frame(x, F_ACK, b.data, b.len);
	mg_buf_free(&b);
	if (e == MG_OK)
		e = mg_stream_flush(x->s);
	/*
	 * Not a reason to stop: the sender may have pipelined more bundle
	 * data that is already on its way to us, and storing it saves
	 * sending it again.  The read side ends the session when it ends.
	 */
	return e == MG_OK ? MG_OK : MG_ETEMP;
}

static enum mg_err
finish_incoming(struct sync_ctx *x, struct incoming *in)
{
	struct unpack_result	res;
	char			path[4200], err[1024];
	enum mg_err		e;

	close(in->fd);
	in->fd = -1;
	in->done = 1;
	if (part_path(x, in->id, path, sizeof(path)) != MG_OK)
		return MG_ELIMIT;
	if (in->have != in->size)
		return xerr(x, MG_EPROTO, "bundle %s: %llu bytes announced, "
		    "%llu received", in->id, (unsigned long long)in->size,
		    (unsigned long long)in->have);
	e = unpacker_apply(x->sp, x->cfg, x->pk->self, x->pk->peer->name,
	    path, &res, err, sizeof(err));
	if (e != MG_OK && mg_err_is_temp(e)) {
		/*
		 * A busy or full spool is not the bundle's fault: keep every
		 * byte, so that the next sync finds it whole and sends
		 * nothing again.
		 */
		mg_error("bundle %s from %s: cannot commit it now, kept for "
		    "the next sync: %s", in->id, x->pk->peer->name, err);
		return xerr(x, e, "bundle %s: %s", in->id, err);
	}
	/*
	 * Keep nothing that failed verification: resuming it would only
	 * fail again.  The sender still holds the bundle.
	 */
	unlink(path);
	if (e != MG_OK) {
		mg_error("bundle %s from %s rejected: %s", in->id,
		    x->pk->peer->name, err);
		(void)send_ack(x, in->id, 0, err);
		return MG_OK;
	}
	if (strcmp(res.id, in->id) != 0) {
		mg_error("bundle %s from %s: its header says %s", in->id,
		    x->pk->peer->name, res.id);
		(void)send_ack(x, in->id, 0, "bundle ID does not match the "
		    "offer");
		return MG_OK;
	}
	x->st.down_bundles++;
	x->st.down_msgs += res.created;
	x->st.down_status += res.nstatus;
	/*
	 * If the acknowledgement cannot be written, the link is going:
	 * keep reading and storing what is still coming in, so the next
	 * sync resumes as far on as possible; the stream's end stops us.
	 */
	if (send_ack(x, in->id, 1, res.replay ? "committed before" :
	    "committed") != MG_OK)
		mg_info("bundle %s: committed; the acknowledgement could not be "
		    "sent, the next sync will learn it", in->id);
	return MG_OK;
}

static enum mg_err
recv_phase(struct sync_ctx *x)
{
	struct incoming		*in = NULL;
	struct mg_buf		 b;
	struct mg_rd		 rd;
	struct stat		 st;
	unsigned char		 type, entry[ENTRY_LEN];
	char			 path[4200], key[600];
	size_t			 n = 0;
	uint64_t		 maxb = x->pk->peer->max_bundle_size * 2 +
	    (1 << 20);
	enum mg_err		 e = MG_OK;

	mg_buf_init(&b, FRAME_MAX);
	if ((e = recv_frame(x, &type, &b, "waiting for an offer")) != MG_OK)
		goto out;
	if (type != F_OFFER || b.len % ENTRY_LEN != 0 ||
	    b.len / ENTRY_LEN > MAX_OFFERS) {
		e = xerr(x, MG_EPROTO, "malformed offer from %s",
		    x->pk->peer->name);
		goto out;
	}
	n = b.len / ENTRY_LEN;
	if ((in = calloc(n ? n : 1, sizeof(*in))) == NULL) {
		e = MG_ENOMEM;
		goto out;
	}
	mg_rd_init(&rd, b.data, b.len);
	for (size_t i = 0; i < n; i++) {
		const unsigned char *p;

		mg_rd_bytes(&rd, ENTRY_LEN, &p);
		memcpy(in[i].id, p, 32);
		in[i].id[32] = '\0';
		in[i].size = mg_get_be64(p + 32);
		in[i].fd = -1;
		if (!spool_bundle_id_valid(in[i].id) || in[i].size > maxb) {
			e = xerr(x, MG_EPROTO, "%s offered an invalid or "
			    "oversized bundle", x->pk->peer->name);
			goto out;
		}
		for (size_t k = 0; k < i; k++)
			if (strcmp(in[k].id, in[i].id) == 0) {
				e = xerr(x, MG_EPROTO, "%s offered bundle %s "
				    "twice", x->pk->peer->name, in[i].id);
				goto out;
			}
	}
	/* Answer with how much of each we already hold. */
	mg_buf_reset(&b);
	for (size_t i = 0; i < n; i++) {
		uint64_t off = 0;

		snprintf(key, sizeof(key), "%s:%s", x->pk->peer->name,
		    in[i].id);
		if (spool_seen_check(x->sp, "bundle", key) == MG_OK) {
			off = HAVE_ALL;
			in[i].done = 1;
			/* Killed between the commit and the cleanup? */
			if (part_path(x, in[i].id, path, sizeof(path)) ==
			    MG_OK)
				unlink(path);
		} else if ((e = part_path(x, in[i].id, path, sizeof(path))))
			goto out;
		else if (stat(path, &st) == 0) {
			off = verified_prefix(x, path);
			if (off > in[i].size)
				off = 0;
			if (truncate(path, (off_t)off) < 0)
				off = 0, unlink(path);
		}
		if (!in[i].done) {
			in[i].fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW |
			    O_CLOEXEC, 0600);
			if (in[i].fd < 0 || ftruncate(in[i].fd, (off_t)off)) {
				e = xerr(x, MG_ETEMP, "%s: %s", path,
				    strerror(errno));
				goto out;
			}
			lseek(in[i].fd, (off_t)off, SEEK_SET);
			in[i].have = off;
		}
		memcpy(entry, in[i].id, 32);
		mg_put_be64(entry + 32, off);
		mg_buf_append(&b, entry, sizeof(entry));
	}
	if ((e = send_frame(x, F_RESUME, b.data, b.len)) != MG_OK ||
	    (e = mg_stream_flush(x->s)) != MG_OK) {
		e = link_err(x, "answering the offer");
		goto out;
	}
	for (;;) {
		struct incoming	*cur = NULL;
		char		 id[33];
		unsigned char	 dh[ENTRY_LEN];
		size_t		 flen;
		uint64_t	 left;

		if ((e = mg_stream_get_field_hdr(x->s, &type, &flen,
		    FRAME_MAX)) != MG_OK) {
			e = e == MG_ELIMIT ? xerr(x, MG_EPROTO, "%s sent a "
			    "frame larger than %d bytes", x->pk->peer->name,
			    FRAME_MAX) : link_err(x, "receiving data");
			goto out;
		}
		if (type == F_FIN && flen == 0)
			break;
		if ((type != F_DATA || flen < ENTRY_LEN) &&
		    (type != F_END || flen != 32)) {
			e = xerr(x, MG_EPROTO, "unexpected frame from %s",
			    x->pk->peer->name);
			goto out;
		}
		if (mg_stream_read_full(x->s, dh, type == F_DATA ? ENTRY_LEN :
		    32, NULL) != MG_OK) {
			e = link_err(x, "receiving data");
			goto out;
		}
		memcpy(id, dh, 32);
		id[32] = '\0';
		for (size_t i = 0; i < n; i++)
			if (strcmp(in[i].id, id) == 0 && !in[i].done)
				cur = &in[i];
		if (cur == NULL) {
			e = xerr(x, MG_EPROTO, "%s sent data for a bundle not "
			    "in transfer", x->pk->peer->name);
			goto out;
		}
		if (type == F_END) {
			if ((e = finish_incoming(x, cur)) != MG_OK)
				goto out;
			continue;
		}
		left = flen - ENTRY_LEN;
		if (mg_get_be64(dh + 32) != cur->have ||
		    left > cur->size - cur->have) {
			e = xerr(x, MG_EPROTO, "%s sent data for bundle %s at "
			    "the wrong offset", x->pk->peer->name, id);
			goto out;
		}
		/*
		 * Store the data as it arrives, not frame by frame: on a
		 * slow link a cut then costs only what was in flight.
		 */
		if (mg_buf_reserve(&b, DATA_PIECE) != MG_OK) {
			e = MG_ENOMEM;
			goto out;
		}
		while (left > 0) {
			ssize_t got;

			got = mg_stream_read(x->s, b.data, left < DATA_PIECE ?
			    (size_t)left : DATA_PIECE);
			if (got <= 0) {
				e = link_err(x, "receiving data");
				goto out;
			}
			if ((e = mg_write_all(cur->fd, b.data, (size_t)got)) !=
			    MG_OK) {
				e = xerr(x, e, "writing bundle %s: %s", id,
				    strerror(errno));
				goto out;
			}
			cur->have += (uint64_t)got;
			left -= (uint64_t)got;
			x->st.down_bytes += (uint64_t)got;
		}
	}
out:
	for (size_t i = 0; in && i < n; i++)
		if (in[i].fd >= 0)
			close(in[i].fd);
	free(in);
	mg_buf_free(&b);
	return e;
}

enum mg_err
sync_client(struct sync_ctx *x)
{
	enum mg_err e, e2;

	x->err[0] = '\0';
	if ((e = hello(x, 1)) != MG_OK)
		return e;
	e = send_phase(x);
	if (e != MG_OK && e != MG_EPROTO)
		return e;
	/* A refused bundle does not stop the way back. */
	if ((e2 = recv_phase(x)) != MG_OK)
		return e2;
	return e;
}

enum mg_err
sync_server(struct sync_ctx *x)
{
	enum mg_err e, e2;

	x->err[0] = '\0';
	if ((e = hello(x, 0)) != MG_OK)
		return e;
	if ((e = recv_phase(x)) != MG_OK)
		return e;
	e2 = send_phase(x);
	return e2;
}
