/* issuer.h — the engine's keys and issuers, loaded once at start-up and
 * shared read-only by the profiles, the pipeline, the CRLs and the server.
 *
 * A key: its config name, what the signing service says of it (type,
 * size) and its public half, fetched once (every signature the engine
 * releases is checked against it). An issuer: its certificate read once
 * (DER), the chain sent with each certificate (the issuer's certificate,
 * then its `chain` file), its key, the algorithm its certificates are
 * signed with (its profiles' hash on its key), its subject name and key
 * identifier, and what its CRLs are signed with.
 *
 * Everything is immutable after iss_open and may be read from any thread.
 * Signing goes through the sgn_service the set was opened with. A SIGHUP
 * reload opens a new set of issuers on the same keys (iss_reopen); each
 * config generation references its set (engine.h), so an issuer stays
 * valid while a job, a CRL or an answer that started with it runs.
 */
#ifndef CF_ISSUER_H
#define CF_ISSUER_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "common/compiler.h"
#include "common/issue.h"
#include "common/sigalg.h"
#include "engine/config/config.h"
#include "engine/signer/signer.h"

/* Certificates sent with each issued one (the wire carries at most 8). */
#define ISS_MAX_CHAIN 8

typedef struct iss_der {
    const uint8_t *p;
    size_t len;
} iss_der;

typedef struct iss_key {
    const char *name; /* cfg->keys[idx].name */
    uint32_t idx;     /* its index in cfg->keys and in the signing service */
    cf_key_type type;
    unsigned bits;
    char type_name[16]; /* "ec-p256", "rsa-3072", "ed25519" (KEYS) */
    EVP_PKEY *pub;
    iss_der spki; /* SubjectPublicKeyInfo DER */
} iss_key;

typedef struct iss_issuer {
    const char *name; /* cfg->issuers[idx].name (the set's own copy) */
    size_t idx;
    const iss_key *key;
    iss_der cert;                 /* its certificate, DER */
    iss_der chain[ISS_MAX_CHAIN]; /* sent with each certificate: cert first */
    unsigned n_chain;
    cf_sig_alg mech; /* its certificates' algorithm (CF_SIG__MAX: no profile uses it) */
    iss_der dn;      /* subject Name DER (the issuer field of what it signs) */
    uint8_t kid[EVP_MAX_MD_SIZE]; /* key identifier (authorityKeyIdentifier) */
    size_t kid_len;
    cf_sig_alg crl_mech; /* its CRLs' algorithm: the key's own hash */
    unsigned crl_shards; /* CRL shards (1: one CRL, docs/crl.md) */
    const char *crl_dp;  /* with crl_shards > 1: its profiles' crl_dp template */
} iss_issuer;

typedef struct iss_set iss_set;

/* Read every issuer's certificate and chain file, fetch nothing twice:
 * the keys' public halves come from the signing service (which read them
 * once). Refused, naming the setting, when a certificate or chain cannot
 * be read, when two profiles sign with one key but different algorithms,
 * when an issuer's certificate is not its key's, or when a profile's hash
 * does not fit its issuer's key. */
CF_WUR int iss_open(const cfg_config *cfg, sgn_service *sgn, iss_set **out, char *err,
                    size_t errlen);
/* A reload's issuers (cfg's `issuers`, read again as iss_open reads them)
 * on the keys of `keys_of`, which cfg must list unchanged: the new set
 * shares those keys (the same iss_key objects: the pipeline and the
 * profiles compare them by address) and holds a reference on keys_of. */
CF_WUR int iss_reopen(const cfg_config *cfg, iss_set *keys_of, iss_set **out, char *err,
                      size_t errlen);
/* A set is referenced (1 from iss_open/iss_reopen); iss_close drops one
 * reference and frees the set with the last (NULL is fine). */
void iss_ref(iss_set *s);
void iss_close(iss_set *s);

sgn_service *iss_signer(const iss_set *s);
size_t iss_nkeys(const iss_set *s);
const iss_key *iss_key_at(const iss_set *s, size_t i);
const iss_key *iss_find_key(const iss_set *s, cf_str name);
size_t iss_nissuers(const iss_set *s);
const iss_issuer *iss_issuer_at(const iss_set *s, size_t i);
const iss_issuer *iss_find_issuer(const iss_set *s, cf_str name);

#endif
