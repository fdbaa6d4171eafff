/* certforged's SIGHUP reload, end to end (docs/certforged.md, RELOAD): the
 * built daemon on a SoftHSM token, clients through libcertforge, the config
 * file rewritten and SIGHUP sent to the daemon's PID.
 *
 *   grants: a peer refused UNAUTHORIZED is granted by a reload and issues
 *   on the same connection (not dropped) and on a new one; a grant removed
 *   by a reload refuses again on the same connection.
 *   profiles: a profile added by a reload issues (its subject is the new
 *   profile's), on a connection opened before the reload.
 *   refused: a syntax error and a bad reference are refused with FILE:LINE,
 *   the old generation keeps serving, STATUS says refused; restart-only
 *   settings (pipeline.workers, server.socket, keys, an issuer on a key
 *   certforged does not hold) are refused by name; an issuer whose
 *   certificate is another key's is refused with FILE:LINE.
 *   issuers: a renewed issuer certificate (same key, made by certforge ca
 *   init-root --replace-cert), under a new path and then overwritten in
 *   place: certificates issued afterwards chain to it (openssl verify with
 *   the new CA file, not the old), the CRL publisher's next CRL is issued
 *   by it; an issuer added on an existing key, with a profile, issues and
 *   gets its CRL, and is removed again.
 *   log level and CRL validity take effect.
 *   concurrency: issuance on five connections while SIGHUPs switch between
 *   two configs (the second with a renewed issuer certificate and an added
 *   issuer): every request answered OK (or UNAUTHORIZED for the profile one
 *   of the two configs does not grant), the daemon stays up.
 */
#include "cf_test.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cf_daemon.h"

#define PIN "rl-4321"

static dproc D;
static char RCONF[300], CRL_DIR[300], GRANT_ALL[600], GRANT_NF3[600], PROF_NF3[600];
/* certificates for the token's key "ca" other than CA_PEM (an added
 * issuer's, the load test's renewal), and one of another key ("other") */
static char CA2_PEM[300], CA_LOAD[300], OTHER_PEM[300], PROF_NF3_CA2[600];
static char ISS_CA2[1500], ISS_LOAD[1500];

/* A self-signed CA certificate for the token's key `label`, made by the
 * certforge CLI (--replace-cert: the key's certificate object on the
 * token is replaced; --force: `out` too). */
static int make_ca(const char *label, const char *cn, const char *out, bool force)
{
    char uri[1024];
    cf_softhsm_uri(&H, NULL, uri, sizeof(uri));
    return cf_sh("'%s' ca init-root --token '%s' --key 'pkcs11:token=%s;object=%s' --subject "
                 "'/C=FI/O=5gc.mnc001.mcc001.3gppnetwork.org/CN=%s' --out '%s' --replace-cert%s "
                 ">/dev/null",
                 CLI, uri, DH_TOKEN, label, cn, out, force ? " --force" : "");
}

static int suite_init(void)
{
    int rc = dh_suite_init("cf-reload", PIN, "Reload Test CA");
    if (rc != 0)
        return rc;
    snprintf(RCONF, sizeof(RCONF), "%s/reload.conf", H.dir);
    snprintf(CRL_DIR, sizeof(CRL_DIR), "%s/crl", H.dir);
    if (mkdir(CRL_DIR, 0755) != 0)
        return -1;
    snprintf(GRANT_ALL, sizeof(GRANT_ALL),
             "( { uid = %u; profiles = [\"nf\"]; ops = [\"issue\", \"status\", \"keys\", "
             "\"crl\"]; } )",
             (unsigned)getuid());
    snprintf(GRANT_NF3, sizeof(GRANT_NF3),
             "( { uid = %u; profiles = [\"nf\", \"nf3\"]; ops = [\"issue\", \"status\"]; } )",
             (unsigned)getuid());
    snprintf(
        PROF_NF3, sizeof(PROF_NF3),
        ",\n  { name = \"nf3\"; type = \"nf\"; issuer = \"ca\";\n"
        "    subject = { C = \"SE\"; O = \"5gc.mnc002.mcc240.3gppnetwork.org\"; };\n"
        "    eku = [\"serverAuth\", \"clientAuth\"]; crl_dp = \"http://crl.example.org/nf3.crl\"; "
        "}");
    snprintf(
        PROF_NF3_CA2, sizeof(PROF_NF3_CA2),
        ",\n  { name = \"nf3\"; type = \"nf\"; issuer = \"ca2\";\n"
        "    subject = { C = \"SE\"; O = \"5gc.mnc002.mcc240.3gppnetwork.org\"; };\n"
        "    eku = [\"serverAuth\", \"clientAuth\"]; crl_dp = \"http://crl.example.org/ca2.crl\"; "
        "}");
    snprintf(CA2_PEM, sizeof(CA2_PEM), "%s/ca2.pem", H.dir);
    snprintf(CA_LOAD, sizeof(CA_LOAD), "%s/ca-load.pem", H.dir);
    snprintf(OTHER_PEM, sizeof(OTHER_PEM), "%s/other.pem", H.dir);
    snprintf(ISS_CA2, sizeof(ISS_CA2),
             "( { name = \"ca\"; key = \"ca\"; certificate = \"%s\"; },\n"
             "  { name = \"ca2\"; key = \"ca\"; certificate = \"%s\"; } )",
             CA_PEM, CA2_PEM);
    snprintf(ISS_LOAD, sizeof(ISS_LOAD),
             "( { name = \"ca\"; key = \"ca\"; certificate = \"%s\"; },\n"
             "  { name = \"ca2\"; key = \"ca\"; certificate = \"%s\"; } )",
             CA_LOAD, CA2_PEM);
    char uri[1024];
    cf_softhsm_uri(&H, NULL, uri, sizeof(uri));
    if (make_ca("ca", "Reload Test CA2", CA2_PEM, false) != 0 ||
        make_ca("ca", "Reload Test CA L", CA_LOAD, false) != 0 ||
        cf_sh("'%s' keys generate --token '%s' --type ec-p256 --label other >/dev/null", CLI,
              uri) != 0 ||
        make_ca("other", "Reload Other CA", OTHER_PEM, false) != 0)
        return cf_test_setup_failed("certforge ca init-root: no second CA certificate");
    return 0;
}

static int suite_clean(void)
{
    if (D.pid > 0)
        daemon_stop(&D, SIGKILL, 1000);
    return dh_suite_clean();
}

static void start(const conf_opts *o)
{
    write_conf(RCONF, o);
    CU_ASSERT_FATAL(daemon_start(&D, RCONF, NULL) == 0);
}

/* SIGHUP, then the log line of the outcome (bounded). */
static bool hup_expect(const char *needle)
{
    kill(D.pid, SIGHUP);
    bool ok = log_wait(D.log, needle, 10000);
    if (!ok) {
        char *t = slurp(D.log);
        fprintf(stderr, "\nno '%s' in the log:\n%s\n", needle, t ? t : "(none)");
        free(t);
    }
    return ok;
}

static bool hup_reloaded(unsigned gen)
{
    char n[64];
    snprintf(n, sizeof(n), "event=reloaded generation=%u ", gen);
    return hup_expect(n);
}

/* One ISSUE on c; an issued certificate is checked against the CA. */
static cf_status issue(cf_client *c, const char *profile, int item, X509 **cert)
{
    cf_issue_req req;
    cf_response r;
    fill_req(&req, &POOL.items[item % (int)POOL.n], profile);
    if (cf_issue_one(c, &req, 10000, &r) != 0)
        return CF_ST__MAX;
    if (r.status == CF_ST_OK) {
        CU_ASSERT_EQUAL(verify_cert(r.cert.p, r.cert.len), 0);
        if (cert) {
            const unsigned char *p = r.cert.p;
            *cert = d2i_X509(NULL, &p, (long)r.cert.len);
        }
    }
    return r.status;
}

static void status_kv(cf_client *c, const char *key, char *v, size_t len)
{
    cf_response r;
    v[0] = 0;
    CU_ASSERT_FATAL(cf_client_status(c, 5000, &r) == 0 && r.status == CF_ST_OK);
    CU_ASSERT_PTR_NOT_NULL(kv_get(&r, key, v, len));
}

static void expect_generation(cf_client *c, const char *gen, const char *result)
{
    char v[64];
    status_kv(c, "config_generation", v, sizeof(v));
    CU_ASSERT_STRING_EQUAL(v, gen);
    status_kv(c, "config_reload", v, sizeof(v));
    CU_ASSERT_STRING_EQUAL(v, result);
}

/* The line of the first occurrence of `what` in the config file (1-based). */
static int conf_line(const char *what)
{
    char *t = slurp(RCONF);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    char *p = strstr(t, what);
    int line = 0;
    if (p) {
        line = 1;
        for (char *q = t; q < p; q++)
            line += *q == '\n';
    }
    free(t);
    return line;
}

static void test_grant_added(void)
{
    conf_opts o = {.grants = "()"};
    start(&o);
    CU_ASSERT_TRUE(log_has(D.log, "event=no_grants"));
    cf_client *c = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(issue(c, "nf", 0, NULL), CF_ST_UNAUTHORIZED);

    o.grants = GRANT_ALL;
    write_conf(RCONF, &o);
    char want[700];
    snprintf(want, sizeof(want),
             "event=reloaded generation=2 grants=1 profiles=2 issuers=1 issuers_changed=0 "
             "msg=\"config reloaded from %s: 1 grants, 2 profiles, 1 issuers (0 changed), "
             "log.level=info, crl=none; generation 2\"",
             RCONF);
    CU_ASSERT_FATAL(hup_expect(want));
    /* the same connection, kept open across the reload, now issues */
    CU_ASSERT_EQUAL(issue(c, "nf", 1, NULL), CF_ST_OK);
    cf_client *c2 = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c2);
    CU_ASSERT_EQUAL(issue(c2, "nf", 2, NULL), CF_ST_OK);
    expect_generation(c, "2", "ok");
    char at[64];
    status_kv(c, "config_reload_at", at, sizeof(at));
    CU_ASSERT_EQUAL(strlen(at), 20);
    CU_ASSERT_EQUAL(at[10], 'T');
    CU_ASSERT_EQUAL(at[19], 'Z');

    /* and taken away again: the same connection is refused */
    o.grants = "()";
    write_conf(RCONF, &o);
    CU_ASSERT_FATAL(hup_reloaded(3));
    CU_ASSERT_EQUAL(issue(c, "nf", 3, NULL), CF_ST_UNAUTHORIZED);
    CU_ASSERT_EQUAL(log_count(D.log, "event=conn_close"), 0);
    cf_client_close(c);
    cf_client_close(c2);
    daemon_stop_clean(&D);
}

static void test_profile_added(void)
{
    conf_opts o = {0};
    start(&o);
    cf_client *c = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(issue(c, "nf", 0, NULL), CF_ST_OK);
    /* not granted (and not there): the same refusal either way */
    CU_ASSERT_EQUAL(issue(c, "nf3", 1, NULL), CF_ST_UNAUTHORIZED);

    o.extra_profiles = PROF_NF3;
    o.grants = GRANT_NF3;
    write_conf(RCONF, &o);
    CU_ASSERT_FATAL(hup_reloaded(2));
    X509 *x = NULL;
    CU_ASSERT_EQUAL_FATAL(issue(c, "nf3", 2, &x), CF_ST_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    /* the new profile's subject, not nf's */
    char o_name[128] = "", c_name[8] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_organizationName, o_name,
                              sizeof(o_name));
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_countryName, c_name, sizeof(c_name));
    CU_ASSERT_STRING_EQUAL(o_name, "5gc.mnc002.mcc240.3gppnetwork.org");
    CU_ASSERT_STRING_EQUAL(c_name, "SE");
    X509_free(x);
    CU_ASSERT_EQUAL(issue(c, "nf", 3, NULL), CF_ST_OK);
    CU_ASSERT_EQUAL(log_count(D.log, "event=conn_close"), 0);
    cf_client_close(c);
    daemon_stop_clean(&D);
}

static void test_refused(void)
{
    conf_opts o = {0};
    start(&o);
    cf_client *c = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(issue(c, "nf", 0, NULL), CF_ST_OK);
    char want[1400];

    /* a syntax error: FILE:LINE, generation 1 kept */
    FILE *f = fopen(RCONF, "a");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("this is = = not libconfig\n", f);
    fclose(f);
    snprintf(want, sizeof(want),
             "event=reload_refused generation=1 msg=\"config reload refused: %s:%d: ", RCONF,
             conf_line("this is = ="));
    CU_ASSERT_FATAL(hup_expect(want));
    CU_ASSERT_TRUE(log_has(D.log, "; keeping generation 1\""));
    CU_ASSERT_EQUAL(issue(c, "nf", 1, NULL), CF_ST_OK);
    expect_generation(c, "1", "refused");

    /* a grant naming a profile that does not exist: the loader's message */
    conf_opts bad = {.grants = "( { uid = 0; profiles = [\"nope\"]; ops = [\"issue\"]; } )"};
    write_conf(RCONF, &bad);
    snprintf(want, sizeof(want),
             "config reload refused: %s:%d: grants[0].profiles[0]: no profile named 'nope'; "
             "keeping generation 1",
             RCONF, conf_line("grants = "));
    kill(D.pid, SIGHUP);
    if (!log_wait(D.log, want, 10000)) {
        char *t = slurp(D.log);
        fprintf(stderr, "\nwant '%s' in:\n%s\n", want, t ? t : "");
        free(t);
        CU_FAIL("bad grant not refused with its line");
    }

    /* restart-only settings, each refused by name */
    conf_opts w = {.pipeline = "workers = 3; queue = 4096; batch = 16;"};
    write_conf(RCONF, &w);
    snprintf(want, sizeof(want),
             "msg=\"config reload refused: %s: pipeline.workers changed: restart needed; "
             "keeping generation 1\"",
             RCONF);
    CU_ASSERT(hup_expect(want));

    char sock2[120];
    snprintf(sock2, sizeof(sock2), "%s2", SOCK);
    conf_opts s = {.socket = sock2};
    write_conf(RCONF, &s);
    snprintf(want, sizeof(want),
             "config reload refused: %s:%d: server.socket changed: restart needed; keeping "
             "generation 1",
             RCONF, conf_line("server = {"));
    CU_ASSERT(hup_expect(want));

    conf_opts k = {.extra_keys =
                       ", { name = \"k2\"; token = \"ca\"; uri = \"pkcs11:object=k2\"; }"};
    write_conf(RCONF, &k);
    snprintf(want, sizeof(want), "%s:%d: keys changed: restart needed; keeping generation 1", RCONF,
             conf_line("keys = ("));
    CU_ASSERT(hup_expect(want));

    /* an issuer whose certificate is another key's: FILE:LINE of the
     * issuer, the running issuers kept */
    char iss_other[1000];
    snprintf(iss_other, sizeof(iss_other),
             "( { name = \"ca\"; key = \"ca\"; certificate = \"%s\"; } )", OTHER_PEM);
    conf_opts bc = {.issuers = iss_other};
    write_conf(RCONF, &bc);
    snprintf(want, sizeof(want),
             "config reload refused: %s:%d: issuer 'ca': certificate %s does not match key "
             "'ca' (its public key is another); keeping generation 1",
             RCONF, conf_line("issuers = ("), OTHER_PEM);
    CU_ASSERT(hup_expect(want));
    CU_ASSERT_EQUAL(issue(c, "nf", 3, NULL), CF_ST_OK); /* verified against CA */

    /* an issuer on a key certforged does not hold: keys are restart-only */
    char iss_newkey[1000];
    snprintf(iss_newkey, sizeof(iss_newkey),
             "( { name = \"ca\"; key = \"ca\"; certificate = \"%s\"; },\n"
             "  { name = \"other\"; key = \"other\"; certificate = \"%s\"; } )",
             CA_PEM, OTHER_PEM);
    conf_opts nk = {.issuers = iss_newkey,
                    .extra_keys = ", { name = \"other\"; token = \"ca\"; uri = "
                                  "\"pkcs11:object=other\"; }"};
    write_conf(RCONF, &nk);
    snprintf(want, sizeof(want), "%s:%d: keys changed: restart needed; keeping generation 1", RCONF,
             conf_line("keys = ("));
    CU_ASSERT(hup_expect(want));

    /* still generation 1 on the same connection; a good file then applies
     * as generation 2 (refusals use no number) */
    CU_ASSERT_EQUAL(issue(c, "nf", 2, NULL), CF_ST_OK);
    expect_generation(c, "1", "refused");
    write_conf(RCONF, &o);
    CU_ASSERT(hup_reloaded(2));
    expect_generation(c, "2", "ok");
    CU_ASSERT_EQUAL(log_count(D.log, "event=reload_refused"), 7);
    cf_client_close(c);
    daemon_stop_clean(&D);
}

static void test_log_level(void)
{
    conf_opts o = {0};
    start(&o);
    cf_client *c = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(issue(c, "nf", 0, NULL), CF_ST_OK);
    CU_ASSERT_FALSE(log_has(D.log, "event=issued")); /* debug */

    o.extra = "log = { level = \"debug\"; };";
    write_conf(RCONF, &o);
    CU_ASSERT_FATAL(hup_reloaded(2));
    CU_ASSERT_TRUE(log_has(D.log, "log.level=debug"));
    CU_ASSERT_EQUAL(issue(c, "nf", 1, NULL), CF_ST_OK);
    CU_ASSERT_TRUE(log_wait(D.log, "level=debug event=issued", 5000));

    /* warning: the reload line still shows (written at the old level), the
     * info lines after it do not */
    o.extra = "log = { level = \"warning\"; };";
    write_conf(RCONF, &o);
    CU_ASSERT_FATAL(hup_reloaded(3));
    int opened = log_count(D.log, "event=conn_open");
    cf_client *c2 = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c2);
    CU_ASSERT_EQUAL(issue(c2, "nf2", 2, NULL), CF_ST_UNAUTHORIZED);
    /* the refusal is a warning: once it is in the log, so would be the
     * connection's info line before it */
    CU_ASSERT_TRUE(log_wait(D.log, "level=warning event=unauthorized", 5000));
    CU_ASSERT_EQUAL(log_count(D.log, "event=conn_open"), opened);
    /* back to info, for the stop line daemon_stop_clean looks for */
    o.extra = NULL;
    write_conf(RCONF, &o);
    CU_ASSERT(hup_reloaded(4));
    cf_client_close(c2);
    cf_client_close(c);
    daemon_stop_clean(&D);
}

/* crl.validity reloaded: a CRL made afterwards (CRL --new) has the new
 * nextUpdate - thisUpdate. */
static int crl_validity(cf_client *c)
{
    cf_response r;
    if (cf_crl_one(c, (cf_str){"ca", 2}, 1, 10000, &r) != 0 || r.status != CF_ST_OK)
        return -1;
    const unsigned char *p = r.crl.p;
    X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)r.crl.len);
    int day = 0, sec = -1;
    if (crl)
        ASN1_TIME_diff(&day, &sec, X509_CRL_get0_lastUpdate(crl), X509_CRL_get0_nextUpdate(crl));
    X509_CRL_free(crl);
    return sec < 0 ? -1 : day * 86400 + sec;
}

static void test_crl_settings(void)
{
    char extra[600];
    snprintf(extra, sizeof(extra),
             "crl = { dir = \"%s\"; interval = \"60s\"; validity = \"1h\"; revoke_delay = "
             "\"1s\"; };",
             CRL_DIR);
    conf_opts o = {.extra = extra, .grants = GRANT_ALL};
    start(&o);
    cf_client *c = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(crl_validity(c), 3600);
    snprintf(extra, sizeof(extra),
             "crl = { dir = \"%s\"; interval = \"2m\"; validity = \"2h\"; revoke_delay = "
             "\"5s\"; };",
             CRL_DIR);
    write_conf(RCONF, &o);
    CU_ASSERT_FATAL(hup_reloaded(2));
    CU_ASSERT_TRUE(
        log_has(D.log, "crl.interval=120s crl.validity=7200s crl.revoke_delay=5s; generation 2"));
    CU_ASSERT_EQUAL(crl_validity(c), 7200);
    /* the folder is left writable by confinement at start: restart-only */
    snprintf(extra, sizeof(extra), "crl = { dir = \"%s\"; interval = \"2m\"; validity = \"2h\"; };",
             H.dir);
    write_conf(RCONF, &o);
    CU_ASSERT(hup_expect("crl.dir changed: restart needed; keeping generation 2"));
    cf_client_close(c);
    daemon_stop_clean(&D);
}

/* ------------------------------------------------------------ issuers */

static X509 *read_pem(const char *path)
{
    FILE *f = fopen(path, "r");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    return x;
}

/* One ISSUE on c; OK: the certificate written to `out` (PEM), and checked
 * to come with `ca` first in its chain. */
static cf_status issue_under(cf_client *c, const char *profile, int item, const X509 *ca,
                             const char *out)
{
    cf_issue_req req;
    cf_response r;
    fill_req(&req, &POOL.items[item % (int)POOL.n], profile);
    if (cf_issue_one(c, &req, 10000, &r) != 0)
        return CF_ST__MAX;
    if (r.status != CF_ST_OK)
        return r.status;
    unsigned char *ca_der = NULL;
    int ca_len = i2d_X509(ca, &ca_der);
    CU_ASSERT_FATAL(ca_len > 0);
    CU_ASSERT_FATAL(r.n_chain >= 1);
    CU_ASSERT_EQUAL(r.chain[0].len, (size_t)ca_len);
    CU_ASSERT(r.chain[0].len == (size_t)ca_len &&
              memcmp(r.chain[0].p, ca_der, (size_t)ca_len) == 0);
    OPENSSL_free(ca_der);
    const unsigned char *p = r.cert.p;
    X509 *x = d2i_X509(NULL, &p, (long)r.cert.len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    FILE *f = fopen(out, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT(PEM_write_X509(f, x) == 1);
    fclose(f);
    X509_free(x);
    return r.status;
}

/* `openssl verify` of a certificate file against one CA file: its exit status */
static int openssl_verify(const char *ca_file, const char *cert_file)
{
    return cf_sh("openssl verify -CAfile '%s' '%s' >/dev/null 2>&1", ca_file, cert_file);
}

/* The published CRL dir/NAME.crl, once it is issued by `ca`, its
 * signature verifies with ca's key and (revoked not NULL) it lists that
 * certificate (bounded: 10 s). */
static bool crl_lists(const char *name, const X509 *ca, X509 *revoked)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/%s.crl", CRL_DIR, name);
    for (int i = 0; i < 200; i++) {
        FILE *f = fopen(path, "rb");
        X509_CRL *crl = f ? d2i_X509_CRL_fp(f, NULL) : NULL;
        if (f)
            fclose(f);
        X509_REVOKED *rv = NULL;
        bool ok = crl && X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)) == 0 &&
                  X509_CRL_verify(crl, X509_get0_pubkey(ca)) == 1 &&
                  (!revoked || X509_CRL_get0_by_cert(crl, &rv, revoked) == 1);
        X509_CRL_free(crl);
        if (ok)
            return true;
        usleep(50000);
    }
    fprintf(stderr, "\nno %s issued by the expected CA%s\n", path,
            revoked ? " listing the revoked certificate" : "");
    return false;
}

static bool crl_published_by(const char *name, const X509 *ca)
{
    return crl_lists(name, ca, NULL);
}

/* The CRL op's latest CRL of issuer `name` (not a fresh one) is issued by
 * `ca` and verifies with its key: two issuers on one key keep their own
 * CRLs in the ledger. */
static bool crl_op_issued_by(cf_client *c, const char *name, const X509 *ca)
{
    cf_response r;
    if (cf_crl_one(c, (cf_str){name, strlen(name)}, 0, 10000, &r) != 0 || r.status != CF_ST_OK) {
        fprintf(stderr, "\nCRL op for %s failed\n", name);
        return false;
    }
    const unsigned char *p = r.crl.p;
    X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)r.crl.len);
    bool ok = crl && X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)) == 0 &&
              X509_CRL_verify(crl, X509_get0_pubkey(ca)) == 1;
    if (!ok)
        fprintf(stderr, "\nthe CRL op's CRL of %s is not issued by its CA\n", name);
    X509_CRL_free(crl);
    return ok;
}

static void crl_section(char *buf, size_t len)
{
    snprintf(
        buf, len,
        "crl = { dir = \"%s\"; interval = \"1h\"; validity = \"1d\"; revoke_delay = \"1s\"; };",
        CRL_DIR);
}

/* The issuing CA's certificate renewed on the same key: under a new path,
 * then overwritten in place; no restart. */
static void test_issuer_renewed(void)
{
    char extra[600], cert[400], g2[400], iss[1000], want[600];
    crl_section(extra, sizeof(extra));
    snprintf(cert, sizeof(cert), "%s/renewed-leaf.pem", H.dir);
    snprintf(g2, sizeof(g2), "%s/ca-g2.pem", H.dir);
    conf_opts o = {.extra = extra, .grants = GRANT_ALL};
    start(&o);
    cf_client *c = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL_FATAL(issue_under(c, "nf", 0, CA, cert), CF_ST_OK);
    CU_ASSERT_EQUAL(openssl_verify(CA_PEM, cert), 0);

    /* renewed: a new certificate (new name) for the same key, a new file */
    CU_ASSERT_EQUAL_FATAL(make_ca("ca", "Reload Test CA G2", g2, false), 0);
    X509 *x2 = read_pem(g2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x2);
    snprintf(iss, sizeof(iss), "( { name = \"ca\"; key = \"ca\"; certificate = \"%s\"; } )", g2);
    o.issuers = iss;
    write_conf(RCONF, &o);
    CU_ASSERT_FATAL(hup_expect("event=reloaded generation=2 grants=1 profiles=2 issuers=1 "
                               "issuers_changed=1 "));
    CU_ASSERT_TRUE(log_has(D.log, "event=issuer_reloaded issuer=ca change=certificate key=ca "));
    snprintf(want, sizeof(want),
             "config reloaded from %s: 1 grants, 2 profiles, 1 issuers (1 "
             "changed), ",
             RCONF);
    CU_ASSERT_TRUE(log_has(D.log, want));
    /* on the connection opened before the reload: chained to G2 */
    CU_ASSERT_EQUAL_FATAL(issue_under(c, "nf", 1, x2, cert), CF_ST_OK);
    CU_ASSERT_EQUAL(openssl_verify(g2, cert), 0);
    CU_ASSERT_NOT_EQUAL(openssl_verify(CA_PEM, cert), 0);
    /* the CRL publisher moved to the new issuers: a CRL by G2 at once */
    CU_ASSERT(crl_published_by("ca", x2));

    /* renewed again, the same path overwritten: re-read on SIGHUP */
    CU_ASSERT_EQUAL_FATAL(make_ca("ca", "Reload Test CA G3", g2, true), 0);
    X509 *x3 = read_pem(g2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x3);
    CU_ASSERT_FATAL(hup_expect("event=reloaded generation=3 grants=1 profiles=2 issuers=1 "
                               "issuers_changed=1 "));
    CU_ASSERT_EQUAL_FATAL(issue_under(c, "nf", 2, x3, cert), CF_ST_OK);
    CU_ASSERT_EQUAL(openssl_verify(g2, cert), 0); /* the file now holds G3 */
    CU_ASSERT(crl_published_by("ca", x3));
    /* nothing changed: said so */
    CU_ASSERT_FATAL(hup_expect("event=reloaded generation=4 grants=1 profiles=2 issuers=1 "
                               "issuers_changed=0 "));
    CU_ASSERT_EQUAL(log_count(D.log, "event=issuer_reloaded"), 2);
    CU_ASSERT_EQUAL(log_count(D.log, "event=conn_close"), 0);
    X509_free(x2);
    X509_free(x3);
    cf_client_close(c);
    daemon_stop_clean(&D);
}

/* An issuer added on a key certforged holds, with a profile that uses it;
 * then removed again. */
static void test_issuer_added(void)
{
    char extra[600], cert[400];
    crl_section(extra, sizeof(extra));
    snprintf(cert, sizeof(cert), "%s/added-leaf.pem", H.dir);
    conf_opts o = {.extra = extra};
    start(&o);
    cf_client *c = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(issue(c, "nf", 0, NULL), CF_ST_OK);
    X509 *ca2 = read_pem(CA2_PEM);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ca2);

    char grant[600];
    snprintf(grant, sizeof(grant),
             "( { uid = %u; profiles = [\"nf\", \"nf3\"]; ops = [\"issue\", \"status\", "
             "\"revoke\", \"crl\"]; } )",
             (unsigned)getuid());
    conf_opts b = {
        .extra = extra, .issuers = ISS_CA2, .extra_profiles = PROF_NF3_CA2, .grants = grant};
    write_conf(RCONF, &b);
    CU_ASSERT_FATAL(hup_expect("event=reloaded generation=2 grants=1 profiles=3 issuers=2 "
                               "issuers_changed=1 "));
    CU_ASSERT_TRUE(log_has(D.log, "event=issuer_reloaded issuer=ca2 change=added key=ca "));
    CU_ASSERT_EQUAL_FATAL(issue_under(c, "nf3", 1, ca2, cert), CF_ST_OK);
    CU_ASSERT_EQUAL(openssl_verify(CA2_PEM, cert), 0);
    CU_ASSERT_NOT_EQUAL(openssl_verify(CA_PEM, cert), 0);
    CU_ASSERT_EQUAL(issue(c, "nf", 2, NULL), CF_ST_OK); /* "ca" still issues */
    CU_ASSERT(crl_published_by("ca2", ca2));
    /* a revocation of the added issuer's certificate: its CRL remade
     * within revoke_delay, listing it */
    X509 *leaf = read_pem(cert);
    CU_ASSERT_PTR_NOT_NULL_FATAL(leaf);
    const ASN1_INTEGER *sn = X509_get0_serialNumber(leaf);
    cf_response r;
    CU_ASSERT_EQUAL_FATAL(
        cf_revoke_one(c, sn->data, (size_t)sn->length, 1, (cf_str){"test_reload", 11}, 10000, &r),
        0);
    CU_ASSERT_EQUAL(r.status, CF_ST_OK);
    CU_ASSERT(crl_lists("ca2", ca2, leaf));
    X509_free(leaf);
    /* ca2's CRL was made last: the CRL op still answers each issuer its own */
    X509 *ca1 = read_pem(CA_PEM);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ca1);
    CU_ASSERT(crl_op_issued_by(c, "ca", ca1));
    CU_ASSERT(crl_op_issued_by(c, "ca2", ca2));
    X509_free(ca1);

    /* removed again (its profile with it) */
    write_conf(RCONF, &o);
    CU_ASSERT_FATAL(hup_expect("event=reloaded generation=3 grants=1 profiles=2 issuers=1 "
                               "issuers_changed=1 "));
    CU_ASSERT_TRUE(log_has(D.log, "event=issuer_reloaded issuer=ca2 change=removed key=ca"));
    CU_ASSERT_EQUAL(issue(c, "nf3", 3, NULL), CF_ST_UNAUTHORIZED);
    CU_ASSERT_EQUAL(issue(c, "nf", 4, NULL), CF_ST_OK);
    X509_free(ca2);
    cf_client_close(c);
    daemon_stop_clean(&D);
}

/* ------------------------------------------------------------ concurrency */

typedef struct load_arg {
    int idx, n;
    const char *profile;
    atomic_int *running;
    int ok, unauthorized;
    char err[256];
} load_arg;

/* n ISSUE requests pipelined on one connection. */
static void *load_thread(void *arg)
{
    load_arg *a = arg;
    cf_client *c = client();
    int sent = 0, got = 0;
    if (!c) {
        snprintf(a->err, sizeof(a->err), "connect failed");
        goto out;
    }
    while (got < a->n) {
        while (sent < a->n && sent - got < 64) {
            cf_issue_req req;
            /* "mix": nf and nf3 in turn (an OK between refusals keeps the
             * connection clear of the refusal penalty) */
            const char *prof = strcmp(a->profile, "mix") != 0 ? a->profile
                               : sent % 2                     ? "nf3"
                                                              : "nf";
            fill_req(&req, &POOL.items[(size_t)(a->idx * 11 + sent) % POOL.n], prof);
            uint64_t id;
            int r = cf_client_submit_issue(c, &req, &id);
            if (r == 1)
                break;
            if (r != 0) {
                snprintf(a->err, sizeof(a->err), "submit: %s", cf_client_error(c));
                goto out;
            }
            sent++;
        }
        if (cf_client_flush(c, 0) < 0) {
            snprintf(a->err, sizeof(a->err), "flush: %s", cf_client_error(c));
            goto out;
        }
        cf_response r;
        int rc = cf_client_next_response(c, 20000, &r);
        if (rc != 0) {
            snprintf(a->err, sizeof(a->err), "next_response %d: %s", rc, cf_client_error(c));
            goto out;
        }
        got++;
        if (r.status == CF_ST_OK)
            a->ok++;
        else if (r.status == CF_ST_UNAUTHORIZED)
            a->unauthorized++;
        else if (!a->err[0])
            snprintf(a->err, sizeof(a->err), "%s: %.*s", cf_status_name(r.status),
                     (int)r.message.len, r.message.p);
    }
out:
    cf_client_close(c);
    atomic_fetch_sub(a->running, 1);
    return NULL;
}

static void test_reload_under_load(void)
{
    /* A: nf granted, no nf3. B: issuer "ca" renewed (another certificate
     * of its key), issuer "ca2" added with nf3 on it, granted, debug
     * logging. Both publish CRLs: the publisher moves between the sets. */
    char crl[600], extra_b[700];
    crl_section(crl, sizeof(crl));
    snprintf(extra_b, sizeof(extra_b), "%s\nlog = { level = \"debug\"; };", crl);
    conf_opts a = {.server = "io_threads = 2;", .extra = crl};
    conf_opts b = {.server = "io_threads = 2;",
                   .issuers = ISS_LOAD,
                   .extra_profiles = PROF_NF3_CA2,
                   .grants = GRANT_NF3,
                   .extra = extra_b};
    start(&a);
    enum { NT = 5, PER = 400 };
    pthread_t th[NT];
    load_arg la[NT];
    atomic_int running;
    atomic_init(&running, NT);
    for (int i = 0; i < NT; i++) {
        la[i] = (load_arg){
            .idx = i, .n = PER, .profile = i == NT - 1 ? "mix" : "nf", .running = &running};
        CU_ASSERT_FATAL(pthread_create(&th[i], NULL, load_thread, &la[i]) == 0);
    }
    /* reload back and forth for as long as the load runs (at least 4 times) */
    unsigned gen = 1, during = 0;
    while (gen < 5 || atomic_load(&running) > 0) {
        bool loaded = atomic_load(&running) > 0;
        write_conf(RCONF, gen % 2 ? &b : &a);
        if (!hup_reloaded(gen + 1))
            break;
        gen++;
        during += loaded;
        if (gen > 200)
            break;
    }
    for (int i = 0; i < NT; i++)
        pthread_join(th[i], NULL);
    CU_ASSERT_EQUAL(kill(D.pid, 0), 0);
    int ok = 0, unauth = 0;
    for (int i = 0; i < NT; i++) {
        if (la[i].err[0])
            fprintf(stderr, "\nthread %d: %s\n", i, la[i].err);
        CU_ASSERT_STRING_EQUAL(la[i].err, "");
        CU_ASSERT_EQUAL(la[i].ok + la[i].unauthorized, PER);
        if (i < NT - 1) {
            CU_ASSERT_EQUAL(la[i].ok, PER); /* nf: granted by both configs */
        } else {
            CU_ASSERT(la[i].ok >= PER / 2); /* every nf of the mix, nf3 while B was current */
        }
        ok += la[i].ok;
        unauth += la[i].unauthorized;
    }
    fprintf(stderr,
            "\n[reload under load: %u reloads (%u while issuing), %d issued, %d nf3 "
            "refused UNAUTHORIZED]\n",
            gen - 1, during, ok, unauth);
    CU_ASSERT(during >= 1);
    cf_client *c = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    char g[16];
    snprintf(g, sizeof(g), "%u", gen);
    expect_generation(c, g, "ok");
    char v[64];
    status_kv(c, "issued", v, sizeof(v));
    CU_ASSERT_EQUAL(atol(v), ok);
    cf_client_close(c);
    daemon_stop_clean(&D);
}

static void test_no_pin_in_logs(void)
{
    dh_assert_no_pin_in_logs(PIN, 8);
}

int main(int argc, char **argv)
{
    static const cf_test tests[] = {
        {"grant added by a reload, same connection", test_grant_added},
        {"profile added by a reload", test_profile_added},
        {"broken and restart-only configs refused", test_refused},
        {"log level reloaded", test_log_level},
        {"CRL settings reloaded", test_crl_settings},
        {"issuer certificate renewed on the same key", test_issuer_renewed},
        {"issuer added and removed on an existing key", test_issuer_added},
        {"SIGHUPs during issuance", test_reload_under_load},
        {"no PIN in any log", test_no_pin_in_logs},
    };
    static const cf_suite suites[] = {
        CF_SUITE("certforged SIGHUP reload", suite_init, suite_clean, tests),
    };
    return CF_TEST_MAIN(argc, argv, suites);
}
