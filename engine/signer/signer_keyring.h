/* signer_keyring.h — the configured keys opened with the HSM layer, and
 * batches signed on them: what signs, whether in this process
 * (signer_local.c) or in the signer process (signer_proc.c). The only
 * part of the engine that calls hsm/ to sign. */
#ifndef CF_SIGNER_KEYRING_H
#define CF_SIGNER_KEYRING_H

#include <stdbool.h>
#include <stddef.h>

#include "common/compiler.h"
#include "engine/config/config.h"
#include "engine/signer/signer.h"
#include "hsm/hsm.h"

typedef struct sgn_keyring {
    hsm_token **tokens;
    size_t ntokens;
    hsm_signer **signers; /* per cfg->keys entry */
    size_t nsigners;
} sgn_keyring;

/* Open every token (logging in) and key of cfg, each key's sessions and
 * signing threads, and describe each key in keys[cfg->n_keys] (spki
 * malloc'd). Returns 0, or -1 with err naming the setting. */
CF_WUR int sgn_keyring_open(const cfg_config *cfg, sgn_keyring *kr, sgn_key_info *keys, char *err,
                            size_t errlen);
void sgn_keyring_close(sgn_keyring *kr);
void sgn_keyring_sessions(const sgn_keyring *kr, unsigned *busy, unsigned *total);

/* A batch's hsm requests and tickets, for up to cap requests. */
typedef struct sgn_keyring_batch sgn_keyring_batch;
sgn_keyring_batch *sgn_keyring_batch_new(size_t cap);
void sgn_keyring_batch_free(sgn_keyring_batch *b);
/* Start reqs[0..n): one hsm_sign_batch_start per run of requests on the
 * same key. True when some run went to signing threads. */
bool sgn_keyring_start(sgn_keyring *kr, sgn_keyring_batch *b, sgn_req *reqs, size_t n);
/* Wait for the runs; rv, siglen and msg set in reqs. Returns the number
 * signed. */
size_t sgn_keyring_wait(sgn_keyring_batch *b, sgn_req *reqs, size_t n);
CF_WUR int sgn_keyring_sign(sgn_keyring *kr, uint32_t key, cf_sig_alg mech, const uint8_t *in,
                            size_t inlen, uint8_t *sig, size_t *siglen, unsigned long *rv,
                            char *msg, size_t msglen);

#endif
