/* The batching issuance pipeline. See pipeline.h.
 *
 * Locking: one mutex per engine guards the job ring; a worker takes it once
 * per batch, not per job. Everything else a worker touches is its own
 * (verifier, digest contexts, scratch) or read-only after pipe_new. */
#include "engine/pipeline/pipeline.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "engine/csr/csr.h"
#include "engine/profile/profile.h"

#define PIPE_MAX_PROFILES 32
#define PIPE_MAX_ISSUERS 32

/* One key that signs certificates: the algorithm its profiles sign with,
 * and its public half for checking every signature the HSM returns before
 * anything is released (the issuer object's, fetched once). */
typedef struct pipe_issuer {
    const iss_key *key;
    EVP_PKEY *pub;
    cf_sig_alg mech;
    unsigned idx;
} pipe_issuer;

typedef struct pipe_prof {
    const profile *prof;
    const char *name;
    size_t name_len;
    pipe_issuer *iss;
    int mslot; /* its metrics slot (metric_slot), found once at start */
} pipe_prof;

/* ISSUE jobs completed by profile name and status (metrics). By name, not
 * by the start-up profile table: a SIGHUP reload hands jobs profiles of a
 * newer config generation (j->use_prof), which may be new names. Slots
 * are appended (under mprof_mu, once per new name) and never removed;
 * lookups read the published count and compare names without a lock. */
typedef struct prof_ctr {
    char name[64];
    _Atomic uint64_t by_status[CF_ST__MAX];
} prof_ctr;

/* A batch between taking and release: its jobs and their signature
 * requests (in the signing service's batch, grouped by key); rj[i] is the
 * job of request i. */
typedef struct batch_slot {
    pipe_job **jobs;
    size_t n;
    sgn_batch *sb;
    pipe_job **rj;
    size_t nreq;
    bool async; /* signed elsewhere meanwhile (signing threads, another process) */
    uint64_t start_ns; /* handed to the signing service (hsm_sign histogram) */
} batch_slot;

typedef struct worker {
    pipe_engine *e;
    pthread_t th;
    unsigned id;
    csr_verifier *cv;
    EVP_MD_CTX *mdctx;
    EVP_MD *md[3]; /* SHA-256, -384, -512, fetched once */
    EVP_PKEY_CTX *vctx[PIPE_MAX_ISSUERS];
    uint64_t verify_ctr;
    /* Two batches: while one is being signed by the signer's threads (a
     * network HSM's latency), the worker builds the next. */
    batch_slot sl[2];
    pipe_job **ok;
    uint8_t scratch[PIPE_CERT_MAX];
    /* SIGN: verify contexts by (key, mechanism), made on first use (a
     * context per signature halved the provider's rate) */
    struct {
        const EVP_PKEY *pub;
        cf_sig_alg mech;
        EVP_PKEY_CTX *c;
    } sctx[16];
    unsigned nsctx;
} worker;

struct pipe_engine {
    pipe_opts o;
    sgn_service *sgn;
    pipe_prof profs[PIPE_MAX_PROFILES];
    size_t nprofs;
    pipe_issuer iss[PIPE_MAX_ISSUERS];
    size_t niss;

    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    pipe_job **ring;
    unsigned cap, head, count;
    unsigned idle; /* workers waiting for a batch */
    bool stopping;

    worker *w;
    unsigned nw;       /* workers initialised */
    unsigned nstarted; /* worker threads running */

    _Atomic uint64_t submitted, completed;
    _Atomic uint64_t overlapped; /* batches built while another was signed */
    _Atomic uint64_t by_status[CF_ST__MAX];
    /* latency (pipe_get_metrics): relaxed atomic adds, no lock */
    cf_histo h_issue, h_sign, h_commit;
    prof_ctr mprof[PIPE_METRICS_PROFILES];
    _Atomic size_t nmprof;
    pthread_mutex_t mprof_mu; /* appending a name only; a leaf lock */

    /* The recorder (only with a record hook): workers hand it their signed
     * jobs and go on signing; it commits whatever has gathered in one
     * transaction (group commit), then completes those jobs. So no worker
     * sits idle during the ledger's fsync, and nothing is released before
     * it is recorded. */
    pthread_t rec_th;
    bool rec_started, rec_stop;
    pthread_mutex_t rmu;
    pthread_cond_t rq_work, rq_room;
    pipe_job **rq, **rq_take;
    size_t rq_cap, rq_len;
};

/* --- small helpers --------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
    if (err && errlen)
        snprintf(err, errlen, fmt, a, b);
}

static int md_index(cf_sig_alg m)
{
    switch (m) {
    case CF_SIG_ECDSA_SHA256:
    case CF_SIG_RSA_PKCS1_SHA256:
    case CF_SIG_RSA_PSS_SHA256:
        return 0;
    case CF_SIG_ECDSA_SHA384:
    case CF_SIG_RSA_PKCS1_SHA384:
    case CF_SIG_RSA_PSS_SHA384:
        return 1;
    case CF_SIG_ECDSA_SHA512:
    case CF_SIG_RSA_PKCS1_SHA512:
    case CF_SIG_RSA_PSS_SHA512:
        return 2;
    default:
        return -1; /* Ed25519 signs the message */
    }
}

static void fail(pipe_job *j, cf_status st, int detail, const char *msg)
{
    j->status = st;
    j->detail = detail;
    snprintf(j->msg, sizeof(j->msg), "%s", msg);
}

/* --- per-worker set-up ------------------------------------------------------ */

/* The metrics slot of a profile name, appended on first sight; -1 when
 * every slot is taken (then the job counts only in the totals). */
static int metric_slot(pipe_engine *e, const char *name)
{
    size_t n = atomic_load_explicit(&e->nmprof, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        if (strcmp(e->mprof[i].name, name) == 0)
            return (int)i;
    int slot = -1;
    pthread_mutex_lock(&e->mprof_mu);
    n = atomic_load_explicit(&e->nmprof, memory_order_relaxed);
    for (size_t i = 0; i < n && slot < 0; i++)
        if (strcmp(e->mprof[i].name, name) == 0)
            slot = (int)i;
    if (slot < 0 && n < PIPE_METRICS_PROFILES) {
        snprintf(e->mprof[n].name, sizeof(e->mprof[n].name), "%s", name);
        atomic_store_explicit(&e->nmprof, n + 1, memory_order_release);
        slot = (int)n;
    }
    pthread_mutex_unlock(&e->mprof_mu);
    return slot;
}

/* A verify context for a key and mechanism (not Ed25519). */
static EVP_PKEY_CTX *verify_ctx(worker *w, EVP_PKEY *pub, cf_sig_alg mech)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL);
    if (!c || EVP_PKEY_verify_init(c) <= 0)
        goto bad;
    int mi = md_index(mech);
    if (mech >= CF_SIG_RSA_PKCS1_SHA256 && mech <= CF_SIG_RSA_PKCS1_SHA512) {
        if (EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) <= 0 ||
            EVP_PKEY_CTX_set_signature_md(c, w->md[mi]) <= 0)
            goto bad;
    } else if (mech >= CF_SIG_RSA_PSS_SHA256 && mech <= CF_SIG_RSA_PSS_SHA512) {
        if (EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PSS_PADDING) <= 0 ||
            EVP_PKEY_CTX_set_signature_md(c, w->md[mi]) <= 0 ||
            EVP_PKEY_CTX_set_rsa_mgf1_md(c, w->md[mi]) <= 0 ||
            EVP_PKEY_CTX_set_rsa_pss_saltlen(c, RSA_PSS_SALTLEN_DIGEST) <= 0)
            goto bad;
    }
    return c;
bad:
    EVP_PKEY_CTX_free(c);
    return NULL;
}

/* A verify context per issuer, initialised once and reused for every
 * certificate (EVP_PKEY_verify may be called repeatedly after one init). */
static EVP_PKEY_CTX *issuer_vctx(worker *w, const pipe_issuer *is)
{
    if (is->mech == CF_SIG_ED25519)
        return NULL; /* one-shot EVP_DigestVerify per certificate */
    return verify_ctx(w, is->pub, is->mech);
}

static int worker_init(worker *w, pipe_engine *e, unsigned id)
{
    w->e = e;
    w->id = id;
    w->cv = csr_verifier_new();
    w->mdctx = EVP_MD_CTX_new();
    w->md[0] = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    w->md[1] = EVP_MD_fetch(NULL, "SHA2-384", NULL);
    w->md[2] = EVP_MD_fetch(NULL, "SHA2-512", NULL);
    w->ok = calloc(e->o.batch, sizeof(*w->ok));
    if (!w->cv || !w->mdctx || !w->md[0] || !w->md[1] || !w->md[2] || !w->ok)
        return -1;
    for (int k = 0; k < 2; k++) {
        batch_slot *sl = &w->sl[k];
        sl->jobs = calloc(e->o.batch, sizeof(*sl->jobs));
        sl->rj = calloc(e->o.batch, sizeof(*sl->rj));
        /* one signing channel per batch slot: worker id × 2 + slot */
        sl->sb = sgn_batch_new(e->sgn, id * 2 + (unsigned)k, e->o.batch);
        if (!sl->jobs || !sl->rj || !sl->sb)
            return -1;
    }
    for (size_t i = 0; i < e->niss; i++) {
        w->vctx[i] = issuer_vctx(w, &e->iss[i]);
        if (!w->vctx[i] && e->iss[i].mech != CF_SIG_ED25519)
            return -1;
    }
    return 0;
}

static void worker_fini(worker *w)
{
    csr_verifier_free(w->cv);
    EVP_MD_CTX_free(w->mdctx);
    for (int i = 0; i < 3; i++)
        EVP_MD_free(w->md[i]);
    for (size_t i = 0; i < PIPE_MAX_ISSUERS; i++)
        EVP_PKEY_CTX_free(w->vctx[i]);
    for (unsigned i = 0; i < w->nsctx; i++)
        EVP_PKEY_CTX_free(w->sctx[i].c);
    free(w->ok);
    for (int k = 0; k < 2; k++) {
        free(w->sl[k].jobs);
        free(w->sl[k].rj);
        sgn_batch_free(w->sl[k].sb);
    }
}

bool pipe_serves(const pipe_engine *e, const iss_key *key, cf_sig_alg mech)
{
    for (size_t k = 0; k < e->niss; k++)
        if (e->iss[k].key == key && e->iss[k].mech == mech)
            return true;
    return false;
}

/* --- the stages ------------------------------------------------------------- */

static const pipe_prof *find_profile(const pipe_engine *e, cf_str name)
{
    for (size_t i = 0; i < e->nprofs; i++)
        if (e->profs[i].name_len == name.len && memcmp(e->profs[i].name, name.p, name.len) == 0)
            return &e->profs[i];
    return NULL;
}

/* Parse, policy, TBS, proof of possession, digest. On return the job is
 * either failed or holds its TBS (in buf) and the digest to sign. */

/* An Ed25519 check (EVP_DigestVerifyInit on mdctx) leaves a signature
 * context in the worker's mdctx, and EVP_DigestInit_ex then fails on it:
 * the next SHA-2 digest on that worker would be refused. Reset only then,
 * so the usual path keeps its context. */
static void mdctx_for_digest(worker *w)
{
    if (EVP_MD_CTX_get_pkey_ctx(w->mdctx) != NULL)
        EVP_MD_CTX_reset(w->mdctx);
}
static void stage_front(worker *w, pipe_job *j, int64_t now)
{
    pipe_engine *e = w->e;
    j->status = CF_ST_OK;
    j->cert = NULL;
    j->cert_len = 0;
    j->msg[0] = '\0';
    pipe_prof given;
    const pipe_prof *pp = NULL;
    if (j->use_prof) {
        given = (pipe_prof){.prof = j->use_prof, .iss = NULL};
        cf_sig_alg mech = profile_mech(j->use_prof);
        for (size_t k = 0; k < e->niss && !given.iss; k++)
            if (e->iss[k].key == j->use_key && e->iss[k].mech == mech)
                given.iss = &e->iss[k];
        if (!given.iss) { /* the reload checks pipe_serves: not reached */
            fail(j, CF_ST_INTERNAL, 0,
                 "profile's key not served by this engine; restart certforged");
            return;
        }
        pp = &given;
    } else {
        pp = !j->prof_set              ? find_profile(e, j->req.profile)
             : j->prof_idx < e->nprofs ? &e->profs[j->prof_idx]
                                       : NULL;
    }
    if (!pp) {
        char m[sizeof(j->msg)];
        snprintf(m, sizeof(m), "unknown profile '%.*s'", (int)(j->req.profile.len > 64 ? 64 : j->req.profile.len),
                 j->req.profile.p ? j->req.profile.p : "");
        fail(j, CF_ST_UNKNOWN_PROFILE, 0, m);
        return;
    }
    /* a start-up profile's slot is known; a reloaded one is looked up */
    j->prof_slot = pp == &given ? metric_slot(e, profile_name(pp->prof)) : pp->mslot;
    csr c;
    csr_err ce = csr_parse(j->req.csr_der, j->req.csr_len, &c);
    if (ce != CSR_OK) {
        char m[sizeof(j->msg)];
        snprintf(m, sizeof(m), "CSR rejected: %s", csr_err_name(ce));
        fail(j, CF_ST_BAD_CSR, ce, m);
        return;
    }
    if (profile_serial(j->serial, &j->serial_len, e->o.serial_prefix,
                       e->o.serial_prefix_len) != 0) {
        fail(j, CF_ST_INTERNAL, 0, "no random serial number (CSPRNG failure)");
        return;
    }
    cf_status st = CF_ST_OK;
    size_t tbs_len = 0;
    if (profile_build_tbs(pp->prof, &c, &j->req, j->serial, j->serial_len, now, j->buf,
                          PIPE_TBS_MAX, &tbs_len, &st, j->msg, sizeof(j->msg)) != 0) {
        j->status = st != CF_ST_OK ? st : CF_ST_INTERNAL;
        return;
    }
    ce = csr_verify(w->cv, &c);
    if (ce == CSR_ERR_INTERNAL) {
        fail(j, CF_ST_INTERNAL, 0, "CSR check failed inside the engine (OpenSSL); retry");
        return;
    }
    if (ce != CSR_OK) {
        char m[sizeof(j->msg)];
        snprintf(m, sizeof(m), "CSR rejected: %s", csr_err_name(ce));
        fail(j, CF_ST_BAD_CSR, ce, m);
        return;
    }
    j->tbs_off = 0;
    j->tbs_len = tbs_len;
    j->iss = pp->iss;
    j->prof = pp->prof;
    int mi = md_index(pp->iss->mech);
    if (mi < 0) {
        j->digest_len = 0; /* Ed25519: the HSM signs the TBS itself */
        return;
    }
    unsigned dl = 0;
    mdctx_for_digest(w);
    if (EVP_DigestInit_ex(w->mdctx, w->md[mi], NULL) != 1 ||
        EVP_DigestUpdate(w->mdctx, j->buf, tbs_len) != 1 ||
        EVP_DigestFinal_ex(w->mdctx, j->digest, &dl) != 1) {
        fail(j, CF_ST_INTERNAL, 0, "digest of the TBSCertificate failed");
        return;
    }
    j->digest_len = dl;
}

/* Is this issued signature checked? */
static bool want_verify(worker *w)
{
    switch (w->e->o.verify) {
    case PIPE_VERIFY_OFF:
        return false;
    case PIPE_VERIFY_ONE_IN_N:
        return (w->verify_ctr++ % w->e->o.verify_n) == 0;
    default:
        return true;
    }
}

static bool issued_sig_ok(worker *w, pipe_job *j)
{
    const pipe_issuer *is = j->iss;
    if (is->mech == CF_SIG_ED25519) {
        EVP_MD_CTX_reset(w->mdctx);
        return EVP_DigestVerifyInit_ex(w->mdctx, NULL, NULL, NULL, NULL, is->pub, NULL) == 1 &&
               EVP_DigestVerify(w->mdctx, j->sig, j->sig_len, j->buf + j->tbs_off, j->tbs_len) ==
                   1;
    }
    return EVP_PKEY_verify(w->vctx[is->idx], j->sig, j->sig_len, j->digest, j->digest_len) == 1;
}

/* SIGN: nothing to parse; keep what the ledger records (the digest, or
 * for Ed25519 the SHA-512 of the message). */
static void stage_front_sign(worker *w, pipe_job *j)
{
    j->status = CF_ST_OK;
    j->cert = NULL;
    j->cert_len = 0;
    j->msg[0] = '\0';
    j->iss = NULL;
    j->sig_len = 0;
    pipe_sign *sg = &j->sign;
    const iss_key *k =
        sg->key_set ? iss_key_at(w->e->o.iss, sg->key_idx) : iss_find_key(w->e->o.iss, sg->key);
    j->skey = k;
    char m[sizeof(j->msg)];
    if (!k) {
        snprintf(m, sizeof(m), "no key named '%.*s'", (int)(sg->key.len > 64 ? 64 : sg->key.len),
                 sg->key.p ? sg->key.p : "");
        fail(j, CF_ST_NOT_FOUND, 0, m);
        return;
    }
    sg->key_name = k->name;
    sg->mech_name = cf_sig_alg_name(sg->mech);
    if (!cf_sig_alg_fits(sg->mech, k->type)) {
        snprintf(m, sizeof(m), "key '%s' is %s: it cannot sign %s", k->name,
                 cf_key_type_name(k->type), cf_sig_alg_name(sg->mech));
        fail(j, CF_ST_POLICY_DENIED, 0, m);
        return;
    }
    if (!sg->data || sg->len == 0) {
        fail(j, CF_ST_INTERNAL, 0, "SIGN job without data");
        return;
    }
    if (sg->mech == CF_SIG_ED25519) {
        unsigned dl = 0;
        mdctx_for_digest(w);
        if (EVP_DigestInit_ex(w->mdctx, w->md[2], NULL) != 1 ||
            EVP_DigestUpdate(w->mdctx, sg->data, sg->len) != 1 ||
            EVP_DigestFinal_ex(w->mdctx, j->digest, &dl) != 1) {
            fail(j, CF_ST_INTERNAL, 0, "digest of the message failed");
            return;
        }
        j->digest_len = dl;
        return;
    }
    if (sg->len > sizeof(j->digest)) {
        fail(j, CF_ST_INTERNAL, 0, "digest longer than 64 octets");
        return;
    }
    memcpy(j->digest, sg->data, sg->len);
    j->digest_len = sg->len;
}

static bool raw_sig_ok(worker *w, const pipe_job *j)
{
    const pipe_sign *sg = &j->sign;
    EVP_PKEY *pub = j->skey->pub;
    if (sg->mech == CF_SIG_ED25519) {
        EVP_MD_CTX_reset(w->mdctx);
        return EVP_DigestVerifyInit_ex(w->mdctx, NULL, NULL, NULL, NULL, pub, NULL) == 1 &&
               EVP_DigestVerify(w->mdctx, j->sig, j->sig_len, sg->data, sg->len) == 1;
    }
    EVP_PKEY_CTX *c = NULL;
    for (unsigned i = 0; i < w->nsctx && !c; i++)
        if (w->sctx[i].pub == pub && w->sctx[i].mech == sg->mech)
            c = w->sctx[i].c;
    bool own = false;
    if (!c) {
        c = verify_ctx(w, pub, sg->mech);
        if (c && w->nsctx < sizeof(w->sctx) / sizeof(w->sctx[0])) {
            w->sctx[w->nsctx].pub = pub;
            w->sctx[w->nsctx].mech = sg->mech;
            w->sctx[w->nsctx++].c = c;
        } else
            own = true; /* cache full: this once */
    }
    bool ok = c && EVP_PKEY_verify(c, j->sig, j->sig_len, sg->data, sg->len) == 1;
    if (own)
        EVP_PKEY_CTX_free(c);
    return ok;
}

/* One request for job j into the slot. */
static void add_req(batch_slot *sl, pipe_job *j, uint32_t key, cf_sig_alg mech, const uint8_t *in,
                    size_t inlen)
{
    sgn_req *r = &sgn_batch_reqs(sl->sb)[sl->nreq];
    r->key = key;
    r->mech = mech;
    r->in = in;
    r->inlen = inlen;
    r->sig = j->sig;
    r->siglen = 0;
    r->rv = 0;
    sl->rj[sl->nreq++] = j;
}

/* Start signing every job of the batch that is still OK, in one plain
 * batch call (so signing can live in its own process): certificates
 * grouped by issuing key, then SIGN jobs grouped by key. */
static void stage_sign_start(worker *w, batch_slot *sl)
{
    pipe_engine *e = w->e;
    sl->nreq = 0;
    sl->async = false;
    for (size_t k = 0; k < e->niss; k++) {
        pipe_issuer *is = &e->iss[k];
        for (size_t i = 0; i < sl->n; i++) {
            pipe_job *j = sl->jobs[i];
            if (j->kind != PIPE_JOB_ISSUE || j->status != CF_ST_OK || j->iss != is)
                continue;
            add_req(sl, j, is->key->idx, is->mech, j->digest_len ? j->digest : j->buf + j->tbs_off,
                    j->digest_len ? j->digest_len : j->tbs_len);
        }
    }
    for (size_t f = 0; f < sl->n; f++) {
        pipe_job *fj = sl->jobs[f];
        if (fj->kind != PIPE_JOB_SIGN || fj->status != CF_ST_OK)
            continue;
        const iss_key *key = fj->skey;
        bool seen = false; /* an earlier job added this key's group */
        for (size_t i = 0; i < f && !seen; i++)
            seen = sl->jobs[i]->kind == PIPE_JOB_SIGN && sl->jobs[i]->status == CF_ST_OK &&
                   sl->jobs[i]->skey == key;
        if (seen)
            continue;
        for (size_t i = f; i < sl->n; i++) {
            pipe_job *j = sl->jobs[i];
            if (j->kind == PIPE_JOB_SIGN && j->status == CF_ST_OK && j->skey == key)
                add_req(sl, j, key->idx, j->sign.mech, j->sign.data, j->sign.len);
        }
    }
    if (sl->nreq == 0)
        return;
    sl->start_ns = cf_histo_now_ns();
    sgn_batch_start(sl->sb, sl->nreq);
    sl->async = sgn_batch_async(sl->sb);
}

/* A signed certificate: check the signature, assemble. */
static void finish_issue(worker *w, pipe_job *j)
{
    if (want_verify(w) && !issued_sig_ok(w, j)) {
        /* Never release a certificate whose signature is wrong. */
        fail(j, CF_ST_HSM_FAILURE, 0,
             "the HSM returned a signature that does not verify with the issuer key");
        return;
    }
    size_t len = 0;
    if (profile_assemble(j->prof, j->buf + j->tbs_off, j->tbs_len, j->sig, j->sig_len, w->scratch,
                         sizeof(w->scratch), &len) != 0) {
        fail(j, CF_ST_POLICY_DENIED, 0, "certificate too large for the engine's buffers");
        return;
    }
    memcpy(j->buf, w->scratch, len);
    j->cert = j->buf;
    j->cert_len = len;
}

/* Wait for the batch's signatures and finish its jobs. */
static void stage_sign_finish(worker *w, batch_slot *sl)
{
    if (sl->nreq == 0)
        return;
    sgn_batch_wait(sl->sb);
    cf_histo_observe(&w->e->h_sign, cf_histo_now_ns() - sl->start_ns);
    const sgn_req *reqs = sgn_batch_reqs(sl->sb);
    for (size_t i = 0; i < sl->nreq; i++) {
        pipe_job *j = sl->rj[i];
        const sgn_req *r = &reqs[i];
        if (r->rv != 0) {
            /* All HSM sessions stayed busy: the engine is overloaded,
             * not failing. */
            cf_status st = r->rv == SGN_RV_CANCELED ? CF_ST_BUSY : CF_ST_HSM_FAILURE;
            fail(j, st, (int)r->rv, r->msg);
            continue;
        }
        j->sig_len = r->siglen;
        if (j->kind == PIPE_JOB_ISSUE) {
            finish_issue(w, j);
        } else if (want_verify(w) && !raw_sig_ok(w, j)) {
            j->sig_len = 0;
            fail(j, CF_ST_HSM_FAILURE, 0,
                 "the HSM returned a signature that does not verify with the key");
        }
    }
    sl->nreq = 0;
}

static void complete(pipe_engine *e, pipe_job *j);
static void hand_to_recorder(pipe_engine *e, pipe_job *const *jobs, size_t n);

/* Take up to a batch of jobs into sl; with `block`, wait for one. False
 * when there is none, or the engine stops with none left. Without `block`
 * (a worker whose batch is being signed, looking for more work) it takes
 * nothing while another worker is idle (that one is being woken for it and
 * would otherwise wait while this one builds) or while stopping (a stop
 * waits for what workers hold: pipe_cancel_queued can only cancel what is
 * still queued). */
static bool take_batch(pipe_engine *e, batch_slot *sl, bool block)
{
    pthread_mutex_lock(&e->mu);
    if (!block && (e->idle > 0 || e->stopping)) {
        pthread_mutex_unlock(&e->mu);
        sl->n = 0;
        return false;
    }
    while (block && e->count == 0 && !e->stopping) {
        e->idle++;
        pthread_cond_wait(&e->not_empty, &e->mu);
        e->idle--;
    }
    size_t n = 0;
    while (e->count > 0 && n < e->o.batch) {
        sl->jobs[n++] = e->ring[e->head];
        e->head = (e->head + 1) % e->cap;
        e->count--;
    }
    if (n) {
        if (e->count > 0)
            pthread_cond_signal(&e->not_empty);
        pthread_cond_broadcast(&e->not_full);
    }
    pthread_mutex_unlock(&e->mu);
    sl->n = n;
    return n > 0;
}

/* Parse, check and build every job of the batch, then start its signing. */
static void batch_begin(worker *w, batch_slot *sl)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    for (size_t i = 0; i < sl->n; i++) {
        pipe_job *j = sl->jobs[i];
        j->sig_len = 0;
        if (j->kind == PIPE_JOB_SIGN)
            stage_front_sign(w, j);
        else
            stage_front(w, j, (int64_t)ts.tv_sec);
    }
    stage_sign_start(w, sl);
}

/* Finish the batch's signatures and release it: failures complete at once,
 * the rest go through the recorder when there is one. */
static void batch_end(worker *w, batch_slot *sl)
{
    pipe_engine *e = w->e;
    stage_sign_finish(w, sl);
    size_t m = 0;
    for (size_t i = 0; i < sl->n; i++) {
        if (e->o.record && sl->jobs[i]->status == CF_ST_OK)
            w->ok[m++] = sl->jobs[i]; /* released by the recorder */
        else
            complete(e, sl->jobs[i]);
    }
    if (m)
        hand_to_recorder(e, w->ok, m);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    pipe_engine *e = w->e;
    char name[16]; /* top -H, ps -L, perf: which thread is which */
    snprintf(name, sizeof(name), "cf-worker/%u", w->id);
    pthread_setname_np(pthread_self(), name);
    batch_slot *cur = &w->sl[0], *nxt = &w->sl[1];
    bool have = false; /* cur holds a started batch */
    for (;;) {
        if (!have) {
            if (!take_batch(e, cur, true))
                break; /* stopping, nothing queued */
            batch_begin(w, cur);
            have = true;
        }
        /* While signing threads sign cur, build the next batch if there
         * is one; with signing on this thread cur is already signed. */
        if (cur->async && take_batch(e, nxt, false)) {
            atomic_fetch_add(&e->overlapped, 1);
            batch_begin(w, nxt);
            batch_end(w, cur);
            batch_slot *t = cur;
            cur = nxt;
            nxt = t;
        } else {
            batch_end(w, cur);
            have = false;
        }
    }
    return NULL;
}

static void complete(pipe_engine *e, pipe_job *j)
{
    cf_status st = j->status < CF_ST__MAX ? j->status : CF_ST_INTERNAL;
    if (j->kind == PIPE_JOB_ISSUE) {
        if (j->prof_slot >= 0)
            atomic_fetch_add_explicit(&e->mprof[j->prof_slot].by_status[st], 1,
                                      memory_order_relaxed);
        if (st == CF_ST_OK)
            cf_histo_observe(&e->h_issue, cf_histo_now_ns() - j->queued_ns);
    }
    atomic_fetch_add(&e->by_status[st], 1);
    atomic_fetch_add(&e->completed, 1);
    e->o.done(j, e->o.done_arg);
}

/* Queue signed jobs for the recorder; waits while its queue is full
 * (bounded: the ledger's pace is the engine's pace). */
static void hand_to_recorder(pipe_engine *e, pipe_job *const *jobs, size_t n)
{
    pthread_mutex_lock(&e->rmu);
    while (e->rq_len + n > e->rq_cap)
        pthread_cond_wait(&e->rq_room, &e->rmu);
    memcpy(e->rq + e->rq_len, jobs, n * sizeof(*jobs));
    e->rq_len += n;
    pthread_cond_signal(&e->rq_work);
    pthread_mutex_unlock(&e->rmu);
}

static void *recorder_main(void *arg)
{
    pipe_engine *e = arg;
    pthread_setname_np(pthread_self(), "cf-recorder");
    for (;;) {
        pthread_mutex_lock(&e->rmu);
        while (e->rq_len == 0 && !e->rec_stop)
            pthread_cond_wait(&e->rq_work, &e->rmu);
        if (e->rq_len == 0) {
            pthread_mutex_unlock(&e->rmu);
            break;
        }
        size_t n = e->rq_len;
        memcpy(e->rq_take, e->rq, n * sizeof(*e->rq));
        e->rq_len = 0;
        pthread_cond_broadcast(&e->rq_room);
        pthread_mutex_unlock(&e->rmu);
        /* Record before release: one transaction for all of them. */
        uint64_t t0 = cf_histo_now_ns();
        int rrc = e->o.record(e->rq_take, n, e->o.record_arg);
        cf_histo_observe(&e->h_commit, cf_histo_now_ns() - t0);
        if (rrc != 0)
            for (size_t i = 0; i < n; i++) {
                pipe_job *j = e->rq_take[i];
                fail(j, CF_ST_LEDGER_FAILURE, 0,
                     j->kind == PIPE_JOB_SIGN
                         ? "the signature could not be recorded; it was not released"
                         : "the certificate could not be recorded; it was not released");
                j->cert = NULL;
                j->cert_len = 0;
                j->sig_len = 0;
            }
        for (size_t i = 0; i < n; i++)
            complete(e, e->rq_take[i]);
    }
    return NULL;
}

/* --- public ------------------------------------------------------------------ */

/* Free what pipe_new set up; the workers are joined already. */
static void destroy(pipe_engine *e)
{
    for (unsigned i = 0; i < e->nw; i++)
        worker_fini(&e->w[i]);
    free(e->w);
    free(e->ring);
    free(e->rq);
    free(e->rq_take);
    pthread_cond_destroy(&e->rq_room);
    pthread_cond_destroy(&e->rq_work);
    pthread_mutex_destroy(&e->rmu);
    pthread_cond_destroy(&e->not_full);
    pthread_cond_destroy(&e->not_empty);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->mprof_mu);
    free(e);
}

int pipe_new(const pipe_opts *o, const pipe_profile_def *defs, size_t ndefs, pipe_engine **out,
             char *err, size_t errlen)
{
    *out = NULL;
    if (!o || !o->done) {
        set_err(err, errlen, "%s%s", "pipeline: no completion callback", "");
        return -1;
    }
    if (ndefs == 0 || ndefs > PIPE_MAX_PROFILES) {
        set_err(err, errlen, "%s%s", "pipeline: between 1 and 32 profiles", "");
        return -1;
    }
    if (!o->iss) {
        set_err(err, errlen, "%s%s", "pipeline: no keys and issuers", "");
        return -1;
    }
    pipe_engine *e = calloc(1, sizeof(*e));
    if (!e)
        return -1;
    e->o = *o;
    e->sgn = iss_signer(o->iss);
    if (!e->o.workers) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        e->o.workers = n > 0 ? (unsigned)n : 1;
    }
    if (!e->o.queue)
        e->o.queue = 4096;
    if (!e->o.batch)
        e->o.batch = 32;
    if (e->o.verify == PIPE_VERIFY_ONE_IN_N && e->o.verify_n == 0)
        e->o.verify_n = 16;
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->mprof_mu, NULL);
    pthread_cond_init(&e->not_empty, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->not_full, &ca);
    pthread_condattr_destroy(&ca);
    e->cap = e->o.queue;
    e->ring = calloc(e->cap, sizeof(*e->ring));
    pthread_mutex_init(&e->rmu, NULL);
    pthread_cond_init(&e->rq_work, NULL);
    pthread_cond_init(&e->rq_room, NULL);
    /* Room for every worker's batch twice over: bounds a group commit. */
    e->rq_cap = (size_t)e->o.workers * e->o.batch * 2;
    e->rq = calloc(e->rq_cap, sizeof(*e->rq));
    e->rq_take = calloc(e->rq_cap, sizeof(*e->rq_take));
    if (!e->ring || !e->rq || !e->rq_take)
        goto fail;
    for (size_t i = 0; i < ndefs; i++) {
        pipe_prof *pp = &e->profs[e->nprofs++];
        pp->prof = defs[i].prof;
        pp->name = profile_name(defs[i].prof);
        pp->name_len = strlen(pp->name);
        pp->mslot = metric_slot(e, pp->name); /* also: the config's order on the endpoint */
        const iss_key *key = defs[i].issuer->key;
        pipe_issuer *is = NULL;
        for (size_t k = 0; k < e->niss; k++)
            if (e->iss[k].key == key)
                is = &e->iss[k];
        if (!is) {
            if (e->niss == PIPE_MAX_ISSUERS)
                goto fail;
            is = &e->iss[e->niss];
            is->idx = (unsigned)e->niss++;
            is->key = key;
            is->pub = key->pub;
            is->mech = profile_mech(defs[i].prof);
            if (!cf_sig_alg_fits(is->mech, key->type)) {
                set_err(err, errlen, "profile %s: %s does not fit its key", pp->name,
                        cf_sig_alg_name(is->mech));
                goto fail;
            }
        } else if (is->mech != profile_mech(defs[i].prof)) {
            set_err(err, errlen,
                    "profile %s signs with %s, but another profile uses the same "
                    "key with another mechanism",
                    pp->name, cf_sig_alg_name(profile_mech(defs[i].prof)));
            goto fail;
        }
        pp->iss = is;
    }
    e->w = calloc(e->o.workers, sizeof(*e->w));
    if (!e->w)
        goto fail;
    for (unsigned i = 0; i < e->o.workers; i++) {
        if (worker_init(&e->w[i], e, i) != 0) {
            set_err(err, errlen, "%s%s", "pipeline: worker set-up failed (OpenSSL)", "");
            e->nw = i + 1;
            goto fail;
        }
    }
    e->nw = e->o.workers;
    for (unsigned i = 0; i < e->o.workers; i++) {
        if (pthread_create(&e->w[i].th, NULL, worker_main, &e->w[i]) != 0) {
            set_err(err, errlen, "%s%s", "pipeline: cannot start worker threads", "");
            pthread_mutex_lock(&e->mu);
            e->stopping = true;
            pthread_cond_broadcast(&e->not_empty);
            pthread_mutex_unlock(&e->mu);
            for (unsigned k = 0; k < i; k++)
                pthread_join(e->w[k].th, NULL);
            goto fail;
        }
    }
    e->nstarted = e->o.workers;
    if (e->o.record) {
        if (pthread_create(&e->rec_th, NULL, recorder_main, e) != 0) {
            set_err(err, errlen, "%s%s", "pipeline: cannot start the recorder thread", "");
            pthread_mutex_lock(&e->mu);
            e->stopping = true;
            pthread_cond_broadcast(&e->not_empty);
            pthread_mutex_unlock(&e->mu);
            for (unsigned k = 0; k < e->nstarted; k++)
                pthread_join(e->w[k].th, NULL);
            goto fail;
        }
        e->rec_started = true;
    }
    *out = e;
    return 0;
fail:
    destroy(e);
    return -1;
}

/* Wait for room until the deadline (CLOCK_MONOTONIC; NULL: do not wait). */
static bool wait_room(pipe_engine *e, const struct timespec *dl)
{
    if (e->count < e->cap || !dl)
        return e->count < e->cap;
    while (e->count == e->cap && !e->stopping)
        if (pthread_cond_timedwait(&e->not_full, &e->mu, dl) == ETIMEDOUT)
            break;
    return e->count < e->cap;
}

size_t pipe_submit_many(pipe_engine *e, pipe_job *const *jobs, size_t n, unsigned timeout_ms)
{
    size_t done = 0;
    struct timespec dl, *dlp = NULL;
    if (timeout_ms) {
        /* One deadline for the whole call, however often it waits. */
        clock_gettime(CLOCK_MONOTONIC, &dl);
        uint64_t ns = (uint64_t)dl.tv_nsec + (uint64_t)timeout_ms * 1000000u;
        dl.tv_sec += (time_t)(ns / 1000000000u);
        dl.tv_nsec = (long)(ns % 1000000000u);
        dlp = &dl;
    }
    uint64_t now_ns = cf_histo_now_ns();
    for (size_t i = 0; i < n; i++) {
        jobs[i]->queued_ns = now_ns;
        jobs[i]->prof_slot = -1;
    }
    pthread_mutex_lock(&e->mu);
    while (done < n && !e->stopping && wait_room(e, dlp)) {
        while (done < n && e->count < e->cap) {
            e->ring[(e->head + e->count) % e->cap] = jobs[done++];
            e->count++;
        }
        pthread_cond_signal(&e->not_empty);
    }
    pthread_mutex_unlock(&e->mu);
    atomic_fetch_add(&e->submitted, done);
    return done;
}

int pipe_submit(pipe_engine *e, pipe_job *job, unsigned timeout_ms)
{
    return pipe_submit_many(e, &job, 1, timeout_ms) == 1 ? 0 : -1;
}

size_t pipe_cancel_queued(pipe_engine *e, cf_status st, const char *msg)
{
    size_t n = 0;
    for (;;) {
        pipe_job *j = NULL;
        pthread_mutex_lock(&e->mu);
        if (e->count > 0) {
            j = e->ring[e->head];
            e->head = (e->head + 1) % e->cap;
            e->count--;
            pthread_cond_broadcast(&e->not_full);
        }
        pthread_mutex_unlock(&e->mu);
        if (!j)
            return n;
        j->status = CF_ST_OK;
        j->cert = NULL;
        j->cert_len = 0;
        j->sig_len = 0;
        fail(j, st, 0, msg);
        complete(e, j);
        n++;
    }
}

void pipe_free(pipe_engine *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->mu);
    e->stopping = true;
    pthread_cond_broadcast(&e->not_empty);
    pthread_cond_broadcast(&e->not_full);
    pthread_mutex_unlock(&e->mu);
    for (unsigned i = 0; i < e->nstarted; i++)
        pthread_join(e->w[i].th, NULL);
    if (e->rec_started) {
        /* Every worker has handed over its last jobs: drain, then stop. */
        pthread_mutex_lock(&e->rmu);
        e->rec_stop = true;
        pthread_cond_signal(&e->rq_work);
        pthread_mutex_unlock(&e->rmu);
        pthread_join(e->rec_th, NULL);
    }
    destroy(e);
}

void pipe_get_stats(pipe_engine *e, pipe_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->submitted = atomic_load(&e->submitted);
    st->completed = atomic_load(&e->completed);
    st->overlapped = atomic_load(&e->overlapped);
    for (int i = 0; i < CF_ST__MAX; i++)
        st->by_status[i] = atomic_load(&e->by_status[i]);
    pthread_mutex_lock(&e->mu);
    st->queued = e->count;
    pthread_mutex_unlock(&e->mu);
    st->workers = e->nw;
}

void pipe_get_metrics(pipe_engine *e, pipe_metrics *m)
{
    memset(m, 0, sizeof(*m));
    m->nprofiles = atomic_load_explicit(&e->nmprof, memory_order_acquire);
    for (size_t i = 0; i < m->nprofiles; i++) {
        m->profile[i] = e->mprof[i].name;
        for (int k = 0; k < CF_ST__MAX; k++)
            m->by_profile[i][k] =
                atomic_load_explicit(&e->mprof[i].by_status[k], memory_order_relaxed);
    }
    cf_histo_read(&e->h_issue, &m->issue);
    cf_histo_read(&e->h_sign, &m->hsm_sign);
    cf_histo_read(&e->h_commit, &m->ledger_commit);
}
