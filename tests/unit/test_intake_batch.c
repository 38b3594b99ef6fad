/*
 * test_intake_batch.c — ng_intake_accept_batch (sql/0012, sql/0017) in PostgreSQL: one group
 * commit answers event by event, in order, as separate deliveries would: a key an earlier event of
 * the batch carried makes a later one a duplicate, a customer an earlier event created is found.
 */
#include "ng.h"
#include "support/serve_proc.h"
#include "testlib.h"

#include <stdlib.h>

static struct ng_test_schema sc;

static void exec_ok(const char *sql)
{
	PGresult *r = PQexec(sc.pg, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
		ng_test_fail(__FILE__, __LINE__, "%s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
}

/* Runs the batch and keeps its answers in the temporary table "answers" (n: 1-based position). */
static void run_batch(const char *events)
{
	exec_ok("DROP TABLE IF EXISTS answers");
	char *sql = ng_xasprintf("CREATE TEMP TABLE answers AS SELECT n, r FROM"
	                         " ng_intake_accept_batch('%s'::jsonb) WITH ORDINALITY AS t(r, n)",
	                         events);
	exec_ok(sql);
	free(sql);
}

static const char *const batch =
    "["
    "{\"source\": \"api\", \"type\": \"a\", \"dedupe_keys\": [\"k1\"],"
    " \"customer\": {\"email\": \"a@example.com\"}},"
    /* the first key of an earlier event of the batch */
    "{\"source\": \"api\", \"type\": \"b\", \"dedupe_keys\": [\"k1\"],"
    " \"customer\": {\"email\": \"b@example.com\"}},"
    "{\"source\": \"api\", \"type\": \"c\", \"dedupe_keys\": [\"k2\", \"k3\"],"
    " \"customer\": {\"email\": \"a@example.com\"}},"
    /* the second key of an earlier event */
    "{\"source\": \"api\", \"type\": \"d\", \"dedupe_keys\": [\"k3\"],"
    " \"customer\": {\"email\": \"d@example.com\"}},"
    /* no key: never a duplicate */
    "{\"source\": \"api\", \"type\": \"e\", \"customer\": {\"email\": \"new@example.com\"}},"
    /* the customer the event before created */
    "{\"source\": \"api\", \"type\": \"f\", \"dedupe_keys\": [\"k4\"],"
    " \"customer\": {\"email\": \"new@example.com\"}},"
    /* the same key from another source is another event */
    "{\"source\": \"other\", \"type\": \"g\", \"dedupe_keys\": [\"k1\"],"
    " \"customer\": {\"email\": \"g@example.com\"}},"
    /* a suppressed address ticking "subscribed": its grant is refused and said so */
    "{\"source\": \"api\", \"type\": \"h\", \"dedupe_keys\": [\"k5\"],"
    " \"customer\": {\"email\": \"sup@example.com\"},"
    " \"consent\": {\"email\": {\"state\": \"subscribed\"}}}"
    "]";

static void test_batch_answers_event_by_event(void)
{
	ng_test_schema_open(&sc);
	exec_ok("INSERT INTO suppressions (channel, address, address_hash, reason, source)"
	        " VALUES ('email', 'sup@example.com', ng_address_hash('sup@example.com'),"
	        " 'hard_bounce', 'test')");
	run_batch(batch);
	char *got = NULL;
	{
		PGresult *r =
		    PQexec(sc.pg, "SELECT string_agg(r->>'status', ',' ORDER BY n) FROM answers");
		ASSERT_EQ_INT(PQresultStatus(r), PGRES_TUPLES_OK);
		got = ng_xstrdup(PQgetvalue(r, 0, 0));
		PQclear(r);
	}
	ASSERT_EQ_STR(got,
	              "accepted,duplicate,accepted,duplicate,accepted,accepted,accepted,accepted");
	free(got);
	/* Each answer names its own event and customer. */
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(*) FROM answers a JOIN events e ON"
	                                " e.id = (a.r->>'event_id')::bigint AND e.customer_id ="
	                                " (a.r->>'customer_id')::bigint"),
	              6);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(DISTINCT r->>'customer_id') FROM answers"
	                                " WHERE n IN (1, 3)"),
	              1);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(DISTINCT r->>'customer_id') FROM answers"
	                                " WHERE n IN (5, 6)"),
	              1);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(*) FROM customers"), 4);
	/* Ids follow the batch's order, which the workflow engine follows. */
	ASSERT_EQ_INT(ng_test_q1(sc.pg,
	                         "SELECT count(*) FROM (SELECT n, lag((r->>'event_id')::bigint)"
	                         " OVER (ORDER BY n) < (r->>'event_id')::bigint AS up FROM answers"
	                         " WHERE r->>'status' = 'accepted') x WHERE up"),
	              5);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(*) FROM events e JOIN answers a ON"
	                                " e.id = (a.r->>'event_id')::bigint WHERE a.n = 3 AND"
	                                " e.dedupe_key = 'k2' AND e.type = 'c'"),
	              1);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(*) FROM event_keys k JOIN answers a ON"
	                                " k.event_id = (a.r->>'event_id')::bigint WHERE a.n = 3 AND"
	                                " k.dedupe_key = 'k3'"),
	              1);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(*) FROM answers WHERE n = 8 AND"
	                                " r->'consent_refused' = '[\"email\"]'"),
	              1);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(*) FROM answers WHERE n <> 8 AND"
	                                " r ? 'consent_refused'"),
	              0);
	/* One inbox row per accepted event. */
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(*) FROM workflow_inbox i JOIN answers a ON"
	                                " i.event_id = (a.r->>'event_id')::bigint"),
	              6);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(*) FROM workflow_inbox"), 6);
	/* Delivered again: every keyed event is a duplicate and changes nothing. */
	run_batch(batch);
	ASSERT_EQ_INT(
	    ng_test_q1(sc.pg, "SELECT count(*) FROM answers WHERE r->>'status' = 'accepted'"), 1);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(*) FROM answers a JOIN events e ON"
	                                " e.id = (a.r->>'event_id')::bigint WHERE e.type = 'e'"),
	              1);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(*) FROM events"), 7);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(*) FROM workflow_inbox"), 7);
	ng_test_schema_close(&sc);
}

/* A key another transaction recorded after the batch's own check: the batch raises NGIN1 (the
 * daemon then sends its requests one by one) and records nothing. */
static void test_batch_conflict_raises_and_records_nothing(void)
{
	ng_test_schema_open(&sc);
	/* The duplicate check runs before the customer and the insert; a trigger stands in for the
	 * concurrent transaction that records the key in between. */
	exec_ok(
	    "CREATE FUNCTION sneak() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
	    " IF NEW.email = 'late@example.com' THEN"
	    "  INSERT INTO events (customer_id, source, dedupe_key, type, occurred_at)"
	    "  VALUES (NEW.id, 'api', 'late', 'sneaked', now()); END IF;"
	    " RETURN NULL; END $$;"
	    "CREATE TRIGGER sneak AFTER INSERT ON customers FOR EACH ROW EXECUTE FUNCTION sneak()");
	char *sql =
	    ng_xasprintf("SELECT count(*) FROM ng_intake_accept_batch('[%s, %s]'::jsonb)",
	                 "{\"source\": \"api\", \"type\": \"x\", \"dedupe_keys\": [\"early\"],"
	                 " \"customer\": {\"email\": \"x@example.com\"}}",
	                 "{\"source\": \"api\", \"type\": \"y\", \"dedupe_keys\": [\"late\"],"
	                 " \"customer\": {\"email\": \"late@example.com\"}}");
	exec_ok("BEGIN");
	PGresult *r = PQexec(sc.pg, sql);
	free(sql);
	ASSERT_EQ_INT(PQresultStatus(r), PGRES_FATAL_ERROR);
	ASSERT_EQ_STR(PQresultErrorField(r, PG_DIAG_SQLSTATE), "NGIN1");
	PQclear(r);
	exec_ok("ROLLBACK");
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(*) FROM events"), 0);
	ng_test_schema_close(&sc);
}

NG_TESTS(NG_TEST(test_batch_answers_event_by_event),
         NG_TEST(test_batch_conflict_raises_and_records_nothing), )
