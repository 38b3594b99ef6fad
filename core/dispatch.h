/*
 * dispatch.h — the dispatcher: takes queued messages from the outbox (table messages) and delivers
 * them through the channel plugins (docs/delivery.md).
 *
 * For each plugin instance it claims due messages in batches (FOR UPDATE SKIP LOCKED, a lease, the
 * attempt number bumped), as many as the instance's concurrency limit and token bucket allow. The
 * claim evaluates the policy (ng_delivery_policy in sql/0004: address, suppression, consent); a
 * message the policy refuses is skipped with its reason. The others are rendered from their stored
 * snapshot (core/msgtmpl.h, on the loop thread) and handed to the plugin; each result is written
 * back fenced by the attempt number, so the late write of a dispatcher that lost its lease is
 * rejected. Wake-ups: LISTEN "nudge_messages" and one clock timer for the next due message.
 *
 * Files: dispatch.c (lifecycle, passes, claims, drain), dispatch_reconcile.c (the periodic
 * reconcile of ambiguous messages), dispatch_send.c (one claimed message:
 * policy verdict, render, plugin send), dispatch_result.c (classifying and writing results,
 * backoff, suppressions), dispatch_rate.c (per-instance concurrency and token bucket with provider
 * back-pressure); dispatch_int.h is what they share.
 */
#ifndef NG_DISPATCH_H
#define NG_DISPATCH_H

#include "db.h"
#include "msgdata.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct ng_clock;
struct ng_plugin_host;
struct ng_msgtmpl_set;
struct ng_dispatch;

/* The limits of one plugin instance (keys concurrency, rate, burst of its `channels` entry). */
struct ng_dispatch_limit {
	const char *instance;
	int concurrency; /* sends in flight, results not yet committed; default 16 */
	double rate;     /* messages per second; 0: no limit */
	double burst;    /* bucket size; 0: max(1, rate) */
};

struct ng_dispatch_options {
	uv_loop_t *loop;
	ng_db *db;
	struct ng_clock *clock;
	struct ng_plugin_host *plugins;
	const struct ng_msgtmpl_set *templates; /* may be NULL (the renderer decides) */
	const char *owner;                      /* lease owner; default host:pid:n */
	int batch;                              /* most messages per claim; default 64 */
	int64_t lease_ms;                       /* a claim's lease; default 120000 */
	int64_t poll_ms;                        /* real clock: look for work at least this often */
	int64_t retry_base_ms;                  /* first retry delay; default 60000 */
	int64_t retry_max_ms;                   /* cap of the delay; default 6 h */
	int max_attempts;                       /* then the message fails; default 10 */
	int64_t drain_ms; /* close: sends in flight get this long, then are given back */
	int listen;       /* LISTEN "nudge_messages" */
	/* Real time between reconcile passes over `ambiguous` messages; default 60000; a message is
	 * asked about once it has been ambiguous this long, for at most a day. */
	int64_t reconcile_ms;
	const struct ng_dispatch_limit *limits;
	size_t nlimits;
	/* The render data's `store` object and the secret signing its links (core/msgdata.h). */
	struct ng_msgdata_store store;
};

struct ng_dispatch_stats {
	uint64_t claimed, sent, retried, failed, ambiguous, skipped, suppressed, stale, given_back;
	int in_flight;
};

int ng_dispatch_open(struct ng_dispatch **out, const struct ng_dispatch_options *opt);
/* Starts claiming (LISTEN, first pass). */
void ng_dispatch_start(struct ng_dispatch *d);
/* Starts a pass soon (new work was queued in this process). */
void ng_dispatch_kick(struct ng_dispatch *d);
void ng_dispatch_stats(const struct ng_dispatch *d, struct ng_dispatch_stats *out);
/* Nothing claimed, in flight or being written. */
int ng_dispatch_idle(const struct ng_dispatch *d);

/*
 * Stops claiming, lets sends in flight complete and their results commit (at most drain_ms; then
 * the messages still out are given back as due retries, and their late completions are ignored),
 * closes the handles, frees d and calls done(arg).
 */
void ng_dispatch_close(struct ng_dispatch *d, void (*done)(void *arg), void *arg);

#endif
