/* store_sqlite.c — the SQLite backend of store.h (WAL, synchronous=FULL). */
#include "acme/store_int.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Version 1 of the schema. Times are Unix seconds; JSON columns hold what
 * the API shows (identifiers, contact, problem documents). store_pg.c has
 * the same tables in PostgreSQL's types: keep them together. */
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
    "  replaces TEXT, created INTEGER NOT NULL, address TEXT,"
    "  star_start INTEGER, star_end INTEGER, star_lifetime INTEGER, star_adjust INTEGER, star_get INTEGER,"
    "  star_seq INTEGER, star_next INTEGER);"
    "CREATE INDEX IF NOT EXISTS orders_star ON orders(star_next);"
    "CREATE INDEX IF NOT EXISTS orders_account ON orders(account, created);"
    "CREATE INDEX IF NOT EXISTS orders_status ON orders(status, expires);"
    "CREATE INDEX IF NOT EXISTS orders_replaces ON orders(replaces);"
    "CREATE TABLE IF NOT EXISTS authzs("
    "  id TEXT PRIMARY KEY, account TEXT NOT NULL, type TEXT NOT NULL, value TEXT NOT NULL,"
    "  status TEXT NOT NULL, expires INTEGER NOT NULL, wildcard INTEGER NOT NULL DEFAULT 0,"
    "  created INTEGER NOT NULL, nf_types TEXT);"
    "CREATE INDEX IF NOT EXISTS authzs_reuse ON authzs(account, type, value, status, expires);"
    "CREATE INDEX IF NOT EXISTS authzs_status ON authzs(status, expires);"
    "CREATE TABLE IF NOT EXISTS order_authzs("
    "  order_id TEXT NOT NULL, authz TEXT NOT NULL, pos INTEGER NOT NULL,"
    "  PRIMARY KEY(order_id, authz));"
    "CREATE INDEX IF NOT EXISTS order_authzs_authz ON order_authzs(authz);"
    "CREATE TABLE IF NOT EXISTS challenges("
    "  id TEXT PRIMARY KEY, authz TEXT NOT NULL, type TEXT NOT NULL, token TEXT NOT NULL,"
    "  status TEXT NOT NULL, validated INTEGER, error TEXT, response TEXT);"
    "CREATE INDEX IF NOT EXISTS challenges_authz ON challenges(authz);"
    "CREATE TABLE IF NOT EXISTS certs("
    "  id TEXT PRIMARY KEY, order_id TEXT NOT NULL, account TEXT NOT NULL, der BLOB NOT NULL, chain TEXT NOT NULL,"
    "  not_before INTEGER NOT NULL, not_after INTEGER NOT NULL, ari_id TEXT NOT NULL UNIQUE,"
    "  revoked_at INTEGER, reason INTEGER, replaced_by TEXT, spki_sha256 TEXT, engine_profile TEXT);"
    "CREATE TABLE IF NOT EXISTS eab_keys("
    "  kid TEXT PRIMARY KEY, hmac BLOB NOT NULL, profiles TEXT, suffixes TEXT,"
    "  created INTEGER NOT NULL, account TEXT, revoked INTEGER NOT NULL DEFAULT 0, note TEXT);"
    "CREATE TABLE IF NOT EXISTS used_jti(jti TEXT PRIMARY KEY, expires INTEGER NOT NULL);"
    "INSERT INTO meta(k, v) VALUES('schema', '1') ON CONFLICT DO NOTHING;";

#define STMT_CACHE 64

typedef struct sq_db {
    acme_db base;
    sqlite3 *h;
    struct {
        const char *sql; /* statements are cached by their text's address */
        sqlite3_stmt *st;
    } cache[STMT_CACHE];
    unsigned n_cache;
} sq_db;

static void sq_close(acme_db *d)
{
    sq_db *db = (sq_db *)d;
    for (unsigned i = 0; i < db->n_cache; i++)
        sqlite3_finalize(db->cache[i].st);
    sqlite3_close(db->h);
    free(db);
}

static sqlite3_stmt *prep(sq_db *db, const char *sql)
{
    for (unsigned i = 0; i < db->n_cache; i++)
        if (db->cache[i].sql == sql)
            return db->cache[i].st;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(db->base.err, sizeof(db->base.err), "prepare: %s", sqlite3_errmsg(db->h));
        return NULL;
    }
    if (db->n_cache < STMT_CACHE) {
        db->cache[db->n_cache].sql = sql;
        db->cache[db->n_cache++].st = st;
    }
    return st;
}

static void unprep(sq_db *db, sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    for (unsigned i = 0; i < db->n_cache; i++)
        if (db->cache[i].st == st)
            return;
    sqlite3_finalize(st); /* cache full: not kept */
}

static int bind_all(sq_db *db, sqlite3_stmt *st, const char *fmt, va_list ap)
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
            snprintf(db->base.err, sizeof(db->base.err), "bad bind format '%c'", *f);
            return -1;
        }
        if (rc != SQLITE_OK) {
            snprintf(db->base.err, sizeof(db->base.err), "bind %d: %s", i, sqlite3_errmsg(db->h));
            return -1;
        }
    }
    return 0;
}

static int sq_exec(acme_db *d, const char *sql, const char *fmt, va_list ap)
{
    sq_db *db = (sq_db *)d;
    sqlite3_stmt *st = prep(db, sql);
    if (!st)
        return -1;
    int rc = bind_all(db, st, fmt, ap);
    if (rc == 0) {
        int s;
        while ((s = sqlite3_step(st)) == SQLITE_ROW)
            ;
        if (s != SQLITE_DONE) {
            snprintf(db->base.err, sizeof(db->base.err), "%s", sqlite3_errmsg(db->h));
            rc = -1;
        } else {
            rc = sqlite3_changes(db->h);
        }
    }
    unprep(db, st);
    return rc;
}

static int sq_query(acme_db *d, acme_q *q, const char *sql, const char *fmt, va_list ap)
{
    sq_db *db = (sq_db *)d;
    sqlite3_stmt *st = prep(db, sql);
    if (!st)
        return -1;
    if (bind_all(db, st, fmt, ap) != 0) {
        unprep(db, st);
        return -1;
    }
    q->stmt = st;
    return 0;
}

static int sq_next(acme_q *q)
{
    int s = sqlite3_step(q->stmt);
    if (s == SQLITE_ROW)
        return 1;
    if (s == SQLITE_DONE)
        return 0;
    snprintf(q->db->err, sizeof(q->db->err), "%s", sqlite3_errmsg(((sq_db *)q->db)->h));
    return -1;
}

static const char *sq_text(acme_q *q, int col)
{
    return (const char *)sqlite3_column_text(q->stmt, col);
}

static int64_t sq_int(acme_q *q, int col)
{
    return (int64_t)sqlite3_column_int64(q->stmt, col);
}

static const void *sq_blob(acme_q *q, int col, size_t *len)
{
    const void *p = sqlite3_column_blob(q->stmt, col);
    *len = (size_t)sqlite3_column_bytes(q->stmt, col);
    return p;
}

static bool sq_null(acme_q *q, int col)
{
    return sqlite3_column_type(q->stmt, col) == SQLITE_NULL;
}

static void sq_end(acme_q *q)
{
    unprep((sq_db *)q->db, q->stmt);
}

static int sq_simple(acme_db *d, const char *sql)
{
    sq_db *db = (sq_db *)d;
    char *msg = NULL;
    if (sqlite3_exec(db->h, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(db->base.err, sizeof(db->base.err), "%.60s: %s", sql, msg ? msg : "failed");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* sql is one of store.c's literals: prepared once, by address */
static int sq_tx(acme_db *d, const char *sql)
{
    sq_db *db = (sq_db *)d;
    sqlite3_stmt *st = prep(db, sql);
    if (!st)
        return -1;
    int s = sqlite3_step(st);
    if (s != SQLITE_DONE)
        snprintf(db->base.err, sizeof(db->base.err), "%.40s: %s", sql, sqlite3_errmsg(db->h));
    unprep(db, st);
    return s == SQLITE_DONE ? 0 : -1;
}

static const db_ops sqlite_ops = {
    .name = "sqlite",
    .begin = "BEGIN IMMEDIATE",
    .close = sq_close,
    .exec = sq_exec,
    .query = sq_query,
    .next = sq_next,
    .text = sq_text,
    .integer = sq_int,
    .blob = sq_blob,
    .null = sq_null,
    .end = sq_end,
    .simple = sq_simple,
    .tx = sq_tx,
};

acme_db *acme_sqlite_open(const char *path, bool writer, const char *other_schema, char *err, size_t errlen)
{
    sq_db *db = calloc(1, sizeof(*db));
    if (!db) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    db->base.ops = &sqlite_ops;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (writer ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path, &db->h, flags, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "state database %s: %s", path, db->h ? sqlite3_errmsg(db->h) : "cannot open");
        goto fail;
    }
    sqlite3_busy_timeout(db->h, 10000);
    if (sq_simple(&db->base, writer ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;" : "PRAGMA synchronous=FULL;") != 0 ||
        (writer && sq_simple(&db->base, other_schema ? other_schema : schema) != 0)) {
        snprintf(err, errlen, "state database %s: %s", path, db->base.err);
        goto fail;
    }
    return &db->base;
fail:
    sqlite3_close(db->h);
    free(db);
    return NULL;
}
