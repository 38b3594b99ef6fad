/*
 * lua_int.h — what the sandbox's two files share and nobody else uses: lua_sandbox.c (state,
 * allocator, loading, activations, the count hook) and lua_env.c (the allow-listed globals).
 */
#ifndef NG_LUA_INT_H
#define NG_LUA_INT_H

#include "lua_sandbox.h"

#include <lua.h>
#include <stdint.h>

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

#endif
