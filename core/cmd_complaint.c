/*
 * cmd_complaint.c — `nudge complaint FILE|-`: a complaint from a mailbox provider's feedback loop.
 *
 * Providers (Yahoo, Microsoft, Comcast…) send an ARF report (RFC 5965) to the address the admin
 * registered when someone presses "this is spam". Pipe each report into this command (from the
 * mail server: `| nudge complaint -`): it finds the message the report is about by our
 * Message-ID, or the reported recipient, and in one transaction suppresses the address (reason
 * complaint), withdraws the customer's email marketing consent and cancels their queued
 * marketing email (ng_record_complaint, sql/0011). A report that names neither is refused with
 * a sentence and exit status 1, so the mail server keeps it.
 */
#include "arf.h"
#include "cli.h"
#include "ng.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REPORT (16 << 20)

static char *slurp(FILE *f, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *buf = ng_xmalloc(cap + 1);
	size_t k;
	while ((k = fread(buf + n, 1, cap - n, f)) > 0) {
		n += k;
		if (n == cap) {
			if (cap >= MAX_REPORT)
				break;
			cap *= 2;
			buf = ng_xrealloc(buf, cap + 1);
		}
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

int ng_cmd_complaint(int argc, char **argv)
{
	const char *file = NULL, *config = NULL, *conninfo = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			config = argv[++i];
		else if (strcmp(argv[i], "--conninfo") == 0 && i + 1 < argc)
			conninfo = argv[++i];
		else if (!file && (argv[i][0] != '-' || strcmp(argv[i], "-") == 0))
			file = argv[i];
		else
			return ng_cli_usage("complaint");
	}
	if (!file)
		return ng_cli_usage("complaint");
	FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
	if (!f) {
		fprintf(stderr, "nudge: cannot read %s: %s\n", file, ng_strerror(-errno));
		return 1;
	}
	size_t len;
	char *text = slurp(f, &len);
	if (f != stdin)
		fclose(f);
	struct ng_arf arf;
	const char *why = NULL;
	int bad = ng_arf_parse(text, len, &arf, &why);
	free(text);
	if (bad) {
		fprintf(stderr, "nudge: %s: %s\n", strcmp(file, "-") ? file : "the report", why);
		return 1;
	}
	PGconn *pg = ng_cli_connect(config, conninfo);
	if (!pg)
		return 1;
	char c[24], m[24];
	snprintf(c, sizeof c, "%lld", (long long)arf.customer_id);
	snprintf(m, sizeof m, "%lld", (long long)arf.message_id);
	const char *p[4] = {arf.message_id ? c : NULL, arf.message_id ? m : NULL,
	                    arf.recipient[0] ? arf.recipient : NULL,
	                    arf.feedback_type[0] ? arf.feedback_type : NULL};
	PGresult *r = PQexecParams(pg,
	                           "SELECT address, customer_id, cancelled"
	                           " FROM ng_record_complaint($1, $2, $3, $4)",
	                           4, NULL, p, NULL, NULL, 0);
	int rc = 0;
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(stderr, "nudge: recording the complaint failed: %s",
		        PQresultErrorMessage(r));
		rc = 1;
	} else if (PQntuples(r) == 0) {
		fprintf(
		    stderr,
		    "nudge: the report is about message %s of customer %s, which nudge no longer "
		    "holds, and names no recipient: nothing suppressed\n",
		    m, c);
		rc = 1;
	} else {
		printf("complaint (%s): suppressed email %s",
		       arf.feedback_type[0] ? arf.feedback_type : "abuse", PQgetvalue(r, 0, 0));
		if (!PQgetisnull(r, 0, 1))
			printf(" of customer %s; marketing consent withdrawn, %s queued marketing "
			       "email(s) cancelled",
			       PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
		printf("\n");
	}
	PQclear(r);
	PQfinish(pg);
	return rc;
}
