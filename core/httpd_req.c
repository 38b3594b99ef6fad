/*
 * httpd_req.c — one HTTP request as a handler sees it: accessors, response headers, and the
 * request's memory. The connection side lives in httpd.c.
 */
#include "httpd_int.h"
#include "ng.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct ng_httpd_req *httpd_req_new(struct ng_httpd *srv, struct httpd_conn *c)
{
	struct ng_httpd_req *r = ng_xcalloc(1, sizeof *r);
	r->srv = srv;
	r->conn = c;
	return r;
}

void httpd_req_free(struct ng_httpd_req *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nheaders; i++) {
		free(r->hname[i]);
		free(r->hvalue[i]);
	}
	free(r->hname);
	free(r->hvalue);
	free(r->url);
	free(r->path);
	free(r->body);
	free(r->resp_headers);
	free(r);
}

void httpd_req_append(char **buf, size_t *len, const char *at, size_t n)
{
	*buf = ng_xrealloc(*buf, *len + n + 1);
	memcpy(*buf + *len, at, n);
	*len += n;
	(*buf)[*len] = '\0';
}

const char *ng_httpd_method(const struct ng_httpd_req *r)
{
	return r->method;
}

const char *ng_httpd_path(const struct ng_httpd_req *r)
{
	return r->path ? r->path : "";
}

const char *ng_httpd_query(const struct ng_httpd_req *r)
{
	return r->query ? r->query : "";
}

const char *ng_httpd_header(const struct ng_httpd_req *r, const char *name)
{
	for (size_t i = 0; i < r->nheaders; i++)
		if (strcasecmp(r->hname[i], name) == 0)
			return r->hvalue[i];
	return NULL;
}

size_t ng_httpd_header_count(const struct ng_httpd_req *r)
{
	return r->nheaders;
}

void ng_httpd_header_at(const struct ng_httpd_req *r, size_t i, const char **name,
			const char **value)
{
	*name = i < r->nheaders ? r->hname[i] : NULL;
	*value = i < r->nheaders ? r->hvalue[i] : NULL;
}

const char *ng_httpd_body(const struct ng_httpd_req *r, size_t *len)
{
	*len = r->body_len;
	return r->body ? r->body : "";
}

const char *ng_httpd_remote(const struct ng_httpd_req *r)
{
	return r->remote;
}

void ng_httpd_add_header(struct ng_httpd_req *r, const char *name, const char *value)
{
	char line[1024];
	/* CR and LF in a header would let a value start a new header: refuse them. */
	if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
		return;
	int n = snprintf(line, sizeof line, "%s: %s\r\n", name, value);
	if (n <= 0 || (size_t)n >= sizeof line)
		return;
	httpd_req_append(&r->resp_headers, &r->resp_headers_len, line, (size_t)n);
}
