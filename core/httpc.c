/*
 * httpc.c — the shared HTTP client (see httpc.h): one curl multi handle on the libuv loop.
 *
 * curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to wake it
 * (CURLMOPT_TIMERFUNCTION). Each socket gets one uv_poll, created the first time curl names the
 * socket and closed when curl says CURL_POLL_REMOVE — which curl does before it closes the fd, so
 * the poll never outlives its descriptor. One uv_timer carries curl's single timeout. After every
 * curl_multi_socket_action the finished transfers are read with curl_multi_info_read and their
 * callbacks run; a request's own record rides in CURLOPT_PRIVATE. A uv_idle delivers, on the next
 * turn, the few errors found while a request is being set up, so no callback ever runs inside
 * ng_httpc_request. Setting up one request and reading its answer is httpc_xfer.c.
 */
#include "httpc_int.h"
#include "ng.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_TIMEOUT_MS         30000
#define DEFAULT_CONNECT_TIMEOUT_MS 10000
#define DEFAULT_MAX_RESPONSE_BYTES (1024 * 1024)
#define DEFAULT_MAX_CONNECTIONS    64

static void start_close(struct ng_httpc *c);

/* ---- lists ---------------------------------------------------------------------------------- */

static void xfer_link(struct ng_httpc_xfer **head, struct ng_httpc_xfer *x)
{
	x->prev = NULL;
	x->next = *head;
	if (*head)
		(*head)->prev = x;
	*head = x;
}

static void xfer_unlink(struct ng_httpc_xfer **head, struct ng_httpc_xfer *x)
{
	if (x->prev)
		x->prev->next = x->next;
	else
		*head = x->next;
	if (x->next)
		x->next->prev = x->prev;
	x->prev = x->next = NULL;
}

/* ---- handles -------------------------------------------------------------------------------- */

static void maybe_free(struct ng_httpc *c)
{
	if (!c->close_started || c->open_handles > 0)
		return;
	void (*closed)(void *) = c->closed;
	void *arg = c->closed_arg;
	free(c->user_agent);
	free(c);
	if (closed)
		closed(arg);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct ng_httpc *c = h->data;
	c->open_handles--;
	maybe_free(c);
}

static void on_sock_closed(uv_handle_t *h)
{
	struct sock *s = h->data;
	struct ng_httpc *c = s->c;
	if (s->prev)
		s->prev->next = s->next;
	else
		c->socks = s->next;
	if (s->next)
		s->next->prev = s->prev;
	free(s);
	c->open_handles--;
	maybe_free(c);
}

static void sock_close(struct sock *s)
{
	if (s->closing)
		return;
	s->closing = 1;
	s->c->st.sockets--;
	uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

/* ---- completion ----------------------------------------------------------------------------- */

/* Calls the request's callback once and frees it. x is in no list and not in the multi handle. */
static void complete(struct ng_httpc *c, struct ng_httpc_xfer *x, CURLcode rc, int error)
{
	struct ng_httpc_response r = {0};
	long status = 0;
	if (x->easy)
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	r.status = (int)status;
	r.curl_code = (int)rc;
	r.error = error ? error : ng_httpc_xfer_error(x, rc);
	r.request_sent = x->sent;
	if (r.error == 0)
		r.error_text = "";
	else if (r.error == -ECANCELED)
		r.error_text = "the request was cancelled";
	else if (r.error == -EMSGSIZE)
		r.error_text = "the response body is larger than the limit";
	else if (x->errbuf[0])
		r.error_text = x->errbuf;
	else if (rc != CURLE_OK)
		r.error_text = curl_easy_strerror(rc);
	else
		r.error_text = ng_strerror(r.error);
	r.headers = x->hdrs;
	r.nheaders = x->nhdrs;
	r.body = x->body ? x->body : "";
	r.body_len = x->body_len;
	r.elapsed_ms = uv_now(c->loop) - x->started_ms;

	if (r.error == 0)
		c->st.responses++;
	else
		c->st.errors++;
	if (r.error == -ETIMEDOUT)
		c->st.timeouts++;
	if (r.error == -ECANCELED)
		c->st.cancelled++;
	c->st.in_flight--;
	c->st.bytes_received += x->body_len;

	c->dispatching++;
	x->done(x->arg, &r);
	c->dispatching--;
	ng_httpc_xfer_free(x);
}

/* After a close was asked for from inside a callback, it starts once the callback has returned. */
static void after_dispatch(struct ng_httpc *c)
{
	if (c->dispatching == 0 && c->closing && !c->close_started)
		start_close(c);
}

static void read_finished(struct ng_httpc *c)
{
	CURLMsg *msg;
	int left;
	c->dispatching++;
	while (c->multi && (msg = curl_multi_info_read(c->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		CURL *easy = msg->easy_handle;
		CURLcode rc = msg->data.result; /* msg is invalid once the handle is removed */
		struct ng_httpc_xfer *x = NULL;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
		curl_multi_remove_handle(c->multi, easy);
		xfer_unlink(&c->xfers, x);
		complete(c, x, rc, 0);
		if (c->closing)
			break; /* the close (after this dispatch) cancels the rest */
	}
	c->dispatching--;
	after_dispatch(c);
}

static void on_idle(uv_idle_t *h)
{
	struct ng_httpc *c = h->data;
	uv_idle_stop(h);
	c->dispatching++;
	while (c->deferred) {
		struct ng_httpc_xfer *x = c->deferred;
		xfer_unlink(&c->deferred, x);
		complete(c, x, CURLE_OK, x->setup_error);
	}
	c->dispatching--;
	after_dispatch(c);
}

/* ---- curl on the loop ----------------------------------------------------------------------- */

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct sock *s = h->data;
	struct ng_httpc *c = s->c;
	int flags = 0;
	if (status < 0)
		flags = CURL_CSELECT_ERR;
	else {
		if (events & UV_READABLE)
			flags |= CURL_CSELECT_IN;
		if (events & UV_WRITABLE)
			flags |= CURL_CSELECT_OUT;
	}
	int running;
	curl_multi_socket_action(c->multi, s->fd, flags, &running);
	read_finished(c);
}

static void on_timeout(uv_timer_t *t)
{
	struct ng_httpc *c = t->data;
	int running;
	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	read_finished(c);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	NG_UNUSED(easy);
	struct ng_httpc *c = userp;
	struct sock *s = socketp;
	if (what == CURL_POLL_REMOVE) {
		if (s) {
			curl_multi_assign(c->multi, fd, NULL);
			sock_close(s); /* stops polling now, before curl closes fd */
		}
		return 0;
	}
	if (!s) {
		s = ng_xcalloc(1, sizeof *s);
		s->c = c;
		s->fd = fd;
		int rc = uv_poll_init_socket(c->loop, &s->poll, fd);
		if (rc) {
			ng_error("httpc", "cannot watch socket %d: %s", (int)fd, uv_strerror(rc));
			free(s);
			return -1;
		}
		s->poll.data = s;
		s->next = c->socks;
		if (c->socks)
			c->socks->prev = s;
		c->socks = s;
		c->open_handles++;
		c->st.sockets++;
		curl_multi_assign(c->multi, fd, s);
	}
	int events = 0;
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		events |= UV_READABLE;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		events |= UV_WRITABLE;
	uv_poll_start(&s->poll, events, on_poll);
	return 0;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
	NG_UNUSED(multi);
	struct ng_httpc *c = userp;
	if (timeout_ms < 0)
		uv_timer_stop(&c->timer);
	else /* 0 means "now": a 1 ms timer, never a socket_action from inside curl */
		uv_timer_start(&c->timer, on_timeout, timeout_ms > 0 ? (uint64_t)timeout_ms : 1, 0);
	return 0;
}

int ng_httpc_request(struct ng_httpc *c, const struct ng_httpc_request *q, ng_httpc_done_fn *done,
                     void *arg)
{
	if (!c || !done || !ng_httpc_request_valid(q))
		return -EINVAL;
	if (c->closing)
		return NG_ECLOSING;

	struct ng_httpc_xfer *x = ng_xcalloc(1, sizeof *x);
	x->c = c;
	x->done = done;
	x->arg = arg;
	x->max_body = q->max_response_bytes ? q->max_response_bytes : c->max_response_bytes;
	x->started_ms = uv_now(c->loop);
	c->st.requests++;
	c->st.in_flight++;
	x->easy = curl_easy_init();
	CURLcode rc = x->easy ? ng_httpc_xfer_setup(c, x, q) : CURLE_OUT_OF_MEMORY;
	CURLMcode mrc = CURLM_OK;
	if (rc == CURLE_OK)
		mrc = curl_multi_add_handle(c->multi, x->easy);
	if (rc != CURLE_OK || mrc != CURLM_OK) {
		x->setup_error =
		    rc == CURLE_OUT_OF_MEMORY || mrc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
		snprintf(x->errbuf, sizeof x->errbuf, "cannot set the request up: %s",
		         rc != CURLE_OK ? curl_easy_strerror(rc) : curl_multi_strerror(mrc));
		xfer_link(&c->deferred, x);
		uv_idle_start(&c->idle, on_idle);
	} else {
		xfer_link(&c->xfers, x);
	}
	if (q->handle)
		*q->handle = x;
	return 0;
}

void ng_httpc_cancel(struct ng_httpc *c, struct ng_httpc_xfer *x)
{
	if (!c || !x)
		return;
	if (x->setup_error)
		xfer_unlink(&c->deferred, x);
	else {
		curl_multi_remove_handle(c->multi, x->easy);
		xfer_unlink(&c->xfers, x);
	}
	complete(c, x, CURLE_OK, -ECANCELED);
	after_dispatch(c);
}

void ng_httpc_stats(const struct ng_httpc *c, struct ng_httpc_stats *out)
{
	*out = c->st;
}

/* ---- open and close ------------------------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int ng_httpc_open(struct ng_httpc **out, uv_loop_t *loop, const struct ng_httpc_options *o)
{
	if (!out || !loop)
		return -EINVAL;
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return -EIO;
	struct ng_httpc_options d = {0};
	if (!o)
		o = &d;
	struct ng_httpc *c = ng_xcalloc(1, sizeof *c);
	c->loop = loop;
	c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
	c->connect_timeout_ms =
	    o->connect_timeout_ms > 0 ? o->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
	c->max_response_bytes =
	    o->max_response_bytes > 0 ? o->max_response_bytes : DEFAULT_MAX_RESPONSE_BYTES;
	c->user_agent = o->user_agent ? ng_xstrdup(o->user_agent) : ng_xstrdup("nudge/" NG_VERSION);
	c->multi = curl_multi_init();
	if (!c->multi) {
		free(c->user_agent);
		free(c);
		return -ENOMEM;
	}
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	curl_multi_setopt(
	    c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
	    (long)(o->max_connections > 0 ? o->max_connections : DEFAULT_MAX_CONNECTIONS));
	if (o->max_host_connections > 0)
		curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
		                  (long)o->max_host_connections);
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	uv_idle_init(loop, &c->idle);
	c->idle.data = c;
	c->open_handles = 2;
	*out = c;
	return 0;
}

static void start_close(struct ng_httpc *c)
{
	c->close_started = 1;
	c->dispatching++;
	while (c->xfers) {
		struct ng_httpc_xfer *x = c->xfers;
		curl_multi_remove_handle(c->multi, x->easy);
		xfer_unlink(&c->xfers, x);
		complete(c, x, CURLE_OK, -ECANCELED);
	}
	while (c->deferred) {
		struct ng_httpc_xfer *x = c->deferred;
		xfer_unlink(&c->deferred, x);
		complete(c, x, CURLE_OK, x->setup_error);
	}
	c->dispatching--;
	/* Closes the kept-alive connections; curl names any socket still watched as it goes. */
	curl_multi_cleanup(c->multi);
	c->multi = NULL;
	for (struct sock *s = c->socks; s; s = s->next)
		sock_close(s);
	uv_close((uv_handle_t *)&c->timer, on_handle_closed);
	uv_close((uv_handle_t *)&c->idle, on_handle_closed);
}

void ng_httpc_close(struct ng_httpc *c, void (*done)(void *arg), void *arg)
{
	if (c->closing)
		return;
	c->closing = 1;
	c->closed = done;
	c->closed_arg = arg;
	if (c->dispatching == 0)
		start_close(c);
}
