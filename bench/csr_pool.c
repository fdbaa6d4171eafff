#include "bench/csr_pool.h"
#include "common/outfile.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define POOL_MAGIC "CFCSRPOOL1\n"

static EVP_PKEY *keygen(const char *key)
{
    if (strcmp(key, "ec-p256") == 0)
        return EVP_EC_gen("P-256");
    if (strcmp(key, "ec-p384") == 0)
        return EVP_EC_gen("P-384");
    if (strcmp(key, "rsa-2048") == 0)
        return EVP_RSA_gen(2048);
    if (strcmp(key, "rsa-3072") == 0)
        return EVP_RSA_gen(3072);
    if (strcmp(key, "ed25519") == 0)
        return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    return NULL;
}

/* One CSR as an NF would send it: subject O = home network domain, SAN
 * with its NF instance ID URI and FQDN, signed with its own new key. */
static int make_csr(const char *key, csr_item *it)
{
    int rc = -1;
    EVP_PKEY *pk = keygen(key);
    X509_REQ *req = X509_REQ_new();
    X509_NAME *nm = X509_NAME_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    uint8_t r[16];
    if (!pk || !req || !nm || !exts || RAND_bytes(r, sizeof(r)) != 1)
        goto out;
    r[6] = (uint8_t)((r[6] & 0x0f) | 0x40); /* RFC 4122 version 4 */
    r[8] = (uint8_t)((r[8] & 0x3f) | 0x80);
    snprintf(it->uuid, sizeof(it->uuid),
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1],
             r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14],
             r[15]);
    snprintf(it->fqdn, sizeof(it->fqdn), "amf-%.8s.5gc.mnc001.mcc001.3gppnetwork.org", it->uuid);
    X509_NAME_add_entry_by_txt(nm, "C", MBSTRING_ASC, (const unsigned char *)"FI", -1, -1, 0);
    X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_ASC,
                               (const unsigned char *)"5gc.mnc001.mcc001.3gppnetwork.org", -1, -1,
                               0);
    char san[256];
    snprintf(san, sizeof(san), "URI:urn:uuid:%s,DNS:%s", it->uuid, it->fqdn);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
    if (!ext)
        goto out;
    sk_X509_EXTENSION_push(exts, ext);
    if (!X509_REQ_set_version(req, 0) || !X509_REQ_set_subject_name(req, nm) ||
        !X509_REQ_set_pubkey(req, pk) || !X509_REQ_add_extensions(req, exts))
        goto out;
    const EVP_MD *md = EVP_PKEY_get_id(pk) == EVP_PKEY_ED25519 ? NULL
                       : strcmp(key, "ec-p384") == 0           ? EVP_sha384()
                                                               : EVP_sha256();
    if (X509_REQ_sign(req, pk, md) <= 0)
        goto out;
    uint8_t *der = NULL;
    int len = i2d_X509_REQ(req, &der);
    if (len <= 0)
        goto out;
    it->der = der;
    it->len = (size_t)len;
    rc = 0;
out:
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_NAME_free(nm);
    X509_REQ_free(req);
    EVP_PKEY_free(pk);
    return rc;
}

static int load(csr_pool *p, const char *path, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    char magic[sizeof(POOL_MAGIC)];
    int rc = -1;
    if (fread(magic, 1, sizeof(POOL_MAGIC) - 1, f) != sizeof(POOL_MAGIC) - 1 ||
        memcmp(magic, POOL_MAGIC, sizeof(POOL_MAGIC) - 1) != 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        csr_item *it = &p->items[i];
        uint32_t len;
        if (fread(&len, sizeof(len), 1, f) != 1 || len == 0 || len > 65536)
            goto out;
        it->der = OPENSSL_malloc(len);
        if (!it->der || fread(it->der, 1, len, f) != len ||
            fread(it->uuid, 1, sizeof(it->uuid), f) != sizeof(it->uuid) ||
            fread(it->fqdn, 1, sizeof(it->fqdn), f) != sizeof(it->fqdn))
            goto out;
        it->len = len;
        it->uuid[36] = 0;
        it->fqdn[sizeof(it->fqdn) - 1] = 0;
        p->n = i + 1;
    }
    rc = 0;
out:
    fclose(f);
    return rc;
}

static void save(const csr_pool *p, const char *path)
{
    cf_outfile o;
    char err[1200];
    if (cf_outfile_open(&o, path, 0600, CF_OUT_NOSTDOUT | CF_OUT_NOSYNC, err, sizeof(err)) != 0)
        return; /* a cache: without it the CSRs are made again next time */
    FILE *f = o.f;
    fwrite(POOL_MAGIC, 1, sizeof(POOL_MAGIC) - 1, f);
    for (size_t i = 0; i < p->n; i++) {
        uint32_t len = (uint32_t)p->items[i].len;
        fwrite(&len, sizeof(len), 1, f);
        fwrite(p->items[i].der, 1, len, f);
        fwrite(p->items[i].uuid, 1, sizeof(p->items[i].uuid), f);
        fwrite(p->items[i].fqdn, 1, sizeof(p->items[i].fqdn), f);
    }
    if (cf_outfile_commit(&o, err, sizeof(err)) != 0)
        fprintf(stderr, "csr cache: %s\n", err);
}

int csr_pool_get(csr_pool *p, const char *key, size_t n, const char *cache_dir)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->key, sizeof(p->key), "%s", key);
    p->items = calloc(n, sizeof(*p->items));
    if (!p->items)
        return -1;
    char path[1024] = "";
    if (cache_dir && *cache_dir) {
        mkdir(cache_dir, 0700);
        snprintf(path, sizeof(path), "%s/csr-%s-%zu.bin", cache_dir, key, n);
        if (load(p, path, n) == 0)
            return 0;
        csr_pool_free(p);
        snprintf(p->key, sizeof(p->key), "%s", key);
        p->items = calloc(n, sizeof(*p->items));
        if (!p->items)
            return -1;
    }
    EVP_PKEY *probe = keygen(key);
    if (!probe) {
        fprintf(stderr, "certforge-bench: unknown CSR key type '%s' (ec-p256, ec-p384, "
                        "rsa-2048, rsa-3072, ed25519)\n",
                key);
        return -1;
    }
    EVP_PKEY_free(probe);
    bool tty = isatty(2);
    for (size_t i = 0; i < n; i++) {
        if (make_csr(key, &p->items[i]) != 0) {
            fprintf(stderr, "certforge-bench: CSR generation failed\n");
            return -1;
        }
        p->n = i + 1;
        if (tty && (i % 64 == 0 || i + 1 == n))
            fprintf(stderr, "\rgenerating %s CSRs: %zu/%zu", key, i + 1, n);
    }
    if (tty)
        fprintf(stderr, "\n");
    if (path[0])
        save(p, path);
    return 0;
}

void csr_pool_free(csr_pool *p)
{
    for (size_t i = 0; i < p->n; i++)
        OPENSSL_free(p->items[i].der);
    free(p->items);
    memset(p, 0, sizeof(*p));
}
