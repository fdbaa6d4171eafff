/* ledger_backend.h — what a ledger backend implements (private to
 * engine/ledger). ledger.c dispatches through this table and serializes
 * the calls; a backend never sees two calls at once. */
#ifndef CF_LEDGER_BACKEND_H
#define CF_LEDGER_BACKEND_H

#include "ledger.h"

typedef struct ledger_ops {
    int (*open)(const ledger_opts *o, void **state, char *err, size_t errlen);
    void (*close)(void *state);
    int (*record)(void *state, const ledger_rec *recs, size_t n, char *err, size_t errlen);
    int (*list)(void *state, const ledger_filter *f, ledger_row_fn cb, void *arg, char *err,
                size_t errlen);
    int (*schema_version)(void *state);
} ledger_ops;

extern const ledger_ops ledger_sqlite_ops;

#endif
