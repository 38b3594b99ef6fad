/*
 * httpd_int.h — what the files of the HTTP server share (not for other modules).
 */
#ifndef NG_HTTPD_INT_H
#define NG_HTTPD_INT_H

#include "httpd.h"

#include <http_parser.h>

struct httpd_conn;

struct ng_httpd_req {
	struct ng_httpd *srv;	/* NULL once the server is gone */
	struct httpd_conn *conn; /* NULL once the client is gone */
	char method[16];
	char *url, *path;
	const char *query;
	size_t url_len;
	char **hname, **hvalue;
	size_t nheaders;
	char *body;
	size_t body_len;
	char remote[64];
	char *resp_headers;
	size_t resp_headers_len;
	const char *route; /* the route pattern, for metrics */
	uint64_t started_ms;
	struct ng_httpd_req *next_pending; /* in the server's list of requests being handled */
};

struct ng_httpd_req *httpd_req_new(struct ng_httpd *srv, struct httpd_conn *c);
void httpd_req_free(struct ng_httpd_req *r);
void httpd_req_append(char **buf, size_t *len, const char *at, size_t n);

#endif
