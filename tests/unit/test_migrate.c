/*
 * test_migrate.c — `nudge migrate` against the real test cluster: idempotent, serialised by the
 * advisory lock, all-or-nothing, forward-only.
 */
#include "migrate.h"
#include "testlib.h"

#include <dirent.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

/* A fresh database named db; returns its conninfo (static buffer). */
static const char *fresh_db(const char *db)
{
	static char ci[512];
	char sql[256];
	snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", db);
	ng_test_pg_exec(sql);
	snprintf(sql, sizeof sql, "CREATE DATABASE %s", db);
	ng_test_pg_exec(sql);
	snprintf(ci, sizeof ci, "%s dbname=%s", ng_test_pg(), db);
	return ci;
}

static const char *sql_dir(void)
{
	static char p[1024];
	const char *top = getenv("NUDGE_TEST_TOP");
	snprintf(p, sizeof p, "%s/sql", top ? top : ".");
	return p;
}

static int count_sql_files(const char *dir)
{
	DIR *d = opendir(dir);
	ASSERT(d != NULL);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (strlen(de->d_name) > 4 && strcmp(de->d_name + strlen(de->d_name) - 4, ".sql") == 0)
			n++;
	closedir(d);
	return n;
}

/* One text value from a query on a new connection. Caller frees. */
static char *query1(const char *ci, const char *sql)
{
	PGconn *c = PQconnectdb(ci);
	ASSERT_EQ_INT(PQstatus(c), CONNECTION_OK);
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		ng_test_fail(__FILE__, __LINE__, "%s: %s", sql, PQerrorMessage(c));
	char *v = strdup(PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0));
	PQclear(r);
	PQfinish(c);
	return v;
}

static const char SCHEMA_SNAPSHOT[] =
	"SELECT string_agg(table_name || '.' || column_name || ':' || data_type, ',' "
	"ORDER BY table_name, column_name) FROM information_schema.columns "
	"WHERE table_schema = 'public'";

static void test_migrate_twice_changes_nothing(void)
{
	const char *ci = fresh_db("ng_test_mig_twice");
	char err[1024];
	int applied = -1;
	int rc = ng_migrate_run(ci, sql_dir(), &applied, err, sizeof err);
	if (rc)
		ng_test_fail(__FILE__, __LINE__, "first run: %s", err);
	ASSERT_EQ_INT(applied, count_sql_files(sql_dir()));
	char *before = query1(ci, SCHEMA_SNAPSHOT);
	char *rows_before = query1(ci, "SELECT string_agg(version || name || checksum || applied_at, "
				       "',' ORDER BY version) FROM nudge_migrations");
	ASSERT(strstr(before, "customers.email:text") != NULL);

	rc = ng_migrate_run(ci, sql_dir(), &applied, err, sizeof err);
	if (rc)
		ng_test_fail(__FILE__, __LINE__, "second run: %s", err);
	ASSERT_EQ_INT(applied, 0);
	char *after = query1(ci, SCHEMA_SNAPSHOT);
	char *rows_after = query1(ci, "SELECT string_agg(version || name || checksum || applied_at, "
				      "',' ORDER BY version) FROM nudge_migrations");
	ASSERT_EQ_STR(after, before);
	ASSERT_EQ_STR(rows_after, rows_before);
	free(before);
	free(after);
	free(rows_before);
	free(rows_after);
}

struct run {
	const char *ci;
	const char *dir; /* sql_dir(), taken before the threads start: its buffer is shared */
	int rc, applied;
	volatile int done;
	char err[1024];
};

static void *run_thread(void *arg)
{
	struct run *r = arg;
	r->rc = ng_migrate_run(r->ci, r->dir, &r->applied, r->err, sizeof r->err);
	r->done = 1;
	return NULL;
}

static void test_concurrent_runs_serialise(void)
{
	const char *ci = fresh_db("ng_test_mig_lock");
	/* Hold the migration lock so both runs must queue behind it. */
	PGconn *holder = PQconnectdb(ci);
	ASSERT_EQ_INT(PQstatus(holder), CONNECTION_OK);
	PQclear(PQexec(holder, "BEGIN"));
	PGresult *res = PQexec(holder, "SELECT pg_advisory_xact_lock(474415916901)");
	ASSERT_EQ_INT(PQresultStatus(res), PGRES_TUPLES_OK);
	PQclear(res);

	/* Both threads calling sql_dir() rewrote its static buffer under each other's opendir: a
	 * run could read half a path ("cannot open the migrations directory"). */
	const char *dir = sql_dir();
	struct run a = {.ci = ci, .dir = dir}, b = {.ci = ci, .dir = dir};
	pthread_t ta, tb;
	pthread_create(&ta, NULL, run_thread, &a);
	pthread_create(&tb, NULL, run_thread, &b);
	usleep(400 * 1000);
	/* A run that ended while the lock was held failed some other way: say how. */
	if (a.done || b.done)
		ng_test_fail(__FILE__, __LINE__, "a run ended while the lock was held: rc %d: %s",
			     a.done ? a.rc : b.rc, a.done ? a.err : b.err);
	char *n = query1(ci, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT "
			     "granted");
	ASSERT_EQ_STR(n, "2");
	free(n);

	PQclear(PQexec(holder, "COMMIT"));
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	PQfinish(holder);
	if (a.rc || b.rc)
		ng_test_fail(__FILE__, __LINE__, "a: %s / b: %s", a.err, b.err);
	int files = count_sql_files(sql_dir());
	/* One run applied everything, the other found nothing left to do. */
	ASSERT_EQ_INT(a.applied + b.applied, files);
	ASSERT(a.applied == 0 || b.applied == 0);
	char *rows = query1(ci, "SELECT count(*) FROM nudge_migrations");
	ASSERT_EQ_INT(atoi(rows), files);
	free(rows);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	ASSERT(f != NULL);
	fputs(text, f);
	fclose(f);
}

static void test_failed_migration_applies_nothing(void)
{
	const char *ci = fresh_db("ng_test_mig_fail");
	char dir[] = "/tmp/ng-mig-XXXXXX";
	ASSERT(mkdtemp(dir) != NULL);
	char p1[128], p2[128];
	snprintf(p1, sizeof p1, "%s/0001_good.sql", dir);
	snprintf(p2, sizeof p2, "%s/0002_bad.sql", dir);
	write_file(p1, "CREATE TABLE t_good (id int);");
	write_file(p2, "CREATE TABLE t_bad (id nosuchtype);");
	char err[1024];
	int applied = -1;
	ASSERT(ng_migrate_run(ci, dir, &applied, err, sizeof err) != 0);
	ASSERT_EQ_INT(applied, 0);
	ASSERT_CONTAINS(err, "migration 0002_bad.sql failed: ERROR:  type \"nosuchtype\" does not "
			     "exist");
	char *n = query1(ci, "SELECT count(*) FROM pg_tables WHERE tablename = 't_good'");
	ASSERT_EQ_STR(n, "0");
	free(n);

	/* Fixed, it applies both; then editing an applied file is refused. */
	write_file(p2, "CREATE TABLE t_bad (id int);");
	ASSERT_EQ_INT(ng_migrate_run(ci, dir, &applied, err, sizeof err), 0);
	ASSERT_EQ_INT(applied, 2);
	write_file(p1, "CREATE TABLE t_good (id bigint);");
	ASSERT(ng_migrate_run(ci, dir, &applied, err, sizeof err) != 0);
	ASSERT_EQ_STR(err, "migration 0001_good.sql was changed after it was applied; migrations "
			   "are forward-only: put the change in a new numbered file");
	unlink(p1);
	unlink(p2);
	rmdir(dir);
}

NG_TESTS(NG_TEST(test_migrate_twice_changes_nothing), NG_TEST(test_concurrent_runs_serialise),
	 NG_TEST(test_failed_migration_applies_nothing))
