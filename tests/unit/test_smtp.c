/*
 * test_smtp.c — the smtp plugin against the SMTP stand-in (tests/support/smtp_standin.c), loaded
 * the way the daemon loads it: 250 → sent; 421/451/452 → retry; 550/553/554 → failed and suppressed
 * (a 5.7.x policy refusal or a refused message is not suppressed); silence after DATA → a bounded
 * timeout and a retry; a reset before the final 250 → a retry whose resend carries the same
 * Message-ID; a burst shares one connection; STARTTLS + AUTH with a test CA for 100 sessions in one
 * process; a wrong password or an untrusted certificate → retry, never sent; encoded subjects and
 * quoted-printable bodies decode back to the original text.
 */
#include "clock.h"
#include "config.h"
#include "ng.h"
#include "plugin_host.h"
#include "senders.h"
#include "support/smtp_standin.h"
#include "support/serve_proc.h"
#include "testlib.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the daemon's side: loop, clock, sender threads, plugin host -------------------------- */

struct rig {
	uv_loop_t loop;
	struct ng_clock *clock;
	struct ng_senders *senders;
	struct ng_plugin_host *host;
	struct ng_conf *conf;
	struct ng_plugin *smtp;
	char conf_path[128];
	int closed;
};

struct outcome {
	int calls, status, suppress, code;
	char provider_id[128], reason[300];
};

static void on_done(void *arg, const struct nudge_send_result *r)
{
	struct outcome *o = arg;
	o->calls++;
	o->status = r->status;
	o->suppress = r->suppress;
	o->code = r->code;
	snprintf(o->provider_id, sizeof o->provider_id, "%s", r->provider_id ? r->provider_id : "");
	snprintf(o->reason, sizeof o->reason, "%s", r->reason ? r->reason : "");
}

/* Turns the loop without blocking until *count reaches want (or 20 s pass). */
static void run_until(struct rig *r, const int *count, int want)
{
	uint64_t deadline = ng_test_now_ms() + 20000;
	while (*count < want && ng_test_now_ms() < deadline) {
		uv_run(&r->loop, UV_RUN_NOWAIT);
		if (*count < want)
			usleep(500);
	}
	ASSERT_EQ_INT(*count, want);
}

static void count_closed(void *arg)
{
	(*(int *)arg)++;
}

/* Starts the smtp plugin as instance "email" with the given config table body. */
static void rig_open(struct rig *r, const char *config)
{
	memset(r, 0, sizeof *r);
	if (getenv("NG_TEST_DEBUG")) /* with trace = true in a config: the SMTP conversation */
		ng_log_setup(NG_LOG_DEBUG, NG_LOG_LOGFMT);
	ASSERT_EQ_INT(uv_loop_init(&r->loop), 0);
	r->clock = ng_clock_real(&r->loop);
	ASSERT_EQ_INT(ng_senders_open(&r->senders, &r->loop, 2), 0);
	ASSERT_EQ_INT(ng_plugin_host_open(&r->host, &r->loop, r->clock, r->senders), 0);
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	ASSERT(n > 0);
	exe[n] = '\0';
	*strrchr(exe, '/') = '\0';
	snprintf(r->conf_path, sizeof r->conf_path, "/tmp/nudge-test-smtp-%d.conf.lua",
	         (int)getpid());
	FILE *f = fopen(r->conf_path, "w");
	ASSERT(f != NULL);
	fprintf(f,
	        "return {\n"
	        "  database = { conninfo = \"dbname=unused\" },\n"
	        "  paths = { plugins = \"%s/../plugins\" },\n"
	        "  channels = { { name = \"email\", plugin = \"smtp\", config = {\n"
	        "    from = \"shop@example.com\", from_name = \"The Shop\",\n"
	        "    %s } } },\n"
	        "}\n",
	        exe, config);
	fclose(f);
	char err[1024];
	if (ng_conf_load(r->conf_path, &r->conf, err, sizeof err) != 0)
		ng_test_fail(__FILE__, __LINE__, "config: %s", err);
	ASSERT_EQ_INT(ng_plugin_host_load_conf(r->host, r->conf, NULL, NULL), 1);
	r->smtp = ng_plugin_find(r->host, "email");
	ASSERT(r->smtp != NULL);
}

static void rig_close(struct rig *r)
{
	ng_plugin_host_close(r->host, count_closed, &r->closed);
	run_until(r, &r->closed, 1);
	ng_senders_close(r->senders, count_closed, &r->closed);
	ng_clock_close(r->clock, count_closed, &r->closed);
	uv_run(&r->loop, UV_RUN_DEFAULT);
	ASSERT_EQ_INT(r->closed, 3);
	ASSERT_EQ_INT(uv_loop_close(&r->loop), 0);
	ng_conf_free(r->conf);
	unlink(r->conf_path);
}

/* A plain-TCP relay configuration for the stand-in. */
static void plain_config(char *out, size_t len, int port, const char *extra)
{
	snprintf(out, len,
	         "host = \"127.0.0.1\", port = %d, starttls = \"off\", timeout_ms = 3000, %s", port,
	         extra ? extra : "");
}

static struct nudge_message message(int64_t id, const char *to)
{
	struct nudge_message m = {
	    .struct_size = sizeof m,
	    .purpose = NUDGE_PURPOSE_TRANSACTIONAL,
	    .id = id,
	    .attempt = 1,
	    .key = "order-1001-confirmation",
	    .channel = "email",
	    .recipient = to,
	    .subject = "Your order 1001",
	    .text = "Thanks for your order.\n",
	    .html = "<p>Thanks for your order.</p>\n",
	};
	return m;
}

/* Sends one message and waits for its result. */
static void send_and_wait(struct rig *r, const struct nudge_message *m, struct outcome *o)
{
	memset(o, 0, sizeof *o);
	ASSERT_EQ_INT(ng_plugin_send(r->smtp, m, on_done, o), 0);
	ASSERT_EQ_INT(o->calls, 0);
	run_until(r, &o->calls, 1);
}

/* The value of header `name` in a received message, unfolded (CRLF before WSP removed). */
static char *header(const char *msg, const char *name)
{
	static char out[4096];
	size_t nl = strlen(name);
	const char *end = strstr(msg, "\r\n\r\n");
	for (const char *p = msg; p && p < end;
	     p = strstr(p, "\r\n") ? strstr(p, "\r\n") + 2 : NULL) {
		if (strncasecmp(p, name, nl) != 0 || p[nl] != ':')
			continue;
		const char *v = p + nl + 1;
		while (*v == ' ')
			v++;
		size_t o = 0;
		while (*v && o < sizeof out - 1) {
			if (v[0] == '\r' && v[1] == '\n') {
				if (v[2] != ' ' && v[2] != '\t')
					break;
				v += 2;
				continue;
			}
			out[o++] = *v++;
		}
		out[o] = '\0';
		return out;
	}
	return NULL;
}

/* ---- results ------------------------------------------------------------------------------ */

static void test_250_is_sent(void)
{
	struct ng_smtp_standin *s;
	ASSERT_EQ_INT(ng_smtp_standin_start(&s, NULL), 0);
	struct rig r;
	char cfg[512];
	plain_config(cfg, sizeof cfg, ng_smtp_standin_port(s), NULL);
	rig_open(&r, cfg);
	struct nudge_message m = message(1, "alice@example.org");
	struct outcome o;
	send_and_wait(&r, &m, &o);
	ASSERT_EQ_INT(o.status, NUDGE_SEND_SENT);
	ASSERT_EQ_INT(o.code, 250);
	ASSERT_EQ_STR(o.provider_id, "Q0001");
	struct ng_smtp_received got;
	ASSERT_EQ_INT(ng_smtp_standin_received(s, 0, &got), 0);
	ASSERT_EQ_STR(got.mail_from, "shop@example.com");
	ASSERT_EQ_STR(got.rcpt, "alice@example.org");
	ASSERT(got.acked);
	ASSERT_EQ_STR(header(got.data, "Message-ID"), "<order-1001-confirmation@example.com>");
	ASSERT_EQ_STR(header(got.data, "From"), "The Shop <shop@example.com>");
	ASSERT_EQ_STR(header(got.data, "To"), "alice@example.org");
	ASSERT_EQ_STR(header(got.data, "Subject"), "Your order 1001");
	ASSERT_EQ_STR(header(got.data, "MIME-Version"), "1.0");
	ASSERT(header(got.data, "Date") != NULL);
	/* Transactional mail carries no unsubscribe headers. */
	ASSERT(header(got.data, "List-Unsubscribe") == NULL);
	ng_smtp_received_free(&got);
	rig_close(&r);
	ng_smtp_standin_stop(s);
}

/* Scripts one reply, sends one message, and checks the outcome. */
static void expect_outcome(struct ng_smtp_standin *s, struct rig *r, const char *cmd, int code,
                           const char *text, int status, int suppress)
{
	ng_smtp_standin_script(s, cmd, code, text, 1);
	struct nudge_message m = message(code, "bob@example.org");
	struct outcome o;
	send_and_wait(r, &m, &o);
	if (o.status != status || o.suppress != suppress || o.code != code)
		ng_test_fail(__FILE__, __LINE__,
		             "%s %d %s: status %d suppress %d code %d (%s); wanted %d/%d", cmd,
		             code, text, o.status, o.suppress, o.code, o.reason, status, suppress);
}

static void test_temporary_replies_retry(void)
{
	struct ng_smtp_standin *s;
	ASSERT_EQ_INT(ng_smtp_standin_start(&s, NULL), 0);
	struct rig r;
	char cfg[512];
	plain_config(cfg, sizeof cfg, ng_smtp_standin_port(s), NULL);
	rig_open(&r, cfg);
	expect_outcome(s, &r, "RCPT", 421, "4.3.2 Service shutting down", NUDGE_SEND_RETRY, 0);
	expect_outcome(s, &r, "RCPT", 451, "4.3.0 Local error in processing", NUDGE_SEND_RETRY, 0);
	expect_outcome(s, &r, "RCPT", 452, "4.2.2 Mailbox full", NUDGE_SEND_RETRY, 0);
	expect_outcome(s, &r, "MAIL", 451, "4.7.1 Greylisted", NUDGE_SEND_RETRY, 0);
	expect_outcome(s, &r, ".", 451, "4.3.0 Queue trouble", NUDGE_SEND_RETRY, 0);
	struct ng_smtp_standin_stats st;
	ng_smtp_standin_stats(s, &st);
	ASSERT_EQ_INT(st.accepted, 0);
	rig_close(&r);
	ng_smtp_standin_stop(s);
}

static void test_permanent_replies_fail_and_suppress_bad_addresses(void)
{
	struct ng_smtp_standin *s;
	ASSERT_EQ_INT(ng_smtp_standin_start(&s, NULL), 0);
	struct rig r;
	char cfg[512];
	plain_config(cfg, sizeof cfg, ng_smtp_standin_port(s), NULL);
	rig_open(&r, cfg);
	expect_outcome(s, &r, "RCPT", 550, "5.1.1 No such user", NUDGE_SEND_FAILED, 1);
	expect_outcome(s, &r, "RCPT", 553, "5.1.3 Bad recipient address syntax", NUDGE_SEND_FAILED,
	               1);
	expect_outcome(s, &r, "RCPT", 554, "5.1.0 Recipient rejected", NUDGE_SEND_FAILED, 1);
	/* A refusal about us (policy), or of the message, says nothing against the address. */
	expect_outcome(s, &r, "RCPT", 550, "5.7.1 Relaying denied", NUDGE_SEND_FAILED, 0);
	expect_outcome(s, &r, "RCPT", 552, "5.2.2 Mailbox full", NUDGE_SEND_FAILED, 0);
	expect_outcome(s, &r, ".", 554, "5.6.0 Message content rejected", NUDGE_SEND_FAILED, 0);
	struct ng_smtp_standin_stats st;
	ng_smtp_standin_stats(s, &st);
	ASSERT_EQ_INT(st.accepted, 0);
	rig_close(&r);
	ng_smtp_standin_stop(s);
}

static void test_silence_after_data_times_out_and_retries(void)
{
	struct ng_smtp_standin *s;
	ASSERT_EQ_INT(ng_smtp_standin_start(&s, NULL), 0);
	ng_smtp_standin_fault(s, NG_SMTP_HANG_AFTER_DATA, 1);
	struct rig r;
	char cfg[512];
	snprintf(cfg, sizeof cfg,
	         "host = \"127.0.0.1\", port = %d, starttls = \"off\", timeout_ms = 1000",
	         ng_smtp_standin_port(s));
	rig_open(&r, cfg);
	struct nudge_message m = message(1, "alice@example.org");
	struct outcome o;
	uint64_t start = ng_test_now_ms();
	send_and_wait(&r, &m, &o);
	uint64_t took = ng_test_now_ms() - start;
	ASSERT_EQ_INT(o.status, NUDGE_SEND_RETRY);
	ASSERT_EQ_INT(o.code, 0);
	ASSERT_CONTAINS(o.reason, "before the relay acknowledged the message");
	ASSERT_CMP_INT(took, >=, 900);
	ASSERT_CMP_INT(took, <, 8000); /* the 1 s reply timeout, not libESMTP's 10 minutes */
	struct ng_smtp_standin_stats st;
	ng_smtp_standin_stats(s, &st);
	ASSERT_EQ_INT(st.received, 1);
	ASSERT_EQ_INT(st.accepted, 0);
	rig_close(&r);
	ng_smtp_standin_stop(s);
}

static void test_reset_before_final_reply_retries_with_the_same_message_id(void)
{
	struct ng_smtp_standin *s;
	ASSERT_EQ_INT(ng_smtp_standin_start(&s, NULL), 0);
	ng_smtp_standin_fault(s, NG_SMTP_RESET_BEFORE_FINAL, 1);
	struct rig r;
	char cfg[512];
	plain_config(cfg, sizeof cfg, ng_smtp_standin_port(s), NULL);
	rig_open(&r, cfg);
	struct nudge_message m = message(5, "alice@example.org");
	struct outcome o;
	send_and_wait(&r, &m, &o);
	ASSERT_EQ_INT(o.status, NUDGE_SEND_RETRY);
	m.attempt = 2;
	send_and_wait(&r, &m, &o);
	ASSERT_EQ_INT(o.status, NUDGE_SEND_SENT);
	struct ng_smtp_received first, second;
	ASSERT_EQ_INT(ng_smtp_standin_received(s, 0, &first), 0);
	ASSERT_EQ_INT(ng_smtp_standin_received(s, 1, &second), 0);
	ASSERT_EQ_INT(first.acked, 0);
	ASSERT_EQ_INT(second.acked, 1);
	/* The relay may have kept the first copy: the resend is recognisably the same message. */
	char id1[256];
	snprintf(id1, sizeof id1, "%s", header(first.data, "Message-ID"));
	ASSERT_EQ_STR(id1, "<order-1001-confirmation@example.com>");
	ASSERT_EQ_STR(header(second.data, "Message-ID"), id1);
	ng_smtp_received_free(&first);
	ng_smtp_received_free(&second);
	rig_close(&r);
	ng_smtp_standin_stop(s);
}

/* ---- connection reuse --------------------------------------------------------------------- */

static void test_a_burst_shares_one_connection(void)
{
	struct ng_smtp_standin *s;
	ASSERT_EQ_INT(ng_smtp_standin_start(&s, NULL), 0);
	struct rig r;
	char cfg[512];
	plain_config(cfg, sizeof cfg, ng_smtp_standin_port(s), NULL);
	rig_open(&r, cfg);
	enum { N = 20 };
	struct nudge_message m[N];
	struct outcome o[N];
	char to[N][64];
	int done = 0;
	memset(o, 0, sizeof o);
	for (int i = 0; i < N; i++) {
		snprintf(to[i], sizeof to[i], "customer%d@example.org", i);
		m[i] = message(100 + i, to[i]);
		ASSERT_EQ_INT(ng_plugin_send(r.smtp, &m[i], on_done, &o[i]), 0);
	}
	uint64_t deadline = ng_test_now_ms() + 20000;
	while (done < N && ng_test_now_ms() < deadline) {
		uv_run(&r.loop, UV_RUN_NOWAIT);
		usleep(500);
		done = 0;
		for (int i = 0; i < N; i++)
			done += o[i].calls;
	}
	for (int i = 0; i < N; i++) {
		ASSERT_EQ_INT(o[i].calls, 1);
		ASSERT_EQ_INT(o[i].status, NUDGE_SEND_SENT);
	}
	struct ng_smtp_standin_stats st;
	ng_smtp_standin_stats(s, &st);
	ASSERT_EQ_INT(st.accepted, N);
	ASSERT_EQ_INT(st.connections, 1);
	ASSERT_EQ_INT(ng_plugin_metric(r.smtp, "sessions"), 1);
	rig_close(&r);
	ng_smtp_standin_stop(s);
}

static void test_messages_per_session_bounds_a_connection(void)
{
	struct ng_smtp_standin *s;
	ASSERT_EQ_INT(ng_smtp_standin_start(&s, NULL), 0);
	struct rig r;
	char cfg[512];
	plain_config(cfg, sizeof cfg, ng_smtp_standin_port(s),
	             "messages_per_session = 5, connections = 1");
	rig_open(&r, cfg);
	enum { N = 12 };
	struct nudge_message m[N];
	struct outcome o[N];
	memset(o, 0, sizeof o);
	for (int i = 0; i < N; i++) {
		m[i] = message(200 + i, "carol@example.org");
		ASSERT_EQ_INT(ng_plugin_send(r.smtp, &m[i], on_done, &o[i]), 0);
	}
	for (int i = 0; i < N; i++) {
		run_until(&r, &o[i].calls, 1);
		ASSERT_EQ_INT(o[i].status, NUDGE_SEND_SENT);
	}
	struct ng_smtp_standin_stats st;
	ng_smtp_standin_stats(s, &st);
	ASSERT_EQ_INT(st.accepted, N);
	ASSERT_EQ_INT(st.connections, 3); /* 5 + 5 + 2 */
	rig_close(&r);
	ng_smtp_standin_stop(s);
}

/* ---- TLS and AUTH ------------------------------------------------------------------------- */

struct pki {
	char dir[64], ca[96];
	char *cert, *key;
};

static void pki_make(struct pki *p)
{
	snprintf(p->dir, sizeof p->dir, "/tmp/nudge-pki-XXXXXX");
	ASSERT(mkdtemp(p->dir) != NULL);
	snprintf(p->ca, sizeof p->ca, "%s/ca.pem", p->dir);
	ASSERT_EQ_INT(ng_test_pki_make(p->ca, &p->cert, &p->key), 0);
}

static void pki_free(struct pki *p)
{
	unlink(p->ca);
	rmdir(p->dir);
	free(p->cert);
	free(p->key);
}

static void tls_config(char *out, size_t len, int port, const char *ca, const char *password)
{
	snprintf(out, len,
	         "host = \"localhost\", port = %d, starttls = \"required\", ca_file = \"%s\", "
	         "trace = true,\n"
	         "    username = \"shop\", password = \"%s\", timeout_ms = 5000",
	         port, ca, password);
}

static void test_starttls_and_auth_for_100_sessions(void)
{
	struct pki p;
	pki_make(&p);
	struct ng_smtp_standin_opts so = {
	    .cert_pem = p.cert, .key_pem = p.key, .user = "shop", .password = "s3cret"};
	struct ng_smtp_standin *s;
	ASSERT_EQ_INT(ng_smtp_standin_start(&s, &so), 0);
	struct rig r;
	char cfg[1024];
	tls_config(cfg, sizeof cfg, ng_smtp_standin_port(s), p.ca, "s3cret");
	rig_open(&r, cfg);
	/* One message at a time: each is a session of its own, so each does STARTTLS. In libESMTP
	 * 1.1.0 without one shared SSL_CTX, the second of them would use freed memory. */
	for (int i = 0; i < 100; i++) {
		struct nudge_message m = message(1000 + i, "dave@example.org");
		struct outcome o;
		send_and_wait(&r, &m, &o);
		if (o.status != NUDGE_SEND_SENT)
			ng_test_fail(__FILE__, __LINE__, "session %d: status %d: %s", i, o.status,
			             o.reason);
	}
	struct ng_smtp_standin_stats st;
	ng_smtp_standin_stats(s, &st);
	ASSERT_EQ_INT(st.connections, 100);
	ASSERT_EQ_INT(st.tls, 100);
	ASSERT_EQ_INT(st.auth_ok, 100);
	ASSERT_EQ_INT(st.accepted, 100);
	struct ng_smtp_received got;
	ASSERT_EQ_INT(ng_smtp_standin_received(s, 99, &got), 0);
	ASSERT(got.tls);
	ASSERT(got.authenticated);
	ng_smtp_received_free(&got);
	struct nudge_health h;
	ng_plugin_health(r.smtp, &h);
	ASSERT_EQ_INT(h.status, NUDGE_HEALTH_OK);
	rig_close(&r);
	ng_smtp_standin_stop(s);
	pki_free(&p);
}

static void test_wrong_password_is_a_loud_retry_never_sent(void)
{
	struct pki p;
	pki_make(&p);
	struct ng_smtp_standin_opts so = {
	    .cert_pem = p.cert, .key_pem = p.key, .user = "shop", .password = "s3cret"};
	struct ng_smtp_standin *s;
	ASSERT_EQ_INT(ng_smtp_standin_start(&s, &so), 0);
	struct rig r;
	char cfg[1024];
	tls_config(cfg, sizeof cfg, ng_smtp_standin_port(s), p.ca, "wrong");
	rig_open(&r, cfg);
	struct nudge_message m = message(1, "erin@example.org");
	struct outcome o;
	send_and_wait(&r, &m, &o);
	ASSERT_EQ_INT(o.status, NUDGE_SEND_RETRY);
	ASSERT_EQ_INT(o.code, 530);
	ASSERT_CONTAINS(o.reason, "refused our credentials");
	struct ng_smtp_standin_stats st;
	ng_smtp_standin_stats(s, &st);
	ASSERT_CMP_INT(st.auth_failed, >=, 1);
	ASSERT_EQ_INT(st.auth_ok, 0);
	ASSERT_EQ_INT(st.received, 0);
	ASSERT_EQ_INT(ng_plugin_metric(r.smtp, "auth_failures"), 1);
	struct nudge_health h;
	ng_plugin_health(r.smtp, &h);
	ASSERT_EQ_INT(h.status, NUDGE_HEALTH_DOWN);
	ASSERT_CONTAINS(h.detail, "refused the credentials of user shop");
	rig_close(&r);
	ng_smtp_standin_stop(s);
	pki_free(&p);
}

static void test_untrusted_certificate_is_a_retry_never_sent(void)
{
	struct pki p, other;
	pki_make(&p);
	pki_make(&other);
	struct ng_smtp_standin_opts so = {.cert_pem = p.cert, .key_pem = p.key};
	struct ng_smtp_standin *s;
	ASSERT_EQ_INT(ng_smtp_standin_start(&s, &so), 0);
	struct rig r;
	char cfg[1024];
	snprintf(cfg, sizeof cfg,
	         "host = \"localhost\", port = %d, ca_file = \"%s\", timeout_ms = 5000",
	         ng_smtp_standin_port(s), other.ca);
	rig_open(&r, cfg);
	struct nudge_message m = message(1, "frank@example.org");
	struct outcome o;
	send_and_wait(&r, &m, &o);
	ASSERT_EQ_INT(o.status, NUDGE_SEND_RETRY);
	ASSERT_CONTAINS(o.reason, "certificate failed verification");
	struct ng_smtp_standin_stats st;
	ng_smtp_standin_stats(s, &st);
	ASSERT_EQ_INT(st.received, 0);
	rig_close(&r);
	ng_smtp_standin_stop(s);
	pki_free(&p);
	pki_free(&other);
}

/* ---- the message itself ------------------------------------------------------------------- */

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Decodes RFC 2047 Q encoded-words (whitespace between adjacent words dropped). */
static void decode_words(const char *in, char *out, size_t cap)
{
	size_t o = 0;
	int after_word = 0;
	for (const char *p = in; *p && o < cap - 1;) {
		if (strncmp(p, "=?UTF-8?Q?", 10) == 0) {
			const char *end = strstr(p + 10, "?=");
			ASSERT(end != NULL);
			for (const char *q = p + 10; q < end && o < cap - 1; q++) {
				if (*q == '_') {
					out[o++] = ' ';
				} else if (*q == '=') {
					out[o++] = (char)(hexval(q[1]) * 16 + hexval(q[2]));
					q += 2;
				} else {
					out[o++] = *q;
				}
			}
			p = end + 2;
			after_word = 1;
			continue;
		}
		if (after_word && (*p == ' ' || *p == '\t')) {
			const char *q = p;
			while (*q == ' ' || *q == '\t')
				q++;
			if (strncmp(q, "=?", 2) == 0) {
				p = q;
				continue;
			}
		}
		after_word = 0;
		out[o++] = *p++;
	}
	out[o] = '\0';
}

/* The decoded body of the part whose Content-Type starts with type. */
static void mime_part(const char *msg, const char *boundary, const char *type, char *out,
                      size_t cap)
{
	char delim[128];
	snprintf(delim, sizeof delim, "\r\n--%s", boundary);
	for (const char *p = strstr(msg, delim); p; p = strstr(p + 1, delim)) {
		const char *head = p + strlen(delim) + 2;
		const char *body = strstr(head, "\r\n\r\n");
		ASSERT(body != NULL);
		char ct[128];
		snprintf(ct, sizeof ct, "Content-Type: %s", type);
		if (strncmp(head, ct, strlen(ct)) != 0)
			continue;
		ASSERT_CONTAINS(head, "Content-Transfer-Encoding: quoted-printable\r\n");
		body += 4;
		const char *end = strstr(body, delim);
		ASSERT(end != NULL);
		ng_test_qp_decode(body, (size_t)(end - body), out, cap);
		return;
	}
	ng_test_fail(__FILE__, __LINE__, "no %s part", type);
}

/* text with LF line ends, as the plugin receives it, in the CRLF form that comes out of QP. */
static void crlf(const char *in, char *out, size_t cap)
{
	size_t o = 0;
	for (const char *p = in; *p && o < cap - 2; p++) {
		if (*p == '\n')
			out[o++] = '\r';
		out[o++] = *p;
	}
	out[o] = '\0';
}

static void test_encoded_subject_and_bodies_decode_to_the_original(void)
{
	struct ng_smtp_standin *s;
	ASSERT_EQ_INT(ng_smtp_standin_start(&s, NULL), 0);
	struct rig r;
	char cfg[512];
	plain_config(cfg, sizeof cfg, ng_smtp_standin_port(s),
	             "unsubscribe_mailto = \"unsubscribe@example.com\"");
	rig_open(&r, cfg);
	const char *subject =
	    "Grüße, Zoë — 20 % off your cart 🛒 until Sunday, and a few more words "
	    "so that the encoded subject has to fold =?not-a-word?=";
	const char *text =
	    "Hallo Zoë,\n"
	    "a line with = signs = and trailing spaces   \n"
	    "From here on, a line that starts with From\n"
	    ".a line that starts with a dot\n"
	    "A long line: Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod "
	    "tempor incididunt ut labore et dolore magna aliqua — ünïcödé at the end\n"
	    "\tTabbed\tline\t\n"
	    "last line without a newline";
	const char *html = "<p>Hallo <b>Zoë</b>, 20&nbsp;% off: <a href=\"https://shop.example/c?"
	                   "a=1&b=2\">your cart</a></p>\n<p>日本語のテキスト</p>\n";
	struct nudge_header extra[] = {{"Feedback-ID", "cart:abandoned:shop"},
	                               {"X-Campaign", "Sommer-Aktion für Zoë"}};
	struct nudge_message m = message(77, "zoe@example.org");
	m.purpose = NUDGE_PURPOSE_MARKETING;
	m.key = "msg/77 attempt#key";
	m.recipient_name = "Zoë Müller";
	m.subject = subject;
	m.text = text;
	m.html = html;
	m.unsubscribe_url = "https://shop.example/u/abc123";
	m.headers = extra;
	m.nheaders = 2;
	struct outcome o;
	send_and_wait(&r, &m, &o);
	ASSERT_EQ_INT(o.status, NUDGE_SEND_SENT);
	struct ng_smtp_received got;
	ASSERT_EQ_INT(ng_smtp_standin_received(s, 0, &got), 0);
	const char *d = got.data;

	/* 7-bit, CRLF only, and no line past 998 octets (78 outside the unsubscribe URL). */
	for (const unsigned char *p = (const unsigned char *)d; *p; p++) {
		ASSERT(*p < 0x80);
		if (*p == '\n')
			ASSERT(p > (const unsigned char *)d && p[-1] == '\r');
	}
	for (const char *line = d; *line;) {
		const char *eol = strstr(line, "\r\n");
		ASSERT(eol != NULL);
		if (strncmp(line, "List-Unsubscribe:", 17) != 0)
			ASSERT_CMP_INT(eol - line, <=, 78);
		line = eol + 2;
	}

	char decoded[8192], want[8192];
	decode_words(header(d, "Subject"), decoded, sizeof decoded);
	ASSERT_EQ_STR(decoded, subject);
	decode_words(header(d, "To"), decoded, sizeof decoded);
	ASSERT_EQ_STR(decoded, "Zoë Müller <zoe@example.org>");
	decode_words(header(d, "X-Campaign"), decoded, sizeof decoded);
	ASSERT_EQ_STR(decoded, "Sommer-Aktion für Zoë");
	ASSERT_EQ_STR(header(d, "Feedback-ID"), "cart:abandoned:shop");
	ASSERT_EQ_STR(header(d, "Message-ID"), "<msg%2F77%20attempt%23key@example.com>");
	ASSERT_EQ_STR(header(d, "List-Unsubscribe"),
	              "<https://shop.example/u/abc123>, <mailto:unsubscribe@example.com?subject="
	              "unsubscribe>");
	ASSERT_EQ_STR(header(d, "List-Unsubscribe-Post"), "List-Unsubscribe=One-Click");

	/* multipart/alternative, text before HTML, each decoding to what was sent. */
	const char *ct = header(d, "Content-Type");
	ASSERT(strncmp(ct, "multipart/alternative;", 22) == 0);
	const char *b = strstr(ct, "boundary=\"");
	ASSERT(b != NULL);
	char boundary[100];
	snprintf(boundary, sizeof boundary, "%.*s", (int)strcspn(b + 10, "\""), b + 10);
	const char *text_at = strstr(d, "Content-Type: text/plain");
	const char *html_at = strstr(d, "Content-Type: text/html");
	ASSERT(text_at && html_at && text_at < html_at);
	mime_part(d, boundary, "text/plain", decoded, sizeof decoded);
	crlf(text, want, sizeof want);
	ASSERT_EQ_STR(decoded, want);
	mime_part(d, boundary, "text/html", decoded, sizeof decoded);
	crlf(html, want, sizeof want);
	ASSERT_EQ_STR(decoded, want);
	/* "From " at a line start is encoded, so no mbox along the way quotes it. */
	ASSERT(strstr(d, "\r\nFrom here") == NULL);
	ng_smtp_received_free(&got);
	rig_close(&r);
	ng_smtp_standin_stop(s);
}

static void test_unsendable_messages_fail_without_a_connection(void)
{
	struct ng_smtp_standin *s;
	ASSERT_EQ_INT(ng_smtp_standin_start(&s, NULL), 0);
	struct rig r;
	char cfg[512];
	plain_config(cfg, sizeof cfg, ng_smtp_standin_port(s), NULL);
	rig_open(&r, cfg);
	struct nudge_message m = message(1, "zoe@example.org");
	struct outcome o;
	m.purpose = NUDGE_PURPOSE_MARKETING; /* without an unsubscribe URL */
	send_and_wait(&r, &m, &o);
	ASSERT_EQ_INT(o.status, NUDGE_SEND_FAILED);
	ASSERT_EQ_INT(o.suppress, 0);
	ASSERT_CONTAINS(o.reason, "unsubscribe URL");
	m = message(2, "not an address");
	send_and_wait(&r, &m, &o);
	ASSERT_EQ_INT(o.status, NUDGE_SEND_FAILED);
	ASSERT_EQ_INT(o.suppress, 1);
	m = message(3, "zoe@example.org");
	struct nudge_header bad[] = {{"Subject", "sneaky"}};
	m.headers = bad;
	m.nheaders = 1;
	send_and_wait(&r, &m, &o);
	ASSERT_EQ_INT(o.status, NUDGE_SEND_FAILED);
	ASSERT_CONTAINS(o.reason, "extra header Subject");
	struct ng_smtp_standin_stats st;
	ng_smtp_standin_stats(s, &st);
	ASSERT_EQ_INT(st.connections, 0);
	rig_close(&r);
	ng_smtp_standin_stop(s);
}

static void test_unreachable_relay_retries_and_degrades(void)
{
	/* A port nobody listens on: start a stand-in for its port, then stop it. */
	struct ng_smtp_standin *s;
	ASSERT_EQ_INT(ng_smtp_standin_start(&s, NULL), 0);
	int port = ng_smtp_standin_port(s);
	ng_smtp_standin_stop(s);
	struct rig r;
	char cfg[512];
	plain_config(cfg, sizeof cfg, port, NULL);
	rig_open(&r, cfg);
	struct nudge_health h;
	for (int i = 1; i <= 3; i++) {
		struct nudge_message m = message(i, "gina@example.org");
		struct outcome o;
		send_and_wait(&r, &m, &o);
		ASSERT_EQ_INT(o.status, NUDGE_SEND_RETRY);
		ASSERT_EQ_INT(o.code, 0);
		ASSERT_CONTAINS(o.reason, "the session ended before MAIL FROM");
		ng_plugin_health(r.smtp, &h);
		ASSERT_EQ_INT(h.status, i < 3 ? NUDGE_HEALTH_DEGRADED : NUDGE_HEALTH_DOWN);
	}
	ASSERT_CONTAINS(h.detail, "3 failed sessions in a row");
	rig_close(&r);
}

NG_TESTS(NG_TEST(test_250_is_sent), NG_TEST(test_temporary_replies_retry),
         NG_TEST(test_permanent_replies_fail_and_suppress_bad_addresses),
         NG_TEST(test_silence_after_data_times_out_and_retries),
         NG_TEST(test_reset_before_final_reply_retries_with_the_same_message_id),
         NG_TEST(test_a_burst_shares_one_connection),
         NG_TEST(test_messages_per_session_bounds_a_connection),
         NG_TEST(test_starttls_and_auth_for_100_sessions),
         NG_TEST(test_wrong_password_is_a_loud_retry_never_sent),
         NG_TEST(test_untrusted_certificate_is_a_retry_never_sent),
         NG_TEST(test_encoded_subject_and_bodies_decode_to_the_original),
         NG_TEST(test_unsendable_messages_fail_without_a_connection),
         NG_TEST(test_unreachable_relay_retries_and_degrades), )
