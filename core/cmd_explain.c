/*
 * cmd_explain.c — `nudge why MESSAGE` and `nudge trace CUSTOMER`: every decision nudge made about
 * one message or one customer, in time order, in words an admin or a marketer can read.
 *
 * Both read only what the daemon records anyway (events, instances, the effect journal, messages,
 * their attempts, consent and suppressions), so an explanation is never a second bookkeeping that
 * could disagree with what happened.
 */
#include "cli.h"
#include "ng.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * One timeline: (at, what, detail) rows of one customer, optionally narrowed to one message.
 * $1 customer id, $2 message id or NULL.
 */
static const char timeline_sql[] =
    "WITH m AS ("
    "  SELECT * FROM messages WHERE customer_id = $1 AND ($2::bigint IS NULL OR id = $2)"
    "), i AS ("
    "  SELECT * FROM instances WHERE customer_id = $1"
    "     AND ($2::bigint IS NULL OR id IN (SELECT instance_id FROM m))"
    ") "
    "SELECT at, what, detail FROM ("
    /* Events: only on a customer's trace, and the one that started a message's instance. */
    "  SELECT e.occurred_at AS at, 'event' AS what,"
    "         e.type || ' from ' || e.source || ' (event ' || e.id || ')' AS detail, 1 AS o"
    "    FROM events e WHERE e.customer_id = $1"
    "     AND ($2::bigint IS NULL OR e.id IN (SELECT trigger_event_id FROM i))"
    "  UNION ALL"
    "  SELECT i.created_at, 'workflow', i.workflow || ' instance ' || i.id || ' started (version '"
    "         || i.version || ')', 2 FROM i"
    "  UNION ALL"
    "  SELECT COALESCE(i.finished_at, i.updated_at), 'workflow', i.workflow || ' instance ' || i.id"
    "         || ' ' || i.status || COALESCE(': ' || i.error, ''), 9 FROM i"
    "   WHERE i.status IN ('completed', 'exited', 'failed', 'parked', 'cancelled')"
    "  UNION ALL"
    "  SELECT f.created_at, 'step', i.workflow || ' instance ' || i.id || ' step ' || f.seq || ': '"
    "         || f.kind || CASE f.kind"
    "           WHEN 'send' THEN ' ' || COALESCE(f.args->>'channel', '') || ' '"
    "                || COALESCE(f.args->>'template', '')"
    "           WHEN 'wait' THEN ' ' || COALESCE(f.args->>'duration', f.args::text)"
    "           WHEN 'wait_for' THEN ' ' || COALESCE(f.args->>'event', '') ||"
    "                CASE WHEN f.result ? 'event' THEN ' (arrived)'"
    "                     WHEN (f.result->>'timeout')::boolean THEN ' (timed out)' ELSE '' END"
    "           WHEN 'split' THEN ' → ' || COALESCE(f.result->>'variant', '')"
    "           ELSE '' END, 3"
    "    FROM effects f JOIN i ON i.customer_id = f.customer_id AND i.id = f.instance_id"
    "   WHERE f.customer_id = $1"
    "  UNION ALL"
    "  SELECT m.created_at, 'message', 'message ' || m.id || ' queued: ' || m.channel || ' '"
    "         || m.template || ' (' || m.purpose || COALESCE(', from ' || m.workflow, '') || ')', 4"
    "    FROM m"
    "  UNION ALL"
    "  SELECT COALESCE(a.finished_at, a.started_at), 'delivery', 'message ' || a.message_id"
    "         || ' attempt ' || a.attempt || ': ' || COALESCE(a.outcome, 'in progress')"
    "         || COALESCE(' as ' || a.provider_id, '') || COALESCE(' — ' || a.error, ''), 5"
    "    FROM message_attempts a JOIN m ON m.customer_id = a.customer_id AND m.id = a.message_id"
    "  UNION ALL"
    "  SELECT m.updated_at, 'message', 'message ' || m.id || ' is ' || m.status"
    "         || CASE WHEN m.status IN ('retry', 'deferred') THEN ' until ' || m.next_attempt_at"
    "                 ELSE '' END || COALESCE(': ' || m.last_error, ''), 6"
    "    FROM m"
    "  UNION ALL"
    "  SELECT k.recorded_at, 'consent', k.channel || ' ' || k.purpose || ' ' || k.status || ' "
    "(source '"
    "         || k.source || ')', 0 FROM consents k WHERE k.customer_id = $1"
    "  UNION ALL"
    "  SELECT s.created_at, 'suppressed', s.channel || ' address suppressed: ' || s.reason"
    "         || ' (source ' || s.source || ')', 0"
    "    FROM suppressions s, customers c"
    "   WHERE c.id = $1 AND (s.customer_id = c.id"
    "      OR (s.channel = 'email' AND s.address_hash = ng_address_hash(c.email))"
    "      OR (s.channel = 'sms' AND s.address_hash = ng_address_hash(c.phone))"
    "      OR (s.channel = 'messenger' AND s.address_hash = ng_address_hash(c.messenger_psid)))"
    ") t ORDER BY at, o";

static int print_timeline(PGconn *pg, const char *customer, const char *message)
{
	const char *p[2] = {customer, message};
	PGresult *r = PQexecParams(pg, timeline_sql, 2, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(stderr, "nudge: %s", PQresultErrorMessage(r));
		PQclear(r);
		return 1;
	}
	for (int i = 0; i < PQntuples(r); i++)
		printf("%-32s %-10s %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
		       PQgetvalue(r, i, 2));
	PQclear(r);
	return 0;
}

/* Parses `CMD ID [--config F | --conninfo C]`; returns the id or NULL (usage). */
static const char *parse_args(int argc, char **argv, const char **config, const char **conninfo)
{
	const char *id = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			*config = argv[++i];
		else if (strcmp(argv[i], "--conninfo") == 0 && i + 1 < argc)
			*conninfo = argv[++i];
		else if (!id && argv[i][0] && strspn(argv[i], "0123456789") == strlen(argv[i]))
			id = argv[i];
		else
			return NULL;
	}
	return id;
}

int ng_cmd_why(int argc, char **argv)
{
	const char *config = NULL, *conninfo = NULL;
	const char *id = parse_args(argc, argv, &config, &conninfo);
	if (!id)
		return ng_cli_usage("why");
	PGconn *pg = ng_cli_connect(config, conninfo);
	if (!pg)
		return 1;
	const char *p[1] = {id};
	PGresult *r = PQexecParams(pg,
	                           "SELECT customer_id, channel, template, status FROM messages "
	                           "WHERE id = $1",
	                           1, NULL, p, NULL, NULL, 0);
	int rc = 1;
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fprintf(stderr, "nudge: %s", PQresultErrorMessage(r));
	else if (PQntuples(r) == 0)
		fprintf(stderr, "nudge: no message %s\n", id);
	else {
		printf("message %s: %s %s to customer %s, now %s\n", id, PQgetvalue(r, 0, 1),
		       PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 3));
		rc = print_timeline(pg, PQgetvalue(r, 0, 0), id);
	}
	PQclear(r);
	PQfinish(pg);
	return rc;
}

int ng_cmd_trace(int argc, char **argv)
{
	const char *config = NULL, *conninfo = NULL;
	const char *id = parse_args(argc, argv, &config, &conninfo);
	if (!id)
		return ng_cli_usage("trace");
	PGconn *pg = ng_cli_connect(config, conninfo);
	if (!pg)
		return 1;
	const char *p[1] = {id};
	PGresult *r = PQexecParams(pg,
	                           "SELECT CASE WHEN erased_at IS NULL THEN 'customer' ELSE "
	                           "'erased customer' END FROM customers WHERE id = $1",
	                           1, NULL, p, NULL, NULL, 0);
	int rc = 1;
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fprintf(stderr, "nudge: %s", PQresultErrorMessage(r));
	else if (PQntuples(r) == 0)
		fprintf(stderr, "nudge: no customer %s\n", id);
	else {
		printf("%s %s\n", PQgetvalue(r, 0, 0), id);
		rc = print_timeline(pg, id, NULL);
	}
	PQclear(r);
	PQfinish(pg);
	return rc;
}
