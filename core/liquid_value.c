/*
 * liquid_value.c — the Liquid value model: arenas, output buffers, JSON ↔ value conversion, truth,
 * equality and ordering, emptiness, printing (Ruby's rules: 5.0, not 5), property lookup.
 */
#include "liquid_int.h"
#include "ng.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lq_chunk {
	struct lq_chunk *next;
	size_t size;
	char data[];
};

void *lq_alloc(struct lq_arena *a, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	if ((size_t)(a->end - a->p) < n) {
		size_t sz = n > 8000 ? n : 8000;
		struct lq_chunk *c = ng_xmalloc(sizeof *c + sz + 16);
		c->next = a->head;
		c->size = sz;
		a->head = c;
		a->p = (char *)(((uintptr_t)c->data + 15) & ~(uintptr_t)15);
		a->end = a->p + sz;
	}
	void *p = a->p;
	a->p += n;
	a->used += n;
	return p;
}

char *lq_strndup(struct lq_arena *a, const char *s, size_t n)
{
	char *p = lq_alloc(a, n + 1);
	if (n)
		memcpy(p, s, n);
	p[n] = 0;
	return p;
}

void lq_arena_free(struct lq_arena *a)
{
	struct lq_chunk *c = a->head;
	while (c) {
		struct lq_chunk *n = c->next;
		free(c);
		c = n;
	}
	memset(a, 0, sizeof *a);
}

void ng_liquid_buf_free(struct ng_liquid_buf *b)
{
	free(b->s);
	memset(b, 0, sizeof *b);
}

void lq_buf_grow(struct ng_liquid_buf *b, size_t n)
{
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + n + 1)
		cap *= 2;
	b->s = ng_xrealloc(b->s, cap);
	b->cap = cap;
}

struct lq_val lq_str(const char *p, size_t n)
{
	struct lq_val v = {.t = LQ_STR};
	v.s.p = p;
	v.s.n = n;
	return v;
}

struct lq_val lq_int(int64_t i)
{
	struct lq_val v = {.t = LQ_INT};
	v.i = i;
	return v;
}

struct lq_val lq_float(double f)
{
	struct lq_val v = {.t = LQ_FLOAT};
	v.f = f;
	return v;
}

struct lq_val lq_bool(int b)
{
	struct lq_val v = {.t = LQ_BOOL};
	v.b = !!b;
	return v;
}

struct lq_val lq_from_json(const json_t *j)
{
	if (!j)
		return lq_nil();
	switch (json_typeof(j)) {
	case JSON_STRING:
		return lq_str(json_string_value(j), json_string_length(j));
	case JSON_INTEGER:
		return lq_int(json_integer_value(j));
	case JSON_REAL:
		return lq_float(json_real_value(j));
	case JSON_TRUE:
		return lq_bool(1);
	case JSON_FALSE:
		return lq_bool(0);
	case JSON_NULL:
		return lq_nil();
	default: {
		struct lq_val v = {.t = LQ_JSON};
		v.j = (json_t *)j;
		return v;
	}
	}
}

json_t *lq_to_json(const struct lq_val *v)
{
	switch (v->t) {
	case LQ_BOOL:
		return json_boolean(v->b);
	case LQ_INT:
		return json_integer(v->i);
	case LQ_FLOAT:
		return json_real(v->f);
	case LQ_STR:
		return json_stringn_nocheck(v->s.p, v->s.n);
	case LQ_JSON:
		return json_incref(v->j);
	case LQ_RANGE: {
		json_t *a = json_array();
		for (int64_t i = v->r.lo; i <= v->r.hi && i - v->r.lo < 100000; i++)
			json_array_append_new(a, json_integer(i));
		return a;
	}
	default:
		return json_null();
	}
}

int lq_truthy(const struct lq_val *v)
{
	if (v->t == LQ_NIL)
		return 0;
	if (v->t == LQ_BOOL)
		return v->b;
	return 1;
}

int lq_is_empty(const struct lq_val *v)
{
	switch (v->t) {
	case LQ_STR:
		return v->s.n == 0;
	case LQ_JSON:
		return json_is_array(v->j) ? json_array_size(v->j) == 0
		                           : json_object_size(v->j) == 0;
	case LQ_EMPTY:
	case LQ_BLANK:
		return 1;
	default:
		return 0;
	}
}

int lq_is_blank(const struct lq_val *v)
{
	switch (v->t) {
	case LQ_NIL:
		return 1;
	case LQ_BOOL:
		return !v->b;
	case LQ_STR:
		for (size_t i = 0; i < v->s.n; i++)
			if (!strchr(" \t\n\r\f\v", v->s.p[i]))
				return 0;
		return 1;
	default:
		return lq_is_empty(v);
	}
}

static int is_num(const struct lq_val *v)
{
	return v->t == LQ_INT || v->t == LQ_FLOAT;
}

static double num(const struct lq_val *v)
{
	return v->t == LQ_INT ? (double)v->i : v->f;
}

int lq_equal(const struct lq_val *a, const struct lq_val *b)
{
	if (a->t == LQ_EMPTY || a->t == LQ_BLANK) {
		const struct lq_val *t = a;
		a = b;
		b = t;
	}
	if (b->t == LQ_EMPTY)
		return a->t != LQ_NIL && a->t != LQ_BOOL && lq_is_empty(a) && a->t != LQ_BLANK;
	if (b->t == LQ_BLANK)
		return lq_is_blank(a);
	if (is_num(a) && is_num(b)) {
		if (a->t == LQ_INT && b->t == LQ_INT)
			return a->i == b->i;
		return num(a) == num(b);
	}
	if (a->t != b->t)
		return 0;
	switch (a->t) {
	case LQ_NIL:
		return 1;
	case LQ_BOOL:
		return a->b == b->b;
	case LQ_STR:
		return a->s.n == b->s.n && memcmp(a->s.p, b->s.p, a->s.n) == 0;
	case LQ_JSON:
		return json_equal(a->j, b->j);
	case LQ_RANGE:
		return a->r.lo == b->r.lo && a->r.hi == b->r.hi;
	case LQ_LOOP:
		return a->loop == b->loop;
	default:
		return 0;
	}
}

int lq_compare(const struct lq_val *a, const struct lq_val *b)
{
	if (is_num(a) && is_num(b)) {
		if (a->t == LQ_INT && b->t == LQ_INT)
			return a->i < b->i ? -1 : a->i > b->i;
		double x = num(a), y = num(b);
		return x < y ? -1 : x > y;
	}
	if (a->t == LQ_STR && b->t == LQ_STR) {
		size_t n = a->s.n < b->s.n ? a->s.n : b->s.n;
		int r = memcmp(a->s.p, b->s.p, n);
		if (r)
			return r < 0 ? -1 : 1;
		return a->s.n < b->s.n ? -1 : a->s.n > b->s.n;
	}
	return -2;
}

void lq_buf_fmt_float(struct ng_liquid_buf *b, double f)
{
	char tmp[64];
	if (isnan(f)) {
		lq_buf_add(b, "NaN", 3);
		return;
	}
	if (isinf(f)) {
		if (f < 0)
			lq_buf_add(b, "-Infinity", 9);
		else
			lq_buf_add(b, "Infinity", 8);
		return;
	}
	/* Ruby prints the shortest text that reads back as the same double. */
	int prec;
	for (prec = 1; prec <= 17; prec++) {
		snprintf(tmp, sizeof tmp, "%.*g", prec, f);
		if (strtod(tmp, NULL) == f)
			break;
	}
	double af = fabs(f);
	if (af != 0 && (af >= 1e16 || af < 1e-4)) {
		/* Ruby: 1.0e+20, 1.5e-05 */
		char m[64];
		snprintf(m, sizeof m, "%.*e", prec - 1, f);
		char *e = strchr(m, 'e');
		*e = 0;
		const char *ex = e + 1;
		char sign = *ex == '-' ? '-' : '+';
		if (*ex == '-' || *ex == '+')
			ex++;
		int n = snprintf(tmp, sizeof tmp, "%s%se%c%02d", m, strchr(m, '.') ? "" : ".0",
		                 sign, atoi(ex));
		lq_buf_add(b, tmp, (size_t)n);
		return;
	}
	/* Below 1e16 the shortest %g text has no exponent (precision 17 covers 16 digits). */
	char g[64];
	snprintf(g, sizeof g, "%.*g", prec, f);
	if (strchr(g, 'e'))
		snprintf(g, sizeof g, "%.1f", f);
	lq_buf_add(b, g, strlen(g));
	if (!strchr(g, '.'))
		lq_buf_add(b, ".0", 2);
}

static void buf_int(struct ng_liquid_buf *b, int64_t i)
{
	char tmp[24];
	char *e = tmp + sizeof tmp, *p = e;
	uint64_t u = i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i;
	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (i < 0)
		*--p = '-';
	lq_buf_add(b, p, (size_t)(e - p));
}

static void buf_inspect(struct ng_liquid_buf *b, const json_t *j);

static void buf_json_elem(struct ng_liquid_buf *b, const json_t *j)
{
	/* Array elements print as Liquid prints them (arrays flatten). */
	struct lq_val v = lq_from_json(j);
	if (v.t == LQ_JSON && json_is_object(j))
		buf_inspect(b, j);
	else
		lq_buf_val(b, &v);
}

/* A hash prints as Ruby's inspect does: {"a"=>1}. */
static void buf_inspect(struct ng_liquid_buf *b, const json_t *j)
{
	if (json_is_object(j)) {
		lq_buf_add(b, "{", 1);
		const char *k;
		json_t *v;
		int first = 1;
		json_object_foreach((json_t *)j, k, v)
		{
			if (!first)
				lq_buf_add(b, ", ", 2);
			first = 0;
			lq_buf_add(b, "\"", 1);
			lq_buf_add(b, k, strlen(k));
			lq_buf_add(b, "\"=>", 3);
			buf_inspect(b, v);
		}
		lq_buf_add(b, "}", 1);
	} else if (json_is_array(j)) {
		lq_buf_add(b, "[", 1);
		for (size_t i = 0; i < json_array_size(j); i++) {
			if (i)
				lq_buf_add(b, ", ", 2);
			buf_inspect(b, json_array_get(j, i));
		}
		lq_buf_add(b, "]", 1);
	} else if (json_is_string(j)) {
		lq_buf_add(b, "\"", 1);
		lq_buf_add(b, json_string_value(j), json_string_length(j));
		lq_buf_add(b, "\"", 1);
	} else if (json_is_null(j)) {
		lq_buf_add(b, "nil", 3);
	} else {
		struct lq_val v = lq_from_json(j);
		lq_buf_val(b, &v);
	}
}

void lq_buf_val(struct ng_liquid_buf *b, const struct lq_val *v)
{
	switch (v->t) {
	case LQ_BOOL:
		if (v->b)
			lq_buf_add(b, "true", 4);
		else
			lq_buf_add(b, "false", 5);
		break;
	case LQ_INT:
		buf_int(b, v->i);
		break;
	case LQ_FLOAT:
		lq_buf_fmt_float(b, v->f);
		break;
	case LQ_STR:
		lq_buf_add(b, v->s.p, v->s.n);
		break;
	case LQ_JSON:
		if (json_is_array(v->j)) {
			for (size_t i = 0; i < json_array_size(v->j); i++)
				buf_json_elem(b, json_array_get(v->j, i));
		} else {
			buf_inspect(b, v->j);
		}
		break;
	case LQ_RANGE:
		buf_int(b, v->r.lo);
		lq_buf_add(b, "..", 2);
		buf_int(b, v->r.hi);
		break;
	default:
		break;
	}
}

struct lq_val lq_to_str(struct lq_ctx *c, const struct lq_val *v)
{
	if (v->t == LQ_STR)
		return *v;
	if (v->t == LQ_NIL || v->t == LQ_EMPTY || v->t == LQ_BLANK || v->t == LQ_LOOP)
		return lq_str("", 0);
	struct ng_liquid_buf b = {0};
	lq_buf_val(&b, v);
	char *p = lq_strndup(&c->r->arena, b.s ? b.s : "", b.len);
	size_t n = b.len;
	ng_liquid_buf_free(&b);
	return lq_str(p, n);
}

/* Parses a string as Ruby's to_i/to_f-ish number: "5" → 5, "3.5" → 3.5, else 0. */
static struct lq_val str_number(const char *p, size_t n)
{
	/* Fast path for plain decimals ("199.00"): an integer mantissa below 2^53 divided by an
	 * exact power of ten is the correctly rounded double, as strtod would give. */
	{
		static const double p10[] = {1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10};
		size_t i = 0;
		int neg = 0;
		if (i < n && p[i] == '-') {
			neg = 1;
			i++;
		}
		uint64_t m = 0;
		int digits = 0, frac = -1;
		for (; i < n && digits < 16; i++) {
			if (p[i] >= '0' && p[i] <= '9') {
				m = m * 10 + (uint64_t)(p[i] - '0');
				digits++;
				if (frac >= 0)
					frac++;
			} else if (p[i] == '.' && frac < 0 && digits) {
				frac = 0;
			} else {
				break;
			}
		}
		if (i == n && digits && frac != 0 && frac <= 10) {
			if (frac < 0)
				return lq_int(neg ? -(int64_t)m : (int64_t)m);
			double d = (double)m / p10[frac];
			return lq_float(neg ? -d : d);
		}
	}
	char tmp[64];
	if (n >= sizeof tmp)
		n = sizeof tmp - 1;
	memcpy(tmp, p, n);
	tmp[n] = 0;
	char *s = tmp;
	while (*s == ' ' || *s == '\t' || *s == '\n')
		s++;
	char *e;
	long long i = strtoll(s, &e, 10);
	if (e != s && *e == '.' && e[1] >= '0' && e[1] <= '9') {
		return lq_float(strtod(s, NULL));
	}
	if (e == s)
		return lq_int(0);
	return lq_int(i);
}

struct lq_val lq_to_number(const struct lq_val *v)
{
	switch (v->t) {
	case LQ_INT:
	case LQ_FLOAT:
		return *v;
	case LQ_STR:
		return str_number(v->s.p, v->s.n);
	default:
		return lq_int(0);
	}
}

int lq_to_int(const struct lq_val *v, int64_t *out)
{
	switch (v->t) {
	case LQ_INT:
		*out = v->i;
		return 0;
	case LQ_FLOAT:
		if (!isfinite(v->f))
			return -1;
		*out = (int64_t)v->f;
		return 0;
	case LQ_STR: {
		char tmp[40];
		size_t n = v->s.n < sizeof tmp - 1 ? v->s.n : sizeof tmp - 1;
		memcpy(tmp, v->s.p, n);
		tmp[n] = 0;
		char *e;
		const char *s = tmp;
		while (*s == ' ')
			s++;
		long long i = strtoll(s, &e, 10);
		if (e == s)
			return -1;
		*out = i;
		return 0;
	}
	case LQ_NIL:
		return -1;
	default:
		return -1;
	}
}

static size_t utf8_len(const char *p, size_t n)
{
	size_t c = 0;
	for (size_t i = 0; i < n; i++)
		if (((unsigned char)p[i] & 0xC0) != 0x80)
			c++;
	return c;
}

size_t lq_size(const struct lq_val *v)
{
	switch (v->t) {
	case LQ_STR:
		return utf8_len(v->s.p, v->s.n);
	case LQ_JSON:
		return json_is_array(v->j) ? json_array_size(v->j) : json_object_size(v->j);
	case LQ_RANGE:
		return v->r.hi >= v->r.lo ? (size_t)(v->r.hi - v->r.lo + 1) : 0;
	default:
		return 0;
	}
}

static struct lq_val loop_prop(const struct lq_loop *l, const char *k, size_t n)
{
#define IS(s) (n == sizeof(s) - 1 && memcmp(k, s, n) == 0)
	if (IS("index"))
		return lq_int(l->index0 + 1);
	if (IS("index0"))
		return lq_int(l->index0);
	if (IS("rindex"))
		return lq_int(l->length - l->index0);
	if (IS("rindex0"))
		return lq_int(l->length - l->index0 - 1);
	if (IS("first"))
		return lq_bool(l->index0 == 0);
	if (IS("last"))
		return lq_bool(l->index0 == l->length - 1);
	if (IS("length"))
		return lq_int(l->length);
	if (l->tablerow) {
		if (IS("col"))
			return lq_int(l->col0 + 1);
		if (IS("col0"))
			return lq_int(l->col0);
		if (IS("row"))
			return lq_int(l->row);
		if (IS("col_first"))
			return lq_bool(l->col0 == 0);
		if (IS("col_last"))
			return lq_bool(l->col0 == l->cols - 1);
	} else {
		if (IS("name") && l->name)
			return lq_str(l->name, strlen(l->name));
		if (IS("parentloop") && l->parent) {
			struct lq_val v = {.t = LQ_LOOP};
			v.loop = l->parent;
			return v;
		}
	}
	return lq_nil();
#undef IS
}

struct lq_val lq_get_key(const struct lq_val *v, const char *k, size_t n)
{
	if (v->t == LQ_JSON) {
		if (json_is_object(v->j)) {
			json_t *x = json_object_getn(v->j, k, n);
			if (x)
				return lq_from_json(x);
			if (n == 4 && memcmp(k, "size", 4) == 0)
				return lq_int((int64_t)json_object_size(v->j));
			return lq_nil();
		}
		size_t sz = json_array_size(v->j);
		if (n == 4 && memcmp(k, "size", 4) == 0)
			return lq_int((int64_t)sz);
		if (n == 5 && memcmp(k, "first", 5) == 0)
			return sz ? lq_from_json(json_array_get(v->j, 0)) : lq_nil();
		if (n == 4 && memcmp(k, "last", 4) == 0)
			return sz ? lq_from_json(json_array_get(v->j, sz - 1)) : lq_nil();
		return lq_nil();
	}
	if (v->t == LQ_STR && n == 4 && memcmp(k, "size", 4) == 0)
		return lq_int((int64_t)lq_size(v));
	if (v->t == LQ_RANGE) {
		if (n == 4 && memcmp(k, "size", 4) == 0)
			return lq_int((int64_t)lq_size(v));
		if (n == 5 && memcmp(k, "first", 5) == 0)
			return lq_int(v->r.lo);
		if (n == 4 && memcmp(k, "last", 4) == 0)
			return lq_int(v->r.hi);
	}
	if (v->t == LQ_LOOP)
		return loop_prop(v->loop, k, n);
	return lq_nil();
}

struct lq_val lq_get_index(struct lq_ctx *c, const struct lq_val *v, const struct lq_val *idx)
{
	(void)c;
	if (idx->t == LQ_STR)
		return lq_get_key(v, idx->s.p, idx->s.n);
	if (idx->t != LQ_INT && idx->t != LQ_FLOAT)
		return lq_nil();
	int64_t i = idx->t == LQ_INT ? idx->i : (int64_t)idx->f;
	if (v->t == LQ_JSON && json_is_array(v->j)) {
		int64_t sz = (int64_t)json_array_size(v->j);
		if (i < 0)
			i += sz;
		if (i < 0 || i >= sz)
			return lq_nil();
		return lq_from_json(json_array_get(v->j, (size_t)i));
	}
	if (v->t == LQ_RANGE) {
		int64_t sz = (int64_t)lq_size(v);
		if (i < 0)
			i += sz;
		if (i < 0 || i >= sz)
			return lq_nil();
		return lq_int(v->r.lo + i);
	}
	return lq_nil();
}

size_t lq_elements(struct lq_ctx *c, const struct lq_val *v, struct lq_val **out)
{
	size_t n = 0;
	struct lq_val *e = NULL;
	if (v->t == LQ_JSON && json_is_array(v->j)) {
		n = json_array_size(v->j);
		e = lq_alloc(&c->r->arena, (n ? n : 1) * sizeof *e);
		for (size_t i = 0; i < n; i++)
			e[i] = lq_from_json(json_array_get(v->j, i));
	} else if (v->t == LQ_JSON) {
		/* A hash iterates as [key, value] pairs. */
		n = json_object_size(v->j);
		e = lq_alloc(&c->r->arena, (n ? n : 1) * sizeof *e);
		const char *k;
		json_t *x;
		size_t i = 0;
		json_object_foreach(v->j, k, x)
		{
			json_t *pair = lq_own(c, json_pack("[sO]", k, x));
			e[i++] = lq_from_json(pair);
		}
	} else if (v->t == LQ_RANGE) {
		n = lq_size(v);
		/* A range is materialised only for filters; each element counts as an iteration. */
		uint64_t left = c->r->lim.max_iterations > c->r->iterations
		                    ? c->r->lim.max_iterations - c->r->iterations
		                    : 0;
		if (n > left) {
			lq_limit(c, "loop iterations");
			*out = NULL;
			return 0;
		}
		c->r->iterations += n;
		e = lq_alloc(&c->r->arena, (n ? n : 1) * sizeof *e);
		for (size_t i = 0; i < n; i++)
			e[i] = lq_int(v->r.lo + (int64_t)i);
	} else if (v->t == LQ_STR && v->s.n) {
		n = 1;
		e = lq_alloc(&c->r->arena, sizeof *e);
		e[0] = *v;
	}
	*out = e;
	return n;
}
