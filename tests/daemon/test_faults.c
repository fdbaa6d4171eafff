/* certforged under sustained load while its HSM fails (issue 8): the
 * daemon signs through the PKCS#11 shim (hsm/shim, docs/shim.md) on a real
 * SoftHSM token, and the test changes the shim's control file while two
 * connections keep 16 requests each in flight:
 *
 *   baseline → every 5th C_Sign CKR_DEVICE_ERROR → every 3rd signature
 *   corrupted (one bit flipped, CKR_OK) → every session invalidated → the
 *   token removed for 2 s → a latency spike (20 ms per signature) → all
 *   faults off.
 *
 * Expect: affected requests answer HSM_FAILURE (never another status, never
 * a certificate); every certificate released verifies against the CA (a
 * corrupted signature is caught by the engine's check of every issued
 * signature); the daemon recovers by itself, without a restart, and
 * issues again after the faults end (a count of certificates in the last
 * phase, and the rate printed against the baseline of this run). */
#include "cf_testutil.h"
#include "cf_daemon.h"

#include "cf_test.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum { PH_BASE, PH_FAIL, PH_CORRUPT, PH_INVALIDATE, PH_REMOVE, PH_SLOW, PH_AFTER, PH__N };
static const char *const PH_NAME[PH__N] = {"baseline",      "device errors", "corrupt sigs",
                                           "sessions gone", "token removed", "latency spike",
                                           "faults off"};

static char CTL[300];
static atomic_int PHASE;
static atomic_bool STOP;
static atomic_long OK[PH__N], HSMF[PH__N], OTHER[PH__N], BADCERT, ANSWERS;
static atomic_long MS[PH__N];

static int suite_init(void)
{
    int rc = dh_suite_init("flt", "1357", "Fault Test CA");
    if (rc != 0)
        return rc;
    snprintf(CTL, sizeof(CTL), "%s/shim.ctl", H.dir);
    FILE *f = fopen(CTL, "w");
    if (!f)
        return -1;
    fclose(f);
    return setenv("CF_SHIM_CONTROL", CTL, 1);
}

static int suite_clean(void)
{
    unsetenv("CF_SHIM_CONTROL");
    return dh_suite_clean();
}

/* Replace the control file atomically (the shim re-reads it on change). */
static void control(const char *text)
{
    char tmp[320];
    snprintf(tmp, sizeof(tmp), "%s.tmp", CTL);
    FILE *f = fopen(tmp, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
    CU_ASSERT_EQUAL(rename(tmp, CTL), 0);
}

static void *load(void *arg)
{
    (void)arg;
    cf_client *c = client();
    if (!c)
        return NULL;
    unsigned inflight = 0, i = 0;
    while (!atomic_load(&STOP) || inflight) {
        while (!atomic_load(&STOP) && inflight < 16) {
            cf_issue_req req;
            fill_req(&req, &POOL.items[i++ % POOL.n], "nf");
            uint64_t id;
            if (cf_client_submit_issue(c, &req, &id) != 0)
                break;
            inflight++;
        }
        cf_response r;
        if (cf_client_next_response(c, 20000, &r) != 0)
            break;
        inflight--;
        int ph = atomic_load(&PHASE);
        atomic_fetch_add(&ANSWERS, 1);
        if (r.status == CF_ST_OK) {
            atomic_fetch_add(&OK[ph], 1);
            if (verify_cert(r.cert.p, r.cert.len) != 0)
                atomic_fetch_add(&BADCERT, 1);
        } else if (r.status == CF_ST_HSM_FAILURE) {
            CU_ASSERT_EQUAL(r.cert.len, 0);
            atomic_fetch_add(&HSMF[ph], 1);
        } else {
            if (atomic_fetch_add(&OTHER[ph], 1) < 3)
                fprintf(stderr, "\n  %s: %s %.*s\n", PH_NAME[ph], cf_status_name(r.status),
                        (int)r.message.len, r.message.p);
        }
    }
    cf_client_close(c);
    return NULL;
}

static void phase(int ph, const char *ctl, unsigned ms)
{
    if (ctl)
        control(ctl);
    uint64_t t0 = cf_now_ms();
    atomic_store(&PHASE, ph);
    cf_sleep_ms(ms);
    atomic_store(&MS[ph], (long)(cf_now_ms() - t0));
}

static void test_faults_under_load(void)
{
    dproc d;
    char conf[300];
    snprintf(conf, sizeof(conf), "%s/faults.conf", H.dir);
    /* the ledger in its own folder: the token's folder stays read-only
     * under the daemon's confinement, through re-logins and a removal */
    char ldir[300], lpath[340];
    snprintf(ldir, sizeof(ldir), "%s/ledger", H.dir);
    snprintf(lpath, sizeof(lpath), "%s/ledger.db", ldir);
    CU_ASSERT_EQUAL_FATAL(mkdir(ldir, 0700), 0);
    conf_opts o = {.shim = true,
                   .ledger_path = lpath,
                   .server = "busy_deadline_ms = 2000;",
                   .pipeline = "workers = 2; queue = 4096; batch = 16; verify_issued = \"all\";"};
    write_conf(conf, &o);
    CU_ASSERT_EQUAL_FATAL(daemon_start(&d, conf, NULL), 0);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, load, NULL);
    phase(PH_BASE, NULL, 1500);
    phase(PH_FAIL, "FAIL_EVERY_N=5\nFAIL_RV=0x30\n", 1500);
    phase(PH_CORRUPT, "RESET=1\nCORRUPT_EVERY_N=3\n", 1500);
    phase(PH_INVALIDATE, "RESET=1\nINVALIDATE_NOW=1\n", 1500);
    phase(PH_REMOVE, "RESET=1\nREMOVE_NOW_MS=2000\n", 3500);
    phase(PH_SLOW, "RESET=1\nSIGN_LATENCY_US=20000\n", 1500);
    phase(PH_AFTER, "RESET=1\n", 500); /* let the slow batches drain */
    long ok_before_after = atomic_load(&OK[PH_AFTER]);
    uint64_t t0 = cf_now_ms();
    cf_sleep_ms(1500);
    long after = atomic_load(&OK[PH_AFTER]) - ok_before_after;
    double after_rate = after * 1000.0 / (double)(cf_now_ms() - t0);
    atomic_store(&STOP, true);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);

    fprintf(stderr, "\n  %-14s %8s %8s %6s %8s\n", "phase", "ok", "hsm_fail", "other", "ok/s");
    for (int p = 0; p < PH__N; p++)
        fprintf(stderr, "  %-14s %8ld %8ld %6ld %8.0f\n", PH_NAME[p], atomic_load(&OK[p]),
                atomic_load(&HSMF[p]), atomic_load(&OTHER[p]),
                MS[p] ? atomic_load(&OK[p]) * 1000.0 / (double)atomic_load(&MS[p]) : 0.0);
    double base = atomic_load(&OK[PH_BASE]) * 1000.0 / (double)atomic_load(&MS[PH_BASE]);
    fprintf(stderr, "  after the faults: %.0f/s = %.0f %% of the baseline\n", after_rate,
            100.0 * after_rate / base);

    CU_ASSERT_EQUAL(atomic_load(&BADCERT), 0);  /* nothing wrong was ever released */
    CU_ASSERT(atomic_load(&OK[PH_BASE]) > 0);
    CU_ASSERT(atomic_load(&HSMF[PH_BASE]) == 0);
    CU_ASSERT(atomic_load(&HSMF[PH_FAIL]) > 0);     /* device errors surface */
    CU_ASSERT(atomic_load(&OK[PH_FAIL]) > 0);       /* the other 4 of 5 still issue */
    CU_ASSERT(atomic_load(&HSMF[PH_CORRUPT]) > 0);  /* caught by the signature check */
    CU_ASSERT(atomic_load(&OK[PH_CORRUPT]) > 0);
    CU_ASSERT(atomic_load(&OK[PH_INVALIDATE]) > 0); /* recovered from lost sessions */
    CU_ASSERT(atomic_load(&HSMF[PH_REMOVE]) > 0);   /* the token was gone */
    CU_ASSERT(atomic_load(&OK[PH_REMOVE]) > 0);     /* and came back */
    CU_ASSERT(atomic_load(&OK[PH_SLOW]) > 0);
    CU_ASSERT(after > 0); /* issuing again, no restart */
    for (int p = 0; p < PH__N; p++)
        CU_ASSERT_EQUAL(atomic_load(&OTHER[p]), 0); /* HSM faults are HSM_FAILURE, not else */
    CU_ASSERT(kill(d.pid, 0) == 0);
    char sp[64];
    snprintf(sp, sizeof(sp), "/proc/%d/status", (int)d.pid);
    char *st = slurp(sp);
    CU_ASSERT(st && strstr(st, "NoNewPrivs:\t1") && strstr(st, "Seccomp:\t2"));
    free(st);
    CU_ASSERT(log_has(d.log, "CKR_DEVICE_ERROR"));
    CU_ASSERT(log_has(d.log, "does not verify"));
    CU_ASSERT(log_has(d.log, "event=confined no_new_privs=yes landlock_abi="));
    daemon_stop_clean(&d);
}

/* A stop must not wait on a hung HSM: each signature takes 30 s. Queued
 * requests are cancelled (BUSY, never signed), the one in the HSM is
 * waited for at most max(drain_timeout, 2 s), then the daemon exits 4
 * (asserted: exit 4 and the log lines, well before the 30 s were up; the
 * time it took is printed). */
static void test_stop_with_hung_hsm(void)
{
    dproc d;
    char conf[300];
    snprintf(conf, sizeof(conf), "%s/hung.conf", H.dir);
    control("RESET=1\n");
    conf_opts o = {.shim = true,
                   .server = "drain_timeout_ms = 500;",
                   .pipeline = "workers = 1; queue = 64; batch = 1;"};
    write_conf(conf, &o);
    CU_ASSERT_EQUAL_FATAL(daemon_start(&d, conf, "30000000"), 0);
    int fd = raw_connect();
    CU_ASSERT_FATAL(fd >= 0);
    static uint8_t f[20 * 2048];
    size_t n = 0;
    for (int i = 0; i < 20; i++)
        n += enc_issue(f + n, sizeof(f) - n, (uint64_t)i, &POOL.items[i], "nf");
    CU_ASSERT_EQUAL(raw_send(fd, f, n), 0);
    cf_sleep_ms(300);
    /* Given 15 s, half the signature's 30: a stop that waited for the HSM
     * would be killed then (daemon_stop returns -1), not exit 4. */
    uint64_t t0 = cf_now_ms();
    int st = daemon_stop(&d, SIGTERM, 15000);
    uint64_t dt = cf_now_ms() - t0;
    close(fd);
    CU_ASSERT_EQUAL(st, 4);
    CU_ASSERT(log_has(d.log, "event=cancelled queued_jobs="));
    CU_ASSERT(log_has(d.log, "event=stop_forced"));
    fprintf(stderr, "\n  stopped in %llu ms with a 30 s signature in the HSM\n",
            (unsigned long long)dt);
}

/* certforged on `conf` signing through the shim with one fault setting
 * (name=value in its environment), its stderr in `log`. */
static pid_t start_through_shim(const char *conf, const char *log, const char *name,
                                const char *value)
{
    pid_t pid = fork();
    if (pid == 0) {
        int lf = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(lf, 2);
        setenv("CF_SHIM_MODULE", H.module, 1);
        setenv(name, value, 1);
        execl(DAEMON, DAEMON, "--config", conf, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* SIGTERM while start-up hangs (the first CRL waits on a 30 s signature):
 * the daemon exits 0 without waiting for the signature. */
static void test_signal_during_startup(void)
{
    char conf[300], crl_dir[300], extra[400], log[300];
    snprintf(conf, sizeof(conf), "%s/startup.conf", H.dir);
    snprintf(crl_dir, sizeof(crl_dir), "%s/crl-startup", H.dir);
    CU_ASSERT_EQUAL_FATAL(mkdir(crl_dir, 0700), 0);
    snprintf(extra, sizeof(extra), "crl = { dir = \"%s\"; };", crl_dir);
    conf_opts o = {.shim = true, .extra = extra};
    write_conf(conf, &o);
    snprintf(log, sizeof(log), "%s/startup.log", H.dir);
    pid_t pid = start_through_shim(conf, log, "CF_SHIM_SIGN_LATENCY_US", "30000000");
    uint64_t end = cf_now_ms() + 10000;
    while (cf_now_ms() < end && !log_has(log, "event=ledger_open"))
        cf_sleep_ms(20);
    cf_sleep_ms(500); /* in the first CRL's signature now */
    CU_ASSERT_FALSE(log_has(log, "certforged: ready"));
    /* Given 10 s, a third of the signature's 30: a daemon that waited for
     * it is killed then, and does not exit 0. */
    uint64_t t0 = cf_now_ms();
    kill(pid, SIGTERM);
    int st = -1;
    bool exited = false;
    end = cf_now_ms() + 10000;
    while (cf_now_ms() < end && !(exited = waitpid(pid, &st, WNOHANG) == pid))
        cf_sleep_ms(10);
    uint64_t dt = cf_now_ms() - t0;
    if (!exited) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    fprintf(stderr, "\n  exited %llu ms after SIGTERM, a 30 s signature pending\n",
            (unsigned long long)dt);
    CU_ASSERT_TRUE(exited);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CU_ASSERT(log_has(log, "phase=start-up"));
}

/* Every signature corrupted (one bit, CKR_OK): the first CRL's signature
 * does not verify over its TBS with the issuer key, so certforged never
 * publishes it and refuses to start, saying why; no CRL file appears. */
static void test_corrupt_crl_not_published(void)
{
    char conf[300], crl_dir[300], extra[400], log[300], crl_file[340];
    snprintf(conf, sizeof(conf), "%s/corrupt-crl.conf", H.dir);
    snprintf(crl_dir, sizeof(crl_dir), "%s/crl-corrupt", H.dir);
    snprintf(crl_file, sizeof(crl_file), "%s/ca.crl", crl_dir);
    CU_ASSERT_EQUAL_FATAL(mkdir(crl_dir, 0700), 0);
    snprintf(extra, sizeof(extra), "crl = { dir = \"%s\"; };", crl_dir);
    conf_opts o = {.shim = true, .extra = extra};
    write_conf(conf, &o);
    snprintf(log, sizeof(log), "%s/corrupt-crl.log", H.dir);
    pid_t pid = start_through_shim(conf, log, "CF_SHIM_CORRUPT_EVERY_N", "1");
    int st = -1;
    bool exited = false;
    uint64_t end = cf_now_ms() + 30000;
    while (cf_now_ms() < end && !(exited = waitpid(pid, &st, WNOHANG) == pid))
        cf_sleep_ms(20);
    if (!exited) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    CU_ASSERT_TRUE(exited);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) != 0);
    CU_ASSERT(log_has(log, "the CRL's signature does not verify with the issuer key"));
    CU_ASSERT_NOT_EQUAL(access(crl_file, F_OK), 0);
}

int main(int argc, char **argv)
{
    static const cf_test tests[] = {
        {"faults under load: HSM_FAILURE, nothing wrong released, recovery",
         test_faults_under_load},
        {"stop with a hung HSM: bounded, exit 4", test_stop_with_hung_hsm},
        {"SIGTERM during a hung start-up", test_signal_during_startup},
        {"a CRL with a corrupted signature is never published", test_corrupt_crl_not_published},
    };
    static const cf_suite suites[] = {
        CF_SUITE("certforged with a failing HSM under load", suite_init, suite_clean, tests),
    };
    return CF_TEST_MAIN(argc, argv, suites);
}
