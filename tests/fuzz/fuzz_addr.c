/*
 * fuzz_addr.c - libFuzzer harness for addr.c.
 *
 * Feeds arbitrary bytes to mg_addr_parse_list() as a header value (with
 * its explicit length, so embedded NULs are seen) and, as a C string,
 * to mg_addr_parse_one().  Beyond the sanitizers' checks it asserts the
 * parser's promises: every address it returns is within MG_ADDR_MAX,
 * a failed parse leaves the list empty, and an accepted single address
 * passes mg_addr_valid() unless it is the null reverse-path.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mgate/addr.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mg_addrlist	 l;
	char			 err[256], *s, *out = NULL;
	size_t			 i;
	enum mg_err		 e;

	mg_addrlist_init(&l, 1000);
	e = mg_addr_parse_list((const char *)data, size, "example.org", &l,
	    err, sizeof(err));
	if (e != MG_OK && l.n != 0)
		abort();
	for (i = 0; i < l.n; i++)
		if (strlen(l.addrs[i]) > MG_ADDR_MAX)
			abort();
	mg_addrlist_free(&l);

	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	e = mg_addr_parse_one(s, "example.org", size & 1, &out, err,
	    sizeof(err));
	if (e == MG_OK && out[0] != '\0' && mg_addr_valid(out) != 0)
		abort();
	if (e != MG_OK && out != NULL)
		abort();
	free(out);
	free(s);
	return 0;
}
