/*
 * test_wf_cli.c — the workflow commands of the `nudge` binary end to end, against a private schema
 * of the test cluster: `nudge workflows check` (good and broken files, file:line), `nudge
 * workflows deploy|list|show`, `nudge start`, `nudge test` and `nudge simulate`.
 */
#include "testlib.h"

#include "ng.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* The nudge binary of the build this test belongs to: BUILD/tests/test_wf_cli → BUILD/nudge. */
static const char *nudge_bin(void)
{
	static char p[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", p, sizeof p - 16);
	ASSERT(n > 0);
	p[n] = '\0';
	*strrchr(p, '/') = '\0';
	strcpy(strrchr(p, '/'), "/nudge");
	return p;
}

/* Runs `nudge ARGS` (a shell word list) and returns its exit status; *out gets stdout+stderr. */
static int nudge(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int nudge(char **out, const char *fmt, ...)
{
	char args[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	char *cmd = ng_xasprintf("'%s' %s 2>&1", nudge_bin(), args);
	FILE *f = popen(cmd, "r");
	ASSERT(f != NULL);
	size_t cap = 1 << 16, len = 0, n;
	char *buf = ng_xmalloc(cap);
	while ((n = fread(buf + len, 1, cap - 1 - len, f)) > 0 && len + n < cap - 1)
		len += n;
	len += n;
	buf[len] = '\0';
	int st = pclose(f);
	free(cmd);
	*out = buf;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *write_file(const char *dir, const char *name, const char *text)
{
	char *p = ng_xasprintf("%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	ASSERT(f != NULL);
	fputs(text, f);
	fclose(f);
	return p;
}

static const char *top(void)
{
	const char *t = getenv("NUDGE_TEST_TOP");
	return t ? t : ".";
}

static void test_workflows_check(void)
{
	char *out;
	ASSERT_EQ_INT(nudge(&out, "workflows check '%s/workflows'", top()), 0);
	ASSERT_CONTAINS(out, "5 checked, 0 refused");
	ASSERT_CONTAINS(out, "ok ");
	free(out);
	char dir[] = "/tmp/ng-wf-cli-XXXXXX";
	ASSERT(mkdtemp(dir) != NULL);
	free(write_file(dir, "bad.lua",
	                "return {\n  name = 'bad',\n  trigger = {event = 5},\n"
	                "  run = function(ctx) end }\n"));
	free(write_file(dir, "typo.lua",
	                "return {\n  name = 'typo',\n  trigger = {manual = true},\n"
	                "  run = function(ctx)\n    ctx.sned{} end }\n"));
	free(write_file(dir, "syntax.lua",
	                "return {\n  name = 'x',\n  run = function(ctx) end end }\n"));
	ASSERT_EQ_INT(nudge(&out, "workflows check '%s'", dir), 1);
	ASSERT_CONTAINS(out, "bad.lua:3: trigger.event must be a string");
	ASSERT_CONTAINS(out, "typo.lua:5: unknown workflow API ctx.sned");
	ASSERT_CONTAINS(out, "syntax.lua:3:");
	ASSERT_CONTAINS(out, "3 checked, 3 refused");
	free(out);
	char *cmd = ng_xasprintf("rm -rf '%s'", dir);
	ASSERT_EQ_INT(system(cmd), 0);
	free(cmd);
}

/* deploy, list, show and start against a private schema; a changed file is version 2. */
static void test_deploy_list_show_start(void)
{
	char *schema = ng_xasprintf("ng_wf_cli_%d", (int)getpid());
	char *sql = ng_xasprintf("SET client_min_messages = warning; DROP SCHEMA IF EXISTS %s "
	                         "CASCADE; CREATE SCHEMA %s",
	                         schema, schema);
	ng_test_pg_exec(sql);
	free(sql);
	char *ci = ng_xasprintf("%s options='-c search_path=%s'", ng_test_pg(), schema);
	char *out;
	ASSERT_EQ_INT(nudge(&out, "migrate --conninfo \"%s\"", ci), 0);
	free(out);
	char dir[] = "/tmp/ng-wf-cli-XXXXXX";
	ASSERT(mkdtemp(dir) != NULL);
	free(write_file(dir, "hello.lua",
	                "return { name = 'hello', trigger = {manual = true},\n"
	                "  run = function(ctx) ctx.wait('1d') end }\n"));
	ASSERT_EQ_INT(nudge(&out, "workflows deploy '%s' --conninfo \"%s\"", dir, ci), 0);
	free(out);
	free(write_file(dir, "hello.lua",
	                "return { name = 'hello', trigger = {manual = true},\n"
	                "  run = function(ctx) ctx.wait('2d') end }\n"));
	ASSERT_EQ_INT(nudge(&out, "workflows deploy '%s' --conninfo \"%s\"", dir, ci), 0);
	free(out);
	sql = ng_xasprintf("INSERT INTO %s.customers (email) VALUES ('cli@example.com')", schema);
	ng_test_pg_exec(sql);
	free(sql);
	ASSERT_EQ_INT(nudge(&out, "start hello --customer 1 --conninfo \"%s\"", ci), 0);
	ASSERT_CONTAINS(out, "started hello instance");
	free(out);
	/* One live instance per customer: a second start is refused with a reason. */
	ASSERT_EQ_INT(nudge(&out, "start hello --customer 1 --conninfo \"%s\"", ci), 1);
	ASSERT_CONTAINS(out, "already has a live instance");
	free(out);
	ASSERT_EQ_INT(nudge(&out, "workflows list --conninfo \"%s\"", ci), 0);
	ASSERT_CONTAINS(out, "hello\t2\tt\t1\t0");
	free(out);
	ASSERT_EQ_INT(nudge(&out, "workflows show hello --conninfo \"%s\"", ci), 0);
	ASSERT_CONTAINS(out, "2\tready\t1");
	ASSERT_CONTAINS(out, "\"kind\": \"manual\"");
	free(out);
	ASSERT_EQ_INT(nudge(&out, "start nosuch --customer 1 --conninfo \"%s\"", ci), 1);
	free(out);
	sql = ng_xasprintf("SET client_min_messages = warning; DROP SCHEMA %s CASCADE", schema);
	ng_test_pg_exec(sql);
	free(sql);
	sql = ng_xasprintf("rm -rf '%s'", dir);
	ASSERT_EQ_INT(system(sql), 0);
	free(sql);
	free(ci);
	free(schema);
}

static void test_simulate_and_test(void)
{
	char dir[] = "/tmp/ng-wf-cli-XXXXXX";
	ASSERT(mkdtemp(dir) != NULL);
	char *cust = write_file(dir, "customer.json",
	                        "{\"email\": \"sim@example.com\", \"phone\": \"+15550100077\","
	                        " \"consent\": {\"sms\": \"granted\"}}");
	char *evs = write_file(dir, "events.json",
	                       "[{\"after\": \"0s\", \"type\": \"checkout.started\","
	                       " \"data\": {\"checkout_id\": \"k9\", \"total\": 99}}]");
	char *out;
	ASSERT_EQ_INT(nudge(&out,
	                    "simulate abandoned_cart --customer '%s' --events '%s' --for 3d"
	                    " --conninfo \"%s\"",
	                    cust, evs, ng_test_pg()),
	              0);
	ASSERT_CONTAINS(out, "+0d 01:00:00");
	ASSERT_CONTAINS(out, "send      email cart_reminder");
	ASSERT_CONTAINS(out, "timeout   order.placed");
	ASSERT_CONTAINS(out, "send      sms cart_reminder_sms");
	ASSERT_CONTAINS(out, "abandoned_cart #1: completed, 2 message(s) queued");
	free(out);
	ASSERT_EQ_INT(nudge(&out, "test '%s/workflows/post_purchase_test.lua' --conninfo \"%s\"",
	                    top(), ng_test_pg()),
	              0);
	ASSERT_CONTAINS(out, "4 passed, 0 failed");
	free(out);
	/* A failing case says which step and shows the timeline. */
	char *bad = write_file(dir, "bad_test.lua",
	                       "return { workflow = 'post_purchase', cases = { { name = 'wrong',"
	                       " steps = { { event = 'order.placed', data = { order_id = 'x' } },"
	                       " { expect_sent = { template = 'nope' } } } } } }\n");
	ASSERT_EQ_INT(nudge(&out, "test '%s' --conninfo \"%s\"", bad, ng_test_pg()), 1);
	ASSERT_CONTAINS(out, "not ok");
	ASSERT_CONTAINS(out, "step 2: expected a send");
	ASSERT_CONTAINS(out, "timeline:");
	ASSERT_CONTAINS(out, "0 passed, 1 failed");
	free(out);
	free(bad);
	free(cust);
	free(evs);
	char *cmd = ng_xasprintf("rm -rf '%s'", dir);
	ASSERT_EQ_INT(system(cmd), 0);
	free(cmd);
}

NG_TESTS(NG_TEST(test_workflows_check), NG_TEST(test_deploy_list_show_start),
         NG_TEST(test_simulate_and_test), )
