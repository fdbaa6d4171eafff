/* srv_answer.c — answers: encoding into a connection's output buffer, the refusal streak, STATUS
 * and KEYS (server_internal.h). */
#include "engine/server/server_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Append one encoded answer. Returns false when it does not fit behind
 * what is already queued (try again after the send completes). An answer
 * larger than the whole buffer is replaced by INTERNAL. */

bool srv_out_put(srv_loop *L, conn *c, uint8_t op, uint64_t id, cf_status st, enc_fn enc,
                 const void *arg)
{
    srv *s = L->s;
    size_t room = SRV_OUT_CAP - c->out_len;
    size_t n = enc(c->out + c->out_len, room, arg);
    if (n == 0 || n > room) {
        if (n != 0 && c->out_len > 0) {
            if (!c->out_blocked_since)
                c->out_blocked_since = L->now;
            return false;
        }
        /* cannot be encoded, or larger than any answer may be */
        cf_log(CF_LOG_ERROR, "answer_too_large", "op=%s size=%zu", proto_op_name(op), n);
        st = CF_ST_INTERNAL;
        n = proto_enc_error(c->out + c->out_len, room, op, id, st, 0,
                            "the answer does not fit in a frame");
        if (n == 0 || n > room)
            return false;
    }
    c->out_len += n;
    switch (st) {
    case CF_ST_OK:
        c->fail_streak = 0;
        break;
    case CF_ST_BAD_FRAME:
    case CF_ST_BAD_CSR:
    case CF_ST_POLICY_DENIED:
    case CF_ST_UNKNOWN_PROFILE:
    case CF_ST_UNAUTHORIZED:
    case CF_ST_NOT_FOUND:
        if (++c->fail_streak == SRV_PENALTY_AFTER)
            cf_log(CF_LOG_WARNING, "penalized",
                   "peer_uid=%u peer_gid=%u peer_pid=%u refused_in_a_row=%u effect=\"each "
                   "further frame delayed until an answer is OK\"",
                   c->uid, c->gid, c->pid, c->fail_streak);
        break;
    default: /* BUSY, HSM, ledger, internal: the daemon's trouble, not the peer's */
        break;
    }
    unsigned sti = st < CF_ST__MAX ? st : CF_ST_INTERNAL;
    atomic_fetch_add(&s->by_status[sti], 1);
    atomic_fetch_add_explicit(&s->by_op[op < PROTO_OP__MAX ? op : 0][sti], 1, memory_order_relaxed);
    atomic_fetch_add(&s->n_answered, 1);
    return true;
}

typedef struct err_arg {
    uint8_t op;
    uint64_t id;
    cf_status st;
    uint32_t detail;
    const char *msg;
} err_arg;

static size_t enc_err(uint8_t *buf, size_t cap, const void *arg)
{
    const err_arg *a = arg;
    return proto_enc_error(buf, cap, a->op, a->id, a->st, a->detail, a->msg);
}

bool srv_answer_error(srv_loop *L, conn *c, uint8_t op, uint64_t id, cf_status st, uint32_t detail,
                      const char *msg)
{
    err_arg a = {op, id, st, detail, msg};
    return srv_out_put(L, c, op, id, st, enc_err, &a);
}

typedef struct issue_arg {
    srv_loop *L;
    srv_job *j;
} issue_arg;

static size_t enc_issue(uint8_t *buf, size_t cap, const void *arg)
{
    const issue_arg *a = arg;
    const pipe_job *pj = &a->j->pj;
    if (pj->status != CF_ST_OK || !pj->cert)
        return proto_enc_error(buf, cap, PROTO_OP_ISSUE, a->j->id,
                               pj->status == CF_ST_OK ? CF_ST_INTERNAL : pj->status,
                               (uint32_t)pj->detail, pj->msg[0] ? pj->msg : NULL);
    /* the request's fields point into the frame copy, returned at completion */
    /* the issuer's chain, of the generation the job holds */
    const iss_issuer *is = a->j->issuer;
    proto_blob ch[PROTO_MAX_CHAIN];
    unsigned n = 0;
    for (unsigned k = 0; is && k < is->n_chain && n < PROTO_MAX_CHAIN; k++)
        ch[n++] = (proto_blob){is->chain[k].p, is->chain[k].len};
    return proto_enc_issue_ok(buf, cap, a->j->id, pj->cert, pj->cert_len, n ? ch : NULL, n,
                              pj->serial, pj->serial_len);
}

/* The answer of a SIGN, REVOKE or CRL job. */
static size_t enc_other(uint8_t *buf, size_t cap, const void *arg)
{
    const issue_arg *a = arg;
    const srv_job *j = a->j;
    const pipe_job *pj = &j->pj;
    if (pj->status == CF_ST_OK) {
        switch (j->op) {
        case PROTO_OP_SIGN:
            if (pj->sig_len)
                return proto_enc_sign_ok(buf, cap, j->id, pj->sig, pj->sig_len);
            break;
        case PROTO_OP_REVOKE:
            return proto_enc_revoke_ok(buf, cap, j->id, j->revoked_at, j->reason);
        case PROTO_OP_CRL:
            if (j->crl)
                return proto_enc_crl_ok(buf, cap, j->id, j->crl, j->crl_len);
            break;
        }
    }
    return proto_enc_error(buf, cap, j->op, j->id,
                           pj->status == CF_ST_OK ? CF_ST_INTERNAL : pj->status,
                           (uint32_t)pj->detail, pj->msg[0] ? pj->msg : NULL);
}

static cf_status job_status(const srv_job *j)
{
    const pipe_job *pj = &j->pj;
    if (pj->status != CF_ST_OK)
        return pj->status;
    switch (j->op) {
    case PROTO_OP_ISSUE:
        return pj->cert ? CF_ST_OK : CF_ST_INTERNAL;
    case PROTO_OP_SIGN:
        return pj->sig_len ? CF_ST_OK : CF_ST_INTERNAL;
    case PROTO_OP_CRL:
        return j->crl ? CF_ST_OK : CF_ST_INTERNAL;
    default:
        return CF_ST_OK;
    }
}

/* Encode completed jobs while they fit. */
void srv_flush_ready(srv_loop *L, conn *c)
{
    srv *s = L->s;
    while (c->ready_head && !c->dead) {
        srv_job *j = c->ready_head;
        issue_arg a = {L, j};
        cf_status st = job_status(j);
        if (!srv_out_put(L, c, j->op, j->id, st, j->op == PROTO_OP_ISSUE ? enc_issue : enc_other,
                         &a))
            break;
        if (st == CF_ST_OK && j->op == PROTO_OP_ISSUE)
            cf_log(CF_LOG_DEBUG, "issued", "peer_uid=%u id=%llu", c->uid,
                   (unsigned long long)j->id);
        if (st == CF_ST_HSM_FAILURE)
            srv_log_hsm_failure(L, j);
        c->ready_head = j->next;
        if (!c->ready_head)
            c->ready_tail = NULL;
        c->n_ready--;
        atomic_fetch_sub(&s->inflight, 1);
        if (c->peer)
            atomic_fetch_sub(&c->peer->inflight, 1);
        srv_job_put(L, j);
    }
}

void srv_note_reload(srv *s, bool ok, int64_t at)
{
    atomic_store(&s->reload_at, at);
    atomic_store(&s->reload_result, ok ? 1 : 2);
}

size_t srv_enc_status(uint8_t *buf, size_t cap, const void *arg)
{
    const status_arg *a = arg;
    srv *s = a->L->s;
    pipe_stats st;
    pipe_get_stats(s->pipe, &st);
    uint64_t now = srv_now_ms();
    unsigned busy = 0, total = 0;
    cf_engine_sessions(s->rt.eng, &busy, &total);
    double rate = 0;
    pthread_mutex_lock(&s->rate_mu);
    if (s->rate_n > 0) {
        unsigned oldest = (s->rate_pos + SRV_RATE_SAMPLES - s->rate_n) % SRV_RATE_SAMPLES;
        uint64_t dt = now - s->rate_ms[oldest];
        if (dt > 0)
            rate = (double)(st.by_status[CF_ST_OK] - s->rate_issued[oldest]) * 1000.0 / (double)dt;
    }
    pthread_mutex_unlock(&s->rate_mu);
    char v[12 + CF_ST__MAX][32];
    char keys[CF_ST__MAX][48];
    proto_kv kv[12 + CF_ST__MAX];
    size_t n = 0;
#define KV(name, fmt, val)                                                                         \
    do {                                                                                           \
        int l_ = snprintf(v[n], sizeof(v[n]), fmt, val);                                           \
        kv[n].key = (cf_str){name, sizeof(name) - 1};                                              \
        kv[n].value = (cf_str){v[n], (size_t)l_};                                                  \
        n++;                                                                                       \
    } while (0)
    KV("uptime_s", "%llu", (unsigned long long)((now - s->start_ms) / 1000));
    KV("issued", "%llu", (unsigned long long)st.by_status[CF_ST_OK]);
    KV("rate_per_s", "%.1f", rate);
    KV("queue_depth", "%u", st.queued);
    KV("inflight", "%lu", (unsigned long)atomic_load(&s->inflight));
    KV("connections", "%u", atomic_load(&s->conns));
    KV("hsm_sessions_busy", "%u", busy);
    KV("hsm_sessions_total", "%u", total);
    KV("version", "%s", CF_VERSION);
    /* SIGHUP reloads (docs/certforged.md, RELOAD) */
    KV("config_generation", "%llu", (unsigned long long)cf_engine_gen_number(s->rt.eng));
    int rr = atomic_load(&s->reload_result);
    KV("config_reload", "%s", rr == 1 ? "ok" : rr == 2 ? "refused" : "none");
    if (rr) {
        char at[32] = "-";
        time_t t = (time_t)atomic_load(&s->reload_at);
        struct tm tm;
        if (gmtime_r(&t, &tm))
            strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);
        KV("config_reload_at", "%s", at);
    }
#undef KV
    for (int i = 1; i < CF_ST__MAX; i++) {
        uint64_t cnt = atomic_load(&s->by_status[i]);
        if (!cnt)
            continue;
        int kl = snprintf(keys[i], sizeof(keys[i]), "errors.%s", cf_status_name((cf_status)i));
        int vl = snprintf(v[n], sizeof(v[n]), "%llu", (unsigned long long)cnt);
        kv[n].key = (cf_str){keys[i], (size_t)kl};
        kv[n].value = (cf_str){v[n], (size_t)vl};
        n++;
    }
    return proto_enc_status_ok(buf, cap, a->id, kv, n);
}

size_t srv_enc_keys(uint8_t *buf, size_t cap, const void *arg)
{
    const keys_arg *a = arg;
    return proto_enc_keys_ok(buf, cap, a->id, a->s->keys, a->s->n_keys);
}

void srv_rate_sample(srv *s, uint64_t now)
{
    if (now - s->rate_last_ms < 1000 && s->rate_n)
        return;
    pipe_stats st;
    pipe_get_stats(s->pipe, &st);
    pthread_mutex_lock(&s->rate_mu);
    s->rate_ms[s->rate_pos] = now;
    s->rate_issued[s->rate_pos] = st.by_status[CF_ST_OK];
    s->rate_pos = (s->rate_pos + 1) % SRV_RATE_SAMPLES;
    if (s->rate_n < SRV_RATE_SAMPLES)
        s->rate_n++;
    s->rate_last_ms = now;
    pthread_mutex_unlock(&s->rate_mu);
}

/* What the KEYS answer carries: every key's name, type and public half
 * (the keys never change while certforged runs; an ISSUE answer's chain
 * comes from its job's issuer, of the job's config generation). */
int srv_load_answers(srv *s, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    const iss_set *iss = cf_engine_issuers(s->rt.eng);
    s->n_keys = 0;
    for (size_t i = 0; i < iss_nkeys(iss) && s->n_keys < PROTO_MAX_KEYS; i++) {
        const iss_key *k = iss_key_at(iss, i);
        s->keys[s->n_keys++] = (proto_key){
            .name = {k->name, strlen(k->name)},
            .type = {k->type_name, strlen(k->type_name)},
            .spki = {k->spki.p, k->spki.len},
        };
    }
    if (iss_nkeys(iss) > PROTO_MAX_KEYS)
        cf_log(CF_LOG_WARNING, "keys_truncated", "configured=%zu sent=%d", iss_nkeys(iss),
               PROTO_MAX_KEYS);
    return 0;
}
