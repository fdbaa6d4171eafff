/* csr_pool.h — a pool of distinct NF CSRs for benchmarks: each with its
 * own key, an NF instance ID and an FQDN, generated once with OpenSSL and
 * cached on disk. */
#ifndef CF_CSR_POOL_H
#define CF_CSR_POOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct csr_item {
    uint8_t *der;
    size_t len;
    char uuid[37];
    char fqdn[96];
} csr_item;

typedef struct csr_pool {
    csr_item *items;
    size_t n;
    char key[16]; /* "ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "ed25519" */
} csr_pool;

/* Load `n` CSRs of key type `key` from cache_dir (created if needed), or
 * generate and cache them. Prints progress on stderr when generating.
 * Returns 0, or -1 with a message on stderr. */
int csr_pool_get(csr_pool *p, const char *key, size_t n, const char *cache_dir);
void csr_pool_free(csr_pool *p);

#endif
