/*
 * qid.h - queue IDs.
 *
 * A queue ID is 16 characters of Crockford base32: 11 encode the
 * microseconds since the epoch at creation (so IDs sort by age), 5 are
 * random.  IDs name spool files, so mg_qid_valid() is checked before any
 * ID from outside is used in a path.
 */
#ifndef MGATE_QID_H
#define MGATE_QID_H

#include <stdint.h>

#define MG_QID_LEN	16

void	mg_qid_new(char out[MG_QID_LEN + 1]);
/* The same, for a given time and random value (tests, golden files). */
void	mg_qid_make(char out[MG_QID_LEN + 1], uint64_t usec, uint32_t rnd);
int	mg_qid_valid(const char *);
/* Creation time encoded in a valid ID, in microseconds. */
uint64_t mg_qid_usec(const char *);

#endif
