/* certforge-bench — issuance rates, measured side by side in one run.
 *
 * Modes (each run in a fresh child process, so no mode inherits another's
 * caches, threads or PKCS#11 state):
 *   floor  only the unavoidable primitives, tight loop over the same CSRs:
 *          public key from the raw point + CSR signature verify, one raw
 *          C_Sign of a digest, and the issued-signature verify when on
 *   naive  the OpenSSL 3 high-level path: d2i_X509_REQ, X509_REQ_verify,
 *          X509_new/X509_set_*, X509V3_EXT_conf_nid, X509_sign with a
 *          libp11 key
 *   core   certforge's pipeline in-process (no IPC)
 *   ipc    the built certforged on its Unix socket, driven through
 *          libcertforge (--connections x --depth requests in flight)
 *   openssl-x509  one `openssl x509 -req` process per CSR, CA key through
 *          the libp11 engine: the script an operator would write instead
 *
 * Every mode records each certificate's latency in a log-linear histogram
 * (bench_hist.h); the run prints p50/p90/p99/p99.9/max, errors by status,
 * and for ipc the daemon's CPU time and peak RSS.
 *
 * Set-up: a throwaway SoftHSM token in a temporary folder, a CA key made
 * on it and a self-signed CA certificate made with `certforge ca`, and a
 * pool of distinct NF CSRs (cached on disk).
 */
#include "bench/bench_common.h"
#include "common/outfile.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <openssl/crypto.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: certforge-bench [OPTIONS]\n"
            "\n"
            "Measures certificates per second and per-certificate latency, mode by mode,\n"
            "in one run.\n"
            "\n"
            "  --modes LIST      floor,naive,core,ipc,openssl-x509 (default: floor,naive,core)\n"
            "  --compare[=LIST]  run LIST (default floor,naive,core,ipc,openssl-x509) and end\n"
            "                    with a table of each mode's rate and its ratio to ipc\n"
            "  --threads LIST    worker threads per run, e.g. 1,2 (default 1,2)\n"
            "  --count N         certificates per run (default 4000)\n"
            "  --duration S      run each mode for S seconds instead of --count\n"
            "  --warmup N        certificates issued first, not counted (default 500;\n"
            "                    openssl-x509: at most 10)\n"
            "  --rounds R        runs per mode and thread count; the median is shown (default 3)\n"
            "  --csrs N          distinct CSRs in the pool (default 2000)\n"
            "  --csr-type TYPE   the CSRs' key type: ec-p256 (default), ec-p384, rsa-2048,\n"
            "                    rsa-3072, ed25519 (the spelling of certforge keys generate)\n"
            "  --ca-type TYPE    the CA key's type, the same choices\n"
            "  --verify MODE     all (default) | off: check every issued signature or none\n"
            "  --batch N         pipeline batch size (core, ipc; default 32)\n"
            "  --connections C   ipc: client connections (default 2)\n"
            "  --depth D         ipc: requests in flight per connection (default 64); core\n"
            "                    keeps C x D jobs in flight (at most 1024)\n"
            "  --rate R          ipc: open loop, R requests/s spread over the connections\n"
            "                    (latency counted from when each request was due)\n"
            "  --x509-count N    openssl-x509: certificates per run (default 100)\n"
            "  --x509-keep DIR   openssl-x509: copy ca.pem and one issued cert.pem to DIR\n"
            "  --sample S        record rate, p99 and (ipc) daemon RSS every S seconds (JSON)\n"
            "  --no-progress     no live progress line (shown on stderr when it is a terminal)\n"
            "  --hsm-latency-us L  sign through the PKCS#11 shim, which adds L us to every\n"
            "                    signature (a network HSM stand-in; docs/shim.md)\n"
            "  --sessions S      the CA key's sessions and sign_threads (default: sessions =\n"
            "                    workers, sign_threads = 0); up to S signatures in flight\n"
            "  --ledger-conninfo CONNINFO  ipc: certforged records into PostgreSQL instead of\n"
            "                    SQLite: a libpq conninfo (no password; ~/.pgpass) whose\n"
            "                    schema certforge_bench is DROPPED and re-created per run\n"
            "                    (tools/pg-cluster.sh start DIR prints one for a throwaway\n"
            "                    cluster)\n"
            "  --cache DIR       CSR pool cache (default ~/.cache/certforge-bench)\n"
            "  --json FILE       also write the results as JSON (one object per mode run);\n"
            "                    '-': the JSON alone on standard output, the table on\n"
            "                    standard error\n"
            "  --version         print the version\n"
            "\n"
            "COLUMNS\n"
            "  certs/s   certificates issued per second (median of the rounds)\n"
            "  us/cert   wall-clock microseconds per certificate per thread: threads / rate\n"
            "  p50..max  latency percentiles in ms. What is timed differs by mode, so compare\n"
            "            latencies within a mode, not across: submit to answer (ipc), submit to\n"
            "            completion (core), one item's work (floor, naive), process start to\n"
            "            exit (openssl-x509); CLOCK_MONOTONIC\n"
            "  errors    failed certificates; each error kind is listed under its row\n"
            "  dCPU s    ipc: CPU seconds certforged used during the run (user + system)\n"
            "  dRSS MiB  ipc: certforged's peak resident memory (VmHWM) at the end of the run\n"
            "\n"
            "EXAMPLES\n"
            "  certforge-bench --modes floor,naive,core --threads 1,2 --verify off\n"
            "  certforge-bench --compare --threads 1,2 --verify off --json out.json\n"
            "  certforge-bench --modes ipc --threads 2 --duration 600 --sample 10\n"
            "\n"
            "EXIT STATUS\n"
            "  0 all runs completed without errors; 1 a run failed; 2 usage error\n");
}

static int parse_list(const char *s, unsigned *out, int max)
{
    int n = 0;
    char *dup = strdup(s);
    for (char *t = strtok(dup, ","); t && n < max; t = strtok(NULL, ","))
        out[n++] = (unsigned)atoi(t);
    free(dup);
    return n;
}

static int bench_run_mode(const bench_setup *su, const char *mode, unsigned threads, bench_result *r)
{
    if (strcmp(mode, "floor") == 0)
        return bench_floor(su, threads, r);
    if (strcmp(mode, "naive") == 0)
        return bench_naive(su, threads, r);
    if (strcmp(mode, "core") == 0)
        return bench_core(su, threads, r);
    if (strcmp(mode, "ipc") == 0)
        return bench_ipc(su, threads, r);
    if (strcmp(mode, "openssl-x509") == 0)
        return bench_x509(su, threads, r);
    fprintf(stderr, "certforge-bench: unknown mode '%s' (floor, naive, core, ipc, openssl-x509)\n",
            mode);
    return -1;
}

/* Run one measurement in a child; the child writes a bench_result. */
static int run_child(const bench_setup *su, const char *mode, unsigned threads, bench_result *r)
{
    int fd[2];
    if (pipe(fd) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fd[0]);
        bench_result *res = calloc(1, sizeof(*res));
        if (!res)
            _exit(1);
        int rc = bench_run_mode(su, mode, threads, res);
        res->ok = rc == 0;
        size_t put = 0;
        while (put < sizeof(*res)) {
            ssize_t w = write(fd[1], (char *)res + put, sizeof(*res) - put);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            put += (size_t)w;
        }
        _exit(put == sizeof(*res) && rc == 0 ? 0 : 1);
    }
    close(fd[1]);
    size_t got = 0;
    while (got < sizeof(*r)) {
        ssize_t n = read(fd[0], (char *)r + got, sizeof(*r) - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    return got == sizeof(*r) && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int cmp_rate(const void *a, const void *b)
{
    double x = (*(bench_result *const *)a)->rate, y = (*(bench_result *const *)b)->rate;
    return x < y ? -1 : x > y;
}

static const char *const known_modes[] = {"floor", "naive", "core", "ipc", "openssl-x509"};

static bool known_mode(const char *m)
{
    for (size_t i = 0; i < sizeof(known_modes) / sizeof(known_modes[0]); i++)
        if (strcmp(m, known_modes[i]) == 0)
            return true;
    return false;
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static void print_row(const char *m, unsigned threads, const bench_result *r)
{
    const bench_hist_snap *l = &r->lat;
    printf("%-13s %7u %10.0f %9.1f %8.3f %8.3f %8.3f %8.3f %8.3f %7llu", m, threads, r->rate,
           1e6 * threads / r->rate, ms(bench_hist_quantile(l, 0.5)),
           ms(bench_hist_quantile(l, 0.9)), ms(bench_hist_quantile(l, 0.99)),
           ms(bench_hist_quantile(l, 0.999)), ms(l->max_ns), (unsigned long long)r->errors);
    if (r->has_daemon)
        printf(" %8.2f %8.1f", r->daemon_cpu_s, (double)r->daemon_hwm_kib / 1024.0);
    printf("\n");
    for (unsigned i = 0; i < r->nerr; i++)
        printf("%-13s   error %s: %llu\n", "", r->err[i].name, (unsigned long long)r->err[i].n);
}

/* Where and when the numbers were taken, in every JSON row: results are
 * compared across machines and days only with this beside them. */
static char run_meta[1024];
extern const char cf_git_rev[]; /* gitrev.c, written at build time (cmake/GitRevision.cmake) */

/* A printable, JSON-safe copy of at most n-1 bytes of s (no quotes,
 * backslashes or control characters). */
static void json_safe(char *d, size_t n, const char *s)
{
    size_t k = 0;
    for (; s && *s && k + 1 < n; s++)
        if ((unsigned char)*s >= 0x20 && *s != '"' && *s != '\\')
            d[k++] = *s;
    d[k] = 0;
}

/* The first line of a command's output, JSON-safe ("?" if it gave none). */
static void first_line(const char *cmd, char *out, size_t n)
{
    char line[256] = "";
    FILE *p = popen(cmd, "r");
    if (p && !fgets(line, sizeof(line), p))
        line[0] = 0;
    if (p)
        pclose(p);
    line[strcspn(line, "\n")] = 0;
    json_safe(out, n, line[0] ? line : "?");
}

static void run_meta_init(void)
{
    char host[256] = "?", model[160] = "?", date[32] = "?", kernel[128] = "?", softhsm[64],
         ossl[96];
    char raw[256];
    if (gethostname(raw, sizeof(raw)) == 0) {
        raw[sizeof(raw) - 1] = 0;
        json_safe(host, sizeof(host), raw);
    }
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(raw, sizeof(raw), f))
        if (strncmp(raw, "model name", 10) == 0 && strchr(raw, ':')) {
            raw[strcspn(raw, "\n")] = 0;
            json_safe(model, sizeof(model), strchr(raw, ':') + 2);
            break;
        }
    if (f)
        fclose(f);
    struct utsname u;
    if (uname(&u) == 0)
        json_safe(kernel, sizeof(kernel), u.release);
    first_line("softhsm2-util --version 2>/dev/null", softhsm, sizeof(softhsm));
    json_safe(ossl, sizeof(ossl), OpenSSL_version(OPENSSL_VERSION));
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm))
        strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(run_meta, sizeof(run_meta),
             "\"run\": {\"date\": \"%s\", \"host\": \"%s\", \"cpus\": %ld, \"cpu_model\": \"%s\", "
             "\"kernel\": \"%s\", \"openssl\": \"%s\", \"softhsm\": \"%s\", \"version\": \"%s\", "
             "\"git_rev\": \"%s\"}",
             date, host, sysconf(_SC_NPROCESSORS_ONLN), model, kernel, ossl, softhsm, CF_VERSION,
             cf_git_rev);
}

static void json_row(FILE *jf, const char *m, unsigned threads, unsigned rounds,
                     const bench_setup *su, const bench_result *r)
{
    fprintf(jf,
            "  {\"mode\": \"%s\", \"certs_per_s\": %.1f, \"seconds\": %.3f, \"done\": %llu, "
            "\"errors\": {",
            m, r->rate, r->seconds, (unsigned long long)r->done);
    for (unsigned i = 0; i < r->nerr; i++)
        fprintf(jf, "%s\"%s\": %llu", i ? ", " : "", r->err[i].name,
                (unsigned long long)r->err[i].n);
    fprintf(jf, "}, \"errors_total\": %llu, ", (unsigned long long)r->errors);
    bench_hist_json(jf, &r->lat);
    if (r->has_daemon)
        fprintf(jf,
                ", \"daemon\": {\"cpu_s\": %.3f, \"cpu_us_per_cert\": %.2f, "
                "\"peak_rss_kib\": %llu}",
                r->daemon_cpu_s, r->done ? 1e6 * r->daemon_cpu_s / (double)r->done : 0.0,
                (unsigned long long)r->daemon_hwm_kib);
    if (r->nsamples) {
        fprintf(jf, ", \"samples\": [");
        for (unsigned i = 0; i < r->nsamples; i++)
            fprintf(jf, "%s{\"t\": %.2f, \"certs_per_s\": %.1f, \"p99_ms\": %.4f, \"rss_kib\": %llu}",
                    i ? ", " : "", r->samples[i].t, r->samples[i].rate, r->samples[i].p99_ms,
                    (unsigned long long)r->samples[i].rss_kib);
        fprintf(jf, "]");
    }
    bool x509 = strcmp(m, "openssl-x509") == 0;
    size_t count = x509 ? (su->x509_count ? su->x509_count : 100) : su->count;
    size_t warm = x509 && su->warmup > 10 ? 10 : su->warmup;
    fprintf(jf,
            ", \"config\": {\"threads\": %u, \"count\": %zu, \"duration_s\": %.1f, "
            "\"warmup\": %zu, \"rounds\": %u, \"csrs\": %zu, \"csr_key\": \"%s\", "
            "\"ca_key\": \"%s\", \"verify_issued\": \"%s\", \"batch\": %u, "
            "\"connections\": %u, \"depth\": %u, \"rate\": %.1f, \"hsm_latency_us\": %u, "
            "\"sessions\": %u, \"sign_threads\": %u}, %s}",
            threads, su->duration > 0 ? 0 : count, su->duration, warm, rounds, su->pool.n,
            su->csr_key, su->ca_key, su->verify ? "all" : "off", su->batch, su->connections,
            su->depth, su->rate, su->hsm_latency_us, su->sessions ? su->sessions : threads,
            su->sessions, run_meta);
}

#define MAX_ROWS 64

typedef struct row {
    char mode[16];
    unsigned threads;
    double rate;
    unsigned long long errors; /* in the median run: its rate counts only successes */
    bool ok;
} row;

static void print_compare(const row *rows, int nrows)
{
    printf("\ncompare (median certs/s; ratio to ipc with the same threads)\n");
    printf("%-13s %7s %10s %10s\n", "mode", "threads", "certs/s", "vs ipc");
    for (int i = 0; i < nrows; i++) {
        double ipc = 0;
        for (int j = 0; j < nrows; j++)
            if (rows[j].ok && rows[j].threads == rows[i].threads &&
                strcmp(rows[j].mode, "ipc") == 0)
                ipc = rows[j].rate;
        if (!rows[i].ok) {
            printf("%-13s %7u %10s\n", rows[i].mode, rows[i].threads, "FAILED");
            continue;
        }
        char ratio[32] = "-";
        if (ipc > 0 && rows[i].rate > 0) {
            double q = rows[i].rate / ipc;
            if (q >= 0.1)
                snprintf(ratio, sizeof(ratio), "%.2f", q);
            else /* a baseline far below ipc: ipc is N times faster */
                snprintf(ratio, sizeof(ratio), "1/%.0f", ipc / rows[i].rate);
        }
        printf("%-13s %7u %10.0f %10s", rows[i].mode, rows[i].threads, rows[i].rate, ratio);
        if (rows[i].errors)
            printf("  WITH %llu ERRORS", rows[i].errors);
        printf("\n");
    }
}

int main(int argc, char **argv)
{
    bench_setup su;
    memset(&su, 0, sizeof(su));
    su.count = 4000;
    su.warmup = 500;
    su.batch = 32;
    su.connections = 2;
    su.depth = 64;
    su.verify = true;
    su.live = true;
    su.x509_count = 100;
    snprintf(su.csr_key, sizeof(su.csr_key), "ec-p256");
    snprintf(su.ca_key, sizeof(su.ca_key), "ec-p256");
    const char *modes = NULL, *threads_s = "1,2", *json = NULL, *cache = NULL;
    const char *compare = NULL;
    unsigned rounds = 3;
    size_t ncsrs = 2000;
    static const struct option opts[] = {
        {"modes", required_argument, NULL, 'm'},
        {"threads", required_argument, NULL, 't'},
        {"count", required_argument, NULL, 'n'},
        {"rounds", required_argument, NULL, 'r'},
        {"csrs", required_argument, NULL, 'c'},
        {"csr-type", required_argument, NULL, 'k'},
        {"ca-type", required_argument, NULL, 'K'},
        /* the names before the one spelling: still accepted, not shown */
        {"csr-key", required_argument, NULL, 'k'},
        {"ca-key", required_argument, NULL, 'K'},
        {"verify", required_argument, NULL, 'v'},
        {"batch", required_argument, NULL, 'b'},
        {"cache", required_argument, NULL, 'C'},
        {"json", required_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {"connections", required_argument, NULL, 'N'},
        {"depth", required_argument, NULL, 'D'},
        {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'w'},
        {"x509-count", required_argument, NULL, 'x'},
        {"x509-keep", required_argument, NULL, 'X'},
        {"compare", optional_argument, NULL, 'P'},
        {"sample", required_argument, NULL, 'S'},
        {"no-progress", no_argument, NULL, 'q'},
        {"rate", required_argument, NULL, 'R'},
        /* hidden: ipc without the ledger, only to measure what it costs */
        {"no-ledger", no_argument, NULL, 'L'},
        {"hsm-latency-us", required_argument, NULL, 'H'},
        {"sessions", required_argument, NULL, 's'},
        {"ledger-conninfo", required_argument, NULL, 'G'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'm':
            modes = optarg;
            break;
        case 't':
            threads_s = optarg;
            break;
        case 'n':
            su.count = strtoul(optarg, NULL, 10);
            break;
        case 'r':
            rounds = (unsigned)atoi(optarg);
            break;
        case 'c':
            ncsrs = strtoul(optarg, NULL, 10);
            break;
        case 'k':
            snprintf(su.csr_key, sizeof(su.csr_key), "%s", optarg);
            break;
        case 'K':
            snprintf(su.ca_key, sizeof(su.ca_key), "%s", optarg);
            break;
        case 'v':
            if (strcmp(optarg, "all") && strcmp(optarg, "off")) {
                fprintf(stderr, "certforge-bench: --verify all|off\n");
                return 2;
            }
            su.verify = strcmp(optarg, "all") == 0;
            break;
        case 'b':
            su.batch = (unsigned)atoi(optarg);
            break;
        case 'C':
            cache = optarg;
            break;
        case 'N':
            su.connections = (unsigned)atoi(optarg);
            break;
        case 'D':
            su.depth = (unsigned)atoi(optarg);
            break;
        case 'd':
            su.duration = strtod(optarg, NULL);
            if (!(su.duration > 0 && su.duration <= 86400)) {
                fprintf(stderr, "certforge-bench: --duration 0 < S <= 86400\n");
                return 2;
            }
            break;
        case 'w':
            su.warmup = strtoul(optarg, NULL, 10);
            break;
        case 'x':
            su.x509_count = strtoul(optarg, NULL, 10);
            break;
        case 'X':
            snprintf(su.x509_keep, sizeof(su.x509_keep), "%s", optarg);
            break;
        case 'P':
            compare = optarg ? optarg : "floor,naive,core,ipc,openssl-x509";
            break;
        case 'S':
            su.sample_s = strtod(optarg, NULL);
            if (!(su.sample_s >= 0.25)) {
                fprintf(stderr, "certforge-bench: --sample S >= 0.25\n");
                return 2;
            }
            break;
        case 'q':
            su.live = false;
            break;
        case 'R':
            su.rate = strtod(optarg, NULL);
            if (!(su.rate > 0 && su.rate <= 1e7)) {
                fprintf(stderr, "certforge-bench: --rate 0 < R <= 1e7\n");
                return 2;
            }
            break;
        case 'L':
            su.no_ledger = true;
            break;
        case 'G':
            su.ledger_conninfo = optarg;
            break;
        case 'H': {
            long v = strtol(optarg, NULL, 10);
            if (v < 0 || v > 60000000) {
                fprintf(stderr, "certforge-bench: --hsm-latency-us 0..60000000\n");
                return 2;
            }
            su.hsm_latency_us = (unsigned)v;
            break;
        }
        case 's': {
            long v = strtol(optarg, NULL, 10);
            if (v < 1 || v > 1024) {
                fprintf(stderr, "certforge-bench: --sessions 1..1024\n");
                return 2;
            }
            su.sessions = (unsigned)v;
            break;
        }
        case 'j':
            json = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("certforge-bench %s\n", CF_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (compare && modes && strcmp(compare, "floor,naive,core,ipc,openssl-x509") != 0) {
        fprintf(stderr, "certforge-bench: --compare=LIST or --modes LIST, not both\n");
        return 2;
    }
    if (compare && !modes)
        modes = compare;
    if (!modes)
        modes = "floor,naive,core";
    if (su.count == 0 || rounds == 0 || rounds > 15 || ncsrs == 0 || su.batch == 0 ||
        su.connections == 0 || su.connections > 256 || su.depth == 0 || su.depth > 65536 ||
        su.x509_count == 0) {
        usage(stderr);
        return 2;
    }
    {
        char *chk = strdup(modes);
        for (char *m = strtok(chk, ","); m; m = strtok(NULL, ","))
            if (!known_mode(m)) {
                fprintf(stderr,
                        "certforge-bench: unknown mode '%s' (floor, naive, core, ipc, "
                        "openssl-x509)\n",
                        m);
                free(chk);
                return 2;
            }
        free(chk);
    }
    unsigned th[16];
    int nth = parse_list(threads_s, th, 16);
    for (int i = 0; i < nth; i++)
        if (th[i] == 0 || th[i] > 64) {
            fprintf(stderr, "certforge-bench: --threads: 1..64 each\n");
            return 2;
        }
    char cache_buf[512];
    if (!cache) {
        const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        if (xdg)
            snprintf(cache_buf, sizeof(cache_buf), "%s/certforge-bench", xdg);
        else
            snprintf(cache_buf, sizeof(cache_buf), "%s/.cache/certforge-bench",
                     home ? home : "/tmp");
        char parent[600];
        snprintf(parent, sizeof(parent), "%s", cache_buf);
        char *sl = strrchr(parent, '/');
        if (sl) {
            *sl = 0;
            mkdir_p(parent);
        }
        cache = cache_buf;
    }
    if (csr_pool_get(&su.pool, su.csr_key, ncsrs, cache) != 0)
        return 1;
    if (bench_setup_ca(&su, argv[0]) != 0) {
        bench_setup_cleanup(&su);
        return 1;
    }
    FILE *jf = NULL;
    run_meta_init();
    cf_outfile jo;
    char jerr[4400];
    /* --json -: the JSON alone on standard output (as certforge's --json),
     * the table and progress on standard error */
    bool json_stdout = json && strcmp(json, "-") == 0;
    if (json_stdout) {
        int jfd = dup(STDOUT_FILENO);
        if (jfd < 0 || !(jf = fdopen(jfd, "w")) || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
            fprintf(stderr, "certforge-bench: --json -: cannot set up standard output\n");
            bench_setup_cleanup(&su);
            return 1;
        }
    } else if (json && cf_outfile_open(&jo, json, 0644, 0, jerr, sizeof(jerr)) != 0) {
        fprintf(stderr, "certforge-bench: --json %s\n", jerr);
        bench_setup_cleanup(&su);
        return 1;
    } else if (json)
        jf = jo.f;
    printf("certforge-bench: %s CA key in SoftHSM, %zu distinct %s CSRs, ", su.ca_key, su.pool.n,
           su.csr_key);
    if (su.hsm_latency_us > 0)
        printf("HSM latency %u us (shim), ", su.hsm_latency_us);
    if (su.sessions > 0)
        printf("%u sessions and sign threads, ", su.sessions);
    if (su.duration > 0)
        printf("%.0f s per run", su.duration);
    else
        printf("%zu certs per run (openssl-x509: %zu)", su.count, su.x509_count);
    printf(", warm-up %zu, verify_issued=%s, median of %u; ipc: %u connections x depth %u",
           su.warmup, su.verify ? "all" : "off", rounds, su.connections, su.depth);
    if (su.rate > 0)
        printf(", open loop at %.0f/s", su.rate);
    printf("\n");
    printf("%-13s %7s %10s %9s %8s %8s %8s %8s %8s %7s %8s %8s\n", "mode", "threads", "certs/s",
           "us/cert", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "errors", "dCPU s",
           "dRSS MiB");
    fflush(stdout);
    int failed = 0;
    char *mdup = strdup(modes);
    if (jf)
        fprintf(jf, "[\n");
    bool first = true;
    row rows[MAX_ROWS];
    int nrows = 0;
    bench_result *res = calloc(15, sizeof(*res));
    if (!res || !mdup)
        return 1;
    for (char *m = strtok(mdup, ","); m; m = strtok(NULL, ",")) {
        for (int ti = 0; ti < nth; ti++) {
            bench_result *ok[15];
            unsigned got = 0;
            for (unsigned r = 0; r < rounds; r++) {
                memset(&res[r], 0, sizeof(res[r]));
                if (run_child(&su, m, th[ti], &res[r]) == 0)
                    ok[got++] = &res[r];
            }
            row *rw = nrows < MAX_ROWS ? &rows[nrows++] : NULL;
            if (rw) {
                snprintf(rw->mode, sizeof(rw->mode), "%s", m);
                rw->threads = th[ti];
                rw->ok = got > 0;
                rw->rate = 0;
                rw->errors = 0;
            }
            if (got == 0) {
                printf("%-13s %7u %10s\n", m, th[ti], "FAILED");
                failed = 1;
                continue;
            }
            qsort(ok, got, sizeof(ok[0]), cmp_rate);
            bench_result *md = ok[got / 2];
            if (rw) {
                rw->rate = md->rate;
                rw->errors = md->errors;
            }
            print_row(m, th[ti], md);
            if (md->errors)
                failed = 1;
            if (jf) {
                fprintf(jf, "%s", first ? "" : ",\n");
                json_row(jf, m, th[ti], rounds, &su, md);
                first = false;
            }
            fflush(stdout);
        }
    }
    if (compare)
        print_compare(rows, nrows);
    if (jf) {
        fprintf(jf, "\n]\n");
        if (json_stdout) {
            if (fclose(jf) != 0) {
                fprintf(stderr, "certforge-bench: --json -: writing standard output failed\n");
                failed = 1;
            }
        } else if (cf_outfile_commit(&jo, jerr, sizeof(jerr)) != 0) {
            fprintf(stderr, "certforge-bench: %s\n", jerr);
            failed = 1;
        }
    }
    free(res);
    free(mdup);
    bench_setup_cleanup(&su);
    return failed;
}
