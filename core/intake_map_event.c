/*
 * intake_map_event.c — validates and normalises one event returned by a mapper: the shape (known
 * fields, types), identities (identity.c), times (to UTC), consent states and dedupe keys. Errors
 * that come from the payload (-EBADMSG) are told apart from errors in the mapper (NG_ECONFIG).
 */
#include "identity.h"
#include "intake_map.h"
#include "ng.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define KEY_MAX 400

struct norm {
	const char *source;
	const struct ng_intake_options *o;
	json_t *warnings;
	char *err;
	size_t errlen;
};

static int failf(struct norm *n, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int failf(struct norm *n, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(n->err, n->errlen, fmt, ap);
	va_end(ap);
	return rc;
}

/* Something from the store did not normalise: refused when strict, else dropped with a warning. */
static int unusable(struct norm *n, const char *field, const char *value, const char *why)
{
	if (n->o->strict)
		return failf(n, -EBADMSG, "%s '%s' is not usable: %s", field, value, why);
	char *w = ng_xasprintf("%s '%s' dropped: %s", field, value, why);
	json_t *s = json_string(w);
	/* The value came from the store and may not be UTF-8; the warning must still be JSON. */
	json_array_append_new(n->warnings, s ? s : json_sprintf("%s dropped: %s", field, why));
	free(w);
	return 0;
}

static const char *kind_of(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "a table with named fields";
	case JSON_ARRAY:
		return "a list";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a fractional number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "?";
}

/* A string field, "" and null counting as absent. Returns 0 with *s NULL when absent. */
static int opt_string(struct norm *n, const json_t *obj, const char *key, const char *where,
                      const char **s)
{
	const json_t *v = json_object_get(obj, key);
	*s = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return failf(n, NG_ECONFIG, "%s%s must be a string, not %s", where, key,
		             kind_of(v));
	if (json_string_length(v) > 0)
		*s = json_string_value(v);
	return 0;
}

/* An id: a string or an integer (kept exactly), returned as a new json string or NULL. */
static int id_string(struct norm *n, const json_t *v, const char *what, json_t **out)
{
	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	char buf[32];
	if (json_is_integer(v)) {
		snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		*out = json_string(buf);
		return 0;
	}
	if (!json_is_string(v))
		return failf(n, NG_ECONFIG,
		             "%s must be a string or an integer, not %s (ids above 2^53 lose "
		             "digits as fractional numbers)",
		             what, kind_of(v));
	if (json_string_length(v) == 0)
		return 0;
	if (json_string_length(v) > KEY_MAX)
		return failf(n, -EBADMSG, "%s is longer than %d bytes", what, KEY_MAX);
	*out = json_incref((json_t *)v);
	return 0;
}

static int unknown_fields(struct norm *n, const json_t *obj, const char *const *known,
                          const char *what)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)obj, k, v)
	{
		size_t i = 0;
		while (known[i] && strcmp(known[i], k) != 0)
			i++;
		if (!known[i]) {
			char list[256] = "";
			for (i = 0; known[i]; i++)
				snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
				         i ? ", " : "", known[i]);
			return failf(n, NG_ECONFIG, "unknown %s field '%s' (known: %s)", what, k,
			             list);
		}
	}
	return 0;
}

/* Letters, digits and the given extra characters only. */
static int plain_chars(const char *s, const char *extra, size_t max)
{
	size_t len = strlen(s);
	if (len == 0 || len > max)
		return 0;
	for (const char *p = s; *p; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      strchr(extra, c)))
			return 0;
	}
	return 1;
}

static int normalise_customer(struct norm *n, const json_t *in, json_t **out)
{
	static const char *const known[] = {"source_id",  "email",      "phone",
	                                    "first_name", "last_name",  "locale",
	                                    "timezone",   "properties", NULL};
	*out = NULL;
	if (!in || json_is_null(in))
		return 0;
	if (!json_is_object(in))
		return failf(n, NG_ECONFIG, "customer must be a table with named fields, not %s",
		             kind_of(in));
	int rc = unknown_fields(n, in, known, "customer");
	if (rc)
		return rc;

	json_t *c = json_object();
	json_t *id = NULL;
	rc = id_string(n, json_object_get(in, "source_id"), "customer.source_id", &id);
	if (id)
		json_object_set_new(c, "source_id", id);

	const char *s = NULL;
	if (rc == 0 && (rc = opt_string(n, in, "email", "customer.", &s)) == 0 && s) {
		char email[NG_IDENTITY_EMAIL_MAX];
		const char *why = "";
		if (ng_identity_email(s, email, &why) == 0)
			json_object_set_new(c, "email", json_string(email));
		else
			rc = unusable(n, "customer.email", s, why);
	}
	if (rc == 0 && (rc = opt_string(n, in, "phone", "customer.", &s)) == 0 && s) {
		char phone[NG_IDENTITY_PHONE_MAX];
		const char *why = "";
		if (ng_identity_phone(s, n->o->default_country_code, phone, &why) == 0)
			json_object_set_new(c, "phone", json_string(phone));
		else
			rc = unusable(n, "customer.phone", s, why);
	}
	static const char *const names[] = {"first_name", "last_name"};
	for (size_t i = 0; rc == 0 && i < NG_ARRAY_LEN(names); i++)
		if ((rc = opt_string(n, in, names[i], "customer.", &s)) == 0 && s)
			json_object_set_new(c, names[i], json_string(s));
	/* BCP 47-ish ("en", "en-US", "pt_BR") and IANA zone names ("America/New_York"). */
	if (rc == 0 && (rc = opt_string(n, in, "locale", "customer.", &s)) == 0 && s) {
		if (plain_chars(s, "-_", 35))
			json_object_set_new(c, "locale", json_string(s));
		else
			rc =
			    unusable(n, "customer.locale", s, "not a language tag such as 'en-US'");
	}
	if (rc == 0 && (rc = opt_string(n, in, "timezone", "customer.", &s)) == 0 && s) {
		if (plain_chars(s, "/_-+", 64))
			json_object_set_new(c, "timezone", json_string(s));
		else
			rc = unusable(n, "customer.timezone", s,
			              "not a time zone name such as 'Europe/Berlin'");
	}
	const json_t *props = json_object_get(in, "properties");
	if (rc == 0 && props && !json_is_null(props)) {
		if (!json_is_object(props))
			rc = failf(n, NG_ECONFIG,
			           "customer.properties must be a table with named fields, not %s",
			           kind_of(props));
		else if (json_object_size(props))
			json_object_set(c, "properties", (json_t *)props);
	}
	if (rc) {
		json_decref(c);
		return rc;
	}
	if (!json_object_get(c, "source_id") && !json_object_get(c, "email") &&
	    !json_object_get(c, "phone")) {
		json_decref(c);
		if (n->o->strict)
			return failf(n, -EBADMSG, "the customer has no id, email or phone");
		if (json_object_size(in))
			json_array_append_new(n->warnings,
			                      json_string("customer dropped: it has no usable id, "
			                                  "email or phone"));
		return 0;
	}
	*out = c;
	return 0;
}

/* A time field: normalised into obj[key], or unusable. */
static int time_field(struct norm *n, const json_t *v, const char *what, json_t *obj,
                      const char *key)
{
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return failf(n, NG_ECONFIG, "%s must be a string, not %s", what, kind_of(v));
	if (json_string_length(v) == 0)
		return 0;
	char t[32];
	if (ng_intake__time(json_string_value(v), t) != 0)
		return unusable(n, what, json_string_value(v),
		                "not an ISO 8601 time with a zone, such as 2024-05-01T10:00:00Z");
	json_object_set_new(obj, key, json_string(t));
	return 0;
}

/* ---- consent --------------------------------------------------------------------------------- */

static const char *const CONSENT_STATES[] = {"subscribed", "not_subscribed", "unsubscribed",
                                             "pending", NULL};

static int normalise_consent(struct norm *n, const json_t *in, json_t **out)
{
	static const char *const channels[] = {"email", "sms", "messenger", NULL};
	static const char *const fields[] = {"state",      "source",   "level",
	                                     "updated_at", "explicit", "evidence", NULL};
	*out = NULL;
	if (!in || json_is_null(in))
		return 0;
	if (!json_is_object(in))
		return failf(n, NG_ECONFIG, "consent must be a table with named fields, not %s",
		             kind_of(in));
	int rc = unknown_fields(n, in, channels, "consent");
	if (rc)
		return rc;
	json_t *c = json_object();
	const char *ch;
	json_t *v;
	json_object_foreach((json_t *)in, ch, v)
	{
		if (json_is_null(v))
			continue;
		json_t *e = json_object();
		const json_t *state = v;
		if (json_is_object(v)) {
			if ((rc = unknown_fields(n, v, fields, "consent")) != 0) {
				json_decref(e);
				break;
			}
			state = json_object_get(v, "state");
		} else if (!json_is_string(v)) {
			json_decref(e);
			rc = failf(n, NG_ECONFIG,
			           "consent.%s must be a state string or a table, not %s", ch,
			           kind_of(v));
			break;
		}
		size_t i = 0;
		const char *word = json_is_string(state) ? json_string_value(state) : NULL;
		while (word && CONSENT_STATES[i] && strcmp(CONSENT_STATES[i], word) != 0)
			i++;
		if (!word || !CONSENT_STATES[i]) {
			json_decref(e);
			char shown[160];
			if (word)
				snprintf(shown, sizeof shown, "'%s'", word);
			else
				snprintf(shown, sizeof shown, "%s",
				         state ? kind_of(state) : "nothing");
			rc = failf(n, NG_ECONFIG,
			           "consent.%s.state must be one of subscribed, not_subscribed, "
			           "unsubscribed, pending, not %s",
			           ch, shown);
			break;
		}
		json_object_set_new(e, "state", json_string(CONSENT_STATES[i]));
		if (json_is_object(v)) {
			const char *s;
			char where[32];
			snprintf(where, sizeof where, "consent.%s.", ch);
			if ((rc = opt_string(n, v, "source", where, &s)) == 0 && s)
				json_object_set_new(e, "source", json_string(s));
			if (rc == 0 && (rc = opt_string(n, v, "level", where, &s)) == 0 && s)
				json_object_set_new(e, "level", json_string(s));
			if (rc == 0)
				rc = time_field(n, json_object_get(v, "updated_at"),
				                "consent.updated_at", e, "updated_at");
			/* An opt-in the person gave just now (a ticked box, a confirmed double
			 * opt-in): it may lift an unsubscribe or erasure suppression. */
			const json_t *x = json_object_get(v, "explicit");
			if (rc == 0 && x && !json_is_boolean(x))
				rc = failf(n, NG_ECONFIG, "consent.%s.explicit must be true or false", ch);
			else if (rc == 0 && json_is_true(x))
				json_object_set_new(e, "explicit", json_true());
			const json_t *ev = json_object_get(v, "evidence");
			if (rc == 0 && ev && !json_is_object(ev))
				rc = failf(n, NG_ECONFIG,
				           "consent.%s.evidence must be an object (ip, user_agent, "
				           "wording)",
				           ch);
			else if (rc == 0 && ev)
				json_object_set(e, "evidence", (json_t *)ev);
		}
		json_object_set_new(c, ch, e);
		if (rc)
			break;
	}
	if (rc || json_object_size(c) == 0) {
		json_decref(c);
		return rc;
	}
	*out = c;
	return 0;
}

/* ---- the event ------------------------------------------------------------------------------- */

/* Lower-case dotted names: "order.placed", "checkout.started", "wishlist.item_added". */
static int type_ok(const char *t)
{
	size_t len = strlen(t);
	if (len == 0 || len > 64)
		return 0;
	int at_start = 1;
	for (const char *p = t; *p; p++) {
		char c = *p;
		if (at_start && !(c >= 'a' && c <= 'z'))
			return 0;
		at_start = c == '.';
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.'))
			return 0;
	}
	return !at_start;
}

static int add_dedupe(struct norm *n, json_t *keys, const json_t *k)
{
	json_t *s = NULL;
	int rc = id_string(n, k, "dedupe", &s);
	if (rc || !s)
		return rc;
	json_array_append_new(keys, json_sprintf("%s:%s", n->source, json_string_value(s)));
	json_decref(s);
	return 0;
}

int ng_intake__normalise(const char *source, const char *topic, const struct ng_intake_options *o,
                         const json_t *in, json_t **out, char *err, size_t errlen)
{
	static const char *const known[] = {"type",    "key",  "occurred_at", "customer",
	                                    "consent", "data", "dedupe",      NULL};
	struct norm n = {.source = source, .o = o, .err = err, .errlen = errlen};
	*out = NULL;
	if (!json_is_object(in))
		return failf(&n, NG_ECONFIG, "an event must be a table with named fields, not %s",
		             kind_of(in));
	int rc = unknown_fields(&n, in, known, "event");
	if (rc)
		return rc;
	const json_t *type = json_object_get(in, "type");
	if (!json_is_string(type))
		return failf(&n, NG_ECONFIG,
		             "the event has no type (a string such as "
		             "'order.placed')");
	if (!type_ok(json_string_value(type)))
		return failf(&n, NG_ECONFIG,
		             "the event type '%s' is not a lower-case dotted name such as "
		             "'order.placed'",
		             json_string_value(type));

	json_t *ev = json_object();
	n.warnings = json_array();
	json_object_set_new(ev, "source", json_string(source));
	json_object_set_new(ev, "topic", json_string(topic));
	json_object_set(ev, "type", (json_t *)type);

	json_t *v = NULL;
	if ((rc = id_string(&n, json_object_get(in, "key"), "key", &v)) == 0 && v)
		json_object_set_new(ev, "key", v);
	if (rc == 0)
		rc = time_field(&n, json_object_get(in, "occurred_at"), "occurred_at", ev,
		                "occurred_at");
	if (rc == 0 && (rc = normalise_customer(&n, json_object_get(in, "customer"), &v)) == 0 && v)
		json_object_set_new(ev, "customer", v);
	if (rc == 0 && (rc = normalise_consent(&n, json_object_get(in, "consent"), &v)) == 0 && v)
		json_object_set_new(ev, "consent", v);

	const json_t *data = json_object_get(in, "data");
	if (rc == 0) {
		if (!data || json_is_null(data))
			json_object_set_new(ev, "data", json_object());
		else if (json_is_object(data))
			json_object_set(ev, "data", (json_t *)data);
		else
			rc = failf(&n, NG_ECONFIG, "data must be a table with named fields, not %s",
			           kind_of(data));
	}

	json_t *keys = json_array();
	json_object_set_new(ev, "dedupe_keys", keys);
	const json_t *dd = json_object_get(in, "dedupe");
	if (rc == 0 && json_is_array(dd)) {
		size_t i;
		json_t *k;
		json_array_foreach(dd, i, k)
		{
			if ((rc = add_dedupe(&n, keys, k)) != 0)
				break;
		}
	} else if (rc == 0) {
		rc = add_dedupe(&n, keys, dd);
	}

	if (rc == 0 && json_array_size(n.warnings))
		json_object_set(ev, "warnings", n.warnings);
	json_decref(n.warnings);
	if (rc) {
		json_decref(ev);
		return rc;
	}
	*out = ev;
	return 0;
}
