/*
 * fuzz_smtpd.c - libFuzzer harness for the gateway's SMTP server session.
 *
 * The input is everything a hostile client sends on one connection:
 * commands, DATA and BDAT content, AUTH exchanges, pipelined groups.
 * smtpd_session() runs in-process on one end of a socketpair, without
 * TLS (so AUTH is always refused, as before STARTTLS); a thread writes
 * the input into the other end, closes it for writing and collects the
 * replies.  The gateway configuration (as in tests/80-smtpd.t) has two
 * sites, ship (ship.example.org, ship2.example.org) and boat
 * (boat.example.com); inbound mail for them is stored in a spool made
 * once, under /dev/shm when it exists (commits are fsync'd), emptied
 * every RESET_AFTER stored messages.  The harness keeps that spool open,
 * so a session's commit joins the Berkeley DB environment instead of
 * opening (and recovering) it each time, as a fresh child of the
 * listener would.  FUZZ_SMTPD_DUMP=1 prints the replies, FUZZ_SMTPD_STATS=1
 * the number of stored messages at exit.
 *
 * Beyond "no crash, no leak, no undefined behaviour", every input must
 * leave:
 *   - a reply stream of whole lines "DDD SP/- text CRLF", the first a
 *     220 greeting, a code from 200 to 559, the text free of control
 *     characters (tab aside) and at most 1024 bytes with its CRLF;
 *   - for every "250 ... queued as QID", the body file queue/QID on disk
 *     (durable before 250);
 *   - nothing in the spool's tmp/ (an aborted message leaves no file);
 *   - no file descriptor left open.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include "mgate/config.h"
#include "mgate/log.h"
#include "mgate/passwd.h"
#include "mgate/smtp_server.h"
#include "mgate/spool.h"

#define INPUT_MAX	(1024 * 1024)
#define MAX_REPLIES	(4 * 1024 * 1024)	/* kept for checking */
#define RESET_AFTER	2000			/* stored messages */

int LLVMFuzzerInitialize(int *, char ***);
int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static struct mg_config	*cfg;
static struct spool	*hold;		/* keeps the environment open */
static char		 top[256];	/* the temporary directory */
static char		 spooldir[300];
static unsigned long	 stored;	/* messages since the last reset */
static unsigned long	 total_stored, resets;
static int		 dump;

struct feeder {
	int		 fd;
	const uint8_t	*in;
	size_t		 len;
	char		*out;		/* replies, NUL-terminated */
	size_t		 outlen;
	int		 truncated;
};

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

static void
spool_reset(void)
{
	char err[512];

	spool_close(hold);
	hold = NULL;
	nftw(spooldir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	if (spool_open(spooldir, SPOOL_CREATE, &hold, err, sizeof(err)) !=
	    MG_OK) {
		fprintf(stderr, "fuzz_smtpd: %s\n", err);
		abort();
	}
	total_stored += stored;
	stored = 0;
}

static void
cleanup(void)
{
	if (getenv("FUZZ_SMTPD_STATS"))
		fprintf(stderr, "fuzz_smtpd: %lu messages stored, %lu spool "
		    "resets\n", total_stored + stored, resets);
	spool_close(hold);
	hold = NULL;
	if (top[0])
		nftw(top, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	mg_config_free(cfg);
	cfg = NULL;
}

/*
 * A crash or a leak ends the fuzzer with _exit(), past cleanup(): remove
 * what runs that are gone left behind (the directory names their PID).
 */
static void
remove_stale(const char *base)
{
	DIR		*d;
	struct dirent	*de;
	char		 path[600];
	long		 pid;

	if ((d = opendir(base)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (sscanf(de->d_name, "mgate-fuzz-smtpd.%ld.", &pid) != 1 ||
		    pid <= 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		snprintf(path, sizeof(path), "%s/%s", base, de->d_name);
		nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	}
	closedir(d);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char		 hash[256], text[2048], err[1024];
	const char	*base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" :
			    getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	int		 n;

	(void)argc; (void)argv;
	signal(SIGPIPE, SIG_IGN);
	mg_log_init("fuzz_smtpd", MG_LOG_NONE);
	remove_stale(base);
	snprintf(top, sizeof(top), "%s/mgate-fuzz-smtpd.%ld.XXXXXX", base,
	    (long)getpid());
	if (mkdtemp(top) == NULL) {
		perror(top);
		abort();
	}
	snprintf(spooldir, sizeof(spooldir), "%s/gw", top);
	if (passwd_hash("correct horse battery staple", hash, sizeof(hash)) !=
	    MG_OK)
		abort();
	/* As in tests/80-smtpd.t: one site, its domains, a password. */
	n = snprintf(text, sizeof(text),
	    "role = gateway\n"
	    "spool_directory = %s\n"
	    "myhostname = gw.example.net\n"
	    "mydomain = example.net\n"
	    "local_name = gw\n"
	    "dns_resolver = 127.0.0.1:9\n"
	    "smtpd_timeout = 1s\n"
	    "smtpd_max_errors = 10\n"
	    "message_size_limit = 100000\n"
	    "recipient_limit = 5\n"
	    "\n"
	    "[peer ship]\n"
	    "transport = file\n"
	    "domains = ship.example.org, ship2.example.org\n"
	    "sender_domains = ship.example.org\n"
	    "smtp_password_hash = %s\n"
	    "\n"
	    "[peer boat]\n"
	    "transport = file\n"
	    "domains = boat.example.com\n"
	    "sender_domains = boat.example.com\n",
	    spooldir, hash);
	if (n < 0 || (size_t)n >= sizeof(text) ||
	    mg_config_parse("fuzz_smtpd.conf", text, (size_t)n, &cfg, err,
	    sizeof(err)) != MG_OK) {
		fprintf(stderr, "fuzz_smtpd: %s\n", err);
		abort();
	}
	spool_reset();
	atexit(cleanup);
	dump = getenv("FUZZ_SMTPD_DUMP") != NULL;
	return 0;
}

/* Write the input, then half-close; read replies until the server ends. */
static void *
feed(void *arg)
{
	struct feeder	*f = arg;
	size_t		 off = 0, cap = 0;
	int		 shut = 0;
	char		 buf[16384];

	fcntl(f->fd, F_SETFL, fcntl(f->fd, F_GETFL) | O_NONBLOCK);
	for (;;) {
		struct pollfd	pfd = { .fd = f->fd, .events = POLLIN };
		ssize_t		r;

		if (!shut && off == f->len) {
			shutdown(f->fd, SHUT_WR);
			shut = 1;
		}
		if (!shut)
			pfd.events |= POLLOUT;
		if (poll(&pfd, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			abort();
		}
		if (!shut && (pfd.revents & (POLLOUT | POLLERR | POLLHUP))) {
			r = send(f->fd, f->in + off, f->len - off,
			    MSG_NOSIGNAL | MSG_DONTWAIT);
			if (r > 0)
				off += (size_t)r;
			else if (r < 0 && errno != EAGAIN && errno != EINTR)
				off = f->len;	/* the server hung up */
		}
		if (pfd.revents & (POLLIN | POLLERR | POLLHUP)) {
			r = recv(f->fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (r == 0 || (r < 0 && errno != EAGAIN &&
			    errno != EINTR))
				break;
			if (r < 0)
				continue;
			if (f->outlen + (size_t)r > MAX_REPLIES) {
				f->truncated = 1;
				continue;
			}
			if (f->outlen + (size_t)r + 1 > cap) {
				cap = (f->outlen + (size_t)r + 1) * 2;
				if ((f->out = realloc(f->out, cap)) == NULL)
					abort();
			}
			memcpy(f->out + f->outlen, buf, (size_t)r);
			f->outlen += (size_t)r;
			f->out[f->outlen] = '\0';
		}
	}
	return NULL;
}

static void
check_queued(const char *qid, size_t n)
{
	char		path[600];
	struct stat	st;

	snprintf(path, sizeof(path), "%s/queue/%.*s", spooldir, (int)n, qid);
	if (stat(path, &st) < 0) {
		fprintf(stderr, "fuzz_smtpd: 250 for %s, no body file\n", path);
		abort();
	}
	stored++;
}

/* Every reply line well-formed; count what was stored. */
static void
check_replies(const struct feeder *f)
{
	const char	*p = f->out, *end = f->out + f->outlen;

	if (f->outlen < 5 || memcmp(p, "220 ", 4) != 0) {
		fprintf(stderr, "fuzz_smtpd: no 220 greeting\n");
		abort();
	}
	while (p < end) {
		const char	*eol = memchr(p, '\n', (size_t)(end - p));
		size_t		 n;

		if (eol == NULL) {
			if (f->truncated)
				break;
			fprintf(stderr, "fuzz_smtpd: reply without LF: "
			    "%.*s\n", (int)(end - p), p);
			abort();
		}
		n = (size_t)(eol - p) + 1;
		if (n < 6 || n > 1024 || eol[-1] != '\r' ||
		    p[0] < '2' || p[0] > '5' || p[1] < '0' || p[1] > '5' ||
		    p[2] < '0' || p[2] > '9' || (p[3] != ' ' && p[3] != '-')) {
			fprintf(stderr, "fuzz_smtpd: malformed reply line: "
			    "%.*s\n", (int)n, p);
			abort();
		}
		for (size_t i = 4; i < n - 2; i++) {
			unsigned char c = (unsigned char)p[i];

			if ((c < 0x20 && c != '\t') || c == 0x7f) {
				fprintf(stderr, "fuzz_smtpd: control byte 0x%02x "
				    "in reply: %.*s\n", c, (int)n - 2, p);
				abort();
			}
		}
		if (n > 30 && memcmp(p, "250 2.0.0 Ok: queued as ", 24) == 0)
			check_queued(p + 24, n - 26);
		p = eol + 1;
	}
}

static void
check_tmp_empty(void)
{
	char		 path[600];
	DIR		*d;
	struct dirent	*de;

	snprintf(path, sizeof(path), "%s/tmp", spooldir);
	if ((d = opendir(path)) == NULL)
		abort();
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			fprintf(stderr, "fuzz_smtpd: left behind: tmp/%s\n",
			    de->d_name);
			abort();
		}
	closedir(d);
}

static int
lowest_free_fd(void)
{
	int fd = dup(0);

	if (fd >= 0)
		close(fd);
	return fd;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct feeder	f;
	pthread_t	t;
	int		sv[2], fd0;

	if (len > INPUT_MAX)
		return 0;
	fd0 = lowest_free_fd();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	memset(&f, 0, sizeof(f));
	f.fd = sv[1];
	f.in = data;
	f.len = len;
	if (pthread_create(&t, NULL, feed, &f) != 0)
		abort();
	smtpd_session(cfg, NULL, sv[0], "[192.0.2.1]");
	close(sv[0]);		/* the feeder sees EOF */
	pthread_join(t, NULL);
	close(sv[1]);
	if (dump)	/* FUZZ_SMTPD_DUMP=1: show the server's side */
		fwrite(f.out, 1, f.outlen, stderr);
	check_replies(&f);
	free(f.out);
	check_tmp_empty();
	if (lowest_free_fd() != fd0) {
		fprintf(stderr, "fuzz_smtpd: file descriptor leaked\n");
		abort();
	}
	if (stored >= RESET_AFTER) {
		spool_reset();
		resets++;
	}
	return 0;
}
