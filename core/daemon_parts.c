/*
 * daemon_parts.c — builds the daemon's components from the configuration, in dependency order.
 */
#include "daemon_parts.h"
#include "admin_routes.h"
#include "httpd.h"
#include "metrics.h"
#include "clock.h"
#include "config.h"
#include "daemon.h"
#include "db.h"
#include "ng.h"
#include "migrate.h"
#include "paths.h"
#include "plugin_host.h"
#include "senders.h"
#include "wf.h"

#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <stdio.h>

static void close_clock(void *self, void (*done)(void *arg), void *arg)
{
	ng_clock_close(self, done, arg);
}

static void close_senders(void *self, void (*done)(void *arg), void *arg)
{
	ng_senders_close(self, done, arg);
}

static void close_db(void *self, void (*done)(void *arg), void *arg)
{
	ng_db_close(self, done, arg);
}

/*
 * A daemon running against a schema older than its migrations would fail in odd places later, so
 * it says so plainly once the database answers (and /healthz reports it).
 */
static void on_schema_version(const struct ng_db_result *r, void *arg)
{
	struct ng_daemon_parts *parts = arg;
	if (r->status != 0) {
		/* nudge_migrations missing: never migrated. Other errors: the pool logs them. */
		if (strcmp(r->sqlstate, "42P01") == 0) {
			parts->schema_behind = 1;
			ng_error("daemon", "the database has never been migrated: run `nudge migrate`");
		}
		return;
	}
	int have = PQgetisnull(r->res, 0, 0) ? 0 : atoi(PQgetvalue(r->res, 0, 0));
	if (have < parts->schema_needed) {
		parts->schema_behind = 1;
		ng_error("daemon",
			 "the database schema is at migration %04d but this nudge needs %04d: run "
			 "`nudge migrate`",
			 have, parts->schema_needed);
	}
}

static void check_schema(struct ng_daemon_parts *parts)
{
	char *dir = ng_paths_shipped("sql");
	parts->schema_needed = dir ? ng_migrate_latest(dir) : 0;
	free(dir);
	if (parts->schema_needed > 0)
		ng_db_query(parts->db, "SELECT max(version) FROM nudge_migrations", 0, NULL,
			    on_schema_version, parts);
}

static int start_db(struct ng_daemon *d, uv_loop_t *loop, const struct ng_conf *conf,
		    struct ng_daemon_parts *parts, char *err, size_t errlen)
{
	struct ng_db_options o = {
		.conninfo = ng_conf_str(conf, "database.conninfo"),
		.pool_size = (int)ng_conf_int(conf, "database.pool_size"),
		.statement_timeout_ms = (int)ng_conf_int(conf, "database.statement_timeout_ms"),
		.connect_timeout_ms = (int)ng_conf_int(conf, "database.connect_timeout_ms"),
		.queue_timeout_ms = (int)ng_conf_int(conf, "database.queue_timeout_ms"),
		.close_timeout_ms = (int)ng_conf_int(conf, "shutdown_timeout_ms") / 2,
	};
	int rc = ng_db_open(&parts->db, loop, &o);
	if (rc) {
		snprintf(err, errlen, "key 'database.conninfo' is not a connection string libpq accepts");
		return rc;
	}
	ng_daemon_add(d, "database", parts->db, close_db, NULL);
	check_schema(parts);
	return 0;
}

/*
 * The workflow engine. It starts scheduling once the shipped (or configured) workflows are
 * deployed; while the database is unreachable the deploy is retried every few seconds, so a daemon
 * started before PostgreSQL catches up by itself. SIGHUP deploys again: a changed file becomes a
 * new version for new instances.
 */
#define WF_DEPLOY_RETRY_MS 3000

struct ng_wf_part {
	struct ng_wf_engine *engine;
	char *dir;
	uv_timer_t retry;
	int started, deploying, closing;
	void (*closed)(void *arg);
	void *closed_arg;
};

static void wf_deploy(struct ng_wf_part *w);
static void on_wf_retry(uv_timer_t *t);

static void wf_deployed(int status, const char *err, void *arg)
{
	struct ng_wf_part *w = arg;
	w->deploying = 0;
	if (w->closing)
		return;
	if (status != 0 && status != NG_ECONFIG) {
		ng_error("workflows", "deploying %s failed, retrying in %d ms: %s", w->dir,
			 WF_DEPLOY_RETRY_MS, err ? err : ng_strerror(status));
		uv_timer_start(&w->retry, on_wf_retry, WF_DEPLOY_RETRY_MS, 0);
		return;
	}
	if (status == NG_ECONFIG)
		ng_error("workflows", "some workflows were refused and are not running: %s", err);
	else
		ng_info("workflows", "workflows in %s deployed", w->dir);
	if (!w->started) {
		w->started = 1;
		ng_wf_engine_start(w->engine);
	}
}

static void on_wf_retry(uv_timer_t *t)
{
	wf_deploy(t->data);
}

static void wf_deploy(struct ng_wf_part *w)
{
	if (w->deploying || w->closing)
		return;
	w->deploying = 1;
	int rc = ng_wf_engine_deploy(w->engine, w->dir, wf_deployed, w);
	if (rc) {
		w->deploying = 0;
		ng_error("workflows", "cannot deploy %s: %s", w->dir, ng_strerror(rc));
	}
}

static void wf_retry_closed(uv_handle_t *h)
{
	struct ng_wf_part *w = h->data;
	void (*closed)(void *) = w->closed;
	void *arg = w->closed_arg;
	free(w->dir);
	free(w);
	closed(arg);
}

static void wf_engine_closed(void *arg)
{
	struct ng_wf_part *w = arg;
	uv_close((uv_handle_t *)&w->retry, wf_retry_closed);
}

static void close_wf(void *self, void (*done)(void *arg), void *arg)
{
	struct ng_wf_part *w = self;
	w->closing = 1;
	w->closed = done;
	w->closed_arg = arg;
	uv_timer_stop(&w->retry);
	ng_wf_engine_close(w->engine, wf_engine_closed, w);
}

static void reload_wf(void *self, const struct ng_conf *conf)
{
	NG_UNUSED(conf);
	wf_deploy(self);
}

static int start_wf(struct ng_daemon *d, uv_loop_t *loop, const struct ng_conf *conf,
		    struct ng_daemon_parts *parts, char *err, size_t errlen)
{
	const char *dir = ng_conf_str(conf, "paths.workflows");
	char *found = dir ? ng_xstrdup(dir) : ng_paths_shipped("workflows");
	if (!found) {
		snprintf(err, errlen, "no workflows directory: set key 'paths.workflows'");
		return -ENOENT;
	}
	struct ng_wf_options o = {
		.loop = loop,
		.db = parts->db,
		.clock = parts->clock,
		.default_timezone = ng_conf_str(conf, "store.timezone"),
		.lease_ms = (int)ng_conf_int(conf, "workflows.lease_ms"),
		.batch = (int)ng_conf_int(conf, "workflows.batch"),
		.poll_ms = (int)ng_conf_int(conf, "workflows.poll_ms"),
		.listen = 1,
	};
	struct ng_wf_part *w = ng_xcalloc(1, sizeof *w);
	w->dir = found;
	int rc = ng_wf_engine_open(&w->engine, &o);
	if (rc) {
		snprintf(err, errlen, "cannot start the workflow engine: %s", ng_strerror(rc));
		free(w->dir);
		free(w);
		return rc;
	}
	uv_timer_init(loop, &w->retry);
	w->retry.data = w;
	parts->wf = w;
	ng_daemon_add(d, "workflows", w, close_wf, reload_wf);
	wf_deploy(w);
	return 0;
}

static void close_httpd(void *self, void (*done)(void *arg), void *arg)
{
	ng_httpd_close(self, done, arg);
}

/* Splits "host:port" ("[::1]:8025" for IPv6). */
static int parse_listen(const char *s, char *host, size_t hostlen, int *port)
{
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s)
		return -EINVAL;
	const char *h = s;
	size_t hl = (size_t)(colon - s);
	if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl + 1 > hostlen)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	char *end;
	long p = strtol(colon + 1, &end, 10);
	if (*end || p < 0 || p > 65535)
		return -EINVAL;
	*port = (int)p;
	return 0;
}

static int start_httpd(struct ng_daemon *d, uv_loop_t *loop, const struct ng_conf *conf,
		       struct ng_daemon_parts *parts, char *err, size_t errlen)
{
	const char *listen = ng_conf_str(conf, "http.listen");
	char host[256];
	int port;
	if (parse_listen(listen, host, sizeof host, &port) != 0) {
		snprintf(err, errlen, "key 'http.listen' must be address:port, not \"%s\"", listen);
		return -EINVAL;
	}
	struct ng_httpd_options o = {
		.max_header_bytes = (size_t)ng_conf_int(conf, "http.max_header_bytes"),
		.max_headers = (int)ng_conf_int(conf, "http.max_headers"),
		.max_body_bytes = (size_t)ng_conf_int(conf, "http.max_body_bytes"),
		.max_connections = (int)ng_conf_int(conf, "http.max_connections"),
		.header_timeout_ms = (uint64_t)ng_conf_int(conf, "http.header_timeout_ms"),
		.body_timeout_ms = (uint64_t)ng_conf_int(conf, "http.body_timeout_ms"),
		.idle_timeout_ms = (uint64_t)ng_conf_int(conf, "http.idle_timeout_ms"),
		.drain_timeout_ms = (uint64_t)ng_conf_int(conf, "shutdown_timeout_ms") / 2,
	};
	ng_httpd_open(&parts->httpd, loop, &o);
	ng_daemon_add(d, "http", parts->httpd, close_httpd, NULL);
	int rc = ng_httpd_listen(parts->httpd, host, port);
	if (rc) {
		snprintf(err, errlen, "cannot listen on %s (key 'http.listen'): %s", listen,
			 uv_strerror(rc));
		return rc;
	}
	parts->admin = ng_xcalloc(1, sizeof *parts->admin);
	*parts->admin = (struct ng_admin){d, parts->clock, parts->db, parts->senders,
					  parts->metrics, (int64_t)parts->started_ms};
	ng_admin_routes(parts->admin, parts->httpd);
	ng_info("http", "listening on %s", listen);
	return 0;
}

static void close_plugins(void *self, void (*done)(void *arg), void *arg)
{
	ng_plugin_host_close(self, done, arg);
}

int ng_daemon_parts_start(struct ng_daemon *d, uv_loop_t *loop, const struct ng_conf *conf,
			  struct ng_daemon_parts *parts, char *err, size_t errlen)
{
	parts->metrics = ng_metrics_new();
	parts->clock = ng_clock_real(loop);
	parts->started_ms = (uint64_t)ng_clock_now_ms(parts->clock);
	ng_daemon_add(d, "clock", parts->clock, close_clock, NULL);

	int rc = ng_senders_open(&parts->senders, loop, (int)ng_conf_int(conf, "senders.threads"));
	if (rc) {
		snprintf(err, errlen, "cannot start the sender threads: %s", ng_strerror(rc));
		return rc;
	}
	ng_daemon_add(d, "senders", parts->senders, close_senders, NULL);

	/* Channel plugins: a refused instance is logged with its reason; the others still start. */
	rc = ng_plugin_host_open(&parts->plugins, loop, parts->clock, parts->senders);
	if (rc) {
		snprintf(err, errlen, "cannot start the plugin host: %s", ng_strerror(rc));
		return rc;
	}
	ng_daemon_add(d, "plugins", parts->plugins, close_plugins, NULL);
	ng_plugin_host_load_conf(parts->plugins, conf, NULL, NULL);

	/* The pool connects in the background: the daemon starts (and /healthz says "degraded") while
	 * PostgreSQL is down, and catches up when it comes back. */
	rc = start_db(d, loop, conf, parts, err, errlen);
	if (rc)
		return rc;
	rc = start_wf(d, loop, conf, parts, err, errlen);
	if (rc)
		return rc;
	/* Last: requests arrive only once everything they need is running, and the listener is
	 * the first thing a drain closes. */
	return start_httpd(d, loop, conf, parts, err, errlen);
}

void ng_daemon_parts_free(struct ng_daemon_parts *parts)
{
	free(parts->admin);
	ng_metrics_free(parts->metrics);
	parts->admin = NULL;
	parts->metrics = NULL;
}
