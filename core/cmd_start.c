/*
 * cmd_start.c — `nudge start WORKFLOW --customer ID`: starts an instance of the workflow's active
 * version for one customer now (at most one live instance per customer), and notifies running
 * daemons so it begins at once.
 */
#include "cli.h"
#include "ng.h"
#include "wf.h"
#include "wf_harness.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int ng_cmd_start(int argc, char **argv)
{
	const char *wf = NULL, *customer = NULL, *config = NULL, *conninfo = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--customer") == 0 && i + 1 < argc)
			customer = argv[++i];
		else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			config = argv[++i];
		else if (strcmp(argv[i], "--conninfo") == 0 && i + 1 < argc)
			conninfo = argv[++i];
		else if (!wf && argv[i][0] != '-')
			wf = argv[i];
		else
			return ng_cli_usage("start");
	}
	if (!wf || !customer || strspn(customer, "0123456789") != strlen(customer))
		return ng_cli_usage("start");
	PGconn *pg = ng_cli_connect(config, conninfo);
	if (!pg)
		return 1;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	char now[40];
	const char *p[3] = {
	    customer, ng_wf_ts((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, now, sizeof now),
	    wf};
	PGresult *r = PQexecParams(pg, ng_wf_manual_start_sql, 3, NULL, p, NULL, NULL, 0);
	int rc = 0;
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(stderr, "nudge: %s", PQresultErrorMessage(r));
		rc = 1;
	} else if (PQntuples(r) == 0) {
		fprintf(stderr,
		        "nudge: not started: no deployed workflow named %s, or customer %s "
		        "already has a live instance of it\n",
		        wf, customer);
		rc = 1;
	} else {
		printf("started %s instance %s for customer %s\n", wf, PQgetvalue(r, 0, 0),
		       customer);
	}
	PQclear(r);
	PQfinish(pg);
	return rc;
}
