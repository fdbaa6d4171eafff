/* estmsg.h — the EST (RFC 7030) messages certforge-agent reads and
 * writes, apart from HTTP and TLS: the base64 PKCS#10 body of
 * /simpleenroll and /simplereenroll (§4.2.1), the identifiers a CSR names
 * checked against the NF's, the PKCS#7 certs-only answer (§4.2.3), the
 * `Authorization: Bearer` header carrying an OAM authority token, the
 * NF instance ID of a bootstrap certificate, and the /csrattrs answer
 * (§4.5.2). Every input here is untrusted;
 * tests/fuzz/fuzz_agent_est.c runs it. */
#ifndef CF_AGENT_ESTMSG_H
#define CF_AGENT_ESTMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define EST_WUR __attribute__((warn_unused_result))
#define EST_MAX_NAMES 64  /* dNSNames per CSR (certforged's limit) */
#define EST_MAX_CSR 16384 /* DER octets */

/* Why a CSR or a request is refused; each has an HTTP status and a text
 * the NF is told (est_err_status, est_err_name). */
typedef enum est_err {
    EST_OK = 0,
    EST_E_BAD_ENCODING,   /* not base64, empty, too large: 400 */
    EST_E_BAD_CSR,        /* not a PKCS#10, signature does not verify: 400 */
    EST_E_BAD_KEY,        /* key type not allowed: 400 */
    EST_E_FOREIGN_NAME,   /* a name that is not the NF's: 403 */
    EST_E_MISSING_NAME,   /* the NF's instance ID (or every name) missing: 403 */
    EST_E_NAME_TYPE,      /* a SAN type other than dNSName / URI urn:uuid: 403 */
    EST_E_REENROLL_NAMES, /* re-enrolment names differ from the current certificate's (RFC 7030 §4.2.2): 403 */
    EST_E__MAX
} est_err;
const char *est_err_name(est_err e); /* "bad_csr", ... for logs */
int est_err_status(est_err e);       /* 400, 403 */

/* RFC 7030 §4.2.1: base64 (RFC 4648 §4, line breaks and other white space
 * allowed, padding required when present) of a DER PKCS#10. Returns the
 * decoded length, or -1 (not base64, nothing, more than cap). */
EST_WUR long est_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap);
/* base64 with CRLF every 64 characters (for application/pkcs7-mime);
 * malloc'd, NUL-terminated; NULL when out of memory. */
char *est_b64_encode(const uint8_t *in, size_t n, size_t *out_len);

/* A parsed, signature-checked CSR and the names it asks for. */
typedef struct est_csr {
    X509_REQ *req;
    uint8_t *der; /* copy of the DER */
    size_t der_len;
    char spki_sha256[65]; /* hex of SHA-256 over the SubjectPublicKeyInfo DER */
    char uuid[37];        /* from a URI SAN urn:uuid:..., lower case; "" if none */
    char *dns[EST_MAX_NAMES];
    unsigned n_dns;
    char cn[256]; /* subject commonName or "" */
} est_csr;

/* Parse DER, verify its signature (proof of possession), read its SANs:
 * dNSName (lower-cased, LDH labels) and URI urn:uuid:<RFC 4122 UUID>; any
 * other SAN type, a second URI, a malformed name: refused. Keys: EC P-256,
 * P-384, RSA 2048-8192, Ed25519. 0, or -1 with *err and why. */
EST_WUR int est_csr_parse(const uint8_t *der, size_t len, est_csr *out, est_err *err, char *why, size_t whylen);
void est_csr_free(est_csr *c);

/* The CSR names only what the NF may have: a URI SAN, if any, is its
 * instance ID (and only when uuid_allowed), dNSNames each one of
 * allowed[] (at least one when there is no URI SAN), a subject CN (if
 * any) one of those dNSNames. 0, or -1 with *err and why. */
EST_WUR int est_csr_check(const est_csr *c, const char *nf_uuid, bool uuid_allowed, const char *const *allowed,
                          unsigned n_allowed, est_err *err, char *why, size_t whylen);

/* RFC 7030 §4.2.2: a re-enrolment's names are those of the certificate it
 * renews (the dNSNames and URI SAN of cert, as sets). */
EST_WUR int est_csr_same_names(const est_csr *c, X509 *cert, est_err *err, char *why, size_t whylen);

/* The NF instance ID a bootstrap certificate names (its URI SAN
 * urn:uuid:..., lower-cased): 0, or -1 if it has none or several. */
EST_WUR int est_cert_uuid(X509 *cert, char out[37]);

/* "Bearer <token>" (RFC 6750 §2.1): points tok and len at the token (a JWS
 * compact serialization: three base64url parts), 0; -1 for anything else. */
EST_WUR int est_bearer(const char *header, const char **tok, size_t *len);

/* The tkvalue an authority token claims (unverified: only to find whose
 * token it is; acme_tkauth_verify checks it afterwards). 0 with out
 * (lower-cased UUID), or -1. */
EST_WUR int est_token_peek_nf(const char *tok, size_t len, char out[37]);

/* PKCS#7 certs-only (RFC 7030 §4.2.3) of the certificates in a PEM chain,
 * base64 with CRLFs; malloc'd; NULL on error. first_only: the leaf only. */
char *est_p7_from_pem(const char *pem, bool first_only, size_t *out_len);

/* ------------------------------------------------------------ /csrattrs */

/* The key an NF's CSR should carry (est.key_type), announced in /csrattrs. */
typedef enum est_key_type {
    EST_KEY_ANY = 0, /* no key attribute: any key est_csr_parse accepts */
    EST_KEY_EC_P256,
    EST_KEY_EC_P384,
    EST_KEY_RSA_2048,
    EST_KEY_RSA_3072,
    EST_KEY_RSA_4096,
    EST_KEY_ED25519,
    EST_KEY__MAX
} est_key_type;
const char *est_key_type_name(est_key_type k); /* "ec-p256", ... */
int est_key_type_from_name(const char *s);     /* an est_key_type, or -1 */

/* The GENERAL_NAMES an NF's CSR should ask for: URI urn:uuid:<uuid> (uuid
 * NULL: none) and each dNSName. NULL when out of memory. */
GENERAL_NAMES *est_names_new(const char *uuid, const char *const *dns, unsigned n_dns);

/* RFC 7030 §4.5.2 CsrAttrs (SEQUENCE OF AttrOrOID), DER, built with
 * OpenSSL's ASN.1 types: an extensionRequest attribute (PKCS#9) holding
 * the subjectAltName `names` (NULL or empty: none), then for the key type
 * the key attribute and the signature algorithm OID as RFC 7030's example
 * has them: id-ecPublicKey {curve} + ecdsa-with-SHA256/384, rsaEncryption
 * {INTEGER bits} + sha256WithRSAEncryption, the OID id-Ed25519. 0 with *out
 * (OPENSSL_free it) and *len, or -1. */
EST_WUR int est_csrattrs_der(const GENERAL_NAMES *names, est_key_type kt, uint8_t **out, size_t *len);

/* "<hex sha256>" of DER bytes. */
void est_sha256_hex(const uint8_t *d, size_t n, char out[65]);

#endif
