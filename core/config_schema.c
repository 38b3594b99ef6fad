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

static const struct ng_conf_field channel_fields[] = {
	{"name", NG_CONF_STRING, 1, NULL, NULL, 0, 0, NULL,
	 "the instance's name, in logs and metrics and as /v1/webhooks/<name>"},
	{"plugin", NG_CONF_STRING, 1, NULL, NULL, 0, 0, NULL,
	 "the plugin file in paths.plugins, without .so: smtp, file…"},
	{"channel", NG_CONF_STRING, 0, NULL, NULL, 0, 0, NULL,
	 "the channel it serves: email, sms, messenger (default: the plugin's first)"},
	{"config", NG_CONF_ANY, 0, NULL, NULL, 0, 0, NULL,
	 "the plugin's own keys, checked against what it declares (docs/plugins.md)"},
	END,
};

const struct ng_conf_field ng_conf_schema[] = {
	{"database", NG_CONF_TABLE, 1, NULL, NULL, 0, 0, database_fields, "PostgreSQL"},
	{"http", NG_CONF_TABLE, 0, NULL, NULL, 0, 0, http_fields, "the HTTP listener"},
	{"log", NG_CONF_TABLE, 0, NULL, NULL, 0, 0, log_fields, "logging to stderr"},
	{"store", NG_CONF_TABLE, 0, NULL, NULL, 0, 0, store_fields, "the store nudge works for"},
	{"paths", NG_CONF_TABLE, 0, NULL, NULL, 0, 0, paths_fields, "where files are"},
	{"senders", NG_CONF_TABLE, 0, NULL, NULL, 0, 0, senders_fields, "the sender thread pool"},
	{"workflows", NG_CONF_TABLE, 0, NULL, NULL, 0, 0, workflows_fields,
	 "the workflow scheduler (docs/workflows.md)"},
	{"channels", NG_CONF_LIST, 0, NULL, NULL, 0, 0, channel_fields,
	 "channel plugin instances; several may share a plugin (two SMTP relays)"},
	{"shutdown_timeout_ms", NG_CONF_INT, 0, "10000", NULL, 100, 600000, NULL,
	 "on SIGTERM, in-flight work gets this long to finish"},
	END,
};
