/* pgwait.c — libpq calls bounded by a deadline. See pgwait.h. */
#include "pgwait/pgwait.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <time.h>

uint64_t pgw_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* poll() for `events` on the connection's socket until the deadline. A
 * connection without a socket is "ready": libpq reports why on the next
 * call. */
static pgw_rc wait_socket(PGconn *c, short events, uint64_t deadline_ms)
{
    for (;;) {
        uint64_t now = pgw_now_ms();
        if (now >= deadline_ms)
            return PGW_TIMEOUT;
        uint64_t left = deadline_ms - now;
        struct pollfd p = {.fd = PQsocket(c), .events = events};
        if (p.fd < 0)
            return PGW_OK;
        int r = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (r > 0)
            return PGW_OK;
        if (r < 0 && errno != EINTR)
            return PGW_POLL_FAILED;
    }
}

pgw_rc pgw_connect(const char *const *kw, const char *const *val, uint64_t deadline_ms,
                   PGconn **out)
{
    PGconn *c = PQconnectStartParams(kw, val, 1);
    *out = c;
    if (!c)
        return PGW_OK;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (PQstatus(c) != CONNECTION_BAD && st != PGRES_POLLING_OK &&
           st != PGRES_POLLING_FAILED) {
        pgw_rc w = wait_socket(c, st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline_ms);
        if (w != PGW_OK)
            return w;
        st = PQconnectPoll(c);
    }
    if (PQstatus(c) == CONNECTION_OK)
        (void)PQsetnonblocking(c, 1); /* checked by the caller: PQisnonblocking */
    return PGW_OK;
}

pgw_rc pgw_await(PGconn *c, uint64_t deadline_ms)
{
    for (;;) {
        int f = PQflush(c);
        if (f < 0 || (f == 0 && !PQisBusy(c)))
            return PGW_OK;
        pgw_rc w = wait_socket(c, (short)(POLLIN | (f ? POLLOUT : 0)), deadline_ms);
        if (w != PGW_OK)
            return w;
        /* input (or end of file): read it; on failure the connection is
         * bad and PQgetResult reports it without waiting */
        if (!PQconsumeInput(c))
            return PGW_OK;
    }
}

static int failed(const PGresult *r)
{
    ExecStatusType s = PQresultStatus(r);
    return s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK;
}

pgw_rc pgw_collect(PGconn *c, uint64_t deadline_ms, PGresult **res)
{
    PGresult *keep = NULL, *r;
    *res = NULL;
    for (;;) {
        pgw_rc w = pgw_await(c, deadline_ms);
        if (w != PGW_OK) {
            PQclear(keep);
            return w;
        }
        if (!(r = PQgetResult(c)))
            break;
        if (keep && failed(keep)) {
            PQclear(r); /* the first failure is the one to report */
            continue;
        }
        PQclear(keep);
        keep = r;
    }
    *res = keep;
    return PGW_OK;
}
