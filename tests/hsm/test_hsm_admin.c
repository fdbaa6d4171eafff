/* HSM administration against a real SoftHSM2 token: token listing, key
 * generation of every kind, refusal of clashes, deletion, certificate
 * objects. */
#include "cf_testutil.h"
#include "hsm/hsm.h"
#include "hsm/hsm_admin.h"

#include "cf_test.h"
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/sigalg.h"

static cf_softhsm H;
static char TOKEN_URI[1024];
static hsm_token *T;

static int suite_init(void)
{
    if (cf_softhsm_init(&H, "cf-admin", "1234") != 0)
        return -1;
    if (cf_softhsm_add_token(&H, "second", "5678") != 0)
        return -1;
    cf_softhsm_uri(&H, NULL, TOKEN_URI, sizeof(TOKEN_URI));
    hsm_err e = {0};
    if (hsm_token_open(TOKEN_URI, NULL, &T, &e) != 0) {
        fprintf(stderr, "hsm_token_open: %s\n", e.msg);
        return -1;
    }
    return 0;
}

static int suite_clean(void)
{
    hsm_token_close(T);
    cf_softhsm_cleanup(&H);
    return 0;
}

static void expect_msg(const hsm_err *e, const char *needle)
{
    if (!strstr(e->msg, needle)) {
        fprintf(stderr, "\nexpected '%s' in: %s\n", needle, e->msg);
        CU_FAIL("error message");
    }
}

static size_t count_keys(void)
{
    hsm_key_desc *k = NULL;
    size_t n = 0;
    hsm_err e = {0};
    CU_ASSERT_EQUAL_FATAL(hsm_keys_list(T, &k, &n, &e), 0);
    free(k);
    return n;
}

static void test_module_tokens(void)
{
    hsm_token_desc *d = NULL;
    size_t n = 0;
    hsm_err e = {0};
    CU_ASSERT_EQUAL_FATAL(hsm_module_tokens(H.module, &d, &n, &e), 0);
    /* two initialised tokens plus SoftHSM's free slot */
    CU_ASSERT(n >= 2);
    int seen = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(d[i].label, "cf-admin") == 0 || strcmp(d[i].label, "second") == 0) {
            seen++;
            CU_ASSERT(d[i].initialized);
            CU_ASSERT(strlen(d[i].serial) > 0);
            CU_ASSERT(strstr(d[i].uri, "token=") != NULL);
            CU_ASSERT(strstr(d[i].uri, "module-path=/") != NULL);
            const char *names[32];
            size_t nf = hsm_token_flag_names(d[i].flags, names, 32);
            int init = 0;
            for (size_t j = 0; j < nf; j++)
                init |= strcmp(names[j], "token-initialized") == 0;
            CU_ASSERT(init);
            /* The listed URI opens the token (PIN from the environment). */
            setenv("CERTFORGE_PIN", strcmp(d[i].label, "second") == 0 ? "5678" : "1234", 1);
            hsm_token *t = NULL;
            CU_ASSERT_EQUAL(hsm_token_open(d[i].uri, NULL, &t, &e), 0);
            hsm_token_close(t);
            unsetenv("CERTFORGE_PIN");
        }
    }
    CU_ASSERT_EQUAL(seen, 2);
    free(d);

    CU_ASSERT_EQUAL(hsm_module_tokens("/nonexistent/libx.so", &d, &n, &e), -1);
    expect_msg(&e, "/nonexistent/libx.so");
}

static void test_gen_type_parse(void)
{
    hsm_gen_type g;
    hsm_err e = {0};
    CU_ASSERT_EQUAL(hsm_gen_type_parse("rsa-3072", &g, &e), 0);
    CU_ASSERT_EQUAL(g, HSM_GEN_RSA_3072);
    CU_ASSERT_EQUAL(hsm_gen_type_parse("ec-p521", &g, &e), -1);
    expect_msg(&e, "unsupported key type 'ec-p521'");
    expect_msg(&e, "ed25519");
}

static void test_generate_all(void)
{
    static const struct {
        hsm_gen_type g;
        cf_key_type kt;
        unsigned bits;
        const char *label;
    } cases[] = {
        {HSM_GEN_EC_P256, CF_KEY_EC_P256, 256, "k-p256"},
        {HSM_GEN_EC_P384, CF_KEY_EC_P384, 384, "k-p384"},
        {HSM_GEN_RSA_2048, CF_KEY_RSA, 2048, "k-rsa2048"},
        {HSM_GEN_ED25519, CF_KEY_ED25519, 256, "k-ed25519"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        hsm_key_desc d;
        hsm_err e = {0};
        int rc = hsm_key_generate(T, cases[i].g, cases[i].label, NULL, 0, &d, &e);
        if (rc != 0)
            fprintf(stderr, "\n%s: %s\n", cases[i].label, e.msg);
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        CU_ASSERT(d.type_known);
        CU_ASSERT_EQUAL(d.type, cases[i].kt);
        CU_ASSERT_EQUAL(d.bits, cases[i].bits);
        CU_ASSERT(d.sensitive && !d.extractable && d.sign);
        CU_ASSERT(!d.decrypt && !d.unwrap && !d.derive);
        CU_ASSERT(d.has_public && !d.has_cert);
        CU_ASSERT_EQUAL(d.id_len, 8);
        CU_ASSERT_STRING_EQUAL(d.label, cases[i].label);
        CU_ASSERT(strstr(d.uri, "type=private") != NULL);
        /* The URI it reports finds the same key, and signs. */
        hsm_key_desc again;
        CU_ASSERT_EQUAL(hsm_key_get(T, d.uri, &again, &e), 0);
        CU_ASSERT_STRING_EQUAL(again.id_hex, d.id_hex);
        EVP_PKEY *pk = hsm_key_public(T, d.uri, &e);
        CU_ASSERT_PTR_NOT_NULL(pk);
        EVP_PKEY_free(pk);
        hsm_signer *s = NULL;
        CU_ASSERT_EQUAL(hsm_signer_open(T, d.uri, 1, &s, &e), 0);
        hsm_signer_close(s);
    }
    CU_ASSERT_EQUAL(count_keys(), 4);
}

static void test_refuse_clash(void)
{
    size_t before = count_keys();
    hsm_key_desc d;
    hsm_err e = {0};
    CU_ASSERT_EQUAL(hsm_key_generate(T, HSM_GEN_EC_P256, "k-p256", NULL, 0, &d, &e), -1);
    expect_msg(&e, "already has an object labelled 'k-p256'");
    const uint8_t id[] = {0xca, 0xfe};
    CU_ASSERT_EQUAL(hsm_key_generate(T, HSM_GEN_EC_P256, "fresh", id, 2, &d, &e), 0);
    CU_ASSERT_STRING_EQUAL(d.id_hex, "cafe");
    CU_ASSERT_EQUAL(hsm_key_generate(T, HSM_GEN_EC_P256, "fresh2", id, 2, &d, &e), -1);
    expect_msg(&e, "already has an object with id cafe");
    CU_ASSERT_EQUAL(count_keys(), before + 1);
}

static void test_cert_objects_and_delete(void)
{
    hsm_err e = {0};
    char uri[1200];
    snprintf(uri, sizeof(uri), "pkcs11:token=cf-admin;object=fresh");
    uint8_t *der = NULL;
    size_t len = 0;
    CU_ASSERT_EQUAL(hsm_cert_load(T, uri, &der, &len, &e), -1);
    expect_msg(&e, "has no certificate object");
    /* The layer treats the certificate as opaque DER. */
    static const uint8_t fake[] = {0x30, 0x03, 0x02, 0x01, 0x01};
    static const uint8_t name[] = {0x30, 0x00}, serial[] = {0x02, 0x01, 0x01};
    hsm_cert_der c = {fake, sizeof(fake), name, name, serial, 2, 2, 3};
    CU_ASSERT_EQUAL(hsm_cert_store(T, uri, &c, false, &e), 0);
    CU_ASSERT_EQUAL(hsm_cert_store(T, uri, &c, false, &e), -1);
    expect_msg(&e, "already has a certificate object");
    CU_ASSERT_EQUAL(hsm_cert_store(T, uri, &c, true, &e), 0);
    CU_ASSERT_EQUAL(hsm_cert_load(T, uri, &der, &len, &e), 0);
    CU_ASSERT(len == sizeof(fake) && memcmp(der, fake, len) == 0);
    free(der);
    hsm_key_desc d;
    CU_ASSERT_EQUAL(hsm_key_get(T, uri, &d, &e), 0);
    CU_ASSERT(d.has_cert && d.has_public);

    size_t before = count_keys();
    unsigned np = 0, nc = 0;
    CU_ASSERT_EQUAL(hsm_key_delete(T, uri, &np, &nc, &e), 0);
    CU_ASSERT_EQUAL(np, 1);
    CU_ASSERT_EQUAL(nc, 1);
    CU_ASSERT_EQUAL(count_keys(), before - 1);
    CU_ASSERT_EQUAL(hsm_key_get(T, uri, &d, &e), -1);
    expect_msg(&e, "key not found: pkcs11:token=cf-admin;object=fresh");
    /* Nothing else with its id is left: a new key may take it. */
    const uint8_t id[] = {0xca, 0xfe};
    CU_ASSERT_EQUAL(hsm_key_generate(T, HSM_GEN_EC_P256, "fresh", id, 2, &d, &e), 0);
    CU_ASSERT_EQUAL(hsm_key_delete(T, d.uri, &np, &nc, &e), 0);
    CU_ASSERT_EQUAL(nc, 0);
}

static void test_wrong_token_in_key_uri(void)
{
    hsm_key_desc d;
    hsm_err e = {0};
    CU_ASSERT_EQUAL(hsm_key_get(T, "pkcs11:token=second;object=k-p256", &d, &e), -1);
    expect_msg(&e, "names token 'second'");
    CU_ASSERT_EQUAL(hsm_key_get(T, "pkcs11:token=cf-admin", &d, &e), -1);
    expect_msg(&e, "names no key");
}

int main(int argc, char **argv)
{
    static const cf_test tests[] = {
        {"module tokens", test_module_tokens},
        {"gen type parse", test_gen_type_parse},
        {"generate all kinds", test_generate_all},
        {"refuse label/id clash", test_refuse_clash},
        {"certificate objects and delete", test_cert_objects_and_delete},
        {"key URI naming another token", test_wrong_token_in_key_uri},
    };
    static const cf_suite suites[] = {CF_SUITE("hsm_admin", suite_init, suite_clean, tests)};
    return CF_TEST_MAIN(argc, argv, suites);
}
