/*
 * migrate.c — forward-only migrations: read sql/NNNN_name.sql, apply the new ones in one
 * transaction under an advisory lock, record them with a checksum.
 */
#include "migrate.h"
#include "ng.h"

#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Any constant works; it only has to be the same for every nudge (pg_advisory_xact_lock key). */
#define MIGRATE_LOCK_KEY 0x6e75646765LL /* "nudge" */

struct migration {
	int version;
	char *name; /* file name */
	char *sql;
	char checksum[65];
	int applied; /* in this run, pending COMMIT */
};

static int cmp_migration(const void *a, const void *b)
{
	const struct migration *x = a, *y = b;
	return (x->version > y->version) - (x->version < y->version);
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 8192, len = 0;
	char *buf = ng_xmalloc(cap);
	size_t n;
	while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (cap - len < 2) {
			cap *= 2;
			buf = ng_xrealloc(buf, cap);
		}
	}
	fclose(f);
	buf[len] = '\0';
	return buf;
}

static void sha256_hex(const char *data, char out[65])
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	EVP_Digest(data, strlen(data), md, &mdlen, EVP_sha256(), NULL);
	for (unsigned i = 0; i < mdlen; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
	out[64] = '\0';
}

static void free_migrations(struct migration *m, int n)
{
	for (int i = 0; i < n; i++) {
		free(m[i].name);
		free(m[i].sql);
	}
	free(m);
}

/* Reads sql_dir/NNNN_*.sql sorted by number. Two files with one number are an error. */
static int load_migrations(const char *dir, struct migration **out, int *count, char *err,
			   size_t errlen)
{
	DIR *d = opendir(dir);
	if (!d) {
		snprintf(err, errlen, "cannot open the migrations directory %s: %s", dir,
			 strerror(errno));
		return -errno;
	}
	struct migration *m = NULL;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		const char *f = de->d_name;
		size_t len = strlen(f);
		if (len < 9 || strcmp(f + len - 4, ".sql") != 0)
			continue;
		char *end;
		long v = strtol(f, &end, 10);
		if (end == f || *end != '_' || v <= 0)
			continue;
		char *path = ng_xasprintf("%s/%s", dir, f);
		char *sql = read_file(path);
		free(path);
		if (!sql) {
			snprintf(err, errlen, "cannot read migration %s/%s: %s", dir, f,
				 strerror(errno));
			closedir(d);
			free_migrations(m, n);
			return -EIO;
		}
		m = ng_xrealloc(m, sizeof *m * (size_t)(n + 1));
		m[n].version = (int)v;
		m[n].applied = 0;
		m[n].name = ng_xstrdup(f);
		m[n].sql = sql;
		sha256_hex(sql, m[n].checksum);
		n++;
	}
	closedir(d);
	qsort(m, (size_t)n, sizeof *m, cmp_migration);
	for (int i = 1; i < n; i++) {
		if (m[i].version == m[i - 1].version) {
			snprintf(err, errlen, "migrations %s and %s share the number %d", m[i - 1].name,
				 m[i].name, m[i].version);
			free_migrations(m, n);
			return -EINVAL;
		}
	}
	*out = m;
	*count = n;
	return 0;
}

/* Runs sql; on failure fills err with what failed and returns NG_EDB. */
static int exec_ok(PGconn *c, const char *sql, const char *what, char *err, size_t errlen)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	int rc = 0;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "%s failed: %s", what, PQresultErrorMessage(r));
		/* Drop libpq's trailing newline so the sentence ends cleanly. */
		size_t l = strlen(err);
		while (l && (err[l - 1] == '\n' || err[l - 1] == ' '))
			err[--l] = '\0';
		rc = NG_EDB;
	}
	PQclear(r);
	return rc;
}

static int apply_pending(PGconn *c, struct migration *m, int n, int *applied, char *err,
			 size_t errlen)
{
	char sql[256];
	snprintf(sql, sizeof sql, "SELECT pg_advisory_xact_lock(%lld)", MIGRATE_LOCK_KEY);
	if (exec_ok(c, sql, "taking the migration lock", err, errlen))
		return NG_EDB;
	if (exec_ok(c,
		    "CREATE TABLE IF NOT EXISTS nudge_migrations ("
		    " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
		    " applied_at timestamptz NOT NULL DEFAULT now())",
		    "creating nudge_migrations", err, errlen))
		return NG_EDB;

	for (int i = 0; i < n; i++) {
		char v[16];
		snprintf(v, sizeof v, "%d", m[i].version);
		const char *p1[1] = {v};
		PGresult *r = PQexecParams(
			c, "SELECT checksum FROM nudge_migrations WHERE version = $1::int", 1, NULL,
			p1, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			snprintf(err, errlen, "reading nudge_migrations failed: %s",
				 PQresultErrorMessage(r));
			PQclear(r);
			return NG_EDB;
		}
		if (PQntuples(r) == 1) {
			int same = strcmp(PQgetvalue(r, 0, 0), m[i].checksum) == 0;
			PQclear(r);
			if (!same) {
				snprintf(err, errlen,
					 "migration %s was changed after it was applied; migrations are "
					 "forward-only: put the change in a new numbered file",
					 m[i].name);
				return -EINVAL;
			}
			continue;
		}
		PQclear(r);
		char what[300];
		snprintf(what, sizeof what, "migration %s", m[i].name);
		if (exec_ok(c, m[i].sql, what, err, errlen))
			return NG_EDB;
		const char *p3[3] = {v, m[i].name, m[i].checksum};
		r = PQexecParams(c,
				 "INSERT INTO nudge_migrations (version, name, checksum) "
				 "VALUES ($1::int, $2, $3)",
				 3, NULL, p3, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			snprintf(err, errlen, "recording %s failed: %s", m[i].name,
				 PQresultErrorMessage(r));
			PQclear(r);
			return NG_EDB;
		}
		PQclear(r);
		m[i].applied = 1;
		(*applied)++;
	}
	return 0;
}

int ng_migrate_run(const char *conninfo, const char *sql_dir, int *applied, char *err, size_t errlen)
{
	struct migration *m = NULL;
	int n = 0;
	*applied = 0;
	int rc = load_migrations(sql_dir, &m, &n, err, errlen);
	if (rc)
		return rc;

	PGconn *c = PQconnectdb(conninfo);
	if (PQstatus(c) != CONNECTION_OK) {
		snprintf(err, errlen, "cannot connect to the database: %s", PQerrorMessage(c));
		PQfinish(c);
		free_migrations(m, n);
		return NG_EDB;
	}
	/* Quiet the NOTICEs of IF NOT EXISTS: they are expected on every run after the first. */
	PQclear(PQexec(c, "SET client_min_messages = warning"));
	rc = exec_ok(c, "BEGIN", "BEGIN", err, errlen);
	if (rc == 0)
		rc = apply_pending(c, m, n, applied, err, errlen);
	if (rc == 0)
		rc = exec_ok(c, "COMMIT", "COMMIT", err, errlen);
	if (rc == 0) {
		for (int i = 0; i < n; i++)
			if (m[i].applied)
				ng_info("migrate", "applied %s", m[i].name);
	} else
		PQclear(PQexec(c, "ROLLBACK"));
	if (rc)
		*applied = 0;
	PQfinish(c);
	free_migrations(m, n);
	return rc;
}

int ng_migrate_latest(const char *sql_dir)
{
	struct migration *m = NULL;
	int n = 0;
	char err[256];
	if (load_migrations(sql_dir, &m, &n, err, sizeof err) != 0 || n == 0)
		return 0;
	int latest = m[n - 1].version;
	free_migrations(m, n);
	return latest;
}
