/*
 * unsubscribe.c — unsubscribe links: the signed token the dispatcher puts in marketing mail
 * (List-Unsubscribe and the data's unsubscribe_url), and the routes behind it.
 *
 *   GET  /u/<token>  a small page naming the store, with one button that POSTs back here
 *   POST /u/<token>  RFC 8058 one-click (and the page's button): 200, no redirect. In one
 *                    transaction a consents row withdraws marketing consent for the channel
 *                    (source unsubscribe_link, evidence ip, user agent, message id) and every
 * queued marketing message of that customer on that channel is skipped with the reason.
 *
 * The token holds ids only and a MAC (see unsubscribe.h); a bad or forged token gets 400 and
 * changes nothing. Repeating the POST is harmless: consent already withdrawn is not withdrawn
 * again.
 */
#include "unsubscribe.h"
#include "httpd.h"
#include "ng.h"

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

int ng_unsub_token(const unsigned char *secret, size_t secret_len, int64_t customer_id,
                   const char *channel, int64_t message_id, char *out, size_t outlen)
{
	int ch = -1;
	for (size_t i = 0; i < NG_ARRAY_LEN(channels); i++)
		if (channel && strcmp(channel, channels[i]) == 0)
			ch = (int)i;
	if (ch < 0 || outlen < NG_UNSUB_TOKEN_LEN + 1)
		return -EINVAL;
	unsigned char raw[RAW_LEN], m[32];
	put64(raw, (uint64_t)customer_id);
	raw[8] = (unsigned char)ch;
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

int ng_unsub_token_parse(const unsigned char *secret, size_t secret_len, const char *token,
                         int64_t *customer_id, const char **channel, int64_t *message_id)
{
	if (strlen(token) != NG_UNSUB_TOKEN_LEN)
		return -EINVAL;
	unsigned char raw[RAW_LEN];
	for (size_t i = 0, o = 0; i < NG_UNSUB_TOKEN_LEN; i += 4) {
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
	if (CRYPTO_memcmp(m, raw + 17, 16) != 0 || raw[8] >= NG_ARRAY_LEN(channels))
		return -EINVAL;
	*customer_id = (int64_t)get64(raw);
	*channel = channels[raw[8]];
	*message_id = (int64_t)get64(raw + 9);
	return 0;
}

/* ---- routes ------------------------------------------------------------------------------- */

struct ng_unsubscribe {
	ng_db *db;
	unsigned char *secret;
	size_t secret_len;
	char *store_name;
};

static void html_escape(char *out, size_t len, const char *s)
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

static void answer_page(struct ng_httpd_req *req, int status, const char *title, const char *text,
                        int button)
{
	char *body = ng_xasprintf(
	    "<!doctype html><html><head><meta charset=\"utf-8\">"
	    "<meta name=\"viewport\" content=\"width=device-width\"><title>%s</title></head>"
	    "<body style=\"font-family:sans-serif;max-width:32em;margin:3em auto\"><h1>%s</h1>"
	    "<p>%s</p>%s</body></html>\n",
	    title, title, text,
	    button ? "<form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" "
	             "value=\"One-Click\"><button type=\"submit\">Unsubscribe</button></form>"
	           : "");
	ng_httpd_add_header(req, "Cache-Control", "no-store");
	ng_httpd_respond(req, status, "text/html; charset=utf-8", body, strlen(body));
	free(body);
}

static int parse(struct ng_unsubscribe *u, struct ng_httpd_req *req, int64_t *cid,
                 const char **channel, int64_t *mid)
{
	const char *path = ng_httpd_path(req);
	const char *tok = strncmp(path, "/u/", 3) == 0 ? path + 3 : "";
	return ng_unsub_token_parse(u->secret, u->secret_len, tok, cid, channel, mid);
}

static void unsubscribe_page(struct ng_httpd_req *req, void *arg)
{
	struct ng_unsubscribe *u = arg;
	int64_t cid, mid;
	const char *channel;
	if (parse(u, req, &cid, &channel, &mid) != 0) {
		answer_page(
		    req, 400, "Link not valid",
		    "This unsubscribe link is not valid. Use the link in the message itself.", 0);
		return;
	}
	char name[512], text[1024];
	html_escape(name, sizeof name, u->store_name);
	snprintf(text, sizeof text,
	         "Stop receiving marketing %s from %s? Messages about your orders still arrive.",
	         strcmp(channel, "email") == 0 ? "email" : "messages", name);
	answer_page(req, 200, "Unsubscribe", text, 1);
}

static void on_withdrawn(const struct ng_db_result *r, void *arg)
{
	struct ng_httpd_req *req = arg;
	/* 23503: the customer is gone (erased): nothing left to unsubscribe. */
	if (r->status != 0 && strcmp(r->sqlstate, "23503") != 0) {
		ng_error("unsubscribe", "recording an unsubscribe failed: %s", r->message);
		answer_page(
		    req, 503, "Please try again",
		    "We could not record your request just now. Please try again in a minute.", 1);
		return;
	}
	if (r->status == 0 && r->nresults == 2)
		ng_info("unsubscribe",
		        "marketing consent withdrawn; %d queued message(s) cancelled",
		        atoi(PQcmdTuples(r->results[1])));
	answer_page(req, 200, "You are unsubscribed",
	            "You will receive no more marketing messages from us on this channel.", 0);
}

static void unsubscribe_post(struct ng_httpd_req *req, void *arg)
{
	struct ng_unsubscribe *u = arg;
	int64_t cid, mid;
	const char *channel;
	if (parse(u, req, &cid, &channel, &mid) != 0) {
		answer_page(
		    req, 400, "Link not valid",
		    "This unsubscribe link is not valid. Use the link in the message itself.", 0);
		return;
	}
	const char *ua = ng_httpd_header(req, "User-Agent");
	const char *remote = ng_httpd_remote(req);
	json_t *ev = json_pack("{s:s?, s:s?, s:I, s:s}", "ip", remote, "user_agent", ua,
	                       "message_id", (json_int_t)mid, "method", "one-click");
	char *evidence = json_dumps(ev, JSON_COMPACT);
	json_decref(ev);
	char c[24];
	snprintf(c, sizeof c, "%lld", (long long)cid);
	const char *p1[3] = {c, channel, evidence};
	const char *p2[2] = {c, channel};
	struct ng_db_stmt st[2] = {
	    {"INSERT INTO consents (customer_id, channel, purpose, status, source, evidence)"
	     " SELECT $1, $2, 'marketing', 'withdrawn', 'unsubscribe_link', $3::jsonb"
	     " WHERE NOT EXISTS (SELECT 1 FROM consent_current k WHERE k.customer_id = $1"
	     "  AND k.channel = $2 AND k.purpose = 'marketing' AND k.status = 'withdrawn')",
	     3, p1},
	    {"UPDATE messages SET status = 'skipped', updated_at = now(),"
	     " last_error = 'unsubscribed: the recipient used the unsubscribe link'"
	     " WHERE customer_id = $1 AND channel = $2 AND purpose = 'marketing'"
	     " AND status IN ('queued', 'retry', 'deferred')",
	     2, p2},
	};
	int rc = ng_db_batch(u->db, st, 2, on_withdrawn, req);
	free(evidence);
	if (rc) {
		struct ng_db_result r = {.status = rc, .message = ng_strerror(rc), .sqlstate = ""};
		on_withdrawn(&r, req);
	}
}

struct ng_unsubscribe *ng_unsubscribe_routes(struct ng_httpd *srv, ng_db *db,
                                             const unsigned char *secret, size_t secret_len,
                                             const char *store_name)
{
	struct ng_unsubscribe *u = ng_xcalloc(1, sizeof *u);
	u->db = db;
	u->secret = ng_xmalloc(secret_len ? secret_len : 1);
	memcpy(u->secret, secret, secret_len);
	u->secret_len = secret_len;
	u->store_name = ng_xstrdup(store_name ? store_name : "us");
	ng_httpd_route(srv, "GET", "/u/*", unsubscribe_page, u);
	ng_httpd_route(srv, "POST", "/u/*", unsubscribe_post, u);
	return u;
}

void ng_unsubscribe_free(struct ng_unsubscribe *u)
{
	if (!u)
		return;
	OPENSSL_cleanse(u->secret, u->secret_len);
	free(u->secret);
	free(u->store_name);
	free(u);
}
