/* ledger_pipe.c — pipeline batch → ledger records (ledger_pipe.h).
 *
 * Fields come from what the pipeline already holds (profile and key names,
 * the request's NF instance ID and requester tag, the peer's uid) and, for
 * what only the certificate states exactly (serial, validity, subject,
 * SANs), from the certificate DER read with engine/der: about a
 * microsecond per certificate, against ~25 µs for d2i_X509 plus the
 * OpenSSL getters (docs/ledger.md).
 *
 * Scratch memory (records and their text) is per calling thread — the
 * pipeline's one recorder thread — grown to the largest group seen and
 * freed when the thread exits: nothing is allocated per request.
 */
#include "engine/ledger/ledger_pipe.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/profile/profile.h"

typedef struct scratch {
    ledger_rec *recs;
    size_t nrecs;
    ledger_sign_rec *signs;
    size_t nsigns;
    char *text;
    size_t ntext;
} scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p)
{
    scratch *s = p;
    if (!s)
        return;
    free(s->recs);
    free(s->signs);
    free(s->text);
    free(s);
}

static void scratch_init(void)
{
    (void)pthread_key_create(&scratch_key, scratch_free);
}

static scratch *scratch_get(size_t nrecs, size_t ntext)
{
    pthread_once(&scratch_once, scratch_init);
    scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        if (!(s = calloc(1, sizeof(*s))))
            return NULL;
        if (pthread_setspecific(scratch_key, s) != 0) {
            free(s);
            return NULL;
        }
    }
    if (s->nrecs < nrecs) {
        ledger_rec *r = realloc(s->recs, nrecs * sizeof(*r));
        if (!r)
            return NULL;
        s->recs = r;
        s->nrecs = nrecs;
    }
    if (s->nsigns < nrecs) {
        ledger_sign_rec *r = realloc(s->signs, nrecs * sizeof(*r));
        if (!r)
            return NULL;
        s->signs = r;
        s->nsigns = nrecs;
    }
    if (s->ntext < ntext) {
        char *t = realloc(s->text, ntext);
        if (!t)
            return NULL;
        s->text = t;
        s->ntext = ntext;
    }
    return s;
}

/* Copy a request string (not NUL-terminated) into the arena, lower-cased
 * when asked; NULL when empty. */
static const char *put_str(char **at, cf_str v, int lower)
{
    if (!v.p || v.len == 0)
        return NULL;
    char *d = *at;
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.p[i];
        d[i] = c < 0x20 || c == 0x7F ? '?' : lower ? (char)tolower(c) : (char)c;
    }
    d[v.len] = 0;
    *at += v.len + 1;
    return d;
}

int ledger_pipe_record(pipe_job *const *jobs, size_t n, void *arg)
{
    ledger_pipe *lp = arg;
    char err[512];
    size_t ntext = 0;
    for (size_t i = 0; i < n; i++)
        ntext += jobs[i]->kind == PIPE_JOB_SIGN
                     ? jobs[i]->req.requester.len + 1
                     : sizeof(((ledger_cert_fields *)0)->serial) +
                           LEDGER_CERT_TEXT_CAP(jobs[i]->cert_len) +
                           jobs[i]->req.nf_instance_id.len + jobs[i]->req.requester.len + 2;
    scratch *s = scratch_get(n, ntext);
    if (!s) {
        snprintf(err, sizeof(err), "out of memory for %zu records", n);
        goto fail;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    char *at = s->text;
    size_t nc = 0, ns = 0;
    for (size_t i = 0; i < n; i++) {
        const pipe_job *j = jobs[i];
        if (j->kind == PIPE_JOB_SIGN) {
            s->signs[ns] = (ledger_sign_rec){
                .key = j->sign.key_name,
                .mechanism = j->sign.mech_name,
                .digest = j->digest,
                .digest_len = j->digest_len,
                .requester_uid = j->peer_known ? (int64_t)j->peer_uid : -1,
                .signed_at_ms = now_ms,
            };
            s->signs[ns++].requester = put_str(&at, j->req.requester, 0);
            continue;
        }
        ledger_rec *r = &s->recs[nc++];
        ledger_cert_fields cf;
        char *serial = at;
        at += sizeof(cf.serial);
        size_t cap = LEDGER_CERT_TEXT_CAP(j->cert_len);
        if (!j->cert || ledger_cert_fields_of(j->cert, j->cert_len, at, cap, &cf) != 0) {
            snprintf(err, sizeof(err), "issued certificate %zu of the batch is unreadable", i);
            goto fail;
        }
        memcpy(serial, cf.serial, sizeof(cf.serial));
        at += cap;
        *r = (ledger_rec){
            .serial = serial,
            .profile = profile_name(j->prof),
            .issuer_key = profile_issuer_key(j->prof),
            .subject = cf.subject,
            .sans = cf.sans,
            .not_before = cf.not_before,
            .not_after = cf.not_after,
            .cert = j->cert,
            .cert_len = j->cert_len,
            .requester_uid = j->peer_known ? (int64_t)j->peer_uid : -1,
            .issued_at_ms = now_ms,
            .status = "valid",
            .revoked_at = -1,
        };
        r->nf_instance_id = put_str(&at, j->req.nf_instance_id, 1);
        r->requester = put_str(&at, j->req.requester, 0);
    }
    if (ledger_record_all(lp->l, s->recs, nc, s->signs, ns, err, sizeof(err)) == 0) {
        unsigned long long f = atomic_exchange(&lp->failing, 0);
        if (f && lp->on_recover)
            lp->on_recover(f, lp->cb_arg);
        return 0;
    }
fail:
    atomic_fetch_add(&lp->failing, 1);
    if (lp->on_fail)
        lp->on_fail(err, n, lp->cb_arg);
    return -1;
}
