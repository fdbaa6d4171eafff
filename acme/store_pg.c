/* store_pg.c — the PostgreSQL backend of store.h, for several front ends
 * sharing one CA. One connection per thread (the writer, each HTTP loop,
 * each tool); statements prepared once per connection, `?` rewritten to
 * $n; text results, bytea parameters in binary. Durability is the
 * server's: synchronous_commit is forced on for the writer.
 *
 * A server that hangs (stopped processes, a network black hole) blocks no
 * thread for longer than timeout_ms (state.pg_timeout_ms): nothing here
 * blocks in libpq. The connection is non-blocking; every call (a
 * statement, a transaction statement of the writer, a connect) sets one
 * deadline, and connecting (PQconnectStartParams/PQconnectPoll), sending
 * (PQflush) and reading (PQconsumeInput until PQisBusy is false) all wait
 * in poll() against it (pgwait/pgwait.h, shared with certforged's ledger,
 * engine/ledger/ledger_pg.c). At the deadline the connection is dropped (not
 * cancelled: libpq before 17 has no non-blocking cancel, and PQcancel
 * waits on the same hung server), the call fails, and the next call
 * reconnects and prepares its statements again — except inside the
 * writer's transaction: a connection lost after BEGIN fails every call up
 * to the COMMIT/ROLLBACK at once (the server rolls the transaction back
 * when it reads end of file), so nothing of a group is half-applied and
 * no statement of it runs outside the transaction. The waiting is
 * pgwait's; what a timeout means here (the message, the dropped
 * connection, the statement cache) is this file's. */
#include "acme/store_int.h"
#include "pgwait/pgwait.h"

#include <errno.h>
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
    PGconn *c;      /* NULL once a deadline dropped it */
    char *conninfo; /* for reconnects */
    unsigned timeout_ms;
    uint64_t deadline_ms; /* CLOCK_MONOTONIC: the current call ends here */
    bool in_tx;           /* the writer's BEGIN succeeded; no COMMIT/ROLLBACK yet */
    bool opened;          /* acme_pg_open succeeded: a later loss is retried by the next call */
    struct {
        const char *sql; /* prepared statements, by their text's address */
        char name[16];
    } cache[STMT_CACHE];
    unsigned n_cache;
} pg_db;

static void deadline_start(pg_db *db)
{
    db->deadline_ms = pgw_now_ms() + db->timeout_ms;
}

static bool usable(const pg_db *db)
{
    return db->c && PQstatus(db->c) == CONNECTION_OK;
}

static void set_err_msg(pg_db *db, const char *what, const char *m)
{
    size_t n = strlen(m);
    while (n && (m[n - 1] == '\n' || m[n - 1] == ' '))
        n--;
    snprintf(db->base.err, sizeof(db->base.err), "%s: %.*s", what, (int)n, m);
}

static void set_err(pg_db *db, const char *what)
{
    set_err_msg(db, what, db->c ? PQerrorMessage(db->c) : "out of memory");
}

/* The server did not answer by the deadline: drop the connection (its
 * socket is non-blocking, so PQfinish's goodbye cannot block). */
static int timed_out(pg_db *db, const char *what)
{
    PQfinish(db->c);
    db->c = NULL;
    snprintf(db->base.err, sizeof(db->base.err), "%s: no answer from the server within %u ms (state.pg_timeout_ms)%s",
             what, db->timeout_ms, db->opened ? ": connection dropped, the next call reconnects" : "");
    return -1;
}

static int poll_failed(pg_db *db, const char *what)
{
    char m[128];
    snprintf(m, sizeof(m), "poll: %s", strerror(errno));
    set_err_msg(db, what, m);
    PQfinish(db->c);
    db->c = NULL;
    return -1;
}

/* pgw_await/pgw_collect/pgw_connect's outcome as this file's: 0, or -1
 * with the error set (the connection dropped). */
static int bounded(pg_db *db, pgw_rc w, const char *what)
{
    return w == PGW_OK ? 0 : w == PGW_TIMEOUT ? timed_out(db, what) : poll_failed(db, what);
}

/* All results of what was sent, as PQexec returns them (pgw_collect); it
 * must be COMMAND_OK or TUPLES_OK. The result is handed back when out is
 * set. */
static int collect(pg_db *db, PGresult **out, const char *what)
{
    PGresult *keep = NULL;
    if (bounded(db, pgw_collect(db->c, db->deadline_ms, &keep), what) != 0)
        return -1;
    ExecStatusType st = keep ? PQresultStatus(keep) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        const char *m = keep ? PQresultErrorMessage(keep) : "";
        set_err_msg(db, what, m && *m ? m : PQerrorMessage(db->c));
        PQclear(keep);
        return -1;
    }
    if (out)
        *out = keep;
    else
        PQclear(keep);
    return 0;
}

/* Server notices (e.g. "relation already exists, skipping") are not errors. */
static void no_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* A new connection (an old one is closed) by the call's deadline:
 * PQconnectStartParams, then PQconnectPoll whenever poll() says the socket
 * is ready. libpq still resolves a host name synchronously (getaddrinfo);
 * a socket path or hostaddr avoids even that. The statement cache is the
 * old session's: emptied. */
static int pg_connect(pg_db *db, const char *what)
{
    const char *const kw[] = {"dbname", NULL}; /* expand_dbname: key=value pairs or a URI */
    const char *const val[] = {db->conninfo, NULL};
    PQfinish(db->c);
    db->n_cache = 0;
    pgw_rc w = pgw_connect(kw, val, db->deadline_ms, &db->c);
    if (!db->c) {
        set_err(db, what);
        return -1;
    }
    if (w != PGW_OK)
        return bounded(db, w, what);
    if (PQstatus(db->c) != CONNECTION_OK || !PQisnonblocking(db->c)) {
        set_err(db, what);
        return -1;
    }
    PQsetNoticeProcessor(db->c, no_notices, NULL);
    return 0;
}

static int send_simple(pg_db *db, const char *sql, const char *what)
{
    if (!PQsendQuery(db->c, sql)) {
        set_err(db, what);
        return -1;
    }
    return collect(db, NULL, what);
}

/* Session settings: at open and after every reconnect. */
static int session_settings(pg_db *db)
{
    return send_simple(db, "SET synchronous_commit = on; SET client_min_messages = warning", "state database (postgresql)");
}

/* Before every call (its deadline set): a lost or dropped connection is
 * reopened — one attempt within the call's deadline — unless the writer's
 * transaction was open on it: then the call fails at once. */
static int ready(pg_db *db)
{
    if (usable(db))
        return 0;
    if (db->in_tx) {
        snprintf(db->base.err, sizeof(db->base.err),
                 "the connection was lost inside the transaction: nothing of it is kept");
        return -1;
    }
    if (pg_connect(db, "cannot reconnect to the state database (postgresql)") != 0)
        return -1;
    return session_settings(db);
}

static void pg_close(acme_db *d)
{
    pg_db *db = (pg_db *)d;
    PQfinish(db->c);
    free(db->conninfo);
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
    int sent = PQsendPrepare(db->c, name, pg, 0, NULL);
    free(pg);
    if (!sent) {
        set_err(db, "prepare");
        return NULL;
    }
    if (collect(db, NULL, "prepare") != 0)
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

static int collect_params(pg_db *db, const char *fmt, va_list ap, params *p)
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
    if (collect_params(db, fmt, ap, &p) != 0)
        return NULL;
    deadline_start(db);
    if (ready(db) != 0)
        return NULL;
    const char *name = prep(db, sql, p.n);
    if (!name)
        return NULL;
    if (!PQsendQueryPrepared(db->c, name, p.n, p.val, p.len, p.fmt, 0)) {
        set_err(db, "execute");
        return NULL;
    }
    PGresult *r = NULL;
    if (collect(db, &r, "execute") != 0)
        return NULL;
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
    char what[80];
    snprintf(what, sizeof(what), "%.60s", sql);
    deadline_start(db);
    if (ready(db) != 0)
        return -1;
    return send_simple(db, sql, what);
}

/* The writer's transaction statements: BEGIN opens the transaction on a
 * usable (or reopened) connection; COMMIT and ROLLBACK end it whatever
 * their outcome (a failed COMMIT rolls back; a dropped connection ends
 * the transaction at the server). Between them a lost connection is not
 * reopened (ready()). */
static int pg_tx(acme_db *d, const char *sql)
{
    pg_db *db = (pg_db *)d;
    bool ends = strcmp(sql, "COMMIT") == 0 || strcmp(sql, "ROLLBACK") == 0;
    if (ends && !usable(db)) {
        db->in_tx = false;
        snprintf(db->base.err, sizeof(db->base.err),
                 "%s: the connection was lost inside the transaction: nothing of it is kept", sql);
        return -1;
    }
    int rc = pg_simple(d, sql);
    if (strcmp(sql, "BEGIN") == 0)
        db->in_tx = rc == 0;
    else if (ends)
        db->in_tx = false;
    return rc;
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
    .tx = pg_tx,
};

acme_db *acme_pg_open(const char *conninfo, bool writer, const char *other_schema, unsigned timeout_ms, char *err,
                      size_t errlen)
{
    pg_db *db = calloc(1, sizeof(*db));
    if (!db || !(db->conninfo = strdup(conninfo))) {
        snprintf(err, errlen, "out of memory");
        free(db);
        return NULL;
    }
    db->base.ops = &pg_ops;
    db->timeout_ms = timeout_ms ? timeout_ms : ACME_PG_TIMEOUT_MS_DEFAULT;
    deadline_start(db);
    if (pg_connect(db, "state database (postgresql)") != 0) {
        snprintf(err, errlen, "%s", db->base.err);
        goto fail;
    }
    deadline_start(db);
    if (session_settings(db) != 0) {
        snprintf(err, errlen, "%s", db->base.err);
        goto fail;
    }
    /* Several front ends may create the schema at once: one at a time. */
    if (writer && (pg_simple(&db->base, "SELECT pg_advisory_lock(7411)") != 0 ||
                   pg_simple(&db->base, other_schema ? other_schema : schema) != 0 ||
                   pg_simple(&db->base, "SELECT pg_advisory_unlock(7411)") != 0)) {
        snprintf(err, errlen, "state database (postgresql): %s", db->base.err);
        goto fail;
    }
    db->opened = true;
    return &db->base;
fail:
    pg_close(&db->base);
    return NULL;
}
