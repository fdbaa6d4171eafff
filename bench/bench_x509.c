/* openssl-x509: the script an operator would write instead of certforge —
 * one `openssl x509 -req` process per CSR, the CA key in SoftHSM through
 * the libp11 OpenSSL engine, the NF profile's extensions from an extfile;
 * `threads` processes at a time.
 *
 *   openssl x509 -req -in csr-N.pem -CA ca.pem -engine pkcs11 -CAkeyform engine
 *     -CAkey 'pkcs11:token=bench;object=ca;type=private?pin-source=file:PINFILE'
 *     -extfile nf.ext -extensions nf -days 90 -set_serial 0xRANDOM -out cert-N.pem
 *
 * One SoftHSM token copy per thread: SoftHSM rewrites its token files on
 * every C_Login, and concurrent processes on one token folder read each
 * other's half-written files ("No matching initialized token was found").
 * An operator running this script in parallel would give each worker its
 * own copy of the token (the same CA key) for the same reason; each
 * thread's processes get SOFTHSM2_CONF naming theirs.
 *
 * The PIN: libp11's engine (0.4.12) reads `pin-source=file:` in the key
 * URI, so the command line names the PIN file (mode 0600, in the bench's
 * private folder), never the PIN. PKCS11_MODULE_PATH names SoftHSM and
 * SOFTHSM2_CONF its throwaway token folder. The extfile takes each CSR's
 * NF instance ID and FQDN from the environment ($ENV::CF_NF_UUID,
 * $ENV::CF_NF_FQDN), so one file serves every process.
 *
 * CSRs are written as PEM files before the clock starts; latency is spawn
 * to exit of each process. Errors are counted by exit status. */
#include "bench/bench_common.h"
#include "cf_testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#define X509_WARMUP_MAX 10 /* a process each: more buys nothing */

extern char **environ;

typedef struct x509_ctx {
    const bench_setup *su;
    char dir[400], ext[460], key_uri[800];
    char (*conf_env)[512]; /* per thread: "SOFTHSM2_CONF=<its token copy's conf>" */
    size_t limit;
    uint64_t deadline;
    bool record;
    _Atomic size_t next;
    bench_rec *recs;
    _Atomic unsigned rec_next;
    pthread_mutex_t mu;    /* errors by status */
    uint64_t by_exit[257]; /* 0..255 exit codes; 256: killed by a signal */
    char first_error[512];
} x509_ctx;

static int write_inputs(x509_ctx *xc)
{
    const bench_setup *su = xc->su;
    snprintf(xc->dir, sizeof(xc->dir), "%s/x509", su->dir);
    if (mkdir_p(xc->dir) != 0)
        return -1;
    for (size_t i = 0; i < su->pool.n; i++) {
        char p[480];
        snprintf(p, sizeof(p), "%s/csr-%zu.pem", xc->dir, i);
        const unsigned char *d = su->pool.items[i].der;
        X509_REQ *req = d2i_X509_REQ(NULL, &d, (long)su->pool.items[i].len);
        FILE *f = req ? fopen(p, "w") : NULL;
        int ok = f && PEM_write_X509_REQ(f, req) == 1;
        if (f && fclose(f) != 0)
            ok = 0;
        X509_REQ_free(req);
        if (!ok)
            return -1;
    }
    /* The NF profile as bench_write_config's "nf" profile issues it:
     * TS 33.310 / RFC 9310 NF certificate extensions. */
    snprintf(xc->ext, sizeof(xc->ext), "%s/nf.ext", xc->dir);
    FILE *f = fopen(xc->ext, "w");
    if (!f)
        return -1;
    fprintf(f, "[nf]\n"
               "subjectAltName = critical,URI:urn:uuid:$ENV::CF_NF_UUID,DNS:$ENV::CF_NF_FQDN\n"
               "keyUsage = critical,digitalSignature\n"
               "extendedKeyUsage = serverAuth,clientAuth\n"
               "subjectKeyIdentifier = hash\n"
               "authorityKeyIdentifier = keyid:always\n"
               "crlDistributionPoints = URI:http://crl.5gc.mnc001.mcc001.3gppnetwork.org/nf.crl\n"
               "# NFTypes (RFC 9310): SEQUENCE OF IA5String { \"AMF\" }\n"
               "1.3.6.1.5.5.7.1.34 = DER:30:05:16:03:41:4D:46\n");
    if (fclose(f) != 0)
        return -1;
    snprintf(xc->key_uri, sizeof(xc->key_uri),
             "pkcs11:token=bench;object=ca;type=private?pin-source=file:%s", su->pin_file);
    return 0;
}

/* A copy of the token folder and a softhsm2.conf naming it, per thread. */
static int write_token_copies(x509_ctx *xc, unsigned threads)
{
    for (unsigned t = 0; t < threads; t++) {
        char conf[460];
        snprintf(conf, sizeof(conf), "%s/softhsm2-%u.conf", xc->dir, t);
        if (cf_sh("rm -rf '%s/tokens-%u' && cp -a '%s/tokens' '%s/tokens-%u'", xc->dir, t,
                  xc->su->dir, xc->dir, t) != 0)
            return -1;
        FILE *f = fopen(conf, "w");
        if (!f)
            return -1;
        fprintf(f, "directories.tokendir = %s/tokens-%u\nobjectstore.backend = file\n"
                   "log.level = ERROR\nslots.removable = false\n", xc->dir, t);
        if (fclose(f) != 0)
            return -1;
        snprintf(xc->conf_env[t], sizeof(xc->conf_env[t]), "SOFTHSM2_CONF=%s", conf);
    }
    return 0;
}

/* One process; returns its wait status, or -1 if it could not start. */
static int issue_one(x509_ctx *xc, size_t i, const char *errlog, const char *conf_env)
{
    const bench_setup *su = xc->su;
    const csr_item *it = &su->pool.items[i % su->pool.n];
    char in[480], out[480], serial[40], env_uuid[64], env_fqdn[128];
    snprintf(in, sizeof(in), "%s/csr-%zu.pem", xc->dir, i % su->pool.n);
    snprintf(out, sizeof(out), "%s/cert-%zu.pem", xc->dir, i % su->pool.n);
    uint8_t rnd[8];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return -1;
    unsigned long long sn = 0;
    for (int k = 0; k < 8; k++)
        sn = sn << 8 | rnd[k];
    snprintf(serial, sizeof(serial), "0x%016llx", sn & 0x7fffffffffffffffull);
    snprintf(env_uuid, sizeof(env_uuid), "CF_NF_UUID=%s", it->uuid);
    snprintf(env_fqdn, sizeof(env_fqdn), "CF_NF_FQDN=%s", it->fqdn);
    char module_env[300];
    snprintf(module_env, sizeof(module_env), "PKCS11_MODULE_PATH=%s", su->module);

    size_t ne = 0;
    while (environ[ne])
        ne++;
    char **envp = calloc(ne + 5, sizeof(*envp));
    if (!envp)
        return -1;
    size_t k = 0;
    for (size_t e = 0; e < ne; e++)
        if (strncmp(environ[e], "CF_NF_", 6) && strncmp(environ[e], "PKCS11_MODULE_PATH=", 19) &&
            strncmp(environ[e], "SOFTHSM2_CONF=", 14))
            envp[k++] = environ[e];
    envp[k++] = (char *)conf_env;
    envp[k++] = env_uuid;
    envp[k++] = env_fqdn;
    envp[k++] = module_env;
    envp[k] = NULL;
    char *argv[] = {"openssl",
                    "x509",
                    "-req",
                    "-in",
                    in,
                    "-CA",
                    (char *)su->ca_pem,
                    "-engine",
                    "pkcs11",
                    "-CAkeyform",
                    "engine",
                    "-CAkey",
                    xc->key_uri,
                    "-extfile",
                    xc->ext,
                    "-extensions",
                    "nf",
                    "-days",
                    "90",
                    "-set_serial",
                    serial,
                    "-out",
                    out,
                    NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, errlog, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, "openssl", &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    free(envp);
    if (rc != 0)
        return -1;
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return st;
}

static void *x509_thread(void *arg)
{
    x509_ctx *xc = arg;
    unsigned me = atomic_fetch_add(&xc->rec_next, 1);
    bench_rec *rec = &xc->recs[me];
    char errlog[480];
    snprintf(errlog, sizeof(errlog), "%s/stderr-%u.txt", xc->dir, me);
    for (;;) {
        size_t i = atomic_fetch_add(&xc->next, 1);
        uint64_t t = bench_ns();
        if (xc->limit ? i >= xc->limit : t >= xc->deadline)
            break;
        int st = issue_one(xc, i, errlog, xc->conf_env[me]);
        if (!xc->record)
            continue;
        bench_hist_record(&rec->h, bench_ns() - t);
        if (st == 0)
            continue;
        atomic_fetch_add_explicit(&rec->errors, 1, memory_order_relaxed);
        pthread_mutex_lock(&xc->mu);
        unsigned slot = st < 0 ? 255 : WIFEXITED(st) ? (unsigned)WEXITSTATUS(st) : 256;
        if (!xc->first_error[0]) {
            FILE *f = fopen(errlog, "r");
            size_t n = f ? fread(xc->first_error, 1, sizeof(xc->first_error) - 1, f) : 0;
            xc->first_error[n] = 0;
            if (f)
                fclose(f);
            if (!n)
                snprintf(xc->first_error, sizeof(xc->first_error), "%s",
                         st < 0 ? "cannot start openssl" : "no message");
        }
        xc->by_exit[slot]++;
        pthread_mutex_unlock(&xc->mu);
    }
    return NULL;
}

static void x509_phase(x509_ctx *xc, unsigned threads, size_t limit, uint64_t deadline, bool record)
{
    pthread_t th[64];
    atomic_store(&xc->next, 0);
    atomic_store(&xc->rec_next, 0);
    xc->limit = limit;
    xc->deadline = deadline;
    xc->record = record;
    unsigned started = 0;
    for (unsigned i = 0; i < threads; i++)
        if (pthread_create(&th[i], NULL, x509_thread, xc) == 0)
            started++;
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
}

int bench_x509(const bench_setup *su, unsigned threads, bench_result *r)
{
    x509_ctx *xc = calloc(1, sizeof(*xc));
    if (!xc)
        return -1;
    xc->su = su;
    pthread_mutex_init(&xc->mu, NULL);
    if (threads > 64)
        threads = 64;
    xc->recs = calloc(threads, sizeof(*xc->recs));
    xc->conf_env = calloc(threads, sizeof(*xc->conf_env));
    if (!xc->recs || !xc->conf_env || write_inputs(xc) != 0 || write_token_copies(xc, threads) != 0) {
        fprintf(stderr, "openssl-x509: cannot write the CSRs, extfile and token copies under %s\n",
                su->dir);
        free(xc->recs);
        free(xc->conf_env);
        free(xc);
        return -1;
    }
    size_t warm = su->warmup < X509_WARMUP_MAX ? su->warmup : X509_WARMUP_MAX;
    if (warm)
        x509_phase(xc, threads, warm, 0, false);
    size_t count = su->x509_count ? su->x509_count : 100;
    uint64_t t0 = bench_ns();
    bench_live *live = bench_live_start(su, "openssl-x509", xc->recs, threads, 0);
    x509_phase(xc, threads, su->duration > 0 ? 0 : count, t0 + (uint64_t)(su->duration * 1e9),
               true);
    r->seconds = (double)(bench_ns() - t0) / 1e9;
    bench_live_stop(live, r);
    bench_result_merge(r, xc->recs, threads);
    for (unsigned s = 0; s <= 256; s++) {
        if (!xc->by_exit[s])
            continue;
        char name[24];
        if (s == 256)
            snprintf(name, sizeof(name), "SIGNALLED");
        else
            snprintf(name, sizeof(name), "EXIT_%u", s);
        bench_result_error(r, name, xc->by_exit[s]);
        r->errors += xc->by_exit[s];
    }
    if (r->errors)
        fprintf(stderr, "openssl-x509: %llu errors, first:\n%s\n", (unsigned long long)r->errors,
                xc->first_error);
    r->rate = (double)(r->done - r->errors) / r->seconds;
    /* --x509-keep DIR: the CA and one issued certificate, for a check. */
    if (su->x509_keep[0] && (mkdir_p(su->x509_keep) != 0 ||
                             cf_sh("cp '%s' '%s/ca.pem' && cp '%s/cert-0.pem' '%s/cert.pem'",
                                   su->ca_pem, su->x509_keep, xc->dir, su->x509_keep) != 0))
        fprintf(stderr, "openssl-x509: cannot keep a certificate in %s\n", su->x509_keep);
    free(xc->recs);
    free(xc->conf_env);
    pthread_mutex_destroy(&xc->mu);
    free(xc);
    return 0;
}
