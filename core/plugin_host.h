/*
 * plugin_host.h — channel plugins inside the daemon: loading them (plugin_loader.c) and running
 * them (plugin_host.c): the services table they call, sends with an exactly-once completion,
 * webhooks, health, metrics, and an orderly shutdown.
 *
 * The public contract is core/include/nudge/plugin.h; this header is nudge's side of it. One
 * ng_plugin_host holds every instance named under `channels` in nudge.conf.lua. Several instances
 * may share one plugin file (two SMTP relays); the file is dlopen'ed once, its handle released
 * after its last instance has shut down and no work of it is running on a sender thread, and its
 * code kept mapped until exit (see plugin_loader.c).
 */
#ifndef NG_PLUGIN_HOST_H
#define NG_PLUGIN_HOST_H

#include "nudge/plugin.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct ng_clock;
struct ng_conf;
struct ng_httpc;
struct ng_conf_node;
struct ng_senders;
struct ng_plugin_host;
struct ng_plugin; /* one running instance */

/* One instance to load, as written under `channels` in nudge.conf.lua. */
struct ng_plugin_spec {
	const char *name;    /* the instance name: logs, metrics, /v1/webhooks/<name> */
	const char *plugin;  /* the file in the plugin directory, without ".so" */
	const char *channel; /* NULL: the plugin's first channel */
	const struct ng_conf_node *config; /* an NG_CONF_ANY node, or NULL for no keys */
	const char *conf_path;             /* for sentences: "nudge.conf.lua"; may be NULL */
	int line;                          /* where the entry was written; 0 if unknown */
};

/*
 * Creates the host. senders may be NULL (then run_on_sender answers -ENOSYS); clock is required.
 * Timers and deferred completions run on loop.
 */
int ng_plugin_host_open(struct ng_plugin_host **out, uv_loop_t *loop, struct ng_clock *clock,
                        struct ng_senders *senders);

/*
 * Gives the plugins an HTTP client for host->http_request (core/httpc.h); without one that service
 * answers -ENOSYS. The client must stay open until the host has closed.
 */
void ng_plugin_host_set_httpc(struct ng_plugin_host *h, struct ng_httpc *httpc);

/*
 * Where the reports of plugins go (ABI 1.1: host->report_status, report_consent, report_event):
 * the daemon's intake and dispatcher register these. Each receiver gets the instance and the
 * report (valid during the call only: copy what you keep) and either returns 0 and calls
 * done(done_arg, status) exactly once — 0 when recorded (committed), else a negative errno value —
 * at any time, even before returning; or returns a negative errno value and never calls done. A
 * NULL receiver makes that service answer -ENOSYS. The host stays open until every done has come.
 */
struct ng_plugin_reports {
	void *ctx;
	int (*status)(void *ctx, struct ng_plugin *p, const struct nudge_status_report *r,
	              void (*done)(void *done_arg, int status), void *done_arg);
	int (*consent)(void *ctx, struct ng_plugin *p, const struct nudge_consent_report *r,
	               void (*done)(void *done_arg, int status), void *done_arg);
	int (*event)(void *ctx, struct ng_plugin *p, const struct nudge_event_report *r,
	             void (*done)(void *done_arg, int status), void *done_arg);
};
void ng_plugin_host_set_reports(struct ng_plugin_host *h, const struct ng_plugin_reports *r);

/*
 * Loads every spec from dir (dir/PLUGIN.so) and starts it. A spec that cannot be loaded — file
 * missing, no entry symbol, wrong ABI major, descriptor too small, duplicate instance name, bad
 * config, init refused — is logged as one sentence naming the file and the problem, handed to
 * refused(arg, sentence) if given, and skipped; the others keep loading. Returns how many loaded.
 */
int ng_plugin_host_load(struct ng_plugin_host *h, const char *dir,
                        const struct ng_plugin_spec *specs, size_t n,
                        void (*refused)(void *arg, const char *sentence), void *arg);

/* The same for the `channels` list of a loaded configuration, from `paths.plugins` or the default
 * directory (ng_plugin_default_dir). */
int ng_plugin_host_load_conf(struct ng_plugin_host *h, const struct ng_conf *conf,
                             void (*refused)(void *arg, const char *sentence), void *arg);

/* Where plugins live when paths.plugins is unset: $NUDGE_PLUGINS_DIR, else plugins/ beside the
 * binary (.build/plugins), else PREFIX/lib/nudge/plugins. Malloc'd; NULL if none exists. */
char *ng_plugin_default_dir(void);

/*
 * Stops every instance (each plugin's shutdown), gives back every send still outstanding as a
 * retry, waits for sender-thread work of the plugins, unloads the files, then calls closed(arg)
 * and frees the host. Sends are refused with -ESHUTDOWN from the start of the close.
 */
void ng_plugin_host_close(struct ng_plugin_host *h, void (*closed)(void *arg), void *arg);

size_t ng_plugin_count(const struct ng_plugin_host *h);
struct ng_plugin *ng_plugin_at(struct ng_plugin_host *h, size_t i);
struct ng_plugin *ng_plugin_find(struct ng_plugin_host *h, const char *name);
/* The first instance (in configuration order) serving channel, or NULL. */
struct ng_plugin *ng_plugin_for_channel(struct ng_plugin_host *h, const char *channel);

const char *ng_plugin_name(const struct ng_plugin *p);
const char *ng_plugin_channel(const struct ng_plugin *p);
const char *ng_plugin_path(const struct ng_plugin *p);
const struct nudge_plugin *ng_plugin_descriptor(const struct ng_plugin *p);

typedef void ng_plugin_send_done_fn(void *arg, const struct nudge_send_result *result);

/*
 * Sends msg through p (msg must stay valid until done). Returns 0 and calls done(arg, result) once,
 * later, on the loop — the result's strings live until done returns — or returns -ESHUTDOWN and
 * never calls done. A plugin that completes from inside its send, or hands back a malformed result,
 * is logged and its completion corrected (deferred to the next loop turn; turned into a retry).
 */
int ng_plugin_send(struct ng_plugin *p, const struct nudge_message *msg,
                   ng_plugin_send_done_fn *done, void *arg);

/*
 * Asks p whether the provider has a message whose last attempt was NUDGE_SEND_AMBIGUOUS (ABI 1.1
 * reconcile), with the same guarantees as ng_plugin_send: SENT (it has it), RETRY (it does not:
 * safe to send again), FAILED, AMBIGUOUS (still unknown). -ENOTSUP when the plugin cannot reconcile
 * (ng_plugin_can_reconcile says so beforehand), -ESHUTDOWN while closing.
 */
int ng_plugin_reconcile(struct ng_plugin *p, const struct nudge_message *msg,
                        ng_plugin_send_done_fn *done, void *arg);
int ng_plugin_can_reconcile(const struct ng_plugin *p);

/* Hands a webhook call to p. Returns 0 and calls done once, or -ENOTSUP if p takes no webhooks,
 * or -ESHUTDOWN. The request must stay valid until done. */
int ng_plugin_inbound(struct ng_plugin *p, const struct nudge_inbound_request *req,
                      nudge_inbound_done_fn *done, void *arg);

/* The instance's health (NUDGE_HEALTH_OK when the plugin has no health callback). */
void ng_plugin_health(struct ng_plugin *p, struct nudge_health *out);

/*
 * Counters: the plugin's own (metric_add) and the host's per-result send counts, which are named
 * "sends_sent", "sends_retry", "sends_failed" and "sends_ambiguous". ng_plugin_metric gives 0 for a
 * counter never touched; ng_plugin_host_metrics emits every counter of every instance.
 */
int64_t ng_plugin_metric(struct ng_plugin *p, const char *name);
void ng_plugin_host_metrics(struct ng_plugin_host *h,
                            void (*emit)(void *arg, const char *instance, const char *name,
                                         int64_t value),
                            void *arg);

/* ---------------------------------------------------------------------------------------------
 * Internal: shared by plugin_loader.c and plugin_host.c only.
 */

/* One validated configuration value of an instance. */
struct ng_plugin_value {
	const struct nudge_config_key *key; /* in the plugin's descriptor */
	int set;                            /* written in nudge.conf.lua (else the default) */
	int has_value;                      /* set, or defaulted */
	char *str;
	int64_t i;
	double num;
	int b;
};

/* One loaded plugin file. */
struct ng_plugin_lib {
	char *path;
	void *dl;
	const struct nudge_plugin *desc;
	int refs; /* instances using it */
	struct ng_plugin_lib *next;
};

struct ng_plugin_metric {
	char name[64];
	int64_t value;
};

struct ng_plugin_op;
struct nudge_timer;
struct http_op;
struct report_op;

/* What a plugin holds as its `struct nudge_instance *`: the first member of struct ng_plugin. */
struct nudge_instance {
	uint32_t magic;
};
#define NG_PLUGIN_MAGIC 0x6e756467u /* "nudg" */

struct ng_plugin {
	struct nudge_instance self; /* first: the plugin's handle */
	struct ng_plugin_host *host;
	struct ng_plugin_lib *lib;
	char *name, *channel, *logmod;
	struct ng_plugin_value *values;
	size_t nvalues;
	void *state;                /* the plugin's, from init */
	int running;                /* init succeeded and shutdown has not been asked for */
	int stopping;               /* shutdown asked, not yet done */
	int stopped;                /* shutdown done */
	size_t jobs;                /* run_on_sender work not yet completed */
	struct ng_plugin_op *ops;   /* sends and webhook calls in flight */
	struct nudge_timer *timers; /* pending timers */
	struct http_op *https;      /* http_request calls in flight */
	struct report_op *reports;  /* report_* calls whose done has not come */
	pthread_mutex_t metrics_mu; /* metric_add may come from sender threads */
	struct ng_plugin_metric *metrics;
	size_t nmetrics, metrics_cap;
	struct ng_plugin *next;
};

struct ng_plugin_host {
	uv_loop_t *loop;
	struct ng_clock *clock;
	struct ng_senders *senders;
	struct ng_httpc *httpc; /* NULL: http_request answers -ENOSYS */
	struct ng_plugin_reports reports;
	struct ng_plugin *plugins; /* configuration order */
	size_t nplugins;
	struct ng_plugin_lib *libs;
	uv_timer_t kick; /* delivers completions a plugin made too early */
	int closing, close_started;
	void (*closed)(void *arg);
	void *closed_arg;
};

/* The services table every plugin receives (plugin_host.c). */
extern const struct nudge_host ng_plugin_services;

/* plugin_host.c: a new instance record (not yet in the host's list) and its teardown. */
struct ng_plugin *ng_plugin_new(struct ng_plugin_host *h, struct ng_plugin_lib *lib,
                                const char *name, const char *channel);
void ng_plugin_free(struct ng_plugin *p);

/* plugin_loader.c: drops an instance's reference to its file; the last one unloads it. */
void ng_plugin_lib_release(struct ng_plugin_host *h, struct ng_plugin_lib *lib);

#endif
