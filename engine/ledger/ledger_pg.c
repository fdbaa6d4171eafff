/* ledger_pg.c — the PostgreSQL ledger backend (docs/ledger.md), for several
 * certforged instances sharing one CA.
 *
 * Durability: a batch is one explicit transaction; COMMIT returns once the
 * server has flushed its WAL (synchronous_commit on, which this session
 * forces when the server's default is off). A server running with
 * fsync=off is refused for writing: its commits are not durable, and the
 * ledger must lose no certificate that was released.
 *
 * Round trips: a batch's INSERTs are sent in libpq pipeline mode, up to
 * PG_CHUNK statements per synchronisation point (BEGIN with the first),
 * and COMMIT alone once they are all acknowledged (see pg_record), so a
 * batch of B certificates costs ceil((B + 1) / PG_CHUNK) + 1 round trips
 * instead of B + 2 (docs/ledger.md has the measurement). The chunking keeps the results the
 * server has to write back well under a socket buffer, so neither side
 * blocks on a full buffer while the other is still sending.
 *
 * Connection loss: the call that notices it fails (-1, the message names
 * host, port, database and user — never the password, which the config
 * refuses anyway); the next call resets the connection and prepares the
 * statements again, so certforged recovers without a restart.
 *
 * A server that hangs (stopped processes, a network black hole) is the
 * same, after at most timeout_ms (ledger.pg_timeout_ms): nothing here
 * blocks in libpq. The connection is non-blocking; every call sets one
 * deadline, and connecting (PQconnectStartParams/PQconnectPoll), sending
 * (PQflush) and reading (PQconsumeInput until PQisBusy is false) all wait
 * in poll() against it. At the deadline the connection is dropped (see
 * timed_out()), the call fails, and the next call reconnects.
 *
 * One connection, used by one thread at a time (ledger.c serializes).
 * Statements are prepared once per connection; parameters and results are
 * binary where the value is (bytea, bigint), text otherwise.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/reason.h"
#include "engine/ledger/ledger_backend.h"
#include "pgwait/pgwait.h"

/* Statements per pipeline synchronisation point (see the top comment);
 * -DPG_CHUNK=1 gives one round trip per statement, for the comparison in
 * docs/ledger.md. */
#ifndef PG_CHUNK
#define PG_CHUNK 256
#endif
/* Every session serializes schema creation and migration on this
 * transaction-level advisory lock ("cfledger"), so two daemons starting at
 * once on an empty database do not both create it. */
#define PG_SCHEMA_LOCK "7164849626424420210"

/* Type OIDs (pg_type.dat): fixed since PostgreSQL 7. */
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_TEXT 25

/* Version 1, as ledger_sqlite.c's, with PostgreSQL types. */
static const char schema_v1[] =
    "CREATE TABLE schema_version (version INTEGER NOT NULL);\n"
    "CREATE TABLE certificates (\n"
    "  serial            TEXT NOT NULL UNIQUE,\n"
    "  profile           TEXT NOT NULL,\n"
    "  issuer_key        TEXT NOT NULL,\n"
    "  subject           TEXT NOT NULL,\n"
    "  sans              TEXT NOT NULL,\n"
    "  nf_instance_id    TEXT,\n"
    "  not_before        BIGINT NOT NULL,\n"
    "  not_after         BIGINT NOT NULL,\n"
    "  cert              BYTEA NOT NULL,\n"
    "  requester_uid     BIGINT,\n"
    "  requester         TEXT,\n"
    "  issued_at_ms      BIGINT NOT NULL,\n"
    "  status            TEXT NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'revoked')),\n"
    "  revoked_at        BIGINT,\n"
    "  revocation_reason TEXT\n"
    ");\n"
    "CREATE INDEX certificates_profile ON certificates (profile);\n"
    "CREATE INDEX certificates_nf_instance_id ON certificates (nf_instance_id);\n"
    "CREATE INDEX certificates_not_after ON certificates (not_after);\n"
    "INSERT INTO schema_version (version) VALUES (1);\n";

/* Version 2: raw SIGN records, cRLNumbers and CRLs. */
static const char schema_v2[] =
    "CREATE TABLE sign_records (\n"
    "  id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
    "  key           TEXT NOT NULL,\n"
    "  mechanism     TEXT NOT NULL,\n"
    "  digest        BYTEA NOT NULL,\n"
    "  requester_uid BIGINT,\n"
    "  requester     TEXT,\n"
    "  signed_at_ms  BIGINT NOT NULL\n"
    ");\n"
    "CREATE INDEX sign_records_key ON sign_records (key, id);\n"
    "CREATE TABLE crl_numbers (\n"
    "  issuer_key TEXT PRIMARY KEY,\n"
    "  last       BIGINT NOT NULL\n"
    ");\n"
    "CREATE TABLE crls (\n"
    "  issuer_key  TEXT NOT NULL,\n"
    "  number      BIGINT NOT NULL,\n"
    "  this_update BIGINT NOT NULL,\n"
    "  next_update BIGINT NOT NULL,\n"
    "  der         BYTEA NOT NULL,\n"
    "  PRIMARY KEY (issuer_key, number)\n"
    ");\n"
    "CREATE INDEX certificates_revoked ON certificates (issuer_key, status);\n";

/* Version 3: partial indexes on the revoked rows only, so that listing
 * them costs what there is to list, not the table: the CRL query
 * (list_revoked: one issuer, ordered by serial) and `ledger list
 * --revoked` (no issuer, ordered by issued_at_ms, serial). They replace
 * (issuer_key, status), which nothing else used. */
static const char schema_v3[] =
    "DROP INDEX certificates_revoked;\n"
    "CREATE INDEX certificates_revoked_issuer ON certificates (issuer_key, serial)\n"
    "  WHERE status = 'revoked';\n"
    "CREATE INDEX certificates_revoked_issued ON certificates (issued_at_ms, serial)\n"
    "  WHERE status = 'revoked';\n";

/* migrations[v] takes a version-v database to v+1 (as in ledger_sqlite.c). */
static const char *const migrations[LEDGER_SCHEMA_VERSION] = {NULL, schema_v2, schema_v3};

static const char columns[] =
    "serial, profile, issuer_key, subject, sans, nf_instance_id, not_before, not_after, cert, "
    "requester_uid, requester, issued_at_ms, status, revoked_at, revocation_reason";

/* Prepared once per connection. */
static const struct {
    const char *name, *sql;
    int n;
    Oid types[12];
    bool writer; /* not prepared on a read-only connection */
} stmts[] = {
    {"cf_ins",
     "INSERT INTO certificates (serial, profile, issuer_key, subject, sans, nf_instance_id, "
     "not_before, not_after, cert, requester_uid, requester, issued_at_ms, status) "
     "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'valid')",
     12,
     {OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_INT8, OID_INT8, OID_BYTEA,
      OID_INT8, OID_TEXT, OID_INT8},
     true},
    {"cf_ins_sign",
     "INSERT INTO sign_records (key, mechanism, digest, requester_uid, requester, "
     "signed_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
     6,
     {OID_TEXT, OID_TEXT, OID_BYTEA, OID_INT8, OID_TEXT, OID_INT8},
     true},
    /* Row lock: two engines revoking the same serial at once see one
     * revocation stand and the other report it (idempotent). */
    {"cf_rev_sel",
     "SELECT status, revoked_at, revocation_reason FROM certificates WHERE serial = $1 "
     "FOR UPDATE",
     1,
     {OID_TEXT},
     true},
    {"cf_rev_upd",
     "UPDATE certificates SET status = 'revoked', revoked_at = $2, revocation_reason = $3 "
     "WHERE serial = $1 AND status = 'valid'",
     3,
     {OID_TEXT, OID_INT8, OID_TEXT},
     true},
    {"cf_revoked",
     "SELECT serial, revoked_at, revocation_reason FROM certificates "
     "WHERE issuer_key = $1 AND status = 'revoked' AND not_after >= $2 "
     "ORDER BY length(serial), serial",
     2,
     {OID_TEXT, OID_INT8},
     false},
    /* One statement, so atomic across engines: the row lock of ON CONFLICT
     * DO UPDATE orders concurrent takers, each gets its own number. */
    {"cf_crl_next",
     "INSERT INTO crl_numbers (issuer_key, last) VALUES ($1, 1) "
     "ON CONFLICT (issuer_key) DO UPDATE SET last = crl_numbers.last + 1 RETURNING last",
     1,
     {OID_TEXT},
     true},
    {"cf_crl_store",
     "INSERT INTO crls (issuer_key, number, this_update, next_update, der) "
     "VALUES ($1, $2, $3, $4, $5)",
     5,
     {OID_TEXT, OID_INT8, OID_INT8, OID_INT8, OID_BYTEA},
     true},
    {"cf_crl_latest",
     "SELECT number, this_update, next_update, der FROM crls WHERE issuer_key = $1 "
     "ORDER BY number DESC LIMIT 1",
     1,
     {OID_TEXT},
     false},
};
#define N_STMTS (sizeof(stmts) / sizeof(stmts[0]))

typedef struct pg {
    PGconn *conn;    /* NULL after a timeout dropped it */
    char *conninfo;  /* for reconnects */
    char where[320]; /* "postgresql host=... port=... dbname=... user=..." for messages */
    bool read_only;
    bool broken; /* the last call lost the connection: the next one resets it */
    bool opened; /* pg_open succeeded: later failures are retried by the next call */
    unsigned lock_timeout_ms;
    unsigned timeout_ms;  /* ledger.pg_timeout_ms */
    uint64_t deadline_ms; /* CLOCK_MONOTONIC: the current call's exchange ends here */
    int version;
} pg;

/* At the start of every call (and per row of a streamed listing). */
static void deadline_start(pg *s)
{
    s->deadline_ms = pgw_now_ms() + s->timeout_ms;
}

/* A libpq message on one line (they end with a newline, details on more). */
static void one_line(char *s)
{
    for (char *p = s; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
    size_t n = strlen(s);
    while (n && s[n - 1] == ' ')
        s[--n] = 0;
}

static int pg_fail_msg(pg *s, char *err, size_t errlen, const char *what, const char *msg)
{
    char m[400];
    snprintf(m, sizeof(m), "%s", msg && msg[0] ? msg : "unknown error");
    one_line(m);
    if (s->conn && PQstatus(s->conn) == CONNECTION_BAD)
        s->broken = true;
    snprintf(err, errlen, "ledger %s: %s: %s%s", s->where, what, m,
             s->broken ? " (connection lost: the next call reconnects)" : "");
    return -1;
}

static int pg_fail(pg *s, char *err, size_t errlen, const char *what)
{
    return pg_fail_msg(s, err, errlen, what, s->conn ? PQerrorMessage(s->conn) : "out of memory");
}

/* The message of a failed result, with its DETAIL when there is one (the
 * duplicate key of a UNIQUE violation is there). */
static int pg_fail_res(pg *s, char *err, size_t errlen, const char *what, const PGresult *r)
{
    char m[400];
    const char *prim = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *det = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL) : NULL;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    /* class 08 connection exception, 57P01-57P03 the server shutting down
     * or our backend terminated: libpq may not have seen the EOF yet */
    if (state && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0))
        s->broken = true;
    if (!prim)
        return pg_fail(s, err, errlen, what);
    snprintf(m, sizeof(m), "%s%s%s", prim, det ? ": " : "", det ? det : "");
    return pg_fail_msg(s, err, errlen, what, m);
}

/* Where the ledger is, for messages, from the conninfo (before a
 * connection exists) — host, port, dbname, user; never the password. */
static void describe(pg *s, const char *conninfo)
{
    char *e = NULL;
    PQconninfoOption *o = PQconninfoParse(conninfo, &e);
    const char *host = NULL, *port = NULL, *db = NULL, *user = NULL;
    for (PQconninfoOption *p = o; p && p->keyword; p++) {
        if (!p->val || !p->val[0])
            continue;
        if (strcmp(p->keyword, "host") == 0 || (!host && strcmp(p->keyword, "hostaddr") == 0))
            host = p->val;
        else if (strcmp(p->keyword, "port") == 0)
            port = p->val;
        else if (strcmp(p->keyword, "dbname") == 0)
            db = p->val;
        else if (strcmp(p->keyword, "user") == 0)
            user = p->val;
    }
    snprintf(s->where, sizeof(s->where), "postgresql host=%.120s%s%.8s dbname=%.63s user=%.63s",
             host ? host : "(default)", port ? " port=" : "", port ? port : "",
             db ? db : "(default)", user ? user : "(default)");
    PQconninfoFree(o);
    PQfreemem(e);
}

/* A conninfo with a password in it is refused (config.c refuses it with
 * the line; this is the same rule for callers that bypass the config). */
static int conninfo_ok(const char *conninfo, char *err, size_t errlen)
{
    char *e = NULL;
    PQconninfoOption *o = PQconninfoParse(conninfo, &e);
    if (!o) {
        char m[300];
        snprintf(m, sizeof(m), "%s", e ? e : "out of memory");
        one_line(m);
        snprintf(err, errlen, "ledger postgresql: conninfo: %s", m);
        PQfreemem(e);
        return -1;
    }
    int rc = 0;
    for (PQconninfoOption *p = o; p->keyword; p++)
        if ((strcmp(p->keyword, "password") == 0 || strcmp(p->keyword, "sslpassword") == 0) &&
            p->val && p->val[0]) {
            snprintf(err, errlen,
                     "ledger postgresql: conninfo holds a %s: keep secrets out of the config "
                     "(use a password file, PGPASSFILE or ~/.pgpass, or peer authentication)",
                     p->keyword);
            rc = -1;
        }
    PQconninfoFree(o);
    return rc;
}

static void pg_close(void *state)
{
    pg *s = state;
    if (!s)
        return;
    PQfinish(s->conn);
    free(s->conninfo);
    free(s);
}

/* --- bounded waits --- */

/* The server did not answer by the deadline. The connection is dropped,
 * not cancelled: PQcancel (libpq before 17 has no non-blocking cancel)
 * connects to the same server and waits for its answer, which hangs just
 * the same. Dropping it ends the backend's open transaction as soon as
 * that backend runs again (it reads end of file), so nothing of the call
 * is committed unless its COMMIT had already been sent (pg_record sends
 * COMMIT only after every INSERT was acknowledged). The socket is
 * non-blocking, so PQfinish's goodbye cannot block either. */
static int timed_out(pg *s, char *err, size_t errlen, const char *what)
{
    PQfinish(s->conn);
    s->conn = NULL;
    s->broken = true;
    snprintf(err, errlen,
             "ledger %s: %s: no answer from the server within %u ms (ledger.pg_timeout_ms)%s",
             s->where, what, s->timeout_ms,
             s->opened ? ": connection dropped, the next call reconnects" : "");
    return -1;
}

/* poll() itself failed (errno): the connection is dropped as at a
 * timeout. */
static int poll_failed(pg *s, char *err, size_t errlen, const char *what)
{
    char m[128];
    snprintf(m, sizeof(m), "poll: %s", strerror(errno));
    pg_fail_msg(s, err, errlen, what, m);
    PQfinish(s->conn);
    s->conn = NULL;
    s->broken = true;
    return -1;
}

/* pgw_await's outcome as this file's: 0, or -1 with err (the connection
 * dropped). */
static int bounded(pg *s, pgw_rc w, char *err, size_t errlen, const char *what)
{
    return w == PGW_OK ? 0 : w == PGW_TIMEOUT ? timed_out(s, err, errlen, what)
                                              : poll_failed(s, err, errlen, what);
}

/* Wait until PQgetResult will not block (pgwait.h); -1 when the deadline
 * passes first (err; the connection is dropped). */
static int await_result(pg *s, char *err, size_t errlen, const char *what)
{
    return bounded(s, pgw_await(s->conn, s->deadline_ms), err, errlen, what);
}

/* The next result; NULL when the statement's (outside pipeline mode: the
 * query's) results are over. -1: the deadline passed (err). */
static int next_result(pg *s, PGresult **r, char *err, size_t errlen, const char *what)
{
    *r = NULL;
    if (await_result(s, err, errlen, what) != 0)
        return -1;
    *r = PQgetResult(s->conn);
    return 0;
}

/* All results of a query sent outside pipeline mode, as PQexec would
 * return them (pgw_collect), which must end with status `want`; on
 * success the result is handed back when asked. */
static int collect(pg *s, ExecStatusType want, PGresult **out, char *err, size_t errlen,
                   const char *what)
{
    PGresult *keep = NULL;
    if (bounded(s, pgw_collect(s->conn, s->deadline_ms, &keep), err, errlen, what) != 0)
        return -1;
    if (PQresultStatus(keep) != want) {
        pg_fail_res(s, err, errlen, what, keep);
        PQclear(keep);
        return -1;
    }
    if (out)
        *out = keep;
    else
        PQclear(keep);
    return 0;
}

/* A query (one or more statements) that must succeed with `want`
 * (PGRES_COMMAND_OK or PGRES_TUPLES_OK), bounded by the call's deadline. */
static int exec_want(pg *s, const char *sql, ExecStatusType want, PGresult **out, char *err,
                     size_t errlen, const char *what)
{
    if (!PQsendQuery(s->conn, sql))
        return pg_fail(s, err, errlen, what);
    return collect(s, want, out, err, errlen, what);
}

/* End a failed call's transaction (bounded too: a timeout drops the
 * connection, which ends the transaction as well). err is kept. */
static void rollback(pg *s)
{
    char e[16];
    if (PQstatus(s->conn) != CONNECTION_OK || PQtransactionStatus(s->conn) == PQTRANS_IDLE)
        return;
    if (PQpipelineStatus(s->conn) != PQ_PIPELINE_OFF) {
        s->broken = true; /* results still pending: the next call reconnects */
        return;
    }
    (void)exec_want(s, "ROLLBACK", PGRES_COMMAND_OK, NULL, e, sizeof(e), "ROLLBACK");
}

/* Read the schema version (0: no schema_version table in the search path). */
static int read_version(pg *s, int *v, char *err, size_t errlen)
{
    PGresult *r = NULL;
    if (exec_want(s, "SELECT to_regclass('schema_version') IS NOT NULL", PGRES_TUPLES_OK, &r, err,
                  errlen, "cannot read the schema version") != 0)
        return -1;
    bool has = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (!has) {
        *v = 0;
        return 0;
    }
    if (exec_want(s, "SELECT coalesce(max(version), 0) FROM schema_version", PGRES_TUPLES_OK, &r,
                  err, errlen, "cannot read the schema version") != 0)
        return -1;
    *v = PQntuples(r) == 1 ? atoi(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    return 0;
}

/* Create or migrate the schema in one transaction, under the advisory
 * lock, so two engines opening an empty database at once cannot both
 * create it: the second waits, then finds it created. */
static int prepare_schema(pg *s, char *err, size_t errlen)
{
    int v = 0;
    if (exec_want(s, "BEGIN", PGRES_COMMAND_OK, NULL, err, errlen, "BEGIN") != 0)
        return -1;
    if (exec_want(s, "SELECT pg_advisory_xact_lock(" PG_SCHEMA_LOCK ")", PGRES_TUPLES_OK, NULL, err,
                  errlen, "cannot lock the schema") != 0 ||
        read_version(s, &v, err, errlen) != 0)
        goto rollback;
    if (v > LEDGER_SCHEMA_VERSION) {
        snprintf(err, errlen,
                 "ledger %s: schema version %d is newer than this certforge's (%d): use the "
                 "certforged that wrote it",
                 s->where, v, LEDGER_SCHEMA_VERSION);
        goto rollback;
    }
    if (v == 0) {
        if (exec_want(s, schema_v1, PGRES_COMMAND_OK, NULL, err, errlen,
                      "cannot create the schema") != 0)
            goto rollback;
        v = 1;
    }
    for (; v < LEDGER_SCHEMA_VERSION; v++) {
        char sql[64], what[64];
        snprintf(sql, sizeof(sql), "UPDATE schema_version SET version = %d", v + 1);
        snprintf(what, sizeof(what), "cannot migrate schema version %d to %d", v, v + 1);
        if (exec_want(s, migrations[v], PGRES_COMMAND_OK, NULL, err, errlen, what) != 0 ||
            exec_want(s, sql, PGRES_COMMAND_OK, NULL, err, errlen, what) != 0)
            goto rollback;
    }
    if (exec_want(s, "COMMIT", PGRES_COMMAND_OK, NULL, err, errlen, "cannot commit the schema") !=
        0)
        goto rollback;
    s->version = v;
    return 0;
rollback:
    rollback(s);
    return -1;
}

/* Session settings: at open and after every reconnect (a new server
 * session has none). */
static int session_settings(pg *s, char *err, size_t errlen)
{
    char sql[128];
    PGresult *r = NULL;
    if (PQstatus(s->conn) != CONNECTION_OK)
        return pg_fail(s, err, errlen, "cannot connect");
    /* A row or table lock held by someone else fails the batch after
     * busy_timeout_ms (LEDGER_FAILURE), like SQLite's busy timeout,
     * instead of stalling the recorder. */
    snprintf(sql, sizeof(sql), "SET lock_timeout = %u", s->lock_timeout_ms);
    if (exec_want(s, sql, PGRES_COMMAND_OK, NULL, err, errlen, "cannot set lock_timeout") != 0)
        return -1;
    if (s->read_only) {
        if (exec_want(s, "SET default_transaction_read_only = on", PGRES_COMMAND_OK, NULL, err,
                      errlen, "cannot make the session read-only") != 0)
            return -1;
    } else {
        if (exec_want(s, "SELECT current_setting('fsync'), current_setting('synchronous_commit')",
                      PGRES_TUPLES_OK, &r, err, errlen, "cannot read the server's settings") != 0)
            return -1;
        bool fsync_off = strcmp(PQgetvalue(r, 0, 0), "off") == 0;
        bool async = strcmp(PQgetvalue(r, 0, 1), "off") == 0;
        PQclear(r);
        if (fsync_off) {
            snprintf(err, errlen,
                     "ledger %s: the server runs with fsync = off: a committed batch could be "
                     "lost in a crash after its certificates were released; refused (set fsync "
                     "= on)",
                     s->where);
            return -1;
        }
        /* off acknowledges a COMMIT before its WAL is flushed; local, on,
         * remote_write and remote_apply all flush locally first, so a
         * stronger setting of the server's is kept. */
        if (async && exec_want(s, "SET synchronous_commit = on", PGRES_COMMAND_OK, NULL, err,
                               errlen, "cannot set synchronous_commit") != 0)
            return -1;
    }
    return 0;
}

/* The prepared statements, once the schema exists: at open and after
 * every reconnect. */
static int session_prepare(pg *s, char *err, size_t errlen)
{
    for (size_t i = 0; i < N_STMTS; i++) {
        if (stmts[i].writer && s->read_only)
            continue;
        char what[64];
        snprintf(what, sizeof(what), "cannot prepare %s", stmts[i].name);
        if (!PQsendPrepare(s->conn, stmts[i].name, stmts[i].sql, stmts[i].n, stmts[i].types))
            return pg_fail(s, err, errlen, what);
        if (collect(s, PGRES_COMMAND_OK, NULL, err, errlen, what) != 0)
            return -1;
    }
    return 0;
}

/* Server notices (e.g. "relation already exists, skipping") are not
 * errors; libpq's default prints them on stderr, into certforged's log. */
static void no_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* A new connection (an old one is closed), established by the call's
 * deadline: libpq's non-blocking connect loop (PQconnectStartParams, then
 * PQconnectPoll whenever poll() says the socket is ready). libpq still
 * resolves a host name synchronously (getaddrinfo); a socket path or
 * hostaddr avoids even that. */
static int pg_connect(pg *s, char *err, size_t errlen, const char *what)
{
    /* expand_dbname: `conninfo` may be key=value pairs or a URI. */
    const char *const kw[] = {"dbname", "fallback_application_name", NULL};
    const char *const val[] = {s->conninfo, "certforge", NULL};
    PQfinish(s->conn);
    s->broken = false;
    pgw_rc w = pgw_connect(kw, val, s->deadline_ms, &s->conn);
    if (!s->conn)
        return pg_fail(s, err, errlen, what);
    if (w != PGW_OK)
        return bounded(s, w, err, errlen, what);
    if (PQstatus(s->conn) != CONNECTION_OK || !PQisnonblocking(s->conn))
        return pg_fail(s, err, errlen, what);
    PQsetNoticeProcessor(s->conn, no_notices, NULL);
    return 0;
}

/* Before every call: a connection lost by an earlier call is reset (one
 * attempt, within the call's deadline; if the server is still away this
 * call fails too, and the next one tries again). */
static int pg_ready(pg *s, char *err, size_t errlen)
{
    bool ok = !s->broken && PQstatus(s->conn) == CONNECTION_OK &&
              PQtransactionStatus(s->conn) == PQTRANS_IDLE;
    if (ok && PQpipelineStatus(s->conn) == PQ_PIPELINE_OFF)
        return 0;
    if (ok && PQexitPipelineMode(s->conn) == 1)
        return 0;
    if (pg_connect(s, err, errlen, "cannot reconnect") != 0)
        return -1;
    return session_settings(s, err, errlen) || session_prepare(s, err, errlen) ? -1 : 0;
}

static int pg_open(const ledger_opts *o, void **state, char *err, size_t errlen)
{
    if (conninfo_ok(o->conninfo, err, errlen) != 0)
        return -1;
    pg *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "ledger postgresql: out of memory");
        return -1;
    }
    describe(s, o->conninfo);
    s->read_only = o->read_only;
    s->lock_timeout_ms = o->busy_timeout_ms ? o->busy_timeout_ms : 1000;
    s->timeout_ms = o->pg_timeout_ms ? o->pg_timeout_ms : 5000;
    if (!(s->conninfo = strdup(o->conninfo))) {
        snprintf(err, errlen, "ledger postgresql: out of memory");
        goto fail;
    }
    deadline_start(s);
    if (pg_connect(s, err, errlen, "cannot connect") != 0)
        goto fail;
    /* The server's own view of where we are, once connected. */
    snprintf(s->where, sizeof(s->where), "postgresql host=%.120s port=%.8s dbname=%.63s user=%.63s",
             PQhost(s->conn), PQport(s->conn), PQdb(s->conn), PQuser(s->conn));
    if (session_settings(s, err, errlen) != 0)
        goto fail;
    if (s->read_only) {
        if (read_version(s, &s->version, err, errlen) != 0)
            goto fail;
        if (s->version == 0) {
            snprintf(err, errlen, "ledger %s: not a certforge ledger (no schema_version table)",
                     s->where);
            goto fail;
        }
        if (s->version > LEDGER_SCHEMA_VERSION) {
            snprintf(err, errlen,
                     "ledger %s: schema version %d is newer than this certforge's (%d)", s->where,
                     s->version, LEDGER_SCHEMA_VERSION);
            goto fail;
        }
    } else if (prepare_schema(s, err, errlen) != 0) {
        goto fail;
    }
    if (session_prepare(s, err, errlen) != 0)
        goto fail;
    s->opened = true;
    *state = s;
    return 0;
fail:
    pg_close(s);
    return -1;
}

static int pg_writable(pg *s, char *err, size_t errlen)
{
    if (!s->read_only)
        return 0;
    snprintf(err, errlen, "ledger %s: opened read-only", s->where);
    return -1;
}

/* --- binary values --- */

typedef struct be64 {
    char b[8];
} be64;

static be64 to_be64(int64_t v)
{
    be64 o;
    uint64_t u = (uint64_t)v;
    for (int i = 7; i >= 0; i--, u >>= 8)
        o.b[i] = (char)(u & 0xFF);
    return o;
}

/* A bigint (or integer) column of a binary result; `null` when NULL. */
static int64_t get_int(const PGresult *r, int row, int col, int64_t null)
{
    if (PQgetisnull(r, row, col))
        return null;
    const unsigned char *p = (const unsigned char *)PQgetvalue(r, row, col);
    int len = PQgetlength(r, row, col);
    uint64_t u = 0;
    for (int i = 0; i < len && i < 8; i++)
        u = (u << 8) | p[i];
    if (len == 4)
        return (int32_t)(uint32_t)u;
    return (int64_t)u;
}

static const char *get_text(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* Parameters of one statement: values, lengths, formats. Text values are
 * passed in text format (NUL-terminated), bigint and bytea in binary. */
typedef struct params {
    const char *v[12];
    int len[12], fmt[12];
    be64 i64[12];
    int n;
} params;

static void p_text(params *p, const char *v)
{
    p->v[p->n] = v;
    p->len[p->n] = 0;
    p->fmt[p->n++] = 0;
}

static void p_int(params *p, int64_t v)
{
    p->i64[p->n] = to_be64(v);
    p->v[p->n] = p->i64[p->n].b;
    p->len[p->n] = 8;
    p->fmt[p->n++] = 1;
}

static void p_int_or_null(params *p, int64_t v)
{
    if (v < 0)
        p_text(p, NULL);
    else
        p_int(p, v);
}

static void p_blob(params *p, const uint8_t *v, size_t len)
{
    p->v[p->n] = (const char *)v;
    p->len[p->n] = (int)len;
    p->fmt[p->n++] = 1;
}

/* A prepared statement that must succeed with `want` (binary results),
 * bounded like exec_want. */
static int prepared_want(pg *s, const char *name, const params *p, ExecStatusType want,
                         PGresult **out, char *err, size_t errlen, const char *what)
{
    if (!PQsendQueryPrepared(s->conn, name, p->n, p->v, p->len, p->fmt, 1))
        return pg_fail(s, err, errlen, what);
    return collect(s, want, out, err, errlen, what);
}

static int send_prepared(pg *s, const char *name, const params *p)
{
    return PQsendQueryPrepared(s->conn, name, p->n, p->v, p->len, p->fmt, 1);
}

static void params_cert(params *p, const ledger_rec *r)
{
    p->n = 0;
    p_text(p, r->serial);
    p_text(p, r->profile);
    p_text(p, r->issuer_key);
    p_text(p, r->subject ? r->subject : "");
    p_text(p, r->sans ? r->sans : "");
    p_text(p, r->nf_instance_id);
    p_int(p, r->not_before);
    p_int(p, r->not_after);
    p_blob(p, r->cert, r->cert_len);
    p_int_or_null(p, r->requester_uid);
    p_text(p, r->requester);
    p_int(p, r->issued_at_ms);
}

static void params_sign(params *p, const ledger_sign_rec *r)
{
    p->n = 0;
    p_text(p, r->key);
    p_text(p, r->mechanism);
    p_blob(p, r->digest, r->digest_len);
    p_int_or_null(p, r->requester_uid);
    p_text(p, r->requester);
    p_int(p, r->signed_at_ms);
}

/* --- record --- */

/* Read the results of `sent` pipelined statements and the sync point that
 * follows them. Statement k is query[first + k] of the batch (BEGIN is -1,
 * COMMIT is n + m). Returns 0, or -1 with err naming the first failure
 * (or the timeout: then the connection is gone). */
static int read_chunk(pg *s, long first, size_t sent, const ledger_rec *recs, size_t n,
                      size_t total, char *err, size_t errlen)
{
    int rc = 0;
    const char *waiting = first + (long)sent > (long)total ? "COMMIT" : "the batch's INSERTs";
    for (size_t k = 0; k < sent; k++) {
        PGresult *r = NULL;
        if (next_result(s, &r, err, errlen, waiting) != 0)
            return -1;
        if (!r) {
            if (rc == 0)
                pg_fail(s, err, errlen, "pipeline ended early");
            return -1;
        }
        ExecStatusType st = PQresultStatus(r);
        if (rc == 0 && st != PGRES_COMMAND_OK) {
            long q = first + (long)k;
            char what[96];
            if (q < 0)
                snprintf(what, sizeof(what), "BEGIN");
            else if ((size_t)q < n)
                snprintf(what, sizeof(what), "INSERT of serial %.40s",
                         recs[q].serial ? recs[q].serial : "?");
            else if ((size_t)q < total)
                snprintf(what, sizeof(what), "INSERT of SIGN record %zu", (size_t)q - n);
            else
                snprintf(what, sizeof(what), "COMMIT");
            pg_fail_res(s, err, errlen, what, r);
            rc = -1;
        }
        PQclear(r);
        /* each statement's results end with NULL */
        for (;;) {
            if (next_result(s, &r, err, errlen, waiting) != 0)
                return -1;
            if (!r)
                break;
            PQclear(r);
        }
    }
    PGresult *r = NULL;
    if (next_result(s, &r, err, errlen, waiting) != 0)
        return -1;
    if (PQresultStatus(r) != PGRES_PIPELINE_SYNC && rc == 0) {
        pg_fail_res(s, err, errlen, "pipeline sync", r);
        rc = -1;
    }
    PQclear(r);
    return rc;
}

static int pg_record(void *state, const ledger_rec *recs, size_t n, const ledger_sign_rec *signs,
                     size_t m, char *err, size_t errlen)
{
    pg *s = state;
    deadline_start(s);
    if (pg_writable(s, err, errlen) != 0 || pg_ready(s, err, errlen) != 0)
        return -1;
    if (PQenterPipelineMode(s->conn) != 1)
        return pg_fail(s, err, errlen, "cannot enter pipeline mode");
    params p;
    int rc = 0;
    size_t total = n + m, q = 0; /* statements of the batch, sent so far */
    long first = -1;             /* batch index of the chunk's first statement (BEGIN: -1) */
    size_t sent = 0;
    if (!PQsendQueryParams(s->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0)) {
        rc = pg_fail(s, err, errlen, "BEGIN");
        goto out;
    }
    sent = 1;
    /* COMMIT goes out alone, once every INSERT was acknowledged: a server
     * that stalls (timed_out() gives up on it) and runs again later then
     * finds no COMMIT queued behind the INSERTs, and rolls them back. A
     * LEDGER_FAILURE means "not recorded" unless the server stalled in the
     * COMMIT itself. One more round trip per batch (docs/ledger.md). */
    for (;;) {
        while (q <= total && sent < PG_CHUNK) {
            if (q == total && sent > 0)
                break; /* COMMIT: in a chunk of its own */
            int ok;
            if (q < n) {
                params_cert(&p, &recs[q]);
                ok = send_prepared(s, "cf_ins", &p);
            } else if (q < total) {
                params_sign(&p, &signs[q - n]);
                ok = send_prepared(s, "cf_ins_sign", &p);
            } else {
                ok = PQsendQueryParams(s->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
            }
            if (!ok) {
                rc = pg_fail(s, err, errlen, "cannot send the batch");
                goto out;
            }
            q++;
            sent++;
        }
        if (PQpipelineSync(s->conn) != 1) {
            rc = pg_fail(s, err, errlen, "cannot send the batch");
            goto out;
        }
        if (read_chunk(s, first, sent, recs, n, total, err, errlen) != 0) {
            rc = -1;
            goto out;
        }
        if (q > total)
            break; /* COMMIT was in this chunk and succeeded */
        first += (long)sent;
        sent = 0;
    }
out:
    if (PQstatus(s->conn) == CONNECTION_OK) {
        (void)PQexitPipelineMode(s->conn);
        /* a failed statement left the transaction aborted */
        rollback(s);
    }
    return rc;
}

/* --- reads --- */

static int pg_list(void *state, const ledger_filter *f, ledger_row_fn cb, void *arg, char *err,
                   size_t errlen)
{
    pg *s = state;
    deadline_start(s);
    if (pg_ready(s, err, errlen) != 0)
        return -1;
    char sql[1024];
    params p = {.n = 0};
    int n = snprintf(sql, sizeof(sql), "SELECT %s FROM certificates WHERE true", columns);
    if (f->serial) {
        p_text(&p, f->serial);
        n += snprintf(sql + n, sizeof(sql) - (size_t)n, " AND serial = $%d", p.n);
    }
    if (f->profile) {
        p_text(&p, f->profile);
        n += snprintf(sql + n, sizeof(sql) - (size_t)n, " AND profile = $%d", p.n);
    }
    if (f->nf_instance_id) {
        p_text(&p, f->nf_instance_id);
        n += snprintf(sql + n, sizeof(sql) - (size_t)n, " AND nf_instance_id = lower($%d)", p.n);
    }
    if (f->expiring_before) {
        p_int(&p, f->expiring_before);
        n += snprintf(sql + n, sizeof(sql) - (size_t)n, " AND not_after < $%d::bigint", p.n);
    }
    if (f->revoked_only)
        n += snprintf(sql + n, sizeof(sql) - (size_t)n, " AND status = 'revoked'");
    n += snprintf(sql + n, sizeof(sql) - (size_t)n, " ORDER BY issued_at_ms, serial");
    if (f->limit)
        snprintf(sql + n, sizeof(sql) - (size_t)n, " LIMIT %zu", f->limit);
    Oid types[4];
    for (int i = 0; i < p.n; i++)
        types[i] = p.fmt[i] ? OID_INT8 : OID_TEXT;
    /* Row by row: an export of the whole ledger never sits in memory. */
    if (!PQsendQueryParams(s->conn, sql, p.n, types, p.v, p.len, p.fmt, 1) ||
        !PQsetSingleRowMode(s->conn))
        return pg_fail(s, err, errlen, "cannot query");
    int out = 0;
    PGresult *r;
    for (;;) {
        if (next_result(s, &r, err, errlen, "query") != 0)
            return out ? out : -1;
        if (!r)
            break;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE && out == 0) {
            ledger_rec rec = {
                .serial = get_text(r, 0, 0),
                .profile = get_text(r, 0, 1),
                .issuer_key = get_text(r, 0, 2),
                .subject = get_text(r, 0, 3),
                .sans = get_text(r, 0, 4),
                .nf_instance_id = get_text(r, 0, 5),
                .not_before = get_int(r, 0, 6, 0),
                .not_after = get_int(r, 0, 7, 0),
                .cert = (const uint8_t *)PQgetvalue(r, 0, 8),
                .cert_len = (size_t)PQgetlength(r, 0, 8),
                .requester_uid = get_int(r, 0, 9, -1),
                .requester = get_text(r, 0, 10),
                .issued_at_ms = get_int(r, 0, 11, 0),
                .status = get_text(r, 0, 12),
                .revoked_at = get_int(r, 0, 13, -1),
                .revocation_reason = get_text(r, 0, 14),
            };
            out = cb(&rec, arg); /* non-zero: stop; the rest is drained */
        } else if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK && out == 0) {
            out = pg_fail_res(s, err, errlen, "query failed", r);
        }
        PQclear(r);
        deadline_start(s); /* streamed: each row within the bound, however long the
                            * caller took with the last one */
    }
    return out;
}

static int pg_schema_version(void *state)
{
    return ((pg *)state)->version;
}

static int pg_revoke(void *state, const char *serial_hex, int reason, int64_t at, int64_t *at_out,
                     int *reason_out, char *err, size_t errlen)
{
    pg *s = state;
    deadline_start(s);
    if (pg_writable(s, err, errlen) != 0 || pg_ready(s, err, errlen) != 0)
        return -1;
    if (exec_want(s, "BEGIN", PGRES_COMMAND_OK, NULL, err, errlen, "BEGIN") != 0)
        return -1;
    int out = -1;
    params p = {.n = 0};
    p_text(&p, serial_hex);
    PGresult *r = NULL;
    if (prepared_want(s, "cf_rev_sel", &p, PGRES_TUPLES_OK, &r, err, errlen,
                      "revocation query failed") != 0)
        goto done;
    if (PQntuples(r) == 0) {
        out = 2;
        goto done;
    }
    if (strcmp(PQgetvalue(r, 0, 0), "revoked") == 0) {
        *at_out = get_int(r, 0, 1, 0);
        const char *rn = get_text(r, 0, 2);
        int code = rn ? cf_reason_code(rn) : 0;
        *reason_out = code < 0 ? 0 : code;
        out = 1;
        goto done;
    }
    PQclear(r);
    r = NULL;
    p_int(&p, at);
    p_text(&p, cf_reason_name(reason));
    if (prepared_want(s, "cf_rev_upd", &p, PGRES_COMMAND_OK, NULL, err, errlen,
                      "UPDATE (revocation)") != 0 ||
        exec_want(s, "COMMIT", PGRES_COMMAND_OK, NULL, err, errlen, "COMMIT") != 0)
        goto done;
    *at_out = at;
    *reason_out = reason;
    out = 0;
done:
    PQclear(r);
    rollback(s);
    return out;
}

static int pg_list_revoked(void *state, const char *issuer_key, int64_t not_after_min,
                           ledger_revoked_fn cb, void *arg, char *err, size_t errlen)
{
    pg *s = state;
    deadline_start(s);
    if (pg_ready(s, err, errlen) != 0)
        return -1;
    params p = {.n = 0};
    p_text(&p, issuer_key);
    p_int(&p, not_after_min);
    PGresult *r = NULL;
    if (prepared_want(s, "cf_revoked", &p, PGRES_TUPLES_OK, &r, err, errlen,
                      "revocation query failed") != 0)
        return -1;
    int out = 0;
    for (int i = 0, nt = PQntuples(r); i < nt && out == 0; i++) {
        const char *rn = get_text(r, i, 2);
        int code = rn ? cf_reason_code(rn) : 0;
        out = cb(PQgetvalue(r, i, 0), get_int(r, i, 1, 0), code < 0 ? 0 : code, arg);
    }
    PQclear(r);
    return out;
}

static int pg_crl_next_number(void *state, const char *issuer_key, uint64_t *number, char *err,
                              size_t errlen)
{
    pg *s = state;
    deadline_start(s);
    if (pg_writable(s, err, errlen) != 0 || pg_ready(s, err, errlen) != 0)
        return -1;
    params p = {.n = 0};
    p_text(&p, issuer_key);
    PGresult *r = NULL;
    if (prepared_want(s, "cf_crl_next", &p, PGRES_TUPLES_OK, &r, err, errlen,
                      "cRLNumber update") != 0)
        return -1;
    int rc = 0;
    if (PQntuples(r) != 1)
        rc = pg_fail_res(s, err, errlen, "cRLNumber update", r);
    else
        *number = (uint64_t)get_int(r, 0, 0, 0);
    PQclear(r);
    return rc;
}

static int pg_crl_store(void *state, const char *issuer_key, uint64_t number, int64_t this_update,
                        int64_t next_update, const uint8_t *der, size_t len, char *err,
                        size_t errlen)
{
    pg *s = state;
    deadline_start(s);
    if (pg_writable(s, err, errlen) != 0 || pg_ready(s, err, errlen) != 0)
        return -1;
    params p = {.n = 0};
    p_text(&p, issuer_key);
    p_int(&p, (int64_t)number);
    p_int(&p, this_update);
    p_int(&p, next_update);
    p_blob(&p, der, len);
    return prepared_want(s, "cf_crl_store", &p, PGRES_COMMAND_OK, NULL, err, errlen,
                         "CRL insert");
}

static int pg_crl_latest(void *state, const char *issuer_key, ledger_crl_fn cb, void *arg,
                         char *err, size_t errlen)
{
    pg *s = state;
    deadline_start(s);
    if (pg_ready(s, err, errlen) != 0)
        return -1;
    params p = {.n = 0};
    p_text(&p, issuer_key);
    PGresult *r = NULL;
    if (prepared_want(s, "cf_crl_latest", &p, PGRES_TUPLES_OK, &r, err, errlen,
                      "CRL query failed") != 0)
        return -1;
    int out;
    if (PQntuples(r) == 0) {
        out = 0;
    } else {
        cb((uint64_t)get_int(r, 0, 0, 0), get_int(r, 0, 1, 0), get_int(r, 0, 2, 0),
           (const uint8_t *)PQgetvalue(r, 0, 3), (size_t)PQgetlength(r, 0, 3), arg);
        out = 1;
    }
    PQclear(r);
    return out;
}

static int pg_list_signs(void *state, const char *key, size_t limit, ledger_sign_row_fn cb,
                         void *arg, char *err, size_t errlen)
{
    pg *s = state;
    deadline_start(s);
    if (pg_ready(s, err, errlen) != 0)
        return -1;
    char sql[256];
    params p = {.n = 0};
    if (key)
        p_text(&p, key);
    int n = snprintf(sql, sizeof(sql),
                     "SELECT key, mechanism, digest, requester_uid, requester, signed_at_ms FROM "
                     "sign_records %s ORDER BY id",
                     key ? "WHERE key = $1" : "");
    if (limit)
        snprintf(sql + n, sizeof(sql) - (size_t)n, " LIMIT %zu", limit);
    const Oid types[1] = {OID_TEXT};
    if (!PQsendQueryParams(s->conn, sql, p.n, types, p.v, p.len, p.fmt, 1) ||
        !PQsetSingleRowMode(s->conn))
        return pg_fail(s, err, errlen, "cannot query SIGN records");
    int out = 0;
    PGresult *r;
    for (;;) {
        if (next_result(s, &r, err, errlen, "SIGN record query") != 0)
            return out ? out : -1;
        if (!r)
            break;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE && out == 0) {
            ledger_sign_rec rec = {
                .key = get_text(r, 0, 0),
                .mechanism = get_text(r, 0, 1),
                .digest = (const uint8_t *)PQgetvalue(r, 0, 2),
                .digest_len = (size_t)PQgetlength(r, 0, 2),
                .requester_uid = get_int(r, 0, 3, -1),
                .requester = get_text(r, 0, 4),
                .signed_at_ms = get_int(r, 0, 5, 0),
            };
            out = cb(&rec, arg);
        } else if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK && out == 0) {
            out = pg_fail_res(s, err, errlen, "SIGN record query failed", r);
        }
        PQclear(r);
        deadline_start(s); /* streamed: each row within the bound, however long the
                            * caller took with the last one */
    }
    return out;
}

const ledger_ops ledger_pg_ops = {
    .open = pg_open,
    .close = pg_close,
    .record = pg_record,
    .list = pg_list,
    .schema_version = pg_schema_version,
    .revoke = pg_revoke,
    .list_revoked = pg_list_revoked,
    .crl_next_number = pg_crl_next_number,
    .crl_store = pg_crl_store,
    .crl_latest = pg_crl_latest,
    .list_signs = pg_list_signs,
};
