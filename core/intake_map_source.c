/*
 * intake_map_source.c — the few facts about a source's requests that the HTTP layer needs before
 * any mapper runs: header lookup, which header names the topic, and WooCommerce's creation ping.
 */
#include "intake_map.h"
#include "ng.h"

#include <string.h>
#include <strings.h>

const char *ng_intake_header(const struct ng_intake_header *headers, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (headers[i].name && strcasecmp(headers[i].name, name) == 0)
			return headers[i].value;
	return NULL;
}

const char *ng_intake_topic_header(const char *source)
{
	if (strcmp(source, "shopify") == 0)
		return "X-Shopify-Topic";
	if (strcmp(source, "woocommerce") == 0)
		return "X-WC-Webhook-Topic";
	return NULL;
}

static int present(const char *v)
{
	return v && *v;
}

/*
 * WooCommerce POSTs "webhook_id=<id>" (application/x-www-form-urlencoded) when a webhook is saved,
 * without any X-WC-Webhook-* header, and disables a webhook whose ping is not answered 200. A real
 * delivery always carries the topic and signature headers, so a request with either is no ping.
 */
int ng_intake_is_ping(const char *source, const struct ng_intake_header *headers, size_t n,
                      const char *body, size_t len, long long *webhook_id)
{
	if (!source || strcmp(source, "woocommerce") != 0 || !body)
		return 0;
	if (present(ng_intake_header(headers, n, "X-WC-Webhook-Topic")) ||
	    present(ng_intake_header(headers, n, "X-WC-Webhook-Signature")))
		return 0;
	while (len > 0 && (body[len - 1] == '\n' || body[len - 1] == '\r' || body[len - 1] == ' '))
		len--;
	static const char key[] = "webhook_id=";
	size_t k = sizeof key - 1;
	if (len <= k || len > k + 18 || memcmp(body, key, k) != 0)
		return 0;
	long long id = 0;
	for (size_t i = k; i < len; i++) {
		if (body[i] < '0' || body[i] > '9')
			return 0;
		id = id * 10 + (body[i] - '0');
	}
	if (webhook_id)
		*webhook_id = id;
	return 1;
}
