/* CUnit suite for engine/profile. A software CA (P-256 root, intermediates
 * with P-256, P-384, RSA-2048 and Ed25519 keys) made with OpenSSL in a temp
 * folder; CSRs of every supported key type made with OpenSSL and parsed
 * with csr_parse(). Each certificate is built with profile_build_tbs(),
 * signed here with the software key (the profile module never signs),
 * assembled, parsed back with d2i_X509 and checked field by field: version,
 * serial, issuer, subject, validity, SAN, KU, EKU, AKI, SKI, CRL DP or
 * noRevAvail, AIA, NFTypes, the signature, chain validation with
 * X509_V_FLAG_X509_STRICT for sslclient/sslserver (and `openssl verify
 * -x509_strict` once per profile type), DER that OpenSSL re-encodes to the
 * same bytes. Then every policy denial and compile refusal with its
 * message, serials, and the hot path repeated (its cost is measured by
 * bench/profile_bench, not here). */
#include "engine/profile/profile.h"

#include "cf_test.h"
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "common/sigalg.h"

/* ------------------------------------------------------------- fixtures */

static char tmpdir[64];
static EVP_PKEY *root_key;
static X509 *root_cert;

typedef enum { IS_P256, IS_P384, IS_RSA, IS_ED25519, IS__MAX } issuer_kind;
static const char *const issuer_names[IS__MAX] = {"p256", "p384", "rsa", "ed25519"};
static EVP_PKEY *is_key[IS__MAX];
static X509 *is_cert[IS__MAX];
static uint8_t *is_der[IS__MAX];
static size_t is_der_len[IS__MAX];

typedef enum { K_P256, K_P384, K_RSA, K_ED25519, K__MAX } csr_kind;
static const char *const csr_kind_names[K__MAX] = {"P-256", "P-384", "RSA-2048", "Ed25519"};
static EVP_PKEY *csr_keys[K__MAX];

static cfg_config *cfg;

#define UUID "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
#define UUID_UPPER "3F2504E0-4F89-11D3-9A0C-0305E82C3301"

static const char conf_text[] =
    "tokens = ( { name = \"t\"; uri = \"pkcs11:token=T\"; } );\n"
    "keys = ( { name = \"nf-key\"; token = \"t\"; uri = \"pkcs11:object=nf\"; } );\n"
    "issuers = ( { name = \"nf-ca\"; key = \"nf-key\"; certificate = \"x.pem\"; } );\n"
    "profiles = (\n"
    " { name = \"nf\"; type = \"nf\"; issuer = \"nf-ca\";\n"
    "   subject = { C = \"FI\"; O = \"5gc.mnc001.mcc001.3gppnetwork.org\"; };\n"
    "   validity = { default = \"90d\"; max = \"365d\"; }; backdate = \"60s\";\n"
    "   eku = [\"serverAuth\", \"clientAuth\"];\n"
    "   crl_dp = \"http://crl.example.net/nf.crl\";\n"
    "   aia_ca_issuers = \"http://ca.example.net/nf.der\";\n"
    "   nf_types = [\"AMF\", \"SMF\", \"NRF\"]; },\n"
    " { name = \"sepp\"; type = \"sepp\"; issuer = \"nf-ca\";\n"
    "   subject = { C = \"DE\"; O = \"5gc.mnc002.mcc262.3gppnetwork.org\"; };\n"
    "   eku = [\"serverAuth\", \"clientAuth\"];\n"
    "   crl_dp = \"ldap://ldap.example.net/cn=ic\"; },\n"
    " { name = \"star\"; type = \"star\"; issuer = \"nf-ca\";\n"
    "   subject = { C = \"FI\"; O = \"5gc.mnc001.mcc001.3gppnetwork.org\"; };\n"
    "   validity = { default = \"24h\"; max = \"6d\"; }; backdate = \"0s\";\n"
    "   eku = [\"serverAuth\", \"clientAuth\"]; },\n"
    " { name = \"nf-ec\"; type = \"nf\"; issuer = \"nf-ca\";\n"
    "   subject = { C = \"FI\"; O = \"x\"; }; eku = [\"clientAuth\"];\n"
    "   crl_dp = \"http://c/x.crl\"; key_types = [\"ec-p256\"]; },\n"
    " { name = \"nf-384\"; type = \"nf\"; issuer = \"nf-ca\"; hash = \"sha384\";\n"
    "   subject = { C = \"FI\"; O = \"x\"; }; eku = [\"serverAuth\"];\n"
    "   crl_dp = \"http://c/x.crl\"; require_nf_instance_id = false; require_fqdn = true; }\n"
    ");\n";

static const cfg_profile *cprof(const char *name)
{
    const cfg_profile *p = cfg_find_profile(cfg, name, strlen(name));
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    return p;
}

static EVP_PKEY *gen_key(const char *alg, const char *arg)
{
    if (strcmp(alg, "EC") == 0)
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", arg);
    if (strcmp(alg, "RSA") == 0)
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
}

static void add_ext(X509 *issuer, X509 *x, int nid, const char *val)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, val);
    if (!e) {
        ERR_print_errors_fp(stderr);
        abort();
    }
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
}

/* A CA certificate for `key`, signed by `ikey`/`icert` (NULL: self-signed). */
static X509 *make_ca(EVP_PKEY *key, const char *cn, EVP_PKEY *ikey, X509 *icert, bool ski,
                     const char *bc)
{
    X509 *x = X509_new();
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1000 + rand() % 100000);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3650L * 86400);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "C", MBSTRING_ASC, (const unsigned char *)"FI", -1, -1, 0);
    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)"certforge test", -1,
                               -1, 0);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, icert ? X509_get_subject_name(icert) : n);
    X509_set_pubkey(x, key);
    X509 *iss = icert ? icert : x;
    add_ext(iss, x, NID_basic_constraints, bc);
    add_ext(iss, x, NID_key_usage, "critical,keyCertSign,cRLSign");
    if (ski)
        add_ext(iss, x, NID_subject_key_identifier, "hash");
    if (icert || ski)
        add_ext(iss, x, NID_authority_key_identifier, "keyid:always");
    EVP_PKEY *sk = ikey ? ikey : key;
    const EVP_MD *md = EVP_PKEY_get_base_id(sk) == EVP_PKEY_ED25519 ? NULL : EVP_sha256();
    if (!X509_sign(x, sk, md)) {
        ERR_print_errors_fp(stderr);
        abort();
    }
    return x;
}

static void write_pem(const char *name, X509 *x)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    PEM_write_X509(f, x);
    fclose(f);
}

static int suite_init(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/cf-profile-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    root_key = gen_key("EC", "P-256");
    root_cert = make_ca(root_key, "Test Root", NULL, NULL, true, "critical,CA:TRUE");
    write_pem("root.pem", root_cert);
    const char *alg[IS__MAX][2] = {{"EC", "P-256"}, {"EC", "P-384"}, {"RSA", ""}, {"ED", ""}};
    for (int i = 0; i < IS__MAX; i++) {
        char cn[64];
        snprintf(cn, sizeof(cn), "Test Issuing CA %s", issuer_names[i]);
        is_key[i] = gen_key(alg[i][0], alg[i][1]);
        /* the RSA issuer has no SKI: the profile computes method 1 */
        is_cert[i] =
            make_ca(is_key[i], cn, root_key, root_cert, i != IS_RSA, "critical,CA:TRUE,pathlen:0");
        unsigned char *d = NULL;
        int n = i2d_X509(is_cert[i], &d);
        is_der[i] = malloc((size_t)n);
        memcpy(is_der[i], d, (size_t)n);
        is_der_len[i] = (size_t)n;
        OPENSSL_free(d);
        char f[64];
        snprintf(f, sizeof(f), "int-%s.pem", issuer_names[i]);
        write_pem(f, is_cert[i]);
    }
    csr_keys[K_P256] = gen_key("EC", "P-256");
    csr_keys[K_P384] = gen_key("EC", "P-384");
    csr_keys[K_RSA] = gen_key("RSA", "");
    csr_keys[K_ED25519] = gen_key("ED", "");
    char err[512];
    if (cfg_load_string(conf_text, "test.conf", NULL, &cfg, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static int suite_clean(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", tmpdir);
    EVP_PKEY_free(root_key);
    X509_free(root_cert);
    for (int i = 0; i < IS__MAX; i++) {
        EVP_PKEY_free(is_key[i]);
        X509_free(is_cert[i]);
        free(is_der[i]);
    }
    for (int i = 0; i < K__MAX; i++)
        EVP_PKEY_free(csr_keys[i]);
    cfg_free(cfg);
    profile_thread_cleanup();
    return 0;
}

/* A CSR for `key` asking for the SANs in `san` (OpenSSL config syntax, or
 * NULL), DER into out. */
static size_t make_csr(EVP_PKEY *key, const char *san, uint8_t *out, size_t cap)
{
    X509_REQ *r = X509_REQ_new();
    X509_REQ_set_version(r, 0);
    X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(r), "CN", MBSTRING_ASC,
                               (const unsigned char *)"ignored.example", -1, -1, 0);
    X509_REQ_set_pubkey(r, key);
    if (san) {
        STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
        CU_ASSERT_PTR_NOT_NULL_FATAL(e);
        sk_X509_EXTENSION_push(exts, e);
        /* and an extension the profile must never copy */
        sk_X509_EXTENSION_push(
            exts, X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE"));
        X509_REQ_add_extensions(r, exts);
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    }
    const EVP_MD *md = EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519 ? NULL : EVP_sha256();
    CU_ASSERT_FATAL(X509_REQ_sign(r, key, md) > 0);
    unsigned char *d = NULL;
    int n = i2d_X509_REQ(r, &d);
    CU_ASSERT_FATAL(n > 0 && (size_t)n <= cap);
    memcpy(out, d, (size_t)n);
    OPENSSL_free(d);
    X509_REQ_free(r);
    return (size_t)n;
}

static cf_str S(const char *s)
{
    cf_str r = {s, s ? strlen(s) : 0};
    return r;
}

/* Sign what profile_tbs_digest hands out with the software key, as the HSM
 * would: ECDSA and RSA over the digest, Ed25519 over the TBS. */
static size_t soft_sign(EVP_PKEY *key, cf_sig_alg m, const uint8_t *in, size_t inlen, uint8_t *sig)
{
    size_t sl = CF_SIG_MAX;
    if (m == CF_SIG_ED25519) {
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        CU_ASSERT_FATAL(EVP_DigestSignInit(c, NULL, NULL, NULL, key) == 1);
        CU_ASSERT_FATAL(EVP_DigestSign(c, sig, &sl, in, inlen) == 1);
        EVP_MD_CTX_free(c);
        return sl;
    }
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(key, NULL);
    CU_ASSERT_FATAL(EVP_PKEY_sign_init(c) == 1);
    const EVP_MD *md = inlen == 64 ? EVP_sha512() : inlen == 48 ? EVP_sha384() : EVP_sha256();
    if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA) {
        bool pss = m >= CF_SIG_RSA_PSS_SHA256 && m <= CF_SIG_RSA_PSS_SHA512;
        EVP_PKEY_CTX_set_rsa_padding(c, pss ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING);
        if (pss) {
            EVP_PKEY_CTX_set_rsa_pss_saltlen(c, (int)inlen);
            EVP_PKEY_CTX_set_rsa_mgf1_md(c, md);
        }
    }
    EVP_PKEY_CTX_set_signature_md(c, md);
    CU_ASSERT_FATAL(EVP_PKEY_sign(c, sig, &sl, in, inlen) == 1);
    EVP_PKEY_CTX_free(c);
    return sl;
}

typedef struct issued {
    uint8_t tbs[20000];
    size_t tbs_len;
    uint8_t cert[21000];
    size_t cert_len;
    uint8_t serial[PROFILE_SERIAL_MAX];
    size_t serial_len;
    int64_t now;
    cf_status st;
    char why[256];
} issued;

/* Parse the CSR, build, sign, assemble. Returns the build_tbs result. */
static int issue(const profile *p, issuer_kind ik, const uint8_t *csr_der, size_t csr_len,
                 const cf_issue_req *req, issued *o)
{
    csr c;
    memset(o->why, 0, sizeof(o->why));
    CU_ASSERT_EQUAL_FATAL(csr_parse(csr_der, csr_len, &c), CSR_OK);
    CU_ASSERT_EQUAL_FATAL(profile_serial(o->serial, &o->serial_len, NULL, 0), 0);
    o->now = (int64_t)time(NULL);
    int rc = profile_build_tbs(p, &c, req, o->serial, o->serial_len, o->now, o->tbs, sizeof(o->tbs),
                               &o->tbs_len, &o->st, o->why, sizeof(o->why));
    if (rc)
        return rc;
    uint8_t dg[PROFILE_DIGEST_MAX], sig[CF_SIG_MAX];
    const uint8_t *in;
    size_t inlen;
    CU_ASSERT_EQUAL_FATAL(profile_tbs_digest(p, o->tbs, o->tbs_len, dg, &in, &inlen), 0);
    size_t sl = soft_sign(is_key[ik], profile_mech(p), in, inlen, sig);
    CU_ASSERT_EQUAL_FATAL(
        profile_assemble(p, o->tbs, o->tbs_len, sig, sl, o->cert, sizeof(o->cert), &o->cert_len),
        0);
    return 0;
}

static profile *compile(const char *name, issuer_kind ik, cf_sig_alg mech)
{
    profile *p = NULL;
    char err[512] = "";
    int rc = profile_compile(cprof(name), is_der[ik], is_der_len[ik], is_key[ik], mech, &p, err,
                             sizeof(err));
    if (rc)
        fprintf(stderr, "\n%s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    return p;
}

static profile *compile_picked(const char *name, issuer_kind ik)
{
    cf_sig_alg m;
    char err[256];
    CU_ASSERT_EQUAL_FATAL(profile_pick_mech(is_key[ik], cprof(name)->hash, &m, err, sizeof(err)),
                          0);
    return compile(name, ik, m);
}

/* ------------------------------------------------------------- checks */

static X509_EXTENSION *ext_by_oid(X509 *x, const char *oid, int *count)
{
    ASN1_OBJECT *o = OBJ_txt2obj(oid, 1);
    int i = X509_get_ext_by_OBJ(x, o, -1);
    *count = 0;
    for (int j = i; j >= 0; j = X509_get_ext_by_OBJ(x, o, j))
        (*count)++;
    ASN1_OBJECT_free(o);
    return i >= 0 ? X509_get_ext(x, i) : NULL;
}

/* X509_V_FLAG_X509_STRICT, except for the issuer made without an SKI:
 * OpenSSL's strict mode (rightly, RFC 5280 §4.2.1.2) refuses CA
 * certificates without one; that issuer exists to test the AKI fallback. */
static int verify_chain(X509 *leaf, issuer_kind ik, int purpose)
{
    X509_STORE *st = X509_STORE_new();
    X509_STORE_add_cert(st, root_cert);
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    sk_X509_push(untrusted, is_cert[ik]);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, st, leaf, untrusted);
    if (X509_get0_subject_key_id(is_cert[ik]))
        X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_X509_STRICT);
    X509_STORE_CTX_set_purpose(ctx, purpose);
    int ok = X509_verify_cert(ctx);
    if (ok != 1)
        fprintf(stderr, "\n  verify (purpose %d): %s\n", purpose,
                X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    X509_STORE_CTX_free(ctx);
    sk_X509_free(untrusted);
    X509_STORE_free(st);
    return ok;
}

/* Check every field the profile promises. */
static void check_cert(const profile *p, const issued *o, const cfg_profile *cp, issuer_kind ik,
                       const cf_issue_req *req, EVP_PKEY *subject_key)
{
    CU_ASSERT_EQUAL(der_validate(o->cert, o->cert_len, 32), DER_OK);
    const unsigned char *q = o->cert;
    X509 *x = d2i_X509(NULL, &q, (long)o->cert_len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    CU_ASSERT_PTR_EQUAL(q, o->cert + o->cert_len);

    /* DER: OpenSSL re-encodes the TBS and the certificate to our bytes */
    unsigned char *re = NULL;
    int rl = i2d_re_X509_tbs(x, &re);
    CU_ASSERT_EQUAL(rl, (int)o->tbs_len);
    CU_ASSERT(rl > 0 && memcmp(re, o->tbs, o->tbs_len) == 0);
    OPENSSL_free(re);
    re = NULL;
    rl = i2d_X509(x, &re);
    CU_ASSERT(rl == (int)o->cert_len && memcmp(re, o->cert, o->cert_len) == 0);
    OPENSSL_free(re);

    /* version, serial (RFC 5280 §4.1.2.1, §4.1.2.2) */
    CU_ASSERT_EQUAL(X509_get_version(x), X509_VERSION_3);
    const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
    CU_ASSERT_EQUAL(ASN1_STRING_type(sn), V_ASN1_INTEGER); /* positive */
    CU_ASSERT(ASN1_STRING_length(sn) <= 20);
    CU_ASSERT_EQUAL((size_t)ASN1_STRING_length(sn), o->serial_len);
    CU_ASSERT(memcmp(ASN1_STRING_get0_data(sn), o->serial, o->serial_len) == 0);
    BIGNUM *bn = ASN1_INTEGER_to_BN(sn, NULL);
    CU_ASSERT(BN_num_bits(bn) >= 64);
    BN_free(bn);

    /* issuer = the issuing CA's subject, byte for byte */
    CU_ASSERT_EQUAL(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(is_cert[ik])), 0);
    size_t dnl;
    const uint8_t *pdn = profile_issuer_dn(p, &dnl);
    unsigned char *idn = NULL;
    int il = i2d_X509_NAME(X509_get_subject_name(is_cert[ik]), &idn);
    CU_ASSERT(il > 0 && (size_t)il == dnl && memcmp(idn, pdn, dnl) == 0);
    OPENSSL_free(idn);

    /* subject: C (PrintableString), O (UTF8String), nothing else */
    X509_NAME *sub = X509_get_subject_name(x);
    CU_ASSERT_EQUAL(X509_NAME_entry_count(sub), 2);
    X509_NAME_ENTRY *e0 = X509_NAME_get_entry(sub, 0), *e1 = X509_NAME_get_entry(sub, 1);
    CU_ASSERT_EQUAL(OBJ_obj2nid(X509_NAME_ENTRY_get_object(e0)), NID_countryName);
    CU_ASSERT_EQUAL(ASN1_STRING_type(X509_NAME_ENTRY_get_data(e0)), V_ASN1_PRINTABLESTRING);
    CU_ASSERT_STRING_EQUAL((const char *)ASN1_STRING_get0_data(X509_NAME_ENTRY_get_data(e0)),
                           cp->subject_c);
    CU_ASSERT_EQUAL(OBJ_obj2nid(X509_NAME_ENTRY_get_object(e1)), NID_organizationName);
    CU_ASSERT_EQUAL(ASN1_STRING_type(X509_NAME_ENTRY_get_data(e1)), V_ASN1_UTF8STRING);
    CU_ASSERT_STRING_EQUAL((const char *)ASN1_STRING_get0_data(X509_NAME_ENTRY_get_data(e1)),
                           cp->subject_o);

    /* validity: notBefore = now - backdate, notAfter = now + validity */
    uint32_t v = req->validity_s ? req->validity_s : cp->validity_default;
    CU_ASSERT_EQUAL(ASN1_TIME_cmp_time_t(X509_get0_notBefore(x), (time_t)(o->now - cp->backdate)),
                    0);
    CU_ASSERT_EQUAL(ASN1_TIME_cmp_time_t(X509_get0_notAfter(x), (time_t)(o->now + v)), 0);

    /* the subject key: the CSR's, verbatim */
    CU_ASSERT_EQUAL(EVP_PKEY_eq(X509_get0_pubkey(x), subject_key), 1);

    int n;
    /* subjectAltName: critical, exactly urn:uuid + the FQDNs, lower case */
    X509_EXTENSION *ext = ext_by_oid(x, "2.5.29.17", &n);
    CU_ASSERT_EQUAL_FATAL(n, 1);
    CU_ASSERT_EQUAL(X509_EXTENSION_get_critical(ext), 1);
    GENERAL_NAMES *gns = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(gns);
    int gi = 0;
    if (req->nf_instance_id.len) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gns, gi++);
        CU_ASSERT_EQUAL_FATAL(g->type, GEN_URI);
        CU_ASSERT_STRING_EQUAL((const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier),
                               "urn:uuid:" UUID);
    }
    for (unsigned i = 0; i < req->n_fqdns; i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gns, gi++);
        CU_ASSERT_EQUAL_FATAL(g->type, GEN_DNS);
        char low[256];
        for (size_t k = 0; k <= req->fqdns[i].len; k++)
            low[k] = (char)tolower((unsigned char)(k < req->fqdns[i].len ? req->fqdns[i].p[k] : 0));
        CU_ASSERT_STRING_EQUAL((const char *)ASN1_STRING_get0_data(g->d.dNSName), low);
    }
    CU_ASSERT_EQUAL(sk_GENERAL_NAME_num(gns), gi);
    GENERAL_NAMES_free(gns);

    /* keyUsage: critical, digitalSignature only */
    ext = ext_by_oid(x, "2.5.29.15", &n);
    CU_ASSERT_EQUAL_FATAL(n, 1);
    CU_ASSERT_EQUAL(X509_EXTENSION_get_critical(ext), 1);
    CU_ASSERT_EQUAL(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
    const ASN1_OCTET_STRING *ev = X509_EXTENSION_get_data(ext);
    CU_ASSERT(ASN1_STRING_length(ev) == 4 &&
              memcmp(ASN1_STRING_get0_data(ev), "\x03\x02\x07\x80", 4) == 0);

    /* extendedKeyUsage: non-critical, the configured purposes */
    ext = ext_by_oid(x, "2.5.29.37", &n);
    CU_ASSERT_EQUAL_FATAL(n, 1);
    CU_ASSERT_EQUAL(X509_EXTENSION_get_critical(ext), 0);
    uint32_t want = ((cp->eku & CFG_EKU_SERVER_AUTH) ? XKU_SSL_SERVER : 0) |
                    ((cp->eku & CFG_EKU_CLIENT_AUTH) ? XKU_SSL_CLIENT : 0);
    CU_ASSERT_EQUAL(X509_get_extended_key_usage(x), want);

    /* AKI = the issuer's SKI (keyIdentifier only) */
    ext = ext_by_oid(x, "2.5.29.35", &n);
    CU_ASSERT_EQUAL_FATAL(n, 1);
    CU_ASSERT_EQUAL(X509_EXTENSION_get_critical(ext), 0);
    const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(x);
    CU_ASSERT_PTR_NOT_NULL_FATAL(aki);
    uint8_t want_ki[EVP_MAX_MD_SIZE];
    unsigned kil = 0;
    const ASN1_OCTET_STRING *iski = X509_get0_subject_key_id(is_cert[ik]);
    if (iski) {
        kil = (unsigned)ASN1_STRING_length(iski);
        memcpy(want_ki, ASN1_STRING_get0_data(iski), kil);
    } else {
        const ASN1_BIT_STRING *b = X509_get0_pubkey_bitstr(is_cert[ik]);
        EVP_Digest(ASN1_STRING_get0_data(b), (size_t)ASN1_STRING_length(b), want_ki, &kil,
                   EVP_sha1(), NULL);
    }
    CU_ASSERT_EQUAL((unsigned)ASN1_STRING_length(aki), kil);
    CU_ASSERT(memcmp(ASN1_STRING_get0_data(aki), want_ki, kil) == 0);
    CU_ASSERT_PTR_NULL(X509_get0_authority_issuer(x));
    CU_ASSERT_PTR_NULL(X509_get0_authority_serial(x));

    /* SKI = SHA-1 of the subjectPublicKey BIT STRING value */
    ext = ext_by_oid(x, "2.5.29.14", &n);
    CU_ASSERT_EQUAL_FATAL(n, 1);
    CU_ASSERT_EQUAL(X509_EXTENSION_get_critical(ext), 0);
    const ASN1_BIT_STRING *pb = X509_get0_pubkey_bitstr(x);
    uint8_t ski[20];
    EVP_Digest(ASN1_STRING_get0_data(pb), (size_t)ASN1_STRING_length(pb), ski, NULL, EVP_sha1(),
               NULL);
    const ASN1_OCTET_STRING *xs = X509_get0_subject_key_id(x);
    CU_ASSERT(xs && ASN1_STRING_length(xs) == 20 &&
              memcmp(ASN1_STRING_get0_data(xs), ski, 20) == 0);

    /* CRL DP (nf, sepp) or noRevAvail (star), never both */
    int ncrl, nnra;
    X509_EXTENSION *crl = ext_by_oid(x, "2.5.29.31", &ncrl);
    X509_EXTENSION *nra = ext_by_oid(x, "2.5.29.56", &nnra);
    if (cp->type == CFG_PROFILE_STAR) {
        CU_ASSERT_EQUAL(ncrl, 0);
        CU_ASSERT_EQUAL_FATAL(nnra, 1);
        CU_ASSERT_EQUAL(X509_EXTENSION_get_critical(nra), 0);
        ev = X509_EXTENSION_get_data(nra);
        CU_ASSERT(ASN1_STRING_length(ev) == 2 &&
                  memcmp(ASN1_STRING_get0_data(ev), "\x05\x00", 2) == 0);
    } else {
        CU_ASSERT_EQUAL(nnra, 0);
        CU_ASSERT_EQUAL_FATAL(ncrl, 1);
        CU_ASSERT_EQUAL(X509_EXTENSION_get_critical(crl), 0);
        STACK_OF(DIST_POINT) *dps = X509_get_ext_d2i(x, NID_crl_distribution_points, NULL, NULL);
        CU_ASSERT_FATAL(dps && sk_DIST_POINT_num(dps) == 1);
        DIST_POINT *dp = sk_DIST_POINT_value(dps, 0);
        CU_ASSERT_FATAL(dp->distpoint && dp->distpoint->type == 0);
        CU_ASSERT_EQUAL_FATAL(sk_GENERAL_NAME_num(dp->distpoint->name.fullname), 1);
        GENERAL_NAME *g = sk_GENERAL_NAME_value(dp->distpoint->name.fullname, 0);
        CU_ASSERT_EQUAL(g->type, GEN_URI);
        CU_ASSERT_STRING_EQUAL((const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier),
                               cp->crl_dp);
        CU_ASSERT_PTR_NULL(dp->reasons);
        CU_ASSERT_PTR_NULL(dp->CRLissuer);
        sk_DIST_POINT_pop_free(dps, DIST_POINT_free);
    }

    /* AIA caIssuers when configured */
    int naia;
    ext = ext_by_oid(x, "1.3.6.1.5.5.7.1.1", &naia);
    CU_ASSERT_EQUAL(naia, cp->aia_ca_issuers ? 1 : 0);
    if (cp->aia_ca_issuers && naia == 1) {
        CU_ASSERT_EQUAL(X509_EXTENSION_get_critical(ext), 0);
        AUTHORITY_INFO_ACCESS *aia = X509_get_ext_d2i(x, NID_info_access, NULL, NULL);
        CU_ASSERT_FATAL(aia && sk_ACCESS_DESCRIPTION_num(aia) == 1);
        ACCESS_DESCRIPTION *ad = sk_ACCESS_DESCRIPTION_value(aia, 0);
        CU_ASSERT_EQUAL(OBJ_obj2nid(ad->method), NID_ad_ca_issuers);
        CU_ASSERT_EQUAL(ad->location->type, GEN_URI);
        CU_ASSERT_STRING_EQUAL(
            (const char *)ASN1_STRING_get0_data(ad->location->d.uniformResourceIdentifier),
            cp->aia_ca_issuers);
        AUTHORITY_INFO_ACCESS_free(aia);
    }

    /* NFTypes (RFC 9310): non-critical SEQUENCE OF IA5String */
    int nnft;
    ext = ext_by_oid(x, "1.3.6.1.5.5.7.1.34", &nnft);
    unsigned want_types =
        cp->type == CFG_PROFILE_SEPP && req->n_nf_types == 0 ? 1 : req->n_nf_types;
    CU_ASSERT_EQUAL(nnft, want_types ? 1 : 0);
    if (nnft == 1) {
        CU_ASSERT_EQUAL(X509_EXTENSION_get_critical(ext), 0);
        ev = X509_EXTENSION_get_data(ext);
        const unsigned char *eq = ASN1_STRING_get0_data(ev);
        ASN1_SEQUENCE_ANY *seq = d2i_ASN1_SEQUENCE_ANY(NULL, &eq, ASN1_STRING_length(ev));
        CU_ASSERT_PTR_NOT_NULL_FATAL(seq);
        CU_ASSERT_EQUAL_FATAL((unsigned)sk_ASN1_TYPE_num(seq), want_types);
        for (unsigned i = 0; i < want_types; i++) {
            ASN1_TYPE *t = sk_ASN1_TYPE_value(seq, (int)i);
            CU_ASSERT_EQUAL_FATAL(t->type, V_ASN1_IA5STRING);
            const char *w = req->n_nf_types ? req->nf_types[i].p : "SEPP";
            size_t wl = req->n_nf_types ? req->nf_types[i].len : 4;
            CU_ASSERT((size_t)ASN1_STRING_length(t->value.ia5string) == wl &&
                      memcmp(ASN1_STRING_get0_data(t->value.ia5string), w, wl) == 0);
        }
        sk_ASN1_TYPE_pop_free(seq, ASN1_TYPE_free);
    }

    /* nothing else: no basicConstraints, nothing from the CSR */
    int expect = 6 + (naia ? 1 : 0) + (nnft ? 1 : 0);
    CU_ASSERT_EQUAL(X509_get_ext_count(x), expect);
    CU_ASSERT_EQUAL(X509_get_ext_by_NID(x, NID_basic_constraints, -1), -1);

    /* the signature, and the chain for the configured purposes */
    CU_ASSERT_EQUAL(X509_verify(x, is_key[ik]), 1);
    if (cp->eku & CFG_EKU_CLIENT_AUTH)
        CU_ASSERT_EQUAL(verify_chain(x, ik, X509_PURPOSE_SSL_CLIENT), 1);
    if (cp->eku & CFG_EKU_SERVER_AUTH)
        CU_ASSERT_EQUAL(verify_chain(x, ik, X509_PURPOSE_SSL_SERVER), 1);
    if (!(cp->eku & CFG_EKU_SERVER_AUTH))
        CU_ASSERT_EQUAL(verify_chain(x, ik, X509_PURPOSE_SSL_SERVER), 0);
    X509_free(x);
}

/* ------------------------------------------------------------- requests */

#define NF_FQDN "AMF1.5gc.mnc001.mcc001.3gppnetwork.org"
#define SEPP_FQDN1 "sepp1.5gc.mnc002.mcc262.3gppnetwork.org"
#define SEPP_FQDN2 "SEPP.example.org"

static cf_issue_req nf_req(void)
{
    cf_issue_req r;
    memset(&r, 0, sizeof(r));
    r.profile = S("nf");
    r.nf_instance_id = S(UUID_UPPER);
    r.fqdns[0] = S(NF_FQDN);
    r.n_fqdns = 1;
    r.nf_types[0] = S("AMF");
    r.nf_types[1] = S("SMF");
    r.n_nf_types = 2;
    return r;
}
static const char nf_san[] = "DNS:amf1.5gc.mnc001.mcc001.3gppnetwork.org,URI:urn:uuid:" UUID_UPPER;

static cf_issue_req sepp_req(void)
{
    cf_issue_req r;
    memset(&r, 0, sizeof(r));
    r.profile = S("sepp");
    r.fqdns[0] = S(SEPP_FQDN1);
    r.fqdns[1] = S(SEPP_FQDN2);
    r.n_fqdns = 2;
    return r;
}
static const char sepp_san[] = "DNS:" SEPP_FQDN1 ",DNS:sepp.EXAMPLE.org";

static cf_issue_req star_req(void)
{
    cf_issue_req r = nf_req();
    r.profile = S("star");
    r.nf_types[0] = S("NRF");
    r.n_nf_types = 1;
    r.validity_s = 6 * 3600;
    return r;
}

/* ------------------------------------------------------------- tests */

static void test_types_and_keys(void)
{
    static const char *const names[] = {"nf", "sepp", "star"};
    for (int t = 0; t < 3; t++) {
        profile *p = compile_picked(names[t], IS_P256);
        CU_ASSERT_STRING_EQUAL(profile_name(p), names[t]);
        CU_ASSERT_EQUAL(profile_type(p), cprof(names[t])->type);
        CU_ASSERT_EQUAL(profile_mech(p), CF_SIG_ECDSA_SHA256);
        CU_ASSERT_STRING_EQUAL(profile_issuer_name(p), "nf-ca");
        CU_ASSERT_STRING_EQUAL(profile_issuer_key(p), "nf-key");
        for (int k = 0; k < K__MAX; k++) {
            cf_issue_req req = t == 0 ? nf_req() : t == 1 ? sepp_req() : star_req();
            uint8_t der[4096];
            size_t dl = make_csr(csr_keys[k], t == 1 ? sepp_san : nf_san, der, sizeof(der));
            static issued a, b;
            int rc = issue(p, IS_P256, der, dl, &req, &a);
            if (rc)
                fprintf(stderr, "\n  %s/%s: %s\n", names[t], csr_kind_names[k], a.why);
            CU_ASSERT_EQUAL_FATAL(rc, 0);
            CU_ASSERT_EQUAL(a.st, CF_ST_OK);
            CU_ASSERT(a.tbs_len <= profile_tbs_max(p));
            CU_ASSERT(a.cert_len <= profile_cert_max(p));
            check_cert(p, &a, cprof(names[t]), IS_P256, &req, csr_keys[k]);
            /* a second certificate differs in its serial */
            CU_ASSERT_EQUAL_FATAL(issue(p, IS_P256, der, dl, &req, &b), 0);
            CU_ASSERT(a.serial_len != b.serial_len || memcmp(a.serial, b.serial, a.serial_len));
        }
        profile_free(p);
    }
}

/* Every issuer key type and signature mechanism, including an issuer
 * without a subjectKeyIdentifier (RSA: AKI by method 1) and RSASSA-PSS. */
static void test_issuer_mechs(void)
{
    static const struct {
        const char *prof;
        issuer_kind ik;
        cf_sig_alg mech;
        bool pick;
    } cases[] = {
        {"nf", IS_P384, CF_SIG_ECDSA_SHA384, true},
        {"nf", IS_RSA, CF_SIG_RSA_PKCS1_SHA256, true},
        {"nf", IS_RSA, CF_SIG_RSA_PSS_SHA256, false},
        {"nf", IS_RSA, CF_SIG_RSA_PKCS1_SHA512, false},
        {"nf", IS_ED25519, CF_SIG_ED25519, true},
        {"nf-384", IS_P256, CF_SIG_ECDSA_SHA384, true}, /* hash = sha384 */
        {"nf-384", IS_RSA, CF_SIG_RSA_PKCS1_SHA384, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cf_sig_alg m = cases[i].mech;
        if (cases[i].pick) {
            char err[256];
            CU_ASSERT_EQUAL(profile_pick_mech(is_key[cases[i].ik], cprof(cases[i].prof)->hash, &m,
                                              err, sizeof(err)),
                            0);
            CU_ASSERT_EQUAL(m, cases[i].mech);
        }
        profile *p = compile(cases[i].prof, cases[i].ik, m);
        cf_issue_req req = nf_req();
        const char *san = nf_san;
        if (strcmp(cases[i].prof, "nf-384") == 0) {
            req.nf_instance_id = S(""); /* require_nf_instance_id = false */
            san = "DNS:" NF_FQDN;
        }
        uint8_t der[4096];
        size_t dl = make_csr(csr_keys[K_P256], san, der, sizeof(der));
        static issued a;
        int rc = issue(p, cases[i].ik, der, dl, &req, &a);
        if (rc)
            fprintf(stderr, "\n  case %zu: %s\n", i, a.why);
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        check_cert(p, &a, cprof(cases[i].prof), cases[i].ik, &req, csr_keys[K_P256]);
        profile_free(p);
    }
}

/* The openssl CLI, as an operator would check: -x509_strict, both TLS
 * purposes, against root + intermediate. */
static void test_openssl_verify_cli(void)
{
    static const char *const names[] = {"nf", "sepp", "star"};
    for (int t = 0; t < 3; t++) {
        profile *p = compile_picked(names[t], IS_P256);
        cf_issue_req req = t == 0 ? nf_req() : t == 1 ? sepp_req() : star_req();
        uint8_t der[4096];
        size_t dl = make_csr(csr_keys[K_P256], t == 1 ? sepp_san : nf_san, der, sizeof(der));
        static issued a;
        CU_ASSERT_EQUAL_FATAL(issue(p, IS_P256, der, dl, &req, &a), 0);
        char path[256];
        snprintf(path, sizeof(path), "%s/leaf-%s.der", tmpdir, names[t]);
        FILE *f = fopen(path, "wb");
        fwrite(a.cert, 1, a.cert_len, f);
        fclose(f);
        for (int purpose = 0; purpose < 2; purpose++) {
            char cmd[2048];
            snprintf(cmd, sizeof(cmd),
                     "openssl x509 -inform DER -in %s -out %s.pem && "
                     "openssl verify -x509_strict -purpose %s -CAfile %s/root.pem "
                     "-untrusted %s/int-p256.pem %s.pem >/dev/null",
                     path, path, purpose ? "sslserver" : "sslclient", tmpdir, tmpdir, path);
            int rc = system(cmd);
            if (rc != 0)
                fprintf(stderr, "\n  failed: %s\n", cmd);
            CU_ASSERT_EQUAL(rc, 0);
        }
        profile_free(p);
    }
}

/* build_tbs must refuse with POLICY_DENIED and this text in `why`. */
static void deny(const profile *p, csr_kind k, const char *san, const cf_issue_req *req,
                 cf_status want_st, const char *want)
{
    uint8_t der[4096];
    size_t dl = make_csr(csr_keys[k], san, der, sizeof(der));
    static issued a;
    int rc = issue(p, IS_P256, der, dl, req, &a);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_EQUAL(a.st, want_st);
    if (!strstr(a.why, want)) {
        fprintf(stderr, "\n  got:  '%s'\n  want: '%s'\n", a.why, want);
        CU_FAIL("denial message");
    }
}

static void test_policy_denials(void)
{
    profile *nf = compile_picked("nf", IS_P256), *sepp = compile_picked("sepp", IS_P256),
            *star = compile_picked("star", IS_P256), *nfec = compile_picked("nf-ec", IS_P256),
            *nf384 = compile_picked("nf-384", IS_P256);
    const cf_issue_req r = nf_req();
    const cf_status PD = CF_ST_POLICY_DENIED;
    cf_issue_req q;

    /* SANs the CSR asks for must have been authorized */
    deny(nf, K_P256, "DNS:" NF_FQDN ",DNS:evil.example.com", &r, PD,
         "CSR asks for dNSName 'evil.example.com', which was not authorized");
    deny(nf, K_P256, "URI:urn:uuid:00000000-0000-0000-0000-000000000000", &r, PD,
         "CSR asks for URI 'urn:uuid:00000000-0000-0000-0000-000000000000', which was not "
         "authorized");
    deny(nf, K_P256, "URI:https://evil.example.com/", &r, PD, "URI 'https://evil.example.com/'");
    deny(nf, K_P256, "IP:10.0.0.1", &r, PD, "subjectAltName type (not dNSName or URI)");
    deny(nf, K_P256, "email:a@example.com", &r, PD, "subjectAltName type (not dNSName or URI)");
    q = sepp_req();
    deny(sepp, K_P256, "URI:urn:uuid:" UUID, &q, PD, "CSR asks for URI 'urn:uuid:" UUID "'");

    /* NF instance ID: RFC 4122 text form */
    static const char *const bad_uuids[] = {
        "3f2504e0-4f89-11d3-9a0c-0305e82c330",   /* short */
        "3f2504e0-4f89-11d3-9a0c-0305e82c33011", /* long */
        "3f2504e0x4f89-11d3-9a0c-0305e82c3301",  /* separator */
        "3f2504e0-4f89-11d3-9a0c-0305e82c330g",  /* not hex */
        "{3f2504e0-4f89-11d3-9a0c-0305e82c33}",  "urn:uuid:3f2504e0-4f89-11d3-9a0c-03",
    };
    for (size_t i = 0; i < sizeof(bad_uuids) / sizeof(bad_uuids[0]); i++) {
        q = r;
        q.nf_instance_id = S(bad_uuids[i]);
        char want[128];
        snprintf(want, sizeof(want), "NF instance ID '%s' is not a UUID", bad_uuids[i]);
        deny(nf, K_P256, NULL, &q, PD, want);
    }
    q = r;
    q.nf_instance_id = S("");
    deny(nf, K_P256, NULL, &q, PD, "profile 'nf' requires an NF instance ID");

    /* FQDNs: LDH labels, <= 253, no wildcard */
    char long_label[80], long_name[300];
    memset(long_label, 'a', 64);
    strcpy(long_label + 64, ".example.com");
    memset(long_name, 0, sizeof(long_name));
    for (int i = 0; i < 5; i++)
        strcat(long_name, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.");
    strcat(long_name, "example.org"); /* 5 * 50 + 11 = 261 */
    static const struct {
        const char *name, *why;
    } bad_fqdns[] = {
        {"a..example.com", "has an empty label"},
        {"-a.example.com", "has a label starting with '-'"},
        {"a-.example.com", "has a label ending with '-'"},
        {"a.example-", "has a label ending with '-'"},
        {"*.example.com", "is a wildcard"},
        {"a_b.example.com", "has a character other than"},
        {"a b.example.com", "has a character other than"},
        {"localhost", "is not fully qualified"},
        {"10.0.0.1", "has an all-numeric top-level label"},
        {"amf.example.com.", "ends with '.'"},
        {".example.com", "has an empty label"},
        {"", "empty"},
    };
    for (size_t i = 0; i < sizeof(bad_fqdns) / sizeof(bad_fqdns[0]); i++) {
        q = r;
        q.fqdns[0] = S(bad_fqdns[i].name);
        char want[160];
        snprintf(want, sizeof(want), "FQDN '%s' %s", bad_fqdns[i].name, bad_fqdns[i].why);
        deny(nf, K_P256, NULL, &q, PD, want);
    }
    q = r;
    q.fqdns[0] = S(long_label);
    deny(nf, K_P256, NULL, &q, PD, "has a label longer than 63 characters");
    q.fqdns[0] = S(long_name);
    deny(nf, K_P256, NULL, &q, PD, "longer than 253 characters");
    q = r;
    q.fqdns[1] = S("amf1.5GC.mnc001.mcc001.3gppnetwork.org");
    q.n_fqdns = 2;
    deny(nf, K_P256, NULL, &q, PD, "given twice");
    q = sepp_req();
    q.n_fqdns = 0;
    deny(sepp, K_P256, NULL, &q, PD, "profile 'sepp' requires at least one FQDN");
    q = r;
    q.n_fqdns = 0;
    q.nf_instance_id = S("");
    deny(nf384, K_P256, NULL, &q, PD, "profile 'nf-384' requires at least one FQDN");

    /* validity */
    q = r;
    q.validity_s = 365u * 86400 + 1;
    deny(nf, K_P256, NULL, &q, PD,
         "requested validity 31536001s exceeds profile 'nf' maximum of 31536000s");
    q = star_req();
    q.validity_s = 7 * 86400;
    deny(star, K_P256, NULL, &q, PD, "exceeds profile 'star' maximum of 518400s");

    /* NF types */
    q = r;
    q.n_nf_types = 0;
    deny(nf, K_P256, NULL, &q, PD, "profile 'nf' requires at least one NF type (RFC 9310 NFTypes)");
    q = r;
    q.nf_types[0] = S("UDM");
    deny(nf, K_P256, NULL, &q, PD, "NF type 'UDM' is not allowed by profile 'nf'");
    q = star_req();
    q.nf_types[0] = S("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456"); /* 33 */
    deny(star, K_P256, NULL, &q, PD,
         "NF type 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456' is not an NFType");
    q.nf_types[0] = S("");
    deny(star, K_P256, NULL, &q, PD, "NF type '' is not an NFType");
    q.nf_types[0] = S("A\xe9");
    deny(star, K_P256, NULL, &q, PD, "NF type 'A?' is not an NFType");
    q = r;
    q.nf_types[1] = S("AMF");
    deny(nf, K_P256, NULL, &q, PD, "NF type 'AMF' given twice");
    q = sepp_req();
    q.nf_types[0] = S("AMF");
    q.n_nf_types = 1;
    deny(sepp, K_P256, sepp_san, &q, PD, "profile 'sepp' issues NF type SEPP only, not 'AMF'");

    /* key types */
    deny(nfec, K_RSA, NULL, &r, PD,
         "key type rsa-2048 is not allowed by profile 'nf-ec' (allowed: ec-p256)");
    deny(nfec, K_ED25519, NULL, &r, PD, "key type ed25519 is not allowed by profile 'nf-ec'");
    deny(nfec, K_P384, NULL, &r, PD, "key type ec-p384 is not allowed");

    /* allowed variations: URI in upper case, DNS in mixed case, no SAN
     * request at all, sepp asking for "SEPP" itself */
    static issued a;
    uint8_t der[4096];
    size_t dl =
        make_csr(csr_keys[K_P256], "URI:URN:UUID:" UUID_UPPER ",DNS:" NF_FQDN, der, sizeof(der));
    CU_ASSERT_EQUAL(issue(nf, IS_P256, der, dl, &r, &a), 0);
    dl = make_csr(csr_keys[K_P256], NULL, der, sizeof(der));
    CU_ASSERT_EQUAL(issue(nf, IS_P256, der, dl, &r, &a), 0);
    q = sepp_req();
    q.nf_types[0] = S("SEPP");
    q.n_nf_types = 1;
    CU_ASSERT_EQUAL(issue(sepp, IS_P256, der, dl, &q, &a), 0);
    check_cert(sepp, &a, cprof("sepp"), IS_P256, &q, csr_keys[K_P256]);
    /* a sepp request may carry an NF instance ID: it is issued */
    q.nf_instance_id = S(UUID);
    CU_ASSERT_EQUAL(issue(sepp, IS_P256, der, dl, &q, &a), 0);
    check_cert(sepp, &a, cprof("sepp"), IS_P256, &q, csr_keys[K_P256]);

    profile_free(nf);
    profile_free(sepp);
    profile_free(star);
    profile_free(nfec);
    profile_free(nf384);
}

static void test_compile_refusals(void)
{
    profile *p = NULL;
    char err[1024];
    /* the P-256 issuer's certificate with the P-384 issuer's key */
    CU_ASSERT_EQUAL(profile_compile(cprof("nf"), is_der[IS_P256], is_der_len[IS_P256],
                                    is_key[IS_P384], CF_SIG_ECDSA_SHA384, &p, err, sizeof(err)),
                    -1);
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(err, "issuer 'nf-ca': certificate /C=FI/O=certforge test/CN=Test Issuing CA p256"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "holds public key EC prime256v1"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "but HSM key 'nf-key' is EC secp384r1"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "they do not match"));
    /* same type, different key */
    CU_ASSERT_EQUAL(profile_compile(cprof("nf"), is_der[IS_P256], is_der_len[IS_P256], root_key,
                                    CF_SIG_ECDSA_SHA256, &p, err, sizeof(err)),
                    -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "they do not match"));

    /* not a CA: an issued end-entity certificate as issuer */
    profile *nf = compile_picked("nf", IS_P256);
    cf_issue_req r = nf_req();
    uint8_t der[4096];
    size_t dl = make_csr(csr_keys[K_P256], NULL, der, sizeof(der));
    static issued a;
    CU_ASSERT_EQUAL_FATAL(issue(nf, IS_P256, der, dl, &r, &a), 0);
    CU_ASSERT_EQUAL(profile_compile(cprof("nf"), a.cert, a.cert_len, csr_keys[K_P256],
                                    CF_SIG_ECDSA_SHA256, &p, err, sizeof(err)),
                    -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "is not a CA certificate"));
    profile_free(nf);

    /* garbage, trailing bytes */
    CU_ASSERT_EQUAL(profile_compile(cprof("nf"), (const uint8_t *)"\x30\x00", 2, is_key[IS_P256],
                                    CF_SIG_ECDSA_SHA256, &p, err, sizeof(err)),
                    -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "is not one DER certificate"));
    uint8_t *longer = malloc(is_der_len[IS_P256] + 1);
    memcpy(longer, is_der[IS_P256], is_der_len[IS_P256]);
    longer[is_der_len[IS_P256]] = 0;
    CU_ASSERT_EQUAL(profile_compile(cprof("nf"), longer, is_der_len[IS_P256] + 1, is_key[IS_P256],
                                    CF_SIG_ECDSA_SHA256, &p, err, sizeof(err)),
                    -1);
    free(longer);

    /* mechanism must fit the key and the profile's hash */
    CU_ASSERT_EQUAL(profile_compile(cprof("nf"), is_der[IS_P256], is_der_len[IS_P256],
                                    is_key[IS_P256], CF_SIG_RSA_PKCS1_SHA256, &p, err,
                                    sizeof(err)),
                    -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "mechanism"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "does not fit issuer key 'nf-key' (EC prime256v1)"));
    CU_ASSERT_EQUAL(profile_compile(cprof("nf"), is_der[IS_ED25519], is_der_len[IS_ED25519],
                                    is_key[IS_ED25519], CF_SIG_ECDSA_SHA256, &p, err,
                                    sizeof(err)),
                    -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "does not fit"));
    CU_ASSERT_EQUAL(profile_compile(cprof("nf-384"), is_der[IS_P256], is_der_len[IS_P256],
                                    is_key[IS_P256], CF_SIG_ECDSA_SHA256, &p, err, sizeof(err)),
                    -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "is weaker than the profile's hash sha384"));

    /* profile_read_cert: PEM, DER, neither */
    char path[256];
    uint8_t *d = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/int-p256.pem", tmpdir);
    CU_ASSERT_EQUAL_FATAL(profile_read_cert(path, &d, &len, err, sizeof(err)), 0);
    CU_ASSERT(len == is_der_len[IS_P256] && memcmp(d, is_der[IS_P256], len) == 0);
    free(d);
    snprintf(path, sizeof(path), "%s/int.der", tmpdir);
    FILE *f = fopen(path, "wb");
    fwrite(is_der[IS_RSA], 1, is_der_len[IS_RSA], f);
    fclose(f);
    CU_ASSERT_EQUAL_FATAL(profile_read_cert(path, &d, &len, err, sizeof(err)), 0);
    CU_ASSERT(len == is_der_len[IS_RSA] && memcmp(d, is_der[IS_RSA], len) == 0);
    free(d);
    snprintf(path, sizeof(path), "%s/nothing", tmpdir);
    CU_ASSERT_EQUAL(profile_read_cert(path, &d, &len, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot open"));
    snprintf(path, sizeof(path), "%s/root.pem.junk", tmpdir);
    f = fopen(path, "w");
    fputs("not a certificate\n", f);
    fclose(f);
    CU_ASSERT_EQUAL(profile_read_cert(path, &d, &len, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a PEM or DER certificate"));
}

static void test_serial(void)
{
    uint8_t s[PROFILE_SERIAL_MAX], prev[PROFILE_SERIAL_MAX];
    size_t n;
    /* 2000 serials: 16 octets, first 0x40..0x7f, all distinct from the last */
    for (int i = 0; i < 2000; i++) {
        CU_ASSERT_EQUAL_FATAL(profile_serial(s, &n, NULL, 0), 0);
        CU_ASSERT_EQUAL(n, PROFILE_SERIAL_RANDOM);
        CU_ASSERT((s[0] & 0xC0) == 0x40);
        if (i)
            CU_ASSERT(memcmp(s, prev, n) != 0);
        memcpy(prev, s, n);
    }
    static const uint8_t pfx[] = {0x01, 0xA0, 0xFF, 0x00};
    CU_ASSERT_EQUAL(profile_serial(s, &n, pfx, 4), 0);
    CU_ASSERT_EQUAL(n, 20);
    CU_ASSERT(memcmp(s, pfx, 4) == 0);
    CU_ASSERT_EQUAL(profile_serial(s, &n, pfx, 1), 0);
    CU_ASSERT_EQUAL(n, 17);
    CU_ASSERT_EQUAL(profile_serial(s, &n, (const uint8_t *)"\x80", 1), -1);
    CU_ASSERT_EQUAL(profile_serial(s, &n, (const uint8_t *)"\x00\x01", 2), -1);
    CU_ASSERT_EQUAL(profile_serial(s, &n, pfx, 5), -1);

    /* A forked child must not reuse the parent's buffered random octets. */
    CU_ASSERT_EQUAL_FATAL(profile_serial(s, &n, NULL, 0), 0); /* buffer filled */
    int fd[2];
    CU_ASSERT_EQUAL_FATAL(pipe(fd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        uint8_t c[PROFILE_SERIAL_MAX];
        size_t cn;
        if (profile_serial(c, &cn, NULL, 0) != 0 || write(fd[1], c, cn) != (ssize_t)cn)
            _exit(1);
        _exit(0);
    }
    uint8_t child[PROFILE_SERIAL_MAX], mine[PROFILE_SERIAL_MAX];
    CU_ASSERT_EQUAL(read(fd[0], child, PROFILE_SERIAL_RANDOM), PROFILE_SERIAL_RANDOM);
    int status;
    waitpid(pid, &status, 0);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT_EQUAL(profile_serial(mine, &n, NULL, 0), 0);
    CU_ASSERT(memcmp(child, mine, PROFILE_SERIAL_RANDOM) != 0);
    close(fd[0]);
    close(fd[1]);
}

static void test_limits(void)
{
    profile *p = compile_picked("star", IS_P256);
    csr c;
    uint8_t der[4096];
    size_t dl = make_csr(csr_keys[K_RSA], NULL, der, sizeof(der));
    CU_ASSERT_EQUAL_FATAL(csr_parse(der, dl, &c), CSR_OK);

    /* the largest request fits profile_tbs_max() */
    static char names[CF_MAX_FQDNS][260];
    static char types[CF_MAX_NF_TYPES][40];
    cf_issue_req q = star_req();
    for (int i = 0; i < CF_MAX_FQDNS; i++) {
        memset(names[i], 'a', 253);
        for (int k = 60; k < 253; k += 61)
            names[i][k] = '.';
        snprintf(names[i] + 240, 20, "%04d.example", i);
        names[i][253] = 0;
        q.fqdns[i] = S(names[i]);
    }
    q.n_fqdns = CF_MAX_FQDNS;
    for (int i = 0; i < CF_MAX_NF_TYPES; i++) {
        snprintf(types[i], sizeof(types[i]), "TYPE%028d", i);
        q.nf_types[i] = S(types[i]);
    }
    q.n_nf_types = CF_MAX_NF_TYPES;
    static uint8_t big[40000];
    uint8_t serial[20];
    memset(serial, 0x7F, 20);
    size_t len;
    cf_status st;
    char why[256] = "";
    int rc = profile_build_tbs(p, &c, &q, serial, 20, 1700000000, big, profile_tbs_max(p), &len,
                               &st, why, sizeof(why));
    if (rc)
        fprintf(stderr, "\n  %s\n", why);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(len <= profile_tbs_max(p));
    CU_ASSERT_EQUAL(der_validate(big, len, 32), DER_OK);
    fprintf(stderr, " [largest TBS %zu, tbs_max %zu, cert_max %zu] ", len, profile_tbs_max(p),
            profile_cert_max(p));
    /* one octet short: refused (the buffer is the size limit), nothing written past the end */
    big[len - 1] = 0xEE;
    CU_ASSERT_EQUAL(profile_build_tbs(p, &c, &q, serial, 20, 1700000000, big, len - 1, &len, &st,
                                      why, sizeof(why)),
                    -1);
    CU_ASSERT_EQUAL(st, CF_ST_POLICY_DENIED);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "at most"));
    CU_ASSERT_EQUAL(big[len - 1], 0xEE);

    /* serials: zero, 21 octets, 20 octets with the top bit set */
    q = star_req();
    uint8_t s21[21] = {0x01};
    uint8_t s20[20] = {0x80};
    const struct {
        const uint8_t *s;
        size_t n;
    } bad[] = {{(const uint8_t *)"\x00\x00", 2}, {s21, 21}, {s20, 20}, {s20, 0}};
    for (size_t i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL(profile_build_tbs(p, &c, &q, bad[i].s, bad[i].n, 1700000000, big,
                                          sizeof(big), &len, &st, why, sizeof(why)),
                        -1);
        CU_ASSERT_EQUAL(st, CF_ST_INTERNAL);
    }
    /* a leading zero octet is stripped; 20 octets with 0x7f lead fit */
    CU_ASSERT_EQUAL(profile_build_tbs(p, &c, &q, (const uint8_t *)"\x00\x05", 2, 1700000000, big,
                                      sizeof(big), &len, &st, why, sizeof(why)),
                    0);

    /* assemble into a too small buffer */
    size_t tl = len;
    uint8_t sig[72] = {0x30};
    uint8_t *cert = malloc(tl + 100);
    size_t cl;
    CU_ASSERT_EQUAL(profile_assemble(p, big, tl, sig, sizeof(sig), cert, tl + 10, &cl), -1);
    CU_ASSERT_EQUAL(profile_assemble(p, big, tl, sig, sizeof(sig), cert, tl + 100, &cl), 0);
    free(cert);
    profile_free(p);
}

/* The hot path as certforged runs it, many times over: serial +
 * build_tbs + assemble, then the TBS digest, for a P-256 CSR under a P-256
 * issuer. Every call succeeds and the last certificate is whole (it parses,
 * with the last serial). What it costs is bench/profile_bench's to say. */
static void test_hot_path(void)
{
    profile *p = compile_picked("nf", IS_P256);
    cf_issue_req r = nf_req();
    uint8_t der[4096];
    size_t dl = make_csr(csr_keys[K_P256], nf_san, der, sizeof(der));
    csr c;
    CU_ASSERT_EQUAL_FATAL(csr_parse(der, dl, &c), CSR_OK);
    static uint8_t tbs[8192], cert[8192];
    uint8_t serial[20], sig[72], dg[PROFILE_DIGEST_MAX];
    memset(sig, 0x42, sizeof(sig));
    size_t sl = 0, tl = 0, cl = 0, inl;
    const uint8_t *in;
    cf_status st;
    char why[128];
    const int N = 2000;
    for (int i = 0; i < N; i++) {
        if (profile_serial(serial, &sl, NULL, 0) ||
            profile_build_tbs(p, &c, &r, serial, sl, 1700000000, tbs, sizeof(tbs), &tl, &st, why,
                              sizeof(why)) ||
            profile_assemble(p, tbs, tl, sig, sizeof(sig), cert, sizeof(cert), &cl))
            CU_FAIL_FATAL("hot path failed");
    }
    for (int i = 0; i < N; i++)
        if (profile_tbs_digest(p, tbs, tl, dg, &in, &inl))
            CU_FAIL_FATAL("digest failed");
    CU_ASSERT_EQUAL(inl, 32);
    const unsigned char *q = cert;
    X509 *x = d2i_X509(NULL, &q, (long)cl);
    CU_ASSERT_PTR_NOT_NULL(x);
    CU_ASSERT(q == cert + cl);
    if (x) {
        const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
        CU_ASSERT(sn->length == (int)sl && memcmp(sn->data, serial, sl) == 0);
    }
    X509_free(x);
    profile_free(p);
}

/* CRL shards (docs/crl.md): the serial's last 4 octets mod N, and the
 * crl_dp template with {shard} replaced. */
static void test_crl_shard(void)
{
    static const uint8_t s1[] = {0x7f, 0xee, 0x00, 0x00, 0x01, 0x07}; /* ...00000107 = 263 */
    CU_ASSERT_EQUAL(profile_crl_shard(s1, sizeof(s1), 4), 263 % 4);
    CU_ASSERT_EQUAL(profile_crl_shard(s1, sizeof(s1), 1024), 263);
    CU_ASSERT_EQUAL(profile_crl_shard(s1, sizeof(s1), 1), 0);
    CU_ASSERT_EQUAL(profile_crl_shard(s1, sizeof(s1), 0), 0);
    static const uint8_t s2[] = {0x05}; /* short serials: all of them */
    CU_ASSERT_EQUAL(profile_crl_shard(s2, 1, 3), 2);
    static const uint8_t s3[] = {0x00, 0x05}; /* a leading zero changes nothing */
    CU_ASSERT_EQUAL(profile_crl_shard(s3, 2, 3), 2);
    static const uint8_t s4[] = {0xff, 0xff, 0xff, 0xff}; /* 4294967295 */
    CU_ASSERT_EQUAL(profile_crl_shard(s4, 4, 1000), 295);
    char out[64];
    CU_ASSERT_EQUAL(profile_crl_dp_uri("http://c.example/ca/{shard}.crl", 17, out, sizeof(out)), 0);
    CU_ASSERT_STRING_EQUAL(out, "http://c.example/ca/17.crl");
    CU_ASSERT_EQUAL(profile_crl_dp_uri("http://c.example/ca.crl", 3, out, sizeof(out)), 0);
    CU_ASSERT_STRING_EQUAL(out, "http://c.example/ca.crl");
    CU_ASSERT_EQUAL(profile_crl_dp_uri("http://c.example/{shard}", 1023, out, 21), -1);
    CU_ASSERT_EQUAL(profile_crl_dp_uri("http://c.example/{shard}", 1023, out, 22), 0);
    CU_ASSERT_STRING_EQUAL(out, "http://c.example/1023");
}

int main(int argc, char **argv)
{
    static const cf_test tests[] = {
        {"CRL shard of a serial, shard URLs", test_crl_shard},
        {"every profile type x every CSR key type", test_types_and_keys},
        {"issuer key types and mechanisms", test_issuer_mechs},
        {"openssl verify -x509_strict", test_openssl_verify_cli},
        {"policy denials", test_policy_denials},
        {"compile refusals, profile_read_cert", test_compile_refusals},
        {"serials", test_serial},
        {"size limits, bad serials", test_limits},
        {"hot path repeated (bench/profile_bench times it)", test_hot_path},
    };
    static const cf_suite suites[] = {CF_SUITE("profile", suite_init, suite_clean, tests)};
    return CF_TEST_MAIN(argc, argv, suites);
}
