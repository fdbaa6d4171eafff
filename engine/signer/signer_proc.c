/* signer_proc.c — the signing service answered by a signer process
 * (signer.h, docs/architecture.md "Processes").
 *
 *   certforged ──ctl──▶ keeper (cf-sign-keeper) ──fork──▶ signer (cf-signer)
 *        └───────────── channels (socketpairs) ─────────────┘
 *
 * certforged forks the keeper first thing, while it has one thread and has
 * opened nothing. The keeper is single-threaded, never loads PKCS#11 and
 * reads one octet in its life (the go-ahead, once the socket and ledger
 * checks passed): it makes the channels, forks the signer, hands
 * certforged its ends of the channels (SCM_RIGHTS over ctl), waits for the
 * signer, and forks a new one when it dies — certforged itself cannot: it
 * is multi-threaded, and once confined its seccomp filter refuses new
 * processes. The signer alone loads the PKCS#11 module and logs in; it
 * says what its keys are (the hello on channel 0), confines itself
 * (no_new_privs, Landlock, a seccomp allow-list) and then answers
 * fixed-layout batches (signer_wire.h), one thread per channel: channel 0
 * for one-off signatures (CRLs), one per pipeline batch slot.
 *
 * A signer that dies fails the batches in flight (HSM_FAILURE: nothing was
 * released, every answer is checked against the issuer key anyway); the
 * keeper starts another (100 ms, doubling to 5 s while it keeps dying
 * young), certforged's cf-sigmon thread installs its channels after its
 * hello names the same keys, and each channel picks the new socket up at
 * its next batch. A signer that refuses to start (its token, a wrong PIN)
 * is not started again: each wrong PIN brings a lockout closer.
 */
#include "engine/signer/signer_internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "engine/confine/confine.h"
#include "engine/signer/signer_keyring.h"
#include "engine/signer/signer_wire.h"

#define SGN_EXIT_REFUSED 3  /* could not open its keys: not started again */
#define SGN_EXIT_PROTOCOL 4 /* a message broke the wire format */
#define SGN_FDS_PER_MSG 200
#define SGN_WAIT_MS 1000 /* a batch waits this long for a restarted signer */

/* What the signer publishes for STATUS (shared, anonymous mapping made
 * before the keeper is forked; the signer only writes it). */
typedef struct sgn_shared {
    _Atomic uint32_t busy, total;
} sgn_shared;

/* The keeper's message before a set of channel ends. */
typedef struct ctl_msg {
    uint32_t gen, first, count, total;
} ctl_msg;

/* One channel as certforged sees it. */
typedef struct pchan {
    int fd;
    unsigned gen; /* the signer incarnation fd belongs to (0: none) */
    uint32_t seq;
    uint8_t *buf; /* grows to the largest message, at most SGN_WIRE_LEN_MAX */
    size_t cap;
} pchan;

typedef struct proc_service {
    sgn_service base;
    const cfg_config *cfg;
    unsigned nchan; /* 1 + 2 × pipeline.workers */
    int ctl;
    pid_t keeper;
    sgn_shared *sh;
    bool started;

    /* mu guards gen, dead_gen, pending, stopping, lost; cv: a new
     * incarnation. Leaf lock. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned gen;      /* the newest installed incarnation */
    unsigned dead_gen; /* an incarnation a channel saw end */
    int *pending;      /* the newest incarnation's ends not yet taken, per channel */
    bool stopping, lost;

    pthread_t mon;
    bool mon_started;
    /* channel 0: the hello and one-off signatures; ch0_mu is a leaf */
    pthread_mutex_t ch0_mu;
    pchan ch0;
} proc_service;

typedef struct proc_batch {
    sgn_batch base;
    pchan ch;
    bool sent; /* a request message is out: its answer is read by wait */
} proc_batch;

/* ------------------------------------------------------------ I/O */

static int write_full(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* 0: all read; 1: EOF before anything; -1: error or EOF mid-way. */
static int read_full(int fd, void *p, size_t n)
{
    uint8_t *b = p;
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, b + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            return got == 0 ? 1 : -1;
        if (r < 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 4096;
    while (c < need)
        c *= 2;
    uint8_t *n = realloc(*buf, c);
    if (!n)
        return -1;
    *buf = n;
    *cap = c;
    return 0;
}

/* ------------------------------------------------------------ the signer */

typedef struct schan {
    int fd;
    sgn_keyring *kr;
    size_t nkeys;
    size_t cap; /* requests per batch */
    sgn_keyring_batch *kb;
    sgn_req *reqs;
    uint8_t *sigs; /* cap × CF_SIG_MAX */
    bool *bad;
    uint8_t *in, *out;
    size_t incap, outcap;
    pthread_t th;
    unsigned idx;
} schan;

/* A broken message is a bug or a compromised certforged: nothing of it is
 * signed, and the signer starts afresh. */
static void protocol_error(const schan *c, const char *what)
{
    cf_log(CF_LOG_ERROR, "signer_protocol_error", "channel=%u err=\"%s\" action=exit", c->idx,
           what);
    _exit(SGN_EXIT_PROTOCOL);
}

/* Read one batch, sign it, answer. 0: answered; 1: the channel closed. */
static int serve_one(schan *c)
{
    sgn_wire_hdr h;
    int r = read_full(c->fd, &h, sizeof(h));
    if (r != 0)
        return 1;
    if (h.magic != SGN_WIRE_REQ || h.n > c->cap || h.len > SGN_WIRE_LEN_MAX ||
        h.len < (uint64_t)h.n * sizeof(sgn_wire_req))
        protocol_error(c, "bad batch header");
    if (grow(&c->in, &c->incap, h.len) != 0)
        protocol_error(c, "out of memory");
    if (read_full(c->fd, c->in, h.len) != 0)
        return 1;
    /* Copied out of the message before use: every field is checked here. */
    const uint8_t *payload = c->in + (size_t)h.n * sizeof(sgn_wire_req);
    size_t plen = h.len - (size_t)h.n * sizeof(sgn_wire_req);
    for (uint32_t i = 0; i < h.n; i++) {
        sgn_wire_req w;
        memcpy(&w, c->in + (size_t)i * sizeof(w), sizeof(w));
        sgn_req *q = &c->reqs[i];
        c->bad[i] = w.key >= c->nkeys || w.mech >= CF_SIG__MAX || w.off > plen ||
                    w.len > plen - w.off || w.len > SGN_WIRE_IN_MAX || w.len == 0;
        *q = (sgn_req){.key = c->bad[i] ? 0 : w.key,
                       .mech = c->bad[i] ? CF_SIG_ECDSA_SHA256 : (cf_sig_alg)w.mech,
                       .in = c->bad[i] ? payload : payload + w.off,
                       .inlen = c->bad[i] ? 0 : w.len,
                       .sig = c->sigs + (size_t)i * CF_SIG_MAX};
    }
    /* Requests the message got wrong are not signed: they go to the HSM
     * layer as empty inputs, which it refuses, and are answered refused. */
    sgn_keyring_start(c->kr, c->kb, c->reqs, h.n);
    sgn_keyring_wait(c->kb, c->reqs, h.n);
    size_t data = 0;
    for (uint32_t i = 0; i < h.n; i++) {
        if (c->bad[i]) {
            c->reqs[i].rv = CKR_ARGUMENTS_BAD;
            c->reqs[i].siglen = 0;
            snprintf(c->reqs[i].msg, sizeof(c->reqs[i].msg),
                     "the signer refused a malformed request (key, mechanism or length)");
        }
        data += c->reqs[i].siglen + strnlen(c->reqs[i].msg, SGN_WIRE_MSG_MAX);
    }
    size_t len = (size_t)h.n * sizeof(sgn_wire_res) + data;
    if (grow(&c->out, &c->outcap, sizeof(h) + len) != 0)
        protocol_error(c, "out of memory");
    sgn_wire_hdr a = {.magic = SGN_WIRE_RES, .seq = h.seq, .n = h.n, .len = (uint32_t)len};
    memcpy(c->out, &a, sizeof(a));
    uint8_t *res = c->out + sizeof(a), *d = res + (size_t)h.n * sizeof(sgn_wire_res);
    size_t off = 0;
    for (uint32_t i = 0; i < h.n; i++) {
        const sgn_req *q = &c->reqs[i];
        size_t ml = q->rv ? strnlen(q->msg, SGN_WIRE_MSG_MAX) : 0;
        size_t sl = q->rv ? 0 : q->siglen;
        sgn_wire_res w = {.rv = (uint32_t)q->rv,
                          .off = (uint32_t)off,
                          .siglen = (uint16_t)sl,
                          .msglen = (uint16_t)ml};
        memcpy(res + (size_t)i * sizeof(w), &w, sizeof(w));
        memcpy(d + off, q->sig, sl);
        memcpy(d + off + sl, q->msg, ml);
        off += sl + ml;
    }
    if (write_full(c->fd, c->out, sizeof(a) + (size_t)h.n * sizeof(sgn_wire_res) + off) != 0)
        return 1;
    return 0;
}

static void *chan_main(void *arg)
{
    schan *c = arg;
    char name[16];
    snprintf(name, sizeof(name), "cf-signer/%u", c->idx);
    pthread_setname_np(pthread_self(), name);
    while (serve_one(c) == 0)
        ;
    return NULL;
}

/* The hello: what the keys are, or why the signer cannot sign. */
static int send_hello(int fd, const sgn_key_info *keys, size_t n, const char *refusal)
{
    size_t data = 0;
    if (!refusal)
        for (size_t i = 0; i < n; i++)
            data += keys[i].spki_len;
    else
        data = strlen(refusal);
    size_t len = (refusal ? 0 : n * sizeof(sgn_wire_key)) + data;
    uint8_t *m = malloc(sizeof(sgn_wire_hdr) + len);
    if (!m)
        return -1;
    sgn_wire_hdr h = {
        .magic = SGN_WIRE_HELLO, .n = refusal ? 0 : (uint32_t)n, .len = (uint32_t)len};
    memcpy(m, &h, sizeof(h));
    uint8_t *e = m + sizeof(h), *d = e + (refusal ? 0 : n * sizeof(sgn_wire_key));
    if (refusal) {
        memcpy(d, refusal, data);
    } else {
        size_t off = 0;
        for (size_t i = 0; i < n; i++) {
            sgn_wire_key k = {.type = keys[i].type,
                              .bits = keys[i].bits,
                              .sessions = keys[i].sessions,
                              .threads = keys[i].threads,
                              .spki_off = (uint32_t)off,
                              .spki_len = (uint32_t)keys[i].spki_len};
            memcpy(e + i * sizeof(k), &k, sizeof(k));
            memcpy(d + off, keys[i].spki, keys[i].spki_len);
            off += keys[i].spki_len;
        }
    }
    int rc = write_full(fd, m, sizeof(h) + len);
    free(m);
    return rc;
}

static void signer_confine(const cfg_config *cfg)
{
    if (!cfg->confine.enabled)
        return;
    confine_result r;
    char why[600];
    /* the daemon's identity (confine.user when started as root: the token's
     * files are that user's, as for certforged itself) and no capability in
     * any of its threads, then the allow-list */
    if (confine_drop_privileges(cfg->confine.user, &r, why, sizeof(why)) != 0) {
        cf_log(CF_LOG_ERROR, "signer_refused", "err=\"%s\"", why);
        _exit(SGN_EXIT_REFUSED);
    }
    if (confine_signer(cfg->confine.require_landlock, &r, why, sizeof(why)) != 0) {
        cf_log(CF_LOG_ERROR, "signer_refused", "err=\"confine: %s\"", why);
        _exit(SGN_EXIT_REFUSED);
    }
}

/* The signer process: never returns. fds[0..nchan) are its channel ends. */
static void signer_main(const cfg_config *cfg, const int *fds, unsigned nchan, sgn_shared *sh)
{
    prctl(PR_SET_NAME, "cf-signer", 0, 0, 0);
    char err[1024];
    sgn_keyring kr;
    sgn_key_info *keys = calloc(cfg->n_keys ? cfg->n_keys : 1, sizeof(*keys));
    if (!keys || sgn_keyring_open(cfg, &kr, keys, err, sizeof(err)) != 0) {
        send_hello(fds[0], NULL, 0, keys ? err : "out of memory");
        _exit(SGN_EXIT_REFUSED);
    }
    unsigned busy = 0, total = 0;
    sgn_keyring_sessions(&kr, &busy, &total);
    atomic_store(&sh->total, total);
    size_t cap = cfg->pipeline.batch ? cfg->pipeline.batch : 32;
    if (cap > SGN_WIRE_N_MAX)
        cap = SGN_WIRE_N_MAX;
    schan *ch = calloc(nchan, sizeof(*ch));
    if (!ch)
        _exit(SGN_EXIT_REFUSED);
    for (unsigned i = 0; i < nchan; i++) {
        schan *c = &ch[i];
        *c = (schan){.fd = fds[i], .kr = &kr, .nkeys = cfg->n_keys, .cap = i ? cap : 1, .idx = i};
        c->kb = sgn_keyring_batch_new(c->cap);
        c->reqs = calloc(c->cap, sizeof(*c->reqs));
        c->sigs = malloc(c->cap * CF_SIG_MAX);
        c->bad = calloc(c->cap, sizeof(*c->bad));
        if (!c->kb || !c->reqs || !c->sigs || !c->bad)
            _exit(SGN_EXIT_REFUSED);
    }
    /* Threads first, then the filter (it applies to every thread). */
    for (unsigned i = 1; i < nchan; i++)
        if (pthread_create(&ch[i].th, NULL, chan_main, &ch[i]) != 0)
            _exit(SGN_EXIT_REFUSED);
    signer_confine(cfg);
    if (send_hello(fds[0], keys, cfg->n_keys, NULL) != 0)
        _exit(0);
    /* Channel 0 on this thread, and the session counts for STATUS. */
    for (;;) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        int n = poll(&p, 1, 100);
        sgn_keyring_sessions(&kr, &busy, &total);
        atomic_store(&sh->busy, busy);
        if (n > 0 && serve_one(&ch[0]) != 0)
            break;
    }
    /* certforged closed its ends: the batches in flight are answered (or
     * their channels are closed too), then the sessions are closed. */
    for (unsigned i = 1; i < nchan; i++)
        pthread_join(ch[i].th, NULL);
    sgn_keyring_close(&kr);
    _exit(0);
}

/* ------------------------------------------------------------ the keeper */

static int send_fds(int ctl, unsigned gen, const int *fds, unsigned n)
{
    for (unsigned first = 0; first < n; first += SGN_FDS_PER_MSG) {
        unsigned k = n - first < SGN_FDS_PER_MSG ? n - first : SGN_FDS_PER_MSG;
        ctl_msg m = {.gen = gen, .first = first, .count = k, .total = n};
        struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
        union {
            char buf[CMSG_SPACE(sizeof(int) * SGN_FDS_PER_MSG)];
            struct cmsghdr align;
        } u;
        memset(&u, 0, sizeof(u));
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = u.buf,
                            .msg_controllen = CMSG_SPACE(sizeof(int) * k)};
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * k);
        memcpy(CMSG_DATA(cm), fds + first, sizeof(int) * k);
        ssize_t w;
        do
            w = sendmsg(ctl, &mh, MSG_NOSIGNAL);
        while (w < 0 && errno == EINTR);
        if (w != (ssize_t)sizeof(m))
            return -1;
    }
    return 0;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The keeper process: never returns. */
static void keeper_main(const cfg_config *cfg, int ctl, unsigned nchan, sgn_shared *sh)
{
    prctl(PR_SET_NAME, "cf-sign-keeper", 0, 0, 0);
    char go;
    ssize_t r;
    do
        r = read(ctl, &go, 1);
    while (r < 0 && errno == EINTR);
    if (r != 1)
        _exit(0); /* certforged refused to start before the HSM */
    int *mine = calloc(nchan, sizeof(int)), *theirs = calloc(nchan, sizeof(int));
    if (!mine || !theirs)
        _exit(1);
    unsigned gen = 0, backoff = 0;
    for (;;) {
        gen++;
        unsigned made = 0;
        for (; made < nchan; made++) {
            int sv[2];
            if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
                break;
            mine[made] = sv[0];
            theirs[made] = sv[1];
        }
        pid_t pid = made == nchan ? fork() : -1;
        if (pid == 0) {
            if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() == 1)
                _exit(0);
            close(ctl);
            for (unsigned i = 0; i < nchan; i++)
                close(mine[i]);
            signer_main(cfg, theirs, nchan, sh);
        }
        for (unsigned i = 0; i < made; i++)
            close(theirs[i]);
        if (pid < 0) {
            cf_log(CF_LOG_ERROR, "signer_start_failed", "generation=%u err=\"%s\"", gen,
                   strerror(errno));
            for (unsigned i = 0; i < made; i++)
                close(mine[i]);
            sleep(1);
            continue;
        }
        cf_log(CF_LOG_INFO, "signer_start", "pid=%d generation=%u channels=%u", (int)pid, gen,
               nchan);
        uint64_t t0 = mono_ms();
        int sent = send_fds(ctl, gen, mine, nchan);
        for (unsigned i = 0; i < nchan; i++)
            close(mine[i]);
        if (sent != 0)
            kill(pid, SIGKILL); /* certforged is gone */
        int st = 0;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        bool clean = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        bool refused = WIFEXITED(st) && WEXITSTATUS(st) == SGN_EXIT_REFUSED;
        char how[48];
        if (WIFSIGNALED(st))
            snprintf(how, sizeof(how), "signal=%d", WTERMSIG(st));
        else
            snprintf(how, sizeof(how), "exit=%d", WEXITSTATUS(st));
        if (clean || sent != 0) {
            cf_log(CF_LOG_INFO, "signer_exit", "pid=%d generation=%u %s action=stop", (int)pid, gen,
                   how);
            _exit(0);
        }
        if (refused) {
            /* Not started again: a PIN the token rejected must not be
             * retried (lockout), and a missing token stays missing. */
            cf_log(
                CF_LOG_ERROR, "signer_exit",
                "pid=%d generation=%u %s action=none effect=\"every signature fails (HSM_FAILURE) "
                "until certforged is restarted\"",
                (int)pid, gen, how);
            while (read(ctl, &go, 1) > 0 || errno == EINTR)
                ;
            _exit(0);
        }
        backoff = mono_ms() - t0 < 10000 ? (backoff ? backoff * 2 : 100) : 100;
        if (backoff > 5000)
            backoff = 5000;
        cf_log(CF_LOG_ERROR, "signer_exit", "pid=%d generation=%u %s action=restart after_ms=%u",
               (int)pid, gen, how, backoff);
        struct timespec ts = {.tv_sec = backoff / 1000,
                              .tv_nsec = (long)(backoff % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
}

/* ------------------------------------------------------------ certforged's side */

static void pchan_close(pchan *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->cap = 0;
}

/* Read the hello on fd: the keys (on the first, taken as the service's;
 * later, checked to be the same keys) or the refusal. */
static int read_hello(proc_service *ps, int fd, bool first, char *err, size_t errlen)
{
    sgn_wire_hdr h;
    uint8_t *m = NULL;
    int rc = -1;
    if (read_full(fd, &h, sizeof(h)) != 0) {
        snprintf(err, errlen, "the signer process exited before it said what its keys are");
        return -1;
    }
    if (h.magic != SGN_WIRE_HELLO || h.len > SGN_WIRE_LEN_MAX ||
        h.len < (uint64_t)h.n * sizeof(sgn_wire_key) || !(m = malloc(h.len + 1u)) ||
        read_full(fd, m, h.len) != 0) {
        snprintf(err, errlen, "the signer process sent a broken hello");
        goto out;
    }
    if (h.n == 0 && ps->cfg->n_keys > 0) { /* a refusal: its message */
        m[h.len] = 0;
        snprintf(err, errlen, "%s", (const char *)m);
        goto out;
    }
    if (h.n != ps->cfg->n_keys) {
        snprintf(err, errlen, "the signer process opened %u keys, the config has %zu", h.n,
                 ps->cfg->n_keys);
        goto out;
    }
    const uint8_t *d = m + (size_t)h.n * sizeof(sgn_wire_key);
    size_t dl = h.len - (size_t)h.n * sizeof(sgn_wire_key);
    if (first && !(ps->base.keys = calloc(h.n ? h.n : 1, sizeof(sgn_key_info)))) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (uint32_t i = 0; i < h.n; i++) {
        sgn_wire_key k;
        memcpy(&k, m + (size_t)i * sizeof(k), sizeof(k));
        if (k.spki_off > dl || k.spki_len > dl - k.spki_off || k.type >= CF_KEY__MAX) {
            snprintf(err, errlen, "the signer process sent a broken hello");
            goto out;
        }
        sgn_key_info *ki = &ps->base.keys[i];
        if (!first) {
            if (ki->spki_len != k.spki_len || memcmp(ki->spki, d + k.spki_off, k.spki_len) != 0) {
                snprintf(err, errlen, "key '%s' is not the key it was at start-up",
                         ps->cfg->keys[i].name);
                goto out;
            }
            continue;
        }
        uint8_t *spki = malloc(k.spki_len ? k.spki_len : 1);
        if (!spki) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        memcpy(spki, d + k.spki_off, k.spki_len);
        *ki = (sgn_key_info){.type = (cf_key_type)k.type,
                             .bits = k.bits,
                             .sessions = k.sessions,
                             .threads = k.threads,
                             .spki = spki,
                             .spki_len = k.spki_len};
        ps->base.nkeys = i + 1;
    }
    rc = 0;
out:
    free(m);
    return rc;
}

/* Receive the channel ends of the keeper's next signer into fds (nchan).
 * Returns its generation, 0 when ctl closed (the keeper is gone). */
static unsigned recv_fds(proc_service *ps, int *fds)
{
    unsigned gen = 0, got = 0;
    for (unsigned i = 0; i < ps->nchan; i++)
        fds[i] = -1;
    while (got < ps->nchan) {
        ctl_msg m;
        struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
        union {
            char buf[CMSG_SPACE(sizeof(int) * SGN_FDS_PER_MSG)];
            struct cmsghdr align;
        } u;
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u)};
        ssize_t r = recvmsg(ps->ctl, &mh, MSG_CMSG_CLOEXEC);
        if (r < 0 && errno == EINTR)
            continue;
        if (r != (ssize_t)sizeof(m))
            goto lost;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                continue;
            unsigned k = (unsigned)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            int tmp[SGN_FDS_PER_MSG];
            memcpy(tmp, CMSG_DATA(cm), sizeof(int) * (k < SGN_FDS_PER_MSG ? k : SGN_FDS_PER_MSG));
            for (unsigned i = 0; i < k && i < SGN_FDS_PER_MSG; i++) {
                if (m.first + i < ps->nchan && fds[m.first + i] < 0) {
                    fds[m.first + i] = tmp[i];
                    got++;
                } else {
                    close(tmp[i]);
                }
            }
        }
        gen = m.gen;
    }
    return gen;
lost:
    for (unsigned i = 0; i < ps->nchan; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return 0;
}

/* Install a signer's channels: channel 0 now, the others as each channel
 * starts its next batch. */
static void install(proc_service *ps, unsigned gen, int *fds)
{
    pthread_mutex_lock(&ps->ch0_mu);
    if (ps->ch0.fd >= 0)
        close(ps->ch0.fd);
    ps->ch0.fd = fds[0];
    ps->ch0.gen = gen;
    pthread_mutex_unlock(&ps->ch0_mu);
    pthread_mutex_lock(&ps->mu);
    for (unsigned i = 1; i < ps->nchan; i++) {
        if (ps->pending[i] >= 0)
            close(ps->pending[i]);
        ps->pending[i] = fds[i];
    }
    ps->gen = gen;
    pthread_cond_broadcast(&ps->cv);
    pthread_mutex_unlock(&ps->mu);
}

/* cf-sigmon: every signer after the first. */
static void *mon_main(void *arg)
{
    proc_service *ps = arg;
    pthread_setname_np(pthread_self(), "cf-sigmon");
    int *fds = calloc(ps->nchan, sizeof(int));
    for (;;) {
        unsigned gen = fds ? recv_fds(ps, fds) : 0;
        if (gen == 0)
            break;
        char err[1024];
        if (read_hello(ps, fds[0], false, err, sizeof(err)) != 0) {
            cf_log(CF_LOG_ERROR, "signer_failed", "generation=%u err=\"%s\"", gen, err);
            for (unsigned i = 0; i < ps->nchan; i++)
                close(fds[i]);
            continue;
        }
        install(ps, gen, fds);
        cf_log(CF_LOG_WARNING, "signer_restarted", "generation=%u", gen);
    }
    pthread_mutex_lock(&ps->mu);
    if (!ps->stopping) {
        ps->lost = true;
        cf_log(CF_LOG_ERROR, "signer_lost",
               "effect=\"the signer keeper is gone: every signature fails (HSM_FAILURE)\"");
    }
    pthread_cond_broadcast(&ps->cv);
    pthread_mutex_unlock(&ps->mu);
    free(fds);
    return NULL;
}

/* A channel's incarnation ended under it (EOF mid-batch). */
static void saw_dead(proc_service *ps, unsigned gen)
{
    pthread_mutex_lock(&ps->mu);
    if (gen > ps->dead_gen)
        ps->dead_gen = gen;
    pthread_mutex_unlock(&ps->mu);
}

/* Make c's socket the newest signer's (index idx), waiting up to
 * SGN_WAIT_MS for one while none is alive. 0, or -1 with why. */
static int chan_ready(proc_service *ps, pchan *c, unsigned idx, const char **why)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += SGN_WAIT_MS / 1000;
    dl.tv_nsec += (long)(SGN_WAIT_MS % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    int rc = 0;
    pthread_mutex_lock(&ps->mu);
    for (;;) {
        if (ps->gen > c->gen && idx < ps->nchan && ps->pending[idx] >= 0) {
            if (c->fd >= 0)
                close(c->fd);
            c->fd = ps->pending[idx];
            ps->pending[idx] = -1;
            c->gen = ps->gen;
        }
        if (c->fd >= 0 && c->gen > ps->dead_gen)
            break;
        if (ps->lost || ps->stopping) {
            *why = "the signer process is gone; nothing was signed";
            rc = -1;
            break;
        }
        if (pthread_cond_timedwait(&ps->cv, &ps->mu, &dl) == ETIMEDOUT) {
            *why = "the signer process is restarting; nothing was signed";
            rc = -1;
            break;
        }
    }
    pthread_mutex_unlock(&ps->mu);
    return rc;
}

/* Send reqs[0..n) on c. 0, or -1 with why. */
static int send_batch(proc_service *ps, pchan *c, const sgn_req *reqs, size_t n, const char **why)
{
    size_t payload = 0;
    for (size_t i = 0; i < n; i++)
        payload += reqs[i].inlen;
    size_t len = n * sizeof(sgn_wire_req) + payload;
    if (n > SGN_WIRE_N_MAX || len > SGN_WIRE_LEN_MAX ||
        grow(&c->buf, &c->cap, sizeof(sgn_wire_hdr) + len) != 0) {
        *why = "the batch is larger than the signer takes";
        return -1;
    }
    sgn_wire_hdr h = {
        .magic = SGN_WIRE_REQ, .seq = ++c->seq, .n = (uint32_t)n, .len = (uint32_t)len};
    memcpy(c->buf, &h, sizeof(h));
    uint8_t *e = c->buf + sizeof(h), *d = e + n * sizeof(sgn_wire_req);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        sgn_wire_req w = {.key = reqs[i].key,
                          .mech = (uint32_t)reqs[i].mech,
                          .off = (uint32_t)off,
                          .len = (uint32_t)reqs[i].inlen};
        memcpy(e + i * sizeof(w), &w, sizeof(w));
        memcpy(d + off, reqs[i].in, reqs[i].inlen);
        off += reqs[i].inlen;
    }
    if (write_full(c->fd, c->buf, sizeof(h) + len) != 0) {
        saw_dead(ps, c->gen);
        *why = "the signer process is gone; nothing was signed";
        return -1;
    }
    return 0;
}

/* Read the answer to the batch sent on c into reqs. Returns the number
 * signed, or -1 with why (every request failed). */
static long recv_batch(proc_service *ps, pchan *c, sgn_req *reqs, size_t n, const char **why)
{
    sgn_wire_hdr h;
    if (read_full(c->fd, &h, sizeof(h)) != 0) {
        saw_dead(ps, c->gen);
        *why = "the signer process exited with the batch in flight; nothing of it was released";
        return -1;
    }
    if (h.magic != SGN_WIRE_RES || h.seq != c->seq || h.n != n || h.len > SGN_WIRE_LEN_MAX ||
        h.len < n * sizeof(sgn_wire_res) || grow(&c->buf, &c->cap, h.len) != 0 ||
        read_full(c->fd, c->buf, h.len) != 0) {
        /* the stream is out of step: use no more of this signer */
        saw_dead(ps, c->gen);
        *why = "the signer process's answer is broken; nothing of it was released";
        return -1;
    }
    const uint8_t *d = c->buf + n * sizeof(sgn_wire_res);
    size_t dl = h.len - n * sizeof(sgn_wire_res);
    long ok = 0;
    for (size_t i = 0; i < n; i++) {
        sgn_wire_res w;
        memcpy(&w, c->buf + i * sizeof(w), sizeof(w));
        sgn_req *q = &reqs[i];
        if (w.off > dl || (size_t)w.siglen + w.msglen > dl - w.off || w.siglen > CF_SIG_MAX ||
            w.msglen > SGN_WIRE_MSG_MAX || (w.rv == 0 && w.siglen == 0)) {
            sgn_req_fail(q, CKR_GENERAL_ERROR, "the signer process's answer is broken");
            continue;
        }
        q->rv = w.rv;
        q->siglen = w.rv ? 0 : w.siglen;
        memcpy(q->sig, d + w.off, q->siglen);
        size_t ml = w.msglen < sizeof(q->msg) - 1 ? w.msglen : sizeof(q->msg) - 1;
        memcpy(q->msg, d + w.off + w.siglen, ml);
        q->msg[ml] = 0;
        ok += w.rv == 0;
    }
    return ok;
}

static void fail_all(sgn_req *reqs, size_t n, const char *why)
{
    for (size_t i = 0; i < n; i++)
        sgn_req_fail(&reqs[i], CKR_DEVICE_ERROR, "%s", why);
}

static void proc_sessions(sgn_service *s, unsigned *busy, unsigned *total)
{
    proc_service *ps = (proc_service *)s;
    *busy = atomic_load(&ps->sh->busy);
    *total = atomic_load(&ps->sh->total);
}

static void proc_batch_free(sgn_batch *b)
{
    proc_batch *pb = (proc_batch *)b;
    pchan_close(&pb->ch);
    free(b->reqs);
    free(pb);
}

static sgn_batch *proc_batch_new(sgn_service *s, unsigned chan, size_t cap)
{
    proc_batch *pb = calloc(1, sizeof(*pb));
    if (!pb)
        return NULL;
    pb->base = (sgn_batch){.s = s, .chan = chan, .cap = cap};
    pb->ch.fd = -1;
    pb->base.reqs = calloc(cap, sizeof(sgn_req));
    if (!pb->base.reqs) {
        free(pb);
        return NULL;
    }
    return &pb->base;
}

static void proc_batch_start(sgn_batch *b, size_t n)
{
    proc_service *ps = (proc_service *)b->s;
    proc_batch *pb = (proc_batch *)b;
    const char *why = NULL;
    pb->sent = false;
    if (n == 0)
        return;
    if (chan_ready(ps, &pb->ch, b->chan + 1, &why) != 0 ||
        send_batch(ps, &pb->ch, b->reqs, n, &why) != 0) {
        fail_all(b->reqs, n, why);
        return;
    }
    pb->sent = true;
    /* Signed elsewhere: with signing threads the worker may build its
     * next batch meanwhile, as in this process (a network HSM). Without,
     * it waits, and the signer's thread has the core. */
    for (size_t i = 0; i < n && !b->async; i++)
        b->async = b->reqs[i].key < b->s->nkeys && b->s->keys[b->reqs[i].key].threads > 0;
}

static size_t proc_batch_wait(sgn_batch *b)
{
    proc_batch *pb = (proc_batch *)b;
    if (!pb->sent)
        return 0;
    pb->sent = false;
    const char *why = NULL;
    long ok = recv_batch((proc_service *)b->s, &pb->ch, b->reqs, b->n, &why);
    if (ok < 0) {
        fail_all(b->reqs, b->n, why);
        return 0;
    }
    return (size_t)ok;
}

static int proc_sign(sgn_service *s, uint32_t key, cf_sig_alg mech, const uint8_t *in, size_t inlen,
                     uint8_t *sig, size_t *siglen, unsigned long *rv, char *msg, size_t msglen)
{
    proc_service *ps = (proc_service *)s;
    sgn_req q = {.key = key, .mech = mech, .in = in, .inlen = inlen, .sig = sig};
    const char *why = NULL;
    *siglen = 0;
    pthread_mutex_lock(&ps->ch0_mu);
    pthread_mutex_lock(&ps->mu);
    bool alive = ps->ch0.fd >= 0 && ps->ch0.gen > ps->dead_gen;
    pthread_mutex_unlock(&ps->mu);
    if (!alive)
        why = "the signer process is restarting; nothing was signed";
    if (!why && send_batch(ps, &ps->ch0, &q, 1, &why) == 0 &&
        recv_batch(ps, &ps->ch0, &q, 1, &why) < 0)
        q.rv = CKR_DEVICE_ERROR;
    pthread_mutex_unlock(&ps->ch0_mu);
    if (why) {
        *rv = CKR_DEVICE_ERROR;
        snprintf(msg, msglen, "%s", why);
        return -1;
    }
    *rv = q.rv;
    if (q.rv != 0) {
        snprintf(msg, msglen, "%s", q.msg);
        return -1;
    }
    *siglen = q.siglen;
    return 0;
}

static void proc_close(sgn_service *s)
{
    proc_service *ps = (proc_service *)s;
    pthread_mutex_lock(&ps->mu);
    ps->stopping = true;
    pthread_cond_broadcast(&ps->cv);
    for (unsigned i = 0; ps->pending && i < ps->nchan; i++) {
        if (ps->pending[i] >= 0)
            close(ps->pending[i]);
        ps->pending[i] = -1;
    }
    pthread_mutex_unlock(&ps->mu);
    pthread_mutex_lock(&ps->ch0_mu);
    pchan_close(&ps->ch0);
    pthread_mutex_unlock(&ps->ch0_mu);
    /* The keeper sees the signer end (its channels closed: the batches'
     * were closed with the pipeline) and exits; ctl closed too. */
    if (ps->ctl >= 0)
        shutdown(ps->ctl, SHUT_RDWR);
    if (ps->mon_started)
        pthread_join(ps->mon, NULL);
    if (ps->ctl >= 0)
        close(ps->ctl);
    if (ps->keeper > 0) {
        int st;
        uint64_t end = mono_ms() + 3000;
        while (waitpid(ps->keeper, &st, WNOHANG) == 0 && mono_ms() < end) {
            struct timespec ts = {0, 10 * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (waitpid(ps->keeper, &st, WNOHANG) == 0) {
            kill(ps->keeper, SIGKILL); /* and its signer, by PDEATHSIG */
            waitpid(ps->keeper, &st, 0);
        }
    }
    if (ps->sh)
        munmap(ps->sh, sizeof(*ps->sh));
    free(ps->pending);
    sgn_keys_free(s);
    pthread_mutex_destroy(&ps->ch0_mu);
    pthread_cond_destroy(&ps->cv);
    pthread_mutex_destroy(&ps->mu);
    free(ps);
}

static const sgn_ops proc_ops = {
    .close = proc_close,
    .sessions = proc_sessions,
    .batch_new = proc_batch_new,
    .batch_free = proc_batch_free,
    .batch_start = proc_batch_start,
    .batch_wait = proc_batch_wait,
    .sign = proc_sign,
};

int sgn_proc_fork(const cfg_config *cfg, sgn_service **out, char *err, size_t errlen)
{
    *out = NULL;
    proc_service *ps = calloc(1, sizeof(*ps));
    int sv[2] = {-1, -1};
    if (!ps) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    ps->base.ops = &proc_ops;
    ps->cfg = cfg;
    ps->ctl = -1;
    ps->ch0.fd = -1;
    ps->nchan = 1 + 2 * (cfg->pipeline.workers ? cfg->pipeline.workers : 1);
    pthread_mutex_init(&ps->mu, NULL);
    pthread_mutex_init(&ps->ch0_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ps->cv, &ca);
    pthread_condattr_destroy(&ca);
    ps->pending = malloc(ps->nchan * sizeof(int));
    ps->sh = mmap(NULL, sizeof(*ps->sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ps->sh == MAP_FAILED)
        ps->sh = NULL;
    if (!ps->pending || !ps->sh || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        snprintf(err, errlen, "signer: %s", strerror(errno ? errno : ENOMEM));
        goto fail;
    }
    for (unsigned i = 0; i < ps->nchan; i++)
        ps->pending[i] = -1;
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "signer: fork: %s", strerror(errno));
        goto fail;
    }
    if (pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(0);
        close(sv[0]);
        keeper_main(cfg, sv[1], ps->nchan, ps->sh);
    }
    close(sv[1]);
    ps->ctl = sv[0];
    ps->keeper = pid;
    *out = &ps->base;
    return 0;
fail:
    if (sv[0] >= 0)
        close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    proc_close(&ps->base);
    return -1;
}

int sgn_proc_start(sgn_service *s, char *err, size_t errlen)
{
    proc_service *ps = (proc_service *)s;
    int *fds = calloc(ps->nchan, sizeof(int));
    if (!fds) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = -1;
    char go = 'G';
    unsigned gen = 0;
    if (send(ps->ctl, &go, 1, MSG_NOSIGNAL) != 1 || (gen = recv_fds(ps, fds)) == 0) {
        snprintf(err, errlen, "the signer keeper process is gone");
        goto out;
    }
    if (read_hello(ps, fds[0], true, err, errlen) != 0) {
        for (unsigned i = 0; i < ps->nchan; i++)
            close(fds[i]);
        goto out;
    }
    install(ps, gen, fds);
    if (pthread_create(&ps->mon, NULL, mon_main, ps) != 0) {
        snprintf(err, errlen, "cannot start the signer monitor thread");
        goto out;
    }
    ps->mon_started = true;
    ps->started = true;
    rc = 0;
out:
    free(fds);
    return rc;
}
