/* signer_local.c — the signing service in this process: the HSM layer's
 * tokens and signers, batches signed with hsm_sign_batch_start/_wait (one
 * call per run of requests on the same key). The signer process
 * (signer_proc.c) runs the same key ring on its side. */
#include "engine/signer/signer_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "engine/signer/signer_keyring.h"
#include "hsm/hsm.h"

/* ------------------------------------------------------------ key ring */

void sgn_keyring_close(sgn_keyring *kr)
{
    for (size_t i = 0; kr->signers && i < kr->nsigners; i++)
        hsm_signer_close(kr->signers[i]);
    for (size_t i = 0; kr->tokens && i < kr->ntokens; i++)
        hsm_token_close(kr->tokens[i]);
    free(kr->signers);
    free(kr->tokens);
    memset(kr, 0, sizeof(*kr));
}

int sgn_keyring_open(const cfg_config *cfg, sgn_keyring *kr, sgn_key_info *keys, char *err,
                     size_t errlen)
{
    hsm_err he = {0};
    memset(kr, 0, sizeof(*kr));
    kr->tokens = calloc(cfg->n_tokens ? cfg->n_tokens : 1, sizeof(*kr->tokens));
    kr->signers = calloc(cfg->n_keys ? cfg->n_keys : 1, sizeof(*kr->signers));
    if (!kr->tokens || !kr->signers) {
        snprintf(err, errlen, "out of memory opening the keys");
        goto fail;
    }
    for (size_t i = 0; i < cfg->n_tokens; i++) {
        if (hsm_token_open(cfg->tokens[i].uri, NULL, &kr->tokens[i], &he) != 0) {
            snprintf(err, errlen, "%s:%d: token '%s': %s", cfg->path, cfg->tokens[i].line,
                     cfg->tokens[i].name, he.msg);
            goto fail;
        }
        kr->ntokens++;
    }
    for (size_t i = 0; i < cfg->n_keys; i++) {
        const cfg_key *k = &cfg->keys[i];
        unsigned sessions = k->sessions ? k->sessions : cfg->pipeline.workers;
        if (hsm_signer_open(kr->tokens[k->token_idx], k->uri, sessions, &kr->signers[i], &he) !=
            0) {
            snprintf(err, errlen, "%s:%d: key '%s' on token '%s': %s", cfg->path, k->line, k->name,
                     k->token, he.msg);
            goto fail;
        }
        kr->nsigners++;
        hsm_signer *s = kr->signers[i];
        if (hsm_signer_set_threads(s, k->sign_threads, &he) != 0) {
            snprintf(err, errlen, "%s:%d: key '%s': sign_threads: %s", cfg->path, k->line, k->name,
                     he.msg);
            goto fail;
        }
        EVP_PKEY *pub = hsm_signer_public_key(s, &he);
        if (!pub) {
            snprintf(err, errlen, "%s:%d: key '%s': %s", cfg->path, k->line, k->name, he.msg);
            goto fail;
        }
        uint8_t *der = NULL;
        int len = i2d_PUBKEY(pub, &der);
        EVP_PKEY_free(pub);
        uint8_t *copy = len > 0 ? malloc((size_t)len) : NULL;
        if (copy)
            memcpy(copy, der, (size_t)len);
        OPENSSL_free(der);
        if (!copy) {
            snprintf(err, errlen, "%s:%d: key '%s': cannot encode its public key", cfg->path,
                     k->line, k->name);
            goto fail;
        }
        keys[i] = (sgn_key_info){.type = hsm_signer_key_type(s),
                                 .bits = hsm_signer_key_bits(s),
                                 .sessions = hsm_signer_sessions(s),
                                 .threads = hsm_signer_threads(s),
                                 .spki = copy,
                                 .spki_len = (size_t)len};
    }
    return 0;
fail:
    sgn_keyring_close(kr);
    return -1;
}

void sgn_keyring_sessions(const sgn_keyring *kr, unsigned *busy, unsigned *total)
{
    *busy = *total = 0;
    for (size_t i = 0; i < kr->nsigners; i++) {
        *busy += hsm_signer_sessions_busy(kr->signers[i]);
        *total += hsm_signer_sessions(kr->signers[i]);
    }
}

/* A run of requests on one key: one hsm ticket. */
typedef struct run {
    size_t first, m;
    hsm_sign_ticket t;
} run;

struct sgn_keyring_batch {
    hsm_sign_req *hr;
    run *runs;
    size_t nruns, cap;
};

sgn_keyring_batch *sgn_keyring_batch_new(size_t cap)
{
    sgn_keyring_batch *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->cap = cap;
    b->hr = calloc(cap, sizeof(*b->hr));
    b->runs = calloc(cap, sizeof(*b->runs));
    if (!b->hr || !b->runs) {
        sgn_keyring_batch_free(b);
        return NULL;
    }
    return b;
}

void sgn_keyring_batch_free(sgn_keyring_batch *b)
{
    if (!b)
        return;
    free(b->hr);
    free(b->runs);
    free(b);
}

bool sgn_keyring_start(sgn_keyring *kr, sgn_keyring_batch *b, sgn_req *reqs, size_t n)
{
    bool queued = false;
    b->nruns = 0;
    size_t i = 0;
    while (i < n && i < b->cap) {
        size_t first = i;
        uint32_t key = reqs[i].key;
        while (i < n && i < b->cap && reqs[i].key == key) {
            hsm_sign_req *h = &b->hr[i];
            h->mech = reqs[i].mech;
            h->in = reqs[i].in;
            h->inlen = reqs[i].inlen;
            h->sig = reqs[i].sig;
            h->siglen = 0;
            h->rv = CKR_OK;
            h->msg[0] = 0;
            i++;
        }
        if (key >= kr->nsigners) {
            for (size_t k = first; k < i; k++) {
                b->hr[k].rv = CKR_KEY_HANDLE_INVALID;
                snprintf(b->hr[k].msg, sizeof(b->hr[k].msg), "no key #%u", (unsigned)key);
            }
            continue;
        }
        run *r = &b->runs[b->nruns++];
        r->first = first;
        r->m = i - first;
        hsm_sign_batch_start(kr->signers[key], b->hr + first, r->m, &r->t);
        queued |= hsm_sign_ticket_queued(&r->t);
    }
    return queued;
}

size_t sgn_keyring_wait(sgn_keyring_batch *b, sgn_req *reqs, size_t n)
{
    for (size_t g = 0; g < b->nruns; g++)
        hsm_sign_batch_wait(&b->runs[g].t);
    b->nruns = 0;
    size_t ok = 0;
    for (size_t i = 0; i < n && i < b->cap; i++) {
        const hsm_sign_req *h = &b->hr[i];
        sgn_req *r = &reqs[i];
        r->rv = h->rv;
        r->siglen = h->rv == CKR_OK ? h->siglen : 0;
        if (h->rv == CKR_OK) {
            r->msg[0] = 0;
            ok++;
        } else {
            snprintf(r->msg, sizeof(r->msg), "%s", h->msg);
        }
    }
    return ok;
}

int sgn_keyring_sign(sgn_keyring *kr, uint32_t key, cf_sig_alg mech, const uint8_t *in,
                     size_t inlen, uint8_t *sig, size_t *siglen, unsigned long *rv, char *msg,
                     size_t msglen)
{
    hsm_err he = {0};
    *siglen = 0;
    if (key >= kr->nsigners) {
        *rv = CKR_KEY_HANDLE_INVALID;
        snprintf(msg, msglen, "no key #%u", (unsigned)key);
        return -1;
    }
    if (hsm_sign(kr->signers[key], mech, in, inlen, sig, siglen, &he) != 0) {
        *rv = he.rv ? he.rv : CKR_GENERAL_ERROR;
        snprintf(msg, msglen, "%s", he.msg);
        return -1;
    }
    *rv = CKR_OK;
    return 0;
}

/* ------------------------------------------------------------ service */

typedef struct local_service {
    sgn_service base;
    sgn_keyring kr;
} local_service;

typedef struct local_batch {
    sgn_batch base;
    sgn_keyring_batch *kb;
} local_batch;

static void local_close(sgn_service *s)
{
    local_service *ls = (local_service *)s;
    sgn_keyring_close(&ls->kr);
    sgn_keys_free(s);
    free(ls);
}

static void local_sessions(sgn_service *s, unsigned *busy, unsigned *total)
{
    sgn_keyring_sessions(&((local_service *)s)->kr, busy, total);
}

static void local_batch_free(sgn_batch *b)
{
    local_batch *lb = (local_batch *)b;
    sgn_keyring_batch_free(lb->kb);
    free(b->reqs);
    free(lb);
}

static sgn_batch *local_batch_new(sgn_service *s, unsigned chan, size_t cap)
{
    local_batch *lb = calloc(1, sizeof(*lb));
    if (!lb)
        return NULL;
    lb->base = (sgn_batch){.s = s, .chan = chan, .cap = cap};
    lb->base.reqs = calloc(cap, sizeof(sgn_req));
    lb->kb = sgn_keyring_batch_new(cap);
    if (!lb->base.reqs || !lb->kb) {
        local_batch_free(&lb->base);
        return NULL;
    }
    return &lb->base;
}

static void local_batch_start(sgn_batch *b, size_t n)
{
    local_batch *lb = (local_batch *)b;
    b->async = sgn_keyring_start(&((local_service *)b->s)->kr, lb->kb, b->reqs, n);
}

static size_t local_batch_wait(sgn_batch *b)
{
    return sgn_keyring_wait(((local_batch *)b)->kb, b->reqs, b->n);
}

static int local_sign(sgn_service *s, uint32_t key, cf_sig_alg mech, const uint8_t *in,
                      size_t inlen, uint8_t *sig, size_t *siglen, unsigned long *rv, char *msg,
                      size_t msglen)
{
    return sgn_keyring_sign(&((local_service *)s)->kr, key, mech, in, inlen, sig, siglen, rv, msg,
                            msglen);
}

static const sgn_ops local_ops = {
    .close = local_close,
    .sessions = local_sessions,
    .batch_new = local_batch_new,
    .batch_free = local_batch_free,
    .batch_start = local_batch_start,
    .batch_wait = local_batch_wait,
    .sign = local_sign,
};

int sgn_open_local(const cfg_config *cfg, sgn_service **out, char *err, size_t errlen)
{
    *out = NULL;
    local_service *ls = calloc(1, sizeof(*ls));
    sgn_key_info *keys = calloc(cfg->n_keys ? cfg->n_keys : 1, sizeof(*keys));
    if (!ls || !keys) {
        free(ls);
        free(keys);
        snprintf(err, errlen, "out of memory opening the keys");
        return -1;
    }
    ls->base.ops = &local_ops;
    ls->base.keys = keys;
    ls->base.nkeys = cfg->n_keys;
    if (sgn_keyring_open(cfg, &ls->kr, keys, err, errlen) != 0) {
        sgn_keys_free(&ls->base);
        free(ls);
        return -1;
    }
    *out = &ls->base;
    return 0;
}
