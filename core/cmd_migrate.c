/* cmd_migrate.c — placeholder while the foundation is built; replaced in this same series. */
#include "cli.h"
#include <stdio.h>
int ng_cmd_migrate(int argc, char **argv)
{
	(void)argc;
	fprintf(stderr, "nudge: %s is being built\n", argv[0]);
	return 1;
}
