/*
 * smtp_standin.c — the SMTP stand-in for tests (see smtp_standin.h): a listener thread on
 * 127.0.0.1:0 and one thread per connection with blocking I/O (TLS through OpenSSL after
 * STARTTLS). Every wait polls in short slices so that stop() is prompt even while a connection is
 * told to hang. Also the test PKI, made with the OpenSSL API so tests need no openssl command.
 */
#include "smtp_standin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

struct script {
	char cmd[16];
	int code;
	char text[200];
	int times;
	struct script *next;
};

struct fault {
	int kind, times;
	struct fault *next;
};

struct conn_thread {
	pthread_t tid;
	struct conn_thread *next;
};

struct ng_smtp_standin {
	int fd, port;
	atomic_int stop;
	pthread_t listener;
	int listening; /* the listener thread runs */
	SSL_CTX *tls;  /* NULL: no STARTTLS */
	char *user, *password;
	int no_pipelining;
	int refuse_at_rcpt;
	pthread_mutex_t mu; /* guards everything below */
	struct script *scripts;
	struct fault *faults;
	struct conn_thread *threads;
	struct ng_smtp_standin_stats stats;
	struct ng_smtp_received *msgs;
	int nmsgs, msgs_cap;
};

/* ---- one connection ---------------------------------------------------------------------- */

struct conn {
	struct ng_smtp_standin *s;
	int fd;
	int number;
	SSL *ssl;
	char buf[65536];
	size_t start, len;
	char out[8192]; /* replies not yet written */
	size_t outlen;
	/* The transaction and session state. */
	int authed;
	char *mail_from, *rcpt;
	int nrcpt;
};

static char *xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");
	if (!d)
		abort();
	return d;
}

static void flush(struct conn *c);

/* Waits for input in short slices; 0 when readable, -1 on stop or error. */
static int wait_readable(struct conn *c)
{
	for (;;) {
		if (c->ssl && SSL_pending(c->ssl) > 0)
			return 0;
		struct pollfd p = {c->fd, POLLIN, 0};
		int r = poll(&p, 1, 50);
		if (atomic_load(&c->s->stop))
			return -1;
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -1;
	}
}

/* The next line without its CRLF, NUL-terminated inside the buffer; NULL at EOF, stop or error. */
static char *read_line(struct conn *c)
{
	for (;;) {
		char *nl = memchr(c->buf + c->start, '\n', c->len - c->start);
		if (nl) {
			char *line = c->buf + c->start;
			c->start = (size_t)(nl - c->buf) + 1;
			*nl = '\0';
			if (nl > line && nl[-1] == '\r')
				nl[-1] = '\0';
			if (getenv("NG_SMTP_STANDIN_TRACE"))
				fprintf(stderr, "standin %d C: %s\n", c->number, line);
			return line;
		}
		if (c->start > 0) {
			memmove(c->buf, c->buf + c->start, c->len - c->start);
			c->len -= c->start;
			c->start = 0;
		}
		flush(c);
		if (c->len >= sizeof c->buf - 1 || wait_readable(c) != 0)
			return NULL;
		ssize_t n =
		    c->ssl ? SSL_read(c->ssl, c->buf + c->len, (int)(sizeof c->buf - 1 - c->len))
		           : read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
		if (n <= 0)
			return NULL;
		c->len += (size_t)n;
	}
}

/* Writes the replies collected so far in one go. */
static void flush(struct conn *c)
{
	size_t off = 0;
	while (off < c->outlen) {
		ssize_t w = c->ssl ? SSL_write(c->ssl, c->out + off, (int)(c->outlen - off))
		                   : write(c->fd, c->out + off, c->outlen - off);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	c->outlen = 0;
}

static void say(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Queues one reply line. Like a real MTA, the stand-in answers a multi-line EHLO or a pipelined
 * group of commands in one write, flushed whenever it is about to wait for the client: libESMTP
 * over TLS loses replies that come one TLS record per line.
 */
static void say(struct conn *c, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || n > (int)sizeof line - 3)
		n = (int)sizeof line - 3;
	if (getenv("NG_SMTP_STANDIN_TRACE"))
		fprintf(stderr, "standin %d S: %.*s\n", c->number, n, line);
	line[n++] = '\r';
	line[n++] = '\n';
	if (c->outlen + (size_t)n > sizeof c->out)
		flush(c);
	memcpy(c->out + c->outlen, line, (size_t)n);
	c->outlen += (size_t)n;
}

/* The scripted reply for cmd, if any (consumed); 1 with code and text filled. */
static int take_script(struct ng_smtp_standin *s, const char *cmd, int *code, char *text,
                       size_t len)
{
	int found = 0;
	pthread_mutex_lock(&s->mu);
	for (struct script **pp = &s->scripts; *pp; pp = &(*pp)->next) {
		struct script *sc = *pp;
		if (strcmp(sc->cmd, cmd) != 0)
			continue;
		*code = sc->code;
		snprintf(text, len, "%s", sc->text);
		found = 1;
		if (--sc->times == 0) {
			*pp = sc->next;
			free(sc);
		}
		break;
	}
	pthread_mutex_unlock(&s->mu);
	return found;
}

static int take_fault(struct ng_smtp_standin *s)
{
	int kind = 0;
	pthread_mutex_lock(&s->mu);
	struct fault *f = s->faults;
	if (f) {
		kind = f->kind;
		if (--f->times == 0) {
			s->faults = f->next;
			free(f);
		}
	}
	pthread_mutex_unlock(&s->mu);
	return kind;
}

static void reset_transaction(struct conn *c)
{
	free(c->mail_from);
	free(c->rcpt);
	c->mail_from = c->rcpt = NULL;
	c->nrcpt = 0;
}

/* The address between < and > in "FROM:<a@b> SIZE=…". */
static char *angle_addr(const char *arg)
{
	const char *lt = strchr(arg, '<'), *gt = lt ? strchr(lt, '>') : NULL;
	if (!lt || !gt)
		return NULL;
	char *a = strndup(lt + 1, (size_t)(gt - lt - 1));
	if (!a)
		abort();
	return a;
}

/* Base64 to text (the SASL strings here are short). */
static int b64_decode(const char *in, char *out, size_t cap)
{
	size_t n = strlen(in);
	if (n % 4 || (n / 4) * 3 + 1 > cap)
		return -1;
	int len = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)in, (int)n);
	if (len < 0)
		return -1;
	if (n && in[n - 1] == '=')
		len--;
	if (n > 1 && in[n - 2] == '=')
		len--;
	out[len] = '\0';
	return len;
}

static void do_auth(struct conn *c, char *arg)
{
	struct ng_smtp_standin *s = c->s;
	char mech[16] = "", initial[512] = "";
	sscanf(arg, "%15s %511s", mech, initial);
	char user[256] = "", pass[256] = "", raw[512];
	int ok = 0;
	if (strcasecmp(mech, "PLAIN") == 0) {
		const char *b64 = initial;
		if (!initial[0]) {
			say(c, "334 ");
			b64 = read_line(c);
			if (!b64)
				return;
		}
		int n = b64_decode(b64, raw, sizeof raw);
		if (n > 0) {
			/* authzid NUL user NUL password */
			const char *u = memchr(raw, '\0', (size_t)n);
			const char *p = u ? memchr(u + 1, '\0', (size_t)(raw + n - u - 1)) : NULL;
			if (u && p) {
				snprintf(user, sizeof user, "%s", u + 1);
				snprintf(pass, sizeof pass, "%.*s", (int)(raw + n - p - 1), p + 1);
				ok = 1;
			}
		}
	} else if (strcasecmp(mech, "LOGIN") == 0) {
		/* The user name may come with the command (RFC 4954 initial response). */
		const char *l = initial;
		if (!initial[0]) {
			say(c, "334 VXNlcm5hbWU6");
			l = read_line(c);
			if (!l)
				return;
		}
		ok = b64_decode(l, user, sizeof user) >= 0;
		say(c, "334 UGFzc3dvcmQ6");
		l = read_line(c);
		if (!l)
			return;
		ok = ok && b64_decode(l, pass, sizeof pass) >= 0;
	} else {
		say(c, "504 5.5.4 Unrecognized authentication type");
		return;
	}
	ok = ok && strcmp(user, s->user) == 0 && strcmp(pass, s->password) == 0;
	pthread_mutex_lock(&s->mu);
	if (ok)
		s->stats.auth_ok++;
	else
		s->stats.auth_failed++;
	pthread_mutex_unlock(&s->mu);
	if (ok) {
		c->authed = 1;
		say(c, "235 2.7.0 Authentication successful");
	} else {
		say(c, "535 5.7.8 Authentication credentials invalid");
	}
}

/* Reads the message after 354 and records it; returns its index, or -1 if the client left. */
static int read_message(struct conn *c)
{
	size_t cap = 4096, len = 0;
	char *data = malloc(cap);
	if (!data)
		abort();
	for (;;) {
		char *line = read_line(c);
		if (!line) {
			free(data);
			return -1;
		}
		if (strcmp(line, ".") == 0)
			break;
		if (line[0] == '.')
			line++; /* undo dot-stuffing */
		size_t n = strlen(line);
		if (len + n + 3 > cap) {
			cap = (len + n + 3) * 2;
			data = realloc(data, cap);
			if (!data)
				abort();
		}
		memcpy(data + len, line, n);
		len += n;
		data[len++] = '\r';
		data[len++] = '\n';
	}
	data[len] = '\0';
	struct ng_smtp_standin *s = c->s;
	pthread_mutex_lock(&s->mu);
	if (s->nmsgs == s->msgs_cap) {
		s->msgs_cap = s->msgs_cap ? s->msgs_cap * 2 : 16;
		s->msgs = realloc(s->msgs, (size_t)s->msgs_cap * sizeof *s->msgs);
		if (!s->msgs)
			abort();
	}
	int i = s->nmsgs++;
	s->msgs[i] = (struct ng_smtp_received){
	    .mail_from = xstrdup(c->mail_from),
	    .rcpt = xstrdup(c->rcpt),
	    .nrcpt = c->nrcpt,
	    .data = data,
	    .tls = c->ssl != NULL,
	    .authenticated = c->authed,
	    .connection = c->number,
	};
	s->stats.received++;
	pthread_mutex_unlock(&s->mu);
	return i;
}

/* Returns 1 to go on, 0 to close the connection. */
static int do_data(struct conn *c)
{
	struct ng_smtp_standin *s = c->s;
	if (c->nrcpt == 0) {
		say(c, "503 5.5.1 Error: no valid recipients");
		return 1;
	}
	say(c, "354 End data with <CR><LF>.<CR><LF>");
	int i = read_message(c);
	if (i < 0)
		return 0;
	int fault = take_fault(s);
	if (fault == NG_SMTP_HANG_AFTER_DATA) {
		while (read_line(c)) /* silent until the client gives up */
			;
		return 0;
	}
	if (fault == NG_SMTP_RESET_BEFORE_FINAL) {
		struct linger lg = {1, 0}; /* close with RST */
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		return 0;
	}
	int code;
	char text[200];
	if (take_script(s, ".", &code, text, sizeof text)) {
		say(c, "%d %s", code, text);
		reset_transaction(c);
		return code != 421;
	}
	pthread_mutex_lock(&s->mu);
	s->msgs[i].acked = 1;
	int n = ++s->stats.accepted;
	pthread_mutex_unlock(&s->mu);
	say(c, "250 2.0.0 Ok: queued as Q%04d", n);
	reset_transaction(c);
	return 1;
}

static void do_ehlo(struct conn *c)
{
	struct ng_smtp_standin *s = c->s;
	const char *lines[8];
	int n = 0;
	lines[n++] = "localhost greets you";
	if (!s->no_pipelining)
		lines[n++] = "PIPELINING";
	lines[n++] = "ENHANCEDSTATUSCODES";
	if (s->tls && !c->ssl)
		lines[n++] = "STARTTLS";
	if (s->user && (c->ssl || !s->tls))
		lines[n++] = "AUTH PLAIN LOGIN";
	lines[n++] = "SIZE 10485760";
	for (int i = 0; i < n; i++)
		say(c, "250%c%s", i + 1 < n ? '-' : ' ', lines[i]);
}

/* Returns 1 to go on, 0 to close. */
static int do_starttls(struct conn *c)
{
	struct ng_smtp_standin *s = c->s;
	if (!s->tls || c->ssl) {
		say(c, "503 5.5.1 TLS not available");
		return 1;
	}
	say(c, "220 2.0.0 Ready to start TLS");
	flush(c);
	c->start = c->len = 0; /* nothing sent before the handshake may count after it */
	c->ssl = SSL_new(s->tls);
	SSL_set_fd(c->ssl, c->fd);
	if (SSL_accept(c->ssl) != 1) {
		ERR_clear_error();
		return 0;
	}
	c->authed = 0;
	reset_transaction(c);
	pthread_mutex_lock(&s->mu);
	s->stats.tls++;
	pthread_mutex_unlock(&s->mu);
	return 1;
}

static void serve(struct conn *c)
{
	struct ng_smtp_standin *s = c->s;
	say(c, "220 localhost ESMTP nudge stand-in");
	char *line;
	while ((line = read_line(c)) != NULL) {
		char verb[16] = "";
		size_t vn = strcspn(line, " ");
		snprintf(verb, sizeof verb, "%.*s", (int)(vn < 15 ? vn : 15), line);
		for (char *p = verb; *p; p++)
			if (*p >= 'a' && *p <= 'z')
				*p = (char)(*p - 'a' + 'A');
		char *arg = line + vn + (line[vn] == ' ');
		int code;
		char text[200];
		if (take_script(s, verb, &code, text, sizeof text)) {
			say(c, "%d %s", code, text);
			if (code == 421)
				break;
			if (code / 100 != 2)
				continue;
		}
		if (strcmp(verb, "EHLO") == 0) {
			reset_transaction(c);
			do_ehlo(c);
		} else if (strcmp(verb, "HELO") == 0) {
			reset_transaction(c);
			say(c, "250 localhost");
		} else if (strcmp(verb, "STARTTLS") == 0) {
			if (!do_starttls(c))
				break;
		} else if (strcmp(verb, "AUTH") == 0) {
			if (!s->user || (s->tls && !c->ssl))
				say(c, "503 5.5.1 AUTH not available");
			else
				do_auth(c, arg);
		} else if (strcmp(verb, "MAIL") == 0) {
			if (s->user && !c->authed && !s->refuse_at_rcpt) {
				say(c, "530 5.7.0 Authentication required");
				continue;
			}
			reset_transaction(c);
			c->mail_from = angle_addr(arg);
			say(c,
			    c->mail_from ? "250 2.1.0 Ok" : "501 5.1.7 Bad sender address syntax");
		} else if (strcmp(verb, "RCPT") == 0) {
			char *a = c->mail_from ? angle_addr(arg) : NULL;
			if (!a) {
				say(c, "503 5.5.1 Error: need MAIL command");
				continue;
			}
			if (s->user && !c->authed) {
				free(a);
				say(c, "550 relay not permitted");
				continue;
			}
			if (!c->rcpt)
				c->rcpt = a;
			else
				free(a);
			c->nrcpt++;
			say(c, "250 2.1.5 Ok");
		} else if (strcmp(verb, "DATA") == 0) {
			if (!do_data(c))
				break;
		} else if (strcmp(verb, "RSET") == 0) {
			reset_transaction(c);
			say(c, "250 2.0.0 Ok");
		} else if (strcmp(verb, "NOOP") == 0) {
			say(c, "250 2.0.0 Ok");
		} else if (strcmp(verb, "QUIT") == 0) {
			say(c, "221 2.0.0 Bye");
			break;
		} else {
			say(c, "502 5.5.2 Error: command not recognized");
		}
	}
}

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	serve(c);
	flush(c);
	if (c->ssl) {
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	close(c->fd);
	reset_transaction(c);
	free(c);
	return NULL;
}

static void *listener_main(void *arg)
{
	struct ng_smtp_standin *s = arg;
	while (!atomic_load(&s->stop)) {
		struct pollfd p = {s->fd, POLLIN, 0};
		if (poll(&p, 1, 50) <= 0)
			continue;
		int fd = accept(s->fd, NULL, NULL);
		if (fd < 0)
			continue;
		struct timeval tv = {10, 0}; /* a stuck TLS handshake must not outlive the test */
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		struct conn *c = calloc(1, sizeof *c);
		struct conn_thread *t = calloc(1, sizeof *t);
		if (!c || !t)
			abort();
		c->s = s;
		c->fd = fd;
		pthread_mutex_lock(&s->mu);
		c->number = ++s->stats.connections;
		pthread_mutex_unlock(&s->mu);
		if (pthread_create(&t->tid, NULL, conn_main, c) != 0)
			abort();
		t->next = s->threads;
		s->threads = t; /* only this thread and stop() (after joining it) touch the list */
	}
	return NULL;
}

/* ---- the server -------------------------------------------------------------------------- */

static SSL_CTX *server_tls(const char *cert_pem, const char *key_pem)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	BIO *cb = BIO_new_mem_buf(cert_pem, -1), *kb = BIO_new_mem_buf(key_pem, -1);
	X509 *cert = PEM_read_bio_X509(cb, NULL, NULL, NULL);
	EVP_PKEY *key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
	int ok = ctx && cert && key && SSL_CTX_use_certificate(ctx, cert) == 1 &&
	         SSL_CTX_use_PrivateKey(ctx, key) == 1;
	X509_free(cert);
	EVP_PKEY_free(key);
	BIO_free(cb);
	BIO_free(kb);
	if (!ok) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	return ctx;
}

int ng_smtp_standin_start(struct ng_smtp_standin **out, const struct ng_smtp_standin_opts *o)
{
	struct ng_smtp_standin *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->fd = -1;
	pthread_mutex_init(&s->mu, NULL);
	s->no_pipelining = o && o->no_pipelining;
	s->refuse_at_rcpt = o && o->refuse_at_rcpt;
	if (o && o->user) {
		s->user = xstrdup(o->user);
		s->password = xstrdup(o->password);
	}
	if (o && o->cert_pem) {
		s->tls = server_tls(o->cert_pem, o->key_pem);
		if (!s->tls) {
			ng_smtp_standin_stop(s);
			return -EINVAL;
		}
	}
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t alen = sizeof a;
	if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    listen(s->fd, 64) != 0 || getsockname(s->fd, (struct sockaddr *)&a, &alen) != 0) {
		int e = errno;
		ng_smtp_standin_stop(s);
		return -e;
	}
	s->port = ntohs(a.sin_port);
	if (pthread_create(&s->listener, NULL, listener_main, s) != 0) {
		ng_smtp_standin_stop(s);
		return -EAGAIN;
	}
	s->listening = 1;
	*out = s;
	return 0;
}

int ng_smtp_standin_port(const struct ng_smtp_standin *s)
{
	return s->port;
}

void ng_smtp_standin_stop(struct ng_smtp_standin *s)
{
	atomic_store(&s->stop, 1);
	if (s->listening)
		pthread_join(s->listener, NULL);
	while (s->threads) {
		struct conn_thread *t = s->threads;
		s->threads = t->next;
		pthread_join(t->tid, NULL);
		free(t);
	}
	if (s->fd >= 0)
		close(s->fd);
	while (s->scripts) {
		struct script *sc = s->scripts;
		s->scripts = sc->next;
		free(sc);
	}
	while (s->faults) {
		struct fault *f = s->faults;
		s->faults = f->next;
		free(f);
	}
	for (int i = 0; i < s->nmsgs; i++)
		ng_smtp_received_free(&s->msgs[i]);
	free(s->msgs);
	SSL_CTX_free(s->tls);
	free(s->user);
	free(s->password);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

void ng_smtp_standin_script(struct ng_smtp_standin *s, const char *cmd, int code, const char *text,
                            int times)
{
	struct script *sc = calloc(1, sizeof *sc);
	if (!sc)
		abort();
	snprintf(sc->cmd, sizeof sc->cmd, "%s", cmd);
	sc->code = code;
	snprintf(sc->text, sizeof sc->text, "%s", text);
	sc->times = times;
	pthread_mutex_lock(&s->mu);
	struct script **pp = &s->scripts;
	while (*pp)
		pp = &(*pp)->next;
	*pp = sc;
	pthread_mutex_unlock(&s->mu);
}

void ng_smtp_standin_fault(struct ng_smtp_standin *s, int kind, int times)
{
	struct fault *f = calloc(1, sizeof *f);
	if (!f)
		abort();
	f->kind = kind;
	f->times = times;
	pthread_mutex_lock(&s->mu);
	struct fault **pp = &s->faults;
	while (*pp)
		pp = &(*pp)->next;
	*pp = f;
	pthread_mutex_unlock(&s->mu);
}

void ng_smtp_standin_stats(struct ng_smtp_standin *s, struct ng_smtp_standin_stats *out)
{
	pthread_mutex_lock(&s->mu);
	*out = s->stats;
	pthread_mutex_unlock(&s->mu);
}

int ng_smtp_standin_received(struct ng_smtp_standin *s, int i, struct ng_smtp_received *out)
{
	int rc = -1;
	pthread_mutex_lock(&s->mu);
	if (i >= 0 && i < s->nmsgs) {
		*out = s->msgs[i];
		out->mail_from = xstrdup(s->msgs[i].mail_from);
		out->rcpt = xstrdup(s->msgs[i].rcpt);
		out->data = xstrdup(s->msgs[i].data);
		rc = 0;
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

void ng_smtp_received_free(struct ng_smtp_received *r)
{
	free(r->mail_from);
	free(r->rcpt);
	free(r->data);
	r->mail_from = r->rcpt = r->data = NULL;
}

/* ---- the test PKI ------------------------------------------------------------------------ */

static int add_ext(X509 *cert, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	if (!ext)
		return -1;
	int ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -1;
}

static X509 *make_cert(EVP_PKEY *key, EVP_PKEY *signer, X509 *issuer, const char *cn, long serial)
{
	X509 *x = X509_new();
	if (!x)
		return NULL;
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 30L * 24 * 3600);
	X509_set_pubkey(x, key);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
	int bad = 0;
	if (!issuer) {
		bad |= add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE");
		bad |= add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
		bad |= add_ext(x, &ctx, NID_subject_key_identifier, "hash");
	} else {
		bad |= add_ext(x, &ctx, NID_basic_constraints, "CA:FALSE");
		bad |= add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature");
		bad |= add_ext(x, &ctx, NID_ext_key_usage, "serverAuth");
		bad |= add_ext(x, &ctx, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
	}
	if (bad || !X509_sign(x, signer, EVP_sha256())) {
		X509_free(x);
		return NULL;
	}
	return x;
}

static char *pem_of(int (*write)(BIO *, void *), void *obj)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *out = NULL;
	if (b && write(b, obj)) {
		char *p;
		long n = BIO_get_mem_data(b, &p);
		out = strndup(p, (size_t)n);
	}
	BIO_free(b);
	return out;
}

static int write_cert(BIO *b, void *x)
{
	return PEM_write_bio_X509(b, x);
}

static int write_key(BIO *b, void *k)
{
	return PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
}

int ng_test_pki_make(const char *ca_path, char **cert_pem, char **key_pem)
{
	EVP_PKEY *ca_key = EVP_EC_gen("P-256"), *key = EVP_EC_gen("P-256");
	X509 *ca = ca_key ? make_cert(ca_key, ca_key, NULL, "nudge test CA", 1) : NULL;
	X509 *cert = ca && key ? make_cert(key, ca_key, ca, "localhost", 2) : NULL;
	int rc = -1;
	FILE *f = cert ? fopen(ca_path, "w") : NULL;
	if (f) {
		int ok = PEM_write_X509(f, ca);
		fclose(f);
		*cert_pem = ok ? pem_of(write_cert, cert) : NULL;
		*key_pem = ok ? pem_of(write_key, key) : NULL;
		rc = *cert_pem && *key_pem ? 0 : -1;
	}
	X509_free(cert);
	X509_free(ca);
	EVP_PKEY_free(key);
	EVP_PKEY_free(ca_key);
	return rc;
}
