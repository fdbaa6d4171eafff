/* ipc: the whole service — the built certforged (next to this binary) on
 * its Unix socket, driven through libcertforge by `connections` client
 * threads, each keeping `depth` ISSUE requests in flight. The requests are
 * built before the clock starts, so the client side costs little more than
 * a copy per request; every certificate is counted on its answer. */
#include "bench_common.h"
#include "certforge.h"

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
#include <unistd.h>

#define READY_TIMEOUT_S 30
#define STOP_TIMEOUT_S 20
#define ANSWER_TIMEOUT_MS 60000

typedef struct ipc_conn {
    const char *socket;
    const cf_issue_req *reqs;
    size_t n;
    unsigned depth;
    pthread_barrier_t *start;
    uint64_t done, errors;
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
    pthread_barrier_wait(k->start);
    size_t sent = 0, inflight = 0;
    while (!k->failed && k->done < k->n) {
        while (sent < k->n && inflight < k->depth) {
            int r = cf_client_submit_issue(c, &k->reqs[sent], NULL);
            if (r == 1)
                break;
            if (r < 0) {
                snprintf(k->first_error, sizeof(k->first_error), "submit: %s", cf_client_error(c));
                k->failed = 1;
                break;
            }
            sent++;
            inflight++;
        }
        if (k->failed)
            break;
        cf_response resp;
        int r = cf_client_next_response(c, ANSWER_TIMEOUT_MS, &resp);
        if (r != 0) {
            snprintf(k->first_error, sizeof(k->first_error), "answer: %s",
                     r > 0 ? "timeout" : cf_client_error(c));
            k->failed = 1;
            break;
        }
        inflight--;
        k->done++;
        if (resp.status != CF_ST_OK && k->errors++ == 0)
            snprintf(k->first_error, sizeof(k->first_error), "%s: %.*s",
                     cf_status_name(resp.status), (int)resp.message.len, resp.message.p);
    }
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
    pthread_t *tid = NULL;
    pthread_barrier_t start;
    bool barrier = false;
    size_t started = 0;

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

    /* Every request built before the clock starts. */
    static const char nf_type[] = "AMF";
    reqs = calloc(su->count, sizeof(*reqs));
    k = calloc(conns, sizeof(*k));
    tid = calloc(conns, sizeof(*tid));
    if (!reqs || !k || !tid)
        goto out;
    for (size_t i = 0; i < su->count; i++) {
        const csr_item *it = &su->pool.items[i % su->pool.n];
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

    unlink(log); /* an earlier run's "ready" must not count for this one */
    fflush(NULL);
    pid = fork();
    if (pid < 0)
        goto out;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
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
    size_t base = 0;
    for (unsigned i = 0; i < conns; i++) {
        size_t share = su->count / conns + (i < su->count % conns ? 1 : 0);
        k[i] = (ipc_conn){
            .socket = sock, .reqs = reqs + base, .n = share, .depth = depth, .start = &start};
        base += share;
    }
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
    pthread_barrier_wait(&start);
    double t0 = bench_now();
    for (size_t i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    r->seconds = bench_now() - t0;
    int broken = 0;
    for (unsigned i = 0; i < conns; i++) {
        r->done += k[i].done;
        r->errors += k[i].errors;
        if (k[i].failed) {
            broken = 1;
            fprintf(stderr, "ipc: connection %u: %s\n", i, k[i].first_error);
        } else if (k[i].errors) {
            fprintf(stderr, "ipc: connection %u: %llu errors, first: %s\n", i,
                    (unsigned long long)k[i].errors, k[i].first_error);
        }
    }
    r->rate = (double)(r->done - r->errors) / r->seconds;
    rc = broken ? -1 : 0;
out:
    if (barrier)
        pthread_barrier_destroy(&start);
    if (pid > 0)
        stop_daemon(pid);
    free(reqs);
    free(k);
    free(tid);
    return rc;
}
