/*
 * retention.c — runs ng_retention_purge() (sql/0006_privacy.sql) every retention.interval_s.
 *
 * With several daemons on one database each purges on its own timer; the deletes are idempotent,
 * so the only cost of that is a few empty statements.
 */
#include "retention.h"
#include "ng.h"

#include <stdio.h>
#include <stdlib.h>

#define FIRST_PURGE_MS 60000

struct ng_retention {
	uv_timer_t timer;
	ng_db *db;
	struct ng_retention_options o;
	int in_flight, closing, timer_closed;
	void (*done)(void *arg);
	void *done_arg;
};

static void maybe_free(struct ng_retention *r)
{
	if (!r->closing || r->in_flight || !r->timer_closed)
		return;
	void (*done)(void *) = r->done;
	void *arg = r->done_arg;
	free(r);
	done(arg);
}

static void on_purged(const struct ng_db_result *res, void *arg)
{
	struct ng_retention *r = arg;
	r->in_flight = 0;
	if (res->status != 0)
		ng_warn("retention", "purge failed, next try in %d s: %s", r->o.interval_s,
		        res->message[0] ? res->message : ng_strerror(res->status));
	else if (res->res && PQntuples(res->res) == 1)
		ng_info("retention",
		        "purged %s (events older than %d days, messages older than %d "
		        "days)",
		        PQgetvalue(res->res, 0, 0), r->o.events_days, r->o.messages_days);
	maybe_free(r);
}

static void on_timer(uv_timer_t *t)
{
	struct ng_retention *r = t->data;
	if (r->in_flight || r->closing)
		return;
	char ev[16], msg[16];
	snprintf(ev, sizeof ev, "%d", r->o.events_days);
	snprintf(msg, sizeof msg, "%d", r->o.messages_days);
	const char *p[2] = {ev, msg};
	if (ng_db_query(r->db, "SELECT ng_retention_purge($1::int, $2::int)", 2, p, on_purged, r) ==
	    0)
		r->in_flight = 1;
}

struct ng_retention *ng_retention_start(uv_loop_t *loop, ng_db *db,
                                        const struct ng_retention_options *o)
{
	if (o->events_days <= 0 && o->messages_days <= 0)
		return NULL;
	struct ng_retention *r = ng_xcalloc(1, sizeof *r);
	r->db = db;
	r->o = *o;
	uv_timer_init(loop, &r->timer);
	r->timer.data = r;
	uint64_t every = (uint64_t)o->interval_s * 1000;
	uv_timer_start(&r->timer, on_timer, FIRST_PURGE_MS < every ? FIRST_PURGE_MS : every, every);
	return r;
}

static void on_timer_closed(uv_handle_t *h)
{
	struct ng_retention *r = h->data;
	r->timer_closed = 1;
	maybe_free(r);
}

void ng_retention_close(struct ng_retention *r, void (*done)(void *arg), void *arg)
{
	r->closing = 1;
	r->done = done;
	r->done_arg = arg;
	uv_close((uv_handle_t *)&r->timer, on_timer_closed);
}
