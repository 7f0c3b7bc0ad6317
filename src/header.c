/*
 * header.c - RFC 5322 header line classification and field access.
 *
 * A field name is one or more printable ASCII characters other than the
 * colon (RFC 5322 2.2); "From " at the top of an mbox-style message has
 * a space before its first colon, so it is not a field and starts the
 * body, as in every MTA that does not strip it.
 */
#include <strings.h>
#include <string.h>

#include "mgate/header.h"

enum mg_hline
mg_header_classify(const char *line, size_t len, int in_field,
    size_t *name_len, size_t *colon)
{
	size_t i, n;

	if (len == 0)
		return MG_HLINE_END;
	if ((len == 1 && line[0] == '\n') ||
	    (len == 2 && line[0] == '\r' && line[1] == '\n'))
		return MG_HLINE_END;
	if (line[0] == ' ' || line[0] == '\t')
		return in_field ? MG_HLINE_CONT : MG_HLINE_BODY;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if (c == ':' || c < 33 || c > 126)
			break;
	}
	if (i == 0 || i == len)
		return MG_HLINE_BODY;
	n = i;
	/* obs-optional: "Name WSP* :" (but never a body line with a
	 * space, such as "From someone", which has no colon next). */
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (i == len || line[i] != ':')
		return MG_HLINE_BODY;
	if (name_len)
		*name_len = n;
	if (colon)
		*colon = i;
	return MG_HLINE_FIELD;
}

int
mg_hfield_is(const char *buf, const struct mg_hfield *f, const char *name)
{
	size_t n = strlen(name);

	return f->name_len == n && strncasecmp(buf + f->off, name, n) == 0;
}

const char *
mg_hfield_value(const char *buf, const struct mg_hfield *f, size_t *len)
{
	*len = f->len - f->colon - 1;
	return buf + f->off + f->colon + 1;
}
