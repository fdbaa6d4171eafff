/* CUnit suite for engine/ledger: schema creation and version, refusal of
 * a newer schema and of a file that is no ledger, a batch recorded
 * atomically (a failing batch leaves nothing), lookups and filters,
 * concurrent writers, and the certificate fields read with engine/der
 * (checked against OpenSSL's reading of the same certificate; the cost of
 * both is printed).
 *
 * The same tests run against each backend: `test_ledger` (SQLite, files
 * in a temporary folder) and `test_ledger postgresql` (ctest
 * test_ledger_pg): a fresh schema per test in the database of
 * $CF_TEST_PG_CONNINFO (tools/test.sh starts a throwaway cluster with
 * tools/pg-cluster.sh), selected with search_path. Without that variable,
 * or with a server that does not answer, the PostgreSQL run exits 77
 * (skipped). PostgreSQL-only cases: a lost connection is reported and the
 * next call reconnects; a hung server (the ledger's backend stopped with
 * SIGSTOP, resumed on every way out: cf_freeze) fails each kind of call
 * after pg_timeout_ms; two engines creating the schema at once;
 * cRLNumbers taken concurrently by several connections. */
#include "engine/ledger/ledger.h"

#include "cf_test.h"
#include "cf_testutil.h"
#include <libpq-fe.h>
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
#include "common/reason.h"

static char DIR_[256];
static uint8_t *CERT;
static int CERT_LEN;
static bool PG;           /* this run: the PostgreSQL backend */
static const char *PG_CI; /* $CF_TEST_PG_CONNINFO */
static char PG_TAG[32];   /* schema prefix of this run: t<pid> */

static void db_path(const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", DIR_, name);
}

/* PostgreSQL: the schema of a test name ("batch.db" -> t123_batch). */
static void pg_schema(const char *name, char *out, size_t len)
{
    size_t n = (size_t)snprintf(out, len, "%s_", PG_TAG);
    for (; *name && *name != '.' && n + 1 < len; name++)
        out[n++] = *name == '/' ? '_' : *name;
    out[n] = 0;
}

/* A conninfo for that schema: search_path selects it, application_name
 * lets a test find the ledger's own server process. */
static void pg_conninfo(const char *name, char *out, size_t len)
{
    char sch[64];
    pg_schema(name, sch, sizeof(sch));
    snprintf(out, len, "%s options=-csearch_path=%s application_name=%s", PG_CI, sch, sch);
}

static void no_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* A side connection to the test database (an operator, another engine). */
static PGconn *pg_side(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    PQsetNoticeProcessor(c, no_notices, NULL);
    return c;
}

/* Run SQL on a side connection to the test database; 0 or -1. */
static int pg_sql(const char *sql)
{
    PGconn *c = pg_side(PG_CI);
    int rc = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, sql);
        ExecStatusType st = PQresultStatus(r);
        rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
        if (rc)
            fprintf(stderr, "\n%s: %s\n", sql, PQresultErrorMessage(r));
        PQclear(r);
    } else {
        fprintf(stderr, "\n%s\n", PQerrorMessage(c));
    }
    PQfinish(c);
    return rc;
}

/* A fresh, empty schema for a test name (first use in this run only, so
 * a test may open the same name twice). */
static void pg_fresh(const char *name)
{
    static char done[64][64];
    static size_t ndone;
    char sch[64], sql[256];
    pg_schema(name, sch, sizeof(sch));
    for (size_t i = 0; i < ndone; i++)
        if (strcmp(done[i], sch) == 0)
            return;
    if (ndone < 64)
        snprintf(done[ndone++], sizeof(done[0]), "%s", sch);
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s", sch, sch);
    CU_ASSERT_EQUAL(pg_sql(sql), 0);
}

/* Options for a test name on this run's backend (buf holds the path or
 * the conninfo). */
static ledger_opts opts_for(const char *name, char *buf, size_t len, bool read_only)
{
    ledger_opts o = {.busy_timeout_ms = 200, .read_only = read_only};
    if (PG) {
        pg_fresh(name);
        pg_conninfo(name, buf, len);
        o.backend = LEDGER_POSTGRESQL;
        o.conninfo = buf;
    } else {
        db_path(name, buf, len);
        o.backend = LEDGER_SQLITE;
        o.path = buf;
    }
    return o;
}

static ledger *open_rw(const char *name)
{
    char p[600], err[512];
    ledger_opts o = opts_for(name, p, sizeof(p), false);
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

/* The PostgreSQL run needs a server: without $CF_TEST_PG_CONNINFO, or
 * with one that does not answer, it is skipped. */
static int pg_missing(void)
{
    PG_CI = getenv("CF_TEST_PG_CONNINFO");
    if (!PG_CI || !PG_CI[0]) {
        cf_test_skip("CF_TEST_PG_CONNINFO is not set (tools/test.sh starts a throwaway "
                     "cluster): PostgreSQL ledger tests skipped");
        return 1;
    }
    PGconn *c = PQconnectdb(PG_CI);
    int down = PQstatus(c) != CONNECTION_OK;
    if (down)
        cf_test_skip("PostgreSQL at '%s' does not answer: %s", PG_CI, PQerrorMessage(c));
    PQfinish(c);
    return down;
}

static int suite_init(void)
{
    if (PG && pg_missing())
        return 1;
    snprintf(PG_TAG, sizeof(PG_TAG), "t%ld", (long)getpid());
    snprintf(DIR_, sizeof(DIR_), "/tmp/cf-ledger-XXXXXX");
    if (!mkdtemp(DIR_))
        return -1;
    return make_cert();
}

static int suite_clean(void)
{
    cf_thaw_all();
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", DIR_);
    if (system(cmd) != 0)
        return -1;
    if (PG) { /* drop this run's schemas */
        PGconn *c = pg_side(PG_CI);
        PGresult *r = PQexec(c, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 't%\\_%'");
        for (int i = 0; i < PQntuples(r); i++) {
            const char *n = PQgetvalue(r, i, 0);
            if (strncmp(n, PG_TAG, strlen(PG_TAG)) == 0 && n[strlen(PG_TAG)] == '_') {
                snprintf(cmd, sizeof(cmd), "DROP SCHEMA %s CASCADE", n);
                PQclear(PQexec(c, cmd));
            }
        }
        PQclear(r);
        PQfinish(c);
    }
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

/* PostgreSQL: the single value of a query on a side connection, as text
 * (into out), or "" on error. */
static void pg_value(const char *sql, char *out, size_t len)
{
    PGconn *c = pg_side(PG_CI);
    PGresult *r = PQexec(c, sql);
    snprintf(out, len, "%s",
             PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    PQfinish(c);
}

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
    char p[600], err[512];
    ledger_opts o = opts_for("schema.db", p, sizeof(p), false);
    if (PG) {
        /* what another session sees: one version row, the tables, bytea */
        char v[64], sch[64], sql[512];
        pg_schema("schema.db", sch, sizeof(sch));
        snprintf(sql, sizeof(sql), "SELECT count(*) || ' ' || max(version) FROM %s.schema_version",
                 sch);
        pg_value(sql, v, sizeof(v));
        char want[16];
        snprintf(want, sizeof(want), "1 %d", LEDGER_SCHEMA_VERSION);
        CU_ASSERT_STRING_EQUAL(v, want);
        snprintf(sql, sizeof(sql),
                 "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM "
                 "information_schema.tables WHERE table_schema = '%s'",
                 sch);
        pg_value(sql, v, sizeof(v));
        CU_ASSERT_STRING_EQUAL(v, "certificates,crl_numbers,crls,schema_version,sign_records");
        snprintf(sql, sizeof(sql),
                 "SELECT data_type FROM information_schema.columns WHERE table_schema = '%s' "
                 "AND table_name = 'certificates' AND column_name = 'cert'",
                 sch);
        pg_value(sql, v, sizeof(v));
        CU_ASSERT_STRING_EQUAL(v, "bytea");
        /* a newer schema is refused */
        snprintf(sql, sizeof(sql), "UPDATE %s.schema_version SET version = 99", sch);
        CU_ASSERT_EQUAL(pg_sql(sql), 0);
    } else {
        /* what another reader sees: WAL, one version row, the table */
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
        CU_ASSERT_EQUAL(sqlite3_column_int(st, 1), LEDGER_SCHEMA_VERSION);
        sqlite3_finalize(st);
        /* a newer schema is refused */
        CU_ASSERT_EQUAL(
            sqlite3_exec(db, "UPDATE schema_version SET version = 99", NULL, NULL, NULL),
            SQLITE_OK);
        sqlite3_close(db);
    }
    l = NULL;
    CU_ASSERT_EQUAL(ledger_open(&o, &l, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NULL(l);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "schema version 99 is newer than this certforge's (3)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, PG ? "postgresql host=" : p));
}

/* A version-1 database (as certforge wrote it before SIGN records and
 * CRLs) is migrated at open, keeping its records. */
static void test_migrate_v1(void)
{
    static const char v1[] =
        "CREATE TABLE schema_version (version INTEGER NOT NULL);"
        "CREATE TABLE certificates (serial TEXT NOT NULL UNIQUE, profile TEXT NOT NULL,"
        " issuer_key TEXT NOT NULL, subject TEXT NOT NULL, sans TEXT NOT NULL,"
        " nf_instance_id TEXT, not_before INTEGER NOT NULL, not_after INTEGER NOT NULL,"
        " cert BLOB NOT NULL, requester_uid INTEGER, requester TEXT,"
        " issued_at_ms INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'valid'"
        " CHECK (status IN ('valid', 'revoked')), revoked_at INTEGER, revocation_reason TEXT);"
        "INSERT INTO schema_version (version) VALUES (1);"
        "INSERT INTO certificates (serial, profile, issuer_key, subject, sans, not_before,"
        " not_after, cert, issued_at_ms) VALUES ('0a', 'nf', 'nf-ca', 'C=FI', '', 1, 2, x'30',"
        " 3);";
    char p[600], err[512];
    if (PG) {
        /* the same version-1 tables, as a PostgreSQL ledger had them */
        char sch[64], sql[2048];
        pg_fresh("v1.db");
        pg_schema("v1.db", sch, sizeof(sch));
        snprintf(sql, sizeof(sql),
                 "SET search_path = %s;"
                 "CREATE TABLE schema_version (version INTEGER NOT NULL);"
                 "CREATE TABLE certificates (serial TEXT NOT NULL UNIQUE, profile TEXT NOT NULL,"
                 " issuer_key TEXT NOT NULL, subject TEXT NOT NULL, sans TEXT NOT NULL,"
                 " nf_instance_id TEXT, not_before BIGINT NOT NULL, not_after BIGINT NOT NULL,"
                 " cert BYTEA NOT NULL, requester_uid BIGINT, requester TEXT,"
                 " issued_at_ms BIGINT NOT NULL, status TEXT NOT NULL DEFAULT 'valid'"
                 " CHECK (status IN ('valid', 'revoked')), revoked_at BIGINT,"
                 " revocation_reason TEXT);"
                 "INSERT INTO schema_version (version) VALUES (1);"
                 "INSERT INTO certificates (serial, profile, issuer_key, subject, sans, "
                 "not_before, not_after, cert, issued_at_ms) VALUES ('0a', 'nf', 'nf-ca', "
                 "'C=FI', '', 1, 2, '\\x30', 3);",
                 sch);
        CU_ASSERT_EQUAL_FATAL(pg_sql(sql), 0);
    } else {
        db_path("v1.db", p, sizeof(p));
        sqlite3 *db = NULL;
        CU_ASSERT_EQUAL_FATAL(sqlite3_open(p, &db), SQLITE_OK);
        CU_ASSERT_EQUAL(sqlite3_exec(db, v1, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
    }
    ledger *l = open_rw("v1.db");
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    CU_ASSERT_EQUAL(ledger_schema_version(l), LEDGER_SCHEMA_VERSION);
    CU_ASSERT_EQUAL(count(l, NULL), 1);
    uint64_t n = 0;
    CU_ASSERT_EQUAL(ledger_crl_next_number(l, "nf-ca", &n, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(n, 1);
    ledger_close(l);
}

/* PostgreSQL: a server that is not there, a schema that is no ledger, a
 * password in the conninfo; every message names host and database and
 * never a password. */
static void test_open_errors_pg(void)
{
    char err[512], ci[700];
    ledger *l = NULL;
    ledger_opts o = {.backend = LEDGER_POSTGRESQL, .conninfo = ci};
    snprintf(ci, sizeof(ci), "host=%s/nosuch dbname=certforge user=certforge connect_timeout=2",
             DIR_);
    CU_ASSERT_EQUAL(ledger_open(&o, &l, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NULL(l);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "dbname=certforge user=certforge"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nosuch"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot connect"));
    CU_ASSERT_PTR_NULL(strchr(err, '\n'));
    /* a password never reaches libpq, nor the message */
    snprintf(ci, sizeof(ci), "%s password=s3cret", PG_CI);
    CU_ASSERT_EQUAL(ledger_open(&o, &l, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "holds a password"));
    CU_ASSERT_PTR_NULL(strstr(err, "s3cret"));
    snprintf(ci, sizeof(ci), "%s dbnme=x", PG_CI);
    CU_ASSERT_EQUAL(ledger_open(&o, &l, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "invalid connection option"));
    /* no such database */
    snprintf(ci, sizeof(ci), "%s dbname=nosuchdb", PG_CI);
    CU_ASSERT_EQUAL(ledger_open(&o, &l, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "nosuchdb"));
    /* read-only on an empty schema: not a ledger, and nothing created */
    char p[600];
    o = opts_for("empty.db", p, sizeof(p), true);
    CU_ASSERT_EQUAL(ledger_open(&o, &l, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a certforge ledger"));
    char sch[64], sql[256], v[32];
    pg_schema("empty.db", sch, sizeof(sch));
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM information_schema.tables WHERE table_schema = '%s'", sch);
    pg_value(sql, v, sizeof(v));
    CU_ASSERT_STRING_EQUAL(v, "0");
    /* no conninfo */
    o = (ledger_opts){.backend = LEDGER_POSTGRESQL};
    CU_ASSERT_EQUAL(ledger_open(&o, &l, err, sizeof(err)), -1);
}

/* A server with fsync = off cannot make a commit durable: a writer is
 * refused, a reader (certforge ledger) is not. Needs the cluster's
 * superuser (tools/pg-cluster.sh: "postgres", trust on its socket). */
static void test_fsync_off_pg(void)
{
    char su[700], err[512], p[600];
    snprintf(su, sizeof(su), "%s user=postgres", PG_CI);
    PGconn *c = pg_side(su);
    PGresult *r = PQexec(c, "ALTER SYSTEM SET fsync = off");
    bool can = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!can) {
        fprintf(stderr, "\n    no superuser on this server: fsync=off refusal not checked: %s",
                PQerrorMessage(c));
        PQfinish(c);
        return;
    }
    PQclear(PQexec(c, "SELECT pg_reload_conf()"));
    cf_sleep_ms(300); /* the reload reaches new sessions */
    ledger *l = open_rw("fsync.db");
    CU_ASSERT_PTR_NULL(l);
    ledger_opts o = opts_for("fsync.db", p, sizeof(p), false);
    CU_ASSERT_EQUAL(ledger_open(&o, &l, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "the server runs with fsync = off"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "dbname=certforge"));
    PQclear(PQexec(c, "ALTER SYSTEM RESET fsync"));
    PQclear(PQexec(c, "SELECT pg_reload_conf()"));
    PQfinish(c);
    cf_sleep_ms(300);
    l = open_rw("fsync.db");
    CU_ASSERT_PTR_NOT_NULL(l);
    ledger_close(l);
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
    CU_ASSERT_PTR_NOT_NULL(strstr(err, PG ? "duplicate key value violates unique constraint"
                                          : "UNIQUE constraint failed"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "INSERT of serial aa00000001"));
    CU_ASSERT_EQUAL(count(l, NULL), 3);
    CU_ASSERT_EQUAL(ledger_find(l, "aa00000003", NULL, NULL, err, sizeof(err)), 0);
    /* the same batch without the duplicate goes through afterwards */
    CU_ASSERT_EQUAL(ledger_record(l, r, 3, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(count(l, NULL), 6);
    /* an empty batch is a no-op */
    CU_ASSERT_EQUAL(ledger_record(l, r, 0, err, sizeof(err)), 0);
    /* a large batch (PostgreSQL sends it in several pipeline chunks of 256
     * statements) is still one transaction: a duplicate near its end
     * takes all of it back */
    enum { BIG = 600 };
    rec_buf *bb = calloc(BIG, sizeof(*bb));
    ledger_rec *br = calloc(BIG, sizeof(*br));
    CU_ASSERT_PTR_NOT_NULL_FATAL(bb);
    CU_ASSERT_PTR_NOT_NULL_FATAL(br);
    for (unsigned i = 0; i < BIG; i++) {
        mk_rec(&bb[i], "ba", i, "nf", 1800000000);
        br[i] = bb[i].r;
    }
    br[BIG - 10] = b[2].r; /* aa00000002, recorded above */
    CU_ASSERT_EQUAL(ledger_record(l, br, BIG, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "INSERT of serial aa00000002"));
    CU_ASSERT_EQUAL(count(l, NULL), 6);
    br[BIG - 10] = bb[BIG - 10].r;
    CU_ASSERT_EQUAL(ledger_record(l, br, BIG, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(count(l, NULL), 6 + BIG);
    free(bb);
    free(br);
    ledger_close(l);
}

/* Another connection holds the write lock: the batch fails after the busy
 * timeout (LEDGER_FAILURE in the daemon) and succeeds once it is released. */
static void test_locked(void)
{
    ledger *l = open_rw("locked.db");
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    char p[600], err[512];
    opts_for("locked.db", p, sizeof(p), false);
    rec_buf b;
    mk_rec(&b, "bb", 1, "nf", 1800000000);
    sqlite3 *db = NULL;
    PGconn *pc = NULL;
    if (PG) {
        /* an operator's open transaction holding the table */
        pc = pg_side(p);
        CU_ASSERT_EQUAL_FATAL(PQstatus(pc), CONNECTION_OK);
        PQclear(PQexec(pc, "BEGIN"));
        PGresult *r = PQexec(pc, "LOCK TABLE certificates IN EXCLUSIVE MODE");
        CU_ASSERT_EQUAL(PQresultStatus(r), PGRES_COMMAND_OK);
        PQclear(r);
    } else {
        CU_ASSERT_EQUAL_FATAL(sqlite3_open(p, &db), SQLITE_OK);
        CU_ASSERT_EQUAL(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    }
    CU_ASSERT_EQUAL(ledger_record(l, &b.r, 1, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(err, PG ? "canceling statement due to lock timeout" : "database is locked"));
    if (PG) {
        PQclear(PQexec(pc, "ROLLBACK"));
        PQfinish(pc);
    } else {
        CU_ASSERT_EQUAL(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
    }
    CU_ASSERT_EQUAL(ledger_record(l, &b.r, 1, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(ledger_find(l, "bb00000001", NULL, NULL, err, sizeof(err)), 1);
    ledger_close(l);
}

static int stop_cb(const ledger_rec *r, void *arg)
{
    (void)r;
    (void)arg;
    return 7;
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
    /* a callback's non-zero return stops the walk and is returned */
    CU_ASSERT_EQUAL(ledger_list(l, NULL, stop_cb, NULL, err, sizeof(err)), 7);
    CU_ASSERT_EQUAL(count(l, NULL), 20); /* and the connection is usable after it */
    /* read-only open sees them; writing through it fails */
    char p[600];
    ledger *ro = NULL;
    ledger_opts o = opts_for("filters.db", p, sizeof(p), true);
    CU_ASSERT_EQUAL_FATAL(ledger_open(&o, &ro, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(count(ro, NULL), 20);
    rec_buf x;
    mk_rec(&x, "dd", 1, "nf", 1);
    CU_ASSERT_EQUAL(ledger_record(ro, &x.r, 1, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "read-only"));
    int64_t at;
    int reason;
    CU_ASSERT_EQUAL(ledger_revoke(ro, "cc00000001", 1, 1, &at, &reason, err, sizeof(err)), -1);
    uint64_t num;
    CU_ASSERT_EQUAL(ledger_crl_next_number(ro, "nf-ca", &num, err, sizeof(err)), -1);
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

typedef struct revoked_list {
    int n;
    char serial[8][41];
    int64_t at[8];
    int reason[8];
} revoked_list;

static int revoked_cb(const char *serial, int64_t at, int reason, void *arg)
{
    revoked_list *r = arg;
    if (r->n < 8) {
        snprintf(r->serial[r->n], sizeof(r->serial[0]), "%s", serial);
        r->at[r->n] = at;
        r->reason[r->n] = reason;
    }
    r->n++;
    return 0;
}

static int status_cb(const ledger_rec *r, void *arg)
{
    snprintf(arg, 64, "%s %lld %s", r->status, (long long)r->revoked_at,
             r->revocation_reason ? r->revocation_reason : "-");
    return 0;
}

/* Revocation: new, repeated (the first stands), unknown serial, bad
 * input; the revoked list of an issuer drops expired certificates. */
static void test_revoke(void)
{
    ledger *l = open_rw("revoke.db");
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    char err[512], st[64];
    rec_buf b[4];
    ledger_rec r[4];
    for (unsigned i = 0; i < 4; i++) {
        mk_rec(&b[i], "7e", i, "nf", i == 3 ? 1000 : 2000000000);
        r[i] = b[i].r;
    }
    r[2].issuer_key = "other-ca";
    CU_ASSERT_EQUAL_FATAL(ledger_record(l, r, 4, err, sizeof(err)), 0);
    int64_t at = 0;
    int reason = -1;
    CU_ASSERT_EQUAL(ledger_revoke(l, "7E:00:00:00:01", 1, 1800000000, &at, &reason, err,
                                  sizeof(err)),
                    0);
    CU_ASSERT_EQUAL(at, 1800000000);
    CU_ASSERT_EQUAL(reason, 1);
    CU_ASSERT_EQUAL(ledger_find(l, "7e00000001", status_cb, st, err, sizeof(err)), 1);
    CU_ASSERT_STRING_EQUAL(st, "revoked 1800000000 keyCompromise");
    /* again, with another reason and time: the first revocation stands */
    CU_ASSERT_EQUAL(ledger_revoke(l, "7e00000001", 4, 1900000000, &at, &reason, err,
                                  sizeof(err)),
                    1);
    CU_ASSERT_EQUAL(at, 1800000000);
    CU_ASSERT_EQUAL(reason, 1);
    CU_ASSERT_EQUAL(ledger_find(l, "7e00000001", status_cb, st, err, sizeof(err)), 1);
    CU_ASSERT_STRING_EQUAL(st, "revoked 1800000000 keyCompromise");
    CU_ASSERT_EQUAL(ledger_revoke(l, "7e00000099", 1, 1, &at, &reason, err, sizeof(err)), 2);
    CU_ASSERT_EQUAL(ledger_revoke(l, "xyz", 1, 1, &at, &reason, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "'xyz' is not a serial number"));
    CU_ASSERT_EQUAL(ledger_revoke(l, "7e00000000", 7, 1, &at, &reason, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "7 is not an RFC 5280 revocation reason"));
    CU_ASSERT_EQUAL(ledger_revoke(l, "7e00000000", 11, 1, &at, &reason, err, sizeof(err)), -1);
    /* the other issuer's and the expired one are not on nf-ca's list */
    CU_ASSERT_EQUAL(ledger_revoke(l, "7e00000002", 5, 1800000001, &at, &reason, err,
                                  sizeof(err)),
                    0);
    CU_ASSERT_EQUAL(ledger_revoke(l, "7e00000003", 4, 1800000002, &at, &reason, err,
                                  sizeof(err)),
                    0);
    CU_ASSERT_EQUAL(ledger_revoke(l, "7e00000000", 10, 1800000003, &at, &reason, err,
                                  sizeof(err)),
                    0);
    revoked_list rl = {0};
    CU_ASSERT_EQUAL(ledger_list_revoked(l, "nf-ca", 1500, revoked_cb, &rl, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL_FATAL(rl.n, 2);
    CU_ASSERT_STRING_EQUAL(rl.serial[0], "7e00000000");
    CU_ASSERT_EQUAL(rl.reason[0], 10);
    CU_ASSERT_EQUAL(rl.at[0], 1800000003);
    CU_ASSERT_STRING_EQUAL(rl.serial[1], "7e00000001");
    CU_ASSERT_EQUAL(rl.reason[1], 1);
    memset(&rl, 0, sizeof(rl));
    CU_ASSERT_EQUAL(ledger_list_revoked(l, "nf-ca", 0, revoked_cb, &rl, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(rl.n, 3); /* the expired one too, when asked from time 0 */
    ledger_filter f = {.revoked_only = true};
    CU_ASSERT_EQUAL(count(l, &f), 4);
    CU_ASSERT_STRING_EQUAL(cf_reason_name(0), "unspecified");
    CU_ASSERT_PTR_NULL(cf_reason_name(7));
    CU_ASSERT_EQUAL(cf_reason_code("KEYCOMPROMISE"), 1);
    CU_ASSERT_EQUAL(cf_reason_code("nonsense"), -1);
    ledger_close(l);
}

/* The serials ledger_list gives, in its order. */
typedef struct serial_list {
    int n;
    char serial[8][48];
} serial_list;

static int serial_cb(const ledger_rec *r, void *arg)
{
    serial_list *sl = arg;
    if (sl->n < 8)
        snprintf(sl->serial[sl->n], sizeof(sl->serial[0]), "%s", r->serial);
    sl->n++;
    return 0;
}

/* The names of the ledger's revoked-row indexes, comma-separated. */
static void revoked_indexes(const char *name, char *out, size_t len)
{
    out[0] = 0;
    if (PG) {
        char sch[64], sql[512];
        pg_schema(name, sch, sizeof(sch));
        snprintf(sql, sizeof(sql),
                 "SELECT coalesce(string_agg(indexname, ',' ORDER BY indexname), '') FROM "
                 "pg_indexes WHERE schemaname = '%s' AND tablename = 'certificates' AND "
                 "indexname LIKE 'certificates_revoked%%'",
                 sch);
        pg_value(sql, out, len);
        return;
    }
    char p[600];
    db_path(name, p, sizeof(p));
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_open(p, &db) == SQLITE_OK &&
        sqlite3_prepare_v2(db,
                           "SELECT coalesce(group_concat(name, ','), '') FROM (SELECT name FROM "
                           "sqlite_master WHERE type = 'index' AND tbl_name = 'certificates' "
                           "AND name LIKE 'certificates_revoked%' ORDER BY name)",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        snprintf(out, len, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* A version-2 database (as certforge wrote it before the partial revoked
 * indexes) is migrated at open to version 3: its rows intact, the
 * (issuer_key, status) index replaced by the two partial ones; a version-4
 * database is then refused. */
static void test_migrate_v2(void)
{
    /* schema version 2, as ledger_sqlite.c / ledger_pg.c created it; %s:
     * the SQL types that differ (integer, blob) */
    static const char v2[] =
        "CREATE TABLE schema_version (version INTEGER NOT NULL);"
        "CREATE TABLE certificates (serial TEXT NOT NULL UNIQUE, profile TEXT NOT NULL,"
        " issuer_key TEXT NOT NULL, subject TEXT NOT NULL, sans TEXT NOT NULL,"
        " nf_instance_id TEXT, not_before %1$s NOT NULL, not_after %1$s NOT NULL,"
        " cert %2$s NOT NULL, requester_uid %1$s, requester TEXT,"
        " issued_at_ms %1$s NOT NULL, status TEXT NOT NULL DEFAULT 'valid'"
        " CHECK (status IN ('valid', 'revoked')), revoked_at %1$s, revocation_reason TEXT);"
        "CREATE INDEX certificates_profile ON certificates (profile);"
        "CREATE INDEX certificates_nf_instance_id ON certificates (nf_instance_id);"
        "CREATE INDEX certificates_not_after ON certificates (not_after);"
        "INSERT INTO schema_version (version) VALUES (1);"
        "CREATE TABLE sign_records (id %3$s, key TEXT NOT NULL, mechanism TEXT NOT NULL,"
        " digest %2$s NOT NULL, requester_uid %1$s, requester TEXT, signed_at_ms %1$s NOT NULL);"
        "CREATE INDEX sign_records_key ON sign_records (key, id);"
        "CREATE TABLE crl_numbers (issuer_key TEXT PRIMARY KEY, last %1$s NOT NULL);"
        "CREATE TABLE crls (issuer_key TEXT NOT NULL, number %1$s NOT NULL,"
        " this_update %1$s NOT NULL, next_update %1$s NOT NULL, der %2$s NOT NULL,"
        " PRIMARY KEY (issuer_key, number));"
        "CREATE INDEX certificates_revoked ON certificates (issuer_key, status);"
        "UPDATE schema_version SET version = 2;"
        "INSERT INTO certificates (serial, profile, issuer_key, subject, sans, not_before,"
        " not_after, cert, issued_at_ms, status, revoked_at, revocation_reason) VALUES"
        " ('0a', 'nf', 'nf-ca', 'C=FI', '', 1, 2000000000, %4$s, 3, 'valid', NULL, NULL),"
        " ('0b', 'nf', 'nf-ca', 'C=FI', '', 1, 2000000000, %4$s, 5, 'revoked', 1700000000,"
        " 'keyCompromise'),"
        " ('0c', 'nf', 'other-ca', 'C=FI', '', 1, 2000000000, %4$s, 4, 'revoked', 1700000001,"
        " 'superseded');"
        "INSERT INTO crl_numbers (issuer_key, last) VALUES ('nf-ca', 7);";
    char sql[4096], err[512], p[600], sch[64] = "";
    if (PG) {
        pg_fresh("v2.db");
        pg_schema("v2.db", sch, sizeof(sch));
        int n = snprintf(sql, sizeof(sql), "SET search_path = %s;", sch);
        snprintf(sql + n, sizeof(sql) - (size_t)n, v2, "BIGINT", "BYTEA",
                 "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "'\\x30'");
        CU_ASSERT_EQUAL_FATAL(pg_sql(sql), 0);
    } else {
        snprintf(sql, sizeof(sql), v2, "INTEGER", "BLOB", "INTEGER PRIMARY KEY", "x'30'");
        db_path("v2.db", p, sizeof(p));
        sqlite3 *db = NULL;
        CU_ASSERT_EQUAL_FATAL(sqlite3_open(p, &db), SQLITE_OK);
        CU_ASSERT_EQUAL(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
    }
    char idx[256];
    revoked_indexes("v2.db", idx, sizeof(idx));
    CU_ASSERT_STRING_EQUAL(idx, "certificates_revoked");
    ledger *l = open_rw("v2.db");
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    CU_ASSERT_EQUAL(ledger_schema_version(l), 3);
    /* the rows, the revocations and the cRLNumber are intact */
    CU_ASSERT_EQUAL(count(l, NULL), 3);
    serial_list sl = {0};
    ledger_filter f = {.revoked_only = true};
    CU_ASSERT_EQUAL(ledger_list(l, &f, serial_cb, &sl, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL_FATAL(sl.n, 2);
    CU_ASSERT_STRING_EQUAL(sl.serial[0], "0c"); /* issued_at_ms 4, then 5 */
    CU_ASSERT_STRING_EQUAL(sl.serial[1], "0b");
    revoked_list rl = {0};
    CU_ASSERT_EQUAL(ledger_list_revoked(l, "nf-ca", 0, revoked_cb, &rl, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL_FATAL(rl.n, 1);
    CU_ASSERT_STRING_EQUAL(rl.serial[0], "0b");
    CU_ASSERT_EQUAL(rl.at[0], 1700000000);
    CU_ASSERT_EQUAL(rl.reason[0], 1);
    uint64_t num = 0;
    CU_ASSERT_EQUAL(ledger_crl_next_number(l, "nf-ca", &num, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(num, 8);
    /* a revocation after the migration is in the new indexes too */
    int64_t at = 0;
    int reason = 0;
    CU_ASSERT_EQUAL(ledger_revoke(l, "0a", 4, 1800000000, &at, &reason, err, sizeof(err)), 0);
    memset(&rl, 0, sizeof(rl));
    CU_ASSERT_EQUAL(ledger_list_revoked(l, "nf-ca", 0, revoked_cb, &rl, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL_FATAL(rl.n, 2);
    CU_ASSERT_STRING_EQUAL(rl.serial[0], "0a");
    CU_ASSERT_STRING_EQUAL(rl.serial[1], "0b");
    ledger_close(l);
    revoked_indexes("v2.db", idx, sizeof(idx));
    CU_ASSERT_STRING_EQUAL(idx, "certificates_revoked_issued,certificates_revoked_issuer");
    /* a version-4 database (a later certforge's) is refused, untouched */
    if (PG) {
        snprintf(sql, sizeof(sql), "UPDATE %s.schema_version SET version = 4", sch);
        CU_ASSERT_EQUAL(pg_sql(sql), 0);
    } else {
        sqlite3 *db = NULL;
        CU_ASSERT_EQUAL_FATAL(sqlite3_open(p, &db), SQLITE_OK);
        CU_ASSERT_EQUAL(
            sqlite3_exec(db, "UPDATE schema_version SET version = 4", NULL, NULL, NULL),
            SQLITE_OK);
        sqlite3_close(db);
    }
    char buf[600];
    ledger_opts o = opts_for("v2.db", buf, sizeof(buf), false);
    l = NULL;
    CU_ASSERT_EQUAL(ledger_open(&o, &l, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NULL(l);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "schema version 4 is newer than this certforge's (3)"));
    revoked_indexes("v2.db", idx, sizeof(idx));
    CU_ASSERT_STRING_EQUAL(idx, "certificates_revoked_issued,certificates_revoked_issuer");
}

/* The query plans of the two revoked listings, as the backends run them
 * (the SQL here is ledger_sqlite.c's / ledger_pg.c's): neither reads the
 * table. SQLite: EXPLAIN QUERY PLAN names the partial index (a plain
 * "SCAN certificates" line is a full scan; "SCAN certificates USING INDEX
 * certificates_revoked_issued" walks the partial index, which holds only
 * revoked rows). PostgreSQL: with sequential scans disabled, so that the
 * check does not depend on table statistics: it shows that a partial index
 * is usable for each query (the planner must prove the index's WHERE from
 * the query's); which one the CRL query picks on an empty table is an
 * estimate, so only the listing's index is named. */
static void test_revoked_plans(void)
{
    static const char listing[] =
        "SELECT serial, profile, issuer_key, subject, sans, nf_instance_id, not_before, "
        "not_after, cert, requester_uid, requester, issued_at_ms, status, revoked_at, "
        "revocation_reason FROM certificates WHERE 1 AND status = 'revoked' ORDER BY "
        "issued_at_ms, serial";
    static const char crl_sqlite[] =
        "SELECT serial, revoked_at, revocation_reason FROM certificates "
        "WHERE issuer_key = ?1 AND status = 'revoked' AND not_after >= ?2 "
        "ORDER BY length(serial), serial";
    ledger *l = open_rw("plans.db");
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    ledger_close(l);
    char plan[2][2048] = {"", ""};
    if (PG) {
        char sch[64], sql[1024];
        pg_schema("plans.db", sch, sizeof(sch));
        PGconn *c = pg_side(PG_CI);
        snprintf(sql, sizeof(sql), "SET search_path = %s; SET enable_seqscan = off", sch);
        PQclear(PQexec(c, sql));
        const char *q[2] = {"EXPLAIN SELECT serial FROM certificates WHERE true AND "
                            "status = 'revoked' ORDER BY issued_at_ms, serial",
                            "EXPLAIN SELECT serial, revoked_at, revocation_reason FROM "
                            "certificates WHERE issuer_key = 'nf-ca' AND status = 'revoked' "
                            "AND not_after >= 0 ORDER BY length(serial), serial"};
        for (int i = 0; i < 2; i++) {
            PGresult *r = PQexec(c, q[i]);
            CU_ASSERT_EQUAL(PQresultStatus(r), PGRES_TUPLES_OK);
            for (int j = 0; PQresultStatus(r) == PGRES_TUPLES_OK && j < PQntuples(r); j++) {
                size_t n = strlen(plan[i]);
                snprintf(plan[i] + n, sizeof(plan[i]) - n, "%s\n", PQgetvalue(r, j, 0));
            }
            PQclear(r);
        }
        PQfinish(c);
        /* which of the two (equally small, on this empty table) the CRL
         * query picks is the planner's estimate: only that it is one */
        CU_ASSERT_PTR_NOT_NULL(strstr(plan[0], "certificates_revoked_issued"));
        CU_ASSERT_PTR_NOT_NULL(strstr(plan[1], "using certificates_revoked_"));
        CU_ASSERT_PTR_NULL(strstr(plan[0], "Seq Scan"));
        CU_ASSERT_PTR_NULL(strstr(plan[1], "Seq Scan"));
        /* and they are partial: only the revoked rows */
        char v[64];
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM pg_indexes WHERE schemaname = '%s' AND indexname IN "
                 "('certificates_revoked_issued', 'certificates_revoked_issuer') AND "
                 "indexdef LIKE '%% WHERE (status = ''revoked''::text)'",
                 sch);
        pg_value(sql, v, sizeof(v));
        CU_ASSERT_STRING_EQUAL(v, "2");
    } else {
        char p[600];
        db_path("plans.db", p, sizeof(p));
        sqlite3 *db = NULL;
        CU_ASSERT_EQUAL_FATAL(sqlite3_open(p, &db), SQLITE_OK);
        const char *q[2] = {listing, crl_sqlite};
        for (int i = 0; i < 2; i++) {
            char sql[1024];
            snprintf(sql, sizeof(sql), "EXPLAIN QUERY PLAN %s", q[i]);
            sqlite3_stmt *st = NULL;
            CU_ASSERT_EQUAL_FATAL(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
            while (sqlite3_step(st) == SQLITE_ROW) {
                const char *d = (const char *)sqlite3_column_text(st, 3);
                size_t n = strlen(plan[i]);
                snprintf(plan[i] + n, sizeof(plan[i]) - n, "%s\n", d ? d : "");
                /* a full table scan is "SCAN certificates" with nothing after */
                CU_ASSERT_STRING_NOT_EQUAL(d ? d : "", "SCAN certificates");
            }
            sqlite3_finalize(st);
        }
        /* and they are partial: only the revoked rows */
        sqlite3_stmt *st = NULL;
        int partial = 0;
        CU_ASSERT_EQUAL(sqlite3_prepare_v2(db, "PRAGMA index_list(certificates)", -1, &st, NULL),
                        SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *name = (const char *)sqlite3_column_text(st, 1);
            if (strncmp(name, "certificates_revoked_", 21) == 0)
                partial += sqlite3_column_int(st, 4) == 1;
        }
        sqlite3_finalize(st);
        CU_ASSERT_EQUAL(partial, 2);
        sqlite3_close(db);
        CU_ASSERT_PTR_NOT_NULL(strstr(plan[0], "USING INDEX certificates_revoked_issued"));
        /* the listing's order comes from the index: no sort */
        CU_ASSERT_PTR_NULL(strstr(plan[0], "TEMP B-TREE"));
        CU_ASSERT_PTR_NOT_NULL(strstr(plan[1], "USING INDEX certificates_revoked_issuer (issuer_key=?)"));
    }
    if (CU_get_number_of_failures())
        fprintf(stderr, "\nplans:\n%s%s", plan[0], plan[1]);
}

typedef struct crl_seen {
    uint64_t number;
    int64_t this_update, next_update;
    uint8_t der[16];
    size_t len;
} crl_seen;

static int crl_cb(uint64_t number, int64_t tu, int64_t nu, const uint8_t *der, size_t len,
                  void *arg)
{
    crl_seen *c = arg;
    c->number = number;
    c->this_update = tu;
    c->next_update = nu;
    c->len = len < sizeof(c->der) ? len : sizeof(c->der);
    memcpy(c->der, der, c->len);
    return 0;
}

/* cRLNumbers increase across two connections to one file (two engines);
 * the latest stored CRL is the one with the highest number. */
static void test_crl_numbers(void)
{
    ledger *a = open_rw("crl.db"), *b = open_rw("crl.db");
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    char err[512];
    uint64_t n[6];
    for (int i = 0; i < 6; i++)
        CU_ASSERT_EQUAL(ledger_crl_next_number(i % 2 ? b : a, "nf-ca", &n[i], err, sizeof(err)),
                        0);
    for (int i = 0; i < 6; i++)
        CU_ASSERT_EQUAL(n[i], (uint64_t)i + 1);
    uint64_t o = 0;
    CU_ASSERT_EQUAL(ledger_crl_next_number(a, "other-ca", &o, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(o, 1);
    crl_seen c = {0};
    CU_ASSERT_EQUAL(ledger_crl_latest(a, "nf-ca", crl_cb, &c, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(ledger_crl_store(a, "nf-ca", 5, 100, 200, (const uint8_t *)"five", 4, err,
                                     sizeof(err)),
                    0);
    CU_ASSERT_EQUAL(ledger_crl_store(b, "nf-ca", 6, 101, 201, (const uint8_t *)"six", 3, err,
                                     sizeof(err)),
                    0);
    CU_ASSERT_EQUAL(ledger_crl_latest(a, "nf-ca", crl_cb, &c, err, sizeof(err)), 1);
    CU_ASSERT_EQUAL(c.number, 6);
    CU_ASSERT_EQUAL(c.this_update, 101);
    CU_ASSERT_EQUAL(c.next_update, 201);
    CU_ASSERT_EQUAL(c.len, 3);
    CU_ASSERT_EQUAL(memcmp(c.der, "six", 3), 0);
    /* a number stored twice is refused */
    CU_ASSERT_EQUAL(ledger_crl_store(b, "nf-ca", 6, 1, 2, (const uint8_t *)"x", 1, err,
                                     sizeof(err)),
                    -1);
    ledger_close(a);
    ledger_close(b);
}

typedef struct signs_seen {
    int n;
    char line[4][160];
} signs_seen;

static int sign_cb(const ledger_sign_rec *r, void *arg)
{
    signs_seen *s = arg;
    if (s->n < 4)
        snprintf(s->line[s->n], sizeof(s->line[0]), "%s %s %zu %02x %lld %s %lld", r->key,
                 r->mechanism, r->digest_len, r->digest[0], (long long)r->requester_uid,
                 r->requester ? r->requester : "-", (long long)r->signed_at_ms);
    s->n++;
    return 0;
}

/* SIGN records go in the same transaction as certificates. */
static void test_sign_records(void)
{
    ledger *l = open_rw("signs.db");
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    char err[512];
    uint8_t d1[32], d2[48];
    memset(d1, 0xab, sizeof(d1));
    memset(d2, 0xcd, sizeof(d2));
    ledger_sign_rec sr[2] = {
        {.key = "nf-ca", .mechanism = "ecdsa-sha256", .digest = d1, .digest_len = 32,
         .requester_uid = 1000, .requester = "openssl", .signed_at_ms = 5},
        {.key = "root", .mechanism = "ecdsa-sha384", .digest = d2, .digest_len = 48,
         .requester_uid = -1, .signed_at_ms = 6},
    };
    rec_buf b;
    mk_rec(&b, "5e", 1, "nf", 2000000000);
    CU_ASSERT_EQUAL(ledger_record_all(l, &b.r, 1, sr, 2, err, sizeof(err)), 0);
    signs_seen s = {0};
    CU_ASSERT_EQUAL(ledger_list_signs(l, NULL, 0, sign_cb, &s, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL_FATAL(s.n, 2);
    CU_ASSERT_STRING_EQUAL(s.line[0], "nf-ca ecdsa-sha256 32 ab 1000 openssl 5");
    CU_ASSERT_STRING_EQUAL(s.line[1], "root ecdsa-sha384 48 cd -1 - 6");
    memset(&s, 0, sizeof(s));
    CU_ASSERT_EQUAL(ledger_list_signs(l, "root", 0, sign_cb, &s, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(s.n, 1);
    /* a batch whose certificate fails takes its SIGN records with it */
    CU_ASSERT_EQUAL(ledger_record_all(l, &b.r, 1, sr, 2, err, sizeof(err)), -1);
    memset(&s, 0, sizeof(s));
    CU_ASSERT_EQUAL(ledger_list_signs(l, NULL, 0, sign_cb, &s, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(s.n, 2);
    /* SIGN records alone */
    CU_ASSERT_EQUAL(ledger_record_all(l, NULL, 0, sr, 1, err, sizeof(err)), 0);
    memset(&s, 0, sizeof(s));
    CU_ASSERT_EQUAL(ledger_list_signs(l, NULL, 0, sign_cb, &s, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(s.n, 3);
    ledger_close(l);
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
    double t0 = cf_now_s();
    for (int i = 0; i < N; i++)
        if (ledger_cert_fields_of(CERT, (size_t)CERT_LEN, text, sizeof(text), &f) != 0)
            CU_FAIL("fields");
    double t1 = cf_now_s();
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
    double t2 = cf_now_s();
    fprintf(stderr, "\n    fields per certificate: engine/der %.2f us, d2i_X509 + getters %.2f us\n",
            (t1 - t0) / N * 1e6, (t2 - t1) / N * 1e6);
}

/* What ledger_record() costs per batch on this backend (printed for
 * docs/ledger.md, not asserted). */
static void test_record_cost(void)
{
    ledger *l = open_rw("cost.db");
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    static const unsigned sizes[] = {1, 32, 256};
    static rec_buf b[256];
    static ledger_rec r[256];
    char err[512], pre[16];
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        unsigned bs = sizes[k], rounds = bs == 1 ? 200 : 20;
        double t0 = cf_now_s();
        for (unsigned j = 0; j < rounds; j++) {
            snprintf(pre, sizeof(pre), "c%x%03x", (unsigned)k & 0xF, j & 0xFFF);
            for (unsigned i = 0; i < bs; i++) {
                mk_rec(&b[i], pre, i, "nf", 1800000000);
                r[i] = b[i].r;
            }
            if (ledger_record(l, r, bs, err, sizeof(err)) != 0) {
                fprintf(stderr, "\n%s\n", err);
                CU_FAIL("record");
                break;
            }
        }
        double us = (cf_now_s() - t0) / rounds * 1e6;
        fprintf(stderr,
                "\n    %s ledger_record, batch %3u: %8.0f us per batch, %6.1f us per "
                "certificate",
                PG ? "postgresql" : "sqlite", bs, us, us / bs);
    }
    fprintf(stderr, "\n");
    ledger_close(l);
}

/* --- PostgreSQL only --- */

/* The ledger's server process is terminated (an administrator, a
 * failover, a restart): the call that meets the dead connection fails,
 * naming host and database; the next one reconnects, with its prepared
 * statements, and works. Reads recover the same way. */
static void test_pg_reconnect(void)
{
    ledger *l = open_rw("reconnect.db");
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    char err[512], sch[64], sql[256], v[32];
    rec_buf b[3];
    for (unsigned i = 0; i < 3; i++)
        mk_rec(&b[i], "ab", i, "nf", 1800000000);
    CU_ASSERT_EQUAL_FATAL(ledger_record(l, &b[0].r, 1, err, sizeof(err)), 0);
    pg_schema("reconnect.db", sch, sizeof(sch));
    snprintf(sql, sizeof(sql),
             "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
             "application_name = '%s'",
             sch);
    pg_value(sql, v, sizeof(v));
    CU_ASSERT_STRING_EQUAL(v, "1");
    cf_sleep_ms(100); /* the backend is gone once its socket is closed */
    CU_ASSERT_EQUAL(ledger_record(l, &b[1].r, 1, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "postgresql host="));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "dbname=certforge"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "connection lost"));
    CU_ASSERT_PTR_NULL(strchr(err, '\n'));
    /* the next call reconnects: the same batch now goes in */
    int rc = ledger_record(l, &b[1].r, 1, err, sizeof(err));
    if (rc)
        fprintf(stderr, "\n%s\n", err);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(ledger_find(l, "ab00000001", NULL, NULL, err, sizeof(err)), 1);
    /* a read meeting a dead connection */
    pg_value(sql, v, sizeof(v));
    cf_sleep_ms(100);
    CU_ASSERT_EQUAL(count(l, NULL), -1);
    CU_ASSERT_EQUAL(count(l, NULL), 2);
    uint64_t n = 0;
    CU_ASSERT_EQUAL(ledger_crl_next_number(l, "nf-ca", &n, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(n, 1);
    ledger_close(l);
}

/* The ledger's own backend: the newest session with the test's
 * application_name (a dropped one may linger a moment). */
static pid_t hang_backend(const char *name)
{
    char sch[64], sql[256], v[32];
    pg_schema(name, sch, sizeof(sch));
    snprintf(sql, sizeof(sql),
             "SELECT pid FROM pg_stat_activity WHERE application_name = '%s' "
             "ORDER BY backend_start DESC LIMIT 1",
             sch);
    pg_value(sql, v, sizeof(v));
    return (pid_t)atol(v);
}

/* A server that hangs (the ledger's backend stopped with SIGSTOP): each
 * kind of call fails after pg_timeout_ms, its message naming the step and
 * the setting; the next call reconnects; nothing of the failed batch or
 * revocation stands once the stalled backend runs again. */
static void test_pg_hang(void)
{
    char p[600], err[512];
    ledger_opts o = opts_for("hang.db", p, sizeof(p), false);
    o.pg_timeout_ms = 300;
    ledger *l = NULL;
    CU_ASSERT_EQUAL_FATAL(ledger_open(&o, &l, err, sizeof(err)), 0);
    rec_buf b[2];
    mk_rec(&b[0], "ac", 0, "nf", 1800000000);
    mk_rec(&b[1], "ac", 1, "nf", 1800000000);
    CU_ASSERT_EQUAL_FATAL(ledger_record(l, &b[0].r, 1, err, sizeof(err)), 0);
    static const char *const step[] = {"the batch's INSERTs", "BEGIN", "query",
                                       "cRLNumber update"};
    for (int k = 0; k < 4; k++) {
        /* from k = 1: the backend the call before reconnected to */
        CU_ASSERT_EQUAL_FATAL(cf_freeze(hang_backend("hang.db")), 0);
        int rc, reason, n = 0;
        int64_t at;
        uint64_t num;
        err[0] = 0;
        switch (k) {
        case 0:
            rc = ledger_record(l, &b[1].r, 1, err, sizeof(err));
            break;
        case 1:
            rc = ledger_revoke(l, "ac00000000", 1, 1800000000, &at, &reason, err, sizeof(err));
            break;
        case 2:
            rc = ledger_list(l, &(ledger_filter){0}, count_cb, &n, err, sizeof(err));
            break;
        default:
            rc = ledger_crl_next_number(l, "nf-ca", &num, err, sizeof(err));
            break;
        }
        cf_thaw_all();
        CU_ASSERT_EQUAL(rc, -1);
        char want[256];
        snprintf(want, sizeof(want),
                 ": %s: no answer from the server within 300 ms (ledger.pg_timeout_ms): "
                 "connection dropped, the next call reconnects",
                 step[k]);
        if (!strstr(err, want) || !strstr(err, "ledger postgresql host=")) {
            fprintf(stderr, "\n  got:  %s\n  want: ...%s\n", err, want);
            CU_FAIL("the timeout's message");
        }
        CU_ASSERT_EQUAL(count(l, NULL), 1); /* reconnects */
    }
    /* the stalled INSERT was rolled back (the serial records now), the
     * revocation never happened. (A cRLNumber taken by the stalled
     * statement when it ran again is simply skipped: numbers need only
     * increase.) */
    CU_ASSERT_EQUAL(ledger_record(l, &b[1].r, 1, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(count(l, NULL), 2);
    CU_ASSERT_EQUAL(count(l, &(ledger_filter){.revoked_only = true}), 0);
    ledger_close(l);
}

typedef struct race_arg {
    const char *name;
    ledger *l;
    uint64_t nums[50];
    int rc;
    int revoked; /* ledger_revoke's return */
} race_arg;

static void *open_racer(void *arg)
{
    race_arg *a = arg;
    a->l = open_rw(a->name);
    return NULL;
}

static void *crl_racer(void *arg)
{
    race_arg *a = arg;
    char err[512];
    for (int i = 0; i < 50; i++)
        if (ledger_crl_next_number(a->l, "nf-ca", &a->nums[i], err, sizeof(err)) != 0)
            a->rc = -1;
    int64_t at;
    int reason;
    a->revoked = ledger_revoke(a->l, "ef00000001", 1, 1800000000, &at, &reason, err, sizeof(err));
    return NULL;
}

/* Several engines on one database: they create the schema at once (the
 * advisory lock lets one create it, the others find it), take cRLNumbers
 * concurrently (each number once, strictly increasing per engine), and
 * revoke the same serial at once (one revocation, the others see it). */
static void test_pg_engines(void)
{
    enum { N = 4 };
    pthread_t th[N];
    race_arg a[N];
    pg_fresh("engines.db");
    for (int i = 0; i < N; i++) {
        a[i] = (race_arg){.name = "engines.db"};
        pthread_create(&th[i], NULL, open_racer, &a[i]);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) {
        CU_ASSERT_PTR_NOT_NULL_FATAL(a[i].l);
        CU_ASSERT_EQUAL(ledger_schema_version(a[i].l), LEDGER_SCHEMA_VERSION);
    }
    char err[512];
    rec_buf b;
    mk_rec(&b, "ef", 1, "nf", 1800000000);
    CU_ASSERT_EQUAL_FATAL(ledger_record(a[0].l, &b.r, 1, err, sizeof(err)), 0);
    for (int i = 0; i < N; i++)
        pthread_create(&th[i], NULL, crl_racer, &a[i]);
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    static bool seen[N * 50 + 1];
    int dup = 0, out_of_range = 0, not_increasing = 0, first = 0;
    for (int i = 0; i < N; i++) {
        CU_ASSERT_EQUAL(a[i].rc, 0);
        first += a[i].revoked == 0;
        CU_ASSERT(a[i].revoked == 0 || a[i].revoked == 1);
        for (int k = 0; k < 50; k++) {
            uint64_t v = a[i].nums[k];
            if (v < 1 || v > N * 50)
                out_of_range++;
            else if (seen[v])
                dup++;
            else
                seen[v] = true;
            if (k && v <= a[i].nums[k - 1])
                not_increasing++;
        }
    }
    CU_ASSERT_EQUAL(dup, 0);
    CU_ASSERT_EQUAL(out_of_range, 0);
    CU_ASSERT_EQUAL(not_increasing, 0);
    CU_ASSERT_EQUAL(first, 1);
    for (int i = 0; i < N; i++)
        ledger_close(a[i].l);
}

int main(int argc, char **argv)
{
    static const cf_test sqlite_tests[] = {
        {"schema created, version, newer refused", test_schema},
        {"open errors name the path and reason", test_open_errors},
        {"a version-1 database is migrated", test_migrate_v1},
        {"a version-2 database is migrated; version 4 refused", test_migrate_v2},
        {"the revoked listings use the partial indexes", test_revoked_plans},
        {"revocation", test_revoke},
        {"cRLNumbers and stored CRLs", test_crl_numbers},
        {"SIGN records", test_sign_records},
        {"a batch is one transaction", test_batch_atomic},
        {"a held write lock fails the batch; it recovers", test_locked},
        {"lookups and filters", test_filters},
        {"concurrent writers", test_concurrent},
        {"record cost per batch", test_record_cost},
        {"certificate fields (engine/der)", test_cert_fields},
    };
    static const cf_test pg_tests[] = {
        {"schema created, version, newer refused", test_schema},
        {"open errors name the path and reason", test_open_errors_pg},
        {"a version-1 database is migrated", test_migrate_v1},
        {"a version-2 database is migrated; version 4 refused", test_migrate_v2},
        {"the revoked listings use the partial indexes", test_revoked_plans},
        {"revocation", test_revoke},
        {"cRLNumbers and stored CRLs", test_crl_numbers},
        {"SIGN records", test_sign_records},
        {"a batch is one transaction", test_batch_atomic},
        {"a held write lock fails the batch; it recovers", test_locked},
        {"lookups and filters", test_filters},
        {"concurrent writers", test_concurrent},
        {"record cost per batch", test_record_cost},
        {"a lost connection fails one call; the next reconnects", test_pg_reconnect},
        {"a hung server fails each call after pg_timeout_ms; the next reconnects",
         test_pg_hang},
        {"engines at once: schema, cRLNumbers, revocation", test_pg_engines},
        {"a server with fsync = off is refused", test_fsync_off_pg},
    };
    static const cf_suite sqlite[] = {
        CF_SUITE("ledger (sqlite)", suite_init, suite_clean, sqlite_tests),
    };
    static const cf_suite pg[] = {
        CF_SUITE("ledger (postgresql)", suite_init, suite_clean, pg_tests),
    };
    /* `test_ledger postgresql [--list | --timing | NAME...]`: the same
     * suite on PostgreSQL (ctest test_ledger_pg) */
    if (argc > 1 && strcmp(argv[1], "postgresql") == 0) {
        PG = true;
        argv[1] = argv[0];
        return CF_TEST_MAIN(argc - 1, argv + 1, pg);
    }
    return CF_TEST_MAIN(argc, argv, sqlite);
}
