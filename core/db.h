/*
 * db.h — the PostgreSQL client on the libuv loop: a pool of non-blocking libpq connections.
 *
 * Every connection is driven by a uv_poll on its socket; nothing here ever blocks the loop thread
 * (use a numeric host or hostaddr in the conninfo: libpq resolves host names synchronously).
 * Queries are sent with PQsendQueryParams only, in pipeline mode: a connection carries many
 * independent queries back-to-back, each followed by its own sync (its own implicit transaction),
 * so one failing query never aborts another.
 *
 * Callbacks: when ng_db_query/ng_db_batch return 0 the callback is called exactly once, always from
 * the loop and never from inside the submitting call. When they return an error (bad arguments,
 * NG_ECLOSING) the callback is never called. A request that was sent when its connection broke
 * fails with NG_ECONNLOST and is never re-run (it may have committed); a request still queued when
 * a connection breaks stays queued and runs after the reconnect.
 *
 * Files: db_pool.c (open, queue, dispatch, close, stats), db_conn.c (one connection's state
 * machine and socket), db_pipeline.c (sending and reading back requests), db_req.c (requests and
 * their results), db_listen.c (LISTEN/NOTIFY); db_int.h is what they share.
 */
#ifndef NG_DB_H
#define NG_DB_H

#include <libpq-fe.h>
#include <stdint.h>
#include <uv.h>

typedef struct ng_db ng_db;

struct ng_db_options {
	const char *conninfo;     /* libpq conninfo string or URI (required) */
	int pool_size;            /* connections for queries; default 4 */
	int pipeline_depth;       /* requests in flight per connection; default 128 */
	int statement_timeout_ms; /* per statement, on every connection; 0 = server default */
	int connect_timeout_ms;   /* one connection attempt; default 10000 */
	int queue_timeout_ms; /* queued work older than this fails with NG_ETIMEDOUT; 0 = never */
	int reconnect_min_ms; /* backoff after a failure, doubled per attempt; default 100 */
	int reconnect_max_ms; /* cap of the backoff; default 10000 */
	int close_timeout_ms; /* how long ng_db_close lets in-flight work finish; default 5000 */
};

/*
 * What a callback receives. Everything in it (the PGresults too) is valid only during the callback.
 *   status   0, NG_EDB (message and sqlstate from the server), NG_ECONNLOST, NG_ETIMEDOUT (queued
 *            too long), NG_ECLOSING (ng_db_close failed it)
 *   res      ng_db_query: its result. ng_db_batch: the failing statement's result on NG_EDB, else
 * the last statement's. NULL when no result came back. results  one entry per statement (nresults
 * of them; NULL where the statement did not run) failed   index of the failing statement of a
 * batch, -1 otherwise
 */
struct ng_db_result {
	int status;
	const char *message;  /* never NULL; "" on success */
	const char *sqlstate; /* never NULL; five characters on NG_EDB, "" otherwise */
	PGresult *res;
	int nresults;
	PGresult *const *results;
	int failed;
};

typedef void (*ng_db_cb)(const struct ng_db_result *r, void *arg);

/* One statement of a batch. params may hold NULL entries (SQL NULL); all are text format. */
struct ng_db_stmt {
	const char *sql;
	int nparams;
	const char *const *params;
};

struct ng_db_stats {
	int conns_total;      /* pool connections, plus the LISTEN connection if any */
	int conns_ready;      /* connected, nothing in flight */
	int conns_busy;       /* connected, requests in flight */
	int conns_connecting; /* connecting or waiting to reconnect */
	uint64_t queued;      /* requests waiting for a connection */
	uint64_t in_flight;   /* requests sent, result not yet delivered */
	uint64_t completed;   /* callbacks delivered (success or failure) */
	uint64_t errors;      /* of those, callbacks with a non-zero status */
	uint64_t reconnects;  /* connections re-established after a loss or a failed attempt */
};

/* Starts connecting (never blocks) and returns at once; queries may be submitted immediately. */
int ng_db_open(ng_db **out, uv_loop_t *loop, const struct ng_db_options *opt);

/* One statement with text parameters ($1…), copied before return. */
int ng_db_query(ng_db *db, const char *sql, int nparams, const char *const *params, ng_db_cb cb,
                void *arg);

/*
 * Several statements run atomically in one round trip (the statements, then one sync: the
 * implicit transaction between two syncs): one callback with every statement's result, or the
 * first error (and nothing committed). Batches pipeline behind each other like single queries.
 */
int ng_db_batch(ng_db *db, const struct ng_db_stmt *stmts, int nstmts, ng_db_cb cb, void *arg);

void ng_db_stats(const ng_db *db, struct ng_db_stats *out);

/*
 * LISTEN on a dedicated connection. cb(channel, payload, arg) runs per notification; a call with
 * payload == NULL means the LISTEN is (re-)established, e.g. after a reconnect: notifications sent
 * while it was down are lost, so the listener should re-check whatever it watches.
 */
typedef void (*ng_db_notify_cb)(const char *channel, const char *payload, void *arg);
int ng_db_listen(ng_db *db, const char *channel, ng_db_notify_cb cb, void *arg);

/*
 * Stops taking work (NG_ECLOSING), fails what is queued, lets in-flight work finish within
 * close_timeout_ms (then fails it with NG_ECLOSING: its outcome is unknown), closes every handle,
 * frees db and calls done(arg). Returns NG_ECLOSING when already closing.
 */
int ng_db_close(ng_db *db, void (*done)(void *arg), void *arg);

#endif
