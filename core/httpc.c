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
 * ng_httpc_request.
 *
 * Whether a request "went out" (the provider may have acted on it) is learnt from curl's debug
 * callback: CURLINFO_HEADER_OUT is reported after the bytes were written to the socket.
 */
#include "httpc.h"
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
#define MAX_RESPONSE_HEADERS       200

struct sock {
	uv_poll_t poll;
	struct ng_httpc *c;
	curl_socket_t fd;
	int closing;
	struct sock *prev, *next;
};

struct ng_httpc_xfer {
	struct ng_httpc *c;
	CURL *easy;
	struct curl_slist *headers;
	ng_httpc_done_fn *done;
	void *arg;
	char *body;
	size_t body_len, body_cap, max_body;
	int too_large;
	int sent;
	struct ng_httpc_header *hdrs; /* strings malloc'd */
	size_t nhdrs, hdrs_cap;
	int setup_error; /* set: completes from the idle handle with this error */
	uint64_t started_ms;
	char errbuf[CURL_ERROR_SIZE];
	struct ng_httpc_xfer *prev, *next;
};

struct ng_httpc {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	uv_idle_t idle;
	int64_t timeout_ms, connect_timeout_ms;
	size_t max_response_bytes;
	char *user_agent;
	struct ng_httpc_xfer *xfers;    /* in the multi handle */
	struct ng_httpc_xfer *deferred; /* failed at setup, completing on the next turn */
	struct sock *socks;
	struct ng_httpc_stats st;
	int dispatching; /* inside a callback we called: a close must wait until it returns */
	int closing, close_started;
	int open_handles;
	void (*closed)(void *arg);
	void *closed_arg;
};

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

static void xfer_free(struct ng_httpc_xfer *x)
{
	if (x->easy)
		curl_easy_cleanup(x->easy);
	curl_slist_free_all(x->headers);
	for (size_t i = 0; i < x->nhdrs; i++) {
		free((char *)x->hdrs[i].name);
		free((char *)x->hdrs[i].value);
	}
	free(x->hdrs);
	free(x->body);
	free(x);
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

/* The errno value that says best what went wrong; connect errors as the kernel reported them. */
static int map_error(struct ng_httpc_xfer *x, CURLcode rc)
{
	long os_errno = 0;
	switch (rc) {
	case CURLE_OK:
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		curl_easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &os_errno);
		return os_errno > 0 ? -(int)os_errno : -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_WRITE_ERROR:
	case CURLE_FILESIZE_EXCEEDED:
		return x->too_large || rc == CURLE_FILESIZE_EXCEEDED ? -EMSGSIZE : -EIO;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
		return -ECONNRESET;
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_BAD_FUNCTION_ARGUMENT:
		return -EINVAL;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_USE_SSL_FAILED:
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return -EPROTO;
	default:
		return -EIO;
	}
}

/* Calls the request's callback once and frees it. x is in no list and not in the multi handle. */
static void complete(struct ng_httpc *c, struct ng_httpc_xfer *x, CURLcode rc, int error)
{
	struct ng_httpc_response r = {0};
	long status = 0;
	if (x->easy)
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	r.status = (int)status;
	r.curl_code = (int)rc;
	r.error = error ? error : map_error(x, rc);
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
	xfer_free(x);
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

/* ---- one request ---------------------------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	struct ng_httpc_xfer *x = arg;
	size_t len = size * n;
	if (x->body_len + len > x->max_body) {
		x->too_large = 1;
		return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
	}
	if (x->body_len + len + 1 > x->body_cap) {
		size_t cap = x->body_cap ? x->body_cap : 1024;
		while (cap < x->body_len + len + 1)
			cap *= 2;
		x->body = ng_xrealloc(x->body, cap);
		x->body_cap = cap;
	}
	memcpy(x->body + x->body_len, data, len);
	x->body_len += len;
	x->body[x->body_len] = '\0';
	return len;
}

static void headers_clear(struct ng_httpc_xfer *x)
{
	for (size_t i = 0; i < x->nhdrs; i++) {
		free((char *)x->hdrs[i].name);
		free((char *)x->hdrs[i].value);
	}
	x->nhdrs = 0;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
	struct ng_httpc_xfer *x = arg;
	size_t len = size * n, end = len;
	while (end > 0 && (data[end - 1] == '\r' || data[end - 1] == '\n'))
		end--;
	if (end >= 5 && memcmp(data, "HTTP/", 5) == 0) {
		/* A new response (after a 100 Continue, say): only the last one's headers count. */
		headers_clear(x);
		return len;
	}
	const char *colon = memchr(data, ':', end);
	if (!colon || colon == data || x->nhdrs >= MAX_RESPONSE_HEADERS)
		return len;
	const char *v = colon + 1;
	while (v < data + end && (*v == ' ' || *v == '\t'))
		v++;
	if (x->nhdrs == x->hdrs_cap) {
		x->hdrs_cap = x->hdrs_cap ? x->hdrs_cap * 2 : 16;
		x->hdrs = ng_xrealloc(x->hdrs, x->hdrs_cap * sizeof *x->hdrs);
	}
	x->hdrs[x->nhdrs].name = ng_xstrndup(data, (size_t)(colon - data));
	x->hdrs[x->nhdrs].value = ng_xstrndup(v, (size_t)(data + end - v));
	x->nhdrs++;
	return len;
}

static int on_debug(CURL *easy, curl_infotype type, char *data, size_t size, void *arg)
{
	NG_UNUSED(easy);
	NG_UNUSED(data);
	NG_UNUSED(size);
	struct ng_httpc_xfer *x = arg;
	/* TLS handshake bytes (CURLINFO_SSL_DATA_OUT) are not the request. */
	if (type == CURLINFO_HEADER_OUT || type == CURLINFO_DATA_OUT)
		x->sent = 1;
	return 0;
}

static int header_ok(const struct ng_httpc_header *h)
{
	if (!h->name || !h->name[0] || !h->value)
		return 0;
	for (const char *p = h->name; *p; p++)
		if (*p == ':' || *p == '\r' || *p == '\n' || *p == ' ' || *p == '\t')
			return 0;
	for (const char *p = h->value; *p; p++)
		if (*p == '\r' || *p == '\n')
			return 0;
	return 1;
}

static int method_ok(const char *m)
{
	if (!*m)
		return 0;
	for (; *m; m++)
		if (!((*m >= 'A' && *m <= 'Z') || *m == '-'))
			return 0;
	return 1;
}

static int url_ok(const char *url)
{
	return url && (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0);
}

/* Sets the request up on a fresh easy handle; a curl error here is reported on the next turn. */
static CURLcode setup(struct ng_httpc *c, struct ng_httpc_xfer *x, const struct ng_httpc_request *q)
{
	CURL *e = x->easy;
	CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
	do {                                                                                       \
		if (rc == CURLE_OK)                                                                \
			rc = curl_easy_setopt(e, opt, val);                                        \
	} while (0)
	SET(CURLOPT_PRIVATE, (void *)x);
	SET(CURLOPT_URL, q->url);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_ERRORBUFFER, x->errbuf);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, (void *)x);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, (void *)x);
	SET(CURLOPT_DEBUGFUNCTION, on_debug);
	SET(CURLOPT_DEBUGDATA, (void *)x);
	SET(CURLOPT_VERBOSE, 1L); /* only our debug callback sees it */
	SET(CURLOPT_USERAGENT, c->user_agent);
	SET(CURLOPT_TIMEOUT_MS, (long)(q->timeout_ms > 0 ? q->timeout_ms : c->timeout_ms));
	SET(CURLOPT_CONNECTTIMEOUT_MS,
	    (long)(q->connect_timeout_ms > 0 ? q->connect_timeout_ms : c->connect_timeout_ms));
	SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->max_body);
	if (q->username) {
		SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		SET(CURLOPT_USERNAME, q->username);
		SET(CURLOPT_PASSWORD, q->password ? q->password : "");
	}
	if (q->ca_file)
		SET(CURLOPT_CAINFO, q->ca_file);

	const char *method = q->method ? q->method : (q->body ? "POST" : "GET");
	if (strcmp(method, "GET") == 0) {
		SET(CURLOPT_HTTPGET, 1L);
	} else if (strcmp(method, "HEAD") == 0) {
		SET(CURLOPT_NOBODY, 1L);
	} else {
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
		SET(CURLOPT_COPYPOSTFIELDS, q->body ? q->body : "");
		if (strcmp(method, "POST") != 0)
			SET(CURLOPT_CUSTOMREQUEST, method);
	}

	/* No "Expect: 100-continue": it costs a round trip (or a second's wait) for nothing. */
	struct curl_slist *l = curl_slist_append(NULL, "Expect:");
	for (size_t i = 0; l && i < q->nheaders; i++) {
		char *line = q->headers[i].value[0]
		                 ? ng_xasprintf("%s: %s", q->headers[i].name, q->headers[i].value)
		                 : ng_xasprintf("%s;", q->headers[i].name); /* curl's empty value */
		struct curl_slist *n = curl_slist_append(l, line);
		free(line);
		if (!n) {
			curl_slist_free_all(l);
			l = NULL;
		} else
			l = n;
	}
	if (!l && rc == CURLE_OK)
		rc = CURLE_OUT_OF_MEMORY;
	x->headers = l;
	SET(CURLOPT_HTTPHEADER, l);
#undef SET
	return rc;
}

int ng_httpc_request(struct ng_httpc *c, const struct ng_httpc_request *q, ng_httpc_done_fn *done,
                     void *arg)
{
	if (!c || !q || !done || !url_ok(q->url) || (q->body_len && !q->body) ||
	    (q->nheaders && !q->headers))
		return -EINVAL;
	for (size_t i = 0; i < q->nheaders; i++)
		if (!header_ok(&q->headers[i]))
			return -EINVAL;
	if (q->method && !method_ok(q->method))
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
	CURLcode rc = x->easy ? setup(c, x, q) : CURLE_OUT_OF_MEMORY;
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
