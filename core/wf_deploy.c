/*
 * wf_deploy.c — workflow versions in the database. Deploying a folder loads and validates every
 * workflow file (a broken one is refused with file:line and the others still deploy); a file whose
 * source differs from every stored version of its workflow becomes a new version and the active
 * one; an unchanged file changes nothing. Then the engine loads every stored version, because a
 * running instance finishes on the version it started with; only the active version starts new
 * instances.
 */
#include "ng.h"
#include "wf_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct deploy {
	struct ng_wf_engine *e;
	ng_wf_done_cb done;
	void *arg;
	struct wf_stmts st;
	char *errors; /* refused files, one per line */
	int status;
};

static void append_error(struct deploy *d, const char *msg)
{
	char *n = d->errors ? ng_xasprintf("%s\n%s", d->errors, msg) : ng_xstrdup(msg);
	free(d->errors);
	d->errors = n;
	/* A refused file is a configuration problem: the others deploy, and the daemon runs them
	 * (a database failure overrides this with its own code, and the daemon retries). */
	d->status = NG_ECONFIG;
}

static void finish(struct deploy *d)
{
	struct ng_wf_engine *e = d->e;
	e->busy--;
	if (d->done)
		d->done(d->status, d->errors, d->arg);
	wf_stmts_free(&d->st);
	free(d->errors);
	free(d);
	wf_engine_settle(e);
}

static void on_versions(const struct ng_db_result *r, void *arg)
{
	struct deploy *d = arg;
	struct ng_wf_engine *e = d->e;
	if (r->status != 0) {
		append_error(d, r->message);
		d->status = r->status;
		finish(d);
		return;
	}
	for (struct ng_wf_def *x = e->defs; x; x = x->next)
		x->active = 0;
	for (int i = 0; i < PQntuples(r->res); i++) {
		const char *name = wf_col(r->res, i, 0);
		int version = (int)wf_col_i64(r->res, i, 1);
		struct ng_wf_def *def = wf_def_find(e, name, version);
		if (!def) {
			const char *src = wf_col(r->res, i, 2);
			char *path = ng_xasprintf("workflows/%s.lua", name), *err = NULL;
			if (ng_wf_load_buffer(e->lua, path, src, strlen(src), &def, &err) != 0) {
				ng_error("wf", "workflow %s version %d cannot be loaded: %s", name,
				         version, err);
				free(err);
				free(path);
				continue;
			}
			free(path);
			def->version = version;
			def->next = e->defs;
			e->defs = def;
		}
		def->active = wf_col(r->res, i, 3) && wf_col(r->res, i, 3)[0] == 't';
	}
	finish(d);
}

static void load_versions(struct deploy *d)
{
	int rc = ng_db_query(d->e->opt.db,
	                     "SELECT v.workflow, v.version, v.source, w.active_version = v.version"
	                     " FROM workflow_versions v JOIN workflows w ON w.name = v.workflow"
	                     " WHERE w.enabled ORDER BY v.workflow, v.version",
	                     0, NULL, on_versions, d);
	if (rc) {
		struct ng_db_result r = {.status = rc, .message = ng_strerror(rc), .sqlstate = ""};
		on_versions(&r, d);
	}
}

static void on_deployed(const struct ng_db_result *r, void *arg)
{
	struct deploy *d = arg;
	if (r->status != 0) {
		append_error(d, r->message);
		d->status = r->status;
		finish(d);
		return;
	}
	load_versions(d);
}

static int is_workflow_file(const char *n)
{
	size_t len = strlen(n);
	return len > 4 && strcmp(n + len - 4, ".lua") == 0 &&
	       !(len > 9 && strcmp(n + len - 9, "_test.lua") == 0) && n[0] != '.';
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Queues the statements that store one definition as a version (if new) and make it active. */
static void queue_version(struct deploy *d, struct ng_wf_def *def)
{
	char *desc = ng_wf_def_describe(def);
	wf_stmts_add(&d->st, "INSERT INTO workflows (name) VALUES ($1) ON CONFLICT DO NOTHING", 1,
	             def->name);
	/* Serialises concurrent deploys of one workflow, so version numbers never collide. */
	wf_stmts_add(&d->st, "SELECT 1 FROM workflows WHERE name = $1 FOR UPDATE", 1, def->name);
	wf_stmts_add(
	    &d->st,
	    "INSERT INTO workflow_versions (workflow, version, source, source_hash, definition)"
	    " SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4 FROM workflow_versions"
	    " WHERE workflow = $1 ON CONFLICT (workflow, source_hash) DO NOTHING",
	    4, def->name, def->source, def->hash, desc);
	wf_stmts_add(
	    &d->st,
	    "UPDATE workflows SET active_version = (SELECT version FROM workflow_versions"
	    " WHERE workflow = $1 AND source_hash = $2), updated_at = now() WHERE name = $1",
	    2, def->name, def->hash);
	free(desc);
}

int ng_wf_engine_deploy(struct ng_wf_engine *e, const char *dir, ng_wf_done_cb done, void *arg)
{
	struct deploy *d = ng_xcalloc(1, sizeof(*d));
	d->e = e;
	d->done = done;
	d->arg = arg;
	e->busy++;
	if (!dir) {
		load_versions(d);
		return 0;
	}
	DIR *dh = opendir(dir);
	if (!dh) {
		int rc = -errno;
		e->busy--;
		free(d);
		return rc;
	}
	char **names = NULL;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(dh))) {
		if (!is_workflow_file(de->d_name))
			continue;
		names = ng_xrealloc(names, (n + 1) * sizeof(char *));
		names[n++] = ng_xstrdup(de->d_name);
	}
	closedir(dh);
	if (n > 1) /* qsort(NULL, 0) is undefined: an empty directory is fine */
		qsort(names, n, sizeof(char *), cmp_str);
	for (size_t i = 0; i < n; i++) {
		char *path = ng_xasprintf("%s/%s", dir, names[i]), *err = NULL;
		struct ng_wf_def *def;
		if (ng_wf_load(e->lua, path, &def, &err) != 0) {
			append_error(d, err);
			free(err);
		} else {
			queue_version(d, def);
			ng_wf_def_free(def);
		}
		free(path);
		free(names[i]);
	}
	free(names);
	if (d->st.n == 0) {
		load_versions(d);
		return 0;
	}
	int rc = ng_db_batch(e->opt.db, d->st.v, d->st.n, on_deployed, d);
	if (rc) {
		struct ng_db_result r = {.status = rc, .message = ng_strerror(rc), .sqlstate = ""};
		on_deployed(&r, d);
	}
	return 0;
}
