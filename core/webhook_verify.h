/*
 * webhook_verify.h — checks that a webhook body was signed by someone who knows one of our secrets.
 *
 * Three schemes, all HMAC-SHA256 over the exact raw body bytes (verify before parsing anything):
 *
 *   NG_WEBHOOK_SHOPIFY      X-Shopify-Hmac-Sha256: base64(HMAC-SHA256(app secret, body))
 *   NG_WEBHOOK_WOOCOMMERCE  X-WC-Webhook-Signature: base64(HMAC-SHA256(webhook secret, body))
 *   NG_WEBHOOK_NUDGE        X-Nudge-Signature: sha256=<hex HMAC-SHA256(key, body)>  (/v1/events)
 *
 * Several candidate secrets may be given: the old and the new one while a secret is rotated
 * (Shopify may keep signing with the old one for up to an hour), or one per shop. The signature is
 * decoded once and compared with each candidate's digest in constant time (CRYPTO_memcmp), and
 * every candidate is tried even after a match, so the time taken does not tell which one matched.
 * Whitespace around the header value is ignored; the "sha256=" prefix and hex digits are accepted
 * in either case.
 *
 * Pure functions, no state: safe from any thread.
 */
#ifndef NG_WEBHOOK_VERIFY_H
#define NG_WEBHOOK_VERIFY_H

#include <stddef.h>

enum ng_webhook_scheme {
	NG_WEBHOOK_SHOPIFY,
	NG_WEBHOOK_WOOCOMMERCE,
	NG_WEBHOOK_NUDGE,
};

/* The header that carries the signature for a scheme ("X-Shopify-Hmac-Sha256"…). */
const char *ng_webhook_header(enum ng_webhook_scheme scheme);

/*
 * Verifies `signature` (the header's value, NULL when the header is absent) over body[0..len)
 * against the nsecrets candidate secrets. Returns 0 when one matches (its index in *matched when
 * matched is not NULL), or: -ENOKEY    no secret is configured (nsecrets is 0, or every secret is
 * empty) -EBADMSG   the header is absent, empty, or not a well-formed signature for the scheme
 *   -EACCES    well-formed, but no secret produces it
 * The HTTP layer answers 401 to all three and writes nothing.
 */
int ng_webhook_verify(enum ng_webhook_scheme scheme, const char *signature, const void *body,
                      size_t len, const char *const *secrets, size_t nsecrets, size_t *matched);

/*
 * Writes the header value a sender would put on body with secret (NUL-terminated) into out, which
 * needs NG_WEBHOOK_SIGNATURE_MAX bytes. For the demo sender, the test stand-ins and `nudge event
 * send`. Returns 0, or -EINVAL for an unknown scheme.
 */
#define NG_WEBHOOK_SIGNATURE_MAX 80
int ng_webhook_sign(enum ng_webhook_scheme scheme, const char *secret, const void *body, size_t len,
                    char *out);

#endif
