/* status.h — how certforge answers a request: one status enum shared by
 * the engine, the wire protocol and the client library. */
#ifndef CF_STATUS_H
#define CF_STATUS_H

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

#endif
