/*
 * admin_routes.c — GET /healthz and GET /metrics: what an admin or a load balancer asks the daemon.
 *
 * /healthz answers 200 with status "ok" when the database pool has a usable connection and the loop
 * is not stalled, else 503 with status "degraded" — so a load balancer stops sending webhooks to a
 * daemon that could not commit them. /metrics is Prometheus text.
 */
#include "admin_routes.h"
#include "clock.h"
#include "daemon.h"
#include "db.h"
#include "httpc.h"
#include "httpd.h"
#include "intake.h"
#include "metrics.h"
#include "ng.h"
#include "senders.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* A loop late by this much means something blocked it: report degraded. */
#define LAG_DEGRADED_MS 1000

static void healthz(struct ng_httpd_req *req, void *arg)
{
	struct ng_admin *a = arg;
	struct ng_db_stats db;
	ng_db_stats(a->db, &db);
	struct ng_loop_lag lag;
	ng_daemon_loop_lag(a->daemon, &lag);
	struct ng_senders_stats snd;
	ng_senders_stats(a->senders, &snd);

	int db_ok = db.conns_ready + db.conns_busy > 0;
	int ok = db_ok && lag.last_ms < LAG_DEGRADED_MS;
	int64_t now = ng_clock_now_ms(a->clock);
	json_t *o = json_pack(
		"{s:s, s:s, s:I, s:{s:s, s:i, s:i, s:i, s:I, s:I, s:I}, s:{s:I, s:I}, s:{s:I, s:I, s:I}}",
		"status", ok ? "ok" : "degraded", "version", NG_VERSION, "uptime_s",
		(json_int_t)((now - a->started_ms) / 1000), "database", "state",
		db_ok ? "connected" : "unavailable", "connections", db.conns_ready + db.conns_busy,
		"connecting", db.conns_connecting, "pool_size", db.conns_total, "queued",
		(json_int_t)db.queued, "in_flight", (json_int_t)db.in_flight, "reconnects",
		(json_int_t)db.reconnects, "loop_lag_ms", "last", (json_int_t)lag.last_ms, "max",
		(json_int_t)lag.max_ms, "senders", "threads", (json_int_t)snd.threads, "running",
		(json_int_t)snd.running, "queued", (json_int_t)snd.queued);
	char *body = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	ng_httpd_respond(req, ok ? 200 : 503, "application/json", body, strlen(body));
	free(body);
}

/* The shared HTTP client's counters (core/httpc.c). */
static void refresh_httpc(struct ng_admin *a)
{
	struct ng_httpc_stats st;
	ng_httpc_stats(a->httpc, &st);
	struct ng_metrics *m = a->metrics;
	const char *name = "nudge_http_client_requests_total";
	ng_metric_set(ng_metrics_register(m, name,
					  "Outgoing HTTP requests completed, by outcome (a response "
					  "of any status, or an error).",
					  NG_METRIC_GAUGE, "outcome", NULL, 0),
		      (const char *[]){"response"}, (double)st.responses);
	ng_metric_set(ng_metrics_register(m, name, "", NG_METRIC_GAUGE, "outcome", NULL, 0),
		      (const char *[]){"timeout"}, (double)st.timeouts);
	ng_metric_set(ng_metrics_register(m, name, "", NG_METRIC_GAUGE, "outcome", NULL, 0),
		      (const char *[]){"cancelled"}, (double)st.cancelled);
	ng_metric_set(ng_metrics_register(m, name, "", NG_METRIC_GAUGE, "outcome", NULL, 0),
		      (const char *[]){"error"},
		      (double)(st.errors - st.timeouts - st.cancelled));
	ng_metric_set(ng_metrics_register(m, "nudge_http_client_in_flight",
					  "Outgoing HTTP requests in flight.", NG_METRIC_GAUGE,
					  NULL, NULL, 0),
		      NULL, (double)st.in_flight);
}

/* Gauges that mirror component state are refreshed at scrape time. */
static void refresh(struct ng_admin *a)
{
	struct ng_db_stats db;
	ng_db_stats(a->db, &db);
	struct ng_loop_lag lag;
	ng_daemon_loop_lag(a->daemon, &lag);
	struct ng_metrics *m = a->metrics;
	ng_metric_set(ng_metrics_register(m, "nudge_db_connections", "Database connections by state.",
					  NG_METRIC_GAUGE, "state", NULL, 0),
		      (const char *[]){"ready"}, db.conns_ready);
	ng_metric_set(ng_metrics_register(m, "nudge_db_connections", "", NG_METRIC_GAUGE, "state",
					  NULL, 0),
		      (const char *[]){"busy"}, db.conns_busy);
	ng_metric_set(ng_metrics_register(m, "nudge_db_connections", "", NG_METRIC_GAUGE, "state",
					  NULL, 0),
		      (const char *[]){"connecting"}, db.conns_connecting);
	ng_metric_set(ng_metrics_register(m, "nudge_db_queued", "Database requests waiting for a "
								"connection.",
					  NG_METRIC_GAUGE, NULL, NULL, 0),
		      NULL, (double)db.queued);
	ng_metric_set(ng_metrics_register(m, "nudge_db_requests_total",
					  "Database requests completed, by outcome.",
					  NG_METRIC_GAUGE, "outcome", NULL, 0),
		      (const char *[]){"ok"}, (double)(db.completed - db.errors));
	ng_metric_set(ng_metrics_register(m, "nudge_db_requests_total", "", NG_METRIC_GAUGE,
					  "outcome", NULL, 0),
		      (const char *[]){"error"}, (double)db.errors);
	ng_metric_set(ng_metrics_register(m, "nudge_db_reconnects_total",
					  "Database connections re-established.", NG_METRIC_GAUGE,
					  NULL, NULL, 0),
		      NULL, (double)db.reconnects);
	ng_metric_set(ng_metrics_register(m, "nudge_loop_lag_seconds",
					  "How late the event loop's 100 ms probe fired, last and max.",
					  NG_METRIC_GAUGE, "window", NULL, 0),
		      (const char *[]){"last"}, (double)lag.last_ms / 1000.0);
	ng_metric_set(ng_metrics_register(m, "nudge_loop_lag_seconds", "", NG_METRIC_GAUGE, "window",
					  NULL, 0),
		      (const char *[]){"max"}, (double)lag.max_ms / 1000.0);
	if (a->httpc)
		refresh_httpc(a);
	if (a->intake)
		ng_intake_metrics(a->intake);
}

static void metrics(struct ng_httpd_req *req, void *arg)
{
	struct ng_admin *a = arg;
	refresh(a);
	char *text;
	size_t len;
	ng_metrics_render(a->metrics, &text, &len);
	ng_httpd_respond(req, 200, "text/plain; version=0.0.4", text, len);
	free(text);
}

void ng_admin_routes(struct ng_admin *a, struct ng_httpd *srv)
{
	ng_httpd_route(srv, "GET", "/healthz", healthz, a);
	ng_httpd_route(srv, "GET", "/metrics", metrics, a);
}
