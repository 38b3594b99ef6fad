/*
 * httpget.c — a test plugin ("testhttp") that sends each message as one HTTP request through the
 * host's http_request service: POST the body to the URL in the message's recipient, with the
 * message key as an X-Key header and Basic credentials "user:pass". A 2xx answer is "sent" with
 * the response body as provider id, any other status "failed" with that code, and a transfer error
 * a retry whose reason is the error text and whose code is the (negative) error.
 */
#include <nudge/plugin.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct inst {
	const struct nudge_host *host;
	struct nudge_instance *self;
};

struct call {
	nudge_send_done_fn *done;
	void *done_arg;
};

static const char *const channels[] = {"sms", NULL};
static const struct nudge_config_key keys[] = {{NULL, 0, 0, NULL, NULL}};

static int h_init(const struct nudge_host *host, struct nudge_instance *self, void **state,
                  char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	struct inst *i = calloc(1, sizeof *i);
	if (!i)
		return -ENOMEM;
	i->host = host;
	i->self = self;
	*state = i;
	return 0;
}

static void on_response(void *arg, const struct nudge_http_response *r)
{
	struct call *c = arg;
	char id[128], reason[256];
	struct nudge_send_result res = {.struct_size = sizeof res, .code = r->status};
	if (r->error) {
		res.status = NUDGE_SEND_RETRY;
		res.code = r->error;
		snprintf(reason, sizeof reason, "%s (sent=%d)", r->error_text,
		         (int)r->request_sent);
		res.reason = reason;
	} else if (r->status >= 200 && r->status < 300) {
		res.status = NUDGE_SEND_SENT;
		snprintf(id, sizeof id, "%.*s", (int)r->body_len, r->body);
		res.provider_id = id;
		for (size_t k = 0; k < r->nheaders; k++)
			if (strcmp(r->headers[k].name, "X-Test") == 0)
				res.reason = r->headers[k].value;
	} else {
		res.status = NUDGE_SEND_FAILED;
		res.reason = "refused";
	}
	c->done(c->done_arg, &res);
	free(c);
}

static void h_send(void *state, const struct nudge_message *msg, nudge_send_done_fn *done,
                   void *done_arg)
{
	struct inst *i = state;
	struct call *c = calloc(1, sizeof *c);
	c->done = done;
	c->done_arg = done_arg;
	struct nudge_header h[] = {{"X-Key", msg->key}};
	struct nudge_http_request req = {
	    .struct_size = sizeof req,
	    .method = "POST",
	    .url = msg->recipient,
	    .headers = h,
	    .nheaders = 1,
	    .body = msg->body,
	    .body_len = strlen(msg->body),
	    .username = "user",
	    .password = "pass",
	    .timeout_ms = 2000,
	};
	int rc = i->host->http_request(i->self, &req, on_response, c);
	if (rc) {
		/* Not allowed inside send: the host holds it to the next turn (and logs it). Tests
		 * never get here. */
		struct nudge_send_result res = {.struct_size = sizeof res,
		                                .status = NUDGE_SEND_RETRY,
		                                .reason = "http_request refused",
		                                .code = rc};
		free(c);
		done(done_arg, &res);
	}
}

static void h_shutdown(void *state, void (*done)(void *arg), void *arg)
{
	free(state);
	done(arg);
}

static const struct nudge_plugin descriptor = {
    .abi_major = NUDGE_PLUGIN_ABI_MAJOR,
    .abi_minor = NUDGE_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(struct nudge_plugin),
    .name = "testhttp",
    .version = "1.0.0",
    .description = "sends through the host's HTTP client, for test_httpc",
    .channels = channels,
    .config_keys = keys,
    .init = h_init,
    .send = h_send,
    .shutdown = h_shutdown,
};

NUDGE_PLUGIN_EXPORT const struct nudge_plugin *nudge_plugin_entry(void)
{
	return &descriptor;
}
