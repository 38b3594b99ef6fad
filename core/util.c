/*
 * util.c — error text and the allocation wrappers declared in ng.h.
 */
#include "ng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *ng_strerror(int code)
{
	switch (code) {
	case 0:
		return "success";
	case NG_EDB:
		return "database error";
	case NG_ECONNLOST:
		return "connection lost while the request was in flight";
	case NG_ETIMEDOUT:
		return "timed out";
	case NG_ECLOSING:
		return "shutting down";
	case NG_EHTTP:
		return "HTTP transfer failed";
	case NG_ECONFIG:
		return "invalid configuration";
	case NG_EPROTO:
		return "protocol error";
	default:
		if (code < 0 && code > -4096)
			return strerror(-code);
		return "unknown error";
	}
}

static void out_of_memory(size_t n)
{
	fprintf(stderr, "nudge: out of memory allocating %zu bytes\n", n);
	abort();
}

void *ng_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		out_of_memory(n);
	return p;
}

void *ng_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		out_of_memory(n * size);
	return p;
}

void *ng_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		out_of_memory(n);
	return q;
}

char *ng_xstrdup(const char *s)
{
	return ng_xstrndup(s, strlen(s));
}

char *ng_xstrndup(const char *s, size_t n)
{
	char *p = ng_xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *ng_xasprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	char *p = ng_xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}
