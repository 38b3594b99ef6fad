/*
 * cmd_check.c — `nudge check PATH... [--data FILE.json]`: validates templates and workflows without
 * a database. A templates folder or .liquid file is checked by msgtmpl (syntax errors with
 * file:line:column, unknown filters, missing partials and layouts, front matter, the unsubscribe
 * link, and each template rendered against sample data — for SMS the encoding and segment
 * count); a workflows folder or .lua file goes to `nudge workflows check`.
 */
#include "cli.h"
#include "msgtmpl_int.h"
#include "ng.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void print_line(void *ud, const char *line)
{
	(void)ud;
	printf("%s\n", line);
}

static int ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Whether a folder holds workflows (*.lua) rather than templates (*.liquid). */
static int is_workflows_dir(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return 0;
	int lua = 0, liquid = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		lua += ends_with(e->d_name, ".lua");
		liquid += ends_with(e->d_name, ".liquid");
	}
	closedir(d);
	return lua > 0 && liquid == 0;
}

static json_t *sample_for(const char *path, const char *data_file)
{
	json_error_t je;
	if (data_file) {
		json_t *j = json_load_file(data_file, 0, &je);
		if (!j)
			fprintf(stderr, "%s:%d:%d: %s\n", data_file, je.line, je.column, je.text);
		return j;
	}
	/* The folder's own samples/sample.json, else a minimal customer and store. */
	char f[4096];
	struct stat st;
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		snprintf(f, sizeof f, "%s/samples/sample.json", path);
	else {
		const char *slash = strrchr(path, '/');
		snprintf(f, sizeof f, "%.*s/samples/sample.json", slash ? (int)(slash - path) : 1,
		         slash ? path : ".");
	}
	json_t *j = json_load_file(f, 0, &je);
	if (j)
		return j;
	return json_pack("{s:{s:s,s:s},s:{s:s,s:s,s:s},s:{s:s,s:s}}", "customer", "first_name",
	                 "Ada", "email", "ada@example.com", "store", "name", "Example Store",
	                 "postal_address", "1 Example Street", "base_url", "https://example.com",
	                 "message", "id", "sample", "key", "sample");
}

int ng_cmd_check(int argc, char **argv)
{
	const char *data_file = NULL;
	int npaths = 0, problems = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--data")) {
			if (i + 1 >= argc)
				return ng_cli_usage("check");
			data_file = argv[++i];
		} else if (argv[i][0] == '-') {
			return ng_cli_usage("check");
		}
	}
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--data")) {
			i++;
			continue;
		}
		const char *p = argv[i];
		npaths++;
		if (ends_with(p, ".lua") || is_workflows_dir(p)) {
			char *wargv[] = {"workflows", "check", (char *)p, NULL};
			if (ng_cmd_workflows(3, wargv) != 0)
				problems++;
			continue;
		}
		json_t *sample = sample_for(p, data_file);
		if (!sample)
			return 1;
		int n = ng_msgtmpl_check(p, sample, print_line, NULL);
		json_decref(sample);
		if (n)
			printf("%s: %d problem%s\n", p, n, n == 1 ? "" : "s");
		else
			printf("ok %s\n", p);
		problems += n;
	}
	if (!npaths)
		return ng_cli_usage("check");
	return problems ? 1 : 0;
}
