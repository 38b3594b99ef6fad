/*
 * serve_proc.h — for tests that drive the real daemon: a private schema migrated by this build,
 * `nudge serve` of the test's own build as a subprocess with a generated configuration, a free
 * loopback port, and the SMTP stand-in's received messages read back by header.
 */
#ifndef NG_SERVE_PROC_H
#define NG_SERVE_PROC_H

#include <libpq-fe.h>
#include <stddef.h>
#include <sys/types.h>

/* A fresh schema in the test cluster with every migration applied; conninfo selects it. */
struct ng_test_schema {
	char name[64];
	char conninfo[1024];
	PGconn *pg; /* a blocking connection with that search_path */
};
void ng_test_schema_open(struct ng_test_schema *s);
void ng_test_schema_close(struct ng_test_schema *s);
/* One value of a one-row query (printf-style); -1 for NULL. Fails the test on error. */
long long ng_test_q1(PGconn *pg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The directory of this test's build (BUILD/tests/test_x → BUILD). Static buffer. */
const char *ng_test_build_dir(void);
/* A free loopback TCP port (bind port 0, read it, close). */
int ng_test_free_port(void);

/* `BUILD/nudge serve --config conf`, stdout and stderr appended to log. */
pid_t ng_test_serve_spawn(const char *conf, const char *log);
/* Waits up to ms for pid; its exit status (128 + signal if killed), or -1 on timeout. */
int ng_test_serve_wait(pid_t pid, int ms);

/* The value of header `name` in a received message (CRLF text), malloc'd; NULL if absent. */
char *ng_test_header(const char *data, const char *name);

/* An HTTP response body, truncated to fit. */
struct ng_test_body {
	char buf[8192];
	size_t len;
};
/* A request with User-Agent nudge-test-client: post is the POST body (NULL: empty), headers a
 * NULL-terminated list of "Name: value" lines or NULL. The status; *redirected (when not NULL)
 * says whether a Location came back. Fails the test when the request cannot be made. */
long ng_test_http(const char *method, const char *url, const char *post, const char *const *headers,
                  struct ng_test_body *b, int *redirected);

/* Runs `BUILD/nudge ARGS…` (args NULL-terminated, without the program name) and returns its
 * standard output (malloc'd); *status is its exit status (-1 if killed). */
char *ng_test_nudge(const char *const *args, int *status);

/* Decodes quoted-printable (soft breaks joined; CRLF hard breaks stay CRLF) into out. */
void ng_test_qp_decode(const char *in, size_t len, char *out, size_t cap);

#endif
