/* store.c — the group-commit writer of store.h and the dispatch to the
 * backend (store_sqlite.c, store_pg.c). */
#include "acme/store_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct wjob {
    acme_tx_fn fn;
    acme_tx_done done;
    void *arg;
    int rc;
    struct wjob *next;
} wjob;

#define WRITE_QUEUE_MAX 65536
#define GROUP_MAX 4096

struct acme_store {
    acme_db *w;
    acme_cfg_backend backend;
    char *path, *conninfo, *schema_sqlite, *schema_pg;
    unsigned pg_timeout_ms;
    char name[16], tag[32]; /* writer thread's name; log lines' program */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    wjob *head, *tail;
    unsigned queued;
    bool stopping;
    acme_store_stats stats;
};

/* ------------------------------------------------------------ connections */

void acme_db_close(acme_db *db)
{
    if (db)
        db->ops->close(db);
}

const char *acme_db_error(const acme_db *db)
{
    return db->err;
}

int acme_db_exec(acme_db *db, const char *sql, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = db->ops->exec(db, sql, fmt, ap);
    va_end(ap);
    return rc;
}

int acme_db_query(acme_db *db, acme_q *q, const char *sql, const char *fmt, ...)
{
    memset(q, 0, sizeof(*q));
    q->db = db;
    va_list ap;
    va_start(ap, fmt);
    int rc = db->ops->query(db, q, sql, fmt, ap);
    va_end(ap);
    if (rc != 0)
        q->stmt = NULL;
    return rc;
}

int acme_q_next(acme_q *q)
{
    return q->stmt ? q->db->ops->next(q) : -1;
}

const char *acme_q_text(acme_q *q, int col)
{
    return q->db->ops->text(q, col);
}

int64_t acme_q_int(acme_q *q, int col)
{
    return q->db->ops->integer(q, col);
}

const void *acme_q_blob(acme_q *q, int col, size_t *len)
{
    return q->db->ops->blob(q, col, len);
}

bool acme_q_null(acme_q *q, int col)
{
    return q->db->ops->null(q, col);
}

void acme_q_end(acme_q *q)
{
    if (q->stmt)
        q->db->ops->end(q);
    q->stmt = NULL;
}

static acme_db *open_conn(const acme_store *s, bool writer, char *err, size_t errlen)
{
    if (s->backend == ACME_BACKEND_POSTGRESQL)
        return acme_pg_open(s->conninfo, writer, s->schema_pg, s->pg_timeout_ms, err, errlen);
    return acme_sqlite_open(s->path, writer, s->schema_sqlite, err, errlen);
}

/* ------------------------------------------------------------ the writer */

/* One group: BEGIN, a savepoint per change, COMMIT. */
static void run_group(acme_store *s, wjob *list)
{
    acme_db *db = s->w;
    unsigned n = 0;
    int began = db->ops->tx(db, db->ops->begin) == 0;
    for (wjob *j = list; j; j = j->next) {
        n++;
        if (!began) {
            j->rc = -1;
            continue;
        }
        if (db->ops->tx(db, "SAVEPOINT c") != 0) {
            j->rc = -1;
            continue;
        }
        db->err[0] = '\0';
        j->rc = j->fn(db, j->arg);
        if (j->rc < 0)
            fprintf(stderr, "%s level=error event=store_change_failed error=\"%s\"\n", s->tag, db->err);
        if (j->rc != 0 && db->ops->tx(db, "ROLLBACK TO c") != 0)
            j->rc = -1;
        (void)db->ops->tx(db, "RELEASE c");
    }
    int committed = began && db->ops->tx(db, "COMMIT") == 0;
    if (began && !committed) {
        fprintf(stderr, "%s: event=store_commit_failed error=\"%s\"\n", s->tag, db->err);
        (void)db->ops->tx(db, "ROLLBACK");
    }
    pthread_mutex_lock(&s->mu);
    if (committed) {
        s->stats.commits++;
        s->stats.changes += n;
        if (n > s->stats.max_group)
            s->stats.max_group = n;
    } else {
        s->stats.failed_commits++;
    }
    pthread_mutex_unlock(&s->mu);
    for (wjob *j = list, *next; j; j = next) {
        next = j->next;
        j->done(j->arg, committed ? j->rc : -1);
        free(j);
    }
}

static void *writer_main(void *arg)
{
    acme_store *s = arg;
    pthread_setname_np(pthread_self(), s->name);
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->head && !s->stopping)
            pthread_cond_wait(&s->cv, &s->mu);
        if (!s->head && s->stopping) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        /* take up to GROUP_MAX: everything queued while the last commit synced */
        wjob *list = s->head, *last = s->head;
        unsigned n = 1;
        while (last->next && n < GROUP_MAX) {
            last = last->next;
            n++;
        }
        s->head = last->next;
        if (!s->head)
            s->tail = NULL;
        last->next = NULL;
        s->queued -= n;
        pthread_mutex_unlock(&s->mu);
        run_group(s, list);
    }
    return NULL;
}

int acme_store_submit(acme_store *s, acme_tx_fn fn, acme_tx_done done, void *arg)
{
    wjob *j = calloc(1, sizeof(*j));
    if (!j)
        return -1;
    j->fn = fn;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&s->mu);
    if (s->stopping || s->queued >= WRITE_QUEUE_MAX) {
        pthread_mutex_unlock(&s->mu);
        free(j);
        return -1;
    }
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    s->queued++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int rc;
    acme_tx_fn fn;
    void *arg;
} waiter;

static int run_fn(acme_db *tx, void *arg)
{
    waiter *w = arg;
    return w->fn(tx, w->arg);
}

static void run_done(void *arg, int rc)
{
    waiter *w = arg;
    pthread_mutex_lock(&w->mu);
    w->rc = rc;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int acme_store_run(acme_store *s, acme_tx_fn fn, void *arg)
{
    waiter w = {.fn = fn, .arg = arg};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    int rc = -1;
    if (acme_store_submit(s, run_fn, run_done, &w) == 0) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        rc = w.rc;
        pthread_mutex_unlock(&w.mu);
    }
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    return rc;
}

void acme_store_get_stats(acme_store *s, acme_store_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
}

static char *dup_or_null(const char *v, bool *bad)
{
    char *r = v ? strdup(v) : NULL;
    if (v && !r)
        *bad = true;
    return r;
}

static void free_store(acme_store *s)
{
    free(s->path);
    free(s->conninfo);
    free(s->schema_sqlite);
    free(s->schema_pg);
    free(s);
}

int acme_store_open_spec(const acme_store_spec *spec, acme_store **out, char *err, size_t errlen)
{
    *out = NULL;
    acme_store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    bool bad = false;
    s->backend = spec->backend;
    s->path = dup_or_null(spec->path, &bad);
    s->conninfo = dup_or_null(spec->conninfo, &bad);
    s->pg_timeout_ms = spec->pg_timeout_ms;
    s->schema_sqlite = dup_or_null(spec->schema_sqlite, &bad);
    s->schema_pg = dup_or_null(spec->schema_pg, &bad);
    snprintf(s->name, sizeof(s->name), "%s", spec->name ? spec->name : "acme-store");
    snprintf(s->tag, sizeof(s->tag), "%s", spec->log_tag ? spec->log_tag : "certforge-acme");
    if (bad) {
        snprintf(err, errlen, "out of memory");
        free_store(s);
        return -1;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (!(s->w = open_conn(s, true, err, errlen)))
        goto fail;
    if (pthread_create(&s->thread, NULL, writer_main, s) != 0) {
        snprintf(err, errlen, "cannot start the store's writer thread");
        goto fail;
    }
    *out = s;
    return 0;
fail:
    acme_db_close(s->w);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free_store(s);
    return -1;
}

int acme_store_open(const acme_cfg *cfg, acme_store **out, char *err, size_t errlen)
{
    acme_store_spec spec = {.backend = cfg->backend, .path = cfg->db_path, .conninfo = cfg->conninfo,
                            .pg_timeout_ms = cfg->pg_timeout_ms, .name = "acme-store"};
    return acme_store_open_spec(&spec, out, err, errlen);
}

acme_db *acme_db_open_reader(acme_store *s, char *err, size_t errlen)
{
    return open_conn(s, false, err, errlen);
}

void acme_store_close(acme_store *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    acme_db_close(s->w);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free_store(s);
}
