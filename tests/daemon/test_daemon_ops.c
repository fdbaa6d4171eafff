/* certforged's SIGN, REVOKE and CRL operations, end to end: the built
 * daemon on a SoftHSM token with P-256 (the CA), P-384, RSA-2048 and
 * Ed25519 keys, clients through libcertforge.
 *
 *   SIGN: every mechanism each key type can do, each signature verified by
 *   OpenSSL with the public key from KEYS; refusals (mechanism that does
 *   not fit the key, unknown key, key not granted, peer without the sign
 *   grant); every SIGN in the ledger with key, mechanism, digest and uid.
 *   REVOKE: new, repeated (the first stands), unknown serial, removeFromCRL.
 *   CRL: made at start, remade within revoke_delay of a revocation, written
 *   to the publish folder, answered by the CRL op; parsed by OpenSSL: v2,
 *   issuer, signature, AKI, increasing cRLNumber, entries and reasons;
 *   X509_verify_cert with CRL checking rejects the revoked certificate and
 *   accepts the others.
 */
#include "cf_test.h"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cf_daemon.h"
#include "engine/ledger/ledger.h"
#include "common/sigalg.h"

static char CRL_DIR[300], EXTRA[600], GRANTS[600], OPS_CONF[300];
static const char *const KEYNAMES[] = {"ca", "p384", "rsa", "ed"};

#define PIN "5678"

static int suite_init(void)
{
    int rc = dh_suite_init("cf-ops", PIN, "Ops Test CA");
    if (rc != 0)
        return rc;
    char uri[1024];
    cf_softhsm_uri(&H, NULL, uri, sizeof(uri));
    if (cf_sh("'%s' keys generate --token '%s' --type ec-p384 --label p384 >/dev/null && "
              "'%s' keys generate --token '%s' --type rsa-2048 --label rsa >/dev/null && "
              "'%s' keys generate --token '%s' --type ed25519 --label ed >/dev/null",
              CLI, uri, CLI, uri, CLI, uri))
        return -1;
    snprintf(CRL_DIR, sizeof(CRL_DIR), "%s/crl", H.dir);
    snprintf(OPS_CONF, sizeof(OPS_CONF), "%s/ops.conf", H.dir);
    if (mkdir(CRL_DIR, 0755) != 0)
        return -1;
    snprintf(EXTRA, sizeof(EXTRA),
             "crl = { dir = \"%s\"; interval = \"60s\"; validity = \"1h\"; revoke_delay = \"1s\"; "
             "};",
             CRL_DIR);
    /* sign on three of the four keys: p384 is not granted */
    snprintf(GRANTS, sizeof(GRANTS),
             "( { uid = %u; profiles = [\"nf\"]; ops = [\"issue\", \"status\", \"keys\"]; },\n"
             "  { uid = %u; keys = [\"ca\", \"rsa\", \"ed\"]; ops = [\"sign\", \"revoke\", "
             "\"crl\"]; } )",
             (unsigned)getuid(), (unsigned)getuid());
    return 0;
}

static int suite_clean(void)
{
    return dh_suite_clean();
}

static void test_no_pin_in_logs(void)
{
    dh_assert_no_pin_in_logs(PIN, 3);
}

static int n_revoked(X509_CRL *x)
{
    STACK_OF(X509_REVOKED) *r = X509_CRL_get_REVOKED(x);
    return r ? sk_X509_REVOKED_num(r) : 0;
}

static void start_ops(dproc *d)
{
    conf_opts o = {
        .grants = GRANTS,
        .extra_keys = ", { name = \"p384\"; token = \"ca\"; uri = \"pkcs11:object=p384\"; },"
                      " { name = \"rsa\"; token = \"ca\"; uri = \"pkcs11:object=rsa\"; },"
                      " { name = \"ed\"; token = \"ca\"; uri = \"pkcs11:object=ed\"; }",
        .extra = EXTRA,
    };
    write_conf(OPS_CONF, &o);
    CU_ASSERT_EQUAL_FATAL(daemon_start(d, OPS_CONF, NULL), 0);
}

/* ------------------------------------------------------------ SIGN */

static EVP_PKEY *KEYPUB[4];

static void fetch_keys(cf_client *c)
{
    cf_response r;
    CU_ASSERT_EQUAL_FATAL(cf_client_keys(c, 5000, &r), 0);
    CU_ASSERT_EQUAL_FATAL(r.n_keys, 4);
    for (unsigned i = 0; i < r.n_keys; i++)
        for (int k = 0; k < 4; k++)
            if (r.keys[i].name.len == strlen(KEYNAMES[k]) &&
                memcmp(r.keys[i].name.p, KEYNAMES[k], r.keys[i].name.len) == 0) {
                const unsigned char *p = r.keys[i].spki.p;
                KEYPUB[k] = d2i_PUBKEY(NULL, &p, (long)r.keys[i].spki.len);
            }
    for (int k = 0; k < 4; k++)
        CU_ASSERT_PTR_NOT_NULL_FATAL(KEYPUB[k]);
}

/* SIGN one message with key k and mechanism m; verify with OpenSSL. */
static int sign_verify(cf_client *c, int k, unsigned m, const char *msg, cf_status *st)
{
    static const char *const mdn[] = {"SHA256", "SHA384", "SHA512"};
    uint8_t dg[64];
    unsigned dl = 0;
    const EVP_MD *md = NULL;
    if (m != CF_SIGN_ED25519) {
        md = EVP_get_digestbyname(mdn[(m - 1) % 3]);
        CU_ASSERT_FATAL(EVP_Digest(msg, strlen(msg), dg, &dl, md, NULL) == 1);
    }
    cf_sign_req q = {
        .key = {KEYNAMES[k], strlen(KEYNAMES[k])},
        .mech = m,
        .data = m == CF_SIGN_ED25519 ? (const uint8_t *)msg : dg,
        .data_len = m == CF_SIGN_ED25519 ? strlen(msg) : dl,
        .requester = {"ops-test", 8},
    };
    cf_response r;
    if (cf_sign_one(c, &q, 10000, &r) != 0)
        return -1;
    *st = r.status;
    if (r.status != CF_ST_OK)
        return 0;
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    int ok = EVP_DigestVerifyInit(mc, &pc, md, NULL, KEYPUB[k]) == 1;
    if (ok && m >= CF_SIGN_RSA_PSS_SHA256 && m <= CF_SIGN_RSA_PSS_SHA512)
        ok = EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) == 1;
    ok = ok && EVP_DigestVerify(mc, r.sig.p, r.sig.len, (const uint8_t *)msg, strlen(msg)) == 1;
    EVP_MD_CTX_free(mc);
    return ok ? 1 : 2;
}

typedef struct sign_seen {
    int n, ca, rsa, ed, uid_ok, tag_ok;
} sign_seen;

static int count_signs(const ledger_sign_rec *r, void *arg)
{
    sign_seen *s = arg;
    s->n++;
    s->ca += strcmp(r->key, "ca") == 0;
    s->rsa += strcmp(r->key, "rsa") == 0;
    s->ed += strcmp(r->key, "ed") == 0 && strcmp(r->mechanism, "ed25519") == 0 &&
             r->digest_len == 64;
    s->uid_ok += r->requester_uid == (int64_t)getuid();
    s->tag_ok += r->requester && strcmp(r->requester, "ops-test") == 0;
    return 0;
}

static void test_sign(void)
{
    dproc d;
    start_ops(&d);
    cf_client *c = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    fetch_keys(c);
    cf_status st = CF_ST__MAX;
    int signed_ok = 0;
    /* ECDSA with every hash on the P-256 CA key */
    for (unsigned m = CF_SIGN_ECDSA_SHA256; m <= CF_SIGN_ECDSA_SHA512; m++) {
        CU_ASSERT_EQUAL(sign_verify(c, 0, m, "tbs bytes", &st), 1);
        CU_ASSERT_EQUAL(st, CF_ST_OK);
        signed_ok++;
    }
    /* RSA: PKCS#1 v1.5 and PSS with every hash */
    for (unsigned m = CF_SIGN_RSA_PKCS1_SHA256; m <= CF_SIGN_RSA_PSS_SHA512; m++) {
        CU_ASSERT_EQUAL(sign_verify(c, 2, m, "rsa tbs", &st), 1);
        CU_ASSERT_EQUAL(st, CF_ST_OK);
        signed_ok++;
    }
    /* Ed25519 signs the message itself */
    CU_ASSERT_EQUAL(sign_verify(c, 3, CF_SIGN_ED25519, "an ed25519 message", &st), 1);
    CU_ASSERT_EQUAL(st, CF_ST_OK);
    signed_ok++;

    /* refusals, each with its status */
    CU_ASSERT_EQUAL(sign_verify(c, 0, CF_SIGN_RSA_PSS_SHA256, "x", &st), 0);
    CU_ASSERT_EQUAL(st, CF_ST_POLICY_DENIED);
    CU_ASSERT_EQUAL(sign_verify(c, 3, CF_SIGN_ECDSA_SHA256, "x", &st), 0);
    CU_ASSERT_EQUAL(st, CF_ST_POLICY_DENIED);
    CU_ASSERT_EQUAL(sign_verify(c, 1, CF_SIGN_ECDSA_SHA384, "x", &st), 0);
    CU_ASSERT_EQUAL(st, CF_ST_UNAUTHORIZED); /* p384: not in the grant */
    uint8_t dg[32] = {1};
    cf_sign_req q = {.key = {"nope", 4}, .mech = CF_SIGN_ECDSA_SHA256, .data = dg,
                     .data_len = 32};
    cf_response r;
    CU_ASSERT_EQUAL_FATAL(cf_sign_one(c, &q, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_NOT_FOUND);
    CU_ASSERT_PTR_NOT_NULL(memmem(r.message.p, r.message.len, "no key named 'nope'", 19));
    /* a digest of the wrong size is not even sent */
    q.key = (cf_str){"ca", 2};
    q.data_len = 31;
    uint64_t id;
    CU_ASSERT_EQUAL(cf_client_submit_sign(c, &q, &id), -1);
    /* many in flight on one connection, answered by id */
    q.data_len = 32;
    uint64_t ids[64];
    for (int i = 0; i < 64; i++)
        CU_ASSERT_EQUAL_FATAL(cf_client_submit_sign(c, &q, &ids[i]), 0);
    CU_ASSERT_EQUAL(cf_client_flush(c, 5000), 0);
    int got = 0;
    for (int i = 0; i < 64; i++) {
        if (cf_client_next_response(c, 10000, &r) != 0)
            break;
        got += r.status == CF_ST_OK && r.op == CF_OP_SIGN && r.sig.len > 0;
    }
    CU_ASSERT_EQUAL(got, 64);
    signed_ok += got;
    cf_client_close(c);
    daemon_stop_clean(&d);

    /* every SIGN released is in the ledger */
    char db[400], err[512];
    snprintf(db, sizeof(db), "%s/ledger.db", H.dir);
    ledger_opts lo = {.backend = LEDGER_SQLITE, .path = db, .read_only = true};
    ledger *l = NULL;
    CU_ASSERT_EQUAL_FATAL(ledger_open(&lo, &l, err, sizeof(err)), 0);
    sign_seen s = {0};
    CU_ASSERT_EQUAL(ledger_list_signs(l, NULL, 0, count_signs, &s, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(s.n, signed_ok);
    CU_ASSERT_EQUAL(s.ca, 3 + 64);
    CU_ASSERT_EQUAL(s.rsa, 6);
    CU_ASSERT_EQUAL(s.ed, 1);
    CU_ASSERT_EQUAL(s.uid_ok, signed_ok);
    CU_ASSERT_EQUAL(s.tag_ok, 10);
    ledger_close(l);
}

/* A peer with no sign/revoke/crl grant is refused each, and learns no key
 * names. */
static void test_not_granted(void)
{
    dproc d;
    char conf[300];
    snprintf(conf, sizeof(conf), "%s/plain.conf", H.dir);
    conf_opts o = {.extra = EXTRA};
    write_conf(conf, &o);
    CU_ASSERT_EQUAL_FATAL(daemon_start(&d, conf, NULL), 0);
    cf_client *c = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    uint8_t dg[32] = {0};
    cf_sign_req q = {.key = {"nope", 4}, .mech = CF_SIGN_ECDSA_SHA256, .data = dg,
                     .data_len = 32};
    cf_response r;
    CU_ASSERT_EQUAL_FATAL(cf_sign_one(c, &q, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_UNAUTHORIZED);
    CU_ASSERT_PTR_NOT_NULL(memmem(r.message.p, r.message.len, "may not use SIGN", 16));
    uint8_t serial[1] = {1};
    CU_ASSERT_EQUAL_FATAL(cf_revoke_one(c, serial, 1, 1, (cf_str){NULL, 0}, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_UNAUTHORIZED);
    CU_ASSERT_EQUAL_FATAL(cf_crl_one(c, (cf_str){"ca", 2}, 0, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_UNAUTHORIZED);
    cf_client_close(c);
    daemon_stop_clean(&d);
}

/* ------------------------------------------------------------ REVOKE, CRL */

static X509 *issue_cert(cf_client *c, int i)
{
    cf_issue_req req;
    fill_req(&req, &POOL.items[i], "nf");
    cf_response r;
    if (cf_issue_one(c, &req, 10000, &r) != 0 || r.status != CF_ST_OK)
        return NULL;
    const unsigned char *p = r.cert.p;
    return d2i_X509(NULL, &p, (long)r.cert.len);
}

static size_t serial_of(X509 *x, uint8_t out[20])
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    int n = BN_bn2bin(bn, out);
    BN_free(bn);
    return (size_t)n;
}

static X509_CRL *read_crl_file(void)
{
    char p[400];
    snprintf(p, sizeof(p), "%s/ca.crl", CRL_DIR);
    FILE *f = fopen(p, "rb");
    if (!f)
        return NULL;
    X509_CRL *x = d2i_X509_CRL_fp(f, NULL);
    fclose(f);
    return x;
}

static long crl_number(X509_CRL *x)
{
    ASN1_INTEGER *n = X509_CRL_get_ext_d2i(x, NID_crl_number, NULL, NULL);
    long v = n ? ASN1_INTEGER_get(n) : -1;
    ASN1_INTEGER_free(n);
    return v;
}

static int reason_of(X509_REVOKED *rv)
{
    ASN1_ENUMERATED *e = X509_REVOKED_get_ext_d2i(rv, NID_crl_reason, NULL, NULL);
    int v = e ? (int)ASN1_ENUMERATED_get(e) : 0;
    ASN1_ENUMERATED_free(e);
    return v;
}

static int verify_with_crl(X509 *leaf, X509_CRL *crl)
{
    X509_STORE *st = X509_STORE_new();
    X509_STORE_add_cert(st, CA);
    X509_STORE_add_crl(st, crl);
    X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, st, leaf, NULL);
    int ok = X509_verify_cert(ctx);
    int e = X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    return ok == 1 ? X509_V_OK : e;
}

static void test_revoke_crl(void)
{
    dproc d;
    start_ops(&d);
    cf_client *c = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    /* the first CRL is made at start: empty, number >= 1 */
    X509_CRL *first = read_crl_file();
    CU_ASSERT_PTR_NOT_NULL_FATAL(first);
    long n0 = crl_number(first);
    CU_ASSERT(n0 >= 1);
    CU_ASSERT_EQUAL(n_revoked(first), 0);
    X509_CRL_free(first);

    X509 *x[3];
    uint8_t ser[3][20];
    size_t sl[3];
    for (int i = 0; i < 3; i++) {
        x[i] = issue_cert(c, i);
        CU_ASSERT_PTR_NOT_NULL_FATAL(x[i]);
        sl[i] = serial_of(x[i], ser[i]);
    }
    cf_response r;
    CU_ASSERT_EQUAL_FATAL(cf_revoke_one(c, ser[0], sl[0], 1, (cf_str){"acme", 4}, 5000, &r), 0);
    CU_ASSERT_EQUAL_FATAL(r.status, CF_ST_OK);
    int64_t at0 = r.revoked_at;
    CU_ASSERT(at0 > 1700000000);
    CU_ASSERT_EQUAL(r.reason, 1);
    CU_ASSERT_EQUAL_FATAL(cf_revoke_one(c, ser[1], sl[1], 4, (cf_str){NULL, 0}, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_OK);
    /* again with another reason: the first revocation stands */
    cf_sleep_ms(1100);
    CU_ASSERT_EQUAL_FATAL(cf_revoke_one(c, ser[0], sl[0], 5, (cf_str){NULL, 0}, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_OK);
    CU_ASSERT_EQUAL(r.revoked_at, at0);
    CU_ASSERT_EQUAL(r.reason, 1);
    /* unknown serial; removeFromCRL */
    uint8_t none[8] = {0x7f, 1, 2, 3, 4, 5, 6, 7};
    CU_ASSERT_EQUAL_FATAL(cf_revoke_one(c, none, 8, 1, (cf_str){NULL, 0}, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_NOT_FOUND);
    CU_ASSERT_PTR_NOT_NULL(memmem(r.message.p, r.message.len, "7f01020304050607", 16));
    CU_ASSERT_EQUAL_FATAL(cf_revoke_one(c, ser[2], sl[2], 8, (cf_str){NULL, 0}, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_POLICY_DENIED);

    /* within revoke_delay (1 s) a new CRL lists both */
    X509_CRL *crl = NULL;
    uint64_t end = cf_now_ms() + 10000;
    while (cf_now_ms() < end) {
        crl = read_crl_file();
        if (crl && n_revoked(crl) == 2)
            break;
        X509_CRL_free(crl);
        crl = NULL;
        cf_sleep_ms(100);
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(crl);
    CU_ASSERT(crl_number(crl) > n0);
    CU_ASSERT_EQUAL(X509_CRL_get_version(crl), 1); /* v2 */
    CU_ASSERT_EQUAL(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(CA)), 0);
    CU_ASSERT_EQUAL(X509_CRL_verify(crl, X509_get0_pubkey(CA)), 1);
    CU_ASSERT_EQUAL(ASN1_TIME_compare(X509_CRL_get0_lastUpdate(crl),
                                      X509_CRL_get0_nextUpdate(crl)),
                    -1);
    int days = 0, secs = 0;
    CU_ASSERT(ASN1_TIME_diff(&days, &secs, X509_CRL_get0_lastUpdate(crl),
                             X509_CRL_get0_nextUpdate(crl)) == 1);
    CU_ASSERT_EQUAL(days * 86400 + secs, 3600);
    AUTHORITY_KEYID *aki = X509_CRL_get_ext_d2i(crl, NID_authority_key_identifier, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(aki);
    CU_ASSERT_EQUAL(ASN1_OCTET_STRING_cmp(aki->keyid, X509_get0_subject_key_id(CA)), 0);
    AUTHORITY_KEYID_free(aki);
    int found = 0;
    for (int i = 0; i < n_revoked(crl); i++) {
        X509_REVOKED *rv = sk_X509_REVOKED_value(X509_CRL_get_REVOKED(crl), i);
        const ASN1_INTEGER *s = X509_REVOKED_get0_serialNumber(rv);
        if (ASN1_INTEGER_cmp(s, X509_get0_serialNumber(x[0])) == 0) {
            found |= 1;
            CU_ASSERT_EQUAL(reason_of(rv), 1);
            CU_ASSERT_EQUAL(ASN1_TIME_cmp_time_t(X509_REVOKED_get0_revocationDate(rv), at0), 0);
        } else if (ASN1_INTEGER_cmp(s, X509_get0_serialNumber(x[1])) == 0) {
            found |= 2;
            CU_ASSERT_EQUAL(reason_of(rv), 4);
        }
    }
    CU_ASSERT_EQUAL(found, 3);
    CU_ASSERT_EQUAL(verify_with_crl(x[0], crl), X509_V_ERR_CERT_REVOKED);
    CU_ASSERT_EQUAL(verify_with_crl(x[1], crl), X509_V_ERR_CERT_REVOKED);
    CU_ASSERT_EQUAL(verify_with_crl(x[2], crl), X509_V_OK);

    /* the CRL op answers the latest (the file's, or a newer one) */
    CU_ASSERT_EQUAL_FATAL(cf_crl_one(c, (cf_str){"ca", 2}, 0, 5000, &r), 0);
    CU_ASSERT_EQUAL_FATAL(r.status, CF_ST_OK);
    const unsigned char *p = r.crl.p;
    X509_CRL *viaop = d2i_X509_CRL(NULL, &p, (long)r.crl.len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(viaop);
    CU_ASSERT(crl_number(viaop) >= crl_number(crl));
    CU_ASSERT_EQUAL(X509_CRL_verify(viaop, X509_get0_pubkey(CA)), 1);
    X509_CRL_free(viaop);
    CU_ASSERT_EQUAL_FATAL(cf_crl_one(c, (cf_str){"nope", 4}, 0, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_NOT_FOUND);
    X509_CRL_free(crl);
    for (int i = 0; i < 3; i++)
        X509_free(x[i]);
    cf_client_close(c);
    daemon_stop_clean(&d);
    CU_ASSERT(log_has(d.log, "event=revoked serial="));
    CU_ASSERT(log_has(d.log, "event=crl issuer=ca"));
    /* a time in ISO 8601 UTC like every other, not Unix seconds */
    CU_ASSERT(log_has(d.log, " next_update=20"));
}

int main(int argc, char **argv)
{
    static const cf_test tests[] = {
        {"SIGN: every mechanism, refusals, ledger records", test_sign},
        {"SIGN, REVOKE, CRL refused without their grants", test_not_granted},
        {"REVOKE and CRLs, checked with OpenSSL", test_revoke_crl},
        {"no PIN in any log", test_no_pin_in_logs},
    };
    static const cf_suite suites[] = {
        CF_SUITE("certforged SIGN, REVOKE, CRL", suite_init, suite_clean, tests),
    };
    return CF_TEST_MAIN(argc, argv, suites);
}
