/*
 * lua_env.c — the globals a workflow script sees: the allow-list, made read-only, with the
 * replacements that keep scripts deterministic (sorted pairs/next, address-free tostring,
 * setmetatable without __gc/__mode, xpcall handlers that cannot outlive a kill). The bounds on
 * the string and table libraries are in lua_guard.c.
 *
 * Read-only globals, not a fresh environment table per instance: a workflow that assigns a global
 * has almost always forgotten `local`, and failing loudly at that line ("attempt to write global
 * 'x'") is kinder than a variable that silently works. It also costs nothing per instance. What
 * a fresh environment would add — no state shared between instances — comes instead from running
 * the file's chunk afresh for every activation (lua_sandbox.c), so top-level locals and the
 * definition table are never shared. The libraries are read-only too; otherwise one script could
 * replace string.format for every other.
 */
#include "lua_int.h"
#include "ng.h"

#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The longest line log() passes on. */
#define LOG_MAX 4096

/* ---- read-only tables -------------------------------------------------------------------- */

static int readonly_newindex(lua_State *L)
{
	const char *what = lua_tostring(L, lua_upvalueindex(1));
	const char *key = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?";
	if (strcmp(what, "_G") == 0)
		return luaL_error(L, "attempt to write global '%s' (declare it with local)", key);
	return luaL_error(L, "attempt to modify read-only table '%s' (field '%s')", what, key);
}

/* Pushes an empty proxy whose reads go to the table at idx and whose writes raise. */
static void push_readonly(lua_State *L, int idx, const char *name)
{
	idx = lua_absindex(L, idx);
	lua_newtable(L);
	lua_createtable(L, 0, 4);
	lua_pushvalue(L, idx);
	lua_setfield(L, -2, "__index");
	lua_pushstring(L, name);
	lua_pushcclosure(L, readonly_newindex, 1);
	lua_setfield(L, -2, "__newindex");
	lua_pushliteral(L, "read-only");
	lua_setfield(L, -2, "__metatable");
	/* Lets pairs iterate the library behind the proxy, and rawset recognise the proxy. */
	lua_pushvalue(L, idx);
	lua_setfield(L, -2, "__ng_readonly");
	lua_setmetatable(L, -2);
}

/* When the table at idx is a read-only proxy, pushes the table behind it and returns 1. */
static int readonly_backing(lua_State *L, int idx)
{
	if (!lua_getmetatable(L, idx))
		return 0;
	if (lua_getfield(L, -1, "__ng_readonly") == LUA_TTABLE) {
		lua_remove(L, -2);
		return 1;
	}
	lua_pop(L, 2);
	return 0;
}

static int env_rawset(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_checkany(L, 2);
	luaL_checkany(L, 3);
	if (readonly_backing(L, 1))
		return luaL_error(L, "attempt to modify a read-only table");
	lua_settop(L, 3);
	lua_rawset(L, 1);
	return 1;
}

/* ---- the stable key order: numbers ascending, then strings bytewise, then false, true ------- */

struct key {
	int rank; /* 0 number, 1 string, 2 boolean */
	int is_int;
	lua_Integer i;
	lua_Number n;
	const char *s;
	size_t len;
	lua_Integer pos; /* where the key sits in the unsorted key list */
};

/* Reads the key at idx; raises for key types that have no stable order. */
static void read_key(lua_State *L, int idx, struct key *k)
{
	memset(k, 0, sizeof(*k));
	switch (lua_type(L, idx)) {
	case LUA_TNUMBER:
		k->is_int = lua_isinteger(L, idx);
		if (k->is_int)
			k->i = lua_tointeger(L, idx);
		else
			k->n = lua_tonumber(L, idx);
		return;
	case LUA_TSTRING:
		k->rank = 1;
		k->s = lua_tolstring(L, idx, &k->len);
		return;
	case LUA_TBOOLEAN:
		k->rank = 2;
		k->i = lua_toboolean(L, idx);
		return;
	default:
		luaL_error(L,
		           "cannot iterate in a stable order over a table with a %s key (use an "
		           "array and ipairs)",
		           luaL_typename(L, idx));
	}
}

static int key_cmp(const struct key *a, const struct key *b)
{
	if (a->rank != b->rank)
		return a->rank < b->rank ? -1 : 1;
	if (a->rank == 0) {
		if (a->is_int && b->is_int)
			return (a->i > b->i) - (a->i < b->i);
		/* long double holds every 64-bit integer and every double exactly. */
		long double x = a->is_int ? (long double)a->i : (long double)a->n;
		long double y = b->is_int ? (long double)b->i : (long double)b->n;
		return (x > y) - (x < y);
	}
	if (a->rank == 1) {
		size_t m = a->len < b->len ? a->len : b->len;
		int c = memcmp(a->s, b->s, m);
		if (c)
			return c < 0 ? -1 : 1;
		return (a->len > b->len) - (a->len < b->len);
	}
	return (a->i > b->i) - (a->i < b->i);
}

static int key_qsort_cmp(const void *a, const void *b)
{
	return key_cmp(a, b);
}

/* Pushes an array of the keys of the table at idx in the stable order. */
static void push_sorted_keys(lua_State *L, int idx)
{
	idx = lua_absindex(L, idx);
	lua_Integer n = 0;
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		n++;
	}
	ng_lua__charge(L, (uint64_t)n * (1 + (uint64_t)log2((double)n + 1)));
	/* The scratch array is a userdata so the memory cap covers it and an error frees it. */
	struct key *keys = lua_newuserdatauv(L, (size_t)n * sizeof(*keys) + 1, 0);
	lua_createtable(L, (int)n, 0); /* the keys as found; keeps their strings alive */
	int unsorted = lua_gettop(L);
	lua_Integer i = 0;
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		lua_pushvalue(L, -1);
		lua_rawseti(L, unsorted, ++i);
		read_key(L, -1, &keys[i - 1]);
		keys[i - 1].pos = i;
	}
	qsort(keys, (size_t)n, sizeof(*keys), key_qsort_cmp);
	lua_createtable(L, (int)n, 0);
	for (i = 0; i < n; i++) {
		lua_rawgeti(L, unsorted, keys[i].pos);
		lua_rawseti(L, -2, i + 1);
	}
	lua_replace(L, -3);
	lua_pop(L, 1);
}

/* upvalues: the table, its sorted keys, the position reached. */
static int sorted_next(lua_State *L)
{
	lua_Integer i = lua_tointeger(L, lua_upvalueindex(3));
	for (;;) {
		i++;
		if (lua_rawgeti(L, lua_upvalueindex(2), i) == LUA_TNIL)
			return 1;
		lua_pushvalue(L, -1);
		if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
			break;
		lua_pop(L, 2); /* the entry was removed during the loop */
	}
	lua_pushinteger(L, i);
	lua_replace(L, lua_upvalueindex(3));
	return 2;
}

static int env_pairs(lua_State *L)
{
	luaL_checkany(L, 1);
	if (luaL_getmetafield(L, 1, "__pairs") != LUA_TNIL) {
		lua_pushvalue(L, 1);
		lua_call(L, 1, 3);
		return 3;
	}
	luaL_checktype(L, 1, LUA_TTABLE);
	if (!readonly_backing(L, 1))
		lua_pushvalue(L, 1);
	push_sorted_keys(L, -1);
	lua_pushinteger(L, 0);
	lua_pushcclosure(L, sorted_next, 3);
	lua_pushvalue(L, 1);
	lua_pushnil(L);
	return 3;
}

/* next(t, k): the smallest key after k in the stable order. O(n) per call; pairs is O(1). */
static int env_next(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 2);
	struct key after, best, cur;
	int have_after = !lua_isnil(L, 2), have_best = 0;
	if (have_after)
		read_key(L, 2, &after);
	lua_pushnil(L); /* 3: the best key so far */
	uint64_t n = 0;
	lua_pushnil(L);
	while (lua_next(L, 1)) {
		lua_pop(L, 1);
		n++;
		read_key(L, -1, &cur);
		if (have_after && key_cmp(&cur, &after) <= 0)
			continue;
		if (have_best && key_cmp(&cur, &best) >= 0)
			continue;
		lua_copy(L, -1, 3);
		read_key(L, 3, &best); /* re-read: its string now lives in slot 3 */
		have_best = 1;
	}
	ng_lua__charge(L, n);
	if (!have_best)
		return 1;
	lua_pushvalue(L, 3);
	lua_rawget(L, 1);
	return 2;
}

/* ---- address-free text ------------------------------------------------------------------- */

const char *ng_lua__tostring(lua_State *L, int idx, size_t *len)
{
	idx = lua_absindex(L, idx);
	switch (lua_type(L, idx)) {
	case LUA_TTABLE:
	case LUA_TFUNCTION:
	case LUA_TTHREAD:
	case LUA_TUSERDATA:
	case LUA_TLIGHTUSERDATA:
		if (luaL_getmetafield(L, idx, "__tostring") != LUA_TNIL) {
			lua_pop(L, 1);
			return luaL_tolstring(L, idx, len);
		}
		lua_pushstring(L, luaL_typename(L, idx));
		return lua_tolstring(L, -1, len);
	default:
		return luaL_tolstring(L, idx, len);
	}
}

static int env_tostring(lua_State *L)
{
	luaL_checkany(L, 1);
	ng_lua__tostring(L, 1, NULL);
	return 1;
}

static int env_log(lua_State *L)
{
	if (ng_lua__killed(L))
		return 0; /* a killed run says nothing more */
	int n = lua_gettop(L);
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	for (int i = 1; i <= n; i++) {
		size_t len;
		const char *s = ng_lua__tostring(L, i, &len);
		if (i > 1)
			luaL_addchar(&b, ' ');
		luaL_addlstring(&b, s, len);
		lua_pop(L, 1);
	}
	luaL_pushresult(&b);
	size_t len;
	const char *msg = lua_tolstring(L, -1, &len);
	if (len > LOG_MAX) {
		lua_pushlstring(L, msg, LOG_MAX);
		msg = lua_tostring(L, -1);
	}
	ng_lua__log(L, msg);
	return 0;
}

/* ---- wrappers that call the library's own function after their checks --------------------- */

static int env_setmetatable(lua_State *L)
{
	if (lua_type(L, 2) == LUA_TTABLE) {
		/* Finalisers and weak entries depend on when the collector runs: not replayable. */
		static const char *const banned[] = {"__gc", "__mode"};
		for (size_t i = 0; i < NG_ARRAY_LEN(banned); i++) {
			if (lua_getfield(L, 2, banned[i]) != LUA_TNIL)
				return luaL_error(L, "setmetatable: %s is not allowed in workflows",
				                  banned[i]);
			lua_pop(L, 1);
		}
	}
	return ng_lua__call_original(L);
}

/*
 * A message handler runs before the error unwinds. When the error was raised from the count hook
 * (a kill inside a frame that cannot yield), Lua is still inside the hook with hooks disabled, so
 * a looping handler would never be stopped. Once the activation is killed, handlers are skipped.
 */
static int guarded_handler(lua_State *L)
{
	if (ng_lua__killed(L))
		return 1;
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, 1);
	return 1;
}

static int env_xpcall(lua_State *L)
{
	luaL_checktype(L, 2, LUA_TFUNCTION);
	lua_pushvalue(L, 2);
	lua_pushcclosure(L, guarded_handler, 1);
	lua_replace(L, 2);
	return ng_lua__call_original(L);
}

void ng_lua__push_env(lua_State *L)
{
	luaL_requiref(L, "_G", luaopen_base, 1);
	int real_g = lua_gettop(L);
	lua_createtable(L, 0, 32); /* what the proxy reads: the allow-list */
	int env = lua_gettop(L);

	static const char *const base_allowed[] = {
	    "assert", "error",  "getmetatable", "ipairs",   "pcall", "rawequal",
	    "rawget", "rawlen", "select",       "tonumber", "type",  "_VERSION"};
	for (size_t i = 0; i < NG_ARRAY_LEN(base_allowed); i++) {
		lua_getfield(L, real_g, base_allowed[i]);
		lua_setfield(L, env, base_allowed[i]);
	}
	static const luaL_Reg own[] = {{"pairs", env_pairs},       {"next", env_next},
	                               {"tostring", env_tostring}, {"rawset", env_rawset},
	                               {"log", env_log},           {NULL, NULL}};
	luaL_setfuncs(L, own, 0);
	lua_getfield(L, real_g, "setmetatable");
	lua_pushcclosure(L, env_setmetatable, 1);
	lua_setfield(L, env, "setmetatable");
	lua_getfield(L, real_g, "xpcall");
	lua_pushcclosure(L, env_xpcall, 1);
	lua_setfield(L, env, "xpcall");

	/* string: changed in place, because the string metatable's __index is this very table. */
	luaL_requiref(L, "string", luaopen_string, 0);
	ng_lua__guard_string(L, -1);
	push_readonly(L, -1, "string");
	lua_setfield(L, env, "string");
	/* getmetatable("") would otherwise hand out the writable library. */
	lua_pushliteral(L, "");
	lua_getmetatable(L, -1);
	lua_pushliteral(L, "read-only");
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 3);

	luaL_requiref(L, "table", luaopen_table, 0);
	ng_lua__guard_table(L, -1);
	push_readonly(L, -1, "table");
	lua_setfield(L, env, "table");
	lua_pop(L, 1);

	/* Randomness comes from the workflow API, which records it for replay. */
	luaL_requiref(L, "math", luaopen_math, 0);
	lua_pushnil(L);
	lua_setfield(L, -2, "random");
	lua_pushnil(L);
	lua_setfield(L, -2, "randomseed");
	push_readonly(L, -1, "math");
	lua_setfield(L, env, "math");
	lua_pop(L, 1);

	luaL_requiref(L, "utf8", luaopen_utf8, 0);
	push_readonly(L, -1, "utf8");
	lua_setfield(L, env, "utf8");
	lua_pop(L, 1);

	push_readonly(L, env, "_G");
	lua_pushvalue(L, -1);
	lua_setfield(L, env, "_G");
	lua_replace(L, real_g);
	lua_settop(L, real_g);
}
