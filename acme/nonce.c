/* nonce.c — see nonce.h. */
#include "acme/nonce.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "acme/jws.h"

#define MAC_MAX 11

/* The raw part is 8 octets of counter and 10 or 11 of MAC: 11 when the
 * prefix length would otherwise make the whole nonce a length no base64url
 * decoder accepts (≡ 1 mod 4): clients such as certbot decode it. */

struct acme_nonces {
    char prefix[16];
    size_t prefix_len;
    size_t mac_len, raw_len;
    uint8_t key[32];
    _Atomic uint64_t next; /* the next counter to issue */
    uint64_t window;
    _Atomic uint64_t bits[]; /* window / 64 words */
};

int acme_nonces_new(const char *prefix, acme_nonces **out)
{
    return acme_nonces_new_window(prefix, ACME_NONCE_WINDOW, out);
}

int acme_nonces_new_window(const char *prefix, uint64_t window, acme_nonces **out)
{
    *out = NULL;
    size_t pl = strlen(prefix);
    if (pl == 0 || pl >= sizeof(((acme_nonces *)0)->prefix) || window < 64 || window % 64 || window > (1u << 30))
        return -1;
    acme_nonces *n = calloc(1, sizeof(*n) + window / 8);
    if (!n)
        return -1;
    n->window = window;
    memcpy(n->prefix, prefix, pl);
    n->prefix_len = pl;
    n->mac_len = (pl + acme_b64url_len(8 + 10)) % 4 == 1 ? 11 : 10;
    n->raw_len = 8 + n->mac_len;
    if (RAND_bytes(n->key, sizeof(n->key)) != 1) {
        free(n);
        return -1;
    }
    atomic_init(&n->next, 1);
    *out = n;
    return 0;
}

void acme_nonces_free(acme_nonces *n)
{
    if (!n)
        return;
    OPENSSL_cleanse(n->key, sizeof(n->key));
    free(n);
}

static int mac(const acme_nonces *n, const uint8_t ctr[8], uint8_t *out)
{
    uint8_t msg[16 + 8], full[EVP_MAX_MD_SIZE];
    unsigned fl = 0;
    memcpy(msg, n->prefix, n->prefix_len);
    memcpy(msg + n->prefix_len, ctr, 8);
    if (!HMAC(EVP_sha256(), n->key, sizeof(n->key), msg, n->prefix_len + 8, full, &fl) || fl < n->mac_len)
        return -1;
    memcpy(out, full, n->mac_len);
    return 0;
}

int acme_nonce_issue(acme_nonces *n, char *out, size_t cap)
{
    if (cap < ACME_NONCE_MAX)
        return -1;
    uint64_t c = atomic_fetch_add(&n->next, 1);
    uint8_t raw[8 + MAC_MAX];
    for (int i = 0; i < 8; i++)
        raw[i] = (uint8_t)(c >> (56 - 8 * i));
    if (mac(n, raw, raw + 8) != 0)
        return -1;
    uint64_t slot = c % n->window;
    atomic_fetch_or(&n->bits[slot / 64], (uint64_t)1 << (slot % 64));
    memcpy(out, n->prefix, n->prefix_len);
    if (acme_b64url_encode(raw, n->raw_len, out + n->prefix_len, cap - n->prefix_len) == 0)
        return -1;
    return 0;
}

int acme_nonce_redeem(acme_nonces *n, const char *nonce)
{
    if (!nonce || strncmp(nonce, n->prefix, n->prefix_len) != 0)
        return -1;
    const char *b = nonce + n->prefix_len;
    if (strlen(b) != acme_b64url_len(n->raw_len))
        return -1;
    uint8_t raw[8 + MAC_MAX + 2], want[MAC_MAX];
    if (acme_b64url_decode(b, strlen(b), raw, sizeof(raw)) != (long)n->raw_len)
        return -1;
    if (mac(n, raw, want) != 0 || CRYPTO_memcmp(want, raw + 8, n->mac_len) != 0)
        return -1;
    uint64_t c = 0;
    for (int i = 0; i < 8; i++)
        c = c << 8 | raw[i];
    uint64_t next = atomic_load(&n->next);
    if (c == 0 || c >= next || next - c > n->window)
        return -1;
    uint64_t slot = c % n->window, bit = (uint64_t)1 << (slot % 64);
    uint64_t old = atomic_fetch_and(&n->bits[slot / 64], ~bit);
    return (old & bit) ? 0 : -1;
}
