/*
 * test_shim.c — libcertforge-shim.so over a throwaway SoftHSM token: every
 * injected behaviour (latency, failures, corruption, session limit, token
 * flags, invalidation, removal, control file) checked the way certforge
 * would see it through PKCS#11, signatures verified with OpenSSL.
 */
#include "cf_testutil.h"
#include "hsm/shim/shim.h"

#include "cf_test.h"
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <p11-kit/pkcs11.h>

#define PIN "1234"
#define TOKEN "shimtest"
#define KEY_LABEL "k1"

static cf_softhsm H;
static void *shim_dl;
static CK_FUNCTION_LIST *F;
static cf_shim_control_fn *CTL;
static cf_shim_counters_fn *COUNTERS;
static EVP_PKEY *PUB;
static const uint8_t DGST[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static const char *const shim_vars[] = {
    "CF_SHIM_MODULE",          "CF_SHIM_SIGN_LATENCY_US", "CF_SHIM_SIGN_JITTER_US",
    "CF_SHIM_MAX_SESSIONS",    "CF_SHIM_FAIL_EVERY_N",    "CF_SHIM_FAIL_RV",
    "CF_SHIM_CORRUPT_EVERY_N", "CF_SHIM_TOKEN_FLAGS_SET", "CF_SHIM_INVALIDATE_AT_MS",
    "CF_SHIM_REMOVE_AT_MS",    "CF_SHIM_REMOVE_FOR_MS",   "CF_SHIM_CONTROL",
};

static void sleep_until(uint64_t t_ms)
{
    uint64_t n = cf_now_ms();
    if (t_ms > n)
        cf_sleep_ms((unsigned)(t_ms - n));
}

/* C_Initialize the shim with exactly these CF_SHIM_* settings ("K=V", NULL
 * ended), as certforge does: with CKF_OS_LOCKING_OK. Values an earlier
 * test set through cf_shim_control would outlive C_Finalize: RESET drops
 * them. */
static CK_RV shim_init(const char *const *env)
{
    CU_ASSERT_EQUAL(CTL("RESET", "1"), 0);
    for (size_t i = 0; i < sizeof(shim_vars) / sizeof(shim_vars[0]); i++)
        unsetenv(shim_vars[i]);
    for (; env && *env; env++) {
        char k[128];
        const char *eq = strchr(*env, '=');
        snprintf(k, sizeof(k), "%.*s", (int)(eq - *env), *env);
        setenv(k, eq + 1, 1);
    }
    CK_C_INITIALIZE_ARGS a;
    memset(&a, 0, sizeof(a));
    a.flags = CKF_OS_LOCKING_OK;
    return F->C_Initialize(&a);
}

static void shim_fini(void)
{
    CU_ASSERT_EQUAL(F->C_Finalize(NULL), CKR_OK);
}

static int slot_listed(CK_SLOT_ID slot, CK_BBOOL present)
{
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16;
    if (F->C_GetSlotList(present, slots, &n) != CKR_OK)
        return -1;
    for (CK_ULONG i = 0; i < n; i++)
        if (slots[i] == slot)
            return 1;
    return 0;
}

static CK_SLOT_ID find_slot(void)
{
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16;
    CU_ASSERT_EQUAL_FATAL(F->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        if (F->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
            memcmp(ti.label, TOKEN, strlen(TOKEN)) == 0 && ti.label[strlen(TOKEN)] == ' ')
            return slots[i];
    }
    CU_FAIL_FATAL("token not found through the shim");
    return 0;
}

static CK_SESSION_HANDLE open_session(CK_SLOT_ID slot)
{
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CU_ASSERT_EQUAL_FATAL(
        F->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s), CKR_OK);
    return s;
}

/* Open a session and make sure the user is logged in (the login state is
 * per token: another session may already have done it). */
static CK_SESSION_HANDLE open_login(CK_SLOT_ID slot)
{
    CK_SESSION_HANDLE s = open_session(slot);
    CK_RV rv = F->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)PIN, strlen(PIN));
    CU_ASSERT(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN);
    return s;
}

static CK_OBJECT_HANDLE find_obj(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls)
{
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_LABEL, (void *)KEY_LABEL, strlen(KEY_LABEL)},
    };
    CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;
    CK_ULONG n = 0;
    if (F->C_FindObjectsInit(s, t, 2) != CKR_OK)
        return CK_INVALID_HANDLE;
    if (F->C_FindObjects(s, &o, 1, &n) != CKR_OK || n != 1)
        o = CK_INVALID_HANDLE;
    F->C_FindObjectsFinal(s);
    return o;
}

static CK_RV sign(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, uint8_t sig[64], CK_ULONG *len)
{
    CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
    CK_RV rv = F->C_SignInit(s, &m, key);
    if (rv != CKR_OK)
        return rv;
    *len = 64;
    return F->C_Sign(s, (CK_BYTE_PTR)DGST, sizeof(DGST), sig, len);
}

static cf_shim_counts counts(void)
{
    cf_shim_counts c;
    COUNTERS(&c);
    return c;
}

/* 1 if sig (raw r||s from CKM_ECDSA) verifies over DGST, 0 if not. */
static int verify(const uint8_t *sig, CK_ULONG len)
{
    int ok = 0;
    unsigned char *der = NULL;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, (int)len / 2, NULL),
           *s = BN_bin2bn(sig + len / 2, (int)len / 2, NULL);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(PUB, NULL);
    if (!es || !r || !s || !c || ECDSA_SIG_set0(es, r, s) != 1)
        goto out;
    r = s = NULL;
    int dlen = i2d_ECDSA_SIG(es, &der);
    if (dlen <= 0 || EVP_PKEY_verify_init(c) != 1)
        goto out;
    ok = EVP_PKEY_verify(c, der, (size_t)dlen, DGST, sizeof(DGST)) == 1;
out:
    OPENSSL_free(der);
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    EVP_PKEY_CTX_free(c);
    return ok;
}

/* The key's public half from CKA_EC_POINT (a DER OCTET STRING around the
 * uncompressed point, or the bare point from some modules). */
static EVP_PKEY *load_pub(CK_SESSION_HANDLE s)
{
    CK_OBJECT_HANDLE o = find_obj(s, CKO_PUBLIC_KEY);
    uint8_t pt[128];
    CK_ATTRIBUTE a = {CKA_EC_POINT, pt, sizeof(pt)};
    if (o == CK_INVALID_HANDLE || F->C_GetAttributeValue(s, o, &a, 1) != CKR_OK)
        return NULL;
    const uint8_t *p = pt;
    size_t plen = a.ulValueLen;
    if (plen == 67 && pt[0] == 0x04 && pt[1] == 65)
        p += 2, plen -= 2;
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (b && c && OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
        OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, p, plen) &&
        (params = OSSL_PARAM_BLD_to_param(b)) && EVP_PKEY_fromdata_init(c) == 1)
        (void)EVP_PKEY_fromdata(c, &pkey, EVP_PKEY_PUBLIC_KEY, params);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(b);
    EVP_PKEY_CTX_free(c);
    return pkey;
}

/* Write the control file atomically (a new inode, so the change is seen
 * even within one mtime tick) and give the shim time to notice it. */
static void write_ctl(const char *content)
{
    char path[320], tmp[330];
    snprintf(path, sizeof(path), "%s/shim.ctl", H.dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(content, f);
    fclose(f);
    CU_ASSERT_EQUAL(rename(tmp, path), 0);
}

/* ---- suite ------------------------------------------------------------------ */

static int suite_init(void)
{
    if (cf_softhsm_init(&H, TOKEN, PIN) != 0 ||
        cf_softhsm_keygen(&H, TOKEN, PIN, "EC:prime256v1", KEY_LABEL, "01") != 0)
        return -1;
    shim_dl = dlopen(CF_SHIM_PATH, RTLD_NOW | RTLD_LOCAL);
    if (!shim_dl) {
        fprintf(stderr, "dlopen %s: %s\n", CF_SHIM_PATH, dlerror());
        return -1;
    }
    CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(shim_dl, "C_GetFunctionList");
    if (!gfl || gfl(&F) != CKR_OK)
        return -1;
    /* the way a test finds the control entry of a module someone else loaded */
    void *again = dlopen(CF_SHIM_PATH, RTLD_NOW | RTLD_NOLOAD);
    if (!again)
        return -1;
    CTL = (cf_shim_control_fn *)dlsym(again, CF_SHIM_CONTROL_SYM);
    COUNTERS = (cf_shim_counters_fn *)dlsym(again, CF_SHIM_COUNTERS_SYM);
    dlclose(again);
    return CTL && COUNTERS ? 0 : -1;
}

static int suite_clean(void)
{
    EVP_PKEY_free(PUB);
    /* The shim stays loaded: unloading SoftHSM's dependencies under a
     * leak checker only hides where its own singletons came from. */
    cf_softhsm_cleanup(&H);
    return 0;
}

/* ---- tests ------------------------------------------------------------------ */

/* First test: every later one verifies against this key. */
static void test_public_key(void)
{
    CU_ASSERT_EQUAL_FATAL(shim_init(NULL), CKR_OK);
    CK_SLOT_ID slot = find_slot();
    CK_SESSION_HANDLE s = open_session(slot);
    PUB = load_pub(s);
    CU_ASSERT_PTR_NOT_NULL(PUB);
    shim_fini();
}

static void test_exports(void)
{
    CU_ASSERT_PTR_NOT_NULL(dlsym(shim_dl, "C_GetFunctionList"));
    CU_ASSERT_PTR_NOT_NULL(dlsym(shim_dl, "cf_shim_control"));
    CU_ASSERT_PTR_NOT_NULL(dlsym(shim_dl, "cf_shim_counters"));
    CU_ASSERT_PTR_NULL(dlsym(shim_dl, "C_Sign"));
    CU_ASSERT_PTR_NULL(dlsym(shim_dl, "C_Initialize"));
    CU_ASSERT_PTR_NULL(dlsym(shim_dl, "shim_Sign"));
}

static void test_passthrough(void)
{
    CU_ASSERT_EQUAL(F->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &(CK_SESSION_HANDLE){0}),
                    CKR_CRYPTOKI_NOT_INITIALIZED);
    CU_ASSERT_EQUAL_FATAL(shim_init(NULL), CKR_OK);
    CU_ASSERT_EQUAL(shim_init(NULL), CKR_CRYPTOKI_ALREADY_INITIALIZED);
    CK_INFO info;
    CU_ASSERT_EQUAL(F->C_GetInfo(&info), CKR_OK);
    CK_FUNCTION_LIST *again = NULL;
    CU_ASSERT_EQUAL(F->C_GetFunctionList(&again), CKR_OK);
    CU_ASSERT_PTR_EQUAL(again, F);

    CK_SLOT_ID slot = find_slot();
    CK_TOKEN_INFO ti;
    CU_ASSERT_EQUAL(F->C_GetTokenInfo(slot, &ti), CKR_OK);
    CU_ASSERT(ti.flags & CKF_TOKEN_INITIALIZED);
    CU_ASSERT_FALSE(ti.flags & (CKF_USER_PIN_LOCKED | CKF_USER_PIN_FINAL_TRY));
    CK_SESSION_HANDLE s = open_login(slot);
    CK_OBJECT_HANDLE key = find_obj(s, CKO_PRIVATE_KEY);
    CU_ASSERT_NOT_EQUAL_FATAL(key, CK_INVALID_HANDLE);
    uint8_t sig[64];
    CK_ULONG len = 0;
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(sign(s, key, sig, &len), CKR_OK);
        CU_ASSERT_EQUAL(len, 64);
        CU_ASSERT(verify(sig, len));
    }
    /* a length query is no signature and does not end the operation */
    CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
    CU_ASSERT_EQUAL(F->C_SignInit(s, &m, key), CKR_OK);
    len = 0;
    CU_ASSERT_EQUAL(F->C_Sign(s, (CK_BYTE_PTR)DGST, sizeof(DGST), NULL, &len), CKR_OK);
    CU_ASSERT_EQUAL(len, 64);
    CU_ASSERT_EQUAL(F->C_Sign(s, (CK_BYTE_PTR)DGST, sizeof(DGST), sig, &len), CKR_OK);
    CU_ASSERT(verify(sig, len));

    /* a closed handle stays dead even if the real module reuses its number */
    CU_ASSERT_EQUAL(F->C_CloseSession(s), CKR_OK);
    CK_SESSION_HANDLE s2 = open_login(slot);
    CU_ASSERT_NOT_EQUAL(s2, s);
    CK_SESSION_INFO si;
    CU_ASSERT_EQUAL(F->C_GetSessionInfo(s, &si), CKR_SESSION_HANDLE_INVALID);
    CU_ASSERT_EQUAL(F->C_CloseSession(s), CKR_SESSION_HANDLE_INVALID);
    CU_ASSERT_EQUAL(F->C_GetSessionInfo(s2, &si), CKR_OK);
    CU_ASSERT_EQUAL(F->C_GetSessionInfo(0, &si), CKR_SESSION_HANDLE_INVALID);
    CU_ASSERT_EQUAL(F->C_CloseAllSessions(slot), CKR_OK);
    CU_ASSERT_EQUAL(F->C_GetSessionInfo(s2, &si), CKR_SESSION_HANDLE_INVALID);
    shim_fini();
}

struct signer_arg {
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE key;
    int n, ok, fail_rv_count, bad_sigs;
    CK_RV fail_rv;
};

static void *signer(void *p)
{
    struct signer_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        uint8_t sig[64];
        CK_ULONG len = 0;
        CK_RV rv = sign(a->s, a->key, sig, &len);
        if (rv == CKR_OK) {
            a->ok++;
            a->bad_sigs += !verify(sig, len);
        } else if (rv == a->fail_rv) {
            a->fail_rv_count++;
        }
    }
    return NULL;
}

/* Run n signs on each of `ns` sessions in parallel threads; returns ms. */
static uint64_t run_signers(struct signer_arg *args, int ns)
{
    pthread_t th[8];
    uint64_t t0 = cf_now_ms();
    for (int i = 0; i < ns; i++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, signer, &args[i]), 0);
    for (int i = 0; i < ns; i++)
        pthread_join(th[i], NULL);
    return cf_now_ms() - t0;
}

static void open_signers(CK_SLOT_ID slot, struct signer_arg *args, int ns, int n)
{
    for (int i = 0; i < ns; i++) {
        memset(&args[i], 0, sizeof(args[i]));
        args[i].s = open_login(slot);
        args[i].key = find_obj(args[i].s, CKO_PRIVATE_KEY);
        args[i].n = n;
        args[i].fail_rv = CKR_DEVICE_ERROR;
        CU_ASSERT_NOT_EQUAL_FATAL(args[i].key, CK_INVALID_HANDLE);
    }
}

/* The wait holds no lock: 4 sessions signing at once overlap their
 * latency (the shim counts up to 4 calls inside it at once) where one
 * session's calls come one after another (1 at once). In the timing suite
 * also the durations (10 x 20 ms on one session, the 4 sessions in well
 * under 4 times that, jitter only ever adding) and that every call slept
 * out its latency: a call whose signature took the module longer than the
 * latency (under ASan a SoftHSM signature can) rightly does not. */
static void test_latency_overlaps(void)
{
    const char *env[] = {"CF_SHIM_SIGN_LATENCY_US=20000", NULL};
    CU_ASSERT_EQUAL_FATAL(shim_init(env), CKR_OK);
    CK_SLOT_ID slot = find_slot();
    struct signer_arg a[4];
    open_signers(slot, a, 4, 10);

    CU_ASSERT_EQUAL(CTL("RESET_COUNTERS", "1"), 0);
    uint64_t serial = run_signers(a, 1); /* 10 signs on one session */
    CU_ASSERT_EQUAL(a[0].ok, 10);
    cf_shim_counts c = counts();
    CU_ASSERT_EQUAL(c.signs, 10);
    CU_ASSERT_EQUAL(c.signing_max, 1);
    if (cf_test_timing()) {
        CU_ASSERT_EQUAL(c.waits, 10);
        CU_ASSERT(serial >= 10 * 20);
    }
    for (int i = 0; i < 4; i++)
        a[i].ok = 0;
    CU_ASSERT_EQUAL(CTL("RESET_COUNTERS", "1"), 0);
    uint64_t par = run_signers(a, 4); /* 4 x 10 signs on 4 sessions */
    for (int i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL(a[i].ok, 10);
        CU_ASSERT_EQUAL(a[i].bad_sigs, 0);
    }
    c = counts();
    CU_ASSERT_EQUAL(c.signs, 40);
    CU_ASSERT(c.signing_max >= 2 && c.signing_max <= 4);
    double ratio = (double)par / (double)(4 * serial);
    fprintf(stderr,
            "  latency: serial 10 signs %llu ms, 4x10 parallel %llu ms, ratio %.2f, "
            "%lu at once\n",
            (unsigned long long)serial, (unsigned long long)par, ratio, c.signing_max);
    if (cf_test_timing()) {
        CU_ASSERT_EQUAL(c.waits, 40);
        CU_ASSERT(ratio < 0.6);
    }

    /* jitter only ever adds */
    CU_ASSERT_EQUAL(CTL("SIGN_LATENCY_US", "10000"), 0);
    CU_ASSERT_EQUAL(CTL("SIGN_JITTER_US", "10000"), 0);
    CU_ASSERT_EQUAL(CTL("RESET_COUNTERS", "1"), 0);
    a[0].n = 5;
    uint64_t jittered = run_signers(a, 1);
    CU_ASSERT_EQUAL(counts().signs, 5);
    if (cf_test_timing()) {
        CU_ASSERT_EQUAL(counts().waits, 5);
        CU_ASSERT(jittered >= 5 * 10);
        CU_ASSERT(jittered < 5 * 10 * 20);
    }
    shim_fini();
}

/* The latency counts from C_SignInit (docs/shim.md): a C_Sign called
 * after its C_SignInit is older than the latency returns at once, one
 * called straight after waits out the rest; a length query in between does
 * not start the count again. Asserted on the shim's count of latency
 * waits; in the timing suite also on the durations (bounds with 100 ms of
 * room). */
static void test_latency_from_sign_init(void)
{
    const char *env[] = {"CF_SHIM_SIGN_LATENCY_US=200000", NULL};
    CU_ASSERT_EQUAL_FATAL(shim_init(env), CKR_OK);
    CK_SLOT_ID slot = find_slot();
    CK_SESSION_HANDLE s = open_login(slot);
    CK_OBJECT_HANDLE key = find_obj(s, CKO_PRIVATE_KEY);
    CU_ASSERT_NOT_EQUAL_FATAL(key, CK_INVALID_HANDLE);
    CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
    uint8_t sig[64];
    CK_ULONG len = sizeof(sig);

    uint64_t t0 = cf_now_ms();
    unsigned long w0 = counts().waits;
    CU_ASSERT_EQUAL(F->C_SignInit(s, &m, key), CKR_OK);
    CU_ASSERT_EQUAL(F->C_Sign(s, (CK_BYTE_PTR)DGST, sizeof(DGST), sig, &len), CKR_OK);
    uint64_t waited = cf_now_ms() - t0;
    CU_ASSERT(verify(sig, len));
    CU_ASSERT_EQUAL(counts().waits, w0 + 1); /* straight after: it waited */
    if (cf_test_timing())
        CU_ASSERT(waited >= 200);

    /* 250 ms after its C_SignInit (a length query between): no wait */
    CU_ASSERT_EQUAL(F->C_SignInit(s, &m, key), CKR_OK);
    CK_ULONG need = 0;
    CU_ASSERT_EQUAL(F->C_Sign(s, (CK_BYTE_PTR)DGST, sizeof(DGST), NULL, &need), CKR_OK);
    cf_sleep_ms(250);
    len = sizeof(sig);
    uint64_t t1 = cf_now_ms();
    CU_ASSERT_EQUAL(F->C_Sign(s, (CK_BYTE_PTR)DGST, sizeof(DGST), sig, &len), CKR_OK);
    uint64_t late = cf_now_ms() - t1;
    CU_ASSERT(verify(sig, len));
    CU_ASSERT_EQUAL(counts().waits, w0 + 1);
    fprintf(stderr, "  latency from C_SignInit: straight after %llu ms, 250 ms later %llu ms\n",
            (unsigned long long)waited, (unsigned long long)late);
    if (cf_test_timing())
        CU_ASSERT(late < 100);

    /* A second C_SignInit fails (the first operation is active) and does
     * not start the count again. */
    CU_ASSERT_EQUAL(F->C_SignInit(s, &m, key), CKR_OK);
    cf_sleep_ms(250);
    CU_ASSERT_EQUAL(F->C_SignInit(s, &m, key), CKR_OPERATION_ACTIVE);
    len = sizeof(sig);
    t1 = cf_now_ms();
    CU_ASSERT_EQUAL(F->C_Sign(s, (CK_BYTE_PTR)DGST, sizeof(DGST), sig, &len), CKR_OK);
    uint64_t after_active = cf_now_ms() - t1;
    CU_ASSERT(verify(sig, len));
    CU_ASSERT_EQUAL(counts().waits, w0 + 1);
    if (cf_test_timing())
        CU_ASSERT(after_active < 100);

    /* A buffer too small returns at once and keeps the operation and its
     * start: the retry 250 ms later is not charged the latency again. */
    CU_ASSERT_EQUAL(F->C_SignInit(s, &m, key), CKR_OK);
    uint8_t tiny[4];
    len = sizeof(tiny);
    t1 = cf_now_ms();
    CU_ASSERT_EQUAL(F->C_Sign(s, (CK_BYTE_PTR)DGST, sizeof(DGST), tiny, &len),
                    CKR_BUFFER_TOO_SMALL);
    uint64_t too_small = cf_now_ms() - t1;
    CU_ASSERT_EQUAL(counts().waits, w0 + 1);
    if (cf_test_timing())
        CU_ASSERT(too_small < 100);
    cf_sleep_ms(250);
    len = sizeof(sig);
    t1 = cf_now_ms();
    CU_ASSERT_EQUAL(F->C_Sign(s, (CK_BYTE_PTR)DGST, sizeof(DGST), sig, &len), CKR_OK);
    uint64_t retry = cf_now_ms() - t1;
    CU_ASSERT(verify(sig, len));
    CU_ASSERT_EQUAL(counts().waits, w0 + 1);
    if (cf_test_timing())
        CU_ASSERT(retry < 100);
    fprintf(stderr, "  after a refused C_SignInit %llu ms, too small %llu ms, retry %llu ms\n",
            (unsigned long long)after_active, (unsigned long long)too_small,
            (unsigned long long)retry);
    F->C_CloseSession(s);
    shim_fini();
}

struct slow_sign {
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE key;
    CK_RV rv;
};

static void *slow_sign_thread(void *p)
{
    struct slow_sign *a = p;
    uint8_t sig[64];
    CK_ULONG len;
    a->rv = sign(a->s, a->key, sig, &len);
    return NULL;
}

/* cf_shim_counters: signature calls (whatever they return; not length
 * queries, not calls on a dead session), the ones that slept out the
 * latency, per thread, and how many were inside the module at once. */
static void test_counters(void)
{
    CU_ASSERT_EQUAL_FATAL(shim_init(NULL), CKR_OK);
    cf_shim_counts c = counts();
    CU_ASSERT_EQUAL(c.signs, 0); /* C_Initialize starts them again */
    CU_ASSERT_EQUAL(c.waits, 0);
    CU_ASSERT_EQUAL(c.signing, 0);
    CU_ASSERT_EQUAL(c.signing_max, 0);
    unsigned long mine = c.thread_signs;
    CK_SLOT_ID slot = find_slot();
    CK_SESSION_HANDLE s = open_login(slot);
    CK_OBJECT_HANDLE key = find_obj(s, CKO_PRIVATE_KEY);
    CU_ASSERT_NOT_EQUAL_FATAL(key, CK_INVALID_HANDLE);
    uint8_t sig[64];
    CK_ULONG len;
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(sign(s, key, sig, &len), CKR_OK);
    CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
    CK_ULONG need = 0;
    CU_ASSERT_EQUAL(F->C_SignInit(s, &m, key), CKR_OK);
    CU_ASSERT_EQUAL(F->C_Sign(s, (CK_BYTE_PTR)DGST, sizeof(DGST), NULL, &need), CKR_OK);
    len = sizeof(sig);
    CU_ASSERT_EQUAL(F->C_Sign(s, (CK_BYTE_PTR)DGST, sizeof(DGST), sig, &len), CKR_OK);
    CU_ASSERT_EQUAL(F->C_Sign(0, (CK_BYTE_PTR)DGST, sizeof(DGST), sig, &len),
                    CKR_SESSION_HANDLE_INVALID);
    c = counts();
    CU_ASSERT_EQUAL(c.signs, 4);
    CU_ASSERT_EQUAL(c.thread_signs, mine + 4);
    CU_ASSERT_EQUAL(c.waits, 0); /* no latency set */
    CU_ASSERT_EQUAL(c.signing, 0);
    CU_ASSERT_EQUAL(c.signing_max, 1);

    /* an injected failure is a signature call too; a latency is a wait
     * (200 ms: far longer than SoftHSM takes to sign, even under ASan) */
    CU_ASSERT_EQUAL(CTL("FAIL_EVERY_N", "1"), 0);
    CU_ASSERT_EQUAL(sign(s, key, sig, &len), CKR_DEVICE_ERROR);
    CU_ASSERT_EQUAL(CTL("FAIL_EVERY_N", "0"), 0);
    CU_ASSERT_EQUAL(CTL("SIGN_LATENCY_US", "200000"), 0);
    CU_ASSERT_EQUAL(sign(s, key, sig, &len), CKR_OK);
    c = counts();
    CU_ASSERT_EQUAL(c.signs, 6);
    CU_ASSERT_EQUAL(c.waits, 1);

    /* RESET_COUNTERS, from the API or the control file's actions */
    CU_ASSERT_EQUAL(CTL("RESET_COUNTERS", "1"), 0);
    c = counts();
    CU_ASSERT_EQUAL(c.signs, 0);
    CU_ASSERT_EQUAL(c.waits, 0);
    CU_ASSERT_EQUAL(c.signing_max, 0);
    CU_ASSERT_EQUAL(c.thread_signs, mine + 6); /* per thread, never reset */

    /* Two calls inside at once: one sleeps out a 1 s latency on another
     * thread, this one signs meanwhile (started once the other is in). */
    CU_ASSERT_EQUAL(CTL("SIGN_LATENCY_US", "1000000"), 0);
    struct slow_sign a = {open_login(slot), 0, (CK_RV)-1};
    a.key = find_obj(a.s, CKO_PRIVATE_KEY);
    pthread_t th;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, slow_sign_thread, &a), 0);
    uint64_t end = cf_now_ms() + 10000;
    while (counts().signing < 1 && cf_now_ms() < end)
        cf_sleep_ms(1);
    CU_ASSERT_EQUAL(counts().signing, 1);
    CU_ASSERT_EQUAL(CTL("SIGN_LATENCY_US", "0"), 0);
    CU_ASSERT_EQUAL(sign(s, key, sig, &len), CKR_OK);
    pthread_join(th, NULL);
    CU_ASSERT_EQUAL(a.rv, CKR_OK);
    c = counts();
    CU_ASSERT_EQUAL(c.signs, 2);
    CU_ASSERT_EQUAL(c.waits, 1);
    CU_ASSERT_EQUAL(c.signing, 0);
    CU_ASSERT_EQUAL(c.signing_max, 2);
    CU_ASSERT_EQUAL(c.thread_signs, mine + 7);
    shim_fini();
}

static void test_fail_every_n(void)
{
    const char *env[] = {"CF_SHIM_FAIL_EVERY_N=3", "CF_SHIM_FAIL_RV=0x30", NULL};
    CU_ASSERT_EQUAL_FATAL(shim_init(env), CKR_OK);
    CK_SLOT_ID slot = find_slot();
    CK_SESSION_HANDLE s = open_login(slot);
    CK_OBJECT_HANDLE key = find_obj(s, CKO_PRIVATE_KEY);
    for (int i = 1; i <= 9; i++) {
        uint8_t sig[64];
        CK_ULONG len = 0;
        CK_RV rv = sign(s, key, sig, &len);
        if (i % 3 == 0) {
            CU_ASSERT_EQUAL(rv, CKR_DEVICE_ERROR);
            /* the real operation was ended, as after a real failure */
            CK_ULONG need = 0;
            CU_ASSERT_EQUAL(F->C_Sign(s, (CK_BYTE_PTR)DGST, sizeof(DGST), NULL, &need),
                            CKR_OPERATION_NOT_INITIALIZED);
        } else {
            CU_ASSERT_EQUAL(rv, CKR_OK);
            CU_ASSERT(verify(sig, len));
        }
    }

    /* counted across threads: 4 x 15 signs, every 5th fails */
    CU_ASSERT_EQUAL(CTL("FAIL_EVERY_N", "5"), 0);
    CU_ASSERT_EQUAL(CTL("FAIL_RV", "0x32"), 0);
    struct signer_arg a[4];
    open_signers(slot, a, 4, 15);
    int fails = 0, ok = 0, bad = 0;
    for (int i = 0; i < 4; i++)
        a[i].fail_rv = CKR_DEVICE_REMOVED;
    run_signers(a, 4);
    for (int i = 0; i < 4; i++) {
        fails += a[i].fail_rv_count;
        ok += a[i].ok;
        bad += a[i].bad_sigs;
    }
    CU_ASSERT_EQUAL(fails, 12);
    CU_ASSERT_EQUAL(ok, 48);
    CU_ASSERT_EQUAL(bad, 0);
    shim_fini();
}

static void test_corrupt_every_n(void)
{
    const char *env[] = {"CF_SHIM_CORRUPT_EVERY_N=2", NULL};
    CU_ASSERT_EQUAL_FATAL(shim_init(env), CKR_OK);
    CK_SLOT_ID slot = find_slot();
    CK_SESSION_HANDLE s = open_login(slot);
    CK_OBJECT_HANDLE key = find_obj(s, CKO_PRIVATE_KEY);
    for (int i = 1; i <= 6; i++) {
        uint8_t sig[64];
        CK_ULONG len = 0;
        CU_ASSERT_EQUAL(sign(s, key, sig, &len), CKR_OK);
        CU_ASSERT_EQUAL(len, 64);
        CU_ASSERT_EQUAL(verify(sig, len), i % 2 == 1);
    }
    shim_fini();
}

static void test_max_sessions(void)
{
    const char *env[] = {"CF_SHIM_MAX_SESSIONS=2", NULL};
    CU_ASSERT_EQUAL_FATAL(shim_init(env), CKR_OK);
    CK_SLOT_ID slot = find_slot();
    CK_TOKEN_INFO ti;
    CU_ASSERT_EQUAL(F->C_GetTokenInfo(slot, &ti), CKR_OK);
    CU_ASSERT_EQUAL(ti.ulMaxSessionCount, 2);
    CK_SESSION_HANDLE a = open_session(slot), b = open_session(slot), c = 0;
    CU_ASSERT_EQUAL(F->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &c), CKR_SESSION_COUNT);
    CU_ASSERT_EQUAL(F->C_CloseSession(a), CKR_OK);
    CU_ASSERT_EQUAL(F->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &c), CKR_OK);
    CU_ASSERT_EQUAL(F->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &a), CKR_SESSION_COUNT);
    CU_ASSERT_EQUAL(F->C_CloseSession(b), CKR_OK);
    CU_ASSERT_EQUAL(F->C_CloseSession(c), CKR_OK);
    shim_fini();
}

static void test_token_flags(void)
{
    const char *env[] = {"CF_SHIM_TOKEN_FLAGS_SET=0x60000", NULL};
    CU_ASSERT_EQUAL_FATAL(shim_init(env), CKR_OK);
    CK_SLOT_ID slot = find_slot();
    CK_TOKEN_INFO ti;
    CU_ASSERT_EQUAL(F->C_GetTokenInfo(slot, &ti), CKR_OK);
    CU_ASSERT(ti.flags & CKF_USER_PIN_LOCKED);
    CU_ASSERT(ti.flags & CKF_USER_PIN_FINAL_TRY);
    CU_ASSERT(ti.flags & CKF_TOKEN_INITIALIZED);
    CU_ASSERT_EQUAL(CTL("TOKEN_FLAGS_SET", "0"), 0);
    CU_ASSERT_EQUAL(F->C_GetTokenInfo(slot, &ti), CKR_OK);
    CU_ASSERT_FALSE(ti.flags & CKF_USER_PIN_LOCKED);
    shim_fini();
}

/* The timed events count from C_Initialize, so a case's set-up (a
 * session, a login, a signature) has to be done before its event falls
 * due, and its checks of a removal before the removal ends. A machine too
 * slow for that (a sanitizer, a loaded host) says nothing about the shim:
 * the case starts again with every time doubled, up to 8 s, instead of
 * failing on the clock. */
#define TIMED_FIRST_MS 500u
#define TIMED_LAST_MS 8000u

static void test_invalidate(void)
{
    CK_SLOT_ID slot = 0;
    CK_SESSION_HANDLE s1 = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
    uint8_t sig[64];
    CK_ULONG len;
    CK_RV set_rv = CKR_GENERAL_ERROR;
    uint64_t t1 = 0;
    unsigned at;
    for (at = TIMED_FIRST_MS; at <= TIMED_LAST_MS; at *= 2) {
        char v[64];
        snprintf(v, sizeof(v), "CF_SHIM_INVALIDATE_AT_MS=%u", at);
        const char *env[] = {v, NULL};
        uint64_t t0 = cf_now_ms();
        CU_ASSERT_EQUAL_FATAL(shim_init(env), CKR_OK);
        t1 = cf_now_ms(); /* C_Initialize, the event's origin, ran between t0 and t1 */
        slot = find_slot();
        s1 = open_login(slot);
        key = find_obj(s1, CKO_PRIVATE_KEY);
        set_rv = sign(s1, key, sig, &len);
        if (cf_now_ms() + 50 < t0 + at)
            break; /* the set-up beat the timer */
        shim_fini();
    }
    if (at > TIMED_LAST_MS)
        CU_FAIL_FATAL("a session, a login and a signature took longer than 8 s");
    CU_ASSERT_EQUAL(set_rv, CKR_OK);

    sleep_until(t1 + at + 50);
    CU_ASSERT_EQUAL(sign(s1, key, sig, &len), CKR_SESSION_HANDLE_INVALID);
    CK_SESSION_INFO si;
    CU_ASSERT_EQUAL(F->C_GetSessionInfo(s1, &si), CKR_SESSION_HANDLE_INVALID);
    CK_SESSION_HANDLE s2 = open_login(slot);
    key = find_obj(s2, CKO_PRIVATE_KEY);
    CU_ASSERT_EQUAL(sign(s2, key, sig, &len), CKR_OK);
    cf_sleep_ms(100); /* once only */
    CU_ASSERT_EQUAL(sign(s2, key, sig, &len), CKR_OK);
    CU_ASSERT(verify(sig, len));
    CU_ASSERT_EQUAL(F->C_CloseSession(s1), CKR_SESSION_HANDLE_INVALID);

    /* and on demand */
    CU_ASSERT_EQUAL(CTL("INVALIDATE_NOW", "1"), 0);
    CU_ASSERT_EQUAL(sign(s2, key, sig, &len), CKR_SESSION_HANDLE_INVALID);
    CK_SESSION_HANDLE s3 = open_login(slot);
    key = find_obj(s3, CKO_PRIVATE_KEY);
    CU_ASSERT_EQUAL(sign(s3, key, sig, &len), CKR_OK);
    shim_fini();
}

/* One try of the removal with REMOVE_AT_MS = REMOVE_FOR_MS = ms. Returns
 * false, having asserted nothing, when the machine was too slow to see
 * the set-up through before the removal or the checks through within it;
 * on the last try (`last`) it asserts whatever it saw. */
static bool remove_case(unsigned ms, bool last)
{
    char at[64], dur[64];
    snprintf(at, sizeof(at), "CF_SHIM_REMOVE_AT_MS=%u", ms);
    snprintf(dur, sizeof(dur), "CF_SHIM_REMOVE_FOR_MS=%u", ms);
    const char *env[] = {at, dur, NULL};
    uint64_t t0 = cf_now_ms();
    CU_ASSERT_EQUAL_FATAL(shim_init(env), CKR_OK);
    uint64_t t1 = cf_now_ms(); /* C_Initialize, the event's origin, ran between t0 and t1 */
    CK_SLOT_ID slot = find_slot();
    CK_SESSION_HANDLE s1 = open_login(slot);
    CK_OBJECT_HANDLE key = find_obj(s1, CKO_PRIVATE_KEY);
    uint8_t sig[64];
    CK_ULONG len;
    CK_RV set_rv = sign(s1, key, sig, &len);
    bool in_time = cf_now_ms() + 50 < t0 + ms;

    /* removed: the first call after the event fell due removes the token
     * for ms, so until at least r0 + ms */
    sleep_until(t1 + ms + 50);
    uint64_t r0 = cf_now_ms();
    int present = slot_listed(slot, CK_TRUE);
    uint64_t r1 = cf_now_ms(); /* the removal began before r1: it ends before r1 + ms */
    int listed = slot_listed(slot, CK_FALSE);
    CK_SLOT_INFO sli;
    CK_RV slot_rv = F->C_GetSlotInfo(slot, &sli);
    CK_TOKEN_INFO ti;
    CK_RV token_rv = F->C_GetTokenInfo(slot, &ti);
    CK_SESSION_HANDLE s2 = 0;
    CK_RV open_rv = F->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s2);
    CK_RV sign_rv = sign(s1, key, sig, &len);
    in_time = in_time && cf_now_ms() + 50 < r0 + ms;
    if (!in_time && !last) {
        shim_fini();
        return false;
    }
    CU_ASSERT_EQUAL(set_rv, CKR_OK);
    CU_ASSERT_EQUAL(present, 0);
    CU_ASSERT_EQUAL(listed, 1);
    CU_ASSERT_EQUAL(slot_rv, CKR_OK);
    CU_ASSERT_FALSE(sli.flags & CKF_TOKEN_PRESENT);
    CU_ASSERT_EQUAL(token_rv, CKR_TOKEN_NOT_PRESENT);
    CU_ASSERT_EQUAL(open_rv, CKR_TOKEN_NOT_PRESENT);
    CU_ASSERT_EQUAL(sign_rv, CKR_DEVICE_REMOVED);

    /* back, but the old session is gone and so is the login */
    sleep_until(r1 + ms + 50);
    CU_ASSERT_EQUAL(slot_listed(slot, CK_TRUE), 1);
    CU_ASSERT_EQUAL(F->C_GetTokenInfo(slot, &ti), CKR_OK);
    CU_ASSERT_EQUAL(sign(s1, key, sig, &len), CKR_SESSION_HANDLE_INVALID);
    s2 = open_session(slot);
    CK_SESSION_INFO si;
    CU_ASSERT_EQUAL(F->C_GetSessionInfo(s2, &si), CKR_OK);
    CU_ASSERT_EQUAL(si.state, CKS_RW_PUBLIC_SESSION);
    /* SoftHSM forgets private object handles at logout: the old key handle
     * gives CKR_OBJECT_HANDLE_INVALID, and the key cannot be found again
     * until C_Login, which must succeed (not USER_ALREADY_LOGGED_IN). */
    CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
    CU_ASSERT_NOT_EQUAL(F->C_SignInit(s2, &m, key), CKR_OK);
    CU_ASSERT_EQUAL(find_obj(s2, CKO_PRIVATE_KEY), CK_INVALID_HANDLE);
    CU_ASSERT_EQUAL(F->C_Login(s2, CKU_USER, (CK_UTF8CHAR_PTR)PIN, strlen(PIN)), CKR_OK);
    key = find_obj(s2, CKO_PRIVATE_KEY);
    CU_ASSERT_EQUAL(sign(s2, key, sig, &len), CKR_OK);
    CU_ASSERT(verify(sig, len));
    shim_fini();
    return true;
}

static void test_remove(void)
{
    for (unsigned ms = TIMED_FIRST_MS; ms <= TIMED_LAST_MS; ms *= 2)
        if (remove_case(ms, ms * 2 > TIMED_LAST_MS))
            return;
}

static void test_control_file(void)
{
    char path[320], envv[340];
    snprintf(path, sizeof(path), "%s/shim.ctl", H.dir);
    snprintf(envv, sizeof(envv), "CF_SHIM_CONTROL=%s", path);
    /* actions found at start-up are history, not orders */
    write_ctl("SIGN_LATENCY_US=0\nINVALIDATE_NOW=1\nREMOVE_NOW_MS=5000\n");
    const char *env[] = {envv, NULL};
    CU_ASSERT_EQUAL_FATAL(shim_init(env), CKR_OK);
    CK_SLOT_ID slot = find_slot();
    CK_SESSION_HANDLE s = open_login(slot);
    CK_OBJECT_HANDLE key = find_obj(s, CKO_PRIVATE_KEY);
    uint8_t sig[64];
    CK_ULONG len;
    cf_sleep_ms(50);
    CU_ASSERT_EQUAL(sign(s, key, sig, &len), CKR_OK);

    write_ctl("FAIL_EVERY_N=1\nFAIL_RV=0x30\n");
    cf_sleep_ms(50);
    CU_ASSERT_EQUAL(sign(s, key, sig, &len), CKR_DEVICE_ERROR);
    CU_ASSERT_EQUAL(sign(s, key, sig, &len), CKR_DEVICE_ERROR);

    write_ctl("# faults off, flags on; the bad line is reported and skipped\n"
              "FAIL_EVERY_N = 0\n\nBOGUS=1\nTOKEN_FLAGS_SET=0x40000\n");
    cf_sleep_ms(50);
    CU_ASSERT_EQUAL(sign(s, key, sig, &len), CKR_OK);
    CK_TOKEN_INFO ti;
    CU_ASSERT_EQUAL(F->C_GetTokenInfo(slot, &ti), CKR_OK);
    CU_ASSERT(ti.flags & CKF_USER_PIN_LOCKED);

    write_ctl("INVALIDATE_NOW=1\n");
    cf_sleep_ms(50);
    CU_ASSERT_EQUAL(sign(s, key, sig, &len), CKR_SESSION_HANDLE_INVALID);
    s = open_login(slot);
    key = find_obj(s, CKO_PRIVATE_KEY);
    CU_ASSERT_EQUAL(sign(s, key, sig, &len), CKR_OK);

    write_ctl("RESET_COUNTERS=1\n");
    cf_sleep_ms(50);
    CU_ASSERT_EQUAL(sign(s, key, sig, &len), CKR_OK);
    CU_ASSERT_EQUAL(counts().signs, 1); /* reset by the file, before this call */

    write_ctl("REMOVE_NOW_MS=300\n");
    cf_sleep_ms(50);
    CU_ASSERT_EQUAL(F->C_GetTokenInfo(slot, &ti), CKR_TOKEN_NOT_PRESENT);
    CU_ASSERT_EQUAL(sign(s, key, sig, &len), CKR_DEVICE_REMOVED);
    cf_sleep_ms(350);
    CU_ASSERT_EQUAL(F->C_GetTokenInfo(slot, &ti), CKR_OK);
    CU_ASSERT_EQUAL(sign(s, key, sig, &len), CKR_SESSION_HANDLE_INVALID);
    shim_fini();
    unlink(path);
}

static void test_control_api(void)
{
    CU_ASSERT_EQUAL_FATAL(shim_init(NULL), CKR_OK);
    CU_ASSERT_EQUAL(CTL("NO_SUCH_KEY", "1"), -1);
    CU_ASSERT_EQUAL(CTL("MODULE", "/tmp/x.so"), -1); /* environment only */
    CU_ASSERT_EQUAL(CTL("CONTROL", "/tmp/x"), -1);
    CU_ASSERT_EQUAL(CTL("FAIL_EVERY_N", "many"), -1);
    CU_ASSERT_EQUAL(CTL("FAIL_EVERY_N", "-1"), -1);
    CU_ASSERT_EQUAL(CTL("FAIL_EVERY_N", ""), -1);
    CU_ASSERT_EQUAL(CTL("FAIL_RV", "0"), -1);
    CU_ASSERT_EQUAL(CTL("SIGN_LATENCY_US", "99999999999"), -1);
    CU_ASSERT_EQUAL(CTL(NULL, "1"), -1);
    CU_ASSERT_EQUAL(CTL("FAIL_EVERY_N", NULL), -1);
    CU_ASSERT_EQUAL(CTL("FAIL_EVERY_N", "0x0"), 0);
    CU_ASSERT_EQUAL(CTL("SIGN_LATENCY_US", " 0 "), 0);
    CU_ASSERT_EQUAL(CTL("FAIL_RV", "48"), 0);
    shim_fini();

    /* cf_shim_control values outlive C_Finalize and beat the environment;
     * RESET brings back the environment's */
    CU_ASSERT_EQUAL(CTL("TOKEN_FLAGS_SET", "0x40000"), 0);
    for (size_t i = 0; i < sizeof(shim_vars) / sizeof(shim_vars[0]); i++)
        unsetenv(shim_vars[i]);
    setenv("CF_SHIM_TOKEN_FLAGS_SET", "0x20000", 1);
    CK_C_INITIALIZE_ARGS ia;
    memset(&ia, 0, sizeof(ia));
    ia.flags = CKF_OS_LOCKING_OK;
    CU_ASSERT_EQUAL_FATAL(F->C_Initialize(&ia), CKR_OK);
    CK_SLOT_ID slot = find_slot();
    CK_TOKEN_INFO ti;
    CU_ASSERT_EQUAL(F->C_GetTokenInfo(slot, &ti), CKR_OK);
    CU_ASSERT(ti.flags & CKF_USER_PIN_LOCKED);
    CU_ASSERT_FALSE(ti.flags & CKF_USER_PIN_FINAL_TRY);
    CU_ASSERT_EQUAL(CTL("RESET", "1"), 0);
    CU_ASSERT_EQUAL(F->C_GetTokenInfo(slot, &ti), CKR_OK);
    CU_ASSERT_FALSE(ti.flags & CKF_USER_PIN_LOCKED);
    CU_ASSERT(ti.flags & CKF_USER_PIN_FINAL_TRY);
    shim_fini();

    /* bad environment refuses to start */
    const char *bad_rv[] = {"CF_SHIM_FAIL_RV=banana", NULL};
    CU_ASSERT_EQUAL(shim_init(bad_rv), CKR_GENERAL_ERROR);
    const char *bad_mod[] = {"CF_SHIM_MODULE=/nonexistent/libnothing.so", NULL};
    CU_ASSERT_EQUAL(shim_init(bad_mod), CKR_GENERAL_ERROR);
    const char *self[] = {"CF_SHIM_MODULE=" CF_SHIM_PATH, NULL};
    CU_ASSERT_EQUAL(shim_init(self), CKR_GENERAL_ERROR);
    CU_ASSERT_EQUAL(F->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
}

/* A child forked while other threads are inside the shim can initialise it
 * again and sign: nothing the parent held stays locked in the child. */
static void test_fork(void)
{
    const char *env[] = {"CF_SHIM_SIGN_LATENCY_US=5000", NULL};
    CU_ASSERT_EQUAL_FATAL(shim_init(env), CKR_OK);
    CK_SLOT_ID slot = find_slot();
    struct signer_arg a[2];
    open_signers(slot, a, 2, 20);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, signer, &a[i]), 0);
    cf_sleep_ms(20);
    pid_t pid = fork();
    if (pid == 0) {
        CK_C_INITIALIZE_ARGS ia;
        memset(&ia, 0, sizeof(ia));
        ia.flags = CKF_OS_LOCKING_OK;
        int ok = F->C_Initialize(&ia) == CKR_OK;
        CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
        ok = ok && F->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s) == CKR_OK;
        ok = ok && F->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)PIN, strlen(PIN)) == CKR_OK;
        CK_OBJECT_HANDLE key = ok ? find_obj(s, CKO_PRIVATE_KEY) : CK_INVALID_HANDLE;
        uint8_t sig[64];
        CK_ULONG len = 0;
        ok = ok && key != CK_INVALID_HANDLE && sign(s, key, sig, &len) == CKR_OK;
        _exit(ok ? 0 : 1);
    }
    CU_ASSERT_FATAL(pid > 0);
    int st = -1;
    uint64_t deadline = cf_now_ms() + 10000;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (cf_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            CU_FAIL("child deadlocked in the shim");
            break;
        }
        cf_sleep_ms(10);
    }
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CU_ASSERT_EQUAL(a[i].ok, 20);
    }
    shim_fini();
}

int main(int argc, char **argv)
{
    static const cf_test tests[] = {
        {"public_key", test_public_key},
        {"exports", test_exports},
        {"passthrough", test_passthrough},
        {"latency_overlaps", test_latency_overlaps},
        {"latency_from_sign_init", test_latency_from_sign_init},
        {"counters", test_counters},
        {"fail_every_n", test_fail_every_n},
        {"corrupt_every_n", test_corrupt_every_n},
        {"max_sessions", test_max_sessions},
        {"token_flags", test_token_flags},
        {"invalidate", test_invalidate},
        {"remove", test_remove},
        {"control_file", test_control_file},
        {"control_api", test_control_api},
        {"fork", test_fork},
    };
    /* The same latency cases with their durations asserted too; the public
     * key first, as every signature is verified against it. */
    static const cf_test timed[] = {
        {"public_key", test_public_key},
        {"latency_overlaps: durations", test_latency_overlaps},
        {"latency_from_sign_init: durations", test_latency_from_sign_init},
    };
    static const cf_suite suites[] = {
        CF_SUITE("shim", suite_init, suite_clean, tests),
        CF_TIMING_SUITE("shim latency, timed", suite_init, suite_clean, timed),
    };
    return CF_TEST_MAIN(argc, argv, suites);
}
