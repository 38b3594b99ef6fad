/*
 * utf8.h — checking UTF-8 (RFC 3629) and making text from outside valid before it goes into JSON.
 *
 * jansson refuses a string that is not UTF-8 (json_pack returns NULL), so text a provider, a relay
 * or a client sent us — an SMTP reply, a User-Agent header — passes through ng_utf8_dup first.
 */
#ifndef NG_UTF8_H
#define NG_UTF8_H

#include <stddef.h>

/* The length of the UTF-8 sequence at p (1–4), or 0 when it is not one: no overlong forms, no
 * surrogates, nothing above U+10FFFF, and no sequence cut short by end. */
size_t ng_utf8_len(const unsigned char *p, const unsigned char *end);

/* A copy of s (NULL for NULL) in which every byte that does not begin a valid sequence is
 * replaced by U+FFFD: the rest of the text is kept as it was. Aborts on exhaustion like ng_x*. */
char *ng_utf8_dup(const char *s);

#endif
