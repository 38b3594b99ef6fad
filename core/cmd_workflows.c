/*
 * cmd_workflows.c — `nudge workflows list|show|deploy|check`: what is deployed, one workflow's
 * versions and instances, deploying the workflows folder (a changed file becomes a new version;
 * running instances keep theirs), and validating files without a database. Also the conninfo
 * lookup the workflow commands share (--conninfo, else --config's database.conninfo).
 */
#include "cli.h"
#include "config.h"
#include "ng.h"
#include "paths.h"
#include "wf.h"

#include <dirent.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *ng_cli_conninfo(const char *config, const char *conninfo)
{
	if (conninfo)
		return ng_xstrdup(conninfo);
	char err[1024];
	struct ng_conf *c;
	if (ng_conf_load(config ? config : "nudge.conf.lua", &c, err, sizeof err) != 0) {
		fprintf(stderr, "%s\n", err);
		return NULL;
	}
	char *ci = ng_xstrdup(ng_conf_str(c, "database.conninfo"));
	ng_conf_free(c);
	return ci;
}

PGconn *ng_cli_connect(const char *config, const char *conninfo)
{
	char *ci = ng_cli_conninfo(config, conninfo);
	if (!ci)
		return NULL;
	PGconn *pg = PQconnectdb(ci);
	free(ci);
	if (PQstatus(pg) != CONNECTION_OK) {
		fprintf(stderr, "nudge: %s", PQerrorMessage(pg));
		PQfinish(pg);
		return NULL;
	}
	return pg;
}

static int print_query(PGconn *pg, const char *sql, int n, const char *const *p)
{
	PGresult *r = PQexecParams(pg, sql, n, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(stderr, "nudge: %s", PQresultErrorMessage(r));
		PQclear(r);
		return 1;
	}
	for (int f = 0; f < PQnfields(r); f++)
		printf("%s%s", f ? "\t" : "", PQfname(r, f));
	printf("\n");
	for (int i = 0; i < PQntuples(r); i++) {
		for (int f = 0; f < PQnfields(r); f++)
			printf("%s%s", f ? "\t" : "", PQgetvalue(r, i, f));
		printf("\n");
	}
	PQclear(r);
	return 0;
}

static int check_paths(int argc, char **argv)
{
	struct ng_lua *lua;
	struct ng_lua_limits lim = {0};
	if (ng_lua_open(&lua, &lim))
		return 1;
	int bad = 0, n = 0;
	for (int i = 0; i < argc; i++) {
		DIR *d = opendir(argv[i]);
		char **files = NULL;
		int nf = 0;
		if (d) {
			struct dirent *de;
			while ((de = readdir(d))) {
				size_t l = strlen(de->d_name);
				if (l > 4 && !strcmp(de->d_name + l - 4, ".lua") &&
				    !(l > 9 && !strcmp(de->d_name + l - 9, "_test.lua"))) {
					files =
					    ng_xrealloc(files, (size_t)(nf + 1) * sizeof(char *));
					files[nf++] = ng_xasprintf("%s/%s", argv[i], de->d_name);
				}
			}
			closedir(d);
		} else {
			files = ng_xmalloc(sizeof(char *));
			files[nf++] = ng_xstrdup(argv[i]);
		}
		for (int j = 0; j < nf; j++) {
			struct ng_wf_def *def;
			char *err = NULL;
			if (ng_wf_load(lua, files[j], &def, &err) != 0) {
				fprintf(stderr, "%s\n", err);
				bad++;
			} else {
				printf("ok %s (%s)\n", files[j], ng_wf_def_name(def));
				ng_wf_def_free(def);
			}
			free(err);
			free(files[j]);
			n++;
		}
		free(files);
	}
	ng_lua_close(lua);
	printf("%d checked, %d refused\n", n, bad);
	return bad ? 1 : 0;
}

struct deploy_wait {
	int done, status;
};

static void on_deployed(int status, const char *err, void *arg)
{
	struct deploy_wait *w = arg;
	w->done = 1;
	w->status = status;
	if (err)
		fprintf(stderr, "%s\n", err);
}

static void on_closed(void *arg)
{
	(*(int *)arg)++;
}

static int deploy(const char *conninfo, const char *dir)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	ng_db *db;
	struct ng_db_options dbo = {.conninfo = conninfo, .pool_size = 1};
	if (ng_db_open(&db, &loop, &dbo))
		return 1;
	struct ng_clock *clock = ng_clock_real(&loop);
	struct ng_wf_options wo = {.loop = &loop, .db = db, .clock = clock};
	struct ng_wf_engine *e;
	struct deploy_wait w = {0};
	int closed = 0;
	if (ng_wf_engine_open(&e, &wo) == 0) {
		if (ng_wf_engine_deploy(e, dir, on_deployed, &w) != 0)
			w = (struct deploy_wait){1, 1};
		while (!w.done)
			uv_run(&loop, UV_RUN_ONCE);
		ng_wf_engine_close(e, on_closed, &closed);
	} else {
		closed = 1;
		w.status = 1;
	}
	ng_db_close(db, on_closed, &closed);
	ng_clock_close(clock, on_closed, &closed);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	if (w.status == 0)
		printf("deployed %s\n", dir);
	return w.status ? 1 : 0;
}

int ng_cmd_workflows(int argc, char **argv)
{
	if (argc < 2)
		return ng_cli_usage("workflows");
	const char *sub = argv[1], *config = NULL, *conninfo = NULL, *arg = NULL;
	if (strcmp(sub, "check") == 0)
		return argc > 2 ? check_paths(argc - 2, argv + 2) : ng_cli_usage("workflows");
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			config = argv[++i];
		else if (strcmp(argv[i], "--conninfo") == 0 && i + 1 < argc)
			conninfo = argv[++i];
		else if (!arg && argv[i][0] != '-')
			arg = argv[i];
		else
			return ng_cli_usage("workflows");
	}
	char *ci = ng_cli_conninfo(config, conninfo);
	if (!ci)
		return 1;
	int rc;
	if (strcmp(sub, "deploy") == 0) {
		char *dir = arg ? ng_xstrdup(arg) : ng_paths_shipped("workflows");
		rc = dir ? deploy(ci, dir) : 1;
		free(dir);
		free(ci);
		return rc;
	}
	PGconn *pg = PQconnectdb(ci);
	free(ci);
	if (PQstatus(pg) != CONNECTION_OK) {
		fprintf(stderr, "nudge: %s", PQerrorMessage(pg));
		PQfinish(pg);
		return 1;
	}
	if (strcmp(sub, "list") == 0 && !arg) {
		rc = print_query(pg,
		                 "SELECT w.name, w.active_version AS version, w.enabled,"
		                 " (SELECT count(*) FROM instances i WHERE i.workflow = w.name AND"
		                 "  i.status IN ('ready', 'running', 'waiting')) AS live,"
		                 " (SELECT count(*) FROM instances i WHERE i.workflow = w.name AND"
		                 "  i.status IN ('parked', 'failed')) AS needs_attention"
		                 " FROM workflows w ORDER BY w.name",
		                 0, NULL);
	} else if (strcmp(sub, "show") == 0 && arg) {
		const char *p[1] = {arg};
		rc = print_query(pg,
		                 "SELECT v.version, v.source_hash, v.created_at, v.definition,"
		                 " v.version = w.active_version AS active FROM workflow_versions v"
		                 " JOIN workflows w ON w.name = v.workflow WHERE v.workflow = $1"
		                 " ORDER BY v.version",
		                 1, p);
		if (!rc)
			rc = print_query(pg,
			                 "SELECT version, status, count(*) FROM instances"
			                 " WHERE workflow = $1 GROUP BY 1, 2 ORDER BY 1, 2",
			                 1, p);
	} else {
		rc = ng_cli_usage("workflows");
	}
	PQfinish(pg);
	return rc;
}
