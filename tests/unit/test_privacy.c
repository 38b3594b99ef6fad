/*
 * test_privacy.c — `nudge customer export|forget` and the admin API against the real test cluster.
 *
 * forget must leave no personal data anywhere: the test plants a customer's email, phone and name
 * in every place nudge keeps data (profile, store ids, consent evidence, events, the effect
 * journal, message snapshots and errors, suppressions), erases them, then scans every text,
 * varchar, json and jsonb column of every table in the schema for each of those strings — so a
 * table added by a later migration is checked without anyone remembering to add it here.
 */
#include "db.h"
#include "httpd.h"
#include "privacy_api.h"
#include "support/serve_proc.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

/* The personal data one test plants, unique per process so parallel suites never collide. */
struct person {
	char email[96], phone[24], first[32], last[32];
	long long id;
};

static PGconn *connect_pg(void)
{
	PGconn *c = PQconnectdb(ng_test_pg());
	ASSERT_EQ_INT(PQstatus(c), CONNECTION_OK);
	return c;
}

/* Runs sql with params; returns the first value of the first row (static buffer, "" if none). */
static const char *q(PGconn *c, const char *sql, int n, const char *const *params)
{
	static char out[65536];
	PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
		ng_test_fail(__FILE__, __LINE__, "%s: %s", sql, PQresultErrorMessage(r));
	snprintf(out, sizeof out, "%s",
	         st == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)
	             ? PQgetvalue(r, 0, 0)
	             : "");
	PQclear(r);
	return out;
}

/* A customer with data in every table nudge keeps personal data in. */
static void plant(PGconn *c, struct person *p, const char *tag)
{
	int pid = (int)getpid();
	snprintf(p->email, sizeof p->email, "pat.%s.%d@example.com", tag, pid);
	snprintf(p->phone, sizeof p->phone, "+1555%07d", pid % 10000000);
	snprintf(p->first, sizeof p->first, "Patricia%s%d", tag, pid);
	snprintf(p->last, sizeof p->last, "Eraseme%d", pid);
	const char *cp[4] = {p->email, p->phone, p->first, p->last};
	p->id =
	    atoll(q(c,
	            "INSERT INTO customers (email, phone, first_name, last_name, timezone, "
	            "birthday, attributes) VALUES ($1, $2, $3, $4, 'Europe/Berlin', '1990-02-28', "
	            "jsonb_build_object('nickname', $3::text || ' ' || $4::text)) RETURNING id",
	            4, cp));
	char id[24];
	snprintf(id, sizeof id, "%lld", p->id);
	const char *ip[5] = {id, p->email, p->phone, p->first, p->last};
	q(c,
	  "INSERT INTO customer_identities (source, external_id, customer_id) "
	  "VALUES ('woocommerce', $2, $1::bigint)",
	  2, ip);
	q(c,
	  "INSERT INTO consents (customer_id, channel, purpose, status, source, evidence) VALUES "
	  "($1::bigint, 'email', 'marketing', 'granted', 'form', "
	  " jsonb_build_object('ip', '203.0.113.7', 'wording', 'Yes, email me', 'email', "
	  "$2::text)),"
	  "($1::bigint, 'sms', 'marketing', 'granted', 'shopify', jsonb_build_object('phone', "
	  "$3::text))",
	  3, ip);
	q(c,
	  "INSERT INTO events (customer_id, source, delivery_id, dedupe_key, type, data, "
	  "occurred_at)"
	  " VALUES ($1::bigint, 'test', 'd-' || $1, 'privacy-' || $1, 'checkout.started',"
	  " jsonb_build_object('email', $2::text, 'billing', jsonb_build_object('name', $4::text "
	  "|| ' '"
	  " || $5::text, 'phone', $3::text)), now())",
	  5, ip);
	q(c,
	  "INSERT INTO workflows (name, active_version) VALUES ('privacy_test', 1) "
	  "ON CONFLICT DO NOTHING",
	  0, NULL);
	q(c,
	  "INSERT INTO workflow_versions (workflow, version, source, source_hash) VALUES "
	  "('privacy_test', 1, 'return {}', 'privacy-test') ON CONFLICT DO NOTHING",
	  0, NULL);
	const char *inst =
	    q(c,
	      "INSERT INTO instances (customer_id, workflow, version, key, status, "
	      "wake_at, error) VALUES ($1::bigint, 'privacy_test', 1, $2, 'waiting', "
	      "now() + interval '1 day', NULL) RETURNING id",
	      2, ip);
	char iid[24];
	snprintf(iid, sizeof iid, "%s", inst);
	const char *ep[4] = {id, iid, p->email, p->first};
	q(c,
	  "INSERT INTO effects (customer_id, instance_id, seq, kind, args, result) VALUES "
	  "($1::bigint, $2::bigint, 0, 'customer', '{}', jsonb_build_object('email', $3::text, "
	  "'first_name', $4::text))",
	  4, ep);
	q(c,
	  "INSERT INTO messages (customer_id, instance_id, seq, workflow, channel, template, data)"
	  " VALUES ($1::bigint, $2::bigint, 1, 'privacy_test', 'email', 'welcome',"
	  " jsonb_build_object('greeting', 'Hi ' || $3::text))",
	  3, (const char *[]){id, iid, p->first});
	const char *mid =
	    q(c,
	      "INSERT INTO messages (customer_id, channel, template, status, data, "
	      "last_error, sent_at) VALUES ($1::bigint, 'email', 'receipt', 'failed', "
	      "jsonb_build_object('to', $2::text), '550 ' || $2 || ' unknown', now()) "
	      "RETURNING id",
	      2, (const char *[]){id, p->email});
	char mids[24];
	snprintf(mids, sizeof mids, "%s", mid);
	/* A status change whose reason quotes the address lands in the message's history. */
	q(c, "UPDATE messages SET status = 'retry', last_error = '452 ' || $2 || ' mailbox full' "
	     "WHERE customer_id = $1::bigint AND id = $3::bigint",
	  3, (const char *[]){id, p->email, mids});
	q(c, "UPDATE messages SET status = 'failed', last_error = '550 ' || $2 || ' unknown' "
	     "WHERE customer_id = $1::bigint AND id = $3::bigint",
	  3, (const char *[]){id, p->email, mids});
	const char *ap[3] = {id, mids, p->email};
	q(c,
	  "INSERT INTO message_attempts (customer_id, message_id, attempt, finished_at, outcome, "
	  "error) VALUES ($1::bigint, $2::bigint, 1, now(), 'failed', '550 <' || $3 || '>: no such "
	  "user')",
	  3, ap);
	q(c,
	  "INSERT INTO suppressions (channel, address, address_hash, reason, source, customer_id) "
	  "VALUES ('email', $2, ng_address_hash($2), 'hard_bounce', 'smtp', $1::bigint)",
	  2, ip);
}

/* The nudge binary of this build: BUILD/tests/test_privacy → BUILD/nudge. */
/* Runs `nudge CMD OP WHO [--yes] --conninfo …`; returns its stdout (malloc'd) and exit status. */
static char *run_nudge(const char *cmd, const char *op, const char *who, int yes, int *status)
{
	const char *argv[14];
	int n = 0;
	argv[n++] = cmd;
	if (op)
		argv[n++] = op;
	if (who)
		argv[n++] = who;
	argv[n++] = "--conninfo";
	argv[n++] = ng_test_pg();
	if (yes == 1)
		argv[n++] = "--yes";
	if (yes == 2)
		argv[n++] = "--direct";
	if (yes == 3 || yes == 4) { /* suppress: the channel, and add's reason */
		argv[n++] = "--channel";
		argv[n++] = "sms";
	}
	if (yes == 3) {
		argv[n++] = "--reason";
		argv[n++] = "complaint";
	}
	argv[n] = NULL;
	return ng_test_nudge(argv, status);
}

/* `nudge events send FILE --direct`: the intake's own path into the database. */
static char *run_events_send(const char *file, int *status)
{
	return run_nudge("events", "send", file, 2, status);
}

static char *run_cli(const char *op, const char *who, int yes, int *status)
{
	return run_nudge("customer", op, who, yes, status);
}

/*
 * Every (table, column) of type text/varchar/json/jsonb whose value contains needle. Returns how
 * many rows matched in all; where there should be none (expect_none), prints where they are.
 */
static long scan(PGconn *c, const char *needle, int expect_none)
{
	PGresult *cols =
	    PQexec(c, "SELECT table_name, column_name FROM information_schema.columns "
	              " JOIN information_schema.tables USING (table_schema, table_name)"
	              " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
	              "   AND data_type IN ('text', 'character varying', 'json', 'jsonb')");
	ASSERT_EQ_INT(PQresultStatus(cols), PGRES_TUPLES_OK);
	ASSERT_CMP_INT(PQntuples(cols), >, 20);
	long hits = 0;
	for (int i = 0; i < PQntuples(cols); i++) {
		char *t =
		    PQescapeIdentifier(c, PQgetvalue(cols, i, 0), strlen(PQgetvalue(cols, i, 0)));
		char *col =
		    PQescapeIdentifier(c, PQgetvalue(cols, i, 1), strlen(PQgetvalue(cols, i, 1)));
		char sql[512];
		snprintf(sql, sizeof sql,
		         "SELECT count(*) FROM %s WHERE strpos(lower(%s::text), lower($1)) > 0", t,
		         col);
		const char *p[1] = {needle};
		long n = atol(q(c, sql, 1, p));
		if (n && expect_none)
			fprintf(stderr, "  %s.%s holds \"%s\" in %ld rows\n", t, col, needle, n);
		hits += n;
		PQfreemem(t);
		PQfreemem(col);
	}
	PQclear(cols);
	return hits;
}

#define scan_for(c, needle)   scan(c, needle, 1)
#define scan_count(c, needle) scan(c, needle, 0)

static void test_export_has_consent_history_and_messages(void)
{
	PGconn *c = connect_pg();
	struct person p;
	plant(c, &p, "export");
	int st;
	char *out = run_cli("export", p.email, 0, &st);
	ASSERT_EQ_INT(st, 0);
	json_error_t err;
	json_t *doc = json_loads(out, 0, &err);
	if (!doc)
		ng_test_fail(__FILE__, __LINE__, "export is not JSON: %s: %s", err.text, out);
	ASSERT_EQ_STR(json_string_value(json_object_get(json_object_get(doc, "customer"), "email")),
	              p.email);
	ASSERT_EQ_INT(json_integer_value(json_object_get(json_object_get(doc, "customer"), "id")),
	              p.id);
	json_t *hist = json_object_get(doc, "consent_history");
	ASSERT_EQ_INT(json_array_size(hist), 2);
	ASSERT_EQ_STR(json_string_value(json_object_get(json_array_get(hist, 0), "status")),
	              "granted");
	ASSERT_EQ_INT(json_array_size(json_object_get(doc, "messages")), 2);
	ASSERT_EQ_INT(json_array_size(json_object_get(doc, "events")), 1);
	ASSERT_EQ_INT(json_array_size(json_object_get(doc, "identities")), 1);
	ASSERT_EQ_INT(json_array_size(json_object_get(doc, "suppressions")), 1);
	/* The failed message carries its attempt. */
	json_t *msgs = json_object_get(doc, "messages");
	size_t attempts = 0;
	for (size_t i = 0; i < json_array_size(msgs); i++)
		attempts += json_array_size(json_object_get(json_array_get(msgs, i), "attempts"));
	ASSERT_EQ_INT(attempts, 1);
	json_decref(doc);
	free(out);

	/* By id and by phone it is the same customer; an unknown one is an error. */
	char id[24];
	snprintf(id, sizeof id, "%lld", p.id);
	out = run_cli("export", id, 0, &st);
	ASSERT_EQ_INT(st, 0);
	ASSERT_CONTAINS(out, p.phone);
	free(out);
	out = run_cli("export", "nobody.here@example.com", 0, &st);
	ASSERT_EQ_INT(st, 1);
	free(out);
	PQfinish(c);
}

static void test_forget_leaves_no_personal_data(void)
{
	PGconn *c = connect_pg();
	struct person p;
	plant(c, &p, "forget");
	ASSERT_CMP_INT(scan_count(c, p.email), >, 5); /* the scan sees what it looks for */

	int st;
	char *out = run_cli("forget", p.email, 0, &st);
	ASSERT_EQ_INT(st, 2); /* refuses without --yes, erases nothing */
	free(out);
	ASSERT_CMP_INT(scan_count(c, p.email), >, 5);

	out = run_cli("forget", p.email, 1, &st);
	ASSERT_EQ_INT(st, 0);
	json_t *res = json_loads(out, 0, NULL);
	ASSERT(res != NULL);
	ASSERT_EQ_INT(json_integer_value(json_object_get(res, "instances_cancelled")), 1);
	ASSERT_EQ_INT(json_integer_value(json_object_get(res, "messages_cancelled")), 1);
	ASSERT_EQ_INT(json_integer_value(json_object_get(res, "events_deleted")), 1);
	json_decref(res);
	free(out);

	ASSERT_EQ_INT(scan_for(c, p.email), 0);
	ASSERT_EQ_INT(scan_for(c, p.phone), 0);
	ASSERT_EQ_INT(scan_for(c, p.first), 0);
	ASSERT_EQ_INT(scan_for(c, p.last), 0);

	char id[24];
	snprintf(id, sizeof id, "%lld", p.id);
	const char *ip[1] = {id};
	const char *addrs[2] = {p.email, p.phone};
	/* Their instance ended; their queued message will never go out. */
	ASSERT_EQ_STR(
	    q(c, "SELECT string_agg(status, ',') FROM instances WHERE customer_id = $1", 1, ip),
	    "cancelled");
	ASSERT_EQ_STR(q(c,
	                "SELECT count(*) FROM messages WHERE customer_id = $1 AND status IN "
	                "('queued', 'retry', 'deferred', 'sending')",
	                1, ip),
	              "0");
	ASSERT_EQ_STR(q(c, "SELECT erased_at IS NOT NULL FROM customers WHERE id = $1", 1, ip),
	              "t");
	/* Only hashes remain, and they block both addresses. */
	ASSERT_EQ_STR(q(c,
	                "SELECT count(*) FROM suppressions WHERE address IS NULL AND "
	                "reason = 'erased' AND ((channel = 'email' AND address_hash = "
	                "ng_address_hash($1)) OR (channel = 'sms' AND address_hash = "
	                "ng_address_hash($2)))",
	                2, addrs),
	              "2");

	/* A later event with the same email and a marketing flag (as a store webhook carries it:
	 * never explicit) makes a new customer but does not bring marketing back. */
	char path[] = "/tmp/nudge-privacy-event-XXXXXX";
	int fd = mkstemp(path);
	ASSERT(fd >= 0);
	FILE *f = fdopen(fd, "w");
	fprintf(f,
	        "{\"type\": \"customer.created\", \"customer\": {\"email\": \"%s\"},"
	        " \"consent\": {\"email\": \"subscribed\"}, \"idempotency_key\": \"re-%s\"}",
	        p.email, p.email);
	fclose(f);
	out = run_events_send(path, &st);
	ASSERT_EQ_INT(st, 0);
	free(out);
	const char *e1[1] = {p.email};
	ASSERT_EQ_STR(q(c, "SELECT count(*) FROM consents k JOIN customers c ON c.id = k.customer_id"
	                   " WHERE c.email = $1 AND k.status = 'granted'",
	                1, e1),
	              "0");
	ASSERT_EQ_STR(q(c, "SELECT ng_delivery_policy(c.id, 'email', 'marketing', c.email)"
	                   " FROM customers c WHERE c.email = $1",
	                1, e1),
	              "suppressed:erased");
	/* Only a new explicit opt-in, recorded as such, does. */
	f = fopen(path, "w");
	fprintf(f,
	        "{\"type\": \"newsletter.signup\", \"customer\": {\"email\": \"%s\"},"
	        " \"consent\": {\"email\": {\"state\": \"subscribed\", \"explicit\": true,"
	        " \"source\": \"signup_form\", \"evidence\": {\"ip\": \"198.51.100.4\","
	        " \"wording\": \"Email me offers\"}}}, \"idempotency_key\": \"optin-%s\"}",
	        p.email, p.email);
	fclose(f);
	out = run_events_send(path, &st);
	unlink(path);
	ASSERT_EQ_INT(st, 0);
	free(out);
	ASSERT_EQ_STR(q(c, "SELECT k.source || ' ' || (k.evidence->>'explicit') || ' ' ||"
	                   " (k.evidence->>'wording') FROM consents k JOIN customers c"
	                   " ON c.id = k.customer_id WHERE c.email = $1 AND k.status = 'granted'",
	                1, e1),
	              "signup_form true Email me offers");
	ASSERT_EQ_STR(q(c, "SELECT coalesce(ng_delivery_policy(c.id, 'email', 'marketing', c.email),"
	                   " 'send') FROM customers c WHERE c.email = $1",
	                1, e1),
	              "send");

	/* Forgetting twice changes nothing and says so. */
	out = run_cli("forget", id, 1, &st);
	ASSERT_EQ_INT(st, 0);
	ASSERT_CONTAINS(out, "already_erased");
	free(out);
	PQfinish(c);
}

static void test_retention_purges_only_old_finished_rows(void)
{
	PGconn *c = connect_pg();
	struct person p;
	plant(c, &p, "retention");
	char id[24];
	snprintf(id, sizeof id, "%lld", p.id);
	const char *ip[1] = {id};
	/* The planted event is still in the workflow inbox (the insert trigger queued it). */
	q(c, "UPDATE events SET received_at = now() - interval '400 days' WHERE customer_id = $1",
	  1, ip);
	q(c, "UPDATE messages SET updated_at = now() - interval '400 days' WHERE customer_id = $1",
	  1, ip);
	q(c, "SELECT ng_retention_purge(365, 365)", 0, NULL);
	ASSERT_EQ_STR(q(c, "SELECT count(*) FROM events WHERE customer_id = $1", 1, ip), "1");
	ASSERT_EQ_STR(q(c, "SELECT count(*) FROM messages WHERE customer_id = $1", 1, ip), "1");
	ASSERT_EQ_STR(q(c, "SELECT status FROM messages WHERE customer_id = $1", 1, ip), "queued");
	q(c, "DELETE FROM workflow_inbox WHERE customer_id = $1", 1, ip);
	q(c, "SELECT ng_retention_purge(365, 0)", 0, NULL);
	ASSERT_EQ_STR(q(c, "SELECT count(*) FROM events WHERE customer_id = $1", 1, ip), "0");
	PQfinish(c);
}

/* The admin API: a client thread talks to a server on this thread's loop. */
struct api_client {
	int port;
	char requests[4][512];
	char answers[4][8192];
	uv_async_t *done;
};

static void http_exchange(int port, const char *req, char *answer, size_t cap)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		snprintf(answer, cap, "connect failed");
		close(fd);
		return;
	}
	ssize_t w = write(fd, req, strlen(req));
	(void)w;
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, answer + len, cap - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	answer[len] = '\0';
	close(fd);
}

static void *client_main(void *arg)
{
	struct api_client *cl = arg;
	for (int i = 0; i < 4; i++)
		http_exchange(cl->port, cl->requests[i], cl->answers[i], sizeof cl->answers[i]);
	uv_async_send(cl->done);
	return NULL;
}

struct api_run {
	struct ng_httpd *srv;
	ng_db *db;
	int closed;
};

static void on_closed(void *arg)
{
	(*(int *)arg)++;
}

static void on_client_done(uv_async_t *a)
{
	struct api_run *run = a->data;
	ng_httpd_close(run->srv, on_closed, &run->closed);
	ng_db_close(run->db, on_closed, &run->closed);
	uv_close((uv_handle_t *)a, NULL);
}

static void test_admin_api_export_and_forget(void)
{
	PGconn *c = connect_pg();
	struct person p;
	plant(c, &p, "api");

	uv_loop_t loop;
	uv_loop_init(&loop);
	struct api_run run = {0};
	struct ng_db_options dbo = {.conninfo = ng_test_pg(), .pool_size = 2};
	ASSERT_EQ_INT(ng_db_open(&run.db, &loop, &dbo), 0);
	struct ng_httpd_options ho = {0};
	ASSERT_EQ_INT(ng_httpd_open(&run.srv, &loop, &ho), 0);
	ASSERT_EQ_INT(ng_httpd_listen(run.srv, "127.0.0.1", 0), 0);
	struct ng_privacy_api api = {run.db, "s3cret-admin-key"};
	ng_privacy_routes(&api, run.srv);

	struct api_client cl = {.port = ng_httpd_port(run.srv)};
	snprintf(cl.requests[0], sizeof cl.requests[0],
	         "GET /v1/customers/%lld/export HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
	         "Authorization: Bearer wrong\r\n\r\n",
	         p.id);
	snprintf(cl.requests[1], sizeof cl.requests[1],
	         "GET /v1/customers/%lld/export HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
	         "Authorization: Bearer s3cret-admin-key\r\n\r\n",
	         p.id);
	snprintf(cl.requests[2], sizeof cl.requests[2],
	         "GET /v1/customers/%lld/forget HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
	         "Authorization: Bearer s3cret-admin-key\r\n\r\n",
	         p.id);
	snprintf(cl.requests[3], sizeof cl.requests[3],
	         "POST /v1/customers/%lld/forget HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
	         "Content-Length: 0\r\nAuthorization: Bearer s3cret-admin-key\r\n\r\n",
	         p.id);
	uv_async_t done;
	uv_async_init(&loop, &done, on_client_done);
	done.data = &run;
	cl.done = &done;
	pthread_t th;
	ASSERT_EQ_INT(pthread_create(&th, NULL, client_main, &cl), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	pthread_join(th, NULL);
	ASSERT_EQ_INT(run.closed, 2);
	ASSERT_EQ_INT(uv_loop_close(&loop), 0);

	ASSERT_CONTAINS(cl.answers[0], "HTTP/1.1 401");
	ASSERT(strstr(cl.answers[0], p.email) == NULL);
	ASSERT_CONTAINS(cl.answers[1], "HTTP/1.1 200");
	ASSERT_CONTAINS(cl.answers[1], p.email);
	ASSERT_CONTAINS(cl.answers[1], "consent_history");
	ASSERT_CONTAINS(cl.answers[2], "HTTP/1.1 405");
	ASSERT_CONTAINS(cl.answers[3], "HTTP/1.1 200");
	ASSERT_CONTAINS(cl.answers[3], "instances_cancelled");
	ASSERT_EQ_INT(scan_for(c, p.email), 0);
	PQfinish(c);
}

/* trace and why tell the story from what is recorded, in time order. */
static void test_trace_and_why_tell_the_story(void)
{
	PGconn *c = connect_pg();
	struct person p;
	plant(c, &p, "trace");
	char id[24];
	snprintf(id, sizeof id, "%lld", p.id);
	int st;
	char *out = run_nudge("trace", NULL, id, 0, &st);
	ASSERT_EQ_INT(st, 0);
	ASSERT_CONTAINS(out, "checkout.started from test");
	ASSERT_CONTAINS(out, "privacy_test instance");
	ASSERT_CONTAINS(out, "email marketing granted (source form)");
	ASSERT_CONTAINS(out, "queued: email welcome (marketing, from privacy_test)");
	ASSERT_CONTAINS(out, "attempt 1: failed");
	ASSERT_CONTAINS(out, "address suppressed: hard_bounce");
	/* Time order: the consent (recorded first) precedes the failed delivery. */
	ASSERT(strstr(out, "granted (source form)") < strstr(out, "attempt 1: failed"));
	free(out);

	const char *ip[1] = {id};
	char mid[24];
	snprintf(
	    mid, sizeof mid, "%s",
	    q(c, "SELECT id FROM messages WHERE customer_id = $1 AND status = 'failed'", 1, ip));
	out = run_nudge("why", NULL, mid, 0, &st);
	ASSERT_EQ_INT(st, 0);
	ASSERT_CONTAINS(out, "receipt to customer");
	ASSERT_CONTAINS(out, "attempt 1: failed");
	ASSERT_CONTAINS(out, "no such user");
	ASSERT(strstr(out, "welcome") == NULL); /* the other message is not this one's story */
	free(out);

	out = run_nudge("why", NULL, "999999999", 0, &st);
	ASSERT_EQ_INT(st, 1);
	free(out);
	PQfinish(c);
}

/* `nudge suppress`: an added address is held back by the policy; lifting it lets it go again. */
static void test_manual_suppression(void)
{
	PGconn *c = connect_pg();
	struct person p;
	plant(c, &p, "suppress");
	char id[24];
	snprintf(id, sizeof id, "%lld", p.id);
	const char *ip[1] = {id};
	const char *policy = "SELECT coalesce(ng_delivery_policy(id, 'sms', 'marketing', phone),"
	                     " 'send') FROM customers WHERE id = $1";
	ASSERT_EQ_STR(q(c, policy, 1, ip), "send");
	int st;
	char *out = run_nudge("suppress", "add", p.phone, 3, &st);
	ASSERT_EQ_INT(st, 0);
	ASSERT_CONTAINS(out, "suppressed sms");
	free(out);
	ASSERT_EQ_STR(q(c, policy, 1, ip), "suppressed:complaint");
	out = run_nudge("suppress", "list", NULL, 4, &st);
	ASSERT_EQ_INT(st, 0);
	ASSERT_CONTAINS(out, p.phone);
	free(out);
	out = run_nudge("suppress", "remove", p.phone, 4, &st);
	ASSERT_EQ_INT(st, 0);
	ASSERT_CONTAINS(out, "lifted (complaint)");
	free(out);
	ASSERT_EQ_STR(q(c, policy, 1, ip), "send");
	out = run_nudge("suppress", "add", "not-an-address", 3, &st);
	ASSERT_EQ_INT(st, 1);
	free(out);
	PQfinish(c);
}

NG_TESTS(NG_TEST(test_manual_suppression),
         NG_TEST(test_trace_and_why_tell_the_story),
         NG_TEST(test_export_has_consent_history_and_messages),
         NG_TEST(test_forget_leaves_no_personal_data),
         NG_TEST(test_retention_purges_only_old_finished_rows),
         NG_TEST(test_admin_api_export_and_forget), )
