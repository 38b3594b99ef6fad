/*
 * twilio.c — the Twilio SMS channel plugin: its descriptor and configuration, init and shutdown,
 * health, and the queues in front of the API.
 *
 * Each sender (a From number, or a Messaging Service) has its own queue and its own rate: Twilio
 * sends one segment per second from a US long code and queues the rest for hours, so nudge keeps
 * the backlog itself (a message that waits here can still be skipped by quiet hours or a cap). A
 * message of N segments holds its sender for N / rate_per_second seconds. At most max_concurrent
 * API requests are in flight for the instance. Sends are never completed inside send(): results
 * known at once (an invalid number) are delivered from a 0 ms timer.
 */
#include "twilio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const channels[] = {"sms", NULL};

static const struct nudge_config_key keys[] = {
    {"account_sid", NUDGE_CONFIG_STRING, 1, NULL, "the account (AC…), in every API path"},
    {"auth_token", NUDGE_CONFIG_STRING, 1, NULL,
     "the account's auth token: checks webhook signatures, and is the API password unless "
     "api_key_sid is set"},
    {"api_key_sid", NUDGE_CONFIG_STRING, 0, NULL,
     "an API key (SK…) to authenticate with instead of the account SID"},
    {"api_key_secret", NUDGE_CONFIG_STRING, 0, NULL, "the API key's secret"},
    {"from", NUDGE_CONFIG_STRING, 0, NULL,
     "the sending number (E.164), short code or alphanumeric sender ID"},
    {"messaging_service_sid", NUDGE_CONFIG_STRING, 0, NULL,
     "a Messaging Service (MG…) to send with instead of from"},
    {"base_url", NUDGE_CONFIG_STRING, 0, "https://api.twilio.com",
     "the API's base URL: a regional edge (https://api.dublin.ie1.twilio.com) or a test stand-in"},
    {"status_callback_url", NUDGE_CONFIG_STRING, 0, NULL,
     "the public URL of this instance's webhook (https://shop.example/v1/webhooks/sms); Twilio "
     "posts delivery statuses there"},
    {"default_country", NUDGE_CONFIG_STRING, 0, NULL,
     "country calling code for national numbers (\"1\", \"49\"); none: numbers must be "
     "international"},
    {"rate_per_second", NUDGE_CONFIG_NUMBER, 0, "1",
     "segments per second per sender: 1 for a US long code, 3 toll-free, 100 a short code; 0: "
     "no limit"},
    {"max_concurrent", NUDGE_CONFIG_INT, 0, "20", "API requests in flight at once"},
    {"timeout_ms", NUDGE_CONFIG_INT, 0, "15000",
     "an API request taking longer is abandoned (the send is then ambiguous)"},
    {"reconcile_window_s", NUDGE_CONFIG_INT, 0, "86400",
     "how far back a reconcile looks for a message Twilio may have accepted"},
    {"ca_file", NUDGE_CONFIG_STRING, 0, NULL, "PEM file of CA certificates to trust"},
    {NULL, 0, 0, NULL, NULL},
};

/* ---- senders and the pump ------------------------------------------------------------------- */

static struct tw_sender *sender_for(struct tw_inst *inst, const char *from)
{
	const char *id = from ? from : (inst->service_sid ? inst->service_sid : inst->from);
	for (struct tw_sender *s = inst->senders; s; s = s->next)
		if (strcmp(s->id, id) == 0)
			return s;
	struct tw_sender *s = calloc(1, sizeof *s);
	if (!s || !(s->id = strdup(id)))
		abort();
	s->is_service =
	    from ? strncmp(from, "MG", 2) == 0 && strlen(from) == 34 : inst->service_sid != NULL;
	s->next = inst->senders;
	inst->senders = s;
	return s;
}

static void on_pump_timer(void *arg)
{
	struct tw_inst *inst = arg;
	inst->pump_timer = NULL;
	tw_pump(inst);
}

static void link_in_flight(struct tw_inst *inst, struct tw_item *it)
{
	it->prev_f = NULL;
	it->next_f = inst->in_flight;
	if (inst->in_flight)
		inst->in_flight->prev_f = it;
	inst->in_flight = it;
	inst->n_in_flight++;
}

void tw_pump(struct tw_inst *inst)
{
	if (inst->stopping)
		return;
	int64_t now = inst->host->now_ms(inst->self);
	int64_t wake = INT64_MAX;
	for (struct tw_sender *s = inst->senders; s; s = s->next) {
		while (s->head && inst->n_in_flight < inst->max_concurrent) {
			struct tw_item *it = s->head;
			int rated = inst->rate > 0 && !it->reconcile;
			if (rated && s->next_ms > now) {
				if (s->next_ms < wake)
					wake = s->next_ms;
				break;
			}
			s->head = it->next;
			if (!s->head)
				s->tail = NULL;
			it->next = NULL;
			if (rated) {
				int64_t start = s->next_ms > now ? s->next_ms : now;
				s->next_ms =
				    start + (int64_t)((double)it->segments * 1000.0 / inst->rate);
			}
			link_in_flight(inst, it);
			if (it->reconcile)
				tw_start_reconcile(it);
			else
				tw_start_send(it);
		}
	}
	if (wake != INT64_MAX && (!inst->pump_timer || wake < inst->pump_at)) {
		if (inst->pump_timer)
			inst->host->timer_cancel(inst->self, inst->pump_timer);
		inst->pump_at = wake;
		inst->pump_timer =
		    inst->host->timer_start(inst->self, wake - now, on_pump_timer, inst);
	}
}

/* ---- completing ----------------------------------------------------------------------------- */

void tw_complete(struct tw_item *it, const struct nudge_send_result *r)
{
	struct nudge_send_result res = *r;
	res.struct_size = sizeof res;
	if (!it->reconcile && it->segments > 0 && res.segments == 0)
		res.segments = it->segments;
	if (!it->reconcile && !res.encoding && it->enc)
		res.encoding = tw_encoding_name(it->enc);
	it->done(it->done_arg, &res);
	free(it);
}

static void unlink_early(struct tw_inst *inst, struct tw_item *it)
{
	if (it->prev_f)
		it->prev_f->next_f = it->next_f;
	else
		inst->early = it->next_f;
	if (it->next_f)
		it->next_f->prev_f = it->prev_f;
}

static void deliver_early(struct tw_item *it)
{
	struct nudge_send_result r = {
	    .struct_size = sizeof r,
	    .status = it->early_status,
	    .suppress = it->early_suppress,
	    .code = it->early_code,
	    .reason = it->early_reason,
	};
	tw_complete(it, &r);
}

static void on_early(void *arg)
{
	struct tw_item *it = arg;
	struct tw_inst *inst = it->inst;
	it->early_timer = NULL;
	unlink_early(inst, it);
	deliver_early(it);
	tw_maybe_finish(inst);
}

void tw_complete_later(struct tw_item *it, int status, int suppress, int code, const char *reason)
{
	struct tw_inst *inst = it->inst;
	it->early_status = status;
	it->early_suppress = suppress;
	it->early_code = code;
	snprintf(it->early_reason, sizeof it->early_reason, "%s", reason);
	it->prev_f = NULL;
	it->next_f = inst->early;
	if (inst->early)
		inst->early->prev_f = it;
	inst->early = it;
	it->early_timer = inst->host->timer_start(inst->self, 0, on_early, it);
}

/* ---- the callbacks -------------------------------------------------------------------------- */

static int tw_init(const struct nudge_host *host, struct nudge_instance *self, void **state,
                   char *err, size_t errlen)
{
	if (host->abi_minor < 1 || !host->report_status) {
		snprintf(err, errlen,
		         "this nudge is too old for the twilio plugin (needs ABI 1.1)");
		return -ENOTSUP;
	}
	struct tw_inst *inst = calloc(1, sizeof *inst);
	if (!inst)
		return -ENOMEM;
	inst->host = host;
	inst->self = self;
	inst->account_sid = host->config_string(self, "account_sid");
	inst->auth_token = host->config_string(self, "auth_token");
	inst->api_key_sid = host->config_string(self, "api_key_sid");
	inst->api_key_secret = host->config_string(self, "api_key_secret");
	inst->from = host->config_string(self, "from");
	inst->service_sid = host->config_string(self, "messaging_service_sid");
	inst->status_callback_url = host->config_string(self, "status_callback_url");
	inst->default_country = host->config_string(self, "default_country");
	inst->ca_file = host->config_string(self, "ca_file");
	inst->rate = host->config_number(self, "rate_per_second");
	inst->max_concurrent = (int)host->config_int(self, "max_concurrent");
	inst->timeout_ms = host->config_int(self, "timeout_ms");
	inst->reconcile_window_ms = host->config_int(self, "reconcile_window_s") * 1000;
	const char *base = host->config_string(self, "base_url");

	const char *problem = NULL;
	if (strncmp(inst->account_sid, "AC", 2) != 0 || strlen(inst->account_sid) != 34)
		problem = "account_sid must be AC followed by 32 characters";
	else if (!*inst->auth_token)
		problem = "auth_token is empty";
	else if (!inst->from == !inst->service_sid)
		problem = "set exactly one of from and messaging_service_sid";
	else if (inst->service_sid &&
	         (strncmp(inst->service_sid, "MG", 2) != 0 || strlen(inst->service_sid) != 34))
		problem = "messaging_service_sid must be MG followed by 32 characters";
	else if (!inst->api_key_sid != !inst->api_key_secret)
		problem = "set both api_key_sid and api_key_secret, or neither";
	else if (strncmp(base, "https://", 8) != 0 && strncmp(base, "http://", 7) != 0)
		problem = "base_url must start with https:// (or http:// for a test stand-in)";
	else if (inst->status_callback_url && strncmp(inst->status_callback_url, "https://", 8) &&
	         strncmp(inst->status_callback_url, "http://", 7))
		problem = "status_callback_url must be an http(s) URL";
	else if (inst->rate < 0)
		problem = "rate_per_second must not be negative";
	else if (inst->max_concurrent < 1)
		problem = "max_concurrent must be at least 1";
	else if (inst->timeout_ms < 1000)
		problem = "timeout_ms must be at least 1000";
	if (problem) {
		snprintf(err, errlen, "%s", problem);
		free(inst);
		return -EINVAL;
	}
	if (inst->from) {
		char e[TW_E164_MAX];
		/* A number is sent in E.164; short codes and sender IDs as they are. */
		if (inst->from[0] == '+' && tw_e164(inst->from, NULL, e) != 0) {
			snprintf(err, errlen, "from \"%s\" is not a valid E.164 number",
			         inst->from);
			free(inst);
			return -EINVAL;
		}
	}
	size_t bl = strlen(base);
	while (bl > 0 && base[bl - 1] == '/')
		bl--;
	struct tw_buf u = {0};
	tw_buf_add(&u, base, bl);
	tw_buf_str(&u, "/2010-04-01/Accounts/");
	tw_buf_str(&u, inst->account_sid);
	tw_buf_str(&u, "/Messages.json");
	inst->messages_url = u.s;
	inst->seen = calloc(TW_SEEN_SLOTS, sizeof *inst->seen);
	if (!inst->seen)
		abort();
	host->log(self, NUDGE_LOG_INFO, "sending as %s through %.*s, %g segments/s per sender",
	          inst->service_sid ? inst->service_sid : inst->from, (int)bl, base, inst->rate);
	*state = inst;
	return 0;
}

static struct tw_item *new_item(struct tw_inst *inst, const struct nudge_message *msg,
                                nudge_send_done_fn *done, void *done_arg, int reconcile)
{
	struct tw_item *it = calloc(1, sizeof *it);
	if (!it)
		abort();
	it->inst = inst;
	it->msg = msg;
	it->done = done;
	it->done_arg = done_arg;
	it->reconcile = reconcile;
	return it;
}

/* Checks what can be checked before a request; 0, or the item is completing with a failure. */
static int prepare(struct tw_item *it)
{
	struct tw_inst *inst = it->inst;
	const struct nudge_message *msg = it->msg;
	char why[200];
	if (tw_e164(msg->recipient, inst->default_country, it->to) != 0) {
		snprintf(why, sizeof why,
		         "\"%s\" is not a phone number that can be written in E.164",
		         msg->recipient ? msg->recipient : "");
		tw_complete_later(it, NUDGE_SEND_FAILED, 1, 21211, why);
		return -EINVAL;
	}
	size_t units, chars;
	int segs = tw_segments(msg->body, &it->enc, &units, &chars);
	if (segs < 0 || segs == 0) {
		tw_complete_later(it, NUDGE_SEND_FAILED, 0, 21602,
		                  segs < 0 ? "the body is not valid UTF-8" : "the body is empty");
		return -EINVAL;
	}
	if (chars > 1600) {
		snprintf(why, sizeof why, "the body has %zu characters; Twilio takes at most 1600",
		         chars);
		tw_complete_later(it, NUDGE_SEND_FAILED, 0, 21617, why);
		return -EINVAL;
	}
	it->segments = segs;
	return 0;
}

static void enqueue(struct tw_item *it)
{
	struct tw_sender *s = sender_for(it->inst, it->msg->from);
	it->sender = s;
	if (s->tail)
		s->tail->next = it;
	else
		s->head = it;
	s->tail = it;
	tw_pump(it->inst);
}

static void tw_send(void *state, const struct nudge_message *msg, nudge_send_done_fn *done,
                    void *done_arg)
{
	struct tw_inst *inst = state;
	struct tw_item *it = new_item(inst, msg, done, done_arg, 0);
	if (prepare(it) != 0)
		return;
	inst->host->metric_add(inst->self, "segments", it->segments);
	enqueue(it);
}

static void tw_reconcile(void *state, const struct nudge_message *msg, nudge_send_done_fn *done,
                         void *done_arg)
{
	struct tw_inst *inst = state;
	struct tw_item *it = new_item(inst, msg, done, done_arg, 1);
	if (prepare(it) != 0)
		return;
	enqueue(it);
}

static void tw_health(void *state, struct nudge_health *out)
{
	struct tw_inst *inst = state;
	if (inst->auth_failed) {
		out->status = NUDGE_HEALTH_DOWN;
		snprintf(out->detail, sizeof out->detail, "Twilio refused our credentials: %s",
		         inst->last_problem);
	} else if (inst->ambiguous_in_row >= 3) {
		out->status = NUDGE_HEALTH_DEGRADED;
		snprintf(out->detail, sizeof out->detail,
		         "%d sends in a row got no clear answer: %s", inst->ambiguous_in_row,
		         inst->last_problem);
	} else {
		out->status = NUDGE_HEALTH_OK;
		snprintf(out->detail, sizeof out->detail, "%d requests in flight",
		         inst->n_in_flight);
	}
}

void tw_maybe_finish(struct tw_inst *inst)
{
	if (!inst->stopping || inst->n_in_flight || inst->pending_reports ||
	    inst->pending_inbound || inst->early)
		return;
	while (inst->senders) {
		struct tw_sender *s = inst->senders;
		inst->senders = s->next;
		free(s->id);
		free(s);
	}
	void (*done)(void *) = inst->shutdown_done;
	void *arg = inst->shutdown_arg;
	free(inst->messages_url);
	free(inst->seen);
	free(inst);
	done(arg);
}

/*
 * Queued messages are given back (they never left); requests in flight are waited for, because a
 * send Twilio may have accepted must come back as what it was, not as a retry.
 */
static void tw_shutdown(void *state, void (*done)(void *arg), void *arg)
{
	struct tw_inst *inst = state;
	inst->stopping = 1;
	inst->shutdown_done = done;
	inst->shutdown_arg = arg;
	if (inst->pump_timer) {
		inst->host->timer_cancel(inst->self, inst->pump_timer);
		inst->pump_timer = NULL;
	}
	for (struct tw_sender *s = inst->senders; s; s = s->next) {
		while (s->head) {
			struct tw_item *it = s->head;
			s->head = it->next;
			struct nudge_send_result r = {.struct_size = sizeof r,
			                              .status = NUDGE_SEND_RETRY,
			                              .reason =
			                                  "the plugin shut down before sending"};
			tw_complete(it, &r);
		}
		s->tail = NULL;
	}
	while (inst->early) {
		struct tw_item *it = inst->early;
		inst->host->timer_cancel(inst->self, it->early_timer);
		unlink_early(inst, it);
		deliver_early(it);
	}
	tw_maybe_finish(inst);
}

static const struct nudge_plugin descriptor = {
    .abi_major = NUDGE_PLUGIN_ABI_MAJOR,
    .abi_minor = NUDGE_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(struct nudge_plugin),
    .name = "twilio",
    .version = "1.0.0",
    .description = "SMS through Twilio Programmable Messaging",
    .channels = channels,
    .config_keys = keys,
    .init = tw_init,
    .send = tw_send,
    .inbound = tw_inbound,
    .health = tw_health,
    .shutdown = tw_shutdown,
    .reconcile = tw_reconcile,
};

NUDGE_PLUGIN_EXPORT const struct nudge_plugin *nudge_plugin_entry(void)
{
	return &descriptor;
}
