/*
 * liquid_lex.h — the Liquid lexers (liquid_lex.c), used by the parser (liquid_parse.c).
 */
#ifndef NG_LIQUID_LEX_H
#define NG_LIQUID_LEX_H

#include <stddef.h>

enum lq_tok_kind { LQT_EOF, LQT_TEXT, LQT_OUT, LQT_TAG };

struct lq_tok {
	int kind;
	const char *p; /* text, or the markup inside the delimiters (trimmed) */
	size_t n;
	int line, col; /* where the token starts */
	int mline;     /* line of the markup start */
};

struct lq_lex {
	const char *p, *end;
	const char *line_start;
	int line;
	int strip_next; /* the last tag ended with -%} or -}} */
	int liquid;     /* {% liquid %} body: one tag per line */
	const char *err;
};

/* 0, or -1 with l->err set (an unterminated tag). */
int lq_lex_next(struct lq_lex *l, struct lq_tok *t);
/* After {% raw %}: the body up to {% endraw %}; -1 when there is none. */
int lq_lex_raw(struct lq_lex *l, const char **body, size_t *n);

enum lq_xtok_kind {
	LQX_EOS,
	LQX_ID,
	LQX_STR,
	LQX_INT,
	LQX_FLOAT,
	LQX_DOT,
	LQX_DOTDOT,
	LQX_LBRACK,
	LQX_RBRACK,
	LQX_LPAREN,
	LQX_RPAREN,
	LQX_COMMA,
	LQX_COLON,
	LQX_PIPE,
	LQX_CMP,
	LQX_EQ,
};

struct lq_xtok {
	int kind;
	const char *p; /* for strings: the content without quotes */
	size_t n;
};

struct lq_xlex {
	const char *p, *end;
	const char *bad; /* the unexpected character */
};

int lq_xlex(struct lq_xlex *x, struct lq_xtok *t);

#endif
