/* metrics.c — the Prometheus endpoint (metrics.h). */
#include "engine/metrics/metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "common/histo.h"
#include "common/log.h"
#include "common/status.h"
#include "proto/proto.h"

#ifndef CF_VERSION
#define CF_VERSION "unknown"
#endif

/* A scrape is a few KiB; a request to this endpoint has no body. */
#define MET_MAX_HEADERS 8192
#define MET_MAX_BODY 1024
#define MET_TIMEOUT_S 10
#define MET_MAX_ISSUERS CFG_MAX_ENTRIES

struct met {
    int fd;     /* the listening socket */
    int stopfd; /* eventfd: met_stop wakes the loop */
    char host[CFG_METRICS_HOST_MAX];
    int family;
    unsigned port;
    srv *server;
    cf_engine *eng;
    double start_time;
    struct event_base *base;
    struct evhttp *http;
    struct event *stop_ev;
    pthread_t th;
    bool started;
    /* the last CRL's thisUpdate by issuer name (a reload may add, remove
     * or reorder issuers): slots appended, never removed; crl_mu */
    pthread_mutex_t crl_mu;
    struct {
        char name[CFG_NAME_MAX + 1];
        int64_t this_update;
    } crl[MET_MAX_ISSUERS];
    size_t ncrl;
    _Atomic uint64_t ledger_failed_batches, ledger_failed_jobs;
};

int met_new(const cfg_metrics *cm, met **out, char *err, size_t errlen)
{
    *out = NULL;
    met *m = calloc(1, sizeof(*m));
    if (!m) {
        snprintf(err, errlen, "metrics: out of memory");
        return -1;
    }
    m->fd = -1;
    m->stopfd = -1;
    pthread_mutex_init(&m->crl_mu, NULL);
    snprintf(m->host, sizeof(m->host), "%s", cm->host);
    m->family = cm->family;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t sl;
    if (cm->family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)cm->port);
        (void)inet_pton(AF_INET6, cm->host, &a->sin6_addr);
        sl = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)cm->port);
        (void)inet_pton(AF_INET, cm->host, &a->sin_addr);
        sl = sizeof(*a);
    }
    const char *lb = cm->family == AF_INET6 ? "[" : "", *rb = cm->family == AF_INET6 ? "]" : "";
    int one = 1;
    m->fd = socket(cm->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (m->fd < 0 || setsockopt(m->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(m->fd, (struct sockaddr *)&ss, sl) != 0 || listen(m->fd, 64) != 0) {
        snprintf(err, errlen, "metrics.listen: %s%s%s:%u: %s", lb, cm->host, rb, cm->port,
                 strerror(errno));
        met_free(m);
        return -1;
    }
    struct sockaddr_storage got;
    socklen_t gl = sizeof(got);
    if (getsockname(m->fd, (struct sockaddr *)&got, &gl) == 0)
        m->port = ntohs(got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
                                                  : ((struct sockaddr_in *)&got)->sin_port);
    m->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (m->stopfd < 0) {
        snprintf(err, errlen, "metrics: eventfd: %s", strerror(errno));
        met_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

unsigned met_port(const met *m)
{
    return m->port;
}

void met_crl_made(met *m, const char *issuer, int64_t this_update)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->crl_mu);
    size_t i = 0;
    while (i < m->ncrl && strcmp(m->crl[i].name, issuer) != 0)
        i++;
    if (i == m->ncrl && m->ncrl < MET_MAX_ISSUERS)
        snprintf(m->crl[m->ncrl++].name, sizeof(m->crl[0].name), "%s", issuer);
    if (i < m->ncrl)
        m->crl[i].this_update = this_update;
    pthread_mutex_unlock(&m->crl_mu);
}

/* 0: no CRL made yet for that issuer */
static int64_t crl_this_update(met *m, const char *issuer)
{
    int64_t tu = 0;
    pthread_mutex_lock(&m->crl_mu);
    for (size_t i = 0; i < m->ncrl && !tu; i++)
        if (strcmp(m->crl[i].name, issuer) == 0)
            tu = m->crl[i].this_update;
    pthread_mutex_unlock(&m->crl_mu);
    return tu;
}

void met_ledger_failed(met *m, size_t n_jobs)
{
    if (!m)
        return;
    atomic_fetch_add_explicit(&m->ledger_failed_batches, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->ledger_failed_jobs, n_jobs, memory_order_relaxed);
}

/* ------------------------------------------------------------ exposition */

/* HELP and TYPE of one family (text format 0.0.4). */
static void head(struct evbuffer *b, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value: \, " and newline escaped (names are [A-Za-z0-9._-] by
 * the config's rules; the version is the build's). */
static const char *esc(const char *s, char *buf, size_t cap)
{
    size_t o = 0;
    for (; *s && o + 3 < cap; s++) {
        if (*s == '\\' || *s == '"') {
            buf[o++] = '\\';
            buf[o++] = *s;
        } else if (*s == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else
            buf[o++] = *s;
    }
    buf[o] = 0;
    return buf;
}

/* A histogram's _bucket, _sum and _count lines; labels: "" or `k="v",`. */
static void histo(struct evbuffer *b, const char *name, const char *labels, const cf_histo_snap *h)
{
    for (unsigned i = 0; i < CF_HISTO_BUCKETS; i++)
        evbuffer_add_printf(b, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels, cf_histo_le[i],
                            (unsigned long long)h->cum[i]);
    evbuffer_add_printf(b, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels,
                        (unsigned long long)h->count);
    evbuffer_add_printf(b, "%s_sum %.9f\n%s_count %llu\n", name, h->sum_s, name,
                        (unsigned long long)h->count);
}

static void render(met *m, struct evbuffer *b)
{
    srv_summary sum;
    srv_get_summary(m->server, &sum);
    pipe_engine *pe = cf_engine_pipe(m->eng);
    pipe_stats ps;
    pipe_get_stats(pe, &ps);
    pipe_metrics *pm = malloc(sizeof(*pm));
    if (pm)
        pipe_get_metrics(pe, pm);
    unsigned busy = 0, total = 0;
    cf_engine_sessions(m->eng, &busy, &total);
    char e[256];

    head(b, "certforge_build_info", "gauge", "The certforged version that serves (value: 1).");
    evbuffer_add_printf(b, "certforge_build_info{version=\"%s\"} 1\n",
                        esc(CF_VERSION, e, sizeof(e)));
    head(b, "certforge_start_time_seconds", "gauge",
         "When certforged started, in seconds since the Unix epoch.");
    evbuffer_add_printf(b, "certforge_start_time_seconds %.3f\n", m->start_time);

    head(b, "certforge_requests_total", "counter",
         "Answers sent on the Unix socket, by operation and status (op=\"UNKNOWN\": a frame "
         "whose operation could not be read). OK is always listed; other statuses once seen.");
    for (unsigned op = 0; op < PROTO_OP__MAX; op++)
        for (unsigned st = 0; st < CF_ST__MAX; st++)
            if (sum.by_op[op][st] || (op != 0 && st == CF_ST_OK))
                evbuffer_add_printf(b, "certforge_requests_total{op=\"%s\",status=\"%s\"} %llu\n",
                                    op ? proto_op_name(op) : "UNKNOWN",
                                    cf_status_name((cf_status)st),
                                    (unsigned long long)sum.by_op[op][st]);

    if (pm) {
        head(b, "certforge_certificates_issued_total", "counter",
             "ISSUE requests completed by the pipeline, by profile and status: status=\"OK\" "
             "counts certificates issued, the others requests refused or failed there. OK is "
             "always listed; other statuses once seen.");
        for (size_t i = 0; i < pm->nprofiles; i++)
            for (unsigned st = 0; st < CF_ST__MAX; st++)
                if (pm->by_profile[i][st] || st == CF_ST_OK)
                    evbuffer_add_printf(
                        b,
                        "certforge_certificates_issued_total{profile=\"%s\",status=\"%s\"} %llu\n",
                        esc(pm->profile[i], e, sizeof(e)), cf_status_name((cf_status)st),
                        (unsigned long long)pm->by_profile[i][st]);
        head(b, "certforge_issue_duration_seconds", "histogram",
             "Certificates issued: time from entering the pipeline's queue to completion "
             "(built, signed in the HSM, checked, recorded in the ledger).");
        histo(b, "certforge_issue_duration_seconds", "", &pm->issue);
        head(b, "certforge_hsm_sign_batch_duration_seconds", "histogram",
             "One batch of signatures: time from handing it to the signer until the worker has "
             "the signatures.");
        histo(b, "certforge_hsm_sign_batch_duration_seconds", "", &pm->hsm_sign);
        head(b, "certforge_ledger_commit_duration_seconds", "histogram",
             "One group commit of issued certificates and signatures to the ledger.");
        histo(b, "certforge_ledger_commit_duration_seconds", "", &pm->ledger_commit);
        free(pm);
    }

    head(b, "certforge_queue_depth", "gauge", "Jobs waiting in the pipeline's queue.");
    evbuffer_add_printf(b, "certforge_queue_depth %u\n", ps.queued);
    head(b, "certforge_inflight_requests", "gauge",
         "Requests received on the Unix socket and not yet answered.");
    evbuffer_add_printf(b, "certforge_inflight_requests %llu\n", (unsigned long long)sum.inflight);
    head(b, "certforge_connections", "gauge", "Open connections on the Unix socket.");
    evbuffer_add_printf(b, "certforge_connections %u\n", sum.open_connections);
    head(b, "certforge_connections_accepted_total", "counter",
         "Connections accepted on the Unix socket.");
    evbuffer_add_printf(b, "certforge_connections_accepted_total %llu\n",
                        (unsigned long long)sum.connections);
    head(b, "certforge_connections_refused_total", "counter",
         "Connections refused (server.max_connections, per-peer limits).");
    evbuffer_add_printf(b, "certforge_connections_refused_total %llu\n",
                        (unsigned long long)sum.refused);
    head(b, "certforge_hsm_sessions", "gauge", "PKCS#11 sessions open on the tokens.");
    evbuffer_add_printf(b, "certforge_hsm_sessions %u\n", total);
    head(b, "certforge_hsm_sessions_busy", "gauge", "PKCS#11 sessions signing now.");
    evbuffer_add_printf(b, "certforge_hsm_sessions_busy %u\n", busy);
    head(b, "certforge_ledger_failed_batches_total", "counter",
         "Ledger transactions (group commits) that failed: their requests were answered "
         "LEDGER_FAILURE and nothing of them released.");
    evbuffer_add_printf(
        b, "certforge_ledger_failed_batches_total %llu\n",
        (unsigned long long)atomic_load_explicit(&m->ledger_failed_batches, memory_order_relaxed));
    head(b, "certforge_ledger_failed_jobs_total", "counter",
         "Certificates and signatures not released because their ledger commit failed.");
    evbuffer_add_printf(
        b, "certforge_ledger_failed_jobs_total %llu\n",
        (unsigned long long)atomic_load_explicit(&m->ledger_failed_jobs, memory_order_relaxed));

    iss_set *iss = cf_engine_issuers_get(m->eng); /* the current generation's issuers */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    head(b, "certforge_crl_age_seconds", "gauge",
         "Seconds since the thisUpdate of the last CRL this certforged made for the issuer "
         "(with crl_shards: of its least recently made shard; issuers without one yet are "
         "not listed).");
    for (size_t i = 0; i < iss_nissuers(iss); i++) {
        int64_t tu = crl_this_update(m, iss_issuer_at(iss, i)->name);
        if (tu)
            evbuffer_add_printf(b, "certforge_crl_age_seconds{issuer=\"%s\"} %lld\n",
                                esc(iss_issuer_at(iss, i)->name, e, sizeof(e)),
                                (long long)(now.tv_sec - tu));
    }
    iss_close(iss);
}

/* ------------------------------------------------------------ HTTP */

/* An error answer with a plain-text body (evhttp_send_error would drop the
 * Allow header). */
static void refuse(struct evhttp_request *req, int code, const char *reason, const char *text)
{
    struct evbuffer *b = evbuffer_new();
    if (b)
        evbuffer_add_printf(b, "%s\n", text);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; charset=utf-8");
    evhttp_send_reply(req, code, reason, b);
    if (b)
        evbuffer_free(b);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    met *m = arg;
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (!path || strcmp(path, "/metrics") != 0) {
        refuse(req, HTTP_NOTFOUND, "Not Found", "certforged serves only /metrics here");
        return;
    }
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(oh, "Allow", "GET, HEAD");
        refuse(req, 405, "Method Not Allowed", "/metrics answers GET and HEAD");
        return;
    }
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, HTTP_SERVUNAVAIL, "out of memory");
        return;
    }
    render(m, b);
    evhttp_add_header(oh, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    evhttp_add_header(oh, "Cache-Control", "no-store");
    evhttp_send_reply(req, HTTP_OK, "OK", b);
    evbuffer_free(b);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    uint64_t v;
    if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        cf_log(CF_LOG_WARNING, "metrics_stop", "err=\"%s\"", strerror(errno));
    event_base_loopbreak(arg);
}

static void *met_main(void *arg)
{
    met *m = arg;
    pthread_setname_np(pthread_self(), "cf-metrics");
    event_base_dispatch(m->base);
    return NULL;
}

int met_start(met *m, srv *server, cf_engine *eng, double start_time, char *err, size_t errlen)
{
    m->server = server;
    m->eng = eng;
    m->start_time = start_time;
    if (!(m->base = event_base_new()) || !(m->http = evhttp_new(m->base)) ||
        !(m->stop_ev = event_new(m->base, m->stopfd, EV_READ | EV_PERSIST, on_stop, m->base)) ||
        event_add(m->stop_ev, NULL) != 0) {
        snprintf(err, errlen, "metrics: libevent: cannot create an event loop");
        return -1;
    }
    /* every method reaches on_request (405 rather than libevent's 501) */
    evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_max_headers_size(m->http, MET_MAX_HEADERS);
    evhttp_set_max_body_size(m->http, MET_MAX_BODY);
    evhttp_set_timeout(m->http, MET_TIMEOUT_S);
    evhttp_set_gencb(m->http, on_request, m);
    if (!evhttp_accept_socket_with_handle(m->http, m->fd)) {
        snprintf(err, errlen, "metrics: libevent: cannot accept on the listening socket");
        return -1;
    }
    m->fd = -1; /* evhttp's now: freed with it */
    if (pthread_create(&m->th, NULL, met_main, m) != 0) {
        snprintf(err, errlen, "metrics: cannot start its thread");
        return -1;
    }
    m->started = true;
    const char *lb = m->family == AF_INET6 ? "[" : "", *rb = m->family == AF_INET6 ? "]" : "";
    cf_log(CF_LOG_INFO, "metrics_listen", "address=%s%s%s:%u path=/metrics", lb, m->host, rb,
           m->port);
    return 0;
}

void met_stop(met *m)
{
    if (!m || !m->started)
        return;
    uint64_t one = 1;
    if (write(m->stopfd, &one, sizeof(one)) != (ssize_t)sizeof(one))
        cf_log(CF_LOG_WARNING, "metrics_stop", "err=\"%s\"", strerror(errno));
    pthread_join(m->th, NULL);
    m->started = false;
}

void met_free(met *m)
{
    if (!m)
        return;
    met_stop(m);
    if (m->http)
        evhttp_free(m->http);
    if (m->stop_ev)
        event_free(m->stop_ev);
    if (m->base)
        event_base_free(m->base);
    if (m->fd >= 0)
        close(m->fd);
    if (m->stopfd >= 0)
        close(m->stopfd);
    pthread_mutex_destroy(&m->crl_mu);
    free(m);
}
