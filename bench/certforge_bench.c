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
 *
 * Set-up: a throwaway SoftHSM token in a temporary folder, a CA key made
 * on it and a self-signed CA certificate made with `certforge ca`, and a
 * pool of distinct NF CSRs (cached on disk).
 */
#include "bench_common.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: certforge-bench [OPTIONS]\n"
            "\n"
            "Measures certificates per second, mode by mode, in one run.\n"
            "\n"
            "  --modes LIST      floor,naive,core,ipc (default: floor,naive,core)\n"
            "  --threads LIST    worker threads per run, e.g. 1,2 (default 1,2)\n"
            "  --count N         certificates per run (default 4000)\n"
            "  --rounds R        runs per mode and thread count; the median is shown (default 3)\n"
            "  --csrs N          distinct CSRs in the pool (default 2000)\n"
            "  --csr-key TYPE    ec-p256 (default), ec-p384, rsa-2048, rsa-3072, ed25519\n"
            "  --ca-key TYPE     ec-p256 (default), ec-p384, rsa-2048, rsa-3072, ed25519\n"
            "  --verify MODE     all (default) | off: check every issued signature or none\n"
            "  --batch N         pipeline batch size (core, ipc; default 32)\n"
            "  --connections C   ipc: client connections (default 2)\n"
            "  --depth D         ipc: requests in flight per connection (default 64)\n"
            "  --cache DIR       CSR pool cache (default ~/.cache/certforge-bench)\n"
            "  --json FILE       also write the results as JSON (one object per mode run)\n"
            "\n"
            "EXAMPLES\n"
            "  certforge-bench --modes floor,naive,core --threads 1,2 --verify off\n"
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
        bench_result res;
        memset(&res, 0, sizeof(res));
        int rc = bench_run_mode(su, mode, threads, &res);
        res.ok = rc == 0;
        ssize_t w = write(fd[1], &res, sizeof(res));
        _exit(w == (ssize_t)sizeof(res) && rc == 0 ? 0 : 1);
    }
    close(fd[1]);
    ssize_t n = read(fd[0], r, sizeof(*r));
    close(fd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    return n == (ssize_t)sizeof(*r) && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int cmp_rate(const void *a, const void *b)
{
    double x = ((const bench_result *)a)->rate, y = ((const bench_result *)b)->rate;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    bench_setup su;
    memset(&su, 0, sizeof(su));
    su.count = 4000;
    su.batch = 32;
    su.connections = 2;
    su.depth = 64;
    su.verify = true;
    snprintf(su.csr_key, sizeof(su.csr_key), "ec-p256");
    snprintf(su.ca_key, sizeof(su.ca_key), "ec-p256");
    const char *modes = "floor,naive,core", *threads_s = "1,2", *json = NULL, *cache = NULL;
    unsigned rounds = 3;
    size_t ncsrs = 2000;
    static const struct option opts[] = {
        {"modes", required_argument, NULL, 'm'},   {"threads", required_argument, NULL, 't'},
        {"count", required_argument, NULL, 'n'},   {"rounds", required_argument, NULL, 'r'},
        {"csrs", required_argument, NULL, 'c'},    {"csr-key", required_argument, NULL, 'k'},
        {"ca-key", required_argument, NULL, 'K'},  {"verify", required_argument, NULL, 'v'},
        {"batch", required_argument, NULL, 'b'},   {"cache", required_argument, NULL, 'C'},
        {"json", required_argument, NULL, 'j'},    {"help", no_argument, NULL, 'h'},
        {"connections", required_argument, NULL, 'N'}, {"depth", required_argument, NULL, 'D'},
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
        case 'j':
            json = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (su.count == 0 || rounds == 0 || rounds > 15 || ncsrs == 0 || su.batch == 0 ||
        su.connections == 0 || su.connections > 256 || su.depth == 0 || su.depth > 65536) {
        usage(stderr);
        return 2;
    }
    unsigned th[16];
    int nth = parse_list(threads_s, th, 16);
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
    if (json && !(jf = fopen(json, "w"))) {
        fprintf(stderr, "certforge-bench: cannot write %s: %s\n", json, strerror(errno));
        bench_setup_cleanup(&su);
        return 1;
    }
    printf("certforge-bench: %s CA key in SoftHSM, %zu distinct %s CSRs, %zu certs per run, "
           "verify_issued=%s, median of %u\n",
           su.ca_key, su.pool.n, su.csr_key, su.count, su.verify ? "all" : "off", rounds);
    printf("%-8s %8s %14s %12s %10s\n", "mode", "threads", "certs/s", "us/cert", "errors");
    int failed = 0;
    char *mdup = strdup(modes);
    if (jf)
        fprintf(jf, "[\n");
    bool first = true;
    for (char *m = strtok(mdup, ","); m; m = strtok(NULL, ",")) {
        for (int ti = 0; ti < nth; ti++) {
            bench_result res[15];
            unsigned got = 0;
            for (unsigned r = 0; r < rounds; r++)
                if (run_child(&su, m, th[ti], &res[got]) == 0)
                    got++;
            if (got == 0) {
                printf("%-8s %8u %14s\n", m, th[ti], "FAILED");
                failed = 1;
                continue;
            }
            qsort(res, got, sizeof(res[0]), cmp_rate);
            bench_result *md = &res[got / 2];
            printf("%-8s %8u %14.0f %12.1f %10llu\n", m, th[ti], md->rate,
                   1e6 * th[ti] / md->rate, (unsigned long long)md->errors);
            if (md->errors)
                failed = 1;
            if (jf) {
                fprintf(jf,
                        "%s  {\"mode\": \"%s\", \"certs_per_s\": %.1f, \"errors\": %llu, "
                        "\"config\": {\"threads\": %u, \"count\": %zu, \"rounds\": %u, "
                        "\"csr_key\": \"%s\", \"ca_key\": \"%s\", \"verify_issued\": \"%s\", "
                        "\"batch\": %u}}",
                        first ? "" : ",\n", m, md->rate, (unsigned long long)md->errors, th[ti],
                        su.count, rounds, su.csr_key, su.ca_key, su.verify ? "all" : "off",
                        su.batch);
                first = false;
            }
            fflush(stdout);
        }
    }
    if (jf) {
        fprintf(jf, "\n]\n");
        fclose(jf);
    }
    free(mdup);
    bench_setup_cleanup(&su);
    return failed;
}
