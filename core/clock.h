/*
 * clock.h — the one source of time. Everything that asks "what time is it?" or "wake me at T" goes
 * through an ng_clock, which is either real (the system clock, timers on the libuv loop) or virtual
 * (time stands still until a test or `nudge simulate` advances it, and timers fire in due order as it
 * does). A 30-day workflow is then tested in milliseconds.
 */
#ifndef NG_CLOCK_H
#define NG_CLOCK_H

#include <stdint.h>
#include <uv.h>

struct ng_clock;

struct ng_clock_timer {
	void *data; /* the owner's */
	/* private */
	int64_t due_ms;
	void (*cb)(struct ng_clock_timer *t);
	struct ng_clock_timer *next;
	int active;
};

/* A real clock: system time, timers on loop. */
struct ng_clock *ng_clock_real(uv_loop_t *loop);
/*
 * A real clock that runs `speed` times faster than the system clock from now on (3600: one real
 * second is an hour). For demos and tests only (`clock.speed`); speed 1 is ng_clock_real.
 */
struct ng_clock *ng_clock_scaled(uv_loop_t *loop, double speed);
/* How many clock ms pass per real ms: 1 for a real clock, 0 for a virtual one. */
double ng_clock_speed(const struct ng_clock *c);
/* A virtual clock that starts at start_ms (milliseconds since the Unix epoch). */
struct ng_clock *ng_clock_virtual(uv_loop_t *loop, int64_t start_ms);
int ng_clock_is_virtual(const struct ng_clock *c);

/* Milliseconds since the Unix epoch. */
int64_t ng_clock_now_ms(const struct ng_clock *c);

/*
 * Calls cb(t) once the clock reaches due_ms (at once, on the next loop turn, if it already has).
 * Restarting an active timer moves it. Callbacks always run on the loop, never inside start.
 */
void ng_clock_timer_start(struct ng_clock *c, struct ng_clock_timer *t, int64_t due_ms,
			  void (*cb)(struct ng_clock_timer *t));
void ng_clock_timer_stop(struct ng_clock *c, struct ng_clock_timer *t);

/*
 * Virtual clocks only: moves time forward by ms, firing every timer that falls due, in due order,
 * with the clock reading each timer's due time while it runs. Timers that callbacks start within
 * the window fire too. Returns the number of timers fired, or -EINVAL on a real clock.
 */
int ng_clock_advance(struct ng_clock *c, int64_t ms);

/* Stops the clock's loop handle; free_cb runs once it is closed and the clock freed. */
void ng_clock_close(struct ng_clock *c, void (*closed)(void *arg), void *arg);

/* Parses "90s", "15m", "3h", "2d", "1w", "500ms" or a bare number of seconds into milliseconds. */
int ng_clock_parse_duration(const char *s, int64_t *out_ms);

#endif
