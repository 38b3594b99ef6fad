/*
 * cmd_migrate.c — `nudge migrate`: applies pending migrations to the configured database.
 */
#include "cli.h"
#include "config.h"
#include "migrate.h"
#include "ng.h"
#include "paths.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ng_cmd_migrate(int argc, char **argv)
{
	const char *config = NULL, *conninfo = NULL, *sql_dir = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			config = argv[++i];
		else if (strcmp(argv[i], "--conninfo") == 0 && i + 1 < argc)
			conninfo = argv[++i];
		else if (strcmp(argv[i], "--sql-dir") == 0 && i + 1 < argc)
			sql_dir = argv[++i];
		else
			return ng_cli_usage("migrate");
	}
	if (config && conninfo)
		return ng_cli_usage("migrate");

	char err[1024];
	struct ng_conf *c = NULL;
	if (!conninfo) {
		if (!config)
			config = "nudge.conf.lua";
		if (ng_conf_load(config, &c, err, sizeof err) != 0) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		conninfo = ng_conf_str(c, "database.conninfo");
	}
	char *dir = sql_dir ? ng_xstrdup(sql_dir) : ng_paths_shipped("sql");
	if (!dir) {
		fprintf(stderr, "nudge: cannot find the sql/ directory; pass --sql-dir DIR\n");
		ng_conf_free(c);
		return 1;
	}
	int applied = 0;
	int rc = ng_migrate_run(conninfo, dir, &applied, err, sizeof err);
	if (rc)
		fprintf(stderr, "nudge migrate: %s\n", err);
	else
		printf("migrations: %d applied, database is up to date\n", applied);
	free(dir);
	ng_conf_free(c);
	return rc ? 1 : 0;
}
