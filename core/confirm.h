/*
 * confirm.h — email double opt-in: the confirm link of the confirmation message and the routes
 * behind it. GET /c/<token> shows a page with one button (mail scanners that follow links change
 * nothing); POST /c/<token> turns the customer's pending email marketing consent into a grant
 * (source confirm_link, evidence ip, user agent, message id), and the marketing email held for
 * it goes out. sql/0011 holds the rules; tokens are core/links.h's, of kind confirm.
 */
#ifndef NG_CONFIRM_H
#define NG_CONFIRM_H

#include "links.h"

/* Registers GET and POST under /c/ on srv; l outlives the server. */
void ng_confirm_routes(struct ng_httpd *srv, struct ng_link_routes *l);

#endif
