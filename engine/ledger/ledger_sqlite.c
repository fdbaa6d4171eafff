/* ledger_sqlite.c — the SQLite ledger backend (docs/ledger.md).
 *
 * Durability: WAL journal with synchronous=FULL, so a transaction is on
 * stable storage (the WAL fsync'd) when COMMIT returns: a committed batch
 * survives kill -9 and power loss. (synchronous=NORMAL in WAL mode would
 * survive kill -9 but may lose the last transactions on power loss, which
 * a CA that already released those certificates cannot accept.)
 *
 * One connection, used by one thread at a time (ledger.c serializes), so
 * it is opened SQLITE_OPEN_NOMUTEX. The INSERT and the transaction
 * statements are prepared once at open.
 */
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/reason.h"
#include "engine/ledger/ledger_backend.h"

/* Version 1. Times: Unix seconds (issued_at_ms: milliseconds), UTC. */
static const char schema_v1[] =
    "CREATE TABLE schema_version (version INTEGER NOT NULL);\n"
    "CREATE TABLE certificates (\n"
    "  serial            TEXT NOT NULL UNIQUE,  -- lower-case hex\n"
    "  profile           TEXT NOT NULL,\n"
    "  issuer_key        TEXT NOT NULL,\n"
    "  subject           TEXT NOT NULL,\n"
    "  sans              TEXT NOT NULL,\n"
    "  nf_instance_id    TEXT,\n"
    "  not_before        INTEGER NOT NULL,\n"
    "  not_after         INTEGER NOT NULL,\n"
    "  cert              BLOB NOT NULL,\n"
    "  requester_uid     INTEGER,\n"
    "  requester         TEXT,\n"
    "  issued_at_ms      INTEGER NOT NULL,\n"
    "  status            TEXT NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'revoked')),\n"
    "  revoked_at        INTEGER,\n"
    "  revocation_reason TEXT\n"
    ");\n"
    "CREATE INDEX certificates_profile ON certificates (profile);\n"
    "CREATE INDEX certificates_nf_instance_id ON certificates (nf_instance_id);\n"
    "CREATE INDEX certificates_not_after ON certificates (not_after);\n"
    "INSERT INTO schema_version (version) VALUES (1);\n";

/* Version 2: raw SIGN records, cRLNumbers and CRLs. */
static const char schema_v2[] =
    "CREATE TABLE sign_records (\n"
    "  id            INTEGER PRIMARY KEY,\n"
    "  key           TEXT NOT NULL,\n"
    "  mechanism     TEXT NOT NULL,\n"
    "  digest        BLOB NOT NULL,\n"
    "  requester_uid INTEGER,\n"
    "  requester     TEXT,\n"
    "  signed_at_ms  INTEGER NOT NULL\n"
    ");\n"
    "CREATE INDEX sign_records_key ON sign_records (key, id);\n"
    "CREATE TABLE crl_numbers (\n"
    "  issuer_key TEXT PRIMARY KEY,\n"
    "  last       INTEGER NOT NULL\n"
    ");\n"
    "CREATE TABLE crls (\n"
    "  issuer_key  TEXT NOT NULL,\n"
    "  number      INTEGER NOT NULL,\n"
    "  this_update INTEGER NOT NULL,\n"
    "  next_update INTEGER NOT NULL,\n"
    "  der         BLOB NOT NULL,\n"
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

/* migrations[v] takes a version-v database to v+1 (migrations[0] unused:
 * a new database is created at version 1 and migrated from there). A later
 * version appends here and bumps LEDGER_SCHEMA_VERSION. */
static const char *const migrations[LEDGER_SCHEMA_VERSION] = {NULL, schema_v2, schema_v3};

static const char insert_sql[] =
    "INSERT INTO certificates (serial, profile, issuer_key, subject, sans, nf_instance_id, "
    "not_before, not_after, cert, requester_uid, requester, issued_at_ms, status) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'valid')";

static const char columns[] =
    "serial, profile, issuer_key, subject, sans, nf_instance_id, not_before, not_after, cert, "
    "requester_uid, requester, issued_at_ms, status, revoked_at, revocation_reason";

static const char insert_sign_sql[] =
    "INSERT INTO sign_records (key, mechanism, digest, requester_uid, requester, signed_at_ms) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

typedef struct sq {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *ins, *ins_sign, *begin, *commit, *rollback;
    int version;
} sq;

static int sq_fail(sq *s, char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "ledger %s: %s: %s (sqlite code %d)", s->path, what,
             s->db ? sqlite3_errmsg(s->db) : "out of memory",
             s->db ? sqlite3_extended_errcode(s->db) : SQLITE_NOMEM);
    return -1;
}

static void sq_close(void *state)
{
    sq *s = state;
    if (!s)
        return;
    sqlite3_finalize(s->ins);
    sqlite3_finalize(s->ins_sign);
    sqlite3_finalize(s->begin);
    sqlite3_finalize(s->commit);
    sqlite3_finalize(s->rollback);
    sqlite3_close(s->db);
    free(s->path);
    free(s);
}

/* The single value of a one-row query (e.g. a PRAGMA), as text. */
static int one_text(sq *s, const char *sql, char *out, size_t len)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(out, len, "%s", t ? (const char *)t : "");
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        out[0] = 0;
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Read the schema version (0: no schema_version table). */
static int read_version(sq *s, int *v)
{
    char t[32];
    int rc = one_text(s,
                      "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                      "name = 'schema_version'",
                      t, sizeof(t));
    if (rc != SQLITE_OK)
        return rc;
    if (atoi(t) == 0) {
        *v = 0;
        return SQLITE_OK;
    }
    rc = one_text(s, "SELECT max(version) FROM schema_version", t, sizeof(t));
    *v = atoi(t);
    return rc;
}

/* Create or migrate the schema, in one transaction (so two processes
 * opening a new file at once cannot both create it). */
static int prepare_schema(sq *s, char *err, size_t errlen)
{
    int v = 0;
    char *msg = NULL;
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return sq_fail(s, err, errlen, "cannot lock the database to check its schema");
    if (read_version(s, &v) != SQLITE_OK) {
        sq_fail(s, err, errlen, "cannot read the schema version");
        goto rollback;
    }
    if (v > LEDGER_SCHEMA_VERSION) {
        snprintf(err, errlen,
                 "ledger %s: schema version %d is newer than this certforge's (%d): use the "
                 "certforged that wrote it",
                 s->path, v, LEDGER_SCHEMA_VERSION);
        goto rollback;
    }
    if (v == 0 && sqlite3_exec(s->db, schema_v1, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "ledger %s: cannot create the schema: %s", s->path,
                 msg ? msg : "?");
        goto rollback;
    }
    if (v == 0)
        v = 1;
    for (; v < LEDGER_SCHEMA_VERSION; v++) {
        char sql[64];
        snprintf(sql, sizeof(sql), "UPDATE schema_version SET version = %d", v + 1);
        if (!migrations[v] || sqlite3_exec(s->db, migrations[v], NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
            snprintf(err, errlen, "ledger %s: cannot migrate schema version %d to %d: %s",
                     s->path, v, v + 1, msg ? msg : "no migration");
            goto rollback;
        }
    }
    if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        sq_fail(s, err, errlen, "cannot commit the schema");
        goto rollback;
    }
    s->version = v;
    return 0;
rollback:
    sqlite3_free(msg);
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

static int sq_open(const ledger_opts *o, void **state, char *err, size_t errlen)
{
    char t[32];
    sq *s = calloc(1, sizeof(*s));
    if (!s || !(s->path = strdup(o->path))) {
        free(s);
        snprintf(err, errlen, "ledger %s: out of memory", o->path);
        return -1;
    }
    int flags = SQLITE_OPEN_NOMUTEX |
                (o->read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    int rc = sqlite3_open_v2(o->path, &s->db, flags, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "ledger %s: cannot open: %s%s", o->path,
                 s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc),
                 o->read_only ? "" : " (does its folder exist and is it writable?)");
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, o->busy_timeout_ms ? (int)o->busy_timeout_ms : 1000);
    if (o->read_only) {
        if (read_version(s, &s->version) != SQLITE_OK) {
            sq_fail(s, err, errlen, "cannot read");
            goto fail;
        }
        if (s->version == 0) {
            snprintf(err, errlen, "ledger %s: not a certforge ledger (no schema_version table)",
                     o->path);
            goto fail;
        }
        *state = s;
        return 0;
    }
    /* SQLite silently opens a file it may not write read-only. */
    if (sqlite3_db_readonly(s->db, "main") == 1) {
        snprintf(err, errlen, "ledger %s: the database is read-only (file permissions)",
                 o->path);
        goto fail;
    }
    if (one_text(s, "PRAGMA journal_mode = WAL", t, sizeof(t)) != SQLITE_OK) {
        sq_fail(s, err, errlen, "cannot switch to WAL");
        goto fail;
    }
    if (strcmp(t, "wal") != 0) {
        snprintf(err, errlen, "ledger %s: journal mode is '%s', not 'wal'", o->path, t);
        goto fail;
    }
    if (sqlite3_exec(s->db, "PRAGMA synchronous = FULL", NULL, NULL, NULL) != SQLITE_OK) {
        sq_fail(s, err, errlen, "cannot set synchronous=FULL");
        goto fail;
    }
    if (prepare_schema(s, err, errlen) != 0)
        goto fail;
    if (sqlite3_prepare_v3(s->db, insert_sql, -1, SQLITE_PREPARE_PERSISTENT, &s->ins, NULL) ||
        sqlite3_prepare_v3(s->db, insert_sign_sql, -1, SQLITE_PREPARE_PERSISTENT, &s->ins_sign,
                           NULL) ||
        sqlite3_prepare_v3(s->db, "BEGIN IMMEDIATE", -1, SQLITE_PREPARE_PERSISTENT, &s->begin,
                           NULL) ||
        sqlite3_prepare_v3(s->db, "COMMIT", -1, SQLITE_PREPARE_PERSISTENT, &s->commit, NULL) ||
        sqlite3_prepare_v3(s->db, "ROLLBACK", -1, SQLITE_PREPARE_PERSISTENT, &s->rollback,
                           NULL)) {
        sq_fail(s, err, errlen, "cannot prepare statements");
        goto fail;
    }
    *state = s;
    return 0;
fail:
    sq_close(s);
    return -1;
}

static int step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static int sq_record(void *state, const ledger_rec *recs, size_t n, const ledger_sign_rec *signs,
                     size_t m, char *err, size_t errlen)
{
    sq *s = state;
    if (!s->ins) {
        snprintf(err, errlen, "ledger %s: opened read-only", s->path);
        return -1;
    }
    if (step_done(s->begin) != SQLITE_OK)
        return sq_fail(s, err, errlen, "BEGIN");
    for (size_t i = 0; i < n; i++) {
        const ledger_rec *r = &recs[i];
        sqlite3_stmt *st = s->ins;
        sqlite3_bind_text(st, 1, r->serial, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, r->profile, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, r->issuer_key, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, r->subject ? r->subject : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, r->sans ? r->sans : "", -1, SQLITE_STATIC);
        bind_text_or_null(st, 6, r->nf_instance_id);
        sqlite3_bind_int64(st, 7, r->not_before);
        sqlite3_bind_int64(st, 8, r->not_after);
        sqlite3_bind_blob(st, 9, r->cert, (int)r->cert_len, SQLITE_STATIC);
        if (r->requester_uid >= 0)
            sqlite3_bind_int64(st, 10, r->requester_uid);
        else
            sqlite3_bind_null(st, 10);
        bind_text_or_null(st, 11, r->requester);
        sqlite3_bind_int64(st, 12, r->issued_at_ms);
        int rc = step_done(st);
        sqlite3_clear_bindings(st);
        if (rc != SQLITE_OK) {
            char what[96];
            snprintf(what, sizeof(what), "INSERT of serial %.40s", r->serial ? r->serial : "?");
            sq_fail(s, err, errlen, what);
            goto rollback;
        }
    }
    for (size_t i = 0; i < m; i++) {
        const ledger_sign_rec *r = &signs[i];
        sqlite3_stmt *st = s->ins_sign;
        sqlite3_bind_text(st, 1, r->key, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, r->mechanism, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 3, r->digest, (int)r->digest_len, SQLITE_STATIC);
        if (r->requester_uid >= 0)
            sqlite3_bind_int64(st, 4, r->requester_uid);
        else
            sqlite3_bind_null(st, 4);
        bind_text_or_null(st, 5, r->requester);
        sqlite3_bind_int64(st, 6, r->signed_at_ms);
        int rc = step_done(st);
        sqlite3_clear_bindings(st);
        if (rc != SQLITE_OK) {
            sq_fail(s, err, errlen, "INSERT of a SIGN record");
            goto rollback;
        }
    }
    if (step_done(s->commit) != SQLITE_OK) {
        sq_fail(s, err, errlen, "COMMIT");
        goto rollback;
    }
    return 0;
rollback:
    /* An I/O error may have rolled the transaction back already. */
    if (!sqlite3_get_autocommit(s->db))
        (void)step_done(s->rollback);
    return -1;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

static int sq_list(void *state, const ledger_filter *f, ledger_row_fn cb, void *arg, char *err,
                   size_t errlen)
{
    sq *s = state;
    char sql[1024];
    int n = snprintf(sql, sizeof(sql), "SELECT %s FROM certificates WHERE 1", columns);
    if (f->serial)
        n += snprintf(sql + n, sizeof(sql) - (size_t)n, " AND serial = ?1");
    if (f->profile)
        n += snprintf(sql + n, sizeof(sql) - (size_t)n, " AND profile = ?2");
    if (f->nf_instance_id)
        n += snprintf(sql + n, sizeof(sql) - (size_t)n, " AND nf_instance_id = lower(?3)");
    if (f->expiring_before)
        n += snprintf(sql + n, sizeof(sql) - (size_t)n, " AND not_after < ?4");
    if (f->revoked_only)
        n += snprintf(sql + n, sizeof(sql) - (size_t)n, " AND status = 'revoked'");
    n += snprintf(sql + n, sizeof(sql) - (size_t)n, " ORDER BY issued_at_ms, serial");
    if (f->limit)
        snprintf(sql + n, sizeof(sql) - (size_t)n, " LIMIT %zu", f->limit);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return sq_fail(s, err, errlen, "cannot query");
    if (f->serial)
        sqlite3_bind_text(st, 1, f->serial, -1, SQLITE_STATIC);
    if (f->profile)
        sqlite3_bind_text(st, 2, f->profile, -1, SQLITE_STATIC);
    if (f->nf_instance_id)
        sqlite3_bind_text(st, 3, f->nf_instance_id, -1, SQLITE_STATIC);
    if (f->expiring_before)
        sqlite3_bind_int64(st, 4, f->expiring_before);
    int rc, out = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ledger_rec r = {
            .serial = col_text(st, 0),
            .profile = col_text(st, 1),
            .issuer_key = col_text(st, 2),
            .subject = col_text(st, 3),
            .sans = col_text(st, 4),
            .nf_instance_id = col_text(st, 5),
            .not_before = sqlite3_column_int64(st, 6),
            .not_after = sqlite3_column_int64(st, 7),
            .cert = sqlite3_column_blob(st, 8),
            .cert_len = (size_t)sqlite3_column_bytes(st, 8),
            .requester_uid =
                sqlite3_column_type(st, 9) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 9),
            .requester = col_text(st, 10),
            .issued_at_ms = sqlite3_column_int64(st, 11),
            .status = col_text(st, 12),
            .revoked_at =
                sqlite3_column_type(st, 13) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 13),
            .revocation_reason = col_text(st, 14),
        };
        if ((out = cb(&r, arg)) != 0)
            break;
    }
    if (out == 0 && rc != SQLITE_DONE) {
        sq_fail(s, err, errlen, "query failed");
        out = -1;
    }
    sqlite3_finalize(st);
    return out;
}

static int sq_schema_version(void *state)
{
    return ((sq *)state)->version;
}

static int sq_writable(sq *s, char *err, size_t errlen)
{
    if (s->ins)
        return 0;
    snprintf(err, errlen, "ledger %s: opened read-only", s->path);
    return -1;
}

static int sq_revoke(void *state, const char *serial_hex, int reason, int64_t at,
                     int64_t *at_out, int *reason_out, char *err, size_t errlen)
{
    sq *s = state;
    if (sq_writable(s, err, errlen) != 0)
        return -1;
    sqlite3_stmt *sel = NULL, *upd = NULL;
    int out = -1;
    if (step_done(s->begin) != SQLITE_OK)
        return sq_fail(s, err, errlen, "BEGIN");
    if (sqlite3_prepare_v2(s->db,
                           "SELECT status, revoked_at, revocation_reason FROM certificates "
                           "WHERE serial = ?1",
                           -1, &sel, NULL) != SQLITE_OK) {
        sq_fail(s, err, errlen, "cannot query");
        goto done;
    }
    sqlite3_bind_text(sel, 1, serial_hex, -1, SQLITE_STATIC);
    int rc = sqlite3_step(sel);
    if (rc == SQLITE_DONE) {
        out = 2;
        goto done;
    }
    if (rc != SQLITE_ROW) {
        sq_fail(s, err, errlen, "query failed");
        goto done;
    }
    if (strcmp(col_text(sel, 0), "revoked") == 0) {
        *at_out = sqlite3_column_int64(sel, 1);
        const char *rn = col_text(sel, 2);
        int code = rn ? cf_reason_code(rn) : 0;
        *reason_out = code < 0 ? 0 : code;
        out = 1;
        goto done;
    }
    if (sqlite3_prepare_v2(s->db,
                           "UPDATE certificates SET status = 'revoked', revoked_at = ?2, "
                           "revocation_reason = ?3 WHERE serial = ?1 AND status = 'valid'",
                           -1, &upd, NULL) != SQLITE_OK) {
        sq_fail(s, err, errlen, "cannot prepare the revocation");
        goto done;
    }
    sqlite3_bind_text(upd, 1, serial_hex, -1, SQLITE_STATIC);
    sqlite3_bind_int64(upd, 2, at);
    sqlite3_bind_text(upd, 3, cf_reason_name(reason), -1, SQLITE_STATIC);
    if (sqlite3_step(upd) != SQLITE_DONE) {
        sq_fail(s, err, errlen, "UPDATE (revocation)");
        goto done;
    }
    *at_out = at;
    *reason_out = reason;
    out = 0;
done:
    sqlite3_finalize(sel);
    sqlite3_finalize(upd);
    if (out == 0 && step_done(s->commit) != SQLITE_OK) {
        sq_fail(s, err, errlen, "COMMIT");
        out = -1;
    }
    if (!sqlite3_get_autocommit(s->db))
        (void)step_done(s->rollback);
    return out;
}

static int sq_list_revoked(void *state, const char *issuer_key, int64_t not_after_min,
                           ledger_revoked_fn cb, void *arg, char *err, size_t errlen)
{
    sq *s = state;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT serial, revoked_at, revocation_reason FROM certificates "
                           "WHERE issuer_key = ?1 AND status = 'revoked' AND not_after >= ?2 "
                           "ORDER BY length(serial), serial",
                           -1, &st, NULL) != SQLITE_OK)
        return sq_fail(s, err, errlen, "cannot query revocations");
    sqlite3_bind_text(st, 1, issuer_key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, not_after_min);
    int rc, out = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *rn = col_text(st, 2);
        int code = rn ? cf_reason_code(rn) : 0;
        if ((out = cb(col_text(st, 0), sqlite3_column_int64(st, 1), code < 0 ? 0 : code, arg)) !=
            0)
            break;
    }
    if (out == 0 && rc != SQLITE_DONE) {
        sq_fail(s, err, errlen, "revocation query failed");
        out = -1;
    }
    sqlite3_finalize(st);
    return out;
}

static int sq_crl_next_number(void *state, const char *issuer_key, uint64_t *number, char *err,
                              size_t errlen)
{
    sq *s = state;
    if (sq_writable(s, err, errlen) != 0)
        return -1;
    sqlite3_stmt *st = NULL;
    int out = -1;
    if (step_done(s->begin) != SQLITE_OK)
        return sq_fail(s, err, errlen, "BEGIN");
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO crl_numbers (issuer_key, last) VALUES (?1, 1) "
                           "ON CONFLICT (issuer_key) DO UPDATE SET last = last + 1 "
                           "RETURNING last",
                           -1, &st, NULL) != SQLITE_OK) {
        sq_fail(s, err, errlen, "cannot prepare the cRLNumber update");
        goto done;
    }
    sqlite3_bind_text(st, 1, issuer_key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sq_fail(s, err, errlen, "cRLNumber update");
        goto done;
    }
    *number = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    if (step_done(s->commit) != SQLITE_OK) {
        sq_fail(s, err, errlen, "COMMIT");
        goto done;
    }
    out = 0;
done:
    sqlite3_finalize(st);
    if (!sqlite3_get_autocommit(s->db))
        (void)step_done(s->rollback);
    return out;
}

static int sq_crl_store(void *state, const char *issuer_key, uint64_t number, int64_t this_update,
                        int64_t next_update, const uint8_t *der, size_t len, char *err,
                        size_t errlen)
{
    sq *s = state;
    if (sq_writable(s, err, errlen) != 0)
        return -1;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO crls (issuer_key, number, this_update, next_update, der) "
                           "VALUES (?1, ?2, ?3, ?4, ?5)",
                           -1, &st, NULL) != SQLITE_OK)
        return sq_fail(s, err, errlen, "cannot prepare the CRL insert");
    sqlite3_bind_text(st, 1, issuer_key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)number);
    sqlite3_bind_int64(st, 3, this_update);
    sqlite3_bind_int64(st, 4, next_update);
    sqlite3_bind_blob(st, 5, der, (int)len, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sq_fail(s, err, errlen, "CRL insert");
}

static int sq_crl_latest(void *state, const char *issuer_key, ledger_crl_fn cb, void *arg,
                         char *err, size_t errlen)
{
    sq *s = state;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT number, this_update, next_update, der FROM crls "
                           "WHERE issuer_key = ?1 ORDER BY number DESC LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return sq_fail(s, err, errlen, "cannot query CRLs");
    sqlite3_bind_text(st, 1, issuer_key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st), out;
    if (rc == SQLITE_ROW) {
        cb((uint64_t)sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
           sqlite3_column_int64(st, 2), sqlite3_column_blob(st, 3),
           (size_t)sqlite3_column_bytes(st, 3), arg);
        out = 1;
    } else if (rc == SQLITE_DONE) {
        out = 0;
    } else {
        out = sq_fail(s, err, errlen, "CRL query failed");
    }
    sqlite3_finalize(st);
    return out;
}

static int sq_list_signs(void *state, const char *key, size_t limit, ledger_sign_row_fn cb,
                         void *arg, char *err, size_t errlen)
{
    sq *s = state;
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT key, mechanism, digest, requester_uid, requester, signed_at_ms FROM "
             "sign_records %s ORDER BY id LIMIT %lld",
             key ? "WHERE key = ?1" : "", limit ? (long long)limit : -1LL);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return sq_fail(s, err, errlen, "cannot query SIGN records");
    if (key)
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int rc, out = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ledger_sign_rec r = {
            .key = col_text(st, 0),
            .mechanism = col_text(st, 1),
            .digest = sqlite3_column_blob(st, 2),
            .digest_len = (size_t)sqlite3_column_bytes(st, 2),
            .requester_uid =
                sqlite3_column_type(st, 3) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 3),
            .requester = col_text(st, 4),
            .signed_at_ms = sqlite3_column_int64(st, 5),
        };
        if ((out = cb(&r, arg)) != 0)
            break;
    }
    if (out == 0 && rc != SQLITE_DONE) {
        sq_fail(s, err, errlen, "SIGN record query failed");
        out = -1;
    }
    sqlite3_finalize(st);
    return out;
}

const ledger_ops ledger_sqlite_ops = {
    .open = sq_open,
    .close = sq_close,
    .record = sq_record,
    .list = sq_list,
    .schema_version = sq_schema_version,
    .revoke = sq_revoke,
    .list_revoked = sq_list_revoked,
    .crl_next_number = sq_crl_next_number,
    .crl_store = sq_crl_store,
    .crl_latest = sq_crl_latest,
    .list_signs = sq_list_signs,
};
