/*
 * db_listen.c — LISTEN/NOTIFY on a dedicated connection, started by the first ng_db_listen. The
 * connection is a pool connection that takes no queries; after every (re)connect each channel is
 * LISTENed again and its callback told so (payload NULL), because notifications sent while it was
 * down are lost.
 *
 * LISTEN takes an identifier, not a parameter, so the channel is quoted with PQescapeIdentifier:
 * the one statement here not sent with parameters.
 */
#include "db_int.h"

#include <stdio.h>
#include <stdlib.h>

#include <errno.h>
#include <string.h>

int ng_db_listen(ng_db *db, const char *channel, ng_db_notify_cb cb, void *arg)
{
	if (!db || !channel || !*channel || !cb)
		return -EINVAL;
	if (db->closing)
		return NG_ECLOSING;
	struct ng_db_channel *ch = ng_xcalloc(1, sizeof(*ch));
	ch->name = ng_xstrdup(channel);
	ch->cb = cb;
	ch->arg = arg;
	struct ng_db_channel **tail = &db->channels;
	while (*tail)
		tail = &(*tail)->next;
	*tail = ch;
	if (!db->listen_conn) {
		db->listen_conn = ng_xcalloc(1, sizeof(*db->listen_conn));
		ng_db_conn_init(db, db->listen_conn, -1);
		db->listen_conn->listener = 1;
		ng_db_conn_start(db->listen_conn);
	}
	ng_db_schedule(db);
	return 0;
}

static void listen_done(struct ng_db_conn *c, struct ng_db_req *req, int status)
{
	NG_UNUSED(c);
	struct ng_db_channel *ch = req->internal_arg;
	if (status == 0) {
		ng_debug("db", "listening on \"%s\"", ch->name);
		ch->cb(ch->name, NULL, ch->arg);
	}
}

void ng_db_listen_send_pending(ng_db *db)
{
	struct ng_db_conn *c = db->listen_conn;
	if (!c || (c->state != NG_DBC_READY && c->state != NG_DBC_BUSY))
		return;
	for (struct ng_db_channel *ch = db->channels; ch; ch = ch->next) {
		if (ch->sent)
			continue;
		char *ident = PQescapeIdentifier(c->pg, ch->name, strlen(ch->name));
		if (!ident) {
			ng_warn("db", "cannot quote channel \"%s\": %s", ch->name,
			        PQerrorMessage(c->pg));
			ch->sent = 1; /* a bad name stays bad; don't retry it on every pass */
			continue;
		}
		char *sql = ng_xasprintf("LISTEN %s", ident);
		PQfreemem(ident);
		struct ng_db_stmt st = {sql, 0, NULL};
		struct ng_db_req *req = ng_db_req_new(NG_DB_REQ_INTERNAL, &st, 1);
		free(sql);
		req->internal_done = listen_done;
		req->internal_arg = ch;
		ch->sent = 1;
		if (ng_db_conn_submit(c, req) < 0)
			return; /* lost: every channel is sent again after the reconnect */
	}
	if (c->unflushed)
		ng_db_conn_flush(c);
}

void ng_db_listen_reset(ng_db *db)
{
	for (struct ng_db_channel *ch = db->channels; ch; ch = ch->next)
		ch->sent = 0;
}

void ng_db_listen_deliver(ng_db *db, PGconn *pg)
{
	PGnotify *n;
	while ((n = PQnotifies(pg))) {
		for (struct ng_db_channel *ch = db->channels; ch; ch = ch->next)
			if (ch->sent && strcmp(ch->name, n->relname) == 0)
				ch->cb(ch->name, n->extra, ch->arg);
		PQfreemem(n);
	}
}

void ng_db_listen_free(ng_db *db)
{
	while (db->channels) {
		struct ng_db_channel *next = db->channels->next;
		free(db->channels->name);
		free(db->channels);
		db->channels = next;
	}
	free(db->listen_conn);
	db->listen_conn = NULL;
}
