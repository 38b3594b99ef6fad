/*
 * httpc_int.h — what httpc.c (the client and its loop handles) and httpc_xfer.c (one request on
 * its curl easy handle) share.
 */
#ifndef NG_HTTPC_INT_H
#define NG_HTTPC_INT_H

#include "httpc.h"

#include <curl/curl.h>

#define MAX_RESPONSE_HEADERS 200

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

/* httpc_xfer.c */
int ng_httpc_request_valid(const struct ng_httpc_request *q);
/* Sets a request up on x->easy (fresh from curl_easy_init); a curl error means "report later". */
CURLcode ng_httpc_xfer_setup(struct ng_httpc *c, struct ng_httpc_xfer *x,
                             const struct ng_httpc_request *q);
/* The errno value for a finished transfer's CURLcode (see httpc.h). */
int ng_httpc_xfer_error(struct ng_httpc_xfer *x, CURLcode rc);
void ng_httpc_xfer_free(struct ng_httpc_xfer *x);

#endif
