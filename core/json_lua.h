/*
 * json_lua.h — converts between jansson values and Lua values, for the event mappers and the
 * workflow runtime (one JSON library on the C side, jansson; Lua sees plain tables).
 *
 * JSON → Lua
 *   object  → table with string keys, marked as an object
 *   array   → table with keys 1..n, marked as an array (so [] and {} survive the round trip)
 *   integer → Lua integer (64-bit: Shopify ids above 2^53 stay exact)
 *   real    → Lua float;  string → string;  true/false → boolean
 *   null    → json.null, a light userdata sentinel (a Lua nil cannot sit in a table). With
 *             NG_JSON_LUA_NULL_AS_NIL, object members that are null are left out instead, so that
 *             `p.phone or p.customer.phone` reads naturally; array elements stay json.null so that
 *             positions are kept.
 *
 * Lua → JSON
 *   a table marked as an array (json.array) → array; marked as an object (json.object) → object;
 *   an unmarked table whose keys are exactly 1..n → array; one whose keys are all strings → object;
 *   an unmarked empty table → object (mark it with json.array() to get []).
 *   Integers stay integers, floats become reals (NaN and infinities are refused), json.null → null.
 *   Refused with a sentence naming the place ("data.items[2].price"): functions, threads, userdata,
 *   tables that refer to themselves, tables mixing 1..n items and named keys, integer keys that are
 *   not 1..n, keys that are neither strings nor integers, strings that are not UTF-8, nesting
 * deeper than NG_JSON_LUA_MAX_DEPTH.
 *
 * The markers are metatables kept in the registry; getmetatable(t) gives "json.array" or
 * "json.object" and they cannot be replaced by a script.
 *
 * Both conversions run in protected mode internally, so they may be called from plain C (outside
 * any pcall) and never leave a Lua error or a half-built value behind.
 */
#ifndef NG_JSON_LUA_H
#define NG_JSON_LUA_H

#include <jansson.h>
#include <lua.h>
#include <stddef.h>

#define NG_JSON_LUA_MAX_DEPTH 200

enum {
	NG_JSON_LUA_NULL_AS_NIL = 1, /* leave out object members whose value is null */
};

enum ng_json_lua_kind { NG_JSON_LUA_ARRAY, NG_JSON_LUA_OBJECT };

/*
 * Pushes v as a Lua value. Returns 0, or (pushing nothing) -E2BIG when v is nested deeper than
 * NG_JSON_LUA_MAX_DEPTH, -ENOMEM when Lua ran out of memory, -ECANCELED when a hook stopped the
 * conversion.
 */
int ng_json_lua_push(lua_State *L, const json_t *v, int flags);

/*
 * Converts the value at idx into a new json_t (*out, the caller's reference). Returns 0, or -EINVAL
 * with a sentence in err (e.g. "the table at 'data.items' mixes array items and named keys ('x')"),
 * or -ENOMEM / -ECANCELED as above.
 */
int ng_json_lua_to(lua_State *L, int idx, json_t **out, char *err, size_t errlen);

/* The json.null sentinel (the same light userdata in every state). */
void ng_json_lua_push_null(lua_State *L);
int ng_json_lua_is_null(lua_State *L, int idx);

/* Marks the table at idx as an array or an object (replacing an earlier mark). */
void ng_json_lua_mark(lua_State *L, int idx, enum ng_json_lua_kind kind);
/* 1 when the value at idx is a table marked as kind. */
int ng_json_lua_is(lua_State *L, int idx, enum ng_json_lua_kind kind);

/*
 * Pushes a new `json` library table for scripts:
 *   json.null                 the null sentinel
 *   json.array([t])           marks t (or a new table) as an array and returns it
 *   json.object([t])          marks t (or a new table) as an object and returns it
 *   json.is_array(v)          true for a table marked as an array
 *   json.encode(v)            compact JSON text, object keys sorted (deterministic); raises when v
 *                             cannot be converted
 *   json.decode(s)            the value, or nil and a message when s is not JSON
 */
void ng_json_lua_open(lua_State *L);

#endif
