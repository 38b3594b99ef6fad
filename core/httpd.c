/*
 * httpd.c — the HTTP/1.1 server: listener, connections, parsing with libhttp-parser, limits,
 * deadlines, routing, responses and the graceful close (see httpd.h).
 *
 * A connection reads until a request is complete, then pauses the parser and stops reading while
 * the handler works; the response's write completion resumes it. So at most one request per
 * connection is being handled, pipelined requests wait their turn in the unparsed buffer, and a
 * handler that answers after a database commit needs no flow control of its own.
 */
#include "httpd_int.h"
#include "ng.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct route {
	char method[16];
	char *path;
	int prefix;
	ng_httpd_handler handler;
	void *arg;
	struct route *next;
};

struct httpd_conn {
	struct ng_httpd *srv;
	uv_tcp_t tcp;
	uv_timer_t timer;
	http_parser parser;
	struct ng_httpd_req *req; /* being parsed, or being handled */
	int handling;		  /* the handler owns req */
	int closing;
	int keep_alive;
	int headers_done;
	int last_was_value;
	size_t header_bytes;
	int content_length_seen;
	int refuse_status; /* set by a parser callback that refuses the request */
	const char *refuse_why;
	char *pending; /* bytes read but not parsed yet (the next pipelined request) */
	size_t pending_len;
	char remote[64];
	struct httpd_conn *prev, *next;
};

struct ng_httpd {
	uv_loop_t *loop;
	struct ng_httpd_options opt;
	uv_tcp_t listener;
	int listening;
	uv_timer_t drain_timer;
	struct route *routes;
	struct httpd_conn *conns;
	struct ng_httpd_req *handling; /* requests whose handler has not answered */
	struct ng_httpd_stats stats;
	int closing;
	int handles_open; /* listener + drain timer, closed asynchronously */
	ng_httpd_observer observe;
	void *observe_arg;
	void (*closed)(void *arg);
	void *closed_arg;
};

static http_parser_settings settings;

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Entity";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return status < 400 ? "OK" : status < 500 ? "Client Error" : "Server Error";
	}
}

static void maybe_finish_close(struct ng_httpd *s);
static void conn_close(struct httpd_conn *c);
static void conn_resume(struct httpd_conn *c);

/* ---- writing ---------------------------------------------------------------------------------- */

struct write_req {
	uv_write_t w;
	struct httpd_conn *conn;
	int close_after;
	char *buf;
};

static void on_written(uv_write_t *w, int status)
{
	struct write_req *wr = (struct write_req *)w;
	struct httpd_conn *c = wr->conn;
	free(wr->buf);
	int close_after = wr->close_after;
	free(wr);
	if (c->closing)
		return;
	if (status < 0 || close_after || c->srv->closing) {
		conn_close(c);
		return;
	}
	conn_resume(c);
}

/* Sends a complete response on c. */
static void conn_send(struct httpd_conn *c, int status, const char *extra_headers,
		      size_t extra_len, const char *ctype, const char *body, size_t len,
		      int close_after)
{
	if (!c->keep_alive || c->srv->closing)
		close_after = 1;
	char date[64];
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	char head[512];
	int n = snprintf(head, sizeof head,
			 "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Length: %zu\r\n%s%s%s%s",
			 status, reason(status), date, len, ctype ? "Content-Type: " : "",
			 ctype ? ctype : "", ctype ? "\r\n" : "",
			 close_after ? "Connection: close\r\n" : "");
	size_t total = (size_t)n + extra_len + 2 + len;
	struct write_req *wr = ng_xcalloc(1, sizeof *wr);
	wr->buf = ng_xmalloc(total);
	memcpy(wr->buf, head, (size_t)n);
	if (extra_len)
		memcpy(wr->buf + n, extra_headers, extra_len);
	memcpy(wr->buf + (size_t)n + extra_len, "\r\n", 2);
	if (len)
		memcpy(wr->buf + (size_t)n + extra_len + 2, body, len);
	wr->conn = c;
	wr->close_after = close_after;
	struct ng_httpd_stats *st = &c->srv->stats;
	if (status < 300)
		st->responses_2xx++;
	else if (status < 400)
		st->responses_3xx++;
	else if (status < 500)
		st->responses_4xx++;
	else
		st->responses_5xx++;
	uv_buf_t b = uv_buf_init(wr->buf, (unsigned)total);
	uv_timer_stop(&c->timer);
	if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
		free(wr->buf);
		free(wr);
		conn_close(c);
	}
}

/* A request the server refuses itself: answer and close. */
static void conn_refuse(struct httpd_conn *c, int status, const char *why)
{
	uv_read_stop((uv_stream_t *)&c->tcp);
	httpd_req_free(c->req);
	c->req = NULL;
	c->srv->stats.requests++;
	conn_send(c, status, NULL, 0, "text/plain; charset=utf-8", why, strlen(why), 1);
}

/* ---- connections ------------------------------------------------------------------------------ */

static void on_conn_closed(uv_handle_t *h)
{
	struct httpd_conn *c = h->data;
	if (h == (uv_handle_t *)&c->tcp) {
		uv_close((uv_handle_t *)&c->timer, on_conn_closed);
		return;
	}
	struct ng_httpd *s = c->srv;
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->stats.connections_open--;
	free(c->pending);
	free(c);
	maybe_finish_close(s);
}

static void conn_close(struct httpd_conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	if (c->req) {
		if (c->handling)
			c->req->conn = NULL; /* the handler still owns it; its answer is dropped */
		else
			httpd_req_free(c->req);
		c->req = NULL;
	}
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_deadline(uv_timer_t *t)
{
	struct httpd_conn *c = t->data;
	if (c->req && !c->handling) {
		conn_refuse(c, 408, "request not received in time\n");
		return;
	}
	conn_close(c);
}

static void arm(struct httpd_conn *c, uint64_t ms)
{
	uv_timer_start(&c->timer, on_deadline, ms, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	NG_UNUSED(h);
	NG_UNUSED(suggested);
	buf->base = ng_xmalloc(16384);
	buf->len = 16384;
}

/* Parses data; stops at the end of a request (the parser pauses) and keeps the rest for later. */
static void conn_parse(struct httpd_conn *c, const char *data, size_t len)
{
	size_t used = http_parser_execute(&c->parser, &settings, data, len);
	if (c->closing)
		return;
	enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
	if (e == HPE_PAUSED) {
		if (used < len) {
			char *rest = ng_xmalloc(len - used);
			memcpy(rest, data + used, len - used);
			free(c->pending);
			c->pending = rest;
			c->pending_len = len - used;
		}
		return;
	}
	if (c->refuse_status) {
		conn_refuse(c, c->refuse_status, c->refuse_why);
		return;
	}
	if (e != HPE_OK) {
		char why[160];
		if (e == HPE_UNEXPECTED_CONTENT_LENGTH)
			snprintf(why, sizeof why,
				 "ambiguous request: Content-Length with Transfer-Encoding, or "
				 "repeated\n");
		else
			snprintf(why, sizeof why, "malformed request: %s\n",
				 http_errno_description(e));
		conn_refuse(c, 400, why);
	}
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct httpd_conn *c = st->data;
	if (n < 0) {
		free(buf->base);
		conn_close(c);
		return;
	}
	if (n > 0)
		conn_parse(c, buf->base, (size_t)n);
	free(buf->base);
}

/* After a response: parse what was already read, then read more. */
static void conn_resume(struct httpd_conn *c)
{
	httpd_req_free(c->req);
	c->req = NULL;
	c->handling = 0;
	http_parser_pause(&c->parser, 0);
	arm(c, c->srv->opt.idle_timeout_ms);
	if (c->pending) {
		char *p = c->pending;
		size_t len = c->pending_len;
		c->pending = NULL;
		c->pending_len = 0;
		conn_parse(c, p, len);
		free(p);
		if (c->closing || c->handling)
			return;
	}
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_connection(uv_stream_t *listener, int status)
{
	struct ng_httpd *s = listener->data;
	if (status < 0)
		return;
	struct httpd_conn *c = ng_xcalloc(1, sizeof *c);
	c->srv = s;
	uv_tcp_init(s->loop, &c->tcp);
	uv_timer_init(s->loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->stats.connections_open++;
	if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
		conn_close(c);
		return;
	}
	s->stats.connections_total++;
	if ((int)s->stats.connections_open > s->opt.max_connections || s->closing) {
		s->stats.connections_rejected++;
		conn_close(c);
		return;
	}
	struct sockaddr_storage sa;
	int salen = sizeof sa;
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &salen) == 0) {
		if (sa.ss_family == AF_INET)
			uv_ip4_name((struct sockaddr_in *)&sa, c->remote, sizeof c->remote);
		else
			uv_ip6_name((struct sockaddr_in6 *)&sa, c->remote, sizeof c->remote);
	}
	uv_tcp_nodelay(&c->tcp, 1);
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	arm(c, s->opt.idle_timeout_ms);
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---- parsing ---------------------------------------------------------------------------------- */

static int refuse(struct httpd_conn *c, int status, const char *why)
{
	c->refuse_status = status;
	c->refuse_why = why;
	/* Stops the parser. Not 1: from on_headers_complete, 1 means "no body", not an error. */
	return -1;
}

static int count_header_bytes(struct httpd_conn *c, size_t n)
{
	c->header_bytes += n;
	if (c->header_bytes > c->srv->opt.max_header_bytes)
		return refuse(c, 431, "request headers too large\n");
	return 0;
}

static int on_message_begin(http_parser *p)
{
	struct httpd_conn *c = p->data;
	httpd_req_free(c->req);
	c->req = httpd_req_new(c->srv, c);
	snprintf(c->req->remote, sizeof c->req->remote, "%s", c->remote);
	c->req->started_ms = now_ms();
	c->header_bytes = 0;
	c->headers_done = 0;
	c->last_was_value = 0;
	c->content_length_seen = 0;
	arm(c, c->srv->opt.header_timeout_ms);
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
	struct httpd_conn *c = p->data;
	if (count_header_bytes(c, n))
		return 1;
	httpd_req_append(&c->req->url, &c->req->url_len, at, n);
	return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
	struct httpd_conn *c = p->data;
	struct ng_httpd_req *r = c->req;
	if (count_header_bytes(c, n))
		return 1;
	if (r->nheaders == 0 || c->last_was_value) {
		if ((int)r->nheaders >= c->srv->opt.max_headers)
			return refuse(c, 431, "too many request headers\n");
		r->hname = ng_xrealloc(r->hname, (r->nheaders + 1) * sizeof *r->hname);
		r->hvalue = ng_xrealloc(r->hvalue, (r->nheaders + 1) * sizeof *r->hvalue);
		r->hname[r->nheaders] = ng_xstrdup("");
		r->hvalue[r->nheaders] = ng_xstrdup("");
		r->nheaders++;
		c->last_was_value = 0;
	}
	size_t len = strlen(r->hname[r->nheaders - 1]);
	httpd_req_append(&r->hname[r->nheaders - 1], &len, at, n);
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
	struct httpd_conn *c = p->data;
	struct ng_httpd_req *r = c->req;
	if (count_header_bytes(c, n))
		return 1;
	c->last_was_value = 1;
	size_t len = strlen(r->hvalue[r->nheaders - 1]);
	httpd_req_append(&r->hvalue[r->nheaders - 1], &len, at, n);
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct httpd_conn *c = p->data;
	struct ng_httpd_req *r = c->req;
	snprintf(r->method, sizeof r->method, "%s", http_method_str((enum http_method)p->method));
	/* http-parser refuses a repeated Content-Length and CL with chunked TE; refuse CL with any
	 * Transfer-Encoding too, whatever its value. */
	int cl = 0, te = 0;
	for (size_t i = 0; i < r->nheaders; i++) {
		cl += strcasecmp(r->hname[i], "Content-Length") == 0;
		te += strcasecmp(r->hname[i], "Transfer-Encoding") == 0;
	}
	if (cl > 1 || (cl && te))
		return refuse(c, 400, "ambiguous request: Content-Length with Transfer-Encoding, or "
				      "repeated\n");
	struct http_parser_url u;
	http_parser_url_init(&u);
	if (!r->url || http_parser_parse_url(r->url, r->url_len, p->method == HTTP_CONNECT, &u) != 0)
		return refuse(c, 400, "malformed request target\n");
	if (u.field_set & (1 << UF_PATH))
		r->path = ng_xstrndup(r->url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
	else
		r->path = ng_xstrdup("/");
	if (u.field_set & (1 << UF_QUERY)) {
		r->url[u.field_data[UF_QUERY].off + u.field_data[UF_QUERY].len] = '\0';
		r->query = r->url + u.field_data[UF_QUERY].off;
	}
	if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->srv->opt.max_body_bytes)
		return refuse(c, 413, "request body too large\n");
	c->keep_alive = http_should_keep_alive(p);
	c->headers_done = 1;
	arm(c, c->srv->opt.body_timeout_ms);
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
	struct httpd_conn *c = p->data;
	struct ng_httpd_req *r = c->req;
	if (r->body_len + n > c->srv->opt.max_body_bytes)
		return refuse(c, 413, "request body too large\n");
	httpd_req_append(&r->body, &r->body_len, at, n);
	return 0;
}

static const struct route *find_route(struct ng_httpd *s, const char *method, const char *path,
				      int *path_known)
{
	*path_known = 0;
	for (const struct route *rt = s->routes; rt; rt = rt->next) {
		size_t plen = strlen(rt->path);
		int match = rt->prefix ? strncmp(path, rt->path, plen) == 0
				       : strcmp(path, rt->path) == 0;
		if (!match)
			continue;
		*path_known = 1;
		if (strcmp(rt->method, method) == 0)
			return rt;
	}
	return NULL;
}

static int on_message_complete(http_parser *p)
{
	struct httpd_conn *c = p->data;
	struct ng_httpd *s = c->srv;
	struct ng_httpd_req *r = c->req;
	s->stats.requests++;
	uv_read_stop((uv_stream_t *)&c->tcp);
	uv_timer_stop(&c->timer);
	http_parser_pause(p, 1);
	c->handling = 1;
	int known;
	const struct route *rt = find_route(s, r->method, r->path, &known);
	if (!rt) {
		if (known) {
			char allow[256] = "";
			for (const struct route *x = s->routes; x; x = x->next) {
				size_t pl = strlen(x->path);
				if (x->prefix ? strncmp(r->path, x->path, pl) == 0
					      : strcmp(r->path, x->path) == 0) {
					size_t l = strlen(allow);
					snprintf(allow + l, sizeof allow - l, "%s%s", l ? ", " : "",
						 x->method);
				}
			}
			ng_httpd_add_header(r, "Allow", allow);
			ng_httpd_respond(r, 405, "text/plain; charset=utf-8",
					 "method not allowed\n", 19);
		} else {
			ng_httpd_respond(r, 404, "text/plain; charset=utf-8", "not found\n", 10);
		}
		return 0;
	}
	r->route = rt->path;
	r->next_pending = s->handling;
	s->handling = r;
	rt->handler(r, rt->arg);
	return 0;
}

/* ---- the server ------------------------------------------------------------------------------- */

static void unlink_pending(struct ng_httpd *s, struct ng_httpd_req *r)
{
	for (struct ng_httpd_req **p = &s->handling; *p; p = &(*p)->next_pending) {
		if (*p == r) {
			*p = r->next_pending;
			return;
		}
	}
}

void ng_httpd_respond(struct ng_httpd_req *r, int status, const char *content_type,
		      const char *body, size_t len)
{
	struct httpd_conn *c = r->conn;
	if (r->srv && r->srv->observe)
		r->srv->observe(r->srv->observe_arg, r->route ? r->route : "", r->method, status,
				now_ms() - r->started_ms);
	if (r->srv) {
		unlink_pending(r->srv, r);
		maybe_finish_close(r->srv);
	}
	if (!c) {
		/* The client went away (or the server closed): nothing to answer to. */
		httpd_req_free(r);
		return;
	}
	/* Answered: the request is the connection's again, freed when the response is written or
	 * the connection closes. */
	c->handling = 0;
	conn_send(c, status, r->resp_headers, r->resp_headers_len, content_type, body, len, 0);
}

int ng_httpd_open(struct ng_httpd **out, uv_loop_t *loop, const struct ng_httpd_options *opt)
{
	settings.on_message_begin = on_message_begin;
	settings.on_url = on_url;
	settings.on_header_field = on_header_field;
	settings.on_header_value = on_header_value;
	settings.on_headers_complete = on_headers_complete;
	settings.on_body = on_body;
	settings.on_message_complete = on_message_complete;

	struct ng_httpd *s = ng_xcalloc(1, sizeof *s);
	s->loop = loop;
	if (opt)
		s->opt = *opt;
	if (!s->opt.max_header_bytes)
		s->opt.max_header_bytes = 16384;
	if (!s->opt.max_headers)
		s->opt.max_headers = 100;
	if (!s->opt.max_body_bytes)
		s->opt.max_body_bytes = 1 << 20;
	if (!s->opt.max_connections)
		s->opt.max_connections = 1024;
	if (!s->opt.header_timeout_ms)
		s->opt.header_timeout_ms = 10000;
	if (!s->opt.body_timeout_ms)
		s->opt.body_timeout_ms = 30000;
	if (!s->opt.idle_timeout_ms)
		s->opt.idle_timeout_ms = 60000;
	if (!s->opt.drain_timeout_ms)
		s->opt.drain_timeout_ms = 5000;
	uv_tcp_init(loop, &s->listener);
	s->listener.data = s;
	uv_timer_init(loop, &s->drain_timer);
	s->drain_timer.data = s;
	s->handles_open = 2;
	*out = s;
	return 0;
}

int ng_httpd_listen(struct ng_httpd *s, const char *host, int port)
{
	struct sockaddr_storage sa;
	int rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&sa);
	if (rc)
		rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa);
	if (rc)
		return -EINVAL;
	rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&sa, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
	if (rc == 0)
		s->listening = 1;
	return rc; /* libuv's codes are negated errno values on Linux */
}

int ng_httpd_port(const struct ng_httpd *s)
{
	struct sockaddr_storage sa;
	int len = sizeof sa;
	if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&sa, &len) != 0)
		return -1;
	if (sa.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&sa)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
}

void ng_httpd_route(struct ng_httpd *s, const char *method, const char *path, ng_httpd_handler h,
		    void *arg)
{
	struct route *rt = ng_xcalloc(1, sizeof *rt);
	snprintf(rt->method, sizeof rt->method, "%s", method);
	size_t len = strlen(path);
	rt->prefix = len > 0 && path[len - 1] == '*';
	rt->path = ng_xstrndup(path, rt->prefix ? len - 1 : len);
	rt->handler = h;
	rt->arg = arg;
	/* Append: earlier routes win, so an exact route can precede a prefix that covers it. */
	struct route **p = &s->routes;
	while (*p)
		p = &(*p)->next;
	*p = rt;
}

void ng_httpd_observe(struct ng_httpd *s, ng_httpd_observer fn, void *arg)
{
	s->observe = fn;
	s->observe_arg = arg;
}

void ng_httpd_stats(const struct ng_httpd *s, struct ng_httpd_stats *out)
{
	*out = s->stats;
}

static void on_server_handle_closed(uv_handle_t *h)
{
	struct ng_httpd *s = h->data;
	s->handles_open--;
	maybe_finish_close(s);
}

/* Frees the server once it is closing and nothing is left: connections, handles, answers. */
static void maybe_finish_close(struct ng_httpd *s)
{
	if (!s->closing)
		return;
	if (s->closing == 1 && !s->handling) {
		/* Every handler has answered: idle keep-alive connections can go now. */
		for (struct httpd_conn *c = s->conns; c; c = c->next)
			if (!c->handling)
				conn_close(c);
	}
	if (s->conns || s->handles_open > 0) {
		if (!s->conns && s->closing < 3) {
			s->closing = 3;
			uv_timer_stop(&s->drain_timer);
			uv_close((uv_handle_t *)&s->drain_timer, on_server_handle_closed);
		}
		return;
	}
	/* Requests still with their handlers outlive the server: detach them. */
	for (struct ng_httpd_req *r = s->handling, *n; r; r = n) {
		n = r->next_pending;
		r->srv = NULL;
		r->conn = NULL;
	}
	while (s->routes) {
		struct route *n = s->routes->next;
		free(s->routes->path);
		free(s->routes);
		s->routes = n;
	}
	void (*done)(void *) = s->closed;
	void *arg = s->closed_arg;
	free(s);
	if (done)
		done(arg);
}

static void on_drain_timeout(uv_timer_t *t)
{
	struct ng_httpd *s = t->data;
	ng_warn("http", "drain timed out; closing connections with unanswered requests");
	s->closing = 2;
	for (struct httpd_conn *c = s->conns, *n; c; c = n) {
		n = c->next;
		conn_close(c);
	}
}

void ng_httpd_close(struct ng_httpd *s, void (*done)(void *arg), void *arg)
{
	s->closing = 1;
	s->closed = done;
	s->closed_arg = arg;
	uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
	uv_timer_start(&s->drain_timer, on_drain_timeout, s->opt.drain_timeout_ms, 0);
	maybe_finish_close(s);
}
