/*
 * arf.c — the fields of a feedback-loop complaint (see arf.h).
 */
#include "arf.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The value of the header line at p (name already matched, p after the colon), unfolded and
 * trimmed, into out. */
static void header_value(const char *p, const char *end, char *out, size_t outlen)
{
	size_t o = 0;
	while (p < end) {
		if (*p == '\r' || *p == '\n') {
			const char *q = p;
			if (*q == '\r' && q + 1 < end && q[1] == '\n')
				q++;
			q++;
			if (q < end && (*q == ' ' || *q == '\t')) { /* folded: continues */
				p = q;
				continue;
			}
			break;
		}
		if (o + 1 < outlen && !(o == 0 && (*p == ' ' || *p == '\t')))
			out[o++] = *p;
		p++;
	}
	while (o > 0 && isspace((unsigned char)out[o - 1]))
		o--;
	out[o] = '\0';
}

/* "rfc822; a@b" and "<a@b>" → "a@b". */
static void bare_address(char *s)
{
	char *semi = strchr(s, ';');
	char *p = semi ? semi + 1 : s;
	while (*p == ' ' || *p == '\t' || *p == '<')
		p++;
	size_t n = strcspn(p, "> \t");
	memmove(s, p, n);
	s[n] = '\0';
}

/* <nudge-CID-MID@host>: our Message-ID (core/dispatch_send.c makes the key). */
static int our_message_id(const char *v, int64_t *cid, int64_t *mid)
{
	const char *p = strstr(v, "<nudge-");
	if (!p)
		return -1;
	long long c, m;
	int n = 0;
	if (sscanf(p, "<nudge-%lld-%lld%n", &c, &m, &n) != 2 || p[n] != '@' || c <= 0 || m <= 0)
		return -1;
	*cid = c;
	*mid = m;
	return 0;
}

int ng_arf_parse(const char *text, size_t len, struct ng_arf *out, const char **why)
{
	memset(out, 0, sizeof *out);
	const char *end = text + len;
	for (const char *line = text; line < end;) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		const char *next = nl ? nl + 1 : end;
		static const struct {
			const char *name;
			int field; /* 0 type, 1 message id, 2 recipient, 3 fallback recipient */
		} names[] = {{"Feedback-Type:", 0},
		             {"Message-ID:", 1},
		             {"Original-Rcpt-To:", 2},
		             {"Removal-Recipient:", 3}};
		for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
			size_t n = strlen(names[i].name);
			if ((size_t)(end - line) < n || strncasecmp(line, names[i].name, n) != 0)
				continue;
			char v[512];
			header_value(line + n, end, v, sizeof v);
			switch (names[i].field) {
			case 0:
				if (!out->feedback_type[0])
					snprintf(out->feedback_type, sizeof out->feedback_type,
					         "%s", v);
				break;
			case 1:
				/* The report's own Message-ID is the provider's; ours is the one
				 * of the message inside it. */
				if (!out->message_id)
					our_message_id(v, &out->customer_id, &out->message_id);
				break;
			default:
				if (!out->recipient[0] || names[i].field == 2) {
					bare_address(v);
					if (v[0] && strchr(v, '@'))
						snprintf(out->recipient, sizeof out->recipient,
						         "%s", v);
				}
				break;
			}
		}
		line = next;
	}
	for (char *p = out->feedback_type; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (!out->message_id && !out->recipient[0]) {
		*why = "the report names no message nudge sent (no Message-ID <nudge-…>) and no "
		       "recipient (Original-Rcpt-To): nothing to suppress";
		return -1;
	}
	return 0;
}
