/* engine.h — certforge's issuance engine assembled from a config: the
 * keys reached through a signing service (in this process, or certforged's
 * signer process), the issuers loaded once (issuer.h), the profiles
 * compiled against them, the pipeline started. Used by certforged and by
 * certforge-bench's in-process mode. */
#ifndef CF_ENGINE_H
#define CF_ENGINE_H

#include <stddef.h>

#include "common/compiler.h"
#include "engine/config/config.h"
#include "engine/issuer/issuer.h"
#include "engine/pipeline/pipeline.h"
#include "engine/signer/signer.h"

typedef struct cf_engine cf_engine;

typedef struct cf_engine_hooks {
    pipe_done_fn done; /* required */
    void *done_arg;
    pipe_batch_fn record; /* optional: the ledger */
    void *record_arg;
} cf_engine_hooks;

/* sgn: the signing service (certforged: its signer process), which the
 * engine uses and does not close; NULL: the engine opens the keys in this
 * process (sgn_open_local) and closes them with itself. Returns 0, or -1
 * with an operator-grade message in err naming the setting (token, key,
 * issuer or profile) that failed and why. */
CF_WUR int cf_engine_open(const cfg_config *cfg, sgn_service *sgn, const cf_engine_hooks *hooks,
                          cf_engine **out, char *err, size_t errlen);
pipe_engine *cf_engine_pipe(cf_engine *e);
/* The keys and issuers (read-only, valid until cf_engine_close). */
const iss_set *cf_engine_issuers(const cf_engine *e);
/* The issuer of cfg->profiles[prof_idx] (same order as the config), or
 * NULL out of range. */
const iss_issuer *cf_engine_profile_issuer(const cf_engine *e, size_t prof_idx);
/* HSM sessions busy and in all (STATUS). */
void cf_engine_sessions(cf_engine *e, unsigned *busy, unsigned *total);
/* Drains the pipeline (every queued job completes), then frees the
 * profiles and issuers and closes the keys it opened. */
void cf_engine_close(cf_engine *e);

#endif
