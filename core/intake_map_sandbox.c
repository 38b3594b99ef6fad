/*
 * intake_map_sandbox.c — the small Lua sandbox mapper files run in: allow-listed globals in a
 * read-only environment, the helpers (required, reject, first, str, map, log, json), a memory cap
 * (a counting allocator) and an instruction budget (a count hook). There is no pcall, coroutine or
 * load inside, so a budget error or a reject() always reaches the C caller.
 */
#include "intake_map.h"
#include "json_lua.h"
#include "ng.h"

#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOOK_EVERY 1000

/* Registry keys: the metatable of a reject() error, and of the headers table. */
static const char REJECT_MT[] = "nudge.intake.reject";
static const char HEADERS_MT[] = "nudge.intake.headers";

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct ng_intake__sandbox *sb = ud;
	if (!ptr)
		osize = 0; /* osize is then the type of the new object, not a size */
	if (nsize == 0) {
		free(ptr);
		sb->mem_used -= osize;
		return NULL;
	}
	if (nsize > osize && sb->mem_used + (nsize - osize) > sb->mem_limit)
		return NULL; /* Lua raises a memory error */
	void *p = realloc(ptr, nsize);
	if (p)
		sb->mem_used = sb->mem_used - osize + nsize;
	return p;
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
	NG_UNUSED(ar);
	struct ng_intake__sandbox *sb;
	lua_getallocf(L, (void **)&sb);
	/* No pcall in the sandbox, so this error ends the mapping whatever the script does. */
	if (++sb->ticks <= sb->budget_ticks)
		return;
	/* luaL_error would name level 1, which inside a hook is not the running Lua line. */
	lua_Debug where;
	if (lua_getstack(L, 0, &where) && lua_getinfo(L, "Sl", &where) && where.currentline > 0)
		lua_pushfstring(L, "%s:%d: ", where.short_src, where.currentline);
	else
		lua_pushliteral(L, "");
	luaL_error(L, "%sthe mapping exceeded its instruction budget (%I)", lua_tostring(L, -1),
	           (lua_Integer)(sb->budget_ticks * HOOK_EVERY));
}

/* reject(message): the payload is malformed; the request gets a 400 with the message. */
static int l_reject(lua_State *L)
{
	const char *msg = luaL_checkstring(L, 1);
	lua_createtable(L, 0, 1);
	lua_pushstring(L, msg);
	lua_setfield(L, -2, "message");
	luaL_setmetatable(L, REJECT_MT);
	return lua_error(L);
}

static int absent(lua_State *L, int idx)
{
	return lua_isnoneornil(L, idx) || ng_json_lua_is_null(L, idx) ||
	       (lua_type(L, idx) == LUA_TSTRING && lua_rawlen(L, idx) == 0);
}

/* required(value, what): value, or reject("the payload has no <what>"). */
static int l_required(lua_State *L)
{
	const char *what = luaL_checkstring(L, 2);
	if (absent(L, 1)) {
		lua_settop(L, 0);
		lua_pushfstring(L, "the payload has no %s", what);
		return l_reject(L);
	}
	lua_settop(L, 1);
	return 1;
}

static int l_log(lua_State *L)
{
	struct ng_intake__sandbox *sb;
	lua_getallocf(L, (void **)&sb);
	ng_info("intake", "%s mapper: %s", sb->source, luaL_tolstring(L, 1, NULL));
	return 0;
}

/* headers[name] in any case: the table holds lower-case names. */
static int l_headers_index(lua_State *L)
{
	if (lua_type(L, 2) != LUA_TSTRING)
		return 0;
	luaL_Buffer b;
	size_t n;
	const char *k = lua_tolstring(L, 2, &n);
	char *p = luaL_buffinitsize(L, &b, n);
	for (size_t i = 0; i < n; i++)
		p[i] = (char)(k[i] >= 'A' && k[i] <= 'Z' ? k[i] - 'A' + 'a' : k[i]);
	luaL_pushresultsize(&b, n);
	lua_rawget(L, 1);
	return 1;
}

static int l_readonly(lua_State *L)
{
	return luaL_error(L, "attempt to write global '%s' (declare it local)",
	                  lua_tostring(L, 2) ? lua_tostring(L, 2) : "?");
}

/* Helpers written in Lua, run once in the environment before it is frozen. */
static const char PRELUDE[] = "local json, select, type, tostring, math, string, ipairs, error = "
                              "json, select, type, tostring, math, string, ipairs, error\n"
                              "function first(...)\n"
                              "  for i = 1, select('#', ...) do\n"
                              "    local v = select(i, ...)\n"
                              "    if v ~= nil and v ~= json.null and v ~= '' then return v end\n"
                              "  end\n"
                              "end\n"
                              "function str(v)\n"
                              "  if v == nil or v == json.null then return nil end\n"
                              "  local t = type(v)\n"
                              "  if t == 'string' then return v end\n"
                              "  if t == 'number' then\n"
                              "    local i = math.tointeger(v)\n"
                              "    if i then return string.format('%d', i) end\n"
                              "    return tostring(v)\n"
                              "  end\n"
                              "  if t == 'boolean' then return tostring(v) end\n"
                              "  error('str: expected a string or a number, got a ' .. t, 2)\n"
                              "end\n"
                              "function map(list, fn)\n"
                              "  local out = json.array()\n"
                              "  if list == nil or list == json.null then return out end\n"
                              "  for _, v in ipairs(list) do\n"
                              "    local r = fn(v)\n"
                              "    if r ~= nil then out[#out + 1] = r end\n"
                              "  end\n"
                              "  return out\n"
                              "end\n";

/* Builds the environment table (left on the stack) in which mapper files run. */
static int push_env(lua_State *L, char *err, size_t errlen)
{
	static const char *const keep[] = {"assert",   "error",    "ipairs", "next",   "pairs",
	                                   "rawequal", "rawget",   "rawlen", "select", "tonumber",
	                                   "tostring", "type",     "string", "table",  "math",
	                                   "utf8",     "_VERSION", NULL};
	lua_newtable(L);
	for (size_t i = 0; keep[i]; i++) {
		lua_getglobal(L, keep[i]);
		lua_setfield(L, -2, keep[i]);
	}
	/* Nothing that varies between runs or reaches outside: dedupe keys must be reproducible. */
	lua_getfield(L, -1, "math");
	lua_pushnil(L);
	lua_setfield(L, -2, "random");
	lua_pushnil(L);
	lua_setfield(L, -2, "randomseed");
	lua_pop(L, 1);
	lua_getfield(L, -1, "string");
	lua_pushnil(L);
	lua_setfield(L, -2, "dump");
	lua_pop(L, 1);
	ng_json_lua_open(L);
	lua_setfield(L, -2, "json");
	lua_pushcfunction(L, l_reject);
	lua_setfield(L, -2, "reject");
	lua_pushcfunction(L, l_required);
	lua_setfield(L, -2, "required");
	lua_pushcfunction(L, l_log);
	lua_setfield(L, -2, "log");
	lua_pushvalue(L, -1);
	lua_setfield(L, -2, "_G");

	if (luaL_loadbufferx(L, PRELUDE, sizeof PRELUDE - 1, "=prelude", "t") != LUA_OK) {
		snprintf(err, errlen, "mapper prelude: %s", lua_tostring(L, -1));
		return NG_ECONFIG;
	}
	lua_pushvalue(L, -2);
	lua_setupvalue(L, -2, 1);
	if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
		snprintf(err, errlen, "mapper prelude: %s", lua_tostring(L, -1));
		return NG_ECONFIG;
	}
	lua_createtable(L, 0, 1);
	lua_pushcfunction(L, l_readonly);
	lua_setfield(L, -2, "__newindex");
	lua_setmetatable(L, -2);
	return 0;
}

int ng_intake__sandbox_open(struct ng_intake__sandbox *sb, char *err, size_t errlen)
{
	sb->L = lua_newstate(capped_alloc, sb);
	if (!sb->L) {
		snprintf(err, errlen, "cannot create a Lua state for the %s mapper", sb->source);
		return -ENOMEM;
	}
	lua_State *L = sb->L;
	luaL_requiref(L, "_G", luaopen_base, 1);
	luaL_requiref(L, "string", luaopen_string, 1);
	luaL_requiref(L, "table", luaopen_table, 1);
	luaL_requiref(L, "math", luaopen_math, 1);
	luaL_requiref(L, "utf8", luaopen_utf8, 1);
	lua_settop(L, 0);
	luaL_newmetatable(L, REJECT_MT);
	luaL_newmetatable(L, HEADERS_MT);
	lua_pushcfunction(L, l_headers_index);
	lua_setfield(L, -2, "__index");
	lua_settop(L, 0);
	int rc = push_env(L, err, errlen);
	if (rc)
		lua_settop(L, 0);
	return rc;
}

void ng_intake__sandbox_close(struct ng_intake__sandbox *sb)
{
	if (sb->L)
		lua_close(sb->L);
	sb->L = NULL;
}

int ng_intake__sandbox_pcall(struct ng_intake__sandbox *sb, int nargs, int nresults)
{
	sb->ticks = 0;
	lua_sethook(sb->L, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
	int st = lua_pcall(sb->L, nargs, nresults, 0);
	lua_sethook(sb->L, NULL, 0, 0);
	return st;
}

unsigned long ng_intake__sandbox_ticks(unsigned long instructions)
{
	return (instructions + HOOK_EVERY - 1) / HOOK_EVERY;
}

int ng_intake__is_reject(lua_State *L, int idx)
{
	if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx))
		return 0;
	luaL_getmetatable(L, REJECT_MT);
	int same = lua_rawequal(L, -1, -2);
	lua_pop(L, 2);
	return same;
}

void ng_intake__push_headers(lua_State *L, const struct ng_intake_header *headers, size_t n)
{
	lua_createtable(L, 0, (int)n);
	for (size_t i = n; i-- > 0;) {
		/* Walk backwards so that the first of repeated headers wins, as in a lookup. */
		const char *k = headers[i].name;
		if (!k || !headers[i].value)
			continue;
		luaL_Buffer b;
		size_t len = strlen(k);
		char *p = luaL_buffinitsize(L, &b, len);
		for (size_t j = 0; j < len; j++)
			p[j] = (char)(k[j] >= 'A' && k[j] <= 'Z' ? k[j] - 'A' + 'a' : k[j]);
		luaL_pushresultsize(&b, len);
		lua_pushstring(L, headers[i].value);
		lua_rawset(L, -3);
	}
	luaL_setmetatable(L, HEADERS_MT);
}
