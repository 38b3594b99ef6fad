/*
 * db_pipeline.c — the request traffic of one connected connection in pipeline mode: choosing
 * whether it takes more work, putting requests on the wire, flushing, and reading the results back
 * in order (the in-flight FIFO). A batch is the implicit transaction between two syncs
 * (db_req.c), so a failed one leaves nothing behind for the requests after it.
 */
#include "db_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ng_db_conn_can_take(const struct ng_db_conn *c)
{
	return (c->state == NG_DBC_READY || c->state == NG_DBC_BUSY) && !c->listener &&
	       c->inflight < c->db->opt.pipeline_depth;
}

/*
 * Puts a request on the wire (libpq's buffer; ng_db_conn_flush pushes it). On failure the
 * connection is lost; the request's sync never went out, so a caller's request is queued again.
 */
int ng_db_conn_submit(struct ng_db_conn *c, struct ng_db_req *req)
{
	ng_db *db = c->db;
	if (ng_db_req_send(req, c) < 0) {
		char msg[512];
		ng_db_copy_message(msg, sizeof(msg), PQerrorMessage(c->pg), "unknown error");
		if (req->kind == NG_DB_REQ_INTERNAL) {
			ng_db_req_free(req);
		} else if (PQstatus(c->pg) == CONNECTION_OK) {
			/*
			 * libpq refused this request itself (not the connection): queueing it again
			 * would loop. Fail it; the connection, with half a request in its buffer,
			 * is reset below.
			 */
			ng_db_req_finish(db, c, req, NG_EDB, msg);
		} else {
			req->next = db->queue_head;
			db->queue_head = req;
			if (!db->queue_tail)
				db->queue_tail = req;
			db->queued++;
		}
		ng_db_conn_lost(c, msg);
		return -1;
	}
	req->next = NULL;
	if (c->inflight_tail)
		c->inflight_tail->next = req;
	else
		c->inflight_head = req;
	c->inflight_tail = req;
	c->inflight++;
	c->unflushed = 1;
	ng_db_conn_set_state(c, NG_DBC_BUSY);
	return 0;
}

/* PQflush; while it returns 1 the socket is also watched for writable. */
int ng_db_conn_flush(struct ng_db_conn *c)
{
	int r = PQflush(c->pg);
	if (r < 0) {
		ng_db_conn_lost(c, PQerrorMessage(c->pg));
		return -1;
	}
	c->unflushed = 0;
	c->flushing = r == 1;
	return ng_db_conn_watch(c);
}

/*
 * Reads every complete result, in order. libpq returns each query's results then NULL, and a
 * PGRES_PIPELINE_SYNC (with no NULL after it) per sync: the sync ends the request at the head of
 * the in-flight FIFO. Returns -1 when the connection was lost.
 */
int ng_db_conn_read(struct ng_db_conn *c)
{
	/*
	 * Once the connection is bad PQisBusy is false: what arrived before the break is still
	 * returned (those requests did complete), then an error result and NULLs; the loop ends on
	 * the head waiting for a sync that will never come, and the caller sees CONNECTION_BAD.
	 */
	while (c->inflight_head) {
		if (PQisBusy(c->pg))
			break;
		struct ng_db_req *req = c->inflight_head;
		PGresult *r = PQgetResult(c->pg);
		if (!r) {
			if (req->done_queries < req->nwire) {
				req->done_queries++;
				continue;
			}
			if (req->results[req->nqueries] && !req->commit_error_ended) {
				/* libpq ends the failed commit's error with a NULL of its own. */
				req->commit_error_ended = 1;
				continue;
			}
			break; /* the sync has not arrived yet */
		}
		if (PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
			if (req->done_queries < req->nwire) {
				int w = req->wire[req->done_queries];
				int slot = w >= 0 ? w : req->wire[req->done_queries + 1];
				if (w < 0)
					ng_db_prep_result(c, -w - 1, r);
				PGresult *old = req->results[slot];
				if (w < 0 && PQresultStatus(r) == PGRES_COMMAND_OK) {
					PQclear(r); /* a Parse that worked says nothing */
				} else if (old && PQresultStatus(old) != PGRES_COMMAND_OK &&
				           PQresultStatus(old) != PGRES_TUPLES_OK &&
				           PQresultStatus(r) == PGRES_PIPELINE_ABORTED) {
					PQclear(r); /* keep the Parse's error, not "aborted" */
				} else {
					/* Only the last result of a query is kept. */
					PQclear(old);
					req->results[slot] = r;
					if (w >= 0 && req->by_name[slot] &&
					    PQresultStatus(r) == PGRES_FATAL_ERROR)
						ng_db_prep_check(c, req->by_name[slot] - 1, r);
				}
			} else if (PQstatus(c->pg) == CONNECTION_OK &&
			           PQresultStatus(r) == PGRES_FATAL_ERROR &&
			           !req->results[req->nqueries]) {
				/* The implicit COMMIT at the sync failed: the request did not
				 * commit. */
				req->results[req->nqueries] = r;
			} else {
				/* libpq's own "connection lost" result, after the query's NULL. */
				if (PQstatus(c->pg) == CONNECTION_OK)
					ng_warn("db", "conn %d: unexpected result %s", c->index,
					        PQresStatus(PQresultStatus(r)));
				PQclear(r);
			}
			continue;
		}
		PQclear(r);
		c->inflight_head = req->next;
		if (!c->inflight_head)
			c->inflight_tail = NULL;
		c->inflight--;
		req->next = NULL;
		if (c->inflight == 0)
			ng_db_conn_set_state(c, NG_DBC_READY);
		ng_db_req_finish(c->db, c, req, 0, NULL);
		if (c->state != NG_DBC_READY && c->state != NG_DBC_BUSY)
			return -1; /* the connection was lost sending the callback's work */
	}
	return 0;
}
