/* metrics.h — certforged's Prometheus endpoint (docs/certforged.md,
 * METRICS): the text exposition format 0.0.4 over HTTP (libevent's
 * evhttp) on a loopback address (config `metrics.listen`), served by its
 * own thread, "cf-metrics".
 *
 * That thread never touches the io_uring rings or the pipeline's workers:
 * a scrape reads what STATUS reads (srv_get_summary, pipe_get_stats,
 * cf_engine_sessions) plus the pipeline's per-profile counters and
 * latency histograms (pipe_get_metrics), all atomic loads; the only lock
 * it takes is the pipeline queue's, once, for the queue depth (as STATUS
 * does). The hot path pays relaxed atomic adds, nothing else.
 *
 * Lifecycle (certforged.c):
 *   met_new()     binds and listens, before the engine, confinement and
 *                 the user switch (a port below 1024 is bindable as root)
 *   met_crl_made(), met_ledger_failed()   from the CRL and ledger hooks
 *   met_start()   starts the thread once the server and engine exist
 *   met_stop()    joins it; before the engine closes
 *   met_free()
 */
#ifndef CF_METRICS_H
#define CF_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/compiler.h"
#include "engine/config/config.h"
#include "engine/core/engine.h"
#include "engine/server/server.h"

typedef struct met met;

/* Bind m->host:m->port (port 0: the kernel picks one; met_port says
 * which). Returns 0, or -1 with err ("metrics.listen: 127.0.0.1:9464:
 * Address already in use"). */
CF_WUR int met_new(const cfg_metrics *m, met **out, char *err, size_t errlen);
unsigned met_port(const met *m);

/* The state only certforged.c sees: a CRL made for the issuer named
 * `issuer` (thisUpdate, Unix seconds; by name, as a reload may add or
 * remove issuers), a ledger batch that failed. Any thread; NULL m is fine. */
void met_crl_made(met *m, const char *issuer, int64_t this_update);
void met_ledger_failed(met *m, size_t n_jobs);

/* Serve scrapes of the server's and engine's counters until met_stop.
 * start_time: the process's, Unix seconds. Returns 0, or -1 with err. */
CF_WUR int met_start(met *m, srv *server, cf_engine *eng, double start_time, char *err,
                     size_t errlen);
void met_stop(met *m); /* idempotent; NULL is fine */
void met_free(met *m); /* stops first; NULL is fine */

#endif
