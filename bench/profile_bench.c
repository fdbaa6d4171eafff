/* profile_bench — the hot path of engine/profile per certificate.
 *
 *   profile_bench [--iterations N] [--rounds R]    (default 20000, 5)
 *
 * One thread, the NF profile (TS 33.310 §6.1.3c), a P-256 CSR under a
 * P-256 issuer whose key is a software key (the profile module never
 * signs; the signature here is a fixed blob of the right size). Each round
 * times N x (profile_serial + profile_build_tbs + profile_assemble), then
 * N x profile_tbs_digest over the last TBS; the median round is printed in
 * ns per certificate. This was test_profile's "hot path cost"; the test
 * now only checks that the same calls succeed, since a unit test asserts
 * nothing about time (bench/RESULTS.md takes the figures).
 *
 * Exit status: 0 when every call succeeded, 1 when one failed (with the
 * reason), 2 on a usage error. tests/bench runs it briefly as a smoke test.
 */
#include "engine/config/config.h"
#include "engine/csr/csr.h"
#include "engine/profile/profile.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "common/sigalg.h"

#define UUID "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
#define FQDN "amf1.5gc.mnc001.mcc001.3gppnetwork.org"

static const char conf_text[] =
    "tokens = ( { name = \"t\"; uri = \"pkcs11:token=T\"; } );\n"
    "keys = ( { name = \"nf-key\"; token = \"t\"; uri = \"pkcs11:object=nf\"; } );\n"
    "issuers = ( { name = \"nf-ca\"; key = \"nf-key\"; certificate = \"x.pem\"; } );\n"
    "profiles = ( { name = \"nf\"; type = \"nf\"; issuer = \"nf-ca\";\n"
    "   subject = { C = \"FI\"; O = \"5gc.mnc001.mcc001.3gppnetwork.org\"; };\n"
    "   validity = { default = \"90d\"; max = \"365d\"; }; backdate = \"60s\";\n"
    "   eku = [\"serverAuth\", \"clientAuth\"];\n"
    "   crl_dp = \"http://crl.example.net/nf.crl\";\n"
    "   nf_types = [\"AMF\", \"SMF\"]; } );\n";

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

__attribute__((noreturn)) static void die(const char *what)
{
    fprintf(stderr, "profile_bench: %s failed\n", what);
    exit(1);
}

static int add_ext(X509 *x, int nid, const char *val)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, val);
    int ok = e && X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok;
}

/* A self-signed P-256 CA certificate for `key`, DER (OPENSSL_free). */
static int make_ca(EVP_PKEY *key, uint8_t **der)
{
    X509 *x = X509_new();
    X509_NAME *n = x ? X509_get_subject_name(x) : NULL;
    int len = -1;
    if (n && X509_set_version(x, X509_VERSION_3) &&
        ASN1_INTEGER_set(X509_get_serialNumber(x), 4242) &&
        X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
        X509_gmtime_adj(X509_getm_notAfter(x), 3650L * 86400) &&
        X509_NAME_add_entry_by_txt(n, "C", MBSTRING_ASC, (const unsigned char *)"FI", -1, -1, 0) &&
        X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"profile_bench CA",
                                   -1, -1, 0) &&
        X509_set_issuer_name(x, n) && X509_set_pubkey(x, key) &&
        add_ext(x, NID_basic_constraints, "critical,CA:TRUE") &&
        add_ext(x, NID_key_usage, "critical,keyCertSign,cRLSign") &&
        add_ext(x, NID_subject_key_identifier, "hash") && X509_sign(x, key, EVP_sha256()))
        len = i2d_X509(x, der);
    X509_free(x);
    return len;
}

/* A P-256 CSR asking for the NF's SANs, DER (OPENSSL_free). */
static int make_csr(EVP_PKEY *key, uint8_t **der)
{
    X509_REQ *r = X509_REQ_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *e =
        X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, "DNS:" FQDN ",URI:urn:uuid:" UUID);
    int len = -1;
    if (r && exts && e && sk_X509_EXTENSION_push(exts, e) && X509_REQ_set_version(r, 0) &&
        X509_REQ_set_pubkey(r, key) && X509_REQ_add_extensions(r, exts) &&
        X509_REQ_sign(r, key, EVP_sha256()) > 0)
        len = i2d_X509_REQ(r, der);
    else
        X509_EXTENSION_free(e);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(r);
    return len;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static long arg_num(const char *opt, const char *v)
{
    char *end = NULL;
    long n = v ? strtol(v, &end, 10) : 0;
    if (!v || *end || n < 1 || n > 100000000) {
        fprintf(stderr, "profile_bench: %s wants a number from 1 to 100000000\n", opt);
        exit(2);
    }
    return n;
}

int main(int argc, char **argv)
{
    long iterations = 20000, rounds = 5;
    for (int i = 1; i < argc; i += 2) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--iterations") == 0)
            iterations = arg_num(argv[i], v);
        else if (strcmp(argv[i], "--rounds") == 0)
            rounds = arg_num(argv[i], v);
        else {
            fprintf(stderr, "usage: profile_bench [--iterations N] [--rounds R]\n");
            return 2;
        }
    }
    if (rounds > 1000) {
        fprintf(stderr, "profile_bench: at most 1000 rounds\n");
        return 2;
    }

    char err[512];
    cfg_config *cfg = NULL;
    if (cfg_load_string(conf_text, "profile_bench.conf", NULL, &cfg, err, sizeof(err))) {
        fprintf(stderr, "profile_bench: %s\n", err);
        return 1;
    }
    EVP_PKEY *ca_key = EVP_EC_gen("P-256"), *nf_key = EVP_EC_gen("P-256");
    uint8_t *ca_der = NULL, *csr_der = NULL;
    int ca_len = ca_key ? make_ca(ca_key, &ca_der) : -1;
    int csr_len = nf_key ? make_csr(nf_key, &csr_der) : -1;
    if (ca_len <= 0 || csr_len <= 0)
        die("making the CA and the CSR with OpenSSL");
    const cfg_profile *cp = cfg_find_profile(cfg, "nf", 2);
    cf_sig_alg mech;
    profile *p = NULL;
    if (!cp || profile_pick_mech(ca_key, cp->hash, &mech, err, sizeof(err)) ||
        profile_compile(cp, ca_der, (size_t)ca_len, ca_key, mech, &p, err, sizeof(err))) {
        fprintf(stderr, "profile_bench: %s\n", err);
        return 1;
    }
    csr c;
    if (csr_parse(csr_der, (size_t)csr_len, &c) != CSR_OK)
        die("csr_parse");

    cf_issue_req r;
    memset(&r, 0, sizeof(r));
    r.profile = (cf_str){"nf", 2};
    r.nf_instance_id = (cf_str){UUID, sizeof(UUID) - 1};
    r.fqdns[0] = (cf_str){FQDN, sizeof(FQDN) - 1};
    r.n_fqdns = 1;
    r.nf_types[0] = (cf_str){"AMF", 3};
    r.n_nf_types = 1;

    static uint8_t tbs[8192], cert[8192];
    uint8_t serial[PROFILE_SERIAL_MAX], sig[72], dg[PROFILE_DIGEST_MAX];
    memset(sig, 0x42, sizeof(sig)); /* an ECDSA-Sig-Value's size; its bytes do not matter */
    size_t sl, tl = 0, cl, inl;
    const uint8_t *in;
    cf_status st;
    char why[128];
    double *build = calloc((size_t)rounds, sizeof(double));
    double *digest = calloc((size_t)rounds, sizeof(double));
    if (!build || !digest)
        die("calloc");
    for (long k = 0; k < rounds; k++) {
        double t0 = now_ns();
        for (long i = 0; i < iterations; i++) {
            if (profile_serial(serial, &sl, NULL, 0))
                die("profile_serial");
            if (profile_build_tbs(p, &c, &r, serial, sl, 1700000000, tbs, sizeof(tbs), &tl, &st,
                                  why, sizeof(why))) {
                fprintf(stderr, "profile_bench: profile_build_tbs: %s\n", why);
                return 1;
            }
            if (profile_assemble(p, tbs, tl, sig, sizeof(sig), cert, sizeof(cert), &cl))
                die("profile_assemble");
        }
        double t1 = now_ns();
        for (long i = 0; i < iterations; i++)
            if (profile_tbs_digest(p, tbs, tl, dg, &in, &inl))
                die("profile_tbs_digest");
        double t2 = now_ns();
        build[k] = (t1 - t0) / (double)iterations;
        digest[k] = (t2 - t1) / (double)iterations;
    }
    qsort(build, (size_t)rounds, sizeof(double), cmp_double);
    qsort(digest, (size_t)rounds, sizeof(double), cmp_double);
    printf("profile nf, P-256 CSR under a P-256 issuer, %ld x %ld, median round:\n", rounds,
           iterations);
    printf("  serial + build_tbs + assemble  %8.0f ns per certificate (TBS %zu B, cert %zu B)\n",
           build[rounds / 2], tl, cl);
    printf("  SHA-256 of the TBS             %8.0f ns\n", digest[rounds / 2]);
    free(build);
    free(digest);
    profile_free(p);
    profile_thread_cleanup();
    OPENSSL_free(ca_der);
    OPENSSL_free(csr_der);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(nf_key);
    cfg_free(cfg);
    return 0;
}
