/*
 * messenger.h — what the Facebook Messenger plugin's files share.
 *
 *   messenger.c          the descriptor, init/shutdown, health, the per-person window table
 *   messenger_send.c     the policy (window, messaging type, tag), one Send API request, and what
 *                        Graph's answer means
 *   messenger_inbound.c  the webhook: GET verification, X-Hub-Signature-256, events and links
 *
 * Everything runs on the loop thread; requests go through the host's shared HTTP client.
 */
#ifndef NG_MESSENGER_PLUGIN_H
#define NG_MESSENGER_PLUGIN_H

#include <nudge/plugin.h>

#include <stddef.h>
#include <stdint.h>

/* A growing string. */
struct ms_buf {
	char *s;
	size_t len, cap;
};
void ms_buf_add(struct ms_buf *b, const char *s, size_t n);
void ms_buf_str(struct ms_buf *b, const char *s);
/* Appends s percent-encoded (everything but A-Z a-z 0-9 - _ . ~). */
void ms_urlencode(struct ms_buf *b, const char *s);

/* Lowercase hex HMAC-SHA256 of data with key: 64 characters and a NUL. */
#define MS_HEX_SHA256 65
void ms_hmac_hex(const char *key, const void *data, size_t len, char out[MS_HEX_SHA256]);

/* ---- the window table (messenger.c) --------------------------------------------------------- */

/* One person (PSID) and the last time they wrote to the page, pressed a button or followed a
 * link: the start of their standard messaging window. */
struct ms_person {
	char *psid;
	int64_t last_ms;
	struct ms_person *next;
};

struct ms_inst;
/* The person's last interaction in ms since the epoch; 0: none known. */
int64_t ms_last_seen(const struct ms_inst *inst, const char *psid);
/* Records an interaction at at_ms (kept if later than what is known). */
void ms_seen(struct ms_inst *inst, const char *psid, int64_t at_ms);
/* Forgets the person's window (Graph said it is closed). */
void ms_forget_window(struct ms_inst *inst, const char *psid);

/* ---- the instance (messenger.c) ------------------------------------------------------------- */

/* One message from send() to its completion. */
struct ms_item {
	struct ms_inst *inst;
	const struct nudge_message *msg;
	nudge_send_done_fn *done;
	void *done_arg;
	/* A result decided before any request (outside the window, a bad message): delivered from
	 * a timer, because send() must never complete inside itself. */
	struct nudge_timer *early_timer;
	int early_status, early_code;
	char early_reason[240];
	struct ms_item *prev, *next; /* in flight, or completing early */
};

struct ms_inst {
	const struct nudge_host *host;
	struct nudge_instance *self;
	/* settings */
	const char *token, *app_secret, *verify_token, *page_id, *ca_file;
	char *messages_url; /* base/version/me/messages?access_token=…&appsecret_proof=… */
	char *version;      /* "v25.0", for logs */
	int64_t window_ms;
	int64_t timeout_ms;
	int max_attempts_transient;
	/* state */
	struct ms_person **people;
	size_t npeople, people_cap; /* entries, buckets */
	struct ms_item *in_flight, *early;
	int n_in_flight;
	int pending_inbound; /* webhook calls not yet answered */
	int token_refused;   /* Graph said 190 (or a permission error); cleared by a success */
	int restricted;      /* 10 / 1893063: the page may not send for now */
	int link_warned;     /* a 1.1 host ignores links: said once */
	char last_problem[200];
	int stopping;
	void (*shutdown_done)(void *arg);
	void *shutdown_arg;
};

/* messenger.c */
void ms_complete(struct ms_item *it, const struct nudge_send_result *r);
void ms_complete_later(struct ms_item *it, int status, int code, const char *reason);
void ms_link(struct ms_item **list, struct ms_item *it);
void ms_unlink(struct ms_item **list, struct ms_item *it);
void ms_maybe_finish(struct ms_inst *inst);

/* messenger_send.c: decides, builds and starts one send (or completes it early). */
void ms_start_send(struct ms_item *it);

/* messenger_inbound.c */
void ms_inbound(void *state, const struct nudge_inbound_request *req, nudge_inbound_done_fn *done,
                void *done_arg);

#endif
