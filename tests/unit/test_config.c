/*
 * test_config.c — nudge.conf.lua validation: every kind of error yields its documented sentence,
 * naming the key and file:line.
 */
#include "config.h"
#include "testlib.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char path[64];

/* Writes src to a fresh temp file (its name in path) and loads it. */
static int load(const char *src, struct ng_conf **c, char *err, size_t errlen)
{
	snprintf(path, sizeof path, "/tmp/ng-conf-XXXXXX");
	int fd = mkstemp(path);
	ASSERT(fd >= 0);
	ASSERT_EQ_INT(write(fd, src, strlen(src)), (long long)strlen(src));
	close(fd);
	err[0] = '\0';
	int rc = ng_conf_load(path, c, err, errlen);
	unlink(path);
	return rc;
}

/* Loads src, expects failure, and compares the sentence after "FILE:". */
static void expect_error(const char *src, const char *want)
{
	struct ng_conf *c = NULL;
	char err[1024];
	int rc = load(src, &c, err, sizeof err);
	ASSERT(rc != 0);
	ASSERT(c == NULL);
	size_t n = strlen(path);
	if (strncmp(err, path, n) != 0 || err[n] != ':')
		ng_test_fail(__FILE__, __LINE__, "error does not start with the file name: %s", err);
	ASSERT_EQ_STR(err + n + 1, want);
}

static void test_valid_with_defaults(void)
{
	struct ng_conf *c = NULL;
	char err[1024];
	int rc = load("return {\n"
		      "  database = { conninfo = 'dbname=x', pool_size = 8 },\n"
		      "  http = { listen = '127.0.0.1:9000' },\n"
		      "  log = { format = 'json' },\n"
		      "}\n",
		      &c, err, sizeof err);
	if (rc)
		ng_test_fail(__FILE__, __LINE__, "load failed: %s", err);
	ASSERT_EQ_STR(ng_conf_str(c, "database.conninfo"), "dbname=x");
	ASSERT_EQ_INT(ng_conf_int(c, "database.pool_size"), 8);
	ASSERT_EQ_INT(ng_conf_int(c, "database.statement_timeout_ms"), 10000);
	ASSERT_EQ_STR(ng_conf_str(c, "http.listen"), "127.0.0.1:9000");
	ASSERT_EQ_INT(ng_conf_int(c, "http.max_body_bytes"), 1048576);
	ASSERT_EQ_STR(ng_conf_str(c, "log.format"), "json");
	ASSERT_EQ_STR(ng_conf_str(c, "log.level"), "info");
	ASSERT_EQ_STR(ng_conf_str(c, "store.timezone"), "UTC");
	ASSERT(ng_conf_str(c, "store.postal_address") == NULL);
	ASSERT_EQ_INT(ng_conf_int(c, "shutdown_timeout_ms"), 10000);
	ASSERT(ng_conf_get(c, "nope.nothing") == NULL);
	ng_conf_free(c);
}

static void test_unknown_key(void)
{
	expect_error("return {\n"
		     "  database = { conninfo = 'x' },\n"
		     "  http = {\n"
		     "    listn = '127.0.0.1:1',\n"
		     "  },\n"
		     "}\n",
		     "4: unknown key 'http.listn' (did you mean 'http.listen'?)");
	expect_error("return {\n  database = { conninfo = 'x' },\n  frobnicate = true,\n}\n",
		     "3: unknown key 'frobnicate'");
	expect_error("return {\n  database = { conninfo = 'x' },\n  [\"htp\"] = {},\n}\n",
		     "3: unknown key 'htp' (did you mean 'http'?)");
}

static void test_wrong_type(void)
{
	expect_error("return {\n  database = {\n    conninfo = 'x',\n    pool_size = '4',\n  },\n}\n",
		     "4: key 'database.pool_size' must be an integer, not a string");
	expect_error("return {\n  database = { conninfo = 'x', pool_size = 2.5 },\n}\n",
		     "2: key 'database.pool_size' must be an integer, not a fractional number");
	expect_error("return {\n  database = 'dbname=x',\n}\n",
		     "2: key 'database' must be a table, not a string");
	expect_error("return {\n  database = { conninfo = 42 },\n}\n",
		     "2: key 'database.conninfo' must be a string, not an integer");
}

static void test_missing_required(void)
{
	expect_error("return {\n  http = {},\n}\n", "1: missing required key 'database'");
	expect_error("return {\n  log = {},\n  database = {\n    pool_size = 2,\n  },\n}\n",
		     "3: missing required key 'database.conninfo'");
}

static void test_bad_value(void)
{
	expect_error("return {\n  database = { conninfo = 'x' },\n  log = { level = 'loud' },\n}\n",
		     "3: key 'log.level' must be one of debug/info/warn/error, not \"loud\"");
	expect_error("return {\n  database = { conninfo = 'x', pool_size = 0 },\n}\n",
		     "2: key 'database.pool_size' must be between 1 and 256, not 0");
}

static void test_syntax_and_runtime_errors(void)
{
	expect_error("return {\n  database = { conninfo = 'x' }\n  http = {},\n}\n",
		     "3: '}' expected (to close '{' at line 1) near 'http'");
	expect_error("return {\n  database = { conninfo = os.getenv('X') },\n}\n",
		     "2: attempt to index a nil value (global 'os')");
	expect_error("database = { conninfo = 'x' }\n",
		     "1: the file must return a table of settings (return { … }), not nil");
}

static void test_env_secret(void)
{
	unsetenv("NG_TEST_UNSET_VAR");
	expect_error("return {\n  database = {\n    conninfo = env('NG_TEST_UNSET_VAR'),\n  },\n}\n",
		     "3: key 'database.conninfo' reads the environment variable NG_TEST_UNSET_VAR, "
		     "which is not set");
	setenv("NG_TEST_SET_VAR", "host=secret", 1);
	struct ng_conf *c = NULL;
	char err[1024];
	ASSERT_EQ_INT(load("return { database = { conninfo = env('NG_TEST_SET_VAR') } }", &c, err,
			   sizeof err),
		      0);
	ASSERT_EQ_STR(ng_conf_str(c, "database.conninfo"), "host=secret");
	ng_conf_free(c);
	ASSERT_EQ_INT(load("return { database = { conninfo = env('NG_TEST_UNSET_VAR', 'dflt') } }",
			   &c, err, sizeof err),
		      0);
	ASSERT_EQ_STR(ng_conf_str(c, "database.conninfo"), "dflt");
	ng_conf_free(c);
}

static void test_file_secret(void)
{
	char secret[] = "/tmp/ng-secret-XXXXXX";
	int fd = mkstemp(secret);
	ASSERT(fd >= 0);
	ASSERT_EQ_INT(write(fd, "s3cret\n", 7), 7);
	close(fd);
	char src[512], want[512];
	snprintf(src, sizeof src, "return {\n  database = {\n    conninfo = file('%s'),\n  },\n}\n",
		 secret);

	chmod(secret, 0644);
	snprintf(want, sizeof want,
		 "3: key 'database.conninfo' reads the file %s, which group or others can read "
		 "(chmod 600 it)",
		 secret);
	expect_error(src, want);

	chmod(secret, 0600);
	struct ng_conf *c = NULL;
	char err[1024];
	int rc = load(src, &c, err, sizeof err);
	if (rc)
		ng_test_fail(__FILE__, __LINE__, "load failed: %s", err);
	ASSERT_EQ_STR(ng_conf_str(c, "database.conninfo"), "s3cret");
	ng_conf_free(c);

	unlink(secret);
	snprintf(want, sizeof want,
		 "3: key 'database.conninfo' reads the file %s, which cannot be opened: No such "
		 "file or directory",
		 secret);
	expect_error(src, want);
}

static void test_missing_file(void)
{
	struct ng_conf *c = NULL;
	char err[1024];
	ASSERT(ng_conf_load("/nonexistent/nudge.conf.lua", &c, err, sizeof err) != 0);
	ASSERT_EQ_STR(err, "/nonexistent/nudge.conf.lua: cannot open the configuration file: No "
			   "such file or directory");
}

static void test_shipped_example_is_valid(void)
{
	const char *top = getenv("NUDGE_TEST_TOP");
	char p[1024];
	snprintf(p, sizeof p, "%s/contrib/nudge.conf.lua", top ? top : ".");
	setenv("NUDGE_DATABASE", "dbname=nudge", 1);
	struct ng_conf *c = NULL;
	char err[1024];
	if (ng_conf_load(p, &c, err, sizeof err) != 0)
		ng_test_fail(__FILE__, __LINE__, "the shipped example is invalid: %s", err);
	ng_conf_free(c);
}

struct doc {
	char *text;
	int missing;
};

static void check_documented(void *arg, const char *line)
{
	struct doc *d = arg;
	char key[128];
	sscanf(line, "%127s", key);
	char needle[160];
	snprintf(needle, sizeof needle, "\n%s ", key);
	if (!strstr(d->text, needle)) {
		fprintf(stderr, "  docs/configuration.md does not list '%s'\n", key);
		d->missing++;
	}
}

static void test_every_key_is_documented(void)
{
	const char *top = getenv("NUDGE_TEST_TOP");
	char p[1024];
	snprintf(p, sizeof p, "%s/docs/configuration.md", top ? top : ".");
	FILE *f = fopen(p, "r");
	ASSERT(f != NULL);
	static char text[65536];
	size_t n = fread(text, 1, sizeof text - 1, f);
	fclose(f);
	text[n] = '\0';
	struct doc d = {text, 0};
	ng_conf_describe(check_documented, &d);
	ASSERT_EQ_INT(d.missing, 0);
}

NG_TESTS(NG_TEST(test_every_key_is_documented), NG_TEST(test_valid_with_defaults), NG_TEST(test_unknown_key), NG_TEST(test_wrong_type),
	 NG_TEST(test_missing_required), NG_TEST(test_bad_value),
	 NG_TEST(test_syntax_and_runtime_errors), NG_TEST(test_env_secret),
	 NG_TEST(test_file_secret), NG_TEST(test_missing_file),
	 NG_TEST(test_shipped_example_is_valid))
