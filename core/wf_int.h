/*
 * wf_int.h — what the wf_*.c files share and nobody else uses: the definition, the engine, one
 * running instance and the statements of its step. The public API is wf.h.
 */
#ifndef NG_WF_INT_H
#define NG_WF_INT_H

#include "wf.h"

#include <jansson.h>
#include <lua.h>

enum wf_reentry { WF_REENTRY_ALWAYS, WF_REENTRY_ONCE, WF_REENTRY_AFTER };

struct ng_wf_def {
	struct ng_lua *lua;
	char *name;
	char *path;
	char *source;
	char hash[65]; /* sha256 hex of source */
	int version;   /* in workflow_versions; 0 until deployed */
	int declared_version;
	enum ng_wf_trigger trigger;
	char *event_type; /* EVENT */
	int filter_ref;   /* EVENT: LUA_NOREF or the filter function */
	char *date_field; /* DATE: "birthday" or an attribute name */
	int at_minute;    /* DATE: minutes after local midnight */
	int64_t every_ms; /* EVERY */
	char *segment;    /* EVERY: SQL returning a column id */
	int key_ref;      /* LUA_NOREF or key(event) */
	int reentry;      /* enum wf_reentry */
	int64_t reentry_ms;
	char **exits;
	int nexits;
	int def_ref; /* the definition table, kept for filter and key */
	struct ng_lua_script *script;
	int active;             /* the version new instances start on */
	int64_t next_run;       /* DATE, EVERY: when the sweep runs next */
	struct ng_wf_def *next; /* in the engine's list */
};

/* A growing list of SQL statements with owned parameters: one step's fenced transaction. */
struct wf_stmts {
	struct ng_db_stmt *v;
	char ***params; /* owned copies, per statement */
	int n, cap;
};
void wf_stmts_add(struct wf_stmts *s, const char *sql, int nparams, ...);
void wf_stmts_free(struct wf_stmts *s);
/* A PostgreSQL array literal of n ids, "{1,2,3}", for a $n::bigint[] parameter (malloc'd). */
char *wf_bigint_array(const int64_t *ids, size_t n);

struct wf_inst;

struct ng_wf_engine {
	struct ng_wf_options opt;
	char *owner;
	char *default_tz;
	struct ng_lua *lua;
	struct ng_wf_def *defs; /* every loaded version */
	struct ng_clock_timer timer, sweep_timer;
	uv_idle_t kick_idle; /* one pass driver, run from the loop, never re-entered */
	int pass_running, pass_wanted, closing, started, listening;
	int busy;          /* requests in flight (claims, steps, sweeps) */
	int64_t next_due;  /* by the clock, INT64_MAX if none */
	int64_t noted_due; /* the earliest wf_engine_note_due while the next-due query runs */
	int64_t next_sweep;
	int work_done;  /* something happened in this pass: run another */
	int due_streak; /* full claims in a row (wf_engine.c) */
	struct ng_wf_stats stats;
	uv_idle_t resume_idle; /* resumes instances whose async effect completed */
	struct wf_inst *resume_head;
	int inflight_steps;
	int handles_open; /* while closing */
	void (*closed)(void *arg);
	void *closed_arg;
};

/* Definitions. */
struct ng_wf_def *wf_def_find(struct ng_wf_engine *e, const char *name, int version);
struct ng_wf_def *wf_def_active(struct ng_wf_engine *e, const char *name);
/* Calls def's filter (if any) and key on the event table on top of L (popped). 1 = start. */
int wf_def_match(struct ng_wf_def *def, json_t *event, char **key, char **err);

/* JSON <-> Lua. */
json_t *wf_json_from_lua(lua_State *L, int idx, char **err);
void wf_json_push(lua_State *L, json_t *v);
char *wf_json_dump(json_t *v); /* compact, sorted keys; never NULL */

/* The request an API function made (set by wf_ctx.c before yielding, taken by wf_step.c). */
struct wf_request {
	char *kind;
	json_t *args;
};
/* Pushes the ctx table for one instance onto L; its functions fill *rq before they yield. */
void wf_ctx_push(lua_State *L, struct wf_request *rq, json_t *event, int64_t cid, int64_t iid,
                 const char *wf, int version);

/* Steps. */
void wf_step_run_claimed(struct ng_wf_engine *e, PGresult *res, int row, void (*done)(void *arg),
                         void *arg);
void wf_trace(struct ng_wf_engine *e, int64_t cid, int64_t iid, const char *wf, const char *what,
              const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* The pass: inbox, then due instances, then sweeps. Each calls done when its batch is handled,
 * with the number of rows it claimed. */
void wf_inbox_pass(struct ng_wf_engine *e, void (*done)(struct ng_wf_engine *e, int n));
void wf_due_pass(struct ng_wf_engine *e, void (*done)(struct ng_wf_engine *e, int n));
void wf_sweep_pass(struct ng_wf_engine *e, void (*done)(struct ng_wf_engine *e, int n));

int64_t wf_now(const struct ng_wf_engine *e);
/* A step committed an instance that is due at `at` (epoch ms): the timer must not sleep past it,
 * though the pass that claimed it may have ended before the commit. */
void wf_engine_note_due(struct ng_wf_engine *e, int64_t at);
/* Work outside a scheduling pass (a deploy) calls this when it ends: a pending close may finish. */
void wf_engine_settle(struct ng_wf_engine *e);
/* The column as text, NULL for SQL NULL. */
const char *wf_col(PGresult *res, int row, int col);
int64_t wf_col_i64(PGresult *res, int row, int col);

#endif
