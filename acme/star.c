/* star.c — see star.h. */
#include "acme/star.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acme/api_int.h"
#include "acme/ident.h"
#include "acme/issuer.h"
#include "acme/server.h"

#define LAGS 65536
#define BUCKETS 262144 /* the in-flight set: orders being renewed or backing off */

int64_t acme_star_due(const acme_cfg *cfg, int64_t start, int64_t end, int64_t lifetime, int64_t adjust, int64_t seq)
{
    if (start + seq * lifetime >= end)
        return 0;
    int64_t ahead = cfg->star_renew_ahead_s ? cfg->star_renew_ahead_s : (lifetime / 10 > 30 ? lifetime / 10 : 30);
    int64_t due = start + seq * lifetime - adjust - ahead;
    return due > start ? due : start;
}

uint32_t acme_star_validity(int64_t start, int64_t end, int64_t lifetime, int64_t seq, int64_t now)
{
    int64_t na = start + (seq + 1) * lifetime;
    if (na > end)
        na = end;
    int64_t v = na - now;
    return v < 60 ? 60 : (uint32_t)v;
}

typedef struct sjob {
    struct acme_star *st;
    char order[ACME_ID_LEN + 1];
    char account[ACME_ID_LEN + 1];
    int64_t seq, due, start, end, lifetime, adjust;
    uint8_t *csr;
    size_t csr_len;
    acme_idents ids;
    char profile[65];
    char requester[96];
    acme_job job;
    char cert_id[65];
    char *idents;       /* while being read */
    bool ids_nf;        /* the order has an NfInstanceId: its NF types to look up */
    struct sjob *next;  /* within one scan */
} sjob;

typedef struct slot {
    char order[ACME_ID_LEN + 1]; /* "" empty, "~" deleted */
    int64_t retry_at;       /* 0: in flight; > 0: backing off; -1: recorded (see released_scan) */
    uint64_t released_scan; /* recorded: the scan under way when it was */
} slot;

/* A scan reads the due orders on its own connection while renewals of an
 * earlier scan are being recorded: a row it read before such a commit still
 * shows the old star_seq. An order recorded during scan g therefore stays
 * in the set, marked, and is not claimed again until scan g + 1, whose read
 * starts after the commit; then its slot is reused. (Without this, 3.5 % of
 * the renewals of 100 000 orders were sent twice and recorded twice.) */
#define RECORDED (-1)

struct acme_star {
    acme_srv *srv;
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    acme_db *db;
    slot *set;
    unsigned inflight;
    uint64_t scan_gen; /* scans started, under mu */
    acme_star_stats stats;
    double lags[LAGS];
    uint64_t n_lags;
};

static unsigned h(const char *s)
{
    unsigned x = 2166136261u;
    for (; *s; s++)
        x = (x ^ (unsigned char)*s) * 16777619u;
    return x % BUCKETS;
}

/* under mu: the slot of order, or NULL */
static slot *find(acme_star *s, const char *order)
{
    for (unsigned i = h(order), n = 0; n < BUCKETS; i = (i + 1) % BUCKETS, n++) {
        if (!s->set[i].order[0])
            return NULL;
        if (strcmp(s->set[i].order, order) == 0)
            return &s->set[i];
    }
    return NULL;
}

/* under mu: a slot another order may take: empty, deleted, or recorded
 * before the scan under way started */
static bool reusable(const acme_star *s, const slot *sl)
{
    return !sl->order[0] || strcmp(sl->order, "~") == 0 ||
           (sl->retry_at == RECORDED && sl->released_scan < s->scan_gen);
}

/* under mu: claim order for a renewal; false when it is in flight, backing
 * off, or was recorded since this scan read it */
static bool claim(acme_star *s, const char *order, int64_t now)
{
    slot *sl = find(s, order);
    if (sl) {
        if (sl->retry_at == RECORDED) {
            if (sl->released_scan >= s->scan_gen)
                return false;
            s->inflight++;
        } else if (sl->retry_at == 0 || sl->retry_at > now) {
            return false;
        }
        sl->retry_at = 0;
        return true;
    }
    if (s->inflight >= BUCKETS / 2)
        return false;
    for (unsigned i = h(order);; i = (i + 1) % BUCKETS)
        if (reusable(s, &s->set[i])) {
            snprintf(s->set[i].order, sizeof(s->set[i].order), "%s", order);
            s->set[i].retry_at = 0;
            s->inflight++;
            return true;
        }
}

static void release(acme_star *s, const char *order, int64_t retry_at)
{
    pthread_mutex_lock(&s->mu);
    slot *sl = find(s, order);
    if (sl) {
        if (retry_at) {
            sl->retry_at = retry_at;
        } else {
            sl->retry_at = RECORDED;
            sl->released_scan = s->scan_gen;
            s->inflight--;
        }
    }
    pthread_mutex_unlock(&s->mu);
}

static void sjob_free(sjob *j)
{
    free(j->idents);
    acme_job_clear(&j->job);
    free(j->csr);
    free(j);
}

#define STAR_STALE 1 /* the order had moved on: the change is undone */

/* The certificate and the order's advance, in one transaction guarded by
 * the certificate's number: when the order is no longer at that number
 * (or no longer valid) nothing is recorded. */
static int tx_star_record(acme_db *tx, void *arg)
{
    sjob *j = arg;
    if (api_record_issued(tx, j->order, j->account, &j->job, j->cert_id) != 0)
        return -1;
    int64_t next = acme_star_due(j->st->srv->cfg, j->start, j->end, j->lifetime, j->adjust, j->seq + 1);
    int n = acme_db_exec(
        tx,
        "UPDATE orders SET cert = ?, star_seq = ?, star_next = ? WHERE id = ? AND star_seq = ? AND "
        "status = 'valid'",
        "siisi", j->cert_id, j->seq + 1, next ? next : (int64_t)-1, j->order, j->seq);
    return n < 0 ? -1 : n == 0 ? STAR_STALE : 0;
}

static void recorded(void *arg, int rc)
{
    sjob *j = arg;
    acme_star *s = j->st;
    pthread_mutex_lock(&s->mu);
    if (rc == 0)
        s->stats.issued++;
    else if (rc == STAR_STALE)
        s->stats.stale++;
    else
        s->stats.failures++;
    pthread_mutex_unlock(&s->mu);
    if (rc == STAR_STALE)
        acme_log(s->srv, ACME_LOG_WARNING, "event=star_stale order=%s seq=%lld", j->order,
                 (long long)j->seq);
    else if (rc != 0)
        acme_log(s->srv, ACME_LOG_ERROR, "event=star_not_recorded order=%s seq=%lld", j->order, (long long)j->seq);
    release(s, j->order, rc == 0 || rc == STAR_STALE ? 0 : acme_now() + 5);
    sjob_free(j);
}

/* acme-engine thread: certforged answered */
static void engine_done(acme_job *jb)
{
    sjob *j = jb->arg;
    acme_star *s = j->st;
    if (jb->status != CF_ST_OK) {
        pthread_mutex_lock(&s->mu);
        s->stats.failures++;
        pthread_mutex_unlock(&s->mu);
        acme_log(s->srv, ACME_LOG_WARNING, "event=star_issue_failed order=%s seq=%lld status=%s detail=\"%s\"", j->order,
                 (long long)j->seq, cf_status_name(jb->status), jb->message);
        release(s, j->order, acme_now() + 2); /* retried: an outage is caught up when certforged returns */
        sjob_free(j);
        return;
    }
    if (acme_store_submit(s->srv->store, tx_star_record, recorded, j) != 0)
        recorded(j, -1);
}

static void lag(acme_star *s, double ms)
{
    s->lags[s->n_lags++ % LAGS] = ms;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void acme_star_get_stats(acme_star *s, acme_star_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    out->inflight = s->inflight;
    size_t n = s->n_lags < LAGS ? s->n_lags : LAGS;
    double *c = n ? malloc(n * sizeof(double)) : NULL;
    if (c)
        memcpy(c, s->lags, n * sizeof(double));
    pthread_mutex_unlock(&s->mu);
    if (c) {
        qsort(c, n, sizeof(double), cmp_d);
        out->lag_p50_ms = c[n / 2];
        out->lag_p99_ms = c[n * 99 / 100];
        out->lag_max_ms = c[n - 1];
        free(c);
    }
}

static void scan(acme_star *s)
{
    const acme_cfg *cfg = s->srv->cfg;
    int64_t now = acme_now();
    pthread_mutex_lock(&s->mu);
    s->scan_gen++; /* before the read: what is recorded from now on may be stale in it */
    pthread_mutex_unlock(&s->mu);
    acme_q q;
    /* By orders_star alone: with "AND status = 'valid'" in the WHERE,
     * SQLite chose orders_status, read every valid order and sorted them,
     * each scan (100 000 STAR orders: 0.13 cores with nothing due). Only
     * finalize sets star_next ≥ 0, together with status valid, and
     * cancellation sets it to -1; the status is still checked below. */
    if (acme_db_query(s->db, &q,
                      "SELECT id, account, identifiers, profile, csr, star_start, star_end, star_lifetime, star_adjust, "
                      "star_seq, star_next, status FROM orders WHERE star_next <= ? AND star_next >= 0 "
                      "ORDER BY star_next LIMIT ?",
                      "ii", now, (int64_t)cfg->star_batch) != 0) {
        acme_log(s->srv, ACME_LOG_ERROR, "event=star_scan_failed error=\"%s\"", acme_db_error(s->db));
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double now_ms = (double)ts.tv_sec * 1000 + (double)ts.tv_nsec / 1e6;
    sjob *batch = NULL;
    while (acme_q_next(&q) == 1) {
        const char *order = acme_q_text(&q, 0);
        if (strcmp(acme_q_text(&q, 11), "valid") != 0)
            continue;
        pthread_mutex_lock(&s->mu);
        bool mine = claim(s, order, now);
        pthread_mutex_unlock(&s->mu);
        if (!mine)
            continue;
        sjob *j = calloc(1, sizeof(*j));
        size_t cl = 0;
        const void *csr = acme_q_blob(&q, 4, &cl);
        const acme_cfg_profile *p = acme_cfg_profile_find(cfg, acme_q_text(&q, 3));
        if (!j || !csr || !p || !(j->csr = malloc(cl))) {
            free(j);
            release(s, order, now + 60);
            continue;
        }
        j->st = s;
        snprintf(j->order, sizeof(j->order), "%s", order);
        snprintf(j->account, sizeof(j->account), "%s", acme_q_text(&q, 1));
        char *idents = strdup(acme_q_text(&q, 2)); /* the NF types: a second query, once q is read */
        j->ids_nf = idents && strstr(idents, "\"NfInstanceId\"") != NULL;
        snprintf(j->profile, sizeof(j->profile), "%s", acme_cfg_profile_engine(p, now));
        memcpy(j->csr, csr, cl);
        j->csr_len = cl;
        j->start = acme_q_int(&q, 5);
        j->end = acme_q_int(&q, 6);
        j->lifetime = acme_q_int(&q, 7);
        j->adjust = acme_q_int(&q, 8);
        j->seq = acme_q_int(&q, 9);
        j->due = acme_q_int(&q, 10);
        snprintf(j->requester, sizeof(j->requester), "acme-star:%s:%lld", j->order, (long long)j->seq);
        j->idents = idents;
        j->next = batch;
        batch = j;
    }
    acme_q_end(&q);
    /* then build and send them (the NF types come from a second query) */
    for (sjob *j = batch, *nx; j; j = nx) {
        nx = j->next;
        char *nft = j->ids_nf ? api_order_nf_types(s->db, j->order) : NULL;
        acme_idents_parse(&j->ids, j->idents, nft);
        free(nft);
        free(j->idents);
        j->idents = NULL;
        acme_job_issue(&j->job, j->profile, j->csr, j->csr_len, &j->ids,
                       acme_star_validity(j->start, j->end, j->lifetime, j->seq, now), j->requester);
        j->job.done = engine_done;
        j->job.arg = j;
        pthread_mutex_lock(&s->mu);
        lag(s, now_ms - (double)j->due * 1000 > 0 ? now_ms - (double)j->due * 1000 : 0);
        pthread_mutex_unlock(&s->mu);
        if (acme_issuer_submit(s->srv->issuer, &j->job) != 0) {
            release(s, j->order, now + 1);
            sjob_free(j);
        }
    }
    pthread_mutex_lock(&s->mu);
    s->stats.scans++;
    pthread_mutex_unlock(&s->mu);
}

static void *star_main(void *arg)
{
    acme_star *s = arg;
    pthread_setname_np(pthread_self(), "acme-star");
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        pthread_mutex_unlock(&s->mu);
        scan(s);
        pthread_mutex_lock(&s->mu);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long ns = ts.tv_nsec + (long)s->srv->cfg->star_scan_ms * 1000000L;
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        if (!s->stopping)
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int acme_star_start(acme_srv *srv, acme_star **out, char *err, size_t errlen)
{
    *out = NULL;
    acme_star *s = calloc(1, sizeof(*s));
    if (!s || !(s->set = calloc(BUCKETS, sizeof(slot)))) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->srv = srv;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (!(s->db = acme_db_open_reader(srv->store, err, errlen)) || pthread_create(&s->tid, NULL, star_main, s) != 0) {
        if (s->db)
            snprintf(err, errlen, "cannot start the STAR scheduler thread");
        acme_db_close(s->db);
        free(s->set);
        free(s);
        return -1;
    }
    *out = s;
    return 0;
}

void acme_star_stop(acme_star *s)
{
    if (!s || s->stopping)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->tid, NULL);
}

void acme_star_free(acme_star *s)
{
    if (!s)
        return;
    acme_star_stop(s);
    acme_db_close(s->db);
    free(s->set);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
