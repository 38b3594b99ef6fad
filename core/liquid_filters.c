/*
 * liquid_filters.c — the standard Liquid filters (string, math, array, url, html, default, json)
 * with liquid-ruby's coercions, plus nudge's marketing filters: money (currency and locale) and
 * tracking (UTM parameters on a link). Dates are in liquid_date.c. A filter reads its input and
 * arguments and writes its result into *v; new strings live in the render's arena, new arrays are
 * owned by the render.
 */
#include "liquid_int.h"
#include "ng.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILTER(name)                                                                               \
	static int f_##name(struct lq_ctx *c, struct lq_val *v, const struct lq_val *args,         \
	                    int nargs, const struct lq_val *kw, const char *const *kwnames,        \
	                    int nkw)
#define UNUSED_ARGS                                                                                \
	do {                                                                                       \
		(void)c;                                                                           \
		(void)args;                                                                        \
		(void)nargs;                                                                       \
		(void)kw;                                                                          \
		(void)kwnames;                                                                     \
		(void)nkw;                                                                         \
	} while (0)

static struct lq_val arg(const struct lq_val *args, int nargs, int i)
{
	return i < nargs ? args[i] : lq_nil();
}

static struct lq_val S(struct lq_ctx *c, const struct lq_val *v) {
	return lq_to_str(c, v);
}

/* A buffer to build a string in: the render's spare one when it is free, so filters do not
 * malloc on every call. done() hands it back. */
static struct ng_liquid_buf
scratch(struct lq_ctx *c)
{
	struct ng_liquid_buf b = c->r->scratch;
	memset(&c->r->scratch, 0, sizeof c->r->scratch);
	b.len = 0;
	return b;
}

/* Finishes a string built in b: copies it into the arena and returns the buffer. */
static struct lq_val done(struct lq_ctx *c, struct ng_liquid_buf *b)
{
	char *p = lq_strndup(&c->r->arena, b->s ? b->s : "", b->len);
	size_t n = b->len;
	if (!c->r->scratch.s && b->cap <= 65536)
		c->r->scratch = *b;
	else
		ng_liquid_buf_free(b);
	memset(b, 0, sizeof *b);
	if (n > c->r->lim.max_output)
		lq_limit(c, "string size");
	return lq_str(p, n);
}

static int too_big(struct lq_ctx *c, size_t n)
{
	if (n > c->r->lim.max_output || c->r->arena.used > c->r->lim.max_output * 4)
		return lq_limit(c, "memory");
	return 0;
}

/* ---- strings ---- */

static int concat2(struct lq_ctx *c, struct lq_val *v, struct lq_val a, struct lq_val b)
{
	if (too_big(c, a.s.n + b.s.n))
		return c->r->code;
	char *p = lq_alloc(&c->r->arena, a.s.n + b.s.n + 1);
	memcpy(p, a.s.p, a.s.n);
	memcpy(p + a.s.n, b.s.p, b.s.n);
	p[a.s.n + b.s.n] = 0;
	*v = lq_str(p, a.s.n + b.s.n);
	return 0;
}

FILTER(append)
{
	UNUSED_ARGS;
	struct lq_val a = arg(args, nargs, 0);
	return concat2(c, v, S(c, v), S(c, &a));
}

FILTER(prepend)
{
	UNUSED_ARGS;
	struct lq_val a = arg(args, nargs, 0);
	return concat2(c, v, S(c, &a), S(c, v));
}

static int map_chars(struct lq_ctx *c, struct lq_val *v, int mode)
{
	if (v->t == LQ_NIL) {
		*v = lq_str("", 0);
		return 0;
	}
	struct lq_val s = S(c, v);
	char *p = lq_strndup(&c->r->arena, s.s.p, s.s.n);
	for (size_t i = 0; i < s.s.n; i++) {
		if (mode == 0)
			p[i] = (char)toupper((unsigned char)p[i]);
		else if (mode == 1 || (mode == 2 && i > 0))
			p[i] = (char)tolower((unsigned char)p[i]);
		else if (mode == 2)
			p[i] = (char)toupper((unsigned char)p[i]);
	}
	*v = lq_str(p, s.s.n);
	return 0;
}

FILTER(upcase)
{
	UNUSED_ARGS;
	return map_chars(c, v, 0);
}

FILTER(downcase)
{
	UNUSED_ARGS;
	return map_chars(c, v, 1);
}

FILTER(capitalize)
{
	UNUSED_ARGS;
	return map_chars(c, v, 2);
}

static int is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v' ||
	       ch == 0;
}

static int strip(struct lq_ctx *c, struct lq_val *v, int left, int right)
{
	struct lq_val s = S(c, v);
	const char *p = s.s.p, *e = s.s.p + s.s.n;
	while (left && p < e && is_space(*p))
		p++;
	while (right && e > p && is_space(e[-1]))
		e--;
	*v = lq_str(p, (size_t)(e - p));
	return 0;
}

FILTER(strip)
{
	UNUSED_ARGS;
	return strip(c, v, 1, 1);
}

FILTER(lstrip)
{
	UNUSED_ARGS;
	return strip(c, v, 1, 0);
}

FILTER(rstrip)
{
	UNUSED_ARGS;
	return strip(c, v, 0, 1);
}

/* Replaces occurrences of `from` in s: which 0 all, 1 first, 2 last. */
static int replace(struct lq_ctx *c, struct lq_val *v, struct lq_val from, struct lq_val to,
                   int which)
{
	struct lq_val s = S(c, v);
	from = S(c, &from);
	to = S(c, &to);
	struct ng_liquid_buf b = scratch(c);
	if (from.s.n == 0) {
		/* Ruby: "hi".gsub("", "x") == "xhxix"; sub inserts once at the start. */
		if (which == 0) {
			for (size_t i = 0; i < s.s.n; i++) {
				lq_buf_add(&b, to.s.p, to.s.n);
				lq_buf_add(&b, s.s.p + i, 1);
				if (b.len > c->r->lim.max_output)
					break;
			}
			lq_buf_add(&b, to.s.p, to.s.n);
		} else if (which == 1) {
			lq_buf_add(&b, to.s.p, to.s.n);
			lq_buf_add(&b, s.s.p, s.s.n);
		} else {
			lq_buf_add(&b, s.s.p, s.s.n);
			lq_buf_add(&b, to.s.p, to.s.n);
		}
		*v = done(c, &b);
		return c->r->failed ? c->r->code : 0;
	}
	const char *p = s.s.p, *e = s.s.p + s.s.n;
	if (which == 2) {
		const char *last = NULL;
		for (const char *q = p; (q = memmem(q, (size_t)(e - q), from.s.p, from.s.n)); q++)
			last = q;
		if (!last) {
			ng_liquid_buf_free(&b);
			*v = s;
			return 0;
		}
		lq_buf_add(&b, p, (size_t)(last - p));
		lq_buf_add(&b, to.s.p, to.s.n);
		lq_buf_add(&b, last + from.s.n, (size_t)(e - last - from.s.n));
		*v = done(c, &b);
		return 0;
	}
	for (;;) {
		const char *q = memmem(p, (size_t)(e - p), from.s.p, from.s.n);
		if (!q)
			break;
		lq_buf_add(&b, p, (size_t)(q - p));
		lq_buf_add(&b, to.s.p, to.s.n);
		p = q + from.s.n;
		if (b.len > c->r->lim.max_output)
			break;
		if (which == 1)
			break;
	}
	lq_buf_add(&b, p, (size_t)(e - p));
	*v = done(c, &b);
	return c->r->failed ? c->r->code : 0;
}

FILTER(replace)
{
	UNUSED_ARGS;
	return replace(c, v, arg(args, nargs, 0), arg(args, nargs, 1), 0);
}

FILTER(replace_first)
{
	UNUSED_ARGS;
	return replace(c, v, arg(args, nargs, 0), arg(args, nargs, 1), 1);
}

FILTER(replace_last)
{
	UNUSED_ARGS;
	return replace(c, v, arg(args, nargs, 0), arg(args, nargs, 1), 2);
}

FILTER(remove)
{
	UNUSED_ARGS;
	return replace(c, v, arg(args, nargs, 0), lq_str("", 0), 0);
}

FILTER(remove_first)
{
	UNUSED_ARGS;
	return replace(c, v, arg(args, nargs, 0), lq_str("", 0), 1);
}

FILTER(remove_last)
{
	UNUSED_ARGS;
	return replace(c, v, arg(args, nargs, 0), lq_str("", 0), 2);
}

static size_t utf8_next(const char *p, size_t i, size_t n)
{
	i++;
	while (i < n && ((unsigned char)p[i] & 0xC0) == 0x80)
		i++;
	return i;
}

/* Byte offset of character ch in s (n bytes); n when past the end. */
static size_t char_off(const char *s, size_t n, size_t ch)
{
	size_t i = 0;
	while (ch-- && i < n)
		i = utf8_next(s, i, n);
	return i;
}

static int int_arg(struct lq_ctx *c, const struct lq_val *a, int64_t *out)
{
	if (lq_to_int(a, out))
		return lq_error(c, 0, "invalid integer");
	return 0;
}

FILTER(truncate)
{
	UNUSED_ARGS;
	if (v->t == LQ_NIL)
		return 0;
	struct lq_val s = S(c, v);
	int64_t len = 50;
	struct lq_val a0 = arg(args, nargs, 0);
	if (a0.t != LQ_NIL && int_arg(c, &a0, &len))
		return c->r->code;
	struct lq_val el = lq_str("...", 3);
	if (nargs > 1)
		el = S(c, &args[1]);
	size_t chars = lq_size(&s);
	if ((int64_t)chars <= len) {
		*v = s;
		return 0;
	}
	int64_t l = len - (int64_t)lq_size(&el);
	if (l < 0)
		l = 0;
	size_t off = char_off(s.s.p, s.s.n, (size_t)l);
	return concat2(c, v, lq_str(s.s.p, off), el);
}

FILTER(truncatewords)
{
	UNUSED_ARGS;
	if (v->t == LQ_NIL)
		return 0;
	struct lq_val s = S(c, v);
	int64_t words = 15;
	struct lq_val a0 = arg(args, nargs, 0);
	if (a0.t != LQ_NIL && int_arg(c, &a0, &words))
		return c->r->code;
	if (words <= 0)
		words = 1;
	struct lq_val el = lq_str("...", 3);
	if (nargs > 1)
		el = S(c, &args[1]);
	const char *p = s.s.p, *e = s.s.p + s.s.n;
	struct ng_liquid_buf b = scratch(c);
	int64_t n = 0;
	while (p < e) {
		while (p < e && is_space(*p))
			p++;
		if (p >= e)
			break;
		const char *w = p;
		while (p < e && !is_space(*p))
			p++;
		if (n == words) {
			lq_buf_add(&b, el.s.p, el.s.n);
			*v = done(c, &b);
			return 0;
		}
		if (n)
			lq_buf_add(&b, " ", 1);
		lq_buf_add(&b, w, (size_t)(p - w));
		n++;
	}
	ng_liquid_buf_free(&b);
	*v = s;
	return 0;
}

static json_t *new_array(struct lq_ctx *c)
{
	return lq_own(c, json_array());
}

static struct lq_val arr_val(json_t *a)
{
	struct lq_val v = {.t = LQ_JSON};
	v.j = a;
	return v;
}

FILTER(split)
{
	UNUSED_ARGS;
	json_t *a = new_array(c);
	if (v->t == LQ_NIL) {
		*v = arr_val(a);
		return 0;
	}
	struct lq_val s = S(c, v);
	struct lq_val a0 = arg(args, nargs, 0);
	struct lq_val sep = S(c, &a0);
	const char *p = s.s.p, *e = s.s.p + s.s.n;
	if (sep.s.n == 1 && sep.s.p[0] == ' ') {
		/* Ruby's awk-style split on runs of whitespace. */
		while (p < e) {
			while (p < e && is_space(*p))
				p++;
			if (p >= e)
				break;
			const char *w = p;
			while (p < e && !is_space(*p))
				p++;
			json_array_append_new(a, json_stringn_nocheck(w, (size_t)(p - w)));
		}
	} else if (sep.s.n == 0) {
		for (size_t i = 0; i < s.s.n;) {
			size_t j = utf8_next(s.s.p, i, s.s.n);
			json_array_append_new(a, json_stringn_nocheck(s.s.p + i, j - i));
			i = j;
		}
	} else {
		for (;;) {
			const char *q = memmem(p, (size_t)(e - p), sep.s.p, sep.s.n);
			const char *end = q ? q : e;
			json_array_append_new(a, json_stringn_nocheck(p, (size_t)(end - p)));
			if (!q)
				break;
			p = q + sep.s.n;
			if (json_array_size(a) > c->r->lim.max_output)
				return lq_limit(c, "array size");
		}
		/* Ruby drops trailing empty fields. */
		while (json_array_size(a) &&
		       json_string_length(json_array_get(a, json_array_size(a) - 1)) == 0)
			json_array_remove(a, json_array_size(a) - 1);
	}
	*v = arr_val(a);
	return 0;
}

FILTER(size)
{
	UNUSED_ARGS;
	*v = lq_int((int64_t)lq_size(v));
	return 0;
}

FILTER(strip_newlines)
{
	UNUSED_ARGS;
	struct lq_val s = S(c, v);
	struct ng_liquid_buf b = scratch(c);
	for (size_t i = 0; i < s.s.n; i++)
		if (s.s.p[i] != '\n' && s.s.p[i] != '\r')
			lq_buf_add(&b, s.s.p + i, 1);
	*v = done(c, &b);
	return 0;
}

FILTER(newline_to_br)
{
	UNUSED_ARGS;
	struct lq_val s = S(c, v);
	struct ng_liquid_buf b = scratch(c);
	for (size_t i = 0; i < s.s.n; i++) {
		if (s.s.p[i] == '\r' && i + 1 < s.s.n && s.s.p[i + 1] == '\n') {
			lq_buf_add(&b, "<br />\r\n", 8);
			i++;
		} else if (s.s.p[i] == '\n') {
			lq_buf_add(&b, "<br />\n", 7);
		} else {
			lq_buf_add(&b, s.s.p + i, 1);
		}
	}
	*v = done(c, &b);
	return 0;
}

static int ci_prefix(const char *p, const char *e, const char *s)
{
	size_t n = strlen(s);
	return (size_t)(e - p) >= n && strncasecmp(p, s, n) == 0;
}

FILTER(strip_html)
{
	UNUSED_ARGS;
	struct lq_val s = S(c, v);
	struct ng_liquid_buf b = scratch(c);
	const char *p = s.s.p, *e = s.s.p + s.s.n;
	while (p < e) {
		if (*p == '<') {
			const char *close = NULL;
			if (ci_prefix(p, e, "<script"))
				close = "</script>";
			else if (ci_prefix(p, e, "<style"))
				close = "</style>";
			else if (ci_prefix(p, e, "<!--"))
				close = "-->";
			if (close) {
				const char *q = p;
				size_t cn = strlen(close);
				while (q < e && !ci_prefix(q, e, close))
					q++;
				if (q < e) {
					p = q + cn;
					continue;
				}
			}
			const char *q = memchr(p, '>', (size_t)(e - p));
			if (q) {
				p = q + 1;
				continue;
			}
		}
		lq_buf_add(&b, p, 1);
		p++;
	}
	*v = done(c, &b);
	return 0;
}

static void html_escape(struct ng_liquid_buf *b, const char *p, size_t n, int once)
{
	size_t run = 0; /* start of the pending run of characters that need no escaping */
	for (size_t i = 0; i < n; i++) {
		char ch = p[i];
		if (ch != '&' && ch != '<' && ch != '>' && ch != '"' && ch != '\'')
			continue;
		lq_buf_add(b, p + run, i - run);
		run = i + 1;
		switch (ch) {
		case '&':
			if (once) {
				size_t j = i + 1;
				if (j < n && p[j] == '#')
					j++;
				size_t k = j;
				while (k < n && isalnum((unsigned char)p[k]))
					k++;
				if (k > j && k < n && p[k] == ';') {
					lq_buf_add(b, "&", 1);
					break;
				}
			}
			lq_buf_add(b, "&amp;", 5);
			break;
		case '<':
			lq_buf_add(b, "&lt;", 4);
			break;
		case '>':
			lq_buf_add(b, "&gt;", 4);
			break;
		case '"':
			lq_buf_add(b, "&quot;", 6);
			break;
		default:
			lq_buf_add(b, "&#39;", 5);
			break;
		}
	}
	lq_buf_add(b, p + run, n - run);
}

FILTER(escape)
{
	UNUSED_ARGS;
	if (v->t == LQ_NIL)
		return 0;
	struct lq_val s = S(c, v);
	size_t i;
	for (i = 0; i < s.s.n; i++) {
		char ch = s.s.p[i];
		if (ch == '&' || ch == '<' || ch == '>' || ch == '"' || ch == '\'')
			break;
	}
	if (i == s.s.n) {
		*v = s;
		return 0;
	}
	struct ng_liquid_buf b = scratch(c);
	html_escape(&b, s.s.p, s.s.n, 0);
	*v = done(c, &b);
	return 0;
}

FILTER(escape_once)
{
	UNUSED_ARGS;
	if (v->t == LQ_NIL)
		return 0;
	struct lq_val s = S(c, v);
	struct ng_liquid_buf b = scratch(c);
	html_escape(&b, s.s.p, s.s.n, 1);
	*v = done(c, &b);
	return 0;
}

FILTER(url_encode)
{
	UNUSED_ARGS;
	if (v->t == LQ_NIL)
		return 0;
	struct lq_val s = S(c, v);
	struct ng_liquid_buf b = scratch(c);
	size_t run = 0;
	for (size_t i = 0; i < s.s.n; i++) {
		unsigned char ch = (unsigned char)s.s.p[i];
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' || ch == '~')
			continue;
		lq_buf_add(&b, s.s.p + run, i - run);
		run = i + 1;
		if (ch == ' ') {
			lq_buf_add(&b, "+", 1);
		} else {
			static const char hex[] = "0123456789ABCDEF";
			char t[3] = {'%', hex[ch >> 4], hex[ch & 15]};
			lq_buf_add(&b, t, 3);
		}
	}
	lq_buf_add(&b, s.s.p + run, s.s.n - run);
	*v = done(c, &b);
	return 0;
}

static int hexv(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

FILTER(url_decode)
{
	UNUSED_ARGS;
	if (v->t == LQ_NIL)
		return 0;
	struct lq_val s = S(c, v);
	struct ng_liquid_buf b = scratch(c);
	for (size_t i = 0; i < s.s.n; i++) {
		char ch = s.s.p[i];
		if (ch == '+') {
			ch = ' ';
		} else if (ch == '%' && i + 2 < s.s.n + 0 && hexv(s.s.p[i + 1]) >= 0 &&
		           hexv(s.s.p[i + 2]) >= 0) {
			ch = (char)(hexv(s.s.p[i + 1]) * 16 + hexv(s.s.p[i + 2]));
			i += 2;
		}
		lq_buf_add(&b, &ch, 1);
	}
	*v = done(c, &b);
	return 0;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int base64_enc(struct lq_ctx *c, struct lq_val *v, int url)
{
	struct lq_val s = S(c, v);
	struct ng_liquid_buf b = scratch(c);
	const unsigned char *p = (const unsigned char *)s.s.p;
	for (size_t i = 0; i < s.s.n; i += 3) {
		unsigned x = (unsigned)p[i] << 16;
		if (i + 1 < s.s.n)
			x |= (unsigned)p[i + 1] << 8;
		if (i + 2 < s.s.n)
			x |= p[i + 2];
		char o[4];
		for (int k = 0; k < 4; k++) {
			char ch = b64[(x >> (18 - 6 * k)) & 63];
			if (url && ch == '+')
				ch = '-';
			if (url && ch == '/')
				ch = '_';
			o[k] = ch;
		}
		if (i + 1 >= s.s.n)
			o[2] = '=';
		if (i + 2 >= s.s.n)
			o[3] = '=';
		lq_buf_add(&b, o, 4);
	}
	*v = done(c, &b);
	return 0;
}

static int base64_dec(struct lq_ctx *c, struct lq_val *v)
{
	struct lq_val s = S(c, v);
	struct ng_liquid_buf b = scratch(c);
	unsigned acc = 0;
	int bits = 0;
	for (size_t i = 0; i < s.s.n; i++) {
		char ch = s.s.p[i];
		if (ch == '-')
			ch = '+';
		if (ch == '_')
			ch = '/';
		if (ch == '=')
			break;
		const char *q = strchr(b64, ch);
		if (!q || !ch) {
			ng_liquid_buf_free(&b);
			return lq_error(c, 0, "invalid base64 provided to base64_decode");
		}
		acc = (acc << 6) | (unsigned)(q - b64);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			char o = (char)((acc >> bits) & 0xFF);
			lq_buf_add(&b, &o, 1);
		}
	}
	*v = done(c, &b);
	return 0;
}

FILTER(base64_encode)
{
	UNUSED_ARGS;
	return base64_enc(c, v, 0);
}

FILTER(base64_url_safe_encode)
{
	UNUSED_ARGS;
	return base64_enc(c, v, 1);
}

FILTER(base64_decode)
{
	UNUSED_ARGS;
	return base64_dec(c, v);
}

FILTER(slice)
{
	UNUSED_ARGS;
	int64_t start, len = 1;
	struct lq_val a0 = arg(args, nargs, 0);
	if (int_arg(c, &a0, &start))
		return c->r->code;
	if (nargs > 1 && int_arg(c, &args[1], &len))
		return c->r->code;
	if (v->t == LQ_JSON && json_is_array(v->j)) {
		int64_t n = (int64_t)json_array_size(v->j);
		if (start < 0)
			start += n;
		json_t *a = new_array(c);
		for (int64_t i = start; i >= 0 && i < n && i < start + len; i++)
			json_array_append(a, json_array_get(v->j, (size_t)i));
		*v = arr_val(a);
		return 0;
	}
	if (v->t == LQ_NIL)
		return 0;
	struct lq_val s = S(c, v);
	int64_t n = (int64_t)lq_size(&s);
	if (start < 0)
		start += n;
	if (start < 0 || start > n || len < 0) {
		*v = lq_nil();
		return 0;
	}
	size_t a = char_off(s.s.p, s.s.n, (size_t)start);
	size_t e = char_off(s.s.p + a, s.s.n - a, (size_t)len);
	*v = lq_str(s.s.p + a, e);
	return 0;
}

/* ---- math ---- */

static int is_int(const struct lq_val *v)
{
	return v->t == LQ_INT;
}

static double dbl(const struct lq_val *v)
{
	return v->t == LQ_INT ? (double)v->i : v->f;
}

static int arith(struct lq_ctx *c, struct lq_val *v, const struct lq_val *args, int nargs, int op)
{
	struct lq_val a = lq_to_number(v);
	struct lq_val a1 = arg(args, nargs, 0);
	struct lq_val b = lq_to_number(&a1);
	if (is_int(&a) && is_int(&b)) {
		int64_t x = a.i, y = b.i, r;
		switch (op) {
		case '+':
			if (__builtin_add_overflow(x, y, &r))
				goto as_float;
			break;
		case '-':
			if (__builtin_sub_overflow(x, y, &r))
				goto as_float;
			break;
		case '*':
			if (__builtin_mul_overflow(x, y, &r))
				goto as_float;
			break;
		case '/':
			if (y == 0)
				return lq_error(c, 0, "divided by 0");
			if (x == INT64_MIN && y == -1)
				goto as_float;
			r = x / y;
			if ((x % y != 0) && ((x < 0) != (y < 0)))
				r--;
			break;
		default:
			if (y == 0)
				return lq_error(c, 0, "divided by 0");
			if (y == -1) {
				r = 0;
				break;
			}
			r = x % y;
			if (r != 0 && ((r < 0) != (y < 0)))
				r += y;
			break;
		}
		*v = lq_int(r);
		return 0;
	}
as_float:;
	double x = dbl(&a), y = dbl(&b), r;
	switch (op) {
	case '+':
		r = x + y;
		break;
	case '-':
		r = x - y;
		break;
	case '*':
		r = x * y;
		break;
	case '/':
		r = x / y;
		break;
	default:
		if (y == 0)
			return lq_error(c, 0, "divided by 0");
		r = fmod(x, y);
		if (r != 0 && ((r < 0) != (y < 0)))
			r += y;
		break;
	}
	*v = lq_float(r);
	return 0;
}

FILTER(plus)
{
	UNUSED_ARGS;
	return arith(c, v, args, nargs, '+');
}

FILTER(minus)
{
	UNUSED_ARGS;
	return arith(c, v, args, nargs, '-');
}

FILTER(times)
{
	UNUSED_ARGS;
	return arith(c, v, args, nargs, '*');
}

FILTER(divided_by)
{
	UNUSED_ARGS;
	return arith(c, v, args, nargs, '/');
}

FILTER(modulo)
{
	UNUSED_ARGS;
	return arith(c, v, args, nargs, '%');
}

FILTER(abs)
{
	UNUSED_ARGS;
	struct lq_val a = lq_to_number(v);
	*v = is_int(&a) ? lq_int(a.i < 0 ? -a.i : a.i) : lq_float(fabs(a.f));
	return 0;
}

static int to_int_result(struct lq_ctx *c, struct lq_val *v, double r)
{
	if (!isfinite(r) || fabs(r) > 9.2e18)
		return lq_error(c, 0, "number out of range");
	*v = lq_int((int64_t)r);
	return 0;
}

FILTER(ceil)
{
	UNUSED_ARGS;
	struct lq_val a = lq_to_number(v);
	if (is_int(&a)) {
		*v = a;
		return 0;
	}
	return to_int_result(c, v, ceil(a.f));
}

FILTER(floor)
{
	UNUSED_ARGS;
	struct lq_val a = lq_to_number(v);
	if (is_int(&a)) {
		*v = a;
		return 0;
	}
	return to_int_result(c, v, floor(a.f));
}

FILTER(round)
{
	UNUSED_ARGS;
	struct lq_val a = lq_to_number(v);
	int64_t digits = 0;
	struct lq_val a0 = arg(args, nargs, 0);
	if (a0.t != LQ_NIL && lq_to_int(&a0, &digits))
		digits = 0;
	if (is_int(&a)) {
		*v = a;
		return 0;
	}
	if (digits <= 0)
		return to_int_result(c, v, round(a.f));
	if (digits > 15)
		digits = 15;
	double m = pow(10, (double)digits);
	char tmp[64];
	snprintf(tmp, sizeof tmp, "%.*f", (int)digits, round(a.f * m) / m);
	*v = lq_float(strtod(tmp, NULL));
	return 0;
}

static int minmax(struct lq_val *v, const struct lq_val *args, int nargs, int want_max)
{
	struct lq_val a = lq_to_number(v);
	struct lq_val a1 = arg(args, nargs, 0);
	struct lq_val b = lq_to_number(&a1);
	int o = lq_compare(&a, &b);
	*v = (want_max ? o < 0 : o > 0) ? b : a;
	return 0;
}

FILTER(at_least)
{
	UNUSED_ARGS;
	return minmax(v, args, nargs, 1);
}

FILTER(at_most)
{
	UNUSED_ARGS;
	return minmax(v, args, nargs, 0);
}

/* ---- arrays ---- */

/* The input as an array: nil is empty, a scalar is a one-element array. */
static json_t *as_array(struct lq_ctx *c, const struct lq_val *v)
{
	if (v->t == LQ_JSON && json_is_array(v->j))
		return v->j;
	json_t *a = new_array(c);
	if (v->t == LQ_RANGE) {
		struct lq_val *e;
		size_t n = lq_elements(c, v, &e);
		for (size_t i = 0; i < n; i++)
			json_array_append_new(a, json_integer(e[i].i));
	} else if (v->t != LQ_NIL) {
		json_array_append_new(a, lq_to_json(v));
	}
	return a;
}

static void flatten_into(json_t *out, const json_t *a, int depth)
{
	for (size_t i = 0; i < json_array_size(a); i++) {
		json_t *e = json_array_get(a, i);
		if (json_is_array(e) && depth < 100)
			flatten_into(out, e, depth + 1);
		else
			json_array_append(out, e);
	}
}

FILTER(join)
{
	UNUSED_ARGS;
	if (v->t == LQ_NIL)
		return 0;
	if (v->t == LQ_STR)
		return 0;
	struct lq_val sep = lq_str(" ", 1);
	if (nargs > 0)
		sep = S(c, &args[0]);
	json_t *a = as_array(c, v);
	json_t *flat = new_array(c);
	flatten_into(flat, a, 0);
	struct ng_liquid_buf b = scratch(c);
	for (size_t i = 0; i < json_array_size(flat); i++) {
		if (i)
			lq_buf_add(&b, sep.s.p, sep.s.n);
		struct lq_val e = lq_from_json(json_array_get(flat, i));
		lq_buf_val(&b, &e);
		if (b.len > c->r->lim.max_output)
			break;
	}
	*v = done(c, &b);
	return c->r->failed ? c->r->code : 0;
}

FILTER(first)
{
	UNUSED_ARGS;
	if (v->t == LQ_JSON && json_is_array(v->j))
		*v = lq_from_json(json_array_get(v->j, 0));
	else if (v->t == LQ_RANGE)
		*v = v->r.hi >= v->r.lo ? lq_int(v->r.lo) : lq_nil();
	else
		*v = lq_nil();
	return 0;
}

FILTER(last)
{
	UNUSED_ARGS;
	if (v->t == LQ_JSON && json_is_array(v->j)) {
		size_t n = json_array_size(v->j);
		*v = n ? lq_from_json(json_array_get(v->j, n - 1)) : lq_nil();
	} else if (v->t == LQ_RANGE) {
		*v = v->r.hi >= v->r.lo ? lq_int(v->r.hi) : lq_nil();
	} else {
		*v = lq_nil();
	}
	return 0;
}

static json_t *prop(json_t *e, const struct lq_val *key)
{
	if (!json_is_object(e) || key->t != LQ_STR)
		return NULL;
	return json_object_getn(e, key->s.p, key->s.n);
}

FILTER(map)
{
	UNUSED_ARGS;
	if (v->t == LQ_NIL)
		return 0;
	struct lq_val key = arg(args, nargs, 0);
	key = S(c, &key);
	json_t *a = as_array(c, v);
	json_t *out = new_array(c);
	json_t *flat = new_array(c);
	flatten_into(flat, a, 0);
	for (size_t i = 0; i < json_array_size(flat); i++) {
		json_t *x = prop(json_array_get(flat, i), &key);
		json_array_append(out, x ? x : json_null());
	}
	*v = arr_val(out);
	return 0;
}

static int select_where(struct lq_ctx *c, struct lq_val *v, const struct lq_val *args, int nargs,
                        int reject)
{
	if (v->t == LQ_NIL)
		return 0;
	struct lq_val key = arg(args, nargs, 0);
	key = S(c, &key);
	json_t *a = as_array(c, v);
	json_t *out = new_array(c);
	for (size_t i = 0; i < json_array_size(a); i++) {
		json_t *e = json_array_get(a, i);
		json_t *x = prop(e, &key);
		struct lq_val xv = lq_from_json(x);
		/* A string element answers item[key] as Ruby's String#[]: the key if it occurs. */
		if (json_is_string(e) && key.s.n &&
		    memmem(json_string_value(e), json_string_length(e), key.s.p, key.s.n))
			xv = key;
		int keep;
		if (nargs > 1 && args[1].t != LQ_NIL)
			keep = lq_equal(&xv, &args[1]);
		else
			keep = lq_truthy(&xv);
		if (keep != reject)
			json_array_append(out, e);
	}
	*v = arr_val(out);
	return 0;
}

FILTER(where)
{
	UNUSED_ARGS;
	return select_where(c, v, args, nargs, 0);
}

FILTER(reject)
{
	UNUSED_ARGS;
	return select_where(c, v, args, nargs, 1);
}

static int find_item(struct lq_ctx *c, struct lq_val *v, const struct lq_val *args, int nargs,
                     int mode)
{
	struct lq_val key = arg(args, nargs, 0);
	key = S(c, &key);
	json_t *a = as_array(c, v);
	for (size_t i = 0; i < json_array_size(a); i++) {
		json_t *e = json_array_get(a, i);
		struct lq_val xv = lq_from_json(prop(e, &key));
		int hit = nargs > 1 ? lq_equal(&xv, &args[1]) : lq_truthy(&xv);
		if (hit) {
			*v = mode == 0   ? lq_from_json(e)
			     : mode == 1 ? lq_int((int64_t)i)
			                 : lq_bool(1);
			return 0;
		}
	}
	*v = mode == 2 ? lq_bool(0) : lq_nil();
	return 0;
}

FILTER(find)
{
	UNUSED_ARGS;
	return find_item(c, v, args, nargs, 0);
}

FILTER(find_index)
{
	UNUSED_ARGS;
	return find_item(c, v, args, nargs, 1);
}

FILTER(has)
{
	UNUSED_ARGS;
	return find_item(c, v, args, nargs, 2);
}

struct sort_ctx {
	const struct lq_val *key;
	int natural;
};

static int type_rank(const struct lq_val *v)
{
	switch (v->t) {
	case LQ_INT:
	case LQ_FLOAT:
		return 1;
	case LQ_STR:
		return 2;
	case LQ_NIL:
		return 9;
	default:
		return 5;
	}
}

static int sort_cmp(const void *pa, const void *pb, void *ud)
{
	const struct sort_ctx *s = ud;
	json_t *a = *(json_t *const *)pa, *b = *(json_t *const *)pb;
	if (s->key) {
		a = prop(a, s->key);
		b = prop(b, s->key);
	}
	struct lq_val x = lq_from_json(a), y = lq_from_json(b);
	if (s->natural && x.t == LQ_STR && y.t == LQ_STR) {
		size_t n = x.s.n < y.s.n ? x.s.n : y.s.n;
		int r = strncasecmp(x.s.p, y.s.p, n);
		if (r)
			return r;
		return x.s.n < y.s.n ? -1 : x.s.n > y.s.n;
	}
	int o = lq_compare(&x, &y);
	if (o != -2)
		return o;
	return type_rank(&x) - type_rank(&y);
}

static int sort_impl(struct lq_ctx *c, struct lq_val *v, const struct lq_val *args, int nargs,
                     int natural)
{
	if (v->t == LQ_NIL)
		return 0;
	json_t *a = as_array(c, v);
	size_t n = json_array_size(a);
	json_t **items = lq_alloc(&c->r->arena, (n ? n : 1) * sizeof *items);
	for (size_t i = 0; i < n; i++)
		items[i] = json_array_get(a, i);
	struct lq_val key = nargs > 0 ? S(c, &args[0]) : lq_nil();
	struct sort_ctx sc = {.key = nargs > 0 ? &key : NULL, .natural = natural};
	qsort_r(items, n, sizeof *items, sort_cmp, &sc);
	json_t *out = new_array(c);
	for (size_t i = 0; i < n; i++)
		json_array_append(out, items[i]);
	*v = arr_val(out);
	return 0;
}

FILTER(sort)
{
	UNUSED_ARGS;
	return sort_impl(c, v, args, nargs, 0);
}

FILTER(sort_natural)
{
	UNUSED_ARGS;
	return sort_impl(c, v, args, nargs, 1);
}

FILTER(uniq)
{
	UNUSED_ARGS;
	if (v->t == LQ_NIL)
		return 0;
	json_t *a = as_array(c, v);
	json_t *out = new_array(c);
	struct lq_val key = nargs > 0 ? S(c, &args[0]) : lq_nil();
	for (size_t i = 0; i < json_array_size(a); i++) {
		json_t *e = json_array_get(a, i);
		json_t *ek = nargs > 0 ? prop(e, &key) : e;
		int dup = 0;
		for (size_t j = 0; j < json_array_size(out) && !dup; j++) {
			json_t *o = json_array_get(out, j);
			json_t *ok = nargs > 0 ? prop(o, &key) : o;
			dup = (ek == NULL && ok == NULL) || (ek && ok && json_equal(ek, ok));
		}
		if (!dup)
			json_array_append(out, e);
	}
	*v = arr_val(out);
	return 0;
}

FILTER(compact)
{
	UNUSED_ARGS;
	if (v->t == LQ_NIL)
		return 0;
	json_t *a = as_array(c, v);
	json_t *out = new_array(c);
	struct lq_val key = nargs > 0 ? S(c, &args[0]) : lq_nil();
	for (size_t i = 0; i < json_array_size(a); i++) {
		json_t *e = json_array_get(a, i);
		json_t *x = nargs > 0 ? prop(e, &key) : e;
		if (x && !json_is_null(x))
			json_array_append(out, e);
	}
	*v = arr_val(out);
	return 0;
}

FILTER(reverse)
{
	UNUSED_ARGS;
	if (v->t == LQ_NIL)
		return 0;
	json_t *a = as_array(c, v);
	json_t *out = new_array(c);
	for (size_t i = json_array_size(a); i-- > 0;)
		json_array_append(out, json_array_get(a, i));
	*v = arr_val(out);
	return 0;
}

FILTER(concat)
{
	UNUSED_ARGS;
	struct lq_val b = arg(args, nargs, 0);
	if (!(b.t == LQ_JSON && json_is_array(b.j)))
		return lq_error(c, 0, "concat filter requires an array argument");
	json_t *a = as_array(c, v);
	json_t *out = new_array(c);
	json_array_extend(out, a);
	json_array_extend(out, b.j);
	*v = arr_val(out);
	return 0;
}

FILTER(flatten)
{
	UNUSED_ARGS;
	json_t *a = as_array(c, v);
	json_t *out = new_array(c);
	flatten_into(out, a, 0);
	*v = arr_val(out);
	return 0;
}

FILTER(sum)
{
	UNUSED_ARGS;
	json_t *a = as_array(c, v);
	struct lq_val key = nargs > 0 ? S(c, &args[0]) : lq_nil();
	struct lq_val acc = lq_int(0);
	for (size_t i = 0; i < json_array_size(a); i++) {
		json_t *e = json_array_get(a, i);
		json_t *x = nargs > 0 ? prop(e, &key) : e;
		struct lq_val xv = lq_from_json(x);
		if (xv.t != LQ_INT && xv.t != LQ_FLOAT && xv.t != LQ_STR)
			continue;
		struct lq_val n = lq_to_number(&xv);
		if (arith(c, &acc, &n, 1, '+'))
			return c->r->code;
	}
	*v = acc;
	return 0;
}

/* ---- other ---- */

FILTER(default)
{
	UNUSED_ARGS;
	int allow_false = 0;
	for (int i = 0; i < nkw; i++)
		if (strcmp(kwnames[i], "allow_false") == 0)
			allow_false = lq_truthy(&kw[i]);
	int use = !lq_truthy(v) || (v->t != LQ_BOOL && lq_is_empty(v));
	if (allow_false && v->t == LQ_BOOL && !v->b)
		use = 0;
	if (use)
		*v = arg(args, nargs, 0);
	return 0;
}

FILTER(json)
{
	UNUSED_ARGS;
	json_t *j = lq_to_json(v);
	char *s = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
	json_decref(j);
	if (!s)
		return lq_error(c, 0, "json: cannot encode");
	*v = lq_str(lq_strndup(&c->r->arena, s, strlen(s)), strlen(s));
	free(s);
	return 0;
}

FILTER(date)
{
	UNUSED_ARGS;
	return lq_date_filter(c, v, args, nargs);
}

/* money: an amount in the currency's units ("398.00", 398) → "$398.00", "398,00 €". */
struct currency {
	const char *code, *symbol;
	int decimals;
};
static const struct currency currencies[] = {
    {"USD", "$", 2},   {"EUR", "€", 2},   {"GBP", "£", 2},   {"JPY", "¥", 0},  {"CAD", "CA$", 2},
    {"AUD", "A$", 2},  {"NZD", "NZ$", 2}, {"CHF", "CHF", 2}, {"SEK", "kr", 2}, {"NOK", "kr", 2},
    {"DKK", "kr.", 2}, {"PLN", "zł", 2},  {"CZK", "Kč", 2},  {"INR", "₹", 2},  {"BRL", "R$", 2},
    {"MXN", "MX$", 2}, {"CNY", "CN¥", 2}, {"KRW", "₩", 0},   {"HUF", "Ft", 2}, {"ZAR", "R", 2},
};

FILTER(money)
{
	UNUSED_ARGS;
	if (v->t == LQ_NIL)
		return 0;
	struct lq_val n = lq_to_number(v);
	double amount = n.t == LQ_INT ? (double)n.i : n.f;
	const struct lq_render_opts_view {
		const char *cur, *loc;
	} d = {c->r->o && c->r->o->currency ? c->r->o->currency : "USD",
	       c->r->o && c->r->o->locale ? c->r->o->locale : "en"};
	char code[8], loc[8];
	struct lq_val a0 = arg(args, nargs, 0), a1 = arg(args, nargs, 1);
	struct lq_val cs = a0.t == LQ_STR && a0.s.n ? a0 : lq_str(d.cur, strlen(d.cur));
	struct lq_val ls = a1.t == LQ_STR && a1.s.n ? a1 : lq_str(d.loc, strlen(d.loc));
	size_t cl = cs.s.n < sizeof code - 1 ? cs.s.n : sizeof code - 1;
	size_t ll = ls.s.n < sizeof loc - 1 ? ls.s.n : sizeof loc - 1;
	memcpy(code, cs.s.p, cl);
	code[cl] = 0;
	memcpy(loc, ls.s.p, ll);
	loc[ll] = 0;
	for (char *p = code; *p; p++)
		*p = (char)toupper((unsigned char)*p);
	const struct currency *cur = NULL;
	for (size_t i = 0; i < NG_ARRAY_LEN(currencies) && cl == 3; i++)
		if (memcmp(currencies[i].code, code, 4) == 0) {
			cur = &currencies[i];
			break;
		}
	int dec = cur ? cur->decimals : 2;
	const char *sym = cur ? cur->symbol : code;
	/* Locale families: en-style 1,234.56 with the symbol first; most of Europe 1.234,56 €
	 * (Dutch € 1.234,56); French, Nordic and Polish 1 234,56 € (narrow no-break spaces). */
	const char *thou = ",", *decsep = ".";
	int suffix = 0;
	char l2[3] = {(char)tolower((unsigned char)loc[0]), (char)tolower((unsigned char)loc[1]),
	              0};
#define L(a, b) (((unsigned)(a) << 8) | (unsigned)(b))
	switch (L(l2[0], l2[1])) {
	case L('d', 'e'):
	case L('e', 's'):
	case L('i', 't'):
	case L('p', 't'):
	case L('d', 'a'):
	case L('t', 'r'):
		suffix = 1;
		/* fall through */
	case L('n', 'l'):
		thou = ".";
		decsep = ",";
		break;
	case L('f', 'r'):
	case L('s', 'v'):
	case L('n', 'b'):
	case L('f', 'i'):
	case L('p', 'l'):
	case L('c', 's'):
		thou = "\u202f";
		decsep = ",";
		suffix = 1;
		break;
	default:
		break;
	}
#undef L
	/* Integer arithmetic on the minor units: no printf on this hot path. */
	char digits[64];
	double scaled = fabs(amount) * (dec == 2 ? 100.0 : 1.0);
	if (!(scaled < 9e17))
		return lq_error(c, 0, "money: amount out of range");
	unsigned long long minor = (unsigned long long)llround(scaled);
	char rev[32];
	int nd = 0;
	do {
		rev[nd++] = (char)('0' + minor % 10);
		minor /= 10;
	} while (minor || nd <= dec);
	size_t k = 0;
	for (int i = nd - 1; i >= dec; i--)
		digits[k++] = rev[i];
	size_t ilen = k;
	char *dot = NULL;
	if (dec) {
		digits[k] = '.';
		dot = &digits[k++];
		for (int i = dec - 1; i >= 0; i--)
			digits[k++] = rev[i];
	}
	digits[k] = 0;
	struct ng_liquid_buf b = scratch(c);
	if (amount < 0 && strspn(digits, "0.") != strlen(digits))
		lq_buf_add(&b, "-", 1);
	if (!suffix) {
		lq_buf_add(&b, sym, strlen(sym));
		if (!strcmp(l2, "nl"))
			lq_buf_add(&b, "\u00a0", 2);
	}
	for (size_t i = 0; i < ilen; i++) {
		if (i && (ilen - i) % 3 == 0)
			lq_buf_add(&b, thou, strlen(thou));
		lq_buf_add(&b, digits + i, 1);
	}
	if (dot) {
		lq_buf_add(&b, decsep, 1);
		lq_buf_add(&b, dot + 1, strlen(dot + 1));
	}
	if (suffix) {
		lq_buf_add(&b, "\u00a0", 2);
		lq_buf_add(&b, sym, strlen(sym));
	}
	*v = done(c, &b);
	return 0;
}

/* tracking: adds utm_source=nudge, utm_medium (default email) and utm_campaign to a link,
 * before any #fragment, keeping the query it has. */
FILTER(tracking)
{
	UNUSED_ARGS;
	if (v->t == LQ_NIL)
		return 0;
	struct lq_val url = S(c, v);
	struct lq_val a0 = arg(args, nargs, 0), a1 = arg(args, nargs, 1);
	struct lq_val camp = S(c, &a0), med = a1.t == LQ_NIL ? lq_str("email", 5) : S(c, &a1);
	const char *hash = memchr(url.s.p, '#', url.s.n);
	size_t base = hash ? (size_t)(hash - url.s.p) : url.s.n;
	struct ng_liquid_buf b = scratch(c);
	lq_buf_add(&b, url.s.p, base);
	lq_buf_add(&b, memchr(url.s.p, '?', base) ? "&" : "?", 1);
	lq_buf_add(&b, "utm_source=nudge&utm_medium=", 28);
	struct lq_val enc = med;
	f_url_encode(c, &enc, NULL, 0, NULL, NULL, 0);
	lq_buf_add(&b, enc.s.p, enc.s.n);
	if (camp.s.n) {
		lq_buf_add(&b, "&utm_campaign=", 14);
		enc = camp;
		f_url_encode(c, &enc, NULL, 0, NULL, NULL, 0);
		lq_buf_add(&b, enc.s.p, enc.s.n);
	}
	lq_buf_add(&b, url.s.p + base, url.s.n - base);
	*v = done(c, &b);
	return 0;
}

struct filter_entry {
	const char *name;
	lq_filter_fn fn;
};

#define F(n)                                                                                       \
	{                                                                                          \
#n, f_##n                                                                          \
	}
static const struct filter_entry table[] = {
    F(abs),
    F(append),
    F(at_least),
    F(at_most),
    F(base64_decode),
    F(base64_encode),
    {"base64_url_safe_decode", f_base64_decode},
    F(base64_url_safe_encode),
    F(capitalize),
    F(ceil),
    F(compact),
    F(concat),
    F(date),
    F(default),
    F(divided_by),
    F(downcase),
    F(escape),
    F(escape_once),
    F(find),
    F(find_index),
    F(first),
    F(flatten),
    F(floor),
    {"h", f_escape},
    F(has),
    F(join),
    F(json),
    F(last),
    F(lstrip),
    F(map),
    F(minus),
    F(modulo),
    F(money),
    F(newline_to_br),
    F(plus),
    F(prepend),
    F(reject),
    F(remove),
    F(remove_first),
    F(remove_last),
    F(replace),
    F(replace_first),
    F(replace_last),
    F(reverse),
    F(round),
    F(rstrip),
    F(size),
    F(slice),
    F(sort),
    F(sort_natural),
    F(split),
    F(strip),
    F(strip_html),
    F(strip_newlines),
    F(sum),
    F(times),
    F(tracking),
    F(truncate),
    F(truncatewords),
    F(uniq),
    F(upcase),
    F(url_decode),
    F(url_encode),
    F(where),
};
#undef F

lq_filter_fn lq_filter_lookup(const char *name, size_t len)
{
	size_t lo = 0, hi = NG_ARRAY_LEN(table);
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int r = strncmp(table[mid].name, name, len);
		if (r == 0 && table[mid].name[len] != 0)
			r = 1;
		if (r == 0)
			return table[mid].fn;
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

int ng_liquid_filter_known(const char *name, size_t len)
{
	return lq_filter_lookup(name, len) != NULL;
}
