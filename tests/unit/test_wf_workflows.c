/*
 * test_wf_workflows.c — runs the shipped workflows' own tests (workflows/NAME_test.lua) on the
 * virtual clock, as `nudge test` does, one test per workflow.
 */
#include "../testlib.h"

#include "ng.h"
#include "wf_harness.h"

#include <stdlib.h>

static void run(const char *name)
{
	const char *top = getenv("NUDGE_TEST_TOP");
	char *dir = ng_xasprintf("%s/workflows", top ? top : ".");
	char *path = ng_xasprintf("%s/%s_test.lua", dir, name);
	int passed = 0, failed = 0;
	ASSERT_EQ_INT(ng_wf_test_file(ng_test_pg(), path, dir, stdout, &passed, &failed), 0);
	ASSERT_EQ_INT(failed, 0);
	ASSERT_CMP_INT(passed, >, 0);
	free(path);
	free(dir);
}

static void test_abandoned_cart(void)
{
	run("abandoned_cart");
}

static void test_welcome_series(void)
{
	run("welcome_series");
}

static void test_birthday(void)
{
	run("birthday");
}

static void test_reengagement(void)
{
	run("reengagement");
}

static void test_post_purchase(void)
{
	run("post_purchase");
}

NG_TESTS(NG_TEST(test_abandoned_cart), NG_TEST(test_welcome_series), NG_TEST(test_birthday),
         NG_TEST(test_reengagement), NG_TEST(test_post_purchase), )
