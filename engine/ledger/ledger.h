/* ledger.h — issuance records (docs/ledger.md).
 *
 * Every certificate certforged issues is recorded here, in one transaction
 * per pipeline batch, BEFORE any certificate of the batch is released: a
 * crash loses no certificate that any client received.
 *
 * One interface, several backends: SQLite (embedded default, ledger_sqlite.c)
 * now; PostgreSQL (several engines sharing one CA) later, behind the same
 * calls. A backend is picked by ledger_open() from the config's `ledger`
 * section.
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

#define LEDGER_WUR __attribute__((warn_unused_result))

/* The schema this code writes (schema_version table). A database with a
 * newer version is refused; an older one is migrated at open. */
#define LEDGER_SCHEMA_VERSION 1
/* Serial numbers: RFC 5280 §4.1.2.2, at most 20 octets → 40 hex digits. */
#define LEDGER_SERIAL_HEX_MAX 40

typedef enum ledger_backend { LEDGER_SQLITE, LEDGER_BACKEND__MAX } ledger_backend;
const char *ledger_backend_name(ledger_backend b); /* "sqlite" */

typedef struct ledger_opts {
    ledger_backend backend;
    const char *path;         /* sqlite: the database file (created if absent) */
    unsigned busy_timeout_ms; /* how long a write waits for another writer's lock */
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
    const char *status;         /* "valid" (revocation comes later) */
    int64_t revoked_at;         /* Unix seconds, or -1 (NULL) */
    const char *revocation_reason; /* or NULL */
} ledger_rec;

typedef struct ledger_filter {
    const char *serial;         /* exact (hex, any case, ':' allowed), or NULL */
    const char *profile;        /* or NULL */
    const char *nf_instance_id; /* any case, or NULL */
    int64_t expiring_before;    /* not_after < this (Unix seconds), or 0 */
    size_t limit;               /* 0: no limit */
} ledger_filter;

typedef struct ledger ledger;

/* Open (and for writers create or migrate) the ledger. Returns 0, or -1
 * with a message naming the path and the backend's error. */
LEDGER_WUR int ledger_open(const ledger_opts *o, ledger **out, char *err, size_t errlen);
void ledger_close(ledger *l);

/* Record n certificates in ONE transaction: all of them are durable when
 * this returns 0 (sqlite: WAL, synchronous=FULL), none of them when it
 * returns -1 (err says why). A serial already recorded fails the batch. */
LEDGER_WUR int ledger_record(ledger *l, const ledger_rec *recs, size_t n, char *err,
                             size_t errlen);

/* Lookups: cb is called once per matching record, ordered by issue time
 * then serial; a non-zero return from cb stops the walk (and is returned).
 * Returns 0 when the walk finished, -1 on a backend error (err). */
typedef int (*ledger_row_fn)(const ledger_rec *r, void *arg);
LEDGER_WUR int ledger_list(ledger *l, const ledger_filter *f, ledger_row_fn cb, void *arg,
                           char *err, size_t errlen);
/* 1 found (cb called), 0 not found, -1 error. */
LEDGER_WUR int ledger_find(ledger *l, const char *serial_hex, ledger_row_fn cb, void *arg,
                           char *err, size_t errlen);

/* The schema version of the open database. */
int ledger_schema_version(ledger *l);

/* --- certificate fields -------------------------------------------------- */

/* What the ledger takes from a certificate, read with engine/der from its
 * DER (no OpenSSL object: about a microsecond; docs/ledger.md has the
 * measurement). subject and sans are NUL-terminated text written into the
 * caller's buffer `text`; LEDGER_CERT_TEXT_CAP(len) octets always hold
 * both (longer text is cut with "..."). */
typedef struct ledger_cert_fields {
    char serial[LEDGER_SERIAL_HEX_MAX + 1];
    int64_t not_before, not_after;
    const char *subject; /* "C=FI,O=..." (RFC 4514 escaping, certificate order) */
    const char *sans;    /* "DNS:a,URI:urn:uuid:..." (certificate order), or "" */
} ledger_cert_fields;
#define LEDGER_CERT_TEXT_CAP(der_len) (4 * (size_t)(der_len) + 64)

/* Returns 0, or -1 when the DER is not a certificate this code can read. */
LEDGER_WUR int ledger_cert_fields_of(const uint8_t *der, size_t len, char *text, size_t cap,
                                     ledger_cert_fields *f);

/* Normalize a serial given by a user ("0A:1b", "0x0a1b") to the stored
 * form (lower-case hex, no separators, no "0x"). Returns 0 or -1. */
LEDGER_WUR int ledger_serial_norm(const char *in, char out[LEDGER_SERIAL_HEX_MAX + 1]);

#endif
