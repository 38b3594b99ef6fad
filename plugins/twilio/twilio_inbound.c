/*
 * twilio_inbound.c — what Twilio posts to /v1/webhooks/<instance>: status callbacks for the
 * messages we sent, and the messages customers send us.
 *
 * Nothing is believed before X-Twilio-Signature checks out against the public URL (with and
 * without its port) and the account matches: otherwise 403 and no change. A status callback
 * becomes a status report, once per message and state: callbacks arrive out of order and more
 * than once, so one ranking below (or equal to) what this instance already reported changes
 * nothing. An inbound message becomes an `sms.received` event; an opt-out word (STOP, STOPALL,
 * UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT) withdraws SMS consent, START, UNSTOP or YES gives
 * it again, HELP is recorded with the event. Twilio gets its answer after nudge has recorded
 * everything (the reports' done), so a 2xx means it is kept.
 */
#include "twilio.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* One webhook call while its reports are being recorded. */
struct tw_call {
	struct tw_inst *inst;
	nudge_inbound_done_fn *done;
	void *done_arg;
	int waiting; /* reports without their done, plus one while the call is being set up */
	int failed;
	int twiml;            /* answer with an empty TwiML document (inbound messages) */
	struct tw_seen *slot; /* the dedupe slot this call claimed, released on failure */
	int slot_rank_before;
	char slot_sid_before[40];
	struct tw_sms_event *event; /* an inbound message's event, reported after its keyword */
};

/* The sms.received event of an inbound message, kept while its keyword's consent report runs. */
struct tw_sms_event {
	char *address;
	char *sid;
	char *props_json;
};

static void sms_event_free(struct tw_sms_event *e)
{
	if (!e)
		return;
	free(e->address);
	free(e->sid);
	free(e->props_json);
	free(e);
}

static void respond(struct tw_inst *inst, nudge_inbound_done_fn *done, void *done_arg, int status,
                    const char *type, const char *body)
{
	struct nudge_inbound_response res = {
	    .struct_size = sizeof res,
	    .status = status,
	    .content_type = type,
	    .body = body,
	    .body_len = strlen(body),
	};
	(void)inst;
	done(done_arg, &res);
}

static void call_step(struct tw_call *c)
{
	if (--c->waiting > 0)
		return;
	struct tw_inst *inst = c->inst;
	if (c->failed) {
		if (c->slot) { /* let Twilio's retry (if any) be applied */
			snprintf(c->slot->sid, sizeof c->slot->sid, "%s", c->slot_sid_before);
			c->slot->rank = c->slot_rank_before;
		}
		respond(inst, c->done, c->done_arg, 500, "text/plain", "not recorded, try again\n");
	} else if (c->twiml)
		respond(inst, c->done, c->done_arg, 200, "text/xml",
		        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>");
	else
		respond(inst, c->done, c->done_arg, 200, "text/plain", "ok\n");
	sms_event_free(c->event);
	free(c);
	inst->pending_inbound--;
	tw_maybe_finish(inst);
}

/* A report made for call c is recorded (or not). */
static void call_report_done(void *arg, int status)
{
	struct tw_call *c = arg;
	struct tw_inst *inst = c->inst;
	if (status != 0) {
		c->failed = 1;
		inst->host->log(inst->self, NUDGE_LOG_ERROR,
		                "a Twilio webhook could not be recorded: "
		                "%d",
		                status);
	}
	call_step(c);
}

static void on_reported(void *arg, int status)
{
	struct tw_call *c = arg;
	c->inst->pending_reports--;
	call_report_done(c, status);
}

/* Counts a report started on behalf of call c; -ENOSYS (nobody records it) is not a failure. */
static void started(struct tw_call *c, int rc, const char *what)
{
	struct tw_inst *inst = c->inst;
	if (rc == 0) {
		/* on_reported may already have run (done before return): it counted down. */
		return;
	}
	inst->pending_reports--;
	c->waiting--;
	if (rc == -ENOSYS)
		inst->host->log(inst->self, NUDGE_LOG_WARN,
		                "this nudge records no %s reports; the webhook is acknowledged",
		                what);
	else {
		c->failed = 1;
		inst->host->log(inst->self, NUDGE_LOG_ERROR, "the %s report was refused: %d", what,
		                rc);
	}
}

/* A report's bookkeeping before the call: it may complete inside the call. */
static void before_report(struct tw_call *c)
{
	c->waiting++;
	c->inst->pending_reports++;
}

/* Standalone consent reports (a 21610 answer) count against the shutdown too. */
struct tw_consent_arg {
	struct tw_inst *inst;
	nudge_report_done_fn *done;
	void *arg;
};

/* a->done runs last: it may finish the shutdown, which frees the instance. */
static void on_consent_done(void *arg, int status)
{
	struct tw_consent_arg a = *(struct tw_consent_arg *)arg;
	free(arg);
	a.inst->pending_reports--;
	a.done(a.arg, status);
}

int tw_report_consent(struct tw_inst *inst, const char *address, int granted, const char *keyword,
                      const char *source, const char *provider_id, nudge_report_done_fn *done,
                      void *arg)
{
	struct nudge_consent_report r = {
	    .struct_size = sizeof r,
	    .granted = granted,
	    .channel = "sms",
	    .address = address,
	    .keyword = keyword,
	    .source = source,
	    .provider_id = provider_id,
	};
	struct tw_consent_arg *a = calloc(1, sizeof *a);
	if (!a)
		abort();
	*a = (struct tw_consent_arg){inst, done, arg};
	inst->pending_reports++;
	inst->host->metric_add(inst->self, granted ? "opt_ins" : "opt_outs", 1);
	int rc = inst->host->report_consent(inst->self, &r, on_consent_done, a);
	if (rc) {
		inst->pending_reports--;
		free(a);
		inst->host->log(inst->self, rc == -ENOSYS ? NUDGE_LOG_WARN : NUDGE_LOG_ERROR,
		                "consent %s for an SMS recipient could not be reported: %d",
		                granted ? "given" : "withdrawn", rc);
	}
	return rc;
}

/* ---- status callbacks ----------------------------------------------------------------------- */

static int delivery_state(const char *s)
{
	static const struct {
		const char *name;
		int state;
	} map[] = {
	    {"accepted", NUDGE_DELIVERY_QUEUED},
	    {"scheduled", NUDGE_DELIVERY_QUEUED},
	    {"queued", NUDGE_DELIVERY_QUEUED},
	    {"sending", NUDGE_DELIVERY_QUEUED},
	    {"sent", NUDGE_DELIVERY_SENT},
	    {"delivered", NUDGE_DELIVERY_DELIVERED},
	    {"read", NUDGE_DELIVERY_DELIVERED},
	    {"undelivered", NUDGE_DELIVERY_UNDELIVERED},
	    {"failed", NUDGE_DELIVERY_FAILED},
	    {"canceled", NUDGE_DELIVERY_FAILED},
	    {"partially_delivered", NUDGE_DELIVERY_DELIVERED},
	};
	for (size_t i = 0; s && i < sizeof map / sizeof map[0]; i++)
		if (strcmp(map[i].name, s) == 0)
			return map[i].state;
	return 0;
}

static size_t sid_hash(const char *s)
{
	size_t h = 5381;
	for (; *s; s++)
		h = h * 33 + (unsigned char)*s;
	return h % TW_SEEN_SLOTS;
}

static void status_callback(struct tw_call *c, const struct tw_param *p, size_t n,
                            const char *query)
{
	struct tw_inst *inst = c->inst;
	const char *sid = tw_param(p, n, "MessageSid");
	const char *word = tw_param(p, n, "MessageStatus");
	if (!sid)
		sid = tw_param(p, n, "SmsSid");
	if (!word)
		word = tw_param(p, n, "SmsStatus");
	int state = delivery_state(word);
	inst->host->metric_add(inst->self, "status_callbacks", 1);
	if (!sid || !*sid || !state) {
		inst->host->log(inst->self, NUDGE_LOG_DEBUG,
		                "status callback without a usable "
		                "status; ignored");
		call_step(c);
		return;
	}
	int rank = NUDGE_DELIVERY_RANK(state);
	struct tw_seen *slot = &inst->seen[sid_hash(sid)];
	if (strcmp(slot->sid, sid) == 0 && slot->rank >= rank) {
		inst->host->metric_add(inst->self, "status_stale", 1);
		call_step(c); /* older than (or the same as) what we reported: no change */
		return;
	}
	c->slot = slot;
	c->slot_rank_before = slot->rank;
	snprintf(c->slot_sid_before, sizeof c->slot_sid_before, "%s", slot->sid);
	snprintf(slot->sid, sizeof slot->sid, "%s", sid);
	slot->rank = rank;

	struct tw_param *qp = NULL;
	size_t nq = query ? tw_form_parse(query, strlen(query), &qp) : 0;
	const char *ec = tw_param(p, n, "ErrorCode");
	int code = ec ? atoi(ec) : 0;
	struct nudge_status_report r = {
	    .struct_size = sizeof r,
	    .status = state,
	    .provider_id = sid,
	    .message_key = tw_param(qp, nq, "m"),
	    .provider_status = word,
	    .recipient = tw_param(p, n, "To"),
	    .error_code = code,
	    /* 30004 blocked, 30005 unknown handset, 30006 landline or unreachable carrier */
	    .suppress = code == 30004 || code == 30005 || code == 30006,
	};
	before_report(c);
	started(c, inst->host->report_status(inst->self, &r, on_reported, c), "status");
	tw_params_free(qp, nq);
	call_step(c);
}

/* ---- inbound messages ----------------------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		abort();
	return d;
}

/* Reports call c's sms.received event (and lets it go). */
static void report_sms_event(struct tw_call *c)
{
	struct tw_sms_event *e = c->event;
	c->event = NULL;
	if (!e)
		return;
	struct nudge_event_report ev = {
	    .struct_size = sizeof ev,
	    .name = "sms.received",
	    .channel = "sms",
	    .address = e->address,
	    .dedupe_key = e->sid,
	    .properties_json = e->props_json,
	};
	before_report(c);
	started(c, c->inst->host->report_event(c->inst->self, &ev, on_reported, c), "event");
	sms_event_free(e);
}

/* The keyword's consent is recorded (or not): now the message's event. One after the other, so
 * that a keyword from a number nudge does not know always records nothing: reported at once,
 * the event (which creates a customer for the number) could commit first and the STOP land on
 * that new customer, or not, by timing. */
static void on_keyword_reported(void *arg, int status)
{
	struct tw_call *c = arg;
	report_sms_event(c); /* counted before the consent's count goes, so c stays */
	call_report_done(c, status);
}

static void inbound_sms(struct tw_call *c, const struct tw_param *p, size_t n)
{
	struct tw_inst *inst = c->inst;
	const char *sid = tw_param(p, n, "MessageSid");
	const char *from_raw = tw_param(p, n, "From");
	const char *body = tw_param(p, n, "Body");
	const char *opt = tw_param(p, n, "OptOutType"); /* Advanced Opt-Out: STOP, START, HELP */
	if (!sid)
		sid = tw_param(p, n, "SmsSid");
	c->twiml = 1;
	if (!from_raw || !body) {
		inst->host->log(inst->self, NUDGE_LOG_WARN, "inbound message without From or Body");
		call_step(c);
		return;
	}
	char from[TW_E164_MAX];
	const char *address = tw_e164(from_raw, inst->default_country, from) == 0 ? from : from_raw;
	char norm[32];
	enum tw_keyword kw = tw_keyword(body, norm, sizeof norm);
	if (opt && kw == TW_KW_NONE) {
		kw = tw_keyword(opt, norm, sizeof norm);
	}
	inst->host->metric_add(inst->self, "inbound_messages", 1);
	if (kw == TW_KW_HELP)
		inst->host->metric_add(inst->self, "help_requests", 1);

	json_t *props = json_pack("{s:s, s:s?, s:s, s:s?}", "from", address, "to",
	                          tw_param(p, n, "To"), "body", body, "message_sid", sid);
	if (props && kw != TW_KW_NONE)
		json_object_set_new(props, "keyword", json_string(norm));
	const char *segs = tw_param(p, n, "NumSegments");
	if (props && segs)
		json_object_set_new(props, "num_segments", json_integer(atoi(segs)));
	struct tw_sms_event *e = calloc(1, sizeof *e);
	if (!e)
		abort();
	e->address = dup_or_null(address);
	e->sid = dup_or_null(sid);
	e->props_json = props ? json_dumps(props, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(props);
	c->event = e;

	int after_keyword = 0; /* the event waits for the keyword's consent (on_keyword_reported) */
	if (kw == TW_KW_STOP || kw == TW_KW_START) {
		c->waiting++; /* tw_report_consent counts the report itself */
		int rc = tw_report_consent(inst, address, kw == TW_KW_START, norm,
		                           kw == TW_KW_START ? "inbound START keyword"
		                                             : "inbound STOP keyword",
		                           sid, on_keyword_reported, c);
		if (rc) {
			c->waiting--;
			if (rc != -ENOSYS)
				c->failed = 1;
		} else
			after_keyword = 1;
	}
	if (!after_keyword)
		report_sms_event(c);
	call_step(c);
}

/* ---- the webhook ---------------------------------------------------------------------------- */

static const char *req_header(const struct nudge_inbound_request *req, const char *name)
{
	for (size_t i = 0; i < req->nheaders; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

void tw_inbound(void *state, const struct nudge_inbound_request *req, nudge_inbound_done_fn *done,
                void *done_arg)
{
	struct tw_inst *inst = state;
	if (strcmp(req->method, "POST") != 0) {
		respond(inst, done, done_arg, 405, "text/plain", "POST only\n");
		return;
	}
	struct tw_param *p = NULL;
	size_t n = tw_form_parse(req->body, req->body_len, &p);

	/* The URL Twilio signed: what the host says was called, else our configured one. */
	struct tw_buf url = {0};
	if (req->url && *req->url) {
		tw_buf_str(&url, req->url);
	} else if (inst->status_callback_url) {
		tw_buf_str(&url, inst->status_callback_url);
		if (req->query && *req->query) {
			tw_buf_str(&url, "?");
			tw_buf_str(&url, req->query);
		}
	}
	const char *sig = req_header(req, "X-Twilio-Signature");
	const char *account = tw_param(p, n, "AccountSid");
	int sig_ok = url.s && tw_signature_ok(inst->auth_token, url.s, p, n, sig);
	int account_ok = account && strcmp(account, inst->account_sid) == 0;
	if (!sig_ok || !account_ok) {
		inst->host->metric_add(inst->self, "signature_failures", 1);
		inst->host->log(inst->self, NUDGE_LOG_WARN, "refused a webhook call: %s",
		                !sig     ? "no X-Twilio-Signature"
		                : sig_ok ? "signed, but for another account"
		                         : "the signature does not match the URL and parameters");
		respond(inst, done, done_arg, 403, "text/plain", "invalid signature\n");
		free(url.s);
		tw_params_free(p, n);
		return;
	}
	free(url.s);

	struct tw_call *c = calloc(1, sizeof *c);
	if (!c)
		abort();
	c->inst = inst;
	c->done = done;
	c->done_arg = done_arg;
	c->waiting = 1;
	inst->pending_inbound++;
	const char *status = tw_param(p, n, "MessageStatus");
	if (!status)
		status = tw_param(p, n, "SmsStatus");
	int is_status = strcmp(req->path, "/status") == 0 ||
	                (strcmp(req->path, "/inbound") != 0 && status &&
	                 strcmp(status, "received") != 0 && strcmp(status, "receiving") != 0);
	if (is_status)
		status_callback(c, p, n, req->query);
	else
		inbound_sms(c, p, n);
	tw_params_free(p, n);
}
