/*
 * noentry.c — a shared object without the nudge_plugin_entry symbol (a library dropped into the
 * plugin directory by mistake): the loader must refuse it.
 */
#include <nudge/plugin.h>

NUDGE_PLUGIN_EXPORT int not_a_nudge_plugin(void);

NUDGE_PLUGIN_EXPORT int not_a_nudge_plugin(void)
{
	return 42;
}
