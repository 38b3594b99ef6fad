/*
 * cmd_customer.c — `nudge customer export|forget WHO`: the privacy operations on one customer.
 *
 * WHO is a customer id, an email address or an E.164 phone number. The work itself is done by the
 * SQL functions ng_customer_export / ng_customer_forget (sql/0006_privacy.sql), so the command line
 * and the admin HTTP API (core/privacy_routes.c) erase exactly the same things.
 */
#include "cli.h"
#include "identity.h"
#include "ng.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Finds the customer id for WHO; 0 (after printing why) when there is none. */
static long long resolve(PGconn *pg, const char *who)
{
	const char *sql, *why = NULL;
	char norm[NG_IDENTITY_EMAIL_MAX];
	if (who[0] && strspn(who, "0123456789") == strlen(who))
		return atoll(who);
	if (strchr(who, '@')) {
		if (ng_identity_email(who, norm, &why) != 0) {
			fprintf(stderr, "nudge: the address '%s' %s\n", who, why);
			return 0;
		}
		sql = "SELECT id FROM customers WHERE email = $1";
	} else {
		if (ng_identity_phone(who, NULL, norm, &why) != 0) {
			fprintf(
			    stderr,
			    "nudge: '%s' is neither a customer id, an email address nor a phone "
			    "number\n",
			    who);
			return 0;
		}
		sql = "SELECT id FROM customers WHERE phone = $1";
	}
	const char *p[1] = {norm};
	PGresult *r = PQexecParams(pg, sql, 1, NULL, p, NULL, NULL, 0);
	long long id = 0;
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fprintf(stderr, "nudge: %s", PQresultErrorMessage(r));
	else if (PQntuples(r) == 0)
		fprintf(stderr, "nudge: no customer with %s %s\n",
		        strchr(who, '@') ? "email" : "phone", norm);
	else
		id = atoll(PQgetvalue(r, 0, 0));
	PQclear(r);
	return id;
}

/* Runs fn(id) and prints its jsonb result indented; 1 when there is no such customer. */
static int run_json(PGconn *pg, const char *sql, long long id)
{
	char ids[24];
	snprintf(ids, sizeof ids, "%lld", id);
	const char *p[1] = {ids};
	PGresult *r = PQexecParams(pg, sql, 1, NULL, p, NULL, NULL, 0);
	int rc = 0;
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(stderr, "nudge: %s", PQresultErrorMessage(r));
		rc = 1;
	} else if (PQgetisnull(r, 0, 0)) {
		fprintf(stderr, "nudge: no customer %lld\n", id);
		rc = 1;
	} else {
		json_error_t jerr;
		json_t *doc = json_loads(PQgetvalue(r, 0, 0), 0, &jerr);
		char *out = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
		printf("%s\n", out ? out : PQgetvalue(r, 0, 0));
		free(out);
		json_decref(doc);
	}
	PQclear(r);
	return rc;
}

int ng_cmd_customer(int argc, char **argv)
{
	const char *op = NULL, *who = NULL, *config = NULL, *conninfo = NULL;
	int yes = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			config = argv[++i];
		else if (strcmp(argv[i], "--conninfo") == 0 && i + 1 < argc)
			conninfo = argv[++i];
		else if (strcmp(argv[i], "--yes") == 0)
			yes = 1;
		else if (!op && argv[i][0] != '-')
			op = argv[i];
		else if (!who && argv[i][0] != '-')
			who = argv[i];
		else
			return ng_cli_usage("customer");
	}
	if (!op || !who || (strcmp(op, "export") != 0 && strcmp(op, "forget") != 0))
		return ng_cli_usage("customer");
	int forget = strcmp(op, "forget") == 0;
	if (forget && !yes) {
		fprintf(stderr,
		        "nudge: `customer forget` erases %s's personal data from every table and "
		        "cannot be undone; run it again with --yes\n",
		        who);
		return 2;
	}
	PGconn *pg = ng_cli_connect(config, conninfo);
	if (!pg)
		return 1;
	long long id = resolve(pg, who);
	int rc = 1;
	if (id > 0)
		rc = run_json(pg,
		              forget ? "SELECT ng_customer_forget($1::bigint, 'cli')"
		                     : "SELECT ng_customer_export($1::bigint)",
		              id);
	PQfinish(pg);
	return rc;
}
