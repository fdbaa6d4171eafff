/* cf_test.c — see cf_test.h. */
#include "cf_test.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <CUnit/Basic.h>

static unsigned skipped_suites;
static bool timing_run;

bool cf_test_timing(void)
{
    return timing_run;
}

void cf_test_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("SKIPPED: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    skipped_suites++;
}

int cf_test_setup_failed(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("SET-UP FAILED: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return -1;
}

/* argv[first..argc) are name filters; none selects everything. */
static int selected(const char *name, int argc, char **argv, int first)
{
    if (argc <= first)
        return 1;
    for (int i = first; i < argc; i++)
        if (strstr(name, argv[i]) != NULL)
            return 1;
    return 0;
}

int cf_test_main(int argc, char **argv, const cf_suite *suites, size_t n_suites)
{
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t s = 0; s < n_suites; s++)
            for (size_t t = 0; t < suites[s].n_tests; t++)
                printf("%s: %s%s\n", suites[s].name, suites[s].tests[t].name,
                       suites[s].timing ? " [timing]" : "");
        return 0;
    }
    /* `--timing` first: the timing suites alone, the rest of argv filters */
    timing_run = argc >= 2 && strcmp(argv[1], "--timing") == 0;
    int first = timing_run ? 2 : 1;
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    unsigned registered = 0;
    for (size_t s = 0; s < n_suites; s++) {
        if (suites[s].timing != timing_run)
            continue;
        size_t wanted = 0;
        for (size_t t = 0; t < suites[s].n_tests; t++)
            wanted += (size_t)selected(suites[s].tests[t].name, argc, argv, first);
        if (wanted == 0)
            continue;
        CU_pSuite cs = CU_add_suite(suites[s].name, suites[s].init, suites[s].clean);
        if (cs == NULL) {
            fprintf(stderr, "cf_test: cannot register suite %s: %s\n", suites[s].name, CU_get_error_msg());
            CU_cleanup_registry();
            return 2;
        }
        for (size_t t = 0; t < suites[s].n_tests; t++) {
            if (!selected(suites[s].tests[t].name, argc, argv, first))
                continue;
            if (CU_add_test(cs, suites[s].tests[t].name, suites[s].tests[t].fn) == NULL) {
                fprintf(stderr, "cf_test: cannot register %s: %s\n", suites[s].tests[t].name, CU_get_error_msg());
                CU_cleanup_registry();
                return 2;
            }
            registered++;
        }
    }
    if (registered == 0) {
        fprintf(stderr, "cf_test: no %stest matches the arguments\n", timing_run ? "timing " : "");
        CU_cleanup_registry();
        return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned ran = CU_get_number_of_tests_run();
    unsigned failed_tests = CU_get_number_of_tests_failed();
    unsigned failed_suites = CU_get_number_of_suites_failed();
    CU_cleanup_registry();

    /* A suite that skipped itself also counts as a failed suite in CUnit:
     * tell the two apart. */
    if (skipped_suites > 0 && failed_suites >= skipped_suites)
        failed_suites -= skipped_suites;
    if (failed_tests > 0 || failed_suites > 0) {
        fprintf(stderr, "cf_test: FAILED (%u failed tests, %u suites whose set-up or clean-up failed)\n",
                failed_tests, failed_suites);
        return 1;
    }
    if (ran == 0) {
        if (skipped_suites > 0)
            return 77;
        fprintf(stderr, "cf_test: FAILED: zero tests ran\n");
        return 1;
    }
    return 0;
}
