/*
 * lua_guard.c — bounds on the string and table library functions a workflow may call. The count
 * hook cannot interrupt a C function, so each one that can work for long either charges its work
 * to the instruction budget before it starts (string.rep, upper/lower/reverse/sub, table.move,
 * sort, insert/remove in the middle, concat), reserves its result against the memory cap
 * (string.rep), or is refused when its worst case is too expensive (the pattern functions).
 * string.format is kept from printing addresses (%p, %s of a table).
 */
#include "lua_int.h"
#include "ng.h"

#include <lauxlib.h>
#include <math.h>
#include <string.h>

/* Above this estimated number of matcher steps a pattern call is refused (measured worst cases:
 * 0.2-0.7 s at the bound on this machine class). */
#define PATTERN_MAX_COST 2e8

int ng_lua__call_original(lua_State *L)
{
	return lua_tocfunction(L, lua_upvalueindex(1))(L);
}

void ng_lua__wrap(lua_State *L, int lib, const char *name, lua_CFunction fn, int extra)
{
	lib = lua_absindex(L, lib);
	lua_getfield(L, lib, name);
	if (extra >= 0)
		lua_pushinteger(L, extra);
	lua_pushcclosure(L, fn, extra >= 0 ? 2 : 1);
	lua_setfield(L, lib, name);
}

static int guard_string_format(lua_State *L)
{
	size_t flen;
	const char *f = luaL_checklstring(L, 1, &flen);
	for (size_t i = 0; i + 1 < flen; i++) {
		if (f[i] != '%')
			continue;
		i++;
		if (f[i] == '%')
			continue;
		while (i < flen && strchr("-+ #0123456789.", f[i]))
			i++;
		if (i < flen && f[i] == 'p')
			return luaL_error(L, "string.format: %%p is not allowed in workflows");
	}
	for (int i = 2; i <= lua_gettop(L); i++) {
		int t = lua_type(L, i);
		if (t == LUA_TTABLE || t == LUA_TFUNCTION || t == LUA_TTHREAD ||
		    t == LUA_TUSERDATA || t == LUA_TLIGHTUSERDATA) {
			ng_lua__tostring(L, i, NULL);
			lua_replace(L, i);
		}
	}
	return ng_lua__call_original(L);
}

static int guard_string_rep(lua_State *L)
{
	size_t l, lsep = 0;
	luaL_checklstring(L, 1, &l);
	lua_Integer n = luaL_checkinteger(L, 2);
	luaL_optlstring(L, 3, "", &lsep);
	if (n > 0) {
		/* Charge the copying (a 64-byte memcpy ~ one instruction); the cap bounds the size.
		 */
		double bytes = (double)n * (double)(l + lsep);
		ng_lua__reserve(L, bytes);
		ng_lua__charge(L, bytes / 64 > 1e18 ? (uint64_t)1e18 : (uint64_t)(bytes / 64));
	}
	return ng_lua__call_original(L);
}

enum pattern_fn { PAT_FIND, PAT_MATCH, PAT_GMATCH, PAT_GSUB };

/*
 * An upper bound on the matcher's steps: with no alternation and every quantifier applying to
 * one character class, backtracking can try each of n positions for every quantifier (and %b
 * and back-references scan up to n), times n starting positions unless anchored.
 */
static double pattern_cost(const char *p, size_t plen, size_t n, int can_anchor)
{
	int anchored = can_anchor && plen > 0 && p[0] == '^';
	int q = 0;
	for (size_t i = anchored; i < plen; i++) {
		if (p[i] == '%' && i + 1 < plen) {
			i++;
			if (p[i] == 'b' || (p[i] >= '1' && p[i] <= '9'))
				q++;
		} else if (p[i] == '[') {
			i++;
			if (i < plen && p[i] == '^')
				i++;
			do {
				if (i < plen && p[i] == '%')
					i++;
				i++;
			} while (i < plen && p[i] != ']');
		} else if (p[i] == '*' || p[i] == '+' || p[i] == '-') {
			q++;
		}
	}
	int exp = q + !anchored;
	if (q == 0)
		return (double)n * (double)(plen ? plen : 1);
	return pow((double)n, exp);
}

static int guard_pattern(lua_State *L)
{
	enum pattern_fn fn = (enum pattern_fn)lua_tointeger(L, lua_upvalueindex(2));
	size_t n, plen;
	luaL_checklstring(L, 1, &n);
	const char *p = luaL_checklstring(L, 2, &plen);
	double cost;
	if (fn == PAT_FIND && lua_toboolean(L, 4))
		cost = (double)n * (double)(plen ? plen : 1);
	else
		cost = pattern_cost(p, plen, n, fn != PAT_GMATCH);
	if (cost > PATTERN_MAX_COST)
		return luaL_error(
		    L,
		    "pattern too complex for a subject of %d bytes (anchor it with ^, "
		    "use fewer * + - quantifiers, or a shorter input)",
		    (int)(n > INT32_MAX ? INT32_MAX : n));
	ng_lua__charge(L, n / 16 + 1);
	return ng_lua__call_original(L);
}

static int guard_table_move(lua_State *L)
{
	lua_Integer f = luaL_checkinteger(L, 2), e = luaL_checkinteger(L, 3);
	if (e >= f)
		ng_lua__charge(L, (uint64_t)e - (uint64_t)f + 1);
	return ng_lua__call_original(L);
}

/* table.insert(t, pos, v) and table.remove(t, pos) shift the elements after pos. */
static int guard_table_shift(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	int insert = (int)lua_tointeger(L, lua_upvalueindex(2));
	if (lua_gettop(L) == (insert ? 3 : 2) && lua_isinteger(L, 2)) {
		lua_Integer len = (lua_Integer)lua_rawlen(L, 1), pos = lua_tointeger(L, 2);
		if (pos >= 0 && pos < len)
			ng_lua__charge(L, (uint64_t)(len - pos));
	}
	return ng_lua__call_original(L);
}

static int guard_table_concat(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_Integer i = luaL_optinteger(L, 3, 1);
	lua_Integer j =
	    lua_isnoneornil(L, 4) ? (lua_Integer)lua_rawlen(L, 1) : luaL_checkinteger(L, 4);
	if (j >= i)
		ng_lua__charge(L, (uint64_t)j - (uint64_t)i + 1);
	return ng_lua__call_original(L);
}

/* string functions that copy their first argument: a 64-byte copy ~ one instruction. */
static int guard_string_copy(lua_State *L)
{
	size_t n;
	luaL_checklstring(L, 1, &n);
	ng_lua__charge(L, n / 64);
	return ng_lua__call_original(L);
}

static int guard_table_sort(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	double n = (double)lua_rawlen(L, 1);
	ng_lua__charge(L, (uint64_t)(n * (1 + log2(n + 1))));
	return ng_lua__call_original(L);
}

void ng_lua__guard_string(lua_State *L, int lib)
{
	lib = lua_absindex(L, lib);
	lua_pushnil(L);
	lua_setfield(L, lib, "dump"); /* bytecode out means bytecode in */
	ng_lua__wrap(L, lib, "rep", guard_string_rep, -1);
	ng_lua__wrap(L, lib, "format", guard_string_format, -1);
	ng_lua__wrap(L, lib, "find", guard_pattern, PAT_FIND);
	ng_lua__wrap(L, lib, "match", guard_pattern, PAT_MATCH);
	ng_lua__wrap(L, lib, "gmatch", guard_pattern, PAT_GMATCH);
	ng_lua__wrap(L, lib, "gsub", guard_pattern, PAT_GSUB);
	ng_lua__wrap(L, lib, "upper", guard_string_copy, -1);
	ng_lua__wrap(L, lib, "lower", guard_string_copy, -1);
	ng_lua__wrap(L, lib, "reverse", guard_string_copy, -1);
	ng_lua__wrap(L, lib, "sub", guard_string_copy, -1);
}

void ng_lua__guard_table(lua_State *L, int lib)
{
	ng_lua__wrap(L, lib, "move", guard_table_move, -1);
	ng_lua__wrap(L, lib, "sort", guard_table_sort, -1);
	ng_lua__wrap(L, lib, "insert", guard_table_shift, 1);
	ng_lua__wrap(L, lib, "remove", guard_table_shift, 0);
	ng_lua__wrap(L, lib, "concat", guard_table_concat, -1);
}
