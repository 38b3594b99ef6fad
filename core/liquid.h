/*
 * liquid.h — the Liquid template engine: parse a template once into a compiled, immutable form,
 * then render it against JSON data as often as wanted, from any number of threads.
 *
 * Rendering reads the compiled template and the data and writes only to its own arena and output
 * buffer: there is no global mutable state on the render path (the time-zone cache is append-only
 * behind a mutex). Every render is bounded by ng_liquid_limits — output size, loop iterations,
 * wall time, partial depth — and a template that hits a limit fails with an error, never hangs.
 */
#ifndef NG_LIQUID_H
#define NG_LIQUID_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct ng_liquid_tmpl;

/* A growable output buffer; s is NUL-terminated after a render. Reuse it across renders. */
struct ng_liquid_buf {
	char *s;
	size_t len, cap;
};
void ng_liquid_buf_free(struct ng_liquid_buf *b);

struct ng_liquid_limits {
	size_t max_output;       /* bytes of output (and of any one captured string); 0: 1 MiB */
	uint64_t max_iterations; /* loop iterations over the whole render, partials included */
	uint64_t max_tmpl_iterations; /* loop iterations within one template or partial; 0: none */
	uint32_t max_depth;           /* nested include/render; 0: 100 */
	uint32_t max_ms;              /* wall-clock time of one render; 0: 1000 ms */
};

/*
 * Where partials come from. load returns a template the loader keeps alive for the whole render
 * (the loader owns it). It returns -ENOENT when there is no such partial, or another negative code
 * with a sentence in err (a syntax error in the partial). It must be thread-safe when renders run
 * on several threads.
 */
struct ng_liquid_loader {
	int (*load)(void *ud, const char *name, const struct ng_liquid_tmpl **out, char *err,
	            size_t errlen);
	void *ud;
};

/* A string variable the caller adds to the data without copying it (a layout's `content`). */
struct ng_liquid_var {
	const char *name;
	const char *value;
	size_t len;
};

struct ng_liquid_render_opts {
	const struct ng_liquid_limits *limits; /* NULL: the defaults */
	const struct ng_liquid_loader *loader; /* NULL: include/render fail */
	int64_t now;          /* unix seconds for 'now' and 'today'; 0: the real clock */
	const char *tz;       /* IANA zone for dates without an offset; NULL: UTC */
	const char *locale;   /* for `money`; NULL: "en" */
	const char *currency; /* for `money` without an argument; NULL: "USD" */
	const struct ng_liquid_var *vars; /* seen before the data, as if assigned */
	size_t nvars;
};

/* Parse options. strict_filters makes an unknown filter a parse error (for `nudge check`). */
struct ng_liquid_parse_opts {
	const char *name; /* shown in errors ("cart_reminder.liquid"); may be NULL */
	int line;         /* line number of the source's first line (front matter offsets); 0: 1 */
	int strict_filters;
	int lax; /* liquid-ruby's lax mode: `a || f` and a trailing `|` are accepted */
};

/*
 * Parses src (len bytes) into *out. On a syntax error returns -EINVAL with a sentence in err
 * naming line and column ("NAME:LINE:COL: Liquid syntax error: …").
 */
int ng_liquid_parse(const char *src, size_t len, const struct ng_liquid_parse_opts *o,
                    struct ng_liquid_tmpl **out, char *err, size_t errlen);
void ng_liquid_free(struct ng_liquid_tmpl *t);

/* Partial names the template includes or renders by literal name, and the line of each first
 * use (for `nudge check`). Returns how many there are (may exceed max). */
size_t ng_liquid_partials(const struct ng_liquid_tmpl *t, const char **names, int *lines,
                          size_t max);

/*
 * Renders t against data (a JSON object, or NULL) into out (appended after out->len=0). Returns 0,
 * or a negative code with the Liquid error sentence in err: -E2BIG when a limit was hit, -EINVAL
 * for a render error (divided by 0, a missing partial…). Thread-safe.
 */
int ng_liquid_render(const struct ng_liquid_tmpl *t, const json_t *data,
                     const struct ng_liquid_render_opts *o, struct ng_liquid_buf *out, char *err,
                     size_t errlen);

/*
 * A cache of compiled templates keyed by the SHA-256 of their source and parse options: the same
 * content is parsed once. Thread-safe; templates live until the cache is freed.
 */
struct ng_liquid_cache;
struct ng_liquid_cache *ng_liquid_cache_new(void);
void ng_liquid_cache_free(struct ng_liquid_cache *c);
int ng_liquid_cache_get(struct ng_liquid_cache *c, const char *src, size_t len,
                        const struct ng_liquid_parse_opts *o, const struct ng_liquid_tmpl **out,
                        char *err, size_t errlen);

/* Whether name is a filter the engine knows (for `nudge check`). */
int ng_liquid_filter_known(const char *name, size_t len);

#endif
