#include "bench/bench_hist.h"

#include <string.h>

#define HALF (1u << (BH_SUB_BITS - 1))

static unsigned bucket_of(uint64_t v)
{
    if (v < (1u << BH_SUB_BITS))
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned b = msb - (BH_SUB_BITS - 1);
    if (b > BH_MAX_SHIFT)
        return BH_BUCKETS - 1;
    return b * HALF + (unsigned)(v >> b);
}

/* Highest value that lands in bucket i. */
static uint64_t bucket_top(unsigned i)
{
    if (i < (1u << BH_SUB_BITS))
        return i;
    unsigned b = i / HALF - 1;
    uint64_t sub = i - b * HALF;
    return ((sub + 1) << b) - 1;
}

void bench_hist_reset(bench_hist *h)
{
    for (unsigned i = 0; i < BH_BUCKETS; i++)
        atomic_store_explicit(&h->counts[i], 0, memory_order_relaxed);
    atomic_store_explicit(&h->n, 0, memory_order_relaxed);
    atomic_store_explicit(&h->max_ns, 0, memory_order_relaxed);
    atomic_store_explicit(&h->sum_ns, 0, memory_order_relaxed);
}

static void bump(_Atomic uint64_t *c, uint64_t by)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + by,
                          memory_order_relaxed);
}

void bench_hist_record(bench_hist *h, uint64_t ns)
{
    bump(&h->counts[bucket_of(ns)], 1);
    bump(&h->sum_ns, ns);
    if (ns > atomic_load_explicit(&h->max_ns, memory_order_relaxed))
        atomic_store_explicit(&h->max_ns, ns, memory_order_relaxed);
    /* n last: a reader that sees n sees at least as many counts (nearly) */
    atomic_store_explicit(&h->n, atomic_load_explicit(&h->n, memory_order_relaxed) + 1,
                          memory_order_release);
}

void bench_hist_snap_of(const bench_hist *h, bench_hist_snap *out)
{
    out->n = atomic_load_explicit(&h->n, memory_order_acquire);
    for (unsigned i = 0; i < BH_BUCKETS; i++)
        out->counts[i] = atomic_load_explicit(&h->counts[i], memory_order_relaxed);
    out->max_ns = atomic_load_explicit(&h->max_ns, memory_order_relaxed);
    out->sum_ns = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
    /* n from the counts themselves, so quantiles are consistent */
    uint64_t n = 0;
    for (unsigned i = 0; i < BH_BUCKETS; i++)
        n += out->counts[i];
    out->n = n;
}

void bench_hist_snap_add(bench_hist_snap *acc, const bench_hist_snap *s)
{
    for (unsigned i = 0; i < BH_BUCKETS; i++)
        acc->counts[i] += s->counts[i];
    acc->n += s->n;
    acc->sum_ns += s->sum_ns;
    if (s->max_ns > acc->max_ns)
        acc->max_ns = s->max_ns;
}

void bench_hist_snap_sub(bench_hist_snap *acc, const bench_hist_snap *s)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < BH_BUCKETS; i++) {
        acc->counts[i] = acc->counts[i] >= s->counts[i] ? acc->counts[i] - s->counts[i] : 0;
        n += acc->counts[i];
    }
    acc->n = n;
    acc->sum_ns = acc->sum_ns >= s->sum_ns ? acc->sum_ns - s->sum_ns : 0;
    /* the interval's max is not recoverable: its highest non-empty bucket */
    acc->max_ns = 0;
    for (unsigned i = BH_BUCKETS; i-- > 0;)
        if (acc->counts[i]) {
            acc->max_ns = bucket_top(i);
            break;
        }
}

uint64_t bench_hist_quantile(const bench_hist_snap *s, double q)
{
    if (s->n == 0)
        return 0;
    if (q >= 1.0)
        return s->max_ns;
    uint64_t rank = (uint64_t)(q * (double)s->n);
    if (rank >= s->n)
        rank = s->n - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BH_BUCKETS; i++) {
        seen += s->counts[i];
        if (seen > rank) {
            uint64_t v = bucket_top(i);
            return v < s->max_ns ? v : s->max_ns;
        }
    }
    return s->max_ns;
}

void bench_hist_json(FILE *f, const bench_hist_snap *s)
{
    fprintf(f,
            "\"latency_ms\": {\"p50\": %.4f, \"p90\": %.4f, \"p99\": %.4f, \"p99_9\": %.4f, "
            "\"max\": %.4f, \"mean\": %.4f, \"samples\": %llu}, \"latency_cdf\": [",
            bench_hist_quantile(s, 0.50) / 1e6, bench_hist_quantile(s, 0.90) / 1e6,
            bench_hist_quantile(s, 0.99) / 1e6, bench_hist_quantile(s, 0.999) / 1e6,
            s->max_ns / 1e6, s->n ? (double)s->sum_ns / (double)s->n / 1e6 : 0.0,
            (unsigned long long)s->n);
    /* A point when the fraction grew by 1 %, or the tail left above it
     * shrank by 30 %: ≤ 100 + ~50 points even for 10^7 samples. */
    uint64_t seen = 0;
    double last = 0;
    int pts = 0;
    unsigned top = 0;
    for (unsigned i = 0; i < BH_BUCKETS; i++)
        if (s->counts[i])
            top = i;
    for (unsigned i = 0; s->n && i <= top && pts < 199; i++) {
        if (!s->counts[i])
            continue;
        seen += s->counts[i];
        double fr = (double)seen / (double)s->n;
        if (pts == 0 || fr - last >= 0.01 || (1.0 - fr) < (1.0 - last) * 0.7 || i == top) {
            uint64_t v = bucket_top(i);
            if (v > s->max_ns)
                v = s->max_ns;
            fprintf(f, "%s[%.4f, %.6f]", pts ? ", " : "", v / 1e6, fr);
            pts++;
            last = fr;
        }
    }
    if (s->n && last < 1.0)
        fprintf(f, "%s[%.4f, 1.0]", pts ? ", " : "", s->max_ns / 1e6);
    fputc(']', f);
}
