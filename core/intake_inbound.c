/*
 * intake_inbound.c — POST|GET /v1/webhooks/<instance>[/more]: hands the raw request to a channel
 * plugin instance's inbound handler (Twilio status callbacks, Messenger webhooks) and relays its
 * answer. The plugin checks its provider's signature itself; nudge only routes.
 */
#include "httpd.h"
#include "intake.h"
#include "ng.h"
#include "plugin_host.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX "/v1/webhooks/"

struct inbound {
	struct ng_httpd_req *req;
	struct nudge_inbound_request ir;
	struct nudge_header *headers;
	char *rest, *url;
};

static void inbound_free(struct inbound *ib)
{
	free(ib->headers);
	free(ib->rest);
	free(ib->url);
	free(ib);
}

static void on_inbound_done(void *arg, const struct nudge_inbound_response *res)
{
	struct inbound *ib = arg;
	for (size_t i = 0; i < res->nheaders; i++)
		if (res->headers[i].name && res->headers[i].value)
			ng_httpd_add_header(ib->req, res->headers[i].name, res->headers[i].value);
	ng_httpd_respond(ib->req, res->status, res->content_type ? res->content_type : "text/plain",
	                 res->body ? res->body : "", res->body ? res->body_len : 0);
	inbound_free(ib);
}

static void answer(struct ng_httpd_req *req, int status, const char *text)
{
	ng_httpd_respond(req, status, "text/plain; charset=utf-8", text, strlen(text));
}

void ng_intake__plugin_route(struct ng_httpd_req *req, struct ng_plugin_host *plugins,
                             const char *base_url)
{
	const char *path = ng_httpd_path(req);
	const char *name = path + strlen(PREFIX);
	size_t nlen = strcspn(name, "/");
	char inst[128];
	if (!plugins || nlen == 0 || nlen >= sizeof inst) {
		answer(req, 404, "no such webhook\n");
		return;
	}
	memcpy(inst, name, nlen);
	inst[nlen] = '\0';
	struct ng_plugin *p = ng_plugin_find(plugins, inst);
	if (!p) {
		answer(req, 404, "no channel instance of that name\n");
		return;
	}
	struct inbound *ib = ng_xcalloc(1, sizeof *ib);
	ib->req = req;
	size_t nh = ng_httpd_header_count(req);
	ib->headers = ng_xcalloc(nh ? nh : 1, sizeof *ib->headers);
	for (size_t i = 0; i < nh; i++)
		ng_httpd_header_at(req, i, &ib->headers[i].name, &ib->headers[i].value);
	ib->rest = ng_xstrdup(name + nlen);
	const char *q = ng_httpd_query(req);
	const char *base = base_url ? base_url : "";
	size_t bl = strlen(base);
	while (bl > 0 && base[bl - 1] == '/')
		bl--;
	ib->url = ng_xasprintf("%.*s%s%s%s", (int)bl, base, path, *q ? "?" : "", q);
	size_t blen;
	const char *body = ng_httpd_body(req, &blen);
	ib->ir = (struct nudge_inbound_request){
	    .struct_size = sizeof ib->ir,
	    .method = ng_httpd_method(req),
	    .path = ib->rest,
	    .query = q,
	    .url = ib->url,
	    .headers = ib->headers,
	    .nheaders = nh,
	    .body = body ? body : "",
	    .body_len = blen,
	};
	int rc = ng_plugin_inbound(p, &ib->ir, on_inbound_done, ib);
	if (rc == 0)
		return;
	inbound_free(ib);
	if (rc == -ENOTSUP)
		answer(req, 404, "that channel instance takes no webhooks\n");
	else
		answer(req, 503, "that channel instance is shutting down\n");
}
