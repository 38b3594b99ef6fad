/*
 * test_serve.c — the `nudge` binary end to end: usage on bad invocations, a bad config refused with
 * its sentence, `nudge serve` answering /healthz, reloading on SIGHUP, and draining on SIGTERM to
 * exit status 0.
 */
#include "testlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* The nudge binary of the build this test belongs to: BUILD/tests/test_serve → BUILD/nudge. */
static const char *nudge_bin(void)
{
	static char p[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", p, sizeof p - 16);
	ASSERT(n > 0);
	p[n] = '\0';
	char *slash = strrchr(p, '/');
	*slash = '\0';
	slash = strrchr(p, '/');
	strcpy(slash, "/nudge");
	return p;
}

struct proc {
	pid_t pid;
	int err_fd; /* read end of the child's stderr */
	char out[16384];
	size_t outlen;
};

static void spawn(struct proc *p, char *const argv[])
{
	int fds[2];
	ASSERT_EQ_INT(pipe(fds), 0);
	p->pid = fork();
	ASSERT(p->pid >= 0);
	if (p->pid == 0) {
		dup2(fds[1], 2);
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execv(nudge_bin(), argv);
		_exit(127);
	}
	close(fds[1]);
	p->err_fd = fds[0];
	fcntl(p->err_fd, F_SETFL, O_NONBLOCK);
	p->outlen = 0;
	p->out[0] = '\0';
}

static void drain_output(struct proc *p)
{
	for (;;) {
		ssize_t n = read(p->err_fd, p->out + p->outlen, sizeof p->out - 1 - p->outlen);
		if (n <= 0)
			break;
		p->outlen += (size_t)n;
		p->out[p->outlen] = '\0';
	}
}

/* Waits up to ms for the child to exit; returns its exit status, or -1 on timeout. */
static int wait_exit(struct proc *p, int ms)
{
	uint64_t deadline = ng_test_now_ms() + (uint64_t)ms;
	for (;;) {
		drain_output(p);
		int st;
		pid_t w = waitpid(p->pid, &st, WNOHANG);
		if (w == p->pid) {
			drain_output(p);
			close(p->err_fd);
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		}
		if (ng_test_now_ms() > deadline)
			return -1;
		usleep(5000);
	}
}

static int run(char *const argv[], struct proc *p)
{
	spawn(p, argv);
	return wait_exit(p, 10000);
}

static void test_usage_on_bad_invocation(void)
{
	struct proc p;
	ASSERT_EQ_INT(run((char *const[]){"nudge", NULL}, &p), 2);
	ASSERT_CONTAINS(p.out, "usage: nudge COMMAND");
	ASSERT_EQ_INT(run((char *const[]){"nudge", "frobnicate", NULL}, &p), 2);
	ASSERT_CONTAINS(p.out, "unknown command 'frobnicate'");
	ASSERT_EQ_INT(run((char *const[]){"nudge", "serve", "--bogus", NULL}, &p), 2);
	ASSERT_CONTAINS(p.out, "usage: nudge serve");
	ASSERT_EQ_INT(run((char *const[]){"nudge", "config", NULL}, &p), 2);
	ASSERT_CONTAINS(p.out, "usage: nudge config");
	ASSERT_EQ_INT(run((char *const[]){"nudge", "migrate", "--config", NULL}, &p), 2);
	ASSERT_EQ_INT(run((char *const[]){"nudge", "version", NULL}, &p), 0);
	ASSERT_CONTAINS(p.out, "nudge 0.");
	ASSERT_EQ_INT(run((char *const[]){"nudge", "help", NULL}, &p), 0);
	ASSERT_CONTAINS(p.out, "serve");
	ASSERT_CONTAINS(p.out, "migrate");
}

static char conf_path[64];

static void write_conf(const char *text)
{
	snprintf(conf_path, sizeof conf_path, "/tmp/ng-serve-XXXXXX");
	int fd = mkstemp(conf_path);
	ASSERT(fd >= 0);
	ASSERT_EQ_INT(write(fd, text, strlen(text)), (long long)strlen(text));
	close(fd);
}

static void test_bad_config_stops_startup(void)
{
	write_conf("return {\n  database = { conninfo = 'x' },\n  log = { level = 'loud' },\n}\n");
	struct proc p;
	int rc = run((char *const[]){"nudge", "serve", "--config", conf_path, NULL}, &p);
	ASSERT_EQ_INT(rc, 1);
	char want[256];
	snprintf(want, sizeof want,
		 "%s:3: key 'log.level' must be one of debug/info/warn/error, not \"loud\"",
		 conf_path);
	ASSERT_CONTAINS(p.out, want);
	ASSERT_EQ_INT(run((char *const[]){"nudge", "config", "check", conf_path, NULL}, &p), 1);
	ASSERT_CONTAINS(p.out, want);
	unlink(conf_path);
}

/* A free loopback port: bind port 0, read it, close. */
static int free_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	ASSERT_EQ_INT(bind(s, (struct sockaddr *)&a, sizeof a), 0);
	socklen_t len = sizeof a;
	getsockname(s, (struct sockaddr *)&a, &len);
	close(s);
	return ntohs(a.sin_port);
}

/* One HTTP/1.0 GET; returns the status code and copies the body. -1 if nothing answered. */
static int http_get(int port, const char *path, char *body, size_t cap)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
		close(s);
		return -1;
	}
	char req[256];
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			 path);
	ASSERT_EQ_INT(write(s, req, (size_t)n), n);
	static char resp[65536];
	size_t len = 0;
	ssize_t r;
	while ((r = read(s, resp + len, sizeof resp - 1 - len)) > 0)
		len += (size_t)r;
	close(s);
	resp[len] = '\0';
	int status = -1;
	sscanf(resp, "HTTP/1.%*d %d", &status);
	const char *b = strstr(resp, "\r\n\r\n");
	snprintf(body, cap, "%s", b ? b + 4 : "");
	return status;
}

static void test_serve_healthz_reload_and_drain(void)
{
	int port = free_port();
	char conf[512];
	snprintf(conf, sizeof conf,
		 "return {\n  database = { conninfo = '%s', pool_size = 2 },\n"
		 "  http = { listen = '127.0.0.1:%d' },\n  shutdown_timeout_ms = 5000,\n}\n",
		 ng_test_pg(), port);
	write_conf(conf);
	struct proc p;
	spawn(&p, (char *const[]){"nudge", "serve", "--config", conf_path, NULL});
	char body[4096];
	int status = -1;
	for (int i = 0; i < 200 && status != 200; i++) {
		usleep(25000);
		status = http_get(port, "/healthz", body, sizeof body);
	}
	drain_output(&p);
	if (status != 200)
		ng_test_fail(__FILE__, __LINE__, "healthz: %d %s; log:\n%s", status, body, p.out);
	ASSERT_CONTAINS(body, "\"status\":\"ok\"");
	ASSERT_CONTAINS(body, "\"database\"");
	ASSERT_CONTAINS(body, "\"loop_lag_ms\"");
	ASSERT_EQ_INT(http_get(port, "/nope", body, sizeof body), 404);
	/* The shared HTTP client is one of the components, and /metrics shows it. */
	static char metrics[65536];
	ASSERT_EQ_INT(http_get(port, "/metrics", metrics, sizeof metrics), 200);
	ASSERT_CONTAINS(metrics, "nudge_http_client_in_flight 0");

	/* SIGHUP re-reads the file: switch the log to JSON and see it take effect. */
	snprintf(conf, sizeof conf,
		 "return {\n  database = { conninfo = '%s', pool_size = 2 },\n"
		 "  http = { listen = '127.0.0.1:%d' },\n  log = { format = 'json' },\n}\n",
		 ng_test_pg(), port);
	FILE *f = fopen(conf_path, "w");
	fputs(conf, f);
	fclose(f);
	kill(p.pid, SIGHUP);
	for (int i = 0; i < 200 && !strstr(p.out, "\"msg\":\"reloaded"); i++) {
		usleep(10000);
		drain_output(&p);
	}
	ASSERT_CONTAINS(p.out, "\"msg\":\"reloaded");

	uint64_t t0 = ng_test_now_ms();
	kill(p.pid, SIGTERM);
	int rc = wait_exit(&p, 10000);
	if (rc != 0)
		ng_test_fail(__FILE__, __LINE__, "exit status %d; log:\n%s", rc, p.out);
	ASSERT_CMP_INT(ng_test_now_ms() - t0, <, 5000);
	ASSERT_CONTAINS(p.out, "draining");
	ASSERT_CONTAINS(p.out, "drained");
	unlink(conf_path);
}

static void test_port_in_use_is_refused(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	ASSERT_EQ_INT(bind(s, (struct sockaddr *)&a, sizeof a), 0);
	ASSERT_EQ_INT(listen(s, 1), 0);
	socklen_t len = sizeof a;
	getsockname(s, (struct sockaddr *)&a, &len);
	char conf[512];
	snprintf(conf, sizeof conf,
		 "return {\n  database = { conninfo = '%s' },\n"
		 "  http = { listen = '127.0.0.1:%d' },\n}\n",
		 ng_test_pg(), ntohs(a.sin_port));
	write_conf(conf);
	struct proc p;
	int rc = run((char *const[]){"nudge", "serve", "--config", conf_path, NULL}, &p);
	close(s);
	ASSERT_EQ_INT(rc, 1);
	ASSERT_CONTAINS(p.out, "address already in use");
	unlink(conf_path);
}

NG_TESTS(NG_TEST(test_usage_on_bad_invocation), NG_TEST(test_bad_config_stops_startup),
	 NG_TEST(test_serve_healthz_reload_and_drain), NG_TEST(test_port_in_use_is_refused))
