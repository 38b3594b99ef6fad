/*
 * messenger.c — the Facebook Messenger channel plugin: its descriptor and configuration, init and
 * shutdown, health, and the table of each person's last interaction.
 *
 * Messenger's policy is the 24-hour standard messaging window: a page may message a person freely
 * (promotions included) for 24 hours after that person's last message, button press or link
 * follow; afterwards only with a message tag, and tags may not carry promotional content. The
 * window starts on the page's side of the conversation, so the only way to know it is the webhook:
 * every interaction it reports is recorded here, per PSID. The table lives in memory; after a
 * restart nobody is known to be inside the window until they interact again, which refuses
 * promotions rather than sending ones Meta would refuse (and count against the page).
 */
#include "messenger.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const channels[] = {"messenger", NULL};

static const struct nudge_config_key keys[] = {
    {"page_access_token", NUDGE_CONFIG_STRING, 1, NULL,
     "the Page access token (from a user with the MESSAGE task on the page)"},
    {"app_secret", NUDGE_CONFIG_STRING, 1, NULL,
     "the app secret: signs appsecret_proof and checks X-Hub-Signature-256 on webhooks"},
    {"verify_token", NUDGE_CONFIG_STRING, 1, NULL,
     "the Verify Token typed into the app dashboard's webhook set-up"},
    {"page_id", NUDGE_CONFIG_STRING, 0, NULL,
     "the page's id; webhook entries for another page are ignored (none: every entry counts)"},
    {"graph_version", NUDGE_CONFIG_STRING, 0, "v25.0", "the Graph API version, vNN.N"},
    {"base_url", NUDGE_CONFIG_STRING, 0, "https://graph.facebook.com",
     "the Graph API's base URL (a test stand-in)"},
    {"window_hours", NUDGE_CONFIG_INT, 0, "24",
     "the standard messaging window after a person's last interaction (24; up to 168 for "
     "click-to-Messenger ads)"},
    {"transient_attempts", NUDGE_CONFIG_INT, 0, "5",
     "attempts after which Graph's temporary error (code 2) fails the message"},
    {"timeout_ms", NUDGE_CONFIG_INT, 0, "15000",
     "a Send API request taking longer is abandoned (the send is then ambiguous)"},
    {"ca_file", NUDGE_CONFIG_STRING, 0, NULL, "PEM file of CA certificates to trust"},
    {NULL, 0, 0, NULL, NULL},
};

/* ---- small helpers -------------------------------------------------------------------------- */

void ms_buf_add(struct ms_buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->s, cap);
		if (!p)
			abort();
		b->s = p;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

void ms_buf_str(struct ms_buf *b, const char *s)
{
	ms_buf_add(b, s, strlen(s));
}

void ms_urlencode(struct ms_buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		    (*c >= '0' && *c <= '9') || *c == '-' || *c == '_' || *c == '.' || *c == '~') {
			ms_buf_add(b, (const char *)c, 1);
		} else {
			char e[3] = {'%', hex[*c >> 4], hex[*c & 15]};
			ms_buf_add(b, e, 3);
		}
	}
}

void ms_hmac_hex(const char *key, const void *data, size_t len, char out[MS_HEX_SHA256])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[32];
	unsigned int mdlen = sizeof md;
	/* An empty body is a valid message; HMAC wants a non-NULL pointer for it. */
	HMAC(EVP_sha256(), key, (int)strlen(key), data ? data : (const void *)"", len, md, &mdlen);
	for (unsigned i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = '\0';
}

/* ---- the window table ----------------------------------------------------------------------- */

static size_t psid_hash(const char *s)
{
	size_t h = 5381;
	for (; *s; s++)
		h = h * 33 + (unsigned char)*s;
	return h;
}

static struct ms_person *find_person(const struct ms_inst *inst, const char *psid)
{
	if (!inst->people_cap || !psid)
		return NULL;
	for (struct ms_person *p = inst->people[psid_hash(psid) % inst->people_cap]; p; p = p->next)
		if (strcmp(p->psid, psid) == 0)
			return p;
	return NULL;
}

/* Doubles the buckets once there are more people than buckets. */
static void grow(struct ms_inst *inst)
{
	size_t cap = inst->people_cap ? inst->people_cap * 2 : 256;
	struct ms_person **b = calloc(cap, sizeof *b);
	if (!b)
		abort();
	for (size_t i = 0; i < inst->people_cap; i++) {
		while (inst->people[i]) {
			struct ms_person *p = inst->people[i];
			inst->people[i] = p->next;
			size_t k = psid_hash(p->psid) % cap;
			p->next = b[k];
			b[k] = p;
		}
	}
	free(inst->people);
	inst->people = b;
	inst->people_cap = cap;
}

int64_t ms_last_seen(const struct ms_inst *inst, const char *psid)
{
	const struct ms_person *p = find_person(inst, psid);
	return p ? p->last_ms : 0;
}

void ms_seen(struct ms_inst *inst, const char *psid, int64_t at_ms)
{
	struct ms_person *p = find_person(inst, psid);
	if (!p) {
		if (inst->npeople >= inst->people_cap)
			grow(inst);
		p = calloc(1, sizeof *p);
		if (!p || !(p->psid = strdup(psid)))
			abort();
		size_t k = psid_hash(psid) % inst->people_cap;
		p->next = inst->people[k];
		inst->people[k] = p;
		inst->npeople++;
	}
	if (at_ms > p->last_ms)
		p->last_ms = at_ms;
}

void ms_forget_window(struct ms_inst *inst, const char *psid)
{
	struct ms_person *p = find_person(inst, psid);
	if (p)
		p->last_ms = 0;
}

static void free_people(struct ms_inst *inst)
{
	for (size_t i = 0; i < inst->people_cap; i++) {
		while (inst->people[i]) {
			struct ms_person *p = inst->people[i];
			inst->people[i] = p->next;
			free(p->psid);
			free(p);
		}
	}
	free(inst->people);
}

/* ---- items ---------------------------------------------------------------------------------- */

void ms_link(struct ms_item **list, struct ms_item *it)
{
	it->prev = NULL;
	it->next = *list;
	if (*list)
		(*list)->prev = it;
	*list = it;
}

void ms_unlink(struct ms_item **list, struct ms_item *it)
{
	if (it->prev)
		it->prev->next = it->next;
	else
		*list = it->next;
	if (it->next)
		it->next->prev = it->prev;
	it->prev = it->next = NULL;
}

void ms_complete(struct ms_item *it, const struct nudge_send_result *r)
{
	struct nudge_send_result res = *r;
	res.struct_size = sizeof res;
	it->done(it->done_arg, &res);
	free(it);
}

static void deliver_early(struct ms_item *it)
{
	struct nudge_send_result r = {
	    .struct_size = sizeof r,
	    .status = it->early_status,
	    .code = it->early_code,
	    .reason = it->early_reason,
	};
	ms_complete(it, &r);
}

static void on_early(void *arg)
{
	struct ms_item *it = arg;
	struct ms_inst *inst = it->inst;
	it->early_timer = NULL;
	ms_unlink(&inst->early, it);
	deliver_early(it);
	ms_maybe_finish(inst);
}

void ms_complete_later(struct ms_item *it, int status, int code, const char *reason)
{
	struct ms_inst *inst = it->inst;
	it->early_status = status;
	it->early_code = code;
	snprintf(it->early_reason, sizeof it->early_reason, "%s", reason);
	ms_link(&inst->early, it);
	it->early_timer = inst->host->timer_start(inst->self, 0, on_early, it);
}

/* ---- the callbacks -------------------------------------------------------------------------- */

static int version_ok(const char *v)
{
	/* "v25.0", "v3.3": Graph rejects anything else with a confusing 400. */
	if (v[0] != 'v' || v[1] < '1' || v[1] > '9')
		return 0;
	size_t d = strspn(v + 1, "0123456789");
	if (v[1 + d] != '.' || !v[2 + d])
		return 0;
	return strspn(v + 2 + d, "0123456789") == strlen(v + 2 + d);
}

static int ms_init(const struct nudge_host *host, struct nudge_instance *self, void **state,
                   char *err, size_t errlen)
{
	if (host->abi_minor < 1 || !host->report_event) {
		snprintf(err, errlen,
		         "this nudge is too old for the messenger plugin (needs ABI 1.1)");
		return -ENOTSUP;
	}
	struct ms_inst *inst = calloc(1, sizeof *inst);
	if (!inst)
		return -ENOMEM;
	inst->host = host;
	inst->self = self;
	inst->token = host->config_string(self, "page_access_token");
	inst->app_secret = host->config_string(self, "app_secret");
	inst->verify_token = host->config_string(self, "verify_token");
	inst->page_id = host->config_string(self, "page_id");
	inst->ca_file = host->config_string(self, "ca_file");
	int64_t hours = host->config_int(self, "window_hours");
	inst->timeout_ms = host->config_int(self, "timeout_ms");
	inst->max_attempts_transient = (int)host->config_int(self, "transient_attempts");
	const char *version = host->config_string(self, "graph_version");
	const char *base = host->config_string(self, "base_url");

	const char *problem = NULL;
	if (!*inst->token)
		problem = "page_access_token is empty";
	else if (!*inst->app_secret)
		problem = "app_secret is empty";
	else if (!*inst->verify_token)
		problem = "verify_token is empty";
	else if (!version_ok(version))
		problem = "graph_version must look like v25.0";
	else if (strncmp(base, "https://", 8) != 0 && strncmp(base, "http://", 7) != 0)
		problem = "base_url must start with https:// (or http:// for a test stand-in)";
	else if (hours < 1 || hours > 168)
		problem = "window_hours must be between 1 and 168";
	else if (inst->timeout_ms < 1000)
		problem = "timeout_ms must be at least 1000";
	else if (inst->max_attempts_transient < 1)
		problem = "transient_attempts must be at least 1";
	if (problem) {
		snprintf(err, errlen, "%s", problem);
		free(inst);
		return -EINVAL;
	}
	inst->window_ms = hours * 3600 * 1000;
	if (!(inst->version = strdup(version)))
		abort();

	/* The token and its proof ride in the query string, as Graph documents; the URL is never
	 * logged. */
	char proof[MS_HEX_SHA256];
	ms_hmac_hex(inst->app_secret, inst->token, strlen(inst->token), proof);
	size_t bl = strlen(base);
	while (bl > 0 && base[bl - 1] == '/')
		bl--;
	struct ms_buf u = {0};
	ms_buf_add(&u, base, bl);
	ms_buf_str(&u, "/");
	ms_buf_str(&u, version);
	ms_buf_str(&u, "/me/messages?access_token=");
	ms_urlencode(&u, inst->token);
	ms_buf_str(&u, "&appsecret_proof=");
	ms_buf_str(&u, proof);
	inst->messages_url = u.s;
	if (host->abi_minor < 2)
		host->log(self, NUDGE_LOG_WARN,
		          "this nudge (ABI 1.%u) cannot link PSIDs to customers; refs, emails and "
		          "phone numbers from Messenger are recorded in events only",
		          host->abi_minor);
	host->log(self, NUDGE_LOG_INFO, "sending through %.*s/%s, a %lld-hour window", (int)bl,
	          base, version, (long long)hours);
	*state = inst;
	return 0;
}

static void ms_send(void *state, const struct nudge_message *msg, nudge_send_done_fn *done,
                    void *done_arg)
{
	struct ms_inst *inst = state;
	struct ms_item *it = calloc(1, sizeof *it);
	if (!it)
		abort();
	it->inst = inst;
	it->msg = msg;
	it->done = done;
	it->done_arg = done_arg;
	ms_start_send(it);
}

static void ms_health(void *state, struct nudge_health *out)
{
	struct ms_inst *inst = state;
	if (inst->token_refused) {
		out->status = NUDGE_HEALTH_DOWN;
		snprintf(out->detail, sizeof out->detail,
		         "Graph refused the page access token: %s; messages are held",
		         inst->last_problem);
	} else if (inst->restricted) {
		out->status = NUDGE_HEALTH_DOWN;
		snprintf(out->detail, sizeof out->detail,
		         "the page is restricted from sending: %s; messages are held",
		         inst->last_problem);
	} else {
		out->status = NUDGE_HEALTH_OK;
		snprintf(out->detail, sizeof out->detail, "%d requests in flight, %zu people known",
		         inst->n_in_flight, inst->npeople);
	}
}

void ms_maybe_finish(struct ms_inst *inst)
{
	if (!inst->stopping || inst->n_in_flight || inst->pending_inbound || inst->early)
		return;
	void (*done)(void *) = inst->shutdown_done;
	void *arg = inst->shutdown_arg;
	free_people(inst);
	free(inst->messages_url);
	free(inst->version);
	free(inst);
	done(arg);
}

/*
 * Requests in flight are waited for (at most timeout_ms): a send Graph may have accepted must come
 * back as what it was, not as a retry. Early results are delivered at once.
 */
static void ms_shutdown(void *state, void (*done)(void *arg), void *arg)
{
	struct ms_inst *inst = state;
	inst->stopping = 1;
	inst->shutdown_done = done;
	inst->shutdown_arg = arg;
	while (inst->early) {
		struct ms_item *it = inst->early;
		inst->host->timer_cancel(inst->self, it->early_timer);
		ms_unlink(&inst->early, it);
		deliver_early(it);
	}
	ms_maybe_finish(inst);
}

static const struct nudge_plugin descriptor = {
    .abi_major = NUDGE_PLUGIN_ABI_MAJOR,
    .abi_minor = NUDGE_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(struct nudge_plugin),
    .name = "messenger",
    .version = "1.0.0",
    .description = "Facebook Messenger through the Graph Send API, with the 24-hour window",
    .channels = channels,
    .config_keys = keys,
    .init = ms_init,
    .send = ms_send,
    .inbound = ms_inbound,
    .health = ms_health,
    .shutdown = ms_shutdown,
};

NUDGE_PLUGIN_EXPORT const struct nudge_plugin *nudge_plugin_entry(void)
{
	return &descriptor;
}
