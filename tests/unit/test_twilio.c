/*
 * test_twilio.c — the Twilio SMS plugin against tests/support/twilio_standin.c, all on one loop:
 * the plugin host with the shared HTTP client, the stand-in as the API, and a webhook route on
 * nudge's HTTP server that hands /v1/webhooks/<instance> to the plugin's inbound (what the daemon's
 * route does). Each API outcome becomes its send result (201, 400 with its codes, 429 with
 * Retry-After, 401, 500, a hang, a refused connection); reconcile finds or misses a message the
 * API may have taken; status callbacks are signed (good, bad, with and without the port: 403 and
 * no change) and applied once and in order; STOP/START/HELP and every inbound message as an
 * event; segment counting in GSM-7 and UCS-2; the per-sender rate.
 */
#include "clock.h"
#include "config.h"
#include "httpc.h"
#include "httpd.h"
#include "ng.h"
#include "plugin_host.h"
#include "testlib.h"
#include "support/twilio_standin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <valgrind/valgrind.h>

#define ACCOUNT "AC0123456789abcdef0123456789abcdef"
#define TOKEN   "test-auth-token-12345"

static uv_loop_t loop;
static struct ng_clock *clock_;
static struct ng_httpc *httpc;
static struct ng_plugin_host *host;
static struct ng_httpd *hooks;
static struct tw_standin *api;
static struct ng_conf *conf;
static char conf_path[256];
static int closed;

/* ---- what the plugin reported -------------------------------------------------------------- */

struct status_rec {
	int status, error_code, suppress;
	char sid[40], key[64], word[24];
};
struct consent_rec {
	int granted;
	char address[24], keyword[24], source[64];
};
struct event_rec {
	char name[32], address[24], dedupe[40], props[512];
};
static struct status_rec statuses[64];
static struct consent_rec consents[64];
static struct event_rec events[64];
static int nstatus, nconsent, nevent;

static int rx_status(void *ctx, struct ng_plugin *p, const struct nudge_status_report *r,
                     void (*done)(void *, int), void *arg)
{
	NG_UNUSED(ctx);
	NG_UNUSED(p);
	ASSERT(nstatus < 64);
	struct status_rec *s = &statuses[nstatus++];
	s->status = r->status;
	s->error_code = r->error_code;
	s->suppress = r->suppress;
	snprintf(s->sid, sizeof s->sid, "%s", r->provider_id);
	snprintf(s->key, sizeof s->key, "%s", r->message_key ? r->message_key : "");
	snprintf(s->word, sizeof s->word, "%s", r->provider_status ? r->provider_status : "");
	done(arg, 0);
	return 0;
}

static int rx_consent(void *ctx, struct ng_plugin *p, const struct nudge_consent_report *r,
                      void (*done)(void *, int), void *arg)
{
	NG_UNUSED(ctx);
	NG_UNUSED(p);
	ASSERT(nconsent < 64);
	struct consent_rec *c = &consents[nconsent++];
	ASSERT_EQ_STR(r->channel, "sms");
	c->granted = r->granted;
	snprintf(c->address, sizeof c->address, "%s", r->address);
	snprintf(c->keyword, sizeof c->keyword, "%s", r->keyword ? r->keyword : "");
	snprintf(c->source, sizeof c->source, "%s", r->source ? r->source : "");
	done(arg, 0);
	return 0;
}

static int rx_event(void *ctx, struct ng_plugin *p, const struct nudge_event_report *r,
                    void (*done)(void *, int), void *arg)
{
	NG_UNUSED(ctx);
	NG_UNUSED(p);
	ASSERT(nevent < 64);
	struct event_rec *e = &events[nevent++];
	snprintf(e->name, sizeof e->name, "%s", r->name);
	snprintf(e->address, sizeof e->address, "%s", r->address);
	snprintf(e->dedupe, sizeof e->dedupe, "%s", r->dedupe_key ? r->dedupe_key : "");
	snprintf(e->props, sizeof e->props, "%s", r->properties_json ? r->properties_json : "");
	done(arg, 0);
	return 0;
}

/* ---- the webhook route: /v1/webhooks/<instance>[/more] → the plugin's inbound ------------- */

struct hook_call {
	struct ng_httpd_req *r;
	struct nudge_header *h;
	char *url;
};

static int hook_answers, hook_last_status;

static void on_hook_done(void *arg, const struct nudge_inbound_response *res)
{
	struct hook_call *c = arg;
	hook_answers++;
	hook_last_status = res->status;
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

static int hooks_port(void)
{
	return ng_httpd_port(hooks);
}

/* Starts everything; `extra` adds config keys to the "sms" instance (Lua, ending in a comma). */
static void rig_start(const struct tw_standin_options *so, const char *extra)
{
	ASSERT_EQ_INT(uv_loop_init(&loop), 0);
	closed = nstatus = nconsent = nevent = hook_answers = hook_last_status = 0;
	clock_ = ng_clock_real(&loop);
	ASSERT_EQ_INT(ng_httpc_open(&httpc, &loop, NULL), 0);
	ASSERT_EQ_INT(ng_plugin_host_open(&host, &loop, clock_, NULL), 0);
	ng_plugin_host_set_httpc(host, httpc);
	struct ng_plugin_reports rx = {NULL, rx_status, rx_consent, rx_event};
	ng_plugin_host_set_reports(host, &rx);
	struct ng_httpd_options ho = {.drain_timeout_ms = 100};
	ASSERT_EQ_INT(ng_httpd_open(&hooks, &loop, &ho), 0);
	ng_httpd_route(hooks, "POST", "/v1/webhooks/*", on_hook, NULL);
	ASSERT_EQ_INT(ng_httpd_listen(hooks, "127.0.0.1", 0), 0);
	struct tw_standin_options o = so ? *so : (struct tw_standin_options){0};
	o.account_sid = ACCOUNT;
	o.auth_token = TOKEN;
	ASSERT_EQ_INT(tw_standin_start(&api, &loop, &o), 0);

	snprintf(conf_path, sizeof conf_path, "/tmp/nudge-test-twilio-%d.conf.lua", (int)getpid());
	FILE *f = fopen(conf_path, "w");
	ASSERT(f != NULL);
	fprintf(f,
	        "return {\n"
	        "  database = { conninfo = \"dbname=unused\" },\n"
	        "  paths = { plugins = \"%s/../plugins\" },\n"
	        "  channels = {\n"
	        "    { name = \"sms\", plugin = \"twilio\", config = {\n"
	        "      account_sid = \"%s\", auth_token = \"%s\", from = \"+15005550006\",\n"
	        "      base_url = \"http://127.0.0.1:%d\", default_country = \"1\",\n"
	        "      status_callback_url = \"http://127.0.0.1:%d/v1/webhooks/sms\",\n"
	        "      %s } },\n"
	        "  },\n"
	        "}\n",
	        bin_dir(), ACCOUNT, TOKEN, tw_standin_port(api), hooks_port(),
	        extra ? extra : "rate_per_second = 0,");
	fclose(f);
	char err[1024];
	if (ng_conf_load(conf_path, &conf, err, sizeof err) != 0)
		ng_test_fail(__FILE__, __LINE__, "config: %s", err);
	ASSERT_EQ_INT(ng_plugin_host_load_conf(host, conf, NULL, NULL), 1);
}

static struct ng_plugin *sms(void)
{
	struct ng_plugin *p = ng_plugin_find(host, "sms");
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

/* Runs for ms, whatever happens. */
static void run_for(uint64_t ms)
{
	uv_timer_t tick;
	uv_timer_init(&loop, &tick);
	uv_timer_start(&tick, on_tick, 5, 5);
	uint64_t deadline = ng_test_now_ms() + ms;
	while (ng_test_now_ms() < deadline)
		uv_run(&loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
}

static void rig_stop(void)
{
	ng_plugin_host_close(host, count_closed, &closed);
	run_until(&closed, 1, 20000);
	tw_standin_stop(api, count_closed, &closed);
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

/* ---- sending -------------------------------------------------------------------------------- */

struct outcome {
	int calls, status, suppress, code, segments;
	int64_t retry_after_ms;
	char provider_id[64], reason[300], encoding[16];
	uint64_t at_ms;
};

static int results;

static void on_result(void *arg, const struct nudge_send_result *r)
{
	struct outcome *o = arg;
	o->calls++;
	o->status = r->status;
	o->suppress = r->suppress;
	o->code = r->code;
	o->segments = r->segments;
	o->retry_after_ms = r->retry_after_ms;
	o->at_ms = ng_test_now_ms();
	snprintf(o->provider_id, sizeof o->provider_id, "%s", r->provider_id ? r->provider_id : "");
	snprintf(o->reason, sizeof o->reason, "%s", r->reason ? r->reason : "");
	snprintf(o->encoding, sizeof o->encoding, "%s", r->encoding ? r->encoding : "");
	results++;
}

static struct nudge_message sms_message(int64_t id, const char *to, const char *body)
{
	struct nudge_message m = {
	    .struct_size = sizeof m,
	    .purpose = NUDGE_PURPOSE_MARKETING,
	    .id = id,
	    .attempt = 1,
	    .key = "msg-key",
	    .channel = "sms",
	    .recipient = to,
	    .body = body,
	};
	return m;
}

static void send_sms(const struct nudge_message *m, struct outcome *o)
{
	ASSERT_EQ_INT(ng_plugin_send(sms(), m, on_result, o), 0);
	ASSERT_EQ_INT(o->calls, 0); /* never inside send */
}

static void test_sent_with_sid_segments_and_encoding(void)
{
	rig_start(NULL, NULL);
	struct nudge_message m1 = sms_message(1, "+15551230001", "Hello from the shop"),
	                     m2 = sms_message(2, "(555) 123-0002", "Hi again");
	m2.key = "key two&more";
	struct outcome o1 = {0}, o2 = {0};
	results = 0;
	send_sms(&m1, &o1);
	send_sms(&m2, &o2);
	run_until(&results, 2, 10000);
	ASSERT_EQ_INT(o1.status, NUDGE_SEND_SENT);
	ASSERT(strncmp(o1.provider_id, "SM", 2) == 0 && strlen(o1.provider_id) == 34);
	ASSERT_EQ_INT(o1.segments, 1);
	ASSERT_EQ_STR(o1.encoding, "GSM-7");
	ASSERT_EQ_INT(o1.code, 201);
	ASSERT_EQ_INT(o2.status, NUDGE_SEND_SENT);
	ASSERT_EQ_INT(tw_standin_count(api), 2);
	const struct tw_standin_msg *a = tw_standin_at(api, 0), *b = tw_standin_at(api, 1);
	if (strcmp(a->to, "+15551230001") != 0) {
		const struct tw_standin_msg *t = a;
		a = b;
		b = t;
	}
	ASSERT_EQ_STR(a->to, "+15551230001");
	ASSERT_EQ_STR(a->from, "+15005550006");
	ASSERT_EQ_STR(a->body, "Hello from the shop");
	ASSERT_EQ_STR(a->sid, o1.provider_id);
	char want[200];
	snprintf(want, sizeof want, "http://127.0.0.1:%d/v1/webhooks/sms?m=msg-key", hooks_port());
	ASSERT_EQ_STR(a->status_callback, want);
	/* A national number is sent in E.164; the key is URL-encoded into the callback URL. */
	ASSERT_EQ_STR(b->to, "+15551230002");
	ASSERT_CONTAINS(b->status_callback, "?m=key%20two%26more");
	ASSERT_EQ_STR(tw_standin_last_refusal(api), "");
	rig_stop();
}

static void test_each_outcome_becomes_its_result(void)
{
	/* The hang ends at timeout_ms; under valgrind everything else needs longer than 1 s. */
	rig_start(NULL, RUNNING_ON_VALGRIND ? "rate_per_second = 0, timeout_ms = 8000,"
	                                    : "rate_per_second = 0, timeout_ms = 1000,");
	tw_standin_script(api, "+15550000001", 400, 21610, 0, 0, 0);
	tw_standin_script(api, "+15550000002", 400, 21211, 0, 0, 0);
	tw_standin_script(api, "+15550000003", 400, 21608, 0, 0, 0);
	tw_standin_script(api, "+15550000004", 429, 20429, 3, 0, 0);
	tw_standin_script(api, "+15550000005", 500, 20500, 0, 0, 0);
	tw_standin_script(api, "+15550000006", 0, 0, 0, 0, 0);
	tw_standin_script(api, "+15550000007", 503, 0, 0, 0, 0);
	const char *to[] = {"+15550000001", "+15550000002", "+15550000003", "+15550000004",
	                    "+15550000005", "+15550000006", "+15550000007", "not a number"};
	struct nudge_message m[8];
	struct outcome o[8];
	memset(o, 0, sizeof o);
	results = 0;
	for (int i = 0; i < 8; i++) {
		m[i] = sms_message(10 + i, to[i], "Sale today");
		send_sms(&m[i], &o[i]);
	}
	run_until(&results, 8, 20000);
	/* 21610: the recipient replied STOP: failed, suppressed, consent withdrawn. */
	ASSERT_EQ_INT(o[0].status, NUDGE_SEND_FAILED);
	ASSERT_EQ_INT(o[0].suppress, 1);
	ASSERT_EQ_INT(o[0].code, 21610);
	ASSERT_EQ_INT(nconsent, 1);
	ASSERT_EQ_INT(consents[0].granted, 0);
	ASSERT_EQ_STR(consents[0].address, "+15550000001");
	ASSERT_EQ_STR(consents[0].source, "provider error 21610");
	/* 21211: an invalid number, for good. */
	ASSERT_EQ_INT(o[1].status, NUDGE_SEND_FAILED);
	ASSERT_EQ_INT(o[1].suppress, 1);
	ASSERT_EQ_INT(o[1].code, 21211);
	/* Another 4xx: failed, but the number is not the problem. */
	ASSERT_EQ_INT(o[2].status, NUDGE_SEND_FAILED);
	ASSERT_EQ_INT(o[2].suppress, 0);
	/* 429: retry, honouring Retry-After. */
	ASSERT_EQ_INT(o[3].status, NUDGE_SEND_RETRY);
	ASSERT_EQ_INT(o[3].retry_after_ms, 3000);
	/* 5xx and a timeout after the request went out: ambiguous, never a blind retry. */
	ASSERT_EQ_INT(o[4].status, NUDGE_SEND_AMBIGUOUS);
	ASSERT_EQ_INT(o[5].status, NUDGE_SEND_AMBIGUOUS);
	ASSERT_EQ_INT(o[5].code, -ETIMEDOUT);
	ASSERT_EQ_INT(o[6].status, NUDGE_SEND_AMBIGUOUS);
	/* A number that cannot be written in E.164 never reaches Twilio. */
	ASSERT_EQ_INT(o[7].status, NUDGE_SEND_FAILED);
	ASSERT_EQ_INT(o[7].suppress, 1);
	ASSERT_EQ_INT(tw_standin_requests(api), 7);
	struct nudge_health h;
	ng_plugin_health(sms(), &h);
	ASSERT_EQ_INT(h.status, NUDGE_HEALTH_DEGRADED); /* three ambiguous in a row */
	rig_stop();
}

static void test_refused_credentials_and_connection(void)
{
	rig_start(NULL, "rate_per_second = 0, auth_token = \"wrong\",");
	struct nudge_message m = sms_message(1, "+15551230001", "x");
	struct outcome o = {0};
	results = 0;
	send_sms(&m, &o);
	run_until(&results, 1, 10000);
	ASSERT_EQ_INT(o.status, NUDGE_SEND_RETRY);
	ASSERT_EQ_INT(o.code, 20003);
	ASSERT_EQ_INT(o.retry_after_ms, 60000);
	struct nudge_health h;
	ng_plugin_health(sms(), &h);
	ASSERT_EQ_INT(h.status, NUDGE_HEALTH_DOWN);
	rig_stop();

	/* Nothing listening: the request never left, so a plain retry is safe. */
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	ASSERT_EQ_INT(bind(s, (struct sockaddr *)&a, sizeof a), 0);
	socklen_t len = sizeof a;
	getsockname(s, (struct sockaddr *)&a, &len);
	close(s);
	char extra[128];
	snprintf(extra, sizeof extra, "rate_per_second = 0, base_url = \"http://127.0.0.1:%d\",",
	         ntohs(a.sin_port));
	rig_start(NULL, extra);
	struct outcome o2 = {0};
	results = 0;
	send_sms(&m, &o2);
	run_until(&results, 1, 10000);
	ASSERT_EQ_INT(o2.status, NUDGE_SEND_RETRY);
	ASSERT_CONTAINS(o2.reason, "could not reach Twilio");
	rig_stop();
}

static void test_reconcile_looks_before_resending(void)
{
	rig_start(NULL, NULL);
	/* Twilio took the first and lost the answer; the second it never took. */
	tw_standin_script(api, "+15550000011", 500, 20500, 0, 1, 0);
	tw_standin_script(api, "+15550000012", 500, 20500, 0, 0, 0);
	struct nudge_message m1 = sms_message(1, "+15550000011", "Your code is 1234"),
	                     m2 = sms_message(2, "+15550000012", "Your code is 5678");
	struct outcome o1 = {0}, o2 = {0};
	results = 0;
	send_sms(&m1, &o1);
	send_sms(&m2, &o2);
	run_until(&results, 2, 10000);
	ASSERT_EQ_INT(o1.status, NUDGE_SEND_AMBIGUOUS);
	ASSERT_EQ_INT(o2.status, NUDGE_SEND_AMBIGUOUS);
	ASSERT_EQ_INT(tw_standin_count(api), 1);
	ASSERT(ng_plugin_can_reconcile(sms()));
	struct outcome r1 = {0}, r2 = {0};
	results = 0;
	ASSERT_EQ_INT(ng_plugin_reconcile(sms(), &m1, on_result, &r1), 0);
	ASSERT_EQ_INT(ng_plugin_reconcile(sms(), &m2, on_result, &r2), 0);
	run_until(&results, 2, 10000);
	ASSERT_EQ_INT(r1.status, NUDGE_SEND_SENT);
	ASSERT_EQ_STR(r1.provider_id, tw_standin_at(api, 0)->sid);
	ASSERT_EQ_INT(r2.status, NUDGE_SEND_RETRY);
	ASSERT_CONTAINS(r2.reason, "safe to send again");
	ASSERT_EQ_INT(tw_standin_count(api), 1); /* looking sent nothing */
	rig_stop();
}

/* ---- webhooks ------------------------------------------------------------------------------- */

static void test_status_callbacks_apply_once_and_in_order(void)
{
	struct tw_standin_options so = {.auto_callbacks = 1, .callback_delay_ms = 5};
	rig_start(&so, NULL);
	tw_standin_script(api, "+15550000022", 201, 0, 0, 0, 30005);
	struct nudge_message m1 = sms_message(1, "+15550000021", "One"),
	                     m2 = sms_message(2, "+15550000022", "Two");
	m2.key = "key-2";
	struct outcome o1 = {0}, o2 = {0};
	results = 0;
	send_sms(&m1, &o1);
	send_sms(&m2, &o2);
	run_until(&results, 2, 10000);
	run_until(&nstatus, 4, 10000); /* sent and a final state for each */
	int delivered = -1, undelivered = -1;
	for (int i = 0; i < nstatus; i++) {
		if (statuses[i].status == NUDGE_DELIVERY_DELIVERED)
			delivered = i;
		if (statuses[i].status == NUDGE_DELIVERY_UNDELIVERED)
			undelivered = i;
	}
	ASSERT(delivered >= 0 && undelivered >= 0);
	ASSERT_EQ_STR(statuses[delivered].sid, o1.provider_id);
	ASSERT_EQ_STR(statuses[delivered].key, "msg-key");
	ASSERT_EQ_STR(statuses[undelivered].sid, o2.provider_id);
	ASSERT_EQ_STR(statuses[undelivered].key, "key-2");
	ASSERT_EQ_INT(statuses[undelivered].error_code, 30005);
	ASSERT_EQ_INT(statuses[undelivered].suppress, 1);
	ASSERT_EQ_STR(statuses[undelivered].word, "undelivered");

	/* A late "sent" and a repeated "delivered" change nothing, and are still answered 200. */
	size_t before = tw_standin_callbacks(api);
	ASSERT_EQ_INT(tw_standin_post_status(api, o1.provider_id, "sent", 0, NULL), 0);
	ASSERT_EQ_INT(tw_standin_post_status(api, o1.provider_id, "delivered", 0, NULL), 0);
	int answered = hook_answers;
	run_until(&hook_answers, answered + 2, 10000);
	ASSERT_EQ_INT(nstatus, 4);
	for (size_t i = 0; i < tw_standin_callbacks(api); i++)
		ASSERT_EQ_INT(tw_standin_callback_status(api, i), 200);
	ASSERT_EQ_INT(tw_standin_callbacks(api), before + 2);
	ASSERT_EQ_INT(ng_plugin_metric(sms(), "status_stale"), 2);
	rig_stop();
}

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

static void test_signatures_with_and_without_port(void)
{
	rig_start(NULL, NULL);
	struct nudge_message m = sms_message(1, "+15550000031", "Hello");
	struct outcome o = {0};
	results = 0;
	send_sms(&m, &o);
	run_until(&results, 1, 10000);
	char good[200], noport[200], wrong[200];
	snprintf(good, sizeof good, "http://127.0.0.1:%d/v1/webhooks/sms?m=msg-key", hooks_port());
	snprintf(noport, sizeof noport, "http://127.0.0.1/v1/webhooks/sms?m=msg-key");
	snprintf(wrong, sizeof wrong, "http://127.0.0.1:%d/v1/webhooks/sms?m=other", hooks_port());

	/* Signed over another URL: 403, nothing reported. */
	ASSERT_EQ_INT(tw_standin_post_status(api, o.provider_id, "sent", 0, wrong), 0);
	run_until(&hook_answers, 1, 10000);
	ASSERT_EQ_INT(hook_last_status, 403);
	ASSERT_EQ_INT(nstatus, 0);
	/* Signed over the URL without its port (as Twilio sometimes does): accepted. */
	ASSERT_EQ_INT(tw_standin_post_status(api, o.provider_id, "sent", 0, noport), 0);
	run_until(&hook_answers, 2, 10000);
	ASSERT_EQ_INT(hook_last_status, 200);
	ASSERT_EQ_INT(nstatus, 1);
	/* Signed over the exact URL: accepted. */
	ASSERT_EQ_INT(tw_standin_post_status(api, o.provider_id, "delivered", 0, good), 0);
	run_until(&hook_answers, 3, 10000);
	ASSERT_EQ_INT(hook_last_status, 200);
	ASSERT_EQ_INT(nstatus, 2);

	/* Hand-made calls: a tampered parameter, no signature, a wrong token, another account. */
	char *body =
	    ng_xasprintf("AccountSid=%s&MessageSid=%s&MessageStatus=failed&To=%%2B15550000031",
	                 ACCOUNT, o.provider_id);
	char sig[64];
	tw_standin_sign(TOKEN, good, body, sig);
	char *tampered =
	    ng_xasprintf("AccountSid=%s&MessageSid=%s&MessageStatus=failed&To=%%2B15550000099",
	                 ACCOUNT, o.provider_id);
	char badsig[64];
	tw_standin_sign("another-token", good, body, badsig);
	char *other = ng_xasprintf("AccountSid=ACffffffffffffffffffffffffffffffff&MessageSid=%s&"
	                           "MessageStatus=failed",
	                           o.provider_id);
	char othersig[64];
	tw_standin_sign(TOKEN, good, other, othersig);
	struct {
		const char *body, *sig;
	} cases[] = {{tampered, sig}, {body, NULL}, {body, badsig}, {other, othersig}};
	for (size_t i = 0; i < NG_ARRAY_LEN(cases); i++) {
		struct nudge_header h[] = {{"X-Twilio-Signature", cases[i].sig}};
		struct nudge_inbound_request req = {
		    .struct_size = sizeof req,
		    .method = "POST",
		    .path = "",
		    .query = "m=msg-key",
		    .url = good,
		    .headers = h,
		    .nheaders = cases[i].sig ? 1 : 0,
		    .body = cases[i].body,
		    .body_len = strlen(cases[i].body),
		};
		int before = hook_answers;
		struct seen seen = {0};
		ASSERT_EQ_INT(ng_plugin_inbound(sms(), &req, on_seen, &seen), 0);
		run_for(20);
		ASSERT_EQ_INT(seen.calls, 1);
		ASSERT_EQ_INT(seen.status, 403);
		ASSERT_EQ_INT(hook_answers, before);
	}
	ASSERT_EQ_INT(nstatus, 2); /* no change from any of them */
	/* The right signature over the same hand-made call is accepted. */
	struct nudge_header h[] = {{"x-twilio-signature", sig}};
	struct nudge_inbound_request req = {.struct_size = sizeof req,
	                                    .method = "POST",
	                                    .path = "",
	                                    .query = "m=msg-key",
	                                    .url = good,
	                                    .headers = h,
	                                    .nheaders = 1,
	                                    .body = body,
	                                    .body_len = strlen(body)};
	struct seen seen = {0};
	ASSERT_EQ_INT(ng_plugin_inbound(sms(), &req, on_seen, &seen), 0);
	run_for(20);
	ASSERT_EQ_INT(seen.status, 200);
	ASSERT_EQ_INT(nstatus, 2); /* failed after delivered: stale, no change */
	free(body);
	free(tampered);
	free(other);
	rig_stop();
}

static void test_inbound_keywords_and_events(void)
{
	rig_start(NULL, NULL);
	char url[200];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/webhooks/sms", hooks_port());
	const char *bodies[] = {"stop",    " Stop ",      "STOPALL",
	                        "opt out", "Unsubscribe", "quit",
	                        "START",   "HELP",        "hello, is the sale still on?",
	                        "end"};
	const char *from[] = {"+15550000041", "+15550000042", "+15550000043", "+15550000044",
	                      "+15550000045", "+15550000046", "+15550000047", "+15550000048",
	                      "+15550000049", "+15550000050"};
	for (int i = 0; i < 10; i++)
		ASSERT_EQ_INT(tw_standin_post_inbound(api, url, from[i], "+15005550006", bodies[i]),
		              0);
	run_until(&hook_answers, 10, 10000);
	for (size_t i = 0; i < tw_standin_callbacks(api); i++)
		ASSERT_EQ_INT(tw_standin_callback_status(api, i), 200);
	ASSERT_EQ_INT(nevent, 10); /* every inbound message is an event */
	ASSERT_EQ_INT(nconsent, 8);
	int withdrawn = 0, given = 0;
	for (int i = 0; i < nconsent; i++) {
		if (consents[i].granted) {
			given++;
			ASSERT_EQ_STR(consents[i].address, "+15550000047");
		} else {
			withdrawn++;
		}
	}
	ASSERT_EQ_INT(withdrawn, 7);
	ASSERT_EQ_INT(given, 1);
	int help = 0, plain = 0;
	for (int i = 0; i < nevent; i++) {
		ASSERT_EQ_STR(events[i].name, "sms.received");
		ASSERT(strncmp(events[i].dedupe, "SM", 2) == 0);
		if (strcmp(events[i].address, "+15550000048") == 0) {
			ASSERT_CONTAINS(events[i].props, "\"keyword\":\"HELP\"");
			help++;
		}
		if (strcmp(events[i].address, "+15550000049") == 0) {
			ASSERT_CONTAINS(events[i].props,
			                "\"body\":\"hello, is the sale still on?\"");
			ASSERT(strstr(events[i].props, "keyword") == NULL);
			plain++;
		}
		if (strcmp(events[i].address, "+15550000042") == 0)
			ASSERT_CONTAINS(events[i].props, "\"keyword\":\"STOP\"");
	}
	ASSERT_EQ_INT(help, 1);
	ASSERT_EQ_INT(plain, 1);
	ASSERT_EQ_INT(ng_plugin_metric(sms(), "help_requests"), 1);
	rig_stop();
}

/* ---- segments and rate ---------------------------------------------------------------------- */

static char *repeat(const char *s, int n)
{
	size_t l = strlen(s);
	char *out = ng_xmalloc(l * (size_t)n + 1);
	for (int i = 0; i < n; i++)
		memcpy(out + l * (size_t)i, s, l);
	out[l * (size_t)n] = '\0';
	return out;
}

static void test_segment_counting(void)
{
	rig_start(NULL, NULL);
	struct {
		const char *unit;
		int n, segments;
		const char *enc;
	} cases[] = {
	    {"a", 160, 1, "GSM-7"},
	    {"a", 161, 2, "GSM-7"},
	    {"a", 306, 2, "GSM-7"},
	    {"a", 307, 3, "GSM-7"},
	    {"\xe2\x82\xac", 80, 1, "GSM-7"}, /* € takes two septets */
	    {"\xe2\x82\xac", 81, 2, "GSM-7"},
	    {"\xc3\xa9", 160, 1, "GSM-7"}, /* é is in the table */
	    {"\xd0\xb6", 70, 1, "UCS-2"},  /* Cyrillic ж */
	    {"\xd0\xb6", 71, 2, "UCS-2"},
	    {"\xd0\xb6", 134, 2, "UCS-2"},
	    {"\xd0\xb6", 135, 3, "UCS-2"},
	    {"\xf0\x9f\x98\x80", 35, 1, "UCS-2"}, /* 😀: two units */
	    {"\xf0\x9f\x98\x80", 36, 2, "UCS-2"},
	};
	int n = (int)NG_ARRAY_LEN(cases);
	for (int i = 0; i < n; i++) {
		char *body = repeat(cases[i].unit, cases[i].n);
		int64_t before = ng_plugin_metric(sms(), "segments");
		struct nudge_message m = sms_message(100 + i, "+15550000060", body);
		struct outcome o = {0};
		results = 0;
		send_sms(&m, &o);
		run_until(&results, 1, 10000);
		if (o.status != NUDGE_SEND_SENT || o.segments != cases[i].segments ||
		    strcmp(o.encoding, cases[i].enc) != 0 ||
		    ng_plugin_metric(sms(), "segments") - before != cases[i].segments)
			ng_test_fail(
			    __FILE__, __LINE__,
			    "case %d (%d × \"%s\"): status %d, %d segments (plugin counted "
			    "%lld), %s; want %d %s",
			    i, cases[i].n, cases[i].unit, o.status, o.segments,
			    (long long)(ng_plugin_metric(sms(), "segments") - before), o.encoding,
			    cases[i].segments, cases[i].enc);
		free(body);
	}
	/* Over 1,600 characters Twilio refuses the body; the plugin does not even ask. */
	char *huge = repeat("a", 1601);
	struct nudge_message m = sms_message(200, "+15550000060", huge);
	struct outcome o = {0};
	results = 0;
	size_t requests = tw_standin_requests(api);
	send_sms(&m, &o);
	run_until(&results, 1, 10000);
	ASSERT_EQ_INT(o.status, NUDGE_SEND_FAILED);
	ASSERT_EQ_INT(o.code, 21617);
	ASSERT_EQ_INT(tw_standin_requests(api), requests);
	free(huge);
	rig_stop();
}

static void test_rate_per_sender(void)
{
	rig_start(NULL, "rate_per_second = 10,");
	/* Five one-segment messages from the default sender: 100 ms apart. One from another
	 * sender is not held up by them. */
	struct nudge_message m[6];
	struct outcome o[6];
	memset(o, 0, sizeof o);
	results = 0;
	uint64_t t0 = ng_test_now_ms();
	for (int i = 0; i < 6; i++) {
		m[i] = sms_message(300 + i, "+15550000070", "Tick");
		if (i == 5)
			m[i].from = "+15005550009";
		send_sms(&m[i], &o[i]);
	}
	run_until(&results, 6, 10000);
	for (int i = 0; i < 6; i++)
		ASSERT_EQ_INT(o[i].status, NUDGE_SEND_SENT);
	ASSERT_CMP_INT(o[4].at_ms - t0, >=, 380);
	if (!RUNNING_ON_VALGRIND) /* too slow there for a bound on time */
		ASSERT_CMP_INT(o[5].at_ms - t0, <, 150);
	/* The other sender's message reached the API with the first, before the held ones. */
	size_t other = SIZE_MAX;
	for (size_t i = 0; i < tw_standin_count(api); i++)
		if (strcmp(tw_standin_at(api, i)->from, "+15005550009") == 0)
			other = i;
	ASSERT_CMP_INT(other, <, 2);
	rig_stop();
}

/* A shutdown waits for a request in flight (it may have been accepted) and gives back the queued.
 */
static void test_shutdown_waits_for_requests_in_flight(void)
{
	rig_start(NULL, RUNNING_ON_VALGRIND ? "rate_per_second = 1, timeout_ms = 8000,"
	                                    : "rate_per_second = 1, timeout_ms = 1000,");
	tw_standin_script(api, "+15550000081", 0, 0, 0, 0, 0);
	struct nudge_message m1 = sms_message(1, "+15550000081", "First"),
	                     m2 = sms_message(2, "+15550000081", "Second");
	struct outcome o1 = {0}, o2 = {0};
	send_sms(&m1, &o1);
	send_sms(&m2, &o2); /* held by the rate: one segment per second */
	uint64_t deadline = ng_test_now_ms() + 5000;
	while (tw_standin_requests(api) < 1 && ng_test_now_ms() < deadline)
		run_for(5);
	ASSERT_EQ_INT(tw_standin_requests(api), 1);
	rig_stop();
	ASSERT_EQ_INT(o1.calls, 1);
	ASSERT_EQ_INT(o1.status, NUDGE_SEND_AMBIGUOUS); /* not given back as a retry */
	ASSERT_EQ_INT(o2.calls, 1);
	ASSERT_EQ_INT(o2.status, NUDGE_SEND_RETRY);
	ASSERT_EQ_STR(o2.reason, "the plugin shut down before sending");
}

/* The example in Twilio's webhook-security documentation signs to this value. */
static void test_standin_signs_like_twilio(void)
{
	char sig[64];
	tw_standin_sign(
	    "12345", "https://mycompany.com/myapp.php?foo=1&bar=2",
	    "CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&"
	    "To=%2B18005551212",
	    sig);
	ASSERT_EQ_STR(sig, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
}

NG_TESTS(NG_TEST(test_standin_signs_like_twilio), NG_TEST(test_sent_with_sid_segments_and_encoding),
         NG_TEST(test_each_outcome_becomes_its_result),
         NG_TEST(test_refused_credentials_and_connection),
         NG_TEST(test_reconcile_looks_before_resending),
         NG_TEST(test_status_callbacks_apply_once_and_in_order),
         NG_TEST(test_signatures_with_and_without_port), NG_TEST(test_inbound_keywords_and_events),
         NG_TEST(test_segment_counting), NG_TEST(test_rate_per_sender),
         NG_TEST(test_shutdown_waits_for_requests_in_flight))
