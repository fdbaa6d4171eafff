/* ledger.h — issuance records (docs/ledger.md).
 *
 * Every certificate certforged issues is recorded here, by the pipeline's
 * recorder thread in one transaction per pass (whatever one or more
 * workers' batches handed over), BEFORE any certificate of them is
 * released: a crash loses no certificate that any client received.
 *
 * One interface, two backends: SQLite (embedded default, ledger_sqlite.c)
 * and PostgreSQL (several engines sharing one CA, ledger_pg.c), behind the
 * same calls. A backend is picked by ledger_open() from the config's
 * `ledger` section.
 *
 * Thread safety: every call on one ledger may come from any thread; calls
 * are serialized inside (a SQLite database has one writer at a time
 * anyway: batching, not parallel writers, is what makes it fast).
 *
 * Knows issuance records and nothing of sockets or PKCS#11. The pipeline
 * adapter (ledger_pipe.h) turns a pipeline batch into records.
 */
#ifndef CF_LEDGER_H
#define CF_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/compiler.h"
#include "common/serial.h"

/* The schema this code writes (schema_version table). A database with a
 * newer version is refused; an older one is migrated at open. */
#define LEDGER_SCHEMA_VERSION 3

typedef enum ledger_backend {
    LEDGER_SQLITE,
    LEDGER_POSTGRESQL,
    LEDGER_BACKEND__MAX
} ledger_backend;
const char *ledger_backend_name(ledger_backend b); /* "sqlite", "postgresql" */

typedef struct ledger_opts {
    ledger_backend backend;
    const char *path;         /* sqlite: the database file (created if absent) */
    const char *conninfo;     /* postgresql: libpq conninfo or URI, without a password */
    unsigned busy_timeout_ms; /* how long a write waits for another writer's lock
                               * (postgresql: lock_timeout) */
    unsigned pg_timeout_ms;   /* postgresql: each call's exchange with the server (connect,
                               * statements, results) ends after this long; 0: 5000 */
    bool read_only;           /* the CLI: never creates, never migrates, never writes */
} ledger_opts;

/* One issuance record. As input to ledger_record() the pointers are the
 * caller's; as output of lookups they point into the ledger's memory and
 * are valid only during the callback. Strings are NUL-terminated UTF-8. */
typedef struct ledger_rec {
    const char *serial;         /* lower-case hex, no separators, as in the certificate */
    const char *profile;        /* config name */
    const char *issuer_key;     /* config name of the signing key */
    const char *subject;        /* text, e.g. "C=FI,O=5gc.mnc001.mcc001.3gppnetwork.org" */
    const char *sans;           /* "DNS:a.example,URI:urn:uuid:..." in certificate order */
    const char *nf_instance_id; /* lower-case UUID, or NULL */
    int64_t not_before, not_after; /* Unix seconds, UTC */
    const uint8_t *cert;        /* the certificate DER */
    size_t cert_len;
    int64_t requester_uid;      /* the peer's uid (SO_PEERCRED), -1 when not from a peer */
    const char *requester;      /* the front end's tag, or NULL */
    int64_t issued_at_ms;       /* Unix milliseconds, when the batch was recorded */
    const char *status;         /* "valid" or "revoked" */
    int64_t revoked_at;         /* Unix seconds, or -1 (NULL) */
    const char *revocation_reason; /* RFC 5280 name ("keyCompromise"), or NULL */
} ledger_rec;

/* One raw SIGN (docs/protocol.md): what was signed, by whom, with what. */
typedef struct ledger_sign_rec {
    const char *key;       /* config name of the key */
    const char *mechanism; /* "ecdsa-sha256", ..., "ed25519" */
    const uint8_t *digest; /* what the HSM signed: the digest; Ed25519: SHA-512 of the message */
    size_t digest_len;     /* 1..64 */
    int64_t requester_uid; /* the peer's uid, -1 when not from a peer */
    const char *requester; /* the caller's tag, or NULL */
    int64_t signed_at_ms;  /* Unix milliseconds */
} ledger_sign_rec;

typedef struct ledger_filter {
    const char *serial;         /* exact (hex, any case, ':' allowed), or NULL */
    const char *profile;        /* or NULL */
    const char *nf_instance_id; /* any case, or NULL */
    int64_t expiring_before;    /* not_after < this (Unix seconds), or 0 */
    bool revoked_only;          /* status = 'revoked' */
    size_t limit;               /* 0: no limit */
} ledger_filter;

typedef struct ledger ledger;

/* Open (and for writers create or migrate) the ledger. Returns 0, or -1
 * with a message naming the path and the backend's error. */
CF_WUR int ledger_open(const ledger_opts *o, ledger **out, char *err, size_t errlen);
void ledger_close(ledger *l);

/* Record n certificates in ONE transaction: all of them are durable when
 * this returns 0 (sqlite: WAL, synchronous=FULL; postgresql: a committed
 * transaction, synchronous_commit on, fsync on), none of them when it
 * returns -1 (err says why). A serial already recorded fails the batch. */
CF_WUR int ledger_record(ledger *l, const ledger_rec *recs, size_t n, char *err, size_t errlen);

/* The same, with raw SIGN records, all in ONE transaction (either list
 * may be empty). The pipeline's recorder uses this. */
CF_WUR int ledger_record_all(ledger *l, const ledger_rec *recs, size_t n,
                             const ledger_sign_rec *signs, size_t m, char *err, size_t errlen);

/* --- revocation (RFC 5280 §5.3.1 reason codes) ---------------------------- */

/* Reason codes and their names (as the ledger stores them):
 * common/reason.h. */

/* Revoke a certificate. Returns 0 revoked now, 1 it was already revoked
 * (nothing changed: the first revocation stands), 2 no such serial, -1
 * backend error (err). *at_out / *reason_out: the revocation in force. */
CF_WUR int ledger_revoke(ledger *l, const char *serial_hex, int reason, int64_t at, int64_t *at_out,
                         int *reason_out, char *err, size_t errlen);

/* Revoked certificates of one issuing key that have not expired by
 * `not_after_min` (CRLs drop a certificate once it expires), ordered by
 * serial. cb's non-zero return stops the walk. 0 done, -1 error. */
typedef int (*ledger_revoked_fn)(const char *serial_hex, int64_t revoked_at, int reason,
                                 void *arg);
CF_WUR int ledger_list_revoked(ledger *l, const char *issuer_key, int64_t not_after_min,
                               ledger_revoked_fn cb, void *arg, char *err, size_t errlen);

/* --- CRLs ---------------------------------------------------------------- */

/* Take the next cRLNumber of an issuing key (1, 2, ...): persisted and
 * strictly increasing across every engine sharing the ledger, even when
 * the CRL it was taken for is never stored. 0 or -1 (err). */
CF_WUR int ledger_crl_next_number(ledger *l, const char *issuer_key, uint64_t *number, char *err,
                                  size_t errlen);
/* Store a signed CRL. len 0: its metadata only (a CRL larger than
 * CRL_LEDGER_MAX, served from the publish folder). 0 or -1. */
CF_WUR int ledger_crl_store(ledger *l, const char *issuer_key, uint64_t number, int64_t this_update,
                            int64_t next_update, const uint8_t *der, size_t len, char *err,
                            size_t errlen);
/* The stored CRL with the highest number for the key: 1 found (cb called
 * once; der valid during the call, len 0 for a metadata-only row), 0 none
 * yet, -1 error. */
typedef int (*ledger_crl_fn)(uint64_t number, int64_t this_update, int64_t next_update,
                             const uint8_t *der, size_t len, void *arg);
CF_WUR int ledger_crl_latest(ledger *l, const char *issuer_key, ledger_crl_fn cb, void *arg,
                             char *err, size_t errlen);

/* Raw SIGN records, oldest first (for `certforge ledger signs` and tests).
 * key may be NULL (all). 0 done, -1 error. */
typedef int (*ledger_sign_row_fn)(const ledger_sign_rec *r, void *arg);
CF_WUR int ledger_list_signs(ledger *l, const char *key, size_t limit, ledger_sign_row_fn cb,
                             void *arg, char *err, size_t errlen);

/* Lookups: cb is called once per matching record, ordered by issue time
 * then serial; a non-zero return from cb stops the walk (and is returned).
 * Returns 0 when the walk finished, -1 on a backend error (err). */
typedef int (*ledger_row_fn)(const ledger_rec *r, void *arg);
CF_WUR int ledger_list(ledger *l, const ledger_filter *f, ledger_row_fn cb, void *arg, char *err,
                       size_t errlen);
/* 1 found (cb called), 0 not found, -1 error. */
CF_WUR int ledger_find(ledger *l, const char *serial_hex, ledger_row_fn cb, void *arg, char *err,
                       size_t errlen);

/* The schema version of the open database. */
int ledger_schema_version(ledger *l);

/* --- certificate fields -------------------------------------------------- */

/* What the ledger takes from a certificate, read with engine/der from its
 * DER (no OpenSSL object: about a microsecond; docs/ledger.md has the
 * measurement). subject and sans are NUL-terminated text written into the
 * caller's buffer `text`; LEDGER_CERT_TEXT_CAP(len) octets always hold
 * both (longer text is cut with "..."). */
typedef struct ledger_cert_fields {
    char serial[CF_SERIAL_HEX_MAX + 1];
    int64_t not_before, not_after;
    const char *subject; /* "C=FI,O=..." (RFC 4514 escaping, certificate order) */
    const char *sans;    /* "DNS:a,URI:urn:uuid:..." (certificate order), or "" */
} ledger_cert_fields;
#define LEDGER_CERT_TEXT_CAP(der_len) (4 * (size_t)(der_len) + 64)

/* Returns 0, or -1 when the DER is not a certificate this code can read. */
CF_WUR int ledger_cert_fields_of(const uint8_t *der, size_t len, char *text, size_t cap,
                                 ledger_cert_fields *f);

#endif
