/*
 * test_complaint.c — feedback-loop complaints (core/arf.c, `nudge complaint`, sql/0011).
 *
 * Parsing: an RFC 5965 report as Yahoo and Microsoft send them (the report's own Message-ID first,
 * ours inside the returned message, folded), one whose provider stripped the Message-ID (the
 * recipient then), and one naming neither (refused with its sentence). Through the command, on a
 * real database: the address is suppressed with reason complaint, consent withdrawn with the
 * feedback type as evidence, queued marketing email cancelled, a receipt left alone, and the
 * policy then skips the address; a second report changes nothing more.
 */
#include "arf.h"
#include "ng.h"
#include "support/serve_proc.h"
#include "testlib.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

/* Shaped like RFC 5965 appendix B, with our message inside. CID and MID are filled in. */
static const char report_fmt[] =
    "From: <staff@hotmail.example>\r\n"
    "Date: Thu, 8 Mar 2026 14:00:00 EDT\r\n"
    "Subject: FW: Earn money\r\n"
    "To: <abuse@shop.example>\r\n"
    "Message-ID: <ARF-4711@fbl.hotmail.example>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/report; report-type=feedback-report;\r\n"
    "     boundary=\"part1_13d.2e68ed54_boundary\"\r\n"
    "\r\n"
    "--part1_13d.2e68ed54_boundary\r\n"
    "Content-Type: text/plain; charset=\"US-ASCII\"\r\n"
    "Content-Transfer-Encoding: 7bit\r\n"
    "\r\n"
    "This is an email abuse report for an email message received from IP\r\n"
    "192.0.2.1 on Thu, 8 Mar 2026 14:00:00 EDT.\r\n"
    "\r\n"
    "--part1_13d.2e68ed54_boundary\r\n"
    "Content-Type: message/feedback-report\r\n"
    "\r\n"
    "Feedback-Type: Abuse\r\n"
    "User-Agent: SomeGenerator/1.0\r\n"
    "Version: 1\r\n"
    "Original-Mail-From: <shop@example.com>\r\n"
    "%s"
    "Arrival-Date: Thu, 8 Mar 2026 14:00:00 EDT\r\n"
    "Source-IP: 192.0.2.1\r\n"
    "\r\n"
    "--part1_13d.2e68ed54_boundary\r\n"
    "Content-Type: message/rfc822\r\n"
    "Content-Disposition: inline\r\n"
    "\r\n"
    "From: The Shop <shop@example.com>\r\n"
    "To: <%s>\r\n"
    "Subject: Our summer sale\r\n"
    "%s"
    "Date: Thu, 8 Mar 2026 13:00:00 EDT\r\n"
    "\r\n"
    "Everything must go.\r\n"
    "--part1_13d.2e68ed54_boundary--\r\n";

static char *report(const char *rcpt_line, const char *to, const char *msgid_line)
{
	return ng_xasprintf(report_fmt, rcpt_line, to, msgid_line);
}

static void test_arf_fields(void)
{
	struct ng_arf a;
	const char *why = NULL;
	char *r = report("", "jo@example.org", "Message-ID:\r\n <nudge-12-345@example.com>\r\n");
	ASSERT_EQ_INT(ng_arf_parse(r, strlen(r), &a, &why), 0);
	ASSERT_EQ_STR(a.feedback_type, "abuse");
	ASSERT_EQ_INT(a.customer_id, 12);
	ASSERT_EQ_INT(a.message_id, 345);
	ASSERT_EQ_STR(a.recipient, "");
	free(r);
	/* The provider stripped the Message-ID: the reported recipient instead. */
	r = report("Original-Rcpt-To: <Jo@Example.org>\r\n", "[redacted]", "");
	ASSERT_EQ_INT(ng_arf_parse(r, strlen(r), &a, &why), 0);
	ASSERT_EQ_INT(a.message_id, 0);
	ASSERT_EQ_STR(a.recipient, "Jo@Example.org");
	free(r);
	/* A Message-ID that is not ours names nothing. */
	r = report("", "[redacted]", "Message-ID: <nudge-x-1@example.com>\r\n");
	ASSERT_EQ_INT(ng_arf_parse(r, strlen(r), &a, &why), -1);
	ASSERT_CONTAINS(why, "nothing to suppress");
	free(r);
	ASSERT_EQ_INT(ng_arf_parse("", 0, &a, &why), -1);
}

/* Replaces the file's content with text. */
static void put(const char *file, const char *text)
{
	int fd = open(file, O_WRONLY | O_TRUNC);
	ASSERT(fd >= 0);
	ASSERT_EQ_INT(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static char *run(const char *file, const char *conninfo, int *st)
{
	const char *argv[] = {"complaint", file, "--conninfo", conninfo, NULL};
	return ng_test_nudge(argv, st);
}

static void test_complaint_suppresses_withdraws_and_cancels(void)
{
	struct ng_test_schema sc;
	ng_test_schema_open(&sc);
	long long cid = ng_test_q1(sc.pg, "INSERT INTO customers (email) VALUES ('jo@example.org')"
	                                  " RETURNING id");
	ng_test_q1(sc.pg,
	           "WITH i AS (INSERT INTO consents (customer_id, channel, purpose, status,"
	           " source) VALUES (%lld, 'email', 'marketing', 'granted', 'form')"
	           " RETURNING 1) SELECT count(*) FROM i",
	           cid);
	long long sent = ng_test_q1(sc.pg,
	                            "INSERT INTO messages (customer_id, channel, template, status)"
	                            " VALUES (%lld, 'email', 'news1', 'sent') RETURNING id",
	                            cid);
	long long queued = ng_test_q1(sc.pg,
	                              "INSERT INTO messages (customer_id, channel, template,"
	                              " next_attempt_at) VALUES (%lld, 'email', 'news2',"
	                              " now() + interval '1 day') RETURNING id",
	                              cid);
	long long receipt = ng_test_q1(sc.pg,
	                               "INSERT INTO messages (customer_id, channel, template,"
	                               " purpose, next_attempt_at) VALUES (%lld, 'email',"
	                               " 'receipt', 'transactional', now() + interval '1 day')"
	                               " RETURNING id",
	                               cid);
	char file[64] = "/tmp/nudge-arf-XXXXXX";
	int fd = mkstemp(file);
	ASSERT(fd >= 0);
	close(fd);
	char msgid[96];
	snprintf(msgid, sizeof msgid, "Message-ID: <nudge-%lld-%lld@example.com>\r\n", cid, sent);
	char *r = report("", "jo@example.org", msgid);
	put(file, r);
	free(r);

	int st;
	char *out = run(file, sc.conninfo, &st);
	ASSERT_EQ_INT(st, 0);
	ASSERT_CONTAINS(out, "suppressed email jo@example.org");
	ASSERT_CONTAINS(out, "1 queued marketing email(s) cancelled");
	free(out);
	ASSERT_EQ_INT(ng_test_q1(sc.pg,
	                         "SELECT count(*) FROM suppressions WHERE channel = 'email'"
	                         " AND address = 'jo@example.org' AND reason = 'complaint'"
	                         " AND customer_id = %lld",
	                         cid),
	              1);
	ASSERT_EQ_INT(ng_test_q1(sc.pg,
	                         "SELECT count(*) FROM consent_current WHERE customer_id = %lld"
	                         " AND channel = 'email' AND status = 'withdrawn'"
	                         " AND source = 'complaint'",
	                         cid),
	              1);
	ASSERT_EQ_INT(ng_test_q1(sc.pg,
	                         "SELECT count(*) FROM consents WHERE evidence->>'feedback_type'"
	                         " = 'abuse' AND (evidence->>'message_id')::bigint = %lld",
	                         sent),
	              1);
	ASSERT_EQ_INT(ng_test_q1(sc.pg,
	                         "SELECT count(*) FROM messages WHERE id = %lld AND status ="
	                         " 'skipped' AND last_error LIKE 'suppressed:complaint%%'",
	                         queued),
	              1);
	ASSERT_EQ_INT(ng_test_q1(sc.pg,
	                         "SELECT count(*) FROM messages WHERE id = %lld AND status ="
	                         " 'queued'",
	                         receipt),
	              1);
	ASSERT_EQ_INT(ng_test_q1(sc.pg,
	                         "SELECT count(*) FROM customers c WHERE c.id = %lld AND"
	                         " ng_delivery_policy(c.id, 'email', 'transactional', c.email)"
	                         " = 'suppressed:complaint'",
	                         cid),
	              1);
	/* The same report again: nothing more is recorded. */
	out = run(file, sc.conninfo, &st);
	ASSERT_EQ_INT(st, 0);
	free(out);
	ASSERT_EQ_INT(
	    ng_test_q1(sc.pg, "SELECT count(*) FROM consents WHERE customer_id = %lld", cid), 2);

	/* A report naming only a recipient nobody is: the address is suppressed all the same. */
	r = report("Original-Rcpt-To: stranger@example.net\r\n", "[redacted]", "");
	put(file, r);
	free(r);
	out = run(file, sc.conninfo, &st);
	ASSERT_EQ_INT(st, 0);
	ASSERT_CONTAINS(out, "suppressed email stranger@example.net");
	free(out);
	/* And one naming nothing: refused, exit 1, nothing written. */
	put(file, "Subject: hello\r\n\r\nhi\r\n");
	out = run(file, sc.conninfo, &st);
	ASSERT_EQ_INT(st, 1);
	free(out);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(*) FROM suppressions"), 2);
	unlink(file);
	ng_test_schema_close(&sc);
}

NG_TESTS(NG_TEST(test_arf_fields), NG_TEST(test_complaint_suppresses_withdraws_and_cancels), )
