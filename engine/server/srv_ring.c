/* srv_ring.c — the io_uring loops: accept, recv, send, completions, timers, signals, drain; a
 * connection's life (server_internal.h). */
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

uint64_t srv_now_ms(void)
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
struct io_uring_sqe *srv_get_sqe(srv_loop *L)
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

void srv_maybe_release(srv_loop *L, conn *c)
{
    if (!c->used || !c->dead || c->recv_armed || c->send_inflight || c->jobs_out)
        return;
    close(c->fd);
    free(c->in);
    free(c->out);
    c->in = c->out = NULL;
    c->used = false;
    c->gen++;
    srv_peer_unref(L->s, c->peer);
    c->peer = NULL;
    L->free_slots[L->nfree_slots++] = (uint32_t)(c - L->conns);
    L->nlive--;
}

static void drop_ready(srv_loop *L, conn *c)
{
    srv *s = L->s;
    while (c->ready_head) {
        srv_job *j = c->ready_head;
        c->ready_head = j->next;
        srv_job_put(L, j);
        c->n_ready--;
        atomic_fetch_sub(&s->inflight, 1);
        if (c->peer)
            atomic_fetch_sub(&c->peer->inflight, 1);
        atomic_fetch_add(&s->n_unanswered, 1);
    }
    c->ready_tail = NULL;
}

void srv_conn_close(srv_loop *L, conn *c, const char *reason)
{
    srv *s = L->s;
    if (c->dead)
        return;
    c->dead = true;
    shutdown(c->fd, SHUT_RDWR);
    if (c->recv_armed && !c->cancel_sent) {
        struct io_uring_sqe *sqe = srv_get_sqe(L);
        if (sqe) { /* NULL: the ring is failing; the shutdown ends the recv */
            io_uring_prep_cancel64(sqe, ud_pack(OP_RECV, (uint32_t)(c - L->conns), c->gen), 0);
            io_uring_sqe_set_data64(sqe, ud_pack(OP_CANCEL, 0, 0));
            c->cancel_sent = true;
        }
    }
    srv_park_remove(L, c);
    uint64_t dropped = c->n_ready + c->jobs_out;
    drop_ready(L, c);
    atomic_fetch_add(&s->n_unanswered, c->jobs_out); /* answered into the void later */
    atomic_fetch_sub(&s->conns, 1);
    srv_peer_closed(s, c->peer);
    srv_log_conn_close(c, reason, dropped);
    srv_maybe_release(L, c);
}

void srv_start_send(srv_loop *L, conn *c)
{
    if (c->dead || c->send_inflight || c->out_len == 0)
        return;
    struct io_uring_sqe *sqe = srv_get_sqe(L);
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

/* Read while the input buffer has room and the connection is not blocked
 * (a whole frame waiting: output full or parked; answers waiting for
 * output room). A recv already in flight is left to complete: it can only
 * fill this connection's own buffer. Stopping for good (close, drain,
 * peer EOF) cancels it. */
void srv_conn_update_recv(srv_loop *L, conn *c)
{
    if (c->dead)
        return;
    if (!may_read(L, c)) {
        if (c->recv_armed && !c->cancel_sent) {
            struct io_uring_sqe *sqe = srv_get_sqe(L);
            if (!sqe)
                return;
            io_uring_prep_cancel64(sqe, ud_pack(OP_RECV, (uint32_t)(c - L->conns), c->gen), 0);
            io_uring_sqe_set_data64(sqe, ud_pack(OP_CANCEL, 0, 0));
            c->cancel_sent = true;
        }
        return;
    }
    if (c->recv_armed || c->n_ready || c->parked || srv_frame_pending(L->s, c))
        return;
    if (c->in_off > 0) { /* no recv in flight: the data may move */
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    size_t cap = L->s->sv.max_frame;
    if (c->in_len >= cap)
        return;
    struct io_uring_sqe *sqe = srv_get_sqe(L);
    if (!sqe)
        return;
    io_uring_prep_recv(sqe, c->fd, c->in + c->in_len, cap - c->in_len, 0);
    io_uring_sqe_set_data64(sqe, ud_pack(OP_RECV, (uint32_t)(c - L->conns), c->gen));
    c->recv_armed = true;
    c->cancel_sent = false;
}

/* Is the connection finished: nothing to read, answer or send? */
void srv_maybe_finish(srv_loop *L, conn *c)
{
    if (c->dead || c->send_inflight || c->out_len)
        return;
    if (c->closing) {
        srv_conn_close(L, c, "bad-frame");
        return;
    }
    bool idle = !c->jobs_out && !c->n_ready && !c->parked && !srv_frame_pending(L->s, c);
    if (idle && c->eof)
        srv_conn_close(L, c, "peer-closed");
    else if (idle && L->draining)
        srv_conn_close(L, c, "drain");
}

/* ------------------------------------------------------------ events */

static void arm_accept(srv_loop *L)
{
    if (L->accept_armed || L->draining || atomic_load(&L->s->stopping))
        return;
    struct io_uring_sqe *sqe = srv_get_sqe(L);
    if (!sqe)
        return;
    io_uring_prep_multishot_accept(sqe, L->s->lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud_pack(OP_ACCEPT, 0, 0));
    L->accept_armed = true;
    L->accept_retry = false;
}

static void arm_event(srv_loop *L)
{
    struct io_uring_sqe *sqe = srv_get_sqe(L);
    if (!sqe)
        return;
    io_uring_prep_read(sqe, L->evfd, &L->ev_val, sizeof(L->ev_val), 0);
    io_uring_sqe_set_data64(sqe, ud_pack(OP_EVENT, 0, 0));
}

static void arm_signal(srv_loop *L)
{
    struct io_uring_sqe *sqe = srv_get_sqe(L);
    if (!sqe)
        return;
    io_uring_prep_read(sqe, L->s->signal_fd, &L->sig, sizeof(L->sig), 0);
    io_uring_sqe_set_data64(sqe, ud_pack(OP_SIGNAL, 0, 0));
}

static void arm_timer(srv_loop *L)
{
    struct io_uring_sqe *sqe = srv_get_sqe(L);
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
    /* Fair share per peer (docs/certforged.md): a uid holds at most
     * peer_max_connections; when the server is full, a uid holding none
     * takes one of peer_reserve slots beyond max_connections, and one under
     * its fair share has the oldest idle connection of the uid most over
     * its share closed for it. */
    srv_peer *p = L->draining ? NULL : srv_peer_ref(s, (uint32_t)cr.uid);
    const char *why = L->draining ? "stopping" : !p ? "max-connections" : NULL;
    unsigned total = atomic_load(&s->conns), held = p ? atomic_load(&p->conns) : 0;
    if (!why && held >= s->sv.peer_max_connections)
        why = "peer-max-connections";
    if (!why && total >= s->sv.max_connections &&
        !(held == 0 && total < s->sv.max_connections + s->sv.peer_reserve) &&
        !srv_fair_share_evict(L, p))
        why = "max-connections";
    if (!why && L->nfree_slots == 0)
        why = "max-connections";
    if (why) {
        srv_peer_unref(s, p);
        atomic_fetch_add(&s->n_refused, 1);
        srv_log_conn_refused(s, (uint32_t)cr.uid, (uint32_t)cr.gid, (int)cr.pid, why);
        /* say why before closing (op 0, id 0: no request was read); the
         * socket is new, its buffer empty: this never blocks */
        uint8_t f[200];
        char m[120];
        if (why[0] == 'p')
            snprintf(m, sizeof(m),
                     "too many connections from uid %u (server.peer_max_connections); retry "
                     "later",
                     (unsigned)cr.uid);
        else
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
        srv_peer_unref(s, p);
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
    c->peer = p;
    srv_peer_opened(s, p);
    srv_gen_refresh(L);
    srv_conn_grants(L, c);
    L->nlive++;
    atomic_fetch_add(&s->conns, 1);
    atomic_fetch_add(&s->n_accepted, 1);
    srv_log_conn_open(L, c);
    srv_conn_update_recv(L, c);
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
        srv_maybe_release(L, c);
        return;
    }
    if (cqe->res > 0) {
        c->in_len += (size_t)cqe->res;
        c->last_activity = L->now;
        srv_pump(L, c);
    } else if (cqe->res == 0 || (cqe->res < 0 && cqe->res != -ECANCELED)) {
        c->eof = true; /* EOF, or ECONNRESET and the like: the peer is gone */
        srv_pump(L, c);
    } else {
        srv_conn_update_recv(L, c);
    }
    srv_maybe_finish(L, c);
    srv_maybe_release(L, c);
}

static void on_send(srv_loop *L, struct io_uring_cqe *cqe)
{
    conn *c = conn_of(L, cqe->user_data);
    if (!c)
        return;
    c->send_inflight = false;
    if (c->dead) {
        srv_maybe_release(L, c);
        return;
    }
    if (cqe->res < 0) {
        c->out_len = 0;
        srv_conn_close(L, c,
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
    srv_flush_ready(L, c);
    srv_pump(L, c);
    srv_start_send(L, c);
    srv_maybe_finish(L, c);
}

static void begin_drain(srv_loop *L)
{
    if (L->draining)
        return;
    L->draining = true;
    L->drain_deadline = L->now + L->s->sv.drain_timeout_ms;
    if (L->accept_armed && !L->accept_cancel_sent) {
        struct io_uring_sqe *sqe = srv_get_sqe(L);
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
        srv_pump(L, c); /* what was received is still answered; recv is cancelled */
        srv_maybe_finish(L, c);
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
            srv_job_put(L, j);
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
            if (c->peer)
                atomic_fetch_sub(&c->peer->inflight, 1);
            srv_job_put(L, j);
            freed = true;
            srv_maybe_release(L, c);
            continue;
        }
        if (c->ready_tail)
            c->ready_tail->next = j;
        else
            c->ready_head = j;
        c->ready_tail = j;
        c->n_ready++;
        srv_flush_ready(L, c);
        freed = true;
        srv_pump(L, c); /* a frame may have waited for the in-flight count to drop */
        srv_start_send(L, c);
        srv_maybe_finish(L, c);
    }
    if (freed)
        srv_retry_parked(L);
    if (atomic_load(&s->stopping))
        begin_drain(L);
}

static void on_timer(srv_loop *L)
{
    srv *s = L->s;
    arm_timer(L);
    /* an idle ring lets go of a reloaded-away config generation too */
    srv_gen_refresh(L);
    if (L->idx == 0)
        srv_rate_sample(s, L->now);
    if (L->accept_retry)
        arm_accept(L);
    /* jobs also come back without a completion on this ring (answers sent
     * or dropped), and the pipeline's queue is shared with the other
     * rings: parked requests are retried on every tick, not only when one
     * of this ring's jobs completes */
    if (L->park_head)
        srv_retry_parked(L);
    for (uint32_t i = 0; i < L->nslots; i++) {
        conn *c = &L->conns[i];
        if (!c->used || c->dead)
            continue;
        if (c->out_blocked_since && L->now - c->out_blocked_since >= s->sv.idle_timeout_ms) {
            srv_conn_close(L, c, "stalled-reader");
            continue;
        }
        if (c->fail_streak >= SRV_PENALTY_AFTER && !c->parked && L->now >= c->penalty_until &&
            srv_frame_pending(s, c)) {
            c->last_activity = L->now; /* waiting on us, not idle */
            srv_pump(L, c);
            srv_maybe_finish(L, c);
            continue;
        }
        if (c->parked && L->now >= c->park_deadline) {
            srv_park_remove(L, c);
            c->parked = true; /* still the same frame: its deadline has passed */
            srv_pump(L, c);
            srv_maybe_finish(L, c);
            continue;
        }
        /* slowloris: a frame must arrive whole within idle_timeout of its
         * first octets, however the bytes trickle in */
        if (c->in_len > c->in_off && !srv_frame_pending(s, c)) {
            if (!c->partial_since)
                c->partial_since = L->now;
            else if (L->now - c->partial_since >= s->sv.idle_timeout_ms &&
                     L->now - c->last_activity < s->sv.idle_timeout_ms) {
                /* (silent peers are the idle check's: err=stalled below) */
                cf_log(CF_LOG_WARNING, "bad_frame",
                       "peer_uid=%u peer_pid=%u err=too-slow len=%zu after_ms=%llu", c->uid, c->pid,
                       c->in_len - c->in_off, (unsigned long long)(L->now - c->partial_since));
                srv_conn_close(L, c, "stalled-mid-frame");
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
            bool blocked = srv_frame_pending(s, c) || c->n_ready || c->out_len;
            bool mid = !blocked && c->in_len > c->in_off;
            if (mid)
                cf_log(CF_LOG_WARNING, "bad_frame", "peer_uid=%u peer_pid=%u err=stalled len=%zu",
                       c->uid, c->pid, c->in_len - c->in_off);
            srv_conn_close(L, c, blocked ? "stalled-reader" : mid ? "stalled-mid-frame" : "idle");
        }
    }
    if (L->draining && L->now >= L->drain_deadline) {
        for (uint32_t i = 0; i < L->nslots; i++)
            if (L->conns[i].used && !L->conns[i].dead)
                srv_conn_close(L, &L->conns[i], "drain-timeout");
    }
}

static void on_signal(srv_loop *L, struct io_uring_cqe *cqe)
{
    srv *s = L->s;
    if (cqe->res != (int)sizeof(L->sig)) {
        arm_signal(L);
        return;
    }
    if (L->sig.ssi_signo == SIGHUP) {
        /* reload (certforged.c): the new generation reaches each ring at its
         * next frame or accept; nothing here waits for in-flight work */
        if (s->rt.reload && !atomic_load(&s->stopping)) {
            cf_log(CF_LOG_INFO, "signal", "sig=HUP action=reload");
            s->rt.reload(s->rt.admin_arg);
        } else {
            cf_log(CF_LOG_INFO, "signal", "sig=HUP action=none");
        }
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
    L->now = srv_now_ms();
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
        L->now = srv_now_ms();
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
                    srv_maybe_finish(L, &L->conns[i]);
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

int srv_run(srv *s, const srv_runtime *rt, char *err, size_t errlen)
{
    s->rt = *rt;
    s->pipe = cf_engine_pipe(rt->eng);
    for (unsigned i = 0; i < s->nloops; i++) /* dropped in srv_free */
        s->loops[i].cgen = cf_engine_gen_get(rt->eng);
    if (srv_load_answers(s, err, errlen) != 0)
        return -1;
    s->start_ms = srv_now_ms();
    srv_rate_sample(s, s->start_ms);
    if (srv_admin_start(s) != 0) {
        snprintf(err, errlen, "cannot start the admin thread");
        return -1;
    }
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
    srv_admin_stop(s);
    return rc;
}
