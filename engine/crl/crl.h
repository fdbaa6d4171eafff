/* crl.h — CRLs (RFC 5280 §5) signed in the HSM (docs/crl.md).
 *
 * One crl_issuer per configured issuer: its certificate (issuer name and
 * key identifier), its HSM signer and public key. crl_make() builds a
 * version 2 CRL of every revoked, unexpired certificate the ledger holds
 * for the issuer's key, with the next cRLNumber the ledger hands out,
 * signs it in the HSM, checks the signature with OpenSSL, stores it in the
 * ledger and, when a publish folder is given, writes it there atomically
 * (temporary file, fsync, rename, fsync of the folder) as NAME.crl (DER).
 *
 * The publisher (crl_pub) runs crl_make for every issuer on a schedule
 * (crl.interval) and within crl.revoke_delay after crl_pub_kick().
 */
#ifndef CF_CRL_H
#define CF_CRL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "common/compiler.h"
#include "engine/ledger/ledger.h"
#include "hsm/hsm.h"

typedef struct crl_issuer crl_issuer;

/* name: the issuer's config name (the file name); key_name: its key's
 * config name (the ledger's issuer_key). The signer and pub must outlive
 * the crl_issuer. Returns 0, or -1 with err. */
CF_WUR int crl_issuer_new(const char *name, const char *key_name, const uint8_t *cert_der,
                          size_t cert_len, hsm_signer *signer, EVP_PKEY *pub, crl_issuer **out,
                          char *err, size_t errlen);
void crl_issuer_free(crl_issuer *ci);
const char *crl_issuer_name(const crl_issuer *ci);
const char *crl_issuer_key(const crl_issuer *ci);

typedef struct crl_made {
    uint64_t number;
    int64_t this_update, next_update;
    size_t entries;
    size_t len; /* DER octets */
} crl_made;

/* Make, sign, check, store (and publish to dir, if not NULL) one CRL.
 * thisUpdate = now, nextUpdate = now + validity_s. *der (malloc'd) may be
 * NULL when the caller does not want the bytes. Returns 0, or -1 with err
 * (nothing published). */
CF_WUR int crl_make(crl_issuer *ci, ledger *l, const char *dir, int64_t now, uint64_t validity_s,
                    uint8_t **der, crl_made *out, char *err, size_t errlen);

/* ---------------------------------------------------------------- publisher */

typedef struct crl_pub crl_pub;
/* Told after every CRL made or failed (for the daemon's log). */
typedef void (*crl_pub_log_fn)(const crl_issuer *ci, const crl_made *m, const char *err,
                               void *arg);

typedef struct crl_pub_opts {
    ledger *l;
    crl_issuer *const *issuers;
    size_t n;
    const char *dir;
    uint64_t interval_s, validity_s, revoke_delay_s;
    crl_pub_log_fn log;
    void *log_arg;
} crl_pub_opts;

/* Make every issuer's CRL now (so one exists before serving), then start
 * the schedule thread. Returns 0, or -1 when a first CRL could not be made
 * (err names the issuer). */
CF_WUR int crl_pub_start(const crl_pub_opts *o, crl_pub **out, char *err, size_t errlen);
/* A revocation happened: every issuer gets a new CRL within revoke_delay. */
void crl_pub_kick(crl_pub *p);
void crl_pub_stop(crl_pub *p); /* NULL is fine */

#endif
