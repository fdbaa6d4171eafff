/* Connections per client address, for the HTTPS daemons (certforge-acme,
 * certforge-agent): one address may hold at most `cap` connections at once,
 * so that one client cannot take every connection slot and lock the others
 * out (docs/security.md). Exact counts in a hash table under one mutex
 * (taken once when a connection's first request arrives, once when it
 * closes); the hash is keyed with a per-table random seed so that chosen
 * addresses cannot pile up in one chain. Entries live only while their
 * address holds a connection: memory is bounded by the connections. */
#ifndef CF_ADDRCOUNT_H
#define CF_ADDRCOUNT_H

#include <stddef.h>

#include "common/compiler.h"

typedef struct cf_addrcount cf_addrcount;
typedef struct cf_addr_slot cf_addr_slot; /* one address's entry */

/* cap 0: unlimited (counted all the same). NULL: out of memory. */
CF_WUR cf_addrcount *cf_addrcount_new(unsigned cap);
void cf_addrcount_free(cf_addrcount *c);

/* A connection from addr (a numeric address, as evhttp gives it): its
 * address's slot, or NULL when the address already holds cap connections
 * (or out of memory); *held is what the address holds then, this one
 * included when taken. */
CF_WUR cf_addr_slot *cf_addrcount_take(cf_addrcount *c, const char *addr, unsigned *held);

/* The connection closed: gives back what cf_addrcount_take gave. */
void cf_addrcount_release(cf_addr_slot *s);

/* Addresses holding at least one connection now. */
size_t cf_addrcount_addresses(cf_addrcount *c);

#endif
