/*
 * liquid_int.h — what the Liquid engine's files share: the value model (liquid_value.c), arenas,
 * the compiled form (nodes and expressions built by liquid_parse.c), the render context
 * (liquid_render.c), the filter table (liquid_filters.c) and dates (liquid_date.c).
 */
#ifndef NG_LIQUID_INT_H
#define NG_LIQUID_INT_H

#include "liquid.h"

#include <stdint.h>
#include <string.h>
#include <time.h>

/* ---- arenas: bump allocation, freed all at once (a compiled template, one render) ---- */

struct lq_chunk;
struct lq_arena {
	struct lq_chunk *head;
	char *p, *end;
	size_t used; /* bytes handed out, for the capture/output limits */
};
void *lq_alloc(struct lq_arena *a, size_t n);
char *lq_strndup(struct lq_arena *a, const char *s, size_t n);
void lq_arena_free(struct lq_arena *a);

/* ---- values ---- */

enum lq_type {
	LQ_NIL,
	LQ_BOOL,
	LQ_INT,
	LQ_FLOAT,
	LQ_STR,
	LQ_JSON,  /* a JSON array or object (borrowed from the data or owned by the render) */
	LQ_RANGE, /* lo..hi */
	LQ_EMPTY, /* the `empty` literal */
	LQ_BLANK, /* the `blank` literal */
	LQ_LOOP,  /* forloop / tablerowloop */
};

struct lq_loop;

struct lq_val {
	uint8_t t;
	union {
		int b;
		int64_t i;
		double f;
		struct {
			const char *p;
			size_t n;
		} s;
		json_t *j;
		struct {
			int64_t lo, hi;
		} r;
		const struct lq_loop *loop;
	};
};

struct lq_loop {
	int64_t index0, length;
	int64_t col0, cols, row; /* tablerow only */
	int tablerow;
	const char *name;
	const struct lq_loop *parent;
};

/* ---- the render context ---- */

struct lq_var {
	const char *name;
	size_t nlen;
	struct lq_val v;
	struct lq_var *next;
};

struct lq_counter {
	const void *key; /* cycle group: a node pointer or an interned string */
	const char *skey;
	size_t sklen;
	int64_t n;
	struct lq_counter *next;
};

struct lq_render; /* one render call: shared by every context it creates */

struct lq_ctx {
	struct lq_render *r;
	const json_t *env;
	struct lq_var *scope;    /* loop variables and include arguments, innermost first */
	struct lq_var *assigns;  /* assign and capture: the template's global scope */
	struct lq_var *counters; /* increment / decrement */
	struct lq_counter *cycles;
	struct lq_counter *offsets; /* for … offset:continue */
	const struct lq_loop *loop;
	const struct ng_liquid_tmpl *tmpl; /* whose lines errors name */
	uint64_t tmpl_iterations;
	int in_render; /* inside {% render %}: include is refused */
	int line;      /* the line being rendered, for filter errors */
	int interrupt; /* LQ_BREAK, LQ_CONTINUE */
};
enum { LQ_BREAK = 1, LQ_CONTINUE = 2 };

struct lq_render {
	struct lq_arena arena;
	struct ng_liquid_buf *out;
	struct ng_liquid_buf scratch; /* reused by filters that build strings */
	const struct ng_liquid_render_opts *o;
	struct ng_liquid_limits lim;
	json_t **owned;
	size_t nowned, capowned;
	uint64_t iterations;
	uint32_t depth;
	uint64_t deadline_ns;
	uint32_t ticks;
	int64_t now;
	int failed; /* an error was recorded */
	int code;
	char *err;
	size_t errlen;
};

/* Records a render error ("Liquid error (line N): …") and returns -EINVAL. */
int lq_error(struct lq_ctx *c, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Records a limit error and returns -E2BIG. */
int lq_limit(struct lq_ctx *c, const char *what);
/* Keeps a JSON value the render created until the render ends. */
json_t *lq_own(struct lq_ctx *c, json_t *j);

/* ---- value helpers (liquid_value.c) ---- */

struct lq_val lq_from_json(const json_t *j);
json_t *lq_to_json(const struct lq_val *v); /* a new reference */
int lq_truthy(const struct lq_val *v);
int lq_equal(const struct lq_val *a, const struct lq_val *b);
/* -2: not comparable; else -1, 0, 1 */
int lq_compare(const struct lq_val *a, const struct lq_val *b);
int lq_is_empty(const struct lq_val *v);
int lq_is_blank(const struct lq_val *v);
/* Appends the value as Liquid prints it. */
void lq_buf_val(struct ng_liquid_buf *b, const struct lq_val *v);
void lq_buf_grow(struct ng_liquid_buf *b, size_t n);
/* Appends n bytes (inline: the renderer's hottest call). */
static inline void lq_buf_add(struct ng_liquid_buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap)
		lq_buf_grow(b, n);
	if (n)
		memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = 0;
}
void lq_buf_fmt_float(struct ng_liquid_buf *b, double f);
/* The value as a string (arena-backed when converted). */
struct lq_val lq_to_str(struct lq_ctx *c, const struct lq_val *v);
struct lq_val lq_str(const char *p, size_t n);
struct lq_val lq_int(int64_t i);
struct lq_val lq_float(double f);
struct lq_val lq_bool(int b);
static inline struct lq_val lq_nil(void)
{
	struct lq_val v = {.t = LQ_NIL};
	return v;
}
/* Number coercion as the math filters do it: 0 for what is not a number. */
struct lq_val lq_to_number(const struct lq_val *v);
/* Integer coercion (limit, offset, range bounds); -1 when v is not a number. */
int lq_to_int(const struct lq_val *v, int64_t *out);
/* Element count of an array, object, string or range. */
size_t lq_size(const struct lq_val *v);
/* Property lookup: key on objects, size/first/last on arrays and strings. */
struct lq_val lq_get_key(const struct lq_val *v, const char *k, size_t n);
struct lq_val lq_get_index(struct lq_ctx *c, const struct lq_val *v, const struct lq_val *idx);
/* Elements for iteration: fills a vector of values; returns the count. */
size_t lq_elements(struct lq_ctx *c, const struct lq_val *v, struct lq_val **out);

/* ---- the compiled form ---- */

enum lq_expr_kind { LQE_LIT, LQE_VAR, LQE_RANGE };

struct lq_lookup {
	const char *key; /* a .name or ['literal'] lookup */
	size_t klen;
	struct lq_expr *idx; /* a [expr] lookup */
	int command;         /* .size/.first/.last */
};

struct lq_expr {
	uint8_t kind;
	struct lq_val lit;
	const char *name; /* LQE_VAR root; NULL when the root is [expr] */
	size_t nlen;
	struct lq_expr *root_idx;
	struct lq_lookup *path;
	int npath;
	struct lq_expr *lo, *hi;
};

struct lq_filter;
typedef int (*lq_filter_fn)(struct lq_ctx *c, struct lq_val *v, const struct lq_val *args,
                            int nargs, const struct lq_val *kw, const char *const *kwnames,
                            int nkw);

struct lq_filter {
	lq_filter_fn fn; /* NULL: unknown filter, passes its input through */
	const char *name;
	struct lq_expr **args;
	int nargs;
	struct lq_expr **kwargs;
	const char **kwnames;
	int nkw;
};

struct lq_filtered {
	struct lq_expr *e;
	struct lq_filter *f;
	int nf;
};

enum lq_cond_op { LQC_NONE, LQC_EQ, LQC_NE, LQC_LT, LQC_GT, LQC_LE, LQC_GE, LQC_CONTAINS };

struct lq_cond {
	struct lq_expr *l, *r;
	uint8_t op;
	uint8_t join; /* 0 none, 1 and, 2 or: joins this with next (right-associative) */
	struct lq_cond *next;
};

enum lq_node_kind {
	LQN_TEXT,
	LQN_OUTPUT,
	LQN_ASSIGN,
	LQN_CAPTURE,
	LQN_IF,
	LQN_CASE,
	LQN_FOR,
	LQN_TABLEROW,
	LQN_CYCLE,
	LQN_INCREMENT,
	LQN_DECREMENT,
	LQN_BREAK,
	LQN_CONTINUE,
	LQN_INCLUDE,
	LQN_RENDER,
};

struct lq_node;
struct lq_block {
	struct lq_node *first;
};

struct lq_branch {
	struct lq_cond *cond;  /* NULL: else */
	struct lq_expr **when; /* case: values (nwhen) */
	int nwhen;
	int negate; /* unless */
	struct lq_block body;
	struct lq_branch *next;
};

struct lq_node {
	uint8_t kind;
	int line;
	struct lq_node *next;
	union {
		struct {
			const char *p;
			size_t n;
		} text;
		struct lq_filtered out;
		struct {
			const char *name;
			size_t nlen;
			struct lq_filtered val;
			struct lq_block body; /* capture */
		} assign;
		struct {
			struct lq_branch *branches;
			struct lq_expr *subject; /* case */
		} cond;
		struct {
			const char *var;
			size_t vlen;
			struct lq_expr *coll;
			const char *coll_key; /* offset:continue register name */
			struct lq_expr *limit, *offset, *cols;
			int offset_continue, reversed;
			struct lq_block body, els;
		} loop;
		struct {
			struct lq_expr *group;
			struct lq_expr **vals;
			int nvals;
			const char *key; /* unnamed literal cycles share a key */
		} cycle;
		struct {
			const char *name;
			size_t nlen;
		} counter;
		struct {
			struct lq_expr *tname; /* include: any expression; render: a literal */
			struct lq_expr *with;
			int is_for;
			const char *alias;
			size_t alen;
			const char **argn;
			struct lq_expr **argv;
			int nargs;
		} partial;
	};
};

struct ng_liquid_tmpl {
	struct lq_arena arena;
	struct lq_block root;
	const char *name; /* for errors inside partials */
	const char **partials;
	int *partial_lines;
	size_t npartials;
	char *src;
};

/* ---- filters (liquid_filters.c), dates (liquid_date.c) ---- */

lq_filter_fn lq_filter_lookup(const char *name, size_t len);
int lq_date_filter(struct lq_ctx *c, struct lq_val *v, const struct lq_val *args, int nargs);

/* Time-zone offset of zone name at t (seconds east of UTC) and its abbreviation. -ENOENT when the
 * zone is unknown. Thread-safe (zones are cached append-only behind a mutex). */
int lq_tz_offset(const char *zone, int64_t t, int *offset, const char **abbr);

#endif
