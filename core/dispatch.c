/*
 * dispatch.c — the dispatcher's lifecycle and its passes. A pass asks each lane (plugin instance)
 * with room for a claim of that many due messages; the claims run in parallel, each claimed row
 * goes to dispatch_send.c. When every claim is back, a lane that got all it asked for and still
 * has room claims again; otherwise one query finds the next due moment (a retry, a lease running
 * out) and one clock timer is armed for it, or for the next token of a rate-limited lane. A slot
 * freed by a committed result, a NOTIFY on "nudge_messages" or ng_dispatch_kick start a pass early.
 * On the real clock the timer is capped at poll_ms, so work queued by another node is seen even if
 * its notification was lost.
 */
#include "dispatch_int.h"
#include "ng.h"
#include "plugin_host.h"
#include "wf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PARALLEL_CLAIMS 4

static void pass_start(struct ng_dispatch *d);
static void maybe_closed(struct ng_dispatch *d);

/* NOTIFY callbacks outlive nothing: ng_db has no UNLISTEN, so they point into this table. */
static struct ng_dispatch *listeners[32];

int64_t dispatch_now(const struct ng_dispatch *d)
{
	return ng_clock_now_ms(d->opt.clock);
}

static void on_notify(const char *channel, const char *payload, void *arg)
{
	NG_UNUSED(channel);
	NG_UNUSED(payload);
	struct ng_dispatch *d = *(struct ng_dispatch **)arg;
	if (d)
		ng_dispatch_kick(d);
}

static void on_kick_idle(uv_idle_t *h)
{
	struct ng_dispatch *d = h->data;
	uv_idle_stop(h);
	if (d->nresults)
		dispatch_results_flush(d);
	if (!d->pass_running && d->pass_wanted && !d->closing)
		pass_start(d);
}

void ng_dispatch_kick(struct ng_dispatch *d)
{
	if (d->closing)
		return;
	d->pass_wanted = 1;
	if (!d->pass_running)
		uv_idle_start(&d->kick_idle, on_kick_idle);
}

/* Results are written on the next loop turn, so that the completions of one turn share a write. */
void dispatch_results_queued(struct ng_dispatch *d)
{
	if (d->closing)
		maybe_closed(d);
	else if (!d->write_paused)
		uv_idle_start(&d->kick_idle, on_kick_idle);
}

/* A write committed: its slots are free, so a pass may claim again. */
void dispatch_settle(struct ng_dispatch *d)
{
	if (d->closing)
		maybe_closed(d);
	else if (d->started)
		ng_dispatch_kick(d);
	if (!d->closing && d->nresults && !d->write_paused)
		uv_idle_start(&d->kick_idle, on_kick_idle);
}

void dispatch_inflight_add(struct ng_dispatch *d, struct dispatch_msg *m)
{
	m->prev = NULL;
	m->next = d->inflight;
	if (d->inflight)
		d->inflight->prev = m;
	d->inflight = m;
	d->ninflight++;
}

void dispatch_inflight_remove(struct ng_dispatch *d, struct dispatch_msg *m)
{
	if (m->prev)
		m->prev->next = m->next;
	else if (d->inflight == m)
		d->inflight = m->next;
	if (m->next)
		m->next->prev = m->prev;
	m->prev = m->next = NULL;
	d->ninflight--;
}

/* ---- the next due moment ------------------------------------------------------------------ */

static void on_timer(struct ng_clock_timer *t)
{
	ng_dispatch_kick(t->data);
}

static void arm_timer(struct ng_dispatch *d)
{
	int64_t now = dispatch_now(d), due = d->next_due;
	for (size_t i = 0; i < d->nlanes; i++) {
		struct dispatch_lane *l = &d->lanes[i];
		int64_t t = dispatch_limiter_next_ms(&l->lim, now);
		if (l->more && t < due)
			due = t;
	}
	if (!ng_clock_is_virtual(d->opt.clock)) {
		int64_t cap =
		    now + (int64_t)((double)d->opt.poll_ms * ng_clock_speed(d->opt.clock));
		if (due > cap)
			due = cap;
	}
	if (due == INT64_MAX)
		ng_clock_timer_stop(d->opt.clock, &d->timer);
	else
		ng_clock_timer_start(d->opt.clock, &d->timer, due, on_timer);
}

static void pass_end(struct ng_dispatch *d)
{
	d->pass_running = 0;
	if (d->closing) {
		maybe_closed(d);
		return;
	}
	arm_timer(d);
	if (d->pass_wanted)
		ng_dispatch_kick(d);
}

static void on_next_due(const struct ng_db_result *r, void *arg)
{
	struct ng_dispatch *d = arg;
	d->busy--;
	d->next_due = INT64_MAX;
	if (r->status == 0 && PQntuples(r->res) == 1 && !PQgetisnull(r->res, 0, 0))
		d->next_due = strtoll(PQgetvalue(r->res, 0, 0), NULL, 10);
	else if (r->status != 0)
		d->next_due = dispatch_now(d) + 1000; /* the database hiccuped: look again soon */
	pass_end(d);
}

/* Only messages some lane of this node can take count: a channel without an instance here must
 * not keep the timer firing. $1: instance names, $2: channels whose default instance is here. */
static void query_next_due(struct ng_dispatch *d)
{
	json_t *names = json_array(), *chans = json_array();
	for (size_t i = 0; i < d->nlanes; i++) {
		json_array_append_new(names, json_string(d->lanes[i].name));
		if (d->lanes[i].is_default)
			json_array_append_new(chans, json_string(d->lanes[i].channel));
	}
	char *pn = json_dumps(names, JSON_COMPACT), *pc = json_dumps(chans, JSON_COMPACT);
	json_decref(names);
	json_decref(chans);
	const char *p[2] = {pn, pc};
	d->busy++;
	int rc = ng_db_query(
	    d->opt.db,
	    "WITH n AS (SELECT jsonb_array_elements_text($1::jsonb) AS name),"
	    " ch AS (SELECT jsonb_array_elements_text($2::jsonb) AS channel)"
	    " SELECT (extract(epoch FROM least("
	    "  (SELECT min(next_attempt_at) FROM messages m"
	    "    WHERE status IN ('queued', 'retry', 'deferred')"
	    "    AND (m.plugin_instance IN (SELECT name FROM n) OR (m.plugin_instance IS NULL"
	    "    AND m.channel IN (SELECT channel FROM ch)))),"
	    "  (SELECT min(lease_until) FROM messages m WHERE status = 'sending'"
	    "    AND (m.plugin_instance IN (SELECT name FROM n) OR (m.plugin_instance IS NULL"
	    "    AND m.channel IN (SELECT channel FROM ch)))))) * 1000)::bigint",
	    2, p, on_next_due, d);
	free(pn);
	free(pc);
	if (rc) {
		struct ng_db_result r = {.status = rc, .message = "", .sqlstate = ""};
		on_next_due(&r, d);
	}
}

/* ---- claims ------------------------------------------------------------------------------- */

struct claim {
	struct dispatch_lane *lane;
	int asked;
};

static void claims_done(struct ng_dispatch *d)
{
	if (d->closing) {
		pass_end(d);
		return;
	}
	int64_t now = dispatch_now(d);
	int saturated = 0;
	for (size_t i = 0; i < d->nlanes; i++) {
		struct dispatch_lane *l = &d->lanes[i];
		if (!l->more)
			continue;
		if (dispatch_limiter_room(&l->lim, now) > 0) {
			pass_start(d); /* more is due and there is room for it */
			return;
		}
		if (l->lim.in_use >= l->lim.concurrency)
			saturated = 1;
	}
	if (saturated) {
		/* More is due but a lane is full: the next committed result starts a pass. */
		d->next_due = INT64_MAX;
		pass_end(d);
		return;
	}
	query_next_due(d);
}

static void on_claimed(const struct ng_db_result *r, void *arg)
{
	struct claim *c = arg;
	struct dispatch_lane *lane = c->lane;
	struct ng_dispatch *d = lane->d;
	d->busy--;
	lane->claiming--;
	int n = 0;
	if (r->status != 0) {
		ng_warn("dispatch", "claiming messages for %s failed: %s", lane->name, r->message);
	} else {
		n = PQntuples(r->res);
		d->stats.claimed += (uint64_t)n;
	}
	/* The claim reserved `asked` slots and tokens; keep those of the rows that came back. */
	lane->lim.in_use -= c->asked - n;
	dispatch_limiter_refund(&lane->lim, c->asked - n);
	if (r->status == 0 && n == c->asked)
		lane->more = 1;
	for (int i = 0; i < n; i++)
		dispatch_send_claimed(lane, r->res, i, 0);
	free(c);
	if (--d->claims_out == 0)
		claims_done(d);
}

/* One claim: ng_dispatch_claim in sql/0004 (due rows for this lane, leased, attempt bumped, with
 * the customer and the policy verdict). */
static const char claim_sql[] = "SELECT * FROM ng_dispatch_claim($1, $2, $3, $4, $5, $6, $7)";

static void claim(struct dispatch_lane *lane, int n)
{
	struct ng_dispatch *d = lane->d;
	struct claim *c = ng_xcalloc(1, sizeof *c);
	c->lane = lane;
	c->asked = n;
	dispatch_limiter_take(&lane->lim, n);
	lane->claiming++;
	char now[40], until[40], lim[16];
	int64_t t = dispatch_now(d);
	/* The lease is real time: on a demo clock running faster it must not run out mid-send. */
	double speed = ng_clock_speed(d->opt.clock);
	int64_t lease = (int64_t)((double)d->opt.lease_ms * (speed > 1 ? speed : 1));
	snprintf(lim, sizeof lim, "%d", n);
	const char *p[7] = {d->owner,
	                    ng_wf_ts(t, now, sizeof now),
	                    ng_wf_ts(t + lease, until, sizeof until),
	                    lim,
	                    lane->name,
	                    lane->channel,
	                    lane->is_default ? "true" : "false"};
	d->busy++;
	d->claims_out++;
	int rc = ng_db_query(d->opt.db, claim_sql, 7, p, on_claimed, c);
	if (rc) {
		/* pass_start holds the pass open, so this cannot end it from inside the loop. */
		struct ng_db_result r = {.status = rc, .message = ng_strerror(rc), .sqlstate = ""};
		on_claimed(&r, c);
	}
}

static void pass_start(struct ng_dispatch *d)
{
	d->pass_running = 1;
	d->pass_wanted = 0;
	d->claims_out = 1; /* this function's own hold */
	int64_t now = dispatch_now(d);
	for (size_t i = 0; i < d->nlanes; i++) {
		struct dispatch_lane *l = &d->lanes[i];
		/* Several claims side by side: each is a round trip, and a fast relay empties a
		 * batch quicker than PostgreSQL hands out the next. */
		l->more = 0;
		while (l->claiming < PARALLEL_CLAIMS) {
			int room = dispatch_limiter_room(&l->lim, now);
			if (room > d->opt.batch)
				room = d->opt.batch;
			if (room <= 0)
				break;
			claim(l, room);
		}
	}
	if (--d->claims_out == 0)
		claims_done(d);
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

static const struct ng_dispatch_limit *limit_for(const struct ng_dispatch_options *o,
                                                 const char *name)
{
	for (size_t i = 0; i < o->nlimits; i++)
		if (o->limits[i].instance && strcmp(o->limits[i].instance, name) == 0)
			return &o->limits[i];
	return NULL;
}

int ng_dispatch_open(struct ng_dispatch **out, const struct ng_dispatch_options *opt)
{
	*out = NULL;
	if (!opt->loop || !opt->db || !opt->clock || !opt->plugins)
		return -EINVAL;
	struct ng_dispatch *d = ng_xcalloc(1, sizeof *d);
	d->opt = *opt;
	if (d->opt.batch <= 0)
		d->opt.batch = 64;
	if (d->opt.lease_ms <= 0)
		d->opt.lease_ms = 120000;
	if (d->opt.poll_ms <= 0)
		d->opt.poll_ms = 5000;
	if (d->opt.retry_base_ms <= 0)
		d->opt.retry_base_ms = 60000;
	if (d->opt.retry_max_ms <= 0)
		d->opt.retry_max_ms = 6 * 3600 * 1000;
	if (d->opt.max_attempts <= 0)
		d->opt.max_attempts = 10;
	if (d->opt.drain_ms <= 0)
		d->opt.drain_ms = 5000;
	char host[128] = "nudge";
	gethostname(host, sizeof host - 1);
	static unsigned serial;
	d->owner = opt->owner ? ng_xstrdup(opt->owner)
	                      : ng_xasprintf("%s:%d:d%u", host, (int)getpid(), ++serial);
	d->opt.owner = d->owner;
	d->nlanes = ng_plugin_count(opt->plugins);
	d->lanes = ng_xcalloc(d->nlanes ? d->nlanes : 1, sizeof *d->lanes);
	int64_t now = dispatch_now(d);
	for (size_t i = 0; i < d->nlanes; i++) {
		struct dispatch_lane *l = &d->lanes[i];
		l->d = d;
		l->plugin = ng_plugin_at(opt->plugins, i);
		l->name = ng_plugin_name(l->plugin);
		l->channel = ng_plugin_channel(l->plugin);
		l->is_default = ng_plugin_for_channel(opt->plugins, l->channel) == l->plugin;
		dispatch_limiter_init(&l->lim, limit_for(opt, l->name), now);
	}
	d->next_due = INT64_MAX;
	d->timer.data = d;
	uv_idle_init(opt->loop, &d->kick_idle);
	d->kick_idle.data = d;
	uv_timer_init(opt->loop, &d->drain_timer);
	d->drain_timer.data = d;
	uv_timer_init(opt->loop, &d->write_retry);
	d->write_retry.data = d;
	dispatch_reconcile_init(d);
	*out = d;
	return 0;
}

void ng_dispatch_start(struct ng_dispatch *d)
{
	if (d->started)
		return;
	d->started = 1;
	if (d->opt.listen) {
		for (size_t i = 0; i < NG_ARRAY_LEN(listeners); i++) {
			if (!listeners[i]) {
				listeners[i] = d;
				d->listening = (int)i + 1;
				ng_db_listen(d->opt.db, "nudge_messages", on_notify, &listeners[i]);
				break;
			}
		}
	}
	ng_dispatch_kick(d);
	dispatch_reconcile_start(d);
}

void ng_dispatch_stats(const struct ng_dispatch *d, struct ng_dispatch_stats *out)
{
	*out = d->stats;
	out->in_flight = d->ninflight;
}

int ng_dispatch_idle(const struct ng_dispatch *d)
{
	return !d->pass_running && !d->pass_wanted && d->ninflight == 0 && d->busy == 0 &&
	       d->nresults == 0 && d->writes_out == 0;
}

static void on_handle_closed(uv_handle_t *h)
{
	struct ng_dispatch *d = h->data;
	if (--d->handles_open > 0)
		return;
	void (*done)(void *) = d->closed;
	void *arg = d->closed_arg;
	free(d->results);
	free(d->lanes);
	free(d->owner);
	free(d);
	if (done)
		done(arg);
}

/* The drain ran out of time: what is still at a plugin goes back to the queue, due now. Its
 * completion, when it comes, finds the message orphaned and only frees it. */
static void on_drain_timeout(uv_timer_t *t)
{
	struct ng_dispatch *d = t->data;
	struct dispatch_msg *m = d->inflight;
	int n = 0;
	while (m) {
		struct dispatch_msg *next = m->next;
		if (m->sending) {
			dispatch_result_give_back(m, "given back: the daemon stopped while it was "
			                             "being sent");
			n++;
		}
		m = next;
	}
	if (n)
		ng_warn("dispatch", "drain: %d message(s) still being sent were given back", n);
	dispatch_results_flush(d);
	maybe_closed(d);
}

static void maybe_closed(struct ng_dispatch *d)
{
	if (!d->closing || d->closing > 1)
		return;
	if (d->nresults && d->writes_out < DISPATCH_WRITES_OUT && !d->write_paused)
		dispatch_results_flush(d);
	if (d->pass_running || d->busy || d->ninflight || d->nresults || d->writes_out ||
	    d->reconciling)
		return;
	d->closing = 2;
	if (d->listening)
		listeners[d->listening - 1] = NULL;
	ng_clock_timer_stop(d->opt.clock, &d->timer);
	d->handles_open = 4;
	uv_close((uv_handle_t *)&d->reconcile_timer, on_handle_closed);
	uv_close((uv_handle_t *)&d->kick_idle, on_handle_closed);
	uv_close((uv_handle_t *)&d->drain_timer, on_handle_closed);
	uv_close((uv_handle_t *)&d->write_retry, on_handle_closed);
}

void ng_dispatch_close(struct ng_dispatch *d, void (*done)(void *arg), void *arg)
{
	d->closed = done;
	d->closed_arg = arg;
	d->closing = 1;
	ng_clock_timer_stop(d->opt.clock, &d->timer);
	uv_idle_stop(&d->kick_idle);
	dispatch_reconcile_stop(d);
	if (d->ninflight)
		ng_info("dispatch", "draining %d message(s) in flight", d->ninflight);
	uv_timer_start(&d->drain_timer, on_drain_timeout, (uint64_t)d->opt.drain_ms, 0);
	maybe_closed(d);
}
