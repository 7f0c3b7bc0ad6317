/*
 * cmd_config.c - `mgate check-config': validate and print.
 *
 * Exit 0 and the effective configuration (every key, defaults included)
 * when the file is valid; EX_CONFIG and "file:line: reason" otherwise.
 * With --keys, print every key's type, default and meaning instead.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>

#include "mgate/cmd.h"

int
cmd_check_config(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mg_config	*cfg;
	struct stat		 st;

	if (argc == 1 && strcmp(argv[0], "--keys") == 0) {
		mg_config_print_doc(stdout);
		return EX_OK;
	}
	if (argc != 0) {
		cmd_die_msg(ctx, "usage: mgate check-config [--keys]");
		return EX_USAGE;
	}
	if ((cfg = cmd_load_config(ctx)) == NULL)
		return EX_CONFIG;
	mg_config_print(cfg, stdout);
	if (stat(cfg->spool_directory, &st) < 0)
		fprintf(stderr, "%s: note: spool_directory %s does not exist "
		    "yet: run `mgate init' to create it\n", ctx->progname,
		    cfg->spool_directory);
	mg_config_free(cfg);
	return EX_OK;
}
