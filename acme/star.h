/* star.h — STAR (RFC 8739): short-term, automatically renewed certificates.
 *
 * A STAR order's certificates come in periods of `lifetime` from its
 * start-date to its end-date: certificate i is due at start + i×lifetime −
 * lifetime-adjust − renew_ahead and is valid until start + (i+1)×lifetime
 * (or end-date), so consecutive certificates overlap by lifetime-adjust +
 * renew_ahead. The schedule is durable: each order row holds the next
 * certificate's number (star_seq) and due time (star_next); a certificate
 * is recorded with the order's advance in one transaction guarded by the
 * number, so a restart re-sends what was due and records nothing twice.
 *
 * The scheduler thread (acme-star) scans for due orders every
 * star.scan_interval_ms, sends them to certforged through the issuer's
 * pipeline (certforged batches them), and retries failures with backoff:
 * a certforged outage is caught up when it returns. */
#ifndef CF_ACME_STAR_H
#define CF_ACME_STAR_H

#include <stdint.h>

#include "acme/acme.h"
#include "acme/config.h"

struct acme_srv;
typedef struct acme_star acme_star;

/* When certificate number seq (≥ 1) is due; 0 when the series ends before it. */
int64_t acme_star_due(const acme_cfg *cfg, int64_t start, int64_t end, int64_t lifetime, int64_t adjust, int64_t seq);
/* The validity (seconds from now) of certificate seq issued at now. */
uint32_t acme_star_validity(int64_t start, int64_t end, int64_t lifetime, int64_t seq, int64_t now);

CF_WUR int acme_star_start(struct acme_srv *srv, acme_star **out, char *err, size_t errlen);
/* Stop scanning (renewals in flight finish through the issuer and store). */
void acme_star_stop(acme_star *s);
/* After the issuer and the store have stopped. */
void acme_star_free(acme_star *s);

typedef struct acme_star_stats {
    uint64_t issued, failures, scans;
    uint64_t stale; /* issued by certforged but not recorded: the order had already moved on */
    unsigned inflight;
    double lag_p50_ms, lag_p99_ms, lag_max_ms; /* due → sent to certforged, over the last 65536 */
} acme_star_stats;
void acme_star_get_stats(acme_star *s, acme_star_stats *out);

#endif
