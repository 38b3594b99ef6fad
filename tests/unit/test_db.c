/*
 * test_db.c — the PostgreSQL pool against the real test cluster (NUDGE_TEST_PG): parameters and
 * errors, 10,000 pipelined inserts, statement timeout, atomic batches, surviving
 * pg_terminate_backend and a server restart mid-stream, close with work in flight, the queue
 * deadline, LISTEN/NOTIFY. Tables are named ng_dbtest_* and dropped at the end.
 */
#include "../testlib.h"

#include "db.h"
#include "ng.h"

#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>
#include <valgrind/valgrind.h>

/* ---- shared helpers ---- */

/* Loop lag: a 10 ms repeating timer measures how late it fires. */
struct lag_probe {
	uv_timer_t timer;
	uint64_t last_ns;
	uint64_t max_late_ms;
};

static void on_lag_tick(uv_timer_t *t)
{
	struct lag_probe *p = t->data;
	uint64_t now = uv_hrtime();
	uint64_t expected = p->last_ns + 10 * 1000000ull;
	if (now > expected && (now - expected) / 1000000 > p->max_late_ms)
		p->max_late_ms = (now - expected) / 1000000;
	p->last_ns = now;
}

static void lag_start(uv_loop_t *loop, struct lag_probe *p)
{
	memset(p, 0, sizeof(*p));
	uv_timer_init(loop, &p->timer);
	p->timer.data = p;
	p->last_ns = uv_hrtime();
	uv_timer_start(&p->timer, on_lag_tick, 10, 10);
}

static void lag_stop(struct lag_probe *p)
{
	uv_close((uv_handle_t *)&p->timer, NULL);
}

/* The acceptance bound is 50 ms; under valgrind everything runs ~30x slower. */
static uint64_t lag_bound_ms(void)
{
	return RUNNING_ON_VALGRIND ? 2000 : 50;
}

static void on_closed(void *arg)
{
	(*(int *)arg)++;
}

static ng_db *open_db(uv_loop_t *loop, struct ng_db_options *o, const char *extra_conninfo)
{
	char *ci = ng_xasprintf("%s %s", ng_test_pg(), extra_conninfo ? extra_conninfo : "");
	o->conninfo = ci;
	ng_db *db = NULL;
	int rc = ng_db_open(&db, loop, o);
	free(ci);
	ASSERT_EQ_INT(rc, 0);
	ASSERT(db != NULL);
	return db;
}

static void finish_loop(uv_loop_t *loop)
{
	uv_run(loop, UV_RUN_DEFAULT);
	ASSERT_EQ_INT(uv_loop_close(loop), 0);
}

/* ---- parameters, errors, callback discipline ---- */

static int in_submit;

struct basic_state {
	ng_db *db;
	int calls[4];
	int closed;
};

static void basic_maybe_close(struct basic_state *s)
{
	if (s->calls[0] + s->calls[1] + s->calls[2] + s->calls[3] == 4)
		ASSERT_EQ_INT(ng_db_close(s->db, on_closed, &s->closed), 0);
}

static void on_basic_value(const struct ng_db_result *r, void *arg)
{
	struct basic_state *s = arg;
	ASSERT_EQ_INT(in_submit, 0);
	s->calls[0]++;
	ASSERT_EQ_INT(r->status, 0);
	ASSERT_EQ_INT(PQntuples(r->res), 1);
	ASSERT_EQ_STR(PQgetvalue(r->res, 0, 0), "42");
	ASSERT_EQ_STR(PQgetvalue(r->res, 0, 1), "t");
	ASSERT_EQ_STR(PQgetvalue(r->res, 0, 2), "it's; DROP TABLE x --");
	ASSERT_EQ_INT(r->nresults, 1);
	ASSERT(r->results[0] == r->res);
	ASSERT_EQ_INT(r->failed, -1);
	basic_maybe_close(s);
}

static void on_basic_syntax(const struct ng_db_result *r, void *arg)
{
	struct basic_state *s = arg;
	s->calls[1]++;
	ASSERT_EQ_INT(r->status, NG_EDB);
	ASSERT_EQ_STR(r->sqlstate, "42601");
	ASSERT_CONTAINS(r->message, "syntax error");
	basic_maybe_close(s);
}

static void on_basic_missing(const struct ng_db_result *r, void *arg)
{
	struct basic_state *s = arg;
	s->calls[2]++;
	ASSERT_EQ_INT(r->status, NG_EDB);
	ASSERT_EQ_STR(r->sqlstate, "42P01");
	ASSERT_CONTAINS(r->message, "ng_dbtest_no_such_table");
	basic_maybe_close(s);
}

static void on_basic_empty(const struct ng_db_result *r, void *arg)
{
	struct basic_state *s = arg;
	s->calls[3]++;
	ASSERT_EQ_INT(r->status, 0);
	ASSERT_EQ_STR(r->message, "");
	ASSERT_EQ_STR(r->sqlstate, "");
	basic_maybe_close(s);
}

static void test_query_params_and_errors(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct ng_db_options o = {.pool_size = 2};
	struct basic_state s = {0};
	s.db = open_db(&loop, &o, NULL);

	const char *p[] = {"41", NULL, "it's; DROP TABLE x --"};
	in_submit = 1;
	ASSERT_EQ_INT(ng_db_query(s.db, "SELECT $1::int + 1, $2::text IS NULL, $3::text", 3, p,
	                          on_basic_value, &s),
	              0);
	ASSERT_EQ_INT(ng_db_query(s.db, "SELEC 1", 0, NULL, on_basic_syntax, &s), 0);
	ASSERT_EQ_INT(ng_db_query(s.db, "SELECT * FROM ng_dbtest_no_such_table", 0, NULL,
	                          on_basic_missing, &s),
	              0);
	ASSERT_EQ_INT(ng_db_query(s.db, "SELECT 1", 0, NULL, on_basic_empty, &s), 0);
	ASSERT_EQ_INT(ng_db_query(s.db, NULL, 0, NULL, on_basic_empty, &s), -EINVAL);
	ASSERT_EQ_INT(ng_db_query(s.db, "SELECT 1", 0, NULL, NULL, &s), -EINVAL);
	ASSERT_EQ_INT(ng_db_query(s.db, "SELECT 1", 70000, p, on_basic_empty, &s), -EINVAL);
	in_submit = 0;
	/* Nothing was delivered from inside ng_db_query. */
	ASSERT_EQ_INT(s.calls[0] + s.calls[1] + s.calls[2] + s.calls[3], 0);

	finish_loop(&loop);
	ASSERT_EQ_INT(s.closed, 1);
	for (int i = 0; i < 4; i++)
		ASSERT_EQ_INT(s.calls[i], 1);
}

/* Closing while the connections are still being made, with nothing submitted. */
static void test_open_then_close_at_once(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct ng_db_options o = {.pool_size = 3};
	int closed = 0;
	ng_db *db = open_db(&loop, &o, NULL);
	struct ng_db_stats st;
	ng_db_stats(db, &st);
	ASSERT_EQ_INT(st.conns_total, 3);
	ASSERT_EQ_INT(st.conns_connecting, 3);
	ASSERT_EQ_INT(ng_db_close(db, on_closed, &closed), 0);
	ASSERT_EQ_INT(closed, 0); /* done comes from the loop */
	finish_loop(&loop);
	ASSERT_EQ_INT(closed, 1);
}

static void test_bad_conninfo(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct ng_db_options o = {.conninfo = "host=127.0.0.1 nonsense_key=1"};
	ng_db *db = (ng_db *)&o;
	ASSERT_EQ_INT(ng_db_open(&db, &loop, &o), NG_ECONFIG);
	ASSERT(db == NULL);
	ASSERT_EQ_INT(uv_loop_close(&loop), 0);
}

/* ---- 10,000 pipelined inserts ---- */

#define BULK_N 10000

struct bulk_state {
	ng_db *db;
	unsigned char calls[BULK_N];
	int done, failed;
	uint64_t start_ns, end_ns;
	long long counted;
	int closed;
	struct lag_probe lag;
};

static void on_bulk_count(const struct ng_db_result *r, void *arg)
{
	struct bulk_state *s = arg;
	ASSERT_EQ_INT(r->status, 0);
	s->counted = atoll(PQgetvalue(r->res, 0, 0));
	struct ng_db_stats st;
	ng_db_stats(s->db, &st);
	ASSERT_EQ_INT(st.completed, BULK_N + 1); /* this callback counts */
	ASSERT_EQ_INT(st.errors, 0);
	ASSERT_EQ_INT(st.queued, 0);
	ASSERT_EQ_INT(st.in_flight, 0);
	ASSERT_EQ_INT(st.conns_total, 4);
	ASSERT_EQ_INT(st.conns_ready, 4);
	ASSERT_EQ_INT(st.reconnects, 0);
	ASSERT_EQ_INT(ng_db_close(s->db, on_closed, &s->closed), 0);
	lag_stop(&s->lag);
}

struct bulk_item {
	struct bulk_state *s;
	int id;
};

static void on_bulk_item(const struct ng_db_result *r, void *arg)
{
	struct bulk_item *it = arg;
	struct bulk_state *s = it->s;
	s->calls[it->id]++;
	if (r->status != 0) {
		fprintf(stderr, "  insert %d: %s\n", it->id, r->message);
		s->failed++;
	}
	if (++s->done == BULK_N) {
		s->end_ns = uv_hrtime();
		ASSERT_EQ_INT(ng_db_query(s->db, "SELECT count(*) FROM ng_dbtest_bulk", 0, NULL,
		                          on_bulk_count, s),
		              0);
	}
}

static void test_pipelined_inserts_10k(void)
{
	ng_test_pg_exec("SET client_min_messages = warning; DROP TABLE IF EXISTS ng_dbtest_bulk");
	ng_test_pg_exec("CREATE TABLE ng_dbtest_bulk (id int PRIMARY KEY, v text NOT NULL)");
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct ng_db_options o = {.pool_size = 4, .pipeline_depth = 256};
	struct bulk_state *s = ng_xcalloc(1, sizeof(*s));
	struct bulk_item *items = ng_xcalloc(BULK_N, sizeof(*items));
	s->db = open_db(&loop, &o, NULL);
	lag_start(&loop, &s->lag);

	s->start_ns = uv_hrtime();
	for (int i = 0; i < BULK_N; i++) {
		char id[16], v[32];
		snprintf(id, sizeof(id), "%d", i);
		snprintf(v, sizeof(v), "row %d", i);
		const char *p[] = {id, v};
		items[i].s = s;
		items[i].id = i;
		ASSERT_EQ_INT(ng_db_query(s->db,
		                          "INSERT INTO ng_dbtest_bulk (id, v) VALUES ($1, $2)", 2,
		                          p, on_bulk_item, &items[i]),
		              0);
	}
	struct ng_db_stats st;
	ng_db_stats(s->db, &st);
	ASSERT_EQ_INT(st.queued, BULK_N);
	finish_loop(&loop);

	double secs = (double)(s->end_ns - s->start_ns) / 1e9;
	printf("# 10000 pipelined inserts (pool 4, depth 256): %.3f s, %.0f queries/s, max loop "
	       "lag %llu ms\n",
	       secs, BULK_N / secs, (unsigned long long)s->lag.max_late_ms);
	ASSERT_EQ_INT(s->closed, 1);
	ASSERT_EQ_INT(s->failed, 0);
	for (int i = 0; i < BULK_N; i++)
		ASSERT_EQ_INT(s->calls[i], 1);
	ASSERT_EQ_INT(s->counted, BULK_N);
	ASSERT_CMP_INT(s->lag.max_late_ms, <, lag_bound_ms());
	ng_test_pg_exec("DROP TABLE ng_dbtest_bulk");
	free(items);
	free(s);
}

/* ---- statement timeout ---- */

struct timeout_state {
	ng_db *db;
	int slow, fast, closed;
};

static void on_timeout_fast(const struct ng_db_result *r, void *arg)
{
	struct timeout_state *s = arg;
	s->fast++;
	ASSERT_EQ_INT(r->status, 0);
	ASSERT_EQ_STR(PQgetvalue(r->res, 0, 0), "ok");
	ASSERT_EQ_INT(ng_db_close(s->db, on_closed, &s->closed), 0);
}

static void on_timeout_slow(const struct ng_db_result *r, void *arg)
{
	struct timeout_state *s = arg;
	s->slow++;
	ASSERT_EQ_INT(r->status, NG_EDB);
	ASSERT_EQ_STR(r->sqlstate, "57014");
	ASSERT_CONTAINS(r->message, "statement timeout");
}

static void test_statement_timeout(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct ng_db_options o = {.pool_size = 1, .statement_timeout_ms = 100};
	struct timeout_state s = {0};
	s.db = open_db(&loop, &o, NULL);
	uint64_t t0 = ng_test_now_ms();
	ASSERT_EQ_INT(ng_db_query(s.db, "SELECT pg_sleep(5)", 0, NULL, on_timeout_slow, &s), 0);
	/* Same connection, pipelined behind the failing one: unaffected by its error. */
	ASSERT_EQ_INT(ng_db_query(s.db, "SELECT 'ok'", 0, NULL, on_timeout_fast, &s), 0);
	finish_loop(&loop);
	ASSERT_EQ_INT(s.slow, 1);
	ASSERT_EQ_INT(s.fast, 1);
	ASSERT_EQ_INT(s.closed, 1);
	ASSERT_CMP_INT(ng_test_now_ms() - t0, <, 4000);
}

/* ---- atomic batches ---- */

struct batch_state {
	ng_db *db;
	int step;
	int closed;
};

static void on_batch_bad(const struct ng_db_result *r, void *arg)
{
	struct batch_state *s = arg;
	ASSERT_EQ_INT(s->step++, 0);
	ASSERT_EQ_INT(r->status, NG_EDB);
	ASSERT_EQ_STR(r->sqlstate, "23505");
	ASSERT_EQ_INT(r->failed, 2);
	ASSERT_EQ_INT(r->nresults, 3);
	ASSERT_EQ_INT(PQresultStatus(r->results[0]), PGRES_COMMAND_OK);
	ASSERT_EQ_INT(PQresultStatus(r->results[1]), PGRES_COMMAND_OK);
	ASSERT(r->res == r->results[2]);
}

static void on_batch_count0(const struct ng_db_result *r, void *arg)
{
	struct batch_state *s = arg;
	ASSERT_EQ_INT(s->step++, 1);
	/* Not 25P02 "current transaction is aborted": the failed batch was rolled back. */
	ASSERT_EQ_INT(r->status, 0);
	ASSERT_EQ_STR(PQgetvalue(r->res, 0, 0), "0");
}

static void on_batch_good(const struct ng_db_result *r, void *arg)
{
	struct batch_state *s = arg;
	ASSERT_EQ_INT(s->step++, 2);
	ASSERT_EQ_INT(r->status, 0);
	ASSERT_EQ_INT(r->nresults, 3);
	ASSERT(r->res == r->results[2]);
	ASSERT_EQ_STR(PQgetvalue(r->res, 0, 0), "2");
}

static void on_batch_count2(const struct ng_db_result *r, void *arg)
{
	struct batch_state *s = arg;
	ASSERT_EQ_INT(s->step++, 3);
	ASSERT_EQ_INT(r->status, 0);
	ASSERT_EQ_STR(PQgetvalue(r->res, 0, 0), "2");
	ASSERT_EQ_INT(ng_db_close(s->db, on_closed, &s->closed), 0);
}

static void test_batch_atomic(void)
{
	ng_test_pg_exec("SET client_min_messages = warning; DROP TABLE IF EXISTS ng_dbtest_batch");
	ng_test_pg_exec("CREATE TABLE ng_dbtest_batch (id int PRIMARY KEY)");
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct ng_db_options o = {.pool_size = 1};
	struct batch_state s = {0};
	s.db = open_db(&loop, &o, NULL);

	const char *one[] = {"1"}, *two[] = {"2"}, *ten[] = {"10"}, *eleven[] = {"11"};
	const char *ins = "INSERT INTO ng_dbtest_batch (id) VALUES ($1::int)";
	struct ng_db_stmt bad[] = {{ins, 1, one}, {ins, 1, two}, {ins, 1, one}};
	struct ng_db_stmt good[] = {
	    {ins, 1, ten}, {ins, 1, eleven}, {"SELECT count(*) FROM ng_dbtest_batch", 0, NULL}};
	ASSERT_EQ_INT(ng_db_batch(s.db, bad, 3, on_batch_bad, &s), 0);
	ASSERT_EQ_INT(
	    ng_db_query(s.db, "SELECT count(*) FROM ng_dbtest_batch", 0, NULL, on_batch_count0, &s),
	    0);
	ASSERT_EQ_INT(ng_db_batch(s.db, good, 3, on_batch_good, &s), 0);
	ASSERT_EQ_INT(
	    ng_db_query(s.db, "SELECT count(*) FROM ng_dbtest_batch", 0, NULL, on_batch_count2, &s),
	    0);
	finish_loop(&loop);
	ASSERT_EQ_INT(s.step, 4);
	ASSERT_EQ_INT(s.closed, 1);
	ng_test_pg_exec("DROP TABLE ng_dbtest_batch");
}

/* A batch is the implicit transaction between two syncs: a failure at its commit (a deferred
 * constraint) is the batch's error, and nothing of it stays. */
static void on_deferred_batch(const struct ng_db_result *r, void *arg)
{
	struct batch_state *s = arg;
	ASSERT_EQ_INT(s->step++, 0);
	ASSERT_EQ_INT(r->status, NG_EDB);
	ASSERT_EQ_STR(r->sqlstate, "23505");
	ASSERT_EQ_INT(r->failed, 1);
}

static void on_deferred_count(const struct ng_db_result *r, void *arg)
{
	struct batch_state *s = arg;
	ASSERT_EQ_INT(s->step++, 1);
	ASSERT_EQ_INT(r->status, 0);
	ASSERT_EQ_STR(PQgetvalue(r->res, 0, 0), "0");
	ASSERT_EQ_INT(ng_db_close(s->db, on_closed, &s->closed), 0);
}

static void test_batch_commit_failure(void)
{
	ng_test_pg_exec(
	    "SET client_min_messages = warning; DROP TABLE IF EXISTS ng_dbtest_deferred");
	ng_test_pg_exec("CREATE TABLE ng_dbtest_deferred (id int,"
	                " UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)");
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct ng_db_options o = {.pool_size = 1};
	struct batch_state s = {0};
	s.db = open_db(&loop, &o, NULL);
	const char *one[] = {"1"};
	const char *ins = "INSERT INTO ng_dbtest_deferred (id) VALUES ($1::int)";
	struct ng_db_stmt twice[] = {{ins, 1, one}, {ins, 1, one}};
	ASSERT_EQ_INT(ng_db_batch(s.db, twice, 2, on_deferred_batch, &s), 0);
	ASSERT_EQ_INT(ng_db_query(s.db, "SELECT count(*) FROM ng_dbtest_deferred", 0, NULL,
	                          on_deferred_count, &s),
	              0);
	finish_loop(&loop);
	ASSERT_EQ_INT(s.step, 2);
	ASSERT_EQ_INT(s.closed, 1);
	ng_test_pg_exec("DROP TABLE ng_dbtest_deferred");
}

/* ---- prepared statements (db_prep.c) ---- */

struct prep_state {
	ng_db *db;
	int step, closed;
};

static const char prep_double[] = "SELECT $1::int * 2";

static void on_prep_final(const struct ng_db_result *r, void *arg)
{
	struct prep_state *s = arg;
	ASSERT_EQ_INT(s->step++, 5);
	ASSERT_EQ_INT(r->status, 0);
	/* The statement is prepared once on the session, and ran by name. */
	ASSERT_EQ_STR(PQgetvalue(r->res, 0, 0), "1");
	ASSERT_EQ_INT(ng_db_close(s->db, on_closed, &s->closed), 0);
}

static void on_prep_named(const struct ng_db_result *r, void *arg)
{
	struct prep_state *s = arg;
	ASSERT_EQ_INT(s->step++, 4);
	ASSERT_EQ_INT(r->status, 0);
	ASSERT_EQ_STR(PQgetvalue(r->res, 0, 0), "14");
	ASSERT_EQ_INT(ng_db_query(s->db,
	                          "SELECT count(*) FROM pg_prepared_statements"
	                          " WHERE statement = 'SELECT $1::int * 2'",
	                          0, NULL, on_prep_final, s),
	              0);
}

static void on_prep_again(const struct ng_db_result *r, void *arg)
{
	struct prep_state *s = arg;
	ASSERT_EQ_INT(s->step++, 3);
	ASSERT_EQ_INT(r->status, 0);
	ASSERT_EQ_STR(PQgetvalue(r->res, 0, 0), "10");
	const char *seven[] = {"7"};
	ASSERT_EQ_INT(ng_db_query(s->db, prep_double, 1, seven, on_prep_named, s), 0);
}

static void on_prep_syntax(const struct ng_db_result *r, void *arg)
{
	struct prep_state *s = arg;
	ASSERT_EQ_INT(s->step++, 2);
	ASSERT_EQ_INT(r->status, NG_EDB);
	ASSERT_EQ_STR(r->sqlstate, "42601");
	ASSERT_CONTAINS(r->message, "syntax error");
	const char *five[] = {"5"};
	ASSERT_EQ_INT(ng_db_query(s->db, prep_double, 1, five, on_prep_again, s), 0);
}

static void on_prep_unnamed(const struct ng_db_result *r, void *arg)
{
	struct prep_state *s = arg;
	ASSERT_EQ_INT(s->step++, 1);
	ASSERT_EQ_INT(r->status, 0);
	ASSERT_EQ_STR(PQgetvalue(r->res, 0, 0), "42");
}

static void on_prep_failed_batch(const struct ng_db_result *r, void *arg)
{
	struct prep_state *s = arg;
	ASSERT_EQ_INT(s->step++, 0);
	ASSERT_EQ_INT(r->status, NG_EDB);
	ASSERT_EQ_STR(r->sqlstate, "22012");
	ASSERT_EQ_INT(r->failed, 0);
}

/*
 * A statement's first Parse can fail or be skipped (an earlier statement of its batch failed);
 * either way the right error is reported, later requests still work, and once a Parse is
 * confirmed the statement runs by name.
 */
static void test_prepared_statements(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct ng_db_options o = {.pool_size = 1};
	struct prep_state s = {0};
	s.db = open_db(&loop, &o, NULL);
	const char *one[] = {"1"}, *twentyone[] = {"21"};
	struct ng_db_stmt batch[] = {{"SELECT 1 / ($1::int - 1)", 1, one},
	                             {prep_double, 1, twentyone}};
	ASSERT_EQ_INT(ng_db_batch(s.db, batch, 2, on_prep_failed_batch, &s), 0);
	ASSERT_EQ_INT(ng_db_query(s.db, prep_double, 1, twentyone, on_prep_unnamed, &s), 0);
	ASSERT_EQ_INT(ng_db_query(s.db, "SELECT FROM WHERE oops", 0, NULL, on_prep_syntax, &s), 0);
	finish_loop(&loop);
	ASSERT_EQ_INT(s.step, 6);
	ASSERT_EQ_INT(s.closed, 1);
}

/* DDL under a prepared query: one execution fails (0A000), the next prepares it afresh. */
struct ddl_state {
	ng_db *db;
	int step, closed;
};

static const char ddl_sql[] = "SELECT * FROM ng_dbtest_prep";

static void on_ddl(const struct ng_db_result *r, void *arg)
{
	struct ddl_state *s = arg;
	switch (s->step++) {
	case 0: /* prepared, then run by name */
	case 1:
		ASSERT_EQ_INT(r->status, 0);
		ASSERT_EQ_INT(PQnfields(r->res), 1);
		if (s->step == 2)
			ng_test_pg_exec("ALTER TABLE ng_dbtest_prep ADD COLUMN b int");
		break;
	case 2:
		ASSERT_EQ_INT(r->status, NG_EDB);
		ASSERT_EQ_STR(r->sqlstate, "0A000");
		break;
	case 3:
		ASSERT_EQ_INT(r->status, 0);
		ASSERT_EQ_INT(PQnfields(r->res), 2);
		ASSERT_EQ_INT(ng_db_close(s->db, on_closed, &s->closed), 0);
		return;
	}
	ASSERT_EQ_INT(ng_db_query(s->db, ddl_sql, 0, NULL, on_ddl, s), 0);
}

static void test_prepared_statement_after_ddl(void)
{
	ng_test_pg_exec("SET client_min_messages = warning; DROP TABLE IF EXISTS ng_dbtest_prep;"
	                " CREATE TABLE ng_dbtest_prep (a int)");
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct ng_db_options o = {.pool_size = 1};
	struct ddl_state s = {0};
	s.db = open_db(&loop, &o, NULL);
	ASSERT_EQ_INT(ng_db_query(s.db, ddl_sql, 0, NULL, on_ddl, &s), 0);
	finish_loop(&loop);
	ASSERT_EQ_INT(s.step, 4);
	ASSERT_EQ_INT(s.closed, 1);
	ng_test_pg_exec("DROP TABLE ng_dbtest_prep");
}

/* ---- a stream of queries through a disruption ---- */

#define STREAM_MAX         20000
#define STREAM_OUTSTANDING 40

struct stream_state {
	uv_loop_t *loop;
	ng_db *db;
	int issued, done, ok, failed, other_errors;
	int ok_after; /* successes of queries issued after the disruption ended */
	int disrupt_at, disrupted, disruption_over, issued_after;
	unsigned char calls[STREAM_MAX];
	unsigned char while_down[STREAM_MAX]; /* issued while no connection was up */
	int down_issued, down_ok;
	int ids[STREAM_MAX];
	int close_called, closed;
	void (*disrupt)(struct stream_state *s);
	struct lag_probe lag;
	uv_work_t work;
	uv_process_t proc;
	int exit_status;
	const char *sql_terminate;
};

static void stream_issue(struct stream_state *s);

static void on_stream(const struct ng_db_result *r, void *arg)
{
	int *idp = arg;
	struct stream_state *s =
	    (struct stream_state *)((char *)(idp - *idp) - offsetof(struct stream_state, ids));
	int id = *idp;
	s->calls[id]++;
	s->done++;
	if (r->status == 0) {
		s->ok++;
		ASSERT_EQ_INT(atoi(PQgetvalue(r->res, 0, 1)), id);
		if (s->disruption_over && id >= s->issued_after)
			s->ok_after++;
		if (s->while_down[id])
			s->down_ok++;
	} else {
		s->failed++;
		if (r->status != NG_ECONNLOST)
			s->other_errors++;
	}
	if (s->done == s->disrupt_at && !s->disrupted) {
		s->disrupted = 1;
		s->disrupt(s);
	}
	stream_issue(s);
}

/* Keeps STREAM_OUTSTANDING queries going until 300 have succeeded after the disruption. */
static void stream_issue(struct stream_state *s)
{
	if (s->close_called || s->ok_after >= 300 || s->issued >= STREAM_MAX) {
		if (s->done == s->issued && !s->close_called) {
			s->close_called = 1;
			ASSERT_EQ_INT(ng_db_close(s->db, on_closed, &s->closed), 0);
			lag_stop(&s->lag);
		}
		return;
	}
	while (s->issued - s->done < STREAM_OUTSTANDING && s->issued < STREAM_MAX) {
		int id = s->issued++;
		char v[16];
		snprintf(v, sizeof(v), "%d", id);
		const char *p[] = {v};
		s->ids[id] = id;
		struct ng_db_stats st;
		ng_db_stats(s->db, &st);
		if (st.conns_ready + st.conns_busy == 0) {
			s->while_down[id] = 1;
			s->down_issued++;
		}
		ASSERT_EQ_INT(ng_db_query(s->db, "SELECT pg_sleep(0.002), $1::int", 1, p, on_stream,
		                          &s->ids[id]),
		              0);
	}
}

static void run_stream(struct stream_state *s, const char *app)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	s->loop = &loop;
	struct ng_db_options o = {.pool_size = 4, .reconnect_min_ms = 50, .reconnect_max_ms = 500};
	char *extra = ng_xasprintf("application_name=%s", app);
	s->db = open_db(&loop, &o, extra);
	free(extra);
	s->disrupt_at = 300;
	lag_start(&loop, &s->lag);
	stream_issue(s);
	uint64_t t0 = ng_test_now_ms();
	uv_run(&loop, UV_RUN_DEFAULT);
	ASSERT_EQ_INT(uv_loop_close(&loop), 0);
	printf("# %d queries in %llu ms: %d ok, %d failed (connection lost), %d ok after the "
	       "disruption, %d/%d issued while every connection was down ran after the reconnect; "
	       "max loop lag %llu ms\n",
	       s->issued, (unsigned long long)(ng_test_now_ms() - t0), s->ok, s->failed,
	       s->ok_after, s->down_ok, s->down_issued, (unsigned long long)s->lag.max_late_ms);
	/* Queued, never sent: they wait for the reconnect and succeed. */
	ASSERT_EQ_INT(s->down_ok, s->down_issued);
	ASSERT_EQ_INT(s->closed, 1);
	for (int i = 0; i < s->issued; i++)
		ASSERT_EQ_INT(s->calls[i], 1);
	ASSERT_EQ_INT(s->done, s->issued);
	ASSERT_EQ_INT(s->ok + s->failed, s->issued);
	ASSERT_EQ_INT(s->other_errors, 0);
	ASSERT_CMP_INT(s->ok_after, >=, 300);
	ASSERT_CMP_INT(s->lag.max_late_ms, <, lag_bound_ms());
}

static void terminate_work(uv_work_t *w)
{
	struct stream_state *s = w->data;
	ng_test_pg_exec(s->sql_terminate);
}

static void terminate_done(uv_work_t *w, int status)
{
	struct stream_state *s = w->data;
	ASSERT_EQ_INT(status, 0);
	s->disruption_over = 1;
	s->issued_after = s->issued;
}

static void disrupt_terminate(struct stream_state *s)
{
	s->work.data = s;
	/* On a libuv pool thread: the loop keeps running (and is measured) meanwhile. */
	ASSERT_EQ_INT(uv_queue_work(s->loop, &s->work, terminate_work, terminate_done), 0);
}

static void test_survives_terminate_backend(void)
{
	struct stream_state *s = ng_xcalloc(1, sizeof(*s));
	s->disrupt = disrupt_terminate;
	s->sql_terminate = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
	                   "WHERE application_name = 'ng_dbtest_term'";
	run_stream(s, "ng_dbtest_term");
	/* The four backends were killed, and all four came back. */
	ASSERT_CMP_INT(s->failed, >, 0);
	free(s);
}

static void on_restart_exit(uv_process_t *p, int64_t exit_status, int term_signal)
{
	struct stream_state *s = p->data;
	s->exit_status = (int)exit_status + term_signal * 1000;
	s->disruption_over = 1;
	s->issued_after = s->issued;
	uv_close((uv_handle_t *)p, NULL);
}

static void disrupt_restart(struct stream_state *s)
{
	const char *top = getenv("NUDGE_TEST_TOP");
	const char *dir = getenv("NUDGE_TEST_PGDIR");
	if (!dir || !*dir)
		ng_test_fail(__FILE__, __LINE__,
		             "NUDGE_TEST_PGDIR is not set: run through make check");
	char *script = ng_xasprintf("%s/tests/pg.sh", top && *top ? top : ".");
	char *args[] = {"/bin/sh", script, "restart", (char *)dir, NULL};
	uv_process_options_t po = {.file = "/bin/sh", .args = args, .exit_cb = on_restart_exit};
	s->proc.data = s;
	/* A child process: the loop keeps running (and is measured) while the server restarts. */
	ASSERT_EQ_INT(uv_spawn(s->loop, &s->proc, &po), 0);
	free(script);
}

static void test_survives_server_restart(void)
{
	struct stream_state *s = ng_xcalloc(1, sizeof(*s));
	s->disrupt = disrupt_restart;
	run_stream(s, "ng_dbtest_restart");
	ASSERT_EQ_INT(s->exit_status, 0);
	ASSERT_CMP_INT(s->failed, >, 0);
	if (!RUNNING_ON_VALGRIND) /* the timing is too loose there to be sure of the window */
		ASSERT_CMP_INT(s->down_issued, >, 0);
	free(s);
}

/* ---- close with work in flight ---- */

struct close_state {
	int calls[60];
	int ok, closing, other;
	int closed;
	int ids[60];
	ng_db *db;
	uint64_t close_ms, closed_ms;
};

static void on_close_done(void *arg)
{
	struct close_state *s = arg;
	s->closed++;
	s->closed_ms = ng_test_now_ms();
}

static void on_close_item(const struct ng_db_result *r, void *arg)
{
	int *idp = arg;
	struct close_state *s =
	    (struct close_state *)((char *)(idp - *idp) - offsetof(struct close_state, ids));
	s->calls[*idp]++;
	if (r->status == 0)
		s->ok++;
	else if (r->status == NG_ECLOSING)
		s->closing++;
	else
		s->other++;
	if (s->ok == 1 && r->status == 0) {
		/* Close from inside a callback, with work in flight and queued. */
		s->close_ms = ng_test_now_ms();
		ASSERT_EQ_INT(ng_db_close(s->db, on_close_done, s), 0);
		ASSERT_EQ_INT(ng_db_close(s->db, on_close_done, s), NG_ECLOSING);
		ASSERT_EQ_INT(ng_db_query(s->db, "SELECT 1", 0, NULL, on_close_item, &s->ids[0]),
		              NG_ECLOSING);
	}
}

static void test_close_with_work_in_flight(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	/* Depth 4 on 2 connections: up to 8 in flight (the pg_sleep(3) ones outlive the close
	 * timeout), the rest queued (failed at once). */
	struct ng_db_options o = {.pool_size = 2, .pipeline_depth = 4, .close_timeout_ms = 300};
	struct close_state s = {0};
	s.db = open_db(&loop, &o, NULL);
	for (int i = 0; i < 60; i++) {
		s.ids[i] = i;
		const char *sql = i % 4 == 3 ? "SELECT pg_sleep(3)" : "SELECT pg_sleep(0.01)";
		ASSERT_EQ_INT(ng_db_query(s.db, sql, 0, NULL, on_close_item, &s.ids[i]), 0);
	}
	finish_loop(&loop);
	printf("# close: %d ok, %d failed with NG_ECLOSING, closed in %llu ms\n", s.ok, s.closing,
	       (unsigned long long)(s.closed_ms - s.close_ms));
	ASSERT_EQ_INT(s.closed, 1);
	for (int i = 0; i < 60; i++)
		ASSERT_EQ_INT(s.calls[i], 1);
	ASSERT_EQ_INT(s.other, 0);
	ASSERT_CMP_INT(s.ok, >, 0);
	ASSERT_CMP_INT(s.closing, >, 0);
	ASSERT_EQ_INT(s.ok + s.closing, 60);
	ASSERT_CMP_INT(s.closed_ms - s.close_ms, <, 2000);
}

/* ---- queue deadline while the server is unreachable ---- */

struct unreachable_state {
	ng_db *db;
	int status, calls, closed;
	uint64_t t0, t1;
	struct ng_db_stats st;
};

static void on_unreachable(const struct ng_db_result *r, void *arg)
{
	struct unreachable_state *s = arg;
	s->calls++;
	s->status = r->status;
	s->t1 = ng_test_now_ms();
	ng_db_stats(s->db, &s->st);
	ASSERT_EQ_INT(ng_db_close(s->db, on_closed, &s->closed), 0);
}

static int closed_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	ASSERT_EQ_INT(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ASSERT_EQ_INT(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd); /* never listened: connecting is refused */
	return ntohs(a.sin_port);
}

static void test_queue_timeout_when_unreachable(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	char *ci = ng_xasprintf("host=127.0.0.1 port=%d user=postgres dbname=nudge", closed_port());
	struct ng_db_options o = {.conninfo = ci, .pool_size = 2, .queue_timeout_ms = 150};
	struct unreachable_state s = {0};
	ASSERT_EQ_INT(ng_db_open(&s.db, &loop, &o), 0);
	free(ci);
	s.t0 = ng_test_now_ms();
	ASSERT_EQ_INT(ng_db_query(s.db, "SELECT 1", 0, NULL, on_unreachable, &s), 0);
	finish_loop(&loop);
	ASSERT_EQ_INT(s.calls, 1);
	ASSERT_EQ_INT(s.status, NG_ETIMEDOUT);
	ASSERT_CMP_INT(s.t1 - s.t0, >=, 140);
	ASSERT_CMP_INT(s.t1 - s.t0, <, 1500);
	ASSERT_EQ_INT(s.st.conns_total, 2);
	ASSERT_EQ_INT(s.st.conns_connecting, 2);
	ASSERT_EQ_INT(s.st.queued, 0);
	ASSERT_EQ_INT(s.closed, 1);
}

/* ---- LISTEN / NOTIFY, re-LISTEN after the backend is killed ---- */

struct listen_state {
	uv_loop_t *loop;
	ng_db *db;
	int established, received, notify_ok, closed;
	uv_work_t work;
};

static void on_notify_sent(const struct ng_db_result *r, void *arg)
{
	struct listen_state *s = arg;
	ASSERT_EQ_INT(r->status, 0);
	s->notify_ok++;
}

static void send_notify(struct listen_state *s, const char *payload)
{
	const char *p[] = {"ng_dbtest_chan", payload};
	ASSERT_EQ_INT(ng_db_query(s->db, "SELECT pg_notify($1, $2)", 2, p, on_notify_sent, s), 0);
}

static void kill_listener(uv_work_t *w)
{
	NG_UNUSED(w);
	ng_test_pg_exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
	                "application_name = 'ng_dbtest_listen' AND query LIKE 'LISTEN%'");
}

static void kill_listener_done(uv_work_t *w, int status)
{
	NG_UNUSED(w);
	ASSERT_EQ_INT(status, 0);
}

static void on_listen(const char *channel, const char *payload, void *arg)
{
	struct listen_state *s = arg;
	ASSERT_EQ_STR(channel, "ng_dbtest_chan");
	if (!payload) {
		s->established++;
		send_notify(s, s->established == 1 ? "first" : "second");
		return;
	}
	s->received++;
	if (s->received == 1) {
		ASSERT_EQ_STR(payload, "first");
		s->work.data = s;
		ASSERT_EQ_INT(uv_queue_work(s->loop, &s->work, kill_listener, kill_listener_done),
		              0);
	} else {
		ASSERT_EQ_STR(payload, "second");
		ASSERT_EQ_INT(ng_db_close(s->db, on_closed, &s->closed), 0);
	}
}

static void test_listen_notify(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct ng_db_options o = {.pool_size = 1, .reconnect_min_ms = 20};
	struct listen_state s = {.loop = &loop};
	s.db = open_db(&loop, &o, "application_name=ng_dbtest_listen");
	ASSERT_EQ_INT(ng_db_listen(s.db, "ng_dbtest_chan", on_listen, &s), 0);
	finish_loop(&loop);
	ASSERT_EQ_INT(s.established, 2);
	ASSERT_EQ_INT(s.received, 2);
	ASSERT_EQ_INT(s.notify_ok, 2);
	ASSERT_EQ_INT(s.closed, 1);
}

NG_TESTS(NG_TEST(test_prepared_statements), NG_TEST(test_prepared_statement_after_ddl),
         NG_TEST(test_query_params_and_errors), NG_TEST(test_open_then_close_at_once),
         NG_TEST(test_bad_conninfo), NG_TEST(test_pipelined_inserts_10k),
         NG_TEST(test_statement_timeout), NG_TEST(test_batch_atomic),
         NG_TEST(test_batch_commit_failure), NG_TEST(test_close_with_work_in_flight),
         NG_TEST(test_queue_timeout_when_unreachable), NG_TEST(test_listen_notify),
         NG_TEST(test_survives_terminate_backend), NG_TEST(test_survives_server_restart), )
