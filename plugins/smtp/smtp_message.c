/*
 * smtp_message.c — the text of one email, built by us because libESMTP does no MIME and no header
 * encoding: RFC 5322 headers (Date, From with its name, To, Subject, Message-ID from the message
 * key, MIME-Version), the RFC 8058 one-click unsubscribe headers on marketing mail, the caller's
 * extra headers, and a body that is multipart/alternative (text first, HTML last, as RFC 2046 wants
 * the preferred part last) with both parts quoted-printable. Non-ASCII header text becomes RFC 2047
 * encoded-words. The result is 7-bit with CRLF line ends, so no 8BITMIME or SMTPUTF8 is needed.
 */
#include "smtp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct buf {
	char *p;
	size_t len, cap;
};

/* Room for n more bytes and the terminating NUL. */
static void reserve(struct buf *b, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2 + 256;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort(); /* as everywhere in nudge: no memory, no way on */
	}
}

static void add(struct buf *b, const char *s, size_t n)
{
	reserve(b, n);
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void adds(struct buf *b, const char *s)
{
	add(b, s, strlen(s));
}

static void addf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void addf(struct buf *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	if ((size_t)n < sizeof tmp) {
		add(b, tmp, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (!big)
		abort();
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	add(b, big, (size_t)n);
	free(big);
}

static const char hexdigits[] = "0123456789ABCDEF";

static int printable_ascii(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			return 0;
	return 1;
}

/* The bytes of the UTF-8 sequence starting at p (1 for a stray byte). */
static size_t utf8_len(const unsigned char *p)
{
	size_t n = *p < 0x80             ? 1
	           : (*p & 0xe0) == 0xc0 ? 2
	           : (*p & 0xf0) == 0xe0 ? 3
	           : (*p & 0xf8) == 0xf0 ? 4
	                                 : 1;
	for (size_t i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 1;
	return n;
}

/*
 * RFC 2047 "Q" encoded-words, folded so that no line passes 76 columns; col is the column where
 * the first word starts and comes back as the column after the last. Only the characters RFC 2047
 * allows in a phrase are left as they are, so the same words serve Subject and display names. A
 * UTF-8 character is never split between two words.
 */
static void put_encoded_words(struct buf *b, const char *s, size_t *col)
{
	const size_t overhead = strlen("=?UTF-8?Q?") + strlen("?=");
	size_t room = *col + overhead + 4 <= 76 ? 76 - *col - overhead : 0;
	if (room == 0) {
		adds(b, "\r\n ");
		*col = 1;
		room = 76 - 1 - overhead;
	}
	adds(b, "=?UTF-8?Q?");
	size_t used = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		size_t n = utf8_len(p);
		char enc[16];
		size_t elen = 0;
		for (size_t i = 0; i < n; i++) {
			unsigned char c = p[i];
			if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			    (c >= '0' && c <= '9') || strchr("!*+-/", c)) {
				enc[elen++] = (char)c;
			} else if (c == ' ') {
				enc[elen++] = '_';
			} else {
				enc[elen++] = '=';
				enc[elen++] = hexdigits[c >> 4];
				enc[elen++] = hexdigits[c & 15];
			}
		}
		if (used + elen > room) {
			adds(b, "?=\r\n =?UTF-8?Q?");
			*col = 1;
			room = 76 - 1 - overhead;
			used = 0;
		}
		add(b, enc, elen);
		used += elen;
		p += n;
	}
	adds(b, "?=");
	*col += overhead + used;
}

/*
 * An unstructured header value (Subject, extra headers). Printable ASCII is written as is, folded
 * at spaces to keep lines near 78 columns (unfolding gives back the exact text); anything else, or
 * text that already looks like an encoded-word, becomes encoded-words.
 */
static void put_unstructured(struct buf *b, const char *s, size_t col)
{
	size_t len = strlen(s);
	int plain = printable_ascii(s) && !strstr(s, "=?") && len < 900;
	/* A single word longer than a line cannot be folded: encode it instead. */
	for (const char *w = s; plain && *w;) {
		size_t wl = strcspn(w, " ");
		if (wl > 900)
			plain = 0;
		w += wl;
		w += strspn(w, " ");
	}
	if (!plain) {
		put_encoded_words(b, s, &col);
		adds(b, "\r\n");
		return;
	}
	for (const char *p = s; *p; p++) {
		if (*p == ' ' && col > 1) {
			size_t next = strcspn(p + 1, " ");
			if (col + 1 + next > 78) {
				adds(b, "\r\n");
				col = 0;
			}
		}
		add(b, p, 1);
		col++;
	}
	adds(b, "\r\n");
}

/* A display name: as an atom run, a quoted string, or encoded-words. */
static void put_phrase(struct buf *b, const char *name, size_t *col)
{
	if (!printable_ascii(name) || strstr(name, "=?")) {
		put_encoded_words(b, name, col);
		return;
	}
	int atoms = 1;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || strchr(" !#$%&'*+-/=?^_`{|}~", *p)))
			atoms = 0;
	if (atoms) {
		adds(b, name);
		*col += strlen(name);
		return;
	}
	adds(b, "\"");
	for (const char *p = name; *p; p++) {
		if (*p == '"' || *p == '\\')
			adds(b, "\\");
		add(b, p, 1);
	}
	adds(b, "\"");
	*col += strlen(name) + 2;
}

/* "Field: Name <addr>\r\n" or "Field: addr\r\n". */
static void put_address(struct buf *b, const char *field, const char *name, const char *addr)
{
	addf(b, "%s: ", field);
	size_t col = strlen(field) + 2;
	if (name && *name) {
		put_phrase(b, name, &col);
		if (col + strlen(addr) + 3 > 78)
			adds(b, "\r\n");
		addf(b, " <%s>\r\n", addr);
	} else {
		addf(b, "%s\r\n", addr);
	}
}

/* 0 if addr is a plain addr-spec we can put in an envelope and a header; else a reason. */
static const char *address_problem(const char *addr)
{
	if (!addr || !*addr)
		return "is empty";
	size_t len = strlen(addr);
	const char *at = strrchr(addr, '@');
	if (len > 254 || !at || at == addr || !at[1] || (size_t)(at - addr) > 64)
		return "is not a valid email address";
	for (const unsigned char *p = (const unsigned char *)addr; *p; p++) {
		if (*p >= 0x80)
			return "is internationalised, which needs SMTPUTF8 (libESMTP lacks it)";
		if (*p <= ' ' || *p == 0x7f || strchr("<>()[],;:\\\"", *p))
			return "is not a valid email address";
	}
	for (const char *p = at + 1; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '-'))
			return "is not a valid email address";
	return NULL;
}

/*
 * Quoted-printable (RFC 2045 6.7): printable ASCII but '=' stays, other octets become =XX, line
 * ends (LF or CRLF) become CRLF hard breaks, whitespace before a line end is encoded, and soft
 * breaks keep every line within 76 characters. "From " at a line start is encoded too, so no
 * mailbox format along the way mangles it.
 */
static void put_qp(struct buf *b, const char *s)
{
	/* Written straight into the buffer, reserved once: per byte at most "=XX", plus a soft
	 * break ("=\r\n") per 73 encoded bytes (a message body is most of what this plugin does).
	 */
	size_t len = strlen(s);
	reserve(b, len * 4 + 16);
	char *o = b->p + b->len;
	size_t col = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		/* The common case, a run of printable ASCII other than '=': copied as it is, up to
		 * the soft break. */
		if (*p >= 33 && *p <= 126 && *p != '=' &&
		    !(*p == 'F' && col == 0 && strncmp((const char *)p, "From ", 5) == 0)) {
			if (col >= 75) {
				/* A soft break, then this byte again at the start of the line
				 * (where "From " is encoded). */
				*o++ = '=';
				*o++ = '\r';
				*o++ = '\n';
				col = 0;
				p--;
				continue;
			}
			const unsigned char *r = p;
			size_t room = 75 - col;
			while (room && *r >= 33 && *r <= 126 && *r != '=') {
				r++;
				room--;
			}
			memcpy(o, p, (size_t)(r - p));
			o += r - p;
			col += (size_t)(r - p);
			p = r - 1;
			continue;
		}
		if (*p == '\r' && p[1] == '\n')
			continue;
		if (*p == '\n') {
			*o++ = '\r';
			*o++ = '\n';
			col = 0;
			continue;
		}
		int at_eol = !p[1] || p[1] == '\n' || (p[1] == '\r' && p[2] == '\n');
		int literal =
		    ((*p == ' ' || *p == '\t') && !at_eol) || (*p >= 33 && *p <= 126 && *p != '=');
		if (col == 0 && *p == 'F' && strncmp((const char *)p, "From ", 5) == 0)
			literal = 0;
		size_t n = literal ? 1 : 3;
		if (col + n > 75) {
			*o++ = '=';
			*o++ = '\r';
			*o++ = '\n';
			col = 0;
		}
		if (literal) {
			*o++ = (char)*p;
		} else {
			*o++ = '=';
			*o++ = hexdigits[*p >> 4];
			*o++ = hexdigits[*p & 15];
		}
		col += n;
	}
	b->len = (size_t)(o - b->p);
	b->p[b->len] = '\0';
}

/* The message key as the left side of a Message-ID: letters, digits, '-' and '_' as they are,
 * every other byte as %XX ('%' is an atext character), so distinct keys stay distinct. */
static void put_msgid_left(struct buf *b, const char *key)
{
	for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_') {
			add(b, (const char *)p, 1);
		} else {
			char e[3] = {'%', hexdigits[*p >> 4], hexdigits[*p & 15]};
			add(b, e, 3);
		}
	}
}

static void put_date(struct buf *b, int64_t now_ms)
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t t = (time_t)(now_ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	addf(b, "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n", days[tm.tm_wday], tm.tm_mday,
	     months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int reserved_header(const char *name)
{
	static const char *const names[] = {
	    "Date",        "From",         "Sender",           "To",
	    "Cc",          "Bcc",          "Reply-To",         "Subject",
	    "Message-ID",  "MIME-Version", "List-Unsubscribe", "List-Unsubscribe-Post",
	    "Return-Path", "Received"};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strcasecmp(name, names[i]) == 0)
			return 1;
	return strncasecmp(name, "Content-", 8) == 0;
}

static int header_name_ok(const char *name)
{
	if (!name || !*name || strlen(name) > 76)
		return 0;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p < 33 || *p > 126 || *p == ':')
			return 0;
	return 1;
}

static int url_ok(const char *url)
{
	if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
		return 0;
	if (strlen(url) > 900)
		return 0;
	for (const unsigned char *p = (const unsigned char *)url; *p; p++)
		if (*p <= ' ' || *p >= 0x7f || *p == '<' || *p == '>' || *p == '"')
			return 0;
	return 1;
}

static int refuse(struct smtp_item *it, int suppress, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(struct smtp_item *it, int suppress, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(it->reason, sizeof it->reason, fmt, ap);
	va_end(ap);
	it->status = NUDGE_SEND_FAILED;
	it->suppress = suppress;
	return -1;
}

/* A boundary that quoted-printable text cannot contain: "=_" never occurs in QP output. */
static void boundary_for(const struct nudge_message *m, char *out, size_t len)
{
	uint64_t h = 1469598103934665603ull;
	for (const char *p = m->key ? m->key : ""; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	h ^= (uint64_t)m->id;
	snprintf(out, len, "=_nudge_%016llx", (unsigned long long)h);
}

static void put_part(struct buf *b, const char *boundary, const char *type, const char *text)
{
	if (boundary)
		addf(b, "--%s\r\n", boundary);
	addf(b, "Content-Type: %s; charset=utf-8\r\n", type);
	adds(b, "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
	put_qp(b, text);
	adds(b, "\r\n");
}

int smtp_message_build(struct smtp_inst *inst, struct smtp_item *it, int64_t now_ms)
{
	const struct smtp_settings *set = &inst->set;
	const struct nudge_message *m = it->msg;
	const char *from = m->from ? m->from : set->from;
	const char *from_name =
	    m->from ? m->from_name : (m->from_name ? m->from_name : set->from_name);
	const char *why;
	if ((why = address_problem(m->recipient)) != NULL)
		return refuse(it, strstr(why, "SMTPUTF8") == NULL, "the recipient address %s", why);
	if ((why = address_problem(from)) != NULL)
		return refuse(it, 0, "the From address %s %s", from ? from : "", why);
	if (m->reply_to && (why = address_problem(m->reply_to)) != NULL)
		return refuse(it, 0, "the Reply-To address %s %s", m->reply_to, why);
	if (!m->key || !*m->key)
		return refuse(it, 0, "the message has no key for its Message-ID");
	if (!m->text && !m->html)
		return refuse(it, 0, "an email needs a text or an HTML body");
	int marketing = m->purpose == NUDGE_PURPOSE_MARKETING;
	if (marketing && (!m->unsubscribe_url || !url_ok(m->unsubscribe_url)))
		return refuse(
		    it, 0,
		    "marketing email needs an http(s) unsubscribe URL for List-Unsubscribe "
		    "(RFC 8058)");
	for (size_t i = 0; i < m->nheaders; i++) {
		const struct nudge_header *h = &m->headers[i];
		if (!header_name_ok(h->name) || !h->value || strpbrk(h->value, "\r\n"))
			return refuse(it, 0, "extra header \"%s\" is not a valid header",
			              h->name ? h->name : "");
		if (reserved_header(h->name))
			return refuse(it, 0, "extra header %s is written by the smtp plugin itself",
			              h->name);
	}

	struct buf b = {0};
	put_date(&b, now_ms);
	put_address(&b, "From", from_name, from);
	put_address(&b, "To", m->recipient_name, m->recipient);
	if (m->reply_to)
		put_address(&b, "Reply-To", NULL, m->reply_to);
	adds(&b, "Subject: ");
	put_unstructured(&b, m->subject ? m->subject : "", strlen("Subject: "));
	const char *domain = set->msgid_domain ? set->msgid_domain : strrchr(from, '@') + 1;
	adds(&b, "Message-ID: <");
	put_msgid_left(&b, m->key);
	addf(&b, "@%s>\r\n", domain);
	adds(&b, "MIME-Version: 1.0\r\n");
	if (marketing) {
		addf(&b, "List-Unsubscribe: <%s>", m->unsubscribe_url);
		if (set->unsubscribe_mailto)
			addf(&b, ",\r\n <mailto:%s?subject=unsubscribe>", set->unsubscribe_mailto);
		adds(&b, "\r\n");
		/* One-click (RFC 8058) is defined for HTTPS only. */
		if (strncmp(m->unsubscribe_url, "https://", 8) == 0)
			adds(&b, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
		else if (!inst->warned_http_unsubscribe) {
			inst->warned_http_unsubscribe = 1;
			inst->host->log(
			    inst->self, NUDGE_LOG_WARN,
			    "unsubscribe URLs are not https, so marketing mail goes out "
			    "without one-click unsubscribe (Gmail and Yahoo require it)");
		}
	}
	for (size_t i = 0; i < m->nheaders; i++) {
		addf(&b, "%s: ", m->headers[i].name);
		put_unstructured(&b, m->headers[i].value, strlen(m->headers[i].name) + 2);
	}
	if (m->text && m->html) {
		char boundary[40];
		boundary_for(m, boundary, sizeof boundary);
		addf(&b, "Content-Type: multipart/alternative;\r\n boundary=\"%s\"\r\n\r\n",
		     boundary);
		adds(&b, "This is a multi-part message in MIME format.\r\n\r\n");
		put_part(&b, boundary, "text/plain", m->text);
		put_part(&b, boundary, "text/html", m->html);
		addf(&b, "--%s--\r\n", boundary);
	} else {
		put_part(&b, NULL, m->text ? "text/plain" : "text/html",
		         m->text ? m->text : m->html);
	}
	it->text = b.p;
	it->text_len = b.len;
	it->envelope_from = strdup(set->bounce ? set->bounce : from);
	if (!it->envelope_from)
		abort();
	return 0;
}
