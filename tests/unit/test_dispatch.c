/*
 * test_dispatch.c — the dispatcher end to end: message rows in PostgreSQL (a private schema per
 * test), the smtp plugin loaded as the daemon loads it, the SMTP stand-in as the relay. 250 → sent;
 * 421/451/452 → retried later, then sent; 550/553/554 → failed and the address suppressed; silence
 * after DATA → timeout → retried; a reset before the final 250 → retried with the same Message-ID;
 * a wrong password → a retry with the reason, never "sent"; the policy (consent, suppression,
 * address) skips with a reason and transactional mail needs no marketing consent; every state
 * change is in message_events, also for statements of many rows, and goes with a deleted
 * customer; two dispatchers on one database never send a message twice; the
 * token bucket holds a lane to its rate.
 */
#include "clock.h"
#include "config.h"
#include "db.h"
#include "dispatch.h"
#include "migrate.h"
#include "ng.h"
#include "paths.h"
#include "plugin_host.h"
#include "senders.h"
#include "support/smtp_standin.h"
#include "msgtmpl.h"
#include "testlib.h"

#include <libpq-fe.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- a private schema ------------------------------------------------------------------------ */

static char conninfo[1024];
static PGconn *pg;

static void schema_open(void)
{
	static int n;
	char schema[64];
	snprintf(schema, sizeof schema, "ng_dispatch_%d_%d", (int)getpid(), n++);
	snprintf(conninfo, sizeof conninfo, "%s options='-c search_path=%s'", ng_test_pg(), schema);
	char *sql = ng_xasprintf("CREATE SCHEMA %s", schema);
	ng_test_pg_exec(sql);
	free(sql);
	char *dir = ng_paths_shipped("sql"), err[512];
	int applied;
	ASSERT(dir != NULL);
	if (ng_migrate_run(conninfo, dir, &applied, err, sizeof err))
		ng_test_fail(__FILE__, __LINE__, "migrate: %s", err);
	free(dir);
	pg = PQconnectdb(conninfo);
	ASSERT_EQ_INT(PQstatus(pg), CONNECTION_OK);
	PQclear(PQexec(pg, "SET client_min_messages = warning"));
}

static void schema_close(void)
{
	PQfinish(pg);
	pg = NULL;
}

static PGresult *q(const char *sql)
{
	PGresult *r = PQexec(pg, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
		ng_test_fail(__FILE__, __LINE__, "%s: %s", sql, PQresultErrorMessage(r));
	return r;
}

static long long q1(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static long long q1(const char *fmt, ...)
{
	char sql[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sql, sizeof sql, fmt, ap);
	va_end(ap);
	PGresult *r = q(sql);
	long long v = PQgetisnull(r, 0, 0) ? -1 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return v;
}

static char *qs(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *qs(const char *fmt, ...)
{
	char sql[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sql, sizeof sql, fmt, ap);
	va_end(ap);
	PGresult *r = q(sql);
	char *v = ng_xstrdup(PQntuples(r) && !PQgetisnull(r, 0, 0) ? PQgetvalue(r, 0, 0) : "");
	PQclear(r);
	return v;
}

/* A customer with an email address and (if consent) granted marketing consent for email. */
static long long customer(const char *email, int consent)
{
	long long id = q1("INSERT INTO customers (email, first_name) VALUES (%s%s%s, 'Ann')"
	                  " RETURNING id",
	                  email ? "'" : "", email ? email : "NULL", email ? "'" : "");
	if (consent)
		q1("WITH i AS (INSERT INTO consents (customer_id, channel, purpose, status, source)"
		   " VALUES (%lld, 'email', 'marketing', 'granted', 'test') RETURNING 1)"
		   " SELECT count(*) FROM i",
		   id);
	return id;
}

static long long message(long long cid, const char *purpose, const char *subject)
{
	return q1("INSERT INTO messages (customer_id, channel, template, purpose, data)"
	          " VALUES (%lld, 'email', 'test_message', '%s',"
	          " jsonb_build_object('subject', '%s', 'text', 'Hello ' || '%s' || E'\\n'))"
	          " RETURNING id",
	          cid, purpose, subject, subject);
}

static char *status_of(long long mid)
{
	return qs("SELECT status FROM messages WHERE id = %lld", mid);
}

/* ---- the daemon's side ---------------------------------------------------------------------- */

struct node {
	ng_db *db;
	struct ng_dispatch *d;
	struct ng_dispatch_stats st;
	int closed;
};

struct rig {
	uv_loop_t loop;
	struct ng_clock *clock;
	struct ng_senders *senders;
	struct ng_plugin_host *host;
	struct ng_conf *conf;
	char conf_path[128];
	struct node nodes[2];
	int nnodes;
	int closed;
	struct ng_msgtmpl_set *templates; /* tests/templates */
};

static void count_closed(void *arg)
{
	(*(int *)arg)++;
}

static void rig_open(struct rig *r, const char *smtp_config, const char *lane_keys, int nodes)
{
	memset(r, 0, sizeof *r);
	if (getenv("NG_TEST_DEBUG"))
		ng_log_setup(NG_LOG_DEBUG, NG_LOG_LOGFMT);
	ASSERT_EQ_INT(uv_loop_init(&r->loop), 0);
	char tdir[1024], terr[512];
	snprintf(tdir, sizeof tdir, "%s/tests/templates",
	         getenv("NUDGE_TEST_TOP") ? getenv("NUDGE_TEST_TOP") : ".");
	if (ng_msgtmpl_open(tdir, &r->templates, terr, sizeof terr) != 0)
		ng_test_fail(__FILE__, __LINE__, "%s", terr);
	r->clock = ng_clock_real(&r->loop);
	ASSERT_EQ_INT(ng_senders_open(&r->senders, &r->loop, 2), 0);
	ASSERT_EQ_INT(ng_plugin_host_open(&r->host, &r->loop, r->clock, r->senders), 0);
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	ASSERT(n > 0);
	exe[n] = '\0';
	*strrchr(exe, '/') = '\0';
	snprintf(r->conf_path, sizeof r->conf_path, "/tmp/nudge-test-dispatch-%d.conf.lua",
	         (int)getpid());
	FILE *f = fopen(r->conf_path, "w");
	ASSERT(f != NULL);
	fprintf(f,
	        "return {\n"
	        "  database = { conninfo = \"dbname=unused\" },\n"
	        "  paths = { plugins = \"%s/../plugins\" },\n"
	        "  channels = { { name = \"email\", plugin = \"smtp\", %s config = {\n"
	        "    from = \"shop@example.com\", from_name = \"The Shop\",\n"
	        "    %s } } },\n"
	        "}\n",
	        exe, lane_keys ? lane_keys : "", smtp_config);
	fclose(f);
	char err[1024];
	if (ng_conf_load(r->conf_path, &r->conf, err, sizeof err) != 0)
		ng_test_fail(__FILE__, __LINE__, "config: %s", err);
	ASSERT_EQ_INT(ng_plugin_host_load_conf(r->host, r->conf, NULL, NULL), 1);
	const struct ng_conf_node *ch = ng_conf_get(r->conf, "channels")->child;
	struct ng_dispatch_limit lim = {.instance = "email"};
	for (const struct ng_conf_node *c = ch->child; c; c = c->next) {
		if (strcmp(c->key, "concurrency") == 0)
			lim.concurrency = (int)c->i;
		if (strcmp(c->key, "rate") == 0)
			lim.rate = c->num;
		if (strcmp(c->key, "burst") == 0)
			lim.burst = c->num;
	}
	static const unsigned char secret[] = "test secret";
	r->nnodes = nodes;
	for (int i = 0; i < nodes; i++) {
		struct node *nd = &r->nodes[i];
		struct ng_db_options dbo = {.conninfo = conninfo, .pool_size = 2};
		ASSERT_EQ_INT(ng_db_open(&nd->db, &r->loop, &dbo), 0);
		char owner[32];
		snprintf(owner, sizeof owner, "node-%d", i);
		struct ng_dispatch_options o = {.loop = &r->loop,
		                                .db = nd->db,
		                                .clock = r->clock,
		                                .plugins = r->host,
		                                .owner = owner,
		                                .batch = 16,
		                                .lease_ms = 20000,
		                                .poll_ms = 50,
		                                .retry_base_ms = 100,
		                                .retry_max_ms = 400,
		                                .max_attempts = 5,
		                                .drain_ms = 2000,
		                                .listen = 1,
		                                .limits = &lim,
		                                .nlimits = 1,
		                                .templates = r->templates,
		                                .store = {.name = "The Shop",
		                                          .base_url = "https://shop.example/",
		                                          .secret = secret,
		                                          .secret_len = sizeof secret - 1}};
		ASSERT_EQ_INT(ng_dispatch_open(&nd->d, &o), 0);
		ng_dispatch_start(nd->d);
	}
}

static void on_dispatch_closed(void *arg)
{
	struct node *n = arg;
	ng_db_close(n->db, count_closed, &n->closed);
}

static void rig_close(struct rig *r)
{
	/* A result the test already saw in the database may not have reached its dispatcher's
	 * counters yet (its reply is still on the way): let the dispatchers go idle first. */
	uint64_t idle_by = ng_test_now_ms() + 5000;
	for (int i = 0; i < r->nnodes; i++)
		while (!ng_dispatch_idle(r->nodes[i].d) && ng_test_now_ms() < idle_by) {
			uv_run(&r->loop, UV_RUN_NOWAIT);
			usleep(500);
		}
	for (int i = 0; i < r->nnodes; i++) {
		ng_dispatch_stats(r->nodes[i].d, &r->nodes[i].st);
		ng_dispatch_close(r->nodes[i].d, on_dispatch_closed, &r->nodes[i]);
	}
	uint64_t deadline = ng_test_now_ms() + 20000;
	for (int i = 0; i < r->nnodes; i++)
		while (!r->nodes[i].closed && ng_test_now_ms() < deadline)
			uv_run(&r->loop, UV_RUN_ONCE);
	for (int i = 0; i < r->nnodes; i++)
		ASSERT_EQ_INT(r->nodes[i].closed, 1);
	ng_plugin_host_close(r->host, count_closed, &r->closed);
	ng_msgtmpl_close(r->templates);
	while (r->closed < 1 && ng_test_now_ms() < deadline)
		uv_run(&r->loop, UV_RUN_ONCE);
	ng_senders_close(r->senders, count_closed, &r->closed);
	ng_clock_close(r->clock, count_closed, &r->closed);
	uv_run(&r->loop, UV_RUN_DEFAULT);
	ASSERT_EQ_INT(r->closed, 3);
	ASSERT_EQ_INT(uv_loop_close(&r->loop), 0);
	ng_conf_free(r->conf);
	unlink(r->conf_path);
}

/* Turns the loop until the SQL count reaches want (checked every 20 ms) or timeout_ms pass. */
static void run_until(struct rig *r, long long want, int timeout_ms, const char *sql)
{
	uint64_t deadline = ng_test_now_ms() + (uint64_t)timeout_ms, next = 0;
	long long have = -1;
	for (;;) {
		uv_run(&r->loop, UV_RUN_NOWAIT);
		uint64_t now = ng_test_now_ms();
		if (now >= next) {
			have = q1("%s", sql);
			if (have == want)
				return;
			next = now + 20;
		}
		if (now > deadline)
			break;
		usleep(500);
	}
	ng_test_fail(__FILE__, __LINE__, "waited %d ms for %s = %lld, have %lld", timeout_ms, sql,
	             want, have);
}

static void run_for(struct rig *r, int ms)
{
	uint64_t deadline = ng_test_now_ms() + (uint64_t)ms;
	while (ng_test_now_ms() < deadline) {
		uv_run(&r->loop, UV_RUN_NOWAIT);
		usleep(500);
	}
}

static void plain(char *out, size_t len, int port, int timeout_ms)
{
	snprintf(out, len, "host = \"127.0.0.1\", port = %d, starttls = \"off\", timeout_ms = %d",
	         port, timeout_ms);
}

/* The common start of a test: a fresh schema, a stand-in that accepts everything, and one node
 * sending to it in plain text with a 3 s timeout. */
static struct ng_smtp_standin *open_plain(struct rig *r)
{
	schema_open();
	struct ng_smtp_standin *s;
	ASSERT_EQ_INT(ng_smtp_standin_start(&s, NULL), 0);
	char cfg[256];
	plain(cfg, sizeof cfg, ng_smtp_standin_port(s), 3000);
	rig_open(r, cfg, NULL, 1);
	return s;
}

/* The end of such a test: the stand-in accepted that many messages; everything stops. */
static void close_plain(struct rig *r, struct ng_smtp_standin *s, int accepted)
{
	struct ng_smtp_standin_stats sst;
	ng_smtp_standin_stats(s, &sst);
	ASSERT_EQ_INT(sst.accepted, accepted);
	rig_close(r);
	ng_smtp_standin_stop(s);
	schema_close();
}

static const char *done_sql =
    "SELECT count(*) FROM messages WHERE status NOT IN ('queued', 'retry', 'sending')";

/* The Message-ID header of a received message (malloc'd). */
static char *message_id(const char *data)
{
	const char *p = strstr(data, "\r\nMessage-ID: ");
	ASSERT(p != NULL);
	p += 14;
	return ng_xstrndup(p, strcspn(p, "\r\n"));
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_250_is_sent_with_history(void)
{
	struct rig r;
	struct ng_smtp_standin *s = open_plain(&r);
	long long c = customer("ann@example.org", 1);
	long long m = message(c, "marketing", "Your cart");
	run_until(&r, 1, 10000, done_sql);
	char *st = status_of(m);
	ASSERT_EQ_STR(st, "sent");
	free(st);
	ASSERT_EQ_INT(q1("SELECT attempt FROM messages WHERE id = %lld", m), 1);
	ASSERT_EQ_INT(q1("SELECT count(*) FROM messages WHERE provider_id IS NOT NULL"
	                 " AND sent_at IS NOT NULL AND lease_owner IS NULL"),
	              1);
	ASSERT_EQ_INT(q1("SELECT count(*) FROM message_attempts WHERE message_id = %lld"
	                 " AND outcome = 'sent' AND finished_at IS NOT NULL",
	                 m),
	              1);
	char *hist = qs("SELECT string_agg(status, ',' ORDER BY id) FROM message_events"
	                " WHERE message_id = %lld",
	                m);
	ASSERT_EQ_STR(hist, "queued,sending,sent");
	free(hist);
	struct ng_smtp_received rc;
	ASSERT_EQ_INT(ng_smtp_standin_received(s, 0, &rc), 0);
	ASSERT_EQ_STR(rc.rcpt, "ann@example.org");
	ASSERT_CONTAINS(rc.data, "Subject: Your cart");
	ASSERT_CONTAINS(rc.data, "List-Unsubscribe: <https://shop.example/u/");
	ASSERT_CONTAINS(rc.data, "List-Unsubscribe-Post: List-Unsubscribe=One-Click");
	char *mid = message_id(rc.data);
	char want[64];
	snprintf(want, sizeof want, "<nudge-%lld-%lld@", c, m);
	ASSERT(strncmp(mid, want, strlen(want)) == 0);
	free(mid);
	ng_smtp_received_free(&rc);
	rig_close(&r);
	ASSERT_EQ_INT(r.nodes[0].st.sent, 1);
	ng_smtp_standin_stop(s);
	schema_close();
}

/* The history triggers (sql/0014) write one row per changed message in statements of many rows,
 * nothing for an update that changes neither status nor attempt, and a deleted customer's
 * messages take their history and attempts with them (the cascade the foreign keys gave). */
static void test_history_per_statement_and_delete_cascade(void)
{
	schema_open();
	long long a = customer("a@example.org", 1), b = customer("b@example.org", 1);
	long long m1 = message(a, "marketing", "one"), m2 = message(a, "marketing", "two");
	long long m3 = message(b, "marketing", "three");
	ASSERT_EQ_INT(q1("SELECT count(*) FROM message_events WHERE status = 'queued'"
	                 " AND previous IS NULL AND detail = 'api test_message'"),
	              3);
	PQclear(q("UPDATE messages SET status = 'sending', attempt = 1, lease_owner = 'me'"));
	PQclear(q("UPDATE messages SET updated_at = now()")); /* no state change: no row */
	PQclear(q("UPDATE messages SET status = 'sent', provider_id = 'p-' || id WHERE id <> 0"));
	char *h = qs("SELECT string_agg(status || ':' || coalesce(previous, '') || ':' ||"
	             " coalesce(detail, ''), ',' ORDER BY id) FROM message_events"
	             " WHERE message_id = %lld",
	             m2);
	char want[200];
	snprintf(want, sizeof want,
	         "queued::api test_message,sending:queued:me,sent:sending:p-%lld", m2);
	ASSERT_EQ_STR(h, want);
	free(h);
	ASSERT_EQ_INT(q1("SELECT count(*) FROM message_events"), 9);
	PQclear(q("INSERT INTO message_attempts (customer_id, message_id, attempt, started_at)"
	          " SELECT customer_id, id, 1, now() FROM messages"));
	PQclear(q("BEGIN"));
	char sql[200];
	snprintf(sql, sizeof sql, "DELETE FROM customers WHERE id = %lld", a);
	PQclear(q(sql));
	PQclear(q("COMMIT"));
	ASSERT_EQ_INT(
	    q1("SELECT count(*) FROM message_events WHERE message_id IN (%lld, %lld)", m1, m2), 0);
	ASSERT_EQ_INT(q1("SELECT count(*) FROM message_attempts WHERE customer_id = %lld", a), 0);
	ASSERT_EQ_INT(q1("SELECT count(*) FROM message_events WHERE message_id = %lld", m3), 3);
	ASSERT_EQ_INT(q1("SELECT count(*) FROM message_attempts WHERE message_id = %lld", m3), 1);
	schema_close();
}

static void test_temporary_replies_are_retried_then_sent(void)
{
	struct rig r;
	struct ng_smtp_standin *s = open_plain(&r);
	static const struct {
		const char *cmd;
		int code;
		const char *text;
	} cases[] = {{"MAIL", 421, "4.3.2 Service shutting down"},
	             {"RCPT", 451, "4.7.1 Greylisted, try again later"},
	             {"RCPT", 452, "4.2.2 Mailbox over quota"}};
	for (size_t i = 0; i < NG_ARRAY_LEN(cases); i++) {
		ng_smtp_standin_script(s, cases[i].cmd, cases[i].code, cases[i].text, 1);
		long long c = customer(NULL, 1);
		char email[64];
		snprintf(email, sizeof email, "t%zu@example.org", i);
		q1("WITH u AS (UPDATE customers SET email = '%s' WHERE id = %lld RETURNING 1)"
		   " SELECT count(*) FROM u",
		   email, c);
		long long m = message(c, "marketing", "Retry me");
		run_until(&r, (long long)i + 1, 15000, done_sql);
		char *st = status_of(m);
		ASSERT_EQ_STR(st, "sent");
		free(st);
		ASSERT_EQ_INT(q1("SELECT attempt FROM messages WHERE id = %lld", m), 2);
		char *err = qs("SELECT error FROM message_attempts WHERE message_id = %lld"
		               " AND attempt = 1 AND outcome = 'retry'",
		               m);
		char code[8];
		snprintf(code, sizeof code, "%d", cases[i].code);
		ASSERT_CONTAINS(err, code);
		free(err);
		char *hist = qs("SELECT string_agg(status, ',' ORDER BY id) FROM message_events"
		                " WHERE message_id = %lld",
		                m);
		ASSERT_EQ_STR(hist, "queued,sending,retry,sending,sent");
		free(hist);
	}
	rig_close(&r);
	ng_smtp_standin_stop(s);
	schema_close();
}

static void test_permanent_replies_fail_and_suppress(void)
{
	struct rig r;
	struct ng_smtp_standin *s = open_plain(&r);
	static const struct {
		int code;
		const char *text;
	} cases[] = {{550, "5.1.1 No such user"},
	             {553, "5.1.3 Bad recipient address syntax"},
	             {554, "5.1.0 Recipient rejected"},
	             /* A relay's own bytes, not UTF-8 (Latin-1), and a reply the plugin cuts in
	              * the middle of a character: once, either made the result impossible to
	              * write, so the bounce was never recorded and the message went out again
	              * every time its lease ran out. */
	             {550, "5.1.1 Destinataire inconnu, adresse refus\xe9"
	                   "e"},
	             {550, "5.1.1 The email account that you tried to reach does not exist. Please"
	                   " check the recipient's address for typos or spaces. More at https://ma"
	                   "il.example/help/bounce?code=NoSuchUser&ref=0123456789abcde"
	                   "\xc3\xa9\xc3\xa9\xc3\xa9"}};
	for (size_t i = 0; i < NG_ARRAY_LEN(cases); i++) {
		ng_smtp_standin_script(s, "RCPT", cases[i].code, cases[i].text, 1);
		char email[64];
		snprintf(email, sizeof email, "Gone%zu@Example.org", i);
		long long c = customer(email, 1);
		long long m = message(c, "marketing", "Bounce me");
		run_until(&r, 2 * (long long)i + 1, 10000, done_sql);
		char *st = status_of(m);
		ASSERT_EQ_STR(st, "failed");
		free(st);
		char *err = qs("SELECT last_error FROM messages WHERE id = %lld", m);
		char code[8];
		snprintf(code, sizeof code, "%d", cases[i].code);
		ASSERT_CONTAINS(err, code);
		free(err);
		ASSERT_EQ_INT(q1("SELECT count(*) FROM suppressions WHERE channel = 'email'"
		                 " AND address = lower('%s') AND reason = 'hard_bounce'"
		                 " AND address_hash = sha256(convert_to(lower('%s'), 'UTF8'))",
		                 email, email),
		              1);
		/* The next message to that address is never attempted. */
		long long m2 = message(c, "transactional", "Receipt");
		run_until(&r, 2 * (long long)i + 2, 10000, done_sql);
		st = status_of(m2);
		ASSERT_EQ_STR(st, "skipped");
		free(st);
		err = qs("SELECT last_error FROM messages WHERE id = %lld", m2);
		ASSERT_EQ_STR(err, "suppressed:hard_bounce");
		free(err);
	}
	struct ng_smtp_standin_stats sst;
	ng_smtp_standin_stats(s, &sst);
	ASSERT_EQ_INT(sst.accepted, 0);
	rig_close(&r);
	ASSERT_EQ_INT(r.nodes[0].st.suppressed, (long long)NG_ARRAY_LEN(cases));
	ng_smtp_standin_stop(s);
	schema_close();
}

/* A fault, then the message again: both copies carry the same Message-ID. */
static void retried_after_fault(int fault)
{
	schema_open();
	struct ng_smtp_standin *s;
	ASSERT_EQ_INT(ng_smtp_standin_start(&s, NULL), 0);
	ng_smtp_standin_fault(s, fault, 1);
	char cfg[256];
	plain(cfg, sizeof cfg, ng_smtp_standin_port(s), 1000);
	struct rig r;
	rig_open(&r, cfg, NULL, 1);
	long long c = customer("hang@example.org", 1);
	long long m = message(c, "marketing", "Again");
	run_until(&r, 1, 15000, done_sql);
	char *st = status_of(m);
	ASSERT_EQ_STR(st, "sent");
	free(st);
	ASSERT_EQ_INT(q1("SELECT attempt FROM messages WHERE id = %lld", m), 2);
	ASSERT_EQ_INT(q1("SELECT count(*) FROM message_attempts WHERE message_id = %lld"
	                 " AND attempt = 1 AND outcome = 'retry'",
	                 m),
	              1);
	struct ng_smtp_received a, b;
	ASSERT_EQ_INT(ng_smtp_standin_received(s, 0, &a), 0);
	ASSERT_EQ_INT(ng_smtp_standin_received(s, 1, &b), 0);
	ASSERT_EQ_INT(a.acked, 0);
	ASSERT_EQ_INT(b.acked, 1);
	char *ia = message_id(a.data), *ib = message_id(b.data);
	ASSERT_EQ_STR(ia, ib);
	free(ia);
	free(ib);
	ng_smtp_received_free(&a);
	ng_smtp_received_free(&b);
	rig_close(&r);
	ng_smtp_standin_stop(s);
	schema_close();
}

static void test_silence_after_data_times_out_and_is_retried(void)
{
	retried_after_fault(NG_SMTP_HANG_AFTER_DATA);
}

static void test_reset_before_final_reply_is_retried_with_the_same_message_id(void)
{
	retried_after_fault(NG_SMTP_RESET_BEFORE_FINAL);
}

static void wrong_password(int refuse_at_rcpt)
{
	schema_open();
	char dir[64] = "/tmp/nudge-pki-XXXXXX", ca[96];
	ASSERT(mkdtemp(dir) != NULL);
	snprintf(ca, sizeof ca, "%s/ca.pem", dir);
	char *cert, *key;
	ASSERT_EQ_INT(ng_test_pki_make(ca, &cert, &key), 0);
	struct ng_smtp_standin_opts so = {.cert_pem = cert,
	                                  .key_pem = key,
	                                  .user = "shop",
	                                  .password = "s3cret",
	                                  .refuse_at_rcpt = refuse_at_rcpt};
	struct ng_smtp_standin *s;
	ASSERT_EQ_INT(ng_smtp_standin_start(&s, &so), 0);
	char cfg[512];
	snprintf(cfg, sizeof cfg,
	         "host = \"localhost\", port = %d, starttls = \"required\", ca_file = \"%s\","
	         " username = \"shop\", password = \"wrong\", timeout_ms = 5000",
	         ng_smtp_standin_port(s), ca);
	struct rig r;
	rig_open(&r, cfg, NULL, 1);
	long long c = customer("erin@example.org", 1);
	long long m = message(c, "transactional", "Receipt");
	run_until(&r, 1, 15000, "SELECT count(*) FROM message_attempts WHERE outcome = 'retry'");
	char *st = status_of(m);
	ASSERT(strcmp(st, "retry") == 0 || strcmp(st, "sending") == 0);
	free(st);
	char *err =
	    qs("SELECT error FROM message_attempts WHERE message_id = %lld AND attempt = 1", m);
	ASSERT_CONTAINS(err, "refused our credentials");
	free(err);
	ASSERT_EQ_INT(q1("SELECT count(*) FROM messages WHERE status = 'sent'"), 0);
	struct ng_smtp_standin_stats sst;
	ng_smtp_standin_stats(s, &sst);
	ASSERT_EQ_INT(sst.received, 0);
	ASSERT_EQ_INT(q1("SELECT count(*) FROM suppressions"), 0);
	rig_close(&r);
	ng_smtp_standin_stop(s);
	unlink(ca);
	rmdir(dir);
	free(cert);
	free(key);
	schema_close();
}

/* A relay that refuses MAIL FROM until we authenticate (Postfix's smtpd_sender_restrictions). */
static void test_wrong_password_is_retried_never_sent(void)
{
	wrong_password(0);
}

/* One that takes MAIL FROM and refuses RCPT TO with a 550 (Exim): once, every message of the
 * session failed for good and its address was suppressed. */
static void test_wrong_password_refused_at_rcpt_is_retried_never_suppressed(void)
{
	wrong_password(1);
}

static void test_policy_skips_with_a_reason(void)
{
	struct rig r;
	struct ng_smtp_standin *s = open_plain(&r);
	long long nocons = customer("nocons@example.org", 0);
	long long m1 = message(nocons, "marketing", "Sale");
	long long m2 = message(nocons, "transactional", "Receipt");
	long long noaddr = customer(NULL, 1);
	long long m3 = message(noaddr, "transactional", "Receipt");
	long long sup = customer("blocked@example.org", 1);
	q1("WITH i AS (INSERT INTO suppressions (channel, address, address_hash, reason, source)"
	   " VALUES ('email', 'blocked@example.org', ng_address_hash('BLOCKED@example.org'),"
	   " 'complaint', 'test') RETURNING 1) SELECT count(*) FROM i");
	long long m4 = message(sup, "marketing", "Sale");
	/* Withdrawn after a grant: the newest consent row is in force. */
	long long wd = customer("withdrawn@example.org", 1);
	q1("WITH i AS (INSERT INTO consents (customer_id, channel, purpose, status, source,"
	   " recorded_at) VALUES (%lld, 'email', 'marketing', 'withdrawn', 'test',"
	   " now() + interval '1 second') RETURNING 1) SELECT count(*) FROM i",
	   wd);
	long long m5 = message(wd, "marketing", "Sale");
	run_until(&r, 5, 10000, done_sql);
	struct {
		long long m;
		const char *status, *reason;
	} want[] = {{m1, "skipped", "no_consent"},
	            {m2, "sent", NULL},
	            {m3, "skipped", "no_address"},
	            {m4, "skipped", "suppressed:complaint"},
	            {m5, "skipped", "no_consent"}};
	for (size_t i = 0; i < NG_ARRAY_LEN(want); i++) {
		char *st = status_of(want[i].m);
		ASSERT_EQ_STR(st, want[i].status);
		free(st);
		if (want[i].reason) {
			char *e = qs("SELECT detail FROM message_events WHERE message_id = %lld"
			             " AND status = 'skipped'",
			             want[i].m);
			ASSERT_EQ_STR(e, want[i].reason);
			free(e);
		}
	}
	close_plain(&r, s, 1);
}

/* A snapshot jansson cannot read (json keeps "\u0000", jansson refuses it) fails the message with
 * a reason; it is not sent rendered from nothing. */
static void test_unreadable_snapshot_fails_with_a_reason(void)
{
	struct rig r;
	struct ng_smtp_standin *s = open_plain(&r);
	long long c = customer("nul@example.org", 1);
	long long bad = q1("INSERT INTO messages (customer_id, channel, template, purpose, data)"
	                   " VALUES (%lld, 'email', 'test_message', 'transactional',"
	                   " '{\"subject\": \"a\\u0000b\", \"text\": \"x\"}') RETURNING id",
	                   c);
	long long good = message(c, "transactional", "Receipt");
	run_until(&r, 2, 10000, done_sql);
	char *st = status_of(bad);
	ASSERT_EQ_STR(st, "failed");
	free(st);
	st = status_of(good);
	ASSERT_EQ_STR(st, "sent");
	free(st);
	char *e = qs("SELECT detail FROM message_events WHERE message_id = %lld"
	             " AND status = 'failed'",
	             bad);
	ASSERT_CONTAINS(e, "render: the message's data snapshot is not a JSON object");
	free(e);
	close_plain(&r, s, 1);
}

static void test_two_dispatchers_never_send_twice(void)
{
	schema_open();
	struct ng_smtp_standin *s;
	ASSERT_EQ_INT(ng_smtp_standin_start(&s, NULL), 0);
	char cfg[256];
	plain(cfg, sizeof cfg, ng_smtp_standin_port(s), 3000);
	struct rig r;
	rig_open(&r, cfg, "concurrency = 8,", 2);
	const int n = 300;
	q1("WITH c AS (INSERT INTO customers (email) SELECT 'p' || g || '@example.org'"
	   " FROM generate_series(1, %d) g RETURNING id),"
	   " k AS (INSERT INTO consents (customer_id, channel, purpose, status, source)"
	   "  SELECT id, 'email', 'marketing', 'granted', 'test' FROM c),"
	   " m AS (INSERT INTO messages (customer_id, channel, template, purpose, data)"
	   "  SELECT id, 'email', 'bulk', 'marketing', jsonb_build_object('subject', 'n' || id)"
	   "  FROM c RETURNING 1) SELECT count(*) FROM m",
	   n);
	run_until(&r, n, 30000, "SELECT count(*) FROM messages WHERE status = 'sent'");
	/* The last results are committed a moment before each node reads its own answer back: let
	 * both count them before they close. */
	uint64_t deadline = ng_test_now_ms() + 10000;
	for (;;) {
		struct ng_dispatch_stats a, b;
		ng_dispatch_stats(r.nodes[0].d, &a);
		ng_dispatch_stats(r.nodes[1].d, &b);
		if (a.sent + b.sent >= (uint64_t)n || ng_test_now_ms() > deadline)
			break;
		run_for(&r, 5);
	}
	rig_close(&r);
	struct ng_smtp_standin_stats sst;
	ng_smtp_standin_stats(s, &sst);
	ASSERT_EQ_INT(sst.accepted, n);
	/* Every Message-ID arrived once. */
	char **ids = ng_xcalloc((size_t)sst.received, sizeof *ids);
	for (int i = 0; i < sst.received; i++) {
		struct ng_smtp_received rc;
		ASSERT_EQ_INT(ng_smtp_standin_received(s, i, &rc), 0);
		ids[i] = message_id(rc.data);
		ng_smtp_received_free(&rc);
		for (int j = 0; j < i; j++)
			if (strcmp(ids[i], ids[j]) == 0)
				ng_test_fail(__FILE__, __LINE__, "%s arrived twice", ids[i]);
	}
	for (int i = 0; i < sst.received; i++)
		free(ids[i]);
	free(ids);
	ng_info("test", "node-0 sent %llu, node-1 sent %llu",
	        (unsigned long long)r.nodes[0].st.sent, (unsigned long long)r.nodes[1].st.sent);
	ASSERT_CMP_INT(r.nodes[0].st.sent, >, 0);
	ASSERT_CMP_INT(r.nodes[1].st.sent, >, 0);
	ASSERT_EQ_INT(r.nodes[0].st.sent + r.nodes[1].st.sent, n);
	ASSERT_EQ_INT(r.nodes[0].st.stale + r.nodes[1].st.stale, 0);
	ASSERT_EQ_INT(q1("SELECT count(*) FROM message_attempts"), n);
	ng_smtp_standin_stop(s);
	schema_close();
}

static void test_rate_limit_holds_a_lane_to_its_rate(void)
{
	schema_open();
	struct ng_smtp_standin *s;
	ASSERT_EQ_INT(ng_smtp_standin_start(&s, NULL), 0);
	char cfg[256];
	plain(cfg, sizeof cfg, ng_smtp_standin_port(s), 3000);
	struct rig r;
	rig_open(&r, cfg, "rate = 20, burst = 2,", 1);
	const int n = 30;
	q1("WITH c AS (INSERT INTO customers (email) SELECT 'r' || g || '@example.org'"
	   " FROM generate_series(1, %d) g RETURNING id),"
	   " m AS (INSERT INTO messages (customer_id, channel, template, purpose)"
	   "  SELECT id, 'email', 'receipt', 'transactional' FROM c RETURNING 1)"
	   " SELECT count(*) FROM m",
	   n);
	uint64_t t0 = ng_test_now_ms();
	run_until(&r, n, 20000, "SELECT count(*) FROM messages WHERE status = 'sent'");
	uint64_t took = ng_test_now_ms() - t0;
	ng_info("test", "%d messages at 20/s (burst 2) took %llu ms", n, (unsigned long long)took);
	/* 2 at once, then 28 at 20 per second: at least 1.4 s. */
	ASSERT_CMP_INT(took, >=, 1300);
	ASSERT_CMP_INT(took, <, 6000);
	run_for(&r, 10);
	rig_close(&r);
	ng_smtp_standin_stop(s);
	schema_close();
}

/* The claim itself (sql/0020): the messages a crashed dispatcher held come before the due ones,
 * so a campaign's backlog cannot keep them waiting; and a message a reconcile pass held when it
 * died goes back to the reconcile pass, never to a blind resend. */
static void test_claim_takes_expired_leases_first_and_leaves_reconciles(void)
{
	schema_open();
	long long c = customer("lease@example.org", 1);
	long long due[3];
	for (int i = 0; i < 3; i++)
		due[i] = message(c, "transactional", "Due");
	long long held = message(c, "transactional", "Held by a dead daemon");
	long long asked = message(c, "transactional", "Being reconciled by a dead daemon");
	q1("WITH u AS (UPDATE messages SET status = 'sending', attempt = 1, lease_owner = 'dead',"
	   " lease_until = now() - interval '1 second' WHERE id = %lld RETURNING customer_id, id)"
	   " INSERT INTO message_attempts (customer_id, message_id, attempt, started_at)"
	   " SELECT customer_id, id, 1, now() - interval '2 minutes' FROM u RETURNING 1",
	   held);
	q1("WITH u AS (UPDATE messages SET status = 'sending', attempt = 1, lease_owner = 'dead',"
	   " lease_until = now() - interval '1 second', last_error = 'reconcile',"
	   " updated_at = now() - interval '2 minutes' WHERE id = %lld RETURNING customer_id, id)"
	   " INSERT INTO message_attempts (customer_id, message_id, attempt, started_at,"
	   " finished_at, outcome) SELECT customer_id, id, 1, now() - interval '1 hour',"
	   " now() - interval '1 hour', 'ambiguous' FROM u RETURNING 1",
	   asked);
	static const char claim[] =
	    "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM ng_dispatch_claim("
	    "'me', now(), now() + interval '1 minute', %d, 'email', 'email', true)";
	char *got = qs(claim, 1);
	char want[128];
	snprintf(want, sizeof want, "%lld", held);
	ASSERT_EQ_STR(got, want);
	free(got);
	ASSERT_EQ_INT(q1("SELECT attempt FROM messages WHERE id = %lld", held), 2);
	got = qs(claim, 10);
	snprintf(want, sizeof want, "%lld,%lld,%lld", due[0], due[1], due[2]);
	ASSERT_EQ_STR(got, want);
	free(got);
	char *st = status_of(asked);
	ASSERT_EQ_STR(st, "sending");
	free(st);
	ASSERT_EQ_INT(q1("SELECT attempt FROM messages WHERE id = %lld", asked), 1);
	got = qs("SELECT coalesce(string_agg(id::text, ','), '') FROM ng_dispatch_claim_ambiguous("
	         "'me', now(), now() + interval '1 minute', 10, 'email', 'email', true,"
	         " interval '1 minute', interval '1 day')");
	snprintf(want, sizeof want, "%lld", asked);
	ASSERT_EQ_STR(got, want);
	free(got);
	ASSERT_EQ_INT(q1("SELECT attempt FROM messages WHERE id = %lld", asked), 1);
	schema_close();
}

NG_TESTS(NG_TEST(test_250_is_sent_with_history),
         NG_TEST(test_history_per_statement_and_delete_cascade),
         NG_TEST(test_temporary_replies_are_retried_then_sent),
         NG_TEST(test_permanent_replies_fail_and_suppress),
         NG_TEST(test_silence_after_data_times_out_and_is_retried),
         NG_TEST(test_reset_before_final_reply_is_retried_with_the_same_message_id),
         NG_TEST(test_wrong_password_is_retried_never_sent),
         NG_TEST(test_wrong_password_refused_at_rcpt_is_retried_never_suppressed),
         NG_TEST(test_policy_skips_with_a_reason),
         NG_TEST(test_unreadable_snapshot_fails_with_a_reason),
         NG_TEST(test_two_dispatchers_never_send_twice),
         NG_TEST(test_rate_limit_holds_a_lane_to_its_rate),
         NG_TEST(test_claim_takes_expired_leases_first_and_leaves_reconciles), )
