/*
 * dispatch_result.c — what became of each claimed message, and writing it down.
 *
 * The plugin's result is classified: sent (provider id); retry at a time (capped exponential
 * backoff with jitter, never sooner than the provider's retry_after_ms; after max_attempts the
 * message fails); failed (permanent; with the suppress flag the address joins the suppression
 * list); ambiguous (the provider may have it: left for reconciliation, never resent blindly).
 * Results queue up and are written together, one statement per batch, on the next loop turn. Every
 * update is fenced by the attempt number and status 'sending', so the late write of a node whose
 * lease ran out (and whose message another node claimed) changes nothing; it is counted as stale.
 * A message holds its lane's slot until its result has committed: that is what bounds the copies a
 * crash can duplicate to the instance's concurrency.
 */
#include "dispatch_int.h"
#include "ng.h"
#include "plugin_host.h"
#include "utf8.h"
#include "wf.h"

#include <stdlib.h>
#include <string.h>

#define WRITE_BATCH 512

static void queue(struct dispatch_msg *m, const char *status, const char *outcome,
                  const char *provider_id, const char *error, int64_t next_at,
                  const char *suppress_reason, int sent)
{
	struct ng_dispatch *d = m->d;
	if (d->nresults == d->results_cap) {
		d->results_cap = d->results_cap ? d->results_cap * 2 : 64;
		d->results = ng_xrealloc(d->results, d->results_cap * sizeof *d->results);
	}
	struct dispatch_result *r = &d->results[d->nresults++];
	*r = (struct dispatch_result){
	    .cid = m->cid,
	    .mid = m->mid,
	    .attempt = m->attempt,
	    .status = status,
	    .outcome = outcome,
	    /* A plugin's text comes from its provider (a relay's reply in whatever bytes the relay
	     * chose, cut anywhere): made UTF-8 here, or the result could not go into the write's
	     * JSON at all. */
	    .provider_id = ng_utf8_dup(provider_id),
	    .error = ng_utf8_dup(error),
	    .next_at = next_at,
	    .suppress_address = suppress_reason && m->recipient ? ng_xstrdup(m->recipient) : NULL,
	    .suppress_reason = suppress_reason ? ng_xstrdup(suppress_reason) : NULL,
	    .channel = ng_xstrdup(m->channel),
	    .lane = m->lane,
	    .sent = sent,
	    .segments = m->segments,
	    .encoding = ng_utf8_dup(m->encoding),
	};
	dispatch_inflight_remove(d, m);
	dispatch_msg_free(m);
	dispatch_results_queued(d);
}

/* attempt 1 waits base, then 2×, 4×… up to the cap; "equal jitter": half fixed, half random. */
static int64_t backoff_ms(const struct ng_dispatch *d, int attempt)
{
	int64_t delay = d->opt.retry_base_ms;
	for (int i = 1; i < attempt && delay < d->opt.retry_max_ms; i++)
		delay *= 2;
	if (delay > d->opt.retry_max_ms)
		delay = d->opt.retry_max_ms;
	return delay / 2 + (int64_t)((double)rand() / ((double)RAND_MAX + 1) * (double)(delay / 2));
}

void dispatch_result_from_send(struct dispatch_msg *m, const struct nudge_send_result *r)
{
	struct ng_dispatch *d = m->d;
	int64_t now = dispatch_now(d);
	const char *reason = r->reason && r->reason[0] ? r->reason : NULL;
	/* ABI 1.1: the host hands a 1.0 plugin's shorter result over with these zeroed. */
	m->segments = r->segments > 0 ? r->segments : 0;
	free(m->encoding);
	m->encoding = r->encoding && r->encoding[0] ? ng_xstrdup(r->encoding) : NULL;
	switch (r->status) {
	case NUDGE_SEND_SENT:
		dispatch_limiter_ok(&m->lane->lim, now);
		ng_debug("dispatch", "message %lld attempt %d sent via %s: %s", (long long)m->mid,
		         m->attempt, m->lane->name, r->provider_id ? r->provider_id : "");
		queue(m, "sent", "sent", r->provider_id, NULL, 0, NULL, 1);
		return;
	case NUDGE_SEND_FAILED: {
		ng_warn("dispatch", "message %lld attempt %d via %s failed: %s%s",
		        (long long)m->mid, m->attempt, m->lane->name,
		        reason ? reason : "permanent failure",
		        r->suppress ? " (address suppressed)" : "");
		queue(m, "failed", "failed", NULL, reason ? reason : "permanent failure", 0,
		      r->suppress ? "hard_bounce" : NULL, 0);
		return;
	}
	case NUDGE_SEND_AMBIGUOUS:
		ng_warn(
		    "dispatch",
		    "message %lld attempt %d via %s is ambiguous (the provider may have it): %s",
		    (long long)m->mid, m->attempt, m->lane->name, reason ? reason : "");
		queue(m, "ambiguous", "ambiguous", NULL, reason ? reason : "outcome unknown", 0,
		      NULL, 0);
		return;
	default: {
		int throttled = r->code == 421 || r->code == 429 || r->retry_after_ms > 0;
		dispatch_limiter_backoff(&m->lane->lim, now, r->retry_after_ms, throttled);
		if (m->attempt >= d->opt.max_attempts) {
			char *why = ng_xasprintf("gave up after %d attempts: %s", m->attempt,
			                         reason ? reason : "temporary failure");
			ng_warn("dispatch", "message %lld via %s: %s", (long long)m->mid,
			        m->lane->name, why);
			queue(m, "failed", "retry", NULL, why, 0, NULL, 0);
			free(why);
			return;
		}
		int64_t delay = backoff_ms(d, m->attempt);
		if (r->retry_after_ms > delay)
			delay = r->retry_after_ms;
		ng_warn("dispatch", "message %lld attempt %d via %s: retry in %lld ms: %s",
		        (long long)m->mid, m->attempt, m->lane->name, (long long)delay,
		        reason ? reason : "temporary failure");
		queue(m, "retry", "retry", NULL, reason ? reason : "temporary failure", now + delay,
		      NULL, 0);
		return;
	}
	}
}

void dispatch_result_not_sent(struct dispatch_msg *m, const char *status, const char *reason)
{
	dispatch_limiter_refund(&m->lane->lim, 1);
	if (strcmp(status, "skipped") == 0)
		ng_info("dispatch", "message %lld skipped: %s", (long long)m->mid, reason);
	else
		ng_warn("dispatch", "message %lld %s: %s", (long long)m->mid, status, reason);
	queue(m, status, strcmp(status, "skipped") == 0 ? "skipped" : "failed", NULL, reason, 0,
	      NULL, 0);
}

void dispatch_result_defer(struct dispatch_msg *m, int64_t until_ms, const char *reason)
{
	dispatch_limiter_refund(&m->lane->lim, 1);
	ng_info("dispatch", "message %lld deferred: %s", (long long)m->mid, reason);
	queue(m, "deferred", "deferred", NULL, reason, until_ms, NULL, 0);
}

void dispatch_result_give_back(struct dispatch_msg *m, const char *reason)
{
	struct ng_dispatch *d = m->d;
	/* A reconcile given back leaves the message as it found it: ambiguous, never resent. */
	const char *st = m->reconcile ? "ambiguous" : "retry";
	dispatch_limiter_refund(&m->lane->lim, 1);
	d->stats.given_back++;
	if (m->sending) {
		/* The plugin still holds m and will complete it (on_sent then only frees it): the
		 * row is queued through a stand-in. */
		dispatch_inflight_remove(d, m);
		m->d = NULL;
		struct dispatch_msg *shadow = ng_xcalloc(1, sizeof *shadow);
		shadow->d = d;
		shadow->lane = m->lane;
		shadow->cid = m->cid;
		shadow->mid = m->mid;
		shadow->attempt = m->attempt;
		shadow->channel = ng_xstrdup(m->channel);
		shadow->reconcile = m->reconcile;
		dispatch_inflight_add(d, shadow);
		queue(shadow, st, st, NULL, reason, dispatch_now(d), NULL, 0);
		return;
	}
	queue(m, st, st, NULL, reason, dispatch_now(d), NULL, 0);
}

/* ---- writing ------------------------------------------------------------------------------ */

struct write {
	struct ng_dispatch *d;
	struct dispatch_result *v;
	size_t n;
};

static void result_free(struct dispatch_result *r)
{
	free(r->provider_id);
	free(r->encoding);
	free(r->error);
	free(r->suppress_address);
	free(r->suppress_reason);
	free(r->channel);
}

/* A message row the write returned. */
struct row_key {
	int64_t mid, cid;
};

static int row_key_cmp(const void *a, const void *b)
{
	const struct row_key *x = a, *y = b;
	if (x->mid != y->mid)
		return x->mid < y->mid ? -1 : 1;
	return x->cid < y->cid ? -1 : x->cid > y->cid;
}

static void on_written(const struct ng_db_result *res, void *arg)
{
	struct write *w = arg;
	struct ng_dispatch *d = w->d;
	d->writes_out--;
	d->busy--;
	if (res->status != 0 && !d->closing) {
		/* Nothing or everything committed; rewriting is safe, the fence makes a second
		 * write of a committed result a no-op. Try again with the next batch. */
		ng_warn("dispatch", "recording %zu result(s) failed, will retry: %s", w->n,
		        res->message);
		for (size_t i = 0; i < w->n; i++) {
			if (d->nresults == d->results_cap) {
				d->results_cap = d->results_cap ? d->results_cap * 2 : 64;
				d->results =
				    ng_xrealloc(d->results, d->results_cap * sizeof *d->results);
			}
			d->results[d->nresults++] = w->v[i];
		}
		free(w->v);
		free(w);
		d->write_paused = 1;
		uv_timer_start(&d->write_retry, dispatch_on_write_retry, 500, 0);
		return;
	}
	if (res->status != 0)
		ng_error("dispatch",
		         "recording %zu result(s) failed during shutdown (%s): their messages are "
		         "retried once their lease runs out",
		         w->n, res->message);
	/* The rows that passed the fence, sorted to be looked up; the others were stale. */
	size_t ok = res->status == 0 ? (size_t)PQntuples(res->res) : 0;
	struct row_key *passed = ng_xmalloc((ok ? ok : 1) * sizeof *passed);
	for (size_t j = 0; j < ok; j++) {
		passed[j].mid = strtoll(PQgetvalue(res->res, (int)j, 0), NULL, 10);
		passed[j].cid = strtoll(PQgetvalue(res->res, (int)j, 1), NULL, 10);
	}
	qsort(passed, ok, sizeof *passed, row_key_cmp);
	for (size_t i = 0; i < w->n; i++) {
		struct dispatch_result *r = &w->v[i];
		const struct row_key want = {r->mid, r->cid};
		int found = ok && bsearch(&want, passed, ok, sizeof *passed, row_key_cmp) != NULL;
		if (res->status == 0 && !found) {
			d->stats.stale++;
			ng_warn(
			    "dispatch",
			    "message %lld attempt %d: result '%s' not recorded, the message is no "
			    "longer ours (lease lost)",
			    (long long)r->mid, r->attempt, r->status);
		} else if (found) {
			if (strcmp(r->status, "sent") == 0)
				d->stats.sent++;
			else if (strcmp(r->status, "retry") == 0)
				d->stats.retried++;
			else if (strcmp(r->status, "failed") == 0)
				d->stats.failed++;
			else if (strcmp(r->status, "ambiguous") == 0)
				d->stats.ambiguous++;
			else if (strcmp(r->status, "skipped") == 0)
				d->stats.skipped++;
			if (r->suppress_reason)
				d->stats.suppressed++;
		}
		dispatch_limiter_release(&r->lane->lim);
		result_free(r);
	}
	free(passed);
	free(w->v);
	free(w);
	dispatch_settle(d);
}

/* ng_dispatch_record (sql/0004, now sql/0019): every result of the batch, fenced; returns the rows
 * updated. */
static const char write_sql[] = "SELECT * FROM ng_dispatch_record($1::jsonb, $2)";

void dispatch_on_write_retry(uv_timer_t *t)
{
	struct ng_dispatch *d = t->data;
	d->write_paused = 0;
	dispatch_results_flush(d);
	dispatch_settle(d);
}

void dispatch_results_flush(struct ng_dispatch *d)
{
	while (d->nresults > 0 && d->writes_out < DISPATCH_WRITES_OUT && !d->write_paused) {
		size_t n = d->nresults < WRITE_BATCH ? d->nresults : WRITE_BATCH;
		struct write *w = ng_xcalloc(1, sizeof *w);
		w->d = d;
		w->n = n;
		w->v = ng_xmalloc(n * sizeof *w->v);
		memcpy(w->v, d->results, n * sizeof *w->v);
		memmove(d->results, d->results + n, (d->nresults - n) * sizeof *d->results);
		d->nresults -= n;
		json_t *arr = json_array();
		for (size_t i = 0; i < n; i++) {
			struct dispatch_result *r = &w->v[i];
			char ts[40];
			json_t *o = json_pack(
			    "{s:I, s:I, s:i, s:s, s:s, s:s?, s:s?, s:s?, s:s?, s:s?}", "cid",
			    (json_int_t)r->cid, "mid", (json_int_t)r->mid, "att", r->attempt,
			    "status", r->status, "outcome", r->outcome, "provider_id",
			    r->provider_id, "error", r->error, "channel", r->channel, "sup_addr",
			    r->suppress_address, "sup_reason", r->suppress_reason);
			if (!o) {
				/* Only text that is not UTF-8 makes json_pack fail, and queue()
				 * made it so. Should that ever change, the result still goes in,
				 * without its text: a result left out would leave the message
				 * "sending" until its lease ran out, and then send it again. */
				ng_error("dispatch",
				         "message %lld attempt %d: result text unusable",
				         (long long)r->mid, r->attempt);
				o = json_pack("{s:I, s:I, s:i, s:s, s:s, s:s, s:s, s:s?, s:s?}",
				              "cid", (json_int_t)r->cid, "mid", (json_int_t)r->mid,
				              "att", r->attempt, "status", r->status, "outcome",
				              r->outcome, "error",
				              "(the result's text could not be stored)", "channel",
				              r->channel, "sup_addr", r->suppress_address,
				              "sup_reason", r->suppress_reason);
			}
			if (r->next_at)
				json_object_set_new(
				    o, "next_at", json_string(ng_wf_ts(r->next_at, ts, sizeof ts)));
			if (r->segments > 0)
				json_object_set_new(o, "segments", json_integer(r->segments));
			if (r->encoding)
				json_object_set_new(o, "encoding", json_string(r->encoding));
			json_array_append_new(arr, o);
		}
		char *body = json_dumps(arr, JSON_COMPACT);
		json_decref(arr);
		char now[40];
		const char *p[2] = {body, ng_wf_ts(dispatch_now(d), now, sizeof now)};
		d->writes_out++;
		d->busy++;
		int rc = ng_db_query(d->opt.db, write_sql, 2, p, on_written, w);
		free(body);
		if (rc) {
			struct ng_db_result r = {
			    .status = rc, .message = ng_strerror(rc), .sqlstate = ""};
			on_written(&r, w);
			return;
		}
	}
}
