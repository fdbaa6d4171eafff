/* Signer handles: one key, a bounded pool of sessions, sign a digest.
 *
 * Why the module's own function list and not libp11 here: libp11 0.4.12
 * keeps a fixed pool of 16 sessions per slot behind one lock, waits
 * forever for a session when C_OpenSession fails, and cannot enumerate
 * keys at all on a token holding an Ed25519 key. This pool is sized from
 * the config (capped by ulMaxSessionCount), never waits longer than
 * acquire_timeout_ms, and finds its key with C_FindObjects. bench/ records
 * its cost against raw C_Sign. */
#include "hsm/hsm_internal.h"
#include "hsm/sched_slice.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct pool_sess {
    CK_SESSION_HANDLE h; /* CK_INVALID_HANDLE: (re)open before use */
    unsigned epoch;      /* token epoch when opened */
} pool_sess;

struct hsm_signer {
    hsm_token *t;
    cf_key_type kt;
    unsigned bits;
    /* Key selector, kept to find the key again after a token fault. */
    CK_ATTRIBUTE tmpl[4];
    CK_ULONG ntmpl;
    P11KitUri *uri;

    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;
    CK_OBJECT_HANDLE key;
    unsigned key_epoch;
    unsigned n, nfree;
    pool_sess *sess;
    unsigned *freelist;
    _Atomic unsigned busy;
    _Atomic unsigned fork_gen;

    /* Signing threads (hsm_signer_set_threads): a FIFO of the batches
     * started and not yet handed out, each in its caller's ticket, so
     * the queue is bounded by the tickets callers hold and needs no
     * allocation.
     * qmu guards the queue, qstop and every queued batch's next/left/ok. */
    pthread_mutex_t qmu;
    pthread_cond_t qcv; /* a batch was queued, or qstop */
    struct hsm_sign_ticket *qhead, *qtail;
    bool qstop;
    unsigned nthr; /* threads running in this process (0 in a fork child) */
    pthread_t *thr;
};

static void cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

/* DigestInfo prefixes (RFC 8017 §9.2 note 1) for CKM_RSA_PKCS. */
static const uint8_t di_sha256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                    0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
static const uint8_t di_sha384[] = {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                    0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30};
static const uint8_t di_sha512[] = {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                    0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40};

int hsm_signer_check_mech(const hsm_signer *s, cf_sig_alg m, hsm_err *err)
{
    if ((unsigned)m >= CF_SIG__MAX)
        return hsm_fail(err, CKR_MECHANISM_INVALID, "unsupported signature mechanism #%d",
                        (int)m);
    if (!cf_sig_alg_fits(m, s->kt))
        return hsm_fail(err, CKR_KEY_TYPE_INCONSISTENT,
                        "mechanism %s does not fit the %s key on token '%s'", cf_sig_alg_name(m),
                        cf_key_type_name(s->kt), s->t->label);
    return 0;
}

/* CKM_ECDSA returns r || s (each half the length); X.509 and TLS want
 * Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } (RFC 5480 §2.2 /
 * RFC 3279 §2.2.3). Encoding only: no arithmetic. */
static size_t der_int(uint8_t *out, const uint8_t *v, size_t n)
{
    while (n > 1 && v[0] == 0)
        v++, n--;
    size_t pad = (v[0] & 0x80) ? 1 : 0;
    out[0] = 0x02;
    out[1] = (uint8_t)(n + pad);
    if (pad)
        out[2] = 0;
    memcpy(out + 2 + pad, v, n);
    return 2 + pad + n;
}

static int ecdsa_raw_to_der(const uint8_t *raw, size_t rawlen, uint8_t *out, size_t *outlen)
{
    /* P-256/P-384 only: every length fits one octet (≤ 2·(2+1+48) = 102). */
    if (rawlen == 0 || rawlen % 2 || rawlen > 2 * 48)
        return -1;
    size_t h = rawlen / 2;
    uint8_t body[2 * (3 + 48)];
    size_t bl = der_int(body, raw, h);
    bl += der_int(body + bl, raw + h, h);
    out[0] = 0x30;
    out[1] = (uint8_t)bl;
    memcpy(out + 2, body, bl);
    *outlen = bl + 2;
    return 0;
}

/* --- pool ---------------------------------------------------------------- */

static int find_key(hsm_signer *s, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE *key, hsm_err *err)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE tmpl[5];
    CK_ULONG n = 0;
    for (CK_ULONG i = 0; i < s->ntmpl; i++)
        if (s->tmpl[i].type != CKA_CLASS)
            tmpl[n++] = s->tmpl[i];
    tmpl[n++] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
    CK_OBJECT_HANDLE found[2];
    CK_ULONG cnt = 0;
    if (hsm_find(s->t, h, tmpl, n, found, 2, &cnt, err) != 0)
        return -1;
    if (cnt == 0)
        return hsm_fail(err, CKR_OBJECT_HANDLE_INVALID,
                        "no private key on token '%s' matches the key URI", s->t->label);
    if (cnt > 1)
        return hsm_fail(err, CKR_ARGUMENTS_BAD,
                        "more than one private key on token '%s' matches the key URI; add id= "
                        "or object=",
                        s->t->label);
    *key = found[0];
    return 0;
}

/* In a child after fork, once: the pool's lock may have been caught held
 * by a parent thread, and every session in it is the parent's. */
static void signer_after_fork(void *arg)
{
    hsm_signer *s = arg;
    pthread_mutex_init(&s->mu, NULL);
    cond_init_monotonic(&s->cv);
    for (unsigned i = 0; i < s->n; i++) {
        s->sess[i].h = CK_INVALID_HANDLE;
        s->freelist[i] = s->n - 1 - i;
    }
    s->nfree = s->n;
    atomic_store(&s->busy, 0);
    s->key = CK_INVALID_HANDLE;
    /* The signing threads are the parent's: none runs here. A batch queued
     * by a parent thread belongs to a caller that does not exist here. */
    pthread_mutex_init(&s->qmu, NULL);
    pthread_cond_init(&s->qcv, NULL);
    s->qhead = s->qtail = NULL;
    s->nthr = 0;
}

/* A checked-out session, valid for the current token epoch, with the key
 * handle to use on it. Between pool_enter and pool_exit the thread is
 * inside the module's gate: a recovery (which takes the gate alone)
 * cannot declare the session dead while it is being used. */
typedef struct pool_use {
    unsigned idx;
    pool_sess ps;
    CK_OBJECT_HANDLE key;
} pool_use;

/* Take a slot from the pool, waiting at most acquire_timeout_ms; copy out
 * its session and the key handle with the epoch it was found in. */
static int pool_take(hsm_signer *s, pool_use *u, unsigned *key_epoch, hsm_err *err)
{
    pthread_mutex_lock(&s->mu);
    if (s->nfree == 0) {
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        uint64_t ns = (uint64_t)dl.tv_nsec + (uint64_t)s->t->opts.acquire_timeout_ms * 1000000u;
        dl.tv_sec += (time_t)(ns / 1000000000u);
        dl.tv_nsec = (long)(ns % 1000000000u);
        while (s->nfree == 0) {
            if (pthread_cond_timedwait(&s->cv, &s->mu, &dl) == ETIMEDOUT && s->nfree == 0) {
                pthread_mutex_unlock(&s->mu);
                return hsm_fail(err, CKR_FUNCTION_CANCELED,
                                "no free session for the key on token '%s' within %u ms (all %u "
                                "busy)",
                                s->t->label, s->t->opts.acquire_timeout_ms, s->n);
            }
        }
    }
    u->idx = s->freelist[--s->nfree];
    u->ps = s->sess[u->idx];
    u->key = s->key;
    *key_epoch = s->key_epoch;
    atomic_fetch_add(&s->busy, 1);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static void pool_give(hsm_signer *s, unsigned idx, pool_sess ps, bool key_bad)
{
    pthread_mutex_lock(&s->mu);
    s->sess[idx] = ps;
    if (key_bad)
        s->key = CK_INVALID_HANDLE;
    s->freelist[s->nfree++] = idx;
    atomic_fetch_sub(&s->busy, 1);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static int pool_enter(hsm_signer *s, pool_use *u, hsm_err *err)
{
    hsm_token *t = s->t;
    if (hsm_token_ensure(t, err) != 0)
        return -1;
    hsm_after_fork_once(&s->fork_gen, signer_after_fork, s);
    unsigned key_epoch = 0;
    if (pool_take(s, u, &key_epoch, err) != 0)
        return -1;
    hsm_gate_enter(t->mod);
    unsigned epoch = atomic_load(&t->epoch);
    if (key_epoch != epoch)
        u->key = CK_INVALID_HANDLE;
    CK_RV rv = CKR_OK;
    if (u->ps.h != CK_INVALID_HANDLE && u->ps.epoch != epoch) {
        /* Opened before the token lost its sessions (or in the parent
         * before a fork): forget it, never close it (see recover_locked). */
        u->ps.h = CK_INVALID_HANDLE;
    }
    if (u->ps.h == CK_INVALID_HANDLE) {
        rv = t->f->C_OpenSession(t->slot, CKF_SERIAL_SESSION, NULL, NULL, &u->ps.h);
        if (rv != CKR_OK) {
            u->ps.h = CK_INVALID_HANDLE;
            hsm_fail(err, rv, "token '%s': C_OpenSession failed (%s)", t->label,
                     hsm_rv_name(rv));
        }
        u->ps.epoch = epoch;
    }
    bool no_key = false;
    if (rv == CKR_OK && u->key == CK_INVALID_HANDLE) {
        if (find_key(s, u->ps.h, &u->key, err) != 0) {
            rv = err->rv;
            no_key = true;
        } else {
            pthread_mutex_lock(&s->mu);
            s->key = u->key;
            s->key_epoch = epoch;
            pthread_mutex_unlock(&s->mu);
        }
    }
    if (rv == CKR_OK)
        return 0;
    hsm_gate_leave(t->mod);
    if (hsm_rv_is_session_fault(rv))
        u->ps.h = CK_INVALID_HANDLE;
    pool_give(s, u->idx, u->ps, false);
    /* Faults are recorded outside the gate (they take the token lock). */
    if (!hsm_token_fault(t, rv) && no_key) {
        /* A key that was there and is not seen: most often the login was
         * lost (SoftHSM then hides private objects rather than saying
         * CKR_USER_NOT_LOGGED_IN). */
        hsm_token_suspect(t);
    }
    return -1;
}

/* Leave the gate and return the session after a call that returned rv. A
 * session the module calls invalid is forgotten (not closed: its number
 * may be reused already). One left with an operation active (a failed
 * C_Sign with CKR_BUFFER_TOO_SMALL keeps it) is closed: it is valid, and
 * would fail every later C_SignInit with CKR_OPERATION_ACTIVE. */
static void pool_exit(hsm_signer *s, pool_use *u, CK_RV rv)
{
    hsm_token *t = s->t;
    bool key_bad = rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID;
    if (rv == CKR_BUFFER_TOO_SMALL || rv == CKR_OPERATION_ACTIVE) {
        t->f->C_CloseSession(u->ps.h);
        u->ps.h = CK_INVALID_HANDLE;
    }
    hsm_gate_leave(t->mod);
    if (hsm_rv_is_session_fault(rv))
        u->ps.h = CK_INVALID_HANDLE;
    pool_give(s, u->idx, u->ps, key_bad);
    if (rv == CKR_OK)
        return;
    if (!hsm_token_fault(t, rv) && key_bad)
        hsm_token_suspect(t); /* find the key again, checking the login */
}

static void stop_threads(hsm_signer *s);

/* --- open / close --------------------------------------------------------- */

int hsm_signer_open(hsm_token *t, const char *key_uri, unsigned sessions, hsm_signer **out,
                    hsm_err *err)
{
    *out = NULL;
    int rc = -1;
    CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
    hsm_signer *s = calloc(1, sizeof(*s));
    if (!s)
        return hsm_fail(err, CKR_HOST_MEMORY, "out of memory");
    s->t = t;
    pthread_mutex_init(&s->mu, NULL);
    cond_init_monotonic(&s->cv);
    pthread_mutex_init(&s->qmu, NULL);
    pthread_cond_init(&s->qcv, NULL);
    if (hsm_uri_parse(key_uri, &s->uri, err) != 0)
        goto out;
    CK_TOKEN_INFO *ti = p11_kit_uri_get_token_info(s->uri);
    if (!p11_kit_uri_match_token_info(s->uri, &t->info)) {
        char lab[33];
        hsm_trim(lab, ti->label, sizeof(ti->label));
        hsm_fail(err, CKR_ARGUMENTS_BAD, "key URI %s names token '%s', not '%s'", key_uri, lab,
                 t->label);
        goto out;
    }
    s->ntmpl = hsm_uri_object_template(s->uri, s->tmpl, 4);
    bool has_sel = false;
    for (CK_ULONG i = 0; i < s->ntmpl; i++)
        if (s->tmpl[i].type == CKA_LABEL || s->tmpl[i].type == CKA_ID)
            has_sel = true;
    if (!has_sel) {
        hsm_fail(err, CKR_ARGUMENTS_BAD, "key URI %s names no key: add object= or id=", key_uri);
        goto out;
    }
    if (hsm_token_session(t, false, &h, err) != 0)
        goto out;
    hsm_gate_enter(t->mod);
    int frc = find_key(s, h, &s->key, err);
    if (frc == 0)
        frc = hsm_key_info(t, h, s->key, &s->kt, &s->bits, err) != 0 ? 1 : 0;
    hsm_gate_leave(t->mod);
    if (frc < 0) {
        char why[sizeof(err->msg)];
        snprintf(why, sizeof(why), "%s", err->msg);
        hsm_fail(err, err->rv, "key not found: %s (%s)", key_uri, why);
        goto out;
    }
    if (frc > 0)
        goto out;
    if (s->kt == CF_KEY_RSA && (s->bits < 2048 || s->bits > 8 * CF_SIG_MAX)) {
        hsm_fail(err, CKR_KEY_SIZE_RANGE,
                 "key %s is RSA-%u; certforge signs with RSA keys of 2048 to %u bits", key_uri,
                 s->bits, 8 * CF_SIG_MAX);
        goto out;
    }
    s->key_epoch = atomic_load(&t->epoch);
    atomic_store(&s->fork_gen, atomic_load(&t->fork_gen));
    unsigned long max = hsm_token_max_sessions(t);
    if (sessions == 0)
        sessions = 1;
    /* Leave room for the token's keeper session and the admin's. */
    if (max && sessions > max - (max > 2 ? 2 : 0))
        sessions = (unsigned)(max > 2 ? max - 2 : 1);
    s->n = s->nfree = sessions;
    s->sess = calloc(sessions, sizeof(*s->sess));
    s->freelist = calloc(sessions, sizeof(*s->freelist));
    if (!s->sess || !s->freelist) {
        hsm_fail(err, CKR_HOST_MEMORY, "out of memory");
        goto out;
    }
    for (unsigned i = 0; i < sessions; i++) {
        s->sess[i].h = CK_INVALID_HANDLE;
        s->freelist[i] = sessions - 1 - i;
    }
    /* The lookup session becomes the pool's first. */
    s->sess[0].h = h;
    s->sess[0].epoch = s->key_epoch;
    h = CK_INVALID_HANDLE;
    rc = 0;
    *out = s;
out:
    if (h != CK_INVALID_HANDLE) {
        hsm_gate_enter(t->mod);
        t->f->C_CloseSession(h);
        hsm_gate_leave(t->mod);
    }
    if (rc != 0)
        hsm_signer_close(s);
    return rc;
}

void hsm_signer_close(hsm_signer *s)
{
    if (!s)
        return;
    bool same_process = atomic_load(&s->fork_gen) == atomic_load(&hsm_fork_gen);
    if (same_process)
        stop_threads(s);
    if (same_process && s->t->mod)
        hsm_gate_enter(s->t->mod);
    for (unsigned i = 0; s->sess && i < s->n; i++)
        if (s->sess[i].h != CK_INVALID_HANDLE && same_process &&
            s->sess[i].epoch == atomic_load(&s->t->epoch))
            s->t->f->C_CloseSession(s->sess[i].h);
    if (same_process && s->t->mod)
        hsm_gate_leave(s->t->mod);
    free(s->sess);
    free(s->freelist);
    free(s->thr);
    if (s->uri)
        p11_kit_uri_free(s->uri);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->qcv);
    pthread_mutex_destroy(&s->qmu);
    free(s);
}

cf_key_type hsm_signer_key_type(const hsm_signer *s)
{
    return s->kt;
}
unsigned hsm_signer_key_bits(const hsm_signer *s)
{
    return s->bits;
}
unsigned hsm_signer_sessions(const hsm_signer *s)
{
    return s->n;
}
unsigned hsm_signer_sessions_busy(const hsm_signer *s)
{
    return atomic_load(&s->busy);
}

EVP_PKEY *hsm_signer_public_key(hsm_signer *s, hsm_err *err)
{
    pool_use u;
    if (pool_enter(s, &u, err) != 0)
        return NULL;
    EVP_PKEY *pk = hsm_public_key(s->t, u.ps.h, u.key, err);
    pool_exit(s, &u, pk ? CKR_OK : err->rv);
    return pk;
}

/* --- signing --------------------------------------------------------------- */

int hsm_sign(hsm_signer *s, cf_sig_alg m, const uint8_t *in, size_t inlen, uint8_t *sig,
             size_t *siglen, hsm_err *err)
{
    *siglen = 0;
    if (hsm_signer_check_mech(s, m, err) != 0)
        return -1;
    size_t dl = cf_sig_alg_digest_len(m);
    if (dl && inlen != dl)
        return hsm_fail(err, CKR_DATA_LEN_RANGE, "%s signs a %zu-byte digest, got %zu bytes",
                        cf_sig_alg_name(m), dl, inlen);

    uint8_t buf[sizeof(di_sha512) + 64];
    CK_RSA_PKCS_PSS_PARAMS pss = {0};
    CK_MECHANISM mech = {0, NULL, 0};
    const uint8_t *data = in;
    size_t datalen = inlen;
    switch (m) {
    case CF_SIG_ECDSA_SHA256:
    case CF_SIG_ECDSA_SHA384:
    case CF_SIG_ECDSA_SHA512:
        mech.mechanism = CKM_ECDSA;
        break;
    case CF_SIG_RSA_PKCS1_SHA256:
    case CF_SIG_RSA_PKCS1_SHA384:
    case CF_SIG_RSA_PKCS1_SHA512: {
        const uint8_t *pre = m == CF_SIG_RSA_PKCS1_SHA256   ? di_sha256
                             : m == CF_SIG_RSA_PKCS1_SHA384 ? di_sha384
                                                            : di_sha512;
        memcpy(buf, pre, sizeof(di_sha256)); /* all three prefixes are 19 bytes */
        memcpy(buf + sizeof(di_sha256), in, inlen);
        data = buf;
        datalen = sizeof(di_sha256) + inlen;
        mech.mechanism = CKM_RSA_PKCS;
        break;
    }
    case CF_SIG_RSA_PSS_SHA256:
    case CF_SIG_RSA_PSS_SHA384:
    case CF_SIG_RSA_PSS_SHA512:
        /* RFC 4055 / RFC 8017: MGF1 with the same hash, salt = hash length. */
        pss.hashAlg = m == CF_SIG_RSA_PSS_SHA256   ? CKM_SHA256
                      : m == CF_SIG_RSA_PSS_SHA384 ? CKM_SHA384
                                                   : CKM_SHA512;
        pss.mgf = m == CF_SIG_RSA_PSS_SHA256   ? CKG_MGF1_SHA256
                  : m == CF_SIG_RSA_PSS_SHA384 ? CKG_MGF1_SHA384
                                               : CKG_MGF1_SHA512;
        pss.sLen = dl;
        mech.mechanism = CKM_RSA_PKCS_PSS;
        mech.pParameter = &pss;
        mech.ulParameterLen = sizeof(pss);
        break;
    case CF_SIG_ED25519:
        mech.mechanism = CKM_EDDSA;
        break;
    default:
        return hsm_fail(err, CKR_MECHANISM_INVALID, "unsupported mechanism");
    }

    pool_use u;
    if (pool_enter(s, &u, err) != 0)
        return -1;
    CK_FUNCTION_LIST *f = s->t->f;
    uint8_t raw[CF_SIG_MAX];
    CK_ULONG rawlen = sizeof(raw);
    CK_RV rv = f->C_SignInit(u.ps.h, &mech, u.key);
    if (rv == CKR_OK)
        rv = f->C_Sign(u.ps.h, (CK_BYTE_PTR)data, datalen, raw, &rawlen);
    pool_exit(s, &u, rv);
    if (rv != CKR_OK) {
        if (rv == CKR_MECHANISM_INVALID)
            return hsm_fail(err, rv, "token '%s' does not support mechanism %s", s->t->label,
                            cf_sig_alg_name(m));
        /* the handle found at start-up is gone: someone destroyed the key
         * (certforge keys delete refuses a key a live certforged reports) */
        if (rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID)
            return hsm_fail(err, rv,
                            "the key is no longer on the token '%s' (%s): deleted? restart with "
                            "a key that exists",
                            s->t->label, hsm_rv_name(rv));
        return hsm_fail(err, rv, "token '%s': signing with %s failed (%s)", s->t->label,
                        cf_sig_alg_name(m), hsm_rv_name(rv));
    }
    if (mech.mechanism == CKM_ECDSA) {
        if (ecdsa_raw_to_der(raw, rawlen, sig, siglen) != 0)
            return hsm_fail(err, CKR_GENERAL_ERROR,
                            "token '%s' returned a %lu-byte ECDSA signature", s->t->label,
                            (unsigned long)rawlen);
    } else {
        memcpy(sig, raw, rawlen);
        *siglen = rawlen;
    }
    return 0;
}

/* One request, on this thread; true if it was signed. */
static bool sign_req(hsm_signer *s, hsm_sign_req *r)
{
    hsm_err e = {0};
    if (hsm_sign(s, r->mech, r->in, r->inlen, r->sig, &r->siglen, &e) == 0) {
        r->rv = CKR_OK;
        r->msg[0] = '\0';
        return true;
    }
    r->rv = e.rv ? e.rv : CKR_GENERAL_ERROR;
    snprintf(r->msg, sizeof(r->msg), "%.159s", e.msg);
    return false;
}

/* Take b off the queue (qmu held; b is queued). The queue holds only the
 * tickets callers have started and not yet seen handed out (two per
 * pipeline worker at most), so the walk is short. */
static void queue_unlink(hsm_signer *s, hsm_sign_ticket *b)
{
    hsm_sign_ticket **pp = &s->qhead, *prev = NULL;
    while (*pp != b) {
        prev = *pp;
        pp = &(*pp)->qnext;
    }
    *pp = b->qnext;
    if (s->qtail == b)
        s->qtail = prev;
    b->qnext = NULL;
}

/* A signing thread: take the head batch's next request, sign it, count it
 * done; until stopped with the queue empty. */
static void *sign_thread(void *arg)
{
    hsm_signer *s = arg;
    pthread_setname_np(pthread_self(), "cf-sign");
    (void)cf_sched_short_slice(); /* take each HSM answer at once */
    pthread_mutex_lock(&s->qmu);
    for (;;) {
        while (!s->qhead && !s->qstop)
            pthread_cond_wait(&s->qcv, &s->qmu);
        hsm_sign_ticket *b = s->qhead;
        if (!b)
            break; /* stopped, nothing queued */
        size_t i = b->next++;
        if (b->next == b->n) /* all handed out: off the queue */
            queue_unlink(s, b);
        pthread_mutex_unlock(&s->qmu);
        bool ok = sign_req(s, &b->reqs[i]);
        pthread_mutex_lock(&s->qmu);
        b->ok += ok;
        /* Signalled under qmu: the caller cannot see left == 0, return
         * and take its batch off the stack until this thread lets go. */
        if (--b->left == 0)
            pthread_cond_signal(&b->done);
    }
    pthread_mutex_unlock(&s->qmu);
    return NULL;
}

/* Not racing with calls (hsm_signer_close's contract): the queue is empty. */
static void stop_threads(hsm_signer *s)
{
    if (!s->nthr)
        return;
    pthread_mutex_lock(&s->qmu);
    s->qstop = true;
    pthread_cond_broadcast(&s->qcv);
    pthread_mutex_unlock(&s->qmu);
    for (unsigned i = 0; i < s->nthr; i++)
        pthread_join(s->thr[i], NULL);
    s->nthr = 0;
}

int hsm_signer_set_threads(hsm_signer *s, unsigned n, hsm_err *err)
{
    if (n > HSM_SIGN_THREADS_MAX)
        return hsm_fail(err, CKR_ARGUMENTS_BAD, "%u signing threads: at most %u", n,
                        HSM_SIGN_THREADS_MAX);
    if (s->thr)
        return hsm_fail(err, CKR_ARGUMENTS_BAD, "the signer's threads are already set");
    if (n == 0)
        return 0;
    if (!(s->thr = calloc(n, sizeof(*s->thr))))
        return hsm_fail(err, CKR_HOST_MEMORY, "out of memory");
    for (unsigned i = 0; i < n; i++) {
        int e = pthread_create(&s->thr[i], NULL, sign_thread, s);
        if (e != 0) {
            stop_threads(s);
            s->qstop = false;
            return hsm_fail(err, CKR_CANT_LOCK, "starting signing thread %u of %u: %s", i + 1, n,
                            strerror(e));
        }
        s->nthr = i + 1;
    }
    return 0;
}

unsigned hsm_signer_threads(const hsm_signer *s)
{
    /* A fork child whose hook has not run yet has none either. */
    if (atomic_load(&s->fork_gen) != atomic_load(&hsm_fork_gen))
        return 0;
    return s->nthr;
}

/* Does a caller waiting for its batch sign requests no thread took yet?
 * Only when there are more sessions than threads: otherwise every session
 * is a thread's, and a caller that takes one only adds a hand-off (it
 * waits for the session, and the thread that gave it up idles). */
static bool caller_may_sign(const hsm_signer *s)
{
    return s->nthr < s->n;
}

/* caller_signs: the caller goes straight on to wait (hsm_sign_batch), so
 * wake one thread fewer: the caller takes a request itself. */
static void batch_start(hsm_signer *s, hsm_sign_req *reqs, size_t n, hsm_sign_ticket *t,
                        bool caller_signs)
{
    *t = (hsm_sign_ticket){.s = s, .reqs = reqs, .n = n, .next = n, .left = 0};
    /* In a fork child the hook forgets the parent's threads (nthr = 0). */
    hsm_after_fork_once(&s->fork_gen, signer_after_fork, s);
    if (s->nthr == 0 || n == 0) {
        for (size_t i = 0; i < n; i++)
            t->ok += sign_req(s, &reqs[i]);
        return;
    }
    t->next = 0;
    t->left = n;
    t->queued = true;
    pthread_cond_init(&t->done, NULL);
    pthread_mutex_lock(&s->qmu);
    if (s->qtail)
        s->qtail->qnext = t;
    else
        s->qhead = t;
    s->qtail = t;
    /* As many threads as can take a request. */
    caller_signs = caller_signs && caller_may_sign(s);
    for (size_t i = caller_signs; i < n && i - caller_signs < s->nthr; i++)
        pthread_cond_signal(&s->qcv);
    pthread_mutex_unlock(&s->qmu);
}

void hsm_sign_batch_start(hsm_signer *s, hsm_sign_req *reqs, size_t n, hsm_sign_ticket *t)
{
    batch_start(s, reqs, n, t, false);
}

size_t hsm_sign_batch_wait(hsm_sign_ticket *t)
{
    if (!t->queued)
        return t->ok;
    hsm_signer *s = t->s;
    pthread_mutex_lock(&s->qmu);
    /* Rather than idle, the caller signs what no thread has taken yet (so
     * a fast token pays few hand-offs) when a session may be free; the last
     * one handed out takes the batch off the queue, wherever it is in it. */
    while (caller_may_sign(s) && t->next < t->n) {
        size_t i = t->next++;
        if (t->next == t->n)
            queue_unlink(s, t);
        pthread_mutex_unlock(&s->qmu);
        bool ok = sign_req(s, &t->reqs[i]);
        pthread_mutex_lock(&s->qmu);
        t->ok += ok;
        t->left--;
    }
    while (t->left)
        pthread_cond_wait(&t->done, &s->qmu);
    size_t ok = t->ok;
    pthread_mutex_unlock(&s->qmu);
    pthread_cond_destroy(&t->done);
    t->queued = false;
    return ok;
}

size_t hsm_sign_batch(hsm_signer *s, hsm_sign_req *reqs, size_t n)
{
    hsm_sign_ticket t;
    batch_start(s, reqs, n, &t, true);
    return hsm_sign_batch_wait(&t);
}
