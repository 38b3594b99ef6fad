/*
 * json_parse.c — JSON text into jansson values, a run of bytes at a time (json_parse.h).
 */
#include "json_parse.h"
#include "ng.h"
#include "utf8.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct parser {
	const unsigned char *start, *end, *p;
	size_t flags;
	json_error_t *err;
	int depth;
	int failed;
	char *buf; /* unescaped strings and number texts */
	size_t cap;
};

static void fail(struct parser *ps, enum json_error_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct parser *ps, enum json_error_code code, const char *fmt, ...)
{
	if (ps->failed)
		return;
	ps->failed = 1;
	json_error_t *e = ps->err;
	if (!e)
		return;
	/* jansson decodes every byte it looks at: a byte that is not UTF-8 where something else was
	 * expected is reported as such. */
	int bad_byte =
	    (code == json_error_invalid_syntax || code == json_error_end_of_input_expected) &&
	    ps->p < ps->end && *ps->p >= 0x80 && !ng_utf8_len(ps->p, ps->end);
	int line = 1, column = 0;
	for (const unsigned char *q = ps->start; q < ps->p && q < ps->end; q++) {
		if (*q == '\n') {
			line++;
			column = 0;
		} else if ((*q & 0xC0) != 0x80) {
			column++; /* characters, not bytes, as jansson counts */
		}
	}
	e->line = line;
	e->column = column;
	e->position = (int)(ps->p - ps->start);
	snprintf(e->source, sizeof e->source, "<string>");
	if (bad_byte) {
		code = json_error_invalid_utf8;
		snprintf(e->text, sizeof e->text, "unable to decode byte 0x%x", *ps->p);
	} else {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(e->text, sizeof e->text, fmt, ap);
		va_end(ap);
	}
	/* jansson keeps the code in the last byte of text (json_error_code reads it there). */
	e->text[JSON_ERROR_TEXT_LENGTH - 1] = (char)code;
}

/* Fails with "WHAT expected", or a premature end when the input ran out. */
static void fail_expected(struct parser *ps, const char *what)
{
	fail(ps, ps->p >= ps->end ? json_error_premature_end_of_input : json_error_invalid_syntax,
	     "%s expected", what);
}

/*
 * After a member or an element: 1 at a ',' (skipped, with the blanks after it), 0 at the closing
 * character (skipped), -1 (failed) at anything else.
 */
static int after_item(struct parser *ps, char close, const char *expected);

static void reserve(struct parser *ps, size_t n)
{
	if (n > ps->cap) {
		ps->cap = n * 2 + 64;
		ps->buf = ng_xrealloc(ps->buf, ps->cap);
	}
}

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end &&
	       (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static int after_item(struct parser *ps, char close, const char *expected)
{
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == ',') {
		ps->p++;
		skip_ws(ps);
		return 1;
	}
	if (ps->p < ps->end && *ps->p == close) {
		ps->p++;
		return 0;
	}
	fail_expected(ps, expected);
	return -1;
}

static int hex4(const unsigned char *p, const unsigned char *end, unsigned *out)
{
	if (end - p < 4)
		return -1;
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		unsigned c = p[i], d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		v = v << 4 | d;
	}
	*out = v;
	return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | cp >> 12);
		o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (char)(0xF0 | cp >> 18);
	o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
	o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
	o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/*
 * The string at ps->p (its opening quote). On success *s and *n give its bytes: straight from the
 * input when it holds no escape, else unescaped in ps->buf (valid until the next string).
 */
static int parse_string(struct parser *ps, const char **s, size_t *n)
{
	const unsigned char *q = ++ps->p, *end = ps->end;
	/* The common case: no escape. */
	while (q < end && *q != '"' && *q != '\\' && *q >= 0x20 && *q < 0x80)
		q++;
	size_t out = 0;
	int escaped = 0;
	const unsigned char *run = ps->p;
	for (;;) {
		if (q >= end) {
			ps->p = q;
			fail(ps, json_error_premature_end_of_input,
			     "premature end of input while reading a string");
			return -1;
		}
		unsigned c = *q;
		if (c == '"')
			break;
		if (c < 0x20) {
			ps->p = q;
			fail(ps, json_error_invalid_syntax, "control character 0x%x", c);
			return -1;
		}
		if (c >= 0x80) {
			size_t l = ng_utf8_len(q, end);
			if (!l) {
				ps->p = q;
				fail(ps, json_error_invalid_utf8, "unable to decode byte 0x%x", c);
				return -1;
			}
			q += l;
			continue;
		}
		if (c != '\\') {
			q++;
			continue;
		}
		/* An escape: everything so far goes to the buffer, then its character. */
		escaped = 1;
		size_t plain = (size_t)(q - run);
		reserve(ps, out + plain + 8);
		memcpy(ps->buf + out, run, plain);
		out += plain;
		if (q + 1 >= end) {
			ps->p = q + 1;
			fail(ps, json_error_premature_end_of_input,
			     "premature end of input while reading a string");
			return -1;
		}
		unsigned e = q[1];
		q += 2;
		char ch;
		switch (e) {
		case '"':
			ch = '"';
			break;
		case '\\':
			ch = '\\';
			break;
		case '/':
			ch = '/';
			break;
		case 'b':
			ch = '\b';
			break;
		case 'f':
			ch = '\f';
			break;
		case 'n':
			ch = '\n';
			break;
		case 'r':
			ch = '\r';
			break;
		case 't':
			ch = '\t';
			break;
		case 'u': {
			unsigned cp, lo;
			if (hex4(q, end, &cp) != 0) {
				ps->p = q;
				fail(ps, json_error_invalid_syntax, "invalid escape");
				return -1;
			}
			q += 4;
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				if (end - q >= 6 && q[0] == '\\' && q[1] == 'u' &&
				    hex4(q + 2, end, &lo) == 0 && lo >= 0xDC00 && lo <= 0xDFFF) {
					cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
					q += 6;
				} else {
					ps->p = q;
					fail(ps, json_error_invalid_syntax,
					     "invalid Unicode '\\u%04X'", cp);
					return -1;
				}
			} else if (cp >= 0xDC00 && cp <= 0xDFFF) {
				ps->p = q;
				fail(ps, json_error_invalid_syntax, "invalid Unicode '\\u%04X'",
				     cp);
				return -1;
			} else if (cp == 0) {
				ps->p = q;
				fail(ps, json_error_null_character,
				     "\\u0000 is not allowed without JSON_ALLOW_NUL");
				return -1;
			}
			out += put_utf8(ps->buf + out, cp);
			run = q;
			continue;
		}
		default:
			ps->p = q - 1;
			fail(ps, json_error_invalid_syntax, "invalid escape");
			return -1;
		}
		ps->buf[out++] = ch;
		run = q;
	}
	if (escaped) {
		size_t plain = (size_t)(q - run);
		reserve(ps, out + plain + 1);
		memcpy(ps->buf + out, run, plain);
		out += plain;
		*s = ps->buf;
		*n = out;
	} else {
		*s = (const char *)ps->p;
		*n = (size_t)(q - ps->p);
	}
	ps->p = q + 1;
	return 0;
}

static int digit(const unsigned char *p, const unsigned char *end)
{
	return p < end && *p >= '0' && *p <= '9';
}

static json_t *parse_number(struct parser *ps)
{
	const unsigned char *q = ps->p, *end = ps->end;
	int real = 0;
	if (*q == '-')
		q++;
	if (!digit(q, end)) {
		ps->p = q;
		fail(ps, json_error_invalid_syntax, "invalid token");
		return NULL;
	}
	if (*q == '0') {
		q++;
		if (digit(q, end)) {
			ps->p = q;
			fail(ps, json_error_invalid_syntax, "invalid token");
			return NULL;
		}
	} else {
		while (digit(q, end))
			q++;
	}
	if (q < end && *q == '.') {
		real = 1;
		q++;
		if (!digit(q, end)) {
			ps->p = q;
			fail(ps, json_error_invalid_syntax, "invalid token");
			return NULL;
		}
		while (digit(q, end))
			q++;
	}
	if (q < end && (*q == 'e' || *q == 'E')) {
		real = 1;
		q++;
		if (q < end && (*q == '+' || *q == '-'))
			q++;
		if (!digit(q, end)) {
			ps->p = q;
			fail(ps, json_error_invalid_syntax, "invalid token");
			return NULL;
		}
		while (digit(q, end))
			q++;
	}
	size_t n = (size_t)(q - ps->p);
	reserve(ps, n + 1);
	memcpy(ps->buf, ps->p, n);
	ps->buf[n] = '\0';
	errno = 0;
	json_t *v;
	if (!real) {
		long long i = strtoll(ps->buf, NULL, 10);
		if (errno == ERANGE) {
			fail(ps, json_error_numeric_overflow,
			     i < 0 ? "too big negative integer" : "too big integer");
			return NULL;
		}
		v = json_integer((json_int_t)i);
	} else {
		double d = strtod(ps->buf, NULL);
		if (errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL)) {
			fail(ps, json_error_numeric_overflow, "real number overflow");
			return NULL;
		}
		v = json_real(d);
	}
	ps->p = q;
	return v;
}

static json_t *parse_value(struct parser *ps);

static json_t *parse_object(struct parser *ps)
{
	json_t *obj = json_object();
	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == '}') {
		ps->p++;
		return obj;
	}
	int more = 1;
	while (more == 1) {
		if (ps->p >= ps->end || *ps->p != '"') {
			fail_expected(ps, "string or '}'");
			break;
		}
		const char *k;
		size_t kn;
		if (parse_string(ps, &k, &kn) != 0)
			break;
		/* The key may sit in ps->buf, which the value's strings reuse: keep a copy. */
		char small[128], *key = kn < sizeof small ? small : ng_xmalloc(kn + 1);
		memcpy(key, k, kn);
		key[kn] = '\0';
		json_t *v = NULL;
		/* The duplicate before the ':', as jansson checks it. */
		if ((ps->flags & JSON_REJECT_DUPLICATES) && json_object_getn(obj, key, kn)) {
			fail(ps, json_error_duplicate_key, "duplicate object key");
		} else {
			skip_ws(ps);
			if (ps->p < ps->end && *ps->p == ':') {
				ps->p++;
				skip_ws(ps);
				v = parse_value(ps);
			} else {
				fail_expected(ps, "':'");
			}
		}
		if (v)
			json_object_setn_new_nocheck(obj, key, kn, v);
		if (key != small)
			free(key);
		more = v ? after_item(ps, '}', "'}'") : -1;
	}
	if (more == 0)
		return obj;
	json_decref(obj);
	return NULL;
}

static json_t *parse_array(struct parser *ps)
{
	json_t *arr = json_array();
	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == ']') {
		ps->p++;
		return arr;
	}
	int more = 1;
	while (more == 1) {
		json_t *v = parse_value(ps);
		if (!v)
			break;
		json_array_append_new(arr, v);
		more = after_item(ps, ']', "']'");
	}
	if (more == 0)
		return arr;
	json_decref(arr);
	return NULL;
}

static json_t *literal(struct parser *ps, const char *word, json_t *v)
{
	size_t n = strlen(word);
	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) {
		/* Where jansson's reader stops: after the letters (a byte that is not UTF-8 there
		 * is reported as such). */
		while (ps->p < ps->end && ((*ps->p | 0x20) >= 'a' && (*ps->p | 0x20) <= 'z'))
			ps->p++;
		fail(ps, json_error_invalid_syntax, "invalid token");
		return NULL;
	}
	ps->p += n;
	return v;
}

static json_t *parse_value(struct parser *ps)
{
	if (ps->p >= ps->end) {
		fail(ps, json_error_premature_end_of_input, "unexpected end of input");
		return NULL;
	}
	switch (*ps->p) {
	case '{':
	case '[': {
		if (++ps->depth > NG_JSON_PARSE_MAX_DEPTH) {
			fail(ps, json_error_stack_overflow, "maximum parsing depth reached");
			return NULL;
		}
		json_t *v = *ps->p == '{' ? parse_object(ps) : parse_array(ps);
		ps->depth--;
		return v;
	}
	case '"': {
		const char *s;
		size_t n;
		if (parse_string(ps, &s, &n) != 0)
			return NULL;
		return json_stringn_nocheck(s, n);
	}
	case 't':
		return literal(ps, "true", json_true());
	case 'f':
		return literal(ps, "false", json_false());
	case 'n':
		return literal(ps, "null", json_null());
	default:
		if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9'))
			return parse_number(ps);
		fail(ps, json_error_invalid_syntax, "invalid token");
		return NULL;
	}
}

json_t *ng_json_parse(const char *text, size_t len, size_t flags, json_error_t *err)
{
	struct parser ps = {
	    .start = (const unsigned char *)text,
	    .end = (const unsigned char *)text + len,
	    .p = (const unsigned char *)text,
	    .flags = flags,
	    .err = err,
	};
	if (!text) {
		ps.end = ps.p;
		fail(&ps, json_error_invalid_argument, "wrong arguments");
		return NULL;
	}
	skip_ws(&ps);
	if (!(flags & JSON_DECODE_ANY) && (ps.p >= ps.end || (*ps.p != '[' && *ps.p != '{'))) {
		fail_expected(&ps, "'[' or '{'"); /* a byte that is not UTF-8 is named as such */
		free(ps.buf);
		return NULL;
	}
	json_t *v = parse_value(&ps);
	if (v) {
		skip_ws(&ps);
		if (ps.p < ps.end) {
			fail(&ps, json_error_end_of_input_expected, "end of file expected");
			json_decref(v);
			v = NULL;
		}
	}
	free(ps.buf);
	return v;
}

json_t *ng_json_parse_str(const char *text, size_t flags, json_error_t *err)
{
	return ng_json_parse(text, text ? strlen(text) : 0, flags, err);
}
