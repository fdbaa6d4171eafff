/* store.c — SQLite backend and group-commit writer of store.h. */
#include "acme/store.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Version 1 of the schema. Times are Unix seconds; JSON columns hold what
 * the API shows (identifiers, contact, problem documents). */
static const char schema[] =
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS accounts("
    "  id TEXT PRIMARY KEY, thumbprint TEXT NOT NULL UNIQUE, jwk TEXT NOT NULL,"
    "  status TEXT NOT NULL, contact TEXT, eab_kid TEXT, created INTEGER NOT NULL,"
    "  address TEXT);"
    "CREATE TABLE IF NOT EXISTS orders("
    "  id TEXT PRIMARY KEY, account TEXT NOT NULL, status TEXT NOT NULL,"
    "  expires INTEGER NOT NULL, identifiers TEXT NOT NULL, profile TEXT NOT NULL,"
    "  not_before INTEGER, not_after INTEGER, error TEXT, csr BLOB, cert TEXT,"
    "  replaces TEXT, created INTEGER NOT NULL, address TEXT);"
    "CREATE INDEX IF NOT EXISTS orders_account ON orders(account, created);"
    "CREATE INDEX IF NOT EXISTS orders_status ON orders(status, expires);"
    "CREATE TABLE IF NOT EXISTS authzs("
    "  id TEXT PRIMARY KEY, account TEXT NOT NULL, type TEXT NOT NULL, value TEXT NOT NULL,"
    "  status TEXT NOT NULL, expires INTEGER NOT NULL, wildcard INTEGER NOT NULL DEFAULT 0,"
    "  created INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS authzs_reuse ON authzs(account, type, value, status, expires);"
    "CREATE INDEX IF NOT EXISTS authzs_status ON authzs(status, expires);"
    "CREATE TABLE IF NOT EXISTS order_authzs("
    "  order_id TEXT NOT NULL, authz TEXT NOT NULL, pos INTEGER NOT NULL,"
    "  PRIMARY KEY(order_id, authz));"
    "CREATE INDEX IF NOT EXISTS order_authzs_authz ON order_authzs(authz);"
    "CREATE TABLE IF NOT EXISTS challenges("
    "  id TEXT PRIMARY KEY, authz TEXT NOT NULL, type TEXT NOT NULL, token TEXT NOT NULL,"
    "  status TEXT NOT NULL, validated INTEGER, error TEXT);"
    "CREATE INDEX IF NOT EXISTS challenges_authz ON challenges(authz);"
    "CREATE TABLE IF NOT EXISTS certs("
    "  id TEXT PRIMARY KEY, order_id TEXT NOT NULL, account TEXT NOT NULL, der BLOB NOT NULL, chain TEXT NOT NULL,"
    "  not_before INTEGER NOT NULL, not_after INTEGER NOT NULL, ari_id TEXT NOT NULL UNIQUE,"
    "  revoked_at INTEGER, reason INTEGER, replaced_by TEXT, spki_sha256 TEXT);"
    "CREATE TABLE IF NOT EXISTS eab_keys("
    "  kid TEXT PRIMARY KEY, hmac BLOB NOT NULL, profiles TEXT, suffixes TEXT,"
    "  created INTEGER NOT NULL, account TEXT, revoked INTEGER NOT NULL DEFAULT 0, note TEXT);"
    "CREATE TABLE IF NOT EXISTS used_jti(jti TEXT PRIMARY KEY, expires INTEGER NOT NULL);"
    "INSERT INTO meta(k, v) VALUES('schema', '1') ON CONFLICT DO NOTHING;";

#define STMT_CACHE 64

struct acme_db {
    sqlite3 *h;
    struct {
        const char *sql; /* statements are cached by their text's address */
        sqlite3_stmt *st;
    } cache[STMT_CACHE];
    unsigned n_cache;
    char err[256];
    bool in_query;
};

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
    char *path;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    wjob *head, *tail;
    unsigned queued;
    bool stopping;
    acme_store_stats stats;
};

/* ------------------------------------------------------------ connections */

static acme_db *db_open(const char *path, bool writer, char *err, size_t errlen)
{
    acme_db *db = calloc(1, sizeof(*db));
    if (!db) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (writer ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path, &db->h, flags, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "state database %s: %s", path, db->h ? sqlite3_errmsg(db->h) : "cannot open");
        goto fail;
    }
    sqlite3_busy_timeout(db->h, 10000);
    const char *pragmas = writer ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF;"
                                 : "PRAGMA synchronous=FULL;";
    char *msg = NULL;
    if (sqlite3_exec(db->h, pragmas, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "state database %s: %s", path, msg ? msg : "pragma failed");
        sqlite3_free(msg);
        goto fail;
    }
    return db;
fail:
    sqlite3_close(db->h);
    free(db);
    return NULL;
}

void acme_db_close(acme_db *db)
{
    if (!db)
        return;
    for (unsigned i = 0; i < db->n_cache; i++)
        sqlite3_finalize(db->cache[i].st);
    sqlite3_close(db->h);
    free(db);
}

const char *acme_db_error(const acme_db *db)
{
    return db->err;
}

static sqlite3_stmt *prep(acme_db *db, const char *sql)
{
    for (unsigned i = 0; i < db->n_cache; i++)
        if (db->cache[i].sql == sql)
            return db->cache[i].st;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(db->err, sizeof(db->err), "prepare: %s", sqlite3_errmsg(db->h));
        return NULL;
    }
    if (db->n_cache < STMT_CACHE) {
        db->cache[db->n_cache].sql = sql;
        db->cache[db->n_cache++].st = st;
    }
    return st;
}

static void unprep(acme_db *db, sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    for (unsigned i = 0; i < db->n_cache; i++)
        if (db->cache[i].st == st)
            return;
    sqlite3_finalize(st); /* cache full: not kept */
}

static int bind_all(acme_db *db, sqlite3_stmt *st, const char *fmt, va_list ap)
{
    int i = 1;
    for (const char *f = fmt; f && *f; f++, i++) {
        int rc;
        switch (*f) {
        case 's': {
            const char *v = va_arg(ap, const char *);
            rc = v ? sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i);
            break;
        }
        case 'i':
            rc = sqlite3_bind_int64(st, i, (sqlite3_int64)va_arg(ap, int64_t));
            break;
        case 'b': {
            const void *p = va_arg(ap, const void *);
            size_t n = va_arg(ap, size_t);
            rc = p ? sqlite3_bind_blob64(st, i, p, n, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i);
            break;
        }
        default:
            snprintf(db->err, sizeof(db->err), "bad bind format '%c'", *f);
            return -1;
        }
        if (rc != SQLITE_OK) {
            snprintf(db->err, sizeof(db->err), "bind %d: %s", i, sqlite3_errmsg(db->h));
            return -1;
        }
    }
    return 0;
}

int acme_db_exec(acme_db *db, const char *sql, const char *fmt, ...)
{
    sqlite3_stmt *st = prep(db, sql);
    if (!st)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    int rc = bind_all(db, st, fmt, ap);
    va_end(ap);
    if (rc == 0) {
        int s;
        while ((s = sqlite3_step(st)) == SQLITE_ROW)
            ;
        if (s != SQLITE_DONE) {
            snprintf(db->err, sizeof(db->err), "%s", sqlite3_errmsg(db->h));
            rc = -1;
        } else {
            rc = sqlite3_changes(db->h);
        }
    }
    unprep(db, st);
    return rc;
}

int acme_db_query(acme_db *db, acme_q *q, const char *sql, const char *fmt, ...)
{
    q->db = db;
    q->stmt = NULL;
    sqlite3_stmt *st = prep(db, sql);
    if (!st)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    int rc = bind_all(db, st, fmt, ap);
    va_end(ap);
    if (rc != 0) {
        unprep(db, st);
        return -1;
    }
    q->stmt = st;
    return 0;
}

int acme_q_next(acme_q *q)
{
    if (!q->stmt)
        return -1;
    int s = sqlite3_step(q->stmt);
    if (s == SQLITE_ROW)
        return 1;
    if (s == SQLITE_DONE)
        return 0;
    snprintf(q->db->err, sizeof(q->db->err), "%s", sqlite3_errmsg(q->db->h));
    return -1;
}

const char *acme_q_text(acme_q *q, int col)
{
    return (const char *)sqlite3_column_text(q->stmt, col);
}

int64_t acme_q_int(acme_q *q, int col)
{
    return (int64_t)sqlite3_column_int64(q->stmt, col);
}

const void *acme_q_blob(acme_q *q, int col, size_t *len)
{
    const void *p = sqlite3_column_blob(q->stmt, col);
    *len = (size_t)sqlite3_column_bytes(q->stmt, col);
    return p;
}

bool acme_q_null(acme_q *q, int col)
{
    return sqlite3_column_type(q->stmt, col) == SQLITE_NULL;
}

void acme_q_end(acme_q *q)
{
    if (q->stmt)
        unprep(q->db, q->stmt);
    q->stmt = NULL;
}

/* ------------------------------------------------------------ the writer */

static int simple(acme_db *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db->h, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(db->err, sizeof(db->err), "%s: %s", sql, msg ? msg : "failed");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* One group: BEGIN, a savepoint per change, COMMIT. */
static void run_group(acme_store *s, wjob *list)
{
    acme_db *db = s->w;
    unsigned n = 0;
    int began = simple(db, "BEGIN IMMEDIATE") == 0;
    for (wjob *j = list; j; j = j->next) {
        n++;
        if (!began) {
            j->rc = -1;
            continue;
        }
        if (simple(db, "SAVEPOINT c") != 0) {
            j->rc = -1;
            continue;
        }
        db->err[0] = '\0';
        j->rc = j->fn(db, j->arg);
        if (j->rc < 0)
            fprintf(stderr, "certforge-acme level=error event=store_change_failed error=\"%s\"\n", db->err);
        if (j->rc != 0 && simple(db, "ROLLBACK TO c") != 0)
            j->rc = -1;
        (void)simple(db, "RELEASE c");
    }
    int committed = began && simple(db, "COMMIT") == 0;
    if (began && !committed) {
        fprintf(stderr, "certforge-acme: event=store_commit_failed error=\"%s\"\n", db->err);
        (void)simple(db, "ROLLBACK");
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
    pthread_setname_np(pthread_self(), "acme-store");
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

int acme_store_open(const acme_cfg *cfg, acme_store **out, char *err, size_t errlen)
{
    *out = NULL;
    if (cfg->backend != ACME_BACKEND_SQLITE) {
        snprintf(err, errlen, "state backend postgresql is not built into this certforge-acme");
        return -1;
    }
    acme_store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->path = strdup(cfg->db_path);
    if (!s->path || !(s->w = db_open(cfg->db_path, true, err, errlen)))
        goto fail;
    if (simple(s->w, schema) != 0) {
        snprintf(err, errlen, "state database %s: %s", cfg->db_path, s->w->err);
        goto fail;
    }
    if (pthread_create(&s->thread, NULL, writer_main, s) != 0) {
        snprintf(err, errlen, "cannot start the store's writer thread");
        goto fail;
    }
    *out = s;
    return 0;
fail:
    acme_db_close(s->w);
    free(s->path);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return -1;
}

acme_db *acme_db_open_reader(acme_store *s, char *err, size_t errlen)
{
    return db_open(s->path, false, err, errlen);
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
    free(s->path);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
