/* ident.h — the pure checks of certforge-acme (no I/O, no state), kept
 * apart so the unit suite and the fuzzers reach them directly: DNS
 * identifiers (RFC 8555 §7.1.3, §9.7.7), the names a CSR asks for at
 * finalize (§7.4), ARI certificate identifiers (RFC 9773 §4.1), and the
 * facts of an issued certificate read with the engine's DER reader. */
#ifndef CF_ACME_IDENT_H
#define CF_ACME_IDENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "acme/acme.h"

/* A DNS name ACME may ask for: LDH labels of 1-63, at least two labels, at
 * most 253 octets, no trailing dot, no label starting or ending with '-',
 * not an IPv4 address; "*." first for a wildcard. Lower-cased in place.
 * 1 accepted, 0 refused. */
int acme_dns_name_ok(char *v, bool *wildcard);

/* base64url(AKI keyIdentifier) "." base64url(serial), both non-empty. */
int acme_ari_id_ok(const char *s);

/* Facts of a certificate (DER), no OpenSSL decoding: validity, serial
 * contents, the AKI keyIdentifier. Pointers into der. 0, or -1 when it is
 * not a certificate with an AKI keyIdentifier. */
typedef struct acme_cert_facts {
    int64_t not_before, not_after;
    const uint8_t *serial, *aki;
    size_t serial_len, aki_len;
} acme_cert_facts;
CF_WUR int acme_cert_facts_read(const uint8_t *der, size_t len, acme_cert_facts *f);
/* Its ARI certID into out: 0, or -1 if cap is too small. */
CF_WUR int acme_ari_id_of(const acme_cert_facts *f, char *out, size_t cap);

/* The names a CSR asks for: every SAN dNSName, every SAN URI
 * "urn:uuid:<uuid>" (an NF instance ID, TS 33.310), and each subject CN,
 * lower-cased, at most max. ACME_P_NONE, or ACME_P_BAD_CSR with why
 * (unparsable, another kind of SAN, too many or too long). */
#define ACME_CSR_MAX_NAMES (2 * ACME_MAX_IDENTIFIERS)
acme_problem acme_csr_names(const uint8_t *der, size_t len, char names[][ACME_MAX_DNS_NAME + 1], unsigned max,
                            unsigned *n, char *why, size_t whylen);

/* RFC 8555 §7.4: the CSR names exactly the order's identifiers (as sets,
 * names already lower-case). 1 yes, 0 no. */
int acme_names_match(char csr_names[][ACME_MAX_DNS_NAME + 1], unsigned n_csr, const char *const *order, unsigned n_order);

/* What an order asks certforged to put in a certificate: its dns
 * identifiers, its NfInstanceId, and the NF types that identifier's
 * authority token granted. */
#define ACME_MAX_NF_TYPES 16
typedef struct acme_idents {
    char names[ACME_MAX_IDENTIFIERS][ACME_MAX_DNS_NAME + 1];
    unsigned n_names;
    char nf_instance_id[37];
    char nf_types[ACME_MAX_NF_TYPES][33];
    unsigned n_nf_types;
} acme_idents;

/* From the order's identifiers (JSON as stored) and the NF types of its
 * NfInstanceId authorization (JSON array or NULL). */
void acme_idents_parse(acme_idents *out, const char *identifiers_json, const char *nf_types_json);

#endif
