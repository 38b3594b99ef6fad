/*
 * serve_proc.c — helpers for tests that run `nudge serve` as a subprocess (see serve_proc.h).
 */
#include "serve_proc.h"
#include "migrate.h"
#include "ng.h"
#include "paths.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <curl/curl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

void ng_test_schema_open(struct ng_test_schema *s)
{
	static int n;
	snprintf(s->name, sizeof s->name, "ng_test_%d_%d", (int)getpid(), n++);
	snprintf(s->conninfo, sizeof s->conninfo, "%s options='-c search_path=%s'", ng_test_pg(),
	         s->name);
	char *sql = ng_xasprintf("CREATE SCHEMA %s", s->name);
	ng_test_pg_exec(sql);
	free(sql);
	char *dir = ng_paths_shipped("sql"), err[512];
	int applied;
	ASSERT(dir != NULL);
	if (ng_migrate_run(s->conninfo, dir, &applied, err, sizeof err))
		ng_test_fail(__FILE__, __LINE__, "migrate: %s", err);
	free(dir);
	s->pg = PQconnectdb(s->conninfo);
	ASSERT_EQ_INT(PQstatus(s->pg), CONNECTION_OK);
	PQclear(PQexec(s->pg, "SET client_min_messages = warning"));
}

void ng_test_schema_close(struct ng_test_schema *s)
{
	PQfinish(s->pg);
	s->pg = NULL;
}

long long ng_test_q1(PGconn *pg, const char *fmt, ...)
{
	char sql[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sql, sizeof sql, fmt, ap);
	va_end(ap);
	PGresult *r = PQexec(pg, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		ng_test_fail(__FILE__, __LINE__, "%s: %s", sql, PQresultErrorMessage(r));
	long long v =
	    PQntuples(r) == 0 || PQgetisnull(r, 0, 0) ? -1 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return v;
}

const char *ng_test_build_dir(void)
{
	static char p[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", p, sizeof p - 16);
	ASSERT(n > 0);
	p[n] = '\0';
	*strrchr(p, '/') = '\0'; /* BUILD/tests */
	*strrchr(p, '/') = '\0'; /* BUILD */
	return p;
}

int ng_test_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	ASSERT_EQ_INT(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	socklen_t len = sizeof a;
	getsockname(fd, (struct sockaddr *)&a, &len);
	close(fd);
	return ntohs(a.sin_port);
}

pid_t ng_test_serve_spawn(const char *conf, const char *log)
{
	char bin[PATH_MAX];
	snprintf(bin, sizeof bin, "%s/nudge", ng_test_build_dir());
	pid_t parent = getpid();
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		/* A test that fails or times out must not leave its daemon running (and sending).
		 */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		execl(bin, "nudge", "serve", "--config", conf, (char *)NULL);
		_exit(127);
	}
	return pid;
}

int ng_test_serve_wait(pid_t pid, int ms)
{
	uint64_t deadline = ng_test_now_ms() + (uint64_t)ms;
	for (;;) {
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (ng_test_now_ms() > deadline)
			return -1;
		usleep(5000);
	}
}

char *ng_test_header(const char *data, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = data; p && *p; p = strstr(p, "\r\n")) {
		if (p != data)
			p += 2;
		if (p[0] == '\r' && p[1] == '\n')
			return NULL; /* end of the header */
		if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
			p += n + 1;
			while (*p == ' ')
				p++;
			return ng_xstrndup(p, strcspn(p, "\r\n"));
		}
	}
	return NULL;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

void ng_test_qp_decode(const char *in, size_t len, char *out, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < len && o < cap - 1; i++) {
		if (in[i] == '=' && i + 2 < len && in[i + 1] == '\r' && in[i + 2] == '\n') {
			i += 2;
		} else if (in[i] == '=' && i + 2 < len) {
			out[o++] = (char)(hexval(in[i + 1]) * 16 + hexval(in[i + 2]));
			i += 2;
		} else {
			out[o++] = in[i];
		}
	}
	out[o] = '\0';
}

char *ng_test_nudge(const char *const *args, int *status)
{
	int fds[2];
	ASSERT_EQ_INT(pipe(fds), 0);
	char bin[PATH_MAX];
	snprintf(bin, sizeof bin, "%s/nudge", ng_test_build_dir());
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		const char *argv[32];
		int n = 0;
		argv[n++] = "nudge";
		for (; args[n - 1] && n < 31; n++)
			argv[n] = args[n - 1];
		argv[n] = NULL;
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	size_t cap = 1 << 16, len = 0;
	char *out = ng_xmalloc(cap);
	for (;;) {
		if (len + 4096 > cap)
			out = ng_xrealloc(out, cap *= 2);
		ssize_t n = read(fds[0], out + len, cap - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	out[len] = '\0';
	close(fds[0]);
	int st;
	ASSERT_EQ_INT(waitpid(pid, &st, 0), pid);
	*status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	return out;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct ng_test_body *b = arg;
	size_t k = size * n;
	if (b->len + k >= sizeof b->buf)
		k = sizeof b->buf - 1 - b->len;
	memcpy(b->buf + b->len, p, k);
	b->len += k;
	b->buf[b->len] = '\0';
	return size * n;
}

long ng_test_http(const char *method, const char *url, const char *post, const char *const *headers,
                  struct ng_test_body *b, int *redirected)
{
	CURL *c = curl_easy_init();
	b->len = 0;
	b->buf[0] = '\0';
	struct curl_slist *h = NULL;
	for (size_t i = 0; headers && headers[i]; i++)
		h = curl_slist_append(h, headers[i]);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "nudge-test-client");
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	if (strcmp(method, "POST") == 0)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, post ? post : "");
	ASSERT_EQ_INT(curl_easy_perform(c), CURLE_OK);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	char *loc = NULL;
	curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &loc);
	if (redirected)
		*redirected = loc != NULL;
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	return status;
}
