#include "engine/core/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/profile/profile.h"

struct cf_engine {
    sgn_service *sgn;
    bool own_sgn;
    iss_set *iss;
    profile **profiles;
    const iss_issuer **prof_issuer;
    size_t nprofiles;
    pipe_engine *pipe;
};

void cf_engine_close(cf_engine *e)
{
    if (!e)
        return;
    pipe_free(e->pipe);
    for (size_t i = 0; i < e->nprofiles; i++)
        profile_free(e->profiles[i]);
    iss_close(e->iss);
    if (e->own_sgn)
        sgn_close(e->sgn);
    free(e->profiles);
    free(e->prof_issuer);
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

const iss_issuer *cf_engine_profile_issuer(const cf_engine *e, size_t prof_idx)
{
    return prof_idx < e->nprofiles ? e->prof_issuer[prof_idx] : NULL;
}

void cf_engine_sessions(cf_engine *e, unsigned *busy, unsigned *total)
{
    sgn_sessions(e->sgn, busy, total);
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
    e->profiles = calloc(cfg->n_profiles ? cfg->n_profiles : 1, sizeof(*e->profiles));
    e->prof_issuer = calloc(cfg->n_profiles ? cfg->n_profiles : 1, sizeof(*e->prof_issuer));
    defs = calloc(cfg->n_profiles ? cfg->n_profiles : 1, sizeof(*defs));
    if (!e->profiles || !e->prof_issuer || !defs) {
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
    for (size_t i = 0; i < cfg->n_profiles; i++) {
        const cfg_profile *cp = &cfg->profiles[i];
        const iss_issuer *is = iss_issuer_at(e->iss, cp->issuer_idx);
        if (profile_compile(cp, is->cert.p, is->cert.len, is->key->pub, is->mech, &e->profiles[i],
                            why, sizeof(why)) != 0) {
            snprintf(err, errlen, "%s:%d: profile '%s' (issuer '%s'): %s", cfg->path, cp->line,
                     cp->name, is->name, why);
            goto out;
        }
        e->nprofiles++;
        e->prof_issuer[i] = is;
        defs[i].prof = e->profiles[i];
        defs[i].issuer = is;
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
    if (pipe_new(&po, defs, e->nprofiles, &e->pipe, why, sizeof(why)) != 0) {
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
