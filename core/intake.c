/*
 * intake.c — the intake routes (intake.h): one request from its raw bytes to its answer —
 * signature, JSON, mapping, group commit — and the intake's metrics.
 */
#include "intake.h"
#include "db.h"
#include "httpd.h"
#include "intake_commit.h"
#include "intake_map.h"
#include "metrics.h"
#include "json_parse.h"
#include "ng.h"
#include "utf8.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NSOURCES 3
static const char *const source_names[NSOURCES] = {"shopify", "woocommerce", "api"};

struct ng_intake {
	uv_loop_t *loop;
	struct ng_db *db;
	struct ng_metrics *metrics;
	struct ng_plugin_host *plugins;
	struct ng_intake_config cfg; /* strings and lists owned (copied) */
	struct ng_intake_mapper *mappers[NSOURCES];
	struct ng_intake_commit *commit;
	struct ng_intake_stats stats;
	struct ng_metric *m_events, *m_latency, *m_batches, *m_retried, *m_queued;
	int open_reqs; /* waiting for a commit, or their timer closing */
	int closing, commit_closed;
	void (*closed)(void *arg);
	void *closed_arg;
};

/* One request waiting for its commit. */
struct pending {
	struct ng_intake *in;
	struct ng_httpd_req *req; /* NULL once answered */
	const char *source;
	struct ng_intake_commit_item *item;
	uv_timer_t timer;
	uint64_t started_ms;
};

/* ---- configuration copy -----------------------------------------------------------------------
 */

static struct ng_intake_secret *copy_secrets(const struct ng_intake_secret *s, size_t n)
{
	struct ng_intake_secret *out = ng_xcalloc(n ? n : 1, sizeof *out);
	for (size_t i = 0; i < n; i++) {
		out[i].match = s[i].match ? ng_xstrdup(s[i].match) : NULL;
		out[i].secret = ng_xstrdup(s[i].secret ? s[i].secret : "");
	}
	return out;
}

static void free_secrets(const struct ng_intake_secret *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((char *)s[i].match);
		free((char *)s[i].secret);
	}
	free((void *)s);
}

static char *dup_or_null(const char *s)
{
	return s ? ng_xstrdup(s) : NULL;
}

static void free_keys(struct ng_intake_config *c)
{
	for (size_t i = 0; i < c->napi_keys; i++)
		free((char *)c->api_keys[i]);
	free((void *)c->api_keys);
	free_secrets(c->shopify, c->nshopify);
	free_secrets(c->woocommerce, c->nwoocommerce);
}

static void copy_keys(struct ng_intake_config *dst, const struct ng_intake_config *src)
{
	const char **keys = ng_xcalloc(src->napi_keys ? src->napi_keys : 1, sizeof *keys);
	for (size_t i = 0; i < src->napi_keys; i++)
		keys[i] = ng_xstrdup(src->api_keys[i] ? src->api_keys[i] : "");
	dst->api_keys = keys;
	dst->napi_keys = src->napi_keys;
	dst->shopify = copy_secrets(src->shopify, src->nshopify);
	dst->nshopify = src->nshopify;
	dst->woocommerce = copy_secrets(src->woocommerce, src->nwoocommerce);
	dst->nwoocommerce = src->nwoocommerce;
}

static void free_intake(struct ng_intake *in)
{
	for (int i = 0; i < NSOURCES; i++)
		ng_intake_mapper_free(in->mappers[i]);
	free((char *)in->cfg.mappers_dir);
	free((char *)in->cfg.default_country_code);
	free((char *)in->cfg.base_url);
	free_keys(&in->cfg);
	free(in);
}

void ng_intake_reload_secrets(struct ng_intake *in, const struct ng_intake_config *cfg)
{
	free_keys(&in->cfg);
	copy_keys(&in->cfg, cfg);
}

/* ---- metrics ----------------------------------------------------------------------------------
 */

static void count(struct ng_intake *in, const char *source, const char *outcome, size_t n)
{
	if (in->m_events && n)
		ng_metric_add(in->m_events, (const char *[]){source, outcome}, (double)n);
}

static void register_metrics(struct ng_intake *in)
{
	struct ng_metrics *m = in->metrics;
	if (!m)
		return;
	in->m_events = ng_metrics_register(
	    m, "nudge_intake_events_total",
	    "Events received, by source and outcome (accepted: committed; duplicate: a redelivery; "
	    "ignored: no mapping; rejected: refused with 4xx; unavailable: 503; failed: 500).",
	    NG_METRIC_COUNTER, "source,outcome", NULL, 0);
	static const double buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.02, 0.05,
	                                 0.1,   0.25,   0.5,   1,    2.5,  5};
	in->m_latency = ng_metrics_register(
	    m, "nudge_intake_latency_seconds",
	    "Time from a request's first byte to its answer, for the intake routes, by source.",
	    NG_METRIC_HISTOGRAM, "source", buckets, NG_ARRAY_LEN(buckets));
	in->m_batches =
	    ng_metrics_register(m, "nudge_intake_batches_total",
	                        "Group commits sent to the database, and the events in them.",
	                        NG_METRIC_GAUGE, "what", NULL, 0);
	in->m_retried =
	    ng_metrics_register(m, "nudge_intake_retried_total",
	                        "Requests sent again on their own after their group commit failed.",
	                        NG_METRIC_GAUGE, NULL, NULL, 0);
	in->m_queued =
	    ng_metrics_register(m, "nudge_intake_commit_queue",
	                        "Requests waiting for a group commit, and commits at the "
	                        "database.",
	                        NG_METRIC_GAUGE, "state", NULL, 0);
}

void ng_intake_metrics(struct ng_intake *in)
{
	if (!in->metrics || !in->commit)
		return;
	struct ng_intake_commit_stats s;
	ng_intake_commit_stats(in->commit, &s);
	ng_metric_set(in->m_batches, (const char *[]){"batches"}, (double)s.batches);
	ng_metric_set(in->m_batches, (const char *[]){"events"}, (double)s.events);
	ng_metric_set(in->m_retried, NULL, (double)s.retried);
	ng_metric_set(in->m_queued, (const char *[]){"queued"}, (double)s.queued);
	ng_metric_set(in->m_queued, (const char *[]){"in_flight"}, (double)s.inflight);
}

void ng_intake_stats(const struct ng_intake *in, struct ng_intake_stats *out)
{
	*out = in->stats;
	if (in->commit) {
		struct ng_intake_commit_stats s;
		ng_intake_commit_stats(in->commit, &s);
		out->batches = s.batches;
		out->retried = s.retried;
	}
}

/* ---- answers ----------------------------------------------------------------------------------
 */

/* A JSON string of s; bytes of invalid UTF-8 (a header echoed in a sentence) become U+FFFD. */
static json_t *jstr(const char *s)
{
	json_t *j = json_string(s);
	if (j)
		return j;
	char *copy = ng_utf8_dup(s);
	j = json_string(copy);
	free(copy);
	return j;
}

static void answer_json(struct ng_intake *in, struct ng_httpd_req *req, const char *source,
                        uint64_t started_ms, int status, json_t *body)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!text)
		text = ng_xstrdup("{}");
	size_t len = strlen(text);
	text = ng_xrealloc(text, len + 2);
	text[len++] = '\n';
	text[len] = '\0';
	if (status == 503) {
		char ra[16];
		snprintf(ra, sizeof ra, "%d", in->cfg.retry_after_s);
		ng_httpd_add_header(req, "Retry-After", ra);
	}
	if (in->m_latency) {
		uint64_t now = uv_now(in->loop);
		double s = now > started_ms ? (double)(now - started_ms) / 1000.0 : 0.0;
		ng_metric_observe(in->m_latency, (const char *[]){source}, s);
	}
	ng_httpd_respond(req, status, "application/json", text, len);
	free(text);
}

static void answer_error(struct ng_intake *in, struct ng_httpd_req *req, const char *source,
                         uint64_t started_ms, int status, const char *outcome, const char *why)
{
	count(in, source, outcome, 1);
	answer_json(in, req, source, started_ms, status, json_pack("{s:o}", "error", jstr(why)));
}

static void pending_closed(uv_handle_t *h)
{
	struct pending *p = h->data;
	struct ng_intake *in = p->in;
	free(p);
	in->open_reqs--;
	if (in->closing && in->commit_closed && in->open_reqs == 0) {
		void (*done)(void *) = in->closed;
		void *arg = in->closed_arg;
		free_intake(in);
		if (done)
			done(arg);
	}
}

static void pending_finish(struct pending *p)
{
	uv_timer_stop(&p->timer);
	uv_close((uv_handle_t *)&p->timer, pending_closed);
}

static void on_committed(int status, const json_t *results, const char *message, void *arg)
{
	struct pending *p = arg;
	struct ng_intake *in = p->in;
	struct ng_httpd_req *req = p->req;
	p->req = NULL;
	p->item = NULL;
	if (status != 0) {
		int unavailable = status != NG_EDB;
		if (unavailable) {
			in->stats.unavailable++;
			ng_warn("intake", "%s events not committed, answering 503: %s", p->source,
			        message);
		} else {
			in->stats.failed++;
			ng_error("intake", "the database refused %s events: %s", p->source,
			         message);
		}
		answer_error(in, req, p->source, p->started_ms, unavailable ? 503 : 500,
		             unavailable ? "unavailable" : "failed",
		             unavailable ? "the database is unavailable; try again"
		                         : "the database refused the events");
		pending_finish(p);
		return;
	}
	size_t accepted = 0, dup = 0, i;
	json_t *r, *out = json_array();
	json_array_foreach(results, i, r)
	{
		const char *st = json_string_value(json_object_get(r, "status"));
		if (st && strcmp(st, "accepted") == 0)
			accepted++;
		else
			dup++;
		json_array_append(out, (json_t *)r);
	}
	in->stats.accepted += accepted;
	in->stats.duplicates += dup;
	count(in, p->source, "accepted", accepted);
	count(in, p->source, "duplicate", dup);
	answer_json(in, req, p->source, p->started_ms, 200,
	            json_pack("{s:s, s:I, s:I, s:o}", "status", accepted ? "accepted" : "duplicate",
	                      "accepted", (json_int_t)accepted, "duplicates", (json_int_t)dup,
	                      "events", out));
	pending_finish(p);
}

static void on_commit_deadline(uv_timer_t *t)
{
	struct pending *p = t->data;
	struct ng_intake *in = p->in;
	if (p->item)
		ng_intake_commit_cancel(p->item);
	p->item = NULL;
	struct ng_httpd_req *req = p->req;
	p->req = NULL;
	in->stats.unavailable++;
	ng_warn("intake", "%s events not committed within %llu ms, answering 503", p->source,
	        (unsigned long long)in->cfg.commit_timeout_ms);
	answer_error(in, req, p->source, p->started_ms, 503, "unavailable",
	             "the database did not commit in time; try again");
	pending_finish(p);
}

/* ---- one request ------------------------------------------------------------------------------
 */

static int source_index(const char *source)
{
	for (int i = 0; i < NSOURCES; i++)
		if (strcmp(source_names[i], source) == 0)
			return i;
	return -1;
}

/* The identity namespace of the store's customer ids: shopify:<shop>, woocommerce, api. */
static char *identity_source(const char *source, struct ng_httpd_req *req)
{
	if (strcmp(source, "shopify") == 0) {
		const char *shop = ng_httpd_header(req, "X-Shopify-Shop-Domain");
		if (shop && *shop)
			return ng_xasprintf("shopify:%s", shop);
	}
	return ng_xstrdup(source);
}

static const char *delivery_id(const char *source, struct ng_httpd_req *req)
{
	if (strcmp(source, "shopify") == 0) {
		const char *d = ng_httpd_header(req, "X-Shopify-Webhook-Id");
		return d ? d : ng_httpd_header(req, "X-Shopify-Event-Id");
	}
	if (strcmp(source, "woocommerce") == 0)
		return ng_httpd_header(req, "X-WC-Webhook-Delivery-ID");
	return ng_httpd_header(req, "Idempotency-Key");
}

static int db_usable(struct ng_intake *in)
{
	struct ng_db_stats s;
	ng_db_stats(in->db, &s);
	return s.conns_ready + s.conns_busy > 0;
}

static void handle(struct ng_intake *in, struct ng_httpd_req *req, const char *source)
{
	uint64_t started = uv_now(in->loop);
	struct ng_intake_mapper *m = in->mappers[source_index(source)];
	size_t nh = ng_httpd_header_count(req);
	struct ng_intake_header *hs = ng_xcalloc(nh ? nh : 1, sizeof *hs);
	for (size_t i = 0; i < nh; i++)
		ng_httpd_header_at(req, i, &hs[i].name, &hs[i].value);
	size_t len;
	const char *body = ng_httpd_body(req, &len);
	if (!body)
		body = "";
	char err[1024];
	json_t *payload = NULL, *events = NULL;

	/* WooCommerce's creation ping is unsigned: answer it before anything else. */
	long long hook;
	if (ng_intake_is_ping(source, hs, nh, body, len, &hook)) {
		ng_info("intake", "woocommerce webhook %lld pinged us", hook);
		count(in, source, "ignored", 1);
		answer_json(in, req, source, started, 200, json_pack("{s:s}", "status", "ok"));
		goto out;
	}
	if (ng_intake__authenticate(&in->cfg, source, req, err, sizeof err) != 0) {
		in->stats.rejected++;
		answer_error(in, req, source, started, 401, "rejected", err);
		goto out;
	}
	const char *th = ng_intake_topic_header(source);
	const char *topic = th ? ng_httpd_header(req, th) : "events";
	if (!topic || !*topic) {
		snprintf(err, sizeof err, "no %s header", th);
		in->stats.rejected++;
		answer_error(in, req, source, started, 400, "rejected", err);
		goto out;
	}
	json_error_t je;
	payload = ng_json_parse(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!payload) {
		snprintf(err, sizeof err, "malformed JSON at line %d column %d: %s%s", je.line,
		         je.column,
		         json_error_code(&je) == json_error_invalid_utf8
		             ? "the body is not valid UTF-8: "
		             : "",
		         je.text);
		in->stats.rejected++;
		answer_error(in, req, source, started, 400, "rejected", err);
		goto out;
	}
	int rc = ng_intake_map(m, topic, hs, nh, payload, &events, err, sizeof err);
	if (rc == NG_INTAKE_IGNORED) {
		in->stats.ignored++;
		count(in, source, "ignored", 1);
		answer_json(in, req, source, started, 200,
		            json_pack("{s:s, s:o}", "status", "ignored", "reason", jstr(err)));
		goto out;
	}
	if (rc == -EBADMSG) {
		in->stats.rejected++;
		answer_error(in, req, source, started, 400, "rejected", err);
		goto out;
	}
	if (rc != 0) {
		ng_error("intake", "%s %s: %s", source, topic, err);
		in->stats.failed++;
		answer_error(in, req, source, started, 500, "failed",
		             rc == -ENOMEM ? "the mapping ran out of memory"
		                           : "the mapping failed");
		goto out;
	}
	/* Checked only now, so a malformed or unsigned request still gets its 4xx. */
	if (in->closing || !db_usable(in)) {
		in->stats.unavailable++;
		answer_error(in, req, source, started, 503, "unavailable",
		             "the database is unavailable; try again");
		goto out;
	}
	char *ids = identity_source(source, req);
	const char *did = delivery_id(source, req);
	size_t i;
	json_t *ev;
	json_array_foreach(events, i, ev)
	{
		/* json_string refuses invalid UTF-8 (NULL): then the field is simply absent. */
		json_object_set_new(ev, "identity_source", json_string(ids));
		if (did)
			json_object_set_new(ev, "delivery_id", json_string(did));
	}
	free(ids);
	struct pending *p = ng_xcalloc(1, sizeof *p);
	p->in = in;
	p->req = req;
	p->source = source_names[source_index(source)];
	p->started_ms = started;
	uv_timer_init(in->loop, &p->timer);
	p->timer.data = p;
	in->open_reqs++;
	p->item = ng_intake_commit_submit(in->commit, events, on_committed, p);
	if (!p->item) {
		p->req = NULL;
		in->stats.unavailable++;
		answer_error(in, req, source, started, 503, "unavailable",
		             "nudge is shutting down");
		pending_finish(p);
		goto out;
	}
	uv_timer_start(&p->timer, on_commit_deadline, in->cfg.commit_timeout_ms, 0);
out:
	json_decref(payload);
	json_decref(events);
	free(hs);
}

static void on_events(struct ng_httpd_req *req, void *arg)
{
	handle(arg, req, "api");
}

static void on_shopify(struct ng_httpd_req *req, void *arg)
{
	handle(arg, req, "shopify");
}

static void on_woocommerce(struct ng_httpd_req *req, void *arg)
{
	handle(arg, req, "woocommerce");
}

static void on_plugin(struct ng_httpd_req *req, void *arg)
{
	struct ng_intake *in = arg;
	ng_intake__plugin_route(req, in->plugins, in->cfg.base_url);
}

void ng_intake_routes(struct ng_intake *in, struct ng_httpd *srv)
{
	ng_httpd_route(srv, "POST", "/v1/events", on_events, in);
	ng_httpd_route(srv, "POST", "/v1/webhooks/shopify", on_shopify, in);
	ng_httpd_route(srv, "POST", "/v1/webhooks/woocommerce", on_woocommerce, in);
	ng_httpd_route(srv, "POST", "/v1/webhooks/*", on_plugin, in);
	ng_httpd_route(srv, "GET", "/v1/webhooks/*", on_plugin, in);
}

/* ---- open and close ---------------------------------------------------------------------------
 */

int ng_intake_open(struct ng_intake **out, uv_loop_t *loop, struct ng_db *db,
                   struct ng_metrics *metrics, struct ng_plugin_host *plugins,
                   const struct ng_intake_config *cfg, char *err, size_t errlen)
{
	struct ng_intake *in = ng_xcalloc(1, sizeof *in);
	in->loop = loop;
	in->db = db;
	in->metrics = metrics;
	in->plugins = plugins;
	in->cfg = *cfg;
	in->cfg.mappers_dir = dup_or_null(cfg->mappers_dir);
	in->cfg.default_country_code = dup_or_null(cfg->default_country_code);
	in->cfg.base_url = dup_or_null(cfg->base_url);
	copy_keys(&in->cfg, cfg);
	if (in->cfg.retry_after_s <= 0)
		in->cfg.retry_after_s = 5;
	if (!in->cfg.commit_timeout_ms)
		in->cfg.commit_timeout_ms = 4000;
	if (!in->cfg.mappers_dir) {
		snprintf(err, errlen, "no mappers directory");
		free_intake(in);
		return NG_ECONFIG;
	}
	for (int i = 0; i < NSOURCES; i++) {
		struct ng_intake_options o = {
		    .default_country_code = in->cfg.default_country_code,
		    .strict = strcmp(source_names[i], "api") == 0,
		};
		int rc = ng_intake_mapper_load(in->cfg.mappers_dir, source_names[i], &o,
		                               &in->mappers[i], err, errlen);
		if (rc) {
			free_intake(in);
			return rc == -ENOENT || rc == -EINVAL ? NG_ECONFIG : rc;
		}
	}
	struct ng_intake_commit_options co = {.max_inflight = cfg->max_inflight,
	                                      .max_batch = cfg->max_batch};
	ng_intake_commit_open(&in->commit, db, &co);
	register_metrics(in);
	*out = in;
	return 0;
}

static void on_commit_closed(void *arg)
{
	struct ng_intake *in = arg;
	in->commit = NULL;
	in->commit_closed = 1;
	/* Otherwise the last pending timer to close frees the intake (pending_closed). */
	if (in->open_reqs == 0) {
		void (*done)(void *) = in->closed;
		void *a = in->closed_arg;
		free_intake(in);
		if (done)
			done(a);
	}
}

void ng_intake_close(struct ng_intake *in, void (*done)(void *arg), void *arg)
{
	in->closing = 1;
	in->closed = done;
	in->closed_arg = arg;
	ng_intake_commit_close(in->commit, on_commit_closed, in);
}
