/*
 * plugin_reports.c — the daemon's receivers for plugin reports (see plugin_reports.h): a delivery
 * status goes through ng_report_status (applied monotonically, error codes in message_events), a
 * consent keyword through ng_report_consent (STOP withdraws marketing consent on the channel and
 * cancels queued marketing messages, START grants it again), an event through ng_report_event
 * (Messenger PSIDs linked, then ng_intake_accept). One statement per report, one implicit
 * transaction: done(0) means it committed.
 */
#include "plugin_reports.h"
#include "ng.h"
#include "plugin_host.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ng_reports {
	ng_db *db;
	struct ng_plugin_host *host;
	unsigned char *secret;
	size_t secret_len;
	int outstanding; /* statements whose callback has not come */
	void (*closed)(void *arg);
	void *closed_arg;
};

/* One report at the database. */
struct call {
	struct ng_reports *r;
	char kind; /* 's', 'c', 'e' */
	char what[96];
	void (*done)(void *arg, int status);
	void *done_arg;
};

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* ---- refs ----------------------------------------------------------------------------------- */

static void ref_mac(const unsigned char *secret, size_t secret_len, int64_t cid, char out[23])
{
	char msg[64];
	int n = snprintf(msg, sizeof msg, "nudge messenger ref:%lld", (long long)cid);
	unsigned char m[32];
	unsigned int len = sizeof m;
	HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)msg, (size_t)n, m, &len);
	/* 16 bytes: five groups of three and one byte left, 22 characters without padding. */
	size_t o = 0;
	for (size_t i = 0; i < 15; i += 3) {
		uint32_t v = (uint32_t)m[i] << 16 | (uint32_t)m[i + 1] << 8 | m[i + 2];
		out[o++] = b64url[v >> 18 & 63];
		out[o++] = b64url[v >> 12 & 63];
		out[o++] = b64url[v >> 6 & 63];
		out[o++] = b64url[v & 63];
	}
	out[o++] = b64url[m[15] >> 2];
	out[o++] = b64url[(m[15] & 3) << 4];
	out[o] = '\0';
}

void ng_reports_ref(const unsigned char *secret, size_t secret_len, int64_t customer_id,
                    char out[NG_REPORTS_REF_MAX])
{
	char m[23];
	ref_mac(secret, secret_len, customer_id, m);
	snprintf(out, NG_REPORTS_REF_MAX, "n%lld-%s", (long long)customer_id, m);
}

int ng_reports_ref_parse(const unsigned char *secret, size_t secret_len, const char *ref,
                         int64_t *customer_id)
{
	if (!ref || ref[0] != 'n' || ref[1] < '1' || ref[1] > '9')
		return -EINVAL;
	size_t nd = strspn(ref + 1, "0123456789");
	if (nd > 18 || ref[1 + nd] != '-' || strlen(ref + 2 + nd) != 22)
		return -EINVAL;
	int64_t cid = strtoll(ref + 1, NULL, 10);
	char m[23];
	ref_mac(secret, secret_len, cid, m);
	if (CRYPTO_memcmp(m, ref + 2 + nd, 22) != 0)
		return -EINVAL;
	*customer_id = cid;
	return 0;
}

/* ---- the statements -------------------------------------------------------------------------- */

static void call_end(struct call *c, int status)
{
	struct ng_reports *r = c->r;
	c->done(c->done_arg, status);
	free(c);
	if (--r->outstanding == 0 && r->closed) {
		void (*closed)(void *) = r->closed;
		void *arg = r->closed_arg;
		OPENSSL_cleanse(r->secret, r->secret_len);
		free(r->secret);
		free(r);
		closed(arg);
	}
}

static void on_done(const struct ng_db_result *res, void *arg)
{
	struct call *c = arg;
	if (res->status == NG_EDB && strcmp(res->sqlstate, "NGIN1") == 0) {
		/* The same event was recorded by a concurrent delivery: it is kept. */
		call_end(c, 0);
		return;
	}
	if (res->status) {
		ng_warn("reports", "%s not recorded: %s", c->what, res->message);
		call_end(c, res->status == NG_ETIMEDOUT ? -ETIMEDOUT : -EIO);
		return;
	}
	const char *v = res->res && PQntuples(res->res) == 1 ? PQgetvalue(res->res, 0, 0) : "";
	if (c->kind == 's') {
		if (strcmp(v, "unknown") == 0)
			ng_info("reports", "%s: no such message", c->what);
		else
			ng_debug("reports", "%s: %s", c->what, v);
	} else if (c->kind == 'c') {
		json_t *j = json_loads(v, 0, NULL);
		const char *st = json_string_value(json_object_get(j, "status"));
		if (st && strcmp(st, "unknown") == 0)
			ng_info("reports", "%s: the address is no customer's; nothing recorded",
			        c->what);
		else if (st && strcmp(st, "recorded") == 0)
			ng_info("reports", "%s: customer %lld, %lld queued message(s) cancelled",
			        c->what,
			        (long long)json_integer_value(json_object_get(j, "customer_id")),
			        (long long)json_integer_value(json_object_get(j, "cancelled")));
		json_decref(j);
	} else {
		json_t *j = json_loads(v, 0, NULL);
		if (json_is_true(json_object_get(j, "linked")))
			ng_info("reports", "%s: linked to customer %lld", c->what,
			        (long long)json_integer_value(json_object_get(j, "customer_id")));
		json_decref(j);
	}
	call_end(c, 0);
}

static int submit(struct ng_reports *r, char kind, const char *what, const char *sql, int n,
                  const char *const *params, void (*done)(void *, int), void *done_arg)
{
	struct call *c = ng_xcalloc(1, sizeof *c);
	*c = (struct call){.r = r, .kind = kind, .done = done, .done_arg = done_arg};
	snprintf(c->what, sizeof c->what, "%s", what);
	int rc = ng_db_query(r->db, sql, n, params, on_done, c);
	if (rc) {
		free(c);
		return rc == NG_ECLOSING ? -ESHUTDOWN : -EIO;
	}
	r->outstanding++;
	return 0;
}

static const char *const delivery_words[] = {NULL,        "queued",      "sent",
                                             "delivered", "undelivered", "failed"};

static int on_status(void *ctx, struct ng_plugin *p, const struct nudge_status_report *s,
                     void (*done)(void *, int), void *done_arg)
{
	if (s->status < NUDGE_DELIVERY_QUEUED || s->status > NUDGE_DELIVERY_FAILED ||
	    (!s->provider_id && !s->message_key))
		return -EINVAL;
	char code[16], what[96];
	snprintf(code, sizeof code, "%d", (int)s->error_code);
	snprintf(what, sizeof what, "%s status %s of %.40s", ng_plugin_name(p),
	         delivery_words[s->status], s->provider_id ? s->provider_id : s->message_key);
	const char *params[7] = {s->provider_id,     s->message_key, delivery_words[s->status],
	                         s->provider_status, code,           s->suppress ? "t" : "f",
	                         ng_plugin_name(p)};
	return submit(ctx, 's', what, "SELECT ng_report_status($1, $2, $3, $4, $5, $6, $7)", 7,
	              params, done, done_arg);
}

static int on_consent(void *ctx, struct ng_plugin *p, const struct nudge_consent_report *s,
                      void (*done)(void *, int), void *done_arg)
{
	if (!s->channel || !s->address || !*s->address)
		return -EINVAL;
	char what[96];
	snprintf(what, sizeof what, "%s consent %s on %s (%s)", ng_plugin_name(p),
	         s->granted ? "given" : "withdrawn", s->channel,
	         s->keyword  ? s->keyword
	         : s->source ? s->source
	                     : "no keyword");
	const char *params[7] = {s->channel, s->address,     s->granted ? "t" : "f", s->keyword,
	                         s->source,  s->provider_id, ng_plugin_name(p)};
	return submit(ctx, 'c', what, "SELECT ng_report_consent($1, $2, $3, $4, $5, $6, $7)", 7,
	              params, done, done_arg);
}

static void iso_ms(int64_t ms, char out[40])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 40 - n, ".%03dZ", (int)(ms % 1000));
}

static int on_event(void *ctx, struct ng_plugin *p, const struct nudge_event_report *s,
                    void (*done)(void *, int), void *done_arg)
{
	struct ng_reports *r = ctx;
	if (!s->name || !*s->name || !s->channel || !s->address || !*s->address)
		return -EINVAL;
	json_t *props =
	    s->properties_json ? json_loads(s->properties_json, 0, NULL) : json_object();
	if (!json_is_object(props)) {
		json_decref(props);
		return -EINVAL;
	}
	int v12 = s->struct_size >= sizeof *s;
	const char *ref = v12 ? s->customer_ref : NULL;
	int64_t cid = 0;
	if (ref && ng_reports_ref_parse(r->secret, r->secret_len, ref, &cid) != 0) {
		ng_warn("reports", "%s: a %s event carries a ref nudge did not sign; ignored",
		        ng_plugin_name(p), s->name);
		cid = 0;
	}
	char at[40] = "";
	if (s->occurred_ms > 0)
		iso_ms(s->occurred_ms, at);
	json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:s?, s:o}", "instance", ng_plugin_name(p),
	                       "name", s->name, "channel", s->channel, "address", s->address,
	                       "dedupe_key", s->dedupe_key, "properties", props);
	if (!ev) /* not UTF-8: jansson refused a string (and released props) */
		return -EINVAL;
	if (at[0])
		json_object_set_new(ev, "occurred_at", json_string(at));
	if (cid > 0)
		json_object_set_new(ev, "ref_customer_id", json_integer(cid));
	if (v12 && s->customer_email)
		json_object_set_new(ev, "customer_email", json_string(s->customer_email));
	if (v12 && s->customer_phone)
		json_object_set_new(ev, "customer_phone", json_string(s->customer_phone));
	char *text = json_dumps(ev, JSON_COMPACT);
	json_decref(ev);
	char what[96];
	snprintf(what, sizeof what, "%s event %s", ng_plugin_name(p), s->name);
	const char *params[1] = {text};
	int rc =
	    submit(r, 'e', what, "SELECT ng_report_event($1::jsonb)", 1, params, done, done_arg);
	free(text);
	return rc;
}

struct ng_reports *ng_reports_open(ng_db *db, struct ng_plugin_host *h, const unsigned char *secret,
                                   size_t secret_len)
{
	struct ng_reports *r = ng_xcalloc(1, sizeof *r);
	r->db = db;
	r->host = h;
	r->secret = ng_xmalloc(secret_len ? secret_len : 1);
	memcpy(r->secret, secret, secret_len);
	r->secret_len = secret_len;
	struct ng_plugin_reports rec = {r, on_status, on_consent, on_event};
	ng_plugin_host_set_reports(h, &rec);
	return r;
}

void ng_reports_close(struct ng_reports *r, void (*done)(void *arg), void *arg)
{
	struct ng_plugin_reports none = {0};
	ng_plugin_host_set_reports(r->host, &none);
	r->closed = done;
	r->closed_arg = arg;
	if (r->outstanding > 0)
		return;
	OPENSSL_cleanse(r->secret, r->secret_len);
	free(r->secret);
	free(r);
	done(arg);
}
