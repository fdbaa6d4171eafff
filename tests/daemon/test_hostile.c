/* certforged against hostile clients (docs/certforged.md, "Limits"): peers
 * that write and never read must not starve an honest peer on the same
 * ring, nor hold memory beyond their own buffers; they are closed as
 * stalled readers. The daemon runs as a child process on a SoftHSM token
 * with a CA made by the certforge CLI, as in test_daemon.c (whose helpers
 * are copied here), one I/O ring so the attackers share it with the honest
 * client.
 */
#include "cf_testutil.h"
#include "cf_daemon.h"
#include "client/certforge.h"
#include "bench/csr_pool.h"
#include "proto/proto.h"

#include "cf_test.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#define PIN "Hq3k9Rt-pin"

/* Token, CA, config writer, daemon start/stop, clients: tests/support/cf_daemon.c. */
static int suite_init(void)
{
    return dh_suite_init("hst", PIN, "Daemon Test CA");
}

static int suite_clean(void)
{
    return dh_suite_clean();
}

/* ------------------------------------------------------------ daemon A */

static void start_daemon(dproc *d, const char *name, const char *server, const char *pipeline)
{
    char conf[400];
    snprintf(conf, sizeof(conf), "%s/%s.conf", H.dir, name);
    conf_opts o = {.server = server, .pipeline = pipeline};
    write_conf(conf, &o);
    CU_ASSERT_FATAL(daemon_start(d, conf, NULL) == 0);
}

/* ------------------------------------------------------------ attackers */

#define MAX_ATTACKERS 32

typedef struct attack {
    int fds[MAX_ATTACKERS];
    int n;
    bool issue;         /* ISSUE requests; else STATUS */
    atomic_bool stop;   /* set by the test */
    atomic_int closed;  /* connections the daemon closed (EPIPE / reset) */
    atomic_long frames; /* frames written in full */
    unsigned ms;        /* give up after this long */
} attack;

/* Write requests on every connection as fast as the daemon takes them,
 * never reading, until the daemon closes them all (or stop / time out). */
static void *attack_thread(void *arg)
{
    attack *a = arg;
    static const size_t cap = 64 * 1024;
    uint8_t *f = malloc(cap);
    size_t *off = calloc((size_t)a->n, sizeof(size_t));
    size_t *len = calloc((size_t)a->n, sizeof(size_t));
    uint64_t id = 0, end = cf_now_ms() + a->ms;
    if (!f || !off || !len)
        goto out;
    /* one batch of frames, resent from where each connection stopped */
    size_t n = 0;
    while (n + 2048 < cap) {
        size_t m = a->issue ? enc_issue(f + n, cap - n, id, &POOL.items[id % POOL.n], "nf")
                            : proto_enc_status_req(f + n, cap - n, id);
        if (m == 0)
            break;
        n += m;
        id++;
    }
    while (!atomic_load(&a->stop) && cf_now_ms() < end && atomic_load(&a->closed) < a->n) {
        for (int i = 0; i < a->n; i++) {
            if (a->fds[i] < 0)
                continue;
            ssize_t w = send(a->fds[i], f + off[i], n - off[i], MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) {
                off[i] = (off[i] + (size_t)w) % n;
                len[i] += (size_t)w;
            } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                close(a->fds[i]);
                a->fds[i] = -1;
                atomic_fetch_add(&a->closed, 1);
            }
        }
        cf_sleep_ms(2);
    }
    long total = 0;
    for (int i = 0; i < a->n; i++)
        total += (long)len[i];
    atomic_store(&a->frames, total);
out:
    free(f);
    free(off);
    free(len);
    return NULL;
}

static void attack_start(attack *a, pthread_t *th, int n, bool issue, unsigned ms)
{
    memset(a, 0, sizeof(*a));
    a->n = n;
    a->issue = issue;
    a->ms = ms;
    atomic_init(&a->stop, false);
    atomic_init(&a->closed, 0);
    atomic_init(&a->frames, 0);
    for (int i = 0; i < n; i++) {
        a->fds[i] = raw_connect();
        CU_ASSERT_FATAL(a->fds[i] >= 0);
    }
    CU_ASSERT_FATAL(pthread_create(th, NULL, attack_thread, a) == 0);
}

static void attack_end(attack *a, pthread_t th)
{
    atomic_store(&a->stop, true);
    pthread_join(th, NULL);
    for (int i = 0; i < a->n; i++)
        if (a->fds[i] >= 0)
            close(a->fds[i]);
}

/* The honest client: `count` certificates one after another on one
 * connection, each OK (never BUSY). Not starved: while `a` attacks (NULL:
 * no such check) at least HONEST_BESIDE of its answers come while all the
 * attackers' connections are still open. A starved client gets none
 * before the daemon has closed the attackers as stalled readers
 * (idle_timeout_ms after they stop reading); a served one gets them at
 * its own pace, on a fast machine or under a sanitizer. How many came
 * then, and the slowest answer, are printed. */
#define HONEST_BESIDE 5
static void honest(int count, const attack *a, pid_t daemon, long *max_rss_kb)
{
    cf_client *c = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    int ok = 0, beside = 0;
    uint64_t worst = 0;
    for (int i = 0; i < count; i++) {
        cf_issue_req req;
        fill_req(&req, &POOL.items[(size_t)i % POOL.n], "nf");
        cf_response r;
        uint64_t t0 = cf_now_ms();
        int rc = cf_issue_one(c, &req, 10000, &r);
        uint64_t dt = cf_now_ms() - t0;
        worst = dt > worst ? dt : worst;
        if (rc != 0) {
            fprintf(stderr, "\nhonest request %d: no answer\n", i);
            break;
        }
        if (r.status != CF_ST_OK) {
            fprintf(stderr, "\nhonest request %d: %s %.*s\n", i, cf_status_name(r.status),
                    (int)r.message.len, r.message.p);
            break;
        }
        if (i == 0)
            CU_ASSERT_EQUAL(verify_cert(r.cert.p, r.cert.len), 0);
        ok++;
        beside += a && atomic_load(&a->closed) == 0;
        long rss = daemon_rss_kb(daemon);
        if (rss > *max_rss_kb)
            *max_rss_kb = rss;
        cf_sleep_ms(20);
    }
    CU_ASSERT_EQUAL(ok, count);
    if (a) {
        fprintf(stderr, "(%d of %d honest answers while the %d attackers were connected) ", beside,
                count, a->n);
        CU_ASSERT(beside >= HONEST_BESIDE);
    }
    fprintf(stderr, "(slowest honest answer %llu ms) ", (unsigned long long)worst);
    cf_client_close(c);
}

/* Wait (bounded) until the daemon closed every attacker as a stalled
 * reader. */
static void expect_stalled(dproc *d, attack *a, int n, unsigned ms)
{
    uint64_t end = cf_now_ms() + ms;
    while (cf_now_ms() < end &&
           (atomic_load(&a->closed) < n || log_count(d->log, "reason=stalled-reader") < n))
        cf_sleep_ms(50);
    CU_ASSERT_EQUAL(atomic_load(&a->closed), n);
    CU_ASSERT(log_count(d->log, "reason=stalled-reader") >= n);
    if (log_count(d->log, "reason=stalled-reader") < n) {
        char *t = slurp(d->log);
        size_t l = t ? strlen(t) : 0;
        fprintf(stderr, "\nlog tail:\n%s\n", t ? t + (l > 3000 ? l - 3000 : 0) : "");
        free(t);
    }
}

/* ------------------------------------------------------------ tests */

/* 20 connections write STATUS requests and never read. They may pin only
 * their own buffers: an honest connection on the same ring keeps getting
 * certificates; the attackers are closed as stalled readers. */
static void test_status_writers(void)
{
    dproc d;
    start_daemon(&d, "w",
                 "max_connections = 64; max_frame = 8192; idle_timeout_ms = 3000; "
                 "io_threads = 1;",
                 NULL);
    attack a;
    pthread_t th;
    attack_start(&a, &th, 20, false, 60000);
    cf_sleep_ms(500); /* their answers back up, their input fills */
    long rss = 0;
    honest(30, &a, d.pid, &rss);
    CU_ASSERT(rss > 0 && rss < 512 * 1024);
    expect_stalled(&d, &a, 20, 15000);
    attack_end(&a, th);
    CU_ASSERT_EQUAL(status_value("connections"), 1);
    daemon_stop_clean(&d);
}

/* 30 connections pipeline ISSUE requests and never read. Each may hold
 * only a share of the ring's job pool, and none while its answers are
 * backed up: an honest client still gets certificates, never BUSY. */
static void test_issue_nonreaders(void)
{
    dproc d;
    start_daemon(&d, "i",
                 "max_connections = 64; max_frame = 8192; idle_timeout_ms = 3000; "
                 "io_threads = 1;",
                 "workers = 2; queue = 256; batch = 16;");
    attack a;
    pthread_t th;
    attack_start(&a, &th, 30, true, 60000);
    cf_sleep_ms(500);
    long rss = 0;
    honest(30, &a, d.pid, &rss);
    CU_ASSERT(rss > 0 && rss < 512 * 1024);
    expect_stalled(&d, &a, 30, 15000);
    attack_end(&a, th);
    uint64_t end = cf_now_ms() + 5000;
    while (cf_now_ms() < end && status_value("inflight") != 0)
        cf_sleep_ms(20);
    CU_ASSERT_EQUAL(status_value("inflight"), 0);
    daemon_stop_clean(&d);
}

/* Slowloris: 10 connections each send a valid ISSUE frame one octet every
 * 200 ms (idle_timeout 1 s, which a byte resets). Each is closed as
 * stalled-mid-frame about 1 s after its first octet while its bytes still
 * trickle: the trickle goes on (up to 60 octets, 12 s, far from a whole
 * frame) until the daemon has closed all 10, which a byte that reset the
 * timeout would never let happen. An honest client meanwhile gets its
 * certificates. */
static void test_slowloris(void)
{
    dproc d;
    start_daemon(&d, "s", "max_frame = 8192; idle_timeout_ms = 1000; io_threads = 1;", NULL);
    enum { N = 10, MAX_OCTETS = 60 };
    int fds[N];
    uint8_t f[4096];
    size_t n = enc_issue(f, sizeof(f), 1, &POOL.items[0], "nf");
    CU_ASSERT_FATAL(n > 2 * MAX_OCTETS);
    for (int i = 0; i < N; i++) {
        fds[i] = raw_connect();
        CU_ASSERT_FATAL(fds[i] >= 0);
    }
    uint64_t t0 = cf_now_ms();
    int closed = 0;
    bool done[N] = {0};
    uint64_t closed_after = 0;
    size_t k;
    for (k = 0; k < MAX_OCTETS && closed < N; k++) {
        for (int i = 0; i < N; i++) {
            if (done[i])
                continue;
            if (send(fds[i], f + k, 1, MSG_NOSIGNAL) != 1) {
                done[i] = true;
                closed++;
                closed_after = cf_now_ms() - t0;
            }
        }
        if (k == 2) { /* the trickle is on: an honest client still works */
            long rss = 0;
            honest(5, NULL, d.pid, &rss);
        }
        cf_sleep_ms(200);
    }
    for (int i = 0; i < N; i++)
        close(fds[i]);
    /* the daemon closed them all while the octets still came */
    CU_ASSERT_EQUAL(closed, N);
    fprintf(stderr, "(all closed after %zu octets, %llu ms) ", k, (unsigned long long)closed_after);
    CU_ASSERT(log_count(d.log, "err=too-slow") >= N);
    daemon_stop_clean(&d);
}

/* 200 frames of an unknown op on one connection: each answered
 * UNSUPPORTED, the connection stays; one info line, the rest at debug,
 * and the count in the close line. */
static void test_unsupported_flood(void)
{
    dproc d;
    start_daemon(&d, "u", "max_frame = 8192; io_threads = 1;", NULL);
    int fd = raw_connect();
    CU_ASSERT_FATAL(fd >= 0);
    uint8_t f[64], buf[8192];
    int answered = 0;
    for (int i = 0; i < 200; i++) {
        size_t n = proto_enc_status_req(f, sizeof(f), (uint64_t)i);
        f[5] = (uint8_t)(i % 2 ? 9 : 200);
        CU_ASSERT_FATAL(send(fd, f, n, MSG_NOSIGNAL) == (ssize_t)n);
        proto_resp r;
        if (raw_response(fd, buf, sizeof(buf), &r, 5000) == 1 && r.status == CF_ST_UNSUPPORTED &&
            r.id == (uint64_t)i)
            answered++;
    }
    CU_ASSERT_EQUAL(answered, 200);
    close(fd);
    uint64_t end = cf_now_ms() + 5000;
    while (cf_now_ms() < end && !log_has(d.log, "unsupported=200"))
        cf_sleep_ms(20);
    CU_ASSERT_TRUE(log_has(d.log, "unsupported=200"));
    CU_ASSERT_EQUAL(log_count(d.log, "event=unsupported"), 1);
    daemon_stop_clean(&d);
}

/* A request parked for an empty job pool is retried on every tick, not
 * only when a job of its ring completes: here the jobs come back when a
 * peer that held them (answers it never read) goes away, with no
 * completion after it; the parked request must not wait for its BUSY
 * deadline. That deadline is 60 s and the answer is waited for 10 s: a
 * request that waited for its deadline would not be answered in time. */
static void test_parked_retry(void)
{
    dproc d;
    start_daemon(&d, "p",
                 "max_frame = 8192; io_threads = 1; busy_deadline_ms = 60000; "
                 "idle_timeout_ms = 10000;",
                 "workers = 1; queue = 4; batch = 1;");
    /* X: 600 ISSUE requests, never read: its output (and its socket
     * buffer) fills, the pool's 5 jobs (queue + a batch per worker)
     * end up holding its unsent answers */
    int x = raw_connect();
    CU_ASSERT_FATAL(x >= 0);
    fcntl(x, F_SETFL, O_NONBLOCK);
    static uint8_t f[600 * 2048];
    size_t n = 0;
    for (int i = 0; i < 600; i++)
        n += enc_issue(f + n, sizeof(f) - n, (uint64_t)i, &POOL.items[(size_t)i % POOL.n], "nf");
    size_t off = 0;
    uint64_t end = cf_now_ms() + 3000;
    while (off < n && cf_now_ms() < end) {
        ssize_t w = send(x, f + off, n - off, MSG_NOSIGNAL);
        if (w > 0)
            off += (size_t)w;
        else
            cf_sleep_ms(5);
    }
    cf_sleep_ms(500);
    CU_ASSERT_EQUAL(status_value("inflight"), 5);
    /* Y: one request, parked (no free job) */
    int y = raw_connect();
    CU_ASSERT_FATAL(y >= 0);
    size_t m = enc_issue(f, sizeof(f), 7, &POOL.items[0], "nf");
    CU_ASSERT_EQUAL(send(y, f, m, MSG_NOSIGNAL), (ssize_t)m);
    cf_sleep_ms(300);
    uint64_t t0 = cf_now_ms();
    close(x); /* its send fails: closed, its jobs freed */
    uint8_t buf[16384];
    proto_resp r;
    CU_ASSERT_EQUAL(raw_response(y, buf, sizeof(buf), &r, 10000), 1);
    uint64_t dt = cf_now_ms() - t0;
    CU_ASSERT_EQUAL(r.status, CF_ST_OK);
    CU_ASSERT_EQUAL(r.id, 7);
    fprintf(stderr, "(parked request answered %llu ms after the jobs came back) ",
            (unsigned long long)dt);
    close(y);
    daemon_stop_clean(&d);
}

/* No log of any run holds the PIN (and each of the five runs left one). */
static void test_no_pin_in_logs(void)
{
    dh_assert_no_pin_in_logs(PIN, 5);
}

int main(int argc, char **argv)
{
    static const cf_test tests[] = {
        {"20 STATUS writers that never read", test_status_writers},
        {"30 ISSUE pipeliners that never read", test_issue_nonreaders},
        {"a flood of unknown ops: one info line", test_unsupported_flood},
        {"slowloris: a frame one octet at a time", test_slowloris},
        {"a parked request retried on the tick", test_parked_retry},
        {"no PIN in any log", test_no_pin_in_logs},
    };
    static const cf_suite suites[] = {
        CF_SUITE("certforged hostile clients", suite_init, suite_clean, tests),
    };
    return CF_TEST_MAIN(argc, argv, suites);
}
