/* csr.h — PKCS#10 (RFC 2986) certification requests: parse with the
 * engine's own DER reader (zero-copy, no allocation) and check proof of
 * possession with OpenSSL, algorithms fetched once per thread.
 *
 * Knows CSRs and keys; nothing of profiles, policy or sockets.
 */
#ifndef CF_CSR_H
#define CF_CSR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/compiler.h"
#include "engine/der/der.h"

/* Distinct outcomes a front end can act on. Keep csr_err_name() parallel. */
typedef enum csr_err {
    CSR_OK = 0,
    CSR_ERR_MALFORMED,       /* not DER, or not a CertificationRequest */
    CSR_ERR_UNSUPPORTED_KEY, /* key algorithm or curve not accepted */
    CSR_ERR_WEAK_KEY,        /* RSA modulus < 2048 or > 4096 bits, or e != 65537 */
    CSR_ERR_INVALID_POINT,   /* EC point not on the curve / not uncompressed / bad Ed25519 */
    CSR_ERR_UNSUPPORTED_SIG, /* signature algorithm not accepted (or not fitting the key) */
    CSR_ERR_BAD_SIGNATURE,   /* proof of possession failed */
    CSR_ERR_INTERNAL,        /* csr_verify: OpenSSL failed for a reason other than the
                                input (out of memory); not the requester's fault */
    CSR_ERR__MAX
} csr_err;

const char *csr_err_name(csr_err e); /* "ok", "malformed", "unsupported-key", ... */

typedef enum csr_key {
    CSR_KEY_EC_P256,
    CSR_KEY_EC_P384,
    CSR_KEY_RSA,
    CSR_KEY_ED25519,
    CSR_KEY__MAX
} csr_key;

typedef enum csr_sig {
    CSR_SIG_ECDSA_SHA256,
    CSR_SIG_ECDSA_SHA384,
    CSR_SIG_ECDSA_SHA512,
    CSR_SIG_RSA_SHA256,
    CSR_SIG_RSA_SHA384,
    CSR_SIG_RSA_SHA512,
    CSR_SIG_RSA_PSS, /* RSASSA-PSS with SHA-256/384/512, MGF1 same hash */
    CSR_SIG_ED25519,
    CSR_SIG__MAX
} csr_sig;

/* A parsed CSR. Every pointer points into the caller's buffer, which must
 * outlive it. */
typedef struct csr {
    der_tlv info;       /* CertificationRequestInfo, the signed bytes (raw) */
    der_tlv subject;    /* Name, raw */
    der_tlv spki;       /* SubjectPublicKeyInfo, raw: copied verbatim into certs */
    const uint8_t *pub; /* subjectPublicKey BIT STRING contents (no unused-bits
                           octet): EC point, RSAPublicKey DER, or Ed25519 key */
    size_t pub_len;
    csr_key key;
    unsigned key_bits; /* 256/384 (EC), modulus bits (RSA), 256 (Ed25519) */
    /* RSA: modulus and exponent magnitudes inside pub (for EVP_PKEY_fromdata) */
    const uint8_t *rsa_n, *rsa_e;
    size_t rsa_n_len, rsa_e_len;
    bool has_ext_req;
    der_tlv ext_req; /* Extensions SEQUENCE of the extensionRequest attribute;
                        at most one subjectAltName in it (csr_parse checks) */
    csr_sig sig_alg;
    unsigned pss_hash_len; /* CSR_SIG_RSA_PSS: 32/48/64; salt length in pss_salt */
    unsigned pss_salt;
    const uint8_t *sig; /* signature BIT STRING contents */
    size_t sig_len;
} csr;

/* Parse DER. Structure and algorithm checks only, no cryptography: an EC
 * point's curve membership is checked by csr_verify(). No allocation. When
 * the input has both a DER/structure error and an unaccepted algorithm,
 * CSR_ERR_MALFORMED wins; key errors come before signature-algorithm
 * errors. *out is written only on CSR_OK. See docs/csr.md. */
CF_WUR csr_err csr_parse(const uint8_t *der, size_t len, csr *out);

/* SAN identifiers a CSR asks for, from its extensionRequest (read, never
 * copied into a certificate). Iterate with a zeroed cursor; returns
 * CSR_OK with *done = true at the end, CSR_ERR_MALFORMED on bad DER (which
 * a csr from csr_parse() cannot produce: it validated the SAN already).
 * CSR_SAN_DNS / CSR_SAN_URI: *val is the IA5String contents. CSR_SAN_OTHER:
 * *val is the whole GeneralName TLV (tag included: 0x87 iPAddress, 0xA0
 * otherName, ...). Pointers into the CSR buffer. */
typedef enum csr_san_type { CSR_SAN_DNS, CSR_SAN_URI, CSR_SAN_OTHER } csr_san_type;
typedef struct csr_san_iter {
    der_cur exts, names;
    bool in_san;
} csr_san_iter;
CF_WUR csr_err csr_next_san(const csr *c, csr_san_iter *it, csr_san_type *type, const uint8_t **val,
                            size_t *len, bool *done);

/* Per-thread verification context: digests and key-building contexts
 * fetched once (no EVP_sha256()-style late fetches on the hot path). Not
 * thread-safe: one per worker. */
typedef struct csr_verifier csr_verifier;
CF_WUR csr_verifier *csr_verifier_new(void);
void csr_verifier_free(csr_verifier *v);

/* Proof of possession: build the public key from the raw point / modulus
 * with EVP_PKEY_fromdata (never d2i_PUBKEY: 161 µs vs 65 µs measured) and
 * verify the signature over info.raw. Returns CSR_ERR_INVALID_POINT (EC
 * point not on the curve), CSR_ERR_WEAK_KEY (defensive re-check),
 * CSR_ERR_BAD_SIGNATURE, or CSR_ERR_INTERNAL (OpenSSL failure not caused
 * by the input). Leaves the thread's OpenSSL error queue as it found it. */
CF_WUR csr_err csr_verify(csr_verifier *v, const csr *c);

#endif
