/* ledger_backend.h — what a ledger backend implements (private to
 * engine/ledger). ledger.c dispatches through this table and serializes
 * the calls; a backend never sees two calls at once. */
#ifndef CF_LEDGER_BACKEND_H
#define CF_LEDGER_BACKEND_H

#include "engine/ledger/ledger.h"

typedef struct ledger_ops {
    int (*open)(const ledger_opts *o, void **state, char *err, size_t errlen);
    void (*close)(void *state);
    int (*record)(void *state, const ledger_rec *recs, size_t n, const ledger_sign_rec *signs,
                  size_t m, char *err, size_t errlen);
    int (*list)(void *state, const ledger_filter *f, ledger_row_fn cb, void *arg, char *err,
                size_t errlen);
    int (*schema_version)(void *state);
    /* serial_hex normalized; reason a valid code. Same returns as ledger_revoke(). */
    int (*revoke)(void *state, const char *serial_hex, int reason, int64_t at, int64_t *at_out,
                  int *reason_out, char *err, size_t errlen);
    int (*list_revoked)(void *state, const char *issuer_key, int64_t not_after_min,
                        ledger_revoked_fn cb, void *arg, char *err, size_t errlen);
    int (*crl_next_number)(void *state, const char *issuer_key, uint64_t *number, char *err,
                           size_t errlen);
    int (*crl_store)(void *state, const char *issuer_key, uint64_t number, int64_t this_update,
                     int64_t next_update, const uint8_t *der, size_t len, char *err,
                     size_t errlen);
    int (*crl_latest)(void *state, const char *issuer_key, ledger_crl_fn cb, void *arg,
                      char *err, size_t errlen);
    int (*list_signs)(void *state, const char *key, size_t limit, ledger_sign_row_fn cb,
                      void *arg, char *err, size_t errlen);
} ledger_ops;

extern const ledger_ops ledger_sqlite_ops;
extern const ledger_ops ledger_pg_ops;

#endif
