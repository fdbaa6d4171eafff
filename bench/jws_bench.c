/* jws_bench — acme/jws cost per request against raw EVP_DigestVerify.
 *
 *   jws_bench [SECONDS_PER_ROUND] [ROUNDS]   (default 0.3 s, 5 rounds)
 *
 * One thread. For each account algorithm a key is made with OpenSSL and
 * imported back through acme_jwk_import (so every variant verifies with
 * the same EVP_PKEY), and two requests are signed with acme_jws_sign: a
 * newOrder with "kid" (the common case: the server has the key) and a
 * newAccount with "jwk". In alternating rounds, so that frequency drift
 * hits every variant alike, the median round of each is printed:
 *   raw EVP           EVP_MD_CTX_new + EVP_DigestVerifyInit + EVP_DigestVerify
 *                     + free over the same signing input, ECDSA signature
 *                     already DER (the floor: what any verifier must pay)
 *   verify            acme_jws_verify on the parsed request (r||s → DER,
 *                     alg/key checks, the same EVP calls)
 *   parse             acme_jws_parse + acme_jws_free of the kid request
 *   parse+verify      the two above: a kid request, key looked up elsewhere
 *   jwk import        acme_jwk_import of the newAccount's JWK + free
 *   newAccount        parse + check_acme + import + verify + free
 * and the ratio of raw EVP's cost to each (100 % = as cheap as the floor).
 * Results go to bench/RESULTS.md with machine, command and date.
 */
#include "acme/jws.h"

#include <openssl/crypto.h>
#include <openssl/ec.h>
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

__attribute__((noreturn)) static void die(const char *what)
{
    fprintf(stderr, "jws_bench: %s failed\n", what);
    exit(1);
}

enum { V_RAW, V_VERIFY, V_PARSE, V_PARSE_VERIFY, V_IMPORT, V_NEWACCT, V__MAX };
static const char *const VNAMES[V__MAX] = {
    [V_RAW] = "raw EVP",       [V_VERIFY] = "verify",
    [V_PARSE] = "parse",       [V_PARSE_VERIFY] = "parse+verify",
    [V_IMPORT] = "jwk import", [V_NEWACCT] = "newAccount",
};

typedef struct fixture {
    const char *label;
    EVP_PKEY *key; /* imported from the JWK: what a server verifies with */
    const EVP_MD *md;
    char *kid_body, *jwk_body;
    size_t kid_len, jwk_len;
    acme_jws parsed;           /* the kid request */
    uint8_t der[160], *rawsig; /* the floor's signature */
    size_t der_len;
    json_t *jwk;
} fixture;

static volatile int sink;

static void one(fixture *f, int v)
{
    acme_jws j;
    acme_jws_err e;
    EVP_PKEY *k = NULL;
    switch (v) {
    case V_RAW: {
        EVP_MD_CTX *m = EVP_MD_CTX_new();
        if (m == NULL || EVP_DigestVerifyInit(m, NULL, f->md, NULL, f->key) != 1 ||
            EVP_DigestVerify(m, f->rawsig, f->der_len, (const uint8_t *)f->parsed.signing_input,
                             f->parsed.signing_input_len) != 1)
            die("raw verify");
        EVP_MD_CTX_free(m);
        break;
    }
    case V_VERIFY:
        if (acme_jws_verify(&f->parsed, f->key, &e, NULL, 0) != 0)
            die("acme_jws_verify");
        break;
    case V_PARSE:
    case V_PARSE_VERIFY:
        if (acme_jws_parse(f->kid_body, f->kid_len, &j, &e, NULL, 0) != 0 ||
            (v == V_PARSE_VERIFY && acme_jws_verify(&j, f->key, &e, NULL, 0) != 0))
            die("parse (+verify)");
        acme_jws_free(&j);
        break;
    case V_IMPORT:
        if (acme_jwk_import(f->jwk, &k, NULL, &e, NULL, 0) != 0)
            die("acme_jwk_import");
        EVP_PKEY_free(k);
        break;
    case V_NEWACCT:
        if (acme_jws_parse(f->jwk_body, f->jwk_len, &j, &e, NULL, 0) != 0 ||
            acme_jws_check_acme(&j, 1, &e, NULL, 0) != 0 ||
            acme_jwk_import(j.jwk, &k, NULL, &e, NULL, 0) != 0 ||
            acme_jws_verify(&j, k, &e, NULL, 0) != 0)
            die("newAccount");
        EVP_PKEY_free(k);
        acme_jws_free(&j);
        break;
    }
    sink++;
}

static void setup(fixture *f, const char *label, EVP_PKEY *made, const EVP_MD *md)
{
    acme_jws_err e;
    static const char order[] = "{\"identifiers\":[{\"type\":\"dns\",\"value\":\"amf1.5gc.mnc001."
                                "mcc001.3gppnetwork.org\"}]}";
    static const char acct[] =
        "{\"termsOfServiceAgreed\":true,\"contact\":[\"mailto:nf-ops@5gc.example\"]}";
    memset(f, 0, sizeof(*f));
    f->label = label;
    f->md = md;
    if (made == NULL || (f->jwk = acme_jwk_from_pkey(made)) == NULL ||
        acme_jwk_import(f->jwk, &f->key, NULL, &e, NULL, 0) != 0)
        die("key");
    json_t *h1 = json_pack("{s:s, s:s, s:s}", "nonce", "oFvnlFP1wIhRlYS2jTaXbA", "url",
                           "https://acme.5gc.example/acme/new-order", "kid",
                           "https://acme.5gc.example/acme/acct/evOfKhNU60wg");
    json_t *h2 = json_pack("{s:s, s:s, s:O}", "nonce", "oFvnlFP1wIhRlYS2jTaXbA", "url",
                           "https://acme.5gc.example/acme/new-account", "jwk", f->jwk);
    if (h1 == NULL || h2 == NULL ||
        (f->kid_body = acme_jws_sign(made, h1, (const uint8_t *)order, strlen(order))) == NULL ||
        (f->jwk_body = acme_jws_sign(made, h2, (const uint8_t *)acct, strlen(acct))) == NULL)
        die("signing the requests");
    json_decref(h1);
    json_decref(h2);
    f->kid_len = strlen(f->kid_body);
    f->jwk_len = strlen(f->jwk_body);
    if (acme_jws_parse(f->kid_body, f->kid_len, &f->parsed, &e, NULL, 0) != 0)
        die("parse");
    /* The floor verifies what OpenSSL takes: DER for ECDSA. */
    f->rawsig = f->parsed.sig;
    f->der_len = f->parsed.sig_len;
    if (EVP_PKEY_is_a(f->key, "EC")) {
        size_t h = f->parsed.sig_len / 2;
        ECDSA_SIG *s = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(f->parsed.sig, (int)h, NULL);
        BIGNUM *ss = BN_bin2bn(f->parsed.sig + h, (int)h, NULL);
        uint8_t *p = f->der;
        if (s == NULL || r == NULL || ss == NULL || ECDSA_SIG_set0(s, r, ss) != 1 ||
            i2d_ECDSA_SIG(s, NULL) > (int)sizeof(f->der))
            die("DER signature");
        f->der_len = (size_t)i2d_ECDSA_SIG(s, &p);
        f->rawsig = f->der;
        ECDSA_SIG_free(s);
    }
    EVP_PKEY_free(made);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 0.3;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    if (secs <= 0 || rounds < 1 || rounds > 99) {
        fprintf(stderr, "usage: jws_bench [SECONDS_PER_ROUND] [ROUNDS]\n");
        return 2;
    }
    fixture fx[4];
    setup(&fx[0], "ES256 (P-256)", EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), EVP_sha256());
    setup(&fx[1], "ES384 (P-384)", EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384"), EVP_sha384());
    setup(&fx[2], "RS256 (RSA-2048)", EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048),
          EVP_sha256());
    setup(&fx[3], "EdDSA (Ed25519)", EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), NULL);

    printf("jws_bench: %s, 1 thread, %d rounds of %.2f s per variant, median\n\n",
           OpenSSL_version(OPENSSL_VERSION), rounds, secs);
    printf("| alg | variant | µs/op | ops/s | raw EVP / variant |\n");
    printf("|---|---|---:|---:|---:|\n");
    for (size_t k = 0; k < sizeof(fx) / sizeof(fx[0]); k++) {
        fixture *f = &fx[k];
        double us[V__MAX][99];
        for (int v = 0; v < V__MAX; v++) /* warm-up */
            for (int i = 0; i < 50; i++)
                one(f, v);
        for (int r = 0; r < rounds; r++)
            for (int v = 0; v < V__MAX; v++) {
                long n = 0;
                double t0 = now_s(), t;
                do {
                    for (int i = 0; i < 8; i++)
                        one(f, v);
                    n += 8;
                } while ((t = now_s() - t0) < secs);
                us[v][r] = t / (double)n * 1e6;
            }
        double med[V__MAX];
        for (int v = 0; v < V__MAX; v++) {
            qsort(us[v], (size_t)rounds, sizeof(double), cmp_double);
            med[v] = us[v][rounds / 2];
        }
        for (int v = 0; v < V__MAX; v++)
            printf("| %s | %s | %.2f | %.0f | %.1f %% |\n", v == 0 ? f->label : "", VNAMES[v],
                   med[v], 1e6 / med[v], 100.0 * med[V_RAW] / med[v]);
    }
    printf("\n(kid request %zu bytes for ES256; newAccount %zu bytes)\n", fx[0].kid_len,
           fx[0].jwk_len);
    for (size_t k = 0; k < sizeof(fx) / sizeof(fx[0]); k++) {
        acme_jws_free(&fx[k].parsed);
        EVP_PKEY_free(fx[k].key);
        json_decref(fx[k].jwk);
        free(fx[k].kid_body);
        free(fx[k].jwk_body);
    }
    return 0;
}
