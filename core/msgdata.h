/*
 * msgdata.h — the data a message is rendered with, as core/msgtmpl.h describes it: the snapshot
 * the workflow stored with the message, plus `customer`, `store`, `message` {id, key, view_url}
 * and the signed links — `unsubscribe_url` for marketing, `confirm_url` for an email whose
 * snapshot asks for confirm_subscription (double opt-in). The dispatcher renders what it sends
 * with it, and /m/<token> (core/msg_view.c) renders the same message again for a browser.
 */
#ifndef NG_MSGDATA_H
#define NG_MSGDATA_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* From the configuration's `store` keys, and the secret that signs links. Borrowed. */
struct ng_msgdata_store {
	const char *name, *postal_address, *base_url, *timezone;
	const unsigned char *secret;
	size_t secret_len;
};

/* A message's idempotency key, also its Message-ID's local part: customer id, message id. */
#define NG_MSGDATA_KEY_FMT "nudge-%lld-%lld"

struct ng_msgdata_msg {
	int64_t customer_id, message_id;
	const char *channel;
	int marketing;
	const char *key; /* NG_MSGDATA_KEY_FMT */
};

/* A new object (the caller owns it). customer is borrowed (NULL: {}); snapshot may be NULL (then
 * {}); a snapshot that is not a JSON object gives NULL with the reason in err (errlen bytes) and
 * nothing else set. When unsub_url is not NULL it receives the unsubscribe link (malloc'd, or NULL
 * for transactional messages and when there is no base URL). */
json_t *ng_msgdata(const struct ng_msgdata_store *s, const struct ng_msgdata_msg *m,
                   const char *snapshot, json_t *customer, char **unsub_url, char *err,
                   size_t errlen);

#endif
