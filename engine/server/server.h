/* server.h — certforged's io_uring Unix-socket server: framing (proto/),
 * per-peer authorization (SO_PEERCRED + config grants), backpressure and
 * the hand-off of requests to the issuance pipeline and of completions back.
 *
 * Knows frames, sockets, grants and the engine's job interface; nothing of
 * crypto and no key: an ISSUE names its profile and a SIGN its key by
 * name, and the pipeline resolves them. What the answers carry (each
 * issuer's chain, each key's public half for KEYS) it reads as bytes from
 * the engine's issuer objects.
 *
 * Lifecycle (certforged.c):
 *   srv_new()       checks and binds the socket (refuses a live daemon's)
 *   cf_engine_open(hooks.done = srv_pipe_done, hooks.done_arg = srv)
 *   srv_run()       serves until the signal fd reports SIGTERM/SIGINT, then
 *                   drains: stop accepting, answer every request already
 *                   received, bounded by server.drain_timeout_ms; SIGHUP
 *                   calls rt.reload (the engine's next config generation
 *                   reaches each ring at its next frame or accept)
 *   cf_engine_close()   (jobs still in the pipeline complete into the pool)
 *   srv_free()      unlinks the socket, frees the pools
 *
 * docs/certforged.md describes buffers, limits and the events logged.
 */
#ifndef CF_SERVER_H
#define CF_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/compiler.h"
#include "engine/config/config.h"
#include "engine/core/engine.h"
#include "engine/pipeline/pipeline.h"
#include "proto/proto.h"

typedef struct srv srv;

/* ------------------------------------------------------------ setup */

typedef struct srv_opts {
    const cfg_config *cfg; /* server, grants, profiles, pipeline; must outlive the srv */
    int signal_fd; /* signalfd for SIGTERM/SIGINT/SIGHUP (blocked in every thread); -1: none */
} srv_opts;

/* Check the socket path (a live daemon's socket → refused; a stale one is
 * replaced), create its folder (0750) if missing, bind, set the mode,
 * listen, and allocate every pool. On failure err names the setting:
 * "server.socket: socket /run/x.sock is in use by a live certforged". */
CF_WUR int srv_new(const srv_opts *o, srv **out, char *err, size_t errlen);

/* The pipeline's completion hook (pipe_done_fn): arg is the srv. Runs on
 * the pipeline's recorder thread (a worker's for failed jobs, and without a
 * ledger), and on the admin thread for REVOKE and CRL; hands the job back
 * to its ring's thread. */
void srv_pipe_done(pipe_job *job, void *arg);

/* What the running server needs. Everything must stay valid until
 * srv_run returns. */
/* REVOKE and CRL run on the server's admin thread, one at a time (they
 * wait on the ledger). Each returns the answer's status; msg (NUL-
 * terminated) says why when it is not OK. */
typedef cf_status (*srv_revoke_fn)(void *arg, const proto_revoke_req *r, uint32_t peer_uid,
                                   int64_t *revoked_at, unsigned *reason, char *msg,
                                   size_t msglen);
/* On OK *der is malloc'd (the server frees it). shard: the request's
 * CRL shard (0 when absent). */
typedef cf_status (*srv_crl_fn)(void *arg, cf_str issuer, unsigned shard, bool fresh, uint8_t **der,
                                size_t *len, char *msg, size_t msglen);

typedef struct srv_runtime {
    cf_engine *eng;       /* the pipeline, the issuers (chains, KEYS), HSM sessions (STATUS) */
    srv_revoke_fn revoke; /* NULL: REVOKE answered UNSUPPORTED */
    srv_crl_fn crl;       /* NULL: CRL answered UNSUPPORTED */
    void *admin_arg;
    void (*on_ready)(void *arg, const char *socket_path); /* once, when serving */
    /* SIGHUP: called on ring 0's thread (which reads the signalfd); NULL:
     * SIGHUP is logged and ignored. admin_arg is its argument. */
    void (*reload)(void *arg);
    void *ready_arg;
} srv_runtime;

/* Serve until stopped (signal) and drained. Returns 0, or -1 with err
 * (io_uring set-up failed). */
CF_WUR int srv_run(srv *s, const srv_runtime *rt, char *err, size_t errlen);

/* The last reload's outcome, for STATUS (config_reload, config_reload_at):
 * ok or refused, at the wall-clock time `at` (Unix seconds). Any thread. */
void srv_note_reload(srv *s, bool ok, int64_t at);

typedef struct srv_summary {
    uint64_t connections;           /* accepted over the run */
    uint64_t requests;              /* frames received */
    uint64_t answered;              /* responses sent in full */
    uint64_t unanswered;            /* accepted ISSUE requests dropped (peer gone, drain timeout) */
    uint64_t refused;               /* connections refused (max_connections) */
    uint64_t by_status[CF_ST__MAX]; /* answers by status */
    /* answers by operation and status; [0]: frames whose operation is
     * unknown or could not be read (BAD_FRAME, UNSUPPORTED) */
    uint64_t by_op[PROTO_OP__MAX][CF_ST__MAX];
    unsigned open_connections; /* now */
    uint64_t inflight;         /* requests received, not yet answered, now */
} srv_summary;
/* Any thread, while the srv lives (the metrics endpoint reads it while
 * serving): atomic loads, no lock. */
void srv_get_summary(srv *s, srv_summary *out);

/* Close the socket and unlink its path (if this srv bound it), free. Call
 * after the pipeline is freed. NULL is fine. */
void srv_free(srv *s);

#endif
