/* client.c — the ACME side of certforge-agent: the job scheduler, the
 * workers, and one enrolment as a resumable state machine over RFC 8555.
 *
 * An enrolment advances by steps; each step reads the enrolment and the
 * NF from the state, does what the ACME server's current answer calls for
 * (newAccount, newOrder, a challenge, finalize, the download), writes what
 * it learnt (account URL, order URL, the TXT records set) and either
 * schedules the next step or finishes. Nothing else is kept in memory, so
 * after kill -9 the step is simply run again: the order URL in the state
 * leads back to the server's view of the order (RFC 8555 §7.1.3), and the
 * server decides what is left to do.
 *
 * Failures: a network error, 5xx, rateLimited or serverInternal is
 * transient: retried with exponential backoff (retry_base · 2^n up to
 * retry_max, max_retries times); meanwhile the NF is answered 503 with
 * Retry-After. Any other problem ends the enrolment as failed with the
 * server's problem type and detail. */
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acme/acme.h"
#include "acme/jws.h"
#include "agent/acmemsg.h"
#include "agent/agent.h"
#include "agent/dnsupd.h"
#include "agent/estmsg.h"
#include "agent/state.h"
#include "hsm/hsm.h"

#define JOB_ID 80
#define SET_BUCKETS 65536
#define MAX_ANSWER (1 << 20)

/* ------------------------------------------------------------ scheduler */

typedef struct job {
    int64_t due;
    char id[JOB_ID];
} job;

typedef struct hent {
    struct hent *next;
    char id[JOB_ID];
} hent;

typedef struct worker {
    agent *a;
    unsigned idx;
    pthread_t tid;
    CURL *curl;
    acme_db *db;
    char nonce[256];
    am_directory dir;
    bool have_dir;
} worker;

struct agent_sched {
    agent *a;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *heap;
    size_t n, cap;
    hent *set[SET_BUCKETS]; /* ids queued or running */
    bool stopping;
    worker *w;
    unsigned n_w;
};

static unsigned hash_id(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % SET_BUCKETS;
}

/* _locked: the scheduler's mutex is held */
static bool set_has_locked(agent_sched *s, const char *id)
{
    for (hent *e = s->set[hash_id(id)]; e; e = e->next)
        if (strcmp(e->id, id) == 0)
            return true;
    return false;
}

static void set_del_locked(agent_sched *s, const char *id)
{
    hent **pp = &s->set[hash_id(id)];
    for (; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->id, id) == 0) {
            hent *e = *pp;
            *pp = e->next;
            free(e);
            return;
        }
}

static void heap_push_locked(agent_sched *s, const job *j)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 1024;
        job *h = realloc(s->heap, nc * sizeof(*h));
        if (!h)
            abort(); /* losing a job would strand an enrolment until restart */
        s->heap = h;
        s->cap = nc;
    }
    size_t i = s->n++;
    s->heap[i] = *j;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (s->heap[p].due <= s->heap[i].due)
            break;
        job t = s->heap[p];
        s->heap[p] = s->heap[i];
        s->heap[i] = t;
        i = p;
    }
}

static job heap_pop_locked(agent_sched *s)
{
    job top = s->heap[0];
    s->heap[0] = s->heap[--s->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < s->n && s->heap[l].due < s->heap[m].due)
            m = l;
        if (r < s->n && s->heap[r].due < s->heap[m].due)
            m = r;
        if (m == i)
            break;
        job t = s->heap[m];
        s->heap[m] = s->heap[i];
        s->heap[i] = t;
        i = m;
    }
    return top;
}

void agent_sched_add(agent_sched *s, const char *id, int64_t due_ms)
{
    if (!s || strlen(id) >= JOB_ID)
        return;
    pthread_mutex_lock(&s->mu);
    if (!set_has_locked(s, id)) {
        hent *e = calloc(1, sizeof(*e));
        if (!e)
            abort();
        snprintf(e->id, sizeof(e->id), "%s", id);
        unsigned h = hash_id(id);
        e->next = s->set[h];
        s->set[h] = e;
        job j = {.due = due_ms};
        snprintf(j.id, sizeof(j.id), "%s", id);
        heap_push_locked(s, &j);
        atomic_fetch_add_explicit(&s->a->ctr.in_flight, 1, memory_order_relaxed);
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
}

/* ------------------------------------------------------------ HTTP */

typedef struct resp {
    long status;
    char *body;
    size_t len, cap;
    char location[AM_URL];
    char nonce[256];
    char retry_after[32];
    char ctype[128];
    bool too_big;
} resp;

static void resp_clear(resp *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    resp *r = arg;
    size_t k = sz * n;
    if (r->len + k + 1 > MAX_ANSWER) {
        r->too_big = true;
        return 0;
    }
    if (r->len + k + 1 > r->cap) {
        size_t nc = (r->len + k + 1) * 2;
        char *b = realloc(r->body, nc);
        if (!b)
            return 0;
        r->body = b;
        r->cap = nc;
    }
    memcpy(r->body + r->len, p, k);
    r->len += k;
    r->body[r->len] = '\0';
    return k;
}

static void header_value(const char *p, size_t n, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if (n <= nl + 1 || strncasecmp(p, name, nl) != 0 || p[nl] != ':')
        return;
    p += nl + 1;
    n -= nl + 1;
    while (n && (*p == ' ' || *p == '\t'))
        p++, n--;
    while (n && (p[n - 1] == '\r' || p[n - 1] == '\n' || p[n - 1] == ' '))
        n--;
    if (n >= cap)
        return;
    memcpy(out, p, n);
    out[n] = '\0';
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
    resp *r = arg;
    size_t k = sz * n;
    header_value(p, k, "Location", r->location, sizeof(r->location));
    header_value(p, k, "Replay-Nonce", r->nonce, sizeof(r->nonce));
    header_value(p, k, "Retry-After", r->retry_after, sizeof(r->retry_after));
    header_value(p, k, "Content-Type", r->ctype, sizeof(r->ctype));
    return k;
}

/* One exchange. post: JOSE body (NULL: GET, or HEAD when head). 0 with
 * r->status, or -1 (network; why set). */
static int http(worker *w, const char *url, const char *post, bool head, resp *r, char *why, size_t whylen)
{
    const agent_cfg *c = w->a->cfg;
    CURL *h = w->curl;
    memset(r, 0, sizeof(*r));
    curl_easy_reset(h);
    struct curl_slist *hdrs = NULL;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->acme_timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->acme_timeout_ms);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(h, CURLOPT_USERAGENT, "certforge-agent/" CF_VERSION);
    if (c->acme_ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->acme_ca_file);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    if (post) {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/jose+json");
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, post);
    } else if (head) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    }
    atomic_fetch_add_explicit(&w->a->ctr.acme_requests, 1, memory_order_relaxed);
    CURLcode cc = curl_easy_perform(h);
    curl_slist_free_all(hdrs);
    if (cc != CURLE_OK) {
        snprintf(why, whylen, "%s: %s", url, r->too_big ? "answer too large" : curl_easy_strerror(cc));
        atomic_fetch_add_explicit(&w->a->ctr.acme_errors, 1, memory_order_relaxed);
        resp_clear(r);
        return -1;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    if (r->nonce[0])
        snprintf(w->nonce, sizeof(w->nonce), "%s", r->nonce);
    if (!r->body) {
        r->body = calloc(1, 1);
        if (!r->body)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ steps */

typedef enum outcome { O_WAIT, O_DONE, O_TRANSIENT, O_FAILED } outcome;

typedef struct step {
    worker *w;
    agent *a;
    char id[AGENT_ID_LEN + 1];
    char nf_id[37];
    char kind[16];
    uint8_t *csr;
    size_t csr_len;
    char spki[65];
    char *token;
    char replaces[256];
    char order_url[AM_URL];
    int attempts;
    json_t *dns_set; /* [{"name", "value"}] set for this enrolment */
    agent_nf nf;
    hsm_signer *signer; /* the account key in acme.account_key_token, or NULL (nf.key signs) */
    /* outcome */
    int64_t wait_ms;
    char error[600];
    unsigned retry_after_s;
} step;

__attribute__((format(printf, 3, 4))) static outcome fail(step *s, outcome o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->error, sizeof(s->error), fmt, ap);
    va_end(ap);
    for (char *p = s->error; *p; p++)
        if (*p == '"' || (unsigned char)*p < 0x20)
            *p = '\'';
    return o;
}

/* A problem answer: transient (retry) or final. */
static outcome problem(step *s, const char *what, const resp *r)
{
    char type[96] = "", detail[256] = "";
    if (am_problem_parse(r->body, r->len, type, sizeof(type), detail, sizeof(detail)) != 0)
        type[0] = detail[0] = 0;
    s->retry_after_s = am_retry_after(r->retry_after, 0, 3600);
    bool transient = r->status >= 500 || r->status == 429 || strcmp(type, "rateLimited") == 0 ||
                     strcmp(type, "serverInternal") == 0 || strcmp(type, "badNonce") == 0;
    return fail(s, transient ? O_TRANSIENT : O_FAILED, "%s: HTTP %ld %s%s%s", what, r->status, type[0] ? type : "",
                detail[0] ? ": " : "", detail);
}

static int get_nonce(worker *w, char *why, size_t whylen)
{
    if (w->nonce[0])
        return 0;
    resp r;
    if (http(w, w->dir.new_nonce, NULL, true, &r, why, whylen) != 0)
        return -1;
    int ok = w->nonce[0] != 0;
    if (!ok)
        snprintf(why, whylen, "newNonce: HTTP %ld without Replay-Nonce", r.status);
    resp_clear(&r);
    return ok ? 0 : -1;
}

/* ES256 with the account key in the token (acme_jws_sign_cb): SHA-256
 * here, the signature by the token (CKM_ECDSA, which hsm_sign returns as
 * DER), turned into the JWS's R || S (RFC 7518 §3.4). */
static size_t sign_token(const void *ctx, const char *input, size_t len, uint8_t *out, size_t cap)
{
    const step *s = ctx;
    uint8_t dg[32], sig[CF_SIG_MAX];
    unsigned dl = 0;
    size_t sl = 0, res = 0;
    hsm_err he = {0};
    ECDSA_SIG *es = NULL;
    const BIGNUM *r, *sv;
    if (cap < 64 || EVP_Digest(input, len, dg, &dl, EVP_sha256(), NULL) != 1 ||
        hsm_sign(s->signer, CF_SIG_ECDSA_SHA256, dg, sizeof(dg), sig, &sl, &he) != 0) {
        if (he.msg[0])
            agent_log(s->a, AGENT_LOG_WARNING, "event=token_sign_failed nf=%s rv=%s error=\"%s\"", s->nf_id,
                      hsm_rv_name(he.rv), he.msg);
        return 0;
    }
    const uint8_t *p = sig;
    if ((es = d2i_ECDSA_SIG(NULL, &p, (long)sl)) != NULL) {
        ECDSA_SIG_get0(es, &r, &sv);
        if (BN_bn2binpad(r, out, 32) == 32 && BN_bn2binpad(sv, out + 32, 32) == 32)
            res = 64;
    }
    ECDSA_SIG_free(es);
    return res;
}

/* The account key of an NF whose key is in the token: a signer for it and
 * its public half (nf.key) for the JWK. */
static outcome open_token_key(step *s)
{
    hsm_err he = {0};
    if (!s->a->acct_token)
        return fail(s, O_FAILED, "NF %s's account key is in a PKCS#11 token (%s) but acme.account_key_token is not set",
                    s->nf_id, s->nf.key_uri);
    if (hsm_signer_open(s->a->acct_token, s->nf.key_uri, 1, &s->signer, &he) != 0 ||
        !(s->nf.key = hsm_signer_public_key(s->signer, &he)))
        return fail(s, O_TRANSIENT, "the account key %s: %s (%s)", s->nf.key_uri, he.msg, hsm_rv_name(he.rv));
    return O_WAIT;
}

/* A JWS POST (payload NULL: POST-as-GET), kid = the account, or jwk when
 * the account is being made. badNonce is retried with the nonce it
 * carries (RFC 8555 §6.5), three times at most. */
static int jose(step *s, const char *url, const char *payload, bool use_jwk, resp *r)
{
    worker *w = s->w;
    for (int attempt = 0; attempt < 4; attempt++) {
        if (get_nonce(w, s->error, sizeof(s->error)) != 0)
            return -1;
        json_t *hdr = json_pack("{s:s, s:s}", "nonce", w->nonce, "url", url);
        w->nonce[0] = '\0';
        if (!hdr)
            return -1;
        if (use_jwk)
            json_object_set_new(hdr, "jwk", acme_jwk_from_pkey(s->nf.key));
        else
            json_object_set_new(hdr, "kid", json_string(s->nf.account_url));
        const uint8_t *pl = (const uint8_t *)(payload ? payload : "");
        size_t pn = payload ? strlen(payload) : 0;
        char *body = s->signer ? acme_jws_sign_with(s->nf.key, sign_token, s, hdr, pl, pn)
                               : acme_jws_sign(s->nf.key, hdr, pl, pn);
        json_decref(hdr);
        if (!body) {
            snprintf(s->error, sizeof(s->error), "cannot sign the request to %s", url);
            return -1;
        }
        int rc = http(w, url, body, false, r, s->error, sizeof(s->error));
        free(body);
        if (rc != 0)
            return -1;
        if (r->status == 400 && strstr(r->body, "badNonce") && attempt < 3) {
            resp_clear(r);
            continue;
        }
        return 0;
    }
    return 0;
}

static int load_directory(step *s)
{
    worker *w = s->w;
    if (w->have_dir)
        return 0;
    resp r;
    if (http(w, s->a->cfg->directory_url, NULL, false, &r, s->error, sizeof(s->error)) != 0)
        return -1;
    int rc = -1;
    char why[200];
    if (r.status != 200)
        snprintf(s->error, sizeof(s->error), "directory %s: HTTP %ld", s->a->cfg->directory_url, r.status);
    else if (am_directory_parse(r.body, r.len, &w->dir, why, sizeof(why)) != 0)
        snprintf(s->error, sizeof(s->error), "directory %s: %s", s->a->cfg->directory_url, why);
    else
        rc = w->have_dir = true, rc = 0;
    resp_clear(&r);
    return rc;
}

/* ------------------------------------------------------------ writes */

typedef enum wr_kind { W_ACCOUNT, W_ORDER, W_DNS, W_RETRY, W_FAILED, W_VALID, W_ARI } wr_kind;

typedef struct wr {
    wr_kind kind;
    const char *id, *nf, *text, *kind_name, *cert_for; /* cert_for: the certificate a renewal replaces */
    int64_t now, a, b;
    int transient;
    /* W_VALID */
    const char *cert_id, *chain, *spki, *ari_id;
    const uint8_t *der;
    size_t der_len;
    int64_t nb, na, renew_at, ari_next;
    const char *star_order, *star_nf; /* the NF's STAR order, recorded with its first certificate */
} wr;

static int tx_wr(acme_db *tx, void *arg)
{
    wr *x = arg;
    switch (x->kind) {
    case W_ACCOUNT:
        return acme_db_exec(tx, "UPDATE nfs SET account_url = ? WHERE id = ?", "ss", x->text, x->nf) < 0 ? -1 : 0;
    case W_ORDER:
        return acme_db_exec(tx, "UPDATE enrolments SET order_url = ?, updated = ? WHERE id = ?", "sis", x->text, x->now,
                            x->id) < 0
                   ? -1
                   : 0;
    case W_DNS:
        return acme_db_exec(tx, "UPDATE enrolments SET dns_set = ?, updated = ? WHERE id = ?", "sis", x->text, x->now,
                            x->id) < 0
                   ? -1
                   : 0;
    case W_RETRY:
        return acme_db_exec(tx,
                            "UPDATE enrolments SET attempts = ?, next_at = ?, error = ?, transient = 1, updated = ? "
                            "WHERE id = ? AND status = 'pending'",
                            "iisis", x->a, x->b, x->text, x->now, x->id) < 0
                   ? -1
                   : 0;
    case W_FAILED:
        if (acme_db_exec(tx,
                         "UPDATE enrolments SET status = 'failed', error = ?, transient = ?, updated = ? "
                         "WHERE id = ? AND status = 'pending'",
                         "siis", x->text, (int64_t)x->transient, x->now, x->id) < 0)
            return -1;
        /* a failed renewal: the certificate is tried again later */
        return acme_db_exec(tx, "UPDATE certs SET renewal = NULL, renew_at = ? WHERE renewal = ?", "is", x->a, x->id) < 0
                   ? -1
                   : 0;
    case W_VALID:
        if (acme_db_exec(tx,
                         "INSERT INTO certs(id, nf, enrolment, der, chain, spki, not_before, not_after, ari_id, renew_at, "
                         "ari_next, created) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                         "sssbssiisiii", x->cert_id, x->nf, x->id, x->der, x->der_len, x->chain, x->spki, x->nb, x->na,
                         x->ari_id, x->renew_at, x->ari_next, x->now) < 0)
            return -1;
        if (x->star_order && acme_db_exec(tx, "UPDATE nf_star SET order_url = ?, spki = ? WHERE nf = ?", "sss",
                                          x->star_order, x->spki, x->star_nf) < 0)
            return -1;
        return acme_db_exec(tx,
                            "UPDATE enrolments SET status = 'valid', cert = ?, error = NULL, transient = 0, updated = ? "
                            "WHERE id = ? AND status = 'pending'",
                            "sis", x->cert_id, x->now, x->id) < 0
                   ? -1
                   : 0;
    case W_ARI:
        return acme_db_exec(tx, "UPDATE certs SET renew_at = ?, ari_next = ? WHERE id = ? AND renewal IS NULL", "iis",
                            x->a, x->b, x->id) < 0
                   ? -1
                   : 0;
    }
    return -1;
}

static int write_(agent *a, wr *x)
{
    x->now = agent_now();
    return acme_store_run(a->store, tx_wr, x);
}

/* ------------------------------------------------------------ the enrolment */

static void step_clear(step *s)
{
    free(s->csr);
    free(s->token);
    json_decref(s->dns_set);
    agent_nf_clear(&s->nf);
    hsm_signer_close(s->signer);
}

/* 1 loaded and pending, 0 nothing to do, -1 error */
static int step_load(step *s)
{
    acme_q q;
    if (acme_db_query(s->w->db, &q,
                      "SELECT nf, kind, status, csr, spki, token, replaces, order_url, attempts, dns_set FROM enrolments "
                      "WHERE id = ?",
                      "s", s->id) != 0)
        return -1;
    int r = acme_q_next(&q);
    if (r != 1 || strcmp(acme_q_text(&q, 2), AGENT_ST_PENDING) != 0) {
        acme_q_end(&q);
        return r < 0 ? -1 : 0;
    }
    snprintf(s->nf_id, sizeof(s->nf_id), "%s", acme_q_text(&q, 0));
    snprintf(s->kind, sizeof(s->kind), "%s", acme_q_text(&q, 1));
    size_t cl = 0;
    const void *csr = acme_q_blob(&q, 3, &cl);
    s->csr = malloc(cl ? cl : 1);
    if (s->csr && csr)
        memcpy(s->csr, csr, cl);
    s->csr_len = cl;
    snprintf(s->spki, sizeof(s->spki), "%s", acme_q_text(&q, 4));
    s->token = acme_q_text(&q, 5) ? strdup(acme_q_text(&q, 5)) : NULL;
    snprintf(s->replaces, sizeof(s->replaces), "%s", acme_q_text(&q, 6) ? acme_q_text(&q, 6) : "");
    snprintf(s->order_url, sizeof(s->order_url), "%s", acme_q_text(&q, 7) ? acme_q_text(&q, 7) : "");
    s->attempts = (int)acme_q_int(&q, 8);
    s->dns_set = acme_q_text(&q, 9) ? json_loads(acme_q_text(&q, 9), 0, NULL) : NULL;
    acme_q_end(&q);
    if (!s->dns_set)
        s->dns_set = json_array();
    if (!s->csr || !s->dns_set)
        return -1;
    r = agent_nf_load(s->w->db, s->nf_id, true, &s->nf);
    return r == 1 ? 1 : -1;
}

/* RFC 8555 §7.3.4: the externalAccountBinding of a newAccount: a JWS by
 * the EAB HMAC key (HS256) over the account's public JWK, protected header
 * alg, kid = the EAB key id, url = the newAccount URL, no nonce. The MAC is
 * OpenSSL's (acme_jws_sign_hmac: EVP_MAC). A JSON object, or NULL. */
static json_t *eab_binding(step *s)
{
    const agent_cfg *c = s->a->cfg;
    /* the NF's own credential (`nf add --eab-kid`) wins over acme.eab */
    bool own = s->nf.eab_kid[0] && s->nf.eab_key;
    const char *kid = own ? s->nf.eab_kid : c->eab_kid;
    const uint8_t *key = own ? s->nf.eab_key : c->eab_key;
    size_t key_len = own ? s->nf.eab_key_len : c->eab_key_len;
    json_t *jwk = acme_jwk_from_pkey(s->nf.key);
    json_t *hdr = json_pack("{s:s, s:s}", "kid", kid, "url", s->w->dir.new_account);
    char *payload = jwk ? json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    char *txt = hdr && payload ? acme_jws_sign_hmac(ACME_JWS_ALG_HS256, key, key_len, hdr,
                                                    (const uint8_t *)payload, strlen(payload))
                               : NULL;
    json_t *out = txt ? json_loads(txt, 0, NULL) : NULL;
    free(txt);
    free(payload);
    json_decref(hdr);
    json_decref(jwk);
    return out;
}

static outcome ensure_account(step *s)
{
    if (s->nf.account_url[0])
        return O_WAIT;
    json_t *p = json_pack("{s:b}", "termsOfServiceAgreed", 1);
    if (s->a->cfg->contact)
        json_object_set_new(p, "contact", json_pack("[s]", s->a->cfg->contact));
    bool eab_set = s->a->cfg->eab_kid || s->nf.eab_kid[0];
    if (eab_set) {
        json_t *eab = eab_binding(s);
        if (!eab) {
            json_decref(p);
            return fail(s, O_FAILED, "newAccount: cannot make the externalAccountBinding");
        }
        json_object_set_new(p, "externalAccountBinding", eab);
    }
    char *txt = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    resp r;
    int rc = txt ? jose(s, s->w->dir.new_account, txt, true, &r) : -1;
    free(txt);
    if (rc != 0)
        return O_TRANSIENT;
    outcome o = O_WAIT;
    if (r.status != 200 && r.status != 201) {
        o = problem(s, "newAccount", &r);
        if (strstr(s->error, "externalAccountRequired") && !eab_set)
            snprintf(s->error + strlen(s->error), sizeof(s->error) - strlen(s->error),
                     " (set acme.eab, or the NF's own with nf add --eab-kid --eab-hmac-key-file: the key id and "
                     "HMAC key file the ACME server's operator gave)");
    } else if (!r.location[0] || strncmp(r.location, "https://", 8) != 0) {
        o = fail(s, O_TRANSIENT, "newAccount: no account URL in Location");
    } else {
        snprintf(s->nf.account_url, sizeof(s->nf.account_url), "%s", r.location);
        wr x = {.kind = W_ACCOUNT, .nf = s->nf_id, .text = r.location};
        if (write_(s->a, &x) != 0)
            o = fail(s, O_TRANSIENT, "cannot record the account URL");
        else
            agent_log(s->a, AGENT_LOG_INFO, "event=account_created nf=%s account=%s", s->nf_id, r.location);
    }
    resp_clear(&r);
    return o;
}

static outcome new_order(step *s)
{
    est_csr csr;
    est_err ee;
    char why[300];
    if (est_csr_parse(s->csr, s->csr_len, &csr, &ee, why, sizeof(why)) != 0)
        return fail(s, O_FAILED, "stored CSR: %s", why);
    json_t *ids = json_array();
    bool nfid = s->a->cfg->nf_instance_id && csr.uuid[0];
    if (nfid)
        json_array_append_new(ids, json_pack("{s:s, s:s}", "type", "NfInstanceId", "value", csr.uuid));
    for (unsigned i = 0; i < csr.n_dns; i++)
        json_array_append_new(ids, json_pack("{s:s, s:s}", "type", "dns", "value", csr.dns[i]));
    est_csr_free(&csr);
    json_t *p = json_pack("{s:o}", "identifiers", ids);
    const char *prof = nfid ? s->a->cfg->profile : s->a->cfg->dns_profile;
    if (s->nf.star_lifetime > 0) {
        /* RFC 8739 §3.1.1: a STAR order, within the server's limits; it
         * ends max-duration from now (at most a year): the NF registers
         * again (nf add) for a new order after that */
        const am_directory *d = &s->w->dir;
        if (!d->has_star) {
            json_decref(p);
            return fail(s, O_FAILED, "newOrder: NF %s is registered for STAR certificates (--star) but the ACME "
                        "server offers no STAR (no meta.auto-renewal in its directory)", s->nf_id);
        }
        if (d->star_min_lifetime && s->nf.star_lifetime < d->star_min_lifetime) {
            json_decref(p);
            return fail(s, O_FAILED, "newOrder: the NF's STAR lifetime %llds is below the server's min-lifetime %llds",
                        (long long)s->nf.star_lifetime, (long long)d->star_min_lifetime);
        }
        int64_t dur = 365 * 86400;
        if (d->star_max_duration && d->star_max_duration < dur)
            dur = d->star_max_duration;
        if (dur < s->nf.star_lifetime) {
            json_decref(p);
            return fail(s, O_FAILED, "newOrder: the NF's STAR lifetime %llds exceeds the server's max-duration %llds",
                        (long long)s->nf.star_lifetime, (long long)dur);
        }
        char end[32];
        acme_time_rfc3339(agent_now() + dur - 60, end, sizeof(end)); /* a minute's margin for clock skew */
        json_object_set_new(p, "auto-renewal", json_pack("{s:s, s:I}", "end-date", end, "lifetime",
                                                         (json_int_t)s->nf.star_lifetime));
        if (s->a->cfg->star_profile)
            prof = s->a->cfg->star_profile;
    }
    if (prof)
        json_object_set_new(p, "profile", json_string(prof));
    if (s->replaces[0] && s->w->dir.renewal_info[0] && s->nf.star_lifetime <= 0)
        json_object_set_new(p, "replaces", json_string(s->replaces));
    char *txt = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    resp r;
    int rc = txt ? jose(s, s->w->dir.new_order, txt, false, &r) : -1;
    free(txt);
    if (rc != 0)
        return O_TRANSIENT;
    outcome o = O_WAIT;
    if (r.status == 201 && r.location[0] && strncmp(r.location, "https://", 8) == 0) {
        snprintf(s->order_url, sizeof(s->order_url), "%s", r.location);
        wr x = {.kind = W_ORDER, .id = s->id, .text = r.location};
        if (write_(s->a, &x) != 0)
            o = fail(s, O_TRANSIENT, "cannot record the order URL");
        s->wait_ms = 0;
    } else if (r.status == 400 && strstr(r.body, "accountDoesNotExist")) {
        s->nf.account_url[0] = '\0';
        wr x = {.kind = W_ACCOUNT, .nf = s->nf_id, .text = NULL};
        (void)write_(s->a, &x);
        o = fail(s, O_TRANSIENT, "newOrder: the account is gone; registering again");
    } else if (s->replaces[0] && strstr(r.body, "alreadyReplaced")) {
        s->replaces[0] = '\0'; /* another order replaced it: order without */
        o = fail(s, O_TRANSIENT, "newOrder: alreadyReplaced");
    } else {
        o = problem(s, "newOrder", &r);
    }
    resp_clear(&r);
    return o;
}

static int record_dns(step *s, const char *name, const char *value)
{
    json_array_append_new(s->dns_set, json_pack("{s:s, s:s}", "name", name, "value", value));
    char *txt = json_dumps(s->dns_set, JSON_COMPACT);
    wr x = {.kind = W_DNS, .id = s->id, .text = txt};
    int rc = txt ? write_(s->a, &x) : -1;
    free(txt);
    return rc;
}

/* Remove the TXT records this enrolment set (best effort: a record left
 * behind harms nothing but the zone's tidiness; logged). */
static void dns_cleanup(step *s)
{
    for (size_t i = 0; i < json_array_size(s->dns_set); i++) {
        const json_t *e = json_array_get(s->dns_set, i);
        const char *n = json_string_value(json_object_get(e, "name"));
        const char *v = json_string_value(json_object_get(e, "value"));
        char why[300];
        if (n && v && agent_dns_txt(s->a->cfg, n, v, false, why, sizeof(why)) != 0)
            agent_log(s->a, AGENT_LOG_WARNING, "event=dns_cleanup_failed enrolment=%s name=%s error=\"%s\"", s->id, n,
                      why);
    }
}

static outcome do_authz(step *s, const char *url, bool *all_valid)
{
    resp r;
    if (jose(s, url, NULL, false, &r) != 0)
        return O_TRANSIENT;
    if (r.status != 200) {
        outcome o = problem(s, "authorization", &r);
        resp_clear(&r);
        return o;
    }
    am_authz az;
    char why[200];
    int prc = am_authz_parse(r.body, r.len, &az, why, sizeof(why));
    resp_clear(&r);
    if (prc != 0)
        return fail(s, O_TRANSIENT, "authorization %s: %s", url, why);
    if (az.status == ACME_S_VALID)
        return O_WAIT;
    *all_valid = false;
    bool nfid = strcmp(az.id_type, "NfInstanceId") == 0;
    const am_chall *ch = am_authz_find(&az, nfid ? "tkauth-01" : "dns-01");
    if (az.status != ACME_S_PENDING) {
        for (unsigned i = 0; i < az.n_ch; i++)
            if (az.ch[i].error_type[0])
                return fail(s, O_FAILED, "%s %s: %s: %s", az.id_type, az.id_value, az.ch[i].error_type,
                            az.ch[i].error_detail);
        return fail(s, O_FAILED, "authorization for %s %s is %s", az.id_type, az.id_value,
                    acme_status_name((acme_status)az.status));
    }
    if (!ch)
        return fail(s, O_FAILED, "the server offers no %s challenge for %s %s", nfid ? "tkauth-01" : "dns-01",
                    az.id_type, az.id_value);
    if (ch->status != ACME_S_PENDING)
        return O_WAIT; /* processing: poll */
    char *payload = NULL;
    if (nfid) {
        if (!s->token)
            return fail(s, O_FAILED,
                        "NfInstanceId %s needs a new authority token from the OAM (tkauth-01): the NF sends one "
                        "with its next request (Authorization: Bearer)",
                        az.id_value);
        json_t *p = json_pack("{s:s}", "tkauth", s->token);
        payload = json_dumps(p, JSON_COMPACT);
        json_decref(p);
    } else {
        if (az.wildcard || strlen(ch->token) == 0)
            return fail(s, O_FAILED, "dns-01 for %s: wildcard or no token", az.id_value);
        /* RFC 8555 §8.1 key authorization, §8.4 TXT value */
        char ka[200];
        snprintf(ka, sizeof(ka), "%s.%s", ch->token, s->nf.thumb);
        unsigned char md[32];
        unsigned int ml = 0;
        EVP_Digest(ka, strlen(ka), md, &ml, EVP_sha256(), NULL);
        char txt[64];
        acme_b64url_encode(md, 32, txt, sizeof(txt));
        /* recorded first: a crash after the update still cleans it up */
        if (record_dns(s, az.id_value, txt) != 0)
            return fail(s, O_TRANSIENT, "cannot record the DNS record");
        char why2[300];
        atomic_fetch_add_explicit(&s->a->ctr.dns_updates, 1, memory_order_relaxed);
        if (agent_dns_txt(s->a->cfg, az.id_value, txt, true, why2, sizeof(why2)) != 0) {
            atomic_fetch_add_explicit(&s->a->ctr.dns_errors, 1, memory_order_relaxed);
            return fail(s, strstr(why2, "none of the zones") ? O_FAILED : O_TRANSIENT, "dns-01 for %s: %s",
                        az.id_value, why2);
        }
        payload = strdup("{}");
    }
    if (!payload)
        return fail(s, O_TRANSIENT, "out of memory");
    char churl[AM_URL];
    snprintf(churl, sizeof(churl), "%s", ch->url);
    int rc = jose(s, churl, payload, false, &r);
    free(payload);
    if (rc != 0)
        return O_TRANSIENT;
    outcome o = r.status == 200 ? O_WAIT : problem(s, "challenge", &r);
    resp_clear(&r);
    return o;
}

static int ari_cert_id(X509 *x, char *out, size_t cap)
{
    /* RFC 9773 §4.1: base64url(AKI keyIdentifier) "." base64url(serial DER content) */
    AUTHORITY_KEYID *aki = X509_get_ext_d2i(x, NID_authority_key_identifier, NULL, NULL);
    const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
    unsigned char *sder = NULL;
    int sl = i2d_ASN1_INTEGER((ASN1_INTEGER *)sn, &sder);
    int rc = -1;
    if (aki && aki->keyid && sl > 2) {
        const unsigned char *p = sder;
        long len;
        int tag, cls;
        ASN1_get_object(&p, &len, &tag, &cls, sl);
        char a[128], b[128];
        size_t al = acme_b64url_encode(ASN1_STRING_get0_data(aki->keyid), (size_t)ASN1_STRING_length(aki->keyid), a,
                                       sizeof(a));
        size_t bl = acme_b64url_encode(p, (size_t)len, b, sizeof(b));
        if (al && bl && (size_t)snprintf(out, cap, "%s.%s", a, b) < cap)
            rc = 0;
    }
    OPENSSL_free(sder);
    AUTHORITY_KEYID_free(aki);
    return rc;
}

/* RFC 9773: the suggested window; renew at a random point in it. 0 with
 * *renew_at and *next (when to ask again), or -1. */
static int ari_poll(worker *w, const char *ari_id, int64_t *renew_at, int64_t *next, char *why, size_t whylen)
{
    if (!w->dir.renewal_info[0] || !w->a->cfg->ari)
        return -1;
    char url[AM_URL + 256];
    snprintf(url, sizeof(url), "%s/%s", w->dir.renewal_info, ari_id);
    resp r;
    if (http(w, url, NULL, false, &r, why, whylen) != 0)
        return -1;
    atomic_fetch_add_explicit(&w->a->ctr.ari_polls, 1, memory_order_relaxed);
    int64_t st, en;
    int rc = -1;
    if (r.status == 200 && am_renewal_info_parse(r.body, r.len, &st, &en) == 0) {
        uint32_t rnd = 0;
        RAND_bytes((unsigned char *)&rnd, sizeof(rnd));
        *renew_at = st + (int64_t)((double)rnd / 4294967296.0 * (double)(en - st));
        *next = agent_now() + am_retry_after(r.retry_after, 6 * 3600, 7 * 86400);
        rc = 0;
    } else {
        snprintf(why, whylen, "renewalInfo: HTTP %ld", r.status);
    }
    resp_clear(&r);
    return rc;
}

/* star: url is a STAR order's star-certificate (RFC 8739 §3.1.4): the
 * current short-term certificate, which may still be the one the agent
 * has (then: transient, fetched again after the backoff). */
static outcome download(step *s, const char *url, bool star)
{
    resp r;
    if (jose(s, url, NULL, false, &r) != 0)
        return O_TRANSIENT;
    if (r.status != 200) {
        outcome o = problem(s, "certificate", &r);
        resp_clear(&r);
        return o;
    }
    outcome o = O_DONE;
    BIO *b = BIO_new_mem_buf(r.body, (int)r.len);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    unsigned char *der = NULL, *spki = NULL;
    int dl = x ? i2d_X509(x, &der) : -1;
    int sl = x ? i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &spki) : -1; /* as est_csr_parse hashes it */
    est_csr csr = {0};
    est_err ee;
    char why[300];
    if (dl <= 0 || sl <= 0) {
        o = fail(s, O_FAILED, "certificate: not a PEM certificate chain");
        goto out;
    }
    /* Nothing issued wrongly reaches an NF: the certificate must be for
     * the NF's CSR key and carry exactly the CSR's names. */
    char spki_hex[65], id[65];
    est_sha256_hex(spki, (size_t)sl, spki_hex);
    est_sha256_hex(der, (size_t)dl, id);
    if (strcmp(spki_hex, s->spki) != 0) {
        o = fail(s, O_FAILED, "certificate: the server's certificate is for another public key than the NF's CSR");
        goto out;
    }
    if (est_csr_parse(s->csr, s->csr_len, &csr, &ee, why, sizeof(why)) != 0 ||
        est_csr_same_names(&csr, x, &ee, why, sizeof(why)) != 0) {
        o = fail(s, O_FAILED, "certificate: its names are not the CSR's");
        goto out;
    }
    if (star) {
        acme_q q;
        int have = 0;
        if (acme_db_query(s->w->db, &q, "SELECT 1 FROM certs WHERE id = ?", "s", id) == 0) {
            have = acme_q_next(&q) == 1;
            acme_q_end(&q);
        }
        if (have) {
            o = fail(s, O_TRANSIENT, "STAR order %s: no certificate newer than the current one yet", s->order_url);
            goto out;
        }
    }
    const ASN1_TIME *nb = X509_get0_notBefore(x), *na = X509_get0_notAfter(x);
    struct tm tnb, tna;
    if (!ASN1_TIME_to_tm(nb, &tnb) || !ASN1_TIME_to_tm(na, &tna)) {
        o = fail(s, O_FAILED, "certificate: unreadable validity");
        goto out;
    }
    wr x2 = {.kind = W_VALID, .id = s->id, .nf = s->nf_id, .cert_id = id, .der = der, .der_len = (size_t)dl,
             .chain = r.body, .spki = spki_hex, .nb = timegm(&tnb), .na = timegm(&tna)};
    char ari[300] = "";
    if (!star && ari_cert_id(x, ari, sizeof(ari)) == 0)
        x2.ari_id = ari;
    /* a STAR certificate: the next is fetched from 40 % of its life on,
     * so that the NF has it before this one passes half its life */
    x2.renew_at = x2.nb + (int64_t)((double)(x2.na - x2.nb) * (star ? 0.4 : s->a->cfg->renew_fraction));
    if (star && !s->nf.star_order[0]) {
        x2.star_order = s->order_url;
        x2.star_nf = s->nf_id;
    }
    int64_t ra, nx;
    char w2[200];
    if (x2.ari_id && ari_poll(s->w, ari, &ra, &nx, w2, sizeof(w2)) == 0) {
        x2.renew_at = ra;
        x2.ari_next = nx;
    }
    if (write_(s->a, &x2) != 0) {
        o = fail(s, O_TRANSIENT, "cannot record the certificate");
        goto out;
    }
    char ra_s[32], na_s[32];
    acme_time_rfc3339(x2.renew_at, ra_s, sizeof(ra_s));
    acme_time_rfc3339(x2.na, na_s, sizeof(na_s));
    agent_log(s->a, AGENT_LOG_INFO, "event=%s nf=%s enrolment=%s cert=%.16s not_after=%s renew_at=%s ari=%s star=%s",
              strcmp(s->kind, "renew") == 0 ? "renewed" : "issued", s->nf_id, s->id, id, na_s, ra_s,
              x2.ari_next ? "yes" : "no", star ? "yes" : "no");
    atomic_fetch_add_explicit(strcmp(s->kind, "renew") == 0 ? &s->a->ctr.renewed : &s->a->ctr.enrolled, 1,
                              memory_order_relaxed);
out:
    est_csr_free(&csr);
    OPENSSL_free(der);
    OPENSSL_free(spki);
    X509_free(x);
    BIO_free(b);
    resp_clear(&r);
    return o;
}

static outcome advance(step *s)
{
    if (load_directory(s) != 0)
        return O_TRANSIENT;
    outcome o;
    if (s->nf.key_uri[0] && !s->signer && (o = open_token_key(s)) != O_WAIT)
        return o;
    o = ensure_account(s);
    if (o != O_WAIT)
        return o;
    if (!s->order_url[0] && s->nf.star_order[0]) {
        /* the NF's STAR order goes on: fetch its current certificate */
        snprintf(s->order_url, sizeof(s->order_url), "%s", s->nf.star_order);
        wr x = {.kind = W_ORDER, .id = s->id, .text = s->order_url};
        if (write_(s->a, &x) != 0)
            return fail(s, O_TRANSIENT, "cannot record the order URL");
    }
    if (!s->order_url[0]) {
        o = new_order(s);
        if (o != O_WAIT)
            return o;
    }
    resp r;
    if (jose(s, s->order_url, NULL, false, &r) != 0)
        return O_TRANSIENT;
    if (r.status != 200) {
        o = problem(s, "order", &r);
        resp_clear(&r);
        return o;
    }
    am_order ord;
    char why[200];
    int prc = am_order_parse(r.body, r.len, &ord, why, sizeof(why));
    unsigned ra = am_retry_after(r.retry_after, 0, 60);
    resp_clear(&r);
    if (prc != 0)
        return fail(s, O_TRANSIENT, "order %s: %s", s->order_url, why);
    s->wait_ms = ra ? (int64_t)ra * 1000 : s->a->cfg->poll_ms;
    switch (ord.status) {
    case ACME_S_PENDING: {
        bool all_valid = true;
        for (unsigned i = 0; i < ord.n_authz; i++) {
            o = do_authz(s, ord.authz[i], &all_valid);
            if (o != O_WAIT)
                return o;
        }
        if (all_valid)
            s->wait_ms = 0;
        return O_WAIT;
    }
    case ACME_S_READY: {
        char b64[EST_MAX_CSR * 2];
        acme_b64url_encode(s->csr, s->csr_len, b64, sizeof(b64));
        json_t *p = json_pack("{s:s}", "csr", b64);
        char *txt = json_dumps(p, JSON_COMPACT);
        json_decref(p);
        int rc = txt ? jose(s, ord.finalize, txt, false, &r) : -1;
        free(txt);
        if (rc != 0)
            return O_TRANSIENT;
        o = r.status == 200 ? O_WAIT : problem(s, "finalize", &r);
        if (o == O_WAIT && am_order_parse(r.body, r.len, &ord, why, sizeof(why)) == 0 && ord.status == ACME_S_VALID &&
            (ord.certificate[0] || ord.star_certificate[0])) {
            resp_clear(&r);
            return ord.star_certificate[0] ? download(s, ord.star_certificate, true)
                                           : download(s, ord.certificate, false);
        }
        s->wait_ms = am_retry_after(r.retry_after, 0, 60) * 1000;
        if (!s->wait_ms)
            s->wait_ms = s->a->cfg->poll_ms;
        resp_clear(&r);
        return o;
    }
    case ACME_S_PROCESSING:
        return O_WAIT;
    case ACME_S_VALID:
        if (ord.star_certificate[0])
            return download(s, ord.star_certificate, true);
        if (!ord.certificate[0])
            return fail(s, O_TRANSIENT, "order valid without a certificate URL");
        return download(s, ord.certificate, false);
    default:
        if (ord.error_type[0])
            return fail(s, O_FAILED, "order %s: %s: %s", acme_status_name((acme_status)ord.status), ord.error_type,
                        ord.error_detail);
        /* an invalid order: the authorization that failed says why */
        for (unsigned i = 0; i < ord.n_authz; i++) {
            bool av = true;
            o = do_authz(s, ord.authz[i], &av);
            if (o == O_FAILED || o == O_TRANSIENT)
                return o == O_TRANSIENT ? fail(s, O_FAILED, "order %s", acme_status_name((acme_status)ord.status)) : o;
        }
        return fail(s, O_FAILED, "order %s", acme_status_name((acme_status)ord.status));
    }
}

static int64_t backoff_s(const agent_cfg *c, int attempts)
{
    int64_t d = c->retry_base_s;
    for (int i = 1; i < attempts && d < c->retry_max_s; i++)
        d *= 2;
    if (d > c->retry_max_s)
        d = c->retry_max_s;
    uint32_t rnd = 0;
    RAND_bytes((unsigned char *)&rnd, sizeof(rnd));
    return d + (int64_t)(rnd % (uint32_t)(d / 4 + 1)); /* jitter: thousands of NFs do not retry in step */
}

/* Run one step of enrolment id: the next due time (ms), or 0 when done. */
static int64_t enrol_step(worker *w, const char *id)
{
    agent *a = w->a;
    step s = {.w = w, .a = a};
    snprintf(s.id, sizeof(s.id), "%s", id);
    int lr = step_load(&s);
    if (lr <= 0) {
        if (lr < 0)
            agent_log(a, AGENT_LOG_ERROR, "event=state_read_failed enrolment=%s error=\"%s\"", id,
                      acme_db_error(w->db));
        step_clear(&s);
        return lr < 0 ? agent_now_ms() + 5000 : 0;
    }
    atomic_fetch_add_explicit(&a->ctr.steps, 1, memory_order_relaxed);
    outcome o = advance(&s);
    int64_t next = 0;
    if (o == O_WAIT) {
        next = agent_now_ms() + s.wait_ms;
    } else if (o == O_TRANSIENT) {
        s.attempts++;
        if ((unsigned)s.attempts > a->cfg->max_retries) {
            o = O_FAILED;
            wr x = {.kind = W_FAILED, .id = s.id, .text = s.error, .transient = 1,
                    .a = agent_now() + a->cfg->retry_max_s};
            (void)write_(a, &x);
            agent_log(a, AGENT_LOG_WARNING, "event=enrolment_failed nf=%s enrolment=%s kind=%s transient=1 attempts=%d "
                      "error=\"%s\"", s.nf_id, s.id, s.kind, s.attempts, s.error);
        } else {
            int64_t d = backoff_s(a->cfg, s.attempts);
            if (s.retry_after_s > d)
                d = s.retry_after_s;
            wr x = {.kind = W_RETRY, .id = s.id, .a = s.attempts, .b = agent_now() + d, .text = s.error};
            (void)write_(a, &x);
            atomic_fetch_add_explicit(&a->ctr.retries, 1, memory_order_relaxed);
            agent_log(a, AGENT_LOG_WARNING, "event=acme_retry nf=%s enrolment=%s attempt=%d in_s=%lld error=\"%s\"",
                      s.nf_id, s.id, s.attempts, (long long)d, s.error);
            w->have_dir = false; /* the server may have moved on: read its directory again */
            next = agent_now_ms() + d * 1000;
        }
        agent_est_notify(a->est, s.id);
    }
    if (o == O_FAILED && s.attempts <= (int)a->cfg->max_retries) {
        wr x = {.kind = W_FAILED, .id = s.id, .text = s.error, .transient = 0, .a = agent_now() + a->cfg->retry_max_s};
        (void)write_(a, &x);
        agent_log(a, AGENT_LOG_WARNING, "event=enrolment_failed nf=%s enrolment=%s kind=%s transient=0 error=\"%s\"",
                  s.nf_id, s.id, s.kind, s.error);
    }
    if (o == O_FAILED || o == O_DONE) {
        if (o == O_FAILED)
            atomic_fetch_add_explicit(&a->ctr.failed, 1, memory_order_relaxed);
        dns_cleanup(&s);
        agent_est_notify(a->est, s.id);
    }
    step_clear(&s);
    return next;
}

/* "ari:<cert id>": ask renewalInfo again (the window moves on revocation
 * or a CA rollover: RFC 9773 §4.3). */
static int64_t ari_step(worker *w, const char *cert)
{
    agent *a = w->a;
    acme_q q;
    char ari[300] = "";
    if (acme_db_query(w->db, &q, "SELECT ari_id FROM certs WHERE id = ? AND renewal IS NULL", "s", cert) != 0)
        return 0;
    if (acme_q_next(&q) == 1 && acme_q_text(&q, 0))
        snprintf(ari, sizeof(ari), "%s", acme_q_text(&q, 0));
    acme_q_end(&q);
    if (!ari[0])
        return 0;
    step s = {.w = w, .a = a};
    if (load_directory(&s) != 0)
        return agent_now_ms() + 60000;
    int64_t ra, nx;
    char why[200];
    if (ari_poll(w, ari, &ra, &nx, why, sizeof(why)) != 0) {
        agent_log(a, AGENT_LOG_WARNING, "event=ari_failed cert=%.16s error=\"%s\"", cert, why);
        ra = 0;
        nx = agent_now() + 3600;
    }
    wr x = {.kind = W_ARI, .id = cert, .a = ra, .b = nx};
    if (ra == 0) {
        /* keep renew_at: only the next poll moves */
        if (acme_db_query(w->db, &q, "SELECT renew_at FROM certs WHERE id = ?", "s", cert) == 0) {
            if (acme_q_next(&q) == 1)
                x.a = acme_q_int(&q, 0);
            acme_q_end(&q);
        }
    }
    (void)write_(a, &x);
    return 0;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    agent_sched *s = w->a->sched;
    char name[16];
    snprintf(name, sizeof(name), "agent-acme/%u", w->idx);
    pthread_setname_np(pthread_self(), name);
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        if (s->n == 0) {
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        int64_t now = agent_now_ms();
        if (s->heap[0].due > now) {
            int64_t until = s->heap[0].due;
            if (until > now + 1000)
                until = now + 1000;
            struct timespec ts = {.tv_sec = until / 1000, .tv_nsec = (until % 1000) * 1000000};
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
            continue;
        }
        job j = heap_pop_locked(s);
        pthread_mutex_unlock(&s->mu);
        int64_t next = strncmp(j.id, "ari:", 4) == 0 ? ari_step(w, j.id + 4) : enrol_step(w, j.id);
        pthread_mutex_lock(&s->mu);
        if (next > 0) {
            j.due = next;
            heap_push_locked(s, &j);
        } else {
            set_del_locked(s, j.id);
            atomic_fetch_sub_explicit(&w->a->ctr.in_flight, 1, memory_order_relaxed);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int agent_sched_start(agent *a, char *err, size_t errlen)
{
    agent_sched *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->a = a;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_REALTIME);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    a->sched = s;
    s->w = calloc(a->cfg->workers, sizeof(*s->w));
    if (!s->w) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (unsigned i = 0; i < a->cfg->workers; i++) {
        worker *w = &s->w[i];
        w->a = a;
        w->idx = i;
        if (!(w->curl = curl_easy_init()) || !(w->db = acme_db_open_reader(a->store, err, errlen))) {
            if (!w->curl)
                snprintf(err, errlen, "libcurl: cannot make a handle");
            return -1;
        }
    }
    for (unsigned i = 0; i < a->cfg->workers; i++) {
        if (pthread_create(&s->w[i].tid, NULL, worker_main, &s->w[i]) != 0) {
            snprintf(err, errlen, "cannot start ACME worker %u", i);
            return -1;
        }
        s->n_w++;
    }
    return 0;
}

void agent_sched_stop(agent_sched *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (unsigned i = 0; i < s->n_w; i++)
        pthread_join(s->w[i].tid, NULL);
    s->n_w = 0;
}

void agent_sched_free(agent_sched *s)
{
    if (!s)
        return;
    for (unsigned i = 0; s->w && i < s->a->cfg->workers; i++) {
        if (s->w[i].curl)
            curl_easy_cleanup(s->w[i].curl);
        acme_db_close(s->w[i].db);
    }
    free(s->w);
    for (unsigned b = 0; b < SET_BUCKETS; b++)
        for (hent *e = s->set[b], *n; e; e = n) {
            n = e->next;
            free(e);
        }
    free(s->heap);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ------------------------------------------------------------ resume, renewal scan */

int agent_resume(agent *a, acme_db *db)
{
    acme_q q;
    int n = 0;
    if (acme_db_query(db, &q, "SELECT id, next_at FROM enrolments WHERE status = 'pending'", "") != 0)
        return -1;
    while (acme_q_next(&q) == 1) {
        agent_sched_add(a->sched, acme_q_text(&q, 0), acme_q_int(&q, 1) * 1000);
        n++;
    }
    acme_q_end(&q);
    return n;
}

typedef struct renew_tx {
    char cert[65];
    char id[AGENT_ID_LEN + 1];
    int64_t now;
    int made;
} renew_tx;

static int tx_renew(acme_db *tx, void *arg)
{
    renew_tx *r = arg;
    /* the renewal reuses the NF's CSR (same key, same names): a renewal,
     * not a re-key (RFC 7030 §4.2.2); the NF picks it up at its next
     * /simplereenroll */
    int n = acme_db_exec(tx,
                         "INSERT INTO enrolments(id, nf, kind, status, csr, spki, replaces, next_at, created, updated) "
                         "SELECT ?, c.nf, 'renew', 'pending', e.csr, c.spki, c.ari_id, ?, ?, ? FROM certs c "
                         "JOIN enrolments e ON e.id = c.enrolment WHERE c.id = ? AND c.renewal IS NULL",
                         "siiis", r->id, r->now, r->now, r->now, r->cert);
    if (n < 0)
        return -1;
    if (n == 0)
        return 0;
    r->made = 1;
    return acme_db_exec(tx, "UPDATE certs SET renewal = ? WHERE id = ?", "ss", r->id, r->cert) < 0 ? -1 : 0;
}

int agent_renewal_scan(agent *a, acme_db *db)
{
    int64_t now = agent_now();
    acme_q q;
    char (*due)[65] = calloc(1000, 65);
    int n = 0, made = 0;
    if (!due)
        return -1;
    /* the NF's newest certificate for its key that is due and not yet being renewed */
    if (acme_db_query(db, &q,
                      "SELECT c.id FROM certs c WHERE c.renew_at <= ? AND c.renewal IS NULL AND c.not_after > ? "
                      "AND NOT EXISTS (SELECT 1 FROM certs d WHERE d.nf = c.nf AND d.spki = c.spki "
                      "AND d.not_after > c.not_after) LIMIT 1000",
                      "ii", now, now) == 0) {
        while (n < 1000 && acme_q_next(&q) == 1)
            snprintf(due[n++], 65, "%s", acme_q_text(&q, 0));
        acme_q_end(&q);
    }
    for (int i = 0; i < n; i++) {
        renew_tx r = {.now = now};
        snprintf(r.cert, sizeof(r.cert), "%s", due[i]);
        if (acme_random_id(r.id, 16) != 0 || acme_store_run(a->store, tx_renew, &r) != 0 || !r.made)
            continue;
        agent_log(a, AGENT_LOG_INFO, "event=renewal_started cert=%.16s enrolment=%s", r.cert, r.id);
        agent_sched_add(a->sched, r.id, agent_now_ms());
        made++;
    }
    n = 0;
    if (acme_db_query(db, &q,
                      "SELECT id FROM certs WHERE ari_next IS NOT NULL AND ari_next <= ? AND renewal IS NULL AND "
                      "not_after > ? LIMIT 1000",
                      "ii", now, now) == 0) {
        while (n < 1000 && acme_q_next(&q) == 1)
            snprintf(due[n++], 65, "%s", acme_q_text(&q, 0));
        acme_q_end(&q);
    }
    for (int i = 0; i < n; i++) {
        char j[JOB_ID];
        snprintf(j, sizeof(j), "ari:%s", due[i]);
        agent_sched_add(a->sched, j, agent_now_ms());
    }
    free(due);
    return made + n;
}

/* ------------------------------------------------------------ STAR cancellation */

int agent_star_cancel(agent *a, acme_db *db, const char *nf_id, char *err, size_t errlen)
{
    worker w = {.a = a, .db = db, .curl = curl_easy_init()};
    step s = {.w = &w, .a = a};
    int rc = -1;
    snprintf(s.nf_id, sizeof(s.nf_id), "%s", nf_id);
    if (!w.curl) {
        snprintf(err, errlen, "cannot make an HTTP client");
        return -1;
    }
    int r = agent_nf_load(db, nf_id, true, &s.nf);
    if (r != 1) {
        snprintf(err, errlen, r == 0 ? "NF %s is not registered" : "cannot read NF %s from the state", nf_id);
        goto out;
    }
    if (!s.nf.star_order[0]) {
        rc = 0; /* no STAR order (yet): nothing to cancel */
        goto out;
    }
    if (!s.nf.account_url[0]) {
        snprintf(err, errlen, "NF %s has a STAR order but no ACME account in the state", nf_id);
        goto out;
    }
    resp rs;
    if (load_directory(&s) != 0 || (s.nf.key_uri[0] && open_token_key(&s) != O_WAIT) ||
        jose(&s, s.nf.star_order, "{\"status\":\"canceled\"}", false, &rs) != 0) {
        snprintf(err, errlen, "cannot cancel the STAR order %s: %s", s.nf.star_order, s.error);
        goto out;
    }
    /* RFC 8739 §3.1.2: the canceled order. An order no longer active
     * (canceled by an earlier `nf remove` that stopped before the state,
     * or past its end-date) is refused autoRenewalCancellationInvalid:
     * read it, and an order that is not active any more is done with. */
    am_order ord;
    char why[200];
    if (rs.status == 200 && am_order_parse(rs.body, rs.len, &ord, why, sizeof(why)) == 0 &&
        ord.status == ACME_S_CANCELED) {
        rc = 1;
    } else if (rs.status == 403 && strstr(rs.body, "autoRenewalCancellationInvalid")) {
        resp_clear(&rs);
        if (jose(&s, s.nf.star_order, NULL, false, &rs) == 0 && rs.status == 200 &&
            am_order_parse(rs.body, rs.len, &ord, why, sizeof(why)) == 0 && ord.status != ACME_S_VALID &&
            ord.status != ACME_S_PENDING && ord.status != ACME_S_READY && ord.status != ACME_S_PROCESSING) {
            rc = ord.status == ACME_S_CANCELED ? 1 : 0;
            if (rc == 0)
                agent_log(a, AGENT_LOG_INFO, "event=star_order_ended nf=%s order=%s status=%s", nf_id, s.nf.star_order,
                          acme_status_name((acme_status)ord.status));
        } else {
            snprintf(err, errlen, "cannot cancel the STAR order %s: the server refused (autoRenewalCancellationInvalid) "
                     "and the order could not be read as ended", s.nf.star_order);
        }
    } else {
        (void)problem(&s, "cancel", &rs);
        snprintf(err, errlen, "cannot cancel the STAR order %s: %s", s.nf.star_order, s.error);
    }
    if (rc == 1)
        agent_log(a, AGENT_LOG_INFO, "event=star_canceled nf=%s order=%s", nf_id, s.nf.star_order);
    resp_clear(&rs);
out:
    step_clear(&s);
    curl_easy_cleanup(w.curl);
    return rc;
}
