/*
 * wf_engine.c — the scheduler: one pass at a time drains the trigger inbox, then claims due
 * instances in batches (FOR UPDATE SKIP LOCKED, a lease per claim, the attempt number bumped) and
 * runs each claimed step, then runs the date/segment sweeps when they are due. A pass that did work
 * runs again; an idle pass asks the database for the next due moment and arms one clock timer for
 * it. LISTEN/NOTIFY on "nudge_workflows" and ng_wf_engine_kick start a pass early.
 *
 * Expired leases (a crashed or stalled node) are claimed like due work; the fence in every step's
 * transaction rejects the late write of the node that lost its lease. On the real clock the timer
 * is also capped at poll_ms, so work another node scheduled is seen even if a notification was
 * lost.
 */
#include "ng.h"
#include "wf_int.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void pass_start(struct ng_wf_engine *e);

/* NOTIFY callbacks outlive nothing: ng_db has no UNLISTEN, so they point into this table. */
static struct ng_wf_engine *listeners[32];

static void on_notify(const char *channel, const char *payload, void *arg)
{
	NG_UNUSED(channel);
	NG_UNUSED(payload);
	struct ng_wf_engine *e = *(struct ng_wf_engine **)arg;
	if (e)
		ng_wf_engine_kick(e);
}

static void on_kick_idle(uv_idle_t *h)
{
	struct ng_wf_engine *e = h->data;
	uv_idle_stop(h);
	if (!e->pass_running && !e->closing)
		pass_start(e);
}

void ng_wf_engine_kick(struct ng_wf_engine *e)
{
	if (e->closing)
		return;
	e->pass_wanted = 1;
	if (!e->pass_running)
		uv_idle_start(&e->kick_idle, on_kick_idle);
}

static void on_timer(struct ng_clock_timer *t)
{
	ng_wf_engine_kick(t->data);
}

static void maybe_closed(struct ng_wf_engine *e);

static void arm_timer(struct ng_wf_engine *e)
{
	int64_t due = e->next_due < e->next_sweep ? e->next_due : e->next_sweep;
	if (!ng_clock_is_virtual(e->opt.clock)) {
		/* poll_ms is real time: a demo clock running faster polls no more often. */
		int64_t cap = wf_now(e) + (int64_t)((double)e->opt.poll_ms * ng_clock_speed(e->opt.clock));
		if (due > cap)
			due = cap;
	}
	if (due == INT64_MAX)
		ng_clock_timer_stop(e->opt.clock, &e->timer);
	else
		ng_clock_timer_start(e->opt.clock, &e->timer, due, on_timer);
}

static void pass_end(struct ng_wf_engine *e)
{
	e->pass_running = 0;
	if (e->closing) {
		maybe_closed(e);
		return;
	}
	arm_timer(e);
	if (e->pass_wanted)
		ng_wf_engine_kick(e);
}

static void on_next_due(const struct ng_db_result *r, void *arg)
{
	struct ng_wf_engine *e = arg;
	e->busy--;
	e->next_due = INT64_MAX;
	if (r->status == 0 && PQntuples(r->res) == 1 && wf_col(r->res, 0, 0))
		e->next_due = wf_col_i64(r->res, 0, 0);
	else if (r->status != 0)
		e->next_due = wf_now(e) + 1000; /* the database hiccuped: look again soon */
	/* A step that committed after the query's snapshot was taken is not in its answer. */
	if (e->noted_due < e->next_due)
		e->next_due = e->noted_due;
	pass_end(e);
}

static void after_sweep(struct ng_wf_engine *e, int n)
{
	if (n > 0)
		e->work_done = 1;
	if (e->work_done && !e->closing) {
		pass_start(e);
		return;
	}
	e->busy++;
	e->noted_due = INT64_MAX;
	int rc = ng_db_query(
	    e->opt.db,
	    "SELECT (extract(epoch FROM least("
	    " (SELECT min(wake_at) FROM instances WHERE status IN ('ready', 'waiting')),"
	    " (SELECT min(lease_until) FROM instances WHERE status = 'running'),"
	    " (SELECT min(lease_until) FROM workflow_inbox))) * 1000)::bigint",
	    0, NULL, on_next_due, e);
	if (rc) {
		struct ng_db_result r = {.status = rc, .message = "", .sqlstate = ""};
		on_next_due(&r, e);
	}
}

/* Full claims in a row before the inbox and the sweeps get their turn again. */
#define DUE_STREAK_MAX 16

static void after_due(struct ng_wf_engine *e, int n)
{
	if (n > 0)
		e->work_done = 1;
	/* A full batch means more is due: claim again at once (a burst drains without an inbox
	 * round trip per batch), but let the inbox and the sweeps in every few batches. */
	if (n >= e->opt.batch && !e->closing && ++e->due_streak < DUE_STREAK_MAX) {
		wf_due_pass(e, after_due);
		return;
	}
	e->due_streak = 0;
	if (!e->closing && wf_now(e) >= e->next_sweep)
		wf_sweep_pass(e, after_sweep);
	else
		after_sweep(e, 0);
}

static void after_inbox(struct ng_wf_engine *e, int n)
{
	if (n > 0)
		e->work_done = 1;
	if (e->closing)
		after_due(e, 0);
	else
		wf_due_pass(e, after_due);
}

static void pass_start(struct ng_wf_engine *e)
{
	e->pass_running = 1;
	e->pass_wanted = 0;
	e->work_done = 0;
	wf_inbox_pass(e, after_inbox);
}

/* ---- claiming due instances ------------------------------------------------------------- */

/*
 * The claim is two index scans, each locking what it finds with SKIP LOCKED: due instances in
 * wake_at order (instances_due_idx) and running ones whose lease ran out (instances_lease_idx).
 * One OR condition would make PostgreSQL read and sort every due row on every claim. The update
 * finds the locked rows by ctid, which cannot change while they are locked; a row that another
 * transaction updated after this statement's snapshot is locked but not claimed, and is simply
 * left for the next pass.
 */

/*
 * The pass goes on (inbox, the next claim) as soon as fewer than one batch of steps is still
 * committing, or at once when the claim came back full, so a claim overlaps the commits of the
 * batch before it instead of waiting for them; at most about two batches are in flight. The batch
 * itself is freed when its last step is done.
 */
struct due_batch {
	struct ng_wf_engine *e;
	void (*done)(struct ng_wf_engine *e, int n);
	int n, left, reported;
};

static void batch_check(struct due_batch *b)
{
	struct ng_wf_engine *e = b->e;
	if (!b->reported && (b->left == 0 || e->inflight_steps < e->opt.batch)) {
		b->reported = 1;
		b->done(e, b->n);
	}
	if (b->left == 0) {
		free(b);
		wf_engine_settle(e);
	}
}

static void on_step_done(void *arg)
{
	struct due_batch *b = arg;
	b->left--;
	batch_check(b);
}

static void on_claimed(const struct ng_db_result *r, void *arg)
{
	struct due_batch *b = arg;
	b->e->busy--;
	if (r->status != 0) {
		ng_warn("wf", "claiming due instances failed: %s", r->message);
		batch_check(b);
		return;
	}
	b->n = PQntuples(r->res);
	b->left = b->n + 1; /* +1: this function's own hold, released below */
	/* A full batch: the next claim goes out before this batch's commits, so it is not queued
	 * behind them on the connections (at most two batches of steps are then in flight). */
	if (b->n >= b->e->opt.batch && b->e->inflight_steps < b->e->opt.batch) {
		b->reported = 1;
		b->done(b->e, b->n);
	}
	for (int i = 0; i < b->n; i++)
		wf_step_run_claimed(b->e, r->res, i, on_step_done, b);
	on_step_done(b);
}

void wf_due_pass(struct ng_wf_engine *e, void (*done)(struct ng_wf_engine *e, int n))
{
	struct due_batch *b = ng_xcalloc(1, sizeof(*b));
	b->e = e;
	b->done = done;
	char now[40], until[40], batch[16];
	int64_t t = wf_now(e);
	snprintf(batch, sizeof batch, "%d", e->opt.batch);
	const char *p[4] = {e->owner, ng_wf_ts(t, now, sizeof now),
	                    ng_wf_ts(t + e->opt.lease_ms, until, sizeof until), batch};
	e->busy++;
	int rc = ng_db_query(
	    e->opt.db,
	    "WITH d AS (SELECT ctid FROM instances WHERE status IN ('ready', 'waiting')"
	    "  AND wake_at <= $2 ORDER BY wake_at LIMIT $4 FOR UPDATE SKIP LOCKED),"
	    " x AS (SELECT ctid FROM instances WHERE status = 'running' AND lease_until <= $2"
	    "  LIMIT $4 FOR UPDATE SKIP LOCKED),"
	    " u AS (UPDATE instances i SET status = 'running', attempt = i.attempt + 1,"
	    "  lease_owner = $1, lease_until = $3, updated_at = $2"
	    "  WHERE i.ctid = ANY (ARRAY(SELECT ctid FROM d UNION SELECT ctid FROM x))"
	    "  RETURNING i.customer_id, i.id, i.workflow, i.version, i.attempt, i.trigger_event_id)"
	    " SELECT u.customer_id, u.id, u.workflow, u.version, u.attempt,"
	    "  (SELECT coalesce(json_agg(json_build_object('seq', f.seq, 'kind', f.kind,"
	    "     'args', f.args, 'result', f.result) ORDER BY f.seq), '[]')"
	    "   FROM effects f WHERE f.customer_id = u.customer_id AND f.instance_id = u.id),"
	    "  (SELECT to_jsonb(c) - 'erased_at' - 'created_at' - 'updated_at'"
	    "     || jsonb_build_object('consent', coalesce((SELECT jsonb_object_agg(k.channel,"
	    "        k.status) FROM consent_current k WHERE k.customer_id = c.id"
	    "        AND k.purpose = 'marketing'), '{}'))"
	    "   FROM customers c WHERE c.id = u.customer_id),"
	    "  (SELECT json_build_object('id', ev.id, 'type', ev.type, 'data', ev.data,"
	    "     'source', ev.source, 'occurred_at', ev.occurred_at)"
	    "   FROM events ev WHERE ev.customer_id = u.customer_id AND ev.id = u.trigger_event_id)"
	    " FROM u",
	    4, p, on_claimed, b);
	if (rc) {
		struct ng_db_result r = {.status = rc, .message = ng_strerror(rc), .sqlstate = ""};
		on_claimed(&r, b);
	}
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

int ng_wf_engine_open(struct ng_wf_engine **out, const struct ng_wf_options *opt)
{
	*out = NULL;
	if (!opt->loop || !opt->db || !opt->clock)
		return -EINVAL;
	struct ng_wf_engine *e = ng_xcalloc(1, sizeof(*e));
	e->opt = *opt;
	if (e->opt.batch <= 0)
		e->opt.batch = 64;
	if (e->opt.lease_ms <= 0)
		e->opt.lease_ms = 30000;
	if (e->opt.poll_ms <= 0)
		e->opt.poll_ms = 5000;
	char host[128] = "nudge";
	gethostname(host, sizeof host - 1);
	e->owner = opt->owner ? ng_xstrdup(opt->owner)
	                      : ng_xasprintf("%s:%d:%lx", host, (int)getpid(),
	                                     (unsigned long)(uintptr_t)e & 0xffff);
	e->default_tz = ng_xstrdup(opt->default_timezone ? opt->default_timezone : "UTC");
	int rc = ng_lua_open(&e->lua, &opt->limits);
	if (rc) {
		free(e->owner);
		free(e->default_tz);
		free(e);
		return rc;
	}
	e->opt.owner = e->owner;
	e->opt.default_timezone = e->default_tz;
	e->next_due = INT64_MAX;
	e->noted_due = INT64_MAX;
	e->next_sweep = INT64_MAX;
	e->timer.data = e;
	e->sweep_timer.data = e;
	uv_idle_init(opt->loop, &e->kick_idle);
	e->kick_idle.data = e;
	uv_idle_init(opt->loop, &e->resume_idle);
	e->resume_idle.data = e;
	*out = e;
	return 0;
}

void ng_wf_engine_start(struct ng_wf_engine *e)
{
	if (e->started)
		return;
	e->started = 1;
	/* Sweeps (date and segment triggers) run at once, then on their own schedule. */
	for (struct ng_wf_def *d = e->defs; d; d = d->next)
		if (d->active &&
		    (d->trigger == NG_WF_TRIGGER_DATE || d->trigger == NG_WF_TRIGGER_EVERY))
			e->next_sweep = wf_now(e);
	if (e->opt.listen) {
		for (size_t i = 0; i < NG_ARRAY_LEN(listeners); i++) {
			if (!listeners[i]) {
				listeners[i] = e;
				e->listening = (int)i + 1;
				ng_db_listen(e->opt.db, "nudge_workflows", on_notify,
				             &listeners[i]);
				break;
			}
		}
	}
	ng_wf_engine_kick(e);
}

int ng_wf_engine_idle(const struct ng_wf_engine *e)
{
	return !e->pass_running && !e->pass_wanted && e->inflight_steps == 0 && e->busy == 0;
}

int64_t ng_wf_engine_next_due(const struct ng_wf_engine *e)
{
	return e->next_due < e->next_sweep ? e->next_due : e->next_sweep;
}

void ng_wf_engine_stats(const struct ng_wf_engine *e, struct ng_wf_stats *out)
{
	*out = e->stats;
}

static void on_handle_closed(uv_handle_t *h)
{
	struct ng_wf_engine *e = h->data;
	if (--e->handles_open > 0)
		return; /* libuv gives no order among close callbacks: the last one frees */
	while (e->defs) {
		struct ng_wf_def *d = e->defs;
		e->defs = d->next;
		ng_wf_def_free(d);
	}
	ng_lua_close(e->lua);
	void (*done)(void *) = e->closed;
	void *arg = e->closed_arg;
	free(e->owner);
	free(e->default_tz);
	free(e);
	if (done)
		done(arg);
}

static void maybe_closed(struct ng_wf_engine *e)
{
	if (!e->closing || e->pass_running || e->inflight_steps || e->busy || e->closing > 1)
		return;
	e->closing = 2;
	if (e->listening)
		listeners[e->listening - 1] = NULL;
	ng_clock_timer_stop(e->opt.clock, &e->timer);
	ng_clock_timer_stop(e->opt.clock, &e->sweep_timer);
	e->handles_open = 2;
	uv_close((uv_handle_t *)&e->kick_idle, on_handle_closed);
	uv_close((uv_handle_t *)&e->resume_idle, on_handle_closed);
}

void ng_wf_engine_close(struct ng_wf_engine *e, void (*done)(void *arg), void *arg)
{
	e->closed = done;
	e->closed_arg = arg;
	e->closing = 1;
	ng_clock_timer_stop(e->opt.clock, &e->timer);
	/* What this node did, for operators (and the chaos and bench drivers, which read it). */
	if (e->opt.listen)
		ng_info("wf",
		        "engine %s closing: activations=%llu effects=%llu sends=%llu started=%llu"
		        " completed=%llu exited=%llu failed=%llu parked=%llu fenced=%llu",
		        e->owner, (unsigned long long)e->stats.activations,
		        (unsigned long long)e->stats.effects, (unsigned long long)e->stats.sends,
		        (unsigned long long)e->stats.started,
		        (unsigned long long)e->stats.completed, (unsigned long long)e->stats.exited,
		        (unsigned long long)e->stats.failed, (unsigned long long)e->stats.parked,
		        (unsigned long long)e->stats.fenced);
	maybe_closed(e);
}

void wf_engine_note_due(struct ng_wf_engine *e, int64_t at)
{
	if (at < e->noted_due)
		e->noted_due = at;
	if (at >= e->next_due)
		return;
	e->next_due = at;
	if (!e->pass_running && !e->closing)
		arm_timer(e);
}

void wf_engine_settle(struct ng_wf_engine *e)
{
	if (e->closing)
		maybe_closed(e);
}
