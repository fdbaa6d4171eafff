/* ledger-scale — what the ledger and CRLs cost as they grow (issue 18).
 *
 * A throwaway SoftHSM token and CA (as certforge-bench makes them), a fresh
 * ledger (SQLite in the bench's folder, or a schema certforge_bench in a
 * PostgreSQL database with --ledger-conninfo), then:
 *
 *   growth  for each N of --rows (ascending), fill the ledger up to N
 *           synthetic certificates through the ledger API (ledger_record,
 *           10 000 rows per transaction, no signing: fast), then measure
 *           - insert rate: transactions of 64 rows (what certforged's
 *             recorder commits under load), synchronous durability as
 *             configured for certforged, for --seconds; and where its
 *             time went, per transaction (the "ins-io" line): bytes and
 *             calls written (/proc/self/io wchar, syscw), bytes sent to
 *             and read from storage (write_bytes, read_bytes), user and
 *             system CPU (getrusage) and wall time — wall minus CPU is
 *             mostly fsync wait (SQLite; on PostgreSQL the I/O and CPU
 *             are the server's, so only wall time means anything there);
 *           - lookup latency: ledger_find of random recorded serials
 *             (what `certforge ledger show SERIAL` does), p50/p99;
 *           - bytes on disk per certificate (SQLite: database + WAL after a
 *             checkpoint; PostgreSQL: pg_total_relation_size of the table);
 *           - `ledger list --revoked` time (ledger_list, revoked only), with
 *             0.1 % of the rows revoked.
 *   crl     for each R of --crl (ascending), R revoked unexpired
 *           certificates of the CA's key, then one crl_make (list the
 *           revocations, encode, sign in the HSM, verify with OpenSSL,
 *           store in the ledger, publish the file): its time, size and the
 *           process's peak RSS growth over it.
 *
 * Every row's certificate is the CA certificate's DER (a realistic size
 * for the bytes-per-certificate figure); serials are 16 random-looking
 * bytes derived from the row number (so lookups need no list in memory).
 * Revocations for the figures are made with one SQL UPDATE (the ledger
 * API revokes one certificate per durable transaction, which at a million
 * rows would measure fsync, not the ledger).
 *
 *   ledger-scale [--rows 0,100000,1000000] [--crl 10000,100000]
 *                [--seconds S] [--ledger-conninfo CONNINFO] [--keep]
 *                [--ca-key ec-p256|ec-p384|rsa-2048|rsa-3072|ed25519]
 */
#include "bench/bench_common.h"
#include "engine/config/config.h"
#include "engine/crl/crl.h"
#include "engine/issuer/issuer.h"
#include "engine/ledger/ledger.h"
#include "engine/signer/signer.h"

#include <getopt.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#define FILL_TX 10000 /* rows per fill transaction */
#define INSERT_TX 64  /* rows per measured transaction */
#define LOOKUPS 2000
#define MAX_POINTS 16

typedef struct scale {
    bench_setup su;
    const char *conninfo; /* NULL: SQLite */
    char db[4200];        /* SQLite path */
    char pg_conninfo[1200];
    cfg_config *cfg;
    sgn_service *sgn;
    iss_set *iss;
    ledger *l;
    uint8_t *cert;
    size_t cert_len;
    size_t rows;    /* rows 0..rows-1 recorded */
    size_t revoked; /* rows marked revoked (the first ones recorded) */
    int64_t now;
    double seconds;
} scale;

static uint64_t mix(uint64_t x) /* splitmix64's finaliser: distinct in, distinct out */
{
    x += UINT64_C(0x9e3779b97f4a7c15);
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

/* Row i's serial: 32 hex digits, first below 8 (a positive INTEGER). */
static void serial_of(size_t i, char out[33])
{
    snprintf(out, 33, "%016" PRIx64 "%016" PRIx64, mix(i) & UINT64_C(0x7fffffffffffffff),
             mix(i ^ 0x5bd1e995u));
}

typedef struct rowbuf {
    ledger_rec r;
    char serial[33], uuid[37], sans[128];
} rowbuf;

static void row_make(const scale *s, size_t i, rowbuf *b)
{
    serial_of(i, b->serial);
    uint64_t u = mix(i ^ 0xa5a5a5a5u), v = mix(i ^ 0x3c3c3c3cu);
    snprintf(b->uuid, sizeof(b->uuid), "%08x-%04x-4%03x-8%03x-%012" PRIx64, (unsigned)(u >> 32),
             (unsigned)(u >> 16) & 0xffff, (unsigned)u & 0xfff, (unsigned)(v >> 52) & 0xfff,
             v & UINT64_C(0xffffffffffff));
    snprintf(b->sans, sizeof(b->sans), "URI:urn:uuid:%s,DNS:nf-%zu.5gc.example", b->uuid, i);
    b->r = (ledger_rec){
        .serial = b->serial,
        .profile = "nf",
        .issuer_key = "ca",
        .subject = "C=FI,O=5gc.mnc001.mcc001.3gppnetwork.org",
        .sans = b->sans,
        .nf_instance_id = b->uuid,
        .not_before = s->now,
        .not_after = s->now + 90 * 86400,
        .cert = s->cert,
        .cert_len = s->cert_len,
        .requester_uid = 0,
        .requester = "ledger-scale",
        .issued_at_ms = s->now * 1000,
        .status = "valid",
        .revoked_at = -1,
    };
}

/* Record rows [s->rows, upto) in transactions of `per` rows. */
static int record_rows(scale *s, size_t upto, size_t per)
{
    rowbuf *b = calloc(per, sizeof(*b));
    ledger_rec *r = calloc(per, sizeof(*r));
    char err[512];
    int rc = b && r ? 0 : -1;
    while (rc == 0 && s->rows < upto) {
        size_t n = upto - s->rows < per ? upto - s->rows : per;
        for (size_t k = 0; k < n; k++) {
            row_make(s, s->rows + k, &b[k]);
            r[k] = b[k].r;
        }
        if (ledger_record(s->l, r, n, err, sizeof(err)) != 0) {
            fprintf(stderr, "ledger-scale: recording rows %zu..: %s\n", s->rows, err);
            rc = -1;
        } else
            s->rows += n;
    }
    free(b);
    free(r);
    return rc;
}

/* One SQL statement on the bench's ledger (outside the ledger API). */
static int sql(scale *s, const char *q)
{
    if (!s->conninfo) {
        sqlite3 *db = NULL;
        char *msg = NULL;
        int rc = sqlite3_open(s->db, &db);
        if (rc == SQLITE_OK) {
            sqlite3_busy_timeout(db, 10000);
            rc = sqlite3_exec(db, q, NULL, NULL, &msg);
        }
        if (rc != SQLITE_OK)
            fprintf(stderr, "ledger-scale: %s: %s\n", q, msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        sqlite3_close(db);
        return rc == SQLITE_OK ? 0 : -1;
    }
    PGconn *c = PQconnectdb(s->pg_conninfo);
    PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, q) : NULL;
    int ok = r && (PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK);
    if (!ok)
        fprintf(stderr, "ledger-scale: %s: %s", q, r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return ok ? 0 : -1;
}

/* Mark the first `want` rows (in recording order) revoked. */
static int revoke_upto(scale *s, size_t want)
{
    if (want <= s->revoked)
        return 0;
    if (want > s->rows && record_rows(s, want, FILL_TX) != 0)
        return -1;
    char q[600];
    snprintf(q, sizeof(q),
             "UPDATE certificates SET status = 'revoked', revoked_at = %" PRId64 ", "
             "revocation_reason = 'keyCompromise' WHERE serial IN (SELECT serial FROM certificates "
             "WHERE status = 'valid' ORDER BY issued_at_ms, serial LIMIT %zu)",
             s->now, want - s->revoked);
    if (sql(s, q) != 0)
        return -1;
    s->revoked = want;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int found_cb(const ledger_rec *r, void *arg)
{
    (void)r;
    ++*(size_t *)arg;
    return 0;
}

static double disk_bytes(scale *s)
{
    if (!s->conninfo) {
        if (sql(s, "PRAGMA wal_checkpoint(TRUNCATE)") != 0)
            return -1;
        double total = 0;
        static const char *const sfx[] = {"", "-wal"};
        for (size_t i = 0; i < 2; i++) {
            char p[4220];
            struct stat st;
            snprintf(p, sizeof(p), "%s%s", s->db, sfx[i]);
            if (stat(p, &st) == 0)
                total += (double)st.st_size;
        }
        return total;
    }
    PGconn *c = PQconnectdb(s->pg_conninfo);
    PGresult *r = PQstatus(c) == CONNECTION_OK
                      ? PQexec(c, "SELECT pg_total_relation_size('certificates')")
                      : NULL;
    double v = r && PQresultStatus(r) == PGRES_TUPLES_OK ? atof(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    PQfinish(c);
    return v;
}

/* What the insert run costs this process (/proc/self/io and getrusage):
 * write() bytes and calls, bytes sent to storage, CPU. */
typedef struct io_mark {
    double wchar, syscw, write_bytes, read_bytes, user_s, sys_s;
} io_mark;

static void io_now(io_mark *m)
{
    memset(m, 0, sizeof(*m));
    FILE *f = fopen("/proc/self/io", "r");
    char k[64];
    unsigned long long v;
    while (f && fscanf(f, "%63[^:]: %llu\n", k, &v) == 2) {
        if (strcmp(k, "wchar") == 0)
            m->wchar = (double)v;
        else if (strcmp(k, "syscw") == 0)
            m->syscw = (double)v;
        else if (strcmp(k, "write_bytes") == 0)
            m->write_bytes = (double)v;
        else if (strcmp(k, "read_bytes") == 0)
            m->read_bytes = (double)v;
    }
    if (f)
        fclose(f);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        m->user_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
        m->sys_s = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    }
}

static int growth_point(scale *s, size_t n)
{
    if (record_rows(s, n, FILL_TX) != 0 || revoke_upto(s, s->rows / 1000) != 0)
        return -1;
    size_t at = s->rows;
    double bytes = disk_bytes(s);
    /* insert rate: transactions of INSERT_TX rows for s->seconds */
    io_mark io0, io1;
    io_now(&io0);
    double t0 = bench_now();
    size_t before = s->rows;
    while (bench_now() - t0 < s->seconds)
        if (record_rows(s, s->rows + INSERT_TX, INSERT_TX) != 0)
            return -1;
    double wall = bench_now() - t0;
    double ins = (double)(s->rows - before) / wall;
    io_now(&io1);
    double tx = (double)(s->rows - before) / INSERT_TX;
    /* lookups of random recorded serials */
    uint64_t lat[LOOKUPS];
    char err[512];
    size_t hits = 0;
    for (size_t k = 0; k < LOOKUPS && s->rows; k++) {
        char ser[33];
        serial_of((size_t)(mix(k + at) % s->rows), ser);
        uint64_t t = bench_ns();
        if (ledger_find(s->l, ser, found_cb, &hits, err, sizeof(err)) != 1) {
            fprintf(stderr, "ledger-scale: lookup of %s: %s\n", ser, err);
            return -1;
        }
        lat[k] = bench_ns() - t;
    }
    size_t nl = s->rows ? LOOKUPS : 0;
    qsort(lat, nl, sizeof(lat[0]), cmp_u64);
    /* ledger list --revoked */
    ledger_filter f = {.revoked_only = true};
    size_t listed = 0;
    t0 = bench_now();
    if (ledger_list(s->l, &f, found_cb, &listed, err, sizeof(err)) != 0) {
        fprintf(stderr, "ledger-scale: list --revoked: %s\n", err);
        return -1;
    }
    double list_ms = (bench_now() - t0) * 1e3;
    printf("growth  %10zu %10.0f %9.1f %9.1f %10.0f %8zu %10.1f\n", at, ins,
           nl ? (double)lat[nl / 2] / 1e3 : 0.0, nl ? (double)lat[nl * 99 / 100] / 1e3 : 0.0,
           at ? bytes / (double)at : 0.0, listed, list_ms);
    /* where the insert run's time went, per 64-row transaction */
    printf("ins-io  %10zu %10.0f KiB written (write), %.0f KiB to storage, %.0f KiB read from "
           "storage, %.1f write calls, user %.0f us, sys %.0f us, wall %.0f us per tx\n",
           at, (io1.wchar - io0.wchar) / 1024 / tx, (io1.write_bytes - io0.write_bytes) / 1024 / tx,
           (io1.read_bytes - io0.read_bytes) / 1024 / tx, (io1.syscw - io0.syscw) / tx,
           (io1.user_s - io0.user_s) * 1e6 / tx, (io1.sys_s - io0.sys_s) * 1e6 / tx,
           wall * 1e6 / tx);
    fflush(stdout);
    return 0;
}

static int crl_point(scale *s, size_t want)
{
    if (revoke_upto(s, want) != 0)
        return -1;
    const iss_issuer *is = iss_issuer_at(s->iss, 0);
    char dir[400], err[768];
    snprintf(dir, sizeof(dir), "%s/crl", s->su.dir);
    if (mkdir_p(dir) != 0)
        return -1;
    /* peak RSS over the CRL alone: reset the high-water mark first */
    FILE *cr = fopen("/proc/self/clear_refs", "w");
    if (cr) {
        fputs("5", cr);
        fclose(cr);
    }
    uint64_t rss0 = bench_proc_kib(getpid(), "VmRSS:");
    crl_made m;
    double t0 = bench_now();
    if (crl_make(is, 0, s->sgn, s->l, dir, s->now + 1, 86400, NULL, &m, err, sizeof(err)) != 0) {
        fprintf(stderr, "ledger-scale: CRL of %zu entries: %s\n", want, err);
        return -1;
    }
    double ms = (bench_now() - t0) * 1e3;
    uint64_t hwm = bench_proc_kib(getpid(), "VmHWM:");
    printf("crl     %10zu %10zu %9.1f %12zu %10.1f %10.1f\n", s->rows, m.entries, ms, m.len,
           (double)rss0 / 1024.0, hwm > rss0 ? (double)(hwm - rss0) / 1024.0 : 0.0);
    fflush(stdout);
    return m.entries == want ? 0 : -1;
}

static int parse_sizes(const char *arg, size_t *out, int max)
{
    int n = 0;
    char *dup = strdup(arg), *save = NULL;
    for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *end;
        unsigned long long v = strtoull(t, &end, 10);
        if (*end || n == max || (n && v < out[n - 1])) {
            free(dup);
            return -1;
        }
        out[n++] = (size_t)v;
    }
    free(dup);
    return n;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: ledger-scale [--rows LIST] [--crl LIST] [--seconds S]\n"
               "                    [--ledger-conninfo CONNINFO] [--keep] [--ca-key TYPE]\n"
               "\n"
               "  --rows LIST     ledger sizes to measure at, ascending (default 0,100000)\n"
               "  --crl LIST      CRL sizes (revoked certificates), ascending (default 10000)\n"
               "  --seconds S     insert-rate measurement per size (default 3)\n"
               "  --ledger-conninfo CONNINFO  PostgreSQL instead of SQLite (schema\n"
               "                  certforge_bench, dropped and re-created)\n"
               "  --keep          keep the bench's folder (token, ledger) and print it\n"
               "  --ca-key TYPE   the CA's key (default ec-p256; ec-p384, rsa-2048,\n"
               "                  rsa-3072, ed25519): its CRLs' signature algorithm\n"
               "\n"
               "growth rows: rows, insert rows/s (64 per transaction), lookup p50 and p99 us,\n"
               "bytes per certificate on disk, revoked rows listed, list time ms.\n"
               "crl rows: ledger rows, CRL entries, make ms (list, encode, HSM sign,\n"
               "verify, store, publish), DER bytes, RSS before MiB, peak RSS growth MiB.\n"
               "EXIT STATUS: 0 measured; 1 a step failed; 2 usage.\n");
}

int main(int argc, char **argv)
{
    static scale S;
    scale *s = &S;
    size_t rows[MAX_POINTS] = {0, 100000}, crls[MAX_POINTS] = {10000};
    int nrows = 2, ncrl = 1;
    bool keep = false;
    const char *ca_key = "ec-p256";
    s->seconds = 3;
    static const struct option opts[] = {{"rows", required_argument, NULL, 'r'},
                                         {"crl", required_argument, NULL, 'c'},
                                         {"seconds", required_argument, NULL, 's'},
                                         {"ledger-conninfo", required_argument, NULL, 'p'},
                                         {"keep", no_argument, NULL, 'k'},
                                         {"ca-key", required_argument, NULL, 'K'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'r':
            if ((nrows = parse_sizes(optarg, rows, MAX_POINTS)) < 0)
                goto bad;
            break;
        case 'c':
            if ((ncrl = parse_sizes(optarg, crls, MAX_POINTS)) < 0)
                goto bad;
            break;
        case 's':
            s->seconds = atof(optarg);
            if (s->seconds <= 0)
                goto bad;
            break;
        case 'p':
            s->conninfo = optarg;
            break;
        case 'k':
            keep = true;
            break;
        case 'K':
            if (strcmp(optarg, "ec-p256") != 0 && strcmp(optarg, "ec-p384") != 0 &&
                strcmp(optarg, "rsa-2048") != 0 && strcmp(optarg, "rsa-3072") != 0 &&
                strcmp(optarg, "ed25519") != 0)
                goto bad;
            ca_key = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            goto bad;
        }
    }
    if (optind != argc)
        goto bad;

    snprintf(s->su.csr_key, sizeof(s->su.csr_key), "ec-p256");
    snprintf(s->su.ca_key, sizeof(s->su.ca_key), "%s", ca_key);
    s->su.batch = 32;
    s->su.ledger_conninfo = s->conninfo;
    s->now = (int64_t)time(NULL);
    char cfg_path[400], err[1024];
    if (bench_setup_ca(&s->su, argv[0]) != 0 ||
        bench_write_config(&s->su, 1, 64, "scale.conf", NULL, cfg_path, sizeof(cfg_path)) != 0 ||
        cfg_load(cfg_path, &s->cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "ledger-scale: set-up failed%s%s\n", s->cfg ? "" : ": ",
                s->cfg ? "" : err);
        goto fail;
    }
    if (sgn_open_local(s->cfg, &s->sgn, err, sizeof(err)) != 0 ||
        iss_open(s->cfg, s->sgn, &s->iss, err, sizeof(err)) != 0) {
        fprintf(stderr, "ledger-scale: CA key: %s\n", err);
        goto fail;
    }
    FILE *pf = fopen(s->su.ca_pem, "r");
    X509 *ca = pf ? PEM_read_X509(pf, NULL, NULL, NULL) : NULL;
    if (pf)
        fclose(pf);
    unsigned char *der = NULL;
    int dl = ca ? i2d_X509(ca, &der) : -1;
    X509_free(ca);
    if (dl <= 0) {
        fprintf(stderr, "ledger-scale: cannot read %s\n", s->su.ca_pem);
        goto fail;
    }
    s->cert = der;
    s->cert_len = (size_t)dl;
    ledger_opts lo = {.busy_timeout_ms = 10000};
    if (s->conninfo) {
        snprintf(s->pg_conninfo, sizeof(s->pg_conninfo),
                 "%s options=-csearch_path=certforge_bench", s->conninfo);
        lo.backend = LEDGER_POSTGRESQL;
        lo.conninfo = s->pg_conninfo;
    } else {
        if (snprintf(s->db, sizeof(s->db), "%s/ledger.db", s->su.dir) >= (int)sizeof(s->db))
            goto fail;
        lo.backend = LEDGER_SQLITE;
        lo.path = s->db;
    }
    if (ledger_open(&lo, &s->l, err, sizeof(err)) != 0) {
        fprintf(stderr, "ledger-scale: %s\n", err);
        goto fail;
    }
    printf("ledger-scale: %s ledger, %zu-byte certificate per row, %.1f s insert runs\n",
           s->conninfo ? "postgresql" : "sqlite", s->cert_len, s->seconds);
    printf("growth  %10s %10s %9s %9s %10s %8s %10s\n", "rows", "ins/s", "find p50", "find p99",
           "bytes/cert", "revoked", "list ms");
    for (int i = 0; i < nrows; i++)
        if (growth_point(s, rows[i]) != 0)
            goto fail;
    printf("crl     %10s %10s %9s %12s %10s %10s\n", "rows", "entries", "make ms", "bytes",
           "RSS MiB", "+peak MiB");
    for (int i = 0; i < ncrl; i++)
        if (crl_point(s, crls[i]) != 0)
            goto fail;
    ledger_close(s->l);
    iss_close(s->iss);
    sgn_close(s->sgn);
    cfg_free(s->cfg);
    OPENSSL_free(s->cert);
    if (keep)
        printf("kept: %s\n", s->su.dir);
    else
        bench_setup_cleanup(&s->su);
    return 0;
bad:
    usage(stderr);
    return 2;
fail:
    if (s->l)
        ledger_close(s->l);
    if (s->iss)
        iss_close(s->iss);
    if (s->sgn)
        sgn_close(s->sgn);
    if (s->cfg)
        cfg_free(s->cfg);
    bench_setup_cleanup(&s->su);
    return 1;
}
