/*
 * dns.h - where mail for a domain goes: MX, then A and AAAA.
 *
 * RFC 5321 section 5: MX records sorted by preference, equal preferences
 * in random order, every address of each exchanger in turn; no MX
 * means the domain itself is the exchanger (implicit MX); a null MX
 * (RFC 7505) or NXDOMAIN is a permanent failure; SERVFAIL and timeouts
 * are temporary.  Queries go to the configured resolver (address and
 * port), never to a guess.
 */
#ifndef MGATE_DNS_H
#define MGATE_DNS_H

#include <stddef.h>
#include <sys/socket.h>

#include "mgate/err.h"

struct dns_cfg {
	char	server[64];	/* "" : the system's resolv.conf */
	int	port;
	int	timeout_s;
	int	tries;
};

struct dns_target {
	char			host[256];	/* exchanger name */
	int			pref;
	struct sockaddr_storage	addr;
	socklen_t		addrlen;
};

struct dns_route {
	struct dns_target	*t;
	size_t			 n;
};

enum dns_status { DNS_OK, DNS_TEMP, DNS_PERM };

/* "127.0.0.1:5353", "[::1]:53", "10.0.0.1" -> cfg; -1 if malformed. */
int	dns_cfg_parse(const char *, struct dns_cfg *);
/*
 * Resolve mail routing for domain (or a domain literal "[1.2.3.4]").
 * On DNS_TEMP or DNS_PERM, why holds an RFC 3463 status and a reason.
 */
enum dns_status dns_route(const struct dns_cfg *, const char *domain,
	    struct dns_route *, char *why, size_t whylen);
void	dns_route_free(struct dns_route *);

#endif
