/*
 * fuzz_smtp_reply.c - libFuzzer harness for the SMTP reply parser.
 *
 * The input is what a hostile server sends; replies are read from it
 * one after another until the parser stops.  Every accepted reply must
 * have a code from 200 to 599, text without control characters, and a
 * status, if any, whose class matches the code.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mgate/smtp_client.h"
#include "mgate/stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct mg_stream	*s;
	char			 text[512], st[16];
	unsigned		 ext;
	int			 pfd[2], code, i;

	if (len > 60000 || pipe(pfd) < 0)
		return 0;
	if (write(pfd[1], data, len) != (ssize_t)len)
		abort();
	close(pfd[1]);
	if ((s = mg_stream_fd(pfd[0], 1)) == NULL)
		abort();
	for (i = 0; i < 200; i++) {
		if (smtp_reply_read(s, &code, text, sizeof(text), st,
		    sizeof(st), (i & 1) ? &ext : NULL) != MG_OK)
			break;
		if (code < 200 || code > 599)
			abort();
		for (char *p = text; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				abort();
		if (st[0] && st[0] - '0' != code / 100)
			abort();
	}
	mg_stream_close(s);
	return 0;
}
