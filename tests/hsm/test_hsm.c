/* HSM layer against a real SoftHSM2 token holding EC, RSA and Ed25519 keys
 * side by side (libp11 0.4.12 cannot enumerate such a token at all). */
#include "cf_testutil.h"
#include "hsm/hsm.h"

#include "cf_test.h"
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "common/sigalg.h"

static cf_softhsm H;
static char TOKEN_URI[1024];

static int suite_init(void)
{
    if (cf_softhsm_init(&H, "cf-test", "1234") != 0)
        return -1;
    if (cf_softhsm_add_token(&H, "other-token", "5678") != 0)
        return -1;
    static const char *keys[][3] = {
        {"EC:prime256v1", "p256", "01"}, {"EC:secp384r1", "p384", "02"},
        {"rsa:2048", "rsa2048", "03"},   {"rsa:3072", "rsa3072", "04"},
        {"rsa:4096", "rsa4096", "05"},   {"EC:edwards25519", "ed25519", "06"},
        {"rsa:1024", "rsa1024", "07"},
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (cf_softhsm_keygen(&H, "cf-test", "1234", keys[i][0], keys[i][1], keys[i][2]) != 0)
            return -1;
    cf_softhsm_uri(&H, NULL, TOKEN_URI, sizeof(TOKEN_URI));
    return 0;
}

static int suite_clean(void)
{
    cf_softhsm_cleanup(&H);
    return 0;
}

static hsm_token *open_token(void)
{
    hsm_token *t = NULL;
    hsm_err e = {0};
    int rc = hsm_token_open(TOKEN_URI, NULL, &t, &e);
    if (rc != 0)
        fprintf(stderr, "hsm_token_open: %s\n", e.msg);
    CU_ASSERT_FATAL(rc == 0);
    return t;
}

static void key_uri(const char *obj, char *buf, size_t len)
{
    snprintf(buf, len, "pkcs11:token=cf-test;object=%s", obj);
}

/* --- URIs and token selection ------------------------------------------ */

static void expect_open_error(const char *uri, CK_RV rv, const char *needle)
{
    hsm_token *t = NULL;
    hsm_err e = {0};
    CU_ASSERT_EQUAL(hsm_token_open(uri, NULL, &t, &e), -1);
    CU_ASSERT_PTR_NULL(t);
    CU_ASSERT_EQUAL(e.rv, rv);
    if (!strstr(e.msg, needle)) {
        fprintf(stderr, "\nexpected '%s' in: %s\n", needle, e.msg);
        CU_FAIL("error message");
    }
}

static void test_uri_errors(void)
{
    char uri[1200];
    expect_open_error("", CKR_ARGUMENTS_BAD, "no PKCS#11 URI");
    expect_open_error("file:/x", CKR_ARGUMENTS_BAD, "must start with 'pkcs11:'");
    expect_open_error("pkcs11:token=a;slot-id=3", CKR_ARGUMENTS_BAD, "'slot-id=3'");
    expect_open_error("pkcs11:token=a;bogus=1", CKR_ARGUMENTS_BAD, "'bogus=1'");
    expect_open_error("pkcs11:token=a;id=%zz", CKR_ARGUMENTS_BAD, "'id=%zz'");
    expect_open_error("pkcs11:token=a?colour=blue", CKR_ARGUMENTS_BAD, "'colour=blue'");
    expect_open_error("pkcs11:token=a?pin-value=1234", CKR_ARGUMENTS_BAD, "pin-value");
    expect_open_error("pkcs11:token=a?module-path=/nonexistent/mod.so", CKR_GENERAL_ERROR,
                      "/nonexistent/mod.so");
    snprintf(uri, sizeof(uri), "pkcs11:token=nosuch?module-path=%s&pin-source=file:%s", H.module,
             H.pin_file);
    expect_open_error(uri, CKR_TOKEN_NOT_PRESENT, "'cf-test'");
    expect_open_error(uri, CKR_TOKEN_NOT_PRESENT, "'other-token'");
}

static void test_wrong_pin(void)
{
    char pinf[400], uri[1200];
    snprintf(pinf, sizeof(pinf), "%s/wrong-pin", H.dir);
    FILE *f = fopen(pinf, "w");
    fputs("9999\n", f);
    fclose(f);
    chmod(pinf, 0600);
    snprintf(uri, sizeof(uri), "pkcs11:token=cf-test?module-path=%s&pin-source=file:%s",
             H.module, pinf);
    expect_open_error(uri, CKR_PIN_INCORRECT, "token 'cf-test' rejected the PIN");
    /* Loose permissions are refused before any attempt. */
    chmod(pinf, 0644);
    expect_open_error(uri, CKR_PIN_INCORRECT, "chmod 600");
    /* A symbolic link is refused, saying why. */
    char link[400];
    snprintf(link, sizeof(link), "%s/pin-link", H.dir);
    chmod(pinf, 0600);
    CU_ASSERT_EQUAL(symlink(pinf, link), 0);
    snprintf(uri, sizeof(uri), "pkcs11:token=cf-test?module-path=%s&pin-source=file:%s",
             H.module, link);
    expect_open_error(uri, CKR_PIN_INCORRECT, "symbolic link");
    /* Environment PIN source. */
    snprintf(uri, sizeof(uri), "pkcs11:token=cf-test?module-path=%s&pin-source=env:CF_T_PIN",
             H.module);
    unsetenv("CF_T_PIN");
    expect_open_error(uri, CKR_PIN_INCORRECT, "not set");
    setenv("CF_T_PIN", "1234", 1);
    hsm_token *t = NULL;
    hsm_err e = {0};
    CU_ASSERT_EQUAL(hsm_token_open(uri, NULL, &t, &e), 0);
    hsm_token_close(t);
}

static void test_token_facts(void)
{
    hsm_token *t = open_token();
    CU_ASSERT_STRING_EQUAL(hsm_token_label(t), "cf-test");
    CU_ASSERT(strlen(hsm_token_serial(t)) > 0);
    hsm_token_close(t);
}

/* --- signing ------------------------------------------------------------ */

static const EVP_MD *md_of(cf_sig_alg m)
{
    switch (m) {
    case CF_SIG_ECDSA_SHA256:
    case CF_SIG_RSA_PKCS1_SHA256:
    case CF_SIG_RSA_PSS_SHA256:
        return EVP_sha256();
    case CF_SIG_ECDSA_SHA384:
    case CF_SIG_RSA_PKCS1_SHA384:
    case CF_SIG_RSA_PSS_SHA384:
        return EVP_sha384();
    case CF_SIG_ED25519:
        return NULL;
    default:
        return EVP_sha512();
    }
}

/* Sign msg through the layer, verify with OpenSSL against the key's
 * public half (EVP_DigestVerify over the message, so OpenSSL does the
 * hashing and padding checks itself). */
static int sign_and_verify(hsm_signer *s, EVP_PKEY *pub, cf_sig_alg m)
{
    uint8_t msg[100], dig[64], sig[CF_SIG_MAX];
    unsigned dl = 0;
    size_t sl = 0;
    hsm_err e = {0};
    RAND_bytes(msg, sizeof(msg));
    const EVP_MD *md = md_of(m);
    const uint8_t *in = msg;
    size_t inlen = sizeof(msg);
    if (md) {
        EVP_Digest(msg, sizeof(msg), dig, &dl, md, NULL);
        in = dig;
        inlen = dl;
    }
    if (hsm_sign(s, m, in, inlen, sig, &sl, &e) != 0) {
        fprintf(stderr, "\nhsm_sign %s: %s\n", cf_sig_alg_name(m), e.msg);
        return -1;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    int ok = EVP_DigestVerifyInit(ctx, &pctx, md, NULL, pub) == 1;
    if (ok && (m == CF_SIG_RSA_PSS_SHA256 || m == CF_SIG_RSA_PSS_SHA384 ||
               m == CF_SIG_RSA_PSS_SHA512))
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
    ok = ok && EVP_DigestVerify(ctx, sig, sl, msg, sizeof(msg)) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        fprintf(stderr, "\nverify %s failed\n", cf_sig_alg_name(m));
    return ok ? 0 : -1;
}

static void roundtrip(const char *obj, cf_key_type kt, unsigned bits, const cf_sig_alg *mechs,
                      size_t nm)
{
    hsm_token *t = open_token();
    hsm_signer *s = NULL;
    hsm_err e = {0};
    char uri[200];
    key_uri(obj, uri, sizeof(uri));
    int rc = hsm_signer_open(t, uri, 2, &s, &e);
    if (rc != 0)
        fprintf(stderr, "\nsigner %s: %s\n", obj, e.msg);
    CU_ASSERT_FATAL(rc == 0);
    CU_ASSERT_EQUAL(hsm_signer_key_type(s), kt);
    CU_ASSERT_EQUAL(hsm_signer_key_bits(s), bits);
    EVP_PKEY *pub = hsm_signer_public_key(s, &e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pub);
    CU_ASSERT_EQUAL(EVP_PKEY_get_bits(pub), (int)bits);
    for (size_t i = 0; i < nm; i++)
        CU_ASSERT_EQUAL(sign_and_verify(s, pub, mechs[i]), 0);
    EVP_PKEY_free(pub);
    hsm_signer_close(s);
    hsm_token_close(t);
}

static void test_sign_p256(void)
{
    cf_sig_alg m[] = {CF_SIG_ECDSA_SHA256, CF_SIG_ECDSA_SHA384, CF_SIG_ECDSA_SHA512};
    roundtrip("p256", CF_KEY_EC_P256, 256, m, 3);
}
static void test_sign_p384(void)
{
    cf_sig_alg m[] = {CF_SIG_ECDSA_SHA384, CF_SIG_ECDSA_SHA256};
    roundtrip("p384", CF_KEY_EC_P384, 384, m, 2);
}
static const cf_sig_alg rsa_mechs[] = {CF_SIG_RSA_PKCS1_SHA256, CF_SIG_RSA_PKCS1_SHA384,
                                     CF_SIG_RSA_PKCS1_SHA512, CF_SIG_RSA_PSS_SHA256,
                                     CF_SIG_RSA_PSS_SHA384,   CF_SIG_RSA_PSS_SHA512};
static void test_sign_rsa2048(void)
{
    roundtrip("rsa2048", CF_KEY_RSA, 2048, rsa_mechs, 6);
}
static void test_sign_rsa3072(void)
{
    roundtrip("rsa3072", CF_KEY_RSA, 3072, rsa_mechs, 6);
}
static void test_sign_rsa4096(void)
{
    roundtrip("rsa4096", CF_KEY_RSA, 4096, rsa_mechs, 6);
}
static void test_sign_ed25519(void)
{
    cf_sig_alg m[] = {CF_SIG_ED25519};
    roundtrip("ed25519", CF_KEY_ED25519, 256, m, 1);
}

static void test_key_by_id_and_errors(void)
{
    hsm_token *t = open_token();
    hsm_signer *s = NULL;
    hsm_err e = {0};
    CU_ASSERT_EQUAL(hsm_signer_open(t, "pkcs11:token=cf-test;id=%06", 1, &s, &e), 0);
    CU_ASSERT_EQUAL(hsm_signer_key_type(s), CF_KEY_ED25519);
    uint8_t dig[32] = {1}, sig[CF_SIG_MAX];
    size_t sl;
    /* A mechanism that does not fit the key is named. */
    CU_ASSERT_EQUAL(hsm_sign(s, CF_SIG_ECDSA_SHA256, dig, 32, sig, &sl, &e), -1);
    CU_ASSERT_EQUAL(e.rv, CKR_KEY_TYPE_INCONSISTENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "ecdsa-sha256"));
    hsm_signer_close(s);
    s = NULL;

    CU_ASSERT_EQUAL(hsm_signer_open(t, "pkcs11:token=cf-test;object=p256", 1, &s, &e), 0);
    CU_ASSERT_EQUAL(hsm_sign(s, CF_SIG_ECDSA_SHA256, dig, 20, sig, &sl, &e), -1);
    CU_ASSERT_EQUAL(e.rv, CKR_DATA_LEN_RANGE);
    CU_ASSERT_EQUAL(hsm_sign(s, (cf_sig_alg)99, dig, 32, sig, &sl, &e), -1);
    CU_ASSERT_EQUAL(e.rv, CKR_MECHANISM_INVALID);
    hsm_signer_close(s);
    s = NULL;

    CU_ASSERT_EQUAL(hsm_signer_open(t, "pkcs11:token=cf-test;object=nosuch", 1, &s, &e), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "pkcs11:token=cf-test;object=nosuch"));
    CU_ASSERT_EQUAL(hsm_signer_open(t, "pkcs11:token=other-token;object=p256", 1, &s, &e), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "other-token"));
    CU_ASSERT_EQUAL(hsm_signer_open(t, "pkcs11:token=cf-test", 1, &s, &e), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "names no key"));
    /* RSA below 2048 bits is refused by name */
    CU_ASSERT_EQUAL(hsm_signer_open(t, "pkcs11:token=cf-test;object=rsa1024", 1, &s, &e), -1);
    CU_ASSERT_EQUAL(e.rv, CKR_KEY_SIZE_RANGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "RSA-1024"));
    hsm_token_close(t);
}

/* --- concurrency ---------------------------------------------------------- */

typedef struct {
    hsm_signer *s;
    EVP_PKEY *pub;
    _Atomic long *signs, *errors;
    long per_thread;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *a = p;
    uint8_t dig[32], sig[CF_SIG_MAX];
    for (long i = 0; i < a->per_thread; i++) {
        size_t sl;
        hsm_err e;
        dig[0] = (uint8_t)i;
        memset(dig + 1, 0x5a, 31);
        if (hsm_sign(a->s, CF_SIG_ECDSA_SHA256, dig, 32, sig, &sl, &e) != 0) {
            atomic_fetch_add(a->errors, 1);
            continue;
        }
        /* Spot-check signatures from every thread. */
        if ((i & 15) == 0) {
            EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(a->pub, NULL);
            if (EVP_PKEY_verify_init(c) != 1 || EVP_PKEY_verify(c, sig, sl, dig, 32) != 1)
                atomic_fetch_add(a->errors, 1);
            EVP_PKEY_CTX_free(c);
        }
        atomic_fetch_add(a->signs, 1);
    }
    return NULL;
}

/* 8 threads, 256 signatures each, on 4 sessions: every one made, none
 * failed, every session back in the pool. A fixed amount of work, not "as
 * many as fit in 3 s": a count that depends on the machine's speed would
 * be a timing assertion. */
static void test_threads(void)
{
    hsm_token *t = open_token();
    hsm_signer *s = NULL;
    hsm_err e = {0};
    /* Fewer sessions than threads: the pool must hand them around. */
    CU_ASSERT_FATAL(hsm_signer_open(t, "pkcs11:token=cf-test;object=p256", 4, &s, &e) == 0);
    EVP_PKEY *pub = hsm_signer_public_key(s, &e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pub);
    _Atomic long signs = 0, errors = 0;
    pthread_t th[8];
    worker_arg a = {s, pub, &signs, &errors, 256};
    for (int i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, worker, &a);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    CU_ASSERT_EQUAL(errors, 0);
    CU_ASSERT_EQUAL(signs, 8 * 256);
    CU_ASSERT_EQUAL(hsm_signer_sessions_busy(s), 0);
    EVP_PKEY_free(pub);
    hsm_signer_close(s);
    hsm_token_close(t);
}

int main(int argc, char **argv)
{
    static const cf_test tests[] = {
        {"URI errors name the bad attribute", test_uri_errors},
        {"wrong PIN, loose PIN file, env PIN", test_wrong_pin},
        {"token facts", test_token_facts},
        {"sign/verify EC P-256", test_sign_p256},
        {"sign/verify EC P-384", test_sign_p384},
        {"sign/verify RSA-2048 PKCS#1 and PSS", test_sign_rsa2048},
        {"sign/verify RSA-3072 PKCS#1 and PSS", test_sign_rsa3072},
        {"sign/verify RSA-4096 PKCS#1 and PSS", test_sign_rsa4096},
        {"sign/verify Ed25519", test_sign_ed25519},
        {"key by id, mechanism and lookup errors", test_key_by_id_and_errors},
        {"8 threads, 4 sessions, 2,048 signatures", test_threads},
    };
    static const cf_suite suites[] = {CF_SUITE("hsm", suite_init, suite_clean, tests)};
    return CF_TEST_MAIN(argc, argv, suites);
}
