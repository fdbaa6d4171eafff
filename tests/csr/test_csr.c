/* CUnit suite for engine/csr (docs/csr.md).
 *
 * Vectors are made here with OpenSSL (EVP_PKEY keygen, X509_REQ, i2d) for
 * every key type and signature algorithm; broken ones are hand-built with
 * engine/der's writer (and signed with OpenSSL where the signature must be
 * right) so that each error code is reached for exactly one reason.
 *
 * `test_csr --write-seeds DIR` writes the fuzz seed corpus
 * (tests/fuzz/corpus/csr): files named RESULT_what.der, where RESULT is the
 * csr_err_name() of csr_parse() followed, when that is "ok", by csr_verify().
 * The "seed corpus" test checks every committed seed against its name.
 */
#include "engine/csr/csr.h"

#include "cf_test.h"
#include "cf_testutil.h"
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------- keys */

enum {
    K_P256,
    K_P384,
    K_RSA2048,
    K_RSA3072,
    K_RSA4096,
    K_ED25519,
    K_SECP256K1,
    K_P521,
    K_X25519,
    K_ED448,
    K_RSA1024,
    K_RSA_E3,
    K__MAX
};
static EVP_PKEY *keys[K__MAX];

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

static int suite_init(void)
{
    keys[K_P256] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    keys[K_P384] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    keys[K_RSA2048] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    keys[K_RSA3072] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
    keys[K_RSA4096] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)4096);
    keys[K_ED25519] = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    keys[K_SECP256K1] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1");
    keys[K_P521] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
    keys[K_X25519] = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
    keys[K_ED448] = EVP_PKEY_Q_keygen(NULL, NULL, "ED448");
    keys[K_RSA1024] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    keys[K_RSA_E3] = rsa_e3();
    for (int i = 0; i < K__MAX; i++)
        if (keys[i] == NULL)
            return 1;
    return 0;
}

static int suite_clean(void)
{
    for (int i = 0; i < K__MAX; i++)
        EVP_PKEY_free(keys[i]);
    return 0;
}

/* ------------------------------------------------------------- OpenSSL-made CSRs */

#define NO_PSS (-100)

typedef struct vec {
    X509_REQ *req;
    uint8_t *der;
    size_t len;
} vec;

static void vec_free(vec *v)
{
    X509_REQ_free(v->req);
    OPENSSL_free(v->der);
    memset(v, 0, sizeof(*v));
}

static bool add_exts(X509_REQ *r, X509_EXTENSION *a, X509_EXTENSION *b)
{
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    bool ok = exts && a && sk_X509_EXTENSION_push(exts, a) &&
              (!b || sk_X509_EXTENSION_push(exts, b)) && X509_REQ_add_extensions(r, exts);
    sk_X509_EXTENSION_free(exts);
    X509_EXTENSION_free(a);
    X509_EXTENSION_free(b);
    return ok;
}

/* A CSR for `subj`'s public key signed by `signer` with `md` (NULL for
 * EdDSA); PSS when pss_salt != NO_PSS (mgf1 NULL: same as md). san: an
 * OpenSSL subjectAltName config string, or NULL for no extensionRequest. */
static vec mkreq_ext(EVP_PKEY *subj, EVP_PKEY *signer, const EVP_MD *md, int pss_salt,
                     const EVP_MD *mgf1, X509_EXTENSION *e1, X509_EXTENSION *e2)
{
    vec v = {0};
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    X509_NAME *n = X509_NAME_new();
    unsigned char *der = NULL;
    int len;
    v.req = X509_REQ_new();
    if (!m || !n || !v.req ||
        !X509_NAME_add_entry_by_txt(n, "C", MBSTRING_ASC, (const unsigned char *)"DE", -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC,
                                    (const unsigned char *)"5gc.mnc001.mcc001.3gppnetwork.org", -1,
                                    -1, 0) ||
        !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"nf1.example", -1,
                                    -1, 0) ||
        !X509_REQ_set_subject_name(v.req, n) || !X509_REQ_set_pubkey(v.req, subj))
        goto fail;
    if (e1 && !add_exts(v.req, e1, e2))
        goto fail;
    if (EVP_DigestSignInit(m, &pc, md, NULL, signer) != 1)
        goto fail;
    if (pss_salt != NO_PSS && (EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) != 1 ||
                               EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, pss_salt) != 1 ||
                               (mgf1 && EVP_PKEY_CTX_set_rsa_mgf1_md(pc, mgf1) != 1)))
        goto fail;
    if (X509_REQ_sign_ctx(v.req, m) <= 0 || (len = i2d_X509_REQ(v.req, &der)) <= 0)
        goto fail;
    v.der = der;
    v.len = (size_t)len;
    X509_NAME_free(n);
    EVP_MD_CTX_free(m);
    return v;
fail:
    X509_NAME_free(n);
    EVP_MD_CTX_free(m);
    vec_free(&v);
    return v;
}

static X509_EXTENSION *san_ext(const char *san)
{
    return san ? X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san) : NULL;
}

static vec mkreq(EVP_PKEY *subj, EVP_PKEY *signer, const EVP_MD *md, int pss_salt, const char *san)
{
    return mkreq_ext(subj, signer, md, pss_salt, NULL, san_ext(san), NULL);
}

#define SAN_STD "DNS:nf1.5gc.example,URI:urn:uuid:4b2b3c3e-1f45-4d6a-9a1b-0c1d2e3f4a5b"

/* ------------------------------------------------------------- hand-built CSRs */

static size_t hx(const char *s, uint8_t *out)
{
    size_t n = 0;
    while (*s) {
        if (*s == ' ') {
            s++;
            continue;
        }
        unsigned v;
        if (sscanf(s, "%2x", &v) != 1)
            abort();
        out[n++] = (uint8_t)v;
        s += 2;
    }
    return n;
}

typedef struct blob {
    uint8_t b[8192];
    size_t n;
} blob;

static blob bhex(const char *h)
{
    blob x;
    x.n = hx(h, x.b);
    return x;
}

/* AlgorithmIdentifier encodings. */
#define A_ECDSA_SHA1 "300906072a8648ce3d0401"
#define A_ECDSA_SHA256 "300a06082a8648ce3d040302"
#define A_ECDSA_SHA256_NULL "300c06082a8648ce3d0403020500"
#define A_RSA_SHA256 "300d06092a864886f70d01010b0500"
#define A_RSA_SHA256_NOPARAM "300b06092a864886f70d01010b"
#define A_ED25519 "300506032b6570"
#define A_ED25519_NULL "300706032b65700500"
#define OID_P256 "06082a8648ce3d030107"
#define ALG_EC_P256 "301306072a8648ce3d0201" OID_P256
#define ALG_RSA "300d06092a864886f70d0101010500"

/* Name: CN=nf1.example */
#define NAME_CN "3016311430120603550403130b6e66312e6578616d706c65"

/* SubjectPublicKeyInfo from an AlgorithmIdentifier (hex) and key octets. */
static blob spki(const char *alg_hex, const uint8_t *key, size_t n, unsigned unused)
{
    uint8_t a[256];
    size_t an = hx(alg_hex, a);
    blob o;
    der_w w;
    der_w_init(&w, o.b, sizeof(o.b));
    der_w_begin(&w, DER_SEQUENCE);
    der_w_raw(&w, a, an);
    der_w_bits_unused(&w, key, n, unused);
    der_w_end(&w);
    CU_ASSERT_FATAL(der_w_finish(&w, &o.n) == DER_OK);
    return o;
}

/* RSAPublicKey DER. */
static blob rsapub(const uint8_t *n, size_t nl, const uint8_t *e, size_t el)
{
    blob o;
    der_w w;
    der_w_init(&w, o.b, sizeof(o.b));
    der_w_begin(&w, DER_SEQUENCE);
    der_w_int_mag(&w, n, nl);
    der_w_int_mag(&w, e, el);
    der_w_end(&w);
    CU_ASSERT_FATAL(der_w_finish(&w, &o.n) == DER_OK);
    return o;
}

static blob spki_of(EVP_PKEY *pk)
{
    blob o;
    unsigned char *p = o.b;
    int n = i2d_PUBKEY(pk, &p);
    CU_ASSERT_FATAL(n > 0 && (size_t)n <= sizeof(o.b));
    o.n = (size_t)n;
    return o;
}

typedef struct parts {
    uint64_t version;
    blob name, spki, attrs; /* attrs: contents of [0] */
    const char *sigalg;     /* hex */
    EVP_PKEY *signer;       /* NULL: a dummy 64-octet signature */
    const EVP_MD *md;
    bool no_attrs; /* leave out the [0] altogether */
} parts;

/* CertificationRequest from parts, signed over the info with signer/md. */
static blob build(const parts *p)
{
    static uint8_t info[8192];
    uint8_t alg[128], sig[1024];
    size_t infolen, algn = hx(p->sigalg, alg), sigl = 64;
    der_w w;
    blob o;
    der_w_init(&w, info, sizeof(info));
    der_w_begin(&w, DER_SEQUENCE);
    der_w_uint64(&w, p->version);
    der_w_raw(&w, p->name.b, p->name.n);
    der_w_raw(&w, p->spki.b, p->spki.n);
    if (!p->no_attrs) {
        der_w_begin(&w, DER_CTX_CONS(0));
        der_w_raw(&w, p->attrs.b, p->attrs.n);
        der_w_end(&w);
    }
    der_w_end(&w);
    CU_ASSERT_FATAL(der_w_finish(&w, &infolen) == DER_OK);
    memset(sig, 0x55, sizeof(sig));
    if (p->signer) {
        EVP_MD_CTX *m = EVP_MD_CTX_new();
        sigl = sizeof(sig);
        CU_ASSERT_FATAL(m && EVP_DigestSignInit(m, NULL, p->md, NULL, p->signer) == 1 &&
                        EVP_DigestSign(m, sig, &sigl, info, infolen) == 1);
        EVP_MD_CTX_free(m);
    }
    der_w_init(&w, o.b, sizeof(o.b));
    der_w_begin(&w, DER_SEQUENCE);
    der_w_raw(&w, info, infolen);
    der_w_raw(&w, alg, algn);
    der_w_bits(&w, sig, sigl);
    der_w_end(&w);
    CU_ASSERT_FATAL(der_w_finish(&w, &o.n) == DER_OK);
    return o;
}

/* parts for a good P-256 CSR with no attributes. */
static parts p256_parts(void)
{
    parts p = {0};
    p.name = bhex(NAME_CN);
    p.spki = spki_of(keys[K_P256]);
    p.sigalg = A_ECDSA_SHA256;
    p.signer = keys[K_P256];
    p.md = EVP_sha256();
    return p;
}

/* csr_parse, then csr_verify when that succeeded. */
static csr_verifier *ver;

static csr_err check(const uint8_t *der, size_t len)
{
    csr c;
    csr_err e = csr_parse(der, len, &c);
    if (e == CSR_OK)
        e = csr_verify(ver, &c);
    return e;
}

static csr_err check_blob(const blob *b)
{
    return check(b->b, b->n);
}

#define CHECK_CODE(expr, want)                                                                     \
    do {                                                                                           \
        csr_err got_ = (expr);                                                                     \
        if (got_ != (want))                                                                        \
            fprintf(stderr, "\n  %s:%d: got %s, want %s\n", __FILE__, __LINE__,                    \
                    csr_err_name(got_), csr_err_name(want));                                       \
        CU_ASSERT_EQUAL(got_, (want));                                                             \
    } while (0)

/* ------------------------------------------------------------- tests: good CSRs */

static void test_err_names(void)
{
    CU_ASSERT_STRING_EQUAL(csr_err_name(CSR_OK), "ok");
    CU_ASSERT_STRING_EQUAL(csr_err_name(CSR_ERR_MALFORMED), "malformed");
    CU_ASSERT_STRING_EQUAL(csr_err_name(CSR_ERR_BAD_SIGNATURE), "bad-signature");
    CU_ASSERT_STRING_EQUAL(csr_err_name(CSR_ERR_INTERNAL), "internal");
    CU_ASSERT_STRING_EQUAL(csr_err_name(CSR_ERR__MAX), "unknown");
    for (int e = 0; e < CSR_ERR__MAX; e++)
        CU_ASSERT_PTR_NOT_NULL(csr_err_name((csr_err)e));
}

/* Every field of a parsed CSR against what OpenSSL says about the same DER. */
static void same_fields(const vec *v, const csr *c)
{
    unsigned char *p = NULL;
    int n = i2d_PUBKEY(X509_REQ_get0_pubkey(v->req), &p);
    CU_ASSERT(n > 0 && c->spki.rawlen == (size_t)n && memcmp(c->spki.raw, p, (size_t)n) == 0);
    OPENSSL_free(p);
    p = NULL;
    n = i2d_X509_NAME(X509_REQ_get_subject_name(v->req), &p);
    CU_ASSERT(n > 0 && c->subject.rawlen == (size_t)n && memcmp(c->subject.raw, p, (size_t)n) == 0);
    OPENSSL_free(p);
    p = NULL;
    n = i2d_re_X509_REQ_tbs(v->req, &p);
    CU_ASSERT(n > 0 && c->info.rawlen == (size_t)n && memcmp(c->info.raw, p, (size_t)n) == 0);
    OPENSSL_free(p);
    const ASN1_BIT_STRING *sig;
    const X509_ALGOR *alg;
    X509_REQ_get0_signature(v->req, &sig, &alg);
    CU_ASSERT(c->sig_len == (size_t)ASN1_STRING_length(sig) &&
              memcmp(c->sig, ASN1_STRING_get0_data(sig), c->sig_len) == 0);
    CU_ASSERT_EQUAL(c->key_bits, (unsigned)EVP_PKEY_get_bits(X509_REQ_get0_pubkey(v->req)));
}

typedef struct good {
    int key;
    const char *md; /* NULL: EdDSA */
    int pss_salt;   /* NO_PSS, or the salt length */
    csr_key want_key;
    csr_sig want_sig;
} good;

static const good GOOD[] = {
    {K_P256, "SHA256", NO_PSS, CSR_KEY_EC_P256, CSR_SIG_ECDSA_SHA256},
    {K_P256, "SHA384", NO_PSS, CSR_KEY_EC_P256, CSR_SIG_ECDSA_SHA384},
    {K_P256, "SHA512", NO_PSS, CSR_KEY_EC_P256, CSR_SIG_ECDSA_SHA512},
    {K_P384, "SHA256", NO_PSS, CSR_KEY_EC_P384, CSR_SIG_ECDSA_SHA256},
    {K_P384, "SHA384", NO_PSS, CSR_KEY_EC_P384, CSR_SIG_ECDSA_SHA384},
    {K_P384, "SHA512", NO_PSS, CSR_KEY_EC_P384, CSR_SIG_ECDSA_SHA512},
    {K_ED25519, NULL, NO_PSS, CSR_KEY_ED25519, CSR_SIG_ED25519},
#define RSA_ALL(k)                                                                                 \
    {k, "SHA256", NO_PSS, CSR_KEY_RSA, CSR_SIG_RSA_SHA256},                                        \
        {k, "SHA384", NO_PSS, CSR_KEY_RSA, CSR_SIG_RSA_SHA384},                                    \
        {k, "SHA512", NO_PSS, CSR_KEY_RSA, CSR_SIG_RSA_SHA512},                                    \
        {k, "SHA256", 32, CSR_KEY_RSA, CSR_SIG_RSA_PSS},                                           \
        {k, "SHA384", 48, CSR_KEY_RSA, CSR_SIG_RSA_PSS},                                           \
        {k, "SHA512", 64, CSR_KEY_RSA, CSR_SIG_RSA_PSS},                                           \
        {k, "SHA256", 20, CSR_KEY_RSA, CSR_SIG_RSA_PSS}, /* saltLength DEFAULT: left out */        \
    {                                                                                              \
        k, "SHA256", 0, CSR_KEY_RSA, CSR_SIG_RSA_PSS                                               \
    }
    RSA_ALL(K_RSA2048),
    RSA_ALL(K_RSA3072),
    RSA_ALL(K_RSA4096),
};

static void test_good(void)
{
    for (size_t i = 0; i < sizeof(GOOD) / sizeof(GOOD[0]); i++) {
        const good *g = &GOOD[i];
        EVP_MD *md = g->md ? EVP_MD_fetch(NULL, g->md, NULL) : NULL;
        vec v = mkreq(keys[g->key], keys[g->key], md, g->pss_salt, SAN_STD);
        CU_ASSERT_PTR_NOT_NULL_FATAL(v.der);
        csr c;
        csr_err e = csr_parse(v.der, v.len, &c);
        if (e != CSR_OK)
            fprintf(stderr, "\n  GOOD[%zu]: %s\n", i, csr_err_name(e));
        CU_ASSERT_EQUAL_FATAL(e, CSR_OK);
        CU_ASSERT_EQUAL(c.key, g->want_key);
        CU_ASSERT_EQUAL(c.sig_alg, g->want_sig);
        CU_ASSERT_TRUE(c.has_ext_req);
        same_fields(&v, &c);
        if (g->pss_salt != NO_PSS) {
            CU_ASSERT_EQUAL(c.pss_hash_len, (unsigned)EVP_MD_get_size(md));
            CU_ASSERT_EQUAL(c.pss_salt, (unsigned)g->pss_salt);
        }
        if (g->want_key == CSR_KEY_RSA) {
            BIGNUM *n = NULL, *ee = NULL;
            CU_ASSERT_FATAL(EVP_PKEY_get_bn_param(keys[g->key], OSSL_PKEY_PARAM_RSA_N, &n) == 1);
            CU_ASSERT_FATAL(EVP_PKEY_get_bn_param(keys[g->key], OSSL_PKEY_PARAM_RSA_E, &ee) == 1);
            uint8_t nb[512], eb[8];
            CU_ASSERT((size_t)BN_bn2bin(n, nb) == c.rsa_n_len &&
                      memcmp(nb, c.rsa_n, c.rsa_n_len) == 0);
            CU_ASSERT((size_t)BN_bn2bin(ee, eb) == c.rsa_e_len &&
                      memcmp(eb, c.rsa_e, c.rsa_e_len) == 0);
            BN_free(n);
            BN_free(ee);
        } else {
            uint8_t pub[200];
            size_t pl = 0;
            CU_ASSERT(EVP_PKEY_get_octet_string_param(keys[g->key], OSSL_PKEY_PARAM_PUB_KEY, pub,
                                                      sizeof(pub), &pl) == 1);
            CU_ASSERT(pl == c.pub_len && memcmp(pub, c.pub, pl) == 0);
        }
        CHECK_CODE(csr_verify(ver, &c), CSR_OK);
        /* And once more: the verifier is reused. */
        CHECK_CODE(csr_verify(ver, &c), CSR_OK);
        EVP_MD_free(md);
        vec_free(&v);
    }
}

static void test_no_extensions(void)
{
    vec v = mkreq(keys[K_P256], keys[K_P256], EVP_sha256(), NO_PSS, NULL);
    csr c;
    csr_san_iter it = {0};
    csr_san_type t;
    const uint8_t *val;
    size_t len;
    bool done;
    CU_ASSERT_EQUAL_FATAL(csr_parse(v.der, v.len, &c), CSR_OK);
    CU_ASSERT_FALSE(c.has_ext_req);
    CU_ASSERT_EQUAL(csr_next_san(&c, &it, &t, &val, &len, &done), CSR_OK);
    CU_ASSERT_TRUE(done);
    CU_ASSERT_EQUAL(csr_next_san(&c, &it, &t, &val, &len, &done), CSR_OK);
    CU_ASSERT_TRUE(done);
    CHECK_CODE(csr_verify(ver, &c), CSR_OK);
    vec_free(&v);

    /* extensionRequest without a SAN: iteration ends at once. */
    v = mkreq_ext(keys[K_P256], keys[K_P256], EVP_sha256(), NO_PSS, NULL,
                  X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:FALSE"),
                  NULL);
    CU_ASSERT_EQUAL_FATAL(csr_parse(v.der, v.len, &c), CSR_OK);
    CU_ASSERT_TRUE(c.has_ext_req);
    memset(&it, 0, sizeof(it));
    CU_ASSERT_EQUAL(csr_next_san(&c, &it, &t, &val, &len, &done), CSR_OK);
    CU_ASSERT_TRUE(done);
    vec_free(&v);
}

/* Hand-built good CSRs: what the parser tolerates beyond OpenSSL's output. */
static void test_tolerated(void)
{
    parts p = p256_parts();
    blob b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_OK);
    /* Empty subject; other attributes (challengePassword). */
    p.name = bhex("3000");
    /* challengePassword SET { PrintableString "secret" } */
    p.attrs = bhex("301506092a864886f70d010907310813067365637265 74");
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_OK);
    /* sha256WithRSAEncryption with parameters absent as well as NULL. */
    p = p256_parts();
    p.spki = spki_of(keys[K_RSA2048]);
    p.signer = keys[K_RSA2048];
    p.sigalg = A_RSA_SHA256_NOPARAM;
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_OK);
    p.sigalg = A_RSA_SHA256;
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_OK);
    /* An empty Extensions SEQUENCE in the extensionRequest, and explicit
     * critical FALSE (a DEFAULT value encoded) on a SAN. */
    p = p256_parts();
    p.attrs = bhex("300f06092a864886f70d01090e31023000");
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_OK);
    p.attrs =
        bhex("302306092a864886f70d01090e311630143012 0603551d11 010100 0408 3006 8204 612e6578");
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_OK);
}

/* ------------------------------------------------------------- tests: errors */

static void test_malformed(void)
{
    vec v = mkreq(keys[K_P256], keys[K_P256], EVP_sha256(), NO_PSS, SAN_STD);
    uint8_t buf[4096];
    CU_ASSERT_FATAL(v.der && v.len + 8 < sizeof(buf));
    csr c;

    /* Every truncation. */
    for (size_t n = 0; n < v.len; n++)
        if (csr_parse(v.der, n, &c) != CSR_ERR_MALFORMED) {
            CU_FAIL("truncated CSR accepted");
            break;
        }
    CHECK_CODE(csr_parse(NULL, 0, &c), CSR_ERR_MALFORMED);
    /* Trailing byte after the CertificationRequest. */
    memcpy(buf, v.der, v.len);
    buf[v.len] = 0;
    CHECK_CODE(csr_parse(buf, v.len + 1, &c), CSR_ERR_MALFORMED);
    /* Indefinite length on the outer SEQUENCE (30 82 LL LL -> 30 80 ... 00 00). */
    CU_ASSERT_FATAL(v.der[1] == 0x82);
    buf[0] = 0x30;
    buf[1] = 0x80;
    memcpy(buf + 2, v.der + 4, v.len - 4);
    buf[v.len - 2] = buf[v.len - 1] = 0;
    CHECK_CODE(csr_parse(buf, v.len, &c), CSR_ERR_MALFORMED);
    /* Version 1: 30 82 LL LL 30 82 LL LL 02 01 00 */
    memcpy(buf, v.der, v.len);
    CU_ASSERT_FATAL(buf[8] == 0x02 && buf[9] == 0x01 && buf[10] == 0x00);
    buf[10] = 1;
    CHECK_CODE(csr_parse(buf, v.len, &c), CSR_ERR_MALFORMED);
    vec_free(&v);

    /* Version 1, properly signed by OpenSSL. */
    parts p = p256_parts();
    p.version = 1;
    blob b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_MALFORMED);
    /* No attributes [0] at all. */
    p = p256_parts();
    p.no_attrs = true;
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_MALFORMED);
    /* Name with an empty RDN SET; Name with an AttributeTypeAndValue
     * lacking its value; non-PrintableString characters in one. */
    p = p256_parts();
    p.name = bhex("30023100");
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_MALFORMED);
    p.name = bhex("3009310730050603550403");
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_MALFORMED);
    p.name = bhex("300e310c300a06035504031303612a62");
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_MALFORMED);
    /* Attribute with an empty value SET; extensionRequest twice; an
     * extensionRequest with two values. */
    p = p256_parts();
    p.attrs = bhex("300d06092a864886f70d0109073100");
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_MALFORMED);
    p.attrs = bhex("300f06092a864886f70d01090e31023000 300f06092a864886f70d01090e31023000");
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_MALFORMED);
    p.attrs = bhex("301106092a864886f70d01090e310430003000");
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_MALFORMED);
    /* Extension whose extnValue is not an OCTET STRING. */
    p.attrs = bhex("301b06092a864886f70d01090e310e300c300a0603551d0f0303070080");
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_MALFORMED);
    /* SAN: empty GeneralNames, a dNSName with a non-IA5 octet, iPAddress of
     * 5 octets, an unknown GeneralName tag [9]. */
    static const char *const bad_sans[] = {"3000", "30038201e9", "30078705 0a00000001",
                                           "3003890161"};
    for (size_t i = 0; i < sizeof(bad_sans) / sizeof(bad_sans[0]); i++) {
        uint8_t sv[64];
        size_t sn = hx(bad_sans[i], sv);
        der_w w;
        der_w_init(&w, p.attrs.b, sizeof(p.attrs.b));
        der_w_begin(&w, DER_SEQUENCE);
        der_w_oid(&w, (const uint8_t *)"\x2a\x86\x48\x86\xf7\x0d\x01\x09\x0e", 9);
        der_w_begin(&w, DER_SET);
        der_w_begin(&w, DER_SEQUENCE);
        der_w_begin(&w, DER_SEQUENCE);
        der_w_oid(&w, (const uint8_t *)"\x55\x1d\x11", 3);
        der_w_octets(&w, sv, sn);
        der_w_end(&w);
        der_w_end(&w);
        der_w_end(&w);
        der_w_end(&w);
        CU_ASSERT_FATAL(der_w_finish(&w, &p.attrs.n) == DER_OK);
        b = build(&p);
        CHECK_CODE(check_blob(&b), CSR_ERR_MALFORMED);
    }
    /* ecdsa-with-SHA256 with NULL parameters (RFC 5758: MUST be absent);
     * Ed25519 with parameters; PSS without parameters. */
    p = p256_parts();
    p.sigalg = A_ECDSA_SHA256_NULL;
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_MALFORMED);
    p.spki = spki_of(keys[K_ED25519]);
    p.signer = keys[K_ED25519];
    p.md = NULL;
    p.sigalg = A_ED25519_NULL;
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_MALFORMED);
    p.sigalg = "300b06092a864886f70d01010a";
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_MALFORMED);
    /* Ed25519 key with parameters; rsaEncryption without NULL; EC key with
     * no curve; key BIT STRING with unused bits. */
    uint8_t k[97] = {0x04};
    p = p256_parts();
    p.spki = spki("300706032b65700500", k, 32, 0);
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_MALFORMED);
    p.spki = spki("300b06092a864886f70d010101", k, 32, 0);
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_MALFORMED);
    p.spki = spki("300906072a8648ce3d0201", k, 65, 0);
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_MALFORMED);
    p.spki = spki(ALG_EC_P256, k, 65, 0);
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_INVALID_POINT); /* (0, 0): parses, not on the curve */
    k[64] = 0x80;
    p.spki = spki(ALG_EC_P256, k, 65, 7);
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_MALFORMED);
    /* RSAPublicKey that is not DER / has trailing data / negative modulus. */
    p = p256_parts();
    p.spki = spki(ALG_RSA, (const uint8_t *)"\x30\x80\x00\x00", 4, 0);
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_MALFORMED);
    p.spki = spki(ALG_RSA, (const uint8_t *)"\x30\x06\x02\x01\x05\x02\x01\x03\x00", 9, 0);
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_MALFORMED);
    p.spki = spki(ALG_RSA, (const uint8_t *)"\x30\x06\x02\x01\x85\x02\x01\x03", 8, 0);
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_MALFORMED);
    /* Signature BIT STRING with unused bits; sigalg not a SEQUENCE. */
    v = mkreq(keys[K_P256], keys[K_P256], EVP_sha256(), NO_PSS, NULL);
    memcpy(buf, v.der, v.len);
    /* ... 03 LL 00 <sig>: unused bits 1, and the last bit cleared. */
    csr pc;
    CU_ASSERT_EQUAL_FATAL(csr_parse(v.der, v.len, &pc), CSR_OK);
    size_t unused_at = (size_t)(pc.sig - v.der) - 1;
    buf[unused_at] = 1;
    buf[v.len - 1] &= 0xFE;
    CHECK_CODE(csr_parse(buf, v.len, &c), CSR_ERR_MALFORMED);
    vec_free(&v);
    /* Deeper than the nesting limit (a 20-deep value in a challengePassword). */
    p = p256_parts();
    {
        der_w w;
        der_w_init(&w, p.attrs.b, sizeof(p.attrs.b));
        der_w_begin(&w, DER_SEQUENCE);
        der_w_oid(&w, (const uint8_t *)"\x2a\x86\x48\x86\xf7\x0d\x01\x09\x07", 9);
        der_w_begin(&w, DER_SET);
        for (int i = 0; i < 12; i++)
            der_w_begin(&w, DER_SEQUENCE);
        der_w_null(&w);
        for (int i = 0; i < 12; i++)
            der_w_end(&w);
        der_w_end(&w);
        der_w_end(&w);
        CU_ASSERT_FATAL(der_w_finish(&w, &p.attrs.n) == DER_OK);
    }
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_MALFORMED);
}

static void test_unsupported_key(void)
{
    static const int ks[] = {K_SECP256K1, K_P521, K_X25519, K_ED448};
    for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++) {
        /* X25519 cannot sign: sign that one with an Ed25519 key. */
        EVP_PKEY *signer = ks[i] == K_X25519 ? keys[K_ED25519] : keys[ks[i]];
        const EVP_MD *md = EVP_PKEY_is_a(signer, "EC") ? EVP_sha256() : NULL;
        vec v = mkreq(keys[ks[i]], signer, md, NO_PSS, SAN_STD);
        CU_ASSERT_PTR_NOT_NULL_FATAL(v.der);
        CHECK_CODE(check(v.der, v.len), CSR_ERR_UNSUPPORTED_KEY);
        vec_free(&v);
    }
    /* Explicit EC parameters (specifiedCurve), implicitCurve NULL, DSA. */
    uint8_t k[65] = {0x04};
    parts p = p256_parts();
    p.spki = spki("300e06072a8648ce3d020130030201 01", k, 65, 0);
    blob b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_UNSUPPORTED_KEY);
    p.spki = spki("300b06072a8648ce3d02010500", k, 65, 0);
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_UNSUPPORTED_KEY);
    p.spki = spki("300906072a8648ce380401", (const uint8_t *)"\x02\x01\x05", 3, 0);
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_UNSUPPORTED_KEY);
    /* id-RSASSA-PSS as the key algorithm. */
    p.spki = spki("300b06092a864886f70d01010a", (const uint8_t *)"\x02\x01\x05", 3, 0);
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_UNSUPPORTED_KEY);
    /* An unsupported key wins over an unsupported signature algorithm. */
    vec v = mkreq(keys[K_SECP256K1], keys[K_SECP256K1], EVP_sha1(), NO_PSS, NULL);
    CHECK_CODE(check(v.der, v.len), CSR_ERR_UNSUPPORTED_KEY);
    vec_free(&v);
}

static void test_weak_key(void)
{
    vec v = mkreq(keys[K_RSA1024], keys[K_RSA1024], EVP_sha256(), NO_PSS, SAN_STD);
    CHECK_CODE(check(v.der, v.len), CSR_ERR_WEAK_KEY);
    vec_free(&v);
    v = mkreq(keys[K_RSA_E3], keys[K_RSA_E3], EVP_sha256(), NO_PSS, SAN_STD);
    CHECK_CODE(check(v.der, v.len), CSR_ERR_WEAK_KEY);
    vec_free(&v);
    /* 2047 and 4097 bits are weak, 2048 and 4096 bits parse (and then fail
     * the dummy signature); e = 65539 is weak. */
    static uint8_t n[520];
    static const uint8_t f4[] = {1, 0, 1}, e3[] = {1, 0, 3};
    memset(n, 0xC5, sizeof(n));
    parts p = p256_parts();
    p.signer = NULL;
    p.sigalg = A_RSA_SHA256;
    struct {
        size_t bytes;
        uint8_t top;
        const uint8_t *e;
        csr_err want;
    } cases[] = {
        {256, 0x7F, f4, CSR_ERR_WEAK_KEY},      {256, 0x80, f4, CSR_ERR_BAD_SIGNATURE},
        {512, 0xFF, f4, CSR_ERR_BAD_SIGNATURE}, {513, 0x01, f4, CSR_ERR_WEAK_KEY},
        {256, 0x80, e3, CSR_ERR_WEAK_KEY},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        n[0] = cases[i].top;
        blob rk = rsapub(n, cases[i].bytes, cases[i].e, 3);
        p.spki = spki(ALG_RSA, rk.b, rk.n, 0);
        blob b = build(&p);
        CHECK_CODE(check_blob(&b), cases[i].want);
    }
}

static void test_invalid_point(void)
{
    uint8_t pub[133];
    size_t pl = 0;
    CU_ASSERT_FATAL(EVP_PKEY_get_octet_string_param(keys[K_P256], OSSL_PKEY_PARAM_PUB_KEY, pub,
                                                    sizeof(pub), &pl) == 1 &&
                    pl == 65);
    parts p = p256_parts();
    blob b;
    csr c;

    /* Off the curve: last bit of Y flipped. Parses; csr_verify says so. */
    pub[64] ^= 1;
    p.spki = spki(ALG_EC_P256, pub, 65, 0);
    b = build(&p);
    CHECK_CODE(csr_parse(b.b, b.n, &c), CSR_OK);
    CHECK_CODE(check_blob(&b), CSR_ERR_INVALID_POINT);
    pub[64] ^= 1;
    /* X = p (not a field element). */
    uint8_t big[65];
    memset(big, 0xFF, sizeof(big));
    big[0] = 0x04;
    p.spki = spki(ALG_EC_P256, big, 65, 0);
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_INVALID_POINT);
    /* Wrong length: 64 and 66 octets, and a P-384-sized point on P-256. */
    p.spki = spki(ALG_EC_P256, pub, 64, 0);
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_INVALID_POINT);
    uint8_t longer[98] = {0};
    memcpy(longer, pub, 65);
    p.spki = spki(ALG_EC_P256, longer, 66, 0);
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_INVALID_POINT);
    p.spki = spki(ALG_EC_P256, longer, 97, 0);
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_INVALID_POINT);
    /* Compressed point (02/03 || X), the genuine one for this key. */
    uint8_t comp[33];
    comp[0] = (uint8_t)(0x02 | (pub[64] & 1));
    memcpy(comp + 1, pub + 1, 32);
    p.spki = spki(ALG_EC_P256, comp, 33, 0);
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_INVALID_POINT);
    /* The point at infinity (a single 00 octet) and an empty key. */
    p.spki = spki(ALG_EC_P256, (const uint8_t *)"", 1, 0);
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_INVALID_POINT);
    p.spki = spki(ALG_EC_P256, NULL, 0, 0);
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_INVALID_POINT);
    /* OpenSSL's own compressed encoding of a P-384 key. */
    EVP_PKEY *k = EVP_PKEY_dup(keys[K_P384]);
    CU_ASSERT_FATAL(k && EVP_PKEY_set_utf8_string_param(
                             k, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, "compressed") == 1);
    vec v = mkreq(k, keys[K_P384], EVP_sha384(), NO_PSS, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v.der);
    CHECK_CODE(check(v.der, v.len), CSR_ERR_INVALID_POINT);
    vec_free(&v);
    EVP_PKEY_free(k);
    /* Ed25519 key of 31 and 33 octets. */
    p.spki = spki(A_ED25519, pub, 31, 0);
    p.sigalg = A_ED25519;
    p.signer = NULL;
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_INVALID_POINT);
    p.spki = spki(A_ED25519, pub, 33, 0);
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_INVALID_POINT);
    /* 32 octets that are no point (y >= p): OpenSSL 3.0 cannot tell at
     * import, so this is BAD_SIGNATURE, as docs/csr.md says. */
    memset(big, 0xFF, 32);
    p.spki = spki(A_ED25519, big, 32, 0);
    b = build(&p);
    CHECK_CODE(csr_parse(b.b, b.n, &c), CSR_OK);
    CHECK_CODE(check_blob(&b), CSR_ERR_BAD_SIGNATURE);
}

static void test_unsupported_sig(void)
{
    static const struct {
        int key;
        const char *md;
    } weak[] = {{K_RSA2048, "MD5"}, {K_RSA2048, "SHA1"},   {K_P256, "SHA1"},
                {K_P256, "SHA224"}, {K_RSA2048, "SHA224"}, {K_P384, "SHA3-256"}};
    for (size_t i = 0; i < sizeof(weak) / sizeof(weak[0]); i++) {
        EVP_MD *md = EVP_MD_fetch(NULL, weak[i].md, NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(md);
        vec v = mkreq(keys[weak[i].key], keys[weak[i].key], md, NO_PSS, SAN_STD);
        CU_ASSERT_PTR_NOT_NULL_FATAL(v.der);
        CHECK_CODE(check(v.der, v.len), CSR_ERR_UNSUPPORTED_SIG);
        vec_free(&v);
        EVP_MD_free(md);
    }
    /* PSS with SHA-1 (the parameters' defaults), and with MGF1 over
     * another hash than the message digest. */
    vec v = mkreq(keys[K_RSA2048], keys[K_RSA2048], EVP_sha1(), 20, NULL);
    CHECK_CODE(check(v.der, v.len), CSR_ERR_UNSUPPORTED_SIG);
    vec_free(&v);
    v = mkreq_ext(keys[K_RSA2048], keys[K_RSA2048], EVP_sha256(), 32, EVP_sha384(), NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v.der);
    CHECK_CODE(check(v.der, v.len), CSR_ERR_UNSUPPORTED_SIG);
    vec_free(&v);
    /* PSS trailerField 2; saltLength beyond any accepted key. */
    parts p = p256_parts();
    p.spki = spki_of(keys[K_RSA2048]);
    p.signer = NULL;
    p.sigalg = "303d06092a864886f70d01010a3030a00d300b0609608648016503040201"
               "a11a301806092a864886f70d010108300b0609608648016503040201"
               "a303020102";
    blob b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_UNSUPPORTED_SIG);
    p.sigalg = "303f06092a864886f70d01010a3032a00d300b0609608648016503040201"
               "a11a301806092a864886f70d010108300b0609608648016503040201"
               "a20502030100 00";
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_UNSUPPORTED_SIG);
    /* Explicit DEFAULT trailerField 1 and NULL hash parameters: accepted. */
    {
        parts q = p256_parts();
        q.spki = spki_of(keys[K_RSA2048]);
        q.sigalg = "304606092a864886f70d01010a3039a00f300d06096086480165030402010500"
                   "a11c301a06092a864886f70d010108300d06096086480165030402010500"
                   "a203020120a303020101";
        q.signer = NULL;
        b = build(&q);
        csr c;
        CHECK_CODE(csr_parse(b.b, b.n, &c), CSR_OK);
        CU_ASSERT_EQUAL(c.sig_alg, CSR_SIG_RSA_PSS);
        CU_ASSERT_EQUAL(c.pss_hash_len, 32);
        CU_ASSERT_EQUAL(c.pss_salt, 32);
    }
    /* Key and signature algorithm that do not fit: EC key, RSA signature;
     * Ed25519 key, ECDSA signature; RSA key, Ed25519 signature; unknown OID. */
    p = p256_parts();
    p.sigalg = A_RSA_SHA256;
    p.signer = keys[K_RSA2048];
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_UNSUPPORTED_SIG);
    p.spki = spki_of(keys[K_ED25519]);
    p.sigalg = A_ECDSA_SHA256;
    p.signer = keys[K_P256];
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_UNSUPPORTED_SIG);
    p.spki = spki_of(keys[K_RSA2048]);
    p.sigalg = A_ED25519;
    p.signer = keys[K_ED25519];
    p.md = NULL;
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_UNSUPPORTED_SIG);
    p.sigalg = "300506032a0304";
    b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_UNSUPPORTED_SIG);
    /* Ed25519 key in the SPKI, ECDSA signature by a P-256 key (OpenSSL-made). */
    v = mkreq(keys[K_ED25519], keys[K_P256], EVP_sha256(), NO_PSS, NULL);
    CHECK_CODE(check(v.der, v.len), CSR_ERR_UNSUPPORTED_SIG);
    vec_free(&v);
}

static void test_bad_signature(void)
{
    static const struct {
        int key;
        const char *md;
        int salt;
    } ks[] = {{K_P256, "SHA256", NO_PSS},
              {K_P384, "SHA384", NO_PSS},
              {K_RSA2048, "SHA256", NO_PSS},
              {K_RSA3072, "SHA384", 48},
              {K_ED25519, NULL, NO_PSS}};
    for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++) {
        EVP_MD *md = ks[i].md ? EVP_MD_fetch(NULL, ks[i].md, NULL) : NULL;
        vec v = mkreq(keys[ks[i].key], keys[ks[i].key], md, ks[i].salt, SAN_STD);
        CU_ASSERT_PTR_NOT_NULL_FATAL(v.der);
        CHECK_CODE(check(v.der, v.len), CSR_OK);
        /* One bit of the signature (its last octet: for ECDSA inside s). */
        v.der[v.len - 1] ^= 0x01;
        CHECK_CODE(check(v.der, v.len), CSR_ERR_BAD_SIGNATURE);
        v.der[v.len - 1] ^= 0x01;
        /* One bit of the info: "nf1.example" -> "nf1.exbmple". */
        uint8_t *cn = memmem(v.der, v.len, "nf1.example", 11);
        CU_ASSERT_PTR_NOT_NULL_FATAL(cn);
        cn[5] ^= 0x03;
        CHECK_CODE(check(v.der, v.len), CSR_ERR_BAD_SIGNATURE);
        cn[5] ^= 0x03;
        CHECK_CODE(check(v.der, v.len), CSR_OK);
        vec_free(&v);
        EVP_MD_free(md);
    }
    /* A signature of the wrong size (64 octets of 0x55). */
    parts p = p256_parts();
    p.signer = NULL;
    blob b = build(&p);
    CHECK_CODE(check_blob(&b), CSR_ERR_BAD_SIGNATURE);
    /* Signed by another P-256 key. */
    EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    vec v = mkreq(keys[K_P256], other, EVP_sha256(), NO_PSS, NULL);
    CHECK_CODE(check(v.der, v.len), CSR_ERR_BAD_SIGNATURE);
    vec_free(&v);
    EVP_PKEY_free(other);
}

/* The verifier keeps one EC key per curve and swaps its point per CSR: no
 * state may leak from one CSR into the next, failed ones included. */
static void test_verifier_reuse(void)
{
    EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    vec ok256 = mkreq(keys[K_P256], keys[K_P256], EVP_sha256(), NO_PSS, NULL);
    vec good384 = mkreq(keys[K_P384], keys[K_P384], EVP_sha384(), NO_PSS, NULL);
    vec foreign =
        mkreq(other, keys[K_P256], EVP_sha256(), NO_PSS, NULL); /* pub other, signed by P256 */
    vec mine = mkreq(other, other, EVP_sha256(), NO_PSS, NULL);
    uint8_t pub[65];
    size_t pl;
    CU_ASSERT_FATAL(ok256.der && good384.der && foreign.der && mine.der &&
                    EVP_PKEY_get_octet_string_param(keys[K_P256], OSSL_PKEY_PARAM_PUB_KEY, pub,
                                                    sizeof(pub), &pl) == 1);
    parts p = p256_parts();
    pub[64] ^= 1;
    p.spki = spki(ALG_EC_P256, pub, 65, 0);
    blob off = build(&p);
    for (int round = 0; round < 3; round++) {
        CHECK_CODE(check(ok256.der, ok256.len), CSR_OK);
        CHECK_CODE(check_blob(&off), CSR_ERR_INVALID_POINT);
        CHECK_CODE(check(foreign.der, foreign.len), CSR_ERR_BAD_SIGNATURE);
        CHECK_CODE(check(good384.der, good384.len), CSR_OK);
        CHECK_CODE(check_blob(&off), CSR_ERR_INVALID_POINT);
        CHECK_CODE(check(mine.der, mine.len), CSR_OK);
        CHECK_CODE(check(ok256.der, ok256.len), CSR_OK);
    }
    /* Two verifiers side by side (as two workers would have). */
    csr_verifier *v2 = csr_verifier_new();
    csr a, b;
    CU_ASSERT_FATAL(v2 && csr_parse(ok256.der, ok256.len, &a) == CSR_OK &&
                    csr_parse(mine.der, mine.len, &b) == CSR_OK);
    CHECK_CODE(csr_verify(ver, &a), CSR_OK);
    CHECK_CODE(csr_verify(v2, &b), CSR_OK);
    CHECK_CODE(csr_verify(ver, &b), CSR_OK);
    CHECK_CODE(csr_verify(v2, &a), CSR_OK);
    csr_verifier_free(v2);
    csr_verifier_free(NULL);
    vec_free(&ok256);
    vec_free(&good384);
    vec_free(&foreign);
    vec_free(&mine);
    EVP_PKEY_free(other);
}

/* ------------------------------------------------------------- SANs */

static void test_san_iteration(void)
{
    vec v = mkreq(keys[K_P256], keys[K_P256], EVP_sha256(), NO_PSS,
                  "DNS:amf1.5gc.mnc001.mcc001.3gppnetwork.org,"
                  "URI:urn:uuid:4b2b3c3e-1f45-4d6a-9a1b-0c1d2e3f4a5b,IP:10.1.2.3,"
                  "email:ops@example.org,DNS:amf2.example,IP:2001:db8::1,RID:1.2.3.4");
    csr c;
    CU_ASSERT_EQUAL_FATAL(csr_parse(v.der, v.len, &c), CSR_OK);
    static const struct {
        csr_san_type t;
        const char *v;
        size_t len;
    } want[] = {
        {CSR_SAN_DNS, "amf1.5gc.mnc001.mcc001.3gppnetwork.org", 38},
        {CSR_SAN_URI, "urn:uuid:4b2b3c3e-1f45-4d6a-9a1b-0c1d2e3f4a5b", 45},
        {CSR_SAN_OTHER, "\x87\x04\x0a\x01\x02\x03", 6},
        {CSR_SAN_OTHER, "\x81\x0fops@example.org", 17},
        {CSR_SAN_DNS, "amf2.example", 12},
        {CSR_SAN_OTHER, "\x87\x10\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01",
         18},
        {CSR_SAN_OTHER, "\x88\x03\x2a\x03\x04", 5},
    };
    csr_san_iter it = {0};
    size_t i = 0;
    for (;;) {
        csr_san_type t;
        const uint8_t *val;
        size_t len;
        bool done;
        CU_ASSERT_EQUAL_FATAL(csr_next_san(&c, &it, &t, &val, &len, &done), CSR_OK);
        if (done)
            break;
        CU_ASSERT_FATAL(i < sizeof(want) / sizeof(want[0]));
        CU_ASSERT_EQUAL(t, want[i].t);
        CU_ASSERT(len == want[i].len && memcmp(val, want[i].v, len) == 0);
        i++;
    }
    CU_ASSERT_EQUAL(i, sizeof(want) / sizeof(want[0]));
    CHECK_CODE(csr_verify(ver, &c), CSR_OK);
    vec_free(&v);
}

static void test_duplicate_san(void)
{
    vec v = mkreq_ext(keys[K_P256], keys[K_P256], EVP_sha256(), NO_PSS, NULL,
                      san_ext("DNS:a.example"), san_ext("DNS:b.example"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(v.der);
    CHECK_CODE(check(v.der, v.len), CSR_ERR_MALFORMED);
    vec_free(&v);
    /* A SAN beside another extension is fine. */
    v = mkreq_ext(keys[K_P256], keys[K_P256], EVP_sha256(), NO_PSS, NULL, san_ext("DNS:a.example"),
                  X509V3_EXT_conf_nid(NULL, NULL, NID_key_usage, "digitalSignature"));
    CHECK_CODE(check(v.der, v.len), CSR_OK);
    vec_free(&v);
}

/* Parse + iterate a CSR with n DNS SANs: every name comes back, the
 * signature verifies. Timed (the timing suite): passes repeated for 50 ms;
 * returns seconds per pass. */
static double many_sans(unsigned n, size_t *der_len)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    char host[64];
    for (unsigned i = 0; i < n; i++) {
        GENERAL_NAME *g = GENERAL_NAME_new();
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        snprintf(host, sizeof(host), "nf%05u.5gc.example", i);
        ASN1_STRING_set(s, host, -1);
        GENERAL_NAME_set0_value(g, GEN_DNS, s);
        sk_GENERAL_NAME_push(gens, g);
    }
    X509_EXTENSION *e = X509V3_EXT_i2d(NID_subject_alt_name, 0, gens);
    GENERAL_NAMES_free(gens);
    vec v = mkreq_ext(keys[K_P256], keys[K_P256], EVP_sha256(), NO_PSS, NULL, e, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v.der);
    *der_len = v.len;
    csr c;
    unsigned count = 0, dns = 0, rounds = 0;
    bool ok = true;
    double t0 = cf_now_s(), t;
    do {
        ok = ok && csr_parse(v.der, v.len, &c) == CSR_OK;
        csr_san_iter it = {0};
        count = dns = 0;
        while (ok) {
            csr_san_type ty;
            const uint8_t *val;
            size_t len;
            bool done;
            ok = csr_next_san(&c, &it, &ty, &val, &len, &done) == CSR_OK;
            if (done)
                break;
            dns += ty == CSR_SAN_DNS;
            count++;
        }
        rounds++;
        t = cf_now_s() - t0;
    } while (cf_test_timing() && t < 0.05);
    CU_ASSERT_TRUE_FATAL(ok);
    CU_ASSERT_EQUAL(count, n);
    CU_ASSERT_EQUAL(dns, n);
    CHECK_CODE(csr_verify(ver, &c), CSR_OK);
    vec_free(&v);
    return t / rounds;
}

/* 1,000 and 10,000 names come back whole. In the timing suite also: the
 * cost is linear, ten times the names not a hundred times the time (a
 * wide margin for noisy machines). */
static void test_ten_thousand_sans(void)
{
    size_t l1, l10;
    double t1 = many_sans(1000, &l1), t10 = many_sans(10000, &l10);
    printf("\n    1,000 SANs (%zu B): %.0f us; 10,000 SANs (%zu B): %.0f us per parse+iterate ", l1,
           t1 * 1e6, l10, t10 * 1e6);
    if (cf_test_timing()) {
        CU_ASSERT(t10 < t1 * 30);
        CU_ASSERT(t10 < 0.5);
    }
}

/* ------------------------------------------------------------- seeds */

typedef struct seed {
    const char *name;
    blob b;
} seed;

/* The seed corpus: small, one per outcome and shape. */
static size_t make_seeds(seed *s, size_t max)
{
    size_t n = 0;
#define ADD_VEC(nm, vv)                                                                            \
    do {                                                                                           \
        vec v_ = (vv);                                                                             \
        CU_ASSERT_FATAL(v_.der &&v_.len <= sizeof(s[n].b.b) && n < max);                           \
        s[n].name = nm;                                                                            \
        memcpy(s[n].b.b, v_.der, v_.len);                                                          \
        s[n++].b.n = v_.len;                                                                       \
        vec_free(&v_);                                                                             \
    } while (0)
#define ADD_BLOB(nm, bb)                                                                           \
    do {                                                                                           \
        CU_ASSERT_FATAL(n < max);                                                                  \
        s[n].name = nm;                                                                            \
        s[n++].b = (bb);                                                                           \
    } while (0)
    ADD_VEC("ok_p256_sha256_sans.der", mkreq(keys[K_P256], keys[K_P256], EVP_sha256(), NO_PSS,
                                             SAN_STD ",IP:10.0.0.1,email:a@b.example,RID:1.2.3"));
    ADD_VEC("ok_p384_sha384.der",
            mkreq(keys[K_P384], keys[K_P384], EVP_sha384(), NO_PSS, "DNS:nf2.example"));
    ADD_VEC("ok_rsa2048_sha256.der",
            mkreq(keys[K_RSA2048], keys[K_RSA2048], EVP_sha256(), NO_PSS, SAN_STD));
    ADD_VEC("ok_rsa2048_pss_sha256.der",
            mkreq(keys[K_RSA2048], keys[K_RSA2048], EVP_sha256(), 32, SAN_STD));
    ADD_VEC("ok_rsa2048_pss_sha512_salt20.der",
            mkreq(keys[K_RSA2048], keys[K_RSA2048], EVP_sha512(), 20, NULL));
    ADD_VEC("ok_ed25519.der", mkreq(keys[K_ED25519], keys[K_ED25519], NULL, NO_PSS, SAN_STD));
    ADD_VEC("malformed_duplicate_san.der",
            mkreq_ext(keys[K_P256], keys[K_P256], EVP_sha256(), NO_PSS, NULL,
                      san_ext("DNS:a.example"), san_ext("URI:urn:uuid:x")));
    ADD_VEC("unsupported-key_secp256k1.der",
            mkreq(keys[K_SECP256K1], keys[K_SECP256K1], EVP_sha256(), NO_PSS, NULL));
    ADD_VEC("unsupported-key_x25519.der",
            mkreq(keys[K_X25519], keys[K_ED25519], NULL, NO_PSS, NULL));
    ADD_VEC("weak-key_rsa1024.der",
            mkreq(keys[K_RSA1024], keys[K_RSA1024], EVP_sha256(), NO_PSS, NULL));
    ADD_VEC("unsupported-sig_ecdsa_sha1.der",
            mkreq(keys[K_P256], keys[K_P256], EVP_sha1(), NO_PSS, NULL));
    ADD_VEC(
        "unsupported-sig_pss_mgf1_mismatch.der",
        mkreq_ext(keys[K_RSA2048], keys[K_RSA2048], EVP_sha256(), 32, EVP_sha384(), NULL, NULL));

    uint8_t pub[65];
    size_t pl;
    CU_ASSERT_FATAL(EVP_PKEY_get_octet_string_param(keys[K_P256], OSSL_PKEY_PARAM_PUB_KEY, pub,
                                                    sizeof(pub), &pl) == 1);
    parts p = p256_parts();
    pub[64] ^= 1;
    p.spki = spki(ALG_EC_P256, pub, 65, 0);
    ADD_BLOB("invalid-point_off_curve.der", build(&p));
    pub[64] ^= 1;
    pub[0] = 0x03;
    p.spki = spki(ALG_EC_P256, pub, 33, 0);
    ADD_BLOB("invalid-point_compressed.der", build(&p));
    p = p256_parts();
    p.attrs = bhex("301506092a864886f70d010907310813067365637265 74"
                   "302306092a864886f70d01090e311630143012 0603551d11 010100 0408 3006 8204 "
                   "612e6578");
    ADD_BLOB("ok_challenge_critical_false.der", build(&p));
    p = p256_parts();
    p.signer = NULL;
    ADD_BLOB("bad-signature_dummy.der", build(&p));
    p = p256_parts();
    p.spki = spki_of(keys[K_RSA2048]);
    p.signer = NULL;
    p.sigalg = "304606092a864886f70d01010a3039a00f300d06096086480165030402010500"
               "a11c301a06092a864886f70d010108300d06096086480165030402010500"
               "a203020120a303020101";
    ADD_BLOB("bad-signature_pss_explicit_defaults.der", build(&p));
    p = p256_parts();
    p.version = 1;
    ADD_BLOB("malformed_version1.der", build(&p));
    return n;
#undef ADD_VEC
#undef ADD_BLOB
}

static seed seeds[32];

static void test_seed_corpus(void)
{
    /* The generated seeds have the outcome their names say. */
    size_t n = make_seeds(seeds, sizeof(seeds) / sizeof(seeds[0]));
    for (size_t i = 0; i < n; i++) {
        const char *got = csr_err_name(check_blob(&seeds[i].b));
        size_t gl = strlen(got);
        if (strncmp(seeds[i].name, got, gl) != 0 || seeds[i].name[gl] != '_') {
            fprintf(stderr, "\n  seed %s: %s\n", seeds[i].name, got);
            CU_FAIL("generated seed has another outcome than its name");
        }
    }
    /* So have the committed ones (crash-* only must not crash). */
    const char *src = getenv("CF_SOURCE_DIR");
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus/csr", src ? src : ".");
    DIR *d = opendir(dir);
    if (d == NULL) {
        CU_FAIL("no seed corpus");
        return;
    }
    struct dirent *de;
    unsigned files = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[1024];
        static uint8_t buf[1 << 20];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        FILE *f = fopen(path, "rb");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        size_t len = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        files++;
        csr_err e = check(buf, len);
        if (strncmp(de->d_name, "crash-", 6) == 0)
            continue;
        const char *got = csr_err_name(e);
        size_t gl = strlen(got);
        if (strncmp(de->d_name, got, gl) != 0 || de->d_name[gl] != '_') {
            fprintf(stderr, "\n  committed seed %s: %s\n", de->d_name, got);
            CU_FAIL("committed seed has another outcome than its name");
        }
    }
    closedir(d);
    CU_ASSERT(files >= 10);
}

static const char *seed_dir;

static void test_write_seeds(void)
{
    size_t n = make_seeds(seeds, sizeof(seeds) / sizeof(seeds[0]));
    for (size_t i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", seed_dir, seeds[i].name);
        FILE *f = fopen(path, "wb");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        CU_ASSERT(fwrite(seeds[i].b.b, 1, seeds[i].b.n, f) == seeds[i].b.n);
        CU_ASSERT(fclose(f) == 0);
    }
    printf("\n    %zu seeds written to %s ", n, seed_dir);
}

/* ------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    static const cf_test all[] = {
        {"error names", test_err_names},
        {"good CSRs: every key type and signature algorithm", test_good},
        {"no extensions / no SAN", test_no_extensions},
        {"tolerated encodings", test_tolerated},
        {"MALFORMED", test_malformed},
        {"UNSUPPORTED_KEY", test_unsupported_key},
        {"WEAK_KEY", test_weak_key},
        {"INVALID_POINT", test_invalid_point},
        {"UNSUPPORTED_SIG", test_unsupported_sig},
        {"BAD_SIGNATURE", test_bad_signature},
        {"verifier reuse: no state across CSRs", test_verifier_reuse},
        {"SAN iteration", test_san_iteration},
        {"duplicate SAN extension", test_duplicate_san},
        {"10,000 SANs", test_ten_thousand_sans},
        {"seed corpus", test_seed_corpus},
    };
    static const cf_test timed[] = {
        {"10,000 SANs: parse and iterate in linear time", test_ten_thousand_sans},
    };
    static const cf_test writer[] = {{"write seeds", test_write_seeds}};
    static const cf_suite suites[] = {
        CF_SUITE("csr", suite_init, suite_clean, all),
        CF_TIMING_SUITE("csr, timed", suite_init, suite_clean, timed),
    };
    static const cf_suite seed_suites[] = {CF_SUITE("csr seeds", suite_init, suite_clean, writer)};
    ver = csr_verifier_new();
    if (ver == NULL)
        return 2;
    int rc;
    if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0) {
        seed_dir = argv[2];
        rc = cf_test_main(1, argv, seed_suites, 1);
    } else {
        rc = CF_TEST_MAIN(argc, argv, suites);
    }
    csr_verifier_free(ver);
    return rc;
}
