/* server_internal.h — what the server's files share (server.h is the
 * surface): the connection, job, ring and server structures, the limits,
 * and the functions one file calls in another. One job per file:
 *
 *   srv_listen.c    the listening socket, the pools: srv_new, srv_free
 *   srv_ring.c      the io_uring loops and a connection's life: srv_run
 *   srv_dispatch.c  frames to jobs: decoding, grants, backpressure
 *   srv_answer.c    encoding answers, STATUS and KEYS
 *   srv_admin.c     the admin thread (REVOKE, CRL)
 *   srv_log.c       what is logged about peers and requests
 *
 * The design (docs/certforged.md has the operator's view):
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
 * without a deadline, for one of its own jobs to complete. Per uid (the
 * peer, srv_peer): at most peer_inflight requests in flight over all its
 * connections (BUSY beyond), at most peer_max_connections connections; a
 * uid holding none may take one of peer_reserve slots beyond
 * max_connections, and one under its fair share has the oldest idle
 * connection of the uid most over its share (same ring) closed for it. A client that
 * does not read its answers fills its output buffer; then its completed
 * jobs wait (still counted in flight), it takes no new job and its frames
 * are not consumed; once its output has stayed blocked for
 * idle_timeout_ms (a trickle of reads does not count) it is closed as a
 * stalled reader.
 *
 * Reload (SIGHUP): grants and profiles come from a config generation
 * (engine.h). Each ring holds a reference on one (L->cgen) and, before
 * each frame and each accept and at each tick, compares its number with
 * the engine's current one (an atomic load); when it changed, it takes the
 * new one and drops the old (so an idle ring keeps no old generation
 * alive beyond a tick). A connection's grants are recomputed when their
 * generation is not the ring's, so a reload reaches open connections at
 * their next frame. An ISSUE job holds a reference on the generation its
 * profile was resolved in until it is put back in the pool.
 *
 * Completion hand-off: the pipeline calls srv_pipe_done() on its recorder
 * thread (a worker's for failed jobs, and without a ledger; the admin
 * thread for REVOKE and CRL); it pushes the job on its ring's lock-free
 * stack and, if the stack was empty, writes the ring's eventfd. The ring
 * thread takes the whole stack at once when its eventfd read completes. (MSG_RING would need a
 * ring per worker; with DEFER_TASKRUN only the ring's own thread may
 * submit to it.)
 */
#ifndef CF_SERVER_INTERNAL_H
#define CF_SERVER_INTERNAL_H

#include "engine/server/server.h"

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/signalfd.h>
#include <sys/types.h>

#include "common/log.h"

#define SRV_OUT_CAP 65536  /* per connection: answers not yet sent */
#define SRV_JOB_FRAME 4096 /* inline request frame copy per job */
#define SRV_MAX_LARGE 32   /* max_frame-sized frame buffers per ring */
#define SRV_SQ_ENTRIES 512
#define SRV_CQ_ENTRIES 8192
#define SRV_RATE_SAMPLES 11 /* one per second: rate over the last 10 s */
/* A connection whose last SRV_PENALTY_AFTER answers were all refusals of
 * its own requests (bad frames, bad CSRs, policy, unknown names,
 * unauthorized; not UNSUPPORTED: a newer client may probe) has each further frame delayed by 10 ms
 * per refusal beyond that, up to SRV_PENALTY_MAX_MS; one OK answer ends it. A peer flooding garbage
 * so gets a trickle of the daemon, not a share of it. */
#define SRV_PENALTY_AFTER 16
#define SRV_PENALTY_MAX_MS 1000

/* ------------------------------------------------------------ types */

enum { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_CANCEL, OP_EVENT, OP_SIGNAL, OP_TIMER };

static inline uint64_t ud_pack(unsigned op, uint32_t idx, uint32_t gen)
{
    return ((uint64_t)op << 56) | ((uint64_t)(idx & 0xFFFFFFu) << 32) | gen;
}

typedef struct srv_loop srv_loop;

typedef struct srv_job {
    pipe_job pj;
    struct srv_job *next; /* free list, done stack, ready list, admin queue */
    srv_loop *loop;
    uint32_t conn, gen;
    uint64_t id;
    uint8_t op;     /* PROTO_OP_ISSUE, SIGN (pipeline), REVOKE, CRL (admin thread) */
    proto_req areq; /* REVOKE / CRL: the request, pointing into the frame copy */
    uint32_t peer_uid;
    int64_t revoked_at;
    unsigned reason;
    uint8_t *crl; /* CRL answer (malloc'd; freed by job_put) */
    size_t crl_len;
    /* ISSUE: its issuer, of generation cgen (the chain the answer carries) */
    const iss_issuer *issuer;
    /* ISSUE: the config generation its profile belongs to (a reference,
     * dropped by srv_job_put) */
    cf_gen *cgen;
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
    bool parked; /* head frame waits for a job / queue room */
    bool in_parklist;
    uint32_t uid, gid, pid;
    uint64_t grants_gen; /* the config generation ops/prof_bits/key_bits come from */
    unsigned ops;
    bool all_profiles; /* a grant gives it profiles = ["*"] */
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
    struct srv_peer *peer; /* its uid's share (srv_dispatch.c, fair share per peer) */
    uint64_t requests, unauthorized, unsupported;
    unsigned fail_streak;   /* refusals in a row (see SRV_PENALTY_AFTER) */
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
    /* the config generation this ring serves new requests with (a
     * reference; srv_gen_refresh moves it to the engine's current one) */
    cf_gen *cgen;
    /* completions from workers */
    int evfd;
    uint64_t ev_val;
    _Atomic(srv_job *) done_head;
    /* job pool */
    srv_job *jobs;
    size_t share;          /* jobs one connection may hold: min(max_inflight, max(8, njobs / 8)) */
    size_t reserve;        /* free jobs kept for connections holding none: njobs / 16 */
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
    bool made_dir; /* the socket's folder was created by this srv */
    bool bound;
    char path[CFG_SOCKET_PATH_MAX + 1];
    dev_t sock_dev;
    ino_t sock_ino;
    srv_loop *loops;
    unsigned nloops;
    srv_runtime rt;
    pipe_engine *pipe;
    proto_key keys[PROTO_MAX_KEYS]; /* the KEYS answer */
    size_t n_keys;
    unsigned tick_ms;
    size_t large_size;
    _Atomic bool stopping;
    atomic_uint conns;
    atomic_ulong inflight;
    atomic_ulong n_accepted, n_requests, n_answered, n_unanswered, n_refused;
    atomic_ulong by_status[CF_ST__MAX];
    atomic_ulong by_op[PROTO_OP__MAX][CF_ST__MAX]; /* metrics (srv_summary) */
    uint64_t start_ms;
    /* the last SIGHUP reload: 0 none, 1 ok, 2 refused; at: Unix seconds */
    atomic_int reload_result;
    _Atomic int64_t reload_at;
    /* Fair share per peer (uid): a table of the uids holding connection
     * slots. peer_mu guards the table (taken at accept and at a slot's
     * release, never with another lock); the counters are atomic. */
    pthread_mutex_t peer_mu;
    struct srv_peer *peers;
    size_t npeer_slots;
    atomic_uint npeers;     /* uids holding at least one open connection */
    unsigned peer_inflight; /* requests one uid may have in flight */
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

/* One uid's share: its open connections and the jobs it holds. */
typedef struct srv_peer {
    uint32_t uid;
    unsigned refs;        /* connection slots that point here (peer_mu) */
    atomic_uint conns;    /* open connections */
    atomic_uint inflight; /* requests received and not yet answered */
} srv_peer;

/* What srv_dispatch.c and srv_ring.c do with a frame. */
enum { FR_CONSUMED, FR_BLOCKED, FR_CLOSE };

/* An answer's encoder: writes into buf[0..cap), returns the length (0:
 * cannot be encoded; more than cap: does not fit). */
typedef size_t (*enc_fn)(uint8_t *buf, size_t cap, const void *arg);

typedef struct status_arg {
    srv_loop *L;
    uint64_t id;
} status_arg;

typedef struct keys_arg {
    const srv *s;
    uint64_t id;
} keys_arg;

/* srv_log.c */
void srv_log_hsm_failure(srv_loop *L, const srv_job *j);
void srv_log_unauthorized(conn *c, const char *op, const char *kind, const char *name);
void srv_log_conn_open(const srv_loop *L, const conn *c);
void srv_log_conn_close(const conn *c, const char *reason, uint64_t dropped);
void srv_log_conn_refused(const srv *s, uint32_t uid, uint32_t gid, int pid, const char *reason);

/* srv_ring.c */
uint64_t srv_now_ms(void);
struct io_uring_sqe *srv_get_sqe(srv_loop *L);
void srv_maybe_release(srv_loop *L, conn *c);
void srv_conn_close(srv_loop *L, conn *c, const char *reason);
void srv_start_send(srv_loop *L, conn *c);
void srv_conn_update_recv(srv_loop *L, conn *c);
void srv_maybe_finish(srv_loop *L, conn *c);

/* srv_dispatch.c */
srv_job *srv_job_get(srv_loop *L, size_t frame_len);
uint8_t *srv_job_frame(srv_loop *L, srv_job *j);
void srv_job_put(srv_loop *L, srv_job *j);
void srv_park_remove(srv_loop *L, conn *c);
bool srv_frame_pending(const srv *s, const conn *c);
void srv_pump(srv_loop *L, conn *c);
void srv_retry_parked(srv_loop *L);
void srv_gen_refresh(srv_loop *L);
void srv_conn_grants(srv_loop *L, conn *c);
srv_peer *srv_peer_ref(srv *s, uint32_t uid);
void srv_peer_unref(srv *s, srv_peer *p);
void srv_peer_opened(srv *s, srv_peer *p);
void srv_peer_closed(srv *s, srv_peer *p);
bool srv_fair_share_evict(srv_loop *L, const srv_peer *p);

/* srv_answer.c */
bool srv_out_put(srv_loop *L, conn *c, uint8_t op, uint64_t id, cf_status st, enc_fn enc,
                 const void *arg);
bool srv_answer_error(srv_loop *L, conn *c, uint8_t op, uint64_t id, cf_status st, uint32_t detail,
                      const char *msg);
void srv_flush_ready(srv_loop *L, conn *c);
size_t srv_enc_status(uint8_t *buf, size_t cap, const void *arg);
size_t srv_enc_keys(uint8_t *buf, size_t cap, const void *arg);
void srv_rate_sample(srv *s, uint64_t now);
int srv_load_answers(srv *s, char *err, size_t errlen);

/* srv_admin.c */
void srv_adm_push(srv *s, srv_job *j);
int srv_admin_start(srv *s);
void srv_admin_stop(srv *s);

#endif
