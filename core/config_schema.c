/*
 * config_schema.c — every key of nudge.conf.lua with its type, default and a line of help.
 * Later features add their keys here (and to contrib/nudge.conf.lua and docs/configuration.md).
 */
#include "config_schema.h"

#define END                                                                                         \
	{                                                                                           \
		NULL, 0, 0, NULL, NULL, 0, 0, NULL, NULL                                            \
	}

static const struct ng_conf_field database_fields[] = {
	{"conninfo", NG_CONF_STRING, 1, NULL, NULL, 0, 0, NULL,
	 "libpq connection string or URI, e.g. \"host=127.0.0.1 dbname=nudge\"; give the host as an address (or add hostaddr=): libpq looks names up synchronously, which would stall the loop"},
	{"pool_size", NG_CONF_INT, 0, "4", NULL, 1, 256, NULL,
	 "connections the daemon keeps open"},
	{"statement_timeout_ms", NG_CONF_INT, 0, "10000", NULL, 0, 3600000, NULL,
	 "a statement running longer is cancelled (0: no limit)"},
	{"connect_timeout_ms", NG_CONF_INT, 0, "5000", NULL, 100, 600000, NULL,
	 "give up a connection attempt after this long"},
	{"queue_timeout_ms", NG_CONF_INT, 0, "30000", NULL, 100, 3600000, NULL,
	 "work waiting this long for a connection fails instead"},
	END,
};

static const struct ng_conf_field http_fields[] = {
	{"listen", NG_CONF_STRING, 0, "127.0.0.1:8025", NULL, 0, 0, NULL,
	 "address:port of the HTTP listener (webhooks, API, /healthz, /metrics)"},
	{"max_body_bytes", NG_CONF_INT, 0, "1048576", NULL, 1024, 1073741824, NULL,
	 "larger request bodies are refused with 413"},
	{"max_header_bytes", NG_CONF_INT, 0, "16384", NULL, 1024, 1048576, NULL,
	 "larger request headers are refused with 431"},
	{"max_headers", NG_CONF_INT, 0, "100", NULL, 8, 10000, NULL,
	 "more request header lines are refused with 431"},
	{"max_connections", NG_CONF_INT, 0, "1024", NULL, 1, 1000000, NULL,
	 "concurrent client connections; more are closed at once"},
	{"header_timeout_ms", NG_CONF_INT, 0, "10000", NULL, 100, 3600000, NULL,
	 "a client must send its request headers within this time"},
	{"body_timeout_ms", NG_CONF_INT, 0, "30000", NULL, 100, 3600000, NULL,
	 "a client must send its request body within this time"},
	{"idle_timeout_ms", NG_CONF_INT, 0, "60000", NULL, 100, 3600000, NULL,
	 "idle keep-alive connections are closed after this time"},
	END,
};

static const struct ng_conf_field http_client_fields[] = {
	{"timeout_ms", NG_CONF_INT, 0, "30000", NULL, 100, 600000, NULL,
	 "an outgoing request (Twilio, Messenger…) that takes longer fails, unless the plugin sets its own"},
	{"connect_timeout_ms", NG_CONF_INT, 0, "10000", NULL, 100, 600000, NULL,
	 "connecting to a provider (TCP and TLS) takes at most this long"},
	{"max_response_bytes", NG_CONF_INT, 0, "1048576", NULL, 1024, 1073741824, NULL,
	 "a larger response body fails the request"},
	{"max_connections", NG_CONF_INT, 0, "64", NULL, 1, 100000, NULL,
	 "outgoing connections open at once, kept alive for reuse"},
	END,
};

static const struct ng_conf_field log_fields[] = {
	{"level", NG_CONF_STRING, 0, "info", "debug|info|warn|error", 0, 0, NULL,
	 "least severe level written"},
	{"format", NG_CONF_STRING, 0, "logfmt", "logfmt|json", 0, 0, NULL,
	 "one line per record, as key=value or as JSON"},
	END,
};

static const struct ng_conf_field store_fields[] = {
	{"name", NG_CONF_STRING, 0, "My Store", NULL, 0, 0, NULL, "the store's name in messages"},
	{"timezone", NG_CONF_STRING, 0, "UTC", NULL, 0, 0, NULL,
	 "IANA time zone for customers who have none"},
	{"postal_address", NG_CONF_STRING, 0, NULL, NULL, 0, 0, NULL,
	 "postal address printed in every marketing email (CAN-SPAM)"},
	{"base_url", NG_CONF_STRING, 0, "http://127.0.0.1:8025", NULL, 0, 0, NULL,
	 "public URL of this daemon, for unsubscribe and tracking links"},
	END,
};

static const struct ng_conf_field paths_fields[] = {
	{"workflows", NG_CONF_STRING, 0, NULL, NULL, 0, 0, NULL,
	 "directory of workflow scripts (default: the shipped workflows/)"},
	{"templates", NG_CONF_STRING, 0, NULL, NULL, 0, 0, NULL,
	 "directory of message templates (default: the shipped templates/)"},
	{"plugins", NG_CONF_STRING, 0, NULL, NULL, 0, 0, NULL,
	 "directory of channel plugins, *.so (default: the built or installed plugins)"},
	END,
};

static const struct ng_conf_field workflows_fields[] = {
	{"lease_ms", NG_CONF_INT, 0, "30000", NULL, 200, 3600000, NULL,
	 "how long a node holds a claimed instance; a crashed node's work is taken over after this"},
	{"batch", NG_CONF_INT, 0, "64", NULL, 1, 10000, NULL,
	 "due instances (or inbox events) claimed at once"},
	{"poll_ms", NG_CONF_INT, 0, "5000", NULL, 10, 600000, NULL,
	 "look for other nodes' work at least this often (NOTIFY usually comes first)"},
	END,
};

static const struct ng_conf_field senders_fields[] = {
	{"threads", NG_CONF_INT, 0, "4", NULL, 1, 256, NULL,
	 "threads for blocking channel libraries (libesmtp)"},
	END,
};

static const struct ng_conf_field admin_fields[] = {
	{"api_key", NG_CONF_STRING, 0, NULL, NULL, 0, 0, NULL,
	 "bearer key for the admin API (/v1/customers/<id>/export|forget); unset: no admin API"},
	END,
};

static const struct ng_conf_field retention_fields[] = {
	{"events_days", NG_CONF_INT, 0, "0", NULL, 0, 36500, NULL,
	 "events received longer ago are deleted (0: kept forever)"},
	{"messages_days", NG_CONF_INT, 0, "0", NULL, 0, 36500, NULL,
	 "sent, failed and skipped messages older than this are deleted (0: kept forever)"},
	{"interval_s", NG_CONF_INT, 0, "3600", NULL, 60, 604800, NULL,
	 "how often the purge runs"},
	END,
};

static const struct ng_conf_field quiet_hours_fields[] = {
	{"sms", NG_CONF_STRING, 0, "08:00-21:00", NULL, 0, 0, NULL,
	 "when texts may go out, \"HH:MM-HH:MM\" in the recipient's time zone (\"\": any time)"},
	{"email", NG_CONF_STRING, 0, NULL, NULL, 0, 0, NULL,
	 "when email may go out, \"HH:MM-HH:MM\" local (unset: any time)"},
	{"messenger", NG_CONF_STRING, 0, NULL, NULL, 0, 0, NULL,
	 "when Messenger messages may go out, \"HH:MM-HH:MM\" local (unset: any time)"},
	END,
};

static const struct ng_conf_field region_fields[] = {
	{"prefix", NG_CONF_STRING, 1, NULL, NULL, 0, 0, NULL,
	 "phone prefix of the region, e.g. \"+33\"; the longest matching prefix wins"},
	{"sms", NG_CONF_STRING, 0, NULL, NULL, 0, 0, NULL,
	 "the region's sending window for texts, \"HH:MM-HH:MM\" local"},
	{"email", NG_CONF_STRING, 0, NULL, NULL, 0, 0, NULL, "the region's window for email"},
	{"messenger", NG_CONF_STRING, 0, NULL, NULL, 0, 0, NULL,
	 "the region's window for Messenger"},
	END,
};

static const struct ng_conf_field cap_fields[] = {
	{"channel", NG_CONF_STRING, 0, "any", "email|sms|messenger|any", 0, 0, NULL,
	 "which marketing messages count: one channel's, or every channel's"},
	{"max", NG_CONF_INT, 1, NULL, NULL, 0, 1000, NULL,
	 "at most this many marketing messages per customer within `per`"},
	{"per", NG_CONF_STRING, 1, NULL, NULL, 0, 0, NULL, "the period: \"1d\", \"7d\", \"12h\""},
	END,
};

static const struct ng_conf_field double_opt_in_fields[] = {
	{"email", NG_CONF_BOOL, 0, "false", NULL, 0, 0, NULL,
	 "an email opt-in becomes pending, a confirmation email goes out, marketing waits for its link"},
	{"template", NG_CONF_STRING, 0, "confirm_subscription", NULL, 0, 0, NULL,
	 "the confirmation message's template (transactional; shows {{ confirm_url }})"},
	{"hold", NG_CONF_STRING, 0, "7d", NULL, 0, 0, NULL,
	 "how long marketing email waits for a pending consent to be confirmed before it is dropped"},
	END,
};

static const struct ng_conf_field policy_fields[] = {
	{"transactional_exempt", NG_CONF_BOOL, 0, "true", NULL, 0, 0, NULL,
	 "transactional messages ignore quiet hours (caps never apply to them)"},
	{"quiet_hours", NG_CONF_TABLE, 0, NULL, NULL, 0, 0, quiet_hours_fields,
	 "sending windows per channel in the recipient's time zone (the store's when unknown)"},
	{"regions", NG_CONF_LIST, 0, NULL, NULL, 0, 0, region_fields,
	 "stricter windows by recipient phone prefix"},
	{"caps", NG_CONF_LIST, 0, NULL, NULL, 0, 0, cap_fields,
	 "frequency caps on marketing messages, across workflows"},
	{"double_opt_in", NG_CONF_TABLE, 0, NULL, NULL, 0, 0, double_opt_in_fields,
	 "confirmed opt-in for email (docs/policy.md)"},
	END,
};

static const struct ng_conf_field channel_fields[] = {
	{"name", NG_CONF_STRING, 1, NULL, NULL, 0, 0, NULL,
	 "the instance's name, in logs and metrics and as /v1/webhooks/<name>"},
	{"plugin", NG_CONF_STRING, 1, NULL, NULL, 0, 0, NULL,
	 "the plugin file in paths.plugins, without .so: smtp, file…"},
	{"channel", NG_CONF_STRING, 0, NULL, NULL, 0, 0, NULL,
	 "the channel it serves: email, sms, messenger (default: the plugin's first)"},
	{"config", NG_CONF_ANY, 0, NULL, NULL, 0, 0, NULL,
	 "the plugin's own keys, checked against what it declares (docs/plugins.md)"},
	{"concurrency", NG_CONF_INT, 0, "16", NULL, 1, 10000, NULL,
	 "messages this instance may have in flight (sent, result not yet recorded)"},
	{"rate", NG_CONF_NUMBER, 0, "0", NULL, 0, 0, NULL,
	 "messages per second through this instance (0: no limit); provider back-pressure slows it"},
	{"burst", NG_CONF_NUMBER, 0, "0", NULL, 0, 0, NULL,
	 "token-bucket depth for rate (0: one second's worth)"},
	END,
};

static const struct ng_conf_field dispatch_fields[] = {
	{"batch", NG_CONF_INT, 0, "64", NULL, 1, 10000, NULL,
	 "most messages one claim takes for one channel instance"},
	{"lease_ms", NG_CONF_INT, 0, "120000", NULL, 100, 86400000, NULL,
	 "a claimed message not finished in this time is taken over by another dispatcher"},
	{"poll_ms", NG_CONF_INT, 0, "5000", NULL, 10, 3600000, NULL,
	 "look for due messages at least this often (besides NOTIFY wake-ups)"},
	{"retry_base_ms", NG_CONF_INT, 0, "60000", NULL, 1, 86400000, NULL,
	 "first retry delay; doubled per attempt, with jitter"},
	{"retry_max_ms", NG_CONF_INT, 0, "21600000", NULL, 1, 604800000, NULL,
	 "cap of the retry delay"},
	{"max_attempts", NG_CONF_INT, 0, "10", NULL, 1, 1000, NULL,
	 "a message still failing temporarily after this many attempts fails"},
	{"reconcile_ms", NG_CONF_INT, 0, "60000", NULL, 10, 86400000, NULL,
	 "ask the provider about messages left ambiguous this often (plugins that can reconcile)"},
	END,
};

static const struct ng_conf_field unsubscribe_fields[] = {
	{"secret", NG_CONF_STRING, 0, NULL, NULL, 0, 0, NULL,
	 "HMAC key signing unsubscribe and confirm links; use env() or file(). Unset: a random key per start (links break on restart)"},
	END,
};

static const struct ng_conf_field clock_fields[] = {
	{"speed", NG_CONF_NUMBER, 0, "1", NULL, 0, 0, NULL,
	 "FOR DEMOS AND TESTS ONLY: workflow time runs this many times faster than real time (3600: a second is an hour)"},
	END,
};

static const struct ng_conf_field api_key_fields[] = {
	{"name", NG_CONF_STRING, 1, NULL, NULL, 0, 0, NULL, "who uses the key, for the log"},
	{"key", NG_CONF_STRING, 1, NULL, NULL, 0, 0, NULL,
	 "the key: sent as Authorization: Bearer KEY, or used to sign X-Nudge-Signature; use env() or file()"},
	END,
};

static const struct ng_conf_field shop_fields[] = {
	{"shop", NG_CONF_STRING, 0, NULL, NULL, 0, 0, NULL,
	 "the shop's domain as Shopify sends it in X-Shopify-Shop-Domain (my-shop.myshopify.com); unset: any shop"},
	{"secret", NG_CONF_STRING, 1, NULL, NULL, 0, 0, NULL,
	 "the app's client secret that signs the webhooks (X-Shopify-Hmac-Sha256); two entries for one shop while rotating"},
	END,
};

static const struct ng_conf_field woo_fields[] = {
	{"site", NG_CONF_STRING, 0, NULL, NULL, 0, 0, NULL,
	 "the store's URL as sent in X-WC-Webhook-Source (https://shop.example/); unset: any site"},
	{"secret", NG_CONF_STRING, 1, NULL, NULL, 0, 0, NULL,
	 "the webhook's secret (X-WC-Webhook-Signature)"},
	END,
};

static const struct ng_conf_field intake_fields[] = {
	{"mappers", NG_CONF_STRING, 0, NULL, NULL, 0, 0, NULL,
	 "directory of the payload mappers shopify.lua, woocommerce.lua, api.lua (default: the shipped contrib/mappers)"},
	{"default_country_code", NG_CONF_STRING, 0, NULL, NULL, 0, 0, NULL,
	 "country calling code for phone numbers written without one (\"1\", \"49\"); unset: such numbers are dropped"},
	{"api_keys", NG_CONF_LIST, 0, NULL, NULL, 0, 0, api_key_fields,
	 "keys that may POST /v1/events"},
	{"shopify", NG_CONF_LIST, 0, NULL, NULL, 0, 0, shop_fields,
	 "Shopify shops whose webhooks POST /v1/webhooks/shopify accepts"},
	{"woocommerce", NG_CONF_LIST, 0, NULL, NULL, 0, 0, woo_fields,
	 "WooCommerce webhooks that POST /v1/webhooks/woocommerce accepts"},
	{"commit_timeout_ms", NG_CONF_INT, 0, "4000", NULL, 100, 600000, NULL,
	 "answer 503 when events are not committed within this time (Shopify gives up after 5 s)"},
	{"retry_after_s", NG_CONF_INT, 0, "5", NULL, 1, 3600, NULL,
	 "the Retry-After of a 503 answer"},
	{"max_batch", NG_CONF_INT, 0, "256", NULL, 1, 10000, NULL,
	 "events in one group commit"},
	{"max_inflight", NG_CONF_INT, 0, "0", NULL, 0, 256, NULL,
	 "group commits at the database at once (0: database.pool_size)"},
	END,
};

const struct ng_conf_field ng_conf_schema[] = {
	{"database", NG_CONF_TABLE, 1, NULL, NULL, 0, 0, database_fields, "PostgreSQL"},
	{"http", NG_CONF_TABLE, 0, NULL, NULL, 0, 0, http_fields, "the HTTP listener"},
	{"http_client", NG_CONF_TABLE, 0, NULL, NULL, 0, 0, http_client_fields,
	 "the shared HTTP client channel plugins send with"},
	{"log", NG_CONF_TABLE, 0, NULL, NULL, 0, 0, log_fields, "logging to stderr"},
	{"store", NG_CONF_TABLE, 0, NULL, NULL, 0, 0, store_fields, "the store nudge works for"},
	{"paths", NG_CONF_TABLE, 0, NULL, NULL, 0, 0, paths_fields, "where files are"},
	{"senders", NG_CONF_TABLE, 0, NULL, NULL, 0, 0, senders_fields, "the sender thread pool"},
	{"intake", NG_CONF_TABLE, 0, NULL, NULL, 0, 0, intake_fields,
	 "event intake: /v1/events and the store webhooks"},
	{"workflows", NG_CONF_TABLE, 0, NULL, NULL, 0, 0, workflows_fields,
	 "the workflow scheduler (docs/workflows.md)"},
	{"channels", NG_CONF_LIST, 0, NULL, NULL, 0, 0, channel_fields,
	 "channel plugin instances; several may share a plugin (two SMTP relays)"},
	{"policy", NG_CONF_TABLE, 0, NULL, NULL, 0, 0, policy_fields,
	 "contact pressure: quiet hours and frequency caps (docs/policy.md)"},
	{"admin", NG_CONF_TABLE, 0, NULL, NULL, 0, 0, admin_fields, "the admin HTTP API"},
	{"retention", NG_CONF_TABLE, 0, NULL, NULL, 0, 0, retention_fields,
	 "how long events and messages are kept"},
	{"dispatch", NG_CONF_TABLE, 0, NULL, NULL, 0, 0, dispatch_fields, "the message dispatcher"},
	{"unsubscribe", NG_CONF_TABLE, 0, NULL, NULL, 0, 0, unsubscribe_fields,
	 "unsubscribe links"},
	{"clock", NG_CONF_TABLE, 0, NULL, NULL, 0, 0, clock_fields, "the daemon's clock"},
	{"shutdown_timeout_ms", NG_CONF_INT, 0, "10000", NULL, 100, 600000, NULL,
	 "on SIGTERM, in-flight work gets this long to finish"},
	END,
};
