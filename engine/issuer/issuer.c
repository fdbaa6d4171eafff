/* issuer.c — keys and issuers loaded once (issuer.h). */
#include "engine/issuer/issuer.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "engine/profile/profile.h"

struct iss_set {
    atomic_uint refs;
    sgn_service *sgn;
    iss_key *keys;
    size_t nkeys;
    iss_set *keys_of; /* iss_reopen: the set whose keys these are (referenced) */
    iss_issuer *issuers;
    size_t nissuers;
    uint8_t **ders; /* every certificate read, to free */
    size_t nders, cap;
};

static int keep(iss_set *s, uint8_t *der)
{
    if (s->nders == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        uint8_t **n = realloc(s->ders, cap * sizeof(*n));
        if (!n)
            return -1;
        s->ders = n;
        s->cap = cap;
    }
    s->ders[s->nders++] = der;
    return 0;
}

void iss_ref(iss_set *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void iss_close(iss_set *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (s->keys_of) {
        iss_close(s->keys_of);
    } else {
        for (size_t i = 0; s->keys && i < s->nkeys; i++)
            EVP_PKEY_free(s->keys[i].pub);
        free(s->keys);
    }
    for (size_t i = 0; i < s->nders; i++)
        free(s->ders[i]);
    free(s->ders);
    free(s->issuers);
    free(s);
}

static void type_name(const iss_key *k, char *buf, size_t len)
{
    switch (k->type) {
    case CF_KEY_EC_P256:
        snprintf(buf, len, "ec-p256");
        break;
    case CF_KEY_EC_P384:
        snprintf(buf, len, "ec-p384");
        break;
    case CF_KEY_RSA:
        snprintf(buf, len, "rsa-%u", k->bits);
        break;
    case CF_KEY_ED25519:
        snprintf(buf, len, "ed25519");
        break;
    default:
        snprintf(buf, len, "unknown");
    }
}

/* The issuer's `chain` file (PEM) after its own certificate; the issuer
 * itself may head the file: it is sent once. */
static int read_chain(iss_set *s, const cfg_config *cfg, const cfg_issuer *ci, iss_issuer *is,
                      char *err, size_t errlen)
{
    FILE *f = fopen(ci->chain, "r");
    if (!f) {
        snprintf(err, errlen, "%s:%d: issuer '%s': chain %s: %s", cfg->path, ci->line, ci->name,
                 ci->chain, strerror(errno));
        return -1;
    }
    X509 *x;
    int rc = 0;
    while (rc == 0 && (x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
        uint8_t *d = NULL;
        int l = i2d_X509(x, &d);
        X509_free(x);
        if (l <= 0)
            continue;
        if ((size_t)l == is->cert.len && memcmp(d, is->cert.p, is->cert.len) == 0) {
            OPENSSL_free(d);
            continue;
        }
        uint8_t *copy = malloc((size_t)l);
        if (copy)
            memcpy(copy, d, (size_t)l);
        OPENSSL_free(d);
        if (!copy || keep(s, copy) != 0) {
            free(copy);
            snprintf(err, errlen, "out of memory reading chain %s", ci->chain);
            rc = -1;
        } else if (is->n_chain < ISS_MAX_CHAIN) {
            is->chain[is->n_chain++] = (iss_der){copy, (size_t)l};
        }
    }
    fclose(f);
    return rc;
}

/* Name and key identifier from the certificate. */
static int read_names(const cfg_config *cfg, const cfg_issuer *ci, iss_issuer *is, char *err,
                      size_t errlen, iss_set *s)
{
    const unsigned char *p = is->cert.p;
    X509 *x = d2i_X509(NULL, &p, (long)is->cert.len);
    unsigned char *dn = NULL;
    int dnl = x ? i2d_X509_NAME(X509_get_subject_name(x), &dn) : -1;
    int rc = -1;
    if (!x) {
        snprintf(err, errlen, "%s:%d: issuer '%s': certificate %s is unreadable", cfg->path,
                 ci->line, ci->name, ci->certificate);
        goto out;
    }
    EVP_PKEY *cert_key = X509_get0_pubkey(x);
    if (!cert_key || EVP_PKEY_eq(cert_key, is->key->pub) != 1) {
        snprintf(err, errlen,
                 "%s:%d: issuer '%s': certificate %s does not match key '%s' (its public key "
                 "is another)",
                 cfg->path, ci->line, ci->name, ci->certificate, is->key->name);
        goto out;
    }
    if (dnl <= 0 || profile_cert_key_id(x, is->kid, &is->kid_len) != 0) {
        snprintf(err, errlen, "%s:%d: issuer '%s': cannot read its name or key identifier",
                 cfg->path, ci->line, ci->name);
        goto out;
    }
    uint8_t *copy = malloc((size_t)dnl);
    if (!copy || keep(s, copy) != 0) {
        free(copy);
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    memcpy(copy, dn, (size_t)dnl);
    is->dn = (iss_der){copy, (size_t)dnl};
    rc = 0;
out:
    OPENSSL_free(dn);
    X509_free(x);
    return rc;
}

static int open_issuers(iss_set *s, const cfg_config *cfg, char *err, size_t errlen);

int iss_open(const cfg_config *cfg, sgn_service *sgn, iss_set **out, char *err, size_t errlen)
{
    *out = NULL;
    iss_set *s = calloc(1, sizeof(*s));
    if (!s)
        goto oom;
    atomic_init(&s->refs, 1);
    s->sgn = sgn;
    s->keys = calloc(cfg->n_keys ? cfg->n_keys : 1, sizeof(*s->keys));
    if (!s->keys)
        goto oom;
    for (size_t i = 0; i < cfg->n_keys; i++) {
        const sgn_key_info *ki = sgn_key(sgn, i);
        iss_key *k = &s->keys[i];
        if (!ki) {
            snprintf(err, errlen, "%s:%d: key '%s': the signing service does not know it",
                     cfg->path, cfg->keys[i].line, cfg->keys[i].name);
            goto fail;
        }
        const unsigned char *p = ki->spki;
        k->name = cfg->keys[i].name;
        k->idx = (uint32_t)i;
        k->type = ki->type;
        k->bits = ki->bits;
        k->spki = (iss_der){ki->spki, ki->spki_len};
        k->pub = d2i_PUBKEY(NULL, &p, (long)ki->spki_len);
        s->nkeys = i + 1;
        if (!k->pub) {
            snprintf(err, errlen, "%s:%d: key '%s': its public key is unreadable", cfg->path,
                     cfg->keys[i].line, k->name);
            goto fail;
        }
        type_name(k, k->type_name, sizeof(k->type_name));
    }
    if (open_issuers(s, cfg, err, errlen) != 0)
        goto fail;
    *out = s;
    return 0;
oom:
    snprintf(err, errlen, "out of memory loading the keys");
fail:
    iss_close(s);
    return -1;
}

int iss_reopen(const cfg_config *cfg, iss_set *keys_of, iss_set **out, char *err, size_t errlen)
{
    *out = NULL;
    if (cfg->n_keys != keys_of->nkeys) { /* cfg_restart_diff refused it already */
        snprintf(err, errlen, "%s: keys changed: restart needed", cfg->path);
        return -1;
    }
    iss_set *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory loading the issuers");
        return -1;
    }
    atomic_init(&s->refs, 1);
    s->sgn = keys_of->sgn;
    s->keys = keys_of->keys;
    s->nkeys = keys_of->nkeys;
    s->keys_of = keys_of;
    iss_ref(keys_of);
    if (open_issuers(s, cfg, err, errlen) != 0) {
        iss_close(s);
        return -1;
    }
    *out = s;
    return 0;
}

/* Every issuer of cfg, on the keys of s. */
static int open_issuers(iss_set *s, const cfg_config *cfg, char *err, size_t errlen)
{
    char why[512];
    s->issuers = calloc(cfg->n_issuers ? cfg->n_issuers : 1, sizeof(*s->issuers));
    if (!s->issuers)
        goto oom;
    for (size_t i = 0; i < cfg->n_issuers; i++) {
        const cfg_issuer *ci = &cfg->issuers[i];
        iss_issuer *is = &s->issuers[i];
        /* the set may outlive cfg (a reload's set, held by a CRL round or
         * a job after its generation's config is freed): its own copies */
        char *name = strdup(ci->name), *dp = ci->crl_dp ? strdup(ci->crl_dp) : NULL;
        if (!name || keep(s, (uint8_t *)name) != 0) {
            free(name);
            free(dp);
            goto oom;
        }
        if (ci->crl_dp && (!dp || keep(s, (uint8_t *)dp) != 0)) {
            free(dp);
            goto oom;
        }
        is->name = name;
        is->idx = i;
        is->key = &s->keys[ci->key_idx];
        is->mech = CF_SIG__MAX;
        is->crl_shards = ci->crl_shards ? ci->crl_shards : 1;
        is->crl_dp = dp;
        s->nissuers = i + 1;
        uint8_t *der = NULL;
        size_t len = 0;
        if (profile_read_cert(ci->certificate, &der, &len, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "%s:%d: issuer '%s': %s", cfg->path, ci->line, ci->name, why);
            goto fail;
        }
        if (keep(s, der) != 0) {
            free(der);
            goto oom;
        }
        is->cert = (iss_der){der, len};
        is->chain[is->n_chain++] = is->cert;
        if (ci->chain && read_chain(s, cfg, ci, is, err, errlen) != 0)
            goto fail;
        if (read_names(cfg, ci, is, err, errlen, s) != 0)
            goto fail;
        if (profile_pick_mech(is->key->pub, CFG_HASH_SHA256, &is->crl_mech, why, sizeof(why)) !=
            0) {
            snprintf(err, errlen, "%s:%d: issuer '%s': %s", cfg->path, ci->line, ci->name, why);
            goto fail;
        }
    }
    /* Each profile's algorithm: its hash on its issuer's key. One key
     * signs certificates with one algorithm (the pipeline checks each
     * signature with a verify context per key). */
    for (size_t i = 0; i < cfg->n_profiles; i++) {
        const cfg_profile *cp = &cfg->profiles[i];
        iss_issuer *is = &s->issuers[cp->issuer_idx];
        cf_sig_alg m;
        if (profile_pick_mech(is->key->pub, cp->hash, &m, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "%s:%d: profile '%s' (issuer '%s'): %s", cfg->path, cp->line,
                     cp->name, is->name, why);
            goto fail;
        }
        for (size_t k = 0; k < s->nissuers; k++) {
            const iss_issuer *o = &s->issuers[k];
            if (o->key == is->key && o->mech != CF_SIG__MAX && o->mech != m) {
                snprintf(err, errlen,
                         "%s:%d: profile '%s' signs with %s, but another profile uses key '%s' "
                         "with %s: one key signs certificates with one algorithm",
                         cfg->path, cp->line, cp->name, cf_sig_alg_name(m), is->key->name,
                         cf_sig_alg_name(o->mech));
                goto fail;
            }
        }
        is->mech = m;
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory loading the issuers");
fail:
    return -1;
}

sgn_service *iss_signer(const iss_set *s)
{
    return s->sgn;
}

size_t iss_nkeys(const iss_set *s)
{
    return s->nkeys;
}

const iss_key *iss_key_at(const iss_set *s, size_t i)
{
    return i < s->nkeys ? &s->keys[i] : NULL;
}

const iss_key *iss_find_key(const iss_set *s, cf_str name)
{
    for (size_t i = 0; i < s->nkeys; i++)
        if (strlen(s->keys[i].name) == name.len && memcmp(s->keys[i].name, name.p, name.len) == 0)
            return &s->keys[i];
    return NULL;
}

size_t iss_nissuers(const iss_set *s)
{
    return s->nissuers;
}

const iss_issuer *iss_issuer_at(const iss_set *s, size_t i)
{
    return i < s->nissuers ? &s->issuers[i] : NULL;
}

const iss_issuer *iss_find_issuer(const iss_set *s, cf_str name)
{
    for (size_t i = 0; i < s->nissuers; i++)
        if (strlen(s->issuers[i].name) == name.len &&
            memcmp(s->issuers[i].name, name.p, name.len) == 0)
            return &s->issuers[i];
    return NULL;
}
