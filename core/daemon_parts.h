/*
 * daemon_parts.h — the components `nudge serve` builds, in start order, and the routes that show
 * their state (/healthz).
 */
#ifndef NG_DAEMON_PARTS_H
#define NG_DAEMON_PARTS_H

#include <stddef.h>
#include <uv.h>

struct ng_conf;
struct ng_daemon;

struct ng_daemon_parts {
	struct ng_clock *clock;
	struct ng_db *db;
	struct ng_wf_part *wf;
	struct ng_httpd *httpd;
	struct ng_metrics *metrics;
	struct ng_admin *admin;
	struct ng_senders *senders;
	struct ng_plugin_host *plugins;
	struct ng_httpc *httpc;
	struct ng_privacy_api *privacy;
	struct ng_intake *intake;
	struct ng_dispatch_part *dispatch;
	struct ng_link_routes *links; /* what /u/, /c/ and /m/ need */
	struct ng_msg_view *view;     /* /m/: view in browser */
	unsigned char unsub_secret[256]; /* unsubscribe.secret, or random bytes per start */
	size_t unsub_secret_len;
	uint64_t started_ms;
	int schema_needed; /* the highest migration this nudge ships */
	int schema_behind; /* the database lacks some of them */
};

/*
 * Starts every component and registers it with the daemon (ng_daemon_add) as it goes, so a failure
 * part-way closes what did start. On failure returns a negative code and a sentence in err.
 */
int ng_daemon_parts_start(struct ng_daemon *d, uv_loop_t *loop, const struct ng_conf *conf,
			  struct ng_daemon_parts *parts, char *err, size_t errlen);

/* Frees what the parts keep beyond their components (after the loop has closed them all). */
void ng_daemon_parts_free(struct ng_daemon_parts *parts);

#endif
