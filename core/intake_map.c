/*
 * intake_map.c — loads a source's mapper file into its own small Lua sandbox and runs it on
 * payloads: the sandbox (allow-listed globals, read-only environment, helpers, instruction budget,
 * memory cap), the call, and the reading of its result into normalised events
 * (intake_map_event.c).
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

#define DEFAULT_MEMORY       (64u << 20)
#define DEFAULT_INSTRUCTIONS 10000000ul
#define HOOK_EVERY           1000

/* Registry keys: the metatable of a reject() error, and of the headers table. */
static const char REJECT_MT[] = "nudge.intake.reject";
static const char HEADERS_MT[] = "nudge.intake.headers";

struct ng_intake_mapper {
	lua_State *L;
	char *source, *path;
	struct ng_intake_options opts;
	char *default_cc;
	int topics_ref;
	size_t mem_used, mem_limit;
	unsigned long budget_ticks, ticks;
};

/* ---- the sandbox ------------------------------------------------------------------------------
 */

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct ng_intake_mapper *m = ud;
	if (!ptr)
		osize = 0; /* osize is then the type of the new object, not a size */
	if (nsize == 0) {
		free(ptr);
		m->mem_used -= osize;
		return NULL;
	}
	if (nsize > osize && m->mem_used + (nsize - osize) > m->mem_limit)
		return NULL; /* Lua raises a memory error */
	void *p = realloc(ptr, nsize);
	if (p)
		m->mem_used = m->mem_used - osize + nsize;
	return p;
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
	NG_UNUSED(ar);
	struct ng_intake_mapper *m;
	lua_getallocf(L, (void **)&m);
	/* No pcall in the sandbox, so this error ends the mapping whatever the script does. */
	if (++m->ticks <= m->budget_ticks)
		return;
	/* luaL_error would name level 1, which inside a hook is not the running Lua line. */
	lua_Debug where;
	if (lua_getstack(L, 0, &where) && lua_getinfo(L, "Sl", &where) && where.currentline > 0)
		lua_pushfstring(L, "%s:%d: ", where.short_src, where.currentline);
	else
		lua_pushliteral(L, "");
	luaL_error(L, "%sthe mapping exceeded its instruction budget (%I)", lua_tostring(L, -1),
	           (lua_Integer)(m->budget_ticks * HOOK_EVERY));
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
	struct ng_intake_mapper *m;
	lua_getallocf(L, (void **)&m);
	ng_info("intake", "%s mapper: %s", m->source, luaL_tolstring(L, 1, NULL));
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

/* ---- loading ------------------------------------------------------------------------------- */

static int source_ok(const char *s)
{
	if (!s || !*s || strlen(s) > 64)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' ||
		      *s == '-'))
			return 0;
	return 1;
}

static char *read_file(const char *path, size_t *len, int *rc)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		*rc = -errno;
		return NULL;
	}
	size_t cap = 8192, n;
	char *buf = ng_xmalloc(cap);
	*len = 0;
	while ((n = fread(buf + *len, 1, cap - *len, f)) > 0) {
		*len += n;
		if (*len == cap)
			buf = ng_xrealloc(buf, cap *= 2);
	}
	*rc = ferror(f) ? -EIO : 0;
	fclose(f);
	return buf;
}

/* Checks the returned table: string keys, function values. */
static int check_topics(struct ng_intake_mapper *m, char *err, size_t errlen)
{
	lua_State *L = m->L;
	if (lua_type(L, -1) != LUA_TTABLE) {
		snprintf(err, errlen,
		         "%s: the file must return a table of topic = function(p, h), "
		         "not a %s",
		         m->path, luaL_typename(L, -1));
		return NG_ECONFIG;
	}
	lua_pushnil(L);
	while (lua_next(L, -2)) {
		if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TFUNCTION) {
			const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
			snprintf(err, errlen, "%s: topic '%s' maps to a %s, not a function",
			         m->path, k, luaL_typename(L, -1));
			lua_pop(L, 2);
			return NG_ECONFIG;
		}
		lua_pop(L, 1);
	}
	return 0;
}

int ng_intake_mapper_load(const char *dir, const char *source, const struct ng_intake_options *opts,
                          struct ng_intake_mapper **out, char *err, size_t errlen)
{
	*out = NULL;
	if (!source_ok(source)) {
		snprintf(err, errlen,
		         "'%s' is not a mapper name (lower-case letters, digits, _ or -)",
		         source ? source : "");
		return -EINVAL;
	}
	struct ng_intake_mapper *m = ng_xcalloc(1, sizeof *m);
	m->source = ng_xstrdup(source);
	m->path = ng_xasprintf("%s/%s.lua", dir, source);
	if (opts)
		m->opts = *opts;
	if (m->opts.default_country_code) {
		m->default_cc = ng_xstrdup(m->opts.default_country_code);
		m->opts.default_country_code = m->default_cc;
	}
	m->mem_limit = m->opts.memory_limit ? m->opts.memory_limit : DEFAULT_MEMORY;
	unsigned long ins = m->opts.instructions ? m->opts.instructions : DEFAULT_INSTRUCTIONS;
	m->budget_ticks = (ins + HOOK_EVERY - 1) / HOOK_EVERY;
	m->topics_ref = LUA_NOREF;

	size_t len = 0;
	int rc;
	char *src = read_file(m->path, &len, &rc);
	if (!src) {
		snprintf(err, errlen, "%s: cannot read the mapper: %s", m->path, ng_strerror(rc));
		ng_intake_mapper_free(m);
		return rc;
	}
	m->L = lua_newstate(capped_alloc, m);
	if (!m->L) {
		free(src);
		ng_intake_mapper_free(m);
		return -ENOMEM;
	}
	lua_State *L = m->L;
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

	char chunk[512];
	snprintf(chunk, sizeof chunk, "@%s", m->path);
	rc = push_env(L, err, errlen);
	if (rc == 0 && luaL_loadbufferx(L, src, len, chunk, "t") != LUA_OK) {
		snprintf(err, errlen, "%s", lua_tostring(L, -1));
		rc = NG_ECONFIG;
	}
	free(src);
	if (rc == 0) {
		lua_pushvalue(L, 1);
		lua_setupvalue(L, -2, 1);
		m->ticks = 0;
		lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
		int st = lua_pcall(L, 0, 1, 0);
		lua_sethook(L, NULL, 0, 0);
		if (st != LUA_OK) {
			snprintf(err, errlen, "%s",
			         lua_tostring(L, -1) ? lua_tostring(L, -1)
			                             : "error loading the mapper");
			rc = st == LUA_ERRMEM ? -ENOMEM : NG_ECONFIG;
		} else {
			rc = check_topics(m, err, errlen);
		}
	}
	if (rc) {
		ng_intake_mapper_free(m);
		return rc;
	}
	m->topics_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_settop(L, 0);
	*out = m;
	return 0;
}

void ng_intake_mapper_free(struct ng_intake_mapper *m)
{
	if (!m)
		return;
	if (m->L)
		lua_close(m->L);
	free(m->source);
	free(m->path);
	free(m->default_cc);
	free(m);
}

const char *ng_intake_mapper_source(const struct ng_intake_mapper *m)
{
	return m->source;
}

const char *ng_intake_mapper_path(const struct ng_intake_mapper *m)
{
	return m->path;
}

/* Pushes the mapping function for topic, or nil. */
static void push_topic(struct ng_intake_mapper *m, const char *topic)
{
	lua_rawgeti(m->L, LUA_REGISTRYINDEX, m->topics_ref);
	lua_pushstring(m->L, topic);
	lua_rawget(m->L, -2);
	lua_remove(m->L, -2);
}

int ng_intake_mapper_has(struct ng_intake_mapper *m, const char *topic)
{
	push_topic(m, topic);
	int has = lua_type(m->L, -1) == LUA_TFUNCTION;
	lua_pop(m->L, 1);
	return has;
}

/* ---- mapping ------------------------------------------------------------------------------- */

struct call {
	struct ng_intake_mapper *m;
	const char *topic;
	const struct ng_intake_header *headers;
	size_t nheaders;
	const json_t *payload;
};

/* Runs in protected mode: pushes the function's arguments (payload, headers) after it. */
static int push_args(lua_State *L)
{
	struct call *c = lua_touserdata(L, 1);
	lua_pop(L, 1);
	int rc = ng_json_lua_push(L, c->payload, NG_JSON_LUA_NULL_AS_NIL);
	if (rc)
		return luaL_error(L, "the payload cannot be handed to Lua: %s", ng_strerror(rc));
	lua_createtable(L, 0, (int)c->nheaders);
	for (size_t i = c->nheaders; i-- > 0;) {
		/* Walk backwards so that the first of repeated headers wins, as in a lookup. */
		const char *k = c->headers[i].name;
		if (!k || !c->headers[i].value)
			continue;
		luaL_Buffer b;
		size_t n = strlen(k);
		char *p = luaL_buffinitsize(L, &b, n);
		for (size_t j = 0; j < n; j++)
			p[j] = (char)(k[j] >= 'A' && k[j] <= 'Z' ? k[j] - 'A' + 'a' : k[j]);
		luaL_pushresultsize(&b, n);
		lua_pushstring(L, c->headers[i].value);
		lua_rawset(L, -3);
	}
	luaL_setmetatable(L, HEADERS_MT);
	return 2;
}

static int is_reject(lua_State *L, int idx)
{
	if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx))
		return 0;
	luaL_getmetatable(L, REJECT_MT);
	int same = lua_rawequal(L, -1, -2);
	lua_pop(L, 2);
	return same;
}

/* "file:line" of the mapping function at the top of the stack (it stays there). */
static void where_defined(lua_State *L, char *out, size_t cap)
{
	lua_Debug ar;
	lua_pushvalue(L, -1);
	if (lua_getinfo(L, ">S", &ar) && ar.linedefined > 0)
		snprintf(out, cap, "%s:%d", ar.short_src, ar.linedefined);
	else
		snprintf(out, cap, "%s", ar.short_src);
}

/* Converts and normalises the event table at idx and appends it to events. */
static int take_event(struct call *c, int idx, size_t nth, const char *where, json_t *events,
                      char *err, size_t errlen)
{
	struct ng_intake_mapper *m = c->m;
	char sub[512];
	json_t *raw = NULL, *ev = NULL;
	int rc = ng_json_lua_to(m->L, idx, &raw, sub, sizeof sub);
	if (rc == 0)
		rc = ng_intake__normalise(m->source, c->topic, &m->opts, raw, &ev, sub, sizeof sub);
	json_decref(raw);
	if (rc == -EBADMSG) {
		snprintf(err, errlen, "%s topic '%s': %s", m->source, c->topic, sub);
		return rc;
	}
	if (rc) {
		snprintf(err, errlen, "%s: the %s mapping returned a malformed event %zu: %s",
		         where, c->topic, nth, sub);
		return rc == -EINVAL ? NG_ECONFIG : rc;
	}
	json_array_append_new(events, ev);
	return 0;
}

/* Reads the mapping's result (top of the stack): nil, an event, or a list of events. */
static int take_result(struct call *c, const char *where, json_t *events, char *err, size_t errlen)
{
	lua_State *L = c->m->L;
	int t = lua_gettop(L);
	if (lua_isnil(L, t))
		return 0;
	if (lua_type(L, t) != LUA_TTABLE) {
		snprintf(err, errlen,
		         "%s: the %s mapping returned a %s, not an event table or a list "
		         "of them",
		         where, c->topic, luaL_typename(L, t));
		return NG_ECONFIG;
	}
	lua_getfield(L, t, "type");
	int single = !lua_isnil(L, -1);
	lua_pop(L, 1);
	if (single)
		return take_event(c, t, 1, where, events, err, errlen);
	lua_Integer n = (lua_Integer)lua_rawlen(L, t);
	if (n > NG_INTAKE_MAX_EVENTS) {
		snprintf(err, errlen, "%s topic '%s': the payload gives more than %d events",
		         c->m->source, c->topic, NG_INTAKE_MAX_EVENTS);
		return -EBADMSG;
	}
	lua_pushnil(L);
	if (lua_next(L, t) && n == 0) {
		lua_pop(L, 2);
		snprintf(err, errlen,
		         "%s: the %s mapping returned a table with no 'type', which is "
		         "neither an event nor a list of events",
		         where, c->topic);
		return NG_ECONFIG;
	}
	lua_settop(L, t);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, t, i);
		int rc = lua_type(L, -1) == LUA_TTABLE
		             ? take_event(c, lua_gettop(L), (size_t)i, where, events, err, errlen)
		             : (snprintf(err, errlen,
		                         "%s: item %lld of the %s mapping's list is a "
		                         "%s, not an event table",
		                         where, (long long)i, c->topic, luaL_typename(L, -1)),
		                NG_ECONFIG);
		lua_pop(L, 1);
		if (rc)
			return rc;
	}
	return 0;
}

/* Two events of one delivery sharing a dedupe key would make the second look like a redelivery. */
static int check_unique_keys(const char *where, const char *topic, json_t *events, char *err,
                             size_t errlen)
{
	json_t *seen = json_object(); /* key → 1-based index of the event that has it */
	size_t i, j;
	json_t *ev, *k;
	int rc = 0;
	json_array_foreach(events, i, ev)
	{
		json_array_foreach(json_object_get(ev, "dedupe_keys"), j, k)
		{
			const char *key = json_string_value(k);
			json_t *first = json_object_get(seen, key);
			if (first && (size_t)json_integer_value(first) != i + 1) {
				snprintf(
				    err, errlen,
				    "%s: the %s mapping gave events %lld and %zu the same dedupe "
				    "key '%s'; give each event its own",
				    where, topic, json_integer_value(first), i + 1, key);
				rc = NG_ECONFIG;
				break;
			}
			json_object_set_new(seen, key, json_integer((json_int_t)i + 1));
		}
		if (rc)
			break;
	}
	json_decref(seen);
	return rc;
}

int ng_intake_map(struct ng_intake_mapper *m, const char *topic,
                  const struct ng_intake_header *headers, size_t nheaders, const json_t *payload,
                  json_t **events, char *err, size_t errlen)
{
	lua_State *L = m->L;
	*events = NULL;
	err[0] = '\0';
	lua_settop(L, 0);
	if (!topic || !*topic) {
		snprintf(err, errlen, "the %s request names no topic", m->source);
		return -EBADMSG;
	}
	if (!json_is_object(payload)) {
		snprintf(err, errlen, "the %s payload must be a JSON object, not %s", m->source,
		         !payload                 ? "nothing"
		         : json_is_array(payload) ? "an array"
		                                  : "a single value");
		return -EBADMSG;
	}
	push_topic(m, topic);
	if (lua_type(L, -1) != LUA_TFUNCTION) {
		lua_settop(L, 0);
		snprintf(err, errlen, "no mapping for %s topic '%s'", m->source, topic);
		return NG_INTAKE_IGNORED;
	}
	char where[300];
	where_defined(L, where, sizeof where);

	struct call c = {m, topic, headers, nheaders, payload};
	lua_pushcfunction(L, push_args);
	lua_pushlightuserdata(L, &c);
	int st = lua_pcall(L, 1, 2, 0);
	if (st == LUA_OK) {
		m->ticks = 0;
		lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
		st = lua_pcall(L, 2, 1, 0);
		lua_sethook(L, NULL, 0, 0);
	}
	int rc = 0;
	if (st != LUA_OK) {
		if (is_reject(L, -1)) {
			lua_getfield(L, -1, "message");
			snprintf(err, errlen, "%s topic '%s': %s", m->source, topic,
			         lua_tostring(L, -1));
			rc = -EBADMSG;
		} else if (st == LUA_ERRMEM) {
			snprintf(err, errlen,
			         "%s: the %s mapping ran out of memory (limit %zu bytes)", where,
			         topic, m->mem_limit);
			rc = -ENOMEM;
		} else {
			const char *msg = lua_tostring(L, -1);
			snprintf(err, errlen, "%s",
			         msg ? msg : "the mapping raised a non-string error");
			rc = NG_ECONFIG;
		}
		lua_settop(L, 0);
		return rc;
	}

	json_t *out = json_array();
	rc = take_result(&c, where, out, err, errlen);
	lua_settop(L, 0);
	if (rc == 0)
		rc = check_unique_keys(where, topic, out, err, errlen);
	if (rc == 0 && json_array_size(out) == 0) {
		snprintf(err, errlen, "the %s mapping for topic '%s' returned no events", m->source,
		         topic);
		rc = NG_INTAKE_IGNORED;
	}
	if (rc) {
		json_decref(out);
		return rc;
	}
	*events = out;
	return 0;
}
