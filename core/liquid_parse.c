/*
 * liquid_parse.c — parses Liquid source into the compiled form (struct ng_liquid_tmpl): a tree of
 * nodes and expressions allocated in the template's arena, filters resolved to functions, every
 * node carrying its line for error messages. Syntax errors name line and column.
 */
#include "liquid_int.h"
#include "liquid_lex.h"
#include "ng.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct parser {
	struct ng_liquid_tmpl *t;
	struct lq_arena *a;
	const struct ng_liquid_parse_opts *o;
	char *err;
	size_t errlen;
	int failed;
	int depth;
	const char **partials;
	int *partial_lines;
	size_t npartials, cappartials;
};

/* Expression parsing state over one tag's markup. */
struct xp {
	struct parser *ps;
	struct lq_xlex x;
	struct lq_xtok cur;
	int line, col;
	const char *markup;
	size_t mlen;
};

static int perr(struct parser *ps, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int perr(struct parser *ps, int line, int col, const char *fmt, ...)
{
	if (ps->failed)
		return -EINVAL;
	ps->failed = 1;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (ps->o && ps->o->name)
		snprintf(ps->err, ps->errlen, "%s:%d:%d: Liquid syntax error (line %d): %s",
		         ps->o->name, line, col, line, msg);
	else
		snprintf(ps->err, ps->errlen, "Liquid syntax error (line %d, column %d): %s", line,
		         col, msg);
	return -EINVAL;
}

static void *alloc(struct parser *ps, size_t n)
{
	void *p = lq_alloc(ps->a, n);
	memset(p, 0, n);
	return p;
}

/* ---- expressions ---- */

static int xnext(struct xp *x)
{
	if (lq_xlex(&x->x, &x->cur) != 0) {
		char c = *x->x.bad;
		if (c == '\'' || c == '"')
			return perr(x->ps, x->line, x->col,
			            "Unexpected character %c in \"%.*s\" (an unterminated string)",
			            c, (int)x->mlen, x->markup);
		return perr(x->ps, x->line, x->col, "Unexpected character %c in \"%.*s\"", c,
		            (int)x->mlen, x->markup);
	}
	return 0;
}

static int xinit(struct xp *x, struct parser *ps, const char *p, size_t n, int line, int col)
{
	memset(x, 0, sizeof *x);
	x->ps = ps;
	x->x.p = p;
	x->x.end = p + n;
	x->line = line;
	x->col = col;
	x->markup = p;
	x->mlen = n;
	return xnext(x);
}

static int xis_id(const struct xp *x, const char *s)
{
	size_t n = strlen(s);
	return x->cur.kind == LQX_ID && x->cur.n == n && memcmp(x->cur.p, s, n) == 0;
}

static const char *tokname(int k)
{
	static const char *const names[] = {
	    "end_of_string", "id",          "string",       "number",     "number",      "dot",
	    "dotdot",        "open_square", "close_square", "open_round", "close_round", "comma",
	    "colon",         "pipe",        "comparison",   "equal"};
	return k >= 0 && k < (int)NG_ARRAY_LEN(names) ? names[k] : "token";
}

static int xexpect(struct xp *x, int kind)
{
	if (x->cur.kind != kind)
		return perr(x->ps, x->line, x->col, "Expected %s but found %s in \"%.*s\"",
		            tokname(kind), tokname(x->cur.kind), (int)x->mlen, x->markup);
	return xnext(x);
}

static struct lq_expr *xexpr(struct xp *x);

static struct lq_expr *lit(struct parser *ps, struct lq_val v)
{
	struct lq_expr *e = alloc(ps, sizeof *e);
	e->kind = LQE_LIT;
	e->lit = v;
	return e;
}

static int parse_path(struct xp *x, struct lq_expr *e)
{
	struct lq_lookup tmp[64];
	int n = 0;
	for (;;) {
		if (x->cur.kind == LQX_DOT) {
			if (xnext(x))
				return -1;
			if (x->cur.kind != LQX_ID)
				return xexpect(x, LQX_ID), -1;
			if (n == 64)
				return perr(x->ps, x->line, x->col, "too many lookups"), -1;
			memset(&tmp[n], 0, sizeof tmp[n]);
			tmp[n].key = lq_strndup(x->ps->a, x->cur.p, x->cur.n);
			tmp[n].klen = x->cur.n;
			n++;
			if (xnext(x))
				return -1;
		} else if (x->cur.kind == LQX_LBRACK) {
			if (xnext(x))
				return -1;
			struct lq_expr *i = xexpr(x);
			if (!i || xexpect(x, LQX_RBRACK))
				return -1;
			if (n == 64)
				return perr(x->ps, x->line, x->col, "too many lookups"), -1;
			memset(&tmp[n], 0, sizeof tmp[n]);
			if (i->kind == LQE_LIT && i->lit.t == LQ_STR) {
				tmp[n].key = i->lit.s.p;
				tmp[n].klen = i->lit.s.n;
			} else {
				tmp[n].idx = i;
			}
			n++;
		} else {
			break;
		}
	}
	if (n) {
		e->path = alloc(x->ps, sizeof *e->path * (size_t)n);
		memcpy(e->path, tmp, sizeof *e->path * (size_t)n);
		e->npath = n;
	}
	if (x->cur.kind == LQX_LPAREN)
		return perr(x->ps, x->line, x->col,
		            "syntax error: Liquid has no method calls in \"%.*s\"", (int)x->mlen,
		            x->markup),
		       -1;
	return 0;
}

static struct lq_expr *xexpr(struct xp *x)
{
	struct parser *ps = x->ps;
	if (ps->depth++ > 100) {
		perr(ps, x->line, x->col, "expression nested too deep");
		return NULL;
	}
	struct lq_expr *e = NULL;
	struct lq_xtok t = x->cur;
	switch (t.kind) {
	case LQX_STR:
		e = lit(ps, lq_str(lq_strndup(ps->a, t.p, t.n), t.n));
		if (xnext(x))
			return NULL;
		break;
	case LQX_INT:
	case LQX_FLOAT: {
		char tmp[64];
		size_t n = t.n < sizeof tmp - 1 ? t.n : sizeof tmp - 1;
		memcpy(tmp, t.p, n);
		tmp[n] = 0;
		e = lit(ps, t.kind == LQX_INT ? lq_int(strtoll(tmp, NULL, 10))
		                              : lq_float(strtod(tmp, NULL)));
		if (xnext(x))
			return NULL;
		break;
	}
	case LQX_LPAREN: {
		if (xnext(x))
			return NULL;
		struct lq_expr *lo = xexpr(x);
		if (!lo || xexpect(x, LQX_DOTDOT))
			return NULL;
		struct lq_expr *hi = xexpr(x);
		if (!hi || xexpect(x, LQX_RPAREN))
			return NULL;
		e = alloc(ps, sizeof *e);
		e->kind = LQE_RANGE;
		e->lo = lo;
		e->hi = hi;
		break;
	}
	case LQX_LBRACK: {
		if (xnext(x))
			return NULL;
		struct lq_expr *i = xexpr(x);
		if (!i || xexpect(x, LQX_RBRACK))
			return NULL;
		e = alloc(ps, sizeof *e);
		e->kind = LQE_VAR;
		if (i->kind == LQE_LIT && i->lit.t == LQ_STR) {
			e->name = i->lit.s.p;
			e->nlen = i->lit.s.n;
		} else {
			e->root_idx = i;
		}
		if (parse_path(x, e))
			return NULL;
		break;
	}
	case LQX_ID: {
		if (xnext(x))
			return NULL;
		if (x->cur.kind != LQX_DOT && x->cur.kind != LQX_LBRACK) {
#define KW(s) (t.n == sizeof(s) - 1 && memcmp(t.p, s, t.n) == 0)
			if (KW("true") || KW("false")) {
				e = lit(ps, lq_bool(KW("true")));
				break;
			}
			if (KW("nil") || KW("null")) {
				e = lit(ps, lq_nil());
				break;
			}
			if (KW("empty") || KW("blank")) {
				struct lq_val v = {.t = KW("empty") ? LQ_EMPTY : LQ_BLANK};
				e = lit(ps, v);
				break;
			}
#undef KW
		}
		e = alloc(ps, sizeof *e);
		e->kind = LQE_VAR;
		e->name = lq_strndup(ps->a, t.p, t.n);
		e->nlen = t.n;
		if (parse_path(x, e))
			return NULL;
		break;
	}
	default:
		perr(ps, x->line, x->col, "Expected id but found %s in \"%.*s\"", tokname(t.kind),
		     (int)x->mlen, x->markup);
		return NULL;
	}
	ps->depth--;
	return e;
}

static int parse_filters(struct xp *x, struct lq_filtered *f)
{
	struct lq_filter tmp[64];
	int n = 0;
	while (x->cur.kind == LQX_PIPE) {
		if (xnext(x))
			return -1;
		/* Lax, as liquid-ruby: `a || f` is `a | f`, and a trailing `|` does nothing. */
		if (x->ps->o && x->ps->o->lax &&
		    (x->cur.kind == LQX_PIPE || x->cur.kind == LQX_EOS))
			continue;
		if (x->cur.kind != LQX_ID)
			return xexpect(x, LQX_ID), -1;
		if (n == 64)
			return perr(x->ps, x->line, x->col, "too many filters"), -1;
		struct lq_filter *fl = &tmp[n++];
		memset(fl, 0, sizeof *fl);
		fl->name = lq_strndup(x->ps->a, x->cur.p, x->cur.n);
		fl->fn = lq_filter_lookup(x->cur.p, x->cur.n);
		if (!fl->fn && x->ps->o && x->ps->o->strict_filters)
			return perr(x->ps, x->line, x->col, "Unknown filter '%s'", fl->name), -1;
		if (xnext(x))
			return -1;
		if (x->cur.kind != LQX_COLON)
			continue;
		struct lq_expr *args[32], *kws[32];
		const char *kwn[32];
		int na = 0, nk = 0;
		do {
			if (xnext(x))
				return -1;
			/* name: value is a keyword argument */
			if (x->cur.kind == LQX_ID) {
				struct lq_xlex save = x->x;
				struct lq_xtok cur = x->cur;
				struct lq_xtok peek;
				if (lq_xlex(&x->x, &peek) == 0 && peek.kind == LQX_COLON) {
					if (nk == 32)
						return perr(x->ps, x->line, x->col,
						            "too many arguments"),
						       -1;
					kwn[nk] = lq_strndup(x->ps->a, cur.p, cur.n);
					if (xnext(x))
						return -1;
					if (!(kws[nk++] = xexpr(x)))
						return -1;
					continue;
				}
				x->x = save;
				x->cur = cur;
			}
			if (na == 32)
				return perr(x->ps, x->line, x->col, "too many arguments"), -1;
			if (!(args[na++] = xexpr(x)))
				return -1;
		} while (x->cur.kind == LQX_COMMA);
		if (na) {
			fl->args = alloc(x->ps, sizeof *fl->args * (size_t)na);
			memcpy(fl->args, args, sizeof *args * (size_t)na);
			fl->nargs = na;
		}
		if (nk) {
			fl->kwargs = alloc(x->ps, sizeof *fl->kwargs * (size_t)nk);
			memcpy(fl->kwargs, kws, sizeof *kws * (size_t)nk);
			fl->kwnames = alloc(x->ps, sizeof *fl->kwnames * (size_t)nk);
			memcpy(fl->kwnames, kwn, sizeof *kwn * (size_t)nk);
			fl->nkw = nk;
		}
	}
	if (n) {
		f->f = alloc(x->ps, sizeof *f->f * (size_t)n);
		memcpy(f->f, tmp, sizeof *tmp * (size_t)n);
		f->nf = n;
	}
	return 0;
}

static int xend(struct xp *x)
{
	if (x->cur.kind != LQX_EOS)
		return perr(x->ps, x->line, x->col, "syntax error: unexpected '%.*s' in \"%.*s\"",
		            (int)(x->cur.kind == LQX_STR ? x->cur.n + 2 : x->cur.n),
		            x->cur.kind == LQX_STR ? x->cur.p - 1 : x->cur.p, (int)x->mlen,
		            x->markup);
	return 0;
}

static int parse_filtered(struct parser *ps, const char *p, size_t n, int line, int col,
                          struct lq_filtered *f)
{
	struct xp x;
	if (xinit(&x, ps, p, n, line, col))
		return -1;
	if (x.cur.kind == LQX_EOS) {
		f->e = lit(ps, lq_nil());
		return 0;
	}
	if (!(f->e = xexpr(&x)) || parse_filters(&x, f) || xend(&x))
		return -1;
	return 0;
}

static struct lq_cond *parse_cond(struct xp *x)
{
	struct lq_cond *first = NULL, **tail = &first;
	for (;;) {
		struct lq_cond *c = alloc(x->ps, sizeof *c);
		if (!(c->l = xexpr(x)))
			return NULL;
		if (x->cur.kind == LQX_CMP || xis_id(x, "contains")) {
			const char *o = x->cur.p;
			size_t n = x->cur.n;
			if (xis_id(x, "contains"))
				c->op = LQC_CONTAINS;
			else if (n == 2 && o[0] == '=')
				c->op = LQC_EQ;
			else if (n == 2 && (o[0] == '!' || (o[0] == '<' && o[1] == '>')))
				c->op = LQC_NE;
			else if (n == 2 && o[0] == '<')
				c->op = LQC_LE;
			else if (n == 2)
				c->op = LQC_GE;
			else if (o[0] == '<')
				c->op = LQC_LT;
			else
				c->op = LQC_GT;
			if (xnext(x) || !(c->r = xexpr(x)))
				return NULL;
		}
		*tail = c;
		tail = &c->next;
		if (xis_id(x, "and"))
			c->join = 1;
		else if (xis_id(x, "or"))
			c->join = 2;
		else
			break;
		if (xnext(x))
			return NULL;
	}
	if (xend(x))
		return NULL;
	return first;
}

/* ---- blocks and tags ---- */

static int parse_block(struct parser *ps, struct lq_lex *l, struct lq_block *b,
                       const char *const *ends, const char *opener, struct lq_tok *endtok);

static int tag_name(const struct lq_tok *t, const char **name, size_t *nlen, const char **rest,
                    size_t *rlen)
{
	const char *p = t->p, *e = t->p + t->n;
	const char *q = p;
	if (q < e && *q == '#') {
		q++;
	} else {
		while (q < e && ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
		                 (*q >= '0' && *q <= '9') || *q == '_'))
			q++;
	}
	*name = p;
	*nlen = (size_t)(q - p);
	while (q < e && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
		q++;
	*rest = q;
	*rlen = (size_t)(e - q);
	return 0;
}

static int name_is(const char *n, size_t len, const char *s)
{
	return strlen(s) == len && memcmp(n, s, len) == 0;
}

static struct lq_node *node(struct parser *ps, int kind, int line)
{
	struct lq_node *n = alloc(ps, sizeof *n);
	n->kind = (uint8_t)kind;
	n->line = line;
	return n;
}

static void add_partial(struct parser *ps, const char *name, int line)
{
	for (size_t i = 0; i < ps->npartials; i++)
		if (strcmp(ps->partials[i], name) == 0)
			return;
	if (ps->npartials == ps->cappartials) {
		ps->cappartials = ps->cappartials ? ps->cappartials * 2 : 4;
		ps->partials = ng_xrealloc(ps->partials, ps->cappartials * sizeof *ps->partials);
		ps->partial_lines =
		    ng_xrealloc(ps->partial_lines, ps->cappartials * sizeof *ps->partial_lines);
	}
	ps->partial_lines[ps->npartials] = line;
	ps->partials[ps->npartials++] = name;
}

static int parse_for(struct parser *ps, struct lq_lex *l, const struct lq_tok *t, const char *m,
                     size_t mn, struct lq_node *nd, int tablerow)
{
	struct xp x;
	if (xinit(&x, ps, m, mn, t->line, t->col))
		return -1;
	if (x.cur.kind != LQX_ID)
		return perr(
		    ps, t->line, t->col,
		    "Syntax Error in 'for loop' - Valid syntax: for [item] in [collection]");
	nd->loop.var = lq_strndup(ps->a, x.cur.p, x.cur.n);
	nd->loop.vlen = x.cur.n;
	if (xnext(&x))
		return -1;
	if (!xis_id(&x, "in"))
		return perr(
		    ps, t->line, t->col,
		    "Syntax Error in 'for loop' - Valid syntax: for [item] in [collection]");
	if (xnext(&x))
		return -1;
	const char *cs = x.cur.p;
	if (!(nd->loop.coll = xexpr(&x)))
		return -1;
	const char *ce = x.cur.kind == LQX_EOS ? m + mn : x.cur.p;
	while (ce > cs && (ce[-1] == ' '))
		ce--;
	nd->loop.coll_key = ng_xasprintf("%s-%.*s", nd->loop.var, (int)(ce - cs), cs);
	{
		char *k = lq_strndup(ps->a, nd->loop.coll_key, strlen(nd->loop.coll_key));
		free((char *)nd->loop.coll_key);
		nd->loop.coll_key = k;
	}
	while (x.cur.kind != LQX_EOS) {
		if (x.cur.kind == LQX_COMMA) {
			if (xnext(&x))
				return -1;
			continue;
		}
		if (xis_id(&x, "reversed")) {
			nd->loop.reversed = 1;
			if (xnext(&x))
				return -1;
			continue;
		}
		int which = xis_id(&x, "limit")    ? 1
		            : xis_id(&x, "offset") ? 2
		            : xis_id(&x, "cols")   ? 3
		                                   : 0;
		if (!which)
			return perr(
			    ps, t->line, t->col,
			    "Invalid attribute in for loop. Valid attributes are limit and offset");
		if (xnext(&x) || xexpect(&x, LQX_COLON))
			return -1;
		if (which == 2 && xis_id(&x, "continue")) {
			nd->loop.offset_continue = 1;
			if (xnext(&x))
				return -1;
			continue;
		}
		struct lq_expr *e = xexpr(&x);
		if (!e)
			return -1;
		if (which == 1)
			nd->loop.limit = e;
		else if (which == 2)
			nd->loop.offset = e;
		else
			nd->loop.cols = e;
	}
	static const char *const fends[] = {"endfor", "else", NULL};
	static const char *const tends[] = {"endtablerow", NULL};
	static const char *const fend2[] = {"endfor", NULL};
	struct lq_tok end;
	if (parse_block(ps, l, &nd->loop.body, tablerow ? tends : fends,
	                tablerow ? "tablerow" : "for", &end))
		return -1;
	if (!tablerow && name_is(end.p, 4, "else") && end.n >= 4 && !(end.n > 4 && end.p[4] != ' '))
		if (parse_block(ps, l, &nd->loop.els, fend2, "for", &end))
			return -1;
	return 0;
}

static int parse_if(struct parser *ps, struct lq_lex *l, const struct lq_tok *t, const char *m,
                    size_t mn, struct lq_node *nd, int unless)
{
	static const char *const ends_if[] = {"endif", "elsif", "else", NULL};
	static const char *const ends_unless[] = {"endunless", "elsif", "else", NULL};
	const char *const *ends = unless ? ends_unless : ends_if;
	const char *endname = unless ? "endunless" : "endif";
	struct lq_branch **tail = &nd->cond.branches;
	int line = t->line, col = t->col;
	int is_else = 0;
	for (;;) {
		struct lq_branch *b = alloc(ps, sizeof *b);
		if (!is_else) {
			struct xp x;
			if (xinit(&x, ps, m, mn, line, col))
				return -1;
			if (x.cur.kind == LQX_EOS)
				return perr(
				    ps, line, col,
				    "Syntax Error in tag 'if' - Valid syntax: if [expression]");
			if (!(b->cond = parse_cond(&x)))
				return -1;
			b->negate = unless && tail == &nd->cond.branches;
		}
		*tail = b;
		tail = &b->next;
		struct lq_tok end;
		if (parse_block(ps, l, &b->body,
		                is_else ? (const char *const[]){endname, NULL} : ends,
		                unless ? "unless" : "if", &end))
			return -1;
		const char *en, *rest;
		size_t enl, rl;
		tag_name(&end, &en, &enl, &rest, &rl);
		if (name_is(en, enl, endname))
			return 0;
		is_else = name_is(en, enl, "else");
		m = rest;
		mn = rl;
		line = end.line;
		col = end.col;
	}
}

static int parse_case(struct parser *ps, struct lq_lex *l, const struct lq_tok *t, const char *m,
                      size_t mn, struct lq_node *nd)
{
	struct xp x;
	if (xinit(&x, ps, m, mn, t->line, t->col))
		return -1;
	if (!(nd->cond.subject = xexpr(&x)) || xend(&x))
		return -1;
	static const char *const ends[] = {"endcase", "when", "else", NULL};
	struct lq_block ignored = {0};
	struct lq_tok end;
	if (parse_block(ps, l, &ignored, ends, "case", &end))
		return -1;
	struct lq_branch **tail = &nd->cond.branches;
	for (;;) {
		const char *en, *rest;
		size_t enl, rl;
		tag_name(&end, &en, &enl, &rest, &rl);
		if (name_is(en, enl, "endcase"))
			return 0;
		struct lq_branch *b = alloc(ps, sizeof *b);
		if (name_is(en, enl, "when")) {
			struct lq_expr *vals[64];
			int n = 0;
			if (xinit(&x, ps, rest, rl, end.line, end.col))
				return -1;
			for (;;) {
				if (n == 64)
					return perr(ps, end.line, end.col,
					            "too many values in when");
				if (!(vals[n++] = xexpr(&x)))
					return -1;
				if (x.cur.kind == LQX_COMMA || xis_id(&x, "or")) {
					if (xnext(&x))
						return -1;
					continue;
				}
				break;
			}
			if (xend(&x))
				return -1;
			b->when = alloc(ps, sizeof *b->when * (size_t)n);
			memcpy(b->when, vals, sizeof *vals * (size_t)n);
			b->nwhen = n;
		}
		*tail = b;
		tail = &b->next;
		if (parse_block(ps, l, &b->body, ends, "case", &end))
			return -1;
	}
}

static int parse_partial(struct parser *ps, const struct lq_tok *t, const char *m, size_t mn,
                         struct lq_node *nd, int render)
{
	struct xp x;
	if (xinit(&x, ps, m, mn, t->line, t->col))
		return -1;
	if (render && x.cur.kind != LQX_STR)
		return perr(ps, t->line, t->col,
		            "Syntax error in tag 'render' - Template name must be a quoted string");
	if (!(nd->partial.tname = xexpr(&x)))
		return -1;
	if (nd->partial.tname->kind == LQE_LIT && nd->partial.tname->lit.t == LQ_STR)
		add_partial(ps, nd->partial.tname->lit.s.p, t->line);
	if (xis_id(&x, "with") || xis_id(&x, "for")) {
		nd->partial.is_for = xis_id(&x, "for");
		if (xnext(&x) || !(nd->partial.with = xexpr(&x)))
			return -1;
		if (xis_id(&x, "as")) {
			if (xnext(&x))
				return -1;
			if (x.cur.kind != LQX_ID)
				return xexpect(&x, LQX_ID);
			nd->partial.alias = lq_strndup(ps->a, x.cur.p, x.cur.n);
			nd->partial.alen = x.cur.n;
			if (xnext(&x))
				return -1;
		}
	}
	const char *names[64];
	struct lq_expr *vals[64];
	int n = 0;
	while (x.cur.kind != LQX_EOS) {
		if (x.cur.kind == LQX_COMMA) {
			if (xnext(&x))
				return -1;
			continue;
		}
		if (x.cur.kind != LQX_ID)
			return xexpect(&x, LQX_ID);
		if (n == 64)
			return perr(ps, t->line, t->col, "too many arguments");
		names[n] = lq_strndup(ps->a, x.cur.p, x.cur.n);
		if (xnext(&x) || xexpect(&x, LQX_COLON))
			return -1;
		if (!(vals[n++] = xexpr(&x)))
			return -1;
	}
	if (n) {
		nd->partial.argn = alloc(ps, sizeof *names * (size_t)n);
		memcpy(nd->partial.argn, names, sizeof *names * (size_t)n);
		nd->partial.argv = alloc(ps, sizeof *vals * (size_t)n);
		memcpy(nd->partial.argv, vals, sizeof *vals * (size_t)n);
		nd->partial.nargs = n;
	}
	return 0;
}

static int parse_cycle(struct parser *ps, const struct lq_tok *t, const char *m, size_t mn,
                       struct lq_node *nd)
{
	struct xp x;
	if (xinit(&x, ps, m, mn, t->line, t->col))
		return -1;
	struct lq_expr *vals[64];
	int n = 0;
	struct lq_expr *first = xexpr(&x);
	if (!first)
		return -1;
	if (x.cur.kind == LQX_COLON) {
		nd->cycle.group = first;
		if (xnext(&x))
			return -1;
		if (!(first = xexpr(&x)))
			return -1;
	}
	vals[n++] = first;
	while (x.cur.kind == LQX_COMMA) {
		if (xnext(&x))
			return -1;
		if (n == 64)
			return perr(ps, t->line, t->col, "too many cycle values");
		if (!(vals[n++] = xexpr(&x)))
			return -1;
	}
	if (xend(&x))
		return -1;
	nd->cycle.vals = alloc(ps, sizeof *vals * (size_t)n);
	memcpy(nd->cycle.vals, vals, sizeof *vals * (size_t)n);
	nd->cycle.nvals = n;
	int literal = 1;
	for (int i = 0; i < n; i++)
		if (vals[i]->kind != LQE_LIT)
			literal = 0;
	/* Unnamed cycles of literals share a counter with every cycle of the same values. */
	if (!nd->cycle.group && literal)
		nd->cycle.key = lq_strndup(ps->a, m, mn);
	return 0;
}

static int skip_comment(struct parser *ps, struct lq_lex *l, const struct lq_tok *open)
{
	int depth = 1;
	for (;;) {
		struct lq_tok t;
		if (lq_lex_next(l, &t))
			return perr(ps, t.line, t.col, "%s", l->err);
		if (t.kind == LQT_EOF)
			return perr(ps, open->line, open->col, "'comment' tag was never closed");
		if (t.kind != LQT_TAG)
			continue;
		const char *n, *r;
		size_t nl, rl;
		tag_name(&t, &n, &nl, &r, &rl);
		if (name_is(n, nl, "comment"))
			depth++;
		else if (name_is(n, nl, "endcomment") && --depth == 0)
			return 0;
		else if (name_is(n, nl, "raw") && !l->liquid) {
			const char *b;
			size_t bn;
			if (lq_lex_raw(l, &b, &bn))
				return perr(ps, t.line, t.col, "'raw' tag was never closed");
		}
	}
}

/* Parses one tag token into *out (NULL for tags that produce no node). */
static int parse_tag(struct parser *ps, struct lq_lex *l, const struct lq_tok *t,
                     struct lq_node **out)
{
	const char *n, *m;
	size_t nl, mn;
	tag_name(t, &n, &nl, &m, &mn);
	*out = NULL;
	struct lq_node *nd;
	int line = t->line, col = t->col;
	if (nl == 0)
		return perr(ps, line, col, "Unknown tag '%.*s'", (int)t->n, t->p);
	if (name_is(n, nl, "#"))
		return 0;
	if (name_is(n, nl, "assign")) {
		nd = node(ps, LQN_ASSIGN, line);
		const char *eq = memchr(m, '=', mn);
		if (!eq || (eq + 1 < m + mn && eq[1] == '='))
			return perr(
			    ps, line, col,
			    "Syntax Error in 'assign' - Valid syntax: assign [var] = [source]");
		const char *ve = eq;
		while (ve > m && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		if (ve == m)
			return perr(
			    ps, line, col,
			    "Syntax Error in 'assign' - Valid syntax: assign [var] = [source]");
		nd->assign.name = lq_strndup(ps->a, m, (size_t)(ve - m));
		nd->assign.nlen = (size_t)(ve - m);
		if (parse_filtered(ps, eq + 1, (size_t)(m + mn - eq - 1), line, col,
		                   &nd->assign.val))
			return -1;
		*out = nd;
		return 0;
	}
	if (name_is(n, nl, "echo")) {
		nd = node(ps, LQN_OUTPUT, line);
		if (parse_filtered(ps, m, mn, line, col, &nd->out))
			return -1;
		*out = nd;
		return 0;
	}
	if (name_is(n, nl, "capture")) {
		nd = node(ps, LQN_CAPTURE, line);
		size_t vn = 0;
		while (vn < mn && m[vn] != ' ')
			vn++;
		if (!vn)
			return perr(ps, line, col,
			            "Syntax Error in 'capture' - Valid syntax: capture [var]");
		const char *v = m;
		if (vn >= 2 && (v[0] == '\'' || v[0] == '"')) {
			v++;
			vn -= 2;
		}
		nd->assign.name = lq_strndup(ps->a, v, vn);
		nd->assign.nlen = vn;
		static const char *const ends[] = {"endcapture", NULL};
		struct lq_tok end;
		if (parse_block(ps, l, &nd->assign.body, ends, "capture", &end))
			return -1;
		*out = nd;
		return 0;
	}
	if (name_is(n, nl, "if") || name_is(n, nl, "unless")) {
		nd = node(ps, LQN_IF, line);
		if (parse_if(ps, l, t, m, mn, nd, n[0] == 'u'))
			return -1;
		*out = nd;
		return 0;
	}
	if (name_is(n, nl, "case")) {
		nd = node(ps, LQN_CASE, line);
		if (parse_case(ps, l, t, m, mn, nd))
			return -1;
		*out = nd;
		return 0;
	}
	if (name_is(n, nl, "for") || name_is(n, nl, "tablerow")) {
		int tr = n[0] == 't';
		nd = node(ps, tr ? LQN_TABLEROW : LQN_FOR, line);
		if (parse_for(ps, l, t, m, mn, nd, tr))
			return -1;
		*out = nd;
		return 0;
	}
	if (name_is(n, nl, "cycle")) {
		nd = node(ps, LQN_CYCLE, line);
		if (parse_cycle(ps, t, m, mn, nd))
			return -1;
		*out = nd;
		return 0;
	}
	if (name_is(n, nl, "increment") || name_is(n, nl, "decrement")) {
		nd = node(ps, n[0] == 'i' ? LQN_INCREMENT : LQN_DECREMENT, line);
		size_t vn = 0;
		while (vn < mn && m[vn] != ' ')
			vn++;
		nd->counter.name = lq_strndup(ps->a, m, vn);
		nd->counter.nlen = vn;
		*out = nd;
		return 0;
	}
	if (name_is(n, nl, "break") || name_is(n, nl, "continue")) {
		*out = node(ps, n[0] == 'b' ? LQN_BREAK : LQN_CONTINUE, line);
		return 0;
	}
	if (name_is(n, nl, "include") || name_is(n, nl, "render")) {
		int r = n[0] == 'r';
		nd = node(ps, r ? LQN_RENDER : LQN_INCLUDE, line);
		if (parse_partial(ps, t, m, mn, nd, r))
			return -1;
		*out = nd;
		return 0;
	}
	if (name_is(n, nl, "comment"))
		return skip_comment(ps, l, t);
	if (name_is(n, nl, "doc")) {
		for (;;) {
			struct lq_tok x;
			if (lq_lex_next(l, &x))
				return perr(ps, x.line, x.col, "%s", l->err);
			if (x.kind == LQT_EOF)
				return perr(ps, line, col, "'doc' tag was never closed");
			const char *a, *b;
			size_t an, bn;
			if (x.kind == LQT_TAG &&
			    (tag_name(&x, &a, &an, &b, &bn), name_is(a, an, "enddoc")))
				return 0;
		}
	}
	if (name_is(n, nl, "raw")) {
		if (l->liquid)
			return perr(ps, line, col, "'raw' is not allowed in the liquid tag");
		nd = node(ps, LQN_TEXT, line);
		if (lq_lex_raw(l, &nd->text.p, &nd->text.n))
			return perr(ps, line, col, "'raw' tag was never closed");
		*out = nd;
		return 0;
	}
	if (name_is(n, nl, "liquid")) {
		struct lq_lex sub = {0};
		sub.p = m;
		sub.end = m + mn;
		sub.line_start = m;
		sub.line = t->mline ? t->mline : line;
		for (const char *q = t->p; q < m; q++)
			sub.line += *q == '\n';
		/* The markup may start on the tag's line after "liquid". */
		sub.liquid = 1;
		struct lq_block b = {0};
		if (parse_block(ps, &sub, &b, NULL, NULL, NULL))
			return -1;
		*out = b.first; /* a chain of nodes */
		return 0;
	}
	return perr(ps, line, col, "Unknown tag '%.*s'", (int)nl, n);
}

static int is_end(const char *n, size_t nl, const char *const *ends)
{
	for (; ends && *ends; ends++)
		if (name_is(n, nl, *ends))
			return 1;
	return 0;
}

static int parse_block(struct parser *ps, struct lq_lex *l, struct lq_block *b,
                       const char *const *ends, const char *opener, struct lq_tok *endtok)
{
	struct lq_node **tail = &b->first;
	while (*tail)
		tail = &(*tail)->next;
	if (ps->depth++ > 200)
		return perr(ps, l->line, 1, "blocks nested too deep");
	for (;;) {
		struct lq_tok t;
		if (lq_lex_next(l, &t))
			return perr(ps, t.line, t.col, "%s", l->err);
		if (t.kind == LQT_EOF) {
			if (opener)
				return perr(ps, t.line, t.col, "'%s' tag was never closed", opener);
			ps->depth--;
			return 0;
		}
		struct lq_node *nd = NULL;
		if (t.kind == LQT_TEXT) {
			if (!t.n)
				continue;
			nd = node(ps, LQN_TEXT, t.line);
			nd->text.p = t.p;
			nd->text.n = t.n;
		} else if (t.kind == LQT_OUT) {
			nd = node(ps, LQN_OUTPUT, t.line);
			if (parse_filtered(ps, t.p, t.n, t.line, t.col, &nd->out))
				return -1;
		} else {
			const char *n, *r;
			size_t nl, rl;
			tag_name(&t, &n, &nl, &r, &rl);
			if (is_end(n, nl, ends)) {
				if (endtok)
					*endtok = t;
				ps->depth--;
				return 0;
			}
			if (nl > 3 && memcmp(n, "end", 3) == 0 && opener)
				return perr(ps, t.line, t.col,
				            "'%.*s' is not a valid delimiter for %s tags. use %s",
				            (int)nl, n, opener, ends[0]);
			if ((name_is(n, nl, "else") || name_is(n, nl, "elsif") ||
			     name_is(n, nl, "when")) &&
			    !opener)
				return perr(ps, t.line, t.col, "Unexpected outer '%.*s' tag",
				            (int)nl, n);
			if (parse_tag(ps, l, &t, &nd))
				return -1;
			if (!nd)
				continue;
		}
		*tail = nd;
		while (nd->next)
			nd = nd->next;
		tail = &nd->next;
	}
}

int ng_liquid_parse(const char *src, size_t len, const struct ng_liquid_parse_opts *o,
                    struct ng_liquid_tmpl **out, char *err, size_t errlen)
{
	struct ng_liquid_tmpl *t = ng_xcalloc(1, sizeof *t);
	t->src = ng_xmalloc(len + 1);
	if (len)
		memcpy(t->src, src, len);
	t->src[len] = 0;
	struct parser ps = {.t = t, .a = &t->arena, .o = o, .err = err, .errlen = errlen};
	if (errlen)
		err[0] = 0;
	struct lq_lex l = {0};
	l.p = t->src;
	l.end = t->src + len;
	l.line_start = t->src;
	l.line = o && o->line > 0 ? o->line : 1;
	if (o && o->name)
		t->name = lq_strndup(&t->arena, o->name, strlen(o->name));
	if (parse_block(&ps, &l, &t->root, NULL, NULL, NULL) || ps.failed) {
		free(ps.partials);
		free(ps.partial_lines);
		ng_liquid_free(t);
		*out = NULL;
		return -EINVAL;
	}
	if (ps.npartials) {
		t->partials = lq_alloc(&t->arena, ps.npartials * sizeof *t->partials);
		memcpy(t->partials, ps.partials, ps.npartials * sizeof *t->partials);
		t->partial_lines = lq_alloc(&t->arena, ps.npartials * sizeof *t->partial_lines);
		memcpy(t->partial_lines, ps.partial_lines, ps.npartials * sizeof *t->partial_lines);
		t->npartials = ps.npartials;
	}
	free(ps.partials);
	free(ps.partial_lines);
	*out = t;
	return 0;
}

void ng_liquid_free(struct ng_liquid_tmpl *t)
{
	if (!t)
		return;
	lq_arena_free(&t->arena);
	free(t->src);
	free(t);
}

size_t ng_liquid_partials(const struct ng_liquid_tmpl *t, const char **names, int *lines,
                          size_t max)
{
	for (size_t i = 0; i < t->npartials && i < max; i++) {
		names[i] = t->partials[i];
		lines[i] = t->partial_lines[i];
	}
	return t->npartials;
}
