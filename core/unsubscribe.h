/*
 * unsubscribe.h — unsubscribe links: signed tokens, and the routes GET /u/<token> (a confirmation
 * page) and POST /u/<token> (RFC 8058 one-click: marketing consent for that channel withdrawn at
 * once, queued marketing messages to it cancelled).
 *
 * A token is base64url(customer id, 8 bytes big-endian | channel, 1 byte | message id, 8 bytes |
 * the first 16 bytes of HMAC-SHA256(secret, the 17 bytes before)): it names no address, and only
 * the holder of the secret can make one.
 */
#ifndef NG_UNSUBSCRIBE_H
#define NG_UNSUBSCRIBE_H

#include "db.h"

#include <stddef.h>
#include <stdint.h>

struct ng_httpd;

#define NG_UNSUB_TOKEN_LEN 44 /* base64url of 33 bytes, no padding; plus NUL below */

/* Writes the token (NUL-terminated; out needs NG_UNSUB_TOKEN_LEN + 1 bytes). 0, or -EINVAL for an
 * unknown channel. */
int ng_unsub_token(const unsigned char *secret, size_t secret_len, int64_t customer_id,
                   const char *channel, int64_t message_id, char *out, size_t outlen);

/* Checks a token's signature and reads it back; the channel is a static string. 0 or -EINVAL. */
int ng_unsub_token_parse(const unsigned char *secret, size_t secret_len, const char *token,
                         int64_t *customer_id, const char **channel, int64_t *message_id);

struct ng_unsubscribe;

/* Registers GET and POST under /u/ on srv. The secret is copied. */
struct ng_unsubscribe *ng_unsubscribe_routes(struct ng_httpd *srv, ng_db *db,
                                             const unsigned char *secret, size_t secret_len,
                                             const char *store_name);
void ng_unsubscribe_free(struct ng_unsubscribe *u);

#endif
