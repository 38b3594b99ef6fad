/*
 * twilio_standin.h — a stand-in for Twilio's Programmable Messaging API on 127.0.0.1:0, on the
 * test's libuv loop (nudge's own HTTP server and client underneath).
 *
 * It speaks the shapes of the real service (docs: /work/shared/reference/protocols.md §2):
 * POST /2010-04-01/Accounts/{AccountSid}/Messages.json, form-encoded, Basic auth with the account
 * SID and auth token, To in E.164, exactly one of From and MessagingServiceSid, a
 * Body of at most 1,600 characters, an optional StatusCallback URL; 201 with a Message resource
 * (a fresh SM sid, num_segments as a string) or Twilio's error JSON ({"code", "message",
 * "more_info", "status"}). GET on the same path lists accepted messages, newest first, filtered
 * by To. Outcomes are scripted per To number; status callbacks are posted signed with
 * X-Twilio-Signature exactly as Twilio signs them, to the message's StatusCallback.
 */
#ifndef NG_TWILIO_STANDIN_H
#define NG_TWILIO_STANDIN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct tw_standin;

struct tw_standin_options {
	const char *account_sid; /* AC + 32 */
	const char *auth_token;
	uint64_t delay_ms;          /* every API answer waits this long */
	int auto_callbacks;         /* after a 201, post "sent" and then "delivered" */
	uint64_t callback_delay_ms; /* before each automatic callback; default 5 */
};

/* One accepted message. */
struct tw_standin_msg {
	char sid[40];
	char to[24], from[24], service[40];
	char *body;
	char *status_callback; /* NULL: none */
	int num_segments;
	char status[16];
	int error_code;
};

int tw_standin_start(struct tw_standin **out, uv_loop_t *loop, const struct tw_standin_options *o);
int tw_standin_port(const struct tw_standin *s);

/*
 * What a message to `to` gets from now on: http_status 201 (the default), 400/401/404 with
 * Twilio error `code`, 429 with code 20429 and Retry-After retry_after_s, 500/503, or 0 (the
 * request is read and never answered). keep: the message is accepted (listed, callbacks) even
 * though the answer is an error or never comes — Twilio took it and the answer was lost.
 * undelivered_code: the automatic callbacks end "undelivered" with this ErrorCode (30003…).
 */
void tw_standin_script(struct tw_standin *s, const char *to, int http_status, int code,
                       int retry_after_s, int keep, int undelivered_code);

/* Requests seen on Messages.json (POST and GET), and accepted messages in order. */
size_t tw_standin_requests(const struct tw_standin *s);
size_t tw_standin_count(const struct tw_standin *s);
const struct tw_standin_msg *tw_standin_at(const struct tw_standin *s, size_t i);
/* TCP connections the API side has accepted so far (keep-alive shows as few). */
uint64_t tw_standin_connections(const struct tw_standin *s);
/* Why the last POST was refused by validation ("" if it was not). */
const char *tw_standin_last_refusal(const struct tw_standin *s);

/*
 * Posts a status callback for message sid (to its StatusCallback), signed with the auth token over
 * sign_url (NULL: the StatusCallback URL itself; give another to sign wrongly, or with a port).
 * error_code 0: none. The answer's HTTP status is recorded in the callback log.
 */
int tw_standin_post_status(struct tw_standin *s, const char *sid, const char *status,
                           int error_code, const char *sign_url);
/* Posts an inbound message From → To with Body to url, signed over url. */
int tw_standin_post_inbound(struct tw_standin *s, const char *url, const char *from, const char *to,
                            const char *body);
/* Callbacks posted and not yet answered; the HTTP status of callback i (0: no answer). */
int tw_standin_callbacks_pending(const struct tw_standin *s);
size_t tw_standin_callbacks(const struct tw_standin *s);
int tw_standin_callback_status(const struct tw_standin *s, size_t i);

/* X-Twilio-Signature over url and a form body (the stand-in's own implementation). */
void tw_standin_sign(const char *token, const char *url, const char *form, char out[64]);

/* Answers whatever is held, closes both HTTP ends, frees, then done(arg). */
void tw_standin_stop(struct tw_standin *s, void (*done)(void *arg), void *arg);

#endif
