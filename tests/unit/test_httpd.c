/*
 * test_httpd.c — the HTTP/1.1 server against raw TCP clients on a thread: keep-alive, chunked
 * bodies, pipelining, limits (413, 431), smuggling refusals (400), deadlines, asynchronous
 * handlers, clients that vanish, the connection cap and the graceful close.
 */
#include "httpd.h"
#include "ng.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

static uv_loop_t loop;
static struct ng_httpd *srv;
static int port;
static int closed;
static struct ng_httpd_stats last_stats; /* taken just before the server closes */

/* ---- the server side -------------------------------------------------------------------------- */

static void h_hello(struct ng_httpd_req *r, void *arg)
{
	NG_UNUSED(arg);
	char body[256];
	size_t len;
	const char *b = ng_httpd_body(r, &len);
	int n = snprintf(body, sizeof body, "%s %s q=%s len=%zu body=%.*s", ng_httpd_method(r),
			 ng_httpd_path(r), ng_httpd_query(r), len, (int)(len < 64 ? len : 64), b);
	ng_httpd_add_header(r, "X-Test", "yes");
	ng_httpd_respond(r, 200, "text/plain", body, (size_t)n);
}

/* Answers 150 ms later, from a timer: the shape of a handler waiting for a database commit. */
struct later {
	uv_timer_t t;
	struct ng_httpd_req *r;
};
static int later_answered;
static void on_later(uv_timer_t *t)
{
	struct later *l = t->data;
	ng_httpd_respond(l->r, 202, "text/plain", "later\n", 6);
	later_answered++;
	uv_close((uv_handle_t *)t, (uv_close_cb)free);
}
static void h_slow(struct ng_httpd_req *r, void *arg)
{
	NG_UNUSED(arg);
	struct later *l = ng_xcalloc(1, sizeof *l);
	l->r = r;
	uv_timer_init(&loop, &l->t);
	l->t.data = l;
	uv_timer_start(&l->t, on_later, 150, 0);
}

static void on_closed(void *arg)
{
	NG_UNUSED(arg);
	closed = 1;
}

static void start_server(const struct ng_httpd_options *o)
{
	uv_loop_init(&loop);
	ASSERT_EQ_INT(ng_httpd_open(&srv, &loop, o), 0);
	ng_httpd_route(srv, "GET", "/hello", h_hello, NULL);
	ng_httpd_route(srv, "POST", "/hello", h_hello, NULL);
	ng_httpd_route(srv, "POST", "/slow", h_slow, NULL);
	ng_httpd_route(srv, "POST", "/hooks/*", h_hello, NULL);
	ASSERT_EQ_INT(ng_httpd_listen(srv, "127.0.0.1", 0), 0);
	port = ng_httpd_port(srv);
	ASSERT_CMP_INT(port, >, 0);
	closed = 0;
	later_answered = 0;
}

/* ---- the client side (a thread with blocking sockets) ----------------------------------------- */

static int dial(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
		close(s);
		return -1;
	}
	struct timeval tv = {.tv_sec = 5};
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	return s;
}

static void send_all(int s, const char *data, size_t len)
{
	while (len) {
		ssize_t n = write(s, data, len);
		if (n <= 0)
			return;
		data += n;
		len -= (size_t)n;
	}
}

/* Reads until the peer closes or `responses` complete responses arrived. */
static size_t read_responses(int s, char *buf, size_t cap, int responses)
{
	size_t len = 0;
	for (;;) {
		buf[len] = '\0';
		int complete = 0;
		const char *p = buf;
		while ((p = strstr(p, "HTTP/1.1 ")) != NULL) {
			const char *cl = strstr(p, "Content-Length: ");
			const char *end = strstr(p, "\r\n\r\n");
			if (!cl || !end)
				break;
			size_t body = (size_t)atol(cl + 16);
			if ((size_t)(end + 4 - buf) + body > len)
				break;
			complete++;
			p = end + 4 + body;
		}
		if (responses && complete >= responses)
			return len;
		ssize_t n = read(s, buf + len, cap - 1 - len);
		if (n <= 0)
			return len;
		len += (size_t)n;
	}
}

typedef void (*client_fn)(void);
static client_fn client_body;
static volatile int client_done;

static void *client_main(void *arg)
{
	NG_UNUSED(arg);
	client_body();
	client_done = 1;
	return NULL;
}

/* Runs client() on a thread while the loop serves; then closes the server and checks the loop. */
static void run_with_client(client_fn client)
{
	client_body = client;
	client_done = 0;
	pthread_t t;
	pthread_create(&t, NULL, client_main, NULL);
	while (!client_done)
		uv_run(&loop, UV_RUN_NOWAIT), usleep(500);
	pthread_join(t, NULL);
	ng_httpd_stats(srv, &last_stats);
	ng_httpd_close(srv, on_closed, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	ASSERT(closed);
	ASSERT_EQ_INT(uv_loop_close(&loop), 0);
}

static char out[65536];

static void c_keepalive(void)
{
	int s = dial();
	for (int i = 0; i < 3; i++) {
		char req[128];
		int n = snprintf(req, sizeof req, "GET /hello?i=%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
		send_all(s, req, (size_t)n);
		size_t len = read_responses(s, out, sizeof out, 1);
		ASSERT_CMP_INT(len, >, 0);
		char want[64];
		snprintf(want, sizeof want, "GET /hello q=i=%d len=0", i);
		ASSERT_CONTAINS(out, "HTTP/1.1 200 OK\r\n");
		ASSERT_CONTAINS(out, "X-Test: yes\r\n");
		ASSERT_CONTAINS(out, "Date: ");
		ASSERT_CONTAINS(out, want);
	}
	send_all(s, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 31);
	read_responses(s, out, sizeof out, 1);
	ASSERT_CONTAINS(out, "HTTP/1.1 404 Not Found");
	send_all(s, "DELETE /hello HTTP/1.1\r\nHost: x\r\n\r\n", 35);
	read_responses(s, out, sizeof out, 1);
	ASSERT_CONTAINS(out, "HTTP/1.1 405 Method Not Allowed");
	ASSERT_CONTAINS(out, "Allow: GET, POST");
	send_all(s, "POST /hooks/twilio HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 62);
	read_responses(s, out, sizeof out, 1);
	ASSERT_CONTAINS(out, "POST /hooks/twilio q= len=3 body=abc");
	close(s);
}

static void test_keepalive_routes(void)
{
	start_server(NULL);
	run_with_client(c_keepalive);
	ASSERT_EQ_INT(last_stats.requests, 6);
	ASSERT_EQ_INT(last_stats.responses_2xx, 4);
	ASSERT_EQ_INT(last_stats.responses_4xx, 2);
}

static void c_chunked_and_pipelined(void)
{
	int s = dial();
	const char *reqs = "POST /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
			   "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
			   "GET /hello?n=2 HTTP/1.1\r\nHost: x\r\n\r\n"
			   "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
			   "GET /hello?n=4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	send_all(s, reqs, strlen(reqs));
	size_t len = read_responses(s, out, sizeof out, 0); /* until the server closes */
	ASSERT_CMP_INT(len, >, 0);
	const char *a = strstr(out, "len=11 body=hello world");
	const char *b = strstr(out, "q=n=2");
	const char *c = strstr(out, "HTTP/1.1 202");
	const char *d = strstr(out, "q=n=4");
	ASSERT(a && b && c && d);
	/* In order, although the third is answered 150 ms later from a timer. */
	ASSERT(a < b && b < c && c < d);
	ASSERT_CONTAINS(out, "Connection: close");
	close(s);
}

static void test_chunked_and_pipelined_in_order(void)
{
	start_server(NULL);
	run_with_client(c_chunked_and_pipelined);
	ASSERT_EQ_INT(later_answered, 1);
}

static void expect_refusal(const char *req, const char *status)
{
	int s = dial();
	send_all(s, req, strlen(req));
	read_responses(s, out, sizeof out, 0);
	ASSERT_CONTAINS(out, status);
	ASSERT_CONTAINS(out, "Connection: close");
	close(s);
}

static void c_limits(void)
{
	expect_refusal("POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
		       "HTTP/1.1 413");
	char big[4096];
	int n = snprintf(big, sizeof big,
			 "POST /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
	for (int i = 0; i < 6; i++)
		n += snprintf(big + n, sizeof big - (size_t)n, "190\r\n%0400d\r\n", 0);
	expect_refusal(big, "HTTP/1.1 413");
	n = snprintf(big, sizeof big, "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: %02000d\r\n\r\n", 0);
	expect_refusal(big, "HTTP/1.1 431");
	n = snprintf(big, sizeof big, "GET /hello HTTP/1.1\r\n");
	for (int i = 0; i < 30; i++)
		n += snprintf(big + n, sizeof big - (size_t)n, "X-H%d: v\r\n", i);
	snprintf(big + n, sizeof big - (size_t)n, "\r\n");
	expect_refusal(big, "HTTP/1.1 431");
	expect_refusal("POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: "
		       "chunked\r\n\r\n0\r\n\r\n",
		       "HTTP/1.1 400");
	expect_refusal("POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n"
		       "\r\nabc",
		       "HTTP/1.1 400");
	expect_refusal("POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: "
		       "gzip\r\n\r\nabc",
		       "HTTP/1.1 400");
	expect_refusal("GARBAGE\r\n\r\n", "HTTP/1.1 400");
}

static void test_limits_and_smuggling(void)
{
	struct ng_httpd_options o = {.max_body_bytes = 2048, .max_header_bytes = 1024,
				     .max_headers = 20};
	start_server(&o);
	run_with_client(c_limits);
	ASSERT_EQ_INT(last_stats.responses_4xx, 8);
	ASSERT_EQ_INT(last_stats.responses_2xx, 0);
}

static void c_slowloris(void)
{
	int s = dial();
	uint64_t t0 = ng_test_now_ms();
	send_all(s, "GET /hello HTTP/1.1\r\n", 21);
	for (int i = 0; i < 10; i++) {
		if (write(s, "X", 1) != 1)
			break;
		usleep(100 * 1000);
	}
	read_responses(s, out, sizeof out, 0);
	uint64_t took = ng_test_now_ms() - t0;
	ASSERT_CONTAINS(out, "HTTP/1.1 408");
	ASSERT_CMP_INT(took, <, 900);
	close(s);
	/* An idle keep-alive connection is closed after idle_timeout_ms. */
	s = dial();
	t0 = ng_test_now_ms();
	char c;
	ASSERT_EQ_INT(read(s, &c, 1), 0);
	ASSERT_CMP_INT(ng_test_now_ms() - t0, <, 900);
	close(s);
}

static void test_deadlines(void)
{
	struct ng_httpd_options o = {.header_timeout_ms = 300, .idle_timeout_ms = 300};
	start_server(&o);
	run_with_client(c_slowloris);
}

static void c_vanish(void)
{
	/* The client leaves while its request is being handled: the late answer is dropped. */
	int s = dial();
	send_all(s, "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 51);
	usleep(20 * 1000);
	close(s);
	usleep(300 * 1000);
}

static void test_client_vanishes_before_async_answer(void)
{
	start_server(NULL);
	run_with_client(c_vanish);
	ASSERT_EQ_INT(later_answered, 1);
}

static void c_cap(void)
{
	int a = dial(), b = dial();
	send_all(a, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 32);
	read_responses(a, out, sizeof out, 1);
	ASSERT_CONTAINS(out, "HTTP/1.1 200");
	/* The second connection is over the cap of one: closed without an answer. */
	send_all(b, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 32);
	char c;
	ASSERT_CMP_INT(read(b, &c, 1), <=, 0);
	close(a);
	close(b);
}

static void test_connection_cap(void)
{
	struct ng_httpd_options o = {.max_connections = 1};
	start_server(&o);
	run_with_client(c_cap);
	ASSERT_EQ_INT(last_stats.connections_rejected, 1);
	ASSERT_EQ_INT(last_stats.responses_2xx, 1);
}

static int drain_sock = -1;
static void c_inflight(void)
{
	drain_sock = dial();
	send_all(drain_sock, "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 51);
	usleep(50 * 1000);
}

static void test_close_answers_in_flight_request(void)
{
	start_server(NULL);
	client_body = c_inflight;
	c_inflight();
	/* Let the server read the request, then close with it still being handled. */
	for (int i = 0; i < 20; i++)
		uv_run(&loop, UV_RUN_NOWAIT), usleep(2000);
	ng_httpd_close(srv, on_closed, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	ASSERT(closed);
	ASSERT_EQ_INT(later_answered, 1);
	read_responses(drain_sock, out, sizeof out, 0);
	ASSERT_CONTAINS(out, "HTTP/1.1 202");
	ASSERT_CONTAINS(out, "Connection: close");
	close(drain_sock);
	ASSERT_EQ_INT(uv_loop_close(&loop), 0);
	/* Nothing listens any more. */
	ASSERT_EQ_INT(dial(), -1);
}

static void test_listen_on_busy_port(void)
{
	start_server(NULL);
	struct ng_httpd *second;
	ASSERT_EQ_INT(ng_httpd_open(&second, &loop, NULL), 0);
	ASSERT_EQ_INT(ng_httpd_listen(second, "127.0.0.1", port), -EADDRINUSE);
	int done2 = 0;
	ng_httpd_close(second, on_closed, NULL);
	ng_httpd_close(srv, on_closed, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	NG_UNUSED(done2);
	ASSERT_EQ_INT(uv_loop_close(&loop), 0);
}

NG_TESTS(NG_TEST(test_keepalive_routes), NG_TEST(test_chunked_and_pipelined_in_order),
	 NG_TEST(test_limits_and_smuggling), NG_TEST(test_deadlines),
	 NG_TEST(test_client_vanishes_before_async_answer), NG_TEST(test_connection_cap),
	 NG_TEST(test_close_answers_in_flight_request), NG_TEST(test_listen_on_busy_port))
