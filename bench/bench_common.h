/* Shared by certforge-bench's modes. */
#ifndef CF_BENCH_COMMON_H
#define CF_BENCH_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "csr_pool.h"

typedef struct bench_setup {
    csr_pool pool;
    size_t count;   /* certificates per run */
    unsigned batch; /* pipeline batch (core) */
    unsigned connections, depth; /* ipc: client connections, requests in flight on each */
    bool verify;    /* verify every issued signature */
    char csr_key[16], ca_key[16];
    char dir[256];       /* temporary folder: token, PIN, CA certificate, config */
    char module[256];    /* PKCS#11 module */
    char pin_file[300];
    char token_uri[1024];
    char key_uri[128]; /* "pkcs11:token=bench;object=ca" */
    char ca_pem[300];
    char pin[32];
} bench_setup;

typedef struct bench_result {
    double rate; /* certificates per second */
    double seconds;
    uint64_t done, errors;
    int ok;
} bench_result;

/* Make the token, the CA key and a self-signed CA certificate (through the
 * certforge CLI next to this binary). */
int bench_setup_ca(bench_setup *su, const char *argv0);
void bench_setup_cleanup(bench_setup *su);

/* Run `mode` with `threads` threads over su->count certificates. */
int bench_run_mode(const bench_setup *su, const char *mode, unsigned threads, bench_result *r);

int bench_floor(const bench_setup *su, unsigned threads, bench_result *r);
int bench_naive(const bench_setup *su, unsigned threads, bench_result *r);
int bench_core(const bench_setup *su, unsigned threads, bench_result *r);
int bench_ipc(const bench_setup *su, unsigned threads, bench_result *r);

/* The bench's certforged.conf: the throwaway token, its CA key and
 * certificate, the nf profile, a pipeline of `threads` workers; `extra`
 * (server, grants, log sections) appended. Writes su->dir/name. */
int bench_write_config(const bench_setup *su, unsigned threads, unsigned queue, const char *name,
                       const char *extra, char *path, size_t len);

double bench_now(void);
int mkdir_p(const char *path);

#endif
