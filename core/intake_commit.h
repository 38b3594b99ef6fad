/*
 * intake_commit.h — group commit of normalised events: the events of many concurrent requests go
 * to PostgreSQL as one statement (SELECT ng_intake_accept_batch($1), sql/0003_intake.sql), so one
 * round trip and one commit carry them all, and throughput is bounded by the database, not by
 * round trips or fsyncs per request.
 *
 * Batching adapts to load: while fewer than max_inflight batches are at the database, a submitted
 * request goes out at once (one round trip of latency); otherwise it waits for the next batch,
 * which takes everything queued meanwhile (up to max_batch events).
 *
 * A batch is one transaction. When it fails with a database error, each of its requests is sent
 * again on its own (its own transaction), so one bad event fails only its own request; a request
 * whose events raced with a concurrent identical delivery (SQLSTATE NGIN1), a concurrent creation
 * of the same customer (23505) or a deadlock is retried once more. A lost connection or a timeout
 * is never retried here: the outcome is unknown, the request is answered 503, and the store's
 * redelivery is recognised by its dedupe keys.
 */
#ifndef NG_INTAKE_COMMIT_H
#define NG_INTAKE_COMMIT_H

#include <jansson.h>
#include <stddef.h>
#include <uv.h>

/*
 * The wake-up of the workflow schedulers after committed intake batches, which do not notify
 * themselves (sql/0012). Anything else that commits through ng_intake_accept_batch sends it too.
 */
#define NG_INTAKE_WAKE_SQL "SELECT pg_notify('nudge_workflows', 'inbox')"

struct ng_db;
struct ng_intake_commit;
struct ng_intake_commit_item;

/*
 * The outcome of one request's events. status 0: committed, and results is an array with one
 * object per event ({"status": "accepted", "event_id", "customer_id"} or {"status":
 * "duplicate"}), valid during the call. Otherwise nothing of the request was committed — or, for
 * NG_ECONNLOST, the outcome is unknown — and message says why: NG_EDB (the database refused the
 * events), NG_ECONNLOST, NG_ETIMEDOUT, NG_ECLOSING.
 */
typedef void (*ng_intake_commit_cb)(int status, const json_t *results, const char *message,
                                    void *arg);

struct ng_intake_commit_options {
	int max_inflight; /* batches at the database at once; default 4 */
	int max_batch;    /* events per batch; default 256 */
};

struct ng_intake_commit_stats {
	unsigned long long batches, events, retried, failed;
	int inflight;
	size_t queued;
};

int ng_intake_commit_open(struct ng_intake_commit **out, struct ng_db *db,
                          const struct ng_intake_commit_options *opt);

/* Queues one request's events (a JSON array, not stolen). cb is called exactly once, later, on
 * the loop — unless the item is cancelled first. */
struct ng_intake_commit_item *ng_intake_commit_submit(struct ng_intake_commit *c,
                                                      const json_t *events, ng_intake_commit_cb cb,
                                                      void *arg);

/* The caller no longer waits (its deadline passed): cb will not be called. If the item was not
 * sent yet it never is. */
void ng_intake_commit_cancel(struct ng_intake_commit_item *it);

void ng_intake_commit_stats(const struct ng_intake_commit *c, struct ng_intake_commit_stats *out);

/* Fails everything queued with NG_ECLOSING, waits for the batches at the database, frees c and
 * calls done(arg). */
void ng_intake_commit_close(struct ng_intake_commit *c, void (*done)(void *arg), void *arg);

#endif
