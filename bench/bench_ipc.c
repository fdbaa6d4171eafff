/* ipc: the whole service — the built certforged (next to this binary) on
 * its Unix socket, driven through libcertforge by `connections` client
 * threads, each keeping `depth` ISSUE requests in flight. The requests are
 * built before the clock starts, so the client side costs little more than
 * a copy per request; every certificate is counted on its answer.
 *
 * Latency: submit (the request queued in the client) to its answer, on the
 * monotonic clock, every answer, into the connection's histogram. A
 * warm-up (--warmup) runs first on the same connections, not counted.
 * certforged's CPU time and peak RSS come from /proc. */
#include "bench/bench_common.h"
#include "client/certforge.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#define READY_TIMEOUT_S 30
#define STOP_TIMEOUT_S 20
#define ANSWER_TIMEOUT_MS 60000

typedef struct ipc_conn {
    const char *socket;
    const cf_issue_req *reqs; /* one per CSR of the pool, used in turn */
    size_t nreqs, next;
    size_t warmup, n;     /* this connection's share; n == 0: until deadline */
    uint64_t deadline_ns; /* set by the main thread before the second barrier */
    uint64_t t0_ns, gap_ns; /* --rate: request k is due at t0 + k x gap (0: closed loop) */
    unsigned depth;
    pthread_barrier_t *start;
    bench_rec *rec;
    /* submit times by request id: open addressing, cap >= 2 x depth */
    struct {
        uint64_t id1; /* id + 1; 0: free */
        uint64_t t;
    } *slot;
    size_t cap;
    uint64_t done, errors;
    uint64_t by_status[CF_ST__MAX + 1]; /* the last: statuses this bench does not know */
    char first_error[600];
    int failed; /* the connection broke */
} ipc_conn;

static int write_config(const bench_setup *su, unsigned threads, const char *sock, char *path,
                        size_t len)
{
    unsigned conns = su->connections ? su->connections : 2;
    unsigned depth = su->depth ? su->depth : 64;
    unsigned queue = conns * depth * 2 < 1024 ? 1024 : conns * depth * 2;
    char extra[1024];
    snprintf(extra, sizeof(extra),
             "log = { level = \"warning\"; };\n"
             "server = { socket = \"%s\"; socket_mode = \"0600\"; max_inflight = %u; "
             "busy_deadline_ms = 5000; };\n"
             "grants = ( { uid = %u; profiles = [\"nf\"]; ops = [\"issue\", \"status\"]; } );\n",
             sock, depth > 65536 ? 65536 : depth, (unsigned)getuid());
    return bench_write_config(su, threads, queue, "certforged-ipc.conf", extra, path, len);
}

/* certforged sits next to this binary (CF_CERTFORGED overrides). */
static int daemon_path(char *out, size_t len)
{
    const char *env = getenv("CF_CERTFORGED");
    if (env && *env) {
        snprintf(out, len, "%s", env);
        return access(out, X_OK);
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return -1;
    self[n] = 0;
    char *sl = strrchr(self, '/');
    if (sl)
        *sl = 0;
    snprintf(out, len, "%s/certforged", self);
    return access(out, X_OK);
}

static void show_log(const char *log)
{
    FILE *f = fopen(log, "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof(line), f))
        fprintf(stderr, "ipc: certforged: %s", line);
    fclose(f);
}

/* Wait for "certforged: ready socket=" in the log, or the daemon's death. */
static int wait_ready(pid_t pid, const char *log)
{
    double t0 = bench_now();
    while (bench_now() - t0 < READY_TIMEOUT_S) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "ipc: certforged exited before it was ready\n");
            show_log(log);
            return -1;
        }
        FILE *f = fopen(log, "r");
        if (f) {
            char line[1024];
            bool ready = false;
            while (!ready && fgets(line, sizeof(line), f))
                ready = strstr(line, "certforged: ready socket=") != NULL;
            fclose(f);
            if (ready)
                return 0;
        }
        usleep(20000);
    }
    fprintf(stderr, "ipc: certforged not ready within %d s; killing it\n", READY_TIMEOUT_S);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    show_log(log);
    return -1;
}

static void stop_daemon(pid_t pid)
{
    int st;
    kill(pid, SIGTERM);
    double t0 = bench_now();
    while (bench_now() - t0 < STOP_TIMEOUT_S) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return;
        usleep(20000);
    }
    fprintf(stderr, "ipc: certforged did not stop within %d s of SIGTERM; killing it\n",
            STOP_TIMEOUT_S);
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
}

static void slot_put(ipc_conn *k, uint64_t id, uint64_t t)
{
    size_t i = (size_t)id & (k->cap - 1);
    while (k->slot[i].id1)
        i = (i + 1) & (k->cap - 1);
    k->slot[i].id1 = id + 1;
    k->slot[i].t = t;
}

/* The submit time of id, its slot freed (backward-shift deletion keeps
 * every probe chain unbroken); 0 if unknown. */
static uint64_t slot_take(ipc_conn *k, uint64_t id)
{
    size_t m = k->cap - 1, i = (size_t)id & m;
    while (k->slot[i].id1 && k->slot[i].id1 != id + 1)
        i = (i + 1) & m;
    if (!k->slot[i].id1)
        return 0;
    uint64_t t = k->slot[i].t;
    for (size_t j = (i + 1) & m; k->slot[j].id1; j = (j + 1) & m) {
        size_t home = (size_t)(k->slot[j].id1 - 1) & m;
        /* move j back into the hole at i unless its home lies in (i, j] */
        if (((j - home) & m) >= ((j - i) & m)) {
            k->slot[i] = k->slot[j];
            i = j;
        }
    }
    k->slot[i].id1 = 0;
    return t;
}

static void answered(ipc_conn *k, const cf_response *resp, bool record)
{
    uint64_t t_sub = slot_take(k, resp->id), now = bench_ns();
    if (!record)
        return;
    bench_hist_record(&k->rec->h, t_sub && now > t_sub ? now - t_sub : 0);
    k->done++;
    if (resp->status != CF_ST_OK) {
        k->by_status[resp->status < CF_ST__MAX ? resp->status : CF_ST__MAX]++;
        atomic_fetch_add_explicit(&k->rec->errors, 1, memory_order_relaxed);
        if (k->errors++ == 0)
            snprintf(k->first_error, sizeof(k->first_error), "%s: %.*s",
                     cf_status_name(resp->status), (int)resp->message.len, resp->message.p);
    }
}

/* Issue n requests (n == 0: until the deadline), keeping at most depth in
 * flight; record latencies when rec is set. With a rate (gap_ns), request k
 * is due at t0 + k x gap and its latency counts from then, not from when it
 * went out: a daemon that falls behind is charged for the wait
 * (no coordinated omission). */
static void run_phase(ipc_conn *k, cf_client *c, size_t n, uint64_t deadline, bool record)
{
    size_t sent = 0, inflight = 0;
    uint64_t gap = record ? k->gap_ns : 0;
    for (;;) {
        uint64_t due = 0;
        while (inflight < k->depth) {
            uint64_t now = bench_ns();
            if (n ? sent >= n : now >= deadline)
                break;
            if (gap) {
                due = k->t0_ns + sent * gap;
                if (due > now)
                    break;
                now = due;
            }
            uint64_t id = 0;
            int r = cf_client_submit_issue(c, &k->reqs[k->next % k->nreqs], &id);
            if (r == 1)
                break;
            if (r < 0) {
                snprintf(k->first_error, sizeof(k->first_error), "submit: %s", cf_client_error(c));
                k->failed = 1;
                return;
            }
            k->next++;
            slot_put(k, id, now);
            sent++;
            inflight++;
        }
        uint64_t now = bench_ns();
        bool more = gap && due > now && (n ? sent < n : due < deadline);
        if (inflight == 0 && !more)
            return;
        int wait_ms = ANSWER_TIMEOUT_MS;
        if (more) {
            /* the next request is due soon: wait for answers until then,
             * in at most 200 us steps below a millisecond */
            uint64_t left = due - now;
            if (left < 1000000) {
                cf_response early;
                int q = inflight ? cf_client_next_response(c, 0, &early) : 1;
                if (q == 1) {
                    struct timespec ts = {0, (long)(left < 200000 ? left : 200000)};
                    nanosleep(&ts, NULL);
                    continue;
                }
                if (q < 0) {
                    snprintf(k->first_error, sizeof(k->first_error), "answer: %s",
                             cf_client_error(c));
                    k->failed = 1;
                    return;
                }
                answered(k, &early, record);
                inflight--;
                continue;
            }
            wait_ms = (int)(left / 1000000);
            if (inflight == 0) {
                struct timespec ts = {(time_t)(left / 1000000000), (long)(left % 1000000000)};
                nanosleep(&ts, NULL);
                continue;
            }
        }
        cf_response resp;
        int r = cf_client_next_response(c, wait_ms, &resp);
        if (r == 1 && more)
            continue;
        if (r != 0) {
            snprintf(k->first_error, sizeof(k->first_error), "answer: %s",
                     r > 0 ? "timeout" : cf_client_error(c));
            k->failed = 1;
            return;
        }
        answered(k, &resp, record);
        inflight--;
    }
}

static void *drive(void *arg)
{
    ipc_conn *k = arg;
    cf_client *c = NULL;
    char err[256];
    cf_client_opts o = {.max_queued = 1u << 20, .max_buffered = 8u << 20};
    if (cf_client_connect_opts(k->socket, &o, &c, err, sizeof(err)) != 0) {
        snprintf(k->first_error, sizeof(k->first_error), "%s", err);
        k->failed = 1;
    }
    pthread_barrier_wait(k->start); /* connected */
    if (!k->failed && k->warmup)
        run_phase(k, c, k->warmup, 0, false);
    pthread_barrier_wait(k->start); /* warm-up done everywhere */
    pthread_barrier_wait(k->start); /* the clock started, deadline_ns set */
    if (!k->failed)
        run_phase(k, c, k->n, k->deadline_ns, true);
    cf_client_close(c);
    return NULL;
}

int bench_ipc(const bench_setup *su, unsigned threads, bench_result *r)
{
    int rc = -1;
    unsigned conns = su->connections ? su->connections : 2;
    unsigned depth = su->depth ? su->depth : 64;
    char bin[PATH_MAX + 16], conf[400], sock[320], log[320];
    pid_t pid = -1;
    cf_issue_req *reqs = NULL;
    ipc_conn *k = NULL;
    bench_rec *recs = NULL;
    pthread_t *tid = NULL;
    pthread_barrier_t start;
    bool barrier = false;
    size_t started = 0, cap = 64;
    bench_live *live = NULL;

    if (daemon_path(bin, sizeof(bin)) != 0) {
        fprintf(stderr, "ipc: %s not found (build the certforged target)\n", bin);
        return -1;
    }
    snprintf(sock, sizeof(sock), "%s/ipc.sock", su->dir);
    snprintf(log, sizeof(log), "%s/certforged-ipc.log", su->dir);
    if (write_config(su, threads, sock, conf, sizeof(conf)) != 0) {
        fprintf(stderr, "ipc: cannot write %s\n", conf);
        return -1;
    }

    /* Every request built before the clock starts: one per CSR. */
    static const char nf_type[] = "AMF";
    size_t nreqs = su->pool.n;
    while (cap < 2 * (size_t)depth)
        cap *= 2;
    reqs = calloc(nreqs, sizeof(*reqs));
    k = calloc(conns, sizeof(*k));
    recs = calloc(conns, sizeof(*recs));
    tid = calloc(conns, sizeof(*tid));
    if (!reqs || !k || !recs || !tid)
        goto out;
    for (size_t i = 0; i < nreqs; i++) {
        const csr_item *it = &su->pool.items[i];
        cf_issue_req *q = &reqs[i];
        q->profile = (cf_str){"nf", 2};
        q->csr_der = it->der;
        q->csr_len = it->len;
        q->nf_instance_id = (cf_str){it->uuid, strlen(it->uuid)};
        q->fqdns[0] = (cf_str){it->fqdn, strlen(it->fqdn)};
        q->n_fqdns = 1;
        q->nf_types[0] = (cf_str){nf_type, 3};
        q->n_nf_types = 1;
    }
    for (unsigned i = 0; i < conns; i++) {
        size_t share = su->count / conns + (i < su->count % conns ? 1 : 0);
        size_t wshare = su->warmup / conns + (i < su->warmup % conns ? 1 : 0);
        k[i] = (ipc_conn){.socket = sock,
                          .reqs = reqs,
                          .nreqs = nreqs,
                          .next = (nreqs * i) / conns,
                          .warmup = wshare,
                          .n = su->duration > 0 ? 0 : share,
                          .depth = depth,
                          .start = &start,
                          .rec = &recs[i],
                          .cap = cap};
        bench_hist_reset(&recs[i].h);
        k[i].slot = calloc(cap, sizeof(*k[i].slot));
        if (!k[i].slot)
            goto out;
    }

    unlink(log); /* an earlier run's "ready" must not count for this one */
    fflush(NULL);
    pid = fork();
    if (pid < 0)
        goto out;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        if (su->no_ledger) /* certforged refuses to run without one otherwise */
            execl(bin, "certforged", "--config", conf, "--unsafe-no-ledger", (char *)NULL);
        else
            execl(bin, "certforged", "--config", conf, (char *)NULL);
        fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    if (wait_ready(pid, log) != 0) {
        pid = -1; /* reaped */
        goto out;
    }

    if (pthread_barrier_init(&start, NULL, conns + 1) != 0)
        goto out;
    barrier = true;
    for (; started < conns; started++)
        if (pthread_create(&tid[started], NULL, drive, &k[started]) != 0)
            break;
    if (started < conns) {
        /* The threads started wait at a barrier that will never fill; this
         * is the mode's own child process: stop the daemon and leave. */
        fprintf(stderr, "ipc: cannot start client threads\n");
        stop_daemon(pid);
        _exit(1);
    }
    pthread_barrier_wait(&start); /* connected */
    pthread_barrier_wait(&start); /* warmed up */
    double cpu0 = bench_proc_cpu_s(pid);
    uint64_t t0 = bench_ns();
    for (unsigned i = 0; i < conns; i++) {
        k[i].deadline_ns = t0 + (uint64_t)(su->duration * 1e9);
        /* the connections' schedules interleave */
        k[i].t0_ns = su->rate > 0 ? t0 + (uint64_t)(1e9 / su->rate * i) : t0;
        k[i].gap_ns = su->rate > 0 ? (uint64_t)(1e9 * conns / su->rate) : 0;
    }
    pthread_barrier_wait(&start); /* go */
    live = bench_live_start(su, "ipc", recs, conns, pid);
    for (size_t i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    r->seconds = (double)(bench_ns() - t0) / 1e9;
    bench_live_stop(live, r);
    double cpu1 = bench_proc_cpu_s(pid);
    /* VmHWM follows the RSS counters lazily: never below a sampled RSS */
    r->daemon_hwm_kib = bench_proc_kib(pid, "VmHWM:");
    for (unsigned i = 0; i < r->nsamples; i++)
        if (r->samples[i].rss_kib > r->daemon_hwm_kib)
            r->daemon_hwm_kib = r->samples[i].rss_kib;
    r->has_daemon = cpu0 >= 0 && cpu1 >= 0;
    r->daemon_cpu_s = cpu1 - cpu0;
    int broken = 0;
    for (unsigned i = 0; i < conns; i++) {
        r->errors += k[i].errors;
        for (unsigned s = 0; s <= CF_ST__MAX; s++)
            bench_result_error(r, s < CF_ST__MAX ? cf_status_name((cf_status)s) : "OTHER",
                               k[i].by_status[s]);
        if (k[i].failed) {
            broken = 1;
            fprintf(stderr, "ipc: connection %u: %s\n", i, k[i].first_error);
        } else if (k[i].errors) {
            fprintf(stderr, "ipc: connection %u: %llu errors, first: %s\n", i,
                    (unsigned long long)k[i].errors, k[i].first_error);
        }
    }
    bench_result_merge(r, recs, conns);
    r->rate = (double)(r->done - r->errors) / r->seconds;
    rc = broken ? -1 : 0;
out:
    if (barrier)
        pthread_barrier_destroy(&start);
    if (pid > 0)
        stop_daemon(pid);
    for (unsigned i = 0; k && i < conns; i++)
        free(k[i].slot);
    free(reqs);
    free(k);
    free(recs);
    free(tid);
    return rc;
}
