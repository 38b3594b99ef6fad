/*
 * msg_view.c — GET /m/<token>: an email as it was sent, in the browser (see msg_view.h).
 *
 * The render data is rebuilt the way the dispatcher built it (core/msgdata.c) from the row the
 * dispatcher sent, so the page shows what the inbox got, unsubscribe link included. The page
 * forbids scripts (Content-Security-Policy) whatever the data holds, and asks not to be indexed.
 */
#include "msg_view.h"
#include "httpd.h"
#include "msgtmpl.h"
#include "ng.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct ng_msg_view {
	struct ng_link_routes *links;
	const struct ng_msgtmpl_set *templates;
	struct ng_msgdata_store store;
};

struct view_req {
	struct ng_msg_view *v;
	struct ng_httpd_req *req;
	int64_t cid, mid;
};

static void not_found(struct ng_httpd_req *req)
{
	ng_link_page(req, 404, "Message not found",
	             "This message cannot be shown. It may have been removed at your request.",
	             NULL);
}

static void on_row(const struct ng_db_result *r, void *arg)
{
	struct view_req *q = arg;
	struct ng_httpd_req *req = q->req;
	if (r->status != 0) {
		ng_error("view", "loading message %lld failed: %s", (long long)q->mid, r->message);
		ng_link_page(req, 503, "Please try again",
		             "This message cannot be shown just now. Please try again in a minute.",
		             NULL);
		free(q);
		return;
	}
	if (!r->res || PQntuples(r->res) != 1 || !q->v->templates) {
		not_found(req);
		free(q);
		return;
	}
	PGresult *res = r->res;
	const char *tmpl = PQgetvalue(res, 0, 0);
	json_t *customer = json_loads(PQgetvalue(res, 0, 3), 0, NULL);
	char key[64];
	snprintf(key, sizeof key, NG_MSGDATA_KEY_FMT, (long long)q->cid, (long long)q->mid);
	const struct ng_msgdata_msg msg = {q->cid, q->mid, "email",
	                                   strcmp(PQgetvalue(res, 0, 2), "marketing") == 0, key};
	char err[256] = "";
	json_t *data =
	    ng_msgdata(&q->v->store, &msg, PQgetisnull(res, 0, 1) ? NULL : PQgetvalue(res, 0, 1),
	               customer, NULL, err, sizeof err);
	json_decref(customer);
	struct ng_rendered_message out = {0};
	int rc = data ? ng_msgtmpl_render(q->v->templates, tmpl, data, &out, err, sizeof err)
	              : UV_EINVAL; /* err says why */
	json_decref(data);
	if (rc || !out.html) {
		if (rc)
			ng_warn("view", "message %lld no longer renders: %s", (long long)q->mid,
			        err[0] ? err : ng_strerror(rc));
		not_found(req);
	} else {
		ng_httpd_add_header(req, "Cache-Control", "private, no-store");
		ng_httpd_add_header(req, "Content-Security-Policy",
		                    "default-src 'none'; img-src https: http: data:; "
		                    "style-src 'unsafe-inline'; form-action 'self'");
		ng_httpd_add_header(req, "X-Robots-Tag", "noindex");
		ng_httpd_respond(req, 200, "text/html; charset=utf-8", out.html, strlen(out.html));
	}
	ng_msgtmpl_rendered_free(&out);
	free(q);
}

static void view_page(struct ng_httpd_req *req, void *arg)
{
	struct ng_msg_view *v = arg;
	int64_t cid, mid;
	const char *channel;
	if (ng_link_request(v->links, req, NG_LINK_VIEW, &cid, &channel, &mid) != 0 ||
	    strcmp(channel, "email") != 0) {
		not_found(req);
		return;
	}
	struct view_req *q = ng_xcalloc(1, sizeof *q);
	*q = (struct view_req){v, req, cid, mid};
	char c[24], m[24];
	snprintf(c, sizeof c, "%lld", (long long)cid);
	snprintf(m, sizeof m, "%lld", (long long)mid);
	const char *p[2] = {c, m};
	/* The customer object as the claim gives it to the dispatcher (sql/0007). */
	int rc = ng_db_query(v->links->db,
	                     "SELECT m.template, m.data, m.purpose,"
	                     " to_jsonb(k) - 'erased_at' - 'created_at' - 'updated_at' - 'birthday'"
	                     " FROM messages m JOIN customers k ON k.id = m.customer_id"
	                     " WHERE m.customer_id = $1 AND m.id = $2 AND m.channel = 'email'"
	                     " AND k.erased_at IS NULL"
	                     " AND m.status IN ('sending', 'sent', 'delivered', 'ambiguous')",
	                     2, p, on_row, q);
	if (rc) {
		struct ng_db_result r = {.status = rc, .message = ng_strerror(rc), .sqlstate = ""};
		on_row(&r, q);
	}
}

struct ng_msg_view *ng_msg_view_routes(struct ng_httpd *srv, struct ng_link_routes *l,
                                       const struct ng_msgtmpl_set *templates,
                                       const struct ng_msgdata_store *store)
{
	struct ng_msg_view *v = ng_xcalloc(1, sizeof *v);
	v->links = l;
	v->templates = templates;
	v->store = *store;
	ng_httpd_route(srv, "GET", "/m/*", view_page, v);
	return v;
}

void ng_msg_view_free(struct ng_msg_view *v)
{
	free(v);
}
