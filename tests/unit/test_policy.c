/*
 * test_policy.c — the contact-pressure policy through running workflows on the virtual clock.
 *
 * Workflows run in the engine's harness (virtual time, a private schema); the messages they queue
 * are then taken by the dispatcher's own claim (ng_dispatch_claim, which makes the policy verdict)
 * and their outcomes written by its own result function (ng_dispatch_record), at virtual times. The
 * policy settings come from a real configuration file through ng_policy_settings, as `nudge serve`
 * publishes them.
 */
#include "config.h"
#include "policy.h"
#include "testlib.h"
#include "wf_harness.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <sys/stat.h>
#include <unistd.h>

#define HOUR 3600000LL
#define DAY  (24 * HOUR)

struct rig {
	struct ng_wf_harness *h;
	PGconn *pg;
	char dir[64];
};

static void write_file(const char *dir, const char *name, const char *text)
{
	char p[256];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	ASSERT(f != NULL);
	fputs(text, f);
	fclose(f);
}

/* Every workflow these tests run: each starts by hand and sends what its name says. */
static void write_workflows(const char *dir)
{
	write_file(dir, "late_sms.lua",
	           "return { name = 'late_sms', trigger = {manual = true}, run = function(ctx)\n"
	           "  ctx.send{channel = 'sms', template = 't', data = {n = 1}}\n"
	           "end }\n");
	write_file(
	    dir, "late_sms_skip.lua",
	    "return { name = 'late_sms_skip', trigger = {manual = true}, run = function(ctx)\n"
	    "  ctx.send{channel = 'sms', template = 't', quiet_hours = 'skip'}\n"
	    "end }\n");
	write_file(dir, "weekly_news.lua",
	           "return { name = 'weekly_news', trigger = {manual = true}, run = function(ctx)\n"
	           "  for i = 1, 4 do\n"
	           "    ctx.send{channel = 'email', template = 'news', data = {n = i}}\n"
	           "    ctx.wait('1d')\n"
	           "  end\n"
	           "end }\n");
	write_file(
	    dir, "birthday_like.lua",
	    "return { name = 'birthday_like', trigger = {manual = true}, run = function(ctx)\n"
	    "  ctx.send{channel = 'email', template = 'birthday', priority = 10}\n"
	    "end }\n");
	write_file(
	    dir, "reengage_like.lua",
	    "return { name = 'reengage_like', trigger = {manual = true}, run = function(ctx)\n"
	    "  ctx.send{channel = 'email', template = 'we_miss_you', on_cap = 'drop'}\n"
	    "end }\n");
	write_file(
	    dir, "receipt.lua",
	    "return { name = 'receipt', trigger = {manual = true}, run = function(ctx)\n"
	    "  ctx.send{channel = 'email', template = 'order_thanks', purpose = 'transactional'}\n"
	    "end }\n");
}

/* The policy from a configuration file, published as `nudge serve` does. */
static void publish(struct rig *r, const char *policy)
{
	char path[128];
	snprintf(path, sizeof path, "%s/nudge.conf.lua", r->dir);
	FILE *f = fopen(path, "w");
	ASSERT(f != NULL);
	fprintf(f,
	        "return { database = { conninfo = 'dbname=unused' },\n"
	        "  store = { timezone = 'Europe/Berlin' },\n"
	        "  policy = { %s } }\n",
	        policy);
	fclose(f);
	struct ng_conf *conf;
	char err[1024];
	if (ng_conf_load(path, &conf, err, sizeof err) != 0)
		ng_test_fail(__FILE__, __LINE__, "config: %s", err);
	json_t *s = ng_policy_settings(conf, err, sizeof err);
	if (!s)
		ng_test_fail(__FILE__, __LINE__, "policy: %s", err);
	char *text = json_dumps(s, JSON_COMPACT);
	const char *p[1] = {text};
	PGresult *res =
	    PQexecParams(r->pg,
	                 "INSERT INTO policy_settings (singleton, settings) VALUES (true, "
	                 "$1::jsonb) ON CONFLICT (singleton) DO UPDATE SET settings = "
	                 "EXCLUDED.settings",
	                 1, NULL, p, NULL, NULL, 0);
	ASSERT_EQ_INT(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	free(text);
	json_decref(s);
	ng_conf_free(conf);
}

static void rig_open(struct rig *r, int64_t start_ms, const char *policy)
{
	memset(r, 0, sizeof *r);
	snprintf(r->dir, sizeof r->dir, "/tmp/nudge-policy-XXXXXX");
	ASSERT(mkdtemp(r->dir) != NULL);
	write_workflows(r->dir);
	struct ng_wf_harness_options o = {.conninfo = ng_test_pg(),
	                                  .workflows_dir = r->dir,
	                                  .start_ms = start_ms,
	                                  .isolate = 1,
	                                  .default_timezone = "Europe/Berlin"};
	char *err = NULL;
	if (ng_wf_harness_open(&r->h, &o, &err) != 0)
		ng_test_fail(__FILE__, __LINE__, "harness: %s", err ? err : "?");
	r->pg = ng_wf_harness_pg(r->h);
	publish(r, policy);
}

static void rig_close(struct rig *r)
{
	ng_wf_harness_close(r->h);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", r->dir);
	ASSERT_EQ_INT(system(cmd), 0);
}

static int64_t customer(struct rig *r, const char *json)
{
	char *err = NULL;
	json_t *spec = json_loads(json, 0, NULL);
	ASSERT(spec != NULL);
	int64_t id = ng_wf_harness_customer(r->h, spec, &err);
	json_decref(spec);
	if (id <= 0)
		ng_test_fail(__FILE__, __LINE__, "customer: %s", err ? err : "?");
	return id;
}

static void start(struct rig *r, const char *wf, int64_t cid)
{
	char *err = NULL;
	if (ng_wf_harness_start(r->h, wf, cid, &err) != 0)
		ng_test_fail(__FILE__, __LINE__, "start %s: %s", wf, err ? err : "?");
	ng_wf_harness_settle(r->h);
}

static const char *q(struct rig *r, const char *sql)
{
	static char out[4096];
	PGresult *res = PQexec(r->pg, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		ng_test_fail(__FILE__, __LINE__, "%s: %s", sql, PQresultErrorMessage(res));
	snprintf(out, sizeof out, "%s",
	         PQntuples(res) && !PQgetisnull(res, 0, 0) ? PQgetvalue(res, 0, 0) : "");
	PQclear(res);
	return out;
}

/*
 * One dispatcher pass over one channel at the harness's virtual now: claims what is due, and
 * records what the dispatcher would — a verdict's skip or deferral, or (no verdict) the provider
 * accepting it. Returns how many were claimed.
 */
static int pass(struct rig *r, const char *channel)
{
	char now[40], until[40];
	int64_t t = ng_wf_harness_now(r->h);
	ng_wf_ts(t, now, sizeof now);
	ng_wf_ts(t + 60000, until, sizeof until);
	const char *p[3] = {now, until, channel};
	PGresult *res =
	    PQexecParams(r->pg,
	                 "SELECT customer_id, id, attempt, verdict FROM ng_dispatch_claim("
	                 "'policy-test', $1, $2, 100, 'x', $3, true)",
	                 3, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		ng_test_fail(__FILE__, __LINE__, "claim: %s", PQresultErrorMessage(res));
	json_t *results = json_array();
	int n = PQntuples(res);
	for (int i = 0; i < n; i++) {
		const char *verdict = PQgetisnull(res, i, 3) ? NULL : PQgetvalue(res, i, 3);
		json_t *o = json_pack("{s:I, s:I, s:i, s:s}", "cid",
		                      (json_int_t)atoll(PQgetvalue(res, i, 0)), "mid",
		                      (json_int_t)atoll(PQgetvalue(res, i, 1)), "att",
		                      atoi(PQgetvalue(res, i, 2)), "channel", channel);
		if (!verdict) {
			json_object_set_new(o, "status", json_string("sent"));
			json_object_set_new(o, "outcome", json_string("sent"));
			json_object_set_new(o, "provider_id", json_string("test"));
		} else if (strncmp(verdict, "defer:", 6) == 0) {
			char *end, ts[40];
			long long ms = strtoll(verdict + 6, &end, 10);
			json_object_set_new(o, "status", json_string("deferred"));
			json_object_set_new(o, "outcome", json_string("deferred"));
			json_object_set_new(o, "error", json_string(end + 1));
			json_object_set_new(o, "next_at", json_string(ng_wf_ts(ms, ts, sizeof ts)));
		} else {
			json_object_set_new(o, "status", json_string("skipped"));
			json_object_set_new(o, "outcome", json_string("skipped"));
			json_object_set_new(o, "error", json_string(verdict));
		}
		json_array_append_new(results, o);
	}
	PQclear(res);
	char *text = json_dumps(results, JSON_COMPACT);
	const char *rp[2] = {text, now};
	res = PQexecParams(r->pg, "SELECT count(*) FROM ng_dispatch_record($1::jsonb, $2)", 2, NULL,
	                   rp, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		ng_test_fail(__FILE__, __LINE__, "record: %s", PQresultErrorMessage(res));
	ASSERT_EQ_INT(atoi(PQgetvalue(res, 0, 0)), n);
	PQclear(res);
	free(text);
	json_decref(results);
	return n;
}

/* 2026-01-05 22:00 UTC is 23:00 in Berlin. */
#define AT_23_BERLIN (1767607200000LL + 12 * HOUR)

static void test_sms_at_23_local_waits_for_08(void)
{
	struct rig r;
	rig_open(&r, AT_23_BERLIN, "quiet_hours = { sms = '08:00-21:00' }");
	int64_t c = customer(&r, "{\"phone\": \"+4915112345678\", \"timezone\": \"Europe/Berlin\","
	                         " \"consent\": {\"sms\": \"granted\"}}");
	start(&r, "late_sms", c);
	ASSERT_EQ_INT(pass(&r, "sms"), 1);
	ASSERT_EQ_STR(q(&r, "SELECT status || ' ' || next_attempt_at AT TIME ZONE 'Europe/Berlin'"
	                    " FROM messages WHERE workflow = 'late_sms'"),
	              "deferred 2026-01-06 08:00:00");
	ASSERT_CONTAINS(q(&r, "SELECT last_error FROM messages WHERE workflow = 'late_sms'"),
	                "quiet_hours until 08:00 Europe/Berlin");
	/* Nothing goes before 08:00; at 08:00 it goes. */
	ng_wf_harness_advance(r.h, 8 * HOUR);
	ASSERT_EQ_INT(pass(&r, "sms"), 0);
	ng_wf_harness_advance(r.h, 1 * HOUR);
	ASSERT_EQ_INT(pass(&r, "sms"), 1);
	ASSERT_EQ_STR(q(&r, "SELECT status || ' ' || (sent_at AT TIME ZONE 'Europe/Berlin')::time"
	                    " FROM messages WHERE workflow = 'late_sms'"),
	              "sent 08:00:00");
	/* Its history says why it waited. */
	ASSERT_EQ_STR(q(&r, "SELECT string_agg(status, ',' ORDER BY id) FROM message_events"),
	              "queued,sending,deferred,sending,sent");
	rig_close(&r);
}

static void test_sms_at_23_local_is_skipped_when_the_workflow_says_so(void)
{
	struct rig r;
	rig_open(&r, AT_23_BERLIN, "quiet_hours = { sms = '08:00-21:00' }");
	/* No time zone of their own: the store's (Berlin) applies. */
	int64_t c = customer(&r, "{\"phone\": \"+4915112345679\", \"consent\": {\"sms\": "
	                         "\"granted\"}}");
	start(&r, "late_sms_skip", c);
	ASSERT_EQ_INT(pass(&r, "sms"), 1);
	ASSERT_EQ_STR(q(&r, "SELECT status || ': ' || last_error FROM messages"),
	              "skipped: quiet_hours: 08:00–21:00 Europe/Berlin");
	rig_close(&r);
}

static void test_fourth_marketing_email_in_a_week_is_held(void)
{
	struct rig r;
	rig_open(
	    &r, 1767607200000LL,
	    "caps = { { channel = 'email', max = 3, per = '7d' } }, quiet_hours = { sms = '' }");
	int64_t c = customer(&r, "{\"email\": \"weekly@example.com\", \"consent\": {\"email\": "
	                         "\"granted\"}}");
	start(&r, "weekly_news", c);
	for (int day = 0; day < 4; day++) {
		ASSERT_EQ_INT(pass(&r, "email"), 1);
		ng_wf_harness_advance(r.h, DAY);
	}
	ASSERT_EQ_STR(q(&r, "SELECT string_agg(status, ',' ORDER BY seq) FROM messages"),
	              "sent,sent,sent,deferred");
	ASSERT_CONTAINS(q(&r, "SELECT last_error FROM messages WHERE status = 'deferred'"),
	                "frequency_cap: 3 email per 7d");
	/* It is held until the first of the three leaves the week, then goes. */
	ASSERT_EQ_STR(q(&r, "SELECT next_attempt_at - (SELECT min(sent_at) FROM messages)"
	                    " FROM messages WHERE status = 'deferred'"),
	              "7 days");
	ng_wf_harness_advance(r.h, 3 * DAY);
	ASSERT_EQ_INT(pass(&r, "email"), 1);
	ASSERT_EQ_STR(q(&r, "SELECT string_agg(status, ',' ORDER BY seq) FROM messages"),
	              "sent,sent,sent,sent");
	rig_close(&r);
}

static void test_birthday_beats_a_same_day_reengagement(void)
{
	struct rig r;
	rig_open(&r, 1767607200000LL, "caps = { { channel = 'email', max = 1, per = '1d' } }");
	int64_t c = customer(&r, "{\"email\": \"bday@example.com\", \"consent\": {\"email\": "
	                         "\"granted\"}}");
	/* The re-engagement is queued first; the birthday email has the higher priority. */
	start(&r, "reengage_like", c);
	start(&r, "birthday_like", c);
	ASSERT_EQ_INT(pass(&r, "email"), 2);
	ASSERT_EQ_STR(q(&r, "SELECT status FROM messages WHERE workflow = 'birthday_like'"),
	              "sent");
	ASSERT_EQ_STR(q(&r, "SELECT status FROM messages WHERE workflow = 'reengage_like'"),
	              "deferred");
	ng_wf_harness_advance(r.h, 2000);
	ASSERT_EQ_INT(pass(&r, "email"), 1);
	/* The cap now holds it, and this workflow drops rather than defers. */
	ASSERT_EQ_STR(q(&r, "SELECT status || ': ' || last_error FROM messages"
	                    " WHERE workflow = 'reengage_like'"),
	              "skipped: frequency_cap: 1 email per 1d");
	rig_close(&r);
}

static void test_withdrawn_consent_stops_every_workflow_but_not_receipts(void)
{
	struct rig r;
	rig_open(&r, 1767607200000LL, "quiet_hours = { sms = '08:00-21:00' }");
	int64_t c = customer(&r, "{\"email\": \"gone@example.com\", \"consent\": {\"email\": "
	                         "\"granted\"}}");
	start(&r, "reengage_like", c);
	start(&r, "birthday_like", c);
	start(&r, "receipt", c);
	char sql[256];
	snprintf(sql, sizeof sql,
	         "INSERT INTO consents (customer_id, channel, purpose, status, source) VALUES "
	         "(%lld, 'email', 'marketing', 'withdrawn', 'unsubscribe_link') RETURNING 1",
	         (long long)c);
	q(&r, sql);
	ASSERT_EQ_INT(pass(&r, "email"), 3);
	ASSERT_EQ_STR(
	    q(&r, "SELECT string_agg(workflow || '=' || status || coalesce(':' || "
	          "last_error, ''), ',' ORDER BY workflow) FROM messages"),
	    "birthday_like=skipped:no_consent,receipt=sent,reengage_like=skipped:no_consent");
	rig_close(&r);
}

static void test_bad_policy_values_name_their_key(void)
{
	const char *cases[][2] = {
	    {"quiet_hours = { sms = '8-21' }", "key 'policy.quiet_hours.sms'"},
	    {"caps = { { channel = 'email', max = 1, per = 'weekly' } }",
	     "key 'policy.caps[1].per'"},
	    {"regions = { { prefix = '33', sms = '10:00-20:00' } }",
	     "key 'policy.regions[1].prefix'"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char path[] = "/tmp/nudge-policy-conf-XXXXXX";
		int fd = mkstemp(path);
		ASSERT(fd >= 0);
		FILE *f = fdopen(fd, "w");
		fprintf(f, "return { database = { conninfo = 'x' }, policy = { %s } }\n",
		        cases[i][0]);
		fclose(f);
		struct ng_conf *conf;
		char err[1024];
		int rc = ng_conf_load(path, &conf, err, sizeof err);
		unlink(path);
		if (rc != 0) { /* the schema itself refused it: also a sentence with the key */
			ASSERT_CONTAINS(err, "policy");
			continue;
		}
		json_t *s = ng_policy_settings(conf, err, sizeof err);
		ASSERT(s == NULL);
		ASSERT_CONTAINS(err, cases[i][1]);
		ng_conf_free(conf);
	}
}

NG_TESTS(NG_TEST(test_sms_at_23_local_waits_for_08),
         NG_TEST(test_sms_at_23_local_is_skipped_when_the_workflow_says_so),
         NG_TEST(test_fourth_marketing_email_in_a_week_is_held),
         NG_TEST(test_birthday_beats_a_same_day_reengagement),
         NG_TEST(test_withdrawn_consent_stops_every_workflow_but_not_receipts),
         NG_TEST(test_bad_policy_values_name_their_key), )
