/*
 * config_schema.h — the keys nudge.conf.lua may hold. One table, so that validation, defaults,
 * `nudge config keys` and docs/configuration.md all read the same truth.
 */
#ifndef NG_CONFIG_SCHEMA_H
#define NG_CONFIG_SCHEMA_H

#include "config.h"

struct ng_conf_field {
	const char *name;
	enum ng_conf_type type;
	int required;
	const char *def;     /* default, as text; NULL for none */
	const char *choices; /* for strings: "a|b|c"; NULL for any */
	long long min, max;  /* for integers, when min < max */
	const struct ng_conf_field *fields; /* for TABLE and LIST: the keys each holds */
	const char *help;
};

extern const struct ng_conf_field ng_conf_schema[];

#endif
