/*
 * privacy_api.h — the admin HTTP API for the privacy operations:
 *
 *   GET  /v1/customers/<id>/export   everything held about the customer, as JSON
 *   POST /v1/customers/<id>/forget   erase the customer (as `nudge customer forget`)
 *
 * Both need `Authorization: Bearer <admin.api_key>`; without a configured key the routes are not
 * served at all (404), so a daemon never exposes personal data by default.
 */
#ifndef NG_PRIVACY_API_H
#define NG_PRIVACY_API_H

#include "db.h"

struct ng_httpd;

struct ng_privacy_api {
	ng_db *db;
	const char *admin_key; /* owned by the configuration; outlives the listener */
};

void ng_privacy_routes(struct ng_privacy_api *a, struct ng_httpd *srv);

#endif
