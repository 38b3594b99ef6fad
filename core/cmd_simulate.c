/*
 * cmd_simulate.c — `nudge simulate WORKFLOW --customer FILE --events FILE --for 30d`: runs one
 * customer through a workflow on the virtual clock, in a private schema, and prints the timeline:
 * what it would send, when, and why it stopped. Nothing is sent.
 *
 *   customer FILE: {"email": "...", "phone": "...", "timezone": "Europe/Paris",
 *                   "birthday": "1990-02-28", "consent": {"sms": "granted"}, "attributes": {}}
 *   events FILE:   [{"after": "10m", "type": "checkout.started", "data": {...}}, ...]
 */
#include "cli.h"
#include "ng.h"
#include "paths.h"
#include "wf_harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ng_cmd_simulate(int argc, char **argv)
{
	const char *wf = NULL, *cfile = NULL, *efile = NULL, *dur = "30d", *config = NULL,
	           *conninfo = getenv("NUDGE_TEST_PG"), *dir_arg = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--customer") == 0 && i + 1 < argc)
			cfile = argv[++i];
		else if (strcmp(argv[i], "--events") == 0 && i + 1 < argc)
			efile = argv[++i];
		else if (strcmp(argv[i], "--for") == 0 && i + 1 < argc)
			dur = argv[++i];
		else if (strcmp(argv[i], "--workflows") == 0 && i + 1 < argc)
			dir_arg = argv[++i];
		else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			config = argv[++i];
			conninfo = NULL;
		} else if (strcmp(argv[i], "--conninfo") == 0 && i + 1 < argc)
			conninfo = argv[++i];
		else if (!wf && argv[i][0] != '-')
			wf = argv[i];
		else
			return ng_cli_usage("simulate");
	}
	int64_t for_ms;
	if (!wf || ng_clock_parse_duration(dur, &for_ms) != 0)
		return ng_cli_usage("simulate");
	json_error_t je;
	json_t *cust = cfile ? json_load_file(cfile, 0, &je) : json_object();
	if (!cust) {
		fprintf(stderr, "nudge: %s:%d: %s\n", cfile, je.line, je.text);
		return 1;
	}
	json_t *events = efile ? json_load_file(efile, 0, &je) : json_array();
	if (!events || !json_is_array(events)) {
		fprintf(stderr, "nudge: %s:%d: %s\n", efile, events ? 1 : je.line,
		        events ? "must be a JSON array of events" : je.text);
		json_decref(cust);
		json_decref(events);
		return 1;
	}
	char *dir = dir_arg ? ng_xstrdup(dir_arg) : ng_paths_shipped("workflows");
	char *ci = ng_cli_conninfo(config, conninfo);
	int rc = 1;
	if (dir && ci) {
		char *err = NULL;
		rc = ng_wf_simulate(ci, dir, wf, cust, events, for_ms, stdout, &err) ? 1 : 0;
		if (err)
			fprintf(stderr, "nudge: %s\n", err);
		free(err);
	}
	free(dir);
	free(ci);
	json_decref(cust);
	json_decref(events);
	return rc;
}
