/*
 * testlib.h — the C test runner for nudge's unit and integration suites.
 *
 * A test file defines static void functions and lists them with NG_TESTS(...). The runner forks one
 * child per test (so a crash or a hang fails that test alone), kills it after NG_TEST_TIMEOUT seconds
 * (default 120), prints TAP-like "ok"/"not ok" lines and a summary. Asserts print both values.
 *
 *   ./.build/tests/test_db               run every test in the file
 *   ./.build/tests/test_db NAME...        run the named tests
 *   NG_TEST_NOFORK=1 ./.build/tests/…     run in-process (for gdb)
 *
 * Integration tests read the private PostgreSQL cluster's conninfo from NUDGE_TEST_PG, which
 * tests/run.sh (make check) exports.
 */
#ifndef NG_TESTLIB_H
#define NG_TESTLIB_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ng_test {
	const char *name;
	void (*fn)(void);
};

#define NG_TEST(fn)                                                                                 \
	{                                                                                           \
		#fn, fn                                                                             \
	}
/* A trailing comma after the last test is allowed either way. */
#define NG_TESTS(...)                                                                               \
	const struct ng_test ng_test_table[] = {__VA_ARGS__};                                       \
	const size_t ng_test_count = sizeof ng_test_table / sizeof ng_test_table[0];

void ng_test_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4), noreturn));

/* The conninfo of the test cluster; fails the test when make check did not provide one. */
const char *ng_test_pg(void);
/* Runs one SQL statement on a fresh blocking connection (test set-up only); fails on error. */
void ng_test_pg_exec(const char *sql);
/* Monotonic milliseconds. */
uint64_t ng_test_now_ms(void);

#define ASSERT(cond)                                                                                \
	do {                                                                                        \
		if (!(cond))                                                                        \
			ng_test_fail(__FILE__, __LINE__, "assertion failed: %s", #cond);            \
	} while (0)

#define ASSERT_EQ_INT(a, b)                                                                         \
	do {                                                                                        \
		long long ng_a_ = (long long)(a), ng_b_ = (long long)(b);                           \
		if (ng_a_ != ng_b_)                                                                 \
			ng_test_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, ng_a_,   \
				     ng_b_);                                                        \
	} while (0)

#define ASSERT_CMP_INT(a, op, b)                                                                    \
	do {                                                                                        \
		long long ng_a_ = (long long)(a), ng_b_ = (long long)(b);                           \
		if (!(ng_a_ op ng_b_))                                                              \
			ng_test_fail(__FILE__, __LINE__, "%s %s %s: %lld vs %lld", #a, #op, #b,     \
				     ng_a_, ng_b_);                                                 \
	} while (0)

#define ASSERT_EQ_STR(a, b)                                                                         \
	do {                                                                                        \
		const char *ng_a_ = (a), *ng_b_ = (b);                                              \
		if (!ng_a_ || !ng_b_ || strcmp(ng_a_, ng_b_) != 0)                                  \
			ng_test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b,      \
				     ng_a_ ? ng_a_ : "(null)", ng_b_ ? ng_b_ : "(null)");           \
	} while (0)

#define ASSERT_CONTAINS(hay, needle)                                                                \
	do {                                                                                        \
		const char *ng_h_ = (hay), *ng_n_ = (needle);                                       \
		if (!ng_h_ || !strstr(ng_h_, ng_n_))                                                \
			ng_test_fail(__FILE__, __LINE__, "%s does not contain \"%s\": \"%s\"", #hay, \
				     ng_n_, ng_h_ ? ng_h_ : "(null)");                              \
	} while (0)

#endif
