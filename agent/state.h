/* state.h — certforge-agent's durable per-NF state, in SQLite (default)
 * or PostgreSQL (several agents sharing it), through acme/store.h: the
 * group-commit writer thread, one reader connection per thread.
 *
 * Tables (schema in state.c):
 *   nfs         the NF registry: instance ID, authorized dNSNames, the
 *               NF's ACME account key (PKCS#8 DER, or the RFC 7512 URI of
 *               the key in acme.account_key_token) and account URL
 *   enrolments  one per enrolment/renewal: the NF's CSR, the token, the
 *               ACME order URL, retry state, outcome
 *   certs       every certificate obtained, by SHA-256 of its DER (how a
 *               re-enrolling NF's TLS client certificate is recognised),
 *               with its renewal time (ARI or 2/3 of the lifetime)
 *   keys        CSR public keys (SHA-256 of the SPKI) → the one NF that
 *               may use them
 *   used_jti    authority tokens consumed, bound to the NF and CSR key
 *   nf_star     an NF's STAR lifetime (`nf add --star`) and its STAR
 *               order (RFC 8739) with the order's key
 *   nf_eab      an NF's own EAB credential (`nf add --eab-kid`): key id
 *               and HMAC key (why the SQLite file must be 0600)
 * Every change is committed before the NF is answered; a restart (kill -9
 * included) takes up every enrolment not finished. */
#ifndef CF_AGENT_STATE_H
#define CF_AGENT_STATE_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>

#include "acme/store.h"
#include "agent/config.h"

#define AGENT_MAX_NF_DNS 64
#define AGENT_ID_LEN 22

AGENT_WUR int agent_state_open(const agent_cfg *c, acme_store **out, char *err, size_t errlen);

/* An NF of the registry. */
typedef struct agent_nf {
    char id[37];
    char *dns[AGENT_MAX_NF_DNS];
    unsigned n_dns;
    EVP_PKEY *key; /* the ACME account key (private; public only for a token key), or NULL when !with_key */
    char key_uri[1024]; /* the key in a PKCS#11 token (acme.account_key_token): its RFC 7512 URI; "" in the state */
    char thumb[44];
    char account_url[512]; /* "" before newAccount */
    char eab_kid[AGENT_EAB_KID_MAX + 1]; /* the NF's own EAB key id (`nf add --eab-kid`); "": acme.eab, if any */
    uint8_t *eab_key;   /* its HMAC key (only with_key); wiped by agent_nf_clear */
    size_t eab_key_len;
    int64_t star_lifetime; /* `nf add --star`: STAR certificates (RFC 8739) of this lifetime (s); 0: none */
    char star_order[512];  /* its STAR order once the first certificate came; "" before */
    char star_spki[65];    /* the SHA-256 of that order's public key (the NF's CSR key) */
} agent_nf;

/* 1 found (out filled; agent_nf_clear it), 0 unknown, -1 error. */
AGENT_WUR int agent_nf_load(acme_db *db, const char *id, bool with_key, agent_nf *out);
void agent_nf_clear(agent_nf *nf);

/* Register (or update the names of) an NF: makes its ACME account key
 * (EC P-256) the first time: in the token tok when not NULL (label
 * "cf-agent-<id>", sensitive, non-extractable; the state keeps its URI),
 * else in the state (PKCS#8). thumb: the RFC 7638 thumbprint of the
 * account key — what the OAM's token must be bound to. eab_kid (NULL:
 * none given, the NF keeps the one it has) and eab_key: the NF's own
 * external account binding credential, kept in nf_eab and used for its
 * newAccount instead of acme.eab. star_lifetime > 0: the NF gets STAR
 * certificates of that lifetime (0: unchanged). 0 or -1. */
struct hsm_token;
AGENT_WUR int agent_nf_add(acme_store *s, struct hsm_token *tok, const char *id, const char *const *dns,
                           unsigned n_dns, const char *eab_kid, const uint8_t *eab_key, size_t eab_key_len,
                           int64_t star_lifetime, char thumb[44], char *err, size_t errlen);

/* Remove an NF from the registry (nfs, nf_eab, nf_star); its pending
 * enrolments end failed and its certificates are no longer renewed; the
 * history (enrolments, certs) stays. 1 removed, 0 unknown, -1 error. */
AGENT_WUR int agent_nf_remove(acme_store *s, const char *id, char *err, size_t errlen);

/* "SHA256 AB:CD:..." of a base64url thumbprint (what tkauth tokens carry). */
AGENT_WUR int agent_fingerprint(const char *thumb, char *out, size_t cap);

/* Enrolment states as stored. */
#define AGENT_ST_PENDING "pending"
#define AGENT_ST_VALID "valid"
#define AGENT_ST_FAILED "failed"

/* Unix seconds / milliseconds. */
int64_t agent_now(void);
int64_t agent_now_ms(void);

#endif
