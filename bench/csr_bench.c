/* csr_bench — engine/csr cost per CSR against OpenSSL's naive path.
 *
 *   csr_bench [SECONDS_PER_ROUND] [ROUNDS]   (default 0.3 s, 5 rounds)
 *
 * One thread. For each key type a CSR is made with OpenSSL (X509_REQ, two
 * SANs) and then, in alternating rounds so that frequency drift hits every
 * variant alike, the variants below are timed; the median round is printed
 * in µs per CSR:
 *   parse            csr_parse
 *   parse+verify     csr_parse + csr_verify (what the pipeline does)
 *   naive            d2i_X509_REQ + X509_REQ_get0_pubkey + X509_REQ_verify + free
 *   naive decode     d2i_X509_REQ + X509_REQ_get0_pubkey + free
 *   fromdata         EVP_PKEY_fromdata on a reused context (key build alone)
 *   +public_check    fromdata + EVP_PKEY_public_check
 *   raw_public_key   Ed25519: EVP_PKEY_new_raw_public_key_ex instead of fromdata
 *   set_params       EC: a kept per-curve EVP_PKEY whose point is replaced with
 *                    EVP_PKEY_set_params(encoded-pub-key) instead of fromdata
 *   floor            EVP_DigestVerify with the key already built
 * Results go to docs/csr.md (and bench/RESULTS.md when the owner wants).
 */
#include "engine/csr/csr.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct fixture {
    const char *label;
    EVP_PKEY *key;
    uint8_t *der;
    size_t len;
    csr c;
    csr_verifier *v;
    EVP_PKEY_CTX *fd; /* fromdata context for this key type */
    EVP_PKEY *built;  /* for the floor */
    EVP_PKEY *kept;   /* EC: group only, point set per CSR */
    EVP_MD_CTX *mctx;
    const EVP_MD *md;
} fixture;

static volatile int sink;

__attribute__((noreturn)) static void die(const char *what)
{
    fprintf(stderr, "csr_bench: %s failed\n", what);
    exit(1);
}

static EVP_PKEY *fromdata(fixture *f)
{
    OSSL_PARAM p[3];
    EVP_PKEY *pk = NULL;
    static char p256[] = "P-256", p384[] = "P-384";
    switch (f->c.key) {
    case CSR_KEY_EC_P256:
    case CSR_KEY_EC_P384:
        p[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                                f->c.key == CSR_KEY_EC_P256 ? p256 : p384, 0);
        p[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)f->c.pub,
                                                 f->c.pub_len);
        p[2] = OSSL_PARAM_construct_end();
        break;
    case CSR_KEY_ED25519:
        p[0] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)f->c.pub,
                                                 f->c.pub_len);
        p[1] = OSSL_PARAM_construct_end();
        break;
    default:
        return NULL; /* RSA: see csr.c; not repeated here */
    }
    if (EVP_PKEY_fromdata(f->fd, &pk, EVP_PKEY_PUBLIC_KEY, p) != 1)
        die("EVP_PKEY_fromdata");
    return pk;
}

enum {
    V_PARSE,
    V_PARSE_VERIFY,
    V_NAIVE,
    V_NAIVE_DECODE,
    V_FROMDATA,
    V_PUBCHECK,
    V_RAWPUB,
    V_SETPARAMS,
    V_FLOOR,
    V__MAX
};
static const char *const VNAMES[V__MAX] = {
    [V_PARSE] = "parse",
    [V_PARSE_VERIFY] = "parse+verify",
    [V_NAIVE] = "naive d2i+verify",
    [V_NAIVE_DECODE] = "naive decode",
    [V_FROMDATA] = "fromdata",
    [V_PUBCHECK] = "fromdata+public_check",
    [V_RAWPUB] = "raw_public_key",
    [V_SETPARAMS] = "set_params (kept key)",
    [V_FLOOR] = "floor (key built)",
};

static void one(fixture *f, int variant)
{
    csr c;
    switch (variant) {
    case V_PARSE:
        if (csr_parse(f->der, f->len, &c) != CSR_OK)
            die("csr_parse");
        break;
    case V_PARSE_VERIFY:
        if (csr_parse(f->der, f->len, &c) != CSR_OK || csr_verify(f->v, &c) != CSR_OK)
            die("csr_parse+csr_verify");
        break;
    case V_NAIVE:
    case V_NAIVE_DECODE: {
        const unsigned char *p = f->der;
        X509_REQ *r = d2i_X509_REQ(NULL, &p, (long)f->len);
        EVP_PKEY *pk = r ? X509_REQ_get0_pubkey(r) : NULL;
        if (pk == NULL || (variant == V_NAIVE && X509_REQ_verify(r, pk) != 1))
            die("naive path");
        X509_REQ_free(r);
        break;
    }
    case V_FROMDATA:
    case V_PUBCHECK: {
        EVP_PKEY *pk = fromdata(f);
        if (variant == V_PUBCHECK) {
            EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
            if (pc == NULL || EVP_PKEY_public_check(pc) != 1)
                die("EVP_PKEY_public_check");
            EVP_PKEY_CTX_free(pc);
        }
        EVP_PKEY_free(pk);
        break;
    }
    case V_RAWPUB: {
        EVP_PKEY *pk =
            EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, f->c.pub, f->c.pub_len);
        if (pk == NULL)
            die("EVP_PKEY_new_raw_public_key_ex");
        EVP_PKEY_free(pk);
        break;
    }
    case V_SETPARAMS: {
        OSSL_PARAM p[2];
        p[0] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                                 (void *)f->c.pub, f->c.pub_len);
        p[1] = OSSL_PARAM_construct_end();
        if (EVP_PKEY_set_params(f->kept, p) != 1)
            die("EVP_PKEY_set_params");
        break;
    }
    case V_FLOOR:
        if (EVP_DigestVerifyInit(f->mctx, NULL, f->md, NULL, f->built) != 1 ||
            EVP_DigestVerify(f->mctx, f->c.sig, f->c.sig_len, f->c.info.raw, f->c.info.rawlen) != 1)
            die("floor verify");
        EVP_MD_CTX_reset(f->mctx);
        break;
    }
    sink++;
}

static bool applies(const fixture *f, int variant)
{
    if (variant == V_RAWPUB)
        return f->c.key == CSR_KEY_ED25519;
    if (variant == V_SETPARAMS)
        return f->kept != NULL;
    if (variant == V_FROMDATA || variant == V_PUBCHECK)
        return f->c.key != CSR_KEY_RSA;
    return true;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void setup(fixture *f, const char *label, EVP_PKEY *key, const EVP_MD *md)
{
    X509_REQ *r = X509_REQ_new();
    X509_NAME *n = X509_NAME_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *san = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name,
                                              "DNS:amf1.5gc.mnc001.mcc001.3gppnetwork.org,"
                                              "URI:urn:uuid:4b2b3c3e-1f45-4d6a-9a1b-0c1d2e3f4a5b");
    unsigned char *der = NULL;
    int len = 0;
    if (!key || !r || !n || !exts || !san ||
        !X509_NAME_add_entry_by_txt(n, "C", MBSTRING_ASC, (const unsigned char *)"DE", -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC,
                                    (const unsigned char *)"5gc.mnc001.mcc001.3gppnetwork.org", -1,
                                    -1, 0) ||
        !X509_REQ_set_subject_name(r, n) || !X509_REQ_set_pubkey(r, key) ||
        !sk_X509_EXTENSION_push(exts, san) || !X509_REQ_add_extensions(r, exts) ||
        !X509_REQ_sign(r, key, md) || (len = i2d_X509_REQ(r, &der)) <= 0)
        die("making the CSR");
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_NAME_free(n);
    X509_REQ_free(r);
    memset(f, 0, sizeof(*f));
    f->label = label;
    f->key = key;
    f->der = der;
    f->len = (size_t)len;
    f->md = md;
    if (csr_parse(f->der, f->len, &f->c) != CSR_OK || (f->v = csr_verifier_new()) == NULL ||
        (f->mctx = EVP_MD_CTX_new()) == NULL)
        die("setup");
    const char *type = f->c.key == CSR_KEY_RSA       ? "RSA"
                       : f->c.key == CSR_KEY_ED25519 ? "ED25519"
                                                     : "EC";
    f->fd = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (f->fd == NULL || EVP_PKEY_fromdata_init(f->fd) != 1)
        die("fromdata context");
    f->built = key;
    if (f->c.key == CSR_KEY_EC_P256 || f->c.key == CSR_KEY_EC_P384) {
        OSSL_PARAM p[2];
        p[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                                f->c.key == CSR_KEY_EC_P256 ? "P-256" : "P-384", 0);
        p[1] = OSSL_PARAM_construct_end();
        if (EVP_PKEY_fromdata(f->fd, &f->kept, EVP_PKEY_KEY_PARAMETERS, p) != 1)
            die("EC parameters key");
    }
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 0.3;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    if (secs <= 0 || rounds < 1 || rounds > 99) {
        fprintf(stderr, "usage: csr_bench [SECONDS_PER_ROUND] [ROUNDS]\n");
        return 2;
    }
    fixture fx[4];
    setup(&fx[0], "P-256 ecdsa-with-SHA256", EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"),
          EVP_sha256());
    setup(&fx[1], "P-384 ecdsa-with-SHA384", EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384"),
          EVP_sha384());
    setup(&fx[2], "RSA-2048 sha256WithRSA", EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048),
          EVP_sha256());
    setup(&fx[3], "Ed25519", EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), NULL);

    printf("csr_bench: %s, 1 thread, %d rounds of %.2f s per variant, median µs per CSR\n\n",
           OpenSSL_version(OPENSSL_VERSION), rounds, secs);
    for (size_t k = 0; k < sizeof(fx) / sizeof(fx[0]); k++) {
        fixture *f = &fx[k];
        double us[V__MAX][99];
        for (int v = 0; v < V__MAX; v++) /* warm-up */
            if (applies(f, v))
                for (int i = 0; i < 50; i++)
                    one(f, v);
        for (int r = 0; r < rounds; r++) {
            for (int v = 0; v < V__MAX; v++) {
                if (!applies(f, v))
                    continue;
                long n = 0;
                double t0 = now_s(), t;
                do {
                    for (int i = 0; i < 16; i++)
                        one(f, v);
                    n += 16;
                } while ((t = now_s() - t0) < secs);
                us[v][r] = t / (double)n * 1e6;
            }
        }
        printf("%s (%zu-byte CSR)\n", f->label, f->len);
        for (int v = 0; v < V__MAX; v++) {
            if (!applies(f, v))
                continue;
            qsort(us[v], (size_t)rounds, sizeof(double), cmp_double);
            printf("  %-24s %9.2f µs\n", VNAMES[v], us[v][rounds / 2]);
        }
        printf("\n");
    }
    for (size_t k = 0; k < sizeof(fx) / sizeof(fx[0]); k++) {
        csr_verifier_free(fx[k].v);
        EVP_PKEY_CTX_free(fx[k].fd);
        EVP_MD_CTX_free(fx[k].mctx);
        EVP_PKEY_free(fx[k].key);
        EVP_PKEY_free(fx[k].kept);
        OPENSSL_free(fx[k].der);
    }
    return 0;
}
