/* certforge.h — libcertforge, the client of certforged (docs/protocol.md).
 *
 *   cf_client *c;
 *   char err[256];
 *   if (cf_client_connect("/run/certforge/certforged.sock", &c, err, sizeof err) != 0)
 *       die(err);
 *   cf_issue_req req = {.profile = {"nf", 2}, .csr_der = der, .csr_len = der_len};
 *   cf_response r;
 *   if (cf_issue_one(c, &req, 5000, &r) != 0)
 *       die(cf_client_error(c));
 *   if (r.status != CF_ST_OK)
 *       printf("%s: %.*s\n", cf_status_name(r.status), (int)r.message.len, r.message.p);
 *   else
 *       use(r.cert.p, r.cert.len);
 *   cf_client_close(c);
 *
 * Pipelining: cf_client_submit_issue() many times (each returns its request
 * id), cf_client_flush(), then cf_client_next_response() until every id is
 * answered. Answers arrive in any order; match them by id. An answer with id
 * 0 is about the connection (BUSY: the daemon is at max_connections and
 * closes it); the blocking calls return it as their answer.
 *
 * Threads: a cf_client is not locked. Use it from one thread at a time
 * (e.g. one per thread, or hand it over with your own lock). Different
 * clients are independent; the library has no global state.
 *
 * fork(): the child must not use the parent's client — the connection and
 * its buffered bytes belong to the parent. Every call in the child fails with
 * a clear error; the child may only cf_client_close() it (which closes the
 * child's copy of the socket, nothing else), and connects its own client.
 *
 * I/O: the socket is non-blocking; the library polls. While it writes
 * requests it also reads answers into its receive buffer, so a client that
 * pipelines thousands of requests never deadlocks against a daemon whose
 * answers fill the socket. Both buffers are bounded (cf_client_opts): when
 * neither can move, submit returns 1 — collect answers, then submit again.
 *
 * Return values: 0 success, 1 "not now" (timeout / buffers full: nothing was
 * lost), -1 error with cf_client_error(). Errors that break the connection
 * (daemon closed it, I/O error, malformed or oversized answer) are sticky:
 * every later call fails with the same message; close the client. Answers
 * already received before such an error are still handed out first.
 *
 * Pointers in a cf_response point into the client's buffer: valid until the
 * next call on that client (any function). Strings are not NUL-terminated.
 */
#ifndef CERTFORGE_H
#define CERTFORGE_H

#include <stddef.h>
#include <stdint.h>

#include "common/issue.h"  /* cf_str, cf_issue_req */
#include "common/sigalg.h" /* cf_sign_mech: CF_SIGN_* */
#include "common/status.h" /* cf_status, cf_status_name() */

typedef struct cf_client cf_client;

typedef struct cf_client_opts {
    size_t max_frame;    /* largest request sent / answer accepted, octets (0: 65536) */
    size_t max_buffered; /* answers received, not yet collected, octets (0: 4 MiB) */
    size_t max_queued;   /* requests not yet written, octets (0: 256 KiB) */
    int io_timeout_ms;   /* how long submit waits for the daemon to read (0: 30000; -1: forever) */
} cf_client_opts;

/* Connect to certforged's Unix socket. On failure *out is NULL and err says
 * why, naming the path ("connect /run/...: No such file or directory — is
 * certforged running?"). opts may be NULL (defaults). */
int cf_client_connect(const char *socket_path, cf_client **out, char *err, size_t errlen);
int cf_client_connect_opts(const char *socket_path, const cf_client_opts *opts, cf_client **out,
                           char *err, size_t errlen);
void cf_client_close(cf_client *c); /* NULL is fine; unanswered requests are dropped */

const char *cf_client_error(const cf_client *c); /* the last error, "" if none */

/* ---------------------------------------------------------- pipelined */

/* Queue a request (and send what the socket takes). *id_out: its id.
 * 0 queued; 1 buffers full, not queued (collect answers first); -1 error
 * (e.g. the request breaks a protocol limit: the client stays usable). */
int cf_client_submit_issue(cf_client *c, const cf_issue_req *req, uint64_t *id_out);
int cf_client_submit_status(cf_client *c, uint64_t *id_out);
int cf_client_submit_keys(cf_client *c, uint64_t *id_out);

/* SIGN (docs/protocol.md): sign with a key the daemon holds. For ECDSA and
 * RSA `data` is the digest of the mechanism's hash (its exact size); for
 * Ed25519 the whole message. The answer's `sig` holds the signature:
 * ECDSA as DER Ecdsa-Sig-Value, RSA modulus-sized, Ed25519 64 octets.
 * Mechanisms: cf_sign_mech (CF_SIGN_*, common/sigalg.h). */
typedef struct cf_sign_req {
    cf_str key;           /* the key's name in the daemon's config */
    unsigned mech;        /* cf_sign_mech */
    const uint8_t *data;  /* digest, or the Ed25519 message */
    size_t data_len;
    cf_str requester;     /* optional tag, recorded in the ledger */
} cf_sign_req;
int cf_client_submit_sign(cf_client *c, const cf_sign_req *req, uint64_t *id_out);

/* REVOKE: serial octets big-endian (1-20), reason an RFC 5280 CRLReason
 * (0-10 except 7). The answer's revoked_at/reason are those in force (a
 * repeated revocation answers the first). */
int cf_client_submit_revoke(cf_client *c, const uint8_t *serial, size_t serial_len,
                            unsigned reason, cf_str requester, uint64_t *id_out);
/* CRL: the latest CRL of the named issuer (the answer's `crl`); fresh
 * (non-zero): a CRL made for this request. */
int cf_client_submit_crl(cf_client *c, cf_str issuer, int fresh, uint64_t *id_out);
/* The same for CRL shard `shard` (0-65535) of an issuer with crl_shards
 * (docs/crl.md); shard 0 of an unsharded issuer is its only CRL, and
 * cf_client_submit_crl() asks for shard 0. A shard the issuer does not
 * have is answered NOT_FOUND. */
int cf_client_submit_crl_shard(cf_client *c, cf_str issuer, unsigned shard, int fresh,
                               uint64_t *id_out);

/* Send every queued request, reading answers meanwhile. timeout_ms: -1
 * forever. 0 all sent; 1 timeout or the receive buffer is full; -1 error. */
int cf_client_flush(cf_client *c, int timeout_ms);

#define CF_MAX_CHAIN 8
#define CF_MAX_KV 64
#define CF_MAX_KEYS 64

typedef struct cf_blob {
    const uint8_t *p;
    size_t len;
} cf_blob;

typedef struct cf_kv { /* a STATUS counter: "issued" = "42" */
    cf_str key, value;
} cf_kv;

typedef struct cf_key { /* a KEYS entry */
    cf_str name, type;  /* type: "ec-p256", "rsa-3072", "ed25519", ... */
    cf_blob spki;       /* SubjectPublicKeyInfo DER */
} cf_key;

enum { CF_OP_ISSUE = 1, CF_OP_SIGN = 2, CF_OP_REVOKE = 3, CF_OP_CRL = 4, CF_OP_STATUS = 5,
       CF_OP_KEYS = 6 };

typedef struct cf_response {
    uint64_t id;
    unsigned op;      /* CF_OP_* of the request */
    cf_status status; /* CF_ST_OK or why not (may exceed CF_ST__MAX from a newer daemon) */
    uint32_t detail;  /* BAD_CSR: the csr_err; HSM_FAILURE: the CK_RV */
    cf_str message;   /* for humans; untrusted text */
    cf_blob cert;     /* ISSUE OK: certificate DER */
    cf_blob chain[CF_MAX_CHAIN]; /* issuer first, towards the root */
    unsigned n_chain;
    cf_blob serial;      /* big-endian octets */
    cf_kv kv[CF_MAX_KV]; /* STATUS */
    unsigned n_kv;
    cf_key keys[CF_MAX_KEYS]; /* KEYS */
    unsigned n_keys;
    cf_blob sig;         /* SIGN */
    int64_t revoked_at;  /* REVOKE: Unix seconds */
    unsigned reason;     /* REVOKE: CRLReason in force */
    cf_blob crl;         /* CRL: CertificateList DER */
} cf_response;

/* The next answer, whichever request it belongs to. Sends queued requests
 * while waiting. timeout_ms: 0 no wait, -1 forever. 0 got one; 1 timeout;
 * -1 error (including "no request in flight", which does not break the
 * connection). */
int cf_client_next_response(cf_client *c, int timeout_ms, cf_response *out);

/* ----------------------------------------------------------- blocking */

/* One request, one answer, on a client with no request in flight.
 * 0: *out holds the answer (check out->status); 1 timeout (the answer
 * may still come later through cf_client_next_response); -1 error. */
int cf_issue_one(cf_client *c, const cf_issue_req *req, int timeout_ms, cf_response *out);
int cf_client_status(cf_client *c, int timeout_ms, cf_response *out); /* out->kv */
int cf_client_keys(cf_client *c, int timeout_ms, cf_response *out);   /* out->keys */
int cf_sign_one(cf_client *c, const cf_sign_req *req, int timeout_ms, cf_response *out); /* sig */
int cf_revoke_one(cf_client *c, const uint8_t *serial, size_t serial_len, unsigned reason,
                  cf_str requester, int timeout_ms, cf_response *out);
int cf_crl_one(cf_client *c, cf_str issuer, int fresh, int timeout_ms,
               cf_response *out); /* out->crl; shard 0 */
int cf_crl_shard_one(cf_client *c, cf_str issuer, unsigned shard, int fresh, int timeout_ms,
                     cf_response *out); /* out->crl */

#endif
