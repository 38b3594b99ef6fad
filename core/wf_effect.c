/*
 * wf_effect.c — what each ctx primitive does, new and replayed. A new effect queues its journal row
 * (and its side effect: an outbox row, an emitted event) on the step's transaction; a replayed one
 * returns the recorded result. Waits end the activation: the instance goes back to being a row with
 * wake_at (and waiting_for), and the step commits.
 *
 * Journal results: wait, wait_until {until: ms}; wait_for {pending: true, until: ms|null} until an
 * event ({event: {...}}, written by wf_inbox.c) or the timeout ({timeout: true}) settles it;
 * send {queued: true}; customer {the customer}; query {rows: [...]} or {error: "..."};
 * split {variant: "a"}; emit {}; log {}; now {ms: epoch ms}.
 */
#include "ng.h"
#include "wf_effect.h"

#include <stdlib.h>
#include <string.h>

#define QUERY_MAX_ROWS 1000

static int is(const struct wf_inst *in, const char *kind)
{
	return strcmp(in->req.kind, kind) == 0;
}

/* Queues the journal row of the pending call. result is borrowed. */
static void record(struct wf_inst *in, json_t *result)
{
	char cid[24], iid[24], seq[16], now[40];
	snprintf(cid, sizeof cid, "%lld", (long long)in->cid);
	snprintf(iid, sizeof iid, "%lld", (long long)in->iid);
	snprintf(seq, sizeof seq, "%d", in->seq);
	char *args = wf_json_dump(in->req.args), *res = wf_json_dump(result);
	wf_stmts_add(
	    &in->st,
	    "INSERT INTO effects (customer_id, instance_id, seq, kind, args, result, created_at)"
	    " VALUES ($1, $2, $3, $4, $5, $6, $7)",
	    7, cid, iid, seq, in->req.kind, args, res, ng_wf_ts(wf_now(in->e), now, sizeof now));
	free(args);
	free(res);
	in->new_effects++;
}

static void sleep_until(struct wf_inst *in, int64_t until, json_t *waiting_for)
{
	char ts[40];
	in->seq++;
	if (waiting_for)
		wf_inst_note(in, "wait_for", "%s until %s",
		             json_string_value(json_object_get(waiting_for, "type")),
		             until ? ng_wf_ts(until, ts, sizeof ts) : "forever");
	else
		wf_inst_note(in, "wait", "until %s", ng_wf_ts(until, ts, sizeof ts));
	wf_inst_commit(in, "waiting", NULL, until, waiting_for);
}

static json_t *waiting_for_of(struct wf_inst *in, json_t *args)
{
	json_t *w = json_pack("{s:O, s:i}", "type", json_object_get(args, "type"), "seq", in->seq);
	json_t *m = json_object_get(args, "match");
	json_object_set_new(w, "match", m ? json_incref(m) : json_object());
	return w;
}

static int64_t until_of(json_t *result)
{
	return (int64_t)json_integer_value(json_object_get(result, "until"));
}

/* Pushes a recorded (or just recorded) result the way the script sees it. */
static int push_result(struct wf_inst *in, lua_State *L, json_t *result)
{
	if (is(in, "send") || is(in, "emit")) {
		lua_pushboolean(L, 1);
		return 1;
	}
	if (is(in, "customer")) {
		wf_json_push(L, result);
		return 1;
	}
	if (is(in, "query")) {
		json_t *err = json_object_get(result, "error");
		if (err) {
			lua_pushnil(L);
			lua_pushstring(L, json_string_value(err));
			return 2;
		}
		wf_json_push(L, json_object_get(result, "rows"));
		return 1;
	}
	if (is(in, "split")) {
		lua_pushstring(L, json_string_value(json_object_get(result, "variant")));
		return 1;
	}
	if (is(in, "now")) {
		lua_pushinteger(
		    L, (lua_Integer)(json_integer_value(json_object_get(result, "ms")) / 1000));
		return 1;
	}
	return 0; /* log */
}

int wf_effect_replay(struct wf_inst *in, lua_State *L, json_t *rec)
{
	json_t *result = json_object_get(rec, "result");
	int64_t now = wf_now(in->e);
	if (is(in, "wait") || is(in, "wait_until")) {
		int64_t until = until_of(result);
		if (now >= until)
			return 0;
		sleep_until(in, until, NULL); /* woken early (a recovered lease): sleep on */
		return -1;
	}
	if (is(in, "wait_for")) {
		json_t *ev = json_object_get(result, "event");
		if (ev) {
			wf_json_push(L, ev);
			return 1;
		}
		int64_t until = until_of(result);
		if (!json_is_true(json_object_get(result, "timeout"))) {
			if (!until || now < until) {
				json_t *w = waiting_for_of(in, in->req.args);
				sleep_until(in, until, w);
				json_decref(w);
				return -1;
			}
			char cid[24], iid[24], seq[16];
			snprintf(cid, sizeof cid, "%lld", (long long)in->cid);
			snprintf(iid, sizeof iid, "%lld", (long long)in->iid);
			snprintf(seq, sizeof seq, "%d", in->seq);
			wf_stmts_add(&in->st,
			             "UPDATE effects SET result = '{\"timeout\": true}'"
			             " WHERE customer_id = $1 AND instance_id = $2 AND seq = $3",
			             3, cid, iid, seq);
			wf_inst_note(in, "timeout", "%s",
			             json_string_value(json_object_get(in->req.args, "type")));
		}
		lua_pushnil(L);
		lua_pushliteral(L, "timeout");
		return 2;
	}
	return push_result(in, L, result);
}

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static void queue_send(struct wf_inst *in)
{
	json_t *a = in->req.args;
	char cid[24], iid[24], seq[16], now[40];
	snprintf(cid, sizeof cid, "%lld", (long long)in->cid);
	snprintf(iid, sizeof iid, "%lld", (long long)in->iid);
	snprintf(seq, sizeof seq, "%d", in->seq);
	char *data = wf_json_dump(json_object_get(a, "data"));
	const char *ch = json_string_value(json_object_get(a, "channel"));
	const char *tpl = json_string_value(json_object_get(a, "template"));
	char prio[24] = "0";
	if (json_is_integer(json_object_get(a, "priority")))
		snprintf(prio, sizeof prio, "%lld",
		         (long long)json_integer_value(json_object_get(a, "priority")));
	const char *quiet = json_string_value(json_object_get(a, "quiet_hours"));
	const char *on_cap = json_string_value(json_object_get(a, "on_cap"));
	wf_stmts_add(
	    &in->st,
	    "INSERT INTO messages (customer_id, instance_id, seq, workflow, channel, template,"
	    " purpose, data, next_attempt_at, created_at, updated_at, priority, quiet_hours, on_cap)"
	    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $9, $10, $11, $12)"
	    " ON CONFLICT (customer_id, instance_id, seq) DO NOTHING",
	    12, cid, iid, seq, in->workflow, ch, tpl,
	    json_string_value(json_object_get(a, "purpose")), data,
	    ng_wf_ts(wf_now(in->e), now, sizeof now), prio, quiet ? quiet : "defer",
	    on_cap ? on_cap : "defer");
	free(data);
	in->new_sends++;
	wf_inst_note(in, "send", "%s %s", ch, tpl);
}

static void queue_emit(struct wf_inst *in)
{
	json_t *a = in->req.args;
	char cid[24], key[80], now[40];
	snprintf(cid, sizeof cid, "%lld", (long long)in->cid);
	snprintf(key, sizeof key, "wf:%lld:%lld:%d", (long long)in->cid, (long long)in->iid,
	         in->seq);
	char *data = wf_json_dump(json_object_get(a, "data"));
	const char *type = json_string_value(json_object_get(a, "type"));
	wf_stmts_add(&in->st,
	             "INSERT INTO events (customer_id, source, dedupe_key, type, data, occurred_at,"
	             " received_at) VALUES ($1, 'workflow', $2, $3, $4, $5, $5)"
	             " ON CONFLICT (source, dedupe_key) DO NOTHING",
	             5, cid, key, type, data, ng_wf_ts(wf_now(in->e), now, sizeof now));
	free(data);
	wf_inst_note(in, "emit", "%s", type);
}

/* ---- effects that need the database before the script goes on ---------------------------- */

static json_t *rows_json(PGresult *res)
{
	json_t *rows = json_array();
	int nf = PQnfields(res);
	for (int r = 0; r < PQntuples(res); r++) {
		json_t *o = json_object();
		for (int f = 0; f < nf; f++) {
			if (PQgetisnull(res, r, f))
				continue;
			const char *v = PQgetvalue(res, r, f);
			json_t *x;
			switch (PQftype(res, f)) {
			case 20:
			case 21:
			case 23: /* int8, int2, int4 */
				x = json_integer(strtoll(v, NULL, 10));
				break;
			case 700:
			case 701:
			case 1700: /* float4, float8, numeric */
				x = json_real(strtod(v, NULL));
				break;
			case 16: /* bool */
				x = json_boolean(v[0] == 't');
				break;
			case 114:
			case 3802: /* json, jsonb */
				x = json_loads(v, JSON_DECODE_ANY, NULL);
				break;
			default:
				x = json_string(v);
			}
			json_object_set_new(o, PQfname(res, f), x ? x : json_string(v));
		}
		json_array_append_new(rows, o);
	}
	return rows;
}

static void start_wait_until(struct wf_inst *in);

static void on_async(const struct ng_db_result *r, void *arg)
{
	struct wf_inst *in = arg;
	if (r->status != 0 && is(in, "wait_until") && !in->tz_fallback &&
	    strcmp(r->sqlstate, "22023") == 0) {
		/* "time zone ... not recognized": the store's timezone, as the date trigger does.
		 */
		in->tz_fallback = 1;
		start_wait_until(in);
		return;
	}
	if (r->status != 0) {
		in->async_result = json_pack("{s:s}", "error", r->message);
	} else if (is(in, "query")) {
		PGresult *res = r->results[1];
		if (PQntuples(res) > QUERY_MAX_ROWS)
			in->async_result = json_pack("{s:s}", "error",
			                             "the query returned more than "
			                             "1000 rows; add a LIMIT");
		else
			in->async_result = json_pack("{s:o}", "rows", rows_json(res));
	} else {
		in->async_result =
		    json_pack("{s:I}", "until", (json_int_t)wf_col_i64(r->res, 0, 0));
	}
	wf_inst_resume_later(in);
}

static void fail_async(struct wf_inst *in, int rc)
{
	in->async_result = json_pack("{s:s}", "error", ng_strerror(rc));
	wf_inst_resume_later(in);
}

static void start_query(struct wf_inst *in)
{
	json_t *params = json_object_get(in->req.args, "params");
	size_t n = json_array_size(params);
	char **p = ng_xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		json_t *v = json_array_get(params, i);
		p[i] = json_is_string(v) ? ng_xstrdup(json_string_value(v)) : wf_json_dump(v);
	}
	/* READ ONLY: a workflow's query can look but never write, whatever its SQL says. */
	struct ng_db_stmt st[2] = {
	    {"SET TRANSACTION READ ONLY", 0, NULL},
	    {json_string_value(json_object_get(in->req.args, "sql")), (int)n,
	     (const char *const *)p},
	};
	int rc = ng_db_batch(in->e->opt.db, st, 2, on_async, in);
	for (size_t i = 0; i < n; i++)
		free(p[i]);
	free(p);
	if (rc)
		fail_async(in, rc);
}

/* The first moment at or after `at` (or now) when the customer's local clock reads hh:mm (the
 * store's timezone when the customer has none, or one PostgreSQL does not know). */
static void start_wait_until(struct wf_inst *in)
{
	json_t *a = in->req.args;
	char base[40], hh[8] = "", mm[8] = "0";
	json_t *at = json_object_get(a, "at");
	const char *at_text = json_is_string(at) ? json_string_value(at) : NULL;
	if (!at_text)
		at_text = ng_wf_ts(json_is_number(at) ? (int64_t)(json_number_value(at) * 1000)
		                                      : wf_now(in->e),
		                   base, sizeof base);
	json_t *h = json_object_get(a, "local_hour"), *m = json_object_get(a, "local_minute");
	if (h)
		snprintf(hh, sizeof hh, "%d", (int)json_integer_value(h));
	if (m)
		snprintf(mm, sizeof mm, "%d", (int)json_integer_value(m));
	const char *tz = json_string_value(json_object_get(in->customer, "timezone"));
	const char *params[4] = {at_text, tz && *tz && !in->tz_fallback ? tz : in->e->default_tz,
	                         h ? hh : NULL, mm};
	int rc = ng_db_query(
	    in->e->opt.db,
	    "SELECT (extract(epoch FROM CASE WHEN $3::int IS NULL THEN $1::timestamptz ELSE"
	    " (SELECT (CASE WHEN t >= l THEN t ELSE t + interval '1 day' END) AT TIME ZONE $2"
	    "    FROM (SELECT $1::timestamptz AT TIME ZONE $2 AS l,"
	    "                 date_trunc('day', $1::timestamptz AT TIME ZONE $2)"
	    "                 + make_interval(hours => $3::int, mins => $4::int) AS t) s)"
	    " END) * 1000)::bigint",
	    4, params, on_async, in);
	if (rc)
		fail_async(in, rc);
}

int wf_effect_finish_async(struct wf_inst *in)
{
	json_t *result = in->async_result;
	in->async_result = NULL;
	lua_State *L = ng_lua_state(in->e->lua);
	int n;
	if (is(in, "wait_until")) {
		json_t *err = json_object_get(result, "error");
		if (err) {
			char *msg = ng_xasprintf("ctx.wait_until: %s", json_string_value(err));
			wf_inst_commit(in, "failed", msg, 0, NULL);
			free(msg);
			n = -1;
		} else {
			record(in, result);
			int64_t until = until_of(result);
			n = until <= wf_now(in->e) ? 0 : -1;
			if (n < 0)
				sleep_until(in, until, NULL);
		}
	} else {
		record(in, result);
		n = push_result(in, L, result);
	}
	json_decref(result);
	return n;
}

int wf_effect_perform(struct wf_inst *in, lua_State *L)
{
	json_t *a = in->req.args, *result;
	int64_t now = wf_now(in->e), ms = 0;
	if (is(in, "wait")) {
		ng_clock_parse_duration(json_string_value(json_object_get(a, "duration")), &ms);
		result = json_pack("{s:I}", "until", (json_int_t)(now + ms));
		record(in, result);
		sleep_until(in, now + ms, NULL);
		json_decref(result);
		return -1;
	}
	if (is(in, "wait_for")) {
		const char *t = json_string_value(json_object_get(a, "timeout"));
		int64_t until = t && ng_clock_parse_duration(t, &ms) == 0 ? now + ms : 0;
		result = until ? json_pack("{s:b, s:I}", "pending", 1, "until", (json_int_t)until)
		               : json_pack("{s:b}", "pending", 1);
		record(in, result);
		json_t *w = waiting_for_of(in, a);
		sleep_until(in, until, w);
		json_decref(w);
		json_decref(result);
		return -1;
	}
	if (is(in, "wait_until")) {
		start_wait_until(in);
		return -1;
	}
	if (is(in, "query")) {
		start_query(in);
		return -1;
	}
	if (is(in, "customer")) {
		result = json_incref(in->customer);
	} else if (is(in, "split")) {
		char *k = ng_xasprintf("%lld:%s", (long long)in->cid,
		                       json_string_value(json_object_get(a, "name")));
		json_t *v = json_object_get(a, "variants");
		result =
		    json_pack("{s:O}", "variant", json_array_get(v, fnv1a(k) % json_array_size(v)));
		free(k);
	} else if (is(in, "now")) {
		result = json_pack("{s:I}", "ms", (json_int_t)now);
	} else {
		result = json_object();
		if (is(in, "send"))
			queue_send(in);
		else if (is(in, "emit"))
			queue_emit(in);
		else if (is(in, "log")) {
			const char *msg = json_string_value(json_object_get(a, "message"));
			ng_info("wf", "workflow=%s instance=%lld: %s", in->workflow,
			        (long long)in->iid, msg);
			wf_inst_note(in, "log", "%s", msg);
		}
	}
	if (is(in, "send"))
		json_object_set_new(result, "queued", json_true());
	record(in, result);
	int n = push_result(in, L, result);
	json_decref(result);
	return n;
}
