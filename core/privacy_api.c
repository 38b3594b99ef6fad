/*
 * privacy_api.c — GET /v1/customers/<id>/export and POST /v1/customers/<id>/forget.
 *
 * The work is the SQL functions of sql/0006_privacy.sql, the same ones `nudge customer` runs, so
 * the two ways in can never erase different things. The answer is sent after the database answers:
 * a 200 to a forget means the erasure is committed.
 */
#include "privacy_api.h"
#include "httpd.h"
#include "ng.h"

#include <stdlib.h>
#include <string.h>

struct pending {
	struct ng_httpd_req *req;
	int forget;
};

/* Compares in time independent of where the first difference is. */
static int same_secret(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char diff = (unsigned char)(la != lb);
	for (size_t i = 0; i < la; i++)
		diff |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
	return diff == 0;
}

static void respond_json(struct ng_httpd_req *req, int status, const char *fmt, const char *arg)
{
	char *body = ng_xasprintf(fmt, arg);
	ng_httpd_respond(req, status, "application/json", body, strlen(body));
	free(body);
}

static void on_result(const struct ng_db_result *r, void *arg)
{
	struct pending *p = arg;
	if (r->status == NG_EDB) {
		ng_error("privacy", "%s failed: %s", p->forget ? "forget" : "export", r->message);
		respond_json(p->req, 500, "{\"error\":\"the database refused the request\"}", NULL);
	} else if (r->status != 0) {
		ng_httpd_add_header(p->req, "Retry-After", "5");
		respond_json(p->req, 503, "{\"error\":\"the database is unavailable: %s\"}",
		             ng_strerror(r->status));
	} else if (PQgetisnull(r->res, 0, 0)) {
		respond_json(p->req, 404, "{\"error\":\"no such customer\"}", NULL);
	} else {
		const char *doc = PQgetvalue(r->res, 0, 0);
		if (p->forget)
			ng_info("privacy", "customer erased over the admin API: %s", doc);
		ng_httpd_respond(p->req, 200, "application/json", doc, strlen(doc));
	}
	free(p);
}

/* "/v1/customers/123/export" → 123 and "export"; 0 when the path has another shape. */
static long long parse_path(const char *path, const char **op)
{
	const char *s = path + strlen("/v1/customers/");
	size_t digits = strspn(s, "0123456789");
	if (digits == 0 || digits > 18 || s[digits] != '/')
		return 0;
	*op = s + digits + 1;
	return atoll(s);
}

static void handle(struct ng_httpd_req *req, void *arg)
{
	struct ng_privacy_api *a = arg;
	const char *auth = ng_httpd_header(req, "Authorization");
	if (!auth || strncmp(auth, "Bearer ", 7) != 0 || !same_secret(auth + 7, a->admin_key)) {
		ng_httpd_add_header(req, "WWW-Authenticate", "Bearer");
		respond_json(req, 401,
		             "{\"error\":\"an admin key is required (Authorization: Bearer)\"}",
		             NULL);
		return;
	}
	const char *op = NULL;
	long long id = parse_path(ng_httpd_path(req), &op);
	int is_post = strcmp(ng_httpd_method(req), "POST") == 0;
	int forget = id && strcmp(op, "forget") == 0;
	if (!id || (!forget && strcmp(op, "export") != 0)) {
		respond_json(req, 404,
		             "{\"error\":\"use GET /v1/customers/<id>/export or POST "
		             "/v1/customers/<id>/forget\"}",
		             NULL);
		return;
	}
	if (forget != is_post) {
		ng_httpd_add_header(req, "Allow", forget ? "POST" : "GET");
		respond_json(req, 405, "{\"error\":\"%s\"}",
		             forget ? "forget takes POST" : "export takes GET");
		return;
	}
	char ids[24];
	snprintf(ids, sizeof ids, "%lld", id);
	const char *params[1] = {ids};
	struct pending *p = ng_xcalloc(1, sizeof *p);
	p->req = req;
	p->forget = forget;
	int rc = ng_db_query(a->db,
	                     forget ? "SELECT ng_customer_forget($1::bigint, 'api')"
	                            : "SELECT ng_customer_export($1::bigint)",
	                     1, params, on_result, p);
	if (rc) {
		free(p);
		ng_httpd_add_header(req, "Retry-After", "5");
		respond_json(req, 503, "{\"error\":\"%s\"}", ng_strerror(rc));
	}
}

void ng_privacy_routes(struct ng_privacy_api *a, struct ng_httpd *srv)
{
	if (!a->admin_key || !a->admin_key[0])
		return;
	ng_httpd_route(srv, "GET", "/v1/customers/*", handle, a);
	ng_httpd_route(srv, "POST", "/v1/customers/*", handle, a);
}
