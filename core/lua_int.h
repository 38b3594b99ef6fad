/*
 * lua_int.h — what the sandbox's files share and nobody else uses: lua_sandbox.c (state,
 * allocator, loading), lua_activation.c (coroutine activations, the count hook, the limits),
 * lua_env.c (the allow-listed globals) and lua_guard.c (bounds on the string and table libraries).
 */
#ifndef NG_LUA_INT_H
#define NG_LUA_INT_H

#include "lua_sandbox.h"

#include <lua.h>
#include <stdint.h>

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

/* Whether growing the state by grow bytes would pass the state's or the activation's cap. */
int ng_lua__over_cap(const struct ng_lua *lua, size_t grow);

/* Builds the read-only global environment in the main state and pushes it. */
void ng_lua__push_env(lua_State *L);

/*
 * Charges work done inside a C library function (bytes copied, keys sorted, elements moved) to
 * the running activation's instruction budget, because the count hook cannot see inside C.
 * Raises, and arms the kill, when the budget cannot pay for it; a no-op outside activations.
 */
void ng_lua__charge(lua_State *L, uint64_t units);

/*
 * For a C function about to build a result of that many bytes: when it cannot fit under the cap,
 * arms the memory kill and raises "not enough memory" before any time is spent.
 */
void ng_lua__reserve(lua_State *L, double bytes);

/* Whether the activation running on L has been killed (its remaining code must not run). */
int ng_lua__killed(lua_State *L);

/* Sends one log(...) line from a script to the runtime's log hook. */
void ng_lua__log(lua_State *L, const char *msg);

/*
 * Pushes a string for the value at idx that never shows an address: __tostring when the value has
 * one, else the type name for tables, functions, threads and userdata. Returns the string.
 */
const char *ng_lua__tostring(lua_State *L, int idx, size_t *len);

/* Calls the library function the running C closure wraps (its upvalue 1) on the same stack. */
int ng_lua__call_original(lua_State *L);
/* Replaces lib[name] with fn, whose upvalue 1 is the original and upvalue 2 extra (if >= 0). */
void ng_lua__wrap(lua_State *L, int lib, const char *name, lua_CFunction fn, int extra);
/* Bounds the string library table at idx in place (removes dump, guards the costly functions). */
void ng_lua__guard_string(lua_State *L, int idx);
/* Bounds the table library table at idx in place. */
void ng_lua__guard_table(lua_State *L, int idx);

#endif
