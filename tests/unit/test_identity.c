/*
 * test_identity.c — email and phone normalisation, case by case: what is accepted becomes exactly
 * the expected normal form, and what is refused says why.
 */
#include "identity.h"
#include "testlib.h"

#include <errno.h>

struct email_case {
	const char *in, *want; /* want NULL: refused, and why must contain reason */
	const char *reason;
};

static void test_email_accepted(void)
{
	static const struct email_case cases[] = {
	    {"jane@example.com", "jane@example.com", NULL},
	    {"Jane.Doe@Example.COM", "jane.doe@example.com", NULL},
	    {"  JOHN@EXAMPLE.COM\t\r\n", "john@example.com", NULL},
	    {"a+tag@sub.example.co.uk", "a+tag@sub.example.co.uk", NULL},
	    {"o'brien@example.ie", "o'brien@example.ie", NULL},
	    {"x_y-z@my-shop.example", "x_y-z@my-shop.example", NULL},
	    {"1@2.io", "1@2.io", NULL},
	    /* UTF-8 bytes are kept as they are; only ASCII letters are folded. */
	    {"J\xc3\xb6rg@B\xc3\xbc"
	     "cher.DE",
	     "j\xc3\xb6rg@b\xc3\xbc"
	     "cher.de",
	     NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char out[NG_IDENTITY_EMAIL_MAX];
		const char *why = NULL;
		int rc = ng_identity_email(cases[i].in, out, &why);
		if (rc != 0)
			ng_test_fail(__FILE__, __LINE__, "'%s' refused: %s", cases[i].in, why);
		ASSERT_EQ_STR(out, cases[i].want);
	}
}

static void test_email_refused(void)
{
	static const struct email_case cases[] = {
	    {"", NULL, "is empty"},
	    {"   ", NULL, "is empty"},
	    {"jane", NULL, "has no '@'"},
	    {"jane example.com", NULL, "contains spaces"},
	    {"jane @example.com", NULL, "contains spaces"},
	    {"jane@exa mple.com", NULL, "contains spaces"},
	    {"jane@@example.com", NULL, "more than one '@'"},
	    {"a@b@example.com", NULL, "more than one '@'"},
	    {"@example.com", NULL, "nothing before"},
	    {"jane@", NULL, "no domain"},
	    {"jane@localhost", NULL, "no dot in its domain"},
	    {"jane@example.", NULL, "misplaced dot in its domain"},
	    {"jane@.example.com", NULL, "misplaced dot in its domain"},
	    {"jane@example..com", NULL, "misplaced dot in its domain"},
	    {".jane@example.com", NULL, "misplaced dot before"},
	    {"jane.@example.com", NULL, "misplaced dot before"},
	    {"ja..ne@example.com", NULL, "misplaced dot before"},
	    {"jane@example.c", NULL, "one-letter top-level"},
	    {"\"jane\"@example.com", NULL, "not allowed in an address"},
	    {"Jane <jane@example.com>", NULL, "contains spaces"},
	    {"<jane@example.com>", NULL, "not allowed in an address"},
	    {"jane@[127.0.0.1]", NULL, "not allowed in an address"},
	    {"jane@exa_mple.com", NULL, "not allowed in a domain"},
	    {"jane,bob@example.com", NULL, "not allowed in an address"},
	    {"ja\x01ne@example.com", NULL, "control characters"},
	    {"jane@ex\x7f"
	     "ample.com",
	     NULL, "control characters"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char out[NG_IDENTITY_EMAIL_MAX];
		const char *why = NULL;
		int rc = ng_identity_email(cases[i].in, out, &why);
		if (rc != -EINVAL)
			ng_test_fail(__FILE__, __LINE__, "'%s' accepted as '%s'", cases[i].in, out);
		ASSERT_CONTAINS(why, cases[i].reason);
		ASSERT_EQ_STR(out, "");
	}
	char out[NG_IDENTITY_EMAIL_MAX];
	ASSERT_EQ_INT(ng_identity_email(NULL, out, NULL), -EINVAL);
}

static void test_email_lengths(void)
{
	char in[400], out[NG_IDENTITY_EMAIL_MAX];
	const char *why = NULL;
	/* 64 characters before the '@' is the limit. */
	memset(in, 'a', 64);
	strcpy(in + 64, "@example.com");
	ASSERT_EQ_INT(ng_identity_email(in, out, &why), 0);
	memset(in, 'a', 65);
	strcpy(in + 65, "@example.com");
	ASSERT_EQ_INT(ng_identity_email(in, out, &why), -EINVAL);
	ASSERT_CONTAINS(why, "64");
	/* 254 in all is the limit: 64 + '@' + 189-byte domain = 254. */
	memset(in, 'a', 64);
	in[64] = '@';
	memset(in + 65, 'b', 185);
	strcpy(in + 250, ".com");
	ASSERT_EQ_INT(strlen(in), 254);
	ASSERT_EQ_INT(ng_identity_email(in, out, &why), 0);
	ASSERT_EQ_INT(strlen(out), 254);
	memset(in + 65, 'b', 186);
	strcpy(in + 251, ".com");
	ASSERT_EQ_INT(ng_identity_email(in, out, &why), -EINVAL);
	ASSERT_CONTAINS(why, "254");
}

struct phone_case {
	const char *in, *cc, *want, *reason;
};

static void test_phone_accepted(void)
{
	static const struct phone_case cases[] = {
	    /* National numbers with a default country. */
	    {"(555) 123-4567", "1", "+15551234567", NULL},
	    {"(555) 555-5555", "1", "+15555555555", NULL},
	    {"555.123.4567", "1", "+15551234567", NULL},
	    {"555 123 4567", "1", "+15551234567", NULL},
	    {"1-555-123-4567", "1", "+15551234567", NULL},
	    {"1 (555) 123-4567", "1", "+15551234567", NULL},
	    {"030 1234567", "49", "+49301234567", NULL},
	    {"030/1234567", "49", "+49301234567", NULL},
	    {"0151 23456789", "49", "+4915123456789", NULL},
	    {"020 7946 0958", "44", "+442079460958", NULL},
	    {"07700 900123", "44", "+447700900123", NULL},
	    {"01 23 45 67 89", "33", "+33123456789", NULL},
	    {"06 1234 5678", "39", "+390612345678", NULL}, /* Italy keeps its 0 */
	    {"  0301234567 ", "49", "+49301234567", NULL},
	    /* International numbers ignore the default. */
	    {"+1 (555) 123-4567", "49", "+15551234567", NULL},
	    {"+49 30 1234567", "1", "+49301234567", NULL},
	    {"+49 (0)30 1234567", NULL, "+49301234567", NULL},
	    {"+44 (0) 20 7946 0958", "1", "+442079460958", NULL},
	    {"0049 30 1234567", "1", "+49301234567", NULL},
	    {"0049 (0)30 1234567", "33", "+49301234567", NULL},
	    {"011 49 30 1234567", "1", "+49301234567", NULL},
	    {"+15551234567", NULL, "+15551234567", NULL},
	    {"+123456789012345", NULL, "+123456789012345", NULL}, /* 15 digits */
	    {"+12345678", NULL, "+12345678", NULL},               /* 8 digits */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char out[NG_IDENTITY_PHONE_MAX];
		const char *why = NULL;
		int rc = ng_identity_phone(cases[i].in, cases[i].cc, out, &why);
		if (rc != 0)
			ng_test_fail(__FILE__, __LINE__, "'%s' (cc %s) refused: %s", cases[i].in,
			             cases[i].cc ? cases[i].cc : "none", why);
		if (strcmp(out, cases[i].want) != 0)
			ng_test_fail(__FILE__, __LINE__, "'%s' (cc %s): '%s' != '%s'", cases[i].in,
			             cases[i].cc ? cases[i].cc : "none", out, cases[i].want);
	}
}

static void test_phone_refused(void)
{
	static const struct phone_case cases[] = {
	    {"", "1", NULL, "is empty"},
	    {" \t", "1", NULL, "is empty"},
	    {"555-555-BILL", "1", NULL, "contains letters"},
	    {"555-123-4567 x12", "1", NULL, "contains letters"},
	    {"+1 555 123 4567 ext. 3", "1", NULL, "contains letters"},
	    {"555#1234567", "1", NULL, "not part of a phone number"},
	    {"555+1234567", "1", NULL, "not at the start"},
	    {"()-. ", "1", NULL, "no digits"},
	    {"(555) 123-4567", NULL, NULL, "no default country code"},
	    {"(555) 123-4567", "", NULL, "no default country code"},
	    {"(555) 123-4567", "0044", NULL, "1 to 3 digits"},
	    {"(555) 123-4567", "x1", NULL, "1 to 3 digits"},
	    {"123-4567", "1", NULL, "10-digit North American"},
	    {"555 123 45678", "1", NULL, "10-digit North American"},
	    {"2-555-123-4567", "1", NULL, "10-digit North American"},
	    {"(155) 123-4567", "1", NULL, "area code"},
	    {"+0 555 123 4567", NULL, NULL, "starting with 0"},
	    {"+1234567", NULL, NULL, "too short"},
	    {"030 12", "49", NULL, "too short"},
	    {"+1234567890123456", NULL, NULL, "too long"},
	    {"0049 30 1234567 8901234", "49", NULL, "too long"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char out[NG_IDENTITY_PHONE_MAX];
		const char *why = NULL;
		int rc = ng_identity_phone(cases[i].in, cases[i].cc, out, &why);
		if (rc != -EINVAL)
			ng_test_fail(__FILE__, __LINE__, "'%s' (cc %s) accepted as '%s'",
			             cases[i].in, cases[i].cc ? cases[i].cc : "none", out);
		if (!why || !strstr(why, cases[i].reason))
			ng_test_fail(__FILE__, __LINE__, "'%s': reason '%s' lacks '%s'",
			             cases[i].in, why ? why : "(null)", cases[i].reason);
		ASSERT_EQ_STR(out, "");
	}
	/* Very long input does not overflow the digit buffer. */
	char big[300];
	memset(big, '9', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	char out[NG_IDENTITY_PHONE_MAX];
	ASSERT_EQ_INT(ng_identity_phone(big, "1", out, NULL), -EINVAL);
	ASSERT_EQ_INT(ng_identity_phone(NULL, "1", out, NULL), -EINVAL);
}

static void test_country_code_valid(void)
{
	ASSERT_EQ_INT(ng_identity_country_code_valid("1"), 1);
	ASSERT_EQ_INT(ng_identity_country_code_valid("49"), 1);
	ASSERT_EQ_INT(ng_identity_country_code_valid("353"), 1);
	ASSERT_EQ_INT(ng_identity_country_code_valid("1234"), 0);
	ASSERT_EQ_INT(ng_identity_country_code_valid("0"), 0);
	ASSERT_EQ_INT(ng_identity_country_code_valid("+1"), 0);
	ASSERT_EQ_INT(ng_identity_country_code_valid(""), 0);
	ASSERT_EQ_INT(ng_identity_country_code_valid(NULL), 0);
}

NG_TESTS(NG_TEST(test_email_accepted), NG_TEST(test_email_refused), NG_TEST(test_email_lengths),
         NG_TEST(test_phone_accepted), NG_TEST(test_phone_refused),
         NG_TEST(test_country_code_valid), )
