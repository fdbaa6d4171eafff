/* store.h — certforge-acme's durable state: accounts, orders,
 * authorizations, challenges, certificates, EAB keys (schema in store.c,
 * docs/acme.md). SQLite (WAL, synchronous=FULL) by default.
 *
 * Writes: every state change is a closure run on the one writer thread
 * inside a transaction; closures queued while the previous commit was
 * syncing are committed together (group commit), each in its own SAVEPOINT
 * so one refused change does not undo the others. A change is answered only
 * after its COMMIT returned: nothing a client was told is lost on a crash.
 *
 * Reads: each thread that reads opens its own reader connection
 * (acme_db_open_reader) and sees every committed change.
 *
 * Backends (store_sqlite.c, store_pg.c) implement acme_db; the SQL is
 * written once, portable between them (placeholders become $n for
 * PostgreSQL; ON CONFLICT DO NOTHING; no backend-specific functions).
 *
 * SQL is written with `?` placeholders; values are bound from a format
 * string: 's' text (const char *, NULL binds NULL), 'i' int64_t, 'b' blob
 * (const void *, size_t).
 */
#ifndef CF_ACME_STORE_H
#define CF_ACME_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "acme/acme.h"
#include "acme/config.h"

typedef struct acme_db acme_db;       /* one connection (reader, or the writer's) */
typedef struct acme_store acme_store; /* the writer thread and its queue */

/* Open (creating the schema if needed) and start the writer thread. */
CF_WUR int acme_store_open(const acme_cfg *cfg, acme_store **out, char *err, size_t errlen);

/* The same store for another program's schema (certforge-agent): the
 * backend, where the database is, the schema text for each backend (run
 * by the writer at open; NULL: certforge-acme's) and the name of the
 * writer thread and of its log lines. Strings are copied. */
typedef struct acme_store_spec {
    acme_cfg_backend backend;
    const char *path;     /* sqlite */
    const char *conninfo; /* postgresql */
    unsigned pg_timeout_ms; /* postgresql: bound of every call (0: ACME_PG_TIMEOUT_MS_DEFAULT) */
    const char *schema_sqlite, *schema_pg;
    const char *name;    /* "acme-store" */
    const char *log_tag; /* "certforge-acme" */
} acme_store_spec;
CF_WUR int acme_store_open_spec(const acme_store_spec *spec, acme_store **out, char *err, size_t errlen);
/* Stop the writer after the queue drained; close. */
void acme_store_close(acme_store *s);

/* A reader connection for the calling thread. */
CF_WUR acme_db *acme_db_open_reader(acme_store *s, char *err, size_t errlen);
void acme_db_close(acme_db *db);

/* Run one statement: number of rows changed (≥ 0), or -1 (message in
 * acme_db_error). Statements are prepared once per connection and cached. */
CF_WUR int acme_db_exec(acme_db *db, const char *sql, const char *fmt, ...);
const char *acme_db_error(const acme_db *db);

/* Queries: acme_db_query(), then acme_q_next() until it returns 0 (no more
 * rows) or -1 (error), then acme_q_end(). Column accessors are valid until
 * the next acme_q_next(). One query at a time per connection. */
typedef struct acme_q {
    acme_db *db;
    void *stmt; /* backend's: an SQLite statement, a PostgreSQL result */
    int row, nrows;
    void *aux; /* PostgreSQL: the last unescaped bytea */
} acme_q;
CF_WUR int acme_db_query(acme_db *db, acme_q *q, const char *sql, const char *fmt, ...);
CF_WUR int acme_q_next(acme_q *q);
const char *acme_q_text(acme_q *q, int col); /* NULL for SQL NULL */
int64_t acme_q_int(acme_q *q, int col);
const void *acme_q_blob(acme_q *q, int col, size_t *len);
bool acme_q_null(acme_q *q, int col);
void acme_q_end(acme_q *q);

/* A state change: runs on the writer thread with its connection, inside a
 * savepoint. Return 0 to keep the change, > 0 (an acme_problem) or < 0
 * (database error) to undo it; the value reaches done(). */
typedef int (*acme_tx_fn)(acme_db *tx, void *arg);
/* Called on the writer thread once the change is durable (rc 0) or undone
 * (rc != 0; rc -1 also when the group's COMMIT failed). Must not block:
 * hand the result to the thread that waits for it. */
typedef void (*acme_tx_done)(void *arg, int rc);

/* Queue a change. 0, or -1 when the queue is full (answer rateLimited /
 * retry later) or the store is stopping. */
CF_WUR int acme_store_submit(acme_store *s, acme_tx_fn fn, acme_tx_done done, void *arg);
/* Queue a change and wait until it is durable: its rc, or -1 when it could
 * not be queued. For threads that may block (validation, tools). */
int acme_store_run(acme_store *s, acme_tx_fn fn, void *arg);

typedef struct acme_store_stats {
    uint64_t commits, changes, failed_commits;
    uint64_t max_group; /* most changes in one commit */
} acme_store_stats;
void acme_store_get_stats(acme_store *s, acme_store_stats *out);

#endif
