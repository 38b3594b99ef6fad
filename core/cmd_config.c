/*
 * cmd_config.c — `nudge config check FILE` and `nudge config keys`.
 */
#include "cli.h"
#include "config.h"
#include "ng.h"

#include <stdio.h>
#include <string.h>

static void print_line(void *arg, const char *line)
{
	fprintf(arg, "%s\n", line);
}

int ng_cmd_config(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "keys") == 0) {
		ng_conf_describe(print_line, stdout);
		return 0;
	}
	if (argc != 3 || strcmp(argv[1], "check") != 0)
		return ng_cli_usage("config");
	char err[1024];
	struct ng_conf *c = NULL;
	if (ng_conf_load(argv[2], &c, err, sizeof err) != 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	ng_conf_free(c);
	printf("%s: ok\n", argv[2]);
	return 0;
}
