/* sigalg.h — the signature algorithms certforge signs with and the key
 * types that make them: one enum each, their names, their numbers on the
 * wire and which algorithm fits which key. hsm/ maps an algorithm to its
 * PKCS#11 mechanism, engine/profile to its AlgorithmIdentifier, proto/ and
 * the client library carry its wire number.
 */
#ifndef CF_SIGALG_H
#define CF_SIGALG_H

#include <stdbool.h>
#include <stddef.h>

/* Key kinds certforge signs with (the CA and SIGN keys in the HSM). */
typedef enum cf_key_type {
    CF_KEY_EC_P256,
    CF_KEY_EC_P384,
    CF_KEY_RSA,
    CF_KEY_ED25519,
    CF_KEY__MAX
} cf_key_type;

/* Signature algorithms. ECDSA and RSA take a digest computed by the caller
 * (the hash named here, cf_sig_alg_digest_len() octets); Ed25519 (RFC 8032
 * PureEdDSA) takes the whole message. ECDSA signatures are DER-encoded
 * (Ecdsa-Sig-Value); RSA-PSS uses MGF1 with the same hash and a salt as
 * long as the digest. */
typedef enum cf_sig_alg {
    CF_SIG_ECDSA_SHA256,
    CF_SIG_ECDSA_SHA384,
    CF_SIG_ECDSA_SHA512,
    CF_SIG_RSA_PKCS1_SHA256,
    CF_SIG_RSA_PKCS1_SHA384,
    CF_SIG_RSA_PKCS1_SHA512,
    CF_SIG_RSA_PSS_SHA256,
    CF_SIG_RSA_PSS_SHA384,
    CF_SIG_RSA_PSS_SHA512,
    CF_SIG_ED25519,
    CF_SIG__MAX
} cf_sig_alg;

/* The algorithms' numbers on the wire (SIGN's mechanism field,
 * docs/protocol.md) and in libcertforge's cf_sign_req.mech. Never
 * renumber; append before CF_SIGN__MAX. cf_sig_alg_wire() and
 * cf_sig_alg_from_wire() translate through one explicit table
 * (sigalg.c), never by arithmetic. */
typedef enum cf_sign_mech {
    CF_SIGN_ECDSA_SHA256 = 1,
    CF_SIGN_ECDSA_SHA384 = 2,
    CF_SIGN_ECDSA_SHA512 = 3,
    CF_SIGN_RSA_PKCS1_SHA256 = 4,
    CF_SIGN_RSA_PKCS1_SHA384 = 5,
    CF_SIGN_RSA_PKCS1_SHA512 = 6,
    CF_SIGN_RSA_PSS_SHA256 = 7, /* MGF1 same hash, salt length = digest length */
    CF_SIGN_RSA_PSS_SHA384 = 8,
    CF_SIGN_RSA_PSS_SHA512 = 9,
    CF_SIGN_ED25519 = 10,
    CF_SIGN__MAX
} cf_sign_mech;

/* Largest signature any algorithm above makes (RSA-4096: 512 octets). */
#define CF_SIG_MAX 512

const char *cf_sig_alg_name(cf_sig_alg a);   /* "ecdsa-sha256", ...; "unknown-mechanism" */
const char *cf_key_type_name(cf_key_type t); /* "ec-p256", ...; "unknown-key-type" */

/* The digest the algorithm signs: 32, 48 or 64 octets; 0 for Ed25519 (the
 * whole message) and outside the enum. */
size_t cf_sig_alg_digest_len(cf_sig_alg a);

/* Can a key of type t make signatures of algorithm a? ECDSA: EC P-256 and
 * P-384 keys (either hash); RSA PKCS#1 v1.5 and PSS: RSA keys; Ed25519:
 * Ed25519 keys. False outside either enum. */
bool cf_sig_alg_fits(cf_sig_alg a, cf_key_type t);

/* The wire number of a (0 outside the enum), and back: true and *out set
 * when `mech` is in the table, false for anything else (0 included). */
cf_sign_mech cf_sig_alg_wire(cf_sig_alg a);
bool cf_sig_alg_from_wire(unsigned mech, cf_sig_alg *out);

#endif
