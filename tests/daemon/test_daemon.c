/* certforged end to end: the built daemon runs as a child process (stderr
 * to a log file) on a SoftHSM token with a CA made by the certforge CLI;
 * the tests talk to it with libcertforge and with raw sockets for the bad
 * input. Each daemon run is stopped by its PID and must exit 0 (under the
 * asan stage the daemon is ASan/LSan-built: a leak or error fails the
 * exit status or shows in the log). The PIN must never reach a log.
 *
 * Daemons (configs built by write_conf):
 *   A  the main one: uid granted issue/status/keys on profile "nf" (not
 *      "nf2"), max_connections 8, max_frame 8192, idle timeout 1 s
 *   B  slow HSM (shim, 150 ms per signature, 1 worker, batch 1): per
 *      connection in-flight limit, queue deadline BUSY, SIGTERM drain
 *   C, D  grants that exclude this process (ops, then uid)
 */
#include "cf_testutil.h"
#include "cf_daemon.h"
#include "client/certforge.h"
#include "bench/csr_pool.h"
#include "proto/proto.h"

#include "cf_test.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
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

#define PIN "Zq8x7Wv-pin"

/* Token, CA, config writer, daemon start/stop, clients: tests/support/cf_daemon.c. */
static int suite_init(void)
{
    return dh_suite_init("dmn", PIN, "Daemon Test CA");
}

/* ------------------------------------------------------------ daemon A */

static dproc A, B;

/* A test that stopped half-way (a fatal assertion) may leave A or B up. */
static int suite_clean(void)
{
    if (A.pid > 0)
        daemon_stop(&A, SIGKILL, 1000);
    if (B.pid > 0)
        daemon_stop(&B, SIGKILL, 1000);
    return dh_suite_clean();
}

static void start_a(void)
{
    char conf[400];
    snprintf(conf, sizeof(conf), "%s/a.conf", H.dir);
    conf_opts o = {.server = "socket_mode = \"0600\"; max_connections = 8; max_frame = 8192; "
                             "max_inflight = 1024; idle_timeout_ms = 1000; io_threads = 2;"};
    write_conf(conf, &o);
    CU_ASSERT_FATAL(daemon_start(&A, conf, NULL) == 0);
    struct stat sb;
    CU_ASSERT_EQUAL(stat(SOCK, &sb), 0);
    CU_ASSERT_TRUE(S_ISSOCK(sb.st_mode));
    CU_ASSERT_EQUAL(sb.st_mode & 0777, 0600);
    CU_ASSERT_TRUE(log_has(A.log, "level=info event=ready socket="));
}

static void test_issue(void)
{
    start_a();
    cf_client *c = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    for (int i = 0; i < 5; i++) {
        cf_issue_req req;
        fill_req(&req, &POOL.items[i], "nf");
        cf_response r;
        CU_ASSERT_EQUAL_FATAL(cf_issue_one(c, &req, 10000, &r), 0);
        if (r.status != CF_ST_OK)
            fprintf(stderr, "\n%s: %.*s\n", cf_status_name(r.status), (int)r.message.len,
                    r.message.p);
        CU_ASSERT_EQUAL_FATAL(r.status, CF_ST_OK);
        CU_ASSERT_EQUAL(verify_cert(r.cert.p, r.cert.len), 0);
        /* the chain is the issuer's certificate */
        CU_ASSERT_EQUAL(r.n_chain, 1);
        CU_ASSERT(r.n_chain == 1 && r.chain[0].len == (size_t)CA_DER_LEN &&
                  memcmp(r.chain[0].p, CA_DER, (size_t)CA_DER_LEN) == 0);
        /* the serial field is the certificate's */
        const unsigned char *p = r.cert.p;
        X509 *x = d2i_X509(NULL, &p, (long)r.cert.len);
        CU_ASSERT_PTR_NOT_NULL_FATAL(x);
        ASN1_INTEGER *sn = X509_get_serialNumber(x);
        CU_ASSERT(r.serial.len == (size_t)sn->length &&
                  memcmp(r.serial.p, sn->data, r.serial.len) == 0);
        X509_free(x);
    }
    cf_client_close(c);
}

static void test_status_keys(void)
{
    cf_client *c = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    cf_response r;
    char v[64];
    CU_ASSERT_EQUAL_FATAL(cf_client_status(c, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_OK);
    static const char *const keys[] = {
        "uptime_s", "issued",      "rate_per_s",        "queue_depth",
        "inflight", "connections", "hsm_sessions_busy", "hsm_sessions_total",
        "version"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        CU_ASSERT_PTR_NOT_NULL(kv_get(&r, keys[i], v, sizeof(v)));
    CU_ASSERT(kv_get(&r, "issued", v, sizeof(v)) && atol(v) >= 5);
    CU_ASSERT(kv_get(&r, "hsm_sessions_total", v, sizeof(v)) && atol(v) == 2);
    CU_ASSERT(kv_get(&r, "connections", v, sizeof(v)) && atol(v) >= 1);
    CU_ASSERT(kv_get(&r, "version", v, sizeof(v)) && strcmp(v, CF_VERSION) == 0);

    CU_ASSERT_EQUAL_FATAL(cf_client_keys(c, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_OK);
    CU_ASSERT_EQUAL_FATAL(r.n_keys, 1);
    CU_ASSERT(r.keys[0].name.len == 2 && memcmp(r.keys[0].name.p, "ca", 2) == 0);
    CU_ASSERT(r.keys[0].type.len == 7 && memcmp(r.keys[0].type.p, "ec-p256", 7) == 0);
    uint8_t *spki = NULL;
    int sl = i2d_PUBKEY(X509_get0_pubkey(CA), &spki);
    CU_ASSERT(sl > 0 && r.keys[0].spki.len == (size_t)sl &&
              memcmp(r.keys[0].spki.p, spki, (size_t)sl) == 0);
    OPENSSL_free(spki);
    cf_client_close(c);
}

/* The daemon's threads carry names an operator sees in top -H, ps -L and
 * perf: two rings (ring 0 on the main thread, which keeps the process's
 * name for pgrep), two workers, the recorder and the admin thread here. */
static void test_thread_names(void)
{
    char path[64], all[512] = "";
    snprintf(path, sizeof(path), "/proc/%d/task", (int)A.pid);
    DIR *d = opendir(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char cp[384], name[32] = "";
        snprintf(cp, sizeof(cp), "%s/%s/comm", path, de->d_name);
        FILE *f = fopen(cp, "r");
        if (f && fgets(name, sizeof(name), f))
            name[strcspn(name, "\n")] = '\0';
        if (f)
            fclose(f);
        size_t l = strlen(all);
        snprintf(all + l, sizeof(all) - l, "[%s]", name);
    }
    closedir(d);
    static const char *const want[] = {"[certforged]",  "[cf-ring/1]",   "[cf-worker/0]",
                                       "[cf-worker/1]", "[cf-recorder]", "[cf-admin]"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (!strstr(all, want[i]))
            fprintf(stderr, "\nno thread %s among %s\n", want[i], all);
        CU_ASSERT_PTR_NOT_NULL(strstr(all, want[i]));
    }
}

typedef struct pl_arg {
    int idx, n, ok, verified;
    char err[256];
} pl_arg;

static void *pipeline_thread(void *arg)
{
    pl_arg *a = arg;
    cf_client *c = client();
    if (!c) {
        snprintf(a->err, sizeof(a->err), "connect failed");
        return NULL;
    }
    int sent = 0, got = 0;
    while (got < a->n) {
        while (sent < a->n) {
            cf_issue_req req;
            fill_req(&req, &POOL.items[(size_t)(a->idx * 7 + sent) % POOL.n], "nf");
            uint64_t id;
            int r = cf_client_submit_issue(c, &req, &id);
            if (r == 1)
                break;
            if (r != 0) {
                snprintf(a->err, sizeof(a->err), "submit: %s", cf_client_error(c));
                goto out;
            }
            sent++;
        }
        if (cf_client_flush(c, 0) < 0) {
            snprintf(a->err, sizeof(a->err), "flush: %s", cf_client_error(c));
            goto out;
        }
        cf_response r;
        int rc = cf_client_next_response(c, 20000, &r);
        if (rc != 0) {
            snprintf(a->err, sizeof(a->err), "next_response %d: %s", rc, cf_client_error(c));
            goto out;
        }
        got++;
        if (r.status == CF_ST_OK) {
            a->ok++;
            if (got % 100 == 0 && verify_cert(r.cert.p, r.cert.len) == 0)
                a->verified++;
        } else if (!a->err[0]) {
            snprintf(a->err, sizeof(a->err), "%s: %.*s", cf_status_name(r.status),
                     (int)r.message.len, r.message.p);
        }
    }
out:
    cf_client_close(c);
    return NULL;
}

/* 2,000 requests pipelined on 4 connections, answered out of order. */
static void test_pipelining(void)
{
    pthread_t th[4];
    pl_arg args[4];
    long before = status_value("issued");
    for (int i = 0; i < 4; i++) {
        memset(&args[i], 0, sizeof(args[i]));
        args[i].idx = i;
        args[i].n = 500;
        pthread_create(&th[i], NULL, pipeline_thread, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        if (args[i].err[0])
            fprintf(stderr, "\nthread %d: %s\n", i, args[i].err);
        CU_ASSERT_EQUAL(args[i].ok, 500);
        CU_ASSERT_EQUAL(args[i].verified, 5);
    }
    CU_ASSERT_EQUAL(status_value("issued"), before + 2000);
}

static void test_bad_requests(void)
{
    cf_client *c = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    cf_issue_req req;
    cf_response r;
    /* not a CSR */
    static const uint8_t junk[] = {0x30, 0x03, 0x02, 0x01, 0x00};
    fill_req(&req, &POOL.items[0], "nf");
    req.csr_der = junk;
    req.csr_len = sizeof(junk);
    CU_ASSERT_EQUAL_FATAL(cf_issue_one(c, &req, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_BAD_CSR);
    CU_ASSERT_EQUAL(r.detail, 1);
    /* a broken signature: proof of possession fails */
    uint8_t *bad = malloc(POOL.items[1].len);
    memcpy(bad, POOL.items[1].der, POOL.items[1].len);
    bad[POOL.items[1].len - 5] ^= 0x01;
    fill_req(&req, &POOL.items[1], "nf");
    req.csr_der = bad;
    CU_ASSERT_EQUAL_FATAL(cf_issue_one(c, &req, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_BAD_CSR);
    CU_ASSERT_EQUAL(r.detail, 6);
    free(bad);
    /* a SAN the front end did not authorize */
    fill_req(&req, &POOL.items[2], "nf");
    req.fqdns[0] = (cf_str){"other.example.org", 17};
    CU_ASSERT_EQUAL_FATAL(cf_issue_one(c, &req, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_POLICY_DENIED);
    /* no such profile: to a peer not granted every profile, refused as
     * one it may not use (it learns no profile names; issue 19) */
    fill_req(&req, &POOL.items[3], "nope");
    CU_ASSERT_EQUAL_FATAL(cf_issue_one(c, &req, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_UNAUTHORIZED);
    /* a profile this uid is not granted */
    fill_req(&req, &POOL.items[3], "nf2");
    CU_ASSERT_EQUAL_FATAL(cf_issue_one(c, &req, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_UNAUTHORIZED);
    CU_ASSERT_TRUE(log_has(A.log, "event=unauthorized"));
    /* the connection still works */
    CU_ASSERT_EQUAL(cf_client_status(c, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_OK);
    cf_client_close(c);
}

/* A request frame larger than a job's inline copy (4 KiB) takes one of the
 * max_frame buffers. */
static void test_large_frame(void)
{
    cf_client *c = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    static char names[48][128];
    cf_issue_req req;
    fill_req(&req, &POOL.items[5], "nf");
    for (unsigned i = 1; i < 48; i++) {
        snprintf(names[i], sizeof(names[i]), "host%02u.%.60s.5gc.mnc001.mcc001.3gppnetwork.org", i,
                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        req.fqdns[i] = (cf_str){names[i], strlen(names[i])};
    }
    req.n_fqdns = 48;
    uint8_t f[8192];
    CU_ASSERT(proto_enc_issue_req(f, sizeof(f), 1, &req) > 4096);
    cf_response r;
    CU_ASSERT_EQUAL_FATAL(cf_issue_one(c, &req, 10000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_OK);
    if (r.status == CF_ST_OK)
        CU_ASSERT_EQUAL(verify_cert(r.cert.p, r.cert.len), 0);
    cf_client_close(c);
}

/* A client that pipelines and never reads: its answers fill its output
 * buffer, then the daemon stops reading it; others are still served; once
 * nothing of it is in the pipeline it is closed as idle. */
static void test_slow_reader(void)
{
    int fd = raw_connect();
    CU_ASSERT_FATAL(fd >= 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    uint8_t f[2048];
    int sent = 0;
    uint64_t end = cf_now_ms() + 5000, progress = cf_now_ms();
    while (sent < 3000 && cf_now_ms() < end) {
        size_t n =
            enc_issue(f, sizeof(f), (uint64_t)sent, &POOL.items[(size_t)sent % POOL.n], "nf");
        size_t off = 0;
        while (off < n && cf_now_ms() < end) {
            ssize_t w = send(fd, f + off, n - off, MSG_NOSIGNAL);
            if (w > 0) {
                off += (size_t)w;
                progress = cf_now_ms();
            } else if (errno == EAGAIN && cf_now_ms() - progress < 300) {
                cf_sleep_ms(5); /* the daemon stopped reading us: done after 300 ms */
            } else {
                break;
            }
        }
        if (off < n)
            break;
        sent++;
    }
    CU_ASSERT(sent > 100);
    /* meanwhile another client is served */
    cf_client *c = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    cf_response r;
    CU_ASSERT_EQUAL(cf_client_status(c, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_OK);
    cf_client_close(c);
    long rss = daemon_rss_kb(A.pid);
    CU_ASSERT(rss > 0 && rss < 512 * 1024);
    /* closed once stalled (1 s without progress, nothing in the pipeline) */
    end = cf_now_ms() + 10000;
    while (cf_now_ms() < end && !log_has(A.log, "reason=stalled-reader"))
        cf_sleep_ms(50);
    if (!log_has(A.log, "reason=stalled-reader")) {
        char *t = slurp(A.log);
        size_t l = t ? strlen(t) : 0;
        fprintf(stderr, "\nsent %d; log tail:\n%s\n", sent, t ? t + (l > 3000 ? l - 3000 : 0) : "");
        free(t);
        CU_FAIL("the stalled reader was not closed");
    }
    close(fd);
    end = cf_now_ms() + 5000;
    while (cf_now_ms() < end && status_value("inflight") != 0)
        cf_sleep_ms(20);
    CU_ASSERT_EQUAL(status_value("inflight"), 0);
}

/* Send bytes on a fresh connection; expect one answer (status, op, id) and
 * then either a close or a connection that still serves STATUS. */
static void raw_case(const uint8_t *bytes, size_t n, cf_status want, uint8_t op, uint64_t id,
                     bool closes)
{
    int fd = raw_connect();
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(raw_send(fd, bytes, n), 0);
    uint8_t buf[8192];
    proto_resp r;
    int rc = raw_response(fd, buf, sizeof(buf), &r, 5000);
    CU_ASSERT_EQUAL(rc, 1);
    if (rc == 1) {
        CU_ASSERT_EQUAL(r.status, want);
        CU_ASSERT_EQUAL(r.op, op);
        CU_ASSERT_EQUAL(r.id, id);
    }
    if (closes) {
        CU_ASSERT_TRUE(raw_eof(fd, 5000));
    } else {
        uint8_t req[64];
        size_t l = proto_enc_status_req(req, sizeof(req), 77);
        CU_ASSERT_EQUAL(raw_send(fd, req, l), 0);
        CU_ASSERT_EQUAL(raw_response(fd, buf, sizeof(buf), &r, 5000), 1);
        CU_ASSERT_EQUAL(r.status, CF_ST_OK);
        CU_ASSERT_EQUAL(r.id, 77);
    }
    close(fd);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void test_bad_frames(void)
{
    /* a client that stays connected meanwhile and keeps being served */
    cf_client *bystander = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(bystander);
    uint8_t f[8192];
    size_t n;

    /* a length prefix beyond max_frame (8192): answered at once, op 0 id 0 */
    put32(f, 100000);
    raw_case(f, 4, CF_ST_BAD_FRAME, 0, 0, true);
    /* beyond it with the header present: op and id echoed */
    n = proto_enc_status_req(f, sizeof(f), 5);
    put32(f, 9000);
    raw_case(f, n, CF_ST_BAD_FRAME, PROTO_OP_STATUS, 5, true);
    /* a length prefix below 12 */
    put32(f, 3);
    raw_case(f, 4, CF_ST_BAD_FRAME, 0, 0, true);
    /* version 2: UNSUPPORTED, then closed */
    n = proto_enc_status_req(f, sizeof(f), 6);
    f[4] = 2;
    raw_case(f, n, CF_ST_UNSUPPORTED, PROTO_OP_STATUS, 6, true);
    /* flags set */
    n = proto_enc_status_req(f, sizeof(f), 7);
    f[7] = 1;
    raw_case(f, n, CF_ST_BAD_FRAME, PROTO_OP_STATUS, 7, true);
    /* unknown ops 9 and 200: UNSUPPORTED, the connection stays */
    n = proto_enc_status_req(f, sizeof(f), 8);
    f[5] = 9;
    raw_case(f, n, CF_ST_UNSUPPORTED, 9, 8, false);
    n = proto_enc_status_req(f, sizeof(f), 9);
    f[5] = 200;
    raw_case(f, n, CF_ST_UNSUPPORTED, 200, 9, false);
    /* an ISSUE whose body ends inside a field header */
    n = enc_issue(f, sizeof(f), 10, &POOL.items[0], "nf");
    put32(f, (uint32_t)(n - 4 + 2));
    f[n] = 0x00;
    f[n + 1] = 0x01;
    raw_case(f, n + 2, CF_ST_BAD_FRAME, PROTO_OP_ISSUE, 10, true);
    /* a field overrunning the body */
    n = enc_issue(f, sizeof(f), 11, &POOL.items[0], "nf");
    f[PROTO_HDR_LEN + 2] = 0xff; /* the profile field claims 65535 octets */
    f[PROTO_HDR_LEN + 3] = 0xff;
    raw_case(f, n, CF_ST_BAD_FRAME, PROTO_OP_ISSUE, 11, true);
    /* an ISSUE without a CSR (missing required field) */
    static const uint8_t nocsr[] = {0, 0, 0, 18, 1,  1, 0, 0, 0, 0,   0,
                                    0, 0, 0, 0,  12, 0, 1, 0, 2, 'n', 'f'};
    raw_case(nocsr, sizeof(nocsr), CF_ST_BAD_FRAME, PROTO_OP_ISSUE, 12, true);
    /* a frame that is fine after a bad one in the same write is never read */
    n = proto_enc_status_req(f, sizeof(f), 13);
    f[7] = 1;
    size_t m = proto_enc_status_req(f + n, sizeof(f) - n, 14);
    raw_case(f, n + m, CF_ST_BAD_FRAME, PROTO_OP_STATUS, 13, true);

    /* half a frame, then a hang-up: nothing to answer, the daemon closes */
    int fd = raw_connect();
    CU_ASSERT_FATAL(fd >= 0);
    n = enc_issue(f, sizeof(f), 20, &POOL.items[0], "nf");
    CU_ASSERT_EQUAL(raw_send(fd, f, n / 2), 0);
    shutdown(fd, SHUT_WR);
    CU_ASSERT_TRUE(raw_eof(fd, 5000));
    close(fd);

    /* half a frame, then silence: closed by the idle timeout (1 s; when,
     * the timing suite checks), logged as a stall in the middle of a frame */
    fd = raw_connect();
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(raw_send(fd, f, n / 2), 0);
    CU_ASSERT_TRUE(raw_eof(fd, 5000));
    CU_ASSERT_TRUE(log_wait(A.log, "reason=stalled-mid-frame", 5000));
    close(fd);
    /* an idle connection (no bytes at all) too */
    fd = raw_connect();
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_TRUE(raw_eof(fd, 5000));
    close(fd);

    /* a client that disconnects with requests in flight */
    fd = raw_connect();
    CU_ASSERT_FATAL(fd >= 0);
    for (int i = 0; i < 40; i++) {
        n = enc_issue(f, sizeof(f), 100 + (uint64_t)i, &POOL.items[(size_t)i % POOL.n], "nf");
        CU_ASSERT_EQUAL(raw_send(fd, f, n), 0);
    }
    close(fd);

    CU_ASSERT_TRUE(log_has(A.log, "event=bad_frame"));
    CU_ASSERT_TRUE(log_has(A.log, "err=too-large"));
    CU_ASSERT_TRUE(log_has(A.log, "err=truncated"));
    CU_ASSERT_TRUE(log_has(A.log, "err=stalled"));

    /* the bystander (idle for > 1 s: it was closed) reconnects and is served */
    cf_client_close(bystander);
    bystander = client();
    cf_response r;
    CU_ASSERT_EQUAL(cf_client_status(bystander, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_OK);
    char v[64];
    CU_ASSERT(kv_get(&r, "errors.BAD_FRAME", v, sizeof(v)) && atol(v) >= 8);
    CU_ASSERT(kv_get(&r, "errors.UNSUPPORTED", v, sizeof(v)) && atol(v) >= 3);
    cf_client_close(bystander);
    /* the in-flight requests of the vanished client all come back */
    uint64_t end = cf_now_ms() + 10000;
    while (cf_now_ms() < end && status_value("inflight") != 0)
        cf_sleep_ms(20);
    CU_ASSERT_EQUAL(status_value("inflight"), 0);
}

/* max_connections = 8: the 9th is accepted and closed at once. */
static void test_max_connections(void)
{
    wait_connections(1);
    int fds[8];
    uint8_t f[256], buf[8192];
    proto_resp r;
    for (int i = 0; i < 8; i++) {
        fds[i] = raw_connect();
        CU_ASSERT_FATAL(fds[i] >= 0);
        size_t n = proto_enc_status_req(f, sizeof(f), (uint64_t)i);
        CU_ASSERT_EQUAL(raw_send(fds[i], f, n), 0);
        CU_ASSERT_EQUAL(raw_response(fds[i], buf, sizeof(buf), &r, 5000), 1);
    }
    int extra = raw_connect();
    CU_ASSERT_FATAL(extra >= 0);
    /* told why (BUSY, op 0, id 0), then closed */
    CU_ASSERT_EQUAL(raw_response(extra, buf, sizeof(buf), &r, 5000), 1);
    CU_ASSERT_EQUAL(r.status, CF_ST_BUSY);
    CU_ASSERT_EQUAL(r.id, 0);
    CU_ASSERT_TRUE(r.message.len > 0 && memmem(r.message.p, r.message.len, "too many", 8));
    CU_ASSERT_TRUE(raw_eof(extra, 5000));
    close(extra);
    /* libcertforge's blocking call returns that BUSY as its answer */
    cf_client *cx = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(cx);
    cf_response rr;
    CU_ASSERT_EQUAL(cf_client_status(cx, 5000, &rr), 0);
    CU_ASSERT_EQUAL(rr.status, CF_ST_BUSY);
    cf_client_close(cx);
    CU_ASSERT_TRUE(log_has(A.log, "event=conn_refused"));
    /* the 8 are still served */
    for (int i = 0; i < 8; i++) {
        size_t n = proto_enc_keys_req(f, sizeof(f), 50 + (uint64_t)i);
        CU_ASSERT_EQUAL(raw_send(fds[i], f, n), 0);
        CU_ASSERT_EQUAL(raw_response(fds[i], buf, sizeof(buf), &r, 5000), 1);
        CU_ASSERT_EQUAL(r.status, CF_ST_OK);
    }
    for (int i = 0; i < 8; i++)
        close(fds[i]);
    wait_connections(1);
    CU_ASSERT_EQUAL(status_value("connections"), 1);
}

/* A second daemon on the same socket is refused; the first keeps serving. */
static void test_socket_in_use(void)
{
    char conf[400];
    snprintf(conf, sizeof(conf), "%s/a.conf", H.dir);
    dproc d2;
    int st = 0;
    CU_ASSERT_EQUAL(daemon_start_ex(&d2, conf, NULL, &st), -1);
    CU_ASSERT_EQUAL(st, 1);
    CU_ASSERT_TRUE(log_has(d2.log, "is in use by a live certforged"));
    CU_ASSERT_TRUE(log_has(d2.log, "server.socket"));
    CU_ASSERT_EQUAL(status_value("connections"), 1);
}

static void test_stop_a(void)
{
    daemon_stop_clean(&A);
    CU_ASSERT_TRUE(log_has(A.log, "event=stop issued="));
}

/* ------------------------------------------------------------ daemon B: slow HSM */

static void test_inflight_limit(void)
{
    char conf[400];
    snprintf(conf, sizeof(conf), "%s/b.conf", H.dir);
    conf_opts o = {.server = "max_inflight = 4; busy_deadline_ms = 100;",
                   .pipeline = "workers = 1; queue = 8; batch = 1;",
                   .shim = true};
    write_conf(conf, &o);
    CU_ASSERT_FATAL(daemon_start(&B, conf, "150000") == 0);
    /* 10 requests at once on one connection: 4 taken, 6 BUSY at once */
    int fd = raw_connect();
    CU_ASSERT_FATAL(fd >= 0);
    static uint8_t f[10 * 2048];
    size_t n = 0;
    for (int i = 0; i < 10; i++)
        n += enc_issue(f + n, sizeof(f) - n, (uint64_t)i, &POOL.items[i], "nf");
    CU_ASSERT_EQUAL(raw_send(fd, f, n), 0);
    int ok = 0, busy = 0;
    uint8_t buf[16384];
    for (int i = 0; i < 10; i++) {
        proto_resp r;
        if (raw_response(fd, buf, sizeof(buf), &r, 10000) != 1)
            break;
        if (r.status == CF_ST_OK)
            ok++;
        if (r.status == CF_ST_BUSY) {
            busy++;
            CU_ASSERT_PTR_NOT_NULL(strstr(r.message.p, "in flight"));
        }
    }
    CU_ASSERT_EQUAL(ok, 4);
    CU_ASSERT_EQUAL(busy, 6);
    close(fd);
}

typedef struct busy_arg {
    int ok, busy, other, answers;
} busy_arg;

static void *busy_thread(void *arg)
{
    busy_arg *a = arg;
    int fd = raw_connect();
    if (fd < 0)
        return NULL;
    uint8_t f[4 * 2048];
    size_t n = 0;
    for (int i = 0; i < 4; i++)
        n += enc_issue(f + n, sizeof(f) - n, (uint64_t)i, &POOL.items[i], "nf");
    if (raw_send(fd, f, n) == 0) {
        uint8_t buf[16384];
        for (int i = 0; i < 4; i++) {
            proto_resp r;
            if (raw_response(fd, buf, sizeof(buf), &r, 15000) != 1)
                break;
            a->answers++;
            if (r.status == CF_ST_OK)
                a->ok++;
            else if (r.status == CF_ST_BUSY && strstr(r.message.p, "queue full"))
                a->busy++;
            else
                a->other++;
        }
    }
    close(fd);
    return NULL;
}

/* 12 requests over 3 connections against a pool of 9 jobs and a signer at
 * 150 ms each: the ones that wait longer than busy_deadline_ms are BUSY;
 * every request is answered. */
static void test_queue_busy(void)
{
    pthread_t th[3];
    busy_arg a[3];
    memset(a, 0, sizeof(a));
    for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, busy_thread, &a[i]);
    int ok = 0, busy = 0, other = 0, answers = 0;
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        ok += a[i].ok;
        busy += a[i].busy;
        other += a[i].other;
        answers += a[i].answers;
    }
    CU_ASSERT_EQUAL(answers, 12);
    CU_ASSERT_EQUAL(other, 0);
    CU_ASSERT(busy >= 1);
    CU_ASSERT(ok >= 9);
    CU_ASSERT_EQUAL(ok + busy, 12);
}

/* SIGTERM with requests in flight: every accepted request is answered,
 * then the connections close; exit 0; the socket file is gone. */
static void test_sigterm_drain(void)
{
    int fds[2];
    uint8_t f[4 * 2048];
    for (int k = 0; k < 2; k++) {
        fds[k] = raw_connect();
        CU_ASSERT_FATAL(fds[k] >= 0);
        size_t n = 0;
        for (int i = 0; i < 4; i++)
            n += enc_issue(f + n, sizeof(f) - n, (uint64_t)(k * 10 + i), &POOL.items[i], "nf");
        CU_ASSERT_EQUAL(raw_send(fds[k], f, n), 0);
    }
    /* wait until all 8 are taken (1 signing, the rest queued) */
    uint64_t end = cf_now_ms() + 5000;
    while (cf_now_ms() < end && status_value("inflight") < 8)
        cf_sleep_ms(5);
    CU_ASSERT_EQUAL(status_value("inflight"), 8);
    kill(B.pid, SIGTERM);
    int ok = 0;
    uint8_t buf[16384];
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 4; i++) {
            proto_resp r;
            if (raw_response(fds[k], buf, sizeof(buf), &r, 10000) != 1)
                break;
            ok += r.status == CF_ST_OK && verify_cert(r.cert.p, r.cert.len) == 0;
        }
        CU_ASSERT_TRUE(raw_eof(fds[k], 5000));
        close(fds[k]);
    }
    CU_ASSERT_EQUAL(ok, 8);
    daemon_stop_clean(&B);
    CU_ASSERT_TRUE(log_has(B.log, "event=signal sig=TERM"));
    CU_ASSERT_TRUE(log_has(B.log, "unanswered=0"));
}

/* A drain that cannot finish in drain_timeout_ms (300 ms, where the 8
 * requests take 8 x 150 ms): what is left is dropped, the client gets
 * fewer than 8 answers and then EOF, the stop line counts what it dropped
 * as unanswered, and the daemon still exits 0 (and clean under the
 * sanitizers). */
static void test_drain_timeout(void)
{
    char conf[400];
    snprintf(conf, sizeof(conf), "%s/b2.conf", H.dir);
    conf_opts o = {.server = "max_inflight = 8; drain_timeout_ms = 300;",
                   .pipeline = "workers = 1; queue = 8; batch = 1;",
                   .shim = true};
    write_conf(conf, &o);
    dproc d;
    CU_ASSERT_FATAL(daemon_start(&d, conf, "150000") == 0);
    int fd = raw_connect();
    CU_ASSERT_FATAL(fd >= 0);
    uint8_t f[8 * 2048];
    size_t n = 0;
    for (int i = 0; i < 8; i++)
        n += enc_issue(f + n, sizeof(f) - n, (uint64_t)i, &POOL.items[i], "nf");
    CU_ASSERT_EQUAL(raw_send(fd, f, n), 0);
    uint64_t end = cf_now_ms() + 5000;
    while (cf_now_ms() < end && status_value("inflight") < 8)
        cf_sleep_ms(5);
    CU_ASSERT_EQUAL(status_value("inflight"), 8);
    daemon_stop_clean(&d);
    CU_ASSERT_TRUE(log_has(d.log, "reason=drain-timeout"));
    CU_ASSERT_FALSE(log_has(d.log, "unanswered=0 "));
    /* what the client got before the daemon went: some answers, not all */
    int answered = 0;
    uint8_t buf[16384];
    proto_resp r;
    while (raw_response(fd, buf, sizeof(buf), &r, 5000) == 1) {
        CU_ASSERT_EQUAL(r.status, CF_ST_OK);
        answered++;
    }
    CU_ASSERT(answered < 8);
    CU_ASSERT_TRUE(raw_eof(fd, 1000));
    char *t = slurp(d.log);
    const char *u = t ? strstr(t, "unanswered=") : NULL;
    CU_ASSERT_PTR_NOT_NULL(u);
    if (u) { /* an answer cut off by the close counts as answered there */
        int unanswered = atoi(u + strlen("unanswered="));
        CU_ASSERT(unanswered >= 1 && unanswered <= 8 - answered);
    }
    fprintf(stderr, "(%d of 8 answered before the drain timed out) ", answered);
    free(t);
    close(fd);
}

/* ------------------------------------------------------------ access, start-up */

static void test_unauthorized(void)
{
    char conf[400], grants[256];
    snprintf(conf, sizeof(conf), "%s/c.conf", H.dir);
    /* this uid may only ask for STATUS */
    snprintf(grants, sizeof(grants), "( { uid = %u; ops = [\"status\"]; } )", (unsigned)getuid());
    conf_opts o = {.grants = grants};
    write_conf(conf, &o);
    dproc d;
    CU_ASSERT_FATAL(daemon_start(&d, conf, NULL) == 0);
    cf_client *c = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    cf_response r;
    CU_ASSERT_EQUAL(cf_client_status(c, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_OK);
    CU_ASSERT_EQUAL(cf_client_keys(c, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_UNAUTHORIZED);
    cf_issue_req req;
    fill_req(&req, &POOL.items[0], "nf");
    CU_ASSERT_EQUAL(cf_issue_one(c, &req, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_UNAUTHORIZED);
    cf_client_close(c);
    char want[128];
    snprintf(want, sizeof(want), "event=unauthorized peer_uid=%u peer_gid=%u peer_pid=%d op=KEYS",
             (unsigned)getuid(), (unsigned)getgid(), (int)getpid());
    CU_ASSERT_TRUE(log_has(d.log, want));
    daemon_stop_clean(&d);

    /* no grant for this uid or gid at all */
    snprintf(grants, sizeof(grants),
             "( { uid = %u; profiles = [\"*\"]; ops = [\"issue\", \"status\"]; }, "
             "{ gid = %u; ops = [\"status\"]; } )",
             (unsigned)getuid() + 1, (unsigned)getgid() + 1);
    o.grants = grants;
    write_conf(conf, &o);
    CU_ASSERT_FATAL(daemon_start(&d, conf, NULL) == 0);
    c = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(cf_client_status(c, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_UNAUTHORIZED);
    CU_ASSERT_EQUAL(cf_issue_one(c, &req, 5000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_UNAUTHORIZED);
    cf_client_close(c);
    CU_ASSERT_TRUE(log_has(d.log, "grants=none"));
    CU_ASSERT_TRUE(log_has(d.log, "event=unauthorized"));
    daemon_stop_clean(&d);
}

/* A socket file left behind by a dead daemon is replaced. */
static void test_stale_socket(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", SOCK);
    CU_ASSERT_EQUAL_FATAL(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd); /* the file stays, nobody listens */
    char conf[400];
    snprintf(conf, sizeof(conf), "%s/a.conf", H.dir);
    dproc d;
    CU_ASSERT_FATAL(daemon_start(&d, conf, NULL) == 0);
    CU_ASSERT_TRUE(log_has(d.log, "event=stale_socket"));
    CU_ASSERT_EQUAL(status_value("connections"), 1);
    /* SIGINT stops it like SIGTERM */
    int st = daemon_stop(&d, SIGINT, 20000);
    CU_ASSERT_EQUAL(st, 0);
    CU_ASSERT_TRUE(log_has(d.log, "event=signal sig=INT"));
}

/* Two daemons started at the same instant on one socket (a stale socket
 * file in place, which both would otherwise replace): exactly one serves,
 * the other is refused naming the lock; the survivor answers. Repeated
 * five times to give the race a chance. */
static void test_simultaneous_start(void)
{
    char conf[400], logs[2][420];
    snprintf(conf, sizeof(conf), "%s/a.conf", H.dir);
    for (int round = 0; round < 5; round++) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sa;
        memset(&sa, 0, sizeof(sa));
        sa.sun_family = AF_UNIX;
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", SOCK);
        unlink(SOCK);
        CU_ASSERT_EQUAL_FATAL(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        close(fd); /* stale */
        pid_t pid[2];
        for (int i = 0; i < 2; i++) {
            snprintf(logs[i], sizeof(logs[i]), "%s/race-%d-%d.log", H.dir, round, i);
            if ((pid[i] = fork()) == 0) {
                int lf = open(logs[i], O_WRONLY | O_CREAT | O_TRUNC, 0600);
                dup2(lf, 2);
                execl(DAEMON, DAEMON, "--config", conf, (char *)NULL);
                _exit(127);
            }
        }
        /* one exits 1 (refused); wait for it, bounded */
        int refused = -1, st = 0;
        uint64_t end = cf_now_ms() + 15000;
        while (refused < 0 && cf_now_ms() < end) {
            for (int i = 0; i < 2 && refused < 0; i++)
                if (waitpid(pid[i], &st, WNOHANG) == pid[i])
                    refused = i;
            cf_sleep_ms(20);
        }
        CU_ASSERT_FATAL(refused >= 0);
        CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 1);
        CU_ASSERT(log_has(logs[refused], "is in use by a live certforged"));
        int live = 1 - refused;
        end = cf_now_ms() + 15000;
        while (cf_now_ms() < end && !log_has(logs[live], "certforged: ready"))
            cf_sleep_ms(20);
        CU_ASSERT(log_has(logs[live], "certforged: ready"));
        CU_ASSERT_EQUAL(status_value("connections"), 1);
        dproc d = {.pid = pid[live]};
        snprintf(d.log, sizeof(d.log), "%.390s", logs[live]);
        CU_ASSERT_EQUAL(daemon_stop(&d, SIGTERM, 20000), 0);
    }
}

/* Start-up refusals name the setting (and file:line); exit status 1. */
static void refused(const char *text, const char *want)
{
    char conf[400];
    snprintf(conf, sizeof(conf), "%s/bad.conf", H.dir);
    FILE *f = fopen(conf, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
    dproc d;
    int st = 0;
    CU_ASSERT_EQUAL(daemon_start_ex(&d, conf, NULL, &st), -1);
    CU_ASSERT_EQUAL(st, 1);
    if (!log_has(d.log, want)) {
        char *t = slurp(d.log);
        fprintf(stderr, "\nwant '%s' in:\n%s\n", want, t ? t : "");
        free(t);
        CU_FAIL("refusal message");
    }
}

static char *conf_text(const conf_opts *o)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/tmp.conf", H.dir);
    write_conf(path, o);
    return slurp(path);
}

static void test_config_errors(void)
{
    char *base = conf_text(&(conf_opts){.server = "max_frame = 8192;"});
    CU_ASSERT_PTR_NOT_NULL_FATAL(base);
    char text[8192], want[512];
    /* an unknown setting, with file:line */
    snprintf(text, sizeof(text), "%s\nserver2 = 1;\n", base);
    int line = 2; /* after the base's last newline, an empty line, then ours */
    for (const char *p = base; *p; p++)
        line += *p == '\n';
    snprintf(want, sizeof(want), "certforged: %s/bad.conf:%d: server2: unknown setting", H.dir,
             line);
    refused(text, want);
    char *at = strstr(base, "max_frame = 8192;");
    snprintf(text, sizeof(text), "%.*smax_frame = 8192; backlog = 3;%s", (int)(at - base), base,
             at + strlen("max_frame = 8192;"));
    refused(text, "server.backlog: unknown setting in server");
    snprintf(text, sizeof(text), "%.*ssocket_mode = \"0666\";%s", (int)(at - base), base,
             at + strlen("max_frame = 8192;"));
    refused(text, "server.socket_mode: '0666' makes the socket world-writable");
    /* an unknown token */
    at = strstr(base, "token = \"ca\"");
    CU_ASSERT_PTR_NOT_NULL_FATAL(at);
    snprintf(text, sizeof(text), "%.*stoken = \"hsm9\"%s", (int)(at - base), base,
             at + strlen("token = \"ca\""));
    refused(text, "keys[0].token: no token named 'hsm9'");
    /* a token that does not exist on the HSM */
    at = strstr(base, "token=dmn");
    snprintf(text, sizeof(text), "%.*stoken=nosuch%s", (int)(at - base), base,
             at + strlen("token=dmn"));
    refused(text, "token 'ca'");
    /* malformed */
    refused("tokens = ( { name = \"x\"; ", "syntax error");
    free(base);
    /* no --config: usage, exit 2 */
    CU_ASSERT_EQUAL(cf_sh("'%s' >/dev/null 2>&1", DAEMON), 2);
    CU_ASSERT_EQUAL(cf_sh("'%s' --config >/dev/null 2>&1", DAEMON), 2);
}

/* ------------------------------------------------------------ timing */

/* The idle timeout (1 s) closes a connection that stopped in the middle of
 * a frame: not before it, and not long after (test_daemon_timing). */
static void test_idle_timeout_timed(void)
{
    char conf[400];
    snprintf(conf, sizeof(conf), "%s/idle.conf", H.dir);
    conf_opts o = {.server = "max_frame = 8192; idle_timeout_ms = 1000;"};
    write_conf(conf, &o);
    dproc d;
    CU_ASSERT_FATAL(daemon_start(&d, conf, NULL) == 0);
    int fd = raw_connect();
    CU_ASSERT_FATAL(fd >= 0);
    uint8_t f[8192];
    size_t n = enc_issue(f, sizeof(f), 20, &POOL.items[0], "nf");
    CU_ASSERT_EQUAL(raw_send(fd, f, n / 2), 0);
    uint64_t t0 = cf_now_ms();
    CU_ASSERT_TRUE(raw_eof(fd, 5000));
    uint64_t dt = cf_now_ms() - t0;
    fprintf(stderr, "(closed after %llu ms) ", (unsigned long long)dt);
    CU_ASSERT(dt >= 700 && dt < 3000);
    close(fd);
    daemon_stop_clean(&d);
}

/* No log of any run holds the PIN (and every run left one). */
static void test_no_pin_in_logs(void)
{
    dh_assert_no_pin_in_logs(PIN, 8);
}

int main(int argc, char **argv)
{
    static const cf_test tests[] = {
        {"issue (chain verifies, chain and serial fields)", test_issue},
        {"STATUS and KEYS", test_status_keys},
        {"thread names", test_thread_names},
        {"2,000 pipelined on 4 connections", test_pipelining},
        {"bad CSRs, unknown and ungranted profiles", test_bad_requests},
        {"a frame over the inline job buffer", test_large_frame},
        {"a client that never reads", test_slow_reader},
        {"bad frames, hang-ups, stalls, vanished clients", test_bad_frames},
        {"max_connections", test_max_connections},
        {"socket in use by a live daemon", test_socket_in_use},
        {"stop: exit 0, socket removed", test_stop_a},
        {"max_inflight: BUSY", test_inflight_limit},
        {"full queue: BUSY after the deadline", test_queue_busy},
        {"SIGTERM with requests in flight", test_sigterm_drain},
        {"drain timeout", test_drain_timeout},
        {"unauthorized peers", test_unauthorized},
        {"stale socket replaced; SIGINT", test_stale_socket},
        {"two daemons started at once: one serves", test_simultaneous_start},
        {"config errors refused, named", test_config_errors},
        {"no PIN in any log", test_no_pin_in_logs},
    };
    static const cf_test timed[] = {
        {"idle timeout: a half frame closed after about 1 s", test_idle_timeout_timed},
    };
    static const cf_suite suites[] = {
        CF_SUITE("certforged", suite_init, suite_clean, tests),
        CF_TIMING_SUITE("certforged, timed", suite_init, suite_clean, timed),
    };
    return CF_TEST_MAIN(argc, argv, suites);
}
