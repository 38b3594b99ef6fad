/*
 * badkey.c — a test plugin that declares a config key whose default does not fit its type: the
 * loader must refuse the plugin before any instance of it starts.
 */
#include <nudge/plugin.h>

#include <stdlib.h>

static const char *const channels[] = {"email", NULL};

static const struct nudge_config_key keys[] = {
    {"port", NUDGE_CONFIG_INT, 0, "twenty-five", "an integer with a default that is not one"},
    {NULL, 0, 0, NULL, NULL},
};

static int never_init(const struct nudge_host *host, struct nudge_instance *self, void **state,
                      char *err, size_t errlen)
{
	(void)host, (void)self, (void)state, (void)err, (void)errlen;
	abort();
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
    .abi_major = NUDGE_PLUGIN_ABI_MAJOR,
    .abi_minor = NUDGE_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(struct nudge_plugin),
    .name = "badkey",
    .channels = channels,
    .config_keys = keys,
    .init = never_init,
    .send = never_send,
    .shutdown = never_shutdown,
};

NUDGE_PLUGIN_EXPORT const struct nudge_plugin *nudge_plugin_entry(void)
{
	return &descriptor;
}
