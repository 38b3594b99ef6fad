/*
 * test_intake_map.c — the shipped mappers on the shipped fixtures (every Shopify topic and the
 * WooCommerce order): type, identity, consent, key, dedupe keys and data fields, compared with the
 * values read from the fixture files; the result codes (ignored, malformed, broken mapper); the
 * sandbox; the WooCommerce ping; the /v1/events format; time normalisation.
 */
#include "intake_map.h"
#include "testlib.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ng.h"

static const char *top(void)
{
	const char *t = getenv("NUDGE_TEST_TOP");
	return t ? t : ".";
}

static json_t *fixture(const char *rel)
{
	char p[1024];
	json_error_t e;
	snprintf(p, sizeof p, "%s/../shared/fixtures/%s", top(), rel);
	json_t *v = json_load_file(p, 0, &e);
	if (!v)
		ng_test_fail(__FILE__, __LINE__, "%s: %s", p, e.text);
	return v;
}

static struct ng_intake_mapper *load_from(const char *dir, const char *source, int strict)
{
	struct ng_intake_options o = {.default_country_code = "1", .strict = strict};
	struct ng_intake_mapper *m = NULL;
	char err[1024];
	if (ng_intake_mapper_load(dir, source, &o, &m, err, sizeof err) != 0)
		ng_test_fail(__FILE__, __LINE__, "load %s: %s", source, err);
	return m;
}

static struct ng_intake_mapper *load(const char *source)
{
	char dir[1024];
	snprintf(dir, sizeof dir, "%s/contrib/mappers", top());
	return load_from(dir, source, strcmp(source, "api") == 0);
}

/* Follows a path such as "data.line_items[1].title" (0-based indexes). */
static json_t *at(json_t *v, const char *path)
{
	char buf[256];
	snprintf(buf, sizeof buf, "%s", path);
	for (char *p = buf; v && *p;) {
		if (*p == '[') {
			v = json_array_get(v, strtoul(p + 1, &p, 10));
			p++; /* ']' */
		} else {
			if (*p == '.')
				p++;
			size_t n = strcspn(p, ".[");
			char save = p[n];
			p[n] = '\0';
			v = json_object_get(v, p);
			p[n] = save;
			p += n;
		}
	}
	return v;
}

static const char *str_at(json_t *v, const char *path)
{
	return json_string_value(at(v, path));
}

/* The decimal text of an integer in the fixture, as the mappers must give ids. */
static const char *id_text(json_t *v, const char *path)
{
	static char buf[4][32];
	static int next;
	json_t *i = at(v, path);
	if (!json_is_integer(i))
		ng_test_fail(__FILE__, __LINE__, "fixture %s is not an integer", path);
	char *b = buf[next++ % 4];
	snprintf(b, 32, "%" JSON_INTEGER_FORMAT, json_integer_value(i));
	return b;
}

static json_t *map_ok(struct ng_intake_mapper *m, const char *topic,
                      const struct ng_intake_header *h, size_t nh, json_t *payload)
{
	json_t *events = NULL;
	char err[1024];
	int rc = ng_intake_map(m, topic, h, nh, payload, &events, err, sizeof err);
	if (rc != 0)
		ng_test_fail(__FILE__, __LINE__, "map %s: rc %d: %s", topic, rc, err);
	ASSERT(json_is_array(events));
	return events;
}

static int map_fail(struct ng_intake_mapper *m, const char *topic, json_t *payload, char *err,
                    size_t errlen)
{
	json_t *events = (json_t *)1;
	int rc = ng_intake_map(m, topic, NULL, 0, payload, &events, err, errlen);
	if (events != NULL)
		ng_test_fail(__FILE__, __LINE__, "%s: mapped (rc %d): %s", topic, rc,
		             rc == 0 ? json_dumps(events, 0) : err);
	return rc;
}

/* ---- Shopify --------------------------------------------------------------------------------- */

static void check_checkout(const char *topic, const char *type, const char *fixture_name)
{
	struct ng_intake_mapper *m = load("shopify");
	json_t *p = fixture(fixture_name);
	struct ng_intake_header h[] = {
	    {"X-Shopify-Topic", topic},
	    {"x-shopify-event-id", "8f1c2b44-event"},
	    {"X-Shopify-Webhook-Id", "b54557e4-webhook"},
	};
	json_t *evs = map_ok(m, topic, h, 3, p);
	ASSERT_EQ_INT(json_array_size(evs), 1);
	json_t *e = json_array_get(evs, 0);
	ASSERT_EQ_STR(str_at(e, "source"), "shopify");
	ASSERT_EQ_STR(str_at(e, "topic"), topic);
	ASSERT_EQ_STR(str_at(e, "type"), type);
	ASSERT_EQ_STR(str_at(e, "key"), str_at(p, "token"));
	ASSERT_EQ_STR(str_at(e, "key"), "123123123");
	/* 2021-12-31T19:00:00-05:00 in UTC. */
	ASSERT_EQ_STR(str_at(p, "updated_at"), "2021-12-31T19:00:00-05:00");
	ASSERT_EQ_STR(str_at(e, "occurred_at"), "2022-01-01T00:00:00Z");
	ASSERT_EQ_STR(str_at(e, "customer.source_id"), id_text(p, "customer.id"));
	ASSERT_EQ_STR(str_at(e, "customer.email"), str_at(p, "email"));
	ASSERT_EQ_STR(str_at(e, "customer.email"), "example@email.com");
	ASSERT_EQ_STR(str_at(e, "customer.first_name"), str_at(p, "customer.first_name"));
	ASSERT_EQ_STR(str_at(e, "customer.last_name"), str_at(p, "customer.last_name"));
	ASSERT(at(e, "customer.phone") == NULL); /* phone null; address phones are not consent */
	ASSERT(json_is_false(at(p, "buyer_accepts_marketing")));
	ASSERT_EQ_STR(str_at(e, "consent.email.state"), "not_subscribed");
	ASSERT_EQ_STR(str_at(e, "consent.email.source"), "shopify:buyer_accepts_marketing");
	ASSERT_EQ_STR(str_at(e, "consent.sms.state"), "not_subscribed");
	ASSERT_EQ_INT(json_array_size(at(e, "dedupe_keys")), 1);
	ASSERT_EQ_STR(str_at(e, "dedupe_keys[0]"), "shopify:event:8f1c2b44-event");
	ASSERT_EQ_STR(str_at(e, "data.recovery_url"), str_at(p, "abandoned_checkout_url"));
	ASSERT_EQ_STR(str_at(e, "data.token"), str_at(p, "token"));
	ASSERT_EQ_STR(str_at(e, "data.cart_token"), str_at(p, "cart_token"));
	ASSERT_EQ_STR(str_at(e, "data.total_price"), str_at(p, "total_price"));
	ASSERT_EQ_STR(str_at(e, "data.currency"), "USD");
	ASSERT_EQ_INT(json_array_size(at(e, "data.line_items")),
	              json_array_size(at(p, "line_items")));
	ASSERT_EQ_STR(str_at(e, "data.line_items[1].title"), str_at(p, "line_items[1].title"));
	ASSERT_EQ_STR(str_at(e, "data.line_items[0].price"), "199.00");
	ASSERT_EQ_INT(json_integer_value(at(e, "data.line_items[0].quantity")), 1);
	ASSERT_EQ_STR(str_at(e, "data.line_items[0].product_id"),
	              id_text(p, "line_items[0].product_id"));
	ASSERT(at(e, "data.completed_at") == NULL);
	ASSERT(at(e, "warnings") == NULL);
	json_decref(evs);
	json_decref(p);
	ng_intake_mapper_free(m);
}

static void test_shopify_checkouts_create(void)
{
	check_checkout("checkouts/create", "checkout.started", "shopify/checkouts_create.json");
}

static void test_shopify_checkouts_update(void)
{
	check_checkout("checkouts/update", "checkout.updated", "shopify/checkouts_update.json");
}

static void check_order(const char *topic, const char *type, const char *fixture_name)
{
	struct ng_intake_mapper *m = load("shopify");
	json_t *p = fixture(fixture_name);
	/* Only the webhook id: the fallback dedupe key. */
	struct ng_intake_header h[] = {{"X-Shopify-Webhook-Id", "wh-77"}};
	json_t *evs = map_ok(m, topic, h, 1, p);
	ASSERT_EQ_INT(json_array_size(evs), 1);
	json_t *e = json_array_get(evs, 0);
	ASSERT_EQ_STR(str_at(e, "type"), type);
	ASSERT_EQ_STR(str_at(e, "key"), id_text(p, "id"));
	ASSERT_EQ_STR(str_at(e, "dedupe_keys[0]"), "shopify:webhook:wh-77");
	/* The order's email (what the buyer typed) over the customer record's. */
	ASSERT_EQ_STR(str_at(e, "customer.email"), str_at(p, "email"));
	ASSERT_EQ_STR(str_at(e, "customer.email"), "jon@example.com");
	ASSERT_EQ_STR(str_at(e, "customer.source_id"), id_text(p, "customer.id"));
	ASSERT_EQ_STR(str_at(e, "customer.locale"), str_at(p, "customer_locale"));
	ASSERT_EQ_STR(str_at(e, "customer.first_name"), "John");
	ASSERT(json_is_true(at(p, "buyer_accepts_marketing")));
	ASSERT_EQ_STR(str_at(e, "consent.email.state"), "subscribed");
	ASSERT(at(e, "consent.sms") == NULL);
	ASSERT_EQ_STR(str_at(e, "data.order_id"), id_text(p, "id"));
	ASSERT_EQ_INT(json_integer_value(at(e, "data.order_number")),
	              json_integer_value(at(p, "order_number")));
	ASSERT_EQ_STR(str_at(e, "data.name"), str_at(p, "name"));
	ASSERT_EQ_STR(str_at(e, "data.total_price"), str_at(p, "total_price"));
	ASSERT_EQ_STR(str_at(e, "data.total_shipping"),
	              str_at(p, "total_shipping_price_set.shop_money.amount"));
	ASSERT_EQ_STR(str_at(e, "data.order_status_url"), str_at(p, "order_status_url"));
	ASSERT_EQ_INT(json_array_size(at(e, "data.line_items")), 3);
	ASSERT_EQ_STR(str_at(e, "data.line_items[2].title"), str_at(p, "line_items[2].title"));
	ASSERT_EQ_STR(str_at(e, "data.line_items[0].price"), "89.99");
	ASSERT(at(e, "data.checkout_token") == NULL); /* null in the fixture */
	json_decref(evs);
	json_decref(p);
	ng_intake_mapper_free(m);
}

static void test_shopify_orders_create(void)
{
	check_order("orders/create", "order.placed", "shopify/orders_create.json");
}

static void test_shopify_orders_paid(void)
{
	check_order("orders/paid", "order.paid", "shopify/orders_paid.json");
}

static void test_shopify_customers_create(void)
{
	struct ng_intake_mapper *m = load("shopify");
	json_t *p = fixture("shopify/customers_create.json");
	json_t *evs = map_ok(m, "customers/create", NULL, 0, p);
	json_t *e = json_array_get(evs, 0);
	ASSERT_EQ_STR(str_at(e, "type"), "customer.created");
	ASSERT_EQ_STR(str_at(e, "key"), id_text(p, "id"));
	ASSERT_EQ_STR(str_at(e, "customer.source_id"), id_text(p, "id"));
	ASSERT_EQ_STR(str_at(e, "customer.first_name"), str_at(p, "first_name"));
	ASSERT_EQ_STR(str_at(e, "customer.last_name"), "Biller");
	ASSERT(at(e, "customer.email") == NULL && at(e, "customer.phone") == NULL);
	ASSERT(at(e, "consent") == NULL); /* the fixture carries no consent fields */
	ASSERT_EQ_STR(str_at(e, "data.state"), str_at(p, "state"));
	ASSERT_EQ_STR(str_at(e, "data.country_code"), "CA");
	/* No delivery headers: the resource and its update time. */
	char want[256];
	snprintf(want, sizeof want, "shopify:resource::customers/create:%s:%s", id_text(p, "id"),
	         str_at(p, "updated_at"));
	ASSERT_EQ_STR(str_at(e, "dedupe_keys[0]"), want);
	json_decref(evs);

	/* Newer payloads: email_marketing_consent and sms_marketing_consent, phone to E.164. */
	json_object_set_new(p, "email", json_string(" Bob.Biller@Example.COM "));
	json_object_set_new(p, "phone", json_string("+1 (613) 555-0123"));
	json_object_set_new(p, "email_marketing_consent",
	                    json_pack("{s:s, s:s, s:s}", "state", "subscribed", "opt_in_level",
	                              "confirmed_opt_in", "consent_updated_at",
	                              "2024-03-01T12:00:00+01:00"));
	json_object_set_new(p, "sms_marketing_consent",
	                    json_pack("{s:s, s:n}", "state", "redacted", "opt_in_level"));
	evs = map_ok(m, "customers/update", NULL, 0, p);
	e = json_array_get(evs, 0);
	ASSERT_EQ_STR(str_at(e, "type"), "customer.updated");
	ASSERT_EQ_STR(str_at(e, "customer.email"), "bob.biller@example.com");
	ASSERT_EQ_STR(str_at(e, "customer.phone"), "+16135550123");
	ASSERT_EQ_STR(str_at(e, "consent.email.state"), "subscribed");
	ASSERT_EQ_STR(str_at(e, "consent.email.level"), "confirmed_opt_in");
	ASSERT_EQ_STR(str_at(e, "consent.email.updated_at"), "2024-03-01T11:00:00Z");
	ASSERT_EQ_STR(str_at(e, "consent.email.source"), "shopify:email_marketing_consent");
	ASSERT_EQ_STR(str_at(e, "consent.sms.state"), "unsubscribed");
	json_decref(evs);
	json_decref(p);
	ng_intake_mapper_free(m);
}

static void test_shopify_carts_update(void)
{
	struct ng_intake_mapper *m = load("shopify");
	json_t *p = fixture("shopify/carts_update.json");
	struct ng_intake_header h[] = {{"X-Shopify-Event-Id", "e-cart"}};
	json_t *evs = map_ok(m, "carts/update", h, 1, p);
	json_t *e = json_array_get(evs, 0);
	ASSERT_EQ_STR(str_at(e, "type"), "cart.updated");
	ASSERT_EQ_STR(str_at(e, "key"), str_at(p, "token"));
	ASSERT(at(e, "customer") == NULL); /* carts carry no identity */
	ASSERT(at(e, "consent") == NULL);
	ASSERT_EQ_STR(str_at(e, "data.line_items[0].title"), str_at(p, "line_items[0].title"));
	ASSERT_EQ_INT(json_integer_value(at(e, "data.line_items[0].quantity")), 3);
	ASSERT_EQ_STR(str_at(e, "data.line_items[0].line_price"), "59.97");
	ASSERT_EQ_STR(str_at(e, "dedupe_keys[0]"), "shopify:event:e-cart");
	json_decref(evs);
	json_decref(p);
	ng_intake_mapper_free(m);
}

static void test_shopify_big_ids_exact(void)
{
	struct ng_intake_mapper *m = load("shopify");
	json_t *p = fixture("shopify/checkouts_create.json");
	/* 2^53 + 1 and the int64 maximum: a double would round both. */
	json_object_set_new(json_object_get(p, "customer"), "id", json_integer(9007199254740993LL));
	json_object_set_new(p, "id", json_integer(9223372036854775807LL));
	json_t *evs = map_ok(m, "checkouts/create", NULL, 0, p);
	ASSERT_EQ_STR(str_at(evs, "[0].customer.source_id"), "9007199254740993");
	ASSERT_EQ_STR(str_at(evs, "[0].data.checkout_id"), "9223372036854775807");
	json_decref(evs);
	json_decref(p);
	ng_intake_mapper_free(m);
}

static void test_store_identity_is_lenient(void)
{
	struct ng_intake_mapper *m = load("shopify");
	json_t *p = fixture("shopify/checkouts_create.json");
	json_object_set_new(p, "email", json_string("not an address"));
	json_object_set_new(p, "phone", json_string("555-555-BILL"));
	json_t *evs = map_ok(m, "checkouts/create", NULL, 0, p);
	json_t *e = json_array_get(evs, 0);
	ASSERT(at(e, "customer.email") == NULL);
	ASSERT(at(e, "customer.phone") == NULL);
	ASSERT_EQ_STR(str_at(e, "customer.source_id"), id_text(p, "customer.id"));
	ASSERT_EQ_INT(json_array_size(at(e, "warnings")), 2);
	ASSERT_EQ_STR(str_at(e, "warnings[0]"),
	              "customer.email 'not an address' dropped: contains spaces");
	ASSERT_EQ_STR(str_at(e, "warnings[1]"),
	              "customer.phone '555-555-BILL' dropped: contains letters");
	json_decref(evs);
	/* Without any usable identifier the customer is dropped, the event kept. */
	json_object_del(p, "customer");
	evs = map_ok(m, "checkouts/create", NULL, 0, p);
	e = json_array_get(evs, 0);
	ASSERT(at(e, "customer") == NULL);
	ASSERT_CONTAINS(str_at(e, "warnings[2]"), "customer dropped");
	json_decref(evs);
	json_decref(p);
	ng_intake_mapper_free(m);
}

/* ---- result codes ------------------------------------------------------------------------------
 */

static void test_unmapped_topic_is_ignored(void)
{
	struct ng_intake_mapper *m = load("shopify");
	json_t *p = fixture("shopify/orders_create.json");
	char err[512];
	ASSERT_EQ_INT(map_fail(m, "x/y", p, err, sizeof err), NG_INTAKE_IGNORED);
	ASSERT_EQ_STR(err, "no mapping for shopify topic 'x/y'");
	ASSERT_EQ_INT(map_fail(m, "shop/redact", p, err, sizeof err), NG_INTAKE_IGNORED);
	ASSERT(!ng_intake_mapper_has(m, "x/y"));
	ASSERT(ng_intake_mapper_has(m, "orders/create"));
	ASSERT(NG_INTAKE_IGNORED > 0);
	json_decref(p);
	ng_intake_mapper_free(m);
}

static void test_malformed_payload(void)
{
	struct ng_intake_mapper *m = load("shopify");
	char err[512];
	json_t *arr = json_pack("[{s:s}]", "token", "t");
	ASSERT_EQ_INT(map_fail(m, "checkouts/create", arr, err, sizeof err), -EBADMSG);
	ASSERT_EQ_STR(err, "the shopify payload must be a JSON object, not an array");
	json_decref(arr);

	/* Deeper than Lua is given (jansson itself parses up to 2048 levels). */
	json_t *deep = json_object(), *d = deep;
	for (int i = 0; i < 300; i++) {
		json_t *n = json_object();
		json_object_set_new(d, "n", n);
		d = n;
	}
	ASSERT_EQ_INT(map_fail(m, "checkouts/create", deep, err, sizeof err), -EBADMSG);
	ASSERT_EQ_STR(err, "the shopify payload is nested deeper than 200 levels");
	json_decref(deep);

	json_t *p = fixture("shopify/checkouts_create.json");
	json_object_del(p, "token");
	ASSERT_EQ_INT(map_fail(m, "checkouts/create", p, err, sizeof err), -EBADMSG);
	ASSERT_EQ_STR(err, "shopify topic 'checkouts/create': the payload has no checkout token");
	json_object_set_new(p, "token", json_string(""));
	ASSERT_EQ_INT(map_fail(m, "checkouts/update", p, err, sizeof err), -EBADMSG);
	ASSERT_EQ_STR(err, "shopify topic 'checkouts/update': the payload has no checkout token");
	json_decref(p);

	p = fixture("shopify/orders_create.json");
	json_object_set_new(p, "updated_at", json_string("yesterday"));
	/* A store's bad time is dropped with a warning, not fatal. */
	json_t *evs = map_ok(m, "orders/create", NULL, 0, p);
	ASSERT(at(evs, "[0].occurred_at") == NULL);
	ASSERT_CONTAINS(str_at(evs, "[0].warnings[0]"), "occurred_at 'yesterday' dropped");
	json_decref(evs);
	json_decref(p);
	ng_intake_mapper_free(m);
}

/* ---- WooCommerce
 * --------------------------------------------------------------------------------- */

static void test_woocommerce_order_created(void)
{
	struct ng_intake_mapper *m = load("woocommerce");
	json_t *p = fixture("woocommerce/order_created.json");
	struct ng_intake_header h[] = {
	    {"X-WC-Webhook-Source", "https://shop.example/"},
	    {"X-WC-Webhook-Topic", "order.created"},
	    {"X-WC-Webhook-Delivery-ID", "0c5c3a1f0d4e"},
	};
	json_t *evs = map_ok(m, "order.created", h, 3, p);
	ASSERT_EQ_INT(json_array_size(evs), 1);
	json_t *e = json_array_get(evs, 0);
	ASSERT_EQ_STR(str_at(e, "type"), "order.placed");
	ASSERT_EQ_STR(str_at(e, "key"), id_text(p, "id"));
	ASSERT_EQ_STR(str_at(e, "occurred_at"), "2017-03-22T19:28:02Z"); /* date_created_gmt */
	ASSERT_EQ_STR(str_at(e, "customer.email"), str_at(p, "billing.email"));
	ASSERT_EQ_STR(str_at(p, "billing.phone"), "(555) 555-5555");
	ASSERT_EQ_STR(str_at(e, "customer.phone"), "+15555555555");
	ASSERT_EQ_STR(str_at(e, "customer.first_name"), str_at(p, "billing.first_name"));
	ASSERT_EQ_STR(str_at(e, "customer.last_name"), str_at(p, "billing.last_name"));
	ASSERT_EQ_INT(json_integer_value(at(p, "customer_id")), 0);
	ASSERT(at(e, "customer.source_id") == NULL); /* a guest */
	ASSERT(at(e, "consent") == NULL);            /* WooCommerce core carries none */
	ASSERT_EQ_INT(json_array_size(at(e, "dedupe_keys")), 2);
	ASSERT_EQ_STR(str_at(e, "dedupe_keys[0]"), "woocommerce:delivery:0c5c3a1f0d4e");
	char want[256];
	snprintf(want, sizeof want,
	         "woocommerce:resource:https://shop.example/:order.created:%s:%s", id_text(p, "id"),
	         str_at(p, "date_modified_gmt"));
	ASSERT_EQ_STR(str_at(e, "dedupe_keys[1]"), want);
	ASSERT_EQ_STR(str_at(e, "data.total_price"), str_at(p, "total"));
	ASSERT_EQ_STR(str_at(e, "data.currency"), str_at(p, "currency"));
	ASSERT_EQ_STR(str_at(e, "data.order_number"), str_at(p, "number"));
	ASSERT_EQ_INT(json_array_size(at(e, "data.line_items")), 2);
	ASSERT_EQ_STR(str_at(e, "data.line_items[0].title"), str_at(p, "line_items[0].name"));
	ASSERT_EQ_STR(str_at(e, "data.line_items[0].price"), "3");
	ASSERT_EQ_INT(json_integer_value(at(e, "data.line_items[0].quantity")), 2);
	/* "&ndash;" decoded */
	ASSERT_EQ_STR(str_at(e, "data.line_items[1].title"),
	              "Ship Your Idea \xe2\x80\x93 Color: Black, Size: M Test");
	ASSERT_EQ_STR(str_at(e, "data.line_items[1].variant_id"), "23");
	ASSERT(at(e, "data.line_items[0].variant_id") == NULL); /* variation_id 0 */

	/* A resend gets a new delivery id; the resource key still matches the first delivery. */
	h[2].value = "99aa7e5b1c2d";
	json_t *again = map_ok(m, "order.created", h, 3, p);
	ASSERT_EQ_STR(str_at(again, "[0].dedupe_keys[0]"), "woocommerce:delivery:99aa7e5b1c2d");
	ASSERT_EQ_STR(str_at(again, "[0].dedupe_keys[1]"), want);
	json_decref(again);

	/* order.updated keys on the modification time. */
	json_t *upd = map_ok(m, "order.updated", h, 3, p);
	ASSERT_EQ_STR(str_at(upd, "[0].type"), "order.updated");
	ASSERT_EQ_STR(str_at(upd, "[0].occurred_at"), "2017-03-22T19:28:08Z");
	ASSERT_CONTAINS(str_at(upd, "[0].dedupe_keys[1]"), ":order.updated:727:");
	json_decref(upd);
	json_decref(evs);
	json_decref(p);
	ng_intake_mapper_free(m);
}

static void test_woocommerce_customer_created(void)
{
	struct ng_intake_mapper *m = load("woocommerce");
	/* The shape of GET /wc/v3/customers/<id>, which customer.created delivers. */
	json_t *p = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:{s:s, s:s, s:s}}", "id",
	                      (json_int_t)25, "date_created_gmt", "2024-02-29T08:15:00",
	                      "date_modified_gmt", "2024-02-29T08:15:00", "email",
	                      "Jane.Roe@Example.org", "first_name", "Jane", "last_name", "Roe",
	                      "role", "customer", "is_paying_customer", 0, "billing", "phone",
	                      "030 1234567", "country", "DE", "email", "");
	json_t *evs = map_ok(m, "customer.created", NULL, 0, p);
	json_t *e = json_array_get(evs, 0);
	ASSERT_EQ_STR(str_at(e, "type"), "customer.created");
	ASSERT_EQ_STR(str_at(e, "key"), "25");
	ASSERT_EQ_STR(str_at(e, "customer.source_id"), "25");
	ASSERT_EQ_STR(str_at(e, "customer.email"), "jane.roe@example.org");
	ASSERT_EQ_STR(str_at(e, "occurred_at"), "2024-02-29T08:15:00Z");
	/* The default country is 1 in these tests: a German national number does not fit. */
	ASSERT(at(e, "customer.phone") == NULL);
	ASSERT_CONTAINS(str_at(e, "warnings[0]"), "customer.phone '030 1234567' dropped");
	ASSERT_EQ_STR(str_at(e, "data.country_code"), "DE");
	json_decref(evs);
	json_decref(p);
	ng_intake_mapper_free(m);
}

static void test_woocommerce_ping(void)
{
	long long id = 0;
	const char *b = "webhook_id=12";
	ASSERT_EQ_INT(ng_intake_is_ping("woocommerce", NULL, 0, b, strlen(b), &id), 1);
	ASSERT_EQ_INT(id, 12);
	struct ng_intake_header form[] = {{"Content-Type", "application/x-www-form-urlencoded"}};
	ASSERT_EQ_INT(ng_intake_is_ping("woocommerce", form, 1, "webhook_id=3\r\n", 14, &id), 1);
	ASSERT_EQ_INT(id, 3);
	/* A signed or topical request is a delivery, never a ping. */
	struct ng_intake_header sig[] = {{"x-wc-webhook-signature", "abc="}};
	ASSERT_EQ_INT(ng_intake_is_ping("woocommerce", sig, 1, b, strlen(b), NULL), 0);
	struct ng_intake_header topic[] = {{"X-WC-Webhook-Topic", "order.created"}};
	ASSERT_EQ_INT(ng_intake_is_ping("woocommerce", topic, 1, b, strlen(b), NULL), 0);
	ASSERT_EQ_INT(ng_intake_is_ping("woocommerce", NULL, 0, "{\"id\":1}", 8, NULL), 0);
	ASSERT_EQ_INT(ng_intake_is_ping("woocommerce", NULL, 0, "webhook_id=", 11, NULL), 0);
	ASSERT_EQ_INT(ng_intake_is_ping("woocommerce", NULL, 0, "webhook_id=1&x=2", 16, NULL), 0);
	ASSERT_EQ_INT(ng_intake_is_ping("shopify", NULL, 0, b, strlen(b), NULL), 0);

	ASSERT_EQ_STR(ng_intake_header(topic, 1, "x-wc-WEBHOOK-topic"), "order.created");
	ASSERT(ng_intake_header(topic, 1, "X-WC-Webhook-ID") == NULL);
	ASSERT_EQ_STR(ng_intake_topic_header("shopify"), "X-Shopify-Topic");
	ASSERT_EQ_STR(ng_intake_topic_header("woocommerce"), "X-WC-Webhook-Topic");
	ASSERT(ng_intake_topic_header("api") == NULL);
}

/* ---- /v1/events
 * ------------------------------------------------------------------------------------ */

static json_t *parse(const char *text)
{
	json_error_t e;
	json_t *v = json_loads(text, 0, &e);
	if (!v)
		ng_test_fail(__FILE__, __LINE__, "bad test JSON: %s", e.text);
	return v;
}

static void test_api_single_and_batch(void)
{
	struct ng_intake_mapper *m = load("api");
	json_t *p = parse("{\"type\":\"wishlist.item_added\",\"customer\":{\"id\":9007199254740993,"
	                  "\"email\":\"A@B.example\",\"phone\":\"+49 30 1234567\",\"timezone\":"
	                  "\"Europe/Berlin\",\"properties\":{\"birthday\":\"1990-02-28\"}},"
	                  "\"data\":{\"sku\":\"X1\"},\"key\":\"w-1\",\"idempotency_key\":\"k1\","
	                  "\"occurred_at\":\"2024-05-01T12:00:00.250+02:00\","
	                  "\"consent\":{\"email\":\"subscribed\"}}");
	json_t *evs = map_ok(m, "events", NULL, 0, p);
	json_t *e = json_array_get(evs, 0);
	ASSERT_EQ_STR(str_at(e, "source"), "api");
	ASSERT_EQ_STR(str_at(e, "type"), "wishlist.item_added");
	ASSERT_EQ_STR(str_at(e, "customer.source_id"), "9007199254740993");
	ASSERT_EQ_STR(str_at(e, "customer.email"), "a@b.example");
	ASSERT_EQ_STR(str_at(e, "customer.phone"), "+49301234567");
	ASSERT_EQ_STR(str_at(e, "customer.timezone"), "Europe/Berlin");
	ASSERT_EQ_STR(str_at(e, "customer.properties.birthday"), "1990-02-28");
	ASSERT_EQ_STR(str_at(e, "consent.email.state"), "subscribed");
	ASSERT_EQ_STR(str_at(e, "data.sku"), "X1");
	ASSERT_EQ_STR(str_at(e, "key"), "w-1");
	ASSERT_EQ_STR(str_at(e, "occurred_at"), "2024-05-01T10:00:00.250Z");
	ASSERT_EQ_STR(str_at(e, "dedupe_keys[0]"), "api:idem:k1");
	json_decref(evs);
	json_decref(p);

	p = parse("{\"events\":[{\"type\":\"signup\",\"customer\":{\"email\":\"x@y.example\"}},"
	          "{\"type\":\"signup\",\"customer\":{\"phone\":\"(555) 123-4567\"},"
	          "\"data\":{}}]}");
	struct ng_intake_header h[] = {{"Idempotency-Key", "batch-7"}};
	evs = map_ok(m, "events", h, 1, p);
	ASSERT_EQ_INT(json_array_size(evs), 2);
	ASSERT_EQ_STR(str_at(evs, "[1].customer.phone"), "+15551234567");
	ASSERT_EQ_STR(str_at(evs, "[0].dedupe_keys[0]"), "api:idem:batch-7:1");
	ASSERT_EQ_STR(str_at(evs, "[1].dedupe_keys[0]"), "api:idem:batch-7:2");
	ASSERT(json_is_object(at(evs, "[1].data")));
	json_decref(evs);
	/* Without any idempotency key an API event has no dedupe key. */
	evs = map_ok(m, "events", NULL, 0, p);
	ASSERT_EQ_INT(json_array_size(at(evs, "[0].dedupe_keys")), 0);
	json_decref(evs);
	json_decref(p);
	ng_intake_mapper_free(m);
}

static void expect_api_400(struct ng_intake_mapper *m, const char *body, const char *want)
{
	json_t *p = parse(body);
	char err[1024];
	int rc = map_fail(m, "events", p, err, sizeof err);
	json_decref(p);
	if (rc != -EBADMSG)
		ng_test_fail(__FILE__, __LINE__, "%s: rc %d (%s)", body, rc, err);
	ASSERT_EQ_STR(err, want);
}

static void test_api_refusals(void)
{
	struct ng_intake_mapper *m = load("api");
	expect_api_400(m, "{\"customer\":{\"id\":1}}",
	               "api topic 'events': 'type' is required: a name such as 'signup' or "
	               "'wishlist.item_added'");
	expect_api_400(m, "{\"type\":\"Sign Up\",\"customer\":{\"id\":1}}",
	               "api topic 'events': type 'Sign Up' must be lower-case words joined by dots "
	               "(letters, digits, _), such as 'wishlist.item_added'");
	expect_api_400(m, "{\"type\":\"signup\"}",
	               "api topic 'events': 'customer' is required: an object with an id, an email "
	               "or a phone");
	expect_api_400(m, "{\"type\":\"signup\",\"customer\":{\"first_name\":\"A\"}}",
	               "api topic 'events': the customer needs an id, an email or a phone");
	expect_api_400(m, "{\"type\":\"signup\",\"customer\":{\"id\":1},\"tpye\":1}",
	               "api topic 'events': unknown field 'tpye' (known: consent, customer, data, "
	               "idempotency_key, key, occurred_at, type)");
	expect_api_400(m, "{\"type\":\"signup\",\"customer\":{\"id\":1.5}}",
	               "api topic 'events': customer.id must be a string or an integer");
	/* Strict identity: an email or phone that does not normalise is refused, with the reason.
	 */
	expect_api_400(m, "{\"type\":\"signup\",\"customer\":{\"email\":\"jane@localhost\"}}",
	               "api topic 'events': customer.email 'jane@localhost' is not usable: has no "
	               "dot in its domain");
	expect_api_400(m, "{\"type\":\"signup\",\"customer\":{\"phone\":\"call me\"}}",
	               "api topic 'events': customer.phone 'call me' is not usable: contains "
	               "letters");
	expect_api_400(
	    m,
	    "{\"type\":\"signup\",\"customer\":{\"id\":\"1\"},\"occurred_at\":"
	    "\"2024-05-01 10:00\"}",
	    "api topic 'events': occurred_at '2024-05-01 10:00' is not usable: not an ISO "
	    "8601 time with a zone, such as 2024-05-01T10:00:00Z");
	expect_api_400(m,
	               "{\"type\":\"signup\",\"customer\":{\"id\":\"1\"},\"consent\":{\"email\":"
	               "\"yes\"}}",
	               "api topic 'events': consent.email must be subscribed, not_subscribed, "
	               "unsubscribed or pending");
	expect_api_400(m,
	               "{\"events\":[{\"type\":\"a\",\"customer\":{\"id\":1}},{\"type\":\"b\"}]}",
	               "api topic 'events': events[2]: 'customer' is required: an object with an "
	               "id, an email or a phone");
	expect_api_400(m, "{\"events\":{}}",
	               "api topic 'events': 'events' must be an array of "
	               "events");
	ng_intake_mapper_free(m);
}

/* ---- broken mappers and the sandbox
 * ----------------------------------------------------------------- */

static char tmpdir[64];

static void write_mapper(const char *name, const char *src)
{
	if (!tmpdir[0]) {
		snprintf(tmpdir, sizeof tmpdir, "/tmp/ng-mappers-XXXXXX");
		ASSERT(mkdtemp(tmpdir) != NULL);
	}
	char p[128];
	snprintf(p, sizeof p, "%s/%s.lua", tmpdir, name);
	FILE *f = fopen(p, "w");
	ASSERT(f != NULL);
	fputs(src, f);
	fclose(f);
}

static void remove_mappers(void)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
	ASSERT_EQ_INT(system(cmd), 0);
}

static int load_error(const char *name, char *err, size_t errlen)
{
	struct ng_intake_mapper *m = (struct ng_intake_mapper *)1;
	int rc = ng_intake_mapper_load(tmpdir, name, NULL, &m, err, errlen);
	ASSERT(m == NULL);
	return rc;
}

static void test_load_errors(void)
{
	char err[1024], want[512];
	write_mapper("syntax",
	             "return {\n  ['a/b'] = function(p, h)\n    return {type = }\n  end,\n}\n");
	ASSERT_EQ_INT(load_error("syntax", err, sizeof err), NG_ECONFIG);
	snprintf(want, sizeof want, "%s/syntax.lua:3: unexpected symbol near '}'", tmpdir);
	ASSERT_EQ_STR(err, want);

	write_mapper("notable", "return 42\n");
	ASSERT_EQ_INT(load_error("notable", err, sizeof err), NG_ECONFIG);
	ASSERT_CONTAINS(err, "notable.lua: the file must return a table of topic = function(p, h), "
	                     "not a number");

	write_mapper("notfn", "return { ['orders/create'] = 'order.placed' }\n");
	ASSERT_EQ_INT(load_error("notfn", err, sizeof err), NG_ECONFIG);
	ASSERT_CONTAINS(err, "notfn.lua: topic 'orders/create' maps to a string, not a function");

	/* The sandbox: no os, io, require, load, pcall; globals cannot be written. */
	static const char *const escapes[] = {"os.exit(1)",    "io.open('/etc/passwd')",
	                                      "require('os')", "load('return 1')",
	                                      "pcall(print)",  "dofile('/x')"};
	for (size_t i = 0; i < NG_ARRAY_LEN(escapes); i++) {
		char src[128];
		snprintf(src, sizeof src, "%s\nreturn {}\n", escapes[i]);
		write_mapper("escape", src);
		ASSERT_EQ_INT(load_error("escape", err, sizeof err), NG_ECONFIG);
		ASSERT_CONTAINS(err, "escape.lua:1: attempt to ");
		ASSERT_CONTAINS(err, "a nil value");
	}
	write_mapper("global", "x = 1\nreturn {}\n");
	ASSERT_EQ_INT(load_error("global", err, sizeof err), NG_ECONFIG);
	ASSERT_CONTAINS(err, "global.lua:1: attempt to write global 'x' (declare it local)");

	ASSERT_EQ_INT(load_error("missing", err, sizeof err), -ENOENT);
	ASSERT_CONTAINS(err, "missing.lua: cannot read the mapper");
	ASSERT_EQ_INT(load_error("../etc/x", err, sizeof err), -EINVAL);
	remove_mappers();
}

static void test_broken_mapping_names_file_and_line(void)
{
	write_mapper(
	    "bad", "local function f(p, h)\n"
	           "  return {type = 'a.b', key = p.x.y}\n"
	           "end\n"
	           "return {\n"
	           "  ['t/runtime'] = f,\n"
	           "  ['t/notype'] = function(p, h)\n"
	           "    return {key = 'k'}\n"
	           "  end,\n"
	           "  ['t/field'] = function(p, h) return {type = 'a.b', custmer = {}} end,\n"
	           "  ['t/email'] = function(p, h)\n"
	           "    return {type = 'a.b', customer = {email = {}}}\n"
	           "  end,\n"
	           "  ['t/fn'] = function(p, h) return {type = 'a.b', data = {f = tostring}} end,\n"
	           "  ['t/number'] = function(p, h) return 7 end,\n"
	           "  ['t/none'] = function(p, h) return nil end,\n"
	           "  ['t/dup'] = function(p, h)\n"
	           "    return {{type = 'a.b', dedupe = 'd'}, {type = 'a.c', dedupe = 'd'}}\n"
	           "  end,\n"
	           "  ['t/loop'] = function(p, h) while true do end end,\n"
	           "  ['t/memory'] = function(p, h)\n"
	           "    local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(1000) .. i end\n"
	           "  end,\n"
	           "  ['t/state'] = function(p, h) return {type = 'a.b', consent = {email = "
	           "'yes'}} end,\n"
	           "  ['t/two'] = function(p, h)\n"
	           "    return {{type = 'a.b', dedupe = {'x', 7}}, {type = 'a.c', key = 5}}\n"
	           "  end,\n"
	           "}\n");
	struct ng_intake_options o = {.memory_limit = 8 << 20, .instructions = 2000000};
	struct ng_intake_mapper *m = NULL;
	char err[1024], want[1024];
	ASSERT_EQ_INT(ng_intake_mapper_load(tmpdir, "bad", &o, &m, err, sizeof err), 0);
	json_t *p = json_object();

#define EXPECT(topic, code, text)                                                                  \
	do {                                                                                       \
		ASSERT_EQ_INT(map_fail(m, topic, p, err, sizeof err), code);                       \
		snprintf(want, sizeof want, text, tmpdir);                                         \
		ASSERT_EQ_STR(err, want);                                                          \
	} while (0)

	EXPECT("t/runtime", NG_ECONFIG, "%s/bad.lua:2: attempt to index a nil value (field 'x')");
	EXPECT("t/notype", NG_ECONFIG,
	       "%s/bad.lua:6: the t/notype mapping returned a table with no 'type', which is "
	       "neither an event nor a list of events");
	EXPECT(
	    "t/field", NG_ECONFIG,
	    "%s/bad.lua:9: the t/field mapping returned a malformed event 1: unknown event field "
	    "'custmer' (known: type, key, occurred_at, customer, consent, data, dedupe)");
	EXPECT("t/email", NG_ECONFIG,
	       "%s/bad.lua:10: the t/email mapping returned a malformed event 1: customer.email "
	       "must be a string, not a table with named fields");
	EXPECT("t/fn", NG_ECONFIG,
	       "%s/bad.lua:13: the t/fn mapping returned a malformed event 1: cannot convert to "
	       "JSON: a function has no JSON form at 'data.f'");
	EXPECT(
	    "t/number", NG_ECONFIG,
	    "%s/bad.lua:14: the t/number mapping returned a number, not an event table or a list "
	    "of them");
	ASSERT_EQ_INT(map_fail(m, "t/none", p, err, sizeof err), NG_INTAKE_IGNORED);
	ASSERT_EQ_STR(err, "the bad mapping for topic 't/none' returned no events");
	EXPECT("t/dup", NG_ECONFIG,
	       "%s/bad.lua:16: the t/dup mapping gave events 1 and 2 the same dedupe key 'bad:d'; "
	       "give each event its own");
	ASSERT_EQ_INT(map_fail(m, "t/loop", p, err, sizeof err), NG_ECONFIG);
	ASSERT_CONTAINS(err, "bad.lua:19: the mapping exceeded its instruction budget (2000000)");
	ASSERT_EQ_INT(map_fail(m, "t/memory", p, err, sizeof err), -ENOMEM);
	ASSERT_CONTAINS(err, "bad.lua:20: the t/memory mapping ran out of memory (limit 8388608 "
	                     "bytes)");
	EXPECT(
	    "t/state", NG_ECONFIG,
	    "%s/bad.lua:23: the t/state mapping returned a malformed event 1: consent.email.state "
	    "must be one of subscribed, not_subscribed, unsubscribed, pending, not 'yes'");
	/* After all that the state still works. */
	json_t *evs = map_ok(m, "t/two", NULL, 0, p);
	ASSERT_EQ_INT(json_array_size(evs), 2);
	ASSERT_EQ_STR(str_at(evs, "[0].dedupe_keys[0]"), "bad:x");
	ASSERT_EQ_STR(str_at(evs, "[0].dedupe_keys[1]"), "bad:7");
	ASSERT_EQ_STR(str_at(evs, "[1].key"), "5");
	ASSERT(json_is_object(at(evs, "[1].data")));
	json_decref(evs);
#undef EXPECT
	json_decref(p);
	ng_intake_mapper_free(m);
	remove_mappers();
}

static void test_helpers_and_headers(void)
{
	write_mapper(
	    "helpers",
	    "return {\n"
	    "  ['h/x'] = function(p, h)\n"
	    "    assert(first(nil, json.null, '', 0) == 0)\n"
	    "    assert(str(820982911946154508) == '820982911946154508')\n"
	    "    assert(str(3.0) == '3' and str(2.5) == '2.5' and str(nil) == nil)\n"
	    "    assert(p.gone == nil and p.list[2] == json.null)\n"
	    "    assert(math.random == nil and string.dump == nil and os == nil)\n"
	    "    local n = map(p.list, function(v) if v ~= json.null then return v * 2 end end)\n"
	    "    return {type = 'h.x', key = h['X-Custom'], data = {\n"
	    "      n = n, none = map(nil, tostring), lower = h['x-custom'],\n"
	    "      first_dup = h['X-Dup'], id = p.id}}\n"
	    "  end,\n"
	    "}\n");
	struct ng_intake_mapper *m = load_from(tmpdir, "helpers", 0);
	json_t *p = parse("{\"gone\":null,\"list\":[1,null,3],\"id\":820982911946154508}");
	struct ng_intake_header h[] = {{"x-CUSTOM", "v1"}, {"X-Dup", "one"}, {"x-dup", "two"}};
	json_t *evs = map_ok(m, "h/x", h, 3, p);
	ASSERT_EQ_STR(str_at(evs, "[0].key"), "v1");
	ASSERT_EQ_STR(str_at(evs, "[0].data.lower"), "v1");
	ASSERT_EQ_STR(str_at(evs, "[0].data.first_dup"), "one");
	ASSERT_EQ_INT(json_array_size(at(evs, "[0].data.n")), 2);
	ASSERT_EQ_INT(json_integer_value(at(evs, "[0].data.n[1]")), 6);
	ASSERT(json_is_array(at(evs, "[0].data.none")));
	ASSERT_EQ_INT(json_integer_value(at(evs, "[0].data.id")), 820982911946154508LL);
	ASSERT_EQ_STR(ng_intake_mapper_source(m), "helpers");
	json_decref(evs);
	json_decref(p);
	ng_intake_mapper_free(m);
	remove_mappers();
}

/* ---- times -------------------------------------------------------------------------------------
 */

static void test_time_normalisation(void)
{
	static const char *const ok[][2] = {
	    {"2021-12-31T19:00:00-05:00", "2022-01-01T00:00:00Z"},
	    {"2017-03-22T19:28:02Z", "2017-03-22T19:28:02Z"},
	    {"2024-02-29T23:30:00-01:00", "2024-03-01T00:30:00Z"},
	    {"2024-03-01T00:30:00+01:00", "2024-02-29T23:30:00Z"},
	    {"2024-05-01 10:00:00.5z", "2024-05-01T10:00:00.500Z"},
	    {"2024-05-01T10:00:00.123456+0530", "2024-05-01T04:30:00.123Z"},
	    {"2024-05-01T10:00+02", "2024-05-01T08:00:00Z"},
	    {"2016-12-31T23:59:60Z", "2016-12-31T23:59:59Z"},
	    {"1999-12-31T23:59:59-00:01", "2000-01-01T00:00:59Z"},
	};
	for (size_t i = 0; i < NG_ARRAY_LEN(ok); i++) {
		char out[32];
		if (ng_intake__time(ok[i][0], out) != 0)
			ng_test_fail(__FILE__, __LINE__, "'%s' refused", ok[i][0]);
		ASSERT_EQ_STR(out, ok[i][1]);
	}
	static const char *const bad[] = {
	    "2024-05-01T10:00:00",           "2024-05-01",
	    "2023-02-29T00:00:00Z",          "2024-13-01T00:00:00Z",
	    "2024-04-31T00:00:00Z",          "2024-05-01T24:00:00Z",
	    "2024-05-01T10:00:00+25:00",     "yesterday",
	    "2024-05-01T10:00:00Z trailing", "1969-12-31T23:59:59Z",
	    "2024-05-01T10:00:00.Z",         "",
	};
	for (size_t i = 0; i < NG_ARRAY_LEN(bad); i++) {
		char out[32];
		if (ng_intake__time(bad[i], out) != -EINVAL)
			ng_test_fail(__FILE__, __LINE__, "'%s' accepted as %s", bad[i], out);
	}
}

NG_TESTS(NG_TEST(test_shopify_checkouts_create), NG_TEST(test_shopify_checkouts_update),
         NG_TEST(test_shopify_orders_create), NG_TEST(test_shopify_orders_paid),
         NG_TEST(test_shopify_customers_create), NG_TEST(test_shopify_carts_update),
         NG_TEST(test_shopify_big_ids_exact), NG_TEST(test_store_identity_is_lenient),
         NG_TEST(test_unmapped_topic_is_ignored), NG_TEST(test_malformed_payload),
         NG_TEST(test_woocommerce_order_created), NG_TEST(test_woocommerce_customer_created),
         NG_TEST(test_woocommerce_ping), NG_TEST(test_api_single_and_batch),
         NG_TEST(test_api_refusals), NG_TEST(test_load_errors),
         NG_TEST(test_broken_mapping_names_file_and_line), NG_TEST(test_helpers_and_headers),
         NG_TEST(test_time_normalisation), )
