/* est.c — the NF-facing side: EST (RFC 7030) over TLS with client
 * authentication, one libevent loop per thread (evhttp over OpenSSL
 * bufferevents, SO_REUSEPORT sockets), connection/size limits and
 * slow-client timeouts as in certforge-acme's server.c.
 *
 *   GET  /.well-known/est/cacerts         the CA certificates (§4.1)
 *   POST /.well-known/est/simpleenroll    first enrolment (§4.2.1)
 *   POST /.well-known/est/simplereenroll  re-enrolment (§4.2.2)
 *   GET  /.well-known/est/csrattrs        what the CSR should carry (§4.5)
 *
 * Who the NF is (docs/agent.md "Authentication"):
 *   - re-enrolment: its TLS client certificate is one this agent obtained
 *     for it (looked up by the SHA-256 of its DER), still valid;
 *   - first enrolment: a bootstrap client certificate chaining to
 *     bootstrap.trust_anchors and naming the NF as URI SAN urn:uuid:, or
 *     an OAM authority token (RFC 9447 "atc", the tkauth-01 token) in
 *     `Authorization: Bearer`, bound to the NF's ACME account key.
 * TLS itself accepts any client certificate (or none) so that a refusal is
 * an HTTP answer with a reason the NF's operator can read, not a handshake
 * alert; the TLS handshake still proves possession of its key.
 *
 * An accepted request waits up to est.wait_ms for the ACME side; then 200
 * with the certificate, or 202 + Retry-After (§4.2.3), and the NF asks
 * again with the same request. While the ACME server is unreachable or
 * failing the answer is 503 + Retry-After. */
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
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "acme/acme.h"
#include "acme/anchors.h"
#include "acme/connaddr.h"
#include "acme/tkauth.h"
#include "agent/agent.h"
#include "agent/estmsg.h"
#include "agent/state.h"

#define PARK_BUCKETS 4096
#define EST_PREFIX "/.well-known/est/"

typedef struct post_item {
    void (*fn)(void *);
    void *arg;
    struct post_item *next;
} post_item;

typedef struct est_thread {
    agent_est *e;
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
    bool paused;
} est_thread;

typedef struct est_rq est_rq;

typedef struct park {
    struct park *next;
    char enrolment[AGENT_ID_LEN + 1];
    est_rq *rq;
} park;

struct agent_est {
    agent *a;
    est_thread **t;
    unsigned n;
    SSL_CTX *ctx;
    cf_addrcount *addrs; /* connections per NF address (limits) */
    pthread_mutex_t park_mu;
    park *parks[PARK_BUCKETS];
};

struct est_rq {
    struct evhttp_request *req;
    est_thread *t;
    agent *a;
    const char *op; /* cacerts, csrattrs, simpleenroll, simplereenroll */
    char addr[64];
    uint64_t t0_ns;
    char nf[37];
    const char *auth; /* certificate, bootstrap, token, certificate+token */
    char client_cert[65];
    int64_t client_not_after;
    char *token; /* the Bearer token, for tkauth-01 */
    acme_tkauth_claims claims;
    est_csr csr;
    char enrolment[AGENT_ID_LEN + 1];
    const char *reason; /* log code */
    struct event *timer;
};

static int ssl_thread_idx = -1;

/* ------------------------------------------------------------ log */

void agent_log(const agent *a, int level, const char *fmt, ...)
{
    if (a && level > a->log_level)
        return;
    static const char *const lv[] = {"error", "warning", "info", "debug"};
    char line[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ certforge-agent level=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, lv[level & 3]);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(line))
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------ posting */

static void post_cb(evutil_socket_t fd, short what, void *arg)
{
    est_thread *t = arg;
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

static void thread_post(est_thread *t, void (*fn)(void *), void *arg)
{
    post_item *p = malloc(sizeof(*p));
    if (!p)
        abort(); /* a lost completion would leave a request unanswered forever */
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

/* ------------------------------------------------------------ answers */

static void rq_free(est_rq *rq)
{
    if (rq->timer)
        event_free(rq->timer);
    if (rq->token) {
        OPENSSL_cleanse(rq->token, strlen(rq->token));
        free(rq->token);
    }
    est_csr_free(&rq->csr);
    free(rq);
}

static void header(est_rq *rq, const char *n, const char *v)
{
    evhttp_add_header(evhttp_request_get_output_headers(rq->req), n, v);
}

static void finish(est_rq *rq, int status, const char *ctype, const char *body, size_t len)
{
    struct evbuffer *b = evbuffer_new();
    if (b && body)
        evbuffer_add(b, body, len);
    if (ctype)
        header(rq, "Content-Type", ctype);
    const char *reason = status == 200   ? "OK"
                         : status == 202 ? "Accepted"
                         : status == 400 ? "Bad Request"
                         : status == 401 ? "Unauthorized"
                         : status == 403 ? "Forbidden"
                         : status == 404 ? "Not Found"
                         : status == 405 ? "Method Not Allowed"
                         : status == 415 ? "Unsupported Media Type"
                         : status == 501 ? "Not Implemented"
                         : status == 503 ? "Service Unavailable"
                                         : "Error";
    /* the request's log line first, then the answer: an NF that acts on
     * the answer (or a test reading the log after it) finds the line */
    agent *a = rq->a;
    atomic_fetch_add_explicit(&a->ctr.requests, 1, memory_order_relaxed);
    if (a->log_level >= AGENT_LOG_INFO)
        agent_log(a, AGENT_LOG_INFO, "op=%s status=%d nf=%s auth=%s enrolment=%s reason=%s ms=%.2f addr=%s", rq->op,
                  status, rq->nf[0] ? rq->nf : "-", rq->auth ? rq->auth : "-", rq->enrolment[0] ? rq->enrolment : "-",
                  rq->reason ? rq->reason : "-", (double)(mono_ns() - rq->t0_ns) / 1e6, rq->addr);
    evhttp_send_reply(rq->req, status, reason, b);
    if (b)
        evbuffer_free(b);
    rq_free(rq);
}

__attribute__((format(printf, 4, 5))) static void refuse(est_rq *rq, int status, const char *code, const char *fmt, ...)
{
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg) - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n > sizeof(msg) - 2)
        n = (int)sizeof(msg) - 2;
    msg[n++] = '\n';
    msg[n] = '\0';
    rq->reason = code;
    if (status == 401)
        header(rq, "WWW-Authenticate", "Bearer realm=\"certforge-agent\"");
    finish(rq, status, "text/plain; charset=utf-8", msg, (size_t)n);
}

static void answer_chain(est_rq *rq, const char *chain)
{
    size_t len = 0;
    char *p7 = est_p7_from_pem(chain, true, &len);
    if (!p7) {
        atomic_fetch_add_explicit(&rq->a->ctr.errors, 1, memory_order_relaxed);
        refuse(rq, 500, "internal", "the certificate cannot be encoded");
        return;
    }
    header(rq, "Content-Transfer-Encoding", "base64");
    rq->reason = rq->reason ? rq->reason : "issued";
    finish(rq, 200, "application/pkcs7-mime; smime-type=certs-only", p7, len);
    free(p7);
}

/* ------------------------------------------------------------ store from the loop */

typedef void (*est_cont)(est_rq *rq, void *arg, int rc);

typedef struct sub {
    est_rq *rq;
    void *arg;
    acme_tx_fn fn;
    est_cont cont;
    int rc;
} sub;

static void sub_resume(void *p)
{
    sub *s = p;
    s->cont(s->rq, s->arg, s->rc);
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
    thread_post(s->rq->t, sub_resume, s);
}

static void submit(est_rq *rq, acme_tx_fn fn, void *arg, est_cont cont)
{
    sub *s = calloc(1, sizeof(*s));
    if (!s) {
        cont(rq, arg, -1);
        return;
    }
    *s = (sub){.rq = rq, .arg = arg, .fn = fn, .cont = cont};
    if (!rq->a->store || acme_store_submit(rq->a->store, sub_fn, sub_done, s) != 0) {
        free(s);
        cont(rq, arg, -2);
    }
}

/* Fire and forget (the "reported" flag). */
typedef struct mark {
    char id[AGENT_ID_LEN + 1];
} mark;

static int tx_mark(acme_db *tx, void *arg)
{
    mark *m = arg;
    return acme_db_exec(tx, "UPDATE enrolments SET reported = 1 WHERE id = ?", "s", m->id) < 0 ? -1 : 0;
}

static void mark_done(void *arg, int rc)
{
    free(arg);
}

static void mark_reported(agent *a, const char *id)
{
    mark *m = a->store ? calloc(1, sizeof(*m)) : NULL; /* no store: stopping */
    if (!m)
        return;
    snprintf(m->id, sizeof(m->id), "%s", id);
    if (acme_store_submit(a->store, tx_mark, mark_done, m) != 0)
        free(m);
}

/* ------------------------------------------------------------ parking */

static unsigned park_hash(const char *s)
{
    unsigned h = 5381;
    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h % PARK_BUCKETS;
}

static void answer_enrolment(est_rq *rq, bool may_park);

static void wake_cb(void *arg)
{
    answer_enrolment(arg, false);
}

/* The timer fired: still parked → answer with the state as it is now
 * (202/503); already taken by a notification → its wake_cb answers. */
static void park_timeout(evutil_socket_t fd, short what, void *arg)
{
    est_rq *rq = arg;
    agent_est *e = rq->t->e;
    bool mine = false;
    pthread_mutex_lock(&e->park_mu);
    for (park **pp = &e->parks[park_hash(rq->enrolment)]; *pp; pp = &(*pp)->next)
        if ((*pp)->rq == rq) {
            park *p = *pp;
            *pp = p->next;
            free(p);
            mine = true;
            break;
        }
    pthread_mutex_unlock(&e->park_mu);
    if (mine)
        answer_enrolment(rq, false);
}

static int park_rq(est_rq *rq)
{
    agent_est *e = rq->t->e;
    park *p = calloc(1, sizeof(*p));
    if (!p)
        return -1;
    if (!rq->timer && !(rq->timer = evtimer_new(rq->t->base, park_timeout, rq))) {
        free(p);
        return -1;
    }
    snprintf(p->enrolment, sizeof(p->enrolment), "%s", rq->enrolment);
    p->rq = rq;
    unsigned h = park_hash(rq->enrolment);
    pthread_mutex_lock(&e->park_mu);
    p->next = e->parks[h];
    e->parks[h] = p;
    pthread_mutex_unlock(&e->park_mu);
    unsigned ms = rq->a->cfg->est_wait_ms;
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(rq->timer, &tv);
    return 0;
}

void agent_est_notify(agent_est *e, const char *enrolment)
{
    if (!e)
        return;
    park *list = NULL;
    unsigned h = park_hash(enrolment);
    pthread_mutex_lock(&e->park_mu);
    for (park **pp = &e->parks[h]; *pp;) {
        if (strcmp((*pp)->enrolment, enrolment) == 0) {
            park *p = *pp;
            *pp = p->next;
            p->next = list;
            list = p;
        } else {
            pp = &(*pp)->next;
        }
    }
    pthread_mutex_unlock(&e->park_mu);
    while (list) {
        park *n = list->next;
        thread_post(list->rq->t, wake_cb, list->rq);
        free(list);
        list = n;
    }
}

/* ------------------------------------------------------------ enrolment answers */

/* Answer from the enrolment's state: valid → 200, failed → its refusal,
 * pending → park (may_park) or 202/503. */
static void answer_enrolment(est_rq *rq, bool may_park)
{
    agent *a = rq->a;
    if (rq->timer)
        evtimer_del(rq->timer);
    acme_q q;
    if (acme_db_query(rq->t->db, &q,
                      "SELECT e.status, e.transient, e.error, e.next_at, c.chain FROM enrolments e "
                      "LEFT JOIN certs c ON c.id = e.cert WHERE e.id = ?",
                      "s", rq->enrolment) != 0 ||
        acme_q_next(&q) != 1) {
        acme_q_end(&q);
        atomic_fetch_add_explicit(&a->ctr.errors, 1, memory_order_relaxed);
        refuse(rq, 500, "internal", "the enrolment's state cannot be read");
        return;
    }
    const char *st = acme_q_text(&q, 0);
    int transient = (int)acme_q_int(&q, 1);
    char err[600];
    snprintf(err, sizeof(err), "%s", acme_q_text(&q, 2) ? acme_q_text(&q, 2) : "");
    int64_t next_at = acme_q_int(&q, 3);
    if (strcmp(st, AGENT_ST_VALID) == 0 && acme_q_text(&q, 4)) {
        char *chain = strdup(acme_q_text(&q, 4));
        acme_q_end(&q);
        if (!chain) {
            refuse(rq, 500, "internal", "out of memory");
            return;
        }
        atomic_fetch_add_explicit(&a->ctr.issued_now, 1, memory_order_relaxed);
        answer_chain(rq, chain);
        free(chain);
        return;
    }
    bool failed = strcmp(st, AGENT_ST_FAILED) == 0;
    acme_q_end(&q);
    char ra[24];
    if (failed) {
        mark_reported(a, rq->enrolment);
        atomic_fetch_add_explicit(&a->ctr.unavailable, transient ? 1 : 0, memory_order_relaxed);
        if (transient) {
            snprintf(ra, sizeof(ra), "%u", a->cfg->est_retry_after_s);
            header(rq, "Retry-After", ra);
            refuse(rq, 503, "acme_unavailable", "the ACME server could not be reached after %u retries (%s); "
                   "retry later", a->cfg->max_retries, err);
        } else {
            refuse(rq, 403, "acme_refused", "the ACME server refused the enrolment: %s", err);
        }
        return;
    }
    if (may_park && a->cfg->est_wait_ms > 0 && park_rq(rq) == 0)
        return;
    if (transient) {
        int64_t d = next_at - agent_now();
        snprintf(ra, sizeof(ra), "%lld", (long long)(d < 1 ? 1 : d));
        header(rq, "Retry-After", ra);
        atomic_fetch_add_explicit(&a->ctr.unavailable, 1, memory_order_relaxed);
        refuse(rq, 503, "acme_unavailable", "the ACME server is unavailable (%s); the agent retries; ask again "
               "after Retry-After", err);
        return;
    }
    snprintf(ra, sizeof(ra), "%u", a->cfg->est_retry_after_s);
    header(rq, "Retry-After", ra);
    atomic_fetch_add_explicit(&a->ctr.accepted, 1, memory_order_relaxed);
    rq->reason = "accepted";
    char body[128];
    int n = snprintf(body, sizeof(body), "enrolment %s in progress; ask again after Retry-After\n", rq->enrolment);
    finish(rq, 202, "text/plain; charset=utf-8", body, (size_t)n);
}

/* ------------------------------------------------------------ new enrolment */

typedef struct create {
    char id[AGENT_ID_LEN + 1];
    char nf[37], spki[65], jti[129];
    const uint8_t *csr;
    size_t csr_len;
    const char *token;
    const char *kind;
    int64_t now, jti_exp;
} create;

enum { CREATE_KEY_REUSED = 1, CREATE_TOKEN_REPLAYED = 2, CREATE_PENDING = 3 };

static int tx_create(acme_db *tx, void *arg)
{
    create *c = arg;
    acme_q q;
    /* checked again under the writer: two NFs racing with one key */
    if (acme_db_query(tx, &q, "SELECT nf FROM keys WHERE spki = ?", "s", c->spki) != 0)
        return -1;
    int r = acme_q_next(&q);
    bool other = r == 1 && strcmp(acme_q_text(&q, 0), c->nf) != 0;
    acme_q_end(&q);
    if (r < 0)
        return -1;
    if (other)
        return CREATE_KEY_REUSED;
    if (c->jti[0]) {
        if (acme_db_query(tx, &q, "SELECT nf, spki FROM used_jti WHERE jti = ?", "s", c->jti) != 0)
            return -1;
        r = acme_q_next(&q);
        other = r == 1 && (strcmp(acme_q_text(&q, 0), c->nf) != 0 || strcmp(acme_q_text(&q, 1), c->spki) != 0);
        acme_q_end(&q);
        if (r < 0)
            return -1;
        if (other)
            return CREATE_TOKEN_REPLAYED;
        if (acme_db_exec(tx, "INSERT INTO used_jti(jti, nf, spki, expires) VALUES(?, ?, ?, ?) ON CONFLICT DO NOTHING",
                         "sssi", c->jti, c->nf, c->spki, c->jti_exp) < 0)
            return -1;
    }
    /* one enrolment in progress per NF and key. The status is tested here,
     * not in the WHERE: with "AND status = 'pending'" SQLite picks the
     * enrolments_status index and walks every pending enrolment (10 000
     * NFs enrolling at once: 10 000 rows per new enrolment, in the writer);
     * by (nf, spki) it reads the few of this NF and key. */
    if (acme_db_query(tx, &q, "SELECT id, status FROM enrolments WHERE nf = ? AND spki = ?", "ss",
                      c->nf, c->spki) != 0)
        return -1;
    bool pending = false;
    while ((r = acme_q_next(&q)) == 1)
        if (strcmp(acme_q_text(&q, 1), AGENT_ST_PENDING) == 0) {
            snprintf(c->id, sizeof(c->id), "%s", acme_q_text(&q, 0));
            pending = true;
            break;
        }
    acme_q_end(&q);
    if (r < 0)
        return -1;
    if (pending)
        return CREATE_PENDING;
    if (acme_db_exec(tx, "INSERT INTO keys(spki, nf) VALUES(?, ?) ON CONFLICT DO NOTHING", "ss", c->spki, c->nf) < 0)
        return -1;
    return acme_db_exec(tx,
                        "INSERT INTO enrolments(id, nf, kind, status, csr, spki, token, jti, next_at, created, updated) "
                        "VALUES(?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)",
                        "sssbsssiii", c->id, c->nf, c->kind, c->csr, c->csr_len, c->spki, c->token,
                        c->jti[0] ? c->jti : NULL, c->now, c->now, c->now) < 0
               ? -1
               : 0;
}

static void create_done(est_rq *rq, void *arg, int rc)
{
    create *c = arg;
    agent *a = rq->a;
    if (rc == 0 || rc == CREATE_PENDING) {
        snprintf(rq->enrolment, sizeof(rq->enrolment), "%s", c->id);
        free(c);
        if (rc == 0) {
            agent_log(a, AGENT_LOG_INFO, "event=enrolment_started nf=%s enrolment=%s kind=%s auth=%s", rq->nf,
                      rq->enrolment, strcmp(rq->op, "simplereenroll") == 0 ? "reenroll" : "enroll", rq->auth);
            agent_sched_add(a->sched, rq->enrolment, agent_now_ms());
        }
        answer_enrolment(rq, true);
        return;
    }
    free(c);
    if (rc == CREATE_KEY_REUSED) {
        atomic_fetch_add_explicit(&a->ctr.refused_key, 1, memory_order_relaxed);
        refuse(rq, 403, "key_reused", "the CSR's public key belongs to another NF; each NF enrols its own key");
    } else if (rc == CREATE_TOKEN_REPLAYED) {
        atomic_fetch_add_explicit(&a->ctr.refused_token, 1, memory_order_relaxed);
        refuse(rq, 401, "token_replayed", "the authority token was already used for another enrolment");
    } else {
        char ra[24];
        snprintf(ra, sizeof(ra), "%u", a->cfg->est_retry_after_s);
        header(rq, "Retry-After", ra);
        atomic_fetch_add_explicit(&a->ctr.unavailable, 1, memory_order_relaxed);
        refuse(rq, 503, rc == -2 ? "busy" : "state_error", "the agent cannot take the enrolment now; retry later");
    }
}

/* ------------------------------------------------------------ authentication */

/* The NF behind the request. 0 with rq->nf/auth set, or -1 answered. */
static int authenticate(est_rq *rq, bool reenroll)
{
    agent *a = rq->a;
    struct evhttp_connection *ec = evhttp_request_get_connection(rq->req);
    struct bufferevent *bev = ec ? evhttp_connection_get_bufferevent(ec) : NULL;
    SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
    X509 *peer = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
    char cert_why[300] = "";
    if (peer) {
        unsigned char *der = NULL;
        int dl = i2d_X509(peer, &der);
        if (dl > 0)
            est_sha256_hex(der, (size_t)dl, rq->client_cert);
        OPENSSL_free(der);
        acme_q q;
        int found = 0;
        if (dl > 0 && acme_db_query(rq->t->db, &q, "SELECT nf, not_after, not_before FROM certs WHERE id = ?", "s",
                                    rq->client_cert) == 0) {
            if (acme_q_next(&q) == 1) {
                int64_t now = agent_now();
                if (now > acme_q_int(&q, 1) || now < acme_q_int(&q, 2)) {
                    snprintf(cert_why, sizeof(cert_why), "the client certificate has expired");
                } else {
                    snprintf(rq->nf, sizeof(rq->nf), "%s", acme_q_text(&q, 0));
                    rq->client_not_after = acme_q_int(&q, 1);
                    rq->auth = "certificate";
                    found = 1;
                }
            }
            acme_q_end(&q);
        }
        if (!found && !cert_why[0]) {
            rq->client_cert[0] = '\0';
            if (reenroll) {
                snprintf(cert_why, sizeof(cert_why), "the client certificate was not issued through this agent "
                                                     "(re-enrolment needs the NF's current certificate)");
            } else if (!a->bootstrap) {
                snprintf(cert_why, sizeof(cert_why), "the client certificate is not one of this agent's, and no "
                                                     "bootstrap certificates are accepted");
            } else {
                X509_STORE_CTX *ctx = X509_STORE_CTX_new();
                int ok = ctx && X509_STORE_CTX_init(ctx, a->bootstrap, peer, SSL_get_peer_cert_chain(ssl)) == 1 &&
                         X509_verify_cert(ctx) == 1;
                if (!ok)
                    snprintf(cert_why, sizeof(cert_why), "the client certificate does not chain to a bootstrap "
                             "trust anchor: %s", ctx ? X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)) : "");
                X509_STORE_CTX_free(ctx);
                if (ok && est_cert_uuid(peer, rq->nf) != 0) {
                    snprintf(cert_why, sizeof(cert_why), "the bootstrap certificate names no NF instance ID "
                                                         "(URI SAN urn:uuid:)");
                    ok = 0;
                }
                if (ok)
                    rq->auth = "bootstrap";
                ERR_clear_error();
            }
        }
    }
    const char *authz = evhttp_find_header(evhttp_request_get_input_headers(rq->req), "Authorization");
    if (authz) {
        const char *tok;
        size_t tl;
        char tok_nf[37];
        char why[300] = "";
        if (!a->tkauth)
            snprintf(why, sizeof(why), "this agent accepts no authority tokens (bootstrap.token_trust_anchors)");
        else if (est_bearer(authz, &tok, &tl) != 0 || est_token_peek_nf(tok, tl, tok_nf) != 0)
            snprintf(why, sizeof(why), "Authorization is not 'Bearer <OAM authority token for an NfInstanceId>'");
        else if (rq->nf[0] && strcmp(rq->nf, tok_nf) != 0)
            snprintf(why, sizeof(why), "the token is for NF %s, the client certificate for NF %s", tok_nf, rq->nf);
        if (why[0]) {
            atomic_fetch_add_explicit(&a->ctr.refused_token, 1, memory_order_relaxed);
            refuse(rq, 401, "bad_token", "%s", why);
            return -1;
        }
        agent_nf nf;
        int r = agent_nf_load(rq->t->db, tok_nf, false, &nf);
        if (r != 1) {
            snprintf(rq->nf, sizeof(rq->nf), "%s", tok_nf);
            atomic_fetch_add_explicit(&a->ctr.refused_nf, 1, memory_order_relaxed);
            refuse(rq, r < 0 ? 500 : 403, "unknown_nf", "NF %s is not registered with this agent", tok_nf);
            return -1;
        }
        if (!(rq->token = strndup(tok, tl))) {
            agent_nf_clear(&nf);
            refuse(rq, 500, "internal", "out of memory");
            return -1;
        }
        acme_problem p = acme_tkauth_verify(a->tkauth, rq->token, "NfInstanceId", tok_nf, nf.thumb, agent_now(),
                                            &rq->claims, why, sizeof(why));
        agent_nf_clear(&nf);
        if (p != ACME_P_NONE) {
            snprintf(rq->nf, sizeof(rq->nf), "%s", tok_nf);
            atomic_fetch_add_explicit(&a->ctr.refused_token, 1, memory_order_relaxed);
            refuse(rq, 401, strstr(why, "expire") ? "token_expired" : "bad_token", "authority token refused: %s", why);
            return -1;
        }
        if (!rq->auth && reenroll) {
            atomic_fetch_add_explicit(&a->ctr.refused_auth, 1, memory_order_relaxed);
            refuse(rq, 401, "no_credential", "re-enrolment needs the NF's current certificate as TLS client "
                   "certificate%s%s", cert_why[0] ? ": " : "", cert_why);
            return -1;
        }
        rq->auth = rq->auth ? (strcmp(rq->auth, "certificate") == 0 ? "certificate+token" : rq->auth) : "token";
        snprintf(rq->nf, sizeof(rq->nf), "%s", tok_nf);
        return 0;
    }
    if (rq->auth)
        return 0;
    atomic_fetch_add_explicit(&a->ctr.refused_auth, 1, memory_order_relaxed);
    refuse(rq, 401, "no_credential", "%s", cert_why[0] ? cert_why
                                                        : "no credential: present the NF's certificate, a bootstrap "
                                                          "certificate, or an OAM authority token (Authorization: Bearer)");
    return -1;
}

/* ------------------------------------------------------------ handlers */

static void handle_cacerts(est_rq *rq)
{
    atomic_fetch_add_explicit(&rq->a->ctr.cacerts, 1, memory_order_relaxed);
    const acme_anchors *an = rq->a->cacerts;
    header(rq, "Content-Transfer-Encoding", "base64");
    header(rq, "ETag", an->etag);
    rq->reason = "cacerts";
    finish(rq, 200, "application/pkcs7-mime; smime-type=certs-only", an->p7_b64, an->p7_len);
}

static X509 *peer_cert(est_rq *rq)
{
    struct evhttp_connection *ec = evhttp_request_get_connection(rq->req);
    SSL *ssl = ec ? bufferevent_openssl_get_ssl(evhttp_connection_get_bufferevent(ec)) : NULL;
    return ssl ? SSL_get0_peer_certificate(ssl) : NULL;
}

/* The authenticated NF's registration; an unregistered NF is refused (403
 * unknown_nf; 500 when the state cannot be read). 0 loaded, -1 refused. */
static int load_nf(est_rq *rq, agent_nf *nf)
{
    int r = agent_nf_load(rq->t->db, rq->nf, false, nf);
    if (r == 1)
        return 0;
    atomic_fetch_add_explicit(&rq->a->ctr.refused_nf, 1, memory_order_relaxed);
    refuse(rq, r < 0 ? 500 : 403, "unknown_nf", "NF %s is not registered with this agent", rq->nf);
    return -1;
}

/* RFC 7030 §4.5: the attributes the NF's CSR should carry, for this NF:
 * the names simpleenroll would accept from this credential (its current
 * certificate's names; with a token the instance ID and its registered
 * dNSNames; with a bootstrap certificate the dNSNames) and the key type.
 * Authenticated like simpleenroll (§4.5.1 lets the server require it):
 * the names are the NF's, not for anyone who asks. */
static void handle_csrattrs(est_rq *rq)
{
    agent *a = rq->a;
    atomic_fetch_add_explicit(&a->ctr.csrattrs, 1, memory_order_relaxed);
    if (evhttp_request_get_command(rq->req) != EVHTTP_REQ_GET) {
        header(rq, "Allow", "GET");
        refuse(rq, 405, "method", "use GET");
        return;
    }
    if (authenticate(rq, false) != 0)
        return;
    agent_nf nf;
    if (load_nf(rq, &nf) != 0)
        return;
    X509 *peer = rq->client_cert[0] ? peer_cert(rq) : NULL;
    GENERAL_NAMES *names = peer ? X509_get_ext_d2i(peer, NID_subject_alt_name, NULL, NULL)
                                : est_names_new(rq->token && a->cfg->nf_instance_id ? rq->nf : NULL,
                                                (const char *const *)nf.dns, nf.n_dns);
    agent_nf_clear(&nf);
    uint8_t *der = NULL;
    size_t dl = 0, bl = 0;
    char *b64 = NULL;
    if (est_csrattrs_der(names, (est_key_type)a->cfg->est_key_type, &der, &dl) == 0)
        b64 = est_b64_encode(der, dl, &bl);
    GENERAL_NAMES_free(names);
    OPENSSL_free(der);
    if (!b64) {
        atomic_fetch_add_explicit(&a->ctr.errors, 1, memory_order_relaxed);
        refuse(rq, 500, "internal", "the CSR attributes cannot be encoded");
        return;
    }
    header(rq, "Content-Transfer-Encoding", "base64");
    rq->reason = "csrattrs";
    finish(rq, 200, "application/csrattrs", b64, bl);
    free(b64);
}

static void handle_enroll(est_rq *rq, bool reenroll)
{
    agent *a = rq->a;
    atomic_fetch_add_explicit(reenroll ? &a->ctr.reenroll : &a->ctr.enroll, 1, memory_order_relaxed);
    if (evhttp_request_get_command(rq->req) != EVHTTP_REQ_POST) {
        header(rq, "Allow", "POST");
        refuse(rq, 405, "method", "use POST");
        return;
    }
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(rq->req), "Content-Type");
    if (!ct || strncasecmp(ct, "application/pkcs10", 18) != 0) {
        refuse(rq, 415, "content_type", "the body is application/pkcs10 (RFC 7030 §4.2.1)");
        return;
    }
    if (authenticate(rq, reenroll) != 0)
        return;
    agent_nf nf;
    if (load_nf(rq, &nf) != 0)
        return;
    /* the body: base64 DER PKCS#10 */
    struct evbuffer *in = evhttp_request_get_input_buffer(rq->req);
    size_t bl = evbuffer_get_length(in);
    const char *body = (const char *)evbuffer_pullup(in, -1);
    uint8_t *der = malloc(EST_MAX_CSR);
    long dl = der && body ? est_b64_decode(body, bl, der, EST_MAX_CSR) : -1;
    est_err ee = EST_OK;
    char why[400] = "";
    if (dl <= 0) {
        ee = EST_E_BAD_ENCODING;
        snprintf(why, sizeof(why), "the body is not base64 of a DER PKCS#10 of at most %d octets", EST_MAX_CSR);
    } else if (est_csr_parse(der, (size_t)dl, &rq->csr, &ee, why, sizeof(why)) == 0) {
        if (est_csr_check(&rq->csr, rq->nf, a->cfg->nf_instance_id, (const char *const *)nf.dns, nf.n_dns, &ee, why,
                          sizeof(why)) == 0)
            ee = EST_OK;
    }
    free(der);
    char star_spki[sizeof(nf.star_spki)];
    snprintf(star_spki, sizeof(star_spki), "%s", nf.star_spki);
    agent_nf_clear(&nf);
    if (ee == EST_OK && reenroll) {
        /* RFC 7030 §4.2.2: the names of the certificate being renewed */
        struct evhttp_connection *ec = evhttp_request_get_connection(rq->req);
        SSL *ssl = ec ? bufferevent_openssl_get_ssl(evhttp_connection_get_bufferevent(ec)) : NULL;
        X509 *peer = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
        if (!peer || est_csr_same_names(&rq->csr, peer, &ee, why, sizeof(why)) != 0)
            ee = ee == EST_OK ? EST_E_REENROLL_NAMES : ee;
    }
    if (ee == EST_OK && rq->csr.uuid[0] && !rq->token && !reenroll) {
        /* TS 33.310: the NF instance ID is vouched for by the OAM's token
         * (tkauth-01); a bootstrap certificate alone does not carry one */
        atomic_fetch_add_explicit(&a->ctr.refused_token, 1, memory_order_relaxed);
        refuse(rq, 401, "token_needed", "the CSR names the NF instance ID (urn:uuid:): send the OAM's authority "
               "token for it (Authorization: Bearer), or enrol dns names only");
        return;
    }
    if (ee != EST_OK) {
        atomic_fetch_add_explicit(&a->ctr.refused_csr, 1, memory_order_relaxed);
        refuse(rq, est_err_status(ee), est_err_name(ee), "%s", why);
        return;
    }
    /* the key: one NF's only */
    acme_q q;
    if (acme_db_query(rq->t->db, &q, "SELECT nf FROM keys WHERE spki = ?", "s", rq->csr.spki_sha256) != 0) {
        refuse(rq, 500, "internal", "state read failed");
        return;
    }
    bool other = acme_q_next(&q) == 1 && strcmp(acme_q_text(&q, 0), rq->nf) != 0;
    acme_q_end(&q);
    if (other) {
        atomic_fetch_add_explicit(&a->ctr.refused_key, 1, memory_order_relaxed);
        refuse(rq, 403, "key_reused", "the CSR's public key belongs to another NF; each NF enrols its own key");
        return;
    }
    if (star_spki[0] && strcmp(star_spki, rq->csr.spki_sha256) != 0) {
        /* RFC 8739: the STAR order's certificates are all for the key its
         * CSR had; a new key would need a new order (nf remove, nf add) */
        atomic_fetch_add_explicit(&a->ctr.refused_csr, 1, memory_order_relaxed);
        refuse(rq, 403, "star_key", "this NF holds a STAR order (RFC 8739) for another public key: the CSR must "
               "carry the key of the NF's STAR certificates");
        return;
    }
    /* a certificate ready for this key: a renewal made ahead (ARI), or a
     * first enrolment's answer the NF did not get */
    if (acme_db_query(rq->t->db, &q,
                      "SELECT id, chain, not_after FROM certs WHERE nf = ? AND spki = ? AND not_after > ? "
                      "ORDER BY not_after DESC LIMIT 1",
                      "ssi", rq->nf, rq->csr.spki_sha256, agent_now()) != 0) {
        refuse(rq, 500, "internal", "state read failed");
        return;
    }
    if (acme_q_next(&q) == 1 && !(reenroll && (strcmp(acme_q_text(&q, 0), rq->client_cert) == 0 ||
                                               acme_q_int(&q, 2) <= rq->client_not_after))) {
        char *chain = strdup(acme_q_text(&q, 1));
        acme_q_end(&q);
        rq->reason = reenroll ? "renewed_ready" : "issued_before";
        if (chain)
            answer_chain(rq, chain);
        else
            refuse(rq, 500, "internal", "out of memory");
        free(chain);
        return;
    }
    acme_q_end(&q);
    /* the latest enrolment for this key: in progress → wait on it; failed
     * and not yet told → tell */
    if (acme_db_query(rq->t->db, &q,
                      "SELECT id, status, reported FROM enrolments WHERE nf = ? AND spki = ? ORDER BY created DESC "
                      "LIMIT 1",
                      "ss", rq->nf, rq->csr.spki_sha256) != 0) {
        refuse(rq, 500, "internal", "state read failed");
        return;
    }
    if (acme_q_next(&q) == 1) {
        const char *st = acme_q_text(&q, 1);
        bool answer = strcmp(st, AGENT_ST_PENDING) == 0 || (strcmp(st, AGENT_ST_FAILED) == 0 && !acme_q_int(&q, 2));
        if (answer) {
            snprintf(rq->enrolment, sizeof(rq->enrolment), "%s", acme_q_text(&q, 0));
            acme_q_end(&q);
            answer_enrolment(rq, true);
            return;
        }
    }
    acme_q_end(&q);
    create *c = calloc(1, sizeof(*c));
    if (!c || acme_random_id(c->id, 16) != 0) {
        free(c);
        refuse(rq, 500, "internal", "out of memory");
        return;
    }
    snprintf(c->nf, sizeof(c->nf), "%s", rq->nf);
    snprintf(c->spki, sizeof(c->spki), "%s", rq->csr.spki_sha256);
    if (rq->token) {
        snprintf(c->jti, sizeof(c->jti), "%s", rq->claims.jti);
        c->jti_exp = rq->claims.exp;
    }
    c->csr = rq->csr.der;
    c->csr_len = rq->csr.der_len;
    c->token = rq->token;
    c->kind = reenroll ? "reenroll" : "enroll";
    c->now = agent_now();
    submit(rq, tx_create, c, create_done);
}

/* A connection counts against its address from its first request on
 * (limits.max_connections_per_address): one client holding many
 * connections cannot lock the other NFs out. Over the limit: 503 with
 * Retry-After, and the connection closed. Returns 0 to go on. */
static int address_limit(est_rq *rq, struct evhttp_connection *ec)
{
    if (acme_connaddr_take(ec, rq->t->e->addrs, rq->addr) == 0)
        return 0;
    atomic_fetch_add_explicit(&rq->a->ctr.refused_address, 1, memory_order_relaxed);
    header(rq, "Retry-After", "1");
    header(rq, "Connection", "close");
    refuse(rq, 503, "address_limit",
           "too many connections from %s (limits.max_connections_per_address = %u); close one or "
           "retry later",
           rq->addr, rq->a->cfg->max_connections_per_address);
    return -1;
}

static void gen_cb(struct evhttp_request *req, void *arg)
{
    est_thread *t = arg;
    est_rq *rq = calloc(1, sizeof(*rq));
    if (!rq) {
        evhttp_send_error(req, 503, "out of memory");
        return;
    }
    rq->req = req;
    rq->t = t;
    rq->a = t->e->a;
    rq->t0_ns = mono_ns();
    rq->op = "-";
    struct evhttp_connection *ec = evhttp_request_get_connection(req);
    if (ec) {
        char *host = NULL;
        ev_uint16_t port = 0;
        evhttp_connection_get_peer(ec, &host, &port);
        snprintf(rq->addr, sizeof(rq->addr), "%s", host ? host : "-");
    }
    if (address_limit(rq, ec) != 0)
        return;
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    if (!path || strncmp(path, EST_PREFIX, strlen(EST_PREFIX)) != 0) {
        refuse(rq, 404, "not_found", "EST lives under " EST_PREFIX);
        return;
    }
    const char *op = path + strlen(EST_PREFIX);
    if (strcmp(op, "cacerts") == 0) {
        rq->op = "cacerts";
        if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
            header(rq, "Allow", "GET");
            refuse(rq, 405, "method", "use GET");
            return;
        }
        handle_cacerts(rq);
    } else if (strcmp(op, "simpleenroll") == 0) {
        rq->op = "simpleenroll";
        handle_enroll(rq, false);
    } else if (strcmp(op, "simplereenroll") == 0) {
        rq->op = "simplereenroll";
        handle_enroll(rq, true);
    } else if (strcmp(op, "csrattrs") == 0) {
        rq->op = "csrattrs";
        handle_csrattrs(rq);
    } else if (strcmp(op, "serverkeygen") == 0 || strcmp(op, "fullcmc") == 0) {
        /* optional in RFC 7030 (§4.3, §4.4); server key generation would
         * make the NF's private key outside the NF, and full CMC is not
         * needed for what the NFs ask */
        rq->op = strcmp(op, "fullcmc") == 0 ? "fullcmc" : "serverkeygen";
        refuse(rq, 501, "not_offered",
               "%s is not offered: the NF makes its own key and sends a CSR to simpleenroll (NF keys never leave "
               "the NF)",
               rq->op);
    } else {
        refuse(rq, 404, "not_found", "%s is not an EST operation of this agent (cacerts, csrattrs, simpleenroll, "
               "simplereenroll)", op);
    }
}

/* ------------------------------------------------------------ TLS and loops */

static int verify_any(int ok, X509_STORE_CTX *ctx)
{
    return 1; /* decided per request in authenticate(), with a reason */
}

static void ssl_free_cb(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    est_thread *t = ptr;
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

static struct bufferevent *bev_cb(struct event_base *base, void *arg)
{
    est_thread *t = arg;
    SSL *ssl = SSL_new(t->e->ctx);
    if (!ssl)
        return NULL;
    SSL_set_ex_data(ssl, ssl_thread_idx, t);
    t->conns++;
    if (t->conns >= t->max_conns && !t->paused) {
        struct evconnlistener *l = evhttp_bound_socket_get_listener(t->bound);
        if (l)
            evconnlistener_disable(l);
        t->paused = true;
        agent_log(t->e->a, AGENT_LOG_WARNING, "event=max_connections thread=%u open=%u", t->idx, t->conns);
    }
    return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                          BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
}

static int listen_socket(const agent_cfg *cfg, char *err, size_t errlen)
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
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
        listen(fd, 4096) != 0) {
        snprintf(err, errlen, "listen %s:%s: %s", cfg->listen_host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static void *loop_main(void *arg)
{
    est_thread *t = arg;
    char name[16];
    snprintf(name, sizeof(name), "est-http/%u", t->idx);
    pthread_setname_np(pthread_self(), name);
    event_base_dispatch(t->base);
    return NULL;
}

int agent_est_new(agent *a, agent_est **out, char *err, size_t errlen)
{
    const agent_cfg *cfg = a->cfg;
    agent_est *e = calloc(1, sizeof(*e));
    *out = e;
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    e->a = a;
    pthread_mutex_init(&e->park_mu, NULL);
    if (evthread_use_pthreads() != 0) {
        snprintf(err, errlen, "libevent: no pthreads support");
        return -1;
    }
    if (ssl_thread_idx < 0)
        ssl_thread_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, ssl_free_cb);
    if (!(e->addrs = cf_addrcount_new(a->cfg->max_connections_per_address)) || acme_connaddr_init() != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    SSL_CTX *ctx = e->ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "SSL_CTX_new failed");
        return -1;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert_file) != 1) {
        snprintf(err, errlen, "TLS certificate %s: %s", cfg->tls_cert_file,
                 ERR_reason_error_string(ERR_peek_last_error()));
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "TLS key %s: %s (does it belong to %s?)", cfg->tls_key_file,
                 ERR_reason_error_string(ERR_peek_last_error()), cfg->tls_cert_file);
        return -1;
    }
    /* RFC 7030 §3.3.2: the server requests a client certificate; whether it
     * is good enough is decided per request */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_any);
    static const unsigned char sid[] = "certforge-agent";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
    ERR_clear_error();
    e->n = cfg->threads;
    if (!(e->t = calloc(e->n, sizeof(*e->t)))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    unsigned per = (cfg->max_connections + e->n - 1) / e->n;
    for (unsigned i = 0; i < e->n; i++) {
        est_thread *t = calloc(1, sizeof(*t));
        if (!t) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        e->t[i] = t;
        t->e = e;
        t->idx = i;
        t->fd = -1;
        t->max_conns = per ? per : 1;
        pthread_mutex_init(&t->post_mu, NULL);
        if (!(t->base = event_base_new()) || !(t->http = evhttp_new(t->base)) ||
            !(t->post_ev = event_new(t->base, -1, 0, post_cb, t))) {
            snprintf(err, errlen, "libevent: cannot create an event loop");
            return -1;
        }
        if (!(t->db = acme_db_open_reader(a->store, err, errlen)))
            return -1;
        evhttp_set_allowed_methods(t->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
        evhttp_set_max_body_size(t->http, cfg->max_body);
        evhttp_set_max_headers_size(t->http, cfg->max_headers);
        evhttp_set_timeout(t->http, (int)cfg->request_timeout_s);
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

int agent_est_start(agent_est *e, char *err, size_t errlen)
{
    for (unsigned i = 0; i < e->n; i++)
        if (pthread_create(&e->t[i]->tid, NULL, loop_main, e->t[i]) != 0) {
            snprintf(err, errlen, "cannot start EST thread %u", i);
            return -1;
        }
    return 0;
}

static void stop_cb(void *arg)
{
    est_thread *t = arg;
    if (t->bound)
        evhttp_del_accept_socket(t->http, t->bound);
    t->bound = NULL;
    event_base_loopexit(t->base, NULL);
}

void agent_est_stop(agent_est *e)
{
    if (!e)
        return;
    for (unsigned i = 0; i < e->n; i++)
        if (e->t[i] && e->t[i]->tid)
            thread_post(e->t[i], stop_cb, e->t[i]);
    for (unsigned i = 0; i < e->n; i++)
        if (e->t[i] && e->t[i]->tid) {
            pthread_join(e->t[i]->tid, NULL);
            e->t[i]->tid = 0;
        }
}

void agent_est_free(agent_est *e)
{
    if (!e)
        return;
    /* requests still parked: answered (to nobody) and freed */
    for (unsigned b = 0; b < PARK_BUCKETS; b++)
        for (park *p = e->parks[b], *n; p; p = n) {
            n = p->next;
            thread_post(p->rq->t, wake_cb, p->rq);
            free(p);
        }
    for (unsigned i = 0; e->t && i < e->n; i++) {
        est_thread *t = e->t[i];
        if (!t)
            continue;
        post_cb(-1, 0, t);
        if (t->http)
            evhttp_free(t->http);
        post_cb(-1, 0, t);
        if (t->post_ev)
            event_free(t->post_ev);
        if (t->base)
            event_base_free(t->base);
        acme_db_close(t->db);
        pthread_mutex_destroy(&t->post_mu);
        free(t);
    }
    free(e->t);
    SSL_CTX_free(e->ctx);
    cf_addrcount_free(e->addrs); /* after every connection's SSL was freed */
    pthread_mutex_destroy(&e->park_mu);
    free(e);
}
