/*
 * json_parse.h — a faster reader of JSON text into jansson values, for the hot paths: webhook
 * bodies, the message snapshots the dispatcher renders from, the rows the workflow engine claims.
 *
 * jansson's own reader takes every character through a callback and costs about as much as
 * everything else nudge does with a 5 KB checkout; this one scans strings a run at a time and
 * builds the same values. It accepts exactly what json_loadb accepts with the flags below (RFC 8259
 * text, UTF-8 checked, no \u0000, integers as json_int_t and reals as double, at most
 * NG_JSON_PARSE_MAX_DEPTH levels) and reports errors in a json_error_t the same way: line, column,
 * position, a sentence, and json_error_code() (json_error_invalid_utf8 for bytes that are not
 * UTF-8). tests/fuzz/fuzz_json.c holds it to jansson's answers.
 *
 * Flags: JSON_REJECT_DUPLICATES (an object key twice is an error; otherwise the last one wins),
 * JSON_DECODE_ANY (any value at the top, not only an object or an array). Others are ignored.
 */
#ifndef NG_JSON_PARSE_H
#define NG_JSON_PARSE_H

#include <jansson.h>
#include <stddef.h>

#define NG_JSON_PARSE_MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH */

/* A new reference, or NULL with err filled (err may be NULL). */
json_t *ng_json_parse(const char *text, size_t len, size_t flags, json_error_t *err);

/* The same for a NUL-terminated text. */
json_t *ng_json_parse_str(const char *text, size_t flags, json_error_t *err);

#endif
