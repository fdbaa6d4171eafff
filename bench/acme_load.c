/* acme-load — N concurrent ACME (RFC 8555) clients doing complete flows
 * against one server, for certforge-acme and pebble alike (issue 13).
 *
 *   acme-load --directory URL --connect 127.0.0.1:PORT --ca ROOT.pem --http01-port P
 *             [--clients N] [--duration S | --issuances K] [--threads T] [--poll-ms MS]
 *             [--label NAME] [--domain SUFFIX] [--json FILE] [--quiet]
 *             [--profile NAME] [--star LIFETIME --star-end S [--star-adjust S]]
 *
 * Each client has its own ES256 account key (registered before the clock
 * starts, not counted), one HTTP/1.1 keep-alive connection over TLS to
 * --connect (SNI and Host are the directory URL's host; the certificate is
 * verified against --ca and that host), and a P-256 key for its CSRs. It
 * loops complete flows for one fresh DNS name each:
 *   newOrder → POST-as-GET the authorization → POST {} to its http-01
 *   challenge → poll the authorization until valid → finalize with a CSR →
 *   poll the order while processing → download the certificate (POST-as-GET)
 *   and check that it is well-formed DER naming the identifier in its
 *   subjectAltName.
 * With --star every order asks for STAR certificates (RFC 8739 §3.1.1:
 * "auto-renewal" with lifetime, lifetime-adjust, an end-date S seconds
 * from the order and allow-certificate-get), and the flow ends with the
 * first certificate from the order's star-certificate URL; the server's
 * scheduler renews them from then on (bench/star_bench.sh watches it).
 * Nonces come from each answer's Replay-Nonce (HEAD newNonce only when a
 * client has none); a badNonce answer is retried (at most 3 times) with the
 * nonce it carries. Polls wait Retry-After when the answer has one, else
 * --poll-ms. The http-01 answers come from a responder inside the
 * generator (evhttp on 127.0.0.1:P, its own thread).
 *
 * Threads: --threads event loops (lg-load/N), clients spread over them;
 * lg-http01 (the responder). Every cryptographic operation is OpenSSL's;
 * JWS through acme/jws.h.
 *
 * Output: complete issuances per second (those finished inside the
 * measured window, --duration; or K over the time to the last one,
 * --issuances), errors by ACME problem type, per-step latency percentiles
 * (bench_hist: within 1.6 %), requests per issuance; --json for plots.
 * Exit status: 0 every flow completed; 1 a flow failed or the set-up did;
 * 2 usage. Memory is bounded: fixed per client, bodies capped at 1 MiB.
 */
#include "acme/jws.h"
#include "bench/bench_hist.h"
#include "engine/der/der.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#define LG_URL_MAX 512
#define LG_MAX_BODY (1u << 20)
#define LG_MAX_CLIENTS 20000
#define LG_MAX_THREADS 64
#define LG_NONCE_RETRIES 3
#define LG_MAX_ERRNAMES 32
#define LG_REQ_TIMEOUT_S 10 /* a request unanswered this long fails its flow (a hung server) */
#define LG_FLOW_TIMEOUT_NS (120ull * 1000000000ull)

/* ------------------------------------------------------------ steps */

typedef enum lg_step {
    LG_NEW_ORDER,
    LG_AUTHZ,
    LG_CHALL,
    LG_VALWAIT, /* challenge answered → authorization valid (polls included) */
    LG_FINALIZE,
    LG_ORDER_POLL, /* finalize answered processing → order valid */
    LG_CERT,
    LG_FLOW,
    LG_STEP__MAX
} lg_step;

static const char *const STEP_NAMES[LG_STEP__MAX] = {
    [LG_NEW_ORDER] = "newOrder", [LG_AUTHZ] = "authz",       [LG_CHALL] = "challenge",
    [LG_VALWAIT] = "validation", [LG_FINALIZE] = "finalize", [LG_ORDER_POLL] = "order poll",
    [LG_CERT] = "download",      [LG_FLOW] = "whole flow",
};

/* ------------------------------------------------------------ config */

typedef struct lg_cfg {
    char directory[LG_URL_MAX];
    char origin[LG_URL_MAX]; /* "https://host:port" as the directory URL spells it */
    char host[256];          /* SNI and certificate name */
    char hosthdr[300];       /* Host header: host[:port] */
    char dir_path[LG_URL_MAX];
    char connect_ip[64];
    unsigned connect_port;
    const char *ca;
    unsigned http01_port;
    unsigned clients, threads, poll_ms;
    double duration;
    unsigned long issuances;
    const char *json, *label, *domain;
    const char *profile;                 /* newOrder "profile", when set */
    unsigned star_lifetime, star_adjust; /* --star: 0 for ordinary orders */
    unsigned long star_end;              /* end-date, seconds after each newOrder */
    bool quiet;
} lg_cfg;

static lg_cfg G;
static SSL_CTX *g_ssl;
static char g_new_nonce[LG_URL_MAX], g_new_account[LG_URL_MAX], g_new_order[LG_URL_MAX];
static char g_run[9]; /* this run's tag in every name: runs never reuse a name */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Run control, written by main before the loops start flows. */
static uint64_t g_t0, g_t_end; /* measured window (duration mode) */
static _Atomic unsigned long g_started;
static _Atomic int g_abort;

/* ------------------------------------------------------------ http-01 responder */

/* token → key authorization for the pending challenges: one slot per
 * client (a client has at most one token out), chained in buckets. */
typedef struct lg_slot {
    char token[128];
    char keyauth[192];
    int next; /* -1: end of chain */
    bool used;
} lg_slot;

static struct {
    pthread_mutex_t mu;
    lg_slot *slots;
    int *heads;
    unsigned nbuckets; /* power of two */
    struct event_base *base;
    struct evhttp *http;
    pthread_t thr;
    _Atomic uint64_t hits, misses;
} R = {.mu = PTHREAD_MUTEX_INITIALIZER};

static unsigned tok_hash(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void resp_put(unsigned slot, const char *token, const char *keyauth)
{
    lg_slot *s = &R.slots[slot];
    pthread_mutex_lock(&R.mu);
    snprintf(s->token, sizeof(s->token), "%s", token);
    snprintf(s->keyauth, sizeof(s->keyauth), "%s", keyauth);
    unsigned b = tok_hash(s->token) & (R.nbuckets - 1);
    s->next = R.heads[b];
    R.heads[b] = (int)slot;
    s->used = true;
    pthread_mutex_unlock(&R.mu);
}

static void resp_del(unsigned slot)
{
    lg_slot *s = &R.slots[slot];
    pthread_mutex_lock(&R.mu);
    if (s->used) {
        unsigned b = tok_hash(s->token) & (R.nbuckets - 1);
        for (int *p = &R.heads[b]; *p >= 0; p = &R.slots[*p].next)
            if (*p == (int)slot) {
                *p = s->next;
                break;
            }
        s->used = false;
    }
    pthread_mutex_unlock(&R.mu);
}

static void resp_cb(struct evhttp_request *req, void *arg)
{
    (void)arg;
    static const char pfx[] = "/.well-known/acme-challenge/";
    const char *uri = evhttp_request_get_uri(req);
    char ka[sizeof(((lg_slot *)0)->keyauth)];
    ka[0] = '\0';
    if (evhttp_request_get_command(req) == EVHTTP_REQ_GET &&
        strncmp(uri, pfx, sizeof(pfx) - 1) == 0) {
        const char *tok = uri + sizeof(pfx) - 1;
        pthread_mutex_lock(&R.mu);
        for (int i = R.heads[tok_hash(tok) & (R.nbuckets - 1)]; i >= 0; i = R.slots[i].next)
            if (strcmp(R.slots[i].token, tok) == 0) {
                memcpy(ka, R.slots[i].keyauth, sizeof(ka));
                break;
            }
        pthread_mutex_unlock(&R.mu);
    }
    if (!ka[0]) {
        atomic_fetch_add_explicit(&R.misses, 1, memory_order_relaxed);
        evhttp_send_error(req, 404, NULL);
        return;
    }
    atomic_fetch_add_explicit(&R.hits, 1, memory_order_relaxed);
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_add(b, ka, strlen(ka));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/octet-stream");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

static void *resp_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "lg-http01");
    event_base_dispatch(R.base);
    return NULL;
}

static int resp_start(unsigned port, unsigned nclients)
{
    R.nbuckets = 64;
    while (R.nbuckets < 2 * nclients)
        R.nbuckets <<= 1;
    R.slots = calloc(nclients, sizeof(*R.slots));
    R.heads = malloc(R.nbuckets * sizeof(*R.heads));
    if (!R.slots || !R.heads)
        return -1;
    for (unsigned i = 0; i < R.nbuckets; i++)
        R.heads[i] = -1;
    if (!(R.base = event_base_new()) || !(R.http = evhttp_new(R.base)))
        return -1;
    evhttp_set_allowed_methods(R.http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_timeout(R.http, 10);
    evhttp_set_gencb(R.http, resp_cb, NULL);
    if (evhttp_bind_socket(R.http, "127.0.0.1", (ev_uint16_t)port) != 0) {
        fprintf(stderr, "acme-load: cannot listen on 127.0.0.1:%u for http-01: %s\n", port,
                strerror(errno));
        return -1;
    }
    if (pthread_create(&R.thr, NULL, resp_main, NULL) != 0)
        return -1;
    return 0;
}

static void resp_stop(void)
{
    event_base_loopexit(R.base, NULL);
    pthread_join(R.thr, NULL);
    evhttp_free(R.http);
    event_base_free(R.base);
    free(R.slots);
    free(R.heads);
}

/* ------------------------------------------------------------ results */

typedef struct lg_stats {
    bench_hist h[LG_STEP__MAX];
    uint64_t ok, ok_in_window, failed, requests, nonce_heads, nonce_retries, retry_after_seen;
    uint64_t t_last_ok;
    struct {
        char name[64];
        uint64_t n;
    } err[LG_MAX_ERRNAMES];
    unsigned nerr;
    uint64_t err_other;
    char first_err[300]; /* the first failure's detail, for the report */
} lg_stats;

static void stats_errn(lg_stats *s, const char *name, uint64_t n)
{
    for (unsigned i = 0; i < s->nerr; i++)
        if (strcmp(s->err[i].name, name) == 0) {
            s->err[i].n += n;
            return;
        }
    if (s->nerr == LG_MAX_ERRNAMES) {
        s->err_other += n;
        return;
    }
    snprintf(s->err[s->nerr].name, sizeof(s->err[0].name), "%s", name);
    s->err[s->nerr++].n = n;
}

static void stats_err(lg_stats *s, const char *name)
{
    stats_errn(s, name, 1);
}

/* ------------------------------------------------------------ clients */

typedef struct lg_worker lg_worker;
typedef struct lg_client lg_client;
typedef struct lg_resp {
    int code;
    const char *nonce, *location, *retry_after, *ctype;
    const char *body;
    size_t body_len;
    json_t *json; /* the body when it is JSON, else NULL */
} lg_resp;
typedef void (*lg_on_resp)(lg_client *c, lg_resp *r);
typedef void (*lg_stepfn)(lg_client *c);

struct lg_client {
    lg_worker *w;
    unsigned idx;
    EVP_PKEY *key, *csr_key;
    uint8_t *spki; /* the CSR key's SubjectPublicKeyInfo, DER, made once */
    size_t spki_len;
    json_t *jwk;
    char thumb[44];
    char kid[LG_URL_MAX];
    struct evhttp_connection *conn;
    SSL *ssl;
    char nonce[160];
    /* the request in flight: what to redo with a fresh nonce */
    lg_stepfn step;
    lg_on_resp on_resp;
    unsigned nonce_tries;
    uint64_t t_req;
    bool registered, stopped, in_flow;
    /* the flow */
    unsigned long iter;
    char name[128];
    char order[LG_URL_MAX], authz[LG_URL_MAX], chall[LG_URL_MAX], finalize[LG_URL_MAX],
        cert[LG_URL_MAX];
    uint64_t t_flow, t_step;
    struct event *timer;
    lg_stepfn after_timer;
    bool conn_dead, nodelay;
};

struct lg_worker {
    unsigned id;
    pthread_t thr;
    struct event_base *base;
    lg_client *clients;
    unsigned n, active, registered;
    lg_stats st;
    bool setup_failed;
};

static lg_worker *g_workers;
static pthread_barrier_t g_go;

static void flow_start(lg_client *c);
static void client_stop(lg_client *c);

/* "https://host:port/x" → "/x" when it is on the directory's origin */
static const char *url_path(const char *url)
{
    size_t n = strlen(G.origin);
    if (strncmp(url, G.origin, n) != 0 || url[n] != '/')
        return NULL;
    return url + n;
}

static int conn_new(lg_client *c)
{
    SSL *ssl = SSL_new(g_ssl);
    if (!ssl)
        return -1;
    SSL_set_tlsext_host_name(ssl, G.host);
    if (SSL_set1_host(ssl, G.host) != 1) {
        SSL_free(ssl);
        return -1;
    }
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(c->w->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                       BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!bev) {
        SSL_free(ssl);
        return -1;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    c->conn = evhttp_connection_base_bufferevent_new(c->w->base, NULL, bev, G.connect_ip,
                                                     (ev_uint16_t)G.connect_port);
    if (!c->conn) {
        bufferevent_free(bev);
        return -1;
    }
    c->ssl = ssl;
    evhttp_connection_set_timeout(c->conn, LG_REQ_TIMEOUT_S);
    evhttp_connection_set_retries(c->conn, 0);
    evhttp_connection_set_max_body_size(c->conn, LG_MAX_BODY);
    evhttp_connection_set_max_headers_size(c->conn, 64 * 1024);
    c->conn_dead = false;
    c->nodelay = false;
    return 0;
}

/* A failed flow: count it, drop what the flow held, start the next one
 * (on a new connection if this one broke). */
static void flow_fail(lg_client *c, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    lg_client *c = arg;
    if (c->conn_dead) {
        /* freed here, outside the connection's own callbacks */
        evhttp_connection_free(c->conn);
        c->conn = NULL;
        c->ssl = NULL;
        if (conn_new(c) != 0) {
            stats_err(&c->w->st, "client: cannot make a connection");
            client_stop(c);
            return;
        }
    }
    lg_stepfn f = c->after_timer;
    c->after_timer = NULL;
    f(c);
}

static void after(lg_client *c, uint64_t ms, lg_stepfn f)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    c->after_timer = f;
    evtimer_add(c->timer, &tv);
}

static void flow_fail(lg_client *c, const char *type, const char *fmt, ...)
{
    lg_stats *s = &c->w->st;
    stats_err(s, type);
    if (!s->first_err[0]) {
        va_list ap;
        va_start(ap, fmt);
        int k = snprintf(s->first_err, sizeof(s->first_err), "client %u, %s: ", c->idx, c->name);
        if (k > 0 && (size_t)k < sizeof(s->first_err))
            vsnprintf(s->first_err + k, sizeof(s->first_err) - (size_t)k, fmt, ap);
        va_end(ap);
    }
    resp_del(c->idx);
    if (!c->registered) { /* set-up: the run cannot go on */
        c->w->setup_failed = true;
        client_stop(c);
        return;
    }
    s->failed++;
    c->in_flow = false;
    after(c, c->conn_dead ? 100 : 0, flow_start);
}

static void http_done(struct evhttp_request *req, void *arg);

static int send_req(lg_client *c, enum evhttp_cmd_type cmd, const char *url, const char *body,
                    size_t len, lg_on_resp on)
{
    const char *path = url_path(url);
    if (!path) {
        flow_fail(c, "client: URL off the directory's origin", "%s is not under %s", url, G.origin);
        return -1;
    }
    struct evhttp_request *req = evhttp_request_new(http_done, c);
    if (!req) {
        flow_fail(c, "client: out of memory", "evhttp_request_new");
        return -1;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Host", G.hosthdr);
    evhttp_add_header(h, "User-Agent", "certforge-acme-load");
    if (body) {
        evhttp_add_header(h, "Content-Type", "application/jose+json");
        evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
    }
    c->on_resp = on;
    c->t_req = now_ns();
    c->w->st.requests++;
    if (evhttp_make_request(c->conn, req, cmd, path) != 0) {
        /* evhttp freed req */
        c->conn_dead = true;
        flow_fail(c, "transport", "cannot send the request");
        return -1;
    }
    if (!c->nodelay) {
        /* evhttp made the socket just now (connect is started inside
         * evhttp_make_request). Without TCP_NODELAY the body's TLS record
         * waits for the ACK of the headers' record: 40 ms of delayed ACK
         * per request. */
        evutil_socket_t fd = bufferevent_getfd(evhttp_connection_get_bufferevent(c->conn));
        int one = 1;
        if (fd >= 0 && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0)
            c->nodelay = true;
    }
    return 0;
}

static void got_nonce(lg_client *c, lg_resp *r)
{
    if (!c->nonce[0]) {
        flow_fail(c, "client: no Replay-Nonce from newNonce",
                  "HEAD newNonce answered %d without a nonce", r->code);
        return;
    }
    c->step(c);
}

/* POST a JWS (payload NULL: POST-as-GET) to url; on(c, answer). Asks
 * newNonce first when the client holds no nonce. */
static void post(lg_client *c, const char *url, json_t *payload /* stolen */, bool use_jwk,
                 lg_on_resp on)
{
    if (!c->nonce[0]) {
        json_decref(payload);
        c->w->st.nonce_heads++;
        send_req(c, EVHTTP_REQ_HEAD, g_new_nonce, NULL, 0, got_nonce);
        return;
    }
    json_t *hdr = json_pack("{s:s, s:s}", "nonce", c->nonce, "url", url);
    char *pl = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
    json_decref(payload);
    if (!hdr || (payload && !pl)) {
        json_decref(hdr);
        free(pl);
        flow_fail(c, "client: out of memory", "JWS header");
        return;
    }
    if (use_jwk)
        json_object_set(hdr, "jwk", c->jwk);
    else
        json_object_set_new(hdr, "kid", json_string(c->kid));
    char *jws = acme_jws_sign(c->key, hdr, (const uint8_t *)pl, pl ? strlen(pl) : 0);
    json_decref(hdr);
    free(pl);
    if (!jws) {
        flow_fail(c, "client: acme_jws_sign failed", "signing");
        return;
    }
    c->nonce[0] = '\0'; /* used */
    send_req(c, EVHTTP_REQ_POST, url, jws, strlen(jws), on);
    free(jws);
}

static const char *problem_type(const lg_resp *r)
{
    static const char pfx[] = "urn:ietf:params:acme:error:";
    const char *t = json_string_value(json_object_get(r->json, "type"));
    if (!t)
        return NULL;
    return strncmp(t, pfx, sizeof(pfx) - 1) == 0 ? t + sizeof(pfx) - 1 : t;
}

static void http_done(struct evhttp_request *req, void *arg)
{
    lg_client *c = arg;
    lg_stats *s = &c->w->st;
    if (!req || evhttp_request_get_response_code(req) == 0) {
        char why[400] = "connection failed or closed";
        long vr = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
        if (vr != X509_V_OK)
            snprintf(why, sizeof(why), "TLS: certificate of %s: %s (is --ca the right root?)",
                     G.host, X509_verify_cert_error_string(vr));
        c->conn_dead = true;
        flow_fail(c, vr != X509_V_OK ? "tls" : "transport", "%s", why);
        return;
    }
    lg_resp r = {.code = evhttp_request_get_response_code(req)};
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    r.nonce = evhttp_find_header(h, "Replay-Nonce");
    r.location = evhttp_find_header(h, "Location");
    r.retry_after = evhttp_find_header(h, "Retry-After");
    r.ctype = evhttp_find_header(h, "Content-Type");
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    r.body_len = evbuffer_get_length(in);
    r.body = r.body_len ? (const char *)evbuffer_pullup(in, -1) : "";
    if (r.nonce)
        snprintf(c->nonce, sizeof(c->nonce), "%s", r.nonce);
    if (r.ctype && (strstr(r.ctype, "json") != NULL))
        r.json = json_loadb(r.body, r.body_len, 0, NULL);
    const char *pt = r.code >= 400 ? problem_type(&r) : NULL;
    if (pt && strcmp(pt, "badNonce") == 0 && c->nonce_tries < LG_NONCE_RETRIES && c->nonce[0]) {
        /* RFC 8555 §6.5: retry with the nonce of the badNonce answer */
        c->nonce_tries++;
        s->nonce_retries++;
        json_decref(r.json);
        c->step(c);
        return;
    }
    if (r.code >= 400 && c->on_resp != got_nonce) {
        const char *d = json_string_value(json_object_get(r.json, "detail"));
        char type[64];
        if (pt)
            snprintf(type, sizeof(type), "%s", pt);
        else
            snprintf(type, sizeof(type), "HTTP %d", r.code);
        flow_fail(c, type, "HTTP %d %s: %s", r.code, pt ? pt : "", d ? d : "");
        json_decref(r.json);
        return;
    }
    c->nonce_tries = 0;
    lg_on_resp on = c->on_resp;
    on(c, &r);
    json_decref(r.json);
}

static void rec(lg_client *c, lg_step step, uint64_t from, uint64_t to)
{
    bench_hist_record(&c->w->st.h[step], to - from);
}

/* How long to wait before polling again: Retry-After (delta-seconds,
 * RFC 9110 §10.2.3) when the answer has one, else --poll-ms. */
static uint64_t poll_ms(lg_client *c, const lg_resp *r)
{
    if (r->retry_after) {
        char *end;
        unsigned long v = strtoul(r->retry_after, &end, 10);
        if (end != r->retry_after && *end == '\0' && v <= 3600) {
            c->w->st.retry_after_seen++;
            return v * 1000;
        }
    }
    return G.poll_ms;
}

static const char *jstr(const json_t *j, const char *k)
{
    return json_string_value(json_object_get(j, k));
}

/* ------------------------------------------------------------ the flow */

static void step_new_order(lg_client *c);
static void step_authz(lg_client *c);
static void step_chall(lg_client *c);
static void step_poll_authz(lg_client *c);
static void step_finalize(lg_client *c);
static void step_poll_order(lg_client *c);
static void step_cert(lg_client *c);

static void flow_start(lg_client *c)
{
    uint64_t t = now_ns();
    if (atomic_load(&g_abort) || (G.duration > 0 && t >= g_t_end) ||
        (G.duration <= 0 && atomic_fetch_add(&g_started, 1) >= G.issuances)) {
        client_stop(c);
        return;
    }
    c->iter++;
    snprintf(c->name, sizeof(c->name), "r%s-c%u-i%lu.%s", g_run, c->idx, c->iter, G.domain);
    c->order[0] = c->authz[0] = c->chall[0] = c->finalize[0] = c->cert[0] = '\0';
    c->in_flow = true;
    c->t_flow = t;
    c->step = step_new_order;
    step_new_order(c);
}

static bool flow_late(lg_client *c)
{
    if (now_ns() - c->t_flow <= LG_FLOW_TIMEOUT_NS)
        return false;
    flow_fail(c, "client: flow timed out", "no certificate after %llu s",
              LG_FLOW_TIMEOUT_NS / 1000000000ull);
    return true;
}

static void on_new_order(lg_client *c, lg_resp *r)
{
    rec(c, LG_NEW_ORDER, c->t_req, now_ns());
    json_t *az = json_object_get(r->json, "authorizations");
    const char *a0 = json_string_value(json_array_get(az, 0));
    const char *fin = jstr(r->json, "finalize");
    if (r->code != 201 || !r->location || !a0 || json_array_size(az) != 1 || !fin) {
        flow_fail(c, "client: bad newOrder answer", "HTTP %d, Location %s, %zu authorizations",
                  r->code, r->location ? r->location : "none", json_array_size(az));
        return;
    }
    snprintf(c->order, sizeof(c->order), "%s", r->location);
    snprintf(c->authz, sizeof(c->authz), "%s", a0);
    snprintf(c->finalize, sizeof(c->finalize), "%s", fin);
    c->step = step_authz;
    step_authz(c);
}

/* RFC 3339 UTC, whole seconds */
static void rfc3339(time_t t, char *out, size_t cap)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void step_new_order(lg_client *c)
{
    json_t *p = json_pack("{s:[{s:s, s:s}]}", "identifiers", "type", "dns", "value", c->name);
    if (p && G.profile)
        json_object_set_new(p, "profile", json_string(G.profile));
    if (p && G.star_lifetime) {
        char end[32];
        rfc3339(time(NULL) + (time_t)G.star_end, end, sizeof(end));
        json_object_set_new(p, "auto-renewal",
                            json_pack("{s:s, s:i, s:i, s:b}", "end-date", end, "lifetime",
                                      (int)G.star_lifetime, "lifetime-adjust", (int)G.star_adjust,
                                      "allow-certificate-get", 1));
    }
    post(c, g_new_order, p, false, on_new_order);
}

static void on_authz(lg_client *c, lg_resp *r)
{
    rec(c, LG_AUTHZ, c->t_req, now_ns());
    const char *st = jstr(r->json, "status");
    json_t *chs = json_object_get(r->json, "challenges");
    size_t i;
    json_t *ch;
    const char *url = NULL, *tok = NULL;
    json_array_foreach(chs, i, ch)
    {
        const char *t = jstr(ch, "type");
        if (t && strcmp(t, "http-01") == 0) {
            url = jstr(ch, "url");
            tok = jstr(ch, "token");
        }
    }
    if (!st || strcmp(st, "pending") != 0 || !url || !tok ||
        strlen(tok) >= sizeof(((lg_slot *)0)->token)) {
        flow_fail(c, "client: bad authorization", "status %s, http-01 %s", st ? st : "none",
                  url ? "offered" : "missing");
        return;
    }
    char ka[192];
    snprintf(ka, sizeof(ka), "%s.%s", tok, c->thumb);
    resp_put(c->idx, tok, ka);
    snprintf(c->chall, sizeof(c->chall), "%s", url);
    c->step = step_chall;
    step_chall(c);
}

static void step_authz(lg_client *c)
{
    post(c, c->authz, NULL, false, on_authz);
}

static void on_chall(lg_client *c, lg_resp *r)
{
    uint64_t t = now_ns();
    rec(c, LG_CHALL, c->t_req, t);
    const char *st = jstr(r->json, "status");
    if (!st || strcmp(st, "invalid") == 0) {
        flow_fail(c, "client: challenge refused", "challenge status %s", st ? st : "none");
        return;
    }
    c->t_step = t;
    c->step = step_poll_authz;
    after(c, poll_ms(c, r), step_poll_authz);
}

static void step_chall(lg_client *c)
{
    post(c, c->chall, json_object(), false, on_chall);
}

static void on_poll_authz(lg_client *c, lg_resp *r)
{
    const char *st = jstr(r->json, "status");
    if (st && strcmp(st, "valid") == 0) {
        rec(c, LG_VALWAIT, c->t_step, now_ns());
        resp_del(c->idx);
        c->step = step_finalize;
        step_finalize(c);
        return;
    }
    if (!st || strcmp(st, "pending") != 0) {
        /* the challenge's error names the validation's problem */
        json_t *ch = json_array_get(json_object_get(r->json, "challenges"), 0);
        const char *et = jstr(json_object_get(ch, "error"), "type");
        char type[96];
        snprintf(type, sizeof(type), "authorization %s%s%s", st ? st : "?", et ? ": " : "",
                 et ? (strrchr(et, ':') ? strrchr(et, ':') + 1 : et) : "");
        flow_fail(c, type, "authorization %s: %s", st ? st : "?",
                  jstr(json_object_get(ch, "error"), "detail")
                      ? jstr(json_object_get(ch, "error"), "detail")
                      : "");
        return;
    }
    if (flow_late(c))
        return;
    after(c, poll_ms(c, r), step_poll_authz);
}

static void step_poll_authz(lg_client *c)
{
    c->step = step_poll_authz;
    post(c, c->authz, NULL, false, on_poll_authz);
}

/* The CSR and the certificate are written and read with the engine's DER
 * module, not OpenSSL's X509 objects: in OpenSSL 3.0 X509_REQ_set_pubkey
 * and every d2i of a certificate run the encoder/decoder framework on the
 * public key, which measured ~half of the generator's CPU (perf, 150
 * clients) — CPU this process takes from the server it measures. The
 * signature is still OpenSSL's (EVP_DigestSign). */
static const uint8_t OID_CN[] = {0x55, 0x04, 0x03};
static const uint8_t OID_SAN[] = {0x55, 0x1D, 0x11};
static const uint8_t OID_EXT_REQ[] = {0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x0E};
static const uint8_t OID_ECDSA_SHA256[] = {0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02};

/* A DER CSR (RFC 2986) for the flow's name — subject CN and one SAN
 * dNSName — with the client's P-256 key, base64url. */
static char *make_csr(lg_client *c)
{
    uint8_t gn[300], cri[1024], csr[1200], sig[80];
    size_t gn_len, cri_len, csr_len, sig_len = sizeof(sig), nl = strlen(c->name);
    der_w w;
    der_w_init(&w, gn, sizeof(gn)); /* GeneralNames, the SAN's contents */
    der_w_begin(&w, DER_SEQUENCE);
    der_w_tlv(&w, DER_CTX(2), c->name, nl);
    der_w_end(&w);
    if (der_w_finish(&w, &gn_len) != DER_OK)
        return NULL;
    der_w_init(&w, cri, sizeof(cri)); /* CertificationRequestInfo */
    der_w_begin(&w, DER_SEQUENCE);
    der_w_uint64(&w, 0);
    der_w_begin(&w, DER_SEQUENCE);
    der_w_begin(&w, DER_SET);
    der_w_begin(&w, DER_SEQUENCE);
    der_w_oid(&w, OID_CN, sizeof(OID_CN));
    der_w_string(&w, DER_UTF8_STRING, c->name, nl);
    der_w_end(&w);
    der_w_end(&w);
    der_w_end(&w);
    der_w_raw(&w, c->spki, c->spki_len);
    der_w_begin(&w, DER_CTX_CONS(0)); /* attributes: extensionRequest { SAN } */
    der_w_begin(&w, DER_SEQUENCE);
    der_w_oid(&w, OID_EXT_REQ, sizeof(OID_EXT_REQ));
    der_w_begin(&w, DER_SET);
    der_w_begin(&w, DER_SEQUENCE);
    der_w_begin(&w, DER_SEQUENCE);
    der_w_oid(&w, OID_SAN, sizeof(OID_SAN));
    der_w_octets(&w, gn, gn_len);
    der_w_end(&w);
    der_w_end(&w);
    der_w_end(&w);
    der_w_end(&w);
    der_w_end(&w);
    der_w_end(&w);
    if (der_w_finish(&w, &cri_len) != DER_OK)
        return NULL;
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    int ok = m && EVP_DigestSignInit(m, NULL, EVP_sha256(), NULL, c->csr_key) == 1 &&
             EVP_DigestSign(m, sig, &sig_len, cri, cri_len) == 1;
    EVP_MD_CTX_free(m);
    if (!ok)
        return NULL;
    der_w_init(&w, csr, sizeof(csr));
    der_w_begin(&w, DER_SEQUENCE);
    der_w_raw(&w, cri, cri_len);
    der_w_begin(&w, DER_SEQUENCE);
    der_w_oid(&w, OID_ECDSA_SHA256, sizeof(OID_ECDSA_SHA256));
    der_w_end(&w);
    der_w_bits(&w, sig, sig_len);
    der_w_end(&w);
    if (der_w_finish(&w, &csr_len) != DER_OK)
        return NULL;
    size_t cap = acme_b64url_len(csr_len) + 1;
    char *out = malloc(cap);
    if (out && acme_b64url_encode(csr, csr_len, out, cap) == 0) {
        free(out);
        out = NULL;
    }
    return out;
}

/* The first certificate of a PEM chain is well-formed DER (every TLV
 * checked) and has a subjectAltName dNSName equal to name: 1, else 0. */
static int cert_names(const char *pem, size_t len, const char *name)
{
    static const char begin[] = "-----BEGIN CERTIFICATE-----",
                      end_m[] = "-----END CERTIFICATE-----";
    const char *b = memmem(pem, len, begin, sizeof(begin) - 1);
    if (!b)
        return 0;
    b += sizeof(begin) - 1;
    const char *e = memmem(b, len - (size_t)(b - pem), end_m, sizeof(end_m) - 1);
    uint8_t der[8192];
    int n = 0, n2 = 0;
    if (!e || (size_t)(e - b) > sizeof(der) * 4 / 3)
        return 0;
    EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
    int ok = ctx != NULL;
    if (ok) {
        EVP_DecodeInit(ctx);
        ok = EVP_DecodeUpdate(ctx, der, &n, (const unsigned char *)b, (int)(e - b)) >= 0 &&
             EVP_DecodeFinal(ctx, der + n, &n2) == 1;
    }
    EVP_ENCODE_CTX_free(ctx);
    size_t dl = (size_t)(n + n2);
    if (!ok || der_validate(der, dl, 32) != DER_OK)
        return 0;
    der_cur top, cert, tbs, exts, seq;
    der_tlv t, x;
    bool present;
    der_cur_init(&top, der, dl);
    if (der_expect(&top, DER_SEQUENCE, &t) || der_enter(&t, &cert) ||
        der_expect(&cert, DER_SEQUENCE, &t) || der_enter(&t, &tbs) ||
        der_optional(&tbs, DER_CTX_CONS(0), &x, &present))
        return 0;
    /* serial, signature, issuer, validity, subject, spki */
    if (der_expect(&tbs, DER_INTEGER, &x))
        return 0;
    for (int i = 0; i < 5; i++)
        if (der_expect(&tbs, DER_SEQUENCE, &x))
            return 0;
    while (der_next(&tbs, &x) == DER_OK) {
        if (x.tag != DER_CTX_CONS(3))
            continue;
        if (der_enter(&x, &exts) || der_expect(&exts, DER_SEQUENCE, &t) || der_enter(&t, &seq))
            return 0;
        der_tlv ext;
        while (der_next(&seq, &ext) == DER_OK) {
            der_cur ec, gc, gs;
            der_tlv oid, v, g;
            if (der_enter(&ext, &ec) || der_expect(&ec, DER_OID, &oid))
                return 0;
            if (!der_oid_eq(&oid, OID_SAN, sizeof(OID_SAN)))
                continue;
            if (der_optional(&ec, DER_BOOLEAN, &v, &present) ||
                der_expect(&ec, DER_OCTET_STRING, &v))
                return 0;
            der_cur_init(&gc, v.val, v.len);
            if (der_expect(&gc, DER_SEQUENCE, &g) || der_enter(&g, &gs))
                return 0;
            while (der_next(&gs, &g) == DER_OK)
                if (g.tag == DER_CTX(2) && g.len == strlen(name) && memcmp(g.val, name, g.len) == 0)
                    return 1;
            return 0;
        }
    }
    return 0;
}

static void order_status(lg_client *c, lg_resp *r, uint64_t t)
{
    const char *st = jstr(r->json, "status");
    /* RFC 8739 §3.1.2: a valid STAR order has star-certificate instead */
    const char *cert = jstr(r->json, G.star_lifetime ? "star-certificate" : "certificate");
    if (st && strcmp(st, "valid") == 0 && cert) {
        if (c->t_step)
            rec(c, LG_ORDER_POLL, c->t_step, t);
        snprintf(c->cert, sizeof(c->cert), "%s", cert);
        c->step = step_cert;
        step_cert(c);
        return;
    }
    if (!st || (strcmp(st, "processing") != 0 && strcmp(st, "ready") != 0)) {
        const char *et = jstr(json_object_get(r->json, "error"), "type");
        char type[96];
        snprintf(type, sizeof(type), "order %s%s%s", st ? st : "?", et ? ": " : "",
                 et ? (strrchr(et, ':') ? strrchr(et, ':') + 1 : et) : "");
        const char *ed = jstr(json_object_get(r->json, "error"), "detail");
        flow_fail(c, type, "order %s: %s", st ? st : "?", ed ? ed : "");
        return;
    }
    if (!c->t_step)
        c->t_step = t;
    if (flow_late(c))
        return;
    after(c, poll_ms(c, r), step_poll_order);
}

static void on_finalize(lg_client *c, lg_resp *r)
{
    uint64_t t = now_ns();
    rec(c, LG_FINALIZE, c->t_req, t);
    c->t_step = 0; /* order poll: from here, only if still processing */
    order_status(c, r, t);
}

static void step_finalize(lg_client *c)
{
    char *csr = make_csr(c);
    if (!csr) {
        flow_fail(c, "client: cannot make a CSR", "OpenSSL: %s",
                  ERR_reason_error_string(ERR_get_error()));
        return;
    }
    json_t *p = json_pack("{s:s}", "csr", csr);
    free(csr);
    post(c, c->finalize, p, false, on_finalize);
}

static void on_poll_order(lg_client *c, lg_resp *r)
{
    order_status(c, r, now_ns());
}

static void step_poll_order(lg_client *c)
{
    c->step = step_poll_order;
    post(c, c->order, NULL, false, on_poll_order);
}

static void on_cert(lg_client *c, lg_resp *r)
{
    uint64_t t = now_ns();
    rec(c, LG_CERT, c->t_req, t);
    if (r->code != 200 || !cert_names(r->body, r->body_len, c->name)) {
        flow_fail(c, "client: certificate does not parse or name the identifier",
                  "HTTP %d, %zu bytes", r->code, r->body_len);
        return;
    }
    rec(c, LG_FLOW, c->t_flow, t);
    lg_stats *s = &c->w->st;
    s->ok++;
    if (G.duration <= 0 || t <= g_t_end)
        s->ok_in_window++;
    s->t_last_ok = t;
    c->in_flow = false;
    flow_start(c);
}

static void step_cert(lg_client *c)
{
    post(c, c->cert, NULL, false, on_cert);
}

/* ------------------------------------------------------------ registration */

static void step_register(lg_client *c);

static void on_register(lg_client *c, lg_resp *r)
{
    const char *st = jstr(r->json, "status");
    if ((r->code != 201 && r->code != 200) || !r->location || !st || strcmp(st, "valid") != 0) {
        flow_fail(c, "newAccount", "newAccount answered HTTP %d, status %s", r->code,
                  st ? st : "none");
        return;
    }
    snprintf(c->kid, sizeof(c->kid), "%s", r->location);
    c->registered = true;
    lg_worker *w = c->w;
    if (++w->registered == w->n)
        event_base_loopbreak(w->base);
}

static void step_register(lg_client *c)
{
    c->step = step_register;
    post(c, g_new_account, json_pack("{s:b}", "termsOfServiceAgreed", 1), true, on_register);
}

static void client_stop(lg_client *c)
{
    if (c->stopped)
        return;
    c->stopped = true;
    c->in_flow = false;
    lg_worker *w = c->w;
    if (--w->active == 0 || w->setup_failed)
        event_base_loopbreak(w->base);
}

static EVP_PKEY *p256(void)
{
    return EVP_EC_gen("P-256");
}

static int client_init(lg_worker *w, lg_client *c, unsigned idx)
{
    c->w = w;
    c->idx = idx;
    int n;
    if (!(c->key = p256()) || !(c->csr_key = p256()) || (n = i2d_PUBKEY(c->csr_key, &c->spki)) <= 0)
        return -1;
    c->spki_len = (size_t)n;
    if (!(c->jwk = acme_jwk_from_pkey(c->key)) || acme_jwk_thumbprint(c->jwk, c->thumb) != 0 ||
        !(c->timer = evtimer_new(w->base, timer_cb, c)) || conn_new(c) != 0)
        return -1;
    return 0;
}

static void client_free(lg_client *c)
{
    if (c->timer)
        event_free(c->timer);
    if (c->conn)
        evhttp_connection_free(c->conn);
    EVP_PKEY_free(c->key);
    EVP_PKEY_free(c->csr_key);
    OPENSSL_free(c->spki);
    json_decref(c->jwk);
}

static void *worker_main(void *arg)
{
    lg_worker *w = arg;
    char nm[16];
    snprintf(nm, sizeof(nm), "lg-load/%u", w->id);
    pthread_setname_np(pthread_self(), nm);
    /* register every account (not counted) */
    w->active = w->n;
    for (unsigned i = 0; i < w->n; i++)
        step_register(&w->clients[i]);
    if (w->n)
        event_base_dispatch(w->base);
    if (w->setup_failed || w->registered != w->n) {
        w->setup_failed = true;
        atomic_store(&g_abort, 1);
    }
    pthread_barrier_wait(&g_go); /* all registered */
    pthread_barrier_wait(&g_go); /* main set the clock */
    if (atomic_load(&g_abort))
        return NULL;
    for (unsigned i = 0; i < w->n; i++)
        flow_start(&w->clients[i]);
    while (w->active > 0)
        if (event_base_loop(w->base, EVLOOP_ONCE) < 0)
            break;
    return NULL;
}

/* ------------------------------------------------------------ directory */

typedef struct dir_fetch {
    struct event_base *base;
    int code;
    char *body;
    size_t len;
    long verify;
    SSL *ssl;
} dir_fetch;

static void dir_done(struct evhttp_request *req, void *arg)
{
    dir_fetch *d = arg;
    d->verify = SSL_get_verify_result(d->ssl);
    if (req && (d->code = evhttp_request_get_response_code(req)) != 0) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        d->len = evbuffer_get_length(in);
        if ((d->body = malloc(d->len + 1))) {
            evbuffer_copyout(in, d->body, d->len);
            d->body[d->len] = '\0';
        }
    }
    event_base_loopbreak(d->base);
}

static int fetch_directory(void)
{
    dir_fetch d = {0};
    int rc = -1;
    struct evhttp_connection *conn = NULL;
    if (!(d.base = event_base_new()) || !(d.ssl = SSL_new(g_ssl)))
        goto out;
    SSL_set_tlsext_host_name(d.ssl, G.host);
    SSL_set1_host(d.ssl, G.host);
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        d.base, -1, d.ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev)
        SSL_up_ref(d.ssl); /* the bufferevent frees its own reference */
    if (!bev || !(conn = evhttp_connection_base_bufferevent_new(d.base, NULL, bev, G.connect_ip,
                                                                (ev_uint16_t)G.connect_port)))
        goto out;
    evhttp_connection_set_timeout(conn, 10);
    struct evhttp_request *req = evhttp_request_new(dir_done, &d);
    if (!req)
        goto out;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Host", G.hosthdr);
    if (evhttp_make_request(conn, req, EVHTTP_REQ_GET, G.dir_path) != 0)
        goto out;
    event_base_dispatch(d.base);
    if (d.code == 0) {
        if (d.verify != X509_V_OK)
            fprintf(stderr,
                    "acme-load: TLS to %s:%u: certificate of %s: %s (is --ca the right root?)\n",
                    G.connect_ip, G.connect_port, G.host, X509_verify_cert_error_string(d.verify));
        else
            fprintf(stderr, "acme-load: cannot reach %s:%u (TLS handshake or connection failed)\n",
                    G.connect_ip, G.connect_port);
        goto out;
    }
    json_t *j = d.code == 200 ? json_loadb(d.body ? d.body : "", d.len, 0, NULL) : NULL;
    const char *nn = jstr(j, "newNonce"), *na = jstr(j, "newAccount"), *no = jstr(j, "newOrder");
    if (!nn || !na || !no || !url_path(nn) || !url_path(na) || !url_path(no)) {
        fprintf(stderr, "acme-load: %s is no ACME directory on %s (HTTP %d)\n", G.directory,
                G.origin, d.code);
        json_decref(j);
        goto out;
    }
    snprintf(g_new_nonce, sizeof(g_new_nonce), "%s", nn);
    snprintf(g_new_account, sizeof(g_new_account), "%s", na);
    snprintf(g_new_order, sizeof(g_new_order), "%s", no);
    json_decref(j);
    rc = 0;
out:
    if (conn)
        evhttp_connection_free(conn);
    if (d.ssl)
        SSL_free(d.ssl);
    if (d.base)
        event_base_free(d.base);
    free(d.body);
    return rc;
}

/* ------------------------------------------------------------ CPU by thread */

/* --cpu PID,...: every thread's utime+stime (/proc/PID/task/TID/stat) at
 * the start and the end of the measured window, this process included;
 * reported per process and thread name as cores (CPU seconds / window). */
static int parse_uint(const char *opt, const char *s, unsigned long lo, unsigned long hi,
                      unsigned long *out);
#define LG_MAX_PIDS 8
#define LG_MAX_TASKS 4096

typedef struct lg_task {
    int pid, tid;
    char name[20];
    uint64_t ticks;
} lg_task;

typedef struct lg_cpu_row {
    int pid;
    char proc[20], name[20];
    double cores;
} lg_cpu_row;

static int g_pids[LG_MAX_PIDS];
static unsigned g_npids;
static lg_task *g_cpu0, *g_cpu1;
static unsigned g_ncpu0, g_ncpu1;
static double g_cpu_window;

static void proc_comm(int pid, char *out, size_t cap)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/comm", pid);
    FILE *f = fopen(path, "r");
    out[0] = '\0';
    if (f) {
        if (fgets(out, (int)cap, f))
            out[strcspn(out, "\n")] = '\0';
        fclose(f);
    }
    if (!out[0])
        snprintf(out, cap, "pid %d", pid);
}

static unsigned cpu_sample(lg_task *out)
{
    unsigned n = 0;
    for (unsigned p = 0; p < g_npids; p++) {
        char dir[64];
        snprintf(dir, sizeof(dir), "/proc/%d/task", g_pids[p]);
        DIR *d = opendir(dir);
        if (!d)
            continue;
        struct dirent *e;
        while ((e = readdir(d)) != NULL && n < LG_MAX_TASKS) {
            if (e->d_name[0] < '0' || e->d_name[0] > '9')
                continue;
            char path[400], buf[512];
            snprintf(path, sizeof(path), "%s/%s/stat", dir, e->d_name);
            FILE *f = fopen(path, "r");
            if (!f)
                continue;
            size_t k = fread(buf, 1, sizeof(buf) - 1, f);
            fclose(f);
            buf[k] = '\0';
            /* "tid (comm) state ..." — comm may hold spaces and ')' */
            char *l = strchr(buf, '('), *r = strrchr(buf, ')');
            if (!l || !r || r < l)
                continue;
            unsigned long long ut, st;
            if (sscanf(r + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) !=
                2)
                continue;
            lg_task *t = &out[n++];
            t->pid = g_pids[p];
            t->tid = atoi(e->d_name);
            snprintf(t->name, sizeof(t->name), "%.*s", (int)(r - l - 1), l + 1);
            t->ticks = ut + st;
        }
        closedir(d);
    }
    return n;
}

/* Rows per (process, thread name), cores over the window, largest first. */
static unsigned cpu_rows(lg_cpu_row *rows, unsigned cap)
{
    unsigned n = 0;
    double hz = (double)sysconf(_SC_CLK_TCK);
    for (unsigned i = 0; i < g_ncpu1; i++) {
        const lg_task *t = &g_cpu1[i];
        uint64_t before = 0;
        for (unsigned k = 0; k < g_ncpu0; k++)
            if (g_cpu0[k].tid == t->tid && g_cpu0[k].pid == t->pid) {
                before = g_cpu0[k].ticks;
                break;
            }
        double cores = (double)(t->ticks - before) / hz / g_cpu_window;
        unsigned r = 0;
        while (r < n && !(rows[r].pid == t->pid && strcmp(rows[r].name, t->name) == 0))
            r++;
        if (r == n) {
            if (n == cap)
                continue;
            rows[n].pid = t->pid;
            snprintf(rows[n].name, sizeof(rows[n].name), "%s", t->name);
            proc_comm(t->pid, rows[n].proc, sizeof(rows[n].proc));
            rows[n].cores = 0;
            n++;
        }
        rows[r].cores += cores;
    }
    for (unsigned i = 1; i < n; i++) /* insertion sort: a few dozen rows */
        for (unsigned k = i; k > 0 && rows[k].cores > rows[k - 1].cores; k--) {
            lg_cpu_row tmp = rows[k];
            rows[k] = rows[k - 1];
            rows[k - 1] = tmp;
        }
    return n;
}

static int parse_pids(const char *s)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", s);
    for (char *sp, *tok = strtok_r(buf, ",", &sp); tok; tok = strtok_r(NULL, ",", &sp)) {
        unsigned long v;
        if (g_npids == LG_MAX_PIDS - 1) {
            fprintf(stderr, "acme-load: --cpu: at most %d processes\n", LG_MAX_PIDS - 1);
            return -1;
        }
        if (parse_uint("--cpu", tok, 1, INT_MAX, &v) != 0)
            return -1;
        char path[64];
        snprintf(path, sizeof(path), "/proc/%lu/task", v);
        if (access(path, R_OK) != 0) {
            fprintf(stderr, "acme-load: --cpu: no process %lu\n", v);
            return -1;
        }
        g_pids[g_npids++] = (int)v;
    }
    return 0;
}

/* ------------------------------------------------------------ report */

static void merge(lg_stats *acc)
{
    memset(acc, 0, sizeof(*acc));
    for (unsigned i = 0; i < G.threads; i++) {
        lg_stats *s = &g_workers[i].st;
        acc->ok += s->ok;
        acc->ok_in_window += s->ok_in_window;
        acc->failed += s->failed;
        acc->requests += s->requests;
        acc->nonce_heads += s->nonce_heads;
        acc->nonce_retries += s->nonce_retries;
        acc->retry_after_seen += s->retry_after_seen;
        acc->err_other += s->err_other;
        if (s->t_last_ok > acc->t_last_ok)
            acc->t_last_ok = s->t_last_ok;
        if (!acc->first_err[0])
            memcpy(acc->first_err, s->first_err, sizeof(acc->first_err));
        for (unsigned e = 0; e < s->nerr; e++)
            stats_errn(acc, s->err[e].name, s->err[e].n);
    }
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static void report(const lg_stats *s, const bench_hist_snap *snaps, double seconds, double rate,
                   uint64_t reg_ns)
{
    double rpi = s->ok ? (double)s->requests / (double)s->ok : 0;
    if (!G.quiet) {
        printf("acme-load %s: %s via %s:%u, %u clients on %u threads, %s %.*f%s\n", G.label,
               G.directory, G.connect_ip, G.connect_port, G.clients, G.threads,
               G.duration > 0 ? "duration" : "issuances", G.duration > 0 ? 1 : 0,
               G.duration > 0 ? G.duration : (double)G.issuances, G.duration > 0 ? " s" : "");
        printf("  polling: Retry-After when the answer has one (seen %llu times), else %u ms\n",
               (unsigned long long)s->retry_after_seen, G.poll_ms);
        printf("  accounts registered in %.2f s (not counted)\n", (double)reg_ns / 1e9);
        printf("  complete issuances: %llu in %.2f s = %.1f/s (%llu more finished after the "
               "window); failed flows: %llu\n",
               (unsigned long long)s->ok_in_window, seconds, rate,
               (unsigned long long)(s->ok - s->ok_in_window), (unsigned long long)s->failed);
        printf("  requests per issuance: %.2f (HEAD newNonce %llu, badNonce retried %llu); http-01 "
               "answered %llu, "
               "unknown tokens %llu\n",
               rpi, (unsigned long long)s->nonce_heads, (unsigned long long)s->nonce_retries,
               (unsigned long long)atomic_load(&R.hits),
               (unsigned long long)atomic_load(&R.misses));
        if (s->nerr) {
            printf("  errors:");
            for (unsigned e = 0; e < s->nerr; e++)
                printf(" %s=%llu", s->err[e].name, (unsigned long long)s->err[e].n);
            printf("\n  first: %s\n", s->first_err);
        }
        printf("  %-12s %8s %9s %9s %9s %9s\n", "step (ms)", "n", "p50", "p90", "p99", "max");
        for (int i = 0; i < LG_STEP__MAX; i++) {
            const bench_hist_snap *h = &snaps[i];
            printf("  %-12s %8llu %9.2f %9.2f %9.2f %9.2f\n", STEP_NAMES[i],
                   (unsigned long long)h->n, ms(bench_hist_quantile(h, 0.5)),
                   ms(bench_hist_quantile(h, 0.9)), ms(bench_hist_quantile(h, 0.99)),
                   ms(h->max_ns));
        }
    }
    lg_cpu_row rows[128];
    unsigned nrows = g_cpu1 ? cpu_rows(rows, 128) : 0;
    if (!G.quiet && nrows) {
        printf("  CPU over the window (cores):\n");
        for (unsigned i = 0; i < nrows; i++)
            printf("    %-16s %-18s %5.2f\n", rows[i].proc, rows[i].name, rows[i].cores);
    }
    if (!G.json)
        return;
    json_t *errs = json_object(), *steps = json_object();
    for (unsigned e = 0; e < s->nerr; e++)
        json_object_set_new(errs, s->err[e].name, json_integer((json_int_t)s->err[e].n));
    if (s->err_other)
        json_object_set_new(errs, "other", json_integer((json_int_t)s->err_other));
    for (int i = 0; i < LG_STEP__MAX; i++) {
        const bench_hist_snap *h = &snaps[i];
        json_object_set_new(steps, STEP_NAMES[i],
                            json_pack("{s:I, s:f, s:f, s:f, s:f}", "n", (json_int_t)h->n, "p50_ms",
                                      ms(bench_hist_quantile(h, 0.5)), "p90_ms",
                                      ms(bench_hist_quantile(h, 0.9)), "p99_ms",
                                      ms(bench_hist_quantile(h, 0.99)), "max_ms", ms(h->max_ns)));
    }
    json_t *j = json_pack(
        "{s:s, s:s, s:i, s:i, s:f, s:I, s:f, s:I, s:I, s:f, s:I, s:I, s:f, s:I, s:I, "
        "s:{s:i, s:I}, s:{s:I, s:I}, s:o, s:o}",
        "label", G.label, "directory", G.directory, "clients", (int)G.clients, "threads",
        (int)G.threads, "duration_s", G.duration, "issuances_target", (json_int_t)G.issuances,
        "seconds", seconds, "issuances", (json_int_t)s->ok_in_window, "issuances_after_window",
        (json_int_t)(s->ok - s->ok_in_window), "rate", rate, "failed", (json_int_t)s->failed,
        "requests", (json_int_t)s->requests, "requests_per_issuance", rpi, "nonce_heads",
        (json_int_t)s->nonce_heads, "nonce_retries", (json_int_t)s->nonce_retries, "poll",
        "fixed_ms", (int)G.poll_ms, "retry_after_seen", (json_int_t)s->retry_after_seen, "http01",
        "answered", (json_int_t)atomic_load(&R.hits), "unknown", (json_int_t)atomic_load(&R.misses),
        "errors", errs, "steps", steps);
    if (j) /* when the server stopped answering (a deadlock): the rate until then */
        json_object_set_new(
            j, "last_ok_s",
            json_real(s->t_last_ok > g_t0 ? (double)(s->t_last_ok - g_t0) / 1e9 : 0.0));
    struct rusage ru;
    if (j && getrusage(RUSAGE_SELF, &ru) == 0) /* the whole run, set-up included */
        json_object_set_new(
            j, "cpu_self_s",
            json_real((double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                      (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6));
    if (j)
        json_object_set_new(j, "accounts_s", json_real((double)reg_ns / 1e9));
    if (j && G.star_lifetime)
        json_object_set_new(j, "star",
                            json_pack("{s:i, s:i, s:I}", "lifetime", (int)G.star_lifetime, "adjust",
                                      (int)G.star_adjust, "end_s", (json_int_t)G.star_end));
    if (j && nrows) {
        json_t *cpu = json_array();
        for (unsigned i = 0; i < nrows; i++)
            json_array_append_new(cpu, json_pack("{s:s, s:i, s:s, s:f}", "process", rows[i].proc,
                                                 "pid", rows[i].pid, "thread", rows[i].name,
                                                 "cores", rows[i].cores));
        json_object_set_new(j, "cpu", cpu);
        json_object_set_new(j, "cpu_window_s", json_real(g_cpu_window));
    }
    if (!j || json_dump_file(j, G.json, JSON_INDENT(1) | JSON_SORT_KEYS) != 0)
        fprintf(stderr, "acme-load: cannot write %s\n", G.json);
    json_decref(j);
}

/* ------------------------------------------------------------ main */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: acme-load --directory URL --connect IP:PORT --ca ROOT.pem --http01-port P\n"
            "                 [--clients N] [--duration S | --issuances K] [--threads T] "
            "[--poll-ms MS]\n"
            "                 [--label NAME] [--domain SUFFIX] [--json FILE] [--cpu PID,...] "
            "[--quiet]\n"
            "                 [--profile NAME] [--star LIFETIME --star-end S [--star-adjust S]]\n"
            "N concurrent ACME clients (ES256 accounts) loop complete http-01 flows; the\n"
            "http-01 answers come from a responder on 127.0.0.1:P. Defaults: 64 clients,\n"
            "10 s, 2 threads, polls every 50 ms unless the answer has Retry-After,\n"
            "names rRUN-cN-iM.load.test. --cpu: CPU by thread of these processes and\n"
            "this one over the measured window (--duration only). --star: STAR orders\n"
            "(RFC 8739) with that lifetime (s), lifetime-adjust (default 0) and an end-date\n"
            "S seconds after each newOrder; each flow ends with its first certificate.\n");
}

static int parse_uint(const char *opt, const char *s, unsigned long lo, unsigned long hi,
                      unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi) {
        fprintf(stderr, "acme-load: %s: '%s' is not a whole number in %lu..%lu\n", opt, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_directory(const char *url)
{
    if (strlen(url) >= sizeof(G.directory) || strncmp(url, "https://", 8) != 0) {
        fprintf(stderr, "acme-load: --directory: '%s' is not an https:// URL\n", url);
        return -1;
    }
    snprintf(G.directory, sizeof(G.directory), "%s", url);
    const char *auth = url + 8, *slash = strchr(auth, '/');
    if (!slash || slash == auth) {
        fprintf(stderr, "acme-load: --directory: '%s' has no host or no path\n", url);
        return -1;
    }
    size_t alen = (size_t)(slash - auth);
    if (alen >= sizeof(G.hosthdr)) {
        fprintf(stderr, "acme-load: --directory: host too long\n");
        return -1;
    }
    snprintf(G.origin, sizeof(G.origin), "%.*s", (int)(slash - url), url);
    snprintf(G.hosthdr, sizeof(G.hosthdr), "%.*s", (int)alen, auth);
    snprintf(G.dir_path, sizeof(G.dir_path), "%s", slash);
    const char *colon = memchr(auth, ':', alen);
    size_t hlen = colon ? (size_t)(colon - auth) : alen;
    if (hlen == 0 || hlen >= sizeof(G.host) || auth[0] == '[') {
        fprintf(stderr, "acme-load: --directory: '%.*s' is not a host name\n", (int)alen, auth);
        return -1;
    }
    snprintf(G.host, sizeof(G.host), "%.*s", (int)hlen, auth);
    return 0;
}

static int parse_connect(const char *s)
{
    const char *colon = strrchr(s, ':');
    unsigned long port;
    struct in_addr a;
    if (!colon || (size_t)(colon - s) >= sizeof(G.connect_ip)) {
        fprintf(stderr, "acme-load: --connect: '%s' is not IPv4:PORT\n", s);
        return -1;
    }
    snprintf(G.connect_ip, sizeof(G.connect_ip), "%.*s", (int)(colon - s), s);
    if (inet_pton(AF_INET, G.connect_ip, &a) != 1) {
        fprintf(stderr, "acme-load: --connect: '%s' is not an IPv4 address\n", G.connect_ip);
        return -1;
    }
    if (parse_uint("--connect", colon + 1, 1, 65535, &port) != 0)
        return -1;
    G.connect_port = (unsigned)port;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"directory", required_argument, 0, 'd'}, {"connect", required_argument, 0, 'c'},
        {"ca", required_argument, 0, 'a'},        {"http01-port", required_argument, 0, 'p'},
        {"clients", required_argument, 0, 'n'},   {"duration", required_argument, 0, 's'},
        {"issuances", required_argument, 0, 'k'}, {"threads", required_argument, 0, 't'},
        {"poll-ms", required_argument, 0, 'P'},   {"json", required_argument, 0, 'j'},
        {"label", required_argument, 0, 'l'},     {"domain", required_argument, 0, 'D'},
        {"quiet", no_argument, 0, 'q'},           {"help", no_argument, 0, 'h'},
        {"cpu", required_argument, 0, 'C'},       {"profile", required_argument, 0, 'R'},
        {"star", required_argument, 0, 'S'},      {"star-adjust", required_argument, 0, 'A'},
        {"star-end", required_argument, 0, 'E'},  {0, 0, 0, 0},
    };
    G.clients = 64;
    G.threads = 2;
    G.poll_ms = 50;
    G.label = "server";
    G.domain = "load.test";
    bool have_dir = false, have_conn = false, have_dur = false;
    unsigned long v;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'd':
            if (parse_directory(optarg) != 0)
                return 2;
            have_dir = true;
            break;
        case 'c':
            if (parse_connect(optarg) != 0)
                return 2;
            have_conn = true;
            break;
        case 'a':
            G.ca = optarg;
            break;
        case 'p':
            if (parse_uint("--http01-port", optarg, 1, 65535, &v) != 0)
                return 2;
            G.http01_port = (unsigned)v;
            break;
        case 'n':
            if (parse_uint("--clients", optarg, 1, LG_MAX_CLIENTS, &v) != 0)
                return 2;
            G.clients = (unsigned)v;
            break;
        case 's': {
            char *end;
            G.duration = strtod(optarg, &end);
            if (end == optarg || *end || !(G.duration >= 0.1 && G.duration <= 86400)) {
                fprintf(stderr,
                        "acme-load: --duration: '%s' is not a number of seconds in 0.1..86400\n",
                        optarg);
                return 2;
            }
            have_dur = true;
            break;
        }
        case 'k':
            if (parse_uint("--issuances", optarg, 1, 100000000, &v) != 0)
                return 2;
            G.issuances = v;
            break;
        case 't':
            if (parse_uint("--threads", optarg, 1, LG_MAX_THREADS, &v) != 0)
                return 2;
            G.threads = (unsigned)v;
            break;
        case 'P':
            if (parse_uint("--poll-ms", optarg, 1, 10000, &v) != 0)
                return 2;
            G.poll_ms = (unsigned)v;
            break;
        case 'j':
            G.json = optarg;
            break;
        case 'l':
            G.label = optarg;
            break;
        case 'D':
            G.domain = optarg;
            break;
        case 'q':
            G.quiet = true;
            break;
        case 'C':
            if (parse_pids(optarg) != 0)
                return 2;
            break;
        case 'R':
            if (!optarg[0] || strlen(optarg) > 64) {
                fprintf(stderr, "acme-load: --profile: 1-64 characters\n");
                return 2;
            }
            G.profile = optarg;
            break;
        case 'S':
            if (parse_uint("--star", optarg, 1, 7 * 86400, &v) != 0)
                return 2;
            G.star_lifetime = (unsigned)v;
            break;
        case 'A':
            if (parse_uint("--star-adjust", optarg, 0, 7 * 86400, &v) != 0)
                return 2;
            G.star_adjust = (unsigned)v;
            break;
        case 'E':
            if (parse_uint("--star-end", optarg, 61, 366 * 86400, &v) != 0)
                return 2;
            G.star_end = v;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc || !have_dir || !have_conn || !G.ca || !G.http01_port) {
        if (optind < argc)
            fprintf(stderr, "acme-load: unexpected argument '%s'\n", argv[optind]);
        else
            fprintf(stderr,
                    "acme-load: --directory, --connect, --ca and --http01-port are required\n");
        usage(stderr);
        return 2;
    }
    if (have_dur && G.issuances) {
        fprintf(stderr, "acme-load: --duration and --issuances exclude each other\n");
        return 2;
    }
    if (!have_dur && !G.issuances)
        G.duration = 10;
    if ((G.star_lifetime != 0) != (G.star_end != 0) || (G.star_adjust && !G.star_lifetime)) {
        fprintf(stderr,
                "acme-load: --star and --star-end go together (--star-adjust needs them)\n");
        return 2;
    }
    if (strlen(G.domain) > 100 ||
        strspn(G.domain, "abcdefghijklmnopqrstuvwxyz0123456789-.") != strlen(G.domain) ||
        !G.domain[0] || G.domain[0] == '.' || G.domain[0] == '-') {
        fprintf(stderr, "acme-load: --domain: '%s' is not a lower-case DNS suffix\n", G.domain);
        return 2;
    }
    if (G.threads > G.clients)
        G.threads = G.clients;

    signal(SIGPIPE, SIG_IGN);
    if (evthread_use_pthreads() != 0) {
        fprintf(stderr, "acme-load: libevent threads unavailable\n");
        return 1;
    }
    int rc = 1;
    uint8_t rnd[4];
    if (!(g_ssl = SSL_CTX_new(TLS_client_method())) || RAND_bytes(rnd, sizeof(rnd)) != 1) {
        fprintf(stderr, "acme-load: OpenSSL initialisation failed\n");
        return 1;
    }
    snprintf(g_run, sizeof(g_run), "%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
    SSL_CTX_set_min_proto_version(g_ssl, TLS1_2_VERSION);
    SSL_CTX_set_verify(g_ssl, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(g_ssl, G.ca, NULL) != 1) {
        fprintf(stderr, "acme-load: --ca %s: not a readable PEM certificate file\n", G.ca);
        SSL_CTX_free(g_ssl);
        return 2;
    }
    if (fetch_directory() != 0)
        goto out_ssl;
    if (resp_start(G.http01_port, G.clients) != 0)
        goto out_ssl;

    g_workers = calloc(G.threads, sizeof(*g_workers));
    lg_client *clients = calloc(G.clients, sizeof(*clients));
    if (!g_workers || !clients) {
        fprintf(stderr, "acme-load: out of memory\n");
        goto out_resp;
    }
    unsigned per = G.clients / G.threads, extra = G.clients % G.threads, next = 0;
    for (unsigned i = 0; i < G.threads; i++) {
        lg_worker *w = &g_workers[i];
        w->id = i;
        w->n = per + (i < extra);
        w->clients = clients + next;
        next += w->n;
        for (int s = 0; s < LG_STEP__MAX; s++)
            bench_hist_reset(&w->st.h[s]);
        if (!(w->base = event_base_new())) {
            fprintf(stderr, "acme-load: event_base_new failed\n");
            goto out_workers;
        }
        for (unsigned k = 0; k < w->n; k++)
            if (client_init(w, &w->clients[k], (unsigned)(w->clients - clients) + k) != 0) {
                fprintf(stderr, "acme-load: cannot set up client %u (keys, JWK, connection)\n", k);
                goto out_workers;
            }
    }
    pthread_barrier_init(&g_go, NULL, G.threads + 1);
    uint64_t t_reg = now_ns();
    unsigned started = 0;
    for (; started < G.threads; started++)
        if (pthread_create(&g_workers[started].thr, NULL, worker_main, &g_workers[started]) != 0) {
            fprintf(stderr, "acme-load: cannot start threads\n");
            atomic_store(&g_abort, 1);
            break;
        }
    if (started < G.threads) {
        /* the barrier can never fill: give up hard (threads are mid-run) */
        _exit(1);
    }
    pthread_barrier_wait(&g_go);
    uint64_t reg_ns = now_ns() - t_reg;
    g_t0 = now_ns();
    g_t_end = g_t0 + (uint64_t)(G.duration * 1e9);
    bool sample = g_npids > 0 && G.duration > 0;
    if (sample) {
        g_pids[g_npids++] = getpid();
        g_cpu0 = calloc(LG_MAX_TASKS, sizeof(*g_cpu0));
        g_cpu1 = calloc(LG_MAX_TASKS, sizeof(*g_cpu1));
        if (!g_cpu0 || !g_cpu1)
            sample = false;
        else
            g_ncpu0 = cpu_sample(g_cpu0);
    }
    pthread_barrier_wait(&g_go);
    if (sample) {
        uint64_t t = now_ns();
        while (t < g_t_end && !atomic_load(&g_abort)) {
            struct timespec ts = {.tv_sec = (time_t)((g_t_end - t) / 1000000000ull),
                                  .tv_nsec = (long)((g_t_end - t) % 1000000000ull)};
            nanosleep(&ts, NULL);
            t = now_ns();
        }
        g_ncpu1 = cpu_sample(g_cpu1);
        g_cpu_window = (double)(now_ns() - g_t0) / 1e9;
    } else {
        free(g_cpu0);
        free(g_cpu1);
        g_cpu0 = g_cpu1 = NULL;
    }
    for (unsigned i = 0; i < G.threads; i++)
        pthread_join(g_workers[i].thr, NULL);
    uint64_t t1 = now_ns();

    lg_stats *acc = calloc(1, sizeof(*acc));
    bench_hist_snap *snaps = calloc(LG_STEP__MAX, sizeof(*snaps));
    bench_hist_snap *one = calloc(1, sizeof(*one));
    if (!acc || !snaps || !one) {
        fprintf(stderr, "acme-load: out of memory\n");
        free(acc);
        free(snaps);
        free(one);
        goto out_workers;
    }
    merge(acc);
    for (int s = 0; s < LG_STEP__MAX; s++)
        for (unsigned i = 0; i < G.threads; i++) {
            bench_hist_snap_of(&g_workers[i].st.h[s], one);
            bench_hist_snap_add(&snaps[s], one);
        }
    if (atomic_load(&g_abort)) {
        fprintf(stderr, "acme-load: registering the accounts failed: %s\n",
                acc->first_err[0] ? acc->first_err : "a worker failed");
    } else {
        double seconds = G.duration > 0
                             ? G.duration
                             : (double)((acc->t_last_ok > g_t0 ? acc->t_last_ok : t1) - g_t0) / 1e9;
        double rate = seconds > 0 ? (double)acc->ok_in_window / seconds : 0;
        report(acc, snaps, seconds, rate, reg_ns);
        rc = acc->failed || acc->nerr || acc->ok == 0 ? 1 : 0;
        if (rc && !acc->nerr)
            fprintf(stderr, "acme-load: no flow completed\n");
    }
    free(acc);
    free(snaps);
    free(one);
out_workers:
    for (unsigned i = 0; g_workers && i < G.threads; i++) {
        lg_worker *w = &g_workers[i];
        for (unsigned k = 0; w->clients && k < w->n; k++)
            client_free(&w->clients[k]);
        if (w->base)
            event_base_free(w->base);
    }
    free(clients);
    free(g_workers);
out_resp:
    resp_stop();
out_ssl:
    SSL_CTX_free(g_ssl);
    free(g_cpu0);
    free(g_cpu1);
    return rc;
}
