/*
 * test_unsubscribe.c — unsubscribe links. Tokens: they round-trip, carry no address, and a changed
 * byte or another secret is refused. End to end through `nudge serve` (workflow engine, dispatcher,
 * smtp plugin to the SMTP stand-in, HTTP listener in one daemon): a running workflow sends the
 * first of three marketing emails; the test follows its List-Unsubscribe link (GET shows the page,
 * POST is the RFC 8058 one-click: 200, no redirect); the workflow's later sends are skipped for
 * lack of consent and never reach the sink, a queued marketing message is cancelled with the
 * reason, and the consent ledger records the withdrawal with its evidence. The view-in-browser
 * page (/m/<token>) shows the email that went out and nothing for one that did not.
 */
#include "ng.h"
#include "support/serve_proc.h"
#include "support/smtp_standin.h"
#include "testlib.h"
#include "unsubscribe.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const unsigned char secret[] = "a test secret";

static void test_tokens_round_trip_and_refuse_forgeries(void)
{
	char tok[NG_UNSUB_TOKEN_LEN + 1];
	ASSERT_EQ_INT(
	    ng_unsub_token(secret, sizeof secret - 1, 1234567, "email", 89, tok, sizeof tok), 0);
	ASSERT_EQ_INT((int)strlen(tok), NG_UNSUB_TOKEN_LEN);
	ASSERT(strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
	       strlen(tok));
	int64_t cid, mid;
	const char *ch;
	ASSERT_EQ_INT(ng_unsub_token_parse(secret, sizeof secret - 1, tok, &cid, &ch, &mid), 0);
	ASSERT_EQ_INT(cid, 1234567);
	ASSERT_EQ_INT(mid, 89);
	ASSERT_EQ_STR(ch, "email");
	ASSERT_EQ_INT(ng_unsub_token(secret, sizeof secret - 1, 1, "sms", 2, tok, sizeof tok), 0);
	ASSERT_EQ_INT(ng_unsub_token_parse(secret, sizeof secret - 1, tok, &cid, &ch, &mid), 0);
	ASSERT_EQ_STR(ch, "sms");
	/* Every single changed character is refused. */
	for (size_t i = 0; i < strlen(tok); i++) {
		char bad[NG_UNSUB_TOKEN_LEN + 1];
		strcpy(bad, tok);
		bad[i] = bad[i] == 'A' ? 'B' : 'A';
		ASSERT_EQ_INT(ng_unsub_token_parse(secret, sizeof secret - 1, bad, &cid, &ch, &mid),
		              -EINVAL);
	}
	ASSERT_EQ_INT(ng_unsub_token_parse((const unsigned char *)"other", 5, tok, &cid, &ch, &mid),
	              -EINVAL);
	ASSERT_EQ_INT(ng_unsub_token_parse(secret, sizeof secret - 1, "short", &cid, &ch, &mid),
	              -EINVAL);
	ASSERT_EQ_INT(ng_unsub_token(secret, sizeof secret - 1, 1, "fax", 2, tok, sizeof tok),
	              -EINVAL);
}

/* ---- through the daemon --------------------------------------------------------------------- */

/* GET or POST url (the POST is the RFC 8058 one-click body); the status, the body, and whether a
 * Location header came back. */
static long http(const char *method, const char *url, struct ng_test_body *b, int *redirected)
{
	return ng_test_http(method, url, "List-Unsubscribe=One-Click", NULL, b, redirected);
}

/* The second and third sends wait for the test's go-ahead, given after it has unsubscribed. */
static const char newsletter[] =
    "return { name = 'newsletter', trigger = {manual = true}, run = function(ctx)\n"
    "  ctx.send{channel = 'email', template = 'news1', data = {subject = 'News 1'}}\n"
    "  ctx.wait_for('test.go_on', {timeout = '60s'})\n"
    "  for i = 2, 3 do\n"
    "    ctx.send{channel = 'email', template = 'news' .. i, data = {subject = 'News ' .. i}}\n"
    "    ctx.wait('200ms')\n"
    "  end\n"
    "end }\n";

static void test_one_click_stops_a_running_workflow(void)
{
	struct ng_test_schema sc;
	ng_test_schema_open(&sc);
	struct ng_smtp_standin *s;
	ASSERT_EQ_INT(ng_smtp_standin_start(&s, NULL), 0);
	char dir[64] = "/tmp/nudge-unsub-XXXXXX", path[128], conf[128], log[128];
	ASSERT(mkdtemp(dir) != NULL);
	char wf[96];
	snprintf(wf, sizeof wf, "%s/wf", dir);
	ASSERT_EQ_INT(mkdir(wf, 0700), 0);
	snprintf(path, sizeof path, "%s/newsletter.lua", wf);
	FILE *f = fopen(path, "w");
	fputs(newsletter, f);
	fclose(f);
	snprintf(conf, sizeof conf, "%s/nudge.conf.lua", dir);
	snprintf(log, sizeof log, "%s/nudge.log", dir);
	int port = ng_test_free_port();
	f = fopen(conf, "w");
	fprintf(f,
	        "return {\n"
	        "  database = { conninfo = [[%s]], pool_size = 2 },\n"
	        "  http = { listen = \"127.0.0.1:%d\" },\n"
	        "  store = { name = \"The Shop\", base_url = \"https://shop.example\" },\n"
	        "  paths = { plugins = \"%s/plugins\", workflows = \"%s\",\n"
	        "    templates = \"%s/tests/templates\" },\n"
	        "  unsubscribe = { secret = \"%s\" },\n"
	        "  dispatch = { poll_ms = 100 },\n"
	        "  channels = { { name = \"email\", plugin = \"smtp\", config = {\n"
	        "    host = \"127.0.0.1\", port = %d, starttls = \"off\", timeout_ms = 5000,\n"
	        "    from = \"shop@example.com\" } } },\n"
	        "}\n",
	        sc.conninfo, port, ng_test_build_dir(), wf, getenv("NUDGE_TEST_TOP"),
	        (const char *)secret, ng_smtp_standin_port(s));
	fclose(f);

	long long cid = ng_test_q1(sc.pg, "INSERT INTO customers (email, first_name)"
	                                  " VALUES ('zoe@example.org', 'Zoe') RETURNING id");
	ng_test_q1(sc.pg,
	           "WITH i AS (INSERT INTO consents (customer_id, channel, purpose, status, source)"
	           " VALUES (%lld, 'email', 'marketing', 'granted', 'signup_form') RETURNING 1)"
	           " SELECT count(*) FROM i",
	           cid);
	/* A marketing message queued for later: the unsubscribe must cancel it. */
	long long later = ng_test_q1(
	    sc.pg,
	    "INSERT INTO messages (customer_id, channel, template, purpose, next_attempt_at)"
	    " VALUES (%lld, 'email', 'later', 'marketing', now() + interval '1 day') RETURNING id",
	    cid);
	/* A receipt to the same customer is still sent after the unsubscribe. */
	pid_t pid = ng_test_serve_spawn(conf, log);
	uint64_t deadline = ng_test_now_ms() + 20000;
	while (ng_test_q1(sc.pg, "SELECT count(*) FROM workflow_versions") < 1 &&
	       ng_test_now_ms() < deadline)
		usleep(10000);
	ng_test_q1(sc.pg,
	           "WITH i AS (INSERT INTO instances (customer_id, workflow, version, key, status,"
	           " wake_at) VALUES (%lld, 'newsletter', 1, 'k', 'ready', now()) RETURNING 1)"
	           " SELECT count(*) FROM i",
	           cid);
	/* The first email arrives. */
	struct ng_smtp_standin_stats sst = {0};
	while (sst.accepted < 1 && ng_test_now_ms() < deadline) {
		usleep(10000);
		ng_smtp_standin_stats(s, &sst);
	}
	if (sst.accepted != 1) {
		char *cmd = ng_xasprintf("tail -n 20 '%s' >&2", log);
		ASSERT_EQ_INT(system(cmd), 0);
		free(cmd);
	}
	ASSERT_EQ_INT(sst.accepted, 1);
	struct ng_smtp_received rc;
	ASSERT_EQ_INT(ng_smtp_standin_received(s, 0, &rc), 0);
	char *lu = ng_test_header(rc.data, "List-Unsubscribe");
	ASSERT(lu != NULL);
	ASSERT_CONTAINS(lu, "<https://shop.example/u/");
	ASSERT(strstr(lu, "zoe") == NULL);
	char *tok = ng_xstrndup(strstr(lu, "/u/") + 3, NG_UNSUB_TOKEN_LEN);
	free(lu);
	ng_smtp_received_free(&rc);

	char url[256];
	struct ng_test_body b;
	int redirected;
	snprintf(url, sizeof url, "http://127.0.0.1:%d/u/%s", port, tok);
	ASSERT_EQ_INT(http("GET", url, &b, &redirected), 200);
	ASSERT_CONTAINS(b.buf, "The Shop");
	ASSERT_CONTAINS(b.buf, "<form method=\"post\">");
	/* GET changes nothing. */
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(*) FROM consents WHERE status = 'withdrawn'"),
	              0);
	char bad[256];
	snprintf(bad, sizeof bad, "http://127.0.0.1:%d/u/%c%s", port, tok[0] == 'A' ? 'B' : 'A',
	         tok + 1);
	ASSERT_EQ_INT(http("POST", bad, &b, &redirected), 400);
	/* A client whose User-Agent is not UTF-8 (Latin-1 here) is unsubscribed all the same: once,
	 * its evidence could not be written and every click answered 503. */
	static const char *const latin1[] = {"User-Agent: Mail\xe9"
	                                     "Client/1.0",
	                                     NULL};
	ASSERT_EQ_INT(
	    ng_test_http("POST", url, "List-Unsubscribe=One-Click", latin1, &b, &redirected), 200);
	ASSERT_EQ_INT(redirected, 0);
	ASSERT_CONTAINS(b.buf, "unsubscribed");
	ASSERT_EQ_INT(ng_test_q1(sc.pg,
	                         "SELECT count(*) FROM consent_current WHERE customer_id = %lld"
	                         " AND channel = 'email' AND purpose = 'marketing'"
	                         " AND status = 'withdrawn' AND source = 'unsubscribe_link'",
	                         cid),
	              1);
	ASSERT_EQ_INT(ng_test_q1(sc.pg,
	                         "SELECT count(*) FROM consents WHERE evidence->>'ip' = '127.0.0.1'"
	                         " AND evidence->>'user_agent' = 'Mail\xef\xbf\xbd"
	                         "Client/1.0'"),
	              1);
	/* A second click is harmless and records nothing new. */
	ASSERT_EQ_INT(http("POST", url, &b, &redirected), 200);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(*) FROM consents WHERE status = 'withdrawn'"),
	              1);
	ASSERT_EQ_INT(
	    ng_test_q1(sc.pg,
	               "SELECT count(*) FROM messages WHERE id = %lld AND status = 'skipped'"
	               " AND last_error LIKE 'unsubscribed%%'",
	               later),
	    1);
	ng_test_q1(sc.pg,
	           "WITH i AS (INSERT INTO messages (customer_id, channel, template, purpose, data)"
	           " VALUES (%lld, 'email', 'receipt', 'transactional',"
	           " '{\"subject\": \"Receipt\"}') RETURNING 1) SELECT count(*) FROM i",
	           cid);

	ng_test_q1(
	    sc.pg,
	    "WITH i AS (INSERT INTO events (customer_id, source, dedupe_key, type, occurred_at)"
	    " VALUES (%lld, 'test', 'go-on', 'test.go_on', now()) RETURNING 1)"
	    " SELECT count(*) FROM i",
	    cid);
	/* The workflow runs to its end; its two later sends are skipped, never sent. */
	deadline = ng_test_now_ms() + 20000;
	while (ng_test_q1(sc.pg, "SELECT count(*) FROM instances WHERE status = 'completed'") < 1 &&
	       ng_test_now_ms() < deadline)
		usleep(20000);
	while (ng_test_q1(sc.pg, "SELECT count(*) FROM messages WHERE status IN ('queued', 'retry',"
	                         " 'sending')") > 0 &&
	       ng_test_now_ms() < deadline)
		usleep(20000);
	ASSERT_EQ_INT(
	    ng_test_q1(sc.pg, "SELECT count(*) FROM instances WHERE status = 'completed'"), 1);
	ASSERT_EQ_INT(ng_test_q1(sc.pg,
	                         "SELECT count(*) FROM messages WHERE workflow = 'newsletter'"
	                         " AND status = 'skipped'"),
	              2);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(*) FROM message_events e JOIN messages m"
	                                " ON m.id = e.message_id WHERE m.workflow = 'newsletter'"
	                                " AND e.status = 'skipped' AND e.detail = 'no_consent'"),
	              2);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(*) FROM messages WHERE template = 'receipt'"
	                                " AND status = 'sent'"),
	              1);
	ng_smtp_standin_stats(s, &sst);
	ASSERT_EQ_INT(sst.accepted, 2); /* News 1 and the receipt */
	for (int i = 0; i < sst.received; i++) {
		ASSERT_EQ_INT(ng_smtp_standin_received(s, i, &rc), 0);
		char *subj = ng_test_header(rc.data, "Subject");
		ASSERT(strcmp(subj, "News 2") != 0 && strcmp(subj, "News 3") != 0);
		free(subj);
		ng_smtp_received_free(&rc);
	}
	/* View in browser: News 1 went out and shows again, unsubscribe link and all; News 2 never
	 * went out; an unsubscribe token opens no message. */
	long long news1 = ng_test_q1(sc.pg, "SELECT id FROM messages WHERE template = 'news1'");
	long long news2 = ng_test_q1(sc.pg, "SELECT id FROM messages WHERE template = 'news2'");
	char *view = ng_link_url("x", secret, sizeof secret - 1, NG_LINK_VIEW, cid, "email", news1);
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, view + 1);
	free(view);
	ASSERT_EQ_INT(http("GET", url, &b, &redirected), 200);
	ASSERT_CONTAINS(b.buf, "<p>News 1</p>");
	ASSERT_CONTAINS(b.buf, "https://shop.example/u/");
	view = ng_link_url("x", secret, sizeof secret - 1, NG_LINK_VIEW, cid, "email", news2);
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, view + 1);
	free(view);
	ASSERT_EQ_INT(http("GET", url, &b, &redirected), 404);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/m/%s", port, tok);
	ASSERT_EQ_INT(http("GET", url, &b, &redirected), 404);

	kill(pid, SIGTERM);
	ASSERT_EQ_INT(ng_test_serve_wait(pid, 20000), 0);
	free(tok);
	ng_smtp_standin_stop(s);
	ng_test_schema_close(&sc);
	char *cmd = ng_xasprintf("rm -rf '%s'", dir);
	ASSERT_EQ_INT(system(cmd), 0);
	free(cmd);
}

NG_TESTS(NG_TEST(test_tokens_round_trip_and_refuse_forgeries),
         NG_TEST(test_one_click_stops_a_running_workflow), )
