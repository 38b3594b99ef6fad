/*
 * lua_sandbox.h — the sandbox that runs marketers' workflow scripts safely and deterministically:
 * one Lua state per worker with a memory cap, text-only loading into a read-only environment, an
 * allow-list of globals, and bounded coroutine "activations" (instruction budget, wall time,
 * memory) that finish, yield an API request, fail with a traceback, or are killed. The workflow
 * runtime (journal, scheduler, ctx API) is built on top of this; it is not here.
 *
 * ---- For workflow authors (quoted by docs/workflows.md)
 * -------------------------------------------
 *
 * A workflow runs in a sandbox. It may be stopped and replayed from the top at any wait, so it must
 * do the same thing every time it runs with the same inputs.
 *
 * Available: assert error getmetatable ipairs next pairs pcall rawequal rawget rawlen rawset select
 * setmetatable tonumber tostring type xpcall _G _VERSION log, and the libraries string, table, math
 * and utf8. Not available: os, io, debug, package, coroutine, load, loadfile, dofile, require,
 * collectgarbage, print (use log), string.dump, math.random and math.randomseed (time and
 * randomness come from the ctx API, which records them).
 *
 * - Globals and the libraries are read-only: `x = 1` fails with "attempt to write global 'x'".
 *   Declare variables with `local`. Every run of a workflow starts from a fresh copy of the file's
 *   top-level locals, so nothing is shared between customers.
 * - pairs and next visit keys in a fixed order: numbers ascending, then strings (bytewise), then
 *   false, true. A table with any other kind of key (a table, a function) cannot be iterated with
 *   pairs; use an array and ipairs instead.
 * - tostring of a table or function gives "table" or "function", never an address; string.format
 *   refuses %p.
 * - setmetatable refuses __gc and __mode (garbage-collection timing differs between runs).
 * - Each run has limits: a number of Lua instructions, a wall-clock time, and memory. A script that
 *   exceeds one is stopped (pcall cannot catch it) and the instance is parked with the reason.
 * - Pattern functions (find, match, gmatch, gsub) refuse a pattern whose worst case on the given
 *   input is too expensive ("pattern too complex"); anchor patterns (^) and keep inputs short.
 * - Files are loaded as Lua source text only.
 *
 * ---- For the runtime
 * ------------------------------------------------------------------------------
 *
 *   struct ng_lua *lua;   ng_lua_open(&lua, &limits);
 *   struct ng_lua_script *s;   ng_lua_script_load(lua, "workflows/cart.lua", &s, &err);
 *   lua_State *L = ng_lua_state(lua);
 *   push ctx onto L;   ng_lua_activation_start_script(lua, s, "run", 1, &act, &res);
 *   while (res.outcome == NG_LUA_YIELDED) {
 *           read the request: res.nvalues values on top of ng_lua_activation_thread(act);
 *           perform the effect, push its results onto L;
 *           ng_lua_activation_resume(act, nresults, &res);
 *   }
 *   ng_lua_activation_free(act);   (also how an evicted, suspended instance is thrown away)
 *
 * An API function that needs the outside world is a C function in the ctx table that pushes its
 * request and returns ng_lua_yield(L, n). One lua_State must only be used by one thread.
 */
#ifndef NG_LUA_SANDBOX_H
#define NG_LUA_SANDBOX_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

struct ng_lua;
struct ng_lua_script;
struct ng_lua_activation;

/* A zero field takes the default shown. */
struct ng_lua_limits {
	size_t memory_bytes;            /* everything the state holds (default 64 MiB) */
	size_t activation_memory_bytes; /* growth during one activation (default: no own cap) */
	uint64_t instructions;          /* per activation, counted over all its resumes (50 M) */
	uint64_t wall_ms;               /* per activation, time spent running Lua (1000 ms) */
};

enum ng_lua_outcome {
	NG_LUA_FINISHED, /* the function returned: nvalues results */
	NG_LUA_YIELDED,  /* an API function yielded: nvalues request values */
	NG_LUA_ERRORED,  /* a script error: message has file:line and a traceback */
	NG_LUA_KILLED,   /* a limit stopped it: see limit; message says which and where */
};

enum ng_lua_limit {
	NG_LUA_LIMIT_NONE,
	NG_LUA_LIMIT_INSTRUCTIONS,
	NG_LUA_LIMIT_TIME,
	NG_LUA_LIMIT_MEMORY,
};

struct ng_lua_result {
	enum ng_lua_outcome outcome;
	enum ng_lua_limit limit; /* KILLED only */
	int nvalues;             /* FINISHED/YIELDED: values on top of ng_lua_activation_thread() */
	const char *message; /* ERRORED/KILLED: owned by the activation, valid until it is freed */
	uint64_t instructions; /* spent so far (granularity: the hook interval, 1000) */
	uint64_t elapsed_us;   /* time spent running Lua so far */
	size_t memory_peak;    /* the most the state grew above its level at the start */
};

/* Opens a state with the sandbox's globals. The limits are copied. */
int ng_lua_open(struct ng_lua **out, const struct ng_lua_limits *limits);
/* Frees the state; every script and activation of it must have been freed first. */
void ng_lua_close(struct ng_lua *lua);
/* The main state, for the runtime to build API tables and push arguments. */
lua_State *ng_lua_state(struct ng_lua *lua);
/* The sandbox whose state (or coroutine of it) L is. */
struct ng_lua *ng_lua_from(lua_State *L);
/* Bytes the state holds now, and the most it ever held. */
void ng_lua_memory(const struct ng_lua *lua, size_t *used, size_t *peak);

/* Where log(...) in a script goes; the default logs with ng_info("lua", ...). */
typedef void (*ng_lua_log_fn)(struct ng_lua_activation *act, const char *msg, void *data);
void ng_lua_set_log(struct ng_lua *lua, ng_lua_log_fn fn, void *data);

/*
 * Loads a workflow file as text (bytecode is refused) and compiles it; nothing runs yet. On failure
 * returns a negative code and, when err is not NULL, sets *err to a message such as
 * "workflows/x.lua:12: '=' expected near 'y'" (free it).
 */
int ng_lua_script_load(struct ng_lua *lua, const char *path, struct ng_lua_script **out,
                       char **err);
/* The same from memory; name is used in messages ("workflows/x.lua"). */
int ng_lua_script_load_buffer(struct ng_lua *lua, const char *name, const char *text, size_t len,
                              struct ng_lua_script **out, char **err);
const char *ng_lua_script_name(const struct ng_lua_script *s);
/* Pushes the compiled chunk onto the main state; calling it returns the definition table. */
void ng_lua_script_push(struct ng_lua_script *s);
void ng_lua_script_free(struct ng_lua_script *s);

/*
 * Starts an activation: a new coroutine running the function below the nargs arguments on top of
 * the main state's stack (both are popped), until it finishes, yields, fails or is killed.
 * Returns 0 with *res filled in, or a negative code when nothing could start (*out is then NULL).
 */
int ng_lua_activation_start(struct ng_lua *lua, int nargs, struct ng_lua_activation **out,
                            struct ng_lua_result *res);
/*
 * Starts an activation that runs the script's chunk (fresh top-level locals and definition table),
 * then calls the definition's field `entry` (e.g. "run") with the nargs arguments on top of the
 * main state's stack — one budget for both.
 */
int ng_lua_activation_start_script(struct ng_lua *lua, struct ng_lua_script *s, const char *entry,
                                   int nargs, struct ng_lua_activation **out,
                                   struct ng_lua_result *res);
/*
 * Resumes a YIELDED activation: the nargs values on top of the main state's stack become the
 * results of the API call that yielded. The previous request values are discarded.
 * Returns -EINVAL (and pops the values) when the activation is not waiting on an API call.
 */
int ng_lua_activation_resume(struct ng_lua_activation *act, int nargs, struct ng_lua_result *res);
/* The coroutine, to read results and requests (top nvalues slots). Do not resume it yourself. */
lua_State *ng_lua_activation_thread(struct ng_lua_activation *act);
/* The owner's slot (the runtime's instance). */
void ng_lua_activation_set_data(struct ng_lua_activation *act, void *data);
void *ng_lua_activation_data(const struct ng_lua_activation *act);
/* Resets the coroutine (nothing of the script runs again) and frees it; fine in any outcome. */
void ng_lua_activation_free(struct ng_lua_activation *act);

/* The activation running on L (inside an API function), or NULL. */
struct ng_lua_activation *ng_lua_activation_current(lua_State *L);
/*
 * For API functions: `return ng_lua_yield(L, n);` suspends the activation with the n values on top
 * of L as its request. Raises a Lua error when L is not a yieldable activation (e.g. called from a
 * table.sort comparator, or while the activation is being freed), and when a limit has been
 * reached, so no request leaves a run that is about to be killed.
 */
int ng_lua_yield(lua_State *L, int n);

const char *ng_lua_outcome_name(enum ng_lua_outcome o);
const char *ng_lua_limit_name(enum ng_lua_limit l);

#endif
