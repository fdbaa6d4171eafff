#include "engine/core/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "engine/profile/profile.h"
#include "hsm/hsm.h"

struct cf_engine {
    hsm_token **tokens;
    size_t ntokens;
    hsm_signer **signers;
    size_t nsigners;
    profile **profiles;
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
    for (size_t i = 0; i < e->nsigners; i++)
        hsm_signer_close(e->signers[i]);
    for (size_t i = 0; i < e->ntokens; i++)
        hsm_token_close(e->tokens[i]);
    free(e->profiles);
    free(e->signers);
    free(e->tokens);
    free(e);
}

pipe_engine *cf_engine_pipe(cf_engine *e)
{
    return e->pipe;
}

hsm_signer *cf_engine_signer(cf_engine *e, size_t key_idx)
{
    return key_idx < e->nsigners ? e->signers[key_idx] : NULL;
}

int cf_engine_open(const cfg_config *cfg, const cf_engine_hooks *hooks, cf_engine **out,
                   char *err, size_t errlen)
{
    *out = NULL;
    int rc = -1;
    hsm_err he;
    char why[512];
    pipe_profile_def *defs = NULL;
    cf_engine *e = calloc(1, sizeof(*e));
    if (!e)
        return -1;
    e->tokens = calloc(cfg->n_tokens ? cfg->n_tokens : 1, sizeof(*e->tokens));
    e->signers = calloc(cfg->n_keys ? cfg->n_keys : 1, sizeof(*e->signers));
    e->profiles = calloc(cfg->n_profiles ? cfg->n_profiles : 1, sizeof(*e->profiles));
    defs = calloc(cfg->n_profiles ? cfg->n_profiles : 1, sizeof(*defs));
    if (!e->tokens || !e->signers || !e->profiles || !defs)
        goto out;
    for (size_t i = 0; i < cfg->n_tokens; i++) {
        if (hsm_token_open(cfg->tokens[i].uri, NULL, &e->tokens[i], &he) != 0) {
            snprintf(err, errlen, "%s:%d: token '%s': %s", cfg->path, cfg->tokens[i].line,
                     cfg->tokens[i].name, he.msg);
            goto out;
        }
        e->ntokens++;
    }
    for (size_t i = 0; i < cfg->n_keys; i++) {
        const cfg_key *k = &cfg->keys[i];
        unsigned sessions = k->sessions ? k->sessions : cfg->pipeline.workers;
        if (hsm_signer_open(e->tokens[k->token_idx], k->uri, sessions, &e->signers[i], &he) !=
            0) {
            snprintf(err, errlen, "%s:%d: key '%s' on token '%s': %s", cfg->path, k->line,
                     k->name, k->token, he.msg);
            goto out;
        }
        e->nsigners++;
        if (hsm_signer_set_threads(e->signers[i], k->sign_threads, &he) != 0) {
            snprintf(err, errlen, "%s:%d: key '%s': sign_threads: %s", cfg->path, k->line,
                     k->name, he.msg);
            goto out;
        }
    }
    for (size_t i = 0; i < cfg->n_profiles; i++) {
        const cfg_profile *cp = &cfg->profiles[i];
        const cfg_issuer *is = &cfg->issuers[cp->issuer_idx];
        hsm_signer *s = e->signers[is->key_idx];
        uint8_t *der = NULL;
        size_t len = 0;
        cf_sig_alg mech;
        EVP_PKEY *pub = hsm_signer_public_key(s, &he);
        if (!pub) {
            snprintf(err, errlen, "%s:%d: issuer '%s': %s", cfg->path, is->line, is->name,
                     he.msg);
            goto out;
        }
        int prc = profile_read_cert(is->certificate, &der, &len, why, sizeof(why));
        if (prc == 0)
            prc = profile_pick_mech(pub, cp->hash, &mech, why, sizeof(why));
        if (prc == 0)
            prc = profile_compile(cp, der, len, pub, mech, &e->profiles[i], why, sizeof(why));
        free(der);
        EVP_PKEY_free(pub);
        if (prc != 0) {
            snprintf(err, errlen, "%s:%d: profile '%s' (issuer '%s'): %s", cfg->path, cp->line,
                     cp->name, is->name, why);
            goto out;
        }
        e->nprofiles++;
        defs[i].prof = e->profiles[i];
        defs[i].signer = s;
    }
    pipe_opts po = {
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
