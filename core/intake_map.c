/*
 * intake_map.c — loads a source's mapper file into its own Lua sandbox (intake_map_sandbox.c)
 * and runs it on payloads: finding the topic's function, the call, telling a rejected payload from
 * a broken mapper, and reading its result into normalised events (intake_map_event.c).
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

struct ng_intake_mapper {
	struct ng_intake__sandbox sb; /* the state's allocator points here: never moved */
	lua_State *L;                 /* sb.L */
	char *source, *path;
	struct ng_intake_options opts;
	char *default_cc;
	int topics_ref;
};

/* ---- loading --------------------------------------------------------------------------------- */

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
	m->sb.source = m->source;
	m->sb.mem_limit = m->opts.memory_limit ? m->opts.memory_limit : DEFAULT_MEMORY;
	m->sb.budget_ticks = ng_intake__sandbox_ticks(m->opts.instructions ? m->opts.instructions
	                                                                   : DEFAULT_INSTRUCTIONS);
	m->topics_ref = LUA_NOREF;

	size_t len = 0;
	int rc;
	char *src = read_file(m->path, &len, &rc);
	if (!src) {
		snprintf(err, errlen, "%s: cannot read the mapper: %s", m->path, ng_strerror(rc));
		ng_intake_mapper_free(m);
		return rc;
	}
	rc = ng_intake__sandbox_open(&m->sb, err, errlen);
	if (rc) {
		free(src);
		ng_intake_mapper_free(m);
		return rc;
	}
	lua_State *L = m->L = m->sb.L;

	char chunk[512];
	snprintf(chunk, sizeof chunk, "@%s", m->path);
	if (luaL_loadbufferx(L, src, len, chunk, "t") != LUA_OK) {
		snprintf(err, errlen, "%s", lua_tostring(L, -1));
		rc = NG_ECONFIG;
	}
	free(src);
	if (rc == 0) {
		lua_pushvalue(L, 1);
		lua_setupvalue(L, -2, 1);
		int st = ng_intake__sandbox_pcall(&m->sb, 0, 1);
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
	ng_intake__sandbox_close(&m->sb);
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

/* Runs in protected mode (pushing a string may raise a memory error): the topic's function or nil.
 */
static int lookup(lua_State *L)
{
	struct ng_intake_mapper *m = lua_touserdata(L, 1);
	const char *topic = lua_touserdata(L, 2);
	lua_rawgeti(L, LUA_REGISTRYINDEX, m->topics_ref);
	lua_pushstring(L, topic);
	lua_rawget(L, -2);
	return 1;
}

int ng_intake_mapper_has(struct ng_intake_mapper *m, const char *topic)
{
	if (!lua_checkstack(m->L, 4))
		return 0;
	lua_pushcfunction(m->L, lookup);
	lua_pushlightuserdata(m->L, m);
	lua_pushlightuserdata(m->L, (void *)topic);
	int has = lua_pcall(m->L, 2, 1, 0) == LUA_OK && lua_type(m->L, -1) == LUA_TFUNCTION;
	lua_pop(m->L, 1);
	return has;
}

/* ---- mapping --------------------------------------------------------------------------------- */

struct call {
	struct ng_intake_mapper *m;
	const char *topic;
	const struct ng_intake_header *headers;
	size_t nheaders;
	const json_t *payload;
	int payload_rc; /* set when the payload could not be pushed */
};

/*
 * Runs in protected mode, so that running out of memory is an error and not a panic: pushes the
 * topic's function (or nil) and, when there is one, its arguments: the payload and the headers.
 */
static int prepare(lua_State *L)
{
	struct call *c = lua_touserdata(L, 1);
	lua_settop(L, 0);
	lua_pushlightuserdata(L, c->m);
	lua_pushlightuserdata(L, (void *)c->topic);
	lookup(L);
	lua_replace(L, 1);
	lua_settop(L, 1);
	if (lua_type(L, 1) != LUA_TFUNCTION)
		return 1;
	c->payload_rc = ng_json_lua_push(L, c->payload, NG_JSON_LUA_NULL_AS_NIL);
	if (c->payload_rc)
		return 0;
	ng_intake__push_headers(L, c->headers, c->nheaders);
	return 3;
}

/* "file:line" of the mapping function at idx. */
static void where_defined(lua_State *L, int idx, char *out, size_t cap)
{
	lua_Debug ar;
	lua_pushvalue(L, idx);
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
	if (!lua_checkstack(L, 8)) {
		snprintf(err, errlen, "the %s mapper is out of memory", m->source);
		return -ENOMEM;
	}
	struct call c = {m, topic, headers, nheaders, payload, 0};
	char where[300] = "";
	lua_pushcfunction(L, prepare);
	lua_pushlightuserdata(L, &c);
	int st = lua_pcall(L, 1, 3, 0);
	if (st == LUA_OK && c.payload_rc == -E2BIG) {
		lua_settop(L, 0);
		snprintf(err, errlen, "the %s payload is nested deeper than %d levels", m->source,
		         NG_JSON_LUA_MAX_DEPTH);
		return -EBADMSG;
	}
	if (st == LUA_OK && c.payload_rc) {
		lua_settop(L, 0);
		snprintf(err, errlen, "%s: the payload cannot be handed to the %s mapping: %s",
		         m->path, topic, ng_strerror(c.payload_rc));
		return c.payload_rc;
	}
	if (st == LUA_OK && lua_type(L, 1) != LUA_TFUNCTION) {
		lua_settop(L, 0);
		snprintf(err, errlen, "no mapping for %s topic '%s'", m->source, topic);
		return NG_INTAKE_IGNORED;
	}
	if (st == LUA_OK) {
		where_defined(L, 1, where, sizeof where);
		st = ng_intake__sandbox_pcall(&m->sb, 2, 1);
	} else {
		snprintf(where, sizeof where, "%s", m->path);
	}
	int rc = 0;
	if (st != LUA_OK) {
		if (ng_intake__is_reject(L, -1)) {
			lua_getfield(L, -1, "message");
			snprintf(err, errlen, "%s topic '%s': %s", m->source, topic,
			         lua_tostring(L, -1));
			rc = -EBADMSG;
		} else if (st == LUA_ERRMEM) {
			snprintf(err, errlen,
			         "%s: the %s mapping ran out of memory (limit %zu bytes)", where,
			         topic, m->sb.mem_limit);
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
