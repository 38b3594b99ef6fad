/*
 * smtp.h — what the SMTP plugin's files share: an instance's settings, one queued message, one
 * batch (one SMTP connection carrying several messages), and the functions each file provides.
 *
 *   smtp.c          the descriptor, init/shutdown, the queue and batching on the loop thread
 *   smtp_session.c  one libESMTP session on a sender thread, and reading its per-recipient results
 *   smtp_socket.c   the relay socket libESMTP hides: TCP_NODELAY, and TCP_CORK around each body
 *   smtp_message.c  the RFC 5322 / MIME text of a message (headers, encoded-words,
 * quoted-printable)
 */
#ifndef NG_SMTP_PLUGIN_H
#define NG_SMTP_PLUGIN_H

#include <nudge/plugin.h>

#include <openssl/ssl.h> /* before libesmtp.h, or smtp_starttls_set_ctx() is not declared */

#include <auth-client.h>
#include <libesmtp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

enum smtp_starttls { SMTP_TLS_OFF, SMTP_TLS_OPTIONAL, SMTP_TLS_REQUIRED };

/* An instance's settings, read once at init; sender threads only read them. */
struct smtp_settings {
	char server[300]; /* "host:port" for smtp_set_server */
	const char *host;
	const char *helo;      /* EHLO name; NULL: libESMTP's default (the node name) */
	const char *from;      /* default From address */
	const char *from_name; /* default From display name */
	const char *bounce;    /* envelope sender (MAIL FROM); NULL: the From address */
	const char *msgid_domain;
	const char *unsubscribe_mailto;
	const char *username; /* AUTH when set */
	const char *password;
	enum smtp_starttls starttls;
	int tls_verify;
	long timeout_ms;
	int max_batch;
	int max_connections;
	int trace; /* log the protocol at debug level */
	int tls13; /* allow TLS 1.3 (see smtp_tls_context) */
};

/* A message on its way: built on the loop thread, sent on a sender thread, completed on the loop.
 */
struct smtp_item {
	const struct nudge_message *msg;
	nudge_send_done_fn *done;
	void *done_arg;
	char *text; /* the complete message, CRLF line ends */
	size_t text_len;
	char *envelope_from; /* MAIL FROM */
	/* The outcome, set by the build (a message that cannot be built) or by the session. */
	int status; /* NUDGE_SEND_*; 0 until known */
	int suppress;
	int code;
	char reason[300];
	char provider_id[128];
	/* libESMTP's handles, valid during the session only. */
	smtp_message_t m;
	smtp_recipient_t r;
	struct smtp_batch *batch;
	int fed; /* the body was handed to libESMTP since its last rewind */
	struct smtp_item *next;
};

/* One SMTP connection's worth of messages. */
struct smtp_batch {
	struct smtp_inst *inst;
	struct smtp_item *items;
	size_t n;
	/* Filled on the sender thread. */
	int auth_failed;   /* the relay refused our credentials */
	int connected;     /* the session reached the relay */
	int fd;            /* its socket, if smtp_socket_connected could tell; else -1 */
	unsigned long ino; /* that socket's inode: its claim, told apart from a reused number */
	int connecting;    /* this thread holds inst->connect_lock */
	char problem[300]; /* why the session as a whole failed, if it did */
	struct smtp_batch *next;
};

struct smtp_inst {
	const struct nudge_host *host;
	struct nudge_instance *self;
	struct smtp_settings set;
	SSL_CTX *tls; /* ONE context for every session of the instance (see smtp_session.c) */
	/* Held by a sender thread from the start of its session until libESMTP has connected, so
	 * that session's socket is the only new one (smtp_socket.c). */
	pthread_mutex_t connect_lock;
	struct smtp_item *queue_head, *queue_tail;
	size_t queued;
	int running; /* batches on sender threads */
	struct nudge_timer *kick;
	int warned_http_unsubscribe;
	/* Health, on the loop thread. */
	int auth_failing;
	int consecutive_failures;
	char last_problem[300];
	int64_t last_ok_ms;
	/* Shutdown. */
	void (*shutdown_done)(void *arg);
	void *shutdown_arg;
};

/* smtp_message.c: builds item->text and item->envelope_from for msg. On a message that can never
 * be sent as given, returns -1 with item->status = NUDGE_SEND_FAILED and the reason filled in. */
int smtp_message_build(struct smtp_inst *inst, struct smtp_item *item, int64_t now_ms);

/* smtp_session.c */
SSL_CTX *smtp_tls_context(const char *ca_file, int tls13, char *err, size_t errlen);
/* Sends every item of the batch over one connection and classifies each result. Sender thread. */
void smtp_session_run(struct smtp_batch *b);

/* smtp_socket.c, on sender threads. connecting() before smtp_start_session; connected() when
 * libESMTP reports the connection (TCP_NODELAY on every socket to the relay's port, b->fd the
 * session's own socket or -1 when it cannot be told apart); done() after the session is
 * destroyed. cork() does nothing for -1. */
void smtp_socket_connecting(struct smtp_batch *b);
void smtp_socket_connected(struct smtp_batch *b);
void smtp_socket_done(struct smtp_batch *b);
void smtp_socket_cork(int fd, int on);

#endif
