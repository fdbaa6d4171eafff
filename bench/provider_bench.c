/* provider_bench — signatures per second through the certforge OpenSSL
 * provider (EVP_DigestSign on a certforge:key= key, N threads, one
 * provider context) against direct HSM signing (hsm_sign on the HSM layer
 * certforged itself uses, N threads), same token, same P-256 key, same run.
 *
 *   provider_bench [--seconds S] [--rounds R] [--threads "1 2 4 16"] [--verify all|off]
 *
 * Makes a throwaway SoftHSM token with a P-256 key and a CA certificate
 * (certforge CLI), then per round: direct signing with the daemon stopped
 * (two processes must not log in to one SoftHSM token at once), then
 * certforged started on the token and the provider's rate. The median
 * round is reported. --verify sets certforged's pipeline.verify_issued
 * (whether it checks each signature before release). Not a test: no
 * timing is asserted anywhere.
 */
#include "cf_testutil.h"
#include "hsm/hsm.h"

#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/store.h>
#include "common/sigalg.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct run_arg {
    hsm_signer *s;     /* direct */
    OSSL_LIB_CTX *lib; /* provider */
    EVP_PKEY *key;
    double seconds;
    long count, errors;
} run_arg;

static void *run_direct(void *p)
{
    run_arg *a = p;
    uint8_t msg[64], dg[32], sig[CF_SIG_MAX];
    memset(msg, 0x42, sizeof(msg));
    double end = now_s() + a->seconds;
    while (now_s() < end) {
        msg[0] = (uint8_t)a->count;
        size_t sl;
        hsm_err e;
        unsigned dl = 0;
        /* The same work the provider's caller asks for: digest, then sign. */
        if (!EVP_Digest(msg, sizeof(msg), dg, &dl, EVP_sha256(), NULL) ||
            hsm_sign(a->s, CF_SIG_ECDSA_SHA256, dg, dl, sig, &sl, &e) != 0)
            a->errors++;
        a->count++;
    }
    return NULL;
}

static void *run_provider(void *p)
{
    run_arg *a = p;
    uint8_t msg[64], sig[128];
    memset(msg, 0x42, sizeof(msg));
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    double end = now_s() + a->seconds;
    while (now_s() < end) {
        msg[0] = (uint8_t)a->count;
        size_t sl = sizeof(sig);
        if (!m || EVP_DigestSignInit_ex(m, NULL, "SHA256", a->lib, NULL, a->key, NULL) != 1 ||
            EVP_DigestSign(m, sig, &sl, msg, sizeof(msg)) != 1)
            a->errors++;
        a->count++;
    }
    EVP_MD_CTX_free(m);
    ERR_clear_error();
    return NULL;
}

static double measure(void *(*fn)(void *), run_arg proto, int threads, long *errors)
{
    pthread_t th[64];
    run_arg a[64];
    for (int i = 0; i < threads; i++) {
        a[i] = proto;
        pthread_create(&th[i], NULL, fn, &a[i]);
    }
    double t0 = now_s();
    long total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        total += a[i].count - a[i].errors;
        *errors += a[i].errors;
    }
    return (double)total / (now_s() - t0);
}

static int cmp_d(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static pid_t start_daemon(const char *daemon, const char *conf, const char *log)
{
    unlink(log); /* never mistake the last round's ready line for this one's */
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        execl(daemon, daemon, "--config", conf, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 3000 && pid > 0; i++) {
        char buf[4096] = "";
        FILE *f = fopen(log, "r");
        size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
        if (f)
            fclose(f);
        buf[n] = 0;
        if (strstr(buf, "certforged: ready socket="))
            return pid;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return -1;
        usleep(10000);
    }
    return -1;
}

static void stop_daemon(pid_t pid)
{
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

int main(int argc, char **argv)
{
    double secs = 3;
    int rounds = 3;
    const char *threads_list = "1 2 4 16";
    const char *verify = "all";
    static const struct option opts[] = {
        {"seconds", required_argument, NULL, 's'}, {"rounds", required_argument, NULL, 'r'},
        {"threads", required_argument, NULL, 't'}, {"verify", required_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "s:r:t:v:h", opts, NULL)) != -1) {
        switch (o) {
        case 's':
            secs = atof(optarg);
            break;
        case 'r':
            rounds = atoi(optarg);
            break;
        case 't':
            threads_list = optarg;
            break;
        case 'v':
            verify = optarg;
            break;
        default:
            fprintf(stderr,
                    "usage: provider_bench [--seconds S] [--rounds R] [--threads \"1 2 4 16\"] "
                    "[--verify all|off]\n");
            return o == 'h' ? 0 : 2;
        }
    }
    if (rounds < 1 || rounds > 32)
        rounds = 3;
    char cli[512], daemon[512], pdir[512], uri[1024], conf[600], log[600], sock[400], ca[600];
    cf_build_path("certforge", cli, sizeof(cli));
    cf_build_path("certforged", daemon, sizeof(daemon));
    cf_build_path("providers", pdir, sizeof(pdir));
    cf_softhsm H;
    if (cf_softhsm_init(&H, "pbench", "1234") != 0)
        return 1;
    cf_softhsm_uri(&H, NULL, uri, sizeof(uri));
    snprintf(ca, sizeof(ca), "%s/ca.pem", H.dir);
    snprintf(sock, sizeof(sock), "%s/cf.sock", H.dir);
    snprintf(conf, sizeof(conf), "%s/certforged.conf", H.dir);
    snprintf(log, sizeof(log), "%s/certforged.log", H.dir);
    if (cf_sh("'%s' keys generate --token '%s' --type ec-p256 --label ca >/dev/null", cli, uri) ||
        cf_sh("'%s' ca init-root --token '%s' --key 'pkcs11:token=pbench;object=ca' --subject "
              "'/CN=bench' --out '%s' >/dev/null",
              cli, uri, ca)) {
        fprintf(stderr, "provider_bench: CA set-up failed\n");
        goto fail;
    }
    FILE *f = fopen(conf, "w");
    if (!f)
        goto fail;
    fprintf(f,
            "tokens = ( { name = \"ca\"; uri = \"%s\"; } );\n"
            "keys = ( { name = \"ca\"; token = \"ca\"; uri = \"pkcs11:object=ca\"; } );\n"
            "issuers = ( { name = \"ca\"; key = \"ca\"; certificate = \"%s\"; } );\n"
            "profiles = ( { name = \"nf\"; type = \"nf\"; issuer = \"ca\";\n"
            "  subject = { C = \"FI\"; O = \"example.org\"; }; eku = [\"serverAuth\"];\n"
            "  crl_dp = \"http://crl.example.org/x.crl\"; } );\n"
            "pipeline = { verify_issued = \"%s\"; };\n"
            "server = { socket = \"%s\"; socket_mode = \"0600\"; };\n"
            "grants = ( { uid = %u; ops = [\"keys\", \"sign\"]; keys = [\"ca\"]; } );\n"
            "ledger = { backend = \"sqlite\"; path = \"%s/ledger.db\"; };\n",
            uri, ca, verify, sock, (unsigned)getuid(), H.dir);
    fclose(f);

    OSSL_LIB_CTX *lib = OSSL_LIB_CTX_new();
    if (!lib || !OSSL_PROVIDER_set_default_search_path(lib, pdir) ||
        !OSSL_PROVIDER_load(lib, "default") || !OSSL_PROVIDER_load(lib, "certforge")) {
        ERR_print_errors_fp(stderr);
        goto fail;
    }
    char keyuri[500];
    snprintf(keyuri, sizeof(keyuri), "certforge:key=ca;socket=%s", sock);

    printf("P-256, %.1f s per run, %d rounds (direct, then certforged + provider), median; "
           "certforged pipeline.verify_issued = %s\n",
           secs, rounds, verify);
    printf("%-8s %14s %14s %10s\n", "threads", "direct hsm/s", "provider/s", "prov/direct");
    char *list = strdup(threads_list);
    int ns[16], nn = 0;
    for (char *tok = strtok(list, " ,"); tok && nn < 16; tok = strtok(NULL, " ,"))
        if (atoi(tok) >= 1 && atoi(tok) <= 64)
            ns[nn++] = atoi(tok);
    free(list);
    double direct[16][32], prov[16][32];
    long errors = 0;
    for (int r = 0; r < rounds; r++) {
        hsm_token *t = NULL;
        hsm_signer *s = NULL;
        hsm_err e;
        if (hsm_token_open(uri, NULL, &t, &e) != 0 ||
            hsm_signer_open(t, "pkcs11:object=ca", 16, &s, &e) != 0) {
            fprintf(stderr, "provider_bench: %s\n", e.msg);
            goto fail;
        }
        for (int i = 0; i < nn; i++)
            direct[i][r] = measure(run_direct, (run_arg){.s = s, .seconds = secs}, ns[i], &errors);
        hsm_signer_close(s);
        hsm_token_close(t);
        pid_t pid = start_daemon(daemon, conf, log);
        if (pid <= 0) {
            fprintf(stderr, "provider_bench: certforged did not start; see %s\n", log);
            cf_sh("cat '%s' >&2", log);
            goto fail;
        }
        OSSL_STORE_CTX *st = OSSL_STORE_open_ex(keyuri, lib, NULL, NULL, NULL, NULL, NULL, NULL);
        OSSL_STORE_INFO *info = st ? OSSL_STORE_load(st) : NULL;
        EVP_PKEY *key = info ? OSSL_STORE_INFO_get1_PKEY(info) : NULL;
        OSSL_STORE_INFO_free(info);
        OSSL_STORE_close(st);
        if (!key) {
            ERR_print_errors_fp(stderr);
            cf_sh("cat '%s' >&2", log);
            stop_daemon(pid);
            goto fail;
        }
        for (int i = 0; i < nn; i++)
            prov[i][r] = measure(run_provider, (run_arg){.lib = lib, .key = key, .seconds = secs},
                                 ns[i], &errors);
        EVP_PKEY_free(key);
        stop_daemon(pid);
    }
    for (int i = 0; i < nn; i++) {
        qsort(direct[i], (size_t)rounds, sizeof(double), cmp_d);
        qsort(prov[i], (size_t)rounds, sizeof(double), cmp_d);
        double d = direct[i][rounds / 2], p = prov[i][rounds / 2];
        printf("%-8d %14.0f %14.0f %9.1f%%%s\n", ns[i], d, p, 100.0 * p / d,
               errors ? "  (errors!)" : "");
    }
    OSSL_LIB_CTX_free(lib);
    cf_softhsm_cleanup(&H);
    return errors ? 1 : 0;
fail: /* the token folder goes too */
    cf_softhsm_cleanup(&H);
    return 1;
}
