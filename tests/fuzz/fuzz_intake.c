/*
 * fuzz_intake.c — libFuzzer target for the intake path: request parsing (the real HTTP server on
 * a libuv loop, spoken to over a loopback socket), signature checks and normalisation (the real
 * routes and the shipped mappers). The database is unreachable on purpose: a request that gets
 * through the mapping is answered 503, which is the only thing that differs from production.
 *
 * An input that starts with 'S' is made into a correctly signed request: the rest up to the first
 * blank line is the request line and headers, after it the body; the harness adds Content-Length
 * and the Shopify, WooCommerce and nudge signatures of that body, so the fuzzer reaches the
 * mappers. Any other input is sent as raw bytes. Seeds: tests/fuzz/seed_intake.sh.
 */
#include "db.h"
#include "httpd.h"
#include "intake.h"
#include "ng.h"
#include "webhook_verify.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SECRET "fuzz-secret"

static uv_loop_t loop;
static struct ng_httpd *srv;
static struct ng_intake *intake;
static ng_db *db;
static int port;

static void setup(void)
{
	ng_log_setup(NG_LOG_ERROR + 1, NG_LOG_LOGFMT);
	uv_loop_init(&loop);
	struct ng_db_options dbo = {.conninfo = "host=127.0.0.1 port=9 connect_timeout=1",
	                            .pool_size = 1,
	                            .reconnect_min_ms = 60000,
	                            .reconnect_max_ms = 60000};
	ng_db_open(&db, &loop, &dbo);
	const char *keys[1] = {SECRET};
	struct ng_intake_secret shops[1] = {{NULL, SECRET}};
	struct ng_intake_config cfg = {.mappers_dir = "contrib/mappers",
	                               .default_country_code = "1",
	                               .api_keys = keys,
	                               .napi_keys = 1,
	                               .shopify = shops,
	                               .nshopify = 1,
	                               .woocommerce = shops,
	                               .nwoocommerce = 1};
	char err[1024];
	if (ng_intake_open(&intake, &loop, db, NULL, NULL, &cfg, err, sizeof err) != 0) {
		fprintf(stderr, "fuzz_intake: %s (run from the source tree)\n", err);
		abort();
	}
	struct ng_httpd_options o = {.max_body_bytes = 1 << 20,
	                             .header_timeout_ms = 1000,
	                             .body_timeout_ms = 1000,
	                             .idle_timeout_ms = 1000};
	ng_httpd_open(&srv, &loop, &o);
	ng_intake_routes(intake, srv);
	if (ng_httpd_listen(srv, "127.0.0.1", 0) != 0)
		abort();
	port = ng_httpd_port(srv);
}

static char *build_signed(const uint8_t *data, size_t size, size_t *outlen)
{
	const char *in = (const char *)data + 1;
	size_t n = size - 1;
	const char *sep = memmem(in, n, "\r\n\r\n", 4);
	size_t hl = sep ? (size_t)(sep - in) : n;
	const char *body = sep ? sep + 4 : "";
	size_t bl = sep ? n - hl - 4 : 0;
	char s1[NG_WEBHOOK_SIGNATURE_MAX], s2[NG_WEBHOOK_SIGNATURE_MAX], s3[NG_WEBHOOK_SIGNATURE_MAX];
	ng_webhook_sign(NG_WEBHOOK_SHOPIFY, SECRET, body, bl, s1);
	ng_webhook_sign(NG_WEBHOOK_WOOCOMMERCE, SECRET, body, bl, s2);
	ng_webhook_sign(NG_WEBHOOK_NUDGE, SECRET, body, bl, s3);
	char extra[512];
	int el = snprintf(extra, sizeof extra,
	                  "\r\nX-Shopify-Hmac-Sha256: %s\r\nX-WC-Webhook-Signature: %s\r\n"
	                  "X-Nudge-Signature: %s\r\nContent-Length: %zu\r\n\r\n",
	                  s1, s2, s3, bl);
	char *out = malloc(hl + (size_t)el + bl);
	memcpy(out, in, hl);
	memcpy(out + hl, extra, (size_t)el);
	memcpy(out + hl + (size_t)el, body, bl);
	*outlen = hl + (size_t)el + bl;
	return out;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!srv)
		setup();
	if (size == 0 || size > (1 << 16))
		return 0;
	size_t len = size;
	char *req = NULL;
	if (data[0] == 'S')
		req = build_signed(data, size, &len);
	const char *bytes = req ? req : (const char *)data;

	int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	connect(s, (struct sockaddr *)&a, sizeof a);
	size_t off = 0;
	int shut = 0;
	uint64_t deadline = now_ms() + 3000;
	char buf[65536];
	for (;;) {
		uv_run(&loop, UV_RUN_NOWAIT);
		if (off < len) {
			ssize_t w = send(s, bytes + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w > 0)
				off += (size_t)w;
			else if (w < 0 && errno != EAGAIN && errno != EINPROGRESS && errno != ENOTCONN)
				break;
		} else if (!shut) {
			shutdown(s, SHUT_WR);
			shut = 1;
		}
		ssize_t r = recv(s, buf, sizeof buf, MSG_DONTWAIT);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != ENOTCONN))
			break;
		if (now_ms() > deadline)
			break;
		if (r < 0)
			usleep(50);
	}
	close(s);
	/* Let the server notice the close and free the connection. */
	for (int i = 0; i < 20; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	free(req);
	return 0;
}
