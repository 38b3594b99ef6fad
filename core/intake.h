/*
 * intake.h — event intake over HTTP: the routes that turn a store's webhook or an API call into
 * committed events (docs/events.md).
 *
 *   POST /v1/events                 generic JSON events, one or {"events": [...]}; a bearer API key
 *                                   (Authorization: Bearer KEY) or X-Nudge-Signature
 *   POST /v1/webhooks/shopify       X-Shopify-Hmac-Sha256 with the secret of X-Shopify-Shop-Domain
 *   POST /v1/webhooks/woocommerce   X-WC-Webhook-Signature; the unsigned creation ping gets 200
 *   POST|GET /v1/webhooks/<name>    the channel plugin instance <name>'s inbound handler
 *
 * A request goes: signature (on the raw bytes, before parsing; 401 and nothing written) → JSON
 * (400 with the reason) → the source's mapper (intake_map.h) → group commit (intake_commit.h) →
 * 200 once the events, their customers and consent and their workflow triggers are committed, or
 * a duplicate recognised. Never 2xx otherwise: when the database is unreachable, or the commit
 * does not finish within commit_timeout_ms, the answer is 503 with Retry-After.
 */
#ifndef NG_INTAKE_H
#define NG_INTAKE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct ng_db;
struct ng_httpd;
struct ng_metrics;
struct ng_plugin_host;
struct ng_intake;

/* A webhook secret and what it is for: a Shopify shop domain, a WooCommerce site URL (the
 * X-WC-Webhook-Source header), or NULL for any. Several may name the same shop while rotating. */
struct ng_intake_secret {
	const char *match;
	const char *secret;
};

struct ng_intake_config {
	const char *mappers_dir; /* required: holds shopify.lua, woocommerce.lua, api.lua */
	const char *default_country_code; /* for national phone numbers; NULL: refuse them */
	const char *base_url;             /* public URL, for plugins that check signatures on it */
	const char *const *api_keys;
	size_t napi_keys;
	const struct ng_intake_secret *shopify;
	size_t nshopify;
	const struct ng_intake_secret *woocommerce;
	size_t nwoocommerce;
	int retry_after_s; /* in 503 answers; default 5 */
	uint64_t
	    commit_timeout_ms; /* answer 503 after this long; default 4000 (Shopify waits 5 s) */
	int max_inflight;      /* commits at the database at once; default 4 */
	int max_batch;         /* events per commit; default 256 */
};

struct ng_intake_stats {
	unsigned long long accepted, duplicates, ignored, rejected, unavailable, failed, batches,
	    retried;
};

/* Loads the mappers and copies the configuration. NG_ECONFIG (and a sentence) when a mapper does
 * not load. db, metrics and plugins are borrowed; metrics and plugins may be NULL. */
int ng_intake_open(struct ng_intake **out, uv_loop_t *loop, struct ng_db *db,
                   struct ng_metrics *metrics, struct ng_plugin_host *plugins,
                   const struct ng_intake_config *cfg, char *err, size_t errlen);
void ng_intake_routes(struct ng_intake *in, struct ng_httpd *srv);
/* Replaces the API keys and webhook secrets (SIGHUP: a rotated secret takes effect without a
 * restart); the rest of cfg is ignored. Requests already past their check are not affected. */
void ng_intake_reload_secrets(struct ng_intake *in, const struct ng_intake_config *cfg);
void ng_intake_stats(const struct ng_intake *in, struct ng_intake_stats *out);
/* Refreshes the gauges /metrics shows (batches, queue). */
void ng_intake_metrics(struct ng_intake *in);
/* Answers what waits for a commit with 503, waits for the commits at the database, frees in and
 * calls done(arg). Close it after the HTTP server and before the database. */
void ng_intake_close(struct ng_intake *in, void (*done)(void *arg), void *arg);

/* ---- internal, shared by intake*.c ------------------------------------------------------------
 */

struct ng_httpd_req;
/* intake_inbound.c: POST|GET /v1/webhooks/<instance>. */
void ng_intake__plugin_route(struct ng_httpd_req *req, struct ng_plugin_host *plugins,
                             const char *base_url);
/* intake_auth.c: 0 when the request is signed (or carries an API key) for source, else -EACCES
 * with a reason in err. */
int ng_intake__authenticate(const struct ng_intake_config *cfg, const char *source,
                            struct ng_httpd_req *req, char *err, size_t errlen);

#endif
