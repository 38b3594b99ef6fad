/*
 * daemon_parts.c — builds the daemon's components from the configuration, in dependency order.
 */
#include "daemon_parts.h"
#include "admin_routes.h"
#include "httpc.h"
#include "httpd.h"
#include "intake.h"
#include "metrics.h"
#include "clock.h"
#include "config.h"
#include "daemon.h"
#include "db.h"
#include "dispatch.h"
#include "msgtmpl.h"
#include "confirm.h"
#include "msg_view.h"
#include "unsubscribe.h"
#include "ng.h"
#include "migrate.h"
#include "paths.h"
#include "plugin_host.h"
#include "plugin_reports.h"
#include "policy.h"
#include "privacy_api.h"
#include "retention.h"
#include "senders.h"
#include "wf.h"

#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <openssl/rand.h>
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
		/* Leases are real time, also on a demo clock that runs faster. */
		.lease_ms = (int)((double)ng_conf_int(conf, "workflows.lease_ms") *
				      (ng_clock_speed(parts->clock) > 1 ? ng_clock_speed(parts->clock)
									 : 1)),
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

static void close_intake(void *self, void (*done)(void *arg), void *arg)
{
	ng_intake_close(self, done, arg);
}

static const char *child_str(const struct ng_conf_node *n, const char *key)
{
	for (const struct ng_conf_node *c = n->child; c; c = c->next)
		if (strcmp(c->key, key) == 0)
			return c->str;
	return NULL;
}

/* A list of {match_key, secret} tables from the configuration. */
static struct ng_intake_secret *secrets_of(const struct ng_conf *conf, const char *path,
					   const char *match_key, size_t *n)
{
	const struct ng_conf_node *list = ng_conf_get(conf, path);
	size_t k = 0;
	for (const struct ng_conf_node *c = list ? list->child : NULL; c; c = c->next)
		k++;
	struct ng_intake_secret *out = ng_xcalloc(k ? k : 1, sizeof *out);
	k = 0;
	for (const struct ng_conf_node *c = list ? list->child : NULL; c; c = c->next, k++) {
		out[k].match = child_str(c, match_key);
		out[k].secret = child_str(c, "secret");
	}
	*n = k;
	return out;
}

/* The API keys and webhook secrets of the configuration, borrowed from it. */
struct intake_keys {
	const char **api;
	struct ng_intake_secret *shops, *woo;
};

static void intake_keys_get(const struct ng_conf *conf, struct intake_keys *k,
			    struct ng_intake_config *ic)
{
	const struct ng_conf_node *keys = ng_conf_get(conf, "intake.api_keys");
	size_t n = 0;
	for (const struct ng_conf_node *c = keys ? keys->child : NULL; c; c = c->next)
		n++;
	k->api = ng_xcalloc(n ? n : 1, sizeof *k->api);
	n = 0;
	for (const struct ng_conf_node *c = keys ? keys->child : NULL; c; c = c->next)
		k->api[n++] = child_str(c, "key");
	ic->api_keys = k->api;
	ic->napi_keys = n;
	k->shops = secrets_of(conf, "intake.shopify", "shop", &ic->nshopify);
	k->woo = secrets_of(conf, "intake.woocommerce", "site", &ic->nwoocommerce);
	ic->shopify = k->shops;
	ic->woocommerce = k->woo;
}

static void intake_keys_free(struct intake_keys *k)
{
	free(k->api);
	free(k->shops);
	free(k->woo);
}

/* SIGHUP: rotated secrets and new API keys take effect at once. */
static void reload_intake(void *self, const struct ng_conf *conf)
{
	struct intake_keys k;
	struct ng_intake_config ic = {0};
	intake_keys_get(conf, &k, &ic);
	ng_intake_reload_secrets(self, &ic);
	intake_keys_free(&k);
	ng_info("intake", "API keys and webhook secrets reloaded");
}

/*
 * Event intake: the mappers, the secrets and the group committer. It starts before the HTTP
 * listener, so it closes after it: the listener's drain lets requests waiting for a commit answer.
 */
static int start_intake(struct ng_daemon *d, uv_loop_t *loop, const struct ng_conf *conf,
			struct ng_daemon_parts *parts, char *err, size_t errlen)
{
	const char *dir = ng_conf_str(conf, "intake.mappers");
	char *found = dir ? ng_xstrdup(dir) : ng_paths_shipped("mappers");
	if (!found)
		found = ng_paths_shipped("contrib/mappers");
	if (!found) {
		snprintf(err, errlen, "no mappers directory: set key 'intake.mappers'");
		return -ENOENT;
	}
	struct intake_keys k;
	struct ng_intake_config ic = {
		.mappers_dir = found,
		.default_country_code = ng_conf_str(conf, "intake.default_country_code"),
		.base_url = ng_conf_str(conf, "store.base_url"),
		.retry_after_s = (int)ng_conf_int(conf, "intake.retry_after_s"),
		.commit_timeout_ms = (uint64_t)ng_conf_int(conf, "intake.commit_timeout_ms"),
		.max_batch = (int)ng_conf_int(conf, "intake.max_batch"),
		.max_inflight = (int)ng_conf_int(conf, "intake.max_inflight"),
	};
	if (ic.max_inflight == 0)
		ic.max_inflight = (int)ng_conf_int(conf, "database.pool_size");
	intake_keys_get(conf, &k, &ic);
	char why[1024];
	int rc = ng_intake_open(&parts->intake, loop, parts->db, parts->metrics, parts->plugins,
				&ic, why, sizeof why);
	intake_keys_free(&k);
	free(found);
	if (rc) {
		snprintf(err, errlen, "cannot start the event intake: %s", why);
		return rc;
	}
	ng_daemon_add(d, "intake", parts->intake, close_intake, reload_intake);
	return 0;
}

/* Requests by route and status, for /metrics. */
static void observe_http(void *arg, const char *route, const char *method, int status,
			 uint64_t elapsed_ms)
{
	struct ng_metrics *m = arg;
	char code[8];
	snprintf(code, sizeof code, "%d", status);
	const char *r = *route ? route : "unknown";
	ng_metric_add(ng_metrics_register(m, "nudge_http_requests_total",
					  "HTTP requests answered, by route, method and status.",
					  NG_METRIC_COUNTER, "route,method,status", NULL, 0),
		      (const char *[]){r, method, code}, 1);
	ng_metric_observe(ng_metrics_register(m, "nudge_http_request_duration_seconds",
					      "Time from a request's first byte to its answer, by "
					      "route.",
					      NG_METRIC_HISTOGRAM, "route", NULL, 0),
			  (const char *[]){r}, (double)elapsed_ms / 1000.0);
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

/* The `store` keys and the link secret, as the dispatcher and /m/ render messages with them. */
static struct ng_msgdata_store store_info(const struct ng_conf *conf,
					  const struct ng_daemon_parts *parts)
{
	return (struct ng_msgdata_store){ng_conf_str(conf, "store.name"),
					 ng_conf_str(conf, "store.postal_address"),
					 ng_conf_str(conf, "store.base_url"),
					 ng_conf_str(conf, "store.timezone"),
					 parts->unsub_secret,
					 parts->unsub_secret_len};
}

/* The dispatcher's message templates, which /m/ renders with (NULL without a dispatcher). */
static const struct ng_msgtmpl_set *dispatch_templates(const struct ng_dispatch_part *p);

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
					  parts->metrics, (int64_t)parts->started_ms, parts->httpc,
					  parts->intake};
	ng_admin_routes(parts->admin, parts->httpd);
	parts->privacy = ng_xcalloc(1, sizeof *parts->privacy);
	*parts->privacy = (struct ng_privacy_api){parts->db, ng_conf_str(conf, "admin.api_key")};
	ng_privacy_routes(parts->privacy, parts->httpd);
	ng_intake_routes(parts->intake, parts->httpd);
	ng_httpd_observe(parts->httpd, observe_http, parts->metrics);
	parts->links = ng_link_routes_new(parts->db, parts->unsub_secret, parts->unsub_secret_len,
					  ng_conf_str(conf, "store.name"));
	ng_unsubscribe_routes(parts->httpd, parts->links);
	ng_confirm_routes(parts->httpd, parts->links);
	const struct ng_msgdata_store store = store_info(conf, parts);
	parts->view = ng_msg_view_routes(parts->httpd, parts->links,
					 dispatch_templates(parts->dispatch), &store);
	ng_info("http", "listening on %s", listen);
	return 0;
}

static void close_httpc(void *self, void (*done)(void *arg), void *arg)
{
	ng_httpc_close(self, done, arg);
}

/* The shared HTTP client: before the plugins, which send with it, and closed after them. */
static int start_httpc(struct ng_daemon *d, uv_loop_t *loop, const struct ng_conf *conf,
		       struct ng_daemon_parts *parts, char *err, size_t errlen)
{
	struct ng_httpc_options o = {
		.timeout_ms = ng_conf_int(conf, "http_client.timeout_ms"),
		.connect_timeout_ms = ng_conf_int(conf, "http_client.connect_timeout_ms"),
		.max_response_bytes = (size_t)ng_conf_int(conf, "http_client.max_response_bytes"),
		.max_connections = (int)ng_conf_int(conf, "http_client.max_connections"),
	};
	int rc = ng_httpc_open(&parts->httpc, loop, &o);
	if (rc) {
		snprintf(err, errlen, "cannot start the HTTP client: %s", ng_strerror(rc));
		return rc;
	}
	ng_daemon_add(d, "http_client", parts->httpc, close_httpc, NULL);
	return 0;
}

static void close_retention(void *self, void (*done)(void *arg), void *arg)
{
	ng_retention_close(self, done, arg);
}

/* The retention purge, when a period is configured. */
static void start_retention(struct ng_daemon *d, uv_loop_t *loop, const struct ng_conf *conf,
			    struct ng_daemon_parts *parts)
{
	struct ng_retention_options o = {
		.events_days = (int)ng_conf_int(conf, "retention.events_days"),
		.messages_days = (int)ng_conf_int(conf, "retention.messages_days"),
		.interval_s = (int)ng_conf_int(conf, "retention.interval_s"),
	};
	struct ng_retention *r = ng_retention_start(loop, parts->db, &o);
	if (r)
		ng_daemon_add(d, "retention", r, close_retention, NULL);
}

/*
 * The dispatcher, with the message templates it renders and each channel instance's limits. It
 * closes before the plugins and the database it needs (components close in reverse order).
 */
struct ng_dispatch_part {
	struct ng_dispatch *dispatch;
	struct ng_msgtmpl_set *templates;
	struct ng_dispatch_limit *limits;
	void (*closed)(void *arg);
	void *closed_arg;
};

static const struct ng_msgtmpl_set *dispatch_templates(const struct ng_dispatch_part *p)
{
	return p ? p->templates : NULL;
}

static void dispatch_closed(void *arg)
{
	struct ng_dispatch_part *p = arg;
	void (*closed)(void *) = p->closed;
	void *carg = p->closed_arg;
	ng_msgtmpl_close(p->templates);
	free(p->limits);
	free(p);
	closed(carg);
}

static void close_dispatch(void *self, void (*done)(void *arg), void *arg)
{
	struct ng_dispatch_part *p = self;
	p->closed = done;
	p->closed_arg = arg;
	ng_dispatch_close(p->dispatch, dispatch_closed, p);
}

static const struct ng_conf_node *child_node(const struct ng_conf_node *n, const char *key)
{
	for (const struct ng_conf_node *c = n->child; c; c = c->next)
		if (strcmp(c->key, key) == 0)
			return c;
	return NULL;
}

static void unsubscribe_secret(const struct ng_conf *conf, struct ng_daemon_parts *parts)
{
	const char *s = ng_conf_str(conf, "unsubscribe.secret");
	if (s && *s) {
		parts->unsub_secret_len = strlen(s) < sizeof parts->unsub_secret
						  ? strlen(s)
						  : sizeof parts->unsub_secret;
		memcpy(parts->unsub_secret, s, parts->unsub_secret_len);
		return;
	}
	RAND_bytes(parts->unsub_secret, 32);
	parts->unsub_secret_len = 32;
	ng_warn("unsubscribe", "unsubscribe.secret is not set: unsubscribe links in mail sent now "
			       "stop working when nudge restarts");
}

/*
 * The contact-pressure policy: checked now (a malformed window or period stops startup with the
 * key), published to the database for the dispatcher's verdict, and again on every SIGHUP.
 */
static void close_policy(void *self, void (*done)(void *arg), void *arg)
{
	NG_UNUSED(self);
	done(arg);
}

static void reload_policy(void *self, const struct ng_conf *conf)
{
	struct ng_daemon_parts *parts = self;
	char err[512];
	json_t *s = ng_policy_settings(conf, err, sizeof err);
	if (!s) {
		ng_error("policy", "%s; the policy in force is kept", err);
		return;
	}
	ng_policy_publish(parts->db, s);
	json_decref(s);
}

static int start_policy(struct ng_daemon *d, const struct ng_conf *conf,
			struct ng_daemon_parts *parts, char *err, size_t errlen)
{
	json_t *s = ng_policy_settings(conf, err, errlen);
	if (!s)
		return -EINVAL;
	ng_policy_publish(parts->db, s);
	json_decref(s);
	ng_daemon_add(d, "policy", parts, close_policy, reload_policy);
	return 0;
}

static int start_dispatch(struct ng_daemon *d, uv_loop_t *loop, const struct ng_conf *conf,
			  struct ng_daemon_parts *parts, char *err, size_t errlen)
{
	struct ng_dispatch_part *p = ng_xcalloc(1, sizeof *p);
	const char *dir = ng_conf_str(conf, "paths.templates");
	char *found = dir ? ng_xstrdup(dir) : ng_paths_shipped("templates");
	char terr[512] = "";
	int rc = ng_msgtmpl_open(found ? found : "templates", &p->templates, terr, sizeof terr);
	free(found);
	if (rc) {
		snprintf(err, errlen, "the message templates cannot be loaded: %s", terr);
		free(p);
		return rc;
	}
	/* Double opt-in sends its confirmation with this template: a missing one would leave every
	 * new subscriber pending for ever. */
	const char *confirm = ng_conf_str(conf, "policy.double_opt_in.template");
	if (ng_conf_bool(conf, "policy.double_opt_in.email") &&
	    !ng_msgtmpl_has(p->templates, confirm)) {
		snprintf(err, errlen,
		         "key 'policy.double_opt_in.template' names \"%s\", which is not among the "
		         "message templates",
		         confirm ? confirm : "");
		ng_msgtmpl_close(p->templates);
		free(p);
		return -EINVAL;
	}
	const struct ng_conf_node *list = ng_conf_get(conf, "channels");
	size_t n = 0;
	for (const struct ng_conf_node *c = list ? list->child : NULL; c; c = c->next)
		n++;
	p->limits = ng_xcalloc(n ? n : 1, sizeof *p->limits);
	size_t i = 0;
	for (const struct ng_conf_node *c = list ? list->child : NULL; c; c = c->next, i++) {
		const struct ng_conf_node *v;
		p->limits[i].instance = (v = child_node(c, "name")) ? v->str : NULL;
		p->limits[i].concurrency = (v = child_node(c, "concurrency")) ? (int)v->i : 0;
		p->limits[i].rate = (v = child_node(c, "rate")) ? v->num : 0;
		p->limits[i].burst = (v = child_node(c, "burst")) ? v->num : 0;
	}
	struct ng_dispatch_options o = {
		.loop = loop,
		.db = parts->db,
		.clock = parts->clock,
		.plugins = parts->plugins,
		.templates = p->templates,
		.batch = (int)ng_conf_int(conf, "dispatch.batch"),
		.lease_ms = ng_conf_int(conf, "dispatch.lease_ms"),
		.poll_ms = ng_conf_int(conf, "dispatch.poll_ms"),
		.retry_base_ms = ng_conf_int(conf, "dispatch.retry_base_ms"),
		.retry_max_ms = ng_conf_int(conf, "dispatch.retry_max_ms"),
		.max_attempts = (int)ng_conf_int(conf, "dispatch.max_attempts"),
		.reconcile_ms = ng_conf_int(conf, "dispatch.reconcile_ms"),
		.drain_ms = ng_conf_int(conf, "shutdown_timeout_ms") / 2,
		.listen = 1,
		.limits = p->limits,
		.nlimits = n,
		.store = store_info(conf, parts),
	};
	rc = ng_dispatch_open(&p->dispatch, &o);
	if (rc) {
		snprintf(err, errlen, "cannot start the dispatcher: %s", ng_strerror(rc));
		ng_msgtmpl_close(p->templates);
		free(p->limits);
		free(p);
		return rc;
	}
	parts->dispatch = p;
	ng_daemon_add(d, "dispatch", p, close_dispatch, NULL);
	ng_dispatch_start(p->dispatch);
	return 0;
}

static void close_reports(void *self, void (*done)(void *arg), void *arg)
{
	ng_reports_close(self, done, arg);
}

static void close_plugins(void *self, void (*done)(void *arg), void *arg)
{
	ng_plugin_host_close(self, done, arg);
}

int ng_daemon_parts_start(struct ng_daemon *d, uv_loop_t *loop, const struct ng_conf *conf,
			  struct ng_daemon_parts *parts, char *err, size_t errlen)
{
	parts->metrics = ng_metrics_new();
	double speed = ng_conf_num(conf, "clock.speed");
	if (speed <= 0) {
		snprintf(err, errlen, "key 'clock.speed' must be a positive number");
		return -EINVAL;
	}
	parts->clock = speed == 1 ? ng_clock_real(loop) : ng_clock_scaled(loop, speed);
	if (speed != 1)
		ng_warn("clock", "clock.speed = %g: workflow time runs %g times faster than real "
				 "time (for demos and tests only)",
			speed, speed);
	parts->started_ms = (uint64_t)ng_clock_now_ms(parts->clock);
	ng_daemon_add(d, "clock", parts->clock, close_clock, NULL);

	int rc = ng_senders_open(&parts->senders, loop, (int)ng_conf_int(conf, "senders.threads"));
	if (rc) {
		snprintf(err, errlen, "cannot start the sender threads: %s", ng_strerror(rc));
		return rc;
	}
	ng_daemon_add(d, "senders", parts->senders, close_senders, NULL);

	rc = start_httpc(d, loop, conf, parts, err, errlen);
	if (rc)
		return rc;

	/* Channel plugins: a refused instance is logged with its reason; the others still start. */
	rc = ng_plugin_host_open(&parts->plugins, loop, parts->clock, parts->senders);
	if (rc) {
		snprintf(err, errlen, "cannot start the plugin host: %s", ng_strerror(rc));
		return rc;
	}
	ng_daemon_add(d, "plugins", parts->plugins, close_plugins, NULL);
	ng_plugin_host_set_httpc(parts->plugins, parts->httpc);
	ng_plugin_host_load_conf(parts->plugins, conf, NULL, NULL);

	/* The pool connects in the background: the daemon starts (and /healthz says "degraded") while
	 * PostgreSQL is down, and catches up when it comes back. */
	rc = start_db(d, loop, conf, parts, err, errlen);
	if (rc)
		return rc;
	rc = start_wf(d, loop, conf, parts, err, errlen);
	if (rc)
		return rc;
	start_retention(d, loop, conf, parts);
	rc = start_intake(d, loop, conf, parts, err, errlen);
	if (rc)
		return rc;
	rc = start_policy(d, conf, parts, err, errlen);
	if (rc)
		return rc;
	unsubscribe_secret(conf, parts);
	/* What plugins report later (statuses, STOP/START, inbound messages) is written to the
	 * database; closed before it. Messenger refs are signed with the unsubscribe secret. */
	ng_daemon_add(d, "reports",
		      ng_reports_open(parts->db, parts->plugins, parts->unsub_secret,
				      parts->unsub_secret_len),
		      close_reports, NULL);
	rc = start_dispatch(d, loop, conf, parts, err, errlen);
	if (rc)
		return rc;
	/* Last: requests arrive only once everything they need is running, and the listener is
	 * the first thing a drain closes. */
	return start_httpd(d, loop, conf, parts, err, errlen);
}

void ng_daemon_parts_free(struct ng_daemon_parts *parts)
{
	free(parts->admin);
	free(parts->privacy);
	parts->privacy = NULL;
	ng_msg_view_free(parts->view);
	parts->view = NULL;
	ng_link_routes_free(parts->links);
	parts->links = NULL;
	ng_metrics_free(parts->metrics);
	parts->admin = NULL;
	parts->metrics = NULL;
}
