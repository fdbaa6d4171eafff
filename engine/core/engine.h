/* engine.h — certforge's issuance engine assembled from a config: tokens
 * opened and logged in, a signer per key, issuer certificates read and
 * checked against their HSM keys, profiles compiled, the pipeline started.
 * Used by certforged and by certforge-bench's in-process mode. */
#ifndef CF_ENGINE_H
#define CF_ENGINE_H

#include <stddef.h>

#include "common/compiler.h"
#include "engine/config/config.h"
#include "engine/pipeline/pipeline.h"

typedef struct cf_engine cf_engine;

typedef struct cf_engine_hooks {
    pipe_done_fn done; /* required */
    void *done_arg;
    pipe_batch_fn record; /* optional: the ledger */
    void *record_arg;
} cf_engine_hooks;

/* Returns 0, or -1 with an operator-grade message in err naming the
 * setting (token, key, issuer or profile) that failed and why. */
CF_WUR int cf_engine_open(const cfg_config *cfg, const cf_engine_hooks *hooks, cf_engine **out,
                          char *err, size_t errlen);
pipe_engine *cf_engine_pipe(cf_engine *e);
/* The signer of cfg->keys[key_idx] (same order as the config), or NULL
 * when out of range. For certforged's KEYS and STATUS answers. */
hsm_signer *cf_engine_signer(cf_engine *e, size_t key_idx);
/* Drains the pipeline (every queued job completes), then closes the HSM. */
void cf_engine_close(cf_engine *e);

#endif
