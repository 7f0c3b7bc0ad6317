/*
 * addr.h - mail addresses: RFC 5322 header address lists and RFC 5321
 * envelope mailboxes.
 *
 * Everything here parses untrusted text (headers of a submitted message,
 * command-line arguments) and never trusts a length it was not given.
 * Results are addr-specs ("local@domain", local part quoted only where
 * RFC 5321 requires it), without display names, comments or angle
 * brackets.  Errors fill errbuf with a one-line reason naming the
 * offending text.
 */
#ifndef MGATE_ADDR_H
#define MGATE_ADDR_H

#include <stddef.h>

#include "mgate/err.h"

#define MG_ADDR_MAX	254	/* RFC 5321 path minus the brackets */
#define MG_LOCAL_MAX	64

struct mg_addrlist {
	char	**addrs;
	size_t	  n;
	size_t	  cap;
	size_t	  max;	/* more than max addresses: MG_ELIMIT */
};

void	mg_addrlist_init(struct mg_addrlist *, size_t max);
void	mg_addrlist_free(struct mg_addrlist *);
/* Appends a copy of addr unless an identical one is already present. */
enum mg_err mg_addrlist_add(struct mg_addrlist *, const char *addr);

/*
 * Parse an RFC 5322 address-list (the value of To, Cc, Bcc, possibly
 * folded: CRLF/LF followed by WSP) and append every addr-spec found,
 * including the members of groups.  Handles display names, nested
 * comments, quoted strings, quoted local parts, obsolete routes, empty
 * groups and empty list elements.  A mailbox without a domain is
 * qualified with `domain' when domain is not NULL.
 * MG_EDATA on malformed input, MG_ELIMIT when the list would exceed its
 * max or an address exceeds MG_ADDR_MAX.
 */
enum mg_err mg_addr_parse_list(const char *text, size_t len,
	    const char *domain, struct mg_addrlist *,
	    char *errbuf, size_t errlen);

/*
 * One address given on a command line or in an envelope: "a@b", "<a@b>",
 * "Name <a@b>" or a bare local part (qualified with domain).  "<>" and
 * "" give the null reverse-path "" only when allow_null is set.  *out is
 * malloc'd.
 */
enum mg_err mg_addr_parse_one(const char *text, const char *domain,
	    int allow_null, char **out, char *errbuf, size_t errlen);

/* 0 if addr is a valid RFC 5321 Mailbox (local@domain), else -1. */
int	mg_addr_valid(const char *addr);

#endif
