/*
 * metrics.h — counters, gauges and histograms, exposed as Prometheus text at GET /metrics.
 *
 * A metric is registered once (name, help, kind, label names) and addressed by its label values.
 * Everything runs on the loop thread, so there is no locking; sender threads report through their
 * completions, which run on the loop.
 */
#ifndef NG_METRICS_H
#define NG_METRICS_H

#include <stddef.h>

enum ng_metric_kind { NG_METRIC_COUNTER, NG_METRIC_GAUGE, NG_METRIC_HISTOGRAM };

struct ng_metrics;
struct ng_metric;

struct ng_metrics *ng_metrics_new(void);
void ng_metrics_free(struct ng_metrics *m);

/* Registers (or finds, if already registered with the same kind) a metric. labels: comma-separated
 * label names ("route,status") or NULL. Histograms use the bucket bounds given (seconds, ascending),
 * or a default set for latencies when buckets is NULL. */
struct ng_metric *ng_metrics_register(struct ng_metrics *m, const char *name, const char *help,
				      enum ng_metric_kind kind, const char *labels,
				      const double *buckets, size_t nbuckets);

/* values: the label values in the registered order, or NULL when the metric has no labels. */
void ng_metric_add(struct ng_metric *metric, const char *const *values, double delta);
void ng_metric_set(struct ng_metric *metric, const char *const *values, double value);
void ng_metric_observe(struct ng_metric *metric, const char *const *values, double value);

/* Writes the Prometheus text exposition (format 0.0.4); the caller frees *out. */
void ng_metrics_render(const struct ng_metrics *m, char **out, size_t *len);

#endif
