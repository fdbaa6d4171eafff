#include "common/addrcount.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define BUCKETS 4096 /* a power of two */
#define ADDR_MAX 64  /* an IPv6 address with a zone fits */

struct cf_addr_slot {
    cf_addr_slot *next;
    cf_addrcount *owner;
    unsigned held;
    uint32_t bucket;
    char addr[ADDR_MAX];
};

struct cf_addrcount {
    pthread_mutex_t mu;
    unsigned cap;
    size_t addresses;
    uint64_t seed;
    cf_addr_slot *b[BUCKETS];
};

cf_addrcount *cf_addrcount_new(unsigned cap)
{
    cf_addrcount *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    if (getrandom(&c->seed, sizeof(c->seed), 0) != (ssize_t)sizeof(c->seed))
        c->seed = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)c;
    pthread_mutex_init(&c->mu, NULL);
    c->cap = cap;
    return c;
}

void cf_addrcount_free(cf_addrcount *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < BUCKETS; i++)
        for (cf_addr_slot *s = c->b[i], *n; s; s = n) {
            n = s->next;
            free(s);
        }
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* FNV-1a over the seed and the address, then a 64-bit finaliser: not a
 * cryptographic MAC, but without the seed an address's bucket cannot be
 * chosen. */
static uint32_t bucket_of(const cf_addrcount *c, const char *addr)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ c->seed;
    for (const unsigned char *p = (const unsigned char *)addr; *p; p++)
        h = (h ^ *p) * 0x100000001b3ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (uint32_t)(h & (BUCKETS - 1));
}

cf_addr_slot *cf_addrcount_take(cf_addrcount *c, const char *addr, unsigned *held)
{
    char a[ADDR_MAX];
    snprintf(a, sizeof(a), "%s", addr ? addr : "");
    uint32_t bk = bucket_of(c, a);
    pthread_mutex_lock(&c->mu);
    cf_addr_slot *s = c->b[bk];
    while (s && strcmp(s->addr, a) != 0)
        s = s->next;
    if (s && c->cap && s->held >= c->cap) {
        *held = s->held;
        pthread_mutex_unlock(&c->mu);
        return NULL;
    }
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s) {
            *held = 0;
            pthread_mutex_unlock(&c->mu);
            return NULL;
        }
        memcpy(s->addr, a, sizeof(a));
        s->owner = c;
        s->bucket = bk;
        s->next = c->b[bk];
        c->b[bk] = s;
        c->addresses++;
    }
    *held = ++s->held;
    pthread_mutex_unlock(&c->mu);
    return s;
}

void cf_addrcount_release(cf_addr_slot *s)
{
    if (!s)
        return;
    cf_addrcount *c = s->owner;
    pthread_mutex_lock(&c->mu);
    if (--s->held == 0) {
        cf_addr_slot **pp = &c->b[s->bucket];
        while (*pp != s)
            pp = &(*pp)->next;
        *pp = s->next;
        c->addresses--;
        free(s);
    }
    pthread_mutex_unlock(&c->mu);
}

size_t cf_addrcount_addresses(cf_addrcount *c)
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->addresses;
    pthread_mutex_unlock(&c->mu);
    return n;
}
