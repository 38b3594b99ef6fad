/*
 * config.h — nudge.conf.lua: loading, strict validation against the schema, and typed lookup.
 *
 * The file is a Lua chunk that returns a table. It runs in a small sandbox (no os, io, require) with
 * two helpers for secrets: env("NAME" [, "default"]) reads an environment variable, file("/path")
 * reads a file that must not be readable by group or others (a trailing newline is dropped). Every problem stops startup with one sentence that names
 * the key and file:line, e.g.
 *
 *   nudge.conf.lua:12: unknown key 'http.listn' (did you mean 'http.listen'?)
 *   nudge.conf.lua:5: key 'database.pool_size' must be an integer, not a string
 *   nudge.conf.lua:3: missing required key 'database.conninfo'
 *
 * Lookups use dotted paths ("http.listen"); defaults from the schema are filled in, so a lookup of a
 * key the schema knows always succeeds.
 */
#ifndef NG_CONFIG_H
#define NG_CONFIG_H

#include <stddef.h>

enum ng_conf_type {
	NG_CONF_STRING,
	NG_CONF_INT,
	NG_CONF_NUMBER,
	NG_CONF_BOOL,
	NG_CONF_TABLE, /* keys fixed by the schema */
	NG_CONF_LIST,  /* a sequence of tables, each with the schema's keys */
	NG_CONF_ANY,   /* free-form table (a plugin's own keys, validated by the plugin) */
};

struct ng_conf_node {
	char *key; /* "listen", or "[2]" for a list item */
	enum ng_conf_type type;
	char *str;
	long long i;
	double num;
	int b;
	int line; /* where it was written; 0 for a default */
	struct ng_conf_node *child, *next;
};

struct ng_conf {
	char *path;
	struct ng_conf_node *root;
};

/* Loads and validates path. On failure returns NG_ECONFIG and writes the sentence to err. */
int ng_conf_load(const char *path, struct ng_conf **out, char *err, size_t errlen);
void ng_conf_free(struct ng_conf *c);

/* Typed lookups by dotted path. Asking for a path the schema does not define is a programming error
 * and aborts; an optional key with no value and no default gives NULL / 0. */
const struct ng_conf_node *ng_conf_get(const struct ng_conf *c, const char *path);
const char *ng_conf_str(const struct ng_conf *c, const char *path);
long long ng_conf_int(const struct ng_conf *c, const char *path);
double ng_conf_num(const struct ng_conf *c, const char *path);
int ng_conf_bool(const struct ng_conf *c, const char *path);

/* Prints every key the schema knows, with type, default and help (for docs and `nudge config keys`). */
void ng_conf_describe(void (*emit)(void *arg, const char *line), void *arg);

/* Internal: maps a dotted key path to the line it was written on, from the source text. */
struct ng_conf_lines;
struct ng_conf_lines *ng_conf_lines_scan(const char *src);
int ng_conf_lines_find(const struct ng_conf_lines *l, const char *path);
void ng_conf_lines_free(struct ng_conf_lines *l);

#endif
