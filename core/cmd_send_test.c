/*
 * cmd_send_test.c — `nudge send-test --channel CH --template NAME --to ADDR`: renders one template
 * and sends it now through the channel's configured plugin instance (the first under `channels`
 * serving CH, or --instance NAME), then prints the plugin's result. Nothing touches the database:
 * this checks a relay's settings and a template's look before a workflow uses them.
 *
 * The message is transactional (no unsubscribe link, no consent check) and its render data is the
 * --data JSON object (default {}) with customer.email/phone set to ADDR and the store from the
 * configuration, like the dispatcher's. Exit status 0 when the provider accepted it.
 */
#include "cli.h"
#include "clock.h"
#include "config.h"
#include "msgtmpl.h"
#include "ng.h"
#include "paths.h"
#include "plugin_host.h"
#include "senders.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct send_test {
	int done, closed;
	int status;
	char line[600];
};

static void on_sent(void *arg, const struct nudge_send_result *r)
{
	struct send_test *t = arg;
	static const char *const names[] = {"?", "sent", "retry", "failed", "ambiguous"};
	t->done = 1;
	t->status = r->status;
	int i = r->status >= 1 && r->status <= 4 ? r->status : 0;
	if (r->status == NUDGE_SEND_SENT)
		snprintf(t->line, sizeof t->line, "sent: provider id %s",
		         r->provider_id ? r->provider_id : "(none)");
	else
		snprintf(t->line, sizeof t->line, "%s: %s%s%s", names[i],
		         r->reason ? r->reason : "no reason given",
		         r->status == NUDGE_SEND_FAILED && r->suppress
		             ? " (the address would be suppressed)"
		             : "",
		         r->status == NUDGE_SEND_RETRY && r->retry_after_ms
		             ? " (provider asks to wait)"
		             : "");
}

static void on_closed(void *arg)
{
	(*(int *)arg)++;
}

int ng_cmd_send_test(int argc, char **argv)
{
	const char *channel = NULL, *tpl = NULL, *to = NULL, *config = "nudge.conf.lua";
	const char *instance = NULL, *data_json = "{}";
	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			return ng_cli_usage("send-test");
		if (strcmp(argv[i], "--channel") == 0)
			channel = argv[++i];
		else if (strcmp(argv[i], "--template") == 0)
			tpl = argv[++i];
		else if (strcmp(argv[i], "--to") == 0)
			to = argv[++i];
		else if (strcmp(argv[i], "--config") == 0)
			config = argv[++i];
		else if (strcmp(argv[i], "--instance") == 0)
			instance = argv[++i];
		else if (strcmp(argv[i], "--data") == 0)
			data_json = argv[++i];
		else
			return ng_cli_usage("send-test");
	}
	if (!channel || !tpl || !to)
		return ng_cli_usage("send-test");
	json_error_t jerr;
	json_t *data = json_loads(data_json, 0, &jerr);
	if (!json_is_object(data)) {
		fprintf(stderr, "nudge: --data must be a JSON object: %s\n", jerr.text);
		json_decref(data);
		return 2;
	}
	char err[1024];
	struct ng_conf *conf;
	if (ng_conf_load(config, &conf, err, sizeof err) != 0) {
		fprintf(stderr, "nudge: %s\n", err);
		json_decref(data);
		return 1;
	}
	const char *dir = ng_conf_str(conf, "paths.templates");
	char *tdir = dir ? ng_xstrdup(dir) : ng_paths_shipped("templates");
	struct ng_msgtmpl_set *set = NULL;
	int rc = ng_msgtmpl_open(tdir ? tdir : "templates", &set, err, sizeof err);
	free(tdir);
	if (rc) {
		fprintf(stderr, "nudge: templates: %s\n", err);
		json_decref(data);
		ng_conf_free(conf);
		return 1;
	}
	json_t *cust = json_object_get(data, "customer");
	if (!json_is_object(cust)) {
		cust = json_object();
		json_object_set_new(data, "customer", cust);
	}
	json_object_set_new(cust, strcmp(channel, "email") == 0 ? "email" : "phone",
	                    json_string(to));
	json_t *store = json_object();
	static const char *const keys[] = {"name", "postal_address", "base_url", "timezone"};
	for (size_t i = 0; i < NG_ARRAY_LEN(keys); i++) {
		char path[32];
		snprintf(path, sizeof path, "store.%s", keys[i]);
		const char *v = ng_conf_str(conf, path);
		if (v)
			json_object_set_new(store, keys[i], json_string(v));
	}
	json_object_set_new(data, "store", store);
	char key[64];
	snprintf(key, sizeof key, "send-test-%lld-%d", (long long)time(NULL), rand() % 100000);
	json_object_set_new(data, "message", json_pack("{s:i, s:s}", "id", 0, "key", key));
	/* A marketing template must show an unsubscribe link. A test send goes to an address that
	 * is no customer, so it gets a link to the unsubscribe page that no token opens (it answers
	 * "this link is not valid"), unless --data brings one. */
	if (!json_object_get(data, "unsubscribe_url")) {
		const char *base = ng_conf_str(conf, "store.base_url");
		char *u = ng_xasprintf("%s/u/send-test", base ? base : "");
		json_object_set_new(data, "unsubscribe_url", json_string(u));
		free(u);
	}
	struct ng_rendered_message out = {0};
	rc = ng_msgtmpl_render(set, tpl, data, &out, err, sizeof err);
	json_decref(data);
	if (rc) {
		fprintf(stderr, "nudge: template %s: %s\n", tpl, err);
		ng_msgtmpl_close(set);
		ng_conf_free(conf);
		return 1;
	}

	uv_loop_t loop;
	uv_loop_init(&loop);
	struct ng_clock *clock = ng_clock_real(&loop);
	struct ng_senders *senders;
	struct ng_plugin_host *host;
	ng_senders_open(&senders, &loop, 1);
	ng_plugin_host_open(&host, &loop, clock, senders);
	ng_plugin_host_load_conf(host, conf, NULL, NULL);
	struct ng_plugin *p =
	    instance ? ng_plugin_find(host, instance) : ng_plugin_for_channel(host, channel);
	struct send_test t = {0};
	if (!p) {
		fprintf(stderr, "nudge: no channel instance %s%s is configured and loaded\n",
		        instance ? "named " : "for ", instance ? instance : channel);
	} else {
		struct nudge_message m = {
		    .struct_size = sizeof m,
		    .purpose = NUDGE_PURPOSE_TRANSACTIONAL,
		    .attempt = 1,
		    .key = key,
		    .channel = channel,
		    .recipient = to,
		    .from_name = out.from_name,
		    .subject = out.subject,
		    .text = out.text,
		    .html = out.html,
		    .body = out.body,
		};
		printf("sending %s to %s through %s (%s)\n", tpl, to, ng_plugin_name(p),
		       ng_plugin_path(p));
		fflush(stdout);
		if (ng_plugin_send(p, &m, on_sent, &t) == 0)
			while (!t.done)
				uv_run(&loop, UV_RUN_ONCE);
		else
			snprintf(t.line, sizeof t.line, "not sent: the plugin takes no sends");
		printf("%s\n", t.line);
	}
	ng_plugin_host_close(host, on_closed, &t.closed);
	while (t.closed < 1)
		uv_run(&loop, UV_RUN_ONCE);
	ng_senders_close(senders, on_closed, &t.closed);
	ng_clock_close(clock, on_closed, &t.closed);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	ng_msgtmpl_rendered_free(&out);
	ng_msgtmpl_close(set);
	ng_conf_free(conf);
	return t.status == NUDGE_SEND_SENT ? 0 : 1;
}
