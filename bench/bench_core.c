/* core: certforge's pipeline in-process — the engine built from a config
 * file exactly as certforged builds it, fed from the CSR pool with a
 * bounded window of jobs, every certificate counted on completion. */
#include "bench_common.h"
#include "config.h"
#include "engine.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW 1024

typedef struct core_ctx {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pipe_job **free_jobs;
    size_t nfree;
    size_t completed;
    uint64_t errors;
    char first_error[256];
} core_ctx;

static void on_done(pipe_job *j, void *arg)
{
    core_ctx *cc = arg;
    pthread_mutex_lock(&cc->mu);
    if (j->status != CF_ST_OK) {
        if (cc->errors++ == 0)
            snprintf(cc->first_error, sizeof(cc->first_error), "%s: %s",
                     cf_status_name(j->status), j->msg);
    }
    cc->completed++;
    cc->free_jobs[cc->nfree++] = j;
    pthread_cond_signal(&cc->cv);
    pthread_mutex_unlock(&cc->mu);
}

int bench_core(const bench_setup *su, unsigned threads, bench_result *r)
{
    char path[400], err[1024];
    cfg_config *cfg = NULL;
    cf_engine *eng = NULL;
    core_ctx cc;
    memset(&cc, 0, sizeof(cc));
    pthread_mutex_init(&cc.mu, NULL);
    pthread_cond_init(&cc.cv, NULL);
    pipe_job *jobs = calloc(WINDOW, sizeof(*jobs));
    cc.free_jobs = calloc(WINDOW, sizeof(*cc.free_jobs));
    if (!jobs || !cc.free_jobs || bench_write_config(su, threads, WINDOW * 2, "certforged.conf", NULL, path,
                                                        sizeof(path)) != 0)
        return -1;
    if (cfg_load(path, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "core: %s\n", err);
        return -1;
    }
    cf_engine_hooks hooks = {.done = on_done, .done_arg = &cc};
    if (cf_engine_open(cfg, &hooks, &eng, err, sizeof(err)) != 0) {
        fprintf(stderr, "core: %s\n", err);
        cfg_free(cfg);
        return -1;
    }
    for (size_t i = 0; i < WINDOW; i++)
        cc.free_jobs[cc.nfree++] = &jobs[i];
    static const char nf_type[] = "AMF";
    pipe_job *batch[WINDOW];
    size_t submitted = 0;
    double t0 = bench_now();
    while (submitted < su->count) {
        pthread_mutex_lock(&cc.mu);
        while (cc.nfree == 0)
            pthread_cond_wait(&cc.cv, &cc.mu);
        size_t n = 0;
        while (cc.nfree > 0 && n < WINDOW && submitted + n < su->count)
            batch[n++] = cc.free_jobs[--cc.nfree];
        pthread_mutex_unlock(&cc.mu);
        for (size_t k = 0; k < n; k++) {
            const csr_item *it = &su->pool.items[(submitted + k) % su->pool.n];
            pipe_job *j = batch[k];
            memset(&j->req, 0, sizeof(j->req));
            j->req.profile = (cf_str){"nf", 2};
            j->req.csr_der = it->der;
            j->req.csr_len = it->len;
            j->req.nf_instance_id = (cf_str){it->uuid, strlen(it->uuid)};
            j->req.fqdns[0] = (cf_str){it->fqdn, strlen(it->fqdn)};
            j->req.n_fqdns = 1;
            j->req.nf_types[0] = (cf_str){nf_type, 3};
            j->req.n_nf_types = 1;
        }
        size_t q = pipe_submit_many(cf_engine_pipe(eng), batch, n, 1000);
        if (q < n) {
            /* Cannot happen with the queue twice the window; give back. */
            pthread_mutex_lock(&cc.mu);
            for (size_t k = q; k < n; k++)
                cc.free_jobs[cc.nfree++] = batch[k];
            pthread_mutex_unlock(&cc.mu);
        }
        submitted += q;
    }
    pthread_mutex_lock(&cc.mu);
    while (cc.completed < su->count)
        pthread_cond_wait(&cc.cv, &cc.mu);
    pthread_mutex_unlock(&cc.mu);
    r->seconds = bench_now() - t0;
    r->done = cc.completed;
    r->errors = cc.errors;
    r->rate = (double)cc.completed / r->seconds;
    if (cc.errors)
        fprintf(stderr, "core: %llu errors, first: %s\n", (unsigned long long)cc.errors,
                cc.first_error);
    cf_engine_close(eng);
    cfg_free(cfg);
    free(jobs);
    free(cc.free_jobs);
    return 0;
}
