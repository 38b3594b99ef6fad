/*
 * retention.h — the periodic purge of old events and finished messages (keys retention.*).
 */
#ifndef NG_RETENTION_H
#define NG_RETENTION_H

#include "db.h"

struct ng_retention;

struct ng_retention_options {
	int events_days;   /* events received longer ago are deleted; 0 keeps them forever */
	int messages_days; /* finished messages last changed longer ago are deleted; 0: forever */
	int interval_s;    /* how often the purge runs */
};

/* Starts the timer (the first purge runs a minute after start); NULL when both periods are 0. */
struct ng_retention *ng_retention_start(uv_loop_t *loop, ng_db *db,
                                        const struct ng_retention_options *o);
/* Stops it; waits for a purge in flight; frees; calls done(arg). */
void ng_retention_close(struct ng_retention *r, void (*done)(void *arg), void *arg);

#endif
