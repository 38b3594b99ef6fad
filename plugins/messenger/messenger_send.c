/*
 * messenger_send.c — one message through POST /vNN/me/messages: the policy that decides whether
 * and how it may go (the 24-hour window, the messaging type, a message tag), the request, and what
 * Graph's answer means.
 *
 * The workflow says what a message is through two extra headers on nudge_message: a tag for a
 * transactional update outside the window (`X-Messenger-Tag: POST_PURCHASE_UPDATE`), and up to
 * three link buttons (`X-Messenger-Button: Track your parcel | https://…`), which turn the body
 * into a button template. Inside the window every message goes as UPDATE. Outside it a promotion
 * is refused without a request (Meta would refuse it too, and count it against the page), and a
 * transactional message goes as MESSAGE_TAG only when it carries an allowed tag.
 */
#include "messenger.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The tags Meta still allows (since 4 March 2020) that an automated sender may use. HUMAN_AGENT
 * is for a person answering by hand, so nudge never sends with it. */
static const char *const allowed_tags[] = {"CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE",
                                           "ACCOUNT_UPDATE", NULL};

#define TEXT_MAX         2000 /* characters in a text message */
#define BUTTON_TEXT_MAX  640  /* characters in a button template's text */
#define BUTTON_TITLE_MAX 20
#define BUTTONS_MAX      3

static size_t utf8_chars(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

static const char *msg_header(const struct nudge_message *m, const char *name, size_t *index)
{
	for (size_t i = index ? *index : 0; m->headers && i < m->nheaders; i++) {
		if (m->headers[i].name && strcasecmp(m->headers[i].name, name) == 0) {
			if (index)
				*index = i + 1;
			return m->headers[i].value;
		}
	}
	return NULL;
}

static int psid_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	return n > 0 && n <= 32 && strspn(s, "0123456789") == n;
}

/* "Title | https://url" → a web_url button; NULL (and why) if it does not fit. */
static json_t *button(const char *spec, char *why, size_t whylen)
{
	const char *bar = strchr(spec, '|');
	if (!bar) {
		snprintf(why, whylen, "X-Messenger-Button must be \"Title | https://url\"");
		return NULL;
	}
	const char *t = spec, *te = bar, *u = bar + 1, *ue = spec + strlen(spec);
	while (t < te && (*t == ' ' || *t == '\t'))
		t++;
	while (te > t && (te[-1] == ' ' || te[-1] == '\t'))
		te--;
	while (u < ue && (*u == ' ' || *u == '\t'))
		u++;
	while (ue > u && (ue[-1] == ' ' || ue[-1] == '\t'))
		ue--;
	char title[128], url[1024];
	snprintf(title, sizeof title, "%.*s", (int)(te - t), t);
	snprintf(url, sizeof url, "%.*s", (int)(ue - u), u);
	if (!*title || utf8_chars(title) > BUTTON_TITLE_MAX) {
		snprintf(why, whylen, "a button title must have 1 to %d characters",
		         BUTTON_TITLE_MAX);
		return NULL;
	}
	if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0) {
		snprintf(why, whylen, "a button URL must be http(s)");
		return NULL;
	}
	return json_pack("{s:s, s:s, s:s}", "type", "web_url", "url", url, "title", title);
}

/* The "message" object: text, or a button template when the message carries buttons. */
static json_t *message_object(const struct nudge_message *m, char *why, size_t whylen)
{
	const char *body = m->body ? m->body : m->text;
	if (!body || !*body) {
		snprintf(why, whylen, "the message has no body");
		return NULL;
	}
	json_t *buttons = json_array();
	size_t idx = 0;
	const char *spec;
	while ((spec = msg_header(m, "X-Messenger-Button", &idx))) {
		if (json_array_size(buttons) == BUTTONS_MAX) {
			snprintf(why, whylen, "at most %d X-Messenger-Button headers", BUTTONS_MAX);
			json_decref(buttons);
			return NULL;
		}
		json_t *b = button(spec, why, whylen);
		if (!b) {
			json_decref(buttons);
			return NULL;
		}
		json_array_append_new(buttons, b);
	}
	size_t chars = utf8_chars(body);
	if (json_array_size(buttons) == 0) {
		json_decref(buttons);
		if (chars > TEXT_MAX) {
			snprintf(why, whylen, "the body has %zu characters; Messenger takes %d",
			         chars, TEXT_MAX);
			return NULL;
		}
		json_t *o = json_pack("{s:s}", "text", body);
		if (!o)
			snprintf(why, whylen, "the body is not valid UTF-8");
		return o;
	}
	if (chars > BUTTON_TEXT_MAX) {
		snprintf(why, whylen, "a button template's text has at most %d characters, not %zu",
		         BUTTON_TEXT_MAX, chars);
		json_decref(buttons);
		return NULL;
	}
	json_t *o =
	    json_pack("{s:{s:s, s:{s:s, s:s, s:o}}}", "attachment", "type", "template", "payload",
	              "template_type", "button", "text", body, "buttons", buttons);
	if (!o)
		snprintf(why, whylen, "the body is not valid UTF-8");
	return o;
}

static int tag_allowed(const char *tag)
{
	for (const char *const *t = allowed_tags; *t; t++)
		if (strcmp(*t, tag) == 0)
			return 1;
	return 0;
}

/*
 * The policy. Returns the messaging type and sets *tag, or NULL with the reason the message may
 * not go (a FAILED without suppression: the person is fine, the timing is not).
 */
static const char *choose_type(struct ms_item *it, const char **tag, char *why, size_t whylen)
{
	struct ms_inst *inst = it->inst;
	const struct nudge_message *m = it->msg;
	const char *want = msg_header(m, "X-Messenger-Tag", NULL);
	*tag = NULL;
	if (want && !tag_allowed(want)) {
		snprintf(
		    why, whylen,
		    "X-Messenger-Tag %s is not a tag nudge may send with (CONFIRMED_EVENT_UPDATE, "
		    "POST_PURCHASE_UPDATE, ACCOUNT_UPDATE)",
		    want);
		return NULL;
	}
	int64_t now = inst->host->now_ms(inst->self);
	int64_t last = ms_last_seen(inst, m->recipient);
	if (last > 0 && now - last < inst->window_ms)
		return "UPDATE";
	char ago[64];
	if (last > 0)
		snprintf(ago, sizeof ago, "last interaction %.1f hours ago",
		         (double)(now - last) / 3600000.0);
	else
		snprintf(ago, sizeof ago, "no interaction known");
	long hours = (long)(inst->window_ms / 3600000);
	if (m->purpose != NUDGE_PURPOSE_TRANSACTIONAL || !want)
		inst->host->metric_add(inst->self, "outside_window", 1);
	if (m->purpose != NUDGE_PURPOSE_TRANSACTIONAL) {
		snprintf(why, whylen,
		         "outside the %ld-hour messaging window (%s): a promotional message may "
		         "only be sent after the person writes to the page",
		         hours, ago);
		return NULL;
	}
	if (!want) {
		snprintf(why, whylen,
		         "outside the %ld-hour messaging window (%s) and the message carries no "
		         "X-Messenger-Tag",
		         hours, ago);
		return NULL;
	}
	*tag = want;
	return "MESSAGE_TAG";
}

/* ---- the answer ----------------------------------------------------------------------------- */

static void finish(struct ms_item *it, const struct nudge_send_result *r)
{
	struct ms_inst *inst = it->inst;
	ms_unlink(&inst->in_flight, it);
	inst->n_in_flight--;
	ms_complete(it, r);
	ms_maybe_finish(inst);
}

static int64_t backoff(uint32_t attempt, int64_t first_ms, int64_t cap_ms)
{
	int64_t d = first_ms;
	for (uint32_t i = 1; i < attempt && d < cap_ms; i++)
		d *= 2;
	return d < cap_ms ? d : cap_ms;
}

/* Graph's envelope: {"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}. */
struct graph_error {
	int code, subcode;
	char message[200];
};

static void parse_error(json_t *j, struct graph_error *e)
{
	memset(e, 0, sizeof *e);
	json_t *err = j ? json_object_get(j, "error") : NULL;
	if (!json_is_object(err))
		return;
	json_t *v = json_object_get(err, "code");
	if (json_is_integer(v))
		e->code = (int)json_integer_value(v);
	v = json_object_get(err, "error_subcode");
	if (json_is_integer(v))
		e->subcode = (int)json_integer_value(v);
	v = json_object_get(err, "message");
	if (json_is_string(v))
		snprintf(e->message, sizeof e->message, "%s", json_string_value(v));
}

static int is_permission_error(int code)
{
	return code == 10 || (code >= 200 && code <= 299);
}

static void on_sent(void *arg, const struct nudge_http_response *r)
{
	struct ms_item *it = arg;
	struct ms_inst *inst = it->inst;
	const struct nudge_message *m = it->msg;
	char reason[400], mid[128] = "";
	struct nudge_send_result res = {.struct_size = sizeof res, .reason = reason};
	if (r->error) {
		res.code = r->error;
		res.status = r->request_sent ? NUDGE_SEND_AMBIGUOUS : NUDGE_SEND_RETRY;
		snprintf(reason, sizeof reason, "%s: %s",
		         r->request_sent ? "no answer from Graph after the request went out"
		                         : "could not reach Graph",
		         r->error_text ? r->error_text : "?");
		finish(it, &res);
		return;
	}
	json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
	struct graph_error e;
	parse_error(j, &e);
	res.code = e.code ? e.code : r->status;
	const char *text = e.message[0] ? e.message : "no error message";
	if (r->status == 200 && !e.code) {
		json_t *id = j ? json_object_get(j, "message_id") : NULL;
		if (json_is_string(id)) {
			snprintf(mid, sizeof mid, "%s", json_string_value(id));
			res.status = NUDGE_SEND_SENT;
			res.provider_id = mid;
			snprintf(reason, sizeof reason, "200 accepted");
			if (inst->token_refused || inst->restricted)
				inst->host->log(inst->self, NUDGE_LOG_INFO,
				                "Graph accepts our sends again");
			inst->token_refused = 0;
			inst->restricted = 0;
		} else {
			/* Accepted, but under which id? Graph has no lookup to reconcile with. */
			res.status = NUDGE_SEND_AMBIGUOUS;
			snprintf(reason, sizeof reason, "Graph answered 200 without a message_id");
		}
	} else if (e.code == 10 && e.subcode == 2018278) {
		/* Meta says the window is closed, whatever we believed: forget it. */
		ms_forget_window(inst, m->recipient);
		res.status = NUDGE_SEND_FAILED;
		snprintf(reason, sizeof reason,
		         "outside the messaging window (10/2018278): %s; needs a message tag or a "
		         "new message from the person",
		         text);
	} else if (e.code == 10 && e.subcode == 1893063) {
		res.status = NUDGE_SEND_RETRY;
		res.retry_after_ms = 3600000;
		inst->restricted = 1;
		snprintf(inst->last_problem, sizeof inst->last_problem, "10/1893063 %s", text);
		snprintf(reason, sizeof reason, "the page is restricted from sending (10/1893063)");
		inst->host->log(inst->self, NUDGE_LOG_ERROR,
		                "Meta restricted the page from sending (10/1893063): %s; holding "
		                "messages",
		                text);
	} else if (e.code == 551) {
		res.status = NUDGE_SEND_FAILED;
		res.suppress = 1;
		snprintf(reason, sizeof reason, "the person is not available (551/%d): %s",
		         e.subcode, text);
	} else if (e.code == 100 && e.subcode == 2018001) {
		res.status = NUDGE_SEND_FAILED;
		res.suppress = 1;
		snprintf(reason, sizeof reason, "no matching user for this PSID (100/2018001): %s",
		         text);
	} else if (e.code == 4 || e.code == 613 || e.code == 32 || r->status == 429) {
		res.status = NUDGE_SEND_RETRY;
		res.retry_after_ms = backoff(m->attempt, 60000, 3600000);
		snprintf(reason, sizeof reason, "Graph rate limit (%d): %s", e.code, text);
		inst->host->metric_add(inst->self, "rate_limited", 1);
	} else if (e.code == 190 || is_permission_error(e.code)) {
		/* Not the message's fault: hold it, shout, and report the instance down. */
		res.status = NUDGE_SEND_RETRY;
		res.retry_after_ms = 300000;
		inst->token_refused = 1;
		snprintf(inst->last_problem, sizeof inst->last_problem, "%d/%d %s", e.code,
		         e.subcode, text);
		snprintf(reason, sizeof reason, "Graph refused the page access token (%d/%d)",
		         e.code, e.subcode);
		inst->host->log(
		    inst->self, NUDGE_LOG_ERROR,
		    "Graph refused the page access token (%d/%d): %s; messages are held "
		    "until a new token is configured",
		    e.code, e.subcode, text);
	} else if (e.code == 1 || e.code == 2) {
		/* Temporary (also seen when the person blocked the page): retry, then give up. */
		if (m->attempt >= (uint32_t)inst->max_attempts_transient) {
			res.status = NUDGE_SEND_FAILED;
			snprintf(reason, sizeof reason,
			         "Graph's temporary error (%d) persisted over %u attempts: %s",
			         e.code, m->attempt, text);
		} else {
			res.status = NUDGE_SEND_RETRY;
			res.retry_after_ms = backoff(m->attempt, 5000, 600000);
			snprintf(reason, sizeof reason, "Graph's temporary error (%d): %s", e.code,
			         text);
		}
	} else if (r->status >= 500) {
		res.status = NUDGE_SEND_AMBIGUOUS;
		snprintf(reason, sizeof reason, "Graph answered %d (%d): %s", r->status, e.code,
		         text);
	} else {
		res.status = NUDGE_SEND_FAILED;
		snprintf(reason, sizeof reason, "Graph refused the message: %d (%d/%d) %s",
		         r->status, e.code, e.subcode, text);
	}
	json_decref(j);
	finish(it, &res);
}

void ms_start_send(struct ms_item *it)
{
	struct ms_inst *inst = it->inst;
	const struct nudge_message *m = it->msg;
	char why[240];
	if (!psid_ok(m->recipient)) {
		snprintf(why, sizeof why, "\"%s\" is not a page-scoped id (PSID)",
		         m->recipient ? m->recipient : "");
		ms_complete_later(it, NUDGE_SEND_FAILED, 0, why);
		return;
	}
	json_t *message = message_object(m, why, sizeof why);
	if (!message) {
		ms_complete_later(it, NUDGE_SEND_FAILED, 0, why);
		return;
	}
	const char *tag;
	const char *type = choose_type(it, &tag, why, sizeof why);
	if (!type) {
		json_decref(message);
		ms_complete_later(it, NUDGE_SEND_FAILED, 0, why);
		return;
	}
	json_t *body = json_pack("{s:{s:s}, s:s, s:o}", "recipient", "id", m->recipient,
	                         "messaging_type", type, "message", message);
	if (tag) {
		json_object_set_new(body, "tag", json_string(tag));
		inst->host->metric_add(inst->self, "tagged", 1);
	}
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	struct nudge_header h[] = {{"Content-Type", "application/json"},
	                           {"Accept", "application/json"}};
	struct nudge_http_request req = {
	    .struct_size = sizeof req,
	    .method = "POST",
	    .url = inst->messages_url,
	    .headers = h,
	    .nheaders = 2,
	    .body = text,
	    .body_len = strlen(text),
	    .timeout_ms = inst->timeout_ms,
	    .ca_file = inst->ca_file,
	};
	ms_link(&inst->in_flight, it);
	inst->n_in_flight++;
	int rc = inst->host->http_request(inst->self, &req, on_sent, it);
	free(text);
	if (rc) {
		ms_unlink(&inst->in_flight, it);
		inst->n_in_flight--;
		snprintf(why, sizeof why, "cannot start the request to Graph (error %d)", rc);
		ms_complete_later(it, NUDGE_SEND_RETRY, rc, why);
	}
}
