/* The runner itself: a binary whose set-up fails, that runs nothing or
 * skips must not exit 0 (each case runs cf_test_main in a child). */
#include "cf_test.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int init_ok(void) { return 0; }
static int init_fails(void) { return cf_test_setup_failed("deliberately"); }
static int init_skips(void)
{
    cf_test_skip("prerequisite deliberately missing");
    return 1;
}
static int clean_fails(void) { return 1; }
static void passes(void) { CU_PASS("ok"); }
static void fails(void) { CU_FAIL("deliberately"); }
static void not_timing(void) { CU_ASSERT_FALSE(cf_test_timing()); }
static void timing(void) { CU_ASSERT_TRUE(cf_test_timing()); }

static const cf_test one_pass[] = {{"passes", passes}};
static const cf_test one_fail[] = {{"passes", passes}, {"fails", fails}};
static const cf_test not_timed[] = {{"cf_test_timing() false", not_timing}};
static const cf_test timed[] = {{"cf_test_timing() true", timing}};

/* Each case is a table of suites and the arguments given to the runner;
 * `test_cf_test --case N` runs case N as a fresh process (CUnit's registry
 * cannot be rebuilt inside a running test, even in a forked child). */
static char *no_args[] = {"t", NULL};
static char *filter_none[] = {"t", "no such test", NULL};
static char *filter_pass[] = {"t", "passes", NULL};
static char *timing_args[] = {"t", "--timing", NULL};
static char *timing_filter[] = {"t", "--timing", "fails", NULL};

static const cf_suite c_pass[] = {CF_SUITE("a", init_ok, NULL, one_pass)};
static const cf_suite c_fail[] = {CF_SUITE("a", NULL, NULL, one_fail)};
static const cf_suite c_setup[] = {CF_SUITE("a", init_fails, NULL, one_pass)};
static const cf_suite c_setup2[] = {CF_SUITE("a", init_ok, NULL, one_pass), CF_SUITE("b", init_fails, NULL, one_pass)};
static const cf_suite c_clean[] = {CF_SUITE("a", init_ok, clean_fails, one_pass)};
static const cf_suite c_empty[] = {{.name = "empty", .tests = one_pass, .n_tests = 0}};
static const cf_suite c_skip[] = {CF_SUITE("a", init_skips, NULL, one_pass)};
static const cf_suite c_skip_fail[] = {CF_SUITE("a", init_skips, NULL, one_pass), CF_SUITE("b", NULL, NULL, one_fail)};
static const cf_suite c_skip_pass[] = {CF_SUITE("a", init_skips, NULL, one_pass), CF_SUITE("b", NULL, NULL, one_pass)};
/* a failing timing suite beside a passing ordinary one, and the reverse */
static const cf_suite c_timing_fails[] = {CF_SUITE("a", NULL, NULL, not_timed), CF_TIMING_SUITE("t", NULL, NULL, one_fail)};
static const cf_suite c_timing_passes[] = {CF_SUITE("a", NULL, NULL, one_fail), CF_TIMING_SUITE("t", NULL, NULL, timed)};

static const struct {
    const cf_suite *suites;
    size_t n;
    int argc;
    char **argv;
    int want; /* exit status */
} cases[] = {
    {c_pass, 1, 1, no_args, 0},
    {c_fail, 1, 1, no_args, 1},
    {c_setup, 1, 1, no_args, 1},
    {c_setup2, 2, 1, no_args, 1},
    {c_clean, 1, 1, no_args, 1},
    {NULL, 0, 1, no_args, 1},
    {c_empty, 1, 1, no_args, 1},
    {c_pass, 1, 2, filter_none, 1},
    {c_skip, 1, 1, no_args, 77},
    {c_skip_fail, 2, 1, no_args, 1},
    {c_skip_pass, 2, 1, no_args, 0},
    {c_fail, 1, 2, filter_pass, 0},
    {c_timing_fails, 2, 1, no_args, 0},
    {c_timing_fails, 2, 2, timing_args, 1},
    {c_timing_passes, 2, 2, timing_args, 0},
    {c_timing_passes, 2, 1, no_args, 1},
    {c_pass, 1, 2, timing_args, 1},
    {c_timing_fails, 2, 3, timing_filter, 1},
};

/* Exit status of `self --case i`, output discarded; -1 if it did not exit. */
static int run_case(size_t i)
{
    char arg[16];
    snprintf(arg, sizeof(arg), "%zu", i);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl("/proc/self/exe", "test_cf_test", "--case", arg, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

static void check(size_t from, size_t to)
{
    for (size_t i = from; i <= to; i++) {
        int rc = run_case(i);
        if (rc != cases[i].want)
            fprintf(stderr, "case %zu: exit %d, want %d\n", i, rc, cases[i].want);
        CU_ASSERT_EQUAL(rc, cases[i].want);
    }
}

static void test_pass(void) { check(0, 0); }
static void test_failure(void) { check(1, 1); }
static void test_setup_failure(void) { check(2, 3); }
static void test_cleanup_failure(void) { check(4, 4); }
static void test_zero_tests(void) { check(5, 7); }
static void test_skip(void) { check(8, 10); }
static void test_filter(void) { check(11, 11); }
static void test_timing(void) { check(12, 17); }

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--case") == 0) {
        size_t i = strtoul(argv[2], NULL, 10);
        if (i >= CF_ARRAY_LEN(cases))
            return 126;
        return cf_test_main(cases[i].argc, cases[i].argv, cases[i].suites, cases[i].n);
    }
    static const cf_test tests[] = {
        {"all pass: 0", test_pass},
        {"a failed test: 1", test_failure},
        {"a failed set-up: 1", test_setup_failure},
        {"a failed clean-up: 1", test_cleanup_failure},
        {"zero tests: 1", test_zero_tests},
        {"skipped set-up: 77 alone, never a pass beside a failure", test_skip},
        {"name filter", test_filter},
        {"timing suites: only with --timing, and then alone", test_timing},
    };
    static const cf_suite suites[] = {CF_SUITE("cf_test runner", NULL, NULL, tests)};
    return CF_TEST_MAIN(argc, argv, suites);
}
