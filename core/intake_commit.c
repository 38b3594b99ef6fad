/*
 * intake_commit.c — group commit of normalised events (intake_commit.h): the queue of requests,
 * the batches at the database, and the one-by-one retry after a failed batch.
 */
#include "intake_commit.h"
#include "db.h"
#include "json_parse.h"
#include "ng.h"

#include <stdlib.h>
#include <string.h>

#define BATCH_SQL "SELECT ng_intake_accept_batch($1::jsonb)"

struct ng_intake_commit_item {
	struct ng_intake_commit *c;
	char *text; /* the request's events as JSON, without the outer brackets */
	size_t len;
	size_t nevents;
	int tries;     /* database attempts so far */
	int cancelled; /* the caller stopped waiting */
	ng_intake_commit_cb cb;
	void *arg;
	struct ng_intake_commit_item *next;
};

struct batch {
	struct ng_intake_commit *c;
	struct ng_intake_commit_item *items; /* in submission order */
	size_t nitems;
	char *sql_arg;
};

struct ng_intake_commit {
	struct ng_db *db;
	struct ng_intake_commit_options opt;
	struct ng_intake_commit_item *head, *tail; /* queued, not yet sent */
	size_t queued;
	int inflight;
	int closing;
	int pumping;                  /* pump() is on the stack: c must outlive it */
	int notifying, notify_wanted; /* the coalesced wake-up of the workflow schedulers */
	unsigned long long batches, events, retried, failed;
	void (*closed)(void *arg);
	void *closed_arg;
};

int ng_intake_commit_open(struct ng_intake_commit **out, struct ng_db *db,
                          const struct ng_intake_commit_options *opt)
{
	struct ng_intake_commit *c = ng_xcalloc(1, sizeof *c);
	c->db = db;
	if (opt)
		c->opt = *opt;
	if (c->opt.max_inflight <= 0)
		c->opt.max_inflight = 4;
	if (c->opt.max_batch <= 0)
		c->opt.max_batch = 256;
	*out = c;
	return 0;
}

static void item_free(struct ng_intake_commit_item *it)
{
	free(it->text);
	free(it);
}

static void maybe_closed(struct ng_intake_commit *c)
{
	if (!c->closing || c->inflight > 0 || c->head || c->pumping || c->notifying)
		return;
	void (*done)(void *) = c->closed;
	void *arg = c->closed_arg;
	free(c);
	if (done)
		done(arg);
}

/* Calls the item's callback (unless cancelled) and frees it. */
static void finish(struct ng_intake_commit_item *it, int status, const json_t *results,
                   const char *message)
{
	if (status != 0)
		it->c->failed++;
	if (!it->cancelled)
		it->cb(status, results, message, it->arg);
	item_free(it);
}

/* A database error worth one more attempt of the request on its own: a concurrent identical
 * delivery (NGIN1), a concurrent creation of the same customer (23505), a deadlock or a
 * serialisation failure. */
static int retryable(const char *sqlstate)
{
	return strcmp(sqlstate, "NGIN1") == 0 || strcmp(sqlstate, "23505") == 0 ||
	       strcmp(sqlstate, "40P01") == 0 || strcmp(sqlstate, "40001") == 0;
}

/* The database itself went away (connection exception, shutdown, out of resources): answer
 * 503, do not retry now. */
static int gone(const char *sqlstate)
{
	return strncmp(sqlstate, "08", 2) == 0 || strncmp(sqlstate, "57", 2) == 0 ||
	       strncmp(sqlstate, "53", 2) == 0 || strncmp(sqlstate, "58", 2) == 0;
}

static void send_batch(struct ng_intake_commit *c, struct ng_intake_commit_item *items,
                       size_t nitems);

/*
 * The batches do not notify the workflow schedulers themselves (sql/0012: a NOTIFY inside a
 * transaction serialises commits), so this does, after they committed: one notification at a
 * time, and one more when batches committed while it was on its way. Losing one (a crash right
 * after a commit) delays the events only until a scheduler's next poll; they are in the inbox.
 */
static void notify_send(struct ng_intake_commit *c);

static void on_notified(const struct ng_db_result *r, void *arg)
{
	struct ng_intake_commit *c = arg;
	NG_UNUSED(r);
	c->notifying = 0;
	if (c->notify_wanted && !c->closing)
		notify_send(c);
	maybe_closed(c);
}

static void notify_send(struct ng_intake_commit *c)
{
	c->notify_wanted = 0;
	c->notifying = 1;
	if (ng_db_query(c->db, NG_INTAKE_WAKE_SQL, 0, NULL, on_notified, c) != 0)
		c->notifying = 0;
}

static void notify_committed(struct ng_intake_commit *c)
{
	if (c->notifying)
		c->notify_wanted = 1;
	else
		notify_send(c);
}

static void pump(struct ng_intake_commit *c)
{
	c->pumping++;
	while (c->head && c->inflight < c->opt.max_inflight) {
		struct ng_intake_commit_item *first = c->head, *last = first;
		size_t n = 1, events = first->nevents;
		while (last->next && events + last->next->nevents <= (size_t)c->opt.max_batch) {
			last = last->next;
			events += last->nevents;
			n++;
		}
		c->head = last->next;
		if (!c->head)
			c->tail = NULL;
		last->next = NULL;
		c->queued -= n;
		send_batch(c, first, n);
	}
	c->pumping--;
	maybe_closed(c);
}

/* Sends a request on its own again after its batch failed. */
static void resend_alone(struct ng_intake_commit_item *it)
{
	it->c->retried++;
	it->next = NULL;
	send_batch(it->c, it, 1);
}

static void on_batch(const struct ng_db_result *r, void *arg)
{
	struct batch *b = arg;
	struct ng_intake_commit *c = b->c;
	c->inflight--;
	c->pumping++;
	struct ng_intake_commit_item *it = b->items, *next;
	int ok = r->status == 0 && r->res && PQresultStatus(r->res) == PGRES_TUPLES_OK;
	size_t row = 0, rows = ok ? (size_t)PQntuples(r->res) : 0;
	size_t want = 0;
	for (struct ng_intake_commit_item *x = b->items; x; x = x->next)
		want += x->nevents;
	if (ok && rows != want) {
		ng_error("intake", "a batch of %zu events came back with %zu results", want, rows);
		ok = 0;
	}
	if (ok && rows > 0)
		notify_committed(c);
	for (; it; it = next) {
		next = it->next;
		if (ok) {
			json_t *res = json_array();
			for (size_t i = 0; i < it->nevents; i++, row++) {
				json_t *one =
				    ng_json_parse_str(PQgetvalue(r->res, (int)row, 0), 0, NULL);
				json_array_append_new(res, one ? one : json_null());
			}
			finish(it, 0, res, "");
			json_decref(res);
			continue;
		}
		int db_error = r->status == NG_EDB && !gone(r->sqlstate);
		if (db_error && !c->closing && !it->cancelled &&
		    (b->nitems > 1 || (it->tries < 2 && retryable(r->sqlstate)))) {
			resend_alone(it);
			continue;
		}
		int status = r->status ? r->status : NG_EDB;
		if (status == NG_EDB && gone(r->sqlstate))
			status = NG_ECONNLOST;
		finish(it, status, NULL,
		       r->message && *r->message ? r->message : ng_strerror(status));
	}
	free(b->sql_arg);
	free(b);
	pump(c);
	c->pumping--;
	maybe_closed(c);
}

static void send_batch(struct ng_intake_commit *c, struct ng_intake_commit_item *items,
                       size_t nitems)
{
	size_t len = 2, events = 0;
	for (struct ng_intake_commit_item *it = items; it; it = it->next) {
		len += it->len + 1;
		events += it->nevents;
		it->tries++;
	}
	struct batch *b = ng_xcalloc(1, sizeof *b);
	b->c = c;
	b->items = items;
	b->nitems = nitems;
	b->sql_arg = ng_xmalloc(len + 1);
	char *p = b->sql_arg;
	*p++ = '[';
	for (struct ng_intake_commit_item *it = items; it; it = it->next) {
		if (p > b->sql_arg + 1 && it->len)
			*p++ = ',';
		memcpy(p, it->text, it->len);
		p += it->len;
	}
	*p++ = ']';
	*p = '\0';
	c->inflight++;
	c->batches++;
	c->events += events;
	const char *params[1] = {b->sql_arg};
	int rc = ng_db_query(c->db, BATCH_SQL, 1, params, on_batch, b);
	if (rc) {
		struct ng_db_result r = {.status = rc, .message = ng_strerror(rc), .sqlstate = ""};
		/* Never from inside the submitter's call chain in a way that matters: the items'
		 * callbacks only answer HTTP requests. */
		on_batch(&r, b);
	}
}

struct ng_intake_commit_item *ng_intake_commit_submit(struct ng_intake_commit *c,
                                                      const json_t *events, ng_intake_commit_cb cb,
                                                      void *arg)
{
	struct ng_intake_commit_item *it = ng_xcalloc(1, sizeof *it);
	it->c = c;
	it->cb = cb;
	it->arg = arg;
	it->nevents = json_array_size(events);
	char *text = json_dumps(events, JSON_COMPACT);
	size_t n = strlen(text);
	/* Strip the brackets: batches splice requests' arrays together. */
	it->len = n >= 2 ? n - 2 : 0;
	it->text = ng_xstrndup(text + 1, it->len);
	free(text);
	if (c->closing) {
		it->cancelled = 1; /* reported through the return value only */
		item_free(it);
		return NULL;
	}
	if (c->tail)
		c->tail->next = it;
	else
		c->head = it;
	c->tail = it;
	c->queued++;
	pump(c);
	return it;
}

void ng_intake_commit_cancel(struct ng_intake_commit_item *it)
{
	struct ng_intake_commit *c = it->c;
	it->cancelled = 1;
	/* Still queued: take it out, so it is never sent. */
	struct ng_intake_commit_item *prev = NULL;
	for (struct ng_intake_commit_item *x = c->head; x; prev = x, x = x->next) {
		if (x != it)
			continue;
		if (prev)
			prev->next = x->next;
		else
			c->head = x->next;
		if (c->tail == x)
			c->tail = prev;
		c->queued--;
		item_free(x);
		return;
	}
}

void ng_intake_commit_stats(const struct ng_intake_commit *c, struct ng_intake_commit_stats *out)
{
	out->batches = c->batches;
	out->events = c->events;
	out->retried = c->retried;
	out->failed = c->failed;
	out->inflight = c->inflight;
	out->queued = c->queued;
}

void ng_intake_commit_close(struct ng_intake_commit *c, void (*done)(void *arg), void *arg)
{
	c->closing = 1;
	c->closed = done;
	c->closed_arg = arg;
	while (c->head) {
		struct ng_intake_commit_item *it = c->head;
		c->head = it->next;
		c->queued--;
		finish(it, NG_ECLOSING, NULL, "nudge is shutting down");
	}
	c->tail = NULL;
	maybe_closed(c);
}
