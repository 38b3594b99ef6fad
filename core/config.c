/*
 * config.c — loads nudge.conf.lua in a small Lua sandbox and validates it against the schema
 * (config_schema.c), producing a tree of typed nodes with defaults filled in.
 */
#include "config.h"
#include "config_schema.h"
#include "ng.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A secret reference made by env() or file(): a table with this registry metatable. */
static const char SECRET_MT[] = "nudge.config.secret";

struct loader {
	lua_State *L;
	const char *file;
	struct ng_conf_lines *lines;
	char *err;
	size_t errlen;
};

static int fail(struct loader *ld, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct loader *ld, int line, const char *fmt, ...)
{
	size_t n = (size_t)snprintf(ld->err, ld->errlen, "%s:%d: ", ld->file, line > 0 ? line : 1);
	if (n < ld->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(ld->err + n, ld->errlen - n, fmt, ap);
		va_end(ap);
	}
	return NG_ECONFIG;
}

/* The line a key was written on, else its parent's, else 1. */
static int line_of(struct loader *ld, const char *path)
{
	char p[512];
	snprintf(p, sizeof p, "%s", path);
	for (;;) {
		int line = ng_conf_lines_find(ld->lines, p);
		if (line)
			return line;
		char *cut = strrchr(p, '.');
		char *br = strrchr(p, '[');
		if (br > cut)
			cut = br;
		if (!cut)
			return 1;
		*cut = '\0';
	}
}

static int lua_secret(lua_State *L, const char *kind)
{
	const char *arg = luaL_checkstring(L, 1);
	const char *def = luaL_optstring(L, 2, NULL);
	lua_createtable(L, 0, 3);
	if (def) {
		lua_pushstring(L, def);
		lua_setfield(L, -2, "default");
	}
	lua_pushstring(L, kind);
	lua_setfield(L, -2, "kind");
	lua_pushstring(L, arg);
	lua_setfield(L, -2, "arg");
	luaL_setmetatable(L, SECRET_MT);
	return 1;
}

static int l_env(lua_State *L)
{
	return lua_secret(L, "env");
}

static int l_file(lua_State *L)
{
	luaL_argexpected(L, lua_gettop(L) == 1, 2, "no second argument");
	return lua_secret(L, "file");
}

/* Resolves a secret reference at the top of the stack into a malloc'd string. */
static int resolve_secret(struct loader *ld, const char *path, char **out)
{
	lua_State *L = ld->L;
	lua_getfield(L, -1, "kind");
	lua_getfield(L, -2, "arg");
	lua_getfield(L, -3, "default");
	const char *kind = lua_tostring(L, -3), *arg = lua_tostring(L, -2);
	const char *def = lua_tostring(L, -1);
	int rc = 0, line = line_of(ld, path);
	if (strcmp(kind, "env") == 0) {
		const char *v = getenv(arg);
		if ((!v || !*v) && def)
			*out = ng_xstrdup(def);
		else if (!v || !*v)
			rc = fail(ld, line, "key '%s' reads the environment variable %s, which is not set",
				  path, arg);
		else
			*out = ng_xstrdup(v);
	} else {
		struct stat st;
		int fd = open(arg, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st) != 0) {
			rc = fail(ld, line, "key '%s' reads the file %s, which cannot be opened: %s", path,
				  arg, strerror(errno));
		} else if (st.st_mode & 077) {
			rc = fail(ld, line,
				  "key '%s' reads the file %s, which group or others can read (chmod 600 "
				  "it)",
				  path, arg);
		} else {
			char buf[8192];
			ssize_t n = read(fd, buf, sizeof buf - 1);
			if (n < 0) {
				rc = fail(ld, line, "key '%s' reads the file %s: %s", path, arg,
					  strerror(errno));
			} else {
				/* A trailing newline is an editor's, not part of the secret. */
				while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
					n--;
				*out = ng_xstrndup(buf, (size_t)n);
			}
		}
		if (fd >= 0)
			close(fd);
	}
	lua_pop(L, 3);
	return rc;
}

static int is_secret(lua_State *L, int idx)
{
	if (!lua_getmetatable(L, idx))
		return 0;
	luaL_getmetatable(L, SECRET_MT);
	int same = lua_rawequal(L, -1, -2);
	lua_pop(L, 2);
	return same;
}

static const char *lua_type_word(lua_State *L, int idx)
{
	if (lua_isinteger(L, idx))
		return "an integer";
	switch (lua_type(L, idx)) {
	case LUA_TNUMBER:
		return "a fractional number";
	case LUA_TSTRING:
		return "a string";
	case LUA_TBOOLEAN:
		return "a boolean";
	case LUA_TTABLE:
		return "a table";
	case LUA_TFUNCTION:
		return "a function";
	default:
		return lua_typename(L, lua_type(L, idx));
	}
}

static void child_path(char *out, size_t cap, const char *parent, const char *key)
{
	if (key[0] == '[')
		snprintf(out, cap, "%s%s", parent, key);
	else if (*parent)
		snprintf(out, cap, "%s.%s", parent, key);
	else
		snprintf(out, cap, "%s", key);
}

/* Levenshtein distance, for "did you mean". Keys are short. */
static int distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 63 || lb > 63)
		return 99;
	int d[64][64];
	for (size_t i = 0; i <= la; i++)
		d[i][0] = (int)i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (int)j;
	for (size_t i = 1; i <= la; i++)
		for (size_t j = 1; j <= lb; j++) {
			int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
			d[i][j] = c < del ? (c < ins ? c : ins) : (del < ins ? del : ins);
		}
	return d[la][lb];
}

static struct ng_conf_node *new_node(const char *key, enum ng_conf_type type, int line)
{
	struct ng_conf_node *n = ng_xcalloc(1, sizeof *n);
	n->key = ng_xstrdup(key);
	n->type = type;
	n->line = line;
	return n;
}

static void free_nodes(struct ng_conf_node *n)
{
	while (n) {
		struct ng_conf_node *next = n->next;
		free_nodes(n->child);
		free(n->key);
		free(n->str);
		free(n);
		n = next;
	}
}

static void append(struct ng_conf_node *parent, struct ng_conf_node *child)
{
	struct ng_conf_node **p = &parent->child;
	while (*p)
		p = &(*p)->next;
	*p = child;
}

static int convert_table(struct loader *ld, const struct ng_conf_field *fields, const char *path,
			 struct ng_conf_node *into);
static int convert_any(struct loader *ld, const char *path, struct ng_conf_node *into);

/* Converts the value at the top of the stack for field f into a node. */
static int convert_value(struct loader *ld, const struct ng_conf_field *f, const char *path,
			 struct ng_conf_node **out)
{
	lua_State *L = ld->L;
	int line = line_of(ld, path);
	struct ng_conf_node *n = new_node(f->name, f->type, line);
	int rc = 0;
	*out = n;
	switch (f->type) {
	case NG_CONF_STRING:
		if (lua_type(L, -1) == LUA_TTABLE && is_secret(L, -1))
			rc = resolve_secret(ld, path, &n->str);
		else if (lua_type(L, -1) == LUA_TSTRING)
			n->str = ng_xstrdup(lua_tostring(L, -1));
		else
			rc = fail(ld, line, "key '%s' must be a string, not %s", path,
				  lua_type_word(L, -1));
		if (rc == 0 && f->choices) {
			char opts[256];
			snprintf(opts, sizeof opts, "|%s|", f->choices);
			char want[256];
			snprintf(want, sizeof want, "|%s|", n->str);
			if (!strstr(opts, want)) {
				snprintf(opts, sizeof opts, "%s", f->choices);
				for (char *p = opts; *p; p++)
					if (*p == '|')
						*p = '/';
				rc = fail(ld, line, "key '%s' must be one of %s, not \"%s\"", path,
					  opts, n->str);
			}
		}
		break;
	case NG_CONF_INT:
		if (!lua_isinteger(L, -1)) {
			rc = fail(ld, line, "key '%s' must be an integer, not %s", path,
				  lua_type_word(L, -1));
			break;
		}
		n->i = lua_tointeger(L, -1);
		if (f->min < f->max && (n->i < f->min || n->i > f->max))
			rc = fail(ld, line, "key '%s' must be between %lld and %lld, not %lld", path,
				  f->min, f->max, n->i);
		break;
	case NG_CONF_NUMBER:
		if (lua_type(L, -1) != LUA_TNUMBER)
			rc = fail(ld, line, "key '%s' must be a number, not %s", path,
				  lua_type_word(L, -1));
		else
			n->num = lua_tonumber(L, -1);
		break;
	case NG_CONF_BOOL:
		if (lua_type(L, -1) != LUA_TBOOLEAN)
			rc = fail(ld, line, "key '%s' must be a boolean (true or false), not %s", path,
				  lua_type_word(L, -1));
		else
			n->b = lua_toboolean(L, -1);
		break;
	case NG_CONF_TABLE:
		if (lua_type(L, -1) != LUA_TTABLE || is_secret(L, -1))
			rc = fail(ld, line, "key '%s' must be a table, not %s", path,
				  lua_type_word(L, -1));
		else
			rc = convert_table(ld, f->fields, path, n);
		break;
	case NG_CONF_ANY:
		if (lua_type(L, -1) != LUA_TTABLE || is_secret(L, -1))
			rc = fail(ld, line, "key '%s' must be a table, not %s", path,
				  lua_type_word(L, -1));
		else
			rc = convert_any(ld, path, n);
		break;
	case NG_CONF_LIST: {
		if (lua_type(L, -1) != LUA_TTABLE) {
			rc = fail(ld, line, "key '%s' must be a list of tables, not %s", path,
				  lua_type_word(L, -1));
			break;
		}
		lua_Integer len = (lua_Integer)lua_rawlen(L, -1);
		/* A list has only positions 1..n: a named key in it is a mistake. */
		lua_pushnil(L);
		while (rc == 0 && lua_next(L, -2)) {
			if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1 ||
			    lua_tointeger(L, -2) > len) {
				char k[128];
				snprintf(k, sizeof k, "%s",
					 lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?");
				char kp[512];
				child_path(kp, sizeof kp, path, k);
				rc = fail(ld, line_of(ld, kp),
					  "key '%s' is a list: '%s' does not belong in it", path, k);
			}
			lua_pop(L, 1);
		}
		for (lua_Integer i = 1; rc == 0 && i <= len; i++) {
			char key[32], ipath[512];
			snprintf(key, sizeof key, "[%lld]", (long long)i);
			child_path(ipath, sizeof ipath, path, key);
			lua_rawgeti(L, -1, i);
			struct ng_conf_node *item = new_node(key, NG_CONF_TABLE, line_of(ld, ipath));
			append(n, item);
			if (lua_type(L, -1) != LUA_TTABLE)
				rc = fail(ld, item->line, "item '%s' must be a table, not %s", ipath,
					  lua_type_word(L, -1));
			else
				rc = convert_table(ld, f->fields, ipath, item);
			lua_pop(L, 1);
		}
		break;
	}
	}
	return rc;
}

static struct ng_conf_node *default_node(const struct ng_conf_field *f)
{
	struct ng_conf_node *n = new_node(f->name, f->type, 0);
	if (f->type == NG_CONF_TABLE) {
		for (const struct ng_conf_field *c = f->fields; c->name; c++)
			append(n, default_node(c));
	} else if (f->def) {
		if (f->type == NG_CONF_STRING)
			n->str = ng_xstrdup(f->def);
		else if (f->type == NG_CONF_INT)
			n->i = strtoll(f->def, NULL, 10);
		else if (f->type == NG_CONF_NUMBER)
			n->num = strtod(f->def, NULL);
		else if (f->type == NG_CONF_BOOL)
			n->b = strcmp(f->def, "true") == 0;
	}
	return n;
}

/* Validates the table at the top of the stack against fields, appending children to into. */
static int convert_table(struct loader *ld, const struct ng_conf_field *fields, const char *path,
			 struct ng_conf_node *into)
{
	lua_State *L = ld->L;
	/* First every key present must be known. */
	lua_pushnil(L);
	while (lua_next(L, -2)) {
		lua_pop(L, 1);
		char kp[512];
		if (lua_type(L, -1) != LUA_TSTRING) {
			int line = line_of(ld, path);
			lua_pop(L, 1);
			return fail(ld, line, "table '%s' holds a positional item; it takes named keys",
				    *path ? path : "(top level)");
		}
		const char *k = lua_tostring(L, -1);
		const struct ng_conf_field *f = fields;
		while (f->name && strcmp(f->name, k) != 0)
			f++;
		if (!f->name) {
			child_path(kp, sizeof kp, path, k);
			const char *best = NULL;
			int bestd = 3;
			for (const struct ng_conf_field *g = fields; g->name; g++) {
				int d = distance(k, g->name);
				if (d < bestd) {
					bestd = d;
					best = g->name;
				}
			}
			int line = line_of(ld, kp);
			if (best) {
				char bp[512];
				child_path(bp, sizeof bp, path, best);
				fail(ld, line, "unknown key '%s' (did you mean '%s'?)", kp, bp);
			} else {
				fail(ld, line, "unknown key '%s'", kp);
			}
			lua_pop(L, 1);
			return NG_ECONFIG;
		}
	}
	/* Then every field the schema knows: present, defaulted, or missing. */
	for (const struct ng_conf_field *f = fields; f->name; f++) {
		char kp[512];
		child_path(kp, sizeof kp, path, f->name);
		lua_getfield(L, -1, f->name);
		int rc = 0;
		if (lua_isnil(L, -1)) {
			if (f->required)
				rc = fail(ld, line_of(ld, path), "missing required key '%s'", kp);
			else
				append(into, default_node(f));
		} else {
			struct ng_conf_node *n = NULL;
			rc = convert_value(ld, f, kp, &n);
			append(into, n);
		}
		lua_pop(L, 1);
		if (rc)
			return rc;
	}
	return 0;
}

/* A free-form table: every value becomes a node of its natural type. */
static int convert_any(struct loader *ld, const char *path, struct ng_conf_node *into)
{
	lua_State *L = ld->L;
	lua_pushnil(L);
	while (lua_next(L, -2)) {
		char key[128], kp[512];
		if (lua_type(L, -2) == LUA_TSTRING)
			snprintf(key, sizeof key, "%s", lua_tostring(L, -2));
		else if (lua_isinteger(L, -2))
			snprintf(key, sizeof key, "[%lld]", (long long)lua_tointeger(L, -2));
		else {
			lua_pop(L, 2);
			return fail(ld, line_of(ld, path), "table '%s' has a key that is not a name",
				    path);
		}
		child_path(kp, sizeof kp, path, key);
		struct ng_conf_field f = {key, NG_CONF_STRING, 0, NULL, NULL, 0, 0, NULL, NULL};
		if (lua_isinteger(L, -1))
			f.type = NG_CONF_INT;
		else if (lua_type(L, -1) == LUA_TNUMBER)
			f.type = NG_CONF_NUMBER;
		else if (lua_type(L, -1) == LUA_TBOOLEAN)
			f.type = NG_CONF_BOOL;
		else if (lua_type(L, -1) == LUA_TTABLE && !is_secret(L, -1))
			f.type = NG_CONF_ANY;
		struct ng_conf_node *n = NULL;
		int rc = convert_value(ld, &f, kp, &n);
		append(into, n);
		lua_pop(L, 1);
		if (rc) {
			lua_pop(L, 1);
			return rc;
		}
	}
	return 0;
}

/* The config chunk's environment: harmless basics and the two secret helpers. */
static void push_sandbox(lua_State *L)
{
	static const char *const keep[] = {"ipairs", "pairs",  "tonumber", "tostring", "type",
					   "select", "string", "table",    "math",     "utf8",
					   "error",  "assert", "next",     "rawget"};
	lua_newtable(L);
	for (size_t i = 0; i < NG_ARRAY_LEN(keep); i++) {
		lua_getglobal(L, keep[i]);
		lua_setfield(L, -2, keep[i]);
	}
	lua_pushcfunction(L, l_env);
	lua_setfield(L, -2, "env");
	lua_pushcfunction(L, l_file);
	lua_setfield(L, -2, "file");
}

int ng_conf_load(const char *path, struct ng_conf **out, char *err, size_t errlen)
{
	struct loader ld = {.file = path, .err = err, .errlen = errlen};

	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "%s: cannot open the configuration file: %s", path,
			 strerror(errno));
		return NG_ECONFIG;
	}
	size_t cap = 4096, len = 0, n;
	char *src = ng_xmalloc(cap);
	while ((n = fread(src + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (cap - len < 2)
			src = ng_xrealloc(src, cap *= 2);
	}
	fclose(f);
	src[len] = '\0';

	ld.L = luaL_newstate();
	luaL_requiref(ld.L, "_G", luaopen_base, 1);
	luaL_requiref(ld.L, "string", luaopen_string, 1);
	luaL_requiref(ld.L, "table", luaopen_table, 1);
	luaL_requiref(ld.L, "math", luaopen_math, 1);
	luaL_requiref(ld.L, "utf8", luaopen_utf8, 1);
	lua_settop(ld.L, 0);
	luaL_newmetatable(ld.L, SECRET_MT);
	lua_pop(ld.L, 1);

	int rc = 0;
	char chunkname[512];
	snprintf(chunkname, sizeof chunkname, "@%s", path);
	if (luaL_loadbufferx(ld.L, src, len, chunkname, "t") != LUA_OK) {
		snprintf(err, errlen, "%s", lua_tostring(ld.L, -1));
		rc = NG_ECONFIG;
	} else {
		push_sandbox(ld.L);
		lua_setupvalue(ld.L, -2, 1);
		if (lua_pcall(ld.L, 0, 1, 0) != LUA_OK) {
			snprintf(err, errlen, "%s", lua_tostring(ld.L, -1));
			rc = NG_ECONFIG;
		} else if (lua_type(ld.L, -1) != LUA_TTABLE) {
			snprintf(err, errlen,
				 "%s:1: the file must return a table of settings (return { … }), not "
				 "%s",
				 path, lua_type_word(ld.L, -1));
			rc = NG_ECONFIG;
		}
	}
	struct ng_conf *c = NULL;
	if (rc == 0) {
		ld.lines = ng_conf_lines_scan(src);
		c = ng_xcalloc(1, sizeof *c);
		c->path = ng_xstrdup(path);
		c->root = new_node("", NG_CONF_TABLE, 1);
		rc = convert_table(&ld, ng_conf_schema, "", c->root);
		ng_conf_lines_free(ld.lines);
		if (rc) {
			ng_conf_free(c);
			c = NULL;
		}
	}
	lua_close(ld.L);
	free(src);
	*out = c;
	return rc;
}

void ng_conf_free(struct ng_conf *c)
{
	if (!c)
		return;
	free_nodes(c->root);
	free(c->path);
	free(c);
}

const struct ng_conf_node *ng_conf_get(const struct ng_conf *c, const char *path)
{
	const struct ng_conf_node *n = c->root;
	char buf[512];
	snprintf(buf, sizeof buf, "%s", path);
	for (char *save = NULL, *part = strtok_r(buf, ".", &save); part;
	     part = strtok_r(NULL, ".", &save)) {
		const struct ng_conf_node *k = n->child;
		while (k && strcmp(k->key, part) != 0)
			k = k->next;
		if (!k)
			return NULL;
		n = k;
	}
	return n;
}

static const struct ng_conf_node *must_get(const struct ng_conf *c, const char *path)
{
	const struct ng_conf_node *n = ng_conf_get(c, path);
	if (!n) {
		ng_error("config", "no configuration key '%s' in the schema", path);
		abort();
	}
	return n;
}

const char *ng_conf_str(const struct ng_conf *c, const char *path)
{
	return must_get(c, path)->str;
}

long long ng_conf_int(const struct ng_conf *c, const char *path)
{
	return must_get(c, path)->i;
}

double ng_conf_num(const struct ng_conf *c, const char *path)
{
	const struct ng_conf_node *n = must_get(c, path);
	return n->type == NG_CONF_INT ? (double)n->i : n->num;
}

int ng_conf_bool(const struct ng_conf *c, const char *path)
{
	return must_get(c, path)->b;
}

static void describe(const struct ng_conf_field *fields, const char *prefix,
		     void (*emit)(void *arg, const char *line), void *arg)
{
	for (const struct ng_conf_field *f = fields; f->name; f++) {
		char kp[256], line[768];
		child_path(kp, sizeof kp, prefix, f->name);
		if (f->type == NG_CONF_TABLE || f->type == NG_CONF_LIST) {
			snprintf(line, sizeof line, "%-32s %-10s %s%s", kp,
				 f->type == NG_CONF_TABLE ? "table" : "list", f->help,
				 f->required ? " (required)" : "");
			emit(arg, line);
			char sub[260];
			snprintf(sub, sizeof sub, "%s%s", kp, f->type == NG_CONF_LIST ? "[]" : "");
			describe(f->fields, sub, emit, arg);
			continue;
		}
		const char *t = f->type == NG_CONF_STRING ? "string"
				: f->type == NG_CONF_INT  ? "integer"
				: f->type == NG_CONF_BOOL ? "boolean"
				: f->type == NG_CONF_NUMBER ? "number"
							    : "table";
		snprintf(line, sizeof line, "%-32s %-10s %s%s%s%s", kp, t, f->help,
			 f->required ? " (required)" : "", f->def ? "; default " : "",
			 f->def ? f->def : "");
		emit(arg, line);
	}
}

void ng_conf_describe(void (*emit)(void *arg, const char *line), void *arg)
{
	describe(ng_conf_schema, "", emit, arg);
}
