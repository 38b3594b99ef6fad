/*
 * intake_map.h — the pure half of event intake: turning a store's webhook payload (or a /v1/events
 * body) into nudge's normalised events, by running the source's mapper, a Lua file the user can
 * read and change (contrib/mappers/shopify.lua, woocommerce.lua, api.lua; catalogue in
 * docs/events.md).
 *
 * A mapper file returns a table keyed by topic; each value is function(p, h) → an event table, a
 * list of event tables, or nil. It runs in a small sandbox: no os, io, require, load, pcall,
 * coroutine or math.random; globals are read-only; an instruction budget and a memory cap stop a
 * runaway mapping. Helpers: json (json_lua.h), required, reject, first, str, map, log.
 *
 * Every event a mapping returns is validated and normalised in C: emails and phones through
 * identity.h (default country code from the options), times to UTC ("2022-01-01T00:00:00Z"), ids to
 * strings, consent states checked, dedupe keys prefixed with the source. Each normalised event is
 * a JSON object:
 *
 *   { "source": "shopify", "topic": "checkouts/create", "type": "checkout.started",
 *     "key": "123123123", "occurred_at": "2022-01-01T00:00:00Z",
 *     "customer": { "source_id": "603851970716743400", "email": "example@email.com",
 *                   "phone": "+15551234567", "first_name": "John", "last_name": "Smith",
 *                   "locale": "en", "timezone": "America/New_York", "properties": { … } },
 *     "consent": { "email": { "state": "not_subscribed",
 *                             "source": "shopify:buyer_accepts_marketing" } },
 *     "data": { … }, "dedupe_keys": [ "shopify:event:…" ], "warnings": [ "…" ] }
 *
 * (key, occurred_at, customer, consent and warnings appear only when there is something to say.)
 *
 * Result codes of ng_intake_map, and what the HTTP layer answers:
 *   0                   events mapped: commit them, then 200
 *   NG_INTAKE_IGNORED   (positive, not an error) no mapping for the topic, or the mapping returned
 *                       no events: 200 "ignored" with err's sentence, so the store stops retrying
 *   -EBADMSG            the payload is malformed (not an object, a required field missing, an API
 *                       event with an invalid email…): 400 with err's sentence
 *   NG_ECONFIG          the mapper is broken (a Lua error, a malformed event): 500, so the store
 *                       retries while an admin fixes the file named in err ("shopify.lua:57: …")
 *   -ENOMEM             the mapping hit the memory cap: 500
 *
 * Thread safety: a mapper owns one lua_State. Use each mapper on one thread only (the loop thread);
 * load one per source at startup. Loading is reentrant.
 */
#ifndef NG_INTAKE_MAP_H
#define NG_INTAKE_MAP_H

#include <jansson.h>
#include <stddef.h>

#define NG_INTAKE_IGNORED    1
#define NG_INTAKE_MAX_EVENTS 1000 /* per call */

struct ng_intake_mapper;

struct ng_intake_header {
	const char *name, *value;
};

struct ng_intake_options {
	/* Country calling code for national phone numbers ("1", "49"); NULL: such numbers are
	 * refused (dropped with a warning, or -EBADMSG when strict). */
	const char *default_country_code;
	/* 0 (stores): an email, phone, locale, timezone or time that does not normalise is dropped
	 * and named in the event's warnings. 1 (/v1/events, whose caller can fix the request): it
	 * makes the payload malformed (-EBADMSG). */
	int strict;
	size_t memory_limit;        /* bytes for the mapper's Lua state; 0: 64 MiB */
	unsigned long instructions; /* per call; 0: 10 million */
};

/*
 * Loads DIR/SOURCE.lua (source: lower-case letters, digits, '_' or '-'). Options are copied (NULL:
 * defaults). Returns 0, or NG_ECONFIG / -ENOENT / -EINVAL with a sentence in err, e.g.
 * "contrib/mappers/shopify.lua:12: '=' expected near 'x'" or
 * "contrib/mappers/shopify.lua: topic 'orders/create' maps to a string, not a function".
 */
int ng_intake_mapper_load(const char *dir, const char *source, const struct ng_intake_options *opts,
                          struct ng_intake_mapper **out, char *err, size_t errlen);
void ng_intake_mapper_free(struct ng_intake_mapper *m);
const char *ng_intake_mapper_source(const struct ng_intake_mapper *m);
const char *ng_intake_mapper_path(const struct ng_intake_mapper *m);
/* 1 when the mapper has a mapping for topic. */
int ng_intake_mapper_has(struct ng_intake_mapper *m, const char *topic);

/*
 * Maps one payload received on topic with the given request headers. On 0, *events is a new JSON
 * array (the caller's reference) of one or more normalised events; otherwise *events is NULL and
 * err holds a sentence. The result codes are listed above.
 */
int ng_intake_map(struct ng_intake_mapper *m, const char *topic,
                  const struct ng_intake_header *headers, size_t nheaders, const json_t *payload,
                  json_t **events, char *err, size_t errlen);

/* ---- per-source request facts (intake_map_source.c) ---------------------------------------- */

/* The value of the header name (any case) or NULL. */
const char *ng_intake_header(const struct ng_intake_header *headers, size_t n, const char *name);

/* The header that names the topic for source ("X-Shopify-Topic", "X-WC-Webhook-Topic"), or NULL
 * when the route itself is the topic (the api source: topic "events"). */
const char *ng_intake_topic_header(const char *source);

/*
 * 1 when the request is WooCommerce's unsigned creation ping (a form body "webhook_id=N" and no
 * X-WC-Webhook-Topic / -Signature headers), which must be answered 200 and otherwise ignored;
 * *webhook_id gets N when not NULL. 0 for anything else, and always 0 for other sources.
 */
int ng_intake_is_ping(const char *source, const struct ng_intake_header *headers, size_t n,
                      const char *body, size_t len, long long *webhook_id);

/* ---- internal, shared by intake_map*.c ------------------------------------------------------- */

#include <lua.h>

/* A mapper's Lua state with its limits (intake_map_sandbox.c). Not movable once opened: the
 * state's allocator points at it. */
struct ng_intake__sandbox {
	lua_State *L;
	const char *source; /* for log lines */
	size_t mem_used, mem_limit;
	unsigned long ticks, budget_ticks; /* hook calls so far and allowed, per call */
};
/* Opens sb->L with the environment table for mapper chunks at stack index 1. */
int ng_intake__sandbox_open(struct ng_intake__sandbox *sb, char *err, size_t errlen);
void ng_intake__sandbox_close(struct ng_intake__sandbox *sb);
/* The budget_ticks for an instruction count. */
unsigned long ng_intake__sandbox_ticks(unsigned long instructions);
/* lua_pcall under the instruction budget. */
int ng_intake__sandbox_pcall(struct ng_intake__sandbox *sb, int nargs, int nresults);
/* 1 when the error value at idx came from reject() or required(). */
int ng_intake__is_reject(lua_State *L, int idx);
/* Pushes the request headers as a table read in any case. */
void ng_intake__push_headers(lua_State *L, const struct ng_intake_header *headers, size_t n);

/* Normalises one event returned by a mapping (in) into a new object (*out). Returns 0, -EBADMSG or
 * NG_ECONFIG with a sentence (without file:line) in err. */
int ng_intake__normalise(const char *source, const char *topic, const struct ng_intake_options *o,
                         const json_t *in, json_t **out, char *err, size_t errlen);
/* "2021-12-31T19:00:00-05:00" → "2022-01-01T00:00:00Z" (milliseconds kept when not zero). */
int ng_intake__time(const char *in, char out[32]);

#endif
