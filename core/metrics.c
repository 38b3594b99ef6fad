/*
 * metrics.c — a small Prometheus registry (see metrics.h). Series live in a list per metric; the
 * label sets of a daemon are few (routes × status classes, plugin instances), so a list is enough.
 */
#include "metrics.h"
#include "ng.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABELS 6

static const double default_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
					 0.1,	0.25,	0.5,   1,    2.5,   5};

struct series {
	char *values[MAX_LABELS];
	double value;	 /* counter/gauge; histogram: sum */
	double count;	 /* histogram */
	double *buckets; /* histogram: cumulative counts per bound */
	struct series *next;
};

struct ng_metric {
	char *name, *help;
	enum ng_metric_kind kind;
	char *labels[MAX_LABELS];
	int nlabels;
	double *bounds;
	size_t nbounds;
	struct series *series;
	struct ng_metric *next;
};

struct ng_metrics {
	struct ng_metric *head, *tail;
};

struct ng_metrics *ng_metrics_new(void)
{
	return ng_xcalloc(1, sizeof(struct ng_metrics));
}

void ng_metrics_free(struct ng_metrics *m)
{
	if (!m)
		return;
	struct ng_metric *x = m->head;
	while (x) {
		struct ng_metric *next = x->next;
		struct series *s = x->series;
		while (s) {
			struct series *sn = s->next;
			for (int i = 0; i < x->nlabels; i++)
				free(s->values[i]);
			free(s->buckets);
			free(s);
			s = sn;
		}
		for (int i = 0; i < x->nlabels; i++)
			free(x->labels[i]);
		free(x->bounds);
		free(x->name);
		free(x->help);
		free(x);
		x = next;
	}
	free(m);
}

struct ng_metric *ng_metrics_register(struct ng_metrics *m, const char *name, const char *help,
				      enum ng_metric_kind kind, const char *labels,
				      const double *buckets, size_t nbuckets)
{
	for (struct ng_metric *x = m->head; x; x = x->next) {
		if (strcmp(x->name, name) == 0) {
			if (x->kind != kind) {
				ng_error("metrics", "metric %s registered twice with different kinds",
					 name);
				abort();
			}
			return x;
		}
	}
	struct ng_metric *x = ng_xcalloc(1, sizeof *x);
	x->name = ng_xstrdup(name);
	x->help = ng_xstrdup(help);
	x->kind = kind;
	if (labels && *labels) {
		char *copy = ng_xstrdup(labels), *save = NULL;
		for (char *p = strtok_r(copy, ",", &save); p && x->nlabels < MAX_LABELS;
		     p = strtok_r(NULL, ",", &save))
			x->labels[x->nlabels++] = ng_xstrdup(p);
		free(copy);
	}
	if (kind == NG_METRIC_HISTOGRAM) {
		if (!buckets) {
			buckets = default_buckets;
			nbuckets = NG_ARRAY_LEN(default_buckets);
		}
		x->bounds = ng_xmalloc(nbuckets * sizeof *x->bounds);
		memcpy(x->bounds, buckets, nbuckets * sizeof *x->bounds);
		x->nbounds = nbuckets;
	}
	if (m->tail)
		m->tail->next = x;
	else
		m->head = x;
	m->tail = x;
	return x;
}

static struct series *find_series(struct ng_metric *x, const char *const *values)
{
	for (struct series *s = x->series; s; s = s->next) {
		int same = 1;
		for (int i = 0; i < x->nlabels && same; i++)
			same = strcmp(s->values[i], values[i]) == 0;
		if (same)
			return s;
	}
	struct series *s = ng_xcalloc(1, sizeof *s);
	for (int i = 0; i < x->nlabels; i++)
		s->values[i] = ng_xstrdup(values[i]);
	if (x->kind == NG_METRIC_HISTOGRAM)
		s->buckets = ng_xcalloc(x->nbounds, sizeof *s->buckets);
	/* Append, so the exposition lists series in first-seen order. */
	struct series **p = &x->series;
	while (*p)
		p = &(*p)->next;
	*p = s;
	return s;
}

void ng_metric_add(struct ng_metric *x, const char *const *values, double delta)
{
	find_series(x, values)->value += delta;
}

void ng_metric_set(struct ng_metric *x, const char *const *values, double value)
{
	find_series(x, values)->value = value;
}

void ng_metric_observe(struct ng_metric *x, const char *const *values, double value)
{
	struct series *s = find_series(x, values);
	s->value += value;
	s->count += 1;
	for (size_t i = 0; i < x->nbounds; i++)
		if (value <= x->bounds[i])
			s->buckets[i] += 1;
}

struct buf {
	char *p;
	size_t len, cap;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct buf *b, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		b->cap = b->cap * 2 + (size_t)n;
		b->p = ng_xrealloc(b->p, b->cap);
	}
}

/* Label values escaped per the text format: backslash, double quote, newline. */
static void put_escaped(struct buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			put(b, "\\\\");
		else if (*s == '"')
			put(b, "\\\"");
		else if (*s == '\n')
			put(b, "\\n");
		else
			put(b, "%c", *s);
	}
}

static void put_labels(struct buf *b, const struct ng_metric *x, const struct series *s,
		       const char *extra_name, const char *extra_value)
{
	if (x->nlabels == 0 && !extra_name)
		return;
	put(b, "{");
	for (int i = 0; i < x->nlabels; i++) {
		put(b, "%s%s=\"", i ? "," : "", x->labels[i]);
		put_escaped(b, s->values[i]);
		put(b, "\"");
	}
	if (extra_name)
		put(b, "%s%s=\"%s\"", x->nlabels ? "," : "", extra_name, extra_value);
	put(b, "}");
}

void ng_metrics_render(const struct ng_metrics *m, char **out, size_t *len)
{
	struct buf b = {ng_xmalloc(4096), 0, 4096};
	b.p[0] = '\0';
	static const char *const kinds[] = {"counter", "gauge", "histogram"};
	for (const struct ng_metric *x = m->head; x; x = x->next) {
		put(&b, "# HELP %s %s\n# TYPE %s %s\n", x->name, x->help, x->name, kinds[x->kind]);
		for (const struct series *s = x->series; s; s = s->next) {
			if (x->kind != NG_METRIC_HISTOGRAM) {
				put(&b, "%s", x->name);
				put_labels(&b, x, s, NULL, NULL);
				put(&b, " %.15g\n", s->value);
				continue;
			}
			for (size_t i = 0; i < x->nbounds; i++) {
				char le[32];
				snprintf(le, sizeof le, "%g", x->bounds[i]);
				put(&b, "%s_bucket", x->name);
				put_labels(&b, x, s, "le", le);
				put(&b, " %.15g\n", s->buckets[i]);
			}
			put(&b, "%s_bucket", x->name);
			put_labels(&b, x, s, "le", "+Inf");
			put(&b, " %.15g\n%s_sum", s->count, x->name);
			put_labels(&b, x, s, NULL, NULL);
			put(&b, " %.15g\n%s_count", s->value, x->name);
			put_labels(&b, x, s, NULL, NULL);
			put(&b, " %.15g\n", s->count);
		}
	}
	*out = b.p;
	*len = b.len;
}
