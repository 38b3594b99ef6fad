/*
 * httpd.h — the daemon's HTTP/1.1 server on the libuv loop (libhttp-parser underneath).
 *
 * Routes are exact paths ("/healthz") or prefixes, written with a trailing star ("/v1/webhooks/"
 * then "*"). An unknown
 * path gets 404; a known path with another method 405 with Allow. A handler answers at once or
 * later (after a database commit) with ng_httpd_respond().
 *
 * Ownership: a request belongs to the server until its handler is called, then to the handler
 * until it calls ng_httpd_respond() exactly once. The request stays valid until then even if the
 * client has gone away (the response is then dropped). While a request is being handled its
 * connection reads nothing more, so pipelined requests are answered in order.
 *
 * Limits (ng_httpd_options): header bytes and count → 431, body bytes → 413 (from Content-Length
 * before reading the body, and while reading a chunked one), a deadline for the request headers
 * and body (408, then close), an idle keep-alive deadline (close), and a cap on open connections
 * (a connection past it is accepted and closed at once, so the kernel backlog never fills with
 * clients we will not serve). Content-Length together with Transfer-Encoding, or a repeated
 * Content-Length, is refused with 400 and the connection closed: such requests are how request
 * smuggling starts.
 */
#ifndef NG_HTTPD_H
#define NG_HTTPD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct ng_httpd;
struct ng_httpd_req;

struct ng_httpd_options {
	size_t max_header_bytes;  /* default 16 KiB */
	int max_headers;	  /* default 100 */
	size_t max_body_bytes;	  /* default 1 MiB */
	int max_connections;	  /* default 1024 */
	uint64_t header_timeout_ms; /* default 10 s */
	uint64_t body_timeout_ms;   /* default 30 s */
	uint64_t idle_timeout_ms;   /* default 60 s */
	uint64_t drain_timeout_ms;  /* ng_httpd_close waits this long for answers; default 5 s */
};

typedef void (*ng_httpd_handler)(struct ng_httpd_req *req, void *arg);

struct ng_httpd_stats {
	uint64_t requests, responses_2xx, responses_3xx, responses_4xx, responses_5xx;
	uint64_t connections_open, connections_total, connections_rejected;
};

int ng_httpd_open(struct ng_httpd **out, uv_loop_t *loop, const struct ng_httpd_options *opt);
/* Binds and listens; a negative code (e.g. -EADDRINUSE) when it cannot. */
int ng_httpd_listen(struct ng_httpd *s, const char *host, int port);
int ng_httpd_port(const struct ng_httpd *s);
void ng_httpd_route(struct ng_httpd *s, const char *method, const char *path, ng_httpd_handler h,
		    void *arg);
void ng_httpd_stats(const struct ng_httpd *s, struct ng_httpd_stats *out);
/* Called for every answer given through ng_httpd_respond (routed or 404/405): the route pattern
 * ("" when none matched), the method, the status and the milliseconds since the request began.
 * For metrics by route and status. */
typedef void (*ng_httpd_observer)(void *arg, const char *route, const char *method, int status,
				  uint64_t elapsed_ms);
void ng_httpd_observe(struct ng_httpd *s, ng_httpd_observer fn, void *arg);
/* Stops accepting, lets requests being handled answer (at most drain_timeout_ms), closes every
 * connection and handle, frees the server and calls done(arg). */
void ng_httpd_close(struct ng_httpd *s, void (*done)(void *arg), void *arg);

const char *ng_httpd_method(const struct ng_httpd_req *r);
const char *ng_httpd_path(const struct ng_httpd_req *r);
const char *ng_httpd_query(const struct ng_httpd_req *r); /* "" when there is none */
/* The first header of that name (case-insensitive), or NULL. */
const char *ng_httpd_header(const struct ng_httpd_req *r, const char *name);
size_t ng_httpd_header_count(const struct ng_httpd_req *r);
void ng_httpd_header_at(const struct ng_httpd_req *r, size_t i, const char **name,
			const char **value);
const char *ng_httpd_body(const struct ng_httpd_req *r, size_t *len);
const char *ng_httpd_remote(const struct ng_httpd_req *r);

/* Adds a response header (before ng_httpd_respond). */
void ng_httpd_add_header(struct ng_httpd_req *r, const char *name, const char *value);
/* Answers and releases the request. Call exactly once per request. */
void ng_httpd_respond(struct ng_httpd_req *r, int status, const char *content_type,
		      const char *body, size_t len);

#endif
