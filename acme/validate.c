/* validate.c — see validate.h. */
#include "acme/validate.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <resolv.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acme/jws.h"
#include "acme/server.h"
#include "acme/tkauth.h"

#define HTTP01_MAX_BODY 8192
#define MAX_REDIRECTS 10

typedef struct vnode {
    acme_vjob job;
    struct vnode *next;
} vnode;

struct acme_validator {
    acme_srv *srv;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    vnode *head, *tail;
    unsigned queued;
    bool stopping;
    pthread_t *tids;
    unsigned n;
};

/* ------------------------------------------------------------ helpers */

static void keyauth_of(const char *token, const char *thumb, char *out, size_t cap)
{
    snprintf(out, cap, "%s.%s", token, thumb);
}

/* base64url(SHA-256(s)) */
static int sha256_b64(const char *s, char out[44])
{
    uint8_t d[32];
    unsigned dl = 0;
    if (EVP_Digest(s, strlen(s), d, &dl, EVP_sha256(), NULL) != 1 || dl != 32)
        return -1;
    return acme_b64url_encode(d, 32, out, 44) ? 0 : -1;
}

/* A resolver state aimed at the configured server, or the system's. */
static int res_open(const acme_cfg *cfg, struct __res_state *rs)
{
    memset(rs, 0, sizeof(*rs));
    if (res_ninit(rs) != 0)
        return -1;
    rs->retrans = (int)(cfg->validation_timeout_ms / 1000 / 2) + 1;
    rs->retry = 2;
    if (cfg->resolver_host) {
        struct in_addr a;
        if (inet_pton(AF_INET, cfg->resolver_host, &a) != 1) {
            res_nclose(rs);
            return -1;
        }
        rs->nscount = 1;
        rs->nsaddr_list[0].sin_family = AF_INET;
        rs->nsaddr_list[0].sin_addr = a;
        rs->nsaddr_list[0].sin_port = htons(cfg->resolver_port);
    }
    return 0;
}

/* Addresses of a name: A then AAAA records, as text. Returns how many, or
 * -1 with msg. */
static int resolve(const acme_cfg *cfg, const char *name, char addrs[][INET6_ADDRSTRLEN], int max, char *msg,
                   size_t msglen)
{
    if (!cfg->resolver_host) {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL, *p;
        int rc = getaddrinfo(name, NULL, &hints, &ai);
        if (rc != 0) {
            snprintf(msg, msglen, "no address for %s: %s", name, gai_strerror(rc));
            return -1;
        }
        int n = 0;
        for (p = ai; p && n < max; p = p->ai_next) {
            void *a = p->ai_family == AF_INET ? (void *)&((struct sockaddr_in *)p->ai_addr)->sin_addr
                                              : (void *)&((struct sockaddr_in6 *)p->ai_addr)->sin6_addr;
            inet_ntop(p->ai_family, a, addrs[n++], INET6_ADDRSTRLEN);
        }
        freeaddrinfo(ai);
        return n;
    }
    struct __res_state rs;
    if (res_open(cfg, &rs) != 0) {
        snprintf(msg, msglen, "resolver %s unusable (IPv4 address expected)", cfg->resolver_host);
        return -1;
    }
    int n = 0;
    static const int types[] = {ns_t_a, ns_t_aaaa};
    for (int t = 0; t < 2 && n < max; t++) {
        uint8_t ans[4096];
        int len = res_nquery(&rs, name, ns_c_in, types[t], ans, sizeof(ans));
        if (len < 0)
            continue;
        ns_msg m;
        if (ns_initparse(ans, len, &m) != 0)
            continue;
        for (int i = 0; i < ns_msg_count(m, ns_s_an) && n < max; i++) {
            ns_rr rr;
            if (ns_parserr(&m, ns_s_an, i, &rr) != 0 || (int)ns_rr_type(rr) != types[t])
                continue;
            if (types[t] == (int)ns_t_a && ns_rr_rdlen(rr) == 4)
                inet_ntop(AF_INET, ns_rr_rdata(rr), addrs[n++], INET6_ADDRSTRLEN);
            else if (types[t] == (int)ns_t_aaaa && ns_rr_rdlen(rr) == 16)
                inet_ntop(AF_INET6, ns_rr_rdata(rr), addrs[n++], INET6_ADDRSTRLEN);
        }
    }
    res_nclose(&rs);
    if (n == 0)
        snprintf(msg, msglen, "no A or AAAA record for %s", name);
    return n ? n : -1;
}

/* ------------------------------------------------------------ http-01 */

typedef struct body {
    char buf[HTTP01_MAX_BODY + 1];
    size_t len;
    bool too_long;
} body;

static size_t body_write(char *p, size_t sz, size_t nm, void *arg)
{
    body *b = arg;
    size_t n = sz * nm;
    if (b->len + n > HTTP01_MAX_BODY) {
        b->too_long = true;
        return 0;
    }
    memcpy(b->buf + b->len, p, n);
    b->len += n;
    return n;
}

acme_problem acme_validate_http01(const acme_cfg *cfg, const char *ident, const char *token,
                                  const char *keyauth, char *msg, size_t msglen)
{
    char url[1024];
    snprintf(url, sizeof(url), "http://%s:%u/.well-known/acme-challenge/%s", ident, cfg->http01_port, token);
    acme_problem p = ACME_P_CONNECTION;
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(msg, msglen, "out of memory");
        return ACME_P_SERVER_INTERNAL;
    }
    body *b = malloc(sizeof(*b));
    if (!b) {
        curl_easy_cleanup(c);
        snprintf(msg, msglen, "out of memory");
        return ACME_P_SERVER_INTERNAL;
    }
    for (int hop = 0; hop <= MAX_REDIRECTS; hop++) {
        CURLU *u = curl_url();
        char *host = NULL, *port = NULL, *scheme = NULL;
        if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) {
            snprintf(msg, msglen, "bad URL %s", url);
            curl_url_cleanup(u);
            p = ACME_P_CONNECTION;
            break;
        }
        long portn = strcmp(scheme, "https") == 0 ? 443 : 80;
        if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK && port)
            portn = strtol(port, NULL, 10);
        curl_free(port);
        curl_url_cleanup(u);
        char addrs[4][INET6_ADDRSTRLEN];
        int na = resolve(cfg, host, addrs, 4, msg, msglen);
        if (na < 0) {
            curl_free(host);
            curl_free(scheme);
            p = ACME_P_DNS;
            break;
        }
        char pin[INET6_ADDRSTRLEN + 300];
        snprintf(pin, sizeof(pin), "%s:%ld:%s%s%s", host, portn, strchr(addrs[0], ':') ? "[" : "", addrs[0],
                 strchr(addrs[0], ':') ? "]" : "");
        struct curl_slist *resolve_list = curl_slist_append(NULL, pin);
        curl_free(host);
        curl_free(scheme);
        memset(b, 0, sizeof(*b));
        curl_easy_reset(c);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_RESOLVE, resolve_list);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)cfg->validation_timeout_ms);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
        curl_easy_setopt(c, CURLOPT_USERAGENT, "certforge-acme validation");
        /* RFC 8555 §10.2: the target is under the requester's control, not
         * a trusted party: redirects to https are followed without
         * checking the certificate (Let's Encrypt does the same). */
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
        CURLcode cr = curl_easy_perform(c);
        curl_slist_free_all(resolve_list);
        if (cr != CURLE_OK) {
            snprintf(msg, msglen, "%s: %s", url, b->too_long ? "response longer than 8 KiB" : curl_easy_strerror(cr));
            p = b->too_long ? ACME_P_UNAUTHORIZED : ACME_P_CONNECTION;
            break;
        }
        long code = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        if (code == 301 || code == 302 || code == 303 || code == 307 || code == 308) {
            char *loc = NULL;
            curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &loc);
            if (!loc || hop == MAX_REDIRECTS) {
                snprintf(msg, msglen, "%s: redirect %s", url, loc ? "loop (more than 10)" : "without Location");
                p = ACME_P_CONNECTION;
                break;
            }
            snprintf(url, sizeof(url), "%s", loc);
            continue;
        }
        if (code != 200) {
            snprintf(msg, msglen, "%s: HTTP status %ld, expected 200", url, code);
            p = ACME_P_UNAUTHORIZED;
            break;
        }
        /* RFC 8555 §8.3: trailing whitespace is ignored */
        while (b->len && (b->buf[b->len - 1] == ' ' || b->buf[b->len - 1] == '\n' ||
                          b->buf[b->len - 1] == '\r' || b->buf[b->len - 1] == '\t'))
            b->len--;
        b->buf[b->len] = '\0';
        if (b->len != strlen(keyauth) || memcmp(b->buf, keyauth, b->len) != 0) {
            snprintf(msg, msglen, "%s: the body is not the key authorization (got %zu octets)", url, b->len);
            p = ACME_P_INCORRECT_RESPONSE;
            break;
        }
        p = ACME_P_NONE;
        break;
    }
    free(b);
    curl_easy_cleanup(c);
    return p;
}

/* ------------------------------------------------------------ dns-01 */

acme_problem acme_validate_dns01(const acme_cfg *cfg, const char *ident, const char *keyauth, char *msg,
                                 size_t msglen)
{
    char want[44], name[ACME_MAX_DNS_NAME + 32];
    if (sha256_b64(keyauth, want) != 0) {
        snprintf(msg, msglen, "digest failed");
        return ACME_P_SERVER_INTERNAL;
    }
    if (strncmp(ident, "*.", 2) == 0)
        ident += 2;
    snprintf(name, sizeof(name), "_acme-challenge.%s", ident);
    struct __res_state rs;
    if (res_open(cfg, &rs) != 0) {
        snprintf(msg, msglen, "resolver unusable");
        return ACME_P_SERVER_INTERNAL;
    }
    uint8_t ans[8192];
    int len = res_nquery(&rs, name, ns_c_in, ns_t_txt, ans, sizeof(ans));
    res_nclose(&rs);
    if (len < 0) {
        snprintf(msg, msglen, "no TXT record for %s", name);
        return ACME_P_DNS;
    }
    ns_msg m;
    if (ns_initparse(ans, len, &m) != 0) {
        snprintf(msg, msglen, "malformed DNS answer for %s", name);
        return ACME_P_DNS;
    }
    int seen = 0;
    for (int i = 0; i < ns_msg_count(m, ns_s_an); i++) {
        ns_rr rr;
        if (ns_parserr(&m, ns_s_an, i, &rr) != 0 || ns_rr_type(rr) != ns_t_txt)
            continue;
        seen++;
        /* one or more <length><text> strings, concatenated */
        const uint8_t *d = ns_rr_rdata(rr);
        size_t dl = ns_rr_rdlen(rr), o = 0;
        char txt[1024];
        size_t tl = 0;
        while (o < dl) {
            size_t sl = d[o++];
            if (o + sl > dl || tl + sl >= sizeof(txt))
                break;
            memcpy(txt + tl, d + o, sl);
            tl += sl;
            o += sl;
        }
        txt[tl] = '\0';
        if (o == dl && strcmp(txt, want) == 0)
            return ACME_P_NONE;
    }
    snprintf(msg, msglen, seen ? "no TXT record of %s matches the key authorization digest" : "no TXT record for %s",
             name);
    return seen ? ACME_P_INCORRECT_RESPONSE : ACME_P_DNS;
}

/* ------------------------------------------------------------ tls-alpn-01 */

static int connect_to(const char *addr, uint16_t port, unsigned timeout_ms)
{
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    if (strchr(addr, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        inet_pton(AF_INET6, addr, &s6->sin6_addr);
        sl = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        inet_pton(AF_INET, addr, &s4->sin_addr);
        sl = sizeof(*s4);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&ss, sl) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

acme_problem acme_validate_tlsalpn01(const acme_cfg *cfg, const char *ident, const char *keyauth,
                                     char *msg, size_t msglen)
{
    char addrs[4][INET6_ADDRSTRLEN];
    if (resolve(cfg, ident, addrs, 4, msg, msglen) < 0)
        return ACME_P_DNS;
    uint8_t want[32];
    unsigned wl = 0;
    if (EVP_Digest(keyauth, strlen(keyauth), want, &wl, EVP_sha256(), NULL) != 1) {
        snprintf(msg, msglen, "digest failed");
        return ACME_P_SERVER_INTERNAL;
    }
    acme_problem p = ACME_P_TLS;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    X509 *peer = NULL;
    int fd = -1;
    if (!ctx) {
        snprintf(msg, msglen, "out of memory");
        return ACME_P_SERVER_INTERNAL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* RFC 8737 §3: self-signed */
    static const unsigned char alpn[] = "\x0a" "acme-tls/1";
    if ((fd = connect_to(addrs[0], cfg->tlsalpn01_port, cfg->validation_timeout_ms)) < 0) {
        snprintf(msg, msglen, "connect %s:%u (%s): %s", ident, cfg->tlsalpn01_port, addrs[0], strerror(errno));
        p = ACME_P_CONNECTION;
        goto out;
    }
    ssl = SSL_new(ctx);
    if (!ssl || SSL_set_tlsext_host_name(ssl, ident) != 1 || SSL_set_alpn_protos(ssl, alpn, sizeof(alpn) - 1) != 0 ||
        SSL_set_fd(ssl, fd) != 1) {
        snprintf(msg, msglen, "TLS set-up failed");
        p = ACME_P_SERVER_INTERNAL;
        goto out;
    }
    if (SSL_connect(ssl) != 1) {
        snprintf(msg, msglen, "TLS handshake with %s:%u failed: %s", ident, cfg->tlsalpn01_port,
                 ERR_reason_error_string(ERR_peek_last_error()) ? ERR_reason_error_string(ERR_peek_last_error())
                                                                : "connection closed");
        goto out;
    }
    const unsigned char *sel = NULL;
    unsigned sel_len = 0;
    SSL_get0_alpn_selected(ssl, &sel, &sel_len);
    if (sel_len != 10 || memcmp(sel, "acme-tls/1", 10) != 0) {
        snprintf(msg, msglen, "the server did not negotiate ALPN acme-tls/1 (RFC 8737 §3)");
        p = ACME_P_UNAUTHORIZED;
        goto out;
    }
    peer = SSL_get1_peer_certificate(ssl);
    if (!peer) {
        snprintf(msg, msglen, "no certificate");
        goto out;
    }
    /* exactly one dNSName, equal to the identifier */
    GENERAL_NAMES *gens = X509_get_ext_d2i(peer, NID_subject_alt_name, NULL, NULL);
    int ok_san = gens && sk_GENERAL_NAME_num(gens) == 1;
    if (ok_san) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, 0);
        ok_san = g->type == GEN_DNS && (size_t)ASN1_STRING_length(g->d.dNSName) == strlen(ident) &&
                 strncasecmp((const char *)ASN1_STRING_get0_data(g->d.dNSName), ident, strlen(ident)) == 0;
    }
    GENERAL_NAMES_free(gens);
    if (!ok_san) {
        snprintf(msg, msglen, "the certificate's subjectAltName is not exactly dNSName %s (RFC 8737 §3)", ident);
        p = ACME_P_UNAUTHORIZED;
        goto out;
    }
    /* id-pe-acmeIdentifier 1.3.6.1.5.5.7.1.31, critical, OCTET STRING of
     * the SHA-256 of the key authorization */
    ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    int loc = oid ? X509_get_ext_by_OBJ(peer, oid, -1) : -1;
    ASN1_OBJECT_free(oid);
    X509_EXTENSION *ext = loc >= 0 ? X509_get_ext(peer, loc) : NULL;
    if (!ext || !X509_EXTENSION_get_critical(ext)) {
        snprintf(msg, msglen, "no critical acmeIdentifier extension (RFC 8737 §3)");
        p = ACME_P_UNAUTHORIZED;
        goto out;
    }
    const ASN1_OCTET_STRING *v = X509_EXTENSION_get_data(ext);
    const unsigned char *q = ASN1_STRING_get0_data(v);
    ASN1_OCTET_STRING *inner = d2i_ASN1_OCTET_STRING(NULL, &q, ASN1_STRING_length(v));
    int match = inner && ASN1_STRING_length(inner) == 32 && memcmp(ASN1_STRING_get0_data(inner), want, 32) == 0 &&
                q == ASN1_STRING_get0_data(v) + ASN1_STRING_length(v);
    ASN1_OCTET_STRING_free(inner);
    if (!match) {
        snprintf(msg, msglen, "acmeIdentifier does not match the key authorization");
        p = ACME_P_INCORRECT_RESPONSE;
        goto out;
    }
    p = ACME_P_NONE;
out:
    X509_free(peer);
    if (ssl)
        SSL_free(ssl);
    if (fd >= 0)
        close(fd);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return p;
}

/* ------------------------------------------------------------ recording */

int acme_validation_record(acme_db *tx, void *arg)
{
    const acme_vresult *r = arg;
    const acme_vjob *j = r->job;
    int64_t now = acme_now();
    acme_problem problem = r->problem;
    const char *detail = r->detail;
    /* RFC 9447 §4: a token's jti is used once; recorded in the same
     * transaction as the outcome, so two challenges racing with one token
     * cannot both pass */
    if (problem == ACME_P_NONE && r->jti) {
        int n = acme_db_exec(tx, "INSERT INTO used_jti(jti, expires) VALUES(?, ?) ON CONFLICT DO NOTHING", "si", r->jti,
                             r->jti_exp);
        if (n < 0)
            return -1;
        if (n == 0) {
            problem = ACME_P_UNAUTHORIZED;
            detail = "authority token: its jti was used before (RFC 9447 §4)";
        }
    }
    const char *st = problem == ACME_P_NONE ? "valid" : "invalid";
    char *err = NULL;
    if (problem != ACME_P_NONE) {
        char t[128];
        snprintf(t, sizeof(t), "urn:ietf:params:acme:error:%s", acme_problem_name(problem));
        json_t *e = json_pack("{s:s, s:s, s:i}", "type", t, "detail", detail ? detail : "", "status",
                              acme_problem_http_status(problem));
        err = e ? json_dumps(e, JSON_COMPACT) : NULL;
        json_decref(e);
    }
    /* only a challenge still processing, of an authorization still pending */
    int n = acme_db_exec(tx, "UPDATE challenges SET status = ?, validated = ?, error = ?, response = NULL "
                             "WHERE id = ? AND status = 'processing'",
                         "siss", st, problem == ACME_P_NONE ? now : (int64_t)0, err, j->chall);
    free(err);
    if (n <= 0)
        return n < 0 ? -1 : 0;
    n = acme_db_exec(tx, "UPDATE authzs SET status = ?, nf_types = ? WHERE id = ? AND status = 'pending'", "sss", st,
                     problem == ACME_P_NONE ? r->nf_types : NULL, j->authz);
    if (n < 0)
        return -1;
    /* Orders using this authorization: invalid if it failed; ready when
     * every authorization is valid (RFC 8555 §7.1.6). */
    if (problem != ACME_P_NONE)
        return acme_db_exec(tx,
                            "UPDATE orders SET status = 'invalid', error = (SELECT error FROM challenges WHERE id = ?) "
                            "WHERE status = 'pending' AND id IN (SELECT order_id FROM order_authzs WHERE authz = ?)",
                            "ss", j->chall, j->authz) < 0
                   ? -1
                   : 0;
    return acme_db_exec(tx,
                        "UPDATE orders SET status = 'ready' WHERE status = 'pending' AND id IN "
                        "(SELECT order_id FROM order_authzs WHERE authz = ?) AND NOT EXISTS "
                        "(SELECT 1 FROM order_authzs oa JOIN authzs a ON a.id = oa.authz "
                        " WHERE oa.order_id = orders.id AND a.status != 'valid')",
                        "s", j->authz) < 0
               ? -1
               : 0;
}

/* ------------------------------------------------------------ the pool */

/* A validation's outcome on its way to the store. */
typedef struct vrec {
    acme_srv *srv;
    vnode *node;
    acme_vresult r;
    char detail[512];
    char jti[129];
    char *nf_types; /* owned */
} vrec;

static int vrec_fn(acme_db *tx, void *arg)
{
    vrec *rec = arg;
    return acme_validation_record(tx, &rec->r);
}

/* writer thread: durable (or not); the job is done */
static void vrec_done(void *arg, int rc)
{
    vrec *rec = arg;
    if (rc != 0)
        acme_log(rec->srv, ACME_LOG_ERROR, "event=validation_not_recorded challenge=%s", rec->node->job.chall);
    free(rec->nf_types);
    free(rec->node->job.tkauth);
    free(rec->node);
    free(rec);
}

static void *va_main(void *arg)
{
    acme_validator *v = arg;
    static _Atomic unsigned next_idx;
    char name[16];
    snprintf(name, sizeof(name), "acme-va/%u", atomic_fetch_add(&next_idx, 1));
    pthread_setname_np(pthread_self(), name);
    const acme_cfg *cfg = v->srv->cfg;
    for (;;) {
        pthread_mutex_lock(&v->mu);
        while (!v->head && !v->stopping)
            pthread_cond_wait(&v->cv, &v->mu);
        if (v->stopping) {
            pthread_mutex_unlock(&v->mu);
            break;
        }
        vnode *nd = v->head;
        v->head = nd->next;
        if (!v->head)
            v->tail = NULL;
        v->queued--;
        pthread_mutex_unlock(&v->mu);

        acme_vjob *j = &nd->job;
        char ka[ACME_TOKEN_LEN + ACME_THUMB_LEN + 2], msg[512] = "";
        acme_tkauth_claims claims = {0};
        char *nf_types = NULL;
        keyauth_of(j->token, j->thumb, ka, sizeof(ka));
        acme_problem p;
        switch (j->type) {
        case ACME_CH_HTTP01:
            p = acme_validate_http01(cfg, j->ident, j->token, ka, msg, sizeof(msg));
            break;
        case ACME_CH_DNS01:
            p = acme_validate_dns01(cfg, j->ident, ka, msg, sizeof(msg));
            break;
        case ACME_CH_TLSALPN01:
            p = acme_validate_tlsalpn01(cfg, j->ident, ka, msg, sizeof(msg));
            break;
        case ACME_CH_TKAUTH01:
            if (!v->srv->tkauth) {
                p = ACME_P_SERVER_INTERNAL;
                snprintf(msg, sizeof(msg), "tkauth-01 is not configured");
                break;
            }
            p = acme_tkauth_verify(v->srv->tkauth, j->tkauth, "NfInstanceId", j->ident, j->thumb, acme_now(), &claims,
                                   msg, sizeof(msg));
            if (p == ACME_P_NONE) {
                json_t *a = json_array();
                for (unsigned k = 0; k < claims.n_nftypes; k++)
                    json_array_append_new(a, json_string(claims.nftypes[k]));
                nf_types = json_dumps(a, JSON_COMPACT);
                json_decref(a);
            }
            break;
        default:
            p = ACME_P_SERVER_INTERNAL;
            snprintf(msg, sizeof(msg), "unknown challenge type");
        }
        atomic_fetch_add_explicit(p == ACME_P_NONE ? &v->srv->ctr.validations_ok : &v->srv->ctr.validations_failed, 1,
                                  memory_order_relaxed);
        acme_log(v->srv, p == ACME_P_NONE ? ACME_LOG_DEBUG : ACME_LOG_INFO,
                 "event=validation type=%s identifier=%s challenge=%s account=%s result=%s%s%s%s", acme_chall_type_name(j->type),
                 j->ident, j->chall, j->account, p == ACME_P_NONE ? "valid" : acme_problem_name(p),
                 msg[0] ? " detail=\"" : "", msg, msg[0] ? "\"" : "");
        /* Queued, not waited for: the thread takes the next job while the
         * store syncs (a wait here held each thread for a commit, which
         * capped validations at threads / commit time). The job lives
         * until the change is durable. */
        vrec *rec = malloc(sizeof(*rec));
        if (rec) {
            rec->srv = v->srv;
            rec->node = nd;
            snprintf(rec->detail, sizeof(rec->detail), "%s", msg);
            snprintf(rec->jti, sizeof(rec->jti), "%s", claims.jti);
            rec->nf_types = nf_types;
            rec->r = (acme_vresult){.job = &nd->job, .problem = p, .detail = rec->detail,
                                    .jti = claims.jti[0] ? rec->jti : NULL, .jti_exp = claims.exp, .nf_types = nf_types};
            if (acme_store_submit(v->srv->store, vrec_fn, vrec_done, rec) == 0)
                continue;
            free(rec);
        }
        /* store queue full (or no memory): wait for it like a tool would */
        acme_vresult r = {.job = j, .problem = p, .detail = msg, .jti = claims.jti[0] ? claims.jti : NULL,
                          .jti_exp = claims.exp, .nf_types = nf_types};
        if (acme_store_run(v->srv->store, acme_validation_record, &r) != 0)
            acme_log(v->srv, ACME_LOG_ERROR, "event=validation_not_recorded challenge=%s", j->chall);
        free(nf_types);
        free(j->tkauth);
        free(nd);
    }
    return NULL;
}

int acme_validator_new(acme_srv *srv, acme_validator **out, char *err, size_t errlen)
{
    *out = NULL;
    acme_validator *v = calloc(1, sizeof(*v));
    if (!v) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    v->srv = srv;
    pthread_mutex_init(&v->mu, NULL);
    pthread_cond_init(&v->cv, NULL);
    v->tids = calloc(srv->cfg->validation_threads, sizeof(pthread_t));
    if (!v->tids) {
        free(v);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (unsigned i = 0; i < srv->cfg->validation_threads; i++) {
        if (pthread_create(&v->tids[i], NULL, va_main, v) != 0) {
            snprintf(err, errlen, "cannot start validation thread %u", i);
            acme_validator_free(v);
            return -1;
        }
        v->n = i + 1;
    }
    *out = v;
    return 0;
}

void acme_validator_free(acme_validator *v)
{
    if (!v)
        return;
    pthread_mutex_lock(&v->mu);
    v->stopping = true;
    pthread_cond_broadcast(&v->cv);
    pthread_mutex_unlock(&v->mu);
    for (unsigned i = 0; i < v->n; i++)
        pthread_join(v->tids[i], NULL);
    for (vnode *n = v->head, *x; n; n = x) {
        x = n->next;
        free(n->job.tkauth);
        free(n);
    }
    free(v->tids);
    pthread_cond_destroy(&v->cv);
    pthread_mutex_destroy(&v->mu);
    free(v);
}

int acme_validator_submit(acme_validator *v, const acme_vjob *j)
{
    vnode *n = malloc(sizeof(*n));
    if (!n)
        return -1;
    n->job = *j;
    n->next = NULL;
    pthread_mutex_lock(&v->mu);
    if (v->stopping || v->queued >= v->srv->cfg->validation_queue) {
        pthread_mutex_unlock(&v->mu);
        free(n);
        return -1;
    }
    if (v->tail)
        v->tail->next = n;
    else
        v->head = n;
    v->tail = n;
    v->queued++;
    pthread_cond_signal(&v->cv);
    pthread_mutex_unlock(&v->mu);
    return 0;
}
