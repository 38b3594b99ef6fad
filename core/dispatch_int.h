/*
 * dispatch_int.h — what the dispatch*.c files share and nobody else uses: the dispatcher, one
 * instance's lane (limits and claims), one claimed message, and the result queue.
 */
#ifndef NG_DISPATCH_INT_H
#define NG_DISPATCH_INT_H

#include "clock.h"
#include "db.h"
#include "dispatch.h"
#include "msgtmpl.h"
#include "nudge/plugin.h"

#include <jansson.h>

/* dispatch_rate.c: one plugin instance's concurrency limit and token bucket. */
struct dispatch_limiter {
	int concurrency;
	int in_use;           /* claimed messages whose result has not committed */
	double rate;          /* configured, per second; 0: unlimited */
	double burst;         /* bucket size */
	double eff;           /* the rate in force after back-pressure; 0: unlimited */
	double tokens;        /* available now (when limited) */
	int64_t last_ms;      /* last refill */
	int64_t paused_until; /* the provider asked us to wait */
	int64_t win_start;    /* successes in the current second, to measure an unlimited rate */
	int win_ok, last_win_ok;
	double floor_; /* the rate after the last slow-down (unlimited instances) */
};

void dispatch_limiter_init(struct dispatch_limiter *l, const struct ng_dispatch_limit *cfg,
                           int64_t now);
/* How many messages may be claimed now (concurrency left, tokens, pause). */
int dispatch_limiter_room(struct dispatch_limiter *l, int64_t now);
/* n were claimed: they hold slots and tokens. */
void dispatch_limiter_take(struct dispatch_limiter *l, int n);
/* n of the claimed were not sent (skipped, given back): their tokens come back. */
void dispatch_limiter_refund(struct dispatch_limiter *l, int n);
/* A claimed message's result committed: its slot is free. */
void dispatch_limiter_release(struct dispatch_limiter *l);
/* When a token (or the end of a pause) is next available; INT64_MAX when not limited. */
int64_t dispatch_limiter_next_ms(const struct dispatch_limiter *l, int64_t now);
/* Provider feedback: a sent message, or a retry (throttled: code 421/429 or retry_after_ms). */
void dispatch_limiter_ok(struct dispatch_limiter *l, int64_t now);
void dispatch_limiter_backoff(struct dispatch_limiter *l, int64_t now, int64_t retry_after_ms,
                              int throttled);

struct ng_plugin;

/* One plugin instance as the dispatcher drives it. */
struct dispatch_lane {
	struct ng_dispatch *d;
	struct ng_plugin *plugin;
	const char *name, *channel;
	int is_default; /* the first instance of its channel: takes messages naming no instance */
	struct dispatch_limiter lim;
	int claiming; /* claims in flight */
	int more;     /* the last claim got all it asked for: more may be due */
};

/* One claimed message, from the claim to its committed result. */
struct dispatch_msg {
	struct ng_dispatch *d; /* NULL once orphaned by a drain that gave the message back */
	struct dispatch_lane *lane;
	int64_t cid, mid;
	int attempt;
	int purpose; /* NUDGE_PURPOSE_* */
	char *channel, *template_, *recipient, *key, *unsub_url;
	json_t *data;     /* the render data object (snapshot + customer, store, message) */
	json_t *customer; /* the customer row */
	struct ng_rendered_message *rendered;
	struct nudge_message msg;
	int sending;                      /* handed to the plugin, no completion yet */
	int reconcile;                    /* asked with ng_plugin_reconcile, not sent */
	int segments;                     /* what the provider said it split it into (SMS) */
	char *encoding;                   /* "GSM-7", "UCS-2"; NULL: not said */
	struct dispatch_msg *prev, *next; /* the dispatcher's in-flight list */
};

/* One result waiting to be written. */
struct dispatch_result {
	int64_t cid, mid;
	int attempt;
	const char *status;  /* messages.status: sent, retry, failed, ambiguous, skipped */
	const char *outcome; /* message_attempts.outcome */
	char *provider_id, *error;
	int64_t next_at; /* retry: when; 0 otherwise */
	char *suppress_address, *suppress_reason, *channel;
	struct dispatch_lane *lane; /* its slot is released when the write commits */
	int sent;
	int segments;   /* 0: not said */
	char *encoding; /* NULL: not said */
};

struct ng_dispatch {
	struct ng_dispatch_options opt;
	char *owner;
	struct dispatch_lane *lanes;
	size_t nlanes;
	struct ng_clock_timer timer;
	uv_idle_t kick_idle;
	uv_timer_t drain_timer;
	uv_timer_t write_retry; /* a failed result write is tried again after a pause */
	int write_paused;
	int pass_wanted, pass_running, claims_out, busy, started, listening, closing;
	int64_t next_due;
	struct dispatch_msg *inflight; /* claimed, result not yet queued */
	int ninflight;
	/* Results waiting for a write, and the writes in flight (at most DISPATCH_WRITES_OUT). */
	struct dispatch_result *results;
	size_t nresults, results_cap;
	int writes_out;
	struct ng_dispatch_stats stats;
	uv_timer_t reconcile_timer; /* dispatch_reconcile.c: the periodic pass over ambiguous */
	int reconciling;            /* its claims in flight */
	void (*closed)(void *arg);
	void *closed_arg;
	int handles_open;
};

/*
 * One result write in flight at a time: the results that complete while it runs wait and go out
 * together in the next (group commit). With four side by side each carried a quarter as many rows
 * and PostgreSQL paid a statement and a commit for each: at 7,000 messages/s the dispatcher used
 * 10 µs more of PostgreSQL's CPU per message (bench_smtp.sh).
 */
#define DISPATCH_WRITES_OUT 1

int64_t dispatch_now(const struct ng_dispatch *d);

/* dispatch_send.c: one claimed row (res, row i) → skipped, or rendered and handed to the plugin. */
void dispatch_send_claimed(struct dispatch_lane *lane, PGresult *res, int i, int reconcile);
void dispatch_msg_free(struct dispatch_msg *m);

/* dispatch_reconcile.c: messages left ambiguous are asked about (ng_plugin_reconcile) every
 * reconcile_ms by instances that can; the others stay for an operator. */
void dispatch_reconcile_init(struct ng_dispatch *d);
void dispatch_reconcile_start(struct ng_dispatch *d);
void dispatch_reconcile_stop(struct ng_dispatch *d);

/* dispatch_result.c */
/* The plugin's answer for m: classify, feed the limiter, queue the write, free m. */
void dispatch_result_from_send(struct dispatch_msg *m, const struct nudge_send_result *r);
/* m is not sent: status skipped (policy) or failed (cannot render), with the reason. */
void dispatch_result_not_sent(struct dispatch_msg *m, const char *status, const char *reason);
/* m goes back to the queue, due now (drain): queued as a retry that does not count. */
/* Held back by the policy (quiet hours, a frequency cap) until until_ms; the reason is recorded. */
void dispatch_result_defer(struct dispatch_msg *m, int64_t until_ms, const char *reason);
void dispatch_result_give_back(struct dispatch_msg *m, const char *reason);
/* Writes queued results now (one statement for the lot). */
void dispatch_results_flush(struct ng_dispatch *d);
void dispatch_on_write_retry(uv_timer_t *t);

/* dispatch.c: a result was queued (write it soon); a write finished (slots are free). */
void dispatch_results_queued(struct ng_dispatch *d);
void dispatch_settle(struct ng_dispatch *d);
void dispatch_inflight_add(struct ng_dispatch *d, struct dispatch_msg *m);
void dispatch_inflight_remove(struct ng_dispatch *d, struct dispatch_msg *m);

#endif
