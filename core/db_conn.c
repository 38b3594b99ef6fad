/*
 * db_conn.c — one PostgreSQL connection's state machine on the loop (see the state list in
 * db_int.h): its socket, non-blocking connect with PQconnectPoll, the I/O events once connected,
 * losing the connection and reconnecting with capped exponential backoff and jitter. The request
 * traffic itself (send, flush, read results) is db_pipeline.c.
 *
 * The socket rules: one uv_poll per descriptor; polling stops before libpq may close the
 * descriptor (before every PQconnectPoll step, before PQfinish); when libpq moves to another socket
 * the old handle is closed and a new one made. libpq itself closes the socket when it sees the
 * connection break inside PQconsumeInput/PQflush; the handle is then closed at once, never started
 * again.
 */
#include "db_int.h"

#include <stdio.h>
#include <stdlib.h>

#include <string.h>

static const char *const state_names[] = {"init",  "backoff", "connecting",
                                          "ready", "busy",    "closed"};

void ng_db_conn_set_state(struct ng_db_conn *c, enum ng_db_conn_state state)
{
	if (c->state == state)
		return;
	ng_debug("db", "conn %d: %s -> %s", c->index, state_names[c->state], state_names[state]);
	c->state = state;
}

static void on_timer_closed(uv_handle_t *h)
{
	struct ng_db_conn *c = h->data;
	ng_db_handle_release(c->db);
}

static void on_poll_closed(uv_handle_t *h)
{
	struct ng_db_conn *c = h->data;
	ng_db *db = c->db;
	free(h);
	ng_db_handle_release(db);
}

static void on_timer(uv_timer_t *t);
static void on_poll(uv_poll_t *h, int status, int events);

void ng_db_conn_init(ng_db *db, struct ng_db_conn *c, int index)
{
	c->db = db;
	c->index = index;
	c->state = NG_DBC_INIT;
	c->poll_fd = -1;
	uv_timer_init(db->loop, &c->timer);
	c->timer.data = c;
	c->timer_open = 1;
	db->handles++;
}

/* Closing the handle stops polling at once (epoll forgets the descriptor before it is closed). */
static void poll_release(struct ng_db_conn *c)
{
	if (!c->poll)
		return;
	uv_close((uv_handle_t *)c->poll, on_poll_closed);
	c->poll = NULL;
	c->poll_fd = -1;
	c->poll_events = 0;
}

/* Watches libpq's current socket, with a new handle when the socket changed. */
static int poll_watch(struct ng_db_conn *c, int events)
{
	int fd = PQsocket(c->pg);
	if (fd < 0)
		return -1;
	if (c->poll && c->poll_fd != fd)
		poll_release(c);
	if (!c->poll) {
		c->poll = ng_xmalloc(sizeof(*c->poll));
		int rc = uv_poll_init(c->db->loop, c->poll, fd);
		if (rc < 0) {
			ng_warn("db", "conn %d: uv_poll_init(%d): %s", c->index, fd,
			        uv_strerror(rc));
			free(c->poll);
			c->poll = NULL;
			return -1;
		}
		c->poll->data = c;
		c->poll_fd = fd;
		c->poll_events = 0;
		c->db->handles++;
	}
	if (events != c->poll_events) {
		if (uv_poll_start(c->poll, events, on_poll) < 0)
			return -1;
		c->poll_events = events;
	}
	return 0;
}

/* Readable always; writable too while libpq has output it could not send. */
int ng_db_conn_watch(struct ng_db_conn *c)
{
	if (poll_watch(c, UV_READABLE | (c->flushing ? UV_WRITABLE : 0)) < 0) {
		ng_db_conn_lost(c, "cannot watch the socket");
		return -1;
	}
	return 0;
}

/* Forgets the PGconn and its socket; the requests in flight are the caller's business. */
static void teardown(struct ng_db_conn *c)
{
	poll_release(c);
	if (c->pg) {
		PQfinish(c->pg);
		c->pg = NULL;
	}
	c->flushing = 0;
	c->unflushed = 0;
	ng_db_prep_reset(c); /* prepared statements belong to the session */
}

static uint64_t next_random(ng_db *db)
{
	/* xorshift64: jitter only needs to differ between connections and attempts. */
	db->rng ^= db->rng << 13;
	db->rng ^= db->rng >> 7;
	db->rng ^= db->rng << 17;
	return db->rng;
}

/* Waits before the next attempt: min doubled per failed attempt, capped, with jitter. */
static void backoff(struct ng_db_conn *c)
{
	ng_db *db = c->db;
	if (db->closing) {
		ng_db_conn_shutdown(c);
		ng_db_schedule(db);
		return;
	}
	uint64_t delay = (uint64_t)db->opt.reconnect_min_ms;
	for (int i = 0; i < c->attempt && delay < (uint64_t)db->opt.reconnect_max_ms; i++)
		delay *= 2;
	if (delay > (uint64_t)db->opt.reconnect_max_ms)
		delay = (uint64_t)db->opt.reconnect_max_ms;
	/* "Equal jitter": half fixed, half random, so a restart is not met by a thundering herd. */
	delay = delay / 2 + next_random(db) % (delay / 2 + 1);
	ng_db_conn_set_state(c, NG_DBC_BACKOFF);
	uv_timer_start(&c->timer, on_timer, delay, 0);
}

static void connect_failed(struct ng_db_conn *c, const char *why)
{
	char msg[512];
	ng_db_copy_message(msg, sizeof(msg), why, "unknown error");
	c->attempt++;
	ng_warn("db", "conn %d: connection attempt %d failed: %s", c->index, c->attempt, msg);
	teardown(c);
	backoff(c);
}

static void on_notice(void *arg, const char *message)
{
	struct ng_db_conn *c = arg;
	char msg[512];
	ng_db_copy_message(msg, sizeof(msg), message, "unknown error");
	ng_debug("db", "conn %d: server notice: %s", c->index, msg);
}

void ng_db_conn_start(struct ng_db_conn *c)
{
	ng_db *db = c->db;
	c->pg = PQconnectStartParams(db->conn_keys, db->conn_vals, 0);
	if (!c->pg) {
		connect_failed(c, "out of memory");
		return;
	}
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		connect_failed(c, PQerrorMessage(c->pg));
		return;
	}
	PQsetNoticeProcessor(c->pg, on_notice, c);
	ng_db_conn_set_state(c, NG_DBC_CONNECTING);
	uv_timer_start(&c->timer, on_timer, (uint64_t)db->opt.connect_timeout_ms, 0);
	/* libpq's rule: act as if PQconnectStart had returned PGRES_POLLING_WRITING. */
	if (poll_watch(c, UV_WRITABLE) < 0)
		connect_failed(c, "libpq has no socket");
}

static void connected(struct ng_db_conn *c)
{
	ng_db *db = c->db;
	uv_timer_stop(&c->timer);
	if (PQsetnonblocking(c->pg, 1) != 0 || PQenterPipelineMode(c->pg) != 1) {
		connect_failed(c, PQerrorMessage(c->pg));
		return;
	}
	if (c->ever_connected)
		db->reconnects++;
	c->ever_connected = 1;
	c->attempt = 0;
	ng_db_conn_set_state(c, NG_DBC_READY);
	if (poll_watch(c, UV_READABLE) < 0) {
		ng_db_conn_lost(c, "cannot watch the socket");
		return;
	}
	ng_info("db", "conn %d: connected, backend pid %d", c->index, PQbackendPID(c->pg));
	if (c->listener)
		ng_db_listen_reset(db);
	ng_db_schedule(db);
}

/* One step of PQconnectPoll, then wait for what it asks for. */
static void connect_step(struct ng_db_conn *c)
{
	/* PQconnectPoll may close this socket (and open another): stop polling it first. */
	if (c->poll && c->poll_events) {
		uv_poll_stop(c->poll);
		c->poll_events = 0;
	}
	switch (PQconnectPoll(c->pg)) {
	case PGRES_POLLING_OK:
		connected(c);
		return;
	case PGRES_POLLING_READING:
		if (poll_watch(c, UV_READABLE) < 0)
			connect_failed(c, "libpq has no socket");
		return;
	case PGRES_POLLING_WRITING:
		if (poll_watch(c, UV_WRITABLE) < 0)
			connect_failed(c, "libpq has no socket");
		return;
	default:
		connect_failed(c, PQerrorMessage(c->pg));
		return;
	}
}

static void on_timer(uv_timer_t *t)
{
	struct ng_db_conn *c = t->data;
	if (c->state == NG_DBC_BACKOFF)
		ng_db_conn_start(c);
	else if (c->state == NG_DBC_CONNECTING)
		connect_failed(c, "connection attempt timed out");
}

static struct ng_db_req *detach_inflight(struct ng_db_conn *c)
{
	struct ng_db_req *list = c->inflight_head;
	c->inflight_head = c->inflight_tail = NULL;
	c->inflight = 0;
	return list;
}

static void fail_list(ng_db *db, struct ng_db_conn *c, struct ng_db_req *list, int status,
                      const char *message)
{
	while (list) {
		struct ng_db_req *next = list->next;
		list->next = NULL;
		ng_db_req_finish(db, c, list, status, message);
		list = next;
	}
}

void ng_db_conn_fail_inflight(struct ng_db_conn *c, int status, const char *message)
{
	struct ng_db_req *list = detach_inflight(c);
	if (c->state == NG_DBC_BUSY)
		ng_db_conn_set_state(c, NG_DBC_READY);
	fail_list(c->db, c, list, status, message);
}

/*
 * The connection broke. What was sent fails with NG_ECONNLOST — it may have committed, so it is
 * never re-sent; queued work is untouched and goes out after the reconnect.
 */
void ng_db_conn_lost(struct ng_db_conn *c, const char *why)
{
	ng_db *db = c->db;
	char msg[512];
	ng_db_copy_message(msg, sizeof(msg), why, "unknown error");
	/* The server often said why before it closed (e.g. pg_terminate_backend, shutdown). */
	const char *server_said = NULL;
	struct ng_db_req *head = c->inflight_head;
	for (int i = 0; head && i < head->nqueries && !server_said; i++)
		if (head->results[i] && PQresultStatus(head->results[i]) == PGRES_FATAL_ERROR)
			server_said = PQresultErrorField(head->results[i], PG_DIAG_MESSAGE_PRIMARY);
	if (server_said) {
		char tmp[1024];
		snprintf(tmp, sizeof(tmp), "%s; %s", server_said, msg);
		ng_db_copy_message(msg, sizeof(msg), tmp, "unknown error");
	}
	ng_warn("db", "conn %d: connection lost with %d request(s) in flight: %s", c->index,
	        c->inflight, msg);
	teardown(c);
	struct ng_db_req *list = detach_inflight(c);
	c->attempt = 0;
	backoff(c);
	if (c->listener)
		ng_db_listen_reset(db);
	fail_list(db, c, list, NG_ECONNLOST, msg);
	ng_db_schedule(db);
}

/* The caller shut the pool down: no reconnect, no handles left. In-flight work must be gone. */
void ng_db_conn_shutdown(struct ng_db_conn *c)
{
	if (c->state == NG_DBC_CLOSED)
		return;
	teardown(c);
	if (c->timer_open) {
		c->timer_open = 0;
		uv_close((uv_handle_t *)&c->timer, on_timer_closed);
	}
	ng_db_conn_set_state(c, NG_DBC_CLOSED);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct ng_db_conn *c = h->data;
	ng_db *db = c->db;

	if (c->state == NG_DBC_CONNECTING) {
		connect_step(c);
		return;
	}
	if (c->state != NG_DBC_READY && c->state != NG_DBC_BUSY)
		return;
	if (status < 0) {
		/*
		 * libuv reports POLLERR (e.g. a reset) as UV_EBADF and stops the handle. Let libpq
		 * read what arrived before it — completed requests are delivered, not failed — and
		 * name the error.
		 */
		for (int i = 0; i < 8 && PQstatus(c->pg) == CONNECTION_OK; i++)
			if (!PQconsumeInput(c->pg))
				break;
		if (ng_db_conn_read(c) < 0)
			return;
		if (PQstatus(c->pg) == CONNECTION_BAD)
			ng_db_conn_lost(c, PQerrorMessage(c->pg));
		else
			ng_db_conn_lost(c, uv_strerror(status));
		return;
	}
	if ((events & UV_WRITABLE) && ng_db_conn_flush(c) < 0)
		return;
	if ((events & UV_READABLE) && !PQconsumeInput(c->pg)) {
		ng_db_conn_lost(c, PQerrorMessage(c->pg));
		return;
	}
	if (ng_db_conn_read(c) < 0)
		return;
	if (c->listener) {
		ng_db_listen_deliver(db, c->pg);
	} else {
		PGnotify *n;
		while ((n = PQnotifies(c->pg)))
			PQfreemem(n);
	}
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		ng_db_conn_lost(c, PQerrorMessage(c->pg));
		return;
	}
	if ((c->flushing || c->unflushed) && ng_db_conn_flush(c) < 0)
		return;
	if (db->queue_head || db->closing)
		ng_db_schedule(db);
}
