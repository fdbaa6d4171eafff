/* hsm_bench — sign rate through the HSM layer (pooled sessions, fork gate,
 * recovery checks, r||s → DER) against raw C_SignInit + C_Sign on a
 * session per thread, same token, same key, same run.
 *
 *   hsm_bench [--seconds S] [--rounds R] [--threads "1 2"] [--key ec-p256|ec-p384|rsa-2048|ed25519]
 *
 * Creates a throwaway SoftHSM token in a temporary folder (or uses
 * CERTFORGE_TOKEN + --object if given). Rounds alternate raw and layer so
 * that drift on a shared machine hits both; the median round is reported.
 */
#include "cf_testutil.h"
#include "hsm/hsm_internal.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "common/sigalg.h"

typedef struct {
    hsm_token *t;
    hsm_signer *s;
    cf_sig_alg mech;
    CK_MECHANISM ck;
    size_t inlen;
    double seconds;
    bool raw;
    long count;
    long errors;
} run_arg;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *run(void *p)
{
    run_arg *a = p;
    uint8_t in[64], sig[CF_SIG_MAX];
    memset(in, 0x42, sizeof(in));
    CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
    hsm_err e;
    if (a->raw) {
        /* The floor: own session, key handle found once, nothing else. */
        if (a->t->f->C_OpenSession(a->t->slot, CKF_SERIAL_SESSION, NULL, NULL, &h) != CKR_OK)
            return NULL;
        CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
        CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, "bench", 5}};
        CK_ULONG n = 0;
        if (hsm_find(a->t, h, tmpl, 2, &key, 1, &n, &e) != 0 || n != 1)
            return NULL;
    }
    double end = now_s() + a->seconds;
    long c = 0;
    while (1) {
        for (int i = 0; i < 16; i++) {
            in[0] = (uint8_t)c;
            if (a->raw) {
                CK_ULONG sl = sizeof(sig);
                if (a->t->f->C_SignInit(h, &a->ck, key) != CKR_OK ||
                    a->t->f->C_Sign(h, in, a->inlen, sig, &sl) != CKR_OK)
                    a->errors++;
            } else {
                size_t sl;
                if (hsm_sign(a->s, a->mech, in, a->inlen, sig, &sl, &e) != 0)
                    a->errors++;
            }
            c++;
        }
        if (now_s() >= end)
            break;
    }
    a->count = c;
    if (h != CK_INVALID_HANDLE)
        a->t->f->C_CloseSession(h);
    return NULL;
}

static double measure(hsm_token *t, hsm_signer *s, cf_sig_alg m, CK_MECHANISM ck, size_t inlen,
                      int threads, double secs, bool raw, long *errors)
{
    pthread_t th[64];
    run_arg a[64];
    for (int i = 0; i < threads; i++) {
        a[i] = (run_arg){t, s, m, ck, inlen, secs, raw, 0, 0};
        pthread_create(&th[i], NULL, run, &a[i]);
    }
    double t0 = now_s();
    long total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        total += a[i].count;
        *errors += a[i].errors;
    }
    return (double)total / (now_s() - t0);
}

static int cmp_d(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

int main(int argc, char **argv)
{
    double secs = 3;
    int rounds = 5;
    const char *threads_list = "1 2";
    const char *keytype = "ec-p256";
    static const struct option opts[] = {{"seconds", required_argument, NULL, 's'},
                                         {"rounds", required_argument, NULL, 'r'},
                                         {"threads", required_argument, NULL, 't'},
                                         {"key", required_argument, NULL, 'k'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "s:r:t:k:h", opts, NULL)) != -1) {
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
        case 'k':
            keytype = optarg;
            break;
        default:
            fprintf(stderr, "usage: hsm_bench [--seconds S] [--rounds R] [--threads \"1 2\"] "
                            "[--key ec-p256|ec-p384|rsa-2048|ed25519]\n");
            return o == 'h' ? 0 : 2;
        }
    }
    struct {
        const char *name, *p11tool;
        cf_sig_alg mech;
        CK_MECHANISM_TYPE ck;
        size_t inlen;
    } kinds[] = {
        {"ec-p256", "EC:prime256v1", CF_SIG_ECDSA_SHA256, CKM_ECDSA, 32},
        {"ec-p384", "EC:secp384r1", CF_SIG_ECDSA_SHA384, CKM_ECDSA, 48},
        {"rsa-2048", "rsa:2048", CF_SIG_RSA_PKCS1_SHA256, CKM_RSA_PKCS, 51},
        {"ed25519", "EC:edwards25519", CF_SIG_ED25519, CKM_EDDSA, 64},
    };
    int k = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(kinds[i].name, keytype) == 0)
            k = i;
    if (k < 0) {
        fprintf(stderr, "hsm_bench: unknown key type %s\n", keytype);
        return 2;
    }
    cf_softhsm H;
    if (cf_softhsm_init(&H, "bench", "1234") != 0 ||
        cf_softhsm_keygen(&H, "bench", "1234", kinds[k].p11tool, "bench", "01") != 0)
        return 1;
    char uri[1024];
    cf_softhsm_uri(&H, NULL, uri, sizeof(uri));
    hsm_token *t = NULL;
    hsm_signer *s = NULL;
    hsm_err e;
    if (hsm_token_open(uri, NULL, &t, &e) != 0 ||
        hsm_signer_open(t, "pkcs11:object=bench", 8, &s, &e) != 0) {
        fprintf(stderr, "hsm_bench: %s\n", e.msg);
        return 1;
    }
    /* RSA raw gets the DigestInfo-prefixed input length the layer builds
     * (19 + 32): both paths sign the same number of bytes. */
    CK_MECHANISM ck = {kinds[k].ck, NULL, 0};
    size_t raw_inlen = kinds[k].inlen, layer_inlen = k == 2 ? 32 : kinds[k].inlen;

    printf("key %s, %.1f s per run, %d rounds alternating raw/layer, median reported\n",
           keytype, secs, rounds);
    printf("%-8s %14s %14s %10s\n", "threads", "raw C_Sign/s", "layer/s", "layer/raw");
    char *list = strdup(threads_list);
    for (char *tok = strtok(list, " ,"); tok; tok = strtok(NULL, " ,")) {
        int n = atoi(tok);
        if (n < 1 || n > 64)
            continue;
        double raw[32], lay[32];
        long errors = 0;
        for (int r = 0; r < rounds && r < 32; r++) {
            raw[r] = measure(t, s, kinds[k].mech, ck, raw_inlen, n, secs, true, &errors);
            lay[r] = measure(t, s, kinds[k].mech, ck, layer_inlen, n, secs, false, &errors);
        }
        qsort(raw, (size_t)rounds, sizeof(double), cmp_d);
        qsort(lay, (size_t)rounds, sizeof(double), cmp_d);
        double mr = raw[rounds / 2], ml = lay[rounds / 2];
        printf("%-8d %14.0f %14.0f %9.1f%%%s\n", n, mr, ml, 100.0 * ml / mr,
               errors ? "  (errors!)" : "");
    }
    free(list);
    hsm_signer_close(s);
    hsm_token_close(t);
    cf_softhsm_cleanup(&H);
    return 0;
}
