/* srv_listen.c — the listening socket (a live daemon's refused, a stale one replaced, SOCKET.lock),
 * the pools, srv_new/srv_free (server_internal.h). */
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
 * lets both see "stale" and both bind). srv_free removes the lock file
 * (a refused start leaves nothing behind); so the lock taken must still be
 * the file at the path: one unlinked meanwhile by the daemon that held it
 * is let go and the new file locked. */
static int take_lock(srv *s, char *err, size_t errlen)
{
    char lp[CFG_SOCKET_PATH_MAX + 8];
    snprintf(lp, sizeof(lp), "%s.lock", s->path);
    for (int tries = 0; tries < 8; tries++) {
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
                snprintf(err, errlen,
                         "server.socket: socket %s is in use by a live certforged "
                         "(it holds %s)",
                         s->path, lp);
            else
                snprintf(err, errlen, "server.socket: cannot lock %s: %s", lp, strerror(e));
            return -1;
        }
        struct stat a, b;
        if (fstat(s->lock_fd, &a) == 0 && lstat(lp, &b) == 0 && a.st_ino == b.st_ino &&
            a.st_dev == b.st_dev)
            return 0;
        close(s->lock_fd); /* the file we locked was removed by its last holder */
        s->lock_fd = -1;
    }
    snprintf(err, errlen, "server.socket: the lock file %s keeps being replaced", lp);
    return -1;
}

/* The lock file goes while still locked: see take_lock. */
static void drop_lock(srv *s)
{
    if (s->lock_fd < 0)
        return;
    char lp[CFG_SOCKET_PATH_MAX + 8];
    snprintf(lp, sizeof(lp), "%s.lock", s->path);
    struct stat a, b;
    if (fstat(s->lock_fd, &a) == 0 && lstat(lp, &b) == 0 && a.st_ino == b.st_ino &&
        a.st_dev == b.st_dev)
        unlink(lp);
    close(s->lock_fd);
    s->lock_fd = -1;
}

static int make_parent(const char *path, bool *made, char *err, size_t errlen)
{
    char dir[CFG_SOCKET_PATH_MAX + 1];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = 0;
    if (mkdir(dir, 0750) == 0) {
        cf_log(CF_LOG_INFO, "mkdir", "path=%s mode=0750", dir);
        *made = true;
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
        for (size_t k = 0; L->jobs && k < L->njobs - L->nunused; k++) {
            free(L->jobs[k].crl); /* CRL answers completed after the rings stopped */
            cf_gen_put(L->jobs[k].cgen); /* ISSUE jobs completed after the rings stopped */
        }
        cf_gen_put(L->cgen);
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
    pthread_mutex_init(&s->peer_mu, NULL);
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
    uint32_t nslots = s->sv.max_connections + s->sv.peer_reserve + s->sv.max_connections / 4 + 4;
    /* a uid holds at most three quarters of the pool unless configured */
    uint64_t all_jobs = (uint64_t)per_loop * s->nloops;
    s->peer_inflight = s->sv.peer_max_inflight
                           ? s->sv.peer_max_inflight
                           : (unsigned)(all_jobs * 3 / 4 ? all_jobs * 3 / 4 : 1);
    s->npeer_slots = (size_t)nslots * s->nloops;
    s->peers = calloc(s->npeer_slots, sizeof(*s->peers));
    if (!s->peers)
        goto oom;

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

    if (make_parent(s->path, &s->made_dir, err, errlen) || take_lock(s, err, errlen) ||
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
    for (int op = 0; op < PROTO_OP__MAX; op++)
        for (int i = 0; i < CF_ST__MAX; i++)
            o->by_op[op][i] = atomic_load_explicit(&s->by_op[op][i], memory_order_relaxed);
    o->open_connections = atomic_load(&s->conns);
    o->inflight = atomic_load(&s->inflight);
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
    drop_lock(s); /* after the unlink: the next daemon may start */
    if (s->made_dir) {
        /* a folder made for the socket goes with it when empty (a refused
         * start); a confined daemon may not remove it (Landlock): kept */
        char dir[CFG_SOCKET_PATH_MAX + 1];
        snprintf(dir, sizeof(dir), "%s", s->path);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
            *slash = 0;
            (void)rmdir(dir);
        }
    }
    loops_free(s);
    pthread_mutex_destroy(&s->rate_mu);
    pthread_mutex_destroy(&s->peer_mu);
    free(s->peers);
    pthread_mutex_destroy(&s->adm_mu);
    pthread_cond_destroy(&s->adm_cv);
    free(s);
}
