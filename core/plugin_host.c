/*
 * plugin_host.c — running plugin instances: the services table they call (struct nudge_host), the
 * send and webhook paths with the guarantees the ABI promises (exactly one completion, never inside
 * send), timers, sender-thread jobs, metrics, and shutdown.
 *
 * The host does not trust a plugin to keep the contract; it checks what it cheaply can. A
 * completion made inside send() is held and delivered on the next loop turn; a malformed result
 * becomes a retry; sends still outstanding when a plugin says it has shut down are given back as
 * retries; a plugin file is unloaded only after its last sender-thread job has returned.
 */
#include "clock.h"
#include "httpc.h"
#include "ng.h"
#include "plugin_host.h"
#include "senders.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum op_kind { OP_SEND, OP_INBOUND };

struct ng_plugin_op {
	struct ng_plugin *p;
	enum op_kind kind;
	ng_plugin_send_done_fn *send_done;
	nudge_inbound_done_fn *inbound_done;
	void *arg;
	int in_call;  /* inside the plugin's send() */
	int deferred; /* completed inside send(): the result waits in `held` for the next turn */
	struct nudge_send_result held;
	char *held_provider_id, *held_reason, *held_encoding;
	struct ng_plugin_op *prev, *next;
};

struct nudge_timer {
	struct ng_clock_timer ct;
	struct ng_plugin *p;
	void (*cb)(void *arg);
	void *arg;
	struct nudge_timer *prev, *next;
};

struct job {
	struct ng_plugin *p;
	void (*work)(void *arg, int thread_index);
	void (*done)(void *arg, int status);
	void *arg;
};

static const char *const status_metric[] = {NULL, "sends_sent", "sends_retry", "sends_failed",
                                            "sends_ambiguous"};

static void maybe_finish(struct ng_plugin_host *h);

/* ---- instance records ---------------------------------------------------------------------- */

struct ng_plugin *ng_plugin_new(struct ng_plugin_host *h, struct ng_plugin_lib *lib,
                                const char *name, const char *channel)
{
	struct ng_plugin *p = ng_xcalloc(1, sizeof *p);
	p->self.magic = NG_PLUGIN_MAGIC;
	p->host = h;
	p->lib = lib;
	p->name = ng_xstrdup(name);
	p->channel = ng_xstrdup(channel);
	p->logmod = ng_xasprintf("plugin.%s", name);
	pthread_mutex_init(&p->metrics_mu, NULL);
	return p;
}

void ng_plugin_free(struct ng_plugin *p)
{
	for (size_t i = 0; i < p->nvalues; i++)
		free(p->values[i].str);
	free(p->values);
	free(p->metrics);
	pthread_mutex_destroy(&p->metrics_mu);
	free(p->name);
	free(p->channel);
	free(p->logmod);
	free(p);
}

/* The instance behind a handle a plugin passed back; NULL (and a log line) if it is not one. */
static struct ng_plugin *from_self(struct nudge_instance *self)
{
	if (!self || self->magic != NG_PLUGIN_MAGIC) {
		ng_error("plugin",
		         "a plugin called a host service with an invalid instance handle");
		return NULL;
	}
	return NG_CONTAINER_OF(self, struct ng_plugin, self);
}

static void counter_add(struct ng_plugin *p, const char *name, int64_t delta)
{
	pthread_mutex_lock(&p->metrics_mu);
	size_t i = 0;
	while (i < p->nmetrics && strcmp(p->metrics[i].name, name) != 0)
		i++;
	if (i == p->nmetrics) {
		if (p->nmetrics == p->metrics_cap) {
			p->metrics_cap = p->metrics_cap ? p->metrics_cap * 2 : 8;
			p->metrics = ng_xrealloc(p->metrics, p->metrics_cap * sizeof *p->metrics);
		}
		snprintf(p->metrics[i].name, sizeof p->metrics[i].name, "%s", name);
		p->metrics[i].value = 0;
		p->nmetrics++;
	}
	p->metrics[i].value += delta;
	pthread_mutex_unlock(&p->metrics_mu);
}

/* ---- services ------------------------------------------------------------------------------ */

static void svc_log(struct nudge_instance *self, int level, const char *fmt, ...)
{
	struct ng_plugin *p = from_self(self);
	if (!p || !fmt)
		return;
	if (level < NUDGE_LOG_DEBUG)
		level = NUDGE_LOG_DEBUG;
	if (level > NUDGE_LOG_ERROR)
		level = NUDGE_LOG_ERROR;
	va_list ap;
	va_start(ap, fmt);
	ng_vlog((enum ng_log_level)level, p->logmod, fmt, ap);
	va_end(ap);
}

static const char *svc_instance_name(struct nudge_instance *self)
{
	struct ng_plugin *p = from_self(self);
	return p ? p->name : "?";
}

/* The declared value for key, checked against the type the plugin asks for. */
static const struct ng_plugin_value *lookup(struct nudge_instance *self, const char *key,
                                            int32_t type)
{
	struct ng_plugin *p = from_self(self);
	if (!p || !key)
		return NULL;
	for (size_t i = 0; i < p->nvalues; i++) {
		const struct ng_plugin_value *v = &p->values[i];
		if (strcmp(v->key->name, key) != 0)
			continue;
		if (v->key->type != type && type != 0) {
			ng_error(p->logmod, "the plugin read config key '%s' with the wrong type",
			         key);
			return NULL;
		}
		return v;
	}
	ng_error(p->logmod, "the plugin read config key '%s', which it does not declare", key);
	return NULL;
}

static const char *svc_config_string(struct nudge_instance *self, const char *key)
{
	const struct ng_plugin_value *v = lookup(self, key, NUDGE_CONFIG_STRING);
	return v && v->has_value ? v->str : NULL;
}

static int64_t svc_config_int(struct nudge_instance *self, const char *key)
{
	const struct ng_plugin_value *v = lookup(self, key, NUDGE_CONFIG_INT);
	return v ? v->i : 0;
}

static double svc_config_number(struct nudge_instance *self, const char *key)
{
	const struct ng_plugin_value *v = lookup(self, key, NUDGE_CONFIG_NUMBER);
	return v ? v->num : 0;
}

static int svc_config_bool(struct nudge_instance *self, const char *key)
{
	const struct ng_plugin_value *v = lookup(self, key, NUDGE_CONFIG_BOOL);
	return v ? v->b : 0;
}

static int svc_config_isset(struct nudge_instance *self, const char *key)
{
	const struct ng_plugin_value *v = lookup(self, key, 0);
	return v ? v->set : 0;
}

/*
 * http_request runs on the daemon's shared HTTP client (core/httpc.c). The request is copied by
 * httpc before this returns; the response is translated field by field, so the plugin sees the
 * ABI's structs only. A request still in flight when its plugin reports its shutdown is cancelled
 * and its completion dropped: the plugin's state is gone by then.
 */
struct http_op {
	struct ng_plugin *p;
	nudge_http_done_fn *done;
	void *arg;
	struct ng_httpc_xfer *xfer;
	struct http_op *prev, *next;
};

static void http_unlink(struct http_op *op)
{
	struct ng_plugin *p = op->p;
	if (op->prev)
		op->prev->next = op->next;
	else
		p->https = op->next;
	if (op->next)
		op->next->prev = op->prev;
}

static void on_http_done(void *arg, const struct ng_httpc_response *r)
{
	struct http_op *op = arg;
	struct ng_plugin *p = op->p;
	http_unlink(op);
	if (!p->stopped) {
		struct nudge_header stack[32], *hdrs = stack;
		if (r->nheaders > NG_ARRAY_LEN(stack))
			hdrs = ng_xmalloc(r->nheaders * sizeof *hdrs);
		for (size_t i = 0; i < r->nheaders; i++)
			hdrs[i] = (struct nudge_header){r->headers[i].name, r->headers[i].value};
		struct nudge_http_response res = {
		    .struct_size = sizeof res,
		    .status = r->status,
		    .error = r->error,
		    .request_sent = r->request_sent,
		    .error_text = r->error ? r->error_text : NULL,
		    .headers = hdrs,
		    .nheaders = r->nheaders,
		    .body = r->body,
		    .body_len = r->body_len,
		};
		counter_add(p, r->error ? "http_errors" : "http_responses", 1);
		op->done(op->arg, &res);
		if (hdrs != stack)
			free(hdrs);
	}
	free(op);
}

static int svc_http_request(struct nudge_instance *self, const struct nudge_http_request *req,
                            nudge_http_done_fn *done, void *arg)
{
	struct ng_plugin *p = from_self(self);
	if (!p)
		return -EINVAL;
	if (!p->host->httpc)
		return -ENOSYS;
	if (!req || !done ||
	    req->struct_size < offsetof(struct nudge_http_request, ca_file) + sizeof req->ca_file)
		return -EINVAL;
	if (p->stopped || p->host->close_started == 2)
		return -ESHUTDOWN;
	/* struct nudge_header and struct ng_httpc_header have the same two members. */
	struct ng_httpc_header stack[32], *hdrs = stack;
	if (req->nheaders > NG_ARRAY_LEN(stack))
		hdrs = ng_xmalloc(req->nheaders * sizeof *hdrs);
	for (size_t i = 0; req->headers && i < req->nheaders; i++)
		hdrs[i] = (struct ng_httpc_header){req->headers[i].name, req->headers[i].value};
	struct http_op *op = ng_xcalloc(1, sizeof *op);
	op->p = p;
	op->done = done;
	op->arg = arg;
	struct ng_httpc_request q = {
	    .method = req->method,
	    .url = req->url,
	    .headers = req->headers ? hdrs : NULL,
	    .nheaders = req->headers ? req->nheaders : 0,
	    .body = req->body,
	    .body_len = req->body_len,
	    .username = req->username,
	    .password = req->password,
	    .ca_file = req->ca_file,
	    .timeout_ms = req->timeout_ms,
	    .handle = &op->xfer,
	};
	int rc = ng_httpc_request(p->host->httpc, &q, on_http_done, op);
	if (hdrs != stack)
		free(hdrs);
	if (rc) {
		free(op);
		if (rc == NG_ECLOSING)
			return -ESHUTDOWN;
		return rc < 0 && rc > -4096 ? rc : -EIO;
	}
	op->next = p->https;
	if (p->https)
		p->https->prev = op;
	p->https = op;
	return 0;
}

/* After a plugin's shutdown: what it left in flight is cancelled (its completion dropped). */
static size_t http_cancel_all(struct ng_plugin *p)
{
	size_t n = 0;
	while (p->https) {
		ng_httpc_cancel(p->host->httpc, p->https->xfer); /* unlinks it */
		n++;
	}
	return n;
}

/*
 * Reports (ABI 1.1): forwarded to the receivers the daemon registered (ng_plugin_host_set_reports).
 * The host keeps a record of each until its done arrives, so that a plugin that has shut down is
 * never called back, and the host is not freed while a receiver still holds a report's done.
 */
struct report_op {
	struct ng_plugin *p;
	nudge_report_done_fn *done;
	void *arg;
	struct report_op *prev, *next;
};

static void on_report_done(void *arg, int status)
{
	struct report_op *op = arg;
	struct ng_plugin *p = op->p;
	if (op->prev)
		op->prev->next = op->next;
	else
		p->reports = op->next;
	if (op->next)
		op->next->prev = op->prev;
	if (!p->stopped)
		op->done(op->arg, status > 0 ? -EIO : status);
	free(op);
	maybe_finish(p->host);
}

enum report_kind { REPORT_STATUS, REPORT_CONSENT, REPORT_EVENT };

static int forward_report(struct nudge_instance *self, enum report_kind kind, const void *r,
                          nudge_report_done_fn *done, void *arg)
{
	struct ng_plugin *p = from_self(self);
	if (!p || !r || !done)
		return -EINVAL;
	const struct ng_plugin_reports *rx = &p->host->reports;
	if ((kind == REPORT_STATUS && !rx->status) || (kind == REPORT_CONSENT && !rx->consent) ||
	    (kind == REPORT_EVENT && !rx->event))
		return -ENOSYS;
	if (p->stopped)
		return -ESHUTDOWN;
	struct report_op *op = ng_xcalloc(1, sizeof *op);
	op->p = p;
	op->done = done;
	op->arg = arg;
	op->next = p->reports;
	if (p->reports)
		p->reports->prev = op;
	p->reports = op;
	int rc;
	if (kind == REPORT_STATUS)
		rc = rx->status(rx->ctx, p, r, on_report_done, op);
	else if (kind == REPORT_CONSENT)
		rc = rx->consent(rx->ctx, p, r, on_report_done, op);
	else
		rc = rx->event(rx->ctx, p, r, on_report_done, op);
	if (rc) {
		/* Refused: the receiver never calls done. The op may not have been unlinked. */
		if (op->prev)
			op->prev->next = op->next;
		else
			p->reports = op->next;
		if (op->next)
			op->next->prev = op->prev;
		free(op);
		return rc < 0 && rc > -4096 ? rc : -EIO;
	}
	return 0;
}

static int svc_report_status(struct nudge_instance *self, const struct nudge_status_report *r,
                             nudge_report_done_fn *done, void *arg)
{
	if (r && (r->struct_size < sizeof *r || !r->provider_id ||
	          r->status < NUDGE_DELIVERY_QUEUED || r->status > NUDGE_DELIVERY_FAILED))
		return -EINVAL;
	return forward_report(self, REPORT_STATUS, r, done, arg);
}

static int svc_report_consent(struct nudge_instance *self, const struct nudge_consent_report *r,
                              nudge_report_done_fn *done, void *arg)
{
	if (r && (r->struct_size < sizeof *r || !r->channel || !r->address ||
	          (r->granted != 0 && r->granted != 1)))
		return -EINVAL;
	return forward_report(self, REPORT_CONSENT, r, done, arg);
}

/* A 1.1 plugin's shorter event report is accepted: receivers get a full 1.2 copy, the fields the
 * plugin did not know zeroed, so they never read past what it passed. */
static int svc_report_event(struct nudge_instance *self, const struct nudge_event_report *r,
                            nudge_report_done_fn *done, void *arg)
{
	if (r && (r->struct_size < NUDGE_EVENT_REPORT_SIZE_1_1 || !r->name || !r->address))
		return -EINVAL;
	if (!r)
		return forward_report(self, REPORT_EVENT, r, done, arg);
	struct nudge_event_report full = {0};
	memcpy(&full, r, r->struct_size < sizeof full ? r->struct_size : sizeof full);
	full.struct_size = sizeof full;
	return forward_report(self, REPORT_EVENT, &full, done, arg);
}

static int svc_sender_threads(struct nudge_instance *self)
{
	struct ng_plugin *p = from_self(self);
	if (!p || !p->host->senders)
		return 0;
	struct ng_senders_stats st;
	ng_senders_stats(p->host->senders, &st);
	return (int)st.threads;
}

static void job_work(void *arg, int thread_index)
{
	struct job *j = arg;
	j->work(j->arg, thread_index);
}

static void job_done(void *arg, int status)
{
	struct job *j = arg;
	struct ng_plugin *p = j->p;
	p->jobs--;
	if (p->stopped)
		ng_error(p->logmod, "sender-thread work ended after the plugin had shut down; its "
		                    "completion is dropped (a plugin bug)");
	else
		j->done(j->arg, status == 0 ? 0 : -ECANCELED);
	free(j);
	maybe_finish(p->host);
}

static int svc_run_on_sender(struct nudge_instance *self, void (*work)(void *arg, int thread_index),
                             void (*done)(void *arg, int status), void *arg)
{
	struct ng_plugin *p = from_self(self);
	if (!p || !work || !done)
		return -EINVAL;
	if (!p->host->senders)
		return -ENOSYS;
	if (p->stopped)
		return -ESHUTDOWN;
	struct job *j = ng_xmalloc(sizeof *j);
	*j = (struct job){p, work, done, arg};
	int rc = ng_senders_submit(p->host->senders, job_work, job_done, j);
	if (rc) {
		free(j);
		return rc == NG_ECLOSING ? -ESHUTDOWN : rc;
	}
	p->jobs++;
	return 0;
}

static void timer_unlink(struct nudge_timer *t)
{
	struct ng_plugin *p = t->p;
	if (t->prev)
		t->prev->next = t->next;
	else
		p->timers = t->next;
	if (t->next)
		t->next->prev = t->prev;
}

static void on_timer(struct ng_clock_timer *ct)
{
	struct nudge_timer *t = ct->data;
	void (*cb)(void *) = t->cb;
	void *arg = t->arg;
	timer_unlink(t);
	free(t); /* the handle dies as its callback starts */
	cb(arg);
}

static struct nudge_timer *svc_timer_start(struct nudge_instance *self, int64_t delay_ms,
                                           void (*cb)(void *arg), void *arg)
{
	struct ng_plugin *p = from_self(self);
	if (!p || !cb || p->stopped)
		return NULL;
	struct nudge_timer *t = ng_xcalloc(1, sizeof *t);
	t->p = p;
	t->cb = cb;
	t->arg = arg;
	t->ct.data = t;
	t->next = p->timers;
	if (p->timers)
		p->timers->prev = t;
	p->timers = t;
	int64_t due = ng_clock_now_ms(p->host->clock) + (delay_ms > 0 ? delay_ms : 0);
	ng_clock_timer_start(p->host->clock, &t->ct, due, on_timer);
	return t;
}

static void svc_timer_cancel(struct nudge_instance *self, struct nudge_timer *t)
{
	struct ng_plugin *p = from_self(self);
	if (!p || !t)
		return;
	ng_clock_timer_stop(p->host->clock, &t->ct);
	timer_unlink(t);
	free(t);
}

static int metric_name_ok(const char *name)
{
	if (!name || !*name || strlen(name) > 63)
		return 0;
	for (const char *c = name; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_'))
			return 0;
	return 1;
}

static void svc_metric_add(struct nudge_instance *self, const char *name, int64_t delta)
{
	struct ng_plugin *p = from_self(self);
	if (!p)
		return;
	if (!metric_name_ok(name) || strncmp(name, "sends_", 6) == 0) {
		ng_error(p->logmod,
		         "metric name \"%s\" refused: use [a-z0-9_], not starting sends_",
		         name ? name : "(null)");
		return;
	}
	counter_add(p, name, delta);
}

static int64_t svc_now_ms(struct nudge_instance *self)
{
	struct ng_plugin *p = from_self(self);
	return p ? ng_clock_now_ms(p->host->clock) : 0;
}

const struct nudge_host ng_plugin_services = {
    .struct_size = sizeof(struct nudge_host),
    .abi_major = NUDGE_PLUGIN_ABI_MAJOR,
    .abi_minor = NUDGE_PLUGIN_ABI_MINOR,
    .version = NG_VERSION,
    .log = svc_log,
    .instance_name = svc_instance_name,
    .config_string = svc_config_string,
    .config_int = svc_config_int,
    .config_number = svc_config_number,
    .config_bool = svc_config_bool,
    .config_isset = svc_config_isset,
    .http_request = svc_http_request,
    .sender_threads = svc_sender_threads,
    .run_on_sender = svc_run_on_sender,
    .timer_start = svc_timer_start,
    .timer_cancel = svc_timer_cancel,
    .metric_add = svc_metric_add,
    .now_ms = svc_now_ms,
    .report_status = svc_report_status,
    .report_consent = svc_report_consent,
    .report_event = svc_report_event,
};

/* ---- sends and webhooks -------------------------------------------------------------------- */

static void op_link(struct ng_plugin_op *op)
{
	struct ng_plugin *p = op->p;
	op->next = p->ops;
	if (p->ops)
		p->ops->prev = op;
	p->ops = op;
}

static void op_unlink(struct ng_plugin_op *op)
{
	struct ng_plugin *p = op->p;
	if (op->prev)
		op->prev->next = op->next;
	else
		p->ops = op->next;
	if (op->next)
		op->next->prev = op->prev;
}

/* Copies what the host may read of a plugin's result; a malformed one becomes a retry. */
static void check_result(struct ng_plugin *p, const struct nudge_send_result *r,
                         struct nudge_send_result *out)
{
	memset(out, 0, sizeof *out);
	out->struct_size = sizeof *out;
	if (!r || r->struct_size < NUDGE_SEND_RESULT_SIZE_1_0) {
		ng_error(p->logmod, "the plugin completed a send with a malformed result "
		                    "(struct_size unset?); treating it as a retry");
		out->status = NUDGE_SEND_RETRY;
		out->reason = "the plugin returned a malformed result";
		return;
	}
	/* A plugin built for an older minor knows fewer fields: the rest stay zero. */
	memcpy(out, r, r->struct_size < sizeof *out ? r->struct_size : sizeof *out);
	out->struct_size = sizeof *out;
	if (out->segments < 0)
		out->segments = 0;
	if (r->status < NUDGE_SEND_SENT || r->status > NUDGE_SEND_AMBIGUOUS) {
		ng_error(p->logmod,
		         "the plugin completed a send with unknown status %d; treating "
		         "it as a retry",
		         (int)r->status);
		out->status = NUDGE_SEND_RETRY;
		out->reason = "the plugin returned an unknown status";
	}
	if (out->status != NUDGE_SEND_FAILED)
		out->suppress = 0;
	if (out->retry_after_ms < 0)
		out->retry_after_ms = 0;
}

static void deliver(struct ng_plugin_op *op, const struct nudge_send_result *r)
{
	op_unlink(op);
	counter_add(op->p, status_metric[r->status], 1);
	op->send_done(op->arg, r);
	free(op->held_provider_id);
	free(op->held_reason);
	free(op->held_encoding);
	free(op);
}

static void on_kick(uv_timer_t *t)
{
	struct ng_plugin_host *h = t->data;
	/* Deliver held completions one at a time: a callback may send again and change the lists.
	 */
	for (;;) {
		struct ng_plugin_op *found = NULL;
		for (struct ng_plugin *p = h->plugins; p && !found; p = p->next)
			for (struct ng_plugin_op *op = p->ops; op && !found; op = op->next)
				if (op->deferred && !op->in_call)
					found = op;
		if (!found)
			break;
		deliver(found, &found->held);
	}
}

static void on_send_done(void *arg, const struct nudge_send_result *result)
{
	struct ng_plugin_op *op = arg;
	struct ng_plugin *p = op->p;
	if (op->deferred) {
		ng_error(p->logmod,
		         "the plugin completed message send twice; the second is ignored");
		return;
	}
	struct nudge_send_result r;
	check_result(p, result, &r);
	if (op->in_call) {
		/* The ABI promises callers that done never runs inside send: hold it one turn. */
		ng_error(p->logmod,
		         "the plugin completed a send inside send(); delivering it on the "
		         "next loop turn (a plugin bug)");
		op->held = r;
		op->held_provider_id = r.provider_id ? ng_xstrdup(r.provider_id) : NULL;
		op->held_reason = r.reason ? ng_xstrdup(r.reason) : NULL;
		op->held_encoding = r.encoding ? ng_xstrdup(r.encoding) : NULL;
		op->held.provider_id = op->held_provider_id;
		op->held.reason = op->held_reason;
		op->held.encoding = op->held_encoding;
		op->deferred = 1;
		return;
	}
	deliver(op, &r);
}

/* The descriptor's reconcile, or NULL: a 1.0 plugin has NULL in that (then reserved) slot. */
static void (*reconcile_fn(const struct ng_plugin *p))(void *, const struct nudge_message *,
                                                       nudge_send_done_fn *, void *)
{
	const struct nudge_plugin *d = p->lib->desc;
	if (d->abi_minor < 1 || !NUDGE_HAS_FIELD(d, struct nudge_plugin, reconcile))
		return NULL;
	return d->reconcile;
}

static int send_or_reconcile(struct ng_plugin *p, const struct nudge_message *msg,
                             ng_plugin_send_done_fn *done, void *arg, int reconcile)
{
	if (!p->running || p->host->closing)
		return -ESHUTDOWN;
	if (reconcile && !reconcile_fn(p))
		return -ENOTSUP;
	struct ng_plugin_op *op = ng_xcalloc(1, sizeof *op);
	op->p = p;
	op->kind = OP_SEND;
	op->send_done = done;
	op->arg = arg;
	op_link(op);
	op->in_call = 1;
	if (reconcile)
		reconcile_fn(p)(p->state, msg, on_send_done, op);
	else
		p->lib->desc->send(p->state, msg, on_send_done, op);
	op->in_call = 0;
	if (op->deferred)
		uv_timer_start(&p->host->kick, on_kick, 0, 0);
	return 0;
}

int ng_plugin_send(struct ng_plugin *p, const struct nudge_message *msg,
                   ng_plugin_send_done_fn *done, void *arg)
{
	return send_or_reconcile(p, msg, done, arg, 0);
}

int ng_plugin_reconcile(struct ng_plugin *p, const struct nudge_message *msg,
                        ng_plugin_send_done_fn *done, void *arg)
{
	return send_or_reconcile(p, msg, done, arg, 1);
}

int ng_plugin_can_reconcile(const struct ng_plugin *p)
{
	return reconcile_fn(p) != NULL;
}

static void on_inbound_done(void *arg, const struct nudge_inbound_response *res)
{
	struct ng_plugin_op *op = arg;
	op_unlink(op);
	struct nudge_inbound_response fixed = {
	    sizeof fixed, 500, "text/plain", "the plugin returned a malformed response", 40,
	    NULL,         0};
	if (!res || res->struct_size < sizeof fixed || res->status < 100 || res->status > 599) {
		ng_error(op->p->logmod, "the plugin answered a webhook with a malformed response");
		res = &fixed;
	}
	op->inbound_done(op->arg, res);
	free(op);
}

int ng_plugin_inbound(struct ng_plugin *p, const struct nudge_inbound_request *req,
                      nudge_inbound_done_fn *done, void *arg)
{
	if (!p->running || p->host->closing)
		return -ESHUTDOWN;
	if (!p->lib->desc->inbound)
		return -ENOTSUP;
	struct ng_plugin_op *op = ng_xcalloc(1, sizeof *op);
	op->p = p;
	op->kind = OP_INBOUND;
	op->inbound_done = done;
	op->arg = arg;
	op_link(op);
	p->lib->desc->inbound(p->state, req, on_inbound_done, op);
	return 0;
}

void ng_plugin_health(struct ng_plugin *p, struct nudge_health *out)
{
	memset(out, 0, sizeof *out);
	out->struct_size = sizeof *out;
	if (!p->running) {
		out->status = NUDGE_HEALTH_DOWN;
		snprintf(out->detail, sizeof out->detail, "stopped");
		return;
	}
	out->status = NUDGE_HEALTH_OK;
	if (!p->lib->desc->health)
		return;
	p->lib->desc->health(p->state, out);
	out->struct_size = sizeof *out;
	out->detail[sizeof out->detail - 1] = '\0';
	if (out->status < NUDGE_HEALTH_OK || out->status > NUDGE_HEALTH_DOWN) {
		out->status = NUDGE_HEALTH_DOWN;
		snprintf(out->detail, sizeof out->detail, "the plugin reported an unknown health");
	}
}

/* ---- the host ------------------------------------------------------------------------------ */

void ng_plugin_host_set_httpc(struct ng_plugin_host *h, struct ng_httpc *httpc)
{
	h->httpc = httpc;
}

void ng_plugin_host_set_reports(struct ng_plugin_host *h, const struct ng_plugin_reports *r)
{
	if (r)
		h->reports = *r;
	else
		memset(&h->reports, 0, sizeof h->reports);
}

int ng_plugin_host_open(struct ng_plugin_host **out, uv_loop_t *loop, struct ng_clock *clock,
                        struct ng_senders *senders)
{
	if (!loop || !clock)
		return -EINVAL;
	struct ng_plugin_host *h = ng_xcalloc(1, sizeof *h);
	h->loop = loop;
	h->clock = clock;
	h->senders = senders;
	int rc = uv_timer_init(loop, &h->kick);
	if (rc) {
		free(h);
		return rc;
	}
	h->kick.data = h;
	*out = h;
	return 0;
}

size_t ng_plugin_count(const struct ng_plugin_host *h)
{
	return h->nplugins;
}

struct ng_plugin *ng_plugin_at(struct ng_plugin_host *h, size_t i)
{
	struct ng_plugin *p = h->plugins;
	while (p && i--)
		p = p->next;
	return p;
}

struct ng_plugin *ng_plugin_find(struct ng_plugin_host *h, const char *name)
{
	for (struct ng_plugin *p = h->plugins; p; p = p->next)
		if (strcmp(p->name, name) == 0)
			return p;
	return NULL;
}

struct ng_plugin *ng_plugin_for_channel(struct ng_plugin_host *h, const char *channel)
{
	for (struct ng_plugin *p = h->plugins; p; p = p->next)
		if (p->running && strcmp(p->channel, channel) == 0)
			return p;
	return NULL;
}

const char *ng_plugin_name(const struct ng_plugin *p)
{
	return p->name;
}

const char *ng_plugin_channel(const struct ng_plugin *p)
{
	return p->channel;
}

const char *ng_plugin_path(const struct ng_plugin *p)
{
	return p->lib->path;
}

const struct nudge_plugin *ng_plugin_descriptor(const struct ng_plugin *p)
{
	return p->lib->desc;
}

int64_t ng_plugin_metric(struct ng_plugin *p, const char *name)
{
	int64_t v = 0;
	pthread_mutex_lock(&p->metrics_mu);
	for (size_t i = 0; i < p->nmetrics; i++)
		if (strcmp(p->metrics[i].name, name) == 0)
			v = p->metrics[i].value;
	pthread_mutex_unlock(&p->metrics_mu);
	return v;
}

void ng_plugin_host_metrics(struct ng_plugin_host *h,
                            void (*emit)(void *arg, const char *instance, const char *name,
                                         int64_t value),
                            void *arg)
{
	for (struct ng_plugin *p = h->plugins; p; p = p->next) {
		pthread_mutex_lock(&p->metrics_mu);
		size_t n = p->nmetrics;
		struct ng_plugin_metric *copy = ng_xmalloc((n ? n : 1) * sizeof *copy);
		memcpy(copy, p->metrics, n * sizeof *copy);
		pthread_mutex_unlock(&p->metrics_mu);
		for (size_t i = 0; i < n; i++)
			emit(arg, p->name, copy[i].name, copy[i].value);
		free(copy);
	}
}

static void on_shutdown_done(void *arg)
{
	struct ng_plugin *p = arg;
	if (p->stopped) {
		ng_error(p->logmod, "the plugin reported its shutdown twice");
		return;
	}
	p->stopping = 0;
	p->stopped = 1;
	p->state = NULL;
	/* Whatever the plugin left outstanding is answered here, so no caller waits forever. */
	size_t given_back = 0;
	while (p->ops) {
		struct ng_plugin_op *op = p->ops;
		if (op->kind == OP_INBOUND) {
			op_unlink(op);
			struct nudge_inbound_response res = {
			    sizeof res, 503, "text/plain", "shutting down", 13, NULL, 0};
			op->inbound_done(op->arg, &res);
			free(op);
		} else if (op->deferred) {
			deliver(op, &op->held);
		} else {
			struct nudge_send_result r = {
			    .struct_size = sizeof r,
			    .status = NUDGE_SEND_RETRY,
			    .reason = "the plugin shut down before finishing this send",
			};
			given_back++;
			deliver(op, &r);
		}
	}
	if (given_back)
		ng_error(p->logmod, "shut down with %zu sends outstanding; they will be retried",
		         given_back);
	size_t timers = 0;
	while (p->timers) {
		struct nudge_timer *t = p->timers;
		ng_clock_timer_stop(p->host->clock, &t->ct);
		timer_unlink(t);
		free(t);
		timers++;
	}
	if (timers)
		ng_warn(p->logmod, "shut down with %zu timers pending; they were cancelled",
		        timers);
	size_t https = http_cancel_all(p);
	if (https)
		ng_warn(p->logmod,
		        "shut down with %zu HTTP requests in flight; they were cancelled", https);
	ng_debug(p->logmod, "stopped");
	maybe_finish(p->host);
}

static void on_kick_closed(uv_handle_t *handle)
{
	struct ng_plugin_host *h = handle->data;
	void (*closed)(void *) = h->closed;
	void *arg = h->closed_arg;
	free(h);
	if (closed)
		closed(arg);
}

/* Once every instance has stopped and no plugin code runs on a sender thread: unload and free. */
static void maybe_finish(struct ng_plugin_host *h)
{
	if (!h->closing || !h->close_started || h->close_started == 2)
		return;
	for (struct ng_plugin *p = h->plugins; p; p = p->next)
		if (p->stopping || p->jobs || p->reports)
			return;
	h->close_started = 2;
	while (h->plugins) {
		struct ng_plugin *p = h->plugins;
		h->plugins = p->next;
		struct ng_plugin_lib *lib = p->lib;
		ng_plugin_free(p);
		ng_plugin_lib_release(h, lib);
	}
	h->nplugins = 0;
	uv_close((uv_handle_t *)&h->kick, on_kick_closed);
}

void ng_plugin_host_close(struct ng_plugin_host *h, void (*closed)(void *arg), void *arg)
{
	h->closing = 1;
	h->closed = closed;
	h->closed_arg = arg;
	for (struct ng_plugin *p = h->plugins; p; p = p->next) {
		if (!p->running)
			continue;
		p->running = 0;
		p->stopping = 1;
		p->lib->desc->shutdown(p->state, on_shutdown_done, p);
	}
	h->close_started = 1;
	maybe_finish(h);
}
