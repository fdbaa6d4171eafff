/* core: certforge's pipeline in-process — the engine built from a config
 * file exactly as certforged builds it, fed from the CSR pool with a
 * bounded window of jobs, every certificate counted on completion.
 * Latency: pipe_submit_many to the done hook, per job, every job. */
#include "bench/bench_common.h"
#include "engine/config/config.h"
#include "engine/core/engine.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW 1024

typedef struct core_ctx {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pipe_job *jobs;
    uint64_t *t_sub; /* submit time of jobs[i] */
    pipe_job **free_jobs;
    size_t nfree;
    size_t completed;
    bool record;   /* false during the warm-up */
    bench_rec rec; /* written under mu: one writer at a time */
    uint64_t errors;
    uint64_t by_status[CF_ST__MAX + 1];
    char first_error[256];
} core_ctx;

static void on_done(pipe_job *j, void *arg)
{
    core_ctx *cc = arg;
    uint64_t now = bench_ns();
    pthread_mutex_lock(&cc->mu);
    if (cc->record) {
        bench_hist_record(&cc->rec.h, now - cc->t_sub[j - cc->jobs]);
        if (j->status != CF_ST_OK) {
            cc->by_status[j->status < CF_ST__MAX ? j->status : CF_ST__MAX]++;
            atomic_fetch_add_explicit(&cc->rec.errors, 1, memory_order_relaxed);
            if (cc->errors++ == 0)
                snprintf(cc->first_error, sizeof(cc->first_error), "%s: %s",
                         cf_status_name(j->status), j->msg);
        }
    }
    cc->completed++;
    cc->free_jobs[cc->nfree++] = j;
    pthread_cond_signal(&cc->cv);
    pthread_mutex_unlock(&cc->mu);
}

/* Submit n jobs (n == 0: until the deadline) through the window (as many
 * jobs in flight as ipc keeps: connections x depth, at most WINDOW), then
 * wait for every one of them. */
static void run_phase(core_ctx *cc, cf_engine *eng, const bench_setup *su, size_t *next, size_t n,
                      uint64_t deadline)
{
    static const char nf_type[] = "AMF";
    pipe_job *batch[WINDOW];
    size_t submitted = 0;
    pthread_mutex_lock(&cc->mu);
    size_t base = cc->completed;
    pthread_mutex_unlock(&cc->mu);
    while (n ? submitted < n : bench_ns() < deadline) {
        pthread_mutex_lock(&cc->mu);
        while (cc->nfree == 0)
            pthread_cond_wait(&cc->cv, &cc->mu);
        size_t m = 0;
        while (cc->nfree > 0 && m < WINDOW && (n == 0 || submitted + m < n))
            batch[m++] = cc->free_jobs[--cc->nfree];
        pthread_mutex_unlock(&cc->mu);
        uint64_t now = bench_ns();
        for (size_t k = 0; k < m; k++) {
            const csr_item *it = &su->pool.items[(*next + k) % su->pool.n];
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
            cc->t_sub[j - cc->jobs] = now;
        }
        size_t q = pipe_submit_many(cf_engine_pipe(eng), batch, m, 1000);
        if (q < m) {
            /* Cannot happen with the queue twice the window; give back. */
            pthread_mutex_lock(&cc->mu);
            for (size_t k = q; k < m; k++)
                cc->free_jobs[cc->nfree++] = batch[k];
            pthread_mutex_unlock(&cc->mu);
        }
        submitted += q;
        *next += q;
    }
    pthread_mutex_lock(&cc->mu);
    while (cc->completed - base < submitted)
        pthread_cond_wait(&cc->cv, &cc->mu);
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
    cc.jobs = jobs;
    cc.t_sub = calloc(WINDOW, sizeof(*cc.t_sub));
    cc.free_jobs = calloc(WINDOW, sizeof(*cc.free_jobs));
    bench_hist_reset(&cc.rec.h);
    if (!jobs || !cc.t_sub || !cc.free_jobs || bench_write_config(su, threads, WINDOW * 2, "certforged.conf", NULL, path,
                                                        sizeof(path)) != 0)
        return -1;
    if (cfg_load(path, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "core: %s\n", err);
        return -1;
    }
    cf_engine_hooks hooks = {.done = on_done, .done_arg = &cc};
    if (cf_engine_open(cfg, NULL, &hooks, &eng, err, sizeof(err)) != 0) {
        fprintf(stderr, "core: %s\n", err);
        cfg_free(cfg);
        return -1;
    }
    size_t window = (size_t)su->connections * su->depth;
    for (size_t i = 0; i < WINDOW && i < window; i++)
        cc.free_jobs[cc.nfree++] = &jobs[i];
    size_t next = 0;
    if (su->warmup)
        run_phase(&cc, eng, su, &next, su->warmup, 0);
    pthread_mutex_lock(&cc.mu);
    cc.record = true;
    pthread_mutex_unlock(&cc.mu);
    uint64_t t0 = bench_ns();
    bench_live *live = bench_live_start(su, "core", &cc.rec, 1, 0);
    run_phase(&cc, eng, su, &next, su->duration > 0 ? 0 : su->count,
              t0 + (uint64_t)(su->duration * 1e9));
    r->seconds = (double)(bench_ns() - t0) / 1e9;
    bench_live_stop(live, r);
    bench_result_merge(r, &cc.rec, 1);
    r->errors = cc.errors;
    for (unsigned s = 0; s <= CF_ST__MAX; s++)
        bench_result_error(r, s < CF_ST__MAX ? cf_status_name((cf_status)s) : "OTHER",
                           cc.by_status[s]);
    r->rate = (double)(r->done - r->errors) / r->seconds;
    if (cc.errors)
        fprintf(stderr, "core: %llu errors, first: %s\n", (unsigned long long)cc.errors,
                cc.first_error);
    cf_engine_close(eng);
    cfg_free(cfg);
    free(jobs);
    free(cc.t_sub);
    free(cc.free_jobs);
    return 0;
}
