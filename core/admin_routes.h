/*
 * admin_routes.h — GET /healthz and GET /metrics.
 */
#ifndef NG_ADMIN_ROUTES_H
#define NG_ADMIN_ROUTES_H

#include <stdint.h>

struct ng_httpd;

/* What the admin routes read; owned by the daemon's parts. */
struct ng_admin {
	struct ng_daemon *daemon;
	struct ng_clock *clock;
	struct ng_db *db;
	struct ng_senders *senders;
	struct ng_metrics *metrics;
	int64_t started_ms;
	struct ng_httpc *httpc; /* NULL: no HTTP client metrics */
	struct ng_intake *intake; /* NULL when there is none */
};

void ng_admin_routes(struct ng_admin *a, struct ng_httpd *srv);

#endif
