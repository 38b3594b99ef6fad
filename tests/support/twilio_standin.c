/*
 * twilio_standin.c — the Twilio Messaging stand-in (see twilio_standin.h): request validation the
 * way the real API validates, scripted outcomes, the message list, and signed status callbacks.
 * Its form decoding, segment counting and signing are written apart from the plugin's on purpose,
 * so that a mistake in one is not mirrored by the other.
 */
#include "twilio_standin.h"
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

struct script {
	char to[24];
	int http_status, code, retry_after_s, keep, undelivered_code;
	struct script *next;
};

struct held {
	struct tw_standin *s;
	uv_timer_t timer;
	struct ng_httpd_req *req;
	int status;
	char *body;
	int retry_after_s;
	int never; /* a hang: answered only at stop */
	struct held *prev, *next;
};

struct callback {
	struct tw_standin *s;
	size_t index;
};

struct auto_cb {
	struct tw_standin *s;
	uv_timer_t timer;
	char sid[40];
	int step; /* 0: post "sent", 1: post the final state */
	struct auto_cb *prev, *next;
};

struct tw_standin {
	uv_loop_t *loop;
	struct ng_httpd *srv;
	struct ng_httpc *cli;
	char *account_sid, *auth_token;
	uint64_t delay_ms, callback_delay_ms;
	int auto_callbacks;
	struct script *scripts;
	struct tw_standin_msg *msgs;
	size_t nmsgs, msgs_cap;
	size_t requests;
	unsigned long long next_sid;
	char refusal[200];
	struct held *held;
	struct auto_cb *autos;
	int *cb_status;
	size_t ncb, cb_cap;
	int cb_pending;
	int stopping, closed;
	void (*done)(void *arg);
	void *done_arg;
};

/* ---- helpers -------------------------------------------------------------------------------- */

struct kv {
	char *k, *v;
};

static int unhex(char c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
	                              : -1;
}

static char *decode(const char *s, size_t n)
{
	char *o = ng_xmalloc(n + 1), *w = o;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '+')
			*w++ = ' ';
		else if (s[i] == '%' && i + 2 < n && unhex(s[i + 1]) >= 0 && unhex(s[i + 2]) >= 0) {
			*w++ = (char)(unhex(s[i + 1]) << 4 | unhex(s[i + 2]));
			i += 2;
		} else
			*w++ = s[i];
	}
	*w = '\0';
	return o;
}

static size_t parse_form(const char *b, size_t len, struct kv **out)
{
	size_t n = 0;
	struct kv *kv = NULL;
	const char *p = b, *end = b + len;
	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *stop = amp ? amp : end;
		const char *eq = memchr(p, '=', (size_t)(stop - p));
		if (stop > p) {
			kv = ng_xrealloc(kv, (n + 1) * sizeof *kv);
			kv[n].k = decode(p, (size_t)((eq ? eq : stop) - p));
			kv[n].v = eq ? decode(eq + 1, (size_t)(stop - eq - 1)) : ng_xstrdup("");
			n++;
		}
		p = stop + 1;
	}
	*out = kv;
	return n;
}

static void free_form(struct kv *kv, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(kv[i].k);
		free(kv[i].v);
	}
	free(kv);
}

static const char *get(const struct kv *kv, size_t n, const char *k)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(kv[i].k, k) == 0)
			return kv[i].v;
	return NULL;
}

static int kv_cmp(const void *a, const void *b)
{
	const struct kv *x = a, *y = b;
	int c = strcmp(x->k, y->k);
	return c ? c : strcmp(x->v, y->v);
}

void tw_standin_sign(const char *token, const char *url, const char *form, char out[64])
{
	struct kv *kv;
	size_t n = parse_form(form, strlen(form), &kv);
	qsort(kv, n, sizeof *kv, kv_cmp);
	size_t cap = strlen(url) + strlen(form) + 1;
	char *data = ng_xmalloc(cap);
	strcpy(data, url);
	for (size_t i = 0; i < n; i++) {
		strcat(data, kv[i].k);
		strcat(data, kv[i].v);
	}
	unsigned char md[20];
	unsigned int len = sizeof md;
	HMAC(EVP_sha1(), token, (int)strlen(token), (unsigned char *)data, strlen(data), md, &len);
	EVP_EncodeBlock((unsigned char *)out, md, (int)len);
	free(data);
	free_form(kv, n);
}

static void form_add(char **f, const char *k, const char *v)
{
	size_t old = *f ? strlen(*f) : 0;
	size_t need = old + 1 + strlen(k) * 3 + 1 + strlen(v) * 3 + 1;
	*f = ng_xrealloc(*f, need);
	char *w = *f + old;
	if (old)
		*w++ = '&';
	for (int pass = 0; pass < 2; pass++) {
		for (const unsigned char *c = (const unsigned char *)(pass ? v : k); *c; c++) {
			if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
			    (*c >= '0' && *c <= '9') || strchr("-_.~", *c))
				*w++ = (char)*c;
			else
				w += sprintf(w, "%%%02X", *c);
		}
		if (!pass)
			*w++ = '=';
	}
	*w = '\0';
}

static int is_e164(const char *s)
{
	if (!s || s[0] != '+' || s[1] < '1' || s[1] > '9')
		return 0;
	size_t n = strlen(s + 1);
	return n >= 8 && n <= 15 && strspn(s + 1, "0123456789") == n;
}

/*
 * Segments the way the GSM 03.38 tables count them: a body made only of the basic table's
 * characters (or the extension table's, two septets each) is GSM-7, else UCS-2.
 */
static const char GSM_BASIC[] = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
                                "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
static const char GSM_EXT[] = "\f^{}\\[~]|€";

static size_t char_len(unsigned char c)
{
	return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

static int in_table(const char *table, const char *ch, size_t n)
{
	for (const char *t = table; *t; t += char_len((unsigned char)*t))
		if (char_len((unsigned char)*t) == n && memcmp(t, ch, n) == 0)
			return 1;
	return 0;
}

static int count_segments(const char *body, size_t *chars)
{
	size_t n_chars = 0, septets = 0, units = 0;
	int gsm = 1;
	for (const char *p = body; *p; p += char_len((unsigned char)*p)) {
		size_t n = char_len((unsigned char)*p);
		n_chars++;
		units += n == 4 ? 2 : 1;
		if (in_table(GSM_BASIC, p, n))
			septets += 1;
		else if (in_table(GSM_EXT, p, n))
			septets += 2;
		else
			gsm = 0;
	}
	*chars = n_chars;
	size_t total = gsm ? septets : units, one = gsm ? 160 : 70, per = gsm ? 153 : 67;
	if (total <= one)
		return n_chars ? 1 : 0;
	int segs = 1;
	size_t used = 0;
	for (const char *p = body; *p; p += char_len((unsigned char)*p)) {
		size_t n = char_len((unsigned char)*p);
		size_t w = gsm ? (in_table(GSM_EXT, p, n) ? 2 : 1) : (n == 4 ? 2 : 1);
		if (used + w > per) {
			segs++;
			used = 0;
		}
		used += w;
	}
	return segs;
}

static void rfc2822_now(char *out, size_t len)
{
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, len, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

/* ---- answers -------------------------------------------------------------------------------- */

static void held_unlink(struct held *h)
{
	struct tw_standin *s = h->s;
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
	if (h->retry_after_s > 0) {
		char v[16];
		snprintf(v, sizeof v, "%d", h->retry_after_s);
		ng_httpd_add_header(h->req, "Retry-After", v);
	}
	ng_httpd_respond(h->req, h->status, "application/json", h->body, strlen(h->body));
}

static void on_answer(uv_timer_t *t)
{
	struct held *h = t->data;
	held_unlink(h);
	answer_now(h);
	uv_close((uv_handle_t *)&h->timer, held_closed);
}

/* Answers after the configured delay (or never, for http_status 0). Takes body. */
static void answer(struct tw_standin *s, struct ng_httpd_req *r, int status, char *body,
                   int retry_after_s)
{
	struct held *h = ng_xcalloc(1, sizeof *h);
	h->s = s;
	h->req = r;
	h->status = status;
	h->body = body;
	h->retry_after_s = retry_after_s;
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

static char *error_json(int status, int code, const char *message)
{
	json_t *j = json_pack("{s:i, s:s, s:s, s:i}", "code", code, "message", message, "more_info",
	                      "https://www.twilio.com/docs/errors/", "status", status);
	char *text = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	return text;
}

static void refuse(struct tw_standin *s, struct ng_httpd_req *r, int status, int code,
                   const char *message)
{
	snprintf(s->refusal, sizeof s->refusal, "%d %d %s", status, code, message);
	answer(s, r, status, error_json(status, code, message), 0);
}

static json_t *resource(const struct tw_standin *s, const struct tw_standin_msg *m)
{
	char date[64], segs[16], uri[160];
	rfc2822_now(date, sizeof date);
	snprintf(segs, sizeof segs, "%d", m->num_segments);
	snprintf(uri, sizeof uri, "/2010-04-01/Accounts/%s/Messages/%s.json", s->account_sid,
	         m->sid);
	json_t *err = m->error_code ? json_integer(m->error_code) : json_null();
	return json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:s, s:s, s:s, s:s, s:s, s:o, s:n, s:n, "
	                 "s:s, s:s, s:n, s:s, s:s}",
	                 "sid", m->sid, "account_sid", s->account_sid, "to", m->to, "from",
	                 m->from[0] ? m->from : NULL, "messaging_service_sid",
	                 m->service[0] ? m->service : NULL, "body", m->body, "status", m->status,
	                 "num_segments", segs, "num_media", "0", "direction", "outbound-api",
	                 "error_code", err, "error_message", "price", "api_version", "2010-04-01",
	                 "date_created", date, "date_sent", "date_updated", date, "uri", uri);
}

/* ---- the API -------------------------------------------------------------------------------- */

static int auth_ok(const struct tw_standin *s, struct ng_httpd_req *r)
{
	const char *a = ng_httpd_header(r, "Authorization");
	if (!a || strncmp(a, "Basic ", 6) != 0)
		return 0;
	char *want_plain = ng_xasprintf("%s:%s", s->account_sid, s->auth_token);
	unsigned char enc[512];
	EVP_EncodeBlock(enc, (unsigned char *)want_plain, (int)strlen(want_plain));
	int ok = strcmp((char *)enc, a + 6) == 0;
	free(want_plain);
	return ok;
}

static const struct script *script_for(const struct tw_standin *s, const char *to)
{
	for (const struct script *sc = s->scripts; sc; sc = sc->next)
		if (to && strcmp(sc->to, to) == 0)
			return sc;
	return NULL;
}

static void schedule_auto(struct tw_standin *s, const char *sid, int step);

static int callback_url_ok(const char *u)
{
	const char *host = strncmp(u, "https://", 8) == 0  ? u + 8
	                   : strncmp(u, "http://", 7) == 0 ? u + 7
	                                                   : NULL;
	if (!host || !*host)
		return 0;
	size_t hl = strcspn(host, ":/?#");
	return hl > 0 && !memchr(host, '_', hl); /* "underscores are not allowed" */
}

static void create_message(struct tw_standin *s, struct ng_httpd_req *r)
{
	const char *type = ng_httpd_header(r, "Content-Type");
	if (!type || strncmp(type, "application/x-www-form-urlencoded", 33) != 0) {
		refuse(s, r, 415, 20415,
		       "Unsupported Media Type: send application/x-www-form-urlencoded");
		return;
	}
	size_t len;
	const char *body = ng_httpd_body(r, &len);
	struct kv *f;
	size_t n = parse_form(body, len, &f);
	const char *to = get(f, n, "To"), *from = get(f, n, "From"),
	           *svc = get(f, n, "MessagingServiceSid"), *text = get(f, n, "Body"),
	           *cb = get(f, n, "StatusCallback");
	size_t chars = 0;
	int segs = text ? count_segments(text, &chars) : 0;
	char msg[200];
	if (!to || !*to) {
		refuse(s, r, 400, 21604, "A 'To' phone number is required.");
	} else if (!is_e164(to)) {
		snprintf(msg, sizeof msg, "The 'To' number %s is not a valid phone number.", to);
		refuse(s, r, 400, 21211, msg);
	} else if ((!from || !*from) == (!svc || !*svc)) {
		refuse(s, r, 400, 21603,
		       "Exactly one of 'From' and 'MessagingServiceSid' is required.");
	} else if (svc && (strncmp(svc, "MG", 2) != 0 || strlen(svc) != 34)) {
		refuse(s, r, 400, 21701, "The Messaging Service Sid is invalid.");
	} else if (!text || !*text) {
		refuse(s, r, 400, 21602, "Message body is required.");
	} else if (chars > 1600) {
		refuse(s, r, 400, 21617,
		       "The concatenated message body exceeds the 1600 character "
		       "limit.");
	} else if (cb && !callback_url_ok(cb)) {
		refuse(s, r, 400, 21609, "Invalid StatusCallback url.");
	} else {
		const struct script *sc = script_for(s, to);
		int status = sc ? sc->http_status : 201;
		if (status == 201 || (sc && sc->keep)) {
			if (s->nmsgs == s->msgs_cap) {
				s->msgs_cap = s->msgs_cap ? s->msgs_cap * 2 : 64;
				s->msgs = ng_xrealloc(s->msgs, s->msgs_cap * sizeof *s->msgs);
			}
			struct tw_standin_msg *m = &s->msgs[s->nmsgs++];
			memset(m, 0, sizeof *m);
			snprintf(m->sid, sizeof m->sid, "SM%032llx", ++s->next_sid);
			snprintf(m->to, sizeof m->to, "%s", to);
			snprintf(m->from, sizeof m->from, "%s", from ? from : "");
			snprintf(m->service, sizeof m->service, "%s", svc ? svc : "");
			m->body = ng_xstrdup(text);
			m->status_callback = cb ? ng_xstrdup(cb) : NULL;
			m->num_segments = segs;
			snprintf(m->status, sizeof m->status, "%s", svc ? "accepted" : "queued");
			if (s->auto_callbacks && m->status_callback)
				schedule_auto(s, m->sid, 0);
			if (status == 201) {
				json_t *j = resource(s, m);
				char *out = json_dumps(j, JSON_COMPACT);
				json_decref(j);
				s->refusal[0] = '\0';
				answer(s, r, 201, out, 0);
				free_form(f, n);
				return;
			}
		}
		if (status == 0)
			answer(s, r, 0, ng_xstrdup(""), 0);
		else if (status == 429)
			answer(s, r, 429,
			       error_json(429, sc->code ? sc->code : 20429, "Too Many Requests"),
			       sc->retry_after_s);
		else if (status >= 500)
			answer(s, r, status,
			       error_json(status, sc->code ? sc->code : 20500,
			                  "An internal server error has occurred"),
			       0);
		else {
			snprintf(msg, sizeof msg, "scripted error %d", sc->code);
			refuse(s, r, status, sc->code, msg);
		}
	}
	free_form(f, n);
}

static void list_messages(struct tw_standin *s, struct ng_httpd_req *r)
{
	const char *q = ng_httpd_query(r);
	struct kv *f;
	size_t n = parse_form(q, strlen(q), &f);
	const char *to = get(f, n, "To");
	json_t *list = json_array();
	for (size_t i = s->nmsgs; i-- > 0;)
		if (!to || strcmp(s->msgs[i].to, to) == 0)
			json_array_append_new(list, resource(s, &s->msgs[i]));
	json_t *j = json_pack("{s:o, s:i, s:i, s:n}", "messages", list, "page", 0, "page_size", 50,
	                      "next_page_uri");
	char *out = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	free_form(f, n);
	answer(s, r, 200, out, 0);
}

static void on_messages(struct ng_httpd_req *r, void *arg)
{
	struct tw_standin *s = arg;
	s->requests++;
	char *want = ng_xasprintf("/2010-04-01/Accounts/%s/Messages.json", s->account_sid);
	int path_ok = strcmp(ng_httpd_path(r), want) == 0;
	free(want);
	if (!path_ok)
		refuse(s, r, 404, 20404, "The requested resource was not found");
	else if (!auth_ok(s, r))
		refuse(s, r, 401, 20003, "Authenticate");
	else if (strcmp(ng_httpd_method(r), "POST") == 0)
		create_message(s, r);
	else
		list_messages(s, r);
}

/* ---- callbacks ------------------------------------------------------------------------------ */

static struct tw_standin_msg *find(struct tw_standin *s, const char *sid)
{
	for (size_t i = 0; i < s->nmsgs; i++)
		if (strcmp(s->msgs[i].sid, sid) == 0)
			return &s->msgs[i];
	return NULL;
}

static void maybe_done(struct tw_standin *s);

static void on_callback_answer(void *arg, const struct ng_httpc_response *r)
{
	struct callback *c = arg;
	struct tw_standin *s = c->s;
	s->cb_status[c->index] = r->error ? 0 : r->status;
	s->cb_pending--;
	free(c);
	maybe_done(s);
}

static int post_signed(struct tw_standin *s, const char *url, const char *sign_url, char *form)
{
	char sig[64];
	tw_standin_sign(s->auth_token, sign_url ? sign_url : url, form, sig);
	struct ng_httpc_header h[] = {{"Content-Type", "application/x-www-form-urlencoded"},
	                              {"X-Twilio-Signature", sig},
	                              {"User-Agent", "TwilioProxy/1.1"}};
	if (s->ncb == s->cb_cap) {
		s->cb_cap = s->cb_cap ? s->cb_cap * 2 : 32;
		s->cb_status = ng_xrealloc(s->cb_status, s->cb_cap * sizeof *s->cb_status);
	}
	struct callback *c = ng_xcalloc(1, sizeof *c);
	c->s = s;
	c->index = s->ncb;
	s->cb_status[s->ncb++] = 0;
	struct ng_httpc_request q = {.method = "POST",
	                             .url = url,
	                             .headers = h,
	                             .nheaders = 3,
	                             .body = form,
	                             .body_len = strlen(form),
	                             .timeout_ms = 15000};
	int rc = ng_httpc_request(s->cli, &q, on_callback_answer, c);
	free(form);
	if (rc) {
		free(c);
		return rc;
	}
	s->cb_pending++;
	return 0;
}

int tw_standin_post_status(struct tw_standin *s, const char *sid, const char *status,
                           int error_code, const char *sign_url)
{
	struct tw_standin_msg *m = find(s, sid);
	if (!m || !m->status_callback)
		return -1;
	snprintf(m->status, sizeof m->status, "%s", status);
	m->error_code = error_code;
	char *form = NULL;
	form_add(&form, "AccountSid", s->account_sid);
	form_add(&form, "ApiVersion", "2010-04-01");
	form_add(&form, "From", m->from[0] ? m->from : "+15005550006");
	if (m->service[0])
		form_add(&form, "MessagingServiceSid", m->service);
	form_add(&form, "MessageSid", m->sid);
	form_add(&form, "MessageStatus", status);
	form_add(&form, "SmsSid", m->sid);
	form_add(&form, "SmsStatus", status);
	form_add(&form, "To", m->to);
	if (error_code) {
		char ec[16];
		snprintf(ec, sizeof ec, "%d", error_code);
		form_add(&form, "ErrorCode", ec);
	}
	if (strcmp(status, "delivered") == 0 || strcmp(status, "undelivered") == 0)
		form_add(&form, "RawDlrDoneDate", "2612020600");
	return post_signed(s, m->status_callback, sign_url, form);
}

int tw_standin_post_inbound(struct tw_standin *s, const char *url, const char *from, const char *to,
                            const char *body)
{
	char sid[40];
	snprintf(sid, sizeof sid, "SM%032llx", ++s->next_sid);
	char *form = NULL;
	form_add(&form, "AccountSid", s->account_sid);
	form_add(&form, "ApiVersion", "2010-04-01");
	form_add(&form, "Body", body);
	form_add(&form, "From", from);
	form_add(&form, "MessageSid", sid);
	form_add(&form, "NumMedia", "0");
	form_add(&form, "NumSegments", "1");
	form_add(&form, "SmsMessageSid", sid);
	form_add(&form, "SmsSid", sid);
	form_add(&form, "SmsStatus", "received");
	form_add(&form, "To", to);
	return post_signed(s, url, NULL, form);
}

static void auto_closed(uv_handle_t *h)
{
	free(h->data);
}

static void on_auto(uv_timer_t *t)
{
	struct auto_cb *a = t->data;
	struct tw_standin *s = a->s;
	struct tw_standin_msg *m = find(s, a->sid);
	if (a->step == 0) {
		tw_standin_post_status(s, a->sid, "sent", 0, NULL);
		schedule_auto(s, a->sid, 1);
	} else if (m) {
		const struct script *sc = script_for(s, m->to);
		int ec = sc ? sc->undelivered_code : 0;
		tw_standin_post_status(s, a->sid, ec ? "undelivered" : "delivered", ec, NULL);
	}
	if (a->prev)
		a->prev->next = a->next;
	else
		s->autos = a->next;
	if (a->next)
		a->next->prev = a->prev;
	uv_close((uv_handle_t *)&a->timer, auto_closed);
}

static void schedule_auto(struct tw_standin *s, const char *sid, int step)
{
	struct auto_cb *a = ng_xcalloc(1, sizeof *a);
	a->s = s;
	a->step = step;
	snprintf(a->sid, sizeof a->sid, "%s", sid);
	uv_timer_init(s->loop, &a->timer);
	a->timer.data = a;
	a->next = s->autos;
	if (s->autos)
		s->autos->prev = a;
	s->autos = a;
	uv_timer_start(&a->timer, on_auto, s->callback_delay_ms, 0);
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

int tw_standin_start(struct tw_standin **out, uv_loop_t *loop, const struct tw_standin_options *o)
{
	struct tw_standin *s = ng_xcalloc(1, sizeof *s);
	s->loop = loop;
	s->account_sid = ng_xstrdup(o->account_sid);
	s->auth_token = ng_xstrdup(o->auth_token);
	s->delay_ms = o->delay_ms;
	s->auto_callbacks = o->auto_callbacks;
	s->callback_delay_ms = o->callback_delay_ms ? o->callback_delay_ms : 5;
	struct ng_httpd_options so = {.drain_timeout_ms = 100, .max_connections = 4096};
	int rc = ng_httpd_open(&s->srv, loop, &so);
	if (rc == 0) {
		ng_httpd_route(s->srv, "POST", "/2010-04-01/Accounts/*", on_messages, s);
		ng_httpd_route(s->srv, "GET", "/2010-04-01/Accounts/*", on_messages, s);
		rc = ng_httpd_listen(s->srv, "127.0.0.1", 0);
	}
	if (rc == 0)
		rc = ng_httpc_open(&s->cli, loop, NULL);
	if (rc)
		return rc;
	*out = s;
	return 0;
}

int tw_standin_port(const struct tw_standin *s)
{
	return ng_httpd_port(s->srv);
}

void tw_standin_script(struct tw_standin *s, const char *to, int http_status, int code,
                       int retry_after_s, int keep, int undelivered_code)
{
	struct script *sc = ng_xcalloc(1, sizeof *sc);
	snprintf(sc->to, sizeof sc->to, "%s", to);
	sc->http_status = http_status;
	sc->code = code;
	sc->retry_after_s = retry_after_s;
	sc->keep = keep;
	sc->undelivered_code = undelivered_code;
	sc->next = s->scripts;
	s->scripts = sc;
}

size_t tw_standin_requests(const struct tw_standin *s)
{
	return s->requests;
}

size_t tw_standin_count(const struct tw_standin *s)
{
	return s->nmsgs;
}

const struct tw_standin_msg *tw_standin_at(const struct tw_standin *s, size_t i)
{
	return i < s->nmsgs ? &s->msgs[i] : NULL;
}

uint64_t tw_standin_connections(const struct tw_standin *s)
{
	struct ng_httpd_stats st;
	ng_httpd_stats(s->srv, &st);
	return st.connections_total;
}

const char *tw_standin_last_refusal(const struct tw_standin *s)
{
	return s->refusal;
}

int tw_standin_callbacks_pending(const struct tw_standin *s)
{
	return s->cb_pending;
}

size_t tw_standin_callbacks(const struct tw_standin *s)
{
	return s->ncb;
}

int tw_standin_callback_status(const struct tw_standin *s, size_t i)
{
	return i < s->ncb ? s->cb_status[i] : -1;
}

static void on_part_closed(void *arg)
{
	struct tw_standin *s = arg;
	s->closed++;
	maybe_done(s);
}

static void maybe_done(struct tw_standin *s)
{
	if (!s->stopping)
		return;
	if (s->stopping == 1 && s->cb_pending == 0) {
		s->stopping = 2;
		ng_httpc_close(s->cli, on_part_closed, s);
		ng_httpd_close(s->srv, on_part_closed, s);
		return;
	}
	if (s->closed < 2)
		return;
	for (size_t i = 0; i < s->nmsgs; i++) {
		free(s->msgs[i].body);
		free(s->msgs[i].status_callback);
	}
	free(s->msgs);
	while (s->scripts) {
		struct script *sc = s->scripts;
		s->scripts = sc->next;
		free(sc);
	}
	free(s->cb_status);
	free(s->account_sid);
	free(s->auth_token);
	void (*done)(void *) = s->done;
	void *arg = s->done_arg;
	free(s);
	if (done)
		done(arg);
}

void tw_standin_stop(struct tw_standin *s, void (*done)(void *arg), void *arg)
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
			h->body = error_json(503, 20503, "stopping");
		}
		answer_now(h);
		uv_close((uv_handle_t *)&h->timer, held_closed);
	}
	while (s->autos) {
		struct auto_cb *a = s->autos;
		s->autos = a->next;
		uv_close((uv_handle_t *)&a->timer, auto_closed);
	}
	maybe_done(s);
}
