/*
 * test_clock.c — the virtual clock fires timers in due order as it advances; the real clock fires on
 * the loop; durations parse.
 */
#include "clock.h"
#include "testlib.h"

#include <errno.h>
#include "ng.h"

static int64_t seen[16];
static int nseen;
static struct ng_clock *vclock;

static void record(struct ng_clock_timer *t)
{
	seen[nseen++] = ng_clock_now_ms(vclock) * 100 + (intptr_t)t->data;
}

static struct ng_clock_timer chained;
static void start_chain(struct ng_clock_timer *t)
{
	record(t);
	/* A timer started from a callback inside the window fires in the same advance. */
	chained.data = (void *)(intptr_t)9;
	ng_clock_timer_start(vclock, &chained, ng_clock_now_ms(vclock) + 5, record);
}

static void closed(void *arg)
{
	*(int *)arg = 1;
}

static void test_virtual_clock_fires_in_order(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	vclock = ng_clock_virtual(&loop, 1000);
	ASSERT_EQ_INT(ng_clock_now_ms(vclock), 1000);
	ASSERT(ng_clock_is_virtual(vclock));
	struct ng_clock_timer a = {.data = (void *)1}, b = {.data = (void *)2},
			      c = {.data = (void *)3}, d = {.data = (void *)4};
	ng_clock_timer_start(vclock, &a, 1300, record);
	ng_clock_timer_start(vclock, &b, 1100, start_chain);
	ng_clock_timer_start(vclock, &c, 1300, record);
	ng_clock_timer_start(vclock, &d, 5000, record);
	ng_clock_timer_stop(vclock, &c);
	ng_clock_timer_start(vclock, &c, 1200, record); /* moved earlier */

	ASSERT_EQ_INT(ng_clock_advance(vclock, 50), 0);
	ASSERT_EQ_INT(ng_clock_now_ms(vclock), 1050);
	ASSERT_EQ_INT(ng_clock_advance(vclock, 300), 4);
	ASSERT_EQ_INT(nseen, 4);
	ASSERT_EQ_INT(seen[0], 1100 * 100 + 2);
	ASSERT_EQ_INT(seen[1], 1105 * 100 + 9);
	ASSERT_EQ_INT(seen[2], 1200 * 100 + 3);
	ASSERT_EQ_INT(seen[3], 1300 * 100 + 1);
	ASSERT_EQ_INT(ng_clock_now_ms(vclock), 1350);

	/* Thirty days pass in no time. */
	ASSERT_EQ_INT(ng_clock_advance(vclock, 30LL * 86400000), 1);
	ASSERT_EQ_INT(seen[4], 5000 * 100 + 4);

	/* A timer already due fires on the next loop turn, not inside start. */
	struct ng_clock_timer e = {.data = (void *)5};
	ng_clock_timer_start(vclock, &e, 0, record);
	ASSERT_EQ_INT(nseen, 5);
	uv_run(&loop, UV_RUN_NOWAIT);
	ASSERT_EQ_INT(nseen, 6);

	int done = 0;
	ng_clock_close(vclock, closed, &done);
	uv_run(&loop, UV_RUN_DEFAULT);
	ASSERT(done);
	ASSERT_EQ_INT(uv_loop_close(&loop), 0);
}

static struct ng_clock *rclock;
static uint64_t fired_at;
static void on_real(struct ng_clock_timer *t)
{
	NG_UNUSED(t);
	fired_at = ng_test_now_ms();
}

static void test_real_clock_fires_on_loop(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	rclock = ng_clock_real(&loop);
	ASSERT(!ng_clock_is_virtual(rclock));
	int64_t now = ng_clock_now_ms(rclock);
	ASSERT_CMP_INT(now, >, 1700000000000LL);
	ASSERT_EQ_INT(ng_clock_advance(rclock, 10), -EINVAL);
	struct ng_clock_timer t = {0};
	uint64_t start = ng_test_now_ms();
	ng_clock_timer_start(rclock, &t, now + 80, on_real);
	uv_run(&loop, UV_RUN_DEFAULT);
	ASSERT_CMP_INT(fired_at - start, >=, 70);
	ASSERT_CMP_INT(fired_at - start, <, 1000);
	int done = 0;
	ng_clock_close(rclock, closed, &done);
	uv_run(&loop, UV_RUN_DEFAULT);
	ASSERT(done);
	ASSERT_EQ_INT(uv_loop_close(&loop), 0);
}

/* clock.speed: an hour of clock time passes in a real second. */
static void test_scaled_clock_runs_faster(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	rclock = ng_clock_scaled(&loop, 3600);
	ASSERT(!ng_clock_is_virtual(rclock));
	ASSERT(ng_clock_speed(rclock) == 3600);
	int64_t now = ng_clock_now_ms(rclock);
	struct ng_clock_timer t = {0};
	uint64_t start = ng_test_now_ms();
	ng_clock_timer_start(rclock, &t, now + 360000, on_real); /* six minutes: 100 real ms */
	uv_run(&loop, UV_RUN_DEFAULT);
	ASSERT_CMP_INT(fired_at - start, >=, 90);
	ASSERT_CMP_INT(fired_at - start, <, 1000);
	ASSERT_CMP_INT(ng_clock_now_ms(rclock) - now, >=, 360000);
	int done = 0;
	ng_clock_close(rclock, closed, &done);
	uv_run(&loop, UV_RUN_DEFAULT);
	ASSERT(done);
	ASSERT_EQ_INT(uv_loop_close(&loop), 0);
}

static void test_parse_duration(void)
{
	int64_t ms = 0;
	ASSERT_EQ_INT(ng_clock_parse_duration("3d", &ms), 0);
	ASSERT_EQ_INT(ms, 3LL * 86400000);
	ASSERT_EQ_INT(ng_clock_parse_duration("90s", &ms), 0);
	ASSERT_EQ_INT(ms, 90000);
	ASSERT_EQ_INT(ng_clock_parse_duration("1.5h", &ms), 0);
	ASSERT_EQ_INT(ms, 5400000);
	ASSERT_EQ_INT(ng_clock_parse_duration("250ms", &ms), 0);
	ASSERT_EQ_INT(ms, 250);
	ASSERT_EQ_INT(ng_clock_parse_duration("45", &ms), 0);
	ASSERT_EQ_INT(ms, 45000);
	ASSERT_EQ_INT(ng_clock_parse_duration("2 w", &ms), 0);
	ASSERT_EQ_INT(ms, 2LL * 604800000);
	ASSERT_EQ_INT(ng_clock_parse_duration("3 fortnights", &ms), -EINVAL);
	ASSERT_EQ_INT(ng_clock_parse_duration("-1d", &ms), -EINVAL);
	ASSERT_EQ_INT(ng_clock_parse_duration("", &ms), -EINVAL);
}

NG_TESTS(NG_TEST(test_virtual_clock_fires_in_order), NG_TEST(test_real_clock_fires_on_loop),
	 NG_TEST(test_scaled_clock_runs_faster), NG_TEST(test_parse_duration))
