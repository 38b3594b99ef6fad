/*
 * file.c — the "file" plugin: a development sink that appends every message, headers and bodies,
 * to a file instead of delivering it. `make demo` uses it until a real relay is configured, and
 * tests read the file to see what would have been sent. It serves every channel.
 *
 *   channels = { { name = "outbox", plugin = "file", channel = "email",
 *                  config = { path = "/tmp/nudge-outbox.txt" } } }
 *
 * Each message is formatted on the loop thread and written with one write(2) on a sender thread (a
 * slow disk must not stall the loop); with O_APPEND, records from concurrent writes never
 * interleave. With simulate_failures = true, a recipient whose local part ends in "+retry" or
 * "+bounce" gets a retry or a suppressing permanent failure, so the daemon's result handling can be
 * watched.
 */
#include <nudge/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct sink {
	const struct nudge_host *host;
	struct nudge_instance *self;
	int fd;
	int simulate_failures;
	long long written;
	int last_error; /* errno of the last failed write, 0 after a good one */
	int outstanding;
	void (*shutdown_done)(void *arg);
	void *shutdown_arg;
};

struct job {
	struct sink *s;
	const struct nudge_message *msg;
	nudge_send_done_fn *done;
	void *done_arg;
	char *text;
	size_t len;
	int error;     /* errno from the write, 0 if it went through */
	int simulated; /* NUDGE_SEND_* to report instead of SENT, 0 for none */
};

static const char *const channels[] = {"email", "sms", "messenger", NULL};

static const struct nudge_config_key config_keys[] = {
    {"path", NUDGE_CONFIG_STRING, 1, NULL, "the file messages are appended to (created 0600)"},
    {"simulate_failures", NUDGE_CONFIG_BOOL, 0, "false",
     "recipients ending in +retry / +bounce (before the @) get a retry / a hard bounce"},
    {NULL, 0, 0, NULL, NULL},
};

/* A growable text buffer; allocation failure aborts, as everywhere in nudge. */
struct buf {
	char *p;
	size_t len, cap;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct buf *b, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			abort();
		if (b->p && (size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		b->cap = (b->cap + (size_t)n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
}

/* "Name <addr>" or "addr". */
static void put_address(struct buf *b, const char *field, const char *name, const char *addr)
{
	if (!addr)
		return;
	if (name && *name)
		put(b, "%s: %s <%s>\n", field, name, addr);
	else
		put(b, "%s: %s\n", field, addr);
}

static char *format_message(struct sink *s, const struct nudge_message *m, size_t *len)
{
	struct buf b = {0};
	char date[64];
	time_t t = (time_t)(s->host->now_ms(s->self) / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
	put(&b, "==== nudge message %lld (attempt %u) ====\n", (long long)m->id, m->attempt);
	put(&b, "Date: %s\n", date);
	put(&b, "Instance: %s\n", s->host->instance_name(s->self));
	put(&b, "Channel: %s\n", m->channel ? m->channel : "");
	put(&b, "Purpose: %s\n",
	    m->purpose == NUDGE_PURPOSE_MARKETING ? "marketing" : "transactional");
	put(&b, "Message-Key: %s\n", m->key ? m->key : "");
	put_address(&b, "From", m->from_name, m->from);
	put_address(&b, "To", m->recipient_name, m->recipient);
	put_address(&b, "Reply-To", NULL, m->reply_to);
	if (m->subject)
		put(&b, "Subject: %s\n", m->subject);
	if (m->unsubscribe_url)
		put(&b, "List-Unsubscribe: <%s>\n", m->unsubscribe_url);
	for (size_t i = 0; i < m->nheaders; i++)
		put(&b, "%s: %s\n", m->headers[i].name, m->headers[i].value);
	if (m->text)
		put(&b, "--- text/plain ---\n%s\n", m->text);
	if (m->html)
		put(&b, "--- text/html ---\n%s\n", m->html);
	if (m->body)
		put(&b, "--- body ---\n%s\n", m->body);
	put(&b, "==== end of message %lld ====\n\n", (long long)m->id);
	*len = b.len;
	return b.p;
}

/* With simulate_failures: the result the recipient's "+tag" asks for, or 0. */
static int simulated_status(const char *recipient)
{
	const char *at = strchr(recipient, '@');
	size_t local = at ? (size_t)(at - recipient) : strlen(recipient);
	if (local >= 6 && strncmp(recipient + local - 6, "+retry", 6) == 0)
		return NUDGE_SEND_RETRY;
	if (local >= 7 && strncmp(recipient + local - 7, "+bounce", 7) == 0)
		return NUDGE_SEND_FAILED;
	return 0;
}

static void write_job(void *arg, int thread_index)
{
	(void)thread_index;
	struct job *j = arg;
	size_t off = 0;
	while (off < j->len) {
		ssize_t n = write(j->s->fd, j->text + off, j->len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			j->error = n < 0 ? errno : EIO;
			return;
		}
		off += (size_t)n;
	}
}

static void finish_shutdown(struct sink *s)
{
	void (*done)(void *) = s->shutdown_done;
	void *arg = s->shutdown_arg;
	close(s->fd);
	free(s);
	done(arg);
}

static void complete(struct job *j)
{
	struct sink *s = j->s;
	char id[64], reason[160] = "";
	snprintf(id, sizeof id, "file-%lld-%u", (long long)j->msg->id, j->msg->attempt);
	struct nudge_send_result r = {.struct_size = sizeof r, .status = NUDGE_SEND_SENT};
	if (j->error) {
		s->last_error = j->error;
		snprintf(reason, sizeof reason, "cannot append to the outbox file: %s",
		         strerror(j->error));
		r.status = NUDGE_SEND_RETRY;
		r.reason = reason;
		s->host->log(s->self, NUDGE_LOG_ERROR, "%s", reason);
	} else if (j->simulated == NUDGE_SEND_RETRY) {
		s->last_error = 0;
		r.status = NUDGE_SEND_RETRY;
		r.reason = "simulated: the recipient asked for a retry";
		r.code = 451;
	} else if (j->simulated == NUDGE_SEND_FAILED) {
		s->last_error = 0;
		r.status = NUDGE_SEND_FAILED;
		r.suppress = 1;
		r.reason = "simulated: 550 5.1.1 the recipient asked for a bounce";
		r.code = 550;
	} else {
		s->last_error = 0;
		s->written++;
		r.provider_id = id;
		s->host->metric_add(s->self, "messages_written", 1);
	}
	j->done(j->done_arg, &r);
	free(j->text);
	free(j);
	if (--s->outstanding == 0 && s->shutdown_done)
		finish_shutdown(s);
}

static void write_done(void *arg, int status)
{
	struct job *j = arg;
	if (status != 0)
		j->error = ECANCELED;
	complete(j);
}

static void on_timer(void *arg)
{
	complete(arg);
}

static int file_init(const struct nudge_host *host, struct nudge_instance *self, void **state,
                     char *err, size_t errlen)
{
	const char *path = host->config_string(self, "path");
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "cannot open %s for appending: %s", path, strerror(e));
		return -e;
	}
	struct sink *s = calloc(1, sizeof *s);
	if (!s) {
		close(fd);
		return -ENOMEM;
	}
	s->host = host;
	s->self = self;
	s->fd = fd;
	s->simulate_failures = host->config_bool(self, "simulate_failures");
	*state = s;
	host->log(self, NUDGE_LOG_INFO, "appending messages to %s", path);
	return 0;
}

static void file_send(void *state, const struct nudge_message *msg, nudge_send_done_fn *done,
                      void *done_arg)
{
	struct sink *s = state;
	struct job *j = calloc(1, sizeof *j);
	if (!j)
		abort();
	j->s = s;
	j->msg = msg;
	j->done = done;
	j->done_arg = done_arg;
	s->outstanding++;
	if (s->simulate_failures && msg->recipient)
		j->simulated = simulated_status(msg->recipient);
	if (j->simulated) {
		s->host->timer_start(s->self, 0, on_timer, j);
		return;
	}
	j->text = format_message(s, msg, &j->len);
	if (s->host->run_on_sender(s->self, write_job, write_done, j) == 0)
		return;
	/* No sender threads (a bare host in a test): write here, complete on the next turn. */
	write_job(j, 0);
	s->host->timer_start(s->self, 0, on_timer, j);
}

static void file_health(void *state, struct nudge_health *out)
{
	struct sink *s = state;
	if (s->last_error) {
		out->status = NUDGE_HEALTH_DOWN;
		snprintf(out->detail, sizeof out->detail, "the last write failed: %s",
		         strerror(s->last_error));
	} else {
		out->status = NUDGE_HEALTH_OK;
		snprintf(out->detail, sizeof out->detail, "%lld messages written", s->written);
	}
}

static void file_shutdown(void *state, void (*done)(void *arg), void *arg)
{
	struct sink *s = state;
	s->shutdown_done = done;
	s->shutdown_arg = arg;
	/* Writes in flight finish first (they are quick); the last one completes the shutdown. */
	if (s->outstanding == 0)
		finish_shutdown(s);
}

static const struct nudge_plugin descriptor = {
    .abi_major = NUDGE_PLUGIN_ABI_MAJOR,
    .abi_minor = NUDGE_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(struct nudge_plugin),
    .name = "file",
    .version = "1.0.0",
    .description = "development sink: appends every message to a file",
    .channels = channels,
    .config_keys = config_keys,
    .init = file_init,
    .send = file_send,
    .health = file_health,
    .shutdown = file_shutdown,
};

NUDGE_PLUGIN_EXPORT const struct nudge_plugin *nudge_plugin_entry(void)
{
	return &descriptor;
}
