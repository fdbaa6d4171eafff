/* The issuance pipeline end to end, in-process: a real SoftHSM token (and
 * the fault shim over it), a CA made with the certforge CLI, the engine
 * built from a config file as certforged builds it. Certificates are
 * checked with OpenSSL as a relying party would; failures by exact status. */
#include "bench/csr_pool.h"
#include "cf_testutil.h"
#include "engine/config/config.h"
#include "engine/core/engine.h"
#include "engine/csr/csr.h"

#include "cf_test.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include "common/sigalg.h"

static cf_softhsm H;
static char CA_PEM[400];
static X509 *CA;
static csr_pool POOL;
static int (*shim_control)(const char *, const char *);

static int suite_init(void)
{
    char cli[512], uri[1024];
    if (cf_softhsm_init(&H, "pipe", "1234") != 0)
        return -1;
    cf_build_path("certforge", cli, sizeof(cli));
    cf_softhsm_uri(&H, NULL, uri, sizeof(uri));
    snprintf(CA_PEM, sizeof(CA_PEM), "%s/ca.pem", H.dir);
    if (cf_sh("'%s' keys generate --token '%s' --type ec-p256 --label ca >/dev/null", cli, uri) ||
        cf_sh("'%s' keys generate --token '%s' --type ec-p256 --label k2 >/dev/null", cli, uri) ||
        cf_sh("'%s' ca init-root --token '%s' --key 'pkcs11:token=pipe;object=ca' --subject "
              "'/C=FI/O=5gc.mnc001.mcc001.3gppnetwork.org/CN=Test NF CA' --out '%s' >/dev/null",
              cli, uri, CA_PEM))
        return -1;
    FILE *f = fopen(CA_PEM, "r");
    CA = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    if (!CA || csr_pool_get(&POOL, "ec-p256", 64, NULL) != 0)
        return -1;
    setenv("CF_SHIM_MODULE", H.module, 1);
    void *dl = dlopen(CF_SHIM_PATH, RTLD_NOW | RTLD_LOCAL);
    shim_control = dl ? (int (*)(const char *, const char *))dlsym(dl, "cf_shim_control") : NULL;
    return shim_control ? 0 : -1;
}

static int suite_clean(void)
{
    X509_free(CA);
    csr_pool_free(&POOL);
    cf_softhsm_cleanup(&H);
    return 0;
}

/* --- harness --------------------------------------------------------------- */

typedef struct harness {
    cfg_config *cfg;
    cf_engine *eng;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t completed;
    int fail_record; /* make the record hook fail */
    size_t recorded;
} harness;

static void on_done(pipe_job *j, void *arg)
{
    harness *h = arg;
    (void)j;
    pthread_mutex_lock(&h->mu);
    h->completed++;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

static int on_record(pipe_job *const *jobs, size_t n, void *arg)
{
    harness *h = arg;
    for (size_t i = 0; i < n; i++)
        if (jobs[i]->status != CF_ST_OK ||
            (jobs[i]->kind == PIPE_JOB_ISSUE ? !jobs[i]->cert : jobs[i]->sig_len == 0))
            return -1; /* only successes, with their certificate or signature */
    pthread_mutex_lock(&h->mu);
    h->recorded += n;
    pthread_mutex_unlock(&h->mu);
    return h->fail_record ? -1 : 0;
}

/* The CA key's sessions and signing threads (0: the defaults). */
static unsigned SIGN_THREADS;

static int open_engine(harness *h, bool through_shim, const char *verify, unsigned workers)
{
    char threads[80] = "";
    if (SIGN_THREADS)
        snprintf(threads, sizeof(threads), " sessions = %u; sign_threads = %u;", SIGN_THREADS,
                 SIGN_THREADS);
    memset(h, 0, sizeof(*h));
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    char path[400], err[1024];
    snprintf(path, sizeof(path), "%s/certforged.conf", H.dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f,
            "tokens = ( { name = \"ca\"; uri = "
            "\"pkcs11:token=pipe?module-path=%s&pin-source=file:%s\"; } );\n"
            "keys = ( { name = \"ca\"; token = \"ca\"; uri = \"pkcs11:object=ca\";%s },\n"
            "         { name = \"k2\"; token = \"ca\"; uri = \"pkcs11:object=k2\";%s } );\n"
            "issuers = ( { name = \"ca\"; key = \"ca\"; certificate = \"%s\"; } );\n"
            "profiles = ( {\n"
            "  name = \"nf\"; type = \"nf\"; issuer = \"ca\";\n"
            "  subject = { C = \"FI\"; O = \"5gc.mnc001.mcc001.3gppnetwork.org\"; };\n"
            "  validity = { default = \"90d\"; max = \"365d\"; };\n"
            "  eku = [\"serverAuth\", \"clientAuth\"];\n"
            "  crl_dp = \"http://crl.example.org/nf.crl\";\n"
            "} );\n"
            "pipeline = { workers = %u; queue = 64; batch = 8; verify_issued = \"%s\"; };\n",
            through_shim ? CF_SHIM_PATH : H.module, H.pin_file, threads, threads, CA_PEM, workers,
            verify);
    fclose(f);
    if (cfg_load(path, &h->cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "\ncfg_load: %s\n", err);
        return -1;
    }
    cf_engine_hooks hooks = {.done = on_done, .done_arg = h, .record = on_record, .record_arg = h};
    if (cf_engine_open(h->cfg, NULL, &hooks, &h->eng, err, sizeof(err)) != 0) {
        fprintf(stderr, "\ncf_engine_open: %s\n", err);
        return -1;
    }
    return 0;
}

static void close_engine(harness *h)
{
    cf_engine_close(h->eng);
    cfg_free(h->cfg);
}

static void fill(pipe_job *j, const csr_item *it)
{
    static const char amf[] = "AMF";
    memset(&j->req, 0, sizeof(j->req));
    j->req.profile = (cf_str){"nf", 2};
    j->req.csr_der = it->der;
    j->req.csr_len = it->len;
    j->req.nf_instance_id = (cf_str){it->uuid, strlen(it->uuid)};
    j->req.fqdns[0] = (cf_str){it->fqdn, strlen(it->fqdn)};
    j->req.n_fqdns = 1;
    j->req.nf_types[0] = (cf_str){amf, 3};
    j->req.n_nf_types = 1;
}

/* Submit n jobs and wait for all of them. */
static void run_jobs(harness *h, pipe_job *jobs, size_t n)
{
    size_t base;
    pthread_mutex_lock(&h->mu);
    base = h->completed;
    pthread_mutex_unlock(&h->mu);
    for (size_t i = 0; i < n; i++)
        CU_ASSERT_EQUAL_FATAL(pipe_submit(cf_engine_pipe(h->eng), &jobs[i], 5000), 0);
    pthread_mutex_lock(&h->mu);
    while (h->completed < base + n)
        pthread_cond_wait(&h->cv, &h->mu);
    pthread_mutex_unlock(&h->mu);
}

/* A relying party's check: strict chain verification to the CA, with the
 * TLS client and server purposes. */
static int verify_cert(const pipe_job *j)
{
    const unsigned char *p = j->cert;
    X509 *x = d2i_X509(NULL, &p, (long)j->cert_len);
    if (!x || p != j->cert + j->cert_len)
        return -1;
    int ok = 1;
    for (int purpose = X509_PURPOSE_SSL_CLIENT; purpose <= X509_PURPOSE_SSL_SERVER; purpose++) {
        X509_STORE *st = X509_STORE_new();
        X509_STORE_CTX *ctx = X509_STORE_CTX_new();
        X509_STORE_add_cert(st, CA);
        X509_STORE_CTX_init(ctx, st, x, NULL);
        X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_X509_STRICT);
        X509_STORE_CTX_set_purpose(ctx, purpose);
        if (X509_verify_cert(ctx) != 1) {
            fprintf(stderr, "\nverify: %s\n",
                    X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
            ok = 0;
        }
        X509_STORE_CTX_free(ctx);
        X509_STORE_free(st);
    }
    /* Canonical DER: OpenSSL re-encodes it byte for byte. */
    unsigned char *re = NULL;
    int rl = i2d_X509(x, &re);
    if (rl != (int)j->cert_len || memcmp(re, j->cert, j->cert_len) != 0)
        ok = 0;
    OPENSSL_free(re);
    X509_free(x);
    return ok ? 0 : -1;
}

/* ISSUE jobs that came back OK with a certificate that verifies; every
 * other one is printed. Serials never repeat among them. */
static size_t issued_ok(const pipe_job *jobs, size_t n)
{
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        if (jobs[i].status != CF_ST_OK) {
            fprintf(stderr, "\njob %zu: %s %s\n", i, cf_status_name(jobs[i].status), jobs[i].msg);
            continue;
        }
        ok += verify_cert(&jobs[i]) == 0;
        for (size_t k = 0; k < i; k++)
            CU_ASSERT(jobs[k].serial_len != jobs[i].serial_len ||
                      memcmp(jobs[k].serial, jobs[i].serial, jobs[i].serial_len) != 0);
    }
    return ok;
}

/* n NF requests through the engine, all issued, verified and recorded;
 * the jobs, for the caller to look at and free. */
static pipe_job *issue_all(harness *h, size_t n)
{
    pipe_job *jobs = calloc(n, sizeof(*jobs));
    CU_ASSERT_PTR_NOT_NULL_FATAL(jobs);
    for (size_t i = 0; i < n; i++)
        fill(&jobs[i], &POOL.items[i % POOL.n]);
    run_jobs(h, jobs, n);
    CU_ASSERT_EQUAL(issued_ok(jobs, n), n);
    CU_ASSERT_EQUAL(h->recorded, n);
    return jobs;
}

/* --- tests ------------------------------------------------------------------ */

static void test_issue_batch(void)
{
    harness h;
    CU_ASSERT_FATAL(open_engine(&h, false, "all", 2) == 0);
    size_t n = 100;
    pipe_job *jobs = issue_all(&h, n);
    pipe_stats st;
    pipe_get_stats(cf_engine_pipe(h.eng), &st);
    CU_ASSERT_EQUAL(st.by_status[CF_ST_OK], n);
    CU_ASSERT_EQUAL(st.overlapped, 0); /* signing on the workers: one batch each */
    free(jobs);
    close_engine(&h);
}

static void test_bad_requests(void)
{
    harness h;
    CU_ASSERT_FATAL(open_engine(&h, false, "all", 2) == 0);
    pipe_job *jobs = calloc(5, sizeof(*jobs));
    /* unknown profile */
    fill(&jobs[0], &POOL.items[0]);
    jobs[0].req.profile = (cf_str){"nope", 4};
    /* not a CSR */
    static const uint8_t junk[] = {0x30, 0x03, 0x02, 0x01, 0x00};
    fill(&jobs[1], &POOL.items[1]);
    jobs[1].req.csr_der = junk;
    jobs[1].req.csr_len = sizeof(junk);
    /* a CSR whose signature is broken */
    uint8_t *bad = malloc(POOL.items[2].len);
    memcpy(bad, POOL.items[2].der, POOL.items[2].len);
    bad[POOL.items[2].len - 5] ^= 0x01;
    fill(&jobs[2], &POOL.items[2]);
    jobs[2].req.csr_der = bad;
    /* the CSR asks for a SAN the front end did not authorize */
    fill(&jobs[3], &POOL.items[3]);
    jobs[3].req.fqdns[0] = (cf_str){"other.example.org", 17};
    /* a certificate over the engine's size limit: 64 long authorized FQDNs */
    static char names[CF_MAX_FQDNS][200];
    fill(&jobs[4], &POOL.items[4]);
    for (unsigned i = 1; i < CF_MAX_FQDNS; i++) {
        /* 190 characters in labels of 60 (LDH labels stop at 63) */
        snprintf(names[i], sizeof(names[i]), "%.60s.%.60s.%.60s.n%02u.org",
                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                 "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                 "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc", i);
        jobs[4].req.fqdns[i] = (cf_str){names[i], strlen(names[i])};
    }
    jobs[4].req.n_fqdns = CF_MAX_FQDNS;
    run_jobs(&h, jobs, 5);
    CU_ASSERT_EQUAL(jobs[4].status, CF_ST_POLICY_DENIED);
    CU_ASSERT_PTR_NOT_NULL(strstr(jobs[4].msg, "at most"));
    CU_ASSERT_PTR_NULL(jobs[4].cert);
    CU_ASSERT_EQUAL(jobs[0].status, CF_ST_UNKNOWN_PROFILE);
    CU_ASSERT_PTR_NOT_NULL(strstr(jobs[0].msg, "nope"));
    CU_ASSERT_EQUAL(jobs[1].status, CF_ST_BAD_CSR);
    CU_ASSERT_EQUAL(jobs[1].detail, CSR_ERR_MALFORMED);
    CU_ASSERT_EQUAL(jobs[2].status, CF_ST_BAD_CSR);
    CU_ASSERT_EQUAL(jobs[2].detail, CSR_ERR_BAD_SIGNATURE);
    CU_ASSERT_EQUAL(jobs[3].status, CF_ST_POLICY_DENIED);
    CU_ASSERT_PTR_NOT_NULL(strstr(jobs[3].msg, POOL.items[3].fqdn));
    for (int i = 0; i < 4; i++)
        CU_ASSERT_PTR_NULL(jobs[i].cert);
    CU_ASSERT_EQUAL(h.recorded, 0);
    free(bad);
    free(jobs);
    close_engine(&h);
}

/* The HSM fails every 4th sign, then returns a corrupted signature every
 * 5th: those jobs fail with HSM_FAILURE and no certificate; every
 * certificate that is released verifies. */
static void test_hsm_faults(void)
{
    harness h;
    CU_ASSERT_FATAL(open_engine(&h, true, "all", 2) == 0);
    size_t n = 40;
    pipe_job *jobs = calloc(n, sizeof(*jobs));
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0) {
            shim_control("FAIL_RV", "0x30");
            shim_control("FAIL_EVERY_N", "4");
        } else {
            shim_control("FAIL_EVERY_N", "0");
            shim_control("CORRUPT_EVERY_N", "5");
        }
        for (size_t i = 0; i < n; i++)
            fill(&jobs[i], &POOL.items[i % POOL.n]);
        run_jobs(&h, jobs, n);
        size_t ok = 0, hsm = 0, other = 0;
        for (size_t i = 0; i < n; i++) {
            if (jobs[i].status == CF_ST_OK) {
                ok++;
                CU_ASSERT_EQUAL(verify_cert(&jobs[i]), 0);
            } else if (jobs[i].status == CF_ST_HSM_FAILURE) {
                hsm++;
                CU_ASSERT_PTR_NULL(jobs[i].cert);
            } else {
                other++;
            }
        }
        CU_ASSERT_EQUAL(other, 0);
        CU_ASSERT(hsm >= n / 5 - 1);
        CU_ASSERT(ok >= n / 2);
    }
    shim_control("RESET", "1");
    /* and the engine keeps issuing */
    for (size_t i = 0; i < n; i++)
        fill(&jobs[i], &POOL.items[i % POOL.n]);
    run_jobs(&h, jobs, n);
    for (size_t i = 0; i < n; i++)
        CU_ASSERT_EQUAL(jobs[i].status, CF_ST_OK);
    free(jobs);
    close_engine(&h);
}

/* Record before release: a failing record hook releases nothing. */
static void test_record_failure(void)
{
    harness h;
    CU_ASSERT_FATAL(open_engine(&h, false, "off", 1) == 0);
    h.fail_record = 1;
    pipe_job *jobs = calloc(8, sizeof(*jobs));
    for (size_t i = 0; i < 8; i++)
        fill(&jobs[i], &POOL.items[i]);
    run_jobs(&h, jobs, 8);
    for (size_t i = 0; i < 8; i++) {
        CU_ASSERT_EQUAL(jobs[i].status, CF_ST_LEDGER_FAILURE);
        CU_ASSERT_PTR_NULL(jobs[i].cert);
    }
    free(jobs);
    close_engine(&h);
}

typedef struct {
    harness *h;
    pipe_job *jobs;
    size_t n;
} sub_arg;

static void *submitter(void *p)
{
    sub_arg *a = p;
    for (size_t i = 0; i < a->n; i++)
        if (pipe_submit(cf_engine_pipe(a->h->eng), &a->jobs[i], 10000) != 0)
            return (void *)1;
    return NULL;
}

/* Many submitters, all workers, a small queue (backpressure), one
 * engine: every job completes exactly once. */
static void test_concurrency(void)
{
    harness h;
    CU_ASSERT_FATAL(open_engine(&h, false, "all", 2) == 0);
    enum { T = 4, N = 150 };
    pipe_job *jobs = calloc(T * N, sizeof(*jobs));
    for (size_t i = 0; i < T * N; i++)
        fill(&jobs[i], &POOL.items[i % POOL.n]);
    pthread_t th[T];
    sub_arg a[T];
    for (int t = 0; t < T; t++) {
        a[t] = (sub_arg){&h, jobs + t * N, N};
        pthread_create(&th[t], NULL, submitter, &a[t]);
    }
    void *r;
    int bad = 0;
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], &r);
        bad += r != NULL;
    }
    CU_ASSERT_EQUAL(bad, 0);
    pthread_mutex_lock(&h.mu);
    while (h.completed < T * N)
        pthread_cond_wait(&h.cv, &h.mu);
    pthread_mutex_unlock(&h.mu);
    size_t ok = 0;
    for (size_t i = 0; i < T * N; i++)
        ok += jobs[i].status == CF_ST_OK;
    CU_ASSERT_EQUAL(ok, T * N);
    CU_ASSERT_EQUAL(h.completed, T * N);
    close_engine(&h); /* drains: nothing left queued */
    free(jobs);
}

/* With signing threads a worker starts a batch's signatures and builds
 * the next batch meanwhile (two batches per worker in flight): every
 * certificate still verifies, serials stay unique, everything released is
 * recorded, and HSM errors and wrong signatures on that path release
 * nothing. */
static void test_signing_threads(void)
{
    harness h;
    SIGN_THREADS = 4;
    int rc = open_engine(&h, true, "all", 2);
    SIGN_THREADS = 0;
    CU_ASSERT_FATAL(rc == 0);
    shim_control("SIGN_LATENCY_US", "2000");
    size_t n = 300;
    pipe_job *jobs = issue_all(&h, n);
    pipe_stats st;
    pipe_get_stats(cf_engine_pipe(h.eng), &st);
    fprintf(stderr, "(%llu batches built while another was signed) ",
            (unsigned long long)st.overlapped);
    CU_ASSERT(st.overlapped > 0); /* the path under test was taken */

    shim_control("FAIL_RV", "0x6"); /* CKR_FUNCTION_FAILED: no token recovery */
    shim_control("FAIL_EVERY_N", "4");
    shim_control("CORRUPT_EVERY_N", "7");
    for (size_t i = 0; i < n; i++)
        fill(&jobs[i], &POOL.items[i % POOL.n]);
    run_jobs(&h, jobs, n);
    size_t good = 0, hsm = 0;
    for (size_t i = 0; i < n; i++) {
        if (jobs[i].status == CF_ST_OK) {
            good++;
            CU_ASSERT_EQUAL(verify_cert(&jobs[i]), 0);
        } else {
            CU_ASSERT_EQUAL(jobs[i].status, CF_ST_HSM_FAILURE);
            CU_ASSERT_PTR_NULL(jobs[i].cert);
            hsm++;
        }
    }
    /* every 4th C_Sign fails; of the rest every 7th signature is wrong */
    CU_ASSERT_EQUAL(hsm, n / 4 + (n - n / 4) / 7);
    CU_ASSERT_EQUAL(good + hsm, n);
    CU_ASSERT_EQUAL(h.recorded, n + good);
    shim_control("RESET", "1");
    free(jobs);
    close_engine(&h);
}

/* SIGN jobs on two keys mixed with ISSUE jobs in the same batches: each
 * group goes to its own key (a signature verifies with its key and not
 * with the other), with the workers signing and with signing threads
 * (grouped tickets, two batches per worker). */
static void run_mixed(unsigned sign_threads)
{
    harness h;
    SIGN_THREADS = sign_threads;
    int rc = open_engine(&h, true, "all", 2);
    SIGN_THREADS = 0;
    CU_ASSERT_FATAL(rc == 0);
    if (sign_threads)
        shim_control("SIGN_LATENCY_US", "2000");
    const iss_set *iss = cf_engine_issuers(h.eng);
    EVP_PKEY *pub[2] = {iss_key_at(iss, 0)->pub, iss_key_at(iss, 1)->pub};
    CU_ASSERT_FATAL(pub[0] && pub[1]);
    enum { N = 120 };
    pipe_job *jobs = calloc(N, sizeof(*jobs));
    static uint8_t dig[N][32];
    for (size_t i = 0; i < N; i++) {
        if (i % 3 == 0) {
            fill(&jobs[i], &POOL.items[i % POOL.n]);
            continue;
        }
        memset(dig[i], 0xa5, 32);
        memcpy(dig[i], &i, sizeof(i));
        unsigned k = (unsigned)(i % 3) - 1;
        jobs[i].kind = PIPE_JOB_SIGN;
        jobs[i].sign = (pipe_sign){
            .key = {k ? "k2" : "ca", 2}, .mech = CF_SIG_ECDSA_SHA256, .data = dig[i], .len = 32};
    }
    run_jobs(&h, jobs, N);
    size_t ok = 0;
    for (size_t i = 0; i < N; i++) {
        if (jobs[i].status != CF_ST_OK) {
            fprintf(stderr, "\njob %zu: %s %s\n", i, cf_status_name(jobs[i].status), jobs[i].msg);
            continue;
        }
        if (jobs[i].kind == PIPE_JOB_ISSUE) {
            ok += verify_cert(&jobs[i]) == 0;
            continue;
        }
        unsigned k = (unsigned)(i % 3) - 1;
        int good = -1, other = -1;
        for (unsigned t = 0; t < 2; t++) {
            EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pub[t], NULL);
            int v = c && EVP_PKEY_verify_init(c) == 1 &&
                    EVP_PKEY_verify(c, jobs[i].sig, jobs[i].sig_len, dig[i], 32) == 1;
            EVP_PKEY_CTX_free(c);
            *(t == k ? &good : &other) = v;
        }
        CU_ASSERT_EQUAL(good, 1);
        CU_ASSERT_EQUAL(other, 0);
        ok += good == 1 && other == 0;
    }
    CU_ASSERT_EQUAL(ok, N);
    CU_ASSERT_EQUAL(h.recorded, N);
    pipe_stats st;
    pipe_get_stats(cf_engine_pipe(h.eng), &st);
    if (sign_threads) {
        CU_ASSERT(st.overlapped > 0);
    } else {
        CU_ASSERT_EQUAL(st.overlapped, 0);
    }
    shim_control("RESET", "1");
    free(jobs);
    close_engine(&h);
}

static void test_mixed_keys(void)
{
    run_mixed(0);
}

static void test_mixed_keys_threads(void)
{
    run_mixed(4);
}

/* A full queue answers at once (the server turns that into BUSY). */
static void test_queue_full(void)
{
    harness h;
    CU_ASSERT_FATAL(open_engine(&h, true, "off", 1) == 0);
    shim_control("SIGN_LATENCY_US", "20000"); /* slow HSM: the queue fills */
    size_t n = 200;
    pipe_job *jobs = calloc(n, sizeof(*jobs));
    for (size_t i = 0; i < n; i++)
        fill(&jobs[i], &POOL.items[i % POOL.n]);
    size_t queued = 0;
    for (size_t i = 0; i < n; i++)
        if (pipe_submit(cf_engine_pipe(h.eng), &jobs[i], 0) == 0)
            queued++;
    CU_ASSERT(queued < n);
    CU_ASSERT(queued >= 64);
    shim_control("SIGN_LATENCY_US", "0");
    pthread_mutex_lock(&h.mu);
    while (h.completed < queued)
        pthread_cond_wait(&h.cv, &h.mu);
    pthread_mutex_unlock(&h.mu);
    shim_control("RESET", "1");
    close_engine(&h);
    free(jobs);
}

int main(int argc, char **argv)
{
    static const cf_test tests[] = {
        {"100 NF certificates, strict chain checks", test_issue_batch},
        {"unknown profile, bad CSR, bad signature, unauthorized SAN", test_bad_requests},
        {"HSM errors and wrong signatures release nothing", test_hsm_faults},
        {"record failure releases nothing", test_record_failure},
        {"4 submitters, 2 workers, small queue", test_concurrency},
        {"full queue answers at once", test_queue_full},
        {"signing threads: two batches per worker in flight", test_signing_threads},
        {"SIGN on two keys mixed with ISSUE", test_mixed_keys},
        {"SIGN on two keys mixed with ISSUE, signing threads", test_mixed_keys_threads},
    };
    static const cf_suite suites[] = {CF_SUITE("pipeline", suite_init, suite_clean, tests)};
    return CF_TEST_MAIN(argc, argv, suites);
}
