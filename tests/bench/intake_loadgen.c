/*
 * intake_loadgen.c — an open-loop load generator for bench_intake.sh: signed Shopify checkouts
 * posted at a constant RATE, whatever the server's latency.
 *
 * wrk is closed-loop: a connection sends its next request only after the last answer, so a slow
 * server is offered less and its queueing never shows in the latencies (coordinated omission).
 * Here request k is due at t0 + k / RATE. When it is due it goes out on a free keep-alive
 * connection, or waits in line for one; its latency runs from when it was due to when its whole
 * answer arrived. The figure is what a store's webhooks arriving at that rate would see.
 *
 *   intake_loadgen HOST PORT RATE SECONDS CONNECTIONS BODY_DIR SHOP RUN
 *
 * BODY_DIR holds 1.json … N.json and sigs (their base64 HMACs, a line each), as made by
 * bench_intake.sh for intake_checkout.lua. Prints one line:
 *   RESULT offered=R rate=… p50_ms=… p99_ms=… max_ms=… requests=… errors=…
 * rate is the answers (2xx/3xx) over the time they took: the window, or until the last answer when
 * a queue drained after it. Answers >= 400, connection errors and requests still unanswered 10 s
 * after the window are errors.
 */
#include <uv.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct conn {
	uv_tcp_t tcp;
	int busy, open;
	uint64_t due;  /* when its current request was due (ns) */
	char in[8192]; /* the answer so far */
	size_t inlen;
	uv_write_t wr;
	char *out;
};

static struct {
	const char *host, *shop, *run;
	int port, nconns;
	double rate;
	uint64_t t0, window, sent, outstanding, last_done;
	char **bodies, **sigs;
	size_t nbodies;
	struct conn *conns;
	int connected;
	uint64_t *lat;
	size_t nlat, caplat, errors;
	uv_timer_t tick;
	int stopping;
} g;

static void start_connect(struct conn *c);

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "intake_loadgen: cannot open %s\n", path);
		exit(2);
	}
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *p = malloc((size_t)n + 1);
	if (!p || fread(p, 1, (size_t)n, f) != (size_t)n)
		exit(2);
	p[n] = '\0';
	fclose(f);
	return p;
}

static void record(uint64_t due, int ok)
{
	if (!ok) {
		g.errors++;
		return;
	}
	if (g.nlat == g.caplat) {
		g.caplat = g.caplat ? g.caplat * 2 : 65536;
		g.lat = realloc(g.lat, g.caplat * sizeof *g.lat);
		if (!g.lat)
			exit(2);
	}
	g.last_done = uv_hrtime();
	g.lat[g.nlat++] = g.last_done - due;
}

static void on_close(uv_handle_t *h)
{
	struct conn *c = h->data;
	c->open = 0;
	if (!g.stopping)
		start_connect(c);
}

/* The request on c failed or the server closed: count it and reconnect. */
static void drop(struct conn *c)
{
	if (c->busy) {
		c->busy = 0;
		g.outstanding--;
		record(c->due, 0);
	}
	if (c->open && !uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	(void)hint;
	struct conn *c = h->data;
	*buf = uv_buf_init(c->in + c->inlen, (unsigned)(sizeof c->in - c->inlen));
}

/* A whole answer in c->in? Returns its length (0: not yet), and sets *status and *closing. */
static size_t answer_length(struct conn *c, int *status, int *closing)
{
	c->in[c->inlen < sizeof c->in ? c->inlen : sizeof c->in - 1] = '\0';
	char *end = strstr(c->in, "\r\n\r\n");
	if (!end)
		return 0;
	*status = atoi(c->in + 9); /* "HTTP/1.1 200" */
	size_t clen = 0;
	*closing = 0;
	for (char *line = strstr(c->in, "\r\n"); line && line < end;
	     line = strstr(line + 2, "\r\n")) {
		if (strncasecmp(line + 2, "Content-Length:", 15) == 0)
			clen = strtoul(line + 17, NULL, 10);
		else if (strncasecmp(line + 2, "Connection: close", 17) == 0)
			*closing = 1;
	}
	size_t total = (size_t)(end + 4 - c->in) + clen;
	return c->inlen >= total ? total : 0;
}

static void issue(void);

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	(void)buf;
	struct conn *c = s->data;
	if (n < 0) {
		drop(c);
		return;
	}
	c->inlen += (size_t)n;
	int status = 0, closing = 0;
	size_t len = answer_length(c, &status, &closing);
	if (!len) {
		if (c->inlen >= sizeof c->in - 1)
			drop(c); /* an answer larger than we ever expect */
		return;
	}
	memmove(c->in, c->in + len, c->inlen - len);
	c->inlen -= len;
	if (c->busy) {
		c->busy = 0;
		g.outstanding--;
		record(c->due, status >= 200 && status < 400);
	}
	if (closing)
		drop(c);
	else
		issue();
}

static void on_written(uv_write_t *w, int status)
{
	struct conn *c = w->data;
	free(c->out);
	c->out = NULL;
	if (status < 0)
		drop(c);
}

static void on_connected(uv_connect_t *req, int status)
{
	struct conn *c = req->data;
	free(req);
	if (status < 0) {
		fprintf(stderr, "intake_loadgen: cannot connect to %s:%d: %s\n", g.host, g.port,
		        uv_strerror(status));
		exit(2);
	}
	c->inlen = 0;
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	g.connected++;
	issue();
}

static void start_connect(struct conn *c)
{
	struct sockaddr_in addr;
	uv_ip4_addr(g.host, g.port, &addr);
	uv_tcp_init(uv_default_loop(), &c->tcp);
	uv_tcp_nodelay(&c->tcp, 1);
	c->tcp.data = c;
	c->open = 1;
	uv_connect_t *req = malloc(sizeof *req);
	req->data = c;
	uv_tcp_connect(req, &c->tcp, (struct sockaddr *)&addr, on_connected);
}

static void send_on(struct conn *c, uint64_t due)
{
	size_t i = g.sent % g.nbodies;
	const char *body = g.bodies[i];
	size_t blen = strlen(body);
	size_t cap = blen + 1024;
	c->out = malloc(cap);
	int n =
	    snprintf(c->out, cap,
	             "POST /v1/webhooks/shopify HTTP/1.1\r\nHost: %s:%d\r\n"
	             "Content-Type: application/json\r\nX-Shopify-Topic: checkouts/create\r\n"
	             "X-Shopify-Shop-Domain: %s\r\nX-Shopify-Hmac-Sha256: %s\r\n"
	             "X-Shopify-Event-Id: %s-%llu\r\nContent-Length: %zu\r\n\r\n",
	             g.host, g.port, g.shop, g.sigs[i], g.run, (unsigned long long)g.sent, blen);
	memcpy(c->out + n, body, blen);
	c->busy = 1;
	c->due = due;
	g.sent++;
	g.outstanding++;
	uv_buf_t b = uv_buf_init(c->out, (unsigned)(n + (int)blen));
	c->wr.data = c;
	if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written) < 0) {
		free(c->out);
		c->out = NULL;
		drop(c);
	}
}

/* Sends every request that is due, oldest first, while connections are free. */
static void issue(void)
{
	if (g.connected < g.nconns || g.t0 == 0)
		return;
	uint64_t now = uv_hrtime();
	for (int i = 0; i < g.nconns; i++) {
		uint64_t due = g.t0 + (uint64_t)((double)g.sent * 1e9 / g.rate);
		if (due > now || due >= g.t0 + g.window)
			return;
		struct conn *c = &g.conns[i];
		if (c->open && !c->busy && !c->out && !uv_is_closing((uv_handle_t *)&c->tcp))
			send_on(c, due);
	}
}

static void on_tick(uv_timer_t *t)
{
	(void)t;
	if (g.t0 == 0 && g.connected == g.nconns)
		g.t0 = uv_hrtime();
	issue();
	uint64_t now = uv_hrtime();
	if (g.t0 && now >= g.t0 + g.window &&
	    (g.outstanding == 0 || now >= g.t0 + g.window + 10000000000ULL)) {
		g.errors += g.outstanding;
		g.stopping = 1;
		uv_stop(uv_default_loop());
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc != 9) {
		fprintf(stderr, "usage: intake_loadgen HOST PORT RATE SECONDS CONNECTIONS BODY_DIR "
		                "SHOP RUN\n");
		return 2;
	}
	g.host = argv[1];
	g.port = atoi(argv[2]);
	g.rate = atof(argv[3]);
	g.window = (uint64_t)(atof(argv[4]) * 1e9);
	g.nconns = atoi(argv[5]);
	g.shop = argv[7];
	g.run = argv[8];
	if (g.rate <= 0 || g.window == 0 || g.nconns <= 0)
		return 2;
	char path[4096];
	snprintf(path, sizeof path, "%s/sigs", argv[6]);
	char *sigs = slurp(path);
	for (char *line = strtok(sigs, "\n"); line; line = strtok(NULL, "\n")) {
		g.sigs = realloc(g.sigs, (g.nbodies + 1) * sizeof *g.sigs);
		g.bodies = realloc(g.bodies, (g.nbodies + 1) * sizeof *g.bodies);
		g.sigs[g.nbodies] = line;
		snprintf(path, sizeof path, "%s/%zu.json", argv[6], g.nbodies + 1);
		g.bodies[g.nbodies++] = slurp(path);
	}
	if (g.nbodies == 0)
		return 2;
	g.conns = calloc((size_t)g.nconns, sizeof *g.conns);
	for (int i = 0; i < g.nconns; i++)
		start_connect(&g.conns[i]);
	uv_timer_init(uv_default_loop(), &g.tick);
	uv_timer_start(&g.tick, on_tick, 1, 1);
	uv_run(uv_default_loop(), UV_RUN_DEFAULT);
	qsort(g.lat, g.nlat, sizeof *g.lat, cmp_u64);
	double p50 = g.nlat ? g.lat[g.nlat / 2] / 1e6 : 0;
	double p99 = g.nlat ? g.lat[(size_t)((double)(g.nlat - 1) * 0.99)] / 1e6 : 0;
	double mx = g.nlat ? g.lat[g.nlat - 1] / 1e6 : 0;
	/* Completed over the time they took: the window, or longer when a queue drained after it.
	 */
	uint64_t span = g.last_done > g.t0 + g.window ? g.last_done - g.t0 : g.window;
	printf("RESULT offered=%.0f rate=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f requests=%zu "
	       "errors=%zu\n",
	       g.rate, (double)g.nlat / ((double)span / 1e9), p50, p99, mx, g.nlat, g.errors);
	return 0;
}
