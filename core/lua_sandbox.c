/*
 * lua_sandbox.c — the sandbox's state and activations: the capped allocator, text-only loading
 * into the read-only environment, coroutine activations and the count hook that enforces the
 * instruction, time and memory limits. The globals themselves are built in lua_env.c.
 *
 * Why a killed script cannot escape: the count hook stops the coroutine by *yielding* from the
 * hook, and a script's pcall cannot intercept a yield. Where the hook fires inside a frame that
 * cannot yield (a table.sort comparator, a gsub callback, a metamethod), lua_yield raises instead;
 * a pcall may catch that error, so on the first overrun the hook is re-armed to fire on every
 * instruction, and the first instruction that runs in a yieldable frame stops the coroutine.
 */
#include "lua_int.h"
#include "ng.h"

#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_MEMORY       (64u << 20)
#define DEFAULT_INSTRUCTIONS 50000000u
#define DEFAULT_WALL_MS      1000u
/* Instructions between hook calls. Each call also reads the monotonic clock (vDSO, ~20 ns). */
#define HOOK_EVERY 1000
/* A workflow file larger than this is surely a mistake. */
#define MAX_SCRIPT_BYTES (4u << 20)

struct ng_lua {
	lua_State *L;
	struct ng_lua_limits limits;
	size_t used, peak;
	/*
	 * The cap applies only while a script loads or runs. The host's own calls on the main
	 * state (pushing arguments, building tracebacks) run outside any protected call, so a
	 * refused allocation there would be an unprotected error, i.e. a panic.
	 */
	int enforce;
	struct ng_lua_activation *current;
	/* The last refused request: Lua retries the same request once after an emergency GC. */
	const void *refused_ptr;
	size_t refused_osize, refused_nsize;
	int env_ref;
	ng_lua_log_fn log_fn;
	void *log_data;
	unsigned live_scripts, live_activations;
};

struct ng_lua_script {
	struct ng_lua *lua;
	int ref;
	char *name;
};

enum act_state {
	ACT_RUNNING, /* inside lua_resume */
	ACT_WAITING, /* yielded by an API call; may be resumed */
	ACT_DONE,    /* finished, failed or killed */
	ACT_CLOSING, /* being reset by ng_lua_activation_free */
};

struct ng_lua_activation {
	void *data;
	struct ng_lua *lua;
	lua_State *co;
	int ref;
	enum act_state state;
	int pending; /* values the last resume left on top of co */
	enum ng_lua_limit kill;
	size_t refused_bytes; /* a refused allocation that no emergency GC has made good */
	uint64_t instructions, charged;
	uint64_t elapsed_ns, resume_start_ns;
	size_t mem_base, mem_peak;
	char *message;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the capped allocator ---------------------------------------------------------------- */

static int over_cap(const struct ng_lua *lua, size_t grow)
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
	if (nsize > old && lua->enforce && over_cap(lua, nsize - old)) {
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

/* ---- limits ------------------------------------------------------------------------------ */

static const char *limit_text(enum ng_lua_limit l)
{
	switch (l) {
	case NG_LUA_LIMIT_INSTRUCTIONS:
		return "instruction budget exhausted";
	case NG_LUA_LIMIT_TIME:
		return "time limit exceeded";
	case NG_LUA_LIMIT_MEMORY:
		return "memory limit exceeded";
	default:
		return "not killed";
	}
}

static void count_hook(lua_State *L, lua_Debug *ar);

/* From here on the hook fires on every instruction and yields each time (see the top comment). */
static void arm_kill(struct ng_lua_activation *act, enum ng_lua_limit why)
{
	if (act->kill == NG_LUA_LIMIT_NONE)
		act->kill = why;
	lua_sethook(act->co, count_hook, LUA_MASKCOUNT, 1);
}

static enum ng_lua_limit limit_reached(const struct ng_lua_activation *act)
{
	const struct ng_lua_limits *lim = &act->lua->limits;
	if (act->instructions + act->charged >= lim->instructions)
		return NG_LUA_LIMIT_INSTRUCTIONS;
	if (act->refused_bytes)
		return NG_LUA_LIMIT_MEMORY;
	uint64_t ran = act->elapsed_ns + (now_ns() - act->resume_start_ns);
	if (ran >= lim->wall_ms * 1000000u)
		return NG_LUA_LIMIT_TIME;
	return NG_LUA_LIMIT_NONE;
}

static void count_hook(lua_State *L, lua_Debug *ar)
{
	NG_UNUSED(ar);
	struct ng_lua_activation *act = ng_lua_activation_current(L);
	if (!act)
		return;
	if (act->kill == NG_LUA_LIMIT_NONE) {
		act->instructions += HOOK_EVERY;
		enum ng_lua_limit why = limit_reached(act);
		if (why == NG_LUA_LIMIT_NONE)
			return;
		arm_kill(act, why);
	}
	/* Raises "attempt to yield across a C-call boundary" in a non-yieldable frame; see above.
	 */
	lua_yield(L, 0);
}

void ng_lua__charge(lua_State *L, uint64_t units)
{
	struct ng_lua_activation *act = ng_lua_activation_current(L);
	if (!act || act->state != ACT_RUNNING)
		return;
	act->charged += units;
	if (act->kill == NG_LUA_LIMIT_NONE &&
	    act->instructions + act->charged >= act->lua->limits.instructions) {
		arm_kill(act, NG_LUA_LIMIT_INSTRUCTIONS);
		luaL_error(L, "%s", limit_text(NG_LUA_LIMIT_INSTRUCTIONS));
	}
}

int ng_lua__killed(lua_State *L)
{
	struct ng_lua_activation *act = ng_lua_activation_current(L);
	return act && act->kill != NG_LUA_LIMIT_NONE;
}

void ng_lua__reserve(lua_State *L, double bytes)
{
	struct ng_lua *lua = ng_lua_from(L);
	struct ng_lua_activation *act = ng_lua_activation_current(L);
	if (!lua->enforce || !act || act->state != ACT_RUNNING)
		return;
	if (bytes < (double)SIZE_MAX / 2 && !over_cap(lua, (size_t)bytes))
		return;
	act->refused_bytes = bytes < (double)SIZE_MAX ? (size_t)bytes : SIZE_MAX;
	arm_kill(act, NG_LUA_LIMIT_MEMORY);
	luaL_error(L, "not enough memory");
}

/* ---- activations ------------------------------------------------------------------------- */

struct ng_lua_activation *ng_lua_activation_current(lua_State *L)
{
	return *(struct ng_lua_activation **)lua_getextraspace(L);
}

int ng_lua_yield(lua_State *L, int n)
{
	struct ng_lua_activation *act = ng_lua_activation_current(L);
	if (!act || act->state != ACT_RUNNING || act->kill != NG_LUA_LIMIT_NONE)
		return luaL_error(L, "the workflow API cannot be used here");
	if (!lua_isyieldable(L))
		return luaL_error(L, "cannot wait here: not inside a table.sort comparator, a gsub "
		                     "callback, a metamethod or the file's top level");
	return lua_yield(L, n);
}

/* Takes the message and the coroutine's traceback; the cap is off, so this cannot panic. */
static void set_message(struct ng_lua_activation *act, const char *head)
{
	lua_State *L = act->lua->L;
	luaL_traceback(L, act->co, head, 0);
	free(act->message);
	act->message = ng_xstrdup(lua_tostring(L, -1));
	lua_pop(L, 1);
}

static void fill_result(const struct ng_lua_activation *act, struct ng_lua_result *res,
                        enum ng_lua_outcome o)
{
	res->outcome = o;
	res->limit = o == NG_LUA_KILLED ? act->kill : NG_LUA_LIMIT_NONE;
	res->nvalues = (o == NG_LUA_FINISHED || o == NG_LUA_YIELDED) ? act->pending : 0;
	res->message = act->message;
	res->instructions = act->instructions + act->charged;
	res->elapsed_us = act->elapsed_ns / 1000;
	res->memory_peak = act->mem_peak;
}

/* One resume of the coroutine with nargs values already on its stack, and what came of it. */
static void run(struct ng_lua_activation *act, int nargs, struct ng_lua_result *res)
{
	struct ng_lua *lua = act->lua;
	int nres = 0;

	act->state = ACT_RUNNING;
	lua->current = act;
	lua->enforce = 1;
	act->resume_start_ns = now_ns();
	int st = lua_resume(act->co, lua->L, nargs, &nres);
	act->elapsed_ns += now_ns() - act->resume_start_ns;
	lua->enforce = 0;
	lua->current = NULL;

	if (st == LUA_ERRMEM || (st != LUA_OK && st != LUA_YIELD && act->refused_bytes))
		act->kill = act->kill ? act->kill : NG_LUA_LIMIT_MEMORY;
	if (act->kill != NG_LUA_LIMIT_NONE) {
		act->state = ACT_DONE;
		char *head = ng_xasprintf("killed: %s", limit_text(act->kill));
		set_message(act, head);
		free(head);
		lua_settop(act->co, 0);
		act->pending = 0;
		fill_result(act, res, NG_LUA_KILLED);
		return;
	}
	if (st == LUA_OK || st == LUA_YIELD) {
		act->state = st == LUA_OK ? ACT_DONE : ACT_WAITING;
		act->pending = nres;
		fill_result(act, res, st == LUA_OK ? NG_LUA_FINISHED : NG_LUA_YIELDED);
		return;
	}
	act->state = ACT_DONE;
	/*
	 * Outside lua_resume nothing may run script code (an error there would be unprotected), so
	 * an error object's __tostring is not called.
	 */
	int t = lua_type(act->co, -1);
	char *head = t == LUA_TSTRING || t == LUA_TNUMBER
	                 ? ng_xstrdup(lua_tostring(act->co, -1))
	                 : ng_xasprintf("(error object is a %s value)", lua_typename(act->co, t));
	set_message(act, head);
	free(head);
	lua_settop(act->co, 0);
	act->pending = 0;
	fill_result(act, res, NG_LUA_ERRORED);
}

/* Moves the function and nargs arguments from the main stack into a new coroutine and runs it. */
static int start(struct ng_lua *lua, int nargs, struct ng_lua_activation **out,
                 struct ng_lua_result *res)
{
	lua_State *L = lua->L;
	*out = NULL;
	memset(res, 0, sizeof(*res));
	if (nargs < 0 || lua_gettop(L) < nargs + 1) {
		lua_settop(L, 0);
		return -EINVAL;
	}
	struct ng_lua_activation *act = ng_xcalloc(1, sizeof(*act));
	act->lua = lua;
	act->co = lua_newthread(L);
	act->ref = luaL_ref(L, LUA_REGISTRYINDEX);
	*(struct ng_lua_activation **)lua_getextraspace(act->co) = act;
	lua_sethook(act->co, count_hook, LUA_MASKCOUNT,
	            lua->limits.instructions < HOOK_EVERY ? (int)lua->limits.instructions
	                                                  : HOOK_EVERY);
	act->mem_base = lua->used;
	lua_xmove(L, act->co, nargs + 1);
	lua->live_activations++;
	*out = act;
	run(act, nargs, res);
	return 0;
}

int ng_lua_activation_start(struct ng_lua *lua, int nargs, struct ng_lua_activation **out,
                            struct ng_lua_result *res)
{
	if (lua_gettop(lua->L) >= nargs + 1 && !lua_isfunction(lua->L, -nargs - 1)) {
		lua_pop(lua->L, nargs + 1);
		*out = NULL;
		memset(res, 0, sizeof(*res));
		return -EINVAL;
	}
	return start(lua, nargs, out, res);
}

static int script_main_k(lua_State *L, int status, lua_KContext ctx)
{
	NG_UNUSED(status);
	NG_UNUSED(ctx);
	return lua_gettop(L);
}

/* The coroutine body for a script: [chunk, name, entry, args...] -> definition[entry](args...). */
static int script_main(lua_State *L)
{
	int nargs = lua_gettop(L) - 3;
	const char *name = lua_tostring(L, 2);
	const char *entry = lua_tostring(L, 3);
	lua_pushvalue(L, 1);
	/* The top level runs to its end without waiting: API calls there are refused. */
	lua_call(L, 0, 1);
	if (!lua_istable(L, -1))
		return luaL_error(L, "%s must return a table (it returned %s)", name,
		                  luaL_typename(L, -1));
	lua_getfield(L, -1, entry);
	if (!lua_isfunction(L, -1))
		return luaL_error(L, "%s: the definition has no function '%s'", name, entry);
	lua_replace(L, 1);
	lua_pop(L, 1);
	lua_rotate(L, 2, -2);
	lua_pop(L, 2);
	lua_callk(L, nargs, LUA_MULTRET, 0, script_main_k);
	return script_main_k(L, LUA_OK, 0);
}

int ng_lua_activation_start_script(struct ng_lua *lua, struct ng_lua_script *s, const char *entry,
                                   int nargs, struct ng_lua_activation **out,
                                   struct ng_lua_result *res)
{
	lua_State *L = lua->L;
	if (nargs < 0 || lua_gettop(L) < nargs) {
		lua_settop(L, 0);
		*out = NULL;
		memset(res, 0, sizeof(*res));
		return -EINVAL;
	}
	lua_pushcfunction(L, script_main);
	ng_lua_script_push(s);
	lua_pushstring(L, s->name);
	lua_pushstring(L, entry);
	/* [args..., main, chunk, name, entry] -> [main, chunk, name, entry, args...] */
	lua_rotate(L, -(nargs + 4), 4);
	return start(lua, nargs + 3, out, res);
}

int ng_lua_activation_resume(struct ng_lua_activation *act, int nargs, struct ng_lua_result *res)
{
	lua_State *L = act->lua->L;
	if (act->state != ACT_WAITING || nargs < 0 || lua_gettop(L) < nargs) {
		if (nargs > 0)
			lua_pop(L, nargs < lua_gettop(L) ? nargs : lua_gettop(L));
		fill_result(act, res,
		            act->kill      ? NG_LUA_KILLED
		            : act->message ? NG_LUA_ERRORED
		                           : NG_LUA_FINISHED);
		return -EINVAL;
	}
	/* lua_resume wants the yielded values gone and the answers in their place. */
	lua_pop(act->co, act->pending);
	act->pending = 0;
	lua_xmove(L, act->co, nargs);
	run(act, nargs, res);
	return 0;
}

lua_State *ng_lua_activation_thread(struct ng_lua_activation *act)
{
	return act->co;
}

void ng_lua_activation_set_data(struct ng_lua_activation *act, void *data)
{
	act->data = data;
}

void *ng_lua_activation_data(const struct ng_lua_activation *act)
{
	return act->data;
}

void ng_lua_activation_free(struct ng_lua_activation *act)
{
	if (!act)
		return;
	struct ng_lua *lua = act->lua;
	/*
	 * Resetting runs pending __close handlers. They must not act or wait: with the kill armed,
	 * the hook stops each one at its first instruction, and ng_lua_yield refuses a CLOSING one.
	 */
	act->state = ACT_CLOSING;
	arm_kill(act, act->kill ? act->kill : NG_LUA_LIMIT_INSTRUCTIONS);
	lua->current = act;
	lua->enforce = 1;
	lua_resetthread(act->co);
	lua->enforce = 0;
	lua->current = NULL;
	*(struct ng_lua_activation **)lua_getextraspace(act->co) = NULL;
	luaL_unref(lua->L, LUA_REGISTRYINDEX, act->ref);
	lua->live_activations--;
	free(act->message);
	free(act);
}

const char *ng_lua_outcome_name(enum ng_lua_outcome o)
{
	switch (o) {
	case NG_LUA_FINISHED:
		return "finished";
	case NG_LUA_YIELDED:
		return "yielded";
	case NG_LUA_ERRORED:
		return "errored";
	case NG_LUA_KILLED:
		return "killed";
	}
	return "?";
}

const char *ng_lua_limit_name(enum ng_lua_limit l)
{
	switch (l) {
	case NG_LUA_LIMIT_NONE:
		return "none";
	case NG_LUA_LIMIT_INSTRUCTIONS:
		return "instructions";
	case NG_LUA_LIMIT_TIME:
		return "time";
	case NG_LUA_LIMIT_MEMORY:
		return "memory";
	}
	return "?";
}
