/*
 * test_liquid.c — the Liquid engine beyond the conformance suite: template bombs stop with an
 * error inside the limits, renders on several threads at once, time zones from the tz database,
 * the marketing filters, syntax errors with line and column, the content-hash cache.
 */
#include "liquid.h"
#include "testlib.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

static int render_str(const char *src, const char *data_json, const struct ng_liquid_render_opts *o,
                      char **out, char *err, size_t errlen)
{
	struct ng_liquid_tmpl *t;
	int rc = ng_liquid_parse(src, strlen(src), NULL, &t, err, errlen);
	if (rc)
		return rc;
	json_t *data = data_json ? json_loads(data_json, 0, NULL) : NULL;
	struct ng_liquid_buf b = {0};
	rc = ng_liquid_render(t, data, o, &b, err, errlen);
	*out = b.s;
	json_decref(data);
	ng_liquid_free(t);
	return rc;
}

static void expect(const char *src, const char *data, const char *want)
{
	char err[512], *out = NULL;
	int rc = render_str(src, data, NULL, &out, err, sizeof err);
	if (rc)
		ng_test_fail(__FILE__, __LINE__, "%s: %s", src, err);
	ASSERT_EQ_STR(out, want);
	free(out);
}

static void test_bomb_nested_ranges(void)
{
	char err[512], *out = NULL;
	uint64_t t0 = ng_test_now_ms();
	int rc = render_str("{% for a in (1..100000) %}{% for b in (1..100000) %}{% for c in "
	                    "(1..100000) %}x{% endfor %}{% endfor %}{% endfor %}",
	                    NULL, NULL, &out, err, sizeof err);
	ASSERT_EQ_INT(rc, -E2BIG);
	ASSERT_CONTAINS(err, "limit");
	ASSERT_CMP_INT(ng_test_now_ms() - t0, <, 5000);
	free(out);
}

static void test_bomb_output_size(void)
{
	struct ng_liquid_limits lim = {.max_output = 10000};
	struct ng_liquid_render_opts o = {.limits = &lim};
	char err[512], *out = NULL;
	int rc = render_str("{% for a in (1..5000) %}0123456789{% endfor %}", NULL, &o, &out, err,
	                    sizeof err);
	ASSERT_EQ_INT(rc, -E2BIG);
	ASSERT_CONTAINS(err, "output");
	free(out);
}

static void test_bomb_append_chain(void)
{
	/* Each pass doubles the string: 2^40 bytes if nothing stopped it. */
	char err[512], *out = NULL;
	uint64_t t0 = ng_test_now_ms();
	int rc = render_str("{% assign s = 'xxxxxxxxxxxxxxxx' %}{% for i in (1..40) %}"
	                    "{% assign s = s | append: s %}{% endfor %}{{ s | size }}",
	                    NULL, NULL, &out, err, sizeof err);
	ASSERT_EQ_INT(rc, -E2BIG);
	ASSERT_CMP_INT(ng_test_now_ms() - t0, <, 5000);
	free(out);
	/* capture of a growing capture, the other way to build strings */
	rc = render_str("{% capture s %}xxxxxxxxxxxxxxxx{% endcapture %}{% for i in (1..40) %}"
	                "{% capture s %}{{ s }}{{ s }}{% endcapture %}{% endfor %}",
	                NULL, NULL, &out, err, sizeof err);
	ASSERT_EQ_INT(rc, -E2BIG);
	free(out);
}

static int rec_load(void *ud, const char *name, const struct ng_liquid_tmpl **out, char *err,
                    size_t errlen)
{
	(void)err;
	(void)errlen;
	if (strcmp(name, "me") != 0)
		return -ENOENT;
	*out = ud;
	return 0;
}

static void test_bomb_recursive_partials(void)
{
	const char *src = "{% include 'me' %}{% include 'me' %}";
	struct ng_liquid_tmpl *t;
	char err[512];
	ASSERT_EQ_INT(ng_liquid_parse(src, strlen(src), NULL, &t, err, sizeof err), 0);
	struct ng_liquid_loader ld = {rec_load, t};
	struct ng_liquid_render_opts o = {.loader = &ld};
	struct ng_liquid_buf b = {0};
	uint64_t t0 = ng_test_now_ms();
	int rc = ng_liquid_render(t, NULL, &o, &b, err, sizeof err);
	ASSERT_EQ_INT(rc, -EINVAL);
	ASSERT_CONTAINS(err, "Nesting too deep");
	ASSERT_CMP_INT(ng_test_now_ms() - t0, <, 5000);
	ng_liquid_buf_free(&b);
	ng_liquid_free(t);
}

static void test_bomb_time_limit(void)
{
	/* Within the iteration limit but slow: sorting a large range again and again. */
	struct ng_liquid_limits lim = {.max_iterations = 100000000, .max_ms = 100};
	struct ng_liquid_render_opts o = {.limits = &lim};
	char err[512], *out = NULL;
	uint64_t t0 = ng_test_now_ms();
	int rc = render_str("{% for i in (1..100000000) %}{% if i == 0 %}{% endif %}{% endfor %}",
	                    NULL, &o, &out, err, sizeof err);
	ASSERT_EQ_INT(rc, -E2BIG);
	ASSERT_CONTAINS(err, "time limit");
	ASSERT_CMP_INT(ng_test_now_ms() - t0, <, 1000);
	free(out);
}

struct thread_arg {
	const struct ng_liquid_tmpl *t;
	json_t *data;
	int ok;
};

static void *render_many(void *p)
{
	struct thread_arg *a = p;
	struct ng_liquid_render_opts o = {.tz = "Europe/Paris", .now = 1719835200};
	struct ng_liquid_buf b = {0};
	char err[256];
	a->ok = 1;
	for (int i = 0; i < 2000; i++) {
		if (ng_liquid_render(a->t, a->data, &o, &b, err, sizeof err) != 0 ||
		    strcmp(b.s, "Ada: 3 items, 2024-07-01 14:00 CEST|a,b,c") != 0) {
			a->ok = 0;
			break;
		}
	}
	ng_liquid_buf_free(&b);
	return NULL;
}

static void test_threads(void)
{
	const char *src =
	    "{{ name }}: {{ items | size }} items, {{ 'now' | date: '%Y-%m-%d %H:%M %Z' }}"
	    "|{% for i in items %}{{ i }}{% unless forloop.last %},{% endunless %}"
	    "{% endfor %}";
	struct ng_liquid_tmpl *t;
	char err[256];
	ASSERT_EQ_INT(ng_liquid_parse(src, strlen(src), NULL, &t, err, sizeof err), 0);
	json_t *data = json_loads("{\"name\":\"Ada\",\"items\":[\"a\",\"b\",\"c\"]}", 0, NULL);
	pthread_t th[4];
	struct thread_arg args[4];
	for (int i = 0; i < 4; i++) {
		args[i] = (struct thread_arg){t, data, 0};
		pthread_create(&th[i], NULL, render_many, &args[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		ASSERT(args[i].ok);
	}
	json_decref(data);
	ng_liquid_free(t);
}

static void test_timezones(void)
{
	struct ng_liquid_render_opts o = {.tz = "America/New_York"};
	char err[256], *out;
	/* Summer and winter offsets of one zone; an explicit zone wins over the render's. */
	ASSERT_EQ_INT(render_str("{{ 1719835200 | date: '%H:%M %Z %z' }}|{{ 1704067200 | date: "
	                         "'%H:%M %Z' }}|{{ 1719835200 | date: '%H:%M %Z', 'Asia/Tokyo' }}"
	                         "|{{ '2024-07-01 08:00' | date: '%s' }}",
	                         NULL, &o, &out, err, sizeof err),
	              0);
	ASSERT_EQ_STR(out, "08:00 EDT -0400|19:00 EST|21:00 JST|1719835200");
	free(out);
	/* An unknown zone falls back to UTC rather than failing the message. */
	o.tz = "Not/AZone";
	ASSERT_EQ_INT(render_str("{{ 0 | date: '%H %Z' }}", NULL, &o, &out, err, sizeof err), 0);
	ASSERT_EQ_STR(out, "00 UTC");
	free(out);
}

static void test_money_and_tracking(void)
{
	expect("{{ '1234.5' | money }}|{{ 421.88 | money: 'EUR', 'de' }}|{{ 5 | money: 'JPY' }}"
	       "|{{ -3 | money: 'GBP' }}",
	       NULL, "$1,234.50|421,88\u00a0€|¥5|-£3.00");
	expect("{{ 'https://s.example/c?x=1#top' | tracking: 'cart reminder' }}", NULL,
	       "https://s.example/c?x=1&utm_source=nudge&utm_medium=email&utm_campaign=cart+"
	       "reminder#top");
	expect("{{ 'https://s.example/' | tracking: 'c', 'sms' }}", NULL,
	       "https://s.example/?utm_source=nudge&utm_medium=sms&utm_campaign=c");
	expect("{{ data | json }}", "{\"data\":{\"a\":[1,\"x\"]}}", "{\"a\":[1,\"x\"]}");
	expect("{{ missing | default: 'Friend' }}", NULL, "Friend");
}

static void test_syntax_errors_name_line_and_column(void)
{
	const char *src = "Hello\n  {{ name | }}\n";
	struct ng_liquid_tmpl *t;
	char err[512];
	struct ng_liquid_parse_opts o = {.name = "t.liquid", .line = 10};
	ASSERT_EQ_INT(ng_liquid_parse(src, strlen(src), &o, &t, err, sizeof err), -EINVAL);
	ASSERT_CONTAINS(err, "t.liquid:11:3:");
	ASSERT_CONTAINS(err, "Expected id");
	const char *s2 = "{{ x | no_such_filter }}";
	o.strict_filters = 1;
	ASSERT_EQ_INT(ng_liquid_parse(s2, strlen(s2), &o, &t, err, sizeof err), -EINVAL);
	ASSERT_CONTAINS(err, "Unknown filter 'no_such_filter'");
	const char *s4 = "a\n{%- liquid\n  assign x = 1\n  echo x |\n-%}";
	ASSERT_EQ_INT(ng_liquid_parse(s4, strlen(s4), NULL, &t, err, sizeof err), -EINVAL);
	ASSERT_CONTAINS(err, "line 4");
	const char *s3 = "{% for x in y %}";
	ASSERT_EQ_INT(ng_liquid_parse(s3, strlen(s3), NULL, &t, err, sizeof err), -EINVAL);
	ASSERT_CONTAINS(err, "'for' tag was never closed");
}

static void test_cache_parses_once(void)
{
	struct ng_liquid_cache *c = ng_liquid_cache_new();
	const struct ng_liquid_tmpl *a, *b, *d;
	char err[256];
	const char *src = "{{ x }}";
	ASSERT_EQ_INT(ng_liquid_cache_get(c, src, strlen(src), NULL, &a, err, sizeof err), 0);
	ASSERT_EQ_INT(ng_liquid_cache_get(c, "{{ x }}", 7, NULL, &b, err, sizeof err), 0);
	ASSERT(a == b);
	ASSERT_EQ_INT(ng_liquid_cache_get(c, "{{ y }}", 7, NULL, &d, err, sizeof err), 0);
	ASSERT(a != d);
	ASSERT_EQ_INT(ng_liquid_cache_get(c, "{{ y ", 5, NULL, &d, err, sizeof err), -EINVAL);
	ng_liquid_cache_free(c);
}

NG_TESTS(NG_TEST(test_bomb_nested_ranges), NG_TEST(test_bomb_output_size),
         NG_TEST(test_bomb_append_chain), NG_TEST(test_bomb_recursive_partials),
         NG_TEST(test_bomb_time_limit), NG_TEST(test_threads), NG_TEST(test_timezones),
         NG_TEST(test_money_and_tracking), NG_TEST(test_syntax_errors_name_line_and_column),
         NG_TEST(test_cache_parses_once))
