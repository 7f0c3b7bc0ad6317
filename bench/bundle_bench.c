/*
 * bundle_bench.c - what bundles cost on the wire, and how fast the codec
 * runs, on the shared corpus ham (easy_ham, easy_ham_2, hard_ham; mbox
 * From lines stripped).
 *
 * Prints side by side, in one run: bytes in / bytes out for bundles of
 * 1, 10 and 100 messages (whole bundles: preamble, header, signature,
 * chunk framing and tags included; and the deflate stream alone), for
 * single messages under 2 KiB with and without the preset dictionary,
 * against gzip -9 per message (zlib level 9 with the gzip wrapper),
 * and gzip -9 / xz -9 of the concatenation (the real tools, run with
 * posix_spawnp, no shell); encode and decode MB/s on one core; chunk
 * overhead.  Usage: bundle_bench [CORPUS_DIR]  (default MGATE_CORPUS or
 * ../shared/corpus/spamassassin-public).
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "mgate/buf.h"
#include "mgate/bundle.h"
#include "mgate/keys.h"

extern char **environ;

struct msg {
	unsigned char	*p;
	size_t		 n;
};

static struct msg	*msgs;
static size_t		 nmsgs;
static uint64_t		 total_in;
static struct mg_keypair *alice, *bob;

static double
now(void)
{
	struct timespec ts;

	/* CPU time: "MB/s on one core", even on a busy machine. */
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
load_dir(const char *root, const char *sub)
{
	char		 path[4096], **names = NULL;
	size_t		 nn = 0, cap = 0, i;
	DIR		*d;
	struct dirent	*de;
	FILE		*f;
	struct stat	 st;

	snprintf(path, sizeof(path), "%s/%s", root, sub);
	if ((d = opendir(path)) == NULL) {
		fprintf(stderr, "bench: cannot open %s\n", path);
		exit(1);
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (nn == cap) {
			cap = cap ? 2 * cap : 1024;
			names = realloc(names, cap * sizeof(*names));
		}
		names[nn++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, nn, sizeof(*names), cmpstr);
	for (i = 0; i < nn; i++) {
		unsigned char *buf, *nl;
		size_t n;

		snprintf(path, sizeof(path), "%s/%s/%s", root, sub, names[i]);
		if ((f = fopen(path, "rb")) == NULL || fstat(fileno(f), &st))
			exit(1);
		buf = malloc(st.st_size + 1);
		n = fread(buf, 1, st.st_size, f);
		fclose(f);
		msgs = realloc(msgs, (nmsgs + 1) * sizeof(*msgs));
		if (n >= 5 && memcmp(buf, "From ", 5) == 0 &&
		    (nl = memchr(buf, '\n', n)) != NULL) {
			size_t skip = nl + 1 - buf;

			memmove(buf, buf + skip, n - skip);
			n -= skip;
		}
		msgs[nmsgs].p = buf;
		msgs[nmsgs].n = n;
		nmsgs++;
		total_in += n;
		free(names[i]);
	}
	free(names);
}

static enum mg_err
sink(void *arg, const void *p, size_t n)
{
	return mg_buf_append(arg, p, n);
}

/* Bundle msgs[from..to) into out; returns MG_OK. */
static enum mg_err
bundle(size_t from, size_t to, struct mg_buf *out, int no_dict)
{
	struct bundle_enc_params pp;
	struct bundle_enc	*enc = NULL;
	struct bundle_rcpt	 r = { "someone@example.org", 0, "" };
	struct bundle_msg	 m = { "Q", "sender@example.org", "", 0, &r, 1,
				    0 };
	enum mg_err		 e;
	size_t			 i;

	memset(&pp, 0, sizeof(pp));
	pp.sender_keys = alice;
	pp.sender_name = "site";
	pp.receiver_name = "gateway";
	pp.receiver_pub = &bob->pub;
	pp.no_dict = no_dict;
	if ((e = bundle_enc_new(&pp, sink, out, &enc)) != MG_OK)
		return e;
	for (i = from; i < to && e == MG_OK; i++) {
		char qid[32];

		snprintf(qid, sizeof(qid), "4X%06zu", i);
		m.qid = qid;
		m.size = msgs[i].n;
		e = bundle_enc_msg_begin(enc, &m);
		if (e == MG_OK)
			e = bundle_enc_msg_write(enc, msgs[i].p, msgs[i].n);
		if (e == MG_OK)
			e = bundle_enc_msg_end(enc);
	}
	if (e == MG_OK)
		e = bundle_enc_finish(enc);
	bundle_enc_free(enc);
	return e;
}

/* Framing bytes of a bundle: preamble, sealed header, chunk len+tag. */
static size_t
framing(const struct mg_buf *b, size_t *chunks)
{
	size_t	 off = BUNDLE_PREAMBLE_LEN + ((size_t)b->data[6] << 8 |
		     b->data[7]), fr = off;
	uint32_t w;

	*chunks = 0;
	while (off + 4 <= b->len) {
		w = mg_get_be32(b->data + off);
		off += 4 + (w & ~BUNDLE_CHUNK_LAST) + BUNDLE_TAG_LEN;
		fr += 4 + BUNDLE_TAG_LEN;
		(*chunks)++;
		if (w & BUNDLE_CHUNK_LAST)
			break;
	}
	return fr;
}

struct sizes {
	uint64_t	in, out, stream, hdr, chunkfr, chunks;
};

static void
run_bundles(size_t per, int no_dict, size_t maxmsg, struct sizes *s,
    struct mg_buf *keep, double *secs)
{
	struct mg_buf	b;
	size_t		i, j, nc, fr;
	double		t0 = now();

	memset(s, 0, sizeof(*s));
	mg_buf_init(&b, 1 << 30);
	for (i = 0; i < nmsgs; i = j) {
		/* per == 1 may select small messages only (maxmsg). */
		j = i + per < nmsgs ? i + per : nmsgs;
		if (per == 1 && msgs[i].n > maxmsg)
			continue;
		mg_buf_reset(&b);
		if (bundle(i, j, &b, no_dict) != MG_OK)
			exit(1);
		for (size_t k = i; k < j; k++)
			s->in += msgs[k].n;
		fr = framing(&b, &nc);
		s->out += b.len;
		s->stream += b.len - fr;
		s->hdr += BUNDLE_PREAMBLE_LEN + ((size_t)b.data[6] << 8 |
		    b.data[7]);
		s->chunkfr += nc * (4 + BUNDLE_TAG_LEN);
		s->chunks += nc;
		if (keep != NULL)
			mg_buf_append(keep, b.data, b.len);
	}
	if (secs != NULL)
		*secs = now() - t0;
	mg_buf_free(&b);
}

static uint64_t
gzip_per_message(size_t maxmsg, uint64_t *in)
{
	uint64_t	tot = 0;
	unsigned char	out[1 << 20];
	size_t		i;
	z_stream	z;

	*in = 0;
	for (i = 0; i < nmsgs; i++) {
		if (msgs[i].n > maxmsg || msgs[i].n > sizeof(out) / 2)
			continue;
		memset(&z, 0, sizeof(z));
		deflateInit2(&z, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
		z.next_in = msgs[i].p;
		z.avail_in = msgs[i].n;
		z.next_out = out;
		z.avail_out = sizeof(out);
		deflate(&z, Z_FINISH);
		tot += sizeof(out) - z.avail_out;
		*in += msgs[i].n;
		deflateEnd(&z);
	}
	return tot;
}

/* Size of `prog -9 -c FILE` output, run without a shell. */
static long long
tool_size(const char *prog, const char *file)
{
	char		 outp[] = "/tmp/bundle_bench.outXXXXXX";
	char		*argv[] = { (char *)prog, "-9", "-c", (char *)file, NULL };
	posix_spawn_file_actions_t fa;
	struct stat	 st;
	pid_t		 pid;
	int		 fd, status;
	long long	 r = -1;

	if ((fd = mkstemp(outp)) < 0)
		return -1;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fd, 1);
	if (posix_spawnp(&pid, prog, &fa, NULL, argv, environ) == 0 &&
	    waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	    WEXITSTATUS(status) == 0 && fstat(fd, &st) == 0)
		r = st.st_size;
	posix_spawn_file_actions_destroy(&fa);
	close(fd);
	unlink(outp);
	return r;
}

static enum mg_err
noop_data(void *a, const void *p, size_t n)
{
	(void)a;
	(void)p;
	(void)n;
	return MG_OK;
}

int
main(int argc, char **argv)
{
	const char	*root = argc > 1 ? argv[1] : getenv("MGATE_CORPUS");
	struct sizes	 s1, s10, s100, ss, ssn;
	struct mg_buf	 all;
	double		 tenc, tdec;
	uint64_t	 gz_in, gz, gzs_in, gzs;
	long long	 gzc, xzc;
	char		 tmpf[] = "/tmp/bundle_bench.catXXXXXX";
	int		 fd;
	size_t		 i, off;

	if (root == NULL)
		root = "../shared/corpus/spamassassin-public";
	if (keys_parse_private("mgate-private-1 "
	    "/IsZq4bkFTr4HVSUy60mbTN9VatMGlaxLoevdI0YSiI= "
	    "IE7lnQnkd+VTNSn30WlbHSpVAJTDfw/fEnvIOcAYtFo=", &alice) != MG_OK ||
	    keys_parse_private("mgate-private-1 "
	    "06ydsEJhx/z0VDz7btQVD96jsWa/tarKrVYc9pBMHAQ= "
	    "CPrpHhccaFUHQbBIzIA0YOae1DkHOo7Lm0fMGnbwo2U=", &bob) != MG_OK)
		return 1;
	load_dir(root, "easy_ham");
	load_dir(root, "easy_ham_2");
	load_dir(root, "hard_ham");
	printf("corpus ham: %zu messages, %llu bytes (From lines stripped)\n\n",
	    nmsgs, (unsigned long long)total_in);

	mg_buf_init(&all, 1u << 30);
	run_bundles(1, 0, (size_t)-1, &s1, NULL, NULL);
	run_bundles(10, 0, (size_t)-1, &s10, NULL, NULL);
	run_bundles(100, 0, (size_t)-1, &s100, &all, &tenc);
	run_bundles(1, 0, 2047, &ss, NULL, NULL);
	run_bundles(1, 1, 2047, &ssn, NULL, NULL);
	gz = gzip_per_message((size_t)-1, &gz_in);
	gzs = gzip_per_message(2047, &gzs_in);

	/* Decode every bundle of 100, timing it. */
	{
		struct bundle_dec_params dp;
		struct bundle_dec	*d = NULL;
		double			 t0 = now();
		uint32_t		 w;

		memset(&dp, 0, sizeof(dp));
		dp.self_keys = bob;
		dp.senders = &alice->pub;
		dp.nsenders = 1;
		dp.cb.msg_data = noop_data;
		for (off = 0; off < all.len; ) {
			size_t start = off;

			/* Walk the framing to find this bundle's end. */
			off += BUNDLE_PREAMBLE_LEN + ((size_t)all.data[off + 6]
			    << 8 | all.data[off + 7]);
			do {
				w = mg_get_be32(all.data + off);
				off += 4 + (w & ~BUNDLE_CHUNK_LAST) +
				    BUNDLE_TAG_LEN;
			} while (!(w & BUNDLE_CHUNK_LAST));
			if (bundle_dec_new(&dp, &d) != MG_OK ||
			    bundle_dec_feed(d, all.data + start, off - start) !=
			    MG_OK || bundle_dec_finish(d) != MG_OK) {
				fprintf(stderr, "decode: %s\n",
				    bundle_dec_errmsg(d));
				return 1;
			}
			bundle_dec_free(d);
		}
		tdec = now() - t0;
	}

	/* The real tools on the concatenation. */
	if ((fd = mkstemp(tmpf)) < 0)
		return 1;
	for (i = 0; i < nmsgs; i++)
		if (write(fd, msgs[i].p, msgs[i].n) != (ssize_t)msgs[i].n)
			return 1;
	close(fd);
	gzc = tool_size("gzip", tmpf);
	xzc = tool_size("xz", tmpf);
	unlink(tmpf);

#define R(a, b)	((b) ? (double)(a) / (double)(b) : 0.0)
	printf("%-44s %12s %12s %8s\n", "", "bytes in", "bytes out",
	    "in/out");
	printf("%-44s %12llu %12llu %7.2fx\n", "bundles of 1 (whole bundle)",
	    (unsigned long long)s1.in, (unsigned long long)s1.out,
	    R(s1.in, s1.out));
	printf("%-44s %12llu %12llu %7.2fx\n", "bundles of 10 (whole bundle)",
	    (unsigned long long)s10.in, (unsigned long long)s10.out,
	    R(s10.in, s10.out));
	printf("%-44s %12llu %12llu %7.2fx\n", "bundles of 100 (whole bundle)",
	    (unsigned long long)s100.in, (unsigned long long)s100.out,
	    R(s100.in, s100.out));
	printf("%-44s %12llu %12llu %7.2fx\n",
	    "bundles of 100 (deflate stream only)",
	    (unsigned long long)s100.in, (unsigned long long)s100.stream,
	    R(s100.in, s100.stream));
	printf("%-44s %12llu %12llu %7.2fx\n", "gzip -9 per message (zlib)",
	    (unsigned long long)gz_in, (unsigned long long)gz, R(gz_in, gz));
	printf("%-44s %12llu %12lld %7.2fx\n", "gzip -9 of the concatenation",
	    (unsigned long long)total_in, gzc, R(total_in, gzc));
	printf("%-44s %12llu %12lld %7.2fx\n", "xz -9 of the concatenation",
	    (unsigned long long)total_in, xzc, R(total_in, xzc));
	printf("\nsingle messages under 2 KiB (%s):\n", "bundles of 1");
	printf("%-44s %12llu %12llu %7.2fx\n", "  whole bundle, dictionary",
	    (unsigned long long)ss.in, (unsigned long long)ss.out,
	    R(ss.in, ss.out));
	printf("%-44s %12llu %12llu %7.2fx\n",
	    "  deflate stream only, dictionary",
	    (unsigned long long)ss.in, (unsigned long long)ss.stream,
	    R(ss.in, ss.stream));
	printf("%-44s %12llu %12llu %7.2fx\n",
	    "  deflate stream only, no dictionary",
	    (unsigned long long)ssn.in, (unsigned long long)ssn.stream,
	    R(ssn.in, ssn.stream));
	printf("%-44s %12llu %12llu %7.2fx\n", "  gzip -9 per message (zlib)",
	    (unsigned long long)gzs_in, (unsigned long long)gzs,
	    R(gzs_in, gzs));
	printf("\nspeed, one core (bundles of 100, uncompressed MB per CPU "
	    "second):\n");
	printf("  encode %.1f MB/s   decode %.1f MB/s\n",
	    s100.in / tenc / 1e6, s100.in / tdec / 1e6);
	printf("\noverhead in bundles of 100: chunk framing %.3f%% "
	    "(%llu chunks x 20 bytes), header %.3f%% (%llu bytes per "
	    "bundle)\n", 100.0 * s100.chunkfr / s100.out,
	    (unsigned long long)s100.chunks, 100.0 * s100.hdr / s100.out,
	    (unsigned long long)(s100.hdr / ((nmsgs + 99) / 100)));
	printf("overhead in bundles of 1: chunk framing %.2f%%, header "
	    "%.2f%%\n", 100.0 * s1.chunkfr / s1.out, 100.0 * s1.hdr / s1.out);
	mg_buf_free(&all);
	for (i = 0; i < nmsgs; i++)
		free(msgs[i].p);
	free(msgs);
	keys_free(alice);
	keys_free(bob);
	return 0;
}
