/* ca_x509.h — X.509 helpers for the admin commands (ceremonies now; CRLs
 * and one-off issuance later): names, key identifiers, and signing a
 * certificate with a key that stays in the HSM. Admin path: built with
 * OpenSSL's X509 API, speed irrelevant. */
#ifndef CF_CA_X509_H
#define CF_CA_X509_H

#include "hsm/hsm.h"

#include <stddef.h>
#include <openssl/x509.h>

/* Parse "/C=FI/O=Example/CN=Root CA" ('\' escapes '/' or '\' in values)
 * into a name. On failure msg says which part is wrong. */
int cax_parse_name(const char *s, X509_NAME **out, char *msg, size_t cap);
/* The same slash form, values as UTF-8. */
void cax_format_name(const X509_NAME *n, char *buf, size_t cap);

/* RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING
 * value (without tag, length and unused-bits octet). */
ASN1_OCTET_STRING *cax_key_id(X509_PUBKEY *pk);

/* Sign *x with the HSM key behind s: set the signature algorithm that fits
 * the key (ECDSA P-256: ecdsa-with-SHA256, P-384: ecdsa-with-SHA384, RSA:
 * sha256WithRSAEncryption, Ed25519: Ed25519) in the TBS and outside it,
 * hash the TBS (Ed25519 signs it whole), sign in the HSM, then re-decode
 * the result and verify it against issuer_pub. *x is replaced by the
 * decoded certificate. Returns 0, or -1 with msg. */
int cax_sign(X509 **x, hsm_signer *s, EVP_PKEY *issuer_pub, char *msg, size_t cap);

/* Sign a CSR (its subject and public key already set) with the HSM key
 * behind s, with the algorithm cax_sign would use; verified with pub. */
int cax_sign_req(X509_REQ *req, hsm_signer *s, EVP_PKEY *pub, char *msg, size_t cap);

/* "AB:CD:..." — SHA-256 of the DER, as openssl x509 -fingerprint -sha256. */
void cax_fingerprint(const X509 *x, char *buf, size_t cap);

/* Subject (slash form), notAfter and SHA-256 fingerprint of a DER
 * certificate; -1 (and placeholders) when it does not decode. */
int cax_summary(const uint8_t *der, size_t len, char *subject, size_t scap, char *not_after,
                size_t ncap, char *fp, size_t fcap);

/* "2035-11-23T18:00:00Z" */
void cax_time(const ASN1_TIME *t, char *buf, size_t cap);

#endif
