/* validate.h — challenge validation (RFC 8555 §8.3 http-01, §8.4 dns-01,
 * RFC 8737 tls-alpn-01), done for real over the network from the front
 * end, by a bounded pool of threads (acme-va/N) with a bounded queue and a
 * timeout per attempt. The outcome is queued to the store (challenge,
 * authorization, and every order waiting on it) and the thread takes the
 * next job while it commits; a client sees the new status once durable. */
#ifndef CF_ACME_VALIDATE_H
#define CF_ACME_VALIDATE_H

#include "acme/acme.h"
#include "acme/config.h"
#include "acme/store.h"

typedef struct acme_validator acme_validator;
struct acme_srv;

typedef struct acme_vjob {
    char chall[ACME_ID_LEN + 1];
    char authz[ACME_ID_LEN + 1];
    char account[ACME_ID_LEN + 1];
    acme_chall_type type;
    char ident[ACME_MAX_DNS_NAME + 1];
    char token[ACME_TOKEN_LEN + 1];
    char thumb[ACME_THUMB_LEN + 1];
    char *tkauth; /* tkauth-01: the authority token (malloc'd; the pool frees it) */
} acme_vjob;

CF_WUR int acme_validator_new(struct acme_srv *srv, acme_validator **out, char *err, size_t errlen);
void acme_validator_free(acme_validator *v);
/* Queue (copied; the pool takes j->tkauth): 0, or -1 when the queue is
 * full (j->tkauth is then still the caller's). */
CF_WUR int acme_validator_submit(acme_validator *v, const acme_vjob *j);

/* The checks themselves, for tests: 0 valid; else the problem type with a
 * detail in msg. */
acme_problem acme_validate_http01(const acme_cfg *cfg, const char *ident, const char *token,
                                  const char *keyauth, char *msg, size_t msglen);
acme_problem acme_validate_dns01(const acme_cfg *cfg, const char *ident, const char *keyauth, char *msg,
                                 size_t msglen);
acme_problem acme_validate_tlsalpn01(const acme_cfg *cfg, const char *ident, const char *keyauth,
                                     char *msg, size_t msglen);

/* The state change after a validation (used by the pool; exposed for the
 * authz/challenge handlers' tests). */
typedef struct acme_vresult {
    const acme_vjob *job;
    acme_problem problem; /* ACME_P_NONE: valid */
    const char *detail;
    /* tkauth-01: the token's jti (recorded as used; a replay fails the
     * challenge), its expiry, and the NF types it grants (JSON array) */
    const char *jti;
    int64_t jti_exp;
    const char *nf_types;
} acme_vresult;
int acme_validation_record(acme_db *tx, void *vresult);

#endif
