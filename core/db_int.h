/*
 * db_int.h — what the db_*.c files share and nobody else sees: the pool, a connection and its
 * state machine, a request. The public API is db.h.
 */
#ifndef NG_DB_INT_H
#define NG_DB_INT_H

#include "db.h"
#include "ng.h"

#include <stdint.h>

struct ng_db_conn;

/* A user query, a user batch, or internal work (a ROLLBACK after a failed batch, a LISTEN). */
enum ng_db_req_kind { NG_DB_REQ_QUERY, NG_DB_REQ_BATCH, NG_DB_REQ_INTERNAL };

struct ng_db_req {
	struct ng_db_req *next; /* in the pool queue or in one connection's in-flight FIFO */
	enum ng_db_req_kind kind;
	int nstmts;       /* the caller's statements */
	int nqueries;     /* queries on the wire: a batch adds BEGIN and COMMIT */
	char **sql;       /* nstmts entries */
	int *nparams;     /* nstmts entries */
	char ***params;   /* nstmts arrays of nparams[i] entries (NULL = SQL NULL) */
	int done_queries; /* wire queries whose results are complete (libpq returned NULL) */
	int commit_error_ended; /* the NULL after an error at the sync (the implicit COMMIT) was read */
	int nwire;        /* queries on the wire, Parses of new prepared statements included */
	int *wire;        /* per wire query: its results slot, or -(cache entry + 1) for a Parse */
	int *by_name;     /* per results slot: cache entry + 1 when it ran by name, else 0 */
	PGresult **results;   /* nqueries entries, the last result of each query */
	uint64_t enqueued_ms; /* monotonic ms when submitted, for queue_timeout_ms */
	ng_db_cb cb;
	void *arg;
	/* Internal requests: called with the outcome instead of a user callback. */
	void (*internal_done)(struct ng_db_conn *c, struct ng_db_req *req, int status);
	void *internal_arg;
};

/* A named prepared statement of one connection (db_prep.c). */
#define NG_DB_PREP_MAX 64
struct ng_db_prep {
	char *sql; /* NULL: a free entry */
	uint64_t hash;
	int ready;   /* the server confirmed the Parse */
	unsigned id; /* the name is ng_s<id>: never reused on a session */
};

/*
 * One connection's state. Every change goes through ng_db_conn_set_state().
 *   INIT        allocated, not started
 *   BACKOFF     waiting on the timer before the next connection attempt
 *   CONNECTING  PQconnectPoll in progress, the timer is the connect deadline
 *   READY       connected in pipeline mode, nothing in flight
 *   BUSY        connected, requests in flight (the in-flight FIFO is not empty)
 *   CLOSED      shut down for good (the pool is closing); no PGconn, no poll handle
 */
enum ng_db_conn_state {
	NG_DBC_INIT,
	NG_DBC_BACKOFF,
	NG_DBC_CONNECTING,
	NG_DBC_READY,
	NG_DBC_BUSY,
	NG_DBC_CLOSED,
};

struct ng_db_conn {
	ng_db *db;
	int index; /* for logs; the LISTEN connection is -1 */
	enum ng_db_conn_state state;
	PGconn *pg;
	uv_poll_t *poll; /* the poll handle of poll_fd, NULL when no socket is watched */
	int poll_fd;
	int poll_events;
	uv_timer_t timer; /* connect deadline or reconnect backoff */
	int timer_open;
	struct ng_db_req *inflight_head, *inflight_tail;
	int inflight;  /* requests in the FIFO */
	int flushing;  /* PQflush returned 1: poll for writable until it returns 0 */
	int unflushed; /* requests were queued in libpq since the last PQflush */
	int attempt;   /* failed attempts since the last success, for the backoff */
	int ever_connected;
	int listener; /* the dedicated LISTEN connection */
	struct ng_db_prep prep[NG_DB_PREP_MAX];
	unsigned prep_seq;
};

/* A LISTEN channel; sent is 1 once LISTEN went out on the current connection. */
struct ng_db_channel {
	struct ng_db_channel *next;
	char *name;
	ng_db_notify_cb cb;
	void *arg;
	int sent;
};

struct ng_db {
	uv_loop_t *loop;
	struct ng_db_options opt;
	const char **conn_keys; /* libpq keywords/values: the parsed conninfo plus our options */
	const char **conn_vals;
	PQconninfoOption *conn_parsed; /* owns the strings in conn_keys/conn_vals */
	char *conn_options;            /* the "options" value we built */
	int nconns;
	struct ng_db_conn *conns;
	struct ng_db_conn *listen_conn; /* NULL until ng_db_listen */
	struct ng_db_channel *channels;
	struct ng_db_req *queue_head, *queue_tail;
	uint64_t queued;
	uv_idle_t pump; /* dispatches queued work and closing steps outside the callers' stacks */
	uv_timer_t queue_timer;
	uv_timer_t close_timer;
	int handles; /* open uv handles; the pool is freed when the last one has closed */
	int closing;
	int all_closed; /* every connection CLOSED and the pool's own handles closing */
	void (*close_done)(void *arg);
	void *close_arg;
	uint64_t completed, errors, reconnects;
	uint64_t rng;
};

/* db_req.c */
struct ng_db_req *ng_db_req_new(enum ng_db_req_kind kind, const struct ng_db_stmt *stmts,
                                int nstmts);
void ng_db_req_free(struct ng_db_req *req);
int ng_db_req_send(struct ng_db_req *req, struct ng_db_conn *c);
/* Delivers the result gathered on the wire (or status when not 0), then frees req. */
void ng_db_req_finish(ng_db *db, struct ng_db_conn *c, struct ng_db_req *req, int status,
                      const char *message);
void ng_db_copy_message(char *dst, size_t cap, const char *src, const char *dflt);

/* db_prep.c */
/* The cache entry to execute sql by name, or -1 to send it unnamed. *fresh: the Parse must go
 * out first (the entry is pending until ng_db_prep_result). */
int ng_db_prep_find(struct ng_db_conn *c, const char *sql, int *fresh);
void ng_db_prep_name(const struct ng_db_conn *c, int entry, char *buf, size_t len);
void ng_db_prep_result(struct ng_db_conn *c, int entry, const PGresult *r);
/* An execution by name failed: forget the entry if the statement itself went bad. */
void ng_db_prep_check(struct ng_db_conn *c, int entry, const PGresult *r);
void ng_db_prep_reset(struct ng_db_conn *c);

/* db_conn.c */
void ng_db_conn_init(ng_db *db, struct ng_db_conn *c, int index);
void ng_db_conn_start(struct ng_db_conn *c);
void ng_db_conn_set_state(struct ng_db_conn *c, enum ng_db_conn_state state);
int ng_db_conn_watch(struct ng_db_conn *c);
void ng_db_conn_fail_inflight(struct ng_db_conn *c, int status, const char *message);
void ng_db_conn_lost(struct ng_db_conn *c, const char *why);
void ng_db_conn_shutdown(struct ng_db_conn *c);

/* db_pipeline.c */
int ng_db_conn_can_take(const struct ng_db_conn *c);
int ng_db_conn_submit(struct ng_db_conn *c, struct ng_db_req *req);
int ng_db_conn_flush(struct ng_db_conn *c);
int ng_db_conn_read(struct ng_db_conn *c);

/* db_pool.c */
void ng_db_schedule(ng_db *db);
void ng_db_handle_release(ng_db *db);

/* db_listen.c */
void ng_db_listen_send_pending(ng_db *db);
void ng_db_listen_reset(ng_db *db);
void ng_db_listen_deliver(ng_db *db, PGconn *pg);
void ng_db_listen_free(ng_db *db);

#endif
