/*
 * policy.h — the contact-pressure policy of the configuration (`policy.*`: quiet hours per channel
 * and region, frequency caps), checked at start and published to the database, where the one
 * decision before every send reads it (ng_policy_verdict, sql/0007_policy.sql; docs/policy.md).
 */
#ifndef NG_POLICY_H
#define NG_POLICY_H

#include "db.h"

#include <jansson.h>
#include <stddef.h>

struct ng_conf;

/*
 * The settings as the database function reads them. NULL, with a sentence naming the key in err,
 * when a value has the wrong form (a window that is not "HH:MM-HH:MM", a period that is not a
 * duration, an unknown channel).
 */
json_t *ng_policy_settings(const struct ng_conf *conf, char *err, size_t errlen);

/* Writes the settings into policy_settings (asynchronously; failures are logged). */
void ng_policy_publish(ng_db *db, const json_t *settings);

#endif
