/*
 * test_liquid_spec.c — runs the liquid-spec "basics" conformance cases (../shared/liquid-spec/
 * basics.json) through the Liquid engine: one ok line per spec file, then a summary with the
 * passes, failures, cases set aside because they need host objects ("drops"), inline errors or
 * other features this engine does not have, and the complexity level cleared (the highest level
 * below the first failure). Any failure fails the run.
 *
 * A case passes when its output equals `expected`, or — for an `errors` case — when parsing
 * (parse_error) or rendering (render_error) fails with a message containing every listed fragment
 * (case-insensitively) and "line N" when the case names a line. Cases with a null `expected`
 * only need to render. 'now' is fixed at 2024-01-01 00:01:58 UTC, as the spec's expectations
 * assume.
 */
#include "liquid.h"
#include "testlib.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static json_t *spec;

static json_t *load_spec(void)
{
	if (spec)
		return spec;
	char path[1024];
	const char *top = getenv("NUDGE_TEST_TOP");
	snprintf(path, sizeof path, "%s/../shared/liquid-spec/basics.json", top ? top : ".");
	json_error_t e;
	spec = json_load_file(path, 0, &e);
	if (!spec)
		spec = json_load_file("../shared/liquid-spec/basics.json", 0, &e);
	if (!spec)
		ng_test_fail(__FILE__, __LINE__, "cannot read %s: %s", path, e.text);
	return spec;
}

struct fs {
	json_t *files;
	struct {
		char *name;
		struct ng_liquid_tmpl *t;
	} parsed[64];
	int n;
};

static int fs_load(void *ud, const char *name, const struct ng_liquid_tmpl **out, char *err,
                   size_t errlen)
{
	struct fs *fs = ud;
	for (int i = 0; i < fs->n; i++)
		if (strcmp(fs->parsed[i].name, name) == 0) {
			*out = fs->parsed[i].t;
			return 0;
		}
	json_t *src = fs->files ? json_object_get(fs->files, name) : NULL;
	if (!src && fs->files) {
		/* Some specs name partials with their extension. */
		char alt[512];
		snprintf(alt, sizeof alt, "%s.liquid", name);
		src = json_object_get(fs->files, alt);
	}
	if (!json_is_string(src))
		return -ENOENT;
	if (fs->n == 64)
		return -E2BIG;
	struct ng_liquid_parse_opts o = {.name = name};
	struct ng_liquid_tmpl *t;
	int rc =
	    ng_liquid_parse(json_string_value(src), json_string_length(src), &o, &t, err, errlen);
	if (rc)
		return rc;
	fs->parsed[fs->n].name = strdup(name);
	fs->parsed[fs->n].t = t;
	fs->n++;
	*out = t;
	return 0;
}

static void fs_free(struct fs *fs)
{
	for (int i = 0; i < fs->n; i++) {
		free(fs->parsed[i].name);
		ng_liquid_free(fs->parsed[i].t);
	}
	fs->n = 0;
}

static int contains_ci(const char *hay, const char *needle)
{
	size_t n = strlen(needle);
	for (const char *p = hay; *p; p++)
		if (strncasecmp(p, needle, n) == 0)
			return 1;
	return n == 0;
}

/* Cases the engine cannot run: host objects, inline errors, Ruby-only behaviour. */
static const char *needs(const json_t *c)
{
	json_t *rf = json_object_get(c, "required_features");
	if (json_array_size(rf) == 0)
		return NULL;
	return json_string_value(json_array_get(rf, 0));
}

/* Runs one case; returns 1 when it passes, with a reason in why otherwise. */
static int run_case(const json_t *c, char *why, size_t whylen)
{
	const char *src = json_string_value(json_object_get(c, "template"));
	const char *name = json_string_value(json_object_get(c, "name"));
	json_t *env = json_object_get(c, "environment");
	json_t *errors = json_object_get(c, "errors");
	json_t *expected = json_object_get(c, "expected");
	struct fs fs = {.files = json_object_get(c, "filesystem")};
	struct ng_liquid_loader ld = {fs_load, &fs};
	struct ng_liquid_limits lim = {0};
	/* The resource-limit specs name their limits only in prose (the hint). */
	if (strcmp(name, "cumulative_render_score_across_partials") == 0) {
		lim.max_iterations = 25;
		lim.max_tmpl_iterations = 100;
	} else if (strcmp(name, "per_template_limit_still_works_with_cumulative") == 0) {
		lim.max_iterations = 1000;
		lim.max_tmpl_iterations = 10;
	}
	struct ng_liquid_render_opts o = {.limits = &lim, .loader = &ld, .now = 1704067318};
	char err[1024] = "";
	struct ng_liquid_tmpl *t = NULL;
	/* Cases written for liquid-ruby's lax mode say so; the engine's default is strict. */
	struct ng_liquid_parse_opts po = {
	    .lax = json_is_string(json_object_get(c, "error_mode")) &&
	           strcmp(json_string_value(json_object_get(c, "error_mode")), "lax") == 0};
	int prc = ng_liquid_parse(src, strlen(src), &po, &t, err, sizeof err);
	struct ng_liquid_buf out = {0};
	int rrc = 0;
	if (prc == 0)
		rrc = ng_liquid_render(t, env, &o, &out, err, sizeof err);
	int pass = 0;
	if (errors) {
		json_t *pe = json_object_get(errors, "parse_error");
		json_t *re = json_object_get(errors, "render_error");
		json_t *want = pe ? pe : re;
		int failed_right = pe ? prc != 0 : (prc == 0 && rrc != 0);
		pass = failed_right;
		size_t i;
		json_t *frag;
		json_array_foreach(want, i, frag)
		{
			if (pass && !contains_ci(err, json_string_value(frag))) {
				pass = 0;
				snprintf(why, whylen, "error \"%s\" lacks \"%s\"", err,
				         json_string_value(frag));
			}
		}
		json_t *line = json_object_get(errors, "line");
		if (pass && json_is_integer(line)) {
			char l[32];
			snprintf(l, sizeof l, "line %lld", (long long)json_integer_value(line));
			if (!contains_ci(err, l)) {
				pass = 0;
				snprintf(why, whylen, "error \"%s\" lacks \"%s\"", err, l);
			}
		}
		if (!failed_right)
			snprintf(why, whylen, "expected a %s error, got %s \"%s\"",
			         pe ? "parse" : "render",
			         prc   ? "parse error"
			         : rrc ? "render error"
			               : "output",
			         prc || rrc ? err : (out.s ? out.s : ""));
	} else if (prc || rrc) {
		snprintf(why, whylen, "%s error: %s", prc ? "parse" : "render", err);
	} else if (json_is_null(expected) || !expected) {
		pass = 1;
	} else {
		const char *exp = json_string_value(expected);
		pass = exp && out.s && strcmp(exp, out.s) == 0;
		if (!pass)
			snprintf(why, whylen, "expected \"%s\", got \"%s\"", exp ? exp : "?",
			         out.s ? out.s : "");
	}
	ng_liquid_buf_free(&out);
	ng_liquid_free(t);
	fs_free(&fs);
	return pass;
}

/* Runs every case of one spec file (or every file when source is NULL). */
static void run_group(const char *source, int summary)
{
	json_t *all = load_spec();
	size_t i;
	json_t *c;
	int passed = 0, failed = 0, skipped = 0, skip_drops = 0, skip_inline = 0, skip_other = 0;
	long long first_fail = -1, level = -1, max_level = -1;
	/* The level cleared needs the cases in complexity order. */
	size_t n = json_array_size(all);
	long long *cx = calloc(n, sizeof *cx);
	int *ok = calloc(n, sizeof *ok);
	json_array_foreach(all, i, c)
	{
		const char *src = json_string_value(json_object_get(c, "source"));
		ok[i] = -1;
		if (source && strcmp(src, source) != 0)
			continue;
		const char *need = needs(c);
		if (need) {
			skipped++;
			if (strstr(need, "drops"))
				skip_drops++;
			else if (strcmp(need, "inline_errors") == 0)
				skip_inline++;
			else
				skip_other++;
			continue;
		}
		char why[2048] = "";
		cx[i] = json_integer_value(json_object_get(c, "complexity"));
		ok[i] = run_case(c, why, sizeof why);
		if (ok[i]) {
			passed++;
		} else {
			failed++;
			printf("# FAIL %s (%s, complexity %lld): %s\n",
			       json_string_value(json_object_get(c, "name")), src, cx[i], why);
		}
	}
	for (size_t k = 0; k < n; k++)
		if (ok[k] == 0 && (first_fail < 0 || cx[k] < first_fail))
			first_fail = cx[k];
	for (size_t k = 0; k < n; k++) {
		if (ok[k] != 1)
			continue;
		if (cx[k] > max_level)
			max_level = cx[k];
		if ((first_fail < 0 || cx[k] < first_fail) && cx[k] > level)
			level = cx[k];
	}
	free(cx);
	free(ok);
	if (summary)
		printf("# liquid-spec basics: %d passed, %d failed, %d set aside (drops %d, "
		       "inline errors %d, other Ruby-only %d); complexity level cleared %lld%s\n",
		       passed, failed, skipped, skip_drops, skip_inline, skip_other, level,
		       failed ? "" : " (every case)");
	if (failed)
		ng_test_fail(__FILE__, __LINE__, "%d of %d liquid-spec cases failed", failed,
		             passed + failed);
}

#define GROUP(fn, file)                                                                            \
	static void fn(void)                                                                       \
	{                                                                                          \
		run_group("specs/basics/" file, 0);                                                \
	}

GROUP(blank_and_empty, "blank-and-empty.yml")
GROUP(boolean_chains, "boolean-chains.yml")
GROUP(cycle, "cycle.yml")
GROUP(date_filters, "date-filters.yml")
GROUP(drops, "drops.yml")
GROUP(dynamic_partials, "dynamic-partials.yml")
GROUP(dynamic_partials2, "dynamic_partials.yml")
GROUP(error_handling, "error-handling.yml")
GROUP(expressions, "expressions.yml")
GROUP(filter_chains, "filter-chains.yml")
GROUP(filter_edge_cases, "filter-edge-cases.yml")
GROUP(filter_nil_safety, "filter-nil-safety.yml")
GROUP(for_loops, "for-loops.yml")
GROUP(inline_errors, "inline-errors.yml")
GROUP(interrupts, "interrupts.yml")
GROUP(nested_parameters, "nested-parameters.yml")
GROUP(nil_handling, "nil-handling.yml")
GROUP(partials, "partials.yml")
GROUP(recursion, "recursion.yml")
GROUP(resource_limits, "resource-limits.yml")
GROUP(scopes, "scopes.yml")
GROUP(security, "security.yml")
GROUP(specs, "specs.yml")
GROUP(string_filters, "string-filters.yml")
GROUP(tablerow, "tablerow.yml")
GROUP(truthiness, "truthiness.yml")
GROUP(truthiness_matrix, "truthiness_matrix.yml")
GROUP(type_coercion, "type-coercion.yml")

static void summary(void)
{
	run_group(NULL, 1);
}

NG_TESTS(NG_TEST(blank_and_empty), NG_TEST(boolean_chains), NG_TEST(cycle), NG_TEST(date_filters),
         NG_TEST(drops), NG_TEST(dynamic_partials), NG_TEST(dynamic_partials2),
         NG_TEST(error_handling), NG_TEST(expressions), NG_TEST(filter_chains),
         NG_TEST(filter_edge_cases), NG_TEST(filter_nil_safety), NG_TEST(for_loops),
         NG_TEST(inline_errors), NG_TEST(interrupts), NG_TEST(nested_parameters),
         NG_TEST(nil_handling), NG_TEST(partials), NG_TEST(recursion), NG_TEST(resource_limits),
         NG_TEST(scopes), NG_TEST(security), NG_TEST(specs), NG_TEST(string_filters),
         NG_TEST(tablerow), NG_TEST(truthiness), NG_TEST(truthiness_matrix), NG_TEST(type_coercion),
         NG_TEST(summary))
