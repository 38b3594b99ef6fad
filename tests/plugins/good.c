/*
 * good.c — a well-behaved test plugin ("testgood") that exercises every host service. The
 * recipient decides the outcome, so tests can ask for each result: "retry@…" → retry after 1 s,
 * "bounce@…" → failed with suppression, "maybe@…" → ambiguous, "thread@…" → sent from sender-thread
 * work, anything else → sent. With config hold = true it never completes sends (for the host's
 * shutdown give-back).
 */
#include <nudge/plugin.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pending {
	struct good *g;
	const struct nudge_message *msg;
	nudge_send_done_fn *done;
	void *done_arg;
	struct nudge_timer *timer;
	int thread_index;
	struct pending *next;
};

struct good {
	const struct nudge_host *host;
	struct nudge_instance *self;
	char greeting[64];
	int hold;
	struct pending *pending;
	void (*shutdown_done)(void *arg);
	void *shutdown_arg;
};

static const char *const channels[] = {"email", "sms", NULL};

static const struct nudge_config_key keys[] = {
    {"greeting", NUDGE_CONFIG_STRING, 1, NULL, "told back by inbound and health"},
    {"count", NUDGE_CONFIG_INT, 0, "3", "an integer with a default"},
    {"ratio", NUDGE_CONFIG_NUMBER, 0, "0.5", "a number with a default"},
    {"hold", NUDGE_CONFIG_BOOL, 0, "false", "never complete sends"},
    {"fail_init", NUDGE_CONFIG_BOOL, 0, "false", "refuse to start"},
    {NULL, 0, 0, NULL, NULL},
};

static void unlink_pending(struct good *g, struct pending *p)
{
	for (struct pending **pp = &g->pending; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			return;
		}
}

static void finish(struct pending *p)
{
	struct good *g = p->g;
	const char *r = p->msg->recipient;
	char id[64];
	snprintf(id, sizeof id, "good-%lld", (long long)p->msg->id);
	struct nudge_send_result res = {.struct_size = sizeof res, .status = NUDGE_SEND_SENT};
	if (strncmp(r, "retry@", 6) == 0) {
		res.status = NUDGE_SEND_RETRY;
		res.retry_after_ms = 1000;
		res.reason = "asked to retry";
	} else if (strncmp(r, "bounce@", 7) == 0) {
		res.status = NUDGE_SEND_FAILED;
		res.suppress = 1;
		res.code = 550;
		res.reason = "550 no such user";
	} else if (strncmp(r, "maybe@", 6) == 0) {
		res.status = NUDGE_SEND_AMBIGUOUS;
		res.reason = "timed out after the request went out";
	} else {
		if (strncmp(r, "thread@", 7) == 0)
			snprintf(id, sizeof id, "thread-%d", p->thread_index);
		res.provider_id = id;
	}
	unlink_pending(g, p);
	p->done(p->done_arg, &res);
	free(p);
}

static void on_timer(void *arg)
{
	finish(arg);
}

static void on_thread(void *arg, int thread_index)
{
	struct pending *p = arg;
	p->thread_index = thread_index;
	p->g->host->metric_add(p->g->self, "thread_work", 1);
}

static void on_thread_done(void *arg, int status)
{
	struct pending *p = arg;
	if (status != 0)
		p->thread_index = -1;
	finish(p);
}

static int good_init(const struct nudge_host *host, struct nudge_instance *self, void **state,
                     char *err, size_t errlen)
{
	if (host->config_bool(self, "fail_init")) {
		snprintf(err, errlen, "fail_init is set, so this instance refuses to start");
		return -EINVAL;
	}
	struct good *g = calloc(1, sizeof *g);
	if (!g)
		return -ENOMEM;
	g->host = host;
	g->self = self;
	snprintf(g->greeting, sizeof g->greeting, "%s", host->config_string(self, "greeting"));
	g->hold = host->config_bool(self, "hold");
	struct nudge_http_request req = {
	    .struct_size = sizeof req, .method = "GET", .url = "http://x"};
	if (host->http_request(self, &req, NULL, NULL) == -ENOSYS)
		host->metric_add(self, "http_enosys", 1);
	host->metric_add(self, "count_seen", host->config_int(self, "count"));
	host->metric_add(self, "ratio_x100", (int64_t)(host->config_number(self, "ratio") * 100));
	host->log(self, NUDGE_LOG_INFO, "started with greeting %s", g->greeting);
	*state = g;
	return 0;
}

static void good_send(void *state, const struct nudge_message *msg, nudge_send_done_fn *done,
                      void *done_arg)
{
	struct good *g = state;
	struct pending *p = calloc(1, sizeof *p);
	p->g = g;
	p->msg = msg;
	p->done = done;
	p->done_arg = done_arg;
	p->next = g->pending;
	g->pending = p;
	g->host->metric_add(g->self, "messages_seen", 1);
	if (g->hold)
		return;
	if (strncmp(msg->recipient, "thread@", 7) == 0 &&
	    g->host->run_on_sender(g->self, on_thread, on_thread_done, p) == 0)
		return;
	p->timer = g->host->timer_start(g->self, 0, on_timer, p);
}

static void good_inbound(void *state, const struct nudge_inbound_request *req,
                         nudge_inbound_done_fn *done, void *done_arg)
{
	struct good *g = state;
	char body[256];
	int n = snprintf(body, sizeof body, "{\"greeting\":\"%s\",\"path\":\"%s\",\"bytes\":%zu}",
	                 g->greeting, req->path, req->body_len);
	struct nudge_inbound_response res = {.struct_size = sizeof res,
	                                     .status = 200,
	                                     .content_type = "application/json",
	                                     .body = body,
	                                     .body_len = (size_t)n};
	done(done_arg, &res);
}

static void good_health(void *state, struct nudge_health *out)
{
	struct good *g = state;
	out->status = NUDGE_HEALTH_OK;
	snprintf(out->detail, sizeof out->detail, "greeting %s", g->greeting);
}

static void on_shutdown_timer(void *arg)
{
	struct good *g = arg;
	void (*done)(void *) = g->shutdown_done;
	void *done_arg = g->shutdown_arg;
	free(g);
	done(done_arg);
}

static void good_shutdown(void *state, void (*done)(void *arg), void *arg)
{
	struct good *g = state;
	/* A held send is left outstanding on purpose: the host must give it back. */
	while (g->pending && !g->hold) {
		struct pending *p = g->pending;
		if (p->timer)
			g->host->timer_cancel(g->self, p->timer);
		finish(p);
	}
	while (g->pending) {
		struct pending *p = g->pending;
		g->pending = p->next;
		free(p);
	}
	g->shutdown_done = done;
	g->shutdown_arg = arg;
	/* Asynchronous on purpose: shutdown's done may come later. */
	g->host->timer_start(g->self, 5, on_shutdown_timer, g);
}

static const struct nudge_plugin descriptor = {
    .abi_major = NUDGE_PLUGIN_ABI_MAJOR,
    .abi_minor = NUDGE_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(struct nudge_plugin),
    .name = "testgood",
    .version = "1.0.0",
    .description = "a well-behaved plugin for the loader tests",
    .channels = channels,
    .config_keys = keys,
    .init = good_init,
    .send = good_send,
    .inbound = good_inbound,
    .health = good_health,
    .shutdown = good_shutdown,
};

NUDGE_PLUGIN_EXPORT const struct nudge_plugin *nudge_plugin_entry(void)
{
	return &descriptor;
}
