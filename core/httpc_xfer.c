/*
 * httpc_xfer.c — one request of the shared HTTP client on its curl easy handle: checking it,
 * setting it up (method, headers, body, credentials, deadlines, the size cap), collecting the
 * response's headers and body, noticing when request bytes went out, and what a failure means.
 *
 * Whether a request "went out" (the provider may have acted on it) is learnt from curl's debug
 * callback: CURLINFO_HEADER_OUT is reported after the bytes were written to the socket.
 */
#include "httpc_int.h"
#include "ng.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ng_httpc_xfer_free(struct ng_httpc_xfer *x)
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

/* The errno value that says best what went wrong; connect errors as the kernel reported them. */
int ng_httpc_xfer_error(struct ng_httpc_xfer *x, CURLcode rc)
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

int ng_httpc_request_valid(const struct ng_httpc_request *q)
{
	if (!q || !url_ok(q->url) || (q->body_len && !q->body) || (q->nheaders && !q->headers))
		return 0;
	for (size_t i = 0; i < q->nheaders; i++)
		if (!header_ok(&q->headers[i]))
			return 0;
	return !q->method || method_ok(q->method);
}

/* Sets the request up on a fresh easy handle; a curl error here is reported on the next turn. */
CURLcode ng_httpc_xfer_setup(struct ng_httpc *c, struct ng_httpc_xfer *x,
                             const struct ng_httpc_request *q)
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
