/*
 * msg_view.h — "View in browser": GET /m/<token> renders an email that was sent again, from the
 * snapshot stored with it, for the person it was sent to. The token (core/links.h, kind view) is
 * the only way in: message ids alone open nothing. Messages that never went out, and customers
 * who were erased, answer 404.
 */
#ifndef NG_MSG_VIEW_H
#define NG_MSG_VIEW_H

#include "links.h"
#include "msgdata.h"

struct ng_msgtmpl_set;
struct ng_msg_view;

/* Registers GET /m/ on srv. templates (may be NULL: every page is then 404), store and l are
 * borrowed and outlive the server. */
struct ng_msg_view *ng_msg_view_routes(struct ng_httpd *srv, struct ng_link_routes *l,
                                       const struct ng_msgtmpl_set *templates,
                                       const struct ng_msgdata_store *store);
void ng_msg_view_free(struct ng_msg_view *v);

#endif
