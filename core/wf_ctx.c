/*
 * wf_ctx.c — the `ctx` table a workflow's run(ctx) receives. Every primitive here is an effect:
 * the C function checks its arguments (misuse raises, with the script's file:line), turns them into
 * the JSON the journal records, hands that request to the step (wf_step.c) and yields. The step
 * either answers from the journal (replay) or performs it; the answer comes back as the function's
 * results. Nothing here touches the database or the clock, so every call is replayable.
 *
 * Besides the functions, ctx carries plain values: ctx.event (the triggering event, or nil),
 * ctx.customer_id, ctx.instance_id, ctx.workflow, ctx.version.
 */
#include "ng.h"
#include "wf_int.h"

#include <lauxlib.h>
#include <string.h>

static const char *const channels[] = {"email", "sms", "messenger", NULL};
static const char *const purposes[] = {"marketing", "transactional", NULL};

static int one_of(const char *s, const char *const *list)
{
	for (int i = 0; list[i]; i++)
		if (strcmp(s, list[i]) == 0)
			return 1;
	return 0;
}

/* Hands (kind, args) to the step and yields. args is owned by the request from here on. */
static int request(lua_State *L, const char *kind, json_t *args)
{
	struct wf_request *rq = lua_touserdata(L, lua_upvalueindex(1));
	if (!ng_lua_activation_current(L) || !rq) {
		json_decref(args);
		return luaL_error(L, "ctx.%s can only be called while run(ctx) runs", kind);
	}
	if (!args)
		return luaL_error(L, "ctx.%s: arguments must be valid UTF-8 text", kind);
	free(rq->kind);
	json_decref(rq->args);
	rq->kind = ng_xstrdup(kind);
	rq->args = args;
	return ng_lua_yield(L, 0);
}

/* The value at idx as JSON; a value the journal cannot hold is a misuse and raises. */
static json_t *to_json(lua_State *L, int idx, const char *what)
{
	char *err = NULL;
	json_t *v = wf_json_from_lua(L, idx, &err);
	if (!v) {
		luaL_where(L, 1); /* the script's line that made the call */
		lua_pushfstring(L, "%s: %s", what, err ? err : "cannot be stored");
		free(err);
		lua_concat(L, 2);
		lua_error(L);
	}
	return v;
}

static const char *check_duration(lua_State *L, int idx, const char *fn)
{
	int64_t ms;
	if (lua_type(L, idx) == LUA_TNUMBER) {
		if (lua_tonumber(L, idx) < 0)
			luaL_error(L, "ctx.%s: a duration cannot be negative", fn);
		lua_pushfstring(L, "%ds", (int)lua_tointeger(L, idx));
		lua_replace(L, idx);
	}
	const char *s = lua_tostring(L, idx);
	if (!s || ng_clock_parse_duration(s, &ms) != 0)
		luaL_error(L, "ctx.%s: '%s' is not a duration (like \"30m\", \"1h\", \"2d\")", fn,
		           s ? s : luaL_typename(L, idx));
	return s;
}

static int ctx_wait(lua_State *L)
{
	const char *d = check_duration(L, 1, "wait");
	return request(L, "wait", json_pack("{s:s}", "duration", d));
}

static int ctx_wait_until(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	json_t *a = json_object();
	int ty = lua_getfield(L, 1, "at");
	if (ty == LUA_TSTRING || ty == LUA_TNUMBER)
		json_object_set_new(a, "at", to_json(L, -1, "ctx.wait_until"));
	else if (ty != LUA_TNIL) {
		json_decref(a);
		return luaL_error(L,
		                  "ctx.wait_until: at must be a time (\"2026-12-01T09:00:00Z\")");
	}
	static const char *const parts[] = {"local_hour", "local_minute"};
	for (int i = 0; i < 2; i++) {
		ty = lua_getfield(L, 1, parts[i]);
		if (ty == LUA_TNIL)
			continue;
		lua_Integer v = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : -1;
		if (v < 0 || v > (i == 0 ? 23 : 59)) {
			json_decref(a);
			return luaL_error(L, "ctx.wait_until: %s must be an integer 0..%d",
			                  parts[i], i == 0 ? 23 : 59);
		}
		json_object_set_new(a, parts[i], json_integer(v));
	}
	if (!json_object_get(a, "at") && !json_object_get(a, "local_hour")) {
		json_decref(a);
		return luaL_error(L, "ctx.wait_until needs at or local_hour");
	}
	return request(L, "wait_until", a);
}

static int ctx_wait_for(lua_State *L)
{
	const char *type = luaL_checkstring(L, 1);
	json_t *a = json_pack("{s:s}", "type", type);
	if (!lua_isnoneornil(L, 2)) {
		luaL_checktype(L, 2, LUA_TTABLE);
		if (lua_getfield(L, 2, "timeout") != LUA_TNIL)
			json_object_set_new(
			    a, "timeout",
			    json_string(check_duration(L, lua_gettop(L), "wait_for")));
		int ty = lua_getfield(L, 2, "match");
		if (ty == LUA_TTABLE)
			json_object_set_new(a, "match", to_json(L, -1, "ctx.wait_for match"));
		else if (ty != LUA_TNIL) {
			json_decref(a);
			return luaL_error(L, "ctx.wait_for: match must be a table of event fields");
		}
	}
	return request(L, "wait_for", a);
}

static int ctx_send(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_getfield(L, 1, "channel");
	const char *ch = lua_tostring(L, -1);
	if (!ch || !one_of(ch, channels))
		return luaL_error(L,
		                  "ctx.send: channel must be \"email\", \"sms\" or \"messenger\"");
	lua_getfield(L, 1, "template");
	const char *tpl = lua_tostring(L, -1);
	if (!tpl || !*tpl)
		return luaL_error(L, "ctx.send: template must name a message template");
	lua_getfield(L, 1, "purpose");
	const char *purpose = lua_isnil(L, -1) ? "marketing" : lua_tostring(L, -1);
	if (!purpose || !one_of(purpose, purposes))
		return luaL_error(L,
		                  "ctx.send: purpose must be \"marketing\" or \"transactional\"");
	int ty = lua_getfield(L, 1, "data");
	if (ty != LUA_TNIL && ty != LUA_TTABLE)
		return luaL_error(L, "ctx.send: data must be a table");
	/* What the contact-pressure policy does with this message (docs/workflows.md). Journaled
	 * only when given, so instances journaled before these options existed replay unchanged. */
	lua_getfield(L, 1, "priority");
	int has_prio = !lua_isnil(L, -1);
	lua_Integer prio = 0;
	if (has_prio &&
	    (!lua_isinteger(L, -1) || (prio = lua_tointeger(L, -1)) < -1000 || prio > 1000))
		return luaL_error(L, "ctx.send: priority must be an integer from -1000 to 1000");
	lua_getfield(L, 1, "quiet_hours");
	const char *quiet = lua_isnil(L, -1) ? NULL : lua_tostring(L, -1);
	if (!lua_isnil(L, -1) && (!quiet || (strcmp(quiet, "defer") && strcmp(quiet, "skip"))))
		return luaL_error(L, "ctx.send: quiet_hours must be \"defer\" or \"skip\"");
	lua_getfield(L, 1, "on_cap");
	const char *on_cap = lua_isnil(L, -1) ? NULL : lua_tostring(L, -1);
	if (!lua_isnil(L, -1) && (!on_cap || (strcmp(on_cap, "defer") && strcmp(on_cap, "drop"))))
		return luaL_error(L, "ctx.send: on_cap must be \"defer\" or \"drop\"");
	lua_pop(L, 3);
	json_t *data = ty == LUA_TNIL ? json_object() : to_json(L, -1, "ctx.send data");
	json_t *args = json_pack("{s:s, s:s, s:s, s:o}", "channel", ch, "template", tpl, "purpose",
	                         purpose, "data", data);
	if (has_prio)
		json_object_set_new(args, "priority", json_integer(prio));
	if (quiet)
		json_object_set_new(args, "quiet_hours", json_string(quiet));
	if (on_cap)
		json_object_set_new(args, "on_cap", json_string(on_cap));
	return request(L, "send", args);
}

static int ctx_customer(lua_State *L)
{
	return request(L, "customer", json_object());
}

static int ctx_query(lua_State *L)
{
	const char *sql = luaL_checkstring(L, 1);
	json_t *params = json_array();
	if (!lua_isnoneornil(L, 2)) {
		luaL_checktype(L, 2, LUA_TTABLE);
		lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
		for (lua_Integer i = 1; i <= n; i++) {
			int ty = lua_rawgeti(L, 2, i);
			if (ty != LUA_TSTRING && ty != LUA_TNUMBER && ty != LUA_TBOOLEAN) {
				json_decref(params);
				return luaL_error(
				    L,
				    "ctx.query: parameter %d must be a string, number "
				    "or boolean",
				    (int)i);
			}
			json_array_append_new(params, to_json(L, -1, "ctx.query"));
			lua_pop(L, 1);
		}
	}
	return request(L, "query", json_pack("{s:s, s:o}", "sql", sql, "params", params));
}

static int ctx_split(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	luaL_checktype(L, 2, LUA_TTABLE);
	lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
	if (n < 2)
		return luaL_error(L, "ctx.split: give at least two variants, like {\"a\", \"b\"}");
	json_t *v = json_array();
	for (lua_Integer i = 1; i <= n; i++) {
		if (lua_rawgeti(L, 2, i) != LUA_TSTRING) {
			json_decref(v);
			return luaL_error(L, "ctx.split: variants must be strings");
		}
		json_array_append_new(v, json_string(lua_tostring(L, -1)));
		lua_pop(L, 1);
	}
	return request(L, "split", json_pack("{s:s, s:o}", "name", name, "variants", v));
}

static int ctx_emit(lua_State *L)
{
	const char *type = luaL_checkstring(L, 1);
	if (!lua_isnoneornil(L, 2))
		luaL_checktype(L, 2, LUA_TTABLE);
	json_t *data = lua_isnoneornil(L, 2) ? json_object() : to_json(L, 2, "ctx.emit data");
	return request(L, "emit", json_pack("{s:s, s:o}", "type", type, "data", data));
}

/* Text for log arguments that never depends on addresses (a replay must compare equal). */
static int ctx_log(lua_State *L)
{
	luaL_Buffer b;
	int n = lua_gettop(L);
	luaL_buffinit(L, &b);
	for (int i = 1; i <= n; i++) {
		if (i > 1)
			luaL_addchar(&b, ' ');
		int ty = lua_type(L, i);
		if (ty == LUA_TSTRING || ty == LUA_TNUMBER) {
			lua_pushvalue(L, i);
			luaL_addvalue(&b);
		} else if (ty == LUA_TBOOLEAN || ty == LUA_TNIL) {
			luaL_addstring(&b, ty == LUA_TNIL        ? "nil"
			                   : lua_toboolean(L, i) ? "true"
			                                         : "false");
		} else {
			luaL_addstring(&b, luaL_typename(L, i));
		}
	}
	luaL_pushresult(&b);
	return request(L, "log", json_pack("{s:s}", "message", lua_tostring(L, -1)));
}

static int ctx_now(lua_State *L)
{
	return request(L, "now", json_object());
}

static const luaL_Reg api[] = {
    {"wait", ctx_wait},
    {"wait_until", ctx_wait_until},
    {"wait_for", ctx_wait_for},
    {"send", ctx_send},
    {"customer", ctx_customer},
    {"query", ctx_query},
    {"split", ctx_split},
    {"emit", ctx_emit},
    {"log", ctx_log},
    {"now", ctx_now},
    {NULL, NULL},
};

void wf_ctx_push(lua_State *L, struct wf_request *rq, json_t *event, int64_t cid, int64_t iid,
                 const char *wf, int version)
{
	lua_createtable(L, 0, 16);
	lua_pushlightuserdata(L, rq);
	luaL_setfuncs(L, api, 1);
	if (event) {
		wf_json_push(L, event);
		lua_setfield(L, -2, "event");
	}
	lua_pushinteger(L, cid);
	lua_setfield(L, -2, "customer_id");
	lua_pushinteger(L, iid);
	lua_setfield(L, -2, "instance_id");
	lua_pushstring(L, wf);
	lua_setfield(L, -2, "workflow");
	lua_pushinteger(L, version);
	lua_setfield(L, -2, "version");
}
