#include "engine/core/engine.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/profile/profile.h"

/* A config generation (engine.h). Generation 1 does not own its config
 * (the caller of cf_engine_open does); later ones do. */
struct cf_gen {
    atomic_uint refs;
    uint64_t number;
    const cfg_config *cfg;
    cfg_config *own_cfg;
    iss_set *iss; /* its issuers (referenced): the start-up set, or a reload's */
    profile **profiles;
    const iss_issuer **prof_issuer;
    size_t nprofiles;
};

struct cf_engine {
    sgn_service *sgn;
    bool own_sgn;
    iss_set *iss;
    const cfg_config *boot_cfg; /* the start-up config: restart-only settings */
    cf_gen *boot;               /* generation 1: the pipeline's own profiles point into it */
    pthread_mutex_t gen_mu;     /* guards cur (a reference of its own); nothing else */
    cf_gen *cur;
    _Atomic uint64_t cur_number;
    pipe_engine *pipe;
};

static void gen_free(cf_gen *g)
{
    for (size_t i = 0; i < g->nprofiles; i++)
        profile_free(g->profiles[i]);
    free(g->profiles);
    free(g->prof_issuer);
    iss_close(g->iss);
    cfg_free(g->own_cfg);
    free(g);
}

void cf_gen_ref(cf_gen *g)
{
    atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
}

void cf_gen_put(cf_gen *g)
{
    if (g && atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) == 1)
        gen_free(g);
}

uint64_t cf_gen_number(const cf_gen *g)
{
    return g->number;
}

const cfg_config *cf_gen_cfg(const cf_gen *g)
{
    return g->cfg;
}

const profile *cf_gen_profile(const cf_gen *g, size_t prof_idx)
{
    return prof_idx < g->nprofiles ? g->profiles[prof_idx] : NULL;
}

const iss_issuer *cf_gen_profile_issuer(const cf_gen *g, size_t prof_idx)
{
    return prof_idx < g->nprofiles ? g->prof_issuer[prof_idx] : NULL;
}

const iss_set *cf_gen_issuers(const cf_gen *g)
{
    return g->iss;
}

iss_set *cf_engine_issuers_get(cf_engine *e)
{
    pthread_mutex_lock(&e->gen_mu);
    iss_set *s = e->cur->iss;
    iss_ref(s);
    pthread_mutex_unlock(&e->gen_mu);
    return s;
}

cf_gen *cf_engine_gen_get(cf_engine *e)
{
    pthread_mutex_lock(&e->gen_mu);
    cf_gen *g = e->cur;
    cf_gen_ref(g);
    pthread_mutex_unlock(&e->gen_mu);
    return g;
}

uint64_t cf_engine_gen_number(const cf_engine *e)
{
    return atomic_load_explicit(&e->cur_number, memory_order_acquire);
}

/* The profiles of `cfg`, compiled against the issuers `iss` (the
 * generation takes over the caller's reference, also on failure). */
static int gen_new(iss_set *iss, const cfg_config *cfg, uint64_t number, cf_gen **out, char *err,
                   size_t errlen)
{
    char why[512];
    *out = NULL;
    cf_gen *g = calloc(1, sizeof(*g));
    if (!g) {
        iss_close(iss);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    g->iss = iss;
    atomic_init(&g->refs, 1);
    g->number = number;
    g->cfg = cfg;
    g->profiles = calloc(cfg->n_profiles ? cfg->n_profiles : 1, sizeof(*g->profiles));
    g->prof_issuer = calloc(cfg->n_profiles ? cfg->n_profiles : 1, sizeof(*g->prof_issuer));
    if (!g->profiles || !g->prof_issuer) {
        snprintf(err, errlen, "out of memory");
        gen_free(g);
        return -1;
    }
    for (size_t i = 0; i < cfg->n_profiles; i++) {
        const cfg_profile *cp = &cfg->profiles[i];
        const iss_issuer *is = iss_issuer_at(iss, cp->issuer_idx);
        if (profile_compile(cp, is->cert.p, is->cert.len, is->key->pub, is->mech, &g->profiles[i],
                            why, sizeof(why)) != 0) {
            snprintf(err, errlen, "%s:%d: profile '%s' (issuer '%s'): %s", cfg->path, cp->line,
                     cp->name, is->name, why);
            gen_free(g);
            return -1;
        }
        g->nprofiles++;
        g->prof_issuer[i] = is;
    }
    *out = g;
    return 0;
}

void cf_engine_close(cf_engine *e)
{
    if (!e)
        return;
    pipe_free(e->pipe);
    /* the users of generations (the server's rings) are gone by now */
    cf_gen_put(e->cur);
    cf_gen_put(e->boot);
    iss_close(e->iss);
    if (e->own_sgn)
        sgn_close(e->sgn);
    pthread_mutex_destroy(&e->gen_mu);
    free(e);
}

pipe_engine *cf_engine_pipe(cf_engine *e)
{
    return e->pipe;
}

const iss_set *cf_engine_issuers(const cf_engine *e)
{
    return e->iss;
}

void cf_engine_sessions(cf_engine *e, unsigned *busy, unsigned *total)
{
    sgn_sessions(e->sgn, busy, total);
}

int cf_engine_reload(cf_engine *e, cfg_config *n, uint64_t *gen_out, char *err, size_t errlen)
{
    if (cfg_restart_diff(e->boot_cfg, n, err, errlen) != 0)
        return -1;
    /* only the reloading thread writes cur: its number needs no lock here */
    uint64_t number = cf_engine_gen_number(e) + 1;
    /* the issuers read again (certificates, chains) on the keys already
     * open: no HSM work, no lock held */
    iss_set *iss = NULL;
    if (iss_reopen(n, e->iss, &iss, err, errlen) != 0)
        return -1;
    cf_gen *g = NULL;
    if (gen_new(iss, n, number, &g, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < g->nprofiles; i++)
        if (!pipe_serves(e->pipe, g->prof_issuer[i]->key, profile_mech(g->profiles[i]))) {
            const cfg_profile *cp = &n->profiles[i];
            snprintf(err, errlen,
                     "%s:%d: profile '%s': signs with %s under key '%s', which no profile "
                     "of the running config does: restart needed",
                     n->path, cp->line, cp->name, cf_sig_alg_name(profile_mech(g->profiles[i])),
                     g->prof_issuer[i]->key->name);
            gen_free(g);
            return -1;
        }
    g->own_cfg = n;
    pthread_mutex_lock(&e->gen_mu);
    cf_gen *old = e->cur;
    e->cur = g; /* the engine's reference */
    atomic_store_explicit(&e->cur_number, number, memory_order_release);
    pthread_mutex_unlock(&e->gen_mu);
    cf_gen_put(old); /* freed here or by its last user */
    *gen_out = number;
    return 0;
}

int cf_engine_open(const cfg_config *cfg, sgn_service *sgn, const cf_engine_hooks *hooks,
                   cf_engine **out, char *err, size_t errlen)
{
    *out = NULL;
    int rc = -1;
    char why[512];
    pipe_profile_def *defs = NULL;
    cf_engine *e = calloc(1, sizeof(*e));
    if (!e)
        return -1;
    pthread_mutex_init(&e->gen_mu, NULL);
    e->boot_cfg = cfg;
    defs = calloc(cfg->n_profiles ? cfg->n_profiles : 1, sizeof(*defs));
    if (!defs) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (sgn) {
        e->sgn = sgn;
    } else {
        if (sgn_open_local(cfg, &e->sgn, err, errlen) != 0)
            goto out;
        e->own_sgn = true;
    }
    if (iss_open(cfg, e->sgn, &e->iss, err, errlen) != 0)
        goto out;
    iss_ref(e->iss); /* generation 1's */
    if (gen_new(e->iss, cfg, 1, &e->boot, err, errlen) != 0)
        goto out;
    e->cur = e->boot;
    cf_gen_ref(e->cur); /* cur's own reference */
    atomic_init(&e->cur_number, 1);
    for (size_t i = 0; i < e->boot->nprofiles; i++) {
        defs[i].prof = e->boot->profiles[i];
        defs[i].issuer = e->boot->prof_issuer[i];
    }
    pipe_opts po = {
        .iss = e->iss,
        .workers = cfg->pipeline.workers,
        .queue = cfg->pipeline.queue,
        .batch = cfg->pipeline.batch,
        .verify = cfg->pipeline.verify == CFG_VERIFY_ALL      ? PIPE_VERIFY_ALL
                  : cfg->pipeline.verify == CFG_VERIFY_SAMPLE ? PIPE_VERIFY_ONE_IN_N
                                                              : PIPE_VERIFY_OFF,
        .verify_n = cfg->pipeline.verify_n,
        .done = hooks->done,
        .done_arg = hooks->done_arg,
        .record = hooks->record,
        .record_arg = hooks->record_arg,
    };
    memcpy(po.serial_prefix, cfg->pipeline.serial_prefix, cfg->pipeline.serial_prefix_len);
    po.serial_prefix_len = cfg->pipeline.serial_prefix_len;
    if (pipe_new(&po, defs, e->boot->nprofiles, &e->pipe, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "%s: pipeline: %s", cfg->path, why);
        goto out;
    }
    rc = 0;
    *out = e;
out:
    free(defs);
    if (rc != 0)
        cf_engine_close(e);
    return rc;
}
