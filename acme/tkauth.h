/* tkauth.h — RFC 9447 Authority Token challenges (tkauth-01, tkauth-type
 * "atc") for the 3GPP NfInstanceId identifier (TS 33.310): the operator's
 * token authority (the OAM) signs a JWT that names the identifier and the
 * ACME account key it may be used by; certforge-acme checks it.
 *
 * The token (RFC 9447 §4, RFC 7519): a JWS compact serialization whose
 * protected header has "alg" (ES256, ES384, RS256 or EdDSA) and "x5c" (the
 * token authority's certificate, then its chain; base64 DER) or "x5u" (an
 * https URL of a PEM chain, only under a configured prefix); whose payload
 * has
 *   "exp"  (required; at most max_lifetime ahead),
 *   "jti"  (required; used once — the caller records it),
 *   "nbf", "iat", "iss" (optional; nbf/iat not in the future),
 *   "atc": {"tktype": "NfInstanceId", "tkvalue": "<uuid>",
 *           "fingerprint": "SHA256 AB:CD:…" (the SHA-256 JWK thumbprint of
 *           the ACME account key, RFC 7638, as 32 colon-separated upper-case
 *           hex octets), "ca": false (optional)},
 *   "nftypes": ["AMF", …] (certforge's claim: the NF types the
 *           certificate's NFTypes extension carries, RFC 9310; optional).
 * The certificate chains to a configured token-authority trust anchor and is
 * valid now.
 */
#ifndef CF_ACME_TKAUTH_H
#define CF_ACME_TKAUTH_H

#include <stddef.h>
#include <stdint.h>

#include "acme/acme.h"

#define ACME_TKAUTH_MAX_TOKEN 16384
#define ACME_TKAUTH_MAX_NFTYPES 16

typedef struct acme_tkauth acme_tkauth; /* trust anchors and policy */

/* anchors: PEM file of token-authority trust anchors; x5u_prefixes may be
 * NULL/0 (x5u refused). 0, or -1 with err. */
CF_WUR int acme_tkauth_new(const char *anchors_pem, uint32_t max_lifetime_s, const char *const *x5u_prefixes,
                             unsigned n_prefixes, acme_tkauth **out, char *err, size_t errlen);
void acme_tkauth_free(acme_tkauth *t);

typedef struct acme_tkauth_claims {
    char jti[129];
    int64_t exp;
    char tktype[33];
    char tkvalue[257];
    char nftypes[ACME_TKAUTH_MAX_NFTYPES][33];
    unsigned n_nftypes;
} acme_tkauth_claims;

/* Check token for identifier (type, value) and the account whose key has
 * the RFC 7638 thumbprint thumb_b64 (base64url), at time now. ACME_P_NONE
 * with *out filled (the caller records out->jti as used), or the problem
 * with why: malformed (not a token), badSignatureAlgorithm, unauthorized
 * (signature, chain, time, identifier, binding, NF types). x5u fetching
 * blocks (validation threads only). */
acme_problem acme_tkauth_verify(acme_tkauth *t, const char *token, const char *want_type, const char *want_value,
                                const char *thumb_b64, int64_t now, acme_tkauth_claims *out, char *why, size_t whylen);

/* "SHA256 AB:CD:…" of a base64url thumbprint: 0, or -1 (not a thumbprint). */
CF_WUR int acme_tkauth_fingerprint(const char *thumb_b64, char *out, size_t cap);

/* An NF instance ID as ACME carries it: a UUID (RFC 4122 text), lower-cased
 * in place. 1 accepted, 0 refused. */
int acme_uuid_ok(char *v);

/* An NFType value (RFC 9310): 1-32 printable ASCII characters, no space. */
int acme_nftype_ok(const char *v);

#endif
