/* certforged's Prometheus endpoint (metrics.listen), end to end: the built
 * daemon on a SoftHSM token with metrics on 127.0.0.1 and port 0 (the port
 * read from its metrics_listen log line), certificates issued through the
 * Unix socket, the endpoint scraped with curl (and checked with promtool
 * when /usr/bin/promtool exists).
 *
 *   values: issued per profile and status, requests per op and status
 *   (a refusal under its code), the issue latency histogram (count, +Inf,
 *   monotonic buckets), the HSM sign and ledger commit histograms, the
 *   gauges, CRL age, build_info against `certforged --version`; the same
 *   counts with 64 requests in flight (batches, group commits), over
 *   [::1] where the host has it;
 *   HTTP: another path 404, POST 405 with Allow, HEAD 200, oversize
 *   headers and body, a malformed request line: each refused, the
 *   endpoint still serving after;
 *   config: a non-loopback metrics.listen refused with FILE:LINE by
 *   --check-config and at start; a port in use refused at start.
 */
#include "cf_test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cf_daemon.h"

#define PIN "2468"
#define N_ISSUE 5

static char CRL_DIR[300], EXTRA[600], MET_CONF[300], BODY[300];

static int suite_init(void)
{
    int rc = dh_suite_init("cf-metrics", PIN, "Metrics Test CA");
    if (rc != 0)
        return rc;
    if (access("/usr/bin/curl", X_OK) != 0)
        return cf_test_setup_failed("curl (/usr/bin/curl) is needed to scrape the endpoint");
    snprintf(CRL_DIR, sizeof(CRL_DIR), "%s/crl", H.dir);
    snprintf(MET_CONF, sizeof(MET_CONF), "%s/metrics.conf", H.dir);
    snprintf(BODY, sizeof(BODY), "%s/scrape.txt", H.dir);
    if (mkdir(CRL_DIR, 0755) != 0)
        return cf_test_setup_failed("mkdir %s failed", CRL_DIR);
    return 0;
}

static int suite_clean(void)
{
    return dh_suite_clean();
}

/* Start certforged with `metrics` (a listen value) and a crl section. */
static int start_with(dproc *d, const char *listen, int *status)
{
    snprintf(EXTRA, sizeof(EXTRA),
             "crl = { dir = \"%s\"; interval = \"60s\"; validity = \"1h\"; revoke_delay = \"1s\"; "
             "};\nmetrics = {\n  listen = \"%s\";\n};\n",
             CRL_DIR, listen);
    conf_opts o = {.extra = EXTRA};
    write_conf(MET_CONF, &o);
    return daemon_start_ex(d, MET_CONF, NULL, status);
}

/* The port from "event=metrics_listen address=127.0.0.1:PORT". */
static unsigned metrics_port(const dproc *d)
{
    char *t = slurp(d->log);
    const char *k = "event=metrics_listen address=127.0.0.1:";
    const char *p = t ? strstr(t, k) : NULL;
    unsigned port = p ? (unsigned)atoi(p + strlen(k)) : 0;
    free(t);
    return port;
}

/* Run curl (bounded: --max-time); its -w output into out. Returns the exit
 * status of curl. */
static int curl(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int curl(char *out, size_t cap, const char *fmt, ...)
{
    char args[12000], cmd[12400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd), "/usr/bin/curl -sS --max-time 10 %s", args);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* GET /metrics into BODY; the text (malloc'd), or NULL. */
static char *scrape(unsigned port, char *ctype, size_t cap)
{
    char w[160];
    if (curl(w, sizeof(w),
             "-o '%s' -w '%%{http_code} %%{content_type}' http://127.0.0.1:%u/metrics", BODY,
             port) != 0)
        return NULL;
    if (strncmp(w, "200 ", 4) != 0) {
        fprintf(stderr, "\nscrape answered %s\n", w);
        return NULL;
    }
    if (ctype)
        snprintf(ctype, cap, "%s", w + 4);
    return slurp(BODY);
}

/* The value of the series `series` (name with its labels, exactly as
 * exposed), -1 when absent. */
static double value(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

/* Every line ends with a newline; every sample's family has its HELP and
 * TYPE lines before it, once (a histogram's _bucket, _sum and _count
 * belong to the family of type histogram). */
static void check_format(const char *text)
{
    const char *p = text;
    int samples = 0;
    while (p && *p) {
        const char *nl = strchr(p, '\n');
        CU_ASSERT_PTR_NOT_NULL_FATAL(nl);
        if (*p != '#') {
            char fam[128];
            size_t k = strcspn(p, "{ ");
            CU_ASSERT_FATAL(k < sizeof(fam));
            memcpy(fam, p, k);
            fam[k] = 0;
            static const char *const suf[] = {"_bucket", "_sum", "_count"};
            for (size_t i = 0; i < CF_ARRAY_LEN(suf); i++) {
                size_t sl = strlen(suf[i]);
                char h[sizeof(fam) + 32];
                snprintf(h, sizeof(h), "# TYPE %.*s histogram\n", (int)(k - sl), fam);
                if (k > sl && strcmp(fam + k - sl, suf[i]) == 0 && strstr(text, h)) {
                    fam[k - sl] = 0;
                    break;
                }
            }
            char want[sizeof(fam) + 16];
            snprintf(want, sizeof(want), "# TYPE %s ", fam);
            const char *t = strstr(text, want);
            if (!t || t > p) {
                fprintf(stderr, "\nno # TYPE before: %.*s\n", (int)(nl - p), p);
                CU_FAIL("sample without its TYPE line");
            } else {
                CU_ASSERT_PTR_NULL(strstr(t + 1, want)); /* once */
            }
            snprintf(want, sizeof(want), "# HELP %s ", fam);
            t = strstr(text, want);
            CU_ASSERT(t && t < p);
            samples++;
        }
        p = nl + 1;
    }
    CU_ASSERT(samples > 20);
}

static void check_histogram(const char *text, const char *name, double want_count)
{
    static const char *const le[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
                                     "0.05",   "0.1",   "0.25",   "0.5",   "1",    "2.5",
                                     "5",      "10",    "30",     "+Inf"};
    double prev = 0;
    for (size_t i = 0; i < CF_ARRAY_LEN(le); i++) {
        char s[160];
        snprintf(s, sizeof(s), "%s_bucket{le=\"%s\"}", name, le[i]);
        double v = value(text, s);
        if (v < 0)
            fprintf(stderr, "\nmissing %s\n", s);
        CU_ASSERT(v >= prev);
        prev = v;
    }
    char s[160];
    snprintf(s, sizeof(s), "%s_count", name);
    double count = value(text, s);
    if (want_count >= 0)
        CU_ASSERT_EQUAL(count, want_count);
    CU_ASSERT_EQUAL(prev, count); /* +Inf == _count */
    snprintf(s, sizeof(s), "%s_sum", name);
    CU_ASSERT(value(text, s) >= 0);
}

static void test_values(void)
{
    dproc d;
    CU_ASSERT_EQUAL_FATAL(start_with(&d, "127.0.0.1:0", NULL), 0);
    unsigned port = metrics_port(&d);
    CU_ASSERT_FATAL(port > 0);

    cf_client *c = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    cf_issue_req req;
    cf_response r;
    for (int i = 0; i < N_ISSUE; i++) {
        fill_req(&req, &POOL.items[i], "nf");
        CU_ASSERT_EQUAL_FATAL(cf_issue_one(c, &req, 10000, &r), 0);
        CU_ASSERT_EQUAL(r.status, CF_ST_OK);
    }
    /* refused by the server: a profile this peer is not granted */
    fill_req(&req, &POOL.items[10], "nf2");
    CU_ASSERT_EQUAL_FATAL(cf_issue_one(c, &req, 10000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_UNAUTHORIZED);
    /* refused in the pipeline: the CSR's signature does not verify */
    csr_item bad = POOL.items[11];
    uint8_t der[4096];
    CU_ASSERT_FATAL(bad.len <= sizeof(der));
    memcpy(der, bad.der, bad.len);
    der[bad.len - 1] ^= 0x01;
    bad.der = der;
    fill_req(&req, &bad, "nf");
    CU_ASSERT_EQUAL_FATAL(cf_issue_one(c, &req, 10000, &r), 0);
    CU_ASSERT_EQUAL(r.status, CF_ST_BAD_CSR);

    char ctype[200] = "";
    char *t = scrape(port, ctype, sizeof(ctype));
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_STRING_EQUAL(ctype, "text/plain; version=0.0.4; charset=utf-8");
    check_format(t);
    CU_ASSERT_EQUAL(value(t, "certforge_certificates_issued_total{profile=\"nf\",status=\"OK\"}"),
                    N_ISSUE);
    CU_ASSERT_EQUAL(
        value(t, "certforge_certificates_issued_total{profile=\"nf\",status=\"BAD_CSR\"}"), 1);
    CU_ASSERT_EQUAL(value(t, "certforge_certificates_issued_total{profile=\"nf2\",status=\"OK\"}"),
                    0);
    CU_ASSERT_EQUAL(value(t, "certforge_requests_total{op=\"ISSUE\",status=\"OK\"}"), N_ISSUE);
    CU_ASSERT_EQUAL(value(t, "certforge_requests_total{op=\"ISSUE\",status=\"UNAUTHORIZED\"}"), 1);
    /* a status never seen is not listed */
    CU_ASSERT_EQUAL(value(t, "certforge_requests_total{op=\"ISSUE\",status=\"UNKNOWN_PROFILE\"}"),
                    -1);
    CU_ASSERT_EQUAL(value(t, "certforge_requests_total{op=\"ISSUE\",status=\"BAD_CSR\"}"), 1);
    CU_ASSERT_EQUAL(value(t, "certforge_requests_total{op=\"SIGN\",status=\"OK\"}"), 0);
    /* one request at a time: one batch signed and one commit per certificate */
    check_histogram(t, "certforge_issue_duration_seconds", N_ISSUE);
    check_histogram(t, "certforge_hsm_sign_batch_duration_seconds", N_ISSUE);
    check_histogram(t, "certforge_ledger_commit_duration_seconds", N_ISSUE);
    CU_ASSERT_EQUAL(value(t, "certforge_queue_depth"), 0);
    CU_ASSERT_EQUAL(value(t, "certforge_inflight_requests"), 0);
    CU_ASSERT_EQUAL(value(t, "certforge_connections"), 1);
    CU_ASSERT_EQUAL(value(t, "certforge_connections_accepted_total"), 1);
    CU_ASSERT_EQUAL(value(t, "certforge_connections_refused_total"), 0);
    CU_ASSERT(value(t, "certforge_hsm_sessions") >= 1);
    /* a session is handed back after the answer went out (the signer
     * process reports it a moment later): wait, bounded, for none busy */
    double busy = value(t, "certforge_hsm_sessions_busy");
    for (int i = 0; i < 200 && busy != 0; i++) {
        usleep(50000);
        char *u = scrape(port, NULL, 0);
        busy = u ? value(u, "certforge_hsm_sessions_busy") : -1;
        free(u);
    }
    CU_ASSERT_EQUAL(busy, 0);
    CU_ASSERT_EQUAL(value(t, "certforge_ledger_failed_batches_total"), 0);
    CU_ASSERT_EQUAL(value(t, "certforge_ledger_failed_jobs_total"), 0);
    CU_ASSERT(value(t, "certforge_crl_age_seconds{issuer=\"ca\"}") >= 0);
    CU_ASSERT(value(t, "certforge_start_time_seconds") > 1.7e9);
    /* build_info carries what --version prints ("certforged X") */
    char cmd[600], ver[200] = "";
    snprintf(cmd, sizeof(cmd), "'%s' --version", DAEMON);
    FILE *p = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    size_t vn = fread(ver, 1, sizeof(ver) - 1, p);
    ver[vn] = 0;
    CU_ASSERT_EQUAL(pclose(p), 0);
    CU_ASSERT_FATAL(strncmp(ver, "certforged ", 11) == 0 && vn > 12 && ver[vn - 1] == '\n');
    ver[vn - 1] = 0;
    char series[300];
    snprintf(series, sizeof(series), "certforge_build_info{version=\"%s\"}", ver + 11);
    CU_ASSERT_EQUAL(value(t, series), 1);
    free(t);
    /* the same figures as STATUS (certforge status) */
    CU_ASSERT_EQUAL(status_value("issued"), N_ISSUE);
    t = scrape(port, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_EQUAL(value(t, "certforge_requests_total{op=\"STATUS\",status=\"OK\"}"), 1);
    free(t);

    /* promtool, when installed, checks the exposition format */
    if (access("/usr/bin/promtool", X_OK) == 0) {
        char out[4000];
        CU_ASSERT_EQUAL(curl(out, sizeof(out),
                             "http://127.0.0.1:%u/metrics | /usr/bin/promtool "
                             "check metrics",
                             port),
                        0);
    } else {
        fprintf(stderr, "\n  (promtool not installed: /usr/bin/promtool check metrics left out) ");
    }
    cf_client_close(c);
    daemon_stop_clean(&d);
}

/* 64 requests in flight at once on two workers: batches of several jobs
 * and group commits. Every certificate is counted once, in the issued
 * counter and the latency histogram, and the batch and commit histograms
 * hold no more observations than there were certificates. */
static bool have_ipv6_loopback(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static void test_pipelined(void)
{
    enum { N = 64 };
    /* over [::1] where the host has it (the IPv6 path of the config and
     * the bind); else 127.0.0.1, said so */
    bool v6 = have_ipv6_loopback();
    if (!v6)
        fprintf(stderr, "\n  (no IPv6 loopback on this host: [::1] left out, 127.0.0.1 used) ");
    const char *host = v6 ? "[::1]" : "127.0.0.1";
    char listen_at[32], k[80];
    snprintf(listen_at, sizeof(listen_at), "%s:0", host);
    snprintf(k, sizeof(k), "event=metrics_listen address=%s:", host);
    dproc d;
    CU_ASSERT_EQUAL_FATAL(start_with(&d, listen_at, NULL), 0);
    char *lg = slurp(d.log);
    const char *at = lg ? strstr(lg, k) : NULL;
    unsigned port = at ? (unsigned)atoi(at + strlen(k)) : 0;
    free(lg);
    CU_ASSERT_FATAL(port > 0);
    cf_client *c = client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    cf_issue_req req[N];
    for (int i = 0; i < N; i++) {
        fill_req(&req[i], &POOL.items[i], "nf");
        uint64_t id;
        CU_ASSERT_EQUAL_FATAL(cf_client_submit_issue(c, &req[i], &id), 0);
    }
    CU_ASSERT_EQUAL_FATAL(cf_client_flush(c, 10000), 0);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        cf_response r;
        CU_ASSERT_EQUAL_FATAL(cf_client_next_response(c, 10000, &r), 0);
        ok += r.status == CF_ST_OK;
    }
    CU_ASSERT_EQUAL(ok, N);
    char w[64];
    CU_ASSERT_EQUAL(curl(w, sizeof(w), "-o '%s' -w '%%{http_code}' 'http://%s:%u/metrics'", BODY,
                         host, port),
                    0);
    CU_ASSERT_STRING_EQUAL(w, "200");
    char *t = slurp(BODY);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_EQUAL(value(t, "certforge_certificates_issued_total{profile=\"nf\",status=\"OK\"}"),
                    N);
    CU_ASSERT_EQUAL(value(t, "certforge_requests_total{op=\"ISSUE\",status=\"OK\"}"), N);
    check_histogram(t, "certforge_issue_duration_seconds", N);
    check_histogram(t, "certforge_hsm_sign_batch_duration_seconds", -1);
    check_histogram(t, "certforge_ledger_commit_duration_seconds", -1);
    double batches = value(t, "certforge_hsm_sign_batch_duration_seconds_count");
    double commits = value(t, "certforge_ledger_commit_duration_seconds_count");
    CU_ASSERT(batches >= 1 && batches <= N);
    CU_ASSERT(commits >= 1 && commits <= N);
    free(t);
    cf_client_close(c);
    daemon_stop_clean(&d);
}

/* Send req (raw bytes) to the endpoint; the first line of its answer (or
 * "" when it closed without one) into line. Bounded: 10 s. */
static void raw_http(unsigned port, const char *req, size_t len, char *line, size_t cap)
{
    line[0] = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CU_ASSERT_FATAL(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CU_ASSERT_FATAL(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    /* the server may answer and close before reading all of it */
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    char buf[512];
    size_t got = 0;
    uint64_t end = cf_now_ms() + 10000;
    while (got < sizeof(buf) - 1 && cf_now_ms() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        if (memchr(buf, '\n', got))
            break;
    }
    close(fd);
    buf[got] = 0;
    size_t l = strcspn(buf, "\r\n");
    snprintf(line, cap, "%.*s", (int)l, buf);
}

static void test_http_refusals(void)
{
    dproc d;
    CU_ASSERT_EQUAL_FATAL(start_with(&d, "127.0.0.1:0", NULL), 0);
    unsigned port = metrics_port(&d);
    CU_ASSERT_FATAL(port > 0);
    char w[200];
    /* only /metrics */
    CU_ASSERT_EQUAL(
        curl(w, sizeof(w), "-o /dev/null -w '%%{http_code}' http://127.0.0.1:%u/other", port), 0);
    CU_ASSERT_STRING_EQUAL(w, "404");
    CU_ASSERT_EQUAL(
        curl(w, sizeof(w), "-o /dev/null -w '%%{http_code}' http://127.0.0.1:%u/", port), 0);
    CU_ASSERT_STRING_EQUAL(w, "404");
    CU_ASSERT_EQUAL(
        curl(w, sizeof(w), "-o /dev/null -w '%%{http_code}' http://127.0.0.1:%u/metrics/x", port),
        0);
    CU_ASSERT_STRING_EQUAL(w, "404");
    /* GET and HEAD only, saying so */
    CU_ASSERT_EQUAL(
        curl(w, sizeof(w),
             "-o /dev/null -D - -w '%%{http_code}' -X POST -d x "
             "http://127.0.0.1:%u/metrics | tr -d '\\r' | grep -E '^(Allow: |[0-9]{3}$)'",
             port),
        0);
    CU_ASSERT_STRING_EQUAL(w, "Allow: GET, HEAD\n405\n");
    CU_ASSERT_EQUAL(curl(w, sizeof(w),
                         "-o /dev/null -w '%%{http_code}' -X DELETE "
                         "http://127.0.0.1:%u/metrics",
                         port),
                    0);
    CU_ASSERT_STRING_EQUAL(w, "405");
    CU_ASSERT_EQUAL(
        curl(w, sizeof(w), "-o /dev/null -w '%%{http_code}' -I http://127.0.0.1:%u/metrics", port),
        0);
    CU_ASSERT_STRING_EQUAL(w, "200");
    /* a query string is no other path */
    CU_ASSERT_EQUAL(curl(w, sizeof(w),
                         "-o /dev/null -w '%%{http_code}' 'http://127.0.0.1:%u/metrics?x=1'", port),
                    0);
    CU_ASSERT_STRING_EQUAL(w, "200");

    char line[300];
    /* headers beyond 8 KiB */
    static char big[20000];
    int n = snprintf(big, sizeof(big), "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(big + n, 'a', 12000);
    n += 12000;
    n += snprintf(big + n, sizeof(big) - (size_t)n, "\r\n\r\n");
    raw_http(port, big, (size_t)n, line, sizeof(line));
    /* (libevent 2.1 answers 400 to headers beyond evhttp_set_max_headers_size) */
    CU_ASSERT_STRING_EQUAL(line, "HTTP/1.1 400 Bad Request");
    /* a body beyond 1 KiB */
    n = snprintf(big, sizeof(big),
                 "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n");
    memset(big + n, 'b', 5000);
    raw_http(port, big, (size_t)n + 5000, line, sizeof(line));
    CU_ASSERT_STRING_EQUAL(line, "HTTP/1.1 413 Request Entity Too Large");
    /* not HTTP */
    static const char garbage[] = "GARBAGE\r\n\r\n";
    raw_http(port, garbage, sizeof(garbage) - 1, line, sizeof(line));
    CU_ASSERT_STRING_EQUAL(line, "HTTP/1.1 400 Bad Request");
    static const char badver[] = "GET /metrics HTTP/9.9\r\n\r\n";
    raw_http(port, badver, sizeof(badver) - 1, line, sizeof(line));
    CU_ASSERT_STRING_EQUAL(line, "HTTP/1.1 400 Bad Request");
    static const char nul[] = "GET /metr\0ics HTTP/1.1\r\n\r\n";
    raw_http(port, nul, sizeof(nul) - 1, line, sizeof(line));
    CU_ASSERT_NOT_EQUAL(strncmp(line, "HTTP/1.1 200", 12), 0);
    /* and it still serves, and the Unix socket too */
    char *t = scrape(port, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL(t);
    if (t)
        CU_ASSERT_EQUAL(value(t, "certforge_build_info{version=\"" CF_VERSION "\"}"), 1);
    free(t);
    CU_ASSERT_EQUAL(status_value("issued"), 0);
    daemon_stop_clean(&d);
}

/* The line of the config file that holds `needle` (1-based), 0 if none. */
static int line_of(const char *path, const char *needle)
{
    char *t = slurp(path);
    int line = 1, found = 0;
    for (const char *p = t; p && *p && !found; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        const char *nl = strchr(p, '\n');
        const char *at = strstr(p, needle);
        if (at && (!nl || at < nl))
            found = line;
        line++;
    }
    free(t);
    return found;
}

static void test_config_refused(void)
{
    dproc d;
    int st = 0;
    /* not loopback: refused by --check-config and at start, naming the line */
    CU_ASSERT_EQUAL(start_with(&d, "0.0.0.0:9464", &st), -1);
    CU_ASSERT_EQUAL(st, 1);
    int line = line_of(MET_CONF, "listen = \"0.0.0.0:9464\"");
    CU_ASSERT_FATAL(line > 0);
    char want[600];
    snprintf(want, sizeof(want),
             "certforged: %s:%d: metrics.listen: '0.0.0.0:9464': not a loopback address: the "
             "metrics endpoint has no authentication and listens on 127.0.0.0/8 or [::1] only",
             MET_CONF, line);
    CU_ASSERT(log_has(d.log, want));
    char err[300];
    snprintf(err, sizeof(err), "%s/check.err", H.dir);
    CU_ASSERT_EQUAL(cf_sh("'%s' --check-config '%s' 2>'%s' >/dev/null", DAEMON, MET_CONF, err), 1);
    CU_ASSERT(log_has(err, want));
    /* a host name is not taken either (it could resolve elsewhere) */
    CU_ASSERT_EQUAL(start_with(&d, "localhost:9464", &st), -1);
    CU_ASSERT_EQUAL(cf_sh("'%s' --check-config '%s' 2>'%s' >/dev/null", DAEMON, MET_CONF, err), 1);
    CU_ASSERT(log_has(err, "metrics.listen: 'localhost:9464': 'localhost' is not a numeric IPv4 "
                           "address"));
    /* loopback passes the check */
    CU_ASSERT_EQUAL(start_with(&d, "127.0.0.1:0", NULL), 0);
    daemon_stop_clean(&d);
    CU_ASSERT_EQUAL(cf_sh("'%s' --check-config '%s' >/dev/null", DAEMON, MET_CONF), 0);

    /* a port in use: refused at start, saying which */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CU_ASSERT_FATAL(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    CU_ASSERT_FATAL(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(fd, 1) == 0 &&
                    getsockname(fd, (struct sockaddr *)&a, &al) == 0);
    char listen_at[64];
    snprintf(listen_at, sizeof(listen_at), "127.0.0.1:%u", ntohs(a.sin_port));
    CU_ASSERT_EQUAL(start_with(&d, listen_at, &st), -1);
    CU_ASSERT_EQUAL(st, 1);
    snprintf(want, sizeof(want), "%s:%d: metrics.listen: %s: Address already in use", MET_CONF,
             line_of(MET_CONF, "listen = "), listen_at);
    CU_ASSERT(log_has(d.log, want));
    CU_ASSERT(log_has(d.log, "event=refused reason=metrics"));
    close(fd);
}

static void test_no_pin_in_logs(void)
{
    dh_assert_no_pin_in_logs(PIN, 6);
}

int main(int argc, char **argv)
{
    static const cf_test tests[] = {
        {"values after issuing", test_values},
        {"64 requests in flight (over [::1] where there is one)", test_pipelined},
        {"HTTP: other paths, methods, oversize and malformed requests", test_http_refusals},
        {"config: loopback only, FILE:LINE; port in use", test_config_refused},
        {"no PIN in any log", test_no_pin_in_logs},
    };
    static const cf_suite suites[] = {
        CF_SUITE("certforged metrics", suite_init, suite_clean, tests),
    };
    return CF_TEST_MAIN(argc, argv, suites);
}
