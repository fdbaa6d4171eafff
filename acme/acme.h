/* acme.h — what every part of certforge-acme shares: RFC 8555 problem
 * types, object states and limits. Plain data; no behaviour but names. */
#ifndef CF_ACME_H
#define CF_ACME_H

#include <stddef.h>
#include <stdint.h>

#include "common/compiler.h"


/* RFC 8555 §6.7 problem types (plus RFC 9773 alreadyReplaced and the ACME
 * profiles draft's invalidProfile). Keep acme_problem_names parallel. */
typedef enum acme_problem {
    ACME_P_NONE = 0,
    ACME_P_ACCOUNT_DOES_NOT_EXIST,
    ACME_P_ALREADY_REVOKED,
    ACME_P_BAD_CSR,
    ACME_P_BAD_NONCE,
    ACME_P_BAD_PUBLIC_KEY,
    ACME_P_BAD_REVOCATION_REASON,
    ACME_P_BAD_SIGNATURE_ALGORITHM,
    ACME_P_CAA,
    ACME_P_COMPOUND,
    ACME_P_CONNECTION,
    ACME_P_DNS,
    ACME_P_EXTERNAL_ACCOUNT_REQUIRED,
    ACME_P_INCORRECT_RESPONSE,
    ACME_P_INVALID_CONTACT,
    ACME_P_MALFORMED,
    ACME_P_ORDER_NOT_READY,
    ACME_P_RATE_LIMITED,
    ACME_P_REJECTED_IDENTIFIER,
    ACME_P_SERVER_INTERNAL,
    ACME_P_TLS,
    ACME_P_UNAUTHORIZED,
    ACME_P_UNSUPPORTED_CONTACT,
    ACME_P_UNSUPPORTED_IDENTIFIER,
    ACME_P_USER_ACTION_REQUIRED,
    ACME_P_ALREADY_REPLACED, /* RFC 9773 §5 */
    ACME_P_INVALID_PROFILE,  /* draft-aaron-acme-profiles */
    ACME_P_AUTO_RENEWAL_CANCELED,            /* RFC 8739 §3.6 */
    ACME_P_AUTO_RENEWAL_EXPIRED,
    ACME_P_AUTO_RENEWAL_CANCELLATION_INVALID,
    ACME_P_AUTO_RENEWAL_REVOCATION_NOT_SUPPORTED,
    ACME_P__MAX
} acme_problem;

/* "malformed" (the part after urn:ietf:params:acme:error:) */
const char *acme_problem_name(acme_problem p);
/* The HTTP status RFC 8555 implies for it (400, 403, 404, 429, 500...). */
int acme_problem_http_status(acme_problem p);

/* Object states (RFC 8555 §7.1.6). Stored by name. */
typedef enum acme_status {
    ACME_S_PENDING,
    ACME_S_READY,
    ACME_S_PROCESSING,
    ACME_S_VALID,
    ACME_S_INVALID,
    ACME_S_DEACTIVATED,
    ACME_S_EXPIRED,
    ACME_S_REVOKED,
    ACME_S_CANCELED, /* RFC 8739 §3.1.2: a STAR order the client canceled */
    ACME_S__MAX
} acme_status;
const char *acme_status_name(acme_status s);
/* -1 when unknown */
int acme_status_from_name(const char *s);

typedef enum acme_chall_type {
    ACME_CH_HTTP01,
    ACME_CH_DNS01,
    ACME_CH_TLSALPN01,
    ACME_CH_TKAUTH01, /* RFC 9447, for NfInstanceId identifiers */
    ACME_CH__MAX
} acme_chall_type;
const char *acme_chall_type_name(acme_chall_type t); /* "http-01" ... */
int acme_chall_type_from_name(const char *s);

typedef enum acme_ident_type {
    ACME_ID_DNS,
    ACME_ID_NF_INSTANCE_ID, /* "NfInstanceId" (TS 33.310): a UUID, validated with tkauth-01 */
    ACME_ID__MAX
} acme_ident_type;
const char *acme_ident_type_name(acme_ident_type t); /* "dns", "NfInstanceId" */
int acme_ident_type_from_name(const char *s);

/* Limits enforced where data enters. */
#define ACME_MAX_IDENTIFIERS 100 /* per order (Let's Encrypt's limit) */
#define ACME_MAX_DNS_NAME 253
#define ACME_ID_LEN 22      /* random object ids: 16 octets, base64url */
#define ACME_TOKEN_LEN 43   /* challenge tokens: 32 octets, base64url (RFC 8555 §8.1: ≥ 128 bits) */
#define ACME_THUMB_LEN 43   /* RFC 7638 SHA-256 thumbprint, base64url */
#define ACME_MAX_CONTACTS 8
#define ACME_MAX_CONTACT_LEN 256

/* A fresh random object id (16 octets from the CSPRNG, base64url, NUL;
 * never starting with '-' or '_'):
 * out must hold ACME_ID_LEN + 1. 0, or -1 if the CSPRNG failed. */
CF_WUR int acme_random_id(char *out, size_t n_octets);

/* Wall clock, seconds. */
int64_t acme_now(void);
/* RFC 3339 UTC ("2026-12-03T08:00:00Z") into buf (≥ 21 octets). */
void acme_time_rfc3339(int64_t t, char *buf, size_t len);
/* Parse RFC 3339 (with Z or an offset; fractional seconds ignored): -1 bad */
CF_WUR int acme_time_parse(const char *s, int64_t *out);

#endif
