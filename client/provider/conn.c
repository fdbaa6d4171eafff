/* conn.c — the provider's connections to certforged. A cf_client is used
 * by one thread at a time (certforge.h), so each provider context keeps a
 * small pool of idle connections per socket path: a signing thread takes
 * one (or connects), uses it for one request, and gives it back.
 *
 * Fork: a child may not use its parent's clients. pthread_atfork handlers
 * hold every pool's lock across fork() so that the child never inherits a
 * lock some other thread held; the child then finds the pool's pid is not
 * its own and closes the inherited idle clients (closing only its copy of
 * each socket) before connecting its own. The module is linked with
 * -z nodelete so the handlers stay mapped after OSSL_PROVIDER_unload. */
#include "client/provider/prov.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#define CFP_POOL_IDLE 64 /* idle connections kept per provider context */

typedef struct idle_conn {
    cf_client *c;
    char socket[CFP_SOCKET_MAX + 1];
} idle_conn;

struct cfp_pool {
    pthread_mutex_t lock;
    pid_t pid; /* the process the idle clients belong to; under lock */
    idle_conn idle[CFP_POOL_IDLE];
    size_t n_idle;
    cfp_pool *next; /* in the registry, for the fork handlers */
};

/* Every live pool, for the atfork handlers. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static cfp_pool *registry;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void fork_prepare(void)
{
    pthread_mutex_lock(&registry_lock);
    for (cfp_pool *p = registry; p; p = p->next)
        pthread_mutex_lock(&p->lock);
}

static void fork_release(void)
{
    for (cfp_pool *p = registry; p; p = p->next)
        pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&registry_lock);
}

static void register_atfork(void)
{
    pthread_atfork(fork_prepare, fork_release, fork_release);
}

cfp_pool *cfp_pool_new(void)
{
    pthread_once(&atfork_once, register_atfork);
    cfp_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p);
        return NULL;
    }
    p->pid = getpid();
    pthread_mutex_lock(&registry_lock);
    p->next = registry;
    registry = p;
    pthread_mutex_unlock(&registry_lock);
    return p;
}

void cfp_pool_free(cfp_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&registry_lock);
    for (cfp_pool **pp = &registry; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    for (size_t i = 0; i < p->n_idle; i++)
        cf_client_close(p->idle[i].c);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* In a forked child: the inherited idle clients are the parent's. Closing
 * them only closes the child's copies of the sockets. */
static void drop_foreign_locked(cfp_pool *p)
{
    pid_t me = getpid();
    if (p->pid == me)
        return;
    for (size_t i = 0; i < p->n_idle; i++)
        cf_client_close(p->idle[i].c);
    p->n_idle = 0;
    p->pid = me;
}

static cf_client *take_idle(cfp_pool *p, const char *socket)
{
    cf_client *c = NULL;
    pthread_mutex_lock(&p->lock);
    drop_foreign_locked(p);
    for (size_t i = p->n_idle; i-- > 0;) {
        if (strcmp(p->idle[i].socket, socket) == 0) {
            c = p->idle[i].c;
            p->idle[i] = p->idle[--p->n_idle];
            break;
        }
    }
    pthread_mutex_unlock(&p->lock);
    return c;
}

/* Close every idle connection to `socket`: after one broke (daemon
 * restarted), its siblings are most likely broken too. */
static void drop_socket(cfp_pool *p, const char *socket)
{
    cf_client *doomed[CFP_POOL_IDLE];
    size_t n = 0;
    pthread_mutex_lock(&p->lock);
    drop_foreign_locked(p);
    for (size_t i = 0; i < p->n_idle;) {
        if (strcmp(p->idle[i].socket, socket) == 0) {
            doomed[n++] = p->idle[i].c;
            p->idle[i] = p->idle[--p->n_idle];
        } else {
            i++;
        }
    }
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < n; i++)
        cf_client_close(doomed[i]);
}

static int connect_new(cfp_ctx *ctx, const char *socket, cf_client **out)
{
    char err[512];
    if (cf_client_connect(socket, out, err, sizeof(err)) != 0) {
        CFP_RAISE(ctx, CFP_R_UNREACHABLE,
                  "%s (start certforged, or point certforge:...;socket=PATH or CERTFORGE_SOCKET "
                  "at its socket)",
                  err);
        return -1;
    }
    return 0;
}

int cfp_pool_call(cfp_ctx *ctx, const char *socket, cfp_req_fn fn, void *arg, cfp_lease *lease,
                  cf_response *resp)
{
    lease->c = NULL;
    snprintf(lease->socket, sizeof(lease->socket), "%s", socket);
    for (int attempt = 0; attempt < 2; attempt++) {
        cf_client *c = attempt == 0 ? take_idle(ctx->pool, socket) : NULL;
        bool fresh = c == NULL;
        if (!c && connect_new(ctx, socket, &c) != 0)
            return -1;
        int r = fn(c, arg, resp);
        if (r == 0) {
            lease->c = c;
            return 0;
        }
        char why[300];
        snprintf(why, sizeof(why), "%s", r == 1 ? "no answer in time" : cf_client_error(c));
        cf_client_close(c);
        /* A pooled connection may have died while idle (daemon restarted,
         * idle timeout): retry once on a fresh one. A fresh one that fails
         * is the answer. */
        if (r == 1 || fresh || attempt == 1) {
            CFP_RAISE(ctx, r == 1 ? CFP_R_BUSY : CFP_R_DAEMON_ERROR, "certforged at %s: %s", socket,
                      why);
            return -1;
        }
        drop_socket(ctx->pool, socket);
    }
    return -1;
}

void cfp_pool_release(cfp_ctx *ctx, cfp_lease *lease)
{
    cf_client *c = lease->c;
    lease->c = NULL;
    if (!c)
        return;
    cfp_pool *p = ctx->pool;
    pthread_mutex_lock(&p->lock);
    drop_foreign_locked(p);
    if (p->n_idle < CFP_POOL_IDLE) {
        p->idle[p->n_idle].c = c;
        snprintf(p->idle[p->n_idle].socket, sizeof(p->idle[0].socket), "%s", lease->socket);
        p->n_idle++;
        c = NULL;
    }
    pthread_mutex_unlock(&p->lock);
    cf_client_close(c);
}
