/*
 * identity.c — email and phone normalisation (the rules are in identity.h).
 */
#include "identity.h"
#include "ng.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int is_blank(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

static int is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int fail(const char **why, const char *text)
{
	if (why)
		*why = text;
	return -EINVAL;
}

/* Trims blanks; sets *s and *n to the remaining span. */
static void trim(const char *in, const char **s, size_t *n)
{
	const char *b = in, *e = in + strlen(in);
	while (b < e && is_blank((unsigned char)*b))
		b++;
	while (e > b && is_blank((unsigned char)e[-1]))
		e--;
	*s = b;
	*n = (size_t)(e - b);
}

/* Checks dots in one part of an address: none first, last or doubled. */
static int dots_ok(const char *s, size_t n)
{
	if (n == 0 || s[0] == '.' || s[n - 1] == '.')
		return 0;
	for (size_t i = 1; i < n; i++)
		if (s[i] == '.' && s[i - 1] == '.')
			return 0;
	return 1;
}

int ng_identity_email(const char *in, char out[NG_IDENTITY_EMAIL_MAX], const char **why)
{
	const char *s;
	size_t n;
	out[0] = '\0';
	if (!in)
		return fail(why, "is empty");
	trim(in, &s, &n);
	if (n == 0)
		return fail(why, "is empty");
	if (n > NG_IDENTITY_EMAIL_MAX - 1)
		return fail(why, "is longer than 254 characters");

	size_t at = n;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (is_blank(c))
			return fail(why, "contains spaces");
		if (c < 0x20 || c == 0x7f)
			return fail(why, "contains control characters");
		if (strchr("()<>[]\\,;:\"", c))
			return fail(why, "contains characters that are not allowed in an address");
		if (c == '@') {
			if (at != n)
				return fail(why, "has more than one '@'");
			at = i;
		}
	}
	if (at == n)
		return fail(why, "has no '@'");
	const char *local = s, *domain = s + at + 1;
	size_t llen = at, dlen = n - at - 1;
	if (llen == 0)
		return fail(why, "has nothing before the '@'");
	if (llen > 64)
		return fail(why, "has more than 64 characters before the '@'");
	if (!dots_ok(local, llen))
		return fail(why, "has a misplaced dot before the '@'");
	if (dlen == 0)
		return fail(why, "has no domain after the '@'");
	if (!memchr(domain, '.', dlen))
		return fail(why, "has no dot in its domain");
	if (!dots_ok(domain, dlen))
		return fail(why, "has a misplaced dot in its domain");
	for (size_t i = 0; i < dlen; i++) {
		unsigned char c = (unsigned char)domain[i];
		if (!(is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c >= 0x80))
			return fail(why, "has a character that is not allowed in a domain");
	}
	const char *last = domain + dlen;
	while (last > domain && last[-1] != '.')
		last--;
	if ((size_t)(domain + dlen - last) < 2)
		return fail(why, "has a one-letter top-level domain");

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		out[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
	}
	out[n] = '\0';
	return 0;
}

int ng_identity_country_code_valid(const char *cc)
{
	if (!cc)
		return 0;
	size_t n = strlen(cc);
	if (n < 1 || n > 3 || cc[0] == '0')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!is_digit((unsigned char)cc[i]))
			return 0;
	return 1;
}

/*
 * Collects the digits of a phone number, dropping formatting. *plus is set when the number starts
 * with '+'. Returns 0 or -EINVAL with *why set.
 */
static int phone_digits(const char *s, size_t n, char *digits, size_t cap, size_t *nd, int *plus,
                        const char **why)
{
	size_t d = 0;
	*plus = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (is_digit(c)) {
			if (d + 1 >= cap)
				return fail(why, "has too many digits");
			digits[d++] = (char)c;
		} else if (c == '+') {
			if (i != 0)
				return fail(why, "has a '+' that is not at the start");
			*plus = 1;
		} else if (c == '(' && i + 2 < n && s[i + 1] == '0' && s[i + 2] == ')' &&
		           (*plus || (d >= 2 && digits[0] == '0' && digits[1] == '0'))) {
			/* "+49 (0)30 …": the trunk 0 written for national callers only. */
			i += 2;
		} else if (c == ' ' || c == '\t' || c == '-' || c == '.' || c == '/' || c == '(' ||
		           c == ')') {
			continue;
		} else if (is_alpha(c)) {
			return fail(why, "contains letters");
		} else {
			return fail(why, "contains a character that is not part of a phone number");
		}
	}
	digits[d] = '\0';
	*nd = d;
	return 0;
}

int ng_identity_phone(const char *in, const char *default_cc, char out[NG_IDENTITY_PHONE_MAX],
                      const char **why)
{
	const char *s;
	size_t n;
	out[0] = '\0';
	if (!in)
		return fail(why, "is empty");
	trim(in, &s, &n);
	if (n == 0)
		return fail(why, "is empty");

	char digits[64];
	size_t nd;
	int plus, rc = phone_digits(s, n, digits, sizeof digits, &nd, &plus, why);
	if (rc)
		return rc;
	if (nd == 0)
		return fail(why, "has no digits");

	/* The international part (country code first) of the number. */
	char e164[64];
	const char *national = NULL;
	if (plus) {
		snprintf(e164, sizeof e164, "%s", digits);
	} else if (nd >= 2 && digits[0] == '0' && digits[1] == '0') {
		snprintf(e164, sizeof e164, "%s", digits + 2);
	} else if (default_cc && strcmp(default_cc, "1") == 0 && nd >= 3 &&
	           strncmp(digits, "011", 3) == 0) {
		snprintf(e164, sizeof e164, "%s", digits + 3);
	} else {
		if (!default_cc || !*default_cc)
			return fail(why, "is a national number and no default country code is "
			                 "configured");
		if (!ng_identity_country_code_valid(default_cc))
			return fail(why, "is a national number and the default country code is not "
			                 "1 to 3 digits");
		national = digits;
		if (strcmp(default_cc, "1") == 0) {
			if (nd == 11 && digits[0] == '1')
				national++;
			if (strlen(national) != 10)
				return fail(why, "is not a 10-digit North American number");
			if (national[0] < '2')
				return fail(why, "has a North American area code starting with 0 "
				                 "or 1");
		} else if (national[0] == '0' && strcmp(default_cc, "39") != 0) {
			national++; /* the trunk prefix, not part of the E.164 number */
		}
		snprintf(e164, sizeof e164, "%s%s", default_cc, national);
	}

	size_t len = strlen(e164);
	if (len == 0 || e164[0] == '0')
		return fail(why, "has a country code starting with 0");
	if (len < 8)
		return fail(why, "is too short (fewer than 8 digits with the country code)");
	if (len > 15)
		return fail(why, "is too long (more than 15 digits with the country code)");
	out[0] = '+';
	memcpy(out + 1, e164, len + 1);
	return 0;
}
