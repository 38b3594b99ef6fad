/*
 * test_channels_e2e.c — the SMS and Messenger channels end to end through `nudge serve` (workflow
 * engine, dispatcher, the twilio and messenger plugins, the webhook routes and the report
 * receivers of core/plugin_reports.c in one daemon), against the Twilio and Graph stand-ins on
 * the test's loop. The shipped abandoned_cart workflow runs on a demo clock (clock.speed): its SMS
 * goes through the Twilio stand-in, its Messenger message through the Graph stand-in to a PSID
 * that an inbound referral with a signed ref linked to the customer. Status callbacks: a bad
 * signature gets 403 and changes nothing, out-of-order callbacks never move a status backwards,
 * an undelivered code is kept in the history. An inbound "stop" and " Stop " withdraw SMS
 * consent (the next SMS to the customer is skipped with the reason, a queued one is cancelled),
 * START gives it back. A send whose answer never came is left ambiguous and reconciled.
 */
#include "ng.h"
#include "plugin_reports.h"
#include "support/graph_standin.h"
#include "support/serve_proc.h"
#include "support/twilio_standin.h"
#include "testlib.h"
#include "wf_harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define ACCOUNT    "AC0123456789abcdef0123456789abcdef"
#define TW_TOKEN   "test-auth-token-12345"
#define FB_TOKEN   "page-token-abc"
#define APP_SECRET "app-secret-xyz"
#define VERIFY     "verify-me"
#define SECRET     "e2e unsubscribe secret"
#define FROM       "+15005550006"

static uv_loop_t loop;
static struct tw_standin *tw;
static struct gr_standin *gr;
static struct ng_test_schema sc;
static char dir[64], log_path[128], base[64];
static pid_t pid;

/* Runs the stand-ins' loop for ms. */
static void pump(int ms)
{
	uint64_t end = ng_test_now_ms() + (uint64_t)ms;
	do {
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(2000);
	} while (ng_test_now_ms() < end);
}

/* Pumps until the one-value query gives want (up to ms); returns the last value. */
static long long wait_q(int ms, long long want, const char *sql)
{
	uint64_t end = ng_test_now_ms() + (uint64_t)ms;
	long long v;
	while ((v = ng_test_q1(sc.pg, "%s", sql)) != want && ng_test_now_ms() < end)
		pump(20);
	if (v != want) {
		fprintf(stderr, "  waited for %lld from: %s (have %lld)\n", want, sql, v);
		char *cmd = ng_xasprintf("tail -n 30 '%s' >&2", log_path);
		if (system(cmd) != 0)
			fprintf(stderr, "  (no log)\n");
		free(cmd);
	}
	return v;
}

static int callback_answer(size_t before)
{
	uint64_t end = ng_test_now_ms() + 10000;
	while ((tw_standin_callbacks(tw) <= before || tw_standin_callbacks_pending(tw) > 0) &&
	       ng_test_now_ms() < end)
		pump(5);
	ASSERT(tw_standin_callbacks(tw) > before);
	return tw_standin_callback_status(tw, tw_standin_callbacks(tw) - 1);
}

static int post_status(const char *sid, const char *status, int code, const char *sign_url)
{
	size_t before = tw_standin_callbacks(tw);
	ASSERT_EQ_INT(tw_standin_post_status(tw, sid, status, code, sign_url), 0);
	return callback_answer(before);
}

static int post_sms(const char *from, const char *body)
{
	char url[128];
	snprintf(url, sizeof url, "%s/v1/webhooks/sms", base);
	size_t before = tw_standin_callbacks(tw);
	ASSERT_EQ_INT(tw_standin_post_inbound(tw, url, from, FROM, body), 0);
	return callback_answer(before);
}

static int post_fb(const struct gr_event *ev)
{
	char url[128];
	snprintf(url, sizeof url, "%s/v1/webhooks/fb", base);
	size_t before = gr_standin_callbacks(gr);
	ASSERT_EQ_INT(gr_standin_post_events(gr, url, ev, 1, 0), 0);
	uint64_t end = ng_test_now_ms() + 10000;
	while ((gr_standin_callbacks(gr) <= before || gr_standin_callbacks_pending(gr) > 0) &&
	       ng_test_now_ms() < end)
		pump(5);
	ASSERT(gr_standin_callbacks(gr) > before);
	return gr_standin_callback_status(gr, gr_standin_callbacks(gr) - 1);
}

static void daemon_start(double speed)
{
	ng_test_schema_open(&sc);
	ASSERT_EQ_INT(uv_loop_init(&loop), 0);
	struct tw_standin_options to = {.account_sid = ACCOUNT, .auth_token = TW_TOKEN};
	ASSERT_EQ_INT(tw_standin_start(&tw, &loop, &to), 0);
	struct gr_standin_options go = {
	    .access_token = FB_TOKEN, .app_secret = APP_SECRET, .page_id = "1234567890"};
	ASSERT_EQ_INT(gr_standin_start(&gr, &loop, &go), 0);
	snprintf(dir, sizeof dir, "/tmp/nudge-e2e-XXXXXX");
	ASSERT(mkdtemp(dir) != NULL);
	char conf[128];
	snprintf(conf, sizeof conf, "%s/nudge.conf.lua", dir);
	snprintf(log_path, sizeof log_path, "%s/nudge.log", dir);
	int port = ng_test_free_port();
	snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
	FILE *f = fopen(conf, "w");
	ASSERT(f != NULL);
	fprintf(
	    f,
	    "return {\n"
	    "  database = { conninfo = [[%s]], pool_size = 2 },\n"
	    "  http = { listen = \"127.0.0.1:%d\" },\n"
	    "  clock = { speed = %g },\n"
	    "  store = { name = \"The Shop\", base_url = \"%s\" },\n"
	    "  paths = { plugins = \"%s/plugins\", workflows = \"%s/workflows\",\n"
	    "            templates = \"%s/templates\" },\n"
	    "  unsubscribe = { secret = \"" SECRET "\" },\n"
	    "  dispatch = { poll_ms = 100, reconcile_ms = 300, retry_base_ms = 100 },\n"
	    "  policy = { quiet_hours = { sms = \"\" } },\n"
	    "  channels = {\n"
	    "    { name = \"email\", plugin = \"file\", config = { path = \"%s/mail.txt\" } },\n"
	    "    { name = \"sms\", plugin = \"twilio\", config = {\n"
	    "      account_sid = \"" ACCOUNT "\", auth_token = \"" TW_TOKEN "\",\n"
	    "      from = \"" FROM "\", base_url = \"http://127.0.0.1:%d\",\n"
	    "      status_callback_url = \"%s/v1/webhooks/sms\", rate_per_second = 0,\n"
	    "      timeout_ms = 1000 } },\n"
	    "    { name = \"fb\", plugin = \"messenger\", config = {\n"
	    "      page_access_token = \"" FB_TOKEN "\", app_secret = \"" APP_SECRET "\",\n"
	    "      verify_token = \"" VERIFY "\", page_id = \"1234567890\",\n"
	    "      base_url = \"http://127.0.0.1:%d/\", window_hours = 72 } },\n"
	    "  },\n"
	    "}\n",
	    sc.conninfo, port, speed, base, ng_test_build_dir(), getenv("NUDGE_TEST_TOP"),
	    getenv("NUDGE_TEST_TOP"), dir, tw_standin_port(tw), base, gr_standin_port(gr));
	fclose(f);
	pid = ng_test_serve_spawn(conf, log_path);
	ASSERT_EQ_INT(wait_q(20000, 1,
	                     "SELECT (count(*) > 0)::int FROM workflow_versions"
	                     " WHERE workflow = 'abandoned_cart'"),
	              1);
	/* The listener is the last part to start. */
	uint64_t end = ng_test_now_ms() + 10000;
	while (ng_test_now_ms() < end) {
		char *cmd = ng_xasprintf("grep -q 'listening on' '%s'", log_path);
		int rc = system(cmd);
		free(cmd);
		if (rc == 0)
			break;
		pump(20);
	}
}

static int stopped;
static void on_stopped(void *arg)
{
	NG_UNUSED(arg);
	stopped++;
}

static void daemon_stop(void)
{
	kill(pid, SIGTERM);
	/* The daemon may still be talking to the stand-ins while it drains. */
	uint64_t end = ng_test_now_ms() + 20000;
	int st = -1;
	while (ng_test_now_ms() < end && (st = ng_test_serve_wait(pid, 10)) < 0)
		pump(10);
	ASSERT_EQ_INT(st, 0);
	stopped = 0;
	tw_standin_stop(tw, on_stopped, NULL);
	gr_standin_stop(gr, on_stopped, NULL);
	while (stopped < 2)
		uv_run(&loop, UV_RUN_ONCE);
	uv_run(&loop, UV_RUN_DEFAULT);
	ASSERT_EQ_INT(uv_loop_close(&loop), 0);
	ng_test_schema_close(&sc);
	char *cmd = ng_xasprintf("rm -rf '%s'", dir);
	ASSERT_EQ_INT(system(cmd), 0);
	free(cmd);
}

static long long customer(const char *email, const char *phone, const char *channels)
{
	long long cid = ng_test_q1(sc.pg,
	                           "INSERT INTO customers (email, phone, first_name)"
	                           " VALUES ('%s', '%s', 'Ann') RETURNING id",
	                           email, phone);
	ng_test_q1(sc.pg,
	           "WITH i AS (INSERT INTO consents (customer_id, channel, purpose, status, source)"
	           " SELECT %lld, c, 'marketing', 'granted', 'signup_form'"
	           " FROM unnest(string_to_array('%s', ',')) c RETURNING 1) SELECT count(*) FROM i",
	           cid, channels);
	return cid;
}

static long long queue_sms(long long cid, const char *later)
{
	return ng_test_q1(sc.pg,
	                  "INSERT INTO messages (customer_id, channel, template, purpose, data,"
	                  " next_attempt_at) VALUES (%lld, 'sms', 'cart_reminder_sms', 'marketing',"
	                  " '{\"cart\": {\"recovery_url\": \"https://shop.example/c/9\"}}',"
	                  " now() + interval '%s') RETURNING id",
	                  cid, later);
}

static void test_refs_round_trip_and_refuse_forgeries(void)
{
	const unsigned char *k = (const unsigned char *)SECRET;
	char ref[NG_REPORTS_REF_MAX];
	ng_reports_ref(k, strlen(SECRET), 1234567, ref);
	ASSERT(strncmp(ref, "n1234567-", 9) == 0);
	ASSERT_EQ_INT(strlen(ref), 9 + 22);
	/* Messenger allows letters, digits, - _ and = in a ref. */
	ASSERT_EQ_INT(
	    strspn(ref, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
	    strlen(ref));
	int64_t cid = 0;
	ASSERT_EQ_INT(ng_reports_ref_parse(k, strlen(SECRET), ref, &cid), 0);
	ASSERT_EQ_INT(cid, 1234567);
	for (size_t i = 1; i < strlen(ref); i++) {
		char bad[NG_REPORTS_REF_MAX];
		strcpy(bad, ref);
		bad[i] = bad[i] == '2' ? '3' : '2';
		ASSERT(ng_reports_ref_parse(k, strlen(SECRET), bad, &cid) != 0);
	}
	ASSERT(ng_reports_ref_parse((const unsigned char *)"other", 5, ref, &cid) != 0);
	ASSERT(ng_reports_ref_parse(k, strlen(SECRET), "1234567", &cid) != 0);
	ASSERT(ng_reports_ref_parse(k, strlen(SECRET), "", &cid) != 0);
	ASSERT(ng_reports_ref_parse(k, strlen(SECRET), NULL, &cid) != 0);
}

static void test_abandoned_cart_over_sms_and_messenger(void)
{
	daemon_start(20000); /* an hour in 180 ms */
	long long cid = customer("ann@example.org", "+15551230001", "email,sms,messenger");
	/* A ref nobody signed links nothing; the signed one links the PSID. */
	struct gr_event forged = {.psid = "24680135791113", .kind = "referral", .ref = "n1-forged"};
	ASSERT_EQ_INT(post_fb(&forged), 200);
	char q[512];
	snprintf(q, sizeof q,
	         "SELECT count(*) FROM customers WHERE id = %lld AND messenger_psid"
	         " IS NOT NULL",
	         cid);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "%s", q), 0);
	char ref[NG_REPORTS_REF_MAX];
	ng_reports_ref((const unsigned char *)SECRET, strlen(SECRET), cid, ref);
	struct gr_event linked = {.psid = "24680135791113", .kind = "referral", .ref = ref};
	ASSERT_EQ_INT(post_fb(&linked), 200);
	snprintf(q, sizeof q,
	         "SELECT count(*) FROM customers WHERE id = %lld AND messenger_psid"
	         " = '24680135791113'",
	         cid);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "%s", q), 1);
	/* The anonymous customer the unlinked referral made no longer holds it. */
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(*) FROM customers WHERE messenger_psid"
	                                " = '24680135791113'"),
	              1);
	snprintf(q, sizeof q,
	         "SELECT count(*) FROM events WHERE customer_id = %lld AND type ="
	         " 'messenger.referral' AND source = 'fb'",
	         cid);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "%s", q), 1);

	ng_test_q1(sc.pg,
	           "WITH i AS (INSERT INTO events (customer_id, source, dedupe_key, type, data,"
	           " occurred_at) VALUES (%lld, 'test', 'co-1', 'checkout.started',"
	           " '{\"checkout_id\": \"co-1\", \"total_price\": \"42.00\","
	           " \"recovery_url\": \"https://shop.example/cart/co-1\"}', now()) RETURNING 1)"
	           " SELECT count(*) FROM i",
	           cid);
	ASSERT_EQ_INT(wait_q(30000, 1,
	                     "SELECT count(*) FROM messages WHERE channel = 'sms'"
	                     " AND workflow = 'abandoned_cart' AND status = 'sent'"),
	              1);
	ASSERT_EQ_INT(wait_q(10000, 1,
	                     "SELECT count(*) FROM messages WHERE channel = 'messenger'"
	                     " AND workflow = 'abandoned_cart' AND status = 'sent'"),
	              1);
	ASSERT_EQ_INT(tw_standin_count(tw), 1);
	const struct tw_standin_msg *sms = tw_standin_at(tw, 0);
	ASSERT_EQ_STR(sms->to, "+15551230001");
	ASSERT_CONTAINS(sms->body, "your cart is waiting");
	ASSERT_CONTAINS(sms->body, "https://shop.example/cart/co-1");
	ASSERT_EQ_INT(gr_standin_count(gr), 1);
	const struct gr_standin_msg *fb = gr_standin_at(gr, 0);
	ASSERT_EQ_STR(fb->psid, "24680135791113");
	ASSERT_CONTAINS(fb->text, "your cart at The Shop is still waiting");
	char sid[40];
	snprintf(sid, sizeof sid, "%s", sms->sid);

	/* A forged callback is refused and changes nothing. */
	ASSERT_EQ_INT(post_status(sid, "failed", 30008, "https://attacker.example/v1/webhooks/sms"),
	              403);
	snprintf(q, sizeof q,
	         "SELECT count(*) FROM messages WHERE provider_id = '%s'"
	         " AND status = 'sent'",
	         sid);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "%s", q), 1);
	/* delivered, then the late "sent" and "queued": still delivered. */
	ASSERT_EQ_INT(post_status(sid, "delivered", 0, NULL), 200);
	ASSERT_EQ_INT(post_status(sid, "sent", 0, NULL), 200);
	ASSERT_EQ_INT(post_status(sid, "queued", 0, NULL), 200);
	snprintf(q, sizeof q,
	         "SELECT count(*) FROM messages WHERE provider_id = '%s'"
	         " AND status = 'delivered'",
	         sid);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "%s", q), 1);
	/* The rule is the database's, not only the plugin's memory: */
	snprintf(q, sizeof q,
	         "SELECT (ng_report_status('%s', NULL, 'sent', 'sent', 0, false, 'x')"
	         " = 'stale')::int",
	         sid);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "%s", q), 1);
	snprintf(q, sizeof q,
	         "SELECT (ng_report_status('%s', NULL, 'undelivered', 'undelivered',"
	         " 30003, false, 'x') = 'stale')::int",
	         sid);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "%s", q), 1);
	snprintf(q, sizeof q,
	         "SELECT count(*) FROM messages WHERE provider_id = '%s'"
	         " AND status = 'delivered'",
	         sid);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "%s", q), 1);
	snprintf(q, sizeof q,
	         "SELECT count(*) FROM message_events e JOIN messages m ON"
	         " m.id = e.message_id WHERE m.provider_id = '%s' AND e.detail LIKE '%%30003%%'",
	         sid);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "%s", q), 1);

	/* An undelivered message fails with its code; the carrier's 30005 suppresses the number. */
	long long bob = customer("bob@example.org", "+15551230002", "sms");
	tw_standin_script(tw, "+15551230002", 201, 0, 0, 0, 0);
	queue_sms(bob, "0 s");
	ASSERT_EQ_INT(wait_q(10000, 1,
	                     "SELECT count(*) FROM messages m JOIN customers c ON"
	                     " c.id = m.customer_id WHERE c.phone = '+15551230002'"
	                     " AND m.status = 'sent'"),
	              1);
	const struct tw_standin_msg *b = tw_standin_at(tw, tw_standin_count(tw) - 1);
	ASSERT_EQ_STR(b->to, "+15551230002");
	snprintf(sid, sizeof sid, "%s", b->sid);
	ASSERT_EQ_INT(post_status(sid, "undelivered", 30005, NULL), 200);
	ASSERT_EQ_INT(post_status(sid, "delivered", 0, NULL), 200); /* final stays final */
	snprintf(q, sizeof q,
	         "SELECT count(*) FROM messages WHERE provider_id = '%s'"
	         " AND status = 'failed' AND last_error LIKE 'undelivered 30005%%'",
	         sid);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "%s", q), 1);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(*) FROM suppressions WHERE channel = 'sms'"
	                                " AND address = '+15551230002'"),
	              1);
	daemon_stop();
}

/* The birthday workflow (started by hand: its date trigger is the scheduler's business, tested in
 * workflows/birthday_test.lua) texts and messages the customer through both stand-ins. */
static void test_birthday_over_sms_and_messenger(void)
{
	daemon_start(20000);
	long long cid = customer("bea@example.org", "+15551230009", "email,sms,messenger");
	/* They talk to the store's page through its signed m.me link: linked, and in the window. */
	char ref[NG_REPORTS_REF_MAX];
	ng_reports_ref((const unsigned char *)SECRET, strlen(SECRET), cid, ref);
	struct gr_event linked = {.psid = "13579246801357", .kind = "referral", .ref = ref};
	ASSERT_EQ_INT(post_fb(&linked), 200);
	ASSERT_EQ_INT(wait_q(10000, 1, "SELECT count(*) FROM workflows WHERE name = 'birthday'"),
	              1);
	char ids[24], now[40];
	snprintf(ids, sizeof ids, "%lld", cid);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ng_wf_ts((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, now, sizeof now);
	PGresult *r = PQexecParams(sc.pg, ng_wf_manual_start_sql, 3, NULL,
	                           (const char *[]){ids, now, "birthday"}, NULL, NULL, 0);
	ASSERT_EQ_INT(PQresultStatus(r), PGRES_TUPLES_OK);
	ASSERT_EQ_INT(PQntuples(r), 1);
	PQclear(r);
	ng_test_q1(sc.pg, "SELECT count(*) FROM (SELECT pg_notify('nudge_workflows', 'start')) n");
	ASSERT_EQ_INT(wait_q(30000, 1,
	                     "SELECT count(*) FROM messages WHERE channel = 'sms'"
	                     " AND workflow = 'birthday' AND status = 'sent'"),
	              1);
	ASSERT_EQ_INT(wait_q(10000, 1,
	                     "SELECT count(*) FROM messages WHERE channel = 'messenger'"
	                     " AND workflow = 'birthday' AND status = 'sent'"),
	              1);
	/* What Twilio bills is kept with the message. */
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(*) FROM messages WHERE channel = 'sms'"
	                                " AND workflow = 'birthday' AND segments = 1"
	                                " AND encoding = 'GSM-7'"),
	              1);
	char code[40];
	snprintf(code, sizeof code, "HBD-%lld", cid);
	const struct tw_standin_msg *sms = tw_standin_at(tw, tw_standin_count(tw) - 1);
	ASSERT_EQ_STR(sms->to, "+15551230009");
	ASSERT_CONTAINS(sms->body, "Happy birthday");
	ASSERT_CONTAINS(sms->body, code);
	const struct gr_standin_msg *fb = gr_standin_at(gr, gr_standin_count(gr) - 1);
	ASSERT_EQ_STR(fb->psid, "13579246801357");
	ASSERT_CONTAINS(fb->text, "Happy birthday");
	ASSERT_CONTAINS(fb->text, code);
	daemon_stop();
}

static void test_stop_and_start_keywords(void)
{
	daemon_start(1);
	long long cid = customer("cy@example.org", "+15551230003", "sms");
	long long later = queue_sms(cid, "1 day");
	ASSERT_EQ_INT(post_sms("+15551230003", "stop"), 200);
	char q[512];
	snprintf(q, sizeof q,
	         "SELECT count(*) FROM consent_current WHERE customer_id = %lld AND"
	         " channel = 'sms' AND status = 'withdrawn' AND source = 'inbound_stop'",
	         cid);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "%s", q), 1);
	snprintf(q, sizeof q,
	         "SELECT count(*) FROM consents WHERE customer_id = %lld AND"
	         " evidence->>'keyword' = 'STOP' AND evidence->>'provider_id' LIKE 'SM%%'",
	         cid);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "%s", q), 1);
	snprintf(q, sizeof q,
	         "SELECT count(*) FROM messages WHERE id = %lld AND status ="
	         " 'skipped' AND last_error LIKE 'no_consent: the recipient sent STOP%%'",
	         later);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "%s", q), 1);
	/* " Stop " again: consent stays withdrawn, no second row. */
	ASSERT_EQ_INT(post_sms("+15551230003", " Stop "), 200);
	snprintf(q, sizeof q,
	         "SELECT count(*) FROM consents WHERE customer_id = %lld AND"
	         " status = 'withdrawn'",
	         cid);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "%s", q), 1);
	/* Both messages are events the workflows see. */
	snprintf(q, sizeof q,
	         "SELECT count(*) FROM events WHERE customer_id = %lld AND type ="
	         " 'sms.received'",
	         cid);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "%s", q), 2);
	/* The next SMS to them is skipped with the reason and never reaches Twilio. */
	long long next = queue_sms(cid, "0 s");
	snprintf(q, sizeof q,
	         "SELECT count(*) FROM messages WHERE id = %lld AND status ="
	         " 'skipped'",
	         next);
	ASSERT_EQ_INT(wait_q(10000, 1, q), 1);
	snprintf(q, sizeof q,
	         "SELECT count(*) FROM message_events WHERE message_id = %lld AND"
	         " status = 'skipped' AND detail = 'no_consent'",
	         next);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "%s", q), 1);
	ASSERT_EQ_INT(tw_standin_count(tw), 0);
	/* START gives consent back: a new explicit grant; the next SMS goes. */
	ASSERT_EQ_INT(post_sms("+15551230003", "START"), 200);
	snprintf(q, sizeof q,
	         "SELECT count(*) FROM consent_current WHERE customer_id = %lld AND"
	         " channel = 'sms' AND status = 'granted' AND source = 'inbound_start'",
	         cid);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "%s", q), 1);
	long long again = queue_sms(cid, "0 s");
	snprintf(q, sizeof q, "SELECT count(*) FROM messages WHERE id = %lld AND status = 'sent'",
	         again);
	ASSERT_EQ_INT(wait_q(10000, 1, q), 1);
	ASSERT_EQ_INT(tw_standin_count(tw), 1);
	/* Twilio's 21610 on a send (they opted out at the carrier): failed, the number suppressed,
	 * consent withdrawn; their START lifts both. */
	long long eve = customer("eve@example.org", "+15551230005", "sms");
	tw_standin_script(tw, "+15551230005", 400, 21610, 0, 0, 0);
	long long blocked = queue_sms(eve, "0 s");
	snprintf(q, sizeof q,
	         "SELECT count(*) FROM consent_current WHERE customer_id = %lld AND"
	         " status = 'withdrawn' AND source = 'provider_opt_out'",
	         eve);
	ASSERT_EQ_INT(wait_q(10000, 1, q), 1);
	snprintf(q, sizeof q, "SELECT count(*) FROM messages WHERE id = %lld AND status = 'failed'",
	         blocked);
	ASSERT_EQ_INT(wait_q(10000, 1, q), 1);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(*) FROM suppressions WHERE channel = 'sms'"
	                                " AND address = '+15551230005'"),
	              1);
	tw_standin_script(tw, "+15551230005", 201, 0, 0, 0, 0);
	ASSERT_EQ_INT(post_sms("+15551230005", "start"), 200);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(*) FROM suppressions WHERE channel = 'sms'"
	                                " AND address = '+15551230005'"),
	              0);
	long long unblocked = queue_sms(eve, "0 s");
	snprintf(q, sizeof q, "SELECT count(*) FROM messages WHERE id = %lld AND status = 'sent'",
	         unblocked);
	ASSERT_EQ_INT(wait_q(10000, 1, q), 1);
	/* A stranger's STOP is acknowledged and records nothing. */
	ASSERT_EQ_INT(post_sms("+15559999999", "STOP"), 200);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(*) FROM consents WHERE source ="
	                                " 'inbound_stop'"),
	              1);
	daemon_stop();
}

static void test_ambiguous_send_is_reconciled(void)
{
	daemon_start(1);
	long long cid = customer("di@example.org", "+15551230004", "sms");
	/* Twilio takes the message but the answer never comes: the send is ambiguous. */
	tw_standin_script(tw, "+15551230004", 0, 0, 0, 1, 0);
	long long mid = queue_sms(cid, "0 s");
	char q[512];
	snprintf(q, sizeof q,
	         "SELECT count(*) FROM message_events WHERE message_id = %lld AND"
	         " status = 'ambiguous'",
	         mid);
	ASSERT_EQ_INT(wait_q(15000, 1, q), 1);
	/* The reconcile pass finds it at Twilio: sent under its sid, never sent twice. */
	snprintf(q, sizeof q,
	         "SELECT count(*) FROM messages WHERE id = %lld AND status = 'sent'"
	         " AND provider_id LIKE 'SM%%'",
	         mid);
	ASSERT_EQ_INT(wait_q(15000, 1, q), 1);
	ASSERT_EQ_INT(tw_standin_count(tw), 1);
	snprintf(q, sizeof q,
	         "SELECT count(*) FROM messages m JOIN message_attempts a ON"
	         " a.message_id = m.id AND a.attempt = m.attempt WHERE m.id = %lld AND"
	         " a.outcome = 'sent' AND m.attempt = 1",
	         mid);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "%s", q), 1);
	daemon_stop();
}

NG_TESTS(NG_TEST(test_refs_round_trip_and_refuse_forgeries),
         NG_TEST(test_abandoned_cart_over_sms_and_messenger),
         NG_TEST(test_birthday_over_sms_and_messenger), NG_TEST(test_stop_and_start_keywords),
         NG_TEST(test_ambiguous_send_is_reconciled), )
