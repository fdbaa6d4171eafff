/* Shared by certforge-bench's modes. */
#ifndef CF_BENCH_COMMON_H
#define CF_BENCH_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench/bench_hist.h"
#include "bench/csr_pool.h"

typedef struct bench_setup {
    csr_pool pool;
    size_t count;   /* certificates per run (unless duration) */
    size_t warmup;  /* issued before the clock starts, not counted */
    double duration; /* seconds per run instead of count (0: count) */
    double rate;    /* ipc: open loop at this many requests/s in total (0: closed loop) */
    double sample_s; /* a sample of rate, p99, daemon RSS every so often (0: none) */
    size_t x509_count; /* openssl-x509: certificates per run (it is ~100x slower) */
    bool live;      /* one-line progress on stderr (a terminal) */
    char x509_keep[256]; /* openssl-x509: copy ca.pem and one cert.pem here */
    unsigned batch; /* pipeline batch (core) */
    unsigned connections, depth; /* ipc: client connections, requests in flight on each */
    bool verify;    /* verify every issued signature */
    bool no_ledger; /* ipc: certforged without its ledger (hidden --no-ledger: cost comparison) */
    const char *ledger_conninfo; /* ipc: record into PostgreSQL (schema certforge_bench) */
    unsigned hsm_latency_us; /* > 0: sign through the latency shim (a network HSM stand-in) */
    unsigned sessions;  /* > 0: the key's sessions and sign_threads (else workers, 0) */
    char csr_key[16], ca_key[16];
    char dir[256];       /* temporary folder: token, PIN, CA certificate, config */
    char module[256];    /* PKCS#11 module */
    char pin_file[300];
    char token_uri[1024];
    char key_uri[128]; /* "pkcs11:token=bench;object=ca" */
    char ca_pem[300];
    char pin[32];
} bench_setup;

#define BENCH_MAX_ERRNAMES 16
#define BENCH_MAX_SAMPLES 256

typedef struct bench_sample { /* one --sample interval */
    double t, rate, p99_ms;
    uint64_t rss_kib; /* daemon VmRSS (ipc), else 0 */
} bench_sample;

typedef struct bench_result {
    double rate; /* certificates per second (successes) */
    double seconds;
    uint64_t done, errors; /* answers, of which not OK */
    int ok;
    struct {
        char name[24];
        uint64_t n;
    } err[BENCH_MAX_ERRNAMES]; /* errors by status name */
    unsigned nerr;
    bool has_daemon;      /* ipc: certforged's resources over the measured run */
    double daemon_cpu_s;  /* utime + stime */
    uint64_t daemon_hwm_kib; /* VmHWM: peak RSS */
    unsigned nsamples;
    bench_sample samples[BENCH_MAX_SAMPLES];
    bench_hist_snap lat; /* per-request latency (ns), every answer */
} bench_result;

/* One recording thread's latency histogram and error count. */
typedef struct bench_rec {
    bench_hist h;
    _Atomic uint64_t errors;
} bench_rec;

void bench_result_error(bench_result *r, const char *name, uint64_t n);
/* Merge recs into r->lat; done = answers recorded. */
void bench_result_merge(bench_result *r, bench_rec *recs, unsigned n);

/* The live display (stderr, when a terminal) and the --sample series:
 * a thread reading recs ~4x/s. pid > 0: also the daemon's RSS. */
typedef struct bench_live bench_live;
bench_live *bench_live_start(const bench_setup *su, const char *mode, bench_rec *recs, unsigned n,
                             int pid);
void bench_live_stop(bench_live *l, bench_result *r); /* NULL is fine; fills r->samples */

uint64_t bench_ns(void); /* CLOCK_MONOTONIC */
/* /proc: utime+stime of pid in seconds; a "Vm...:" line of status in KiB.
 * -1 / 0 when unreadable. */
double bench_proc_cpu_s(int pid);
uint64_t bench_proc_kib(int pid, const char *field);

/* Make the token, the CA key and a self-signed CA certificate (through the
 * certforge CLI next to this binary). With su->hsm_latency_us > 0, then
 * point su->token_uri at the PKCS#11 shim (docs/shim.md) over that token,
 * adding that latency to every signature, for this process and its
 * children (certforged). */
int bench_setup_ca(bench_setup *su, const char *argv0);
void bench_setup_cleanup(bench_setup *su);


int bench_floor(const bench_setup *su, unsigned threads, bench_result *r);
int bench_naive(const bench_setup *su, unsigned threads, bench_result *r);
int bench_core(const bench_setup *su, unsigned threads, bench_result *r);
int bench_ipc(const bench_setup *su, unsigned threads, bench_result *r);
int bench_x509(const bench_setup *su, unsigned threads, bench_result *r);

/* The bench's certforged.conf: the throwaway token, its CA key and
 * certificate, the nf profile, a pipeline of `threads` workers; `extra`
 * (server, grants, log sections) appended. Writes su->dir/name. */
int bench_write_config(const bench_setup *su, unsigned threads, unsigned queue, const char *name,
                       const char *extra, char *path, size_t len);

double bench_now(void);
int mkdir_p(const char *path);

#endif
