/* CUnit suite for engine/ledger: schema creation and version, refusal of
 * a newer schema and of a file that is no ledger, a batch recorded
 * atomically (a failing batch leaves nothing), lookups and filters,
 * concurrent writers, and the certificate fields read with engine/der
 * (checked against OpenSSL's reading of the same certificate; the cost of
 * both is printed). */
#include "ledger.h"

#include <CUnit/Basic.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static char DIR_[256];
static uint8_t *CERT;
static int CERT_LEN;

static void db_path(const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", DIR_, name);
}

static ledger *open_rw(const char *name)
{
    char p[400], err[512];
    db_path(name, p, sizeof(p));
    ledger_opts o = {.backend = LEDGER_SQLITE, .path = p, .busy_timeout_ms = 200};
    ledger *l = NULL;
    if (ledger_open(&o, &l, err, sizeof(err)) != 0)
        fprintf(stderr, "\n%s\n", err);
    return l;
}

/* A certificate with a known subject, SANs, serial and validity. */
static int make_cert(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (!k || !x)
        return -1;
    X509_set_version(x, 2);
    BIGNUM *bn = NULL;
    BN_hex2bn(&bn, "4A0B0C0D0E0F101112131415161718ff");
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    ASN1_TIME_set(X509_getm_notBefore(x), 1700000000);
    ASN1_TIME_set(X509_getm_notAfter(x), 1707776000);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "C", MBSTRING_ASC, (const unsigned char *)"FI", -1, -1, 0);
    X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_ASC,
                               (const unsigned char *)"5gc.mnc001.mcc001.3gppnetwork.org", -1, -1,
                               0);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"a,b+c", -1, -1, 0);
    X509_set_issuer_name(x, nm);
    X509_set_pubkey(x, k);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(
        NULL, &ctx, NID_subject_alt_name,
        "DNS:amf1.5gc.mnc001.mcc001.3gppnetwork.org,URI:urn:uuid:"
        "3f1c2a4e-8b7d-4e2a-9c1d-2b3a4c5d6e7f,IP:10.0.0.1");
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    X509_sign(x, k, EVP_sha256());
    CERT_LEN = i2d_X509(x, &CERT);
    X509_free(x);
    EVP_PKEY_free(k);
    return CERT_LEN > 0 ? 0 : -1;
}

static int suite_init(void)
{
    snprintf(DIR_, sizeof(DIR_), "/tmp/cf-ledger-XXXXXX");
    if (!mkdtemp(DIR_))
        return -1;
    return make_cert();
}

static int suite_clean(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", DIR_);
    if (system(cmd) != 0)
        return -1;
    OPENSSL_free(CERT);
    return 0;
}

/* A record whose serial is "<prefix><i>" (hex). */
typedef struct rec_buf {
    char serial[41], nf[40];
    ledger_rec r;
} rec_buf;

static void mk_rec(rec_buf *b, const char *prefix, unsigned i, const char *profile,
                   int64_t not_after)
{
    snprintf(b->serial, sizeof(b->serial), "%s%08x", prefix, i);
    snprintf(b->nf, sizeof(b->nf), "3f1c2a4e-8b7d-4e2a-9c1d-%012x", i % 4);
    b->r = (ledger_rec){
        .serial = b->serial,
        .profile = profile,
        .issuer_key = "nf-ca",
        .subject = "C=FI,O=x",
        .sans = "DNS:a.example",
        .nf_instance_id = b->nf,
        .not_before = 1700000000,
        .not_after = not_after,
        .cert = CERT,
        .cert_len = (size_t)CERT_LEN,
        .requester_uid = 1000,
        .requester = "acme-1",
        .issued_at_ms = 1700000000000LL + i,
    };
}

static int count_cb(const ledger_rec *r, void *arg)
{
    (void)r;
    (*(int *)arg)++;
    return 0;
}

static int count(ledger *l, const ledger_filter *f)
{
    int n = 0;
    char err[512];
    if (ledger_list(l, f, count_cb, &n, err, sizeof(err)) != 0) {
        fprintf(stderr, "\n%s\n", err);
        return -1;
    }
    return n;
}

/* ------------------------------------------------------------ tests */

static void test_schema(void)
{
    ledger *l = open_rw("schema.db");
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    CU_ASSERT_EQUAL(ledger_schema_version(l), LEDGER_SCHEMA_VERSION);
    ledger_close(l);
    /* reopened: same version, nothing re-created */
    l = open_rw("schema.db");
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    CU_ASSERT_EQUAL(ledger_schema_version(l), LEDGER_SCHEMA_VERSION);
    ledger_close(l);
    /* what another reader sees: WAL, one version row, the table */
    char p[400];
    db_path("schema.db", p, sizeof(p));
    sqlite3 *db = NULL;
    CU_ASSERT_EQUAL_FATAL(sqlite3_open(p, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    CU_ASSERT_EQUAL(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    CU_ASSERT_EQUAL(sqlite3_step(st), SQLITE_ROW);
    CU_ASSERT_STRING_EQUAL((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    CU_ASSERT_EQUAL(sqlite3_prepare_v2(db, "SELECT count(*), max(version) FROM schema_version",
                                       -1, &st, NULL),
                    SQLITE_OK);
    CU_ASSERT_EQUAL(sqlite3_step(st), SQLITE_ROW);
    CU_ASSERT_EQUAL(sqlite3_column_int(st, 0), 1);
    CU_ASSERT_EQUAL(sqlite3_column_int(st, 1), 1);
    sqlite3_finalize(st);
    /* a newer schema is refused */
    CU_ASSERT_EQUAL(sqlite3_exec(db, "UPDATE schema_version SET version = 99", NULL, NULL, NULL),
                    SQLITE_OK);
    sqlite3_close(db);
    char err[512];
    ledger_opts o = {.backend = LEDGER_SQLITE, .path = p};
    l = NULL;
    CU_ASSERT_EQUAL(ledger_open(&o, &l, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NULL(l);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "schema version 99 is newer than this certforge's (1)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, p));
}

static void test_open_errors(void)
{
    char err[512], p[400];
    ledger *l = NULL;
    /* a folder that does not exist: the path and SQLite's reason */
    db_path("nosuch/ledger.db", p, sizeof(p));
    ledger_opts o = {.backend = LEDGER_SQLITE, .path = p};
    CU_ASSERT_EQUAL(ledger_open(&o, &l, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, p));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unable to open database file"));
    /* not a database */
    db_path("junk.db", p, sizeof(p));
    FILE *f = fopen(p, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("this is not an SQLite database, not at all, no........................\n", f);
    fclose(f);
    CU_ASSERT_EQUAL(ledger_open(&o, &l, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a database"));
    /* read-only open of a database that is no ledger; of a missing file */
    db_path("empty.db", p, sizeof(p));
    sqlite3 *db = NULL;
    CU_ASSERT_EQUAL(sqlite3_open(p, &db), SQLITE_OK);
    CU_ASSERT_EQUAL(sqlite3_exec(db, "CREATE TABLE t (x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    o.read_only = true;
    CU_ASSERT_EQUAL(ledger_open(&o, &l, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a certforge ledger"));
    db_path("missing.db", p, sizeof(p));
    CU_ASSERT_EQUAL(ledger_open(&o, &l, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(access(p, F_OK), -1); /* read-only never creates */
    /* no path, bad backend */
    o.path = "";
    CU_ASSERT_EQUAL(ledger_open(&o, &l, err, sizeof(err)), -1);
    o.path = p;
    o.backend = LEDGER_BACKEND__MAX;
    CU_ASSERT_EQUAL(ledger_open(&o, &l, err, sizeof(err)), -1);
}

static int show_cb(const ledger_rec *r, void *arg)
{
    ledger_rec *out = arg;
    /* copy what the test compares (pointers die after the callback) */
    CU_ASSERT_STRING_EQUAL(r->profile, out->profile);
    CU_ASSERT_STRING_EQUAL(r->issuer_key, "nf-ca");
    CU_ASSERT_STRING_EQUAL(r->subject, "C=FI,O=x");
    CU_ASSERT_STRING_EQUAL(r->sans, "DNS:a.example");
    CU_ASSERT_STRING_EQUAL(r->requester, "acme-1");
    CU_ASSERT_STRING_EQUAL(r->status, "valid");
    CU_ASSERT_EQUAL(r->requester_uid, 1000);
    CU_ASSERT_EQUAL(r->not_before, 1700000000);
    CU_ASSERT_EQUAL(r->not_after, out->not_after);
    CU_ASSERT_EQUAL(r->revoked_at, -1);
    CU_ASSERT_PTR_NULL(r->revocation_reason);
    CU_ASSERT(r->cert_len == (size_t)CERT_LEN && memcmp(r->cert, CERT, r->cert_len) == 0);
    out->issued_at_ms = r->issued_at_ms;
    return 0;
}

static void test_batch_atomic(void)
{
    ledger *l = open_rw("batch.db");
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    char err[512];
    rec_buf b[8];
    ledger_rec r[8];
    for (unsigned i = 0; i < 3; i++) {
        mk_rec(&b[i], "aa", i, "nf", 1800000000);
        r[i] = b[i].r;
    }
    CU_ASSERT_EQUAL_FATAL(ledger_record(l, r, 3, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(count(l, NULL), 3);
    /* lookups, any case and with separators */
    ledger_rec want = {.profile = "nf", .not_after = 1800000000};
    CU_ASSERT_EQUAL(ledger_find(l, "AA:00:00:00:01", show_cb, &want, err, sizeof(err)), 1);
    CU_ASSERT_EQUAL(want.issued_at_ms, 1700000000001LL);
    CU_ASSERT_EQUAL(ledger_find(l, "0xaa00000002", NULL, NULL, err, sizeof(err)), 1);
    CU_ASSERT_EQUAL(ledger_find(l, "aa00000009", NULL, NULL, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(ledger_find(l, "zz", NULL, NULL, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "'zz' is not a serial number"));
    /* a batch with one serial already recorded: nothing of it stays */
    for (unsigned i = 3; i < 8; i++) {
        mk_rec(&b[i], "aa", i, "nf", 1800000000);
        r[i - 3] = b[i].r;
    }
    r[3] = b[1].r; /* duplicate, in the middle of the batch */
    CU_ASSERT_EQUAL(ledger_record(l, r, 5, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "UNIQUE constraint failed"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "aa00000001"));
    CU_ASSERT_EQUAL(count(l, NULL), 3);
    CU_ASSERT_EQUAL(ledger_find(l, "aa00000003", NULL, NULL, err, sizeof(err)), 0);
    /* the same batch without the duplicate goes through afterwards */
    CU_ASSERT_EQUAL(ledger_record(l, r, 3, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(count(l, NULL), 6);
    /* an empty batch is a no-op */
    CU_ASSERT_EQUAL(ledger_record(l, r, 0, err, sizeof(err)), 0);
    ledger_close(l);
}

/* Another connection holds the write lock: the batch fails after the busy
 * timeout (LEDGER_FAILURE in the daemon) and succeeds once it is released. */
static void test_locked(void)
{
    ledger *l = open_rw("locked.db");
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    char p[400], err[512];
    db_path("locked.db", p, sizeof(p));
    sqlite3 *db = NULL;
    CU_ASSERT_EQUAL_FATAL(sqlite3_open(p, &db), SQLITE_OK);
    CU_ASSERT_EQUAL(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    rec_buf b;
    mk_rec(&b, "bb", 1, "nf", 1800000000);
    CU_ASSERT_EQUAL(ledger_record(l, &b.r, 1, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "database is locked"));
    CU_ASSERT_EQUAL(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    CU_ASSERT_EQUAL(ledger_record(l, &b.r, 1, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(ledger_find(l, "bb00000001", NULL, NULL, err, sizeof(err)), 1);
    ledger_close(l);
}

static void test_filters(void)
{
    ledger *l = open_rw("filters.db");
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    char err[512];
    rec_buf b[20];
    ledger_rec r[20];
    for (unsigned i = 0; i < 20; i++) {
        mk_rec(&b[i], "cc", i, i % 2 ? "star" : "nf", 1700000000 + 86400 * (int64_t)i);
        r[i] = b[i].r;
    }
    CU_ASSERT_EQUAL_FATAL(ledger_record(l, r, 20, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(count(l, &(ledger_filter){.profile = "nf"}), 10);
    CU_ASSERT_EQUAL(count(l, &(ledger_filter){.profile = "star"}), 10);
    CU_ASSERT_EQUAL(count(l, &(ledger_filter){.profile = "sepp"}), 0);
    /* nf instance id, any case: i % 4 == 1 → 5 records */
    CU_ASSERT_EQUAL(count(l, &(ledger_filter){.nf_instance_id =
                                                  "3F1C2A4E-8B7D-4E2A-9C1D-000000000001"}),
                    5);
    /* not_after < day 5 → i = 0..4 */
    CU_ASSERT_EQUAL(count(l, &(ledger_filter){.expiring_before = 1700000000 + 86400 * 5}), 5);
    CU_ASSERT_EQUAL(
        count(l, &(ledger_filter){.expiring_before = 1700000000 + 86400 * 5, .profile = "star"}),
        2);
    CU_ASSERT_EQUAL(count(l, &(ledger_filter){.limit = 7}), 7);
    CU_ASSERT_EQUAL(count(l, &(ledger_filter){.serial = "CC0000000F"}), 1);
    /* read-only open sees them; writing through it fails */
    char p[400];
    db_path("filters.db", p, sizeof(p));
    ledger *ro = NULL;
    ledger_opts o = {.backend = LEDGER_SQLITE, .path = p, .read_only = true};
    CU_ASSERT_EQUAL_FATAL(ledger_open(&o, &ro, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(count(ro, NULL), 20);
    rec_buf x;
    mk_rec(&x, "dd", 1, "nf", 1);
    CU_ASSERT_EQUAL(ledger_record(ro, &x.r, 1, err, sizeof(err)), -1);
    ledger_close(ro);
    ledger_close(l);
}

typedef struct wr_arg {
    ledger *l;
    unsigned idx;
    int fails;
} wr_arg;

static void *writer(void *arg)
{
    wr_arg *a = arg;
    rec_buf b[10];
    ledger_rec r[10];
    char err[512], pre[8];
    snprintf(pre, sizeof(pre), "e%u", a->idx);
    for (unsigned k = 0; k < 25; k++) {
        for (unsigned i = 0; i < 10; i++) {
            mk_rec(&b[i], pre, k * 10 + i, "nf", 1800000000);
            r[i] = b[i].r;
        }
        if (ledger_record(a->l, r, 10, err, sizeof(err)) != 0)
            a->fails++;
    }
    return NULL;
}

/* Workers record concurrently through one ledger. */
static void test_concurrent(void)
{
    ledger *l = open_rw("conc.db");
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    pthread_t th[4];
    wr_arg a[4];
    for (unsigned i = 0; i < 4; i++) {
        a[i] = (wr_arg){l, i, 0};
        pthread_create(&th[i], NULL, writer, &a[i]);
    }
    for (unsigned i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CU_ASSERT_EQUAL(a[i].fails, 0);
    }
    CU_ASSERT_EQUAL(count(l, NULL), 1000);
    ledger_close(l);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_cert_fields(void)
{
    char text[LEDGER_CERT_TEXT_CAP(4096)];
    ledger_cert_fields f;
    CU_ASSERT_FATAL((size_t)CERT_LEN < 4096);
    CU_ASSERT_EQUAL_FATAL(
        ledger_cert_fields_of(CERT, (size_t)CERT_LEN, text, LEDGER_CERT_TEXT_CAP(CERT_LEN), &f),
        0);
    CU_ASSERT_STRING_EQUAL(f.serial, "4a0b0c0d0e0f101112131415161718ff");
    CU_ASSERT_EQUAL(f.not_before, 1700000000);
    CU_ASSERT_EQUAL(f.not_after, 1707776000);
    CU_ASSERT_STRING_EQUAL(f.subject, "C=FI,O=5gc.mnc001.mcc001.3gppnetwork.org,CN=a\\,b\\+c");
    CU_ASSERT_STRING_EQUAL(f.sans, "DNS:amf1.5gc.mnc001.mcc001.3gppnetwork.org,URI:urn:uuid:"
                                   "3f1c2a4e-8b7d-4e2a-9c1d-2b3a4c5d6e7f,IP:10.0.0.1");
    /* a small buffer cuts the text, never overflows */
    char small[40];
    memset(small, 'Z', sizeof(small));
    CU_ASSERT_EQUAL(ledger_cert_fields_of(CERT, (size_t)CERT_LEN, small, 32, &f), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(f.subject, "..."));
    CU_ASSERT_EQUAL(small[32], 'Z');
    /* not a certificate; every truncation refused */
    static const uint8_t junk[] = {0x30, 0x03, 0x02, 0x01, 0x00};
    CU_ASSERT_EQUAL(ledger_cert_fields_of(junk, sizeof(junk), text, sizeof(text), &f), -1);
    int ok = 0;
    for (int n = 0; n < CERT_LEN; n++)
        ok += ledger_cert_fields_of(CERT, (size_t)n, text, sizeof(text), &f) == 0;
    CU_ASSERT_EQUAL(ok, 0);
    /* cost: engine/der against d2i_X509 + the OpenSSL getters the same
     * fields would take (printed for docs/ledger.md, not asserted) */
    const int N = 2000; /* small: the suite also runs under ASan */
    double t0 = now_s();
    for (int i = 0; i < N; i++)
        if (ledger_cert_fields_of(CERT, (size_t)CERT_LEN, text, sizeof(text), &f) != 0)
            CU_FAIL("fields");
    double t1 = now_s();
    char buf[512];
    for (int i = 0; i < N; i++) {
        const unsigned char *p = CERT;
        X509 *x = d2i_X509(NULL, &p, CERT_LEN);
        X509_NAME_oneline(X509_get_subject_name(x), buf, sizeof(buf));
        GENERAL_NAMES *g = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
        ASN1_TIME_to_tm(X509_get0_notAfter(x), NULL);
        GENERAL_NAMES_free(g);
        X509_free(x);
    }
    double t2 = now_s();
    fprintf(stderr, "\n    fields per certificate: engine/der %.2f us, d2i_X509 + getters %.2f us\n",
            (t1 - t0) / N * 1e6, (t2 - t1) / N * 1e6);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("ledger", suite_init, suite_clean);
    CU_add_test(s, "schema created, version, newer refused", test_schema);
    CU_add_test(s, "open errors name the path and reason", test_open_errors);
    CU_add_test(s, "a batch is one transaction", test_batch_atomic);
    CU_add_test(s, "a held write lock fails the batch; it recovers", test_locked);
    CU_add_test(s, "lookups and filters", test_filters);
    CU_add_test(s, "concurrent writers", test_concurrent);
    CU_add_test(s, "certificate fields (engine/der)", test_cert_fields);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned fails = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
    CU_cleanup_registry();
    return fails ? 1 : 0;
}
