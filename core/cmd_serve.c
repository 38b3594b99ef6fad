/*
 * cmd_serve.c — `nudge serve [--config FILE]`: runs the daemon until SIGTERM/SIGINT.
 */
#include "cli.h"
#include "daemon.h"

#include <string.h>

int ng_cmd_serve(int argc, char **argv)
{
	const char *config = "nudge.conf.lua";
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			config = argv[++i];
		else
			return ng_cli_usage("serve");
	}
	return ng_daemon_run(config);
}
