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
mg_header_classify(const char *line, size_t len, int in_field)
{
	size_t i;

	if (len == 0)
		return MG_HLINE_END;
	if ((len == 1 && line[0] == '\n') ||
	    (len == 2 && line[0] == '\r' && line[1] == '\n'))
		return MG_HLINE_END;
	if (line[0] == ' ' || line[0] == '\t')
		return in_field ? MG_HLINE_CONT : MG_HLINE_BODY;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if (c == ':')
			return i > 0 ? MG_HLINE_FIELD : MG_HLINE_BODY;
		if (c < 33 || c > 126)
			return MG_HLINE_BODY;
	}
	return MG_HLINE_BODY;
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
	*len = f->len - f->name_len - 1;
	return buf + f->off + f->name_len + 1;
}
