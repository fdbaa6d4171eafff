/* Fair share per peer (issue 19 item 1, docs/certforged.md "Limits and
 * bad input"): no uid locks the others out.
 *
 *   - one uid (root, the test) holds connections up to the global limit;
 *     another (nobody, a forked child) still connects — a reserved slot —
 *     and gets every certificate it asks for (counted), then opens more
 *     connections up to its fair share, each costing the first uid its
 *     oldest idle connection (closed, reason=fair-share);
 *   - a uid over server.peer_max_connections is refused with a message
 *     naming the setting;
 *   - a uid over server.peer_max_inflight is answered BUSY for the extra
 *     requests, at once, the rest issued;
 *   - a profile a peer may not use is UNAUTHORIZED whether it exists or
 *     not; only a peer granted every profile hears UNKNOWN_PROFILE
 *     (issue 19 item 7).
 *
 * Needs root (a second uid): skipped otherwise. */
#include "cf_testutil.h"
#include "cf_daemon.h"

#include "cf_test.h"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PIN "Fr4-share-pin"
#define OTHER_UID 65534u

static char SDIR[64], FSOCK[90];

static int suite_init(void)
{
    if (geteuid() != 0) {
        cf_test_skip("needs root: a second uid is a forked child that drops to uid %u", OTHER_UID);
        return 1;
    }
    int rc = dh_suite_init("fair", PIN, "Fairness Test CA");
    if (rc != 0)
        return rc;
    /* the socket where the other uid can reach it (H.dir is 0700) */
    snprintf(SDIR, sizeof(SDIR), "/tmp/cf-fair.XXXXXX");
    if (!mkdtemp(SDIR) || chmod(SDIR, 0755) != 0)
        return cf_test_setup_failed("socket folder: %s", strerror(errno));
    snprintf(FSOCK, sizeof(FSOCK), "%s/cf.sock", SDIR);
    snprintf(SOCK, sizeof(SOCK), "%s", FSOCK); /* raw_connect and client() use SOCK */
    return 0;
}

static int suite_clean(void)
{
    cf_sh("rm -rf '%s'", SDIR);
    return dh_suite_clean();
}

static void start(dproc *d, const char *name, const char *server)
{
    char conf[300], grants[300];
    snprintf(conf, sizeof(conf), "%s/%s.conf", H.dir, name);
    snprintf(grants, sizeof(grants),
             "( { uid = 0; profiles = [\"*\"]; ops = [\"issue\", \"status\"]; },"
             "  { uid = %u; profiles = [\"nf\"]; ops = [\"issue\", \"status\"]; } )",
             OTHER_UID);
    conf_opts o = {.server = server, .grants = grants, .socket = FSOCK};
    write_conf(conf, &o);
    CU_ASSERT_EQUAL_FATAL(daemon_start(d, conf, NULL), 0);
}

/* A new raw connection, or -1 when the daemon refused it (a BUSY frame,
 * then EOF, within 300 ms); msg gets the refusal's message. */
static int connect_kept(char *msg, size_t msglen)
{
    int fd = raw_connect();
    if (fd < 0)
        return -1;
    uint8_t buf[512];
    proto_resp r;
    if (raw_response(fd, buf, sizeof(buf), &r, 300) == 1) {
        if (msg)
            snprintf(msg, msglen, "%s %.*s", cf_status_name(r.status), (int)r.message.len,
                     r.message.p);
        close(fd);
        return -1;
    }
    return fd;
}

/* In a child dropped to OTHER_UID: issue n certificates, then open up to
 * extra more connections. Reports (ok, kept, unauthorized for "nope"). */
typedef struct other_result {
    int ok, kept, nope_unauthorized;
} other_result;

static other_result as_other_uid(int n, int extra)
{
    other_result res = {-1, -1, -1};
    int pfd[2];
    if (pipe(pfd) != 0)
        return res;
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        other_result o = {0, 0, 0};
        if (setresuid(OTHER_UID, OTHER_UID, OTHER_UID) != 0)
            _exit(1);
        cf_client *c = client();
        for (int i = 0; c && i < n; i++) {
            cf_issue_req req;
            fill_req(&req, &POOL.items[i % POOL.n], "nf");
            cf_response r;
            if (cf_issue_one(c, &req, 10000, &r) == 0 && r.status == CF_ST_OK &&
                verify_cert(r.cert.p, r.cert.len) == 0)
                o.ok++;
        }
        cf_issue_req req;
        fill_req(&req, &POOL.items[0], "nope");
        cf_response r;
        if (c && cf_issue_one(c, &req, 10000, &r) == 0 && r.status == CF_ST_UNAUTHORIZED)
            o.nope_unauthorized = 1;
        for (int i = 0; i < extra; i++)
            if (connect_kept(NULL, 0) >= 0)
                o.kept++; /* left open until the child exits */
        ssize_t w = write(pfd[1], &o, sizeof(o));
        _exit(w == sizeof(o) ? 0 : 1);
    }
    close(pfd[1]);
    if (pid < 0 || read(pfd[0], &res, sizeof(res)) != sizeof(res))
        res.ok = -1;
    close(pfd[0]);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    return res;
}

static void test_one_uid_cannot_lock_out_another(void)
{
    dproc d;
    start(&d, "full", "max_connections = 16; peer_reserve = 4; io_threads = 1;");
    /* root takes every connection the server gives it */
    int hog[32], nh = 0;
    char why[200] = "";
    while (nh < 32) {
        int fd = connect_kept(why, sizeof(why));
        if (fd < 0)
            break;
        hog[nh++] = fd;
    }
    CU_ASSERT_EQUAL(nh, 16);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "too many connections"));
    /* a uid with none gets a reserved slot and every certificate; then
     * connections up to its fair share (16 / 2 uids = 8: 7 more), each
     * closing one of root's idle ones */
    other_result o = as_other_uid(40, 10);
    fprintf(stderr, "\n  other uid: %d of 40 certificates, %d more connections kept\n", o.ok,
            o.kept);
    CU_ASSERT_EQUAL(o.ok, 40);
    CU_ASSERT_EQUAL(o.kept, 7);
    CU_ASSERT_EQUAL(o.nope_unauthorized, 1);
    int closed = 0;
    for (int i = 0; i < nh; i++)
        closed += raw_eof(hog[i], 200);
    CU_ASSERT_EQUAL(closed, 7);
    CU_ASSERT_EQUAL(log_count(d.log, "reason=fair-share"), 7);
    /* root, granted every profile, hears that a profile does not exist */
    cf_client *c = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    cf_issue_req req;
    fill_req(&req, &POOL.items[1], "nope");
    cf_response r;
    CU_ASSERT_EQUAL(cf_issue_one(c, &req, 10000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_UNKNOWN_PROFILE);
    cf_client_close(c);
    for (int i = 0; i < nh; i++)
        close(hog[i]);
    daemon_stop_clean(&d);
}

static void test_peer_max_connections(void)
{
    dproc d;
    start(&d, "peercap", "peer_max_connections = 3;");
    int fds[4], n = 0;
    char why[200] = "";
    while (n < 4) {
        int fd = connect_kept(why, sizeof(why));
        if (fd < 0)
            break;
        fds[n++] = fd;
    }
    CU_ASSERT_EQUAL(n, 3);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "BUSY"));
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "server.peer_max_connections"));
    CU_ASSERT(log_has(d.log, "reason=peer-max-connections"));
    /* another uid is not held by root's cap */
    other_result o = as_other_uid(5, 0);
    CU_ASSERT_EQUAL(o.ok, 5);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    daemon_stop_clean(&d);
}

static void test_peer_max_inflight(void)
{
    dproc d;
    start(&d, "inflight", "peer_max_inflight = 4;");
    int fd = raw_connect();
    CU_ASSERT_FATAL(fd >= 0);
    static uint8_t f[20 * 2048];
    size_t n = 0;
    for (int i = 0; i < 20; i++)
        n += enc_issue(f + n, sizeof(f) - n, (uint64_t)i + 1, &POOL.items[i], "nf");
    CU_ASSERT_EQUAL(raw_send(fd, f, n), 0);
    int ok = 0, busy = 0, other = 0;
    static uint8_t buf[70000];
    for (int i = 0; i < 20; i++) {
        proto_resp r;
        if (raw_response(fd, buf, sizeof(buf), &r, 10000) != 1) {
            other++;
            break;
        }
        if (r.status == CF_ST_OK)
            ok++;
        else if (r.status == CF_ST_BUSY && memmem(r.message.p, r.message.len, "for uid", 7))
            busy++;
        else
            other++;
    }
    close(fd);
    fprintf(stderr, "\n  20 pipelined, peer_max_inflight = 4: %d OK, %d BUSY\n", ok, busy);
    CU_ASSERT_EQUAL(ok + busy, 20);
    CU_ASSERT_EQUAL(other, 0);
    CU_ASSERT(ok >= 4);
    CU_ASSERT(busy >= 1);
    daemon_stop_clean(&d);
}

static void test_no_pin_in_logs(void)
{
    dh_assert_no_pin_in_logs(PIN, 3);
}

int main(int argc, char **argv)
{
    static const cf_test tests[] = {
        {"one uid at the connection limit: another still connects and issues",
         test_one_uid_cannot_lock_out_another},
        {"peer_max_connections refuses a uid's extra connection", test_peer_max_connections},
        {"peer_max_inflight answers BUSY for a uid's extra requests", test_peer_max_inflight},
        {"no PIN in any log", test_no_pin_in_logs},
    };
    static const cf_suite suites[] = {
        CF_SUITE("fair share per peer", suite_init, suite_clean, tests),
    };
    return CF_TEST_MAIN(argc, argv, suites);
}
