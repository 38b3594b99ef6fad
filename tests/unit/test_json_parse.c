/*
 * test_json_parse.c — core/json_parse.c against jansson's own reader on the texts nudge meets
 * (webhooks, snapshots, claimed rows) and on the refusals the intake reports: the same values, the
 * same accept or refuse, errors with a line and a sentence, bytes that are not UTF-8 named as such.
 * tests/fuzz/fuzz_json.c does the same on any bytes.
 */
#include "json_parse.h"
#include "testlib.h"

#include <stdlib.h>
#include <string.h>

static const char *top(void)
{
	const char *t = getenv("NUDGE_TEST_TOP");
	return t ? t : ".";
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		ng_test_fail(__FILE__, __LINE__, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = malloc((size_t)n + 1);
	ASSERT_EQ_INT(fread(b, 1, (size_t)n, f), n);
	b[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return b;
}

/* Both readers on text: the same answer, and the same value when they accept. */
static int same_as_jansson(const char *text, size_t len, size_t flags)
{
	json_error_t e1, e2;
	json_t *ours = ng_json_parse(text, len, flags, &e1);
	json_t *theirs = json_loadb(text, len, flags, &e2);
	int ok = !ours == !theirs && (!ours || json_equal(ours, theirs));
	if (!ok)
		fprintf(stderr, "# differs on %.*s: ours %s, jansson %s\n", (int)len, text,
		        ours ? "accepts" : e1.text, theirs ? "accepts" : e2.text);
	json_decref(ours);
	json_decref(theirs);
	return ok;
}

static void test_same_values_as_jansson(void)
{
	static const char *const texts[] = {
	    "{}",
	    "[]",
	    " [ 1 , 2 ] ",
	    "{\"a\": {\"b\": [true, false, null]}}",
	    "[0, -0, 1.5, -2.5e-3, 1E10, 9223372036854775807, -9223372036854775808]",
	    "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\", \"\\u00e9\\u20ac\\ud83d\\ude00\", \"plain\"]",
	    "{\"k\": 1, \"k\": 2}",
	    "[\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9b\x92\"]",
	    "[1e400]",
	    "[1e-400]",
	    "[9223372036854775808]",
	    "[-9223372036854775809]",
	    "[01]",
	    "[1.]",
	    "[.5]",
	    "[1e]",
	    "[-]",
	    "[tru]",
	    "[true",
	    "{\"a\" 1}",
	    "{\"a\":1,}",
	    "[1,]",
	    "[\"\\u0000\"]",
	    "[\"\\ud800\"]",
	    "[\"\\udc00\"]",
	    "[\"\\x\"]",
	    "[\"a\tb\"]",
	    "\"top\"",
	    "42",
	    "",
	    "   ",
	    "[] []",
	    "{\"a\":1} x",
	};
	for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
		ASSERT(same_as_jansson(texts[i], strlen(texts[i]), 0));
		ASSERT(same_as_jansson(texts[i], strlen(texts[i]), JSON_REJECT_DUPLICATES));
		ASSERT(same_as_jansson(texts[i], strlen(texts[i]), JSON_DECODE_ANY));
	}
	/* Every shared fixture, as the intake reads them. */
	static const char *const fixtures[] = {
	    "shopify/carts_update.json",     "shopify/checkouts_create.json",
	    "shopify/checkouts_update.json", "shopify/customers_create.json",
	    "shopify/orders_create.json",    "shopify/orders_paid.json",
	    "woocommerce/order_created.json"};
	for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) {
		char path[512];
		snprintf(path, sizeof path, "%s/../shared/fixtures/%s", top(), fixtures[i]);
		size_t len;
		char *body = slurp(path, &len);
		ASSERT(same_as_jansson(body, len, JSON_REJECT_DUPLICATES));
		free(body);
	}
}

static void test_big_ids_stay_exact(void)
{
	json_t *v = ng_json_parse_str("{\"id\": 603851970716743426}", 0, NULL);
	ASSERT(v != NULL);
	ASSERT(json_integer_value(json_object_get(v, "id")) == 603851970716743426LL);
	json_decref(v);
}

static void test_errors_say_where_and_what(void)
{
	json_error_t e;
	ASSERT(ng_json_parse_str("{\"a\": 1,\n \"b\": }", 0, &e) == NULL);
	ASSERT_EQ_INT(e.line, 2);
	ASSERT_CONTAINS(e.text, "invalid token");
	ASSERT(ng_json_parse_str("{\"a\": 1, \"a\": 2}", JSON_REJECT_DUPLICATES, &e) == NULL);
	ASSERT_EQ_INT(json_error_code(&e), json_error_duplicate_key);
	/* An overlong '/', then a lone continuation byte. */
	ASSERT(ng_json_parse_str("{\"a\": \"\xc0\xaf\x80\"}", 0, &e) == NULL);
	ASSERT_EQ_INT(json_error_code(&e), json_error_invalid_utf8);
	ASSERT_CONTAINS(e.text, "unable to decode byte 0xc0");
	/* UTF-16 surrogates written in UTF-8 are not UTF-8. */
	ASSERT(ng_json_parse_str("[\"\xed\xa0\x80\"]", 0, &e) == NULL);
	ASSERT_EQ_INT(json_error_code(&e), json_error_invalid_utf8);
	ASSERT(ng_json_parse_str("\"only a string\"", 0, &e) == NULL);
	ASSERT_CONTAINS(e.text, "'[' or '{' expected");
	ASSERT(ng_json_parse("[1]\0[2]", 7, 0, &e) == NULL); /* a NUL byte is never JSON */
	/* Deeper than 2048 levels. */
	enum { DEEP = 10000 };
	char *deep = malloc(2 * DEEP + 1);
	memset(deep, '[', DEEP);
	memset(deep + DEEP, ']', DEEP);
	deep[2 * DEEP] = '\0';
	ASSERT(ng_json_parse_str(deep, 0, &e) == NULL);
	ASSERT_CONTAINS(e.text, "depth");
	deep[NG_JSON_PARSE_MAX_DEPTH] = '\0';
	memset(deep + NG_JSON_PARSE_MAX_DEPTH / 2, ']', NG_JSON_PARSE_MAX_DEPTH / 2);
	json_t *ok = ng_json_parse_str(deep, 0, &e);
	ASSERT(ok != NULL);
	json_decref(ok);
	free(deep);
}

NG_TESTS(NG_TEST(test_same_values_as_jansson), NG_TEST(test_big_ids_stay_exact),
         NG_TEST(test_errors_say_where_and_what))
