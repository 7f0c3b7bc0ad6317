/*
 * qid.c - queue ID generation and validation.
 *
 * Uniqueness comes from the microsecond clock plus 25 random bits from
 * getrandom(2); the maildrop's O_EXCL create catches the rest.
 */
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>

#include "mgate/qid.h"

static const char qid_alpha[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

void
mg_qid_make(char out[MG_QID_LEN + 1], uint64_t usec, uint32_t rnd)
{
	for (int i = 10; i >= 0; i--) {
		out[i] = qid_alpha[usec & 31];
		usec >>= 5;
	}
	for (int i = 15; i >= 11; i--) {
		out[i] = qid_alpha[rnd & 31];
		rnd >>= 5;
	}
	out[MG_QID_LEN] = '\0';
}

void
mg_qid_new(char out[MG_QID_LEN + 1])
{
	struct timeval	tv;
	uint32_t	rnd = 0;

	gettimeofday(&tv, NULL);
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint32_t)tv.tv_usec * 2654435761u;
	mg_qid_make(out, (uint64_t)tv.tv_sec * 1000000 + (uint64_t)tv.tv_usec,
	    rnd);
}

int
mg_qid_valid(const char *s)
{
	size_t i;

	for (i = 0; i < MG_QID_LEN; i++)
		if (s[i] == '\0' || strchr(qid_alpha, s[i]) == NULL)
			return 0;
	return s[i] == '\0';
}

uint64_t
mg_qid_usec(const char *s)
{
	uint64_t v = 0;

	for (int i = 0; i < 11; i++)
		v = v << 5 | (uint64_t)(strchr(qid_alpha, s[i]) - qid_alpha);
	return v;
}
