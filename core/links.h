/*
 * links.h — the signed links nudge puts in messages, and what the pages behind them share.
 *
 * Three kinds: unsubscribe (/u/<token>, core/unsubscribe.c), confirm subscription (/c/<token>,
 * core/confirm.c, email double opt-in) and view in browser (/m/<token>, core/msg_view.c). A token
 * is base64url(customer id, 8 bytes big-endian | kind << 4 | channel, 1 byte | message id, 8 bytes
 * | the first 16 bytes of HMAC-SHA256(secret, the 17 bytes before)): it names no address, only the
 * holder of the secret can make one, and a token of one kind never opens a page of the other.
 * Unsubscribe is kind 0, so unsubscribe links already in people's mailboxes keep working.
 */
#ifndef NG_LINKS_H
#define NG_LINKS_H

#include "db.h"

#include <stddef.h>
#include <stdint.h>

struct ng_httpd;
struct ng_httpd_req;

#define NG_LINK_TOKEN_LEN 44 /* base64url of 33 bytes, no padding; plus NUL below */

enum ng_link_kind { NG_LINK_UNSUBSCRIBE = 0, NG_LINK_CONFIRM = 1, NG_LINK_VIEW = 2 };

/* Writes the token (NUL-terminated; out needs NG_LINK_TOKEN_LEN + 1 bytes). 0, or -EINVAL for an
 * unknown channel. */
int ng_link_token(const unsigned char *secret, size_t secret_len, enum ng_link_kind kind,
                  int64_t customer_id, const char *channel, int64_t message_id, char *out,
                  size_t outlen);

/* Checks a token's signature and kind and reads it back; the channel is a static string. 0 or
 * -EINVAL. */
int ng_link_token_parse(const unsigned char *secret, size_t secret_len, enum ng_link_kind kind,
                        const char *token, int64_t *customer_id, const char **channel,
                        int64_t *message_id);

/* base_url (trailing slashes dropped) + "/" + prefix + "/" + token; malloc'd, or NULL when there
 * is no base URL or secret to make one. */
char *ng_link_url(const char *base_url, const unsigned char *secret, size_t secret_len,
                  enum ng_link_kind kind, int64_t customer_id, const char *channel,
                  int64_t message_id);

/* What the routes behind the links need: the database, the signing secret (copied), the store's
 * name for the pages. */
struct ng_link_routes {
	ng_db *db;
	unsigned char *secret;
	size_t secret_len;
	char *store_name;
};
struct ng_link_routes *ng_link_routes_new(ng_db *db, const unsigned char *secret, size_t secret_len,
                                          const char *store_name);
void ng_link_routes_free(struct ng_link_routes *l);

/* Reads the token of a request to "/<p>/<token>" (p: u, c or m, by kind). 0 or -EINVAL. */
int ng_link_request(const struct ng_link_routes *l, struct ng_httpd_req *req,
                    enum ng_link_kind kind, int64_t *customer_id, const char **channel,
                    int64_t *message_id);

/* The consent ledger's evidence of a click on a link, as JSON text (malloc'd): the client's IP
 * and user agent, the message the link came in, and method. */
char *ng_link_evidence(struct ng_httpd_req *req, int64_t message_id, const char *method);

/* A small HTML page, never cached: a title, a sentence (both trusted HTML), and, when form is not
 * NULL, a POST form back to the same URL whose inside is form. */
void ng_link_page(struct ng_httpd_req *req, int status, const char *title, const char *text,
                  const char *form);

/* s with <, >, & and " escaped, truncated to fit len. */
void ng_link_html_escape(char *out, size_t len, const char *s);

#endif
