/*
 * envelope.c - ownership helpers and RFC 3461 NOTIFY syntax.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mgate/envelope.h"

void
mg_envelope_free(struct mg_envelope *e)
{
	if (e == NULL)
		return;
	for (size_t i = 0; i < e->nrcpt; i++) {
		free(e->rcpts[i].addr);
		free(e->rcpts[i].orcpt);
	}
	free(e->rcpts);
	free(e->user);
	free(e->sender);
	free(e->envid);
	free(e->peer);
	free(e->peer_qid);
	free(e->via);
	memset(e, 0, sizeof(*e));
}

int
mg_envelope_add_rcpt(struct mg_envelope *e, char *addr, char *orcpt,
    unsigned notify)
{
	struct mg_rcpt *n;

	/* Grow by doubling; nrcpt is bounded by the caller's limit. */
	if ((e->nrcpt & (e->nrcpt - 1)) == 0) {
		size_t cap = e->nrcpt ? e->nrcpt * 2 : 1;

		if ((n = realloc(e->rcpts, cap * sizeof(*n))) == NULL) {
			free(addr);
			free(orcpt);
			return -1;
		}
		e->rcpts = n;
	}
	e->rcpts[e->nrcpt].addr = addr;
	e->rcpts[e->nrcpt].orcpt = orcpt;
	e->rcpts[e->nrcpt].notify = notify;
	e->nrcpt++;
	return 0;
}

int
mg_notify_parse(const char *s)
{
	unsigned	bits = 0;
	const char	*p = s, *comma;
	size_t		n;

	for (;;) {
		comma = strchr(p, ',');
		n = comma ? (size_t)(comma - p) : strlen(p);
		if (n == 5 && !strncasecmp(p, "never", 5))
			bits |= MG_NOTIFY_NEVER;
		else if (n == 7 && !strncasecmp(p, "success", 7))
			bits |= MG_NOTIFY_SUCCESS;
		else if (n == 7 && !strncasecmp(p, "failure", 7))
			bits |= MG_NOTIFY_FAILURE;
		else if (n == 5 && !strncasecmp(p, "delay", 5))
			bits |= MG_NOTIFY_DELAY;
		else
			return -1;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	/* RFC 3461 4.1: NEVER excludes every other keyword. */
	if ((bits & MG_NOTIFY_NEVER) && bits != MG_NOTIFY_NEVER)
		return -1;
	return (int)bits;
}

const char *
mg_notify_str(unsigned bits)
{
	static char	buf[32];
	size_t		n = 0;
	static const struct { unsigned bit; const char *name; } t[] = {
		{ MG_NOTIFY_NEVER, "NEVER" }, { MG_NOTIFY_SUCCESS, "SUCCESS" },
		{ MG_NOTIFY_FAILURE, "FAILURE" }, { MG_NOTIFY_DELAY, "DELAY" },
	};

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (!(bits & t[i].bit))
			continue;
		if (n)
			buf[n++] = ',';
		strcpy(buf + n, t[i].name);
		n += strlen(t[i].name);
	}
	return buf;
}
