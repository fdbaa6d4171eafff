/* profile.h — certificate profiles compiled to TBSCertificate templates.
 *
 * Knows what goes into a certificate (TS 33.310 §6.1.3c NF profile, the N32
 * SEPP profile, RFC 8739 STAR with RFC 9608 noRevAvail) and nothing of
 * sockets or PKCS#11 sessions. It never signs: the pipeline digests the
 * TBS this module builds (with its workers' own digest contexts; see
 * profile_tbs_digest() for the same digest here), signs it through the HSM,
 * then calls profile_assemble(). docs/profiles.md lists every field and
 * its clause.
 *
 * profile_compile() runs once at start-up (OpenSSL reads the issuer
 * certificate there); profile_build_tbs() is the hot path: it writes into
 * the caller's buffer with engine/der, allocates nothing, and uses no
 * OpenSSL encoder.
 *
 * Thread safety: a compiled profile is immutable and may be used from any
 * number of threads. profile_serial() and profile_tbs_digest() keep
 * per-thread state (a random buffer, a digest context).
 */
#ifndef CF_PROFILE_H
#define CF_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "common/compiler.h"
#include "common/issue.h"
#include "common/sigalg.h"
#include "common/status.h"
#include "engine/config/config.h"
#include "engine/csr/csr.h"

/* RFC 5280 §4.1.2.2: at most 20 octets. */
#define PROFILE_SERIAL_MAX 20

/* The CRL shard of a certificate (docs/crl.md): its serial's last 4
 * octets as a big-endian integer, modulo n_shards (0 when n_shards <= 1).
 * A pure function of the serial, so issuance, CRLs and revocations agree
 * without a ledger column. serial: big-endian octets (leading zeros are
 * harmless). */
unsigned profile_crl_shard(const uint8_t *serial, size_t len, unsigned n_shards);
/* A crl_dp template with "{shard}" replaced by the decimal shard number
 * (a template without it is copied). 0, or -1 when it does not fit. */
CF_WUR int profile_crl_dp_uri(const char *tmpl, unsigned shard, char *out, size_t cap);
/* Random octets in every serial, after the optional prefix. */
#define PROFILE_SERIAL_RANDOM 16
/* Largest digest profile_tbs_digest() writes (SHA-512). */
#define PROFILE_DIGEST_MAX 64

typedef struct profile profile;

/* Compile `cp` against its issuer: the issuer certificate (DER) and the
 * public half of the HSM key that will sign (hsm_signer_public_key()).
 * `mech` is the mechanism that key signs with; it must fit the key and use
 * a hash at least as strong as cp->hash (profile_pick_mech() chooses one).
 * Refused, naming both, when the certificate's public key is not the HSM
 * key's; refused when the certificate is not a CA certificate. */
CF_WUR int profile_compile(const cfg_profile *cp, const uint8_t *issuer_cert_der, size_t len,
                           EVP_PKEY *issuer_key_pub, cf_sig_alg mech, profile **out, char *err,
                           size_t errlen);
void profile_free(profile *p);

/* The mechanism for an issuer key under a profile hash: ECDSA with the
 * curve's hash (P-256: SHA-256, P-384: SHA-384) or the profile's if
 * stronger; RSA PKCS#1 v1.5 with the profile's hash; Ed25519. */
CF_WUR int profile_pick_mech(EVP_PKEY *issuer_key_pub, cfg_hash hash, cf_sig_alg *mech, char *err,
                             size_t errlen);

/* Read an issuer certificate file (PEM or DER) into a malloc'd DER copy.
 * Admin path, for start-up. */
CF_WUR int profile_read_cert(const char *path, uint8_t **der, size_t *len, char *err,
                             size_t errlen);

/* Build the TBSCertificate for one request into buf[0..cap).
 *
 * Policy (CF_ST_POLICY_DENIED, `why` naming the offending value): the CSR's
 * key type must be in the profile's key_types; the requested validity
 * (req->validity_s, 0 = the profile default) at most the profile max; the
 * NF instance ID an RFC 4122 UUID (required if the profile says so); each
 * FQDN LDH labels, at most 253 characters, no wildcard; NF types valid
 * RFC 9310 NFType values from the profile's allow-list (nf: at least one;
 * sepp: none or "SEPP"); and every SAN the CSR asks for must be among the
 * authorized identifiers. The CSR's subject and extensions are never
 * copied: only its SubjectPublicKeyInfo, verbatim.
 *
 * notBefore = now - backdate, notAfter = now + validity. Identifiers are
 * written lower-case. `serial` is 1..20 octets, positive (top bit clear
 * when 20 octets), as from profile_serial().
 *
 * `cap` is the caller's size limit: a TBS that does not fit is refused
 * with POLICY_DENIED, saying how many octets it needed (the pipeline
 * passes PIPE_TBS_MAX, 7 552; profile_tbs_max() fits any request).
 *
 * Returns 0 with *st = CF_ST_OK and *len set; otherwise -1 with *st
 * (POLICY_DENIED, BAD_CSR for a malformed SAN request, INTERNAL for a bad
 * serial or an encoding failure) and a message in `why`. Nothing
 * allocated. */
CF_WUR int profile_build_tbs(const profile *p, const csr *c, const cf_issue_req *req,
                             const uint8_t *serial, size_t serial_len, int64_t now, uint8_t *buf,
                             size_t cap, size_t *len, cf_status *st, char *why, size_t whylen);

/* A fresh serial: the optional prefix (0..4 octets, first octet 01..7f,
 * e.g. cfg_pipeline.serial_prefix) then PROFILE_SERIAL_RANDOM octets from
 * OpenSSL's CSPRNG. Without a prefix the first octet is 0x40..0x7f (top bit
 * cleared, next bit set: positive and always 16 octets, 126 random bits).
 * Random octets come from a per-thread buffer filled in bulk with
 * RAND_bytes and discarded in a forked child. Returns 0, or -1 when the
 * prefix is invalid or the CSPRNG fails. */
CF_WUR int profile_serial(uint8_t out[PROFILE_SERIAL_MAX], size_t *len, const uint8_t *prefix,
                          size_t prefix_len);

/* What the HSM signs for this profile's mechanism: for ECDSA and RSA the
 * digest of the TBS, written to digest[] (*in = digest); for Ed25519 the
 * TBS itself (*in = tbs). Prefetched EVP_MDs, a per-thread EVP_MD_CTX.
 * For callers without digest contexts of their own (the tests): the
 * pipeline computes the same digest itself (pipeline.c stage_front). */
CF_WUR int profile_tbs_digest(const profile *p, const uint8_t *tbs, size_t tbs_len,
                              uint8_t digest[PROFILE_DIGEST_MAX], const uint8_t **in,
                              size_t *inlen);

/* Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature
 * BIT STRING } (RFC 5280 §4.1). `sig` as the HSM layer returns it (ECDSA:
 * DER Ecdsa-Sig-Value). Returns 0, or -1 when buf is too small (*len then
 * holds the size needed). */
CF_WUR int profile_assemble(const profile *p, const uint8_t *tbs, size_t tbs_len,
                            const uint8_t *sig, size_t sig_len, uint8_t *buf, size_t cap,
                            size_t *len);

/* Free the calling thread's digest context now (it is otherwise freed at
 * thread exit). */
void profile_thread_cleanup(void);

/* The signatureAlgorithm AlgorithmIdentifier DER of a mechanism, as in
 * every certificate (and CRL) certforge signs, into buf. Returns its
 * length, or 0 when cap is too small. */
size_t profile_sigalg_der(cf_sig_alg m, uint8_t *buf, size_t cap);

/* The key identifier of a CA certificate (for authorityKeyIdentifier):
 * its subjectKeyIdentifier, or without one SHA-1 of its subjectPublicKey
 * (RFC 5280 §4.2.1.2 method 1). out holds EVP_MAX_MD_SIZE. 0 or -1. */
struct x509_st;
int profile_cert_key_id(const struct x509_st *x, uint8_t *out, size_t *len);

/* Accessors. */
const char *profile_name(const profile *p);
cfg_profile_type profile_type(const profile *p);
cf_sig_alg profile_mech(const profile *p);
cfg_hash profile_hash(const profile *p);
const char *profile_issuer_name(const profile *p); /* config name of the issuer */
const char *profile_issuer_key(const profile *p);  /* config name of its key */
/* The issuer's subject Name DER (the issuer field of every certificate). */
const uint8_t *profile_issuer_dn(const profile *p, size_t *len);
/* Largest TBS / certificate any request can produce (CF_MAX_FQDNS names of
 * 253 characters, CF_MAX_NF_TYPES types, an RSA-4096 key), about 18 KB:
 * size buffers with these to take every request. (The pipeline does not:
 * it takes certificates up to PIPE_CERT_MAX, 8 KiB, and refuses larger
 * ones.) */
size_t profile_tbs_max(const profile *p);
size_t profile_cert_max(const profile *p);

#endif
