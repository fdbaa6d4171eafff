/* server.c — the HTTPS loops of server.h. */
#include "acme/server.h"
#include "acme/anchors.h"
#include "acme/connaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define KEY_CACHE 1024 /* per thread, direct-mapped by thumbprint */

typedef struct post_item {
    void (*fn)(void *);
    void *arg;
    struct post_item *next;
} post_item;

struct acme_thread {
    acme_srv *srv;
    unsigned idx;
    pthread_t tid;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    int fd;
    struct event *post_ev;
    pthread_mutex_t post_mu;
    post_item *post_head, *post_tail;
    acme_db *db;
    unsigned conns, max_conns;
    bool paused; /* listener disabled at max_conns */
    struct {
        char thumb[ACME_THUMB_LEN + 1];
        EVP_PKEY *key;
    } keys[KEY_CACHE];
};

static pthread_mutex_t ctx_mu = PTHREAD_MUTEX_INITIALIZER;
static int ssl_thread_idx = -1;

/* ------------------------------------------------------------ logging */

void acme_log(const acme_srv *srv, int level, const char *fmt, ...)
{
    if (srv && level > srv->log_level)
        return;
    static const char *const lv[] = {"error", "warning", "info", "debug"};
    char line[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ certforge-acme level=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, lv[level & 3]);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(line))
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------ TLS */

SSL_CTX *acme_server_ssl_ctx(const char *chain_file, const char *key_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "SSL_CTX_new failed");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    if (SSL_CTX_use_certificate_chain_file(ctx, chain_file) != 1) {
        snprintf(err, errlen, "TLS certificate %s: %s", chain_file,
                 ERR_reason_error_string(ERR_peek_last_error()));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "TLS key %s: %s (does it belong to %s?)", key_file,
                 ERR_reason_error_string(ERR_peek_last_error()), chain_file);
        goto fail;
    }
    ERR_clear_error();
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

void acme_server_set_ssl_ctx(acme_srv *srv, SSL_CTX *ctx)
{
    pthread_mutex_lock(&ctx_mu);
    SSL_CTX *old = atomic_exchange(&srv->ssl_ctx, ctx);
    pthread_mutex_unlock(&ctx_mu);
    SSL_CTX_free(old); /* connections hold their own references */
}

/* Called when a connection's SSL is freed (its connection closed). */
static void ssl_free_cb(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    acme_thread *t = ptr;
    if (!t)
        return;
    t->conns--;
    if (t->paused && t->conns < t->max_conns) {
        struct evconnlistener *l = evhttp_bound_socket_get_listener(t->bound);
        if (l)
            evconnlistener_enable(l);
        t->paused = false;
    }
}

/* A connection counts against its address from its first request on
 * (limits.max_connections_per_address): one client holding many
 * keep-alive connections cannot take every slot. Over the limit the
 * request is answered 429 rateLimited with Retry-After and the connection
 * closed. Returns 0 to go on. */
static int address_limit(acme_rq *rq, struct evhttp_connection *ec)
{
    acme_srv *srv = rq->srv;
    if (acme_connaddr_take(ec, srv->addrs, rq->addr) == 0)
        return 0;
    atomic_fetch_add_explicit(&srv->ctr.address_limit_hits, 1, memory_order_relaxed);
    acme_rq_header(rq, "Retry-After", "1");
    acme_rq_header(rq, "Connection", "close");
    acme_rq_problemf(rq, ACME_P_RATE_LIMITED,
                     "too many connections from %s (limits.max_connections_per_address = %u); "
                     "close one or retry later",
                     rq->addr, srv->cfg->max_connections_per_address);
    return -1;
}

static struct bufferevent *bev_cb(struct event_base *base, void *arg)
{
    acme_thread *t = arg;
    pthread_mutex_lock(&ctx_mu);
    SSL *ssl = SSL_new(atomic_load(&t->srv->ssl_ctx));
    pthread_mutex_unlock(&ctx_mu);
    if (!ssl)
        return NULL;
    SSL_set_ex_data(ssl, ssl_thread_idx, t);
    t->conns++;
    atomic_fetch_add_explicit(&t->srv->ctr.connections, 1, memory_order_relaxed);
    if (t->conns >= t->max_conns && !t->paused) {
        /* At the limit: stop accepting on this loop; the kernel queues new
         * connections (backlog) until one closes (ssl_free_cb). */
        struct evconnlistener *l = evhttp_bound_socket_get_listener(t->bound);
        if (l)
            evconnlistener_disable(l);
        t->paused = true;
        atomic_fetch_add_explicit(&t->srv->ctr.connections_refused, 1, memory_order_relaxed);
        acme_log(t->srv, ACME_LOG_WARNING, "event=max_connections thread=%u open=%u", t->idx, t->conns);
    }
    return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                          BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
}

/* ------------------------------------------------------------ trust anchors */

acme_anchors *acme_server_anchors_get(acme_srv *srv)
{
    pthread_mutex_lock(&srv->anchors_mu);
    acme_anchors *a = srv->anchors;
    if (a)
        a->refs++;
    pthread_mutex_unlock(&srv->anchors_mu);
    return a;
}

void acme_server_anchors_put(acme_srv *srv, acme_anchors *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&srv->anchors_mu);
    int left = --a->refs;
    pthread_mutex_unlock(&srv->anchors_mu);
    if (left == 0)
        acme_anchors_free(a);
}

void acme_server_anchors_set(acme_srv *srv, acme_anchors *a)
{
    pthread_mutex_lock(&srv->anchors_mu);
    acme_anchors *old = srv->anchors;
    srv->anchors = a;
    pthread_mutex_unlock(&srv->anchors_mu);
    acme_server_anchors_put(srv, old);
}

/* ------------------------------------------------------------ posting */

static void post_cb(evutil_socket_t fd, short what, void *arg)
{
    acme_thread *t = arg;
    pthread_mutex_lock(&t->post_mu);
    post_item *list = t->post_head;
    t->post_head = t->post_tail = NULL;
    pthread_mutex_unlock(&t->post_mu);
    while (list) {
        post_item *next = list->next;
        list->fn(list->arg);
        free(list);
        list = next;
    }
}

void acme_thread_post(acme_thread *t, void (*fn)(void *), void *arg)
{
    post_item *p = malloc(sizeof(*p));
    if (!p) {
        /* Out of memory: run it here rather than lose it. Only the loop
         * thread touches its requests, so this is a last resort. */
        abort();
    }
    p->fn = fn;
    p->arg = arg;
    p->next = NULL;
    pthread_mutex_lock(&t->post_mu);
    if (t->post_tail)
        t->post_tail->next = p;
    else
        t->post_head = p;
    t->post_tail = p;
    pthread_mutex_unlock(&t->post_mu);
    event_active(t->post_ev, EV_READ, 0);
}

/* ------------------------------------------------------------ keys */

acme_db *acme_thread_db(acme_thread *t)
{
    return t->db;
}

struct event_base *acme_thread_base(acme_thread *t)
{
    return t->base;
}

EVP_PKEY *acme_thread_key(acme_thread *t, const json_t *jwk, const char *thumb, acme_jws_err *err,
                          char *msg, size_t msglen)
{
    unsigned h = 0;
    for (const char *p = thumb; *p; p++)
        h = h * 31 + (unsigned char)*p;
    h %= KEY_CACHE;
    if (t->keys[h].key && strcmp(t->keys[h].thumb, thumb) == 0)
        return t->keys[h].key;
    EVP_PKEY *k = NULL;
    acme_jws_alg fam;
    if (acme_jwk_import(jwk, &k, &fam, err, msg, msglen) != 0)
        return NULL;
    EVP_PKEY_free(t->keys[h].key);
    t->keys[h].key = k;
    snprintf(t->keys[h].thumb, sizeof(t->keys[h].thumb), "%s", thumb);
    return k;
}

/* ------------------------------------------------------------ answers */

static void rq_free(acme_rq *rq)
{
    if (rq->have_jws)
        acme_jws_free(&rq->jws);
    json_decref(rq->payload);
    EVP_PKEY_free(rq->key);
    free(rq);
}

static void common_headers(acme_rq *rq)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(rq->req);
    char nonce[ACME_NONCE_MAX];
    if (acme_nonce_issue(rq->srv->nonces, nonce, sizeof(nonce)) == 0)
        evhttp_add_header(h, "Replay-Nonce", nonce);
    evhttp_add_header(h, "Cache-Control", "no-store");
    char link[320];
    snprintf(link, sizeof(link), "<%s>;rel=\"index\"", rq->srv->dir_url);
    evhttp_add_header(h, "Link", link);
}

static void finish(acme_rq *rq, int status, struct evbuffer *body)
{
    rq->http_status = status;
    rq->answered = true;
    common_headers(rq);
    const char *reason = status == 200   ? "OK"
                         : status == 201 ? "Created"
                         : status == 204 ? "No Content"
                         : status < 400  ? "Redirect"
                         : status == 404 ? "Not Found"
                         : status == 405 ? "Method Not Allowed"
                         : status == 415 ? "Unsupported Media Type"
                         : status == 429 ? "Too Many Requests"
                         : status >= 500 ? "Internal Server Error"
                                         : "Bad Request";
    /* the request's log line first, then the answer: a client that acts
     * on the answer (or a test reading the log after it) finds the line */
    double ms = (double)(now_ns() - rq->t0_ns) / 1e6;
    acme_srv *srv = rq->srv;
    atomic_fetch_add_explicit(&srv->ctr.requests, 1, memory_order_relaxed);
    if (rq->problem != ACME_P_NONE)
        atomic_fetch_add_explicit(&srv->ctr.problems, 1, memory_order_relaxed);
    if (srv->log_level >= ACME_LOG_INFO)
        acme_log(srv, ACME_LOG_INFO, "method=%s path=%s status=%d account=%s order=%s problem=%s ms=%.2f addr=%s",
                 rq->method == ACME_GET    ? "GET"
                 : rq->method == ACME_HEAD ? "HEAD"
                 : rq->method == ACME_POST ? "POST"
                                           : "OTHER",
                 rq->path, status, rq->account[0] ? rq->account : "-", rq->order[0] ? rq->order : "-",
                 rq->problem != ACME_P_NONE ? acme_problem_name(rq->problem) : "-", ms, rq->addr);
    evhttp_send_reply(rq->req, status, reason, body);
    rq_free(rq);
}

void acme_rq_header(acme_rq *rq, const char *name, const char *value)
{
    evhttp_add_header(evhttp_request_get_output_headers(rq->req), name, value);
}

void acme_rq_link(acme_rq *rq, const char *url, const char *rel)
{
    char link[512];
    snprintf(link, sizeof(link), "<%s>;rel=\"%s\"", url, rel);
    acme_rq_header(rq, "Link", link);
}

void acme_rq_json(acme_rq *rq, int http_status, json_t *body, const char *location)
{
    struct evbuffer *b = evbuffer_new();
    char *txt = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!b || (body && !txt)) {
        free(txt);
        if (b)
            evbuffer_free(b);
        evhttp_send_error(rq->req, 500, "out of memory");
        rq_free(rq);
        return;
    }
    if (txt)
        evbuffer_add(b, txt, strlen(txt));
    free(txt);
    acme_rq_header(rq, "Content-Type", "application/json");
    if (location)
        acme_rq_header(rq, "Location", location);
    finish(rq, http_status, b);
    evbuffer_free(b);
}

void acme_rq_raw(acme_rq *rq, int http_status, const char *content_type, const void *body, size_t len)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(rq->req, 500, "out of memory");
        rq_free(rq);
        return;
    }
    evbuffer_add(b, body, len);
    if (content_type)
        acme_rq_header(rq, "Content-Type", content_type);
    finish(rq, http_status, b);
    evbuffer_free(b);
}

void acme_rq_problem(acme_rq *rq, acme_problem type, const char *detail, json_t *subproblems)
{
    char t[128];
    snprintf(t, sizeof(t), "urn:ietf:params:acme:error:%s", acme_problem_name(type));
    json_t *p = json_pack("{s:s, s:s, s:i}", "type", t, "detail", detail ? detail : "", "status",
                          acme_problem_http_status(type));
    if (p && subproblems)
        json_object_set_new(p, "subproblems", subproblems);
    else
        json_decref(subproblems);
    rq->problem = type;
    if (type == ACME_P_BAD_NONCE)
        atomic_fetch_add_explicit(&rq->srv->ctr.bad_nonce, 1, memory_order_relaxed);
    struct evbuffer *b = evbuffer_new();
    char *txt = p ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    if (b && txt)
        evbuffer_add(b, txt, strlen(txt));
    free(txt);
    acme_rq_header(rq, "Content-Type", "application/problem+json");
    /* a handler may set another status first (404, 405, 409, 415) */
    int status = rq->http_status ? rq->http_status : acme_problem_http_status(type);
    finish(rq, status, b);
    if (b)
        evbuffer_free(b);
}

void acme_rq_problemf(acme_rq *rq, acme_problem type, const char *fmt, ...)
{
    char d[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d, sizeof(d), fmt, ap);
    va_end(ap);
    acme_rq_problem(rq, type, d, NULL);
}

/* ------------------------------------------------------------ async */

typedef struct sub {
    acme_rq *rq;
    void *arg;
    acme_tx_fn fn;
    acme_rq_cont cont;
    int rc;
} sub;

static void sub_resume(void *p)
{
    sub *s = p;
    acme_rq *rq = s->rq;
    s->cont(rq, s->arg, s->rc);
    free(s);
}

static int sub_fn(acme_db *tx, void *p)
{
    sub *s = p;
    return s->fn(tx, s->arg);
}

static void sub_done(void *p, int rc)
{
    sub *s = p;
    s->rc = rc;
    acme_thread_post(s->rq->t, sub_resume, s);
}

void acme_rq_submit(acme_rq *rq, acme_tx_fn fn, void *arg, acme_rq_cont cont)
{
    sub *s = calloc(1, sizeof(*s));
    if (!s) {
        cont(rq, arg, -1);
        return;
    }
    s->rq = rq;
    s->arg = arg;
    s->fn = fn;
    s->cont = cont;
    if (acme_store_submit(rq->srv->store, sub_fn, sub_done, s) != 0) {
        free(s);
        acme_rq_header(rq, "Retry-After", "1");
        cont(rq, arg, ACME_P_RATE_LIMITED);
    }
}

/* ------------------------------------------------------------ dispatch */

static void gen_cb(struct evhttp_request *req, void *arg)
{
    acme_thread *t = arg;
    acme_rq *rq = calloc(1, sizeof(*rq));
    if (!rq) {
        evhttp_send_error(req, 503, "out of memory");
        return;
    }
    rq->req = req;
    rq->t = t;
    rq->srv = t->srv;
    rq->db = t->db;
    rq->t0_ns = now_ns();
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET:
        rq->method = ACME_GET;
        break;
    case EVHTTP_REQ_HEAD:
        rq->method = ACME_HEAD;
        break;
    case EVHTTP_REQ_POST:
        rq->method = ACME_POST;
        break;
    default:
        rq->method = ACME_OTHER;
    }
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    rq->path = u ? evhttp_uri_get_path(u) : NULL;
    if (!rq->path)
        rq->path = "";
    struct evhttp_connection *ec = evhttp_request_get_connection(req);
    if (ec) {
        char *host = NULL;
        ev_uint16_t port = 0;
        evhttp_connection_get_peer(ec, &host, &port);
        snprintf(rq->addr, sizeof(rq->addr), "%s", host ? host : "-");
    }
    if (address_limit(rq, ec) != 0)
        return;
    acme_api_handle(rq);
}

static void *loop_main(void *arg)
{
    acme_thread *t = arg;
    char name[16];
    snprintf(name, sizeof(name), "acme-http/%u", t->idx);
    pthread_setname_np(pthread_self(), name);
    event_base_dispatch(t->base);
    return NULL;
}

static int listen_socket(const acme_cfg *cfg, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *ai = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", cfg->listen_port);
    int rc = getaddrinfo(cfg->listen_host, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "listen %s:%s: %s", cfg->listen_host, port, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    /* TCP_NODELAY, inherited by accepted sockets (Linux): an answer goes
     * out as two TLS records (evhttp's headers, then the body); with
     * Nagle the second waits for the client's delayed ACK of the first,
     * 40 ms per request. */
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        snprintf(err, errlen, "listen %s:%s: %s", cfg->listen_host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

int acme_server_new(acme_srv *srv, char *err, size_t errlen)
{
    const acme_cfg *cfg = srv->cfg;
    if (evthread_use_pthreads() != 0) {
        snprintf(err, errlen, "libevent: no pthreads support");
        return -1;
    }
    if (ssl_thread_idx < 0)
        ssl_thread_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, ssl_free_cb);
    srv->addrs = cf_addrcount_new(cfg->max_connections_per_address);
    if (!srv->addrs || acme_connaddr_init() != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(srv->dir_url, sizeof(srv->dir_url), "%s/directory", cfg->base_url);
    srv->n_threads = cfg->threads;
    srv->threads = calloc(srv->n_threads, sizeof(*srv->threads));
    if (!srv->threads) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    unsigned per = (cfg->max_connections + srv->n_threads - 1) / srv->n_threads;
    for (unsigned i = 0; i < srv->n_threads; i++) {
        acme_thread *t = calloc(1, sizeof(*t));
        if (!t) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        srv->threads[i] = t;
        t->srv = srv;
        t->idx = i;
        t->fd = -1;
        t->max_conns = per ? per : 1;
        pthread_mutex_init(&t->post_mu, NULL);
        if (!(t->base = event_base_new()) || !(t->http = evhttp_new(t->base))) {
            snprintf(err, errlen, "libevent: cannot create an event loop");
            return -1;
        }
        t->post_ev = event_new(t->base, -1, 0, post_cb, t);
        if (!t->post_ev) {
            snprintf(err, errlen, "libevent: cannot create an event");
            return -1;
        }
        if (!(t->db = acme_db_open_reader(srv->store, err, errlen)))
            return -1;
        evhttp_set_allowed_methods(t->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
        evhttp_set_max_body_size(t->http, cfg->max_body);
        evhttp_set_max_headers_size(t->http, cfg->max_headers);
        evhttp_set_timeout(t->http, (int)cfg->request_timeout_s);
        evhttp_set_default_content_type(t->http, "application/json");
        evhttp_set_bevcb(t->http, bev_cb, t);
        evhttp_set_gencb(t->http, gen_cb, t);
        if ((t->fd = listen_socket(cfg, err, errlen)) < 0)
            return -1;
        if (!(t->bound = evhttp_accept_socket_with_handle(t->http, t->fd))) {
            snprintf(err, errlen, "libevent: cannot accept on the listening socket");
            return -1;
        }
    }
    return 0;
}

int acme_server_start(acme_srv *srv, char *err, size_t errlen)
{
    for (unsigned i = 0; i < srv->n_threads; i++)
        if (pthread_create(&srv->threads[i]->tid, NULL, loop_main, srv->threads[i]) != 0) {
            snprintf(err, errlen, "cannot start HTTP thread %u", i);
            return -1;
        }
    return 0;
}

static void stop_cb(void *arg)
{
    acme_thread *t = arg;
    if (t->bound)
        evhttp_del_accept_socket(t->http, t->bound);
    t->bound = NULL;
    event_base_loopexit(t->base, NULL);
}

void acme_server_stop(acme_srv *srv)
{
    atomic_store(&srv->stopping, 1);
    for (unsigned i = 0; i < srv->n_threads; i++)
        if (srv->threads[i] && srv->threads[i]->tid)
            acme_thread_post(srv->threads[i], stop_cb, srv->threads[i]);
    for (unsigned i = 0; i < srv->n_threads; i++)
        if (srv->threads[i] && srv->threads[i]->tid) {
            pthread_join(srv->threads[i]->tid, NULL);
            srv->threads[i]->tid = 0;
        }
}

void acme_server_free(acme_srv *srv)
{
    for (unsigned i = 0; srv->threads && i < srv->n_threads; i++) {
        acme_thread *t = srv->threads[i];
        if (!t)
            continue;
        if (t->http)
            evhttp_free(t->http);
        /* completions posted after the loop stopped: run them, so that
         * what they own is freed (their answers go nowhere) */
        post_cb(-1, 0, t);
        if (t->post_ev)
            event_free(t->post_ev);
        if (t->base)
            event_base_free(t->base);
        acme_db_close(t->db);
        for (unsigned k = 0; k < KEY_CACHE; k++)
            EVP_PKEY_free(t->keys[k].key);
        pthread_mutex_destroy(&t->post_mu);
        free(t);
    }
    free(srv->threads);
    srv->threads = NULL;
    SSL_CTX_free(atomic_exchange(&srv->ssl_ctx, NULL));
    cf_addrcount_free(srv->addrs); /* after every connection's SSL was freed */
    srv->addrs = NULL;
}
