/*
 * liquid_cache.c — compiled Liquid templates keyed by the SHA-256 of their source and parse
 * options, so the same content is parsed once however often it is loaded (a layout shared by
 * every email, a template set reopened on SIGHUP). Lookups and inserts hold a mutex; the cached
 * templates are immutable and live until the cache is freed.
 */
#include "liquid_int.h"
#include "ng.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct entry {
	unsigned char key[32];
	struct ng_liquid_tmpl *t;
	struct entry *next;
};

struct ng_liquid_cache {
	pthread_mutex_t lock;
	struct entry *head;
};

struct ng_liquid_cache *ng_liquid_cache_new(void)
{
	struct ng_liquid_cache *c = ng_xcalloc(1, sizeof *c);
	pthread_mutex_init(&c->lock, NULL);
	return c;
}

void ng_liquid_cache_free(struct ng_liquid_cache *c)
{
	if (!c)
		return;
	for (struct entry *e = c->head; e;) {
		struct entry *n = e->next;
		ng_liquid_free(e->t);
		free(e);
		e = n;
	}
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static void key_of(const char *src, size_t len, const struct ng_liquid_parse_opts *o,
                   unsigned char key[32])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned int n = 32;
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	EVP_DigestUpdate(md, src, len);
	/* The name and first line show in error messages, so they are part of the key. */
	char opt[600];
	int m = snprintf(opt, sizeof opt, "\n%s\n%d\n%d\n%d", o && o->name ? o->name : "",
	                 o ? o->line : 0, o ? o->strict_filters : 0, o ? o->lax : 0);
	EVP_DigestUpdate(md, opt, (size_t)m);
	EVP_DigestFinal_ex(md, key, &n);
	EVP_MD_CTX_free(md);
}

int ng_liquid_cache_get(struct ng_liquid_cache *c, const char *src, size_t len,
                        const struct ng_liquid_parse_opts *o, const struct ng_liquid_tmpl **out,
                        char *err, size_t errlen)
{
	unsigned char key[32];
	key_of(src, len, o, key);
	pthread_mutex_lock(&c->lock);
	for (struct entry *e = c->head; e; e = e->next)
		if (memcmp(e->key, key, 32) == 0) {
			*out = e->t;
			pthread_mutex_unlock(&c->lock);
			return 0;
		}
	pthread_mutex_unlock(&c->lock);
	struct ng_liquid_tmpl *t;
	int rc = ng_liquid_parse(src, len, o, &t, err, errlen);
	if (rc)
		return rc;
	pthread_mutex_lock(&c->lock);
	for (struct entry *e = c->head; e; e = e->next)
		if (memcmp(e->key, key, 32) == 0) {
			/* Another thread parsed the same source meanwhile: keep theirs. */
			*out = e->t;
			pthread_mutex_unlock(&c->lock);
			ng_liquid_free(t);
			return 0;
		}
	struct entry *e = ng_xcalloc(1, sizeof *e);
	memcpy(e->key, key, 32);
	e->t = t;
	e->next = c->head;
	c->head = e;
	*out = t;
	pthread_mutex_unlock(&c->lock);
	return 0;
}
