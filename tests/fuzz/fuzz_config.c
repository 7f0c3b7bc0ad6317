/*
 * fuzz_config.c - libFuzzer harness for the mgate.conf parser.
 *
 * Any bytes as a configuration file: the parser must answer MG_OK or
 * MG_ECONFIG with a "name:line: ..." message, never crash or leak, and
 * a configuration it accepted must print and parse again to the same
 * printout (check-config's output is itself a valid configuration).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgate/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct mg_config	*c = NULL, *c2 = NULL;
	char			 err[1024], *out1 = NULL, *out2 = NULL;
	size_t			 n1 = 0, n2 = 0;
	FILE			*fp;

	if (mg_config_parse("fuzz.conf", (const char *)data, len, &c, err,
	    sizeof(err)) != MG_OK) {
		if (c != NULL || strncmp(err, "fuzz.conf:", 10) != 0)
			abort();
		return 0;
	}
	if ((fp = open_memstream(&out1, &n1)) == NULL)
		abort();
	mg_config_print(c, fp);
	fclose(fp);
	/* The printout names the file on its first line; drop that line. */
	if (mg_config_parse("fuzz.conf", out1, n1, &c2, err,
	    sizeof(err)) != MG_OK)
		abort();
	if ((fp = open_memstream(&out2, &n2)) == NULL)
		abort();
	mg_config_print(c2, fp);
	fclose(fp);
	if (n1 != n2 || memcmp(out1, out2, n1) != 0)
		abort();
	free(out1);
	free(out2);
	mg_config_free(c);
	mg_config_free(c2);
	return 0;
}
