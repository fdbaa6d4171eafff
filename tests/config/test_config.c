/* CUnit suite for engine/config: a complete config loads into the structs
 * other modules read (defaults filled in, references resolved, relative
 * paths resolved); the shipped docs/examples/certforged.conf loads; and
 * every validation refuses with the setting path, the line and the exact
 * reason. */
#include "engine/config/config.h"

#include "cf_test.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "common/log.h"
#include "common/duration.h"

static const char base_conf[] =
    "tokens = ( { name = \"ca\";\n"
    "  uri = "
    "\"pkcs11:token=CA?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/cf/pin\"; "
    "} );\n"
    "keys = ( { name = \"nf-ca\"; token = \"ca\"; uri = \"pkcs11:object=nf-ca\"; sessions = 3; },\n"
    "         { name = \"ic-ca\"; token = \"ca\"; uri = \"pkcs11:id=%01\"; } );\n"
    "issuers = ( { name = \"nf-ca\"; key = \"nf-ca\"; certificate = \"/etc/cf/nf-ca.pem\"; chain = "
    "\"chain.pem\"; },\n"
    "            { name = \"ic-ca\"; key = \"ic-ca\"; certificate = \"ic-ca.pem\"; } );\n"
    "profiles = (\n"
    "  { name = \"nf\"; type = \"nf\"; issuer = \"nf-ca\";\n"
    "    subject = { C = \"FI\"; O = \"5gc.mnc001.mcc001.3gppnetwork.org\"; };\n"
    "    validity = { default = \"90d\"; max = \"365d\"; };\n"
    "    hash = \"sha256\"; eku = [\"serverAuth\", \"clientAuth\"];\n"
    "    crl_dp = \"http://crl.example.net/nf-ca.crl\";\n"
    "    aia_ca_issuers = \"http://ca.example.net/nf-ca.der\";\n"
    "    require_nf_instance_id = true;\n"
    "    nf_types = [\"AMF\", \"SMF\", \"NRF\"];\n"
    "    key_types = [\"ec-p256\", \"ec-p384\"];\n"
    "  },\n"
    "  { name = \"sepp\"; type = \"sepp\"; issuer = \"ic-ca\";\n"
    "    subject = { C = \"DE\"; O = \"5gc.mnc002.mcc262.3gppnetwork.org\"; };\n"
    "    eku = [\"serverAuth\", \"clientAuth\"];\n"
    "    crl_dp = \"ldap://ldap.example.net/cn=ic-ca\";\n"
    "  },\n"
    "  { name = \"star\"; type = \"star\"; issuer = \"nf-ca\";\n"
    "    subject = { C = \"FI\"; O = \"5gc.mnc001.mcc001.3gppnetwork.org\"; };\n"
    "    validity = { default = \"24h\"; max = \"7d\"; };\n"
    "    backdate = \"0s\";\n"
    "    eku = [\"clientAuth\"];\n"
    "  }\n"
    ");\n"
    "pipeline = { workers = 2; queue = 4096; batch = 32; verify_issued = \"1-in-16\"; "
    "serial_prefix = 0x01; };\n"
    "log = { level = \"info\"; };\n";

static char errbuf[1024];

/* base_conf with the first occurrence of `from` replaced by `to`. */
static char *sub(const char *text, const char *from, const char *to)
{
    const char *at = strstr(text, from);
    CU_ASSERT_PTR_NOT_NULL_FATAL(at);
    size_t n = strlen(text) - strlen(from) + strlen(to) + 1;
    char *r = malloc(n);
    snprintf(r, n, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    return r;
}

static int load_text(const char *text, cfg_config **out)
{
    errbuf[0] = 0;
    return cfg_load_string(text, "test.conf", "/etc/cf", out, errbuf, sizeof(errbuf));
}

/* The edited base must be refused with every one of the substrings. */
static void refuse_sub(const char *from, const char *to, const char *want1, const char *want2)
{
    char *t = sub(base_conf, from, to);
    cfg_config *c = NULL;
    int rc = load_text(t, &c);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_PTR_NULL(c);
    if (rc == 0)
        cfg_free(c);
    if (!strstr(errbuf, want1) || (want2 && !strstr(errbuf, want2))) {
        fprintf(stderr, "\n  edit '%s' -> '%s'\n  got:  %s\n  want: %s%s%s\n", from, to, errbuf,
                want1, want2 ? " + " : "", want2 ? want2 : "");
        CU_FAIL("message lacks the expected text");
    }
    free(t);
}

#define REFUSE(from, to, w1) refuse_sub(from, to, w1, NULL)
#define REFUSE2(from, to, w1, w2) refuse_sub(from, to, w1, w2)

/* ------------------------------------------------------------- positive */

static void test_full_config(void)
{
    cfg_config *c = NULL;
    int rc = load_text(base_conf, &c);
    if (rc)
        fprintf(stderr, "\n%s\n", errbuf);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(c->n_tokens, 1);
    CU_ASSERT_STRING_EQUAL(c->tokens[0].name, "ca");
    CU_ASSERT_EQUAL(c->tokens[0].line, 1);
    CU_ASSERT_EQUAL(c->n_keys, 2);
    CU_ASSERT_EQUAL(c->keys[0].sessions, 3);
    CU_ASSERT_EQUAL(c->keys[1].sessions, 2); /* default: workers */
    CU_ASSERT_EQUAL(c->keys[1].sign_threads, 0); /* default: sign on the worker */
    CU_ASSERT_EQUAL(c->keys[1].token_idx, 0);
    CU_ASSERT_EQUAL(c->n_issuers, 2);
    CU_ASSERT_STRING_EQUAL(c->issuers[0].certificate, "/etc/cf/nf-ca.pem");
    CU_ASSERT_STRING_EQUAL(c->issuers[0].chain, "/etc/cf/chain.pem");
    CU_ASSERT_STRING_EQUAL(c->issuers[1].certificate, "/etc/cf/ic-ca.pem");
    CU_ASSERT_PTR_NULL(c->issuers[1].chain);
    CU_ASSERT_EQUAL(c->issuers[1].key_idx, 1);
    CU_ASSERT_EQUAL_FATAL(c->n_profiles, 3);

    const cfg_profile *nf = &c->profiles[0], *sepp = &c->profiles[1], *star = &c->profiles[2];
    CU_ASSERT_EQUAL(nf->type, CFG_PROFILE_NF);
    CU_ASSERT_EQUAL(nf->issuer_idx, 0);
    CU_ASSERT_STRING_EQUAL(nf->subject_c, "FI");
    CU_ASSERT_STRING_EQUAL(nf->subject_o, "5gc.mnc001.mcc001.3gppnetwork.org");
    CU_ASSERT_EQUAL(nf->validity_default, 90u * 86400);
    CU_ASSERT_EQUAL(nf->validity_max, 365u * 86400);
    CU_ASSERT_EQUAL(nf->backdate, 60);
    CU_ASSERT_EQUAL(nf->hash, CFG_HASH_SHA256);
    CU_ASSERT_EQUAL(nf->eku, CFG_EKU_SERVER_AUTH | CFG_EKU_CLIENT_AUTH);
    CU_ASSERT_STRING_EQUAL(nf->crl_dp, "http://crl.example.net/nf-ca.crl");
    CU_ASSERT_STRING_EQUAL(nf->aia_ca_issuers, "http://ca.example.net/nf-ca.der");
    CU_ASSERT_TRUE(nf->require_nf_instance_id);
    CU_ASSERT_TRUE(nf->require_nf_types);
    CU_ASSERT_FALSE(nf->require_fqdn);
    CU_ASSERT_EQUAL(nf->n_nf_types, 3);
    CU_ASSERT_STRING_EQUAL(nf->nf_types[2], "NRF");
    CU_ASSERT_EQUAL(nf->key_types, (1u << CFG_KT_EC_P256) | (1u << CFG_KT_EC_P384));

    CU_ASSERT_EQUAL(sepp->type, CFG_PROFILE_SEPP);
    CU_ASSERT_EQUAL(sepp->issuer_idx, 1);
    CU_ASSERT_STRING_EQUAL(sepp->issuer_key, "ic-ca");
    CU_ASSERT_STRING_EQUAL(sepp->subject_c, "DE");
    CU_ASSERT_EQUAL(sepp->validity_default, 90u * 86400); /* defaults */
    CU_ASSERT_EQUAL(sepp->validity_max, 365u * 86400);
    CU_ASSERT_FALSE(sepp->require_nf_instance_id);
    CU_ASSERT_FALSE(sepp->require_nf_types);
    CU_ASSERT_TRUE(sepp->require_fqdn);
    CU_ASSERT_EQUAL(sepp->key_types, CFG_KT_ALL);
    CU_ASSERT_PTR_NULL(sepp->aia_ca_issuers);

    CU_ASSERT_EQUAL(star->type, CFG_PROFILE_STAR);
    CU_ASSERT_PTR_NULL(star->crl_dp);
    CU_ASSERT_EQUAL(star->validity_default, 86400);
    CU_ASSERT_EQUAL(star->validity_max, 7 * 86400);
    CU_ASSERT_EQUAL(star->backdate, 0);
    CU_ASSERT_EQUAL(star->eku, CFG_EKU_CLIENT_AUTH);
    CU_ASSERT_FALSE(star->require_nf_instance_id);
    CU_ASSERT_FALSE(star->require_nf_types);

    CU_ASSERT_EQUAL(c->pipeline.workers, 2);
    CU_ASSERT_EQUAL(c->pipeline.queue, 4096);
    CU_ASSERT_EQUAL(c->pipeline.batch, 32);
    CU_ASSERT_EQUAL(c->pipeline.verify, CFG_VERIFY_SAMPLE);
    CU_ASSERT_EQUAL(c->pipeline.verify_n, 16);
    CU_ASSERT_EQUAL(c->pipeline.serial_prefix_len, 1);
    CU_ASSERT_EQUAL(c->pipeline.serial_prefix[0], 0x01);
    CU_ASSERT_EQUAL(c->log.level, CF_LOG_INFO);

    CU_ASSERT_PTR_EQUAL(cfg_find_profile(c, "sepp", 4), sepp);
    CU_ASSERT_PTR_NULL(cfg_find_profile(c, "sep", 3));
    CU_ASSERT_PTR_EQUAL(cfg_find_issuer(c, "ic-ca"), &c->issuers[1]);
    CU_ASSERT_PTR_EQUAL(cfg_find_key(c, "nf-ca"), &c->keys[0]);
    CU_ASSERT_PTR_NULL(cfg_find_key(c, "x"));
    cfg_free(c);
}

static void test_minimal_defaults(void)
{
    const char *t = "tokens = ( { name = \"t\"; uri = \"pkcs11:token=T\"; } );\n"
                    "keys = ( { name = \"k\"; token = \"t\"; uri = \"pkcs11:object=k\"; } );\n"
                    "issuers = ( { name = \"i\"; key = \"k\"; certificate = \"ca.pem\"; } );\n"
                    "profiles = ( { name = \"p\"; type = \"nf\"; issuer = \"i\";\n"
                    "  subject = { C = \"FI\"; O = \"x\"; }; eku = [\"serverAuth\"];\n"
                    "  crl_dp = \"http://c/x.crl\"; } );\n";
    cfg_config *c = NULL;
    CU_ASSERT_EQUAL_FATAL(load_text(t, &c), 0);
    CU_ASSERT(c->pipeline.workers >= 1);
    CU_ASSERT_EQUAL(c->keys[0].sessions, c->pipeline.workers);
    CU_ASSERT_EQUAL(c->pipeline.queue, 4096);
    CU_ASSERT_EQUAL(c->pipeline.batch, 32);
    CU_ASSERT_EQUAL(c->pipeline.verify, CFG_VERIFY_ALL);
    CU_ASSERT_EQUAL(c->pipeline.serial_prefix_len, 0);
    CU_ASSERT_EQUAL(c->log.level, CF_LOG_INFO);
    CU_ASSERT_EQUAL(c->profiles[0].hash, CFG_HASH_SHA256);
    CU_ASSERT_EQUAL(c->profiles[0].key_types, CFG_KT_ALL);
    CU_ASSERT_EQUAL(c->profiles[0].n_nf_types, 0);
    cfg_free(c);

    /* validity.max alone pulls the default down to it */
    char *t2 = sub(t, "crl_dp", "validity = { max = \"30d\"; }; crl_dp");
    CU_ASSERT_EQUAL_FATAL(load_text(t2, &c), 0);
    CU_ASSERT_EQUAL(c->profiles[0].validity_max, 30u * 86400);
    CU_ASSERT_EQUAL(c->profiles[0].validity_default, 30u * 86400);
    cfg_free(c);
    free(t2);
}

static void test_pipeline_values(void)
{
    static const struct {
        const char *set;
        size_t len;
        uint8_t b[4];
    } pfx[] = {
        {"serial_prefix = 0x01;", 1, {0x01}},
        {"serial_prefix = 0x7f;", 1, {0x7f}},
        {"serial_prefix = 0x80;", 2, {0x00, 0x80}},
        {"serial_prefix = 0x0102;", 2, {0x01, 0x02}},
        {"serial_prefix = \"0001a0ff\";", 0, {0}}, /* refused: first octet 00 */
        {"serial_prefix = \"01a0ff\";", 3, {0x01, 0xa0, 0xff}},
        {"serial_prefix = 0x7fffffff;", 4, {0x7f, 0xff, 0xff, 0xff}},
    };
    for (size_t i = 0; i < sizeof(pfx) / sizeof(pfx[0]); i++) {
        char *t = sub(base_conf, "serial_prefix = 0x01;", pfx[i].set);
        cfg_config *c = NULL;
        int rc = load_text(t, &c);
        if (pfx[i].len == 0) {
            CU_ASSERT_EQUAL(rc, -1);
            CU_ASSERT_PTR_NOT_NULL(strstr(errbuf, "first octet must be 01..7f"));
        } else {
            CU_ASSERT_EQUAL_FATAL(rc, 0);
            CU_ASSERT_EQUAL(c->pipeline.serial_prefix_len, pfx[i].len);
            CU_ASSERT_EQUAL(memcmp(c->pipeline.serial_prefix, pfx[i].b, pfx[i].len), 0);
            cfg_free(c);
        }
        free(t);
    }
    static const struct {
        const char *v;
        cfg_verify_mode m;
        unsigned n;
    } ver[] = {{"all", CFG_VERIFY_ALL, 1},
               {"off", CFG_VERIFY_OFF, 0},
               {"1-in-2", CFG_VERIFY_SAMPLE, 2},
               {"1-in-65536", CFG_VERIFY_SAMPLE, 65536}};
    for (size_t i = 0; i < sizeof(ver) / sizeof(ver[0]); i++) {
        char set[64];
        snprintf(set, sizeof(set), "verify_issued = \"%s\";", ver[i].v);
        char *t = sub(base_conf, "verify_issued = \"1-in-16\";", set);
        cfg_config *c = NULL;
        CU_ASSERT_EQUAL_FATAL(load_text(t, &c), 0);
        CU_ASSERT_EQUAL(c->pipeline.verify, ver[i].m);
        CU_ASSERT_EQUAL(c->pipeline.verify_n, ver[i].n);
        cfg_free(c);
        free(t);
    }
    /* a small queue without a batch: the default batch follows the queue
     * (found by fuzz_config) */
    char *t = sub(base_conf, "queue = 4096; batch = 32;", "queue = 4;");
    cfg_config *c0 = NULL;
    CU_ASSERT_EQUAL_FATAL(load_text(t, &c0), 0);
    CU_ASSERT_EQUAL(c0->pipeline.queue, 4);
    CU_ASSERT_EQUAL(c0->pipeline.batch, 4);
    cfg_free(c0);
    free(t);
    t = sub(base_conf, "level = \"info\"", "level = \"warn\"");
    cfg_config *c = NULL;
    CU_ASSERT_EQUAL_FATAL(load_text(t, &c), 0);
    CU_ASSERT_EQUAL(c->log.level, CF_LOG_WARNING);
    cfg_free(c);
    free(t);
}

static void test_duration(void)
{
    static const struct {
        const char *s;
        uint64_t v;
    } ok[] = {
        {"90d", 90ull * 86400}, {"12h", 43200},    {"3600s", 3600}, {"30m", 1800},
        {"1w", 604800},         {"1d12h", 129600}, {"0s", 0},       {"36500d", 36500ull * 86400}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v = 1;
        CU_ASSERT_EQUAL(cf_parse_duration(ok[i].s, &v, errbuf, sizeof(errbuf)), 0);
        CU_ASSERT_EQUAL(v, ok[i].v);
    }
    static const struct {
        const char *s, *why;
    } bad[] = {
        {"", "empty duration"},
        {"90", "lacks a unit"},
        {"90x", "unknown unit 'x'"},
        {"d", "is not a duration"},
        {"-5d", "is not a duration"},
        {"1.5d", "unknown unit '.'"},
        {"5 d", "unknown unit ' '"},
        {"36501d", "longer than 100 years"},
        {"99999999999999999999999s", "longer than 100 years"},
        {"36500d1s", "longer than 100 years"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 7;
        errbuf[0] = 0;
        CU_ASSERT_EQUAL(cf_parse_duration(bad[i].s, &v, errbuf, sizeof(errbuf)), -1);
        CU_ASSERT_EQUAL(v, 7);
        if (!strstr(errbuf, bad[i].why)) {
            fprintf(stderr, "\n  '%s': got '%s', want '%s'\n", bad[i].s, errbuf, bad[i].why);
            CU_FAIL("duration message");
        }
    }
}

/* The shipped, annotated example must load. */
static void test_example_file(void)
{
    const char *src = getenv("CF_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof(path), "%s/docs/examples/certforged.conf", src ? src : "../..");
    cfg_config *c = NULL;
    int rc = cfg_load(path, &c, errbuf, sizeof(errbuf));
    if (rc)
        fprintf(stderr, "\n%s\n", errbuf);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(c->n_profiles, 3);
    CU_ASSERT_PTR_NOT_NULL(cfg_find_profile(c, "nf", 2));
    CU_ASSERT_PTR_NOT_NULL(cfg_find_profile(c, "sepp", 4));
    CU_ASSERT_PTR_NOT_NULL(cfg_find_profile(c, "star", 4));
    cfg_free(c);
}

/* cfg_load on a file: line numbers and file name in messages, relative
 * paths against the file's folder, unreadable files. */
static void test_file_errors(void)
{
    char dir[] = "/tmp/cf-config-XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/c.conf", dir);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(base_conf, f);
    fclose(f);
    cfg_config *c = NULL;
    CU_ASSERT_EQUAL_FATAL(cfg_load(path, &c, errbuf, sizeof(errbuf)), 0);
    char want[300];
    snprintf(want, sizeof(want), "%s/chain.pem", dir);
    CU_ASSERT_STRING_EQUAL(c->issuers[0].chain, want);
    CU_ASSERT_STRING_EQUAL(c->path, path);
    cfg_free(c);

    /* an unknown setting on line 3 of the file */
    f = fopen(path, "w");
    char *t = sub(base_conf, "sessions = 3;", "sessions = 3; colour = \"red\";");
    fputs(t, f);
    fclose(f);
    free(t);
    CU_ASSERT_EQUAL(cfg_load(path, &c, errbuf, sizeof(errbuf)), -1);
    snprintf(want, sizeof(want), "%s:3: keys[0].colour: unknown setting in a key", path);
    CU_ASSERT_STRING_EQUAL(errbuf, want);

    /* a syntax error */
    f = fopen(path, "w");
    fputs("tokens = (\n  { name = \"a\" }\n  oops\n", f);
    fclose(f);
    CU_ASSERT_EQUAL(cfg_load(path, &c, errbuf, sizeof(errbuf)), -1);
    snprintf(want, sizeof(want), "%s:3: ", path);
    if (!strstr(errbuf, want) || !strstr(errbuf, "syntax error")) {
        fprintf(stderr, "\n  got: %s\n", errbuf);
        CU_FAIL("syntax error message");
    }

    /* @include relative to the config's folder */
    char inc[256];
    snprintf(inc, sizeof(inc), "%s/tokens.inc", dir);
    f = fopen(inc, "w");
    fputs("tokens = ( { name = \"ca\"; uri = \"pkcs11:token=CA\"; } );\n", f);
    fclose(f);
    f = fopen(path, "w");
    t = sub(base_conf, "tokens = ( { name = \"ca\";\n",
            "@include \"tokens.inc\"\nxtokens = ( { name = \"ca\";\n");
    char *t2 = sub(t, "xtokens = ( { name = \"ca\";\n  uri", "#");
    fputs(t2, f);
    fclose(f);
    free(t);
    free(t2);
    int rc = cfg_load(path, &c, errbuf, sizeof(errbuf));
    if (rc)
        fprintf(stderr, "\n%s\n", errbuf);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_STRING_EQUAL(c->tokens[0].uri, "pkcs11:token=CA");
    cfg_free(c);

    unlink(inc);
    unlink(path);
    CU_ASSERT_EQUAL(cfg_load(path, &c, errbuf, sizeof(errbuf)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(errbuf, "cannot read"));
    rmdir(dir);
}

/* ------------------------------------------------------------- negative */

static void test_unknown_settings(void)
{
    REFUSE("log = {", "audit = { path = \"/var/lib/x\"; };\nlog = {",
           "test.conf:31: audit: unknown setting in the top level");
    REFUSE("name = \"ca\";", "name = \"ca\"; label = \"x\";",
           "test.conf:1: tokens[0].label: unknown setting in a token");
    REFUSE("sessions = 3;", "sessions = 3; pin = \"1234\";",
           "keys[0].pin: unknown setting in a key");
    REFUSE("chain = \"chain.pem\";", "chain = \"chain.pem\"; crl = \"x\";",
           "issuers[0].crl: unknown setting in an issuer");
    REFUSE("require_nf_instance_id = true;", "require_nf_instance_id = true; colour = 1;",
           "test.conf:14: profiles[0].colour: unknown setting in a profile");
    REFUSE("O = \"5gc.mnc001.mcc001.3gppnetwork.org\"; };\n    validity",
           "O = \"5gc.mnc001.mcc001.3gppnetwork.org\"; CN = \"x\"; };\n    validity",
           "profiles[0].subject.CN: unknown setting in subject");
    REFUSE("default = \"90d\";", "default = \"90d\"; min = \"1d\";",
           "profiles[0].validity.min: unknown setting in validity");
    REFUSE("batch = 32;", "batch = 32; threads = 4;",
           "pipeline.threads: unknown setting in pipeline");
    REFUSE("level = \"info\";", "level = \"info\"; file = \"/x\";",
           "log.file: unknown setting in log");
    /* settings of another profile type */
    REFUSE("backdate = \"0s\";", "backdate = \"0s\"; crl_dp = \"http://c/x.crl\";",
           "profiles[2].crl_dp: a star profile carries noRevAvail (RFC 9608)");
    REFUSE("crl_dp = \"ldap://", "require_nf_types = true; crl_dp = \"ldap://",
           "profiles[1].require_nf_types: a sepp profile always carries NFTypes \"SEPP\"");
}

static void test_type_errors(void)
{
    REFUSE("sessions = 3;", "sessions = \"3\";",
           "test.conf:3: keys[0].sessions: expected an integer, got a string");
    REFUSE("sessions = 3;", "sessions = 3.0;",
           "keys[0].sessions: expected an integer, got a float");
    REFUSE("require_nf_instance_id = true;", "require_nf_instance_id = 1;",
           "profiles[0].require_nf_instance_id: expected a boolean (true/false), got an integer");
    REFUSE("eku = [\"serverAuth\", \"clientAuth\"];\n    crl_dp = \"http",
           "eku = \"serverAuth\";\n    crl_dp = \"http",
           "profiles[0].eku: expected an array of strings");
    REFUSE("eku = [\"clientAuth\"];", "eku = [1];",
           "profiles[2].eku[0]: expected a string, got an integer");
    REFUSE("type = \"nf\";", "type = nf;", "syntax error");
    REFUSE("hash = \"sha256\";", "hash = 256;",
           "profiles[0].hash: expected a string, got an integer");
    REFUSE("subject = { C = \"FI\"; O = \"5gc.mnc001.mcc001.3gppnetwork.org\"; };\n    validity = "
           "{ default = \"90d\"",
           "subject = \"C=FI\";\n    validity = { default = \"90d\"",
           "profiles[0].subject: expected a group");
    REFUSE("validity = { default = \"24h\"; max = \"7d\"; };", "validity = \"7d\";",
           "profiles[2].validity: expected a group");
    REFUSE("default = \"90d\";", "default = 90;",
           "profiles[0].validity.default: expected a string");
    REFUSE("tokens = ( {", "tokens = ( 1, {",
           "tokens[0]: expected a group { ... }, got an integer");
    REFUSE("pipeline = {", "pipeline = 1; #", "test.conf:30: pipeline: expected a group");
    REFUSE("log = {", "log = 1; #", "test.conf:31: log: expected a group");
    REFUSE("serial_prefix = 0x01;", "serial_prefix = true;",
           "pipeline.serial_prefix: expected an integer or a hex string, got a boolean");
    REFUSE("name = \"ca\";", "name = 7;", "tokens[0].name: expected a string, got an integer");
    REFUSE("key_types = [\"ec-p256\", \"ec-p384\"];", "key_types = [];",
           "profiles[0].key_types: must not be empty");
    REFUSE("crl_dp = \"http://crl.example.net/nf-ca.crl\";", "crl_dp = \"\";",
           "profiles[0].crl_dp: must not be empty");
}

static void test_missing(void)
{
    /* whole sections, from a minimal config with one section per line */
    static const char *const lines[] = {
        "tokens = ( { name = \"t\"; uri = \"pkcs11:token=T\"; } );\n",
        "keys = ( { name = \"k\"; token = \"t\"; uri = \"pkcs11:object=k\"; } );\n",
        "issuers = ( { name = \"i\"; key = \"k\"; certificate = \"ca.pem\"; } );\n",
        "profiles = ( { name = \"p\"; type = \"nf\"; issuer = \"i\"; subject = { C = \"FI\"; "
        "O = \"x\"; }; eku = [\"serverAuth\"]; crl_dp = \"http://c/x.crl\"; } );\n"};
    static const char *const names[] = {"tokens", "keys", "issuers", "profiles"};
    for (int skip = 0; skip < 4; skip++) {
        char text[1024] = "", want[128];
        for (int i = 0; i < 4; i++)
            if (i != skip)
                strcat(text, lines[i]);
        cfg_config *c = NULL;
        CU_ASSERT_EQUAL(load_text(text, &c), -1);
        snprintf(want, sizeof(want), "test.conf: (top level): missing required setting '%s'",
                 names[skip]);
        CU_ASSERT_STRING_EQUAL(errbuf, want);
        /* and an empty list */
        char empty[1100];
        snprintf(empty, sizeof(empty), "%s = ();\n%s", names[skip], text);
        CU_ASSERT_EQUAL(load_text(empty, &c), -1);
        snprintf(want, sizeof(want), "test.conf:1: %s: must have at least one entry", names[skip]);
        CU_ASSERT_STRING_EQUAL(errbuf, want);
    }
    REFUSE("uri = \"pkcs11:object=nf-ca\";", "", "keys[0]: missing required setting 'uri'");
    REFUSE("token = \"ca\"; uri = \"pkcs11:object=nf-ca\"", "uri = \"pkcs11:object=nf-ca\"",
           "keys[0]: missing required setting 'token'");
    REFUSE("certificate = \"ic-ca.pem\";", "",
           "issuers[1]: missing required setting 'certificate'");
    REFUSE("{ name = \"sepp\"; type = \"sepp\"; issuer = \"ic-ca\";",
           "{ name = \"sepp\"; type = \"sepp\";",
           "test.conf:18: profiles[1]: missing required setting 'issuer'");
    REFUSE("{ name = \"sepp\"; type = \"sepp\";", "{ name = \"sepp\";",
           "profiles[1]: missing required setting 'type'");
    REFUSE("{ name = \"sepp\"; ", "{ ", "profiles[1]: missing required setting 'name'");
    REFUSE("crl_dp = \"ldap://ldap.example.net/cn=ic-ca\";", "",
           "profiles[1]: missing required setting 'crl_dp'");
    REFUSE("eku = [\"clientAuth\"];", "", "profiles[2]: missing required setting 'eku'");
    REFUSE("subject = { C = \"DE\"; O = \"5gc.mnc002.mcc262.3gppnetwork.org\"; };", "",
           "profiles[1]: missing required setting 'subject'");
    REFUSE("C = \"DE\"; ", "", "profiles[1].subject: missing required setting 'C'");
    REFUSE("O = \"5gc.mnc002.mcc262.3gppnetwork.org\";", "",
           "profiles[1].subject: missing required setting 'O'");
}

static void test_values(void)
{
    /* validity limits */
    REFUSE(
        "max = \"365d\"", "max = \"1095d\"",
        "profiles[0].validity.max: validity max plus backdate is 94608060s, over the nf limit of "
        "94608000s (TS 33.310 §6.1.3c: 3 years)");
    REFUSE("max = \"365d\"", "max = \"1096d\"", "over the nf limit");
    REFUSE("crl_dp = \"ldap://", "validity = { max = \"4y\"; }; crl_dp = \"ldap://",
           "unknown unit 'y'");
    REFUSE("crl_dp = \"ldap://", "validity = { max = \"1100d\"; }; crl_dp = \"ldap://",
           "profiles[1].validity.max: validity max plus backdate is");
    REFUSE("max = \"7d\"", "max = \"8d\"",
           "over the star limit of 604800s (short-lived, RFC 8739/RFC 9608: 7d)");
    REFUSE("backdate = \"0s\";", "backdate = \"1s\";",
           "profiles[2].validity.max: validity max plus backdate is 604801s, over the star limit");
    REFUSE("default = \"90d\"", "default = \"400d\"",
           "profiles[0].validity.default: validity default exceeds validity max");
    REFUSE("default = \"90d\"", "default = \"59s\"", "validity default must be at least 60s");
    REFUSE("max = \"365d\"", "max = \"59s\"", "validity max must be at least 60s");
    REFUSE("default = \"90d\"", "default = \"90\"",
           "profiles[0].validity.default: '90' lacks a unit");
    REFUSE("backdate = \"0s\";", "backdate = \"2h\";",
           "profiles[2].backdate: backdate is at most 1h");
    /* hash */
    REFUSE("hash = \"sha256\";", "hash = \"sha1\";",
           "profiles[0].hash: 'sha1' is forbidden (TS 33.310 §6.1.1: no MD5 or SHA-1)");
    REFUSE("hash = \"sha256\";", "hash = \"md5\";", "forbidden");
    REFUSE("hash = \"sha256\";", "hash = \"sha3-256\";",
           "'sha3-256': expected sha256, sha384 or sha512");
    /* EKU */
    REFUSE("eku = [\"clientAuth\"];", "eku = [\"codeSigning\"];",
           "profiles[2].eku[0]: 'codeSigning': expected serverAuth or clientAuth");
    REFUSE("eku = [\"clientAuth\"];", "eku = [\"clientAuth\", \"clientAuth\"];",
           "profiles[2].eku[1]: 'clientAuth' listed twice");
    /* URLs */
    REFUSE(
        "http://crl.example.net/nf-ca.crl", "ftp://crl.example.net/nf-ca.crl",
        "profiles[0].crl_dp: 'ftp://crl.example.net/nf-ca.crl' must start with http:// or ldap://");
    REFUSE("http://crl.example.net/nf-ca.crl", "https://crl.example.net/nf-ca.crl", "not https://");
    REFUSE("http://crl.example.net/nf-ca.crl", "http://", "'http://' names no host");
    REFUSE("http://crl.example.net/nf-ca.crl", "http://crl example", "space, control or non-ASCII");
    REFUSE("http://ca.example.net/nf-ca.der", "crl.example.net",
           "profiles[0].aia_ca_issuers: 'crl.example.net' must start with");
    /* subject */
    REFUSE("C = \"FI\"", "C = \"FIN\"",
           "profiles[0].subject.C: 'FIN': country must be two upper-case letters");
    REFUSE("C = \"FI\"", "C = \"fi\"", "country must be two upper-case letters");
    REFUSE("O = \"5gc.mnc001.mcc001.3gppnetwork.org\"",
           "O = \"0123456789012345678901234567890123456789012345678901234567890123456789\"",
           "profiles[0].subject.O: organization must be 1..64 bytes");
    REFUSE("O = \"5gc.mnc001.mcc001.3gppnetwork.org\"", "O = \"a\\xff\"", "organization must be");
    /* names */
    REFUSE("name = \"ic-ca\"; token", "name = \"nf-ca\"; token",
           "keys[1].name: duplicate name 'nf-ca'");
    REFUSE("{ name = \"star\";", "{ name = \"nf\";", "profiles[2].name: duplicate name 'nf'");
    REFUSE("name = \"ca\";", "name = \"c a\";", "tokens[0].name: 'c a' is not a valid name");
    REFUSE("{ name = \"ic-ca\"; key", "{ name = \"nf-ca\"; key",
           "issuers[1].name: duplicate name 'nf-ca'");
    /* references */
    REFUSE("token = \"ca\"; uri = \"pkcs11:id", "token = \"hsm2\"; uri = \"pkcs11:id",
           "test.conf:4: keys[1].token: no token named 'hsm2'");
    REFUSE("key = \"ic-ca\";", "key = \"root\";", "issuers[1].key: no key named 'root'");
    REFUSE("issuer = \"ic-ca\";", "issuer = \"other\";",
           "profiles[1].issuer: no issuer named 'other'");
    /* PKCS#11 URIs */
    REFUSE("uri = \"pkcs11:token=CA?", "uri = \"token=CA?", "tokens[0].uri: 'token=CA?");
    REFUSE("pin-source=file:/etc/cf/pin", "pin-value=1234", "PINs never go in the config");
    REFUSE("uri = \"pkcs11:object=nf-ca\"", "uri = \"pkcs11:object=nf-ca?pin-value=1\"",
           "keys[0].uri: PINs never go in the config");
    REFUSE("uri = \"pkcs11:id=%01\"", "uri = \"pkcs11:token=CA\"",
           "keys[1].uri: 'pkcs11:token=CA' selects no key");
    REFUSE("uri = \"pkcs11:id=%01\"", "uri = \"/dev/x\"", "is not a PKCS#11 URI");
    REFUSE("sessions = 3;", "sessions = 0;", "keys[0].sessions: 0 is out of range 1..1024");
    REFUSE("sessions = 3;", "sessions = 3; sign_threads = 1025;",
           "keys[0].sign_threads: 1025 is out of range 0..1024");
    REFUSE("sessions = 3;", "sessions = 3; sign_threads = -1;",
           "keys[0].sign_threads: -1 is out of range 0..1024");
    /* profile type, key types, NF types */
    REFUSE("type = \"sepp\";", "type = \"scp\";",
           "profiles[1].type: 'scp': expected \"nf\", \"sepp\" or \"star\"");
    REFUSE("\"ec-p384\"]", "\"rsa-1024\"]",
           "profiles[0].key_types[1]: 'rsa-1024': expected ec-p256");
    REFUSE("\"ec-p384\"]", "\"ec-p256\"]", "profiles[0].key_types[1]: 'ec-p256' listed twice");
    REFUSE("\"NRF\"]", "\"NRF\", \"AMF\"]", "profiles[0].nf_types[3]: 'AMF' listed twice");
    REFUSE(
        "\"NRF\"]", "\"NRF\", \"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456\"]",
        "profiles[0].nf_types[3]: 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456' is not an NFType (RFC 9310");
    REFUSE("\"NRF\"]", "\"N RF\"]", "is not an NFType");
    REFUSE("crl_dp = \"ldap://", "nf_types = [\"AMF\"]; crl_dp = \"ldap://",
           "profiles[1].nf_types[0]: a sepp profile issues NFTypes \"SEPP\" only");
    /* pipeline and log */
    REFUSE("workers = 2;", "workers = 0;", "pipeline.workers: 0 is out of range 1..256");
    REFUSE("workers = 2;", "workers = 1000;", "pipeline.workers: 1000 is out of range 1..256");
    REFUSE("queue = 4096;", "queue = 2000000;",
           "pipeline.queue: 2000000 is out of range 1..1048576");
    REFUSE("batch = 32;", "batch = 4097;", "pipeline.batch: 4097 is out of range 1..1024");
    REFUSE("queue = 4096;", "queue = 16;", "pipeline.batch: batch 32 exceeds queue 16");
    REFUSE("\"1-in-16\"", "\"1-in-1\"",
           "pipeline.verify_issued: '1-in-1': expected \"all\", \"off\" or \"1-in-N\"");
    REFUSE("\"1-in-16\"", "\"1-in-16x\"", "expected \"all\"");
    REFUSE("\"1-in-16\"", "\"1-in-65537\"", "expected \"all\"");
    REFUSE("\"1-in-16\"", "\"sometimes\"", "expected \"all\"");
    REFUSE("serial_prefix = 0x01;", "serial_prefix = 0;",
           "pipeline.serial_prefix: 0 is out of range 0x01..0x7FFFFFFF");
    REFUSE("serial_prefix = 0x01;", "serial_prefix = \"80\";", "the first octet must be 01..7f");
    REFUSE("serial_prefix = 0x01;", "serial_prefix = \"0g\";", "expected hex digits");
    REFUSE("serial_prefix = 0x01;", "serial_prefix = \"0102030405\";",
           "expected 2, 4, 6 or 8 hex digits");
    REFUSE("level = \"info\"", "level = \"loud\"",
           "log.level: 'loud': expected error, warning, info or debug");
}

/* ------------------------------------------------------------- server, grants */

static const char server_grants[] =
    "server = { socket = \"run/cf.sock\"; socket_mode = \"0640\"; max_frame = 4096;\n"
    "  max_inflight = 8; max_connections = 16; busy_deadline_ms = 0; idle_timeout_ms = 500;\n"
    "  drain_timeout_ms = 2000; io_threads = 2; };\n"
    "grants = ( { uid = 1000; profiles = [\"nf\", \"sepp\"]; ops = [\"issue\", \"status\", "
    "\"keys\"]; },\n"
    "           { gid = 27; ops = [\"status\"]; },\n"
    "           { uid = 0; profiles = [\"*\"]; ops = [\"issue\"]; },\n"
    "           { uid = 7; keys = [\"ic-ca\", \"nf-ca\"]; ops = [\"sign\", \"revoke\", "
    "\"crl\"]; } );\n";

/* base_conf plus `extra`, edited by replacing `from` with `to`: refused,
 * with `want` in the message. */
static void refuse_with(const char *extra, const char *from, const char *to, const char *want)
{
    size_t n = strlen(base_conf) + strlen(extra) + 1;
    char *full = malloc(n);
    snprintf(full, n, "%s%s", base_conf, extra);
    char *t = sub(full, from, to);
    cfg_config *c = NULL;
    int rc = load_text(t, &c);
    CU_ASSERT_EQUAL(rc, -1);
    if (rc == 0)
        cfg_free(c);
    if (!strstr(errbuf, want)) {
        fprintf(stderr, "\n  edit '%s' -> '%s'\n  got:  %s\n  want: %s\n", from, to, errbuf, want);
        CU_FAIL("message lacks the expected text");
    }
    free(t);
    free(full);
}

/* base_conf plus `extra`, loaded: load_text()'s result. */
static int load_with(const char *extra, cfg_config **out)
{
    size_t n = strlen(base_conf) + strlen(extra) + 1;
    char *full = malloc(n);
    snprintf(full, n, "%s%s", base_conf, extra);
    int rc = load_text(full, out);
    free(full);
    return rc;
}

/* base_conf plus `extra` (a line) must be refused, the message holding
 * `at` (when given: "FILE:LINE: setting: ") and `want`. */
static void expect_refused(const char *extra, const char *at, const char *want)
{
    cfg_config *c = NULL;
    size_t n = strlen(extra) + 2;
    char *line = malloc(n);
    snprintf(line, n, "%s\n", extra);
    CU_ASSERT_EQUAL(load_with(line, &c), -1);
    if (c)
        cfg_free(c);
    if (!strstr(errbuf, want) || (at && !strstr(errbuf, at))) {
        fprintf(stderr, "\n  got:  %s\n  want: %s%s\n", errbuf, at ? at : "", want);
        CU_FAIL("message lacks the expected text");
    }
    free(line);
}

/* base_conf plus the server and grants sections above, edited. */
static void refuse_srv(const char *from, const char *to, const char *want)
{
    refuse_with(server_grants, from, to, want);
}

static void test_server_grants(void)
{
    cfg_config *c = NULL;
    int rc = load_with(server_grants, &c);
    if (rc)
        fprintf(stderr, "\n%s\n", errbuf);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_STRING_EQUAL(c->server.socket, "/etc/cf/run/cf.sock");
    CU_ASSERT_EQUAL(c->server.socket_mode, 0640);
    CU_ASSERT_EQUAL(c->server.max_frame, 4096);
    CU_ASSERT_EQUAL(c->server.max_inflight, 8);
    CU_ASSERT_EQUAL(c->server.max_connections, 16);
    /* fair share per peer: defaults from max_connections */
    CU_ASSERT_EQUAL(c->server.peer_max_connections, 16);
    CU_ASSERT_EQUAL(c->server.peer_reserve, 4);
    CU_ASSERT_EQUAL(c->server.peer_max_inflight, 0);
    CU_ASSERT_EQUAL(c->server.busy_deadline_ms, 0);
    CU_ASSERT_EQUAL(c->server.idle_timeout_ms, 500);
    CU_ASSERT_EQUAL(c->server.drain_timeout_ms, 2000);
    CU_ASSERT_EQUAL(c->server.io_threads, 2);
    CU_ASSERT_EQUAL(c->server.line, 32);
    CU_ASSERT_EQUAL_FATAL(c->n_grants, 4);
    CU_ASSERT_EQUAL(c->grants[3].ops, CFG_GRANT_SIGN | CFG_GRANT_REVOKE | CFG_GRANT_CRL);
    CU_ASSERT_EQUAL_FATAL(c->grants[3].n_keys, 2);
    CU_ASSERT_EQUAL(c->grants[3].key_idx[0], 1);
    CU_ASSERT_EQUAL(c->grants[3].key_idx[1], 0);
    CU_ASSERT_EQUAL(c->grants[0].n_keys, 0);
    CU_ASSERT_TRUE(c->grants[0].has_uid && !c->grants[0].has_gid);
    CU_ASSERT_EQUAL(c->grants[0].uid, 1000);
    CU_ASSERT_EQUAL(c->grants[0].ops, CFG_GRANT_ISSUE | CFG_GRANT_STATUS | CFG_GRANT_KEYS);
    CU_ASSERT_EQUAL_FATAL(c->grants[0].n_profiles, 2);
    CU_ASSERT_EQUAL(c->grants[0].profile_idx[0], 0);
    CU_ASSERT_EQUAL(c->grants[0].profile_idx[1], 1);
    CU_ASSERT_FALSE(c->grants[0].all_profiles);
    CU_ASSERT_TRUE(c->grants[1].has_gid && !c->grants[1].has_uid);
    CU_ASSERT_EQUAL(c->grants[1].gid, 27);
    CU_ASSERT_EQUAL(c->grants[1].ops, CFG_GRANT_STATUS);
    CU_ASSERT_EQUAL(c->grants[1].n_profiles, 0);
    CU_ASSERT_TRUE(c->grants[2].all_profiles);
    CU_ASSERT_EQUAL(c->grants[2].uid, 0);
    cfg_free(c);

    /* defaults: no server section, no grants */
    CU_ASSERT_EQUAL_FATAL(load_text(base_conf, &c), 0);
    CU_ASSERT_STRING_EQUAL(c->server.socket, "/run/certforge/certforged.sock");
    CU_ASSERT_EQUAL(c->server.socket_mode, 0660);
    CU_ASSERT_EQUAL(c->server.max_frame, 65536);
    CU_ASSERT_EQUAL(c->server.max_inflight, 256);
    CU_ASSERT_EQUAL(c->server.max_connections, 1024);
    CU_ASSERT_EQUAL(c->server.peer_max_connections, 1024);
    CU_ASSERT_EQUAL(c->server.peer_reserve, 32);
    CU_ASSERT_EQUAL(c->server.busy_deadline_ms, 50);
    CU_ASSERT_EQUAL(c->server.idle_timeout_ms, 30000);
    CU_ASSERT_EQUAL(c->server.drain_timeout_ms, 10000);
    CU_ASSERT_EQUAL(c->server.io_threads, 1);
    CU_ASSERT_EQUAL(c->server.line, 0);
    CU_ASSERT_EQUAL(c->n_grants, 0);
    cfg_free(c);
}

static void test_server_grants_refused(void)
{
    /* unknown settings, with file:line */
    refuse_srv("io_threads = 2;", "io_threads = 2; backlog = 5;",
               "test.conf:34: server.backlog: unknown setting in server");
    refuse_srv("{ gid = 27;", "{ gid = 27; user = \"x\";",
               "test.conf:36: grants[1].user: unknown setting in a grant");
    /* types */
    refuse_srv("socket_mode = \"0640\"", "socket_mode = 0640",
               "server.socket_mode: expected the mode as an octal string such as \"0660\", got an "
               "integer");
    refuse_srv("max_frame = 4096;", "max_frame = \"4k\";",
               "server.max_frame: expected an integer, got a string");
    refuse_srv("socket = \"run/cf.sock\";", "socket = 1;",
               "server.socket: expected a string, got an integer");
    REFUSE("log = {", "server = 1;\nlog = {", "test.conf:31: server: expected a group");
    REFUSE("log = {", "grants = [1];\nlog = {", "test.conf:31: grants: expected a list");
    refuse_srv("{ uid = 1000;", "7, { uid = 1000;", "grants[0]: expected a group");
    refuse_srv("uid = 1000;", "uid = \"alice\";",
               "grants[0].uid: expected an integer, got a string");
    /* values */
    refuse_srv("\"0640\"", "\"0666\"",
               "server.socket_mode: '0666' makes the socket world-writable");
    refuse_srv("\"0640\"", "\"0662\"", "world-writable");
    refuse_srv("\"0640\"", "\"0968\"", "'0968': expected 3 or 4 octal digits");
    refuse_srv("\"0640\"", "\"4660\"", "'4660': only permission bits");
    refuse_srv("\"0640\"", "\"0460\"", "'0460': the owner needs read and write");
    refuse_srv("max_frame = 4096;", "max_frame = 63;",
               "server.max_frame: 63 is out of range 64..1048576");
    refuse_srv("max_frame = 4096;", "max_frame = 2000000;", "out of range 64..1048576");
    refuse_srv("max_inflight = 8;", "max_inflight = 0;",
               "server.max_inflight: 0 is out of range 1..65536");
    refuse_srv("max_connections = 16;", "max_connections = 100000;",
               "server.max_connections: 100000 is out of range 1..65536");
    refuse_srv("max_connections = 16;", "max_connections = 16; peer_max_connections = 17;",
               "server.peer_max_connections: 17 is out of range 1..16");
    refuse_srv("max_connections = 16;", "max_connections = 16; peer_reserve = -1;",
               "server.peer_reserve: -1 is out of range 0..65536");
    refuse_srv("busy_deadline_ms = 0;", "busy_deadline_ms = -1;",
               "server.busy_deadline_ms: -1 is out of range 0..60000");
    refuse_srv("idle_timeout_ms = 500;", "idle_timeout_ms = 10;",
               "server.idle_timeout_ms: 10 is out of range 100..86400000");
    refuse_srv("drain_timeout_ms = 2000;", "drain_timeout_ms = 0;",
               "server.drain_timeout_ms: 0 is out of range 100..600000");
    refuse_srv("io_threads = 2;", "io_threads = 65;",
               "server.io_threads: 65 is out of range 1..64");
    refuse_srv(
        "\"run/cf.sock\"",
        "\"/run/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\"",
        "is longer than 107 octets");
    refuse_srv("\"run/cf.sock\"", "\"\"", "server.socket: must not be empty");
    /* grants */
    refuse_srv("{ gid = 27;", "{ gid = 27; uid = 5;",
               "grants[1].gid: a grant matches one uid or one gid, not both");
    refuse_srv("{ gid = 27;", "{",
               "test.conf:36: grants[1]: missing required setting 'uid' or 'gid'");
    refuse_srv("uid = 1000;", "uid = -1;", "grants[0].uid: -1 is out of range 0..4294967294");
    refuse_srv("gid = 27;", "gid = 4294967295L;", "grants[1].gid: 4294967295 is out of range");
    refuse_srv("ops = [\"status\"]", "ops = [\"stats\"]",
               "grants[1].ops[0]: 'stats': expected issue, status, keys, sign, revoke or crl");
    /* sign: keys named one by one */
    refuse_srv("ops = [\"status\"]", "ops = [\"sign\"]",
               "grants[1]: 'sign' needs a keys list (names of keys entries; there is no \"*\")");
    refuse_srv("ops = [\"status\"]", "keys = [\"nf-ca\"]; ops = [\"status\"]",
               "grants[1].keys: keys are only used by the 'sign' operation");
    refuse_srv("ops = [\"status\"]", "keys = [\"*\"]; ops = [\"sign\"]",
               "grants[1].keys[0]: '*': sign is granted key by key, name each one");
    refuse_srv("ops = [\"status\"]", "keys = [\"nope\"]; ops = [\"sign\"]",
               "grants[1].keys[0]: no key named 'nope'");
    refuse_srv("ops = [\"status\"]", "keys = [\"ic-ca\", \"ic-ca\"]; ops = [\"sign\"]",
               "grants[1].keys[1]: 'ic-ca' listed twice");
    refuse_srv("ops = [\"status\"]", "keys = []; ops = [\"sign\"]",
               "grants[1].keys: must not be empty");
    refuse_srv("ops = [\"status\"]", "ops = [\"status\", \"status\"]",
               "grants[1].ops[1]: 'status' listed twice");
    refuse_srv("ops = [\"status\"]", "ops = []", "grants[1].ops: must not be empty");
    refuse_srv("{ gid = 27; ops = [\"status\"]; }", "{ gid = 27; }",
               "grants[1]: missing required setting 'ops'");
    refuse_srv("ops = [\"status\"]", "ops = [\"issue\"]",
               "grants[1]: 'issue' needs a profiles list");
    refuse_srv("ops = [\"status\"]", "profiles = [\"nf\"]; ops = [\"status\"]",
               "grants[1].profiles: profiles are only used by the 'issue' operation");
    refuse_srv("\"nf\", \"sepp\"", "\"nf\", \"nope\"",
               "grants[0].profiles[1]: no profile named 'nope'");
    refuse_srv("\"nf\", \"sepp\"", "\"nf\", \"nf\"", "grants[0].profiles[1]: 'nf' listed twice");
    refuse_srv("\"nf\", \"sepp\"", "\"nf\", \"*\"",
               "grants[0].profiles[1]: \"*\" (all profiles) must be the only entry");
}

/* ------------------------------------------------------------- crl */

static const char crl_conf[] =
    "crl = { dir = \"pub/crl\"; interval = \"30m\"; validity = \"2h\"; revoke_delay = \"5s\"; "
    "};\n";

static void refuse_crl(const char *from, const char *to, const char *want)
{
    refuse_with(crl_conf, from, to, want);
}

static void test_crl_section(void)
{
    cfg_config *c = NULL;
    int rc = load_with(crl_conf, &c);
    if (rc)
        fprintf(stderr, "\n%s\n", errbuf);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_STRING_EQUAL(c->crl.dir, "/etc/cf/pub/crl");
    CU_ASSERT_EQUAL(c->crl.interval_s, 1800);
    CU_ASSERT_EQUAL(c->crl.validity_s, 7200);
    CU_ASSERT_EQUAL(c->crl.revoke_delay_s, 5);
    CU_ASSERT(c->crl.line > 0);
    cfg_free(c);
    /* absent: no CRLs, defaults filled */
    CU_ASSERT_EQUAL_FATAL(load_text(base_conf, &c), 0);
    CU_ASSERT_PTR_NULL(c->crl.dir);
    CU_ASSERT_EQUAL(c->crl.line, 0);
    CU_ASSERT_EQUAL(c->crl.interval_s, 3600);
    cfg_free(c);
    refuse_crl("dir = \"pub/crl\"; ", "", "crl: missing required setting 'dir'");
    refuse_crl("interval = \"30m\"", "interval = \"59s\"", "crl.interval: at least 60s");
    refuse_crl("validity = \"2h\"", "validity = \"30m\"",
               "crl.validity: validity (nextUpdate - thisUpdate) must be longer than interval");
    refuse_crl("revoke_delay = \"5s\"", "revoke_delay = \"1h\"",
               "crl.revoke_delay: longer than interval");
    refuse_crl("interval = \"30m\"", "interval = 30", "crl.interval: expected a string");
    refuse_crl("revoke_delay", "publish_delay", "crl.publish_delay: unknown setting in crl");
    refuse_crl("validity = \"2h\"", "validity = \"2\"", "crl.validity:");
}

/* ------------------------------------------------------------- CRL shards */

/* base_conf with issuer nf-ca sharded 4 ways (its nf profile's crl_dp a
 * {shard} template), then `from` replaced by `to` (from NULL: nothing). */
static char *sharded(const char *from, const char *to)
{
    char *a = sub(base_conf, "certificate = \"/etc/cf/nf-ca.pem\";",
                  "certificate = \"/etc/cf/nf-ca.pem\"; crl_shards = 4;");
    char *b = sub(a, "\"http://crl.example.net/nf-ca.crl\"",
                  "\"http://crl.example.net/nf-ca/{shard}.crl\"");
    free(a);
    if (!from)
        return b;
    char *c = sub(b, from, to);
    free(b);
    return c;
}

static void refuse_sharded(const char *from, const char *to, const char *want)
{
    char *t = sharded(from, to);
    cfg_config *c = NULL;
    int rc = load_text(t, &c);
    CU_ASSERT_EQUAL(rc, -1);
    if (rc == 0)
        cfg_free(c);
    if (!strstr(errbuf, want)) {
        fprintf(stderr, "\n  edit '%s' -> '%s'\n  got:  %s\n  want: %s\n", from, to, errbuf, want);
        CU_FAIL("message lacks the expected text");
    }
    free(t);
}

static void test_crl_shards(void)
{
    cfg_config *c = NULL;
    char *t = sharded(NULL, NULL);
    int rc = load_text(t, &c);
    if (rc)
        fprintf(stderr, "\n%s\n", errbuf);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(c->issuers[0].crl_shards, 4);
    CU_ASSERT_STRING_EQUAL(c->issuers[0].crl_dp, "http://crl.example.net/nf-ca/{shard}.crl");
    CU_ASSERT_EQUAL(c->profiles[0].crl_shards, 4);
    CU_ASSERT_EQUAL(c->profiles[2].crl_shards, 4); /* star: noRevAvail, no crl_dp */
    CU_ASSERT_PTR_NULL(c->profiles[2].crl_dp);
    CU_ASSERT_EQUAL(c->issuers[1].crl_shards, 1); /* the default */
    CU_ASSERT_PTR_NULL(c->issuers[1].crl_dp);
    CU_ASSERT_EQUAL(c->profiles[1].crl_shards, 1);
    cfg_free(c);
    free(t);
    /* a second profile of the issuer with the same template: fine */
    t = sharded("issuer = \"ic-ca\";\n    subject = { C = \"DE\"",
                "issuer = \"nf-ca\";\n    subject = { C = \"DE\"");
    char *t2 = sub(t, "\"ldap://ldap.example.net/cn=ic-ca\"",
                   "\"http://crl.example.net/nf-ca/{shard}.crl\"");
    rc = load_text(t2, &c);
    if (rc)
        fprintf(stderr, "\n%s\n", errbuf);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc == 0)
        cfg_free(c);
    free(t2);
    /* ... with another template: refused at the second one's crl_dp */
    t2 = sub(t, "\"ldap://ldap.example.net/cn=ic-ca\"",
             "\"http://crl2.example.net/nf-ca/{shard}.crl\"");
    CU_ASSERT_EQUAL(load_text(t2, &c), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(
        errbuf, "test.conf:21: profiles[1].crl_dp: 'http://crl2.example.net/nf-ca/{shard}.crl' "
                "differs from 'http://crl.example.net/nf-ca/{shard}.crl' of another profile of "
                "issuer 'nf-ca': with crl_shards, every profile of an issuer has the same crl_dp"));
    if (!strstr(errbuf, "test.conf:21: profiles[1].crl_dp"))
        fprintf(stderr, "\n  got: %s\n", errbuf);
    free(t2);
    free(t);

    refuse_sharded("crl_shards = 4;", "crl_shards = 0;",
                   "test.conf:5: issuers[0].crl_shards: 0 is out of range 1..1024");
    refuse_sharded("crl_shards = 4;", "crl_shards = 1025;",
                   "test.conf:5: issuers[0].crl_shards: 1025 is out of range 1..1024");
    refuse_sharded("crl_shards = 4;", "crl_shards = \"4\";",
                   "test.conf:5: issuers[0].crl_shards: expected an integer");
    refuse_sharded("/nf-ca/{shard}.crl", "/nf-ca.crl",
                   "test.conf:12: profiles[0].crl_dp: issuer 'nf-ca' has crl_shards = 4: crl_dp "
                   "must hold {shard} (the shard's number), e.g. "
                   "\"http://crl.example/nf-ca/{shard}.crl\"");
    refuse_sharded("/nf-ca/{shard}.crl", "/nf-ca/{shard}/{shard}.crl",
                   "test.conf:12: profiles[0].crl_dp: 'http://crl.example.net/nf-ca/{shard}/"
                   "{shard}.crl' holds {shard} more than once");
    refuse_sharded("crl_shards = 4;", "crl_shards = 1;",
                   "test.conf:12: profiles[0].crl_dp: 'http://crl.example.net/nf-ca/{shard}.crl' "
                   "holds {shard}, but issuer 'nf-ca' has one CRL (set crl_shards in the issuer, "
                   "or remove {shard})");
    refuse_sharded("crl_shards = 4;", "", "holds {shard}, but issuer 'nf-ca' has one CRL");
    /* ic-ca sharded, but its only profile (sepp) moved to nf-ca: no URL */
    t = sharded("issuer = \"ic-ca\";\n    subject = { C = \"DE\"",
                "issuer = \"nf-ca\";\n    subject = { C = \"DE\"");
    t2 = sub(t, "\"ldap://ldap.example.net/cn=ic-ca\"",
             "\"http://crl.example.net/nf-ca/{shard}.crl\"");
    free(t);
    t = sub(t2, "certificate = \"ic-ca.pem\";", "certificate = \"ic-ca.pem\"; crl_shards = 2;");
    CU_ASSERT_EQUAL(load_text(t, &c), -1);
    if (!strstr(errbuf, "test.conf:6: issuers[1].crl_shards: issuer 'ic-ca' has no nf or sepp "
                        "profile with a crl_dp: its 2 CRL shards would name no URL (remove "
                        "crl_shards)")) {
        fprintf(stderr, "\n  got: %s\n", errbuf);
        CU_FAIL("sharded issuer without crl_dp");
    }
    free(t2);
    free(t);
    /* nf-ca's shard 1 is published as nf-ca-1.crl: no issuer may be named so */
    t = sharded("{ name = \"ic-ca\"; key", "{ name = \"nf-ca-1\"; key");
    t2 = sub(t, "issuer = \"ic-ca\";", "issuer = \"nf-ca-1\";");
    CU_ASSERT_EQUAL(load_text(t2, &c), -1);
    if (!strstr(errbuf, "test.conf:6: issuers[1]: issuer name 'nf-ca-1' is a CRL file name of "
                        "sharded issuer 'nf-ca' (nf-ca-K.crl): rename one of them")) {
        fprintf(stderr, "\n  got: %s\n", errbuf);
        CU_FAIL("an issuer named as a shard's file");
    }
    free(t2);
    free(t);
    /* ... a name that is not NAME-DIGITS is fine */
    t = sharded("{ name = \"ic-ca\"; key", "{ name = \"nf-ca-x1\"; key");
    t2 = sub(t, "issuer = \"ic-ca\";", "issuer = \"nf-ca-x1\";");
    rc = load_text(t2, &c);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc == 0)
        cfg_free(c);
    else
        fprintf(stderr, "\n  got: %s\n", errbuf);
    free(t2);
    free(t);
}

static void test_confine_section(void)
{
    static const char conf[] =
        "confine = { enabled = true; require_landlock = true; writable = [\"hsm\", "
        "\"/var/lib/softhsm\"]; };\n";
    cfg_config *c = NULL;
    int rc = load_with(conf, &c);
    if (rc)
        fprintf(stderr, "\n%s\n", errbuf);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_TRUE(c->confine.enabled);
    CU_ASSERT_TRUE(c->confine.require_landlock);
    CU_ASSERT_EQUAL_FATAL(c->confine.n_writable, 2);
    CU_ASSERT_STRING_EQUAL(c->confine.writable[0], "/etc/cf/hsm");
    CU_ASSERT_STRING_EQUAL(c->confine.writable[1], "/var/lib/softhsm");
    cfg_free(c);
    /* default: on, nothing extra */
    CU_ASSERT_EQUAL_FATAL(load_text(base_conf, &c), 0);
    CU_ASSERT_TRUE(c->confine.enabled);
    CU_ASSERT_FALSE(c->confine.require_landlock);
    CU_ASSERT_EQUAL(c->confine.n_writable, 0);
    cfg_free(c);
    struct {
        const char *text, *want;
    } bad[] = {
        {"confine = { writable = [\"/\"]; };", "confine.writable[0]: \"/\" would leave everything writable"},
        {"confine = { enabled = 1; };", "confine.enabled: expected a boolean"},
        {"confine = { sandbox = true; };", "confine.sandbox: unknown setting in confine"},
        {"confine = { writable = []; };", "confine.writable: must not be empty"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_refused(bad[i].text, NULL, bad[i].want);
}

/* ------------------------------------------------------------- metrics */

static void test_metrics_section(void)
{
    cfg_config *c = NULL;
    CU_ASSERT_EQUAL_FATAL(load_with("metrics = { listen = \"127.0.0.1:9464\"; };\n", &c), 0);
    CU_ASSERT_STRING_EQUAL(c->metrics.host, "127.0.0.1");
    CU_ASSERT_EQUAL(c->metrics.port, 9464);
    CU_ASSERT(c->metrics.line > 0);
    cfg_free(c);
    c = NULL;
    CU_ASSERT_EQUAL_FATAL(load_with("metrics = { listen = \"[::1]:0\"; };\n", &c), 0);
    CU_ASSERT_STRING_EQUAL(c->metrics.host, "::1");
    CU_ASSERT_EQUAL(c->metrics.port, 0);
    cfg_free(c);
    c = NULL;
    CU_ASSERT_EQUAL_FATAL(load_with("metrics = { listen = \"127.1.2.3:65535\"; };\n", &c), 0);
    CU_ASSERT_EQUAL(c->metrics.port, 65535);
    cfg_free(c);
    /* absent: no endpoint */
    c = NULL;
    CU_ASSERT_EQUAL_FATAL(load_text(base_conf, &c), 0);
    CU_ASSERT_EQUAL(c->metrics.line, 0);
    cfg_free(c);
    /* the refusals name the file and the line of the listen setting: the
     * line after base_conf's last */
    int line = 1;
    for (const char *p = base_conf; *p; p++)
        line += *p == '\n';
    char at[64];
    snprintf(at, sizeof(at), "test.conf:%d: metrics.listen: ", line);
    struct {
        const char *text, *want;
    } bad[] = {
        {"metrics = { listen = \"0.0.0.0:9464\"; };",
         "'0.0.0.0:9464': not a loopback address: the metrics endpoint has no authentication "
         "and listens on 127.0.0.0/8 or [::1] only"},
        {"metrics = { listen = \"192.0.2.1:9464\"; };", "'192.0.2.1:9464': not a loopback address"},
        {"metrics = { listen = \"[::]:9464\"; };", "'[::]:9464': not a loopback address"},
        {"metrics = { listen = \"[::ffff:127.0.0.1]:9464\"; };", "not a loopback address"},
        {"metrics = { listen = \"localhost:9464\"; };",
         "'localhost' is not a numeric IPv4 address (write 127.0.0.1, not a host name)"},
        {"metrics = { listen = \"127.0.0.1\"; };", "expected ADDRESS:PORT"},
        {"metrics = { listen = \"127.0.0.1:\"; };", "the port must be a number from 0 to 65535"},
        {"metrics = { listen = \"127.0.0.1:65536\"; };",
         "the port must be a number from 0 to 65535"},
        {"metrics = { listen = \"127.0.0.1:-1\"; };", "the port must be a number from 0 to 65535"},
        {"metrics = { listen = \"127.0.0.1:80x\"; };", "the port must be a number from 0 to 65535"},
        {"metrics = { listen = \"[::1:9464\"; };", "expected [IPv6]:PORT"},
        {"metrics = { listen = \"[127.0.0.1]:9464\"; };", "is not a numeric IPv6 address"},
        {"metrics = { listen = \"127.0.0.1:99999999999999999999\"; };",
         "the port must be a number from 0 to 65535"},
        {"metrics = { listen = 9464; };", "expected a string"},
        {"metrics = { listen = \"\"; };", "must not be empty"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_refused(bad[i].text, at, bad[i].want);
    /* the group's own refusals */
    refuse_with("metrics = { listen = \"127.0.0.1:9464\"; };\n", "listen", "address",
                "metrics.address: unknown setting in metrics");
    refuse_with("metrics = { listen = \"127.0.0.1:9464\"; };\n", "listen = \"127.0.0.1:9464\";", "",
                "metrics: missing required setting 'listen'");
}

/* ------------------------------------------------------------- ledger */

static const char ledger_conf[] =
    "ledger = { backend = \"sqlite\"; path = \"state/ledger.db\"; busy_timeout_ms = 250; };\n";


static void refuse_ledger(const char *from, const char *to, const char *want)
{
    refuse_with(ledger_conf, from, to, want);
}

static void test_ledger(void)
{
    /* absent: no ledger (certforged refuses that itself) */
    cfg_config *c = NULL;
    CU_ASSERT_EQUAL_FATAL(load_text(base_conf, &c), 0);
    CU_ASSERT_EQUAL(c->ledger.line, 0);
    CU_ASSERT_PTR_NULL(c->ledger.path);
    cfg_free(c);
    /* present: relative path against the config folder */
    c = NULL;
    int rc = load_with(ledger_conf, &c);
    if (rc)
        fprintf(stderr, "\n%s\n", errbuf);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(c->ledger.line, 32);
    CU_ASSERT_EQUAL(c->ledger.backend, CFG_LEDGER_SQLITE);
    CU_ASSERT_STRING_EQUAL(c->ledger.path, "/etc/cf/state/ledger.db");
    CU_ASSERT_EQUAL(c->ledger.busy_timeout_ms, 250);
    CU_ASSERT_STRING_EQUAL(cfg_ledger_backend_name(c->ledger.backend), "sqlite");
    cfg_free(c);
    /* absolute path kept; default busy timeout */
    c = NULL;
    char text[4096];
    snprintf(text, sizeof(text), "%sledger = { backend = \"sqlite\"; path = \"/var/lib/cf/l.db\"; };\n",
             base_conf);
    CU_ASSERT_EQUAL_FATAL(load_text(text, &c), 0);
    CU_ASSERT_STRING_EQUAL(c->ledger.path, "/var/lib/cf/l.db");
    CU_ASSERT_EQUAL(c->ledger.busy_timeout_ms, 1000);
    cfg_free(c);
}

static void test_ledger_refused(void)
{
    refuse_ledger("busy_timeout_ms = 250;", "busy_timeout_ms = 250; mode = 1;",
                  "test.conf:32: ledger.mode: unknown setting in ledger");
    refuse_ledger(ledger_conf, "ledger = 1;\n", "test.conf:32: ledger: expected a group");
    refuse_ledger("backend = \"sqlite\"; ", "", "ledger: missing required setting 'backend'");
    refuse_ledger("path = \"state/ledger.db\"; ", "",
                  "ledger: missing required setting 'path'");
    refuse_ledger("\"sqlite\"", "\"mysql\"",
                  "ledger.backend: 'mysql': expected \"sqlite\" or \"postgresql\"");
    refuse_ledger("\"sqlite\"", "\"PostgreSQL\"", "ledger.backend: 'PostgreSQL': expected");
    /* postgresql with sqlite's path: refused, naming the setting it wants */
    refuse_ledger("\"sqlite\"", "\"postgresql\"",
                  "test.conf:32: ledger.path: is for backend \"sqlite\", not \"postgresql\"; "
                  "this backend takes 'conninfo'");
    refuse_ledger("path = \"state/ledger.db\";", "conninfo = \"dbname=x\";",
                  "test.conf:32: ledger.conninfo: is for backend \"postgresql\", not \"sqlite\"");
    refuse_ledger("\"sqlite\"", "1", "ledger.backend: expected a string, got an integer");
    refuse_ledger("\"state/ledger.db\"", "\"\"", "ledger.path: must not be empty");
    refuse_ledger("\"state/ledger.db\"", "7", "ledger.path: expected a string");
    refuse_ledger("\"state/ledger.db\"", "\":memory:\"",
                  "ledger.path: ':memory:': a file path is required");
    refuse_ledger("\"state/ledger.db\"", "\"file:x.db?mode=memory\"",
                  "a file path is required");
    refuse_ledger("busy_timeout_ms = 250;", "busy_timeout_ms = 0;",
                  "ledger.busy_timeout_ms: 0 is out of range 1..60000");
    refuse_ledger("busy_timeout_ms = 250;", "busy_timeout_ms = \"1s\";",
                  "ledger.busy_timeout_ms: expected an integer");
    refuse_ledger("busy_timeout_ms = 250;", "busy_timeout_ms = 250; pg_timeout_ms = 5000;",
                  "test.conf:32: ledger.pg_timeout_ms: is for backend \"postgresql\", not "
                  "\"sqlite\"");
}

/* backend = "postgresql": conninfo as libpq reads it, no secrets. */
static const char pg_conf[] = "ledger = { backend = \"postgresql\"; conninfo = \"host=/run/pg "
                              "dbname=certforge user=certforge\"; };\n";

static void refuse_pg(const char *from, const char *to, const char *want)
{
    refuse_with(pg_conf, from, to, want);
}

static void test_ledger_pg(void)
{
    size_t n = strlen(base_conf) + strlen(pg_conf) + 256;
    char *full = malloc(n);
    snprintf(full, n, "%s%s", base_conf, pg_conf);
    cfg_config *c = NULL;
    int rc = load_text(full, &c);
    if (rc)
        fprintf(stderr, "\n%s\n", errbuf);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(c->ledger.line, 32);
    CU_ASSERT_EQUAL(c->ledger.backend, CFG_LEDGER_POSTGRESQL);
    CU_ASSERT_STRING_EQUAL(cfg_ledger_backend_name(c->ledger.backend), "postgresql");
    CU_ASSERT_STRING_EQUAL(c->ledger.conninfo, "host=/run/pg dbname=certforge user=certforge");
    CU_ASSERT_PTR_NULL(c->ledger.path);
    CU_ASSERT_EQUAL(c->ledger.busy_timeout_ms, 1000);
    CU_ASSERT_EQUAL(c->ledger.pg_timeout_ms, 5000);
    cfg_free(c);
    /* a URI, a passfile and timeouts are fine */
    snprintf(full, n,
             "%sledger = { backend = \"postgresql\"; busy_timeout_ms = 300; pg_timeout_ms = 301;\n"
             "  conninfo = "
             "\"postgresql://certforge@/certforge?host=/run/pg&passfile=/etc/cf/pgpass\"; };\n",
             base_conf);
    c = NULL;
    CU_ASSERT_EQUAL_FATAL(load_text(full, &c), 0);
    CU_ASSERT_EQUAL(c->ledger.busy_timeout_ms, 300);
    CU_ASSERT_EQUAL(c->ledger.pg_timeout_ms, 301);
    CU_ASSERT_PTR_NOT_NULL(strstr(c->ledger.conninfo, "passfile="));
    cfg_free(c);
    free(full);
}

static void test_ledger_pg_refused(void)
{
    const char *ci = "\"host=/run/pg dbname=certforge user=certforge\"";
    refuse_pg("conninfo = ", "conninfx = ", "test.conf:32: ledger.conninfx: unknown setting");
    refuse_pg(ci, "\"\"", "ledger.conninfo: must not be empty");
    refuse_pg(ci, "5432", "ledger.conninfo: expected a string");
    refuse_pg("conninfo = ", "path = \"l.db\"; conninfo = ",
              "ledger.path: is for backend \"sqlite\", not \"postgresql\"");
    /* libpq's own parser: its reason, on the setting's line */
    refuse_pg(ci, "\"host=/run/pg dbnme=certforge\"",
              "test.conf:32: ledger.conninfo: not a libpq conninfo: invalid connection option "
              "\"dbnme\"");
    refuse_pg(ci, "\"host='/run/pg\"", "ledger.conninfo: not a libpq conninfo: unterminated");
    refuse_pg(ci, "\"host=/run/pg dbname\"",
              "ledger.conninfo: not a libpq conninfo: missing \"=\" after \"dbname\"");
    refuse_pg(ci, "\"postgresql://h/db?nosuch=1\"", "invalid URI query parameter");
    /* secrets: key=value, URI user:password@, sslpassword */
    refuse_pg(ci, "\"host=/run/pg dbname=x password=s3cret\"",
              "ledger.conninfo: holds a password: keep it out of the config; use a password "
              "file (PGPASSFILE, ~/.pgpass, or passfile=PATH here) or peer authentication");
    refuse_pg(ci, "\"postgresql://certforge:s3cret@db.example/certforge\"", "holds a password");
    refuse_pg(ci, "\"postgresql://db.example/certforge?password=s3cret\"", "holds a password");
    refuse_pg(ci, "\"host=/run/pg password=''\"", "holds a password");
    refuse_pg(ci, "\"host=db sslpassword=k3y\"", "holds a sslpassword");
    /* the refusal never repeats the secret */
    cfg_config *c = NULL;
    char text[4096];
    snprintf(text, sizeof(text),
             "%sledger = { backend = \"postgresql\"; conninfo = \"dbname=x password=s3cret\"; };\n",
             base_conf);
    CU_ASSERT_EQUAL(load_text(text, &c), -1);
    CU_ASSERT_PTR_NULL(strstr(errbuf, "s3cret"));
    refuse_pg("user=certforge\"; };", "user=certforge\"; busy_timeout_ms = 60001; };",
              "ledger.busy_timeout_ms: 60001 is out of range 1..60000");
    /* pg_timeout_ms: 100..600000, an integer, longer than busy_timeout_ms */
    refuse_pg("user=certforge\"; };", "user=certforge\"; pg_timeout_ms = 99; };",
              "test.conf:32: ledger.pg_timeout_ms: 99 is out of range 100..600000");
    refuse_pg("user=certforge\"; };", "user=certforge\"; pg_timeout_ms = 600001; };",
              "ledger.pg_timeout_ms: 600001 is out of range 100..600000");
    refuse_pg("user=certforge\"; };", "user=certforge\"; pg_timeout_ms = -1; };",
              "ledger.pg_timeout_ms: -1 is out of range 100..600000");
    refuse_pg("user=certforge\"; };", "user=certforge\"; pg_timeout_ms = \"5s\"; };",
              "ledger.pg_timeout_ms: expected an integer");
    refuse_pg("user=certforge\"; };", "user=certforge\"; pg_timeout_ms = 1000; };",
              "test.conf:32: ledger.pg_timeout_ms: 1000 must be longer than busy_timeout_ms "
              "(1000): a lock wait would be taken for a server that does not answer");
    refuse_pg("user=certforge\"; };",
              "user=certforge\"; busy_timeout_ms = 2000; pg_timeout_ms = 1500; };",
              "ledger.pg_timeout_ms: 1500 must be longer than busy_timeout_ms (2000)");
}

static void test_parse_errors(void)
{
    cfg_config *c = NULL;
    CU_ASSERT_EQUAL(load_text("tokens = ( { name = \"a\"; name = \"b\"; } );\n", &c), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(errbuf, "test.conf:1: "));
    CU_ASSERT_EQUAL(load_text("a = 1;\n\n b = ;\n", &c), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(errbuf, "test.conf:3: syntax error"));
    CU_ASSERT_EQUAL(load_text("", &c), -1);
    CU_ASSERT_STRING_EQUAL(errbuf, "test.conf: (top level): missing required setting 'tokens'");
    CU_ASSERT_EQUAL(load_text("# x\n  @include \"/etc/passwd\"\n", &c), -1);
    CU_ASSERT_STRING_EQUAL(errbuf, "test.conf:2: @include is not allowed here");
    CU_ASSERT_PTR_NULL(c);
}

/* ------------------------------------------------------------- reload */

/* cfg_restart_diff(base_conf, base_conf edited): 0 when the edit is
 * reloadable, else refused naming the setting (and its line). */
static void restart_diff(const char *from, const char *to, const char *want)
{
    char full[sizeof(base_conf) + 600];
    snprintf(full, sizeof(full), "%s%s", base_conf,
             "server = { socket = \"/run/cf.sock\"; };\n"
             "grants = ( { uid = 1000; profiles = [\"nf\"]; ops = [\"issue\"]; } );\n"
             "ledger = { backend = \"sqlite\"; path = \"l.db\"; };\n"
             "crl = { dir = \"/var/crl\"; interval = \"1h\"; validity = \"1d\"; };\n");
    char *t = sub(full, from, to);
    cfg_config *o = NULL, *n = NULL;
    CU_ASSERT_EQUAL_FATAL(load_text(full, &o), 0);
    if (load_text(t, &n) != 0) {
        fprintf(stderr, "\n  edit '%s' -> '%s' does not load: %s\n", from, to, errbuf);
        CU_FAIL("edited config does not load");
        goto out;
    }
    char err[512] = "";
    int rc = cfg_restart_diff(o, n, err, sizeof(err));
    if (!want) {
        CU_ASSERT_EQUAL(rc, 0);
        if (rc != 0)
            fprintf(stderr, "\n  edit '%s' -> '%s': refused: %s\n", from, to, err);
    } else {
        CU_ASSERT_EQUAL(rc, -1);
        if (!strstr(err, want)) {
            fprintf(stderr, "\n  edit '%s' -> '%s'\n  got:  %s\n  want: %s\n", from, to, err, want);
            CU_FAIL("refusal lacks the expected text");
        }
    }
out:
    cfg_free(o);
    cfg_free(n);
    free(t);
}

/* restart_diff on the sharded base (sharded()). */
static void restart_diff_sharded(const char *from, const char *to, const char *want)
{
    char *o_text = sharded(NULL, NULL), *n_text = sharded(from, to);
    cfg_config *o = NULL, *n = NULL;
    CU_ASSERT_EQUAL_FATAL(load_text(o_text, &o), 0);
    if (load_text(n_text, &n) != 0) {
        fprintf(stderr, "\n  edit '%s' -> '%s' does not load: %s\n", from, to, errbuf);
        CU_FAIL("edited config does not load");
    } else {
        char err[512] = "";
        int rc = cfg_restart_diff(o, n, err, sizeof(err));
        CU_ASSERT_EQUAL(rc, want ? -1 : 0);
        if (want && !strstr(err, want)) {
            fprintf(stderr, "\n  edit '%s' -> '%s'\n  got:  %s\n  want: %s\n", from, to, err, want);
            CU_FAIL("refusal lacks the expected text");
        }
    }
    cfg_free(o);
    cfg_free(n);
    free(o_text);
    free(n_text);
}

static void test_restart_diff(void)
{
    /* reloadable */
    restart_diff("log = { level = \"info\"; };", "log = { level = \"debug\"; };", NULL);
    restart_diff("profiles = [\"nf\"]", "profiles = [\"nf\", \"sepp\"]", NULL);
    restart_diff("uid = 1000;", "gid = 27;", NULL);
    restart_diff("hash = \"sha256\";", "hash = \"sha384\";", NULL);
    restart_diff("interval = \"1h\"; validity = \"1d\";",
                 "interval = \"2h\"; validity = \"2d\"; revoke_delay = \"1m\";", NULL);
    restart_diff("  { name = \"star\";", "  { name = \"star2\";", NULL);
    /* restart only: refused by name, with the line of the section */
    restart_diff("socket = \"/run/cf.sock\";", "socket = \"/run/cf2.sock\";",
                 "test.conf:32: server.socket changed: restart needed");
    restart_diff("socket = \"/run/cf.sock\";", "socket = \"/run/cf.sock\"; max_inflight = 9;",
                 "test.conf:32: server.max_inflight changed: restart needed");
    restart_diff("workers = 2;", "workers = 3;",
                 "test.conf: pipeline.workers changed: restart needed");
    restart_diff("batch = 32;", "batch = 16;", "test.conf: pipeline.batch changed");
    restart_diff("1-in-16", "all", "pipeline.verify changed");
    restart_diff("serial_prefix = 0x01;", "serial_prefix = 0x02;",
                 "pipeline.serial_prefix changed");
    restart_diff("pin-source=file:/etc/cf/pin", "pin-source=file:/etc/cf/pin2",
                 "test.conf:1: tokens changed: restart needed");
    restart_diff("sessions = 3;", "sessions = 4;", "test.conf:3: keys changed: restart needed");
    /* issuers on the same keys: reloaded (the engine reads them again) */
    restart_diff("certificate = \"ic-ca.pem\"", "certificate = \"ic-ca2.pem\"", NULL);
    restart_diff("chain = \"chain.pem\"; ", "", NULL);
    restart_diff("path = \"l.db\";", "path = \"l2.db\";", "test.conf:34: ledger changed");
    restart_diff("dir = \"/var/crl\";", "dir = \"/var/crl2\";", "test.conf:35: crl.dir changed");
    restart_diff("crl = { dir = \"/var/crl\"; interval = \"1h\"; validity = \"1d\"; };", "",
                 "crl (section added or removed) changed: restart needed");
    restart_diff("log = { level = \"info\"; };",
                 "log = { level = \"info\"; }; confine = { enabled = false; };",
                 "confine changed: restart needed");
    restart_diff("log = { level = \"info\"; };",
                 "log = { level = \"info\"; }; metrics = { listen = \"127.0.0.1:9464\"; };",
                 "metrics.listen changed: restart needed");
    /* CRL shards: the count re-maps certificates, the template is the IDPs' */
    restart_diff_sharded("crl_shards = 4;", "crl_shards = 8;",
                         "test.conf:5: issuer 'nf-ca' crl_shards (4 -> 8) changed: restart needed");
    restart_diff_sharded("/nf-ca/{shard}.crl", "/nf-ca-{shard}.crl",
                         "test.conf:5: issuer 'nf-ca' crl_dp changed: restart needed");
    restart_diff_sharded("level = \"info\"", "level = \"debug\"", NULL);
}

int main(int argc, char **argv)
{
    static const cf_test tests[] = {
        {"crl section", test_crl_section},
        {"crl shards", test_crl_shards},
        {"confine section", test_confine_section},
        {"metrics section (loopback only)", test_metrics_section},
        {"full config", test_full_config},
        {"minimal config and defaults", test_minimal_defaults},
        {"pipeline values", test_pipeline_values},
        {"durations", test_duration},
        {"docs/examples/certforged.conf", test_example_file},
        {"file loading", test_file_errors},
        {"unknown settings", test_unknown_settings},
        {"type errors", test_type_errors},
        {"missing settings", test_missing},
        {"value checks", test_values},
        {"parse errors", test_parse_errors},
        {"server and grants", test_server_grants},
        {"server and grants refused", test_server_grants_refused},
        {"ledger", test_ledger},
        {"ledger refused", test_ledger_refused},
        {"ledger: postgresql", test_ledger_pg},
        {"ledger: postgresql refused (conninfo, secrets)", test_ledger_pg_refused},
        {"reload: restart-only settings", test_restart_diff},
    };
    static const cf_suite suites[] = {CF_SUITE("config", NULL, NULL, tests)};
    return CF_TEST_MAIN(argc, argv, suites);
}
