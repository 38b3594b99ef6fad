/*
 * wf_step.c — one activation of one instance: durable execution by deterministic replay.
 *
 * The scheduler hands over a claimed row (the instance under a new lease attempt, its journal, its
 * customer and its trigger event). run(ctx) starts from the top. Each ctx call arrives here as a
 * request (kind, args) with the next sequence number:
 *   - seq is in the journal: kind and args must equal what was recorded (else the instance is
 *     parked with both shown, and nothing is performed); the recorded result is returned.
 *   - seq is new: the effect is performed. Everything it writes (journal row, outbox row, emitted
 *     event) is queued as a statement of the step's transaction; a wait ends the activation.
 * The transaction starts with ng_wf_fence(customer, instance, attempt), so when the lease was lost
 * (a stalled worker, an exit event that ended the instance) nothing of the step is recorded.
 * Nothing leaves the process before that commit: a crash at any point replays the same step.
 *
 * Effects that need the database before the script can go on (ctx.query, ctx.wait_until) complete
 * through the engine's resume queue, never inside the libpq callback (effects in wf_effect.c).
 */
#include "json_parse.h"
#include "ng.h"
#include "wf_effect.h"

#include <stdarg.h>

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

static void drive(struct wf_inst *in, struct ng_lua_result *res);

void wf_trace(struct ng_wf_engine *e, int64_t cid, int64_t iid, const char *wf, const char *what,
              const char *fmt, ...)
{
	char detail[512] = "";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	ng_debug("wf", "customer=%lld instance=%lld workflow=%s %s %s", (long long)cid,
	         (long long)iid, wf, what, detail);
	if (e->opt.trace) {
		struct ng_wf_trace t = {wf_now(e), cid, iid, wf, what, detail};
		e->opt.trace(&t, e->opt.trace_data);
	}
}

void wf_inst_note(struct wf_inst *in, const char *what, const char *fmt, ...)
{
	char detail[512] = "";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	json_array_append_new(in->notes, json_pack("[s,s]", what, detail));
}

static void inst_free(struct wf_inst *in)
{
	if (in->act)
		ng_lua_activation_free(in->act);
	wf_stmts_free(&in->st);
	free(in->req.kind);
	json_decref(in->req.args);
	json_decref(in->journal);
	json_decref(in->customer);
	json_decref(in->event);
	json_decref(in->notes);
	json_decref(in->async_result);
	free(in->workflow);
	free(in->final_status);
	free(in->final_error);
	free(in);
}

static void on_committed(const struct ng_db_result *r, void *arg)
{
	struct wf_inst *in = arg;
	struct ng_wf_engine *e = in->e;
	if (r->status == 0) {
		size_t i;
		json_t *n;
		json_array_foreach(in->notes, i, n)
		{
			wf_trace(e, in->cid, in->iid, in->workflow,
			         json_string_value(json_array_get(n, 0)), "%s",
			         json_string_value(json_array_get(n, 1)));
		}
		e->stats.effects += (uint64_t)in->new_effects;
		e->stats.sends += (uint64_t)in->new_sends;
		if (strcmp(in->final_status, "completed") == 0)
			e->stats.completed++;
		else if (strcmp(in->final_status, "failed") == 0)
			e->stats.failed++;
		else if (strcmp(in->final_status, "parked") == 0)
			e->stats.parked++;
		if (in->final_wake)
			wf_engine_note_due(e, in->final_wake);
	} else if (strcmp(r->sqlstate, "NGWF1") == 0) {
		/* The instance was taken over or ended (an exit event) meanwhile: drop the step. */
		e->stats.fenced++;
		ng_info("wf", "instance %lld/%lld: step dropped, lease attempt %d is stale",
		        (long long)in->cid, (long long)in->iid, in->attempt);
	} else {
		/* The lease will run out and another attempt replays the same step. */
		ng_warn("wf", "instance %lld/%lld: step not recorded: %s", (long long)in->cid,
		        (long long)in->iid, r->message);
	}
	void (*done)(void *) = in->done;
	void *darg = in->done_arg;
	e->inflight_steps--;
	inst_free(in);
	done(darg);
}

/* Ends the activation: queues the instance's new state and commits the step's transaction. */
void wf_inst_commit(struct wf_inst *in, const char *status, const char *error, int64_t wake_at,
                    json_t *waiting_for)
{
	struct ng_wf_engine *e = in->e;
	char now[40], wake[40], cid[24], iid[24], seq[16];
	ng_wf_ts(wf_now(e), now, sizeof now);
	snprintf(cid, sizeof cid, "%lld", (long long)in->cid);
	snprintf(iid, sizeof iid, "%lld", (long long)in->iid);
	snprintf(seq, sizeof seq, "%d", in->seq);
	char *wf = waiting_for ? wf_json_dump(waiting_for) : NULL;
	int terminal = strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0;
	wf_stmts_add(&in->st,
	             "UPDATE instances SET status = $3, error = $4, wake_at = $5, waiting_for = $6,"
	             " next_seq = $7, lease_owner = NULL, lease_until = NULL, updated_at = $8,"
	             " finished_at = CASE WHEN $9 THEN $8::timestamptz END"
	             " WHERE customer_id = $1 AND id = $2",
	             9, cid, iid, status, error,
	             wake_at ? ng_wf_ts(wake_at, wake, sizeof wake) : NULL, wf, seq, now,
	             terminal ? "true" : "false");
	free(wf);
	in->final_status = ng_xstrdup(status);
	in->final_wake = wake_at;
	in->final_error = error ? ng_xstrdup(error) : NULL;
	if (strcmp(status, "waiting") != 0)
		wf_inst_note(in, status, "%s", error ? error : "");
	if (in->act) {
		ng_lua_activation_free(in->act);
		in->act = NULL;
	}
	int rc = ng_db_batch(e->opt.db, in->st.v, in->st.n, on_committed, in);
	if (rc) {
		struct ng_db_result r = {.status = rc, .message = ng_strerror(rc), .sqlstate = ""};
		on_committed(&r, in);
	}
}

/* Continues an instance whose async effect (query, wait_until) has its answer. */
static void on_resume_idle(uv_idle_t *h)
{
	struct ng_wf_engine *e = h->data;
	while (e->resume_head) {
		struct wf_inst *in = e->resume_head;
		e->resume_head = in->resume_next;
		in->resume_next = NULL;
		int n = wf_effect_finish_async(in);
		if (n < 0)
			continue; /* the instance was committed (suspended or failed) */
		wf_inst_continue(in, n);
	}
	uv_idle_stop(h);
}

void wf_inst_resume_later(struct wf_inst *in)
{
	struct ng_wf_engine *e = in->e;
	struct wf_inst **p = &e->resume_head;
	while (*p)
		p = &(*p)->resume_next;
	*p = in;
	e->resume_idle.data = e;
	uv_idle_start(&e->resume_idle, on_resume_idle);
}

static void park_divergence(struct wf_inst *in, json_t *rec)
{
	char *want = wf_json_dump(json_object_get(rec, "args"));
	char *got = wf_json_dump(in->req.args);
	char *msg = ng_xasprintf(
	    "replay diverged at step %d: the journal has ctx.%s(%s) but the script now calls "
	    "ctx.%s(%s); the workflow was changed under a running instance (nothing was performed)",
	    in->seq, json_string_value(json_object_get(rec, "kind")), want, in->req.kind, got);
	/* Only the fence and the park are written: no effect of this activation. */
	wf_stmts_free(&in->st);
	wf_inst_fence(in);
	wf_inst_commit(in, "parked", msg, 0, NULL);
	free(want);
	free(got);
	free(msg);
}

static void drive(struct wf_inst *in, struct ng_lua_result *res)
{
	for (;;) {
		size_t recorded = json_array_size(in->journal);
		if (res->outcome == NG_LUA_FINISHED) {
			if ((size_t)in->seq < recorded) {
				char *msg = ng_xasprintf(
				    "replay diverged: run finished after %d steps but the journal "
				    "has %zu; the workflow was changed under a running instance",
				    in->seq, recorded);
				wf_stmts_free(&in->st);
				wf_inst_fence(in);
				wf_inst_commit(in, "parked", msg, 0, NULL);
				free(msg);
			} else {
				wf_inst_commit(in, "completed", NULL, 0, NULL);
			}
			return;
		}
		if (res->outcome == NG_LUA_ERRORED) {
			wf_inst_commit(in, "failed", res->message, 0, NULL);
			return;
		}
		if (res->outcome == NG_LUA_KILLED) {
			wf_inst_commit(in, "parked", res->message, 0, NULL);
			return;
		}
		int n;
		lua_State *L = ng_lua_state(in->e->lua);
		if ((size_t)in->seq < recorded) {
			json_t *rec = json_array_get(in->journal, (size_t)in->seq);
			if (strcmp(json_string_value(json_object_get(rec, "kind")), in->req.kind) !=
			        0 ||
			    !json_equal(json_object_get(rec, "args"), in->req.args)) {
				park_divergence(in, rec);
				return;
			}
			n = wf_effect_replay(in, L, rec);
		} else {
			n = wf_effect_perform(in, L);
		}
		if (n < 0)
			return; /* suspended, committed or waiting for the database */
		in->seq++;
		ng_lua_activation_resume(in->act, n, res);
	}
}

void wf_inst_fence(struct wf_inst *in)
{
	char cid[24], iid[24], att[16];
	snprintf(cid, sizeof cid, "%lld", (long long)in->cid);
	snprintf(iid, sizeof iid, "%lld", (long long)in->iid);
	snprintf(att, sizeof att, "%d", in->attempt);
	wf_stmts_add(&in->st, "SELECT ng_wf_fence($1, $2, $3)", 3, cid, iid, att);
}

static json_t *parse_col(PGresult *res, int row, int col)
{
	const char *v = wf_col(res, row, col);
	return v ? ng_json_parse_str(v, JSON_DECODE_ANY, NULL) : NULL;
}

/*
 * Columns of a claimed row: customer_id, id, workflow, version, attempt, journal (JSON array of
 * {seq, kind, args, result}), customer (JSON), trigger event (JSON or NULL).
 */
void wf_step_run_claimed(struct ng_wf_engine *e, PGresult *pr, int row, void (*done)(void *arg),
                         void *arg)
{
	struct wf_inst *in = ng_xcalloc(1, sizeof(*in));
	in->e = e;
	in->cid = wf_col_i64(pr, row, 0);
	in->iid = wf_col_i64(pr, row, 1);
	in->workflow = ng_xstrdup(wf_col(pr, row, 2));
	in->version = (int)wf_col_i64(pr, row, 3);
	in->attempt = (int)wf_col_i64(pr, row, 4);
	in->journal = parse_col(pr, row, 5);
	in->customer = parse_col(pr, row, 6);
	in->event = parse_col(pr, row, 7);
	in->notes = json_array();
	in->done = done;
	in->done_arg = arg;
	if (!json_is_array(in->journal)) {
		json_decref(in->journal);
		in->journal = json_array();
	}
	if (!in->customer)
		in->customer = json_object();
	e->inflight_steps++;
	e->stats.activations++;
	wf_inst_fence(in);

	struct ng_wf_def *def = wf_def_find(e, in->workflow, in->version);
	if (!def) {
		char *msg = ng_xasprintf("workflow %s version %d is not loaded on this node "
		                         "(deploy it, or reload)",
		                         in->workflow, in->version);
		wf_inst_commit(in, "parked", msg, 0, NULL);
		free(msg);
		return;
	}
	lua_State *L = ng_lua_state(e->lua);
	wf_ctx_push(L, &in->req, json_is_object(in->event) ? in->event : NULL, in->cid, in->iid,
	            in->workflow, in->version);
	struct ng_lua_result res;
	int rc = ng_lua_activation_start_script(e->lua, def->script, "run", 1, &in->act, &res);
	if (rc) {
		wf_inst_commit(in, "failed", "could not start the activation", 0, NULL);
		return;
	}
	drive(in, &res);
}

/* After an async effect: continue the script with its n results on the main state. */
void wf_inst_continue(struct wf_inst *in, int n)
{
	struct ng_lua_result res;
	in->seq++;
	ng_lua_activation_resume(in->act, n, &res);
	drive(in, &res);
}
