/* issuer.h — certforge-acme's connections to certforged (libcertforge).
 *
 * A small pool (certforged.connections) of threads acme-engine/N, each with
 * one connection, take jobs from one queue and pipeline them: everything
 * queued goes out before any answer is awaited, so finalize calls from many
 * clients reach certforged together and its workers batch them. Answers
 * are matched by request id. A connection that breaks fails the jobs in
 * flight on it (CF_ST_INTERNAL, "connection lost") and is re-established
 * for the next ones; a BUSY answer is retried once after a short pause.
 */
#ifndef CF_ACME_ISSUER_H
#define CF_ACME_ISSUER_H

#include <stddef.h>
#include <stdint.h>

#include "acme/acme.h"
#include "acme/config.h"
#include "client/certforge.h"

#define ACME_ISSUE_MAX_CHAIN 8

typedef enum acme_job_kind { ACME_JOB_ISSUE, ACME_JOB_REVOKE } acme_job_kind;

typedef struct acme_job acme_job;
struct acme_job {
    acme_job_kind kind;
    /* ISSUE in: pointers owned by the caller until done() */
    cf_issue_req req;
    /* REVOKE in */
    uint8_t serial[20];
    size_t serial_len;
    unsigned reason;
    /* out (valid in done(); copies owned by the job, freed by acme_job_clear) */
    cf_status status;
    uint32_t detail;
    char message[256];
    uint8_t *cert;
    size_t cert_len;
    uint8_t *chain[ACME_ISSUE_MAX_CHAIN];
    size_t chain_len[ACME_ISSUE_MAX_CHAIN];
    unsigned n_chain;
    uint8_t out_serial[20];
    size_t out_serial_len;
    int64_t revoked_at;
    /* completion: on an acme-engine thread; must not block */
    void (*done)(acme_job *j);
    void *arg;
    /* internal */
    uint64_t id;
    int retries;
    acme_job *next;
};

typedef struct acme_issuer acme_issuer;

CF_WUR int acme_issuer_new(const acme_cfg *cfg, acme_issuer **out, char *err, size_t errlen);
void acme_issuer_free(acme_issuer *is); /* fails queued jobs, joins */

/* Fill j's ISSUE request for certforged: exactly the validated identifiers
 * (TS 33.310: the NF instance ID as the urn:uuid: URI SAN, the NF types
 * as NFTypes, the dns names as dNSNames). Pointers into the arguments,
 * which must outlive the job. */
struct acme_idents;
void acme_job_issue(acme_job *j, const char *engine_profile, const uint8_t *csr, size_t csr_len,
                    const struct acme_idents *ids, uint32_t validity_s, const char *requester);

/* Queue a job: 0, or -1 when stopping / the queue is full (done() is then
 * not called). */
CF_WUR int acme_issuer_submit(acme_issuer *is, acme_job *j);
/* Queue and wait (start-up, tools): 0 with j's out fields set. */
int acme_issuer_run(acme_issuer *is, acme_job *j);
void acme_job_clear(acme_job *j);

typedef struct acme_issuer_stats {
    uint64_t submitted, answered, busy_retries, reconnects, inflight_max;
} acme_issuer_stats;
void acme_issuer_get_stats(acme_issuer *is, acme_issuer_stats *out);

#endif
