/*
 * dispatch_rate.c — how fast one plugin instance is fed: a concurrency limit (claimed messages
 * whose result has not committed yet, so a crash can duplicate at most that many sends) and a token
 * bucket (`rate` per second, `burst` deep).
 *
 * Provider back-pressure slows the bucket: a retry that carries retry_after_ms pauses the instance
 * until then (capped at five minutes, the message itself waits its full delay), and a throttling
 * reply (SMTP 421, HTTP 429) halves the rate in force — for an instance without a configured rate,
 * half of what it achieved in the last second (at least one a second). Each success raises the rate
 * by 2 % again, back to the configured rate (or, unlimited instances, back to no limit once it is
 * eight times the floor).
 */
#include "dispatch_int.h"

#include <math.h>

#define PAUSE_CAP_MS (5 * 60 * 1000)
#define MIN_RATE     0.2

void dispatch_limiter_init(struct dispatch_limiter *l, const struct ng_dispatch_limit *cfg,
                           int64_t now)
{
	*l = (struct dispatch_limiter){0};
	l->concurrency = cfg && cfg->concurrency > 0 ? cfg->concurrency : 16;
	l->rate = cfg && cfg->rate > 0 ? cfg->rate : 0;
	l->burst = cfg && cfg->burst > 0 ? cfg->burst : (l->rate > 1 ? l->rate : 1);
	l->eff = l->rate;
	l->tokens = l->burst;
	l->last_ms = now;
	l->win_start = now;
}

/* The bucket's depth: the configured burst, or for an instance slowed down from no limit, one
 * second's worth at the rate in force. */
static double depth(const struct dispatch_limiter *l)
{
	if (l->rate > 0)
		return l->burst;
	return l->eff > 1 ? l->eff : 1;
}

static void refill(struct dispatch_limiter *l, int64_t now)
{
	if (now > l->last_ms && l->eff > 0) {
		l->tokens += l->eff * (double)(now - l->last_ms) / 1000.0;
		if (l->tokens > depth(l))
			l->tokens = depth(l);
	}
	if (now > l->last_ms)
		l->last_ms = now;
}

int dispatch_limiter_room(struct dispatch_limiter *l, int64_t now)
{
	if (now < l->paused_until)
		return 0;
	int room = l->concurrency - l->in_use;
	if (room <= 0)
		return 0;
	if (l->eff > 0) {
		refill(l, now);
		int t = (int)floor(l->tokens);
		if (t < room)
			room = t;
	}
	return room > 0 ? room : 0;
}

void dispatch_limiter_take(struct dispatch_limiter *l, int n)
{
	l->in_use += n;
	if (l->eff > 0)
		l->tokens -= n;
}

void dispatch_limiter_refund(struct dispatch_limiter *l, int n)
{
	if (l->eff > 0) {
		l->tokens += n;
		if (l->tokens > depth(l))
			l->tokens = depth(l);
	}
}

void dispatch_limiter_release(struct dispatch_limiter *l)
{
	if (l->in_use > 0)
		l->in_use--;
}

int64_t dispatch_limiter_next_ms(const struct dispatch_limiter *l, int64_t now)
{
	if (now < l->paused_until)
		return l->paused_until;
	if (l->eff <= 0 || l->tokens >= 1)
		return INT64_MAX;
	return now + (int64_t)ceil((1 - l->tokens) * 1000.0 / l->eff);
}

static void window(struct dispatch_limiter *l, int64_t now)
{
	if (now - l->win_start >= 1000) {
		l->last_win_ok = now - l->win_start < 2000 ? l->win_ok : 0;
		l->win_ok = 0;
		l->win_start = now;
	}
}

void dispatch_limiter_ok(struct dispatch_limiter *l, int64_t now)
{
	window(l, now);
	l->win_ok++;
	if (l->eff <= 0)
		return;
	refill(l, now);
	l->eff *= 1.02;
	if (l->rate > 0 && l->eff > l->rate)
		l->eff = l->rate;
	if (l->rate <= 0 && l->eff > 8 * l->floor_)
		l->eff = 0; /* recovered: unlimited again */
}

void dispatch_limiter_backoff(struct dispatch_limiter *l, int64_t now, int64_t retry_after_ms,
                              int throttled)
{
	window(l, now);
	if (retry_after_ms > 0) {
		int64_t until =
		    now + (retry_after_ms < PAUSE_CAP_MS ? retry_after_ms : PAUSE_CAP_MS);
		if (until > l->paused_until)
			l->paused_until = until;
	}
	if (!throttled)
		return;
	refill(l, now);
	if (l->eff > 0) {
		l->eff /= 2;
	} else {
		/* Half of what got through in the last second; at least one a second. */
		double seen = l->last_win_ok > l->win_ok ? l->last_win_ok : l->win_ok;
		l->eff = seen / 2 > 1 ? seen / 2 : 1;
		l->tokens = 0;
		l->last_ms = now;
	}
	if (l->eff < MIN_RATE)
		l->eff = MIN_RATE;
	if (l->rate <= 0)
		l->floor_ = l->eff;
}
