/*
 * daemon_parts.c — builds the daemon's components from the configuration, in dependency order.
 */
#include "daemon_parts.h"
#include "clock.h"
#include "config.h"
#include "daemon.h"
#include "db.h"
#include "ng.h"
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

static void close_db(void *self, void (*done)(void *arg), void *arg)
{
	ng_db_close(self, done, arg);
}

static int start_db(struct ng_daemon *d, uv_loop_t *loop, const struct ng_conf *conf,
		    struct ng_daemon_parts *parts, char *err, size_t errlen)
{
	struct ng_db_options o = {
		.conninfo = ng_conf_str(conf, "database.conninfo"),
		.pool_size = (int)ng_conf_int(conf, "database.pool_size"),
		.statement_timeout_ms = (int)ng_conf_int(conf, "database.statement_timeout_ms"),
		.connect_timeout_ms = (int)ng_conf_int(conf, "database.connect_timeout_ms"),
		.queue_timeout_ms = (int)ng_conf_int(conf, "database.queue_timeout_ms"),
		.close_timeout_ms = (int)ng_conf_int(conf, "shutdown_timeout_ms") / 2,
	};
	int rc = ng_db_open(&parts->db, loop, &o);
	if (rc) {
		snprintf(err, errlen, "key 'database.conninfo' is not a connection string libpq accepts");
		return rc;
	}
	ng_daemon_add(d, "database", parts->db, close_db, NULL);
	return 0;
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

	/* The pool connects in the background: the daemon starts (and /healthz says "degraded") while
	 * PostgreSQL is down, and catches up when it comes back. */
	rc = start_db(d, loop, conf, parts, err, errlen);
	if (rc)
		return rc;
	return 0;
}
