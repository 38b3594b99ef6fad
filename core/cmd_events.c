/*
 * cmd_events.c — `nudge events send FILE`: posts a /v1/events body (one event or {"events":
 * [...]}) to a running daemon, or with --direct maps it with the api mapper and commits it straight
 * into the database through the same SQL function the daemon uses.
 *
 * The daemon's address and API key come from --url/--key or the configuration (http.listen and
 * the first intake.api_keys entry). Exit status 0 when the events were accepted (or recognised as
 * duplicates), 1 when they were refused or could not be delivered.
 */
#include "cli.h"
#include "config.h"
#include "intake_map.h"
#include "intake_commit.h"
#include "ng.h"
#include "paths.h"

#include <curl/curl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct buf {
	char *p;
	size_t n;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct buf *b = arg;
	size_t n = size * nmemb;
	b->p = ng_xrealloc(b->p, b->n + n + 1);
	memcpy(b->p + b->n, ptr, n);
	b->n += n;
	b->p[b->n] = '\0';
	return n;
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	struct buf b = {ng_xstrdup(""), 0};
	char chunk[8192];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		on_data(chunk, 1, n, &b);
	fclose(f);
	*len = b.n;
	return b.p;
}

static const char *first_api_key(const struct ng_conf *c)
{
	const struct ng_conf_node *list = c ? ng_conf_get(c, "intake.api_keys") : NULL;
	const struct ng_conf_node *item = list ? list->child : NULL;
	for (const struct ng_conf_node *k = item ? item->child : NULL; k; k = k->next)
		if (strcmp(k->key, "key") == 0)
			return k->str;
	return NULL;
}

static int send_http(const char *url, const char *key, const char *body, size_t len)
{
	CURL *h = curl_easy_init();
	if (!h)
		return 1;
	char *full = ng_xasprintf("%s/v1/events", url);
	char *auth = ng_xasprintf("Authorization: Bearer %s", key ? key : "");
	struct curl_slist *hs = curl_slist_append(NULL, "Content-Type: application/json");
	hs = curl_slist_append(hs, auth);
	struct buf b = {ng_xstrdup(""), 0};
	curl_easy_setopt(h, CURLOPT_URL, full);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)len);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
	CURLcode cc = curl_easy_perform(h);
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	int rc = 1;
	if (cc != CURLE_OK)
		fprintf(stderr, "nudge: cannot post to %s: %s\n", full, curl_easy_strerror(cc));
	else if (status >= 200 && status < 300) {
		printf("%s", b.p);
		rc = 0;
	} else
		fprintf(stderr, "nudge: %s answered HTTP %ld: %s", full, status, b.p);
	free(b.p);
	curl_slist_free_all(hs);
	curl_easy_cleanup(h);
	free(auth);
	free(full);
	return rc;
}

static int send_direct(const struct ng_conf *conf, const char *conninfo, const char *body,
                       size_t len)
{
	const char *dir = conf ? ng_conf_str(conf, "intake.mappers") : NULL;
	char *found = dir ? ng_xstrdup(dir) : ng_paths_shipped("mappers");
	if (!found)
		found = ng_paths_shipped("contrib/mappers");
	if (!found) {
		fprintf(stderr, "nudge: no mappers directory: set key 'intake.mappers'\n");
		return 1;
	}
	struct ng_intake_options o = {
	    .default_country_code = conf ? ng_conf_str(conf, "intake.default_country_code") : NULL,
	    .strict = 1};
	struct ng_intake_mapper *m = NULL;
	char err[1024];
	int rc = ng_intake_mapper_load(found, "api", &o, &m, err, sizeof err);
	free(found);
	if (rc) {
		fprintf(stderr, "nudge: %s\n", err);
		return 1;
	}
	json_error_t je;
	json_t *payload = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je), *events = NULL;
	if (!payload) {
		fprintf(stderr, "nudge: malformed JSON at line %d column %d: %s\n", je.line,
		        je.column, je.text);
		ng_intake_mapper_free(m);
		return 1;
	}
	rc = ng_intake_map(m, "events", NULL, 0, payload, &events, err, sizeof err);
	json_decref(payload);
	ng_intake_mapper_free(m);
	if (rc) {
		fprintf(stderr, "nudge: %s\n", err);
		return 1;
	}
	size_t i;
	json_t *ev;
	json_array_foreach(events, i, ev)
	{
		json_object_set_new(ev, "identity_source", json_string("api"));
	}
	char *text = json_dumps(events, JSON_COMPACT);
	json_decref(events);
	PGconn *pg = PQconnectdb(conninfo);
	rc = 1;
	if (PQstatus(pg) != CONNECTION_OK) {
		fprintf(stderr, "nudge: %s", PQerrorMessage(pg));
	} else {
		const char *p[1] = {text};
		PGresult *r = PQexecParams(pg, "SELECT ng_intake_accept_batch($1::jsonb)", 1, NULL,
		                           p, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			fprintf(stderr, "nudge: %s", PQresultErrorMessage(r));
		} else {
			for (int k = 0; k < PQntuples(r); k++)
				printf("%s\n", PQgetvalue(r, k, 0));
			rc = 0;
		}
		PQclear(r);
		/* The batch does not notify (sql/0012): wake the running schedulers as the daemon's
		 * intake does after its commits. */
		if (rc == 0)
			PQclear(PQexec(pg, NG_INTAKE_WAKE_SQL));
	}
	PQfinish(pg);
	free(text);
	return rc;
}

int ng_cmd_events(int argc, char **argv)
{
	const char *file = NULL, *url = NULL, *key = NULL, *config = NULL, *conninfo = NULL;
	int direct = 0;
	if (argc < 2 || strcmp(argv[1], "send") != 0)
		return ng_cli_usage("events");
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--url") == 0 && i + 1 < argc)
			url = argv[++i];
		else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
			key = argv[++i];
		else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			config = argv[++i];
		else if (strcmp(argv[i], "--conninfo") == 0 && i + 1 < argc)
			conninfo = argv[++i];
		else if (strcmp(argv[i], "--direct") == 0)
			direct = 1;
		else if (!file && argv[i][0] != '-')
			file = argv[i];
		else
			return ng_cli_usage("events");
	}
	if (!file)
		return ng_cli_usage("events");
	size_t len;
	char *body = read_file(file, &len);
	if (!body) {
		fprintf(stderr, "nudge: cannot read %s\n", file);
		return 1;
	}
	/* The configuration is needed unless everything was given on the command line. */
	struct ng_conf *conf = NULL;
	int need_conf = direct ? !conninfo : (!url || !key);
	if (need_conf || config) {
		char err[1024];
		if (ng_conf_load(config ? config : "nudge.conf.lua", &conf, err, sizeof err) != 0) {
			fprintf(stderr, "%s\n", err);
			free(body);
			return 1;
		}
	}
	int rc;
	if (direct) {
		rc = send_direct(conf, conninfo ? conninfo : ng_conf_str(conf, "database.conninfo"),
		                 body, len);
	} else {
		char *u = url ? ng_xstrdup(url)
		              : ng_xasprintf("http://%s", ng_conf_str(conf, "http.listen"));
		rc = send_http(u, key ? key : first_api_key(conf), body, len);
		free(u);
	}
	ng_conf_free(conf);
	free(body);
	return rc;
}
