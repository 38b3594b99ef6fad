/*
 * testlib.c — the runner behind testlib.h: one forked child per test, a timeout, a summary.
 */
#include "testlib.h"

#include <errno.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern const struct ng_test ng_test_table[];
extern const size_t ng_test_count;

static const char *current_test = "?";

void ng_test_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "  %s: %s:%d: ", current_test, file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	exit(1);
}

const char *ng_test_pg(void)
{
	const char *ci = getenv("NUDGE_TEST_PG");
	if (!ci || !*ci)
		ng_test_fail(__FILE__, __LINE__, "NUDGE_TEST_PG is not set: run through make check");
	return ci;
}

void ng_test_pg_exec(const char *sql)
{
	PGconn *c = PQconnectdb(ng_test_pg());
	if (PQstatus(c) != CONNECTION_OK)
		ng_test_fail(__FILE__, __LINE__, "connect: %s", PQerrorMessage(c));
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		ng_test_fail(__FILE__, __LINE__, "%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
}

uint64_t ng_test_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int selected(const char *name, int argc, char **argv)
{
	if (argc < 2)
		return 1;
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return 1;
	return 0;
}

/* Runs one test in a child; returns 1 when it passed. */
static int run_forked(const struct ng_test *t, int timeout_s)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 0;
	}
	if (pid == 0) {
		current_test = t->name;
		t->fn();
		fflush(NULL);
		_exit(0);
	}
	int status = 0;
	uint64_t deadline = ng_test_now_ms() + (uint64_t)timeout_s * 1000;
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR) {
			perror("waitpid");
			return 0;
		}
		if (ng_test_now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			fprintf(stderr, "  %s: timed out after %d s\n", t->name, timeout_s);
			return 0;
		}
		usleep(2000);
	}
	if (WIFSIGNALED(status)) {
		fprintf(stderr, "  %s: killed by signal %d\n", t->name, WTERMSIG(status));
		return 0;
	}
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int main(int argc, char **argv)
{
	const char *to = getenv("NG_TEST_TIMEOUT");
	int timeout_s = to ? atoi(to) : 120;
	int nofork = getenv("NG_TEST_NOFORK") != NULL;
	const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	int passed = 0, failed = 0;

	signal(SIGPIPE, SIG_IGN);
	for (const struct ng_test *t = ng_test_table; t < ng_test_table + ng_test_count; t++) {
		if (!selected(t->name, argc, argv))
			continue;
		uint64_t start = ng_test_now_ms();
		int ok;
		if (nofork) {
			current_test = t->name;
			t->fn();
			ok = 1;
		} else {
			ok = run_forked(t, timeout_s);
		}
		printf("%s %s.%s (%" PRIu64 " ms)\n", ok ? "ok" : "not ok", prog, t->name,
		       ng_test_now_ms() - start);
		fflush(stdout);
		if (ok)
			passed++;
		else
			failed++;
	}
	printf("# %s: %d passed, %d failed\n", prog, passed, failed);
	return failed ? 1 : 0;
}
