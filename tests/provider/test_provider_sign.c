/* The certforge provider in C, against the real certforged on SoftHSM
 * (tests/daemon harness): a key loaded through OSSL_STORE in a library
 * context of its own; 16 threads signing concurrently through that one
 * provider, every signature verified with the exported public key; the
 * key matches its CA certificate; a forked child signs through its own
 * connection while the parent keeps signing; error-stack reasons for a
 * public-only key and unsupported PSS salt lengths. Runs under TSan
 * (label concurrency). */
#include "cf_daemon.h"

#include "cf_test.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/store.h>
#include <openssl/x509.h>

#define THREADS 16
#define PER_THREAD 40

static OSSL_LIB_CTX *LIB;
static OSSL_PROVIDER *PROV_CF, *PROV_DEF;
static EVP_PKEY *KEY; /* certforge:key=ca, through the provider */
static EVP_PKEY *PUB; /* its public key, exported, in the default context */
static dproc D;
static char URI[256];

static EVP_PKEY *load_key(const char *uri)
{
    OSSL_STORE_CTX *st = OSSL_STORE_open_ex(uri, LIB, NULL, NULL, NULL, NULL, NULL, NULL);
    EVP_PKEY *k = NULL;
    while (st && !k && !OSSL_STORE_eof(st)) {
        OSSL_STORE_INFO *info = OSSL_STORE_load(st);
        if (info && OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
            k = OSSL_STORE_INFO_get1_PKEY(info);
        OSSL_STORE_INFO_free(info);
        if (!info)
            break;
    }
    OSSL_STORE_close(st);
    return k;
}

static int suite_init(void)
{
    return dh_suite_init("provsign", "4321", "Provider Sign CA");
}

static bool READY;

/* First test: certforged with a sign grant on "ca", the provider loaded
 * into a library context of our own, the key through OSSL_STORE. (Set up
 * here, not in suite_init: the harness asserts, which needs a test.) */
static void test_setup(void)
{
    char conf[400], grants[256], pdir[512];
    snprintf(grants, sizeof(grants),
             "( { uid = %u; ops = [\"keys\", \"sign\"]; keys = [\"ca\"]; } )", (unsigned)getuid());
    snprintf(conf, sizeof(conf), "%s/certforged.conf", H.dir);
    conf_opts o = {.grants = grants};
    write_conf(conf, &o);
    CU_ASSERT_EQUAL_FATAL(daemon_start(&D, conf, NULL), 0);
    snprintf(URI, sizeof(URI), "certforge:key=ca;socket=%s", SOCK);
    cf_build_path("providers", pdir, sizeof(pdir));
    LIB = OSSL_LIB_CTX_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(LIB);
    CU_ASSERT_TRUE_FATAL(OSSL_PROVIDER_set_default_search_path(LIB, pdir));
    PROV_CF = OSSL_PROVIDER_load(LIB, "certforge");
    PROV_DEF = OSSL_PROVIDER_load(LIB, "default");
    if (!PROV_CF || !PROV_DEF)
        ERR_print_errors_fp(stderr);
    CU_ASSERT_PTR_NOT_NULL_FATAL(PROV_CF);
    CU_ASSERT_PTR_NOT_NULL_FATAL(PROV_DEF);
    KEY = load_key(URI);
    if (!KEY)
        ERR_print_errors_fp(stderr);
    CU_ASSERT_PTR_NOT_NULL_FATAL(KEY);
    uint8_t *der = NULL;
    int len = i2d_PUBKEY(KEY, &der);
    const uint8_t *p = der;
    PUB = len > 0 ? d2i_PUBKEY(NULL, &p, len) : NULL;
    OPENSSL_free(der);
    CU_ASSERT_PTR_NOT_NULL_FATAL(PUB);
    READY = true;
}

static int sign_verify(const unsigned char *msg, size_t n);

/* The daemon restarted on the PKCS#11 shim with every C_Sign failing:
 * the pooled connection is found dead and replaced (retry once), and the
 * failure reaches the error stack with its CK_RV. */
static void test_hsm_failure(void)
{
    CU_ASSERT_TRUE_FATAL(READY);
    daemon_stop_clean(&D);
    char conf[400], grants[256];
    snprintf(grants, sizeof(grants),
             "( { uid = %u; ops = [\"keys\", \"sign\"]; keys = [\"ca\"]; } )", (unsigned)getuid());
    snprintf(conf, sizeof(conf), "%s/certforged-shim.conf", H.dir);
    conf_opts o = {.grants = grants, .shim = true};
    write_conf(conf, &o);
    setenv("CF_SHIM_FAIL_EVERY_N", "1", 1);
    int started = daemon_start(&D, conf, NULL);
    unsetenv("CF_SHIM_FAIL_EVERY_N");
    CU_ASSERT_EQUAL_FATAL(started, 0);
    const unsigned char msg[] = "the HSM fails";
    ERR_clear_error();
    CU_ASSERT_FALSE(sign_verify(msg, sizeof(msg)));
    char buf[512] = "";
    const char *data = NULL;
    int flags = 0;
    unsigned long e = ERR_peek_error_data(&data, &flags);
    ERR_error_string_n(e, buf, sizeof(buf));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "the HSM failed to sign"));
    CU_ASSERT_PTR_NOT_NULL(data && strstr(data, "CK_RV 0x00000030"));
    if (!strstr(buf, "the HSM failed to sign") || !data || !strstr(data, "CK_RV 0x00000030"))
        ERR_print_errors_fp(stderr);
    ERR_clear_error();
}

/* Last test: everything down, the daemon stopped by PID (the harness
 * asserts on its log, so this runs as a test, not in suite_clean). */
static void test_teardown(void)
{
    EVP_PKEY_free(PUB);
    EVP_PKEY_free(KEY);
    PUB = KEY = NULL;
    if (PROV_CF)
        OSSL_PROVIDER_unload(PROV_CF);
    if (PROV_DEF)
        OSSL_PROVIDER_unload(PROV_DEF);
    OSSL_LIB_CTX_free(LIB);
    PROV_CF = PROV_DEF = NULL;
    LIB = NULL;
    if (D.pid > 0)
        daemon_stop_clean(&D);
}

static int suite_clean(void)
{
    return dh_suite_clean();
}

/* Sign msg with KEY through the provider, verify with PUB. 1 = good. */
static int sign_verify(const unsigned char *msg, size_t n)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new(), *v = EVP_MD_CTX_new();
    unsigned char sig[256];
    size_t siglen = sizeof(sig);
    int ok = m && v && EVP_DigestSignInit_ex(m, NULL, "SHA256", LIB, NULL, KEY, NULL) == 1 &&
             EVP_DigestSign(m, sig, &siglen, msg, n) == 1 &&
             EVP_DigestVerifyInit_ex(v, NULL, "SHA256", NULL, NULL, PUB, NULL) == 1 &&
             EVP_DigestVerify(v, sig, siglen, msg, n) == 1;
    EVP_MD_CTX_free(m);
    EVP_MD_CTX_free(v);
    return ok;
}

static void test_key(void)
{
    CU_ASSERT_TRUE_FATAL(READY);
    CU_ASSERT_TRUE(EVP_PKEY_is_a(KEY, "EC"));
    CU_ASSERT_EQUAL(EVP_PKEY_get_bits(KEY), 256);
    char group[32] = "";
    CU_ASSERT_TRUE(EVP_PKEY_get_utf8_string_param(KEY, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                                  sizeof(group), NULL));
    CU_ASSERT_STRING_EQUAL(group, "prime256v1");
    CU_ASSERT_EQUAL(EVP_PKEY_eq(X509_get0_pubkey(CA), KEY), 1);
    CU_ASSERT_EQUAL(X509_check_private_key(CA, KEY), 1);
    /* The private key stays in the HSM: nothing to export. */
    OSSL_PARAM *params = NULL;
    CU_ASSERT_TRUE(EVP_PKEY_todata(KEY, EVP_PKEY_KEYPAIR, &params) <= 0);
    OSSL_PARAM_free(params);
    params = NULL;
    CU_ASSERT_EQUAL(EVP_PKEY_todata(KEY, EVP_PKEY_PUBLIC_KEY, &params), 1);
    CU_ASSERT_PTR_NOT_NULL(OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_PUB_KEY));
    CU_ASSERT_PTR_NULL(OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_PRIV_KEY));
    OSSL_PARAM_free(params);
    ERR_clear_error();
}

static atomic_int GOOD, BAD;

static void *signer(void *arg)
{
    unsigned char msg[64];
    for (int i = 0; i < PER_THREAD; i++) {
        int n = snprintf((char *)msg, sizeof(msg), "thread %ld message %d", (long)(intptr_t)arg, i);
        if (sign_verify(msg, (size_t)n))
            atomic_fetch_add(&GOOD, 1);
        else
            atomic_fetch_add(&BAD, 1);
    }
    ERR_clear_error();
    return NULL;
}

static void test_threads(void)
{
    CU_ASSERT_TRUE_FATAL(READY);
    pthread_t t[THREADS];
    for (intptr_t i = 0; i < THREADS; i++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, signer, (void *)i), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    CU_ASSERT_EQUAL(atomic_load(&GOOD), THREADS * PER_THREAD);
    CU_ASSERT_EQUAL(atomic_load(&BAD), 0);
    if (atomic_load(&BAD))
        ERR_print_errors_fp(stderr);
}

static void test_fork(void)
{
    CU_ASSERT_TRUE_FATAL(READY);
    const unsigned char m1[] = "before fork", m2[] = "in the child", m3[] = "after fork";
    CU_ASSERT_TRUE(sign_verify(m1, sizeof(m1)));
    pid_t pid = fork();
    CU_ASSERT_TRUE_FATAL(pid >= 0);
    if (pid == 0) {
        /* The parent's pooled connection is not ours: the provider
         * reconnects. Twice, to reuse the child's own connection. */
        int ok = sign_verify(m2, sizeof(m2)) && sign_verify(m2, sizeof(m2) - 1);
        if (!ok)
            ERR_print_errors_fp(stderr);
        _exit(ok ? 0 : 1);
    }
    int st = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &st, 0), pid);
    CU_ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CU_ASSERT_TRUE(sign_verify(m3, sizeof(m3)));
}

static void test_errors(void)
{
    CU_ASSERT_TRUE_FATAL(READY);
    /* A public key imported into the provider can be compared, not used. */
    EVP_PKEY *pubonly = NULL;
    OSSL_PARAM *params = NULL;
    CU_ASSERT_EQUAL_FATAL(EVP_PKEY_todata(PUB, EVP_PKEY_PUBLIC_KEY, &params), 1);
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(LIB, "EC", "provider=certforge");
    CU_ASSERT_PTR_NOT_NULL_FATAL(pc);
    CU_ASSERT_EQUAL(EVP_PKEY_fromdata_init(pc), 1);
    CU_ASSERT_EQUAL(EVP_PKEY_fromdata(pc, &pubonly, EVP_PKEY_PUBLIC_KEY, params), 1);
    EVP_PKEY_CTX_free(pc);
    OSSL_PARAM_free(params);
    CU_ASSERT_EQUAL(EVP_PKEY_eq(pubonly, KEY), 1);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    ERR_clear_error();
    CU_ASSERT_NOT_EQUAL(EVP_DigestSignInit_ex(m, NULL, "SHA256", LIB, NULL, pubonly, NULL), 1);
    char buf[256];
    ERR_error_string_n(ERR_peek_last_error(), buf, sizeof(buf));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "public key only"));
    EVP_MD_CTX_free(m);
    EVP_PKEY_free(pubonly);
    ERR_clear_error();

    /* SHA-1 is refused before anything reaches the daemon. */
    m = EVP_MD_CTX_new();
    CU_ASSERT_NOT_EQUAL(EVP_DigestSignInit_ex(m, NULL, "SHA1", LIB, NULL, KEY, NULL), 1);
    ERR_error_string_n(ERR_peek_last_error(), buf, sizeof(buf));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "not supported by the certforge provider"));
    EVP_MD_CTX_free(m);
    ERR_clear_error();
}

int main(int argc, char **argv)
{
    static const cf_test tests[] = {
        {"set-up: certforged, provider, key", test_setup},
        {"key through OSSL_STORE matches its CA certificate", test_key},
        {"16 threads sign through one provider, all verify", test_threads},
        {"fork: parent, child (own connection), parent again", test_fork},
        {"errors: public-only key, SHA-1", test_errors},
        {"HSM failure: CK_RV on the error stack", test_hsm_failure},
        {"teardown: daemon stopped cleanly", test_teardown},
    };
    static const cf_suite suites[] = {CF_SUITE("provider_sign", suite_init, suite_clean, tests)};
    return CF_TEST_MAIN(argc, argv, suites);
}
