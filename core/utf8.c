/*
 * utf8.c — the UTF-8 check the JSON parser uses, and the repair for text from outside.
 */
#include "utf8.h"

#include "ng.h"

#include <string.h>

size_t ng_utf8_len(const unsigned char *p, const unsigned char *end)
{
	unsigned c = p[0];
	size_t n;
	unsigned lo = 0x80, hi = 0xBF;
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		n = 2;
	else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else {
		return 0;
	}
	if ((size_t)(end - p) < n)
		return 0;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xBF)
			return 0;
	return n;
}

char *ng_utf8_dup(const char *s)
{
	if (!s)
		return NULL;
	const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
	/* At most three bytes (U+FFFD) for each byte replaced. */
	char *out = ng_xmalloc((size_t)(end - p) * 3 + 1), *o = out;
	while (p < end) {
		size_t n = ng_utf8_len(p, end);
		if (n) {
			memcpy(o, p, n);
			o += n;
			p += n;
		} else {
			memcpy(o, "\xEF\xBF\xBD", 3);
			o += 3;
			p++;
		}
	}
	*o = '\0';
	return out;
}
