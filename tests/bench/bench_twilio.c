/*
 * bench_twilio.c — SMS throughput of the twilio plugin through the shared HTTP client: N messages
 * (default 10,000) to the Twilio stand-in, which answers each after LATENCY ms (default 100), with
 * the plugin's max_concurrent = C (default 50) and no rate limit. The ideal is C / latency
 * messages per second; the figure is the measured rate beside it, and the loop's worst lag.
 * Built and run by tests/bench/bench_twilio.sh.
 */
#include "clock.h"
#include "config.h"
#include "httpc.h"
#include "ng.h"
#include "plugin_host.h"
#include "support/twilio_standin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ACCOUNT "AC0123456789abcdef0123456789abcdef"

static int done_count, sent_count;
static uint64_t lag_max, lag_expected;

static void on_result(void *arg, const struct nudge_send_result *r)
{
	NG_UNUSED(arg);
	done_count++;
	sent_count += r->status == NUDGE_SEND_SENT;
}

static void on_lag(uv_timer_t *t)
{
	uint64_t now = uv_now(t->loop);
	if (now > lag_expected && now - lag_expected > lag_max)
		lag_max = now - lag_expected;
	lag_expected = now + 10;
}

static void count(void *arg)
{
	(*(int *)arg)++;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 10000;
	int latency = argc > 2 ? atoi(argv[2]) : 100;
	int conc = argc > 3 ? atoi(argv[3]) : 50;
	const char *plugins = argc > 4 ? argv[4] : ".build/plugins";
	ng_log_setup(NG_LOG_WARN, NG_LOG_LOGFMT);
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct ng_clock *clock = ng_clock_real(&loop);
	struct ng_httpc *httpc;
	struct ng_httpc_options ho = {.max_connections = conc * 2};
	ng_httpc_open(&httpc, &loop, &ho);
	struct ng_plugin_host *host;
	ng_plugin_host_open(&host, &loop, clock, NULL);
	ng_plugin_host_set_httpc(host, httpc);
	struct tw_standin *api;
	struct tw_standin_options so = {
	    .account_sid = ACCOUNT, .auth_token = "bench-token", .delay_ms = (uint64_t)latency};
	if (tw_standin_start(&api, &loop, &so) != 0)
		return 1;
	char path[] = "/tmp/nudge-bench-twilio-XXXXXX";
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");
	fprintf(
	    f,
	    "return { database = { conninfo = \"dbname=unused\" }, paths = { plugins = \"%s\" },\n"
	    "  channels = { { name = \"sms\", plugin = \"twilio\", config = {\n"
	    "    account_sid = \"%s\", auth_token = \"bench-token\", from = \"+15005550006\",\n"
	    "    base_url = \"http://127.0.0.1:%d\", rate_per_second = 0, max_concurrent = %d,\n"
	    "    status_callback_url = \"https://shop.example/v1/webhooks/sms\" } } } }\n",
	    plugins, ACCOUNT, tw_standin_port(api), conc);
	fclose(f);
	struct ng_conf *conf;
	char err[512];
	if (ng_conf_load(path, &conf, err, sizeof err) != 0 ||
	    ng_plugin_host_load_conf(host, conf, NULL, NULL) != 1) {
		fprintf(stderr, "bench: cannot load the twilio plugin: %s\n", err);
		return 1;
	}
	unlink(path);
	struct ng_plugin *p = ng_plugin_find(host, "sms");
	struct nudge_message *m = calloc((size_t)n, sizeof *m);
	char(*keys)[32] = calloc((size_t)n, sizeof *keys);
	char(*to)[24] = calloc((size_t)n, sizeof *to);
	uint64_t t0 = uv_hrtime();
	for (int i = 0; i < n; i++) {
		snprintf(keys[i], sizeof keys[i], "bench-%d", i);
		snprintf(to[i], sizeof to[i], "+1555%07d", i);
		m[i] = (struct nudge_message){.struct_size = sizeof m[i],
		                              .purpose = NUDGE_PURPOSE_MARKETING,
		                              .id = i,
		                              .attempt = 1,
		                              .key = keys[i],
		                              .channel = "sms",
		                              .recipient = to[i],
		                              .body = "Your cart misses you: 10% off today."};
		ng_plugin_send(p, &m[i], on_result, NULL);
	}
	/* The probe starts after the submission: handing over all messages at once is the
	 * benchmark's doing (the dispatcher hands over batches). */
	uv_timer_t lag;
	uv_timer_init(&loop, &lag);
	uv_update_time(&loop);
	lag_expected = uv_now(&loop) + 10;
	uv_timer_start(&lag, on_lag, 10, 10);
	while (done_count < n)
		uv_run(&loop, UV_RUN_ONCE);
	double secs = (double)(uv_hrtime() - t0) / 1e9;
	uv_close((uv_handle_t *)&lag, NULL);
	double rate = n / secs, ideal = conc * 1000.0 / latency;
	printf(
	    "twilio: %d messages, latency %d ms, concurrency %d: %.1f s, %.0f msgs/s; ideal %.0f "
	    "msgs/s (concurrency / latency); ratio %.2f; sent %d; %llu connections; loop lag max "
	    "%llu ms\n",
	    n, latency, conc, secs, rate, ideal, rate / ideal, sent_count,
	    (unsigned long long)tw_standin_connections(api), (unsigned long long)lag_max);
	int closed = 0;
	ng_plugin_host_close(host, count, &closed);
	while (closed < 1)
		uv_run(&loop, UV_RUN_ONCE);
	tw_standin_stop(api, count, &closed);
	while (closed < 2)
		uv_run(&loop, UV_RUN_ONCE);
	ng_httpc_close(httpc, count, &closed);
	ng_clock_close(clock, count, &closed);
	uv_run(&loop, UV_RUN_DEFAULT);
	ng_conf_free(conf);
	free(m);
	free(keys);
	free(to);
	return uv_loop_close(&loop) == 0 && sent_count == n ? 0 : 1;
}
