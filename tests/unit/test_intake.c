/*
 * test_intake.c — event intake end to end: `nudge serve` as a subprocess against the test
 * PostgreSQL, spoken to over real sockets. Every shared fixture signed and unsigned, replays, the
 * /v1/events API (bearer and HMAC, batches, ids above 2^53), consent and suppression, hostile
 * input (413, 400, 431, smuggling, slowloris), plugin webhooks, group commit, metrics,
 * `nudge events send`, and a PostgreSQL restart under load: no 2xx for an event that is not in
 * the table afterwards, 503 with Retry-After during the outage.
 */
#include "testlib.h"
#include "webhook_verify.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define SHOP        "test-shop.myshopify.com"
#define SHOP_SECRET "shop-secret-1"
#define WOO_SECRET  "woo-secret-1"
#define API_KEY     "api-key-1"

#define NG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static const char *top(void)
{
	const char *t = getenv("NUDGE_TEST_TOP");
	return t ? t : ".";
}

/* BUILD/tests/test_intake → BUILD/<name>. */
static const char *build_path(const char *name)
{
	static char p[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", p, sizeof p - 64);
	ASSERT(n > 0);
	p[n] = '\0';
	*strrchr(p, '/') = '\0';
	*strrchr(p, '/') = '\0';
	size_t l = strlen(p);
	snprintf(p + l, sizeof p - l, "/%s", name);
	return p;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		ng_test_fail(__FILE__, __LINE__, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = malloc((size_t)n + 1);
	ASSERT_EQ_INT(fread(b, 1, (size_t)n, f), n);
	b[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return b;
}

/* ---- the daemon -------------------------------------------------------------------------------
 */

struct daemon {
	pid_t pid;
	int port;
	char conf[64], log[64];
};

static int free_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	ASSERT_EQ_INT(bind(s, (struct sockaddr *)&a, sizeof a), 0);
	socklen_t len = sizeof a;
	getsockname(s, (struct sockaddr *)&a, &len);
	close(s);
	return ntohs(a.sin_port);
}

static int connect_port(int port)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
		close(s);
		return -1;
	}
	struct timeval tv = {.tv_sec = 10};
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	return s;
}

struct resp {
	int status;
	char head[8192];
	char body[65536];
};

/* Reads one response (headers, then Content-Length bytes) from s. Returns the status, -1 on EOF
 * or timeout before a full response. */
static int read_resp(int s, struct resp *r)
{
	static __thread char buf[131072]; /* the load test reads from several threads */
	size_t len = 0;
	r->status = -1;
	r->head[0] = r->body[0] = '\0';
	for (;;) {
		buf[len] = '\0';
		char *end = strstr(buf, "\r\n\r\n");
		if (end) {
			size_t hl = (size_t)(end - buf);
			const char *cl = strcasestr(buf, "\r\nContent-Length:");
			size_t want = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
			if (len >= hl + 4 + want) {
				snprintf(r->head, sizeof r->head, "%.*s", (int)hl, buf);
				snprintf(r->body, sizeof r->body, "%.*s", (int)want, end + 4);
				sscanf(buf, "HTTP/1.%*d %d", &r->status);
				return r->status;
			}
		}
		if (len + 1 >= sizeof buf)
			return -1;
		ssize_t n = read(s, buf + len, sizeof buf - 1 - len);
		if (n < 0 && errno == EINTR)
			continue; /* SIGCHLD of the pg.sh the load test runs */
		if (n <= 0)
			return -1;
		len += (size_t)n;
	}
}

static int send_all(int s, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = send(s, c, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* One request on a fresh connection: METHOD path, extra header lines ("A: b\r\n"…), body. */
static int request(int port, const char *method, const char *path, const char *headers,
                   const char *body, size_t len, struct resp *r)
{
	int s = connect_port(port);
	if (s < 0)
		return -1;
	char head[16384];
	int n = snprintf(head, sizeof head,
	                 "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %zu\r\n%s\r\n",
	                 method, path, len, headers ? headers : "");
	int rc =
	    send_all(s, head, (size_t)n) == 0 && send_all(s, body, len) == 0 ? read_resp(s, r) : -1;
	close(s);
	return rc;
}

static void write_conf(struct daemon *d, const char *extra_http, const char *extra)
{
	snprintf(d->conf, sizeof d->conf, "/tmp/ng-intake-XXXXXX");
	int fd = mkstemp(d->conf);
	ASSERT(fd >= 0);
	char text[8192];
	int n = snprintf(
	    text, sizeof text,
	    "return {\n"
	    "  database = { conninfo = '%s', pool_size = 4, connect_timeout_ms = 1000 },\n"
	    "  http = { listen = '127.0.0.1:%d'%s },\n"
	    "  log = { level = 'warn' },\n"
	    "  paths = { plugins = '%s' },\n"
	    "  intake = { mappers = '%s/contrib/mappers', default_country_code = '1',\n"
	    "    api_keys = { { name = 'test', key = '" API_KEY "' } },\n"
	    "    shopify = { { shop = '" SHOP "', secret = 'old-secret' },\n"
	    "                { shop = '" SHOP "', secret = '" SHOP_SECRET "' },\n"
	    "                { shop = 'other.myshopify.com', secret = 'other-secret' } },\n"
	    "    woocommerce = { { secret = '" WOO_SECRET "' } },\n"
	    "    commit_timeout_ms = 2000, retry_after_s = 7 },\n"
	    "  channels = { { name = 'hooks', plugin = 'good', config = { greeting = 'hi' } } },\n"
	    "  shutdown_timeout_ms = 5000,\n"
	    "%s"
	    "}\n",
	    ng_test_pg(), d->port, extra_http ? extra_http : "", build_path("tests/plugins"), top(),
	    extra ? extra : "");
	ASSERT_EQ_INT(write(fd, text, (size_t)n), n);
	close(fd);
}

static void start_daemon_with(struct daemon *d, const char *extra_http, const char *extra)
{
	d->port = free_port();
	write_conf(d, extra_http, extra);
	snprintf(d->log, sizeof d->log, "/tmp/ng-intake-log-XXXXXX");
	int lfd = mkstemp(d->log);
	ASSERT(lfd >= 0);
	d->pid = fork();
	ASSERT(d->pid >= 0);
	if (d->pid == 0) {
		/* A failed assert ends the test process: the daemon must not outlive it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(lfd, 1);
		dup2(lfd, 2);
		execl(build_path("nudge"), "nudge", "serve", "--config", d->conf, (char *)NULL);
		_exit(127);
	}
	close(lfd);
	struct resp r;
	for (int i = 0; i < 400; i++) {
		usleep(25000);
		if (request(d->port, "GET", "/healthz", NULL, "", 0, &r) == 200)
			return;
	}
	size_t n;
	char *log = slurp(d->log, &n);
	ng_test_fail(__FILE__, __LINE__, "nudge serve did not become healthy: %s", log);
}

static void start_daemon(struct daemon *d, const char *extra_http)
{
	start_daemon_with(d, extra_http, NULL);
}

static void stop_daemon(struct daemon *d)
{
	kill(d->pid, SIGTERM);
	int st = 0;
	ASSERT_EQ_INT(waitpid(d->pid, &st, 0), d->pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		size_t n;
		char *log = slurp(d->log, &n);
		ng_test_fail(__FILE__, __LINE__, "nudge serve exited with %d: %s", st, log);
	}
	unlink(d->conf);
	if (!getenv("NG_TEST_KEEP_LOG"))
		unlink(d->log);
	else
		fprintf(stderr, "# daemon log kept in %s\n", d->log);
}

/* ---- the database -----------------------------------------------------------------------------
 */

static PGconn *pg(void)
{
	static PGconn *c;
	if (!c || PQstatus(c) != CONNECTION_OK) {
		if (c)
			PQfinish(c);
		c = PQconnectdb(ng_test_pg());
		ASSERT(PQstatus(c) == CONNECTION_OK);
	}
	return c;
}

/* The first column of the first row of a query with one text parameter ("" for none, "(null)"
 * for NULL). */
static const char *q1(const char *sql, const char *param)
{
	static char out[4096];
	PGresult *r =
	    PQexecParams(pg(), sql, param ? 1 : 0, NULL, param ? &param : NULL, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		ng_test_fail(__FILE__, __LINE__, "%s: %s", sql, PQerrorMessage(pg()));
	snprintf(out, sizeof out, "%s",
	         PQntuples(r) == 0      ? ""
	         : PQgetisnull(r, 0, 0) ? "(null)"
	                                : PQgetvalue(r, 0, 0));
	PQclear(r);
	return out;
}

static long long count_key(const char *source, const char *key)
{
	char sql[256];
	snprintf(sql, sizeof sql,
	         "SELECT count(*) FROM events WHERE source = '%s' AND dedupe_key = $1", source);
	return atoll(q1(sql, key));
}

static char uniq[32];
static const char *tag(void)
{
	if (!uniq[0])
		snprintf(uniq, sizeof uniq, "%d-%llu", (int)getpid(),
		         (unsigned long long)ng_test_now_ms());
	return uniq;
}

/* ---- store webhooks ---------------------------------------------------------------------------
 */

static int post_shopify(int port, const char *topic, const char *event_id, const char *body,
                        size_t len, const char *secret, const char *shop, struct resp *r)
{
	char sig[NG_WEBHOOK_SIGNATURE_MAX] = "";
	if (secret)
		ng_webhook_sign(NG_WEBHOOK_SHOPIFY, secret, body, len, sig);
	char h[2048];
	snprintf(h, sizeof h,
	         "Content-Type: application/json\r\nX-Shopify-Topic: %s\r\n"
	         "X-Shopify-Shop-Domain: %s\r\nX-Shopify-Event-Id: %s\r\n"
	         "X-Shopify-Webhook-Id: wh-%s\r\n%s%s%s",
	         topic, shop, event_id, event_id, secret ? "X-Shopify-Hmac-Sha256: " : "", sig,
	         secret ? "\r\n" : "");
	return request(port, "POST", "/v1/webhooks/shopify", h, body, len, r);
}

struct shopify_case {
	const char *file, *topic, *type;
};

static const struct shopify_case shopify_cases[] = {
    {"checkouts_create.json", "checkouts/create", "checkout.started"},
    {"checkouts_update.json", "checkouts/update", "checkout.updated"},
    {"orders_create.json", "orders/create", "order.placed"},
    {"orders_paid.json", "orders/paid", "order.paid"},
    {"customers_create.json", "customers/create", "customer.created"},
    {"carts_update.json", "carts/update", "cart.updated"},
};

/* The fixture's email, normalised, as the customer row must hold it ("" when it has none). */
static void fixture_email(const char *body, char *out, size_t cap)
{
	const char *sql = "SELECT lower(btrim(coalesce(nullif($1::jsonb->>'email', ''),"
	                  " $1::jsonb->'customer'->>'email', '')))";
	snprintf(out, cap, "%s", q1(sql, body));
}

static void test_shopify_fixtures_signed_and_unsigned(void)
{
	struct daemon d;
	start_daemon(&d, NULL);
	for (size_t i = 0; i < NG_ARRAY_LEN(shopify_cases); i++) {
		const struct shopify_case *c = &shopify_cases[i];
		char path[1024], eid[128], key[160];
		snprintf(path, sizeof path, "%s/../shared/fixtures/shopify/%s", top(), c->file);
		size_t len;
		char *body = slurp(path, &len);
		snprintf(eid, sizeof eid, "ev-%s-%zu", tag(), i);
		snprintf(key, sizeof key, "shopify:event:%s", eid);
		struct resp r;

		/* Unsigned, wrongly signed, signed for another shop: 401 and nothing written. */
		ASSERT_EQ_INT(post_shopify(d.port, c->topic, eid, body, len, NULL, SHOP, &r), 401);
		ASSERT_CONTAINS(r.body, "X-Shopify-Hmac-Sha256");
		ASSERT_EQ_INT(post_shopify(d.port, c->topic, eid, body, len, "wrong", SHOP, &r),
		              401);
		ASSERT_CONTAINS(r.body, "does not match");
		ASSERT_EQ_INT(post_shopify(d.port, c->topic, eid, body, len, SHOP_SECRET,
		                           "other.myshopify.com", &r),
		              401);
		ASSERT_EQ_INT(post_shopify(d.port, c->topic, eid, body, len, SHOP_SECRET,
		                           "unknown.myshopify.com", &r),
		              401);
		ASSERT_EQ_INT(count_key("shopify", key), 0);

		/* Signed: committed before the 200. */
		ASSERT_EQ_INT(post_shopify(d.port, c->topic, eid, body, len, SHOP_SECRET, SHOP, &r),
		              200);
		ASSERT_CONTAINS(r.body, "\"status\":\"accepted\"");
		ASSERT_EQ_INT(count_key("shopify", key), 1);
		ASSERT_EQ_STR(
		    q1("SELECT type FROM events WHERE source = 'shopify' AND dedupe_key = $1", key),
		    c->type);
		ASSERT_EQ_STR(q1("SELECT topic FROM events WHERE dedupe_key = $1", key), c->topic);
		char wh[160];
		snprintf(wh, sizeof wh, "wh-%s", eid);
		ASSERT_EQ_STR(q1("SELECT delivery_id FROM events WHERE dedupe_key = $1", key), wh);
		char email[512];
		fixture_email(body, email, sizeof email);
		if (*email) {
			ASSERT_EQ_STR(q1("SELECT c.email FROM events e JOIN customers c ON"
			                 " c.id = e.customer_id WHERE e.dedupe_key = $1",
			                 key),
			              email);
		}
		if (strncmp(c->topic, "checkouts/", 10) == 0) {
			/* Keyed by token, with the recovery URL. */
			ASSERT_EQ_STR(q1("SELECT key FROM events WHERE dedupe_key = $1", key),
			              q1("SELECT $1::jsonb->>'token'", body));
			ASSERT_EQ_STR(
			    q1("SELECT data->>'recovery_url' FROM events WHERE dedupe_key = $1",
			       key),
			    q1("SELECT $1::jsonb->>'abandoned_checkout_url'", body));
		}
		if (strcmp(c->topic, "customers/create") == 0) {
			/* The store's id, exact (Shopify ids exceed 2^53). */
			ASSERT_EQ_STR(
			    q1("SELECT i.external_id FROM events e JOIN customer_identities i"
			       " ON i.customer_id = e.customer_id AND i.source = 'shopify:" SHOP
			       "' WHERE e.dedupe_key = $1",
			       key),
			    q1("SELECT $1::jsonb->>'id'", body));
		}

		/* The same delivery again: 200, nothing new. */
		ASSERT_EQ_INT(post_shopify(d.port, c->topic, eid, body, len, SHOP_SECRET, SHOP, &r),
		              200);
		ASSERT_CONTAINS(r.body, "\"status\":\"duplicate\"");
		ASSERT_EQ_INT(count_key("shopify", key), 1);
		free(body);
	}

	/* A topic without mapping: 200 ignored, nothing written; no topic: 400. */
	struct resp r;
	const char *b = "{\"id\": 1}";
	ASSERT_EQ_INT(
	    post_shopify(d.port, "app/uninstalled", "x", b, strlen(b), SHOP_SECRET, SHOP, &r), 200);
	ASSERT_CONTAINS(r.body, "ignored");
	stop_daemon(&d);
}

static int post_woo(int port, const char *delivery, const char *body, size_t len,
                    const char *secret, struct resp *r)
{
	char sig[NG_WEBHOOK_SIGNATURE_MAX] = "";
	if (secret)
		ng_webhook_sign(NG_WEBHOOK_WOOCOMMERCE, secret, body, len, sig);
	char h[2048];
	snprintf(h, sizeof h,
	         "Content-Type: application/json\r\nX-WC-Webhook-Topic: order.created\r\n"
	         "X-WC-Webhook-Resource: order\r\nX-WC-Webhook-Event: created\r\n"
	         "X-WC-Webhook-ID: 7\r\nX-WC-Webhook-Delivery-ID: %s\r\n"
	         "X-WC-Webhook-Source: https://shop.example/\r\n%s%s%s",
	         delivery, secret ? "X-WC-Webhook-Signature: " : "", sig, secret ? "\r\n" : "");
	return request(port, "POST", "/v1/webhooks/woocommerce", h, body, len, r);
}

static void test_woocommerce_fixture_ping_and_resource_dedupe(void)
{
	struct daemon d;
	start_daemon(&d, NULL);
	char path[1024];
	snprintf(path, sizeof path, "%s/../shared/fixtures/woocommerce/order_created.json", top());
	size_t len;
	char *fixture = slurp(path, &len);
	/* A fresh order id per run, so the resource key is new. */
	char order[32];
	snprintf(order, sizeof order, "%llu", (unsigned long long)ng_test_now_ms());
	char *body = strdup(q1("SELECT jsonb_set($1::jsonb, '{id}', to_jsonb(9000000000000 + "
	                       "(extract(epoch from clock_timestamp()) * 1000)::bigint))::text",
	                       fixture));
	len = strlen(body);
	char delivery[64], key[128];
	snprintf(delivery, sizeof delivery, "d-%s", tag());
	snprintf(key, sizeof key, "woocommerce:delivery:%s", delivery);
	struct resp r;
	ASSERT_EQ_INT(post_woo(d.port, delivery, body, len, NULL, &r), 401);
	ASSERT_EQ_INT(post_woo(d.port, delivery, body, len, "nope", &r), 401);
	ASSERT_EQ_INT(count_key("woocommerce", key), 0);
	ASSERT_EQ_INT(post_woo(d.port, delivery, body, len, WOO_SECRET, &r), 200);
	ASSERT_CONTAINS(r.body, "accepted");
	ASSERT_EQ_STR(q1("SELECT type FROM events WHERE dedupe_key = $1", key), "order.placed");
	ASSERT_EQ_STR(q1("SELECT c.email FROM events e JOIN customers c ON c.id = e.customer_id"
	                 " WHERE e.dedupe_key = $1",
	                 key),
	              q1("SELECT lower($1::jsonb->'billing'->>'email')", body));
	ASSERT_EQ_STR(q1("SELECT key FROM events WHERE dedupe_key = $1", key),
	              q1("SELECT $1::jsonb->>'id'", body));
	/* A resend of the same order state with a new delivery id: recognised by the resource key.
	 */
	char again[80];
	snprintf(again, sizeof again, "%s-resend", delivery);
	ASSERT_EQ_INT(post_woo(d.port, again, body, len, WOO_SECRET, &r), 200);
	ASSERT_CONTAINS(r.body, "duplicate");
	ASSERT_EQ_INT(atoll(q1("SELECT count(*) FROM events WHERE source = 'woocommerce' AND"
	                       " key = $1",
	                       q1("SELECT $1::jsonb->>'id'", body))),
	              1);

	/* The creation ping: unsigned, form-encoded, 200, nothing written. */
	const char *ping = "webhook_id=7";
	long long before =
	    atoll(q1("SELECT count(*) FROM events WHERE source = $1", "woocommerce"));
	ASSERT_EQ_INT(request(d.port, "POST", "/v1/webhooks/woocommerce",
	                      "Content-Type: application/x-www-form-urlencoded\r\n", ping,
	                      strlen(ping), &r),
	              200);
	ASSERT_EQ_INT(atoll(q1("SELECT count(*) FROM events WHERE source = $1", "woocommerce")),
	              before);
	free(body);
	free(fixture);
	stop_daemon(&d);
}

/* ---- /v1/events -------------------------------------------------------------------------------
 */

static int post_api(int port, const char *auth, const char *body, struct resp *r)
{
	char h[1024];
	snprintf(h, sizeof h, "Content-Type: application/json\r\n%s", auth ? auth : "");
	return request(port, "POST", "/v1/events", h, body, strlen(body), r);
}

static int post_api_bearer(int port, const char *body, struct resp *r)
{
	return post_api(port, "Authorization: Bearer " API_KEY "\r\n", body, r);
}

static void test_api_events_auth_batch_and_big_ids(void)
{
	struct daemon d;
	start_daemon(&d, NULL);
	char body[2048], email[128], idem[64], big_id[32];
	/* Odd and above 2^53, so no double holds it; new per run, so the customer is new. */
	snprintf(big_id, sizeof big_id, "%llu",
	         9007199254740993ULL + 2ULL * (unsigned long long)(ng_test_now_ms() % 100000000));
	snprintf(email, sizeof email, "Jane.%s@Example.com", tag());
	snprintf(idem, sizeof idem, "signup-%s", tag());
	snprintf(body, sizeof body,
	         "{\"type\":\"signup\",\"idempotency_key\":\"%s\",\"customer\":{\"id\":"
	         "%s,\"email\":\"%s\",\"phone\":\"(555) 123-%04d\"},"
	         "\"data\":{\"big\":9223372036854775807,\"n\":9007199254740993}}",
	         idem, big_id, email, (int)(getpid() % 10000));
	struct resp r;
	char key[128];
	snprintf(key, sizeof key, "api:idem:%s", idem);
	ASSERT_EQ_INT(post_api(d.port, NULL, body, &r), 401);
	ASSERT_EQ_INT(post_api(d.port, "Authorization: Bearer wrong\r\n", body, &r), 401);
	char sig[NG_WEBHOOK_SIGNATURE_MAX], h[256];
	ng_webhook_sign(NG_WEBHOOK_NUDGE, "wrong", body, strlen(body), sig);
	snprintf(h, sizeof h, "X-Nudge-Signature: %s\r\n", sig);
	ASSERT_EQ_INT(post_api(d.port, h, body, &r), 401);
	ASSERT_EQ_INT(count_key("api", key), 0);

	ng_webhook_sign(NG_WEBHOOK_NUDGE, API_KEY, body, strlen(body), sig);
	snprintf(h, sizeof h, "X-Nudge-Signature: %s\r\n", sig);
	ASSERT_EQ_INT(post_api(d.port, h, body, &r), 200);
	ASSERT_EQ_INT(count_key("api", key), 1);
	/* Exact above 2^53: in data and as the customer's id. */
	ASSERT_EQ_STR(q1("SELECT data->>'n' FROM events WHERE dedupe_key = $1", key),
	              "9007199254740993");
	ASSERT_EQ_STR(q1("SELECT data->>'big' FROM events WHERE dedupe_key = $1", key),
	              "9223372036854775807");
	ASSERT_EQ_STR(q1("SELECT i.external_id FROM events e JOIN customer_identities i ON"
	                 " i.customer_id = e.customer_id AND i.source = 'api'"
	                 " WHERE e.dedupe_key = $1",
	                 key),
	              big_id);
	/* Normalised identities. */
	char want[128];
	snprintf(want, sizeof want, "jane.%s@example.com", tag());
	ASSERT_EQ_STR(q1("SELECT c.email FROM events e JOIN customers c ON c.id = e.customer_id"
	                 " WHERE e.dedupe_key = $1",
	                 key),
	              want);
	ASSERT_CONTAINS(q1("SELECT c.phone FROM events e JOIN customers c ON c.id = e.customer_id"
	                   " WHERE e.dedupe_key = $1",
	                   key),
	                "+1555123");
	/* A replay: 200, nothing new. */
	ASSERT_EQ_INT(post_api_bearer(d.port, body, &r), 200);
	ASSERT_CONTAINS(r.body, "duplicate");
	ASSERT_EQ_INT(count_key("api", key), 1);

	/* A batch, and the same customer found by email (another case) and by phone. */
	snprintf(body, sizeof body,
	         "{\"events\":[{\"type\":\"page.viewed\",\"idempotency_key\":\"%s-a\","
	         "\"customer\":{\"email\":\"JANE.%s@EXAMPLE.COM\"}},"
	         "{\"type\":\"page.viewed\",\"idempotency_key\":\"%s-b\","
	         "\"customer\":{\"phone\":\"+1 555 123 %04d\"},\"occurred_at\":"
	         "\"2024-05-01T12:00:00+02:00\"}]}",
	         idem, tag(), idem, (int)(getpid() % 10000));
	ASSERT_EQ_INT(post_api_bearer(d.port, body, &r), 200);
	ASSERT_CONTAINS(r.body, "\"accepted\":2");
	char ka[128], kb[128];
	snprintf(ka, sizeof ka, "api:idem:%s-a", idem);
	snprintf(kb, sizeof kb, "api:idem:%s-b", idem);
	const char *cid = q1("SELECT customer_id FROM events WHERE dedupe_key = $1", key);
	char first[32];
	snprintf(first, sizeof first, "%s", cid);
	ASSERT_EQ_STR(q1("SELECT customer_id FROM events WHERE dedupe_key = $1", ka), first);
	ASSERT_EQ_STR(q1("SELECT customer_id FROM events WHERE dedupe_key = $1", kb), first);
	ASSERT_EQ_STR(
	    q1("SELECT occurred_at AT TIME ZONE 'UTC' FROM events WHERE dedupe_key = $1", kb),
	    "2024-05-01 10:00:00");

	/* Mistakes are 400 with a reason, and nothing of the batch is written. */
	ASSERT_EQ_INT(post_api_bearer(d.port, "{\"tpye\":\"x\",\"customer\":{\"id\":1}}", &r), 400);
	ASSERT_CONTAINS(r.body, "unknown field 'tpye'");
	ASSERT_EQ_INT(post_api_bearer(d.port,
	                              "{\"events\":[{\"type\":\"ok\",\"idempotency_key\":\"zz-1\","
	                              "\"customer\":{\"id\":1}},{\"type\":\"bad\"}]}",
	                              &r),
	              400);
	ASSERT_EQ_INT(count_key("api", "api:idem:zz-1"), 0);
	stop_daemon(&d);
}

static void test_consent_recorded_only_on_change_and_suppression_holds(void)
{
	struct daemon d;
	start_daemon(&d, NULL);
	char email[128], body[1024];
	snprintf(email, sizeof email, "consent.%s@example.com", tag());
	struct resp r;
	const char *states[] = {"subscribed", "subscribed", "not_subscribed", "unsubscribed",
	                        "subscribed"};
	for (size_t i = 0; i < NG_ARRAY_LEN(states); i++) {
		snprintf(body, sizeof body,
		         "{\"type\":\"signup\",\"customer\":{\"email\":\"%s\"},"
		         "\"consent\":{\"email\":\"%s\"}}",
		         email, states[i]);
		ASSERT_EQ_INT(post_api_bearer(d.port, body, &r), 200);
		if (i == 4)
			ASSERT_CONTAINS(r.body, "consent_refused");
	}
	/* granted once (the second subscribed changed nothing), then withdrawn; the last opt-in
	 * from an event does not lift the suppression. */
	ASSERT_EQ_STR(
	    q1("SELECT string_agg(status, ',' ORDER BY k.id) FROM consents k JOIN customers"
	       " c ON c.id = k.customer_id WHERE c.email = $1",
	       email),
	    "granted,withdrawn");
	ASSERT_EQ_STR(
	    q1("SELECT reason FROM suppressions WHERE channel = 'email' AND address = $1", email),
	    "unsubscribed");
	ASSERT_EQ_STR(q1("SELECT status FROM consent_current k JOIN customers c ON"
	                 " c.id = k.customer_id WHERE c.email = $1",
	                 email),
	              "withdrawn");
	/* An address suppressed before nudge ever saw the customer (erased, bounced). */
	char other[128];
	snprintf(other, sizeof other, "erased.%s@example.com", tag());
	char sql[512];
	snprintf(sql, sizeof sql,
	         "INSERT INTO suppressions (channel, address_hash, reason, source) VALUES ('email',"
	         " sha256(convert_to('%s', 'UTF8')), 'erased', 'test')",
	         other);
	ng_test_pg_exec(sql);
	snprintf(body, sizeof body,
	         "{\"type\":\"signup\",\"customer\":{\"email\":\"%s\"},"
	         "\"consent\":{\"email\":\"subscribed\",\"sms\":\"pending\"}}",
	         other);
	ASSERT_EQ_INT(post_api_bearer(d.port, body, &r), 200);
	ASSERT_EQ_STR(q1("SELECT string_agg(channel || '=' || status, ',') FROM consents k JOIN"
	                 " customers c ON c.id = k.customer_id WHERE c.email = $1",
	                 other),
	              "sms=pending");
	/* The rule is one SQL function, explicit opt-ins may lift it. */
	ASSERT_EQ_STR(q1("SELECT ng_consent_may_grant('email', $1, false)::text", other), "false");
	ASSERT_EQ_STR(q1("SELECT ng_consent_may_grant('email', $1, true)::text", other), "true");

	/* The person's own unsubscribe (the link in a message, which adds no suppression so that
	 * receipts still go) is not undone by the store's flag: Shopify keeps saying "subscribed"
	 * on every later webhook, since nudge never tells it. Only an explicit opt-in lifts it. */
	char linked[128];
	snprintf(linked, sizeof linked, "linked.%s@example.com", tag());
	snprintf(body, sizeof body,
	         "{\"type\":\"signup\",\"customer\":{\"email\":\"%s\"},"
	         "\"consent\":{\"email\":\"subscribed\"}}",
	         linked);
	ASSERT_EQ_INT(post_api_bearer(d.port, body, &r), 200);
	snprintf(sql, sizeof sql,
	         "INSERT INTO consents (customer_id, channel, purpose, status, source, evidence)"
	         " SELECT id, 'email', 'marketing', 'withdrawn', 'unsubscribe_link', '{}'"
	         " FROM customers WHERE email = '%s'",
	         linked);
	ng_test_pg_exec(sql);
	ASSERT_EQ_INT(post_api_bearer(d.port, body, &r), 200);
	ASSERT_CONTAINS(r.body, "consent_refused");
	ASSERT_EQ_STR(q1("SELECT status || ':' || source FROM consent_current k JOIN customers c"
	                 " ON c.id = k.customer_id WHERE c.email = $1",
	                 linked),
	              "withdrawn:unsubscribe_link");
	snprintf(body, sizeof body,
	         "{\"type\":\"signup\",\"customer\":{\"email\":\"%s\"},"
	         "\"consent\":{\"email\":{\"state\":\"subscribed\",\"explicit\":true,"
	         "\"evidence\":{\"wording\":\"Yes, send me news\"}}}}",
	         linked);
	ASSERT_EQ_INT(post_api_bearer(d.port, body, &r), 200);
	ASSERT_EQ_STR(q1("SELECT status FROM consent_current k JOIN customers c"
	                 " ON c.id = k.customer_id WHERE c.email = $1",
	                 linked),
	              "granted");
	stop_daemon(&d);
}

/* ---- hostile input ----------------------------------------------------------------------------
 */

static void test_bad_input(void)
{
	struct daemon d;
	start_daemon(&d, ", header_timeout_ms = 500, body_timeout_ms = 500");
	struct resp r;
	/* 10 MB announced: 413 before the body is read. */
	int s = connect_port(d.port);
	const char *big = "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " API_KEY
	                  "\r\nContent-Length: 10485760\r\n\r\n";
	ASSERT_EQ_INT(send_all(s, big, strlen(big)), 0);
	uint64_t t0 = ng_test_now_ms();
	ASSERT_EQ_INT(read_resp(s, &r), 413);
	ASSERT_CMP_INT(ng_test_now_ms() - t0, <, 2000);
	close(s);
	/* Chunked past the limit: 413 while reading. */
	s = connect_port(d.port);
	const char *ch =
	    "POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
	ASSERT_EQ_INT(send_all(s, ch, strlen(ch)), 0);
	char chunk[70000];
	int n = snprintf(chunk, sizeof chunk, "%x\r\n", 65536);
	memset(chunk + n, 'a', 65536);
	memcpy(chunk + n + 65536, "\r\n", 2);
	int got = -1;
	for (int i = 0; i < 20 && got < 0; i++) {
		if (send_all(s, chunk, (size_t)n + 65538) != 0)
			break;
		struct pollfd pf = {s, POLLIN, 0};
		if (poll(&pf, 1, 0) == 1)
			got = read_resp(s, &r);
	}
	if (got < 0)
		got = read_resp(s, &r);
	ASSERT_EQ_INT(got, 413);
	close(s);

	ASSERT_EQ_INT(post_api_bearer(d.port, "{\"type\": \"x\",", &r), 400);
	ASSERT_CONTAINS(r.body, "malformed JSON at line 1");
	ASSERT_EQ_INT(post_api_bearer(d.port, "", &r), 400);
	/* Invalid UTF-8 (an overlong '/', then a lone continuation byte). */
	ASSERT_EQ_INT(post_api_bearer(d.port,
	                              "{\"type\":\"signup\",\"customer\":{\"email\":\"a\xc0\xaf"
	                              "@example.com\"}}",
	                              &r),
	              400);
	ASSERT_CONTAINS(r.body, "not valid UTF-8");
	ASSERT_EQ_INT(post_api_bearer(d.port, "{\"type\":\"s\x80\"}", &r), 400);
	/* 10,000-deep nesting. */
	char *deep = malloc(20100);
	size_t k = 0;
	k += (size_t)sprintf(deep, "{\"type\":\"x\",\"customer\":{\"id\":1},\"data\":{\"a\":");
	for (int i = 0; i < 10000; i++)
		deep[k++] = '[';
	for (int i = 0; i < 10000; i++)
		deep[k++] = ']';
	deep[k++] = '}';
	deep[k++] = '}';
	deep[k] = '\0';
	ASSERT_EQ_INT(post_api_bearer(d.port, deep, &r), 400);
	ASSERT_CONTAINS(r.body, "depth");
	free(deep);
	/* Smuggling: Content-Length with Transfer-Encoding, or twice. */
	s = connect_port(d.port);
	const char *smug = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
	                   "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
	ASSERT_EQ_INT(send_all(s, smug, strlen(smug)), 0);
	ASSERT_EQ_INT(read_resp(s, &r), 400);
	close(s);
	s = connect_port(d.port);
	const char *twice = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
	                    "Content-Length: 2\r\n\r\n{}";
	ASSERT_EQ_INT(send_all(s, twice, strlen(twice)), 0);
	ASSERT_EQ_INT(read_resp(s, &r), 400);
	close(s);
	/* A header flood: 431. */
	s = connect_port(d.port);
	const char *start = "POST /v1/events HTTP/1.1\r\nHost: x\r\n";
	ASSERT_EQ_INT(send_all(s, start, strlen(start)), 0);
	for (int i = 0; i < 500; i++) {
		char line[64];
		int l = snprintf(line, sizeof line, "X-Flood-%d: y\r\n", i);
		if (send_all(s, line, (size_t)l) != 0)
			break;
	}
	ASSERT_EQ_INT(read_resp(s, &r), 431);
	close(s);
	/* Slowloris: one byte a (short) while; the 500 ms header deadline cuts it. */
	s = connect_port(d.port);
	const char *slow = "POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaa";
	t0 = ng_test_now_ms();
	int cut = 0;
	for (size_t i = 0; slow[i]; i++) {
		if (send_all(s, slow + i, 1) != 0) {
			cut = 1;
			break;
		}
		usleep(100000);
		struct pollfd pf = {s, POLLIN, 0};
		if (poll(&pf, 1, 0) == 1) {
			cut = 1;
			break;
		}
	}
	ASSERT(cut);
	ASSERT_CMP_INT(ng_test_now_ms() - t0, <, 2000);
	int st = read_resp(s, &r);
	ASSERT(st == 408 || st == -1);
	close(s);
	/* A body that stops coming: 408 at the body deadline. */
	s = connect_port(d.port);
	const char *part =
	    "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"ty";
	ASSERT_EQ_INT(send_all(s, part, strlen(part)), 0);
	t0 = ng_test_now_ms();
	ASSERT_EQ_INT(read_resp(s, &r), 408);
	ASSERT_CMP_INT(ng_test_now_ms() - t0, <, 2000);
	close(s);
	/* Nothing of this reached the database, and the daemon still answers. */
	ASSERT_EQ_INT(request(d.port, "GET", "/healthz", NULL, "", 0, &r), 200);
	stop_daemon(&d);
}

/* ---- plugin webhooks, metrics, group commit ----------------------------------------------------
 */

static void test_plugin_webhooks(void)
{
	struct daemon d;
	start_daemon(&d, NULL);
	struct resp r;
	ASSERT_EQ_INT(request(d.port, "POST", "/v1/webhooks/hooks/status?x=1", NULL, "abc", 3, &r),
	              200);
	ASSERT_CONTAINS(r.body, "\"greeting\":\"hi\"");
	ASSERT_CONTAINS(r.body, "\"path\":\"/status\"");
	ASSERT_CONTAINS(r.body, "\"bytes\":3");
	ASSERT_EQ_INT(request(d.port, "GET", "/v1/webhooks/hooks", NULL, "", 0, &r), 200);
	ASSERT_CONTAINS(r.body, "\"path\":\"\"");
	ASSERT_EQ_INT(request(d.port, "POST", "/v1/webhooks/nobody", NULL, "", 0, &r), 404);
	ASSERT_EQ_INT(request(d.port, "DELETE", "/v1/webhooks/hooks", NULL, "", 0, &r), 405);
	stop_daemon(&d);
}

static double metric(const char *text, const char *line_start)
{
	const char *p = strstr(text, line_start);
	return p ? strtod(p + strlen(line_start), NULL) : -1;
}

/* 64 requests written at once on 64 connections: they share commits. */
static void test_group_commit_and_metrics(void)
{
	struct daemon d;
	start_daemon(&d, NULL);
	enum { N = 64 };
	int socks[N];
	for (int i = 0; i < N; i++) {
		socks[i] = connect_port(d.port);
		ASSERT(socks[i] >= 0);
	}
	for (int i = 0; i < N; i++) {
		char body[256], req[1024];
		int bl = snprintf(body, sizeof body,
		                  "{\"type\":\"group.test\",\"idempotency_key\":\"g-%s-%d\","
		                  "\"customer\":{\"id\":\"g-%s-%d\"}}",
		                  tag(), i, tag(), i < 4 ? 99 : i % 8);
		int n =
		    snprintf(req, sizeof req,
		             "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " API_KEY
		             "\r\nContent-Length: %d\r\n\r\n%s",
		             bl, body);
		ASSERT_EQ_INT(send_all(socks[i], req, (size_t)n), 0);
	}
	for (int i = 0; i < N; i++) {
		struct resp r;
		ASSERT_EQ_INT(read_resp(socks[i], &r), 200);
		close(socks[i]);
	}
	char like[64];
	snprintf(like, sizeof like, "g-%s-%%", tag());
	ASSERT_EQ_INT(
	    atoll(q1("SELECT count(*) FROM events WHERE dedupe_key LIKE 'api:idem:' || $1", like)),
	    N);
	struct resp r;
	ASSERT_EQ_INT(request(d.port, "GET", "/metrics", NULL, "", 0, &r), 200);
	double batches = metric(r.body, "nudge_intake_batches_total{what=\"batches\"} ");
	double events = metric(r.body, "nudge_intake_batches_total{what=\"events\"} ");
	ASSERT_CMP_INT(events, >=, N);
	ASSERT_CMP_INT(batches, <, N);
	ASSERT_CMP_INT(metric(r.body, "nudge_intake_events_total{source=\"api\",outcome="
	                              "\"accepted\"} "),
	               ==, N);
	ASSERT_CMP_INT(metric(r.body, "nudge_http_requests_total{route=\"/v1/events\","
	                              "method=\"POST\",status=\"200\"} "),
	               ==, N);
	ASSERT_CONTAINS(r.body, "nudge_intake_latency_seconds_bucket{source=\"api\",le=\"0.005\"}");
	ASSERT_CONTAINS(r.body, "nudge_db_connections{state=\"ready\"}");
	stop_daemon(&d);
}

/*
 * The intake's transactions do not NOTIFY (sql/0012: that serialised their commits); the daemon
 * notifies after they commit. With the scheduler's poll at ten minutes, only that notification
 * can make it take the accepted events out of the workflow inbox within seconds.
 */
static void test_committed_events_wake_the_scheduler(void)
{
	struct daemon d;
	start_daemon_with(&d, NULL, "  workflows = { poll_ms = 600000 },\n");
	usleep(300000); /* the scheduler's first pass (at start) is over */
	enum { N = 5 };
	for (int i = 0; i < N; i++) {
		char body[256];
		int bl = snprintf(body, sizeof body,
		                  "{\"type\":\"wake.test\",\"idempotency_key\":\"w-%s-%d\","
		                  "\"customer\":{\"id\":\"w-%s\"}}",
		                  tag(), i, tag());
		struct resp r;
		ASSERT_EQ_INT(request(d.port, "POST", "/v1/events",
		                      "Authorization: Bearer " API_KEY "\r\n", body, (size_t)bl,
		                      &r),
		              200);
	}
	char like[64];
	snprintf(like, sizeof like, "w-%s-%%", tag());
	const char *sql = "SELECT count(*) FROM workflow_inbox i JOIN events e"
	                  " ON e.customer_id = i.customer_id AND e.id = i.event_id"
	                  " WHERE e.dedupe_key LIKE 'api:idem:' || $1";
	int left = -1;
	for (int i = 0; i < 100 && left != 0; i++) {
		usleep(50000);
		left = atoi(q1(sql, like));
	}
	ASSERT_EQ_INT(left, 0);
	ASSERT_EQ_INT(
	    atoll(q1("SELECT count(*) FROM events WHERE dedupe_key LIKE 'api:idem:' || $1", like)),
	    N);
	stop_daemon(&d);
}

/* ---- nudge events send ------------------------------------------------------------------------
 */

static int run_nudge(char *const argv[], char *out, size_t cap)
{
	int fds[2];
	ASSERT_EQ_INT(pipe(fds), 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fds[1], 1);
		dup2(fds[1], 2);
		close(fds[0]);
		execv(build_path("nudge"), argv);
		_exit(127);
	}
	close(fds[1]);
	size_t len = 0;
	ssize_t n;
	while (len + 1 < cap && (n = read(fds[0], out + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	out[len] = '\0';
	close(fds[0]);
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void test_events_send_command(void)
{
	struct daemon d;
	start_daemon(&d, NULL);
	char file[64] = "/tmp/ng-intake-ev-XXXXXX";
	int fd = mkstemp(file);
	char body[512];
	int n = snprintf(body, sizeof body,
	                 "{\"type\":\"cli.sent\",\"idempotency_key\":\"cli-%s\","
	                 "\"customer\":{\"email\":\"cli.%s@example.com\"}}\n",
	                 tag(), tag());
	ASSERT_EQ_INT(write(fd, body, (size_t)n), n);
	close(fd);
	char out[4096], key[128];
	snprintf(key, sizeof key, "api:idem:cli-%s", tag());
	ASSERT_EQ_INT(
	    run_nudge((char *const[]){"nudge", "events", "send", file, "--config", d.conf, NULL},
	              out, sizeof out),
	    0);
	ASSERT_CONTAINS(out, "accepted");
	ASSERT_EQ_INT(count_key("api", key), 1);
	/* Again: a duplicate, still exit 0. */
	ASSERT_EQ_INT(
	    run_nudge((char *const[]){"nudge", "events", "send", file, "--config", d.conf, NULL},
	              out, sizeof out),
	    0);
	ASSERT_CONTAINS(out, "duplicate");
	/* A wrong key: refused, exit 1. */
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d", d.port);
	ASSERT_EQ_INT(run_nudge((char *const[]){"nudge", "events", "send", file, "--url", url,
	                                        "--key", "bad", NULL},
	                        out, sizeof out),
	              1);
	ASSERT_CONTAINS(out, "401");
	stop_daemon(&d);
	/* Directly into the database, without a daemon. */
	snprintf(body, sizeof body,
	         "{\"type\":\"cli.direct\",\"idempotency_key\":\"direct-%s\","
	         "\"customer\":{\"email\":\"cli.%s@example.com\"}}\n",
	         tag(), tag());
	fd = open(file, O_WRONLY | O_TRUNC);
	ASSERT_EQ_INT(write(fd, body, strlen(body)), (long long)strlen(body));
	close(fd);
	snprintf(key, sizeof key, "api:idem:direct-%s", tag());
	ASSERT_EQ_INT(run_nudge((char *const[]){"nudge", "events", "send", file, "--direct",
	                                        "--conninfo", (char *)ng_test_pg(), NULL},
	                        out, sizeof out),
	              0);
	ASSERT_EQ_INT(count_key("api", key), 1);
	unlink(file);
}

/* A rotated secret takes effect on SIGHUP, without a restart. */
static void test_secret_rotation_on_sighup(void)
{
	struct daemon d;
	start_daemon(&d, NULL);
	char path[1024];
	snprintf(path, sizeof path, "%s/../shared/fixtures/shopify/orders_create.json", top());
	size_t len, clen;
	char *body = slurp(path, &len);
	char eid[64];
	snprintf(eid, sizeof eid, "rot-%s", tag());
	struct resp r;
	ASSERT_EQ_INT(
	    post_shopify(d.port, "orders/create", eid, body, len, "rotated-secret", SHOP, &r), 401);
	char *conf = slurp(d.conf, &clen);
	char *at = strstr(conf, "'old-secret'");
	ASSERT(at);
	char *next = malloc(clen + 64);
	snprintf(next, clen + 64, "%.*s'rotated-secret'%s", (int)(at - conf), conf,
	         at + strlen("'old-secret'"));
	FILE *f = fopen(d.conf, "w");
	fputs(next, f);
	fclose(f);
	kill(d.pid, SIGHUP);
	int st = 401;
	for (int i = 0; i < 100 && st == 401; i++) {
		usleep(20000);
		st = post_shopify(d.port, "orders/create", eid, body, len, "rotated-secret", SHOP,
		                  &r);
	}
	ASSERT_EQ_INT(st, 200);
	/* The other secret of the shop still signs; the replaced one no longer does. */
	ASSERT_EQ_INT(post_shopify(d.port, "orders/create", eid, body, len, SHOP_SECRET, SHOP, &r),
	              200);
	ASSERT_EQ_INT(post_shopify(d.port, "orders/create", eid, body, len, "old-secret", SHOP, &r),
	              401);
	free(next);
	free(conf);
	free(body);
	stop_daemon(&d);
}

/* ---- PostgreSQL restarted under load ----------------------------------------------------------
 */

struct loader {
	int port, id;
	volatile int *stop;
	int sent, ok, unavailable, other, retry_after_missing;
	char ok_keys[4096][48];
};

static void *load(void *arg)
{
	struct loader *l = arg;
	int s = -1;
	for (int i = 0; !*l->stop && i < 4096; i++) {
		if (s < 0)
			s = connect_port(l->port);
		if (s < 0) {
			usleep(10000);
			continue;
		}
		char idem[48], body[256], req[1024];
		snprintf(idem, sizeof idem, "pg-%s-%d-%d", tag(), l->id, i);
		int bl = snprintf(body, sizeof body,
		                  "{\"type\":\"load.test\",\"idempotency_key\":\"%s\","
		                  "\"customer\":{\"id\":\"load-%d\"}}",
		                  idem, l->id);
		int n =
		    snprintf(req, sizeof req,
		             "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " API_KEY
		             "\r\nContent-Length: %d\r\n\r\n%s",
		             bl, body);
		struct resp r;
		l->sent++;
		int st = send_all(s, req, (size_t)n) == 0 ? read_resp(s, &r) : -1;
		if (st >= 200 && st < 300) {
			snprintf(l->ok_keys[l->ok++], sizeof l->ok_keys[0], "%s", idem);
		} else if (st == 503) {
			l->unavailable++;
			if (!strcasestr(r.head, "\r\nRetry-After: 7"))
				l->retry_after_missing++;
			usleep(20000);
		} else {
			l->other++;
			fprintf(
			    stderr,
			    "# unexpected answer %d (request %d of loader %d, errno %d): %s %s\n",
			    st, i, l->id, errno, r.head, r.body);
		}
		if (st < 0 || strcasestr(r.head, "Connection: close")) {
			close(s);
			s = -1;
		}
	}
	if (s >= 0)
		close(s);
	return NULL;
}

static void test_postgres_restart_under_load(void)
{
	const char *pgdir = getenv("NUDGE_TEST_PGDIR");
	if (!pgdir)
		ng_test_fail(__FILE__, __LINE__,
		             "NUDGE_TEST_PGDIR is not set (run through tests/run.sh)");
	struct daemon d;
	start_daemon(&d, NULL);
	enum { T = 4 };
	static struct loader ls[T];
	pthread_t th[T];
	volatile int stop = 0;
	for (int i = 0; i < T; i++) {
		memset(&ls[i], 0, sizeof ls[i]);
		ls[i] = (struct loader){.port = d.port, .id = i, .stop = &stop};
		pthread_create(&th[i], NULL, load, &ls[i]);
	}
	usleep(300000);
	/* A fast shutdown, half a second down, a start: the connections break, requests in flight
	 * and those arriving before the pool reconnects must get 503. */
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "'%s/tests/pg.sh' restart '%s' 0.5 >/dev/null 2>&1", top(),
	         pgdir);
	ASSERT_EQ_INT(system(cmd), 0);
	/* Until the daemon commits again. */
	struct resp r;
	uint64_t t0 = ng_test_now_ms();
	while (ng_test_now_ms() - t0 < 20000) {
		usleep(100000);
		if (request(d.port, "GET", "/healthz", NULL, "", 0, &r) == 200)
			break;
	}
	usleep(500000);
	stop = 1;
	int ok = 0, unavailable = 0, other = 0;
	for (int i = 0; i < T; i++) {
		pthread_join(th[i], NULL);
		ok += ls[i].ok;
		unavailable += ls[i].unavailable;
		other += ls[i].other;
		ASSERT_EQ_INT(ls[i].retry_after_missing, 0);
	}
	fprintf(stderr, "# restart under load: %d committed, %d answered 503, %d other\n", ok,
	        unavailable, other);
	ASSERT_CMP_INT(unavailable, >, 0);
	ASSERT_CMP_INT(ok, >, 0);
	ASSERT_EQ_INT(other, 0);
	/* Every 2xx is in the table. */
	for (int i = 0; i < T; i++)
		for (int k = 0; k < ls[i].ok; k++) {
			char key[80];
			snprintf(key, sizeof key, "api:idem:%s", ls[i].ok_keys[k]);
			if (count_key("api", key) != 1)
				ng_test_fail(__FILE__, __LINE__,
				             "%s was answered 2xx but is not stored", key);
		}
	/* And the daemon commits again after the restart. */
	ASSERT_EQ_INT(
	    post_api_bearer(d.port, "{\"type\":\"after.restart\",\"customer\":{\"id\":\"x\"}}", &r),
	    200);
	stop_daemon(&d);
}

NG_TESTS(NG_TEST(test_shopify_fixtures_signed_and_unsigned),
         NG_TEST(test_woocommerce_fixture_ping_and_resource_dedupe),
         NG_TEST(test_api_events_auth_batch_and_big_ids),
         NG_TEST(test_consent_recorded_only_on_change_and_suppression_holds),
         NG_TEST(test_bad_input), NG_TEST(test_plugin_webhooks),
         NG_TEST(test_group_commit_and_metrics), NG_TEST(test_committed_events_wake_the_scheduler),
         NG_TEST(test_events_send_command), NG_TEST(test_secret_rotation_on_sighup),
         NG_TEST(test_postgres_restart_under_load))
