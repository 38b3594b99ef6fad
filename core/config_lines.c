/*
 * config_lines.c — finds the line each key of nudge.conf.lua was written on.
 *
 * Lua tables do not remember where their fields came from, yet an error that names the key without
 * the line leaves the admin hunting. So this scans the source text once with a small Lua lexer,
 * following table constructors: `name = …` and `["name"] = …` inside a constructor record the dotted
 * path ("http.listen"), positional items record "[n]" ("channels[2].plugin"). Keys built at run time
 * are not found; the caller then falls back to the enclosing table's line.
 */
#include "config.h"
#include "ng.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct entry {
	char *path;
	int line;
};

struct ng_conf_lines {
	struct entry *e;
	size_t n, cap;
};

#define MAX_DEPTH 32

struct level {
	char path[512]; /* dotted path of this table */
	int index;      /* positional items seen so far */
	int expect_item; /* the next token starts a field */
};

static void add(struct ng_conf_lines *l, const char *path, int line)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 32;
		l->e = ng_xrealloc(l->e, l->cap * sizeof *l->e);
	}
	l->e[l->n].path = ng_xstrdup(path);
	l->e[l->n].line = line;
	l->n++;
}

/* Length of a long bracket opener "[==[" at s, with its level in *eq; 0 if none. */
static size_t long_open(const char *s, int *eq)
{
	if (s[0] != '[')
		return 0;
	size_t i = 1;
	while (s[i] == '=')
		i++;
	if (s[i] != '[')
		return 0;
	*eq = (int)(i - 1);
	return i + 1;
}

/* Skips to past the matching long bracket closer; counts newlines. */
static const char *skip_long(const char *s, int eq, int *line)
{
	for (; *s; s++) {
		if (*s == '\n')
			(*line)++;
		if (*s == ']') {
			int k = 0;
			while (s[1 + k] == '=')
				k++;
			if (k == eq && s[1 + k] == ']')
				return s + 2 + k;
		}
	}
	return s;
}

static void set_child(char *out, size_t cap, const char *parent, const char *key, int positional)
{
	if (positional)
		snprintf(out, cap, "%s[%s]", parent, key);
	else if (*parent)
		snprintf(out, cap, "%s.%s", parent, key);
	else
		snprintf(out, cap, "%s", key);
}

/* Returns the next significant character after s (skipping spaces and comments on the way). */
static const char *peek(const char *s)
{
	for (;;) {
		while (*s && isspace((unsigned char)*s))
			s++;
		if (s[0] == '-' && s[1] == '-') {
			int eq, line = 0;
			size_t lo = long_open(s + 2, &eq);
			if (lo) {
				s = skip_long(s + 2 + lo, eq, &line);
			} else {
				while (*s && *s != '\n')
					s++;
			}
			continue;
		}
		return s;
	}
}

struct ng_conf_lines *ng_conf_lines_scan(const char *src)
{
	struct ng_conf_lines *l = ng_xcalloc(1, sizeof *l);
	struct level stack[MAX_DEPTH];
	int depth = -1, line = 1;
	/* The key a "{" about to open belongs to, when it follows `key =`. */
	char pending[512] = "";
	int have_pending = 0;
	const char *s = src;

	while (*s) {
		char c = *s;
		if (c == '\n') {
			line++;
			s++;
			continue;
		}
		if (isspace((unsigned char)c)) {
			s++;
			continue;
		}
		if (c == '-' && s[1] == '-') {
			int eq;
			size_t lo = long_open(s + 2, &eq);
			if (lo) {
				s = skip_long(s + 2 + lo, eq, &line);
			} else {
				while (*s && *s != '\n')
					s++;
			}
			continue;
		}
		struct level *top = depth >= 0 ? &stack[depth] : NULL;
		int starts_item = top && top->expect_item;
		if (top)
			top->expect_item = 0;

		if (c == '{') {
			if (depth + 1 >= MAX_DEPTH)
				break;
			char path[512];
			if (have_pending) {
				snprintf(path, sizeof path, "%s", pending);
			} else if (starts_item) {
				char idx[16];
				snprintf(idx, sizeof idx, "%d", ++top->index);
				set_child(path, sizeof path, top->path, idx, 1);
				add(l, path, line);
			} else {
				/* The root table, or a table argument inside an expression. */
				snprintf(path, sizeof path, "%s", top ? top->path : "");
			}
			have_pending = 0;
			depth++;
			snprintf(stack[depth].path, sizeof stack[depth].path, "%s", path);
			stack[depth].index = 0;
			stack[depth].expect_item = 1;
			s++;
			continue;
		}
		if (c == '}') {
			if (depth >= 0)
				depth--;
			have_pending = 0;
			s++;
			continue;
		}
		if ((c == ',' || c == ';') && top) {
			top->expect_item = 1;
			have_pending = 0;
			s++;
			continue;
		}
		if (c == '"' || c == '\'') {
			const char *start = s + 1;
			s++;
			while (*s && *s != c) {
				if (*s == '\\' && s[1])
					s++;
				if (*s == '\n')
					line++;
				s++;
			}
			size_t len = (size_t)(s - start);
			if (*s)
				s++;
			if (starts_item)
				top->index++;
			(void)len;
			continue;
		}
		int eq;
		size_t lo = long_open(s, &eq);
		if (lo) {
			s = skip_long(s + lo, eq, &line);
			if (starts_item)
				top->index++;
			continue;
		}
		if (c == '[' && starts_item) {
			/* ["key"] = value */
			const char *q = peek(s + 1);
			if (*q == '"' || *q == '\'') {
				char quote = *q;
				const char *k = q + 1, *e = strchr(k, quote);
				if (e) {
					const char *after = peek(e + 1);
					if (*after == ']' && *peek(after + 1) == '=') {
						char key[256];
						snprintf(key, sizeof key, "%.*s", (int)(e - k), k);
						set_child(pending, sizeof pending, top->path, key, 0);
						add(l, pending, line);
						have_pending = 1;
						s = peek(after + 1) + 1;
						continue;
					}
				}
			}
			top->index++;
			s++;
			continue;
		}
		if (isalpha((unsigned char)c) || c == '_') {
			const char *start = s;
			while (isalnum((unsigned char)*s) || *s == '_')
				s++;
			if (starts_item) {
				const char *after = peek(s);
				if (after[0] == '=' && after[1] != '=') {
					char key[256];
					snprintf(key, sizeof key, "%.*s", (int)(s - start), start);
					set_child(pending, sizeof pending, top->path, key, 0);
					add(l, pending, line);
					have_pending = 1;
					s = after + 1;
					continue;
				}
				top->index++;
			}
			/* A name in an expression: `{` after it belongs to no key (f{…}). */
			have_pending = 0;
			continue;
		}
		if (starts_item)
			top->index++;
		s++;
	}
	return l;
}

int ng_conf_lines_find(const struct ng_conf_lines *l, const char *path)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->e[i].path, path) == 0)
			return l->e[i].line;
	return 0;
}

void ng_conf_lines_free(struct ng_conf_lines *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		free(l->e[i].path);
	free(l->e);
	free(l);
}
