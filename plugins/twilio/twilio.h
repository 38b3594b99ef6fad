/*
 * twilio.h — what the Twilio SMS plugin's files share.
 *
 *   twilio.c          the descriptor, init/shutdown, health, the per-sender queues and rate limit
 *   twilio_send.c     one Messages.json request, reading its answer into a send result; reconcile
 *   twilio_inbound.c  webhooks: the signature, status callbacks, inbound SMS (STOP/START/HELP)
 *   twilio_text.c     pure helpers: E.164, GSM-7/UCS-2 segments, form encoding, keywords, HMAC
 *
 * Everything runs on the loop thread; requests go through the host's shared HTTP client.
 */
#ifndef NG_TWILIO_PLUGIN_H
#define NG_TWILIO_PLUGIN_H

#include <nudge/plugin.h>

#include <stddef.h>
#include <stdint.h>

/* ---- twilio_text.c ------------------------------------------------------------------------ */

#define TW_E164_MAX 17 /* "+", 15 digits, NUL */

/* Normalises a phone number to E.164 (see twilio_text.c for the rules); 0 or -EINVAL. */
int tw_e164(const char *in, const char *default_cc, char out[TW_E164_MAX]);

enum tw_encoding { TW_GSM7 = 1, TW_UCS2 = 2 };

/*
 * How a body travels as SMS: GSM-7 when every character is in the GSM 03.38 alphabet (extension
 * characters such as € [ ] { } take two septets), else UCS-2 (UTF-16 code units; outside the BMP a
 * character takes two). One segment holds 160 septets / 70 units; a longer message is split into
 * segments of 153 / 67, never splitting an escape pair or a surrogate pair. Returns the number of
 * segments (0 for an empty body, -EINVAL for invalid UTF-8); *units receives the septets or
 * UTF-16 units (characters, for the 1,600-character limit: *chars).
 */
int tw_segments(const char *body, enum tw_encoding *enc, size_t *units, size_t *chars);
const char *tw_encoding_name(enum tw_encoding enc);

/* A growing string. */
struct tw_buf {
	char *s;
	size_t len, cap;
};
void tw_buf_add(struct tw_buf *b, const char *s, size_t n);
void tw_buf_str(struct tw_buf *b, const char *s);
/* Appends name=value, form-encoded, with '&' before all but the first. */
void tw_form_add(struct tw_buf *b, const char *name, const char *value);
/* Appends s percent-encoded (everything but A-Z a-z 0-9 - _ . ~). */
void tw_urlencode(struct tw_buf *b, const char *s);

/* One decoded form field. */
struct tw_param {
	char *name, *value;
};
/* Decodes an application/x-www-form-urlencoded body ('+' is a space); *out is malloc'd. */
size_t tw_form_parse(const char *body, size_t len, struct tw_param **out);
void tw_params_free(struct tw_param *p, size_t n);
const char *tw_param(const struct tw_param *p, size_t n, const char *name);

/*
 * X-Twilio-Signature: base64(HMAC-SHA1(auth token, url + every POST parameter sorted by name,
 * as name immediately followed by value)). tw_sign writes it (29 bytes with NUL) to out.
 */
#define TW_SIGNATURE_MAX 32
void tw_sign(const char *token, const char *url, const struct tw_param *p, size_t n,
             char out[TW_SIGNATURE_MAX]);
/* 1 if sig matches url as given, with its port removed, or with the default port added. */
int tw_signature_ok(const char *token, const char *url, const struct tw_param *p, size_t n,
                    const char *sig);

/* An opt-out / opt-in keyword after trimming, upper-casing and dropping spaces. */
enum tw_keyword { TW_KW_NONE, TW_KW_STOP, TW_KW_START, TW_KW_HELP };
enum tw_keyword tw_keyword(const char *body, char *norm, size_t normlen);

/* "Thu, 24 Aug 2023 05:01:45 +0000" → ms since the epoch; -1 when it does not parse. */
int64_t tw_parse_date(const char *s);

/* ---- the instance (twilio.c) -------------------------------------------------------------- */

struct tw_inst;

/* One message from send() to its completion. */
struct tw_item {
	struct tw_inst *inst;
	const struct nudge_message *msg;
	nudge_send_done_fn *done;
	void *done_arg;
	int reconcile; /* a reconcile lookup, not a send */
	struct tw_sender *sender;
	char to[TW_E164_MAX];
	int segments;
	enum tw_encoding enc;
	/* A result decided before any request (bad number, refused request): delivered from a
	 * timer, because send() must never complete inside itself. */
	struct nudge_timer *early_timer;
	int early_status, early_suppress, early_code;
	char early_reason[200];
	struct tw_item *next;            /* in its sender's queue */
	struct tw_item *prev_f, *next_f; /* in flight */
};

/* One From number (or Messaging Service): its own queue and rate. */
struct tw_sender {
	char *id;                    /* the From value or the MG sid */
	int is_service;              /* id is a MessagingServiceSid */
	int64_t next_ms;             /* the earliest time the next message may start */
	struct tw_item *head, *tail; /* waiting */
	struct tw_sender *next;
};

/* The last delivery rank seen per message SID, so stale or repeated callbacks change nothing. */
#define TW_SEEN_SLOTS 4096
struct tw_seen {
	char sid[40];
	int rank;
};

struct tw_inst {
	const struct nudge_host *host;
	struct nudge_instance *self;
	/* settings */
	const char *account_sid, *auth_token, *api_key_sid, *api_key_secret;
	const char *from, *service_sid;
	const char *status_callback_url;
	const char *default_country;
	const char *ca_file;
	char *messages_url; /* base_url + /2010-04-01/Accounts/{sid}/Messages.json */
	double rate;        /* segments per second per sender; 0: no limit */
	int max_concurrent;
	int64_t timeout_ms;
	int64_t reconcile_window_ms;
	/* state */
	struct tw_sender *senders;
	struct tw_item *in_flight;
	int n_in_flight;
	struct tw_item *early; /* completing from a 0 ms timer */
	struct nudge_timer *pump_timer;
	int64_t pump_at;
	int pending_reports;  /* report_* dones outstanding */
	int pending_inbound;  /* webhook calls not yet answered */
	int auth_failed;      /* Twilio refused our credentials; cleared by a success */
	int ambiguous_in_row; /* 5xx / timeouts since the last clean answer */
	char last_problem[200];
	int stopping;
	void (*shutdown_done)(void *arg);
	void *shutdown_arg;
	struct tw_seen *seen;
};

/* twilio.c: pumps the queues (after a completion, a timer, a new message). */
void tw_pump(struct tw_inst *inst);
/* twilio.c: the shutdown finishes once nothing is in flight. */
void tw_maybe_finish(struct tw_inst *inst);

/* twilio_send.c */
void tw_start_send(struct tw_item *it);
void tw_start_reconcile(struct tw_item *it);
/* Completes it on a timer (0 ms) with this outcome: for results known before any request. */
void tw_complete_later(struct tw_item *it, int status, int suppress, int code, const char *reason);
/* Completes an item (send or reconcile) and frees it; it must be out of every list. */
void tw_complete(struct tw_item *it, const struct nudge_send_result *r);
/* Reports consent for an address and counts it until its done (twilio_inbound.c). */
int tw_report_consent(struct tw_inst *inst, const char *address, int granted, const char *keyword,
                      const char *source, const char *provider_id, nudge_report_done_fn *done,
                      void *arg);

/* twilio_inbound.c */
void tw_inbound(void *state, const struct nudge_inbound_request *req, nudge_inbound_done_fn *done,
                void *done_arg);

#endif
