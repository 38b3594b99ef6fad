/*
 * daemon.c — `nudge serve`: the loop, the components, signals, reload and drain (see daemon.h).
 */
#include "daemon.h"
#include "clock.h"
#include "config.h"
#include "daemon_parts.h"
#include "ng.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COMPONENTS 16
#define LAG_PROBE_MS 100

struct component {
	const char *name;
	void *self;
	ng_daemon_close_fn close;
	ng_daemon_reload_fn reload;
};

struct ng_daemon {
	uv_loop_t loop;
	char *config_path;
	struct ng_conf *conf;
	struct component parts[MAX_COMPONENTS];
	int nparts;
	int closing_index; /* next component to close, counting down; -1 when all are closed */
	int draining;
	int exit_code;
	uv_signal_t sigterm, sigint, sighup;
	uv_timer_t lag_timer, drain_timer;
	uint64_t lag_expected;
	struct ng_loop_lag lag;
	struct ng_daemon_parts built;
};

void ng_daemon_add(struct ng_daemon *d, const char *name, void *self, ng_daemon_close_fn close,
		   ng_daemon_reload_fn reload)
{
	if (d->nparts == MAX_COMPONENTS) {
		ng_error("daemon", "too many components (raise MAX_COMPONENTS)");
		abort();
	}
	d->parts[d->nparts++] = (struct component){name, self, close, reload};
}

void ng_daemon_loop_lag(const struct ng_daemon *d, struct ng_loop_lag *out)
{
	*out = d->lag;
}

/* The lag probe: a repeating timer that measures how late it fires. A late probe means something
 * blocked the loop thread, which must never happen; /healthz and /metrics report it. */
static void on_lag_probe(uv_timer_t *t)
{
	struct ng_daemon *d = t->data;
	uint64_t now = uv_now(&d->loop);
	uint64_t late = now > d->lag_expected ? now - d->lag_expected : 0;
	d->lag.last_ms = late;
	if (late > d->lag.max_ms)
		d->lag.max_ms = late;
	if (late > 500)
		ng_warn("daemon", "the event loop was blocked for %llu ms", (unsigned long long)late);
	d->lag_expected = now + LAG_PROBE_MS;
}

static void close_next(void *arg);

static void on_handle_closed(uv_handle_t *h)
{
	NG_UNUSED(h);
}

/* Everything is closed: stop our own handles so uv_run returns. */
static void finish(struct ng_daemon *d)
{
	uv_timer_stop(&d->drain_timer);
	uv_close((uv_handle_t *)&d->drain_timer, on_handle_closed);
	uv_close((uv_handle_t *)&d->lag_timer, on_handle_closed);
	uv_close((uv_handle_t *)&d->sigterm, on_handle_closed);
	uv_close((uv_handle_t *)&d->sigint, on_handle_closed);
	uv_close((uv_handle_t *)&d->sighup, on_handle_closed);
}

static void close_next(void *arg)
{
	struct ng_daemon *d = arg;
	if (d->closing_index < 0)
		return;
	if (d->closing_index < d->nparts && d->closing_index >= 0 &&
	    d->parts[d->closing_index].name)
		ng_debug("daemon", "%s closed", d->parts[d->closing_index].name);
	d->closing_index--;
	if (d->closing_index < 0) {
		ng_info("daemon", "drained; exiting");
		finish(d);
		return;
	}
	struct component *c = &d->parts[d->closing_index];
	c->close(c->self, close_next, d);
}

static void on_drain_timeout(uv_timer_t *t)
{
	struct ng_daemon *d = t->data;
	const char *name = d->closing_index >= 0 && d->closing_index < d->nparts
				   ? d->parts[d->closing_index].name
				   : "?";
	ng_error("daemon", "drain did not finish within shutdown_timeout_ms (still closing: %s); "
			   "exiting anyway",
		 name);
	exit(1);
}

static void start_drain(struct ng_daemon *d, const char *why)
{
	if (d->draining) {
		ng_warn("daemon", "%s again while draining: exiting at once", why);
		exit(1);
	}
	d->draining = 1;
	ng_info("daemon", "%s: draining in-flight work (at most %lld ms)", why,
		ng_conf_int(d->conf, "shutdown_timeout_ms"));
	uv_timer_start(&d->drain_timer, on_drain_timeout,
		       (uint64_t)ng_conf_int(d->conf, "shutdown_timeout_ms"), 0);
	uv_timer_stop(&d->lag_timer);
	d->closing_index = d->nparts;
	close_next(d);
}

static void apply_logging(const struct ng_conf *c)
{
	enum ng_log_level level = NG_LOG_INFO;
	ng_log_level_parse(ng_conf_str(c, "log.level"), &level);
	ng_log_setup(level,
		     strcmp(ng_conf_str(c, "log.format"), "json") == 0 ? NG_LOG_JSON : NG_LOG_LOGFMT);
}

/* SIGHUP: re-read the file; a broken file is reported and the running configuration kept. */
static void reload(struct ng_daemon *d)
{
	char err[1024];
	struct ng_conf *fresh = NULL;
	if (ng_conf_load(d->config_path, &fresh, err, sizeof err) != 0) {
		ng_error("daemon", "reload refused, keeping the running configuration: %s", err);
		return;
	}
	apply_logging(fresh);
	for (int i = 0; i < d->nparts; i++)
		if (d->parts[i].reload)
			d->parts[i].reload(d->parts[i].self, fresh);
	ng_conf_free(d->conf);
	d->conf = fresh;
	ng_info("daemon", "reloaded %s", d->config_path);
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct ng_daemon *d = s->data;
	if (signum == SIGHUP) {
		if (!d->draining)
			reload(d);
		return;
	}
	start_drain(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void init_signal(struct ng_daemon *d, uv_signal_t *s, int signum)
{
	uv_signal_init(&d->loop, s);
	s->data = d;
	uv_signal_start(s, on_signal, signum);
}

int ng_daemon_run(const char *config_path)
{
	char err[1024];
	struct ng_daemon *d = ng_xcalloc(1, sizeof *d);
	d->config_path = ng_xstrdup(config_path);
	if (ng_conf_load(config_path, &d->conf, err, sizeof err) != 0) {
		fprintf(stderr, "nudge: %s\n", err);
		free(d->config_path);
		free(d);
		return 1;
	}
	apply_logging(d->conf);
	signal(SIGPIPE, SIG_IGN);
	uv_loop_init(&d->loop);
	init_signal(d, &d->sigterm, SIGTERM);
	init_signal(d, &d->sigint, SIGINT);
	init_signal(d, &d->sighup, SIGHUP);
	uv_timer_init(&d->loop, &d->drain_timer);
	d->drain_timer.data = d;
	uv_timer_init(&d->loop, &d->lag_timer);
	d->lag_timer.data = d;
	d->lag_expected = uv_now(&d->loop) + LAG_PROBE_MS;
	uv_timer_start(&d->lag_timer, on_lag_probe, LAG_PROBE_MS, LAG_PROBE_MS);

	int rc = ng_daemon_parts_start(d, &d->loop, d->conf, &d->built, err, sizeof err);
	if (rc) {
		ng_error("daemon", "cannot start: %s", err);
		d->exit_code = 1;
		/* Close whatever did start, the same way a drain does. */
		d->draining = 1;
		uv_timer_stop(&d->lag_timer);
		d->closing_index = d->nparts;
		close_next(d);
	} else {
		ng_info("daemon", "nudge %s ready (config %s)", NG_VERSION, config_path);
	}
	uv_run(&d->loop, UV_RUN_DEFAULT);
	int closed = uv_loop_close(&d->loop);
	if (closed != 0) {
		ng_error("daemon", "handles left open at exit: %s", uv_strerror(closed));
		d->exit_code = 1;
	}
	int code = d->exit_code;
	ng_daemon_parts_free(&d->built);
	ng_conf_free(d->conf);
	free(d->config_path);
	free(d);
	return code;
}
