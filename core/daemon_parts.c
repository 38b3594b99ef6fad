/*
 * daemon_parts.c — builds the daemon's components from the configuration, in dependency order.
 */
#include "daemon_parts.h"
#include "clock.h"
#include "config.h"
#include "daemon.h"
#include "ng.h"
#include "plugin_host.h"
#include "senders.h"

#include <stdio.h>

static void close_clock(void *self, void (*done)(void *arg), void *arg)
{
	ng_clock_close(self, done, arg);
}

static void close_senders(void *self, void (*done)(void *arg), void *arg)
{
	ng_senders_close(self, done, arg);
}

static void close_plugins(void *self, void (*done)(void *arg), void *arg)
{
	ng_plugin_host_close(self, done, arg);
}

int ng_daemon_parts_start(struct ng_daemon *d, uv_loop_t *loop, const struct ng_conf *conf,
			  struct ng_daemon_parts *parts, char *err, size_t errlen)
{
	parts->clock = ng_clock_real(loop);
	parts->started_ms = (uint64_t)ng_clock_now_ms(parts->clock);
	ng_daemon_add(d, "clock", parts->clock, close_clock, NULL);

	int rc = ng_senders_open(&parts->senders, loop, (int)ng_conf_int(conf, "senders.threads"));
	if (rc) {
		snprintf(err, errlen, "cannot start the sender threads: %s", ng_strerror(rc));
		return rc;
	}
	ng_daemon_add(d, "senders", parts->senders, close_senders, NULL);

	/* Channel plugins: a refused instance is logged with its reason; the others still start. */
	rc = ng_plugin_host_open(&parts->plugins, loop, parts->clock, parts->senders);
	if (rc) {
		snprintf(err, errlen, "cannot start the plugin host: %s", ng_strerror(rc));
		return rc;
	}
	ng_daemon_add(d, "plugins", parts->plugins, close_plugins, NULL);
	ng_plugin_host_load_conf(parts->plugins, conf, NULL, NULL);
	return 0;
}
