/*
 * liquid_render.c — renders a compiled Liquid template against JSON data: variable scopes (loop
 * variables, assigns, counters, the data), every tag's semantics as liquid-ruby has them, partials
 * through the caller's loader, and the limits that stop a template bomb (output, iterations,
 * time, depth). A render touches only its own arena and output: renders may run concurrently.
 */
#include "liquid_int.h"
#include "ng.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int render_block(struct lq_ctx *c, const struct lq_block *b);

int lq_error(struct lq_ctx *c, int line, const char *fmt, ...)
{
	struct lq_render *r = c->r;
	if (r->failed)
		return r->code;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	r->failed = 1;
	r->code = -EINVAL;
	if (line <= 0)
		line = c->line;
	const char *name = c->tmpl ? c->tmpl->name : NULL;
	if (name && line > 0)
		snprintf(r->err, r->errlen, "Liquid error (%s line %d): %s", name, line, msg);
	else if (line > 0)
		snprintf(r->err, r->errlen, "Liquid error (line %d): %s", line, msg);
	else
		snprintf(r->err, r->errlen, "Liquid error: %s", msg);
	return r->code;
}

int lq_limit(struct lq_ctx *c, const char *what)
{
	struct lq_render *r = c->r;
	if (r->failed)
		return r->code;
	r->failed = 1;
	r->code = -E2BIG;
	const char *name = c->tmpl ? c->tmpl->name : NULL;
	snprintf(r->err, r->errlen, "Liquid error%s%s%s: Memory limits exceeded: %s limit reached",
	         name ? " (" : "", name ? name : "", name ? ")" : "", what);
	return r->code;
}

json_t *lq_own(struct lq_ctx *c, json_t *j)
{
	struct lq_render *r = c->r;
	if (!j)
		return NULL;
	if (r->nowned == r->capowned) {
		r->capowned = r->capowned ? r->capowned * 2 : 16;
		r->owned = ng_xrealloc(r->owned, r->capowned * sizeof *r->owned);
	}
	r->owned[r->nowned++] = j;
	return j;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Called for every node and iteration: checks the clock now and then. */
static int tick(struct lq_ctx *c)
{
	struct lq_render *r = c->r;
	if (r->failed)
		return r->code;
	if ((++r->ticks & 1023) == 0 && mono_ns() > r->deadline_ns) {
		r->failed = 1;
		r->code = -E2BIG;
		snprintf(r->err, r->errlen, "Liquid error: render time limit (%u ms) exceeded",
		         r->lim.max_ms);
		return r->code;
	}
	return 0;
}

static int iterate(struct lq_ctx *c)
{
	struct lq_render *r = c->r;
	if (++r->iterations > r->lim.max_iterations)
		return lq_limit(c, "loop iterations");
	if (r->lim.max_tmpl_iterations && ++c->tmpl_iterations > r->lim.max_tmpl_iterations)
		return lq_limit(c, "template loop iterations");
	return tick(c);
}

static int check_out(struct lq_ctx *c)
{
	if (c->r->out->len > c->r->lim.max_output)
		return lq_limit(c, "output size");
	return 0;
}

/* ---- variables ---- */

static struct lq_var *find(struct lq_var *v, const char *name, size_t n)
{
	for (; v; v = v->next)
		if (v->nlen == n && memcmp(v->name, name, n) == 0)
			return v;
	return NULL;
}

static struct lq_val lookup(struct lq_ctx *c, const char *name, size_t n)
{
	struct lq_var *v;
	if ((v = find(c->scope, name, n)) || (v = find(c->assigns, name, n)) ||
	    (v = find(c->counters, name, n)))
		return v->v;
	if (c->env && json_is_object(c->env))
		return lq_from_json(json_object_getn(c->env, name, n));
	return lq_nil();
}

static void set_assign(struct lq_ctx *c, const char *name, size_t n, struct lq_val val)
{
	struct lq_var *v = find(c->assigns, name, n);
	if (!v) {
		v = lq_alloc(&c->r->arena, sizeof *v);
		v->name = name;
		v->nlen = n;
		v->next = c->assigns;
		c->assigns = v;
	}
	v->v = val;
}

static int eval(struct lq_ctx *c, const struct lq_expr *e, struct lq_val *out, int line)
{
	switch (e->kind) {
	case LQE_LIT:
		*out = e->lit;
		return 0;
	case LQE_RANGE: {
		struct lq_val lo, hi;
		if (eval(c, e->lo, &lo, line) || eval(c, e->hi, &hi, line))
			return c->r->code;
		int64_t a = 0, b = 0;
		if (lq_to_int(&lo, &a) && lo.t != LQ_NIL)
			return lq_error(c, line, "invalid integer");
		if (lq_to_int(&hi, &b) && hi.t != LQ_NIL)
			return lq_error(c, line, "invalid integer");
		out->t = LQ_RANGE;
		out->r.lo = a;
		out->r.hi = b;
		return 0;
	}
	default:
		break;
	}
	struct lq_val v;
	if (e->root_idx) {
		struct lq_val k;
		if (eval(c, e->root_idx, &k, line))
			return c->r->code;
		struct lq_val ks = lq_to_str(c, &k);
		v = lookup(c, ks.s.p, ks.s.n);
	} else {
		v = lookup(c, e->name, e->nlen);
	}
	for (int i = 0; i < e->npath; i++) {
		const struct lq_lookup *l = &e->path[i];
		if (l->idx) {
			struct lq_val k;
			if (eval(c, l->idx, &k, line))
				return c->r->code;
			v = lq_get_index(c, &v, &k);
		} else {
			v = lq_get_key(&v, l->key, l->klen);
		}
	}
	*out = v;
	return 0;
}

static int eval_filtered(struct lq_ctx *c, const struct lq_filtered *f, struct lq_val *out,
                         int line)
{
	if (eval(c, f->e, out, line))
		return c->r->code;
	for (int i = 0; i < f->nf; i++) {
		const struct lq_filter *fl = &f->f[i];
		if (!fl->fn)
			continue;
		struct lq_val args[32], kw[32];
		for (int a = 0; a < fl->nargs; a++)
			if (eval(c, fl->args[a], &args[a], line))
				return c->r->code;
		for (int a = 0; a < fl->nkw; a++)
			if (eval(c, fl->kwargs[a], &kw[a], line))
				return c->r->code;
		c->line = line;
		int rc = fl->fn(c, out, args, fl->nargs, kw, fl->kwnames, fl->nkw);
		if (rc || c->r->failed) {
			if (!c->r->failed)
				lq_error(c, line, "%s", "filter failed");
			return c->r->code;
		}
	}
	return 0;
}

/* ---- conditions ---- */

static int contains(struct lq_ctx *c, const struct lq_val *l, const struct lq_val *r)
{
	if (l->t == LQ_STR) {
		if (r->t == LQ_NIL)
			return 0;
		struct lq_val s = lq_to_str(c, r);
		if (s.s.n == 0)
			return 1;
		if (s.s.n > l->s.n)
			return 0;
		return memmem(l->s.p, l->s.n, s.s.p, s.s.n) != NULL;
	}
	if (l->t == LQ_JSON && json_is_array(l->j)) {
		for (size_t i = 0; i < json_array_size(l->j); i++) {
			struct lq_val e = lq_from_json(json_array_get(l->j, i));
			if (r->t != LQ_NIL && lq_equal(&e, r))
				return 1;
		}
		return 0;
	}
	if (l->t == LQ_JSON && r->t == LQ_STR)
		return json_object_getn(l->j, r->s.p, r->s.n) != NULL;
	if (l->t == LQ_RANGE && (r->t == LQ_INT))
		return r->i >= l->r.lo && r->i <= l->r.hi;
	return 0;
}

static const char *type_name(const struct lq_val *v)
{
	switch (v->t) {
	case LQ_NIL:
		return "nil";
	case LQ_BOOL:
		return v->b ? "true" : "false";
	case LQ_INT:
		return "Integer";
	case LQ_FLOAT:
		return "Float";
	case LQ_STR:
		return "String";
	case LQ_JSON:
		return json_is_array(v->j) ? "Array" : "Hash";
	case LQ_RANGE:
		return "Range";
	default:
		return "Object";
	}
}

static int cmp1(struct lq_ctx *c, const struct lq_cond *k, int *res, int line)
{
	struct lq_val l, r;
	if (eval(c, k->l, &l, line))
		return c->r->code;
	if (k->op == LQC_NONE) {
		*res = lq_truthy(&l);
		return 0;
	}
	if (eval(c, k->r, &r, line))
		return c->r->code;
	switch (k->op) {
	case LQC_EQ:
		*res = lq_equal(&l, &r);
		return 0;
	case LQC_NE:
		*res = !lq_equal(&l, &r);
		return 0;
	case LQC_CONTAINS:
		*res = contains(c, &l, &r);
		return 0;
	default:
		break;
	}
	int o = lq_compare(&l, &r);
	if (o == -2) {
		if (l.t == LQ_NIL || r.t == LQ_NIL || l.t == LQ_JSON || r.t == LQ_JSON ||
		    l.t == LQ_BOOL || r.t == LQ_BOOL || l.t == LQ_EMPTY || r.t == LQ_EMPTY ||
		    l.t == LQ_BLANK || r.t == LQ_BLANK) {
			*res = 0;
			return 0;
		}
		return lq_error(c, line, "comparison of %s with %s failed", type_name(&l),
		                type_name(&r));
	}
	switch (k->op) {
	case LQC_LT:
		*res = o < 0;
		break;
	case LQC_GT:
		*res = o > 0;
		break;
	case LQC_LE:
		*res = o <= 0;
		break;
	default:
		*res = o >= 0;
		break;
	}
	return 0;
}

/* `a and b or c` is `a and (b or c)`: Liquid joins conditions from the right. */
static int cond(struct lq_ctx *c, const struct lq_cond *k, int *res, int line)
{
	int v;
	if (cmp1(c, k, &v, line))
		return c->r->code;
	if (!k->next || !k->join) {
		*res = v;
		return 0;
	}
	int rest;
	if (cond(c, k->next, &rest, line))
		return c->r->code;
	*res = k->join == 1 ? (v && rest) : (v || rest);
	return 0;
}

/* ---- loops ---- */

struct coll {
	struct lq_val v;
	int64_t len;
	int kind; /* 0 array, 1 range, 2 materialised */
	struct lq_val *items;
};

static struct lq_val coll_get(const struct coll *k, int64_t i)
{
	if (k->kind == 1)
		return lq_int(k->v.r.lo + i);
	if (k->kind == 0)
		return lq_from_json(json_array_get(k->v.j, (size_t)i));
	return k->items[i];
}

static void coll_make(struct lq_ctx *c, const struct lq_val *v, struct coll *k)
{
	memset(k, 0, sizeof *k);
	k->v = *v;
	if (v->t == LQ_RANGE) {
		k->kind = 1;
		k->len = v->r.hi >= v->r.lo ? v->r.hi - v->r.lo + 1 : 0;
	} else if (v->t == LQ_JSON && json_is_array(v->j)) {
		k->len = (int64_t)json_array_size(v->j);
	} else if (v->t == LQ_JSON || v->t == LQ_STR) {
		k->kind = 2;
		k->len = (int64_t)lq_elements(c, v, &k->items);
	}
}

static struct lq_counter *counter(struct lq_counter **list, struct lq_ctx *c, const void *key,
                                  const char *skey, size_t sklen)
{
	for (struct lq_counter *k = *list; k; k = k->next)
		if (skey ? (k->skey && k->sklen == sklen && memcmp(k->skey, skey, sklen) == 0)
		         : k->key == key)
			return k;
	struct lq_counter *k = lq_alloc(&c->r->arena, sizeof *k);
	memset(k, 0, sizeof *k);
	k->key = key;
	k->skey = skey;
	k->sklen = sklen;
	k->next = *list;
	*list = k;
	return k;
}

static int slice_bounds(struct lq_ctx *c, const struct lq_node *n, int64_t len, int64_t *from,
                        int64_t *to)
{
	int64_t f = 0, lim = -1;
	struct lq_val v;
	if (n->loop.offset_continue) {
		struct lq_counter *k =
		    counter(&c->offsets, c, NULL, n->loop.coll_key, strlen(n->loop.coll_key));
		f = k->n;
	} else if (n->loop.offset) {
		if (eval(c, n->loop.offset, &v, n->line))
			return c->r->code;
		if (v.t != LQ_NIL && lq_to_int(&v, &f))
			return lq_error(c, n->line, "invalid integer");
	}
	if (n->loop.limit) {
		if (eval(c, n->loop.limit, &v, n->line))
			return c->r->code;
		if (v.t != LQ_NIL && lq_to_int(&v, &lim))
			return lq_error(c, n->line, "invalid integer");
		if (v.t == LQ_NIL)
			lim = -1;
	}
	if (f < 0)
		f = 0;
	int64_t t = lim >= 0 ? f + lim : len;
	if (t > len)
		t = len;
	if (f > len)
		f = len;
	if (t < f)
		t = f;
	*from = f;
	*to = t;
	return 0;
}

static int render_for(struct lq_ctx *c, const struct lq_node *n)
{
	struct lq_val cv;
	if (eval(c, n->loop.coll, &cv, n->line))
		return c->r->code;
	struct coll k;
	coll_make(c, &cv, &k);
	if (c->r->failed)
		return c->r->code;
	int64_t from, to;
	if (slice_bounds(c, n, k.len, &from, &to))
		return c->r->code;
	if (n->loop.offset_continue || 1) {
		struct lq_counter *oc =
		    counter(&c->offsets, c, NULL, n->loop.coll_key, strlen(n->loop.coll_key));
		oc->n = to;
	}
	int64_t cnt = to - from;
	if (cnt <= 0)
		return render_block(c, &n->loop.els);
	struct lq_loop loop = {.length = cnt, .parent = c->loop, .name = n->loop.coll_key};
	struct lq_val lv = {.t = LQ_LOOP};
	lv.loop = &loop;
	struct lq_var fl = {.name = "forloop", .nlen = 7, .v = lv, .next = c->scope};
	struct lq_var item = {.name = n->loop.var, .nlen = n->loop.vlen, .next = &fl};
	struct lq_var *saved_scope = c->scope;
	const struct lq_loop *saved_loop = c->loop;
	c->scope = &item;
	c->loop = &loop;
	int rc = 0;
	for (int64_t i = 0; i < cnt; i++) {
		if ((rc = iterate(c)))
			break;
		loop.index0 = i;
		item.v = coll_get(&k, n->loop.reversed ? to - 1 - i : from + i);
		if ((rc = render_block(c, &n->loop.body)))
			break;
		if (c->interrupt) {
			int brk = c->interrupt == LQ_BREAK;
			c->interrupt = 0;
			if (brk)
				break;
		}
	}
	c->scope = saved_scope;
	c->loop = saved_loop;
	return rc;
}

static void out_str(struct lq_ctx *c, const char *s)
{
	lq_buf_add(c->r->out, s, strlen(s));
}

static int render_tablerow(struct lq_ctx *c, const struct lq_node *n)
{
	struct lq_val cv;
	if (eval(c, n->loop.coll, &cv, n->line))
		return c->r->code;
	struct coll k;
	coll_make(c, &cv, &k);
	if (c->r->failed)
		return c->r->code;
	int64_t from, to, cols = 0;
	if (slice_bounds(c, n, k.len, &from, &to))
		return c->r->code;
	if (n->loop.cols) {
		struct lq_val v;
		if (eval(c, n->loop.cols, &v, n->line))
			return c->r->code;
		if (v.t != LQ_NIL && lq_to_int(&v, &cols))
			return lq_error(c, n->line, "invalid integer");
	}
	int64_t cnt = to - from;
	struct lq_loop loop = {.length = cnt, .cols = cols, .tablerow = 1, .row = 1};
	struct lq_val lv = {.t = LQ_LOOP};
	lv.loop = &loop;
	struct lq_var fl = {.name = "tablerowloop", .nlen = 12, .v = lv, .next = c->scope};
	struct lq_var item = {.name = n->loop.var, .nlen = n->loop.vlen, .next = &fl};
	struct lq_var *saved = c->scope;
	c->scope = &item;
	out_str(c, "<tr class=\"row1\">\n");
	int rc = 0;
	char tmp[64];
	for (int64_t i = 0; i < cnt; i++) {
		if ((rc = iterate(c)))
			break;
		loop.index0 = i;
		item.v = coll_get(&k, from + i);
		int m =
		    snprintf(tmp, sizeof tmp, "<td class=\"col%lld\">", (long long)loop.col0 + 1);
		lq_buf_add(c->r->out, tmp, (size_t)m);
		if ((rc = render_block(c, &n->loop.body)))
			break;
		out_str(c, "</td>");
		if (c->interrupt) {
			int brk = c->interrupt == LQ_BREAK;
			c->interrupt = 0;
			if (brk)
				break;
		}
		if (loop.col0 + 1 == cols && i != cnt - 1) {
			m = snprintf(tmp, sizeof tmp, "</tr>\n<tr class=\"row%lld\">",
			             (long long)loop.row + 1);
			lq_buf_add(c->r->out, tmp, (size_t)m);
		}
		if (loop.col0 + 1 == cols) {
			loop.col0 = 0;
			loop.row++;
		} else {
			loop.col0++;
		}
	}
	c->scope = saved;
	if (!rc)
		out_str(c, "</tr>\n");
	return rc;
}

/* ---- partials ---- */

static int load_partial(struct lq_ctx *c, const struct lq_node *n, const char *name,
                        const struct ng_liquid_tmpl **out)
{
	const struct ng_liquid_loader *ld = c->r->o ? c->r->o->loader : NULL;
	if (!ld)
		return lq_error(c, n->line, "Could not find partial '%s' (no partials here)", name);
	char err[512] = "";
	int rc = ld->load(ld->ud, name, out, err, sizeof err);
	if (rc == -ENOENT)
		return lq_error(c, n->line, "Could not find partial '%s'", name);
	if (rc) {
		struct lq_render *r = c->r;
		r->failed = 1;
		r->code = -EINVAL;
		snprintf(r->err, r->errlen, "%s", err);
		return r->code;
	}
	return 0;
}

static const char *bind_name(const char *name, size_t *len)
{
	const char *s = strrchr(name, '/');
	s = s ? s + 1 : name;
	*len = strlen(s);
	return s;
}

static int render_partial_body(struct lq_ctx *c, const struct ng_liquid_tmpl *t)
{
	const struct ng_liquid_tmpl *saved = c->tmpl;
	uint64_t saved_it = c->tmpl_iterations;
	c->tmpl = t;
	c->tmpl_iterations = 0;
	int rc = render_block(c, &t->root);
	c->tmpl = saved;
	c->tmpl_iterations = saved_it;
	return rc;
}

static int render_include(struct lq_ctx *c, const struct lq_node *n)
{
	if (c->in_render)
		return lq_error(c, n->line, "include usage is not allowed in this context");
	struct lq_val nv;
	if (eval(c, n->partial.tname, &nv, n->line))
		return c->r->code;
	if (nv.t != LQ_STR)
		return lq_error(c, n->line, "Illegal template name");
	char *name = lq_strndup(&c->r->arena, nv.s.p, nv.s.n);
	if (c->r->depth >= c->r->lim.max_depth)
		return lq_error(c, n->line, "Nesting too deep");
	const struct ng_liquid_tmpl *t;
	if (load_partial(c, n, name, &t))
		return c->r->code;
	struct lq_var *saved = c->scope;
	/* Arguments see the ones before them. */
	for (int i = 0; i < n->partial.nargs; i++) {
		struct lq_var *v = lq_alloc(&c->r->arena, sizeof *v);
		v->name = n->partial.argn[i];
		v->nlen = strlen(v->name);
		if (eval(c, n->partial.argv[i], &v->v, n->line)) {
			c->scope = saved;
			return c->r->code;
		}
		v->next = c->scope;
		c->scope = v;
	}
	struct lq_var bind = {0};
	if (n->partial.alias) {
		bind.name = n->partial.alias;
		bind.nlen = n->partial.alen;
	} else {
		bind.name = bind_name(name, &bind.nlen);
	}
	int rc = 0;
	c->r->depth++;
	if (n->partial.with) {
		struct lq_val wv;
		if (eval(c, n->partial.with, &wv, n->line)) {
			c->r->depth--;
			c->scope = saved;
			return c->r->code;
		}
		bind.next = c->scope;
		c->scope = &bind;
		if (n->partial.is_for && wv.t == LQ_JSON && json_is_array(wv.j)) {
			for (size_t i = 0; i < json_array_size(wv.j); i++) {
				if ((rc = iterate(c)))
					break;
				bind.v = lq_from_json(json_array_get(wv.j, i));
				if ((rc = render_partial_body(c, t)) || c->interrupt)
					break;
			}
		} else {
			bind.v = wv;
			rc = render_partial_body(c, t);
		}
	} else {
		rc = render_partial_body(c, t);
	}
	c->r->depth--;
	c->scope = saved;
	return rc;
}

static int render_render(struct lq_ctx *c, const struct lq_node *n)
{
	const char *name = n->partial.tname->lit.s.p;
	if (c->r->depth >= c->r->lim.max_depth)
		return lq_error(c, n->line, "Nesting too deep");
	const struct ng_liquid_tmpl *t;
	if (load_partial(c, n, name, &t))
		return c->r->code;
	/* Arguments are evaluated in the caller's scope, independently of each other. */
	struct lq_var *args = NULL;
	for (int i = 0; i < n->partial.nargs; i++) {
		struct lq_var *v = lq_alloc(&c->r->arena, sizeof *v);
		v->name = n->partial.argn[i];
		v->nlen = strlen(v->name);
		if (eval(c, n->partial.argv[i], &v->v, n->line))
			return c->r->code;
		v->next = args;
		args = v;
	}
	struct lq_val wv = lq_nil();
	int has_with = n->partial.with != NULL;
	if (has_with && eval(c, n->partial.with, &wv, n->line))
		return c->r->code;
	size_t blen;
	const char *bname = n->partial.alias ? n->partial.alias : bind_name(name, &blen);
	if (n->partial.alias)
		blen = n->partial.alen;
	struct coll k = {0};
	int loop =
	    n->partial.is_for && (wv.t == LQ_RANGE || (wv.t == LQ_JSON && json_is_array(wv.j)));
	if (loop)
		coll_make(c, &wv, &k);
	int64_t count = loop ? k.len : 1;
	struct lq_loop fl = {.length = count};
	int rc = 0;
	c->r->depth++;
	for (int64_t i = 0; i < count; i++) {
		struct lq_ctx sub = {.r = c->r, .env = c->env, .tmpl = t, .in_render = 1};
		struct lq_var bind = {.name = bname, .nlen = blen, .v = wv, .next = args};
		struct lq_var flv = {.name = "forloop", .nlen = 7};
		sub.scope = args;
		if (has_with) {
			sub.scope = &bind;
			if (loop) {
				if ((rc = iterate(c)))
					break;
				bind.v = coll_get(&k, i);
				fl.index0 = i;
				flv.v.t = LQ_LOOP;
				flv.v.loop = &fl;
				flv.next = &bind;
				sub.scope = &flv;
			}
		}
		if ((rc = render_block(&sub, &t->root)))
			break;
	}
	c->r->depth--;
	return rc;
}

/* ---- nodes ---- */

static int render_node(struct lq_ctx *c, const struct lq_node *n)
{
	struct lq_render *r = c->r;
	switch (n->kind) {
	case LQN_TEXT:
		lq_buf_add(r->out, n->text.p, n->text.n);
		return check_out(c);
	case LQN_OUTPUT: {
		struct lq_val v;
		if (eval_filtered(c, &n->out, &v, n->line))
			return r->code;
		lq_buf_val(r->out, &v);
		return check_out(c);
	}
	case LQN_ASSIGN: {
		struct lq_val v;
		if (eval_filtered(c, &n->assign.val, &v, n->line))
			return r->code;
		set_assign(c, n->assign.name, n->assign.nlen, v);
		return 0;
	}
	case LQN_CAPTURE: {
		struct ng_liquid_buf *saved = r->out;
		struct ng_liquid_buf tmp = {0};
		r->out = &tmp;
		int rc = render_block(c, &n->assign.body);
		r->out = saved;
		if (!rc) {
			char *s = lq_strndup(&r->arena, tmp.s ? tmp.s : "", tmp.len);
			set_assign(c, n->assign.name, n->assign.nlen, lq_str(s, tmp.len));
			if (r->arena.used > r->lim.max_output * 4)
				rc = lq_limit(c, "memory");
		}
		ng_liquid_buf_free(&tmp);
		return rc;
	}
	case LQN_IF:
		for (const struct lq_branch *b = n->cond.branches; b; b = b->next) {
			int v = 1;
			if (b->cond && cond(c, b->cond, &v, n->line))
				return r->code;
			if (b->negate)
				v = !v;
			if (v)
				return render_block(c, &b->body);
		}
		return 0;
	case LQN_CASE: {
		struct lq_val s;
		if (eval(c, n->cond.subject, &s, n->line))
			return r->code;
		int matched = 0;
		for (const struct lq_branch *b = n->cond.branches; b; b = b->next) {
			if (!b->when) {
				if (!matched && render_block(c, &b->body))
					return r->code;
				continue;
			}
			for (int i = 0; i < b->nwhen; i++) {
				struct lq_val w;
				if (eval(c, b->when[i], &w, n->line))
					return r->code;
				if (lq_equal(&s, &w)) {
					matched = 1;
					if (render_block(c, &b->body))
						return r->code;
					break;
				}
			}
			if (c->interrupt)
				return 0;
		}
		return 0;
	}
	case LQN_FOR:
		return render_for(c, n);
	case LQN_TABLEROW:
		return render_tablerow(c, n);
	case LQN_CYCLE: {
		struct lq_counter *k;
		if (n->cycle.group) {
			struct lq_val g;
			if (eval(c, n->cycle.group, &g, n->line))
				return r->code;
			struct lq_val gs = lq_to_str(c, &g);
			char *key = lq_alloc(&r->arena, gs.s.n + 2);
			key[0] = 'g';
			memcpy(key + 1, gs.s.p, gs.s.n);
			k = counter(&c->cycles, c, NULL, key, gs.s.n + 1);
		} else if (n->cycle.key) {
			k = counter(&c->cycles, c, NULL, n->cycle.key, strlen(n->cycle.key));
		} else {
			k = counter(&c->cycles, c, n, NULL, 0);
		}
		struct lq_val v;
		if (eval(c, n->cycle.vals[k->n % n->cycle.nvals], &v, n->line))
			return r->code;
		k->n++;
		lq_buf_val(r->out, &v);
		return check_out(c);
	}
	case LQN_INCREMENT:
	case LQN_DECREMENT: {
		struct lq_var *v = find(c->counters, n->counter.name, n->counter.nlen);
		if (!v) {
			v = lq_alloc(&r->arena, sizeof *v);
			v->name = n->counter.name;
			v->nlen = n->counter.nlen;
			v->v = lq_int(0);
			v->next = c->counters;
			c->counters = v;
		}
		if (n->kind == LQN_INCREMENT) {
			lq_buf_val(r->out, &v->v);
			v->v.i++;
		} else {
			v->v.i--;
			lq_buf_val(r->out, &v->v);
		}
		return check_out(c);
	}
	case LQN_BREAK:
		c->interrupt = LQ_BREAK;
		return 0;
	case LQN_CONTINUE:
		c->interrupt = LQ_CONTINUE;
		return 0;
	case LQN_INCLUDE:
		return render_include(c, n);
	case LQN_RENDER:
		return render_render(c, n);
	default:
		return 0;
	}
}

static int render_block(struct lq_ctx *c, const struct lq_block *b)
{
	for (const struct lq_node *n = b->first; n; n = n->next) {
		if (tick(c))
			return c->r->code;
		if (render_node(c, n))
			return c->r->code ? c->r->code : -EINVAL;
		if (c->interrupt)
			return 0;
	}
	return 0;
}

int ng_liquid_render(const struct ng_liquid_tmpl *t, const json_t *data,
                     const struct ng_liquid_render_opts *o, struct ng_liquid_buf *out, char *err,
                     size_t errlen)
{
	static const struct ng_liquid_limits defaults = {0};
	struct lq_render r = {0};
	r.out = out;
	r.o = o;
	r.lim = o && o->limits ? *o->limits : defaults;
	if (!r.lim.max_output)
		r.lim.max_output = 1 << 20;
	if (!r.lim.max_iterations)
		r.lim.max_iterations = 1000000;
	if (!r.lim.max_depth)
		r.lim.max_depth = 100;
	if (!r.lim.max_ms)
		r.lim.max_ms = 1000;
	r.deadline_ns = mono_ns() + (uint64_t)r.lim.max_ms * 1000000u;
	r.now = o && o->now ? o->now : (int64_t)time(NULL);
	r.err = err;
	r.errlen = errlen;
	if (errlen)
		err[0] = 0;
	out->len = 0;
	lq_buf_add(out, "", 0);
	/* The first few KiB of the arena come from the stack: most renders never call malloc. */
	char first[8192] __attribute__((aligned(16)));
	r.arena.p = first;
	r.arena.end = first + sizeof first;
	struct lq_ctx c = {.r = &r, .env = data, .tmpl = t};
	for (size_t i = 0; o && i < o->nvars; i++)
		set_assign(&c, o->vars[i].name, strlen(o->vars[i].name),
		           lq_str(o->vars[i].value, o->vars[i].len));
	int rc = render_block(&c, &t->root);
	if (!rc && r.failed)
		rc = r.code;
	for (size_t i = 0; i < r.nowned; i++)
		json_decref(r.owned[i]);
	free(r.owned);
	ng_liquid_buf_free(&r.scratch);
	lq_arena_free(&r.arena);
	return rc;
}
