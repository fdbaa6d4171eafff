/* certforged on a PostgreSQL ledger, end to end: real daemons (the built
 * certforged) on one SoftHSM token and CA key, one PostgreSQL schema in
 * the throwaway cluster tools/test.sh starts ($CF_TEST_PG_CONNINFO,
 * $CF_TEST_PG_DIR), clients through libcertforge that keep every serial
 * and certificate they RECEIVED.
 *
 *   - two engines (own sockets and pipeline.serial_prefix) issue 2 x 2000
 *     certificates at once (2 x 1000 under ASan): no serial twice, each engine's prefix on its
 *     serials, every received certificate in the ledger byte for byte and
 *     verifying against the CA; `certforge ledger list/show --config`
 *     reads them from PostgreSQL;
 *   - kill -9 of one engine under load while the other goes on; restarted,
 *     it issues again; every received certificate is in the ledger;
 *   - the PostgreSQL server stopped under load: requests fail with
 *     LEDGER_FAILURE and no certificate, the daemon logs ledger_failure;
 *     the server started again, the same daemon (no restart) issues again
 *     and logs ledger_recovered; every received certificate is recorded
 *     (its own suite: it needs $CF_TEST_PG_DIR, a cluster it may stop);
 *   - the PostgreSQL server hung (every process of the cluster SIGSTOPped):
 *     with ledger.pg_timeout_ms = 1000, requests come back LEDGER_FAILURE
 *     with no certificate (the open connection's INSERT unanswered, then
 *     the reconnect unanswered); SIGCONT, the same daemon issues again;
 *     the ledger holds exactly the certificates clients received (same
 *     suite; the stopped processes get SIGCONT on every way out, even if
 *     this test dies: cf_freeze).
 * Exits 77 (skipped) without a PostgreSQL server or SoftHSM; the outage
 * suite alone reports itself skipped without $CF_TEST_PG_DIR. Bounded:
 * every daemon stopped by its PID, every wait has a deadline. */
#include "tests/ledger/pg_engines.h"

#include "cf_test.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define PIN "Pg7-ledger-pin"
/* Certificates per engine in the two-engine test: 2 x 2000; 2 x 1000 under
 * ASan, where the daemons run about 15 times slower. */
#ifdef __SANITIZE_ADDRESS__
#define PER_ENGINE 1000
#else
#define PER_ENGINE 2000
#endif

/* What clients received. */
typedef struct got {
    char serial[41];
    uint8_t *cert;
    size_t len;
} got;

typedef struct load {
    const pg_engines *e;
    unsigned engine;
    size_t want; /* stop after this many certificates (0: until stop) */
    _Atomic int stop;
    /* results */
    got *got;
    _Atomic size_t ngot;
    size_t cap;
    _Atomic size_t ledger_failures, other_failures, failures_with_cert;
    pthread_t th;
} load;

static void *load_thread(void *arg)
{
    load *l = arg;
    cf_client *c = pge_client(l->e, l->engine);
    if (!c)
        return NULL;
    size_t sent = 0, inflight = 0;
    for (;;) {
        bool more =
            !atomic_load(&l->stop) && (!l->want || atomic_load(&l->ngot) + inflight < l->want);
        while (more && inflight < 32) {
            cf_issue_req req;
            fill_req(&req, &POOL.items[(l->engine * 17 + sent) % POOL.n], "nf");
            int r = cf_client_submit_issue(c, &req, NULL);
            if (r == 1)
                break;
            if (r != 0)
                goto out;
            sent++;
            inflight++;
            more = !l->want || atomic_load(&l->ngot) + inflight < l->want;
        }
        if (inflight == 0)
            break;
        cf_response r;
        if (cf_client_next_response(c, 10000, &r) != 0)
            break; /* the daemon is gone */
        inflight--;
        if (r.status == CF_ST_LEDGER_FAILURE) {
            atomic_fetch_add(&l->ledger_failures, 1);
            if (r.cert.len || r.serial.len)
                atomic_fetch_add(&l->failures_with_cert, 1);
            continue;
        }
        if (r.status != CF_ST_OK || r.serial.len == 0 || r.serial.len > 20) {
            atomic_fetch_add(&l->other_failures, 1);
            continue;
        }
        size_t k = atomic_load(&l->ngot);
        if (k >= l->cap)
            break;
        got *g = &l->got[k];
        cf_hex(r.serial.p, r.serial.len, g->serial);
        g->cert = malloc(r.cert.len);
        memcpy(g->cert, r.cert.p, r.cert.len);
        g->len = r.cert.len;
        atomic_store(&l->ngot, k + 1);
    }
out:
    cf_client_close(c);
    return NULL;
}

static void load_start(load *l, const pg_engines *e, unsigned engine, size_t want, size_t cap)
{
    memset(l, 0, sizeof(*l));
    l->e = e;
    l->engine = engine;
    l->want = want;
    l->cap = cap;
    l->got = calloc(cap, sizeof(got));
    pthread_create(&l->th, NULL, load_thread, l);
}

static void load_join(load *l)
{
    atomic_store(&l->stop, 1);
    pthread_join(l->th, NULL);
}

static void load_free(load *l)
{
    for (size_t i = 0; i < atomic_load(&l->ngot); i++)
        free(l->got[i].cert);
    free(l->got);
}

/* Wait (bounded) until cond(l) holds. */
static bool wait_for(const load *l, size_t ngot, size_t nfail, unsigned timeout_ms)
{
    uint64_t end = cf_now_ms() + timeout_ms;
    while (cf_now_ms() < end) {
        if (atomic_load(&l->ngot) >= ngot && atomic_load(&l->ledger_failures) >= nfail)
            return true;
        cf_sleep_ms(5);
    }
    return false;
}

static int cmp_serial(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every certificate the loads received: in the ledger with the very DER
 * received, verifying against the CA, no serial twice, each engine's
 * prefix. Returns how many were checked. */
static size_t check_received(const pg_engines *e, load *const *loads, size_t nloads)
{
    PGconn *db = pge_db(e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    PGresult *p =
        PQprepare(db, "by_serial", "SELECT cert FROM certificates WHERE serial = $1", 1, NULL);
    CU_ASSERT_EQUAL_FATAL(PQresultStatus(p), PGRES_COMMAND_OK);
    PQclear(p);
    size_t total = 0, missing = 0, differ = 0, bad = 0, wrong_prefix = 0, dup = 0;
    for (size_t k = 0; k < nloads; k++)
        total += atomic_load(&loads[k]->ngot);
    const char **all = calloc(total ? total : 1, sizeof(char *));
    size_t n = 0;
    for (size_t k = 0; k < nloads; k++) {
        load *l = loads[k];
        char pre[8];
        snprintf(pre, sizeof(pre), "%02x", e->prefix[l->engine]);
        for (size_t i = 0; i < atomic_load(&l->ngot); i++) {
            got *g = &l->got[i];
            all[n++] = g->serial;
            if (strncmp(g->serial, pre, 2) != 0)
                wrong_prefix++;
            const char *v[1] = {g->serial};
            const int fmt[1] = {0};
            PGresult *r = PQexecPrepared(db, "by_serial", 1, v, NULL, fmt, 1);
            if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
                if (missing++ < 3)
                    fprintf(stderr, "\n    received serial %s is not in the ledger\n", g->serial);
            } else if ((size_t)PQgetlength(r, 0, 0) != g->len ||
                       memcmp(PQgetvalue(r, 0, 0), g->cert, g->len) != 0) {
                differ++;
            } else if (verify_cert(g->cert, g->len) != 0) {
                bad++;
            }
            PQclear(r);
        }
    }
    qsort(all, n, sizeof(all[0]), cmp_serial);
    for (size_t i = 1; i < n; i++)
        dup += strcmp(all[i - 1], all[i]) == 0;
    free(all);
    PQfinish(db);
    CU_ASSERT_EQUAL(missing, 0);
    CU_ASSERT_EQUAL(differ, 0);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(wrong_prefix, 0);
    CU_ASSERT_EQUAL(dup, 0);
    return n;
}

/* ------------------------------------------------------------ tests */

static void test_two_engines(void)
{
    pg_engines e = {0};
    CU_ASSERT_EQUAL_FATAL(pge_init(&e, "two", 2), 0);
    CU_ASSERT_FATAL(pge_start(&e, 0) == 0);
    CU_ASSERT_FATAL(pge_start(&e, 1) == 0);
    CU_ASSERT_TRUE(log_has(e.d[0].log, "event=ledger_open backend=postgresql"));
    load a, b;
    load_start(&a, &e, 0, PER_ENGINE, PER_ENGINE);
    load_start(&b, &e, 1, PER_ENGINE, PER_ENGINE);
    pthread_join(a.th, NULL);
    pthread_join(b.th, NULL);
    CU_ASSERT_EQUAL(atomic_load(&a.ngot), PER_ENGINE);
    CU_ASSERT_EQUAL(atomic_load(&b.ngot), PER_ENGINE);
    CU_ASSERT_EQUAL(atomic_load(&a.ledger_failures) + atomic_load(&b.ledger_failures), 0);
    CU_ASSERT_EQUAL(atomic_load(&a.other_failures) + atomic_load(&b.other_failures), 0);
    load *ls[2] = {&a, &b};
    CU_ASSERT_EQUAL(check_received(&e, ls, 2), 2 * PER_ENGINE);
    char v[32], want[32];
    snprintf(want, sizeof(want), "%d", 2 * PER_ENGINE);
    pge_value(&e, "SELECT count(*) FROM certificates", v, sizeof(v));
    CU_ASSERT_STRING_EQUAL(v, want);
    pge_value(&e, "SELECT count(DISTINCT substr(serial, 1, 2)) FROM certificates", v, sizeof(v));
    CU_ASSERT_STRING_EQUAL(v, "2");
    /* the CLI reads the PostgreSQL ledger through either engine's config */
    CU_ASSERT_EQUAL(cf_sh("test \"$('%s' ledger list --config '%s' 2>/dev/null | wc -l)\" = %d",
                          CLI, e.conf[1], 2 * PER_ENGINE),
                    0);
    CU_ASSERT_EQUAL(cf_sh("'%s' ledger show %s --config '%s' | openssl x509 -noout -serial | "
                          "tr A-Z a-z | grep -q '=%s$'",
                          CLI, b.got[7].serial, e.conf[0], b.got[7].serial),
                    0);
    CU_ASSERT_EQUAL(cf_sh("'%s' ledger export --format jsonl --conninfo '%s' --limit 1 | jq -e "
                          "'.status == \"valid\" and (.serial | startswith(\"0a\") or "
                          "startswith(\"0b\"))' >/dev/null",
                          CLI, e.conninfo),
                    0);
    for (unsigned i = 0; i < 2; i++)
        CU_ASSERT_EQUAL(pge_stop(&e, i, SIGTERM), 0);
    load_free(&a);
    load_free(&b);
    pge_cleanup(&e);
}

static void test_kill9(void)
{
    pg_engines e = {0};
    CU_ASSERT_EQUAL_FATAL(pge_init(&e, "kill", 2), 0);
    CU_ASSERT_FATAL(pge_start(&e, 0) == 0);
    CU_ASSERT_FATAL(pge_start(&e, 1) == 0);
    load a, b, a2;
    load_start(&a, &e, 0, 0, 100000);
    load_start(&b, &e, 1, 1500, 1500);
    CU_ASSERT(wait_for(&a, 500, 0, 15000));
    CU_ASSERT_EQUAL(pge_stop(&e, 0, SIGKILL), 128 + SIGKILL);
    load_join(&a);
    pthread_join(b.th, NULL); /* the other engine goes on to its count */
    CU_ASSERT_EQUAL(atomic_load(&b.ngot), 1500);
    fprintf(stderr, "\n    engine 0 received %zu before SIGKILL", atomic_load(&a.ngot));
    /* restarted on the same ledger, it issues again */
    CU_ASSERT_FATAL(pge_start(&e, 0) == 0);
    load_start(&a2, &e, 0, 200, 200);
    pthread_join(a2.th, NULL);
    CU_ASSERT_EQUAL(atomic_load(&a2.ngot), 200);
    load *ls[3] = {&a, &b, &a2};
    check_received(&e, ls, 3);
    for (unsigned i = 0; i < 2; i++)
        CU_ASSERT_EQUAL(pge_stop(&e, i, SIGTERM), 0);
    load_free(&a);
    load_free(&b);
    load_free(&a2);
    pge_cleanup(&e);
}

static void test_pg_outage(void)
{
    pg_engines e = {0};
    CU_ASSERT_EQUAL_FATAL(pge_init(&e, "outage", 1), 0);
    CU_ASSERT_FATAL(pge_start(&e, 0) == 0);
    pid_t pid = e.d[0].pid;
    load a;
    load_start(&a, &e, 0, 0, 100000);
    CU_ASSERT(wait_for(&a, 300, 0, 15000));
    /* the server goes away under load */
    CU_ASSERT_EQUAL_FATAL(pge_cluster_stop(), 0);
    CU_ASSERT(wait_for(&a, 0, 50, 15000));
    size_t ok_during = atomic_load(&a.ngot);
    cf_sleep_ms(300);
    /* nothing released while it is away (a batch committed just before
     * the stop may still arrive: allow one pipeline batch's worth) */
    CU_ASSERT(atomic_load(&a.ngot) <= ok_during + 32);
    CU_ASSERT_EQUAL(atomic_load(&a.failures_with_cert), 0);
    CU_ASSERT_TRUE(log_has(e.d[0].log, "event=ledger_failure"));
    size_t ok_before = atomic_load(&a.ngot);
    /* back: the same daemon issues again, no restart */
    CU_ASSERT_EQUAL_FATAL(pge_cluster_start(), 0);
    CU_ASSERT(wait_for(&a, ok_before + 200, 0, 20000));
    load_join(&a);
    CU_ASSERT_EQUAL(e.d[0].pid, pid);
    CU_ASSERT_TRUE(log_has(e.d[0].log, "event=ledger_recovered"));
    fprintf(stderr, "\n    received %zu, LEDGER_FAILURE %zu, other failures %zu",
            atomic_load(&a.ngot), atomic_load(&a.ledger_failures), atomic_load(&a.other_failures));
    CU_ASSERT_EQUAL(atomic_load(&a.other_failures), 0);
    load *ls[1] = {&a};
    check_received(&e, ls, 1);
    int st = pge_stop(&e, 0, SIGTERM);
    CU_ASSERT_EQUAL(st, 0);
    if (st != 0) {
        char *t = slurp(e.d[0].log);
        fprintf(stderr, "\n--- %s ---\n%s\n", e.d[0].log, t ? t : "");
        free(t);
    }
    load_free(&a);
    pge_cleanup(&e);
}

/* ------------------------------------------------------------ a hung server */

/* SIGSTOP the cluster at $CF_TEST_PG_DIR: the postmaster (the first line
 * of DIR/data/postmaster.pid) first, so it forks no new backend, then
 * every child of it (backends, checkpointer, walwriter, ...), each waited
 * for until stopped (cf_freeze: cf_thaw_all resumes them, on every way
 * out). Returns how many were stopped, 0 on failure. */
static size_t stop_cluster(void)
{
    char path[600];
    snprintf(path, sizeof(path), "%.500s/data/postmaster.pid", getenv("CF_TEST_PG_DIR"));
    FILE *f = fopen(path, "r");
    long pm = -1;
    if (f) {
        if (fscanf(f, "%ld", &pm) != 1)
            pm = -1;
        fclose(f);
    }
    if (pm <= 0 || cf_freeze((pid_t)pm) != 0) {
        fprintf(stderr, "\n    cannot stop the postmaster (%s: %ld)\n", path, pm);
        return 0;
    }
    size_t n = 1;
    DIR *d = opendir("/proc");
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        pid_t pp = -1;
        if (*end || pid <= 0 || cf_proc_state((pid_t)pid, &pp) == 0 || pp != (pid_t)pm)
            continue;
        if (cf_freeze((pid_t)pid) != 0) {
            fprintf(stderr, "\n    cannot stop process %ld of the cluster\n", pid);
            n = 0;
            break;
        }
        n++;
    }
    if (d)
        closedir(d);
    return n;
}

/* One issue request, bounded here by the client's 20 s (the daemon's own
 * bound is pg_timeout_ms, 1 s): 0 with *r, or -1. */
static int issue(cf_client *c, size_t item, cf_response *r)
{
    cf_issue_req req;
    fill_req(&req, &POOL.items[item % POOL.n], "nf");
    return cf_issue_one(c, &req, 20000, r);
}

static void test_pg_hang(void)
{
    pg_engines e = {0};
    e.ledger = "busy_timeout_ms = 200; pg_timeout_ms = 1000;";
    CU_ASSERT_EQUAL_FATAL(pge_init(&e, "hang", 1), 0);
    CU_ASSERT_FATAL(pge_start(&e, 0) == 0);
    pid_t pid = e.d[0].pid;
    cf_client *c = pge_client(&e, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    cf_response r;
    char serial[2][41] = {"", ""};
    CU_ASSERT_EQUAL_FATAL(issue(c, 1, &r), 0);
    CU_ASSERT_EQUAL_FATAL(r.status, CF_ST_OK);
    cf_hex(r.serial.p, r.serial.len, serial[0]);

    /* the server hangs: postmaster and every backend stopped (at least the
     * postmaster and the engine's backend) */
    CU_ASSERT_FATAL(stop_cluster() >= 2);
    /* 1: the batch's INSERTs go unanswered on the open connection; 2: the
     * reconnect goes unanswered. Each: LEDGER_FAILURE, no certificate. */
    for (int i = 0; i < 2; i++) {
        int rc = issue(c, 2 + (size_t)i, &r);
        CU_ASSERT_EQUAL(rc, 0);
        if (rc != 0)
            continue;
        CU_ASSERT_EQUAL(r.status, CF_ST_LEDGER_FAILURE);
        CU_ASSERT_EQUAL(r.cert.len, 0);
        CU_ASSERT_EQUAL(r.serial.len, 0);
    }
    CU_ASSERT_TRUE(log_has(e.d[0].log, "the batch's INSERTs: no answer from the server within "
                                       "1000 ms (ledger.pg_timeout_ms): connection dropped, the "
                                       "next call reconnects"));
    CU_ASSERT_TRUE(log_has(e.d[0].log, "cannot reconnect: no answer from the server within "
                                       "1000 ms (ledger.pg_timeout_ms)"));
    cf_thaw_all();

    /* the server runs again: the same daemon issues, no restart */
    CU_ASSERT_EQUAL_FATAL(issue(c, 4, &r), 0);
    CU_ASSERT_EQUAL_FATAL(r.status, CF_ST_OK);
    cf_hex(r.serial.p, r.serial.len, serial[1]);
    CU_ASSERT_EQUAL(e.d[0].pid, pid);
    CU_ASSERT_TRUE(log_has(e.d[0].log, "event=ledger_recovered"));
    /* the ledger holds exactly the two certificates clients received: the
     * stalled backend, running again, found no COMMIT and rolled back */
    char want[100], v[200];
    snprintf(want, sizeof(want), "%s,%s", serial[0], serial[1]);
    pge_value(&e, "SELECT string_agg(serial, ',' ORDER BY issued_at_ms, serial) FROM certificates",
              v, sizeof(v));
    CU_ASSERT_STRING_EQUAL(v, want);
    cf_client_close(c);
    CU_ASSERT_EQUAL(pge_stop(&e, 0, SIGTERM), 0);
    pge_cleanup(&e);
}

static int outage_clean(void)
{
    cf_thaw_all();
    return dh_suite_clean();
}

/* A revocation made through one engine is on a CRL made by the other;
 * cRLNumbers from both engines strictly increase (one sequence in the
 * shared ledger); the CRL op of either answers the latest. */
static void test_crl_across_engines(void)
{
    pg_engines e = {0};
    char grants[400], extra[2][800], dir[2][600];
    snprintf(grants, sizeof(grants),
             "( { uid = %u; profiles = [\"nf\"]; ops = [\"issue\", \"status\", \"keys\", "
             "\"revoke\", \"crl\"]; } )",
             (unsigned)getuid());
    e.grants = grants;
    for (int i = 0; i < 2; i++) {
        snprintf(dir[i], sizeof(dir[i]), "%s/crl-e%d", H.dir, i);
        mkdir(dir[i], 0700);
        snprintf(extra[i], sizeof(extra[i]), "crl = { dir = \"%.500s\"; revoke_delay = \"1s\"; };",
                 dir[i]);
        e.extra[i] = extra[i];
    }
    CU_ASSERT_EQUAL_FATAL(pge_init(&e, "crl", 2), 0);
    CU_ASSERT_FATAL(pge_start(&e, 0) == 0);
    CU_ASSERT_FATAL(pge_start(&e, 1) == 0);
    cf_client *c0 = pge_client(&e, 0), *c1 = pge_client(&e, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c1);
    cf_issue_req req;
    fill_req(&req, &POOL.items[3], "nf");
    cf_response r;
    CU_ASSERT_EQUAL_FATAL(cf_issue_one(c0, &req, 10000, &r), 0);
    CU_ASSERT_EQUAL_FATAL(r.status, CF_ST_OK);
    uint8_t serial[20];
    size_t sl = r.serial.len;
    memcpy(serial, r.serial.p, sl);
    /* revoked through engine 1, which did not issue it */
    CU_ASSERT_EQUAL_FATAL(cf_revoke_one(c1, serial, sl, 1, (cf_str){"acme", 4}, 10000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_OK);
    CU_ASSERT_EQUAL(r.reason, 1);
    long num[2];
    for (int i = 0; i < 2; i++) {
        cf_client *c = i == 0 ? c1 : c0; /* engine 1 first, then engine 0 */
        CU_ASSERT_EQUAL_FATAL(cf_crl_one(c, (cf_str){"ca", 2}, 1, 20000, &r), 0);
        CU_ASSERT_EQUAL_FATAL(r.status, CF_ST_OK);
        const unsigned char *p = r.crl.p;
        X509_CRL *x = d2i_X509_CRL(NULL, &p, (long)r.crl.len);
        CU_ASSERT_PTR_NOT_NULL_FATAL(x);
        CU_ASSERT_EQUAL(X509_CRL_verify(x, X509_get0_pubkey(CA)), 1);
        ASN1_INTEGER *n = X509_CRL_get_ext_d2i(x, NID_crl_number, NULL, NULL);
        num[i] = n ? ASN1_INTEGER_get(n) : -1;
        ASN1_INTEGER_free(n);
        /* engine 0's CRL lists the revocation made through engine 1 */
        BIGNUM *bn = BN_bin2bn(serial, (int)sl, NULL);
        ASN1_INTEGER *ai = BN_to_ASN1_INTEGER(bn, NULL);
        X509_REVOKED *rv = NULL;
        CU_ASSERT_EQUAL(X509_CRL_get0_by_serial(x, &rv, ai), 1);
        ASN1_INTEGER_free(ai);
        BN_free(bn);
        X509_CRL_free(x);
    }
    CU_ASSERT(num[0] > 0 && num[1] > num[0]);
    /* the CRL op of engine 1 answers the latest, made by engine 0 */
    CU_ASSERT_EQUAL_FATAL(cf_crl_one(c1, (cf_str){"ca", 2}, 0, 10000, &r), 0);
    CU_ASSERT_EQUAL_FATAL(r.status, CF_ST_OK);
    const unsigned char *p = r.crl.p;
    X509_CRL *x = d2i_X509_CRL(NULL, &p, (long)r.crl.len);
    ASN1_INTEGER *n = x ? X509_CRL_get_ext_d2i(x, NID_crl_number, NULL, NULL) : NULL;
    CU_ASSERT(n && ASN1_INTEGER_get(n) >= num[1]);
    ASN1_INTEGER_free(n);
    X509_CRL_free(x);
    cf_client_close(c0);
    cf_client_close(c1);
    pge_stop_all(&e);
    pge_cleanup(&e);
}

static int suite_init(void)
{
    int rc = pge_available(false);
    return rc != 0 ? rc : dh_suite_init("pgl", PIN, "PG Ledger Test CA");
}

/* The outage test stops and starts the cluster: only one it may stop
 * ($CF_TEST_PG_DIR, tools/pg-cluster.sh); else its suite is skipped. */
static int outage_init(void)
{
    int rc = pge_available(true);
    return rc != 0 ? rc : dh_suite_init("pgo", PIN, "PG Outage Test CA");
}

int main(int argc, char **argv)
{
    static const cf_test tests[] = {
        {"two engines, one ledger, issuing at once: no serial twice", test_two_engines},
        {"kill -9 of one engine under load; restart", test_kill9},
        {"a CRL made by one engine lists a revocation made through the other",
         test_crl_across_engines},
    };
    static const cf_test outage_tests[] = {
        {"PostgreSQL stopped under load: LEDGER_FAILURE, then recovers", test_pg_outage},
        {"PostgreSQL hung (SIGSTOP): LEDGER_FAILURE within pg_timeout_ms, then recovers",
         test_pg_hang},
    };
    static const cf_suite suites[] = {
        CF_SUITE("certforged on a PostgreSQL ledger", suite_init, dh_suite_clean, tests),
        CF_SUITE("certforged, PostgreSQL stopped", outage_init, outage_clean, outage_tests),
    };
    return CF_TEST_MAIN(argc, argv, suites);
}
