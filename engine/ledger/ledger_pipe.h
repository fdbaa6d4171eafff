/* ledger_pipe.h — the pipeline's record hook (pipe_opts.record,
 * cf_engine_hooks.record) writing each batch to a ledger.
 *
 * Called on the pipeline's recorder thread (never a worker) with the
 * successful jobs the workers handed over since its last call — one or
 * several workers' batches, before any of them completes; it records them
 * in one transaction and returns non-zero when that fails, so the pipeline
 * answers all of them LEDGER_FAILURE and releases none. Each call tries
 * again: once the condition clears (disk space, a lock, permissions)
 * issuing resumes by itself.
 */
#ifndef CF_LEDGER_PIPE_H
#define CF_LEDGER_PIPE_H

#include <stdatomic.h>
#include <stddef.h>

#include "engine/ledger/ledger.h"
#include "engine/pipeline/pipeline.h"

/* Told about every failed batch (not about the jobs: the pipeline answers
 * them), e.g. to log `event=ledger_failure`. */
typedef void (*ledger_pipe_fail_fn)(const char *err, size_t n_jobs, void *arg);

/* Told once when a batch is recorded again after failures. */
typedef void (*ledger_pipe_recover_fn)(unsigned long long failed_batches, void *arg);

typedef struct ledger_pipe {
    ledger *l;
    ledger_pipe_fail_fn on_fail;       /* optional */
    ledger_pipe_recover_fn on_recover; /* optional */
    void *cb_arg;
    _Atomic unsigned long long failing; /* batches failed since the last success */
} ledger_pipe;

/* The pipe_batch_fn: arg is a ledger_pipe. */
int ledger_pipe_record(pipe_job *const *jobs, size_t n, void *arg);

#endif
