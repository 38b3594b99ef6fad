/*
 * nudge/plugin.h — the channel plugin ABI: the one contract a nudge plugin compiles against.
 *
 * A plugin is a shared object (`NAME.so`) that exports one function, nudge_plugin_entry(),
 * returning a static descriptor: which ABI it was built for, its name and version, the channels it
 * serves, the configuration keys it takes, and its callbacks. nudge loads it with
 * dlopen(RTLD_NOW|RTLD_LOCAL), checks the descriptor, validates each instance's configuration
 * against the declared keys, and only then calls init(). A plugin never links against nudge:
 * everything it may ask of the daemon arrives as the table of function pointers in struct
 * nudge_host (log, configuration, HTTP, sender threads for blocking libraries, timers, metrics,
 * time, and since 1.1 reports of what a provider said later: delivery statuses, consent, events).
 * It never sees the event loop or the database. An accepted plugin stays mapped until the process
 * exits. This header needs only the C standard library, so a plugin outside the nudge
 * tree builds with
 *
 *   cc -std=c11 -shared -fPIC -Wl,-z,defs -I/usr/local/include -o NAME.so NAME.c
 *
 * (see docs/plugins.md and contrib/plugin-example/).
 *
 * Threads. nudge calls every callback on its loop thread, and the plugin must never block there.
 * Blocking work goes to host->run_on_sender(). Host services marked "any thread" may be called from
 * a sender thread as well; the others only from the loop thread (inside a callback nudge made).
 *
 * Memory. Strings are UTF-8 and NUL-terminated. What nudge passes in (a message, a request, the
 * configuration) stays valid for as long as the documentation of that call says and no longer; what
 * a plugin passes back (a result, a response) need only live until the call it is passed to
 * returns, because nudge copies it.
 *
 * Growth. Structs that cross the boundary start with their size (`struct_size`), so either side can
 * tell which fields the other knows. A minor version only appends fields or fills a reserved slot;
 * check with NUDGE_HAS_FIELD() (or host->abi_minor) before using something newer than 1.0.
 */
#ifndef NUDGE_PLUGIN_H
#define NUDGE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The ABI version. Major: a change that breaks plugins built before it (nudge refuses a plugin
 * whose major differs from its own). Minor: compatible additions (nudge loads plugins of any minor
 * of its major; a plugin built for a newer minor checks host->abi_minor before using newer
 * services).
 *
 * History (newest first; never edit an entry, add one):
 *   1.2  2026-12-02  Identity links. Event report: customer_ref, customer_email, customer_phone
 *                    (appended): the provider says whose address this is (Messenger PSIDs).
 *   1.1  2026-12-02  Provider feedback. Send result: segments, encoding (appended). Descriptor:
 *                    reconcile (was reserved[0]). Host services report_status, report_consent,
 *                    report_event (were reserved[0..2]) with structs nudge_status_report,
 *                    nudge_consent_report, nudge_event_report. http_request is served.
 *   1.0  2026-11-24  First version. Descriptor with config keys and callbacks init, send, inbound,
 *                    health, shutdown; message, send result, inbound request/response, health;
 *                    host services log, instance_name, config_*, http_request, sender_threads,
 *                    run_on_sender, timer_start/timer_cancel, metric_add, now_ms.
 */
#define NUDGE_PLUGIN_ABI_MAJOR 1
#define NUDGE_PLUGIN_ABI_MINOR 2

/* The one symbol nudge looks up. */
#define NUDGE_PLUGIN_ENTRY_SYMBOL "nudge_plugin_entry"

#if defined(__GNUC__) || defined(__clang__)
#define NUDGE_PLUGIN_EXPORT     __attribute__((visibility("default")))
#define NUDGE_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define NUDGE_PLUGIN_EXPORT
#define NUDGE_PRINTF(fmt, args)
#endif

/* Whether a struct that starts with struct_size holds `field` (its sender knows that field). */
#define NUDGE_HAS_FIELD(ptr, type, field)                                                          \
	((ptr)->struct_size >= offsetof(type, field) + sizeof(((type *)0)->field))

struct nudge_host;
struct nudge_instance; /* the host's record of one plugin instance; opaque to the plugin */
struct nudge_timer;    /* a pending timer; opaque */

/* A header line: a name and a value (without CR or LF). */
struct nudge_header {
	const char *name;
	const char *value;
};

/* ---------------------------------------------------------------------------------------------
 * Configuration keys. Instances are configured in nudge.conf.lua:
 *
 *   channels = {
 *     { name = "email", plugin = "smtp", config = { host = "mx.example", port = 587 } },
 *   }
 *
 * nudge checks `config` against the keys the descriptor declares before init() runs: an unknown
 * key, a missing required one or a value of the wrong type refuses the instance with a sentence.
 * Defaults are filled in, so host->config_*() of a declared key always answers.
 */
enum {
	NUDGE_CONFIG_STRING = 1,
	NUDGE_CONFIG_INT = 2,    /* a Lua integer (int64_t) */
	NUDGE_CONFIG_NUMBER = 3, /* any Lua number (double); an integer is accepted */
	NUDGE_CONFIG_BOOL = 4,
};

struct nudge_config_key {
	const char *name; /* "host"; letters, digits and '_' */
	int32_t type;     /* NUDGE_CONFIG_* */
	int32_t required; /* 1: the instance is refused without it */
	const char *def;  /* the default as text ("587", "true", "0.5", "localhost"); NULL: none */
	const char *help; /* one line for docs and `nudge plugins` */
};

/* ---------------------------------------------------------------------------------------------
 * Messages and send results.
 */
enum {
	/* Needs consent; carries unsubscribe headers. */
	NUDGE_PURPOSE_MARKETING = 1,
	/* Receipts, password resets: exempt from caps and from one-click unsubscribe. */
	NUDGE_PURPOSE_TRANSACTIONAL = 2,
};

/*
 * One message to one recipient. Channels use the fields that fit them: email uses subject, text and
 * html; SMS and Messenger use body. Unused fields are NULL (headers: NULL and 0). The message and
 * everything it points to stay valid until the plugin calls the send completion.
 */
struct nudge_message {
	uint32_t struct_size; /* sizeof(struct nudge_message) of the host */
	int32_t purpose;      /* NUDGE_PURPOSE_* */
	int64_t id;           /* the outbox row; for logs and correlation */
	uint32_t attempt;     /* 1 for the first try, 2 for the first retry… */
	uint32_t reserved0;
	/*
	 * Stable across attempts: the same message retried carries the same key. Use it as the
	 * email Message-ID (left of the @), as an HTTP idempotency key, or in a status-callback
	 * URL, so that a copy sent twice (the provider accepted, nudge did not learn it) can be
	 * recognised.
	 */
	const char *key;
	const char *channel;        /* "email", "sms", "messenger" */
	const char *recipient;      /* address, E.164 number, page-scoped id */
	const char *recipient_name; /* display name; NULL if unknown */
	const char *from;           /* sender address or number; NULL: the instance's default */
	const char *from_name;      /* display name of the sender; NULL: the instance's default */
	const char *reply_to;       /* NULL: none */
	const char *subject;
	const char *text; /* plain-text body */
	const char *html; /* HTML body */
	const char *body; /* short-message body (SMS, Messenger) */
	/*
	 * The recipient's one-click unsubscribe URL (RFC 8058), for marketing mail; NULL for
	 * transactional mail. Email plugins turn it into List-Unsubscribe and
	 * List-Unsubscribe-Post.
	 */
	const char *unsubscribe_url;
	const struct nudge_header *headers; /* extra headers (Feedback-ID, X-Campaign…) */
	size_t nheaders;
};

enum {
	/* The provider accepted it; provider_id says under which id. */
	NUDGE_SEND_SENT = 1,
	/* Not sent; try again later (not before retry_after_ms, if set). */
	NUDGE_SEND_RETRY = 2,
	/* Never going to work; suppress says whether the address itself is bad. */
	NUDGE_SEND_FAILED = 3,
	/* The provider may have accepted it (a timeout after the request went out): nudge
	 * reconciles instead of resending blindly. */
	NUDGE_SEND_AMBIGUOUS = 4,
};

struct nudge_send_result {
	uint32_t struct_size; /* sizeof(struct nudge_send_result) of the plugin */
	int32_t status;       /* NUDGE_SEND_* */
	/* SENT: the provider's id for the message (SMTP queue id, Twilio SM…); else NULL. */
	const char *provider_id;
	/* One line for the log and the attempt row: "550 5.1.1 no such user". */
	const char *reason;
	/* RETRY: the provider asked to wait this long; 0: nudge's own backoff. */
	int64_t retry_after_ms;
	/* FAILED: 1 if the recipient address itself is bad (hard bounce, invalid number, opted out
	 * at the provider), so nudge suppresses it. */
	int32_t suppress;
	/* The provider's status code (SMTP reply, HTTP status); 0: none. */
	int32_t code;
	/* 1.1: the billable parts the provider splits the message into (SMS segments); 0: unknown
	 * or not applicable. */
	int32_t segments;
	uint32_t reserved1;
	/* 1.1: how the body was encoded for the wire ("GSM-7", "UCS-2"); NULL: not applicable. */
	const char *encoding;
};

/* The size of a 1.0 send result: the host accepts any result at least this large. */
#define NUDGE_SEND_RESULT_SIZE_1_0 40

/* Called exactly once per send, on the loop thread, never from inside send(). */
typedef void nudge_send_done_fn(void *done_arg, const struct nudge_send_result *result);

/* ---------------------------------------------------------------------------------------------
 * Inbound webhooks: POST /v1/webhooks/<instance name>[/more] reaches the instance's inbound().
 */
struct nudge_inbound_request {
	uint32_t struct_size;
	uint32_t reserved0;
	const char *method; /* "GET", "POST" */
	const char *path;   /* what follows /v1/webhooks/<instance>: "" or "/status" */
	const char *query;  /* the raw query string without '?'; "" if none */
	const char *url; /* the public URL the provider called (for signatures such as Twilio's) */
	const struct nudge_header *headers;
	size_t nheaders;
	const char *body; /* the raw body, exactly as received; not NUL-terminated */
	size_t body_len;
};

struct nudge_inbound_response {
	uint32_t struct_size;
	int32_t status;           /* HTTP status */
	const char *content_type; /* NULL: text/plain */
	const char *body;
	size_t body_len;
	const struct nudge_header *headers; /* extra response headers */
	size_t nheaders;
};

/* Called exactly once per request, on the loop thread; may be called from inside inbound(). */
typedef void nudge_inbound_done_fn(void *done_arg, const struct nudge_inbound_response *response);

/* ---------------------------------------------------------------------------------------------
 * Health, for /healthz.
 */
enum {
	NUDGE_HEALTH_OK = 1,
	NUDGE_HEALTH_DEGRADED = 2, /* working, but something is off (retries piling up) */
	NUDGE_HEALTH_DOWN = 3,     /* cannot send now (relay unreachable, credentials refused) */
};

struct nudge_health {
	uint32_t struct_size; /* set by the host, which also zeroes the rest */
	int32_t status;       /* NUDGE_HEALTH_* */
	char detail[240];     /* one line: "relay mx.example:587 refused our credentials" */
};

/* ---------------------------------------------------------------------------------------------
 * The descriptor, returned by nudge_plugin_entry(). It and everything it points to are static.
 */
struct nudge_plugin {
	/* These three come first in every ABI version, so that any nudge can read them. */
	uint32_t abi_major;   /* NUDGE_PLUGIN_ABI_MAJOR */
	uint32_t abi_minor;   /* NUDGE_PLUGIN_ABI_MINOR */
	uint32_t struct_size; /* sizeof(struct nudge_plugin) */
	uint32_t reserved0;

	const char *name;                           /* "smtp" */
	const char *version;                        /* the plugin's own version, "1.0.0" */
	const char *description;                    /* one line */
	const char *const *channels;                /* NULL-terminated: {"email", NULL} */
	const struct nudge_config_key *config_keys; /* ends with an entry whose name is NULL */

	/*
	 * Starts one instance (a plugin may run several, each with its own configuration: two SMTP
	 * relays). `self` identifies the instance in every host call; its configuration is read
	 * with host->config_*(self, key). On success store the instance's state in *state and
	 * return 0; on failure write one sentence to err (no trailing period needed), leave nothing
	 * running and return a negative errno value. Required.
	 */
	int (*init)(const struct nudge_host *host, struct nudge_instance *self, void **state,
	            char *err, size_t errlen);

	/*
	 * Sends one message. Never blocks and never calls done from inside send: done(done_arg,
	 * result) runs later, exactly once, on the loop thread. Required.
	 */
	void (*send)(void *state, const struct nudge_message *msg, nudge_send_done_fn *done,
	             void *done_arg);

	/* Handles a webhook call. The request stays valid until done is called. Optional (NULL). */
	void (*inbound)(void *state, const struct nudge_inbound_request *req,
	                nudge_inbound_done_fn *done, void *done_arg);

	/* Fills in out->status and out->detail without blocking. Optional (NULL: always OK). */
	void (*health)(void *state, struct nudge_health *out);

	/*
	 * Stops the instance: no send() follows. Finish or give back (NUDGE_SEND_RETRY) every send
	 * still outstanding, cancel timers, wait for sender-thread work, free the state, then call
	 * done(arg) once (from inside shutdown if nothing is pending). Required.
	 */
	void (*shutdown)(void *state, void (*done)(void *arg), void *arg);

	/*
	 * 1.1. Looks up a message whose earlier attempt ended NUDGE_SEND_AMBIGUOUS (the provider
	 * may have it), before nudge sends it again; msg is that message, same key. done(done_arg,
	 * result) as for send: SENT (found; provider_id), RETRY (the provider does not have it:
	 * safe to send), FAILED (found, and it failed), or AMBIGUOUS (still cannot tell). Same
	 * rules as send: never blocks, done exactly once, later. Optional (NULL: nudge decides by
	 * itself).
	 */
	void (*reconcile)(void *state, const struct nudge_message *msg, nudge_send_done_fn *done,
	                  void *done_arg);

	void *reserved[7]; /* NULL; later minors fill these */
};

/* ---------------------------------------------------------------------------------------------
 * Host services: an append-only table. New services take a reserved slot and bump the minor.
 */
enum {
	NUDGE_LOG_DEBUG = 0,
	NUDGE_LOG_INFO = 1,
	NUDGE_LOG_WARN = 2,
	NUDGE_LOG_ERROR = 3,
};

/* An outgoing HTTP request, run on nudge's shared HTTP client; copied before http_request
 * returns. */
struct nudge_http_request {
	uint32_t struct_size;
	uint32_t reserved0;
	const char *method; /* "POST" */
	const char *url;    /* "https://api.twilio.com/2010-04-01/…" */
	const struct nudge_header *headers;
	size_t nheaders;
	const char *body;
	size_t body_len;
	const char *username; /* HTTP Basic credentials; NULL: none */
	const char *password;
	int64_t timeout_ms;  /* the whole transfer; 0: nudge's default */
	const char *ca_file; /* PEM bundle to verify the server with; NULL: the system's */
};

struct nudge_http_response {
	uint32_t struct_size;
	int32_t status; /* HTTP status; 0 when no response arrived */
	int32_t error;  /* 0, or a negative errno value (-ETIMEDOUT, -ECONNREFUSED…) */
	/* 1 if the request (or part of it) went out before an error: the provider may have acted.
	 */
	int32_t request_sent;
	const char *error_text; /* with error: one line */
	const struct nudge_header *headers;
	size_t nheaders;
	const char *body; /* not NUL-terminated */
	size_t body_len;
};

typedef void nudge_http_done_fn(void *arg, const struct nudge_http_response *response);

/* ---------------------------------------------------------------------------------------------
 * 1.1: what a provider tells a plugin later (status callbacks, replies), reported to nudge.
 * Reports are copied before the report_* call returns.
 */

/* Delivery states, in the order they can follow each other: a report whose state ranks below
 * the one recorded is stale (callbacks arrive out of order) and nudge ignores it. */
enum {
	NUDGE_DELIVERY_QUEUED = 1,      /* accepted, waiting at the provider */
	NUDGE_DELIVERY_SENT = 2,        /* handed to the carrier / network */
	NUDGE_DELIVERY_DELIVERED = 3,   /* final: on the handset */
	NUDGE_DELIVERY_UNDELIVERED = 4, /* final: the carrier could not deliver it */
	NUDGE_DELIVERY_FAILED = 5,      /* final: the provider could not send it */
};

/* The rank of a delivery state for ordering (queued 1, sent 2, the final states 3). */
#define NUDGE_DELIVERY_RANK(s) ((s) >= NUDGE_DELIVERY_DELIVERED ? 3 : (s))

struct nudge_status_report {
	uint32_t struct_size;
	int32_t status;              /* NUDGE_DELIVERY_* */
	const char *provider_id;     /* the id the send result carried ("SM…") */
	const char *message_key;     /* nudge_message.key when the provider echoes it; else NULL */
	const char *provider_status; /* the provider's own word: "undelivered" */
	const char *recipient;       /* the address it went to (E.164…); NULL if unknown */
	int32_t error_code;          /* the provider's error code (Twilio 30003…); 0: none */
	/* 1: the address is bad for good (an unknown or landline number): suppress it. */
	int32_t suppress;
	int64_t occurred_ms; /* when it happened by the provider's account; 0: now */
};

/* A recipient withdrew (STOP) or gave again (START) consent to be messaged on a channel. */
struct nudge_consent_report {
	uint32_t struct_size;
	int32_t granted;         /* 0: withdrawn, 1: given */
	const char *channel;     /* "sms" */
	const char *address;     /* the recipient's address on that channel (E.164…) */
	const char *keyword;     /* what they sent, normalised ("STOP"); NULL if not a keyword */
	const char *source;      /* one line: "inbound STOP", "provider error 21610" */
	const char *provider_id; /* the provider's id of the message that said so; NULL: none */
	int64_t occurred_ms;     /* 0: now */
};

/* An event about a customer, as if it had arrived at POST /v1/events. */
struct nudge_event_report {
	uint32_t struct_size;
	uint32_t reserved0;
	const char *name;            /* "sms.received" */
	const char *channel;         /* the channel the customer is known by on: "sms" */
	const char *address;         /* their address on it, which finds the customer */
	const char *dedupe_key;      /* the provider's id: a redelivered webhook is one event */
	const char *properties_json; /* a JSON object; NULL: {} */
	int64_t occurred_ms;         /* 0: now */
	/*
	 * 1.2: whose address this is, when the provider's event says so — a Messenger PSID is
	 * page-scoped and means nothing until it is linked. Before the event is attributed, nudge
	 * records `address` on `channel` as an identity of the customer found by customer_ref (an
	 * opaque reference the store minted and put into an m.me link or a plugin's ref), else by
	 * customer_email, else by customer_phone (both as the person typed them; nudge
	 * normalises). All NULL: no link, the address alone finds the customer. A 1.1 host ignores
	 * these fields (check host->abi_minor >= 2).
	 */
	const char *customer_ref;
	const char *customer_email;
	const char *customer_phone;
};

/* The size of a 1.1 event report: the host accepts any report at least this large. */
#define NUDGE_EVENT_REPORT_SIZE_1_1 56

/* status 0: recorded (committed); a negative errno value: not recorded (answer the provider so
 * that it retries, if it does). */
typedef void nudge_report_done_fn(void *arg, int status);

struct nudge_host {
	uint32_t struct_size; /* sizeof(struct nudge_host) of the daemon */
	uint32_t abi_major;
	uint32_t abi_minor;
	uint32_t reserved0;
	const char *version; /* nudge's version, "0.1.0" */

	/* One log record, tagged with the instance. Any thread. level is NUDGE_LOG_*. */
	void (*log)(struct nudge_instance *self, int level, const char *fmt, ...)
	    NUDGE_PRINTF(3, 4);
	/* The instance's name from nudge.conf.lua ("email"). Any thread. */
	const char *(*instance_name)(struct nudge_instance *self);

	/*
	 * The instance's configuration, checked against the declared keys and defaulted. Any
	 * thread. A key the plugin did not declare, or asking with the wrong type, logs an error
	 * and gives NULL / 0. config_string gives NULL for an optional key with no value and no
	 * default; the string stays valid until the instance has shut down.
	 */
	const char *(*config_string)(struct nudge_instance *self, const char *key);
	int64_t (*config_int)(struct nudge_instance *self, const char *key);
	double (*config_number)(struct nudge_instance *self, const char *key);
	int (*config_bool)(struct nudge_instance *self, const char *key);
	/* 1 if nudge.conf.lua set the key, 0 if it holds its default (or nothing). Any thread. */
	int (*config_isset)(struct nudge_instance *self, const char *key);

	/*
	 * Starts an HTTP request. Returns 0 and later calls done(arg, response) once on the loop
	 * thread (the response lives until done returns), or returns a negative errno value and
	 * never calls done (-ENOSYS: this nudge has no HTTP client).
	 */
	int (*http_request)(struct nudge_instance *self, const struct nudge_http_request *req,
	                    nudge_http_done_fn *done, void *arg);

	/* How many sender threads there are: thread_index below is 0..n-1. Any thread. */
	int (*sender_threads)(struct nudge_instance *self);
	/*
	 * Runs work(arg, thread_index) on one of nudge's sender threads, which exist for blocking
	 * libraries (libesmtp); never on the loop thread. done(arg, status) then runs on the loop
	 * thread, exactly once: status 0, or -ECANCELED if the daemon stopped before work started
	 * (work was not called). At most one job runs on a given thread at a time, so state indexed
	 * by thread_index needs no lock. Returns 0, or -ESHUTDOWN once the daemon is stopping.
	 */
	int (*run_on_sender)(struct nudge_instance *self, void (*work)(void *arg, int thread_index),
	                     void (*done)(void *arg, int status), void *arg);

	/*
	 * Calls cb(arg) once on the loop thread after delay_ms (0: on the next loop turn, never
	 * inside timer_start). The handle is valid until cb starts or timer_cancel returns; cancel
	 * only a timer that has not fired. Timers follow nudge's clock, which is virtual under
	 * simulation. NULL once the instance has finished its shutdown.
	 */
	struct nudge_timer *(*timer_start)(struct nudge_instance *self, int64_t delay_ms,
	                                   void (*cb)(void *arg), void *arg);
	void (*timer_cancel)(struct nudge_instance *self, struct nudge_timer *timer);

	/* Adds delta to the instance's counter `name` ([a-z0-9_]+), shown on /metrics. Any thread.
	 */
	void (*metric_add)(struct nudge_instance *self, const char *name, int64_t delta);

	/* Milliseconds since the Unix epoch, on nudge's clock. Any thread. */
	int64_t (*now_ms)(struct nudge_instance *self);

	/*
	 * 1.1. Report what a provider said later: a delivery status of a message this instance
	 * sent, a consent given or withdrawn at the provider, an event about a customer. Each
	 * returns 0 and calls done(arg, status) once on the loop thread — possibly before it
	 * returns — or returns a negative errno value and never calls done (-ENOSYS: this nudge
	 * records no such report; -EINVAL: a required field is missing). Answer a webhook only
	 * after done, so that a 2xx means nudge has it. Loop thread.
	 */
	int (*report_status)(struct nudge_instance *self, const struct nudge_status_report *r,
	                     nudge_report_done_fn *done, void *arg);
	int (*report_consent)(struct nudge_instance *self, const struct nudge_consent_report *r,
	                      nudge_report_done_fn *done, void *arg);
	int (*report_event)(struct nudge_instance *self, const struct nudge_event_report *r,
	                    nudge_report_done_fn *done, void *arg);

	void (*reserved[13])(void); /* NULL; later minors fill these */
};

/* The entry point every plugin defines, exported: `NUDGE_PLUGIN_EXPORT const struct nudge_plugin
 * *nudge_plugin_entry(void) { return &my_descriptor; }`. */
NUDGE_PLUGIN_EXPORT const struct nudge_plugin *nudge_plugin_entry(void);
typedef const struct nudge_plugin *nudge_plugin_entry_fn(void);

/*
 * The sizes of ABI 1.2 on LP64 (x86-64, arm64). A change here is an ABI change: append instead, or
 * take a reserved slot, and record the version above.
 */
#ifdef __cplusplus
#define NUDGE_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define NUDGE_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif
#if defined(__LP64__) || defined(_LP64)
NUDGE_STATIC_ASSERT(sizeof(struct nudge_config_key) == 32, "nudge ABI: nudge_config_key changed");
NUDGE_STATIC_ASSERT(sizeof(struct nudge_message) == 136, "nudge ABI: nudge_message changed");
NUDGE_STATIC_ASSERT(sizeof(struct nudge_send_result) == 56, "nudge ABI: nudge_send_result changed");
NUDGE_STATIC_ASSERT(offsetof(struct nudge_send_result, segments) == NUDGE_SEND_RESULT_SIZE_1_0,
                    "nudge ABI: the 1.0 send result is a prefix of the 1.1 one");
NUDGE_STATIC_ASSERT(sizeof(struct nudge_inbound_request) == 72,
                    "nudge ABI: inbound request changed");
NUDGE_STATIC_ASSERT(sizeof(struct nudge_inbound_response) == 48,
                    "nudge ABI: inbound response changed");
NUDGE_STATIC_ASSERT(sizeof(struct nudge_health) == 248, "nudge ABI: nudge_health changed");
NUDGE_STATIC_ASSERT(sizeof(struct nudge_plugin) == 160, "nudge ABI: nudge_plugin changed");
NUDGE_STATIC_ASSERT(sizeof(struct nudge_http_request) == 88,
                    "nudge ABI: nudge_http_request changed");
NUDGE_STATIC_ASSERT(sizeof(struct nudge_http_response) == 56, "nudge ABI: http response changed");
NUDGE_STATIC_ASSERT(sizeof(struct nudge_host) == 264, "nudge ABI: nudge_host changed");
NUDGE_STATIC_ASSERT(sizeof(struct nudge_status_report) == 56, "nudge ABI: status report changed");
NUDGE_STATIC_ASSERT(sizeof(struct nudge_consent_report) == 56, "nudge ABI: consent report changed");
NUDGE_STATIC_ASSERT(sizeof(struct nudge_event_report) == 80, "nudge ABI: event report changed");
NUDGE_STATIC_ASSERT(offsetof(struct nudge_event_report, customer_ref) ==
                        NUDGE_EVENT_REPORT_SIZE_1_1,
                    "nudge ABI: the 1.1 event report is a prefix of the 1.2 one");
#endif
NUDGE_STATIC_ASSERT(offsetof(struct nudge_plugin, abi_major) == 0 &&
                        offsetof(struct nudge_plugin, abi_minor) == 4 &&
                        offsetof(struct nudge_plugin, struct_size) == 8,
                    "nudge ABI: the descriptor's first three fields are fixed forever");

#ifdef __cplusplus
}
#endif

#endif
