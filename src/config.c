/*
 * config.c - the mgate.conf parser, validator and printer.
 *
 * One table row per key drives everything: parsing (type, bounds),
 * defaults, `mgate check-config' output and the documentation dump.
 * The file is untrusted text: lines are bounded, every value is checked
 * against its type and bounds, unknown and repeated keys are errors, and
 * each error names the file and line.  Nothing here opens the spool.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mgate/buf.h"
#include "mgate/config.h"

#define CONF_MAX_SIZE	(1024 * 1024)
#define CONF_LINE_MAX	4096

enum ctype { CT_STR, CT_PATH, CT_HOST, CT_SIZE, CT_UINT, CT_BOOL, CT_ENUM,
	CT_TIME };

struct ckey {
	const char	*name;
	enum ctype	 type;
	size_t		 off;
	const char	*def;		/* NULL: no default (unset) */
	uint64_t	 min, max;	/* numeric bounds */
	const char	*const *choices; /* CT_ENUM, index stored */
	const char	*doc;
};

static const char *const logdest_names[] = { "syslog", "stderr", NULL };
static const char *const role_names[] = { "site", "gateway", NULL };
static const char *const transport_names[] = { "ssh", "smtp", "smarthost",
	"file", NULL };
static const char *const tls_policy_names[] = { "none", "may", "encrypt",
	"verify", NULL };
static const char *const local_delivery_names[] = { "maildir", "mbox", "mda",
	NULL };

#define G(f)	offsetof(struct mg_config, f)
#define P(f)	offsetof(struct mg_peer, f)
#define KiB	1024ULL
#define MiB	(1024ULL * 1024)
#define GiB	(1024ULL * 1024 * 1024)

static const struct ckey global_keys[] = {
	{ "role", CT_ENUM, G(role), "site", 0, 0, role_names,
	  "site (queues mail for its gateway) or gateway (delivers it)" },
	{ "spool_directory", CT_PATH, G(spool_directory), "/var/spool/mgate",
	  0, 0, NULL, "where queued mail and the queue database live" },
	{ "myhostname", CT_HOST, G(myhostname), NULL, 0, 0, NULL,
	  "this host's name (default: the system host name)" },
	{ "mydomain", CT_HOST, G(mydomain), NULL, 0, 0, NULL,
	  "domain for unqualified addresses and Message-IDs "
	  "(default: myhostname less its first label)" },
	{ "log_destination", CT_ENUM, G(log_destination), "syslog", 0, 0,
	  logdest_names, "where event lines go: syslog or stderr" },
	{ "message_size_limit", CT_SIZE, G(message_size_limit), "25M",
	  1 * KiB, 4 * GiB, NULL, "largest message accepted, in bytes" },
	{ "header_size_limit", CT_SIZE, G(header_size_limit), "1M",
	  1 * KiB, 64 * MiB, NULL,
	  "largest header section of a submitted message, in bytes" },
	{ "recipient_limit", CT_UINT, G(recipient_limit), "1000", 1, 100000,
	  NULL, "most recipients one message may have" },
	{ "allow_nul_bytes", CT_BOOL, G(allow_nul_bytes), "no", 0, 0, NULL,
	  "accept messages containing NUL bytes" },
	{ "pickup_after_queue", CT_BOOL, G(pickup_after_queue), "yes", 0, 0,
	  NULL, "import a submission into the queue database right after "
	  "`mgate queue' commits it (in the background)" },
	{ "local_name", CT_STR, G(local_name), NULL, 0, 0, NULL,
	  "this host's name in bundles: the peer's [peer NAME] for us "
	  "(default: myhostname)" },
	{ "private_key", CT_PATH, G(private_key), NULL, 0, 0, NULL,
	  "this host's bundle key pair (from `mgate keygen')" },
	{ "default_peer", CT_STR, G(default_peer), NULL, 0, 0, NULL,
	  "peer that outgoing mail goes to (default: the only peer)" },
	{ "local_delivery", CT_ENUM, G(local_delivery), "maildir", 0, 0,
	  local_delivery_names, "how reports and inbound mail reach local "
	  "users: maildir, mbox or mda" },
	{ "local_mailbox", CT_STR, G(local_mailbox), "%h/Maildir/", 0, 0, NULL,
	  "a user's Maildir or mbox; %u is the login, %h the home directory" },
	{ "mda_command", CT_STR, G(mda_command), NULL, 0, 0, NULL,
	  "MDA run with the message on stdin (no shell; %u is the login)" },
	{ "dns_resolver", CT_STR, G(dns_resolver), NULL, 0, 0, NULL,
	  "resolver for MX lookups, address[:port] (default: resolv.conf)" },
	{ "smtp_port", CT_UINT, G(smtp_port), "25", 1, 65535, NULL,
	  "port of the recipients' mail exchangers" },
	{ "smtp_helo_name", CT_HOST, G(smtp_helo_name), NULL, 0, 0, NULL,
	  "name in EHLO (default: myhostname)" },
	{ "smtp_tls_policy", CT_ENUM, G(smtp_tls_policy), "may", 0, 0,
	  tls_policy_names, "STARTTLS for delivery: none, may, encrypt, "
	  "verify" },
	{ "smtp_tls_policy_map", CT_STR, G(smtp_tls_policy_map), NULL, 0, 0,
	  NULL, "per-domain TLS policy: domain=policy, comma-separated" },
	{ "smtp_tls_ca_file", CT_PATH, G(smtp_tls_ca_file), NULL, 0, 0, NULL,
	  "CA certificates for the verify policy (default: the system's)" },
	{ "smtp_connect_timeout", CT_TIME, G(smtp_connect_timeout), "30s", 1,
	  3600, NULL, "time to wait for a TCP connection to an MX" },
	{ "smtp_command_timeout", CT_TIME, G(smtp_command_timeout), "5m", 1,
	  3600, NULL, "time to wait for a reply (RFC 5321 4.5.3.2)" },
	{ "smtp_data_timeout", CT_TIME, G(smtp_data_timeout), "10m", 1, 3600,
	  NULL, "time to wait for the reply to the end of data" },
	{ "delivery_concurrency", CT_UINT, G(delivery_concurrency), "20", 1,
	  1000, NULL, "most deliveries at once" },
	{ "destination_concurrency", CT_UINT, G(destination_concurrency), "2",
	  1, 100, NULL, "most deliveries at once to one domain" },
	{ "retry_first", CT_TIME, G(retry_first), "4m", 1, 86400, NULL,
	  "wait before the first retry (short, for greylisting)" },
	{ "maximal_backoff", CT_TIME, G(maximal_backoff), "4h", 1, 604800,
	  NULL, "longest wait between retries" },
	{ "history_lifetime", CT_TIME, G(history_lifetime), "7d", 1, 31536000,
	  NULL, "site: how long sent mail whose fate is known stays listed" },
	{ "maximal_queue_lifetime", CT_TIME, G(maximal_queue_lifetime), "5d", 1,
	  31536000, NULL, "how long to retry before a message bounces" },
	{ "queue_run_interval", CT_TIME, G(queue_run_interval), "30s", 1, 3600,
	  NULL, "how often the daemon looks for due deliveries" },
	{ "max_received_headers", CT_UINT, G(max_received_headers), "50", 1,
	  1000, NULL, "more Received: fields than this is a loop" },
	{ "daemon_user", CT_STR, G(daemon_user), NULL, 0, 0, NULL,
	  "gateway: user `mgate daemon' runs as once its sockets are bound "
	  "(it must own the spool)" },
	{ "smtpd_listen", CT_STR, G(smtpd_listen), NULL, 0, 0, NULL,
	  "gateway: SMTP listener addresses, address:port, comma-separated" },
	{ "smtpd_tls_cert_file", CT_PATH, G(smtpd_tls_cert_file), NULL, 0, 0,
	  NULL, "gateway: the listener's certificate chain (PEM)" },
	{ "smtpd_tls_key_file", CT_PATH, G(smtpd_tls_key_file), NULL, 0, 0,
	  NULL, "gateway: the listener's private key (PEM)" },
	{ "smtpd_max_sessions", CT_UINT, G(smtpd_max_sessions), "50", 1,
	  10000, NULL, "gateway: most SMTP sessions at once (session workers)" },
	{ "smtpd_timeout", CT_TIME, G(smtpd_timeout), "5m", 1, 3600, NULL,
	  "gateway: idle time before an SMTP client is dropped" },
	{ "smtpd_max_errors", CT_UINT, G(smtpd_max_errors), "10", 1, 1000,
	  NULL, "gateway: protocol errors before a session is dropped" },
};

static const struct ckey peer_keys[] = {
	{ "transport", CT_ENUM, P(transport), "ssh", 0, 0, transport_names,
	  "how to reach the peer: ssh, smtp, smarthost or file" },
	{ "host", CT_HOST, P(host), NULL, 0, 0, NULL,
	  "the peer's host name or address" },
	{ "port", CT_UINT, P(port), "0", 0, 65535, NULL,
	  "the peer's port (0: the transport's default)" },
	{ "user", CT_STR, P(user), "mgate", 0, 0, NULL,
	  "login name at the peer" },
	{ "identity_file", CT_PATH, P(identity_file), NULL, 0, 0, NULL,
	  "SSH private key (Ed25519) used to log in" },
	{ "known_hosts", CT_PATH, P(known_hosts), NULL, 0, 0, NULL,
	  "known_hosts file holding the peer's SSH host key" },
	{ "public_key", CT_PATH, P(public_key), NULL, 0, 0, NULL,
	  "the peer's bundle public key file" },
	{ "max_bundle_size", CT_SIZE, P(max_bundle_size), "10M", 4 * KiB,
	  4 * GiB, NULL, "largest bundle sent to this peer, in bytes" },
	{ "connect_timeout", CT_TIME, P(connect_timeout), "30s", 1, 3600,
	  NULL, "seconds to wait for the link to answer" },
	{ "io_timeout", CT_TIME, P(io_timeout), "2m", 1, 86400, NULL,
	  "seconds without progress before a link counts as dead" },
	{ "domains", CT_STR, P(domains), NULL, 0, 0, NULL,
	  "gateway: the site's mail domains, comma-separated: the gateway "
	  "accepts mail for them and carries it to the site" },
	{ "smtp_password_hash", CT_STR, P(smtp_password_hash), NULL, 0, 0,
	  NULL, "gateway: the site's SMTP AUTH password, as made by "
	  "`mgate passwd-hash'" },
	{ "password_file", CT_PATH, P(password_file), NULL, 0, 0, NULL,
	  "site: file holding the SMTP AUTH password for this peer" },
	{ "tls_ca_file", CT_PATH, P(tls_ca_file), NULL, 0, 0, NULL,
	  "site: CA certificates that sign the peer's TLS certificate" },
	{ "tls_fingerprint", CT_STR, P(tls_fingerprint), NULL, 0, 0, NULL,
	  "site: the peer's certificate SHA-256 fingerprint (hex), pinned" },
	{ "sender_domains", CT_STR, P(sender_domains), NULL, 0, 0, NULL,
	  "gateway: domains this site may send as, comma-separated "
	  "(unset: none)" },
	{ "recipients", CT_STR, P(recipients), NULL, 0, 0, NULL,
	  "gateway: the site's recipients (addresses, or local parts for "
	  "every domain), comma-separated; others are refused at RCPT "
	  "(unset: anyone at its domains)" },
};

#define NKEYS(t)	(sizeof(t) / sizeof((t)[0]))

struct parser {
	const char	*file;
	int		 line;
	char		*err;
	size_t		 errlen;
	struct mg_config *cfg;
	struct mg_peer	*peer;		/* current section, NULL: global */
	int		 gseen[NKEYS(global_keys)];	/* line set, 0: not */
	int		 pseen[NKEYS(peer_keys)];
};

static enum mg_err __attribute__((format(printf, 2, 3)))
perr(struct parser *p, const char *fmt, ...)
{
	va_list	ap;
	int	n;

	n = snprintf(p->err, p->errlen, "%s:%d: ", p->file, p->line);
	if (n < 0 || (size_t)n >= p->errlen)
		return MG_ECONFIG;
	va_start(ap, fmt);
	vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return MG_ECONFIG;
}

static int
parse_size(const char *s, uint64_t *out)
{
	char			*end;
	unsigned long long	 v;
	uint64_t		 mul = 1;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	if (*end) {
		switch (tolower((unsigned char)*end)) {
		case 'k': mul = KiB; break;
		case 'm': mul = MiB; break;
		case 'g': mul = GiB; break;
		default: return -1;
		}
		end++;
		if (tolower((unsigned char)*end) == 'b')
			end++;
		if (*end)
			return -1;
	}
	if (v > UINT64_MAX / mul)
		return -1;
	*out = v * mul;
	return 0;
}

static int
parse_time(const char *s, uint64_t *out)
{
	char			*end;
	unsigned long long	 v;
	uint64_t		 mul = 1;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	if (*end) {
		switch (*end) {
		case 's': mul = 1; break;
		case 'm': mul = 60; break;
		case 'h': mul = 3600; break;
		case 'd': mul = 86400; break;
		default: return -1;
		}
		if (end[1])
			return -1;
	}
	if (v > UINT64_MAX / mul)
		return -1;
	*out = v * mul;
	return 0;
}

static int
valid_host(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 253)
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.' &&
		    *s != ':' && *s != '_')
			return 0;
	return 1;
}

static const char *
type_name(const struct ckey *k)
{
	switch (k->type) {
	case CT_STR: return "string";
	case CT_PATH: return "absolute path";
	case CT_HOST: return "host name";
	case CT_SIZE: return "size (bytes, or with k, M, G)";
	case CT_UINT: return "number";
	case CT_BOOL: return "yes or no";
	case CT_ENUM: return "choice";
	case CT_TIME: return "duration (s, m, h, d)";
	}
	return "?";
}

/* Store a value into the struct at base according to the key's row. */
static enum mg_err
set_value(struct parser *p, const struct ckey *k, void *base,
    const char *val)
{
	char		**sp = (char **)((char *)base + k->off);
	uint64_t	 *up = (uint64_t *)((char *)base + k->off);
	int		 *ip = (int *)((char *)base + k->off);
	uint64_t	  v = 0;
	char		 *end;

	switch (k->type) {
	case CT_PATH:
		if (val[0] != '/')
			return perr(p, "%s: '%s' is not an absolute path",
			    k->name, val);
		/* FALLTHROUGH */
	case CT_STR:
	case CT_HOST:
		if (k->type == CT_HOST && !valid_host(val))
			return perr(p, "%s: '%s' is not a valid host name",
			    k->name, val);
		if (*val == '\0')
			return perr(p, "%s: empty value", k->name);
		free(*sp);
		if ((*sp = strdup(val)) == NULL)
			return MG_ENOMEM;
		return MG_OK;
	case CT_SIZE:
		if (parse_size(val, &v) < 0)
			return perr(p, "%s: '%s' is not a size (e.g. 10M)",
			    k->name, val);
		break;
	case CT_TIME:
		if (parse_time(val, &v) < 0)
			return perr(p, "%s: '%s' is not a duration (e.g. 30s,"
			    " 5m, 2h, 5d)", k->name, val);
		break;
	case CT_UINT:
		errno = 0;
		v = strtoull(val, &end, 10);
		if (!isdigit((unsigned char)*val) || *end || errno)
			return perr(p, "%s: '%s' is not a number", k->name,
			    val);
		break;
	case CT_BOOL:
		if (!strcasecmp(val, "yes") || !strcasecmp(val, "true") ||
		    !strcmp(val, "1") || !strcasecmp(val, "on"))
			*ip = 1;
		else if (!strcasecmp(val, "no") || !strcasecmp(val, "false") ||
		    !strcmp(val, "0") || !strcasecmp(val, "off"))
			*ip = 0;
		else
			return perr(p, "%s: '%s' is not yes or no", k->name,
			    val);
		return MG_OK;
	case CT_ENUM:
		for (int i = 0; k->choices[i]; i++)
			if (!strcmp(val, k->choices[i])) {
				*ip = i;
				return MG_OK;
			}
		{
			char	list[256] = "";
			size_t	n = 0;

			for (int i = 0; k->choices[i]; i++) {
				int w = snprintf(list + n, sizeof(list) - n,
				    "%s%s", i ? ", " : "", k->choices[i]);
				if (w < 0 || (size_t)w >= sizeof(list) - n)
					break;
				n += (size_t)w;
			}
			return perr(p, "%s: '%s' is not one of: %s", k->name,
			    val, list);
		}
	}
	if ((k->min || k->max) && (v < k->min || v > k->max))
		return perr(p, "%s: %s is out of range (%llu to %llu)",
		    k->name, val, (unsigned long long)k->min,
		    (unsigned long long)k->max);
	*up = v;
	return MG_OK;
}

static enum mg_err
apply_defaults(struct parser *p, const struct ckey *tab, size_t n,
    void *base)
{
	enum mg_err e;

	for (size_t i = 0; i < n; i++) {
		if (tab[i].def == NULL)
			continue;
		if ((e = set_value(p, &tab[i], base, tab[i].def)) != MG_OK)
			return e;
	}
	return MG_OK;
}

static int
valid_peer_name(const char *s)
{
	if (*s == '\0' || strlen(s) > 64)
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' &&
		    *s != '.')
			return 0;
	return 1;
}

static enum mg_err
start_section(struct parser *p, char *s)
{
	char		*end, *name;
	struct mg_peer	*peer, **tail;
	enum mg_err	 e;

	if ((end = strchr(s, ']')) == NULL || end[1] != '\0')
		return perr(p, "section header must look like [peer NAME]");
	*end = '\0';
	s++;
	while (isspace((unsigned char)*s))
		s++;
	if (strncmp(s, "peer", 4) || !isspace((unsigned char)s[4]))
		return perr(p, "unknown section '[%s]' (only [peer NAME])", s);
	name = s + 4;
	while (isspace((unsigned char)*name))
		name++;
	for (end = name + strlen(name); end > name &&
	    isspace((unsigned char)end[-1]); end--)
		;
	*end = '\0';
	if (!valid_peer_name(name))
		return perr(p, "peer name '%s' must be 1-64 letters, digits,"
		    " '-', '_' or '.'", name);
	for (tail = &p->cfg->peers; *tail; tail = &(*tail)->next)
		if (!strcmp((*tail)->name, name))
			return perr(p, "peer '%s' is already defined at line"
			    " %d", name, (*tail)->line);
	if ((peer = calloc(1, sizeof(*peer))) == NULL ||
	    (peer->name = strdup(name)) == NULL) {
		free(peer);
		return MG_ENOMEM;
	}
	peer->line = p->line;
	*tail = peer;
	p->peer = peer;
	memset(p->pseen, 0, sizeof(p->pseen));
	if ((e = apply_defaults(p, peer_keys, NKEYS(peer_keys), peer)) != MG_OK)
		return e;
	return MG_OK;
}

static enum mg_err
parse_line(struct parser *p, char *s)
{
	char			*eq, *key, *val, *end;
	const struct ckey	*tab;
	int			*seen;
	size_t			 n;

	while (isspace((unsigned char)*s))
		s++;
	for (end = s + strlen(s); end > s && isspace((unsigned char)end[-1]);
	    end--)
		;
	*end = '\0';
	if (*s == '\0' || *s == '#')
		return MG_OK;
	if (*s == '[')
		return start_section(p, s);
	if ((eq = strchr(s, '=')) == NULL)
		return perr(p, "expected 'key = value', got '%.60s'", s);
	key = s;
	for (end = eq; end > key && isspace((unsigned char)end[-1]); end--)
		;
	*end = '\0';
	val = eq + 1;
	while (isspace((unsigned char)*val))
		val++;
	if (p->peer) {
		tab = peer_keys;
		n = NKEYS(peer_keys);
		seen = p->pseen;
	} else {
		tab = global_keys;
		n = NKEYS(global_keys);
		seen = p->gseen;
	}
	for (size_t i = 0; i < n; i++) {
		if (strcmp(tab[i].name, key))
			continue;
		if (seen[i])
			return perr(p, "%s is set twice (first at line %d)",
			    key, seen[i]);
		seen[i] = p->line;
		if (*val == '\0')
			return perr(p, "%s: empty value", key);
		return set_value(p, &tab[i], p->peer ? (void *)p->peer :
		    (void *)p->cfg, val);
	}
	if (p->peer == NULL)
		for (size_t i = 0; i < NKEYS(peer_keys); i++)
			if (!strcmp(peer_keys[i].name, key))
				return perr(p, "%s belongs in a [peer NAME] "
				    "section", key);
	return perr(p, "unknown key '%.60s'%s", key,
	    p->peer ? " in a peer section" : "");
}

static enum mg_err
finish(struct parser *p)
{
	struct mg_config	*c = p->cfg;
	struct mg_peer		*peer;
	char			 host[256], *dot;
	int			 npeers = 0;

	if (c->myhostname == NULL) {
		if (gethostname(host, sizeof(host)) < 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		if ((c->myhostname = strdup(host)) == NULL)
			return MG_ENOMEM;
	}
	if (c->local_name == NULL &&
	    (c->local_name = strdup(c->myhostname)) == NULL)
		return MG_ENOMEM;
	if (c->smtp_helo_name == NULL &&
	    (c->smtp_helo_name = strdup(c->myhostname)) == NULL)
		return MG_ENOMEM;
	if (c->mydomain == NULL) {
		dot = strchr(c->myhostname, '.');
		c->mydomain = strdup(dot && dot[1] ? dot + 1 : c->myhostname);
		if (c->mydomain == NULL)
			return MG_ENOMEM;
	}
	for (peer = c->peers; peer; peer = peer->next) {
		npeers++;
		p->line = peer->line;
		if (peer->transport != MG_TR_FILE && peer->host == NULL)
			return perr(p, "peer '%s' needs a host", peer->name);
	}
	if (c->default_peer && mg_config_peer(c, c->default_peer) == NULL) {
		for (size_t i = 0; i < NKEYS(global_keys); i++)
			if (global_keys[i].off == G(default_peer))
				p->line = p->gseen[i];
		return perr(p, "default_peer '%s' is not defined by a [peer] "
		    "section", c->default_peer);
	}
	if (c->default_peer == NULL && npeers == 1 && c->role == MG_ROLE_SITE &&
	    (c->default_peer = strdup(c->peers->name)) == NULL)
		return MG_ENOMEM;
	return MG_OK;
}

enum mg_err
mg_config_parse(const char *name, const char *text, size_t len,
    struct mg_config **out, char *errbuf, size_t errlen)
{
	struct parser	 p;
	char		 line[CONF_LINE_MAX + 2];	/* + CR, NUL */
	size_t		 off = 0, n;
	const char	*nl;
	enum mg_err	 e;

	*out = NULL;
	memset(&p, 0, sizeof(p));
	p.file = name;
	p.err = errbuf;
	p.errlen = errlen;
	if ((p.cfg = calloc(1, sizeof(*p.cfg))) == NULL ||
	    (p.cfg->path = strdup(name)) == NULL) {
		e = MG_ENOMEM;
		goto fail;
	}
	if ((e = apply_defaults(&p, global_keys, NKEYS(global_keys), p.cfg)))
		goto fail;
	while (off < len) {
		p.line++;
		nl = memchr(text + off, '\n', len - off);
		n = nl ? (size_t)(nl - (text + off)) : len - off;
		/* The limit is on the line, not on its CRLF ending. */
		if (n > CONF_LINE_MAX && !(n == CONF_LINE_MAX + 1 &&
		    text[off + n - 1] == '\r')) {
			e = perr(&p, "line longer than %d bytes", CONF_LINE_MAX);
			goto fail;
		}
		memcpy(line, text + off, n);
		line[n] = '\0';
		off += n + (nl != NULL);
		if (memchr(line, '\0', n) != NULL) {
			e = perr(&p, "NUL byte in configuration");
			goto fail;
		}
		if ((e = parse_line(&p, line)) != MG_OK)
			goto fail;
	}
	if ((e = finish(&p)) != MG_OK)
		goto fail;
	*out = p.cfg;
	return MG_OK;
fail:
	if (e == MG_ENOMEM)
		snprintf(errbuf, errlen, "%s: out of memory", name);
	mg_config_free(p.cfg);
	return e == MG_ENOMEM ? e : MG_ECONFIG;
}

enum mg_err
mg_config_load(const char *path, struct mg_config **out, char *errbuf,
    size_t errlen)
{
	struct mg_buf	 b;
	char		 chunk[8192];
	ssize_t		 r;
	int		 fd;
	enum mg_err	 e;

	*out = NULL;
	if (path == NULL && (path = getenv("MGATE_CONFIG")) == NULL)
		path = MG_CONFIG_DEFAULT;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		snprintf(errbuf, errlen, "%s: cannot open configuration: %s "
		    "(create it from conf/mgate.conf, or name another with -c"
		    " or MGATE_CONFIG)", path, strerror(errno));
		return MG_ECONFIG;
	}
	mg_buf_init(&b, CONF_MAX_SIZE);
	for (;;) {
		if ((r = read(fd, chunk, sizeof(chunk))) < 0) {
			if (errno == EINTR)
				continue;
			snprintf(errbuf, errlen, "%s: cannot read "
			    "configuration: %s", path, strerror(errno));
			e = MG_ECONFIG;
			goto out;
		}
		if (r == 0)
			break;
		if (mg_buf_append(&b, chunk, (size_t)r) != MG_OK) {
			snprintf(errbuf, errlen, "%s: configuration larger "
			    "than %d bytes", path, CONF_MAX_SIZE);
			e = MG_ECONFIG;
			goto out;
		}
	}
	e = mg_config_parse(path, (const char *)b.data, b.len, out, errbuf,
	    errlen);
out:
	close(fd);
	mg_buf_free(&b);
	return e;
}

static void
free_fields(const struct ckey *tab, size_t n, void *base)
{
	for (size_t i = 0; i < n; i++)
		if (tab[i].type == CT_STR || tab[i].type == CT_PATH ||
		    tab[i].type == CT_HOST)
			free(*(char **)((char *)base + tab[i].off));
}

void
mg_config_free(struct mg_config *c)
{
	struct mg_peer *p, *next;

	if (c == NULL)
		return;
	for (p = c->peers; p; p = next) {
		next = p->next;
		free_fields(peer_keys, NKEYS(peer_keys), p);
		free(p->name);
		free(p);
	}
	free_fields(global_keys, NKEYS(global_keys), c);
	free(c->path);
	free(c);
}

static void
print_value(FILE *fp, const struct ckey *k, const void *base)
{
	const char *s;

	switch (k->type) {
	case CT_STR:
	case CT_PATH:
	case CT_HOST:
		s = *(char *const *)((const char *)base + k->off);
		if (s == NULL)
			fprintf(fp, "# %s is not set\n", k->name);
		else
			fprintf(fp, "%s = %s\n", k->name, s);
		break;
	case CT_SIZE:
	case CT_UINT:
	case CT_TIME:
		fprintf(fp, "%s = %llu%s\n", k->name, (unsigned long long)
		    *(const uint64_t *)((const char *)base + k->off),
		    k->type == CT_TIME ? "s" : "");
		break;
	case CT_BOOL:
		fprintf(fp, "%s = %s\n", k->name,
		    *(const int *)((const char *)base + k->off) ? "yes" : "no");
		break;
	case CT_ENUM:
		fprintf(fp, "%s = %s\n", k->name,
		    k->choices[*(const int *)((const char *)base + k->off)]);
		break;
	}
}

void
mg_config_print(const struct mg_config *c, FILE *fp)
{
	const struct mg_peer *p;

	fprintf(fp, "# effective configuration from %s\n", c->path);
	for (size_t i = 0; i < NKEYS(global_keys); i++)
		print_value(fp, &global_keys[i], c);
	for (p = c->peers; p; p = p->next) {
		fprintf(fp, "\n[peer %s]\n", p->name);
		for (size_t i = 0; i < NKEYS(peer_keys); i++)
			print_value(fp, &peer_keys[i], p);
	}
}

static void
print_doc(FILE *fp, const struct ckey *tab, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(fp, "%-20s %s, default %s\n%20s %s\n", tab[i].name,
		    type_name(&tab[i]), tab[i].def ? tab[i].def : "(unset)",
		    "", tab[i].doc);
}

void
mg_config_print_doc(FILE *fp)
{
	fprintf(fp, "Global keys:\n");
	print_doc(fp, global_keys, NKEYS(global_keys));
	fprintf(fp, "\nKeys of a [peer NAME] section:\n");
	print_doc(fp, peer_keys, NKEYS(peer_keys));
}

const struct mg_peer *
mg_config_peer(const struct mg_config *c, const char *name)
{
	const struct mg_peer *p;

	for (p = c->peers; p; p = p->next)
		if (!strcmp(p->name, name))
			return p;
	return NULL;
}

const char *
mg_transport_name(int t)
{
	if (t < 0 || t >= (int)NKEYS(transport_names) - 1)
		return "?";
	return transport_names[t];
}
