/*
 * lua_sandbox.c — the sandbox's state: the capped allocator, opening and closing, the log hook and
 * text-only loading into the read-only environment. Activations (and the count hook that enforces
 * the limits) are in lua_activation.c; the globals in lua_env.c and lua_guard.c.
 */
#include "lua_int.h"
#include "ng.h"

#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MEMORY       (64u << 20)
#define DEFAULT_INSTRUCTIONS 50000000u
#define DEFAULT_WALL_MS      1000u
/* A workflow file larger than this is surely a mistake. */
#define MAX_SCRIPT_BYTES (4u << 20)

/* ---- the capped allocator ---------------------------------------------------------------- */

int ng_lua__over_cap(const struct ng_lua *lua, size_t grow)
{
	if (lua->used + grow > lua->limits.memory_bytes || lua->used + grow < lua->used)
		return 1;
	const struct ng_lua_activation *act = lua->current;
	size_t cap = lua->limits.activation_memory_bytes;
	return act && cap && lua->used + grow > act->mem_base + cap;
}

static void *sandbox_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct ng_lua *lua = ud;
	size_t old = ptr ? osize : 0;

	if (nsize == 0) {
		free(ptr);
		lua->used -= old;
		return NULL;
	}
	if (nsize > old && lua->enforce && ng_lua__over_cap(lua, nsize - old)) {
		lua->refused_ptr = ptr;
		lua->refused_osize = osize;
		lua->refused_nsize = nsize;
		if (lua->current)
			lua->current->refused_bytes = nsize - old;
		return NULL;
	}
	void *p = realloc(ptr, nsize);
	if (!p)
		return NULL;
	lua->used = lua->used - old + nsize;
	if (lua->used > lua->peak)
		lua->peak = lua->used;
	struct ng_lua_activation *act = lua->current;
	if (act) {
		if (lua->used > act->mem_base && lua->used - act->mem_base > act->mem_peak)
			act->mem_peak = lua->used - act->mem_base;
		/* Lua's retry after its emergency collection fitted: no memory kill after all. */
		if (act->refused_bytes && ptr == lua->refused_ptr && osize == lua->refused_osize &&
		    nsize == lua->refused_nsize)
			act->refused_bytes = 0;
	}
	return p;
}

static int on_panic(lua_State *L)
{
	ng_error("lua", "unprotected Lua error: %s", lua_tostring(L, -1));
	abort();
}

/* ---- the state --------------------------------------------------------------------------- */

int ng_lua_open(struct ng_lua **out, const struct ng_lua_limits *limits)
{
	struct ng_lua *lua = ng_xcalloc(1, sizeof(*lua));
	if (limits)
		lua->limits = *limits;
	if (!lua->limits.memory_bytes)
		lua->limits.memory_bytes = DEFAULT_MEMORY;
	if (!lua->limits.instructions)
		lua->limits.instructions = DEFAULT_INSTRUCTIONS;
	if (!lua->limits.wall_ms)
		lua->limits.wall_ms = DEFAULT_WALL_MS;
	lua->L = lua_newstate(sandbox_alloc, lua);
	if (!lua->L) {
		free(lua);
		*out = NULL;
		return -ENOMEM;
	}
	lua_atpanic(lua->L, on_panic);
	*(struct ng_lua_activation **)lua_getextraspace(lua->L) = NULL;
	ng_lua__push_env(lua->L);
	lua->env_ref = luaL_ref(lua->L, LUA_REGISTRYINDEX);
	/* Fewer full collections at the cap: collect a little more eagerly than the default 200%.
	 */
	lua_gc(lua->L, LUA_GCINC, 150, 0, 0);
	*out = lua;
	return 0;
}

void ng_lua_close(struct ng_lua *lua)
{
	if (!lua)
		return;
	if (lua->live_scripts || lua->live_activations)
		ng_warn("lua", "closing a state with %u scripts and %u activations still open",
		        lua->live_scripts, lua->live_activations);
	lua_close(lua->L);
	free(lua);
}

lua_State *ng_lua_state(struct ng_lua *lua)
{
	return lua->L;
}

struct ng_lua *ng_lua_from(lua_State *L)
{
	void *ud = NULL;
	lua_getallocf(L, &ud);
	return ud;
}

void ng_lua_memory(const struct ng_lua *lua, size_t *used, size_t *peak)
{
	if (used)
		*used = lua->used;
	if (peak)
		*peak = lua->peak;
}

void ng_lua_set_log(struct ng_lua *lua, ng_lua_log_fn fn, void *data)
{
	lua->log_fn = fn;
	lua->log_data = data;
}

void ng_lua__log(lua_State *L, const char *msg)
{
	struct ng_lua *lua = ng_lua_from(L);
	struct ng_lua_activation *act = ng_lua_activation_current(L);
	if (lua->log_fn)
		lua->log_fn(act, msg, lua->log_data);
	else
		ng_info("lua", "%s", msg);
}

/* ---- loading ----------------------------------------------------------------------------- */

int ng_lua_script_load_buffer(struct ng_lua *lua, const char *name, const char *text, size_t len,
                              struct ng_lua_script **out, char **err)
{
	lua_State *L = lua->L;
	*out = NULL;
	if (err)
		*err = NULL;
	char *chunkname = ng_xasprintf("@%s", name);
	lua->enforce = 1;
	/* Mode "t": a precompiled chunk could break the VM's invariants; only source is accepted.
	 */
	int st = luaL_loadbufferx(L, text, len, chunkname, "t");
	lua->enforce = 0;
	free(chunkname);
	if (st != LUA_OK) {
		const char *msg = lua_tostring(L, -1);
		if (!msg)
			msg = "cannot load";
		if (err) {
			/* The binary-chunk refusal does not name the file; the syntax errors do. */
			size_t nlen = strlen(name);
			if (strncmp(msg, name, nlen) == 0 && msg[nlen] == ':')
				*err = ng_xstrdup(msg);
			else
				*err = ng_xasprintf("%s: %s", name, msg);
		}
		lua_pop(L, 1);
		return st == LUA_ERRMEM ? -ENOMEM : -EINVAL;
	}
	/* The chunk's only upvalue is _ENV: point it at the shared, read-only environment. */
	lua_rawgeti(L, LUA_REGISTRYINDEX, lua->env_ref);
	lua_setupvalue(L, -2, 1);
	struct ng_lua_script *s = ng_xcalloc(1, sizeof(*s));
	s->lua = lua;
	s->name = ng_xstrdup(name);
	s->ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua->live_scripts++;
	*out = s;
	return 0;
}

int ng_lua_script_load(struct ng_lua *lua, const char *path, struct ng_lua_script **out, char **err)
{
	*out = NULL;
	if (err)
		*err = NULL;
	FILE *f = fopen(path, "rb");
	if (!f) {
		int e = errno;
		if (err)
			*err = ng_xasprintf("%s: %s", path, strerror(e));
		return -e;
	}
	char *buf = ng_xmalloc(MAX_SCRIPT_BYTES + 1);
	size_t len = fread(buf, 1, MAX_SCRIPT_BYTES + 1, f);
	int rc = ferror(f) ? -EIO : 0;
	fclose(f);
	if (!rc && len > MAX_SCRIPT_BYTES)
		rc = -EFBIG;
	if (rc) {
		if (err)
			*err = ng_xasprintf("%s: %s", path, ng_strerror(rc));
		free(buf);
		return rc;
	}
	rc = ng_lua_script_load_buffer(lua, path, buf, len, out, err);
	free(buf);
	return rc;
}

const char *ng_lua_script_name(const struct ng_lua_script *s)
{
	return s->name;
}

void ng_lua_script_push(struct ng_lua_script *s)
{
	lua_rawgeti(s->lua->L, LUA_REGISTRYINDEX, s->ref);
}

void ng_lua_script_free(struct ng_lua_script *s)
{
	if (!s)
		return;
	luaL_unref(s->lua->L, LUA_REGISTRYINDEX, s->ref);
	s->lua->live_scripts--;
	free(s->name);
	free(s);
}
