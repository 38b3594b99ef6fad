/*
 * unsubscribe.c — unsubscribe links: the signed token the dispatcher puts in marketing mail
 * (List-Unsubscribe and the data's unsubscribe_url), and the routes behind it.
 *
 *   GET  /u/<token>  a small page naming the store, with one button that POSTs back here
 *   POST /u/<token>  RFC 8058 one-click (and the page's button): 200, no redirect. In one
 *                    transaction a consents row withdraws marketing consent for the channel
 *                    (source unsubscribe_link, evidence ip, user agent, message id) and every
 *                    queued marketing message of that customer on that channel is skipped with
 *                    the reason.
 *
 * The token holds ids only and a MAC (core/links.h); a bad or forged token gets 400 and changes
 * nothing. Repeating the POST is harmless: consent already withdrawn is not withdrawn again.
 */
#include "unsubscribe.h"
#include "httpd.h"
#include "ng.h"

#include <stdlib.h>
#include <string.h>

static const char button[] = "<input type=\"hidden\" name=\"List-Unsubscribe\" "
                             "value=\"One-Click\"><button type=\"submit\">Unsubscribe</button>";

static const char bad_link[] =
    "This unsubscribe link is not valid. Use the link in the message itself.";

static void unsubscribe_page(struct ng_httpd_req *req, void *arg)
{
	struct ng_link_routes *u = arg;
	int64_t cid, mid;
	const char *channel;
	if (ng_link_request(u, req, NG_LINK_UNSUBSCRIBE, &cid, &channel, &mid) != 0) {
		ng_link_page(req, 400, "Link not valid", bad_link, NULL);
		return;
	}
	char name[512], text[1024];
	ng_link_html_escape(name, sizeof name, u->store_name);
	snprintf(text, sizeof text,
	         "Stop receiving marketing %s from %s? Messages about your orders still arrive.",
	         strcmp(channel, "email") == 0 ? "email" : "messages", name);
	ng_link_page(req, 200, "Unsubscribe", text, button);
}

static void on_withdrawn(const struct ng_db_result *r, void *arg)
{
	struct ng_httpd_req *req = arg;
	/* 23503: the customer is gone (erased): nothing left to unsubscribe. */
	if (r->status != 0 && strcmp(r->sqlstate, "23503") != 0) {
		ng_error("unsubscribe", "recording an unsubscribe failed: %s", r->message);
		ng_link_page(
		    req, 503, "Please try again",
		    "We could not record your request just now. Please try again in a minute.",
		    button);
		return;
	}
	if (r->status == 0 && r->nresults == 2)
		ng_info("unsubscribe",
		        "marketing consent withdrawn; %d queued message(s) cancelled",
		        atoi(PQcmdTuples(r->results[1])));
	ng_link_page(req, 200, "You are unsubscribed",
	             "You will receive no more marketing messages from us on this channel.", NULL);
}

static void unsubscribe_post(struct ng_httpd_req *req, void *arg)
{
	struct ng_link_routes *u = arg;
	int64_t cid, mid;
	const char *channel;
	if (ng_link_request(u, req, NG_LINK_UNSUBSCRIBE, &cid, &channel, &mid) != 0) {
		ng_link_page(req, 400, "Link not valid", bad_link, NULL);
		return;
	}
	char *evidence = ng_link_evidence(req, mid, "one-click");
	char c[24];
	snprintf(c, sizeof c, "%lld", (long long)cid);
	const char *p1[3] = {c, channel, evidence};
	const char *p2[2] = {c, channel};
	struct ng_db_stmt st[2] = {
	    {"INSERT INTO consents (customer_id, channel, purpose, status, source, evidence)"
	     " SELECT $1, $2, 'marketing', 'withdrawn', 'unsubscribe_link', $3::jsonb"
	     " WHERE NOT EXISTS (SELECT 1 FROM consent_current k WHERE k.customer_id = $1"
	     "  AND k.channel = $2 AND k.purpose = 'marketing' AND k.status = 'withdrawn')",
	     3, p1},
	    {"UPDATE messages SET status = 'skipped', updated_at = now(),"
	     " last_error = 'unsubscribed: the recipient used the unsubscribe link'"
	     " WHERE customer_id = $1 AND channel = $2 AND purpose = 'marketing'"
	     " AND status IN ('queued', 'retry', 'deferred')",
	     2, p2},
	};
	int rc = ng_db_batch(u->db, st, 2, on_withdrawn, req);
	free(evidence);
	if (rc) {
		struct ng_db_result r = {.status = rc, .message = ng_strerror(rc), .sqlstate = ""};
		on_withdrawn(&r, req);
	}
}

void ng_unsubscribe_routes(struct ng_httpd *srv, struct ng_link_routes *l)
{
	ng_httpd_route(srv, "GET", "/u/*", unsubscribe_page, l);
	ng_httpd_route(srv, "POST", "/u/*", unsubscribe_post, l);
}
