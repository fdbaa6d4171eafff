/* nonce.h — RFC 8555 §6.5 anti-replay nonces without a database write.
 *
 * A nonce is PREFIX || base64url(counter (8 octets, big-endian) ||
 * first 10 octets of HMAC-SHA256(key, PREFIX || counter)). PREFIX names
 * the front end that issued it (several behind one address each get their
 * own, so a nonce is only accepted where it was issued: a foreign one is
 * badNonce, the client retries with the fresh nonce of that answer). The
 * key is random per process, so nonces do not survive a restart.
 *
 * Used once: a bitmap of the last ACME_NONCE_WINDOW counters, one bit each,
 * set when issued and cleared when redeemed (atomically; any thread). A
 * nonce older than the window, forged, foreign, or redeemed before is
 * refused. Memory: ACME_NONCE_WINDOW / 8 octets, fixed.
 */
#ifndef CF_ACME_NONCE_H
#define CF_ACME_NONCE_H

#include <stddef.h>
#include <stdint.h>

#include "acme/acme.h"

#define ACME_NONCE_WINDOW (1u << 22) /* 4 Mi outstanding nonces, 512 KiB */
#define ACME_NONCE_MAX 48            /* longest nonce text, NUL included */

typedef struct acme_nonces acme_nonces;

CF_WUR int acme_nonces_new(const char *prefix, acme_nonces **out);
/* The same with another window (a multiple of 64; tests use small ones). */
CF_WUR int acme_nonces_new_window(const char *prefix, uint64_t window, acme_nonces **out);
void acme_nonces_free(acme_nonces *n);

/* A fresh nonce into out (≥ ACME_NONCE_MAX): 0, or -1 (HMAC failure). */
CF_WUR int acme_nonce_issue(acme_nonces *n, char *out, size_t cap);
/* 0 if the nonce was issued here, is within the window and not redeemed
 * before (it is now redeemed); -1 otherwise. */
CF_WUR int acme_nonce_redeem(acme_nonces *n, const char *nonce);

#endif
