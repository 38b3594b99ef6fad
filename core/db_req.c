/*
 * db_req.c — one request of the pool: its copied statements, how it goes on the wire (pipelined,
 * one sync per request) and how its results become the one callback the caller gets.
 */
#include "db_int.h"

#include <stdio.h>
#include <stdlib.h>

#include <string.h>

struct ng_db_req *ng_db_req_new(enum ng_db_req_kind kind, const struct ng_db_stmt *stmts,
                                int nstmts)
{
	struct ng_db_req *req = ng_xcalloc(1, sizeof(*req));
	req->kind = kind;
	req->nstmts = nstmts;
	req->nqueries = nstmts;
	req->sql = ng_xcalloc((size_t)nstmts, sizeof(char *));
	req->nparams = ng_xcalloc((size_t)nstmts, sizeof(int));
	req->params = ng_xcalloc((size_t)nstmts, sizeof(char **));
	/* One more: an error the server reports at the sync itself (the implicit COMMIT failed). */
	req->results = ng_xcalloc((size_t)req->nqueries + 1, sizeof(PGresult *));
	req->wire = ng_xcalloc((size_t)req->nqueries * 2, sizeof(int));
	req->by_name = ng_xcalloc((size_t)req->nqueries, sizeof(int));
	for (int i = 0; i < nstmts; i++) {
		req->sql[i] = ng_xstrdup(stmts[i].sql);
		req->nparams[i] = stmts[i].nparams;
		if (stmts[i].nparams > 0) {
			req->params[i] = ng_xcalloc((size_t)stmts[i].nparams, sizeof(char *));
			for (int j = 0; j < stmts[i].nparams; j++)
				if (stmts[i].params[j])
					req->params[i][j] = ng_xstrdup(stmts[i].params[j]);
		}
	}
	return req;
}

void ng_db_req_free(struct ng_db_req *req)
{
	for (int i = 0; i < req->nstmts; i++) {
		free(req->sql[i]);
		for (int j = 0; j < req->nparams[i]; j++)
			free(req->params[i][j]);
		free(req->params[i]);
	}
	for (int i = 0; i <= req->nqueries; i++)
		PQclear(req->results[i]);
	free(req->sql);
	free(req->nparams);
	free(req->params);
	free(req->results);
	free(req->wire);
	free(req->by_name);
	free(req);
}

static int send_one(PGconn *pg, const char *sql, int nparams, char **params)
{
	return PQsendQueryParams(pg, sql, nparams, NULL, (const char *const *)params, NULL, NULL,
	                         0) == 1
	           ? 0
	           : -1;
}

/* One caller statement, by name when the connection has (or now prepares) it; see db_prep.c. */
static int send_stmt(struct ng_db_req *req, struct ng_db_conn *c, int slot, const char *sql,
                     int nparams, char **params)
{
	int fresh;
	int e = ng_db_prep_find(c, sql, &fresh);
	req->by_name[slot] = e + 1;
	if (e < 0) {
		req->wire[req->nwire++] = slot;
		return send_one(c->pg, sql, nparams, params);
	}
	char name[16];
	ng_db_prep_name(c, e, name, sizeof name);
	if (fresh) {
		if (PQsendPrepare(c->pg, name, sql, nparams, NULL) != 1)
			return -1;
		req->wire[req->nwire++] = -(e + 1);
	}
	req->wire[req->nwire++] = slot;
	return PQsendQueryPrepared(c->pg, name, nparams, (const char *const *)params, NULL, NULL,
	                           0) == 1
	           ? 0
	           : -1;
}

/*
 * Queues the request's messages in libpq's output buffer: the queries, then one sync. Everything
 * between two syncs is one implicit transaction: committed at the sync when every statement
 * succeeded, rolled back when one failed (the server skips the rest up to the sync). So a batch
 * needs no BEGIN and COMMIT, and a failed one leaves nothing behind for the requests pipelined
 * after it. Returns -1 when libpq refused (the connection is broken): the request's sync never
 * went out, so nothing of it can have committed and it may be queued again.
 */
int ng_db_req_send(struct ng_db_req *req, struct ng_db_conn *c)
{
	req->nwire = 0;
	req->done_queries = 0;
	for (int i = 0; i < req->nstmts; i++)
		if (send_stmt(req, c, i, req->sql[i], req->nparams[i], req->params[i]) < 0)
			return -1;
	return PQpipelineSync(c->pg) == 1 ? 0 : -1;
}

/* Copies a libpq message without its trailing newline; dflt when there is none. */
void ng_db_copy_message(char *dst, size_t cap, const char *src, const char *dflt)
{
	snprintf(dst, cap, "%s", src && *src ? src : dflt);
	size_t n = strlen(dst);
	while (n > 0 && (dst[n - 1] == '\n' || dst[n - 1] == ' '))
		dst[--n] = '\0';
}

static int result_ok(const PGresult *r)
{
	ExecStatusType st = PQresultStatus(r);
	return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
}

void ng_db_req_finish(ng_db *db, struct ng_db_conn *c, struct ng_db_req *req, int status,
                      const char *message)
{
	char msg[512], state[6] = "";
	struct ng_db_result r = {
	    .status = status,
	    .message = msg,
	    .sqlstate = state,
	    .nresults = req->nstmts,
	    .results = req->results,
	    .failed = -1,
	};

	ng_db_copy_message(msg, sizeof(msg), message, "");
	if (status == 0) {
		/* The first query that did not succeed decides; then the commit at the sync. */
		for (int i = 0; i <= req->nqueries; i++) {
			if (i == req->nqueries && !req->results[i])
				break;
			PGresult *pr = req->results[i];
			if (pr && result_ok(pr))
				continue;
			r.status = NG_EDB;
			r.res = pr;
			if (pr) {
				ng_db_copy_message(msg, sizeof(msg), PQresultErrorMessage(pr), "");
				const char *ss = PQresultErrorField(pr, PG_DIAG_SQLSTATE);
				snprintf(state, sizeof(state), "%s", ss ? ss : "");
			} else {
				ng_db_copy_message(msg, sizeof(msg), "no result from the server",
				                   "");
			}
			r.failed = i < req->nqueries ? i : req->nstmts - 1;
			break;
		}
		if (r.status == 0 && req->nstmts > 0)
			r.res = req->results[req->nstmts - 1];
	}

	if (req->kind == NG_DB_REQ_INTERNAL) {
		if (r.status != 0)
			ng_warn("db", "internal request \"%s\" failed: %s", req->sql[0], msg);
		if (req->internal_done)
			req->internal_done(c, req, r.status);
	} else {
		db->completed++;
		if (r.status != 0)
			db->errors++;
		req->cb(&r, req->arg);
	}
	ng_db_req_free(req);
}
