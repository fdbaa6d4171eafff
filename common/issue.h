/* issue.h — what the engine is asked to issue, shared by profile,
 * pipeline, the wire codec and the client library. Plain data, no
 * behaviour. (How it answers: status.h.) */
#ifndef CF_ISSUE_H
#define CF_ISSUE_H

#include <stddef.h>
#include <stdint.h>

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
