/*
 * webhook_verify.c — HMAC-SHA256 webhook signatures (Shopify, WooCommerce, nudge's own): decoding
 * the header, computing the digest per candidate secret, constant-time comparison.
 */
#include "webhook_verify.h"
#include "ng.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define DIGEST_LEN 32

static const char NUDGE_PREFIX[] = "sha256=";

const char *ng_webhook_header(enum ng_webhook_scheme scheme)
{
	switch (scheme) {
	case NG_WEBHOOK_SHOPIFY:
		return "X-Shopify-Hmac-Sha256";
	case NG_WEBHOOK_WOOCOMMERCE:
		return "X-WC-Webhook-Signature";
	case NG_WEBHOOK_NUDGE:
		return "X-Nudge-Signature";
	}
	return NULL;
}

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Strict standard base64 of exactly DIGEST_LEN bytes: 44 characters ending in one '='. OpenSSL's
 * EVP_DecodeBlock would accept other lengths and count padding as data, so decode by hand.
 */
static int decode_base64_digest(const char *s, size_t n, unsigned char *out)
{
	if (n != 44 || s[43] != '=')
		return -EBADMSG;
	unsigned acc = 0;
	int bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < 43; i++) {
		int v = b64_value((unsigned char)s[i]);
		if (v < 0)
			return -EBADMSG;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* 43 characters carry 258 bits: 256 of digest and two that must be zero. */
	if (o != DIGEST_LEN || acc != 0)
		return -EBADMSG;
	return 0;
}

static int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int decode_nudge_digest(const char *s, size_t n, unsigned char *out)
{
	size_t plen = sizeof NUDGE_PREFIX - 1;
	if (n != plen + 2 * DIGEST_LEN || strncasecmp(s, NUDGE_PREFIX, plen) != 0)
		return -EBADMSG;
	s += plen;
	for (size_t i = 0; i < DIGEST_LEN; i++) {
		int hi = hex_value((unsigned char)s[2 * i]),
		    lo = hex_value((unsigned char)s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EBADMSG;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

static void hmac_sha256(const char *secret, const void *body, size_t len, unsigned char *out)
{
	unsigned int outlen = DIGEST_LEN;
	/* An empty body is a valid message; HMAC wants a non-NULL pointer for it. */
	static const unsigned char nothing[1];
	HMAC(EVP_sha256(), secret, (int)strlen(secret), len ? body : nothing, len, out, &outlen);
}

int ng_webhook_verify(enum ng_webhook_scheme scheme, const char *signature, const void *body,
                      size_t len, const char *const *secrets, size_t nsecrets, size_t *matched)
{
	size_t usable = 0;
	for (size_t i = 0; i < nsecrets; i++)
		if (secrets[i] && secrets[i][0])
			usable++;
	if (usable == 0)
		return -ENOKEY;
	if (!signature)
		return -EBADMSG;

	const char *s = signature, *e = signature + strlen(signature);
	while (s < e && is_space(*s))
		s++;
	while (e > s && is_space(e[-1]))
		e--;

	unsigned char want[DIGEST_LEN];
	int rc;
	switch (scheme) {
	case NG_WEBHOOK_SHOPIFY:
	case NG_WEBHOOK_WOOCOMMERCE:
		rc = decode_base64_digest(s, (size_t)(e - s), want);
		break;
	case NG_WEBHOOK_NUDGE:
		rc = decode_nudge_digest(s, (size_t)(e - s), want);
		break;
	default:
		return -EINVAL;
	}
	if (rc)
		return rc;

	/* Try every candidate, even after a match, so timing does not reveal which secret is live.
	 */
	int found = -1;
	for (size_t i = 0; i < nsecrets; i++) {
		if (!secrets[i] || !secrets[i][0])
			continue; /* an empty secret would let anyone sign */
		unsigned char got[DIGEST_LEN];
		hmac_sha256(secrets[i], body, len, got);
		if (CRYPTO_memcmp(got, want, DIGEST_LEN) == 0 && found < 0)
			found = (int)i;
	}
	if (found < 0)
		return -EACCES;
	if (matched)
		*matched = (size_t)found;
	return 0;
}

int ng_webhook_sign(enum ng_webhook_scheme scheme, const char *secret, const void *body, size_t len,
                    char *out)
{
	unsigned char d[DIGEST_LEN];
	hmac_sha256(secret, body, len, d);
	switch (scheme) {
	case NG_WEBHOOK_SHOPIFY:
	case NG_WEBHOOK_WOOCOMMERCE:
		EVP_EncodeBlock((unsigned char *)out, d, DIGEST_LEN);
		return 0;
	case NG_WEBHOOK_NUDGE: {
		size_t n = (size_t)snprintf(out, NG_WEBHOOK_SIGNATURE_MAX, "%s", NUDGE_PREFIX);
		for (size_t i = 0; i < DIGEST_LEN; i++)
			n += (size_t)snprintf(out + n, NG_WEBHOOK_SIGNATURE_MAX - n, "%02x", d[i]);
		return 0;
	}
	}
	out[0] = '\0';
	return -EINVAL;
}
