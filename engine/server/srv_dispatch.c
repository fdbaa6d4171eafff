/* srv_dispatch.c — frames to jobs: delimiting, decoding, grants, backpressure (the job pool, fair
 * shares, parking) (server_internal.h). */
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

/* ------------------------------------------------------------ buffers, jobs */

srv_job *srv_job_get(srv_loop *L, size_t frame_len)
{
    if (!L->free_jobs && L->nunused) {
        srv_job *fresh = &L->jobs[L->njobs - L->nunused--];
        fresh->next = NULL;
        L->free_jobs = fresh;
        L->nfree_jobs++;
    }
    if (!L->free_jobs)
        return NULL;
    int large = -1;
    if (frame_len > SRV_JOB_FRAME) {
        if (L->nlarge_free == 0)
            return NULL;
        large = L->large_free[--L->nlarge_free];
    }
    srv_job *j = L->free_jobs;
    L->free_jobs = j->next;
    L->nfree_jobs--;
    j->next = NULL;
    j->large = large;
    return j;
}

uint8_t *srv_job_frame(srv_loop *L, srv_job *j)
{
    return j->large >= 0 ? L->large + (size_t)j->large * L->s->large_size : j->frame;
}

void srv_job_put(srv_loop *L, srv_job *j)
{
    cf_gen_put(j->cgen);
    j->cgen = NULL;
    free(j->crl);
    j->crl = NULL;
    if (j->large >= 0)
        L->large_free[L->nlarge_free++] = j->large;
    j->large = -1;
    j->next = L->free_jobs;
    L->free_jobs = j;
    L->nfree_jobs++;
}

void srv_park_remove(srv_loop *L, conn *c)
{
    c->parked = false;
    if (!c->in_parklist)
        return;
    conn **pp = &L->park_head;
    conn *prev = NULL;
    while (*pp && *pp != c) {
        prev = *pp;
        pp = &(*pp)->park_next;
    }
    if (*pp) {
        *pp = c->park_next;
        if (L->park_tail == c)
            L->park_tail = prev;
    }
    c->park_next = NULL;
    c->in_parklist = false;
}

static void park(srv_loop *L, conn *c)
{
    if (!c->parked) {
        c->parked = true;
        c->park_deadline = L->now + L->s->sv.busy_deadline_ms;
    }
    if (!c->in_parklist) {
        c->in_parklist = true;
        c->park_next = NULL;
        if (L->park_tail)
            L->park_tail->park_next = c;
        else
            L->park_head = c;
        L->park_tail = c;
    }
}

/* Take a job for a request that passed its op's checks, copy its frame
 * into the job and hand it on: ISSUE and SIGN to the pipeline, REVOKE and
 * CRL to the admin thread. The request was decoded once, from the
 * connection's buffer: its fields are moved into the copy, not decoded
 * again, and what was resolved travels with the job (`ctx`: the profile's
 * index for ISSUE, the key's for SIGN, both in the config's order, which
 * is the engine's). Backpressure (in-flight cap, fair share, an empty pool
 * or a full queue) as docs/certforged.md describes. */
static int queue_job(srv_loop *L, conn *c, proto_req *req, const uint8_t *frame, size_t flen,
                     size_t ctx)
{
    srv *s = L->s;
    uint8_t op = req->hdr.op;
    uint64_t id = req->hdr.id;
    char msg[160];
    if (c->jobs_out + c->n_ready >= s->sv.max_inflight) {
        snprintf(msg, sizeof(msg), "more than %u requests in flight on this connection",
                 s->sv.max_inflight);
        return srv_answer_error(L, c, op, id, CF_ST_BUSY, 0, msg) ? FR_CONSUMED : FR_BLOCKED;
    }
    /* fair share per peer: one uid holds at most peer_inflight jobs of
     * the pool, over all its connections and rings; by default only while
     * another uid is connected (alone it may use the whole pool) */
    if (c->peer && (s->sv.peer_max_inflight || atomic_load(&s->npeers) > 1) &&
        atomic_load(&c->peer->inflight) >= s->peer_inflight) {
        snprintf(msg, sizeof(msg), "more than %u requests in flight for uid %u; retry later",
                 s->peer_inflight, c->uid);
        return srv_answer_error(L, c, op, id, CF_ST_BUSY, 0, msg) ? FR_CONSUMED : FR_BLOCKED;
    }
    /* fair share of the ring's pool: no connection may hold more than
     * L->share jobs, and the last L->reserve free jobs go only to
     * connections that hold none — peers that do not read their answers
     * pin the jobs they hold and must not starve the others. Over it the
     * frame waits, without a deadline, for one of the connection's own jobs
     * to complete (on_event pumps it then). An empty pool is waited for
     * with a deadline, below. */
    size_t held = c->jobs_out, avail = L->nfree_jobs + L->nunused;
    if (held > 0 && (held >= L->share || (avail > 0 && avail <= L->reserve))) {
        srv_park_remove(L, c);
        return FR_BLOCKED;
    }
    srv_job *j = srv_job_get(L, flen);
    if (j) {
        uint8_t *copy = srv_job_frame(L, j);
        memcpy(copy, frame, flen);
        proto_req_rebase(req, frame, copy, flen);
        const proto_req *r2 = req;
        memset(&j->pj, 0, offsetof(pipe_job, buf));
        j->pj.user = j;
        j->pj.peer_known = true;
        j->pj.peer_uid = c->uid;
        j->loop = L;
        j->conn = (uint32_t)(c - L->conns);
        j->gen = c->gen;
        j->id = id;
        j->op = op;
        j->peer_uid = c->uid;
        j->issuer = NULL;
        j->cgen = NULL;
        j->crl = NULL;
        j->crl_len = 0;
        bool queued = false;
        if (op == PROTO_OP_ISSUE || op == PROTO_OP_SIGN) {
            if (op == PROTO_OP_ISSUE) {
                /* the profile of the ring's generation, which the job keeps */
                const iss_issuer *is = cf_gen_profile_issuer(L->cgen, ctx);
                j->pj.kind = PIPE_JOB_ISSUE;
                j->pj.req = r2->issue;
                j->pj.use_prof = cf_gen_profile(L->cgen, ctx);
                j->pj.use_key = is ? is->key : NULL;
                j->issuer = is;
                j->cgen = L->cgen;
                cf_gen_ref(j->cgen);
            } else {
                /* the pipeline resolves the key and checks the algorithm fits it */
                cf_sig_alg alg =
                    CF_SIG__MAX; /* proto_req_decode let only the table's numbers through */
                cf_sig_alg_from_wire(r2->sign.mech, &alg);
                j->pj.kind = PIPE_JOB_SIGN;
                j->pj.req.requester = r2->sign.requester;
                j->pj.sign = (pipe_sign){
                    .key = r2->sign.key,
                    .key_set = true,
                    .key_idx = (uint32_t)ctx,
                    .mech = alg,
                    .data = r2->sign.data,
                    .len = r2->sign.data_len,
                };
            }
            queued = pipe_submit(s->pipe, &j->pj, 0) == 0;
        } else {
            j->areq = *r2;
            queued = true;
        }
        if (queued) {
            c->jobs_out++;
            atomic_fetch_add(&s->inflight, 1);
            if (c->peer)
                atomic_fetch_add(&c->peer->inflight, 1);
            srv_park_remove(L, c);
            if (op == PROTO_OP_REVOKE || op == PROTO_OP_CRL)
                srv_adm_push(s, j);
            return FR_CONSUMED;
        }
        srv_job_put(L, j);
    }
    /* no job or no queue room: wait (connection not read) up to the deadline.
     * The frame stays in the connection's buffer and is decoded again when
     * retried: the backpressure path, not the usual one. */
    if (s->sv.busy_deadline_ms == 0 || (c->parked && L->now >= c->park_deadline)) {
        snprintf(msg, sizeof(msg), "the engine is busy (queue full for %u ms); retry later",
                 s->sv.busy_deadline_ms);
        if (!srv_answer_error(L, c, op, id, CF_ST_BUSY, 0, msg))
            return FR_BLOCKED;
        srv_park_remove(L, c);
        return FR_CONSUMED;
    }
    park(L, c);
    return FR_BLOCKED;
}

static int handle_issue(srv_loop *L, conn *c, proto_req *req, const uint8_t *frame, size_t flen)
{
    uint64_t id = req->hdr.id;
    const cf_str *pn = &req->issue.profile;
    const cfg_config *cfg = cf_gen_cfg(L->cgen);
    const cfg_profile *p = cfg_find_profile(cfg, pn->p, pn->len);
    char msg[160];
    char pname[CFG_NAME_MAX + 1];
    snprintf(pname, sizeof(pname), "%.*s", (int)(pn->len < CFG_NAME_MAX ? pn->len : CFG_NAME_MAX),
             pn->p);
    /* Only a peer that may use every profile learns that one does not
     * exist; to the others a profile they may not use is refused the same
     * whether it exists or not (no probing for names). */
    if (!p && c->all_profiles) {
        snprintf(msg, sizeof(msg), "no profile named '%s'", pname);
        return srv_answer_error(L, c, PROTO_OP_ISSUE, id, CF_ST_UNKNOWN_PROFILE, 0, msg)
                   ? FR_CONSUMED
                   : FR_BLOCKED;
    }
    size_t pi = p ? (size_t)(p - cfg->profiles) : 0;
    if (!p || !(c->prof_bits[pi / 64] & (1ull << (pi % 64)))) {
        snprintf(msg, sizeof(msg), "uid %u / gid %u may not issue from profile '%s'", c->uid,
                 c->gid, pname);
        if (!srv_answer_error(L, c, PROTO_OP_ISSUE, id, CF_ST_UNAUTHORIZED, 0, msg))
            return FR_BLOCKED;
        srv_log_unauthorized(c, "ISSUE", "profile", pname);
        return FR_CONSUMED;
    }
    return queue_job(L, c, req, frame, flen, pi);
}

static int handle_sign(srv_loop *L, conn *c, proto_req *req, const uint8_t *frame, size_t flen)
{
    srv *s = L->s;
    uint64_t id = req->hdr.id;
    const cf_str *kn = &req->sign.key;
    char msg[200], kname[CFG_NAME_MAX + 1];
    snprintf(kname, sizeof(kname), "%.*s", (int)(kn->len < CFG_NAME_MAX ? kn->len : CFG_NAME_MAX),
             kn->p);
    size_t ki;
    for (ki = 0; ki < s->cfg->n_keys; ki++)
        if (strlen(s->cfg->keys[ki].name) == kn->len &&
            memcmp(s->cfg->keys[ki].name, kn->p, kn->len) == 0)
            break;
    if (ki == s->cfg->n_keys) {
        snprintf(msg, sizeof(msg), "no key named '%s'", kname);
        return srv_answer_error(L, c, PROTO_OP_SIGN, id, CF_ST_NOT_FOUND, 0, msg) ? FR_CONSUMED
                                                                                  : FR_BLOCKED;
    }
    if (!(c->key_bits[ki / 64] & (1ull << (ki % 64)))) {
        snprintf(msg, sizeof(msg), "uid %u / gid %u may not sign with key '%s'", c->uid, c->gid,
                 kname);
        if (!srv_answer_error(L, c, PROTO_OP_SIGN, id, CF_ST_UNAUTHORIZED, 0, msg))
            return FR_BLOCKED;
        srv_log_unauthorized(c, "SIGN", "key", kname);
        return FR_CONSUMED;
    }
    return queue_job(L, c, req, frame, flen, ki);
}

/* REVOKE and CRL: to the admin thread (they wait on the ledger). */
static int handle_admin(srv_loop *L, conn *c, proto_req *req, const uint8_t *frame, size_t flen)
{
    srv *s = L->s;
    if ((req->hdr.op == PROTO_OP_REVOKE && !s->rt.revoke) ||
        (req->hdr.op == PROTO_OP_CRL && !s->rt.crl)) {
        const char *m = req->hdr.op == PROTO_OP_CRL
                            ? "this certforged makes no CRLs (no crl section in its config)"
                            : "this certforged has no ledger to revoke in";
        return srv_answer_error(L, c, req->hdr.op, req->hdr.id, CF_ST_UNSUPPORTED, 0, m)
                   ? FR_CONSUMED
                   : FR_BLOCKED;
    }
    return queue_job(L, c, req, frame, flen, 0);
}

/* One whole frame, its header read by srv_pump: decoded here, once. */
static int handle_frame(srv_loop *L, conn *c, const proto_hdr *h, const uint8_t *frame, size_t flen)
{
    srv *s = L->s;
    proto_req req;
    char msg[160];
    proto_err e = proto_req_decode_framed(h, frame, flen, &req);
    if (e != PROTO_OK) {
        cf_status st = proto_err_status(e);
        bool closes = proto_err_closes(e);
        if (e == PROTO_ERR_UNKNOWN_OP || e == PROTO_ERR_RESERVED_OP)
            snprintf(msg, sizeof(msg), "operation %u (%s) is not supported", req.hdr.op,
                     proto_op_name(req.hdr.op));
        else
            snprintf(msg, sizeof(msg), "malformed request: %s", proto_err_name(e));
        if (!srv_answer_error(L, c, req.hdr.op, req.hdr.id, st, 0, msg))
            return FR_BLOCKED;
        /* unknown or reserved ops keep the connection: the first per
         * connection at info, the rest at debug (counted in conn_close) */
        cf_log_level lvl = CF_LOG_WARNING;
        if (!closes)
            lvl = ++c->unsupported == 1 ? CF_LOG_INFO : CF_LOG_DEBUG;
        cf_log(lvl, closes ? "bad_frame" : "unsupported",
               "peer_uid=%u peer_pid=%u err=%s op=%u id=%llu", c->uid, c->pid, proto_err_name(e),
               req.hdr.op, (unsigned long long)req.hdr.id);
        return closes ? FR_CLOSE : FR_CONSUMED;
    }
    /* a reload since this connection's grants were computed: recompute */
    srv_gen_refresh(L);
    if (c->grants_gen != cf_gen_number(L->cgen))
        srv_conn_grants(L, c);
    unsigned need = req.hdr.op == PROTO_OP_ISSUE    ? CFG_GRANT_ISSUE
                    : req.hdr.op == PROTO_OP_STATUS ? CFG_GRANT_STATUS
                    : req.hdr.op == PROTO_OP_SIGN   ? CFG_GRANT_SIGN
                    : req.hdr.op == PROTO_OP_REVOKE ? CFG_GRANT_REVOKE
                    : req.hdr.op == PROTO_OP_CRL    ? CFG_GRANT_CRL
                                                    : CFG_GRANT_KEYS;
    if (!(c->ops & need)) {
        snprintf(msg, sizeof(msg), "uid %u / gid %u may not use %s", c->uid, c->gid,
                 proto_op_name(req.hdr.op));
        if (!srv_answer_error(L, c, req.hdr.op, req.hdr.id, CF_ST_UNAUTHORIZED, 0, msg))
            return FR_BLOCKED;
        srv_log_unauthorized(c, proto_op_name(req.hdr.op), NULL, NULL);
        return FR_CONSUMED;
    }
    /* answers backed up: take no new work (and no job) until they are sent */
    if (c->n_ready && (req.hdr.op == PROTO_OP_ISSUE || req.hdr.op == PROTO_OP_SIGN ||
                       req.hdr.op == PROTO_OP_REVOKE || req.hdr.op == PROTO_OP_CRL)) {
        srv_park_remove(L, c); /* waits for output room, not for a job */
        return FR_BLOCKED;
    }
    switch (req.hdr.op) {
    case PROTO_OP_ISSUE:
        return handle_issue(L, c, &req, frame, flen);
    case PROTO_OP_SIGN:
        return handle_sign(L, c, &req, frame, flen);
    case PROTO_OP_REVOKE:
    case PROTO_OP_CRL:
        return handle_admin(L, c, &req, frame, flen);
    case PROTO_OP_STATUS: {
        status_arg a = {L, req.hdr.id};
        return srv_out_put(L, c, PROTO_OP_STATUS, req.hdr.id, CF_ST_OK, srv_enc_status, &a)
                   ? FR_CONSUMED
                   : FR_BLOCKED;
    }
    default: {
        keys_arg a = {s, req.hdr.id};
        return srv_out_put(L, c, PROTO_OP_KEYS, req.hdr.id, CF_ST_OK, srv_enc_keys, &a)
                   ? FR_CONSUMED
                   : FR_BLOCKED;
    }
    }
}

/* Does the input hold a whole frame (or a framing error) to act on? */
bool srv_frame_pending(const srv *s, const conn *c)
{
    if (!c->in || c->in_len == c->in_off)
        return false;
    proto_hdr h;
    size_t fl;
    return proto_frame_next(c->in + c->in_off, c->in_len - c->in_off, s->sv.max_frame, &h, &fl) !=
           PROTO_NEED_MORE;
}

/* Consume as many whole frames as the state allows. */
void srv_pump(srv_loop *L, conn *c)
{
    srv *s = L->s;
    if (c->dead)
        return;
    while (!c->closing) {
        size_t avail = c->in_len - c->in_off;
        if (avail == 0)
            break;
        proto_hdr h;
        size_t flen = 0;
        proto_err e = proto_frame_next(c->in + c->in_off, avail, s->sv.max_frame, &h, &flen);
        if (e == PROTO_NEED_MORE)
            break;
        if (c->fail_streak >= SRV_PENALTY_AFTER && e == PROTO_OK) {
            if (L->now < c->penalty_until)
                break; /* on_timer pumps it when the delay is over */
            uint64_t d = 10ull * (c->fail_streak - SRV_PENALTY_AFTER + 1);
            c->penalty_until = L->now + (d < SRV_PENALTY_MAX_MS ? d : SRV_PENALTY_MAX_MS);
            c->penalized++;
        }
        if (e != PROTO_OK) {
            char msg[160];
            cf_status st = proto_err_status(e);
            if (e == PROTO_ERR_TOO_LARGE)
                snprintf(msg, sizeof(msg), "frame of %llu octets is over the limit of %u",
                         (unsigned long long)h.len + 4, s->sv.max_frame);
            else
                snprintf(msg, sizeof(msg), "malformed frame: %s", proto_err_name(e));
            uint8_t op = h.complete ? h.op : 0;
            uint64_t id = h.complete ? h.id : 0;
            if (!srv_answer_error(L, c, op, id, st, 0, msg))
                break;
            c->requests++;
            atomic_fetch_add(&s->n_requests, 1);
            cf_log(CF_LOG_WARNING, "bad_frame", "peer_uid=%u peer_pid=%u err=%s len=%llu", c->uid,
                   c->pid, proto_err_name(e), (unsigned long long)h.len);
            c->closing = true;
            break;
        }
        int r = handle_frame(L, c, &h, c->in + c->in_off, flen);
        if (r == FR_BLOCKED)
            break;
        c->requests++;
        atomic_fetch_add(&s->n_requests, 1);
        c->in_off += flen;
        if (c->in_off == c->in_len && !c->recv_armed)
            c->in_off = c->in_len = 0;
        if (r == FR_CLOSE)
            c->closing = true;
    }
    if (!c->closing && c->eof && !srv_frame_pending(s, c) && c->in_len > c->in_off) {
        /* the peer hung up in the middle of a frame: nothing can be answered */
        cf_log(CF_LOG_WARNING, "bad_frame", "peer_uid=%u peer_pid=%u err=truncated len=%zu", c->uid,
               c->pid, c->in_len - c->in_off);
        c->in_off = c->in_len = 0;
        c->closing = true;
    }
    srv_conn_update_recv(L, c);
    srv_start_send(L, c);
}

void srv_retry_parked(srv_loop *L)
{
    /* one pass over those parked now; a connection that parks again goes last */
    conn *stop = L->park_tail;
    while (L->park_head && (L->free_jobs || L->nunused)) {
        conn *c = L->park_head;
        L->park_head = c->park_next;
        if (!L->park_head)
            L->park_tail = NULL;
        c->in_parklist = false;
        c->park_next = NULL;
        srv_pump(L, c);
        srv_maybe_finish(L, c);
        if (c == stop)
            break;
    }
}

/* The ring's config generation, moved to the engine's current one if a
 * reload published another (the old one is freed by its last user). */
void srv_gen_refresh(srv_loop *L)
{
    if (cf_gen_number(L->cgen) == cf_engine_gen_number(L->s->rt.eng))
        return;
    cf_gen *g = cf_engine_gen_get(L->s->rt.eng);
    cf_gen_put(L->cgen);
    L->cgen = g;
}

/* A connection's grants as bitmaps (ops, profiles, keys), from the ring's
 * config generation: the union of every grant naming its uid or its
 * primary gid. */
void srv_conn_grants(srv_loop *L, conn *c)
{
    const cfg_config *cfg = cf_gen_cfg(L->cgen);
    c->grants_gen = cf_gen_number(L->cgen);
    c->ops = 0;
    c->all_profiles = false;
    memset(c->prof_bits, 0, sizeof(c->prof_bits));
    memset(c->key_bits, 0, sizeof(c->key_bits));
    for (size_t g = 0; g < cfg->n_grants; g++) {
        const cfg_grant *gr = &cfg->grants[g];
        if (!((gr->has_uid && gr->uid == c->uid) || (gr->has_gid && gr->gid == c->gid)))
            continue;
        c->ops |= gr->ops;
        c->all_profiles |= gr->all_profiles;
        for (size_t k = 0; k < cfg->n_profiles; k++) {
            bool in_grant = gr->all_profiles;
            for (size_t m = 0; !in_grant && m < gr->n_profiles; m++)
                in_grant = gr->profile_idx[m] == k;
            if (in_grant)
                c->prof_bits[k / 64] |= 1ull << (k % 64);
        }
        for (size_t m = 0; m < gr->n_keys; m++)
            c->key_bits[gr->key_idx[m] / 64] |= 1ull << (gr->key_idx[m] % 64);
    }
}

/* ------------------------------------------------------------ fair share per peer */

/* The uid's entry, made if it has none (a reference for a connection
 * slot about to be used); NULL when the table is full (cannot happen: it
 * has a row per slot of every ring). */
srv_peer *srv_peer_ref(srv *s, uint32_t uid)
{
    srv_peer *p = NULL, *free_row = NULL;
    pthread_mutex_lock(&s->peer_mu);
    for (size_t i = 0; i < s->npeer_slots && !p; i++) {
        srv_peer *q = &s->peers[i];
        if (q->refs && q->uid == uid)
            p = q;
        else if (!q->refs && !free_row)
            free_row = q;
    }
    if (!p && free_row) {
        p = free_row;
        p->uid = uid;
        atomic_store(&p->conns, 0);
        atomic_store(&p->inflight, 0);
    }
    if (p)
        p->refs++;
    pthread_mutex_unlock(&s->peer_mu);
    return p;
}

void srv_peer_unref(srv *s, srv_peer *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&s->peer_mu);
    p->refs--;
    pthread_mutex_unlock(&s->peer_mu);
}

void srv_peer_opened(srv *s, srv_peer *p)
{
    if (p && atomic_fetch_add(&p->conns, 1) == 0)
        atomic_fetch_add(&s->npeers, 1);
}

void srv_peer_closed(srv *s, srv_peer *p)
{
    if (p && atomic_fetch_sub(&p->conns, 1) == 1)
        atomic_fetch_sub(&s->npeers, 1);
}

/* The server is full and peer p (about to connect) holds less than its
 * fair share (max_connections / the uids connected, p counted): close the
 * oldest idle connection of this ring's peer holding the most over its
 * share. Idle: nothing in flight, nothing to answer or send, no partial
 * frame. True when one was closed. (Rings do not reach into each other:
 * only this ring's connections are candidates.) */
bool srv_fair_share_evict(srv_loop *L, const srv_peer *p)
{
    srv *s = L->s;
    unsigned held = p ? atomic_load(&p->conns) : 0;
    unsigned peers = atomic_load(&s->npeers) + (held ? 0 : 1);
    unsigned fair = s->sv.max_connections / (peers ? peers : 1);
    if (held >= fair)
        return false;
    const srv_peer *hog = NULL;
    unsigned most = fair;
    for (uint32_t i = 0; i < L->nslots; i++) {
        const conn *c = &L->conns[i];
        if (!c->used || c->dead || !c->peer || c->peer == p)
            continue;
        unsigned n = atomic_load(&c->peer->conns);
        if (n > most) {
            most = n;
            hog = c->peer;
        }
    }
    if (!hog)
        return false;
    conn *victim = NULL;
    for (uint32_t i = 0; i < L->nslots; i++) {
        conn *c = &L->conns[i];
        if (!c->used || c->dead || c->peer != hog || c->jobs_out || c->n_ready || c->out_len ||
            c->parked || c->in_len > c->in_off)
            continue;
        if (!victim || c->last_activity < victim->last_activity)
            victim = c;
    }
    if (!victim)
        return false;
    srv_conn_close(L, victim, "fair-share");
    return true;
}
