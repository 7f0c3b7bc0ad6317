/*
 * t_config.c - unit tests for config.c: the mgate.conf parser, its
 * defaults, its printer and its loader.
 *
 * Two tables.  bad_cases: one input per error path of the parser, each
 * with the exact "name:line: reason" start it must produce (the line
 * number is part of the prefix, so a wrong line is a failure).
 * good_cases: valid inputs and a function checking the parsed values.
 * Then the printer round trip (print, re-parse, compare every field and
 * print again byte for byte), CRLF files, the line-length boundary and
 * mg_config_load on missing and real files.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mgate/config.h"
#include "tap.h"

#define NAME	"t.conf"

/* is_str() on a char array trips -Waddress; pass arrays through this. */
static const char *
cs(const char *s)
{
	return s;
}

/* Text with explicit length, so cases may contain NUL bytes. */
#define T(s)	s, sizeof(s) - 1

struct bad_case {
	const char	*what;
	const char	*text;
	size_t		 len;
	const char	*prefix;	/* errbuf must start with this */
};

static const struct bad_case bad_cases[] = {
	{ "unknown key", T("spool_directory = /s\nfrobnicate = 1\n"),
	  NAME ":2: unknown key 'frobnicate'" },
	{ "unknown key in a peer section",
	  T("[peer a]\nhost = h\nfrobnicate = 1\n"),
	  NAME ":3: unknown key 'frobnicate' in a peer section" },
	{ "global key inside a peer section",
	  T("[peer a]\nhost = h\nspool_directory = /s\n"),
	  NAME ":3: unknown key 'spool_directory' in a peer section" },
	{ "key case matters", T("Spool_Directory = /s\n"),
	  NAME ":1: unknown key 'Spool_Directory'" },
	{ "peer key outside a section (host)", T("\n\nhost = h\n"),
	  NAME ":3: host belongs in a [peer NAME] section" },
	{ "peer key outside a section (port)", T("port = 22\n"),
	  NAME ":1: port belongs in a [peer NAME] section" },
	{ "duplicate global key",
	  T("recipient_limit = 5\n# c\nrecipient_limit = 6\n"),
	  NAME ":3: recipient_limit is set twice (first at line 1)" },
	{ "duplicate peer key",
	  T("[peer a]\nhost = h\nport = 1\nport = 2\n"),
	  NAME ":4: port is set twice (first at line 3)" },
	{ "duplicate key even with the same value",
	  T("allow_nul_bytes = no\nallow_nul_bytes = no\n"),
	  NAME ":2: allow_nul_bytes is set twice (first at line 1)" },
	{ "bad size: letters", T("message_size_limit = big\n"),
	  NAME ":1: message_size_limit: 'big' is not a size" },
	{ "bad size: unknown suffix", T("message_size_limit = 10T\n"),
	  NAME ":1: message_size_limit: '10T' is not a size" },
	{ "bad size: junk after suffix", T("message_size_limit = 10Mx\n"),
	  NAME ":1: message_size_limit: '10Mx' is not a size" },
	{ "bad size: negative", T("message_size_limit = -5\n"),
	  NAME ":1: message_size_limit: '-5' is not a size" },
	{ "bad size: space before suffix", T("message_size_limit = 10 M\n"),
	  NAME ":1: message_size_limit: '10 M' is not a size" },
	{ "bad size: overflows u64",
	  T("message_size_limit = 18446744073709551616\n"),
	  NAME ":1: message_size_limit: '18446744073709551616' is not a size"
	},
	{ "bad size: overflows with suffix",
	  T("message_size_limit = 18014398509481984k\n"),
	  NAME ":1: message_size_limit: '18014398509481984k' is not a size" },
	{ "bad number: suffix", T("recipient_limit = 10k\n"),
	  NAME ":1: recipient_limit: '10k' is not a number" },
	{ "bad number: sign", T("recipient_limit = +10\n"),
	  NAME ":1: recipient_limit: '+10' is not a number" },
	{ "bad number: trailing comment",
	  T("recipient_limit = 10 # ten\n"),
	  NAME ":1: recipient_limit: '10 # ten' is not a number" },
	{ "bad number: hex", T("[peer a]\nhost = h\nport = 0x16\n"),
	  NAME ":3: port: '0x16' is not a number" },
	{ "bad bool", T("allow_nul_bytes = maybe\n"),
	  NAME ":1: allow_nul_bytes: 'maybe' is not yes or no" },
	{ "bad bool: 2", T("pickup_after_queue = 2\n"),
	  NAME ":1: pickup_after_queue: '2' is not yes or no" },
	{ "bad enum", T("log_destination = file\n"),
	  NAME ":1: log_destination: 'file' is not one of: syslog, stderr" },
	{ "bad enum: case", T("log_destination = STDERR\n"),
	  NAME ":1: log_destination: 'STDERR' is not one of: syslog, stderr" },
	{ "bad enum: role", T("role = hub\n"),
	  NAME ":1: role: 'hub' is not one of: site, gateway" },
	{ "bad enum: transport", T("[peer a]\nhost = h\ntransport = uucp\n"),
	  NAME ":3: transport: 'uucp' is not one of: ssh, smtp, smarthost, "
	  "file" },
	{ "bad duration: suffix", T("[peer a]\nhost = h\nconnect_timeout = 30x\n"),
	  NAME ":3: connect_timeout: '30x' is not a duration" },
	{ "bad duration: two suffixes",
	  T("[peer a]\nhost = h\nconnect_timeout = 1ms\n"),
	  NAME ":3: connect_timeout: '1ms' is not a duration" },
	{ "bad duration: word",
	  T("[peer a]\nhost = h\nconnect_timeout = soon\n"),
	  NAME ":3: connect_timeout: 'soon' is not a duration" },
	{ "out of range: size below", T("message_size_limit = 1023\n"),
	  NAME ":1: message_size_limit: 1023 is out of range (1024 to "
	  "4294967296)" },
	{ "out of range: size above", T("message_size_limit = 5G\n"),
	  NAME ":1: message_size_limit: 5G is out of range (1024 to "
	  "4294967296)" },
	{ "out of range: header limit", T("header_size_limit = 65M\n"),
	  NAME ":1: header_size_limit: 65M is out of range (1024 to "
	  "67108864)" },
	{ "out of range: number 0", T("recipient_limit = 0\n"),
	  NAME ":1: recipient_limit: 0 is out of range (1 to 100000)" },
	{ "out of range: number above", T("recipient_limit = 100001\n"),
	  NAME ":1: recipient_limit: 100001 is out of range (1 to 100000)" },
	{ "out of range: port", T("[peer a]\nhost = h\nport = 65536\n"),
	  NAME ":3: port: 65536 is out of range (0 to 65535)" },
	{ "out of range: bundle size",
	  T("[peer a]\nhost = h\nmax_bundle_size = 4095\n"),
	  NAME ":3: max_bundle_size: 4095 is out of range (4096 to "
	  "4294967296)" },
	{ "out of range: duration 0",
	  T("[peer a]\nhost = h\nconnect_timeout = 0s\n"),
	  NAME ":3: connect_timeout: 0s is out of range (1 to 3600)" },
	{ "out of range: duration 2h",
	  T("[peer a]\nhost = h\nconnect_timeout = 2h\n"),
	  NAME ":3: connect_timeout: 2h is out of range (1 to 3600)" },
	{ "relative path", T("spool_directory = var/spool/mgate\n"),
	  NAME ":1: spool_directory: 'var/spool/mgate' is not an absolute "
	  "path" },
	{ "relative path: dot", T("private_key = ./key\n"),
	  NAME ":1: private_key: './key' is not an absolute path" },
	{ "relative path in a peer",
	  T("[peer a]\nhost = h\nidentity_file = id_ed25519\n"),
	  NAME ":3: identity_file: 'id_ed25519' is not an absolute path" },
	{ "bad host: space", T("myhostname = bad host\n"),
	  NAME ":1: myhostname: 'bad host' is not a valid host name" },
	{ "bad host: slash", T("mydomain = a/b\n"),
	  NAME ":1: mydomain: 'a/b' is not a valid host name" },
	{ "bad host in a peer", T("[peer a]\nhost = h!x\n"),
	  NAME ":2: host: 'h!x' is not a valid host name" },
	{ "empty value: path", T("spool_directory =\n"),
	  NAME ":1: spool_directory: empty value" },
	{ "empty value: spaces only", T("myhostname =    \t \n"),
	  NAME ":1: myhostname: empty value" },
	{ "empty value: number", T("recipient_limit =\n"),
	  NAME ":1: recipient_limit: empty value" },
	{ "empty value: peer host", T("[peer a]\nhost =\n"),
	  NAME ":2: host: empty value" },
	{ "bad section header: no ]", T("[peer a\n"),
	  NAME ":1: section header must look like [peer NAME]" },
	{ "bad section header: junk after ]", T("[peer a] x\n"),
	  NAME ":1: section header must look like [peer NAME]" },
	{ "unknown section type", T("\n[smtp a]\n"),
	  NAME ":2: unknown section '[smtp a]' (only [peer NAME])" },
	{ "unknown section: peerx", T("[peerx a]\n"),
	  NAME ":1: unknown section '[peerx a]'" },
	{ "section without a name", T("[peer]\n"),
	  NAME ":1: unknown section '[peer]'" },
	{ "bad peer name: empty", T("[peer  ]\n"),
	  NAME ":1: peer name '' must be 1-64 letters" },
	{ "bad peer name: slash", T("[peer a/b]\n"),
	  NAME ":1: peer name 'a/b' must be 1-64 letters" },
	{ "bad peer name: space inside", T("[peer a b]\n"),
	  NAME ":1: peer name 'a b' must be 1-64 letters" },
	{ "bad peer name: 65 chars",
	  T("[peer aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\n"),
	  NAME ":1: peer name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaa' must be 1-64 letters" },
	{ "duplicate peer",
	  T("[peer a]\nhost = h\n\n[peer b]\nhost = h\n[peer a]\n"),
	  NAME ":6: peer 'a' is already defined at line 1" },
	{ "peer without host (line of its section)",
	  T("[peer a]\nhost = h\n[peer b]\nport = 25\n"),
	  NAME ":3: peer 'b' needs a host" },
	{ "peer without host, smtp transport",
	  T("# x\n[peer b]\ntransport = smtp\n"),
	  NAME ":2: peer 'b' needs a host" },
	{ "default_peer undefined (line of the key)",
	  T("# c\ndefault_peer = nowhere\n[peer a]\nhost = h\n"),
	  NAME ":2: default_peer 'nowhere' is not defined by a [peer] "
	  "section" },
	{ "default_peer with no peers at all",
	  T("\n\n\ndefault_peer = gw\n"),
	  NAME ":4: default_peer 'gw' is not defined" },
	{ "NUL byte", T("# ok\nspool_directory = /s\0x\n"),
	  NAME ":2: NUL byte in configuration" },
	{ "NUL byte in a comment", T("\n\n#\0\n"),
	  NAME ":3: NUL byte in configuration" },
	{ "NUL byte on the last line without LF", T("# a\n\0"),
	  NAME ":2: NUL byte in configuration" },
	{ "missing '='", T("# c\n\nspool_directory /s\n"),
	  NAME ":3: expected 'key = value', got 'spool_directory /s'" },
	{ "missing '=' on the last line, no LF", T("\nhello"),
	  NAME ":2: expected 'key = value', got 'hello'" },
	{ "empty key", T("= 5\n"), NAME ":1: unknown key ''" },
};

/* Valid files. */
struct good_case {
	const char	*what;
	const char	*text;
	size_t		 len;
	void		(*check)(const char *, const struct mg_config *);
};

static void
check_defaults(const char *what, const struct mg_config *c)
{
	char host[256];

	is_str(c->path, NAME, "%s: path", what);
	is_int(c->role, MG_ROLE_SITE, "%s: role default site", what);
	is_str(c->spool_directory, "/var/spool/mgate", "%s: spool default",
	    what);
	is_int(c->log_destination, MG_LD_SYSLOG, "%s: log default syslog",
	    what);
	is_int(c->message_size_limit, 25ULL << 20, "%s: message_size 25M",
	    what);
	is_int(c->header_size_limit, 1ULL << 20, "%s: header_size 1M", what);
	is_int(c->recipient_limit, 1000, "%s: recipient_limit 1000", what);
	is_int(c->allow_nul_bytes, 0, "%s: allow_nul_bytes no", what);
	is_int(c->pickup_after_queue, 1, "%s: pickup_after_queue yes", what);
	ok(c->private_key == NULL, "%s: private_key unset", what);
	ok(c->default_peer == NULL, "%s: default_peer unset", what);
	ok(c->peers == NULL, "%s: no peers", what);
	/* myhostname defaults to the system's name, mydomain derives. */
	memset(host, 0, sizeof(host));
	gethostname(host, sizeof(host) - 1);
	is_str(c->myhostname, cs(host), "%s: myhostname is gethostname()", what);
	if (strchr(host, '.') && strchr(host, '.')[1])
		is_str(c->mydomain, strchr(host, '.') + 1,
		    "%s: mydomain is myhostname less its first label", what);
	else
		is_str(c->mydomain, cs(host), "%s: mydomain is myhostname", what);
}

static void
check_all_set(const char *what, const struct mg_config *c)
{
	is_str(c->spool_directory, "/tmp/sp ool", "%s: path with space", what);
	is_str(c->myhostname, "ship.example.org", "%s: myhostname", what);
	is_str(c->mydomain, "example.org", "%s: mydomain", what);
	is_int(c->log_destination, MG_LD_STDERR, "%s: stderr", what);
	is_int(c->message_size_limit, 10 * 1024, "%s: 10k", what);
	is_int(c->header_size_limit, 2 * 1024 * 1024, "%s: 2M", what);
	is_int(c->recipient_limit, 100000, "%s: recipient_limit max", what);
	is_int(c->allow_nul_bytes, 1, "%s: allow_nul_bytes true", what);
	is_int(c->pickup_after_queue, 0, "%s: pickup_after_queue off", what);
	is_str(c->private_key, "/etc/mgate/key", "%s: private_key", what);
	ok(c->peers == NULL && c->default_peer == NULL, "%s: no peers", what);
}

static void
check_mydomain_derived(const char *what, const struct mg_config *c)
{
	is_str(c->myhostname, "a.b.example", "%s: myhostname", what);
	is_str(c->mydomain, "b.example", "%s: mydomain derived", what);
}

static void
check_mydomain_single(const char *what, const struct mg_config *c)
{
	is_str(c->mydomain, "localhost", "%s: single label domain", what);
}

static void
check_sizes(const char *what, const struct mg_config *c)
{
	is_int(c->message_size_limit, 4ULL << 30, "%s: 4G (upper bound)",
	    what);
	is_int(c->header_size_limit, 64ULL << 20, "%s: 64m (upper bound)",
	    what);
}

static void
check_sizes_kb(const char *what, const struct mg_config *c)
{
	is_int(c->message_size_limit, 3 * 1024, "%s: 3kb", what);
	is_int(c->header_size_limit, 1024, "%s: 1024 bare (lower bound)",
	    what);
}

static void
check_sizes_mb(const char *what, const struct mg_config *c)
{
	is_int(c->message_size_limit, 1ULL << 30, "%s: 1g", what);
	is_int(c->header_size_limit, 5ULL << 20, "%s: 5MB", what);
}

static void
check_bools(const char *what, const struct mg_config *c)
{
	is_int(c->allow_nul_bytes, 1, "%s: ON", what);
	is_int(c->pickup_after_queue, 0, "%s: False", what);
}

static void
check_bools2(const char *what, const struct mg_config *c)
{
	is_int(c->allow_nul_bytes, 1, "%s: 1", what);
	is_int(c->pickup_after_queue, 0, "%s: 0", what);
}

static void
check_two_peers(const char *what, const struct mg_config *c)
{
	const struct mg_peer *a, *b;

	a = c->peers;
	b = a ? a->next : NULL;
	if (!ok(a && b && b->next == NULL, "%s: two peers", what))
		return;
	is_str(a->name, "gw", "%s: first peer name", what);
	is_int(a->line, 3, "%s: first peer line", what);
	is_int(a->transport, MG_TR_SSH, "%s: transport default ssh", what);
	is_str(a->host, "gw.example.net", "%s: host", what);
	is_int(a->port, 2222, "%s: port", what);
	is_str(a->user, "mgate", "%s: user default", what);
	is_str(a->identity_file, "/etc/mgate/id", "%s: identity_file", what);
	is_str(a->known_hosts, "/etc/mgate/kh", "%s: known_hosts", what);
	is_str(a->public_key, "/etc/mgate/gw.pub", "%s: public_key", what);
	is_int(a->max_bundle_size, 10ULL << 20, "%s: bundle size default",
	    what);
	is_int(a->connect_timeout, 30, "%s: timeout default 30s", what);
	is_str(b->name, "relay_2.x-y", "%s: second peer name", what);
	is_int(b->line, 12, "%s: second peer line", what);
	is_int(b->transport, MG_TR_SMARTHOST, "%s: smarthost", what);
	is_str(b->host, "10.0.0.1", "%s: address as host", what);
	is_int(b->port, 0, "%s: port default 0", what);
	is_str(b->user, "relay user", "%s: user", what);
	ok(b->identity_file == NULL && b->known_hosts == NULL &&
	    b->public_key == NULL, "%s: unset paths are NULL", what);
	is_int(b->max_bundle_size, 4096, "%s: bundle 4k", what);
	is_int(b->connect_timeout, 5 * 60, "%s: 5m", what);
	is_str(c->default_peer, "relay_2.x-y", "%s: default_peer", what);
	ok(mg_config_peer(c, "gw") == a, "%s: mg_config_peer finds gw", what);
	ok(mg_config_peer(c, "relay_2.x-y") == b,
	    "%s: mg_config_peer finds relay", what);
	ok(mg_config_peer(c, "GW") == NULL, "%s: peer names case-sensitive",
	    what);
}

static void
check_two_peers_no_default(const char *what, const struct mg_config *c)
{
	ok(c->peers && c->peers->next, "%s: two peers", what);
	ok(c->default_peer == NULL, "%s: no default_peer with two peers",
	    what);
}

static void
check_only_peer(const char *what, const struct mg_config *c)
{
	if (!ok(c->peers && c->peers->next == NULL, "%s: one peer", what))
		return;
	is_str(c->default_peer, "only", "%s: default_peer is the only peer",
	    what);
	is_int(c->peers->transport, MG_TR_FILE, "%s: file transport", what);
	ok(c->peers->host == NULL, "%s: file peer needs no host", what);
	is_int(c->peers->connect_timeout, 3600, "%s: 1h", what);
}

static void
check_gateway_one_peer(const char *what, const struct mg_config *c)
{
	is_int(c->role, MG_ROLE_GATEWAY, "%s: role gateway", what);
	ok(c->peers && c->peers->next == NULL, "%s: one peer", what);
	ok(c->default_peer == NULL, "%s: a gateway's only peer is not made "
	    "default_peer", what);
}

static void
check_durations(const char *what, const struct mg_config *c)
{
	const struct mg_peer *p = c->peers;

	if (!ok(p && p->next && p->next->next, "%s: three peers", what))
		return;
	is_int(p->connect_timeout, 90, "%s: bare 90", what);
	is_int(p->next->connect_timeout, 1, "%s: 1s", what);
	is_int(p->next->next->connect_timeout, 60, "%s: 1m", what);
}

static void
check_spacing(const char *what, const struct mg_config *c)
{
	is_str(c->spool_directory, "/a=b", "%s: value keeps later '='",
	    what);
	is_int(c->recipient_limit, 7, "%s: no spaces around '='", what);
	is_str(c->myhostname, "h.example", "%s: tabs around", what);
	is_int(c->log_destination, MG_LD_STDERR, "%s: trailing spaces",
	    what);
	ok(c->peers && !strcmp(c->peers->name, "sp"),
	    "%s: section header with spaces inside brackets", what);
}

static void
check_empty(const char *what, const struct mg_config *c)
{
	is_str(c->spool_directory, "/var/spool/mgate", "%s: defaults", what);
	ok(c->peers == NULL, "%s: no peers", what);
}

static void
check_crlf(const char *what, const struct mg_config *c)
{
	const struct mg_peer *p = c->peers;

	is_str(c->spool_directory, "/var/spool/x", "%s: path without CR",
	    what);
	is_str(c->myhostname, "crlf.example", "%s: host without CR", what);
	is_int(c->message_size_limit, 2ULL << 20, "%s: size with CRLF", what);
	is_int(c->allow_nul_bytes, 1, "%s: bool with CRLF", what);
	is_int(c->log_destination, MG_LD_STDERR, "%s: enum with CRLF", what);
	if (!ok(p != NULL, "%s: peer with CRLF", what))
		return;
	is_str(p->name, "gw", "%s: peer name without CR", what);
	is_str(p->host, "gw.example", "%s: peer host without CR", what);
	is_str(p->user, "u", "%s: string without CR", what);
	is_int(p->connect_timeout, 120, "%s: duration with CRLF", what);
	is_int(p->port, 22, "%s: number with CRLF", what);
	is_str(c->default_peer, "gw", "%s: default_peer without CR", what);
}

static const struct good_case good_cases[] = {
	{ "empty file", "", 0, check_defaults },
	{ "only comments and blank lines",
	  T("# comment\n\n   # indented comment\n\t\n   \n#key = value\n"),
	  check_defaults },
	{ "no final newline, only a comment", T("# x"), check_defaults },
	{ "every global key",
	  T("# all of them\n"
	    "spool_directory = /tmp/sp ool\n"
	    "myhostname = ship.example.org\n"
	    "\n"
	    "mydomain = example.org\n"
	    "log_destination = stderr\n"
	    "message_size_limit = 10k\n"
	    "header_size_limit = 2M\n"
	    "recipient_limit = 100000\n"
	    "allow_nul_bytes = true\n"
	    "pickup_after_queue = off\n"
	    "private_key = /etc/mgate/key"),
	  check_all_set },
	{ "mydomain from myhostname", T("myhostname = a.b.example\n"),
	  check_mydomain_derived },
	{ "mydomain for a one-label host", T("myhostname = localhost\n"),
	  check_mydomain_single },
	{ "sizes G and lowercase m",
	  T("message_size_limit = 4G\nheader_size_limit = 64m\n"),
	  check_sizes },
	{ "sizes kb and bare",
	  T("message_size_limit = 3kb\nheader_size_limit = 1024\n"),
	  check_sizes_kb },
	{ "sizes g and MB",
	  T("message_size_limit = 1g\nheader_size_limit = 5MB\n"),
	  check_sizes_mb },
	{ "booleans ON/False",
	  T("allow_nul_bytes = ON\npickup_after_queue = False\n"),
	  check_bools },
	{ "booleans 1/0",
	  T("allow_nul_bytes = 1\npickup_after_queue = 0\n"),
	  check_bools2 },
	{ "two peers and default_peer",
	  T("default_peer = relay_2.x-y\n"
	    "\n"
	    "[peer gw]\n"			/* line 3 */
	    "host = gw.example.net\n"
	    "port = 2222\n"
	    "identity_file = /etc/mgate/id\n"
	    "known_hosts = /etc/mgate/kh\n"
	    "public_key = /etc/mgate/gw.pub\n"
	    "# the same keys again in the next section are fine\n"
	    "\n"
	    "\n"
	    "[peer relay_2.x-y]\n"		/* line 12 */
	    "transport = smarthost\n"
	    "host = 10.0.0.1\n"
	    "user = relay user\n"
	    "max_bundle_size = 4k\n"
	    "connect_timeout = 5m\n"),
	  check_two_peers },
	{ "two peers, no default_peer",
	  T("[peer a]\nhost = a\n[peer b]\nhost = b\n"),
	  check_two_peers_no_default },
	{ "the only peer becomes default_peer",
	  T("[peer only]\ntransport = file\nconnect_timeout = 1h\n"),
	  check_only_peer },
	{ "gateway with one peer",
	  T("role = gateway\n[peer site1]\nhost = site1.example\n"),
	  check_gateway_one_peer },
	{ "durations",
	  T("[peer a]\nhost = a\nconnect_timeout = 90\n"
	    "[peer b]\nhost = b\nconnect_timeout = 1s\n"
	    "[peer c]\nhost = c\nconnect_timeout = 1m\n"),
	  check_durations },
	{ "spacing",
	  T("spool_directory = /a=b\n"
	    "recipient_limit=7\n"
	    "\tmyhostname\t=\th.example\t\n"
	    "log_destination = stderr   \n"
	    "[ peer   sp  ]\n"
	    "host = x\n"),
	  check_spacing },
	{ "only whitespace", T(" \n\t\n"), check_empty },
	{ "CRLF line endings",
	  T("# crlf file\r\n"
	    "spool_directory = /var/spool/x\r\n"
	    "myhostname = crlf.example\r\n"
	    "message_size_limit = 2M\r\n"
	    "allow_nul_bytes = yes\r\n"
	    "log_destination = stderr\r\n"
	    "\r\n"
	    "[peer gw]\r\n"
	    "host = gw.example\r\n"
	    "user = u\r\n"
	    "port = 22\r\n"
	    "connect_timeout = 2m\r\n"),
	  check_crlf },
};

static int
text_has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void
run_bad_cases(void)
{
	char			 err[1024];
	struct mg_config	*cfg;
	enum mg_err		 e;

	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];

		strcpy(err, "(untouched)");
		cfg = (struct mg_config *)&cfg;	/* must be reset to NULL */
		e = mg_config_parse(NAME, c->text, c->len, &cfg, err,
		    sizeof(err));
		is_int(e, MG_ECONFIG, "bad: %s: MG_ECONFIG", c->what);
		ok(cfg == NULL, "bad: %s: no config returned", c->what);
		if (!ok(text_has_prefix(err, c->prefix), "bad: %s: message",
		    c->what))
			diag("  got '%s'\n#   want prefix '%s'", err, c->prefix);
		if (e == MG_OK)
			mg_config_free(cfg);
	}
}

static void
run_good_cases(void)
{
	char			 err[1024];
	struct mg_config	*cfg;
	enum mg_err		 e;

	for (size_t i = 0; i < sizeof(good_cases) / sizeof(good_cases[0]);
	    i++) {
		const struct good_case *c = &good_cases[i];

		err[0] = '\0';
		cfg = NULL;
		e = mg_config_parse(NAME, c->text, c->len, &cfg, err,
		    sizeof(err));
		if (!is_int(e, MG_OK, "good: %s: parses", c->what)) {
			diag("  error: %s", err);
			continue;
		}
		if (!ok(cfg != NULL, "good: %s: config returned", c->what))
			continue;
		c->check(c->what, cfg);
		mg_config_free(cfg);
	}
}

/* mg_config_print into a malloc'd string. */
static char *
print_config(const struct mg_config *c, size_t *len)
{
	char	*s = NULL;
	FILE	*fp;

	if ((fp = open_memstream(&s, len)) == NULL)
		return NULL;
	mg_config_print(c, fp);
	fclose(fp);
	return s;
}

static int
streq_null(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	    (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static int
same_config(const struct mg_config *a, const struct mg_config *b)
{
	const struct mg_peer *p, *q;

	if (a->role != b->role ||
	    !streq_null(a->spool_directory, b->spool_directory) ||
	    !streq_null(a->myhostname, b->myhostname) ||
	    !streq_null(a->mydomain, b->mydomain) ||
	    a->log_destination != b->log_destination ||
	    a->message_size_limit != b->message_size_limit ||
	    a->header_size_limit != b->header_size_limit ||
	    a->recipient_limit != b->recipient_limit ||
	    a->allow_nul_bytes != b->allow_nul_bytes ||
	    a->pickup_after_queue != b->pickup_after_queue ||
	    !streq_null(a->private_key, b->private_key) ||
	    !streq_null(a->default_peer, b->default_peer))
		return 0;
	for (p = a->peers, q = b->peers; p && q; p = p->next, q = q->next)
		if (!streq_null(p->name, q->name) ||
		    p->transport != q->transport ||
		    !streq_null(p->host, q->host) || p->port != q->port ||
		    !streq_null(p->user, q->user) ||
		    !streq_null(p->identity_file, q->identity_file) ||
		    !streq_null(p->known_hosts, q->known_hosts) ||
		    !streq_null(p->public_key, q->public_key) ||
		    p->max_bundle_size != q->max_bundle_size ||
		    p->connect_timeout != q->connect_timeout)
			return 0;
	return p == NULL && q == NULL;
}

static const struct {
	const char	*what;
	const char	*text;
} round_trip_cases[] = {
	{ "defaults only", "" },
	{ "all keys, two peers",
	  "spool_directory = /srv/mg spool\n"
	  "myhostname = h.example.org\n"
	  "mydomain = example.com\n"
	  "log_destination = stderr\n"
	  "message_size_limit = 3G\n"
	  "header_size_limit = 64k\n"
	  "recipient_limit = 12\n"
	  "allow_nul_bytes = yes\n"
	  "pickup_after_queue = no\n"
	  "private_key = /k/priv\n"
	  "default_peer = b\n"
	  "[peer a]\n"
	  "transport = smtp\n"
	  "host = mx.example\n"
	  "port = 25\n"
	  "user = x=y #z\n"
	  "identity_file = /i\n"
	  "known_hosts = /kh\n"
	  "public_key = /pk\n"
	  "max_bundle_size = 1G\n"
	  "connect_timeout = 1h\n"
	  "[peer b]\n"
	  "transport = file\n" },
	{ "one peer, automatic default_peer",
	  "[peer gw]\nhost = gw.example\n" },
	{ "gateway, two peers",
	  "role = gateway\n[peer s1]\nhost = s1.example\n"
	  "[peer s2]\nhost = s2.example\nport = 2525\n" },
};

static void
run_round_trip(void)
{
	char			 err[1024];
	struct mg_config	*a, *b;
	char			*s1, *s2;
	size_t			 n1, n2;

	for (size_t i = 0; i < sizeof(round_trip_cases) /
	    sizeof(round_trip_cases[0]); i++) {
		const char *what = round_trip_cases[i].what;
		const char *text = round_trip_cases[i].text;

		a = b = NULL;
		s1 = s2 = NULL;
		if (!is_int(mg_config_parse(NAME, text, strlen(text), &a, err,
		    sizeof(err)), MG_OK, "round trip %s: parse", what)) {
			diag("  error: %s", err);
			continue;
		}
		s1 = print_config(a, &n1);
		ok(s1 != NULL && n1 > 0, "round trip %s: printed", what);
		if (s1 == NULL)
			goto next;
		if (!is_int(mg_config_parse(NAME, s1, n1, &b, err,
		    sizeof(err)), MG_OK, "round trip %s: printed output parses",
		    what)) {
			diag("  error: %s", err);
			diag("  text:\n%s", s1);
			goto next;
		}
		ok(same_config(a, b), "round trip %s: same configuration",
		    what);
		s2 = print_config(b, &n2);
		ok(s2 != NULL && n1 == n2 && memcmp(s1, s2, n1) == 0,
		    "round trip %s: printing again gives the same text", what);
next:
		free(s1);
		free(s2);
		mg_config_free(a);
		mg_config_free(b);
	}
}

/* The 4096-byte line limit, with LF and with CRLF. */
static void
run_line_limit(void)
{
	char			 err[1024], *text;
	struct mg_config	*cfg;
	size_t			 n;
	enum mg_err		 e;

	text = malloc(8192);
	/* line 1: a comment of exactly 4096 bytes; line 2: a key. */
	memset(text, 'x', 4096);
	text[0] = '#';
	n = 4096;
	memcpy(text + n, "\nrecipient_limit = 9\n", 21);
	n += 21;
	e = mg_config_parse(NAME, text, n, &cfg, err, sizeof(err));
	is_int(e, MG_OK, "line limit: 4096-byte line accepted");
	if (e == MG_OK) {
		is_int(cfg->recipient_limit, 9, "line limit: next line read");
		mg_config_free(cfg);
	} else
		diag("  error: %s", err);

	/* The same 4096-byte line ending in CRLF: CR is the line ending. */
	memset(text, 'x', 4096);
	text[0] = '#';
	n = 4096;
	memcpy(text + n, "\r\nrecipient_limit = 9\r\n", 23);
	n += 23;
	e = mg_config_parse(NAME, text, n, &cfg, err, sizeof(err));
	is_int(e, MG_OK, "line limit: 4096-byte line with CRLF accepted "
	    "like with LF");
	if (e == MG_OK)
		mg_config_free(cfg);
	else
		diag("  error: %s", err);

	/* A 4097-byte line on line 3. */
	memcpy(text, "# a\n\n", 5);
	memset(text + 5, 'x', 4097);
	text[5] = '#';
	n = 5 + 4097;
	text[n++] = '\n';
	e = mg_config_parse(NAME, text, n, &cfg, err, sizeof(err));
	is_int(e, MG_ECONFIG, "line limit: 4097-byte line refused");
	ok(cfg == NULL, "line limit: no config");
	is_str(cs(err), NAME ":3: line longer than 4096 bytes",
	    "line limit: message names line 3");

	/* The same over-long line without a final newline. */
	n--;
	e = mg_config_parse(NAME, text, n, &cfg, err, sizeof(err));
	is_int(e, MG_ECONFIG, "line limit: last line without LF refused");
	is_str(cs(err), NAME ":3: line longer than 4096 bytes",
	    "line limit: last line without LF, line 3");

	/* A huge line (100 kB): still one error, right line. */
	free(text);
	n = 100 * 1024;
	text = malloc(n + 8);
	memcpy(text, "\n", 1);
	memset(text + 1, 'a', n - 1);
	e = mg_config_parse(NAME, text, n, &cfg, err, sizeof(err));
	is_int(e, MG_ECONFIG, "line limit: 100 kB line refused");
	is_str(cs(err), NAME ":2: line longer than 4096 bytes",
	    "line limit: 100 kB line, line 2");
	free(text);
}

/* A tiny error buffer must not overflow, and errlen 1 leaves "". */
static void
run_small_errbuf(void)
{
	char			 err[16];
	struct mg_config	*cfg;
	const char		*t = "frobnicate = 1\n";

	memset(err, 'Z', sizeof(err));
	is_int(mg_config_parse(NAME, t, strlen(t), &cfg, err, 10),
	    MG_ECONFIG, "small errbuf: still MG_ECONFIG");
	ok(memchr(err, '\0', 10) != NULL && err[10] == 'Z',
	    "small errbuf: truncated inside the buffer");
	ok(strncmp(err, NAME ":1: ", 9) == 0 || strncmp(err, NAME ":1:", 9)
	    == 0, "small errbuf: starts with the prefix");
}

static void
run_load(void)
{
	char			 err[1024], dir[] = "/tmp/t_config.XXXXXX";
	char			 path[256], missing[256];
	struct mg_config	*cfg;
	FILE			*fp;
	enum mg_err		 e;
	char			*saved;

	if (!ok(mkdtemp(dir) != NULL, "load: temp dir"))
		return;
	snprintf(missing, sizeof(missing), "%s/no-such.conf", dir);
	cfg = (struct mg_config *)&cfg;
	e = mg_config_load(missing, &cfg, err, sizeof(err));
	is_int(e, MG_ECONFIG, "load: missing file is MG_ECONFIG");
	ok(cfg == NULL, "load: missing file gives no config");
	ok(text_has_prefix(err, missing) && strstr(err, "cannot open") &&
	    strstr(err, "No such file"), "load: message names the path");
	diag("  %s", err);

	snprintf(path, sizeof(path), "%s/good.conf", dir);
	fp = fopen(path, "w");
	fputs("# test\nrecipient_limit = 42\n[peer p]\nhost = p.example\n",
	    fp);
	fclose(fp);
	e = mg_config_load(path, &cfg, err, sizeof(err));
	if (is_int(e, MG_OK, "load: real file")) {
		is_str(cfg->path, cs(path), "load: path recorded");
		is_int(cfg->recipient_limit, 42, "load: value read");
		is_str(cfg->default_peer, "p", "load: only peer is default");
		mg_config_free(cfg);
	} else
		diag("  error: %s", err);

	/* Errors from a loaded file name the path and line. */
	fp = fopen(path, "w");
	fputs("# test\n\nrecipient_limit = many\n", fp);
	fclose(fp);
	e = mg_config_load(path, &cfg, err, sizeof(err));
	is_int(e, MG_ECONFIG, "load: bad file is MG_ECONFIG");
	{
		char want[512];

		snprintf(want, sizeof(want), "%s:3: recipient_limit: 'many' "
		    "is not a number", path);
		is_str(cs(err), cs(want), "load: error names path and line");
	}

	/* NULL path: $MGATE_CONFIG. */
	saved = getenv("MGATE_CONFIG") ? strdup(getenv("MGATE_CONFIG")) :
	    NULL;
	setenv("MGATE_CONFIG", missing, 1);
	e = mg_config_load(NULL, &cfg, err, sizeof(err));
	is_int(e, MG_ECONFIG, "load: $MGATE_CONFIG used for a NULL path");
	ok(text_has_prefix(err, missing), "load: message names "
	    "$MGATE_CONFIG's path");
	if (saved) {
		setenv("MGATE_CONFIG", saved, 1);
		free(saved);
	} else
		unsetenv("MGATE_CONFIG");

	/* A directory is not a configuration file. */
	e = mg_config_load(dir, &cfg, err, sizeof(err));
	is_int(e, MG_ECONFIG, "load: a directory is MG_ECONFIG");
	ok(cfg == NULL && text_has_prefix(err, dir),
	    "load: directory error names the path");

	unlink(path);
	rmdir(dir);
}

int
main(void)
{
	run_bad_cases();
	run_good_cases();
	run_round_trip();
	run_line_limit();
	run_small_errbuf();
	run_load();
	return done();
}
