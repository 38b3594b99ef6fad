/*
 * senders.h — the sender thread pool: dedicated threads for blocking channel libraries (libesmtp).
 *
 * libuv's shared pool also serves DNS and file work; a slow SMTP relay must never starve those, so
 * blocking sends get threads of their own. A job's work() runs on a sender thread; its done() runs
 * afterwards on the loop thread (woken by uv_async), exactly once.
 */
#ifndef NG_SENDERS_H
#define NG_SENDERS_H

#include <stddef.h>
#include <uv.h>

struct ng_senders;

struct ng_senders_stats {
	size_t threads, queued, running, completed, cancelled;
};

int ng_senders_open(struct ng_senders **out, uv_loop_t *loop, int threads);

/*
 * Queues a job. work(arg, thread_index) runs on a sender thread (thread_index in 0..threads-1, so a
 * plugin can keep one SMTP session per thread); done(arg, status) then runs on the loop with status 0,
 * or NG_ECLOSING if the pool closed before the job started (work was not called).
 * Returns NG_ECLOSING once the pool is closing.
 */
int ng_senders_submit(struct ng_senders *s, void (*work)(void *arg, int thread_index),
		      void (*done)(void *arg, int status), void *arg);

void ng_senders_stats(struct ng_senders *s, struct ng_senders_stats *out);

/*
 * Stops taking jobs, cancels the queued ones (their done gets NG_ECLOSING), lets running ones
 * finish, joins the threads without blocking the loop, then calls closed(arg) and frees the pool.
 */
void ng_senders_close(struct ng_senders *s, void (*closed)(void *arg), void *arg);

#endif
