/*
 * small.c — a test plugin whose descriptor claims fewer bytes than ABI 1.0 defines (as if built
 * against a damaged header): the loader must refuse it rather than read past its end.
 */
#include <nudge/plugin.h>

static const char *const channels[] = {"email", NULL};

static const struct nudge_plugin descriptor = {
    .abi_major = NUDGE_PLUGIN_ABI_MAJOR,
    .abi_minor = NUDGE_PLUGIN_ABI_MINOR,
    .struct_size = 64,
    .name = "small",
    .channels = channels,
};

NUDGE_PLUGIN_EXPORT const struct nudge_plugin *nudge_plugin_entry(void)
{
	return &descriptor;
}
