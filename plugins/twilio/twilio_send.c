/*
 * twilio_send.c — one message through POST /2010-04-01/Accounts/{sid}/Messages.json, and what its
 * answer means; and reconcile, which looks a message up before nudge sends it again.
 *
 * Twilio's message create is not idempotent: a request that got no answer (a timeout after it went
 * out, a 5xx) may have been accepted, and sending it again would text the customer twice. Such a
 * send is AMBIGUOUS; nudge later calls reconcile, which lists the recipient's recent messages and
 * looks for this body. Only a request that never left (connection refused) or that Twilio refused
 * with 429 is a plain retry.
 */
#include "twilio.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* 'To' numbers Twilio says are not valid SMS destinations: fail and suppress the number. */
static int invalid_number(int code)
{
	static const int codes[] = {21211, 21214, 21217, 21401, 21407, 21421, 21614};
	for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
		if (codes[i] == code)
			return 1;
	return 0;
}

static const char *header(const struct nudge_http_response *r, const char *name)
{
	for (size_t i = 0; i < r->nheaders; i++)
		if (strcasecmp(r->headers[i].name, name) == 0)
			return r->headers[i].value;
	return NULL;
}

static void unlink_in_flight(struct tw_item *it)
{
	struct tw_inst *inst = it->inst;
	if (it->prev_f)
		it->prev_f->next_f = it->next_f;
	else
		inst->in_flight = it->next_f;
	if (it->next_f)
		it->next_f->prev_f = it->prev_f;
	inst->n_in_flight--;
}

/* After a request: completes it, then lets the queue move (or the shutdown finish). */
static void finish(struct tw_item *it, const struct nudge_send_result *r)
{
	struct tw_inst *inst = it->inst;
	unlink_in_flight(it);
	tw_complete(it, r);
	tw_pump(inst);
	tw_maybe_finish(inst);
}

/* A request the host refused to start: nothing went out. */
static void refused(struct tw_item *it, int rc)
{
	unlink_in_flight(it);
	char why[160];
	snprintf(why, sizeof why, "cannot start the request to Twilio (error %d)", rc);
	tw_complete_later(it, NUDGE_SEND_RETRY, 0, rc, why);
}

static void request(struct tw_item *it, const char *method, const char *url, const char *body,
                    nudge_http_done_fn *cb)
{
	struct tw_inst *inst = it->inst;
	struct nudge_header h[] = {{"Accept", "application/json"},
	                           {"Content-Type", "application/x-www-form-urlencoded"}};
	struct nudge_http_request req = {
	    .struct_size = sizeof req,
	    .method = method,
	    .url = url,
	    .headers = h,
	    .nheaders = body ? 2 : 1,
	    .body = body,
	    .body_len = body ? strlen(body) : 0,
	    .username = inst->api_key_sid ? inst->api_key_sid : inst->account_sid,
	    .password = inst->api_key_secret ? inst->api_key_secret : inst->auth_token,
	    .timeout_ms = inst->timeout_ms,
	    .ca_file = inst->ca_file,
	};
	int rc = inst->host->http_request(inst->self, &req, cb, it);
	if (rc)
		refused(it, rc);
}

/* Twilio's error body: {"code": 21211, "message": "…", "more_info": "…", "status": 400}. */
static void error_fields(json_t *j, int *code, char *msg, size_t msglen)
{
	*code = 0;
	msg[0] = '\0';
	if (!j)
		return;
	json_t *c = json_object_get(j, "code");
	if (json_is_integer(c))
		*code = (int)json_integer_value(c);
	json_t *m = json_object_get(j, "message");
	if (json_is_string(m))
		snprintf(msg, msglen, "%s", json_string_value(m));
}

/* num_segments is a string in Twilio's resource ("2"); accept a number too. */
static int json_int_field(json_t *j, const char *key)
{
	json_t *v = json_object_get(j, key);
	if (json_is_integer(v))
		return (int)json_integer_value(v);
	if (json_is_string(v))
		return atoi(json_string_value(v));
	return 0;
}

static void note_ambiguous(struct tw_inst *inst, const char *why)
{
	inst->ambiguous_in_row++;
	snprintf(inst->last_problem, sizeof inst->last_problem, "%s", why);
	inst->host->log(inst->self, NUDGE_LOG_WARN, "ambiguous send: %s", why);
}

static void on_consent_reported(void *arg, int status)
{
	struct tw_inst *inst = arg;
	if (status != 0)
		inst->host->log(inst->self, NUDGE_LOG_ERROR,
		                "an opt-out Twilio reported (21610) could not be recorded: %d",
		                status);
	tw_maybe_finish(inst);
}

static void on_sent(void *arg, const struct nudge_http_response *r)
{
	struct tw_item *it = arg;
	struct tw_inst *inst = it->inst;
	char reason[300], sid[64] = "";
	struct nudge_send_result res = {.struct_size = sizeof res, .reason = reason};
	if (r->error) {
		res.code = r->error;
		if (r->request_sent) {
			res.status = NUDGE_SEND_AMBIGUOUS;
			snprintf(reason, sizeof reason,
			         "no answer from Twilio after the request went out: %s",
			         r->error_text);
			note_ambiguous(inst, reason);
		} else {
			res.status = NUDGE_SEND_RETRY;
			snprintf(reason, sizeof reason, "could not reach Twilio: %s",
			         r->error_text);
		}
		finish(it, &res);
		return;
	}
	json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
	int code;
	char msg[200];
	error_fields(j, &code, msg, sizeof msg);
	res.code = code ? code : r->status;
	if (r->status == 200 || r->status == 201) {
		json_t *s = j ? json_object_get(j, "sid") : NULL;
		if (json_is_string(s)) {
			snprintf(sid, sizeof sid, "%s", json_string_value(s));
			res.status = NUDGE_SEND_SENT;
			res.provider_id = sid;
			res.segments = json_int_field(j, "num_segments");
			snprintf(reason, sizeof reason, "%d %s", r->status,
			         json_is_string(json_object_get(j, "status"))
			             ? json_string_value(json_object_get(j, "status"))
			             : "accepted");
			inst->auth_failed = 0;
			inst->ambiguous_in_row = 0;
		} else {
			/* Accepted, but we cannot tell under which id: reconcile finds it. */
			res.status = NUDGE_SEND_AMBIGUOUS;
			snprintf(reason, sizeof reason, "Twilio answered %d without a message sid",
			         r->status);
			note_ambiguous(inst, reason);
		}
	} else if (r->status == 429 || code == 20429) {
		/* "never processed and is always safe to retry" */
		const char *ra = header(r, "Retry-After");
		res.status = NUDGE_SEND_RETRY;
		res.retry_after_ms = ra && atol(ra) > 0 ? atol(ra) * 1000 : 1000;
		snprintf(reason, sizeof reason, "Twilio is rate limiting (%d %d)", r->status, code);
	} else if (r->status >= 500) {
		res.status = NUDGE_SEND_AMBIGUOUS;
		snprintf(reason, sizeof reason, "Twilio answered %d %d %s", r->status, code, msg);
		note_ambiguous(inst, reason);
	} else if (r->status == 401 || code == 20003) {
		/* Not the message's fault: keep it, shout, and report the instance down. */
		res.status = NUDGE_SEND_RETRY;
		res.retry_after_ms = 60000;
		inst->auth_failed = 1;
		snprintf(inst->last_problem, sizeof inst->last_problem, "%d %d %s", r->status, code,
		         msg);
		snprintf(reason, sizeof reason, "Twilio refused our credentials (%d %d)", r->status,
		         code);
		inst->host->log(inst->self, NUDGE_LOG_ERROR,
		                "Twilio refused the credentials of account %s: %s",
		                inst->account_sid, msg);
	} else if (code == 21610) {
		/* The recipient replied STOP to this sender: Twilio blocks the pair until START. */
		res.status = NUDGE_SEND_FAILED;
		res.suppress = 1;
		snprintf(reason, sizeof reason, "21610 the recipient has opted out (replied STOP)");
		tw_report_consent(inst, it->to, 0, NULL, "provider error 21610", NULL,
		                  on_consent_reported, inst);
	} else {
		res.status = NUDGE_SEND_FAILED;
		res.suppress = invalid_number(code);
		snprintf(reason, sizeof reason, "Twilio refused the message: %d %d %s", r->status,
		         code, msg);
	}
	json_decref(j);
	finish(it, &res);
}

void tw_start_send(struct tw_item *it)
{
	struct tw_inst *inst = it->inst;
	const struct nudge_message *msg = it->msg;
	struct tw_sender *s = it->sender;
	struct tw_buf form = {0};
	tw_form_add(&form, "To", it->to);
	tw_form_add(&form, s->is_service ? "MessagingServiceSid" : "From", s->id);
	tw_form_add(&form, "Body", msg->body);
	if (inst->status_callback_url) {
		/* The message key rides in the callback URL, so a status can be matched to the
		 * message even when the send's answer (and its sid) was lost. */
		struct tw_buf cb = {0};
		tw_buf_str(&cb, inst->status_callback_url);
		tw_buf_str(&cb, strchr(inst->status_callback_url, '?') ? "&m=" : "?m=");
		tw_urlencode(&cb, msg->key ? msg->key : "");
		tw_form_add(&form, "StatusCallback", cb.s);
		free(cb.s);
	}
	request(it, "POST", inst->messages_url, form.s, on_sent);
	free(form.s);
}

/* ---- reconcile ------------------------------------------------------------------------------ */

static void on_listed(void *arg, const struct nudge_http_response *r)
{
	struct tw_item *it = arg;
	struct tw_inst *inst = it->inst;
	char reason[300], sid[64] = "";
	struct nudge_send_result res = {.struct_size = sizeof res, .reason = reason};
	if (r->error || r->status != 200) {
		res.status = NUDGE_SEND_AMBIGUOUS;
		res.code = r->error ? r->error : r->status;
		snprintf(reason, sizeof reason, "cannot look the message up: %s",
		         r->error ? r->error_text : "Twilio refused the lookup");
		finish(it, &res);
		return;
	}
	json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
	json_t *list = j ? json_object_get(j, "messages") : NULL;
	if (!json_is_array(list)) {
		res.status = NUDGE_SEND_AMBIGUOUS;
		snprintf(reason, sizeof reason, "Twilio's message list did not parse");
		json_decref(j);
		finish(it, &res);
		return;
	}
	int64_t since = inst->host->now_ms(inst->self) - inst->reconcile_window_ms;
	json_t *found = NULL;
	size_t i;
	json_t *m;
	json_array_foreach(list, i, m)
	{
		const char *dir = json_string_value(json_object_get(m, "direction"));
		const char *body = json_string_value(json_object_get(m, "body"));
		const char *to = json_string_value(json_object_get(m, "to"));
		int64_t created =
		    tw_parse_date(json_string_value(json_object_get(m, "date_created")));
		if (!dir || strncmp(dir, "outbound", 8) != 0 || !body || !to)
			continue;
		if (strcmp(to, it->to) != 0 || strcmp(body, it->msg->body) != 0)
			continue;
		if (created >= 0 && created < since)
			continue;
		found = m; /* newest first: the first match is the latest copy */
		break;
	}
	if (!found) {
		res.status = NUDGE_SEND_RETRY;
		snprintf(reason, sizeof reason, "Twilio has no such message: safe to send again");
	} else {
		const char *st = json_string_value(json_object_get(found, "status"));
		snprintf(sid, sizeof sid, "%s", json_string_value(json_object_get(found, "sid")));
		res.segments = json_int_field(found, "num_segments");
		if (st && strcmp(st, "failed") == 0) {
			res.status = NUDGE_SEND_FAILED;
			res.code = json_int_field(found, "error_code");
			snprintf(reason, sizeof reason, "found %s: Twilio could not send it (%d)",
			         sid, res.code);
		} else {
			res.status = NUDGE_SEND_SENT;
			res.provider_id = sid;
			snprintf(reason, sizeof reason, "found %s (%s)", sid, st ? st : "?");
		}
	}
	json_decref(j);
	finish(it, &res);
}

void tw_start_reconcile(struct tw_item *it)
{
	struct tw_inst *inst = it->inst;
	struct tw_buf url = {0};
	tw_buf_str(&url, inst->messages_url);
	tw_buf_str(&url, "?To=");
	tw_urlencode(&url, it->to);
	tw_buf_str(&url, "&PageSize=50");
	request(it, "GET", url.s, NULL, on_listed);
	free(url.s);
}
