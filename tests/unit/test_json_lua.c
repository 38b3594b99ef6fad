/*
 * test_json_lua.c — jansson ⇄ Lua: big integers survive exactly, [] and {} survive, nulls, the
 * script library, and every refusal names its place.
 */
#include "json_lua.h"
#include "testlib.h"

#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>

static lua_State *new_state(void)
{
	lua_State *L = luaL_newstate();
	luaL_openlibs(L);
	ng_json_lua_open(L);
	lua_setglobal(L, "json");
	return L;
}

/* Runs a chunk that returns one value; fails the test on a Lua error. */
static void run(lua_State *L, const char *src)
{
	if (luaL_dostring(L, src) != LUA_OK)
		ng_test_fail(__FILE__, __LINE__, "lua: %s", lua_tostring(L, -1));
}

static json_t *parse(const char *text)
{
	json_error_t e;
	json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
	if (!v)
		ng_test_fail(__FILE__, __LINE__, "bad test JSON: %s", e.text);
	return v;
}

static char *dump(const json_t *v)
{
	return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

static void roundtrip(lua_State *L, const char *text)
{
	json_t *in = parse(text), *out = NULL;
	int top = lua_gettop(L);
	ASSERT_EQ_INT(ng_json_lua_push(L, in, 0), 0);
	ASSERT_EQ_INT(lua_gettop(L), top + 1);
	char err[256];
	if (ng_json_lua_to(L, -1, &out, err, sizeof err) != 0)
		ng_test_fail(__FILE__, __LINE__, "%s: %s", text, err);
	lua_pop(L, 1);
	char *a = dump(in), *b = dump(out);
	ASSERT_EQ_STR(b, a);
	ASSERT(json_equal(in, out));
	free(a);
	free(b);
	json_decref(in);
	json_decref(out);
}

static void test_roundtrip_big_integers(void)
{
	lua_State *L = new_state();
	/* Above 2^53 a double would round 820982911946154508 to ...500. */
	json_t *v = parse("{\"id\":820982911946154508,\"max\":9223372036854775807,"
	                  "\"min\":-9223372036854775808,\"r\":0.1}");
	ASSERT_EQ_INT(ng_json_lua_push(L, v, 0), 0);
	lua_setglobal(L, "p");
	run(L, "return math.type(p.id) == 'integer' and p.id == 820982911946154508 "
	       "and tostring(p.id) == '820982911946154508' and p.max == math.maxinteger "
	       "and p.min == math.mininteger and math.type(p.r) == 'float'");
	ASSERT(lua_toboolean(L, -1));
	lua_pop(L, 1);
	lua_getglobal(L, "p");
	json_t *out = NULL;
	ASSERT_EQ_INT(ng_json_lua_to(L, -1, &out, NULL, 0), 0);
	ASSERT(json_is_integer(json_object_get(out, "id")));
	ASSERT_EQ_INT(json_integer_value(json_object_get(out, "id")), 820982911946154508LL);
	ASSERT_EQ_INT(json_integer_value(json_object_get(out, "min")), INT64_MIN);
	ASSERT(json_is_real(json_object_get(out, "r")));
	json_decref(out);
	json_decref(v);
	/* A Lua float with an integral value stays a real, an integer stays an integer. */
	run(L, "return {a = 3.0, b = 3, c = 2^63}");
	ASSERT_EQ_INT(ng_json_lua_to(L, -1, &out, NULL, 0), 0);
	ASSERT(json_is_real(json_object_get(out, "a")));
	ASSERT(json_is_integer(json_object_get(out, "b")));
	ASSERT(json_is_real(json_object_get(out, "c")));
	json_decref(out);
	lua_close(L);
}

static void test_roundtrip_shapes(void)
{
	lua_State *L = new_state();
	roundtrip(L, "{}");
	roundtrip(L, "[]");
	roundtrip(L, "{\"a\":[],\"b\":{},\"c\":[{}],\"d\":[[[]]]}");
	roundtrip(L, "[1,\"two\",3.5,true,false,null,{\"x\":null}]");
	roundtrip(L, "{\"s\":\"caf\\u00e9 \\u2603 \\\"q\\\"\",\"n\":-0.5,\"e\":1e300}");
	roundtrip(L, "\"just a string\"");
	roundtrip(L, "42");
	roundtrip(L, "null");
	roundtrip(L, "{\"ab\":\"x\\u0000y\"}"); /* a NUL inside a string */
	lua_close(L);
}

static void test_null_sentinel_and_flag(void)
{
	lua_State *L = new_state();
	json_t *v = parse("{\"a\":null,\"b\":1,\"l\":[null,2]}");
	ASSERT_EQ_INT(ng_json_lua_push(L, v, 0), 0);
	lua_setglobal(L, "p");
	run(L, "return p.a == json.null and type(p.a) == 'userdata' and #p.l == 2 "
	       "and p.l[1] == json.null");
	ASSERT(lua_toboolean(L, -1));
	lua_pop(L, 1);
	/* With NULL_AS_NIL object members vanish, array slots keep the sentinel. */
	ASSERT_EQ_INT(ng_json_lua_push(L, v, NG_JSON_LUA_NULL_AS_NIL), 0);
	lua_setglobal(L, "q");
	run(L, "return q.a == nil and q.b == 1 and q.l[1] == json.null and #q.l == 2");
	ASSERT(lua_toboolean(L, -1));
	lua_pop(L, 1);
	ng_json_lua_push_null(L);
	ASSERT(ng_json_lua_is_null(L, -1));
	lua_pop(L, 1);
	lua_pushnil(L);
	ASSERT(!ng_json_lua_is_null(L, -1));
	lua_pop(L, 1);
	json_decref(v);
	lua_close(L);
}

static void test_lua_tables_to_json(void)
{
	lua_State *L = new_state();
	json_t *out = NULL;
	char err[256];
	run(L, "local shared = {1, 2} "
	       "return {list = {'a', 'b'}, obj = {x = 1}, empty = {}, arr = json.array(), "
	       "one = shared, two = shared, n = json.null, f = false}");
	if (ng_json_lua_to(L, -1, &out, err, sizeof err))
		ng_test_fail(__FILE__, __LINE__, "%s", err);
	char *s = dump(out);
	ASSERT_EQ_STR(s, "{\"arr\":[],\"empty\":{},\"f\":false,\"list\":[\"a\",\"b\"],\"n\":null,"
	                 "\"obj\":{\"x\":1},\"one\":[1,2],\"two\":[1,2]}");
	free(s);
	json_decref(out);
	lua_pop(L, 1);
	/* A decoded empty object stays an object after the script adds nothing to it. */
	run(L, "local t = json.decode('{\"o\":{},\"a\":[]}') return t");
	ASSERT_EQ_INT(ng_json_lua_to(L, -1, &out, err, sizeof err), 0);
	s = dump(out);
	ASSERT_EQ_STR(s, "{\"a\":[],\"o\":{}}");
	free(s);
	json_decref(out);
	lua_close(L);
}

static void expect_refusal(lua_State *L, const char *src, const char *want)
{
	run(L, src);
	json_t *out = (json_t *)1;
	char err[256];
	int rc = ng_json_lua_to(L, -1, &out, err, sizeof err);
	lua_pop(L, 1);
	if (rc != -EINVAL)
		ng_test_fail(__FILE__, __LINE__, "%s: rc %d", src, rc);
	ASSERT(out == NULL);
	ASSERT_EQ_STR(err, want);
}

static void test_refusals_name_the_place(void)
{
	lua_State *L = new_state();
	int top = lua_gettop(L);
	expect_refusal(L, "return {data = {items = {{}, {price = print}}}}",
	               "cannot convert to JSON: a function has no JSON form at "
	               "'data.items[2].price'");
	expect_refusal(L, "local t = {} t.self = t return {a = t}",
	               "cannot convert to JSON: the table refers to itself (a cycle) at 'a.self'");
	expect_refusal(L, "return {x = {1, 2, y = 3}}",
	               "cannot convert to JSON: the table mixes array items (1, 2, …) and named "
	               "keys ('y') at 'x'");
	expect_refusal(L, "return {x = {[1] = 1, [3] = 3}}",
	               "cannot convert to JSON: the table's integer keys are not 1..n (key 3, 2 "
	               "items) at 'x'");
	expect_refusal(L, "return {x = {[0] = 1}}",
	               "cannot convert to JSON: the table has the integer key 0 (array keys run "
	               "1..n) at 'x'");
	expect_refusal(L, "return {[true] = 1}",
	               "cannot convert to JSON: the table has a key that is a boolean, not a "
	               "string or an integer");
	expect_refusal(L, "return {n = 0/0}",
	               "cannot convert to JSON: the number is not finite at 'n'");
	expect_refusal(L, "return {s = '\\xff\\xfe'}",
	               "cannot convert to JSON: the string is not valid UTF-8 at 's'");
	expect_refusal(L, "return {co = coroutine.create(print)}",
	               "cannot convert to JSON: a coroutine has no JSON form at 'co'");
	expect_refusal(L, "local a = json.array({1}) a.k = 2 return a",
	               "cannot convert to JSON: the table is a json.array but has the key 'k'");
	expect_refusal(L, "local o = json.object() o[1] = 2 return {o = o}",
	               "cannot convert to JSON: the table is a json.object but has the integer "
	               "key 1 at 'o'");
	/* The path of a deep value is cut to fit; the sentence still says what and where. */
	run(L, "local t = {} local c = t for i = 1, 250 do c.n = {} c = c.n end return t");
	json_t *out = NULL;
	char err[512];
	ASSERT_EQ_INT(ng_json_lua_to(L, -1, &out, err, sizeof err), -EINVAL);
	lua_pop(L, 1);
	ASSERT_CONTAINS(err, "cannot convert to JSON: the value is nested deeper than 200 levels "
	                     "at 'n.n.n.n.n.n");
	ASSERT_EQ_INT(lua_gettop(L), top);
	lua_close(L);
}

static void test_too_deep_json(void)
{
	lua_State *L = new_state();
	char text[2 * 300 + 1];
	memset(text, '[', 300);
	memset(text + 300, ']', 300);
	text[600] = '\0';
	json_t *v = parse(text);
	int top = lua_gettop(L);
	ASSERT_EQ_INT(ng_json_lua_push(L, v, 0), -E2BIG);
	ASSERT_EQ_INT(lua_gettop(L), top);
	json_decref(v);
	lua_close(L);
}

static void test_script_library(void)
{
	lua_State *L = new_state();
	run(L, "local t = json.decode('{\"id\":820982911946154508,\"a\":[1,{}],\"z\":null}') "
	       "assert(t.id == 820982911946154508 and json.is_array(t.a) and not json.is_array(t)) "
	       "assert(getmetatable(t.a) == 'json.array' and getmetatable(t) == 'json.object') "
	       "assert(not pcall(setmetatable, t, {})) "
	       "local bad, msg = json.decode('{\"a\":') "
	       "assert(bad == nil and msg:find('json.decode'), msg) "
	       "local ok, e = pcall(json.encode, {f = print}) "
	       "assert(not ok and e:find('a function has no JSON form at .f.'), e) "
	       "assert(not pcall(json.array, setmetatable({}, {}))) "
	       "return json.encode({b = 1, a = {t, json.array(), {}}, n = json.null})");
	ASSERT_EQ_STR(lua_tostring(L, -1),
	              "{\"a\":[{\"a\":[1,{}],\"id\":820982911946154508,\"z\":null},[],{}],\"b\":1,"
	              "\"n\":null}");
	lua_close(L);
}

static void test_mark_from_c(void)
{
	lua_State *L = new_state();
	lua_newtable(L);
	ng_json_lua_mark(L, -1, NG_JSON_LUA_ARRAY);
	ASSERT(ng_json_lua_is(L, -1, NG_JSON_LUA_ARRAY));
	ASSERT(!ng_json_lua_is(L, -1, NG_JSON_LUA_OBJECT));
	json_t *out = NULL;
	ASSERT_EQ_INT(ng_json_lua_to(L, -1, &out, NULL, 0), 0);
	ASSERT(json_is_array(out));
	json_decref(out);
	ng_json_lua_mark(L, -1, NG_JSON_LUA_OBJECT);
	ASSERT(ng_json_lua_is(L, -1, NG_JSON_LUA_OBJECT));
	lua_close(L);
}

NG_TESTS(NG_TEST(test_roundtrip_big_integers), NG_TEST(test_roundtrip_shapes),
         NG_TEST(test_null_sentinel_and_flag), NG_TEST(test_lua_tables_to_json),
         NG_TEST(test_refusals_name_the_place), NG_TEST(test_too_deep_json),
         NG_TEST(test_script_library), NG_TEST(test_mark_from_c), )
