/*
 * wf_harness.c — the engine on a virtual clock for tools and tests (see wf_harness.h): opening a
 * private schema, deploying, writing customers and events the way the intake does, and advancing
 * time so that every wake-up runs at its own moment, as it would on the real clock.
 */
#include "migrate.h"
#include "ng.h"
#include "paths.h"
#include "wf_harness.h"
#include "wf_int.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_START_MS 1767607200000LL /* 2026-01-05 10:00:00 UTC, a Monday */

struct ng_wf_harness {
	uv_loop_t loop;
	struct ng_clock *clock;
	ng_db *db;
	struct ng_wf_engine *engine;
	PGconn *pg;
	char *schema;
	char *conninfo; /* with the schema's search_path */
	char *base_conninfo;
	int deploy_done, deploy_status;
	char *deploy_err;
	int64_t event_seq;
};

const char ng_wf_manual_start_sql[] =
    "WITH s AS (INSERT INTO instances (customer_id, workflow, version, key, status, wake_at,"
    " created_at, updated_at)"
    " SELECT $1::bigint, w.name, w.active_version, $1::bigint::text, 'ready', $2, $2, $2 FROM "
    "workflows w"
    " WHERE w.name = $3 AND w.active_version IS NOT NULL AND w.enabled"
    " ON CONFLICT (workflow, key) WHERE status IN ('ready', 'running', 'waiting', 'parked')"
    " DO NOTHING RETURNING id)"
    " SELECT id, pg_notify('nudge_workflows', 'due') FROM s";

static int exec_ok(PGconn *pg, const char *sql, int n, const char *const *p, char **err)
{
	PGresult *r = PQexecParams(pg, sql, n, NULL, p, NULL, NULL, 0);
	int st = PQresultStatus(r);
	int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
	if (!ok && err)
		*err = ng_xstrdup(PQresultErrorMessage(r));
	PQclear(r);
	return ok ? 0 : NG_EDB;
}

static void on_deployed(int status, const char *err, void *arg)
{
	struct ng_wf_harness *h = arg;
	h->deploy_done = 1;
	h->deploy_status = status;
	h->deploy_err = err ? ng_xstrdup(err) : NULL;
}

int ng_wf_harness_open(struct ng_wf_harness **out, const struct ng_wf_harness_options *o,
                       char **err)
{
	*out = NULL;
	*err = NULL;
	struct ng_wf_harness *h = ng_xcalloc(1, sizeof(*h));
	uv_loop_init(&h->loop);
	h->base_conninfo = ng_xstrdup(o->conninfo);
	h->pg = PQconnectdb(o->conninfo);
	if (PQstatus(h->pg) != CONNECTION_OK) {
		*err = ng_xasprintf("cannot connect: %s", PQerrorMessage(h->pg));
		ng_wf_harness_close(h);
		return NG_EDB;
	}
	PQclear(PQexec(h->pg, "SET client_min_messages = warning"));
	if (o->isolate) {
		static int n;
		h->schema = ng_xasprintf("nudge_sim_%d_%d", (int)getpid(), n++);
		h->conninfo =
		    ng_xasprintf("%s options='-c search_path=%s'", o->conninfo, h->schema);
		char *sql = ng_xasprintf("CREATE SCHEMA %s", h->schema);
		char *sp = ng_xasprintf("SET search_path = %s", h->schema);
		int rc = exec_ok(h->pg, sql, 0, NULL, err);
		if (!rc)
			rc = exec_ok(h->pg, sp, 0, NULL, err);
		free(sql);
		free(sp);
		char *dir = ng_paths_shipped("sql"), ebuf[512];
		int applied;
		if (!rc &&
		    (!dir || ng_migrate_run(h->conninfo, dir, &applied, ebuf, sizeof ebuf))) {
			*err = ng_xasprintf("migrating the private schema: %s",
			                    dir ? ebuf : "no sql/ directory found");
			rc = NG_EDB;
		}
		free(dir);
		if (rc) {
			ng_wf_harness_close(h);
			return rc;
		}
	} else {
		h->conninfo = ng_xstrdup(o->conninfo);
	}
	h->clock = ng_clock_virtual(&h->loop, o->start_ms ? o->start_ms : DEFAULT_START_MS);
	struct ng_db_options dbo = {.conninfo = h->conninfo, .pool_size = 2};
	ng_db_open(&h->db, &h->loop, &dbo);
	struct ng_wf_options wo = {.loop = &h->loop,
	                           .db = h->db,
	                           .clock = h->clock,
	                           .owner = o->owner,
	                           .default_timezone = o->default_timezone,
	                           .trace = o->trace,
	                           .trace_data = o->trace_data,
	                           .limits = {.wall_ms = 2000}};
	int rc = ng_wf_engine_open(&h->engine, &wo);
	if (rc == 0)
		rc = ng_wf_engine_deploy(h->engine, o->workflows_dir, on_deployed, h);
	while (rc == 0 && !h->deploy_done)
		uv_run(&h->loop, UV_RUN_ONCE);
	if (rc == 0 && h->deploy_status) {
		*err = ng_xstrdup(h->deploy_err ? h->deploy_err : "deploy failed");
		rc = h->deploy_status;
	}
	if (rc) {
		if (!*err)
			*err = ng_xasprintf("cannot start the engine: %s", ng_strerror(rc));
		ng_wf_harness_close(h);
		return rc;
	}
	ng_wf_engine_start(h->engine);
	ng_wf_harness_settle(h);
	*out = h;
	return 0;
}

static void on_closed(void *arg)
{
	(*(int *)arg)++;
}

void ng_wf_harness_close(struct ng_wf_harness *h)
{
	if (!h)
		return;
	int closed = 0;
	if (h->engine) {
		ng_wf_engine_close(h->engine, on_closed, &closed);
		while (!closed)
			uv_run(&h->loop, UV_RUN_ONCE);
	}
	closed = 0;
	if (h->db) {
		ng_db_close(h->db, on_closed, &closed);
		while (!closed)
			uv_run(&h->loop, UV_RUN_ONCE);
	}
	closed = 0;
	if (h->clock) {
		ng_clock_close(h->clock, on_closed, &closed);
		while (!closed)
			uv_run(&h->loop, UV_RUN_ONCE);
	}
	uv_run(&h->loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&h->loop) != 0)
		ng_error("wf", "harness: the loop still has open handles");
	if (h->schema && PQstatus(h->pg) == CONNECTION_OK) {
		char *sql = ng_xasprintf("DROP SCHEMA %s CASCADE", h->schema);
		exec_ok(h->pg, sql, 0, NULL, NULL);
		free(sql);
	}
	PQfinish(h->pg);
	free(h->schema);
	free(h->conninfo);
	free(h->base_conninfo);
	free(h->deploy_err);
	free(h);
}

void ng_wf_harness_settle(struct ng_wf_harness *h)
{
	while (!ng_wf_engine_idle(h->engine))
		uv_run(&h->loop, UV_RUN_ONCE);
}

void ng_wf_harness_advance(struct ng_wf_harness *h, int64_t ms)
{
	int64_t target = ng_clock_now_ms(h->clock) + ms;
	ng_wf_harness_settle(h);
	for (;;) {
		int64_t now = ng_clock_now_ms(h->clock);
		int64_t next = ng_wf_engine_next_due(h->engine);
		if (next > target || now >= target)
			break;
		int64_t step = next - now < 1 ? 1 : next - now;
		ng_clock_advance(h->clock, step);
		ng_wf_engine_kick(h->engine);
		ng_wf_harness_settle(h);
	}
	int64_t now = ng_clock_now_ms(h->clock);
	if (target > now)
		ng_clock_advance(h->clock, target - now);
	ng_wf_engine_kick(h->engine);
	ng_wf_harness_settle(h);
}

static const char *str_field(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

int64_t ng_wf_harness_customer(struct ng_wf_harness *h, json_t *spec, char **err)
{
	*err = NULL;
	json_t *attrs = json_object_get(spec, "attributes");
	char *attr = attrs ? wf_json_dump(attrs) : ng_xstrdup("{}");
	const char *p[7] = {str_field(spec, "email"),      str_field(spec, "phone"),
	                    str_field(spec, "first_name"), str_field(spec, "timezone"),
	                    str_field(spec, "birthday"),   attr,
	                    str_field(spec, "last_name")};
	PGresult *r =
	    PQexecParams(h->pg,
	                 "INSERT INTO customers (email, phone, first_name, timezone, birthday,"
	                 " attributes, last_name) VALUES ($1, $2, $3, $4, $5, $6, $7)"
	                 " RETURNING id",
	                 7, NULL, p, NULL, NULL, 0);
	free(attr);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		*err = ng_xstrdup(PQresultErrorMessage(r));
		PQclear(r);
		return NG_EDB;
	}
	int64_t id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	const char *ch;
	json_t *st;
	json_object_foreach(json_object_get(spec, "consent"), ch, st)
	{
		char cid[24];
		snprintf(cid, sizeof cid, "%lld", (long long)id);
		const char *cp[3] = {cid, ch,
		                     json_is_string(st) ? json_string_value(st) : "granted"};
		if (exec_ok(h->pg,
		            "INSERT INTO consents (customer_id, channel, purpose, status, source)"
		            " VALUES ($1, $2, 'marketing', $3, 'test')",
		            3, cp, err))
			return NG_EDB;
	}
	return id;
}

int ng_wf_harness_event(struct ng_wf_harness *h, int64_t customer, const char *type, json_t *data,
                        char **err)
{
	*err = NULL;
	char cid[24], key[64], now[40];
	snprintf(cid, sizeof cid, "%lld", (long long)customer);
	snprintf(key, sizeof key, "harness-%d-%lld", (int)getpid(), (long long)++h->event_seq);
	char *d = data ? wf_json_dump(data) : ng_xstrdup("{}");
	const char *p[5] = {cid, key, type, d,
	                    ng_wf_ts(ng_clock_now_ms(h->clock), now, sizeof now)};
	int rc =
	    exec_ok(h->pg,
	            "INSERT INTO events (customer_id, source, dedupe_key, type, data, occurred_at,"
	            " received_at) VALUES ($1, 'test', $2, $3, $4, $5, $5)",
	            5, p, err);
	free(d);
	ng_wf_engine_kick(h->engine);
	ng_wf_harness_settle(h);
	return rc;
}

int ng_wf_harness_start(struct ng_wf_harness *h, const char *workflow, int64_t customer, char **err)
{
	*err = NULL;
	char cid[24], now[40];
	snprintf(cid, sizeof cid, "%lld", (long long)customer);
	const char *p[3] = {cid, ng_wf_ts(ng_clock_now_ms(h->clock), now, sizeof now), workflow};
	int rc = exec_ok(h->pg, ng_wf_manual_start_sql, 3, p, err);
	ng_wf_engine_kick(h->engine);
	ng_wf_harness_settle(h);
	return rc;
}

PGconn *ng_wf_harness_pg(struct ng_wf_harness *h)
{
	return h->pg;
}

struct ng_wf_engine *ng_wf_harness_engine(struct ng_wf_harness *h)
{
	return h->engine;
}

int64_t ng_wf_harness_now(struct ng_wf_harness *h)
{
	return ng_clock_now_ms(h->clock);
}

const char *ng_wf_harness_conninfo(struct ng_wf_harness *h)
{
	return h->conninfo;
}
