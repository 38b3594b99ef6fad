/*
 * twilio_text.c — the Twilio plugin's pure helpers: phone numbers to E.164, how many SMS segments
 * a body takes and in which encoding, form encoding and decoding, opt-out keywords, Twilio's
 * webhook signature, and RFC 2822 dates. No state; nothing here calls the host.
 */
#include "twilio.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- E.164 ---------------------------------------------------------------------------------- */

/*
 * The rules of nudge's identity module (core/identity.c), which a plugin cannot link against:
 * formatting (spaces, dashes, dots, slashes, parentheses, a "(0)" after an international prefix)
 * is dropped, letters refuse the number; "+" or "00" (and "011" with default country 1) start an
 * international number; a national one takes default_cc (NANP: ten digits, area code 2–9; others:
 * one trunk 0 dropped, except Italy's). The result is "+" and 8 to 15 digits, the first not 0.
 */
int tw_e164(const char *in, const char *cc, char out[TW_E164_MAX])
{
	char d[40];
	size_t nd = 0;
	int plus = 0;
	out[0] = '\0';
	if (!in)
		return -EINVAL;
	while (isspace((unsigned char)*in))
		in++;
	for (size_t i = 0; in[i]; i++) {
		unsigned char c = (unsigned char)in[i];
		if (isdigit(c)) {
			if (nd + 1 >= sizeof d)
				return -EINVAL;
			d[nd++] = (char)c;
		} else if (c == '+' && i == 0) {
			plus = 1;
		} else if (c == '(' && in[i + 1] == '0' && in[i + 2] == ')' &&
		           (plus || (nd >= 2 && d[0] == '0' && d[1] == '0'))) {
			i += 2;
		} else if (!(c == ' ' || c == '\t' || c == '-' || c == '.' || c == '/' ||
		             c == '(' || c == ')')) {
			return -EINVAL;
		}
	}
	d[nd] = '\0';
	if (nd == 0)
		return -EINVAL;
	char e[64];
	if (plus)
		snprintf(e, sizeof e, "%s", d);
	else if (nd >= 2 && d[0] == '0' && d[1] == '0')
		snprintf(e, sizeof e, "%s", d + 2);
	else if (cc && strcmp(cc, "1") == 0 && strncmp(d, "011", 3) == 0)
		snprintf(e, sizeof e, "%s", d + 3);
	else {
		size_t ccl = cc ? strlen(cc) : 0;
		if (ccl < 1 || ccl > 3 || cc[0] == '0' || strspn(cc, "0123456789") != ccl)
			return -EINVAL;
		const char *national = d;
		if (strcmp(cc, "1") == 0) {
			if (nd == 11 && d[0] == '1')
				national++;
			if (strlen(national) != 10 || national[0] < '2')
				return -EINVAL;
		} else if (national[0] == '0' && strcmp(cc, "39") != 0) {
			national++;
		}
		snprintf(e, sizeof e, "%s%s", cc, national);
	}
	size_t len = strlen(e);
	if (len < 8 || len > 15 || e[0] == '0')
		return -EINVAL;
	out[0] = '+';
	memcpy(out + 1, e, len + 1);
	return 0;
}

/* ---- segments ------------------------------------------------------------------------------- */

/* Decodes one UTF-8 character at s; its length in *n. -1 when invalid. */
static long utf8_next(const unsigned char *s, size_t *n)
{
	unsigned char c = s[0];
	long cp;
	size_t len;
	if (c < 0x80)
		return *n = 1, c;
	if ((c & 0xE0) == 0xC0)
		cp = c & 0x1F, len = 2;
	else if ((c & 0xF0) == 0xE0)
		cp = c & 0x0F, len = 3;
	else if ((c & 0xF8) == 0xF0)
		cp = c & 0x07, len = 4;
	else
		return -1;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return -1;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return -1;
	*n = len;
	return cp;
}

/* Septets a character takes in GSM 03.38 (basic table 1, extension table 2), 0 if absent. */
static int gsm_septets(long cp)
{
	static const long basic[] = {0x40,  0xA3,  0x24,  0xA5,  0xE8,  0xE9,  0xF9,  0xEC,  0xF2,
	                             0xC7,  0x0A,  0xD8,  0xF8,  0x0D,  0xC5,  0xE5,  0x394, 0x5F,
	                             0x3A6, 0x393, 0x39B, 0x3A9, 0x3A0, 0x3A8, 0x3A3, 0x398, 0x39E,
	                             0xC6,  0xE6,  0xDF,  0xC9,  0xA4,  0xA1,  0xC4,  0xD6,  0xD1,
	                             0xDC,  0xA7,  0xBF,  0xE4,  0xF6,  0xF1,  0xFC,  0xE0};
	static const long ext[] = {0x0C, 0x5E, 0x7B, 0x7D, 0x5C, 0x5B, 0x7E, 0x5D, 0x7C, 0x20AC};
	if ((cp >= 0x20 && cp <= 0x3F) || (cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z'))
		return 1;
	for (size_t i = 0; i < sizeof basic / sizeof basic[0]; i++)
		if (basic[i] == cp)
			return 1;
	for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
		if (ext[i] == cp)
			return 2;
	return 0;
}

int tw_segments(const char *body, enum tw_encoding *enc, size_t *units, size_t *chars)
{
	const unsigned char *s = (const unsigned char *)(body ? body : "");
	size_t n, septets = 0, utf16 = 0, nchars = 0;
	int gsm = 1;
	for (size_t i = 0; s[i]; i += n) {
		long cp = utf8_next(s + i, &n);
		if (cp < 0)
			return -EINVAL;
		int w = gsm_septets(cp);
		if (!w)
			gsm = 0;
		septets += (size_t)w;
		utf16 += cp > 0xFFFF ? 2 : 1;
		nchars++;
	}
	*enc = gsm ? TW_GSM7 : TW_UCS2;
	*units = gsm ? septets : utf16;
	if (chars)
		*chars = nchars;
	if (nchars == 0)
		return 0;
	size_t single = gsm ? 160 : 70, part = gsm ? 153 : 67;
	if (*units <= single)
		return 1;
	/* Fill segments character by character: a two-unit character never straddles two. */
	int segs = 1;
	size_t used = 0;
	for (size_t i = 0; s[i]; i += n) {
		long cp = utf8_next(s + i, &n);
		size_t w = gsm ? (size_t)gsm_septets(cp) : (cp > 0xFFFF ? 2 : 1);
		if (used + w > part) {
			segs++;
			used = 0;
		}
		used += w;
	}
	return segs;
}

const char *tw_encoding_name(enum tw_encoding enc)
{
	return enc == TW_GSM7 ? "GSM-7" : "UCS-2";
}

/* ---- buffers and forms ---------------------------------------------------------------------- */

void tw_buf_add(struct tw_buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *ns = realloc(b->s, cap);
		if (!ns)
			abort(); /* as nudge does: a daemon that cannot allocate cannot go on */
		b->s = ns;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

void tw_buf_str(struct tw_buf *b, const char *s)
{
	tw_buf_add(b, s, strlen(s));
}

void tw_urlencode(struct tw_buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~') {
			tw_buf_add(b, (const char *)p, 1);
		} else {
			char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
			tw_buf_add(b, e, 3);
		}
	}
}

void tw_form_add(struct tw_buf *b, const char *name, const char *value)
{
	if (b->len)
		tw_buf_add(b, "&", 1);
	tw_urlencode(b, name);
	tw_buf_add(b, "=", 1);
	tw_urlencode(b, value);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static char *form_decode(const char *s, size_t n)
{
	char *out = malloc(n + 1);
	if (!out)
		abort();
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '+')
			out[o++] = ' ';
		else if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 &&
		         hexval(s[i + 2]) >= 0) {
			out[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
		} else
			out[o++] = s[i];
	}
	out[o] = '\0';
	return out;
}

size_t tw_form_parse(const char *body, size_t len, struct tw_param **out)
{
	size_t n = 0, cap = 0;
	struct tw_param *p = NULL;
	size_t i = 0;
	while (i < len) {
		size_t end = i;
		while (end < len && body[end] != '&')
			end++;
		if (end > i) {
			const char *eq = memchr(body + i, '=', end - i);
			size_t nl = eq ? (size_t)(eq - (body + i)) : end - i;
			if (n == cap) {
				cap = cap ? cap * 2 : 16;
				p = realloc(p, cap * sizeof *p);
				if (!p)
					abort();
			}
			p[n].name = form_decode(body + i, nl);
			p[n].value = eq ? form_decode(eq + 1, (size_t)(body + end - eq - 1))
			                : form_decode("", 0);
			n++;
		}
		i = end + 1;
	}
	*out = p;
	return n;
}

void tw_params_free(struct tw_param *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(p[i].name);
		free(p[i].value);
	}
	free(p);
}

const char *tw_param(const struct tw_param *p, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(p[i].name, name) == 0)
			return p[i].value;
	return NULL;
}

/* ---- keywords ------------------------------------------------------------------------------- */

enum tw_keyword tw_keyword(const char *body, char *norm, size_t normlen)
{
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)(body ? body : ""); *p; p++) {
		if (isspace(*p))
			continue;
		if (o + 1 >= normlen)
			break;
		norm[o++] = (char)toupper(*p);
	}
	/* "Stop." and "STOP!" are the same word. */
	while (o > 0 && (norm[o - 1] == '.' || norm[o - 1] == '!'))
		o--;
	norm[o] = '\0';
	static const char *const stop[] = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL",
	                                   "END",  "QUIT",    "REVOKE",      "OPTOUT"};
	static const char *const start[] = {"START", "UNSTOP", "YES"};
	static const char *const help[] = {"HELP", "INFO"};
	for (size_t i = 0; i < sizeof stop / sizeof stop[0]; i++)
		if (strcmp(norm, stop[i]) == 0)
			return TW_KW_STOP;
	for (size_t i = 0; i < sizeof start / sizeof start[0]; i++)
		if (strcmp(norm, start[i]) == 0)
			return TW_KW_START;
	for (size_t i = 0; i < sizeof help / sizeof help[0]; i++)
		if (strcmp(norm, help[i]) == 0)
			return TW_KW_HELP;
	return TW_KW_NONE;
}

/* ---- signatures ----------------------------------------------------------------------------- */

static int param_cmp(const void *a, const void *b)
{
	const struct tw_param *x = *(const struct tw_param *const *)a,
	                      *y = *(const struct tw_param *const *)b;
	int c = strcmp(x->name, y->name);
	return c ? c : strcmp(x->value, y->value);
}

void tw_sign(const char *token, const char *url, const struct tw_param *p, size_t n,
             char out[TW_SIGNATURE_MAX])
{
	const struct tw_param **sorted = malloc((n ? n : 1) * sizeof *sorted);
	if (!sorted)
		abort();
	for (size_t i = 0; i < n; i++)
		sorted[i] = &p[i];
	qsort(sorted, n, sizeof *sorted, param_cmp);
	struct tw_buf data = {0};
	tw_buf_str(&data, url);
	for (size_t i = 0; i < n; i++) {
		tw_buf_str(&data, sorted[i]->name);
		tw_buf_str(&data, sorted[i]->value);
	}
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	HMAC(EVP_sha1(), token, (int)strlen(token), (const unsigned char *)data.s, data.len, md,
	     &mdlen);
	EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
	free(data.s);
	free(sorted);
}

static int sig_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	return la == lb && CRYPTO_memcmp(a, b, la) == 0;
}

/*
 * Twilio signs the URL as it was configured, but — as its own libraries note — not always with
 * the same port form, so "https://host/x" and "https://host:443/x" are both accepted.
 */
int tw_signature_ok(const char *token, const char *url, const struct tw_param *p, size_t n,
                    const char *sig)
{
	if (!sig || !*sig || !url || !token || !*token)
		return 0;
	char want[TW_SIGNATURE_MAX];
	int ok = 0;
	tw_sign(token, url, p, n, want);
	ok |= sig_equal(want, sig);

	const char *scheme_end = strstr(url, "://");
	if (!scheme_end)
		return ok;
	const char *host = scheme_end + 3;
	const char *path = host + strcspn(host, "/?#");
	const char *colon = memchr(host, ':', (size_t)(path - host));
	struct tw_buf alt = {0};
	if (colon) { /* without the port */
		tw_buf_add(&alt, url, (size_t)(colon - url));
		tw_buf_str(&alt, path);
	} else { /* with the scheme's default port */
		int https = strncmp(url, "https://", 8) == 0;
		tw_buf_add(&alt, url, (size_t)(path - url));
		tw_buf_str(&alt, https ? ":443" : ":80");
		tw_buf_str(&alt, path);
	}
	tw_sign(token, alt.s, p, n, want);
	ok |= sig_equal(want, sig);
	free(alt.s);
	return ok;
}

/* ---- dates ---------------------------------------------------------------------------------- */

int64_t tw_parse_date(const char *s)
{
	if (!s)
		return -1;
	struct tm tm;
	memset(&tm, 0, sizeof tm);
	const char *end = strptime(s, "%a, %d %b %Y %H:%M:%S %z", &tm);
	if (!end)
		return -1;
	long off = tm.tm_gmtoff;
	time_t t = timegm(&tm);
	if (t == (time_t)-1)
		return -1;
	return ((int64_t)t - off) * 1000;
}
