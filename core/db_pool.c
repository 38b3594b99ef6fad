/*
 * db_pool.c — the pool: opening it (conninfo plus our per-connection options), the queue of work
 * waiting for a connection, dispatch to the least-loaded connection up to the pipeline depth, the
 * queue deadline, statistics and the orderly close.
 *
 * Submitting only queues and arms an idle handle (the "pump"); the pump dispatches on the next loop
 * pass. So no callback ever runs inside ng_db_query, and nothing a callback does (submit, close)
 * re-enters a connection's reading loop.
 */
#include "db_int.h"

#include <stdio.h>
#include <stdlib.h>

#include <errno.h>
#include <string.h>

static void on_pump(uv_idle_t *h);

static void pool_handle_closed(uv_handle_t *h)
{
	ng_db_handle_release(h->data);
}

static void pool_free(ng_db *db)
{
	void (*done)(void *) = db->close_done;
	void *arg = db->close_arg;
	ng_db_listen_free(db);
	free(db->conns);
	free(db->conn_keys);
	free(db->conn_vals);
	free(db->conn_options);
	PQconninfoFree(db->conn_parsed);
	free(db);
	if (done)
		done(arg);
}

void ng_db_handle_release(ng_db *db)
{
	if (--db->handles == 0 && db->all_closed)
		pool_free(db);
}

void ng_db_schedule(ng_db *db)
{
	if (!db->all_closed && !uv_is_active((uv_handle_t *)&db->pump))
		uv_idle_start(&db->pump, on_pump);
}

/* The parsed conninfo, plus application_name (if unset) and the statement timeout. */
static int build_conninfo(ng_db *db, const char *conninfo)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
	if (!opts) {
		size_t n = err ? strlen(err) : 0;
		while (n > 0 && err[n - 1] == '\n')
			err[--n] = '\0';
		ng_error("db", "invalid conninfo: %s", err ? err : "out of memory");
		PQfreemem(err);
		return NG_ECONFIG;
	}
	size_t n = 0;
	for (PQconninfoOption *o = opts; o->keyword; o++)
		n++;
	db->conn_parsed = opts;
	db->conn_keys = ng_xcalloc(n + 6, sizeof(char *));
	db->conn_vals = ng_xcalloc(n + 6, sizeof(char *));
	const char *old_options = NULL;
	int has_app = 0;
	size_t k = 0;
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (!o->val)
			continue;
		if (strcmp(o->keyword, "options") == 0) {
			old_options = o->val;
			continue;
		}
		if (strcmp(o->keyword, "application_name") == 0)
			has_app = 1;
		db->conn_keys[k] = o->keyword;
		db->conn_vals[k++] = o->val;
	}
	/*
	 * TCP keepalives unless the conninfo says otherwise: without them a silently vanished
	 * server (not a restart: a dead host or network) leaves requests in flight forever.
	 */
	static const char *const keepalive[][2] = {
	    {"keepalives_idle", "30"}, {"keepalives_interval", "10"}, {"keepalives_count", "3"}};
	for (size_t i = 0; i < NG_ARRAY_LEN(keepalive); i++) {
		int set = 0;
		for (size_t j = 0; j < k; j++)
			set |= strcmp(db->conn_keys[j], keepalive[i][0]) == 0;
		if (!set) {
			db->conn_keys[k] = keepalive[i][0];
			db->conn_vals[k++] = keepalive[i][1];
		}
	}
	if (!has_app) {
		db->conn_keys[k] = "application_name";
		db->conn_vals[k++] = "nudge";
	}
	if (db->opt.statement_timeout_ms > 0)
		db->conn_options =
		    ng_xasprintf("%s%s-c statement_timeout=%d", old_options ? old_options : "",
		                 old_options ? " " : "", db->opt.statement_timeout_ms);
	else if (old_options)
		db->conn_options = ng_xstrdup(old_options);
	if (db->conn_options) {
		db->conn_keys[k] = "options";
		db->conn_vals[k++] = db->conn_options;
	}
	return 0;
}

static int positive_or(int v, int dflt)
{
	return v > 0 ? v : dflt;
}

int ng_db_open(ng_db **out, uv_loop_t *loop, const struct ng_db_options *opt)
{
	*out = NULL;
	if (!loop || !opt || !opt->conninfo)
		return -EINVAL;
	ng_db *db = ng_xcalloc(1, sizeof(*db));
	db->loop = loop;
	db->opt = *opt;
	db->opt.conninfo = NULL; /* parsed below, not kept */
	db->opt.pool_size = positive_or(opt->pool_size, 4);
	db->opt.pipeline_depth = positive_or(opt->pipeline_depth, 128);
	db->opt.connect_timeout_ms = positive_or(opt->connect_timeout_ms, 10000);
	db->opt.reconnect_min_ms = positive_or(opt->reconnect_min_ms, 100);
	db->opt.reconnect_max_ms = positive_or(opt->reconnect_max_ms, 10000);
	if (db->opt.reconnect_max_ms < db->opt.reconnect_min_ms)
		db->opt.reconnect_max_ms = db->opt.reconnect_min_ms;
	db->opt.close_timeout_ms = positive_or(opt->close_timeout_ms, 5000);
	if (db->opt.queue_timeout_ms < 0)
		db->opt.queue_timeout_ms = 0;
	db->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)db;
	if (!db->rng)
		db->rng = 88172645463325252ull;

	int rc = build_conninfo(db, opt->conninfo);
	if (rc < 0) {
		free(db->conn_keys);
		free(db->conn_vals);
		PQconninfoFree(db->conn_parsed);
		free(db);
		return rc;
	}

	uv_idle_init(loop, &db->pump);
	uv_timer_init(loop, &db->queue_timer);
	uv_timer_init(loop, &db->close_timer);
	db->pump.data = db->queue_timer.data = db->close_timer.data = db;
	db->handles = 3;
	db->nconns = db->opt.pool_size;
	db->conns = ng_xcalloc((size_t)db->nconns, sizeof(*db->conns));
	for (int i = 0; i < db->nconns; i++)
		ng_db_conn_init(db, &db->conns[i], i);
	for (int i = 0; i < db->nconns; i++)
		ng_db_conn_start(&db->conns[i]);
	*out = db;
	return 0;
}

static void queue_push(ng_db *db, struct ng_db_req *req)
{
	req->next = NULL;
	if (db->queue_tail)
		db->queue_tail->next = req;
	else
		db->queue_head = req;
	db->queue_tail = req;
	db->queued++;
}

static struct ng_db_req *queue_pop(ng_db *db)
{
	struct ng_db_req *req = db->queue_head;
	if (!req)
		return NULL;
	db->queue_head = req->next;
	if (!db->queue_head)
		db->queue_tail = NULL;
	db->queued--;
	req->next = NULL;
	return req;
}

/*
 * The real time, not the loop's cached uv_now: work may be submitted long after the loop last
 * updated its clock (before uv_run, or late in a slow callback).
 */
static uint64_t now_ms(void)
{
	return uv_hrtime() / 1000000;
}

static int submit(ng_db *db, enum ng_db_req_kind kind, const struct ng_db_stmt *stmts, int n,
                  ng_db_cb cb, void *arg)
{
	if (!db || !cb || !stmts || n < 1)
		return -EINVAL;
	for (int i = 0; i < n; i++)
		if (!stmts[i].sql || stmts[i].nparams < 0 || stmts[i].nparams > 65535 ||
		    (stmts[i].nparams > 0 && !stmts[i].params))
			return -EINVAL;
	if (db->closing)
		return NG_ECLOSING;
	struct ng_db_req *req = ng_db_req_new(kind, stmts, n);
	req->cb = cb;
	req->arg = arg;
	req->enqueued_ms = now_ms();
	queue_push(db, req);
	ng_db_schedule(db);
	return 0;
}

int ng_db_query(ng_db *db, const char *sql, int nparams, const char *const *params, ng_db_cb cb,
                void *arg)
{
	struct ng_db_stmt st = {sql, nparams, params};
	return submit(db, NG_DB_REQ_QUERY, &st, 1, cb, arg);
}

int ng_db_batch(ng_db *db, const struct ng_db_stmt *stmts, int nstmts, ng_db_cb cb, void *arg)
{
	return submit(db, NG_DB_REQ_BATCH, stmts, nstmts, cb, arg);
}

/* The connection with the fewest requests in flight that can take one more, or NULL. */
static struct ng_db_conn *pick_conn(ng_db *db)
{
	struct ng_db_conn *best = NULL;
	for (int i = 0; i < db->nconns; i++) {
		struct ng_db_conn *c = &db->conns[i];
		if (ng_db_conn_can_take(c) && (!best || c->inflight < best->inflight))
			best = c;
	}
	return best;
}

static void dispatch(ng_db *db)
{
	struct ng_db_conn *c;
	while (db->queue_head && (c = pick_conn(db)))
		ng_db_conn_submit(c, queue_pop(db));
	for (int i = 0; i < db->nconns; i++) {
		c = &db->conns[i];
		if ((c->state == NG_DBC_READY || c->state == NG_DBC_BUSY) && c->unflushed)
			ng_db_conn_flush(c);
	}
}

static void on_queue_timer(uv_timer_t *t);

/* Fires when the oldest queued request reaches its deadline (the queue is FIFO). */
static void arm_queue_timer(ng_db *db)
{
	if (!db->opt.queue_timeout_ms || !db->queue_head || db->closing) {
		uv_timer_stop(&db->queue_timer);
		return;
	}
	uint64_t due = db->queue_head->enqueued_ms + (uint64_t)db->opt.queue_timeout_ms;
	uint64_t now = now_ms();
	uv_timer_start(&db->queue_timer, on_queue_timer, due > now ? due - now : 0, 0);
}

static void on_queue_timer(uv_timer_t *t)
{
	ng_db *db = t->data;
	uint64_t now = now_ms();
	while (db->queue_head &&
	       db->queue_head->enqueued_ms + (uint64_t)db->opt.queue_timeout_ms <= now) {
		struct ng_db_req *req = queue_pop(db);
		char msg[128];
		snprintf(msg, sizeof(msg), "waited %d ms in the queue for a database connection",
		         db->opt.queue_timeout_ms);
		ng_db_req_finish(db, NULL, req, NG_ETIMEDOUT, msg);
	}
	arm_queue_timer(db);
}

/*
 * One closing pass: fail the queue, shut every connection with nothing in flight, and when every
 * connection is closed, close the pool's own handles (the last close callback frees the pool).
 */
static void close_step(ng_db *db)
{
	struct ng_db_req *req;
	while ((req = queue_pop(db)))
		ng_db_req_finish(db, NULL, req, NG_ECLOSING, "the database pool is closing");
	uv_timer_stop(&db->queue_timer);

	int open = 0;
	for (int i = 0; i < db->nconns; i++) {
		struct ng_db_conn *c = &db->conns[i];
		if (c->state == NG_DBC_BUSY)
			open++;
		else
			ng_db_conn_shutdown(c);
	}
	if (db->listen_conn) {
		/* LISTEN work is internal: nobody waits for it. */
		ng_db_conn_fail_inflight(db->listen_conn, NG_ECLOSING, "closing");
		ng_db_conn_shutdown(db->listen_conn);
	}
	if (open || db->all_closed)
		return;
	db->all_closed = 1;
	uv_close((uv_handle_t *)&db->pump, pool_handle_closed);
	uv_close((uv_handle_t *)&db->queue_timer, pool_handle_closed);
	uv_close((uv_handle_t *)&db->close_timer, pool_handle_closed);
}

static void on_close_timer(uv_timer_t *t)
{
	ng_db *db = t->data;
	for (int i = 0; i < db->nconns; i++) {
		struct ng_db_conn *c = &db->conns[i];
		if (c->state != NG_DBC_BUSY)
			continue;
		ng_warn("db", "conn %d: closing with %d request(s) still in flight", c->index,
		        c->inflight);
		ng_db_conn_fail_inflight(c, NG_ECLOSING,
		                         "the pool closed before the result came; outcome unknown");
		ng_db_conn_shutdown(c);
	}
	close_step(db);
}

static void on_pump(uv_idle_t *h)
{
	ng_db *db = h->data;
	uv_idle_stop(h);
	if (db->closing) {
		close_step(db);
		return;
	}
	dispatch(db);
	ng_db_listen_send_pending(db);
	arm_queue_timer(db);
}

int ng_db_close(ng_db *db, void (*done)(void *arg), void *arg)
{
	if (!db)
		return -EINVAL;
	if (db->closing)
		return NG_ECLOSING;
	db->closing = 1;
	db->close_done = done;
	db->close_arg = arg;
	uv_timer_start(&db->close_timer, on_close_timer, (uint64_t)db->opt.close_timeout_ms, 0);
	ng_db_schedule(db);
	return 0;
}

void ng_db_stats(const ng_db *db, struct ng_db_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (int i = -1; i < db->nconns; i++) {
		const struct ng_db_conn *c = i < 0 ? db->listen_conn : &db->conns[i];
		if (!c)
			continue;
		out->conns_total++;
		if (c->state == NG_DBC_READY)
			out->conns_ready++;
		else if (c->state == NG_DBC_BUSY)
			out->conns_busy++;
		else if (c->state == NG_DBC_CONNECTING || c->state == NG_DBC_BACKOFF ||
		         c->state == NG_DBC_INIT)
			out->conns_connecting++;
		out->in_flight += (uint64_t)c->inflight;
	}
	out->queued = db->queued;
	out->completed = db->completed;
	out->errors = db->errors;
	out->reconnects = db->reconnects;
}
