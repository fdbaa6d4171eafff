/* server.h — certforge-acme's HTTPS front: one libevent event loop per
 * thread (evhttp over OpenSSL bufferevents, SO_REUSEPORT sockets), TLS,
 * connection and size limits, slow-client timeouts, and the request
 * context the API handlers (api.c) work on.
 *
 * Threads (docs/architecture.md):
 *   acme-http/N   event loop: TLS, HTTP parsing, JWS verification, reads,
 *                 answers; never blocks on a write or the network
 *   acme-store    the writer: every state change, group-committed
 *   acme-engine/N certforged connections: pipelined ISSUE/REVOKE
 *   acme-va/N     challenge validation (blocking I/O, bounded pool)
 *   acme-main     signals, pruning, the front end's own certificate
 * A handler that changes state queues a closure to acme-store and answers
 * from its own loop once the change is durable (acme_rq_submit).
 */
#ifndef CF_ACME_SERVER_H
#define CF_ACME_SERVER_H

#include <jansson.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "acme/acme.h"
#include "acme/config.h"
#include "acme/jws.h"
#include "acme/nonce.h"
#include "acme/store.h"

struct evhttp_request;
struct event_base;
typedef struct acme_thread acme_thread;
typedef struct acme_issuer acme_issuer;
typedef struct acme_validator acme_validator;
typedef struct acme_ratelimit acme_ratelimit;
typedef struct acme_tkauth acme_tkauth;

/* Counters for the status view; relaxed atomics. */
typedef struct acme_counters {
    _Atomic uint64_t requests, problems, connections, connections_refused, address_limit_hits;
    _Atomic uint64_t accounts, orders, finalized, issued, revoked, validations_ok, validations_failed;
    _Atomic uint64_t bad_nonce, engine_busy, engine_errors;
} acme_counters;

typedef struct acme_srv {
    const acme_cfg *cfg;
    acme_store *store;
    acme_nonces *nonces;
    acme_issuer *issuer;
    acme_validator *validator;
    acme_ratelimit *limits;
    acme_tkauth *tkauth; /* NULL: no NfInstanceId identifiers */
    struct acme_star *star; /* NULL: no STAR */
    struct acme_anchors *anchors; /* NULL: none published; swapped on SIGHUP under anchors_mu */
    pthread_mutex_t anchors_mu;
    SSL_CTX *_Atomic ssl_ctx; /* swapped when the front end's certificate is renewed */
    acme_thread **threads;
    unsigned n_threads;
    acme_counters ctr;
    struct cf_addrcount *addrs; /* connections per client address (limits) */
    _Atomic int stopping;
    int log_level;
    char dir_url[256]; /* base_url + "/directory" */
} acme_srv;

/* ---------------------------------------------------------------- life */

/* Bind the listening sockets and build the loops (not yet running). */
CF_WUR int acme_server_new(acme_srv *srv, char *err, size_t errlen);
/* Run every loop on its own thread; returns at once. */
CF_WUR int acme_server_start(acme_srv *srv, char *err, size_t errlen);
/* Stop accepting, let the loops finish what they answer, join. */
void acme_server_stop(acme_srv *srv);
void acme_server_free(acme_srv *srv);
/* Build an SSL_CTX from PEM chain and key files (TLS 1.2+, http/1.1). */
SSL_CTX *acme_server_ssl_ctx(const char *chain_file, const char *key_file, char *err, size_t errlen);
/* Install a new certificate for new connections (takes the reference). */
void acme_server_set_ssl_ctx(acme_srv *srv, SSL_CTX *ctx);

/* Run fn(arg) on thread t's loop (from any thread). */
void acme_thread_post(acme_thread *t, void (*fn)(void *), void *arg);

/* ---------------------------------------------------------------- logging */

void acme_log(const acme_srv *srv, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
enum { ACME_LOG_ERROR, ACME_LOG_WARNING, ACME_LOG_INFO, ACME_LOG_DEBUG };

/* ---------------------------------------------------------------- requests */

typedef enum acme_method { ACME_GET, ACME_HEAD, ACME_POST, ACME_OTHER } acme_method;

typedef struct acme_rq {
    struct evhttp_request *req;
    acme_thread *t;
    acme_srv *srv;
    acme_db *db; /* the thread's reader */
    acme_method method;
    const char *path; /* request path ("/acme/new-order") */
    char addr[64];    /* client address */
    uint64_t t0_ns;
    /* filled by acme_rq_authenticate */
    acme_jws jws;
    bool have_jws;
    json_t *payload; /* NULL: POST-as-GET */
    char account[ACME_ID_LEN + 1];
    EVP_PKEY *key;   /* the verified key (reference owned by the thread's cache) */
    const json_t *jwk;
    char thumb[ACME_THUMB_LEN + 1];
    char eab_kid[72]; /* the EAB key the account was bound with, or "" */
    /* for the log line */
    char order[ACME_ID_LEN + 1];
    int http_status;
    acme_problem problem;
    bool answered;
} acme_rq;

/* The thread's cached key for a JWK (imported once per thumbprint). */
EVP_PKEY *acme_thread_key(acme_thread *t, const json_t *jwk, const char *thumb, acme_jws_err *err,
                          char *msg, size_t msglen);
acme_db *acme_thread_db(acme_thread *t);
struct event_base *acme_thread_base(acme_thread *t);

/* Answers (each adds Replay-Nonce, Link rel="index", Cache-Control) and
 * frees the request context. */
void acme_rq_json(acme_rq *rq, int http_status, json_t *body /* stolen */, const char *location);
void acme_rq_problem(acme_rq *rq, acme_problem type, const char *detail, json_t *subproblems /* stolen */);
void acme_rq_problemf(acme_rq *rq, acme_problem type, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Raw body with a content type (certificate chains, ARI). */
void acme_rq_raw(acme_rq *rq, int http_status, const char *content_type, const void *body, size_t len);
/* Extra headers before answering. */
void acme_rq_header(acme_rq *rq, const char *name, const char *value);
void acme_rq_link(acme_rq *rq, const char *url, const char *rel);

/* Continuation after a state change: runs on rq's thread. */
typedef void (*acme_rq_cont)(acme_rq *rq, void *arg, int rc);
/* Queue fn(tx, arg) to the store; cont(rq, arg, rc) on rq's loop once
 * durable. When the queue is full, answers rateLimited itself. */
void acme_rq_submit(acme_rq *rq, acme_tx_fn fn, void *arg, acme_rq_cont cont);

/* The trust anchors in force (a reference: acme_server_anchors_put), or NULL. */
struct acme_anchors *acme_server_anchors_get(acme_srv *srv);
void acme_server_anchors_put(acme_srv *srv, struct acme_anchors *a);
/* Install new ones (takes the reference); the old go when their last reader does. */
void acme_server_anchors_set(acme_srv *srv, struct acme_anchors *a);

/* The handler entry point (api.c). */
void acme_api_handle(acme_rq *rq);
/* JSON of the directory (api.c), built once. */
json_t *acme_api_directory(const acme_srv *srv);

#endif
