/*
 * wf_def.c — workflow definitions: loading a workflow file in the sandbox, validating the table it
 * returns (every problem is one sentence naming file:line), describing it for workflow_versions,
 * and calling its trigger filter and key on an event.
 *
 * A definition's top level runs once at load (bounded like any activation); the table it returns
 * is kept for filter and key. `run` itself always starts from a fresh run of the chunk (see
 * ng_lua_activation_start_script), so instances never share the file's locals.
 */
#include "config.h"
#include "ng.h"
#include "wf_int.h"

#include <ctype.h>
#include <errno.h>
#include <lauxlib.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every name the ctx table offers; `nudge check` refuses a call to anything else. */
static const char *const ctx_api[] = {
    "wait", "wait_until", "wait_for", "send",        "customer",    "query",    "split",   "emit",
    "log",  "now",        "event",    "customer_id", "instance_id", "workflow", "version", NULL,
};

struct loader {
	struct ng_wf_def *def;
	struct ng_conf_lines *lines;
	lua_State *L;
	int tbl; /* the definition table's index on L */
	char *err;
};

static int line_of(struct loader *ld, const char *path)
{
	int line = ld->lines ? ng_conf_lines_find(ld->lines, path) : 0;
	return line > 0 ? line : 1;
}

static int fail(struct loader *ld, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct loader *ld, const char *path, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (!ld->err)
		ld->err = ng_xasprintf("%s:%d: %s", ld->def->path, line_of(ld, path), msg);
	return -EINVAL;
}

/* Pushes t[k] (raw: no script code runs outside an activation) and returns its type. */
static int field(lua_State *L, int t, const char *k)
{
	lua_pushstring(L, k);
	return lua_rawget(L, t);
}

static char *opt_string(struct loader *ld, int t, const char *k, const char *path, int *rc)
{
	char *out = NULL;
	int ty = field(ld->L, t, k);
	if (ty == LUA_TSTRING)
		out = ng_xstrdup(lua_tostring(ld->L, -1));
	else if (ty != LUA_TNIL)
		*rc =
		    fail(ld, path, "%s must be a string, not a %s", path, lua_typename(ld->L, ty));
	lua_pop(ld->L, 1);
	return out;
}

static int opt_function(struct loader *ld, int t, const char *k, const char *path, int *rc)
{
	int ty = field(ld->L, t, k);
	if (ty == LUA_TFUNCTION)
		return luaL_ref(ld->L, LUA_REGISTRYINDEX);
	if (ty != LUA_TNIL)
		*rc = fail(ld, path, "%s must be a function, not a %s", path,
		           lua_typename(ld->L, ty));
	lua_pop(ld->L, 1);
	return LUA_NOREF;
}

static int check_keys(struct loader *ld, int t, const char *const *allowed, const char *prefix)
{
	lua_State *L = ld->L;
	lua_pushnil(L);
	while (lua_next(L, t)) {
		lua_pop(L, 1);
		const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
		int ok = 0;
		for (int i = 0; k && allowed[i]; i++)
			ok |= strcmp(allowed[i], k) == 0;
		if (!ok) {
			char path[128];
			snprintf(path, sizeof path, "%s%s", prefix, k ? k : "?");
			lua_pop(L, 1);
			return fail(ld, path, "unknown key '%s'", path);
		}
	}
	return 0;
}

static int load_trigger(struct loader *ld)
{
	lua_State *L = ld->L;
	struct ng_wf_def *d = ld->def;
	int rc = 0;
	if (field(L, ld->tbl, "trigger") != LUA_TTABLE) {
		lua_pop(L, 1);
		return fail(ld, "trigger",
		            "trigger must be a table such as {event = \"order.placed\"}");
	}
	int t = lua_gettop(L);
	static const char *const keys[] = {"event", "filter",  "date",   "at",
	                                   "every", "segment", "manual", NULL};
	if ((rc = check_keys(ld, t, keys, "trigger.")))
		goto out;
	d->event_type = opt_string(ld, t, "event", "trigger.event", &rc);
	d->date_field = opt_string(ld, t, "date", "trigger.date", &rc);
	char *every = opt_string(ld, t, "every", "trigger.every", &rc);
	d->segment = opt_string(ld, t, "segment", "trigger.segment", &rc);
	char *at = opt_string(ld, t, "at", "trigger.at", &rc);
	d->filter_ref = opt_function(ld, t, "filter", "trigger.filter", &rc);
	int manual = field(L, t, "manual") == LUA_TBOOLEAN && lua_toboolean(L, -1);
	lua_pop(L, 1);
	int kinds = !!d->event_type + !!d->date_field + !!every + manual;
	if (!rc && kinds != 1)
		rc = fail(ld, "trigger",
		          "trigger needs exactly one of event, date, every or manual");
	if (!rc && d->event_type) {
		d->trigger = NG_WF_TRIGGER_EVENT;
	} else if (!rc && d->date_field) {
		d->trigger = NG_WF_TRIGGER_DATE;
		int hh = 9, mm = 0;
		if (at &&
		    (sscanf(at, "%d:%d", &hh, &mm) != 2 || hh < 0 || hh > 23 || mm < 0 || mm > 59))
			rc = fail(ld, "trigger.at", "trigger.at must be a local time \"HH:MM\"");
		d->at_minute = hh * 60 + mm;
	} else if (!rc && every) {
		d->trigger = NG_WF_TRIGGER_EVERY;
		if (ng_clock_parse_duration(every, &d->every_ms) != 0 || d->every_ms < 60000)
			rc = fail(
			    ld, "trigger.every",
			    "trigger.every must be a duration of at least a minute, like \"1d\"");
		else if (!d->segment)
			rc = fail(ld, "trigger",
			          "a recurring trigger needs a segment (SQL returning id)");
	} else if (!rc) {
		d->trigger = NG_WF_TRIGGER_MANUAL;
	}
	if (!rc && d->filter_ref != LUA_NOREF && d->trigger != NG_WF_TRIGGER_EVENT)
		rc = fail(ld, "trigger.filter", "only an event trigger takes a filter");
	free(every);
	free(at);
out:
	lua_pop(L, 1);
	return rc;
}

static int load_exits(struct loader *ld)
{
	lua_State *L = ld->L;
	int ty = field(L, ld->tbl, "exits");
	int rc = 0;
	if (ty == LUA_TTABLE) {
		int t = lua_gettop(L);
		size_t n = lua_rawlen(L, t);
		ld->def->exits = ng_xcalloc(n + 1, sizeof(char *));
		for (size_t i = 1; i <= n && !rc; i++) {
			if (lua_rawgeti(L, t, (lua_Integer)i) != LUA_TSTRING)
				rc = fail(ld, "exits", "exits must be a list of event types");
			else
				ld->def->exits[ld->def->nexits++] = ng_xstrdup(lua_tostring(L, -1));
			lua_pop(L, 1);
		}
	} else if (ty != LUA_TNIL) {
		rc = fail(ld, "exits",
		          "exits must be a list of event types, like {\"order.placed\"}");
	}
	lua_pop(L, 1);
	return rc;
}

/* Flags ctx.NAME for any NAME the API does not have, with its line. */
static int check_api_calls(struct loader *ld)
{
	const char *s = ld->def->source;
	int line = 1;
	for (const char *p = s; *p; p++) {
		if (*p == '\n')
			line++;
		if (strncmp(p, "ctx.", 4) != 0 ||
		    (p > s && (isalnum((unsigned char)p[-1]) || p[-1] == '_' || p[-1] == '.')))
			continue;
		const char *n = p + 4;
		size_t len = 0;
		while (isalnum((unsigned char)n[len]) || n[len] == '_')
			len++;
		int ok = 0;
		for (int i = 0; ctx_api[i]; i++)
			ok |= strlen(ctx_api[i]) == len && strncmp(ctx_api[i], n, len) == 0;
		if (!ok && !ld->err) {
			ld->err = ng_xasprintf("%s:%d: unknown workflow API ctx.%.*s",
			                       ld->def->path, line, (int)len, n);
			return -EINVAL;
		}
	}
	return 0;
}

static int validate(struct loader *ld)
{
	lua_State *L = ld->L;
	struct ng_wf_def *d = ld->def;
	int rc = 0;
	static const char *const keys[] = {"name",    "version", "description", "trigger", "key",
	                                   "reentry", "exits",   "run",         NULL};
	if ((rc = check_keys(ld, ld->tbl, keys, "")))
		return rc;
	char *name = opt_string(ld, ld->tbl, "name", "name", &rc);
	if (rc || !name || !*name) {
		free(name);
		return rc ? rc : fail(ld, "name", "the definition needs a name");
	}
	d->name = name;
	for (const char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
			return fail(ld, "name", "name may hold letters, digits, '_', '-' and '.'");
	int ty = field(L, ld->tbl, "version");
	if (ty == LUA_TNUMBER && lua_isinteger(L, -1))
		d->declared_version = (int)lua_tointeger(L, -1);
	else if (ty != LUA_TNIL)
		rc = fail(ld, "version", "version must be an integer");
	lua_pop(L, 1);
	if (rc || (rc = load_trigger(ld)) || (rc = load_exits(ld)))
		return rc;
	d->key_ref = opt_function(ld, ld->tbl, "key", "key", &rc);
	char *reentry = opt_string(ld, ld->tbl, "reentry", "reentry", &rc);
	if (!rc && reentry && ng_wf_parse_reentry(reentry, &d->reentry, &d->reentry_ms) != 0)
		rc = fail(ld, "reentry", "reentry must be \"always\", \"once\" or \"after 30d\"");
	free(reentry);
	if (rc)
		return rc;
	if (field(L, ld->tbl, "run") != LUA_TFUNCTION)
		rc = fail(ld, "run", "the definition needs run = function(ctx) ... end");
	lua_pop(L, 1);
	return rc ? rc : check_api_calls(ld);
}

int ng_wf_parse_reentry(const char *s, int *kind, int64_t *after_ms)
{
	*after_ms = 0;
	if (strcmp(s, "always") == 0)
		*kind = WF_REENTRY_ALWAYS;
	else if (strcmp(s, "once") == 0)
		*kind = WF_REENTRY_ONCE;
	else if (strncmp(s, "after ", 6) == 0 && ng_clock_parse_duration(s + 6, after_ms) == 0)
		*kind = WF_REENTRY_AFTER;
	else
		return -EINVAL;
	return 0;
}

int ng_wf_load_buffer(struct ng_lua *lua, const char *name, const char *text, size_t len,
                      struct ng_wf_def **out, char **err)
{
	*out = NULL;
	*err = NULL;
	struct ng_wf_def *d = ng_xcalloc(1, sizeof(*d));
	d->lua = lua;
	d->path = ng_xstrdup(name);
	d->source = ng_xstrndup(text, len);
	d->filter_ref = d->key_ref = d->def_ref = LUA_NOREF;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	EVP_Digest(text, len, md, &mdlen, EVP_sha256(), NULL);
	for (unsigned i = 0; i < mdlen && i < 32; i++)
		snprintf(d->hash + 2 * i, 3, "%02x", md[i]);

	int rc = ng_lua_script_load_buffer(lua, name, text, len, &d->script, err);
	if (rc) {
		ng_wf_def_free(d);
		return rc;
	}
	/* The top level runs bounded, like any script code. */
	lua_State *L = ng_lua_state(lua);
	struct ng_lua_activation *act;
	struct ng_lua_result res;
	ng_lua_script_push(d->script);
	rc = ng_lua_activation_start(lua, 0, &act, &res);
	if (rc == 0 && res.outcome != NG_LUA_FINISHED) {
		*err = res.outcome == NG_LUA_YIELDED
		           ? ng_xasprintf("%s:1: the top level may not call the workflow API", name)
		           : ng_xstrdup(res.message ? res.message : "failed");
		rc = -EINVAL;
	} else if (rc == 0 &&
	           (res.nvalues < 1 || !lua_istable(ng_lua_activation_thread(act), -res.nvalues))) {
		*err = ng_xasprintf("%s:1: a workflow file must return its definition table", name);
		rc = -EINVAL;
	} else if (rc == 0) {
		lua_State *co = ng_lua_activation_thread(act);
		lua_pop(co, res.nvalues - 1);
		lua_xmove(co, L, 1);
		d->def_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	if (act)
		ng_lua_activation_free(act);
	if (rc) {
		ng_wf_def_free(d);
		return rc;
	}
	struct loader ld = {.def = d, .L = L, .lines = ng_conf_lines_scan(d->source)};
	lua_rawgeti(L, LUA_REGISTRYINDEX, d->def_ref);
	ld.tbl = lua_gettop(L);
	rc = validate(&ld);
	lua_settop(L, ld.tbl - 1);
	ng_conf_lines_free(ld.lines);
	if (rc) {
		*err = ld.err ? ld.err : ng_xasprintf("%s: invalid definition", name);
		ng_wf_def_free(d);
		return rc;
	}
	*out = d;
	return 0;
}

int ng_wf_load(struct ng_lua *lua, const char *path, struct ng_wf_def **out, char **err)
{
	*out = NULL;
	FILE *f = fopen(path, "rb");
	if (!f) {
		int e = errno;
		*err = ng_xasprintf("%s: %s", path, strerror(e));
		return -e;
	}
	size_t cap = 1 << 16, len = 0;
	char *buf = ng_xmalloc(cap);
	size_t n;
	while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len == cap && cap < (1 << 22))
			buf = ng_xrealloc(buf, cap *= 2);
		else if (len == cap)
			break;
	}
	fclose(f);
	int rc = ng_wf_load_buffer(lua, path, buf, len, out, err);
	free(buf);
	return rc;
}

void ng_wf_def_free(struct ng_wf_def *d)
{
	if (!d)
		return;
	lua_State *L = ng_lua_state(d->lua);
	luaL_unref(L, LUA_REGISTRYINDEX, d->filter_ref);
	luaL_unref(L, LUA_REGISTRYINDEX, d->key_ref);
	luaL_unref(L, LUA_REGISTRYINDEX, d->def_ref);
	ng_lua_script_free(d->script);
	for (int i = 0; i < d->nexits; i++)
		free(d->exits[i]);
	free(d->exits);
	free(d->name);
	free(d->path);
	free(d->source);
	free(d->event_type);
	free(d->date_field);
	free(d->segment);
	free(d);
}

const char *ng_wf_def_name(const struct ng_wf_def *d)
{
	return d->name;
}

enum ng_wf_trigger ng_wf_def_trigger(const struct ng_wf_def *d)
{
	return d->trigger;
}

char *ng_wf_def_describe(const struct ng_wf_def *d)
{
	json_t *t = json_object();
	static const char *const kinds[] = {"event", "date", "every", "manual"};
	json_object_set_new(t, "kind", json_string(kinds[d->trigger]));
	if (d->event_type)
		json_object_set_new(t, "event", json_string(d->event_type));
	if (d->filter_ref != LUA_NOREF)
		json_object_set_new(t, "filter", json_true());
	if (d->date_field) {
		json_object_set_new(t, "date", json_string(d->date_field));
		json_object_set_new(t, "at_minute", json_integer(d->at_minute));
	}
	if (d->trigger == NG_WF_TRIGGER_EVERY) {
		json_object_set_new(t, "every_ms", json_integer(d->every_ms));
		json_object_set_new(t, "segment", json_string(d->segment));
	}
	json_t *ex = json_array();
	for (int i = 0; i < d->nexits; i++)
		json_array_append_new(ex, json_string(d->exits[i]));
	static const char *const re[] = {"always", "once", "after"};
	json_t *o = json_pack("{s:s, s:o, s:b, s:s, s:I, s:o}", "name", d->name, "trigger", t,
	                      "key", d->key_ref != LUA_NOREF, "reentry", re[d->reentry],
	                      "reentry_ms", (json_int_t)d->reentry_ms, "exits", ex);
	if (d->declared_version)
		json_object_set_new(o, "declared_version", json_integer(d->declared_version));
	char *s = wf_json_dump(o);
	json_decref(o);
	return s;
}

/* Runs fn(event) bounded; returns 0 with the one result on top of L, or an error message. */
static int call_on_event(struct ng_wf_def *d, int fn_ref, json_t *event, char **err)
{
	lua_State *L = ng_lua_state(d->lua);
	struct ng_lua_activation *act;
	struct ng_lua_result res;
	lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
	wf_json_push(L, event);
	int rc = ng_lua_activation_start(d->lua, 1, &act, &res);
	if (rc == 0 && res.outcome != NG_LUA_FINISHED) {
		*err = ng_xstrdup(res.outcome == NG_LUA_YIELDED ? "the filter or key called the API"
		                                                : res.message);
		rc = -EINVAL;
	} else if (rc == 0) {
		lua_State *co = ng_lua_activation_thread(act);
		if (res.nvalues == 0)
			lua_pushnil(L);
		else {
			lua_pop(co, res.nvalues - 1);
			lua_xmove(co, L, 1);
		}
	}
	if (act)
		ng_lua_activation_free(act);
	return rc;
}

int wf_def_match(struct ng_wf_def *d, json_t *event, char **key, char **err)
{
	lua_State *L = ng_lua_state(d->lua);
	*key = NULL;
	*err = NULL;
	if (d->filter_ref != LUA_NOREF) {
		if (call_on_event(d, d->filter_ref, event, err))
			return -EINVAL;
		int pass = lua_toboolean(L, -1);
		lua_pop(L, 1);
		if (!pass)
			return 0;
	}
	if (d->key_ref != LUA_NOREF) {
		if (call_on_event(d, d->key_ref, event, err))
			return -EINVAL;
		if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)
			*key = ng_xstrdup(lua_tostring(L, -1));
		lua_pop(L, 1);
		if (!*key) {
			*err = ng_xstrdup("key(event) must return a string or a number");
			return -EINVAL;
		}
	}
	return 1;
}

struct ng_wf_def *wf_def_find(struct ng_wf_engine *e, const char *name, int version)
{
	for (struct ng_wf_def *d = e->defs; d; d = d->next)
		if (d->version == version && strcmp(d->name, name) == 0)
			return d;
	return NULL;
}

struct ng_wf_def *wf_def_active(struct ng_wf_engine *e, const char *name)
{
	for (struct ng_wf_def *d = e->defs; d; d = d->next)
		if (d->active && strcmp(d->name, name) == 0)
			return d;
	return NULL;
}
