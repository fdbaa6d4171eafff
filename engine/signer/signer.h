/* signer.h — the engine's one way to its CA keys: open every configured
 * key, tell what each is (type, size, public half), and sign batches.
 *
 * The rest of the engine (issuers, the pipeline, CRLs) signs only through
 * this interface, never through hsm/ directly. A batch is a plain array of
 * fixed-layout requests (key, algorithm, the digest or Ed25519 message) and
 * comes back as one signature or one failure per request, so it can be
 * answered by a separate process: the pipeline's workers then never hold a
 * PKCS#11 handle or a PIN (docs/architecture.md, "Processes").
 *
 * Thread safety: a sgn_service may be used from any number of threads. A
 * sgn_batch belongs to one thread at a time (the pipeline gives each
 * worker's batch slot its own); sgn_sign() may be called from any thread.
 */
#ifndef CF_SIGNER_H
#define CF_SIGNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/compiler.h"
#include "common/sigalg.h"
#include "engine/config/config.h"

typedef struct sgn_service sgn_service;
typedef struct sgn_batch sgn_batch;

/* What the engine learns about a key when it is opened (read once). */
typedef struct sgn_key_info {
    cf_key_type type;
    unsigned bits;       /* RSA modulus bits; EC/Ed25519: the curve's */
    unsigned sessions;   /* its session pool */
    unsigned threads;    /* its signing threads (keys[].sign_threads) */
    const uint8_t *spki; /* SubjectPublicKeyInfo DER of its public half */
    size_t spki_len;
} sgn_key_info;

/* rv of a request no session could be found for in time (CKR_FUNCTION_
 * CANCELED): the engine is overloaded, not failing (answered BUSY). */
#define SGN_RV_CANCELED 0x50UL

/* One signature to make. The caller fills key (index into cfg->keys),
 * mech, in/inlen (the digest of mech's hash, or the Ed25519 message) and
 * sig (CF_SIG_MAX octets). The service sets siglen and rv (0: signed, else
 * the CK_RV that failed it: CKR_FUNCTION_CANCELED when every session stayed
 * busy) and, on failure, msg. */
typedef struct sgn_req {
    uint32_t key;
    cf_sig_alg mech;
    const uint8_t *in;
    size_t inlen;
    uint8_t *sig;
    size_t siglen;
    unsigned long rv;
    char msg[160];
} sgn_req;

/* In this process: every token of cfg opened and logged in, a signer per
 * key with its sessions and signing threads (keys[].sessions defaults to
 * pipeline.workers). For certforge-bench's in-process mode and the
 * pipeline's tests; certforged signs in its signer process. Returns 0, or
 * -1 with err naming the setting ("FILE:LINE: token 'NAME': ..."). */
CF_WUR int sgn_open_local(const cfg_config *cfg, sgn_service **out, char *err, size_t errlen);
void sgn_close(sgn_service *s);

/* In a signer process (certforged): the keys are opened, and every batch
 * signed, by a separate process that alone loads the PKCS#11 module and
 * logs in (docs/architecture.md, "Processes"). Two steps, because the
 * process must be forked while this one has a single thread and has
 * opened nothing, but may log in only after certforged's socket and ledger
 * checks: sgn_proc_fork forks its keeper (which waits), sgn_proc_start
 * lets it start the signer and waits until the signer has opened every
 * key (refused with the same "FILE:LINE: token 'NAME': ..." message as
 * sgn_open_local). A service that was forked but not started is freed
 * with sgn_close. */
CF_WUR int sgn_proc_fork(const cfg_config *cfg, sgn_service **out, char *err, size_t errlen);
CF_WUR int sgn_proc_start(sgn_service *s, char *err, size_t errlen);

size_t sgn_nkeys(const sgn_service *s);
/* The key of cfg->keys[i] (same order), or NULL out of range. */
const sgn_key_info *sgn_key(const sgn_service *s, size_t i);
/* Sessions in use now and in all, over every key (STATUS). */
void sgn_sessions(sgn_service *s, unsigned *busy, unsigned *total);

/* A batch of up to cap requests. Each batch is used by one thread at a
 * time; `chan` tells batches apart (the pipeline's worker slot). NULL when
 * out of memory. */
sgn_batch *sgn_batch_new(sgn_service *s, unsigned chan, size_t cap);
void sgn_batch_free(sgn_batch *b);
/* The batch's request array, cap entries, for the caller to fill. */
sgn_req *sgn_batch_reqs(sgn_batch *b);
/* Start signing reqs[0..n): returns at once when the signing happens
 * elsewhere (sgn_batch_async() says so: the caller may do other work),
 * else after signing on the calling thread. Every started batch is waited
 * for exactly once, by the thread that started it. */
void sgn_batch_start(sgn_batch *b, size_t n);
bool sgn_batch_async(const sgn_batch *b);
/* Wait until every request of the batch is signed or failed; returns how
 * many were signed. */
size_t sgn_batch_wait(sgn_batch *b);

/* One signature on the calling thread's behalf (CRLs). Returns 0, or -1
 * with rv and msg set. */
CF_WUR int sgn_sign(sgn_service *s, uint32_t key, cf_sig_alg mech, const uint8_t *in, size_t inlen,
                    uint8_t *sig, size_t *siglen, unsigned long *rv, char *msg, size_t msglen);

#endif
