/*
 * test_metrics.c — the Prometheus text exposition of counters, gauges and histograms.
 */
#include "metrics.h"
#include "testlib.h"

static void test_exposition(void)
{
	struct ng_metrics *m = ng_metrics_new();
	struct ng_metric *req = ng_metrics_register(m, "nudge_http_requests_total", "HTTP requests.",
						    NG_METRIC_COUNTER, "route,status", NULL, 0);
	struct ng_metric *up = ng_metrics_register(m, "nudge_db_connections", "Open connections.",
						   NG_METRIC_GAUGE, NULL, NULL, 0);
	static const double b[] = {0.01, 0.1, 1};
	struct ng_metric *lat = ng_metrics_register(m, "nudge_intake_seconds", "Intake latency.",
						    NG_METRIC_HISTOGRAM, "route", b, 3);
	ASSERT(ng_metrics_register(m, "nudge_db_connections", "x", NG_METRIC_GAUGE, NULL, NULL, 0) ==
	       up);
	ng_metric_add(req, (const char *[]){"/v1/events", "2xx"}, 1);
	ng_metric_add(req, (const char *[]){"/v1/events", "2xx"}, 2);
	ng_metric_add(req, (const char *[]){"/v1/\"odd\"", "4xx"}, 1);
	ng_metric_set(up, NULL, 4);
	ng_metric_set(up, NULL, 3);
	ng_metric_observe(lat, (const char *[]){"shopify"}, 0.005);
	ng_metric_observe(lat, (const char *[]){"shopify"}, 0.5);
	ng_metric_observe(lat, (const char *[]){"shopify"}, 3);
	char *text;
	size_t len;
	ng_metrics_render(m, &text, &len);
	ASSERT_EQ_INT(len, strlen(text));
	ASSERT_CONTAINS(text, "# TYPE nudge_http_requests_total counter\n");
	ASSERT_CONTAINS(text, "nudge_http_requests_total{route=\"/v1/events\",status=\"2xx\"} 3\n");
	ASSERT_CONTAINS(text, "nudge_http_requests_total{route=\"/v1/\\\"odd\\\"\",status=\"4xx\"} 1\n");
	ASSERT_CONTAINS(text, "# TYPE nudge_db_connections gauge\nnudge_db_connections 3\n");
	ASSERT_CONTAINS(text, "nudge_intake_seconds_bucket{route=\"shopify\",le=\"0.01\"} 1\n");
	ASSERT_CONTAINS(text, "nudge_intake_seconds_bucket{route=\"shopify\",le=\"0.1\"} 1\n");
	ASSERT_CONTAINS(text, "nudge_intake_seconds_bucket{route=\"shopify\",le=\"1\"} 2\n");
	ASSERT_CONTAINS(text, "nudge_intake_seconds_bucket{route=\"shopify\",le=\"+Inf\"} 3\n");
	ASSERT_CONTAINS(text, "nudge_intake_seconds_sum{route=\"shopify\"} 3.505\n");
	ASSERT_CONTAINS(text, "nudge_intake_seconds_count{route=\"shopify\"} 3\n");
	free(text);
	ng_metrics_free(m);
}

NG_TESTS(NG_TEST(test_exposition))
