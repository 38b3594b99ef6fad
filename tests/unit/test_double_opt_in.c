/*
 * test_double_opt_in.c — email double opt-in (policy.double_opt_in, sql/0011, core/confirm.c).
 *
 * Tokens: a confirm token opens no unsubscribe page and an unsubscribe token confirms nothing.
 * End to end through `nudge serve` (intake, workflow engine, dispatcher, smtp plugin to the SMTP
 * stand-in, HTTP listener): a signup posted to /v1/events with email consent "subscribed" makes
 * the consent pending and sends a confirmation; the welcome workflow that the signup starts has
 * its marketing email held; the test follows the confirmation's link (GET changes nothing, a
 * forged token gets 400, POST confirms with evidence) and the held email goes out. A repeated
 * opt-in sends no second confirmation; a grant the store says it confirmed needs none; a pending
 * consent not confirmed within the hold drops the email with its reason; a confirm link used after
 * an unsubscribe subscribes nobody.
 */
#include "links.h"
#include "ng.h"
#include "support/serve_proc.h"
#include "support/smtp_standin.h"
#include "testlib.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const unsigned char secret[] = "a test secret";

static void test_confirm_and_unsubscribe_tokens_do_not_mix(void)
{
	char c[NG_LINK_TOKEN_LEN + 1], u[NG_LINK_TOKEN_LEN + 1];
	ASSERT_EQ_INT(
	    ng_link_token(secret, sizeof secret - 1, NG_LINK_CONFIRM, 42, "email", 7, c, sizeof c),
	    0);
	ASSERT_EQ_INT(ng_link_token(secret, sizeof secret - 1, NG_LINK_UNSUBSCRIBE, 42, "email", 7,
	                            u, sizeof u),
	              0);
	ASSERT(strcmp(c, u) != 0);
	int64_t cid, mid;
	const char *ch;
	ASSERT_EQ_INT(
	    ng_link_token_parse(secret, sizeof secret - 1, NG_LINK_CONFIRM, c, &cid, &ch, &mid), 0);
	ASSERT_EQ_INT(cid, 42);
	ASSERT_EQ_INT(mid, 7);
	ASSERT_EQ_STR(ch, "email");
	ASSERT_EQ_INT(
	    ng_link_token_parse(secret, sizeof secret - 1, NG_LINK_UNSUBSCRIBE, c, &cid, &ch, &mid),
	    -EINVAL);
	ASSERT_EQ_INT(
	    ng_link_token_parse(secret, sizeof secret - 1, NG_LINK_CONFIRM, u, &cid, &ch, &mid),
	    -EINVAL);
	char *url = ng_link_url("https://shop.example//", secret, sizeof secret - 1,
	                        NG_LINK_CONFIRM, 42, "email", 7);
	ASSERT(url != NULL);
	ASSERT(strncmp(url, "https://shop.example/c/", 23) == 0);
	ASSERT_EQ_STR(url + 23, c);
	free(url);
	ASSERT(ng_link_url(NULL, secret, sizeof secret - 1, NG_LINK_CONFIRM, 42, "email", 7) ==
	       NULL);
}

/* ---- through the daemon --------------------------------------------------------------------- */

/* GET or POST url; a POST with a body is an API call with the key. The status and body. */
static long http(const char *method, const char *url, const char *post, struct ng_test_body *b)
{
	static const char *const api[] = {"Content-Type: application/json",
	                                  "Authorization: Bearer doi-test-key", NULL};
	return ng_test_http(method, url, post, post ? api : NULL, b, NULL);
}

/* The welcome a signup starts: one marketing email at once. */
static const char welcome[] =
    "return { name = 'welcome', trigger = {event = 'newsletter.signup'},\n"
    "  run = function(ctx)\n"
    "    ctx.send{channel = 'email', template = 'news1', data = {subject = 'Welcome aboard'}}\n"
    "  end }\n";

struct rig {
	struct ng_test_schema sc;
	struct ng_smtp_standin *smtp;
	char dir[64], log[128];
	int port;
	pid_t pid;
};

static void rig_start(struct rig *r)
{
	ng_test_schema_open(&r->sc);
	ASSERT_EQ_INT(ng_smtp_standin_start(&r->smtp, NULL), 0);
	snprintf(r->dir, sizeof r->dir, "/tmp/nudge-doi-XXXXXX");
	ASSERT(mkdtemp(r->dir) != NULL);
	char wf[96], path[128], conf[128];
	snprintf(wf, sizeof wf, "%s/wf", r->dir);
	ASSERT_EQ_INT(mkdir(wf, 0700), 0);
	snprintf(path, sizeof path, "%s/welcome.lua", wf);
	FILE *f = fopen(path, "w");
	fputs(welcome, f);
	fclose(f);
	snprintf(conf, sizeof conf, "%s/nudge.conf.lua", r->dir);
	snprintf(r->log, sizeof r->log, "%s/nudge.log", r->dir);
	r->port = ng_test_free_port();
	f = fopen(conf, "w");
	fprintf(
	    f,
	    "return {\n"
	    "  database = { conninfo = [[%s]], pool_size = 2 },\n"
	    "  http = { listen = \"127.0.0.1:%d\" },\n"
	    "  store = { name = \"The Shop\", base_url = \"https://shop.example\" },\n"
	    "  paths = { plugins = \"%s/plugins\", workflows = \"%s\",\n"
	    "    templates = \"%s/tests/templates\" },\n"
	    "  intake = { api_keys = { { name = 'test', key = 'doi-test-key' } } },\n"
	    "  unsubscribe = { secret = \"%s\" },\n"
	    "  policy = { double_opt_in = { email = true, template = 'confirm', hold = '1h' } },\n"
	    "  dispatch = { poll_ms = 100 },\n"
	    "  channels = { { name = \"email\", plugin = \"smtp\", config = {\n"
	    "    host = \"127.0.0.1\", port = %d, starttls = \"off\", timeout_ms = 5000,\n"
	    "    from = \"shop@example.com\" } } },\n"
	    "}\n",
	    r->sc.conninfo, r->port, ng_test_build_dir(), wf, getenv("NUDGE_TEST_TOP"),
	    (const char *)secret, ng_smtp_standin_port(r->smtp));
	fclose(f);
	r->pid = ng_test_serve_spawn(conf, r->log);
	uint64_t deadline = ng_test_now_ms() + 20000;
	while ((ng_test_q1(r->sc.pg, "SELECT count(*) FROM workflow_versions") < 1 ||
	        ng_test_q1(r->sc.pg, "SELECT count(*) FROM policy_settings") < 1) &&
	       ng_test_now_ms() < deadline)
		usleep(10000);
	ASSERT_EQ_INT(ng_test_q1(r->sc.pg, "SELECT count(*) FROM policy_settings"), 1);
}

static void rig_stop(struct rig *r)
{
	kill(r->pid, SIGTERM);
	ASSERT_EQ_INT(ng_test_serve_wait(r->pid, 20000), 0);
	ng_smtp_standin_stop(r->smtp);
	ng_test_schema_close(&r->sc);
	char *cmd = ng_xasprintf("rm -rf '%s'", r->dir);
	ASSERT_EQ_INT(system(cmd), 0);
	free(cmd);
}

static void rig_fail_log(struct rig *r)
{
	char *cmd = ng_xasprintf("tail -n 30 '%s' >&2", r->log);
	ASSERT_EQ_INT(system(cmd), 0);
	free(cmd);
}

/* Posts one event to /v1/events and checks it was accepted. */
static void post_event(struct rig *r, const char *json)
{
	char url[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/events", r->port);
	struct ng_test_body b;
	long st = http("POST", url, json, &b);
	if (st != 200 && st != 202)
		fprintf(stderr, "POST /v1/events: %ld %s\n", st, b.buf);
	ASSERT(st == 200 || st == 202);
}

/* Waits until the sink has n messages; fails the test (with the log) if not in 20 s. */
static void wait_received(struct rig *r, int n)
{
	struct ng_smtp_standin_stats st = {0};
	uint64_t deadline = ng_test_now_ms() + 20000;
	while (st.accepted < n && ng_test_now_ms() < deadline) {
		usleep(10000);
		ng_smtp_standin_stats(r->smtp, &st);
	}
	if (st.accepted != n)
		rig_fail_log(r);
	ASSERT_EQ_INT(st.accepted, n);
}

static long long wait_q(struct rig *r, long long want, const char *sql)
{
	uint64_t deadline = ng_test_now_ms() + 20000;
	long long v;
	while ((v = ng_test_q1(r->sc.pg, "%s", sql)) != want && ng_test_now_ms() < deadline)
		usleep(20000);
	if (v != want) {
		fprintf(stderr, "waited for %lld, have %lld: %s\n", want, v, sql);
		rig_fail_log(r);
	}
	return v;
}

static const char signup[] =
    "{\"type\": \"%s\", \"idempotency_key\": \"%s\","
    " \"customer\": {\"email\": \"%s\", \"first_name\": \"Ada\"},"
    " \"consent\": {\"email\": {\"state\": \"subscribed\", \"source\": \"footer_form\","
    " \"evidence\": {\"wording\": \"Send me news and offers\"%s}}}}";

static void test_marketing_waits_for_the_confirm_link(void)
{
	struct rig r;
	rig_start(&r);
	char ev[1024];
	snprintf(ev, sizeof ev, signup, "newsletter.signup", "signup-1", "ada@example.org", "");
	post_event(&r, ev);
	long long cid =
	    ng_test_q1(r.sc.pg, "SELECT id FROM customers WHERE email = 'ada@example.org'");
	ASSERT(cid > 0);
	ASSERT_EQ_INT(ng_test_q1(r.sc.pg,
	                         "SELECT count(*) FROM consent_current WHERE customer_id = %lld"
	                         " AND channel = 'email' AND status = 'pending'",
	                         cid),
	              1);
	/* The confirmation arrives; the welcome is held for it. */
	wait_received(&r, 1);
	struct ng_smtp_received rc;
	ASSERT_EQ_INT(ng_smtp_standin_received(r.smtp, 0, &rc), 0);
	char *subj = ng_test_header(rc.data, "Subject");
	ASSERT_EQ_STR(subj, "Confirm your subscription");
	free(subj);
	ASSERT(ng_test_header(rc.data, "List-Unsubscribe") == NULL); /* transactional */
	/* The link as a mail client shows it: quoted-printable decoded. */
	char decoded[8192];
	ng_test_qp_decode(rc.data, strlen(rc.data), decoded, sizeof decoded);
	const char *at = strstr(decoded, "Confirm: https://shop.example/c/");
	ASSERT(at != NULL);
	char *tok = ng_xstrndup(at + 32, NG_LINK_TOKEN_LEN);
	ng_smtp_received_free(&rc);
	ASSERT_EQ_INT(wait_q(&r, 1,
	                     "SELECT count(*) FROM messages WHERE workflow = 'welcome'"
	                     " AND status = 'deferred' AND last_error LIKE 'consent_pending%'"),
	              1);

	/* The same opt-in again (the store repeats it with every checkout): no second
	 * confirmation, nothing new in the ledger. */
	snprintf(ev, sizeof ev, signup, "customer.updated", "signup-2", "ada@example.org", "");
	post_event(&r, ev);
	ASSERT_EQ_INT(ng_test_q1(r.sc.pg, "SELECT count(*) FROM messages"
	                                  " WHERE workflow = 'double_opt_in'"),
	              1);
	ASSERT_EQ_INT(
	    ng_test_q1(r.sc.pg, "SELECT count(*) FROM consents WHERE customer_id = %lld", cid), 1);

	char url[256];
	struct ng_test_body b;
	snprintf(url, sizeof url, "http://127.0.0.1:%d/c/%s", r.port, tok);
	ASSERT_EQ_INT(http("GET", url, NULL, &b), 200);
	ASSERT_CONTAINS(b.buf, "The Shop");
	ASSERT_CONTAINS(b.buf, "<form method=\"post\">");
	ASSERT_EQ_INT(ng_test_q1(r.sc.pg, "SELECT count(*) FROM consents WHERE status = 'granted'"),
	              0);
	char bad[256];
	snprintf(bad, sizeof bad, "http://127.0.0.1:%d/c/%c%s", r.port, tok[0] == 'A' ? 'B' : 'A',
	         tok + 1);
	ASSERT_EQ_INT(http("POST", bad, NULL, &b), 400);
	/* An unsubscribe token of the same customer and message does not confirm. */
	char utok[NG_LINK_TOKEN_LEN + 1];
	long long mid =
	    ng_test_q1(r.sc.pg, "SELECT id FROM messages WHERE workflow = 'double_opt_in'");
	ASSERT_EQ_INT(ng_link_token(secret, sizeof secret - 1, NG_LINK_UNSUBSCRIBE, cid, "email",
	                            mid, utok, sizeof utok),
	              0);
	snprintf(bad, sizeof bad, "http://127.0.0.1:%d/c/%s", r.port, utok);
	ASSERT_EQ_INT(http("POST", bad, NULL, &b), 400);
	ASSERT_EQ_INT(ng_test_q1(r.sc.pg, "SELECT count(*) FROM consents WHERE status = 'granted'"),
	              0);

	ASSERT_EQ_INT(http("POST", url, NULL, &b), 200);
	ASSERT_CONTAINS(b.buf, "Subscription confirmed");
	ASSERT_EQ_INT(ng_test_q1(r.sc.pg,
	                         "SELECT count(*) FROM consent_current WHERE customer_id = %lld"
	                         " AND channel = 'email' AND status = 'granted'"
	                         " AND source = 'confirm_link'",
	                         cid),
	              1);
	ASSERT_EQ_INT(ng_test_q1(r.sc.pg,
	                         "SELECT count(*) FROM consents WHERE status = 'granted'"
	                         " AND evidence->>'ip' = '127.0.0.1'"
	                         " AND evidence->>'user_agent' = 'nudge-test-client'"
	                         " AND (evidence->>'message_id')::bigint = %lld"
	                         " AND (evidence->>'confirmed')::boolean",
	                         mid),
	              1);
	/* The held welcome goes out now, not after the hold. */
	wait_received(&r, 2);
	ASSERT_EQ_INT(ng_smtp_standin_received(r.smtp, 1, &rc), 0);
	subj = ng_test_header(rc.data, "Subject");
	ASSERT_EQ_STR(subj, "Welcome aboard");
	free(subj);
	ng_smtp_received_free(&rc);
	/* A second click records nothing new. */
	ASSERT_EQ_INT(http("POST", url, NULL, &b), 200);
	ASSERT_CONTAINS(b.buf, "Already confirmed");
	ASSERT_EQ_INT(ng_test_q1(r.sc.pg, "SELECT count(*) FROM consents WHERE status = 'granted'"),
	              1);
	free(tok);
	rig_stop(&r);
}

static void test_confirmed_hold_expiry_and_withdrawn(void)
{
	struct rig r;
	rig_start(&r);
	char ev[1024];
	/* The store confirmed the address itself: granted at once, no confirmation. */
	snprintf(ev, sizeof ev, signup, "newsletter.signup", "s-bo", "bo@example.org",
	         ", \"confirmed\": true");
	post_event(&r, ev);
	/* Never confirmed within the hold: the welcome is dropped with the reason. */
	snprintf(ev, sizeof ev, signup, "newsletter.signup", "s-cy", "cy@example.org", "");
	post_event(&r, ev);
	/* Unsubscribed before using the link: the link subscribes nobody. */
	snprintf(ev, sizeof ev, signup, "newsletter.signup", "s-di", "di@example.org", "");
	post_event(&r, ev);

	ASSERT_EQ_INT(ng_test_q1(r.sc.pg,
	                         "SELECT count(*) FROM consent_current k JOIN customers c"
	                         " ON c.id = k.customer_id WHERE c.email = 'bo@example.org'"
	                         " AND k.status = 'granted'"),
	              1);
	/* Bo's welcome plus two confirmations. */
	wait_received(&r, 3);
	ASSERT_EQ_INT(wait_q(&r, 1,
	                     "SELECT count(*) FROM messages m JOIN customers c"
	                     " ON c.id = m.customer_id WHERE c.email = 'bo@example.org'"
	                     " AND m.workflow = 'welcome' AND m.status = 'sent'"),
	              1);
	ASSERT_EQ_INT(ng_test_q1(r.sc.pg, "SELECT count(*) FROM messages"
	                                  " WHERE workflow = 'double_opt_in'"),
	              2);
	ASSERT_EQ_INT(wait_q(&r, 2,
	                     "SELECT count(*) FROM messages WHERE workflow = 'welcome'"
	                     " AND status = 'deferred'"),
	              2);

	/* Cy's pending consent is older than the hold: the welcome, due again, is dropped. */
	ng_test_q1(r.sc.pg, "WITH u AS (UPDATE consents k SET recorded_at = now() - interval '2h'"
	                    " FROM customers c WHERE c.id = k.customer_id"
	                    " AND c.email = 'cy@example.org' RETURNING 1) SELECT count(*) FROM u");
	ng_test_q1(r.sc.pg, "WITH u AS (UPDATE messages m SET next_attempt_at = now()"
	                    " FROM customers c WHERE c.id = m.customer_id"
	                    " AND c.email = 'cy@example.org' AND m.status = 'deferred'"
	                    " RETURNING 1) SELECT count(*) FROM u");
	ASSERT_EQ_INT(wait_q(&r, 1,
	                     "SELECT count(*) FROM messages m JOIN customers c"
	                     " ON c.id = m.customer_id WHERE c.email = 'cy@example.org'"
	                     " AND m.status = 'skipped'"
	                     " AND m.last_error = 'consent_pending: not confirmed within 1h'"),
	              1);

	/* Di unsubscribes (the store reports it), then clicks the old confirm link. */
	snprintf(ev, sizeof ev,
	         "{\"type\": \"customer.updated\", \"idempotency_key\": \"s-di-2\","
	         " \"customer\": {\"email\": \"di@example.org\"},"
	         " \"consent\": {\"email\": \"unsubscribed\"}}");
	post_event(&r, ev);
	long long di =
	    ng_test_q1(r.sc.pg, "SELECT id FROM customers WHERE email = 'di@example.org'");
	long long mid = ng_test_q1(r.sc.pg,
	                           "SELECT id FROM messages WHERE workflow = 'double_opt_in'"
	                           " AND customer_id = %lld",
	                           di);
	char *url = ng_link_url("http://127.0.0.1:1", secret, sizeof secret - 1, NG_LINK_CONFIRM,
	                        di, "email", mid);
	char local[256];
	snprintf(local, sizeof local, "http://127.0.0.1:%d%s", r.port, strstr(url, "/c/"));
	free(url);
	struct ng_test_body b;
	ASSERT_EQ_INT(http("POST", local, NULL, &b), 410);
	ASSERT_EQ_INT(ng_test_q1(r.sc.pg,
	                         "SELECT count(*) FROM consent_current WHERE customer_id = %lld"
	                         " AND status = 'withdrawn'",
	                         di),
	              1);
	ASSERT_EQ_INT(ng_test_q1(r.sc.pg,
	                         "SELECT count(*) FROM consents WHERE customer_id = %lld"
	                         " AND status = 'granted'",
	                         di),
	              0);
	rig_stop(&r);
}

NG_TESTS(NG_TEST(test_confirm_and_unsubscribe_tokens_do_not_mix),
         NG_TEST(test_marketing_waits_for_the_confirm_link),
         NG_TEST(test_confirmed_hold_expiry_and_withdrawn), )
