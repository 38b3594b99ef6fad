/*
 * cmd_test.c — `nudge test [FILE...]`: runs workflow tests (default: every workflows/NAME_test.lua)
 * on the virtual clock, each case in a private schema of the given database, and ends with
 * "N passed, M failed". The database comes from --conninfo, NUDGE_TEST_PG or --config.
 */
#include "cli.h"
#include "ng.h"
#include "paths.h"
#include "wf_harness.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int ng_cmd_test(int argc, char **argv)
{
	const char *config = NULL, *conninfo = getenv("NUDGE_TEST_PG");
	char **files = NULL;
	int nf = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			config = argv[++i];
			conninfo = NULL;
		} else if (strcmp(argv[i], "--conninfo") == 0 && i + 1 < argc) {
			conninfo = argv[++i];
		} else if (argv[i][0] != '-') {
			files = ng_xrealloc(files, (size_t)(nf + 1) * sizeof(char *));
			files[nf++] = ng_xstrdup(argv[i]);
		} else {
			return ng_cli_usage("test");
		}
	}
	char *dir = ng_paths_shipped("workflows");
	if (!dir) {
		fprintf(stderr, "nudge: no workflows/ directory found\n");
		return 1;
	}
	if (nf == 0) {
		DIR *d = opendir(dir);
		struct dirent *de;
		while (d && (de = readdir(d))) {
			size_t l = strlen(de->d_name);
			if (l > 9 && strcmp(de->d_name + l - 9, "_test.lua") == 0) {
				files = ng_xrealloc(files, (size_t)(nf + 1) * sizeof(char *));
				files[nf++] = ng_xasprintf("%s/%s", dir, de->d_name);
			}
		}
		if (d)
			closedir(d);
		qsort(files, (size_t)nf, sizeof(char *), cmp);
	}
	char *ci = ng_cli_conninfo(config, conninfo);
	int passed = 0, failed = 0;
	for (int i = 0; ci && i < nf; i++)
		ng_wf_test_file(ci, files[i], dir, stdout, &passed, &failed);
	for (int i = 0; i < nf; i++)
		free(files[i]);
	free(files);
	free(dir);
	if (!ci)
		return 1;
	free(ci);
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
