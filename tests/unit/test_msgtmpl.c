/*
 * test_msgtmpl.c — the shipped message templates and the template set: every template a shipped
 * workflow sends exists and renders against the fixtures (the Shopify checkout mapped by
 * contrib/mappers/shopify.lua, as the abandoned-cart workflow stores it, for the cart reminder; the
 * mapped Shopify order for the order emails; a customer for the rest); `nudge check templates/` is
 * clean; broken templates are reported with file:line:column; SMS sizing.
 */
#include "intake_map.h"
#include "msgtmpl.h"
#include "msgtmpl_int.h"
#include "ng.h"
#include "testlib.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *top(void)
{
	const char *t = getenv("NUDGE_TEST_TOP");
	return t ? t : ".";
}

static struct ng_msgtmpl_set *open_shipped(void)
{
	char dir[1024], err[1024];
	snprintf(dir, sizeof dir, "%s/templates", top());
	struct ng_msgtmpl_set *set;
	if (ng_msgtmpl_open(dir, &set, err, sizeof err) != 0)
		ng_test_fail(__FILE__, __LINE__, "open %s: %s", dir, err);
	return set;
}

/* The first event the Shopify mapper makes of a fixture. */
static json_t *mapped(const char *fixture, const char *topic)
{
	char p[1024], err[1024];
	snprintf(p, sizeof p, "%s/../shared/fixtures/shopify/%s", top(), fixture);
	json_error_t je;
	json_t *payload = json_load_file(p, 0, &je);
	if (!payload)
		ng_test_fail(__FILE__, __LINE__, "%s: %s", p, je.text);
	snprintf(p, sizeof p, "%s/contrib/mappers", top());
	struct ng_intake_options o = {.default_country_code = "1"};
	struct ng_intake_mapper *m;
	if (ng_intake_mapper_load(p, "shopify", &o, &m, err, sizeof err) != 0)
		ng_test_fail(__FILE__, __LINE__, "mapper: %s", err);
	struct ng_intake_header h[] = {{"X-Shopify-Topic", topic},
	                               {"X-Shopify-Shop-Domain", "example.myshopify.com"},
	                               {"X-Shopify-Event-Id", "8f1c2b44"}};
	json_t *events = NULL;
	if (ng_intake_map(m, topic, h, 3, payload, &events, err, sizeof err) != 0)
		ng_test_fail(__FILE__, __LINE__, "map %s: %s", fixture, err);
	json_t *ev = json_incref(json_array_get(events, 0));
	json_decref(events);
	json_decref(payload);
	ng_intake_mapper_free(m);
	return ev;
}

/* What the dispatcher passes (core/msgdata.c): the snapshot plus customer, store, message,
 * unsubscribe_url. */
static json_t *message_data(json_t *event, const char *key, json_t *snapshot)
{
	json_t *d = snapshot ? snapshot : json_object();
	json_t *cust = json_deep_copy(event ? json_object_get(event, "customer") : NULL);
	if (!cust)
		cust = json_pack("{s:s,s:s}", "email", "ada@example.com", "first_name", "Ada");
	json_object_set_new(cust, "timezone", json_string("America/New_York"));
	json_object_set_new(cust, "locale", json_string("en"));
	json_object_set_new(d, "customer", cust);
	json_object_set_new(d, "store",
	                    json_pack("{s:s,s:s,s:s,s:s}", "name", "Example Store",
	                              "postal_address", "150 Elgin Street, Ottawa ON K2P 1L4",
	                              "base_url", "https://shop.example.com", "timezone",
	                              "America/Toronto"));
	json_object_set_new(d, "message",
	                    json_pack("{s:s,s:s,s:s}", "id", "m-1", "key", key, "view_url",
	                              "https://shop.example.com/m/m-1"));
	json_object_set_new(d, "unsubscribe_url", json_string("https://shop.example.com/u/m-1"));
	return d;
}

static void render_ok(const struct ng_msgtmpl_set *set, const char *name, json_t *data,
                      struct ng_rendered_message *m)
{
	char err[1024];
	if (ng_msgtmpl_render(set, name, data, m, err, sizeof err) != 0)
		ng_test_fail(__FILE__, __LINE__, "render %s: %s", name, err);
}

static void assert_email_frame(const struct ng_rendered_message *m)
{
	ASSERT_EQ_STR(m->channel, "email");
	ASSERT(m->subject && *m->subject);
	ASSERT(m->html && m->text);
	ASSERT_CONTAINS(m->html, "<table");
	ASSERT_CONTAINS(m->html, "150 Elgin Street");
	ASSERT_CONTAINS(m->html, "https://shop.example.com/m/m-1"); /* view in browser */
	ASSERT_CONTAINS(m->text, "150 Elgin Street");
	ASSERT(!strstr(m->html, "Liquid error"));
	if (!strcmp(m->purpose, "marketing")) {
		ASSERT_CONTAINS(m->html, "https://shop.example.com/u/m-1");
		ASSERT_CONTAINS(m->text, "Unsubscribe: https://shop.example.com/u/m-1");
	}
}

static void test_cart_reminder_from_shopify_checkout(void)
{
	struct ng_msgtmpl_set *set = open_shipped();
	json_t *ev = mapped("checkouts_create.json", "checkouts/create");
	/* workflows/abandoned_cart.lua sends data = { cart = ctx.event.data } */
	json_t *data = message_data(ev, "cart_reminder",
	                            json_pack("{s:O}", "cart", json_object_get(ev, "data")));
	struct ng_rendered_message m;
	render_ok(set, "cart_reminder", data, &m);
	assert_email_frame(&m);
	ASSERT_EQ_STR(m.purpose, "marketing");
	ASSERT_EQ_STR(m.subject, "John, you left something in your cart");
	ASSERT_EQ_STR(m.from_name, "Example Store");
	ASSERT_CONTAINS(m.preheader, "Your 2 items are still waiting");
	ASSERT_CONTAINS(m.html, "IPod Nano - 8GB");
	ASSERT_CONTAINS(m.html, "$199.00");
	ASSERT_CONTAINS(m.html, "Total $421.88");
	ASSERT_CONTAINS(m.html, "recover?key=example-secret-token&amp;utm_source=nudge&amp;"
	                        "utm_medium=email&amp;utm_campaign=cart_reminder");
	ASSERT_CONTAINS(m.text, "- IPod Nano - 8GB (Pink) × 1: $199.00");
	ASSERT_CONTAINS(m.text, "Total: $421.88");
	ng_msgtmpl_rendered_free(&m);

	struct ng_sms_info si;
	render_ok(set, "cart_reminder_sms", data, &m);
	ASSERT_EQ_STR(m.channel, "sms");
	ASSERT_CONTAINS(m.body, "Example Store: John, your cart is waiting.");
	ASSERT_CONTAINS(m.body, "utm_medium=sms");
	ASSERT_CONTAINS(m.body, "STOP");
	ng_msgtmpl_sms_info(m.body, &si);
	ASSERT_EQ_INT(si.ucs2, 0);
	ng_msgtmpl_rendered_free(&m);
	json_decref(data);
	json_decref(ev);
	ng_msgtmpl_close(set);
}

static void test_order_emails_from_shopify_order(void)
{
	struct ng_msgtmpl_set *set = open_shipped();
	json_t *ev = mapped("orders_create.json", "orders/create");
	json_t *order = json_object_get(ev, "data");
	json_t *data = message_data(ev, "order_thanks", json_pack("{s:O}", "order", order));
	struct ng_rendered_message m;
	render_ok(set, "order_thanks", data, &m);
	assert_email_frame(&m);
	ASSERT_EQ_STR(m.purpose, "transactional");
	ASSERT_CONTAINS(m.subject, "Thank you for your order #");
	json_t *li = json_array_get(json_object_get(order, "line_items"), 0);
	ASSERT_CONTAINS(m.html, json_string_value(json_object_get(li, "title")));
	/* A transactional email carries no unsubscribe link. */
	json_object_del(data, "unsubscribe_url");
	ng_msgtmpl_rendered_free(&m);
	render_ok(set, "order_thanks", data, &m);
	ASSERT(!strstr(m.html, "Unsubscribe"));
	ng_msgtmpl_rendered_free(&m);
	json_decref(data);

	data = message_data(ev, "review_request",
	                    json_pack("{s:O}", "order_id", json_object_get(order, "order_id")));
	render_ok(set, "review_request", data, &m);
	assert_email_frame(&m);
	ASSERT_CONTAINS(m.html, "/reviews/new?order=");
	ng_msgtmpl_rendered_free(&m);
	json_decref(data);
	json_decref(ev);
	ng_msgtmpl_close(set);
}

static void test_customer_emails(void)
{
	struct ng_msgtmpl_set *set = open_shipped();
	json_t *ev = mapped("customers_create.json", "customers/create");
	const char *emails[] = {"welcome",  "welcome_tips", "welcome_offer",
	                        "birthday", "we_miss_you",  "last_chance"};
	for (size_t i = 0; i < NG_ARRAY_LEN(emails); i++) {
		json_t *data = message_data(ev, emails[i], json_pack("{s:s}", "code", "GIFT-2024"));
		struct ng_rendered_message m;
		render_ok(set, emails[i], data, &m);
		assert_email_frame(&m);
		if (strcmp(emails[i], "welcome") && strcmp(emails[i], "welcome_tips"))
			ASSERT_CONTAINS(m.html, "GIFT-2024");
		ng_msgtmpl_rendered_free(&m);
		json_decref(data);
	}
	/* A customer without a first name still reads well. */
	json_t *data = message_data(NULL, "welcome", NULL);
	json_object_del(json_object_get(data, "customer"), "first_name");
	struct ng_rendered_message m;
	render_ok(set, "welcome", data, &m);
	ASSERT_EQ_STR(m.subject, "Welcome to Example Store!");
	ng_msgtmpl_rendered_free(&m);
	json_decref(data);
	data = message_data(ev, "birthday_sms", json_pack("{s:s}", "code", "GIFT-2024"));
	render_ok(set, "birthday_sms", data, &m);
	ASSERT_CONTAINS(m.body, "GIFT-2024");
	ng_msgtmpl_rendered_free(&m);
	json_decref(data);
	json_decref(ev);
	ng_msgtmpl_close(set);
}

/* Every `template = "..."` a shipped workflow sends has a template. */
static void test_workflow_templates_exist(void)
{
	struct ng_msgtmpl_set *set = open_shipped();
	const char *wfs[] = {"abandoned_cart", "birthday", "post_purchase", "reengagement",
	                     "welcome_series"};
	int found = 0;
	for (size_t i = 0; i < NG_ARRAY_LEN(wfs); i++) {
		char p[1024];
		snprintf(p, sizeof p, "%s/workflows/%s.lua", top(), wfs[i]);
		FILE *f = fopen(p, "r");
		ASSERT(f);
		char line[1024];
		while (fgets(line, sizeof line, f)) {
			char *t = strstr(line, "template = \"");
			if (!t)
				continue;
			t += 12;
			char *e = strchr(t, '"');
			ASSERT(e);
			*e = 0;
			if (!ng_msgtmpl_has(set, t))
				ng_test_fail(__FILE__, __LINE__, "%s sends '%s': no such template",
				             p, t);
			found++;
		}
		fclose(f);
	}
	ASSERT_CMP_INT(found, >=, 11);
	ASSERT(!ng_msgtmpl_has(set, "no_such_template"));
	ng_msgtmpl_close(set);
}

struct lines {
	char buf[8192];
};

static void collect(void *ud, const char *line)
{
	struct lines *l = ud;
	strncat(l->buf, line, sizeof l->buf - strlen(l->buf) - 2);
	strcat(l->buf, "\n");
}

static void test_check_shipped_is_clean(void)
{
	char dir[1024], sample[1024];
	snprintf(dir, sizeof dir, "%s/templates", top());
	snprintf(sample, sizeof sample, "%s/templates/samples/sample.json", top());
	json_t *s = json_load_file(sample, 0, NULL);
	ASSERT(s);
	struct lines l = {0};
	int n = ng_msgtmpl_check(dir, s, collect, &l);
	if (n)
		ng_test_fail(__FILE__, __LINE__, "%d problems:\n%s", n, l.buf);
	ASSERT_CONTAINS(l.buf, "cart_reminder_sms.liquid: sms GSM-7");
	ASSERT_CONTAINS(l.buf, "birthday_sms.liquid: sms GSM-7");
	json_decref(s);
}

/* The command itself: the nudge binary beside this test binary (BUILD/tests/../nudge). */
static void test_nudge_check_command(void)
{
	char exe[1024];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	ASSERT(n > 0);
	exe[n] = 0;
	*strrchr(exe, '/') = 0;
	char cmd[4096];
	snprintf(cmd, sizeof cmd, "%s/../nudge check %s/templates/ >/dev/null", exe, top());
	ASSERT_EQ_INT(system(cmd), 0);
	snprintf(cmd, sizeof cmd, "%s/../nudge check %s/workflows/ >/dev/null", exe, top());
	ASSERT_EQ_INT(system(cmd), 0);
	snprintf(cmd, sizeof cmd,
	         "%s/../nudge render cart_reminder_sms --dir %s/templates --data "
	         "%s/templates/samples/sample.json | grep -q 'SMS: GSM-7'",
	         exe, top(), top());
	ASSERT_EQ_INT(system(cmd), 0);
}

static char tmpdir[64];

static void put(const char *name, const char *content)
{
	char p[256];
	snprintf(p, sizeof p, "%s/%s", tmpdir, name);
	FILE *f = fopen(p, "w");
	ASSERT(f);
	fputs(content, f);
	fclose(f);
}

static void make_set(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/nudge-tmpl.XXXXXX");
	ASSERT(mkdtemp(tmpdir));
	char p[256];
	snprintf(p, sizeof p, "%s/layouts", tmpdir);
	mkdir(p, 0700);
	snprintf(p, sizeof p, "%s/partials", tmpdir);
	mkdir(p, 0700);
	put("layouts/email.html.liquid",
	    "<body>{{ content }}<a href=\"{{ unsubscribe_url }}\">u</a>");
	put("layouts/email.text.liquid", "{{ content }}\n{{ unsubscribe_url }}");
}

static void test_check_reports_problems(void)
{
	make_set();
	put("a.liquid", "---\nchannel: email\nsubject: Hi\n---\n{% part html %}\nline one\n"
	                "  {{ name | }}\n{% endpart %}\n");
	put("b.liquid", "---\nchannel: email\nsubject: Hi {{ x | shout }}\n---\n"
	                "{% part html %}\n{% render 'nothere' %}\n{% endpart %}\n");
	put("c.liquid", "---\nchannel: sms\ncolour: red\n---\nÜnïcödé — "
	                "{% for i in (1..80) %}é{% endfor %}\n");
	put("d.liquid", "no front matter\n");
	struct lines l = {0};
	json_t *s = json_object();
	int n = ng_msgtmpl_check(tmpdir, s, collect, &l);
	ASSERT_CMP_INT(n, >=, 5);
	char want[512];
	snprintf(want, sizeof want, "%s/a.liquid:7:3: Liquid syntax error (line 7): Expected id",
	         tmpdir);
	ASSERT_CONTAINS(l.buf, want);
	snprintf(want, sizeof want, "%s/b.liquid:3:", tmpdir);
	ASSERT_CONTAINS(l.buf, want);
	ASSERT_CONTAINS(l.buf, "Unknown filter 'shout'");
	snprintf(want, sizeof want, "%s/b.liquid:6:1: missing partial 'nothere'", tmpdir);
	ASSERT_CONTAINS(l.buf, want);
	snprintf(want, sizeof want, "%s/c.liquid:3:1: unknown front matter key 'colour'", tmpdir);
	ASSERT_CONTAINS(l.buf, want);
	ASSERT_CONTAINS(l.buf, "d.liquid:1:1: a template starts with front matter");
	/* open refuses the broken set with the first problem. */
	struct ng_msgtmpl_set *set;
	char err[1024];
	ASSERT_EQ_INT(ng_msgtmpl_open(tmpdir, &set, err, sizeof err), -EINVAL);
	ASSERT_CONTAINS(err, tmpdir);
	/* The SMS alone, fixed: UCS-2 sizing. */
	put("c.liquid", "---\nchannel: sms\n---\nÜnïcödé — {% for i in (1..80) %}é{% endfor %}");
	memset(&l, 0, sizeof l);
	char one[256];
	snprintf(one, sizeof one, "%s/c.liquid", tmpdir);
	ASSERT_EQ_INT(ng_msgtmpl_check(one, s, collect, &l), 0);
	ASSERT_CONTAINS(l.buf, "sms UCS-2, 90 characters, 2 segments");
	json_decref(s);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
	ASSERT_EQ_INT(system(cmd), 0);
}

static void test_marketing_email_needs_unsubscribe(void)
{
	struct ng_msgtmpl_set *set = open_shipped();
	json_t *data = message_data(NULL, "welcome", NULL);
	json_object_del(data, "unsubscribe_url");
	struct ng_rendered_message m;
	char err[512];
	ASSERT_EQ_INT(ng_msgtmpl_render(set, "welcome", data, &m, err, sizeof err), -EINVAL);
	ASSERT_CONTAINS(err, "unsubscribe_url");
	ASSERT_EQ_INT(ng_msgtmpl_render(set, "nope", data, &m, err, sizeof err), -ENOENT);
	json_decref(data);
	ng_msgtmpl_close(set);
}

static void test_sms_sizing(void)
{
	struct ng_sms_info si;
	char buf[400];
	memset(buf, 'a', 160);
	buf[160] = 0;
	ng_msgtmpl_sms_info(buf, &si);
	ASSERT_EQ_INT(si.segments, 1);
	ASSERT_EQ_INT(si.ucs2, 0);
	strcat(buf, "a");
	ng_msgtmpl_sms_info(buf, &si);
	ASSERT_EQ_INT(si.segments, 2);
	/* The extension table costs two septets; an emoji forces UCS-2 (two UTF-16 units). */
	ng_msgtmpl_sms_info("€{}", &si);
	ASSERT_EQ_INT(si.units, 6);
	ASSERT_EQ_INT(si.ucs2, 0);
	ng_msgtmpl_sms_info("Hi 🎂", &si);
	ASSERT_EQ_INT(si.ucs2, 1);
	ASSERT_EQ_INT(si.units, 5);
}

NG_TESTS(NG_TEST(test_cart_reminder_from_shopify_checkout),
         NG_TEST(test_order_emails_from_shopify_order), NG_TEST(test_customer_emails),
         NG_TEST(test_workflow_templates_exist), NG_TEST(test_check_shipped_is_clean),
         NG_TEST(test_check_reports_problems), NG_TEST(test_marketing_email_needs_unsubscribe),
         NG_TEST(test_sms_sizing), NG_TEST(test_nudge_check_command))
