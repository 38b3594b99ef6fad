/*
 * liquid_bench.c — renders the cart-reminder email (subject, from name, preheader, HTML and text,
 * each wrapped in the email layout) for a 5-item cart on one thread for a few seconds and prints
 * renders per second. The cart is the Shopify checkouts/create fixture mapped by
 * contrib/mappers/shopify.lua, its line items repeated to five. The baseline, measured in the same
 * run, is copying the rendered bytes (memcpy of the same output): the ideal rate. Rates are per
 * second of the thread's CPU time (the machine is shared; wall-clock rates are printed too).
 *
 *   liquid_bench TOP [SECONDS [N]]   (N: exactly N renders and no baseline, for profilers)
 */
#include "intake_map.h"
#include "msgtmpl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double clock_s(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now(void)
{
	return clock_s(CLOCK_THREAD_CPUTIME_ID);
}

static json_t *cart_data(const char *top)
{
	char p[2048], err[1024];
	snprintf(p, sizeof p, "%s/../shared/fixtures/shopify/checkouts_create.json", top);
	json_t *payload = json_load_file(p, 0, NULL);
	snprintf(p, sizeof p, "%s/contrib/mappers", top);
	struct ng_intake_mapper *m;
	struct ng_intake_options o = {.default_country_code = "1"};
	if (!payload || ng_intake_mapper_load(p, "shopify", &o, &m, err, sizeof err)) {
		fprintf(stderr, "bench: fixture or mapper: %s\n", err);
		exit(1);
	}
	struct ng_intake_header h[] = {{"X-Shopify-Topic", "checkouts/create"},
	                               {"X-Shopify-Shop-Domain", "example.myshopify.com"}};
	json_t *events;
	if (ng_intake_map(m, "checkouts/create", h, 2, payload, &events, err, sizeof err)) {
		fprintf(stderr, "bench: map: %s\n", err);
		exit(1);
	}
	json_t *ev = json_array_get(events, 0);
	json_t *cart = json_deep_copy(json_object_get(ev, "data"));
	json_t *items = json_object_get(cart, "line_items");
	const char *titles[] = {"Wool Beanie", "Canvas Tote", "Trail Socks (3 pairs)"};
	for (int i = 0; json_array_size(items) < 5; i++) {
		json_t *it = json_deep_copy(json_array_get(items, 0));
		json_object_set_new(it, "title", json_string(titles[i % 3]));
		json_array_append_new(items, it);
	}
	json_t *d = json_pack("{s:o,s:O,s:{s:s,s:s,s:s,s:s},s:{s:s,s:s},s:s}", "cart", cart,
	                      "customer", json_object_get(ev, "customer"), "store", "name",
	                      "Example Store", "postal_address", "150 Elgin Street, Ottawa",
	                      "base_url", "https://shop.example.com", "timezone", "America/Toronto",
	                      "message", "id", "m-1", "key", "cart_reminder", "unsubscribe_url",
	                      "https://shop.example.com/u/m-1");
	json_decref(events);
	json_decref(payload);
	ng_intake_mapper_free(m);
	return d;
}

int main(int argc, char **argv)
{
	const char *top = argc > 1 ? argv[1] : ".";
	double secs = argc > 2 ? atof(argv[2]) : 3;
	char dir[2048], err[1024];
	snprintf(dir, sizeof dir, "%s/templates", top);
	struct ng_msgtmpl_set *set;
	if (ng_msgtmpl_open(dir, &set, err, sizeof err)) {
		fprintf(stderr, "bench: %s\n", err);
		return 1;
	}
	json_t *data = cart_data(top);
	struct ng_rendered_message m;
	if (ng_msgtmpl_render(set, "cart_reminder", data, &m, err, sizeof err)) {
		fprintf(stderr, "bench: %s\n", err);
		return 1;
	}
	size_t bytes = strlen(m.html) + strlen(m.text);
	ng_msgtmpl_rendered_free(&m);

	long fixed = argc > 3 ? atol(argv[3]) : 0;
	if (fixed > 0) {
		for (long i = 0; i < fixed; i++) {
			ng_msgtmpl_render(set, "cart_reminder", data, &m, err, sizeof err);
			ng_msgtmpl_rendered_free(&m);
		}
		printf("%ld renders\n", fixed);
		json_decref(data);
		ng_msgtmpl_close(set);
		return 0;
	}
	long n = 0;
	double w0 = clock_s(CLOCK_MONOTONIC);
	double t0 = now(), t;
	do {
		for (int i = 0; i < 256; i++) {
			ng_msgtmpl_render(set, "cart_reminder", data, &m, err, sizeof err);
			ng_msgtmpl_rendered_free(&m);
		}
		n += 256;
	} while ((t = now()) - t0 < secs);
	double rate = (double)n / (t - t0);
	double wall = (double)n / (clock_s(CLOCK_MONOTONIC) - w0);

	/* Baseline: producing the same bytes by copying them (malloc + memcpy + free). */
	char *src = malloc(bytes);
	memset(src, 'x', bytes);
	long nb = 0;
	volatile size_t sink = 0;
	t0 = now();
	do {
		for (int i = 0; i < 4096; i++) {
			char *dst = malloc(bytes);
			memcpy(dst, src, bytes);
			sink += (unsigned char)dst[bytes / 2];
			free(dst);
		}
		nb += 4096;
	} while ((t = now()) - t0 < secs / 3);
	double base = (double)nb / (t - t0);
	free(src);
	printf(
	    "cart_reminder email (subject, preheader, html %zu+text bytes, 5 items), 1 thread:\n",
	    bytes);
	printf("  renders/s: %.0f per CPU second (goal >= 50000); %.0f per wall second\n", rate,
	       wall);
	printf("  baseline (copying the same %zu bytes): %.0f/s; ratio render/baseline %.4f\n",
	       bytes, base, rate / base);
	json_decref(data);
	ng_msgtmpl_close(set);
	return rate >= 50000 ? 0 : 2;
}
