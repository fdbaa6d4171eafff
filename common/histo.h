/* histo.h — a latency histogram cheap enough for the issuance hot path:
 * fixed buckets (seconds, Prometheus' le bounds), one relaxed atomic add
 * per observation into the bucket it falls in and one into the sum in
 * nanoseconds. No lock: writers on any thread, readers (a scrape) take
 * a snapshot that may be a few observations apart between fields, never
 * torn within one. The cumulative le counts are made at read time. */
#ifndef CF_HISTO_H
#define CF_HISTO_H

#include <stdatomic.h>
#include <stdint.h>

/* Upper bounds in seconds: 0.5 ms .. 30 s (+Inf is the count). */
#define CF_HISTO_BUCKETS 15
extern const double cf_histo_le[CF_HISTO_BUCKETS];

typedef struct cf_histo {
    _Atomic uint64_t bucket[CF_HISTO_BUCKETS + 1]; /* last: above every bound */
    _Atomic uint64_t sum_ns;
} cf_histo;

typedef struct cf_histo_snap {
    uint64_t cum[CF_HISTO_BUCKETS]; /* observations <= cf_histo_le[i] */
    uint64_t count;                 /* every observation (+Inf) */
    double sum_s;
} cf_histo_snap;

/* CLOCK_MONOTONIC in nanoseconds (vDSO: no system call). */
uint64_t cf_histo_now_ns(void);
/* Record one duration in nanoseconds. Any thread; a zeroed cf_histo is empty. */
void cf_histo_observe(cf_histo *h, uint64_t ns);
void cf_histo_read(const cf_histo *h, cf_histo_snap *out);

#endif
