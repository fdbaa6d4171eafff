/* cf_test.h — the one CUnit runner every C suite uses (tests/support).
 *
 * A suite binary lists its tests in tables and calls cf_test_main():
 *
 *     static const cf_test tests[] = {
 *         {"good CSRs", test_good},
 *         {"MALFORMED", test_malformed},
 *     };
 *     static const cf_suite suites[] = {
 *         CF_SUITE("csr", suite_init, suite_clean, tests),
 *     };
 *     int main(int argc, char **argv) { return CF_TEST_MAIN(argc, argv, suites); }
 *
 * Exit status (what CTest sees):
 *   0   every test ran and passed, and at least one test ran;
 *   1   a test failed, a suite's set-up or clean-up failed, or nothing ran;
 *   2   the registry could not be built (out of memory, duplicate names);
 *   77  skipped: a suite's set-up called cf_test_skip() (a prerequisite
 *       such as SoftHSM or a PostgreSQL server is missing) and nothing
 *       else ran. A skip is never reported as a pass.
 *
 * `TEST --list` prints the test names; `TEST NAME...` runs only the tests
 * whose name contains one of the arguments (for debugging one case; a
 * filter that matches nothing is a failure, not a pass).
 *
 * Timing suites (CF_TIMING_SUITE) hold the cases that assert on elapsed
 * time: how long a timeout takes to fire, a latency hidden by threads. A
 * sanitizer makes everything 5 to 20 times slower, so such an assertion
 * says nothing there but fails anyway. They run only as `TEST --timing
 * [NAME...]`, which runs nothing else; cf_add_test(... TIMING) registers
 * that as the CTest test NAME_timing, labelled "timing", which the
 * sanitizer stages of tools/test.sh leave out (-LE timing). Everything
 * else a test checks is asserted on outcomes and counts in the ordinary
 * suites.
 */
#ifndef CF_TEST_H
#define CF_TEST_H

#include <stdbool.h>
#include <stddef.h>

#include <CUnit/CUnit.h>

typedef struct cf_test {
    const char *name;
    CU_TestFunc fn;
} cf_test;

typedef struct cf_suite {
    const char *name;
    CU_InitializeFunc init; /* may be NULL; nonzero return fails the binary */
    CU_CleanupFunc clean;   /* may be NULL */
    const cf_test *tests;
    size_t n_tests;
    bool timing; /* run only by `TEST --timing` */
} cf_suite;

#define CF_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define CF_SUITE(name_, init_, clean_, tests_)                                                     \
    {                                                                                              \
        .name = (name_), .init = (init_), .clean = (clean_), .tests = (tests_),                    \
        .n_tests = CF_ARRAY_LEN(tests_), .timing = false                                           \
    }
#define CF_TIMING_SUITE(name_, init_, clean_, tests_)                                              \
    {                                                                                              \
        .name = (name_), .init = (init_), .clean = (clean_), .tests = (tests_),                    \
        .n_tests = CF_ARRAY_LEN(tests_), .timing = true                                            \
    }
#define CF_TEST_MAIN(argc, argv, suites) cf_test_main((argc), (argv), (suites), CF_ARRAY_LEN(suites))

int cf_test_main(int argc, char **argv, const cf_suite *suites, size_t n_suites);

/* True while the binary runs its timing suites (`TEST --timing`): a test
 * body shared by an ordinary and a timing suite asserts durations only
 * then. */
bool cf_test_timing(void);

/* Called from a suite's set-up (before it returns nonzero): the suite is
 * skipped, not failed, and the binary exits 77 if nothing else ran. The
 * reason is printed. */
void cf_test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A fatal set-up error with its reason on stderr; returns -1 so a set-up
 * can `return cf_test_setup_failed("...")`. */
int cf_test_setup_failed(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
