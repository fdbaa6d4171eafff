/* issue.h — what the engine is asked to do and how it answers, shared by
 * profile, pipeline, server and client. Plain data, no behaviour. */
#ifndef CF_ISSUE_H
#define CF_ISSUE_H

#include <stddef.h>
#include <stdint.h>

/* Outcome of a request. The wire protocol carries these numbers: never
 * renumber, only append before CF_ST__MAX. Names in cf_status_name(). */
typedef enum cf_status {
    CF_ST_OK = 0,
    CF_ST_BAD_FRAME = 1,       /* frame could not be decoded */
    CF_ST_BAD_CSR = 2,         /* detail: a csr_err */
    CF_ST_POLICY_DENIED = 3,   /* an identifier or setting the profile/front end does not allow */
    CF_ST_UNKNOWN_PROFILE = 4,
    CF_ST_UNAUTHORIZED = 5,
    CF_ST_BUSY = 6,
    CF_ST_HSM_FAILURE = 7,
    CF_ST_INTERNAL = 8,
    CF_ST_LEDGER_FAILURE = 9,
    CF_ST_NOT_FOUND = 10,
    CF_ST_UNSUPPORTED = 11,    /* unknown operation or version */
    CF_ST__MAX
} cf_status;

const char *cf_status_name(cf_status s); /* "OK", "BAD_CSR", ... */

/* An issue request as the engine sees it: the CSR plus the identifiers the
 * front end has validated. The certificate carries exactly these
 * identifiers; the CSR's own extensions are never copied. Strings are not
 * necessarily NUL-terminated: each comes with its length. */
typedef struct cf_str {
    const char *p;
    size_t len;
} cf_str;

#define CF_MAX_FQDNS 64
#define CF_MAX_NF_TYPES 16

typedef struct cf_issue_req {
    cf_str profile;
    const uint8_t *csr_der;
    size_t csr_len;
    cf_str nf_instance_id; /* UUID (RFC 4122 text form, any case) or empty */
    cf_str fqdns[CF_MAX_FQDNS];
    unsigned n_fqdns;
    cf_str nf_types[CF_MAX_NF_TYPES];
    unsigned n_nf_types;
    uint32_t validity_s; /* 0: the profile's default */
    cf_str requester;    /* the front end's tag, for the ledger */
} cf_issue_req;

#endif
