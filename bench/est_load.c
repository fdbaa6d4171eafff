/* est-load — N Network Functions enrolling at once through certforge-agent
 * over EST (RFC 7030), as NFs would (issue 15, "Scale").
 *
 *   est-load --make-nfs N --domain ZONE            JSON lines for `nf import`
 *   est-load --connect 127.0.0.1:PORT --ca EST-ROOT.pem --nfs FILE.jsonl
 *            --vendor-cert V.pem --vendor-key V.key
 *            [--threads T] [--ramp S] [--timeout S] [--json FILE] [--ready FILE] [--quiet]
 *
 * Before the clock starts (set-up, timed apart): for every NF of FILE (one
 * {"nf_instance_id": UUID, "dns": [NAMES]} per line, the file given to
 * `certforge-agent nf import`) a P-256 bootstrap key and certificate from
 * the vendor CA (--vendor-cert/--vendor-key; URI SAN urn:uuid:UUID,
 * clientAuth), and a fresh P-256 key with its PKCS#10 CSR naming the NF's
 * dns names (dNSNames, subject CN the first).
 *
 * Then every NF, at once (or spread over --ramp seconds), opens its own
 * TLS connection to the agent with its bootstrap certificate as client
 * certificate (the server verified against --ca) and POSTs
 * /.well-known/est/simpleenroll (application/pkcs10, base64 DER). 202 or
 * 503 is answered by the same request again after Retry-After (RFC 7030
 * §4.2.3), on the same keep-alive connection or a new one if it closed. A
 * 200 must be application/pkcs7-mime certs-only whose certificate has the
 * CSR's public key and the NF's first dns name: then the NF is enrolled.
 * Anything else (or --timeout seconds without a certificate) fails it.
 *
 * Per NF: "first answer" (connect + TLS + the first HTTP answer, 200 or
 * 202), "certificate" (first request sent → 200), the number of requests.
 * Output: enrolments per second (all of them over the time to the last;
 * and between the 10th and 90th percentile of completions, which leaves
 * out the ramp-up and the tail), answers by status, latency percentiles
 * (bench_hist), --json for the script. Exit status: 0 every NF enrolled;
 * 1 one failed or the set-up did; 2 usage.
 *
 * Threads: --threads event loops (el-load/N), NFs spread over them. */
#include "bench/bench_hist.h"

#include <arpa/inet.h>
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
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
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
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define EL_MAX_NFS 100000
#define EL_MAX_THREADS 64
#define EL_MAX_DNS 8
#define EL_MAX_BODY (256u * 1024u)
#define EL_REQ_TIMEOUT_S                                                                           \
    60 /* one request unanswered this long: the connection is dropped, the NF retries */
#define EL_MAX_TRIES 1000
#define EL_PATH "/.well-known/est/simpleenroll"

typedef enum el_step { EL_FIRST, EL_CERT, EL_STEP__MAX } el_step;
static const char *const STEP_NAMES[EL_STEP__MAX] = {
    [EL_FIRST] = "first answer", [EL_CERT] = "certificate"};

typedef struct el_cfg {
    char connect_ip[64];
    unsigned connect_port;
    const char *ca, *nfs, *vendor_cert, *vendor_key, *json, *ready, *domain;
    unsigned threads, timeout_s, make_nfs;
    double ramp;
    bool quiet;
} el_cfg;
static el_cfg G;
static SSL_CTX *g_ssl;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

typedef struct el_worker el_worker;

typedef struct el_nf {
    el_worker *w;
    char id[37];
    char dns0[256];
    X509 *boot;
    EVP_PKEY *boot_key;
    uint8_t *spki; /* the CSR key's SubjectPublicKeyInfo, to check the certificate */
    int spki_len;
    char *body; /* base64 CSR */
    size_t body_len;
    struct evhttp_connection *conn;
    struct event *timer;
    uint64_t t_start, t_first_req;
    unsigned tries;
    bool answered, done, conn_dead;
} el_nf;

typedef struct el_stats {
    bench_hist h[EL_STEP__MAX];
    uint64_t ok, failed, requests, s200, s202, s503, s_other, transport, reconnects;
    uint64_t *t_done; /* completion times (ns from t0) of this worker's NFs */
    unsigned n_done;
    char first_err[300];
} el_stats;

struct el_worker {
    unsigned id;
    pthread_t thr;
    struct event_base *base;
    el_nf *nfs;
    unsigned n, active;
    el_stats st;
};

static el_worker *g_workers;
static uint64_t g_t0;
static pthread_barrier_t g_go;

/* ------------------------------------------------------------ set-up */

static EVP_PKEY *p256(void)
{
    return EVP_EC_gen("P-256");
}

static X509 *g_vendor;
static EVP_PKEY *g_vendor_key;

static int add_ext(X509 *cert, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, g_vendor, cert, NULL, NULL, 0);
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    int ok = ex && X509_add_ext(cert, ex, -1) == 1;
    X509_EXTENSION_free(ex);
    return ok ? 0 : -1;
}

/* The NF's bootstrap certificate from the vendor CA: URI SAN urn:uuid:ID. */
static int make_bootstrap(el_nf *nf)
{
    char san[64];
    X509 *c = X509_new();
    if (!c || !(nf->boot_key = p256()))
        goto fail;
    uint8_t serial[16];
    if (RAND_bytes(serial, sizeof(serial)) != 1)
        goto fail;
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    int ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c)) != NULL;
    BN_free(bn);
    if (!ok || X509_set_version(c, 2) != 1 ||
        X509_set_issuer_name(c, X509_get_subject_name(g_vendor)) != 1 ||
        !X509_gmtime_adj(X509_getm_notBefore(c), -300) ||
        !X509_gmtime_adj(X509_getm_notAfter(c), 2 * 86400))
        goto fail;
    X509_NAME *sn = X509_get_subject_name(c);
    if (X509_NAME_add_entry_by_txt(sn, "CN", MBSTRING_ASC, (const unsigned char *)nf->id, -1, -1,
                                   0) != 1 ||
        X509_set_pubkey(c, nf->boot_key) != 1)
        goto fail;
    snprintf(san, sizeof(san), "URI:urn:uuid:%s", nf->id);
    if (add_ext(c, NID_subject_alt_name, san) || add_ext(c, NID_ext_key_usage, "clientAuth") ||
        add_ext(c, NID_basic_constraints, "critical,CA:FALSE") ||
        X509_sign(c, g_vendor_key, EVP_sha256()) <= 0)
        goto fail;
    nf->boot = c;
    return 0;
fail:
    X509_free(c);
    return -1;
}

/* A fresh P-256 key and its CSR: CN the first dns name, SAN every one. */
static int make_csr(el_nf *nf, const char *const *dns, unsigned n)
{
    int rc = -1;
    EVP_PKEY *k = p256();
    X509_REQ *r = X509_REQ_new();
    GENERAL_NAMES *gns = GENERAL_NAMES_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    uint8_t *der = NULL;
    if (!k || !r || !gns || !exts)
        goto out;
    for (unsigned i = 0; i < n; i++) {
        GENERAL_NAME *g = GENERAL_NAME_new();
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        if (!g || !s || ASN1_STRING_set(s, dns[i], -1) != 1) {
            GENERAL_NAME_free(g);
            ASN1_IA5STRING_free(s);
            goto out;
        }
        GENERAL_NAME_set0_value(g, GEN_DNS, s);
        sk_GENERAL_NAME_push(gns, g);
    }
    X509_EXTENSION *ex = X509V3_EXT_i2d(NID_subject_alt_name, 0, gns);
    if (!ex || !sk_X509_EXTENSION_push(exts, ex)) {
        X509_EXTENSION_free(ex);
        goto out;
    }
    X509_NAME *sn = X509_REQ_get_subject_name(r);
    if (X509_NAME_add_entry_by_txt(sn, "CN", MBSTRING_ASC, (const unsigned char *)dns[0], -1, -1,
                                   0) != 1 ||
        X509_REQ_set_pubkey(r, k) != 1 || X509_REQ_add_extensions(r, exts) != 1 ||
        X509_REQ_sign(r, k, EVP_sha256()) <= 0)
        goto out;
    int dl = i2d_X509_REQ(r, &der);
    if (dl <= 0 || (nf->spki_len = i2d_PUBKEY(k, &nf->spki)) <= 0)
        goto out;
    size_t cap = 4 * (((size_t)dl + 2) / 3) + 1;
    if (!(nf->body = malloc(cap)))
        goto out;
    nf->body_len = (size_t)EVP_EncodeBlock((unsigned char *)nf->body, der, dl);
    rc = 0;
out:
    OPENSSL_free(der);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    GENERAL_NAMES_free(gns);
    X509_REQ_free(r);
    EVP_PKEY_free(k);
    return rc;
}

/* ------------------------------------------------------------ the enrolment */

static void nf_send(el_nf *nf);

static void nf_fail(el_nf *nf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void nf_fail(el_nf *nf, const char *fmt, ...)
{
    el_stats *s = &nf->w->st;
    s->failed++;
    if (!s->first_err[0]) {
        va_list ap;
        va_start(ap, fmt);
        int k = snprintf(s->first_err, sizeof(s->first_err), "NF %s: ", nf->id);
        if (k > 0 && (size_t)k < sizeof(s->first_err))
            vsnprintf(s->first_err + k, sizeof(s->first_err) - (size_t)k, fmt, ap);
        va_end(ap);
    }
    nf->done = true;
    if (--nf->w->active == 0)
        event_base_loopbreak(nf->w->base);
}

static int conn_new(el_nf *nf)
{
    SSL *ssl = SSL_new(g_ssl);
    if (!ssl)
        return -1;
    if (SSL_use_certificate(ssl, nf->boot) != 1 || SSL_use_PrivateKey(ssl, nf->boot_key) != 1 ||
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), G.connect_ip) != 1) {
        SSL_free(ssl);
        return -1;
    }
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(nf->w->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                       BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!bev) {
        SSL_free(ssl);
        return -1;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    nf->conn = evhttp_connection_base_bufferevent_new(nf->w->base, NULL, bev, G.connect_ip,
                                                      (ev_uint16_t)G.connect_port);
    if (!nf->conn) {
        bufferevent_free(bev);
        return -1;
    }
    evhttp_connection_set_timeout(nf->conn, EL_REQ_TIMEOUT_S);
    evhttp_connection_set_retries(nf->conn, 0);
    evhttp_connection_set_max_body_size(nf->conn, EL_MAX_BODY);
    nf->conn_dead = false;
    return 0;
}

/* The certificate in a base64 PKCS#7 certs-only body: the CSR's key and
 * the NF's first dns name in its SAN. */
static int check_cert(el_nf *nf, const char *b64, size_t len)
{
    int ok = 0;
    uint8_t *der = malloc(len);
    EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
    PKCS7 *p7 = NULL;
    uint8_t *spki = NULL;
    GENERAL_NAMES *gns = NULL;
    int n = 0, n2 = 0;
    if (!der || !ctx)
        goto out;
    EVP_DecodeInit(ctx);
    if (EVP_DecodeUpdate(ctx, der, &n, (const unsigned char *)b64, (int)len) < 0 ||
        EVP_DecodeFinal(ctx, der + n, &n2) != 1)
        goto out;
    const unsigned char *p = der;
    if (!(p7 = d2i_PKCS7(NULL, &p, n + n2)) || !PKCS7_type_is_signed(p7) || !p7->d.sign->cert ||
        sk_X509_num(p7->d.sign->cert) < 1)
        goto out;
    X509 *c = sk_X509_value(p7->d.sign->cert, 0);
    int sl = i2d_PUBKEY(X509_get0_pubkey(c), &spki);
    if (sl != nf->spki_len || memcmp(spki, nf->spki, (size_t)sl) != 0)
        goto out;
    gns = X509_get_ext_d2i(c, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; gns && i < sk_GENERAL_NAME_num(gns); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gns, i);
        if (g->type == GEN_DNS && (size_t)ASN1_STRING_length(g->d.dNSName) == strlen(nf->dns0) &&
            memcmp(ASN1_STRING_get0_data(g->d.dNSName), nf->dns0, strlen(nf->dns0)) == 0)
            ok = 1;
    }
out:
    GENERAL_NAMES_free(gns);
    OPENSSL_free(spki);
    PKCS7_free(p7);
    EVP_ENCODE_CTX_free(ctx);
    free(der);
    return ok;
}

/* The NF's one timer: its start, a request again after Retry-After, or
 * (once enrolled) closing its connection, outside evhttp's callbacks. */
static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    el_nf *nf = arg;
    if (nf->done) {
        if (nf->conn)
            evhttp_connection_free(nf->conn);
        nf->conn = NULL;
        return;
    }
    if (!nf->t_start)
        nf->t_start = now_ns();
    if (nf->conn_dead) {
        evhttp_connection_free(nf->conn);
        nf->conn = NULL;
        nf->w->st.reconnects++;
        if (conn_new(nf) != 0) {
            nf_fail(nf, "cannot make a connection");
            return;
        }
    }
    nf_send(nf);
}

static void again(el_nf *nf, unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(nf->timer, &tv);
}

static void http_done(struct evhttp_request *req, void *arg)
{
    el_nf *nf = arg;
    el_stats *s = &nf->w->st;
    uint64_t t = now_ns();
    if (G.timeout_s && t - nf->t_start > (uint64_t)G.timeout_s * 1000000000ull) {
        nf->conn_dead = true;
        nf_fail(nf, "no certificate after %u s (%u requests)", G.timeout_s, nf->tries);
        return;
    }
    int code = req ? evhttp_request_get_response_code(req) : 0;
    if (code == 0) { /* connection refused, closed or timed out: retry on a new one */
        s->transport++;
        nf->conn_dead = true;
        if (nf->tries >= EL_MAX_TRIES) {
            nf_fail(nf, "transport failures, %u requests", nf->tries);
            return;
        }
        again(nf, 500);
        return;
    }
    if (!nf->answered) {
        nf->answered = true;
        bench_hist_record(&s->h[EL_FIRST], t - nf->t_start);
    }
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *body = len ? (const char *)evbuffer_pullup(in, -1) : "";
    if (code == 202 || code == 503) {
        if (code == 202)
            s->s202++;
        else
            s->s503++;
        const char *ra = evhttp_find_header(h, "Retry-After");
        char *end = NULL;
        unsigned long v = ra ? strtoul(ra, &end, 10) : 0;
        if (!ra || end == ra || *end || v > 3600) {
            nf_fail(nf, "HTTP %d without a valid Retry-After", code);
            return;
        }
        if (nf->tries >= EL_MAX_TRIES) {
            nf_fail(nf, "still %d after %u requests", code, nf->tries);
            return;
        }
        const char *cl = evhttp_find_header(h, "Connection");
        if (cl && strcasecmp(cl, "close") == 0)
            nf->conn_dead = true;
        again(nf, (unsigned)v * 1000);
        return;
    }
    if (code != 200) {
        s->s_other++;
        nf_fail(nf, "HTTP %d: %.*s", code, (int)(len > 200 ? 200 : len), body);
        return;
    }
    s->s200++;
    const char *ct = evhttp_find_header(h, "Content-Type");
    if (!ct || strncmp(ct, "application/pkcs7-mime", 22) != 0 || !check_cert(nf, body, len)) {
        nf_fail(
            nf,
            "200 whose body is not a certs-only PKCS#7 with the CSR's key and %s (Content-Type %s)",
            nf->dns0, ct ? ct : "none");
        return;
    }
    bench_hist_record(&s->h[EL_CERT], t - nf->t_first_req);
    s->ok++;
    s->t_done[s->n_done++] = t - g_t0;
    nf->done = true;
    again(nf, 0); /* the NF has its certificate: it closes its connection */
    if (--nf->w->active == 0)
        event_base_loopbreak(nf->w->base);
}

static void nf_send(el_nf *nf)
{
    struct evhttp_request *req = evhttp_request_new(http_done, nf);
    if (!req) {
        nf_fail(nf, "out of memory");
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char host[80];
    snprintf(host, sizeof(host), "%s:%u", G.connect_ip, G.connect_port);
    evhttp_add_header(h, "Host", host);
    evhttp_add_header(h, "Content-Type", "application/pkcs10");
    evhttp_add_header(h, "Content-Transfer-Encoding", "base64");
    evbuffer_add(evhttp_request_get_output_buffer(req), nf->body, nf->body_len);
    uint64_t t = now_ns();
    if (!nf->t_first_req)
        nf->t_first_req = t;
    nf->tries++;
    nf->w->st.requests++;
    if (evhttp_make_request(nf->conn, req, EVHTTP_REQ_POST, EL_PATH) != 0) {
        nf->conn_dead = true;
        nf->w->st.transport++;
        again(nf, 500);
        return;
    }
    /* evhttp made the socket just now: the body must not wait for the ACK of the headers */
    evutil_socket_t fd = bufferevent_getfd(evhttp_connection_get_bufferevent(nf->conn));
    int one = 1;
    if (fd >= 0)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void *worker_main(void *arg)
{
    el_worker *w = arg;
    char nm[16];
    snprintf(nm, sizeof(nm), "el-load/%u", w->id);
    pthread_setname_np(pthread_self(), nm);
    pthread_barrier_wait(&g_go);
    w->active = w->n;
    /* every NF at once, or spread evenly over --ramp (its start time by its global index) */
    for (unsigned i = 0; i < w->n; i++) {
        el_nf *nf = &w->nfs[i];
        double at =
            G.ramp > 0 ? G.ramp * (double)(i * G.threads + w->id) / (double)(w->n * G.threads) : 0;
        struct timeval tv = {.tv_sec = (time_t)at,
                             .tv_usec = (suseconds_t)((at - (double)(time_t)at) * 1e6)};
        evtimer_add(nf->timer, &tv);
    }
    if (w->n)
        event_base_dispatch(w->base);
    return NULL;
}

/* ------------------------------------------------------------ main */

static int parse_uint(const char *opt, const char *s, unsigned long lo, unsigned long hi,
                      unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi) {
        fprintf(stderr, "est-load: %s: '%s' is not a whole number in %lu..%lu\n", opt, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int make_nfs(void)
{
    for (unsigned i = 0; i < G.make_nfs; i++) {
        uint8_t u[16];
        if (RAND_bytes(u, sizeof(u)) != 1)
            return 1;
        u[6] = (u[6] & 0x0f) | 0x40; /* RFC 9562 version 4 */
        u[8] = (u[8] & 0x3f) | 0x80;
        char id[37];
        snprintf(id, sizeof(id),
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
                 u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
                 u[15]);
        printf("{\"nf_instance_id\":\"%s\",\"dns\":[\"nf-%.8s-%u.%s\"]}\n", id, id, i, G.domain);
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static double cpu_now_s(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: est-load --make-nfs N --domain ZONE\n"
        "       est-load --connect IP:PORT --ca EST-ROOT.pem --nfs FILE.jsonl --vendor-cert V.pem "
        "--vendor-key V.key\n"
        "                [--threads T] [--ramp S] [--timeout S] [--json FILE] [--ready FILE] "
        "[--quiet]\n"
        "--make-nfs prints N JSON lines {\"nf_instance_id\", \"dns\": [nf-XXXXXXXX-I.ZONE]} for\n"
        "`certforge-agent nf import`. Otherwise every NF of FILE enrols at once (or spread over\n"
        "--ramp seconds) through certforge-agent's EST /simpleenroll with a bootstrap certificate\n"
        "from the vendor CA and a fresh P-256 CSR, asking again after Retry-After on 202/503.\n"
        "--ready: a file touched when the set-up is done and the clock starts. Defaults: 2\n"
        "threads, no ramp, timeout 600 s per NF.\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"connect", required_argument, 0, 'c'},
        {"ca", required_argument, 0, 'a'},
        {"nfs", required_argument, 0, 'n'},
        {"vendor-cert", required_argument, 0, 'V'},
        {"vendor-key", required_argument, 0, 'K'},
        {"threads", required_argument, 0, 't'},
        {"ramp", required_argument, 0, 'r'},
        {"timeout", required_argument, 0, 'T'},
        {"json", required_argument, 0, 'j'},
        {"ready", required_argument, 0, 'R'},
        {"make-nfs", required_argument, 0, 'M'},
        {"domain", required_argument, 0, 'D'},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    G.threads = 2;
    G.timeout_s = 600;
    bool have_conn = false;
    unsigned long v;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'c': {
            const char *colon = strrchr(optarg, ':');
            struct in_addr a;
            if (!colon || (size_t)(colon - optarg) >= sizeof(G.connect_ip)) {
                fprintf(stderr, "est-load: --connect: '%s' is not IPv4:PORT\n", optarg);
                return 2;
            }
            snprintf(G.connect_ip, sizeof(G.connect_ip), "%.*s", (int)(colon - optarg), optarg);
            if (inet_pton(AF_INET, G.connect_ip, &a) != 1) {
                fprintf(stderr, "est-load: --connect: '%s' is not an IPv4 address\n", G.connect_ip);
                return 2;
            }
            if (parse_uint("--connect", colon + 1, 1, 65535, &v) != 0)
                return 2;
            G.connect_port = (unsigned)v;
            have_conn = true;
            break;
        }
        case 'a':
            G.ca = optarg;
            break;
        case 'n':
            G.nfs = optarg;
            break;
        case 'V':
            G.vendor_cert = optarg;
            break;
        case 'K':
            G.vendor_key = optarg;
            break;
        case 't':
            if (parse_uint("--threads", optarg, 1, EL_MAX_THREADS, &v) != 0)
                return 2;
            G.threads = (unsigned)v;
            break;
        case 'r': {
            char *end;
            G.ramp = strtod(optarg, &end);
            if (end == optarg || *end || !(G.ramp >= 0 && G.ramp <= 3600)) {
                fprintf(stderr, "est-load: --ramp: '%s' is not a number of seconds in 0..3600\n",
                        optarg);
                return 2;
            }
            break;
        }
        case 'T':
            if (parse_uint("--timeout", optarg, 1, 86400, &v) != 0)
                return 2;
            G.timeout_s = (unsigned)v;
            break;
        case 'j':
            G.json = optarg;
            break;
        case 'R':
            G.ready = optarg;
            break;
        case 'M':
            if (parse_uint("--make-nfs", optarg, 1, EL_MAX_NFS, &v) != 0)
                return 2;
            G.make_nfs = (unsigned)v;
            break;
        case 'D':
            G.domain = optarg;
            break;
        case 'q':
            G.quiet = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "est-load: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (G.make_nfs) {
        if (!G.domain || !G.domain[0] || strlen(G.domain) > 200 ||
            strspn(G.domain, "abcdefghijklmnopqrstuvwxyz0123456789-.") != strlen(G.domain)) {
            fprintf(stderr, "est-load: --make-nfs needs --domain, a lower-case DNS zone\n");
            return 2;
        }
        return make_nfs();
    }
    if (!have_conn || !G.ca || !G.nfs || !G.vendor_cert || !G.vendor_key) {
        fprintf(stderr,
                "est-load: --connect, --ca, --nfs, --vendor-cert and --vendor-key are required\n");
        usage(stderr);
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    if (evthread_use_pthreads() != 0) {
        fprintf(stderr, "est-load: libevent threads unavailable\n");
        return 1;
    }
    /* one socket per NF: ask for as many descriptors as the hard limit allows */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    FILE *f = fopen(G.vendor_cert, "r");
    g_vendor = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    f = fopen(G.vendor_key, "r");
    g_vendor_key = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    if (!g_vendor || !g_vendor_key || X509_check_private_key(g_vendor, g_vendor_key) != 1) {
        fprintf(
            stderr,
            "est-load: --vendor-cert/--vendor-key: not a PEM certificate and its private key\n");
        return 2;
    }
    if (!(g_ssl = SSL_CTX_new(TLS_client_method()))) {
        fprintf(stderr, "est-load: OpenSSL initialisation failed\n");
        return 1;
    }
    SSL_CTX_set_min_proto_version(g_ssl, TLS1_2_VERSION);
    SSL_CTX_set_verify(g_ssl, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(g_ssl, G.ca, NULL) != 1) {
        fprintf(stderr, "est-load: --ca %s: not a readable PEM certificate file\n", G.ca);
        return 2;
    }

    /* the NFs */
    f = fopen(G.nfs, "r");
    if (!f) {
        fprintf(stderr, "est-load: --nfs %s: %s\n", G.nfs, strerror(errno));
        return 2;
    }
    el_nf *nfs = calloc(EL_MAX_NFS, sizeof(*nfs));
    if (!nfs) {
        fclose(f);
        fprintf(stderr, "est-load: out of memory\n");
        return 1;
    }
    unsigned n = 0, ln = 0;
    char line[8192];
    uint64_t t_setup = now_ns();
    int rc = 1;
    while (fgets(line, sizeof(line), f)) {
        ln++;
        if (line[strspn(line, " \t\r\n")] == '\0')
            continue;
        json_t *j = json_loads(line, 0, NULL);
        const char *id = json_string_value(json_object_get(j, "nf_instance_id"));
        json_t *d = json_object_get(j, "dns");
        const char *dns[EL_MAX_DNS];
        unsigned nd = 0;
        for (size_t i = 0; i < json_array_size(d) && nd < EL_MAX_DNS; i++)
            if (json_string_value(json_array_get(d, i)))
                dns[nd++] = json_string_value(json_array_get(d, i));
        if (!id || strlen(id) != 36 || nd == 0 || n == EL_MAX_NFS) {
            fprintf(stderr,
                    "est-load: %s:%u: not {\"nf_instance_id\": UUID, \"dns\": [NAMES]} (or more "
                    "than %d NFs)\n",
                    G.nfs, ln, EL_MAX_NFS);
            json_decref(j);
            fclose(f);
            goto out;
        }
        el_nf *nf = &nfs[n++];
        snprintf(nf->id, sizeof(nf->id), "%s", id);
        snprintf(nf->dns0, sizeof(nf->dns0), "%s", dns[0]);
        int bad = make_bootstrap(nf) || make_csr(nf, dns, nd);
        json_decref(j);
        if (bad) {
            fprintf(stderr,
                    "est-load: cannot make NF %u's keys, bootstrap certificate or CSR: %s\n", n,
                    ERR_reason_error_string(ERR_get_error()));
            fclose(f);
            goto out;
        }
    }
    fclose(f);
    if (n == 0) {
        fprintf(stderr, "est-load: %s: no NFs\n", G.nfs);
        goto out;
    }
    double setup_s = (double)(now_ns() - t_setup) / 1e9;
    if (G.threads > n)
        G.threads = n;
    g_workers = calloc(G.threads, sizeof(*g_workers));
    if (!g_workers)
        goto out;
    unsigned per = n / G.threads, extra = n % G.threads, next = 0;
    for (unsigned i = 0; i < G.threads; i++) {
        el_worker *w = &g_workers[i];
        w->id = i;
        w->n = per + (i < extra);
        w->nfs = nfs + next;
        next += w->n;
        for (int s = 0; s < EL_STEP__MAX; s++)
            bench_hist_reset(&w->st.h[s]);
        if (!(w->base = event_base_new()) ||
            !(w->st.t_done = calloc(w->n ? w->n : 1, sizeof(uint64_t)))) {
            fprintf(stderr, "est-load: out of memory\n");
            goto out;
        }
        for (unsigned k = 0; k < w->n; k++) {
            el_nf *nf = &w->nfs[k];
            nf->w = w;
            if (!(nf->timer = evtimer_new(w->base, timer_cb, nf)) || conn_new(nf) != 0) {
                fprintf(stderr, "est-load: cannot set up NF %u's connection\n", k);
                goto out;
            }
        }
    }
    pthread_barrier_init(&g_go, NULL, G.threads + 1);
    for (unsigned i = 0; i < G.threads; i++)
        if (pthread_create(&g_workers[i].thr, NULL, worker_main, &g_workers[i]) != 0) {
            fprintf(stderr, "est-load: cannot start threads\n");
            _exit(1);
        }
    double cpu0 = cpu_now_s();
    g_t0 = now_ns();
    if (G.ready) {
        FILE *r = fopen(G.ready, "w");
        if (r)
            fclose(r);
    }
    pthread_barrier_wait(&g_go);
    for (unsigned i = 0; i < G.threads; i++)
        pthread_join(g_workers[i].thr, NULL);
    uint64_t t_end = now_ns();

    /* ------------------------------------------------ report */
    el_stats acc = {0};
    bench_hist_snap *snaps = calloc(EL_STEP__MAX, sizeof(*snaps)), *one = calloc(1, sizeof(*one));
    uint64_t *done = calloc(n, sizeof(uint64_t));
    if (!snaps || !one || !done)
        goto out;
    unsigned nd = 0;
    for (unsigned i = 0; i < G.threads; i++) {
        el_stats *s = &g_workers[i].st;
        acc.ok += s->ok;
        acc.failed += s->failed;
        acc.requests += s->requests;
        acc.s200 += s->s200;
        acc.s202 += s->s202;
        acc.s503 += s->s503;
        acc.s_other += s->s_other;
        acc.transport += s->transport;
        acc.reconnects += s->reconnects;
        if (!acc.first_err[0])
            memcpy(acc.first_err, s->first_err, sizeof(acc.first_err));
        memcpy(done + nd, s->t_done, s->n_done * sizeof(uint64_t));
        nd += s->n_done;
        for (int k = 0; k < EL_STEP__MAX; k++) {
            bench_hist_snap_of(&s->h[k], one);
            bench_hist_snap_add(&snaps[k], one);
        }
    }
    qsort(done, nd, sizeof(uint64_t), cmp_u64);
    double last_s = nd ? (double)done[nd - 1] / 1e9 : 0, rate = last_s > 0 ? nd / last_s : 0;
    double mid_rate = 0;
    unsigned lo = nd / 10, hi = nd * 9 / 10;
    if (hi > lo + 1 && done[hi - 1] > done[lo])
        mid_rate = (double)(hi - 1 - lo) / ((double)(done[hi - 1] - done[lo]) / 1e9);
    double cpu_s = cpu_now_s(), run_cpu_s = cpu_s - cpu0;
    if (!G.quiet) {
        printf("est-load: %u NFs via %s:%u on %u threads, ramp %.1f s; set-up (keys, bootstrap "
               "certificates, CSRs) "
               "%.1f s\n",
               n, G.connect_ip, G.connect_port, G.threads, G.ramp, setup_s);
        printf("  enrolled %llu, failed %llu in %.1f s (last certificate at %.1f s): %.1f/s "
               "overall, %.1f/s between "
               "the 10th and 90th percentile of completions\n",
               (unsigned long long)acc.ok, (unsigned long long)acc.failed,
               (double)(t_end - g_t0) / 1e9, last_s, rate, mid_rate);
        printf("  requests %llu: 200 %llu, 202 %llu, 503 %llu, other %llu; transport failures "
               "%llu, reconnects %llu\n",
               (unsigned long long)acc.requests, (unsigned long long)acc.s200,
               (unsigned long long)acc.s202, (unsigned long long)acc.s503,
               (unsigned long long)acc.s_other, (unsigned long long)acc.transport,
               (unsigned long long)acc.reconnects);
        if (acc.first_err[0])
            printf("  first failure: %s\n", acc.first_err);
        printf("  %-14s %8s %9s %9s %9s %9s\n", "step (ms)", "n", "p50", "p90", "p99", "max");
        for (int i = 0; i < EL_STEP__MAX; i++)
            printf("  %-14s %8llu %9.1f %9.1f %9.1f %9.1f\n", STEP_NAMES[i],
                   (unsigned long long)snaps[i].n, ms(bench_hist_quantile(&snaps[i], 0.5)),
                   ms(bench_hist_quantile(&snaps[i], 0.9)),
                   ms(bench_hist_quantile(&snaps[i], 0.99)), ms(snaps[i].max_ns));
        printf("  est-load CPU: %.1f s while enrolling (%.2f cores), %.1f s with the set-up\n",
               run_cpu_s, t_end > g_t0 ? run_cpu_s / ((double)(t_end - g_t0) / 1e9) : 0, cpu_s);
    }
    if (G.json) {
        json_t *steps = json_object();
        for (int i = 0; i < EL_STEP__MAX; i++)
            json_object_set_new(steps, STEP_NAMES[i],
                                json_pack("{s:I, s:f, s:f, s:f, s:f}", "n", (json_int_t)snaps[i].n,
                                          "p50_ms", ms(bench_hist_quantile(&snaps[i], 0.5)),
                                          "p90_ms", ms(bench_hist_quantile(&snaps[i], 0.9)),
                                          "p99_ms", ms(bench_hist_quantile(&snaps[i], 0.99)),
                                          "max_ms", ms(snaps[i].max_ns)));
        json_t *j = json_pack(
            "{s:i, s:i, s:f, s:f, s:I, s:I, s:f, s:f, s:f, s:f, s:{s:I, s:I, s:I, s:I, s:I}, s:I, "
            "s:I, s:f, s:f, s:o, s:s?}",
            "nfs", (int)n, "threads", (int)G.threads, "ramp_s", G.ramp, "setup_s", setup_s,
            "enrolled", (json_int_t)acc.ok, "failed", (json_int_t)acc.failed, "seconds",
            (double)(t_end - g_t0) / 1e9, "last_s", last_s, "rate", rate, "rate_p10_p90", mid_rate,
            "answers", "requests", (json_int_t)acc.requests, "200", (json_int_t)acc.s200, "202",
            (json_int_t)acc.s202, "503", (json_int_t)acc.s503, "other", (json_int_t)acc.s_other,
            "transport", (json_int_t)acc.transport, "reconnects", (json_int_t)acc.reconnects,
            "cpu_self_s", cpu_s, "cpu_run_s", run_cpu_s, "steps", steps, "first_failure",
            acc.first_err[0] ? acc.first_err : NULL);
        if (!j || json_dump_file(j, G.json, JSON_INDENT(1) | JSON_SORT_KEYS) != 0)
            fprintf(stderr, "est-load: cannot write %s\n", G.json);
        json_decref(j);
    }
    rc = acc.failed || acc.ok != n ? 1 : 0;
    free(snaps);
    free(one);
    free(done);
out:
    for (unsigned i = 0; g_workers && i < G.threads; i++) {
        el_worker *w = &g_workers[i];
        for (unsigned k = 0; w->nfs && k < w->n; k++) {
            if (w->nfs[k].timer)
                event_free(w->nfs[k].timer);
            if (w->nfs[k].conn)
                evhttp_connection_free(w->nfs[k].conn);
        }
        free(w->st.t_done);
        if (w->base)
            event_base_free(w->base);
    }
    free(g_workers);
    for (unsigned i = 0; i < n; i++) {
        X509_free(nfs[i].boot);
        EVP_PKEY_free(nfs[i].boot_key);
        OPENSSL_free(nfs[i].spki);
        free(nfs[i].body);
    }
    free(nfs);
    SSL_CTX_free(g_ssl);
    X509_free(g_vendor);
    EVP_PKEY_free(g_vendor_key);
    return rc;
}
