/*
 * json_lua.c — jansson ⇄ Lua conversion and the `json` library for scripts (rules in json_lua.h).
 */
#include "json_lua.h"
#include "ng.h"

#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The address is the sentinel; its value is never read. */
static const char null_sentinel = 0;

static const char *const MT_NAME[] = {
    [NG_JSON_LUA_ARRAY] = "json.array",
    [NG_JSON_LUA_OBJECT] = "json.object",
};

void ng_json_lua_push_null(lua_State *L)
{
	lua_pushlightuserdata(L, (void *)&null_sentinel);
}

int ng_json_lua_is_null(lua_State *L, int idx)
{
	return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == &null_sentinel;
}

/* Pushes the marker metatable for kind, creating it on first use in this state. */
static void push_mt(lua_State *L, enum ng_json_lua_kind kind)
{
	if (luaL_newmetatable(L, MT_NAME[kind])) {
		/* getmetatable() shows the name, and setmetatable() on a marked table is refused.
		 */
		lua_pushstring(L, MT_NAME[kind]);
		lua_setfield(L, -2, "__metatable");
	}
}

void ng_json_lua_mark(lua_State *L, int idx, enum ng_json_lua_kind kind)
{
	idx = lua_absindex(L, idx);
	push_mt(L, kind);
	lua_setmetatable(L, idx);
}

int ng_json_lua_is(lua_State *L, int idx, enum ng_json_lua_kind kind)
{
	if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx))
		return 0;
	luaL_getmetatable(L, MT_NAME[kind]);
	int same = lua_rawequal(L, -1, -2);
	lua_pop(L, 2);
	return same;
}

/* ---- JSON → Lua ------------------------------------------------------------------------------ */

struct push_ctx {
	const json_t *v;
	int flags;
	int rc;
};

static int push_value(lua_State *L, struct push_ctx *c, const json_t *v, int depth)
{
	if (depth > NG_JSON_LUA_MAX_DEPTH)
		return -E2BIG;
	luaL_checkstack(L, 4, "JSON nested too deeply");
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		lua_createtable(L, 0, (int)json_object_size(v));
		const char *key;
		size_t klen;
		json_t *m;
		json_object_keylen_foreach((json_t *)v, key, klen, m)
		{
			if (json_is_null(m) && (c->flags & NG_JSON_LUA_NULL_AS_NIL))
				continue;
			lua_pushlstring(L, key, klen);
			int rc = push_value(L, c, m, depth + 1);
			if (rc)
				return rc;
			lua_rawset(L, -3);
		}
		ng_json_lua_mark(L, -1, NG_JSON_LUA_OBJECT);
		return 0;
	}
	case JSON_ARRAY: {
		size_t n = json_array_size(v);
		lua_createtable(L, (int)n, 0);
		for (size_t i = 0; i < n; i++) {
			int rc = push_value(L, c, json_array_get(v, i), depth + 1);
			if (rc)
				return rc;
			lua_rawseti(L, -2, (lua_Integer)i + 1);
		}
		ng_json_lua_mark(L, -1, NG_JSON_LUA_ARRAY);
		return 0;
	}
	case JSON_STRING:
		lua_pushlstring(L, json_string_value(v), json_string_length(v));
		return 0;
	case JSON_INTEGER:
		lua_pushinteger(L, (lua_Integer)json_integer_value(v));
		return 0;
	case JSON_REAL:
		lua_pushnumber(L, (lua_Number)json_real_value(v));
		return 0;
	case JSON_TRUE:
		lua_pushboolean(L, 1);
		return 0;
	case JSON_FALSE:
		lua_pushboolean(L, 0);
		return 0;
	case JSON_NULL:
		ng_json_lua_push_null(L);
		return 0;
	}
	return -EINVAL;
}

static int push_protected(lua_State *L)
{
	struct push_ctx *c = lua_touserdata(L, 1);
	c->rc = push_value(L, c, c->v, 0);
	return c->rc ? 0 : 1;
}

int ng_json_lua_push(lua_State *L, const json_t *v, int flags)
{
	struct push_ctx c = {.v = v, .flags = flags};
	if (!lua_checkstack(L, 3))
		return -ENOMEM;
	lua_pushcfunction(L, push_protected);
	lua_pushlightuserdata(L, &c);
	int st = lua_pcall(L, 1, 1, 0);
	if (st != LUA_OK) {
		lua_pop(L, 1);
		return st == LUA_ERRMEM ? -ENOMEM : -ECANCELED;
	}
	if (c.rc)
		lua_pop(L, 1);
	return c.rc;
}

/* ---- Lua → JSON ------------------------------------------------------------------------------ */

struct to_ctx {
	json_t *root;
	char *err;
	size_t errlen;
	int seen; /* stack index of the table of tables being converted (cycle check) */
	char path[256];
};

static int to_fail(struct to_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int to_fail(struct to_ctx *c, const char *fmt, ...)
{
	char what[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	if (c->path[0])
		snprintf(c->err, c->errlen, "cannot convert to JSON: %s at '%s'", what, c->path);
	else
		snprintf(c->err, c->errlen, "cannot convert to JSON: %s", what);
	return -EINVAL;
}

/* Attaches v to its parent (or makes it the root) at once, so a Lua error cannot leak it. */
static int attach(struct to_ctx *c, json_t *parent, const char *key, size_t klen, json_t *v)
{
	if (!v)
		return -ENOMEM;
	if (!parent) {
		c->root = v;
		return 0;
	}
	if (key)
		return json_object_setn_new(parent, key, klen, v) ? -EINVAL : 0;
	return json_array_append_new(parent, v) ? -ENOMEM : 0;
}

static int convert(lua_State *L, struct to_ctx *c, int idx, json_t *parent, const char *key,
                   size_t klen, int depth);

/* Appends ".key" or "[i]" to the path; returns the old length to restore. */
static size_t path_push(struct to_ctx *c, const char *key, size_t klen, lua_Integer i)
{
	size_t old = strlen(c->path);
	if (key)
		snprintf(c->path + old, sizeof c->path - old, "%s%.*s", old ? "." : "", (int)klen,
		         key);
	else
		snprintf(c->path + old, sizeof c->path - old, "[%lld]", (long long)i);
	return old;
}

static const char *type_words(lua_State *L, int idx)
{
	switch (lua_type(L, idx)) {
	case LUA_TNUMBER:
		return lua_isinteger(L, idx) ? "an integer" : "a number";
	case LUA_TBOOLEAN:
		return "a boolean";
	case LUA_TTABLE:
		return "a table";
	case LUA_TFUNCTION:
		return "a function";
	case LUA_TTHREAD:
		return "a coroutine";
	case LUA_TUSERDATA:
	case LUA_TLIGHTUSERDATA:
		return "a userdata";
	default:
		return lua_typename(L, lua_type(L, idx));
	}
}

static int convert_table(lua_State *L, struct to_ctx *c, int t, json_t *parent, const char *key,
                         size_t klen, int depth)
{
	/* The cycle check: seen[t] is set while t is being converted. */
	lua_pushvalue(L, t);
	if (lua_rawget(L, c->seen) != LUA_TNIL) {
		lua_pop(L, 1);
		return to_fail(c, "the table refers to itself (a cycle)");
	}
	lua_pop(L, 1);

	/* Classify the keys first: how many strings, how many integers and the largest. */
	size_t nstr = 0, nint = 0;
	lua_Integer max = 0;
	const char *a_str = NULL;
	lua_pushnil(L);
	while (lua_next(L, t)) {
		lua_pop(L, 1);
		if (lua_type(L, -1) == LUA_TSTRING) {
			if (!a_str)
				a_str = lua_tostring(L, -1);
			nstr++;
		} else if (lua_isinteger(L, -1)) {
			lua_Integer k = lua_tointeger(L, -1);
			if (k < 1) {
				lua_pop(L, 1);
				return to_fail(c,
				               "the table has the integer key %lld (array keys run "
				               "1..n)",
				               (long long)k);
			}
			if (k > max)
				max = k;
			nint++;
		} else {
			const char *w = type_words(L, -1);
			lua_pop(L, 1);
			return to_fail(
			    c, "the table has a key that is %s, not a string or an integer", w);
		}
	}
	int as_array;
	if (ng_json_lua_is(L, t, NG_JSON_LUA_ARRAY)) {
		if (nstr)
			return to_fail(c, "the table is a json.array but has the key '%s'", a_str);
		as_array = 1;
	} else if (ng_json_lua_is(L, t, NG_JSON_LUA_OBJECT)) {
		if (nint)
			return to_fail(c, "the table is a json.object but has the integer key %lld",
			               (long long)max);
		as_array = 0;
	} else {
		if (nstr && nint)
			return to_fail(c,
			               "the table mixes array items (1, 2, …) and named keys "
			               "('%s')",
			               a_str);
		as_array = nint > 0;
	}
	if (as_array && (lua_Integer)nint != max)
		return to_fail(c, "the table's integer keys are not 1..n (key %lld, %zu items)",
		               (long long)max, nint);

	json_t *v = as_array ? json_array() : json_object();
	int rc = attach(c, parent, key, klen, v);
	if (rc)
		return rc;
	lua_pushvalue(L, t);
	lua_pushboolean(L, 1);
	lua_rawset(L, c->seen);

	if (as_array) {
		for (lua_Integer i = 1; i <= max && rc == 0; i++) {
			size_t old = path_push(c, NULL, 0, i);
			lua_rawgeti(L, t, i);
			rc = convert(L, c, lua_gettop(L), v, NULL, 0, depth + 1);
			lua_pop(L, 1);
			c->path[old] = '\0';
		}
	} else {
		lua_pushnil(L);
		while (rc == 0 && lua_next(L, t)) {
			size_t kl;
			const char *k =
			    lua_tolstring(L, -2, &kl); /* a string: lua_next stays valid */
			size_t old = path_push(c, k, kl, 0);
			rc = convert(L, c, lua_gettop(L), v, k, kl, depth + 1);
			if (rc == -EINVAL && !c->err[0])
				rc = to_fail(c, "the key is not valid UTF-8");
			lua_pop(L, 1);
			c->path[old] = '\0';
		}
		if (rc)
			lua_pop(L, 1); /* the key lua_next left */
	}
	if (rc)
		return rc;
	lua_pushvalue(L, t);
	lua_pushnil(L);
	lua_rawset(L, c->seen);
	return 0;
}

static int convert(lua_State *L, struct to_ctx *c, int idx, json_t *parent, const char *key,
                   size_t klen, int depth)
{
	if (depth > NG_JSON_LUA_MAX_DEPTH)
		return to_fail(c, "the value is nested deeper than %d levels",
		               NG_JSON_LUA_MAX_DEPTH);
	luaL_checkstack(L, 8, "Lua value nested too deeply");
	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		/* Only reachable as an array hole, which the key check refuses, or as the root. */
		return attach(c, parent, key, klen, json_null());
	case LUA_TBOOLEAN:
		return attach(c, parent, key, klen, json_boolean(lua_toboolean(L, idx)));
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx))
			return attach(c, parent, key, klen,
			              json_integer((json_int_t)lua_tointeger(L, idx)));
		if (!isfinite(lua_tonumber(L, idx)))
			return to_fail(c, "the number is not finite");
		return attach(c, parent, key, klen, json_real((double)lua_tonumber(L, idx)));
	case LUA_TSTRING: {
		size_t n;
		const char *s = lua_tolstring(L, idx, &n);
		json_t *v = json_stringn(s, n);
		if (!v)
			return to_fail(c, "the string is not valid UTF-8");
		return attach(c, parent, key, klen, v);
	}
	case LUA_TLIGHTUSERDATA:
		if (ng_json_lua_is_null(L, idx))
			return attach(c, parent, key, klen, json_null());
		break;
	case LUA_TTABLE:
		return convert_table(L, c, idx, parent, key, klen, depth);
	default:
		break;
	}
	return to_fail(c, "%s has no JSON form", type_words(L, idx));
}

static int to_protected(lua_State *L)
{
	struct to_ctx *c = lua_touserdata(L, 1);
	lua_newtable(L);
	c->seen = lua_gettop(L);
	lua_pushinteger(L, convert(L, c, 2, NULL, NULL, 0, 0));
	return 1;
}

int ng_json_lua_to(lua_State *L, int idx, json_t **out, char *err, size_t errlen)
{
	char dummy[1];
	struct to_ctx c = {.err = errlen ? err : dummy, .errlen = errlen ? errlen : sizeof dummy};
	c.err[0] = '\0';
	*out = NULL;
	idx = lua_absindex(L, idx);
	if (!lua_checkstack(L, 4))
		return -ENOMEM;
	lua_pushcfunction(L, to_protected);
	lua_pushlightuserdata(L, &c);
	lua_pushvalue(L, idx);
	int st = lua_pcall(L, 2, 1, 0);
	int rc = st == LUA_OK ? (int)lua_tointeger(L, -1) : st == LUA_ERRMEM ? -ENOMEM : -ECANCELED;
	lua_pop(L, 1);
	if (rc == -ENOMEM && !c.err[0])
		snprintf(c.err, c.errlen, "cannot convert to JSON: out of memory");
	else if (rc == -ECANCELED)
		snprintf(c.err, c.errlen, "cannot convert to JSON: interrupted");
	if (rc) {
		json_decref(c.root);
		return rc;
	}
	*out = c.root;
	return 0;
}

/* ---- the json library for scripts ------------------------------------------------------------ */

static int l_mark(lua_State *L, enum ng_json_lua_kind kind)
{
	if (lua_isnoneornil(L, 1)) {
		lua_settop(L, 0);
		lua_newtable(L);
	} else {
		luaL_checktype(L, 1, LUA_TTABLE);
		lua_settop(L, 1);
		if (lua_getmetatable(L, 1)) {
			int ours = ng_json_lua_is(L, 1, NG_JSON_LUA_ARRAY) ||
			           ng_json_lua_is(L, 1, NG_JSON_LUA_OBJECT);
			lua_pop(L, 1);
			if (!ours)
				return luaL_error(L, "%s: the table already has a metatable",
				                  MT_NAME[kind]);
		}
	}
	ng_json_lua_mark(L, 1, kind);
	return 1;
}

static int l_array(lua_State *L)
{
	return l_mark(L, NG_JSON_LUA_ARRAY);
}

static int l_object(lua_State *L)
{
	return l_mark(L, NG_JSON_LUA_OBJECT);
}

static int l_is_array(lua_State *L)
{
	lua_pushboolean(L, ng_json_lua_is(L, 1, NG_JSON_LUA_ARRAY));
	return 1;
}

static int l_encode(lua_State *L)
{
	luaL_checkany(L, 1);
	char err[512];
	json_t *v = NULL;
	if (ng_json_lua_to(L, 1, &v, err, sizeof err) != 0)
		return luaL_error(L, "json.encode: %s", err);
	char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	json_decref(v);
	if (!s)
		return luaL_error(L, "json.encode: out of memory");
	lua_pushstring(L, s);
	free(s);
	return 1;
}

static int l_decode(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	json_error_t e;
	json_t *v = json_loadb(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
	if (!v) {
		lua_pushnil(L);
		lua_pushfstring(L, "json.decode: %s at position %d", e.text, e.position);
		return 2;
	}
	int rc = ng_json_lua_push(L, v, 0);
	json_decref(v);
	if (rc == -E2BIG) {
		lua_pushnil(L);
		lua_pushfstring(L, "json.decode: nested deeper than %d levels",
		                NG_JSON_LUA_MAX_DEPTH);
		return 2;
	}
	if (rc)
		return luaL_error(L, "json.decode: %s",
		                  rc == -ENOMEM ? "out of memory" : "interrupted");
	return 1;
}

void ng_json_lua_open(lua_State *L)
{
	static const luaL_Reg fns[] = {
	    {"array", l_array},   {"object", l_object}, {"is_array", l_is_array},
	    {"encode", l_encode}, {"decode", l_decode}, {NULL, NULL},
	};
	luaL_newlib(L, fns);
	ng_json_lua_push_null(L);
	lua_setfield(L, -2, "null");
	/* Create both markers now, so ng_json_lua_is works before the first conversion. */
	push_mt(L, NG_JSON_LUA_ARRAY);
	push_mt(L, NG_JSON_LUA_OBJECT);
	lua_pop(L, 2);
}
