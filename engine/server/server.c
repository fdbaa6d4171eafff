/* server.c — certforged's io_uring server (server.h, docs/certforged.md).
 *
 * One ring per I/O thread (SINGLE_ISSUER | DEFER_TASKRUN, plain ring where
 * the kernel refuses). Each ring has: a multishot accept on the shared
 * listening socket, one single-shot recv at a time per connection straight
 * into that connection's input buffer, one send at a time per connection,
 * a read on its completion eventfd, a periodic timeout, and (ring 0) a read
 * on the signalfd.
 *
 * Memory is bounded and allocated up front, except per connection (input
 * buffer of max_frame octets, output buffer of SRV_OUT_CAP, allocated at
 * accept, freed at close):
 *   - receive: no shared buffers. A connection's recv reads into the free
 *     tail of its own input buffer and is re-armed only while that buffer
 *     has room and the connection is not blocked (answers waiting for
 *     output room, or parked). A peer that does not read its answers can
 *     so pin only its own max_frame + SRV_OUT_CAP octets, never another
 *     connection's receive path. (A provided-buffer ring shared by the
 *     ring's connections let one such peer hold most of it: every other
 *     recv then ended in -ENOBUFS.)
 *   - jobs: a pool per ring (pipeline.queue + workers × batch in all,
 *     capped by max_connections × max_inflight), each with an inline copy
 *     of its request frame (SRV_JOB_FRAME octets; larger frames take one of
 *     a few max_frame-sized buffers). The request's zero-copy fields point
 *     into that copy, which lives until the job completes (what the
 *     answer needs, its chain, is resolved at submit).
 *
 * Backpressure: a request that finds no free job or no room in the
 * pipeline's queue "parks" its connection: no further frame of it is
 * consumed (its input buffer fills, then its recv is paused) and it is
 * retried whenever a job completes. If it is still not queued after
 * server.busy_deadline_ms it is answered BUSY. A connection with
 * max_inflight ISSUE requests unanswered gets BUSY for the next one
 * (docs/protocol.md). A connection holds at most a share of its ring's
 * jobs (min(max_inflight, max(8, jobs / 8))), and one that holds any may
 * not take the last jobs / 16 free ones: over that its next frame waits,
 * without a deadline, for one of its own jobs to complete. A client that
 * does not read its answers fills its output buffer; then its completed
 * jobs wait (still counted in flight), it takes no new job and its frames
 * are not consumed; once its output has stayed blocked for
 * idle_timeout_ms (a trickle of reads does not count) it is closed as a
 * stalled reader.
 *
 * Completion hand-off: the pipeline calls srv_pipe_done() on its recorder
 * thread (a worker's for failed jobs, and without a ledger; the admin
 * thread for REVOKE and CRL); it pushes the job on its ring's lock-free
 * stack and, if the stack was empty, writes the ring's eventfd. The ring
 * thread takes the whole stack at once when its eventfd read completes. (MSG_RING would need a
 * ring per worker; with DEFER_TASKRUN only the ring's own thread may
 * submit to it.)
 */
#include "engine/server/server.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"

#define SRV_OUT_CAP 65536  /* per connection: answers not yet sent */
#define SRV_JOB_FRAME 4096 /* inline request frame copy per job */
#define SRV_MAX_LARGE 32   /* max_frame-sized frame buffers per ring */
#define SRV_SQ_ENTRIES 512
#define SRV_CQ_ENTRIES 8192
#define SRV_RATE_SAMPLES 11 /* one per second: rate over the last 10 s */
/* A connection whose last SRV_PENALTY_AFTER answers were all refusals of
 * its own requests (bad frames, bad CSRs, policy, unknown names,
 * unauthorized; not UNSUPPORTED: a newer client may probe) has each further frame delayed by 10 ms per refusal beyond
 * that, up to SRV_PENALTY_MAX_MS; one OK answer ends it. A peer flooding
 * garbage so gets a trickle of the daemon, not a share of it. */
#define SRV_PENALTY_AFTER 16
#define SRV_PENALTY_MAX_MS 1000

/* ------------------------------------------------------------ types */

enum { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_CANCEL, OP_EVENT, OP_SIGNAL, OP_TIMER };

static inline uint64_t ud_pack(unsigned op, uint32_t idx, uint32_t gen)
{
    return ((uint64_t)op << 56) | ((uint64_t)(idx & 0xFFFFFFu) << 32) | gen;
}

typedef struct srv_loop srv_loop;

/* An issuer's chain as the answers carry it (built once at srv_run from
 * the engine's issuer objects). */
typedef struct srv_chain {
    proto_blob certs[PROTO_MAX_CHAIN]; /* issuer first */
    unsigned n;
} srv_chain;

typedef struct srv_job {
    pipe_job pj;
    struct srv_job *next; /* free list, done stack, ready list, admin queue */
    srv_loop *loop;
    uint32_t conn, gen;
    uint64_t id;
    uint8_t op;      /* PROTO_OP_ISSUE, SIGN (pipeline), REVOKE, CRL (admin thread) */
    proto_req areq;  /* REVOKE / CRL: the request, pointing into the frame copy */
    uint32_t peer_uid;
    int64_t revoked_at;
    unsigned reason;
    uint8_t *crl; /* CRL answer (malloc'd; freed by job_put) */
    size_t crl_len;
    const struct srv_chain *chain; /* for the answer, resolved at submit */
    int large; /* index of the large frame buffer used, or -1: returned at completion */
    uint8_t frame[SRV_JOB_FRAME];
} srv_job;

typedef struct conn {
    int fd;
    uint32_t gen;
    bool used;
    bool dead;    /* closed: waiting for ring ops and jobs before release */
    bool closing; /* answer what is queued, then close (bad frame) */
    bool eof;     /* the peer shut down its writing side */
    bool recv_armed, cancel_sent, send_inflight;
    bool parked;   /* head frame waits for a job / queue room */
    bool in_parklist;
    uint32_t uid, gid, pid;
    unsigned ops;
    uint64_t prof_bits[CFG_MAX_ENTRIES / 64];
    uint64_t key_bits[CFG_MAX_ENTRIES / 64]; /* SIGN: the keys granted */
    uint8_t *in; /* max_frame octets; data in [in_off, in_len); a recv in
                  * flight writes at in + in_len, so in only moves when none is */
    size_t in_off, in_len;
    uint8_t *out; /* SRV_OUT_CAP; [0, send_len) being sent, [0, out_len) queued */
    size_t out_len, send_len;
    srv_job *ready_head, *ready_tail; /* completed, not yet encoded (out full) */
    unsigned n_ready, jobs_out;       /* jobs_out: in the pipeline */
    uint64_t park_deadline;
    uint64_t last_activity;
    uint64_t out_blocked_since; /* an answer has not fit since then (0: none) */
    struct conn *park_next;
    uint64_t requests, unauthorized, unsupported;
    unsigned fail_streak;  /* refusals in a row (see SRV_PENALTY_AFTER) */
    uint64_t penalty_until; /* no frame is consumed before this (ms) */
    uint64_t penalized;     /* frames delayed */
    uint64_t partial_since; /* a frame has been incomplete since (ms; 0: none) */
} conn;

struct srv_loop {
    srv *s;
    unsigned idx;
    pthread_t th;
    bool th_started;
    struct io_uring ring;
    bool ring_ok;
    /* completions from workers */
    int evfd;
    uint64_t ev_val;
    _Atomic(srv_job *) done_head;
    /* job pool */
    srv_job *jobs;
    size_t share;   /* jobs one connection may hold: min(max_inflight, max(8, njobs / 8)) */
    size_t reserve; /* free jobs kept for connections holding none: njobs / 16 */
    size_t njobs, nunused; /* jobs[njobs - nunused ..) never handed out: pages untouched */
    srv_job *free_jobs;
    size_t nfree_jobs;
    uint8_t *large;
    int large_free[SRV_MAX_LARGE];
    int nlarge_free, nlarge;
    /* connections */
    conn *conns;
    uint32_t nslots;
    uint32_t *free_slots;
    uint32_t nfree_slots;
    uint32_t nlive; /* slots in use (open or dead-not-released) */
    conn *park_head, *park_tail;
    /* state */
    bool accept_armed, accept_cancel_sent, accept_retry;
    bool draining, done;
    bool fatal; /* get_sqe could not get an SQE: stop the ring (L->err) */
    uint64_t drain_deadline;
    uint64_t now;
    struct __kernel_timespec tick_ts;
    struct signalfd_siginfo sig;
    int rc;
    char err[256];
};

struct srv {
    const cfg_config *cfg;
    cfg_server sv;
    int signal_fd;
    int lfd;
    int lock_fd; /* SOCKET.lock, flock()ed while this srv lives */
    bool bound;
    char path[CFG_SOCKET_PATH_MAX + 1];
    dev_t sock_dev;
    ino_t sock_ino;
    srv_loop *loops;
    unsigned nloops;
    srv_runtime rt;
    pipe_engine *pipe;
    srv_chain *chains;              /* per issuer (cf_engine_issuers order) */
    proto_key keys[PROTO_MAX_KEYS]; /* the KEYS answer */
    size_t n_keys;
    unsigned tick_ms;
    size_t large_size;
    _Atomic bool stopping;
    atomic_uint conns;
    atomic_ulong inflight;
    atomic_ulong n_accepted, n_requests, n_answered, n_unanswered, n_refused;
    atomic_ulong by_status[CF_ST__MAX];
    uint64_t start_ms;
    pthread_mutex_t rate_mu;
    uint64_t rate_ms[SRV_RATE_SAMPLES], rate_issued[SRV_RATE_SAMPLES];
    unsigned rate_n, rate_pos;
    uint64_t rate_last_ms;
    /* HSM failures are logged at most once a second, with a count */
    atomic_ulong hsm_fail_unlogged;
    _Atomic uint64_t hsm_fail_logged_ms;
    /* admin thread: REVOKE and CRL (they wait on the ledger) */
    pthread_t adm_th;
    bool adm_started, adm_stop;
    pthread_mutex_t adm_mu;
    pthread_cond_t adm_cv;
    srv_job *adm_head, *adm_tail;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* An SQE, submitting what is queued when the SQ is full. The submit can
 * leave the SQ full (-EBUSY/-EAGAIN while completions wait to be posted):
 * a few more tries, letting the kernel post them; then the ring is failed
 * (L->fatal: loop_run stops, the daemon stops) and NULL is returned —
 * every caller then leaves its state as if nothing had been asked. */
static struct io_uring_sqe *get_sqe(srv_loop *L)
{
    struct io_uring_sqe *sqe = L->fatal ? NULL : io_uring_get_sqe(&L->ring);
    for (int tries = 0; !sqe && !L->fatal && tries < 4; tries++) {
        int r = io_uring_submit(&L->ring);
        if (r < 0 && r != -EBUSY && r != -EAGAIN && r != -EINTR)
            break;
        sqe = io_uring_get_sqe(&L->ring);
        if (!sqe)
            (void)io_uring_get_events(&L->ring);
    }
    if (!sqe && !L->fatal) {
        L->fatal = true;
        snprintf(L->err, sizeof(L->err), "the submission queue stays full (%u entries)",
                 SRV_SQ_ENTRIES);
    }
    return sqe;
}

/* ------------------------------------------------------------ buffers, jobs */

static srv_job *job_get(srv_loop *L, size_t frame_len)
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

static uint8_t *job_frame(srv_loop *L, srv_job *j)
{
    return j->large >= 0 ? L->large + (size_t)j->large * L->s->large_size : j->frame;
}

static void job_put(srv_loop *L, srv_job *j)
{
    free(j->crl);
    j->crl = NULL;
    if (j->large >= 0)
        L->large_free[L->nlarge_free++] = j->large;
    j->large = -1;
    j->next = L->free_jobs;
    L->free_jobs = j;
    L->nfree_jobs++;
}

/* ------------------------------------------------------------ connections */

static void conn_update_recv(srv_loop *L, conn *c);
static void pump(srv_loop *L, conn *c);
static void start_send(srv_loop *L, conn *c);

static void park_remove(srv_loop *L, conn *c)
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

static void maybe_release(srv_loop *L, conn *c)
{
    if (!c->used || !c->dead || c->recv_armed || c->send_inflight || c->jobs_out)
        return;
    close(c->fd);
    free(c->in);
    free(c->out);
    c->in = c->out = NULL;
    c->used = false;
    c->gen++;
    L->free_slots[L->nfree_slots++] = (uint32_t)(c - L->conns);
    L->nlive--;
}

static void drop_ready(srv_loop *L, conn *c)
{
    srv *s = L->s;
    while (c->ready_head) {
        srv_job *j = c->ready_head;
        c->ready_head = j->next;
        job_put(L, j);
        c->n_ready--;
        atomic_fetch_sub(&s->inflight, 1);
        atomic_fetch_add(&s->n_unanswered, 1);
    }
    c->ready_tail = NULL;
}

static void conn_close(srv_loop *L, conn *c, const char *reason)
{
    srv *s = L->s;
    if (c->dead)
        return;
    c->dead = true;
    shutdown(c->fd, SHUT_RDWR);
    if (c->recv_armed && !c->cancel_sent) {
        struct io_uring_sqe *sqe = get_sqe(L);
        if (sqe) { /* NULL: the ring is failing; the shutdown ends the recv */
            io_uring_prep_cancel64(sqe, ud_pack(OP_RECV, (uint32_t)(c - L->conns), c->gen), 0);
            io_uring_sqe_set_data64(sqe, ud_pack(OP_CANCEL, 0, 0));
            c->cancel_sent = true;
        }
    }
    park_remove(L, c);
    uint64_t dropped = c->n_ready + c->jobs_out;
    drop_ready(L, c);
    atomic_fetch_add(&s->n_unanswered, c->jobs_out); /* answered into the void later */
    atomic_fetch_sub(&s->conns, 1);
    cf_log(CF_LOG_INFO, "conn_close",
           "peer_uid=%u peer_gid=%u peer_pid=%u reason=%s requests=%llu dropped=%llu "
           "unsent_bytes=%zu unsupported=%llu unauthorized=%llu penalized=%llu",
           c->uid, c->gid, c->pid, reason, (unsigned long long)c->requests,
           (unsigned long long)dropped, c->out_len, (unsigned long long)c->unsupported,
           (unsigned long long)c->unauthorized, (unsigned long long)c->penalized);
    maybe_release(L, c);
}

/* Append one encoded answer. Returns false when it does not fit behind
 * what is already queued (try again after the send completes). An answer
 * larger than the whole buffer is replaced by INTERNAL. */
typedef size_t (*enc_fn)(uint8_t *buf, size_t cap, const void *arg);

static bool out_put(srv_loop *L, conn *c, uint8_t op, uint64_t id, cf_status st, enc_fn enc,
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
    atomic_fetch_add(&s->by_status[st < CF_ST__MAX ? st : CF_ST_INTERNAL], 1);
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

static bool answer_error(srv_loop *L, conn *c, uint8_t op, uint64_t id, cf_status st,
                         uint32_t detail, const char *msg)
{
    err_arg a = {op, id, st, detail, msg};
    return out_put(L, c, op, id, st, enc_err, &a);
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
    const srv_chain *ch = a->j->chain;
    return proto_enc_issue_ok(buf, cap, a->j->id, pj->cert, pj->cert_len, ch ? ch->certs : NULL,
                              ch ? ch->n : 0, pj->serial, pj->serial_len);
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

/* An operator must see HSM trouble, but not one line per request: the
 * first failure, then at most one line a second with how many there were. */
static void log_hsm_failure(srv_loop *L, const srv_job *j)
{
    srv *s = L->s;
    unsigned long n = atomic_fetch_add(&s->hsm_fail_unlogged, 1) + 1;
    uint64_t last = atomic_load(&s->hsm_fail_logged_ms);
    if (last && L->now - last < 1000)
        return;
    if (!atomic_compare_exchange_strong(&s->hsm_fail_logged_ms, &last, L->now ? L->now : 1))
        return;
    n = atomic_exchange(&s->hsm_fail_unlogged, 0);
    char q[300];
    cf_log(CF_LOG_ERROR, "hsm_failure", "op=%s failures=%lu rv=0x%lx msg=%s", proto_op_name(j->op),
           n, (unsigned long)(uint32_t)j->pj.detail, cf_log_quote(j->pj.msg, q, sizeof(q)));
}

/* Encode completed jobs while they fit. */
static void flush_ready(srv_loop *L, conn *c)
{
    srv *s = L->s;
    while (c->ready_head && !c->dead) {
        srv_job *j = c->ready_head;
        issue_arg a = {L, j};
        cf_status st = job_status(j);
        if (!out_put(L, c, j->op, j->id, st, j->op == PROTO_OP_ISSUE ? enc_issue : enc_other, &a))
            break;
        if (st == CF_ST_OK && j->op == PROTO_OP_ISSUE)
            cf_log(CF_LOG_DEBUG, "issued", "peer_uid=%u id=%llu", c->uid,
                   (unsigned long long)j->id);
        if (st == CF_ST_HSM_FAILURE)
            log_hsm_failure(L, j);
        c->ready_head = j->next;
        if (!c->ready_head)
            c->ready_tail = NULL;
        c->n_ready--;
        atomic_fetch_sub(&s->inflight, 1);
        job_put(L, j);
    }
}

static void start_send(srv_loop *L, conn *c)
{
    if (c->dead || c->send_inflight || c->out_len == 0)
        return;
    struct io_uring_sqe *sqe = get_sqe(L);
    if (!sqe)
        return;
    io_uring_prep_send(sqe, c->fd, c->out, c->out_len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud_pack(OP_SEND, (uint32_t)(c - L->conns), c->gen));
    c->send_len = c->out_len;
    c->send_inflight = true;
}

static bool may_read(const srv_loop *L, const conn *c)
{
    return !c->dead && !c->closing && !c->eof && !L->draining;
}

static bool frame_pending(const srv *s, const conn *c);

/* Read while the input buffer has room and the connection is not blocked
 * (a whole frame waiting: output full or parked; answers waiting for
 * output room). A recv already in flight is left to complete: it can only
 * fill this connection's own buffer. Stopping for good (close, drain,
 * peer EOF) cancels it. */
static void conn_update_recv(srv_loop *L, conn *c)
{
    if (c->dead)
        return;
    if (!may_read(L, c)) {
        if (c->recv_armed && !c->cancel_sent) {
            struct io_uring_sqe *sqe = get_sqe(L);
            if (!sqe)
                return;
            io_uring_prep_cancel64(sqe, ud_pack(OP_RECV, (uint32_t)(c - L->conns), c->gen), 0);
            io_uring_sqe_set_data64(sqe, ud_pack(OP_CANCEL, 0, 0));
            c->cancel_sent = true;
        }
        return;
    }
    if (c->recv_armed || c->n_ready || c->parked || frame_pending(L->s, c))
        return;
    if (c->in_off > 0) { /* no recv in flight: the data may move */
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    size_t cap = L->s->sv.max_frame;
    if (c->in_len >= cap)
        return;
    struct io_uring_sqe *sqe = get_sqe(L);
    if (!sqe)
        return;
    io_uring_prep_recv(sqe, c->fd, c->in + c->in_len, cap - c->in_len, 0);
    io_uring_sqe_set_data64(sqe, ud_pack(OP_RECV, (uint32_t)(c - L->conns), c->gen));
    c->recv_armed = true;
    c->cancel_sent = false;
}

/* ------------------------------------------------------------ requests */

enum { FR_CONSUMED, FR_BLOCKED, FR_CLOSE };

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

static void log_unauthorized(conn *c, const char *op, const char *what)
{
    c->unauthorized++;
    /* the first per connection at warning, the rest at debug (no log flood) */
    cf_log(c->unauthorized == 1 ? CF_LOG_WARNING : CF_LOG_DEBUG, "unauthorized",
           "peer_uid=%u peer_gid=%u peer_pid=%u op=%s%s%s", c->uid, c->gid, c->pid, op,
           what ? " profile=" : "", what ? what : "");
}

typedef struct status_arg {
    srv_loop *L;
    uint64_t id;
} status_arg;

static size_t enc_status(uint8_t *buf, size_t cap, const void *arg)
{
    const status_arg *a = arg;
    srv *s = a->L->s;
    pipe_stats st;
    pipe_get_stats(s->pipe, &st);
    uint64_t now = now_ms();
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
    char v[8 + CF_ST__MAX][32];
    char keys[CF_ST__MAX][48];
    proto_kv kv[8 + CF_ST__MAX];
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

typedef struct keys_arg {
    const srv *s;
    uint64_t id;
} keys_arg;

static size_t enc_keys(uint8_t *buf, size_t cap, const void *arg)
{
    const keys_arg *a = arg;
    return proto_enc_keys_ok(buf, cap, a->id, a->s->keys, a->s->n_keys);
}

static void adm_push(srv *s, srv_job *j);

/* Take a job for a request that passed its op's checks, copy its frame
 * into the job and hand it on: ISSUE and SIGN to the pipeline, REVOKE and
 * CRL to the admin thread. Backpressure (in-flight cap, fair share, an
 * empty pool or a full queue) as docs/certforged.md describes. `ctx`: the
 * profile index for ISSUE, the key index for SIGN. */
static int queue_job(srv_loop *L, conn *c, const proto_req *req, const uint8_t *frame,
                     size_t flen, size_t ctx)
{
    srv *s = L->s;
    uint8_t op = req->hdr.op;
    uint64_t id = req->hdr.id;
    char msg[160];
    if (c->jobs_out + c->n_ready >= s->sv.max_inflight) {
        snprintf(msg, sizeof(msg), "more than %u requests in flight on this connection",
                 s->sv.max_inflight);
        return answer_error(L, c, op, id, CF_ST_BUSY, 0, msg) ? FR_CONSUMED : FR_BLOCKED;
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
        park_remove(L, c);
        return FR_BLOCKED;
    }
    srv_job *j = job_get(L, flen);
    if (j) {
        uint8_t *copy = job_frame(L, j);
        memcpy(copy, frame, flen);
        proto_req r2;
        if (proto_req_decode(copy, flen, &r2) != PROTO_OK) { /* cannot happen: same bytes */
            job_put(L, j);
            return answer_error(L, c, op, id, CF_ST_INTERNAL, 0, "decode failed") ? FR_CONSUMED
                                                                                  : FR_BLOCKED;
        }
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
        j->chain = NULL;
        j->crl = NULL;
        j->crl_len = 0;
        bool queued = false;
        if (op == PROTO_OP_ISSUE || op == PROTO_OP_SIGN) {
            if (op == PROTO_OP_ISSUE) {
                const iss_issuer *is = cf_engine_profile_issuer(s->rt.eng, ctx);
                j->pj.kind = PIPE_JOB_ISSUE;
                j->pj.req = r2.issue;
                j->chain = is ? &s->chains[is->idx] : NULL;
            } else {
                /* the pipeline resolves the key and checks the algorithm fits it */
                cf_sig_alg alg =
                    CF_SIG__MAX; /* proto_req_decode let only the table's numbers through */
                cf_sig_alg_from_wire(r2.sign.mech, &alg);
                j->pj.kind = PIPE_JOB_SIGN;
                j->pj.req.requester = r2.sign.requester;
                j->pj.sign = (pipe_sign){
                    .key = r2.sign.key,
                    .mech = alg,
                    .data = r2.sign.data,
                    .len = r2.sign.data_len,
                };
            }
            queued = pipe_submit(s->pipe, &j->pj, 0) == 0;
        } else {
            j->areq = r2;
            queued = true;
        }
        if (queued) {
            c->jobs_out++;
            atomic_fetch_add(&s->inflight, 1);
            park_remove(L, c);
            if (op == PROTO_OP_REVOKE || op == PROTO_OP_CRL)
                adm_push(s, j);
            return FR_CONSUMED;
        }
        job_put(L, j);
    }
    /* no job or no queue room: wait (connection not read) up to the deadline */
    if (s->sv.busy_deadline_ms == 0 || (c->parked && L->now >= c->park_deadline)) {
        snprintf(msg, sizeof(msg), "the engine is busy (queue full for %u ms); retry later",
                 s->sv.busy_deadline_ms);
        if (!answer_error(L, c, op, id, CF_ST_BUSY, 0, msg))
            return FR_BLOCKED;
        park_remove(L, c);
        return FR_CONSUMED;
    }
    park(L, c);
    return FR_BLOCKED;
}

static int handle_issue(srv_loop *L, conn *c, const proto_req *req, const uint8_t *frame,
                        size_t flen)
{
    srv *s = L->s;
    uint64_t id = req->hdr.id;
    const cf_str *pn = &req->issue.profile;
    const cfg_profile *p = cfg_find_profile(s->cfg, pn->p, pn->len);
    char msg[160], pq[96];
    char pname[CFG_NAME_MAX + 1];
    snprintf(pname, sizeof(pname), "%.*s", (int)(pn->len < CFG_NAME_MAX ? pn->len : CFG_NAME_MAX),
             pn->p);
    if (!p) {
        snprintf(msg, sizeof(msg), "no profile named '%s'", pname);
        return answer_error(L, c, PROTO_OP_ISSUE, id, CF_ST_UNKNOWN_PROFILE, 0, msg) ? FR_CONSUMED
                                                                                     : FR_BLOCKED;
    }
    size_t pi = (size_t)(p - s->cfg->profiles);
    if (!(c->prof_bits[pi / 64] & (1ull << (pi % 64)))) {
        snprintf(msg, sizeof(msg), "uid %u / gid %u may not issue from profile '%s'", c->uid,
                 c->gid, p->name);
        if (!answer_error(L, c, PROTO_OP_ISSUE, id, CF_ST_UNAUTHORIZED, 0, msg))
            return FR_BLOCKED;
        log_unauthorized(c, "ISSUE", cf_log_quote(p->name, pq, sizeof(pq)));
        return FR_CONSUMED;
    }
    return queue_job(L, c, req, frame, flen, pi);
}

static int handle_sign(srv_loop *L, conn *c, const proto_req *req, const uint8_t *frame,
                       size_t flen)
{
    srv *s = L->s;
    uint64_t id = req->hdr.id;
    const cf_str *kn = &req->sign.key;
    char msg[200], kq[96], kname[CFG_NAME_MAX + 1];
    snprintf(kname, sizeof(kname), "%.*s", (int)(kn->len < CFG_NAME_MAX ? kn->len : CFG_NAME_MAX),
             kn->p);
    size_t ki;
    for (ki = 0; ki < s->cfg->n_keys; ki++)
        if (strlen(s->cfg->keys[ki].name) == kn->len &&
            memcmp(s->cfg->keys[ki].name, kn->p, kn->len) == 0)
            break;
    if (ki == s->cfg->n_keys) {
        snprintf(msg, sizeof(msg), "no key named '%s'", kname);
        return answer_error(L, c, PROTO_OP_SIGN, id, CF_ST_NOT_FOUND, 0, msg) ? FR_CONSUMED
                                                                              : FR_BLOCKED;
    }
    if (!(c->key_bits[ki / 64] & (1ull << (ki % 64)))) {
        snprintf(msg, sizeof(msg), "uid %u / gid %u may not sign with key '%s'", c->uid, c->gid,
                 kname);
        if (!answer_error(L, c, PROTO_OP_SIGN, id, CF_ST_UNAUTHORIZED, 0, msg))
            return FR_BLOCKED;
        c->unauthorized++;
        cf_log(c->unauthorized == 1 ? CF_LOG_WARNING : CF_LOG_DEBUG, "unauthorized",
               "peer_uid=%u peer_gid=%u peer_pid=%u op=SIGN key=%s", c->uid, c->gid, c->pid,
               cf_log_quote(kname, kq, sizeof(kq)));
        return FR_CONSUMED;
    }
    return queue_job(L, c, req, frame, flen, ki);
}

/* REVOKE and CRL: to the admin thread (they wait on the ledger). */
static int handle_admin(srv_loop *L, conn *c, const proto_req *req, const uint8_t *frame,
                        size_t flen)
{
    srv *s = L->s;
    if ((req->hdr.op == PROTO_OP_REVOKE && !s->rt.revoke) ||
        (req->hdr.op == PROTO_OP_CRL && !s->rt.crl)) {
        const char *m = req->hdr.op == PROTO_OP_CRL
                            ? "this certforged makes no CRLs (no crl section in its config)"
                            : "this certforged has no ledger to revoke in";
        return answer_error(L, c, req->hdr.op, req->hdr.id, CF_ST_UNSUPPORTED, 0, m)
                   ? FR_CONSUMED
                   : FR_BLOCKED;
    }
    return queue_job(L, c, req, frame, flen, 0);
}

static int handle_frame(srv_loop *L, conn *c, const uint8_t *frame, size_t flen)
{
    srv *s = L->s;
    proto_req req;
    char msg[160];
    proto_err e = proto_req_decode(frame, flen, &req);
    if (e != PROTO_OK) {
        cf_status st = proto_err_status(e);
        bool closes = proto_err_closes(e);
        if (e == PROTO_ERR_UNKNOWN_OP || e == PROTO_ERR_RESERVED_OP)
            snprintf(msg, sizeof(msg), "operation %u (%s) is not supported", req.hdr.op,
                     proto_op_name(req.hdr.op));
        else
            snprintf(msg, sizeof(msg), "malformed request: %s", proto_err_name(e));
        if (!answer_error(L, c, req.hdr.op, req.hdr.id, st, 0, msg))
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
    unsigned need = req.hdr.op == PROTO_OP_ISSUE    ? CFG_GRANT_ISSUE
                    : req.hdr.op == PROTO_OP_STATUS ? CFG_GRANT_STATUS
                    : req.hdr.op == PROTO_OP_SIGN   ? CFG_GRANT_SIGN
                    : req.hdr.op == PROTO_OP_REVOKE ? CFG_GRANT_REVOKE
                    : req.hdr.op == PROTO_OP_CRL    ? CFG_GRANT_CRL
                                                    : CFG_GRANT_KEYS;
    if (!(c->ops & need)) {
        snprintf(msg, sizeof(msg), "uid %u / gid %u may not use %s", c->uid, c->gid,
                 proto_op_name(req.hdr.op));
        if (!answer_error(L, c, req.hdr.op, req.hdr.id, CF_ST_UNAUTHORIZED, 0, msg))
            return FR_BLOCKED;
        log_unauthorized(c, proto_op_name(req.hdr.op), NULL);
        return FR_CONSUMED;
    }
    /* answers backed up: take no new work (and no job) until they are sent */
    if (c->n_ready && (req.hdr.op == PROTO_OP_ISSUE || req.hdr.op == PROTO_OP_SIGN ||
                       req.hdr.op == PROTO_OP_REVOKE || req.hdr.op == PROTO_OP_CRL)) {
        park_remove(L, c); /* waits for output room, not for a job */
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
        return out_put(L, c, PROTO_OP_STATUS, req.hdr.id, CF_ST_OK, enc_status, &a) ? FR_CONSUMED
                                                                                    : FR_BLOCKED;
    }
    default: {
        keys_arg a = {s, req.hdr.id};
        return out_put(L, c, PROTO_OP_KEYS, req.hdr.id, CF_ST_OK, enc_keys, &a) ? FR_CONSUMED
                                                                                : FR_BLOCKED;
    }
    }
}

/* Does the input hold a whole frame (or a framing error) to act on? */
static bool frame_pending(const srv *s, const conn *c)
{
    if (!c->in || c->in_len == c->in_off)
        return false;
    proto_hdr h;
    size_t fl;
    return proto_frame_next(c->in + c->in_off, c->in_len - c->in_off, s->sv.max_frame, &h, &fl) !=
           PROTO_NEED_MORE;
}

/* Consume as many whole frames as the state allows. */
static void pump(srv_loop *L, conn *c)
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
            if (!answer_error(L, c, op, id, st, 0, msg))
                break;
            c->requests++;
            atomic_fetch_add(&s->n_requests, 1);
            cf_log(CF_LOG_WARNING, "bad_frame", "peer_uid=%u peer_pid=%u err=%s len=%llu", c->uid,
                   c->pid, proto_err_name(e), (unsigned long long)h.len);
            c->closing = true;
            break;
        }
        int r = handle_frame(L, c, c->in + c->in_off, flen);
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
    if (!c->closing && c->eof && !frame_pending(s, c) && c->in_len > c->in_off) {
        /* the peer hung up in the middle of a frame: nothing can be answered */
        cf_log(CF_LOG_WARNING, "bad_frame", "peer_uid=%u peer_pid=%u err=truncated len=%zu", c->uid,
               c->pid, c->in_len - c->in_off);
        c->in_off = c->in_len = 0;
        c->closing = true;
    }
    conn_update_recv(L, c);
    start_send(L, c);
}

/* Is the connection finished: nothing to read, answer or send? */
static void maybe_finish(srv_loop *L, conn *c)
{
    if (c->dead || c->send_inflight || c->out_len)
        return;
    if (c->closing) {
        conn_close(L, c, "bad-frame");
        return;
    }
    bool idle = !c->jobs_out && !c->n_ready && !c->parked && !frame_pending(L->s, c);
    if (idle && c->eof)
        conn_close(L, c, "peer-closed");
    else if (idle && L->draining)
        conn_close(L, c, "drain");
}

/* ------------------------------------------------------------ events */

static void arm_accept(srv_loop *L)
{
    if (L->accept_armed || L->draining || atomic_load(&L->s->stopping))
        return;
    struct io_uring_sqe *sqe = get_sqe(L);
    if (!sqe)
        return;
    io_uring_prep_multishot_accept(sqe, L->s->lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud_pack(OP_ACCEPT, 0, 0));
    L->accept_armed = true;
    L->accept_retry = false;
}

static void arm_event(srv_loop *L)
{
    struct io_uring_sqe *sqe = get_sqe(L);
    if (!sqe)
        return;
    io_uring_prep_read(sqe, L->evfd, &L->ev_val, sizeof(L->ev_val), 0);
    io_uring_sqe_set_data64(sqe, ud_pack(OP_EVENT, 0, 0));
}

static void arm_signal(srv_loop *L)
{
    struct io_uring_sqe *sqe = get_sqe(L);
    if (!sqe)
        return;
    io_uring_prep_read(sqe, L->s->signal_fd, &L->sig, sizeof(L->sig), 0);
    io_uring_sqe_set_data64(sqe, ud_pack(OP_SIGNAL, 0, 0));
}

static void arm_timer(srv_loop *L)
{
    struct io_uring_sqe *sqe = get_sqe(L);
    if (!sqe)
        return;
    L->tick_ts.tv_sec = L->s->tick_ms / 1000;
    L->tick_ts.tv_nsec = (long long)(L->s->tick_ms % 1000) * 1000000;
    io_uring_prep_timeout(sqe, &L->tick_ts, 0, 0);
    io_uring_sqe_set_data64(sqe, ud_pack(OP_TIMER, 0, 0));
}

static void accept_one(srv_loop *L, int fd);

static void on_accept(srv_loop *L, struct io_uring_cqe *cqe)
{
    /* the multishot accept ends without F_MORE on errors and also with a
     * valid fd (e.g. when the CQ was full): re-arm unless it was cancelled */
    if (!(cqe->flags & IORING_CQE_F_MORE))
        L->accept_armed = false;
    if (cqe->res >= 0) {
        accept_one(L, cqe->res);
        arm_accept(L); /* no-op while armed, draining or stopping */
        return;
    }
    if (cqe->res != -ECANCELED) {
        cf_log(CF_LOG_ERROR, "accept_failed", "err=\"%s\"", strerror(-cqe->res));
        L->accept_retry = true; /* re-armed by the next tick (EMFILE must not spin) */
    }
}

static void accept_one(srv_loop *L, int fd)
{
    srv *s = L->s;
    struct ucred cr = {0, (uid_t)-1, (gid_t)-1};
    socklen_t cl = sizeof(cr);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) != 0) {
        close(fd);
        return;
    }
    if (L->draining || atomic_load(&s->conns) >= s->sv.max_connections || L->nfree_slots == 0) {
        atomic_fetch_add(&s->n_refused, 1);
        cf_log(CF_LOG_WARNING, "conn_refused",
               "peer_uid=%u peer_gid=%u peer_pid=%d reason=%s max_connections=%u", (unsigned)cr.uid,
               (unsigned)cr.gid, (int)cr.pid, L->draining ? "stopping" : "max-connections",
               s->sv.max_connections);
        /* say why before closing (op 0, id 0: no request was read); the
         * socket is new, its buffer empty: this never blocks */
        uint8_t f[200];
        char m[120];
        snprintf(m, sizeof(m), "%s; retry later",
                 L->draining ? "certforged is stopping" : "too many connections");
        size_t n = proto_enc_error(f, sizeof(f), 0, 0, CF_ST_BUSY, 0, m);
        if (n > 0 && n <= sizeof(f)) {
            ssize_t w = send(fd, f, n, MSG_DONTWAIT | MSG_NOSIGNAL);
            (void)w;
        }
        close(fd);
        return;
    }
    uint8_t *in = malloc(s->sv.max_frame), *out = malloc(SRV_OUT_CAP);
    if (!in || !out) {
        free(in);
        free(out);
        cf_log(CF_LOG_ERROR, "conn_refused", "peer_uid=%u reason=out-of-memory", (unsigned)cr.uid);
        close(fd);
        return;
    }
    uint32_t idx = L->free_slots[--L->nfree_slots];
    conn *c = &L->conns[idx];
    uint32_t gen = c->gen;
    memset(c, 0, sizeof(*c));
    c->gen = gen;
    c->used = true;
    c->fd = fd;
    c->in = in;
    c->out = out;
    c->uid = (uint32_t)cr.uid;
    c->gid = (uint32_t)cr.gid;
    c->pid = (uint32_t)cr.pid;
    c->last_activity = L->now;
    for (size_t g = 0; g < s->cfg->n_grants; g++) {
        const cfg_grant *gr = &s->cfg->grants[g];
        if (!((gr->has_uid && gr->uid == c->uid) || (gr->has_gid && gr->gid == c->gid)))
            continue;
        c->ops |= gr->ops;
        for (size_t k = 0; k < s->cfg->n_profiles; k++) {
            bool in_grant = gr->all_profiles;
            for (size_t m = 0; !in_grant && m < gr->n_profiles; m++)
                in_grant = gr->profile_idx[m] == k;
            if (in_grant)
                c->prof_bits[k / 64] |= 1ull << (k % 64);
        }
        for (size_t m = 0; m < gr->n_keys; m++)
            c->key_bits[gr->key_idx[m] / 64] |= 1ull << (gr->key_idx[m] % 64);
    }
    L->nlive++;
    atomic_fetch_add(&s->conns, 1);
    atomic_fetch_add(&s->n_accepted, 1);
    cf_log(CF_LOG_INFO, "conn_open", "peer_uid=%u peer_gid=%u peer_pid=%u ring=%u%s", c->uid,
           c->gid, c->pid, L->idx, c->ops ? "" : " grants=none");
    conn_update_recv(L, c);
}

static conn *conn_of(srv_loop *L, uint64_t ud)
{
    uint32_t idx = (uint32_t)(ud >> 32) & 0xFFFFFFu, gen = (uint32_t)ud;
    if (idx >= L->nslots)
        return NULL;
    conn *c = &L->conns[idx];
    return c->used && c->gen == gen ? c : NULL;
}

static void on_recv(srv_loop *L, struct io_uring_cqe *cqe)
{
    conn *c = conn_of(L, cqe->user_data);
    if (!c) /* cannot happen: a slot is not reused while its recv is armed */
        return;
    c->recv_armed = false;
    c->cancel_sent = false;
    if (c->dead) {
        maybe_release(L, c);
        return;
    }
    if (cqe->res > 0) {
        c->in_len += (size_t)cqe->res;
        c->last_activity = L->now;
        pump(L, c);
    } else if (cqe->res == 0 || (cqe->res < 0 && cqe->res != -ECANCELED)) {
        c->eof = true; /* EOF, or ECONNRESET and the like: the peer is gone */
        pump(L, c);
    } else {
        conn_update_recv(L, c);
    }
    maybe_finish(L, c);
    maybe_release(L, c);
}

static void on_send(srv_loop *L, struct io_uring_cqe *cqe)
{
    conn *c = conn_of(L, cqe->user_data);
    if (!c)
        return;
    c->send_inflight = false;
    if (c->dead) {
        maybe_release(L, c);
        return;
    }
    if (cqe->res < 0) {
        c->out_len = 0;
        conn_close(L, c,
                   cqe->res == -EPIPE || cqe->res == -ECONNRESET ? "peer-gone" : "send-error");
        return;
    }
    size_t n = (size_t)cqe->res;
    if (n > c->out_len)
        n = c->out_len;
    memmove(c->out, c->out + n, c->out_len - n);
    c->out_len -= n;
    if (n)
        c->last_activity = L->now;
    /* blocked output ends only when the peer made real room: a trickle of
     * reads keeps a reader stalled (closed after idle_timeout_ms) */
    if (c->out_len < SRV_OUT_CAP / 2)
        c->out_blocked_since = 0;
    flush_ready(L, c);
    pump(L, c);
    start_send(L, c);
    maybe_finish(L, c);
}

static void retry_parked(srv_loop *L)
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
        pump(L, c);
        maybe_finish(L, c);
        if (c == stop)
            break;
    }
}

static void begin_drain(srv_loop *L)
{
    if (L->draining)
        return;
    L->draining = true;
    L->drain_deadline = L->now + L->s->sv.drain_timeout_ms;
    if (L->accept_armed && !L->accept_cancel_sent) {
        struct io_uring_sqe *sqe = get_sqe(L);
        if (sqe) {
            io_uring_prep_cancel64(sqe, ud_pack(OP_ACCEPT, 0, 0), 0);
            io_uring_sqe_set_data64(sqe, ud_pack(OP_CANCEL, 0, 0));
            L->accept_cancel_sent = true;
        }
    }
    for (uint32_t i = 0; i < L->nslots; i++) {
        conn *c = &L->conns[i];
        if (!c->used || c->dead)
            continue;
        pump(L, c); /* what was received is still answered; recv is cancelled */
        maybe_finish(L, c);
    }
}

static void on_event(srv_loop *L, struct io_uring_cqe *cqe)
{
    srv *s = L->s;
    arm_event(L);
    srv_job *list = atomic_exchange_explicit(&L->done_head, NULL, memory_order_acquire);
    bool freed = false;
    while (list) {
        srv_job *j = list;
        list = j->next;
        j->next = NULL;
        conn *c = j->conn < L->nslots ? &L->conns[j->conn] : NULL;
        if (!c || !c->used || c->gen != j->gen) { /* cannot happen: slots wait for their jobs */
            job_put(L, j);
            freed = true;
            continue;
        }
        c->jobs_out--;
        if (j->large >= 0) { /* the answer needs nothing of the request frame */
            L->large_free[L->nlarge_free++] = j->large;
            j->large = -1;
        }
        if (c->dead) {
            atomic_fetch_sub(&s->inflight, 1);
            job_put(L, j);
            freed = true;
            maybe_release(L, c);
            continue;
        }
        if (c->ready_tail)
            c->ready_tail->next = j;
        else
            c->ready_head = j;
        c->ready_tail = j;
        c->n_ready++;
        flush_ready(L, c);
        freed = true;
        pump(L, c); /* a frame may have waited for the in-flight count to drop */
        start_send(L, c);
        maybe_finish(L, c);
    }
    if (freed)
        retry_parked(L);
    if (atomic_load(&s->stopping))
        begin_drain(L);
}

static void rate_sample(srv *s, uint64_t now)
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

static void on_timer(srv_loop *L)
{
    srv *s = L->s;
    arm_timer(L);
    if (L->idx == 0)
        rate_sample(s, L->now);
    if (L->accept_retry)
        arm_accept(L);
    /* jobs also come back without a completion on this ring (answers sent
     * or dropped), and the pipeline's queue is shared with the other
     * rings: parked requests are retried on every tick, not only when one
     * of this ring's jobs completes */
    if (L->park_head)
        retry_parked(L);
    for (uint32_t i = 0; i < L->nslots; i++) {
        conn *c = &L->conns[i];
        if (!c->used || c->dead)
            continue;
        if (c->out_blocked_since &&
            L->now - c->out_blocked_since >= s->sv.idle_timeout_ms) {
            conn_close(L, c, "stalled-reader");
            continue;
        }
        if (c->fail_streak >= SRV_PENALTY_AFTER && !c->parked && L->now >= c->penalty_until &&
            frame_pending(s, c)) {
            c->last_activity = L->now; /* waiting on us, not idle */
            pump(L, c);
            maybe_finish(L, c);
            continue;
        }
        if (c->parked && L->now >= c->park_deadline) {
            park_remove(L, c);
            c->parked = true; /* still the same frame: its deadline has passed */
            pump(L, c);
            maybe_finish(L, c);
            continue;
        }
        /* slowloris: a frame must arrive whole within idle_timeout of its
         * first octets, however the bytes trickle in */
        if (c->in_len > c->in_off && !frame_pending(s, c)) {
            if (!c->partial_since)
                c->partial_since = L->now;
            else if (L->now - c->partial_since >= s->sv.idle_timeout_ms &&
                     L->now - c->last_activity < s->sv.idle_timeout_ms) {
                /* (silent peers are the idle check's: err=stalled below) */
                cf_log(CF_LOG_WARNING, "bad_frame",
                       "peer_uid=%u peer_pid=%u err=too-slow len=%zu after_ms=%llu", c->uid, c->pid,
                       c->in_len - c->in_off, (unsigned long long)(L->now - c->partial_since));
                conn_close(L, c, "stalled-mid-frame");
                continue;
            }
        } else {
            c->partial_since = 0;
        }
        /* idle: nothing in the pipeline, no byte in or out for idle_timeout
         * (a frame held back by a penalty is waiting on us) */
        bool penalty_wait = c->fail_streak >= SRV_PENALTY_AFTER && L->now < c->penalty_until;
        if (!c->jobs_out && !c->parked && !penalty_wait &&
            L->now - c->last_activity >= s->sv.idle_timeout_ms) {
            /* whole frames waiting: blocked on answers the peer does not read;
             * bytes but no whole frame: it stalled in the middle of one */
            bool blocked = frame_pending(s, c) || c->n_ready || c->out_len;
            bool mid = !blocked && c->in_len > c->in_off;
            if (mid)
                cf_log(CF_LOG_WARNING, "bad_frame", "peer_uid=%u peer_pid=%u err=stalled len=%zu",
                       c->uid, c->pid, c->in_len - c->in_off);
            conn_close(L, c, blocked ? "stalled-reader" : mid ? "stalled-mid-frame" : "idle");
        }
    }
    if (L->draining && L->now >= L->drain_deadline) {
        for (uint32_t i = 0; i < L->nslots; i++)
            if (L->conns[i].used && !L->conns[i].dead)
                conn_close(L, &L->conns[i], "drain-timeout");
    }
}

static void on_signal(srv_loop *L, struct io_uring_cqe *cqe)
{
    srv *s = L->s;
    if (cqe->res != (int)sizeof(L->sig)) {
        arm_signal(L);
        return;
    }
    const char *name = L->sig.ssi_signo == SIGTERM  ? "TERM"
                       : L->sig.ssi_signo == SIGINT ? "INT"
                                                    : "?";
    if (atomic_exchange(&s->stopping, true)) {
        cf_log(CF_LOG_INFO, "signal", "sig=%s already=stopping", name);
    } else {
        cf_log(CF_LOG_INFO, "signal", "sig=%s action=drain inflight=%lu drain_timeout_ms=%u", name,
               (unsigned long)atomic_load(&s->inflight), s->sv.drain_timeout_ms);
        /* stop accepting: new connects fail at once; the fd is closed at exit */
        if (s->bound) {
            struct stat st;
            if (lstat(s->path, &st) == 0 && st.st_ino == s->sock_ino && st.st_dev == s->sock_dev)
                unlink(s->path);
            s->bound = false;
        }
        for (unsigned i = 1; i < s->nloops; i++) {
            uint64_t one = 1;
            ssize_t w = write(s->loops[i].evfd, &one, sizeof(one));
            (void)w;
        }
        begin_drain(L);
    }
    arm_signal(L);
}

static bool loop_finished(srv_loop *L)
{
    if (!L->draining || L->accept_armed)
        return false;
    for (uint32_t i = 0; i < L->nslots; i++) {
        const conn *c = &L->conns[i];
        if (!c->used)
            continue;
        /* after the drain deadline, only ring operations still matter */
        if (L->now < L->drain_deadline || !c->dead || c->recv_armed || c->send_inflight)
            return false;
    }
    return true;
}

/* ------------------------------------------------------------ ring set-up */

static int loop_ring_init(srv_loop *L)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    p.cq_entries = SRV_CQ_ENTRIES;
    int r = io_uring_queue_init_params(SRV_SQ_ENTRIES, &L->ring, &p);
    if (r == -EINVAL) {
        cf_log(CF_LOG_WARNING, "ring_fallback",
               "ring=%u reason=\"SINGLE_ISSUER|DEFER_TASKRUN refused by the kernel\"", L->idx);
        memset(&p, 0, sizeof(p));
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = SRV_CQ_ENTRIES;
        r = io_uring_queue_init_params(SRV_SQ_ENTRIES, &L->ring, &p);
    }
    if (r < 0) {
        snprintf(L->err, sizeof(L->err), "io_uring_queue_init: %s", strerror(-r));
        return -1;
    }
    L->ring_ok = true;
    return 0;
}

static int loop_run(srv_loop *L)
{
    srv *s = L->s;
    L->now = now_ms();
    arm_event(L);
    arm_timer(L);
    arm_accept(L);
    if (L->idx == 0 && s->signal_fd >= 0)
        arm_signal(L);
    while (!L->done) {
        int r = io_uring_submit_and_wait(&L->ring, 1);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
            snprintf(L->err, sizeof(L->err), "io_uring_submit_and_wait: %s", strerror(-r));
            return -1;
        }
        L->now = now_ms();
        unsigned head, n = 0;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(&L->ring, head, cqe)
        {
            n++;
            switch ((unsigned)(cqe->user_data >> 56)) {
            case OP_ACCEPT:
                on_accept(L, cqe);
                break;
            case OP_RECV:
                on_recv(L, cqe);
                break;
            case OP_SEND:
                on_send(L, cqe);
                break;
            case OP_EVENT:
                on_event(L, cqe);
                break;
            case OP_TIMER:
                on_timer(L);
                break;
            case OP_SIGNAL:
                on_signal(L, cqe);
                break;
            default: /* OP_CANCEL */
                break;
            }
        }
        io_uring_cq_advance(&L->ring, n);
        if (L->fatal)
            return -1; /* L->err; the caller stops the daemon */
        if (atomic_load(&s->stopping) && !L->draining)
            begin_drain(L);
        if (L->draining) {
            for (uint32_t i = 0; i < L->nslots; i++)
                if (L->conns[i].used)
                    maybe_finish(L, &L->conns[i]);
            L->done = loop_finished(L);
        }
    }
    return 0;
}

static void *loop_thread(void *arg)
{
    srv_loop *L = arg;
    char name[16]; /* top -H, ps -L, perf: which thread is which */
    snprintf(name, sizeof(name), "cf-ring/%u", L->idx);
    if (getpid() != (pid_t)syscall(SYS_gettid))   /* ring 0 is the main thread: */
        pthread_setname_np(pthread_self(), name); /* it keeps "certforged" for pgrep */
    L->rc = loop_ring_init(L) == 0 ? loop_run(L) : -1;
    if (L->rc != 0) {
        cf_log(CF_LOG_ERROR, "ring_failed", "ring=%u err=\"%s\"", L->idx, L->err);
        /* one ring down stops the whole daemon */
        atomic_store(&L->s->stopping, true);
        for (unsigned i = 0; i < L->s->nloops; i++) {
            uint64_t one = 1;
            ssize_t w = write(L->s->loops[i].evfd, &one, sizeof(one));
            (void)w;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------ public */

void srv_pipe_done(pipe_job *pj, void *arg)
{
    (void)arg;
    srv_job *j = pj->user;
    srv_loop *L = j->loop;
    srv_job *old = atomic_load_explicit(&L->done_head, memory_order_relaxed);
    do {
        j->next = old;
    } while (!atomic_compare_exchange_weak_explicit(&L->done_head, &old, j, memory_order_release,
                                                    memory_order_relaxed));
    if (!old) { /* the ring is told once per batch it has not yet taken */
        uint64_t one = 1;
        ssize_t w = write(L->evfd, &one, sizeof(one));
        (void)w;
    }
}

/* ------------------------------------------------------------ admin thread */

static void adm_push(srv *s, srv_job *j)
{
    pthread_mutex_lock(&s->adm_mu);
    j->next = NULL;
    if (s->adm_tail)
        s->adm_tail->next = j;
    else
        s->adm_head = j;
    s->adm_tail = j;
    pthread_cond_signal(&s->adm_cv);
    pthread_mutex_unlock(&s->adm_mu);
}

static void adm_run(srv *s, srv_job *j)
{
    pipe_job *pj = &j->pj;
    pj->status = CF_ST_OK;
    pj->msg[0] = 0;
    if (j->op == PROTO_OP_REVOKE) {
        pj->status = s->rt.revoke(s->rt.admin_arg, &j->areq.revoke, j->peer_uid, &j->revoked_at,
                                  &j->reason, pj->msg, sizeof(pj->msg));
        return;
    }
    uint8_t *der = NULL;
    size_t len = 0;
    pj->status = s->rt.crl(s->rt.admin_arg, j->areq.crl.issuer, j->areq.crl.fresh, &der, &len,
                           pj->msg, sizeof(pj->msg));
    if (pj->status != CF_ST_OK) {
        free(der);
        return;
    }
    /* the answer must fit in one frame (and the output buffer) */
    if (len + 64 > SRV_OUT_CAP || len + 64 > s->sv.max_frame) {
        snprintf(pj->msg, sizeof(pj->msg),
                 "the CRL (%zu octets) is larger than a frame: fetch it from the publish "
                 "folder (crl.dir)",
                 len);
        pj->status = CF_ST_POLICY_DENIED;
        free(der);
        return;
    }
    j->crl = der;
    j->crl_len = len;
}

static void *adm_main(void *arg)
{
    srv *s = arg;
    pthread_setname_np(pthread_self(), "cf-admin");
    for (;;) {
        pthread_mutex_lock(&s->adm_mu);
        while (!s->adm_head && !s->adm_stop)
            pthread_cond_wait(&s->adm_cv, &s->adm_mu);
        srv_job *j = s->adm_head;
        if (j) {
            s->adm_head = j->next;
            if (!s->adm_head)
                s->adm_tail = NULL;
        }
        pthread_mutex_unlock(&s->adm_mu);
        if (!j)
            break; /* stopping and nothing queued */
        adm_run(s, j);
        srv_pipe_done(&j->pj, s);
    }
    return NULL;
}

/* Refuse a live daemon's socket; replace a stale one. */
static int check_socket_path(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "server.socket: %s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "server.socket: %s exists and is not a socket", path);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path));
    int r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    int e = errno;
    close(fd);
    if (r == 0 || e == EAGAIN) { /* EAGAIN: a live listener with a full backlog */
        snprintf(err, errlen, "server.socket: socket %s is in use by a live certforged", path);
        return -1;
    }
    if (e != ECONNREFUSED) {
        snprintf(err, errlen, "server.socket: cannot check %s: %s", path, strerror(e));
        return -1;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        snprintf(err, errlen, "server.socket: cannot remove the stale socket %s: %s", path,
                 strerror(errno));
        return -1;
    }
    cf_log(CF_LOG_INFO, "stale_socket", "socket=%s action=replaced", path);
    return 0;
}

/* SOCKET.lock, flock()ed for the daemon's life: of two daemons started at
 * the same instant on one socket path, one gets the lock, the other is
 * refused before it checks or replaces the socket (a connect() probe alone
 * lets both see "stale" and both bind). The lock file is left in place:
 * removing it would reopen the race. */
static int take_lock(srv *s, char *err, size_t errlen)
{
    char lp[CFG_SOCKET_PATH_MAX + 8];
    snprintf(lp, sizeof(lp), "%s.lock", s->path);
    s->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (s->lock_fd < 0) {
        snprintf(err, errlen, "server.socket: cannot open the lock file %s: %s", lp,
                 strerror(errno));
        return -1;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(s->lock_fd);
        s->lock_fd = -1;
        if (e == EWOULDBLOCK)
            snprintf(err, errlen, "server.socket: socket %s is in use by a live certforged "
                                  "(it holds %s)",
                     s->path, lp);
        else
            snprintf(err, errlen, "server.socket: cannot lock %s: %s", lp, strerror(e));
        return -1;
    }
    return 0;
}

static int make_parent(const char *path, char *err, size_t errlen)
{
    char dir[CFG_SOCKET_PATH_MAX + 1];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = 0;
    if (mkdir(dir, 0750) == 0) {
        cf_log(CF_LOG_INFO, "mkdir", "path=%s mode=0750", dir);
        return 0;
    }
    if (errno == EEXIST)
        return 0;
    snprintf(err, errlen, "server.socket: cannot create the folder %s: %s", dir, strerror(errno));
    return -1;
}

static void loops_free(srv *s)
{
    for (unsigned i = 0; s->loops && i < s->nloops; i++) {
        srv_loop *L = &s->loops[i];
        if (L->ring_ok)
            io_uring_queue_exit(&L->ring);
        for (uint32_t k = 0; L->conns && k < L->nslots; k++) {
            conn *c = &L->conns[k];
            if (c->used)
                close(c->fd);
            free(c->in);
            free(c->out);
        }
        if (L->evfd >= 0)
            close(L->evfd);
        for (size_t k = 0; L->jobs && k < L->njobs - L->nunused; k++)
            free(L->jobs[k].crl); /* CRL answers completed after the rings stopped */
        free(L->jobs);
        free(L->large);
        free(L->conns);
        free(L->free_slots);
    }
    free(s->loops);
    s->loops = NULL;
}

int srv_new(const srv_opts *o, srv **out, char *err, size_t errlen)
{
    *out = NULL;
    const cfg_config *cfg = o->cfg;
    srv *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->cfg = cfg;
    s->sv = cfg->server;
    s->signal_fd = o->signal_fd;
    s->lfd = -1;
    s->lock_fd = -1;
    pthread_mutex_init(&s->rate_mu, NULL);
    pthread_mutex_init(&s->adm_mu, NULL);
    pthread_cond_init(&s->adm_cv, NULL);
    snprintf(s->path, sizeof(s->path), "%s", cfg->server.socket);
    unsigned t = s->sv.busy_deadline_ms / 2;
    s->tick_ms = t < 10 ? 10 : t > 100 ? 100 : t;
    s->large_size = s->sv.max_frame;
    s->nloops = s->sv.io_threads;

    /* job pool: what the pipeline can hold (queue + a batch per worker,
     * two when a key has signing threads: one being signed while the
     * worker builds the next), at most what the connections may have in
     * flight. No more: a pool larger than that could fill the queue, and
     * a request would be answered BUSY while its peers' answers back up. */
    unsigned held = 1;
    for (size_t i = 0; i < cfg->n_keys; i++)
        if (cfg->keys[i].sign_threads > 0)
            held = 2;
    uint64_t pool = (uint64_t)cfg->pipeline.queue +
                    (uint64_t)held * cfg->pipeline.workers * cfg->pipeline.batch;
    uint64_t conn_max = (uint64_t)s->sv.max_connections * s->sv.max_inflight;
    if (pool > conn_max)
        pool = conn_max;
    size_t per_loop = (size_t)((pool + s->nloops - 1) / s->nloops);
    if (per_loop == 0)
        per_loop = 1;
    /* slots: max_connections, plus room for closed connections whose jobs
     * are still in the pipeline */
    uint32_t nslots = s->sv.max_connections + s->sv.max_connections / 4 + 4;

    s->loops = calloc(s->nloops, sizeof(*s->loops));
    if (!s->loops)
        goto oom;
    for (unsigned i = 0; i < s->nloops; i++) {
        srv_loop *L = &s->loops[i];
        L->s = s;
        L->idx = i;
        L->evfd = eventfd(0, EFD_CLOEXEC);
        L->njobs = per_loop;
        L->share = per_loop / 8 > 8 ? per_loop / 8 : 8;
        if (L->share > s->sv.max_inflight)
            L->share = s->sv.max_inflight;
        L->reserve = per_loop / 16;
        L->jobs = calloc(per_loop, sizeof(srv_job));
        L->nslots = nslots;
        L->conns = calloc(nslots, sizeof(conn));
        L->free_slots = calloc(nslots, sizeof(uint32_t));
        if (s->sv.max_frame > SRV_JOB_FRAME) {
            L->nlarge = per_loop < SRV_MAX_LARGE ? (int)per_loop : SRV_MAX_LARGE;
            L->large = malloc((size_t)L->nlarge * s->large_size);
            if (!L->large)
                goto oom;
            for (int k = 0; k < L->nlarge; k++)
                L->large_free[L->nlarge_free++] = k;
        }
        if (L->evfd < 0 || !L->jobs || !L->conns || !L->free_slots)
            goto oom;
        L->nunused = per_loop; /* handed out on first use: calloc'd pages stay untouched */
        for (uint32_t k = nslots; k-- > 0;) {
            L->conns[k].fd = -1;
            L->free_slots[L->nfree_slots++] = k;
        }
        atomic_init(&L->done_head, NULL);
    }

    if (make_parent(s->path, err, errlen) || take_lock(s, err, errlen) ||
        check_socket_path(s->path, err, errlen))
        goto fail;
    s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->lfd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        goto fail;
    }
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, s->path, strlen(s->path));
    /* the socket file is created with the configured mode, never wider */
    mode_t old = umask(0777 & ~s->sv.socket_mode);
    int r = bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa));
    int e = errno;
    umask(old);
    if (r != 0) {
        snprintf(err, errlen, "server.socket: cannot bind %s: %s", s->path, strerror(e));
        goto fail;
    }
    s->bound = true;
    struct stat st;
    if (chmod(s->path, s->sv.socket_mode) != 0 || stat(s->path, &st) != 0) {
        snprintf(err, errlen, "server.socket_mode: chmod %s: %s", s->path, strerror(errno));
        goto fail;
    }
    s->sock_dev = st.st_dev;
    s->sock_ino = st.st_ino;
    if (listen(s->lfd, SOMAXCONN) != 0) {
        snprintf(err, errlen, "server.socket: listen on %s: %s", s->path, strerror(errno));
        goto fail;
    }
    *out = s;
    return 0;
oom:
    snprintf(err, errlen, "out of memory allocating the server's pools");
fail:
    srv_free(s);
    return -1;
}

/* What the answers carry, from the engine's issuer objects: each issuer's
 * chain, and every key's name, type and public half (KEYS). */
static int load_answers(srv *s, char *err, size_t errlen)
{
    const iss_set *iss = cf_engine_issuers(s->rt.eng);
    s->chains = calloc(iss_nissuers(iss) ? iss_nissuers(iss) : 1, sizeof(*s->chains));
    if (!s->chains) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < iss_nissuers(iss); i++) {
        const iss_issuer *is = iss_issuer_at(iss, i);
        srv_chain *ch = &s->chains[i];
        for (unsigned k = 0; k < is->n_chain && ch->n < PROTO_MAX_CHAIN; k++)
            ch->certs[ch->n++] = (proto_blob){is->chain[k].p, is->chain[k].len};
    }
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

int srv_run(srv *s, const srv_runtime *rt, char *err, size_t errlen)
{
    s->rt = *rt;
    s->pipe = cf_engine_pipe(rt->eng);
    if (load_answers(s, err, errlen) != 0)
        return -1;
    s->start_ms = now_ms();
    rate_sample(s, s->start_ms);
    if (pthread_create(&s->adm_th, NULL, adm_main, s) != 0) {
        snprintf(err, errlen, "cannot start the admin thread");
        return -1;
    }
    s->adm_started = true;
    /* ring 0 runs on this thread (it reads the signalfd); the others on
     * their own. Each thread creates its own ring (SINGLE_ISSUER). */
    srv_loop *L0 = &s->loops[0];
    int rc = loop_ring_init(L0);
    if (rc != 0) {
        snprintf(err, errlen, "%s", L0->err);
        return -1;
    }
    for (unsigned i = 1; i < s->nloops; i++) {
        if (pthread_create(&s->loops[i].th, NULL, loop_thread, &s->loops[i]) != 0) {
            snprintf(err, errlen, "cannot start I/O thread %u", i);
            atomic_store(&s->stopping, true);
            rc = -1;
            break;
        }
        s->loops[i].th_started = true;
    }
    if (rc == 0) {
        cf_log(CF_LOG_INFO, "ready",
               "socket=%s io_threads=%u max_connections=%u max_inflight=%u max_frame=%u "
               "jobs=%zu grants=%zu",
               s->path, s->nloops, s->sv.max_connections, s->sv.max_inflight, s->sv.max_frame,
               L0->njobs * s->nloops, s->cfg->n_grants);
        if (s->rt.on_ready)
            s->rt.on_ready(s->rt.ready_arg, s->path);
        rc = loop_run(L0);
        if (rc != 0) {
            snprintf(err, errlen, "%s", L0->err);
            atomic_store(&s->stopping, true);
        }
    }
    for (unsigned i = 1; i < s->nloops; i++) {
        if (!s->loops[i].th_started)
            continue;
        uint64_t one = 1;
        ssize_t w = write(s->loops[i].evfd, &one, sizeof(one));
        (void)w;
        pthread_join(s->loops[i].th, NULL);
        if (s->loops[i].rc != 0 && rc == 0) {
            snprintf(err, errlen, "%s", s->loops[i].err);
            rc = -1;
        }
    }
    /* what is still queued completes into the pool (like the pipeline's) */
    pthread_mutex_lock(&s->adm_mu);
    s->adm_stop = true;
    pthread_cond_signal(&s->adm_cv);
    pthread_mutex_unlock(&s->adm_mu);
    pthread_join(s->adm_th, NULL);
    s->adm_started = false;
    return rc;
}

void srv_get_summary(srv *s, srv_summary *o)
{
    memset(o, 0, sizeof(*o));
    o->connections = atomic_load(&s->n_accepted);
    o->requests = atomic_load(&s->n_requests);
    o->answered = atomic_load(&s->n_answered);
    o->unanswered = atomic_load(&s->n_unanswered);
    o->refused = atomic_load(&s->n_refused);
    for (int i = 0; i < CF_ST__MAX; i++)
        o->by_status[i] = atomic_load(&s->by_status[i]);
}

void srv_free(srv *s)
{
    if (!s)
        return;
    if (s->bound) {
        struct stat st;
        if (lstat(s->path, &st) == 0 && st.st_ino == s->sock_ino && st.st_dev == s->sock_dev)
            unlink(s->path);
    }
    if (s->lfd >= 0)
        close(s->lfd);
    if (s->lock_fd >= 0)
        close(s->lock_fd); /* after the unlink: the next daemon may start */
    loops_free(s);
    free(s->chains);
    pthread_mutex_destroy(&s->rate_mu);
    pthread_mutex_destroy(&s->adm_mu);
    pthread_cond_destroy(&s->adm_cv);
    free(s);
}
