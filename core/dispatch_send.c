/*
 * dispatch_send.c — one claimed message on its way to a plugin. The claim brought the policy's
 * verdict: a refusal becomes a skip with its reason. Otherwise the render data is built from the
 * stored snapshot by core/msgdata.c (customer, store, message and the signed links), the template
 * is rendered here on the loop thread (templates are parsed once at load, so a render is a short
 * walk over the data), and the message is handed to its plugin instance. The plugin's completion
 * goes to dispatch_result.c.
 */
#include "dispatch_int.h"
#include "json_parse.h"
#include "ng.h"
#include "plugin_host.h"
#include "msgdata.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

void dispatch_msg_free(struct dispatch_msg *m)
{
	if (m->rendered) {
		ng_msgtmpl_rendered_free(m->rendered);
		free(m->rendered);
	}
	json_decref(m->data);
	json_decref(m->customer);
	free(m->channel);
	free(m->template_);
	free(m->recipient);
	free(m->key);
	free(m->unsub_url);
	free(m->encoding);
	free((char *)m->msg.recipient_name);
	free(m);
}

static void on_sent(void *arg, const struct nudge_send_result *r)
{
	struct dispatch_msg *m = arg;
	m->sending = 0;
	if (!m->d) { /* given back by a drain that ran out of time: nothing more to record */
		dispatch_msg_free(m);
		return;
	}
	dispatch_result_from_send(m, r);
}

static const char *col(PGresult *res, int i, int c)
{
	return PQgetisnull(res, i, c) ? NULL : PQgetvalue(res, i, c);
}

static json_t *render_data(struct dispatch_msg *m, const char *snapshot, char *err, size_t errlen)
{
	const struct ng_msgdata_msg msg = {m->cid, m->mid, m->channel,
	                                   m->purpose == NUDGE_PURPOSE_MARKETING, m->key};
	return ng_msgdata(&m->d->opt.store, &msg, snapshot, m->customer, &m->unsub_url, err,
	                  errlen);
}

static char *display_name(const json_t *customer)
{
	const char *f = json_string_value(json_object_get(customer, "first_name"));
	const char *l = json_string_value(json_object_get(customer, "last_name"));
	if (f && l)
		return ng_xasprintf("%s %s", f, l);
	if (f || l)
		return ng_xstrdup(f ? f : l);
	return NULL;
}

void dispatch_send_claimed(struct dispatch_lane *lane, PGresult *res, int i, int reconcile)
{
	struct ng_dispatch *d = lane->d;
	struct dispatch_msg *m = ng_xcalloc(1, sizeof *m);
	m->d = d;
	m->lane = lane;
	m->reconcile = reconcile;
	m->cid = strtoll(PQgetvalue(res, i, 0), NULL, 10);
	m->mid = strtoll(PQgetvalue(res, i, 1), NULL, 10);
	m->attempt = atoi(PQgetvalue(res, i, 2));
	m->channel = ng_xstrdup(PQgetvalue(res, i, 3));
	m->template_ = ng_xstrdup(PQgetvalue(res, i, 4));
	m->purpose = strcmp(PQgetvalue(res, i, 5), "transactional") == 0
	                 ? NUDGE_PURPOSE_TRANSACTIONAL
	                 : NUDGE_PURPOSE_MARKETING;
	const char *addr = col(res, i, 7), *verdict = col(res, i, 8), *cust = col(res, i, 9);
	m->recipient = addr ? ng_xstrdup(addr) : NULL;
	m->key = ng_xasprintf(NG_MSGDATA_KEY_FMT, (long long)m->cid, (long long)m->mid);
	m->customer = cust ? ng_json_parse_str(cust, 0, NULL) : NULL;
	if (!m->customer)
		m->customer = json_object();
	dispatch_inflight_add(d, m);

	if (d->closing) { /* claimed while the drain began: back to the queue, unsent */
		dispatch_result_give_back(m, "given back: the dispatcher is stopping");
		return;
	}
	if (verdict && strncmp(verdict, "defer:", 6) == 0) {
		/* "defer:<epoch ms>:<reason>" (ng_policy_verdict, sql/0007): due again then. */
		char *end;
		long long until = strtoll(verdict + 6, &end, 10);
		dispatch_result_defer(m, (int64_t)until, *end == ':' ? end + 1 : verdict);
		return;
	}
	if (verdict) {
		dispatch_result_not_sent(m, "skipped", verdict);
		return;
	}
	char err[512] = "";
	m->data = render_data(m, col(res, i, 6), err, sizeof err);
	m->rendered = ng_xcalloc(1, sizeof *m->rendered);
	int rc = m->data ? ng_msgtmpl_render(d->opt.templates, m->template_, m->data, m->rendered,
	                                     err, sizeof err)
	                 : UV_EINVAL; /* err says why */
	if (rc) {
		char *why = ng_xasprintf("render: %s", err[0] ? err : ng_strerror(rc));
		if (reconcile) /* what was sent cannot be told: it stays ambiguous */
			dispatch_result_give_back(m, why);
		else
			dispatch_result_not_sent(m, "failed", why);
		free(why);
		return;
	}
	const struct ng_rendered_message *r = m->rendered;
	if (r->purpose && strcmp(r->purpose, "marketing") == 0 &&
	    m->purpose != NUDGE_PURPOSE_MARKETING) {
		/* The template says marketing: it is, whatever the workflow claimed. */
		dispatch_result_not_sent(m, "failed",
		                         "render: a marketing template queued as transactional");
		return;
	}
	m->msg = (struct nudge_message){
	    .struct_size = sizeof m->msg,
	    .purpose = m->purpose,
	    .id = m->mid,
	    .attempt = (uint32_t)m->attempt,
	    .key = m->key,
	    .channel = m->channel,
	    .recipient = m->recipient,
	    .recipient_name = display_name(m->customer),
	    .from_name = r->from_name,
	    .subject = r->subject,
	    .text = r->text,
	    .html = r->html,
	    .body = r->body,
	    .unsubscribe_url = m->purpose == NUDGE_PURPOSE_MARKETING ? m->unsub_url : NULL,
	};
	m->sending = 1;
	rc = reconcile ? ng_plugin_reconcile(lane->plugin, &m->msg, on_sent, m)
	               : ng_plugin_send(lane->plugin, &m->msg, on_sent, m);
	if (rc) {
		m->sending = 0;
		dispatch_result_give_back(m, "given back: the plugin takes no more sends");
	}
}
