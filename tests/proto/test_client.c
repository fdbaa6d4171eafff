/* CUnit suite for client/ (libcertforge) against a tiny in-test server
 * thread on a temporary Unix socket that speaks proto/: it answers out of
 * order (batches reversed) with blocking writes, so a client that did not
 * read while writing would deadlock. Also: a peer closing mid-frame, an
 * answer over the client's limit, fork, connect errors. */
#include "client/certforge.h"
#include "proto/proto.h"

#include "cf_test.h"
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define S(lit) ((cf_str){(lit), sizeof(lit) - 1})

enum mode {
    M_NORMAL,      /* answer everything, batches of up to 7 reversed */
    M_CLOSE_MID,   /* after the first request: half an answer, then close */
    M_HUGE,        /* answer ISSUE with a 5000-octet certificate */
    M_CLOSE_NOW,   /* close after the first request without answering */
    M_SLOW_READER, /* wait 300 ms before reading anything */
    M_BAD_CLOSE,   /* answer the first request BAD_FRAME, then close */
};

typedef struct server {
    char dir[40], path[64];
    int lfd;
    enum mode mode;
    pthread_t th;
    unsigned long requests; /* seen */
} server;

static const uint8_t fake_csr[] = {0x30, 0x03, 0x02, 0x01, 0x00};
static uint8_t huge[5000];

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The canned answer to a request. */
static size_t answer(server *s, const proto_req *q, uint8_t *b, size_t cap)
{
    uint64_t id = q->hdr.id;
    uint8_t idb[8];
    for (int i = 0; i < 8; i++)
        idb[i] = (uint8_t)(id >> (56 - 8 * i));
    switch (q->hdr.op) {
    case PROTO_OP_ISSUE: {
        if (q->issue.profile.len == 3 && memcmp(q->issue.profile.p, "bad", 3) == 0)
            return proto_enc_error(b, cap, PROTO_OP_ISSUE, id, CF_ST_BAD_CSR, 6,
                                   "proof of possession failed");
        if (s->mode == M_HUGE)
            return proto_enc_issue_ok(b, cap, id, huge, sizeof(huge), NULL, 0, idb, 8);
        /* cert = the id's octets then the first FQDN: the client checks both */
        uint8_t cert[128];
        memcpy(cert, idb, 8);
        size_t cl = 8;
        if (q->issue.n_fqdns) {
            memcpy(cert + 8, q->issue.fqdns[0].p, q->issue.fqdns[0].len);
            cl += q->issue.fqdns[0].len;
        }
        proto_blob chain[2] = {{(const uint8_t *)"ISSUER", 6}, {(const uint8_t *)"ROOT", 4}};
        return proto_enc_issue_ok(b, cap, id, cert, cl, chain, 2, idb, 8);
    }
    case PROTO_OP_STATUS: {
        char n[32];
        snprintf(n, sizeof(n), "%lu", s->requests);
        proto_kv kv[2] = {{S("issued"), {n, strlen(n)}}, {S("queue_depth"), S("0")}};
        return proto_enc_status_ok(b, cap, id, kv, 2);
    }
    case PROTO_OP_KEYS: {
        proto_key k[2] = {{S("issuer-ec"), S("ec-p256"), {fake_csr, 5}},
                          {S("issuer-rsa"), S("rsa-3072"), {fake_csr, 3}}};
        return proto_enc_keys_ok(b, cap, id, k, 2);
    }
    default:
        return proto_enc_error(b, cap, q->hdr.op, id, CF_ST_UNSUPPORTED, 0, "unsupported");
    }
}

static void *serve(void *arg)
{
    server *s = arg;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    if (s->mode == M_SLOW_READER)
        usleep(300000);
    static uint8_t in[1 << 17];
    size_t have = 0;
    enum { BATCH = 7 };
    uint8_t out[BATCH][8192];
    size_t outn[BATCH], pending = 0;
    for (;;) {
        /* Blocking read, unless answers are pending and nothing is there. */
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (pending && poll(&p, 1, 0) == 0) {
            for (size_t i = pending; i-- > 0;)
                if (write_all(fd, out[i], outn[i]) != 0)
                    goto done;
            pending = 0;
        }
        ssize_t r = recv(fd, in + have, sizeof(in) - have, 0);
        if (r <= 0)
            break;
        have += (size_t)r;
        for (;;) {
            proto_hdr h;
            size_t fl;
            proto_err e = proto_frame_next(in, have, PROTO_MAX_FRAME_DEFAULT, &h, &fl);
            if (e == PROTO_NEED_MORE)
                break;
            if (e != PROTO_OK)
                goto done;
            proto_req q;
            e = proto_req_decode(in, fl, &q);
            s->requests++;
            if (s->mode == M_CLOSE_NOW)
                goto done;
            if (s->mode == M_BAD_CLOSE) {
                uint8_t b[256];
                size_t n = proto_enc_error(b, sizeof(b), h.op, h.id, CF_ST_BAD_FRAME, 0,
                                           "unknown field tag");
                write_all(fd, b, n);
                goto done;
            }
            if (e != PROTO_OK)
                outn[pending] = proto_enc_error(out[pending], sizeof(out[0]), q.hdr.op, q.hdr.id,
                                                proto_err_status(e), 0, proto_err_name(e));
            else if (s->mode == M_HUGE && q.hdr.op == PROTO_OP_ISSUE) {
                static uint8_t hb[8192];
                size_t n = answer(s, &q, hb, sizeof(hb));
                write_all(fd, hb, n);
                outn[pending] = 0;
            } else
                outn[pending] = answer(s, &q, out[pending], sizeof(out[0]));
            if (s->mode == M_CLOSE_MID) {
                write_all(fd, out[pending], outn[pending] / 2);
                goto done;
            }
            if (outn[pending])
                pending++;
            memmove(in, in + fl, have - fl);
            have -= fl;
            if (pending == BATCH) {
                for (size_t i = pending; i-- > 0;)
                    if (write_all(fd, out[i], outn[i]) != 0)
                        goto done;
                pending = 0;
            }
        }
    }
done:
    close(fd);
    return NULL;
}

static void server_start(server *s, enum mode m)
{
    memset(s, 0, sizeof(*s));
    s->mode = m;
    snprintf(s->dir, sizeof(s->dir), "/tmp/cf-proto-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(s->dir));
    snprintf(s->path, sizeof(s->path), "%s/sock", s->dir);
    s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s->path);
    CU_ASSERT_EQUAL_FATAL(bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    CU_ASSERT_EQUAL_FATAL(listen(s->lfd, 4), 0);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&s->th, NULL, serve, s), 0);
}

static void server_stop(server *s)
{
    pthread_join(s->th, NULL);
    close(s->lfd);
    unlink(s->path);
    rmdir(s->dir);
}

static cf_client *connect_to(server *s, const cf_client_opts *o)
{
    cf_client *c = NULL;
    char err[256];
    int r = cf_client_connect_opts(s->path, o, &c, err, sizeof(err));
    if (r != 0)
        fprintf(stderr, "connect: %s\n", err);
    CU_ASSERT_EQUAL(r, 0);
    return c;
}

static cf_issue_req req_for(char *fqdn, size_t cap, unsigned i)
{
    snprintf(fqdn, cap, "nf%u.5gc.example", i);
    cf_issue_req r;
    memset(&r, 0, sizeof(r));
    r.profile = S("nf");
    r.csr_der = fake_csr;
    r.csr_len = sizeof(fake_csr);
    r.fqdns[0] = (cf_str){fqdn, strlen(fqdn)};
    r.n_fqdns = 1;
    return r;
}

/* The answer matches the request with this id (see answer()). */
static bool answer_matches(const cf_response *r, uint64_t id, const char *fqdn)
{
    if (r->status != CF_ST_OK || r->op != CF_OP_ISSUE || r->id != id || r->cert.len < 8 ||
        r->n_chain != 2 || r->serial.len != 8)
        return false;
    for (int i = 0; i < 8; i++)
        if (r->cert.p[i] != (uint8_t)(id >> (56 - 8 * i)) ||
            r->serial.p[i] != (uint8_t)(id >> (56 - 8 * i)))
            return false;
    return r->cert.len - 8 == strlen(fqdn) && memcmp(r->cert.p + 8, fqdn, strlen(fqdn)) == 0 &&
           r->chain[0].len == 6 && memcmp(r->chain[0].p, "ISSUER", 6) == 0;
}

/* ------------------------------------------------------------- tests */

static void test_connect_fail(void)
{
    cf_client *c = (cf_client *)1;
    char err[256];
    CU_ASSERT_EQUAL(cf_client_connect("/nonexistent/certforge.sock", &c, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nonexistent/certforge.sock"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "No such file or directory"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "is certforged running?"));
    char longp[200];
    memset(longp, 'x', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = 0;
    CU_ASSERT_EQUAL(cf_client_connect(longp, &c, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "too long"));
    cf_client_close(NULL);
}

/* 10,000 requests queued before a single answer is collected: the
 * server's answers fill the socket while the client is still writing. */
static void pipeline(const cf_client_opts *o, enum mode m, unsigned n)
{
    server s;
    server_start(&s, m);
    cf_client *c = connect_to(&s, o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    uint64_t *ids = calloc(n, sizeof(*ids));
    unsigned char *seen = calloc(n, 1);
    char fq[64];
    unsigned got = 0, again = 0, out_of_order = 0;
    uint64_t last = 0;
    cf_response r;
    for (unsigned i = 0; i < n; i++) {
        cf_issue_req q = req_for(fq, sizeof(fq), i);
        int rc;
        while ((rc = cf_client_submit_issue(c, &q, &ids[i])) == 1) {
            /* buffers full: collect one answer, then try again */
            again++;
            CU_ASSERT_EQUAL_FATAL(cf_client_next_response(c, 10000, &r), 0);
            uint64_t k = r.id - 1;
            CU_ASSERT_FATAL(k < n && !seen[k]);
            seen[k] = 1;
            char fk[64];
            (void)req_for(fk, sizeof(fk), (unsigned)k);
            CU_ASSERT(answer_matches(&r, r.id, fk));
            got++;
        }
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        CU_ASSERT_EQUAL(ids[i], i + 1);
    }
    /* flush may say 1 ("collect answers first") with a small receive
     * buffer; next_response keeps sending while it waits */
    int fr = cf_client_flush(c, 10000);
    CU_ASSERT(fr == 0 || (fr == 1 && o && o->max_buffered));
    while (got < n) {
        int rc = cf_client_next_response(c, 10000, &r);
        if (rc != 0)
            fprintf(stderr, "next_response: %s\n", cf_client_error(c));
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        uint64_t k = r.id - 1;
        CU_ASSERT_FATAL(k < n && !seen[k]);
        seen[k] = 1;
        char fk[64];
        (void)req_for(fk, sizeof(fk), (unsigned)k);
        CU_ASSERT(answer_matches(&r, r.id, fk));
        out_of_order += r.id < last;
        last = r.id;
        got++;
    }
    CU_ASSERT(out_of_order > 0);
    /* nothing left in flight */
    CU_ASSERT_EQUAL(cf_client_next_response(c, 0, &r), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(cf_client_error(c), "no request in flight"));
    CU_ASSERT_EQUAL(cf_client_status(c, 5000, &r), 0); /* still usable */
    if (o && o->max_buffered)
        CU_ASSERT(again > 0);
    cf_client_close(c);
    server_stop(&s);
    free(ids);
    free(seen);
}

static void test_pipeline_10000(void)
{
    pipeline(NULL, M_NORMAL, 10000);
}

static void test_pipeline_small_buffers(void)
{
    /* receive buffer of 64 KiB: submit must hand back 1 ("collect first")
     * rather than block against a server blocked on writing */
    cf_client_opts o = {.max_buffered = 65536, .max_queued = 65536};
    pipeline(&o, M_NORMAL, 10000);
}

static void test_slow_reader(void)
{
    cf_client_opts o = {.max_queued = 65536};
    pipeline(&o, M_SLOW_READER, 3000);
}

static void test_out_of_order_and_blocking(void)
{
    server s;
    server_start(&s, M_NORMAL);
    cf_client *c = connect_to(&s, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    char fq[7][64];
    uint64_t ids[7];
    for (unsigned i = 0; i < 7; i++) {
        cf_issue_req q = req_for(fq[i], sizeof(fq[i]), i);
        CU_ASSERT_EQUAL_FATAL(cf_client_submit_issue(c, &q, &ids[i]), 0);
    }
    /* a blocking call while requests are in flight is refused, harmlessly */
    cf_response r;
    CU_ASSERT_EQUAL(cf_client_status(c, 1000, &r), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(cf_client_error(c), "in flight"));
    CU_ASSERT_EQUAL(cf_client_flush(c, 5000), 0);
    /* the server reverses a batch of 7 */
    for (unsigned i = 0; i < 7; i++) {
        CU_ASSERT_EQUAL_FATAL(cf_client_next_response(c, 5000, &r), 0);
        CU_ASSERT_EQUAL(r.id, ids[6 - i]);
        CU_ASSERT(answer_matches(&r, ids[6 - i], fq[6 - i]));
    }
    /* nothing more: a zero timeout returns at once */
    CU_ASSERT_EQUAL(cf_client_next_response(c, 0, &r), -1);

    char f1[64];
    cf_issue_req q = req_for(f1, sizeof(f1), 99);
    int rc = cf_issue_one(c, &q, 5000, &r);
    if (rc != 0)
        fprintf(stderr, "issue_one: %s\n", cf_client_error(c));
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT(answer_matches(&r, 8, f1));
    q.profile = S("bad");
    CU_ASSERT_EQUAL_FATAL(cf_issue_one(c, &q, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_BAD_CSR);
    CU_ASSERT_EQUAL(r.detail, 6);
    CU_ASSERT(r.message.len == 26 && memcmp(r.message.p, "proof of possession failed", 26) == 0);

    CU_ASSERT_EQUAL_FATAL(cf_client_status(c, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.op, CF_OP_STATUS);
    CU_ASSERT_EQUAL_FATAL(r.n_kv, 2);
    CU_ASSERT(r.kv[0].key.len == 6 && memcmp(r.kv[0].key.p, "issued", 6) == 0);
    CU_ASSERT(r.kv[0].value.len == 2 && memcmp(r.kv[0].value.p, "10", 2) == 0);

    CU_ASSERT_EQUAL_FATAL(cf_client_keys(c, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.op, CF_OP_KEYS);
    CU_ASSERT_EQUAL_FATAL(r.n_keys, 2);
    CU_ASSERT(r.keys[1].type.len == 8 && memcmp(r.keys[1].type.p, "rsa-3072", 8) == 0);
    CU_ASSERT_EQUAL(r.keys[1].spki.len, 3);

    /* a request breaking a protocol limit fails without harming the client */
    q.n_fqdns = CF_MAX_FQDNS + 1;
    uint64_t id;
    CU_ASSERT_EQUAL(cf_client_submit_issue(c, &q, &id), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(cf_client_error(c), "cannot be encoded"));
    CU_ASSERT_EQUAL(cf_client_status(c, 5000, &r), 0);
    cf_client_close(c);
    server_stop(&s);
}

static void test_peer_closes_mid_frame(void)
{
    server s;
    server_start(&s, M_CLOSE_MID);
    cf_client *c = connect_to(&s, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    char f[64];
    cf_issue_req q = req_for(f, sizeof(f), 1);
    cf_response r;
    CU_ASSERT_EQUAL(cf_issue_one(c, &q, 5000, &r), -1);
    const char *e = cf_client_error(c);
    CU_ASSERT_PTR_NOT_NULL(strstr(e, "closed the connection in the middle of an answer"));
    /* sticky */
    CU_ASSERT_EQUAL(cf_client_status(c, 1000, &r), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(cf_client_error(c), "in the middle of an answer"));
    CU_ASSERT_EQUAL(cf_client_submit_issue(c, &q, NULL), -1);
    cf_client_close(c);
    server_stop(&s);

    server_start(&s, M_CLOSE_NOW);
    c = connect_to(&s, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(cf_issue_one(c, &q, 5000, &r), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(cf_client_error(c), "1 request(s) unanswered"));
    cf_client_close(c);
    server_stop(&s);
}

/* The daemon answers BAD_FRAME and closes while the client is still
 * pipelining: the answer is handed out, then the error sticks. */
static void test_bad_frame_then_close(void)
{
    server s;
    server_start(&s, M_BAD_CLOSE);
    cf_client *c = connect_to(&s, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    char f[64];
    cf_issue_req q = req_for(f, sizeof(f), 1);
    int rc = 0;
    unsigned i;
    for (i = 0; i < 100000 && rc == 0; i++)
        rc = cf_client_submit_issue(c, &q, NULL);
    if (rc == 0)
        rc = cf_client_flush(c, 5000);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(cf_client_error(c), "closed the connection"));
    cf_response r;
    CU_ASSERT_EQUAL_FATAL(cf_client_next_response(c, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.id, 1);
    CU_ASSERT_EQUAL(r.status, CF_ST_BAD_FRAME);
    CU_ASSERT_EQUAL(cf_client_next_response(c, 5000, &r), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(cf_client_error(c), "closed the connection"));
    cf_client_close(c);
    server_stop(&s);
}

static void test_answer_too_large(void)
{
    server s;
    server_start(&s, M_HUGE);
    cf_client_opts o = {.max_frame = 4096};
    cf_client *c = connect_to(&s, &o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    char f[64];
    cf_issue_req q = req_for(f, sizeof(f), 1);
    cf_response r;
    CU_ASSERT_EQUAL(cf_issue_one(c, &q, 5000, &r), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(cf_client_error(c), "exceeds the client's limit (4096 octets)"));
    cf_client_close(c);
    server_stop(&s);

    /* the default limit takes it */
    server_start(&s, M_HUGE);
    c = connect_to(&s, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(cf_issue_one(c, &q, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.cert.len, sizeof(huge));
    cf_client_close(c);
    server_stop(&s);
}

static void test_fork(void)
{
    server s;
    server_start(&s, M_NORMAL);
    cf_client *c = connect_to(&s, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    pid_t pid = fork();
    if (pid == 0) {
        char f[64];
        cf_issue_req q = req_for(f, sizeof(f), 1);
        cf_response r;
        int ok = cf_issue_one(c, &q, 1000, &r) == -1 &&
                 strstr(cf_client_error(c), "a child of fork() must connect its own client");
        cf_client_close(c);
        _exit(ok ? 0 : 1);
    }
    int st = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &st, 0), pid);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* the parent's client is untouched */
    cf_response r;
    CU_ASSERT_EQUAL(cf_client_status(c, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.n_kv, 2);
    cf_client_close(c);
    server_stop(&s);
}

int main(int argc, char **argv)
{
    for (size_t i = 0; i < sizeof(huge); i++)
        huge[i] = (uint8_t)i;
    static const cf_test tests[] = {
        {"connect errors name the path", test_connect_fail},
        {"10,000 pipelined requests, no deadlock", test_pipeline_10000},
        {"10,000 pipelined, small buffers (submit says collect)", test_pipeline_small_buffers},
        {"daemon slow to read", test_slow_reader},
        {"out of order by id; blocking helpers", test_out_of_order_and_blocking},
        {"peer closes mid-frame / without answering", test_peer_closes_mid_frame},
        {"BAD_FRAME then close while pipelining", test_bad_frame_then_close},
        {"answer over the client's limit", test_answer_too_large},
        {"fork: the child may not use the parent's client", test_fork},
    };
    static const cf_suite suites[] = {CF_SUITE("client", NULL, NULL, tests)};
    return CF_TEST_MAIN(argc, argv, suites);
}
