/*
 * msgtmpl.c — message templates (msgtmpl.h): loads templates/ — one NAME.liquid per message with
 * front matter and {% part %} sections, shared partials/ and layouts/ — into an immutable set of
 * compiled Liquid templates, and renders a message's parts (subject, from name, preheader, HTML
 * and text wrapped in the email layout, or an SMS/Messenger body) against the dispatcher's data.
 * Also the checks behind `nudge check` (every problem, not just the first; SMS encoding and
 * segments). The format is described in docs/templates.md.
 */
#include "msgtmpl.h"
#include "liquid.h"
#include "msgtmpl_int.h"
#include "ng.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { P_SUBJECT, P_FROM, P_PREHEADER, P_HTML, P_TEXT, P_BODY, P_COUNT };
static const char *const part_names[P_COUNT] = {"subject", "from_name", "preheader",
                                                "html",    "text",      "body"};

struct msg {
	char *name;
	char *file;
	char *channel, *purpose, *layout;
	const struct ng_liquid_tmpl *part[P_COUNT];
};

struct named {
	char *name;
	const struct ng_liquid_tmpl *t;
};

struct ng_msgtmpl_set {
	struct ng_liquid_cache *cache;
	struct msg *msgs;
	size_t nmsgs;
	struct named *partials; /* partials/X as "X", layouts/X as "layouts/X" */
	size_t npartials;
	int partials_loaded; /* message templates' references can be checked */
	struct ng_liquid_limits limits;
};

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	struct ng_liquid_buf b = {0};
	char tmp[8192];
	size_t n;
	while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
		if (b.len + n > (4u << 20)) {
			fclose(f);
			ng_liquid_buf_free(&b);
			errno = EFBIG;
			return NULL;
		}
		if (b.len + n + 1 > b.cap) {
			b.cap = (b.len + n + 1) * 2;
			b.s = ng_xrealloc(b.s, b.cap);
		}
		memcpy(b.s + b.len, tmp, n);
		b.len += n;
	}
	fclose(f);
	if (!b.s)
		b.s = ng_xstrdup("");
	b.s[b.len] = 0;
	*len = b.len;
	return b.s;
}

/* ---- reporting: open stops at the first problem, check collects all ---- */

struct sink {
	char *err;
	size_t errlen;
	int errors;
	void (*report)(void *ud, const char *line);
	void *ud;
};

static void problem(struct sink *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct sink *s, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (s->errors == 0 && s->err)
		snprintf(s->err, s->errlen, "%s", msg);
	s->errors++;
	if (s->report)
		s->report(s->ud, msg);
}

/* ---- the file format ---- */

static int count_lines(const char *s, const char *e)
{
	int n = 0;
	for (; s < e; s++)
		n += *s == '\n';
	return n;
}

static int is_blank(const char *s, const char *e)
{
	for (; s < e; s++)
		if (!strchr(" \t\r\n", *s))
			return 0;
	return 1;
}

static void check_refs(const struct ng_msgtmpl_set *set, struct sink *sk, const char *file,
                       const struct ng_liquid_tmpl *t);

static int compile(struct ng_msgtmpl_set *set, struct sink *sk, const char *file, int line,
                   const char *src, size_t n, int strict, const struct ng_liquid_tmpl **out)
{
	char err[1024];
	struct ng_liquid_parse_opts o = {.name = file, .line = line, .strict_filters = strict};
	int rc = ng_liquid_cache_get(set->cache, src, n, &o, out, err, sizeof err);
	if (rc)
		problem(sk, "%s", err);
	else if (set->partials_loaded)
		check_refs(set, sk, file, *out);
	return rc;
}

static char *unquote(const char *s, const char *e)
{
	while (s < e && (*s == ' ' || *s == '\t'))
		s++;
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		e--;
	if (e - s >= 2 && ((*s == '"' && e[-1] == '"') || (*s == '\'' && e[-1] == '\''))) {
		s++;
		e--;
	}
	return ng_xstrndup(s, (size_t)(e - s));
}

/* Finds the next {% part NAME %} (or {% endpart %} when name is NULL) at or after p. */
static const char *find_tag(const char *p, const char *end, const char *word, const char **name,
                            size_t *nlen, const char **after)
{
	size_t wl = strlen(word);
	for (const char *q = p; (q = memmem(q, (size_t)(end - q), "{%", 2)); q += 2) {
		const char *s = q + 2;
		if (s < end && *s == '-')
			s++;
		while (s < end && (*s == ' ' || *s == '\t'))
			s++;
		if ((size_t)(end - s) < wl || memcmp(s, word, wl) != 0)
			continue;
		s += wl;
		if (s < end && (isalnum((unsigned char)*s) || *s == '_'))
			continue;
		while (s < end && (*s == ' ' || *s == '\t'))
			s++;
		const char *ns = s;
		while (s < end && (isalnum((unsigned char)*s) || *s == '_'))
			s++;
		if (name) {
			*name = ns;
			*nlen = (size_t)(s - ns);
		}
		while (s < end && (*s == ' ' || *s == '\t' || *s == '-'))
			s++;
		if (s + 1 < end && s[0] == '%' && s[1] == '}') {
			*after = s + 2;
			return q;
		}
	}
	return NULL;
}

static int part_index(const char *n, size_t len)
{
	for (int i = 0; i < P_COUNT; i++)
		if (strlen(part_names[i]) == len && memcmp(part_names[i], n, len) == 0)
			return i;
	return -1;
}

static int load_msg(struct ng_msgtmpl_set *set, struct sink *sk, const char *path, const char *name,
                    int strict, struct msg *m)
{
	size_t len;
	char *src = read_file(path, &len);
	memset(m, 0, sizeof *m);
	m->name = ng_xstrdup(name);
	m->file = ng_xstrdup(path);
	if (!src) {
		problem(sk, "%s: %s", path, strerror(errno));
		return -1;
	}
	int before = sk->errors;
	const char *p = src, *end = src + len;
	if (len < 4 || memcmp(p, "---", 3) != 0 || (p[3] != '\n' && p[3] != '\r')) {
		problem(sk, "%s:1:1: a template starts with front matter between --- lines", path);
		free(src);
		return -1;
	}
	p = memchr(p, '\n', (size_t)(end - p)) + 1;
	int line = 2;
	const char *fm_val[P_COUNT] = {0};
	int fm_line[P_COUNT] = {0};
	char *fm_str[P_COUNT] = {0};
	int closed = 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		if (le - p >= 3 && memcmp(p, "---", 3) == 0 && is_blank(p + 3, le)) {
			p = nl ? nl + 1 : end;
			line++;
			closed = 1;
			break;
		}
		if (!is_blank(p, le) && *p != '#') {
			const char *colon = memchr(p, ':', (size_t)(le - p));
			if (!colon) {
				problem(sk, "%s:%d:1: front matter lines are `key: value`", path,
				        line);
			} else {
				char *key = unquote(p, colon);
				char *val = unquote(colon + 1, le);
				int pi = part_index(key, strlen(key));
				if (!strcmp(key, "channel")) {
					free(m->channel);
					m->channel = val;
					val = NULL;
				} else if (!strcmp(key, "purpose")) {
					free(m->purpose);
					m->purpose = val;
					val = NULL;
				} else if (!strcmp(key, "layout")) {
					free(m->layout);
					m->layout = val;
					val = NULL;
				} else if (pi >= 0 && pi <= P_PREHEADER) {
					free(fm_str[pi]);
					fm_str[pi] = val;
					fm_val[pi] = val;
					fm_line[pi] = line;
					val = NULL;
				} else {
					problem(sk,
					        "%s:%d:1: unknown front matter key '%s' (channel, "
					        "purpose, subject, from_name, preheader, layout)",
					        path, line, key);
				}
				free(key);
				free(val);
			}
		}
		p = nl ? nl + 1 : end;
		line++;
	}
	if (!closed)
		problem(sk, "%s:1:1: the front matter has no closing --- line", path);
	if (!m->channel || (strcmp(m->channel, "email") && strcmp(m->channel, "sms") &&
	                    strcmp(m->channel, "messenger")))
		problem(sk, "%s:1:1: front matter needs channel: email, sms or messenger", path);
	if (!m->purpose)
		m->purpose = ng_xstrdup("marketing");
	else if (strcmp(m->purpose, "marketing") && strcmp(m->purpose, "transactional"))
		problem(sk, "%s:1:1: purpose is marketing or transactional, not '%s'", path,
		        m->purpose);
	for (int i = 0; i <= P_PREHEADER; i++)
		if (fm_val[i])
			compile(set, sk, path, fm_line[i], fm_val[i], strlen(fm_val[i]), strict,
			        &m->part[i]);
	/* The parts. */
	const char *body_start = p;
	int body_line = line;
	int nparts = 0, seen[P_COUNT] = {0};
	const char *q = p;
	for (;;) {
		const char *pn, *after;
		size_t pnl;
		const char *tag = find_tag(q, end, "part", &pn, &pnl, &after);
		if (!tag)
			break;
		int tl = body_line + count_lines(body_start, tag);
		if (!is_blank(q, tag))
			problem(sk, "%s:%d:1: text outside a {%% part %%}", path,
			        body_line + count_lines(body_start, q));
		int pi = part_index(pn, pnl);
		if (pi < P_HTML) {
			problem(sk, "%s:%d:1: unknown part '%.*s' (html, text or body)", path, tl,
			        (int)pnl, pn);
			pi = -1;
		}
		const char *eafter;
		const char *etag = find_tag(after, end, "endpart", NULL, NULL, &eafter);
		if (!etag) {
			problem(sk, "%s:%d:1: {%% part %.*s %%} has no {%% endpart %%}", path, tl,
			        (int)pnl, pn);
			break;
		}
		/* The part starts on the line after its tag. */
		const char *cs = after;
		if (cs < etag && *cs == '\r')
			cs++;
		if (cs < etag && *cs == '\n')
			cs++;
		if (pi >= 0) {
			if (seen[pi]++)
				problem(sk, "%s:%d:1: a second '%s' part", path, tl,
				        part_names[pi]);
			else
				compile(set, sk, path, body_line + count_lines(body_start, cs), cs,
				        (size_t)(etag - cs), strict, &m->part[pi]);
		}
		nparts++;
		q = eafter;
	}
	if (nparts && !is_blank(q, end))
		problem(sk, "%s:%d:1: text outside a {%% part %%}", path,
		        body_line + count_lines(body_start, q));
	if (!nparts && m->channel && strcmp(m->channel, "email") != 0)
		compile(set, sk, path, body_line, body_start, (size_t)(end - body_start), strict,
		        &m->part[P_BODY]);
	if (m->channel && !strcmp(m->channel, "email")) {
		if (!fm_val[P_SUBJECT])
			problem(sk, "%s:1:1: an email needs a subject in its front matter", path);
		if (!seen[P_HTML])
			problem(sk, "%s:1:1: an email needs a {%% part html %%}", path);
	} else if (m->channel && !m->part[P_BODY] && !seen[P_BODY] && sk->errors == before) {
		problem(sk, "%s:1:1: an %s message needs a body", path, m->channel);
	}
	for (int i = 0; i < P_COUNT; i++)
		free(fm_str[i]);
	free(src);
	return sk->errors == before ? 0 : -1;
}

static void msg_free(struct msg *m)
{
	free(m->name);
	free(m->file);
	free(m->channel);
	free(m->purpose);
	free(m->layout);
}

static int ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && strcmp(s + a - b, suf) == 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.liquid names in dir, sorted. */
static char **list_dir(const char *dir, size_t *n)
{
	*n = 0;
	DIR *d = opendir(dir);
	if (!d)
		return NULL;
	char **v = NULL;
	size_t cap = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || !ends_with(e->d_name, ".liquid"))
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			v = ng_xrealloc(v, cap * sizeof *v);
		}
		v[(*n)++] = ng_xstrdup(e->d_name);
	}
	closedir(d);
	if (*n)
		qsort(v, *n, sizeof *v, cmp_str);
	return v;
}

static void load_partials(struct ng_msgtmpl_set *set, struct sink *sk, const char *dir,
                          const char *sub, const char *prefix, int strict)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, sub);
	size_t n;
	char **names = list_dir(path, &n);
	for (size_t i = 0; i < n; i++) {
		char file[4096];
		snprintf(file, sizeof file, "%s/%s", path, names[i]);
		size_t len;
		char *src = read_file(file, &len);
		const struct ng_liquid_tmpl *t = NULL;
		if (!src)
			problem(sk, "%s: %s", file, strerror(errno));
		else if (compile(set, sk, file, 1, src, len, strict, &t) == 0) {
			set->partials = ng_xrealloc(set->partials,
			                            (set->npartials + 1) * sizeof *set->partials);
			names[i][strlen(names[i]) - 7] = 0;
			set->partials[set->npartials].name = ng_xasprintf("%s%s", prefix, names[i]);
			set->partials[set->npartials].t = t;
			set->npartials++;
		}
		free(src);
		free(names[i]);
	}
	free(names);
}

static const struct ng_liquid_tmpl *find_partial(const struct ng_msgtmpl_set *set, const char *name)
{
	if (strncmp(name, "partials/", 9) == 0)
		name += 9;
	for (size_t i = 0; i < set->npartials; i++)
		if (strcmp(set->partials[i].name, name) == 0)
			return set->partials[i].t;
	return NULL;
}

static int loader(void *ud, const char *name, const struct ng_liquid_tmpl **out, char *err,
                  size_t errlen)
{
	(void)err;
	(void)errlen;
	*out = find_partial(ud, name);
	return *out ? 0 : -ENOENT;
}

/* Every literal include/render must name a partial the set has. */
static void check_refs(const struct ng_msgtmpl_set *set, struct sink *sk, const char *file,
                       const struct ng_liquid_tmpl *t)
{
	const char *names[64];
	int lines[64];
	size_t n = ng_liquid_partials(t, names, lines, 64);
	for (size_t i = 0; i < n && i < 64; i++)
		if (!find_partial(set, names[i]))
			problem(sk, "%s:%d:1: missing partial '%s' (templates/partials/%s.liquid)",
			        file, lines[i], names[i], names[i]);
}

static const char *layout_of(const struct msg *m)
{
	if (m->layout)
		return strcmp(m->layout, "none") ? m->layout : NULL;
	return strcmp(m->channel ? m->channel : "", "email") == 0 ? "email" : NULL;
}

static int open_set(const char *dir, const char *only, int strict, struct sink *sk,
                    struct ng_msgtmpl_set **out)
{
	struct ng_msgtmpl_set *set = ng_xcalloc(1, sizeof *set);
	set->cache = ng_liquid_cache_new();
	set->limits.max_output = 256 * 1024;
	set->limits.max_iterations = 100000;
	set->limits.max_depth = 20;
	set->limits.max_ms = 250;
	struct stat st;
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		problem(sk, "%s: not a templates directory", dir);
	load_partials(set, sk, dir, "partials", "", strict);
	load_partials(set, sk, dir, "layouts", "layouts/", strict);
	set->partials_loaded = 1;
	size_t n;
	char **names = list_dir(dir, &n);
	set->msgs = ng_xcalloc(n ? n : 1, sizeof *set->msgs);
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		names[i][strlen(names[i]) - 7] = 0;
		if (only && strcmp(only, names[i]) != 0) {
			free(names[i]);
			continue;
		}
		struct msg *m = &set->msgs[set->nmsgs];
		if (load_msg(set, sk, path, names[i], strict, m) == 0)
			set->nmsgs++;
		else
			msg_free(m);
		free(names[i]);
	}
	free(names);
	for (size_t i = 0; i < set->npartials; i++)
		check_refs(set, sk, set->partials[i].name, set->partials[i].t);
	for (size_t i = 0; i < set->nmsgs; i++) {
		struct msg *m = &set->msgs[i];
		const char *lay = layout_of(m);
		if (lay) {
			char ln[256];
			snprintf(ln, sizeof ln, "layouts/%s.html", lay);
			if (!find_partial(set, ln))
				problem(sk, "%s:1:1: missing layout templates/%s.liquid", m->file,
				        ln);
		}
	}
	*out = set;
	return sk->errors ? -EINVAL : 0;
}

int ng_msgtmpl_open(const char *dir, struct ng_msgtmpl_set **out, char *err, size_t errlen)
{
	struct sink sk = {.err = err, .errlen = errlen};
	if (errlen)
		err[0] = 0;
	struct ng_msgtmpl_set *set;
	int rc = open_set(dir, NULL, 0, &sk, &set);
	if (rc) {
		ng_msgtmpl_close(set);
		*out = NULL;
		return rc;
	}
	*out = set;
	return 0;
}

void ng_msgtmpl_close(struct ng_msgtmpl_set *set)
{
	if (!set)
		return;
	for (size_t i = 0; i < set->nmsgs; i++)
		msg_free(&set->msgs[i]);
	free(set->msgs);
	for (size_t i = 0; i < set->npartials; i++)
		free(set->partials[i].name);
	free(set->partials);
	ng_liquid_cache_free(set->cache);
	free(set);
}

static const struct msg *find_msg(const struct ng_msgtmpl_set *set, const char *name)
{
	for (size_t i = 0; i < set->nmsgs; i++)
		if (strcmp(set->msgs[i].name, name) == 0)
			return &set->msgs[i];
	return NULL;
}

int ng_msgtmpl_has(const struct ng_msgtmpl_set *set, const char *name)
{
	return find_msg(set, name) != NULL;
}

/* ---- rendering ---- */

static const char *str_at(const json_t *data, const char *obj, const char *key)
{
	json_t *o = obj ? json_object_get(data, obj) : (json_t *)data;
	const char *s = json_string_value(json_object_get(o, key));
	return s && *s ? s : NULL;
}

static char *render_part(const struct ng_liquid_tmpl *t, const json_t *data,
                         const struct ng_liquid_render_opts *o, struct ng_liquid_buf *buf,
                         char *err, size_t errlen, int *rc)
{
	if (!t || *rc)
		return NULL;
	*rc = ng_liquid_render(t, data, o, buf, err, errlen);
	if (*rc)
		return NULL;
	/* The caller gets the buffer itself; the next part starts a new one of about that size. */
	char *s = buf->s;
	size_t cap = buf->len + 1024;
	buf->s = ng_xmalloc(cap);
	buf->cap = cap;
	buf->len = 0;
	return s;
}

static char *trim_line(char *s)
{
	/* Subjects and names are one line: collapse what a template's whitespace left. */
	if (!s)
		return NULL;
	char *w = s;
	int space = 0;
	for (char *r = s; *r; r++) {
		if (*r == ' ' || *r == '\t' || *r == '\r' || *r == '\n') {
			space = w != s;
			continue;
		}
		if (space)
			*w++ = ' ';
		space = 0;
		*w++ = *r;
	}
	*w = 0;
	return s;
}

int ng_msgtmpl_render(const struct ng_msgtmpl_set *set, const char *name, const json_t *data,
                      struct ng_rendered_message *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	if (errlen)
		err[0] = 0;
	const struct msg *m = set ? find_msg(set, name) : NULL;
	if (!m) {
		snprintf(err, errlen, set ? "no template '%s'" : "no templates are loaded (for '%s')",
		         name);
		return -ENOENT;
	}
	if (!json_is_object(data)) {
		snprintf(err, errlen, "%s: the data is not a JSON object", m->file);
		return -EINVAL;
	}
	const int email = strcmp(m->channel, "email") == 0;
	if (email && !strcmp(m->purpose, "marketing") && !str_at(data, NULL, "unsubscribe_url")) {
		snprintf(err, errlen, "%s: a marketing email needs unsubscribe_url in its data",
		         m->file);
		return -EINVAL;
	}
	struct ng_liquid_loader ld = {loader, (void *)set};
	struct ng_liquid_render_opts o = {.limits = &set->limits, .loader = &ld};
	/* Dates in the customer's zone, else the store's; money in the message's currency. */
	o.tz = str_at(data, "customer", "timezone");
	if (!o.tz)
		o.tz = str_at(data, "store", "timezone");
	o.locale = str_at(data, "customer", "locale");
	o.currency = str_at(data, "cart", "currency");
	if (!o.currency)
		o.currency = str_at(data, "order", "currency");
	if (!o.currency)
		o.currency = str_at(data, "store", "currency");
	struct ng_liquid_buf buf = {.s = ng_xmalloc(4096), .cap = 4096};
	int rc = 0;
	out->channel = ng_xstrdup(m->channel);
	out->purpose = ng_xstrdup(m->purpose);
	out->subject = trim_line(render_part(m->part[P_SUBJECT], data, &o, &buf, err, errlen, &rc));
	out->from_name = trim_line(render_part(m->part[P_FROM], data, &o, &buf, err, errlen, &rc));
	out->preheader =
	    trim_line(render_part(m->part[P_PREHEADER], data, &o, &buf, err, errlen, &rc));
	out->body = render_part(m->part[P_BODY], data, &o, &buf, err, errlen, &rc);
	char *html = render_part(m->part[P_HTML], data, &o, &buf, err, errlen, &rc);
	char *text = render_part(m->part[P_TEXT], data, &o, &buf, err, errlen, &rc);
	const char *lay = layout_of(m);
	if (!rc && lay) {
		/* The layout sees the data plus the rendered part as `content`, and the subject and
		 * preheader (for <title> and the hidden preview text). */
		struct ng_liquid_var vars[3] = {
		    {"subject", out->subject ? out->subject : "", 0},
		    {"preheader", out->preheader ? out->preheader : "", 0},
		    {"content", "", 0},
		};
		vars[0].len = strlen(vars[0].value);
		vars[1].len = strlen(vars[1].value);
		struct ng_liquid_render_opts lo = o;
		lo.vars = vars;
		lo.nvars = 3;
		char ln[256];
		const char *kinds[2] = {"html", "text"};
		char **parts[2] = {&html, &text};
		for (int k = 0; k < 2 && !rc; k++) {
			if (!*parts[k])
				continue;
			snprintf(ln, sizeof ln, "layouts/%s.%s", lay, kinds[k]);
			const struct ng_liquid_tmpl *lt = find_partial(set, ln);
			if (!lt)
				continue;
			vars[2].value = *parts[k];
			vars[2].len = strlen(*parts[k]);
			char *wrapped = render_part(lt, data, &lo, &buf, err, errlen, &rc);
			if (wrapped) {
				free(*parts[k]);
				*parts[k] = wrapped;
			}
		}
	}
	out->html = html;
	out->text = text;
	ng_liquid_buf_free(&buf);
	if (rc) {
		char tmp[1024];
		snprintf(tmp, sizeof tmp, "%s: %s", m->file, err);
		snprintf(err, errlen, "%s", tmp);
		ng_msgtmpl_rendered_free(out);
	}
	return rc;
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

/* ---- checks ---- */

int ng_msgtmpl_check(const char *path, const json_t *sample, void (*report)(void *, const char *),
                     void *ud)
{
	struct sink sk = {.report = report, .ud = ud};
	struct stat st;
	char dir[4096], only[256] = "";
	if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
		const char *slash = strrchr(path, '/');
		snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1,
		         slash ? path : ".");
		snprintf(only, sizeof only, "%s", slash ? slash + 1 : path);
		if (ends_with(only, ".liquid"))
			only[strlen(only) - 7] = 0;
		/* A partial or layout is checked as part of the set it belongs to. */
		if (ends_with(dir, "/partials") || ends_with(dir, "/layouts")) {
			dir[strlen(dir) - (ends_with(dir, "/partials") ? 9 : 8)] = 0;
			only[0] = 0;
		}
	} else {
		snprintf(dir, sizeof dir, "%s", path);
		size_t n = strlen(dir);
		while (n > 1 && dir[n - 1] == '/')
			dir[--n] = 0;
	}
	struct ng_msgtmpl_set *set;
	open_set(dir, only[0] ? only : NULL, 1, &sk, &set);
	if (only[0] && !set->nmsgs && !sk.errors)
		problem(&sk, "%s: no such template", path);
	for (size_t i = 0; i < set->nmsgs; i++) {
		const struct msg *m = &set->msgs[i];
		int marketing_email =
		    !strcmp(m->channel, "email") && !strcmp(m->purpose, "marketing");
		json_t *data = json_deep_copy(sample);
		if (!json_is_object(data)) {
			json_decref(data);
			data = json_object();
		}
		if (!marketing_email)
			json_object_del(data, "unsubscribe_url");
		else
			json_object_set_new(data, "unsubscribe_url",
			                    json_string("https://example.com/u/sample"));
		struct ng_rendered_message r;
		char err[1024];
		if (ng_msgtmpl_render(set, m->name, data, &r, err, sizeof err) != 0) {
			problem(&sk, "%s (rendering the sample data)", err);
		} else {
			if (marketing_email &&
			    (!r.html || !strstr(r.html, "https://example.com/u/sample")))
				problem(&sk,
				        "%s:1:1: a marketing email must show {{ unsubscribe_url }} "
				        "(the email layout does)",
				        m->file);
			if (r.body && !strcmp(m->channel, "sms")) {
				struct ng_sms_info si;
				ng_msgtmpl_sms_info(r.body, &si);
				char line[512];
				snprintf(line, sizeof line,
				         "%s: sms %s, %zu characters, %d segment%s (sample data)",
				         m->file, si.ucs2 ? "UCS-2" : "GSM-7", si.units,
				         si.segments, si.segments == 1 ? "" : "s");
				if (report)
					report(ud, line);
			}
			ng_msgtmpl_rendered_free(&r);
		}
		json_decref(data);
	}
	ng_msgtmpl_close(set);
	return sk.errors;
}

/* ---- SMS encoding ---- */

/* GSM 03.38: the basic set (one septet) and the extension table (two). */
static const char *const gsm_basic =
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
static const char *const gsm_ext = "^{}\\[~]|€\f";

static size_t utf8_char(const char *s, unsigned *cp)
{
	const unsigned char *u = (const unsigned char *)s;
	if (u[0] < 0x80) {
		*cp = u[0];
		return 1;
	}
	if ((u[0] & 0xE0) == 0xC0 && u[1]) {
		*cp = ((u[0] & 0x1Fu) << 6) | (u[1] & 0x3Fu);
		return 2;
	}
	if ((u[0] & 0xF0) == 0xE0 && u[1] && u[2]) {
		*cp = ((u[0] & 0x0Fu) << 12) | ((u[1] & 0x3Fu) << 6) | (u[2] & 0x3Fu);
		return 3;
	}
	if ((u[0] & 0xF8) == 0xF0 && u[1] && u[2] && u[3]) {
		*cp = ((u[0] & 0x07u) << 18) | ((u[1] & 0x3Fu) << 12) | ((u[2] & 0x3Fu) << 6) |
		      (u[3] & 0x3Fu);
		return 4;
	}
	*cp = 0xFFFD;
	return 1;
}

static int in_set(const char *set, const char *ch, size_t n)
{
	for (const char *p = set; *p;) {
		unsigned cp;
		size_t k = utf8_char(p, &cp);
		if (k == n && memcmp(p, ch, n) == 0)
			return 1;
		p += k;
	}
	return 0;
}

void ng_msgtmpl_sms_info(const char *body, struct ng_sms_info *si)
{
	size_t septets = 0, utf16 = 0;
	int ucs2 = 0;
	for (const char *p = body; *p;) {
		unsigned cp;
		size_t k = utf8_char(p, &cp);
		utf16 += cp > 0xFFFF ? 2 : 1;
		if (in_set(gsm_basic, p, k))
			septets += 1;
		else if (in_set(gsm_ext, p, k))
			septets += 2;
		else
			ucs2 = 1;
		p += k;
	}
	si->ucs2 = ucs2;
	si->units = ucs2 ? utf16 : septets;
	size_t single = ucs2 ? 70 : 160, multi = ucs2 ? 67 : 153;
	si->segments =
	    si->units <= single ? (si->units ? 1 : 0) : (int)((si->units + multi - 1) / multi);
}
