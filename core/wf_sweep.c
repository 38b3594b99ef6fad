/*
 * wf_sweep.c — triggers that come from time rather than events.
 *
 * Date triggers (`trigger = {date = "birthday", at = "09:00"}`): periodically, one INSERT ...
 * SELECT creates an instance for each customer whose date falls, at that local time in the
 * customer's timezone (the store's default when the customer has none or an unknown one), within
 * the next day or the last twelve hours. It runs every six hours. The instance is ready at that
 * exact moment, so the scheduler's timer starts it on time. Feb 29 falls on Feb 28 in other years.
 * The key holds the year: once per year.
 *
 * Segment triggers (`trigger = {every = "1d", segment = "SELECT id FROM customers WHERE ..."}`):
 * every period the segment runs read-only in bounded batches of 1000 ids (keyset on id; $1 is the
 * current time), and each id gets an instance, subject to the re-entry rule.
 *
 * Each sweep is claimed first in workflow_sweeps (sql/0005), the schedule all nodes share: one
 * node runs each period's sweep, and a restart does not run it again before its time.
 */
#include "ng.h"
#include "wf_int.h"

#include <stdlib.h>
#include <string.h>

/* Instances are created up to a day ahead with their exact wake_at, so a sweep every six hours
 * is on time; the look-back catches a sweep missed while no node ran. */
#define SWEEP_DATE_EVERY_MS (6 * 3600 * 1000)
#define SEGMENT_BATCH       1000

struct sweep {
	struct ng_wf_engine *e;
	void (*done)(struct ng_wf_engine *e, int n);
	struct ng_wf_def *def; /* the one being swept */
	int64_t last_id;
	int n;
};

static void sweep_next(struct sweep *s);

static void on_started(const struct ng_db_result *r, void *arg)
{
	struct sweep *s = arg;
	s->e->busy--;
	if (r->status != 0) {
		ng_warn("wf", "workflow %s: trigger sweep failed: %s", s->def->name, r->message);
	} else {
		PGresult *res = r->res;
		for (int i = 0; i < PQntuples(res); i++) {
			s->e->stats.started++;
			wf_trace(s->e, wf_col_i64(res, i, 1), wf_col_i64(res, i, 0), s->def->name,
			         "started", "%s",
			         s->def->trigger == NG_WF_TRIGGER_DATE ? "date" : "segment");
		}
		s->n += PQntuples(res);
	}
	s->def = s->def->next;
	sweep_next(s);
}

static void sweep_date(struct sweep *s, struct ng_wf_def *d)
{
	char now[40], ver[16], at[16];
	ng_wf_ts(wf_now(s->e), now, sizeof now);
	snprintf(ver, sizeof ver, "%d", d->version);
	snprintf(at, sizeof at, "%d", d->at_minute);
	const char *p[6] = {d->name, ver, d->date_field, now, s->e->default_tz, at};
	s->e->busy++;
	int rc = ng_db_query(
	    s->e->opt.db,
	    "WITH tzs AS (SELECT name FROM pg_timezone_names)"
	    " INSERT INTO instances (customer_id, workflow, version, key, status, wake_at,"
	    "  created_at, updated_at)"
	    " SELECT c.id, $1, $2, c.id || ':' || $3 || ':' || o.y, 'ready', o.at, $4, $4"
	    " FROM customers c"
	    " CROSS JOIN LATERAL (SELECT CASE WHEN c.timezone IS NULL THEN $5 ELSE coalesce("
	    "   (SELECT name FROM tzs WHERE name = c.timezone), $5) END AS tz, CASE WHEN $3 = "
	    "'birthday' THEN c.birthday"
	    "   WHEN c.attributes->>$3 ~ '^\\d{4}-\\d{2}-\\d{2}$' THEN (c.attributes->>$3)::date"
	    "   END AS d) z"
	    " CROSS JOIN LATERAL (SELECT y, (make_date(y, extract(month FROM z.d)::int,"
	    "   CASE WHEN extract(month FROM z.d) = 2 AND extract(day FROM z.d) = 29"
	    "    AND NOT (y % 4 = 0 AND (y % 100 <> 0 OR y % 400 = 0)) THEN 28"
	    "    ELSE extract(day FROM z.d)::int END) + make_interval(mins => $6::int))"
	    "   AT TIME ZONE z.tz AS at"
	    "  FROM generate_series(extract(year FROM $4::timestamptz AT TIME ZONE z.tz)::int - 1,"
	    "   extract(year FROM $4::timestamptz AT TIME ZONE z.tz)::int + 1) AS y) o"
	    " WHERE z.d IS NOT NULL AND c.erased_at IS NULL"
	    "  AND o.at > $4::timestamptz - interval '12 hours'"
	    "  AND o.at <= $4::timestamptz + interval '1 day'"
	    "  AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.customer_id = c.id"
	    "   AND i.workflow = $1 AND i.key = c.id || ':' || $3 || ':' || o.y)"
	    " ON CONFLICT DO NOTHING RETURNING id, customer_id",
	    6, p, on_started, s);
	if (rc) {
		struct ng_db_result r = {.status = rc, .message = ng_strerror(rc), .sqlstate = ""};
		on_started(&r, s);
	}
}

static void on_segment_ids(const struct ng_db_result *r, void *arg);

static void segment_batch(struct sweep *s)
{
	struct ng_wf_def *d = s->def;
	char *sql = ng_xasprintf("SELECT s.id FROM (%s) s WHERE s.id > $2::bigint"
	                         " AND $1::timestamptz IS NOT NULL ORDER BY s.id LIMIT %d",
	                         d->segment, SEGMENT_BATCH);
	char now[40], last[24];
	snprintf(last, sizeof last, "%lld", (long long)s->last_id);
	const char *p[2] = {ng_wf_ts(wf_now(s->e), now, sizeof now), last};
	struct ng_db_stmt st[2] = {{"SET TRANSACTION READ ONLY", 0, NULL}, {sql, 2, p}};
	s->e->busy++;
	int rc = ng_db_batch(s->e->opt.db, st, 2, on_segment_ids, s);
	free(sql);
	if (rc) {
		struct ng_db_result r = {.status = rc, .message = ng_strerror(rc), .sqlstate = ""};
		on_segment_ids(&r, s);
	}
}

static void on_segment_started(const struct ng_db_result *r, void *arg)
{
	struct sweep *s = arg;
	struct ng_wf_def *d = s->def;
	s->e->busy--;
	if (r->status != 0) {
		ng_warn("wf", "workflow %s: segment start failed: %s", d->name, r->message);
	} else {
		for (int i = 0; i < PQntuples(r->res); i++) {
			s->e->stats.started++;
			wf_trace(s->e, wf_col_i64(r->res, i, 1), wf_col_i64(r->res, i, 0), d->name,
			         "started", "segment");
		}
		s->n += PQntuples(r->res);
		if (s->last_id < 0) { /* the batch was full: continue after its last id */
			s->last_id = -s->last_id;
			segment_batch(s);
			return;
		}
	}
	s->def = d->next;
	s->last_id = 0;
	sweep_next(s);
}

static void on_segment_ids(const struct ng_db_result *r, void *arg)
{
	struct sweep *s = arg;
	struct ng_wf_def *d = s->def;
	s->e->busy--;
	if (r->status != 0) {
		ng_warn("wf", "workflow %s: the segment query failed: %s", d->name, r->message);
		s->def = d->next;
		sweep_next(s);
		return;
	}
	PGresult *res = r->results[1];
	int n = PQntuples(res);
	if (n == 0) {
		s->def = d->next;
		s->last_id = 0;
		sweep_next(s);
		return;
	}
	int64_t *ids = ng_xmalloc((size_t)n * sizeof *ids);
	for (int i = 0; i < n; i++)
		ids[i] = wf_col_i64(res, i, 0);
	char *arr = wf_bigint_array(ids, (size_t)n);
	free(ids);
	int full = n == SEGMENT_BATCH;
	s->last_id = wf_col_i64(res, n - 1, 0);
	char now[40], ver[16], cutoff[40];
	snprintf(ver, sizeof ver, "%d", d->version);
	static const char *const re[] = {NULL, "once", "after"};
	ng_wf_ts(wf_now(s->e), now, sizeof now);
	const char *p[6] = {d->name,
	                    ver,
	                    now,
	                    arr,
	                    re[d->reentry],
	                    d->reentry == WF_REENTRY_AFTER
	                        ? ng_wf_ts(wf_now(s->e) - d->reentry_ms, cutoff, sizeof cutoff)
	                        : NULL};
	s->e->busy++;
	/* A full batch continues from the last id: last_id stays negative as the marker. */
	if (full)
		s->last_id = -s->last_id;
	int rc = ng_db_query(
	    s->e->opt.db,
	    "INSERT INTO instances (customer_id, workflow, version, key, status, wake_at,"
	    " created_at, updated_at)"
	    " SELECT x, $1, $2, x::text, 'ready', $3, $3, $3 FROM unnest($4::bigint[]) x"
	    " JOIN customers c ON c.id = x AND c.erased_at IS NULL"
	    " WHERE $5::text IS NULL OR NOT EXISTS (SELECT 1 FROM instances i WHERE"
	    "  i.customer_id = x AND i.workflow = $1 AND ($5 = 'once' OR i.created_at > "
	    "$6::timestamptz))"
	    " ON CONFLICT DO NOTHING RETURNING id, customer_id",
	    6, p, on_segment_started, s);
	free(arr);
	if (rc) {
		struct ng_db_result r2 = {.status = rc, .message = ng_strerror(rc), .sqlstate = ""};
		on_segment_started(&r2, s);
	}
}

/*
 * The shared schedule (sql/0005): this node runs the sweep only if it moved the workflow's
 * next_run forward; either way the row says when the next one is due.
 */
static void on_sweep_claimed(const struct ng_db_result *r, void *arg)
{
	struct sweep *s = arg;
	struct ng_wf_def *d = s->def;
	s->e->busy--;
	if (r->status != 0 || PQntuples(r->res) != 1) {
		ng_warn("wf", "workflow %s: claiming the sweep failed: %s", d->name,
		        r->status ? r->message : "no schedule row");
		d->next_run = wf_now(s->e) + 60000; /* try again in a minute */
		s->def = d->next;
		sweep_next(s);
		return;
	}
	d->next_run = wf_col_i64(r->res, 0, 1);
	if (wf_col(r->res, 0, 0)[0] != 't') {
		s->def = d->next; /* another node ran it, or it is not due yet */
		sweep_next(s);
		return;
	}
	if (d->trigger == NG_WF_TRIGGER_DATE)
		sweep_date(s, d);
	else
		segment_batch(s);
}

static void claim_sweep(struct sweep *s, struct ng_wf_def *d)
{
	char now[40], period[24];
	snprintf(period, sizeof period, "%lld",
	         (long long)(d->trigger == NG_WF_TRIGGER_DATE ? SWEEP_DATE_EVERY_MS : d->every_ms));
	const char *p[4] = {d->name, ng_wf_ts(wf_now(s->e), now, sizeof now), period, s->e->owner};
	s->e->busy++;
	int rc = ng_db_query(
	    s->e->opt.db,
	    "WITH c AS (INSERT INTO workflow_sweeps AS w (workflow, next_run, last_run, last_owner)"
	    "  VALUES ($1, $2::timestamptz + $3::bigint * interval '1 millisecond', $2, $4)"
	    "  ON CONFLICT (workflow) DO UPDATE SET next_run = EXCLUDED.next_run,"
	    "   last_run = EXCLUDED.last_run, last_owner = EXCLUDED.last_owner"
	    "  WHERE w.next_run <= $2::timestamptz RETURNING next_run)"
	    " SELECT true, (extract(epoch FROM next_run) * 1000)::bigint FROM c"
	    " UNION ALL SELECT false, (extract(epoch FROM next_run) * 1000)::bigint"
	    " FROM workflow_sweeps WHERE workflow = $1 AND NOT EXISTS (SELECT 1 FROM c)",
	    4, p, on_sweep_claimed, s);
	if (rc) {
		struct ng_db_result r = {.status = rc, .message = ng_strerror(rc), .sqlstate = ""};
		on_sweep_claimed(&r, s);
	}
}

static void sweep_next(struct sweep *s)
{
	struct ng_wf_engine *e = s->e;
	int64_t now = wf_now(e);
	for (; s->def; s->def = s->def->next) {
		struct ng_wf_def *d = s->def;
		if (!d->active ||
		    (d->trigger != NG_WF_TRIGGER_DATE && d->trigger != NG_WF_TRIGGER_EVERY))
			continue;
		if (d->next_run > now)
			continue;
		claim_sweep(s, d);
		return;
	}
	e->next_sweep = INT64_MAX;
	for (struct ng_wf_def *d = e->defs; d; d = d->next)
		if (d->active &&
		    (d->trigger == NG_WF_TRIGGER_DATE || d->trigger == NG_WF_TRIGGER_EVERY) &&
		    d->next_run < e->next_sweep)
			e->next_sweep = d->next_run;
	void (*done)(struct ng_wf_engine *, int) = s->done;
	int n = s->n;
	free(s);
	done(e, n);
}

void wf_sweep_pass(struct ng_wf_engine *e, void (*done)(struct ng_wf_engine *e, int n))
{
	struct sweep *s = ng_xcalloc(1, sizeof(*s));
	s->e = e;
	s->done = done;
	s->def = e->defs;
	sweep_next(s);
}
