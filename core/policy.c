/*
 * policy.c — turns the `policy` keys into the settings ng_policy_verdict reads, and publishes them.
 *
 * The decision itself lives in SQL so that it is made inside the claim that takes a message, in the
 * same snapshot as the consent and suppression checks: a withdrawal committed before the claim is
 * always seen, whichever daemon claims.
 */
#include "policy.h"
#include "clock.h"
#include "config.h"
#include "ng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const channels[] = {"email", "sms", "messenger"};

static const struct ng_conf_node *child(const struct ng_conf_node *n, const char *key)
{
	for (const struct ng_conf_node *c = n ? n->child : NULL; c; c = c->next)
		if (strcmp(c->key, key) == 0)
			return c;
	return NULL;
}

/* "08:00-21:00" → {"start": "08:00", "end": "21:00"}; NULL when it has another form. */
static json_t *window(const char *s)
{
	int h1, m1, h2, m2, n = 0;
	if (!s || sscanf(s, "%2d:%2d-%2d:%2d%n", &h1, &m1, &h2, &m2, &n) != 4 || s[n] || h1 > 23 ||
	    h2 > 24 || m1 > 59 || m2 > 59 || (h2 == 24 && m2))
		return NULL;
	char a[8], b[8];
	snprintf(a, sizeof a, "%02d:%02d", h1, m1);
	snprintf(b, sizeof b, "%02d:%02d", h2 == 24 ? 0 : h2, m2);
	return json_pack("{s:s, s:s}", "start", a, "end", b);
}

/* The quiet_hours-like fields email/sms/messenger of node n, written at key path. */
static json_t *windows(const struct ng_conf_node *n, const char *path, char *err, size_t errlen)
{
	json_t *o = json_object();
	for (size_t i = 0; i < NG_ARRAY_LEN(channels); i++) {
		const struct ng_conf_node *c = child(n, channels[i]);
		if (!c || !c->str || !c->str[0])
			continue;
		json_t *w = window(c->str);
		if (!w) {
			snprintf(err, errlen,
			         "key '%s.%s' must be a sending window \"HH:MM-HH:MM\" in the "
			         "recipient's local time, not \"%s\"",
			         path, channels[i], c->str);
			json_decref(o);
			return NULL;
		}
		json_object_set_new(o, channels[i], w);
	}
	return o;
}

/* A period in milliseconds as an SQL interval: "N seconds". */
static void period_sql(int64_t ms, char *out, size_t len)
{
	snprintf(out, len, "%lld seconds", (long long)(ms / 1000));
}

/* {"email": bool, "template": name, "hold": "N seconds"}: what sql/0011 reads. The hold has the
 * same form as a cap's period. */
static json_t *double_opt_in(const struct ng_conf *conf, char *err, size_t errlen)
{
	const char *hold = ng_conf_str(conf, "policy.double_opt_in.hold");
	const char *tmpl = ng_conf_str(conf, "policy.double_opt_in.template");
	int64_t ms;
	if (!hold || ng_clock_parse_duration(hold, &ms) != 0 || ms < 60000) {
		snprintf(
		    err, errlen,
		    "key 'policy.double_opt_in.hold' must be a period of at least a minute, such "
		    "as \"7d\" or \"48h\"");
		return NULL;
	}
	if (!tmpl || !tmpl[0]) {
		snprintf(err, errlen, "key 'policy.double_opt_in.template' must name a template");
		return NULL;
	}
	char hold_sql[48];
	period_sql(ms, hold_sql, sizeof hold_sql);
	return json_pack("{s:b, s:s, s:s, s:s}", "email",
	                 ng_conf_bool(conf, "policy.double_opt_in.email"), "template", tmpl, "hold",
	                 hold_sql, "hold_written", hold);
}

json_t *ng_policy_settings(const struct ng_conf *conf, char *err, size_t errlen)
{
	const char *tz = ng_conf_str(conf, "store.timezone");
	json_t *s = json_pack("{s:s, s:b}", "timezone", tz ? tz : "UTC", "transactional_exempt",
	                      ng_conf_bool(conf, "policy.transactional_exempt"));
	json_t *q =
	    windows(ng_conf_get(conf, "policy.quiet_hours"), "policy.quiet_hours", err, errlen);
	if (!q)
		goto bad;
	json_object_set_new(s, "quiet_hours", q);

	json_t *regions = json_array();
	json_object_set_new(s, "regions", regions);
	const struct ng_conf_node *rl = ng_conf_get(conf, "policy.regions");
	int i = 0;
	for (const struct ng_conf_node *r = rl ? rl->child : NULL; r; r = r->next, i++) {
		char path[64];
		snprintf(path, sizeof path, "policy.regions[%d]", i + 1);
		const struct ng_conf_node *p = child(r, "prefix");
		if (!p || !p->str || p->str[0] != '+' || strspn(p->str + 1, "0123456789") == 0 ||
		    p->str[1 + strspn(p->str + 1, "0123456789")]) {
			snprintf(err, errlen, "key '%s.prefix' must be a phone prefix like \"+33\"",
			         path);
			goto bad;
		}
		json_t *w = windows(r, path, err, errlen);
		if (!w)
			goto bad;
		json_array_append_new(regions,
		                      json_pack("{s:s, s:o}", "prefix", p->str, "quiet_hours", w));
	}

	json_t *caps = json_array();
	json_object_set_new(s, "caps", caps);
	const struct ng_conf_node *cl = ng_conf_get(conf, "policy.caps");
	i = 0;
	for (const struct ng_conf_node *c = cl ? cl->child : NULL; c; c = c->next, i++) {
		const struct ng_conf_node *ch = child(c, "channel"), *mx = child(c, "max"),
		                          *per = child(c, "per");
		const char *chs = ch && ch->str ? ch->str : "any";
		int known = strcmp(chs, "any") == 0;
		for (size_t k = 0; k < NG_ARRAY_LEN(channels); k++)
			known |= strcmp(chs, channels[k]) == 0;
		if (!known) {
			snprintf(
			    err, errlen,
			    "key 'policy.caps[%d].channel' must be email, sms, messenger or any, "
			    "not \"%s\"",
			    i + 1, chs);
			goto bad;
		}
		int64_t ms;
		if (!per || !per->str || ng_clock_parse_duration(per->str, &ms) != 0 || ms < 1000) {
			snprintf(
			    err, errlen,
			    "key 'policy.caps[%d].per' must be a period such as \"1d\" or \"7d\"",
			    i + 1);
			goto bad;
		}
		char per_sql[48];
		period_sql(ms, per_sql, sizeof per_sql);
		json_array_append_new(caps, json_pack("{s:s, s:I, s:s, s:s}", "channel", chs, "max",
		                                      (json_int_t)(mx ? mx->i : 0), "per", per_sql,
		                                      "written", per->str));
	}
	json_t *doi = double_opt_in(conf, err, errlen);
	if (!doi)
		goto bad;
	json_object_set_new(s, "double_opt_in", doi);
	return s;
bad:
	json_decref(s);
	return NULL;
}

static void on_published(const struct ng_db_result *r, void *arg)
{
	NG_UNUSED(arg);
	if (r->status != 0)
		ng_error("policy", "could not publish the contact-pressure policy: %s", r->message);
}

void ng_policy_publish(ng_db *db, const json_t *settings)
{
	char *text = json_dumps(settings, JSON_COMPACT | JSON_SORT_KEYS);
	const char *p[1] = {text};
	ng_db_query(db,
	            "INSERT INTO policy_settings (singleton, settings, updated_at)"
	            " VALUES (true, $1::jsonb, now()) ON CONFLICT (singleton)"
	            " DO UPDATE SET settings = EXCLUDED.settings, updated_at = now()",
	            1, p, on_published, NULL);
	free(text);
}
