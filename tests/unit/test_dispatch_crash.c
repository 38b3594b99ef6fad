/*
 * test_dispatch_crash.c — the crash test: messages queued in PostgreSQL, `nudge serve` (this
 * build's binary, as a subprocess) sending them to the SMTP stand-in and SIGKILLed ten times
 * mid-flight, then restarted until the outbox is empty. Every message must reach the sink at least
 * once; copies beyond the first may only come from the sends in flight at a kill (at most the
 * channel's concurrency per kill), and every copy of a message carries the same Message-ID.
 *
 * NG_CHAOS_MESSAGES sets the count (default 10000; it takes about 15 s on the normal build).
 */
#include "ng.h"
#include "support/serve_proc.h"
#include "support/smtp_standin.h"
#include "testlib.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <valgrind/valgrind.h>

#define KILLS       10
#define CONCURRENCY 8

static void write_config(const char *path, const struct ng_test_schema *sc, int http_port,
                         int smtp_port, const char *wfdir)
{
	FILE *f = fopen(path, "w");
	ASSERT(f != NULL);
	fprintf(f,
	        "return {\n"
	        "  database = { conninfo = [[%s]], pool_size = 2 },\n"
	        "  http = { listen = \"127.0.0.1:%d\" },\n"
	        "  log = { level = \"warn\" },\n"
	        "  store = { base_url = \"https://shop.example\" },\n"
	        "  paths = { plugins = \"%s/plugins\", workflows = \"%s\",\n"
	        "    templates = \"%s/tests/templates\" },\n"
	        "  unsubscribe = { secret = \"chaos\" },\n"
	        "  dispatch = { lease_ms = 3000, poll_ms = 200, retry_base_ms = 200,"
	        " retry_max_ms = 1000 },\n"
	        "  channels = { { name = \"email\", plugin = \"smtp\", concurrency = %d,"
	        " config = {\n"
	        "    host = \"127.0.0.1\", port = %d, starttls = \"off\", timeout_ms = 5000,\n"
	        "    from = \"shop@example.com\" } } },\n"
	        "  shutdown_timeout_ms = 10000,\n"
	        "}\n",
	        sc->conninfo, http_port, ng_test_build_dir(), wfdir, getenv("NUDGE_TEST_TOP"),
	        CONCURRENCY, smtp_port);
	fclose(f);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_kill_ten_times_lose_nothing(void)
{
	const char *env = getenv("NG_CHAOS_MESSAGES");
	int n = env ? atoi(env) : 10000;
	if (RUNNING_ON_VALGRIND)
		n = 200;
	struct ng_test_schema sc;
	ng_test_schema_open(&sc);
	ng_test_q1(sc.pg,
	           "WITH c AS (INSERT INTO customers (email) SELECT 'c' || g || '@example.org'"
	           " FROM generate_series(1, %d) g RETURNING id),"
	           " m AS (INSERT INTO messages (customer_id, channel, template, purpose, data)"
	           "  SELECT id, 'email', 'chaos', 'transactional',"
	           "  jsonb_build_object('subject', 'chaos ' || id) FROM c RETURNING 1)"
	           " SELECT count(*) FROM m",
	           n);
	struct ng_smtp_standin *s;
	ASSERT_EQ_INT(ng_smtp_standin_start(&s, NULL), 0);
	char wfdir[64] = "/tmp/nudge-chaos-XXXXXX", conf[128], log[128];
	ASSERT(mkdtemp(wfdir) != NULL);
	snprintf(conf, sizeof conf, "%s/nudge.conf.lua", wfdir);
	snprintf(log, sizeof log, "%s/nudge.log", wfdir);
	char wf[96];
	snprintf(wf, sizeof wf, "%s/wf", wfdir); /* no workflows: only the outbox */
	ASSERT_EQ_INT(mkdir(wf, 0700), 0);
	write_config(conf, &sc, ng_test_free_port(), ng_smtp_standin_port(s), wf);

	srand((unsigned)getpid());
	for (int k = 0; k < KILLS; k++) {
		/* Wait for sending to be under way (the first start also connects and deploys). */
		long long before =
		    ng_test_q1(sc.pg, "SELECT count(*) FROM messages WHERE status = 'sent'");
		pid_t pid = ng_test_serve_spawn(conf, log);
		uint64_t deadline = ng_test_now_ms() + 20000;
		while (ng_test_q1(sc.pg, "SELECT count(*) FROM messages WHERE status = 'sent'") <=
		           before &&
		       ng_test_now_ms() < deadline && before < n)
			usleep(2000);
		usleep((useconds_t)(rand() % 150000));
		kill(pid, SIGKILL);
		ASSERT_EQ_INT(ng_test_serve_wait(pid, 10000), 128 + SIGKILL);
	}
	long long sent_before =
	    ng_test_q1(sc.pg, "SELECT count(*) FROM messages WHERE status = 'sent'");
	ng_info("test", "after %d kills: %lld of %d sent", KILLS, sent_before, n);

	pid_t pid = ng_test_serve_spawn(conf, log);
	uint64_t deadline = ng_test_now_ms() + 120000;
	while (ng_test_q1(sc.pg, "SELECT count(*) FROM messages WHERE status = 'sent'") < n &&
	       ng_test_now_ms() < deadline)
		usleep(20000);
	kill(pid, SIGTERM);
	int st = ng_test_serve_wait(pid, 20000);
	if (st != 0) {
		char *cmd = ng_xasprintf("tail -n 30 '%s' >&2", log);
		ASSERT_EQ_INT(system(cmd), 0);
		free(cmd);
	}
	ASSERT_EQ_INT(st, 0);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(*) FROM messages WHERE status = 'sent'"), n);

	/* What reached the sink: subject → copies, each with its Message-ID. */
	struct ng_smtp_standin_stats sst;
	ng_smtp_standin_stats(s, &sst);
	char **keys = ng_xcalloc((size_t)sst.received + 1, sizeof *keys);
	int nk = 0;
	for (int i = 0; i < sst.received; i++) {
		struct ng_smtp_received rc;
		ASSERT_EQ_INT(ng_smtp_standin_received(s, i, &rc), 0);
		char *subj = ng_test_header(rc.data, "Subject");
		char *mid = ng_test_header(rc.data, "Message-ID");
		ASSERT(subj && mid);
		keys[nk++] = ng_xasprintf("%s\t%s", subj, mid);
		free(subj);
		free(mid);
		ng_smtp_received_free(&rc);
	}
	qsort(keys, (size_t)nk, sizeof *keys, cmp_str);
	int distinct = 0, dups = 0;
	for (int i = 0; i < nk; i++) {
		const char *tab = strchr(keys[i], '\t');
		if (i > 0 && strncmp(keys[i], keys[i - 1], (size_t)(tab - keys[i]) + 1) == 0) {
			dups++;
			/* A copy of the same message: the whole line (subject and Message-ID)
			 * matches. */
			if (strcmp(keys[i], keys[i - 1]) != 0)
				ng_test_fail(__FILE__, __LINE__, "copies differ: %s / %s",
				             keys[i - 1], keys[i]);
		} else {
			distinct++;
		}
	}
	for (int i = 0; i < nk; i++)
		free(keys[i]);
	free(keys);
	int lost = n - distinct;
	printf("# crash test: %d messages, %d kills: lost %d, duplicated %d (bound %d)\n", n, KILLS,
	       lost, dups, KILLS * CONCURRENCY);
	fflush(stdout);
	ASSERT_EQ_INT(lost, 0);
	ASSERT_CMP_INT(dups, <=, KILLS * CONCURRENCY);
	ASSERT_EQ_INT(ng_test_q1(sc.pg, "SELECT count(DISTINCT message_id) FROM message_attempts"),
	              n);
	ng_smtp_standin_stop(s);
	ng_test_schema_close(&sc);
	char *cmd = ng_xasprintf("rm -rf '%s'", wfdir);
	ASSERT_EQ_INT(system(cmd), 0);
	free(cmd);
}

NG_TESTS(NG_TEST(test_kill_ten_times_lose_nothing), )
