/*
 * test_httpc.c — the shared HTTP client against nudge's own HTTP server on the same loop
 * (127.0.0.1, port 0): 1,000 requests at concurrency 50 with the right bodies while a loop-lag
 * probe stays under 50 ms; a server that never answers (the deadline); a refused connection; the
 * response-size limit; request headers, Basic credentials and response headers; refusals at
 * submit; cancel; close with requests in flight; and a plugin sending through the host's
 * http_request service.
 */
#include "clock.h"
#include "httpc.h"
#include "httpd.h"
#include "ng.h"
#include "plugin_host.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <valgrind/valgrind.h>

static uv_loop_t loop;
static struct ng_httpd *srv;
static struct ng_httpc *cli;
static int port;
static int closed;

/* ---- the server ----------------------------------------------------------------------------- */

/* Answers with the query string, then the body, so each request's answer is its own. */
static void h_echo(struct ng_httpd_req *r, void *arg)
{
	NG_UNUSED(arg);
	size_t len;
	const char *b = ng_httpd_body(r, &len);
	const char *auth = ng_httpd_header(r, "Authorization");
	const char *key = ng_httpd_header(r, "X-Key");
	char *out = ng_xasprintf("%s|%s|%.*s|%s|%s", ng_httpd_method(r), ng_httpd_query(r),
	                         (int)len, b, auth ? auth : "-", key ? key : "-");
	ng_httpd_add_header(r, "X-Test", "yes");
	ng_httpd_respond(r, 200, "text/plain", out, strlen(out));
	free(out);
}

/* Never answers (until the test releases the held requests). */
static struct ng_httpd_req *held[64];
static int nheld;
static void h_hang(struct ng_httpd_req *r, void *arg)
{
	NG_UNUSED(arg);
	ASSERT(nheld < 64);
	held[nheld++] = r;
}

static void h_big(struct ng_httpd_req *r, void *arg)
{
	NG_UNUSED(arg);
	size_t n = 300 * 1024;
	char *body = ng_xmalloc(n);
	memset(body, 'x', n);
	ng_httpd_respond(r, 200, "text/plain", body, n);
	free(body);
}

static void h_status(struct ng_httpd_req *r, void *arg)
{
	NG_UNUSED(arg);
	ng_httpd_respond(r, 503, "text/plain", "busy", 4);
}

static void setup(const struct ng_httpc_options *o)
{
	ASSERT_EQ_INT(uv_loop_init(&loop), 0);
	struct ng_httpd_options so = {.drain_timeout_ms = 200};
	ASSERT_EQ_INT(ng_httpd_open(&srv, &loop, &so), 0);
	ng_httpd_route(srv, "GET", "/echo", h_echo, NULL);
	ng_httpd_route(srv, "POST", "/echo", h_echo, NULL);
	ng_httpd_route(srv, "PUT", "/echo", h_echo, NULL);
	ng_httpd_route(srv, "POST", "/hang", h_hang, NULL);
	ng_httpd_route(srv, "GET", "/hang", h_hang, NULL);
	ng_httpd_route(srv, "GET", "/big", h_big, NULL);
	ng_httpd_route(srv, "GET", "/status", h_status, NULL);
	ASSERT_EQ_INT(ng_httpd_listen(srv, "127.0.0.1", 0), 0);
	port = ng_httpd_port(srv);
	ASSERT_EQ_INT(ng_httpc_open(&cli, &loop, o), 0);
	closed = 0;
	nheld = 0;
}

static void count_closed(void *arg)
{
	(*(int *)arg)++;
}

static void release_held(void)
{
	for (int i = 0; i < nheld; i++)
		ng_httpd_respond(held[i], 200, "text/plain", "late", 4);
	nheld = 0;
}

/* Closes the client (unless the test did) and the server; every handle must be gone. */
static void teardown(int client_closed)
{
	if (!client_closed)
		ng_httpc_close(cli, count_closed, &closed);
	release_held();
	ng_httpd_close(srv, count_closed, &closed);
	uv_run(&loop, UV_RUN_DEFAULT);
	ASSERT_EQ_INT(closed, 2);
	ASSERT_EQ_INT(uv_loop_close(&loop), 0);
}

static void on_tick(uv_timer_t *t)
{
	NG_UNUSED(t);
}

/* UV_RUN_ONCE may block in poll after a timer callback did what we wait for, so a ticking timer
 * keeps each turn short. */
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

static char *url(const char *path)
{
	return ng_xasprintf("http://127.0.0.1:%d%s", port, path);
}

/* One finished request, copied out of the callback. */
struct got {
	int calls, in_submit;
	int status, error, sent;
	char body[512], error_text[256], x_test[32];
	uint64_t elapsed_ms;
};

static int submitting;
static int completions;

static void on_got(void *arg, const struct ng_httpc_response *r)
{
	struct got *g = arg;
	g->calls++;
	g->in_submit += submitting;
	g->status = r->status;
	g->error = r->error;
	g->sent = r->request_sent;
	g->elapsed_ms = r->elapsed_ms;
	snprintf(g->body, sizeof g->body, "%.*s", (int)r->body_len, r->body);
	snprintf(g->error_text, sizeof g->error_text, "%s", r->error_text);
	for (size_t i = 0; i < r->nheaders; i++)
		if (strcmp(r->headers[i].name, "X-Test") == 0)
			snprintf(g->x_test, sizeof g->x_test, "%s", r->headers[i].value);
	completions++;
}

static void submit(const struct ng_httpc_request *q, struct got *g)
{
	submitting = 1;
	ASSERT_EQ_INT(ng_httpc_request(cli, q, on_got, g), 0);
	submitting = 0;
}

/* ---- 1,000 requests, 50 at a time, and the loop stays responsive --------------------------- */

#define TOTAL       1000
#define CONCURRENCY 50

static int next_id, done_ok, wrong, in_flight, max_in_flight;
static char *echo_url;

static uint64_t lag_max_ms, lag_expected;
static uv_timer_t lag_timer;
#define LAG_PERIOD_MS 10

static void on_lag(uv_timer_t *t)
{
	uint64_t now = uv_now(t->loop);
	if (now > lag_expected && now - lag_expected > lag_max_ms)
		lag_max_ms = now - lag_expected;
	lag_expected = now + LAG_PERIOD_MS;
}

static void start_one(void);

static void on_echo(void *arg, const struct ng_httpc_response *r)
{
	int id = (int)(intptr_t)arg;
	in_flight--;
	char want[64];
	snprintf(want, sizeof want, "GET|n=%d||-|-", id);
	if (r->error == 0 && r->status == 200 && r->body_len == strlen(want) &&
	    memcmp(r->body, want, r->body_len) == 0)
		done_ok++;
	else {
		if (wrong++ < 5)
			fprintf(stderr, "request %d: status %d error %d (%s) body %.*s\n", id,
			        r->status, r->error, r->error_text, (int)r->body_len, r->body);
	}
	completions++;
	if (next_id < TOTAL)
		start_one();
}

static void start_one(void)
{
	char *u = ng_xasprintf("%s?n=%d", echo_url, next_id);
	struct ng_httpc_request q = {.url = u};
	ASSERT_EQ_INT(ng_httpc_request(cli, &q, on_echo, (void *)(intptr_t)next_id), 0);
	free(u);
	next_id++;
	if (++in_flight > max_in_flight)
		max_in_flight = in_flight;
}

static void test_thousand_requests_at_concurrency_50(void)
{
	setup(NULL);
	echo_url = url("/echo");
	uv_timer_init(&loop, &lag_timer);
	lag_expected = uv_now(&loop) + LAG_PERIOD_MS;
	uv_timer_start(&lag_timer, on_lag, LAG_PERIOD_MS, LAG_PERIOD_MS);
	uint64_t t0 = ng_test_now_ms();
	completions = 0;
	for (int i = 0; i < CONCURRENCY; i++)
		start_one();
	run_until(&completions, TOTAL, 120000);
	uint64_t took = ng_test_now_ms() - t0;
	fprintf(stderr, "# %d requests at concurrency %d in %llu ms; loop lag max %llu ms\n", TOTAL,
	        CONCURRENCY, (unsigned long long)took, (unsigned long long)lag_max_ms);
	ASSERT_EQ_INT(done_ok, TOTAL);
	ASSERT_EQ_INT(wrong, 0);
	ASSERT_EQ_INT(max_in_flight, CONCURRENCY);
	ASSERT_CMP_INT(lag_max_ms, <, RUNNING_ON_VALGRIND ? 2000 : 50);
	struct ng_httpc_stats st;
	ng_httpc_stats(cli, &st);
	ASSERT_EQ_INT(st.requests, TOTAL);
	ASSERT_EQ_INT(st.responses, TOTAL);
	ASSERT_EQ_INT(st.errors, 0);
	ASSERT_EQ_INT(st.in_flight, 0);
	/* Keep-alive: far fewer connections than requests (the server counts them). */
	struct ng_httpd_stats hs;
	ng_httpd_stats(srv, &hs);
	ASSERT_CMP_INT(hs.connections_total, <=, 2 * CONCURRENCY);
	uv_close((uv_handle_t *)&lag_timer, NULL);
	free(echo_url);
	teardown(0);
}

/* ---- failures ------------------------------------------------------------------------------- */

static void test_a_server_that_hangs_hits_the_timeout(void)
{
	setup(NULL);
	char *u = url("/hang");
	struct got g = {0};
	/* Under valgrind connecting alone can take longer than 300 ms. */
	int64_t timeout = RUNNING_ON_VALGRIND ? 3000 : 300;
	struct ng_httpc_request q = {
	    .url = u, .method = "POST", .body = "x=1", .body_len = 3, .timeout_ms = timeout};
	completions = 0;
	submit(&q, &g);
	run_until(&completions, 1, 10000);
	ASSERT_EQ_INT(g.in_submit, 0);
	ASSERT_EQ_INT(g.error, -ETIMEDOUT);
	ASSERT_EQ_INT(g.status, 0);
	ASSERT_EQ_INT(g.sent, 1); /* the server had the request: the provider may have acted */
	ASSERT_CMP_INT(g.elapsed_ms, >=, timeout - 10);
	ASSERT_CMP_INT(g.elapsed_ms, <, timeout + 3000);
	ASSERT_CONTAINS(g.error_text, "imed out");
	struct ng_httpc_stats st;
	ng_httpc_stats(cli, &st);
	ASSERT_EQ_INT(st.timeouts, 1);
	free(u);
	teardown(0);
}

/* A port that was just bound and closed again refuses connections. */
static int closed_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	ASSERT_EQ_INT(bind(s, (struct sockaddr *)&a, sizeof a), 0);
	socklen_t len = sizeof a;
	getsockname(s, (struct sockaddr *)&a, &len);
	close(s);
	return ntohs(a.sin_port);
}

static void test_a_refused_connection_reports_an_error(void)
{
	setup(NULL);
	char *u = ng_xasprintf("http://127.0.0.1:%d/x", closed_port());
	struct got g = {0};
	struct ng_httpc_request q = {.url = u, .body = "a", .body_len = 1};
	completions = 0;
	submit(&q, &g);
	run_until(&completions, 1, 10000);
	ASSERT_EQ_INT(g.in_submit, 0);
	ASSERT_EQ_INT(g.error, -ECONNREFUSED);
	ASSERT_EQ_INT(g.status, 0);
	ASSERT_EQ_INT(g.sent, 0); /* nothing went out: safe to retry */
	ASSERT_CONTAINS(g.error_text, "onnect");
	free(u);
	teardown(0);
}

static void test_response_limit_status_and_headers(void)
{
	struct ng_httpc_options o = {.max_response_bytes = 256 * 1024};
	setup(&o);
	char *big = url("/big"), *echo = url("/echo?a=b"), *status = url("/status");
	struct got g1 = {0}, g2 = {0}, g3 = {0}, g4 = {0};
	completions = 0;
	struct ng_httpc_request q1 = {.url = big};
	submit(&q1, &g1);
	/* The same response passes with a per-request limit above it. */
	struct ng_httpc_request q2 = {.url = big, .max_response_bytes = 512 * 1024};
	submit(&q2, &g2);
	struct ng_httpc_header h[] = {{"X-Key", "k-42"}, {"Content-Type", "text/plain"}};
	struct ng_httpc_request q3 = {.url = echo,
	                              .method = "PUT",
	                              .headers = h,
	                              .nheaders = 2,
	                              .body = "hello",
	                              .body_len = 5,
	                              .username = "AC123",
	                              .password = "secret"};
	submit(&q3, &g3);
	struct ng_httpc_request q4 = {.url = status};
	submit(&q4, &g4);
	run_until(&completions, 4, 10000);
	ASSERT_EQ_INT(g1.error, -EMSGSIZE);
	ASSERT_CONTAINS(g1.error_text, "larger than the limit");
	ASSERT_EQ_INT(g2.error, 0);
	ASSERT_EQ_INT(strlen(g2.body), sizeof g2.body - 1); /* truncated copy, all 'x' */
	ASSERT_EQ_INT(g3.error, 0);
	ASSERT_EQ_INT(g3.status, 200);
	/* base64("AC123:secret") */
	ASSERT_EQ_STR(g3.body, "PUT|a=b|hello|Basic QUMxMjM6c2VjcmV0|k-42");
	ASSERT_EQ_STR(g3.x_test, "yes");
	ASSERT_EQ_INT(g4.error, 0); /* an HTTP error status is a response, not a transfer error */
	ASSERT_EQ_INT(g4.status, 503);
	ASSERT_EQ_STR(g4.body, "busy");
	ASSERT_EQ_INT(g1.in_submit + g2.in_submit + g3.in_submit + g4.in_submit, 0);
	free(big);
	free(echo);
	free(status);
	teardown(0);
}

static void test_bad_requests_are_refused_at_submit(void)
{
	setup(NULL);
	struct got g = {0};
	struct ng_httpc_request q = {.url = "ftp://127.0.0.1/x"};
	ASSERT_EQ_INT(ng_httpc_request(cli, &q, on_got, &g), -EINVAL);
	q.url = NULL;
	ASSERT_EQ_INT(ng_httpc_request(cli, &q, on_got, &g), -EINVAL);
	struct ng_httpc_header bad[] = {{"X-Evil", "a\r\nInjected: yes"}};
	char *u = url("/echo");
	struct ng_httpc_request q2 = {.url = u, .headers = bad, .nheaders = 1};
	ASSERT_EQ_INT(ng_httpc_request(cli, &q2, on_got, &g), -EINVAL);
	struct ng_httpc_request q3 = {.url = u, .method = "get me"};
	ASSERT_EQ_INT(ng_httpc_request(cli, &q3, on_got, &g), -EINVAL);
	/* A URL curl cannot parse is found later and reported through the callback. */
	struct ng_httpc_request q4 = {.url = "http://[::1/x"};
	completions = 0;
	submit(&q4, &g);
	run_until(&completions, 1, 5000);
	ASSERT_EQ_INT(g.in_submit, 0);
	ASSERT_EQ_INT(g.error, -EINVAL);
	ASSERT_EQ_INT(g.sent, 0);
	free(u);
	teardown(0);
}

static void test_cancel_and_close_with_requests_in_flight(void)
{
	setup(NULL);
	char *u = url("/hang");
	struct got g[10];
	memset(g, 0, sizeof g);
	struct ng_httpc_xfer *x = NULL;
	completions = 0;
	for (int i = 0; i < 10; i++) {
		struct ng_httpc_request q = {.url = u, .handle = i == 0 ? &x : NULL};
		submit(&q, &g[i]);
	}
	/* Let every request reach the server. */
	uint64_t deadline = ng_test_now_ms() + 5000;
	while (nheld < 10 && ng_test_now_ms() < deadline)
		uv_run(&loop, UV_RUN_ONCE);
	ASSERT_EQ_INT(nheld, 10);
	ASSERT(x != NULL);
	ng_httpc_cancel(cli, x);
	ASSERT_EQ_INT(g[0].calls, 1);
	ASSERT_EQ_INT(g[0].error, -ECANCELED);
	ng_httpc_close(cli, count_closed, &closed);
	for (int i = 0; i < 10; i++) {
		ASSERT_EQ_INT(g[i].calls, 1);
		ASSERT_EQ_INT(g[i].error, -ECANCELED);
		ASSERT_EQ_INT(g[i].sent, 1);
		ASSERT_EQ_STR(g[i].error_text, "the request was cancelled");
	}
	/* New requests are refused from the start of the close. */
	struct got late = {0};
	struct ng_httpc_request q = {.url = u};
	ASSERT_EQ_INT(ng_httpc_request(cli, &q, on_got, &late), NG_ECLOSING);
	run_until(&closed, 1, 5000);
	ASSERT_EQ_INT(late.calls, 0);
	free(u);
	teardown(1);
}

/* A callback may close the client: the close waits until the callback has returned. */
static void on_close_inside(void *arg, const struct ng_httpc_response *r)
{
	on_got(arg, r);
	ng_httpc_close(cli, count_closed, &closed);
}

static void test_close_from_inside_a_callback(void)
{
	setup(NULL);
	char *e = url("/echo"), *h = url("/hang");
	struct got g1 = {0}, g2 = {0};
	completions = 0;
	struct ng_httpc_request q1 = {.url = e};
	ASSERT_EQ_INT(ng_httpc_request(cli, &q1, on_close_inside, &g1), 0);
	struct ng_httpc_request q2 = {.url = h};
	submit(&q2, &g2);
	run_until(&completions, 2, 5000);
	ASSERT_EQ_INT(g1.error, 0);
	ASSERT_EQ_INT(g2.error, -ECANCELED);
	run_until(&closed, 1, 5000);
	free(e);
	free(h);
	teardown(1);
}

/* ---- through the plugin host ---------------------------------------------------------------- */

struct outcome {
	int calls, status, code;
	char provider_id[256], reason[256];
};

static void on_sent(void *arg, const struct nudge_send_result *r)
{
	struct outcome *o = arg;
	o->calls++;
	o->status = r->status;
	o->code = r->code;
	snprintf(o->provider_id, sizeof o->provider_id, "%s", r->provider_id ? r->provider_id : "");
	snprintf(o->reason, sizeof o->reason, "%s", r->reason ? r->reason : "");
	completions++;
}

static void test_a_plugin_sends_through_http_request(void)
{
	setup(NULL);
	struct ng_clock *clock = ng_clock_real(&loop);
	struct ng_plugin_host *host;
	ASSERT_EQ_INT(ng_plugin_host_open(&host, &loop, clock, NULL), 0);
	ng_plugin_host_set_httpc(host, cli);
	char dir[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
	ASSERT(n > 0);
	dir[n] = '\0';
	strcpy(strrchr(dir, '/'), "/plugins");
	struct ng_plugin_spec spec = {.name = "web", .plugin = "httpget"};
	ASSERT_EQ_INT(ng_plugin_host_load(host, dir, &spec, 1, NULL, NULL), 1);
	struct ng_plugin *p = ng_plugin_find(host, "web");
	ASSERT(p != NULL);

	char *ok = url("/echo?m=1"), *refused = ng_xasprintf("http://127.0.0.1:%d/", closed_port());
	struct nudge_message m1 = {.struct_size = sizeof m1,
	                           .purpose = NUDGE_PURPOSE_TRANSACTIONAL,
	                           .id = 1,
	                           .attempt = 1,
	                           .key = "key-1",
	                           .channel = "sms",
	                           .recipient = ok,
	                           .body = "Hi there"};
	struct nudge_message m2 = m1;
	m2.recipient = refused;
	struct outcome o1 = {0}, o2 = {0};
	completions = 0;
	ASSERT_EQ_INT(ng_plugin_send(p, &m1, on_sent, &o1), 0);
	ASSERT_EQ_INT(ng_plugin_send(p, &m2, on_sent, &o2), 0);
	run_until(&completions, 2, 10000);
	ASSERT_EQ_INT(o1.status, NUDGE_SEND_SENT);
	ASSERT_EQ_STR(o1.provider_id, "POST|m=1|Hi there|Basic dXNlcjpwYXNz|key-1");
	ASSERT_EQ_STR(o1.reason, "yes"); /* the X-Test response header reached the plugin */
	ASSERT_EQ_INT(o1.code, 200);
	ASSERT_EQ_INT(o2.status, NUDGE_SEND_RETRY);
	ASSERT_EQ_INT(o2.code, -ECONNREFUSED);
	ASSERT_CONTAINS(o2.reason, "(sent=0)");
	ASSERT_EQ_INT(ng_plugin_metric(p, "http_responses"), 1);
	ASSERT_EQ_INT(ng_plugin_metric(p, "http_errors"), 1);

	int host_closed = 0;
	ng_plugin_host_close(host, count_closed, &host_closed);
	run_until(&host_closed, 1, 5000);
	ng_clock_close(clock, count_closed, &host_closed);
	free(ok);
	free(refused);
	teardown(0);
	ASSERT_EQ_INT(host_closed, 2);
}

NG_TESTS(NG_TEST(test_thousand_requests_at_concurrency_50),
         NG_TEST(test_a_server_that_hangs_hits_the_timeout),
         NG_TEST(test_a_refused_connection_reports_an_error),
         NG_TEST(test_response_limit_status_and_headers),
         NG_TEST(test_bad_requests_are_refused_at_submit),
         NG_TEST(test_cancel_and_close_with_requests_in_flight),
         NG_TEST(test_close_from_inside_a_callback),
         NG_TEST(test_a_plugin_sends_through_http_request))
