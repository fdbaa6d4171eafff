/* ratelimit.h — per-account, per-address and global limits of
 * certforge-acme (docs/acme.md "Rate limits"): fixed one-hour windows kept
 * in memory per front end (several front ends each enforce their own).
 * Bounded: at most ACME_RL_KEYS keys per limit are tracked; when full, the
 * oldest window's keys are dropped first. */
#ifndef CF_ACME_RATELIMIT_H
#define CF_ACME_RATELIMIT_H

#include <stdint.h>

#include "acme/acme.h"

#define ACME_RL_KEYS 65536
#define ACME_RL_WINDOW 3600

typedef enum acme_rl_kind {
    ACME_RL_ORDERS_ACCOUNT,
    ACME_RL_ORDERS_ADDRESS,
    ACME_RL_ORDERS_GLOBAL,
    ACME_RL_FAILED_VALIDATIONS,
    ACME_RL_ACCOUNTS_ADDRESS,
    ACME_RL__MAX
} acme_rl_kind;

typedef struct acme_ratelimit acme_ratelimit;

/* limits[kind]: events allowed per hour (0: unlimited) */
CF_WUR int acme_ratelimit_new(const unsigned limits[ACME_RL__MAX], acme_ratelimit **out);
void acme_ratelimit_free(acme_ratelimit *r);
/* Count one event for key. 0 allowed; else the seconds until the window
 * ends (for Retry-After) and nothing is counted. */
int64_t acme_ratelimit_take(acme_ratelimit *r, acme_rl_kind kind, const char *key);
/* Whether key is over its limit now, without counting (0: not). */
int64_t acme_ratelimit_check(acme_ratelimit *r, acme_rl_kind kind, const char *key);
/* Count without checking (failed validations are counted after the fact). */
void acme_ratelimit_add(acme_ratelimit *r, acme_rl_kind kind, const char *key);

#endif
