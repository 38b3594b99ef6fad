/*
 * wf_json.c — the runtime's conversions between Lua values and jansson JSON (effect arguments and
 * results, events, customers), plus small shared helpers: owned statement lists for a step's
 * transaction, timestamps, result columns. (helper/intake's json_lua.h was not available when this
 * was written; this is the minimal conversion the journal needs.)
 *
 * Lua -> JSON: nil -> null, booleans, integers stay integers and floats stay reals (so a replay
 * compares equal with what PostgreSQL gives back), strings, and tables: a table whose keys are
 * exactly 1..n is an array, any other an object with string keys (integer keys are written as
 * text). Functions, coroutines, userdata, NaN and infinities, and nesting deeper than 32 are
 * refused: they cannot be journaled.
 */
#include "wf_int.h"
#include "ng.h"

#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_DEPTH 32

static json_t *from_lua(lua_State *L, int idx, int depth, char **err);

static int is_array(lua_State *L, int idx, size_t *n)
{
	size_t len = lua_rawlen(L, idx), count = 0;
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		if (!lua_isinteger(L, -1)) {
			lua_pop(L, 1);
			return 0;
		}
		lua_Integer k = lua_tointeger(L, -1);
		if (k < 1 || (size_t)k > len) {
			lua_pop(L, 1);
			return 0;
		}
		count++;
	}
	*n = len;
	return count == len && len > 0;
}

static json_t *table_to_json(lua_State *L, int idx, int depth, char **err)
{
	size_t n;
	if (is_array(L, idx, &n)) {
		json_t *a = json_array();
		for (size_t i = 1; i <= n; i++) {
			lua_rawgeti(L, idx, (lua_Integer)i);
			json_t *v = from_lua(L, lua_gettop(L), depth + 1, err);
			lua_pop(L, 1);
			if (!v) {
				json_decref(a);
				return NULL;
			}
			json_array_append_new(a, v);
		}
		return a;
	}
	json_t *o = json_object();
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		char kbuf[32];
		const char *k;
		if (lua_type(L, -2) == LUA_TSTRING) {
			size_t klen;
			k = lua_tolstring(L, -2, &klen);
			if (memchr(k, '\0', klen)) {
				*err =
				    ng_xstrdup("a table key holding a NUL byte cannot be stored");
				lua_pop(L, 2);
				json_decref(o);
				return NULL;
			}
		} else if (lua_isinteger(L, -2)) {
			snprintf(kbuf, sizeof kbuf, "%lld", (long long)lua_tointeger(L, -2));
			k = kbuf;
		} else {
			*err = ng_xasprintf("a table key of type %s cannot be stored",
			                    luaL_typename(L, -2));
			lua_pop(L, 2);
			json_decref(o);
			return NULL;
		}
		json_t *v = from_lua(L, lua_gettop(L), depth + 1, err);
		if (!v) {
			lua_pop(L, 2);
			json_decref(o);
			return NULL;
		}
		json_object_set_new(o, k, v);
		lua_pop(L, 1);
	}
	return o;
}

static json_t *from_lua(lua_State *L, int idx, int depth, char **err)
{
	if (depth > MAX_DEPTH) {
		*err = ng_xstrdup("a table nested deeper than 32 levels cannot be stored");
		return NULL;
	}
	if (!lua_checkstack(L, 4)) {
		*err = ng_xstrdup("out of stack");
		return NULL;
	}
	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		return json_null();
	case LUA_TBOOLEAN:
		return json_boolean(lua_toboolean(L, idx));
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx))
			return json_integer((json_int_t)lua_tointeger(L, idx));
		if (!isfinite(lua_tonumber(L, idx))) {
			*err = ng_xstrdup("NaN and infinity cannot be stored");
			return NULL;
		}
		return json_real(lua_tonumber(L, idx));
	case LUA_TSTRING: {
		size_t len;
		const char *s = lua_tolstring(L, idx, &len);
		/* PostgreSQL's text and jsonb cannot hold U+0000, nor can jansson read it back by
		 * default: refused here, at the script's call, rather than when a message renders.
		 */
		if (memchr(s, '\0', len)) {
			*err = ng_xstrdup("a string holding a NUL byte cannot be stored");
			return NULL;
		}
		json_t *v = json_stringn(s, len);
		if (!v)
			*err = ng_xstrdup("a string that is not valid UTF-8 cannot be stored");
		return v;
	}
	case LUA_TTABLE:
		return table_to_json(L, idx, depth, err);
	default:
		*err = ng_xasprintf("a %s value cannot be stored", luaL_typename(L, idx));
		return NULL;
	}
}

json_t *wf_json_from_lua(lua_State *L, int idx, char **err)
{
	*err = NULL;
	return from_lua(L, lua_absindex(L, idx), 0, err);
}

void wf_json_push(lua_State *L, json_t *v)
{
	luaL_checkstack(L, 4, "json");
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		lua_createtable(L, 0, (int)json_object_size(v));
		const char *k;
		json_t *x;
		json_object_foreach(v, k, x)
		{
			if (json_is_null(x))
				continue;
			wf_json_push(L, x);
			lua_setfield(L, -2, k);
		}
		break;
	}
	case JSON_ARRAY: {
		lua_createtable(L, (int)json_array_size(v), 0);
		size_t i;
		json_t *x;
		json_array_foreach(v, i, x)
		{
			wf_json_push(L, x);
			lua_rawseti(L, -2, (lua_Integer)i + 1);
		}
		break;
	}
	case JSON_STRING:
		lua_pushlstring(L, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		lua_pushinteger(L, (lua_Integer)json_integer_value(v));
		break;
	case JSON_REAL:
		lua_pushnumber(L, json_real_value(v));
		break;
	case JSON_TRUE:
		lua_pushboolean(L, 1);
		break;
	case JSON_FALSE:
		lua_pushboolean(L, 0);
		break;
	default:
		lua_pushnil(L);
	}
}

char *wf_json_dump(json_t *v)
{
	char *s = v ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
	return s ? s : ng_xstrdup("null");
}

/* ---- statements of one transaction ------------------------------------------------------- */

void wf_stmts_add(struct wf_stmts *s, const char *sql, int nparams, ...)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 8;
		s->v = ng_xrealloc(s->v, (size_t)s->cap * sizeof(*s->v));
		s->params = ng_xrealloc(s->params, (size_t)s->cap * sizeof(*s->params));
	}
	char **p = nparams ? ng_xcalloc((size_t)nparams, sizeof(char *)) : NULL;
	va_list ap;
	va_start(ap, nparams);
	for (int i = 0; i < nparams; i++) {
		const char *a = va_arg(ap, const char *);
		p[i] = a ? ng_xstrdup(a) : NULL;
	}
	va_end(ap);
	s->params[s->n] = p;
	s->v[s->n] = (struct ng_db_stmt){sql, nparams, (const char *const *)p};
	s->n++;
}

char *wf_bigint_array(const int64_t *ids, size_t n)
{
	size_t cap = n * 21 + 3, len = 0;
	char *arr = ng_xmalloc(cap);
	arr[len++] = '{';
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(arr + len, cap - len, "%s%lld", i ? "," : "",
		                        (long long)ids[i]);
	arr[len++] = '}';
	arr[len] = '\0';
	return arr;
}

void wf_stmts_free(struct wf_stmts *s)
{
	for (int i = 0; i < s->n; i++) {
		for (int j = 0; j < s->v[i].nparams; j++)
			free(s->params[i][j]);
		free(s->params[i]);
	}
	free(s->v);
	free(s->params);
	memset(s, 0, sizeof(*s));
}

/* ---- small helpers ------------------------------------------------------------------------ */

const char *ng_wf_ts(int64_t ms, char *buf, size_t len)
{
	time_t sec = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
	int milli = (int)(ms - (int64_t)sec * 1000);
	struct tm tm;
	gmtime_r(&sec, &tm);
	snprintf(buf, len, "%04d-%02d-%02d %02d:%02d:%02d.%03d+00", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, milli);
	return buf;
}

int64_t wf_now(const struct ng_wf_engine *e)
{
	return ng_clock_now_ms(e->opt.clock);
}

const char *wf_col(PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

int64_t wf_col_i64(PGresult *res, int row, int col)
{
	const char *v = wf_col(res, row, col);
	return v ? strtoll(v, NULL, 10) : 0;
}
