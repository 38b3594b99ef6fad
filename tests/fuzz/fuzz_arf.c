/*
 * fuzz_arf.c — libFuzzer target for reading feedback-loop complaints (core/arf.c): any bytes are
 * a report; a crash, an out-of-bounds read or a result that breaks the parser's promises (a
 * NUL-terminated recipient and type, a message found only with its customer) is a bug. The input
 * is not NUL-terminated, as a report read from a pipe need not be. `make fuzz` builds it.
 */
#include "arf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size ? size : 1); /* exactly size bytes: ASan sees any overread */
	memcpy(copy, data, size);
	struct ng_arf a;
	const char *why = NULL;
	int rc = ng_arf_parse(copy, size, &a, &why);
	if (rc == 0) {
		if (memchr(a.recipient, 0, sizeof a.recipient) == NULL ||
		    memchr(a.feedback_type, 0, sizeof a.feedback_type) == NULL)
			abort();
		if ((a.message_id != 0) != (a.customer_id != 0))
			abort();
		if (!a.message_id && !a.recipient[0])
			abort();
	} else if (!why) {
		abort();
	}
	free(copy);
	return 0;
}
