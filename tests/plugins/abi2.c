/*
 * abi2.c — a test plugin built for a future plugin ABI 2.x: the loader must refuse it by its major
 * version alone, without calling anything but the entry function.
 */
#include <nudge/plugin.h>

#include <stdlib.h>

static const char *const channels[] = {"email", NULL};

static int never_init(const struct nudge_host *host, struct nudge_instance *self, void **state,
                      char *err, size_t errlen)
{
	(void)host, (void)self, (void)state, (void)err, (void)errlen;
	abort(); /* a refused plugin is never called */
}

static void never_send(void *state, const struct nudge_message *msg, nudge_send_done_fn *done,
                       void *done_arg)
{
	(void)state, (void)msg, (void)done, (void)done_arg;
	abort();
}

static void never_shutdown(void *state, void (*done)(void *arg), void *arg)
{
	(void)state, (void)done, (void)arg;
	abort();
}

static const struct nudge_plugin descriptor = {
    .abi_major = 2,
    .abi_minor = 0,
    .struct_size = sizeof(struct nudge_plugin) + 64,
    .name = "abi2",
    .version = "2.0.0",
    .channels = channels,
    .init = never_init,
    .send = never_send,
    .shutdown = never_shutdown,
};

NUDGE_PLUGIN_EXPORT const struct nudge_plugin *nudge_plugin_entry(void)
{
	return &descriptor;
}
