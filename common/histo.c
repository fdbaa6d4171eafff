#include "common/histo.h"

#include <time.h>

const double cf_histo_le[CF_HISTO_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                              0.25,   0.5,   1,      2.5,   5,    10,    30};

static const uint64_t le_ns[CF_HISTO_BUCKETS] = {
    500000ull,     1000000ull,    2500000ull,    5000000ull,     10000000ull,
    25000000ull,   50000000ull,   100000000ull,  250000000ull,   500000000ull,
    1000000000ull, 2500000000ull, 5000000000ull, 10000000000ull, 30000000000ull};

uint64_t cf_histo_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void cf_histo_observe(cf_histo *h, uint64_t ns)
{
    unsigned i = 0;
    while (i < CF_HISTO_BUCKETS && ns > le_ns[i])
        i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

/* count is the sum of the buckets read here, so +Inf is never below the
 * last bound's cumulative count in one snapshot. */
void cf_histo_read(const cf_histo *h, cf_histo_snap *out)
{
    uint64_t run = 0;
    for (unsigned i = 0; i < CF_HISTO_BUCKETS; i++) {
        run += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        out->cum[i] = run;
    }
    run += atomic_load_explicit(&h->bucket[CF_HISTO_BUCKETS], memory_order_relaxed);
    out->count = run;
    out->sum_s = (double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) / 1e9;
}
