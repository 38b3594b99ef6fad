/*
 * arf.h — reading a complaint from a mailbox provider's feedback loop: an Abuse Reporting Format
 * report (RFC 5965), or any message that carries the complained-of message's headers.
 *
 * What nudge needs from it: the feedback type, the message it is about (our Message-ID
 * <nudge-CUSTOMER-MESSAGE@host>, which the SMTP plugin sets from the message's key), and the
 * reported recipient (Original-Rcpt-To, or Removal-Recipient) for reports whose provider strips
 * the Message-ID. Header names are matched without regard to case, folded headers are unfolded,
 * and the report's parts are read as text: no MIME decoding is needed for the fields ARF defines.
 */
#ifndef NG_ARF_H
#define NG_ARF_H

#include <stddef.h>
#include <stdint.h>

struct ng_arf {
	char feedback_type[32]; /* "abuse", "fraud", …; "" when the report names none */
	int64_t customer_id;    /* from the Message-ID; 0 when none of ours was found */
	int64_t message_id;
	char recipient[320]; /* Original-Rcpt-To / Removal-Recipient; "" when absent */
};

/* 0, or -1 with *why set to a sentence when the text names neither a message of ours nor a
 * recipient. */
int ng_arf_parse(const char *text, size_t len, struct ng_arf *out, const char **why);

#endif
