/*
 * eager.c — a test plugin that breaks the send contract: it completes from inside send(), and for
 * recipient "garbage@…" hands back a result without struct_size. The host must deliver the first on
 * the next loop turn and turn the second into a retry.
 */
#include <nudge/plugin.h>

#include <stdlib.h>
#include <string.h>

static const char *const channels[] = {"email", NULL};
static int instance_state;

static int eager_init(const struct nudge_host *host, struct nudge_instance *self, void **state,
                      char *err, size_t errlen)
{
	(void)host, (void)self, (void)err, (void)errlen;
	*state = &instance_state;
	return 0;
}

static void eager_send(void *state, const struct nudge_message *msg, nudge_send_done_fn *done,
                       void *done_arg)
{
	(void)state;
	struct nudge_send_result res = {
	    .struct_size = sizeof res, .status = NUDGE_SEND_SENT, .provider_id = "eager-1"};
	if (strncmp(msg->recipient, "garbage@", 8) == 0)
		memset(&res, 0, sizeof res);
	done(done_arg, &res); /* the bug under test */
}

static void eager_shutdown(void *state, void (*done)(void *arg), void *arg)
{
	(void)state;
	done(arg); /* nothing pending: done from inside shutdown is allowed */
}

static const struct nudge_plugin descriptor = {
    .abi_major = NUDGE_PLUGIN_ABI_MAJOR,
    .abi_minor = NUDGE_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(struct nudge_plugin),
    .name = "eager",
    .channels = channels,
    .init = eager_init,
    .send = eager_send,
    .shutdown = eager_shutdown,
};

NUDGE_PLUGIN_EXPORT const struct nudge_plugin *nudge_plugin_entry(void)
{
	return &descriptor;
}
