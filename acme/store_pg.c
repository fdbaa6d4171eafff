/* store_pg.c — the PostgreSQL backend of store.h, for several front ends
 * sharing one CA. One connection per thread (the writer, each HTTP loop,
 * each tool); statements prepared once per connection, `?` rewritten to
 * $n; text results, bytea parameters in binary. Durability is the
 * server's: synchronous_commit is forced on for the writer. */
#include "acme/store_int.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The same tables as store_sqlite.c in PostgreSQL's types. */
static const char schema[] =
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS accounts("
    "  id TEXT PRIMARY KEY, thumbprint TEXT NOT NULL UNIQUE, jwk TEXT NOT NULL,"
    "  status TEXT NOT NULL, contact TEXT, eab_kid TEXT, created BIGINT NOT NULL, address TEXT);"
    "CREATE TABLE IF NOT EXISTS orders("
    "  id TEXT PRIMARY KEY, account TEXT NOT NULL, status TEXT NOT NULL,"
    "  expires BIGINT NOT NULL, identifiers TEXT NOT NULL, profile TEXT NOT NULL,"
    "  not_before BIGINT, not_after BIGINT, error TEXT, csr BYTEA, cert TEXT,"
    "  replaces TEXT, created BIGINT NOT NULL, address TEXT,"
    "  star_start BIGINT, star_end BIGINT, star_lifetime BIGINT, star_adjust BIGINT, star_get BIGINT,"
    "  star_seq BIGINT, star_next BIGINT);"
    "CREATE INDEX IF NOT EXISTS orders_star ON orders(star_next);"
    "CREATE INDEX IF NOT EXISTS orders_account ON orders(account, created);"
    "CREATE INDEX IF NOT EXISTS orders_status ON orders(status, expires);"
    "CREATE INDEX IF NOT EXISTS orders_replaces ON orders(replaces);"
    "CREATE TABLE IF NOT EXISTS authzs("
    "  id TEXT PRIMARY KEY, account TEXT NOT NULL, type TEXT NOT NULL, value TEXT NOT NULL,"
    "  status TEXT NOT NULL, expires BIGINT NOT NULL, wildcard BIGINT NOT NULL DEFAULT 0, created BIGINT NOT NULL,"
    "  nf_types TEXT);"
    "CREATE INDEX IF NOT EXISTS authzs_reuse ON authzs(account, type, value, status, expires);"
    "CREATE INDEX IF NOT EXISTS authzs_status ON authzs(status, expires);"
    "CREATE TABLE IF NOT EXISTS order_authzs("
    "  order_id TEXT NOT NULL, authz TEXT NOT NULL, pos BIGINT NOT NULL, PRIMARY KEY(order_id, authz));"
    "CREATE INDEX IF NOT EXISTS order_authzs_authz ON order_authzs(authz);"
    "CREATE TABLE IF NOT EXISTS challenges("
    "  id TEXT PRIMARY KEY, authz TEXT NOT NULL, type TEXT NOT NULL, token TEXT NOT NULL,"
    "  status TEXT NOT NULL, validated BIGINT, error TEXT, response TEXT);"
    "CREATE INDEX IF NOT EXISTS challenges_authz ON challenges(authz);"
    "CREATE TABLE IF NOT EXISTS certs("
    "  id TEXT PRIMARY KEY, order_id TEXT NOT NULL, account TEXT NOT NULL, der BYTEA NOT NULL, chain TEXT NOT NULL,"
    "  not_before BIGINT NOT NULL, not_after BIGINT NOT NULL, ari_id TEXT NOT NULL UNIQUE,"
    "  revoked_at BIGINT, reason BIGINT, replaced_by TEXT, spki_sha256 TEXT, engine_profile TEXT);"
    "CREATE TABLE IF NOT EXISTS eab_keys("
    "  kid TEXT PRIMARY KEY, hmac BYTEA NOT NULL, profiles TEXT, suffixes TEXT,"
    "  created BIGINT NOT NULL, account TEXT, revoked BIGINT NOT NULL DEFAULT 0, note TEXT);"
    "CREATE TABLE IF NOT EXISTS used_jti(jti TEXT PRIMARY KEY, expires BIGINT NOT NULL);"
    "INSERT INTO meta(k, v) VALUES('schema', '1') ON CONFLICT DO NOTHING;";

#define STMT_CACHE 64
#define MAX_PARAMS 16

typedef struct pg_db {
    acme_db base;
    PGconn *c;
    struct {
        const char *sql; /* prepared statements, by their text's address */
        char name[16];
    } cache[STMT_CACHE];
    unsigned n_cache;
} pg_db;

static void set_err(pg_db *db, const char *what)
{
    char *m = PQerrorMessage(db->c);
    size_t n = strlen(m);
    while (n && (m[n - 1] == '\n' || m[n - 1] == ' '))
        n--;
    snprintf(db->base.err, sizeof(db->base.err), "%s: %.*s", what, (int)n, m);
}

static void pg_close(acme_db *d)
{
    pg_db *db = (pg_db *)d;
    PQfinish(db->c);
    free(db);
}

/* The statement's prepared name, preparing it on first use. */
static const char *prep(pg_db *db, const char *sql, int nparams)
{
    for (unsigned i = 0; i < db->n_cache; i++)
        if (db->cache[i].sql == sql)
            return db->cache[i].name;
    if (db->n_cache >= STMT_CACHE) {
        snprintf(db->base.err, sizeof(db->base.err), "too many distinct statements");
        return NULL;
    }
    /* ? → $n (the SQL of this program has no ? inside literals) */
    size_t n = strlen(sql);
    char *pg = malloc(n * 3 + 1), *o = pg;
    if (!pg)
        return NULL;
    int k = 0;
    for (const char *p = sql; *p; p++) {
        if (*p == '?')
            o += sprintf(o, "$%d", ++k);
        else
            *o++ = *p;
    }
    *o = '\0';
    if (k != nparams) {
        snprintf(db->base.err, sizeof(db->base.err), "statement has %d placeholders, %d values", k, nparams);
        free(pg);
        return NULL;
    }
    char *name = db->cache[db->n_cache].name;
    snprintf(name, sizeof(db->cache[0].name), "s%u", db->n_cache);
    PGresult *r = PQprepare(db->c, name, pg, 0, NULL);
    free(pg);
    int ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        snprintf(db->base.err, sizeof(db->base.err), "prepare: %s", r ? PQresultErrorMessage(r) : PQerrorMessage(db->c));
    PQclear(r);
    if (!ok)
        return NULL;
    db->cache[db->n_cache++].sql = sql;
    return name;
}

typedef struct params {
    int n;
    const char *val[MAX_PARAMS];
    int len[MAX_PARAMS], fmt[MAX_PARAMS];
    char num[MAX_PARAMS][24];
} params;

static int collect(pg_db *db, const char *fmt, va_list ap, params *p)
{
    p->n = 0;
    for (const char *f = fmt; f && *f; f++) {
        if (p->n >= MAX_PARAMS) {
            snprintf(db->base.err, sizeof(db->base.err), "too many parameters");
            return -1;
        }
        int i = p->n++;
        p->fmt[i] = 0;
        p->len[i] = 0;
        switch (*f) {
        case 's':
            p->val[i] = va_arg(ap, const char *);
            break;
        case 'i':
            snprintf(p->num[i], sizeof(p->num[i]), "%lld", (long long)va_arg(ap, int64_t));
            p->val[i] = p->num[i];
            break;
        case 'b': {
            p->val[i] = va_arg(ap, const char *);
            p->len[i] = (int)va_arg(ap, size_t);
            p->fmt[i] = 1; /* binary bytea */
            break;
        }
        default:
            snprintf(db->base.err, sizeof(db->base.err), "bad bind format '%c'", *f);
            return -1;
        }
    }
    return 0;
}

static PGresult *run(pg_db *db, const char *sql, const char *fmt, va_list ap)
{
    params p;
    if (collect(db, fmt, ap, &p) != 0)
        return NULL;
    const char *name = prep(db, sql, p.n);
    if (!name)
        return NULL;
    PGresult *r = PQexecPrepared(db->c, name, p.n, p.val, p.len, p.fmt, 0);
    if (!r) {
        set_err(db, "execute");
        return NULL;
    }
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        snprintf(db->base.err, sizeof(db->base.err), "%s", PQresultErrorMessage(r));
        PQclear(r);
        return NULL;
    }
    return r;
}

static int pg_exec(acme_db *d, const char *sql, const char *fmt, va_list ap)
{
    PGresult *r = run((pg_db *)d, sql, fmt, ap);
    if (!r)
        return -1;
    const char *t = PQcmdTuples(r);
    int n = t && *t ? atoi(t) : 0;
    PQclear(r);
    return n;
}

static int pg_query(acme_db *d, acme_q *q, const char *sql, const char *fmt, va_list ap)
{
    PGresult *r = run((pg_db *)d, sql, fmt, ap);
    if (!r)
        return -1;
    q->stmt = r;
    q->row = -1;
    q->nrows = PQntuples(r);
    return 0;
}

static int pg_next(acme_q *q)
{
    PQfreemem(q->aux);
    q->aux = NULL;
    if (q->row + 1 >= q->nrows)
        return 0;
    q->row++;
    return 1;
}

static const char *pg_text(acme_q *q, int col)
{
    return PQgetisnull(q->stmt, q->row, col) ? NULL : PQgetvalue(q->stmt, q->row, col);
}

static int64_t pg_int(acme_q *q, int col)
{
    const char *v = pg_text(q, col);
    return v ? (int64_t)strtoll(v, NULL, 10) : 0;
}

static const void *pg_blob(acme_q *q, int col, size_t *len)
{
    *len = 0;
    if (PQgetisnull(q->stmt, q->row, col))
        return NULL;
    PQfreemem(q->aux);
    q->aux = PQunescapeBytea((const unsigned char *)PQgetvalue(q->stmt, q->row, col), len);
    return q->aux;
}

static bool pg_null(acme_q *q, int col)
{
    return PQgetisnull(q->stmt, q->row, col) != 0;
}

static void pg_end(acme_q *q)
{
    PQfreemem(q->aux);
    q->aux = NULL;
    PQclear(q->stmt);
}

static int pg_simple(acme_db *d, const char *sql)
{
    pg_db *db = (pg_db *)d;
    PGresult *r = PQexec(db->c, sql);
    int ok = r && (PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK);
    if (!ok)
        snprintf(db->base.err, sizeof(db->base.err), "%.60s: %s", sql, r ? PQresultErrorMessage(r) : PQerrorMessage(db->c));
    PQclear(r);
    return ok ? 0 : -1;
}

static const db_ops pg_ops = {
    .name = "postgresql",
    .begin = "BEGIN",
    .close = pg_close,
    .exec = pg_exec,
    .query = pg_query,
    .next = pg_next,
    .text = pg_text,
    .integer = pg_int,
    .blob = pg_blob,
    .null = pg_null,
    .end = pg_end,
    .simple = pg_simple,
    .tx = pg_simple,
};

acme_db *acme_pg_open(const char *conninfo, bool writer, const char *other_schema, char *err, size_t errlen)
{
    pg_db *db = calloc(1, sizeof(*db));
    if (!db) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    db->base.ops = &pg_ops;
    db->c = PQconnectdb(conninfo);
    if (!db->c || PQstatus(db->c) != CONNECTION_OK) {
        set_err(db, "state database (postgresql)");
        snprintf(err, errlen, "%s", db->base.err);
        goto fail;
    }
    /* Several front ends may create the schema at once: one at a time. */
    if (pg_simple(&db->base, "SET synchronous_commit = on; SET client_min_messages = warning") != 0 ||
        (writer && (pg_simple(&db->base, "SELECT pg_advisory_lock(7411)") != 0 || pg_simple(&db->base, other_schema ? other_schema : schema) != 0 ||
                    pg_simple(&db->base, "SELECT pg_advisory_unlock(7411)") != 0))) {
        snprintf(err, errlen, "state database (postgresql): %s", db->base.err);
        goto fail;
    }
    return &db->base;
fail:
    PQfinish(db->c);
    free(db);
    return NULL;
}
