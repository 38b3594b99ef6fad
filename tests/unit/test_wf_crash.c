/*
 * test_wf_crash.c — the runtime on the real clock with real leases: a runtime killed with SIGKILL
 * mid-flight (several times) and a fresh one finishing the work, and two runtimes sharing one
 * database — two engines in this process, and two real `nudge serve` daemons. Either way every
 * instance completes and every (instance, step) has exactly one journal row and each send step
 * exactly one outbox row. (`make chaos` runs the long versions: tests/chaos/chaos_wf.sh.)
 */
#include "../testlib.h"

#include "ng.h"
#include "wf_harness.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <valgrind/valgrind.h>

static const char *steps_src =
    "return { name = 'steps', trigger = {manual = true}, run = function(ctx)\n"
    "  for i = 1, 4 do\n"
    "    ctx.send{channel = 'email', template = 'step' .. i}\n"
    "    ctx.wait('100ms')\n"
    "  end end }\n";

static char *write_workflow(void)
{
	char *dir = ng_xstrdup("/tmp/ng-wf-crash-XXXXXX");
	ASSERT(mkdtemp(dir) != NULL);
	char *p = ng_xasprintf("%s/steps.lua", dir);
	FILE *f = fopen(p, "w");
	fputs(steps_src, f);
	fclose(f);
	free(p);
	return dir;
}

static long long q1(PGconn *pg, const char *sql)
{
	PGresult *r = PQexec(pg, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		ng_test_fail(__FILE__, __LINE__, "%s: %s", sql, PQresultErrorMessage(r));
	long long v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return v;
}

/* One runtime: its own pool, real clock and engine, on a shared loop. */
struct node {
	ng_db *db;
	struct ng_clock *clock;
	struct ng_wf_engine *e;
	int closed;
	struct ng_wf_stats st; /* as the engine closed */
};

static void on_deployed(int status, const char *err, void *arg)
{
	struct node *n = arg;
	if (status)
		ng_test_fail(__FILE__, __LINE__, "deploy: %s", err);
	ng_wf_engine_start(n->e);
}

static void node_open(struct node *n, uv_loop_t *loop, const char *conninfo, const char *owner)
{
	memset(n, 0, sizeof(*n));
	struct ng_db_options dbo = {.conninfo = conninfo, .pool_size = 2};
	ASSERT_EQ_INT(ng_db_open(&n->db, loop, &dbo), 0);
	n->clock = ng_clock_real(loop);
	struct ng_wf_options wo = {.loop = loop,
	                           .db = n->db,
	                           .clock = n->clock,
	                           .owner = owner,
	                           .lease_ms = 1000,
	                           .poll_ms = 100,
	                           .listen = 1,
	                           .batch = 16};
	ASSERT_EQ_INT(ng_wf_engine_open(&n->e, &wo), 0);
	ASSERT_EQ_INT(ng_wf_engine_deploy(n->e, NULL, on_deployed, n), 0);
}

static void on_part_closed(void *arg)
{
	(*(int *)arg)++;
}

static void on_engine_closed(void *arg)
{
	struct node *n = arg;
	ng_db_close(n->db, on_part_closed, &n->closed);
	ng_clock_close(n->clock, on_part_closed, &n->closed);
}

struct watch {
	uv_timer_t t;
	PGconn *pg;
	struct node *nodes;
	int nnodes;
	uint64_t deadline;
};

static void on_watch(uv_timer_t *t)
{
	struct watch *w = t->data;
	long long left = q1(w->pg, "SELECT count(*) FROM instances WHERE status <> 'completed'");
	if (left > 0 && ng_test_now_ms() < w->deadline)
		return;
	uv_timer_stop(t);
	uv_close((uv_handle_t *)t, NULL);
	for (int i = 0; i < w->nnodes; i++)
		ng_wf_engine_stats(w->nodes[i].e, &w->nodes[i].st);
	for (int i = 0; i < w->nnodes; i++)
		ng_wf_engine_close(w->nodes[i].e, on_engine_closed, &w->nodes[i]);
}

/* Runs the nodes until every instance completed (or the deadline), then closes them. */
static void run_nodes(uv_loop_t *loop, PGconn *pg, struct node *nodes, int n, int timeout_ms)
{
	struct watch w = {.pg = pg,
	                  .nodes = nodes,
	                  .nnodes = n,
	                  .deadline = ng_test_now_ms() + (uint64_t)timeout_ms};
	uv_timer_init(loop, &w.t);
	w.t.data = &w;
	uv_timer_start(&w.t, on_watch, 100, 100);
	uv_run(loop, UV_RUN_DEFAULT);
	for (int i = 0; i < n; i++)
		ASSERT_EQ_INT(nodes[i].closed, 2);
}

static struct ng_wf_harness *setup(char **dir, int instances)
{
	*dir = write_workflow();
	struct ng_wf_harness_options o = {
	    .conninfo = ng_test_pg(), .workflows_dir = *dir, .isolate = 1};
	struct ng_wf_harness *h;
	char *err = NULL;
	if (ng_wf_harness_open(&h, &o, &err))
		ng_test_fail(__FILE__, __LINE__, "harness: %s", err);
	char *sql = ng_xasprintf(
	    "WITH c AS (INSERT INTO customers (first_name) SELECT 'c' || g"
	    " FROM generate_series(1, %d) g RETURNING id)"
	    " INSERT INTO instances (customer_id, workflow, version, key, status, wake_at)"
	    " SELECT id, 'steps', 1, id::text, 'ready', now() FROM c",
	    instances);
	PQclear(PQexec(ng_wf_harness_pg(h), sql));
	free(sql);
	return h;
}

static void check_exactly_once(PGconn *pg, int instances)
{
	ASSERT_EQ_INT(q1(pg, "SELECT count(*) FROM instances WHERE status <> 'completed'"), 0);
	ASSERT_EQ_INT(q1(pg, "SELECT count(*) FROM messages"), instances * 4);
	ASSERT_EQ_INT(q1(pg, "SELECT count(*) FROM effects"), instances * 8);
	/* Every outbox row belongs to a journaled send step with the same sequence number. */
	ASSERT_EQ_INT(q1(pg, "SELECT count(*) FROM messages m LEFT JOIN effects e"
	                     " ON e.customer_id = m.customer_id AND e.instance_id = m.instance_id"
	                     " AND e.seq = m.seq AND e.kind = 'send' WHERE e.seq IS NULL"),
	              0);
	ASSERT_EQ_INT(q1(pg, "SELECT count(*) FROM (SELECT instance_id, template FROM messages"
	                     " GROUP BY 1, 2 HAVING count(*) > 1) d"),
	              0);
}

static void test_kill_and_restart(void)
{
	const int instances = RUNNING_ON_VALGRIND ? 20 : 100;
	char *dir;
	struct ng_wf_harness *h = setup(&dir, instances);
	PGconn *pg = ng_wf_harness_pg(h);
	const char *ci = ng_wf_harness_conninfo(h);
	srand((unsigned)getpid());
	for (int round = 0; round < 3; round++) {
		pid_t pid = fork();
		ASSERT(pid >= 0);
		if (pid == 0) {
			uv_loop_t loop;
			uv_loop_init(&loop);
			struct node n;
			node_open(&n, &loop, ci, "victim");
			uv_run(&loop, UV_RUN_DEFAULT);
			_exit(0);
		}
		usleep((useconds_t)(50000 + rand() % 200000));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	long long done_before = q1(pg, "SELECT count(*) FROM instances WHERE status = 'completed'");
	ng_info("test", "after the kills: %lld of %d instances completed, %lld of %d sends queued",
	        done_before, instances, q1(pg, "SELECT count(*) FROM messages"), instances * 4);
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct node n;
	node_open(&n, &loop, ci, "survivor");
	run_nodes(&loop, pg, &n, 1, 60000);
	ASSERT_EQ_INT(uv_loop_close(&loop), 0);
	check_exactly_once(pg, instances);
	ng_wf_harness_close(h);
	char *cmd = ng_xasprintf("rm -rf '%s'", dir);
	ASSERT_EQ_INT(system(cmd), 0);
	free(cmd);
	free(dir);
}

static void test_two_runtimes_share_work(void)
{
	const int instances = RUNNING_ON_VALGRIND ? 40 : 300;
	char *dir;
	struct ng_wf_harness *h = setup(&dir, instances);
	PGconn *pg = ng_wf_harness_pg(h);
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct node n[2];
	node_open(&n[0], &loop, ng_wf_harness_conninfo(h), "node-a");
	node_open(&n[1], &loop, ng_wf_harness_conninfo(h), "node-b");
	run_nodes(&loop, pg, n, 2, 60000);
	ASSERT_EQ_INT(uv_loop_close(&loop), 0);
	check_exactly_once(pg, instances);
	/* Both did work; between them every send was recorded once. */
	ng_info("test",
	        "node-a: %llu activations, %llu sends; node-b: %llu activations, %llu sends",
	        (unsigned long long)n[0].st.activations, (unsigned long long)n[0].st.sends,
	        (unsigned long long)n[1].st.activations, (unsigned long long)n[1].st.sends);
	ASSERT_CMP_INT(n[0].st.activations, >, 0);
	ASSERT_CMP_INT(n[1].st.activations, >, 0);
	ASSERT_EQ_INT(n[0].st.sends + n[1].st.sends, instances * 4);
	ASSERT_CMP_INT(q1(pg, "SELECT count(DISTINCT lease_owner) FROM instances"), ==, 0);
	ng_wf_harness_close(h);
	char *cmd = ng_xasprintf("rm -rf '%s'", dir);
	ASSERT_EQ_INT(system(cmd), 0);
	free(cmd);
	free(dir);
}

/* The nudge binary of the build this test belongs to: BUILD/tests/test_wf_crash → BUILD/nudge. */
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

static pid_t serve(const char *conf, const char *log)
{
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 2);
		dup2(fd, 1);
		execl(nudge_bin(), "nudge", "serve", "--config", conf, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* The activations a drained daemon reported ("engine … closing: activations=N …"). */
static long long activations_in(const char *log)
{
	FILE *f = fopen(log, "r");
	ASSERT(f != NULL);
	char line[2048];
	long long n = -1;
	while (fgets(line, sizeof line, f)) {
		const char *a = strstr(line, "activations=");
		if (a)
			n = strtoll(a + 12, NULL, 10);
	}
	fclose(f);
	return n;
}

static void test_two_daemons_share_work(void)
{
	const int instances = RUNNING_ON_VALGRIND ? 40 : 400;
	char *dir;
	struct ng_wf_harness *h = setup(&dir, instances);
	PGconn *pg = ng_wf_harness_pg(h);
	char *conf = ng_xasprintf("%s/nudge.conf.lua", dir);
	FILE *f = fopen(conf, "w");
	ASSERT(f != NULL);
	fprintf(f,
	        "return {\n  database = { conninfo = \"%s\", pool_size = 2 },\n"
	        "  http = { listen = \"127.0.0.1:0\" },\n  paths = { workflows = \"%s\" },\n"
	        "  workflows = { lease_ms = 1000, poll_ms = 100, batch = 16 },\n}\n",
	        ng_wf_harness_conninfo(h), dir);
	fclose(f);
	char *log_a = ng_xasprintf("%s/a.log", dir), *log_b = ng_xasprintf("%s/b.log", dir);
	pid_t a = serve(conf, log_a), b = serve(conf, log_b);
	uint64_t deadline = ng_test_now_ms() + 90000;
	while (q1(pg, "SELECT count(*) FROM instances WHERE status <> 'completed'") > 0 &&
	       ng_test_now_ms() < deadline)
		usleep(100000);
	kill(a, SIGTERM);
	kill(b, SIGTERM);
	int st_a, st_b;
	ASSERT_EQ_INT(waitpid(a, &st_a, 0), a);
	ASSERT_EQ_INT(waitpid(b, &st_b, 0), b);
	ASSERT(WIFEXITED(st_a) && WEXITSTATUS(st_a) == 0);
	ASSERT(WIFEXITED(st_b) && WEXITSTATUS(st_b) == 0);
	check_exactly_once(pg, instances);
	long long na = activations_in(log_a), nb = activations_in(log_b);
	ng_info("test", "two daemons, %d instances: %lld and %lld activations", instances, na, nb);
	ASSERT_CMP_INT(na, >, 0);
	ASSERT_CMP_INT(nb, >, 0);
	ng_wf_harness_close(h);
	char *cmd = ng_xasprintf("rm -rf '%s'", dir);
	ASSERT_EQ_INT(system(cmd), 0);
	free(cmd);
	free(log_a);
	free(log_b);
	free(conf);
	free(dir);
}

NG_TESTS(NG_TEST(test_kill_and_restart), NG_TEST(test_two_runtimes_share_work),
         NG_TEST(test_two_daemons_share_work), )
