/*
 * test_messenger.c — the Messenger plugin against tests/support/graph_standin.c, all on one loop
 * with a virtual clock: the plugin host with the shared HTTP client, the stand-in as the Graph
 * Send API (judging the window by the same clock), and a webhook route on nudge's HTTP server that
 * hands /v1/webhooks/<instance> to the plugin's inbound (what the daemon's route does). "Last
 * seen" is driven only through signed webhook events, time only through the clock: a promotion to
 * a person seen 25 hours ago is refused with its reason, one seen an hour ago is sent. Each Graph
 * error becomes its result (window, unavailable, no such user, rate limits, temporary errors, a
 * bad token that turns the instance DOWN and holds messages), subscription checks and signatures
 * are enforced (403, no change), and what people say about themselves becomes a link.
 */
#include "clock.h"
#include "config.h"
#include "httpc.h"
#include "httpd.h"
#include "ng.h"
#include "plugin_host.h"
#include "testlib.h"
#include "support/graph_standin.h"

#include <errno.h>
#include <limits.h>
#include <unistd.h>
#include <valgrind/valgrind.h>

#define TOKEN      "EAAGtestpagetoken0123456789"
#define APP_SECRET "test-app-secret"
#define VERIFY     "verify-me-please"
#define T0         1764669600000LL /* 2025-12-02 10:00 UTC */
#define HOUR       3600000LL

static uv_loop_t loop;
static struct ng_clock *clock_;
static struct ng_httpc *httpc;
static struct ng_plugin_host *host;
static struct ng_httpd *hooks;
static struct gr_standin *api;
static struct ng_conf *conf;
static char conf_path[256];
static int closed;

/* ---- what the plugin reported --------------------------------------------------------------- */

struct event_rec {
	char name[32], address[40], dedupe[80], props[1024];
	char ref[64], email[64], phone[64];
	int64_t occurred_ms;
};
static struct event_rec events[64];
static int nevent;
static int fail_events; /* the receiver answers -EIO */

static int rx_event(void *ctx, struct ng_plugin *p, const struct nudge_event_report *r,
                    void (*done)(void *, int), void *arg)
{
	NG_UNUSED(ctx);
	NG_UNUSED(p);
	ASSERT(nevent < 64);
	ASSERT_EQ_INT(r->struct_size, sizeof *r);
	struct event_rec *e = &events[nevent++];
	ASSERT_EQ_STR(r->channel, "messenger");
	snprintf(e->name, sizeof e->name, "%s", r->name);
	snprintf(e->address, sizeof e->address, "%s", r->address);
	snprintf(e->dedupe, sizeof e->dedupe, "%s", r->dedupe_key ? r->dedupe_key : "");
	snprintf(e->props, sizeof e->props, "%s", r->properties_json ? r->properties_json : "");
	snprintf(e->ref, sizeof e->ref, "%s", r->customer_ref ? r->customer_ref : "");
	snprintf(e->email, sizeof e->email, "%s", r->customer_email ? r->customer_email : "");
	snprintf(e->phone, sizeof e->phone, "%s", r->customer_phone ? r->customer_phone : "");
	e->occurred_ms = r->occurred_ms;
	done(arg, fail_events ? -EIO : 0);
	return 0;
}

/* ---- the webhook route: /v1/webhooks/<instance>[/more] → the plugin's inbound -------------- */

struct hook_call {
	struct ng_httpd_req *r;
	struct nudge_header *h;
	char *url;
};

static int hook_answers;

static void on_hook_done(void *arg, const struct nudge_inbound_response *res)
{
	struct hook_call *c = arg;
	hook_answers++;
	ng_httpd_respond(c->r, res->status, res->content_type ? res->content_type : "text/plain",
	                 res->body, res->body_len);
	free(c->h);
	free(c->url);
	free(c);
}

static void on_hook(struct ng_httpd_req *r, void *arg)
{
	NG_UNUSED(arg);
	const char *path = ng_httpd_path(r) + strlen("/v1/webhooks/");
	size_t nl = strcspn(path, "/");
	char name[64];
	snprintf(name, sizeof name, "%.*s", (int)nl, path);
	struct ng_plugin *p = ng_plugin_find(host, name);
	if (!p) {
		ng_httpd_respond(r, 404, "text/plain", "no such instance\n", 17);
		return;
	}
	struct hook_call *c = ng_xcalloc(1, sizeof *c);
	c->r = r;
	size_t n = ng_httpd_header_count(r);
	c->h = ng_xcalloc(n ? n : 1, sizeof *c->h);
	for (size_t i = 0; i < n; i++)
		ng_httpd_header_at(r, i, &c->h[i].name, &c->h[i].value);
	const char *q = ng_httpd_query(r);
	c->url = ng_xasprintf("http://127.0.0.1:%d%s%s%s", ng_httpd_port(hooks), ng_httpd_path(r),
	                      *q ? "?" : "", q);
	size_t blen;
	const char *body = ng_httpd_body(r, &blen);
	struct nudge_inbound_request req = {
	    .struct_size = sizeof req,
	    .method = ng_httpd_method(r),
	    .path = path + nl,
	    .query = q,
	    .url = c->url,
	    .headers = c->h,
	    .nheaders = n,
	    .body = body,
	    .body_len = blen,
	};
	ASSERT_EQ_INT(ng_plugin_inbound(p, &req, on_hook_done, c), 0);
}

/* ---- set-up --------------------------------------------------------------------------------- */

static const char *bin_dir(void)
{
	static char dir[PATH_MAX];
	if (!dir[0]) {
		ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
		ASSERT(n > 0);
		dir[n] = '\0';
		*strrchr(dir, '/') = '\0';
	}
	return dir;
}

static int64_t standin_now(void *arg)
{
	NG_UNUSED(arg);
	return ng_clock_now_ms(clock_);
}

static char hook_url[200];
static const char *rig_token; /* the token the plugin is configured with; NULL: the right one */

/* Starts everything; `extra` adds config keys to the "fb" instance (Lua, ending in a comma). */
static void rig_start(const char *extra)
{
	ASSERT_EQ_INT(uv_loop_init(&loop), 0);
	closed = nevent = hook_answers = fail_events = 0;
	clock_ = ng_clock_virtual(&loop, T0);
	ASSERT_EQ_INT(ng_httpc_open(&httpc, &loop, NULL), 0);
	ASSERT_EQ_INT(ng_plugin_host_open(&host, &loop, clock_, NULL), 0);
	ng_plugin_host_set_httpc(host, httpc);
	struct ng_plugin_reports rx = {NULL, NULL, NULL, rx_event};
	ng_plugin_host_set_reports(host, &rx);
	struct ng_httpd_options ho = {.drain_timeout_ms = 100};
	ASSERT_EQ_INT(ng_httpd_open(&hooks, &loop, &ho), 0);
	ng_httpd_route(hooks, "POST", "/v1/webhooks/*", on_hook, NULL);
	ng_httpd_route(hooks, "GET", "/v1/webhooks/*", on_hook, NULL);
	ASSERT_EQ_INT(ng_httpd_listen(hooks, "127.0.0.1", 0), 0);
	snprintf(hook_url, sizeof hook_url, "http://127.0.0.1:%d/v1/webhooks/fb",
	         ng_httpd_port(hooks));
	struct gr_standin_options o = {.access_token = TOKEN,
	                               .app_secret = APP_SECRET,
	                               .page_id = "1234567890",
	                               .require_proof = 1,
	                               .now_ms = standin_now};
	ASSERT_EQ_INT(gr_standin_start(&api, &loop, &o), 0);

	snprintf(conf_path, sizeof conf_path, "/tmp/nudge-test-messenger-%d.conf.lua",
	         (int)getpid());
	FILE *f = fopen(conf_path, "w");
	ASSERT(f != NULL);
	fprintf(f,
	        "return {\n"
	        "  database = { conninfo = \"dbname=unused\" },\n"
	        "  paths = { plugins = \"%s/../plugins\" },\n"
	        "  channels = {\n"
	        "    { name = \"fb\", plugin = \"messenger\", config = {\n"
	        "      page_access_token = \"%s\", app_secret = \"%s\", verify_token = \"%s\",\n"
	        "      page_id = \"1234567890\", graph_version = \"v25.0\",\n"
	        "      base_url = \"http://127.0.0.1:%d/\",\n"
	        "      %s } },\n"
	        "  },\n"
	        "}\n",
	        bin_dir(), rig_token ? rig_token : TOKEN, APP_SECRET, VERIFY, gr_standin_port(api),
	        extra ? extra : "");
	rig_token = NULL;
	fclose(f);
	char err[1024];
	if (ng_conf_load(conf_path, &conf, err, sizeof err) != 0)
		ng_test_fail(__FILE__, __LINE__, "config: %s", err);
	ASSERT_EQ_INT(ng_plugin_host_load_conf(host, conf, NULL, NULL), 1);
}

static struct ng_plugin *fb(void)
{
	struct ng_plugin *p = ng_plugin_find(host, "fb");
	ASSERT(p != NULL);
	return p;
}

static void count_closed(void *arg)
{
	(*(int *)arg)++;
}

static void on_tick(uv_timer_t *t)
{
	NG_UNUSED(t);
}

static void run_until(const int *counter, int want, uint64_t max_ms)
{
	uv_timer_t tick;
	uv_timer_init(&loop, &tick);
	uv_timer_start(&tick, on_tick, 5, 5);
	uint64_t deadline = ng_test_now_ms() + max_ms;
	while (*counter < want && ng_test_now_ms() < deadline)
		uv_run(&loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	ASSERT_EQ_INT(*counter, want);
}

static void rig_stop(void)
{
	ng_plugin_host_close(host, count_closed, &closed);
	run_until(&closed, 1, 20000);
	gr_standin_stop(api, count_closed, &closed);
	run_until(&closed, 2, 10000);
	ng_httpd_close(hooks, count_closed, &closed);
	ng_httpc_close(httpc, count_closed, &closed);
	ng_clock_close(clock_, count_closed, &closed);
	uv_run(&loop, UV_RUN_DEFAULT);
	ASSERT_EQ_INT(closed, 5);
	ASSERT_EQ_INT(uv_loop_close(&loop), 0);
	ng_conf_free(conf);
	unlink(conf_path);
}

/* Posts signed events and waits for the webhook's answer; returns its HTTP status. */
static int post(const struct gr_event *ev, size_t n, int bad_signature)
{
	int before = hook_answers;
	size_t i = gr_standin_callbacks(api);
	ASSERT_EQ_INT(gr_standin_post_events(api, hook_url, ev, n, bad_signature), 0);
	run_until(&hook_answers, before + 1, 10000);
	while (gr_standin_callbacks_pending(api) > 0)
		uv_run(&loop, UV_RUN_ONCE);
	return gr_standin_callback_status(api, i);
}

/* A person writes to the page now (on the virtual clock). */
static void person_writes(const char *psid, const char *text)
{
	struct gr_event ev = {.psid = psid, .kind = "message", .text = text};
	ASSERT_EQ_INT(post(&ev, 1, 0), 200);
}

/* ---- sending -------------------------------------------------------------------------------- */

struct outcome {
	int calls, status, suppress, code;
	int64_t retry_after_ms;
	char provider_id[128], reason[400];
};

static int results;

static void on_result(void *arg, const struct nudge_send_result *r)
{
	struct outcome *o = arg;
	o->calls++;
	o->status = r->status;
	o->suppress = r->suppress;
	o->code = r->code;
	o->retry_after_ms = r->retry_after_ms;
	snprintf(o->provider_id, sizeof o->provider_id, "%s", r->provider_id ? r->provider_id : "");
	snprintf(o->reason, sizeof o->reason, "%s", r->reason ? r->reason : "");
	results++;
}

static struct nudge_message fb_message(int64_t id, const char *psid, int purpose, const char *body)
{
	struct nudge_message m = {
	    .struct_size = sizeof m,
	    .purpose = purpose,
	    .id = id,
	    .attempt = 1,
	    .key = "msg-key",
	    .channel = "messenger",
	    .recipient = psid,
	    .body = body,
	};
	return m;
}

/* Sends and waits for the one result. */
static void send_one(const struct nudge_message *m, struct outcome *o)
{
	results = 0;
	ASSERT_EQ_INT(ng_plugin_send(fb(), m, on_result, o), 0);
	ASSERT_EQ_INT(o->calls, 0); /* never inside send */
	run_until(&results, 1, 20000);
}

static void test_window_decides_promotions(void)
{
	rig_start(NULL);
	/* A writes at T0, B a day later; an hour after that A was seen 25 hours ago, B 1. */
	person_writes("1001", "hi, do you ship to Ireland?");
	ASSERT(ng_clock_advance(clock_, 24 * HOUR) >= 0);
	person_writes("1002", "is the sale still on?");
	ASSERT(ng_clock_advance(clock_, 1 * HOUR) >= 0);
	ASSERT_EQ_INT(nevent, 2);
	ASSERT_EQ_STR(events[0].name, "messenger.message");
	ASSERT_EQ_STR(events[0].address, "1001");
	ASSERT_EQ_INT(events[0].occurred_ms, T0);
	ASSERT(strncmp(events[0].dedupe, "m_", 2) == 0);
	ASSERT_CONTAINS(events[0].props, "\"text\":\"hi, do you ship to Ireland?\"");

	size_t requests = gr_standin_requests(api);
	struct nudge_message a = fb_message(1, "1001", NUDGE_PURPOSE_MARKETING, "20% off today");
	struct outcome oa = {0};
	send_one(&a, &oa);
	ASSERT_EQ_INT(oa.status, NUDGE_SEND_FAILED);
	ASSERT_EQ_INT(oa.suppress, 0);
	ASSERT_CONTAINS(oa.reason, "outside the 24-hour messaging window");
	ASSERT_CONTAINS(oa.reason, "25.0 hours ago");
	ASSERT_EQ_INT(gr_standin_requests(api), requests); /* refused without asking Graph */

	struct nudge_message b = fb_message(2, "1002", NUDGE_PURPOSE_MARKETING, "20% off today");
	struct outcome ob = {0};
	send_one(&b, &ob);
	ASSERT_EQ_INT(ob.status, NUDGE_SEND_SENT);
	ASSERT_EQ_STR(ob.provider_id, gr_standin_at(api, 0)->mid);
	ASSERT_EQ_STR(gr_standin_at(api, 0)->psid, "1002");
	ASSERT_EQ_STR(gr_standin_at(api, 0)->messaging_type, "UPDATE");
	ASSERT_EQ_STR(gr_standin_at(api, 0)->tag, "");
	ASSERT_EQ_STR(gr_standin_at(api, 0)->text, "20% off today");

	/* Outside the window a transactional update goes with its tag, and only with one. */
	struct nudge_header tag[] = {{"X-Messenger-Tag", "POST_PURCHASE_UPDATE"}};
	struct nudge_message t =
	    fb_message(3, "1001", NUDGE_PURPOSE_TRANSACTIONAL, "Your order #1001 has shipped");
	t.headers = tag;
	t.nheaders = 1;
	struct outcome ot = {0};
	send_one(&t, &ot);
	ASSERT_EQ_INT(ot.status, NUDGE_SEND_SENT);
	ASSERT_EQ_INT(gr_standin_count(api), 2);
	ASSERT_EQ_STR(gr_standin_at(api, 1)->messaging_type, "MESSAGE_TAG");
	ASSERT_EQ_STR(gr_standin_at(api, 1)->tag, "POST_PURCHASE_UPDATE");
	struct nudge_message u = t;
	u.headers = NULL;
	u.nheaders = 0;
	struct outcome ou = {0};
	send_one(&u, &ou);
	ASSERT_EQ_INT(ou.status, NUDGE_SEND_FAILED);
	ASSERT_CONTAINS(ou.reason, "carries no X-Messenger-Tag");
	/* A promotion may not hide behind a tag, and HUMAN_AGENT is not for automation. */
	struct nudge_message p = a;
	p.headers = tag;
	p.nheaders = 1;
	struct outcome op = {0};
	send_one(&p, &op);
	ASSERT_EQ_INT(op.status, NUDGE_SEND_FAILED);
	ASSERT_CONTAINS(op.reason, "promotional");
	struct nudge_header human[] = {{"X-Messenger-Tag", "HUMAN_AGENT"}};
	struct nudge_message h = t;
	h.headers = human;
	struct outcome oh = {0};
	send_one(&h, &oh);
	ASSERT_EQ_INT(oh.status, NUDGE_SEND_FAILED);
	ASSERT_CONTAINS(oh.reason, "HUMAN_AGENT is not a tag nudge may send with");
	ASSERT_EQ_INT(gr_standin_count(api), 2);
	ASSERT_EQ_INT(ng_plugin_metric(fb(), "outside_window"), 3);

	/* A writes again (non-ASCII, escaped in the signed body as Meta escapes it): the window
	 * opens, the promotion goes. */
	person_writes("1001", "ok danke sch\xc3\xb6n \xf0\x9f\x91\x8d");
	ASSERT_CONTAINS(events[nevent - 1].props, "sch\xc3\xb6n \xf0\x9f\x91\x8d");
	struct outcome oa2 = {0};
	send_one(&a, &oa2);
	ASSERT_EQ_INT(oa2.status, NUDGE_SEND_SENT);
	ASSERT_EQ_STR(gr_standin_at(api, 2)->psid, "1001");
	ASSERT_EQ_STR(gr_standin_last_refusal(api), "");
	rig_stop();
}

static void test_each_error_becomes_its_result(void)
{
	rig_start(RUNNING_ON_VALGRIND ? "timeout_ms = 8000," : "timeout_ms = 1000,");
	struct {
		const char *psid;
		int http, code, subcode;
	} script[] = {
	    {"2001", 400, 10, 2018278}, {"2002", 400, 551, 1545041}, {"2003", 400, 100, 2018001},
	    {"2004", 400, 4, 0},        {"2005", 429, 613, 0},       {"2006", 500, 2, 0},
	    {"2007", 500, 0, 0},        {"2008", 0, 0, 0},           {"2009", 400, 100, 0},
	};
	enum { N = 9 };
	struct gr_event ev[N];
	for (int i = 0; i < N; i++) {
		gr_standin_script(api, script[i].psid, script[i].http, script[i].code,
		                  script[i].subcode);
		ev[i] = (struct gr_event){.psid = script[i].psid, .kind = "message", .text = "hi"};
	}
	ASSERT_EQ_INT(post(ev, N, 0), 200); /* one batch: every one of them inside the window */
	ASSERT_EQ_INT(nevent, N);
	struct nudge_message m[N];
	struct outcome o[N];
	memset(o, 0, sizeof o);
	results = 0;
	for (int i = 0; i < N; i++) {
		m[i] = fb_message(10 + i, script[i].psid, NUDGE_PURPOSE_MARKETING, "Sale today");
		ASSERT_EQ_INT(ng_plugin_send(fb(), &m[i], on_result, &o[i]), 0);
	}
	run_until(&results, N, 30000);
	/* 10/2018278: Meta says the window is closed: failed, not suppressed, and believed. */
	ASSERT_EQ_INT(o[0].status, NUDGE_SEND_FAILED);
	ASSERT_EQ_INT(o[0].suppress, 0);
	ASSERT_EQ_INT(o[0].code, 10);
	ASSERT_CONTAINS(o[0].reason, "outside the messaging window (10/2018278)");
	/* 551: the person is not available; 100/2018001: no such user. */
	ASSERT_EQ_INT(o[1].status, NUDGE_SEND_FAILED);
	ASSERT_EQ_INT(o[1].code, 551);
	ASSERT_CONTAINS(o[1].reason, "not available");
	ASSERT_EQ_INT(o[2].status, NUDGE_SEND_FAILED);
	ASSERT_EQ_INT(o[2].code, 100);
	ASSERT_CONTAINS(o[2].reason, "no matching user");
	/* 4 and 613: rate limits, retried with backoff. */
	ASSERT_EQ_INT(o[3].status, NUDGE_SEND_RETRY);
	ASSERT_EQ_INT(o[3].retry_after_ms, 60000);
	ASSERT_EQ_INT(o[4].status, NUDGE_SEND_RETRY);
	ASSERT_EQ_INT(o[4].code, 613);
	ASSERT_EQ_INT(o[4].retry_after_ms, 60000);
	/* 2: temporary, retried. */
	ASSERT_EQ_INT(o[5].status, NUDGE_SEND_RETRY);
	ASSERT_EQ_INT(o[5].code, 2);
	ASSERT_EQ_INT(o[5].retry_after_ms, 5000);
	/* A 500 without Graph's envelope, and a request that never got an answer: Graph may
	 * have delivered it. */
	ASSERT_EQ_INT(o[6].status, NUDGE_SEND_AMBIGUOUS);
	ASSERT_EQ_INT(o[7].status, NUDGE_SEND_AMBIGUOUS);
	ASSERT_EQ_INT(o[7].code, -ETIMEDOUT);
	/* Another 100: the message is wrong, the person is not blamed. */
	ASSERT_EQ_INT(o[8].status, NUDGE_SEND_FAILED);
	ASSERT_EQ_INT(o[8].suppress, 0);

	/* The backoff grows with the attempt; code 2 gives up after transient_attempts. */
	struct nudge_message again = m[4];
	again.attempt = 3;
	struct outcome o4 = {0};
	send_one(&again, &o4);
	ASSERT_EQ_INT(o4.retry_after_ms, 240000);
	struct nudge_message last = m[5];
	last.attempt = 5;
	struct outcome o5 = {0};
	send_one(&last, &o5);
	ASSERT_EQ_INT(o5.status, NUDGE_SEND_FAILED);
	ASSERT_CONTAINS(o5.reason, "persisted over 5 attempts");

	/* After 2018278 the plugin no longer believes 2001 is inside the window. */
	size_t requests = gr_standin_requests(api);
	struct outcome o0 = {0};
	send_one(&m[0], &o0);
	ASSERT_EQ_INT(o0.status, NUDGE_SEND_FAILED);
	ASSERT_CONTAINS(o0.reason, "no interaction known");
	ASSERT_EQ_INT(gr_standin_requests(api), requests);
	struct nudge_health hl;
	ng_plugin_health(fb(), &hl);
	ASSERT_EQ_INT(hl.status, NUDGE_HEALTH_OK);
	rig_stop();
}

static void test_bad_token_holds_messages_and_goes_down(void)
{
	/* The token the stand-in knows is not the one configured: Graph answers 190. */
	rig_token = "EAAGexpiredtoken";
	rig_start(NULL);
	person_writes("3001", "hello");
	struct nudge_message m = fb_message(1, "3001", NUDGE_PURPOSE_MARKETING, "News");
	struct outcome o = {0};
	send_one(&m, &o);
	ASSERT_EQ_INT(o.status, NUDGE_SEND_RETRY); /* held, not failed */
	ASSERT_EQ_INT(o.code, 190);
	ASSERT_EQ_INT(o.retry_after_ms, 300000);
	ASSERT_CONTAINS(o.reason, "refused the page access token");
	struct nudge_health h;
	ng_plugin_health(fb(), &h);
	ASSERT_EQ_INT(h.status, NUDGE_HEALTH_DOWN);
	ASSERT_CONTAINS(h.detail, "Invalid OAuth access token");
	ASSERT_EQ_INT(gr_standin_count(api), 0);
	rig_stop();

	/* A token that expires while running: DOWN, and up again after the next success. */
	rig_start(NULL);
	person_writes("3002", "hello");
	person_writes("3003", "hello");
	gr_standin_script(api, "3002", 400, 190, 463);
	struct nudge_message m2 = fb_message(2, "3002", NUDGE_PURPOSE_MARKETING, "News");
	struct outcome o2 = {0};
	send_one(&m2, &o2);
	ASSERT_EQ_INT(o2.status, NUDGE_SEND_RETRY);
	ng_plugin_health(fb(), &h);
	ASSERT_EQ_INT(h.status, NUDGE_HEALTH_DOWN);
	ASSERT_CONTAINS(h.detail, "190/463");
	struct nudge_message m3 = fb_message(3, "3003", NUDGE_PURPOSE_MARKETING, "News");
	struct outcome o3 = {0};
	send_one(&m3, &o3);
	ASSERT_EQ_INT(o3.status, NUDGE_SEND_SENT);
	ng_plugin_health(fb(), &h);
	ASSERT_EQ_INT(h.status, NUDGE_HEALTH_OK);
	rig_stop();
}

/* ---- the webhook ---------------------------------------------------------------------------- */

/* A webhook answer taken directly from ng_plugin_inbound. */
struct seen {
	int calls, status;
};

static void on_seen(void *arg, const struct nudge_inbound_response *res)
{
	struct seen *seen = arg;
	seen->calls++;
	seen->status = res->status;
}

static void test_subscription_verification(void)
{
	rig_start(NULL);
	ASSERT_EQ_INT(gr_standin_verify(api, hook_url, VERIFY, "1158201444"), 0);
	ASSERT_EQ_INT(gr_standin_verify(api, hook_url, "not-the-token", "1158201445"), 0);
	char *other = ng_xasprintf("%s?hub.mode=unsubscribe&hub.verify_token=%s&hub.challenge=7",
	                           hook_url, VERIFY);
	run_until(&hook_answers, 2, 10000);
	while (gr_standin_callbacks_pending(api) > 0)
		uv_run(&loop, UV_RUN_ONCE);
	ASSERT_EQ_INT(gr_standin_callback_status(api, 0), 200);
	ASSERT_EQ_STR(gr_standin_callback_body(api, 0), "1158201444");
	ASSERT_EQ_INT(gr_standin_callback_status(api, 1), 403);
	ASSERT(strstr(gr_standin_callback_body(api, 1), "1158201445") == NULL);
	/* hub.mode other than subscribe, and no challenge at all. */
	struct nudge_inbound_request req = {.struct_size = sizeof req,
	                                    .method = "GET",
	                                    .path = "",
	                                    .query = strchr(other, '?') + 1,
	                                    .url = other};
	struct seen seen = {0};
	ASSERT_EQ_INT(ng_plugin_inbound(fb(), &req, on_seen, &seen), 0);
	uv_run(&loop, UV_RUN_NOWAIT);
	ASSERT_EQ_INT(seen.status, 403);
	req.query = "hub.mode=subscribe&hub.verify_token=" VERIFY;
	ASSERT_EQ_INT(ng_plugin_inbound(fb(), &req, on_seen, &seen), 0);
	uv_run(&loop, UV_RUN_NOWAIT);
	ASSERT_EQ_INT(seen.calls, 2);
	ASSERT_EQ_INT(seen.status, 403);
	ASSERT_EQ_INT(ng_plugin_metric(fb(), "verify_failures"), 3);
	free(other);
	rig_stop();
}

static void test_bad_signature_changes_nothing(void)
{
	rig_start(NULL);
	struct gr_event ev = {.psid = "4001", .kind = "message", .text = "let me in"};
	ASSERT_EQ_INT(post(&ev, 1, 1), 403);
	ASSERT_EQ_INT(nevent, 0);
	/* Hand-made: no signature, a signature over another body, a truncated one. */
	const char *body = "{\"object\":\"page\",\"entry\":[{\"id\":\"1234567890\",\"time\":1,"
	                   "\"messaging\":[{\"sender\":{\"id\":\"4001\"},\"recipient\":{\"id\":"
	                   "\"1234567890\"},\"timestamp\":1,\"message\":{\"mid\":\"m_x\",\"text\":"
	                   "\"hi\"}}]}]}";
	char good[80], other[80];
	gr_standin_sign(APP_SECRET, body, strlen(body), good);
	gr_standin_sign(APP_SECRET, body, strlen(body) - 1, other);
	char truncated[80];
	snprintf(truncated, sizeof truncated, "%.*s", 40, good);
	char wrong_key[80];
	gr_standin_sign("another-secret", body, strlen(body), wrong_key);
	const char *sigs[] = {NULL, other, truncated, wrong_key};
	for (size_t i = 0; i < NG_ARRAY_LEN(sigs); i++) {
		struct nudge_header h[] = {{"X-Hub-Signature-256", sigs[i]}};
		struct nudge_inbound_request req = {.struct_size = sizeof req,
		                                    .method = "POST",
		                                    .path = "",
		                                    .query = "",
		                                    .url = hook_url,
		                                    .headers = h,
		                                    .nheaders = sigs[i] ? 1 : 0,
		                                    .body = body,
		                                    .body_len = strlen(body)};
		struct seen seen = {0};
		ASSERT_EQ_INT(ng_plugin_inbound(fb(), &req, on_seen, &seen), 0);
		uv_run(&loop, UV_RUN_NOWAIT);
		ASSERT_EQ_INT(seen.calls, 1);
		ASSERT_EQ_INT(seen.status, 403);
	}
	ASSERT_EQ_INT(nevent, 0);
	ASSERT_EQ_INT(ng_plugin_metric(fb(), "signature_failures"), 5);
	/* Nothing opened 4001's window. */
	struct nudge_message m = fb_message(1, "4001", NUDGE_PURPOSE_MARKETING, "Deal");
	struct outcome o = {0};
	send_one(&m, &o);
	ASSERT_EQ_INT(o.status, NUDGE_SEND_FAILED);
	ASSERT_CONTAINS(o.reason, "no interaction known");
	/* The same body correctly signed (hex in upper case is fine) is accepted. */
	for (char *c = good + 7; *c; c++)
		if (*c >= 'a' && *c <= 'f')
			*c = (char)(*c - 'a' + 'A');
	struct nudge_header h[] = {{"x-hub-signature-256", good}};
	struct nudge_inbound_request req = {.struct_size = sizeof req,
	                                    .method = "POST",
	                                    .path = "",
	                                    .query = "",
	                                    .url = hook_url,
	                                    .headers = h,
	                                    .nheaders = 1,
	                                    .body = body,
	                                    .body_len = strlen(body)};
	struct seen seen = {0};
	ASSERT_EQ_INT(ng_plugin_inbound(fb(), &req, on_seen, &seen), 0);
	uv_run(&loop, UV_RUN_NOWAIT);
	ASSERT_EQ_INT(seen.status, 200);
	ASSERT_EQ_INT(nevent, 1);
	rig_stop();
}

static void test_events_and_links(void)
{
	rig_start(NULL);
	struct gr_event ev[] = {
	    {.psid = "5001",
	     .kind = "postback",
	     .text = "Get Started",
	     .payload = "GET_STARTED",
	     .ref = "cust-7f3a9c"},
	    {.psid = "5002", .kind = "referral", .ref = "cust-b81d20"},
	    {.psid = "5003", .kind = "message", .text = "  Alice.Smith@Example.org "},
	    {.psid = "5004", .kind = "message", .text = "+1 (555) 123-4567", .payload = NULL},
	    {.psid = "5005",
	     .kind = "message",
	     .text = "here you go",
	     .payload = "bob@example.org"},
	    {.psid = "5006", .kind = "echo", .text = "we sent this"},
	    {.psid = NULL, .kind = "optin", .ref = "checkbox"},
	    {.psid = "5007", .kind = "read"},
	    {.psid = "5008", .kind = "optin", .ref = "cust-0c11ee"},
	    {.psid = "5009", .kind = "message", .text = "call me at 5551234567 maybe"},
	};
	ASSERT_EQ_INT(post(ev, NG_ARRAY_LEN(ev), 0), 200);
	ASSERT_EQ_INT(nevent, 7); /* not the echo, the user_ref opt-in or the read */
	ASSERT_EQ_STR(events[0].name, "messenger.message");
	ASSERT_CONTAINS(events[0].props, "\"kind\":\"postback\"");
	ASSERT_CONTAINS(events[0].props, "\"payload\":\"GET_STARTED\"");
	ASSERT_EQ_STR(events[0].ref, "cust-7f3a9c");
	ASSERT_EQ_STR(events[1].name, "messenger.referral");
	ASSERT_EQ_STR(events[1].ref, "cust-b81d20");
	ASSERT_EQ_STR(events[2].email, "Alice.Smith@Example.org");
	ASSERT_EQ_STR(events[2].phone, "");
	ASSERT_EQ_STR(events[3].phone, "+1 (555) 123-4567");
	ASSERT_EQ_STR(events[4].email, "bob@example.org"); /* a user_email quick reply */
	ASSERT_EQ_STR(events[5].name, "messenger.optin");
	ASSERT_EQ_STR(events[5].address, "5008");
	ASSERT_EQ_STR(events[5].ref, "cust-0c11ee");
	ASSERT_EQ_STR(events[6].address, "5009"); /* a number inside a sentence is not a link */
	ASSERT_EQ_STR(events[6].phone, "");
	ASSERT_EQ_STR(events[6].email, "");
	ASSERT_EQ_INT(ng_plugin_metric(fb(), "links"), 6);

	/* The echo and the read opened no window; the postback did. */
	struct nudge_message m6 = fb_message(1, "5006", NUDGE_PURPOSE_MARKETING, "Deal");
	struct outcome o6 = {0};
	send_one(&m6, &o6);
	ASSERT_EQ_INT(o6.status, NUDGE_SEND_FAILED);
	struct nudge_message m1 = fb_message(2, "5001", NUDGE_PURPOSE_MARKETING, "Welcome!");
	struct outcome o1 = {0};
	send_one(&m1, &o1);
	ASSERT_EQ_INT(o1.status, NUDGE_SEND_SENT);

	/* When nudge cannot record the events Meta gets a 500 and delivers them again. */
	fail_events = 1;
	struct gr_event one = {.psid = "5010", .kind = "message", .text = "hello?"};
	ASSERT_EQ_INT(post(&one, 1, 0), 500);
	rig_stop();
}

static void test_button_template_and_bad_messages(void)
{
	rig_start(NULL);
	person_writes("6001", "where is my parcel?");
	struct nudge_header b[] = {
	    {"X-Messenger-Button", "Track parcel | https://shop.example/t/1"},
	    {"X-Campaign", "shipping"},
	    {"X-Messenger-Button", "Contact us|https://shop.example/help"}};
	struct nudge_message m =
	    fb_message(1, "6001", NUDGE_PURPOSE_TRANSACTIONAL, "Your parcel is on its way");
	m.headers = b;
	m.nheaders = 3;
	struct outcome o = {0};
	send_one(&m, &o);
	ASSERT_EQ_INT(o.status, NUDGE_SEND_SENT);
	ASSERT_EQ_INT(gr_standin_at(api, 0)->nbuttons, 2);
	ASSERT_EQ_STR(gr_standin_at(api, 0)->text, "Your parcel is on its way");

	struct nudge_header four[] = {{"X-Messenger-Button", "A|https://a.example"},
	                              {"X-Messenger-Button", "B|https://b.example"},
	                              {"X-Messenger-Button", "C|https://c.example"},
	                              {"X-Messenger-Button", "D|https://d.example"}};
	struct nudge_message m4 = m;
	m4.headers = four;
	m4.nheaders = 4;
	struct outcome o4 = {0};
	send_one(&m4, &o4);
	ASSERT_EQ_INT(o4.status, NUDGE_SEND_FAILED);
	ASSERT_CONTAINS(o4.reason, "at most 3");
	struct nudge_message bad = fb_message(2, "not-a-psid", NUDGE_PURPOSE_MARKETING, "x");
	struct outcome ob = {0};
	send_one(&bad, &ob);
	ASSERT_EQ_INT(ob.status, NUDGE_SEND_FAILED);
	ASSERT_CONTAINS(ob.reason, "not a page-scoped id");
	struct nudge_message empty = fb_message(3, "6001", NUDGE_PURPOSE_MARKETING, "");
	struct outcome oe = {0};
	send_one(&empty, &oe);
	ASSERT_EQ_INT(oe.status, NUDGE_SEND_FAILED);
	ASSERT_EQ_INT(gr_standin_requests(api), 1);
	rig_stop();
}

/* ---- the stand-in refuses what Graph refuses ------------------------------------------------ */

static int raw_status, raw_done;
static char raw_body[512];

static void on_raw(void *arg, const struct ng_httpc_response *r)
{
	NG_UNUSED(arg);
	raw_status = r->status;
	snprintf(raw_body, sizeof raw_body, "%s", r->error ? "" : r->body);
	raw_done++;
}

static void raw_post(const char *query, const char *body)
{
	char *url =
	    ng_xasprintf("http://127.0.0.1:%d/v25.0/me/messages?%s", gr_standin_port(api), query);
	struct ng_httpc_header h[] = {{"Content-Type", "application/json"}};
	struct ng_httpc_request q = {.method = "POST",
	                             .url = url,
	                             .headers = h,
	                             .nheaders = 1,
	                             .body = body,
	                             .body_len = strlen(body)};
	int before = raw_done;
	ASSERT_EQ_INT(ng_httpc_request(httpc, &q, on_raw, NULL), 0);
	run_until(&raw_done, before + 1, 10000);
	free(url);
}

static void test_standin_validates_like_graph(void)
{
	rig_start(NULL);
	char proof[80];
	gr_standin_sign(APP_SECRET, TOKEN, strlen(TOKEN), proof);
	char *ok = ng_xasprintf("access_token=%s&appsecret_proof=%s", TOKEN, proof + 7);
	const char *msg = "{\"recipient\":{\"id\":\"7001\"},\"messaging_type\":\"MESSAGE_TAG\","
	                  "\"tag\":\"ACCOUNT_UPDATE\",\"message\":{\"text\":\"hi\"}}";
	raw_post(ok, msg);
	ASSERT_EQ_INT(raw_status, 200);
	ASSERT_CONTAINS(raw_body, "\"recipient_id\":\"7001\"");
	raw_post("access_token=" TOKEN, msg);
	ASSERT_EQ_INT(raw_status, 400);
	ASSERT_CONTAINS(raw_body, "appsecret_proof");
	char *badproof = ng_xasprintf("access_token=%s&appsecret_proof=%064d", TOKEN, 0);
	raw_post(badproof, msg);
	ASSERT_CONTAINS(raw_body, "Invalid appsecret_proof");
	raw_post("access_token=nope", msg);
	ASSERT_CONTAINS(raw_body, "\"code\":190");
	raw_post(ok, "{\"messaging_type\":\"UPDATE\",\"message\":{\"text\":\"hi\"}}");
	ASSERT_CONTAINS(raw_body, "recipient is required");
	raw_post(ok, "{\"recipient\":{\"id\":\"7001\"},\"message\":{\"text\":\"hi\"}}");
	ASSERT_CONTAINS(raw_body, "messaging_type is required");
	raw_post(ok, "{\"recipient\":{\"id\":\"7001\"},\"messaging_type\":\"MESSAGE_TAG\","
	             "\"message\":{\"text\":\"hi\"}}");
	ASSERT_CONTAINS(raw_body, "Tag is required");
	raw_post(ok, "{\"recipient\":{\"id\":\"7001\"},\"messaging_type\":\"UPDATE\"}");
	ASSERT_CONTAINS(raw_body, "Must send either message or state");
	/* UPDATE to someone never seen: the stand-in's own window check. */
	raw_post(ok, "{\"recipient\":{\"id\":\"7001\"},\"messaging_type\":\"UPDATE\","
	             "\"message\":{\"text\":\"hi\"}}");
	ASSERT_CONTAINS(raw_body, "\"error_subcode\":2018278");
	ASSERT_EQ_INT(gr_standin_count(api), 1);
	free(ok);
	free(badproof);
	rig_stop();
}

NG_TESTS(NG_TEST(test_window_decides_promotions), NG_TEST(test_each_error_becomes_its_result),
         NG_TEST(test_bad_token_holds_messages_and_goes_down),
         NG_TEST(test_subscription_verification), NG_TEST(test_bad_signature_changes_nothing),
         NG_TEST(test_events_and_links), NG_TEST(test_button_template_and_bad_messages),
         NG_TEST(test_standin_validates_like_graph))
