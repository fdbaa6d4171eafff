/* pgwait.h — libpq calls that wait no longer than a deadline.
 *
 * A PostgreSQL server that hangs (stopped processes, a network black hole)
 * must not block a thread of certforged's ledger or certforge-acme's store
 * forever (docs/ledger.md and docs/acme.md, "A server that hangs"). Both
 * keep their connection non-blocking and give every call one deadline
 * (CLOCK_MONOTONIC milliseconds, pgw_now_ms() + the configured timeout);
 * these helpers connect, flush and read against it with poll().
 *
 * What happens at the deadline is the caller's: both drop the connection
 * (libpq before 17 has no non-blocking cancel; PQcancel would wait on the
 * same stopped server) and reconnect at the next call. So is every error
 * message: these return codes, never text.
 *
 * Links libpq only; no state of its own; any thread (a PGconn is used by
 * one thread at a time, as libpq requires).
 */
#ifndef CF_PGWAIT_H
#define CF_PGWAIT_H

#include <libpq-fe.h>
#include <stdint.h>

#include "common/compiler.h"

typedef enum pgw_rc {
    PGW_OK = 0,
    PGW_TIMEOUT = 1,   /* the deadline passed first */
    PGW_POLL_FAILED = -1 /* poll() failed: errno says why */
} pgw_rc;

/* CLOCK_MONOTONIC in milliseconds: deadlines are pgw_now_ms() + timeout. */
uint64_t pgw_now_ms(void);

/* Open a connection by the deadline: PQconnectStartParams(kw, val,
 * expand_dbname = 1), then PQconnectPoll whenever poll() says the socket is
 * ready; on success it is made non-blocking. *out is the connection in
 * every case (NULL only when libpq could not allocate one): on PGW_OK the
 * caller checks PQstatus (CONNECTION_BAD: PQerrorMessage says why) and
 * finishes it when done. libpq still resolves a host name synchronously
 * (getaddrinfo): a socket path or hostaddr avoids even that. */
CF_WUR pgw_rc pgw_connect(const char *const *kw, const char *const *val, uint64_t deadline_ms,
                          PGconn **out);

/* Wait until PQgetResult will not block: everything sent (PQflush) and a
 * whole result in, or the connection failed (PQgetResult then reports the
 * error at once). */
CF_WUR pgw_rc pgw_await(PGconn *c, uint64_t deadline_ms);

/* Every result of what was sent (outside pipeline mode), as PQexec
 * returns them: *res is the first result whose status is neither
 * PGRES_COMMAND_OK nor PGRES_TUPLES_OK, else the last one (NULL when there
 * was none). The caller checks its status and PQclear()s it. On
 * PGW_TIMEOUT or PGW_POLL_FAILED *res is NULL. */
CF_WUR pgw_rc pgw_collect(PGconn *c, uint64_t deadline_ms, PGresult **res);

#endif
