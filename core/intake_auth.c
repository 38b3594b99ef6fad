/*
 * intake_auth.c — who may post events: which configured secrets apply to a request (the shop's,
 * the WooCommerce site's, the API keys) and the check over the raw body (webhook_verify.h).
 */
#include "httpd.h"
#include "intake.h"
#include "ng.h"
#include "webhook_verify.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MAX_CANDIDATES 64

/* Candidates among list whose match is NULL or equals want (case-insensitively: domains). */
static size_t candidates(const struct ng_intake_secret *list, size_t n, const char *want,
                         const char **out)
{
	size_t k = 0;
	for (size_t i = 0; i < n && k < MAX_CANDIDATES; i++)
		if (!list[i].match || (want && strcasecmp(list[i].match, want) == 0))
			out[k++] = list[i].secret;
	return k;
}

/* Compares a presented bearer key with each API key in constant time (digests of equal length),
 * trying every key so the time does not say which one matched. */
static int bearer_ok(const struct ng_intake_config *cfg, const char *presented)
{
	unsigned char got[SHA256_DIGEST_LENGTH], want[SHA256_DIGEST_LENGTH];
	SHA256((const unsigned char *)presented, strlen(presented), got);
	int ok = 0;
	for (size_t i = 0; i < cfg->napi_keys; i++) {
		if (!cfg->api_keys[i] || !*cfg->api_keys[i])
			continue;
		SHA256((const unsigned char *)cfg->api_keys[i], strlen(cfg->api_keys[i]), want);
		ok |= CRYPTO_memcmp(got, want, sizeof got) == 0;
	}
	return ok;
}

static int verify(enum ng_webhook_scheme scheme, struct ng_httpd_req *req, const char **secrets,
                  size_t n, char *err, size_t errlen)
{
	size_t len;
	const char *body = ng_httpd_body(req, &len);
	const char *hdr = ng_webhook_header(scheme);
	int rc = ng_webhook_verify(scheme, ng_httpd_header(req, hdr), body ? body : "", len,
	                           secrets, n, NULL);
	if (rc == 0)
		return 0;
	snprintf(err, errlen, "%s",
	         rc == -ENOKEY    ? "no secret is configured for this sender"
	         : rc == -EBADMSG ? "the signature header is missing or malformed"
	                          : "the signature does not match");
	if (rc == -EBADMSG && !ng_httpd_header(req, hdr))
		snprintf(err, errlen, "no %s header", hdr);
	return -EACCES;
}

int ng_intake__authenticate(const struct ng_intake_config *cfg, const char *source,
                            struct ng_httpd_req *req, char *err, size_t errlen)
{
	const char *secrets[MAX_CANDIDATES];
	if (strcmp(source, "shopify") == 0) {
		const char *shop = ng_httpd_header(req, "X-Shopify-Shop-Domain");
		size_t n = candidates(cfg->shopify, cfg->nshopify, shop, secrets);
		if (n == 0) {
			snprintf(err, errlen, "no secret is configured for shop '%s'",
			         shop ? shop : "");
			return -EACCES;
		}
		return verify(NG_WEBHOOK_SHOPIFY, req, secrets, n, err, errlen);
	}
	if (strcmp(source, "woocommerce") == 0) {
		const char *site = ng_httpd_header(req, "X-WC-Webhook-Source");
		size_t n = candidates(cfg->woocommerce, cfg->nwoocommerce, site, secrets);
		return verify(NG_WEBHOOK_WOOCOMMERCE, req, secrets, n, err, errlen);
	}
	/* The API: a bearer key, or an HMAC signature with a key. */
	const char *auth = ng_httpd_header(req, "Authorization");
	if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
		const char *k = auth + 7;
		while (*k == ' ')
			k++;
		if (*k && bearer_ok(cfg, k))
			return 0;
		snprintf(err, errlen, "the API key is not one of ours");
		return -EACCES;
	}
	size_t n = 0;
	for (size_t i = 0; i < cfg->napi_keys && n < MAX_CANDIDATES; i++)
		secrets[n++] = cfg->api_keys[i];
	int rc = verify(NG_WEBHOOK_NUDGE, req, secrets, n, err, errlen);
	if (rc && !ng_httpd_header(req, "X-Nudge-Signature"))
		snprintf(err, errlen,
		         "send an API key (Authorization: Bearer KEY) or an "
		         "X-Nudge-Signature");
	return rc;
}
