/* bench_hist.h — a log-linear latency histogram (HdrHistogram's bucket
 * layout, fixed size): values in nanoseconds, 64 linear sub-buckets per
 * power of two, so every recorded value is known to within 1/64 (1.6 %),
 * from 1 ns to 2^41 ns (≈ 36 min; larger values land in the last bucket).
 * 18 KiB, no allocation: one per recording thread, merged at the end.
 *
 * One writer per histogram; any thread may read it while it is written
 * (counts are relaxed atomics: a reader sees each count whole, the set of
 * counts not as one snapshot — good enough for a live display). */
#ifndef CF_BENCH_HIST_H
#define CF_BENCH_HIST_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define BH_SUB_BITS 7 /* 128 sub-buckets in the first range, 64 per octave after it */
#define BH_MAX_SHIFT 35
#define BH_BUCKETS ((BH_MAX_SHIFT + 1) * (1u << (BH_SUB_BITS - 1)) + (1u << (BH_SUB_BITS - 1)))

typedef struct bench_hist {
    _Atomic uint64_t counts[BH_BUCKETS];
    _Atomic uint64_t n, max_ns, sum_ns;
} bench_hist;

/* A plain copy (for a child's result, merging, percentiles). */
typedef struct bench_hist_snap {
    uint64_t counts[BH_BUCKETS];
    uint64_t n, max_ns, sum_ns;
} bench_hist_snap;

void bench_hist_reset(bench_hist *h);
/* Single writer: plain load + store, no locked instruction. */
void bench_hist_record(bench_hist *h, uint64_t ns);

void bench_hist_snap_of(const bench_hist *h, bench_hist_snap *out); /* copy */
void bench_hist_snap_add(bench_hist_snap *acc, const bench_hist_snap *s);
/* acc -= s, for the interval since an earlier snapshot of the same hist */
void bench_hist_snap_sub(bench_hist_snap *acc, const bench_hist_snap *s);

/* Value (ns) at quantile q in [0,1]: the highest value equivalent to the
 * bucket holding it, clamped to the recorded max; 0 when empty. */
uint64_t bench_hist_quantile(const bench_hist_snap *s, double q);

/* JSON: "latency_ms": {...}, "latency_cdf": [[ms, fraction], ...] (at most
 * 200 points, denser in the tail). No leading or trailing comma. */
void bench_hist_json(FILE *f, const bench_hist_snap *s);

#endif
