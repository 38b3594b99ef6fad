/*
 * senders.c — the sender thread pool (see senders.h). Jobs move pending → running → finished; the
 * loop thread drains "finished" in its uv_async callback and calls done() there. Threads exit when
 * the pool closes and the queue is empty; the async callback joins them once all have said so, so
 * the loop never waits in pthread_join for a send still in progress.
 */
#include "senders.h"
#include "ng.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

struct job {
	void (*work)(void *arg, int thread_index);
	void (*done)(void *arg, int status);
	void *arg;
	int status;
	struct job *next;
};

struct job_list {
	struct job *head, *tail;
};

struct ng_senders {
	uv_loop_t *loop;
	uv_async_t async;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t *threads;
	int nthreads;
	int exited;      /* threads that have left their loop (under mu) */
	int closing;     /* no new jobs; threads exit once the queue is empty */
	int joined;
	struct job_list pending, finished;
	size_t running, completed, cancelled;
	void (*closed)(void *arg);
	void *closed_arg;
};

struct thread_arg {
	struct ng_senders *s;
	int index;
};

static void push(struct job_list *l, struct job *j)
{
	j->next = NULL;
	if (l->tail)
		l->tail->next = j;
	else
		l->head = j;
	l->tail = j;
}

static struct job *pop(struct job_list *l)
{
	struct job *j = l->head;
	if (j) {
		l->head = j->next;
		if (!l->head)
			l->tail = NULL;
	}
	return j;
}

static void *sender_main(void *p)
{
	struct thread_arg ta = *(struct thread_arg *)p;
	free(p);
	struct ng_senders *s = ta.s;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (!s->pending.head && !s->closing)
			pthread_cond_wait(&s->cv, &s->mu);
		struct job *j = pop(&s->pending);
		if (!j)
			break; /* closing and nothing queued */
		s->running++;
		pthread_mutex_unlock(&s->mu);
		j->work(j->arg, ta.index);
		pthread_mutex_lock(&s->mu);
		s->running--;
		j->status = 0;
		push(&s->finished, j);
		uv_async_send(&s->async);
	}
	s->exited++;
	pthread_mutex_unlock(&s->mu);
	uv_async_send(&s->async);
	return NULL;
}

static void on_async_closed(uv_handle_t *h)
{
	struct ng_senders *s = h->data;
	void (*closed)(void *) = s->closed;
	void *arg = s->closed_arg;
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s->threads);
	free(s);
	if (closed)
		closed(arg);
}

static void on_async(uv_async_t *h)
{
	struct ng_senders *s = h->data;
	pthread_mutex_lock(&s->mu);
	struct job_list done = s->finished;
	s->finished.head = s->finished.tail = NULL;
	int all_exited = s->closing && s->exited == s->nthreads;
	pthread_mutex_unlock(&s->mu);

	struct job *j;
	while ((j = pop(&done)) != NULL) {
		if (j->status == 0)
			s->completed++;
		j->done(j->arg, j->status);
		free(j);
	}
	if (all_exited && !s->joined) {
		/* Every thread has left its loop: joining returns at once. */
		for (int i = 0; i < s->nthreads; i++)
			pthread_join(s->threads[i], NULL);
		s->joined = 1;
		uv_close((uv_handle_t *)&s->async, on_async_closed);
	}
}

int ng_senders_open(struct ng_senders **out, uv_loop_t *loop, int threads)
{
	if (threads < 1)
		return -EINVAL;
	struct ng_senders *s = ng_xcalloc(1, sizeof *s);
	s->loop = loop;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	int rc = uv_async_init(loop, &s->async, on_async);
	if (rc) {
		free(s);
		return rc;
	}
	s->async.data = s;
	s->threads = ng_xcalloc((size_t)threads, sizeof *s->threads);
	for (int i = 0; i < threads; i++) {
		struct thread_arg *ta = ng_xmalloc(sizeof *ta);
		ta->s = s;
		ta->index = i;
		rc = pthread_create(&s->threads[i], NULL, sender_main, ta);
		if (rc) {
			free(ta);
			/* Close what started; the pool reports the failure. */
			s->nthreads = i;
			ng_senders_close(s, NULL, NULL);
			return -rc;
		}
		s->nthreads = i + 1;
	}
	*out = s;
	return 0;
}

int ng_senders_submit(struct ng_senders *s, void (*work)(void *arg, int thread_index),
		      void (*done)(void *arg, int status), void *arg)
{
	struct job *j = ng_xmalloc(sizeof *j);
	j->work = work;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&s->mu);
	if (s->closing) {
		pthread_mutex_unlock(&s->mu);
		free(j);
		return NG_ECLOSING;
	}
	push(&s->pending, j);
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return 0;
}

void ng_senders_stats(struct ng_senders *s, struct ng_senders_stats *out)
{
	pthread_mutex_lock(&s->mu);
	out->threads = (size_t)s->nthreads;
	out->running = s->running;
	out->queued = 0;
	for (struct job *j = s->pending.head; j; j = j->next)
		out->queued++;
	pthread_mutex_unlock(&s->mu);
	out->completed = s->completed;
	out->cancelled = s->cancelled;
}

void ng_senders_close(struct ng_senders *s, void (*closed)(void *arg), void *arg)
{
	s->closed = closed;
	s->closed_arg = arg;
	pthread_mutex_lock(&s->mu);
	s->closing = 1;
	/* Jobs that never started are handed back cancelled, on the loop like any completion. */
	struct job *j;
	while ((j = pop(&s->pending)) != NULL) {
		j->status = NG_ECLOSING;
		s->cancelled++;
		push(&s->finished, j);
	}
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	uv_async_send(&s->async);
}
