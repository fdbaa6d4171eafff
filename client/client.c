/* client.c — libcertforge: a non-blocking Unix socket, a bounded queue of
 * encoded requests, a bounded buffer of received answers, and poll() that
 * always reads while it writes (see certforge.h). */
#include "client/certforge.h"
#include "proto/proto.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

_Static_assert(CF_MAX_CHAIN == PROTO_MAX_CHAIN, "chain limit");
_Static_assert(CF_MAX_KV == PROTO_MAX_KV, "kv limit");
_Static_assert(CF_MAX_KEYS == PROTO_MAX_KEYS, "keys limit");
_Static_assert((int)CF_OP_ISSUE == (int)PROTO_OP_ISSUE &&
                   (int)CF_OP_STATUS == (int)PROTO_OP_STATUS &&
                   (int)CF_OP_KEYS == (int)PROTO_OP_KEYS,
               "op numbers");

#define DEF_MAX_FRAME PROTO_MAX_FRAME_DEFAULT
#define DEF_MAX_BUFFERED (4u << 20)
#define DEF_MAX_QUEUED (256u << 10)
#define DEF_IO_TIMEOUT 30000

struct cf_client {
    int fd;
    pid_t pid; /* the process that connected */
    size_t max_frame;
    size_t max_buffered;
    int io_timeout_ms;
    uint64_t next_id;
    uint64_t inflight; /* requests queued or sent, not yet answered */

    uint8_t *out; /* encoded requests: [out_off, out_len) not yet written */
    size_t out_cap, out_off, out_len;

    uint8_t *in; /* received: [in_off, in_len) not yet handed out */
    size_t in_cap, in_off, in_len;
    size_t in_release; /* octets of the frame last handed out, consumed on the next call */
    bool eof;          /* the daemon closed its side */

    bool dead; /* connection unusable: err says why */
    char err[256];
    proto_resp pr;
};

static void seterr(cf_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void seterr(cf_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
}

/* A sticky error: the connection cannot be used any more. */
static void kill_conn(cf_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void kill_conn(cf_client *c, const char *fmt, ...)
{
    if (c->dead)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    c->dead = true;
    c->out_off = c->out_len = 0;
}

const char *cf_client_error(const cf_client *c)
{
    return c ? c->err : "no client";
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t deadline_of(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

static int remaining(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t r = deadline - now_ms();
    return r <= 0 ? 0 : r > 3600000 ? 3600000 : (int)r;
}

/* ------------------------------------------------------------ connect */

int cf_client_connect(const char *socket_path, cf_client **out, char *err, size_t errlen)
{
    return cf_client_connect_opts(socket_path, NULL, out, err, errlen);
}

int cf_client_connect_opts(const char *socket_path, const cf_client_opts *o, cf_client **out,
                           char *err, size_t errlen)
{
    *out = NULL;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (!socket_path || !*socket_path || strlen(socket_path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "certforged socket path %s%s%s is empty or too long",
                 socket_path ? "\"" : "", socket_path ? socket_path : "(null)",
                 socket_path ? "\"" : "");
        return -1;
    }
    memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);

    cf_client *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->fd = -1;
    c->max_frame = o && o->max_frame ? o->max_frame : DEF_MAX_FRAME;
    if (c->max_frame < PROTO_MIN_FRAME_CAP)
        c->max_frame = PROTO_MIN_FRAME_CAP;
    c->max_buffered = o && o->max_buffered ? o->max_buffered : DEF_MAX_BUFFERED;
    if (c->max_buffered < c->max_frame)
        c->max_buffered = c->max_frame;
    c->out_cap = o && o->max_queued ? o->max_queued : DEF_MAX_QUEUED;
    if (c->out_cap < c->max_frame)
        c->out_cap = c->max_frame;
    c->io_timeout_ms = o && o->io_timeout_ms ? o->io_timeout_ms : DEF_IO_TIMEOUT;
    c->in_cap = c->max_frame > 65536 ? c->max_frame : 65536;
    if (c->in_cap > c->max_buffered)
        c->in_cap = c->max_buffered;
    c->out = malloc(c->out_cap);
    c->in = malloc(c->in_cap);
    if (!c->out || !c->in) {
        snprintf(err, errlen, "out of memory");
        cf_client_close(c);
        return -1;
    }

    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        cf_client_close(c);
        return -1;
    }
    int r;
    do
        r = connect(c->fd, (struct sockaddr *)&sa, sizeof(sa));
    while (r != 0 && errno == EINTR);
    if (r != 0) {
        int e = errno;
        snprintf(err, errlen, "connect %s: %s (is certforged running?)", socket_path, strerror(e));
        cf_client_close(c);
        return -1;
    }
    int fl = fcntl(c->fd, F_GETFL);
    if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        snprintf(err, errlen, "fcntl O_NONBLOCK: %s", strerror(errno));
        cf_client_close(c);
        return -1;
    }
    c->pid = getpid();
    c->next_id = 1;
    *out = c;
    return 0;
}

void cf_client_close(cf_client *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

/* --------------------------------------------------------------- I/O */

/* Every public call starts here: the fork check, and the frame handed out
 * by the previous call is consumed (its pointers die now). */
static int enter(cf_client *c)
{
    if (c->pid != getpid()) {
        seterr(c,
               "this cf_client belongs to process %ld; a child of fork() must connect its "
               "own client",
               (long)c->pid);
        return -1;
    }
    c->in_off += c->in_release;
    c->in_release = 0;
    return 0;
}

/* Free space at the end of the receive buffer, compacting and growing it
 * (up to max_buffered) as needed. */
static size_t in_room(cf_client *c)
{
    if (c->in_off > 0) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    if (c->in_len == c->in_cap && c->in_cap < c->max_buffered) {
        size_t ncap = c->in_cap * 2 < c->max_buffered ? c->in_cap * 2 : c->max_buffered;
        uint8_t *n = realloc(c->in, ncap);
        if (n) {
            c->in = n;
            c->in_cap = ncap;
        }
    }
    return c->in_cap - c->in_len;
}

/* Read what is there. -1: fatal (connection killed). */
static int do_read(cf_client *c)
{
    while (!c->eof && in_room(c) > 0) {
        ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
            continue;
        }
        if (n == 0) {
            c->eof = true;
            break;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        if (errno == ECONNRESET)
            kill_conn(c, "certforged closed the connection (%s)", strerror(errno));
        else
            kill_conn(c, "reading from certforged: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* Write what the socket takes. -1: fatal. */
static int do_write(cf_client *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        /* The daemon may have answered (e.g. BAD_FRAME) before closing:
         * keep what it sent, handed out before the error. */
        int e = errno;
        (void)do_read(c);
        errno = e;
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
            kill_conn(c, "certforged closed the connection (%s)", strerror(errno));
        else
            kill_conn(c, "writing to certforged: %s", n < 0 ? strerror(errno) : "no progress");
        return -1;
    }
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    return 0;
}

/* One round: read and write whatever can move now, else wait up to
 * wait_ms for the socket. Never waits for writability alone while the
 * receive buffer is full (that is how pipelining clients deadlock): returns
 * 1 then. Returns 0 after progress or a wait, 1 stuck/timeout, -1 fatal. */
static int io_round(cf_client *c, int wait_ms)
{
    size_t in0 = c->in_len - c->in_off, out0 = c->out_len - c->out_off;
    if (do_read(c) != 0 || do_write(c) != 0)
        return -1;
    if (c->in_len - c->in_off != in0 || c->out_len - c->out_off != out0)
        return 0; /* progress without waiting */
    short ev = 0;
    if (!c->eof && in_room(c) > 0)
        ev |= POLLIN;
    if (c->out_off < c->out_len)
        ev |= POLLOUT;
    if (!(ev & POLLIN))
        return 1; /* EOF or buffer full: nothing to wait for that we can take */
    struct pollfd p = {.fd = c->fd, .events = ev};
    int r = poll(&p, 1, wait_ms);
    if (r < 0 && errno != EINTR) {
        kill_conn(c, "poll: %s", strerror(errno));
        return -1;
    }
    if (r == 0)
        return 1;
    if (do_read(c) != 0 || do_write(c) != 0)
        return -1;
    return 0;
}

/* ----------------------------------------------------------- submit */

/* Free space at the end of the send queue, compacting it when the tail
 * is short of a whole frame. */
static size_t out_room(cf_client *c)
{
    if (c->out_off > 0 && c->out_cap - c->out_len < c->max_frame) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    return c->out_cap - c->out_len;
}

static int queue_frame(cf_client *c, size_t (*enc)(uint8_t *, size_t, uint64_t, const void *),
                       const void *arg, uint64_t *id_out)
{
    if (enter(c) != 0)
        return -1;
    if (c->dead)
        return -1;
    uint64_t id = c->next_id;
    /* Encode in place; when it does not fit, make room (reading while
     * writing) and encode again. */
    int64_t dl = deadline_of(c->io_timeout_ms);
    size_t n;
    for (;;) {
        size_t room = out_room(c);
        n = enc(c->out + c->out_len, room, id, arg);
        if (n == 0) {
            seterr(c, "request cannot be encoded (a field breaks a protocol limit: see "
                      "docs/protocol.md)");
            return -1;
        }
        if (n > c->max_frame) {
            seterr(c, "request of %zu octets exceeds the frame limit (%zu octets)", n,
                   c->max_frame);
            return -1;
        }
        if (n <= room)
            break;
        int r = io_round(c, remaining(dl));
        if (r < 0)
            return -1;
        if (r == 0 || out_room(c) >= n)
            continue;
        if (c->eof) {
            kill_conn(c, "certforged closed the connection");
            return -1;
        }
        if (in_room(c) == 0) {
            seterr(c, "send and receive buffers full: collect answers, then submit again");
            return 1;
        }
        if (remaining(dl) == 0) {
            seterr(c, "certforged did not read requests for %d ms", c->io_timeout_ms);
            return 1;
        }
    }
    c->out_len += n;
    c->next_id++;
    c->inflight++;
    if (id_out)
        *id_out = id;
    /* Send eagerly once a good batch is queued; read while at it. */
    if (c->out_len - c->out_off >= 16384 && (do_read(c) != 0 || do_write(c) != 0))
        return -1;
    return 0;
}

static size_t enc_issue(uint8_t *b, size_t cap, uint64_t id, const void *req)
{
    return proto_enc_issue_req(b, cap, id, req);
}

static size_t enc_status(uint8_t *b, size_t cap, uint64_t id, const void *unused)
{
    return proto_enc_status_req(b, cap, id);
}

static size_t enc_keys(uint8_t *b, size_t cap, uint64_t id, const void *unused)
{
    return proto_enc_keys_req(b, cap, id);
}

static size_t enc_sign(uint8_t *b, size_t cap, uint64_t id, const void *req)
{
    const cf_sign_req *r = req;
    proto_sign_req q = {
        .key = r->key,
        .mech = r->mech,
        .data = r->data,
        .data_len = r->data_len,
        .requester = r->requester,
    };
    return proto_enc_sign_req(b, cap, id, &q);
}

static size_t enc_revoke(uint8_t *b, size_t cap, uint64_t id, const void *req)
{
    return proto_enc_revoke_req(b, cap, id, req);
}

static size_t enc_crl(uint8_t *b, size_t cap, uint64_t id, const void *req)
{
    const proto_crl_req *q = req;
    return proto_enc_crl_shard_req(b, cap, id, q->issuer, q->shard, q->fresh);
}

int cf_client_submit_sign(cf_client *c, const cf_sign_req *req, uint64_t *id_out)
{
    return queue_frame(c, enc_sign, req, id_out);
}

int cf_client_submit_revoke(cf_client *c, const uint8_t *serial, size_t serial_len,
                            unsigned reason, cf_str requester, uint64_t *id_out)
{
    proto_revoke_req q = {
        .serial = serial, .serial_len = serial_len, .reason = reason, .requester = requester};
    return queue_frame(c, enc_revoke, &q, id_out);
}

int cf_client_submit_crl(cf_client *c, cf_str issuer, int fresh, uint64_t *id_out)
{
    return cf_client_submit_crl_shard(c, issuer, 0, fresh, id_out);
}

int cf_client_submit_crl_shard(cf_client *c, cf_str issuer, unsigned shard, int fresh,
                               uint64_t *id_out)
{
    proto_crl_req q = {.issuer = issuer, .fresh = fresh != 0, .shard = shard};
    return queue_frame(c, enc_crl, &q, id_out);
}

int cf_client_submit_issue(cf_client *c, const cf_issue_req *req, uint64_t *id_out)
{
    return queue_frame(c, enc_issue, req, id_out);
}

int cf_client_submit_status(cf_client *c, uint64_t *id_out)
{
    return queue_frame(c, enc_status, NULL, id_out);
}

int cf_client_submit_keys(cf_client *c, uint64_t *id_out)
{
    return queue_frame(c, enc_keys, NULL, id_out);
}

int cf_client_flush(cf_client *c, int timeout_ms)
{
    if (enter(c) != 0 || c->dead)
        return -1;
    int64_t dl = deadline_of(timeout_ms);
    while (c->out_off < c->out_len) {
        int r = io_round(c, remaining(dl));
        if (r < 0)
            return -1;
        if (r > 0 && c->out_off < c->out_len) {
            if (c->eof) {
                kill_conn(c, "certforged closed the connection");
                return -1;
            }
            if (remaining(dl) == 0 || in_room(c) == 0) {
                seterr(c, "flush: %s", in_room(c) == 0 ? "answers not collected" : "timeout");
                return 1;
            }
        }
    }
    return 0;
}

/* ---------------------------------------------------------- answers */

static void to_response(const proto_resp *p, cf_response *o)
{
    o->id = p->id;
    o->op = p->op;
    o->status = p->status;
    o->detail = p->detail;
    o->message = p->message;
    o->cert = (cf_blob){p->cert.p, p->cert.len};
    o->n_chain = p->n_chain;
    for (unsigned i = 0; i < p->n_chain; i++)
        o->chain[i] = (cf_blob){p->chain[i].p, p->chain[i].len};
    o->serial = (cf_blob){p->serial.p, p->serial.len};
    o->n_kv = p->n_kv;
    for (unsigned i = 0; i < p->n_kv; i++)
        o->kv[i] = (cf_kv){p->kv[i].key, p->kv[i].value};
    o->n_keys = p->n_keys;
    for (unsigned i = 0; i < p->n_keys; i++)
        o->keys[i] = (cf_key){p->keys[i].name, p->keys[i].type,
                              (cf_blob){p->keys[i].spki.p, p->keys[i].spki.len}};
    o->sig = (cf_blob){p->sig.p, p->sig.len};
    o->revoked_at = p->has_revoked ? p->revoked_at : -1;
    o->reason = p->reason;
    o->crl = (cf_blob){p->crl.p, p->crl.len};
}

/* A whole answer at the head of the receive buffer: 1 handed out, 0 none
 * yet, -1 fatal. */
static int take_frame(cf_client *c, cf_response *out)
{
    proto_hdr h;
    size_t flen;
    const uint8_t *p = c->in + c->in_off;
    size_t avail = c->in_len - c->in_off;
    proto_err e = proto_frame_next(p, avail, c->max_frame, &h, &flen);
    if (e == PROTO_NEED_MORE)
        return 0;
    if (e == PROTO_ERR_TOO_LARGE) {
        kill_conn(c, "answer of %llu octets exceeds the client's limit (%zu octets)",
                  (unsigned long long)h.len + 4, c->max_frame);
        return -1;
    }
    if (e != PROTO_OK) {
        kill_conn(c, "malformed answer from certforged: %s", proto_err_name(e));
        return -1;
    }
    e = proto_resp_decode(p, flen, &c->pr);
    if (e != PROTO_OK) {
        kill_conn(c, "malformed answer from certforged (id %llu): %s", (unsigned long long)h.id,
                  proto_err_name(e));
        return -1;
    }
    to_response(&c->pr, out);
    c->in_release = flen;
    if (c->inflight)
        c->inflight--;
    return 1;
}

int cf_client_next_response(cf_client *c, int timeout_ms, cf_response *out)
{
    if (enter(c) != 0)
        return -1;
    int64_t dl = deadline_of(timeout_ms);
    for (;;) {
        int t = take_frame(c, out);
        if (t != 0)
            return t > 0 ? 0 : -1;
        if (c->dead)
            return -1;
        size_t partial = c->in_len - c->in_off;
        if (c->eof) {
            if (partial)
                kill_conn(c,
                          "certforged closed the connection in the middle of an answer "
                          "(%zu octets received)",
                          partial);
            else
                kill_conn(c,
                          "certforged closed the connection with %llu request(s) "
                          "unanswered",
                          (unsigned long long)c->inflight);
            return -1;
        }
        if (c->inflight == 0 && partial == 0) {
            seterr(c, "no request in flight");
            return -1;
        }
        int r = io_round(c, remaining(dl));
        if (r < 0) {
            /* Hand out what arrived before the failure first. */
            t = take_frame(c, out);
            return t > 0 ? 0 : -1;
        }
        if (r > 0 && remaining(dl) == 0) {
            t = take_frame(c, out);
            if (t != 0)
                return t > 0 ? 0 : -1;
            if (c->eof)
                continue; /* reported above */
            seterr(c, "timeout waiting for an answer");
            return 1;
        }
    }
}

/* --------------------------------------------------------- blocking */

static int idle(cf_client *c)
{
    if (enter(c) != 0 || c->dead)
        return -1;
    if (c->inflight || c->in_len > c->in_off) {
        seterr(c,
               "blocking call on a client with %llu request(s) in flight: collect them "
               "first",
               (unsigned long long)c->inflight);
        return -1;
    }
    return 0;
}

/* Submit with fn, then wait for the answer with that id. */
static int one(cf_client *c, int (*fn)(cf_client *, const void *, uint64_t *), const void *arg,
               int timeout_ms, cf_response *out)
{
    uint64_t id = 0;
    if (idle(c) != 0)
        return -1;
    int rc = fn(c, arg, &id);
    if (rc != 0)
        return rc;
    int64_t dl = deadline_of(timeout_ms);
    for (;;) {
        int r = cf_client_next_response(c, remaining(dl), out);
        /* id 0: about the connection, not a request (e.g. BUSY from a
         * daemon at max_connections): that is this request's answer too */
        if (r != 0 || out->id == id || (out->id == 0 && out->status != CF_ST_OK))
            return r;
    }
}

static int sub_issue(cf_client *c, const void *req, uint64_t *id)
{
    return cf_client_submit_issue(c, req, id);
}

static int sub_status(cf_client *c, const void *unused, uint64_t *id)
{
    return cf_client_submit_status(c, id);
}

static int sub_keys(cf_client *c, const void *unused, uint64_t *id)
{
    return cf_client_submit_keys(c, id);
}

int cf_issue_one(cf_client *c, const cf_issue_req *req, int timeout_ms, cf_response *out)
{
    return one(c, sub_issue, req, timeout_ms, out);
}

int cf_client_status(cf_client *c, int timeout_ms, cf_response *out)
{
    return one(c, sub_status, NULL, timeout_ms, out);
}

int cf_client_keys(cf_client *c, int timeout_ms, cf_response *out)
{
    return one(c, sub_keys, NULL, timeout_ms, out);
}

static int sub_sign(cf_client *c, const void *req, uint64_t *id)
{
    return cf_client_submit_sign(c, req, id);
}

int cf_sign_one(cf_client *c, const cf_sign_req *req, int timeout_ms, cf_response *out)
{
    return one(c, sub_sign, req, timeout_ms, out);
}

typedef struct revoke_arg {
    const uint8_t *serial;
    size_t serial_len;
    unsigned reason;
    cf_str requester;
} revoke_arg;

static int sub_revoke(cf_client *c, const void *arg, uint64_t *id)
{
    const revoke_arg *a = arg;
    return cf_client_submit_revoke(c, a->serial, a->serial_len, a->reason, a->requester, id);
}

int cf_revoke_one(cf_client *c, const uint8_t *serial, size_t serial_len, unsigned reason,
                  cf_str requester, int timeout_ms, cf_response *out)
{
    revoke_arg a = {serial, serial_len, reason, requester};
    return one(c, sub_revoke, &a, timeout_ms, out);
}

static int sub_crl(cf_client *c, const void *req, uint64_t *id)
{
    const proto_crl_req *q = req;
    return cf_client_submit_crl_shard(c, q->issuer, q->shard, q->fresh, id);
}

int cf_crl_one(cf_client *c, cf_str issuer, int fresh, int timeout_ms, cf_response *out)
{
    return cf_crl_shard_one(c, issuer, 0, fresh, timeout_ms, out);
}

int cf_crl_shard_one(cf_client *c, cf_str issuer, unsigned shard, int fresh, int timeout_ms,
                     cf_response *out)
{
    proto_crl_req q = {.issuer = issuer, .fresh = fresh != 0, .shard = shard};
    return one(c, sub_crl, &q, timeout_ms, out);
}
