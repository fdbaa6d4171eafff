/* engine.h — certforge's issuance engine assembled from a config: the
 * keys reached through a signing service (in this process, or certforged's
 * signer process), the issuers loaded once (issuer.h), the profiles
 * compiled against them, the pipeline started. Used by certforged and by
 * certforge-bench's in-process mode. */
#ifndef CF_ENGINE_H
#define CF_ENGINE_H

#include <stddef.h>
#include <stdint.h>

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
/* The keys, and the start-up config's issuers (read-only, valid until
 * cf_engine_close). The keys never change; the issuers may since a reload:
 * who needs the current ones takes cf_engine_issuers_get. */
const iss_set *cf_engine_issuers(const cf_engine *e);
/* The current generation's issuers (and the same keys), referenced: drop
 * the reference with iss_close. */
iss_set *cf_engine_issuers_get(cf_engine *e);
/* ------------------------------------------------------------ config generations
 *
 * What SIGHUP may change while requests are in flight (grants, profiles,
 * issuers) lives in a config generation: the config, its issuers (opened
 * on the keys already held, iss_reopen) and the profiles compiled against
 * them. The engine publishes one generation at a time (generation 1: the
 * start-up config). A user takes a reference at the start of its work
 * (cf_engine_gen_get) and drops it at the end (cf_gen_put), so work that
 * started under generation G finishes with G; a generation is freed by
 * whoever drops its last reference. The lock (gen_mu) guards only the
 * current pointer: it is held to take a reference or to swap, never
 * across HSM, ledger or file I/O (docs/architecture.md, lock order). */
typedef struct cf_gen cf_gen;

/* The current generation, referenced (never NULL while the engine is open). */
cf_gen *cf_engine_gen_get(cf_engine *e);
/* Its number, without a reference (a cheap "has it changed?" check). */
uint64_t cf_engine_gen_number(const cf_engine *e);
void cf_gen_ref(cf_gen *g);
void cf_gen_put(cf_gen *g); /* NULL is fine */
uint64_t cf_gen_number(const cf_gen *g);
const cfg_config *cf_gen_cfg(const cf_gen *g);
/* Profile prof_idx of the generation's config (its order), and its issuer. */
const profile *cf_gen_profile(const cf_gen *g, size_t prof_idx);
const iss_issuer *cf_gen_profile_issuer(const cf_gen *g, size_t prof_idx);
/* The generation's issuers (valid while the reference is held). */
const iss_set *cf_gen_issuers(const cf_gen *g);

/* Publish `n` (a config loaded with cfg_load) as the next generation.
 * Checked first, all of it, before anything changes: cfg_restart_diff
 * against the start-up config (keys, tokens, an issuer's crl_shards,
 * socket, ... need a restart), then the issuers read again on the keys
 * already open (certificate checked against its key, chain), then every
 * profile compiled against them and served by the running pipeline. On success the engine owns `n`,
 * *gen_out is the new number, 0 returned; on failure nothing changed, the
 * caller still owns `n`, -1 with "FILE:LINE: ..." in err. One reload at a
 * time (certforged: the ring thread that reads the signals). */
CF_WUR int cf_engine_reload(cf_engine *e, cfg_config *n, uint64_t *gen_out, char *err,
                            size_t errlen);

/* HSM sessions busy and in all (STATUS). */
void cf_engine_sessions(cf_engine *e, unsigned *busy, unsigned *total);
/* Drains the pipeline (every queued job completes), then frees the
 * profiles and issuers and closes the keys it opened. */
void cf_engine_close(cf_engine *e);

#endif
