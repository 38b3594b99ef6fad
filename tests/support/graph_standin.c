/*
 * graph_standin.c — the Graph Send API stand-in (see graph_standin.h): request validation the way
 * Graph validates, the window by its own clock, scripted outcomes, and signed webhook calls. Its
 * query decoding and signing are written apart from the plugin's on purpose, so that a mistake in
 * one is not mirrored by the other.
 */
#include "graph_standin.h"
#include "httpc.h"
#include "httpd.h"
#include "ng.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WINDOW_MS (24 * 3600 * 1000LL)

struct script {
	char psid[40];
	int http_status, code, subcode;
	struct script *next;
};

struct seen {
	char psid[40];
	int64_t at_ms;
	struct seen *next;
};

struct held {
	struct gr_standin *s;
	uv_timer_t timer;
	struct ng_httpd_req *req;
	int status;
	char *body;
	int never; /* a hang: answered only at stop */
	struct held *prev, *next;
};

struct call {
	int status;
	char *body;
};

struct call_arg {
	struct gr_standin *s;
	size_t index;
};

struct gr_standin {
	uv_loop_t *loop;
	struct ng_httpd *srv;
	struct ng_httpc *cli;
	char *token, *secret, *page_id;
	int require_proof;
	uint64_t delay_ms;
	int64_t (*now_ms)(void *arg);
	void *now_arg;
	struct script *scripts;
	struct seen *seen;
	struct gr_standin_msg *msgs;
	size_t nmsgs, msgs_cap;
	size_t requests;
	unsigned long long next_mid;
	char refusal[300];
	struct held *held;
	struct call *calls;
	size_t ncalls, calls_cap;
	int calls_pending;
	int stopping, closed;
	void (*done)(void *arg);
	void *done_arg;
};

/* ---- helpers -------------------------------------------------------------------------------- */

static int64_t clock_now(const struct gr_standin *s)
{
	if (s->now_ms)
		return s->now_ms(s->now_arg);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
	                              : -1;
}

/* The decoded value of key in query q, malloc'd; NULL if absent. */
static char *query_get(const char *q, const char *key)
{
	size_t kl = strlen(key);
	const char *p = q;
	while (p && *p) {
		const char *end = strchr(p, '&');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len > kl && p[kl] == '=' && strncmp(p, key, kl) == 0) {
			char *o = ng_xmalloc(len), *w = o;
			for (size_t i = kl + 1; i < len; i++) {
				if (p[i] == '+')
					*w++ = ' ';
				else if (p[i] == '%' && i + 2 < len && hexval(p[i + 1]) >= 0 &&
				         hexval(p[i + 2]) >= 0) {
					*w++ = (char)(hexval(p[i + 1]) * 16 + hexval(p[i + 2]));
					i += 2;
				} else
					*w++ = p[i];
			}
			*w = '\0';
			return o;
		}
		p = end ? end + 1 : NULL;
	}
	return NULL;
}

static void hmac_hex(const char *key, const void *data, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	HMAC(EVP_sha256(), key, (int)strlen(key), len ? data : (const void *)"", len, md, &n);
	for (unsigned i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
	out[2 * n] = '\0';
}

void gr_standin_sign(const char *secret, const char *body, size_t len, char out[80])
{
	char hex[65];
	hmac_hex(secret, body, len, hex);
	snprintf(out, 80, "sha256=%s", hex);
}

static size_t chars(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

/* ---- answers -------------------------------------------------------------------------------- */

static void held_unlink(struct held *h)
{
	struct gr_standin *s = h->s;
	if (h->prev)
		h->prev->next = h->next;
	else
		s->held = h->next;
	if (h->next)
		h->next->prev = h->prev;
}

static void held_closed(uv_handle_t *t)
{
	struct held *h = t->data;
	free(h->body);
	free(h);
}

static void answer_now(struct held *h)
{
	ng_httpd_respond(h->req, h->status, "application/json", h->body, strlen(h->body));
}

static void on_answer(uv_timer_t *t)
{
	struct held *h = t->data;
	held_unlink(h);
	answer_now(h);
	uv_close((uv_handle_t *)&h->timer, held_closed);
}

/* Answers after the configured delay (or never, for status 0). Takes body. */
static void answer(struct gr_standin *s, struct ng_httpd_req *r, int status, char *body)
{
	struct held *h = ng_xcalloc(1, sizeof *h);
	h->s = s;
	h->req = r;
	h->status = status;
	h->body = body;
	h->never = status == 0;
	uv_timer_init(s->loop, &h->timer);
	h->timer.data = h;
	h->next = s->held;
	if (s->held)
		s->held->prev = h;
	s->held = h;
	if (!h->never)
		uv_timer_start(&h->timer, on_answer, s->delay_ms, 0);
}

static char *error_json(int code, int subcode, const char *type, const char *message)
{
	json_t *e = json_pack("{s:s, s:s, s:i, s:s}", "message", message, "type", type, "code",
	                      code, "fbtrace_id", "AbCdEfGhIjK");
	if (subcode)
		json_object_set_new(e, "error_subcode", json_integer(subcode));
	if (code == 1 || code == 2)
		json_object_set_new(e, "is_transient", json_true());
	json_t *j = json_pack("{s:o}", "error", e);
	char *text = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	return text;
}

static void refuse(struct gr_standin *s, struct ng_httpd_req *r, int status, int code, int subcode,
                   const char *type, const char *message)
{
	snprintf(s->refusal, sizeof s->refusal, "%d %d/%d %s", status, code, subcode, message);
	answer(s, r, status, error_json(code, subcode, type, message));
}

static const struct script *script_for(const struct gr_standin *s, const char *psid)
{
	for (const struct script *sc = s->scripts; sc; sc = sc->next)
		if (psid && strcmp(sc->psid, psid) == 0)
			return sc;
	return NULL;
}

static const char *scripted_text(int code, int subcode)
{
	switch (code) {
	case 2:
		return "An unexpected error has occurred. Please retry your request later.";
	case 4:
		return "(#4) Application request limit reached";
	case 10:
		return subcode == 2018278 ? "(#10) This message is sent outside of allowed window."
		                          : "(#10) Page is temporarily restricted from sending";
	case 100:
		return subcode == 2018001 ? "(#100) No matching user found"
		                          : "(#100) Invalid parameter";
	case 190:
		return "Error validating access token: Session has expired";
	case 551:
		return "(#551) This person isn't available right now.";
	case 613:
		return "(#613) Calls to this api have exceeded the rate limit.";
	default:
		return "(#1) An unknown error occurred";
	}
}

/* ---- the API -------------------------------------------------------------------------------- */

static int version_ok(const char *v, size_t n)
{
	if (n < 4 || v[0] != 'v')
		return 0;
	size_t i = 1, d = 0;
	while (i < n && v[i] >= '0' && v[i] <= '9')
		i++, d++;
	if (!d || i >= n || v[i] != '.')
		return 0;
	i++;
	d = 0;
	while (i < n && v[i] >= '0' && v[i] <= '9')
		i++, d++;
	return d && i == n;
}

static void accept_message(struct gr_standin *s, struct ng_httpd_req *r, const char *psid,
                           const char *type, const char *tag, const char *text, int nbuttons)
{
	if (s->nmsgs == s->msgs_cap) {
		s->msgs_cap = s->msgs_cap ? s->msgs_cap * 2 : 32;
		s->msgs = ng_xrealloc(s->msgs, s->msgs_cap * sizeof *s->msgs);
	}
	struct gr_standin_msg *m = &s->msgs[s->nmsgs++];
	memset(m, 0, sizeof *m);
	snprintf(m->psid, sizeof m->psid, "%s", psid);
	snprintf(m->messaging_type, sizeof m->messaging_type, "%s", type);
	snprintf(m->tag, sizeof m->tag, "%s", tag ? tag : "");
	snprintf(m->mid, sizeof m->mid, "m_standin%016llx", ++s->next_mid);
	m->text = ng_xstrdup(text ? text : "");
	m->nbuttons = nbuttons;
	s->refusal[0] = '\0';
	json_t *j = json_pack("{s:s, s:s}", "recipient_id", psid, "message_id", m->mid);
	char *out = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	answer(s, r, 200, out);
}

static int64_t seen_at(const struct gr_standin *s, const char *psid)
{
	for (const struct seen *e = s->seen; e; e = e->next)
		if (strcmp(e->psid, psid) == 0)
			return e->at_ms;
	return 0;
}

static void on_messages(struct ng_httpd_req *r, void *arg)
{
	struct gr_standin *s = arg;
	s->requests++;
	const char *path = ng_httpd_path(r);
	const char *slash = strchr(path + 1, '/');
	if (!slash || !version_ok(path + 1, (size_t)(slash - path - 1)) ||
	    strcmp(slash, "/me/messages") != 0) {
		refuse(s, r, 400, 2500, 0, "OAuthException", "Unknown path components");
		return;
	}
	const char *q = ng_httpd_query(r);
	char *token = query_get(q, "access_token"), *proof = query_get(q, "appsecret_proof");
	char want[65];
	hmac_hex(s->secret, s->token, strlen(s->token), want);
	json_t *j = NULL;
	if (!token) {
		refuse(s, r, 400, 2500, 0, "OAuthException",
		       "An active access token must be used to query information about the current "
		       "user.");
	} else if (strcmp(token, s->token) != 0) {
		refuse(s, r, 400, 190, 0, "OAuthException",
		       "Invalid OAuth access token - Cannot parse access token");
	} else if (!proof && s->require_proof) {
		refuse(s, r, 400, 100, 0, "GraphMethodException",
		       "API calls from the server require an appsecret_proof argument");
	} else if (proof && strcmp(proof, want) != 0) {
		refuse(s, r, 400, 100, 0, "GraphMethodException",
		       "Invalid appsecret_proof provided in the API argument");
	} else {
		size_t len;
		const char *body = ng_httpd_body(r, &len);
		const char *ct = ng_httpd_header(r, "Content-Type");
		j = ct && strncmp(ct, "application/json", 16) == 0 ? json_loadb(body, len, 0, NULL)
		                                                   : NULL;
		json_t *recipient = json_object_get(j, "recipient");
		const char *psid = json_string_value(json_object_get(recipient, "id"));
		json_t *message = json_object_get(j, "message");
		const char *action = json_string_value(json_object_get(j, "sender_action"));
		const char *type = json_string_value(json_object_get(j, "messaging_type"));
		const char *tag = json_string_value(json_object_get(j, "tag"));
		const char *text = json_string_value(json_object_get(message, "text"));
		json_t *att = json_object_get(message, "attachment");
		json_t *payload = json_object_get(att, "payload");
		const char *ttext = json_string_value(json_object_get(payload, "text"));
		json_t *buttons = json_object_get(payload, "buttons");
		const struct script *sc = psid ? script_for(s, psid) : NULL;
		int64_t last = psid ? seen_at(s, psid) : 0;
		if (!j) {
			refuse(s, r, 400, 100, 0, "OAuthException",
			       "(#100) The parameter recipient is required");
		} else if (!psid || !*psid) {
			refuse(s, r, 400, 100, 0, "OAuthException",
			       "(#100) The parameter recipient is required");
		} else if (!json_is_object(message) && !action) {
			refuse(s, r, 400, 100, 0, "OAuthException",
			       "(#100) Must send either message or state");
		} else if (!type) {
			refuse(s, r, 400, 100, 0, "OAuthException",
			       "(#100) The parameter messaging_type is required");
		} else if (strcmp(type, "RESPONSE") && strcmp(type, "UPDATE") &&
		           strcmp(type, "MESSAGE_TAG")) {
			refuse(s, r, 400, 100, 0, "OAuthException",
			       "(#100) Param messaging_type must be one of {RESPONSE, UPDATE, "
			       "MESSAGE_TAG}");
		} else if (strcmp(type, "MESSAGE_TAG") == 0 && !tag) {
			refuse(s, r, 400, 100, 0, "OAuthException",
			       "(#100) Tag is required for MESSAGE_TAG message type");
		} else if (strcmp(type, "MESSAGE_TAG") != 0 && tag) {
			refuse(s, r, 400, 100, 0, "OAuthException",
			       "(#100) Tag can only be used with MESSAGE_TAG messaging type");
		} else if (tag && strcmp(tag, "CONFIRMED_EVENT_UPDATE") &&
		           strcmp(tag, "POST_PURCHASE_UPDATE") && strcmp(tag, "ACCOUNT_UPDATE") &&
		           strcmp(tag, "HUMAN_AGENT")) {
			refuse(s, r, 400, 100, 0, "OAuthException",
			       "(#100) Param tag must be one of {CONFIRMED_EVENT_UPDATE, "
			       "POST_PURCHASE_UPDATE, ACCOUNT_UPDATE, HUMAN_AGENT}");
		} else if (json_is_object(message) && !text && !json_is_object(att)) {
			refuse(s, r, 400, 100, 0, "OAuthException",
			       "(#100) Must send either text or attachment");
		} else if (text && chars(text) > 2000) {
			refuse(s, r, 400, 100, 0, "OAuthException",
			       "(#100) Length of param message[text] must be less than or equal to "
			       "2000");
		} else if (json_is_object(att) &&
		           (!ttext || !json_is_array(buttons) || json_array_size(buttons) < 1 ||
		            json_array_size(buttons) > 3)) {
			refuse(s, r, 400, 100, 0, "OAuthException",
			       "(#100) Param message[attachment][payload] is not a valid button "
			       "template");
		} else if (sc) {
			if (sc->http_status == 0)
				answer(s, r, 0, ng_xstrdup(""));
			else if (sc->http_status == 200)
				accept_message(s, r, psid, type, tag, text ? text : ttext,
				               (int)json_array_size(buttons));
			else if (sc->http_status >= 500 && sc->code == 0)
				answer(s, r, sc->http_status, ng_xstrdup("Internal Server Error"));
			else
				refuse(s, r, sc->http_status, sc->code, sc->subcode,
				       "OAuthException", scripted_text(sc->code, sc->subcode));
		} else if (s->now_ms && strcmp(type, "MESSAGE_TAG") != 0 &&
		           (last == 0 || clock_now(s) - last >= WINDOW_MS)) {
			refuse(s, r, 400, 10, 2018278, "OAuthException",
			       "(#10) This message is sent outside of allowed window.");
		} else {
			accept_message(s, r, psid, type, tag, text ? text : ttext,
			               (int)json_array_size(buttons));
		}
	}
	json_decref(j);
	free(token);
	free(proof);
}

/* ---- webhook calls -------------------------------------------------------------------------- */

static void maybe_done(struct gr_standin *s);

static void on_call_answer(void *arg, const struct ng_httpc_response *r)
{
	struct call_arg *c = arg;
	struct gr_standin *s = c->s;
	s->calls[c->index].status = r->error ? 0 : r->status;
	s->calls[c->index].body = ng_xstrdup(r->error ? "" : r->body);
	s->calls_pending--;
	free(c);
	maybe_done(s);
}

static int start_call(struct gr_standin *s, const char *method, const char *url,
                      const struct ng_httpc_header *h, size_t nh, const char *body)
{
	if (s->ncalls == s->calls_cap) {
		s->calls_cap = s->calls_cap ? s->calls_cap * 2 : 32;
		s->calls = ng_xrealloc(s->calls, s->calls_cap * sizeof *s->calls);
	}
	struct call_arg *c = ng_xcalloc(1, sizeof *c);
	c->s = s;
	c->index = s->ncalls;
	s->calls[s->ncalls++] = (struct call){0, NULL};
	struct ng_httpc_request q = {.method = method,
	                             .url = url,
	                             .headers = h,
	                             .nheaders = nh,
	                             .body = body,
	                             .body_len = body ? strlen(body) : 0,
	                             .timeout_ms = 15000};
	int rc = ng_httpc_request(s->cli, &q, on_call_answer, c);
	if (rc) {
		free(c);
		s->ncalls--;
		return rc;
	}
	s->calls_pending++;
	return 0;
}

void gr_standin_seen(struct gr_standin *s, const char *psid, int64_t at_ms)
{
	for (struct seen *e = s->seen; e; e = e->next) {
		if (strcmp(e->psid, psid) == 0) {
			if (at_ms > e->at_ms)
				e->at_ms = at_ms;
			return;
		}
	}
	struct seen *e = ng_xcalloc(1, sizeof *e);
	snprintf(e->psid, sizeof e->psid, "%s", psid);
	e->at_ms = at_ms;
	e->next = s->seen;
	s->seen = e;
}

static json_t *messaging_item(struct gr_standin *s, const struct gr_event *ev, int64_t ts)
{
	char mid[64];
	if (ev->mid)
		snprintf(mid, sizeof mid, "%s", ev->mid);
	else
		snprintf(mid, sizeof mid, "m_in%016llx", ++s->next_mid);
	json_t *item =
	    json_pack("{s:{s:s}, s:I}", "recipient", "id", s->page_id, "timestamp", (json_int_t)ts);
	if (ev->psid)
		json_object_set_new(item, "sender", json_pack("{s:s}", "id", ev->psid));
	const char *k = ev->kind;
	if (strcmp(k, "message") == 0 || strcmp(k, "echo") == 0) {
		json_t *m = json_pack("{s:s}", "mid", mid);
		if (ev->text)
			json_object_set_new(m, "text", json_string(ev->text));
		if (ev->payload)
			json_object_set_new(m, "quick_reply",
			                    json_pack("{s:s}", "payload", ev->payload));
		if (strcmp(k, "echo") == 0) {
			json_object_set_new(m, "is_echo", json_true());
			json_object_set_new(m, "app_id", json_integer(1517776481860111));
		}
		json_object_set_new(item, "message", m);
	} else if (strcmp(k, "postback") == 0) {
		json_t *p = json_pack("{s:s, s:s, s:s}", "mid", mid, "title",
		                      ev->text ? ev->text : "Get Started", "payload",
		                      ev->payload ? ev->payload : "GET_STARTED");
		if (ev->ref)
			json_object_set_new(p, "referral",
			                    json_pack("{s:s, s:s, s:s}", "ref", ev->ref, "source",
			                              "SHORTLINK", "type", "OPEN_THREAD"));
		json_object_set_new(item, "postback", p);
	} else if (strcmp(k, "referral") == 0) {
		json_object_set_new(item, "referral",
		                    json_pack("{s:s, s:s, s:s}", "ref", ev->ref ? ev->ref : "",
		                              "source", "SHORTLINK", "type", "OPEN_THREAD"));
	} else if (strcmp(k, "optin") == 0) {
		json_t *o = json_pack("{s:s}", "ref", ev->ref ? ev->ref : "");
		if (!ev->psid)
			json_object_set_new(o, "user_ref", json_string("checkbox-user-ref-1"));
		json_object_set_new(item, "optin", o);
	} else { /* read */
		json_object_set_new(item, "read", json_pack("{s:I}", "watermark", (json_int_t)ts));
	}
	return item;
}

int gr_standin_post_events(struct gr_standin *s, const char *url, const struct gr_event *ev,
                           size_t n, int bad_signature)
{
	int64_t now = clock_now(s);
	json_t *items = json_array();
	for (size_t i = 0; i < n; i++) {
		int64_t ts = ev[i].timestamp_ms ? ev[i].timestamp_ms : now;
		json_array_append_new(items, messaging_item(s, &ev[i], ts));
		if (!bad_signature && ev[i].psid && strcmp(ev[i].kind, "echo") != 0 &&
		    strcmp(ev[i].kind, "read") != 0)
			gr_standin_seen(s, ev[i].psid, ts);
	}
	json_t *root = json_pack("{s:s, s:[{s:s, s:I, s:o}]}", "object", "page", "entry", "id",
	                         s->page_id, "time", (json_int_t)now, "messaging", items);
	/* Meta escapes non-ASCII as \uXXXX in what it signs. */
	char *body = json_dumps(root, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(root);
	char sig[80];
	if (bad_signature)
		gr_standin_sign(s->secret, "something else", 14, sig);
	else
		gr_standin_sign(s->secret, body, strlen(body), sig);
	struct ng_httpc_header h[] = {{"Content-Type", "application/json"},
	                              {"X-Hub-Signature-256", sig},
	                              {"User-Agent", "facebookexternalua"}};
	int rc = start_call(s, "POST", url, h, 3, body);
	free(body);
	return rc;
}

int gr_standin_verify(struct gr_standin *s, const char *url, const char *verify_token,
                      const char *challenge)
{
	char *full = ng_xasprintf("%s?hub.mode=subscribe&hub.challenge=%s&hub.verify_token=%s", url,
	                          challenge, verify_token);
	int rc = start_call(s, "GET", full, NULL, 0, NULL);
	free(full);
	return rc;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

int gr_standin_start(struct gr_standin **out, uv_loop_t *loop, const struct gr_standin_options *o)
{
	struct gr_standin *s = ng_xcalloc(1, sizeof *s);
	s->loop = loop;
	s->token = ng_xstrdup(o->access_token);
	s->secret = ng_xstrdup(o->app_secret);
	s->page_id = ng_xstrdup(o->page_id ? o->page_id : "1234567890");
	s->require_proof = o->require_proof;
	s->delay_ms = o->delay_ms;
	s->now_ms = o->now_ms;
	s->now_arg = o->now_arg;
	struct ng_httpd_options so = {.drain_timeout_ms = 100, .max_connections = 4096};
	int rc = ng_httpd_open(&s->srv, loop, &so);
	if (rc == 0) {
		ng_httpd_route(s->srv, "POST", "/*", on_messages, s);
		rc = ng_httpd_listen(s->srv, "127.0.0.1", 0);
	}
	if (rc == 0)
		rc = ng_httpc_open(&s->cli, loop, NULL);
	if (rc)
		return rc;
	*out = s;
	return 0;
}

int gr_standin_port(const struct gr_standin *s)
{
	return ng_httpd_port(s->srv);
}

void gr_standin_script(struct gr_standin *s, const char *psid, int http_status, int code,
                       int subcode)
{
	struct script *sc = ng_xcalloc(1, sizeof *sc);
	snprintf(sc->psid, sizeof sc->psid, "%s", psid);
	sc->http_status = http_status;
	sc->code = code;
	sc->subcode = subcode;
	sc->next = s->scripts;
	s->scripts = sc;
}

size_t gr_standin_requests(const struct gr_standin *s)
{
	return s->requests;
}

size_t gr_standin_count(const struct gr_standin *s)
{
	return s->nmsgs;
}

const struct gr_standin_msg *gr_standin_at(const struct gr_standin *s, size_t i)
{
	return i < s->nmsgs ? &s->msgs[i] : NULL;
}

const char *gr_standin_last_refusal(const struct gr_standin *s)
{
	return s->refusal;
}

int gr_standin_callbacks_pending(const struct gr_standin *s)
{
	return s->calls_pending;
}

size_t gr_standin_callbacks(const struct gr_standin *s)
{
	return s->ncalls;
}

int gr_standin_callback_status(const struct gr_standin *s, size_t i)
{
	return i < s->ncalls ? s->calls[i].status : -1;
}

const char *gr_standin_callback_body(const struct gr_standin *s, size_t i)
{
	return i < s->ncalls && s->calls[i].body ? s->calls[i].body : "";
}

static void on_part_closed(void *arg)
{
	struct gr_standin *s = arg;
	s->closed++;
	maybe_done(s);
}

static void maybe_done(struct gr_standin *s)
{
	if (!s->stopping)
		return;
	if (s->stopping == 1 && s->calls_pending == 0) {
		s->stopping = 2;
		ng_httpc_close(s->cli, on_part_closed, s);
		ng_httpd_close(s->srv, on_part_closed, s);
		return;
	}
	if (s->closed < 2)
		return;
	for (size_t i = 0; i < s->nmsgs; i++)
		free(s->msgs[i].text);
	free(s->msgs);
	for (size_t i = 0; i < s->ncalls; i++)
		free(s->calls[i].body);
	free(s->calls);
	while (s->scripts) {
		struct script *sc = s->scripts;
		s->scripts = sc->next;
		free(sc);
	}
	while (s->seen) {
		struct seen *e = s->seen;
		s->seen = e->next;
		free(e);
	}
	free(s->token);
	free(s->secret);
	free(s->page_id);
	void (*done)(void *) = s->done;
	void *arg = s->done_arg;
	free(s);
	if (done)
		done(arg);
}

void gr_standin_stop(struct gr_standin *s, void (*done)(void *arg), void *arg)
{
	s->stopping = 1;
	s->done = done;
	s->done_arg = arg;
	while (s->held) {
		struct held *h = s->held;
		held_unlink(h);
		uv_timer_stop(&h->timer);
		if (h->never) {
			h->status = 503;
			free(h->body);
			h->body = error_json(2, 0, "OAuthException", "stopping");
		}
		answer_now(h);
		uv_close((uv_handle_t *)&h->timer, held_closed);
	}
	maybe_done(s);
}
