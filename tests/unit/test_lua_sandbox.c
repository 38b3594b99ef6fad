/*
 * test_lua_sandbox.c — the workflow sandbox: limits that pcall cannot swallow (instructions, wall
 * time, memory), the allow-list, text-only loading, stable pairs, read-only globals, yielding API
 * calls, and a measurement of activation cost.
 */
#include "lua_sandbox.h"
#include "ng.h"
#include "../testlib.h"

#include <errno.h>
#include <time.h>
#include <lauxlib.h>
#include <lualib.h>
#include <unistd.h>

/* Scripts are written as the body of run(ctx); the wrapper adds one line above the body. */
#define WF(body) "return {run = function(ctx)\n" body "\nend}"

static struct ng_lua *open_sandbox(size_t mem, uint64_t instructions, uint64_t wall_ms)
{
	struct ng_lua_limits lim = {
	    .memory_bytes = mem, .instructions = instructions, .wall_ms = wall_ms};
	struct ng_lua *lua = NULL;
	ASSERT_EQ_INT(ng_lua_open(&lua, &lim), 0);
	return lua;
}

static struct ng_lua_script *load(struct ng_lua *lua, const char *name, const char *src)
{
	struct ng_lua_script *s = NULL;
	char *err = NULL;
	int rc = ng_lua_script_load_buffer(lua, name, src, strlen(src), &s, &err);
	if (rc != 0)
		ng_test_fail(__FILE__, __LINE__, "load %s: %s", name, err ? err : "?");
	return s;
}

static int api_wait(lua_State *L)
{
	lua_Integer secs = luaL_checkinteger(L, 1);
	lua_pushliteral(L, "wait");
	lua_pushinteger(L, secs);
	return ng_lua_yield(L, 2);
}

/* Like an API call answered from the journal without yielding: proves the script ran on. */
static int marks;

static int api_mark(lua_State *L)
{
	NG_UNUSED(L);
	marks++;
	return 0;
}

static void push_ctx(struct ng_lua *lua)
{
	lua_State *L = ng_lua_state(lua);
	lua_newtable(L);
	lua_pushcfunction(L, api_wait);
	lua_setfield(L, -2, "wait");
	lua_pushcfunction(L, api_mark);
	lua_setfield(L, -2, "mark");
}

/* Loads src as workflows/t.lua and starts run(ctx). */
static struct ng_lua_activation *start_src(struct ng_lua *lua, const char *src,
                                           struct ng_lua_result *res)
{
	struct ng_lua_script *s = load(lua, "workflows/t.lua", src);
	struct ng_lua_activation *act = NULL;
	push_ctx(lua);
	ASSERT_EQ_INT(ng_lua_activation_start_script(lua, s, "run", 1, &act, res), 0);
	ASSERT(act != NULL);
	ng_lua_script_free(s);
	ASSERT_EQ_INT(lua_gettop(ng_lua_state(lua)), 0);
	return act;
}

static int escaped_logs;

static void count_escapes(struct ng_lua_activation *act, const char *msg, void *data)
{
	NG_UNUSED(act);
	NG_UNUSED(data);
	if (strstr(msg, "escaped"))
		escaped_logs++;
}

/* Runs src and expects it killed; a log('escaped') after the trap must never run. */
static void expect_killed(const char *src, enum ng_lua_limit limit)
{
	struct ng_lua *lua = open_sandbox(8u << 20, 200000, 5000);
	ng_lua_set_log(lua, count_escapes, NULL);
	escaped_logs = 0;
	marks = 0;
	struct ng_lua_result res;
	struct ng_lua_activation *act = start_src(lua, src, &res);
	if (res.outcome != NG_LUA_KILLED)
		ng_test_fail(__FILE__, __LINE__, "outcome %s (%s)",
		             ng_lua_outcome_name(res.outcome), res.message ? res.message : "");
	ASSERT_EQ_STR(ng_lua_limit_name(res.limit), ng_lua_limit_name(limit));
	ASSERT_CONTAINS(res.message, "killed:");
	ASSERT_EQ_INT(escaped_logs, 0);
	ASSERT_EQ_INT(marks, 0);
	ng_lua_activation_free(act);
	ng_lua_close(lua);
}

static void budget_stops_plain_loop(void)
{
	expect_killed(WF("while true do end"), NG_LUA_LIMIT_INSTRUCTIONS);
}

static void budget_stops_loop_in_pcall(void)
{
	expect_killed(WF("for i = 1, 3 do pcall(function() while true do end end) end\n"
	                 "ctx.mark() log('escaped') return 'escaped'"),
	              NG_LUA_LIMIT_INSTRUCTIONS);
}

static void budget_stops_loop_in_sort_comparator(void)
{
	expect_killed(WF("local ok = pcall(table.sort, {3, 1, 2, 5, 4},\n"
	                 "  function(a, b) while true do end end)\n"
	                 "ctx.mark() log('escaped') return 'escaped'"),
	              NG_LUA_LIMIT_INSTRUCTIONS);
}

static void budget_stops_loop_in_gsub_callback(void)
{
	expect_killed(
	    WF("local ok = pcall(string.gsub, 'abc', '%w', function(c) while true do end end)\n"
	       "ctx.mark() log('escaped') return 'escaped'"),
	    NG_LUA_LIMIT_INSTRUCTIONS);
}

static void budget_stops_loop_in_error_handler(void)
{
	expect_killed(WF("xpcall(error, function() while true do end end)\nctx.mark() "
	                 "log('escaped') return 'escaped'"),
	              NG_LUA_LIMIT_INSTRUCTIONS);
}

static void budget_pays_for_work_in_c(void)
{
	/* table.move over an empty table does nothing but loop in C: the budget is charged first.
	 */
	expect_killed(WF("local ok = pcall(table.move, {}, 1, 1e12, 2)\nctx.mark() log('escaped') "
	                 "return 'escaped'"),
	              NG_LUA_LIMIT_INSTRUCTIONS);
}

static void wall_time_stops_slow_script(void)
{
	struct ng_lua *lua = open_sandbox(8u << 20, 1000000000000ull, 50);
	struct ng_lua_result res;
	uint64_t t0 = ng_test_now_ms();
	struct ng_lua_activation *act =
	    start_src(lua, WF("local x = 0 while true do x = x + 1 end"), &res);
	uint64_t took = ng_test_now_ms() - t0;
	ASSERT_EQ_INT(res.outcome, NG_LUA_KILLED);
	ASSERT_EQ_STR(ng_lua_limit_name(res.limit), "time");
	ASSERT_CMP_INT(res.elapsed_us, >=, 50000);
	ASSERT_CMP_INT(took, <, 1000);
	ASSERT_CONTAINS(res.message, "workflows/t.lua:2");
	ng_lua_activation_free(act);
	ng_lua_close(lua);
}

static void check_memory_bomb(const char *bomb, size_t activation_cap)
{
	struct ng_lua_limits lim = {.memory_bytes = 16u << 20,
	                            .activation_memory_bytes = activation_cap,
	                            .instructions = 100000000,
	                            .wall_ms = 5000};
	struct ng_lua *lua = NULL;
	ASSERT_EQ_INT(ng_lua_open(&lua, &lim), 0);
	ng_lua_set_log(lua, count_escapes, NULL);
	escaped_logs = 0;
	size_t before, after, peak;
	ng_lua_memory(lua, &before, NULL);

	struct ng_lua_result res;
	struct ng_lua_activation *act = start_src(lua, bomb, &res);
	if (res.outcome != NG_LUA_KILLED)
		ng_test_fail(__FILE__, __LINE__, "outcome %s (%s)",
		             ng_lua_outcome_name(res.outcome), res.message ? res.message : "");
	ASSERT_EQ_STR(ng_lua_limit_name(res.limit), "memory");
	ASSERT_CONTAINS(res.message, "memory limit");
	ASSERT_EQ_INT(escaped_logs, 0);
	ng_lua_memory(lua, NULL, &peak);
	/* The host's own bookkeeping (the traceback) is not capped; the script's is. */
	ASSERT_CMP_INT(peak, <=, (16u << 20) + 65536);
	if (activation_cap)
		ASSERT_CMP_INT(res.memory_peak, <=, activation_cap);
	ng_lua_activation_free(act);

	/* The state is still usable, and the bomb's memory came back. */
	lua_gc(ng_lua_state(lua), LUA_GCCOLLECT);
	ng_lua_memory(lua, &after, NULL);
	ASSERT_CMP_INT(after, <, before + 64 * 1024);
	act = start_src(lua,
	                WF("local t = {} for i = 1, 100 do t[i] = ('y'):rep(100) end\n"
	                   "return #t"),
	                &res);
	ASSERT_EQ_INT(res.outcome, NG_LUA_FINISHED);
	ASSERT_EQ_INT(res.nvalues, 1);
	ASSERT_EQ_INT(lua_tointeger(ng_lua_activation_thread(act), -1), 100);
	ng_lua_activation_free(act);
	ng_lua_close(lua);
}

static void memory_bomb_table_is_stopped(void)
{
	check_memory_bomb(WF("local t = {} while true do t[#t+1] = string.rep('x', 1000) end"), 0);
}

static void memory_bomb_in_pcall_is_stopped(void)
{
	check_memory_bomb(WF("for i = 1, 5 do pcall(function()\n"
	                     "  local t = {} while true do t[#t+1] = string.rep('x', 1000) end\n"
	                     "end) end\nctx.mark() log('escaped') return 'escaped'"),
	                  0);
}

static void memory_bomb_then_api_call_is_stopped(void)
{
	check_memory_bomb(WF("pcall(function()\n"
	                     "  local t = {} while true do t[#t+1] = {} end\n"
	                     "end)\nctx.wait(1) ctx.mark() log('escaped') return 'escaped'"),
	                  0);
}

static void memory_bomb_huge_rep_is_stopped(void)
{
	check_memory_bomb(WF("local ok = pcall(string.rep, 'x', 1e10) ctx.mark() log('escaped') "
	                     "return 'escaped'"),
	                  0);
	check_memory_bomb(WF("return ('x'):rep(1e10)"), 0);
}

static void activation_memory_cap_is_enforced(void)
{
	check_memory_bomb(WF("local t = {} while true do t[#t+1] = string.rep('x', 1000) end"),
	                  1u << 20);
}

/* Runs src to completion and returns its first result as a string (freed by the caller). */
static char *run_to_string(struct ng_lua *lua, const char *src)
{
	struct ng_lua_result res;
	struct ng_lua_activation *act = start_src(lua, src, &res);
	if (res.outcome != NG_LUA_FINISHED)
		ng_test_fail(__FILE__, __LINE__, "outcome %s (%s)",
		             ng_lua_outcome_name(res.outcome), res.message ? res.message : "");
	ASSERT_CMP_INT(res.nvalues, >=, 1);
	const char *s = lua_tostring(ng_lua_activation_thread(act), -res.nvalues);
	char *copy = ng_xstrdup(s ? s : "(not a string)");
	ng_lua_activation_free(act);
	return copy;
}

static void dangerous_globals_are_absent(void)
{
	struct ng_lua *lua = open_sandbox(0, 0, 0);
	char *got = run_to_string(
	    lua,
	    WF("local present = {}\n"
	       "local names = {'os', 'io', 'debug', 'package', 'coroutine', 'load',\n"
	       "  'loadfile', 'dofile', 'require', 'collectgarbage', 'print', 'loadstring'}\n"
	       "for _, n in ipairs(names) do if _G[n] ~= nil then present[#present+1] = n end end\n"
	       "if string.dump then present[#present+1] = 'string.dump' end\n"
	       "if math.random then present[#present+1] = 'math.random' end\n"
	       "if math.randomseed then present[#present+1] = 'math.randomseed' end\n"
	       "if getmetatable('').__index then present[#present+1] = 'string mt' end\n"
	       "return 'present:' .. table.concat(present, ',')"));
	ASSERT_EQ_STR(got, "present:");
	free(got);
	/* What is meant to be there is. */
	got = run_to_string(lua, WF("return string.format('%s %d %s %s', ('ab'):upper(),\n"
	                            "  math.floor(2.5), utf8.char(233), type(pairs))"));
	ASSERT_EQ_STR(got, "AB 2 \xc3\xa9 function");
	free(got);
	ng_lua_close(lua);
}

struct dump {
	char buf[4096];
	size_t len;
};

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud)
{
	NG_UNUSED(L);
	struct dump *d = ud;
	if (d->len + sz > sizeof(d->buf))
		return 1;
	memcpy(d->buf + d->len, p, sz);
	d->len += sz;
	return 0;
}

static void bytecode_is_refused(void)
{
	/* Real bytecode, made by a plain state. */
	lua_State *plain = luaL_newstate();
	ASSERT_EQ_INT(luaL_loadstring(plain, "return {run = function() return 1 end}"), LUA_OK);
	static struct dump d;
	ASSERT_EQ_INT(lua_dump(plain, dump_writer, &d, 0), 0);
	const char *code = d.buf;
	size_t len = d.len;
	ASSERT(len > 4 && code[0] == '\x1b');

	struct ng_lua *lua = open_sandbox(0, 0, 0);
	struct ng_lua_script *s = NULL;
	char *err = NULL;
	ASSERT_EQ_INT(ng_lua_script_load_buffer(lua, "workflows/bin.lua", code, len, &s, &err),
	              -EINVAL);
	ASSERT(s == NULL);
	ASSERT_CONTAINS(err, "workflows/bin.lua: attempt to load a binary chunk");
	free(err);
	lua_close(plain);
	ng_lua_close(lua);
}

static void syntax_error_names_file_and_line(void)
{
	char path[] = "/tmp/ng_lua_syntax_XXXXXX";
	int fd = mkstemp(path);
	ASSERT(fd >= 0);
	const char *src = "local a = 1\nlocal b = 2\nlocal x = = 3\nreturn {}\n";
	ASSERT_EQ_INT(write(fd, src, strlen(src)), (long long)strlen(src));
	close(fd);

	struct ng_lua *lua = open_sandbox(0, 0, 0);
	struct ng_lua_script *s = NULL;
	char *err = NULL;
	ASSERT_EQ_INT(ng_lua_script_load(lua, path, &s, &err), -EINVAL);
	char *want = ng_xasprintf("%s:3:", path);
	ASSERT_CONTAINS(err, want);
	ASSERT_CONTAINS(err, "unexpected symbol near '='");
	free(want);
	free(err);
	unlink(path);

	ASSERT_EQ_INT(ng_lua_script_load(lua, "/nonexistent/x.lua", &s, &err), -ENOENT);
	ASSERT_CONTAINS(err, "/nonexistent/x.lua");
	free(err);
	ng_lua_close(lua);
}

static void runtime_error_has_line_and_traceback(void)
{
	struct ng_lua *lua = open_sandbox(0, 0, 0);
	struct ng_lua_result res;
	struct ng_lua_activation *act =
	    start_src(lua, WF("local function inner() error('boom') end\ninner()"), &res);
	ASSERT_EQ_INT(res.outcome, NG_LUA_ERRORED);
	ASSERT_CONTAINS(res.message, "workflows/t.lua:2: boom");
	ASSERT_CONTAINS(res.message, "stack traceback:");
	ASSERT_CONTAINS(res.message, "workflows/t.lua:3:");
	ng_lua_activation_free(act);

	act = start_src(lua, WF("error({code = 1})"), &res);
	ASSERT_EQ_INT(res.outcome, NG_LUA_ERRORED);
	ASSERT(strstr(res.message, "0x") == NULL);
	ng_lua_activation_free(act);

	/* A looping __tostring on the error object must not run outside the activation. */
	act = start_src(
	    lua, WF("error(setmetatable({}, {__tostring = function() while true do end end}))"),
	    &res);
	ASSERT_EQ_INT(res.outcome, NG_LUA_ERRORED);
	ASSERT_CONTAINS(res.message, "(error object is a table value)");
	ng_lua_activation_free(act);

	act = start_src(lua, "return 42", &res);
	ASSERT_EQ_INT(res.outcome, NG_LUA_ERRORED);
	ASSERT_CONTAINS(res.message, "workflows/t.lua must return a table");
	ng_lua_activation_free(act);
	ng_lua_close(lua);
}

/* The key order pairs gives for a table built one way or the other, as text. */
static const char *const pairs_scripts[] = {
    WF("local t = {}\n"
       "t.b = 1 t[10] = 2 t.a = 3 t[-1.5] = 4 t[true] = 5 t[2] = 6 t.ab = 7 t[false] = 8\n"
       "t[3.25] = 9 t[''] = 10 t['B'] = 11 t[1] = 12\n"
       "for i = 1, 200 do t['k' .. i] = i end\n"
       "local out = {}\n"
       "for k, v in pairs(t) do out[#out+1] = tostring(k) .. '=' .. v end\n"
       "local k, n = next(t), 0\n"
       "while k ~= nil do n = n + 1 k = next(t, k) end\n"
       "return table.concat(out, ' ') .. ' #' .. n"),
    WF("local t = {}\n"
       "for i = 200, 1, -1 do t['k' .. i] = i end\n"
       "t[1] = 12 t['B'] = 11 t[''] = 10 t[3.25] = 9 t[false] = 8 t.ab = 7 t[2] = 6\n"
       "t[true] = 5 t[-1.5] = 4 t.a = 3 t[10] = 2 t.b = 1\n"
       "local out = {}\n"
       "for k, v in pairs(t) do out[#out+1] = tostring(k) .. '=' .. v end\n"
       "local k, n = next(t), 0\n"
       "while k ~= nil do n = n + 1 k = next(t, k) end\n"
       "return table.concat(out, ' ') .. ' #' .. n"),
};

static void pairs_order_is_stable(void)
{
	struct ng_lua *one = open_sandbox(0, 0, 0), *two = open_sandbox(0, 0, 0);
	char *a = run_to_string(one, pairs_scripts[0]);
	char *b = run_to_string(one, pairs_scripts[1]);
	char *c = run_to_string(two, pairs_scripts[1]);
	ASSERT_EQ_STR(a, b);
	ASSERT_EQ_STR(a, c);
	/* Numbers ascending, then strings bytewise, then false, true; next agrees on the count. */
	const char *head = "-1.5=4 1=12 2=6 3.25=9 10=2 =10 B=11 a=3 ab=7 b=1 k1=1 k10=10 k100=100";
	ASSERT(strncmp(a, head, strlen(head)) == 0);
	ASSERT_CONTAINS(a, "k99=99 false=8 true=5 #212");
	free(a);
	free(b);
	free(c);

	char *d = run_to_string(one, WF("local ok, e = pcall(pairs, {[{}] = 1})\n"
	                                "return tostring(ok) .. ' ' .. e"));
	ASSERT_CONTAINS(d, "false");
	ASSERT_CONTAINS(d, "table key");
	free(d);
	/* Entries removed during the loop are skipped, as with the standard pairs. */
	d = run_to_string(one, WF("local t = {a = 1, b = 2, c = 3} local s = ''\n"
	                          "for k in pairs(t) do s = s .. k t.b = nil end return s"));
	ASSERT_EQ_STR(d, "ac");
	free(d);
	ng_lua_close(one);
	ng_lua_close(two);
}

static void globals_are_read_only_and_not_shared(void)
{
	struct ng_lua *lua = open_sandbox(0, 0, 0);
	struct ng_lua_result res;
	struct ng_lua_activation *act = start_src(lua, WF("counter = 1\nreturn counter"), &res);
	ASSERT_EQ_INT(res.outcome, NG_LUA_ERRORED);
	ASSERT_CONTAINS(res.message, "workflows/t.lua:2: attempt to write global 'counter'");
	ng_lua_activation_free(act);

	char *got = run_to_string(lua, WF("return tostring(counter)"));
	ASSERT_EQ_STR(got, "nil");
	free(got);

	/* Libraries, the environment itself and the string metatable cannot be changed either. */
	got = run_to_string(lua,
	                    WF("local r = {}\n"
	                       "r[1] = pcall(function() string.upper = nil end)\n"
	                       "r[2] = pcall(rawset, _G, 'x', 1)\n"
	                       "r[3] = pcall(rawset, math, 'pi', 3)\n"
	                       "r[4] = pcall(setmetatable, _G, nil)\n"
	                       "r[5] = pcall(function() _ENV.y = 1 end)\n"
	                       "r[6] = pcall(setmetatable, {}, {__gc = function() end})\n"
	                       "r[7] = pcall(setmetatable, {}, {__mode = 'k'})\n"
	                       "local out = {} for i = 1, 7 do out[i] = tostring(r[i]) end\n"
	                       "return table.concat(out, ',') .. ' ' .. ('x'):upper() .. math.pi"));
	ASSERT_EQ_STR(got, "false,false,false,false,false,false,false X3.1415926535898");
	free(got);

	/* Top-level locals are fresh for every activation: nothing leaks between instances. */
	struct ng_lua_script *s = load(lua, "workflows/count.lua",
	                               "local n = 0\n"
	                               "local def = {run = function(ctx) n = n + 1; return n end}\n"
	                               "return def");
	for (int i = 0; i < 2; i++) {
		push_ctx(lua);
		ASSERT_EQ_INT(ng_lua_activation_start_script(lua, s, "run", 1, &act, &res), 0);
		ASSERT_EQ_INT(res.outcome, NG_LUA_FINISHED);
		ASSERT_EQ_INT(lua_tointeger(ng_lua_activation_thread(act), -1), 1);
		ng_lua_activation_free(act);
	}
	ng_lua_script_free(s);
	ng_lua_close(lua);
}

static char logged[256];

static void capture_log(struct ng_lua_activation *act, const char *msg, void *data)
{
	snprintf(logged, sizeof(logged), "%s|%s|%s", msg, act ? "act" : "no act", (char *)data);
}

static void log_goes_to_the_runtime_hook(void)
{
	struct ng_lua *lua = open_sandbox(0, 0, 0);
	ng_lua_set_log(lua, capture_log, "data");
	struct ng_lua_result res;
	struct ng_lua_activation *act =
	    start_src(lua, WF("log('cart', 3, {}, nil, true)\nreturn 1"), &res);
	ASSERT_EQ_INT(res.outcome, NG_LUA_FINISHED);
	ASSERT_EQ_STR(logged, "cart 3 table nil true|act|data");
	ng_lua_activation_free(act);
	ng_lua_close(lua);
}

static void tostring_hides_addresses(void)
{
	struct ng_lua *lua = open_sandbox(0, 0, 0);
	char *got = run_to_string(
	    lua, WF("local t = setmetatable({}, {__tostring = function() return 'T' end})\n"
	            "return tostring({}) .. ' ' .. tostring(print or tostring) .. ' ' ..\n"
	            "  string.format('%s %s', {}, t) .. ' ' ..\n"
	            "  tostring(select(2, pcall(string.format, '%p', {})):match('not allowed'))"));
	ASSERT_EQ_STR(got, "table function table T not allowed");
	free(got);
	ng_lua_close(lua);
}

static void pathological_pattern_is_refused(void)
{
	struct ng_lua *lua = open_sandbox(0, 0, 0);
	uint64_t t0 = ng_test_now_ms();
	char *got = run_to_string(
	    lua,
	    WF("local s = string.rep('a', 100000)\n"
	       "local ok, e = pcall(string.find, s, '.-.-.-b')\n"
	       "local trimmed = ('  hello world  '):match('^%s*(.-)%s*$')\n"
	       "return tostring(ok) .. ' ' .. e:match('pattern too complex') .. ' ' .. trimmed"));
	ASSERT_EQ_STR(got, "false pattern too complex hello world");
	ASSERT_CMP_INT(ng_test_now_ms() - t0, <, 1000);
	free(got);
	ng_lua_close(lua);
}

static void api_call_yields_and_resumes(void)
{
	struct ng_lua *lua = open_sandbox(0, 0, 0);
	struct ng_lua_result res;
	struct ng_lua_activation *act = start_src(
	    lua,
	    WF("local r = ctx.wait(5)\nlocal ok, r2 = pcall(ctx.wait, r)\nreturn r2 + 1, 'done'"),
	    &res);
	lua_State *co = ng_lua_activation_thread(act);
	lua_State *L = ng_lua_state(lua);
	ASSERT_EQ_INT(res.outcome, NG_LUA_YIELDED);
	ASSERT_EQ_INT(res.nvalues, 2);
	ASSERT_EQ_STR(lua_tostring(co, -2), "wait");
	ASSERT_EQ_INT(lua_tointeger(co, -1), 5);

	lua_pushinteger(L, 37);
	ASSERT_EQ_INT(ng_lua_activation_resume(act, 1, &res), 0);
	ASSERT_EQ_INT(res.outcome, NG_LUA_YIELDED);
	ASSERT_EQ_INT(lua_tointeger(co, -1), 37);

	lua_pushinteger(L, 41);
	ASSERT_EQ_INT(ng_lua_activation_resume(act, 1, &res), 0);
	ASSERT_EQ_INT(res.outcome, NG_LUA_FINISHED);
	ASSERT_EQ_INT(res.nvalues, 2);
	ASSERT_EQ_INT(lua_tointeger(co, -2), 42);
	ASSERT_EQ_STR(lua_tostring(co, -1), "done");

	/* A finished activation cannot be resumed. */
	lua_pushinteger(L, 1);
	ASSERT_EQ_INT(ng_lua_activation_resume(act, 1, &res), -EINVAL);
	ASSERT_EQ_INT(lua_gettop(L), 0);
	ng_lua_activation_free(act);

	/* Waiting where the coroutine cannot yield is a clear error, not a crash. */
	act = start_src(lua, WF("table.sort({2, 1}, function(a, b) ctx.wait(1) return a < b end)"),
	                &res);
	ASSERT_EQ_INT(res.outcome, NG_LUA_ERRORED);
	ASSERT_CONTAINS(res.message, "cannot wait here");
	ng_lua_activation_free(act);
	ng_lua_close(lua);
}

static void suspended_activation_can_be_thrown_away(void)
{
	struct ng_lua *lua = open_sandbox(0, 0, 0);
	size_t before, after;
	lua_gc(ng_lua_state(lua), LUA_GCCOLLECT);
	ng_lua_memory(lua, &before, NULL);
	struct ng_lua_result res;
	struct ng_lua_activation *act =
	    start_src(lua,
	              WF("local big = string.rep('z', 100000)\n"
	                 "local guard <close> = setmetatable({}, {__close = function() while true "
	                 "do end end})\n"
	                 "ctx.wait(#big)"),
	              &res);
	ASSERT_EQ_INT(res.outcome, NG_LUA_YIELDED);
	ng_lua_activation_free(act); /* evicted: the __close handler is stopped, not run forever */
	lua_gc(ng_lua_state(lua), LUA_GCCOLLECT);
	ng_lua_memory(lua, &after, NULL);
	ASSERT_CMP_INT(after, <, before + 8192);
	ng_lua_close(lua);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Activations per second for a tiny script (new coroutine, run to the first yield), and memory. */
static void measure_activation_cost(void)
{
	struct ng_lua *lua = open_sandbox(256u << 20, 0, 0);
	lua_State *L = ng_lua_state(lua);
	struct ng_lua_script *s = load(lua, "workflows/tiny.lua", WF("ctx.wait(1)\nreturn 1"));
	enum { RUNS = 20000, KEEP = 2000 };
	struct ng_lua_result res;
	struct ng_lua_activation *act;

	double t0 = now_s();
	for (int i = 0; i < RUNS; i++) {
		push_ctx(lua);
		ASSERT_EQ_INT(ng_lua_activation_start_script(lua, s, "run", 1, &act, &res), 0);
		ASSERT_EQ_INT(res.outcome, NG_LUA_YIELDED);
		ng_lua_activation_free(act);
	}
	double per_s = RUNS / (now_s() - t0);

	/* The same with run already at hand (no chunk re-run), to separate the two costs. */
	push_ctx(lua);
	ASSERT_EQ_INT(ng_lua_activation_start_script(lua, s, "run", 1, &act, &res), 0);
	ng_lua_activation_free(act);
	ng_lua_script_push(s);
	lua_call(L, 0, 1);
	lua_getfield(L, -1, "run");
	int run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_pop(L, 1);
	t0 = now_s();
	for (int i = 0; i < RUNS; i++) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, run_ref);
		push_ctx(lua);
		ASSERT_EQ_INT(ng_lua_activation_start(lua, 1, &act, &res), 0);
		ASSERT_EQ_INT(res.outcome, NG_LUA_YIELDED);
		ng_lua_activation_free(act);
	}
	double per_s_bare = RUNS / (now_s() - t0);

	/* Memory per suspended activation, with one shared ctx as the runtime would pass. */
	static struct ng_lua_activation *kept[KEEP];
	size_t before, after;
	push_ctx(lua);
	int ctx_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_gc(L, LUA_GCCOLLECT);
	ng_lua_memory(lua, &before, NULL);
	for (int i = 0; i < KEEP; i++) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, ctx_ref);
		ASSERT_EQ_INT(ng_lua_activation_start_script(lua, s, "run", 1, &kept[i], &res), 0);
		ASSERT_EQ_INT(res.outcome, NG_LUA_YIELDED);
	}
	lua_gc(L, LUA_GCCOLLECT);
	ng_lua_memory(lua, &after, NULL);
	double per_act = (double)(after - before) / KEEP;
	for (int i = 0; i < KEEP; i++)
		ng_lua_activation_free(kept[i]);

	fprintf(
	    stderr,
	    "# lua sandbox: %.0f activations/s (chunk + run to first yield), %.0f/s (run only); "
	    "%.0f bytes per suspended activation\n",
	    per_s, per_s_bare, per_act);
	ASSERT_CMP_INT(per_s, >, 1000);
	ASSERT_CMP_INT(per_act, <, 16384);
	ASSERT_CMP_INT(per_act, >, 100);
	luaL_unref(L, LUA_REGISTRYINDEX, ctx_ref);
	luaL_unref(L, LUA_REGISTRYINDEX, run_ref);
	ng_lua_script_free(s);
	ng_lua_close(lua);
}

NG_TESTS(NG_TEST(budget_stops_plain_loop), NG_TEST(budget_stops_loop_in_pcall),
         NG_TEST(budget_stops_loop_in_sort_comparator), NG_TEST(budget_stops_loop_in_gsub_callback),
         NG_TEST(budget_stops_loop_in_error_handler), NG_TEST(budget_pays_for_work_in_c),
         NG_TEST(wall_time_stops_slow_script), NG_TEST(memory_bomb_table_is_stopped),
         NG_TEST(memory_bomb_in_pcall_is_stopped), NG_TEST(memory_bomb_then_api_call_is_stopped),
         NG_TEST(memory_bomb_huge_rep_is_stopped), NG_TEST(activation_memory_cap_is_enforced),
         NG_TEST(dangerous_globals_are_absent), NG_TEST(bytecode_is_refused),
         NG_TEST(syntax_error_names_file_and_line), NG_TEST(runtime_error_has_line_and_traceback),
         NG_TEST(pairs_order_is_stable), NG_TEST(globals_are_read_only_and_not_shared),
         NG_TEST(log_goes_to_the_runtime_hook), NG_TEST(tostring_hides_addresses),
         NG_TEST(pathological_pattern_is_refused), NG_TEST(api_call_yields_and_resumes),
         NG_TEST(suspended_activation_can_be_thrown_away), NG_TEST(measure_activation_cost), )
