/*
 * header.h - reading the header section of a message.
 *
 * A header section is collected line by line (each line with its own
 * line ending) into a bounded buffer, then split into fields.  The field
 * spans point into that buffer; nothing is copied or unfolded unless a
 * caller asks for a value.
 */
#ifndef MGATE_HEADER_H
#define MGATE_HEADER_H

#include <stddef.h>

#include "mgate/err.h"

struct mg_hfield {
	size_t	off;		/* start of the field name */
	size_t	len;		/* whole field, continuation lines included */
	size_t	name_len;	/* name without the colon */
	size_t	colon;		/* offset of the colon from off */
};

enum mg_hline {
	MG_HLINE_FIELD,		/* starts a new field */
	MG_HLINE_CONT,		/* continues the previous field */
	MG_HLINE_END,		/* empty line: the header ends here */
	MG_HLINE_BODY,		/* not a header line: the body starts here */
};

/*
 * Classify one line (with its ending) given whether a field is open.
 * For a field, *name_len and *colon (may be NULL) locate the name and
 * the colon: RFC 5322 4.5 allows white space between them ("Bcc :").
 */
enum mg_hline mg_header_classify(const char *line, size_t len, int in_field,
	    size_t *name_len, size_t *colon);
/* Case-insensitive test of a field's name. */
int	mg_hfield_is(const char *buf, const struct mg_hfield *, const char *);
/* Pointer to the value (after the colon) and its length, raw. */
const char *mg_hfield_value(const char *buf, const struct mg_hfield *,
	    size_t *len);

#endif
