/*
 * wf_inbox.c — triggers through the durable inbox. The intake commits an event and, by the trigger
 * in sql/0002, its workflow_inbox row in the same transaction. Here a scheduler claims inbox rows
 * (FOR UPDATE SKIP LOCKED, with a lease) and handles each event in one transaction of its own,
 * fenced by ng_wf_inbox_done_many (only the lease holder may consume it):
 *   1. exits: live instances of workflows that list this event type in `exits` end at once
 *      (status 'exited'), even mid-wait; a step in flight for one is then rejected by its fence;
 *   2. wait_for: instances of this customer waiting for this type whose match is a subset of the
 *      event's data get the event as their journaled result and become ready;
 *   3. starts: each active workflow triggered by this type whose filter passes gets an instance
 *      keyed by key(event) (default: the customer), subject to the re-entry rule and to at most one
 *      live instance per key (the unique index instances_live_key).
 * Events are handled one after another, in id order, so an exit never overtakes its start.
 * Up to INBOX_CHUNK of them share one transaction (their statements in id order, one commit and
 * one notification for all): a transaction per event held the scheduler to a few hundred events
 * a second. When a shared transaction fails (a lease lost, a conflict), its events are handled
 * again one per transaction, so one bad event fails only itself.
 */
#include "json_parse.h"
#include "ng.h"
#include "wf_int.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#define INBOX_CHUNK 64

struct inbox_batch {
	struct ng_wf_engine *e;
	void (*done)(struct ng_wf_engine *e, int n);
	json_t *events;     /* [{customer_id, id, type, data, ...}] in id order */
	size_t next;        /* the first event of the transaction in flight */
	size_t chunk;       /* how many events it holds */
	size_t alone_until; /* events before this index go one per transaction */
	struct wf_stmts st;
	struct tag {
		char what;    /* 'x' exits, 'w' wait_for feed, 's' start, '-' other */
		size_t event; /* the event it is for */
	} * tags;             /* one per statement of st */
	int tags_cap;
};

static void handle_next(struct inbox_batch *b);

static void add(struct inbox_batch *b, char tag, const char *sql, int n, const char *p1,
                const char *p2, const char *p3, const char *p4, const char *p5, const char *p6,
                const char *p7, const char *p8)
{
	wf_stmts_add(&b->st, sql, n, p1, p2, p3, p4, p5, p6, p7, p8);
	if (b->tags_cap < b->st.cap) { /* one tag per statement, grown with them */
		b->tags_cap = b->st.cap;
		b->tags = ng_xrealloc(b->tags, (size_t)b->tags_cap * sizeof *b->tags);
	}
	b->tags[b->st.n - 1] = (struct tag){tag, b->next + b->chunk};
}

static void trace_results(struct inbox_batch *b, const struct ng_db_result *r)
{
	struct ng_wf_engine *e = b->e;
	for (int i = 0; i < r->nresults && i < b->st.n; i++) {
		PGresult *res = r->results[i];
		char what = b->tags[i].what;
		if (!res || what == '-')
			continue;
		json_t *ev = json_array_get(b->events, b->tags[i].event);
		int64_t cid = (int64_t)json_integer_value(json_object_get(ev, "customer_id"));
		const char *type = json_string_value(json_object_get(ev, "type"));
		for (int row = 0; row < PQntuples(res); row++) {
			if (what == 'x')
				e->stats.exited++;
			if (what == 's')
				e->stats.started++;
			wf_trace(e, cid, wf_col_i64(res, row, 0), wf_col(res, row, 1),
			         what == 'x'   ? "exited"
			         : what == 'w' ? "event"
			                       : "started",
			         "%s", type);
		}
	}
}

static void on_events_done(const struct ng_db_result *r, void *arg)
{
	struct inbox_batch *b = arg;
	b->e->busy--;
	if (r->status == 0) {
		trace_results(b, r);
		b->next += b->chunk;
	} else if (b->chunk > 1) {
		/* Again, one event per transaction: only the failing one fails. */
		b->alone_until = b->next + b->chunk;
	} else {
		json_t *ev = json_array_get(b->events, b->next);
		ng_warn("wf", "event %lld (%s) not handled: %s",
		        (long long)json_integer_value(json_object_get(ev, "id")),
		        json_string_value(json_object_get(ev, "type")), r->message);
		b->next++;
	}
	wf_stmts_free(&b->st);
	b->chunk = 0;
	handle_next(b);
}

static void add_exits(struct inbox_batch *b, const char *cid, const char *eid, const char *type,
                      const char *now)
{
	json_t *names = json_array();
	for (struct ng_wf_def *d = b->e->defs; d; d = d->next)
		for (int i = 0; d->active && i < d->nexits; i++)
			if (strcmp(d->exits[i], type) == 0)
				json_array_append_new(names, json_string(d->name));
	if (json_array_size(names) == 0) {
		json_decref(names);
		return;
	}
	/* A text[] literal from JSON: ["a","b"] -> {"a","b"} (names hold no quotes or braces). */
	char *arr = wf_json_dump(names);
	arr[0] = '{';
	arr[strlen(arr) - 1] = '}';
	add(b, 'x',
	    "UPDATE instances SET status = 'exited', error = 'exit event ' || $3, wake_at = NULL,"
	    " waiting_for = NULL, lease_owner = NULL, lease_until = NULL, finished_at = $4,"
	    " updated_at = $4 WHERE customer_id = $1 AND workflow = ANY ($2::text[])"
	    " AND status IN ('ready', 'waiting', 'running', 'parked')"
	    " AND (trigger_event_id IS NULL OR trigger_event_id < $5) RETURNING id, workflow",
	    5, cid, arr, type, now, eid, NULL, NULL, NULL);
	free(arr);
	json_decref(names);
}

static void add_starts(struct inbox_batch *b, json_t *ev, const char *cid, const char *eid,
                       const char *type, const char *now)
{
	for (struct ng_wf_def *d = b->e->defs; d; d = d->next) {
		if (!d->active || d->trigger != NG_WF_TRIGGER_EVENT || strcmp(d->event_type, type))
			continue;
		char *key = NULL, *err = NULL;
		int m = wf_def_match(d, ev, &key, &err);
		if (m < 0)
			ng_warn("wf", "workflow %s: the trigger on event %s failed: %s", d->name,
			        eid, err);
		if (m == 1) {
			char *full = key ? ng_xasprintf("%s:%s", cid, key) : ng_xstrdup(cid);
			char ver[16], cutoff[40] = "";
			snprintf(ver, sizeof ver, "%d", d->version);
			static const char *const re[] = {NULL, "once", "after"};
			if (d->reentry == WF_REENTRY_AFTER)
				ng_wf_ts(wf_now(b->e) - d->reentry_ms, cutoff, sizeof cutoff);
			add(b, 's',
			    "INSERT INTO instances (customer_id, workflow, version, key, status, "
			    "wake_at,"
			    " trigger_event_id, created_at, updated_at)"
			    " SELECT $1, $2, $3, $4, 'ready', $5, $6, $5, $5 WHERE $7::text IS NULL"
			    " OR NOT EXISTS (SELECT 1 FROM instances WHERE customer_id = $1"
			    "  AND workflow = $2 AND ($7 = 'once' OR created_at > $8::timestamptz))"
			    " ON CONFLICT (workflow, key)"
			    "  WHERE status IN ('ready', 'running', 'waiting', 'parked') DO NOTHING"
			    " RETURNING id, workflow",
			    8, cid, d->name, ver, full, now, eid, re[d->reentry],
			    *cutoff ? cutoff : NULL);
			free(full);
		}
		free(key);
		free(err);
	}
}

/* Queues the statements of one event (b->next + b->chunk) in the transaction being built. */
static void add_event(struct inbox_batch *b, json_t *ev)
{
	struct ng_wf_engine *e = b->e;
	char cid[24], eid[24], now[40];
	snprintf(cid, sizeof cid, "%lld",
	         (long long)json_integer_value(json_object_get(ev, "customer_id")));
	snprintf(eid, sizeof eid, "%lld", (long long)json_integer_value(json_object_get(ev, "id")));
	const char *type = json_string_value(json_object_get(ev, "type"));
	ng_wf_ts(wf_now(e), now, sizeof now);
	add_exits(b, cid, eid, type, now);
	/* The event's data and its JSON come from its row, not from here: dumping them for every
	 * event cost more than the statement when nobody waits (the common case). */
	add(b, 'w',
	    "WITH ev AS (SELECT data, json_build_object('customer_id', customer_id, 'id', id,"
	    "  'type', type, 'data', data, 'source', source, 'occurred_at', occurred_at) AS j"
	    "  FROM events WHERE customer_id = $1 AND id = $3),"
	    " hit AS (SELECT i.customer_id, i.id, (i.waiting_for->>'seq')::int AS seq"
	    "  FROM instances i, ev WHERE i.customer_id = $1 AND i.status = 'waiting'"
	    "  AND i.waiting_for->>'type' = $2"
	    "  AND ev.data @> coalesce(i.waiting_for->'match', '{}'::jsonb) FOR UPDATE OF i),"
	    " fed AS (UPDATE effects f SET result = jsonb_build_object('event', (SELECT j FROM ev))"
	    "  FROM hit WHERE f.customer_id = hit.customer_id AND f.instance_id = hit.id"
	    "  AND f.seq = hit.seq AND f.result ? 'pending' RETURNING f.instance_id)"
	    " UPDATE instances i SET status = 'ready', wake_at = $4, waiting_for = NULL,"
	    "  updated_at = $4 FROM hit WHERE i.customer_id = hit.customer_id AND i.id = hit.id"
	    "  AND i.id IN (SELECT instance_id FROM fed) RETURNING i.id, i.workflow",
	    4, cid, type, eid, now, NULL, NULL, NULL, NULL);
	add_starts(b, ev, cid, eid, type, now);
}

/* The transaction's first statement: it consumes the inbox rows of its n events, fenced by the
 * lease (sql/0015: one statement for the chunk; a row no longer held fails it all). */
static void add_inbox_done(struct inbox_batch *b, size_t n)
{
	int64_t *v = ng_xmalloc(n * sizeof *v);
	for (size_t i = 0; i < n; i++)
		v[i] = json_integer_value(
		    json_object_get(json_array_get(b->events, b->next + i), "id"));
	char *ids = wf_bigint_array(v, n);
	free(v);
	add(b, '-', "SELECT ng_wf_inbox_done_many($1::bigint[], $2)", 2, ids, b->e->owner, NULL,
	    NULL, NULL, NULL, NULL, NULL);
	free(ids);
}

static void handle_next(struct inbox_batch *b)
{
	struct ng_wf_engine *e = b->e;
	size_t total = json_array_size(b->events);
	if (b->next >= total) {
		void (*done)(struct ng_wf_engine *, int) = b->done;
		int n = (int)total;
		json_decref(b->events);
		free(b->tags);
		free(b);
		done(e, n);
		return;
	}
	size_t want = b->next < b->alone_until ? 1 : INBOX_CHUNK;
	if (want > total - b->next)
		want = total - b->next;
	add_inbox_done(b, want);
	while (b->chunk < want) {
		add_event(b, json_array_get(b->events, b->next + b->chunk));
		b->chunk++;
	}
	/* Other nodes learn of new ready instances without waiting for their poll. */
	add(b, '-', "SELECT pg_notify('nudge_workflows', 'due')", 0, NULL, NULL, NULL, NULL, NULL,
	    NULL, NULL, NULL);
	e->busy++;
	int rc = ng_db_batch(e->opt.db, b->st.v, b->st.n, on_events_done, b);
	if (rc) {
		struct ng_db_result r = {.status = rc, .message = ng_strerror(rc), .sqlstate = ""};
		on_events_done(&r, b);
	}
}

static void on_claimed(const struct ng_db_result *r, void *arg)
{
	struct inbox_batch *b = arg;
	b->e->busy--;
	b->events = json_array();
	if (r->status != 0)
		ng_warn("wf", "claiming inbox events failed: %s", r->message);
	for (int i = 0; r->status == 0 && i < PQntuples(r->res); i++) {
		json_t *ev = ng_json_parse_str(PQgetvalue(r->res, i, 0), 0, NULL);
		if (ev)
			json_array_append_new(b->events, ev);
	}
	handle_next(b);
}

void wf_inbox_pass(struct ng_wf_engine *e, void (*done)(struct ng_wf_engine *e, int n))
{
	struct inbox_batch *b = ng_xcalloc(1, sizeof(*b));
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
	    "WITH c AS (SELECT customer_id, event_id FROM workflow_inbox"
	    "  WHERE lease_until IS NULL OR lease_until <= $2 ORDER BY event_id LIMIT $4"
	    "  FOR UPDATE SKIP LOCKED),"
	    " u AS (UPDATE workflow_inbox w SET lease_owner = $1, lease_until = $3 FROM c"
	    "  WHERE w.customer_id = c.customer_id AND w.event_id = c.event_id"
	    "  RETURNING w.customer_id, w.event_id)"
	    " SELECT json_build_object('customer_id', ev.customer_id, 'id', ev.id, 'type', ev.type,"
	    "  'data', ev.data, 'source', ev.source, 'occurred_at', ev.occurred_at)"
	    " FROM u JOIN events ev ON ev.customer_id = u.customer_id AND ev.id = u.event_id"
	    " ORDER BY ev.id",
	    4, p, on_claimed, b);
	if (rc) {
		struct ng_db_result r = {.status = rc, .message = ng_strerror(rc), .sqlstate = ""};
		on_claimed(&r, b);
	}
}
