/*
 * smtp.c — the "smtp" channel plugin: email through an SMTP relay with libESMTP. This file owns the
 * descriptor and its config keys, an instance's start and stop, and the loop-thread side of
 * sending: messages are built as they arrive, queued, and handed to sender threads in batches, one
 * SMTP connection per batch. All sends made in one loop turn go out together, so a burst of mail
 * reuses one connection (and pipelines it) instead of opening one per message; at most
 * `connections` sessions run at once, one per sender thread. Results come back per message.
 */
#include "smtp.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const channels[] = {"email", NULL};

static const struct nudge_config_key config_keys[] = {
    {"host", NUDGE_CONFIG_STRING, 1, NULL,
     "the relay's host name; with STARTTLS it must match the relay's certificate"},
    {"port", NUDGE_CONFIG_INT, 0, "587", "the relay's port (submission 587, or 25)"},
    {"from", NUDGE_CONFIG_STRING, 1, NULL, "the From address when a message names none"},
    {"from_name", NUDGE_CONFIG_STRING, 0, NULL, "the From display name with that address"},
    {"bounce_address", NUDGE_CONFIG_STRING, 0, NULL,
     "the envelope sender (MAIL FROM), where bounces go (default: the From address)"},
    {"message_id_domain", NUDGE_CONFIG_STRING, 0, NULL,
     "the domain in Message-ID (default: the From address's)"},
    {"helo_name", NUDGE_CONFIG_STRING, 0, NULL, "the name sent with EHLO (default: the host's)"},
    {"starttls", NUDGE_CONFIG_STRING, 0, "required",
     "required | optional | off; AUTH without TLS sends the password in the clear"},
    {"tls_verify", NUDGE_CONFIG_BOOL, 0, "true",
     "check the relay's certificate and host name; turn off only for a test relay"},
    {"tls13", NUDGE_CONFIG_BOOL, 0, "false",
     "allow TLS 1.3; libESMTP 1.1 can stall on the session tickets a nearby relay sends after a "
     "TLS 1.3 handshake"},
    {"ca_file", NUDGE_CONFIG_STRING, 0, NULL,
     "PEM file of CA certificates to trust (default: the system's)"},
    {"username", NUDGE_CONFIG_STRING, 0, NULL, "AUTH PLAIN/LOGIN user name (no AUTH if unset)"},
    {"password", NUDGE_CONFIG_STRING, 0, NULL, "AUTH password; use env() or file()"},
    {"timeout_ms", NUDGE_CONFIG_INT, 0, "30000",
     "the longest wait for each reply of the relay (at least 1000)"},
    {"unsubscribe_mailto", NUDGE_CONFIG_STRING, 0, NULL,
     "an address added to List-Unsubscribe as mailto: on marketing mail"},
    {"messages_per_session", NUDGE_CONFIG_INT, 0, "100",
     "the most messages sent over one connection"},
    {"connections", NUDGE_CONFIG_INT, 0, "0",
     "concurrent connections to the relay (0: one per sender thread)"},
    {"trace", NUDGE_CONFIG_BOOL, 0, "false",
     "log the SMTP conversation at debug level (AUTH secrets masked, bodies left out)"},
    {NULL, 0, 0, NULL, NULL},
};

/* auth_client_init()/exit() are process-wide; instances share them. */
static pthread_mutex_t auth_mu = PTHREAD_MUTEX_INITIALIZER;
static int auth_users;

static void auth_acquire(void)
{
	pthread_mutex_lock(&auth_mu);
	if (auth_users++ == 0)
		auth_client_init();
	pthread_mutex_unlock(&auth_mu);
}

static void auth_release(void)
{
	pthread_mutex_lock(&auth_mu);
	if (--auth_users == 0)
		auth_client_exit(); /* unloads the SASL modules: only with no session left anywhere
		                     */
	pthread_mutex_unlock(&auth_mu);
}

static void dispatch(struct smtp_inst *inst);

/* Hands the result to nudge and frees the item. */
static void complete(struct smtp_inst *inst, struct smtp_item *it)
{
	struct nudge_send_result r = {
	    .struct_size = sizeof r,
	    .status = it->status ? it->status : NUDGE_SEND_RETRY,
	    .provider_id = it->status == NUDGE_SEND_SENT ? it->provider_id : NULL,
	    .reason = it->reason[0] ? it->reason : NULL,
	    .suppress = it->suppress,
	    .code = it->code,
	};
	if (r.status == NUDGE_SEND_FAILED)
		/* By id: addresses stay out of the log (the outbox row has them). */
		inst->host->log(inst->self, NUDGE_LOG_INFO, "message %lld failed: %s",
		                (long long)it->msg->id, it->reason);
	it->done(it->done_arg, &r);
	free(it->text);
	free(it->envelope_from);
	free(it);
}

static void give_back(struct smtp_inst *inst, struct smtp_item *it, const char *why)
{
	if (!it->status) {
		it->status = NUDGE_SEND_RETRY;
		snprintf(it->reason, sizeof it->reason, "%s", why);
	}
	complete(inst, it);
}

static void finish_shutdown(struct smtp_inst *inst)
{
	void (*done)(void *) = inst->shutdown_done;
	void *arg = inst->shutdown_arg;
	SSL_CTX_free(inst->tls);
	pthread_mutex_destroy(&inst->connect_lock);
	free(inst);
	auth_release();
	done(arg);
}

static void batch_work(void *arg, int thread_index)
{
	struct smtp_batch *b = arg;
	(void)thread_index; /* one job per thread at a time: at most one session per thread */
	smtp_session_run(b);
}

/* What a finished batch says about the relay, for health and the log. */
static void note_health(struct smtp_inst *inst, struct smtp_batch *b)
{
	int sent = 0, dropped = 0;
	for (struct smtp_item *it = b->items; it; it = it->next) {
		sent += it->status == NUDGE_SEND_SENT;
		dropped += it->status == NUDGE_SEND_RETRY && it->code == 0;
	}
	if (b->auth_failed) {
		inst->auth_failing = 1;
		snprintf(inst->last_problem, sizeof inst->last_problem,
		         "relay %s refused the credentials of user %s", inst->set.server,
		         inst->set.username ? inst->set.username : "(none)");
		inst->host->metric_add(inst->self, "auth_failures", 1);
		inst->host->log(
		    inst->self, NUDGE_LOG_ERROR,
		    "%s: AUTH failed, nothing was sent and %zu messages wait for retry; "
		    "fix username/password",
		    inst->last_problem, b->n);
		return;
	}
	if (sent) {
		inst->auth_failing = 0;
		inst->consecutive_failures = 0;
		inst->last_problem[0] = '\0';
		inst->last_ok_ms = inst->host->now_ms(inst->self);
	} else if (dropped == (int)b->n) {
		inst->consecutive_failures++;
		snprintf(inst->last_problem, sizeof inst->last_problem, "%s",
		         b->problem[0] ? b->problem : b->items->reason);
		inst->host->log(inst->self, NUDGE_LOG_WARN, "session with %s failed: %s",
		                inst->set.server, inst->last_problem);
	}
}

static void batch_done(void *arg, int status)
{
	struct smtp_batch *b = arg;
	struct smtp_inst *inst = b->inst;
	inst->running--;
	if (status == 0) {
		inst->host->metric_add(inst->self, "sessions", 1);
		note_health(inst, b);
	}
	while (b->items) {
		struct smtp_item *it = b->items;
		b->items = it->next;
		give_back(inst, it, "the daemon stopped before this message was sent");
	}
	free(b);
	if (inst->shutdown_done) {
		if (inst->running == 0)
			finish_shutdown(inst);
		return;
	}
	dispatch(inst);
}

/* Starts as many sessions as the limits allow, each with up to messages_per_session messages. */
static void dispatch(struct smtp_inst *inst)
{
	while (inst->queue_head && inst->running < inst->set.max_connections) {
		struct smtp_batch *b = calloc(1, sizeof *b);
		if (!b)
			abort();
		b->inst = inst;
		struct smtp_item **tail = &b->items;
		while (inst->queue_head && b->n < (size_t)inst->set.max_batch) {
			struct smtp_item *it = inst->queue_head;
			inst->queue_head = it->next;
			if (!inst->queue_head)
				inst->queue_tail = NULL;
			inst->queued--;
			it->next = NULL;
			if (it->status) { /* refused while being built */
				complete(inst, it);
				continue;
			}
			*tail = it;
			tail = &it->next;
			b->n++;
		}
		if (b->n == 0) {
			free(b);
			continue;
		}
		int rc = inst->host->run_on_sender(inst->self, batch_work, batch_done, b);
		if (rc != 0) {
			char why[120];
			snprintf(why, sizeof why, "no sender thread took the message (%s)",
			         strerror(-rc));
			while (b->items) {
				struct smtp_item *it = b->items;
				b->items = it->next;
				give_back(inst, it, why);
			}
			free(b);
			continue;
		}
		inst->running++;
	}
}

static void on_kick(void *arg)
{
	struct smtp_inst *inst = arg;
	inst->kick = NULL;
	dispatch(inst);
}

static int init_fail(char *err, size_t errlen, int rc, const char *what)
{
	snprintf(err, errlen, "%s", what);
	return rc;
}

static int smtp_init(const struct nudge_host *host, struct nudge_instance *self, void **state,
                     char *err, size_t errlen)
{
	struct smtp_settings set = {0};
	set.host = host->config_string(self, "host");
	int64_t port = host->config_int(self, "port");
	if (!*set.host || strchr(set.host, ':'))
		return init_fail(err, errlen, -EINVAL,
		                 "host must be a host name or IPv4 address (libESMTP takes no IPv6 "
		                 "literal and the port goes in port)");
	if (port < 1 || port > 65535)
		return init_fail(err, errlen, -EINVAL, "port must be between 1 and 65535");
	snprintf(set.server, sizeof set.server, "%s:%lld", set.host, (long long)port);
	set.from = host->config_string(self, "from");
	set.from_name = host->config_string(self, "from_name");
	set.bounce = host->config_string(self, "bounce_address");
	set.msgid_domain = host->config_string(self, "message_id_domain");
	set.helo = host->config_string(self, "helo_name");
	set.unsubscribe_mailto = host->config_string(self, "unsubscribe_mailto");
	set.username = host->config_string(self, "username");
	set.password = host->config_string(self, "password");
	set.tls_verify = host->config_bool(self, "tls_verify");
	set.timeout_ms = (long)host->config_int(self, "timeout_ms");
	set.max_batch = (int)host->config_int(self, "messages_per_session");
	set.trace = host->config_bool(self, "trace");
	set.tls13 = host->config_bool(self, "tls13");
	const char *tls = host->config_string(self, "starttls");
	if (strcmp(tls, "required") == 0)
		set.starttls = SMTP_TLS_REQUIRED;
	else if (strcmp(tls, "optional") == 0)
		set.starttls = SMTP_TLS_OPTIONAL;
	else if (strcmp(tls, "off") == 0)
		set.starttls = SMTP_TLS_OFF;
	else
		return init_fail(err, errlen, -EINVAL,
		                 "starttls must be required, optional or off");
	if (!strchr(set.from, '@'))
		return init_fail(err, errlen, -EINVAL, "from must be an email address");
	if (set.bounce && !strchr(set.bounce, '@'))
		return init_fail(err, errlen, -EINVAL, "bounce_address must be an email address");
	if (!set.username != !set.password)
		return init_fail(err, errlen, -EINVAL,
		                 "username and password go together: set both or neither");
	if (set.timeout_ms < 1000)
		return init_fail(err, errlen, -EINVAL,
		                 "timeout_ms must be at least 1000 (libESMTP's floor)");
	if (set.max_batch < 1 || set.max_batch > 10000)
		return init_fail(err, errlen, -EINVAL,
		                 "messages_per_session must be between 1 and 10000");
	int nthreads = host->sender_threads(self);
	if (nthreads < 1)
		return init_fail(err, errlen, -ENOSYS,
		                 "the smtp plugin needs sender threads (senders.threads)");
	int64_t conns = host->config_int(self, "connections");
	if (conns < 0)
		return init_fail(err, errlen, -EINVAL, "connections must not be negative");
	set.max_connections = conns == 0 || conns > nthreads ? nthreads : (int)conns;

	SSL_CTX *ctx = NULL;
	if (set.starttls != SMTP_TLS_OFF) {
		ctx =
		    smtp_tls_context(host->config_string(self, "ca_file"), set.tls13, err, errlen);
		if (!ctx)
			return -EINVAL;
	}
	struct smtp_inst *inst = calloc(1, sizeof *inst);
	if (!inst) {
		SSL_CTX_free(ctx);
		return -ENOMEM;
	}
	inst->host = host;
	inst->self = self;
	inst->set = set;
	inst->tls = ctx;
	pthread_mutex_init(&inst->connect_lock, NULL);
	auth_acquire();
	if (set.username && set.starttls == SMTP_TLS_OFF)
		host->log(self, NUDGE_LOG_WARN,
		          "AUTH without STARTTLS sends the password to %s in the clear",
		          set.server);
	if (set.starttls != SMTP_TLS_OFF && !set.tls_verify)
		host->log(self, NUDGE_LOG_WARN,
		          "tls_verify is off: any certificate is accepted from %s", set.server);
	host->log(self, NUDGE_LOG_INFO, "relay %s, STARTTLS %s, %d connections at most", set.server,
	          tls, set.max_connections);
	*state = inst;
	return 0;
}

static void smtp_send(void *state, const struct nudge_message *msg, nudge_send_done_fn *done,
                      void *done_arg)
{
	struct smtp_inst *inst = state;
	struct smtp_item *it = calloc(1, sizeof *it);
	if (!it)
		abort();
	it->msg = msg;
	it->done = done;
	it->done_arg = done_arg;
	smtp_message_build(inst, it, inst->host->now_ms(inst->self));
	if (inst->queue_tail)
		inst->queue_tail->next = it;
	else
		inst->queue_head = it;
	inst->queue_tail = it;
	inst->queued++;
	/* Sessions start on the next loop turn, with everything sent until then: one connection for
	 * a burst, and never a completion inside send(). */
	if (!inst->kick)
		inst->kick = inst->host->timer_start(inst->self, 0, on_kick, inst);
}

static void smtp_health(void *state, struct nudge_health *out)
{
	struct smtp_inst *inst = state;
	if (inst->auth_failing) {
		out->status = NUDGE_HEALTH_DOWN;
		snprintf(out->detail, sizeof out->detail, "%s", inst->last_problem);
	} else if (inst->consecutive_failures > 0) {
		out->status =
		    inst->consecutive_failures >= 3 ? NUDGE_HEALTH_DOWN : NUDGE_HEALTH_DEGRADED;
		snprintf(out->detail, sizeof out->detail, "%d failed sessions in a row: %s",
		         inst->consecutive_failures, inst->last_problem);
	} else {
		out->status = NUDGE_HEALTH_OK;
		snprintf(out->detail, sizeof out->detail,
		         "relay %s: %zu queued, %d sessions running", inst->set.server,
		         inst->queued, inst->running);
	}
}

static void smtp_shutdown(void *state, void (*done)(void *arg), void *arg)
{
	struct smtp_inst *inst = state;
	inst->shutdown_done = done;
	inst->shutdown_arg = arg;
	if (inst->kick) {
		inst->host->timer_cancel(inst->self, inst->kick);
		inst->kick = NULL;
	}
	/* What has not started is given back at once; sessions under way finish (bounded by
	 * timeout_ms per reply) and complete their messages first. */
	while (inst->queue_head) {
		struct smtp_item *it = inst->queue_head;
		inst->queue_head = it->next;
		inst->queued--;
		give_back(inst, it, "the smtp plugin stopped before this message was sent");
	}
	inst->queue_tail = NULL;
	if (inst->running == 0)
		finish_shutdown(inst);
}

static const struct nudge_plugin descriptor = {
    .abi_major = NUDGE_PLUGIN_ABI_MAJOR,
    .abi_minor = NUDGE_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(struct nudge_plugin),
    .name = "smtp",
    .version = "1.0.0",
    .description = "email through an SMTP relay (libESMTP: STARTTLS, AUTH, pipelining)",
    .channels = channels,
    .config_keys = config_keys,
    .init = smtp_init,
    .send = smtp_send,
    .health = smtp_health,
    .shutdown = smtp_shutdown,
};

NUDGE_PLUGIN_EXPORT const struct nudge_plugin *nudge_plugin_entry(void)
{
	return &descriptor;
}
