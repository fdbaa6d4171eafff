/* issuer.c — see issuer.h. */
#include "acme/issuer.h"
#include "acme/ident.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define QUEUE_MAX 65536
#define INFLIGHT_MAX 256 /* per connection: certforged's default server.max_inflight */
/* certforged closes a connection that sent no request for its
 * server.idle_timeout_ms (30 s by default; docs/certforged.md), and the
 * client only learns it when its next request fails with EPIPE, which
 * failed that finalize (serverInternal). A connection idle this long is
 * replaced before use instead: a Unix-socket connect costs tens of µs,
 * paid at most once a second per connection. */
#define IDLE_RECONNECT_NS (1000ull * 1000000ull)

typedef struct conn {
    struct acme_issuer *is;
    unsigned idx;
    pthread_t tid;
    cf_client *c;
    acme_job *inflight; /* singly linked, matched by id */
    unsigned n_inflight;
    uint64_t last_request_ns; /* CLOCK_MONOTONIC of the last submit */
} conn;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct acme_issuer {
    const acme_cfg *cfg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    acme_job *head, *tail;
    unsigned queued;
    bool stopping;
    conn *conns;
    unsigned n_conns;
    acme_issuer_stats stats;
};

static void copy_out(acme_job *j, const cf_response *r)
{
    j->status = r->status;
    j->detail = r->detail;
    snprintf(j->message, sizeof(j->message), "%.*s", (int)r->message.len, r->message.p ? r->message.p : "");
    if (r->status != CF_ST_OK)
        return;
    if (j->kind == ACME_JOB_REVOKE) {
        j->revoked_at = r->revoked_at;
        return;
    }
    j->cert = malloc(r->cert.len);
    if (!j->cert) {
        j->status = CF_ST_INTERNAL;
        snprintf(j->message, sizeof(j->message), "out of memory");
        return;
    }
    memcpy(j->cert, r->cert.p, r->cert.len);
    j->cert_len = r->cert.len;
    for (unsigned i = 0; i < r->n_chain && i < ACME_ISSUE_MAX_CHAIN; i++) {
        j->chain[i] = malloc(r->chain[i].len);
        if (!j->chain[i])
            break;
        memcpy(j->chain[i], r->chain[i].p, r->chain[i].len);
        j->chain_len[i] = r->chain[i].len;
        j->n_chain = i + 1;
    }
    if (r->serial.len <= sizeof(j->out_serial)) {
        memcpy(j->out_serial, r->serial.p, r->serial.len);
        j->out_serial_len = r->serial.len;
    }
}

void acme_job_issue(acme_job *j, const char *engine_profile, const uint8_t *csr, size_t csr_len, const acme_idents *ids,
                    uint32_t validity_s, const char *requester)
{
    cf_issue_req *r = &j->req;
    memset(r, 0, sizeof(*r));
    r->profile = (cf_str){engine_profile, strlen(engine_profile)};
    r->csr_der = csr;
    r->csr_len = csr_len;
    for (unsigned i = 0; i < ids->n_names && i < CF_MAX_FQDNS; i++)
        r->fqdns[r->n_fqdns++] = (cf_str){ids->names[i], strlen(ids->names[i])};
    if (ids->nf_instance_id[0])
        r->nf_instance_id = (cf_str){ids->nf_instance_id, strlen(ids->nf_instance_id)};
    for (unsigned i = 0; i < ids->n_nf_types && i < CF_MAX_NF_TYPES; i++)
        r->nf_types[r->n_nf_types++] = (cf_str){ids->nf_types[i], strlen(ids->nf_types[i])};
    r->validity_s = validity_s;
    r->requester = (cf_str){requester, strlen(requester)};
    j->kind = ACME_JOB_ISSUE;
}

void acme_job_clear(acme_job *j)
{
    free(j->cert);
    j->cert = NULL;
    for (unsigned i = 0; i < j->n_chain; i++)
        free(j->chain[i]);
    j->n_chain = 0;
}

static void fail_job(acme_job *j, cf_status st, const char *msg)
{
    j->status = st;
    snprintf(j->message, sizeof(j->message), "%s", msg);
    j->done(j);
}

/* Take queued jobs: wait when nothing is in flight. */
static acme_job *take(acme_issuer *is, conn *cn, bool wait)
{
    pthread_mutex_lock(&is->mu);
    if (wait)
        while (!is->head && !is->stopping)
            pthread_cond_wait(&is->cv, &is->mu);
    acme_job *list = NULL, **tail = &list;
    unsigned room = INFLIGHT_MAX - cn->n_inflight;
    while (is->head && room > 0) {
        acme_job *j = is->head;
        is->head = j->next;
        is->queued--;
        j->next = NULL;
        *tail = j;
        tail = &j->next;
        room--;
    }
    if (!is->head)
        is->tail = NULL;
    pthread_mutex_unlock(&is->mu);
    return list;
}

static void requeue_front(acme_issuer *is, acme_job *j)
{
    pthread_mutex_lock(&is->mu);
    j->next = is->head;
    is->head = j;
    if (!is->tail)
        is->tail = j;
    is->queued++;
    pthread_cond_signal(&is->cv);
    pthread_mutex_unlock(&is->mu);
}

static void drop_conn(conn *cn, const char *why)
{
    for (acme_job *j = cn->inflight, *n; j; j = n) {
        n = j->next;
        fail_job(j, CF_ST_INTERNAL, why);
    }
    cn->inflight = NULL;
    cn->n_inflight = 0;
    cf_client_close(cn->c);
    cn->c = NULL;
}

static int ensure_conn(conn *cn)
{
    if (cn->c)
        return 0;
    char err[256];
    cf_client_opts o = {.max_frame = 65536, .io_timeout_ms = (int)cn->is->cfg->engine_timeout_ms};
    if (cf_client_connect_opts(cn->is->cfg->engine_socket, &o, &cn->c, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforge-acme level=warning event=engine_connect_failed error=\"%s\"\n", err);
        return -1;
    }
    pthread_mutex_lock(&cn->is->mu);
    cn->is->stats.reconnects++;
    pthread_mutex_unlock(&cn->is->mu);
    return 0;
}

static int submit_one(conn *cn, acme_job *j)
{
    int rc;
    cf_str req = {cn->is->cfg->requester, strlen(cn->is->cfg->requester)};
    if (j->kind == ACME_JOB_ISSUE)
        rc = cf_client_submit_issue(cn->c, &j->req, &j->id);
    else
        rc = cf_client_submit_revoke(cn->c, j->serial, j->serial_len, j->reason, req, &j->id);
    return rc;
}

static void *conn_main(void *arg)
{
    conn *cn = arg;
    acme_issuer *is = cn->is;
    char name[16];
    snprintf(name, sizeof(name), "acme-engine/%u", cn->idx);
    pthread_setname_np(pthread_self(), name);
    for (;;) {
        acme_job *list = take(is, cn, cn->n_inflight == 0);
        if (!list && cn->n_inflight == 0) {
            pthread_mutex_lock(&is->mu);
            bool stop = is->stopping && !is->head;
            pthread_mutex_unlock(&is->mu);
            if (stop)
                break;
            continue;
        }
        uint64_t now = list ? mono_ns() : 0;
        if (list && cn->c && cn->n_inflight == 0 && now - cn->last_request_ns >= IDLE_RECONNECT_NS) {
            cf_client_close(cn->c); /* nothing in flight: nothing lost */
            cn->c = NULL;
        }
        if (list && ensure_conn(cn) != 0) {
            for (acme_job *j = list, *n; j; j = n) {
                n = j->next;
                fail_job(j, CF_ST_INTERNAL, "certforged is not reachable");
            }
            struct timespec ts = {0, 200 * 1000000};
            nanosleep(&ts, NULL);
            continue;
        }
        for (acme_job *j = list, *n; j; j = n) {
            n = j->next;
            int rc = submit_one(cn, j);
            if (rc == 0) {
                cn->last_request_ns = now;
                j->next = cn->inflight;
                cn->inflight = j;
                cn->n_inflight++;
            } else if (rc == 1) {
                /* buffers full: back to the queue, collect answers first */
                for (acme_job *k = j, *kn; k; k = kn) {
                    kn = k->next;
                    requeue_front(is, k);
                }
                break;
            } else {
                const char *e = cf_client_error(cn->c);
                fail_job(j, CF_ST_INTERNAL, e && *e ? e : "request refused by libcertforge");
            }
        }
        pthread_mutex_lock(&is->mu);
        if (cn->n_inflight > is->stats.inflight_max)
            is->stats.inflight_max = cn->n_inflight;
        pthread_mutex_unlock(&is->mu);
        if (cn->n_inflight == 0)
            continue;
        /* Collect what has come; wait at most 1 ms so new jobs join the
         * pipeline promptly. */
        cf_response r;
        int got = 0;
        for (;;) {
            int rc = cf_client_next_response(cn->c, got ? 0 : 1, &r);
            if (rc == 1)
                break;
            if (rc < 0) {
                drop_conn(cn, cf_client_error(cn->c));
                break;
            }
            got++;
            if (r.id == 0) { /* the daemon is at max_connections and closes this one */
                drop_conn(cn, "certforged is at its connection limit");
                break;
            }
            acme_job **pp = &cn->inflight, *j = NULL;
            while (*pp && (*pp)->id != r.id)
                pp = &(*pp)->next;
            if (!*pp)
                continue; /* not ours: cannot happen on a sane daemon */
            j = *pp;
            *pp = j->next;
            j->next = NULL;
            cn->n_inflight--;
            pthread_mutex_lock(&is->mu);
            is->stats.answered++;
            pthread_mutex_unlock(&is->mu);
            if (r.status == CF_ST_BUSY && j->retries < 3) {
                j->retries++;
                pthread_mutex_lock(&is->mu);
                is->stats.busy_retries++;
                pthread_mutex_unlock(&is->mu);
                struct timespec ts = {0, 5 * 1000000};
                nanosleep(&ts, NULL);
                requeue_front(is, j);
                continue;
            }
            copy_out(j, &r);
            j->done(j);
            if (cn->n_inflight == 0)
                break;
        }
    }
    drop_conn(cn, "certforge-acme is stopping");
    return NULL;
}

int acme_issuer_new(const acme_cfg *cfg, acme_issuer **out, char *err, size_t errlen)
{
    *out = NULL;
    acme_issuer *is = calloc(1, sizeof(*is));
    if (!is) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    is->cfg = cfg;
    pthread_mutex_init(&is->mu, NULL);
    pthread_cond_init(&is->cv, NULL);
    is->n_conns = cfg->engine_connections;
    is->conns = calloc(is->n_conns, sizeof(*is->conns));
    if (!is->conns) {
        snprintf(err, errlen, "out of memory");
        free(is);
        return -1;
    }
    for (unsigned i = 0; i < is->n_conns; i++) {
        is->conns[i].is = is;
        is->conns[i].idx = i;
        if (pthread_create(&is->conns[i].tid, NULL, conn_main, &is->conns[i]) != 0) {
            snprintf(err, errlen, "cannot start engine thread %u", i);
            is->n_conns = i;
            acme_issuer_free(is);
            return -1;
        }
    }
    *out = is;
    return 0;
}

void acme_issuer_free(acme_issuer *is)
{
    if (!is)
        return;
    pthread_mutex_lock(&is->mu);
    is->stopping = true;
    pthread_cond_broadcast(&is->cv);
    pthread_mutex_unlock(&is->mu);
    for (unsigned i = 0; i < is->n_conns; i++)
        pthread_join(is->conns[i].tid, NULL);
    for (acme_job *j = is->head, *n; j; j = n) {
        n = j->next;
        fail_job(j, CF_ST_INTERNAL, "certforge-acme is stopping");
    }
    free(is->conns);
    pthread_cond_destroy(&is->cv);
    pthread_mutex_destroy(&is->mu);
    free(is);
}

int acme_issuer_submit(acme_issuer *is, acme_job *j)
{
    j->next = NULL;
    pthread_mutex_lock(&is->mu);
    if (is->stopping || is->queued >= QUEUE_MAX) {
        pthread_mutex_unlock(&is->mu);
        return -1;
    }
    if (is->tail)
        is->tail->next = j;
    else
        is->head = j;
    is->tail = j;
    is->queued++;
    is->stats.submitted++;
    pthread_cond_signal(&is->cv);
    pthread_mutex_unlock(&is->mu);
    return 0;
}

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    void (*orig)(acme_job *);
} waiter;

static void run_done(acme_job *j)
{
    waiter *w = j->arg;
    pthread_mutex_lock(&w->mu);
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int acme_issuer_run(acme_issuer *is, acme_job *j)
{
    waiter w = {.done = false};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    j->done = run_done;
    j->arg = &w;
    int rc = acme_issuer_submit(is, j);
    if (rc == 0) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
    }
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    return rc;
}

void acme_issuer_get_stats(acme_issuer *is, acme_issuer_stats *out)
{
    pthread_mutex_lock(&is->mu);
    *out = is->stats;
    pthread_mutex_unlock(&is->mu);
}
