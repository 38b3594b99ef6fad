/*
 * unsubscribe.h — unsubscribe links: the routes GET /u/<token> (a confirmation page) and
 * POST /u/<token> (RFC 8058 one-click: marketing consent for that channel withdrawn at once,
 * queued marketing messages to it cancelled). Tokens are core/links.h's, of kind unsubscribe.
 */
#ifndef NG_UNSUBSCRIBE_H
#define NG_UNSUBSCRIBE_H

#include "links.h"

#define NG_UNSUB_TOKEN_LEN NG_LINK_TOKEN_LEN

static inline int ng_unsub_token(const unsigned char *secret, size_t secret_len,
                                 int64_t customer_id, const char *channel, int64_t message_id,
                                 char *out, size_t outlen)
{
	return ng_link_token(secret, secret_len, NG_LINK_UNSUBSCRIBE, customer_id, channel,
	                     message_id, out, outlen);
}

static inline int ng_unsub_token_parse(const unsigned char *secret, size_t secret_len,
                                       const char *token, int64_t *customer_id,
                                       const char **channel, int64_t *message_id)
{
	return ng_link_token_parse(secret, secret_len, NG_LINK_UNSUBSCRIBE, token, customer_id,
	                           channel, message_id);
}

/* Registers GET and POST under /u/ on srv; l outlives the server. */
void ng_unsubscribe_routes(struct ng_httpd *srv, struct ng_link_routes *l);

#endif
