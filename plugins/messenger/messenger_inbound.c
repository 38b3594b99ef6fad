/*
 * messenger_inbound.c — what Meta sends to /v1/webhooks/<instance>: the subscription check (GET)
 * and page events (POST).
 *
 * GET: hub.mode=subscribe with our verify token is answered with the bare hub.challenge; anything
 * else 403. POST: nothing is believed before X-Hub-Signature-256 (sha256=HMAC of the raw body with
 * the app secret) checks out: otherwise 403 and no change. Then every messaging item of every
 * entry counts: a message (not an echo of our own), a postback (a button press), a referral (an
 * m.me link followed) or an opt-in records the person's interaction time — which opens their
 * 24-hour window — and becomes an event: `messenger.message` for messages and postbacks (kind
 * says which), `messenger.referral`, `messenger.optin`. When the item says who the person is — a
 * `ref` the store put into an m.me link or a plugin, or an email address or phone number the
 * person typed or picked from a quick reply — the event carries it, and nudge links the PSID to
 * that customer (ABI 1.2). Meta gets its 200 after nudge has recorded the events, so a 2xx means
 * they are kept; a 500 makes Meta deliver the batch again, and a redelivered event is one event
 * (dedupe key: the message id).
 */
#include "messenger.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* One webhook call while its events are being recorded. */
struct ms_call {
	struct ms_inst *inst;
	nudge_inbound_done_fn *done;
	void *done_arg;
	int waiting; /* reports without their done, plus one while the call is being set up */
	int failed;
};

static void respond(nudge_inbound_done_fn *done, void *done_arg, int status, const char *body,
                    size_t len)
{
	struct nudge_inbound_response res = {
	    .struct_size = sizeof res,
	    .status = status,
	    .content_type = "text/plain",
	    .body = body,
	    .body_len = len,
	};
	done(done_arg, &res);
}

static void respond_str(nudge_inbound_done_fn *done, void *done_arg, int status, const char *body)
{
	respond(done, done_arg, status, body, strlen(body));
}

static void call_step(struct ms_call *c)
{
	if (--c->waiting > 0)
		return;
	struct ms_inst *inst = c->inst;
	if (c->failed)
		respond_str(c->done, c->done_arg, 500, "not recorded, try again\n");
	else
		respond_str(c->done, c->done_arg, 200, "EVENT_RECEIVED");
	free(c);
	inst->pending_inbound--;
	ms_maybe_finish(inst);
}

static void on_reported(void *arg, int status)
{
	struct ms_call *c = arg;
	if (status != 0) {
		c->failed = 1;
		c->inst->host->log(c->inst->self, NUDGE_LOG_ERROR,
		                   "a Messenger event could not be recorded: %d", status);
	}
	call_step(c);
}

/* ---- the query string ----------------------------------------------------------------------- */

static int unhex(char c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
	                              : -1;
}

/* The decoded value of name in a query string (malloc'd), or NULL. */
static char *query_param(const char *q, const char *name)
{
	size_t nl = strlen(name);
	for (const char *p = q; p && *p;) {
		const char *amp = strchr(p, '&');
		const char *end = amp ? amp : p + strlen(p);
		const char *eq = memchr(p, '=', (size_t)(end - p));
		if (eq && (size_t)(eq - p) == nl && memcmp(p, name, nl) == 0) {
			char *out = malloc((size_t)(end - eq)), *w = out;
			if (!out)
				abort();
			for (const char *s = eq + 1; s < end; s++) {
				if (*s == '+')
					*w++ = ' ';
				else if (*s == '%' && s + 2 < end && unhex(s[1]) >= 0 &&
				         unhex(s[2]) >= 0) {
					*w++ = (char)(unhex(s[1]) << 4 | unhex(s[2]));
					s += 2;
				} else
					*w++ = *s;
			}
			*w = '\0';
			return out;
		}
		p = amp ? amp + 1 : NULL;
	}
	return NULL;
}

static int same_secret(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	return la == lb && CRYPTO_memcmp(a, b, la) == 0;
}

static void verify_subscription(struct ms_inst *inst, const struct nudge_inbound_request *req,
                                nudge_inbound_done_fn *done, void *done_arg)
{
	char *mode = query_param(req->query, "hub.mode");
	char *token = query_param(req->query, "hub.verify_token");
	char *challenge = query_param(req->query, "hub.challenge");
	if (mode && strcmp(mode, "subscribe") == 0 && token &&
	    same_secret(token, inst->verify_token) && challenge) {
		inst->host->log(inst->self, NUDGE_LOG_INFO,
		                "Meta verified the webhook subscription");
		respond(done, done_arg, 200, challenge, strlen(challenge));
	} else {
		inst->host->metric_add(inst->self, "verify_failures", 1);
		inst->host->log(inst->self, NUDGE_LOG_WARN, "refused a webhook verification: %s",
		                !mode || strcmp(mode, "subscribe") != 0
		                    ? "hub.mode is not subscribe"
		                : !token || !same_secret(token, inst->verify_token)
		                    ? "the verify token does not match"
		                    : "no hub.challenge");
		respond_str(done, done_arg, 403, "forbidden\n");
	}
	free(mode);
	free(token);
	free(challenge);
}

/* ---- the signature -------------------------------------------------------------------------- */

static const char *req_header(const struct nudge_inbound_request *req, const char *name)
{
	for (size_t i = 0; i < req->nheaders; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

static int signature_ok(const struct ms_inst *inst, const struct nudge_inbound_request *req)
{
	const char *sig = req_header(req, "X-Hub-Signature-256");
	if (!sig || strncasecmp(sig, "sha256=", 7) != 0 || strlen(sig + 7) != 64)
		return 0;
	char got[MS_HEX_SHA256], want[MS_HEX_SHA256];
	for (int i = 0; i < 64; i++)
		got[i] = (char)tolower((unsigned char)sig[7 + i]);
	got[64] = '\0';
	ms_hmac_hex(inst->app_secret, req->body, req->body_len, want);
	return CRYPTO_memcmp(got, want, 64) == 0;
}

/* ---- what a person says about themselves ---------------------------------------------------- */

/* s trimmed into out; 0 if it does not fit. */
static int trimmed(const char *s, char *out, size_t outlen)
{
	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
		s++;
	size_t n = strlen(s);
	while (n > 0 &&
	       (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
		n--;
	if (n == 0 || n >= outlen)
		return 0;
	memcpy(out, s, n);
	out[n] = '\0';
	return 1;
}

/* The whole text is one address: local@domain.tld, no spaces. */
static int looks_like_email(const char *s)
{
	const char *at = strchr(s, '@');
	if (!at || at == s || strchr(at + 1, '@') || strpbrk(s, " \t<>,;\"") || strlen(s) > 254)
		return 0;
	const char *dot = strrchr(at + 1, '.');
	return dot && dot > at + 1 && dot[1];
}

/* The whole text is one phone number: digits with + ( ) - . and spaces, 7 to 15 digits. */
static int looks_like_phone(const char *s)
{
	int digits = 0;
	for (const char *p = s; *p; p++) {
		if (*p >= '0' && *p <= '9')
			digits++;
		else if (!strchr("+()-. ", *p) || (*p == '+' && p != s))
			return 0;
	}
	return digits >= 7 && digits <= 15;
}

/* Reads an email or phone number out of text into email/phone (left empty when it is neither). */
static void self_identified(const char *text, char *email, char *phone, size_t len)
{
	char t[256];
	if (!text || !trimmed(text, t, sizeof t))
		return;
	if (!email[0] && looks_like_email(t))
		snprintf(email, len, "%s", t);
	else if (!phone[0] && looks_like_phone(t))
		snprintf(phone, len, "%s", t);
}

/* ---- events --------------------------------------------------------------------------------- */

static const char *str_at(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* One messaging item: records the interaction and reports its event. */
static void messaging_item(struct ms_call *c, const char *page, json_t *item)
{
	struct ms_inst *inst = c->inst;
	const char *psid = str_at(json_object_get(item, "sender"), "id");
	json_t *msg = json_object_get(item, "message");
	json_t *postback = json_object_get(item, "postback");
	json_t *referral = json_object_get(item, "referral");
	json_t *optin = json_object_get(item, "optin");
	const char *name, *kind;
	json_t *ref_from = NULL;
	if (json_is_object(msg)) {
		if (json_is_true(json_object_get(msg, "is_echo")))
			return; /* what the page itself sent: not the person's interaction */
		name = "messenger.message";
		kind = "message";
		ref_from = json_object_get(msg, "referral"); /* from an ad or shop */
	} else if (json_is_object(postback)) {
		name = "messenger.message";
		kind = "postback";
		ref_from =
		    json_object_get(postback, "referral"); /* "Get Started" from an m.me link */
	} else if (json_is_object(referral)) {
		name = "messenger.referral";
		kind = "referral";
		ref_from = referral;
	} else if (json_is_object(optin)) {
		name = "messenger.optin";
		kind = "optin";
		ref_from = optin;
	} else {
		return; /* deliveries, reads, reactions: no window, no event */
	}
	if (!psid || !*psid) {
		/* A checkbox opt-in carries a user_ref, not yet a PSID: the person's first reply
		 * will. */
		inst->host->log(inst->self, NUDGE_LOG_DEBUG, "a %s without a sender PSID; ignored",
		                kind);
		return;
	}
	int64_t now = inst->host->now_ms(inst->self);
	json_t *ts = json_object_get(item, "timestamp");
	int64_t at = json_is_integer(ts) ? (int64_t)json_integer_value(ts) : 0;
	if (at <= 0 || at > now)
		at = now; /* never trust a clock ahead of ours with the window */
	ms_seen(inst, psid, at);
	inst->host->metric_add(inst->self, "interactions", 1);

	char email[256] = "", phone[256] = "", dedupe[200];
	const char *ref = json_is_object(ref_from) ? str_at(ref_from, "ref") : NULL;
	json_t *props = json_pack("{s:s, s:s, s:s?, s:I}", "kind", kind, "psid", psid, "page_id",
	                          page, "timestamp", (json_int_t)at);
	const char *mid = NULL;
	if (json_is_object(msg)) {
		mid = str_at(msg, "mid");
		const char *text = str_at(msg, "text");
		const char *qr = str_at(json_object_get(msg, "quick_reply"), "payload");
		if (text)
			json_object_set_new(props, "text", json_string(text));
		if (qr)
			json_object_set_new(props, "quick_reply", json_string(qr));
		json_t *att = json_object_get(msg, "attachments");
		if (json_is_array(att))
			json_object_set_new(props, "attachments",
			                    json_integer((json_int_t)json_array_size(att)));
		self_identified(qr, email, phone, sizeof email);
		self_identified(text, email, phone, sizeof email);
	} else if (json_is_object(postback)) {
		mid = str_at(postback, "mid");
		const char *title = str_at(postback, "title"),
		           *payload = str_at(postback, "payload");
		if (title)
			json_object_set_new(props, "title", json_string(title));
		if (payload)
			json_object_set_new(props, "payload", json_string(payload));
	}
	if (mid)
		json_object_set_new(props, "mid", json_string(mid));
	if (ref) {
		json_object_set_new(props, "ref", json_string(ref));
		const char *source = str_at(ref_from, "source");
		if (source)
			json_object_set_new(props, "source", json_string(source));
	}
	if (mid)
		snprintf(dedupe, sizeof dedupe, "%s", mid);
	else
		snprintf(dedupe, sizeof dedupe, "%s:%s:%lld", kind, psid, (long long)at);
	char *text = json_dumps(props, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(props);
	struct nudge_event_report ev = {
	    .struct_size = sizeof ev,
	    .name = name,
	    .channel = "messenger",
	    .address = psid,
	    .dedupe_key = dedupe,
	    .properties_json = text,
	    .occurred_ms = at,
	    .customer_ref = ref && *ref ? ref : NULL,
	    .customer_email = email[0] ? email : NULL,
	    .customer_phone = phone[0] ? phone : NULL,
	};
	if (ev.customer_ref || ev.customer_email || ev.customer_phone) {
		inst->host->metric_add(inst->self, "links", 1);
		if (inst->host->abi_minor < 2 && !inst->link_warned) {
			inst->link_warned = 1;
			inst->host->log(
			    inst->self, NUDGE_LOG_WARN,
			    "a person identified themselves, but this nudge cannot link "
			    "PSIDs (ABI 1.%u)",
			    inst->host->abi_minor);
		}
	}
	c->waiting++;
	int rc = inst->host->report_event(inst->self, &ev, on_reported, c);
	free(text);
	if (rc) {
		c->waiting--;
		if (rc == -ENOSYS) {
			inst->host->log(
			    inst->self, NUDGE_LOG_WARN,
			    "this nudge records no events; the webhook is acknowledged");
		} else {
			c->failed = 1;
			inst->host->log(inst->self, NUDGE_LOG_ERROR,
			                "the event report was refused: %d", rc);
		}
	}
}

static void page_events(struct ms_call *c, json_t *root)
{
	struct ms_inst *inst = c->inst;
	json_t *entries = json_object_get(root, "entry");
	size_t i, k;
	json_t *entry, *item;
	json_array_foreach(entries, i, entry)
	{
		const char *page = str_at(entry, "id");
		if (inst->page_id && (!page || strcmp(page, inst->page_id) != 0)) {
			inst->host->log(inst->self, NUDGE_LOG_WARN,
			                "an entry for page %s, not ours (%s); ignored",
			                page ? page : "?", inst->page_id);
			continue;
		}
		json_t *messaging = json_object_get(entry, "messaging");
		json_array_foreach(messaging, k, item) messaging_item(c, page, item);
	}
}

void ms_inbound(void *state, const struct nudge_inbound_request *req, nudge_inbound_done_fn *done,
                void *done_arg)
{
	struct ms_inst *inst = state;
	if (strcmp(req->method, "GET") == 0) {
		verify_subscription(inst, req, done, done_arg);
		return;
	}
	if (strcmp(req->method, "POST") != 0) {
		respond_str(done, done_arg, 405, "GET or POST only\n");
		return;
	}
	if (!signature_ok(inst, req)) {
		inst->host->metric_add(inst->self, "signature_failures", 1);
		inst->host->log(inst->self, NUDGE_LOG_WARN, "refused a webhook call: %s",
		                req_header(req, "X-Hub-Signature-256")
		                    ? "X-Hub-Signature-256 does not match the body"
		                    : "no X-Hub-Signature-256");
		respond_str(done, done_arg, 403, "invalid signature\n");
		return;
	}
	json_t *root = json_loadb(req->body, req->body_len, 0, NULL);
	const char *object = root ? str_at(root, "object") : NULL;
	if (!object || strcmp(object, "page") != 0) {
		/* Signed by Meta, but nothing for a page: acknowledge so it is not redelivered. */
		inst->host->log(inst->self, NUDGE_LOG_WARN,
		                "a webhook call that is not a page event");
		json_decref(root);
		respond_str(done, done_arg, 200, "ignored\n");
		return;
	}
	struct ms_call *c = calloc(1, sizeof *c);
	if (!c)
		abort();
	c->inst = inst;
	c->done = done;
	c->done_arg = done_arg;
	c->waiting = 1;
	inst->pending_inbound++;
	page_events(c, root);
	json_decref(root);
	call_step(c);
}
