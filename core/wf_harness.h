/*
 * wf_harness.h — the engine on a virtual clock, driven step by step: what `nudge simulate`,
 * `nudge test` (workflows/NAME_test.lua) and the C tests use. A harness owns a libuv loop, a
 * virtual clock, a database pool (optionally inside a fresh schema of its own, dropped on close, so
 * nothing it does reaches the real tables or the dispatcher) and an engine with the deployed
 * workflows.
 *
 * Set-up calls (customers, events, manual starts) use a blocking libpq connection: these are tools
 * and tests, never the daemon.
 */
#ifndef NG_WF_HARNESS_H
#define NG_WF_HARNESS_H

#include "wf.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>

struct ng_wf_harness;

struct ng_wf_harness_options {
	const char *conninfo;         /* key=value form when isolate is set */
	const char *workflows_dir;    /* deployed at open */
	int64_t start_ms;             /* virtual start time; 0 = 2026-01-05 10:00 UTC (a Monday) */
	int isolate;                  /* migrate into a private schema, dropped at close */
	const char *owner;            /* lease owner name */
	const char *default_timezone; /* the store's; default "UTC" */
	void (*trace)(const struct ng_wf_trace *t, void *data);
	void *trace_data;
};

int ng_wf_harness_open(struct ng_wf_harness **out, const struct ng_wf_harness_options *o,
                       char **err);
void ng_wf_harness_close(struct ng_wf_harness *h);

/* A customer from {email, phone, first_name, timezone, birthday, attributes, consent = {sms =
 * "granted"}}; returns its id (> 0) or a negative code with *err set. */
int64_t ng_wf_harness_customer(struct ng_wf_harness *h, json_t *spec, char **err);
/* An accepted event (as the intake writes it), then a pass. */
int ng_wf_harness_event(struct ng_wf_harness *h, int64_t customer, const char *type, json_t *data,
                        char **err);
/* `nudge start`: a manual instance of the workflow's active version. */
int ng_wf_harness_start(struct ng_wf_harness *h, const char *workflow, int64_t customer,
                        char **err);
/* Runs the loop until the engine is idle. */
void ng_wf_harness_settle(struct ng_wf_harness *h);
/* Moves the virtual clock forward by ms, stopping at every due moment on the way. */
void ng_wf_harness_advance(struct ng_wf_harness *h, int64_t ms);

PGconn *ng_wf_harness_pg(struct ng_wf_harness *h);
struct ng_wf_engine *ng_wf_harness_engine(struct ng_wf_harness *h);
int64_t ng_wf_harness_now(struct ng_wf_harness *h);
/* The conninfo of the harness's database (with its private schema's search_path). */
const char *ng_wf_harness_conninfo(struct ng_wf_harness *h);

/* The SQL of a manual start, shared with `nudge start`: $1 customer, $2 now, $3 workflow. */
extern const char ng_wf_manual_start_sql[];

/*
 * Runs a workflow test file (see docs/workflows.md): every case on a fresh harness. Prints "ok" /
 * "not ok" lines to out; adds to *passed and *failed. Returns 0, or a negative code when the file
 * itself could not be loaded (counted as one failure).
 */
int ng_wf_test_file(const char *conninfo, const char *path, const char *workflows_dir, FILE *out,
                    int *passed, int *failed);

/* `nudge simulate`: prints the timeline of one customer through one workflow. */
int ng_wf_simulate(const char *conninfo, const char *workflows_dir, const char *workflow,
                   json_t *customer, json_t *events, int64_t for_ms, FILE *out, char **err);

#endif
