/* crl.h — CRLs (RFC 5280 §5) signed in the HSM (docs/crl.md).
 *
 * Per issuer (the engine's issuer object: its name and key identifier from
 * its certificate, its key, the algorithm its CRLs are signed with),
 * crl_make() builds a version 2 CRL of every revoked, unexpired certificate
 * the ledger holds for the issuer's key, with the next cRLNumber the ledger
 * hands out, signs it through the signing service, checks the signature
 * with OpenSSL, stores it in the ledger and, when a publish folder is
 * given, writes it there atomically (temporary file, fsync, rename, fsync
 * of the folder) as NAME.crl (DER). With a folder and an algorithm that
 * signs a digest (all but Ed25519) and no *der wanted, the CRL is streamed
 * into the folder's temporary file and the digest in two passes over the
 * revoked list, with memory independent of the entries (docs/crl.md,
 * "Memory"); otherwise it is built in memory.
 *
 * Sharded CRLs (an issuer's crl_shards > 1): a certificate belongs to
 * shard profile_crl_shard(serial, crl_shards); shard K's CRL lists the
 * issuer's revoked certificates of shard K only, carries a critical
 * issuingDistributionPoint naming the shard's URL (the crl_dp template with
 * {shard} = K), is published as NAME-K.crl and stored in the ledger under
 * "KEY@ISSUER#K". cRLNumbers come from the issuer key's one sequence.
 *
 * The publisher (crl_pub) runs crl_make for every shard of every issuer on
 * a schedule (crl.interval) and, within crl.revoke_delay after
 * crl_pub_kick(), for the kicked shards only.
 */
#ifndef CF_CRL_H
#define CF_CRL_H

#include <stddef.h>
#include <stdint.h>

#include "common/compiler.h"
#include "engine/issuer/issuer.h"
#include "engine/ledger/ledger.h"
#include "engine/signer/signer.h"

/* The largest CRL whose DER the ledger's crls row keeps (the largest frame
 * the CRL op can answer, CFG_MAX_FRAME_MAX): a larger CRL's row holds its
 * number and times with an empty der, and the CRL is read from the publish
 * folder (docs/crl.md, "Memory"). */
#define CRL_LEDGER_MAX (1u << 20)

typedef struct crl_made {
    unsigned shard;
    uint64_t number;
    int64_t this_update, next_update;
    size_t entries;
    size_t len; /* DER octets */
} crl_made;

/* Make, sign, check, store (and publish to dir, if not NULL) the CRL of
 * shard `shard` (0 when unsharded) of issuer `is` (its file: dir/NAME.crl,
 * sharded dir/NAME-K.crl; its ledger rows: crl_ledger_name()).
 * thisUpdate = now, nextUpdate = now + validity_s. *der (malloc'd) may be
 * NULL when the caller does not want the bytes. Returns 0, or -1 with err
 * (nothing published; also for a shard the issuer does not have). */
CF_WUR int crl_make(const iss_issuer *is, unsigned shard, sgn_service *sgn, ledger *l,
                    const char *dir, int64_t now, uint64_t validity_s, uint8_t **der, crl_made *out,
                    char *err, size_t errlen);
/* The name a CRL is stored under in the ledger's crls table:
 * "KEY@ISSUER" (key and issuer names: two issuers on one key make different
 * CRLs), "KEY@ISSUER#K" for shard K of a sharded issuer. 0 or -1 (too long). */
CF_WUR int crl_ledger_name(const iss_issuer *is, unsigned shard, char *out, size_t cap);

/* ---------------------------------------------------------------- publisher */

typedef struct crl_pub crl_pub;
/* Told after every CRL made or failed (for the daemon's log). */
typedef void (*crl_pub_log_fn)(const iss_issuer *is, const crl_made *m, const char *err, void *arg);

typedef struct crl_pub_opts {
    ledger *l;
    const iss_set *iss; /* every issuer gets its CRL, signed through iss_signer(iss);
                         * the publisher references it (until crl_pub_set_issuers) */
    const char *dir;
    uint64_t interval_s, validity_s, revoke_delay_s;
    crl_pub_log_fn log;
    void *log_arg;
} crl_pub_opts;

/* Make every issuer's CRLs (every shard) now (so they exist before serving), then start
 * the schedule thread. Returns 0, or -1 when a first CRL could not be made
 * (err names the issuer). */
CF_WUR int crl_pub_start(const crl_pub_opts *o, crl_pub **out, char *err, size_t errlen);
/* A certificate of the issuer named `issuer` in shard `shard` was revoked:
 * that shard gets a new CRL within revoke_delay (other shards and issuers
 * wait for the schedule). By name: the caller's issuer set may be older or
 * newer than the publisher's (a reload); an issuer it lacks is ignored. */
void crl_pub_kick(crl_pub *p, const char *issuer, unsigned shard);
/* A reload's issuers (the publisher takes a reference; the old set is
 * dropped once no CRL round uses it): every shard of every issuer gets a
 * new CRL at once, then the schedule goes on. 0, or -1 (out of memory:
 * the old issuers kept). */
CF_WUR int crl_pub_set_issuers(crl_pub *p, iss_set *iss);
/* A reload's new schedule (crl.interval, crl.validity, crl.revoke_delay):
 * the next scheduled CRL is due `interval_s` after the last one made; the
 * next CRL made carries the new validity. */
void crl_pub_set_times(crl_pub *p, uint64_t interval_s, uint64_t validity_s,
                       uint64_t revoke_delay_s);
void crl_pub_stop(crl_pub *p); /* NULL is fine */

#endif
