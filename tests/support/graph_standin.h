/*
 * graph_standin.h — a stand-in for the Messenger Send API of Meta's Graph API on 127.0.0.1:0, on
 * the test's libuv loop (nudge's own HTTP server and client underneath), and a driver for the
 * webhook Meta calls.
 *
 * It speaks the shapes of the real service (/work/shared/reference/protocols.md §3):
 * POST /vNN.N/me/messages?access_token=…&appsecret_proof=… with a JSON body; the token is checked
 * (190 when wrong), the proof (hex HMAC-SHA256 of the token with the app secret; code 100 when
 * wrong or, if required, missing), then the body the way Graph checks it: recipient.id, message
 * or sender_action, messaging_type (RESPONSE, UPDATE, MESSAGE_TAG), a tag with MESSAGE_TAG and
 * only then, text of at most 2,000 characters. When the test gives it a clock, it also enforces
 * the 24-hour window against each PSID's last interaction (which posting an event sets): RESPONSE
 * and UPDATE outside it get 10/2018278. Success is 200 {"recipient_id", "message_id"}; errors are
 * Graph's envelope {"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}.
 * Outcomes can be scripted per PSID.
 */
#ifndef NG_GRAPH_STANDIN_H
#define NG_GRAPH_STANDIN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct gr_standin;

struct gr_standin_options {
	const char *access_token;
	const char *app_secret;
	const char *page_id; /* in posted events; default "1234567890" */
	int require_proof;   /* a request without appsecret_proof is refused */
	uint64_t delay_ms;   /* every API answer waits this long */
	/* The clock the window is judged by (the test's virtual clock); NULL: no window checks. */
	int64_t (*now_ms)(void *arg);
	void *now_arg;
};

/* One accepted message. */
struct gr_standin_msg {
	char psid[40];
	char messaging_type[24];
	char tag[40];
	char mid[64];
	char *text;   /* message.text, or the button template's text */
	int nbuttons; /* a button template's buttons; 0: plain text */
};

int gr_standin_start(struct gr_standin **out, uv_loop_t *loop, const struct gr_standin_options *o);
int gr_standin_port(const struct gr_standin *s);

/*
 * What a message to psid gets from now on: http_status 200 (the default), 400/429/500 with the
 * Graph error code and subcode (0: none), or 0 (the request is read and never answered).
 */
void gr_standin_script(struct gr_standin *s, const char *psid, int http_status, int code,
                       int subcode);
/* Sets the person's last interaction for the window check (posting an event does too). */
void gr_standin_seen(struct gr_standin *s, const char *psid, int64_t at_ms);

/* Requests seen on /me/messages, accepted messages in order, and why the last was refused
 * ("" if it was not): "400 100/0 (#100) The parameter recipient is required". */
size_t gr_standin_requests(const struct gr_standin *s);
size_t gr_standin_count(const struct gr_standin *s);
const struct gr_standin_msg *gr_standin_at(const struct gr_standin *s, size_t i);
const char *gr_standin_last_refusal(const struct gr_standin *s);

/* One webhook messaging item. */
struct gr_event {
	const char *psid;     /* sender.id; NULL: none (a checkbox opt-in) */
	const char *kind;     /* "message", "echo", "postback", "referral", "optin", "read" */
	const char *text;     /* message text, or postback title */
	const char *payload;  /* quick_reply payload (message), or postback payload */
	const char *ref;      /* referral.ref (postback, referral) or optin.ref */
	const char *mid;      /* NULL: a fresh one */
	int64_t timestamp_ms; /* 0: the stand-in's clock, else the real time */
};

/*
 * Posts one page entry with these messaging items to url, signed with X-Hub-Signature-256 (with
 * bad_signature, over something else). Each item's sender becomes seen at its timestamp (unless
 * the signature is bad). The answer is recorded as a callback.
 */
int gr_standin_post_events(struct gr_standin *s, const char *url, const struct gr_event *ev,
                           size_t n, int bad_signature);
/* Meta's subscription check: GET url?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…. */
int gr_standin_verify(struct gr_standin *s, const char *url, const char *verify_token,
                      const char *challenge);
/* Calls made and not yet answered; the HTTP status (0: no answer) and body of call i. */
int gr_standin_callbacks_pending(const struct gr_standin *s);
size_t gr_standin_callbacks(const struct gr_standin *s);
int gr_standin_callback_status(const struct gr_standin *s, size_t i);
const char *gr_standin_callback_body(const struct gr_standin *s, size_t i);

/* "sha256=" and the hex HMAC-SHA256 of body with secret (the stand-in's own implementation). */
void gr_standin_sign(const char *secret, const char *body, size_t len, char out[80]);

/* Answers whatever is held, closes both HTTP ends, frees, then done(arg). */
void gr_standin_stop(struct gr_standin *s, void (*done)(void *arg), void *arg);

#endif
