/*
 * lua_activation.c — activations: one coroutine per run of a workflow function, resumed until it
 * finishes, yields an API request, fails (message with file:line and traceback) or is killed by
 * the count hook that enforces the instruction, time and memory limits.
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
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Instructions between hook calls. Each call also reads the monotonic clock (vDSO, ~20 ns). */
#define HOOK_EVERY 1000

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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

/*
 * Checks the limits now rather than at the next hook call: a refused allocation, for one, is only
 * noticed by the hook up to HOOK_EVERY instructions later, and no effect may slip out in between.
 */
int ng_lua__killed(lua_State *L)
{
	struct ng_lua_activation *act = ng_lua_activation_current(L);
	if (!act)
		return 0;
	if (act->kill == NG_LUA_LIMIT_NONE && act->state == ACT_RUNNING) {
		enum ng_lua_limit why = limit_reached(act);
		if (why != NG_LUA_LIMIT_NONE)
			arm_kill(act, why);
	}
	return act->kill != NG_LUA_LIMIT_NONE;
}

void ng_lua__reserve(lua_State *L, double bytes)
{
	struct ng_lua *lua = ng_lua_from(L);
	struct ng_lua_activation *act = ng_lua_activation_current(L);
	if (!lua->enforce || !act || act->state != ACT_RUNNING)
		return;
	if (bytes < (double)SIZE_MAX / 2 && !ng_lua__over_cap(lua, (size_t)bytes))
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
	if (!act || act->state != ACT_RUNNING)
		return luaL_error(L, "the workflow API cannot be used here");
	if (ng_lua__killed(L))
		return luaL_error(L, "%s", limit_text(act->kill));
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
	/*
	 * A killed or failed coroutine keeps its stack as it is until ng_lua_activation_free resets
	 * it: lowering its top here would hide slots that open upvalues still point to from the GC.
	 */
	if (act->kill != NG_LUA_LIMIT_NONE) {
		act->state = ACT_DONE;
		char *head = ng_xasprintf("killed: %s", limit_text(act->kill));
		set_message(act, head);
		free(head);
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
