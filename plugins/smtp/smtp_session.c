/*
 * smtp_session.c — one libESMTP session on a sender thread: connect, EHLO, STARTTLS, AUTH, then
 * every message of the batch over the same connection (pipelined when the relay offers
 * PIPELINING), and the reading of per-recipient results.
 *
 * What libESMTP 1.1.0 (Debian 12) needs from us, and why (docs/plugins.md has the long form):
 *  - ONE application SSL_CTX, passed to every session with smtp_starttls_set_ctx() exactly once.
 *    Without it, libESMTP caches an SSL_CTX of its own in a static variable that
 *    smtp_destroy_session() frees: the next TLS session in the process uses freed memory.
 *  - Timeouts are milliseconds, and only honoured below the RFC minimums (minutes) with
 *    Timeout_OVERRIDE_RFC2822_MINIMUM; 1000 ms is the floor.
 *  - smtp_start_session() reports success whenever the protocol ran, even if the relay refused
 *    everything; a status code of 0 means "never got that far" and is a temporary failure.
 *  - After AUTH fails (535), libESMTP carries on unauthenticated and the relay answers MAIL FROM
 *    with 530. That must be a loud retry, never a bounce and never "sent".
 *  - A recipient is delivered only if its RCPT and the end of DATA were both answered 2xx.
 */
#include "smtp.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

SSL_CTX *smtp_tls_context(const char *ca_file, int tls13, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		snprintf(err, errlen, "cannot create a TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/*
	 * TLS 1.2 at most, unless tls13 is set. After a TLS 1.3 handshake the relay sends session
	 * tickets; when they arrive before libESMTP has flushed its EHLO (a relay on the same host
	 * or network), libESMTP reads them, finds no reply, and waits a whole timeout with the EHLO
	 * still in its buffer, after which the session is lost. Seen with libESMTP 1.1.0 against
	 * the stand-in; TLS 1.2 has no post-handshake messages.
	 */
	if (!tls13)
		SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
	/*
	 * The handshake itself does not abort on a bad certificate (SSL_VERIFY_NONE): libESMTP
	 * checks the verification result and the host name afterwards and asks our event callback,
	 * which refuses unless tls_verify is off, and can then say precisely what was wrong.
	 */
	int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
	                 : SSL_CTX_set_default_verify_paths(ctx);
	if (!ok) {
		snprintf(err, errlen, "cannot load the CA certificates from %s",
		         ca_file ? ca_file : "the system's default locations");
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* What the callbacks learn during one session. */
struct session_log {
	struct smtp_batch *b;
	int tls_ok;
	char tls_problem[200];
	char last_reply[200]; /* the relay's most recent reply line, for reasons */
	int auth_secret;      /* the next client line answers a 334 challenge */
};

static void note(char *dst, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void note(char *dst, size_t len, const char *fmt, ...)
{
	if (dst[0])
		return; /* the first problem is the one worth telling */
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(dst, len, fmt, ap);
	va_end(ap);
}

static void on_event(smtp_session_t session, int event, void *arg, ...)
{
	(void)session;
	struct session_log *log = arg;
	struct smtp_settings *set = &log->b->inst->set;
	va_list ap;
	va_start(ap, arg);
	switch (event) {
	case SMTP_EV_CONNECT:
		log->b->connected = 1;
		smtp_socket_connected(log->b);
		break;
	case SMTP_EV_STARTTLS_OK:
		log->tls_ok = 1;
		break;
	case SMTP_EV_EXTNA_STARTTLS:
		note(log->tls_problem, sizeof log->tls_problem,
		     "the relay does not offer STARTTLS, which starttls = \"required\" insists on");
		break;
	case SMTP_EV_INVALID_PEER_CERTIFICATE: {
		long result = va_arg(ap, long);
		int *ok = va_arg(ap, int *);
		if (!set->tls_verify)
			*ok = 1;
		else
			note(log->tls_problem, sizeof log->tls_problem,
			     "the relay's TLS certificate failed verification: %s",
			     X509_verify_cert_error_string(result));
		break;
	}
	case SMTP_EV_WRONG_PEER_CERTIFICATE: {
		int *ok = va_arg(ap, int *);
		const char *name = va_arg(ap, const char *);
		if (!set->tls_verify)
			*ok = 1;
		else
			note(log->tls_problem, sizeof log->tls_problem,
			     "the relay's TLS certificate is for %s, not %s", name ? name : "?",
			     set->host);
		break;
	}
	case SMTP_EV_NO_PEER_CERTIFICATE: {
		int *ok = va_arg(ap, int *);
		if (!set->tls_verify)
			*ok = 1;
		else
			note(log->tls_problem, sizeof log->tls_problem,
			     "the relay presented no TLS certificate");
		break;
	}
	case SMTP_EV_WEAK_CIPHER: {
		long bits = va_arg(ap, long);
		note(log->tls_problem, sizeof log->tls_problem,
		     "the relay negotiated a %ld-bit cipher", bits);
		break;
	}
	case SMTP_EV_NO_CLIENT_CERTIFICATE: {
		int *ok = va_arg(ap, int *);
		*ok = 1; /* we present no client certificate; that is fine */
		break;
	}
	default:
		break;
	}
	va_end(ap);
}

/* With trace = true: one debug log line per protocol line, with AUTH secrets masked. */
static void trace_line(struct session_log *log, int writing, const char *p, size_t n)
{
	struct smtp_inst *inst = log->b->inst;
	while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == '\n'))
		n--;
	if (writing && (log->auth_secret || (n >= 5 && strncasecmp(p, "AUTH ", 5) == 0))) {
		/* "AUTH PLAIN <secret>" keeps its mechanism; a reply to a 334 challenge is all
		 * secret. */
		size_t keep = log->auth_secret ? 0 : 5 + strcspn(p + 5, " ");
		inst->host->log(inst->self, NUDGE_LOG_DEBUG, "C: %.*s%s", (int)keep, p,
		                keep < n ? " ***" : "");
	} else {
		inst->host->log(inst->self, NUDGE_LOG_DEBUG, "%s: %.*s", writing ? "C" : "S",
		                (int)n, p);
	}
	if (!writing)
		log->auth_secret = n >= 3 && strncmp(p, "334", 3) == 0;
}

/*
 * The protocol trace, watched for what the API does not report: a refused AUTH (535, or 534/538)
 * and the wording of the relay's last reply. Bodies are not passed here (headers flag 0).
 */
static void on_monitor(const char *buf, int len, int writing, void *arg)
{
	struct session_log *log = arg;
	const char *p = buf, *end = buf + len;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		size_t n = eol ? (size_t)(eol - p) : (size_t)(end - p);
		if (log->b->inst->set.trace)
			trace_line(log, writing == SMTP_CB_WRITING, p, n);
		if (writing != SMTP_CB_READING) {
			p = eol ? eol + 1 : end;
			continue;
		}
		if (n >= 3 && (strncmp(p, "535", 3) == 0 || strncmp(p, "534", 3) == 0 ||
		               strncmp(p, "538", 3) == 0))
			log->b->auth_failed = 1;
		else if (n >= 3 && strncmp(p, "235", 3) == 0)
			log->b->auth_failed = 0; /* a later mechanism got through */
		if (n > 0) {
			size_t keep = n < sizeof log->last_reply ? n : sizeof log->last_reply - 1;
			memcpy(log->last_reply, p, keep);
			log->last_reply[keep] = '\0';
			char *cr = strchr(log->last_reply, '\r');
			if (cr)
				*cr = '\0';
		}
		p = eol ? eol + 1 : end;
	}
}

/*
 * The message body for libESMTP, in one piece, with the session's socket corked while libESMTP
 * copies it out (smtp_socket.c says why). libESMTP rewinds (len NULL) at the start of DATA and
 * reads until a zero length; the cork comes off at that point, so the final dot and everything
 * after it goes out at once.
 */
static const char *message_body(void **ctx, int *len, void *arg)
{
	(void)ctx;
	struct smtp_item *it = arg;
	if (!len) {
		it->fed = 0;
		smtp_socket_cork(it->batch->fd, 1);
		return NULL;
	}
	if (!it->fed) {
		it->fed = 1;
		*len = (int)it->text_len;
		return it->text;
	}
	*len = 0;
	smtp_socket_cork(it->batch->fd, 0);
	return it->text;
}

static int interact(auth_client_request_t request, char **result, int fields, void *arg)
{
	struct smtp_settings *set = arg;
	for (int i = 0; i < fields; i++) {
		if (request[i].flags & AUTH_USER)
			result[i] = (char *)set->username;
		else if (request[i].flags & AUTH_PASS)
			result[i] = (char *)set->password;
		else
			result[i] = NULL;
		if (!result[i])
			return 0;
	}
	return 1;
}

/* The relay's enhanced status class (2, 4, 5) and subject, from the API or the text ("5.7.1 …"). */
static void enhanced(const smtp_status_t *st, int *cls, int *subject)
{
	*cls = st->enh_class;
	*subject = st->enh_subject;
	if (*cls == 0 && st->text) {
		int a, b2, c;
		if (sscanf(st->text, "%d.%d.%d", &a, &b2, &c) == 3) {
			*cls = a;
			*subject = b2;
		}
	}
}

/* "550 5.1.1 no such user" from a status, without the line end. */
static void describe(char *out, size_t len, const char *what, const smtp_status_t *st)
{
	char text[200] = "";
	if (st->text) {
		snprintf(text, sizeof text, "%s", st->text);
		text[strcspn(text, "\r\n")] = '\0';
	}
	snprintf(out, len, "%s: %d %s", what, st->code, text);
}

/* The queue id in "250 2.0.0 Ok: queued as 4ABCD" (else the whole text): the provider id. */
static void queue_id(const smtp_status_t *st, char *out, size_t len)
{
	const char *t = st->text ? st->text : "";
	const char *q = strstr(t, "queued as ");
	if (q)
		t = q + strlen("queued as ");
	snprintf(out, len, "%s", t);
	out[strcspn(out, " \r\n")] = '\0';
	if (!out[0])
		snprintf(out, len, "%d", st->code);
}

static void set_result(struct smtp_item *it, int status, int code, int suppress, const char *reason)
{
	it->status = status;
	it->code = code;
	it->suppress = suppress;
	snprintf(it->reason, sizeof it->reason, "%s", reason);
}

/* Maps one message's three replies (MAIL, RCPT, end of DATA) onto a send result. */
static void classify(struct smtp_item *it, struct smtp_batch *b, const struct session_log *log)
{
	const smtp_status_t *mail = smtp_reverse_path_status(it->m);
	const smtp_status_t *rcpt = smtp_recipient_status(it->r);
	const smtp_status_t *data = smtp_message_transfer_status(it->m);
	char why[300];

	/* A relay that takes the mail anyway after a failed AUTH has taken it: only a refused
	 * MAIL FROM makes this a credentials problem. */
	if (mail->code == 530 || (b->auth_failed && mail->code / 100 != 2)) {
		describe(why, sizeof why, "the relay refused our credentials; MAIL FROM", mail);
		set_result(it, NUDGE_SEND_RETRY, mail->code, 0, why);
		b->auth_failed = 1;
		return;
	}
	/* Relays that take MAIL FROM from a client whose AUTH failed refuse it at RCPT instead
	 * (Postfix submission: 554 5.7.1 relay access denied; Exim: 550 relay not permitted, with
	 * no enhanced code). That refuses us, not the address: retried, never failed or suppressed.
	 */
	if (b->auth_failed && !(rcpt->code / 100 == 2 && data->code / 100 == 2)) {
		int at_rcpt = rcpt->code / 100 != 2;
		describe(why, sizeof why,
		         at_rcpt ? "the relay refused our credentials; RCPT TO"
		                 : "the relay refused our credentials; end of DATA",
		         at_rcpt ? rcpt : data);
		set_result(it, NUDGE_SEND_RETRY, at_rcpt ? rcpt->code : data->code, 0, why);
		return;
	}
	/* 354 is DATA's go-ahead: the final reply to the message never came. */
	int no_final = data->code == 0 || data->code == 354;
	if (mail->code == 0 || (mail->code / 100 == 2 && rcpt->code == 0) ||
	    (mail->code / 100 == 2 && rcpt->code / 100 == 2 && no_final)) {
		/* The session ended early: the connection, TLS, a timeout, or a 421 before us. */
		const char *stage = mail->code == 0   ? "before MAIL FROM"
		                    : rcpt->code == 0 ? "before RCPT TO"
		                                      : "before the relay acknowledged the message";
		snprintf(why, sizeof why, "the session ended %s: %s", stage,
		         log->tls_problem[0]  ? log->tls_problem
		         : b->problem[0]      ? b->problem
		         : log->last_reply[0] ? log->last_reply
		                              : "no reply");
		set_result(it, NUDGE_SEND_RETRY, 0, 0, why);
		return;
	}
	if (mail->code / 100 != 2) {
		describe(why, sizeof why, "MAIL FROM", mail);
		set_result(it, mail->code / 100 == 4 ? NUDGE_SEND_RETRY : NUDGE_SEND_FAILED,
		           mail->code, 0, why);
		return;
	}
	if (rcpt->code / 100 != 2) {
		describe(why, sizeof why, "RCPT TO", rcpt);
		if (rcpt->code / 100 != 5) {
			set_result(it, NUDGE_SEND_RETRY, rcpt->code, 0, why);
			return;
		}
		/* A bad mailbox is suppressed; a policy refusal (5.7.x: spam, relaying, DMARC) is
		 * about us, not the address, and is not. */
		int cls, subject;
		enhanced(rcpt, &cls, &subject);
		int bad_address = (rcpt->code == 550 || rcpt->code == 553 || rcpt->code == 554) &&
		                  !(cls == 5 && subject == 7);
		set_result(it, NUDGE_SEND_FAILED, rcpt->code, bad_address, why);
		return;
	}
	if (data->code / 100 != 2) {
		describe(why, sizeof why, "end of DATA", data);
		set_result(it, data->code / 100 == 5 ? NUDGE_SEND_FAILED : NUDGE_SEND_RETRY,
		           data->code, 0, why);
		return;
	}
	set_result(it, NUDGE_SEND_SENT, data->code, 0, "");
	describe(it->reason, sizeof it->reason, "end of DATA", data);
	queue_id(data, it->provider_id, sizeof it->provider_id);
}

/* libESMTP may write to a socket the relay has closed; the SIGPIPE must not end the daemon. */
static void block_sigpipe(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static void drain_sigpipe(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	struct timespec zero = {0, 0};
	while (sigtimedwait(&set, NULL, &zero) == SIGPIPE)
		;
}

void smtp_session_run(struct smtp_batch *b)
{
	struct smtp_settings *set = &b->inst->set;
	struct session_log log = {.b = b};
	block_sigpipe();

	smtp_session_t s = smtp_create_session();
	if (!s) {
		snprintf(b->problem, sizeof b->problem, "libESMTP could not create a session");
		for (struct smtp_item *it = b->items; it; it = it->next)
			set_result(it, NUDGE_SEND_RETRY, 0, 0, b->problem);
		return;
	}
	smtp_set_server(s, set->server);
	if (set->helo)
		smtp_set_hostname(s, set->helo);
	if (set->starttls != SMTP_TLS_OFF) {
		smtp_starttls_enable(s, set->starttls == SMTP_TLS_REQUIRED ? Starttls_REQUIRED
		                                                           : Starttls_ENABLED);
		smtp_starttls_set_ctx(s, b->inst->tls); /* once per session, never NULL */
	}
	auth_context_t auth = NULL;
	if (set->username) {
		auth = auth_create_context();
		auth_set_mechanism_flags(auth, AUTH_PLUGIN_PLAIN, 0);
		auth_set_interact_cb(auth, interact, set);
		smtp_auth_set_context(s, auth);
	}
	static const int phases[] = {Timeout_GREETING, Timeout_ENVELOPE, Timeout_DATA,
	                             Timeout_TRANSFER, Timeout_DATA2};
	for (size_t i = 0; i < sizeof phases / sizeof phases[0]; i++)
		smtp_set_timeout(s, phases[i] | Timeout_OVERRIDE_RFC2822_MINIMUM, set->timeout_ms);
	smtp_set_eventcb(s, on_event, &log);
	smtp_set_monitorcb(s, on_monitor, &log, 0);

	for (struct smtp_item *it = b->items; it; it = it->next) {
		it->m = smtp_add_message(s);
		smtp_set_reverse_path(it->m, it->envelope_from);
		it->batch = b;
		smtp_set_messagecb(it->m, message_body, it);
		it->r = smtp_add_recipient(it->m, it->msg->recipient);
	}

	smtp_socket_connecting(b);
	if (!smtp_start_session(s)) {
		char e[160];
		smtp_strerror(smtp_errno(), e, sizeof e);
		snprintf(b->problem, sizeof b->problem, "%s (%s)", e, set->server);
	}
	for (struct smtp_item *it = b->items; it; it = it->next)
		classify(it, b, &log);
	if (!b->problem[0] && log.tls_problem[0])
		snprintf(b->problem, sizeof b->problem, "%s", log.tls_problem);
	smtp_destroy_session(s);
	smtp_socket_done(b);
	if (auth)
		auth_destroy_context(auth);
	drain_sigpipe();
}
