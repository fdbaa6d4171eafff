/* agent.h — what the parts of certforge-agent share: the daemon's context,
 * its counters and log, the job scheduler of the ACME workers and the EST
 * front's notification hook.
 *
 * Threads (docs/agent.md):
 *   est-http/N   EST over TLS: authentication, CSR checks, answers; reads
 *                from its own connection, writes through agent-store
 *   agent-store  every state change, group-committed
 *   agent-acme/N ACME workers: one step of one enrolment at a time
 *                (blocking HTTP with keep-alive, DNS updates), so thousands
 *                of enrolments share a bounded pool
 *   main         signals, the status file, the renewal scan
 */
#ifndef CF_AGENT_AGENT_H
#define CF_AGENT_AGENT_H

#include <openssl/x509.h>
#include <stdatomic.h>
#include <stdint.h>

#include "acme/store.h"
#include "agent/config.h"

typedef struct agent_counters {
    _Atomic uint64_t requests, cacerts, csrattrs, enroll, reenroll, issued_now, accepted, unavailable, refused_auth,
        refused_csr, refused_key, refused_token, refused_nf, refused_address, errors;
    _Atomic uint64_t steps, acme_requests, acme_errors, retries, enrolled, renewed, failed, dns_updates, dns_errors,
        ari_polls;
    _Atomic uint64_t in_flight; /* enrolments queued or running */
} agent_counters;

struct acme_tkauth;
struct hsm_token;
struct acme_anchors;
typedef struct agent_sched agent_sched;
typedef struct agent_est agent_est;

typedef struct agent {
    const agent_cfg *cfg;
    acme_store *store;
    struct acme_tkauth *tkauth; /* NULL: no token bootstrap */
    X509_STORE *bootstrap;      /* NULL: no certificate bootstrap */
    struct acme_anchors *cacerts;
    struct hsm_token *acct_token; /* acme.account_key_token; NULL: account keys in the state */
    agent_sched *sched;
    agent_est *est;
    agent_counters ctr;
    int log_level;
    _Atomic int stopping;
} agent;

enum { AGENT_LOG_ERROR, AGENT_LOG_WARNING, AGENT_LOG_INFO, AGENT_LOG_DEBUG };
/* One line on stderr: time, "certforge-agent", level=, then fmt's
 * key=value pairs. Never a key, a token or a TSIG secret. */
void agent_log(const agent *a, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---------------------------------------------------------------- scheduler (client.c) */

/* Start the workers; they take up every enrolment the state holds unfinished. */
AGENT_WUR int agent_sched_start(agent *a, char *err, size_t errlen);
/* Queue job `id` (an enrolment id, or "ari:" + certificate id) at due_ms
 * (Unix ms); a job already queued or running is not queued twice. */
void agent_sched_add(agent_sched *s, const char *id, int64_t due_ms);
void agent_sched_stop(agent_sched *s); /* finishes the steps running, joins */
void agent_sched_free(agent_sched *s);
/* The renewal scan (main thread): certificates due for renewal get a
 * renewal enrolment; those due an ARI poll get one. Returns how many. */
int agent_renewal_scan(agent *a, acme_db *db);
/* At start-up: queue every unfinished enrolment. Returns how many. */
int agent_resume(agent *a, acme_db *db);
/* `nf remove`: cancel the NF's STAR order (RFC 8739 §3.1.2: POST
 * {"status": "canceled"} to the order, signed with the NF's account key).
 * 1 canceled (or already), 0 the NF has no STAR order, -1 err. */
AGENT_WUR int agent_star_cancel(agent *a, acme_db *db, const char *nf_id, char *err, size_t errlen);

/* ---------------------------------------------------------------- EST front (est.c) */

AGENT_WUR int agent_est_new(agent *a, agent_est **out, char *err, size_t errlen);
AGENT_WUR int agent_est_start(agent_est *e, char *err, size_t errlen);
void agent_est_stop(agent_est *e);
void agent_est_free(agent_est *e);
/* An enrolment's state changed (valid, failed, or failing transiently):
 * answer the requests parked on it. Any thread. */
void agent_est_notify(agent_est *e, const char *enrolment);

#endif
