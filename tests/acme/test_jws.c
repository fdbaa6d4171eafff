/* CUnit suite for acme/jws (acme/jws.h): base64url, JWK import and
 * thumbprints, flattened-JWS parsing, the RFC 8555 header rules and the
 * verifiers, with the published vectors of RFC 7515 (A.1 HS256, A.3
 * ES256), RFC 7638 §3.1 and RFC 8037 (A.3 thumbprint, A.4/A.5 Ed25519).
 *
 * Keys are made with OpenSSL; signatures the refusal tests need are made
 * here with EVP_DigestSign and this file's own r || s conversion, not with
 * acme_jws_sign, so that signing and verifying are checked against each
 * other rather than against themselves. Every refusal asserts its exact
 * acme_jws_err, and where two reasons share a code, a word of the message,
 * so that a case cannot pass for a reason other than the one it tests.
 *
 * `test_jws --write-seeds DIR` writes the fuzz seed corpora DIR/jws and
 * DIR/jwk (tests/fuzz/corpus): files named OUTCOME_what, OUTCOME being
 * the result of tests/fuzz/jws_pipeline.h (ok, malformed, bad-alg, bad-key,
 * bad-signature). The "seed corpus" test checks the committed seeds against
 * their names with the same pipeline.
 */
#include "acme/jws.h"

#include "cf_test.h"
#include "tests/fuzz/jws_pipeline.h"

#include <dirent.h>
#include <pthread.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- keys */

enum {
    K_P256,
    K_P256_B, /* a second P-256 key: "the right type, the wrong key" */
    K_P384,
    K_RSA2048,
    K_RSA4096,
    K_RSA_E3,
    K_ED25519,
    K_ED25519_B,
    K_P521,
    K_SECP256K1,
    K_ED448,
    K_RSA1024,
    K_A3, /* RFC 7515 A.3 P-256 private key (the fuzz pipeline's kid key) */
    K__MAX
};
static EVP_PKEY *keys[K__MAX];
static jws_pipeline_keys pkeys;

static EVP_PKEY *rsa_e3(void)
{
    EVP_PKEY *pk = NULL;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    BIGNUM *e = BN_new();
    if (c && e && BN_set_word(e, 3) && EVP_PKEY_keygen_init(c) == 1 &&
        EVP_PKEY_CTX_set_rsa_keygen_bits(c, 2048) == 1 &&
        EVP_PKEY_CTX_set1_rsa_keygen_pubexp(c, e) == 1)
        if (EVP_PKEY_keygen(c, &pk) != 1)
            pk = NULL;
    BN_free(e);
    EVP_PKEY_CTX_free(c);
    return pk;
}

/* The RFC 7515 A.3 key with its private half, built from d, x, y. */
static EVP_PKEY *rfc7515_a3_private(void)
{
    uint8_t d[32], pub[65];
    EVP_PKEY *pk = NULL;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    BIGNUM *bd = NULL;
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    OSSL_PARAM *p = NULL;
    pub[0] = 4;
    if (acme_b64url_decode(JWS_RFC7515_A3_D, 43, d, 32) != 32 ||
        acme_b64url_decode(JWS_RFC7515_A3_X, 43, pub + 1, 32) != 32 ||
        acme_b64url_decode(JWS_RFC7515_A3_Y, 43, pub + 33, 32) != 32)
        goto out;
    if (!c || !b || (bd = BN_bin2bn(d, 32, NULL)) == NULL ||
        !OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, pub, 65) ||
        !OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_PRIV_KEY, bd) ||
        (p = OSSL_PARAM_BLD_to_param(b)) == NULL || EVP_PKEY_fromdata_init(c) != 1 ||
        EVP_PKEY_fromdata(c, &pk, EVP_PKEY_KEYPAIR, p) != 1)
        pk = NULL;
out:
    OSSL_PARAM_free(p);
    OSSL_PARAM_BLD_free(b);
    BN_free(bd);
    EVP_PKEY_CTX_free(c);
    return pk;
}

static int suite_init(void)
{
    keys[K_P256] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    keys[K_P256_B] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    keys[K_P384] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    keys[K_RSA2048] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    keys[K_RSA4096] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)4096);
    keys[K_RSA_E3] = rsa_e3();
    keys[K_ED25519] = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    keys[K_ED25519_B] = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    keys[K_P521] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
    keys[K_SECP256K1] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1");
    keys[K_ED448] = EVP_PKEY_Q_keygen(NULL, NULL, "ED448");
    keys[K_RSA1024] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    keys[K_A3] = rfc7515_a3_private();
    for (int i = 0; i < K__MAX; i++)
        if (keys[i] == NULL)
            return cf_test_setup_failed("key %d could not be made", i);
    if (jws_pipeline_keys_init(&pkeys) != 0)
        return cf_test_setup_failed("the fuzz pipeline's RFC 7515 keys");
    return 0;
}

static int suite_clean(void)
{
    for (int i = 0; i < K__MAX; i++)
        EVP_PKEY_free(keys[i]);
    EVP_PKEY_free(pkeys.kid_key);
    return 0;
}

/* ------------------------------------------------------------- helpers */

static char msg[512];

/* Malloc'd base64url of n octets. */
static char *b64(const void *in, size_t n)
{
    size_t cap = acme_b64url_len(n) + 1;
    char *s = malloc(cap);
    CU_ASSERT_FATAL(s != NULL);
    CU_ASSERT_FATAL(acme_b64url_encode(in, n, s, cap) == acme_b64url_len(n));
    return s;
}

static char *b64s(const char *s)
{
    return b64(s, strlen(s));
}

/* A flattened JWS body from the three base64url texts. */
static char *body3(const char *prot64, const char *pay64, const char *sig64)
{
    json_t *o =
        json_pack("{s:s, s:s, s:s}", "protected", prot64, "payload", pay64, "signature", sig64);
    CU_ASSERT_FATAL(o != NULL);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    CU_ASSERT_FATAL(s != NULL);
    return s;
}

/* A body from the protected header's JSON text, the payload and raw
 * signature octets. */
static char *body_of(const char *hdr, const char *payload, const uint8_t *sig, size_t sl)
{
    char *p = b64s(hdr), *y = b64s(payload), *s = b64(sig, sl);
    char *b = body3(p, y, s);
    free(p);
    free(y);
    free(s);
    return b;
}

/* EVP_DigestSign of input; for ECDSA with ec_sz > 0 the DER signature is
 * turned into R || S here (independently of jws.c), with ec_sz == 0 it is
 * left DER. Returns the signature length. */
static size_t sign_raw(EVP_PKEY *k, const EVP_MD *md, const char *input, uint8_t *sig, size_t cap,
                       size_t ec_sz)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    uint8_t der[1100];
    size_t dl = sizeof(der);
    CU_ASSERT_FATAL(m != NULL && EVP_DigestSignInit(m, NULL, md, NULL, k) == 1 &&
                    EVP_DigestSign(m, der, &dl, (const uint8_t *)input, strlen(input)) == 1);
    EVP_MD_CTX_free(m);
    if (ec_sz == 0) {
        CU_ASSERT_FATAL(dl <= cap);
        memcpy(sig, der, dl);
        return dl;
    }
    const uint8_t *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)dl);
    const BIGNUM *r, *s;
    CU_ASSERT_FATAL(es != NULL && 2 * ec_sz <= cap);
    ECDSA_SIG_get0(es, &r, &s);
    CU_ASSERT_FATAL(BN_bn2binpad(r, sig, (int)ec_sz) == (int)ec_sz &&
                    BN_bn2binpad(s, sig + ec_sz, (int)ec_sz) == (int)ec_sz);
    ECDSA_SIG_free(es);
    return 2 * ec_sz;
}

/* A body whose protected header is `hdr` (JSON text, alg whatever it
 * says), signed by k with md over the real signing input. */
static char *signed_body(EVP_PKEY *k, const EVP_MD *md, size_t ec_sz, const char *hdr,
                         const char *payload)
{
    char *p = b64s(hdr), *y = b64s(payload);
    size_t il = strlen(p) + 1 + strlen(y) + 1;
    char *input = malloc(il);
    uint8_t sig[1100];
    CU_ASSERT_FATAL(input != NULL);
    snprintf(input, il, "%s.%s", p, y);
    size_t sl = sign_raw(k, md, input, sig, sizeof(sig), ec_sz);
    char *s = b64(sig, sl);
    char *b = body3(p, y, s);
    free(input);
    free(p);
    free(y);
    free(s);
    return b;
}

/* Replace member `name` of a body with a string (NULL: remove it). */
static char *with_member(const char *body, const char *name, const char *val)
{
    json_t *o = json_loads(body, 0, NULL);
    CU_ASSERT_FATAL(o != NULL);
    if (val != NULL) {
        CU_ASSERT_FATAL(json_object_set_new(o, name, json_string(val)) == 0);
    } else {
        CU_ASSERT_FATAL(json_object_del(o, name) == 0);
    }
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* Decode the signature of a body, let f change it, put it back. */
static char *with_sig(const char *body, void (*f)(uint8_t *sig, size_t *len))
{
    json_t *o = json_loads(body, 0, NULL);
    const char *s = json_string_value(json_object_get(o, "signature"));
    uint8_t sig[1200];
    CU_ASSERT_FATAL(s != NULL);
    long n = acme_b64url_decode(s, strlen(s), sig, sizeof(sig) - 100);
    CU_ASSERT_FATAL(n >= 0);
    size_t len = (size_t)n;
    f(sig, &len);
    char *s64 = b64(sig, len);
    char *r = with_member(body, "signature", s64);
    free(s64);
    json_decref(o);
    return r;
}

static void sig_flip_first(uint8_t *s, size_t *n)
{
    s[0] ^= 0x01;
    (void)n;
}
static void sig_flip_last(uint8_t *s, size_t *n)
{
    s[*n - 1] ^= 0x80;
}
static void sig_drop_last(uint8_t *s, size_t *n)
{
    (void)s;
    (*n)--;
}
static void sig_add_zero(uint8_t *s, size_t *n)
{
    s[(*n)++] = 0;
}
static void sig_add_zero_front(uint8_t *s, size_t *n)
{
    memmove(s + 1, s, *n);
    s[0] = 0;
    (*n)++;
}
static void sig_empty(uint8_t *s, size_t *n)
{
    (void)s;
    *n = 0;
}
static void sig_zero(uint8_t *s, size_t *n)
{
    memset(s, 0, *n);
}
static void sig_swap_halves(uint8_t *s, size_t *n)
{
    uint8_t t[64];
    size_t h = *n / 2;
    memcpy(t, s, h);
    memmove(s, s + h, h);
    memcpy(s + h, t, h);
}
static void sig_eddsa_big_s(uint8_t *s, size_t *n)
{
    s[*n - 1] |= 0xf0; /* S >= L (RFC 8032 §5.1.7 step 1) */
}

/* Parse a body; asserts rc and err agree, msg set on failure. */
static acme_jws_err parse(const char *body, acme_jws *j)
{
    acme_jws_err e = ACME_JWS_E__MAX;
    msg[0] = 0;
    int rc = acme_jws_parse(body, strlen(body), j, &e, msg, sizeof(msg));
    CU_ASSERT((rc == 0) == (e == ACME_JWS_OK));
    if (rc != 0)
        CU_ASSERT(msg[0] != 0);
    return e;
}

static acme_jws_err parse_err(const char *body)
{
    acme_jws j;
    acme_jws_err e = parse(body, &j);
    acme_jws_free(&j);
    return e;
}

static acme_jws_err import_err(const json_t *jwk)
{
    EVP_PKEY *k = NULL;
    acme_jws_err e = ACME_JWS_E__MAX;
    msg[0] = 0;
    int rc = acme_jwk_import(jwk, &k, NULL, &e, msg, sizeof(msg));
    CU_ASSERT((rc == 0) == (e == ACME_JWS_OK));
    CU_ASSERT((rc == 0) == (k != NULL));
    if (rc != 0)
        CU_ASSERT(msg[0] != 0);
    EVP_PKEY_free(k);
    return e;
}

/* Parse (must succeed) and verify with key. */
static acme_jws_err verify_err(const char *body, EVP_PKEY *key)
{
    acme_jws j;
    acme_jws_err e = ACME_JWS_E__MAX;
    CU_ASSERT_FATAL(parse(body, &j) == ACME_JWS_OK);
    msg[0] = 0;
    int rc = acme_jws_verify(&j, key, &e, msg, sizeof(msg));
    CU_ASSERT((rc == 0) == (e == ACME_JWS_OK));
    if (rc != 0)
        CU_ASSERT(msg[0] != 0);
    acme_jws_free(&j);
    return e;
}

static acme_jws_err check_err(const char *hdr, int need_nonce)
{
    static const uint8_t sig[64];
    char *b = body_of(hdr, "{}", sig, sizeof(sig));
    acme_jws j;
    acme_jws_err e = ACME_JWS_E__MAX;
    CU_ASSERT_FATAL(parse(b, &j) == ACME_JWS_OK);
    msg[0] = 0;
    int rc = acme_jws_check_acme(&j, need_nonce, &e, msg, sizeof(msg));
    CU_ASSERT((rc == 0) == (e == ACME_JWS_OK));
    acme_jws_free(&j);
    free(b);
    return e;
}

static acme_jws_err eab_check_err(const char *hdr)
{
    static const uint8_t sig[32];
    char *b = body_of(hdr, "{}", sig, sizeof(sig));
    acme_jws j;
    acme_jws_err e = ACME_JWS_E__MAX;
    CU_ASSERT_FATAL(parse(b, &j) == ACME_JWS_OK);
    msg[0] = 0;
    int rc = acme_jws_check_eab(&j, &e, msg, sizeof(msg));
    CU_ASSERT((rc == 0) == (e == ACME_JWS_OK));
    acme_jws_free(&j);
    free(b);
    return e;
}

#define MSG_HAS(s)                                                                                 \
    do {                                                                                           \
        if (strstr(msg, (s)) == NULL) {                                                            \
            fprintf(stderr, "\n  message \"%s\" lacks \"%s\"\n", msg, (s));                        \
            CU_FAIL("message does not give the reason tested");                                    \
        }                                                                                          \
    } while (0)

static json_t *jwk_of(int k)
{
    json_t *j = acme_jwk_from_pkey(keys[k]);
    CU_ASSERT_FATAL(j != NULL);
    return j;
}

/* Set member `name` of a JWK to base64url(b, n). */
static void set_b64(json_t *jwk, const char *name, const uint8_t *b, size_t n)
{
    char *s = b64(b, n);
    CU_ASSERT_FATAL(json_object_set_new(jwk, name, json_string(s)) == 0);
    free(s);
}

static size_t get_b64(const json_t *jwk, const char *name, uint8_t *out, size_t cap)
{
    const char *s = json_string_value(json_object_get(jwk, name));
    CU_ASSERT_FATAL(s != NULL);
    long n = acme_b64url_decode(s, strlen(s), out, cap);
    CU_ASSERT_FATAL(n >= 0);
    return (size_t)n;
}

#define HDR_KID                                                                                    \
    "\"nonce\":\"bm9uY2UtMQ\",\"url\":\"https://acme.example/new-order\","                         \
    "\"kid\":\"https://acme.example/acct/1\""
#define PAYLOAD "{\"identifiers\":[{\"type\":\"dns\",\"value\":\"amf1.5gc.example\"}]}"

/* ------------------------------------------------------------- names */

static void test_names(void)
{
    static const char *const names[] = {"ES256", "ES384", "RS256", "EdDSA",
                                        "HS256", "HS384", "HS512"};
    for (int a = ACME_JWS_ALG_ES256; a < ACME_JWS_ALG__MAX; a++) {
        CU_ASSERT_STRING_EQUAL(acme_jws_alg_name((acme_jws_alg)a), names[a - 1]);
        CU_ASSERT_EQUAL(acme_jws_alg_from_name(names[a - 1]), a);
    }
    CU_ASSERT_EQUAL(acme_jws_alg_from_name("none"), ACME_JWS_ALG_NONE);
    CU_ASSERT_EQUAL(acme_jws_alg_from_name("es256"), ACME_JWS_ALG_NONE); /* case-sensitive */
    CU_ASSERT_EQUAL(acme_jws_alg_from_name("ES256 "), ACME_JWS_ALG_NONE);
    CU_ASSERT_EQUAL(acme_jws_alg_from_name("ES512"), ACME_JWS_ALG_NONE);
    CU_ASSERT_EQUAL(acme_jws_alg_from_name("PS256"), ACME_JWS_ALG_NONE);
    CU_ASSERT_EQUAL(acme_jws_alg_from_name(""), ACME_JWS_ALG_NONE);
    CU_ASSERT_EQUAL(acme_jws_alg_from_name(NULL), ACME_JWS_ALG_NONE);
    CU_ASSERT_EQUAL(acme_jws_alg_from_name(acme_jws_alg_name(ACME_JWS_ALG_NONE)),
                    ACME_JWS_ALG_NONE);
    CU_ASSERT_STRING_EQUAL(acme_jws_alg_name(ACME_JWS_ALG__MAX), "(invalid)");

    CU_ASSERT_PTR_NULL(acme_jws_err_problem(ACME_JWS_OK));
    CU_ASSERT_STRING_EQUAL(acme_jws_err_problem(ACME_JWS_E_MALFORMED),
                           "urn:ietf:params:acme:error:malformed");
    CU_ASSERT_STRING_EQUAL(acme_jws_err_problem(ACME_JWS_E_BAD_ALG),
                           "urn:ietf:params:acme:error:badSignatureAlgorithm");
    CU_ASSERT_STRING_EQUAL(acme_jws_err_problem(ACME_JWS_E_BAD_KEY),
                           "urn:ietf:params:acme:error:badPublicKey");
    CU_ASSERT_STRING_EQUAL(acme_jws_err_problem(ACME_JWS_E_BAD_SIGNATURE),
                           "urn:ietf:params:acme:error:malformed");
    CU_ASSERT_STRING_EQUAL(acme_jws_err_problem(ACME_JWS_E_INTERNAL),
                           "urn:ietf:params:acme:error:serverInternal");
    CU_ASSERT_STRING_EQUAL(acme_jws_err_problem(ACME_JWS_E__MAX),
                           "urn:ietf:params:acme:error:serverInternal");
}

/* ------------------------------------------------------------- base64url */

static void test_b64_round_trips(void)
{
    /* RFC 4648 §10 (no '+' or '/' in these, so base64 = base64url). */
    static const struct {
        const char *raw, *enc;
    } v[] = {{"", ""},           {"f", "Zg"},          {"fo", "Zm8"},         {"foo", "Zm9v"},
             {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
    char out[64];
    uint8_t dec[64];
    for (size_t i = 0; i < CF_ARRAY_LEN(v); i++) {
        size_t n = strlen(v[i].raw);
        CU_ASSERT_EQUAL(acme_b64url_encode((const uint8_t *)v[i].raw, n, out, sizeof(out)),
                        strlen(v[i].enc));
        CU_ASSERT_STRING_EQUAL(out, v[i].enc);
        CU_ASSERT_EQUAL(acme_b64url_len(n), strlen(v[i].enc));
        CU_ASSERT_EQUAL(acme_b64url_decode(v[i].enc, strlen(v[i].enc), dec, sizeof(dec)), (long)n);
        CU_ASSERT(memcmp(dec, v[i].raw, n) == 0);
    }
    /* The url-safe characters: 0xfb 0xff 0xbf is "+/+/" in base64. */
    static const uint8_t hi[] = {0xfb, 0xff, 0xbf};
    CU_ASSERT_EQUAL(acme_b64url_encode(hi, 3, out, sizeof(out)), 4);
    CU_ASSERT_STRING_EQUAL(out, "-_-_");
    CU_ASSERT_EQUAL(acme_b64url_decode("-_-_", 4, dec, sizeof(dec)), 3);
    CU_ASSERT(memcmp(dec, hi, 3) == 0);

    /* Every length up to 300, random octets, exact buffers. */
    uint8_t raw[300], back[300];
    char enc[401];
    CU_ASSERT_FATAL(RAND_bytes(raw, sizeof(raw)) == 1);
    for (size_t n = 0; n <= sizeof(raw); n++) {
        size_t el = acme_b64url_len(n);
        CU_ASSERT_EQUAL_FATAL(acme_b64url_encode(raw, n, enc, el + 1), el);
        CU_ASSERT_EQUAL(strlen(enc), el);
        CU_ASSERT(strspn(enc, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
                  el);
        CU_ASSERT_EQUAL(acme_b64url_decode(enc, el, back, n), (long)n);
        CU_ASSERT(memcmp(raw, back, n) == 0);
        if (n > 0) {
            CU_ASSERT_EQUAL(acme_b64url_encode(raw, n, enc, el), 0); /* no room for NUL */
            CU_ASSERT_EQUAL(acme_b64url_decode(enc, el, back, n - 1), -1);
        }
    }
    CU_ASSERT_EQUAL(acme_b64url_encode(raw, 3, NULL, 10), 0);
    CU_ASSERT_EQUAL(acme_b64url_decode("", 0, NULL, 0), 0);
    CU_ASSERT_EQUAL(acme_b64url_decode("Zm9v", 4, NULL, 0), -1);
}

static void test_b64_refusals(void)
{
    /* Each refused text next to the nearest accepted one, so each case
     * fails for its own reason. */
    static const struct {
        const char *bad;
        size_t badn;
        const char *good;
    } v[] = {
        {"Zg==", 4, "Zg"},         /* padding */
        {"Zg=", 3, "Zg"},          /* partial padding */
        {"Zm8=", 4, "Zm8"},        /* padding */
        {"Zm+v", 4, "Zm-v"},       /* '+' is base64, not base64url */
        {"Zm/v", 4, "Zm_v"},       /* '/' */
        {"Z", 1, "Zg"},            /* length ≡ 1 (mod 4) */
        {"Zm9vY", 5, "Zm9vYg"},    /* length ≡ 1 (mod 4) */
        {"Zh", 2, "Zg"},           /* non-zero trailing bits (4 bits) */
        {"Zm9", 3, "Zm8"},         /* non-zero trailing bits (2 bits) */
        {"Zm_", 3, "Zm8"},         /* non-zero trailing bits */
        {"Zm 9v", 5, "Zm9v"},      /* space */
        {"Zm9v\n", 5, "Zm9v"},     /* newline */
        {"Zm\0v", 4, "Zm9v"},      /* NUL */
        {"Zm\xc3\xa9", 4, "Zm9v"}, /* non-ASCII */
        {"Zm.v", 4, "Zm9v"},       /* '.' (the compact separator) */
    };
    uint8_t out[16];
    for (size_t i = 0; i < CF_ARRAY_LEN(v); i++) {
        if (acme_b64url_decode(v[i].bad, v[i].badn, out, sizeof(out)) != -1) {
            fprintf(stderr, "\n  accepted %zu: \"%s\"\n", i, v[i].bad);
            CU_FAIL("refusable base64url accepted");
        }
        CU_ASSERT(acme_b64url_decode(v[i].good, strlen(v[i].good), out, sizeof(out)) > 0);
    }
    /* cap one short */
    CU_ASSERT_EQUAL(acme_b64url_decode("Zm9vYmFy", 8, out, 5), -1);
    CU_ASSERT_EQUAL(acme_b64url_decode("Zm9vYmFy", 8, out, 6), 6);
}

/* ------------------------------------------------------------- JWK import */

static void test_jwk_import_types(void)
{
    static const struct {
        int k;
        acme_jws_alg fam;
        const char *kty;
        size_t members;
    } v[] = {
        {K_P256, ACME_JWS_ALG_ES256, "EC", 4},     {K_P384, ACME_JWS_ALG_ES384, "EC", 4},
        {K_RSA2048, ACME_JWS_ALG_RS256, "RSA", 3}, {K_RSA4096, ACME_JWS_ALG_RS256, "RSA", 3},
        {K_RSA_E3, ACME_JWS_ALG_RS256, "RSA", 3},  {K_ED25519, ACME_JWS_ALG_EDDSA, "OKP", 3},
    };
    for (size_t i = 0; i < CF_ARRAY_LEN(v); i++) {
        json_t *jwk = jwk_of(v[i].k);
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(jwk, "kty")), v[i].kty);
        CU_ASSERT_EQUAL(json_object_size(jwk), v[i].members);
        EVP_PKEY *k = NULL;
        acme_jws_alg fam = ACME_JWS_ALG_NONE;
        acme_jws_err e = ACME_JWS_E__MAX;
        CU_ASSERT_EQUAL(acme_jwk_import(jwk, &k, &fam, &e, msg, sizeof(msg)), 0);
        CU_ASSERT_EQUAL(e, ACME_JWS_OK);
        CU_ASSERT_EQUAL(fam, v[i].fam);
        CU_ASSERT_EQUAL(EVP_PKEY_eq(k, keys[v[i].k]), 1);
        EVP_PKEY_free(k);
        /* Members a JWK may carry besides the key are tolerated. */
        CU_ASSERT_FATAL(json_object_set_new(jwk, "kid", json_string("k1")) == 0);
        CU_ASSERT_FATAL(json_object_set_new(jwk, "use", json_string("sig")) == 0);
        CU_ASSERT_FATAL(json_object_set_new(jwk, "alg", json_string("whatever")) == 0);
        CU_ASSERT_FATAL(json_object_set_new(jwk, "key_ops", json_pack("[s]", "verify")) == 0);
        CU_ASSERT_FATAL(json_object_set_new(jwk, "x5c", json_array()) == 0);
        CU_ASSERT_EQUAL(import_err(jwk), ACME_JWS_OK);
        json_decref(jwk);
    }
    /* The output is set only on success. */
    EVP_PKEY *k = (EVP_PKEY *)&k;
    acme_jws_err e;
    json_t *bad = jwk_of(K_P521);
    CU_ASSERT_EQUAL(acme_jwk_import(bad, &k, NULL, &e, NULL, 0), -1);
    CU_ASSERT(k == (EVP_PKEY *)&k);
    CU_ASSERT_EQUAL(e, ACME_JWS_E_BAD_KEY);
    CU_ASSERT_EQUAL(acme_jwk_import(bad, NULL, NULL, &e, msg, sizeof(msg)), -1);
    CU_ASSERT_EQUAL(e, ACME_JWS_E_INTERNAL);
    json_decref(bad);
}

/* Sign with the key, parse, check, import the header's jwk, verify. */
static void test_jwk_round_trip_verify(void)
{
    static const int ks[] = {K_P256, K_P384, K_RSA2048, K_RSA4096, K_RSA_E3, K_ED25519};
    for (size_t i = 0; i < CF_ARRAY_LEN(ks); i++) {
        json_t *hdr = json_pack("{s:s, s:s, s:o}", "nonce", "bm9uY2UtMQ", "url",
                                "https://acme.example/new-account", "jwk", jwk_of(ks[i]));
        char *body = acme_jws_sign(keys[ks[i]], hdr, (const uint8_t *)"{}", 2);
        CU_ASSERT_FATAL(body != NULL);
        acme_jws j;
        acme_jws_err e;
        EVP_PKEY *k = NULL;
        acme_jws_alg fam = ACME_JWS_ALG_NONE;
        CU_ASSERT_FATAL(parse(body, &j) == ACME_JWS_OK);
        CU_ASSERT_EQUAL(acme_jws_check_acme(&j, 1, &e, msg, sizeof(msg)), 0);
        CU_ASSERT_EQUAL(e, ACME_JWS_OK);
        CU_ASSERT_FATAL(j.jwk != NULL);
        CU_ASSERT_EQUAL_FATAL(acme_jwk_import(j.jwk, &k, &fam, &e, msg, sizeof(msg)), 0);
        CU_ASSERT_EQUAL(fam, j.alg);
        CU_ASSERT_EQUAL(acme_jws_verify(&j, k, &e, msg, sizeof(msg)), 0);
        CU_ASSERT_EQUAL(e, ACME_JWS_OK);
        /* The thumbprint of the JWK sent is the key's. */
        char t1[44], t2[44];
        json_t *again = acme_jwk_from_pkey(k);
        CU_ASSERT_FATAL(again != NULL);
        CU_ASSERT_EQUAL(acme_jwk_thumbprint(j.jwk, t1), 0);
        CU_ASSERT_EQUAL(acme_jwk_thumbprint(again, t2), 0);
        CU_ASSERT_STRING_EQUAL(t1, t2);
        json_decref(again);
        EVP_PKEY_free(k);
        acme_jws_free(&j);
        free(body);
        json_decref(hdr);
    }
}

static void test_jwk_wrong_curves_and_types(void)
{
    json_t *j;
    j = jwk_of(K_P521);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "crv")), "P-521");
    CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
    MSG_HAS("P-521");
    json_decref(j);
    j = jwk_of(K_SECP256K1);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "crv")), "secp256k1");
    CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
    MSG_HAS("secp256k1");
    json_decref(j);
    j = jwk_of(K_ED448);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "crv")), "Ed448");
    CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
    MSG_HAS("Ed448");
    json_decref(j);

    /* X25519 is an OKP key but no signing key. */
    j = jwk_of(K_ED25519);
    json_object_set_new(j, "crv", json_string("X25519"));
    CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
    MSG_HAS("X25519");
    json_decref(j);

    /* Names are case-sensitive and exact. */
    static const char *const crvs[] = {"p-256", "P-256 ", "P256", "secp256r1", "prime256v1", ""};
    for (size_t i = 0; i < CF_ARRAY_LEN(crvs); i++) {
        j = jwk_of(K_P256);
        json_object_set_new(j, "crv", json_string(crvs[i]));
        CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
        MSG_HAS("is not accepted");
        json_decref(j);
    }
    static const char *const ktys[] = {"ec", "rsa", "oct", "EC ", ""};
    for (size_t i = 0; i < CF_ARRAY_LEN(ktys); i++) {
        j = jwk_of(K_P256);
        json_object_set_new(j, "kty", json_string(ktys[i]));
        CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
        MSG_HAS("kty");
        json_decref(j);
    }
    /* P-256 coordinates labelled P-384: the size is wrong for the curve. */
    j = jwk_of(K_P256);
    json_object_set_new(j, "crv", json_string("P-384"));
    CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
    MSG_HAS("exactly 48");
    json_decref(j);
    /* Missing members. */
    static const struct {
        int k;
        const char *member;
    } miss[] = {{K_P256, "kty"},  {K_P256, "crv"},  {K_P256, "x"},      {K_P256, "y"},
                {K_RSA2048, "n"}, {K_RSA2048, "e"}, {K_ED25519, "crv"}, {K_ED25519, "x"}};
    for (size_t i = 0; i < CF_ARRAY_LEN(miss); i++) {
        j = jwk_of(miss[i].k);
        CU_ASSERT_FATAL(json_object_del(j, miss[i].member) == 0);
        CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
        MSG_HAS("has no");
        json_decref(j);
    }
}

static void test_jwk_bad_points(void)
{
    uint8_t x[64], y[64];
    json_t *j;
    acme_jws_err e;

    /* (x, y) not on the curve: P-256 and P-384, y's last bit flipped. */
    static const int ecs[] = {K_P256, K_P384};
    for (size_t i = 0; i < 2; i++) {
        j = jwk_of(ecs[i]);
        size_t yl = get_b64(j, "y", y, sizeof(y));
        y[yl - 1] ^= 1;
        set_b64(j, "y", y, yl);
        CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
        MSG_HAS("not a point");
        y[yl - 1] ^= 1;
        set_b64(j, "y", y, yl);
        CU_ASSERT_EQUAL(import_err(j), ACME_JWS_OK);
        json_decref(j);
    }
    j = jwk_of(K_P256);
    size_t xl = get_b64(j, "x", x, sizeof(x));
    size_t yl = get_b64(j, "y", y, sizeof(y));
    CU_ASSERT_FATAL(xl == 32 && yl == 32);
    /* Short x (31 octets), long x (33), short y. */
    set_b64(j, "x", x + 1, 31);
    CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
    MSG_HAS("exactly 32");
    uint8_t x33[33] = {0};
    memcpy(x33 + 1, x, 32);
    set_b64(j, "x", x33, 33);
    CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
    MSG_HAS("exactly 32");
    set_b64(j, "x", x, 32);
    set_b64(j, "y", y, 31);
    CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
    MSG_HAS("exactly 32");
    set_b64(j, "y", y, 32);
    CU_ASSERT_EQUAL(import_err(j), ACME_JWS_OK);
    /* x >= p, and the point (0, 0). */
    uint8_t ff[32], zero[32] = {0};
    memset(ff, 0xff, sizeof(ff));
    set_b64(j, "x", ff, 32);
    CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
    MSG_HAS("not a point");
    set_b64(j, "x", zero, 32);
    set_b64(j, "y", zero, 32);
    CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
    MSG_HAS("not a point");
    set_b64(j, "x", x, 32);
    set_b64(j, "y", y, 32);
    /* Encodings: padding, '+', non-zero trailing bits (the last character
     * of 43 carries 4 bits of x and 2 that must be zero). */
    char *xs = b64(x, 32), buf[64];
    snprintf(buf, sizeof(buf), "%s=", xs);
    json_object_set_new(j, "x", json_string(buf));
    CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
    MSG_HAS("base64url");
    snprintf(buf, sizeof(buf), "+%s", xs + 1);
    json_object_set_new(j, "x", json_string(buf));
    CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
    MSG_HAS("base64url");
    snprintf(buf, sizeof(buf), "%s", xs);
    const char *al = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    int v = (int)(strchr(al, buf[42]) - al);
    buf[42] = al[v | 1];
    json_object_set_new(j, "x", json_string(buf));
    CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
    MSG_HAS("base64url");
    json_object_set_new(j, "x", json_string(xs));
    CU_ASSERT_EQUAL(import_err(j), ACME_JWS_OK);
    free(xs);
    json_decref(j);

    /* Ed25519: exactly 32 octets. */
    j = jwk_of(K_ED25519);
    xl = get_b64(j, "x", x, sizeof(x));
    CU_ASSERT_FATAL(xl == 32);
    set_b64(j, "x", x, 31);
    CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
    MSG_HAS("exactly 32");
    x[32] = 0;
    set_b64(j, "x", x, 33);
    CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
    MSG_HAS("exactly 32");
    json_decref(j);
    (void)e;
}

/* A synthetic RSA JWK: n of `bits` bits (top bit set, odd), e as given. */
static json_t *rsa_jwk(size_t bits, const uint8_t *e, size_t el)
{
    uint8_t n[1100];
    size_t nl = (bits + 7) / 8;
    CU_ASSERT_FATAL(nl <= sizeof(n) && RAND_bytes(n, (int)nl) == 1);
    unsigned top = (unsigned)((bits - 1) % 8);
    n[0] &= (uint8_t)((1u << (top + 1)) - 1);
    n[0] |= (uint8_t)(1u << top);
    n[nl - 1] |= 1;
    json_t *j = json_pack("{s:s}", "kty", "RSA");
    set_b64(j, "n", n, nl);
    set_b64(j, "e", e, el);
    return j;
}

static void test_jwk_rsa_limits(void)
{
    static const uint8_t f4[] = {1, 0, 1};
    json_t *j = jwk_of(K_RSA1024);
    CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
    MSG_HAS("1024 bits");
    json_decref(j);

    static const struct {
        size_t bits;
        acme_jws_err want;
    } sizes[] = {{2047, ACME_JWS_E_BAD_KEY},
                 {2048, ACME_JWS_OK},
                 {3072, ACME_JWS_OK},
                 {8192, ACME_JWS_OK},
                 {8193, ACME_JWS_E_BAD_KEY}};
    for (size_t i = 0; i < CF_ARRAY_LEN(sizes); i++) {
        j = rsa_jwk(sizes[i].bits, f4, 3);
        CU_ASSERT_EQUAL(import_err(j), sizes[i].want);
        if (sizes[i].want != ACME_JWS_OK)
            MSG_HAS("bits");
        json_decref(j);
    }
    /* n even; n with a leading zero octet (the same number, two encodings). */
    j = rsa_jwk(2048, f4, 3);
    uint8_t n[300];
    size_t nl = get_b64(j, "n", n + 1, sizeof(n) - 1);
    n[nl] &= 0xfe;
    set_b64(j, "n", n + 1, nl);
    CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
    MSG_HAS("even");
    n[nl] |= 1;
    n[0] = 0;
    set_b64(j, "n", n, nl + 1);
    CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
    MSG_HAS("leading zero");
    set_b64(j, "n", n + 1, nl);
    CU_ASSERT_EQUAL(import_err(j), ACME_JWS_OK);
    json_decref(j);

    /* e: odd and > 1, minimal, at most 64 bits. */
    static const struct {
        uint8_t e[10];
        size_t el;
        acme_jws_err want;
        const char *why;
    } es[] = {
        {{1, 0, 1}, 3, ACME_JWS_OK, NULL},
        {{3}, 1, ACME_JWS_OK, NULL},
        {{1, 0, 0}, 3, ACME_JWS_E_BAD_KEY, "odd"}, /* 65536: even */
        {{2}, 1, ACME_JWS_E_BAD_KEY, "odd"},
        {{1}, 1, ACME_JWS_E_BAD_KEY, "odd"},
        {{0}, 1, ACME_JWS_E_BAD_KEY, "leading zero"},
        {{0, 1, 0, 1}, 4, ACME_JWS_E_BAD_KEY, "leading zero"},
        {{1, 0, 0, 0, 0, 0, 0, 1}, 8, ACME_JWS_OK, NULL},
        {{1, 0, 0, 0, 0, 0, 0, 0, 1}, 9, ACME_JWS_E_BAD_KEY, "octets"},
        {{0}, 0, ACME_JWS_E_BAD_KEY, "octets"}, /* "e": "" */
    };
    for (size_t i = 0; i < CF_ARRAY_LEN(es); i++) {
        j = rsa_jwk(2048, es[i].e, es[i].el);
        CU_ASSERT_EQUAL(import_err(j), es[i].want);
        if (es[i].why != NULL)
            MSG_HAS(es[i].why);
        json_decref(j);
    }
}

static void test_jwk_private_members(void)
{
    static const char *const priv[] = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"};
    static const int ks[] = {K_P256, K_RSA2048, K_ED25519};
    for (size_t k = 0; k < CF_ARRAY_LEN(ks); k++)
        for (size_t i = 0; i < CF_ARRAY_LEN(priv); i++) {
            json_t *j = jwk_of(ks[k]);
            CU_ASSERT_EQUAL(import_err(j), ACME_JWS_OK);
            json_object_set_new(j, priv[i], json_string("AQAB"));
            CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
            char want[32];
            snprintf(want, sizeof(want), "\"%s\"", priv[i]);
            MSG_HAS(want);
            json_decref(j);
        }
    /* A symmetric JWK (RFC 7515 A.1's) is refused for its "k". */
    json_t *oct = json_pack("{s:s, s:s}", "kty", "oct", "k", JWS_RFC7515_A1_K);
    CU_ASSERT_EQUAL(import_err(oct), ACME_JWS_E_BAD_KEY);
    MSG_HAS("private");
    json_decref(oct);
}

static void test_jwk_member_types(void)
{
    static const struct {
        int k;
        const char *member;
    } v[] = {{K_P256, "kty"},  {K_P256, "crv"},  {K_P256, "x"},      {K_P256, "y"},
             {K_RSA2048, "n"}, {K_RSA2048, "e"}, {K_ED25519, "crv"}, {K_ED25519, "x"}};
    json_t *(*const makers[])(void) = {json_null, json_true, json_object, json_array};
    for (size_t i = 0; i < CF_ARRAY_LEN(v); i++) {
        for (size_t m = 0; m < CF_ARRAY_LEN(makers) + 1; m++) {
            json_t *j = jwk_of(v[i].k);
            json_object_set_new(j, v[i].member,
                                m < CF_ARRAY_LEN(makers) ? makers[m]() : json_integer(65537));
            CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
            MSG_HAS("is not a string");
            json_decref(j);
        }
    }
    /* The JWK itself must be an object. */
    json_t *arr = json_array(), *str = json_string("{}");
    CU_ASSERT_EQUAL(import_err(arr), ACME_JWS_E_BAD_KEY);
    CU_ASSERT_EQUAL(import_err(str), ACME_JWS_E_BAD_KEY);
    CU_ASSERT_EQUAL(import_err(NULL), ACME_JWS_E_BAD_KEY);
    json_decref(arr);
    json_decref(str);
    /* A string with a NUL in it (only a program can make one). */
    json_t *j = jwk_of(K_P256);
    json_object_set_new(j, "kty", json_stringn("EC\0x", 4));
    CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
    json_decref(j);
}

/* ------------------------------------------------------------- thumbprints */

static void test_thumbprint(void)
{
    char t[44];
    /* RFC 7638 §3.1, with its "alg" and "kid" (not part of the hash). */
    json_t *rsa = json_pack(
        "{s:s, s:s, s:s, s:s, s:s}", "kty", "RSA", "n",
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_"
        "BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_"
        "FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-"
        "bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e", "AQAB", "alg", "RS256", "kid", "2011-04-29");
    CU_ASSERT_FATAL(rsa != NULL);
    CU_ASSERT_EQUAL(acme_jwk_thumbprint(rsa, t), 0);
    CU_ASSERT_STRING_EQUAL(t, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    CU_ASSERT_EQUAL(import_err(rsa), ACME_JWS_OK);
    json_decref(rsa);

    /* RFC 8037 A.3. */
    json_t *ed = json_pack("{s:s, s:s, s:s}", "kty", "OKP", "crv", "Ed25519", "x",
                           "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    CU_ASSERT_EQUAL(acme_jwk_thumbprint(ed, t), 0);
    CU_ASSERT_STRING_EQUAL(t, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    json_decref(ed);

    /* EC: against SHA-256 of the canonical text built here; member order
     * and extra members do not matter. */
    json_t *ec = jwk_of(K_P256);
    char canon[256];
    snprintf(canon, sizeof(canon), "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}",
             json_string_value(json_object_get(ec, "x")),
             json_string_value(json_object_get(ec, "y")));
    uint8_t h[32];
    unsigned hl;
    CU_ASSERT_FATAL(EVP_Digest(canon, strlen(canon), h, &hl, EVP_sha256(), NULL) == 1);
    char *want = b64(h, 32);
    CU_ASSERT_EQUAL(acme_jwk_thumbprint(ec, t), 0);
    CU_ASSERT_STRING_EQUAL(t, want);
    json_t *shuffled = json_pack(
        "{s:s, s:s, s:s, s:s, s:s}", "y", json_string_value(json_object_get(ec, "y")), "use", "sig",
        "x", json_string_value(json_object_get(ec, "x")), "kty", "EC", "crv", "P-256");
    CU_ASSERT_EQUAL(acme_jwk_thumbprint(shuffled, t), 0);
    CU_ASSERT_STRING_EQUAL(t, want);
    /* Another key, another thumbprint. */
    json_t *other = jwk_of(K_P256_B);
    CU_ASSERT_EQUAL(acme_jwk_thumbprint(other, t), 0);
    CU_ASSERT_STRING_NOT_EQUAL(t, want);
    free(want);
    json_decref(other);
    json_decref(shuffled);

    /* Refused: no kty, unknown kty, a required member missing, not a
     * string, empty, or with a character that would need JSON escaping. */
    json_t *bad = json_deep_copy(ec);
    json_object_del(bad, "kty");
    CU_ASSERT_EQUAL(acme_jwk_thumbprint(bad, t), -1);
    json_object_set_new(bad, "kty", json_string("oct"));
    CU_ASSERT_EQUAL(acme_jwk_thumbprint(bad, t), -1);
    json_object_set_new(bad, "kty", json_string("EC"));
    CU_ASSERT_EQUAL(acme_jwk_thumbprint(bad, t), 0);
    json_object_del(bad, "y");
    CU_ASSERT_EQUAL(acme_jwk_thumbprint(bad, t), -1);
    json_object_set_new(bad, "y", json_integer(1));
    CU_ASSERT_EQUAL(acme_jwk_thumbprint(bad, t), -1);
    json_object_set_new(bad, "y", json_string(""));
    CU_ASSERT_EQUAL(acme_jwk_thumbprint(bad, t), -1);
    json_object_set_new(bad, "y", json_string("a\"b"));
    CU_ASSERT_EQUAL(acme_jwk_thumbprint(bad, t), -1);
    CU_ASSERT_EQUAL(acme_jwk_thumbprint(NULL, t), -1);
    json_decref(bad);
    json_decref(ec);
}

/* ------------------------------------------------------------- parse */

static void test_parse_refusals(void)
{
    static const uint8_t sig[64];
    char *s64 = b64(sig, 64), *p64 = b64s("{\"alg\":\"ES256\"}"), *y64 = b64s("{}");
    char buf[4096];
    typedef struct pcase {
        const char *what;
        char *body;
        acme_jws_err want;
        const char *why; /* a word of the message, where the code is shared */
    } pcase;
    pcase v[96];
    size_t n = 0;
#define RAW(w, b, e)                                                                               \
    v[n++] = (pcase)                                                                               \
    {                                                                                              \
        (w), strdup(b), (e), NULL                                                                  \
    }
#define FMT(w, e, ...)                                                                             \
    do {                                                                                           \
        snprintf(buf, sizeof(buf), __VA_ARGS__);                                                   \
        RAW(w, buf, e);                                                                            \
    } while (0)
#define HDR(w, h, e)                                                                               \
    v[n++] = (pcase)                                                                               \
    {                                                                                              \
        (w), body_of((h), "{}", sig, 64), (e), NULL                                                \
    }
#define WHY(s) v[n - 1].why = (s)
    /* the body */
    RAW("not JSON", "{\"protected\":", ACME_JWS_E_MALFORMED);
    RAW("empty", "", ACME_JWS_E_MALFORMED);
    RAW("array", "[]", ACME_JWS_E_MALFORMED);
    RAW("string", "\"x\"", ACME_JWS_E_MALFORMED);
    RAW("number", "1", ACME_JWS_E_MALFORMED);
    RAW("null", "null", ACME_JWS_E_MALFORMED);
    FMT("trailing text", ACME_JWS_E_MALFORMED,
        "{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":\"%s\"} x", p64, y64, s64);
    FMT("no protected", ACME_JWS_E_MALFORMED, "{\"payload\":\"%s\",\"signature\":\"%s\"}", y64,
        s64);
    FMT("no payload", ACME_JWS_E_MALFORMED, "{\"protected\":\"%s\",\"signature\":\"%s\"}", p64,
        s64);
    FMT("no signature", ACME_JWS_E_MALFORMED, "{\"protected\":\"%s\",\"payload\":\"%s\"}", p64,
        y64);
    FMT("extra member", ACME_JWS_E_MALFORMED,
        "{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":\"%s\",\"foo\":1}", p64, y64, s64);
    WHY("other than");
    FMT("unprotected header", ACME_JWS_E_MALFORMED,
        "{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":\"%s\",\"header\":{}}", p64, y64,
        s64);
    WHY("unprotected header");
    FMT("general serialization", ACME_JWS_E_MALFORMED,
        "{\"payload\":\"%s\",\"signatures\":[{\"protected\":\"%s\",\"signature\":\"%s\"}]}", y64,
        p64, s64);
    WHY("one signature");
    FMT("duplicate protected", ACME_JWS_E_MALFORMED,
        "{\"protected\":\"%s\",\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":\"%s\"}", p64,
        p64, y64, s64);
    FMT("protected a number", ACME_JWS_E_MALFORMED,
        "{\"protected\":1,\"payload\":\"%s\",\"signature\":\"%s\"}", y64, s64);
    FMT("payload null", ACME_JWS_E_MALFORMED,
        "{\"protected\":\"%s\",\"payload\":null,\"signature\":\"%s\"}", p64, s64);
    FMT("payload an object", ACME_JWS_E_MALFORMED,
        "{\"protected\":\"%s\",\"payload\":{},\"signature\":\"%s\"}", p64, s64);
    FMT("signature an array", ACME_JWS_E_MALFORMED,
        "{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":[]}", p64, y64);
    /* base64url in each part */
    static const char *const bad64[] = {"%s=", "%s==", "+%s", "/%s", "%s.", "%s*", " %s", "%s\\n"};
    for (size_t i = 0; i < CF_ARRAY_LEN(bad64); i++) {
        char part[512];
        snprintf(part, sizeof(part), bad64[i], p64);
        FMT("protected base64url", ACME_JWS_E_MALFORMED,
            "{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":\"%s\"}", part, y64, s64);
        snprintf(part, sizeof(part), bad64[i], "e30" /* {} */);
        FMT("payload base64url", ACME_JWS_E_MALFORMED,
            "{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":\"%s\"}", p64, part, s64);
        snprintf(part, sizeof(part), bad64[i], s64);
        FMT("signature base64url", ACME_JWS_E_MALFORMED,
            "{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":\"%s\"}", p64, y64, part);
    }
    FMT("payload trailing bits", ACME_JWS_E_MALFORMED,
        "{\"protected\":\"%s\",\"payload\":\"e31\",\"signature\":\"%s\"}", p64, s64);
    /* the protected header */
    HDR("protected not JSON", "not json", ACME_JWS_E_MALFORMED);
    HDR("protected empty", "", ACME_JWS_E_MALFORMED);
    HDR("protected an array", "[\"ES256\"]", ACME_JWS_E_MALFORMED);
    HDR("protected a string", "\"ES256\"", ACME_JWS_E_MALFORMED);
    HDR("protected trailing text", "{\"alg\":\"ES256\"}x", ACME_JWS_E_MALFORMED);
    HDR("alg missing", "{\"url\":\"u\",\"nonce\":\"bm9uY2U\",\"kid\":\"k\"}", ACME_JWS_E_BAD_ALG);
    HDR("alg a number", "{\"alg\":256}", ACME_JWS_E_MALFORMED);
    HDR("alg null", "{\"alg\":null}", ACME_JWS_E_MALFORMED);
    HDR("duplicate alg", "{\"alg\":\"ES256\",\"alg\":\"none\"}", ACME_JWS_E_MALFORMED);
    HDR("duplicate url", "{\"alg\":\"ES256\",\"url\":\"a\",\"url\":\"b\"}", ACME_JWS_E_MALFORMED);
    HDR("crit", "{\"alg\":\"ES256\",\"crit\":[\"b64\"],\"b64\":false}", ACME_JWS_E_MALFORMED);
    WHY("crit");
    HDR("crit empty", "{\"alg\":\"ES256\",\"crit\":[]}", ACME_JWS_E_MALFORMED);
    HDR("b64", "{\"alg\":\"ES256\",\"b64\":true}", ACME_JWS_E_MALFORMED);
    WHY("b64");
    HDR("nonce a number", "{\"alg\":\"ES256\",\"nonce\":1}", ACME_JWS_E_MALFORMED);
    HDR("url an array", "{\"alg\":\"ES256\",\"url\":[\"u\"]}", ACME_JWS_E_MALFORMED);
    HDR("kid an object", "{\"alg\":\"ES256\",\"kid\":{}}", ACME_JWS_E_MALFORMED);
    HDR("jwk a string", "{\"alg\":\"ES256\",\"jwk\":\"{}\"}", ACME_JWS_E_MALFORMED);
    HDR("jwk an array", "{\"alg\":\"ES256\",\"jwk\":[]}", ACME_JWS_E_MALFORMED);
    HDR("NUL in a string", "{\"alg\":\"ES256\",\"url\":\"a\\u0000b\"}", ACME_JWS_E_MALFORMED);
#undef RAW
#undef FMT
#undef HDR
#undef WHY
    CU_ASSERT_FATAL(n <= CF_ARRAY_LEN(v));
    for (size_t i = 0; i < n; i++) {
        acme_jws j;
        memset(&j, 0x5a, sizeof(j));
        acme_jws_err e = parse(v[i].body, &j);
        if (e != v[i].want) {
            fprintf(stderr, "\n  %s: got %d, want %d (%s)\n", v[i].what, e, v[i].want, msg);
            CU_FAIL("parse refusal with the wrong code");
        } else if (v[i].why != NULL && strstr(msg, v[i].why) == NULL) {
            fprintf(stderr, "\n  %s: message \"%s\" lacks \"%s\"\n", v[i].what, msg, v[i].why);
            CU_FAIL("parse refusal for another reason");
        }
        /* *out is zeroed on failure, so acme_jws_free is safe. */
        CU_ASSERT(j.protected_hdr == NULL && j.payload == NULL && j.sig == NULL &&
                  j.signing_input == NULL && j.jwk == NULL && j.nonce == NULL);
        acme_jws_free(&j);
        free(v[i].body);
    }
    /* The well-formed twin of the cases above parses. */
    char *good = body3(p64, y64, s64);
    CU_ASSERT_EQUAL(parse_err(good), ACME_JWS_OK);
    free(good);
    /* Arguments. */
    acme_jws j;
    acme_jws_err e;
    CU_ASSERT_EQUAL(acme_jws_parse(NULL, 5, &j, &e, msg, sizeof(msg)), -1);
    CU_ASSERT_EQUAL(e, ACME_JWS_E_INTERNAL);
    free(s64);
    free(p64);
    free(y64);
}

static void test_parse_fields(void)
{
    char *body =
        signed_body(keys[K_P256], EVP_sha256(), 32, "{\"alg\":\"ES256\"," HDR_KID "}", PAYLOAD);
    acme_jws j;
    CU_ASSERT_FATAL(parse(body, &j) == ACME_JWS_OK);
    CU_ASSERT_EQUAL(j.alg, ACME_JWS_ALG_ES256);
    CU_ASSERT_STRING_EQUAL(j.nonce, "bm9uY2UtMQ");
    CU_ASSERT_STRING_EQUAL(j.url, "https://acme.example/new-order");
    CU_ASSERT_STRING_EQUAL(j.kid, "https://acme.example/acct/1");
    CU_ASSERT_PTR_NULL(j.jwk);
    CU_ASSERT(json_is_object(j.protected_hdr));
    CU_ASSERT_EQUAL(j.payload_len, strlen(PAYLOAD));
    CU_ASSERT_STRING_EQUAL((const char *)j.payload, PAYLOAD);
    CU_ASSERT_EQUAL(j.sig_len, 64);
    json_t *o = json_loads(body, 0, NULL);
    snprintf(msg, sizeof(msg), "%s.%s", json_string_value(json_object_get(o, "protected")),
             json_string_value(json_object_get(o, "payload")));
    CU_ASSERT_STRING_EQUAL(j.signing_input, msg);
    CU_ASSERT_EQUAL(j.signing_input_len, strlen(msg));
    json_decref(o);
    acme_jws_free(&j);
    CU_ASSERT_PTR_NULL(j.protected_hdr);
    acme_jws_free(&j); /* twice is fine */
    acme_jws_free(NULL);
    free(body);

    /* POST-as-GET: "payload": "" (RFC 8555 §6.3). */
    static const uint8_t sig[64];
    body = body_of("{\"alg\":\"ES256\"," HDR_KID "}", "", sig, 64);
    CU_ASSERT_FATAL(parse(body, &j) == ACME_JWS_OK);
    CU_ASSERT_EQUAL(j.payload_len, 0);
    CU_ASSERT(j.payload != NULL && j.payload[0] == 0);
    CU_ASSERT(j.signing_input[j.signing_input_len - 1] == '.');
    acme_jws_free(&j);
    free(body);

    /* An alg outside the enum parses, as NONE; the checks refuse it. */
    static const char *const algs[] = {"none", "PS256", "ES512", "HS1", "es256"};
    for (size_t i = 0; i < CF_ARRAY_LEN(algs); i++) {
        snprintf(msg, sizeof(msg), "{\"alg\":\"%s\"}", algs[i]);
        body = body_of(msg, "{}", sig, 0);
        CU_ASSERT_FATAL(parse(body, &j) == ACME_JWS_OK);
        CU_ASSERT_EQUAL(j.alg, ACME_JWS_ALG_NONE);
        CU_ASSERT_EQUAL(j.sig_len, 0);
        acme_jws_free(&j);
        free(body);
    }
    /* Unknown header members other than crit/b64 are tolerated. */
    body = body_of("{\"alg\":\"ES256\",\"typ\":\"JOSE\",\"x-other\":[1,2]," HDR_KID "}", "{}", sig,
                   64);
    CU_ASSERT_EQUAL(parse_err(body), ACME_JWS_OK);
    free(body);
}

/* ------------------------------------------------------------- RFC 8555 rules */

static void test_check_acme(void)
{
    json_t *jwk = jwk_of(K_P256);
    char *jwks = json_dumps(jwk, JSON_COMPACT), h[1024];
    json_decref(jwk);
#define H(...) (snprintf(h, sizeof(h), __VA_ARGS__), h)
    const char *N = "\"nonce\":\"bm9uY2UtMQ\"", *U = "\"url\":\"https://acme.example/x\"",
               *K = "\"kid\":\"https://acme.example/acct/1\"";
    /* accepted */
    CU_ASSERT_EQUAL(check_err(H("{\"alg\":\"ES256\",%s,%s,\"jwk\":%s}", N, U, jwks), 1),
                    ACME_JWS_OK);
    CU_ASSERT_EQUAL(check_err(H("{\"alg\":\"ES256\",%s,%s,%s}", N, U, K), 1), ACME_JWS_OK);
    CU_ASSERT_EQUAL(check_err(H("{\"alg\":\"EdDSA\",%s,%s}", U, K), 0), ACME_JWS_OK);
    /* jwk and kid: both, neither */
    CU_ASSERT_EQUAL(check_err(H("{\"alg\":\"ES256\",%s,%s,%s,\"jwk\":%s}", N, U, K, jwks), 1),
                    ACME_JWS_E_MALFORMED);
    MSG_HAS("both");
    CU_ASSERT_EQUAL(check_err(H("{\"alg\":\"ES256\",%s,%s}", N, U), 1), ACME_JWS_E_MALFORMED);
    MSG_HAS("neither");
    /* url */
    CU_ASSERT_EQUAL(check_err(H("{\"alg\":\"ES256\",%s,%s}", N, K), 1), ACME_JWS_E_MALFORMED);
    MSG_HAS("\"url\"");
    /* nonce: missing, present where it must not be, not base64url */
    CU_ASSERT_EQUAL(check_err(H("{\"alg\":\"ES256\",%s,%s}", U, K), 1), ACME_JWS_E_MALFORMED);
    MSG_HAS("no \"nonce\"");
    CU_ASSERT_EQUAL(check_err(H("{\"alg\":\"ES256\",%s,%s,%s}", N, U, K), 0), ACME_JWS_E_MALFORMED);
    MSG_HAS("must not");
    static const char *const bad_nonces[] = {"", "bm9uY2U=", "a+b/", "bm9uY2UtM", "no nce"};
    for (size_t i = 0; i < CF_ARRAY_LEN(bad_nonces); i++) {
        CU_ASSERT_EQUAL(
            check_err(H("{\"alg\":\"ES256\",\"nonce\":\"%s\",%s,%s}", bad_nonces[i], U, K), 1),
            ACME_JWS_E_MALFORMED);
        MSG_HAS("base64url");
    }
    /* alg: none, MAC, unsupported */
    static const char *const bad_algs[] = {"none", "HS256", "HS512", "PS256", "ES512", "RS384"};
    for (size_t i = 0; i < CF_ARRAY_LEN(bad_algs); i++) {
        CU_ASSERT_EQUAL(check_err(H("{\"alg\":\"%s\",%s,%s,%s}", bad_algs[i], N, U, K), 1),
                        ACME_JWS_E_BAD_ALG);
        MSG_HAS(bad_algs[i]);
    }
    /* Arguments. */
    acme_jws_err e;
    CU_ASSERT_EQUAL(acme_jws_check_acme(NULL, 1, &e, msg, sizeof(msg)), -1);
    CU_ASSERT_EQUAL(e, ACME_JWS_E_INTERNAL);

    /* EAB's inner JWS (RFC 8555 §7.3.4). */
    CU_ASSERT_EQUAL(eab_check_err(H("{\"alg\":\"HS256\",\"kid\":\"eab-1\",%s}", U)), ACME_JWS_OK);
    CU_ASSERT_EQUAL(eab_check_err(H("{\"alg\":\"HS512\",\"kid\":\"eab-1\",%s}", U)), ACME_JWS_OK);
    CU_ASSERT_EQUAL(eab_check_err(H("{\"alg\":\"HS256\",\"kid\":\"eab-1\",%s,%s}", U, N)),
                    ACME_JWS_E_MALFORMED);
    MSG_HAS("nonce");
    CU_ASSERT_EQUAL(
        eab_check_err(H("{\"alg\":\"HS256\",\"kid\":\"eab-1\",%s,\"jwk\":%s}", U, jwks)),
        ACME_JWS_E_MALFORMED);
    MSG_HAS("jwk");
    CU_ASSERT_EQUAL(eab_check_err(H("{\"alg\":\"HS256\",%s}", U)), ACME_JWS_E_MALFORMED);
    MSG_HAS("kid");
    CU_ASSERT_EQUAL(eab_check_err("{\"alg\":\"HS256\",\"kid\":\"eab-1\"}"), ACME_JWS_E_MALFORMED);
    MSG_HAS("url");
    CU_ASSERT_EQUAL(eab_check_err(H("{\"alg\":\"ES256\",\"kid\":\"eab-1\",%s}", U)),
                    ACME_JWS_E_BAD_ALG);
    CU_ASSERT_EQUAL(eab_check_err(H("{\"alg\":\"none\",\"kid\":\"eab-1\",%s}", U)),
                    ACME_JWS_E_BAD_ALG);
#undef H
    free(jwks);
}

/* ------------------------------------------------------------- verify */

typedef struct sigcase {
    int k;
    const char *alg;
    const EVP_MD *(*md)(void);
    size_t ec_sz;
} sigcase;

static const sigcase GOOD[] = {
    {K_P256, "ES256", EVP_sha256, 32},   {K_P384, "ES384", EVP_sha384, 48},
    {K_RSA2048, "RS256", EVP_sha256, 0}, {K_RSA4096, "RS256", EVP_sha256, 0},
    {K_RSA_E3, "RS256", EVP_sha256, 0},  {K_ED25519, "EdDSA", NULL, 0},
};

static char *good_body(const sigcase *c, const char *payload)
{
    char h[512];
    snprintf(h, sizeof(h), "{\"alg\":\"%s\"," HDR_KID "}", c->alg);
    return signed_body(keys[c->k], c->md ? c->md() : NULL, c->ec_sz, h, payload);
}

static void test_verify_good(void)
{
    for (size_t i = 0; i < CF_ARRAY_LEN(GOOD); i++) {
        /* Signed here (independent r || s conversion) ... */
        char *b = good_body(&GOOD[i], PAYLOAD);
        CU_ASSERT_EQUAL(verify_err(b, keys[GOOD[i].k]), ACME_JWS_OK);
        free(b);
        b = good_body(&GOOD[i], ""); /* POST-as-GET */
        CU_ASSERT_EQUAL(verify_err(b, keys[GOOD[i].k]), ACME_JWS_OK);
        free(b);
        /* ... and by acme_jws_sign, verified with an imported key. */
        json_t *hdr = json_pack("{s:s, s:s, s:s}", "nonce", "bm9uY2UtMQ", "url", "u", "kid", "k");
        b = acme_jws_sign(keys[GOOD[i].k], hdr, (const uint8_t *)PAYLOAD, strlen(PAYLOAD));
        CU_ASSERT_FATAL(b != NULL);
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(hdr, "alg")), GOOD[i].alg);
        json_t *jwk = jwk_of(GOOD[i].k);
        EVP_PKEY *k = NULL;
        acme_jws_err e;
        CU_ASSERT_FATAL(acme_jwk_import(jwk, &k, NULL, &e, msg, sizeof(msg)) == 0);
        CU_ASSERT_EQUAL(verify_err(b, k), ACME_JWS_OK);
        EVP_PKEY_free(k);
        json_decref(jwk);
        json_decref(hdr);
        free(b);
        b = acme_jws_sign(keys[GOOD[i].k], (hdr = json_object()), NULL, 0);
        CU_ASSERT_FATAL(b != NULL);
        acme_jws j;
        CU_ASSERT_FATAL(parse(b, &j) == ACME_JWS_OK);
        CU_ASSERT_EQUAL(j.payload_len, 0);
        CU_ASSERT_EQUAL(acme_jws_verify(&j, keys[GOOD[i].k], &e, msg, sizeof(msg)), 0);
        acme_jws_free(&j);
        json_decref(hdr);
        free(b);
    }
    /* Keys acme_jws_sign does not sign with. */
    json_t *hdr = json_object();
    CU_ASSERT_PTR_NULL(acme_jws_sign(keys[K_P521], hdr, NULL, 0));
    CU_ASSERT_PTR_NULL(acme_jws_sign(keys[K_ED448], hdr, NULL, 0));
    CU_ASSERT_PTR_NULL(acme_jws_sign(NULL, hdr, NULL, 0));
    json_decref(hdr);
    CU_ASSERT_PTR_NULL(acme_jws_sign(keys[K_P256], NULL, NULL, 0));
}

static void test_verify_tampered(void)
{
    for (size_t i = 0; i < CF_ARRAY_LEN(GOOD); i++) {
        EVP_PKEY *k = keys[GOOD[i].k];
        char *b = good_body(&GOOD[i], PAYLOAD), *t;
        CU_ASSERT_EQUAL(verify_err(b, k), ACME_JWS_OK);
        /* another payload */
        char *y = b64s("{\"identifiers\":[{\"type\":\"dns\",\"value\":\"evil.example\"}]}");
        t = with_member(b, "payload", y);
        CU_ASSERT_EQUAL(verify_err(t, k), ACME_JWS_E_BAD_SIGNATURE);
        MSG_HAS("does not verify");
        free(t);
        free(y);
        t = with_member(b, "payload", "");
        CU_ASSERT_EQUAL(verify_err(t, k), ACME_JWS_E_BAD_SIGNATURE);
        free(t);
        /* another protected header, same alg */
        char h[512];
        snprintf(h, sizeof(h),
                 "{\"alg\":\"%s\",\"nonce\":\"bm9uY2UtMQ\",\"url\":\"https://acme.example/"
                 "revoke-cert\",\"kid\":\"https://acme.example/acct/1\"}",
                 GOOD[i].alg);
        char *p = b64s(h);
        t = with_member(b, "protected", p);
        CU_ASSERT_EQUAL(verify_err(t, k), ACME_JWS_E_BAD_SIGNATURE);
        MSG_HAS("does not verify");
        free(t);
        free(p);
        /* the signature: first bit, last bit, all zero */
        t = with_sig(b, sig_flip_first);
        CU_ASSERT_EQUAL(verify_err(t, k), ACME_JWS_E_BAD_SIGNATURE);
        free(t);
        t = with_sig(b, sig_flip_last);
        CU_ASSERT_EQUAL(verify_err(t, k), ACME_JWS_E_BAD_SIGNATURE);
        free(t);
        t = with_sig(b, sig_zero);
        CU_ASSERT_EQUAL(verify_err(t, k), ACME_JWS_E_BAD_SIGNATURE);
        free(t);
        t = with_sig(b, sig_empty);
        CU_ASSERT_EQUAL(verify_err(t, k), ACME_JWS_E_BAD_SIGNATURE);
        free(t);
        /* the right kind of key, not the signer's */
        EVP_PKEY *other = GOOD[i].k == K_P256      ? keys[K_P256_B]
                          : GOOD[i].k == K_ED25519 ? keys[K_ED25519_B]
                          : GOOD[i].k == K_RSA2048 ? keys[K_RSA_E3]
                          : GOOD[i].k == K_RSA_E3  ? keys[K_RSA2048]
                                                   : NULL;
        if (other != NULL)
            CU_ASSERT_EQUAL(verify_err(b, other), ACME_JWS_E_BAD_SIGNATURE);
        free(b);
    }
}

static void test_verify_ecdsa_encodings(void)
{
    for (size_t i = 0; i < 2; i++) {
        const sigcase *c = &GOOD[i]; /* ES256, ES384 */
        EVP_PKEY *k = keys[c->k];
        char *b = good_body(c, PAYLOAD), *t;
        CU_ASSERT_EQUAL(verify_err(b, k), ACME_JWS_OK);
        static void (*const changes[])(uint8_t *, size_t *) = {sig_drop_last, sig_add_zero,
                                                               sig_add_zero_front};
        for (size_t m = 0; m < CF_ARRAY_LEN(changes); m++) {
            t = with_sig(b, changes[m]);
            CU_ASSERT_EQUAL(verify_err(t, k), ACME_JWS_E_BAD_SIGNATURE);
            MSG_HAS("R || S");
            free(t);
        }
        /* r and s swapped: right length, wrong signature */
        t = with_sig(b, sig_swap_halves);
        CU_ASSERT_EQUAL(verify_err(t, k), ACME_JWS_E_BAD_SIGNATURE);
        MSG_HAS("does not verify");
        free(t);
        /* r = s = 0 */
        t = with_sig(b, sig_zero);
        CU_ASSERT_EQUAL(verify_err(t, k), ACME_JWS_E_BAD_SIGNATURE);
        free(t);
        free(b);
        /* The DER signature OpenSSL makes, over the right input: JWS
         * takes R || S only. */
        char h[512];
        snprintf(h, sizeof(h), "{\"alg\":\"%s\"," HDR_KID "}", c->alg);
        b = signed_body(k, c->md(), 0, h, PAYLOAD);
        CU_ASSERT_EQUAL(verify_err(b, k), ACME_JWS_E_BAD_SIGNATURE);
        MSG_HAS("R || S");
        free(b);
    }
}

static void test_verify_alg_fit(void)
{
    char *b;
    /* ES384 header, P-256 key, a real P-256 signature over SHA-384. */
    b = signed_body(keys[K_P256], EVP_sha384(), 32, "{\"alg\":\"ES384\"," HDR_KID "}", PAYLOAD);
    CU_ASSERT_EQUAL(verify_err(b, keys[K_P256]), ACME_JWS_E_BAD_KEY);
    MSG_HAS("does not fit");
    free(b);
    /* ES256 header, P-384 key. */
    b = signed_body(keys[K_P384], EVP_sha256(), 48, "{\"alg\":\"ES256\"," HDR_KID "}", PAYLOAD);
    CU_ASSERT_EQUAL(verify_err(b, keys[K_P384]), ACME_JWS_E_BAD_KEY);
    free(b);
    /* ES256 header, secp256k1 key with a real signature of the same shape. */
    b = signed_body(keys[K_SECP256K1], EVP_sha256(), 32, "{\"alg\":\"ES256\"," HDR_KID "}",
                    PAYLOAD);
    CU_ASSERT_EQUAL(verify_err(b, keys[K_SECP256K1]), ACME_JWS_E_BAD_KEY);
    free(b);
    /* RS256 header, EC key; ES256 header, RSA key; EdDSA header, EC key. */
    b = signed_body(keys[K_RSA2048], EVP_sha256(), 0, "{\"alg\":\"RS256\"," HDR_KID "}", PAYLOAD);
    CU_ASSERT_EQUAL(verify_err(b, keys[K_RSA2048]), ACME_JWS_OK);
    CU_ASSERT_EQUAL(verify_err(b, keys[K_P256]), ACME_JWS_E_BAD_KEY);
    CU_ASSERT_EQUAL(verify_err(b, keys[K_ED25519]), ACME_JWS_E_BAD_KEY);
    free(b);
    b = signed_body(keys[K_P256], EVP_sha256(), 32, "{\"alg\":\"ES256\"," HDR_KID "}", PAYLOAD);
    CU_ASSERT_EQUAL(verify_err(b, keys[K_RSA2048]), ACME_JWS_E_BAD_KEY);
    CU_ASSERT_EQUAL(verify_err(b, keys[K_ED25519]), ACME_JWS_E_BAD_KEY);
    free(b);
    b = signed_body(keys[K_ED25519], NULL, 0, "{\"alg\":\"EdDSA\"," HDR_KID "}", PAYLOAD);
    CU_ASSERT_EQUAL(verify_err(b, keys[K_P256]), ACME_JWS_E_BAD_KEY);
    CU_ASSERT_EQUAL(verify_err(b, keys[K_RSA2048]), ACME_JWS_E_BAD_KEY);
    free(b);
    /* EdDSA header, Ed448 key, a real Ed448 signature. */
    b = signed_body(keys[K_ED448], NULL, 0, "{\"alg\":\"EdDSA\"," HDR_KID "}", PAYLOAD);
    CU_ASSERT_EQUAL(verify_err(b, keys[K_ED448]), ACME_JWS_E_BAD_KEY);
    free(b);
    /* RS256 with a 1024-bit key (not through acme_jwk_import). */
    b = signed_body(keys[K_RSA1024], EVP_sha256(), 0, "{\"alg\":\"RS256\"," HDR_KID "}", PAYLOAD);
    CU_ASSERT_EQUAL(verify_err(b, keys[K_RSA1024]), ACME_JWS_E_BAD_KEY);
    MSG_HAS("1024 bits");
    free(b);
    /* RS256 signature one octet short / long (RFC 8017 §8.2.2). */
    b = signed_body(keys[K_RSA2048], EVP_sha256(), 0, "{\"alg\":\"RS256\"," HDR_KID "}", PAYLOAD);
    char *t = with_sig(b, sig_add_zero_front);
    CU_ASSERT_EQUAL(verify_err(t, keys[K_RSA2048]), ACME_JWS_E_BAD_SIGNATURE);
    MSG_HAS("octets");
    free(t);
    t = with_sig(b, sig_drop_last);
    CU_ASSERT_EQUAL(verify_err(t, keys[K_RSA2048]), ACME_JWS_E_BAD_SIGNATURE);
    free(t);
    free(b);
    /* alg no account algorithm: BAD_ALG before the key is looked at. */
    static const char *const algs[] = {"HS256", "none", "PS256", "ES512"};
    static const uint8_t zero[64];
    for (size_t i = 0; i < CF_ARRAY_LEN(algs); i++) {
        char h[256];
        snprintf(h, sizeof(h), "{\"alg\":\"%s\"," HDR_KID "}", algs[i]);
        b = body_of(h, PAYLOAD, zero, i == 1 ? 0 : 64);
        CU_ASSERT_EQUAL(verify_err(b, keys[K_P256]), ACME_JWS_E_BAD_ALG);
        MSG_HAS(algs[i]);
        free(b);
    }
    /* Arguments. */
    acme_jws_err e;
    CU_ASSERT_EQUAL(acme_jws_verify(NULL, keys[K_P256], &e, msg, sizeof(msg)), -1);
    CU_ASSERT_EQUAL(e, ACME_JWS_E_INTERNAL);
}

static void test_verify_eddsa(void)
{
    EVP_PKEY *k = keys[K_ED25519];
    char *b = signed_body(k, NULL, 0, "{\"alg\":\"EdDSA\"," HDR_KID "}", PAYLOAD), *t;
    CU_ASSERT_EQUAL(verify_err(b, k), ACME_JWS_OK);
    CU_ASSERT_EQUAL(verify_err(b, keys[K_ED25519_B]), ACME_JWS_E_BAD_SIGNATURE);
    static void (*const changes[])(uint8_t *, size_t *) = {
        sig_flip_first, sig_flip_last, sig_drop_last, sig_add_zero, sig_eddsa_big_s, sig_zero};
    for (size_t m = 0; m < CF_ARRAY_LEN(changes); m++) {
        t = with_sig(b, changes[m]);
        CU_ASSERT_EQUAL(verify_err(t, k), ACME_JWS_E_BAD_SIGNATURE);
        free(t);
    }
    free(b);
}

/* ------------------------------------------------------------- HMAC (EAB) */

static void test_hmac(void)
{
    uint8_t key[80];
    CU_ASSERT_FATAL(RAND_bytes(key, sizeof(key)) == 1);
    static const struct {
        acme_jws_alg alg;
        size_t keylen;
    } v[] = {{ACME_JWS_ALG_HS256, 32}, {ACME_JWS_ALG_HS384, 48}, {ACME_JWS_ALG_HS512, 64}};
    json_t *jwk = jwk_of(K_P256);
    char *jwks = json_dumps(jwk, JSON_COMPACT);
    for (size_t i = 0; i < CF_ARRAY_LEN(v); i++) {
        json_t *hdr = json_pack("{s:s, s:s}", "kid", "eab-1", "url", "https://acme.example/acct");
        char *b = acme_jws_sign_hmac(v[i].alg, key, v[i].keylen, hdr, (const uint8_t *)jwks,
                                     strlen(jwks));
        CU_ASSERT_FATAL(b != NULL);
        acme_jws j;
        acme_jws_err e;
        CU_ASSERT_FATAL(parse(b, &j) == ACME_JWS_OK);
        CU_ASSERT_EQUAL(j.alg, v[i].alg);
        CU_ASSERT_EQUAL(j.sig_len, v[i].keylen);
        CU_ASSERT_EQUAL(acme_jws_check_eab(&j, &e, msg, sizeof(msg)), 0);
        CU_ASSERT_EQUAL(acme_jws_verify_hmac(&j, key, v[i].keylen, &e, msg, sizeof(msg)), 0);
        CU_ASSERT_EQUAL(e, ACME_JWS_OK);
        CU_ASSERT_STRING_EQUAL((const char *)j.payload, jwks);
        /* a longer key is another key — unless the extra octet is zero:
         * HMAC pads a key with zeros to the block size (RFC 2104 §2), so
         * key || 00 is the same key (a random key made this fail 1 run in
         * ~85) */
        key[v[i].keylen] |= 1;
        CU_ASSERT_EQUAL(acme_jws_verify_hmac(&j, key, v[i].keylen + 1, &e, msg, sizeof(msg)), -1);
        CU_ASSERT_EQUAL(e, ACME_JWS_E_BAD_SIGNATURE);
        /* wrong key: one bit */
        key[3] ^= 4;
        CU_ASSERT_EQUAL(acme_jws_verify_hmac(&j, key, v[i].keylen, &e, msg, sizeof(msg)), -1);
        CU_ASSERT_EQUAL(e, ACME_JWS_E_BAD_SIGNATURE);
        MSG_HAS("does not verify");
        key[3] ^= 4;
        /* an account verifier refuses a MAC */
        CU_ASSERT_EQUAL(acme_jws_verify(&j, keys[K_P256], &e, msg, sizeof(msg)), -1);
        CU_ASSERT_EQUAL(e, ACME_JWS_E_BAD_ALG);
        acme_jws_free(&j);
        /* tampered payload; MAC cut short */
        char *y = b64s("{}"), *t = with_member(b, "payload", y);
        CU_ASSERT_FATAL(parse(t, &j) == ACME_JWS_OK);
        CU_ASSERT_EQUAL(acme_jws_verify_hmac(&j, key, v[i].keylen, &e, msg, sizeof(msg)), -1);
        CU_ASSERT_EQUAL(e, ACME_JWS_E_BAD_SIGNATURE);
        MSG_HAS("does not verify");
        acme_jws_free(&j);
        free(t);
        free(y);
        t = with_sig(b, sig_drop_last);
        CU_ASSERT_FATAL(parse(t, &j) == ACME_JWS_OK);
        CU_ASSERT_EQUAL(acme_jws_verify_hmac(&j, key, v[i].keylen, &e, msg, sizeof(msg)), -1);
        CU_ASSERT_EQUAL(e, ACME_JWS_E_BAD_SIGNATURE);
        MSG_HAS("octets");
        acme_jws_free(&j);
        free(t);
        /* every octet of the MAC counts: first and last bit */
        static void (*const flips[])(uint8_t *, size_t *) = {sig_flip_first, sig_flip_last};
        for (size_t f = 0; f < CF_ARRAY_LEN(flips); f++) {
            t = with_sig(b, flips[f]);
            CU_ASSERT_FATAL(parse(t, &j) == ACME_JWS_OK);
            CU_ASSERT_EQUAL(acme_jws_verify_hmac(&j, key, v[i].keylen, &e, msg, sizeof(msg)), -1);
            CU_ASSERT_EQUAL(e, ACME_JWS_E_BAD_SIGNATURE);
            acme_jws_free(&j);
            free(t);
        }
        free(b);
        json_decref(hdr);
    }
    /* Keys shorter than the hash output (RFC 7518 §3.2). */
    json_t *hdr = json_pack("{s:s, s:s}", "kid", "eab-1", "url", "u");
    char *b = acme_jws_sign_hmac(ACME_JWS_ALG_HS512, key, 64, hdr, NULL, 0);
    acme_jws j;
    acme_jws_err e;
    CU_ASSERT_FATAL(b != NULL && parse(b, &j) == ACME_JWS_OK);
    CU_ASSERT_EQUAL(acme_jws_verify_hmac(&j, key, 32, &e, msg, sizeof(msg)), -1);
    CU_ASSERT_EQUAL(e, ACME_JWS_E_BAD_KEY);
    MSG_HAS("too short");
    CU_ASSERT_EQUAL(acme_jws_verify_hmac(&j, NULL, 0, &e, msg, sizeof(msg)), -1);
    CU_ASSERT_EQUAL(e, ACME_JWS_E_BAD_KEY);
    acme_jws_free(&j);
    free(b);
    CU_ASSERT_PTR_NULL(acme_jws_sign_hmac(ACME_JWS_ALG_HS512, key, 32, hdr, NULL, 0));
    CU_ASSERT_PTR_NULL(acme_jws_sign_hmac(ACME_JWS_ALG_ES256, key, 64, hdr, NULL, 0));
    CU_ASSERT_PTR_NULL(acme_jws_sign_hmac(ACME_JWS_ALG_NONE, key, 64, hdr, NULL, 0));
    json_decref(hdr);
    /* An account JWS given to the EAB verifier. */
    b = signed_body(keys[K_P256], EVP_sha256(), 32, "{\"alg\":\"ES256\"," HDR_KID "}", PAYLOAD);
    CU_ASSERT_FATAL(parse(b, &j) == ACME_JWS_OK);
    CU_ASSERT_EQUAL(acme_jws_verify_hmac(&j, key, 64, &e, msg, sizeof(msg)), -1);
    CU_ASSERT_EQUAL(e, ACME_JWS_E_BAD_ALG);
    acme_jws_free(&j);
    free(b);
    free(jwks);
    json_decref(jwk);
}

/* ------------------------------------------------------------- published vectors */

/* RFC 7515 A.1 (HS256) and A.3 (ES256), given in the compact form. */
#define RFC7515_PAYLOAD64                                                                          \
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVl" \
    "fQ"
#define RFC7515_PAYLOAD                                                                            \
    "{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}"

static void test_rfc7515(void)
{
    /* A.3: import the JWK, verify the flattened form of the compact JWS. */
    json_t *jwk = json_pack("{s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-256", "x",
                            JWS_RFC7515_A3_X, "y", JWS_RFC7515_A3_Y);
    EVP_PKEY *k = NULL;
    acme_jws_alg fam;
    acme_jws_err e;
    CU_ASSERT_FATAL(acme_jwk_import(jwk, &k, &fam, &e, msg, sizeof(msg)) == 0);
    CU_ASSERT_EQUAL(fam, ACME_JWS_ALG_ES256);
    CU_ASSERT_EQUAL(EVP_PKEY_eq(k, keys[K_A3]), 1); /* the A.3 d belongs to it */
    char *b =
        body3("eyJhbGciOiJFUzI1NiJ9", RFC7515_PAYLOAD64,
              "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-"
              "Kg6NU1Q");
    acme_jws j;
    CU_ASSERT_FATAL(parse(b, &j) == ACME_JWS_OK);
    CU_ASSERT_EQUAL(j.alg, ACME_JWS_ALG_ES256);
    CU_ASSERT_STRING_EQUAL((const char *)j.payload, RFC7515_PAYLOAD);
    CU_ASSERT_EQUAL(acme_jws_verify(&j, k, &e, msg, sizeof(msg)), 0);
    CU_ASSERT_EQUAL(e, ACME_JWS_OK);
    /* A.3 has no url, nonce or key reference: not an ACME request. */
    CU_ASSERT_EQUAL(acme_jws_check_acme(&j, 1, &e, msg, sizeof(msg)), -1);
    CU_ASSERT_EQUAL(e, ACME_JWS_E_MALFORMED);
    acme_jws_free(&j);
    free(b);
    b = body3("eyJhbGciOiJFUzI1NiJ9", RFC7515_PAYLOAD64,
              "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-"
              "Kg6NU1A");
    CU_ASSERT_EQUAL(verify_err(b, k), ACME_JWS_E_BAD_SIGNATURE);
    free(b);
    /* The A.3 JWK with its "d" is a private JWK. */
    json_object_set_new(jwk, "d", json_string(JWS_RFC7515_A3_D));
    CU_ASSERT_EQUAL(import_err(jwk), ACME_JWS_E_BAD_KEY);
    EVP_PKEY_free(k);
    json_decref(jwk);

    /* A.1: HS256 with the 64-octet key; as an EAB MAC. */
    b = body3("eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9", RFC7515_PAYLOAD64,
              "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
    CU_ASSERT_FATAL(parse(b, &j) == ACME_JWS_OK);
    CU_ASSERT_EQUAL(j.alg, ACME_JWS_ALG_HS256);
    CU_ASSERT_EQUAL(acme_jws_verify_hmac(&j, pkeys.eab_key, pkeys.eab_len, &e, msg, sizeof(msg)),
                    0);
    CU_ASSERT_EQUAL(e, ACME_JWS_OK);
    pkeys.eab_key[0] ^= 1;
    CU_ASSERT_EQUAL(acme_jws_verify_hmac(&j, pkeys.eab_key, pkeys.eab_len, &e, msg, sizeof(msg)),
                    -1);
    CU_ASSERT_EQUAL(e, ACME_JWS_E_BAD_SIGNATURE);
    pkeys.eab_key[0] ^= 1;
    acme_jws_free(&j);
    free(b);
}

/* RFC 8037 A.1-A.5: the Ed25519 key, its thumbprint, and the signature of
 * "Example of Ed25519 signing", which acme_jws_sign must reproduce (Ed25519
 * is deterministic and {"alg":"EdDSA"} is what it serializes). */
static void test_rfc8037(void)
{
    const char *x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const char *d = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    const char *sig =
        "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_"
        "MuM0KAg";
    json_t *jwk = json_pack("{s:s, s:s, s:s}", "kty", "OKP", "crv", "Ed25519", "x", x);
    EVP_PKEY *k = NULL;
    acme_jws_alg fam;
    acme_jws_err e;
    char t[44];
    CU_ASSERT_FATAL(acme_jwk_import(jwk, &k, &fam, &e, msg, sizeof(msg)) == 0);
    CU_ASSERT_EQUAL(fam, ACME_JWS_ALG_EDDSA);
    CU_ASSERT_EQUAL(acme_jwk_thumbprint(jwk, t), 0);
    CU_ASSERT_STRING_EQUAL(t, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    /* A.5: verify. */
    char *b = body3("eyJhbGciOiJFZERTQSJ9", "RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc", sig);
    acme_jws j;
    CU_ASSERT_FATAL(parse(b, &j) == ACME_JWS_OK);
    CU_ASSERT_STRING_EQUAL((const char *)j.payload, "Example of Ed25519 signing");
    CU_ASSERT_EQUAL(acme_jws_verify(&j, k, &e, msg, sizeof(msg)), 0);
    CU_ASSERT_EQUAL(e, ACME_JWS_OK);
    acme_jws_free(&j);
    free(b);
    /* A.4: sign with the private key. */
    uint8_t seed[32];
    CU_ASSERT_FATAL(acme_b64url_decode(d, strlen(d), seed, 32) == 32);
    EVP_PKEY *priv = EVP_PKEY_new_raw_private_key_ex(NULL, "ED25519", NULL, seed, 32);
    CU_ASSERT_FATAL(priv != NULL);
    json_t *hdr = json_object();
    b = acme_jws_sign(priv, hdr, (const uint8_t *)"Example of Ed25519 signing", 26);
    CU_ASSERT_FATAL(b != NULL);
    json_t *o = json_loads(b, 0, NULL);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "protected")),
                           "eyJhbGciOiJFZERTQSJ9");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "payload")),
                           "RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "signature")), sig);
    json_decref(o);
    free(b);
    json_decref(hdr);
    /* A.1's private JWK is refused. */
    json_object_set_new(jwk, "d", json_string(d));
    CU_ASSERT_EQUAL(import_err(jwk), ACME_JWS_E_BAD_KEY);
    EVP_PKEY_free(priv);
    EVP_PKEY_free(k);
    json_decref(jwk);
}

/* ------------------------------------------------------------- hygiene */

static void test_error_queue_and_messages(void)
{
    /* Refusals that go through OpenSSL failures leave nothing on the
     * thread's error queue, and their messages are printable ASCII even
     * when they quote the request. */
    ERR_clear_error();
    json_t *j = jwk_of(K_P256);
    uint8_t zero[32] = {0};
    set_b64(j, "x", zero, 32);
    CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
    json_decref(j);
    char *b = signed_body(keys[K_P256], EVP_sha256(), 0, "{\"alg\":\"ES256\"," HDR_KID "}", "{}");
    CU_ASSERT_EQUAL(verify_err(b, keys[K_P256]), ACME_JWS_E_BAD_SIGNATURE);
    free(b);
    b = signed_body(keys[K_P256], EVP_sha256(), 32, "{\"alg\":\"ES256\"," HDR_KID "}", "{}");
    char *t = with_sig(b, sig_zero);
    CU_ASSERT_EQUAL(verify_err(t, keys[K_P256]), ACME_JWS_E_BAD_SIGNATURE);
    free(t);
    free(b);
    CU_ASSERT_EQUAL(ERR_peek_error(), 0);

    j = jwk_of(K_P256);
    json_object_set_new(j, "crv", json_string("P-\xc3\xa9\x01\x7f"));
    CU_ASSERT_EQUAL(import_err(j), ACME_JWS_E_BAD_KEY);
    for (const char *p = msg; *p; p++)
        CU_ASSERT(*p >= 0x20 && *p <= 0x7e);
    MSG_HAS("P-????");
    json_decref(j);
    /* A message buffer of one byte, or none. */
    char one[1] = {'x'};
    acme_jws_err e;
    CU_ASSERT_EQUAL(acme_jws_parse("[]", 2, &(acme_jws){0}, &e, one, 1), -1);
    CU_ASSERT_EQUAL(one[0], 0);
    acme_jws jj;
    CU_ASSERT_EQUAL(acme_jws_parse("[]", 2, &jj, &e, NULL, 0), -1);
    CU_ASSERT_EQUAL(e, ACME_JWS_E_MALFORMED);
    CU_ASSERT_EQUAL(acme_jws_parse("[]", 2, &jj, NULL, NULL, 0), -1);
}

/* ------------------------------------------------------------- threads */

/* Nothing in acme/jws is global: requests on several threads share only
 * read-only inputs (the account key, the body text). Run under TSan by
 * tools/test.sh (this suite is labelled "concurrency"). */
typedef struct thread_arg {
    const char *kid_body, *jwk_body, *eab_body;
    EVP_PKEY *key;
    int ok;
} thread_arg;

static void *worker(void *p)
{
    thread_arg *a = p;
    for (int i = 0; i < 100; i++) {
        acme_jws j;
        acme_jws_err e;
        EVP_PKEY *k = NULL;
        char m[256], t[44];
        int r = acme_jws_parse(a->kid_body, strlen(a->kid_body), &j, &e, m, sizeof(m)) == 0 &&
                acme_jws_check_acme(&j, 1, &e, m, sizeof(m)) == 0 &&
                acme_jws_verify(&j, a->key, &e, m, sizeof(m)) == 0;
        acme_jws_free(&j);
        r = r && acme_jws_parse(a->jwk_body, strlen(a->jwk_body), &j, &e, m, sizeof(m)) == 0 &&
            acme_jwk_import(j.jwk, &k, NULL, &e, m, sizeof(m)) == 0 &&
            acme_jwk_thumbprint(j.jwk, t) == 0 && acme_jws_verify(&j, k, &e, m, sizeof(m)) == 0;
        EVP_PKEY_free(k);
        acme_jws_free(&j);
        r = r && acme_jws_parse(a->eab_body, strlen(a->eab_body), &j, &e, m, sizeof(m)) == 0 &&
            acme_jws_verify_hmac(&j, pkeys.eab_key, pkeys.eab_len, &e, m, sizeof(m)) == 0;
        acme_jws_free(&j);
        /* and a refusal, which goes through OpenSSL's error queue */
        r = r && acme_jws_parse(a->kid_body, strlen(a->kid_body), &j, &e, m, sizeof(m)) == 0 &&
            acme_jws_verify(&j, keys[K_P256_B], &e, m, sizeof(m)) == -1 &&
            e == ACME_JWS_E_BAD_SIGNATURE && ERR_peek_error() == 0;
        acme_jws_free(&j);
        a->ok += r;
    }
    return NULL;
}

static void test_threads(void)
{
    json_t *h1 = json_pack("{s:s, s:s, s:s}", "nonce", "bm9uY2UtMQ", "url", "u", "kid", "k");
    json_t *h2 =
        json_pack("{s:s, s:s, s:o}", "nonce", "bm9uY2UtMQ", "url", "u", "jwk", jwk_of(K_ED25519));
    json_t *h3 = json_pack("{s:s, s:s}", "kid", "eab-1", "url", "u");
    char *kid = acme_jws_sign(keys[K_P256], h1, (const uint8_t *)PAYLOAD, strlen(PAYLOAD));
    char *jwk = acme_jws_sign(keys[K_ED25519], h2, (const uint8_t *)"{}", 2);
    char *eab = acme_jws_sign_hmac(ACME_JWS_ALG_HS256, pkeys.eab_key, pkeys.eab_len, h3,
                                   (const uint8_t *)"{}", 2);
    CU_ASSERT_FATAL(kid != NULL && jwk != NULL && eab != NULL);
    thread_arg a[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (thread_arg){kid, jwk, eab, keys[K_P256], 0};
        CU_ASSERT_FATAL(pthread_create(&t[i], NULL, worker, &a[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        CU_ASSERT(pthread_join(t[i], NULL) == 0);
        CU_ASSERT_EQUAL(a[i].ok, 100);
    }
    free(kid);
    free(jwk);
    free(eab);
    json_decref(h1);
    json_decref(h2);
    json_decref(h3);
}

/* ------------------------------------------------------------- fuzz seeds */

typedef struct seed {
    const char *name;
    char *data;
    size_t len;
} seed;

static const char *const OUTCOME[ACME_JWS_E__MAX] = {
    [ACME_JWS_OK] = "ok",
    [ACME_JWS_E_MALFORMED] = "malformed",
    [ACME_JWS_E_BAD_ALG] = "bad-alg",
    [ACME_JWS_E_BAD_KEY] = "bad-key",
    [ACME_JWS_E_BAD_SIGNATURE] = "bad-signature",
    [ACME_JWS_E_INTERNAL] = "internal",
};

/* "!" HDR NUL PAYLOAD NUL SIG, the clear form of jws_pipeline.h; signed
 * with k (md, ec_sz) over the signing input the pipeline will build. */
static seed clear_seed(const char *name, EVP_PKEY *k, const EVP_MD *md, size_t ec_sz,
                       const char *hdr, const char *payload)
{
    char *p = b64s(hdr), *y = b64s(payload), input[4096];
    uint8_t sig[1100];
    snprintf(input, sizeof(input), "%s.%s", p, y);
    size_t sl = k != NULL ? sign_raw(k, md, input, sig, sizeof(sig), ec_sz) : 0;
    size_t hl = strlen(hdr), pl = strlen(payload), n = 1 + hl + 1 + pl + 1 + sl;
    seed s = {name, malloc(n), n};
    CU_ASSERT_FATAL(s.data != NULL);
    s.data[0] = '!';
    memcpy(s.data + 1, hdr, hl + 1);
    memcpy(s.data + 2 + hl, payload, pl + 1);
    memcpy(s.data + 3 + hl + pl, sig, sl);
    free(p);
    free(y);
    return s;
}

static seed text_seed(const char *name, char *text)
{
    return (seed){name, text, strlen(text)};
}

static char *jwk_hdr(int k, const char *alg, const char *extra)
{
    json_t *jwk = jwk_of(k);
    if (extra != NULL)
        json_object_set_new(jwk, extra, json_string("AQAB"));
    char *jwks = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS);
    char *h = malloc(strlen(jwks) + 256);
    CU_ASSERT_FATAL(h != NULL);
    sprintf(h,
            "{\"alg\":\"%s\",\"jwk\":%s,\"nonce\":\"bm9uY2UtMQ\",\"url\":\"https://"
            "acme.example/new-account\"}",
            alg, jwks);
    free(jwks);
    json_decref(jwk);
    return h;
}

#define KID_HDR(alg) "{\"alg\":\"" alg "\"," HDR_KID "}"
#define NEWACCT "{\"termsOfServiceAgreed\":true,\"contact\":[\"mailto:nf-ops@5gc.example\"]}"

static size_t make_jws_seeds(seed *s, size_t max)
{
    size_t n = 0;
    char *h;
#define ADD(x)                                                                                     \
    do {                                                                                           \
        CU_ASSERT_FATAL(n < max);                                                                  \
        s[n++] = (x);                                                                              \
    } while (0)
#define ADD_JWK(name, k, alg, md, ec_sz, extra)                                                    \
    do {                                                                                           \
        h = jwk_hdr((k), (alg), (extra));                                                          \
        ADD(text_seed(name, signed_body(keys[k], (md), (ec_sz), h, NEWACCT)));                     \
        free(h);                                                                                   \
    } while (0)
    ADD_JWK("ok_es256_jwk.json", K_P256, "ES256", EVP_sha256(), 32, NULL);
    ADD_JWK("ok_es384_jwk.json", K_P384, "ES384", EVP_sha384(), 48, NULL);
    ADD_JWK("ok_rs256_jwk.json", K_RSA2048, "RS256", EVP_sha256(), 0, NULL);
    ADD_JWK("ok_eddsa_jwk.json", K_ED25519, "EdDSA", NULL, 0, NULL);
    ADD_JWK("bad-key_p521_jwk.json", K_P521, "ES256", EVP_sha256(), 66, NULL);
    ADD_JWK("bad-key_rsa1024_jwk.json", K_RSA1024, "RS256", EVP_sha256(), 0, NULL);
    ADD_JWK("bad-key_private_d.json", K_P256, "ES256", EVP_sha256(), 32, "d");
    ADD_JWK("bad-key_es384_header_p256_key.json", K_P256, "ES384", EVP_sha384(), 32, NULL);
    ADD_JWK("bad-signature_der_es256.json", K_P256, "ES256", EVP_sha256(), 0, NULL);
    ADD(text_seed("ok_es256_kid.json",
                  signed_body(keys[K_A3], EVP_sha256(), 32, KID_HDR("ES256"), PAYLOAD)));
    ADD(text_seed("ok_post_as_get.json",
                  signed_body(keys[K_A3], EVP_sha256(), 32, KID_HDR("ES256"), "")));
    ADD(text_seed("bad-signature_kid_other_key.json",
                  signed_body(keys[K_P256], EVP_sha256(), 32, KID_HDR("ES256"), PAYLOAD)));
    ADD(text_seed("bad-key_kid_rs256.json",
                  signed_body(keys[K_RSA2048], EVP_sha256(), 0, KID_HDR("RS256"), PAYLOAD)));
    /* EAB (RFC 7515 A.1 key): good, with a nonce. */
    json_t *eh = json_pack("{s:s, s:s}", "kid", "eab-1", "url", "https://acme.example/new-account");
    json_t *jwk = jwk_of(K_P256);
    char *jwks = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS);
    ADD(text_seed("ok_eab_hs256.json",
                  acme_jws_sign_hmac(ACME_JWS_ALG_HS256, pkeys.eab_key, pkeys.eab_len, eh,
                                     (const uint8_t *)jwks, strlen(jwks))));
    json_object_set_new(eh, "nonce", json_string("bm9uY2UtMQ"));
    ADD(text_seed("malformed_eab_nonce.json",
                  acme_jws_sign_hmac(ACME_JWS_ALG_HS512, pkeys.eab_key, pkeys.eab_len, eh,
                                     (const uint8_t *)jwks, strlen(jwks))));
    json_decref(eh);
    json_decref(jwk);
    free(jwks);
    static const uint8_t z[64];
    ADD(text_seed("bad-alg_none.json", body_of(KID_HDR("none"), PAYLOAD, z, 0)));
    ADD(text_seed("bad-alg_ps256.json", body_of(KID_HDR("PS256"), PAYLOAD, z, 64)));
    ADD(text_seed("bad-alg_no_alg.json", body_of("{" HDR_KID "}", PAYLOAD, z, 64)));
    ADD(text_seed("malformed_crit.json",
                  body_of("{\"alg\":\"ES256\",\"crit\":[\"b64\"],\"b64\":false," HDR_KID "}",
                          PAYLOAD, z, 64)));
    ADD(text_seed("malformed_no_nonce.json",
                  body_of("{\"alg\":\"ES256\",\"url\":\"u\",\"kid\":\"k\"}", PAYLOAD, z, 64)));
    char *b = signed_body(keys[K_A3], EVP_sha256(), 32, KID_HDR("ES256"), PAYLOAD);
    b[strlen(b) - 1] = 0;
    ADD(text_seed("malformed_truncated.json", strdup(b)));
    free(b);
    ADD(text_seed("malformed_header.json",
                  strdup("{\"protected\":\"eyJhbGciOiJFUzI1NiJ9\",\"payload\":\"\","
                         "\"signature\":\"\",\"header\":{\"kid\":\"k\"}}")));
    ADD(text_seed("malformed_padding.json",
                  strdup("{\"protected\":\"eyJhbGciOiJFUzI1NiJ9\",\"payload\":\"e30=\","
                         "\"signature\":\"\"}")));
    /* Clear forms. */
    ADD(clear_seed("ok_clear_kid.bin", keys[K_A3], EVP_sha256(), 32, KID_HDR("ES256"), PAYLOAD));
    h = jwk_hdr(K_P384, "ES384", NULL);
    ADD(clear_seed("ok_clear_jwk_es384.bin", keys[K_P384], EVP_sha384(), 48, h, NEWACCT));
    free(h);
    h = jwk_hdr(K_RSA2048, "RS256", NULL);
    ADD(clear_seed("ok_clear_jwk_rs256.bin", keys[K_RSA2048], EVP_sha256(), 0, h, NEWACCT));
    free(h);
    h = jwk_hdr(K_ED25519, "EdDSA", NULL);
    ADD(clear_seed("ok_clear_jwk_eddsa.bin", keys[K_ED25519], NULL, 0, h, NEWACCT));
    free(h);
    h = jwk_hdr(K_SECP256K1, "ES256", NULL);
    ADD(clear_seed("bad-key_clear_secp256k1.bin", keys[K_SECP256K1], EVP_sha256(), 32, h, NEWACCT));
    free(h);
    ADD(clear_seed("malformed_clear_jwk_and_kid.bin", NULL, NULL, 0,
                   "{\"alg\":\"ES256\",\"jwk\":{\"kty\":\"EC\"}," HDR_KID "}", "{}"));
    ADD(clear_seed("bad-signature_clear_kid_empty_sig.bin", NULL, NULL, 0, KID_HDR("ES256"), ""));
#undef ADD
#undef ADD_JWK
    return n;
}

static size_t make_jwk_seeds(seed *s, size_t max)
{
    size_t n = 0;
#define ADD(nm, j)                                                                                 \
    do {                                                                                           \
        json_t *j_ = (j);                                                                          \
        CU_ASSERT_FATAL(n < max && j_ != NULL);                                                    \
        s[n++] = text_seed(nm, json_dumps(j_, JSON_COMPACT | JSON_SORT_KEYS));                     \
        json_decref(j_);                                                                           \
    } while (0)
    ADD("ok_p256.json", jwk_of(K_P256));
    ADD("ok_p384.json", jwk_of(K_P384));
    ADD("ok_rsa2048.json", jwk_of(K_RSA2048));
    ADD("ok_rsa_e3.json", jwk_of(K_RSA_E3));
    ADD("ok_ed25519.json", jwk_of(K_ED25519));
    ADD("ok_rfc7515_a3.json", json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-256",
                                        "x", JWS_RFC7515_A3_X, "y", JWS_RFC7515_A3_Y, "kid", "a3"));
    ADD("bad-key_p521.json", jwk_of(K_P521));
    ADD("bad-key_secp256k1.json", jwk_of(K_SECP256K1));
    ADD("bad-key_ed448.json", jwk_of(K_ED448));
    ADD("bad-key_rsa1024.json", jwk_of(K_RSA1024));
    json_t *j = jwk_of(K_P256);
    json_object_set_new(j, "d", json_string("AQAB"));
    ADD("bad-key_private_d.json", j);
    j = jwk_of(K_P256);
    uint8_t y[48];
    size_t yl = get_b64(j, "y", y, sizeof(y));
    y[yl - 1] ^= 1;
    set_b64(j, "y", y, yl);
    ADD("bad-key_off_curve.json", j);
    j = jwk_of(K_P384);
    set_b64(j, "x", y, 47);
    ADD("bad-key_short_x.json", j);
    j = jwk_of(K_RSA2048);
    json_object_set_new(j, "e", json_string("AQAA"));
    ADD("bad-key_even_e.json", j);
    j = jwk_of(K_ED25519);
    json_object_set_new(j, "x", json_integer(1));
    ADD("bad-key_x_not_string.json", j);
#undef ADD
    CU_ASSERT_FATAL(n + 1 < max);
    s[n++] = text_seed("malformed_not_json.json", strdup("{\"kty\":\"EC\","));
    return n;
}

static acme_jws_err seed_outcome(bool jws, const void *data, size_t len)
{
    return jws ? jws_pipeline(data, len, &pkeys) : jwk_pipeline(data, len);
}

static bool named_as(const char *name, acme_jws_err e)
{
    const char *o = OUTCOME[e];
    size_t ol = strlen(o);
    return strncmp(name, o, ol) == 0 && name[ol] == '_';
}

static void free_seeds(seed *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(s[i].data);
}

static void check_committed(const char *sub, bool jws)
{
    const char *src = getenv("CF_SOURCE_DIR");
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus/%s", src ? src : ".", sub);
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "\n  no seed corpus at %s\n", dir);
        CU_FAIL("no seed corpus");
        return;
    }
    struct dirent *de;
    unsigned files = 0;
    static char buf[1 << 16];
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        FILE *f = fopen(path, "rb");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        size_t len = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        files++;
        acme_jws_err e = seed_outcome(jws, buf, len);
        if (strncmp(de->d_name, "crash-", 6) != 0 && !named_as(de->d_name, e)) {
            fprintf(stderr, "\n  committed seed %s/%s: %s\n", sub, de->d_name, OUTCOME[e]);
            CU_FAIL("committed seed has another outcome than its name");
        }
    }
    closedir(d);
    CU_ASSERT(files >= 10);
}

static void test_seed_corpus(void)
{
    seed s[64];
    size_t n = make_jws_seeds(s, CF_ARRAY_LEN(s));
    for (size_t i = 0; i < n; i++)
        if (!named_as(s[i].name, seed_outcome(true, s[i].data, s[i].len))) {
            fprintf(stderr, "\n  jws seed %s: %s\n", s[i].name,
                    OUTCOME[seed_outcome(true, s[i].data, s[i].len)]);
            CU_FAIL("generated seed has another outcome than its name");
        }
    free_seeds(s, n);
    n = make_jwk_seeds(s, CF_ARRAY_LEN(s));
    for (size_t i = 0; i < n; i++)
        if (!named_as(s[i].name, seed_outcome(false, s[i].data, s[i].len))) {
            fprintf(stderr, "\n  jwk seed %s: %s\n", s[i].name,
                    OUTCOME[seed_outcome(false, s[i].data, s[i].len)]);
            CU_FAIL("generated seed has another outcome than its name");
        }
    free_seeds(s, n);
    check_committed("jws", true);
    check_committed("jwk", false);
}

static const char *seed_dir;

static void write_seeds(const char *sub, seed *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s/%s", seed_dir, sub, s[i].name);
        FILE *f = fopen(path, "wb");
        if (f == NULL)
            fprintf(stderr, "\n  cannot write %s\n", path);
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        CU_ASSERT(fwrite(s[i].data, 1, s[i].len, f) == s[i].len);
        CU_ASSERT(fclose(f) == 0);
    }
    printf("\n    %zu seeds written to %s/%s ", n, seed_dir, sub);
}

static void test_write_seeds(void)
{
    seed s[64];
    size_t n = make_jws_seeds(s, CF_ARRAY_LEN(s));
    write_seeds("jws", s, n);
    free_seeds(s, n);
    n = make_jwk_seeds(s, CF_ARRAY_LEN(s));
    write_seeds("jwk", s, n);
    free_seeds(s, n);
}

/* ------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    static const cf_test all[] = {
        {"names and problem types", test_names},
        {"base64url round trips", test_b64_round_trips},
        {"base64url refusals", test_b64_refusals},
        {"JWK import: each key type", test_jwk_import_types},
        {"JWK round trip: sign, import, verify", test_jwk_round_trip_verify},
        {"JWK refusals: curves and types", test_jwk_wrong_curves_and_types},
        {"JWK refusals: points and encodings", test_jwk_bad_points},
        {"JWK refusals: RSA limits", test_jwk_rsa_limits},
        {"JWK refusals: private members", test_jwk_private_members},
        {"JWK refusals: member types", test_jwk_member_types},
        {"thumbprints (RFC 7638 3.1, RFC 8037 A.3)", test_thumbprint},
        {"JWS parse refusals", test_parse_refusals},
        {"JWS parse fields", test_parse_fields},
        {"RFC 8555 header rules (check_acme, check_eab)", test_check_acme},
        {"verify: each alg", test_verify_good},
        {"verify: tampered payload, header, signature", test_verify_tampered},
        {"verify: ECDSA R || S only", test_verify_ecdsa_encodings},
        {"verify: alg must fit the key", test_verify_alg_fit},
        {"verify: EdDSA", test_verify_eddsa},
        {"HMAC (EAB)", test_hmac},
        {"RFC 7515 A.1 and A.3", test_rfc7515},
        {"RFC 8037 A.1-A.5", test_rfc8037},
        {"error queue and messages", test_error_queue_and_messages},
        {"four threads, shared key", test_threads},
        {"seed corpus", test_seed_corpus},
    };
    static const cf_test writer[] = {{"write seeds", test_write_seeds}};
    static const cf_suite suites[] = {CF_SUITE("jws", suite_init, suite_clean, all)};
    static const cf_suite seed_suites[] = {CF_SUITE("jws seeds", suite_init, suite_clean, writer)};
    if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0) {
        seed_dir = argv[2];
        return cf_test_main(1, argv, seed_suites, 1);
    }
    return CF_TEST_MAIN(argc, argv, suites);
}
