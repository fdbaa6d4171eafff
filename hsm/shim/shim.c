/*
 * shim.c — libcertforge-shim.so: a PKCS#11 v2.40 module that forwards every
 * call to a real module (SoftHSM by default) and injects latency and faults,
 * so that certforge's benchmark and fault tests can stand in for a network
 * HSM and for a failing one. It implements no cryptography.
 *
 * Configuration, read from the environment at C_Initialize (numbers are
 * decimal or 0x-prefixed hex; unset or 0 means "off"):
 *
 *   CF_SHIM_MODULE           real module to forward to, dlopen'ed with
 *                            RTLD_NOW|RTLD_LOCAL (default
 *                            /usr/lib/softhsm/libsofthsm2.so)
 *   CF_SHIM_SIGN_LATENCY_US  every C_Sign that produces a signature returns
 *   CF_SHIM_SIGN_JITTER_US   no sooner than this long after its C_SignInit
 *                            was called, plus a uniform random 0..JITTER
 *                            (the module's own work inside it, as a network
 *                            HSM's answer comes one round trip after the
 *                            request);
 *                            the wait holds no lock, so S sessions overlap
 *                            and give about S/latency signatures per second
 *   CF_SHIM_MAX_SESSIONS     reported as ulMaxSessionCount and enforced per
 *                            slot: C_OpenSession beyond it gives
 *                            CKR_SESSION_COUNT
 *   CF_SHIM_FAIL_EVERY_N     every Nth C_Sign (counted across all threads)
 *   CF_SHIM_FAIL_RV          fails with FAIL_RV (default CKR_DEVICE_ERROR,
 *                            0x30); the real signature is made into a scratch
 *                            buffer so the real operation ends as it must
 *   CF_SHIM_CORRUPT_EVERY_N  every Nth successful C_Sign has one bit of its
 *                            signature flipped
 *   CF_SHIM_TOKEN_FLAGS_SET  bits ORed into CK_TOKEN_INFO.flags (e.g. 0x40000
 *                            CKF_USER_PIN_LOCKED, 0x20000 ..._FINAL_TRY)
 *   CF_SHIM_INVALIDATE_AT_MS once, this long after C_Initialize, every open
 *                            session becomes invalid (real session closed;
 *                            calls on it give CKR_SESSION_HANDLE_INVALID)
 *   CF_SHIM_REMOVE_AT_MS     once, this long after C_Initialize, the token is
 *   CF_SHIM_REMOVE_FOR_MS    removed for REMOVE_FOR ms: every real session is
 *                            closed with C_CloseAllSessions (which also ends
 *                            the login); meanwhile C_GetSlotList(TRUE) omits
 *                            the slots, C_GetTokenInfo/C_OpenSession give
 *                            CKR_TOKEN_NOT_PRESENT and calls on sessions give
 *                            CKR_DEVICE_REMOVED; afterwards old sessions give
 *                            CKR_SESSION_HANDLE_INVALID and the user must log
 *                            in again. Removal applies to every slot.
 *   CF_SHIM_CONTROL          a control file of KEY=VALUE lines with the keys
 *                            above minus the prefix (MODULE and CONTROL
 *                            excepted), plus INVALIDATE_NOW=1 and
 *                            REMOVE_NOW_MS=N (remove now for N ms). It is
 *                            re-read when its mtime/ctime/size/inode change,
 *                            checked at most every 20 ms by whichever call
 *                            comes first. RESET=1 returns every setting to
 *                            its environment value. The actions (*_NOW,
 *                            RESET) fire once per change, never from the
 *                            content found at C_Initialize. '#' starts a
 *                            comment line.
 *
 * cf_shim_control(key, value) (shim.h) sets the same keys from inside the
 * process; values set that way outlive C_Finalize (C_Initialize applies the
 * environment, then the control file, then them) until RESET.
 * cf_shim_counters() (shim.h) reads what C_Sign was asked to do: signature
 * calls, latency waits, how many were in the module at once (reset by
 * C_Initialize and the RESET_COUNTERS=1 action). FAIL_EVERY_N
 * and CORRUPT_EVERY_N restart their count when set. Timed events run at the
 * first call after they fall due, before that call does anything else.
 * Closing every session also ends the login (PKCS#11 v2.40 5.6,
 * C_CloseSession), so after INVALIDATE as after REMOVE a client must log in
 * again.
 *
 * Sessions: the shim hands out its own handles (table index plus generation)
 * so that a real handle the module reuses after an injected close can never
 * revive an invalidated one. Every call on a session takes one short-locked
 * table lookup and counts itself "in flight" while forwarded. Invalidation,
 * removal and C_CloseAllSessions are exclusive: they wait until no call is in
 * flight before closing real sessions, because closing a session under a
 * running call is a use-after-free in some modules (SoftHSM among them). No
 * lock is held across a forwarded call or the latency sleep.
 *
 * Not injected: multi-part signing (C_SignUpdate/C_SignFinal) and every
 * other operation are plain pass-through after the session check.
 * Notification callbacks given to C_OpenSession are not forwarded.
 */
#include "hsm/shim/shim.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#define SHIM_EXPORT __attribute__((visibility("default")))

#ifdef CF_SOFTHSM_MODULE
#define SHIM_DEFAULT_MODULE CF_SOFTHSM_MODULE
#else
#define SHIM_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#endif

#define NS_PER_MS 1000000ull
#define CTL_CHECK_NS (20 * NS_PER_MS)
/* Upper bounds for values that are slept on or scheduled: a typo must not
 * hang a test run for days. */
#define MAX_LATENCY_US 60000000ul
#define MAX_AT_MS 86400000ul
#define CTL_MAX_LINES 256

/* Shim session handle: generation above IDX_BITS, table index + 1 below. */
#define IDX_BITS 24
#define IDX_MASK ((CK_ULONG)((1ul << IDX_BITS) - 1))
#define MAX_ENTS ((size_t)IDX_MASK - 1)

enum ent_state { ENT_FREE, ENT_OPENING, ENT_LIVE };

struct ent {
    CK_SESSION_HANDLE real;
    CK_SLOT_ID slot;
    CK_ULONG gen;
    enum ent_state state;
    uint64_t sign_init_ns; /* when the pending C_SignInit was called (0: none) */
};

/* Fields marked (mu) are guarded by g.mu. Lock order: init_mu, ctl_mu, mu;
 * vals_mu is a leaf. */
static struct {
    pthread_mutex_t init_mu; /* C_Initialize / C_Finalize */
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* exclusive or inflight changed */
    pthread_mutex_t ctl_mu; /* control file reader; trylock only on the hot path */

    struct ent *ents;  /* (mu) */
    size_t n_ents;     /* (mu) entries in use or ever used */
    size_t cap;        /* (mu) */
    unsigned inflight; /* (mu) forwarded calls on sessions, and opens */
    int exclusive;     /* (mu) an invalidation/removal/close-all is running */

    uint64_t pending_invalidate_ns;  /* (mu) 0: none */
    uint64_t pending_remove_ns;      /* (mu) 0: none */
    long long pending_remove_for_ms; /* (mu) -1: use cfg_remove_for_ms */

    /* Set in C_Initialize only. */
    int initialized;
    pid_t init_pid;
    void *dl;
    char ctl_path[PATH_MAX];

    /* (ctl_mu) identity of the control file content last read */
    struct stat ctl_st;
    int ctl_seen;
} g = {
    .init_mu = PTHREAD_MUTEX_INITIALIZER,
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .cv = PTHREAD_COND_INITIALIZER,
    .ctl_mu = PTHREAD_MUTEX_INITIALIZER,
    .pending_remove_for_ms = -1,
};

static CK_FUNCTION_LIST *_Atomic g_real;
static _Atomic uint64_t g_init_ns;
static _Atomic uint64_t g_next_event_ns = UINT64_MAX;
static _Atomic uint64_t g_next_ctl_ns;
static _Atomic uint64_t g_removed_until_ns; /* written under mu */

static atomic_ulong n_signs, n_signs_ok;

/* cf_shim_counters (shim.h): tests count what happened instead of timing
 * it. Relaxed atomics: a reader wants a count, not an ordering. The count
 * per thread is the value of a thread-specific key, not a _Thread_local:
 * gcc 12's LeakSanitizer can crash scanning the dynamic TLS of a dlopen'ed
 * module whose thread has exited ("Tracer caught signal 11"). */
static atomic_ulong c_signs, c_waits, c_signing, c_signing_max;
static pthread_key_t c_thread_key;
static pthread_once_t c_thread_once = PTHREAD_ONCE_INIT;

static void thread_key_make(void)
{
    (void)pthread_key_create(&c_thread_key, NULL);
}

static unsigned long thread_signs(void)
{
    pthread_once(&c_thread_once, thread_key_make);
    return (unsigned long)(uintptr_t)pthread_getspecific(c_thread_key);
}

static CK_FUNCTION_LIST shim_list;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- configuration ---------------------------------------------------- */

/* Decimal, or hex with 0x; surrounding blanks allowed, nothing else. */
static int parse_ulong(const char *s, unsigned long *out)
{
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s < '0' || *s > '9')
        return -1;
    int base = (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) ? 16 : 10;
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(s, &end, base);
    if (errno != 0 || end == s)
        return -1;
    while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
        end++;
    if (*end != '\0')
        return -1;
    *out = v;
    return 0;
}

static void update_next_event_locked(void)
{
    uint64_t next = UINT64_MAX;
    if (g.pending_invalidate_ns && g.pending_invalidate_ns < next)
        next = g.pending_invalidate_ns;
    if (g.pending_remove_ns && g.pending_remove_ns < next)
        next = g.pending_remove_ns;
    atomic_store_explicit(&g_next_event_ns, next, memory_order_release);
}

static uint64_t at_ms_to_ns(unsigned long ms)
{
    return ms ? atomic_load(&g_init_ns) + (uint64_t)ms * NS_PER_MS : 0;
}

/* Control keys. Settings are plain values read on the hot path; the keys
 * after them schedule something instead. */
enum {
    K_SIGN_LATENCY_US,
    K_SIGN_JITTER_US,
    K_MAX_SESSIONS,
    K_FAIL_EVERY_N,
    K_FAIL_RV,
    K_CORRUPT_EVERY_N,
    K_TOKEN_FLAGS_SET,
    K_REMOVE_FOR_MS,
    K__SETTINGS,
    K_INVALIDATE_AT_MS = K__SETTINGS,
    K_REMOVE_AT_MS,
    K_INVALIDATE_NOW,
    K_REMOVE_NOW_MS,
    K_RESET,
    K_RESET_COUNTERS,
    K__MAX
};

static const struct shim_key {
    const char *name;
    unsigned long max; /* largest value accepted */
    unsigned long dflt;
    int env; /* also read from CF_SHIM_<name> at C_Initialize */
} keys[K__MAX] = {
    [K_SIGN_LATENCY_US] = {"SIGN_LATENCY_US", MAX_LATENCY_US, 0, 1},
    [K_SIGN_JITTER_US] = {"SIGN_JITTER_US", MAX_LATENCY_US, 0, 1},
    [K_MAX_SESSIONS] = {"MAX_SESSIONS", ULONG_MAX, 0, 1},
    [K_FAIL_EVERY_N] = {"FAIL_EVERY_N", ULONG_MAX, 0, 1},
    [K_FAIL_RV] = {"FAIL_RV", ULONG_MAX, CKR_DEVICE_ERROR, 1},
    [K_CORRUPT_EVERY_N] = {"CORRUPT_EVERY_N", ULONG_MAX, 0, 1},
    [K_TOKEN_FLAGS_SET] = {"TOKEN_FLAGS_SET", ULONG_MAX, 0, 1},
    [K_REMOVE_FOR_MS] = {"REMOVE_FOR_MS", MAX_AT_MS, 0, 1},
    [K_INVALIDATE_AT_MS] = {"INVALIDATE_AT_MS", MAX_AT_MS, 0, 1},
    [K_REMOVE_AT_MS] = {"REMOVE_AT_MS", MAX_AT_MS, 0, 1},
    [K_INVALIDATE_NOW] = {"INVALIDATE_NOW", ULONG_MAX, 0, 0},
    [K_REMOVE_NOW_MS] = {"REMOVE_NOW_MS", MAX_AT_MS, 0, 0},
    [K_RESET] = {"RESET", ULONG_MAX, 0, 0},
    [K_RESET_COUNTERS] = {"RESET_COUNTERS", ULONG_MAX, 0, 0},
};

static atomic_ulong cfg[K__SETTINGS];

/* The environment as read at C_Initialize, and the settings made through
 * cf_shim_control: those outlive C_Finalize, so a test can arm a fault
 * before the code under test (re)initialises the module. vals_mu is a
 * leaf lock. */
static pthread_mutex_t vals_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    unsigned long env[K__MAX];
    unsigned char env_set[K__MAX];
    unsigned long ovr[K__SETTINGS];
    unsigned char ovr_set[K__SETTINGS];
} vals;

static int find_key(const char *name)
{
    for (int k = 0; name && k < K__MAX; k++)
        if (strcmp(name, keys[k].name) == 0)
            return k;
    return -1;
}

static int parse_value(int k, const char *val, unsigned long *v)
{
    if (!val || parse_ulong(val, v) != 0 || *v > keys[k].max)
        return -1;
    if (k == K_FAIL_RV && *v == CKR_OK)
        return -1;
    return 0;
}

/* Counts restart whenever their period is set, so "every Nth" counts from
 * the moment the fault was armed. */
static void set_setting(int k, unsigned long v)
{
    if (k == K_FAIL_EVERY_N)
        atomic_store(&n_signs, 0);
    else if (k == K_CORRUPT_EVERY_N)
        atomic_store(&n_signs_ok, 0);
    atomic_store(&cfg[k], v);
}

static unsigned long setting(int k)
{
    return atomic_load_explicit(&cfg[k], memory_order_relaxed);
}

/* Every setting back to its environment value (or default). `keep_ovr`:
 * then apply the cf_shim_control values on top. */
static void restore_settings(int keep_ovr)
{
    pthread_mutex_lock(&vals_mu);
    for (int k = 0; k < K__SETTINGS; k++) {
        if (!keep_ovr)
            vals.ovr_set[k] = 0;
        set_setting(k, vals.ovr_set[k]   ? vals.ovr[k]
                       : vals.env_set[k] ? vals.env[k]
                                         : keys[k].dflt);
    }
    pthread_mutex_unlock(&vals_mu);
}

/* The counters back to zero; signing_max to what is signing now. */
static void reset_counters(void)
{
    atomic_store_explicit(&c_signs, 0, memory_order_relaxed);
    atomic_store_explicit(&c_waits, 0, memory_order_relaxed);
    atomic_store_explicit(&c_signing_max, atomic_load_explicit(&c_signing, memory_order_relaxed),
                          memory_order_relaxed);
}

SHIM_EXPORT void cf_shim_counters(cf_shim_counts *out)
{
    out->signs = atomic_load_explicit(&c_signs, memory_order_relaxed);
    out->waits = atomic_load_explicit(&c_waits, memory_order_relaxed);
    out->signing = atomic_load_explicit(&c_signing, memory_order_relaxed);
    out->signing_max = atomic_load_explicit(&c_signing_max, memory_order_relaxed);
    out->thread_signs = thread_signs();
}

/* A signature call enters: count it in, raise the high-water mark. */
static void signing_enter(void)
{
    unsigned long now = atomic_fetch_add_explicit(&c_signing, 1, memory_order_relaxed) + 1;
    unsigned long max = atomic_load_explicit(&c_signing_max, memory_order_relaxed);
    while (now > max && !atomic_compare_exchange_weak_explicit(
                            &c_signing_max, &max, now, memory_order_relaxed, memory_order_relaxed))
        ;
}

static void signing_leave(bool waited)
{
    if (waited)
        atomic_fetch_add_explicit(&c_waits, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c_signs, 1, memory_order_relaxed);
    (void)pthread_setspecific(c_thread_key, (void *)(uintptr_t)(thread_signs() + 1));
    atomic_fetch_sub_explicit(&c_signing, 1, memory_order_relaxed);
}

/* Apply one validated key. `actions`: whether INVALIDATE_NOW, REMOVE_NOW_MS,
 * RESET and RESET_COUNTERS act (they do not for the control file found at
 * C_Initialize). */
static void apply(int k, unsigned long v, int actions)
{
    if (k < K__SETTINGS) {
        set_setting(k, v);
        return;
    }
    if (k == K_RESET) {
        if (actions && v)
            restore_settings(0);
        return;
    }
    if (k == K_RESET_COUNTERS) {
        if (actions && v)
            reset_counters();
        return;
    }
    if (!actions && (k == K_INVALIDATE_NOW || k == K_REMOVE_NOW_MS))
        return;
    uint64_t now = mono_ns();
    pthread_mutex_lock(&g.mu);
    if (k == K_INVALIDATE_AT_MS) {
        g.pending_invalidate_ns = at_ms_to_ns(v);
    } else if (k == K_REMOVE_AT_MS) {
        g.pending_remove_ns = at_ms_to_ns(v);
        g.pending_remove_for_ms = -1;
    } else if (k == K_INVALIDATE_NOW) {
        if (v)
            g.pending_invalidate_ns = now;
    } else {
        g.pending_remove_ns = now;
        g.pending_remove_for_ms = (long long)v;
    }
    update_next_event_locked();
    pthread_mutex_unlock(&g.mu);
}

static void ctl_read_locked(int actions);

SHIM_EXPORT int cf_shim_control(const char *key, const char *value)
{
    int k = find_key(key);
    unsigned long v;
    if (k < 0 || parse_value(k, value, &v) != 0)
        return -1;
    if (k < K__SETTINGS) {
        pthread_mutex_lock(&vals_mu);
        vals.ovr[k] = v;
        vals.ovr_set[k] = 1;
        set_setting(k, v);
        pthread_mutex_unlock(&vals_mu);
        return 0;
    }
    apply(k, v, 1);
    if (k == K_RESET && v) { /* and the control file's settings on top */
        pthread_mutex_lock(&g.ctl_mu);
        if (g.ctl_path[0]) {
            g.ctl_seen = 0;
            ctl_read_locked(0);
        }
        pthread_mutex_unlock(&g.ctl_mu);
    }
    return 0;
}

/* Read the control file if it changed. Caller holds ctl_mu. */
static void ctl_read_locked(int actions)
{
    struct stat st;
    if (stat(g.ctl_path, &st) != 0) {
        g.ctl_seen = 0; /* a file created later is read then */
        return;
    }
    if (g.ctl_seen && st.st_ino == g.ctl_st.st_ino && st.st_size == g.ctl_st.st_size &&
        st.st_mtim.tv_sec == g.ctl_st.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == g.ctl_st.st_mtim.tv_nsec &&
        st.st_ctim.tv_sec == g.ctl_st.st_ctim.tv_sec &&
        st.st_ctim.tv_nsec == g.ctl_st.st_ctim.tv_nsec)
        return;
    FILE *f = fopen(g.ctl_path, "r");
    if (!f)
        return;
    g.ctl_st = st;
    g.ctl_seen = 1;
    char line[256];
    for (int n = 1; n <= CTL_MAX_LINES && fgets(line, sizeof(line), f); n++) {
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '#' || *p == '\n' || *p == '\r' || *p == '\0')
            continue;
        char *eq = strchr(p, '=');
        char *k_end = eq;
        while (k_end && k_end > p && (k_end[-1] == ' ' || k_end[-1] == '\t'))
            k_end--;
        if (!eq || k_end == p) {
            fprintf(stderr, "certforge-shim: %s:%d: expected KEY=VALUE\n", g.ctl_path, n);
            continue;
        }
        *k_end = '\0';
        int k = find_key(p);
        unsigned long v;
        if (k < 0)
            fprintf(stderr, "certforge-shim: %s:%d: unknown key %s\n", g.ctl_path, n, p);
        else if (parse_value(k, eq + 1, &v) != 0)
            fprintf(stderr, "certforge-shim: %s:%d: bad value for %s\n", g.ctl_path, n, p);
        else
            apply(k, v, actions);
    }
    fclose(f);
}

/* ---- the session table -------------------------------------------------- */

static CK_SESSION_HANDLE make_handle(size_t idx, CK_ULONG gen)
{
    return (gen << IDX_BITS) | (CK_ULONG)(idx + 1);
}

static void free_ent_locked(struct ent *e)
{
    e->state = ENT_FREE;
    e->real = CK_INVALID_HANDLE;
    e->gen = (e->gen + 1) & (ULONG_MAX >> IDX_BITS);
}

/* Index of a free entry, growing the table if needed; -1 if impossible. */
static long alloc_ent_locked(void)
{
    for (size_t i = 0; i < g.n_ents; i++)
        if (g.ents[i].state == ENT_FREE)
            return (long)i;
    if (g.n_ents == g.cap) {
        size_t ncap = g.cap ? g.cap * 2 : 64;
        if (ncap > MAX_ENTS)
            ncap = MAX_ENTS;
        if (ncap <= g.cap)
            return -1;
        struct ent *n = realloc(g.ents, ncap * sizeof(*n));
        if (!n)
            return -1;
        g.ents = n;
        g.cap = ncap;
    }
    struct ent *e = &g.ents[g.n_ents];
    memset(e, 0, sizeof(*e));
    e->gen = 1;
    return (long)g.n_ents++;
}

static struct ent *lookup_locked(CK_SESSION_HANDLE h)
{
    CK_ULONG idx = h & IDX_MASK;
    if (idx == 0 || idx > g.n_ents)
        return NULL;
    struct ent *e = &g.ents[idx - 1];
    if (e->state != ENT_LIVE || e->gen != (h >> IDX_BITS))
        return NULL;
    return e;
}

static void wait_not_exclusive_locked(void)
{
    while (g.exclusive)
        pthread_cond_wait(&g.cv, &g.mu);
}

/* Become the only one touching real sessions: no other exclusive section,
 * no call in flight. The caller must not itself have a call in flight. */
static void begin_exclusive_locked(void)
{
    wait_not_exclusive_locked();
    g.exclusive = 1;
    while (g.inflight > 0)
        pthread_cond_wait(&g.cv, &g.mu);
}

static void end_exclusive_locked(void)
{
    g.exclusive = 0;
    pthread_cond_broadcast(&g.cv);
}

static void leave_inflight_locked(void)
{
    g.inflight--;
    if (g.inflight == 0 && g.exclusive)
        pthread_cond_broadcast(&g.cv);
}

static int removed(uint64_t now)
{
    return now < atomic_load_explicit(&g_removed_until_ns, memory_order_acquire);
}

/* ---- timed events ----------------------------------------------------------- */

/* Close every live session. Drops mu while closing real sessions; the
 * exclusive flag keeps everyone else off the table meanwhile. */
static void invalidate_all_locked(CK_FUNCTION_LIST *f)
{
    begin_exclusive_locked();
    for (size_t i = 0; i < g.n_ents; i++) {
        if (g.ents[i].state != ENT_LIVE)
            continue;
        CK_SESSION_HANDLE real = g.ents[i].real;
        free_ent_locked(&g.ents[i]);
        pthread_mutex_unlock(&g.mu);
        (void)f->C_CloseSession(real);
        pthread_mutex_lock(&g.mu);
    }
    end_exclusive_locked();
}

static void remove_token_locked(CK_FUNCTION_LIST *f, uint64_t at, unsigned long for_ms)
{
    atomic_store_explicit(&g_removed_until_ns, at + (uint64_t)for_ms * NS_PER_MS,
                          memory_order_release);
    begin_exclusive_locked();
    for (size_t i = 0; i < g.n_ents; i++)
        if (g.ents[i].state != ENT_FREE)
            free_ent_locked(&g.ents[i]);
    pthread_mutex_unlock(&g.mu);
    CK_ULONG n = 0;
    CK_SLOT_ID *slots = NULL;
    if (f->C_GetSlotList(CK_FALSE, NULL, &n) == CKR_OK && n > 0 &&
        (slots = calloc(n, sizeof(*slots))) != NULL &&
        f->C_GetSlotList(CK_FALSE, slots, &n) == CKR_OK) {
        for (CK_ULONG i = 0; i < n; i++)
            (void)f->C_CloseAllSessions(slots[i]);
    }
    free(slots);
    pthread_mutex_lock(&g.mu);
    end_exclusive_locked();
}

static void run_events(CK_FUNCTION_LIST *f, uint64_t now)
{
    pthread_mutex_lock(&g.mu);
    for (;;) {
        if (g.pending_invalidate_ns && g.pending_invalidate_ns <= now) {
            g.pending_invalidate_ns = 0;
            update_next_event_locked();
            invalidate_all_locked(f);
        } else if (g.pending_remove_ns && g.pending_remove_ns <= now) {
            uint64_t at = g.pending_remove_ns;
            unsigned long for_ms = g.pending_remove_for_ms >= 0
                                       ? (unsigned long)g.pending_remove_for_ms
                                       : setting(K_REMOVE_FOR_MS);
            g.pending_remove_ns = 0;
            g.pending_remove_for_ms = -1;
            update_next_event_locked();
            remove_token_locked(f, at, for_ms);
        } else {
            break;
        }
    }
    update_next_event_locked();
    pthread_mutex_unlock(&g.mu);
}

/* Every entry point calls this first, holding nothing: it may read the
 * control file and run a due invalidation or removal, which waits for the
 * calls in flight. Returns the current monotonic time. */
static uint64_t tick(CK_FUNCTION_LIST *f)
{
    uint64_t now = mono_ns();
    if (g.ctl_path[0] && now >= atomic_load_explicit(&g_next_ctl_ns, memory_order_relaxed) &&
        pthread_mutex_trylock(&g.ctl_mu) == 0) {
        atomic_store_explicit(&g_next_ctl_ns, now + CTL_CHECK_NS, memory_order_relaxed);
        ctl_read_locked(1);
        pthread_mutex_unlock(&g.ctl_mu);
        now = mono_ns(); /* a *_NOW action just read is due in this very call */
    }
    if (now >= atomic_load_explicit(&g_next_event_ns, memory_order_acquire))
        run_events(f, now);
    return now;
}

/* ---- session check -------------------------------------------------------- */

/* Validate a shim session handle and mark a call in flight; on CKR_OK the
 * caller forwards with *real and then calls release(). */
/* Forward a call on session h: the real session, counted in flight until
 * release(). *sign_init (when not NULL) trades the session's C_SignInit
 * time for `set` (the signature latency counts from C_SignInit). */
static CK_RV acquire_ts(CK_SESSION_HANDLE h, CK_SESSION_HANDLE *real, CK_FUNCTION_LIST **fp,
                        uint64_t *sign_init, uint64_t set)
{
    CK_FUNCTION_LIST *f = atomic_load_explicit(&g_real, memory_order_acquire);
    if (!f)
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    uint64_t now = tick(f);
    CK_RV rv = CKR_SESSION_HANDLE_INVALID;
    pthread_mutex_lock(&g.mu);
    wait_not_exclusive_locked();
    if (removed(now)) {
        rv = CKR_DEVICE_REMOVED;
    } else {
        struct ent *e = lookup_locked(h);
        if (e) {
            *real = e->real;
            g.inflight++;
            rv = CKR_OK;
            if (sign_init) {
                uint64_t was = e->sign_init_ns;
                e->sign_init_ns = set;
                *sign_init = was;
            }
        }
    }
    pthread_mutex_unlock(&g.mu);
    *fp = f;
    return rv;
}

static CK_RV acquire(CK_SESSION_HANDLE h, CK_SESSION_HANDLE *real, CK_FUNCTION_LIST **fp)
{
    return acquire_ts(h, real, fp, NULL, 0);
}

/* Put back a session's signature start time (an operation that is still
 * active after a failed call keeps its own). */
static void restore_sign_init(CK_SESSION_HANDLE h, uint64_t t)
{
    pthread_mutex_lock(&g.mu);
    struct ent *e = lookup_locked(h);
    if (e)
        e->sign_init_ns = t;
    pthread_mutex_unlock(&g.mu);
}

static void release(void)
{
    pthread_mutex_lock(&g.mu);
    leave_inflight_locked();
    pthread_mutex_unlock(&g.mu);
}

/* ---- C_Sign ----------------------------------------------------------------- */

static uint64_t rand64(void)
{
    static _Thread_local uint64_t s;
    if (s == 0)
        s = mono_ns() ^ (uint64_t)(uintptr_t)&s;
    /* splitmix64 */
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* When a signature whose operation began at t0 may be returned (0: at
 * once). */
static uint64_t sign_deadline(uint64_t t0)
{
    uint64_t us = setting(K_SIGN_LATENCY_US);
    uint64_t jit = setting(K_SIGN_JITTER_US);
    if (jit)
        us += rand64() % (jit + 1);
    return us ? t0 + us * 1000u : 0;
}

/* Precise: a network HSM's answer wakes its thread when it arrives, with
 * no timer slack (50 us by default, 5 % of a 1 ms latency), so the wait
 * runs with the least slack and the caller's is put back after. */
static void sleep_until(uint64_t deadline_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(deadline_ns / 1000000000u),
                          .tv_nsec = (long)(deadline_ns % 1000000000u)};
    int slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    if (slack > 1)
        (void)prctl(PR_SET_TIMERSLACK, 1ul, 0, 0, 0);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
    if (slack > 1)
        (void)prctl(PR_SET_TIMERSLACK, (unsigned long)slack, 0, 0, 0);
}

/* The injected failure still ends the real operation, as a failed C_Sign
 * must (PKCS#11 v2.40 5.12): sign into a scratch buffer and drop it. */
static void sign_and_discard(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE rh, CK_BYTE_PTR data,
                             CK_ULONG len)
{
    CK_BYTE small[1024];
    CK_BYTE *buf = small;
    CK_ULONG need = 0;
    if (f->C_Sign(rh, data, len, NULL, &need) != CKR_OK)
        return;
    if (need > sizeof(small) && !(buf = malloc(need)))
        buf = small, need = sizeof(small); /* ends the operation with an error */
    (void)f->C_Sign(rh, data, len, buf, &need);
    if (buf != small)
        free(buf);
}

static CK_RV shim_Sign(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                       CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
    CK_SESSION_HANDLE rh;
    CK_FUNCTION_LIST *f;
    uint64_t deadline = 0, t0 = 0, now = mono_ns();
    /* A length query keeps the operation (and its start) for the real call. */
    CK_RV rv = pSignature ? acquire_ts(hSession, &rh, &f, &t0, 0) : acquire(hSession, &rh, &f);
    if (rv != CKR_OK)
        return rv;
    if (!pSignature) { /* length query: no signature made, nothing injected */
        rv = f->C_Sign(rh, pData, ulDataLen, NULL, pulSignatureLen);
        release();
        return rv;
    }
    signing_enter();
    deadline = sign_deadline(t0 ? t0 : now);
    unsigned long fail_n = setting(K_FAIL_EVERY_N);
    if (fail_n && (atomic_fetch_add(&n_signs, 1) + 1) % fail_n == 0) {
        sign_and_discard(f, rh, pData, ulDataLen);
        rv = setting(K_FAIL_RV);
        goto out;
    }
    rv = f->C_Sign(rh, pData, ulDataLen, pSignature, pulSignatureLen);
    if (rv == CKR_BUFFER_TOO_SMALL) {
        /* The operation stays active (PKCS#11 v2.40 5.2): the retry is
         * the same signature, timed from the same C_SignInit. */
        restore_sign_init(hSession, t0);
        deadline = 0;
    }
    unsigned long corrupt_n = setting(K_CORRUPT_EVERY_N);
    if (rv == CKR_OK && corrupt_n && *pulSignatureLen > 0 &&
        (atomic_fetch_add(&n_signs_ok, 1) + 1) % corrupt_n == 0)
        pSignature[*pulSignatureLen / 2] ^= 0x01;
out:
    release();
    bool waited = deadline && deadline > mono_ns();
    if (waited) /* not in flight meanwhile: an invalidation need not wait */
        sleep_until(deadline);
    signing_leave(waited);
    return rv;
}

/* ---- sessions ---------------------------------------------------------------- */

static CK_RV shim_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication,
                              CK_NOTIFY Notify, CK_SESSION_HANDLE_PTR phSession)
{
    CK_FUNCTION_LIST *f = atomic_load_explicit(&g_real, memory_order_acquire);
    if (!f)
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!phSession)
        return CKR_ARGUMENTS_BAD;
    uint64_t now = tick(f);
    pthread_mutex_lock(&g.mu);
    wait_not_exclusive_locked();
    if (removed(now)) {
        pthread_mutex_unlock(&g.mu);
        return CKR_TOKEN_NOT_PRESENT;
    }
    unsigned long max = setting(K_MAX_SESSIONS);
    if (max) {
        unsigned long n = 0;
        for (size_t i = 0; i < g.n_ents; i++)
            n += g.ents[i].state != ENT_FREE && g.ents[i].slot == slotID;
        if (n >= max) {
            pthread_mutex_unlock(&g.mu);
            return CKR_SESSION_COUNT;
        }
    }
    long idx = alloc_ent_locked();
    if (idx < 0) {
        pthread_mutex_unlock(&g.mu);
        return CKR_HOST_MEMORY;
    }
    g.ents[idx].state = ENT_OPENING;
    g.ents[idx].slot = slotID;
    g.inflight++;
    pthread_mutex_unlock(&g.mu);

    CK_SESSION_HANDLE real = CK_INVALID_HANDLE;
    CK_RV rv = f->C_OpenSession(slotID, flags, NULL, NULL, &real);

    pthread_mutex_lock(&g.mu);
    struct ent *e = &g.ents[idx]; /* the table may have moved */
    if (rv == CKR_OK) {
        e->real = real;
        e->state = ENT_LIVE;
        e->sign_init_ns = 0;
        *phSession = make_handle((size_t)idx, e->gen);
    } else {
        free_ent_locked(e);
    }
    leave_inflight_locked();
    pthread_mutex_unlock(&g.mu);
    return rv;
}

static CK_RV shim_CloseSession(CK_SESSION_HANDLE hSession)
{
    CK_SESSION_HANDLE rh;
    CK_FUNCTION_LIST *f;
    CK_RV rv = acquire(hSession, &rh, &f);
    if (rv != CKR_OK)
        return rv;
    pthread_mutex_lock(&g.mu);
    struct ent *e = lookup_locked(hSession);
    if (e)
        free_ent_locked(e);
    pthread_mutex_unlock(&g.mu);
    rv = e ? f->C_CloseSession(rh) : CKR_SESSION_HANDLE_INVALID;
    release();
    return rv;
}

static CK_RV shim_CloseAllSessions(CK_SLOT_ID slotID)
{
    CK_FUNCTION_LIST *f = atomic_load_explicit(&g_real, memory_order_acquire);
    if (!f)
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (removed(tick(f)))
        return CKR_TOKEN_NOT_PRESENT;
    pthread_mutex_lock(&g.mu);
    begin_exclusive_locked();
    for (size_t i = 0; i < g.n_ents; i++)
        if (g.ents[i].state == ENT_LIVE && g.ents[i].slot == slotID)
            free_ent_locked(&g.ents[i]);
    pthread_mutex_unlock(&g.mu);
    CK_RV rv = f->C_CloseAllSessions(slotID);
    pthread_mutex_lock(&g.mu);
    end_exclusive_locked();
    pthread_mutex_unlock(&g.mu);
    return rv;
}

/* ---- slots and tokens ---------------------------------------------------- */

static CK_FUNCTION_LIST *real_ticked(uint64_t *now)
{
    CK_FUNCTION_LIST *f = atomic_load_explicit(&g_real, memory_order_acquire);
    if (f)
        *now = tick(f);
    return f;
}

static CK_RV shim_GetInfo(CK_INFO_PTR pInfo)
{
    CK_FUNCTION_LIST *f = atomic_load_explicit(&g_real, memory_order_acquire);
    return f ? f->C_GetInfo(pInfo) : CKR_CRYPTOKI_NOT_INITIALIZED;
}

static CK_RV shim_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList)
{
    if (!ppFunctionList)
        return CKR_ARGUMENTS_BAD;
    *ppFunctionList = &shim_list;
    return CKR_OK;
}

static CK_RV shim_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList,
                              CK_ULONG_PTR pulCount)
{
    uint64_t now;
    CK_FUNCTION_LIST *f = real_ticked(&now);
    if (!f)
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (tokenPresent && removed(now)) {
        if (!pulCount)
            return CKR_ARGUMENTS_BAD;
        *pulCount = 0;
        return CKR_OK;
    }
    return f->C_GetSlotList(tokenPresent, pSlotList, pulCount);
}

static CK_RV shim_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo)
{
    uint64_t now;
    CK_FUNCTION_LIST *f = real_ticked(&now);
    if (!f)
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    CK_RV rv = f->C_GetSlotInfo(slotID, pInfo);
    if (rv == CKR_OK && removed(now))
        pInfo->flags &= ~(CK_FLAGS)CKF_TOKEN_PRESENT;
    return rv;
}

static CK_RV shim_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo)
{
    uint64_t now;
    CK_FUNCTION_LIST *f = real_ticked(&now);
    if (!f)
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (removed(now))
        return CKR_TOKEN_NOT_PRESENT;
    CK_RV rv = f->C_GetTokenInfo(slotID, pInfo);
    if (rv == CKR_OK) {
        unsigned long max = setting(K_MAX_SESSIONS);
        pInfo->flags |= setting(K_TOKEN_FLAGS_SET);
        if (max)
            pInfo->ulMaxSessionCount = max;
    }
    return rv;
}

static CK_RV shim_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR pSlot, CK_VOID_PTR pReserved)
{
    uint64_t now;
    CK_FUNCTION_LIST *f = real_ticked(&now);
    return f ? f->C_WaitForSlotEvent(flags, pSlot, pReserved) : CKR_CRYPTOKI_NOT_INITIALIZED;
}

static CK_RV shim_GetMechanismList(CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList,
                                   CK_ULONG_PTR pulCount)
{
    uint64_t now;
    CK_FUNCTION_LIST *f = real_ticked(&now);
    if (!f)
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    return removed(now) ? CKR_TOKEN_NOT_PRESENT
                        : f->C_GetMechanismList(slotID, pMechanismList, pulCount);
}

static CK_RV shim_GetMechanismInfo(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type,
                                   CK_MECHANISM_INFO_PTR pInfo)
{
    uint64_t now;
    CK_FUNCTION_LIST *f = real_ticked(&now);
    if (!f)
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    return removed(now) ? CKR_TOKEN_NOT_PRESENT : f->C_GetMechanismInfo(slotID, type, pInfo);
}

static CK_RV shim_InitToken(CK_SLOT_ID slotID, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen,
                            CK_UTF8CHAR_PTR pLabel)
{
    uint64_t now;
    CK_FUNCTION_LIST *f = real_ticked(&now);
    if (!f)
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    return removed(now) ? CKR_TOKEN_NOT_PRESENT : f->C_InitToken(slotID, pPin, ulPinLen, pLabel);
}

/* ---- plain session calls ------------------------------------------------------ */

/*
 * SESSION_FWD(name, (params), (args)) defines shim_<name>: check the session,
 * forward C_<name> with the real handle `rh` in `args`, end the in-flight
 * mark. Used for every call that takes a session and needs no injection;
 * the control flow is exactly acquire/forward/release.
 */
#define SESSION_FWD(name, params, args)                                                            \
    static CK_RV shim_##name params                                                                \
    {                                                                                              \
        CK_SESSION_HANDLE rh;                                                                      \
        CK_FUNCTION_LIST *f;                                                                       \
        CK_RV rv = acquire(hSession, &rh, &f);                                                     \
        if (rv == CKR_OK) {                                                                        \
            rv = f->C_##name args;                                                                 \
            release();                                                                             \
        }                                                                                          \
        return rv;                                                                                 \
    }

typedef CK_SESSION_HANDLE SH;
typedef CK_OBJECT_HANDLE OH;

SESSION_FWD(InitPIN, (SH hSession, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen), (rh, pPin, ulPinLen))
SESSION_FWD(SetPIN,
            (SH hSession, CK_UTF8CHAR_PTR pOldPin, CK_ULONG ulOldLen, CK_UTF8CHAR_PTR pNewPin,
             CK_ULONG ulNewLen),
            (rh, pOldPin, ulOldLen, pNewPin, ulNewLen))
SESSION_FWD(GetSessionInfo, (SH hSession, CK_SESSION_INFO_PTR pInfo), (rh, pInfo))
SESSION_FWD(GetOperationState, (SH hSession, CK_BYTE_PTR pState, CK_ULONG_PTR pulStateLen),
            (rh, pState, pulStateLen))
SESSION_FWD(SetOperationState,
            (SH hSession, CK_BYTE_PTR pState, CK_ULONG ulStateLen, OH hEncryptionKey,
             OH hAuthenticationKey),
            (rh, pState, ulStateLen, hEncryptionKey, hAuthenticationKey))
SESSION_FWD(Login, (SH hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen),
            (rh, userType, pPin, ulPinLen))
SESSION_FWD(Logout, (SH hSession), (rh))
SESSION_FWD(CreateObject,
            (SH hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount,
             CK_OBJECT_HANDLE_PTR phObject),
            (rh, pTemplate, ulCount, phObject))
SESSION_FWD(CopyObject,
            (SH hSession, OH hObject, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount,
             CK_OBJECT_HANDLE_PTR phNewObject),
            (rh, hObject, pTemplate, ulCount, phNewObject))
SESSION_FWD(DestroyObject, (SH hSession, OH hObject), (rh, hObject))
SESSION_FWD(GetObjectSize, (SH hSession, OH hObject, CK_ULONG_PTR pulSize), (rh, hObject, pulSize))
SESSION_FWD(GetAttributeValue,
            (SH hSession, OH hObject, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount),
            (rh, hObject, pTemplate, ulCount))
SESSION_FWD(SetAttributeValue,
            (SH hSession, OH hObject, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount),
            (rh, hObject, pTemplate, ulCount))
SESSION_FWD(FindObjectsInit, (SH hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount),
            (rh, pTemplate, ulCount))
SESSION_FWD(FindObjects,
            (SH hSession, CK_OBJECT_HANDLE_PTR phObject, CK_ULONG ulMaxObjectCount,
             CK_ULONG_PTR pulObjectCount),
            (rh, phObject, ulMaxObjectCount, pulObjectCount))
SESSION_FWD(FindObjectsFinal, (SH hSession), (rh))
SESSION_FWD(EncryptInit, (SH hSession, CK_MECHANISM_PTR pMechanism, OH hKey),
            (rh, pMechanism, hKey))
SESSION_FWD(Encrypt,
            (SH hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pEncryptedData,
             CK_ULONG_PTR pulEncryptedDataLen),
            (rh, pData, ulDataLen, pEncryptedData, pulEncryptedDataLen))
SESSION_FWD(EncryptUpdate,
            (SH hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen, CK_BYTE_PTR pEncryptedPart,
             CK_ULONG_PTR pulEncryptedPartLen),
            (rh, pPart, ulPartLen, pEncryptedPart, pulEncryptedPartLen))
SESSION_FWD(EncryptFinal, (SH hSession, CK_BYTE_PTR pLastPart, CK_ULONG_PTR pulLastPartLen),
            (rh, pLastPart, pulLastPartLen))
SESSION_FWD(DecryptInit, (SH hSession, CK_MECHANISM_PTR pMechanism, OH hKey),
            (rh, pMechanism, hKey))
SESSION_FWD(Decrypt,
            (SH hSession, CK_BYTE_PTR pEncryptedData, CK_ULONG ulEncryptedDataLen,
             CK_BYTE_PTR pData, CK_ULONG_PTR pulDataLen),
            (rh, pEncryptedData, ulEncryptedDataLen, pData, pulDataLen))
SESSION_FWD(DecryptUpdate,
            (SH hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen,
             CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen),
            (rh, pEncryptedPart, ulEncryptedPartLen, pPart, pulPartLen))
SESSION_FWD(DecryptFinal, (SH hSession, CK_BYTE_PTR pLastPart, CK_ULONG_PTR pulLastPartLen),
            (rh, pLastPart, pulLastPartLen))
SESSION_FWD(DigestInit, (SH hSession, CK_MECHANISM_PTR pMechanism), (rh, pMechanism))
SESSION_FWD(Digest,
            (SH hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pDigest,
             CK_ULONG_PTR pulDigestLen),
            (rh, pData, ulDataLen, pDigest, pulDigestLen))
SESSION_FWD(DigestUpdate, (SH hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen),
            (rh, pPart, ulPartLen))
SESSION_FWD(DigestKey, (SH hSession, OH hKey), (rh, hKey))
SESSION_FWD(DigestFinal, (SH hSession, CK_BYTE_PTR pDigest, CK_ULONG_PTR pulDigestLen),
            (rh, pDigest, pulDigestLen))
/* Notes when the signature operation began: the latency counts from here,
 * so "L per signature" holds for C_SignInit + C_Sign together. */
static CK_RV shim_SignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                           CK_OBJECT_HANDLE hKey)
{
    CK_SESSION_HANDLE rh;
    CK_FUNCTION_LIST *f;
    uint64_t was = 0;
    CK_RV rv = acquire_ts(hSession, &rh, &f, &was, mono_ns());
    if (rv != CKR_OK)
        return rv;
    rv = f->C_SignInit(rh, pMechanism, hKey);
    release();
    if (rv != CKR_OK) /* e.g. CKR_OPERATION_ACTIVE: the earlier one runs on */
        restore_sign_init(hSession, was);
    return rv;
}
SESSION_FWD(SignUpdate, (SH hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen),
            (rh, pPart, ulPartLen))
SESSION_FWD(SignFinal, (SH hSession, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen),
            (rh, pSignature, pulSignatureLen))
SESSION_FWD(SignRecoverInit, (SH hSession, CK_MECHANISM_PTR pMechanism, OH hKey),
            (rh, pMechanism, hKey))
SESSION_FWD(SignRecover,
            (SH hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
             CK_ULONG_PTR pulSignatureLen),
            (rh, pData, ulDataLen, pSignature, pulSignatureLen))
SESSION_FWD(VerifyInit, (SH hSession, CK_MECHANISM_PTR pMechanism, OH hKey), (rh, pMechanism, hKey))
SESSION_FWD(Verify,
            (SH hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
             CK_ULONG ulSignatureLen),
            (rh, pData, ulDataLen, pSignature, ulSignatureLen))
SESSION_FWD(VerifyUpdate, (SH hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen),
            (rh, pPart, ulPartLen))
SESSION_FWD(VerifyFinal, (SH hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen),
            (rh, pSignature, ulSignatureLen))
SESSION_FWD(VerifyRecoverInit, (SH hSession, CK_MECHANISM_PTR pMechanism, OH hKey),
            (rh, pMechanism, hKey))
SESSION_FWD(VerifyRecover,
            (SH hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen, CK_BYTE_PTR pData,
             CK_ULONG_PTR pulDataLen),
            (rh, pSignature, ulSignatureLen, pData, pulDataLen))
SESSION_FWD(DigestEncryptUpdate,
            (SH hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen, CK_BYTE_PTR pEncryptedPart,
             CK_ULONG_PTR pulEncryptedPartLen),
            (rh, pPart, ulPartLen, pEncryptedPart, pulEncryptedPartLen))
SESSION_FWD(DecryptDigestUpdate,
            (SH hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen,
             CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen),
            (rh, pEncryptedPart, ulEncryptedPartLen, pPart, pulPartLen))
SESSION_FWD(SignEncryptUpdate,
            (SH hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen, CK_BYTE_PTR pEncryptedPart,
             CK_ULONG_PTR pulEncryptedPartLen),
            (rh, pPart, ulPartLen, pEncryptedPart, pulEncryptedPartLen))
SESSION_FWD(DecryptVerifyUpdate,
            (SH hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen,
             CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen),
            (rh, pEncryptedPart, ulEncryptedPartLen, pPart, pulPartLen))
SESSION_FWD(GenerateKey,
            (SH hSession, CK_MECHANISM_PTR pMechanism, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount,
             CK_OBJECT_HANDLE_PTR phKey),
            (rh, pMechanism, pTemplate, ulCount, phKey))
SESSION_FWD(GenerateKeyPair,
            (SH hSession, CK_MECHANISM_PTR pMechanism, CK_ATTRIBUTE_PTR pPublicKeyTemplate,
             CK_ULONG ulPublicKeyAttributeCount, CK_ATTRIBUTE_PTR pPrivateKeyTemplate,
             CK_ULONG ulPrivateKeyAttributeCount, CK_OBJECT_HANDLE_PTR phPublicKey,
             CK_OBJECT_HANDLE_PTR phPrivateKey),
            (rh, pMechanism, pPublicKeyTemplate, ulPublicKeyAttributeCount, pPrivateKeyTemplate,
             ulPrivateKeyAttributeCount, phPublicKey, phPrivateKey))
SESSION_FWD(WrapKey,
            (SH hSession, CK_MECHANISM_PTR pMechanism, OH hWrappingKey, OH hKey,
             CK_BYTE_PTR pWrappedKey, CK_ULONG_PTR pulWrappedKeyLen),
            (rh, pMechanism, hWrappingKey, hKey, pWrappedKey, pulWrappedKeyLen))
SESSION_FWD(UnwrapKey,
            (SH hSession, CK_MECHANISM_PTR pMechanism, OH hUnwrappingKey, CK_BYTE_PTR pWrappedKey,
             CK_ULONG ulWrappedKeyLen, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount,
             CK_OBJECT_HANDLE_PTR phKey),
            (rh, pMechanism, hUnwrappingKey, pWrappedKey, ulWrappedKeyLen, pTemplate,
             ulAttributeCount, phKey))
SESSION_FWD(DeriveKey,
            (SH hSession, CK_MECHANISM_PTR pMechanism, OH hBaseKey, CK_ATTRIBUTE_PTR pTemplate,
             CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey),
            (rh, pMechanism, hBaseKey, pTemplate, ulAttributeCount, phKey))
SESSION_FWD(SeedRandom, (SH hSession, CK_BYTE_PTR pSeed, CK_ULONG ulSeedLen),
            (rh, pSeed, ulSeedLen))
SESSION_FWD(GenerateRandom, (SH hSession, CK_BYTE_PTR pRandomData, CK_ULONG ulRandomLen),
            (rh, pRandomData, ulRandomLen))
SESSION_FWD(GetFunctionStatus, (SH hSession), (rh))
SESSION_FWD(CancelFunction, (SH hSession), (rh))

/* ---- C_Initialize / C_Finalize ------------------------------------------------ */

/* Lock order: init_mu, ctl_mu, mu, then the leaf vals_mu. */
static void atfork_prepare(void)
{
    pthread_mutex_lock(&g.init_mu);
    pthread_mutex_lock(&g.ctl_mu);
    pthread_mutex_lock(&g.mu);
    pthread_mutex_lock(&vals_mu);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&vals_mu);
    pthread_mutex_unlock(&g.mu);
    pthread_mutex_unlock(&g.ctl_mu);
    pthread_mutex_unlock(&g.init_mu);
}

/* The child has only the forking thread: calls that were in flight in other
 * threads will never end there. */
static void atfork_child(void)
{
    g.inflight = 0;
    g.exclusive = 0;
    pthread_mutex_unlock(&vals_mu);
    pthread_mutex_unlock(&g.mu);
    pthread_mutex_unlock(&g.ctl_mu);
    pthread_mutex_unlock(&g.init_mu);
}

static void register_atfork(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static void reset_state(void)
{
    pthread_mutex_lock(&g.mu);
    free(g.ents);
    g.ents = NULL;
    g.n_ents = g.cap = 0;
    g.inflight = 0;
    g.exclusive = 0;
    g.pending_invalidate_ns = g.pending_remove_ns = 0;
    g.pending_remove_for_ms = -1;
    update_next_event_locked();
    atomic_store(&g_removed_until_ns, 0);
    pthread_mutex_unlock(&g.mu);
    atomic_store(&n_signs, 0);
    atomic_store(&n_signs_ok, 0);
}

/* Configuration at C_Initialize: environment (or defaults), then the
 * control file, then whatever cf_shim_control set. -1 on a malformed
 * variable: a fault injector that silently ignores its settings is worse
 * than one that refuses to start. */
static int load_config(void)
{
    unsigned long env[K__MAX] = {0};
    unsigned char env_set[K__MAX] = {0};
    for (int k = 0; k < K__MAX; k++) {
        char name[64];
        snprintf(name, sizeof(name), "CF_SHIM_%s", keys[k].name);
        const char *v = keys[k].env ? getenv(name) : NULL;
        if (!v || !*v)
            continue;
        if (parse_value(k, v, &env[k]) != 0) {
            fprintf(stderr, "certforge-shim: %s=%s: not a valid value for this variable\n", name,
                    v);
            return -1;
        }
        env_set[k] = 1;
    }
    pthread_mutex_lock(&vals_mu);
    memcpy(vals.env, env, sizeof(env));
    memcpy(vals.env_set, env_set, sizeof(env_set));
    pthread_mutex_unlock(&vals_mu);
    restore_settings(1);
    for (int k = K__SETTINGS; k < K__MAX; k++)
        if (env_set[k])
            apply(k, env[k], 0);

    const char *ctl = getenv("CF_SHIM_CONTROL");
    if (ctl && strlen(ctl) >= sizeof(g.ctl_path)) {
        fprintf(stderr, "certforge-shim: CF_SHIM_CONTROL: path too long\n");
        return -1;
    }
    pthread_mutex_lock(&g.ctl_mu);
    g.ctl_seen = 0;
    snprintf(g.ctl_path, sizeof(g.ctl_path), "%s", ctl ? ctl : "");
    if (g.ctl_path[0])
        ctl_read_locked(0);
    pthread_mutex_unlock(&g.ctl_mu);
    atomic_store(&g_next_ctl_ns, mono_ns() + CTL_CHECK_NS);

    pthread_mutex_lock(&vals_mu);
    for (int k = 0; k < K__SETTINGS; k++)
        if (vals.ovr_set[k])
            set_setting(k, vals.ovr[k]);
    pthread_mutex_unlock(&vals_mu);
    return 0;
}

/* Load the real module and get its function list. */
static CK_RV load_real(CK_FUNCTION_LIST **out)
{
    const char *path = getenv("CF_SHIM_MODULE");
    if (!path || !*path)
        path = SHIM_DEFAULT_MODULE;
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        fprintf(stderr, "certforge-shim: cannot load CF_SHIM_MODULE %s: %s\n", path, dlerror());
        return CKR_GENERAL_ERROR;
    }
    CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
    CK_FUNCTION_LIST *f = NULL;
    CK_RV rv = CKR_GENERAL_ERROR;
    if (!gfl) {
        fprintf(stderr, "certforge-shim: %s has no C_GetFunctionList\n", path);
    } else if ((rv = gfl(&f)) != CKR_OK || !f) {
        fprintf(stderr, "certforge-shim: %s: C_GetFunctionList failed (0x%lx)\n", path,
                (unsigned long)rv);
        rv = CKR_GENERAL_ERROR;
    } else if (f == &shim_list) {
        fprintf(stderr, "certforge-shim: CF_SHIM_MODULE names the shim itself\n");
        rv = CKR_GENERAL_ERROR;
    } else {
        rv = CKR_OK;
    }
    if (rv != CKR_OK) {
        dlclose(dl);
        return rv;
    }
    g.dl = dl;
    *out = f;
    return CKR_OK;
}

static CK_RV shim_Initialize(CK_VOID_PTR pInitArgs)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_atfork);
    CK_RV rv = CKR_OK;
    pthread_mutex_lock(&g.init_mu);
    pid_t pid = getpid();
    CK_FUNCTION_LIST *f = atomic_load(&g_real);
    if (g.initialized && g.init_pid == pid) {
        rv = CKR_CRYPTOKI_ALREADY_INITIALIZED;
        goto out;
    }
    /* In a forked child the real module stays loaded; the parent's
     * sessions are forgotten, not closed (they belong to the parent). */
    int child = g.initialized;
    atomic_store(&g_real, NULL);
    g.initialized = 0;
    reset_state();
    reset_counters();
    atomic_store(&g_init_ns, mono_ns());
    if (load_config() != 0) {
        rv = CKR_GENERAL_ERROR;
        goto out;
    }
    if (!child && (rv = load_real(&f)) != CKR_OK)
        goto out;
    rv = f->C_Initialize(pInitArgs);
    if (child && rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        /* a module that does not notice the fork itself */
        (void)f->C_Finalize(NULL);
        rv = f->C_Initialize(pInitArgs);
    }
    if (rv != CKR_OK)
        goto out;
    g.initialized = 1;
    g.init_pid = pid;
    atomic_store_explicit(&g_real, f, memory_order_release);
out:
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED && g.dl) {
        dlclose(g.dl);
        g.dl = NULL;
    }
    pthread_mutex_unlock(&g.init_mu);
    return rv;
}

static CK_RV shim_Finalize(CK_VOID_PTR pReserved)
{
    pthread_mutex_lock(&g.init_mu);
    CK_FUNCTION_LIST *f = atomic_load(&g_real);
    CK_RV rv = CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!g.initialized || !f)
        goto out;
    rv = f->C_Finalize(pReserved);
    if (rv != CKR_OK)
        goto out;
    atomic_store(&g_real, NULL);
    g.initialized = 0;
    reset_state();
    pthread_mutex_lock(&g.ctl_mu);
    g.ctl_path[0] = '\0';
    pthread_mutex_unlock(&g.ctl_mu);
    dlclose(g.dl);
    g.dl = NULL;
out:
    pthread_mutex_unlock(&g.init_mu);
    return rv;
}

static CK_FUNCTION_LIST shim_list = {
    .version = {CRYPTOKI_VERSION_MAJOR, CRYPTOKI_VERSION_MINOR},
    .C_Initialize = shim_Initialize,
    .C_Finalize = shim_Finalize,
    .C_GetInfo = shim_GetInfo,
    .C_GetFunctionList = shim_GetFunctionList,
    .C_GetSlotList = shim_GetSlotList,
    .C_GetSlotInfo = shim_GetSlotInfo,
    .C_GetTokenInfo = shim_GetTokenInfo,
    .C_GetMechanismList = shim_GetMechanismList,
    .C_GetMechanismInfo = shim_GetMechanismInfo,
    .C_InitToken = shim_InitToken,
    .C_InitPIN = shim_InitPIN,
    .C_SetPIN = shim_SetPIN,
    .C_OpenSession = shim_OpenSession,
    .C_CloseSession = shim_CloseSession,
    .C_CloseAllSessions = shim_CloseAllSessions,
    .C_GetSessionInfo = shim_GetSessionInfo,
    .C_GetOperationState = shim_GetOperationState,
    .C_SetOperationState = shim_SetOperationState,
    .C_Login = shim_Login,
    .C_Logout = shim_Logout,
    .C_CreateObject = shim_CreateObject,
    .C_CopyObject = shim_CopyObject,
    .C_DestroyObject = shim_DestroyObject,
    .C_GetObjectSize = shim_GetObjectSize,
    .C_GetAttributeValue = shim_GetAttributeValue,
    .C_SetAttributeValue = shim_SetAttributeValue,
    .C_FindObjectsInit = shim_FindObjectsInit,
    .C_FindObjects = shim_FindObjects,
    .C_FindObjectsFinal = shim_FindObjectsFinal,
    .C_EncryptInit = shim_EncryptInit,
    .C_Encrypt = shim_Encrypt,
    .C_EncryptUpdate = shim_EncryptUpdate,
    .C_EncryptFinal = shim_EncryptFinal,
    .C_DecryptInit = shim_DecryptInit,
    .C_Decrypt = shim_Decrypt,
    .C_DecryptUpdate = shim_DecryptUpdate,
    .C_DecryptFinal = shim_DecryptFinal,
    .C_DigestInit = shim_DigestInit,
    .C_Digest = shim_Digest,
    .C_DigestUpdate = shim_DigestUpdate,
    .C_DigestKey = shim_DigestKey,
    .C_DigestFinal = shim_DigestFinal,
    .C_SignInit = shim_SignInit,
    .C_Sign = shim_Sign,
    .C_SignUpdate = shim_SignUpdate,
    .C_SignFinal = shim_SignFinal,
    .C_SignRecoverInit = shim_SignRecoverInit,
    .C_SignRecover = shim_SignRecover,
    .C_VerifyInit = shim_VerifyInit,
    .C_Verify = shim_Verify,
    .C_VerifyUpdate = shim_VerifyUpdate,
    .C_VerifyFinal = shim_VerifyFinal,
    .C_VerifyRecoverInit = shim_VerifyRecoverInit,
    .C_VerifyRecover = shim_VerifyRecover,
    .C_DigestEncryptUpdate = shim_DigestEncryptUpdate,
    .C_DecryptDigestUpdate = shim_DecryptDigestUpdate,
    .C_SignEncryptUpdate = shim_SignEncryptUpdate,
    .C_DecryptVerifyUpdate = shim_DecryptVerifyUpdate,
    .C_GenerateKey = shim_GenerateKey,
    .C_GenerateKeyPair = shim_GenerateKeyPair,
    .C_WrapKey = shim_WrapKey,
    .C_UnwrapKey = shim_UnwrapKey,
    .C_DeriveKey = shim_DeriveKey,
    .C_SeedRandom = shim_SeedRandom,
    .C_GenerateRandom = shim_GenerateRandom,
    .C_GetFunctionStatus = shim_GetFunctionStatus,
    .C_CancelFunction = shim_CancelFunction,
    .C_WaitForSlotEvent = shim_WaitForSlotEvent,
};

SHIM_EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList)
{
    return shim_GetFunctionList(ppFunctionList);
}
