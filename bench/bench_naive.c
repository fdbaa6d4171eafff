/* naive: what a CA back end written with OpenSSL 3's high-level API and
 * libp11 does per certificate — d2i_X509_REQ, X509_REQ_verify, X509_new +
 * X509_set_*, extensions from strings (X509V3_EXT_conf_nid), X509_sign
 * with a libp11 key, i2d_X509. The same NF profile as certforge's. It
 * verifies no issued signature (compare with --verify off). */
#include "bench/bench_common.h"

#include <libp11.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

typedef struct naive_ctx {
    const bench_setup *su;
    EVP_PKEY *ca_key; /* libp11: signs in the token */
    X509 *ca;
    const EVP_MD *md;
    _Atomic size_t next;
    _Atomic uint64_t errors;
    size_t limit;      /* items this phase (0: until deadline) */
    uint64_t deadline; /* CLOCK_MONOTONIC ns */
    bool record;       /* false in the warm-up */
    bench_rec *recs;   /* one per thread */
    _Atomic unsigned rec_next;
} naive_ctx;

static int add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, v3, nid, value);
    if (!ext)
        return 0;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

static int issue_one(naive_ctx *nc, const csr_item *it)
{
    int ok = 0;
    const unsigned char *p = it->der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)it->len);
    X509 *x = X509_new();
    X509_NAME *subj = X509_NAME_new();
    BIGNUM *bn = BN_new();
    ASN1_INTEGER *serial = NULL;
    ASN1_OBJECT *nft_oid = NULL;
    ASN1_OCTET_STRING *nft_val = NULL;
    uint8_t *der = NULL;
    if (!req || !x || !subj || !bn)
        goto out;
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
    if (!pub || X509_REQ_verify(req, pub) != 1)
        goto out;
    uint8_t rnd[16];
    RAND_bytes(rnd, sizeof(rnd));
    rnd[0] &= 0x7f;
    if (!BN_bin2bn(rnd, sizeof(rnd), bn) || !(serial = BN_to_ASN1_INTEGER(bn, NULL)))
        goto out;
    X509_NAME_add_entry_by_txt(subj, "C", MBSTRING_ASC, (const unsigned char *)"FI", -1, -1, 0);
    X509_NAME_add_entry_by_txt(subj, "O", MBSTRING_ASC,
                               (const unsigned char *)"5gc.mnc001.mcc001.3gppnetwork.org", -1, -1,
                               0);
    if (!X509_set_version(x, X509_VERSION_3) || !X509_set_serialNumber(x, serial) ||
        !X509_set_issuer_name(x, X509_get_subject_name(nc->ca)) ||
        !X509_set_subject_name(x, subj) || !X509_gmtime_adj(X509_getm_notBefore(x), 0) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 90L * 86400) || !X509_set_pubkey(x, pub))
        goto out;
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, nc->ca, x, NULL, NULL, 0);
    char san[256];
    snprintf(san, sizeof(san), "critical,URI:urn:uuid:%s,DNS:%s", it->uuid, it->fqdn);
    if (!add_ext(x, &v3, NID_subject_alt_name, san) ||
        !add_ext(x, &v3, NID_key_usage, "critical,digitalSignature") ||
        !add_ext(x, &v3, NID_ext_key_usage, "serverAuth,clientAuth") ||
        !add_ext(x, &v3, NID_subject_key_identifier, "hash") ||
        !add_ext(x, &v3, NID_authority_key_identifier, "keyid:always") ||
        !add_ext(x, &v3, NID_crl_distribution_points,
                 "URI:http://crl.5gc.mnc001.mcc001.3gppnetwork.org/nf.crl"))
        goto out;
    /* NFTypes (RFC 9310): SEQUENCE OF IA5String { "AMF" } */
    static const uint8_t nft[] = {0x30, 0x05, 0x16, 0x03, 'A', 'M', 'F'};
    nft_oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.34", 1);
    nft_val = ASN1_OCTET_STRING_new();
    if (!nft_oid || !nft_val || !ASN1_OCTET_STRING_set(nft_val, nft, sizeof(nft)))
        goto out;
    X509_EXTENSION *e = X509_EXTENSION_create_by_OBJ(NULL, nft_oid, 0, nft_val);
    if (!e)
        goto out;
    int added = X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    if (!added || X509_sign(x, nc->ca_key, nc->md) <= 0)
        goto out;
    ok = i2d_X509(x, &der) > 0;
out:
    OPENSSL_free(der);
    ASN1_OBJECT_free(nft_oid);
    ASN1_OCTET_STRING_free(nft_val);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    X509_NAME_free(subj);
    X509_free(x);
    X509_REQ_free(req);
    return ok;
}

static void *naive_thread(void *arg)
{
    naive_ctx *nc = arg;
    bench_rec *rec = &nc->recs[atomic_fetch_add(&nc->rec_next, 1)];
    for (;;) {
        size_t i = atomic_fetch_add(&nc->next, 1);
        uint64_t t_item = bench_ns();
        if (nc->limit ? i >= nc->limit : t_item >= nc->deadline)
            break;
        int ok = issue_one(nc, &nc->su->pool.items[i % nc->su->pool.n]);
        if (!nc->record)
            continue;
        bench_hist_record(&rec->h, bench_ns() - t_item);
        if (!ok) {
            atomic_fetch_add(&nc->errors, 1);
            atomic_fetch_add_explicit(&rec->errors, 1, memory_order_relaxed);
        }
    }
    return NULL;
}

static void naive_phase(naive_ctx *nc, unsigned threads, size_t limit, uint64_t deadline,
                        bool record)
{
    pthread_t th[64];
    atomic_store(&nc->next, 0);
    atomic_store(&nc->rec_next, 0);
    nc->limit = limit;
    nc->deadline = deadline;
    nc->record = record;
    unsigned started = 0;
    for (unsigned i = 0; i < threads; i++)
        if (pthread_create(&th[i], NULL, naive_thread, nc) == 0)
            started++;
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
}

int bench_naive(const bench_setup *su, unsigned threads, bench_result *r)
{
    naive_ctx nc;
    memset(&nc, 0, sizeof(nc));
    nc.su = su;
    PKCS11_CTX *ctx = PKCS11_CTX_new();
    PKCS11_SLOT *slots = NULL, *slot = NULL;
    unsigned nslots = 0, nkeys = 0;
    PKCS11_KEY *keys = NULL;
    if (!ctx || PKCS11_CTX_load(ctx, su->module) != 0 ||
        PKCS11_enumerate_slots(ctx, &slots, &nslots) != 0) {
        fprintf(stderr, "naive: libp11 cannot load %s\n", su->module);
        return -1;
    }
    for (unsigned i = 0; i < nslots; i++)
        if (slots[i].token && strcmp(slots[i].token->label, "bench") == 0)
            slot = &slots[i];
    if (!slot || PKCS11_login(slot, 0, su->pin) != 0 ||
        PKCS11_enumerate_keys(slot->token, &keys, &nkeys) != 0) {
        fprintf(stderr, "naive: libp11 cannot log in or list keys\n");
        return -1;
    }
    for (unsigned i = 0; i < nkeys; i++)
        if (keys[i].label && strcmp(keys[i].label, "ca") == 0)
            nc.ca_key = PKCS11_get_private_key(&keys[i]);
    FILE *f = fopen(su->ca_pem, "r");
    nc.ca = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    if (!nc.ca_key || !nc.ca) {
        fprintf(stderr, "naive: CA key or certificate missing\n");
        return -1;
    }
    nc.md = strcmp(su->ca_key, "ed25519") == 0   ? NULL
            : strcmp(su->ca_key, "ec-p384") == 0 ? EVP_sha384()
                                                 : EVP_sha256();
    if (threads > 64)
        threads = 64;
    nc.recs = calloc(threads, sizeof(*nc.recs));
    if (!nc.recs)
        return -1;
    if (su->warmup)
        naive_phase(&nc, threads, su->warmup, 0, false);
    uint64_t t0 = bench_ns();
    bench_live *live = bench_live_start(su, "naive", nc.recs, threads, 0);
    naive_phase(&nc, threads, su->duration > 0 ? 0 : su->count,
                t0 + (uint64_t)(su->duration * 1e9), true);
    r->seconds = (double)(bench_ns() - t0) / 1e9;
    bench_live_stop(live, r);
    bench_result_merge(r, nc.recs, threads);
    r->errors = atomic_load(&nc.errors);
    bench_result_error(r, "FAILED", r->errors);
    r->rate = (double)(r->done - r->errors) / r->seconds;
    free(nc.recs);
    EVP_PKEY_free(nc.ca_key);
    X509_free(nc.ca);
    PKCS11_release_all_slots(ctx, slots, nslots);
    PKCS11_CTX_unload(ctx);
    PKCS11_CTX_free(ctx);
    return 0;
}
