/* Recovery paths of the HSM layer, driven through the PKCS#11 shim
 * (hsm/shim) over a real SoftHSM2 token: every fault class the issue names
 * makes the failing call return an HSM error, and signing resumes in the
 * same process without a restart. Nothing blocks longer than its bound:
 * asserted on what comes back (no call gave up waiting for a session, the
 * retry backoff stays within its cap, a session wait ends CANCELED before
 * the HSM is asked); the timing suite (test_hsm_recovery_timing) also
 * asserts the durations. */
#include "cf_testutil.h"
#include "hsm/hsm.h"
#include "hsm/shim/shim.h"

#include "cf_test.h"
#include <dlfcn.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "common/sigalg.h"

static cf_softhsm H;
static char TOKEN_URI[1024];
static int (*shim_control)(const char *, const char *);
static cf_shim_counters_fn *shim_counters;

static cf_shim_counts counts(void)
{
    cf_shim_counts c;
    shim_counters(&c);
    return c;
}

static void ctl(const char *k, const char *v)
{
    CU_ASSERT_EQUAL_FATAL(shim_control(k, v), 0);
}

static void reset_faults(void)
{
    ctl("FAIL_EVERY_N", "0");
    ctl("SIGN_LATENCY_US", "0");
    ctl("TOKEN_FLAGS_SET", "0");
    ctl("CORRUPT_EVERY_N", "0");
}

static int suite_init(void)
{
    if (cf_softhsm_init(&H, "cf-rec", "1234") != 0)
        return -1;
    if (cf_softhsm_keygen(&H, "cf-rec", "1234", "EC:prime256v1", "k", "01") != 0)
        return -1;
    setenv("CF_SHIM_MODULE", H.module, 1);
    snprintf(TOKEN_URI, sizeof(TOKEN_URI),
             "pkcs11:token=cf-rec?module-path=%s&pin-source=file:%s", CF_SHIM_PATH, H.pin_file);
    /* Load the shim the way the layer will (same path → same handle). */
    void *dl = dlopen(CF_SHIM_PATH, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        fprintf(stderr, "dlopen shim: %s\n", dlerror());
        return -1;
    }
    shim_control = (int (*)(const char *, const char *))dlsym(dl, CF_SHIM_CONTROL_SYM);
    shim_counters = (cf_shim_counters_fn *)dlsym(dl, CF_SHIM_COUNTERS_SYM);
    return shim_control && shim_counters ? 0 : -1;
}

static int suite_clean(void)
{
    cf_softhsm_cleanup(&H);
    return 0;
}

typedef struct {
    hsm_token *t;
    hsm_signer *s;
    EVP_PKEY *pub;
} fixture;

static void open_fx(fixture *fx, unsigned sessions, const hsm_token_opts *o)
{
    hsm_err e = {0};
    memset(fx, 0, sizeof(*fx));
    int rc = hsm_token_open(TOKEN_URI, o, &fx->t, &e);
    if (rc)
        fprintf(stderr, "\nopen: %s\n", e.msg);
    CU_ASSERT_FATAL(rc == 0);
    rc = hsm_signer_open(fx->t, "pkcs11:object=k", sessions, &fx->s, &e);
    if (rc)
        fprintf(stderr, "\nsigner: %s\n", e.msg);
    CU_ASSERT_FATAL(rc == 0);
    fx->pub = hsm_signer_public_key(fx->s, &e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(fx->pub);
}

static void close_fx(fixture *fx)
{
    EVP_PKEY_free(fx->pub);
    hsm_signer_close(fx->s);
    hsm_token_close(fx->t);
}

/* 0 on a verified signature, else the CK_RV of the failure (or -1 for a
 * signature that does not verify). */
static long sign1(fixture *fx, hsm_err *e)
{
    uint8_t dig[32], sig[CF_SIG_MAX];
    size_t sl;
    static _Atomic unsigned ctr;
    unsigned c = atomic_fetch_add(&ctr, 1);
    memset(dig, 0x33, sizeof(dig));
    memcpy(dig, &c, sizeof(c));
    if (hsm_sign(fx->s, CF_SIG_ECDSA_SHA256, dig, 32, sig, &sl, e) != 0)
        return (long)e->rv;
    EVP_PKEY_CTX *c2 = EVP_PKEY_CTX_new(fx->pub, NULL);
    int ok = EVP_PKEY_verify_init(c2) == 1 && EVP_PKEY_verify(c2, sig, sl, dig, 32) == 1;
    EVP_PKEY_CTX_free(c2);
    return ok ? 0 : -1;
}

/* What the failed calls of until_recovered() came back with. */
typedef struct recovery {
    double max_call_s;     /* the longest call (printed; asserted in the timing suite) */
    int canceled;          /* CKR_FUNCTION_CANCELED: a call gave up waiting for a session */
    int bad_sig;           /* a signature that does not verify */
    unsigned max_retry_ms; /* the longest "next attempt in N ms" of a recovering token */
} recovery;

/* Sign until it works again (giving up after `secs`); returns how many
 * calls failed before that, or -1 if it never recovered. */
static int until_recovered(fixture *fx, double secs, recovery *rc)
{
    double end = cf_now_s() + secs;
    int fails = 0;
    memset(rc, 0, sizeof(*rc));
    while (cf_now_s() < end) {
        hsm_err e = {0};
        double t0 = cf_now_s();
        long r = sign1(fx, &e);
        double dt = cf_now_s() - t0;
        if (dt > rc->max_call_s)
            rc->max_call_s = dt;
        if (r == 0)
            return fails;
        fails++;
        rc->canceled += r == (long)CKR_FUNCTION_CANCELED;
        rc->bad_sig += r == -1;
        const char *next = strstr(e.msg, "next attempt in ");
        unsigned ms;
        if (next && sscanf(next, "next attempt in %u ms", &ms) == 1 && ms > rc->max_retry_ms)
            rc->max_retry_ms = ms;
        usleep(5000);
    }
    return -1;
}

/* Every Nth C_Sign fails with rv: exactly those calls fail, with that rv,
 * and every other call produces a valid signature. */
static void every_nth(CK_RV rv)
{
    fixture fx;
    open_fx(&fx, 2, NULL);
    char v[32];
    snprintf(v, sizeof(v), "0x%lx", (unsigned long)rv);
    ctl("FAIL_RV", v);
    ctl("FAIL_EVERY_N", "5");
    int failed = 0, ok = 0, wrong = 0;
    for (int i = 0; i < 60; i++) {
        hsm_err e = {0};
        long r = sign1(&fx, &e);
        if (r == 0)
            ok++;
        else if (r == (long)rv)
            failed++;
        else if (r == (long)CKR_DEVICE_ERROR && strstr(e.msg, "recovering"))
            failed++; /* fail-fast while a recovery attempt backs off */
        else {
            wrong++;
            fprintf(stderr, "\nunexpected failure: %s\n", e.msg);
        }
    }
    reset_faults();
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT(failed >= 10);
    CU_ASSERT(ok >= 40);
    /* And it keeps working afterwards. */
    for (int i = 0; i < 10; i++) {
        hsm_err e = {0};
        CU_ASSERT_EQUAL(sign1(&fx, &e), 0);
    }
    close_fx(&fx);
}

static void test_device_error(void)
{
    every_nth(CKR_DEVICE_ERROR);
}
static void test_session_handle_invalid(void)
{
    every_nth(CKR_SESSION_HANDLE_INVALID);
}
static void test_session_closed(void)
{
    every_nth(CKR_SESSION_CLOSED);
}
static void test_user_not_logged_in(void)
{
    every_nth(CKR_USER_NOT_LOGGED_IN);
}
static void test_device_removed_rv(void)
{
    every_nth(CKR_DEVICE_REMOVED);
}
static void test_token_not_present_rv(void)
{
    every_nth(CKR_TOKEN_NOT_PRESENT);
}

/* All sessions invalidated at once (e.g. an HSM failover). */
static void test_invalidate_all(void)
{
    fixture fx;
    open_fx(&fx, 4, NULL);
    hsm_err e = {0};
    CU_ASSERT_EQUAL(sign1(&fx, &e), 0);
    ctl("INVALIDATE_NOW", "1");
    recovery rc;
    int fails = until_recovered(&fx, 5.0, &rc);
    CU_ASSERT(fails >= 0 && fails <= 2);
    CU_ASSERT_EQUAL(rc.bad_sig, 0);
    for (int i = 0; i < 20; i++)
        CU_ASSERT_EQUAL(sign1(&fx, &e), 0);
    close_fx(&fx);
}

/* The token disappears for 600 ms: calls fail fast (none waits out the
 * 1 s session wait: no CKR_FUNCTION_CANCELED), the layer retries with a
 * backoff capped at 200 ms (the "next attempt in" of its messages), logs
 * in again once the token is back, and signing resumes. The timing suite
 * also asserts when: not before the token came back, soon after it, no
 * call longer than 1 s. */
static void test_token_removed(void)
{
    fixture fx;
    hsm_token_opts o = {.backoff_min_ms = 20, .backoff_max_ms = 200, .acquire_timeout_ms = 1000};
    open_fx(&fx, 2, &o);
    hsm_err e = {0};
    CU_ASSERT_EQUAL(sign1(&fx, &e), 0);
    double t0 = cf_now_s();
    ctl("REMOVE_NOW_MS", "600");
    recovery rc;
    int fails = until_recovered(&fx, 10.0, &rc);
    double took = cf_now_s() - t0;
    CU_ASSERT(fails > 0);            /* it was noticed */
    CU_ASSERT_EQUAL(rc.canceled, 0); /* no call blocked */
    CU_ASSERT_EQUAL(rc.bad_sig, 0);
    CU_ASSERT(rc.max_retry_ms > 0 && rc.max_retry_ms <= 200); /* backoff capped */
    fprintf(stderr, "(recovered in %.0f ms, %d failed calls, longest %.0f ms, retry <= %u ms) ",
            took * 1e3, fails, rc.max_call_s * 1e3, rc.max_retry_ms);
    if (cf_test_timing()) {
        CU_ASSERT(took >= 0.55);        /* not before the token came back */
        CU_ASSERT(took < 3.0);          /* and soon after: backoff capped at 200 ms */
        CU_ASSERT(rc.max_call_s < 1.0); /* no call blocked */
    }
    for (int i = 0; i < 20; i++)
        CU_ASSERT_EQUAL(sign1(&fx, &e), 0);
    close_fx(&fx);
}

/* The PIN file changes under a running signer, then the token needs a
 * login again: the wrong PIN is tried once, never again until the file
 * changes, and signing resumes once it holds the right PIN. */
static void test_wrong_pin_not_retried(void)
{
    fixture fx;
    hsm_token_opts o = {.backoff_min_ms = 10, .backoff_max_ms = 20, .acquire_timeout_ms = 1000};
    open_fx(&fx, 2, &o);
    hsm_err e = {0};
    CU_ASSERT_EQUAL(sign1(&fx, &e), 0);
    FILE *f = fopen(H.pin_file, "w");
    fputs("0000", f);
    fclose(f);
    ctl("REMOVE_NOW_MS", "100");
    double end = cf_now_s() + 5.0;
    int rejected = 0, not_again = 0;
    while (cf_now_s() < end && not_again < 3) {
        long r = sign1(&fx, &e);
        CU_ASSERT_NOT_EQUAL(r, 0);
        if (strstr(e.msg, "not trying it again"))
            not_again++;
        else if (strstr(e.msg, "rejected the PIN"))
            rejected++;
        usleep(20000);
    }
    CU_ASSERT_EQUAL(rejected, 1); /* one attempt with the wrong PIN */
    CU_ASSERT(not_again >= 3);
    usleep(20000); /* a new mtime */
    f = fopen(H.pin_file, "w");
    fputs(H.pin, f);
    fclose(f);
    recovery rc;
    CU_ASSERT(until_recovered(&fx, 5.0, &rc) >= 0);
    CU_ASSERT_EQUAL(sign1(&fx, &e), 0);
    close_fx(&fx);
}

/* Locked or final-try PIN: no login attempt, a message that says so. */
static void test_pin_flags(void)
{
    hsm_token *t = NULL;
    hsm_err e = {0};
    char v[32];
    snprintf(v, sizeof(v), "0x%lx", (unsigned long)CKF_USER_PIN_LOCKED);
    ctl("TOKEN_FLAGS_SET", v);
    CU_ASSERT_EQUAL(hsm_token_open(TOKEN_URI, NULL, &t, &e), -1);
    CU_ASSERT_EQUAL(e.rv, CKR_PIN_LOCKED);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "user PIN is locked"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "cf-rec"));
    snprintf(v, sizeof(v), "0x%lx", (unsigned long)CKF_USER_PIN_FINAL_TRY);
    ctl("TOKEN_FLAGS_SET", v);
    CU_ASSERT_EQUAL(hsm_token_open(TOKEN_URI, NULL, &t, &e), -1);
    CU_ASSERT_EQUAL(e.rv, CKR_PIN_LOCKED);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "final try"));
    reset_faults();
    CU_ASSERT_EQUAL(hsm_token_open(TOKEN_URI, NULL, &t, &e), 0);
    hsm_token_close(t);
}

/* The pool is capped by ulMaxSessionCount. */
static void test_max_sessions(void)
{
    fixture fx;
    ctl("MAX_SESSIONS", "6");
    open_fx(&fx, 64, NULL);
    CU_ASSERT(hsm_signer_sessions(fx.s) <= 4);
    CU_ASSERT(hsm_signer_sessions(fx.s) >= 1);
    hsm_err e = {0};
    CU_ASSERT_EQUAL(sign1(&fx, &e), 0);
    close_fx(&fx);
    ctl("MAX_SESSIONS", "0");
}

typedef struct {
    fixture *fx;
    long rv;
    double secs;
} slow_arg;

static void *slow_signer(void *p)
{
    slow_arg *a = p;
    hsm_err e = {0};
    double t0 = cf_now_s();
    a->rv = sign1(a->fx, &e);
    a->secs = cf_now_s() - t0;
    return NULL;
}

/* A thread waiting for a session gives up after acquire_timeout_ms (100):
 * B asks while A holds the only session for a 1 s signature (the shim
 * counts A inside C_Sign first), and comes back CANCELED without having
 * reached the HSM; A's signature is fine. The timing suite also asserts
 * that B gave up within 0.5 s. */
static void test_acquire_timeout(void)
{
    fixture fx;
    hsm_token_opts o = {.acquire_timeout_ms = 100};
    open_fx(&fx, 1, &o);
    ctl("SIGN_LATENCY_US", "1000000");
    ctl("RESET_COUNTERS", "1");
    slow_arg a = {&fx, 0, 0}, b = {&fx, 0, 0};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, slow_signer, &a);
    double end = cf_now_s() + 10;
    while (counts().signing < 1 && cf_now_s() < end)
        cf_sleep_ms(1);
    CU_ASSERT_EQUAL(counts().signing, 1); /* A is in the HSM */
    pthread_create(&tb, NULL, slow_signer, &b);
    pthread_join(tb, NULL);
    pthread_join(ta, NULL);
    reset_faults();
    CU_ASSERT_EQUAL(a.rv, 0);
    CU_ASSERT_EQUAL(b.rv, (long)CKR_FUNCTION_CANCELED);
    CU_ASSERT_EQUAL(counts().signs, 1); /* B never reached the HSM */
    fprintf(stderr, "(B gave up after %.0f ms) ", b.secs * 1e3);
    if (cf_test_timing())
        CU_ASSERT(b.secs < 0.5);
    close_fx(&fx);
}

int main(int argc, char **argv)
{
    static const cf_test tests[] = {
        {"CKR_DEVICE_ERROR every 5th sign", test_device_error},
        {"CKR_SESSION_HANDLE_INVALID every 5th", test_session_handle_invalid},
        {"CKR_SESSION_CLOSED every 5th", test_session_closed},
        {"CKR_USER_NOT_LOGGED_IN every 5th", test_user_not_logged_in},
        {"CKR_DEVICE_REMOVED every 5th", test_device_removed_rv},
        {"CKR_TOKEN_NOT_PRESENT every 5th", test_token_not_present_rv},
        {"all sessions invalidated", test_invalidate_all},
        {"token removed for 600 ms", test_token_removed},
        {"locked and final-try PIN refused", test_pin_flags},
        {"a rejected PIN is not tried again", test_wrong_pin_not_retried},
        {"pool capped by ulMaxSessionCount", test_max_sessions},
        {"session wait bounded", test_acquire_timeout},
    };
    static const cf_test timed[] = {
        {"token removed for 600 ms: recovery time, no call blocked", test_token_removed},
        {"session wait bounded: given up in time", test_acquire_timeout},
    };
    static const cf_suite suites[] = {
        CF_SUITE("hsm-recovery", suite_init, suite_clean, tests),
        CF_TIMING_SUITE("hsm-recovery, timed", suite_init, suite_clean, timed),
    };
    return CF_TEST_MAIN(argc, argv, suites);
}
