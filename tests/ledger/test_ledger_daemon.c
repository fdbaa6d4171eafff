/* certforged's ledger end to end: the built daemon (stderr to a log) on a
 * SoftHSM token with a CA made by the certforge CLI, clients through
 * libcertforge.
 *
 *   - start-up without a ledger section, or with a ledger that cannot be
 *     opened, is refused naming the setting (and the path and reason);
 *   - crash: clients issue continuously and keep every serial they
 *     RECEIVED; certforged is killed with SIGKILL mid-load; every received
 *     serial is then in the ledger with the very certificate received,
 *     which verifies against the CA, and the database passes
 *     PRAGMA integrity_check;
 *   - a ledger that cannot be written: requests fail LEDGER_FAILURE with no
 *     certificate, `event=ledger_failure` is logged, and once the
 *     condition clears issuing works again without a restart. The test
 *     runs as root, for which file modes mean nothing and an open
 *     descriptor stays writable anyway, so "cannot be written" is another
 *     connection holding the database's write lock; a read-only file is
 *     refused at start-up (checked when not root).
 *   - `certforge ledger show/list/export` read the result.
 * Bounded: each daemon run stopped by its PID; the whole suite well under
 * a minute. */
#include "cf_daemon.h"
#include "cf_test.h"

#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/x509.h>

#define PIN "Lg7-ledger-pin"

static char DB[400];

/* ledger: the whole ledger section, or "" for none; the rest is the
 * harness's config (tests/support/cf_daemon.c). */
static void write_ledger_conf(const char *path, const char *ledger)
{
    conf_opts o = {.ledger = ledger};
    write_conf(path, &o);
}

static void write_default_conf(const char *path)
{
    write_ledger_conf(
        path, "ledger = { backend = \"sqlite\"; path = \"ledger.db\"; busy_timeout_ms = 100; };\n");
}

static void dump_log(const dproc *d)
{
    char *t = slurp(d->log);
    fprintf(stderr, "\n--- %s ---\n%s\n", d->log, t ? t : "");
    free(t);
}

/* The harness's request, with the requester tag the ledger must keep. */
static void fill_ledger_req(cf_issue_req *r, const csr_item *it)
{
    static const char tag[] = "ledger-test";
    fill_req(r, it, "nf");
    r->requester = (cf_str){tag, sizeof(tag) - 1};
}

/* ------------------------------------------------------------ suite */

static int suite_init(void)
{
    int rc = dh_suite_init("ldg", PIN, "Ledger Test CA");
    if (rc != 0)
        return rc;
    snprintf(DB, sizeof(DB), "%s/ledger.db", H.dir);
    return 0;
}

static int suite_clean(void)
{
    return dh_suite_clean();
}

static void refused(const char *ledger, const char *want1, const char *want2)
{
    char conf[400];
    snprintf(conf, sizeof(conf), "%s/bad.conf", H.dir);
    write_ledger_conf(conf, ledger);
    dproc d;
    int st = 0;
    CU_ASSERT_EQUAL(daemon_start_ex(&d, conf, NULL, &st), -1);
    CU_ASSERT_EQUAL(st, 1);
    if (!log_has(d.log, want1) || (want2 && !log_has(d.log, want2))) {
        fprintf(stderr, "\nwant '%s' and '%s'\n", want1, want2 ? want2 : "");
        dump_log(&d);
        CU_FAIL("refusal message");
    }
}

static void test_refused(void)
{
    refused("", "ledger: missing required section", "add ledger = {");
    char l[600], want[600];
    snprintf(l, sizeof(l), "ledger = { backend = \"sqlite\"; path = \"nosuch/l.db\"; };\n");
    snprintf(want, sizeof(want), "ledger.path: ledger %s/nosuch/l.db: cannot open: unable to open "
                                 "database file",
             H.dir);
    /* the refusal names the file and the line of the ledger section */
    char conf[400], at[64];
    snprintf(conf, sizeof(conf), "%s/bad.conf", H.dir);
    write_ledger_conf(conf, l);
    char *text = slurp(conf);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    const char *sec = strstr(text, "ledger = {");
    CU_ASSERT_PTR_NOT_NULL_FATAL(sec);
    int line = 1;
    for (const char *p = text; p < sec; p++)
        line += *p == '\n';
    free(text);
    snprintf(at, sizeof(at), "bad.conf:%d:", line);
    refused(l, want, at);
    /* a file that is not a database */
    char p[400];
    snprintf(p, sizeof(p), "%s/junk.db", H.dir);
    FILE *f = fopen(p, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("junk junk junk junk junk junk junk junk junk junk junk junk junk junk junk\n", f);
    fclose(f);
    snprintf(l, sizeof(l), "ledger = { backend = \"sqlite\"; path = \"junk.db\"; };\n");
    refused(l, "junk.db", "file is not a database");
    if (getuid() != 0) {
        /* a read-only file is refused, not silently opened read-only */
        snprintf(p, sizeof(p), "%s/ro.db", H.dir);
        f = fopen(p, "w");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        fclose(f);
        chmod(p, 0400);
        snprintf(l, sizeof(l), "ledger = { backend = \"sqlite\"; path = \"ro.db\"; };\n");
        refused(l, "ro.db", "read-only");
    }
    /* the socket was not left behind */
    struct stat sb;
    CU_ASSERT_NOT_EQUAL(lstat(SOCK, &sb), 0);
}

/* --- crash --- */

#define MAX_GOT 200000

typedef struct got {
    char serial[41];
    uint8_t *cert;
    size_t len;
} got;

static got GOT[MAX_GOT];
static _Atomic size_t NGOT;
static _Atomic int STOP;

static void *load_thread(void *arg)
{
    unsigned idx = (unsigned)(uintptr_t)arg;
    cf_client *c = NULL;
    char err[256];
    if (cf_client_connect(SOCK, &c, err, sizeof(err)) != 0)
        return NULL;
    size_t sent = 0, inflight = 0;
    while (!atomic_load(&STOP)) {
        while (inflight < 32) {
            cf_issue_req req;
            fill_ledger_req(&req, &POOL.items[(idx * 31 + sent) % POOL.n]);
            int r = cf_client_submit_issue(c, &req, NULL);
            if (r == 1)
                break;
            if (r != 0)
                goto out;
            sent++;
            inflight++;
        }
        cf_response r;
        if (cf_client_next_response(c, 10000, &r) != 0)
            break; /* the daemon is gone */
        inflight--;
        if (r.status != CF_ST_OK || r.serial.len == 0 || r.serial.len > 20)
            continue;
        size_t k = atomic_fetch_add(&NGOT, 1);
        if (k >= MAX_GOT)
            break;
        /* what this client RECEIVED: the serial and the certificate */
        cf_hex(r.serial.p, r.serial.len, GOT[k].serial);
        GOT[k].cert = malloc(r.cert.len);
        memcpy(GOT[k].cert, r.cert.p, r.cert.len);
        GOT[k].len = r.cert.len;
    }
out:
    cf_client_close(c);
    return NULL;
}

static void test_crash(void)
{
    char conf[400];
    snprintf(conf, sizeof(conf), "%s/ok.conf", H.dir);
    write_default_conf(conf);
    dproc d;
    CU_ASSERT_FATAL(daemon_start(&d, conf, NULL) == 0);
    CU_ASSERT_TRUE(log_has(d.log, "event=ledger_open backend=sqlite"));
    pthread_t th[3];
    for (uintptr_t i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, load_thread, (void *)i);
    /* kill it mid-load: after a few thousand, at most 10 s */
    uint64_t end = cf_now_ms() + 10000;
    while (atomic_load(&NGOT) < 3000 && cf_now_ms() < end)
        cf_sleep_ms(5);
    size_t before = atomic_load(&NGOT);
    CU_ASSERT_EQUAL(daemon_stop(&d, SIGKILL, 20000), 128 + SIGKILL);
    atomic_store(&STOP, 1);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    size_t n = atomic_load(&NGOT);
    if (n > MAX_GOT)
        n = MAX_GOT;
    fprintf(stderr, "\n    received %zu certificates (%zu when SIGKILL was sent)\n", n, before);
    CU_ASSERT(n >= 1000);

    sqlite3 *db = NULL;
    CU_ASSERT_EQUAL_FATAL(sqlite3_open_v2(DB, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    CU_ASSERT_EQUAL(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    CU_ASSERT_EQUAL(sqlite3_step(st), SQLITE_ROW);
    CU_ASSERT_STRING_EQUAL((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    CU_ASSERT_EQUAL_FATAL(sqlite3_prepare_v2(db,
                                             "SELECT cert, requester_uid, requester, status FROM "
                                             "certificates WHERE serial = ?1",
                                             -1, &st, NULL),
                          SQLITE_OK);
    size_t missing = 0, differ = 0, bad = 0, meta = 0;
    for (size_t i = 0; i < n; i++) {
        sqlite3_bind_text(st, 1, GOT[i].serial, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_ROW) {
            if (missing++ < 3)
                fprintf(stderr, "\n    received serial %s is not in the ledger\n", GOT[i].serial);
        } else {
            const void *cert = sqlite3_column_blob(st, 0);
            size_t len = (size_t)sqlite3_column_bytes(st, 0);
            if (len != GOT[i].len || memcmp(cert, GOT[i].cert, len) != 0)
                differ++;
            else if (verify_cert(cert, len) != 0)
                bad++;
            const char *tag = (const char *)sqlite3_column_text(st, 2);
            const char *status = (const char *)sqlite3_column_text(st, 3);
            if (sqlite3_column_int64(st, 1) != (sqlite3_int64)getuid() || !tag ||
                strcmp(tag, "ledger-test") != 0 || !status || strcmp(status, "valid") != 0)
                meta++;
        }
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    CU_ASSERT_EQUAL(missing, 0);
    CU_ASSERT_EQUAL(differ, 0);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(meta, 0);
    sqlite3_close(db);
    /* the CLI reads one of them back */
    if (n > 0) {
        CU_ASSERT_EQUAL(cf_sh("'%s' ledger show %s --db '%s' | grep -q '^NF instance ID'", CLI,
                              GOT[n / 2].serial, DB),
                        0);
        CU_ASSERT_EQUAL(cf_sh("'%s' ledger show %s --db '%s' | openssl x509 -noout -serial | "
                              "tr A-Z a-z | grep -q '=%s$'",
                              CLI, GOT[n / 2].serial, DB, GOT[n / 2].serial),
                        0);
    }
    for (size_t i = 0; i < n; i++)
        free(GOT[i].cert);
}

/* --- a ledger that cannot be written, then can again --- */

static void test_unwritable(void)
{
    char conf[400];
    snprintf(conf, sizeof(conf), "%s/ok.conf", H.dir);
    write_default_conf(conf);
    dproc d;
    /* restarts on the crashed database (WAL recovery) */
    CU_ASSERT_FATAL(daemon_start(&d, conf, NULL) == 0);
    cf_client *c = NULL;
    char err[256];
    CU_ASSERT_EQUAL_FATAL(cf_client_connect(SOCK, &c, err, sizeof(err)), 0);
    cf_issue_req req;
    cf_response r;
    fill_ledger_req(&req, &POOL.items[1]);
    CU_ASSERT_EQUAL_FATAL(cf_issue_one(c, &req, 10000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_OK);

    /* another writer holds the lock: nothing can be recorded */
    sqlite3 *db = NULL;
    CU_ASSERT_EQUAL_FATAL(sqlite3_open(DB, &db), SQLITE_OK);
    CU_ASSERT_EQUAL_FATAL(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    for (int i = 0; i < 3; i++) {
        fill_ledger_req(&req, &POOL.items[2 + i]);
        CU_ASSERT_EQUAL_FATAL(cf_issue_one(c, &req, 10000, &r), 0);
        CU_ASSERT_EQUAL(r.status, CF_ST_LEDGER_FAILURE);
        CU_ASSERT_EQUAL(r.cert.len, 0); /* no certificate released */
        CU_ASSERT_EQUAL(r.serial.len, 0);
    }
    CU_ASSERT_TRUE(log_has(d.log, "event=ledger_failure jobs=1 err=\""));
    CU_ASSERT_TRUE(log_has(d.log, "database is locked"));
    /* released: the next batch is recorded, no restart */
    CU_ASSERT_EQUAL(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    fill_ledger_req(&req, &POOL.items[6]);
    CU_ASSERT_EQUAL_FATAL(cf_issue_one(c, &req, 10000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_OK);
    CU_ASSERT(r.cert.len > 0 && verify_cert(r.cert.p, r.cert.len) == 0);
    CU_ASSERT_TRUE(log_has(d.log, "event=ledger_recovered failed_batches=3"));
    char serial[41] = "";
    if (r.serial.len > 0 && r.serial.len <= 20)
        cf_hex(r.serial.p, r.serial.len, serial);
    cf_client_close(c);
    int st = daemon_stop(&d, SIGTERM, 20000);
    CU_ASSERT_EQUAL(st, 0);
    if (st != 0)
        dump_log(&d);
    CU_ASSERT_TRUE(log_has(d.log, "event=stop"));
    /* in the ledger; the failed ones are not */
    CU_ASSERT_EQUAL(cf_sh("'%s' ledger list --config '%s' --limit 100000 2>/dev/null | grep -q '^%s '",
                          CLI, conf, serial),
                    0);
    CU_ASSERT_EQUAL(cf_sh("test \"$('%s' ledger export --format jsonl --db '%s' | wc -l)\" = "
                          "\"$('%s' ledger export --format csv --db '%s' | tail -n +2 | wc -l)\"",
                          CLI, DB, CLI, DB),
                    0);
    CU_ASSERT_EQUAL(cf_sh("'%s' ledger export --format jsonl --db '%s' --limit 1 | jq -e "
                          "'.status == \"valid\" and .requester == \"ledger-test\" and "
                          "(.sans | startswith(\"URI:urn:uuid:\")) and (.sans | contains(\",DNS:\"))' >/dev/null",
                          CLI, DB),
                    0);
}

/* No log of any run holds the PIN (and each of the five runs, six when not
 * root, left one). */
static void test_no_pin_in_logs(void)
{
    dh_assert_no_pin_in_logs(PIN, 5);
}

int main(int argc, char **argv)
{
    static const cf_test tests[] = {
        {"start-up refused without a usable ledger", test_refused},
        {"kill -9 mid-load: every received certificate is recorded", test_crash},
        {"unwritable ledger: LEDGER_FAILURE, then recovers", test_unwritable},
        {"no PIN in any log", test_no_pin_in_logs},
    };
    static const cf_suite suites[] = {
        CF_SUITE("certforged ledger", suite_init, suite_clean, tests)};
    return CF_TEST_MAIN(argc, argv, suites);
}
