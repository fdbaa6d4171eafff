/* signer.c — the signing service's surface (signer.h), dispatched to its
 * backend: signer_local.c (in this process) or signer_proc.c (the signer
 * process). */
#include "engine/signer/signer_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void sgn_req_fail(sgn_req *r, unsigned long rv, const char *fmt, ...)
{
    r->rv = rv ? rv : 5 /* CKR_GENERAL_ERROR */;
    r->siglen = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
    va_end(ap);
}

void sgn_keys_free(sgn_service *s)
{
    for (size_t i = 0; s->keys && i < s->nkeys; i++)
        free((void *)s->keys[i].spki);
    free(s->keys);
    s->keys = NULL;
    s->nkeys = 0;
}

void sgn_close(sgn_service *s)
{
    if (s)
        s->ops->close(s);
}

size_t sgn_nkeys(const sgn_service *s)
{
    return s->nkeys;
}

const sgn_key_info *sgn_key(const sgn_service *s, size_t i)
{
    return i < s->nkeys ? &s->keys[i] : NULL;
}

void sgn_sessions(sgn_service *s, unsigned *busy, unsigned *total)
{
    s->ops->sessions(s, busy, total);
}

sgn_batch *sgn_batch_new(sgn_service *s, unsigned chan, size_t cap)
{
    return s->ops->batch_new(s, chan, cap ? cap : 1);
}

void sgn_batch_free(sgn_batch *b)
{
    if (b)
        b->s->ops->batch_free(b);
}

sgn_req *sgn_batch_reqs(sgn_batch *b)
{
    return b->reqs;
}

void sgn_batch_start(sgn_batch *b, size_t n)
{
    if (n > b->cap)
        n = b->cap;
    b->n = n;
    b->async = false;
    b->s->ops->batch_start(b, n);
}

bool sgn_batch_async(const sgn_batch *b)
{
    return b->async;
}

size_t sgn_batch_wait(sgn_batch *b)
{
    return b->s->ops->batch_wait(b);
}

int sgn_sign(sgn_service *s, uint32_t key, cf_sig_alg mech, const uint8_t *in, size_t inlen,
             uint8_t *sig, size_t *siglen, unsigned long *rv, char *msg, size_t msglen)
{
    return s->ops->sign(s, key, mech, in, inlen, sig, siglen, rv, msg, msglen);
}
