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
#include "cf_testutil.h"
#include "client/certforge.h"
#include "bench/csr_pool.h"

#include <CUnit/Basic.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#define PIN "Lg7-ledger-pin"

static cf_softhsm H;
static char CA_PEM[400], CLI[512], DAEMON[512], SOCK[100], DB[400];
static X509 *CA;
static csr_pool POOL;
static int NLOG;

static uint64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = malloc(1 << 20);
    size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (buf)
        buf[n] = 0;
    return buf;
}

static bool log_has(const char *log, const char *needle)
{
    char *t = slurp(log);
    bool r = t && strstr(t, needle);
    free(t);
    return r;
}

/* ledger: the whole ledger section, or "" for none */
static void write_conf(const char *path, const char *ledger)
{
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fprintf(f,
            "tokens = ( { name = \"ca\"; uri = "
            "\"pkcs11:token=ldg?module-path=%s&pin-source=file:%s\"; } );\n"
            "keys = ( { name = \"ca-key\"; token = \"ca\"; uri = \"pkcs11:object=ca\"; } );\n"
            "issuers = ( { name = \"ca\"; key = \"ca-key\"; certificate = \"%s\"; } );\n"
            "profiles = ( { name = \"nf\"; type = \"nf\"; issuer = \"ca\";\n"
            "    subject = { C = \"FI\"; O = \"5gc.mnc001.mcc001.3gppnetwork.org\"; };\n"
            "    eku = [\"serverAuth\", \"clientAuth\"]; crl_dp = "
            "\"http://crl.example.org/nf.crl\"; } );\n"
            "pipeline = { workers = 2; queue = 1024; batch = 16; };\n"
            "server = { socket = \"%s\"; socket_mode = \"0600\"; max_inflight = 256; };\n"
            "grants = ( { uid = %u; profiles = [\"nf\"]; ops = [\"issue\", \"status\"]; } );\n"
            "%s",
            H.module, H.pin_file, CA_PEM, SOCK, (unsigned)getuid(), ledger);
    fclose(f);
}

static void write_default_conf(const char *path)
{
    char l[600];
    snprintf(l, sizeof(l),
             "ledger = { backend = \"sqlite\"; path = \"ledger.db\"; busy_timeout_ms = 100; };\n");
    write_conf(path, l);
}

typedef struct dproc {
    pid_t pid;
    char log[400];
} dproc;

/* Start certforged; 0 when ready, else -1 with *status its exit status. */
static int daemon_start(dproc *d, const char *conf, int *status)
{
    snprintf(d->log, sizeof(d->log), "%s/daemon-%d.log", H.dir, NLOG++);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* A test that dies (a sanitizer halting on a report, a crash) takes
         * its daemon with it: no certforged outlives the suite. */
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
            _exit(125);
        int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0)
            _exit(126);
        dup2(fd, 2);
        close(fd);
        execl(DAEMON, DAEMON, "--config", conf, (char *)NULL);
        _exit(127);
    }
    d->pid = pid;
    uint64_t end = ms_now() + 15000;
    while (ms_now() < end) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            d->pid = 0;
            if (status)
                *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            return -1;
        }
        if (log_has(d->log, "certforged: ready socket="))
            return 0;
        sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    d->pid = 0;
    if (status)
        *status = -1;
    return -1;
}

static int daemon_stop(dproc *d, int sig)
{
    if (d->pid <= 0)
        return -1;
    kill(d->pid, sig);
    uint64_t end = ms_now() + 20000;
    int st;
    while (ms_now() < end) {
        if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
            d->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        sleep_ms(10);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    d->pid = 0;
    return -1;
}

static void dump_log(const dproc *d)
{
    char *t = slurp(d->log);
    fprintf(stderr, "\n--- %s ---\n%s\n", d->log, t ? t : "");
    free(t);
}

static void fill_req(cf_issue_req *r, const csr_item *it)
{
    static const char amf[] = "AMF", tag[] = "ledger-test";
    memset(r, 0, sizeof(*r));
    r->profile = (cf_str){"nf", 2};
    r->csr_der = it->der;
    r->csr_len = it->len;
    r->nf_instance_id = (cf_str){it->uuid, strlen(it->uuid)};
    r->fqdns[0] = (cf_str){it->fqdn, strlen(it->fqdn)};
    r->n_fqdns = 1;
    r->nf_types[0] = (cf_str){amf, 3};
    r->n_nf_types = 1;
    r->requester = (cf_str){tag, sizeof(tag) - 1};
}

static int verify_cert(const uint8_t *der, size_t len)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (!x || p != der + len) {
        X509_free(x);
        return -1;
    }
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_add_cert(st, CA);
    X509_STORE_CTX_init(ctx, st, x, NULL);
    X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_X509_STRICT);
    int ok = X509_verify_cert(ctx) == 1;
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    X509_free(x);
    return ok ? 0 : -1;
}

static void hex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", p[i]);
    out[2 * n] = 0;
}

/* ------------------------------------------------------------ suite */

static int suite_init(void)
{
    char uri[1024];
    if (cf_softhsm_init(&H, "ldg", PIN) != 0)
        return -1;
    cf_build_path("certforge", CLI, sizeof(CLI));
    cf_build_path("certforged", DAEMON, sizeof(DAEMON));
    cf_softhsm_uri(&H, NULL, uri, sizeof(uri));
    snprintf(CA_PEM, sizeof(CA_PEM), "%s/ca.pem", H.dir);
    snprintf(DB, sizeof(DB), "%s/ledger.db", H.dir);
    if (strlen(H.dir) + sizeof("/ldg.sock") > sizeof(SOCK))
        return -1;
    memcpy(SOCK, H.dir, strlen(H.dir)); /* length checked above */
    memcpy(SOCK + strlen(H.dir), "/ldg.sock", sizeof("/ldg.sock"));
    if (cf_sh("'%s' keys generate --token '%s' --type ec-p256 --label ca >/dev/null", CLI, uri) ||
        cf_sh("'%s' ca init-root --token '%s' --key 'pkcs11:token=ldg;object=ca' --subject "
              "'/C=FI/O=5gc.mnc001.mcc001.3gppnetwork.org/CN=Ledger Test CA' --out '%s' "
              ">/dev/null",
              CLI, uri, CA_PEM))
        return -1;
    FILE *f = fopen(CA_PEM, "r");
    CA = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    if (!CA)
        return -1;
    return csr_pool_get(&POOL, "ec-p256", 64, NULL);
}

static int suite_clean(void)
{
    X509_free(CA);
    csr_pool_free(&POOL);
    cf_softhsm_cleanup(&H);
    return 0;
}

static void refused(const char *ledger, const char *want1, const char *want2)
{
    char conf[400];
    snprintf(conf, sizeof(conf), "%s/bad.conf", H.dir);
    write_conf(conf, ledger);
    dproc d;
    int st = 0;
    CU_ASSERT_EQUAL(daemon_start(&d, conf, &st), -1);
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
    refused(l, want, "bad.conf:10:");
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
            fill_req(&req, &POOL.items[(idx * 31 + sent) % POOL.n]);
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
        hex(r.serial.p, r.serial.len, GOT[k].serial);
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
    uint64_t end = ms_now() + 10000;
    while (atomic_load(&NGOT) < 3000 && ms_now() < end)
        sleep_ms(5);
    size_t before = atomic_load(&NGOT);
    CU_ASSERT_EQUAL(daemon_stop(&d, SIGKILL), 128 + SIGKILL);
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
    fill_req(&req, &POOL.items[1]);
    CU_ASSERT_EQUAL_FATAL(cf_issue_one(c, &req, 10000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_OK);

    /* another writer holds the lock: nothing can be recorded */
    sqlite3 *db = NULL;
    CU_ASSERT_EQUAL_FATAL(sqlite3_open(DB, &db), SQLITE_OK);
    CU_ASSERT_EQUAL_FATAL(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    for (int i = 0; i < 3; i++) {
        fill_req(&req, &POOL.items[2 + i]);
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
    fill_req(&req, &POOL.items[6]);
    CU_ASSERT_EQUAL_FATAL(cf_issue_one(c, &req, 10000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_OK);
    CU_ASSERT(r.cert.len > 0 && verify_cert(r.cert.p, r.cert.len) == 0);
    CU_ASSERT_TRUE(log_has(d.log, "event=ledger_recovered failed_batches=3"));
    char serial[41] = "";
    if (r.serial.len > 0 && r.serial.len <= 20)
        hex(r.serial.p, r.serial.len, serial);
    cf_client_close(c);
    int st = daemon_stop(&d, SIGTERM);
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

int main(void)
{
    if (access("/usr/lib/softhsm/libsofthsm2.so", R_OK) != 0) {
        fprintf(stderr, "SoftHSM2 is missing: skipped\n");
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("certforged ledger", suite_init, suite_clean);
    CU_add_test(s, "start-up refused without a usable ledger", test_refused);
    CU_add_test(s, "kill -9 mid-load: every received certificate is recorded", test_crash);
    CU_add_test(s, "unwritable ledger: LEDGER_FAILURE, then recovers", test_unwritable);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned fails = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
    CU_cleanup_registry();
    return fails ? 1 : 0;
}
