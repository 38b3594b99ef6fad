/*
 * test_wf_runtime.c — the durable workflow runtime against the real test cluster, each test in a
 * private schema on the virtual clock (wf_harness): replay returns recorded results without acting
 * again, a changed journal parks with a clear error and performs nothing, versions, exits mid-wait,
 * wait_for, contained bad scripts.
 */
#include "../testlib.h"

#include "ng.h"
#include "wf_harness.h"
#include "wf_int.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

struct traces {
	char lines[256][160];
	int n;
};

static void on_trace(const struct ng_wf_trace *t, void *data)
{
	struct traces *tr = data;
	if (tr->n < 256)
		snprintf(tr->lines[tr->n++], 160, "%s %s %s", t->workflow, t->what, t->detail);
}

static int count_traces(struct traces *tr, const char *needle)
{
	int n = 0;
	for (int i = 0; i < tr->n; i++)
		n += strstr(tr->lines[i], needle) != NULL;
	return n;
}

static char *write_dir(const char *const *names, const char *const *sources, int n)
{
	char *dir = ng_xstrdup("/tmp/ng-wf-test-XXXXXX");
	ASSERT(mkdtemp(dir) != NULL);
	for (int i = 0; i < n; i++) {
		char *p = ng_xasprintf("%s/%s", dir, names[i]);
		FILE *f = fopen(p, "w");
		ASSERT(f != NULL);
		fputs(sources[i], f);
		fclose(f);
		free(p);
	}
	return dir;
}

static void rm_dir(char *dir)
{
	char *cmd = ng_xasprintf("rm -rf '%s'", dir);
	ASSERT_EQ_INT(system(cmd), 0);
	free(cmd);
	free(dir);
}

static struct ng_wf_harness *open_h(const char *dir, struct traces *tr)
{
	struct ng_wf_harness_options o = {.conninfo = ng_test_pg(),
	                                  .workflows_dir = dir,
	                                  .isolate = 1,
	                                  .trace = on_trace,
	                                  .trace_data = tr};
	struct ng_wf_harness *h;
	char *err = NULL;
	int rc = ng_wf_harness_open(&h, &o, &err);
	if (rc)
		ng_test_fail(__FILE__, __LINE__, "harness: %s", err);
	return h;
}

static long long q1(struct ng_wf_harness *h, const char *sql)
{
	PGresult *r = PQexec(ng_wf_harness_pg(h), sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		ng_test_fail(__FILE__, __LINE__, "%s: %s", sql, PQresultErrorMessage(r));
	long long v = PQgetisnull(r, 0, 0) ? -1 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return v;
}

static char *qs(struct ng_wf_harness *h, const char *sql)
{
	PGresult *r = PQexec(ng_wf_harness_pg(h), sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1)
		ng_test_fail(__FILE__, __LINE__, "%s: %s", sql, PQresultErrorMessage(r));
	char *v = ng_xstrdup(PQgetisnull(r, 0, 0) ? "(null)" : PQgetvalue(r, 0, 0));
	PQclear(r);
	return v;
}

static int64_t customer(struct ng_wf_harness *h, const char *json)
{
	json_t *spec = json_loads(json, 0, NULL);
	char *err = NULL;
	int64_t id = ng_wf_harness_customer(h, spec, &err);
	json_decref(spec);
	if (id <= 0)
		ng_test_fail(__FILE__, __LINE__, "customer: %s", err);
	return id;
}

static void event(struct ng_wf_harness *h, int64_t c, const char *type, const char *data)
{
	json_t *d = json_loads(data, 0, NULL);
	char *err = NULL;
	if (ng_wf_harness_event(h, c, type, d, &err))
		ng_test_fail(__FILE__, __LINE__, "event: %s", err);
	json_decref(d);
}

static void start(struct ng_wf_harness *h, const char *wf, int64_t c)
{
	char *err = NULL;
	if (ng_wf_harness_start(h, wf, c, &err))
		ng_test_fail(__FILE__, __LINE__, "start: %s", err);
}

#define HOUR (3600 * 1000LL)

static const char *replay_src =
    "return { name = 'replay', trigger = {manual = true},\n"
    "  run = function(ctx)\n"
    "    ctx.log('before the wait')\n"
    "    local v = ctx.split('subject', {'a', 'b'})\n"
    "    local t0 = ctx.now()\n"
    "    ctx.send{channel = 'email', template = 'first', data = {variant = v, t = t0}}\n"
    "    ctx.wait('1h')\n"
    "    local t1 = ctx.now()\n"
    "    assert(t1 - t0 >= 3600, 'now is replayed: ' .. t1 - t0)\n"
    "    ctx.send{channel = 'email', template = 'second', data = {variant = v}}\n"
    "  end }\n";

/* A replay returns the journaled results: one log line, one message per send, same variant. */
static void test_replay_returns_recorded_results(void)
{
	const char *names[] = {"replay.lua"};
	char *dir = write_dir(names, &replay_src, 1);
	struct traces tr = {0};
	struct ng_wf_harness *h = open_h(dir, &tr);
	int64_t c = customer(h, "{\"email\": \"replay@example.com\"}");
	start(h, "replay", c);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM messages"), 1);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM instances WHERE status = 'waiting'"), 1);
	ng_wf_harness_advance(h, HOUR);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM instances WHERE status = 'completed'"), 1);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM messages"), 2);
	ASSERT_EQ_INT(q1(h, "SELECT count(DISTINCT data->>'variant') FROM messages"), 1);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM effects"), 7);
	ASSERT_EQ_INT(count_traces(&tr, "log before the wait"), 1);
	ASSERT_EQ_INT(count_traces(&tr, "send email"), 2);
	ng_wf_harness_close(h);
	rm_dir(dir);
}

/* A journal that no longer matches the script parks the instance and performs nothing. */
static void test_divergence_parks(void)
{
	const char *names[] = {"replay.lua"};
	char *dir = write_dir(names, &replay_src, 1);
	struct traces tr = {0};
	struct ng_wf_harness *h = open_h(dir, &tr);
	int64_t c = customer(h, "{\"email\": \"diverge@example.com\"}");
	start(h, "replay", c);
	PQclear(PQexec(ng_wf_harness_pg(h),
	               "UPDATE effects SET args = '{\"duration\": \"2h\"}' WHERE kind = 'wait'"));
	ng_wf_harness_advance(h, HOUR);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM instances WHERE status = 'parked'"), 1);
	char *err = qs(h, "SELECT error FROM instances");
	ASSERT_CONTAINS(err, "replay diverged at step 4");
	ASSERT_CONTAINS(err, "ctx.wait({\"duration\":\"2h\"})");
	ASSERT_CONTAINS(err, "ctx.wait({\"duration\":\"1h\"})");
	free(err);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM messages"), 1);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM effects"), 5);
	ng_wf_harness_close(h);
	rm_dir(dir);
}

static const char *cart_src =
    "return { name = 'cart', trigger = {event = 'checkout.started',\n"
    "    filter = function(e) return e.data.total > 20 end},\n"
    "  key = function(e) return e.data.checkout_id end,\n"
    "  exits = {'order.placed'},\n"
    "  run = function(ctx)\n"
    "    ctx.wait('1h')\n"
    "    ctx.send{channel = 'email', template = 'cart', data = {cart = ctx.event.data}}\n"
    "    local order = ctx.wait_for('order.placed', {match = {checkout_id = "
    "ctx.event.data.checkout_id}, timeout = '23h'})\n"
    "    if not order then ctx.send{channel = 'sms', template = 'cart_sms'} end\n"
    "  end }\n";

/* An exit event during a wait ends the instance at once; nothing more is sent. */
static void test_exit_mid_wait(void)
{
	const char *names[] = {"cart.lua"};
	char *dir = write_dir(names, &cart_src, 1);
	struct traces tr = {0};
	struct ng_wf_harness *h = open_h(dir, &tr);
	int64_t c = customer(h, "{\"email\": \"cart@example.com\"}");
	event(h, c, "checkout.started", "{\"checkout_id\": \"k1\", \"total\": 10}");
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM instances"), 0); /* filtered out */
	event(h, c, "checkout.started", "{\"checkout_id\": \"k1\", \"total\": 50}");
	event(h, c, "checkout.started", "{\"checkout_id\": \"k1\", \"total\": 60}");
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM instances"), 1); /* one live per key */
	ng_wf_harness_advance(h, HOUR);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM messages WHERE channel = 'email'"), 1);
	ng_wf_harness_advance(h, 2 * HOUR);
	event(h, c, "order.placed", "{\"checkout_id\": \"k1\"}");
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM instances WHERE status = 'exited'"), 1);
	ng_wf_harness_advance(h, 48 * HOUR);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM messages"), 1);
	ng_wf_harness_close(h);
	rm_dir(dir);
}

static void exec_ok(struct ng_wf_harness *h, const char *sql)
{
	PGresult *r = PQexec(ng_wf_harness_pg(h), sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
		ng_test_fail(__FILE__, __LINE__, "%s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
}

/*
 * Many inbox events share one transaction, in id order (a start and a later exit of the same
 * customer in one pass still end the instance); when one event fails, the others are handled
 * one per transaction and only the failing one stays in the inbox, to be retried.
 */
static void test_inbox_events_share_a_transaction_and_fail_alone(void)
{
	const char *src = "return { name = 'w', trigger = {event = 'signup'},\n"
	                  "  exits = {'order.placed'},\n"
	                  "  run = function(ctx)\n"
	                  "    ctx.wait('1h')\n"
	                  "    ctx.send{channel = 'email', template = 'hello'}\n"
	                  "  end }\n";
	const char *names[] = {"w.lua"};
	char *dir = write_dir(names, &src, 1);
	struct traces tr = {0};
	struct ng_wf_harness *h = open_h(dir, &tr);
	/* Three events in one pass: their instances were made by one transaction. */
	exec_ok(h, "CREATE TABLE started_by (xid bigint);"
	           "CREATE FUNCTION note_xid() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
	           " INSERT INTO started_by VALUES (txid_current()); RETURN NULL; END $$;"
	           "CREATE TRIGGER note_xid AFTER INSERT ON instances"
	           " FOR EACH ROW EXECUTE FUNCTION note_xid()");
	for (int i = 0; i < 3; i++) {
		char spec[64];
		snprintf(spec, sizeof spec, "{\"email\": \"batch%d@example.com\"}", i);
		customer(h, spec);
	}
	exec_ok(h, "INSERT INTO events (customer_id, source, dedupe_key, type, occurred_at)"
	           " SELECT c.id, 'test', 'batch-' || c.id, 'signup', now() FROM customers c");
	ng_wf_engine_kick(ng_wf_harness_engine(h));
	ng_wf_harness_settle(h);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM instances"), 3);
	ASSERT_EQ_INT(q1(h, "SELECT count(DISTINCT xid) FROM started_by"), 1);
	exec_ok(h, "DELETE FROM instances");
	int64_t bad = 0, quitter = 0;
	for (int i = 0; i < 6; i++) {
		char spec[64];
		snprintf(spec, sizeof spec, "{\"email\": \"inbox%d@example.com\"}", i);
		int64_t c = customer(h, spec);
		if (i == 2)
			bad = c;
		if (i == 5)
			quitter = c;
	}
	char *sql = ng_xasprintf(
	    "CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
	    " IF NEW.customer_id = %lld THEN RAISE EXCEPTION 'refused for the test'; END IF;"
	    " RETURN NEW; END $$;"
	    "CREATE TRIGGER refuse_one BEFORE INSERT ON instances"
	    " FOR EACH ROW EXECUTE FUNCTION refuse_one()",
	    (long long)bad);
	exec_ok(h, sql);
	free(sql);
	/* All in one statement, so they are all in the inbox when the scheduler looks. */
	sql =
	    ng_xasprintf("INSERT INTO events (customer_id, source, dedupe_key, type, occurred_at)"
	                 " SELECT c.id, 'test', 'inbox-' || c.id, 'signup', now() FROM customers c"
	                 " WHERE c.email LIKE 'inbox%%'"
	                 " UNION ALL SELECT %lld, 'test', 'inbox-quit', 'order.placed', now()"
	                 " ORDER BY 3",
	                 (long long)quitter);
	exec_ok(h, sql);
	free(sql);
	ng_wf_engine_kick(ng_wf_harness_engine(h));
	ng_wf_harness_settle(h);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM instances"), 5);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM instances WHERE status = 'exited'"), 1);
	char *q = ng_xasprintf("SELECT count(*) FROM instances WHERE customer_id = %lld",
	                       (long long)quitter);
	ASSERT_EQ_INT(q1(h, q), 1);
	free(q);
	q = ng_xasprintf("SELECT customer_id FROM workflow_inbox");
	ASSERT_EQ_INT(q1(h, q), bad);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM workflow_inbox"), 1);
	free(q);
	/* The refusal goes away: the event is handled once its lease runs out. */
	exec_ok(h, "DROP TRIGGER refuse_one ON instances");
	ng_wf_harness_advance(h, 2 * HOUR);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM workflow_inbox"), 0);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM instances"), 6);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM messages"), 5);
	ASSERT_EQ_INT(count_traces(&tr, "w started signup"), 9);
	ng_wf_harness_close(h);
	rm_dir(dir);
}

/* A harness with one workflow that starts on "signup" and does nothing, for inbox tests. */
static struct ng_wf_harness *open_signup_h(char **dir, struct traces *tr)
{
	const char *src = "return { name = 'w', trigger = {event = 'signup'},\n"
	                  "  run = function(ctx) end }\n";
	const char *names[] = {"w.lua"};
	*dir = write_dir(names, &src, 1);
	return open_h(*dir, tr);
}

/* A chunk's inbox rows go in one statement, fenced: all of them held by the caller, or none. */
static void test_inbox_done_fences_the_whole_chunk(void)
{
	char *dir;
	struct traces tr = {0};
	struct ng_wf_harness *h = open_signup_h(&dir, &tr);
	customer(h, "{\"email\": \"fence@example.com\"}");
	/* Rows some other scheduler holds for an hour: this one's claims skip them. */
	exec_ok(h, "ALTER TABLE events DISABLE TRIGGER events_queue_for_workflows");
	exec_ok(h, "INSERT INTO events (customer_id, source, dedupe_key, type, occurred_at)"
	           " SELECT c.id, 'test', 'fence-' || g, 'signup', now() FROM customers c,"
	           " generate_series(1, 3) g");
	exec_ok(h, "INSERT INTO workflow_inbox (customer_id, event_id, lease_owner, lease_until)"
	           " SELECT customer_id, id, CASE WHEN dedupe_key = 'fence-3' THEN 'me' ELSE"
	           " 'other' END, now() + interval '1 hour' FROM events");
	PGconn *pg = ng_wf_harness_pg(h);
	const char *mixed = "SELECT ng_wf_inbox_done_many(array_agg(id), 'me') FROM events";
	PGresult *r = PQexec(pg, mixed);
	ASSERT_EQ_INT(PQresultStatus(r), PGRES_FATAL_ERROR);
	ASSERT_EQ_STR(PQresultErrorField(r, PG_DIAG_SQLSTATE), "NGWF2");
	ASSERT(strstr(PQresultErrorMessage(r), "2 of 3 inbox events are no longer held by me"));
	PQclear(r);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM workflow_inbox"), 3);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM (SELECT ng_wf_inbox_done_many(array_agg(id),"
	                    " 'other') FROM events WHERE dedupe_key <> 'fence-3') x"),
	              1);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM workflow_inbox WHERE lease_owner = 'me'"), 1);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM workflow_inbox"), 1);
	exec_ok(h, "ALTER TABLE events ENABLE TRIGGER events_queue_for_workflows");
	ng_wf_harness_close(h);
	rm_dir(dir);
}

/* An event's inbox row goes with it (sql/0016: a statement trigger, no foreign key): deleted
 * alone, or with its customer. */
static void test_inbox_row_goes_with_its_event(void)
{
	char *dir;
	struct traces tr = {0};
	struct ng_wf_harness *h = open_signup_h(&dir, &tr);
	int64_t a = customer(h, "{\"email\": \"gone-a@example.com\"}");
	int64_t b = customer(h, "{\"email\": \"gone-b@example.com\"}");
	exec_ok(h, "INSERT INTO events (customer_id, source, dedupe_key, type, occurred_at)"
	           " SELECT c.id, 'test', 'gone-' || c.id || '-' || g, 'signup', now()"
	           " FROM customers c, generate_series(1, 2) g");
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM workflow_inbox"), 4);
	char *sql =
	    ng_xasprintf("DELETE FROM events WHERE dedupe_key = 'gone-%lld-1'", (long long)a);
	exec_ok(h, sql);
	free(sql);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM workflow_inbox"), 3);
	sql = ng_xasprintf("DELETE FROM customers WHERE id = %lld", (long long)b);
	exec_ok(h, sql);
	free(sql);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM workflow_inbox"), 1);
	char *q = ng_xasprintf("SELECT count(*) FROM workflow_inbox i JOIN events e"
	                       " ON e.customer_id = i.customer_id AND e.id = i.event_id"
	                       " WHERE e.dedupe_key = 'gone-%lld-2'",
	                       (long long)a);
	ASSERT_EQ_INT(q1(h, q), 1);
	free(q);
	ng_wf_harness_close(h);
	rm_dir(dir);
}

/* wait_for returns the event when it matches, and times out with nil otherwise. */
static void test_wait_for_event_and_timeout(void)
{
	const char *src =
	    "return { name = 'wf', trigger = {event = 'checkout.started'},\n"
	    "  key = function(e) return e.data.id end,\n"
	    "  run = function(ctx)\n"
	    "    local o, why = ctx.wait_for('order.placed', {match = {id = ctx.event.data.id},"
	    " timeout = '2h'})\n"
	    "    ctx.send{channel = 'email', template = o and ('got_' .. o.data.id) or why}\n"
	    "  end }\n";
	const char *names[] = {"wf.lua"};
	char *dir = write_dir(names, &src, 1);
	struct traces tr = {0};
	struct ng_wf_harness *h = open_h(dir, &tr);
	int64_t c = customer(h, "{\"email\": \"wf@example.com\"}");
	event(h, c, "checkout.started", "{\"id\": \"a\"}");
	event(h, c, "checkout.started", "{\"id\": \"b\"}");
	event(h, c, "order.placed", "{\"id\": \"b\"}");
	ng_wf_harness_advance(h, 3 * HOUR);
	char *t = qs(h, "SELECT string_agg(template, ',' ORDER BY template) FROM messages");
	ASSERT_EQ_STR(t, "got_b,timeout");
	free(t);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM instances WHERE status = 'completed'"), 2);
	ng_wf_harness_close(h);
	rm_dir(dir);
}

/* A changed file becomes version 2; the running instance finishes on version 1. */
static void test_versions(void)
{
	const char *v1 = "return { name = 'ver', trigger = {manual = true}, run = function(ctx)\n"
	                 "  ctx.wait('1h'); ctx.send{channel = 'email', template = 'v1'} end }\n";
	const char *names[] = {"ver.lua"};
	char *dir = write_dir(names, &v1, 1);
	struct traces tr = {0};
	struct ng_wf_harness *h = open_h(dir, &tr);
	int64_t c = customer(h, "{\"email\": \"ver@example.com\"}");
	start(h, "ver", c);
	char *p = ng_xasprintf("%s/ver.lua", dir);
	FILE *f = fopen(p, "w");
	fputs("return { name = 'ver', trigger = {manual = true}, run = function(ctx)\n"
	      "  ctx.send{channel = 'email', template = 'v2'} end }\n",
	      f);
	fclose(f);
	free(p);
	ng_wf_engine_deploy(ng_wf_harness_engine(h), dir, NULL, NULL);
	ng_wf_harness_settle(h);
	ASSERT_EQ_INT(q1(h, "SELECT active_version FROM workflows WHERE name = 'ver'"), 2);
	int64_t c2 = customer(h, "{\"email\": \"ver2@example.com\"}");
	start(h, "ver", c2);
	ng_wf_harness_advance(h, HOUR);
	char *t = qs(h, "SELECT string_agg(template || '@' || i.version, ',' ORDER BY template)"
	                " FROM messages m JOIN instances i ON i.id = m.instance_id");
	ASSERT_EQ_STR(t, "v1@1,v2@2");
	free(t);
	ng_wf_harness_close(h);
	rm_dir(dir);
}

/* Broken scripts: refused at load with file:line, or contained to their own instance. */
static void test_bad_scripts_contained(void)
{
	const char *good =
	    "return { name = 'good', trigger = {manual = true}, run = function(ctx)\n"
	    "  ctx.send{channel = 'email', template = 'ok'} end }\n";
	const char *rt = "return { name = 'rt', trigger = {manual = true}, run = function(ctx)\n"
	                 "  local t = nil\n  return t.x end }\n";
	const char *loop =
	    "return { name = 'loop', trigger = {manual = true}, run = function(ctx)\n"
	    "  pcall(function() while true do end end)\n"
	    "  ctx.send{channel = 'email', template = 'never'} end }\n";
	const char *bomb =
	    "return { name = 'bomb', trigger = {manual = true}, run = function(ctx)\n"
	    "  local s = string.rep('x', 1 << 40) end }\n";
	const char *forbid = "return { name = 'forbid', trigger = {manual = true},\n"
	                     "  run = function(ctx) return os.time() end }\n";
	const char *deep =
	    "return { name = 'deep', trigger = {manual = true}, run = function(ctx)\n"
	    "  local function f(n) return f(n + 1) + 1 end\n  return f(1) end }\n";
	/* Not reproducible: reads an address through tostring, branches on it. The sandbox gives
	 * "table" for every table, so both replays take the same branch. */
	const char *nondet =
	    "return { name = 'nondet', trigger = {manual = true}, run = function(ctx)\n"
	    "  if tostring({}):find('0x') then ctx.send{channel = 'email', "
	    "template = 'addr'} end\n"
	    "  local keys = {}\n  for k in pairs({b = 1, a = 2, c = 3}) do\n"
	    "    keys[#keys + 1] = k end\n"
	    "  ctx.wait('1s')\n"
	    "  ctx.send{channel = 'email', template = table.concat(keys)} end }\n";
	/* PostgreSQL cannot keep U+0000: refused at the call, not sent later with its data lost. */
	const char *nul = "return { name = 'nul', trigger = {manual = true}, run = function(ctx)\n"
	                  "  ctx.send{channel = 'email', template = 'nul', data = {n = 'a\\0b'}}\n"
	                  "end }\n";
	const char *srcs[] = {good, rt, loop, bomb, forbid, deep, nondet, nul};
	const char *names[] = {"good.lua",   "rt.lua",   "loop.lua",   "bomb.lua",
	                       "forbid.lua", "deep.lua", "nondet.lua", "nul.lua"};
	char *dir = write_dir(names, srcs, 8);
	struct traces tr = {0};
	struct ng_wf_harness *h = open_h(dir, &tr);
	const char *wfs[] = {"rt", "loop", "bomb", "forbid", "deep", "nondet", "good", "nul"};
	for (int i = 0; i < 8; i++) {
		char *js = ng_xasprintf("{\"email\": \"bad%d@example.com\"}", i);
		start(h, wfs[i], customer(h, js));
		free(js);
	}
	ng_wf_harness_advance(h, 2000);
	char *s = qs(h, "SELECT string_agg(workflow || '=' || status, ',' ORDER BY workflow)"
	                " FROM instances");
	ASSERT_EQ_STR(s, "bomb=parked,deep=failed,forbid=failed,good=completed,loop=parked,"
	                 "nondet=completed,nul=failed,rt=failed");
	free(s);
	s = qs(h, "SELECT error FROM instances WHERE workflow = 'nul'");
	ASSERT_CONTAINS(s, "workflows/nul.lua:2: ctx.send data: a string holding a NUL byte");
	free(s);
	s = qs(h, "SELECT error FROM instances WHERE workflow = 'rt'");
	ASSERT_CONTAINS(s, "workflows/rt.lua:3:");
	ASSERT_CONTAINS(s, "traceback");
	free(s);
	s = qs(h, "SELECT error FROM instances WHERE workflow = 'loop'");
	ASSERT_CONTAINS(s, "killed");
	free(s);
	s = qs(h, "SELECT error FROM instances WHERE workflow = 'forbid'");
	ASSERT_CONTAINS(s, "os");
	free(s);
	s = qs(h, "SELECT error FROM instances WHERE workflow = 'deep'");
	ASSERT_CONTAINS(s, "stack overflow");
	free(s);
	s = qs(h, "SELECT string_agg(template, ',' ORDER BY template) FROM messages");
	ASSERT_EQ_STR(s, "abc,ok");
	free(s);
	ng_wf_harness_close(h);
	rm_dir(dir);
}

/* A syntax error, a bad trigger and an unknown API call are refused at load with file:line. */
static void test_load_errors(void)
{
	struct ng_lua *lua;
	struct ng_lua_limits lim = {0};
	ASSERT_EQ_INT(ng_lua_open(&lua, &lim), 0);
	struct {
		const char *src, *want;
	} cases[] = {
	    {"return { name = 'x', run = function(ctx) end end }", "x.lua:1:"},
	    {"return {\n name = 'x',\n trigger = {event = 5},\n run = function() end }",
	     "x.lua:3: trigger.event must be a string"},
	    {"return {\n name = 'x',\n trigger = {manual = true},\n run = function(ctx)\n"
	     "  ctx.sned{} end }",
	     "x.lua:5: unknown workflow API ctx.sned"},
	    {"return { name = 'x', trigger = {manual = true} }", "needs run"},
	    {"return {\n name = 'x',\n trigger = {manual = true},\n reentry = 'sometimes',\n"
	     " run = function() end }",
	     "x.lua:4: reentry must be"},
	    {"while true do end", "killed"},
	    {"return 5", "must return its definition table"},
	};
	for (size_t i = 0; i < NG_ARRAY_LEN(cases); i++) {
		struct ng_wf_def *d;
		char *err = NULL;
		int rc = ng_wf_load_buffer(lua, "workflows/x.lua", cases[i].src,
		                           strlen(cases[i].src), &d, &err);
		ASSERT(rc < 0);
		ASSERT_CONTAINS(err, cases[i].want);
		free(err);
	}
	ng_lua_close(lua);
}

/*
 * A segment sweep runs once per period for the whole database: a node that restarts (or a second
 * node, whose in-memory schedule is fresh) finds the period's sweep already claimed in
 * workflow_sweeps and does not start the segment's customers again.
 */
static void test_sweep_once_per_period(void)
{
	const char *src =
	    "return { name = 'seg', trigger = {every = '1d', segment = 'SELECT id FROM "
	    "customers'},\n"
	    "  run = function(ctx) ctx.send{channel = 'email', template = 'seg'} end }\n";
	const char *names[] = {"seg.lua"};
	char *dir = write_dir(names, &src, 1);
	struct traces tr = {0};
	struct ng_wf_harness *h = open_h(dir, &tr);
	/* The first sweep ran as the engine started, before there was a customer. */
	customer(h, "{\"email\": \"seg@example.com\"}");
	ng_wf_harness_advance(h, 1000);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM messages"), 0);
	ng_wf_harness_advance(h, 24 * HOUR);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM messages"), 1);
	/* As if the node restarted: its own schedule says the sweep is due now. */
	struct ng_wf_engine *e = ng_wf_harness_engine(h);
	for (struct ng_wf_def *d = e->defs; d; d = d->next)
		d->next_run = 0;
	e->next_sweep = 0;
	ng_wf_engine_kick(e);
	ng_wf_harness_settle(h);
	ng_wf_harness_advance(h, HOUR);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM messages"), 1);
	ng_wf_harness_advance(h, 23 * HOUR);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM messages"), 2);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM workflow_sweeps WHERE workflow = 'seg'"), 1);
	ng_wf_harness_close(h);
	rm_dir(dir);
}

/*
 * Scripts that try to be non-deterministic: randomness and a global that would carry state from
 * one instance to the next are refused (the instance fails, the others go on); a top-level local
 * starts afresh on every run, so two customers and every replay see the same value.
 */
static void test_nondeterminism_contained(void)
{
	const char *rnd =
	    "return { name = 'rnd', trigger = {manual = true}, run = function(ctx)\n"
	    "  ctx.send{channel = 'email', template = 't' .. math.random(100)} end }\n";
	const char *glob =
	    "return { name = 'glob', trigger = {manual = true}, run = function(ctx)\n"
	    "  seen = (seen or 0) + 1\n"
	    "  ctx.send{channel = 'email', template = 'g' .. seen} end }\n";
	const char *local =
	    "local n = 0\n"
	    "return { name = 'local', trigger = {manual = true}, run = function(ctx)\n"
	    "  n = n + 1\n"
	    "  ctx.send{channel = 'email', template = 'first' .. n}\n"
	    "  ctx.wait('1s')\n"
	    "  ctx.send{channel = 'email', template = 'second' .. n} end }\n";
	const char *srcs[] = {rnd, glob, local};
	const char *names[] = {"rnd.lua", "glob.lua", "local.lua"};
	char *dir = write_dir(names, srcs, 3);
	struct traces tr = {0};
	struct ng_wf_harness *h = open_h(dir, &tr);
	const char *wfs[] = {"rnd", "glob", "local", "glob", "local"};
	for (int i = 0; i < 5; i++) {
		char *js = ng_xasprintf("{\"email\": \"nd%d@example.com\"}", i);
		start(h, wfs[i], customer(h, js));
		free(js);
	}
	ng_wf_harness_advance(h, 5000);
	char *st = qs(h, "SELECT string_agg(workflow || '=' || status, ',' ORDER BY workflow, id)"
	                 " FROM instances");
	ASSERT_EQ_STR(st, "glob=failed,glob=failed,local=completed,local=completed,rnd=failed");
	free(st);
	st = qs(h, "SELECT error FROM instances WHERE workflow = 'glob' LIMIT 1");
	ASSERT_CONTAINS(st, "attempt to write global 'seen'");
	free(st);
	st = qs(h, "SELECT error FROM instances WHERE workflow = 'rnd'");
	ASSERT_CONTAINS(st, "workflows/rnd.lua:2:");
	free(st);
	st = qs(h, "SELECT string_agg(template, ',' ORDER BY template) FROM messages");
	ASSERT_EQ_STR(st, "first1,first1,second1,second1");
	free(st);
	ng_wf_harness_close(h);
	rm_dir(dir);
}

/* wait_until a local hour: in the customer's timezone, or the store's when theirs is unknown. */
static void test_wait_until_local_hour(void)
{
	const char *src = "return { name = 'nine', trigger = {manual = true}, run = function(ctx)\n"
	                  "  ctx.wait_until{local_hour = 9}\n"
	                  "  ctx.send{channel = 'email', template = 'nine'} end }\n";
	const char *names[] = {"nine.lua"};
	char *dir = write_dir(names, &src, 1);
	struct traces tr = {0};
	struct ng_wf_harness *h = open_h(dir, &tr); /* Monday 10:00 UTC; the store is on UTC */
	start(h, "nine",
	      customer(h, "{\"email\": \"tokyo@example.com\", \"timezone\": \"Asia/Tokyo\"}"));
	start(h, "nine",
	      customer(h, "{\"email\": \"mars@example.com\", \"timezone\": \"Mars/Olympus\"}"));
	/* 09:00 in Tokyo is 00:00 UTC, 14 hours on; 09:00 UTC is 23 hours on. */
	ng_wf_harness_advance(h, 14 * HOUR - 1000);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM messages"), 0);
	ng_wf_harness_advance(h, 1000);
	ASSERT_EQ_INT(q1(h,
	                 "SELECT count(*) FROM messages m JOIN customers c ON c.id = m.customer_id"
	                 " WHERE c.timezone = 'Asia/Tokyo'"),
	              1);
	ng_wf_harness_advance(h, 9 * HOUR - 1000);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM messages"), 1);
	ng_wf_harness_advance(h, 1000);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM messages"), 2);
	ASSERT_EQ_INT(q1(h, "SELECT count(*) FROM instances WHERE status = 'completed'"), 2);
	ng_wf_harness_close(h);
	rm_dir(dir);
}

NG_TESTS(NG_TEST(test_replay_returns_recorded_results), NG_TEST(test_wait_until_local_hour),
         NG_TEST(test_nondeterminism_contained), NG_TEST(test_sweep_once_per_period),
         NG_TEST(test_divergence_parks), NG_TEST(test_exit_mid_wait),
         NG_TEST(test_inbox_events_share_a_transaction_and_fail_alone),
         NG_TEST(test_inbox_done_fences_the_whole_chunk),
         NG_TEST(test_inbox_row_goes_with_its_event), NG_TEST(test_wait_for_event_and_timeout),
         NG_TEST(test_versions), NG_TEST(test_bad_scripts_contained), NG_TEST(test_load_errors), )
