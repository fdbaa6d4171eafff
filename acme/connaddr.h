/* connaddr.h — connections per client address on an evhttp + OpenSSL
 * server (certforge-acme's HTTPS loops, certforge-agent's EST side): the
 * connection's slot in a common/addrcount table, taken at its first
 * request and given back when its SSL is freed. */
#ifndef ACME_CONNADDR_H
#define ACME_CONNADDR_H

#include <event2/http.h>

#include "common/addrcount.h"
#include "common/compiler.h"

/* Once per process, before the first connection: the SSL ex_data slot
 * (its free callback gives the address's slot back). 0, or -1. */
CF_WUR int acme_connaddr_init(void);

/* The request's connection counts against addr: 0 when it does (now, or
 * since an earlier request; also for a connection without TLS or without
 * a table), -1 when addr already holds the table's cap — answer the
 * request with a refusal and "Connection: close". */
CF_WUR int acme_connaddr_take(struct evhttp_connection *ec, cf_addrcount *c, const char *addr);

#endif
