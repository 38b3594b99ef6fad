/*
 * example.c — a complete nudge channel plugin built outside the nudge tree, against nothing but
 * <nudge/plugin.h>. It "delivers" short messages by logging them through the host, after an
 * optional delay, so it shows the whole contract in one page: the descriptor and its config keys,
 * per-instance state, an asynchronous send whose completion runs exactly once and never inside
 * send(), health, and a shutdown that gives back what it has not finished.
 *
 *   make                       # → example.so
 *   channels = { { name = "console", plugin = "example", config = { prefix = "SMS", delay_ms = 10 }
 * } }
 */
#include <nudge/plugin.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

struct example;

/* One send in flight: kept until its timer fires or the instance shuts down. */
struct pending {
	struct example *ex;
	const struct nudge_message *msg;
	nudge_send_done_fn *done;
	void *done_arg;
	struct nudge_timer *timer;
	struct pending *prev, *next;
};

struct example {
	const struct nudge_host *host;
	struct nudge_instance *self;
	const char *prefix; /* the host keeps config strings alive for the instance's life */
	int64_t delay_ms;
	int64_t delivered;
	struct pending *pending;
};

static const char *const channels[] = {"sms", NULL};

static const struct nudge_config_key config_keys[] = {
    {"prefix", NUDGE_CONFIG_STRING, 0, "example", "written before every delivered message"},
    {"delay_ms", NUDGE_CONFIG_INT, 0, "0", "pretend delivery takes this long"},
    {NULL, 0, 0, NULL, NULL},
};

static void unlink_pending(struct pending *p)
{
	if (p->prev)
		p->prev->next = p->next;
	else
		p->ex->pending = p->next;
	if (p->next)
		p->next->prev = p->prev;
}

static void complete(struct pending *p, int status, const char *reason)
{
	char id[32];
	snprintf(id, sizeof id, "example-%lld", (long long)p->msg->id);
	struct nudge_send_result r = {
	    .struct_size = sizeof r,
	    .status = status,
	    .provider_id = status == NUDGE_SEND_SENT ? id : NULL,
	    .reason = reason,
	};
	unlink_pending(p);
	p->done(p->done_arg, &r); /* r and id need only live until done returns */
	free(p);
}

static void on_delivered(void *arg)
{
	struct pending *p = arg;
	struct example *ex = p->ex;
	ex->host->log(ex->self, NUDGE_LOG_INFO, "%s to %s: %s", ex->prefix, p->msg->recipient,
	              p->msg->body ? p->msg->body : "");
	ex->delivered++;
	ex->host->metric_add(ex->self, "delivered", 1);
	complete(p, NUDGE_SEND_SENT, NULL);
}

static int example_init(const struct nudge_host *host, struct nudge_instance *self, void **state,
                        char *err, size_t errlen)
{
	int64_t delay = host->config_int(self, "delay_ms");
	if (delay < 0) {
		snprintf(err, errlen, "delay_ms must not be negative, not %lld", (long long)delay);
		return -EINVAL;
	}
	struct example *ex = calloc(1, sizeof *ex);
	if (!ex)
		return -ENOMEM;
	ex->host = host;
	ex->self = self;
	ex->prefix = host->config_string(self, "prefix");
	ex->delay_ms = delay;
	*state = ex;
	return 0;
}

static void example_send(void *state, const struct nudge_message *msg, nudge_send_done_fn *done,
                         void *done_arg)
{
	struct example *ex = state;
	struct pending *p = calloc(1, sizeof *p);
	if (!p)
		abort(); /* as in nudge itself: a few bytes short, nothing can go on */
	p->ex = ex;
	p->msg = msg; /* valid until done is called */
	p->done = done;
	p->done_arg = done_arg;
	p->next = ex->pending;
	if (ex->pending)
		ex->pending->prev = p;
	ex->pending = p;
	/* Even with no delay, complete on a later loop turn: never inside send(). */
	p->timer = ex->host->timer_start(ex->self, ex->delay_ms, on_delivered, p);
}

static void example_health(void *state, struct nudge_health *out)
{
	struct example *ex = state;
	out->status = NUDGE_HEALTH_OK;
	snprintf(out->detail, sizeof out->detail, "%lld delivered", (long long)ex->delivered);
}

static void example_shutdown(void *state, void (*done)(void *arg), void *arg)
{
	struct example *ex = state;
	while (ex->pending) {
		struct pending *p = ex->pending;
		ex->host->timer_cancel(ex->self, p->timer);
		complete(p, NUDGE_SEND_RETRY, "the example plugin stopped first");
	}
	free(ex);
	done(arg);
}

static const struct nudge_plugin descriptor = {
    .abi_major = NUDGE_PLUGIN_ABI_MAJOR,
    .abi_minor = NUDGE_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(struct nudge_plugin),
    .name = "example",
    .version = "1.0.0",
    .description = "logs short messages instead of sending them",
    .channels = channels,
    .config_keys = config_keys,
    .init = example_init,
    .send = example_send,
    .health = example_health,
    .shutdown = example_shutdown,
};

NUDGE_PLUGIN_EXPORT const struct nudge_plugin *nudge_plugin_entry(void)
{
	return &descriptor;
}
