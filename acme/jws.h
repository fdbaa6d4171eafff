/* jws.h — JSON Web Signature and JSON Web Key for certforge-acme
 * (RFC 7515 flattened JSON serialization, RFC 7517 JWK, RFC 7518
 * algorithms, RFC 7638 thumbprints, RFC 8037 EdDSA), as RFC 8555 §6.2
 * uses them. All cryptography is OpenSSL 3 EVP; JSON is jansson. Nothing
 * here knows HTTP, nonces or accounts: the caller checks nonce, url and
 * kid against its own state.
 *
 * Algorithms: ES256 (P-256), ES384 (P-384), RS256 (RSA ≥ 2048 bits, ≤ 8192),
 * EdDSA (Ed25519). "none", HS* (outside EAB), PS*, ES512, Ed448 and anything
 * else: ACME_JWS_E_BAD_ALG. EAB (RFC 8555 §7.3.4) verifies HS256/HS384/HS512
 * with acme_jws_verify_hmac().
 *
 * Cost: one acme_jws_verify() per request; acme_jwk_import() builds the key
 * with EVP_PKEY_fromdata (no decoder framework).
 */
#ifndef CF_ACME_JWS_H
#define CF_ACME_JWS_H

#include <stddef.h>
#include <stdint.h>

#include "common/compiler.h"

#include <jansson.h>
#include <openssl/evp.h>


typedef enum acme_jws_alg {
    ACME_JWS_ALG_NONE = 0, /* not an algorithm: "absent / refused" */
    ACME_JWS_ALG_ES256,
    ACME_JWS_ALG_ES384,
    ACME_JWS_ALG_RS256,
    ACME_JWS_ALG_EDDSA,
    ACME_JWS_ALG_HS256, /* EAB only */
    ACME_JWS_ALG_HS384, /* EAB only */
    ACME_JWS_ALG_HS512, /* EAB only */
    ACME_JWS_ALG__MAX
} acme_jws_alg;

const char *acme_jws_alg_name(acme_jws_alg a); /* "ES256", ... */
/* The alg named by a protected header's "alg" string; ACME_JWS_ALG_NONE for
 * anything not in the enum ("none" included). */
acme_jws_alg acme_jws_alg_from_name(const char *s);

/* Why something was refused. Each maps to one RFC 8555 §6.7 problem type
 * (acme_jws_err_problem()). */
typedef enum acme_jws_err {
    ACME_JWS_OK = 0,
    ACME_JWS_E_MALFORMED,      /* not JSON, missing/extra member, bad base64url, bad header: malformed */
    ACME_JWS_E_BAD_ALG,        /* alg absent, none, HS* on an account JWS, unsupported: badSignatureAlgorithm */
    ACME_JWS_E_BAD_KEY,        /* JWK unparsable, wrong curve, weak RSA, alg does not fit key: badPublicKey */
    ACME_JWS_E_BAD_SIGNATURE,  /* signature does not verify: malformed (RFC 8555 has no better type) */
    ACME_JWS_E_INTERNAL,       /* out of memory, OpenSSL failure: serverInternal */
    ACME_JWS_E__MAX
} acme_jws_err;

/* "urn:ietf:params:acme:error:malformed", ...; NULL for ACME_JWS_OK,
 * serverInternal for a value outside the enum. */
const char *acme_jws_err_problem(acme_jws_err e);

/* ------------------------------------------------------------ base64url */

/* RFC 4648 §5 without padding (RFC 7515 §2). Encode: returns the length
 * written (NUL-terminated), or 0 if cap < acme_b64url_len(n) + 1 (n = 0
 * writes "" and returns 0 too). */
size_t acme_b64url_encode(const uint8_t *in, size_t n, char *out, size_t cap);
#define acme_b64url_len(n) (((n) * 4 + 2) / 3)
/* Decode: -1 on any character outside the url-safe alphabet, on padding,
 * on a length ≡ 1 (mod 4), on non-zero trailing bits, or if cap is too
 * small; else the decoded length. Strict so that every octet string has
 * exactly one encoding. */
CF_WUR long acme_b64url_decode(const char *in, size_t n, uint8_t *out, size_t cap);

/* ------------------------------------------------------------ JWK */

/* Import a public JWK (RFC 7517/7518/8037): kty EC (crv P-256 or P-384,
 * x and y of exactly the curve's size, point on the curve), RSA (n, e;
 * 2048..8192 bits, n odd, e odd, > 1 and at most 64 bits; neither with a
 * leading zero octet, RFC 7518 §2), OKP (crv Ed25519, x of 32 octets). A
 * JWK with private members ("d", "p", "q", "dp", "dq", "qi", "oth", "k") is
 * refused; other extra members ("kid", "use", "alg", ...) are ignored. The
 * members used must be strings. Every refusal is ACME_JWS_E_BAD_KEY.
 * *alg_family (may be NULL): the account-JWS algorithm the key signs with
 * (ES256, ES384, RS256, EDDSA). Returns 0, or -1 with *err and a message
 * in msg (printable ASCII; msg may be NULL). */
CF_WUR int acme_jwk_import(const json_t *jwk, EVP_PKEY **out, acme_jws_alg *alg_family,
                                 acme_jws_err *err, char *msg, size_t msglen);

/* RFC 7638 thumbprint: base64url(SHA-256(canonical JSON of the required
 * members in lexicographic order)), 43 characters + NUL. Works from the
 * JWK's members (which acme_jwk_import() accepted), not from a key; the
 * import's one-encoding rules make that the key's thumbprint. Returns 0, or
 * -1 if kty is not EC, RSA or OKP or a required member is not a non-empty
 * string of base64url characters. */
CF_WUR int acme_jwk_thumbprint(const json_t *jwk, char out[44]);

/* The public JWK of a key (for clients and tests): a new JSON object with
 * exactly the required members. Covers more than acme_jwk_import accepts
 * (EC P-521 and secp256k1, Ed448, any RSA size) so that tests can build
 * refused JWKs from real keys; NULL for any other key. */
json_t *acme_jwk_from_pkey(EVP_PKEY *key);

/* ------------------------------------------------------------ JWS */

/* A parsed flattened JWS (RFC 7515 §7.2.2): {"protected", "payload",
 * "signature"} and nothing else at the top level ("header" and the general
 * serialization are refused, RFC 8555 §6.2). Holds copies; free with
 * acme_jws_free(). */
typedef struct acme_jws {
    json_t *protected_hdr; /* decoded protected header (object) */
    acme_jws_alg alg;      /* from "alg" */
    const char *nonce;     /* "nonce" or NULL (points into protected_hdr) */
    const char *url;       /* "url" or NULL */
    const char *kid;       /* "kid" or NULL */
    const json_t *jwk;     /* "jwk" or NULL (borrowed from protected_hdr) */
    uint8_t *payload;      /* decoded payload; NUL-terminated (not counted) */
    size_t payload_len;    /* 0 for POST-as-GET ("payload": "") */
    char *signing_input;   /* ASCII(protected || '.' || payload), as sent */
    size_t signing_input_len;
    uint8_t *sig;          /* decoded signature */
    size_t sig_len;
} acme_jws;

/* Parse (no verification). Checks: the body is a JSON object with exactly
 * the three string members; each is valid base64url; the protected header
 * is a JSON object with a string "alg"; "nonce", "url", "kid" are strings
 * when present and "jwk" an object; "crit" absent (RFC 7515 §4.1.11: we
 * understand no extension); "b64" absent. Duplicate member names are
 * refused (body and header). Body size is the caller's limit.
 * Whether jwk/kid/nonce/url must be present is RFC 8555 §6.2's rule and
 * is checked by acme_jws_check_acme(). An "alg" outside the enum parses
 * (alg = ACME_JWS_ALG_NONE) and is refused by the checks and verifiers.
 * Errors: ACME_JWS_E_BAD_ALG for a missing "alg", ACME_JWS_E_MALFORMED for
 * everything else. *out is zeroed first, so acme_jws_free() on it is safe
 * after a failure too. */
CF_WUR int acme_jws_parse(const char *body, size_t len, acme_jws *out, acme_jws_err *err,
                                char *msg, size_t msglen);
void acme_jws_free(acme_jws *j);

/* RFC 8555 §6.2: alg is an account algorithm (not none, not HS*:
 * ACME_JWS_E_BAD_ALG); exactly one of jwk and kid; url present; nonce
 * present and base64url (§6.5.1) unless !need_nonce (the inner JWS of
 * keyChange has none, and must have no nonce). Those are
 * ACME_JWS_E_MALFORMED, a missing nonce included: RFC 8555 §6.5 would call
 * that badNonce, which the caller's own nonce check reports if it runs
 * first. EAB's inner JWS: acme_jws_check_eab(). */
CF_WUR int acme_jws_check_acme(const acme_jws *j, int need_nonce, acme_jws_err *err,
                                     char *msg, size_t msglen);

/* RFC 8555 §7.3.4, the externalAccountBinding JWS: alg HS256/384/512
 * (else ACME_JWS_E_BAD_ALG); "kid" present and no "jwk"; no "nonce"; "url"
 * present (ACME_JWS_E_MALFORMED). The caller compares kid with its EAB
 * keys, url with the outer JWS's, and the payload with the outer jwk. */
CF_WUR int acme_jws_check_eab(const acme_jws *j, acme_jws_err *err, char *msg, size_t msglen);

/* Verify the signature with `key` (from acme_jwk_import). The alg must fit
 * the key (ES256 ↔ P-256, ES384 ↔ P-384, RS256 ↔ RSA of 2048..8192 bits,
 * EdDSA ↔ Ed25519), else ACME_JWS_E_BAD_KEY; an alg that is no account
 * algorithm (none, HS*, unknown) is ACME_JWS_E_BAD_ALG. ECDSA signatures are
 * the JWS raw r||s of exactly 2 × the curve size, converted to DER for
 * OpenSSL (a DER signature is refused); RS256 signatures are exactly the
 * modulus's length. Any signature that does not verify:
 * ACME_JWS_E_BAD_SIGNATURE. Thread-safe; one EVP_DigestVerify per call. */
CF_WUR int acme_jws_verify(const acme_jws *j, EVP_PKEY *key, acme_jws_err *err, char *msg,
                                 size_t msglen);

/* EAB (RFC 8555 §7.3.4): alg HS256/384/512 (else ACME_JWS_E_BAD_ALG),
 * constant-time compare. keylen must be at least the hash's output size
 * (RFC 7518 §3.2; else ACME_JWS_E_BAD_KEY), the MAC exactly that size. */
CF_WUR int acme_jws_verify_hmac(const acme_jws *j, const uint8_t *key, size_t keylen,
                                      acme_jws_err *err, char *msg, size_t msglen);

/* Sign (clients, the load generator, tests): the flattened JWS JSON text
 * for `protected_hdr` (an object, "alg" set here from the key, serialized
 * compact with sorted keys) and payload bytes (NULL/0 for POST-as-GET).
 * Any RSA size signs (tests need weak keys); EC P-256/P-384 and Ed25519.
 * Returns a malloc'd NUL-terminated string or NULL. For HMAC (EAB) use
 * acme_jws_sign_hmac (same key-length rule as acme_jws_verify_hmac). */
char *acme_jws_sign(EVP_PKEY *key, json_t *protected_hdr, const uint8_t *payload, size_t payload_len);
/* The same with a key held elsewhere (a PKCS#11 token): pub is its public
 * half (alg from it, as acme_jws_sign); sign(ctx, input, len, out, cap)
 * signs the JWS signing input and writes the JWS signature octets (ES256:
 * raw r||s, RFC 7518 §3.4; RS256; EdDSA), returning their length or 0. */
typedef size_t (*acme_jws_sign_cb)(const void *ctx, const char *input, size_t len, uint8_t *out, size_t cap);
char *acme_jws_sign_with(EVP_PKEY *pub, acme_jws_sign_cb sign, const void *ctx, json_t *protected_hdr,
                         const uint8_t *payload, size_t payload_len);
char *acme_jws_sign_hmac(acme_jws_alg alg, const uint8_t *key, size_t keylen, json_t *protected_hdr,
                         const uint8_t *payload, size_t payload_len);

#endif
