/*
 * wf_testfile.c — workflow tests (workflows/NAME_test.lua, run by `nudge test` and make check) and
 * `nudge simulate`, both on the virtual-clock harness in a private schema: nothing they do reaches
 * the real tables, so nothing is ever delivered.
 *
 * A test file returns { workflow = "abandoned_cart", cases = { { name = "...", customer = {...},
 * steps = { {event = "checkout.started", data = {...}}, {advance = "1h"},
 * {expect_sent = {channel = "email", template = "cart_reminder"}}, {expect_no_send = true},
 * {expect_status = "exited"}, {start = true} } } } }. A case may set start_at (UTC) and
 * store_timezone (the store's default timezone, for customers without one). expect_sent consumes
 * the customer's next outbox row (its data may be given as a subset); expect_no_send asserts there
 * is none.
 */
#include "lua_sandbox.h"
#include "ng.h"
#include "wf_harness.h"
#include "wf_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

struct timeline {
	FILE *out;
	int64_t start;
	int64_t customer; /* 0: all */
	char *log;        /* collected for failure reports */
	size_t len;
};

static void fmt_offset(int64_t ms, char *buf, size_t len)
{
	int64_t s = ms / 1000;
	snprintf(buf, len, "+%lldd %02lld:%02lld:%02lld", (long long)(s / 86400),
	         (long long)(s % 86400 / 3600), (long long)(s % 3600 / 60), (long long)(s % 60));
}

static void on_trace(const struct ng_wf_trace *t, void *data)
{
	struct timeline *tl = data;
	if (tl->customer && t->customer_id != tl->customer)
		return;
	char off[40], ts[40];
	fmt_offset(t->at_ms - tl->start, off, sizeof off);
	ng_wf_ts(t->at_ms, ts, sizeof ts);
	ts[16] = '\0';
	char *line = ng_xasprintf("%-14s %s  %s #%lld  %-9s %s\n", off, ts, t->workflow,
	                          (long long)t->instance_id, t->what, t->detail);
	if (tl->out)
		fputs(line, tl->out);
	size_t n = strlen(line);
	tl->log = ng_xrealloc(tl->log, tl->len + n + 1);
	memcpy(tl->log + tl->len, line, n + 1);
	tl->len += n;
	free(line);
}

/* Loads a Lua data file (sandboxed, bounded) and returns what it returns, as JSON. */
static json_t *load_lua_data(const char *path, char **err)
{
	struct ng_lua *lua;
	struct ng_lua_limits lim = {0};
	if (ng_lua_open(&lua, &lim)) {
		*err = ng_xstrdup("cannot open a Lua state");
		return NULL;
	}
	struct ng_lua_script *s;
	json_t *out = NULL;
	if (ng_lua_script_load(lua, path, &s, err) == 0) {
		struct ng_lua_activation *act;
		struct ng_lua_result res;
		ng_lua_script_push(s);
		if (ng_lua_activation_start(lua, 0, &act, &res) == 0) {
			if (res.outcome == NG_LUA_FINISHED && res.nvalues >= 1)
				out = wf_json_from_lua(ng_lua_activation_thread(act), -res.nvalues,
				                       err);
			else if (!*err)
				*err =
				    ng_xasprintf("%s: %s", path,
				                 res.message ? res.message : "must return a table");
			ng_lua_activation_free(act);
		}
		ng_lua_script_free(s);
	}
	ng_lua_close(lua);
	return out;
}

/* Whether want is a subset of got: objects by key (recursively), anything else equal. */
static int subset(json_t *want, json_t *got)
{
	if (!json_is_object(want) || !json_is_object(got))
		return json_equal(want, got);
	const char *k;
	json_t *v;
	json_object_foreach(want, k, v)
	{
		if (!subset(v, json_object_get(got, k)))
			return 0;
	}
	return 1;
}

/* The customer's next outbox row from the workflow under test (other workflows are deployed
 * too, and may react to the same events). */
static char *check_sent(struct ng_wf_harness *h, int64_t cid, const char *wf, int64_t *cursor,
                        json_t *want)
{
	char c[24], cur[24];
	snprintf(c, sizeof c, "%lld", (long long)cid);
	snprintf(cur, sizeof cur, "%lld", (long long)*cursor);
	const char *p[3] = {c, cur, wf};
	PGresult *r = PQexecParams(ng_wf_harness_pg(h),
	                           "SELECT id, channel, template, data::text FROM messages"
	                           " WHERE customer_id = $1 AND id > $2 AND workflow = $3"
	                           " ORDER BY id LIMIT 1",
	                           3, NULL, p, NULL, NULL, 0);
	char *fail = NULL;
	int have = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
	if (!want) {
		if (have)
			fail = ng_xasprintf("expected no send, got %s %s", PQgetvalue(r, 0, 1),
			                    PQgetvalue(r, 0, 2));
	} else if (!have) {
		char *w = wf_json_dump(want);
		fail = ng_xasprintf("expected a send %s, nothing was sent", w);
		free(w);
	} else {
		*cursor = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		const char *ch = json_string_value(json_object_get(want, "channel"));
		const char *tpl = json_string_value(json_object_get(want, "template"));
		json_t *got = json_loads(PQgetvalue(r, 0, 3), 0, NULL);
		json_t *wd = json_object_get(want, "data");
		int data_ok = !wd || subset(wd, got);
		if ((ch && strcmp(ch, PQgetvalue(r, 0, 1))) ||
		    (tpl && strcmp(tpl, PQgetvalue(r, 0, 2))) || !data_ok) {
			char *w = wf_json_dump(want);
			fail = ng_xasprintf("expected a send %s, got %s %s with data %s", w,
			                    PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2),
			                    PQgetvalue(r, 0, 3));
			free(w);
		}
		json_decref(got);
	}
	PQclear(r);
	return fail;
}

static char *check_status(struct ng_wf_harness *h, int64_t cid, const char *wf, const char *want)
{
	char c[24];
	snprintf(c, sizeof c, "%lld", (long long)cid);
	const char *p[2] = {c, wf};
	PGresult *r =
	    PQexecParams(ng_wf_harness_pg(h),
	                 "SELECT status, coalesce(error, '') FROM instances"
	                 " WHERE customer_id = $1 AND workflow = $2 ORDER BY id DESC LIMIT 1",
	                 2, NULL, p, NULL, NULL, 0);
	char *fail = NULL;
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
		fail = ng_xasprintf("expected status %s, but no instance was started", want);
	else if (strcmp(PQgetvalue(r, 0, 0), want) != 0)
		fail = ng_xasprintf("expected status %s, got %s %s", want, PQgetvalue(r, 0, 0),
		                    PQgetvalue(r, 0, 1));
	PQclear(r);
	return fail;
}

/* Only the workflow under test reacts to events and time: the others stay deployed but idle, so
 * a 90-day test does not run 2,000 hourly birthday sweeps. */
static void only(struct ng_wf_harness *h, const char *wf)
{
	for (struct ng_wf_def *d = ng_wf_harness_engine(h)->defs; d; d = d->next)
		if (strcmp(d->name, wf) != 0)
			d->active = 0;
}

/* Runs one case; returns NULL when it passed, else the reason. */
static char *run_case(const char *conninfo, const char *dir, const char *wf, json_t *c,
                      struct timeline *tl)
{
	struct ng_wf_harness_options o = {.conninfo = conninfo,
	                                  .workflows_dir = dir,
	                                  .isolate = 1,
	                                  .trace = on_trace,
	                                  .trace_data = tl};
	o.default_timezone = json_string_value(json_object_get(c, "store_timezone"));
	const char *start_at = json_string_value(json_object_get(c, "start_at"));
	if (start_at) {
		struct tm tm = {0};
		const char *end = strptime(start_at, "%Y-%m-%dT%H:%M:%S", &tm);
		if (!end)
			return ng_xasprintf("start_at must be like \"2027-02-27T12:00:00Z\" (UTC)");
		o.start_ms = (int64_t)timegm(&tm) * 1000;
	}
	struct ng_wf_harness *h;
	char *err = NULL;
	if (ng_wf_harness_open(&h, &o, &err))
		return err;
	only(h, wf);
	tl->start = ng_wf_harness_now(h);
	json_t *cust = json_object_get(c, "customer");
	json_t *empty = json_object();
	int64_t cid = ng_wf_harness_customer(h, cust ? cust : empty, &err);
	json_decref(empty);
	int64_t cursor = 0;
	size_t i;
	json_t *st;
	json_array_foreach(json_object_get(c, "steps"), i, st)
	{
		if (err || cid <= 0)
			break;
		json_t *v;
		int64_t ms;
		char *fail = NULL;
		if ((v = json_object_get(st, "event")))
			ng_wf_harness_event(h, cid, json_string_value(v),
			                    json_object_get(st, "data"), &fail);
		else if (json_object_get(st, "start"))
			ng_wf_harness_start(h, wf, cid, &fail);
		else if ((v = json_object_get(st, "advance")) &&
		         ng_clock_parse_duration(json_string_value(v), &ms) == 0)
			ng_wf_harness_advance(h, ms);
		else if ((v = json_object_get(st, "expect_sent")))
			fail = check_sent(h, cid, wf, &cursor, v);
		else if (json_object_get(st, "expect_no_send"))
			fail = check_sent(h, cid, wf, &cursor, NULL);
		else if ((v = json_object_get(st, "expect_status")))
			fail = check_status(h, cid, wf, json_string_value(v));
		else
			fail = ng_xstrdup("unknown step (event, start, advance, expect_sent, "
			                  "expect_no_send, expect_status)");
		if (fail) {
			err = ng_xasprintf("step %zu: %s", i + 1, fail);
			free(fail);
		}
	}
	ng_wf_harness_close(h);
	return err;
}

int ng_wf_test_file(const char *conninfo, const char *path, const char *dir, FILE *out, int *passed,
                    int *failed)
{
	char *err = NULL;
	json_t *t = load_lua_data(path, &err);
	const char *wf = json_string_value(json_object_get(t, "workflow"));
	if (!t || !wf) {
		fprintf(out, "not ok %s: %s\n", path, err ? err : "needs workflow = \"name\"");
		free(err);
		json_decref(t);
		(*failed)++;
		return -1;
	}
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(t, "cases"), i, c)
	{
		struct timeline tl = {0};
		char *fail = run_case(conninfo, dir, wf, c, &tl);
		const char *name = json_string_value(json_object_get(c, "name"));
		if (fail) {
			fprintf(out, "not ok %s: %s\n  %s\n  timeline:\n%s", path,
			        name ? name : "?", fail,
			        tl.log ? tl.log : "  (nothing happened)\n");
			(*failed)++;
		} else {
			fprintf(out, "ok %s: %s\n", path, name ? name : "?");
			(*passed)++;
		}
		free(fail);
		free(tl.log);
	}
	json_decref(t);
	return 0;
}

int ng_wf_simulate(const char *conninfo, const char *dir, const char *wf, json_t *customer,
                   json_t *events, int64_t for_ms, FILE *out, char **err)
{
	struct timeline tl = {.out = out};
	struct ng_wf_harness_options o = {.conninfo = conninfo,
	                                  .workflows_dir = dir,
	                                  .isolate = 1,
	                                  .trace = on_trace,
	                                  .trace_data = &tl};
	struct ng_wf_harness *h;
	if (ng_wf_harness_open(&h, &o, err))
		return -1;
	only(h, wf);
	tl.start = ng_wf_harness_now(h);
	int64_t cid = ng_wf_harness_customer(h, customer, err);
	if (cid <= 0) {
		ng_wf_harness_close(h);
		return -1;
	}
	tl.customer = cid;
	fprintf(out,
	        "simulating %s for customer %lld over %lld days (virtual clock, nothing is "
	        "sent)\n",
	        wf, (long long)cid, (long long)(for_ms / 86400000));
	struct ng_wf_def *d = wf_def_active(ng_wf_harness_engine(h), wf);
	if (!d) {
		*err = ng_xasprintf("no workflow named %s in %s", wf, dir);
		ng_wf_harness_close(h);
		return -1;
	}
	if (d->trigger == NG_WF_TRIGGER_MANUAL)
		ng_wf_harness_start(h, wf, cid, err);
	size_t i;
	json_t *ev;
	json_array_foreach(events, i, ev)
	{
		int64_t at = 0;
		const char *after = json_string_value(json_object_get(ev, "after"));
		if (after && ng_clock_parse_duration(after, &at) == 0 &&
		    tl.start + at > ng_wf_harness_now(h))
			ng_wf_harness_advance(h, tl.start + at - ng_wf_harness_now(h));
		char *e2 = NULL;
		if (ng_wf_harness_event(h, cid, json_string_value(json_object_get(ev, "type")),
		                        json_object_get(ev, "data"), &e2)) {
			fprintf(out, "event %zu refused: %s\n", i + 1, e2);
			free(e2);
		}
	}
	if (tl.start + for_ms > ng_wf_harness_now(h))
		ng_wf_harness_advance(h, tl.start + for_ms - ng_wf_harness_now(h));
	char c[24];
	snprintf(c, sizeof c, "%lld", (long long)cid);
	const char *p[1] = {c};
	PGresult *r = PQexecParams(ng_wf_harness_pg(h),
	                           "SELECT workflow, id, status, coalesce(error, ''),"
	                           " (SELECT count(*) FROM messages m WHERE m.instance_id = i.id)"
	                           " FROM instances i WHERE customer_id = $1 ORDER BY id",
	                           1, NULL, p, NULL, NULL, 0);
	fprintf(out, "end of simulation:\n");
	for (int row = 0; PQresultStatus(r) == PGRES_TUPLES_OK && row < PQntuples(r); row++)
		fprintf(out, "  %s #%s: %s%s%s, %s message(s) queued\n", PQgetvalue(r, row, 0),
		        PQgetvalue(r, row, 1), PQgetvalue(r, row, 2),
		        *PQgetvalue(r, row, 3) ? " — " : "", PQgetvalue(r, row, 3),
		        PQgetvalue(r, row, 4));
	PQclear(r);
	ng_wf_harness_close(h);
	free(tl.log);
	return 0;
}
