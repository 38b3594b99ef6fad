/*
 * cmd_render.c — `nudge render TEMPLATE --data FILE.json [--dir DIR]`: renders one message template
 * against a data file (the object the dispatcher would pass: customer, store, message,
 * unsubscribe_url and the message's snapshot) and prints every part with its headers.
 */
#include "cli.h"
#include "msgtmpl.h"
#include "msgtmpl_int.h"
#include "ng.h"
#include "paths.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void header(const char *name, const char *v)
{
	if (v)
		printf("%s: %s\n", name, v);
}

static void part(const char *name, const char *v)
{
	if (!v)
		return;
	size_t n = strlen(v);
	printf("\n--- %s ---\n%s%s", name, v, n && v[n - 1] == '\n' ? "" : "\n");
}

int ng_cmd_render(int argc, char **argv)
{
	const char *tmpl = NULL, *data_file = NULL, *dir = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--data") && i + 1 < argc)
			data_file = argv[++i];
		else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
			dir = argv[++i];
		else if (argv[i][0] != '-' && !tmpl)
			tmpl = argv[i];
		else
			return ng_cli_usage("render");
	}
	if (!tmpl || !data_file)
		return ng_cli_usage("render");
	/* TEMPLATE is a name in the templates folder, or a path to a .liquid file. */
	char *name = ng_xstrdup(tmpl), *d = NULL;
	char *slash = strrchr(name, '/');
	if (slash) {
		*slash = 0;
		d = ng_xstrdup(name);
		memmove(name, slash + 1, strlen(slash + 1) + 1);
	}
	size_t nl = strlen(name);
	if (nl > 7 && !strcmp(name + nl - 7, ".liquid"))
		name[nl - 7] = 0;
	if (!d)
		d = dir ? ng_xstrdup(dir) : ng_paths_shipped("templates");
	if (!d) {
		fprintf(stderr, "nudge: no templates folder found (use --dir)\n");
		free(name);
		return 1;
	}
	json_error_t je;
	json_t *data = json_load_file(data_file, 0, &je);
	if (!data) {
		fprintf(stderr, "%s:%d:%d: %s\n", data_file, je.line, je.column, je.text);
		free(name);
		free(d);
		return 1;
	}
	char err[1024];
	struct ng_msgtmpl_set *set;
	int status = 1;
	if (ng_msgtmpl_open(d, &set, err, sizeof err) != 0) {
		fprintf(stderr, "%s\n", err);
		goto out;
	}
	struct ng_rendered_message m;
	if (ng_msgtmpl_render(set, name, data, &m, err, sizeof err) != 0) {
		fprintf(stderr, "%s\n", err);
		ng_msgtmpl_close(set);
		goto out;
	}
	header("Template", name);
	header("Channel", m.channel);
	header("Purpose", m.purpose);
	header("From-Name", m.from_name);
	header("Subject", m.subject);
	header("Preheader", m.preheader);
	if (m.body && !strcmp(m.channel, "sms")) {
		struct ng_sms_info si;
		ng_msgtmpl_sms_info(m.body, &si);
		printf("SMS: %s, %zu characters, %d segment%s\n", si.ucs2 ? "UCS-2" : "GSM-7",
		       si.units, si.segments, si.segments == 1 ? "" : "s");
	}
	part("html", m.html);
	part("text", m.text);
	part("body", m.body);
	ng_msgtmpl_rendered_free(&m);
	ng_msgtmpl_close(set);
	status = 0;
out:
	json_decref(data);
	free(name);
	free(d);
	return status;
}
