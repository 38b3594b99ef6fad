/*
 * fuzz_liquid.c — libFuzzer target for the Liquid parser and renderer. The input is a template,
 * optionally followed by a NUL byte and JSON data. A template that parses is rendered with small
 * limits, with every partial name resolving to the template itself (so include/render recursion
 * is exercised); any crash, leak, hang or sanitizer report is a bug. `make fuzz` builds it
 * (tests/fuzz/run.sh).
 */
#include "liquid.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int self_loader(void *ud, const char *name, const struct ng_liquid_tmpl **out, char *err,
                       size_t errlen)
{
	(void)err;
	(void)errlen;
	if (!strcmp(name, "missing"))
		return -ENOENT;
	*out = ud;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *src = (const char *)data;
	size_t len = size;
	const uint8_t *nul = memchr(data, 0, size);
	json_t *env = NULL;
	if (nul) {
		len = (size_t)(nul - data);
		env = json_loadb((const char *)nul + 1, size - len - 1, JSON_DECODE_ANY, NULL);
	}
	if (!env)
		env = json_pack("{s:s,s:i,s:[iii],s:{s:s},s:f}", "name", "Ada", "n", 3, "items", 1,
		                2, 3, "user", "email", "a@b.c", "price", 19.99);
	char err[512];
	struct ng_liquid_parse_opts po = {.name = "fuzz", .lax = size & 1};
	struct ng_liquid_tmpl *t;
	if (ng_liquid_parse(src, len, &po, &t, err, sizeof err) == 0) {
		struct ng_liquid_limits lim = {
		    .max_output = 1 << 16, .max_iterations = 20000, .max_depth = 8, .max_ms = 500};
		struct ng_liquid_loader ld = {self_loader, t};
		struct ng_liquid_render_opts o = {
		    .limits = &lim, .loader = &ld, .tz = "Europe/Paris"};
		struct ng_liquid_buf b = {0};
		ng_liquid_render(t, env, &o, &b, err, sizeof err);
		ng_liquid_buf_free(&b);
		ng_liquid_free(t);
	}
	json_decref(env);
	return 0;
}
