/* cf_daemon.c — see cf_daemon.h. */
#include "cf_daemon.h"

#include "cf_test.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

char DH_TOKEN[16];
cf_softhsm H;
char CA_PEM[400], CLI[512], DAEMON[512], SOCK[100];
X509 *CA;
uint8_t *CA_DER;
int CA_DER_LEN;
csr_pool POOL;
int NLOGS;
char LOGS[32][400]; /* every daemon log, checked for the PIN at the end */

/* ------------------------------------------------------------ helpers */

char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = malloc(1 << 20);
    size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (buf)
        buf[n] = 0;
    return buf;
}

bool log_has(const char *log, const char *needle)
{
    char *t = slurp(log);
    bool r = t && strstr(t, needle);
    free(t);
    return r;
}

bool log_wait(const char *log, const char *needle, unsigned timeout_ms)
{
    uint64_t end = cf_now_ms() + timeout_ms;
    while (!log_has(log, needle)) {
        if (cf_now_ms() >= end)
            return false;
        cf_sleep_ms(10);
    }
    return true;
}

int log_count(const char *log, const char *needle)
{
    char *t = slurp(log);
    int n = 0;
    for (const char *p = t; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    free(t);
    return n;
}

long daemon_rss_kb(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    char *t = slurp(path);
    const char *v = t ? strstr(t, "VmRSS:") : NULL;
    long kb = v ? atol(v + 6) : -1;
    free(t);
    return kb;
}

void dh_assert_no_pin_in_logs(const char *pin, int min_logs)
{
    CU_ASSERT(NLOGS >= min_logs);
    if (NLOGS > (int)(sizeof(LOGS) / sizeof(LOGS[0])))
        CU_FAIL("more daemon logs than the harness keeps: raise LOGS");
    for (int i = 0; i < NLOGS && i < (int)(sizeof(LOGS) / sizeof(LOGS[0])); i++) {
        char *t = slurp(LOGS[i]);
        if (!t || !t[0]) {
            fprintf(stderr, "\ndaemon log %s is %s\n", LOGS[i], t ? "empty" : "missing");
            CU_FAIL("a daemon log was not written");
        } else if (strstr(t, pin)) {
            fprintf(stderr, "\nPIN found in %s\n", LOGS[i]);
            CU_FAIL("PIN in a log");
        }
        free(t);
    }
}

void write_conf(const char *path, const conf_opts *o)
{
    char grants[1024];
    if (o->grants)
        snprintf(grants, sizeof(grants), "%s", o->grants);
    else
        snprintf(grants, sizeof(grants),
                 "( { uid = %u; profiles = [\"nf\"]; ops = [\"issue\", \"status\", \"keys\"]; } )",
                 (unsigned)getuid());
    char issuers[1500];
    if (o->issuers)
        snprintf(issuers, sizeof(issuers), "%s", o->issuers);
    else
        snprintf(issuers, sizeof(issuers),
                 "( { name = \"ca\"; key = \"ca\"; certificate = \"%s\"; } )", CA_PEM);
    char ledger[1024];
    if (o->ledger)
        snprintf(ledger, sizeof(ledger), "%s", o->ledger);
    else
        snprintf(ledger, sizeof(ledger), "ledger = { backend = \"sqlite\"; path = \"%s%s\"; };\n",
                 o->ledger_path ? o->ledger_path : H.dir, o->ledger_path ? "" : "/ledger.db");
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fprintf(
        f,
        "tokens = ( { name = \"ca\"; uri = "
        "\"pkcs11:token=%s?module-path=%s&pin-source=file:%s\"; } );\n"
        "keys = ( { name = \"ca\"; token = \"ca\"; uri = \"pkcs11:object=ca\"; }%s );\n"
        "issuers = %s;\n"
        "profiles = (\n"
        "  { name = \"nf\"; type = \"nf\"; issuer = \"ca\";\n"
        "    subject = { C = \"FI\"; O = \"5gc.mnc001.mcc001.3gppnetwork.org\"; };\n"
        "    eku = [\"serverAuth\", \"clientAuth\"]; crl_dp = \"http://crl.example.org/nf.crl\"; "
        "},\n"
        "  { name = \"nf2\"; type = \"nf\"; issuer = \"ca\";\n"
        "    subject = { C = \"FI\"; O = \"5gc.mnc001.mcc001.3gppnetwork.org\"; };\n"
        "    eku = [\"serverAuth\"]; crl_dp = \"http://crl.example.org/nf.crl\"; }%s\n"
        ");\n"
        "pipeline = { %s };\n"
        "server = { socket = \"%s\"; %s };\n"
        "grants = %s;\n"
        "%s%s\n",
        DH_TOKEN, o->shim ? CF_SHIM_PATH : H.module, H.pin_file, o->extra_keys ? o->extra_keys : "",
        issuers, o->extra_profiles ? o->extra_profiles : "",
        o->pipeline ? o->pipeline : "workers = 2; queue = 4096; batch = 16;",
        o->socket ? o->socket : SOCK, o->server ? o->server : "", grants, ledger,
        o->extra ? o->extra : "");
    fclose(f);
}

/* Start certforged with conf; wait (bounded) for its ready line. Returns 0
 * when ready; else -1 with d->pid = 0 and *status = its exit status. */
int daemon_start_ex(dproc *d, const char *conf, const char *shim_latency_us, int *status)
{
    snprintf(d->log, sizeof(d->log), "%s/daemon-%d.log", H.dir, NLOGS);
    if (NLOGS < (int)(sizeof(LOGS) / sizeof(LOGS[0])))
        snprintf(LOGS[NLOGS], sizeof(LOGS[0]), "%s", d->log);
    NLOGS++;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* A test that dies (a sanitizer halting on a report, a crash) takes
         * its daemon with it: no certforged outlives the suite. */
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
            _exit(125);
        int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0)
            _exit(126);
        dup2(fd, 2);
        close(fd);
        setenv("CF_SHIM_MODULE", H.module, 1);
        if (shim_latency_us)
            setenv("CF_SHIM_SIGN_LATENCY_US", shim_latency_us, 1);
        execl(DAEMON, DAEMON, "--config", conf, (char *)NULL);
        _exit(127);
    }
    d->pid = pid;
    uint64_t end = cf_now_ms() + 15000;
    while (cf_now_ms() < end) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            d->pid = 0;
            if (status)
                *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            return -1;
        }
        if (log_has(d->log, "certforged: ready socket="))
            return 0;
        cf_sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    d->pid = 0;
    if (status)
        *status = -1;
    return -1;
}

int daemon_start(dproc *d, const char *conf, const char *shim_latency_us)
{
    int st = 0;
    int rc = daemon_start_ex(d, conf, shim_latency_us, &st);
    if (rc != 0) {
        char *t = slurp(d->log);
        fprintf(stderr, "\ncertforged did not start (status %d):\n%s\n", st, t ? t : "");
        free(t);
    }
    return rc;
}

/* Send sig, wait (bounded) for the exit; returns the exit status (128+sig
 * when killed, -1 when it had to be killed). */
int daemon_stop(dproc *d, int sig, unsigned timeout_ms)
{
    if (d->pid <= 0)
        return -1;
    kill(d->pid, sig);
    uint64_t end = cf_now_ms() + timeout_ms;
    int st;
    while (cf_now_ms() < end) {
        if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
            d->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        cf_sleep_ms(10);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    d->pid = 0;
    return -1;
}

/* A clean stop: exit 0, socket removed, no sanitizer report in the log. */
void daemon_stop_clean(dproc *d)
{
    int st = daemon_stop(d, SIGTERM, 20000);
    CU_ASSERT_EQUAL(st, 0);
    struct stat sb;
    CU_ASSERT_NOT_EQUAL(lstat(SOCK, &sb), 0);
    char *t = slurp(d->log);
    CU_ASSERT_PTR_NOT_NULL(t);
    if (t) {
        CU_ASSERT_PTR_NULL(strstr(t, "Sanitizer"));
        CU_ASSERT_PTR_NULL(strstr(t, "runtime error"));
        CU_ASSERT_PTR_NOT_NULL(strstr(t, "event=stop"));
        if (st != 0 || strstr(t, "Sanitizer"))
            fprintf(stderr, "\n--- %s ---\n%s\n", d->log, t);
    }
    free(t);
}

cf_client *client(void)
{
    cf_client *c = NULL;
    char err[256];
    if (cf_client_connect(SOCK, &c, err, sizeof(err)) != 0)
        fprintf(stderr, "\nconnect: %s\n", err);
    return c;
}

void fill_req(cf_issue_req *r, const csr_item *it, const char *profile)
{
    static const char amf[] = "AMF";
    memset(r, 0, sizeof(*r));
    r->profile = (cf_str){profile, strlen(profile)};
    r->csr_der = it->der;
    r->csr_len = it->len;
    r->nf_instance_id = (cf_str){it->uuid, strlen(it->uuid)};
    r->fqdns[0] = (cf_str){it->fqdn, strlen(it->fqdn)};
    r->n_fqdns = 1;
    r->nf_types[0] = (cf_str){amf, 3};
    r->n_nf_types = 1;
}

/* A relying party's check: the certificate chains to the CA (strict). */
int verify_cert(const uint8_t *der, size_t len)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (!x || p != der + len) {
        X509_free(x);
        return -1;
    }
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_add_cert(st, CA);
    X509_STORE_CTX_init(ctx, st, x, NULL);
    X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_X509_STRICT);
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
    int ok = X509_verify_cert(ctx) == 1;
    if (!ok)
        fprintf(stderr, "\nverify: %s\n",
                X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    X509_free(x);
    return ok ? 0 : -1;
}

const char *kv_get(const cf_response *r, const char *key, char *buf, size_t len)
{
    for (unsigned i = 0; i < r->n_kv; i++)
        if (r->kv[i].key.len == strlen(key) && memcmp(r->kv[i].key.p, key, r->kv[i].key.len) == 0) {
            snprintf(buf, len, "%.*s", (int)r->kv[i].value.len, r->kv[i].value.p);
            return buf;
        }
    return NULL;
}

long status_value(const char *key)
{
    cf_client *c = client();
    cf_response r;
    char v[64];
    long out = -1;
    if (c && cf_client_status(c, 5000, &r) == 0 && r.status == CF_ST_OK && kv_get(&r, key, v, 64))
        out = strtol(v, NULL, 10);
    cf_client_close(c);
    return out;
}

/* Wait until the daemon counts `want` connections (ours for STATUS included). */
void wait_connections(long want)
{
    uint64_t end = cf_now_ms() + 5000;
    while (cf_now_ms() < end && status_value("connections") != want)
        cf_sleep_ms(20);
}

/* --- raw sockets --- */

int raw_connect(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", SOCK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int raw_send(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read exactly n octets within the deadline: 1 done, 0 EOF first, -1 error/timeout. */
int raw_read_n(int fd, uint8_t *buf, size_t n, uint64_t deadline)
{
    size_t got = 0;
    while (got < n) {
        int left = (int)(deadline > cf_now_ms() ? deadline - cf_now_ms() : 0);
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, left) <= 0)
            return -1;
        ssize_t r = recv(fd, buf + got, n - got, 0);
        if (r == 0)
            return 0;
        if (r < 0)
            return errno == ECONNRESET ? 0 : -1;
        got += (size_t)r;
    }
    return 1;
}

/* One response frame: its decoded form in *out (pointing into buf).
 * Returns 1, 0 on EOF, -1 on timeout / bad frame. */
int raw_response(int fd, uint8_t *buf, size_t cap, proto_resp *out, unsigned timeout_ms)
{
    uint64_t deadline = cf_now_ms() + timeout_ms;
    int r = raw_read_n(fd, buf, 4, deadline);
    if (r != 1)
        return r;
    size_t len =
        4 + (((size_t)buf[0] << 24) | ((size_t)buf[1] << 16) | ((size_t)buf[2] << 8) | buf[3]);
    if (len > cap || len < PROTO_HDR_LEN)
        return -1;
    if (raw_read_n(fd, buf + 4, len - 4, deadline) != 1)
        return -1;
    return proto_resp_decode(buf, len, out) == PROTO_OK ? 1 : -1;
}

/* The daemon closes: EOF (or reset) within timeout, with no further answer. */
bool raw_eof(int fd, unsigned timeout_ms)
{
    uint8_t b[64];
    return raw_read_n(fd, b, 1, cf_now_ms() + timeout_ms) == 0;
}

size_t enc_issue(uint8_t *buf, size_t cap, uint64_t id, const csr_item *it, const char *profile)
{
    cf_issue_req r;
    fill_req(&r, it, profile);
    return proto_enc_issue_req(buf, cap, id, &r);
}

/* ------------------------------------------------------------ suite */

/* The CA key and certificate (with the certforge CLI) and the CSR pool. */
static int setup_ca(const char *token, const char *ca_cn)
{
    char uri[1024];
    cf_build_path("certforge", CLI, sizeof(CLI));
    cf_build_path("certforged", DAEMON, sizeof(DAEMON));
    cf_softhsm_uri(&H, NULL, uri, sizeof(uri));
    snprintf(CA_PEM, sizeof(CA_PEM), "%s/ca.pem", H.dir);
    if (strlen(H.dir) + sizeof("/run/certforged.sock") > sizeof(SOCK))
        return -1;
    memcpy(SOCK, H.dir, strlen(H.dir));
    memcpy(SOCK + strlen(H.dir), "/run/certforged.sock", sizeof("/run/certforged.sock"));
    /* the socket's folder exists, as a service manager's RuntimeDirectory
     * would (a daemon removes one it made itself when its start is refused) */
    char run[sizeof(H.dir) + 8];
    snprintf(run, sizeof(run), "%s/run", H.dir);
    if (mkdir(run, 0750) != 0 && errno != EEXIST)
        return -1;
    if (cf_sh("'%s' keys generate --token '%s' --type ec-p256 --label ca >/dev/null", CLI, uri) ||
        cf_sh("'%s' ca init-root --token '%s' --key 'pkcs11:token=%s;object=ca' --subject "
              "'/C=FI/O=5gc.mnc001.mcc001.3gppnetwork.org/CN=%s' --out '%s' >/dev/null",
              CLI, uri, token, ca_cn, CA_PEM))
        return -1;
    FILE *f = fopen(CA_PEM, "r");
    CA = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    if (!CA || (CA_DER_LEN = i2d_X509(CA, &CA_DER)) <= 0)
        return -1;
    /* Fill OpenSSL's cached extensions (key identifiers, flags) now:
     * verify_cert() runs on several threads with this one X509, and the
     * cache is filled lazily on first use (TSan saw two threads at it). */
    if (X509_check_purpose(CA, -1, 0) != 1)
        return -1;
    return csr_pool_get(&POOL, "ec-p256", 64, NULL);
}

int dh_suite_init(const char *token, const char *pin, const char *ca_cn)
{
    signal(SIGPIPE, SIG_IGN);
    snprintf(DH_TOKEN, sizeof(DH_TOKEN), "%s", token);
    NLOGS = 0;
    int rc = cf_softhsm_init(&H, token, pin);
    if (rc != 0)
        return rc; /* 1: skipped, no SoftHSM2 */
    if (setup_ca(token, ca_cn) != 0) {
        dh_suite_clean();
        return cf_test_setup_failed("token %s: no CA or CSR pool", token);
    }
    return 0;
}

int dh_suite_clean(void)
{
    X509_free(CA);
    CA = NULL;
    OPENSSL_free(CA_DER);
    CA_DER = NULL;
    csr_pool_free(&POOL);
    memset(&POOL, 0, sizeof(POOL));
    cf_softhsm_cleanup(&H);
    return 0;
}
