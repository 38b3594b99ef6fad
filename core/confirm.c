/*
 * confirm.c — GET and POST /c/<token>: confirming an email subscription (see confirm.h).
 *
 * The decision is ng_consent_confirm (sql/0011), one statement: a grant is recorded only while
 * the consent in force is pending, so a link from an old confirmation cannot undo a later
 * unsubscribe, and a second click records nothing new.
 */
#include "confirm.h"
#include "httpd.h"
#include "ng.h"

#include <stdlib.h>
#include <string.h>

static const char button[] = "<button type=\"submit\">Yes, subscribe me</button>";

static void confirm_page(struct ng_httpd_req *req, void *arg)
{
	struct ng_link_routes *l = arg;
	int64_t cid, mid;
	const char *channel;
	if (ng_link_request(l, req, NG_LINK_CONFIRM, &cid, &channel, &mid) != 0) {
		ng_link_page(
		    req, 400, "Link not valid",
		    "This confirmation link is not valid. Use the link in the message itself.",
		    NULL);
		return;
	}
	char name[512], text[1024];
	ng_link_html_escape(name, sizeof name, l->store_name);
	snprintf(text, sizeof text,
	         "Confirm that you want news and offers from %s by email. You can unsubscribe at "
	         "any time with the link in every message.",
	         name);
	ng_link_page(req, 200, "Confirm your subscription", text, button);
}

static void on_confirmed(const struct ng_db_result *r, void *arg)
{
	struct ng_httpd_req *req = arg;
	const char *outcome =
	    r->status == 0 && r->res && PQntuples(r->res) == 1 ? PQgetvalue(r->res, 0, 0) : NULL;
	/* 23503: the customer is gone (erased): there is nothing to confirm. */
	if (r->status != 0 && strcmp(r->sqlstate, "23503") == 0)
		outcome = "not_pending";
	if (!outcome) {
		ng_error("confirm", "recording a subscription confirmation failed: %s", r->message);
		ng_link_page(
		    req, 503, "Please try again",
		    "We could not record your confirmation just now. Please try again in a minute.",
		    button);
		return;
	}
	if (strcmp(outcome, "confirmed") == 0) {
		ng_info("confirm", "email subscription confirmed");
		ng_link_page(
		    req, 200, "Subscription confirmed",
		    "Thank you. You will receive our news and offers by email; every message "
		    "has a link to unsubscribe.",
		    NULL);
	} else if (strcmp(outcome, "already") == 0) {
		ng_link_page(
		    req, 200, "Already confirmed",
		    "Your subscription was confirmed already. There is nothing more to do.", NULL);
	} else {
		/* Withdrawn since, or never asked for: only a new sign-up may subscribe again. */
		ng_link_page(
		    req, 410, "Link no longer valid",
		    "This confirmation link is no longer valid. To subscribe, sign up again "
		    "on our site.",
		    NULL);
	}
}

static void confirm_post(struct ng_httpd_req *req, void *arg)
{
	struct ng_link_routes *l = arg;
	int64_t cid, mid;
	const char *channel;
	if (ng_link_request(l, req, NG_LINK_CONFIRM, &cid, &channel, &mid) != 0 ||
	    strcmp(channel, "email") != 0) {
		ng_link_page(
		    req, 400, "Link not valid",
		    "This confirmation link is not valid. Use the link in the message itself.",
		    NULL);
		return;
	}
	char *evidence = ng_link_evidence(req, mid, "confirm_link");
	char c[24];
	snprintf(c, sizeof c, "%lld", (long long)cid);
	const char *p[2] = {c, evidence};
	int rc =
	    ng_db_query(l->db, "SELECT ng_consent_confirm($1, $2::jsonb)", 2, p, on_confirmed, req);
	free(evidence);
	if (rc) {
		struct ng_db_result r = {.status = rc, .message = ng_strerror(rc), .sqlstate = ""};
		on_confirmed(&r, req);
	}
}

void ng_confirm_routes(struct ng_httpd *srv, struct ng_link_routes *l)
{
	ng_httpd_route(srv, "GET", "/c/*", confirm_page, l);
	ng_httpd_route(srv, "POST", "/c/*", confirm_post, l);
}
