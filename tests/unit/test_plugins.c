/*
 * test_plugins.c — the plugin loader and host: refusals with one sentence each while good
 * instances load (wrong ABI major, no entry symbol, short descriptor, missing file, bad config,
 * duplicate name, bad declaration, unknown channel, init refusal); several instances of one plugin
 * with their own configs; send results and the exactly-once, never-inside-send completion; the
 * host's give-back at shutdown; webhooks, health, metrics; the contrib example built from the
 * header alone; and the file sink.
 */
#include "clock.h"
#include "config.h"
#include "ng.h"
#include "plugin_host.h"
#include "senders.h"
#include "testlib.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- a loop with a clock, a sender pool and a plugin host ---------------------------------- */

struct rig {
	uv_loop_t loop;
	struct ng_clock *clock;
	struct ng_senders *senders;
	struct ng_plugin_host *host;
	int closed;
};

static void rig_open(struct rig *r)
{
	memset(r, 0, sizeof *r);
	ASSERT_EQ_INT(uv_loop_init(&r->loop), 0);
	r->clock = ng_clock_real(&r->loop);
	ASSERT_EQ_INT(ng_senders_open(&r->senders, &r->loop, 2), 0);
	ASSERT_EQ_INT(ng_plugin_host_open(&r->host, &r->loop, r->clock, r->senders), 0);
}

static void count_closed(void *arg)
{
	(*(int *)arg)++;
}

static void run_until(uv_loop_t *loop, const int *calls, int want);

/* The sender pool's wake-up handle keeps the loop alive: run until the host says it closed. */
static void run_until_closed(struct rig *r, int want)
{
	run_until(&r->loop, &r->closed, want);
}

static void rig_close(struct rig *r)
{
	ng_plugin_host_close(r->host, count_closed, &r->closed);
	run_until_closed(r, 1);
	ng_senders_close(r->senders, count_closed, &r->closed);
	ng_clock_close(r->clock, count_closed, &r->closed);
	uv_run(&r->loop, UV_RUN_DEFAULT);
	ASSERT_EQ_INT(r->closed, 3);
	ASSERT_EQ_INT(uv_loop_close(&r->loop), 0);
}

/* The directory holding this test binary (.build/tests), for the plugins built beside it. */
static const char *bin_dir(void)
{
	static char dir[PATH_MAX];
	if (!dir[0]) {
		ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
		ASSERT(n > 0);
		dir[n] = '\0';
		*strrchr(dir, '/') = '\0';
	}
	return dir;
}

static char *test_plugin_dir(void)
{
	return ng_xasprintf("%s/plugins", bin_dir());
}

static char *shipped_plugin_dir(void)
{
	return ng_xasprintf("%s/../plugins", bin_dir());
}

struct sentences {
	char *text[32];
	int n;
};

static void collect(void *arg, const char *sentence)
{
	struct sentences *s = arg;
	ASSERT(s->n < 32);
	s->text[s->n++] = ng_xstrdup(sentence);
}

static void sentences_free(struct sentences *s)
{
	for (int i = 0; i < s->n; i++)
		free(s->text[i]);
	s->n = 0;
}

/* Fails unless exactly one collected sentence equals want. */
static void expect_sentence(const struct sentences *s, const char *want)
{
	int found = 0;
	for (int i = 0; i < s->n; i++)
		found += strcmp(s->text[i], want) == 0;
	if (found != 1) {
		for (int i = 0; i < s->n; i++)
			fprintf(stderr, "  got: %s\n", s->text[i]);
		ng_test_fail(__FILE__, __LINE__, "expected the sentence once: %s", want);
	}
}

/* Writes a nudge.conf.lua whose channels section is `channels` and loads it. */
static struct ng_conf *load_conf(const char *dir, const char *channels, char *path, size_t pathlen)
{
	snprintf(path, pathlen, "/tmp/nudge-test-plugins-%d.conf.lua", (int)getpid());
	FILE *f = fopen(path, "w");
	ASSERT(f != NULL);
	fprintf(f,
	        "return {\n"
	        "  database = { conninfo = \"dbname=unused\" },\n"
	        "  paths = { plugins = \"%s\" },\n"
	        "  channels = {\n%s  },\n"
	        "}\n",
	        dir, channels);
	fclose(f);
	struct ng_conf *c = NULL;
	char err[1024];
	if (ng_conf_load(path, &c, err, sizeof err) != 0)
		ng_test_fail(__FILE__, __LINE__, "config: %s", err);
	return c;
}

/* ---- sending -------------------------------------------------------------------------------- */

struct outcome {
	int calls;
	int during_send; /* done ran while ng_plugin_send was still on the stack */
	int status, suppress, code;
	int64_t retry_after_ms;
	char provider_id[64], reason[160];
};

static int in_send;

static void on_done(void *arg, const struct nudge_send_result *r)
{
	struct outcome *o = arg;
	o->calls++;
	o->during_send += in_send;
	o->status = r->status;
	o->suppress = r->suppress;
	o->code = r->code;
	o->retry_after_ms = r->retry_after_ms;
	snprintf(o->provider_id, sizeof o->provider_id, "%s", r->provider_id ? r->provider_id : "");
	snprintf(o->reason, sizeof o->reason, "%s", r->reason ? r->reason : "");
}

static struct nudge_message message(int64_t id, const char *recipient)
{
	struct nudge_message m = {
	    .struct_size = sizeof m,
	    .purpose = NUDGE_PURPOSE_TRANSACTIONAL,
	    .id = id,
	    .attempt = 1,
	    .key = "key-1",
	    .channel = "email",
	    .recipient = recipient,
	    .subject = "Your order",
	    .text = "Thanks!",
	};
	return m;
}

static void send_one(struct ng_plugin *p, const struct nudge_message *m, struct outcome *o)
{
	in_send = 1;
	ASSERT_EQ_INT(ng_plugin_send(p, m, on_done, o), 0);
	in_send = 0;
}

/* UV_RUN_ONCE would block in poll after running due timers (the sender pool's handle keeps the
 * loop alive), so turn the loop without waiting and nap between turns. */
static void run_until(uv_loop_t *loop, const int *calls, int want)
{
	uint64_t deadline = ng_test_now_ms() + 10000;
	while (*calls < want && ng_test_now_ms() < deadline) {
		uv_run(loop, UV_RUN_NOWAIT);
		if (*calls < want)
			usleep(500);
	}
	ASSERT_EQ_INT(*calls, want);
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_refusals_each_with_a_sentence_while_good_ones_load(void)
{
	struct rig r;
	rig_open(&r);
	char *dir = test_plugin_dir(), path[256];
	struct ng_conf *conf = load_conf(
	    dir,
	    "    { name = \"good1\", plugin = \"good\", config = { greeting = \"hello\", count = 7 "
	    "} },\n"
	    "    { name = \"good2\", plugin = \"good\", channel = \"sms\", config = { greeting = "
	    "\"hi\" } },\n"
	    "    { name = \"future\", plugin = \"abi2\" },\n"
	    "    { name = \"lib\", plugin = \"noentry\" },\n"
	    "    { name = \"tiny\", plugin = \"small\" },\n"
	    "    { name = \"absent\", plugin = \"nosuch\" },\n"
	    "    { name = \"typo\", plugin = \"good\", config = {\n"
	    "      greting = \"x\" } },\n"
	    "    { name = \"typed\", plugin = \"good\", config = { greeting = \"x\",\n"
	    "      count = \"three\" } },\n"
	    "    { name = \"bare\", plugin = \"good\" },\n"
	    "    { name = \"good1\", plugin = \"good\", config = { greeting = \"again\" } },\n"
	    "    { name = \"decl\", plugin = \"badkey\" },\n"
	    "    { name = \"fax\", plugin = \"good\", channel = \"fax\", config = { greeting = "
	    "\"x\" } },\n"
	    "    { name = \"refuses\", plugin = \"good\", config = { greeting = \"x\", fail_init = "
	    "true } },\n",
	    path, sizeof path);
	struct sentences s = {0};
	int loaded = ng_plugin_host_load_conf(r.host, conf, collect, &s);
	ASSERT_EQ_INT(loaded, 2);
	ASSERT_EQ_INT(s.n, 11);
	char want[1024];
#define EXPECT(...)                                                                                \
	do {                                                                                       \
		snprintf(want, sizeof want, __VA_ARGS__);                                          \
		expect_sentence(&s, want);                                                         \
	} while (0)
	EXPECT("%s/abi2.so: built for plugin ABI 2.x, this nudge speaks 1.x", dir);
	EXPECT("%s/noentry.so: has no nudge_plugin_entry symbol, so it is not a nudge plugin", dir);
	EXPECT(
	    "%s/small.so: its descriptor is 64 bytes, smaller than the %zu bytes of plugin ABI 1.0 "
	    "(built against a damaged header?)",
	    dir, sizeof(struct nudge_plugin));
	EXPECT("%s/nosuch.so: cannot be loaded: cannot open shared object file: No such file or "
	       "directory",
	       dir);
	EXPECT(
	    "%s/good.so: instance 'typo': unknown config key 'greting' (did you mean 'greeting'?) "
	    "(%s:12)",
	    dir, path);
	EXPECT("%s/good.so: instance 'typed': config key 'count' must be an integer, not a string "
	       "(%s:14)",
	       dir, path);
	EXPECT("%s/good.so: instance 'bare': missing required config key 'greeting' (%s:15)", dir,
	       path);
	EXPECT(
	    "%s/good.so: instance name 'good1' (%s:16) is already taken by another channels entry",
	    dir, path);
	EXPECT(
	    "%s/badkey.so: declares config key 'port' with default \"twenty-five\", which is not "
	    "an integer",
	    dir);
	EXPECT("%s/good.so: instance 'fax' (%s:18) asks for channel 'fax', but the plugin serves "
	       "email, sms",
	       dir, path);
	EXPECT("%s/good.so: instance 'refuses' (%s:19) did not start: fail_init is set, so this "
	       "instance refuses to start",
	       dir, path);
#undef EXPECT

	/* The two good instances share one file but each has its own configuration. */
	ASSERT_EQ_INT(ng_plugin_count(r.host), 2);
	struct ng_plugin *g1 = ng_plugin_find(r.host, "good1"),
	                 *g2 = ng_plugin_find(r.host, "good2");
	ASSERT(g1 && g2);
	ASSERT_EQ_STR(ng_plugin_channel(g1), "email");
	ASSERT_EQ_STR(ng_plugin_channel(g2), "sms");
	ASSERT(ng_plugin_for_channel(r.host, "sms") == g2);
	ASSERT(ng_plugin_for_channel(r.host, "messenger") == NULL);
	ASSERT_EQ_INT(ng_plugin_metric(g1, "count_seen"), 7);
	ASSERT_EQ_INT(ng_plugin_metric(g2, "count_seen"), 3);  /* the declared default */
	ASSERT_EQ_INT(ng_plugin_metric(g1, "ratio_x100"), 50); /* a NUMBER default */
	struct nudge_health h1, h2;
	ng_plugin_health(g1, &h1);
	ng_plugin_health(g2, &h2);
	ASSERT_EQ_INT(h1.status, NUDGE_HEALTH_OK);
	ASSERT_EQ_STR(h1.detail, "greeting hello");
	ASSERT_EQ_STR(h2.detail, "greeting hi");
	/* This rig gives the host no HTTP client, so the service says so (test_httpc runs one). */
	ASSERT_EQ_INT(ng_plugin_metric(g1, "http_enosys"), 1);

	sentences_free(&s);
	ng_conf_free(conf);
	unlink(path);
	free(dir);
	rig_close(&r);
}

static void test_send_results_come_later_exactly_once(void)
{
	struct rig r;
	rig_open(&r);
	char *dir = test_plugin_dir(), path[256];
	struct ng_conf *conf = load_conf(
	    dir, "    { name = \"g\", plugin = \"good\", config = { greeting = \"x\" } },\n", path,
	    sizeof path);
	ASSERT_EQ_INT(ng_plugin_host_load_conf(r.host, conf, NULL, NULL), 1);
	struct ng_plugin *p = ng_plugin_find(r.host, "g");
	const char *to[] = {"ok@example.org", "retry@example.org", "bounce@example.org",
	                    "maybe@example.org", "thread@example.org"};
	struct nudge_message m[5];
	struct outcome o[5] = {0};
	for (int i = 0; i < 5; i++) {
		m[i] = message(100 + i, to[i]);
		send_one(p, &m[i], &o[i]);
		ASSERT_EQ_INT(o[i].calls, 0);
	}
	int total = 0;
	uint64_t deadline = ng_test_now_ms() + 10000;
	while (total < 5 && ng_test_now_ms() < deadline) {
		uv_run(&r.loop, UV_RUN_NOWAIT);
		usleep(500);
		total = 0;
		for (int i = 0; i < 5; i++)
			total += o[i].calls;
	}
	for (int i = 0; i < 5; i++) {
		ASSERT_EQ_INT(o[i].calls, 1);
		ASSERT_EQ_INT(o[i].during_send, 0);
	}
	ASSERT_EQ_INT(o[0].status, NUDGE_SEND_SENT);
	ASSERT_EQ_STR(o[0].provider_id, "good-100");
	ASSERT_EQ_INT(o[1].status, NUDGE_SEND_RETRY);
	ASSERT_EQ_INT(o[1].retry_after_ms, 1000);
	ASSERT_EQ_INT(o[2].status, NUDGE_SEND_FAILED);
	ASSERT_EQ_INT(o[2].suppress, 1);
	ASSERT_EQ_INT(o[2].code, 550);
	ASSERT_EQ_INT(o[3].status, NUDGE_SEND_AMBIGUOUS);
	ASSERT_EQ_INT(o[4].status, NUDGE_SEND_SENT);
	ASSERT(strncmp(o[4].provider_id, "thread-", 7) == 0);
	ASSERT_EQ_INT(ng_plugin_metric(p, "thread_work"), 1);
	ASSERT_EQ_INT(ng_plugin_metric(p, "messages_seen"), 5);
	ASSERT_EQ_INT(ng_plugin_metric(p, "sends_sent"), 2);
	ASSERT_EQ_INT(ng_plugin_metric(p, "sends_retry"), 1);
	ASSERT_EQ_INT(ng_plugin_metric(p, "sends_failed"), 1);
	ASSERT_EQ_INT(ng_plugin_metric(p, "sends_ambiguous"), 1);

	ng_conf_free(conf);
	unlink(path);
	free(dir);
	rig_close(&r);
}

static void test_completion_inside_send_is_held_to_the_next_turn(void)
{
	struct rig r;
	rig_open(&r);
	char *dir = test_plugin_dir();
	struct ng_plugin_spec spec = {.name = "eager", .plugin = "eager"};
	ASSERT_EQ_INT(ng_plugin_host_load(r.host, dir, &spec, 1, NULL, NULL), 1);
	struct ng_plugin *p = ng_plugin_find(r.host, "eager");
	struct nudge_message m1 = message(1, "a@example.org"),
	                     m2 = message(2, "garbage@example.org");
	struct outcome o1 = {0}, o2 = {0};
	send_one(p, &m1, &o1);
	send_one(p, &m2, &o2);
	ASSERT_EQ_INT(o1.calls, 0);
	ASSERT_EQ_INT(o2.calls, 0);
	run_until(&r.loop, &o2.calls, 1);
	run_until(&r.loop, &o1.calls, 1);
	ASSERT_EQ_INT(o1.during_send + o2.during_send, 0);
	ASSERT_EQ_INT(o1.status, NUDGE_SEND_SENT);
	ASSERT_EQ_STR(o1.provider_id, "eager-1");
	/* A result without struct_size cannot be trusted: a retry, with a reason. */
	ASSERT_EQ_INT(o2.status, NUDGE_SEND_RETRY);
	ASSERT_EQ_STR(o2.reason, "the plugin returned a malformed result");
	free(dir);
	rig_close(&r);
	ASSERT_EQ_INT(o1.calls + o2.calls, 2);
}

static void test_shutdown_gives_back_outstanding_sends(void)
{
	struct rig r;
	rig_open(&r);
	char *dir = test_plugin_dir(), path[256];
	struct ng_conf *conf = load_conf(dir,
	                                 "    { name = \"g\", plugin = \"good\", config = { "
	                                 "greeting = \"x\", hold = true } },\n",
	                                 path, sizeof path);
	ASSERT_EQ_INT(ng_plugin_host_load_conf(r.host, conf, NULL, NULL), 1);
	struct ng_plugin *p = ng_plugin_find(r.host, "g");
	struct nudge_message m = message(7, "ok@example.org");
	struct outcome o = {0};
	send_one(p, &m, &o);
	for (int i = 0; i < 5; i++)
		uv_run(&r.loop, UV_RUN_NOWAIT);
	ASSERT_EQ_INT(o.calls, 0); /* held by the plugin */
	ng_plugin_host_close(r.host, count_closed, &r.closed);
	/* Sends are refused from the start of the close. */
	struct outcome late = {0};
	ASSERT_EQ_INT(ng_plugin_send(p, &m, on_done, &late), -ESHUTDOWN);
	run_until_closed(&r, 1);
	ASSERT_EQ_INT(o.calls, 1);
	ASSERT_EQ_INT(o.status, NUDGE_SEND_RETRY);
	ASSERT_EQ_STR(o.reason, "the plugin shut down before finishing this send");
	ASSERT_EQ_INT(late.calls, 0);
	ng_senders_close(r.senders, count_closed, &r.closed);
	ng_clock_close(r.clock, count_closed, &r.closed);
	uv_run(&r.loop, UV_RUN_DEFAULT);
	ASSERT_EQ_INT(uv_loop_close(&r.loop), 0);
	ng_conf_free(conf);
	unlink(path);
	free(dir);
}

struct answer {
	int calls, status;
	char type[64], body[256];
};

static void on_answer(void *arg, const struct nudge_inbound_response *res)
{
	struct answer *a = arg;
	a->calls++;
	a->status = res->status;
	snprintf(a->type, sizeof a->type, "%s", res->content_type ? res->content_type : "");
	snprintf(a->body, sizeof a->body, "%.*s", (int)res->body_len, res->body);
}

static void test_webhook_reaches_the_instance(void)
{
	struct rig r;
	rig_open(&r);
	char *dir = test_plugin_dir();
	struct ng_plugin_spec spec[] = {{.name = "g", .plugin = "good"},
	                                {.name = "e", .plugin = "eager"}};
	/* Without a config node the required key is missing: refused. */
	ASSERT_EQ_INT(ng_plugin_host_load(r.host, dir, spec, 2, NULL, NULL), 1);
	struct ng_plugin *e = ng_plugin_find(r.host, "e");
	struct nudge_inbound_request req = {.struct_size = sizeof req,
	                                    .method = "POST",
	                                    .path = "/status",
	                                    .query = "",
	                                    .body = "abc",
	                                    .body_len = 3};
	struct answer a = {0};
	ASSERT_EQ_INT(ng_plugin_inbound(e, &req, on_answer, &a), -ENOTSUP);
	ASSERT_EQ_INT(a.calls, 0);
	free(dir);
	rig_close(&r);

	/* And with one, the webhook gets the instance's own answer. */
	rig_open(&r);
	dir = test_plugin_dir();
	char path[256];
	struct ng_conf *conf = load_conf(
	    dir, "    { name = \"g\", plugin = \"good\", config = { greeting = \"hey\" } },\n",
	    path, sizeof path);
	ASSERT_EQ_INT(ng_plugin_host_load_conf(r.host, conf, NULL, NULL), 1);
	ASSERT_EQ_INT(ng_plugin_inbound(ng_plugin_find(r.host, "g"), &req, on_answer, &a), 0);
	ASSERT_EQ_INT(a.calls, 1);
	ASSERT_EQ_INT(a.status, 200);
	ASSERT_EQ_STR(a.type, "application/json");
	ASSERT_EQ_STR(a.body, "{\"greeting\":\"hey\",\"path\":\"/status\",\"bytes\":3}");
	ng_conf_free(conf);
	unlink(path);
	free(dir);
	rig_close(&r);
}

/* ---- reports -------------------------------------------------------------------------------- */

struct event_seen {
	int calls;
	uint32_t size;
	int has_link;
	char name[32];
};

static int rx_event(void *ctx, struct ng_plugin *p, const struct nudge_event_report *r,
                    void (*done)(void *, int), void *arg)
{
	NG_UNUSED(p);
	struct event_seen *s = ctx;
	s->calls++;
	s->size = r->struct_size;
	s->has_link = r->customer_ref || r->customer_email || r->customer_phone;
	snprintf(s->name, sizeof s->name, "%s", r->name);
	done(arg, 0);
	return 0;
}

static void on_reported(void *arg, int status)
{
	int *st = arg;
	*st = status == 0 ? 1 : status;
}

/* A plugin built for 1.1 passes a 56-byte event report: accepted, and the receiver gets a full
 * one with the 1.2 link fields empty, never bytes beyond what the plugin passed. */
static void test_event_reports_of_every_minor(void)
{
	struct rig r;
	rig_open(&r);
	char *dir = test_plugin_dir();
	char path[256];
	struct ng_conf *conf = load_conf(
	    dir, "    { name = \"g\", plugin = \"good\", config = { greeting = \"hey\" } },\n",
	    path, sizeof path);
	ASSERT_EQ_INT(ng_plugin_host_load_conf(r.host, conf, NULL, NULL), 1);
	struct ng_plugin *g = ng_plugin_find(r.host, "g");
	struct event_seen seen = {0};
	struct ng_plugin_reports rx = {&seen, NULL, NULL, rx_event};
	ng_plugin_host_set_reports(r.host, &rx);
	/* The 1.1 prefix, followed by bytes that must not be read as link fields. */
	struct {
		struct nudge_event_report ev;
	} buf;
	memset(&buf, 0xA5, sizeof buf);
	buf.ev.struct_size = NUDGE_EVENT_REPORT_SIZE_1_1;
	buf.ev.name = "sms.received";
	buf.ev.channel = "sms";
	buf.ev.address = "+15550000001";
	buf.ev.dedupe_key = NULL;
	buf.ev.properties_json = NULL;
	buf.ev.occurred_ms = 0;
	int st = 0;
	ASSERT_EQ_INT(ng_plugin_services.report_event(&g->self, &buf.ev, on_reported, &st), 0);
	ASSERT_EQ_INT(st, 1);
	ASSERT_EQ_INT(seen.calls, 1);
	ASSERT_EQ_INT(seen.size, sizeof(struct nudge_event_report));
	ASSERT_EQ_INT(seen.has_link, 0);
	ASSERT_EQ_STR(seen.name, "sms.received");
	/* The full 1.2 report passes its links; anything shorter than 1.1 is refused. */
	struct nudge_event_report full = {.struct_size = sizeof full,
	                                  .name = "messenger.message",
	                                  .channel = "messenger",
	                                  .address = "1001",
	                                  .customer_ref = "cust-1"};
	st = 0;
	ASSERT_EQ_INT(ng_plugin_services.report_event(&g->self, &full, on_reported, &st), 0);
	ASSERT_EQ_INT(seen.has_link, 1);
	full.struct_size = NUDGE_EVENT_REPORT_SIZE_1_1 - 8;
	ASSERT_EQ_INT(ng_plugin_services.report_event(&g->self, &full, on_reported, &st), -EINVAL);
	ASSERT_EQ_INT(seen.calls, 2);
	ng_conf_free(conf);
	unlink(path);
	free(dir);
	rig_close(&r);
}

/* make -C contrib/plugin-example, with nothing but the header, then load and use the result. */
static void test_contrib_example_builds_from_the_header_alone(void)
{
	const char *top = getenv("NUDGE_TEST_TOP");
	char dir[] = "/tmp/nudge-example-XXXXXX";
	ASSERT(mkdtemp(dir) != NULL);
	char *cmd =
	    ng_xasprintf("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u CPATH -u C_INCLUDE_PATH "
	                 "make -s -C %s/contrib/plugin-example OUT=%s/example.so >&2",
	                 top ? top : ".", dir);
	ASSERT_EQ_INT(system(cmd), 0);
	free(cmd);

	struct rig r;
	rig_open(&r);
	char path[256];
	struct ng_conf *conf = load_conf(
	    dir, "    { name = \"console\", plugin = \"example\", config = { delay_ms = 5 } },\n",
	    path, sizeof path);
	ASSERT_EQ_INT(ng_plugin_host_load_conf(r.host, conf, NULL, NULL), 1);
	struct ng_plugin *p = ng_plugin_find(r.host, "console");
	ASSERT_EQ_STR(ng_plugin_channel(p), "sms");
	struct nudge_message m = message(9, "+15550000000");
	m.channel = "sms";
	m.body = "Your code is 1234";
	struct outcome o = {0};
	send_one(p, &m, &o);
	run_until(&r.loop, &o.calls, 1);
	ASSERT_EQ_INT(o.during_send, 0);
	ASSERT_EQ_INT(o.status, NUDGE_SEND_SENT);
	ASSERT_EQ_STR(o.provider_id, "example-9");
	ASSERT_EQ_INT(ng_plugin_metric(p, "delivered"), 1);
	ng_conf_free(conf);
	unlink(path);
	rig_close(&r);
	char *so = ng_xasprintf("%s/example.so", dir);
	unlink(so);
	free(so);
	rmdir(dir);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	ASSERT(f != NULL);
	static char text[65536];
	size_t n = fread(text, 1, sizeof text - 1, f);
	fclose(f);
	text[n] = '\0';
	return text;
}

/* Two instances of the file sink, each with its own file: every message lands in its own. */
static void test_file_sink_appends_messages(void)
{
	struct rig r;
	rig_open(&r);
	char *dir = shipped_plugin_dir(), path[256], out1[128], out2[128];
	snprintf(out1, sizeof out1, "/tmp/nudge-outbox-%d-1.txt", (int)getpid());
	snprintf(out2, sizeof out2, "/tmp/nudge-outbox-%d-2.txt", (int)getpid());
	unlink(out1);
	unlink(out2);
	char channels[1024];
	snprintf(channels, sizeof channels,
	         "    { name = \"outbox\", plugin = \"file\", config = { path = \"%s\" } },\n"
	         "    { name = \"texts\", plugin = \"file\", channel = \"sms\",\n"
	         "      config = { path = \"%s\", simulate_failures = true } },\n",
	         out1, out2);
	struct ng_conf *conf = load_conf(dir, channels, path, sizeof path);
	ASSERT_EQ_INT(ng_plugin_host_load_conf(r.host, conf, NULL, NULL), 2);
	struct ng_plugin *email = ng_plugin_find(r.host, "outbox");
	struct ng_plugin *sms = ng_plugin_find(r.host, "texts");

	struct nudge_header extra[] = {{"Feedback-ID", "welcome:shop"}};
	struct nudge_message m = message(42, "alice@example.org");
	m.purpose = NUDGE_PURPOSE_MARKETING;
	m.recipient_name = "Alice";
	m.from = "shop@example.com";
	m.from_name = "The Shop";
	m.subject = "Welcome, Alice";
	m.text = "Hello Alice";
	m.html = "<p>Hello Alice</p>";
	m.unsubscribe_url = "https://shop.example/u/tok";
	m.headers = extra;
	m.nheaders = 1;
	struct nudge_message t1 = message(43, "+15550001"),
	                     t2 = message(44, "bob+retry@example.org"),
	                     t3 = message(45, "carol+bounce@example.org");
	t1.body = t2.body = t3.body = "Your code is 1234";
	struct outcome o[4] = {0};
	send_one(email, &m, &o[0]);
	send_one(sms, &t1, &o[1]);
	send_one(sms, &t2, &o[2]);
	send_one(sms, &t3, &o[3]);
	for (int i = 0; i < 4; i++)
		run_until(&r.loop, &o[i].calls, 1);
	ASSERT_EQ_INT(o[0].status, NUDGE_SEND_SENT);
	ASSERT_EQ_STR(o[0].provider_id, "file-42-1");
	ASSERT_EQ_INT(o[1].status, NUDGE_SEND_SENT);
	ASSERT_EQ_INT(o[2].status, NUDGE_SEND_RETRY);
	ASSERT_EQ_INT(o[3].status, NUDGE_SEND_FAILED);
	ASSERT_EQ_INT(o[3].suppress, 1);
	struct nudge_health h;
	ng_plugin_health(email, &h);
	ASSERT_EQ_INT(h.status, NUDGE_HEALTH_OK);
	ASSERT_EQ_STR(h.detail, "1 messages written");
	rig_close(&r);

	const char *a = slurp(out1);
	ASSERT_CONTAINS(a, "==== nudge message 42 (attempt 1) ====\n");
	ASSERT_CONTAINS(a, "\nInstance: outbox\nChannel: email\nPurpose: marketing\n");
	ASSERT_CONTAINS(a, "\nFrom: The Shop <shop@example.com>\nTo: Alice <alice@example.org>\n");
	ASSERT_CONTAINS(a, "\nSubject: Welcome, Alice\n");
	ASSERT_CONTAINS(a, "\nList-Unsubscribe: <https://shop.example/u/tok>\n");
	ASSERT_CONTAINS(a, "\nFeedback-ID: welcome:shop\n");
	ASSERT_CONTAINS(a,
	                "--- text/plain ---\nHello Alice\n--- text/html ---\n<p>Hello Alice</p>\n");
	ASSERT(strstr(a, "message 43") == NULL);
	const char *b = slurp(out2);
	ASSERT_CONTAINS(b, "==== nudge message 43 (attempt 1) ====\n");
	ASSERT_CONTAINS(b, "--- body ---\nYour code is 1234\n");
	ASSERT(strstr(b, "message 44") == NULL); /* simulated failures write nothing */
	ASSERT(strstr(b, "message 42") == NULL);
	struct stat st;
	ASSERT_EQ_INT(stat(out1, &st), 0);
	ASSERT_EQ_INT(st.st_mode & 0777, 0600);
	unlink(out1);
	unlink(out2);
	ng_conf_free(conf);
	unlink(path);
	free(dir);
}

NG_TESTS(NG_TEST(test_refusals_each_with_a_sentence_while_good_ones_load),
         NG_TEST(test_send_results_come_later_exactly_once),
         NG_TEST(test_completion_inside_send_is_held_to_the_next_turn),
         NG_TEST(test_shutdown_gives_back_outstanding_sends),
         NG_TEST(test_webhook_reaches_the_instance), NG_TEST(test_event_reports_of_every_minor),
         NG_TEST(test_contrib_example_builds_from_the_header_alone),
         NG_TEST(test_file_sink_appends_messages), )
