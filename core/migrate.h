/*
 * migrate.h — applies the numbered SQL files in sql/ to a database, forward only.
 */
#ifndef NG_MIGRATE_H
#define NG_MIGRATE_H

#include <stddef.h>

/*
 * Applies every sql/NNNN_*.sql file the database has not recorded, in order, in ONE transaction
 * under an advisory lock (so concurrent runs serialise and the second finds nothing to do), and
 * records each in nudge_migrations with its checksum. A recorded migration whose file changed since is
 * an error. Blocking: this is a command-line step, never run on the event loop.
 * On failure returns a negative code and writes a sentence to err.
 */
int ng_migrate_run(const char *conninfo, const char *sql_dir, int *applied, char *err, size_t errlen);

/* The highest migration number in sql_dir (0 when there is none or the directory is unreadable). */
int ng_migrate_latest(const char *sql_dir);

#endif
