/*
 * liquid_lex.c — Liquid's two lexers: the template lexer that splits source into text, {{ output }}
 * and {% tag %} tokens (with whitespace control and line/column), and the expression lexer that
 * splits a tag's markup into identifiers, strings, numbers and punctuation.
 */
#include "liquid_lex.h"

#include <string.h>

static void advance(struct lq_lex *l, const char *to)
{
	for (const char *q = l->p; q < to; q++)
		if (*q == '\n') {
			l->line++;
			l->line_start = q + 1;
		}
	l->p = to;
}

static const char *find2(const char *p, const char *end, char a, char b)
{
	while (p + 1 < end) {
		const char *q = memchr(p, a, (size_t)(end - p - 1));
		if (!q)
			return NULL;
		if (q[1] == b)
			return q;
		p = q + 1;
	}
	return NULL;
}

static int is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Next line of a {% liquid %} body as a tag token. */
static int next_line(struct lq_lex *l, struct lq_tok *t)
{
	for (;;) {
		if (l->p >= l->end) {
			t->kind = LQT_EOF;
			t->line = l->line;
			return 0;
		}
		const char *nl = memchr(l->p, '\n', (size_t)(l->end - l->p));
		const char *e = nl ? nl : l->end;
		const char *s = l->p;
		while (s < e && is_ws(*s))
			s++;
		const char *te = e;
		while (te > s && is_ws(te[-1]))
			te--;
		t->line = l->line;
		t->col = (int)(s - l->line_start) + 1;
		t->p = s;
		t->n = (size_t)(te - s);
		advance(l, nl ? nl + 1 : l->end);
		if (t->n) {
			t->kind = LQT_TAG;
			return 0;
		}
	}
}

int lq_lex_next(struct lq_lex *l, struct lq_tok *t)
{
	memset(t, 0, sizeof *t);
	if (l->liquid)
		return next_line(l, t);
	t->line = l->line;
	t->col = (int)(l->p - l->line_start) + 1;
	if (l->p >= l->end) {
		t->kind = LQT_EOF;
		return 0;
	}
	if (l->p + 1 < l->end && l->p[0] == '{' && (l->p[1] == '{' || l->p[1] == '%')) {
		int out = l->p[1] == '{';
		const char *close = find2(l->p + 2, l->end, out ? '}' : '%', '}');
		if (!close) {
			l->err =
			    out ? "Variable '{{' was not properly terminated with regexp: /\\}\\}/"
			        : "Tag '{%' was not properly terminated with regexp: /\\%\\}/";
			return -1;
		}
		const char *s = l->p + 2, *e = close;
		if (s < e && *s == '-') {
			s++;
		}
		l->strip_next = 0;
		if (e > s && e[-1] == '-') {
			e--;
			l->strip_next = 1;
		}
		while (s < e && is_ws(*s))
			s++;
		while (e > s && is_ws(e[-1]))
			e--;
		t->kind = out ? LQT_OUT : LQT_TAG;
		t->p = s;
		t->n = (size_t)(e - s);
		t->mline = l->line;
		advance(l, close + 2);
		return 0;
	}
	/* Text up to the next {{ or {%. */
	const char *q = l->p;
	const char *stop = l->end;
	while (q + 1 < l->end) {
		q = memchr(q, '{', (size_t)(l->end - q));
		if (!q || q + 1 >= l->end)
			break;
		if (q[1] == '{' || q[1] == '%') {
			stop = q;
			break;
		}
		q++;
	}
	const char *s = l->p, *e = stop;
	if (l->strip_next) {
		while (s < e && is_ws(*s))
			s++;
		l->strip_next = 0;
	}
	if (e + 2 < l->end && e[2] == '-')
		while (e > s && is_ws(e[-1]))
			e--;
	t->kind = LQT_TEXT;
	t->p = s;
	t->n = (size_t)(e - s);
	advance(l, stop);
	return 0;
}

int lq_lex_raw(struct lq_lex *l, const char **body, size_t *n)
{
	const char *q = l->p;
	for (;;) {
		const char *o = find2(q, l->end, '{', '%');
		if (!o)
			return -1;
		const char *s = o + 2;
		int lead = 0;
		if (s < l->end && *s == '-') {
			s++;
			lead = 1;
		}
		while (s < l->end && is_ws(*s))
			s++;
		if ((size_t)(l->end - s) >= 6 && memcmp(s, "endraw", 6) == 0) {
			const char *c = s + 6;
			while (c < l->end && is_ws(*c))
				c++;
			int trail = 0;
			if (c < l->end && *c == '-') {
				c++;
				trail = 1;
			}
			if (c + 1 < l->end && c[0] == '%' && c[1] == '}') {
				const char *bs = l->p, *be = o;
				if (l->strip_next)
					while (bs < be && is_ws(*bs))
						bs++;
				if (lead)
					while (be > bs && is_ws(be[-1]))
						be--;
				*body = bs;
				*n = (size_t)(be - bs);
				l->strip_next = trail;
				advance(l, c + 2);
				return 0;
			}
		}
		q = o + 2;
	}
}

/* ---- the expression lexer ---- */

static int id_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
	       (unsigned char)c >= 0x80;
}

static int id_char(char c)
{
	return id_start(c) || (c >= '0' && c <= '9') || c == '-';
}

static int digit(char c)
{
	return c >= '0' && c <= '9';
}

int lq_xlex(struct lq_xlex *x, struct lq_xtok *t)
{
	const char *p = x->p;
	while (p < x->end && is_ws(*p))
		p++;
	t->p = p;
	t->n = 0;
	if (p >= x->end) {
		t->kind = LQX_EOS;
		x->p = p;
		return 0;
	}
	char c = *p;
	if (id_start(c)) {
		const char *q = p + 1;
		while (q < x->end && id_char(*q))
			q++;
		if (q < x->end && *q == '?')
			q++;
		t->kind = LQX_ID;
		t->n = (size_t)(q - p);
		x->p = q;
		return 0;
	}
	if (digit(c) || (c == '-' && p + 1 < x->end && digit(p[1]))) {
		const char *q = p + 1;
		while (q < x->end && digit(*q))
			q++;
		t->kind = LQX_INT;
		if (q + 1 < x->end && *q == '.' && digit(q[1])) {
			q++;
			while (q < x->end && digit(*q))
				q++;
			t->kind = LQX_FLOAT;
		}
		t->n = (size_t)(q - p);
		x->p = q;
		return 0;
	}
	if (c == '\'' || c == '"') {
		const char *q = memchr(p + 1, c, (size_t)(x->end - p - 1));
		if (!q) {
			x->bad = p;
			return -1;
		}
		t->kind = LQX_STR;
		t->p = p + 1;
		t->n = (size_t)(q - p - 1);
		x->p = q + 1;
		return 0;
	}
	t->n = 1;
	switch (c) {
	case '.':
		if (p + 1 < x->end && p[1] == '.') {
			t->kind = LQX_DOTDOT;
			t->n = 2;
		} else {
			t->kind = LQX_DOT;
		}
		break;
	case '[':
		t->kind = LQX_LBRACK;
		break;
	case ']':
		t->kind = LQX_RBRACK;
		break;
	case '(':
		t->kind = LQX_LPAREN;
		break;
	case ')':
		t->kind = LQX_RPAREN;
		break;
	case ',':
		t->kind = LQX_COMMA;
		break;
	case ':':
		t->kind = LQX_COLON;
		break;
	case '|':
		t->kind = LQX_PIPE;
		break;
	case '=':
		if (p + 1 < x->end && p[1] == '=') {
			t->kind = LQX_CMP;
			t->n = 2;
			break;
		}
		t->kind = LQX_EQ;
		break;
	case '!':
		if (p + 1 < x->end && p[1] == '=') {
			t->kind = LQX_CMP;
			t->n = 2;
			break;
		}
		x->bad = p;
		return -1;
	case '<':
	case '>':
		t->kind = LQX_CMP;
		if (p + 1 < x->end && (p[1] == '=' || (c == '<' && p[1] == '>')))
			t->n = 2;
		break;
	default:
		x->bad = p;
		return -1;
	}
	x->p = p + t->n;
	return 0;
}
