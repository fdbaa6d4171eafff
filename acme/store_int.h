/* store_int.h — what a state backend implements for store.c. */
#ifndef CF_ACME_STORE_INT_H
#define CF_ACME_STORE_INT_H

#include <stdarg.h>

#include "acme/store.h"

typedef struct db_ops {
    const char *name;
    const char *begin; /* the statement that opens a write transaction */
    void (*close)(acme_db *db);
    int (*exec)(acme_db *db, const char *sql, const char *fmt, va_list ap);
    int (*query)(acme_db *db, acme_q *q, const char *sql, const char *fmt, va_list ap);
    int (*next)(acme_q *q);
    const char *(*text)(acme_q *q, int col);
    int64_t (*integer)(acme_q *q, int col);
    const void *(*blob)(acme_q *q, int col, size_t *len);
    bool (*null)(acme_q *q, int col);
    void (*end)(acme_q *q);
    int (*simple)(acme_db *db, const char *sql); /* no parameters, no rows; may hold several statements */
    /* the writer's transaction statements (BEGIN, SAVEPOINT, RELEASE,
     * ROLLBACK TO, COMMIT): prepared once where the backend can (SQLite),
     * else sent as text (PostgreSQL prepares no utility statements) */
    int (*tx)(acme_db *db, const char *sql);
} db_ops;

/* Every connection starts with this. */
struct acme_db {
    const db_ops *ops;
    char err[256];
};

/* Open a connection: writer (creates the schema: `schema`, or
 * certforge-acme's when NULL) or reader. */
acme_db *acme_sqlite_open(const char *path, bool writer, const char *schema, char *err, size_t errlen);
/* PostgreSQL: every call (connect, statement, transaction statement) is
 * bounded by timeout_ms (0: ACME_PG_TIMEOUT_MS_DEFAULT); at the deadline
 * the connection is dropped and the next call reconnects (store_pg.c). */
acme_db *acme_pg_open(const char *conninfo, bool writer, const char *schema, unsigned timeout_ms, char *err,
                      size_t errlen);

#endif
