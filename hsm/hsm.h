/*
 * hsm.h — certforge's PKCS#11 layer: module loading, token selection by
 * RFC 7512 URI, login, and signer handles with a bounded session pool.
 *
 * This module knows PKCS#11 and nothing of X.509. Its error currency is
 * CK_RV plus a one-line message (struct hsm_err); callers translate at
 * their edge.
 *
 * Thread safety: an hsm_token and its hsm_signers may be used from any
 * number of threads at once. hsm_token_close()/hsm_signer_close() must not
 * race with other calls on the same object.
 *
 * Fork safety: after fork() the child's first call through a token
 * re-initialises the module and reopens sessions; the parent's sessions are
 * never used by the child.
 */
#ifndef CF_HSM_H
#define CF_HSM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <p11-kit/pkcs11.h>
#include <openssl/evp.h>

#include "common/compiler.h"
#include "common/sigalg.h"

/* Every fallible call fills one of these: the PKCS#11 return value that
 * caused the failure (CKR_GENERAL_ERROR for failures of our own, e.g. a
 * malformed URI) and a message fit for an operator. */
typedef struct hsm_err {
    CK_RV rv;
    char msg[640];
} hsm_err;

/* Key types (cf_key_type) and signature algorithms (cf_sig_alg, each
 * mapped to its PKCS#11 mechanism here) are common/sigalg.h's. ECDSA
 * signatures come back DER-encoded (Ecdsa-Sig-Value), converted from the
 * raw r||s that CKM_ECDSA returns. */

/* Name of a CK_RV ("CKR_PIN_INCORRECT"), or "CKR_0x..." if unknown. */
const char *hsm_rv_name(CK_RV rv);

typedef struct hsm_token hsm_token;
typedef struct hsm_signer hsm_signer;

typedef struct hsm_token_opts {
    /* Reconnect backoff after a token-level fault, doubling from min to max.
     * Defaults: 20 ms .. 2000 ms. */
    unsigned backoff_min_ms, backoff_max_ms;
    /* Longest a sign call waits for a free pooled session (default 5000). */
    unsigned acquire_timeout_ms;
    /* Log in at open (default). Set to skip login, e.g. for listing. */
    int no_login;
} hsm_token_opts;

/*
 * Open the token a PKCS#11 URI selects and log in as the user.
 *
 *   pkcs11:token=CA;object=root?module-path=/usr/lib/softhsm/libsofthsm2.so
 *          &pin-source=file:/etc/certforge/pin
 *
 * Token selection uses the path attributes token, manufacturer, serial and
 * model (never a slot number). Object attributes (object, id, type) are
 * ignored here; they matter to hsm_signer_open(). Without module-path the
 * module is CF_SOFTHSM_MODULE. The PIN comes from pin-source
 * ("file:/path", or "env:NAME") or, if the URI has none, from the
 * CERTFORGE_PIN environment variable; pin-value is refused. The PIN is read
 * for each login (the token may need one again after a fault) and wiped
 * right after. A token whose user PIN is locked, or on its final try, is
 * refused without an attempt.
 */
CF_WUR int hsm_token_open(const char *uri, const hsm_token_opts *opts, hsm_token **out,
                          hsm_err *err);
void hsm_token_close(hsm_token *t);

/* Token facts (from C_GetTokenInfo at open): label, serial, model,
 * manufacturer as NUL-terminated, trailing blanks removed. */
const char *hsm_token_label(const hsm_token *t);
const char *hsm_token_serial(const hsm_token *t);
/* ulMaxSessionCount as reported (0: no limit reported). */
unsigned long hsm_token_max_sessions(const hsm_token *t);

/*
 * A signer: one private key, looked up once, plus a pool of up to
 * `sessions` PKCS#11 sessions (capped by the token's ulMaxSessionCount).
 * The key is selected by the object/id attributes of `key_uri` (the token
 * part, if present, must match this token); exactly one private key must
 * match. Lookup uses C_FindObjects, so tokens that mix EC, RSA and Ed25519
 * keys work.
 */
CF_WUR int hsm_signer_open(hsm_token *t, const char *key_uri, unsigned sessions, hsm_signer **out,
                           hsm_err *err);
void hsm_signer_close(hsm_signer *s);

cf_key_type hsm_signer_key_type(const hsm_signer *s);
unsigned hsm_signer_key_bits(const hsm_signer *s);
unsigned hsm_signer_sessions(const hsm_signer *s);
/* Sessions currently checked out by signing threads. */
unsigned hsm_signer_sessions_busy(const hsm_signer *s);
/* The key's public half: RSA from the private key's public attributes;
 * EC and Ed25519 from the one public key object with the same CKA_ID (and
 * CKA_LABEL when the id is empty). Caller frees. */
CF_WUR EVP_PKEY *hsm_signer_public_key(hsm_signer *s, hsm_err *err);
/* Does `m` fit this key? 0 if it does, else CKR_KEY_TYPE_INCONSISTENT with
 * a message naming the mechanism and key. */
CF_WUR int hsm_signer_check_mech(const hsm_signer *s, cf_sig_alg m, hsm_err *err);

/*
 * Sign with a pooled session. `in` is the digest (ECDSA, RSA) or the
 * message (Ed25519). `sig` must hold CF_SIG_MAX bytes; *siglen is set.
 * On a session or token fault the call fails (rv in err), the session is
 * dropped and later calls reopen sessions and log in again with bounded
 * backoff; while one thread recovers, and while the backoff runs, calls
 * fail fast with CKR_DEVICE_ERROR. A PIN the token rejected is not tried
 * again until its file changes. Never waits longer than
 * acquire_timeout_ms for a session (CKR_FUNCTION_CANCELED). Returns 0 on
 * success, -1 on failure.
 */
CF_WUR int hsm_sign(hsm_signer *s, cf_sig_alg m, const uint8_t *in, size_t inlen, uint8_t *sig,
                    size_t *siglen, hsm_err *err);

/* A plain batch call (so signing can later live in its own process): each
 * request is signed independently; per-request rv (CKR_OK or the failure).
 * Returns the number of requests signed. */
typedef struct hsm_sign_req {
    cf_sig_alg mech;
    const uint8_t *in;
    size_t inlen;
    uint8_t *sig; /* CF_SIG_MAX bytes */
    size_t siglen;
    CK_RV rv;
    char msg[160]; /* why, when rv != CKR_OK */
} hsm_sign_req;
size_t hsm_sign_batch(hsm_signer *s, hsm_sign_req *reqs, size_t n);

/*
 * The same in two steps, so a caller can do other work while a batch is
 * signed (the pipeline builds its next batch meanwhile): start hands the
 * requests to the signer's threads and returns at once; wait returns when
 * every request is done, with the number signed, the caller signing any
 * request no thread has taken yet rather than idle. Without signing
 * threads (and in a fork child) start signs the whole batch on the calling
 * thread and wait only returns the count. reqs and the ticket must stay
 * put, and every started ticket must be waited for exactly once, in the
 * process that started it (a child after fork() must not wait for a ticket
 * its parent started: the threads signing it are the parent's). The
 * ticket's fields are the signer's; hsm_sign_ticket_queued() says whether
 * start handed the batch to threads (a caller may then overlap work).
 */
typedef struct hsm_sign_ticket {
    hsm_signer *s;
    hsm_sign_req *reqs;
    size_t n, next, left, ok;
    bool queued;
    pthread_cond_t done;
    struct hsm_sign_ticket *qnext;
} hsm_sign_ticket;
void hsm_sign_batch_start(hsm_signer *s, hsm_sign_req *reqs, size_t n, hsm_sign_ticket *t);
size_t hsm_sign_batch_wait(hsm_sign_ticket *t);
static inline bool hsm_sign_ticket_queued(const hsm_sign_ticket *t)
{
    return t->queued;
}

/*
 * Signing threads, for a token whose latency must be hidden (a network
 * HSM: L ms per signature caps a thread at 1/L signatures per second).
 * With n > 0 the signer runs n threads; hsm_sign_batch() then queues the
 * batch's requests for them (each thread takes one request at a time and
 * signs it with hsm_sign(); when the pool has more sessions than threads
 * the caller takes its own batch's requests too rather than idle) and
 * returns when all are done, so up to n signatures (plus one per caller
 * when sessions > n) are in flight at once across all callers, bounded by
 * the pool's sessions. The threads ask for a short scheduler slice (docs/hsm.md). With n == 0 (the
 * default) hsm_sign_batch() signs on the caller's thread, one request after another. hsm_sign()
 * always signs on the caller's thread. In a child after fork() there are no signing threads:
 * hsm_sign_batch() signs on the caller's thread.
 *
 * Call at most once, after hsm_signer_open() and before the signer is
 * used from other threads; the threads are joined by hsm_signer_close().
 * n at most HSM_SIGN_THREADS_MAX. Returns 0, or -1 with err filled
 * (CKR_ARGUMENTS_BAD, CKR_HOST_MEMORY, CKR_CANT_LOCK when a thread could
 * not be started; then the signer keeps signing on the caller's thread).
 */
#define HSM_SIGN_THREADS_MAX 1024
CF_WUR int hsm_signer_set_threads(hsm_signer *s, unsigned n, hsm_err *err);
/* Signing threads running (0 without, and in a child after fork). */
unsigned hsm_signer_threads(const hsm_signer *s);

#endif
