/*
 * envelope.h - what travels with a message besides its content.
 *
 * The same struct describes a submission (maildrop), a spooled message
 * and a message in a bundle.  Strings are malloc'd and owned by the
 * struct; mg_envelope_free() releases them.
 */
#ifndef MGATE_ENVELOPE_H
#define MGATE_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "mgate/qid.h"

/* RFC 3461 NOTIFY bits; 0 means "not given" (MTA default). */
#define MG_NOTIFY_NEVER		0x01
#define MG_NOTIFY_SUCCESS	0x02
#define MG_NOTIFY_FAILURE	0x04
#define MG_NOTIFY_DELAY		0x08

enum mg_ret { MG_RET_NONE, MG_RET_FULL, MG_RET_HDRS };
enum mg_body { MG_BODY_NONE, MG_BODY_7BIT, MG_BODY_8BITMIME };
/* From the message's Priority, X-Priority, Importance, Precedence. */
enum mg_prio { MG_PRIO_LOW, MG_PRIO_NORMAL, MG_PRIO_HIGH };

struct mg_rcpt {
	char		*addr;
	char		*orcpt;		/* RFC 3461 ORCPT, or NULL */
	unsigned	 notify;
};

struct mg_envelope {
	char		 qid[MG_QID_LEN + 1];
	uint64_t	 arrival;	/* seconds since the epoch */
	char		*user;		/* submitting login */
	char		*sender;	/* "" is the null sender */
	char		*envid;		/* RFC 3461 ENVID, or NULL */
	int		 ret;		/* enum mg_ret */
	int		 body;		/* enum mg_body */
	int		 priority;	/* enum mg_prio */
	struct mg_rcpt	*rcpts;
	size_t		 nrcpt;
	uint64_t	 size;		/* content bytes */
	char		*peer;		/* received from this peer, or NULL */
	char		*peer_qid;	/* the peer's queue ID for it */
	char		*via;		/* gateway: carry to this peer (inbound) */
};

void	mg_envelope_free(struct mg_envelope *);
/* Takes ownership of addr and orcpt. */
int	mg_envelope_add_rcpt(struct mg_envelope *, char *addr, char *orcpt,
	    unsigned notify);
/* "success,delay" -> bits; -1 if malformed. */
int	mg_notify_parse(const char *);
/* bits -> "SUCCESS,DELAY" (static buffer). */
const char *mg_notify_str(unsigned);

#endif
