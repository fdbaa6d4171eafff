/* ratelimit.c — see ratelimit.h. One open-addressing table per limit,
 * keyed by a 64-bit hash of the key (collisions only merge two keys'
 * counts, which errs towards limiting). */
#include "acme/ratelimit.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
    uint64_t h;      /* 0: empty */
    int64_t window;  /* start of the hour counted */
    uint32_t count;
} slot;

struct acme_ratelimit {
    unsigned limit[ACME_RL__MAX];
    pthread_mutex_t mu;
    slot *tab[ACME_RL__MAX];
};

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h ? h : 1;
}

int acme_ratelimit_new(const unsigned limits[ACME_RL__MAX], acme_ratelimit **out)
{
    acme_ratelimit *r = calloc(1, sizeof(*r));
    if (!r)
        return -1;
    pthread_mutex_init(&r->mu, NULL);
    for (int k = 0; k < ACME_RL__MAX; k++) {
        r->limit[k] = limits[k];
        if (limits[k] && !(r->tab[k] = calloc(ACME_RL_KEYS, sizeof(slot)))) {
            acme_ratelimit_free(r);
            return -1;
        }
    }
    *out = r;
    return 0;
}

void acme_ratelimit_free(acme_ratelimit *r)
{
    if (!r)
        return;
    for (int k = 0; k < ACME_RL__MAX; k++)
        free(r->tab[k]);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* The slot for key in the current window (under mu). */
static slot *find(acme_ratelimit *r, acme_rl_kind kind, const char *key, int64_t win)
{
    uint64_t h = hash(key);
    slot *t = r->tab[kind], *stale = NULL;
    for (unsigned i = 0; i < 64; i++) {
        slot *s = &t[(h + i) % ACME_RL_KEYS];
        if (s->h == h) {
            if (s->window != win) {
                s->window = win;
                s->count = 0;
            }
            return s;
        }
        if (s->h == 0 || s->window != win) {
            if (!stale)
                stale = s;
            if (s->h == 0)
                break;
        }
    }
    if (!stale) /* 64 live neighbours: reuse the first probe */
        stale = &t[h % ACME_RL_KEYS];
    stale->h = h;
    stale->window = win;
    stale->count = 0;
    return stale;
}

static int64_t op(acme_ratelimit *r, acme_rl_kind kind, const char *key, int check, int add)
{
    if ((unsigned)kind >= ACME_RL__MAX || !r->limit[kind])
        return 0;
    int64_t now = acme_now(), win = now - now % ACME_RL_WINDOW, rc = 0;
    pthread_mutex_lock(&r->mu);
    slot *s = find(r, kind, key, win);
    if (check && s->count >= r->limit[kind]) {
        rc = win + ACME_RL_WINDOW - now;
        if (rc < 1)
            rc = 1;
    } else if (add) {
        s->count++;
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int64_t acme_ratelimit_take(acme_ratelimit *r, acme_rl_kind kind, const char *key)
{
    return op(r, kind, key, 1, 1);
}

int64_t acme_ratelimit_check(acme_ratelimit *r, acme_rl_kind kind, const char *key)
{
    return op(r, kind, key, 1, 0);
}

void acme_ratelimit_add(acme_ratelimit *r, acme_rl_kind kind, const char *key)
{
    (void)op(r, kind, key, 0, 1);
}
