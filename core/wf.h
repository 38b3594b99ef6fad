/*
 * wf.h — the durable workflow runtime: workflow definitions (load and validate a workflow file),
 * and the engine that runs their instances on the libuv loop against PostgreSQL.
 *
 * The engine owns one Lua sandbox, the loaded definitions of every deployed version, and a
 * scheduler: it claims accepted events from the trigger inbox (starting instances, feeding
 * wait_for, ending instances on exit events) and claims due instances with FOR UPDATE SKIP LOCKED
 * leases, replays each one's journal and runs it to its next wait. Time comes from an ng_clock, so
 * the same code runs on the virtual clock in `nudge simulate` and `nudge test`.
 *
 * Files: wf_def.c (definitions), wf_json.c (Lua <-> JSON), wf_ctx.c (the ctx API inside run),
 * wf_step.c (one activation: replay, effects, the fenced commit), wf_inbox.c (triggers, exits,
 * wait_for), wf_sweep.c (date and segment triggers), wf_engine.c (scheduler, timer, NOTIFY),
 * wf_deploy.c (versions in the database), wf_harness.c (virtual-clock driver for tools and tests).
 */
#ifndef NG_WF_H
#define NG_WF_H

#include "clock.h"
#include "db.h"
#include "lua_sandbox.h"

#include <stdint.h>
#include <uv.h>

struct ng_wf_def;
struct ng_wf_engine;

enum ng_wf_trigger { NG_WF_TRIGGER_EVENT, NG_WF_TRIGGER_DATE, NG_WF_TRIGGER_EVERY, NG_WF_TRIGGER_MANUAL };

/*
 * Loads and validates a workflow file in lua: runs its top level (bounded) and checks the
 * definition it returns. On failure returns a negative code and sets *err (free it) to a sentence
 * naming file:line where the problem is, e.g. "workflows/cart.lua:4: trigger.event must be a
 * string". The definition keeps a reference into lua; free it before closing lua.
 */
int ng_wf_load(struct ng_lua *lua, const char *path, struct ng_wf_def **out, char **err);
int ng_wf_load_buffer(struct ng_lua *lua, const char *name, const char *text, size_t len,
                      struct ng_wf_def **out, char **err);
void ng_wf_def_free(struct ng_wf_def *def);
const char *ng_wf_def_name(const struct ng_wf_def *def);
enum ng_wf_trigger ng_wf_def_trigger(const struct ng_wf_def *def);
/* The definition as stored in workflow_versions.definition (JSON text; free it). */
char *ng_wf_def_describe(const struct ng_wf_def *def);

/* What happened, for timelines (`nudge simulate`), tests and debugging. */
struct ng_wf_trace {
	int64_t at_ms;
	int64_t customer_id, instance_id;
	const char *workflow;
	const char *what; /* "started", "send", "wait", "wait_for", "completed", "exited", … */
	const char *detail;
};

struct ng_wf_options {
	uv_loop_t *loop;
	ng_db *db;
	struct ng_clock *clock;
	const char *owner;            /* lease owner name; default host:pid */
	const char *default_timezone; /* the store's; default "UTC" */
	int batch;                    /* instances or events claimed at once; default 64 */
	int lease_ms;                 /* how long a claim lasts; default 30000 */
	int poll_ms;                  /* safety re-check for other nodes' work; default 5000 */
	struct ng_lua_limits limits;  /* per activation */
	int listen;                   /* LISTEN for new work (off for tools that drive the engine) */
	void (*trace)(const struct ng_wf_trace *t, void *data);
	void *trace_data;
};

int ng_wf_engine_open(struct ng_wf_engine **out, const struct ng_wf_options *opt);

/*
 * Deploys every workflow file in dir (files ending in _test.lua are skipped): a file whose source
 * changed becomes a new version and the active one. Then loads every deployed version (running
 * instances keep theirs). done(status, err, arg) is called once; err names every refused file.
 */
typedef void (*ng_wf_done_cb)(int status, const char *err, void *arg);
int ng_wf_engine_deploy(struct ng_wf_engine *e, const char *dir, ng_wf_done_cb done, void *arg);

/* Starts scheduling: LISTEN (if asked), the first pass, the next-due timer. */
void ng_wf_engine_start(struct ng_wf_engine *e);
/* Asks for a pass soon (new events, a manual start). */
void ng_wf_engine_kick(struct ng_wf_engine *e);
/* Whether the engine has nothing in flight and no pass pending. */
int ng_wf_engine_idle(const struct ng_wf_engine *e);
/* When the engine next has work by the clock (INT64_MAX when none is known). */
int64_t ng_wf_engine_next_due(const struct ng_wf_engine *e);
struct ng_wf_stats {
	uint64_t activations, effects, sends, completed, failed, parked, exited, started, fenced;
};
void ng_wf_engine_stats(const struct ng_wf_engine *e, struct ng_wf_stats *out);
/* Finishes in-flight activations, then frees the engine and calls done(arg). */
void ng_wf_engine_close(struct ng_wf_engine *e, void (*done)(void *arg), void *arg);

/* Parses a reentry rule: "always", "once" or "after DURATION". */
int ng_wf_parse_reentry(const char *s, int *kind, int64_t *after_ms);
/* Formats epoch milliseconds as a timestamptz literal (UTC), into buf of at least 40 bytes. */
const char *ng_wf_ts(int64_t ms, char *buf, size_t len);

#endif
