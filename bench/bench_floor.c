/* floor: the primitives no issuance path can avoid, in a tight loop over
 * the same CSRs — public key from the raw key bytes (EVP_PKEY_fromdata) and
 * the CSR signature check, one raw C_Sign of a digest on a session of the
 * thread's own, and (with --verify all) the check of that signature. */
#include "bench/bench_common.h"
#include "engine/csr/csr.h"
#include "hsm/hsm_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include "common/sigalg.h"

typedef struct floor_ctx {
    const bench_setup *su;
    hsm_token *t;
    csr *csrs;
    size_t ncsrs;
    EVP_PKEY *ca_pub;
    cf_key_type ca_type;
    _Atomic size_t next;
    _Atomic uint64_t errors;
    _Atomic int setup_failed;
    size_t limit;      /* items this phase (0: until deadline) */
    uint64_t deadline; /* CLOCK_MONOTONIC ns */
    bool record;       /* false in the warm-up */
    bench_rec *recs;   /* one per thread */
    _Atomic unsigned rec_next;
} floor_ctx;

static const uint8_t di_sha256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                    0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};

static EVP_PKEY *floor_pubkey(EVP_PKEY_CTX *ec, EVP_PKEY_CTX *rsa, const csr *c, uint8_t *scratch)
{
    EVP_PKEY *pk = NULL;
    OSSL_PARAM p[3];
    switch (c->key) {
    case CSR_KEY_EC_P256:
    case CSR_KEY_EC_P384:
        p[0] = OSSL_PARAM_construct_utf8_string(
            OSSL_PKEY_PARAM_GROUP_NAME, c->key == CSR_KEY_EC_P256 ? "prime256v1" : "secp384r1",
            0);
        p[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)c->pub,
                                                 c->pub_len);
        p[2] = OSSL_PARAM_construct_end();
        if (EVP_PKEY_fromdata(ec, &pk, EVP_PKEY_PUBLIC_KEY, p) != 1)
            return NULL;
        return pk;
    case CSR_KEY_RSA: {
        /* OSSL_PARAM BNs are native-endian: reverse the big-endian bytes. */
        uint8_t *n = scratch, *e = scratch + 600;
        for (size_t i = 0; i < c->rsa_n_len; i++)
            n[i] = c->rsa_n[c->rsa_n_len - 1 - i];
        for (size_t i = 0; i < c->rsa_e_len; i++)
            e[i] = c->rsa_e[c->rsa_e_len - 1 - i];
        p[0] = OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_RSA_N, n, c->rsa_n_len);
        p[1] = OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_RSA_E, e, c->rsa_e_len);
        p[2] = OSSL_PARAM_construct_end();
        if (EVP_PKEY_fromdata(rsa, &pk, EVP_PKEY_PUBLIC_KEY, p) != 1)
            return NULL;
        return pk;
    }
    case CSR_KEY_ED25519:
        return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, c->pub, c->pub_len);
    default:
        return NULL;
    }
}

static void *floor_thread(void *arg)
{
    floor_ctx *fc = arg;
    hsm_token *t = fc->t;
    const bench_setup *su = fc->su;
    bench_rec *rec = &fc->recs[atomic_fetch_add(&fc->rec_next, 1)];
    EVP_MD *sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    EVP_MD *sha384 = EVP_MD_fetch(NULL, "SHA2-384", NULL);
    EVP_MD_CTX *mdc = EVP_MD_CTX_new();
    EVP_PKEY_CTX *ec = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY_CTX *rsa = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY_CTX *vctx = EVP_PKEY_CTX_new_from_pkey(NULL, fc->ca_pub, NULL);
    uint8_t scratch[1200];
    CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
    hsm_err e;
    if (!sha256 || !sha384 || !mdc || !ec || !rsa || !vctx || EVP_PKEY_fromdata_init(ec) != 1 ||
        EVP_PKEY_fromdata_init(rsa) != 1 ||
        /* Ed25519 verifies one-shot with EVP_DigestVerify (below) */
        (fc->ca_type != CF_KEY_ED25519 && EVP_PKEY_verify_init(vctx) != 1))
        goto out;
    if (fc->ca_type == CF_KEY_RSA && (EVP_PKEY_CTX_set_rsa_padding(vctx, RSA_PKCS1_PADDING) != 1 ||
                                      EVP_PKEY_CTX_set_signature_md(vctx, sha256) != 1))
        goto out;
    if (t->f->C_OpenSession(t->slot, CKF_SERIAL_SESSION, NULL, NULL, &h) != CKR_OK)
        goto out;
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, "ca", 2}};
    CK_ULONG cnt = 0;
    if (hsm_find(t, h, tmpl, 2, &key, 1, &cnt, &e) != 0 || cnt != 1)
        goto out;
    CK_MECHANISM mech = {fc->ca_type == CF_KEY_RSA       ? CKM_RSA_PKCS
                         : fc->ca_type == CF_KEY_ED25519 ? CKM_EDDSA
                                                         : CKM_ECDSA,
                         NULL, 0};
    EVP_MD *ca_md = fc->ca_type == CF_KEY_EC_P384 ? sha384 : sha256;

    for (;;) {
        size_t i = atomic_fetch_add(&fc->next, 1);
        uint64_t t_item = bench_ns();
        if (fc->limit ? i >= fc->limit : t_item >= fc->deadline)
            break;
        const csr *c = &fc->csrs[i % fc->ncsrs];
        /* 1. proof of possession */
        EVP_PKEY *pk = floor_pubkey(ec, rsa, c, scratch);
        const EVP_MD *md = c->sig_alg == CSR_SIG_ED25519        ? NULL
                           : c->sig_alg == CSR_SIG_ECDSA_SHA384 ? sha384
                                                                : sha256;
        int stage = pk ? 1 : 0;
        EVP_MD_CTX_reset(mdc);
        bool ok = pk && EVP_DigestVerifyInit_ex(mdc, NULL, md ? EVP_MD_get0_name(md) : NULL,
                                                NULL, NULL, pk, NULL) == 1 &&
                  EVP_DigestVerify(mdc, c->sig, c->sig_len, c->info.raw, c->info.rawlen) == 1;
        EVP_PKEY_free(pk);
        /* 2. one C_Sign of a digest (of TBS-sized data: the CSR info) */
        uint8_t dig[64 + sizeof(di_sha256)], raw[CF_SIG_MAX], der[CF_SIG_MAX];
        unsigned dl = 0;
        const uint8_t *in = dig;
        CK_ULONG inlen;
        if (fc->ca_type == CF_KEY_ED25519) {
            in = c->info.raw;
            inlen = c->info.rawlen;
        } else if (fc->ca_type == CF_KEY_RSA) {
            memcpy(dig, di_sha256, sizeof(di_sha256));
            EVP_Digest(c->info.raw, c->info.rawlen, dig + sizeof(di_sha256), &dl, ca_md, NULL);
            inlen = sizeof(di_sha256) + dl;
        } else {
            EVP_Digest(c->info.raw, c->info.rawlen, dig, &dl, ca_md, NULL);
            inlen = dl;
        }
        CK_ULONG rl = sizeof(raw);
        stage = ok ? 2 : stage;
        ok = ok && t->f->C_SignInit(h, &mech, key) == CKR_OK &&
             t->f->C_Sign(h, (CK_BYTE_PTR)in, inlen, raw, &rl) == CKR_OK;
        /* 3. the issued signature, checked */
        stage = ok ? 3 : stage;
        if (ok && su->verify) {
            if (fc->ca_type == CF_KEY_ED25519) {
                EVP_MD_CTX_reset(mdc); /* it still holds the CSR check's context */
                ok = EVP_DigestVerifyInit_ex(mdc, NULL, NULL, NULL, NULL, fc->ca_pub, NULL) ==
                         1 &&
                     EVP_DigestVerify(mdc, raw, rl, in, inlen) == 1;
            } else if (fc->ca_type == CF_KEY_RSA) {
                ok = EVP_PKEY_verify(vctx, raw, rl, dig + sizeof(di_sha256), dl) == 1;
            } else {
                ECDSA_SIG *s = ECDSA_SIG_new();
                BIGNUM *r = BN_bin2bn(raw, (int)rl / 2, NULL);
                BIGNUM *ss = BN_bin2bn(raw + rl / 2, (int)rl / 2, NULL);
                uint8_t *p = der;
                int l = (s && r && ss && ECDSA_SIG_set0(s, r, ss)) ? i2d_ECDSA_SIG(s, &p) : -1;
                ECDSA_SIG_free(s);
                ok = l > 0 && EVP_PKEY_verify(vctx, der, (size_t)l, dig, dl) == 1;
            }
        }
        if (!fc->record)
            continue;
        bench_hist_record(&rec->h, bench_ns() - t_item);
        if (!ok)
            atomic_fetch_add_explicit(&rec->errors, 1, memory_order_relaxed);
        if (!ok && atomic_fetch_add(&fc->errors, 1) == 0 && getenv("CF_BENCH_DEBUG"))
            fprintf(stderr, "floor: first failure at CSR %zu, stage %d\n", i, stage);
    }
    goto done;
out:
    /* A thread that could not set up measures nothing: the run is void. */
    atomic_store(&fc->setup_failed, 1);
done:
    if (h != CK_INVALID_HANDLE)
        t->f->C_CloseSession(h);
    EVP_PKEY_CTX_free(vctx);
    EVP_PKEY_CTX_free(ec);
    EVP_PKEY_CTX_free(rsa);
    EVP_MD_CTX_free(mdc);
    EVP_MD_free(sha256);
    EVP_MD_free(sha384);
    return NULL;
}

/* One pass of `threads` threads over limit items (0: until deadline). */
static int floor_phase(floor_ctx *fc, unsigned threads, size_t limit, uint64_t deadline,
                       bool record)
{
    pthread_t th[64];
    atomic_store(&fc->next, 0);
    atomic_store(&fc->rec_next, 0);
    fc->limit = limit;
    fc->deadline = deadline;
    fc->record = record;
    unsigned started = 0;
    for (unsigned i = 0; i < threads; i++)
        if (pthread_create(&th[i], NULL, floor_thread, fc) == 0)
            started++;
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    if (started < threads || atomic_load(&fc->setup_failed)) {
        fprintf(stderr, "floor: a measuring thread could not start or set up\n");
        return -1;
    }
    return 0;
}

int bench_floor(const bench_setup *su, unsigned threads, bench_result *r)
{
    floor_ctx fc;
    memset(&fc, 0, sizeof(fc));
    fc.su = su;
    hsm_err e;
    if (hsm_token_open(su->token_uri, NULL, &fc.t, &e) != 0) {
        fprintf(stderr, "floor: %s\n", e.msg);
        return -1;
    }
    FILE *f = fopen(su->ca_pem, "r");
    X509 *ca = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    fc.ca_pub = ca ? X509_get_pubkey(ca) : NULL;
    X509_free(ca);
    fc.ca_type = strcmp(su->ca_key, "ec-p384") == 0   ? CF_KEY_EC_P384
                 : strncmp(su->ca_key, "rsa", 3) == 0 ? CF_KEY_RSA
                 : strcmp(su->ca_key, "ed25519") == 0 ? CF_KEY_ED25519
                                                      : CF_KEY_EC_P256;
    fc.csrs = calloc(su->pool.n, sizeof(*fc.csrs));
    for (size_t i = 0; fc.csrs && i < su->pool.n; i++)
        if (csr_parse(su->pool.items[i].der, su->pool.items[i].len, &fc.csrs[fc.ncsrs]) == CSR_OK)
            fc.ncsrs++;
    if (!fc.ca_pub || fc.ncsrs == 0) {
        fprintf(stderr, "floor: set-up failed\n");
        return -1;
    }
    if (threads > 64)
        threads = 64;
    fc.recs = calloc(threads, sizeof(*fc.recs));
    if (!fc.recs)
        return -1;
    if (su->warmup && floor_phase(&fc, threads, su->warmup, 0, false) != 0)
        return -1;
    uint64_t t0 = bench_ns();
    bench_live *live = bench_live_start(su, "floor", fc.recs, threads, 0);
    int rc = floor_phase(&fc, threads, su->duration > 0 ? 0 : su->count,
                         t0 + (uint64_t)(su->duration * 1e9), true);
    r->seconds = (double)(bench_ns() - t0) / 1e9;
    bench_live_stop(live, r);
    if (rc != 0)
        return -1;
    bench_result_merge(r, fc.recs, threads);
    r->errors = atomic_load(&fc.errors);
    bench_result_error(r, "FAILED", r->errors);
    r->rate = (double)(r->done - r->errors) / r->seconds;
    free(fc.recs);
    EVP_PKEY_free(fc.ca_pub);
    free(fc.csrs);
    hsm_token_close(fc.t);
    return 0;
}
