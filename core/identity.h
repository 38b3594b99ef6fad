/*
 * identity.h — the normal form of the two identities customers are matched on: email addresses and
 * phone numbers. Every source (Shopify, WooCommerce, /v1/events, imports) goes through these two
 * functions so that "Jane@Example.com " and "jane@example.com", or "(555) 123-4567" and
 * "+1 555 123 4567", are the same customer.
 *
 * Email: surrounding whitespace trimmed, the whole address lower-cased (ASCII letters; bytes of
 * internationalised addresses are kept as they are). Accepted: local@domain with exactly one '@',
 * no whitespace or control characters, none of ( ) < > [ ] \ , ; : " anywhere, no leading, trailing
 * or doubled dot in either part, a dot in the domain, a last label of at least two characters, at
 * most 64 bytes before the '@' and 254 in all. (Deliberately stricter than RFC 5322: quoted local
 * parts and address literals are legal but are typing mistakes in a checkout form.)
 *
 * Phone, to E.164 ("+" and 8 to 15 digits, the first not 0):
 *   - spaces, dashes, dots, slashes and parentheses are dropped; a "(0)" after an international
 *     prefix ("+49 (0)30 …") is dropped with them; letters are refused ("555-555-BILL", "x123");
 *   - "+" or "00" starts an international number; with default country "1", so does "011";
 *   - anything else is national and needs the configured default country calling code
 *     (1 to 3 digits): for "1" (NANP) the number must have 10 digits (an 11-digit number starting
 *     with 1 keeps its 1 as the country code) and an area code starting with 2–9; for every other
 *     code one leading trunk 0 is dropped ("030 1234567" with "49" → "+49301234567"), except for
 *     Italy ("39"), whose numbers keep their 0 in E.164.
 *
 * Pure functions: safe from any thread.
 */
#ifndef NG_IDENTITY_H
#define NG_IDENTITY_H

#define NG_IDENTITY_EMAIL_MAX 255 /* 254 bytes and the NUL */
#define NG_IDENTITY_PHONE_MAX 17  /* "+", 15 digits and the NUL */

/*
 * Normalises an email address into out. Returns 0, or -EINVAL with *why (when why is not NULL) set
 * to a static phrase that completes "the address …", e.g. "has no '@'", "contains spaces".
 */
int ng_identity_email(const char *in, char out[NG_IDENTITY_EMAIL_MAX], const char **why);

/*
 * Normalises a phone number to E.164 into out. default_cc is the country calling code for national
 * numbers ("1", "49"; NULL or "" when none is configured). Returns 0, or -EINVAL with *why set to a
 * phrase that completes "the number …", e.g. "contains letters".
 */
int ng_identity_phone(const char *in, const char *default_cc, char out[NG_IDENTITY_PHONE_MAX],
                      const char **why);

/* 1 when cc is a plausible country calling code (1 to 3 digits, not starting with 0). */
int ng_identity_country_code_valid(const char *cc);

#endif
