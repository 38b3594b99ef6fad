/*
 * cmd_suppress.c — `nudge suppress add|remove|list`: the suppression list by hand.
 *
 * An admin adds an address nobody may message (a complaint by phone, a legal request), lifts one
 * (a mailbox that bounced once is fixed), or lists them. Addresses are normalised the way intake
 * normalises them, and matched by their hash (ng_address_hash), so an erased customer's hashed
 * entry is found by the address too. The dispatcher's policy reads the same table before every
 * send, so an added address is skipped from the next claim on, by every workflow.
 */
#include "cli.h"
#include "identity.h"
#include "ng.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int normalise(const char *channel, const char *in, char *out, size_t outlen)
{
	const char *why = NULL;
	char buf[NG_IDENTITY_EMAIL_MAX];
	int rc = 0;
	if (strcmp(channel, "email") == 0)
		rc = ng_identity_email(in, buf, &why);
	else if (strcmp(channel, "sms") == 0)
		rc = ng_identity_phone(in, NULL, buf, &why);
	else
		snprintf(buf, sizeof buf, "%s", in);
	if (rc) {
		fprintf(stderr, "nudge: the %s %s %s\n",
		        strcmp(channel, "sms") ? "address" : "number", in,
		        why ? why : "is not valid");
		return -1;
	}
	snprintf(out, outlen, "%s", buf);
	return 0;
}

static int exec_print(PGconn *pg, const char *sql, int n, const char *const *p, int table)
{
	PGresult *r = PQexecParams(pg, sql, n, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(stderr, "nudge: %s", PQresultErrorMessage(r));
		PQclear(r);
		return 1;
	}
	if (table) {
		for (int f = 0; f < PQnfields(r); f++)
			printf("%s%s", f ? "\t" : "", PQfname(r, f));
		printf("\n");
	}
	for (int i = 0; i < PQntuples(r); i++) {
		for (int f = 0; f < PQnfields(r); f++)
			printf("%s%s", f ? "\t" : "", PQgetvalue(r, i, f));
		printf("\n");
	}
	PQclear(r);
	return 0;
}

int ng_cmd_suppress(int argc, char **argv)
{
	const char *op = NULL, *address = NULL, *channel = NULL, *reason = "manual";
	const char *config = NULL, *conninfo = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--channel") == 0 && i + 1 < argc)
			channel = argv[++i];
		else if (strcmp(argv[i], "--reason") == 0 && i + 1 < argc)
			reason = argv[++i];
		else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			config = argv[++i];
		else if (strcmp(argv[i], "--conninfo") == 0 && i + 1 < argc)
			conninfo = argv[++i];
		else if (!op && argv[i][0] != '-')
			op = argv[i];
		else if (!address && argv[i][0] != '-')
			address = argv[i];
		else
			return ng_cli_usage("suppress");
	}
	int list = op && strcmp(op, "list") == 0;
	if (!op || (!list && strcmp(op, "add") != 0 && strcmp(op, "remove") != 0) ||
	    (!list && (!address || !channel)) || (list && address))
		return ng_cli_usage("suppress");
	if (channel && strcmp(channel, "email") && strcmp(channel, "sms") &&
	    strcmp(channel, "messenger")) {
		fprintf(stderr, "nudge: --channel must be email, sms or messenger, not %s\n",
		        channel);
		return 2;
	}
	char norm[NG_IDENTITY_EMAIL_MAX];
	if (!list && normalise(channel, address, norm, sizeof norm) != 0)
		return 1;
	PGconn *pg = ng_cli_connect(config, conninfo);
	if (!pg)
		return 1;
	int rc;
	if (list) {
		const char *p[1] = {channel};
		rc = exec_print(
		    pg,
		    "SELECT channel, coalesce(address, '(erased: hash only)') AS address,"
		    " reason, source, created_at FROM suppressions"
		    " WHERE $1::text IS NULL OR channel = $1 ORDER BY created_at, id",
		    1, p, 1);
	} else if (strcmp(op, "add") == 0) {
		const char *p[3] = {channel, norm, reason};
		rc = exec_print(
		    pg,
		    "WITH i AS (INSERT INTO suppressions (channel, address, address_hash,"
		    " reason, source, customer_id) SELECT $1, $2, ng_address_hash($2), $3,"
		    " 'cli', (SELECT id FROM customers WHERE CASE $1 WHEN 'email' THEN email"
		    " WHEN 'sms' THEN phone ELSE messenger_psid END = $2)"
		    " ON CONFLICT (channel, address_hash) DO NOTHING RETURNING 1)"
		    " SELECT CASE WHEN count(*) = 1 THEN 'suppressed ' ELSE 'already "
		    "suppressed ' END || $1 || ' ' || $2 FROM i",
		    3, p, 0);
		/* Queued marketing to it is not cancelled here: the policy skips each message with
		 * its reason when it falls due, which keeps the history in one place. */
	} else {
		const char *p[2] = {channel, norm};
		rc = exec_print(
		    pg,
		    "WITH d AS (DELETE FROM suppressions WHERE channel = $1"
		    " AND address_hash = ng_address_hash($2) RETURNING reason)"
		    " SELECT CASE WHEN count(*) = 0 THEN 'not suppressed: ' ELSE"
		    " 'lifted (' || string_agg(reason, ',') || '): ' END || $1 || ' ' || $2"
		    " FROM d",
		    2, p, 0);
	}
	PQfinish(pg);
	return rc;
}
