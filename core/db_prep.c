/*
 * db_prep.c — named prepared statements, one small cache per connection. nudge sends the same few
 * statements over and over (every workflow step sends the same fence, inserts and update), and
 * parsing and planning each of them again costs PostgreSQL more than running it: pgbench measures
 * the same transaction at 2-3 times the rate with -M prepared as with -M extended.
 *
 * The first time a connection sends a statement, a Parse of a named statement goes out in front
 * of its execution, in the same request; the execution uses the name. Until the server has
 * confirmed that Parse, later requests send the same text unnamed (the Parse may still fail, or be
 * skipped because an earlier statement of its request failed); once confirmed, every execution
 * uses the name. A Parse that did not succeed forgets the entry, so it is tried again later. The
 * cache belongs to the session: it is emptied whenever the connection is torn down. A statement
 * that DDL changed under it (0A000) is forgotten and prepared again under a new name. Only plain
 * DML and queries are prepared; transaction control, SET and LISTEN go unnamed as before. When the
 * cache is full (workflows' own ctx.query texts count too), further statements go unnamed.
 */
#include "db_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static uint64_t hash_sql(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static int preparable(const char *sql)
{
	static const char *const verbs[] = {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH", NULL};
	while (*sql == ' ' || *sql == '\t' || *sql == '\n' || *sql == '(')
		sql++;
	for (int i = 0; verbs[i]; i++) {
		size_t n = strlen(verbs[i]);
		if (strncasecmp(sql, verbs[i], n) == 0 &&
		    (sql[n] == ' ' || sql[n] == '\n' || sql[n] == '\t' || sql[n] == '('))
			return 1;
	}
	return 0;
}

void ng_db_prep_name(const struct ng_db_conn *c, int entry, char *buf, size_t len)
{
	snprintf(buf, len, "ng_s%u", c->prep[entry].id);
}

int ng_db_prep_find(struct ng_db_conn *c, const char *sql, int *fresh)
{
	*fresh = 0;
	if (c->listener || !preparable(sql))
		return -1;
	uint64_t h = hash_sql(sql);
	int free_slot = -1;
	for (int i = 0; i < NG_DB_PREP_MAX; i++) {
		struct ng_db_prep *p = &c->prep[i];
		if (!p->sql) {
			if (free_slot < 0)
				free_slot = i;
			continue;
		}
		if (p->hash == h && strcmp(p->sql, sql) == 0)
			return p->ready ? i : -1; /* pending: unnamed until the server confirms */
	}
	if (free_slot < 0)
		return -1;
	c->prep[free_slot].sql = ng_xstrdup(sql);
	c->prep[free_slot].hash = h;
	c->prep[free_slot].ready = 0;
	c->prep[free_slot].id = ++c->prep_seq;
	*fresh = 1;
	return free_slot;
}

void ng_db_prep_result(struct ng_db_conn *c, int entry, const PGresult *r)
{
	struct ng_db_prep *p = &c->prep[entry];
	if (r && PQresultStatus(r) == PGRES_COMMAND_OK) {
		p->ready = 1;
		return;
	}
	free(p->sql);
	p->sql = NULL;
	p->ready = 0;
}

/*
 * After DDL changed what a prepared query returns, PostgreSQL refuses every later execution of it
 * with "cached plan must not change result type" (0A000). Such an entry is forgotten: the next
 * use prepares the text again under a new name.
 */
void ng_db_prep_check(struct ng_db_conn *c, int entry, const PGresult *r)
{
	const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	if (st && strcmp(st, "0A000") == 0 && c->prep[entry].sql) {
		free(c->prep[entry].sql);
		c->prep[entry].sql = NULL;
		c->prep[entry].ready = 0;
	}
}

void ng_db_prep_reset(struct ng_db_conn *c)
{
	for (int i = 0; i < NG_DB_PREP_MAX; i++) {
		free(c->prep[i].sql);
		c->prep[i].sql = NULL;
		c->prep[i].ready = 0;
	}
	c->prep_seq = 0;
}
