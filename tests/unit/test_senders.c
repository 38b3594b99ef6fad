/*
 * test_senders.c — the sender thread pool: jobs run off the loop, completions come back on the loop
 * exactly once, a blocking job does not stall the loop, closing cancels what has not started.
 */
#include "ng.h"
#include "senders.h"
#include "testlib.h"

#include <stdatomic.h>
#include <unistd.h>

#define NJOBS 1000

static uv_thread_t loop_thread;
static atomic_int worked;
static int done_calls[NJOBS];
static int done_status[NJOBS];
static int threads_seen[8];

struct job {
	int id;
	int sleep_ms;
};

static void work(void *arg, int thread_index)
{
	struct job *j = arg;
	uv_thread_t self = uv_thread_self();
	if (uv_thread_equal(&self, &loop_thread))
		abort(); /* work must never run on the loop thread */
	if (j->sleep_ms)
		usleep((useconds_t)j->sleep_ms * 1000);
	atomic_fetch_add(&worked, 1);
	if (thread_index >= 0 && thread_index < 8)
		threads_seen[thread_index] = 1;
}

static void done(void *arg, int status)
{
	struct job *j = arg;
	uv_thread_t self = uv_thread_self();
	ASSERT(uv_thread_equal(&self, &loop_thread));
	done_calls[j->id]++;
	done_status[j->id] = status;
}

static void on_closed(void *arg)
{
	*(int *)arg = 1;
}

static void test_jobs_complete_on_loop_once(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	loop_thread = uv_thread_self();
	struct ng_senders *s;
	ASSERT_EQ_INT(ng_senders_open(&s, &loop, 4), 0);
	static struct job jobs[NJOBS];
	for (int i = 0; i < NJOBS; i++) {
		jobs[i].id = i;
		ASSERT_EQ_INT(ng_senders_submit(s, work, done, &jobs[i]), 0);
	}
	while (atomic_load(&worked) < NJOBS)
		uv_run(&loop, UV_RUN_ONCE);
	/* Let the last completions arrive. */
	struct ng_senders_stats st;
	for (int tries = 0; tries < 1000; tries++) {
		ng_senders_stats(s, &st);
		if (st.completed == NJOBS)
			break;
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(1000);
	}
	ASSERT_EQ_INT(st.completed, NJOBS);
	ASSERT_EQ_INT(st.threads, 4);
	for (int i = 0; i < NJOBS; i++) {
		ASSERT_EQ_INT(done_calls[i], 1);
		ASSERT_EQ_INT(done_status[i], 0);
	}
	int distinct = 0;
	for (int i = 0; i < 8; i++)
		distinct += threads_seen[i];
	ASSERT_CMP_INT(distinct, >=, 1);
	int closed = 0;
	ng_senders_close(s, on_closed, &closed);
	uv_run(&loop, UV_RUN_DEFAULT);
	ASSERT(closed);
	for (int i = 0; i < NJOBS; i++)
		ASSERT_EQ_INT(done_calls[i], 1);
	ASSERT_EQ_INT(uv_loop_close(&loop), 0);
}

static uint64_t last_tick, max_lag;
static int ticks;
static void on_tick(uv_timer_t *t)
{
	uint64_t now = ng_test_now_ms();
	if (last_tick && now - last_tick > 10 && now - last_tick - 10 > max_lag)
		max_lag = now - last_tick - 10;
	last_tick = now;
	if (++ticks == 40)
		uv_timer_stop(t);
}

static void test_blocking_job_does_not_stall_loop(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	loop_thread = uv_thread_self();
	struct ng_senders *s;
	ASSERT_EQ_INT(ng_senders_open(&s, &loop, 2), 0);
	static struct job slow[2] = {{.id = 0, .sleep_ms = 300}, {.id = 1, .sleep_ms = 300}};
	ASSERT_EQ_INT(ng_senders_submit(s, work, done, &slow[0]), 0);
	ASSERT_EQ_INT(ng_senders_submit(s, work, done, &slow[1]), 0);
	uv_timer_t tick;
	uv_timer_init(&loop, &tick);
	uv_timer_start(&tick, on_tick, 10, 10);
	while (ticks < 40 || done_calls[0] + done_calls[1] < 2)
		uv_run(&loop, UV_RUN_ONCE);
	ASSERT_CMP_INT(max_lag, <, 50);
	ASSERT_EQ_INT(done_calls[0], 1);
	ASSERT_EQ_INT(done_calls[1], 1);
	int closed = 0;
	ng_senders_close(s, on_closed, &closed);
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	ASSERT(closed);
	ASSERT_EQ_INT(uv_loop_close(&loop), 0);
}

static void test_close_cancels_queued_jobs(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	loop_thread = uv_thread_self();
	struct ng_senders *s;
	ASSERT_EQ_INT(ng_senders_open(&s, &loop, 1), 0);
	static struct job jobs[10];
	jobs[0] = (struct job){.id = 0, .sleep_ms = 200};
	ASSERT_EQ_INT(ng_senders_submit(s, work, done, &jobs[0]), 0);
	usleep(50 * 1000); /* job 0 is running now */
	for (int i = 1; i < 10; i++) {
		jobs[i].id = i;
		ASSERT_EQ_INT(ng_senders_submit(s, work, done, &jobs[i]), 0);
	}
	int closed = 0;
	ng_senders_close(s, on_closed, &closed);
	ASSERT_EQ_INT(ng_senders_submit(s, work, done, &jobs[1]), NG_ECLOSING);
	uv_run(&loop, UV_RUN_DEFAULT);
	ASSERT(closed);
	ASSERT_EQ_INT(done_calls[0], 1);
	ASSERT_EQ_INT(done_status[0], 0);
	for (int i = 1; i < 10; i++) {
		ASSERT_EQ_INT(done_calls[i], 1);
		ASSERT_EQ_INT(done_status[i], NG_ECLOSING);
	}
	ASSERT_EQ_INT(atomic_load(&worked), 1);
	ASSERT_EQ_INT(uv_loop_close(&loop), 0);
}

NG_TESTS(NG_TEST(test_jobs_complete_on_loop_once), NG_TEST(test_blocking_job_does_not_stall_loop),
	 NG_TEST(test_close_cancels_queued_jobs))
