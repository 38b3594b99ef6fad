/*
 * links.c — signed link tokens and the small pages behind them (see links.h).
 */
#include "links.h"
#include "httpd.h"
#include "ng.h"
#include "utf8.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#define RAW_LEN 33 /* 8 + 1 + 8 + 16 */

static const char *const channels[] = {"email", "sms", "messenger"};

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)(v & 0xff);
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void mac(const unsigned char *secret, size_t secret_len, const unsigned char *msg,
                unsigned char out[32])
{
	unsigned int len = 32;
	HMAC(EVP_sha256(), secret, (int)secret_len, msg, 17, out, &len);
}

int ng_link_token(const unsigned char *secret, size_t secret_len, enum ng_link_kind kind,
                  int64_t customer_id, const char *channel, int64_t message_id, char *out,
                  size_t outlen)
{
	int ch = -1;
	for (size_t i = 0; i < NG_ARRAY_LEN(channels); i++)
		if (channel && strcmp(channel, channels[i]) == 0)
			ch = (int)i;
	if (ch < 0 || outlen < NG_LINK_TOKEN_LEN + 1 || (unsigned)kind > 15)
		return -EINVAL;
	unsigned char raw[RAW_LEN], m[32];
	put64(raw, (uint64_t)customer_id);
	raw[8] = (unsigned char)((unsigned)kind << 4 | (unsigned)ch);
	put64(raw + 9, (uint64_t)message_id);
	mac(secret, secret_len, raw, m);
	memcpy(raw + 17, m, 16);
	/* 33 bytes are 11 groups of three: 44 characters, no padding. */
	size_t o = 0;
	for (size_t i = 0; i < RAW_LEN; i += 3) {
		uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
		out[o++] = b64url[v >> 18 & 63];
		out[o++] = b64url[v >> 12 & 63];
		out[o++] = b64url[v >> 6 & 63];
		out[o++] = b64url[v & 63];
	}
	out[o] = '\0';
	return 0;
}

int ng_link_token_parse(const unsigned char *secret, size_t secret_len, enum ng_link_kind kind,
                        const char *token, int64_t *customer_id, const char **channel,
                        int64_t *message_id)
{
	if (strlen(token) != NG_LINK_TOKEN_LEN)
		return -EINVAL;
	unsigned char raw[RAW_LEN];
	for (size_t i = 0, o = 0; i < NG_LINK_TOKEN_LEN; i += 4) {
		uint32_t v = 0;
		for (size_t j = 0; j < 4; j++) {
			const char *p = strchr(b64url, token[i + j]);
			if (!p || !token[i + j])
				return -EINVAL;
			v = v << 6 | (uint32_t)(p - b64url);
		}
		raw[o++] = (unsigned char)(v >> 16);
		raw[o++] = (unsigned char)(v >> 8);
		raw[o++] = (unsigned char)v;
	}
	unsigned char m[32];
	mac(secret, secret_len, raw, m);
	if (CRYPTO_memcmp(m, raw + 17, 16) != 0 || raw[8] >> 4 != (unsigned)kind ||
	    (raw[8] & 15) >= NG_ARRAY_LEN(channels))
		return -EINVAL;
	*customer_id = (int64_t)get64(raw);
	*channel = channels[raw[8] & 15];
	*message_id = (int64_t)get64(raw + 9);
	return 0;
}

/* The path letter of each kind: /u/, /c/, /m/. */
static char link_letter(enum ng_link_kind kind)
{
	return kind == NG_LINK_CONFIRM ? 'c' : kind == NG_LINK_VIEW ? 'm' : 'u';
}

char *ng_link_url(const char *base_url, const unsigned char *secret, size_t secret_len,
                  enum ng_link_kind kind, int64_t customer_id, const char *channel,
                  int64_t message_id)
{
	char tok[NG_LINK_TOKEN_LEN + 1];
	if (!base_url || !secret ||
	    ng_link_token(secret, secret_len, kind, customer_id, channel, message_id, tok,
	                  sizeof tok) != 0)
		return NULL;
	size_t n = strlen(base_url);
	while (n > 0 && base_url[n - 1] == '/')
		n--;
	return ng_xasprintf("%.*s/%c/%s", (int)n, base_url, link_letter(kind), tok);
}

struct ng_link_routes *ng_link_routes_new(ng_db *db, const unsigned char *secret, size_t secret_len,
                                          const char *store_name)
{
	struct ng_link_routes *l = ng_xcalloc(1, sizeof *l);
	l->db = db;
	l->secret = ng_xmalloc(secret_len ? secret_len : 1);
	memcpy(l->secret, secret, secret_len);
	l->secret_len = secret_len;
	l->store_name = ng_xstrdup(store_name ? store_name : "us");
	return l;
}

void ng_link_routes_free(struct ng_link_routes *l)
{
	if (!l)
		return;
	OPENSSL_cleanse(l->secret, l->secret_len);
	free(l->secret);
	free(l->store_name);
	free(l);
}

int ng_link_request(const struct ng_link_routes *l, struct ng_httpd_req *req,
                    enum ng_link_kind kind, int64_t *customer_id, const char **channel,
                    int64_t *message_id)
{
	const char *path = ng_httpd_path(req);
	char want = link_letter(kind);
	const char *tok = path[0] == '/' && path[1] == want && path[2] == '/' ? path + 3 : "";
	return ng_link_token_parse(l->secret, l->secret_len, kind, tok, customer_id, channel,
	                           message_id);
}

void ng_link_html_escape(char *out, size_t len, const char *s)
{
	size_t o = 0;
	for (; *s && o + 7 < len; s++) {
		const char *e = *s == '<'   ? "&lt;"
		                : *s == '>' ? "&gt;"
		                : *s == '&' ? "&amp;"
		                : *s == '"' ? "&quot;"
		                            : NULL;
		if (e) {
			memcpy(out + o, e, strlen(e));
			o += strlen(e);
		} else {
			out[o++] = *s;
		}
	}
	out[o] = '\0';
}

void ng_link_page(struct ng_httpd_req *req, int status, const char *title, const char *text,
                  const char *form)
{
	char *body = ng_xasprintf(
	    "<!doctype html><html><head><meta charset=\"utf-8\">"
	    "<meta name=\"viewport\" content=\"width=device-width\"><title>%s</title></head>"
	    "<body style=\"font-family:sans-serif;max-width:32em;margin:3em auto\"><h1>%s</h1>"
	    "<p>%s</p>%s%s%s</body></html>\n",
	    title, title, text, form ? "<form method=\"post\">" : "", form ? form : "",
	    form ? "</form>" : "");
	ng_httpd_add_header(req, "Cache-Control", "no-store");
	ng_httpd_respond(req, status, "text/html; charset=utf-8", body, strlen(body));
	free(body);
}

char *ng_link_evidence(struct ng_httpd_req *req, int64_t message_id, const char *method)
{
	/* The client's header in whatever bytes it sent: as they were, json_pack refused a
	 * User-Agent that is not UTF-8, the evidence became NULL, and the consent row (whose
	 * evidence is NOT NULL) could never be written: that client could not unsubscribe. */
	char *agent = ng_utf8_dup(ng_httpd_header(req, "User-Agent"));
	json_t *ev = json_pack("{s:s?, s:s?, s:I, s:s}", "ip", ng_httpd_remote(req), "user_agent",
	                       agent, "message_id", (json_int_t)message_id, "method", method);
	free(agent);
	char *text = json_dumps(ev, JSON_COMPACT);
	json_decref(ev);
	return text;
}
