/*
 * httpc.h — the daemon's shared HTTP client: one libcurl multi handle driven by the libuv loop.
 *
 * Every outgoing HTTP request of the daemon (the Twilio and Messenger plugins, through the plugin
 * host's http_request service) runs here. curl's sockets are watched with one uv_poll each and its
 * timeouts with one uv_timer, so nothing ever blocks the loop thread: name resolution runs on
 * curl's own resolver threads, connections and TLS are non-blocking. Connections are kept alive
 * and reused across requests to the same host.
 *
 * Callbacks: when ng_httpc_request returns 0 the callback is called exactly once, always from the
 * loop and never from inside ng_httpc_request (an error found while setting the request up is
 * reported on the next loop turn). When it returns an error (bad arguments, NG_ECLOSING) the
 * callback is never called.
 *
 * Limits: each request has a total deadline (timeout_ms) and a connect deadline; a response body
 * larger than max_response_bytes fails the request with -EMSGSIZE. Redirects are not followed and
 * only http and https URLs are accepted.
 */
#ifndef NG_HTTPC_H
#define NG_HTTPC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct ng_httpc;
struct ng_httpc_xfer; /* one request in flight */

struct ng_httpc_options {
	int64_t timeout_ms;         /* a whole request, when the request names none; default 30 s */
	int64_t connect_timeout_ms; /* connecting (TCP and TLS); default 10 s */
	size_t max_response_bytes;  /* a larger response body fails the request; default 1 MiB */
	int max_connections;        /* open at once, over all hosts; default 64 */
	int max_host_connections; /* open at once to one host; default 0 (no cap below the total) */
	const char *user_agent;   /* default "nudge/VERSION" */
};

/* A header line; the same shape as struct nudge_header of the plugin ABI. */
struct ng_httpc_header {
	const char *name;
	const char *value;
};

/* Everything is copied before ng_httpc_request returns. */
struct ng_httpc_request {
	const char *method; /* "GET", "POST", "PUT", "DELETE"…; NULL: POST with a body, else GET */
	const char *url;    /* http:// or https:// */
	const struct ng_httpc_header *headers;
	size_t nheaders;
	const char *body; /* sent as is; not NUL-terminated */
	size_t body_len;
	const char *username; /* HTTP Basic credentials; NULL: none */
	const char *password;
	const char *ca_file;        /* PEM bundle to verify the server with; NULL: the system's */
	int64_t timeout_ms;         /* the whole request; 0: the client's default */
	int64_t connect_timeout_ms; /* 0: the client's default */
	size_t max_response_bytes;  /* 0: the client's default */
	/* When not NULL, receives a handle for ng_httpc_cancel, valid until the callback starts. */
	struct ng_httpc_xfer **handle;
};

/*
 * What the callback receives; valid only during the callback.
 *   status        the HTTP status of the last response, 0 when none arrived
 *   error         0, or a negative errno value: -ETIMEDOUT (a deadline passed), -ECONNREFUSED and
 *                 other connect errors as the kernel reported them, -EHOSTUNREACH (the name did not
 *                 resolve), -ECONNRESET (the connection broke), -EMSGSIZE (response too large),
 *                 -EPROTO (TLS or HTTP protocol failure), -EINVAL (a URL curl refused),
 *                 -ECANCELED (ng_httpc_cancel or ng_httpc_close), -EIO (anything else)
 *   curl_code     curl's CURLcode (0 when the error did not come from curl)
 *   error_text    one line: curl's own message ("Failed to connect to 127.0.0.1 port 9: …")
 *   request_sent  1 if any byte of the request went out, so the server may have acted on it
 *   body          NUL-terminated (the NUL is not counted in body_len)
 */
struct ng_httpc_response {
	int status;
	int error;
	int curl_code;
	int request_sent;
	const char *error_text; /* "" when error is 0 */
	const struct ng_httpc_header *headers;
	size_t nheaders;
	const char *body;
	size_t body_len;
	uint64_t elapsed_ms;
};

typedef void ng_httpc_done_fn(void *arg, const struct ng_httpc_response *response);

struct ng_httpc_stats {
	uint64_t requests;  /* accepted by ng_httpc_request */
	uint64_t responses; /* completed with an HTTP response, whatever its status */
	uint64_t errors;    /* completed without a response (timeouts and cancels included) */
	uint64_t timeouts;
	uint64_t cancelled;
	uint64_t in_flight;
	uint64_t bytes_received; /* response bodies */
	uint64_t sockets;        /* sockets curl has the loop watching now */
};

/* Creates the client on loop; o may be NULL (every default). */
int ng_httpc_open(struct ng_httpc **out, uv_loop_t *loop, const struct ng_httpc_options *o);

/* Starts a request. Returns 0 (done will be called once), -EINVAL or NG_ECLOSING. */
int ng_httpc_request(struct ng_httpc *c, const struct ng_httpc_request *req, ng_httpc_done_fn *done,
                     void *arg);

/* Abandons one request: its callback runs inside this call with -ECANCELED. */
void ng_httpc_cancel(struct ng_httpc *c, struct ng_httpc_xfer *x);

void ng_httpc_stats(const struct ng_httpc *c, struct ng_httpc_stats *out);

/*
 * Refuses new requests, cancels the ones in flight (each callback gets -ECANCELED), closes every
 * connection and loop handle, frees the client and then calls done(arg). May be called from inside
 * a request's callback.
 */
void ng_httpc_close(struct ng_httpc *c, void (*done)(void *arg), void *arg);

#endif
