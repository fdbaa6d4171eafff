/* pipeline.h — the in-process issuance engine: a bounded job queue, worker
 * threads that take jobs in batches (parse, policy, verify, build the TBS,
 * digest), sign each batch through the HSM layer, check every issued
 * signature against the issuer key, assemble the certificates and complete
 * the jobs. When a key has signing threads (a network HSM), a worker builds
 * its next batch while the previous one is being signed.
 *
 * Jobs are owned by the caller (e.g. a pool sized at start-up): the
 * pipeline allocates nothing per request. A job and everything its request
 * points to must stay valid until its completion callback has run.
 */
#ifndef CF_PIPELINE_H
#define CF_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/compiler.h"
#include "common/histo.h"
#include "common/issue.h"
#include "common/status.h"
#include "engine/issuer/issuer.h"

/* Room for one certificate. An RSA-4096 subject key (≈ 550 bytes) and an
 * RSA-4096 issuer signature (512) leave several KiB for names; a request
 * whose certificate would not fit fails with POLICY_DENIED, saying so. */
#define PIPE_CERT_MAX 8192
/* What is left for the TBSCertificate once the outer SEQUENCE, the
 * signature algorithm and the largest signature (RSA-4096) are added. */
#define PIPE_TBS_MAX (PIPE_CERT_MAX - 640)

typedef struct profile profile;

/* What a job asks for: a certificate (ISSUE), or a raw signature with a
 * named key (SIGN, for the OpenSSL provider: docs/provider.md). */
typedef enum pipe_kind { PIPE_JOB_ISSUE = 0, PIPE_JOB_SIGN = 1 } pipe_kind;

typedef struct pipe_sign {
    cf_str key;   /* the key's config name: the pipeline resolves it (NOT_FOUND when
                   * there is none; POLICY_DENIED when mech does not fit it) */
    bool key_set; /* the caller resolved it already: key_idx (config order) */
    uint32_t key_idx;
    cf_sig_alg mech;
    const uint8_t *data;  /* the digest (mech's hash, its exact size), or the Ed25519 message */
    size_t len;
    /* set by the pipeline, for the ledger record */
    const char *key_name;
    const char *mech_name;
} pipe_sign;

typedef struct pipe_job {
    /* in */
    pipe_kind kind;
    cf_issue_req req; /* ISSUE */
    /* ISSUE: the profile, when the caller resolved it already (the server,
     * to check its grant): prof_idx indexes pipe_new's profiles, which
     * cf_engine_open lists in the config's order. Else (prof_set false) the
     * pipeline resolves req.profile by name. */
    bool prof_set;
    unsigned prof_idx;
    /* ISSUE: or the caller hands the compiled profile itself, with its
     * issuer's key (certforged after a reload: a profile of the config
     * generation the request started in, which the caller keeps alive
     * until the job completes). The key must be one the pipeline serves
     * with that profile's mechanism (pipe_serves). Takes precedence. */
    const profile *use_prof;
    const iss_key *use_key;
    pipe_sign sign;   /* SIGN: sig/sig_len hold the answer; digest the ledger's copy
                       * (Ed25519: SHA-512 of the message) */
    void *user;
    bool peer_known;   /* for the ledger: the requester's uid (SO_PEERCRED) */
    uint32_t peer_uid;
    /* out, valid in the completion callback */
    cf_status status;
    int detail;     /* CF_ST_BAD_CSR: the csr_err; CF_ST_HSM_FAILURE: the CK_RV */
    char msg[200];  /* for the requester: what was wrong */
    const uint8_t *cert; /* ISSUE: DER, inside buf */
    size_t cert_len;
    uint8_t serial[20];
    size_t serial_len;
    /* private to the pipeline */
    uint64_t queued_ns; /* CLOCK_MONOTONIC at submit: the issue latency histogram */
    int prof_slot;      /* ISSUE: the resolved profile (index), -1 before or without */
    uint8_t buf[PIPE_CERT_MAX];
    size_t tbs_off, tbs_len;
    const profile *prof;
    const struct pipe_issuer *iss;
    const iss_key *skey; /* SIGN: the resolved key */
    uint8_t digest[64];
    size_t digest_len;
    uint8_t sig[CF_SIG_MAX];
    size_t sig_len;
} pipe_job;

/* Called once per job, after it was signed, checked and (if a record hook
 * is set) recorded: on a worker thread, or on the recorder thread for jobs
 * that went through the record hook. */
typedef void (*pipe_done_fn)(pipe_job *job, void *arg);

/* Called with jobs that succeeded, before any of them completes: the
 * ledger's "record before release". Runs on the pipeline's one recorder
 * thread, which gathers what the workers signed meanwhile (group commit:
 * one call may hold several workers' batches), so workers keep signing
 * while the ledger syncs. A non-zero return fails all of them with
 * CF_ST_LEDGER_FAILURE and releases no certificate. */
typedef int (*pipe_batch_fn)(pipe_job *const *jobs, size_t n, void *arg);

typedef enum pipe_verify { PIPE_VERIFY_ALL, PIPE_VERIFY_ONE_IN_N, PIPE_VERIFY_OFF } pipe_verify;

typedef struct pipe_opts {
    const iss_set *iss; /* the keys and issuers, and through them the signing service */
    unsigned workers;   /* default: number of online CPUs */
    unsigned queue;     /* bounded job queue (default 4096) */
    unsigned batch;     /* jobs a worker takes at once (default 32) */
    pipe_verify verify; /* default PIPE_VERIFY_ALL */
    unsigned verify_n;  /* for PIPE_VERIFY_ONE_IN_N */
    pipe_done_fn done;
    void *done_arg;
    pipe_batch_fn record; /* optional */
    void *record_arg;
    uint8_t serial_prefix[4]; /* per-instance serial prefix (profile_serial) */
    size_t serial_prefix_len;
} pipe_opts;

typedef struct pipe_engine pipe_engine;

/* A profile the pipeline serves, and its issuer (from o->iss). Both must
 * outlive the engine. */
typedef struct pipe_profile_def {
    const profile *prof;
    const iss_issuer *issuer;
} pipe_profile_def;

CF_WUR int pipe_new(const pipe_opts *o, const pipe_profile_def *profiles, size_t nprofiles,
                    pipe_engine **out, char *err, size_t errlen);

/* Whether a profile signing with `mech` under `key` can be served by this
 * engine (a profile compiled after pipe_new, see use_prof): the key must
 * be one of pipe_new's profiles' keys, signing with the same mechanism. */
bool pipe_serves(const pipe_engine *e, const iss_key *key, cf_sig_alg mech);

/* Queue a job. Waits at most timeout_ms for room (0: do not wait).
 * Returns 0, or -1 when the queue stayed full (the caller answers BUSY)
 * or the engine is shutting down. */
CF_WUR int pipe_submit(pipe_engine *e, pipe_job *job, unsigned timeout_ms);

/* Queue several jobs at once (one lock); returns how many were queued. */
size_t pipe_submit_many(pipe_engine *e, pipe_job *const *jobs, size_t n, unsigned timeout_ms);

/* Complete every job still waiting in the queue (not yet taken by a
 * worker) with `st` and `msg`, without signing it. Jobs already being
 * worked on (up to two batches per worker with signing threads) are not
 * touched; once stopping, no worker takes a second batch. Returns how many were cancelled. For a
 * stop that must not wait for a slow HSM to sign what nobody will receive. */
size_t pipe_cancel_queued(pipe_engine *e, cf_status st, const char *msg);

/* Stop accepting, finish every job already queued, join the workers, free. */
void pipe_free(pipe_engine *e);

typedef struct pipe_stats {
    uint64_t submitted, completed;
    uint64_t by_status[CF_ST__MAX];
    unsigned queued;  /* jobs waiting now */
    unsigned workers;
    uint64_t overlapped; /* batches a worker built while its previous batch was
                          * being signed by the key's signing threads */
} pipe_stats;
void pipe_get_stats(pipe_engine *e, pipe_stats *st);

/* For the metrics endpoint (docs/certforged.md, METRICS): counters and
 * latency histograms kept with relaxed atomics on the workers and the
 * recorder, read here without a lock. */
#define PIPE_METRICS_PROFILES 32
typedef struct pipe_metrics {
    size_t nprofiles;
    /* every profile name seen, start-up and reloaded (the first 32) */
    const char *profile[PIPE_METRICS_PROFILES];
    /* ISSUE jobs completed by profile and status (jobs whose profile did
     * not resolve are not here: UNKNOWN_PROFILE) */
    uint64_t by_profile[PIPE_METRICS_PROFILES][CF_ST__MAX];
    /* certificates issued (ISSUE jobs completing OK): from submit to
     * completion (signed, checked, recorded, handed back to the server) */
    cf_histo_snap issue;
    /* one batch: from handing it to the signing service until the worker
     * has its signatures */
    cf_histo_snap hsm_sign;
    /* one group commit of the recorder (the ledger's record call) */
    cf_histo_snap ledger_commit;
} pipe_metrics;
void pipe_get_metrics(pipe_engine *e, pipe_metrics *m);

#endif
