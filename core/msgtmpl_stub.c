/*
 * msgtmpl_stub.c — TEMPORARY stand-in for the template engine (core/msgtmpl.c + core/liquid*.c,
 * on another branch), so the dispatcher can render before that merges. DELETE THIS FILE AT MERGE.
 *
 * It renders no Liquid: the parts come from the data's own keys `subject`, `text`, `html`, `body`,
 * and `from_name` as given, and what is missing falls back to the template name (the text: the name
 * and the snapshot as JSON).
 */
#include "msgtmpl.h"
#include "ng.h"

#include <stdlib.h>
#include <string.h>

struct ng_msgtmpl_set {
	char *dir;
};

int ng_msgtmpl_open(const char *dir, struct ng_msgtmpl_set **out, char *err, size_t errlen)
{
	NG_UNUSED(err);
	NG_UNUSED(errlen);
	*out = ng_xcalloc(1, sizeof **out);
	(*out)->dir = dir ? ng_xstrdup(dir) : NULL;
	return 0;
}

void ng_msgtmpl_close(struct ng_msgtmpl_set *set)
{
	if (set) {
		free(set->dir);
		free(set);
	}
}

int ng_msgtmpl_has(const struct ng_msgtmpl_set *set, const char *name)
{
	NG_UNUSED(set);
	return name && *name;
}

static char *part(const json_t *data, const char *key)
{
	const char *s = json_string_value(json_object_get(data, key));
	return s ? ng_xstrdup(s) : NULL;
}

int ng_msgtmpl_render(const struct ng_msgtmpl_set *set, const char *name, const json_t *data,
                      struct ng_rendered_message *out, char *err, size_t errlen)
{
	NG_UNUSED(set);
	NG_UNUSED(err);
	NG_UNUSED(errlen);
	memset(out, 0, sizeof *out);
	out->subject = part(data, "subject");
	out->text = part(data, "text");
	out->html = part(data, "html");
	out->body = part(data, "body");
	out->from_name = part(data, "from_name");
	/* Whatever is missing falls back to the template name. */
	if (!out->subject)
		out->subject = ng_xstrdup(name);
	if (!out->text && !out->html) {
		/* The template name and the workflow's snapshot, so a demo shows what was sent. */
		json_t *snap = json_deep_copy(data);
		json_object_del(snap, "customer");
		json_object_del(snap, "store");
		json_object_del(snap, "message");
		char *js = json_dumps(snap, JSON_INDENT(2) | JSON_SORT_KEYS);
		json_decref(snap);
		out->text = ng_xasprintf("%s\n\n%s\n", name, js ? js : "");
		free(js);
	}
	if (!out->body)
		out->body = ng_xstrdup(out->text ? out->text : name);
	return 0;
}

void ng_msgtmpl_rendered_free(struct ng_rendered_message *m)
{
	free(m->channel);
	free(m->purpose);
	free(m->subject);
	free(m->from_name);
	free(m->preheader);
	free(m->html);
	free(m->text);
	free(m->body);
	memset(m, 0, sizeof *m);
}
