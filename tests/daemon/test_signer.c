/* certforged's signer process (docs/architecture.md, "Processes"; issue 16
 * item 4):
 *
 *   - the process picture: certforged → cf-sign-keeper → cf-signer; only
 *     the signer maps the PKCS#11 module, certforged and the keeper do not;
 *     certforged has no PIN file open and no PIN octet in its memory; the
 *     signer runs with no_new_privs and a seccomp filter;
 *   - kill -9 of the signer under load: every answer is a verifying
 *     certificate or HSM_FAILURE (never another status, never a wrong
 *     signature); the keeper starts a new signer and certificates are
 *     issued again (counted); after the stop, the ledger holds exactly the
 *     certificates the clients received, byte for byte.
 */
#include "cf_testutil.h"
#include "cf_daemon.h"

#include "cf_test.h"
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "engine/ledger/ledger.h"

#define PIN "Sg7-w2Lk-pin"

static int suite_init(void)
{
    return dh_suite_init("sgn", PIN, "Signer Test CA");
}

static int suite_clean(void)
{
    return dh_suite_clean();
}

/* The first child of pid (from /proc/PID/task/PID/children), or 0. */
static pid_t child_of(pid_t pid)
{
    char p[96];
    snprintf(p, sizeof(p), "/proc/%d/task/%d/children", (int)pid, (int)pid);
    char *t = slurp(p);
    pid_t c = t ? (pid_t)atoi(t) : 0;
    free(t);
    return c;
}

static bool comm_is(pid_t pid, const char *name)
{
    char p[64];
    snprintf(p, sizeof(p), "/proc/%d/comm", (int)pid);
    char *t = slurp(p);
    bool r = t && strncmp(t, name, strlen(name)) == 0 && t[strlen(name)] == '\n';
    free(t);
    return r;
}

static bool maps_has(pid_t pid, const char *needle)
{
    char p[64];
    snprintf(p, sizeof(p), "/proc/%d/maps", (int)pid);
    return log_has(p, needle);
}

/* Does any open descriptor of pid point at path? */
static bool has_open(pid_t pid, const char *path)
{
    char d[64];
    snprintf(d, sizeof(d), "/proc/%d/fd", (int)pid);
    DIR *dir = opendir(d);
    bool found = false;
    struct dirent *de;
    while (dir && (de = readdir(dir)) != NULL && !found) {
        char l[400], t[400];
        snprintf(l, sizeof(l), "%s/%s", d, de->d_name);
        ssize_t n = readlink(l, t, sizeof(t) - 1);
        if (n > 0) {
            t[n] = 0;
            found = strcmp(t, path) == 0;
        }
    }
    if (dir)
        closedir(dir);
    return found;
}

/* Search every readable, writable mapping of pid for needle (the test is
 * root, or pid's parent: /proc/PID/mem is readable). Returns 1 found, 0
 * not, -1 when the memory could not be read at all. */
static int mem_has(pid_t pid, const char *needle)
{
    char p[64];
    snprintf(p, sizeof(p), "/proc/%d/maps", (int)pid);
    FILE *maps = fopen(p, "r");
    snprintf(p, sizeof(p), "/proc/%d/mem", (int)pid);
    int mem = open(p, O_RDONLY);
    if (!maps || mem < 0) {
        if (maps)
            fclose(maps);
        if (mem >= 0)
            close(mem);
        return -1;
    }
    size_t nl = strlen(needle), scanned = 0;
    int found = 0;
    char line[512];
    static uint8_t buf[1 << 20];
    while (!found && fgets(line, sizeof(line), maps)) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[0] != 'r' || perms[1] != 'w')
            continue;
        /* a sanitizer's shadow memory: terabytes of untouched pages that
         * read as zeros (the daemon's heaps, stacks and data are far
         * smaller) */
        if (hi - lo > (1UL << 32))
            continue;
        for (unsigned long a = lo; a < hi && !found; a += sizeof(buf) - nl) {
            size_t want = hi - a < sizeof(buf) ? hi - a : sizeof(buf);
            ssize_t n = pread(mem, buf, want, (off_t)a);
            if (n <= 0)
                break;
            scanned += (size_t)n;
            found = memmem(buf, (size_t)n, needle, nl) != NULL;
            if ((size_t)n < want)
                break;
        }
    }
    fclose(maps);
    close(mem);
    return scanned ? found : -1;
}

static void start(dproc *d, const char *name, const char *pipeline)
{
    char conf[300];
    snprintf(conf, sizeof(conf), "%s/%s.conf", H.dir, name);
    char ldir[300], lpath[340];
    snprintf(ldir, sizeof(ldir), "%s/ledger-%s", H.dir, name);
    snprintf(lpath, sizeof(lpath), "%s/ledger.db", ldir);
    CU_ASSERT_EQUAL_FATAL(mkdir(ldir, 0700), 0);
    conf_opts o = {
        .ledger_path = lpath, .server = "busy_deadline_ms = 2000;", .pipeline = pipeline};
    write_conf(conf, &o);
    CU_ASSERT_EQUAL_FATAL(daemon_start(d, conf, NULL), 0);
}

static void test_process_picture(void)
{
    dproc d;
    start(&d, "picture", NULL);
    /* one issuance, so the keys have been used through the signer */
    cf_client *c = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    cf_issue_req req;
    fill_req(&req, &POOL.items[0], "nf");
    cf_response r;
    uint64_t id;
    CU_ASSERT_EQUAL(cf_client_submit_issue(c, &req, &id), 0);
    CU_ASSERT_EQUAL(cf_client_next_response(c, 10000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_OK);
    cf_client_close(c);

    pid_t keeper = child_of(d.pid), signer = keeper ? child_of(keeper) : 0;
    CU_ASSERT(comm_is(d.pid, "certforged"));
    CU_ASSERT(keeper > 0 && comm_is(keeper, "cf-sign-keeper"));
    CU_ASSERT(signer > 0 && comm_is(signer, "cf-signer"));
    /* only the signer loads the PKCS#11 module */
    CU_ASSERT(signer > 0 && maps_has(signer, "libsofthsm2"));
    CU_ASSERT_FALSE(maps_has(d.pid, "libsofthsm2"));
    CU_ASSERT_FALSE(keeper > 0 && maps_has(keeper, "libsofthsm2"));
    /* certforged never reads the PIN: no PIN file open, no PIN in memory */
    CU_ASSERT_FALSE(has_open(d.pid, H.pin_file));
    int m = mem_has(d.pid, PIN);
    CU_ASSERT_EQUAL(m, 0);
    /* the signer is confined: no_new_privs and a seccomp filter */
    char sp[64];
    snprintf(sp, sizeof(sp), "/proc/%d/status", (int)signer);
    char *st = slurp(sp);
    CU_ASSERT(st && strstr(st, "NoNewPrivs:\t1") && strstr(st, "Seccomp:\t2"));
    free(st);
    CU_ASSERT(log_has(d.log, "event=signer_start"));
    daemon_stop_clean(&d);
    /* the stop took the signer and its keeper with it */
    CU_ASSERT(keeper <= 0 || kill(keeper, 0) != 0);
    CU_ASSERT(signer <= 0 || kill(signer, 0) != 0);
}

/* ------------------------------------------------------------ kill -9 */

#define MAX_RECEIVED 200000
static uint8_t (*RECEIVED)[SHA256_DIGEST_LENGTH];
static atomic_long NREC, OK_BEFORE, OK_AFTER, HSMF, OTHER, BAD;
static atomic_bool STOP, KILLED, RESTARTED;

static void *load(void *arg)
{
    (void)arg;
    cf_client *c = client();
    if (!c)
        return NULL;
    unsigned inflight = 0, i = 0;
    while (!atomic_load(&STOP) || inflight) {
        while (!atomic_load(&STOP) && inflight < 32) {
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
        if (r.status == CF_ST_OK) {
            if (verify_cert(r.cert.p, r.cert.len) != 0)
                atomic_fetch_add(&BAD, 1);
            long k = atomic_fetch_add(&NREC, 1);
            if (k < MAX_RECEIVED)
                SHA256(r.cert.p, r.cert.len, RECEIVED[k]);
            atomic_fetch_add(atomic_load(&RESTARTED) ? &OK_AFTER : &OK_BEFORE, 1);
        } else if (r.status == CF_ST_HSM_FAILURE) {
            atomic_fetch_add(&HSMF, 1);
        } else if (atomic_fetch_add(&OTHER, 1) < 3) {
            fprintf(stderr, "\n  %s: %.*s\n", cf_status_name(r.status), (int)r.message.len,
                    r.message.p);
        }
    }
    cf_client_close(c);
    return NULL;
}

static int cmp_digest(const void *a, const void *b)
{
    return memcmp(a, b, SHA256_DIGEST_LENGTH);
}

typedef struct in_ledger {
    uint8_t (*d)[SHA256_DIGEST_LENGTH];
    size_t n, cap;
} in_ledger;

static int collect(const ledger_rec *r, void *arg)
{
    in_ledger *l = arg;
    if (l->n < l->cap)
        SHA256(r->cert, r->cert_len, l->d[l->n]);
    l->n++;
    return 0;
}

static void test_kill_signer_under_load(void)
{
    RECEIVED = calloc(MAX_RECEIVED, SHA256_DIGEST_LENGTH);
    CU_ASSERT_PTR_NOT_NULL_FATAL(RECEIVED);
    dproc d;
    start(&d, "kill", "workers = 2; queue = 4096; batch = 16;");
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, load, NULL);
    /* under load: some certificates out before the kill */
    uint64_t end = cf_now_ms() + 20000;
    while (atomic_load(&OK_BEFORE) < 200 && cf_now_ms() < end)
        cf_sleep_ms(10);
    pid_t keeper = child_of(d.pid), signer = keeper ? child_of(keeper) : 0;
    CU_ASSERT_FATAL(signer > 0);
    CU_ASSERT_EQUAL(kill(signer, SIGKILL), 0);
    atomic_store(&KILLED, true);
    /* the keeper starts another signer, certforged takes it up */
    end = cf_now_ms() + 20000;
    pid_t next = 0;
    while (cf_now_ms() < end && !log_has(d.log, "event=signer_restarted"))
        cf_sleep_ms(20);
    next = child_of(keeper);
    CU_ASSERT(next > 0 && next != signer);
    atomic_store(&RESTARTED, true);
    /* and issues again: a count, not a rate */
    end = cf_now_ms() + 20000;
    while (atomic_load(&OK_AFTER) < 200 && cf_now_ms() < end)
        cf_sleep_ms(10);
    atomic_store(&STOP, true);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    fprintf(stderr, "\n  ok before %ld, after %ld, HSM_FAILURE %ld, other %ld\n",
            atomic_load(&OK_BEFORE), atomic_load(&OK_AFTER), atomic_load(&HSMF),
            atomic_load(&OTHER));
    CU_ASSERT_EQUAL(atomic_load(&BAD), 0);   /* nothing wrongly signed */
    CU_ASSERT_EQUAL(atomic_load(&OTHER), 0); /* OK or HSM_FAILURE, nothing else */
    CU_ASSERT(atomic_load(&OK_AFTER) >= 200);
    CU_ASSERT(log_has(d.log, "event=signer_exit"));
    CU_ASSERT(log_has(d.log, "signal=9 action=restart"));
    daemon_stop_clean(&d);

    /* the ledger holds exactly what the clients received */
    long nrec = atomic_load(&NREC);
    CU_ASSERT_FATAL(nrec <= MAX_RECEIVED);
    char lpath[340], err[512];
    snprintf(lpath, sizeof(lpath), "%s/ledger-kill/ledger.db", H.dir);
    ledger_opts lo = {.backend = LEDGER_SQLITE, .path = lpath, .read_only = true};
    ledger *l = NULL;
    CU_ASSERT_EQUAL_FATAL(ledger_open(&lo, &l, err, sizeof(err)), 0);
    in_ledger il = {.d = calloc((size_t)nrec + 1000, SHA256_DIGEST_LENGTH),
                    .cap = (size_t)nrec + 1000};
    ledger_filter f = {0};
    CU_ASSERT_EQUAL(ledger_list(l, &f, collect, &il, err, sizeof(err)), 0);
    ledger_close(l);
    CU_ASSERT_EQUAL(il.n, (size_t)nrec);
    if (il.n == (size_t)nrec) {
        qsort(RECEIVED, (size_t)nrec, SHA256_DIGEST_LENGTH, cmp_digest);
        qsort(il.d, il.n, SHA256_DIGEST_LENGTH, cmp_digest);
        CU_ASSERT(memcmp(RECEIVED, il.d, (size_t)nrec * SHA256_DIGEST_LENGTH) == 0);
    }
    free(il.d);
    free(RECEIVED);
}

static void test_no_pin_in_logs(void)
{
    dh_assert_no_pin_in_logs(PIN, 2);
}

int main(int argc, char **argv)
{
    static const cf_test tests[] = {
        {"process picture: only the signer loads PKCS#11, certforged holds no PIN",
         test_process_picture},
        {"kill -9 of the signer under load: HSM_FAILURE or right, restarted, ledger exact",
         test_kill_signer_under_load},
        {"no PIN in any log", test_no_pin_in_logs},
    };
    static const cf_suite suites[] = {
        CF_SUITE("certforged's signer process", suite_init, suite_clean, tests),
    };
    return CF_TEST_MAIN(argc, argv, suites);
}
