/*
 * daemon.h — the lifecycle of `nudge serve`: build the components on one libuv loop, run, reload on
 * SIGHUP, drain on SIGTERM/SIGINT.
 *
 * Components (the database pool, the HTTP client and server, the sender pool, the clock…) register a
 * close function as they start. Draining closes them one at a time in reverse order — the HTTP
 * listener first, so no new work arrives while the database finishes what is in flight — each close
 * finishing its in-flight work before calling back. A timer bounds the whole drain.
 */
#ifndef NG_DAEMON_H
#define NG_DAEMON_H

#include <stdint.h>
#include <uv.h>

struct ng_conf;
struct ng_daemon;

typedef void (*ng_daemon_close_fn)(void *self, void (*done)(void *arg), void *arg);
typedef void (*ng_daemon_reload_fn)(void *self, const struct ng_conf *conf);

/* Registers a component; closes run in reverse order of registration. */
void ng_daemon_add(struct ng_daemon *d, const char *name, void *self, ng_daemon_close_fn close,
		   ng_daemon_reload_fn reload);

/* Loop health: the most recent and the largest lateness of a 100 ms probe timer, in ms. */
struct ng_loop_lag {
	uint64_t last_ms, max_ms;
};
void ng_daemon_loop_lag(const struct ng_daemon *d, struct ng_loop_lag *out);

/* Runs the daemon with the configuration file at path; returns the process exit status. */
int ng_daemon_run(const char *config_path);

#endif
