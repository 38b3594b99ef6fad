/*
 * smtp_standin.h — an SMTP server for tests, in-process on threads of its own: it speaks real SMTP
 * on 127.0.0.1 (port 0, so the kernel picks a free one), offers PIPELINING and ENHANCEDSTATUSCODES,
 * optionally STARTTLS (with a certificate made at test time by ng_test_pki_make) and AUTH
 * PLAIN/LOGIN, records what it receives, and misbehaves on request: a scripted reply to a command,
 * silence after the end of DATA, or a reset connection before the final 250.
 */
#ifndef NG_SMTP_STANDIN_H
#define NG_SMTP_STANDIN_H

#include <stddef.h>

struct ng_smtp_standin;

struct ng_smtp_standin_opts {
	const char *cert_pem; /* with key_pem: offer STARTTLS with this certificate (chain) */
	const char *key_pem;
	const char *user; /* with password: offer AUTH PLAIN LOGIN (after STARTTLS when offered) and
	                     answer MAIL FROM with 530 until a client authenticates */
	const char *password;
	int no_pipelining;  /* do not advertise PIPELINING */
	int refuse_at_rcpt; /* with user: as Exim does, take MAIL FROM from a client that has not
	                       authenticated and refuse its RCPT TO with "550 relay not permitted"
	                     */
};

int ng_smtp_standin_start(struct ng_smtp_standin **out, const struct ng_smtp_standin_opts *opts);
int ng_smtp_standin_port(const struct ng_smtp_standin *s);
/* Stops accepting, closes every connection, joins the threads, frees everything. */
void ng_smtp_standin_stop(struct ng_smtp_standin *s);

/*
 * Answers the next `times` uses of cmd ("EHLO", "MAIL", "RCPT", "DATA", "." for the end of the
 * message, "AUTH") with "code text" instead of the normal reply. Scripts are used in the order
 * given. A 421 reply closes the connection after it is sent.
 */
void ng_smtp_standin_script(struct ng_smtp_standin *s, const char *cmd, int code, const char *text,
                            int times);

enum {
	NG_SMTP_HANG_AFTER_DATA = 1,    /* read the whole message, then never answer */
	NG_SMTP_RESET_BEFORE_FINAL = 2, /* read the whole message, then reset the connection */
};
/* Misbehaves after the next `times` messages (in the order faults are given). */
void ng_smtp_standin_fault(struct ng_smtp_standin *s, int fault, int times);

struct ng_smtp_standin_stats {
	int connections;
	int tls;         /* STARTTLS handshakes completed */
	int auth_ok;     /* AUTH exchanges that succeeded */
	int auth_failed; /* AUTH exchanges refused with 535 */
	int received;    /* messages read to their end, answered or not */
	int accepted;    /* messages answered 250 */
};
void ng_smtp_standin_stats(struct ng_smtp_standin *s, struct ng_smtp_standin_stats *out);

/* One received message. */
struct ng_smtp_received {
	char *mail_from;
	char *rcpt; /* the first accepted RCPT TO */
	int nrcpt;  /* accepted recipients */
	char *data; /* the message, CRLF line ends, dot-stuffing removed */
	int acked;  /* answered 250 */
	int tls;    /* arrived over TLS */
	int authenticated;
	int connection; /* 1 for the first connection, 2 for the second… */
};

/* A copy of the i-th received message (arrival order); 0, or -1 if there is none. */
int ng_smtp_standin_received(struct ng_smtp_standin *s, int i, struct ng_smtp_received *out);
void ng_smtp_received_free(struct ng_smtp_received *r);

/*
 * A test PKI made with the OpenSSL API: a CA, and a server certificate for DNS:localhost (and
 * IP:127.0.0.1) signed by it, with P-256 keys. The CA certificate is written to ca_path; the server
 * certificate and key come back as malloc'd PEM text. 0 on success.
 */
int ng_test_pki_make(const char *ca_path, char **cert_pem, char **key_pem);

#endif
