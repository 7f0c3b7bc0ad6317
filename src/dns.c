/*
 * dns.c - MX and address resolution with libc's res_n* interface.
 *
 * Why libresolv: it is in every Debian system, talks to any resolver
 * address and port (res_state's nsaddr_list), and tells NXDOMAIN from
 * SERVFAIL, which getaddrinfo() does not.  Answers are hostile input:
 * names are decompressed with ns_name_uncompress into bounded buffers,
 * record counts and lengths come from ns_parserr's checks.
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "mgate/dns.h"

#define ANSWER_MAX	65536
#define MAX_MX		32
#define MAX_ADDRS	16

int
dns_cfg_parse(const char *s, struct dns_cfg *c)
{
	const char	*colon;
	size_t		 n;

	memset(c, 0, sizeof(*c));
	c->port = 53;
	c->timeout_s = 5;
	c->tries = 2;
	if (s == NULL || *s == '\0')
		return 0;
	if (*s == '[') {
		const char *end = strchr(s, ']');

		if (end == NULL || (size_t)(end - s - 1) >= sizeof(c->server))
			return -1;
		memcpy(c->server, s + 1, (size_t)(end - s - 1));
		colon = end[1] == ':' ? end + 1 : NULL;
		if (end[1] && !colon)
			return -1;
	} else {
		colon = strrchr(s, ':');
		n = colon ? (size_t)(colon - s) : strlen(s);
		if (n >= sizeof(c->server))
			return -1;
		memcpy(c->server, s, n);
	}
	if (colon) {
		char *end;
		long  p = strtol(colon + 1, &end, 10);

		if (*end || p < 1 || p > 65535)
			return -1;
		c->port = (int)p;
	}
	{
		struct in6_addr a6;
		struct in_addr	a4;

		if (inet_pton(AF_INET, c->server, &a4) != 1 &&
		    inet_pton(AF_INET6, c->server, &a6) != 1)
			return -1;
	}
	return 0;
}

static int
res_setup(const struct dns_cfg *c, res_state rs)
{
	struct sockaddr_in *sin;

	memset(rs, 0, sizeof(*rs));
	if (res_ninit(rs) != 0)
		return -1;
	rs->retrans = c->timeout_s;
	rs->retry = c->tries;
	/* Exact names only: no search list, no appended domains. */
	rs->options &= ~(unsigned long)(RES_DEFNAMES | RES_DNSRCH);
	if (c->server[0] == '\0')
		return 0;
	/* IPv4 resolver addresses only here; tests and most setups use it. */
	sin = &rs->nsaddr_list[0];
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((unsigned short)c->port);
	if (inet_pton(AF_INET, c->server, &sin->sin_addr) != 1)
		return -1;
	rs->nscount = 1;
	return 0;
}

/* Query; returns answer length, 0 for NODATA, -1 with status set. */
static int
query(res_state rs, const char *name, int type, unsigned char *ans,
    enum dns_status *st)
{
	int n;

	n = res_nquery(rs, name, ns_c_in, type, ans, ANSWER_MAX);
	if (n >= 0)
		return n;
	switch (rs->res_h_errno) {
	case HOST_NOT_FOUND:
		*st = DNS_PERM;
		return -1;
	case NO_DATA:
		return 0;
	default:
		*st = DNS_TEMP;
		return -1;
	}
}

struct mx {
	char	name[NS_MAXDNAME];
	int	pref;
	unsigned rnd;
};

static int
mx_cmp(const void *x, const void *y)
{
	const struct mx *a = x, *b = y;

	if (a->pref != b->pref)
		return a->pref < b->pref ? -1 : 1;
	return a->rnd < b->rnd ? -1 : a->rnd > b->rnd;
}

static int
add_target(struct dns_route *r, const char *host, int pref,
    const struct sockaddr *sa, socklen_t len)
{
	struct dns_target *n;

	if ((n = realloc(r->t, (r->n + 1) * sizeof(*n))) == NULL)
		return -1;
	r->t = n;
	memset(&n[r->n], 0, sizeof(n[r->n]));
	snprintf(n[r->n].host, sizeof(n[r->n].host), "%s", host);
	n[r->n].pref = pref;
	memcpy(&n[r->n].addr, sa, len);
	n[r->n].addrlen = len;
	r->n++;
	return 0;
}

/* A and AAAA of host, appended in that order; status of the lookups. */
static enum dns_status
addresses(res_state rs, const char *host, int pref, struct dns_route *r,
    unsigned char *ans)
{
	static const int types[] = { ns_t_a, ns_t_aaaa };
	enum dns_status	 st = DNS_OK, worst = DNS_PERM;
	ns_msg		 msg;
	ns_rr		 rr;
	int		 n, found = 0;

	for (size_t t = 0; t < 2; t++) {
		st = DNS_OK;
		if ((n = query(rs, host, types[t], ans, &st)) < 0) {
			if (st == DNS_TEMP)
				worst = DNS_TEMP;
			continue;
		}
		if (n == 0 || ns_initparse(ans, n, &msg) < 0)
			continue;
		for (int i = 0; i < ns_msg_count(msg, ns_s_an) &&
		    found < MAX_ADDRS; i++) {
			if (ns_parserr(&msg, ns_s_an, i, &rr) < 0)
				break;
			if (ns_rr_type(rr) == ns_t_a && ns_rr_rdlen(rr) == 4) {
				struct sockaddr_in sin;

				memset(&sin, 0, sizeof(sin));
				sin.sin_family = AF_INET;
				memcpy(&sin.sin_addr, ns_rr_rdata(rr), 4);
				if (add_target(r, host, pref,
				    (struct sockaddr *)&sin, sizeof(sin)) == 0)
					found++;
			} else if (ns_rr_type(rr) == ns_t_aaaa &&
			    ns_rr_rdlen(rr) == 16) {
				struct sockaddr_in6 sin6;

				memset(&sin6, 0, sizeof(sin6));
				sin6.sin6_family = AF_INET6;
				memcpy(&sin6.sin6_addr, ns_rr_rdata(rr), 16);
				if (add_target(r, host, pref,
				    (struct sockaddr *)&sin6, sizeof(sin6)) == 0)
					found++;
			}
		}
	}
	return found ? DNS_OK : worst;
}

static enum dns_status
literal(const char *domain, struct dns_route *r, char *why, size_t whylen)
{
	char			 buf[64];
	size_t			 n = strlen(domain);
	struct sockaddr_in	 sin;
	struct sockaddr_in6	 sin6;

	if (n < 3 || n - 2 >= sizeof(buf) || domain[n - 1] != ']')
		goto bad;
	memcpy(buf, domain + 1, n - 2);
	buf[n - 2] = '\0';
	memset(&sin, 0, sizeof(sin));
	memset(&sin6, 0, sizeof(sin6));
	if (inet_pton(AF_INET, buf, &sin.sin_addr) == 1) {
		sin.sin_family = AF_INET;
		return add_target(r, domain, 0, (struct sockaddr *)&sin,
		    sizeof(sin)) ? DNS_TEMP : DNS_OK;
	}
	if (strncasecmp(buf, "IPv6:", 5) == 0 &&
	    inet_pton(AF_INET6, buf + 5, &sin6.sin6_addr) == 1) {
		sin6.sin6_family = AF_INET6;
		return add_target(r, domain, 0, (struct sockaddr *)&sin6,
		    sizeof(sin6)) ? DNS_TEMP : DNS_OK;
	}
bad:
	snprintf(why, whylen, "5.1.2 bad address literal %s", domain);
	return DNS_PERM;
}

enum dns_status
dns_route(const struct dns_cfg *c, const char *domain, struct dns_route *r,
    char *why, size_t whylen)
{
	struct __res_state	 rs;
	unsigned char		*ans = NULL;
	struct mx		*mx = NULL;
	ns_msg			 msg;
	ns_rr			 rr;
	int			 n, nmx = 0, any_temp = 0;
	enum dns_status		 st = DNS_OK, ast;

	memset(r, 0, sizeof(*r));
	if (domain[0] == '[')
		return literal(domain, r, why, whylen);
	if (res_setup(c, &rs) != 0) {
		snprintf(why, whylen, "4.4.3 cannot set up the resolver");
		return DNS_TEMP;
	}
	if ((ans = malloc(ANSWER_MAX)) == NULL ||
	    (mx = calloc(MAX_MX, sizeof(*mx))) == NULL) {
		st = DNS_TEMP;
		snprintf(why, whylen, "4.3.0 out of memory");
		goto out;
	}
	if ((n = query(&rs, domain, ns_t_mx, ans, &st)) < 0) {
		snprintf(why, whylen, st == DNS_PERM ?
		    "5.1.2 domain %s does not exist (NXDOMAIN)" :
		    "4.4.3 DNS lookup of MX for %s failed (SERVFAIL or "
		    "timeout)", domain);
		goto out;
	}
	if (n > 0 && ns_initparse(ans, n, &msg) == 0) {
		for (int i = 0; i < ns_msg_count(msg, ns_s_an) &&
		    nmx < MAX_MX; i++) {
			const unsigned char *rd;

			if (ns_parserr(&msg, ns_s_an, i, &rr) < 0)
				break;
			if (ns_rr_type(rr) != ns_t_mx || ns_rr_rdlen(rr) < 3)
				continue;
			rd = ns_rr_rdata(rr);
			mx[nmx].pref = rd[0] << 8 | rd[1];
			if (ns_name_uncompress(ns_msg_base(msg),
			    ns_msg_end(msg), rd + 2, mx[nmx].name,
			    sizeof(mx[nmx].name)) < 0)
				continue;
			if (getrandom(&mx[nmx].rnd, sizeof(mx[nmx].rnd), 0) < 0)
				mx[nmx].rnd = (unsigned)i;
			nmx++;
		}
	}
	/* RFC 7505: a single MX "." with preference 0 refuses all mail. */
	if (nmx == 1 && (mx[0].name[0] == '\0' || strcmp(mx[0].name, ".") ==
	    0)) {
		snprintf(why, whylen, "5.1.10 domain %s accepts no mail "
		    "(null MX)", domain);
		st = DNS_PERM;
		goto out;
	}
	if (nmx == 0) {		/* implicit MX: the domain itself */
		snprintf(mx[0].name, sizeof(mx[0].name), "%s", domain);
		nmx = 1;
	}
	qsort(mx, (size_t)nmx, sizeof(*mx), mx_cmp);
	for (int i = 0; i < nmx; i++) {
		if (mx[i].name[0] == '\0' || strcmp(mx[i].name, ".") == 0)
			continue;
		ast = addresses(&rs, mx[i].name, mx[i].pref, r, ans);
		if (ast == DNS_TEMP)
			any_temp = 1;
	}
	if (r->n == 0) {
		st = any_temp ? DNS_TEMP : DNS_PERM;
		snprintf(why, whylen, st == DNS_TEMP ? "4.4.3 no address for "
		    "the mail exchangers of %s yet (DNS failure)" : "5.1.2 no "
		    "address for any mail exchanger of %s", domain);
		goto out;
	}
	st = DNS_OK;
out:
	res_nclose(&rs);
	free(ans);
	free(mx);
	return st;
}

void
dns_route_free(struct dns_route *r)
{
	free(r->t);
	r->t = NULL;
	r->n = 0;
}
