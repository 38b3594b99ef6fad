/*
 * msgtmpl.h — message templates: one file per message in templates/ (front matter + Liquid parts),
 * loaded once, rendered many times by the dispatcher, `nudge render` and `nudge check templates/`.
 *
 * This header is the contract between the dispatcher (core/dispatch*.c) and the template engine
 * (core/liquid*.c, core/msgtmpl.c). A set is immutable once opened: rendering is thread-safe, so the
 * dispatcher may render on several threads; SIGHUP opens a new set and swaps it in.
 */
#ifndef NG_MSGTMPL_H
#define NG_MSGTMPL_H

#include <jansson.h>
#include <stddef.h>

struct ng_msgtmpl_set;

/* One rendered message; every string is malloc'd (NULL when the template has no such part). */
struct ng_rendered_message {
	char *channel;   /* front matter: "email", "sms", "messenger" */
	char *purpose;   /* front matter: "marketing" or "transactional" */
	char *subject;   /* email */
	char *from_name; /* email; NULL: the channel's default */
	char *preheader; /* email */
	char *html;      /* email */
	char *text;      /* email */
	char *body;      /* sms, messenger */
};

/*
 * Loads every template under dir. On a broken template returns a negative code and a sentence
 * naming file:line:column in err.
 */
int ng_msgtmpl_open(const char *dir, struct ng_msgtmpl_set **out, char *err, size_t errlen);
void ng_msgtmpl_close(struct ng_msgtmpl_set *set);

/* Whether the set has a template of that name (for `nudge check` of workflows). */
int ng_msgtmpl_has(const struct ng_msgtmpl_set *set, const char *name);

/*
 * Renders template `name` against data. The dispatcher's data object is the message's stored
 * snapshot with these keys added at the top level: `customer` (the profile: email, phone,
 * first_name, last_name, timezone, locale, attributes…), `store` (name, postal_address, base_url,
 * timezone from the configuration), `message` (id, key) and, for marketing messages,
 * `unsubscribe_url`. Returns 0, or a negative code with a sentence in err (unknown template,
 * a render limit hit, …). Thread-safe.
 */
int ng_msgtmpl_render(const struct ng_msgtmpl_set *set, const char *name, const json_t *data,
		      struct ng_rendered_message *out, char *err, size_t errlen);

void ng_msgtmpl_rendered_free(struct ng_rendered_message *m);

#endif
