/*
 * plugin_loader.c — turns `channels` entries into running plugin instances: dlopen the file, check
 * its descriptor against the ABI this nudge speaks, check the instance's configuration against the
 * keys the plugin declares, then call init. Everything that can be wrong is found before any plugin
 * callback runs, and each problem becomes one sentence that names the file and what is wrong:
 *
 *   .build/plugins/foo.so: built for plugin ABI 2.x, this nudge speaks 1.x
 *
 * A refused instance is skipped; the others keep loading.
 */
#include "config.h"
#include "ng.h"
#include "plugin_host.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct refusal {
	char text[1024];
};

static void say(struct refusal *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(struct refusal *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof r->text, fmt, ap);
	va_end(ap);
}

static int is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

char *ng_plugin_default_dir(void)
{
	const char *e = getenv("NUDGE_PLUGINS_DIR");
	if (e && *e)
		return ng_xstrdup(e);
	char exe[PATH_MAX];
	ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (len <= 0)
		return NULL;
	exe[len] = '\0';
	char *slash = strrchr(exe, '/');
	if (!slash)
		return NULL;
	*slash = '\0';
	/* .build/nudge → .build/plugins; PREFIX/bin/nudge → PREFIX/lib/nudge/plugins. */
	char *p = ng_xasprintf("%s/plugins", exe);
	if (is_dir(p))
		return p;
	free(p);
	p = ng_xasprintf("%s/../lib/nudge/plugins", exe);
	if (is_dir(p))
		return p;
	free(p);
	return NULL;
}

/* Levenshtein distance, for "did you mean". Keys are short. */
static int distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 31 || lb > 31)
		return 99;
	int d[32][32];
	for (size_t i = 0; i <= la; i++)
		d[i][0] = (int)i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (int)j;
	for (size_t i = 1; i <= la; i++)
		for (size_t j = 1; j <= lb; j++) {
			int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
			d[i][j] = c < del ? (c < ins ? c : ins) : (del < ins ? del : ins);
		}
	return d[la][lb];
}

static int name_ok(const char *s, const char *extra)
{
	if (!s || !*s || strlen(s) > 63)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || strchr(extra, *s)))
			return 0;
	return 1;
}

static const char *type_word(int32_t t)
{
	switch (t) {
	case NUDGE_CONFIG_STRING:
		return "a string";
	case NUDGE_CONFIG_INT:
		return "an integer";
	case NUDGE_CONFIG_NUMBER:
		return "a number";
	case NUDGE_CONFIG_BOOL:
		return "a boolean (true or false)";
	default:
		return "?";
	}
}

static const char *node_word(const struct ng_conf_node *n)
{
	switch (n->type) {
	case NG_CONF_STRING:
		return "a string";
	case NG_CONF_INT:
		return "an integer";
	case NG_CONF_NUMBER:
		return "a fractional number";
	case NG_CONF_BOOL:
		return "a boolean";
	default:
		return "a table";
	}
}

/* Parses a declared default into v; 0 if the text fits the type. */
static int parse_default(const struct nudge_config_key *k, struct ng_plugin_value *v)
{
	char *end = NULL;
	errno = 0;
	switch (k->type) {
	case NUDGE_CONFIG_STRING:
		v->str = ng_xstrdup(k->def);
		return 0;
	case NUDGE_CONFIG_INT:
		v->i = strtoll(k->def, &end, 10);
		return (end == k->def || *end || errno) ? -EINVAL : 0;
	case NUDGE_CONFIG_NUMBER:
		v->num = strtod(k->def, &end);
		return (end == k->def || *end || errno || !isfinite(v->num)) ? -EINVAL : 0;
	case NUDGE_CONFIG_BOOL:
		if (strcmp(k->def, "true") == 0)
			v->b = 1;
		else if (strcmp(k->def, "false") == 0)
			v->b = 0;
		else
			return -EINVAL;
		return 0;
	}
	return -EINVAL;
}

/*
 * The descriptor size of minor 0 of this major: every plugin of the major has at least this much.
 * While minors fill reserved slots the struct does not grow; a minor that appends fields keeps
 * this at the .0 size, and the loader reads the new fields only when struct_size covers them.
 */
#define DESCRIPTOR_SIZE_X_0 sizeof(struct nudge_plugin)

/* Checks what a descriptor says about itself (not the instance's config). */
static int check_descriptor(const char *path, const struct nudge_plugin *d, struct refusal *r)
{
	if (d->abi_major != NUDGE_PLUGIN_ABI_MAJOR) {
		say(r, "%s: built for plugin ABI %u.x, this nudge speaks %d.x", path, d->abi_major,
		    NUDGE_PLUGIN_ABI_MAJOR);
		return -1;
	}
	if (d->struct_size < DESCRIPTOR_SIZE_X_0) {
		say(r,
		    "%s: its descriptor is %u bytes, smaller than the %zu bytes of plugin ABI %d.0 "
		    "(built against a damaged header?)",
		    path, d->struct_size, DESCRIPTOR_SIZE_X_0, NUDGE_PLUGIN_ABI_MAJOR);
		return -1;
	}
	const char *missing = !d->name                          ? "a name"
	                      : !d->init                        ? "an init callback"
	                      : !d->send                        ? "a send callback"
	                      : !d->shutdown                    ? "a shutdown callback"
	                      : !d->channels || !d->channels[0] ? "a channel"
	                                                        : NULL;
	if (missing) {
		say(r, "%s: its descriptor has no %s", path, missing);
		return -1;
	}
	if (!name_ok(d->name, "-")) {
		say(r, "%s: its descriptor's name \"%s\" is not a plain word", path, d->name);
		return -1;
	}
	for (const struct nudge_config_key *k = d->config_keys; k && k->name; k++) {
		if (!name_ok(k->name, "")) {
			say(r, "%s: declares a config key named \"%s\", which is not a plain word",
			    path, k->name);
			return -1;
		}
		if (k->type < NUDGE_CONFIG_STRING || k->type > NUDGE_CONFIG_BOOL) {
			say(r, "%s: declares config key '%s' with an unknown type %d", path,
			    k->name, (int)k->type);
			return -1;
		}
		for (const struct nudge_config_key *o = d->config_keys; o < k; o++)
			if (strcmp(o->name, k->name) == 0) {
				say(r, "%s: declares config key '%s' twice", path, k->name);
				return -1;
			}
		if (k->def) {
			struct ng_plugin_value v = {0};
			int bad = parse_default(k, &v);
			free(v.str);
			if (bad) {
				say(r,
				    "%s: declares config key '%s' with default \"%s\", which is "
				    "not %s",
				    path, k->name, k->def, type_word(k->type));
				return -1;
			}
		}
	}
	return 0;
}

/* dlopen's message repeats the path; keep only what follows it. */
static const char *dl_reason(const char *path)
{
	const char *e = dlerror();
	if (!e)
		return "unknown error";
	size_t n = strlen(path);
	if (strncmp(e, path, n) == 0 && e[n] == ':' && e[n + 1] == ' ')
		return e + n + 2;
	return e;
}

/* The loaded file at path, opening and checking it on first use. */
static struct ng_plugin_lib *lib_get(struct ng_plugin_host *h, const char *path, struct refusal *r)
{
	for (struct ng_plugin_lib *l = h->libs; l; l = l->next)
		if (strcmp(l->path, path) == 0)
			return l;
	void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		say(r, "%s: cannot be loaded: %s", path, dl_reason(path));
		return NULL;
	}
	nudge_plugin_entry_fn *entry;
	/* POSIX: a data pointer from dlsym converts to a function pointer. */
	*(void **)&entry = dlsym(dl, NUDGE_PLUGIN_ENTRY_SYMBOL);
	if (!entry) {
		say(r, "%s: has no %s symbol, so it is not a nudge plugin", path,
		    NUDGE_PLUGIN_ENTRY_SYMBOL);
		dlclose(dl);
		return NULL;
	}
	const struct nudge_plugin *d = entry();
	if (!d) {
		say(r, "%s: %s() returned no descriptor", path, NUDGE_PLUGIN_ENTRY_SYMBOL);
		dlclose(dl);
		return NULL;
	}
	if (check_descriptor(path, d, r) != 0) {
		dlclose(dl);
		return NULL;
	}
	/*
	 * Accepted: pin it. Libraries a plugin uses may leave code behind that runs later, outside
	 * any plugin call (libESMTP registers a thread-specific destructor that runs when a sender
	 * thread exits, after the plugins have shut down), so an accepted plugin stays mapped until
	 * the process exits. Refused files are unloaded.
	 */
	void *pin = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD | RTLD_NODELETE);
	if (pin)
		dlclose(pin);
	if (d->abi_minor > NUDGE_PLUGIN_ABI_MINOR)
		ng_info("plugin",
		        "%s: built for plugin ABI %u.%u, newer than this nudge's %d.%d; it must "
		        "not use "
		        "services this nudge lacks",
		        path, d->abi_major, d->abi_minor, NUDGE_PLUGIN_ABI_MAJOR,
		        NUDGE_PLUGIN_ABI_MINOR);
	struct ng_plugin_lib *l = ng_xcalloc(1, sizeof *l);
	l->path = ng_xstrdup(path);
	l->dl = dl;
	l->desc = d;
	l->next = h->libs;
	h->libs = l;
	return l;
}

void ng_plugin_lib_release(struct ng_plugin_host *h, struct ng_plugin_lib *lib)
{
	if (--lib->refs > 0)
		return;
	for (struct ng_plugin_lib **pp = &h->libs; *pp; pp = &(*pp)->next)
		if (*pp == lib) {
			*pp = lib->next;
			break;
		}
	dlclose(lib->dl); /* the code stays mapped (RTLD_NODELETE); the handle goes */
	free(lib->path);
	free(lib);
}

/* Validates the instance's config node against the declared keys into p->values. */
static int check_config(struct ng_plugin *p, const struct ng_conf_node *config, const char *prefix,
                        const char *conf_path, const char *where, struct refusal *r)
{
	const struct nudge_plugin *d = p->lib->desc;
	size_t n = 0;
	for (const struct nudge_config_key *k = d->config_keys; k && k->name; k++)
		n++;
	p->values = ng_xcalloc(n ? n : 1, sizeof *p->values);
	p->nvalues = n;
	for (size_t i = 0; i < n; i++)
		p->values[i].key = &d->config_keys[i];

	char at[600] = "";
	for (const struct ng_conf_node *c = config ? config->child : NULL; c; c = c->next) {
		if (conf_path && c->line)
			snprintf(at, sizeof at, " (%s:%d)", conf_path, c->line);
		struct ng_plugin_value *v = NULL;
		for (size_t i = 0; i < n; i++)
			if (strcmp(p->values[i].key->name, c->key) == 0)
				v = &p->values[i];
		if (!v) {
			const char *best = NULL;
			int bestd = 3;
			for (size_t i = 0; i < n; i++) {
				int dd = distance(c->key, p->values[i].key->name);
				if (dd < bestd) {
					bestd = dd;
					best = p->values[i].key->name;
				}
			}
			if (best)
				say(r, "%s: unknown config key '%s' (did you mean '%s'?)%s", prefix,
				    c->key, best, at);
			else
				say(r, "%s: unknown config key '%s'%s", prefix, c->key, at);
			return -1;
		}
		int32_t want = v->key->type;
		int fits = (want == NUDGE_CONFIG_STRING && c->type == NG_CONF_STRING) ||
		           (want == NUDGE_CONFIG_INT && c->type == NG_CONF_INT) ||
		           (want == NUDGE_CONFIG_NUMBER &&
		            (c->type == NG_CONF_INT || c->type == NG_CONF_NUMBER)) ||
		           (want == NUDGE_CONFIG_BOOL && c->type == NG_CONF_BOOL);
		if (!fits) {
			say(r, "%s: config key '%s' must be %s, not %s%s", prefix, c->key,
			    type_word(want), node_word(c), at);
			return -1;
		}
		v->set = v->has_value = 1;
		if (want == NUDGE_CONFIG_STRING)
			v->str = ng_xstrdup(c->str);
		else if (want == NUDGE_CONFIG_INT)
			v->i = c->i;
		else if (want == NUDGE_CONFIG_NUMBER)
			v->num = c->type == NG_CONF_INT ? (double)c->i : c->num;
		else
			v->b = c->b;
	}
	for (size_t i = 0; i < n; i++) {
		struct ng_plugin_value *v = &p->values[i];
		if (v->set)
			continue;
		if (v->key->required) {
			say(r, "%s: missing required config key '%s'%s", prefix, v->key->name,
			    where);
			return -1;
		}
		if (v->key->def) {
			parse_default(v->key, v); /* checked with the descriptor */
			v->has_value = 1;
		}
	}
	return 0;
}

static int serves(const struct nudge_plugin *d, const char *channel)
{
	for (const char *const *c = d->channels; *c; c++)
		if (strcmp(*c, channel) == 0)
			return 1;
	return 0;
}

/* Loads and starts one instance; 0, or -1 with the sentence in r. */
static int load_one(struct ng_plugin_host *h, const char *dir, const struct ng_plugin_spec *s,
                    struct refusal *r)
{
	char where[600] = "";
	if (s->conf_path && s->line)
		snprintf(where, sizeof where, " (%s:%d)", s->conf_path, s->line);
	if (!s->plugin || !name_ok(s->plugin, "-.")) {
		say(r, "%s/%s.so: instance '%s'%s: the plugin name is not a plain file name", dir,
		    s->plugin ? s->plugin : "", s->name ? s->name : "", where);
		return -1;
	}
	char *path = ng_xasprintf("%s/%s.so", dir, s->plugin);
	int rc = -1;
	struct ng_plugin *p = NULL;
	if (!name_ok(s->name, "-")) {
		say(r, "%s: instance name '%s'%s is not a plain word (letters, digits, '_', '-')",
		    path, s->name ? s->name : "", where);
		goto out;
	}
	if (ng_plugin_find(h, s->name)) {
		say(r, "%s: instance name '%s'%s is already taken by another channels entry", path,
		    s->name, where);
		goto out;
	}
	struct ng_plugin_lib *lib = lib_get(h, path, r);
	if (!lib)
		goto out;
	const struct nudge_plugin *d = lib->desc;
	const char *channel = s->channel ? s->channel : d->channels[0];
	if (!serves(d, channel)) {
		char list[256] = "";
		for (const char *const *c = d->channels; *c; c++)
			snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
			         c == d->channels ? "" : ", ", *c);
		say(r, "%s: instance '%s'%s asks for channel '%s', but the plugin serves %s", path,
		    s->name, where, channel, list);
		if (lib->refs == 0) {
			lib->refs = 1; /* no instance uses it: unload it now */
			ng_plugin_lib_release(h, lib);
		}
		goto out;
	}
	lib->refs++;
	p = ng_plugin_new(h, lib, s->name, channel);
	char prefix[800];
	snprintf(prefix, sizeof prefix, "%s: instance '%s'", path, s->name);
	if (check_config(p, s->config, prefix, s->conf_path, where, r) != 0)
		goto out;

	char err[512] = "";
	int irc = d->init(&ng_plugin_services, &p->self, &p->state, err, sizeof err);
	if (irc != 0) {
		say(r, "%s: instance '%s'%s did not start: %s", path, s->name, where,
		    err[0] ? err : ng_strerror(irc < 0 ? irc : -EINVAL));
		goto out;
	}
	p->running = 1;
	struct ng_plugin **tail = &h->plugins;
	while (*tail)
		tail = &(*tail)->next;
	*tail = p;
	h->nplugins++;
	p = NULL;
	rc = 0;
	ng_info("plugin", "loaded %s (%s %s, ABI %u.%u) as instance '%s' for channel '%s'", path,
	        d->name, d->version ? d->version : "?", d->abi_major, d->abi_minor, s->name,
	        channel);
out:
	if (p) {
		struct ng_plugin_lib *l = p->lib;
		ng_plugin_free(p);
		ng_plugin_lib_release(h, l);
	}
	free(path);
	return rc;
}

int ng_plugin_host_load(struct ng_plugin_host *h, const char *dir,
                        const struct ng_plugin_spec *specs, size_t n,
                        void (*refused)(void *arg, const char *sentence), void *arg)
{
	int loaded = 0;
	for (size_t i = 0; i < n; i++) {
		struct refusal r = {""};
		if (h->closing) {
			say(&r, "%s/%s.so: instance '%s' not loaded: the daemon is stopping", dir,
			    specs[i].plugin, specs[i].name);
		} else if (load_one(h, dir, &specs[i], &r) == 0) {
			loaded++;
			continue;
		}
		ng_error("plugin", "%s", r.text);
		if (refused)
			refused(arg, r.text);
	}
	return loaded;
}

static const char *child_str(const struct ng_conf_node *n, const char *key)
{
	for (const struct ng_conf_node *c = n->child; c; c = c->next)
		if (strcmp(c->key, key) == 0)
			return c->str;
	return NULL;
}

static const struct ng_conf_node *child(const struct ng_conf_node *n, const char *key)
{
	for (const struct ng_conf_node *c = n->child; c; c = c->next)
		if (strcmp(c->key, key) == 0)
			return c;
	return NULL;
}

int ng_plugin_host_load_conf(struct ng_plugin_host *h, const struct ng_conf *conf,
                             void (*refused)(void *arg, const char *sentence), void *arg)
{
	const struct ng_conf_node *list = ng_conf_get(conf, "channels");
	size_t n = 0;
	for (const struct ng_conf_node *c = list ? list->child : NULL; c; c = c->next)
		n++;
	if (n == 0)
		return 0;
	const char *configured = ng_conf_str(conf, "paths.plugins");
	char *dir = configured ? ng_xstrdup(configured) : ng_plugin_default_dir();
	if (!dir) {
		const char *s = "no plugin directory: set paths.plugins in the configuration";
		ng_error("plugin", "%s", s);
		if (refused)
			refused(arg, s);
		return 0;
	}
	struct ng_plugin_spec *specs = ng_xcalloc(n, sizeof *specs);
	size_t i = 0;
	for (const struct ng_conf_node *c = list->child; c; c = c->next, i++) {
		specs[i].name = child_str(c, "name");
		specs[i].plugin = child_str(c, "plugin");
		specs[i].channel = child_str(c, "channel");
		specs[i].config = child(c, "config");
		specs[i].conf_path = conf->path;
		specs[i].line = c->line;
	}
	int loaded = ng_plugin_host_load(h, dir, specs, n, refused, arg);
	free(specs);
	free(dir);
	return loaded;
}
