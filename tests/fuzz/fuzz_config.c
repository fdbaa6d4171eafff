/* libFuzzer target for engine/config: any text must load or be refused
 * with a message, never crash, leak or hang. Accepted configs must keep
 * the loader's promises (references resolve, limits hold). @include is
 * refused by cfg_load_string, so no file is ever opened. */
#include "engine/config/config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

/* libconfig 1.5's scanner leaks its string buffer when the input ends
 * inside an unterminated string (the parse error path never frees it).
 * Not ours, and bounded by the input size: suppress it by library. */
const char *__lsan_default_suppressions(void)
{
    return "leak:libconfig.so\n";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    char err[512];
    err[0] = 0;
    cfg_config *c = NULL;
    if (cfg_load_string(text, "fuzz.conf", "/nonexistent", &c, err, sizeof(err)) == 0) {
        if (c->n_tokens == 0 || c->n_keys == 0 || c->n_issuers == 0 || c->n_profiles == 0)
            abort();
        for (size_t i = 0; i < c->n_keys; i++)
            if (c->keys[i].token_idx >= c->n_tokens || c->keys[i].sessions == 0)
                abort();
        for (size_t i = 0; i < c->n_issuers; i++)
            if (c->issuers[i].key_idx >= c->n_keys || !c->issuers[i].certificate)
                abort();
        for (size_t i = 0; i < c->n_profiles; i++) {
            const cfg_profile *p = &c->profiles[i];
            if (p->issuer_idx >= c->n_issuers || p->validity_default > p->validity_max ||
                p->eku == 0 || p->key_types == 0 || strlen(p->subject_c) != 2)
                abort();
            if ((p->type == CFG_PROFILE_STAR) != (p->crl_dp == NULL))
                abort();
            uint64_t lim =
                p->type == CFG_PROFILE_STAR ? CFG_STAR_VALIDITY_MAX : CFG_NF_VALIDITY_MAX;
            if ((uint64_t)p->validity_max + p->backdate > lim)
                abort();
        }
        if (c->pipeline.batch > c->pipeline.queue || c->pipeline.workers == 0)
            abort();
        /* a ledger names exactly its backend's setting */
        if (c->ledger.line &&
            ((c->ledger.backend == CFG_LEDGER_POSTGRESQL) != (c->ledger.conninfo != NULL) ||
             (c->ledger.path != NULL) == (c->ledger.conninfo != NULL)))
            abort();
        cfg_free(c);
    } else if (c != NULL || err[0] == 0) {
        abort();
    }
    free(text);
    return 0;
}
