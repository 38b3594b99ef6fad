/*
 * fuzz_json.c — libFuzzer target holding core/json_parse.c to jansson's own reader: for any bytes
 * and each flag set nudge uses, both accept or both refuse; what both accept is the same value
 * (json_equal); a refusal ours calls "not UTF-8" (json_error_invalid_utf8) is one jansson calls so
 * too. (jansson reads a token ahead before it decides, so it sometimes names a bad byte just past
 * the syntax error ours reports: both refuse, for reasons at the same place.) A NUL byte is never
 * JSON: ours refuses any text holding one, where jansson's reader takes it for the end of input.
 * The input is not NUL-terminated. `make fuzz` builds it (FUZZ=json for this one alone).
 */
#include "json_parse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size ? size : 1); /* exactly size bytes: ASan sees any overread */
	memcpy(copy, data, size);
	static const size_t flag_sets[] = {0, JSON_REJECT_DUPLICATES, JSON_DECODE_ANY,
	                                   JSON_DECODE_ANY | JSON_REJECT_DUPLICATES};
	int has_nul = memchr(copy, 0, size) != NULL;
	for (size_t i = 0; i < sizeof flag_sets / sizeof flag_sets[0]; i++) {
		json_error_t e1, e2;
		json_t *ours = ng_json_parse(copy, size, flag_sets[i], &e1);
		if (has_nul) {
			if (ours)
				abort();
			continue;
		}
		json_t *theirs = json_loadb(copy, size, flag_sets[i], &e2);
		if (!ours != !theirs)
			abort();
		if (ours && !json_equal(ours, theirs))
			abort();
		if (!ours && json_error_code(&e1) == json_error_invalid_utf8 &&
		    json_error_code(&e2) != json_error_invalid_utf8)
			abort();
		json_decref(ours);
		json_decref(theirs);
	}
	free(copy);
	return 0;
}
