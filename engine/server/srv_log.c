/* srv_log.c — what the server logs about peers and requests (server_internal.h). */
#include "engine/server/server_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* An operator must see HSM trouble, but not one line per request: the
 * first failure, then at most one line a second with how many there were. */
void srv_log_hsm_failure(srv_loop *L, const srv_job *j)
{
    srv *s = L->s;
    unsigned long n = atomic_fetch_add(&s->hsm_fail_unlogged, 1) + 1;
    uint64_t last = atomic_load(&s->hsm_fail_logged_ms);
    if (last && L->now - last < 1000)
        return;
    if (!atomic_compare_exchange_strong(&s->hsm_fail_logged_ms, &last, L->now ? L->now : 1))
        return;
    n = atomic_exchange(&s->hsm_fail_unlogged, 0);
    char q[300];
    cf_log(CF_LOG_ERROR, "hsm_failure", "op=%s failures=%lu rv=0x%lx msg=%s", proto_op_name(j->op),
           n, (unsigned long)(uint32_t)j->pj.detail, cf_log_quote(j->pj.msg, q, sizeof(q)));
}

/* kind: "profile" or "key" (what the refused name is), or NULL. */
void srv_log_unauthorized(conn *c, const char *op, const char *kind, const char *name)
{
    char q[96];
    c->unauthorized++;
    /* the first per connection at warning, the rest at debug (no log flood) */
    cf_log(c->unauthorized == 1 ? CF_LOG_WARNING : CF_LOG_DEBUG, "unauthorized",
           "peer_uid=%u peer_gid=%u peer_pid=%u op=%s%s%s%s%s", c->uid, c->gid, c->pid, op,
           kind ? " " : "", kind ? kind : "", kind ? "=" : "",
           kind ? cf_log_quote(name, q, sizeof(q)) : "");
}

void srv_log_conn_open(const srv_loop *L, const conn *c)
{
    cf_log(CF_LOG_INFO, "conn_open", "peer_uid=%u peer_gid=%u peer_pid=%u ring=%u%s", c->uid,
           c->gid, c->pid, L->idx, c->ops ? "" : " grants=none");
}

void srv_log_conn_close(const conn *c, const char *reason, uint64_t dropped)
{
    cf_log(CF_LOG_INFO, "conn_close",
           "peer_uid=%u peer_gid=%u peer_pid=%u reason=%s requests=%llu dropped=%llu "
           "unsent_bytes=%zu unsupported=%llu unauthorized=%llu penalized=%llu",
           c->uid, c->gid, c->pid, reason, (unsigned long long)c->requests,
           (unsigned long long)dropped, c->out_len, (unsigned long long)c->unsupported,
           (unsigned long long)c->unauthorized, (unsigned long long)c->penalized);
}

void srv_log_conn_refused(const srv *s, uint32_t uid, uint32_t gid, int pid, const char *reason)
{
    cf_log(CF_LOG_WARNING, "conn_refused",
           "peer_uid=%u peer_gid=%u peer_pid=%d reason=%s max_connections=%u", uid, gid, pid,
           reason, s->sv.max_connections);
}
