/*
 * msgtmpl_int.h — what `nudge check` and the tests need from msgtmpl.c beyond the dispatcher's
 * contract (msgtmpl.h): checking a templates folder or file for every problem, and SMS sizing.
 */
#ifndef NG_MSGTMPL_INT_H
#define NG_MSGTMPL_INT_H

#include <jansson.h>
#include <stddef.h>

/*
 * Checks every template in the folder path, or the one template file path (a partial or layout
 * checks its whole set): syntax errors (file:line:column), unknown filters, missing partials and
 * layouts, front matter, a marketing email without the unsubscribe link, and renders each against
 * sample (a data object like the dispatcher's). report receives one line per problem and, for SMS,
 * a line with the encoding and segment count. Returns the number of problems.
 */
int ng_msgtmpl_check(const char *path, const json_t *sample,
                     void (*report)(void *ud, const char *line), void *ud);

struct ng_sms_info {
	int ucs2;     /* 0: GSM-7 */
	size_t units; /* septets (GSM-7, extension characters count 2) or UTF-16 code units */
	int segments; /* 160/153 septets or 70/67 units a segment */
};
void ng_msgtmpl_sms_info(const char *body, struct ng_sms_info *si);

#endif
