/* signer_internal.h — what the signing service's backends share (the
 * in-process one, signer_local.c; the signer process, signer_proc.c). Not
 * part of the module's surface (signer.h). */
#ifndef CF_SIGNER_INTERNAL_H
#define CF_SIGNER_INTERNAL_H

#include "engine/signer/signer.h"

typedef struct sgn_ops {
    void (*close)(sgn_service *s);
    void (*sessions)(sgn_service *s, unsigned *busy, unsigned *total);
    sgn_batch *(*batch_new)(sgn_service *s, unsigned chan, size_t cap);
    void (*batch_free)(sgn_batch *b);
    void (*batch_start)(sgn_batch *b, size_t n);
    size_t (*batch_wait)(sgn_batch *b);
    int (*sign)(sgn_service *s, uint32_t key, cf_sig_alg mech, const uint8_t *in, size_t inlen,
                uint8_t *sig, size_t *siglen, unsigned long *rv, char *msg, size_t msglen);
} sgn_ops;

struct sgn_service {
    const sgn_ops *ops;
    sgn_key_info *keys; /* per cfg->keys entry; spki owned (malloc'd) */
    size_t nkeys;
};

/* The part of a batch every backend has; each backend's batch starts with
 * it. */
struct sgn_batch {
    sgn_service *s;
    unsigned chan;
    sgn_req *reqs;
    size_t cap, n;
    bool async;
};

/* Fill a failed request. */
void sgn_req_fail(sgn_req *r, unsigned long rv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Free the key table (spki copies included). */
void sgn_keys_free(sgn_service *s);

#endif
