/* sched_slice.h — ask the scheduler for a short slice for the calling
 * thread (Linux >= 6.12: the fair class takes sched_runtime as the
 * thread's slice request, and a thread with a shorter slice preempts one
 * with a longer slice when it wakes).
 *
 * For threads that wake for microseconds of work while others keep every
 * core busy: certforge's signing threads, so that an HSM's answer is taken
 * at once rather than after a busy pipeline worker's slice. (Tried on the
 * server's ring thread and the recorder too: no change in p99 at 80 % load,
 * so not used there.) Policy and nice stay as they are; a kernel without
 * the feature ignores the request. docs/hsm.md has the figures. */
#ifndef CF_SCHED_SLICE_H
#define CF_SCHED_SLICE_H

#include <sched.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

/* sched_setattr(2)'s argument, VER0 layout (not in glibc's headers). */
struct cf_sched_attr {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
};

/* 0.1 ms, the shortest slice the kernel takes. Returns 0 when set. */
static inline int cf_sched_short_slice(void)
{
    struct cf_sched_attr a = {0};
    if (syscall(SYS_sched_getattr, 0, &a, (unsigned)sizeof(a), 0u) != 0)
        return -1;
    if (a.policy != SCHED_OTHER && a.policy != SCHED_BATCH)
        return -1;
    a.size = sizeof(a);
    a.flags = 0;
    a.runtime = 100000; /* ns */
    return syscall(SYS_sched_setattr, 0, &a, 0u) == 0 ? 0 : -1;
}

#endif
