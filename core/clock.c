/*
 * clock.c — real and virtual clocks with one timer mechanism: a due-ordered list of ng_clock_timer.
 * A real clock arms one uv_timer for the earliest entry (a scaled real clock, for demos, runs
 * `speed` times faster from the moment it starts); a virtual clock fires entries as
 * ng_clock_advance moves time. The list is short in practice (the scheduler keeps one timer for the
 * next due instance, not one per instance), so a sorted list beats a heap on simplicity.
 */
#include "clock.h"
#include "ng.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ng_clock {
	uv_loop_t *loop;
	int virtual_;
	int64_t virtual_now;
	double speed;      /* real clocks: workflow ms per real ms (1, or more for demos) */
	int64_t origin_ms; /* real clocks: when the clock started, on both time lines */
	uv_timer_t timer; /* real: the next due entry; virtual: a zero-delay kick for past-due starts */
	struct ng_clock_timer *head;
	void (*closed)(void *arg);
	void *closed_arg;
};

static void arm(struct ng_clock *c);

int64_t ng_clock_now_ms(const struct ng_clock *c)
{
	if (c->virtual_)
		return c->virtual_now;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t real = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	if (c->speed == 1.0)
		return real;
	return c->origin_ms + (int64_t)((double)(real - c->origin_ms) * c->speed);
}

double ng_clock_speed(const struct ng_clock *c)
{
	return c->virtual_ ? 0 : c->speed;
}

int ng_clock_is_virtual(const struct ng_clock *c)
{
	return c->virtual_;
}

static void unlink_timer(struct ng_clock *c, struct ng_clock_timer *t)
{
	for (struct ng_clock_timer **p = &c->head; *p; p = &(*p)->next) {
		if (*p == t) {
			*p = t->next;
			break;
		}
	}
	t->next = NULL;
	t->active = 0;
}

/* Fires every timer due at or before `upto`, earliest first. */
static int fire_due(struct ng_clock *c, int64_t upto)
{
	int fired = 0;
	while (c->head && c->head->due_ms <= upto) {
		struct ng_clock_timer *t = c->head;
		unlink_timer(c, t);
		if (c->virtual_ && t->due_ms > c->virtual_now)
			c->virtual_now = t->due_ms;
		t->cb(t);
		fired++;
	}
	return fired;
}

static void on_uv_timer(uv_timer_t *h)
{
	struct ng_clock *c = h->data;
	fire_due(c, ng_clock_now_ms(c));
	arm(c);
}

static void arm(struct ng_clock *c)
{
	if (!c->head) {
		uv_timer_stop(&c->timer);
		return;
	}
	int64_t delay = c->head->due_ms - ng_clock_now_ms(c);
	if (c->virtual_) {
		/* Only past-due entries fire without an advance. */
		if (delay > 0) {
			uv_timer_stop(&c->timer);
			return;
		}
		delay = 0;
	}
	if (delay > 0 && c->speed != 1.0)
		delay = (int64_t)((double)delay / c->speed) + 1;
	uv_timer_start(&c->timer, on_uv_timer, delay > 0 ? (uint64_t)delay : 0, 0);
}

static struct ng_clock *clock_new(uv_loop_t *loop, int virtual_, int64_t start)
{
	struct ng_clock *c = ng_xcalloc(1, sizeof *c);
	c->loop = loop;
	c->virtual_ = virtual_;
	c->virtual_now = start;
	c->speed = 1.0;
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	return c;
}

struct ng_clock *ng_clock_real(uv_loop_t *loop)
{
	return clock_new(loop, 0, 0);
}

struct ng_clock *ng_clock_scaled(uv_loop_t *loop, double speed)
{
	struct ng_clock *c = clock_new(loop, 0, 0);
	if (speed > 0 && speed != 1.0) {
		c->origin_ms = ng_clock_now_ms(c);
		c->speed = speed;
	}
	return c;
}

struct ng_clock *ng_clock_virtual(uv_loop_t *loop, int64_t start_ms)
{
	return clock_new(loop, 1, start_ms);
}

void ng_clock_timer_start(struct ng_clock *c, struct ng_clock_timer *t, int64_t due_ms,
			  void (*cb)(struct ng_clock_timer *t))
{
	if (t->active)
		unlink_timer(c, t);
	t->due_ms = due_ms;
	t->cb = cb;
	t->active = 1;
	/* Insert after every entry due at the same time or earlier: equal times fire in start order. */
	struct ng_clock_timer **p = &c->head;
	while (*p && (*p)->due_ms <= due_ms)
		p = &(*p)->next;
	t->next = *p;
	*p = t;
	arm(c);
}

void ng_clock_timer_stop(struct ng_clock *c, struct ng_clock_timer *t)
{
	if (!t->active)
		return;
	unlink_timer(c, t);
	arm(c);
}

int ng_clock_advance(struct ng_clock *c, int64_t ms)
{
	if (!c->virtual_ || ms < 0)
		return -EINVAL;
	int64_t target = c->virtual_now + ms;
	int fired = fire_due(c, target);
	c->virtual_now = target;
	arm(c);
	return fired;
}

static void on_closed(uv_handle_t *h)
{
	struct ng_clock *c = h->data;
	void (*closed)(void *) = c->closed;
	void *arg = c->closed_arg;
	free(c);
	if (closed)
		closed(arg);
}

void ng_clock_close(struct ng_clock *c, void (*closed)(void *arg), void *arg)
{
	while (c->head)
		unlink_timer(c, c->head);
	c->closed = closed;
	c->closed_arg = arg;
	uv_close((uv_handle_t *)&c->timer, on_closed);
}

int ng_clock_parse_duration(const char *s, int64_t *out_ms)
{
	while (isspace((unsigned char)*s))
		s++;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || errno || v < 0)
		return -EINVAL;
	while (isspace((unsigned char)*end))
		end++;
	static const struct {
		const char *unit;
		double ms;
	} units[] = {{"ms", 1},	       {"s", 1000},	   {"m", 60000},   {"min", 60000},
		     {"h", 3600000},   {"d", 86400000},	   {"w", 604800000}, {"", 1000}};
	for (size_t i = 0; i < NG_ARRAY_LEN(units); i++) {
		if (strcmp(end, units[i].unit) == 0) {
			double ms = v * units[i].ms;
			if (ms > 9.2e18)
				return -ERANGE;
			*out_ms = (int64_t)(ms + 0.5);
			return 0;
		}
	}
	return -EINVAL;
}
