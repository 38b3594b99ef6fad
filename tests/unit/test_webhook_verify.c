/*
 * test_webhook_verify.c — webhook signatures against vectors computed independently with the
 * openssl command line when the test was written, e.g.
 *
 *   openssl dgst -sha256 -hmac shpss_test_secret -binary shopify/checkouts_create.json | base64
 *   printf '{"type":"signup"}' | openssl dgst -sha256 -hmac api-key-1 -hex
 *
 * plus flipped bytes (in the body, the signature and the secret) that must fail.
 */
#include "testlib.h"
#include "webhook_verify.h"

#include <errno.h>

/* base64(HMAC-SHA256(key, fixture bytes)) as printed by openssl + base64. */
#define SHOPIFY_SIG_NEW "wFN6nKq1LioWxpzg6jMoPKdZj9OAgtZCCsVo/RfICjY=" /* shpss_test_secret */
#define SHOPIFY_SIG_OLD "Cznr0A6mbSTRpuuwBkazct3+4ssC51odaFxSYr+A7Ow=" /* old-secret */
#define WOO_SIG         "yt4zOahsDnpuY1Jt4JWPgYiB4fbIH7JaeqW3A9d0oEo=" /* wc_secret_Ab3 */
#define API_BODY        "{\"type\":\"signup\"}"
#define API_HEX         "ad6ed48865407f27cbff4fa05f0e16cdca0207974127d9d2c63d07aa0868adf6" /* api-key-1 */
#define EMPTY_SIG       "i7mQxAp9YcuXWXqUISUCW+UKyL63RDbjc1uYiTp/ZiA=" /* key "k", empty body */

static char *read_fixture(const char *rel, size_t *len)
{
	const char *top = getenv("NUDGE_TEST_TOP");
	char p[1024];
	snprintf(p, sizeof p, "%s/../shared/fixtures/%s", top ? top : ".", rel);
	FILE *f = fopen(p, "rb");
	if (!f)
		ng_test_fail(__FILE__, __LINE__, "cannot open fixture %s", p);
	static char buf[65536];
	*len = fread(buf, 1, sizeof buf, f);
	fclose(f);
	ASSERT(*len > 0 && *len < sizeof buf);
	return buf;
}

static int verify1(enum ng_webhook_scheme s, const char *sig, const void *body, size_t len,
                   const char *secret)
{
	const char *secrets[] = {secret};
	return ng_webhook_verify(s, sig, body, len, secrets, 1, NULL);
}

static void test_shopify_fixture_signature(void)
{
	size_t len;
	char *body = read_fixture("shopify/checkouts_create.json", &len);
	ASSERT_EQ_INT(verify1(NG_WEBHOOK_SHOPIFY, SHOPIFY_SIG_NEW, body, len, "shpss_test_secret"),
	              0);
	/* The other secret's signature, a wrong secret, a body with one byte flipped. */
	ASSERT_EQ_INT(verify1(NG_WEBHOOK_SHOPIFY, SHOPIFY_SIG_OLD, body, len, "shpss_test_secret"),
	              -EACCES);
	ASSERT_EQ_INT(verify1(NG_WEBHOOK_SHOPIFY, SHOPIFY_SIG_NEW, body, len, "shpss_test_secreT"),
	              -EACCES);
	body[len / 2] ^= 1;
	ASSERT_EQ_INT(verify1(NG_WEBHOOK_SHOPIFY, SHOPIFY_SIG_NEW, body, len, "shpss_test_secret"),
	              -EACCES);
	body[len / 2] ^= 1;
	/* One byte short of the body (a truncated read) must fail too. */
	ASSERT_EQ_INT(
	    verify1(NG_WEBHOOK_SHOPIFY, SHOPIFY_SIG_NEW, body, len - 1, "shpss_test_secret"),
	    -EACCES);
}

static void test_flipped_signature_fails(void)
{
	size_t len;
	char *body = read_fixture("shopify/checkouts_create.json", &len);
	char sig[] = SHOPIFY_SIG_NEW;
	for (size_t i = 0; i < 43; i++) {
		char saved = sig[i];
		sig[i] = sig[i] == 'A' ? 'B' : 'A';
		int rc = verify1(NG_WEBHOOK_SHOPIFY, sig, body, len, "shpss_test_secret");
		/* Position 42 carries two padding bits: changing it may make the text
		 * non-canonical. */
		if (rc != -EACCES && rc != -EBADMSG)
			ng_test_fail(__FILE__, __LINE__, "flipped char %zu: rc %d", i, rc);
		sig[i] = saved;
	}
	ASSERT_EQ_INT(verify1(NG_WEBHOOK_SHOPIFY, sig, body, len, "shpss_test_secret"), 0);
}

static void test_rotation_and_several_shops(void)
{
	size_t len, matched = 99;
	char *body = read_fixture("shopify/checkouts_create.json", &len);
	const char *secrets[] = {"", "unrelated", "old-secret", "shpss_test_secret"};
	ASSERT_EQ_INT(
	    ng_webhook_verify(NG_WEBHOOK_SHOPIFY, SHOPIFY_SIG_NEW, body, len, secrets, 4, &matched),
	    0);
	ASSERT_EQ_INT(matched, 3);
	ASSERT_EQ_INT(
	    ng_webhook_verify(NG_WEBHOOK_SHOPIFY, SHOPIFY_SIG_OLD, body, len, secrets, 4, &matched),
	    0);
	ASSERT_EQ_INT(matched, 2);
	ASSERT_EQ_INT(
	    ng_webhook_verify(NG_WEBHOOK_SHOPIFY, SHOPIFY_SIG_OLD, body, len, secrets, 2, &matched),
	    -EACCES);
}

static void test_whitespace_tolerated(void)
{
	size_t len;
	char *body = read_fixture("woocommerce/order_created.json", &len);
	ASSERT_EQ_INT(verify1(NG_WEBHOOK_WOOCOMMERCE, WOO_SIG, body, len, "wc_secret_Ab3"), 0);
	ASSERT_EQ_INT(
	    verify1(NG_WEBHOOK_WOOCOMMERCE, "  " WOO_SIG "\r\n", body, len, "wc_secret_Ab3"), 0);
	ASSERT_EQ_INT(verify1(NG_WEBHOOK_WOOCOMMERCE, "\t" WOO_SIG " ", body, len, "wc_secret_Ab4"),
	              -EACCES);
	/* Whitespace inside the value is not tolerated: it is not what anyone sends. */
	ASSERT_EQ_INT(verify1(NG_WEBHOOK_WOOCOMMERCE,
	                      "yt4zOahsDnpuY1Jt4JWPgYiB4fbIH7Ja eqW3A9d0oEo=", body, len,
	                      "wc_secret_Ab3"),
	              -EBADMSG);
}

static void test_malformed_and_missing(void)
{
	const char *b = API_BODY;
	size_t n = strlen(b);
	ASSERT_EQ_INT(verify1(NG_WEBHOOK_SHOPIFY, NULL, b, n, "k"), -EBADMSG);
	ASSERT_EQ_INT(verify1(NG_WEBHOOK_SHOPIFY, "", b, n, "k"), -EBADMSG);
	ASSERT_EQ_INT(verify1(NG_WEBHOOK_SHOPIFY, "   ", b, n, "k"), -EBADMSG);
	/* Missing padding, a digest of another length, non-base64 characters. */
	ASSERT_EQ_INT(
	    verify1(NG_WEBHOOK_SHOPIFY, "wFN6nKq1LioWxpzg6jMoPKdZj9OAgtZCCsVo/RfICjY", b, n, "k"),
	    -EBADMSG);
	ASSERT_EQ_INT(verify1(NG_WEBHOOK_SHOPIFY, "aGVsbG8=", b, n, "k"), -EBADMSG);
	ASSERT_EQ_INT(
	    verify1(NG_WEBHOOK_SHOPIFY, "wFN6nKq1LioWxpzg6jMoPKdZj9OAgtZCCsVo*RfICjY=", b, n, "k"),
	    -EBADMSG);
	ASSERT_EQ_INT(verify1(NG_WEBHOOK_NUDGE, API_HEX, b, n, "api-key-1"), -EBADMSG);
	ASSERT_EQ_INT(verify1(NG_WEBHOOK_NUDGE, "sha1=" API_HEX, b, n, "api-key-1"), -EBADMSG);
	ASSERT_EQ_INT(verify1(NG_WEBHOOK_NUDGE, "sha256=" API_HEX "00", b, n, "api-key-1"),
	              -EBADMSG);
	ASSERT_EQ_INT(
	    verify1(NG_WEBHOOK_NUDGE,
	            "sha256=zd6ed48865407f27cbff4fa05f0e16cdca0207974127d9d2c63d07aa0868adf6", b, n,
	            "api-key-1"),
	    -EBADMSG);
}

static void test_no_secret_configured(void)
{
	const char *none[] = {"", NULL};
	ASSERT_EQ_INT(ng_webhook_verify(NG_WEBHOOK_SHOPIFY, SHOPIFY_SIG_NEW, "x", 1, none, 2, NULL),
	              -ENOKEY);
	ASSERT_EQ_INT(ng_webhook_verify(NG_WEBHOOK_SHOPIFY, SHOPIFY_SIG_NEW, "x", 1, NULL, 0, NULL),
	              -ENOKEY);
}

static void test_nudge_hex_signature(void)
{
	const char *b = API_BODY;
	size_t n = strlen(b);
	ASSERT_EQ_INT(verify1(NG_WEBHOOK_NUDGE, "sha256=" API_HEX, b, n, "api-key-1"), 0);
	/* Prefix and digits in upper case, surrounding blanks. */
	char upper[128];
	snprintf(upper, sizeof upper, " SHA256=%s ", API_HEX);
	for (char *p = upper; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	ASSERT_EQ_INT(verify1(NG_WEBHOOK_NUDGE, upper, b, n, "api-key-1"), 0);
	ASSERT_EQ_INT(verify1(NG_WEBHOOK_NUDGE, "sha256=" API_HEX, b, n, "api-key-2"), -EACCES);
	char flipped[] = "sha256=" API_HEX;
	flipped[sizeof flipped - 2] = flipped[sizeof flipped - 2] == '6' ? '7' : '6';
	ASSERT_EQ_INT(verify1(NG_WEBHOOK_NUDGE, flipped, b, n, "api-key-1"), -EACCES);
}

static void test_sign_matches_openssl(void)
{
	char out[NG_WEBHOOK_SIGNATURE_MAX];
	size_t len;
	char *body = read_fixture("shopify/checkouts_create.json", &len);
	ASSERT_EQ_INT(ng_webhook_sign(NG_WEBHOOK_SHOPIFY, "shpss_test_secret", body, len, out), 0);
	ASSERT_EQ_STR(out, SHOPIFY_SIG_NEW);
	ASSERT_EQ_INT(
	    ng_webhook_sign(NG_WEBHOOK_NUDGE, "api-key-1", API_BODY, strlen(API_BODY), out), 0);
	ASSERT_EQ_STR(out, "sha256=" API_HEX);
	ASSERT_EQ_INT(ng_webhook_sign(NG_WEBHOOK_WOOCOMMERCE, "k", "", 0, out), 0);
	ASSERT_EQ_STR(out, EMPTY_SIG);
	ASSERT_EQ_INT(verify1(NG_WEBHOOK_WOOCOMMERCE, EMPTY_SIG, "", 0, "k"), 0);
	ASSERT_EQ_STR(ng_webhook_header(NG_WEBHOOK_SHOPIFY), "X-Shopify-Hmac-Sha256");
	ASSERT_EQ_STR(ng_webhook_header(NG_WEBHOOK_WOOCOMMERCE), "X-WC-Webhook-Signature");
	ASSERT_EQ_STR(ng_webhook_header(NG_WEBHOOK_NUDGE), "X-Nudge-Signature");
}

NG_TESTS(NG_TEST(test_shopify_fixture_signature), NG_TEST(test_flipped_signature_fails),
         NG_TEST(test_rotation_and_several_shops), NG_TEST(test_whitespace_tolerated),
         NG_TEST(test_malformed_and_missing), NG_TEST(test_no_secret_configured),
         NG_TEST(test_nudge_hex_signature), NG_TEST(test_sign_matches_openssl), )
