/* test_agent_units.c — certforge-agent's parsers of untrusted input and
 * its config loader: the EST body and CSR checks (estmsg.h), the ACME
 * answers (acmemsg.h), strict config with FILE:LINE errors (config.h).
 * Negative cases first-class: each refusal names its reason. */
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "acme/acme.h"
#include "agent/acmemsg.h"
#include "agent/config.h"
#include "agent/estmsg.h"
#include "cf_test.h"

static const char *NF = "6f1c2a6e-8c0e-4e0b-9a7e-2f1d3c4b5a69";

/* A DER CSR for key k with SANs given as an OpenSSL string ("URI:...,DNS:...") */
static int make_csr(EVP_PKEY *k, const char *sans, const char *cn, uint8_t **der, int break_sig)
{
    X509_REQ *r = X509_REQ_new();
    X509_REQ_set_pubkey(r, k);
    if (cn)
        X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(r), "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                   0);
    if (sans) {
        STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, sans);
        sk_X509_EXTENSION_push(exts, e);
        X509_REQ_add_extensions(r, exts);
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    }
    X509_REQ_sign(r, k, EVP_sha256());
    if (break_sig) {
        /* a signature over something else: sign, then change the subject */
        X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(r), "O", MBSTRING_ASC, (const unsigned char *)"x", -1, -1, 0);
    }
    *der = NULL;
    int n = i2d_X509_REQ(r, der);
    X509_REQ_free(r);
    return n;
}

static EVP_PKEY *key;

static int setup(void)
{
    key = EVP_EC_gen("P-256");
    return key ? 0 : -1;
}

static int teardown(void)
{
    EVP_PKEY_free(key);
    return 0;
}

static void check(const char *sans, const char *cn, int break_sig, int want_parse, est_err want)
{
    uint8_t *der;
    int n = make_csr(key, sans, cn, &der, break_sig);
    CU_ASSERT_FATAL(n > 0);
    est_csr c;
    est_err e = EST_OK;
    char why[300];
    int rc = est_csr_parse(der, (size_t)n, &c, &e, why, sizeof(why));
    CU_ASSERT_EQUAL(rc == 0, want_parse);
    if (rc == 0) {
        const char *allowed[] = {"amf1.5gc.example", "amf1b.5gc.example"};
        rc = est_csr_check(&c, NF, true, allowed, 2, &e, why, sizeof(why));
        est_csr_free(&c);
    }
    if (e != want)
        fprintf(stderr, "sans=%s: got %s (%s), want %s\n", sans ? sans : "-", est_err_name(e), why, est_err_name(want));
    CU_ASSERT_EQUAL(e, want);
    CU_ASSERT_EQUAL(rc == 0, want == EST_OK);
    OPENSSL_free(der);
}

static void test_csr_checks(void)
{
    check("URI:urn:uuid:6F1C2A6E-8C0E-4E0B-9A7E-2F1D3C4B5A69,DNS:amf1.5gc.example", NULL, 0, 1, EST_OK);
    check("DNS:AMF1.5gc.example,DNS:amf1b.5gc.example", "amf1.5gc.example", 0, 1, EST_OK);
    check("URI:urn:uuid:00000000-0000-4000-8000-000000000000", NULL, 0, 1, EST_E_FOREIGN_NAME);
    check("DNS:other.5gc.example", NULL, 0, 1, EST_E_FOREIGN_NAME);
    check("DNS:amf1.5gc.example", "other.5gc.example", 0, 1, EST_E_FOREIGN_NAME);
    check(NULL, NULL, 0, 1, EST_E_MISSING_NAME);
    check("URI:https://x.example/", NULL, 0, 0, EST_E_NAME_TYPE);
    check("IP:10.0.0.1", NULL, 0, 0, EST_E_NAME_TYPE);
    check("email:a@b.example", NULL, 0, 0, EST_E_NAME_TYPE);
    check("DNS:amf1.5gc.example,DNS:amf1.5gc.example", NULL, 0, 0, EST_E_BAD_CSR);
    check("DNS:-bad.5gc.example", NULL, 0, 0, EST_E_BAD_CSR);
    check("URI:urn:uuid:zzzzzzzz-0000-4000-8000-000000000000", NULL, 0, 0, EST_E_BAD_CSR);
    check("DNS:amf1.5gc.example", NULL, 1, 0, EST_E_BAD_CSR);
}

static void test_csr_keys(void)
{
    EVP_PKEY *rsa = EVP_RSA_gen(1024);
    uint8_t *der;
    EVP_PKEY *saved = key;
    key = rsa;
    int n = make_csr(key, "DNS:amf1.5gc.example", NULL, &der, 0);
    est_csr c;
    est_err e;
    char why[200];
    CU_ASSERT_EQUAL(est_csr_parse(der, (size_t)n, &c, &e, why, sizeof(why)), -1);
    CU_ASSERT_EQUAL(e, EST_E_BAD_KEY);
    OPENSSL_free(der);
    key = saved;
    EVP_PKEY_free(rsa);
    /* not a CSR, trailing data, too large */
    uint8_t junk[8] = {0x30, 0x03, 0x02, 0x01, 0x00, 0, 0, 0};
    CU_ASSERT_EQUAL(est_csr_parse(junk, sizeof(junk), &c, &e, why, sizeof(why)), -1);
    CU_ASSERT_EQUAL(e, EST_E_BAD_CSR);
    CU_ASSERT_EQUAL(est_csr_parse(junk, EST_MAX_CSR + 1, &c, &e, why, sizeof(why)), -1);
    CU_ASSERT_EQUAL(e, EST_E_BAD_ENCODING);
}

static void test_base64(void)
{
    uint8_t out[64];
    CU_ASSERT_EQUAL(est_b64_decode("aGVsbG8=", 8, out, sizeof(out)), 5);
    CU_ASSERT_EQUAL(memcmp(out, "hello", 5), 0);
    CU_ASSERT_EQUAL(est_b64_decode("aGVs\r\nbG8=\r\n", 12, out, sizeof(out)), 5);
    CU_ASSERT_EQUAL(est_b64_decode("aGVsbG8", 7, out, sizeof(out)), 5); /* unpadded */
    CU_ASSERT_EQUAL(est_b64_decode("aGVsbG9=", 8, out, sizeof(out)), -1); /* trailing bits */
    CU_ASSERT_EQUAL(est_b64_decode("aGVs=bG8", 8, out, sizeof(out)), -1); /* data after padding */
    CU_ASSERT_EQUAL(est_b64_decode("a", 1, out, sizeof(out)), -1);
    CU_ASSERT_EQUAL(est_b64_decode("", 0, out, sizeof(out)), -1);
    CU_ASSERT_EQUAL(est_b64_decode("aGVsbG8=", 8, out, 4), -1); /* cap */
    CU_ASSERT_EQUAL(est_b64_decode("a_b-", 4, out, sizeof(out)), -1); /* base64url is not base64 */
    size_t n;
    char *e = est_b64_encode((const uint8_t *)"hello", 5, &n);
    CU_ASSERT_STRING_EQUAL(e, "aGVsbG8=\r\n");
    free(e);
}

static void test_bearer(void)
{
    const char *t;
    size_t n;
    CU_ASSERT_EQUAL(est_bearer("Bearer a.b.c", &t, &n), 0);
    CU_ASSERT_EQUAL(n, 5);
    CU_ASSERT_EQUAL(est_bearer("bearer  a-_.b.c ", &t, &n), 0);
    CU_ASSERT_EQUAL(est_bearer("Basic abc", &t, &n), -1);
    CU_ASSERT_EQUAL(est_bearer("Bearer a.b", &t, &n), -1);
    CU_ASSERT_EQUAL(est_bearer("Bearer a.b.c.d", &t, &n), -1);
    CU_ASSERT_EQUAL(est_bearer("Bearer a.b+.c", &t, &n), -1);
    CU_ASSERT_EQUAL(est_bearer("Bearer ", &t, &n), -1);
    char out[37];
    /* payload {"atc":{"tkvalue":"6F1C2A6E-8C0E-4E0B-9A7E-2F1D3C4B5A69"}} */
    const char *tok = "e30.eyJhdGMiOnsidGt2YWx1ZSI6IjZGMUMyQTZFLThDMEUtNEUwQi05QTdFLTJGMUQzQzRCNUE2OSJ9fQ.c2ln";
    CU_ASSERT_EQUAL(est_token_peek_nf(tok, strlen(tok), out), 0);
    CU_ASSERT_STRING_EQUAL(out, NF);
    CU_ASSERT_EQUAL(est_token_peek_nf("e30.e30.c2ln", 12, out), -1);
    CU_ASSERT_EQUAL(est_token_peek_nf("e30..c2ln", 9, out), -1);
}

static void test_acme_answers(void)
{
    am_directory d;
    char why[200];
    const char *dir = "{\"newNonce\":\"https://a/n\",\"newAccount\":\"https://a/a\",\"newOrder\":\"https://a/o\","
                      "\"renewalInfo\":\"https://a/ri\",\"meta\":{\"profiles\":{}}}";
    CU_ASSERT_EQUAL(am_directory_parse(dir, strlen(dir), &d, why, sizeof(why)), 0);
    CU_ASSERT_STRING_EQUAL(d.renewal_info, "https://a/ri");
    CU_ASSERT_EQUAL(d.has_profiles, 1);
    const char *bad[] = {"{\"newNonce\":\"http://a/n\",\"newAccount\":\"https://a/a\",\"newOrder\":\"https://a/o\"}",
                         "{\"newAccount\":\"https://a/a\",\"newOrder\":\"https://a/o\"}", "[]", "{",
                         "{\"newNonce\":1,\"newAccount\":\"https://a/a\",\"newOrder\":\"https://a/o\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CU_ASSERT_EQUAL(am_directory_parse(bad[i], strlen(bad[i]), &d, why, sizeof(why)), -1);
    CU_ASSERT_EQUAL(d.has_star, 0);
    /* RFC 8739 §3.1.1 meta.auto-renewal */
#define DIR_AR(ar) "{\"newNonce\":\"https://a/n\",\"newAccount\":\"https://a/a\",\"newOrder\":\"https://a/o\"," \
                   "\"meta\":{\"auto-renewal\":" ar "}}"
    const char *star = DIR_AR("{\"min-lifetime\":3600,\"max-duration\":31536000,\"allow-certificate-get\":true}");
    CU_ASSERT_EQUAL(am_directory_parse(star, strlen(star), &d, why, sizeof(why)), 0);
    CU_ASSERT(d.has_star && d.star_min_lifetime == 3600 && d.star_max_duration == 31536000);
    const char *star0 = DIR_AR("{}");
    CU_ASSERT_EQUAL(am_directory_parse(star0, strlen(star0), &d, why, sizeof(why)), 0);
    CU_ASSERT(d.has_star && d.star_min_lifetime == 0 && d.star_max_duration == 0);
    const char *star_bad[] = {DIR_AR("true"), DIR_AR("{\"min-lifetime\":\"1h\"}"), DIR_AR("{\"max-duration\":-1}"),
                              DIR_AR("{\"min-lifetime\":1.5}")};
    for (size_t i = 0; i < sizeof(star_bad) / sizeof(star_bad[0]); i++) {
        CU_ASSERT_EQUAL(am_directory_parse(star_bad[i], strlen(star_bad[i]), &d, why, sizeof(why)), -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(why, "meta.auto-renewal"));
    }
#undef DIR_AR
    am_order o;
    const char *ord = "{\"status\":\"invalid\",\"finalize\":\"https://a/f\",\"authorizations\":[\"https://a/z1\"],"
                      "\"error\":{\"type\":\"urn:ietf:params:acme:error:unauthorized\",\"detail\":\"no \\\"way\\\"\"}}";
    CU_ASSERT_EQUAL(am_order_parse(ord, strlen(ord), &o, why, sizeof(why)), 0);
    CU_ASSERT_EQUAL(o.status, ACME_S_INVALID);
    CU_ASSERT_STRING_EQUAL(o.error_type, "unauthorized");
    CU_ASSERT_PTR_NULL(strchr(o.error_detail, '"')); /* it goes into log lines */
    const char *ord2 = "{\"status\":\"valid\",\"finalize\":\"https://a/f\",\"authorizations\":[]}";
    CU_ASSERT_EQUAL(am_order_parse(ord2, strlen(ord2), &o, why, sizeof(why)), -1);
    const char *ord3 = "{\"status\":\"weird\",\"finalize\":\"https://a/f\",\"authorizations\":[\"https://a/z\"]}";
    CU_ASSERT_EQUAL(am_order_parse(ord3, strlen(ord3), &o, why, sizeof(why)), -1);
    /* RFC 8739 §3.1.4: a valid STAR order's star-certificate, https only */
    const char *ord4 = "{\"status\":\"valid\",\"finalize\":\"https://a/f\",\"authorizations\":[\"https://a/z\"],"
                       "\"star-certificate\":\"https://a/star/1\"}";
    CU_ASSERT_EQUAL(am_order_parse(ord4, strlen(ord4), &o, why, sizeof(why)), 0);
    CU_ASSERT_STRING_EQUAL(o.star_certificate, "https://a/star/1");
    CU_ASSERT_STRING_EQUAL(o.certificate, "");
    const char *ord5 = "{\"status\":\"valid\",\"finalize\":\"https://a/f\",\"authorizations\":[\"https://a/z\"],"
                       "\"star-certificate\":\"http://a/star/1\"}";
    CU_ASSERT_EQUAL(am_order_parse(ord5, strlen(ord5), &o, why, sizeof(why)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "star-certificate"));
    am_authz z;
    const char *az = "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a.example\"},"
                     "\"challenges\":[{\"type\":\"http-01\",\"url\":\"https://a/c1\",\"token\":\"abc\",\"status\":\"pending\"},"
                     "{\"type\":\"dns-01\",\"url\":\"https://a/c2\",\"token\":\"xyz_-\",\"status\":\"pending\"}]}";
    CU_ASSERT_EQUAL(am_authz_parse(az, strlen(az), &z, why, sizeof(why)), 0);
    CU_ASSERT_PTR_NOT_NULL(am_authz_find(&z, "dns-01"));
    CU_ASSERT_STRING_EQUAL(am_authz_find(&z, "dns-01")->token, "xyz_-");
    CU_ASSERT_PTR_NULL(am_authz_find(&z, "tkauth-01"));
    const char *az2 = "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a.example\"},"
                      "\"challenges\":[{\"type\":\"dns-01\",\"url\":\"https://a/c2\",\"token\":\"a.b\",\"status\":\"pending\"}]}";
    CU_ASSERT_EQUAL(am_authz_parse(az2, strlen(az2), &z, why, sizeof(why)), -1); /* token not base64url */
    char t[64], dd[64];
    const char *pb = "{\"type\":\"urn:ietf:params:acme:error:badNonce\",\"detail\":\"x\"}";
    CU_ASSERT_EQUAL(am_problem_parse(pb, strlen(pb), t, sizeof(t), dd, sizeof(dd)), 0);
    CU_ASSERT_STRING_EQUAL(t, "badNonce");
    int64_t s, e;
    const char *ri = "{\"suggestedWindow\":{\"start\":\"2026-01-01T00:00:00Z\",\"end\":\"2026-01-02T00:00:00Z\"}}";
    CU_ASSERT_EQUAL(am_renewal_info_parse(ri, strlen(ri), &s, &e), 0);
    CU_ASSERT_EQUAL(e - s, 86400);
    const char *ri2 = "{\"suggestedWindow\":{\"start\":\"2026-01-02T00:00:00Z\",\"end\":\"2026-01-01T00:00:00Z\"}}";
    CU_ASSERT_EQUAL(am_renewal_info_parse(ri2, strlen(ri2), &s, &e), -1);
    CU_ASSERT_EQUAL(am_retry_after("30", 5, 60), 30);
    CU_ASSERT_EQUAL(am_retry_after("3000", 5, 60), 60);
    CU_ASSERT_EQUAL(am_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 5, 60), 5);
    CU_ASSERT_EQUAL(am_retry_after(NULL, 5, 60), 5);
}

static char tmpdir[] = "/tmp/cf-agent-units.XXXXXX";

static void write_file(const char *name, const char *text)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
}

#define BASE                                                                                                           \
    "tls = { certificate = \"est.pem\"; key = \"est.key\"; };\n"                                                     \
    "cacerts = \"ca.pem\";\n"                                                                                          \
    "bootstrap = { trust_anchors = \"v.pem\"; token_trust_anchors = \"oam.pem\"; };\n"                               \
    "state = { path = \"agent.db\"; };\n"                                                                             \
    "acme = { directory = \"https://acme.example/directory\"; };\n"                                                   \
    "dns_update = { server = \"127.0.0.1:53\"; zones = [\"5gc.example.\"];\n"                                        \
    "  tsig = { name = \"k\"; secret_file = \"tsig\"; }; };\n"

static void cfg_fails(const char *text, const char *want)
{
    agent_cfg *c = NULL;
    char err[600] = "";
    int rc = agent_cfg_load_string(text, tmpdir, &c, err, sizeof(err));
    CU_ASSERT_EQUAL(rc, -1);
    if (!strstr(err, want))
        fprintf(stderr, "config error '%s' lacks '%s'\n", err, want);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, want));
    agent_cfg_free(c);
}

static void test_config(void)
{
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(tmpdir));
    write_file("tsig", "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\n");
    agent_cfg *c = NULL;
    char err[600] = "";
    CU_ASSERT_EQUAL_FATAL(agent_cfg_load_string(BASE, tmpdir, &c, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(c->listen_port, 8443);
    CU_ASSERT_EQUAL(c->workers, 16);
    CU_ASSERT_TRUE(c->nf_instance_id);
    CU_ASSERT_EQUAL(c->est_key_type, EST_KEY_EC_P256);
    CU_ASSERT_STRING_EQUAL(c->tsig_algorithm, "hmac-sha256");
    CU_ASSERT_STRING_EQUAL(c->zones[0], "5gc.example");
    CU_ASSERT_STRING_EQUAL(agent_cfg_zone_for(c, "amf1.5gc.example"), "5gc.example");
    CU_ASSERT_PTR_NULL(agent_cfg_zone_for(c, "amf15gc.example"));
    CU_ASSERT_PTR_NULL(agent_cfg_zone_for(c, "other.example"));
    CU_ASSERT_PTR_NOT_NULL(strstr(c->cacerts_file, tmpdir)); /* relative to the config */
    agent_cfg_free(c);
    cfg_fails(BASE "bogus = 1;\n", "(string):8: bogus: unknown setting in the top level");
    cfg_fails(BASE "est = { wait_ms = \"5\"; };\n", "est.wait_ms: expected an integer");
    cfg_fails(BASE "limits = { max_connections = 0; };\n", "out of range");
    cfg_fails(BASE "log = { level = \"loud\"; };\n", "log.level");
    cfg_fails(BASE "est = { key_type = \"rsa-1024\"; };\n",
              ":8: est.key_type: expected ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096, ed25519 or any");
    cfg_fails(BASE "confine = { user = \"no-such-user-cf\"; };\n",
              ":8: confine.user: no user 'no-such-user-cf'");
    cfg_fails(BASE "confine = { enabled = 1; };\n", "confine.enabled");
    cfg_fails("tls = { certificate = \"a\"; key = \"b\"; };\ncacerts = \"c\";\nstate = { path = \"x\"; };\n"
              "acme = { directory = \"http://insecure/\"; nf_instance_id = false; };\n"
              "bootstrap = { trust_anchors = \"v\"; };\n"
              "dns_update = { server = \"127.0.0.1:53\"; zones = [\"a.example\"]; };\n",
              "https:// URL");
    cfg_fails("tls = { certificate = \"a\"; key = \"b\"; };\ncacerts = \"c\";\nstate = { path = \"x\"; };\n"
              "acme = { directory = \"https://a/d\"; };\nbootstrap = { trust_anchors = \"v\"; };\n"
              "dns_update = { server = \"127.0.0.1:53\"; zones = [\"a.example\"]; };\n",
              "token_trust_anchors");
    write_file("badtsig", "not base64!\n");
    cfg_fails("tls = { certificate = \"a\"; key = \"b\"; };\ncacerts = \"c\";\nstate = { path = \"x\"; };\n"
              "acme = { directory = \"https://a/d\"; nf_instance_id = false; };\nbootstrap = { trust_anchors = \"v\"; };\n"
              "dns_update = { server = \"127.0.0.1:53\"; zones = [\"a.example\"]; tsig = { name = \"k\"; secret_file = \"badtsig\"; }; };\n",
              "does not hold a base64 TSIG secret");
    cfg_fails(BASE "acme = { directory = \"https://a/d\"; };\n", "duplicate setting");
    cfg_fails("tls = ;", "(string):1:");
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    CU_ASSERT_EQUAL(system(cmd), 0);
}

/* acme.eab: the key id in the config, the HMAC key in a 0600 file of its
 * own (base64url, as `certforge acme eab add` prints it). */
#define EAB_CONF(eab)                                                                                                  \
    "tls = { certificate = \"est.pem\"; key = \"est.key\"; };\n"                                                     \
    "cacerts = \"ca.pem\";\n"                                                                                          \
    "bootstrap = { trust_anchors = \"v.pem\"; token_trust_anchors = \"oam.pem\"; };\n"                               \
    "state = { path = \"agent.db\"; };\n"                                                                             \
    "acme = { directory = \"https://acme.example/directory\"; " eab " };\n"                                        \
    "dns_update = { server = \"127.0.0.1:53\"; zones = [\"5gc.example.\"]; };\n"

static void write_mode(const char *name, const char *text, mode_t mode)
{
    char p[256];
    write_file(name, text);
    snprintf(p, sizeof(p), "%s/%s", tmpdir, name);
    CU_ASSERT_EQUAL(chmod(p, mode), 0);
}

static void test_config_eab(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/cf-agent-units.XXXXXX"); /* test_config used it */
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(tmpdir));
    /* 32 octets 0x00..0x1f, base64url without padding */
    write_mode("eab.key", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n", 0600);
    agent_cfg *c = NULL;
    char err[600] = "";
    CU_ASSERT_EQUAL_FATAL(agent_cfg_load_string(EAB_CONF("eab = { kid = \"kid-1\"; hmac_key_file = \"eab.key\"; };"),
                                                tmpdir, &c, err, sizeof(err)),
                          0);
    CU_ASSERT_STRING_EQUAL(c->eab_kid, "kid-1");
    CU_ASSERT_EQUAL_FATAL(c->eab_key_len, 32);
    for (unsigned i = 0; i < 32; i++)
        CU_ASSERT_EQUAL(c->eab_key[i], i);
    agent_cfg_free(c);
    c = NULL;
    CU_ASSERT_EQUAL(agent_cfg_load_string(EAB_CONF(""), tmpdir, &c, err, sizeof(err)), 0);
    CU_ASSERT_PTR_NULL(c ? c->eab_kid : (char *)1);
    agent_cfg_free(c);

    write_mode("eab-open.key", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n", 0644);
    cfg_fails(EAB_CONF("eab = { kid = \"k\"; hmac_key_file = \"eab-open.key\"; };"),
              ":5: acme.eab.hmac_key_file: ");
    cfg_fails(EAB_CONF("eab = { kid = \"k\"; hmac_key_file = \"eab-open.key\"; };"),
              "eab-open.key is readable by others (mode 0644): it holds the EAB HMAC key; chmod 600 it");
    write_mode("eab-short.key", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg\n", 0600); /* 31 octets */
    cfg_fails(EAB_CONF("eab = { kid = \"k\"; hmac_key_file = \"eab-short.key\"; };"),
              "eab-short.key has 31 octets; HS256 needs at least 32 (RFC 7518 §3.2)");
    write_mode("eab-b64.key", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", 0600); /* padding */
    cfg_fails(EAB_CONF("eab = { kid = \"k\"; hmac_key_file = \"eab-b64.key\"; };"),
              "does not hold a base64url EAB HMAC key (no padding) on one line");
    write_mode("eab-empty.key", "\n", 0600);
    cfg_fails(EAB_CONF("eab = { kid = \"k\"; hmac_key_file = \"eab-empty.key\"; };"),
              "does not hold a base64url EAB HMAC key");
    cfg_fails(EAB_CONF("eab = { kid = \"k\"; hmac_key_file = \"absent.key\"; };"), "cannot read ");
    cfg_fails(EAB_CONF("eab = { kid = \"k\"; };"), "acme.eab: missing required setting 'hmac_key_file'");
    cfg_fails(EAB_CONF("eab = { hmac_key_file = \"eab.key\"; };"), "missing required setting 'kid'");
    cfg_fails(EAB_CONF("eab = { kid = \"a b\"; hmac_key_file = \"eab.key\"; };"),
              "acme.eab.kid: an EAB key id is 1-256 printable characters without spaces or quotes");
    cfg_fails(EAB_CONF("eab = { kid = \"k\"; hmac_key = \"AAEC\"; hmac_key_file = \"eab.key\"; };"),
              "acme.eab.hmac_key: unknown setting");
    cfg_fails(EAB_CONF("eab = \"k\";"), "acme.eab: expected a group");
    cfg_fails(EAB_CONF("account_key_token = \"token=agent\";"),
              ":5: acme.account_key_token: a PKCS#11 URI (RFC 7512) of the token");
    /* acme.star_profile: the newOrder profile of STAR orders */
    agent_cfg *sc = NULL;
    char serr[600];
    CU_ASSERT_EQUAL_FATAL(agent_cfg_load_string(EAB_CONF("star_profile = \"star\";"), tmpdir, &sc, serr, sizeof(serr)), 0);
    CU_ASSERT_STRING_EQUAL(sc->star_profile, "star");
    agent_cfg_free(sc);
    cfg_fails(EAB_CONF("star_profile = 1;"), "acme.star_profile: ");
    /* the same reader and key id rule for `nf add --eab-hmac-key-file` */
    uint8_t *k = NULL;
    size_t kl = 0;
    char e[700], kp[4][300];
    snprintf(kp[0], sizeof(kp[0]), "%s/eab.key", tmpdir);
    snprintf(kp[1], sizeof(kp[1]), "%s/eab-open.key", tmpdir);
    snprintf(kp[2], sizeof(kp[2]), "%s/eab-b64.key", tmpdir);
    snprintf(kp[3], sizeof(kp[3]), "%s", tmpdir);
    CU_ASSERT_EQUAL(agent_eab_read_key(kp[0], &k, &kl, e, sizeof(e)), 0);
    CU_ASSERT_EQUAL(kl, 32);
    CU_ASSERT(k && k[31] == 31);
    free(k);
    k = NULL;
    CU_ASSERT_EQUAL(agent_eab_read_key(kp[1], &k, &kl, e, sizeof(e)), -1);
    CU_ASSERT_PTR_NULL(k);
    CU_ASSERT_PTR_NOT_NULL(strstr(e, "eab-open.key is readable by others (mode 0644)"));
    CU_ASSERT_EQUAL(agent_eab_read_key(kp[2], &k, &kl, e, sizeof(e)), -1);
    CU_ASSERT_EQUAL(agent_eab_read_key(kp[3], &k, &kl, e, sizeof(e)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e, " is not a regular file"));
    CU_ASSERT(agent_eab_kid_ok("kid-1"));
    CU_ASSERT(!agent_eab_kid_ok(""));
    CU_ASSERT(!agent_eab_kid_ok("a\"b"));
    CU_ASSERT(!agent_eab_kid_ok("a\\b"));
    CU_ASSERT(!agent_eab_kid_ok("caf\xc3\xa9"));
    char long_kid[258];
    memset(long_kid, 'k', 257);
    long_kid[257] = '\0';
    CU_ASSERT(!agent_eab_kid_ok(long_kid));
    long_kid[256] = '\0';
    CU_ASSERT(agent_eab_kid_ok(long_kid));
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    CU_ASSERT_EQUAL(system(cmd), 0);
}

/* RFC 7030 §4.5.2 CsrAttrs, read back with OpenSSL: each element's OID
 * (the attribute's type, or the bare OID) in order. */
static int csrattrs_oids(const uint8_t *der, size_t len, int *nids, int max)
{
    const unsigned char *p = der;
    STACK_OF(ASN1_TYPE) *seq = d2i_ASN1_SEQUENCE_ANY(NULL, &p, (long)len);
    int n = 0;
    for (int i = 0; seq && i < sk_ASN1_TYPE_num(seq) && n < max; i++) {
        ASN1_TYPE *t = sk_ASN1_TYPE_value(seq, i);
        if (ASN1_TYPE_get(t) == V_ASN1_OBJECT) {
            nids[n++] = OBJ_obj2nid(t->value.object);
        } else if (ASN1_TYPE_get(t) == V_ASN1_SEQUENCE) {
            const unsigned char *q = t->value.sequence->data;
            X509_ATTRIBUTE *a = d2i_X509_ATTRIBUTE(NULL, &q, t->value.sequence->length);
            nids[n++] = a ? OBJ_obj2nid(X509_ATTRIBUTE_get0_object(a)) : -1;
            X509_ATTRIBUTE_free(a);
        } else {
            nids[n++] = -2;
        }
    }
    n = seq && p == der + len ? n : -1;
    sk_ASN1_TYPE_pop_free(seq, ASN1_TYPE_free);
    return n;
}

static void test_csrattrs(void)
{
    const char *dns[] = {"amf1.5gc.example", "amf2.5gc.example"};
    GENERAL_NAMES *names = est_names_new("6f1c2a6e-8c0e-4e0b-9a7e-2f1d3c4b5a69", dns, 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(names);
    CU_ASSERT_EQUAL(sk_GENERAL_NAME_num(names), 3);
    uint8_t *der = NULL;
    size_t len = 0;
    int nids[8];
    CU_ASSERT_EQUAL_FATAL(est_csrattrs_der(names, EST_KEY_EC_P256, &der, &len), 0);
    CU_ASSERT_EQUAL_FATAL(csrattrs_oids(der, len, nids, 8), 3);
    CU_ASSERT_EQUAL(nids[0], NID_ext_req);
    CU_ASSERT_EQUAL(nids[1], NID_X9_62_id_ecPublicKey);
    CU_ASSERT_EQUAL(nids[2], NID_ecdsa_with_SHA256);
    /* the extensionRequest is what a CSR carries: X509_REQ reads it back */
    X509_REQ *req = X509_REQ_new();
    const unsigned char *p = der;
    STACK_OF(ASN1_TYPE) *seq = d2i_ASN1_SEQUENCE_ANY(NULL, &p, (long)len);
    const ASN1_STRING *a0 = sk_ASN1_TYPE_value(seq, 0)->value.sequence;
    const unsigned char *q = a0->data;
    X509_ATTRIBUTE *attr = d2i_X509_ATTRIBUTE(NULL, &q, a0->length);
    CU_ASSERT_EQUAL_FATAL(X509_REQ_add1_attr(req, attr), 1);
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    GENERAL_NAMES *back = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(back);
    CU_ASSERT_EQUAL(sk_GENERAL_NAME_num(back), 3);
    CU_ASSERT_EQUAL(GENERAL_NAME_cmp(sk_GENERAL_NAME_value(back, 0), sk_GENERAL_NAME_value(names, 0)), 0);
    CU_ASSERT_EQUAL(GENERAL_NAME_cmp(sk_GENERAL_NAME_value(back, 2), sk_GENERAL_NAME_value(names, 2)), 0);
    GENERAL_NAMES_free(back);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_ATTRIBUTE_free(attr);
    sk_ASN1_TYPE_pop_free(seq, ASN1_TYPE_free);
    X509_REQ_free(req);
    OPENSSL_free(der);

    CU_ASSERT_EQUAL_FATAL(est_csrattrs_der(names, EST_KEY_EC_P384, &der, &len), 0);
    CU_ASSERT_EQUAL(csrattrs_oids(der, len, nids, 8), 3);
    CU_ASSERT_EQUAL(nids[2], NID_ecdsa_with_SHA384);
    OPENSSL_free(der);
    CU_ASSERT_EQUAL_FATAL(est_csrattrs_der(NULL, EST_KEY_ED25519, &der, &len), 0);
    CU_ASSERT_EQUAL(csrattrs_oids(der, len, nids, 8), 1);
    CU_ASSERT_EQUAL(nids[0], NID_ED25519);
    OPENSSL_free(der);
    CU_ASSERT_EQUAL_FATAL(est_csrattrs_der(NULL, EST_KEY_RSA_4096, &der, &len), 0);
    CU_ASSERT_EQUAL(csrattrs_oids(der, len, nids, 8), 2);
    CU_ASSERT_EQUAL(nids[0], NID_rsaEncryption);
    CU_ASSERT_EQUAL(nids[1], NID_sha256WithRSAEncryption);
    OPENSSL_free(der);
    /* nothing to ask: the empty SEQUENCE (RFC 7030 §4.5.2 allows SIZE 0) */
    GENERAL_NAMES *none = GENERAL_NAMES_new();
    CU_ASSERT_EQUAL_FATAL(est_csrattrs_der(none, EST_KEY_ANY, &der, &len), 0);
    CU_ASSERT_EQUAL(len, 2);
    CU_ASSERT(der[0] == 0x30 && der[1] == 0);
    OPENSSL_free(der);
    GENERAL_NAMES_free(none);
    CU_ASSERT_EQUAL(est_csrattrs_der(names, EST_KEY__MAX, &der, &len), -1);
    GENERAL_NAMES_free(names);

    CU_ASSERT_EQUAL(est_key_type_from_name("ec-p256"), EST_KEY_EC_P256);
    CU_ASSERT_EQUAL(est_key_type_from_name("rsa-3072"), EST_KEY_RSA_3072);
    CU_ASSERT_EQUAL(est_key_type_from_name("EC-P256"), -1);
    CU_ASSERT_EQUAL(est_key_type_from_name("rsa-1024"), -1);
    CU_ASSERT_EQUAL(est_key_type_from_name(NULL), -1);
    CU_ASSERT_STRING_EQUAL(est_key_type_name(EST_KEY_ED25519), "ed25519");
}

static const cf_test tests[] = {
    {"CSR identifiers checked against the NF's", test_csr_checks},
    {"CSR keys and malformed CSRs", test_csr_keys},
    {"EST base64", test_base64},
    {"Bearer header and token peek", test_bearer},
    {"ACME answers", test_acme_answers},
    {"config: defaults and FILE:LINE refusals", test_config},
    {"config: acme.eab and its key file", test_config_eab},
    {"EST csrattrs (RFC 7030 §4.5.2)", test_csrattrs},
};
static const cf_suite suites[] = {CF_SUITE("agent", setup, teardown, tests)};

int main(int argc, char **argv)
{
    return CF_TEST_MAIN(argc, argv, suites);
}
