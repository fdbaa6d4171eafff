/* dnsupd.h — dns-01 answers through RFC 2136 dynamic updates signed with
 * TSIG (RFC 8945), sent with ldns to the configured primary (dns_update in
 * the config). The TXT record is `_acme-challenge.NAME.` (RFC 8555 §8.4) in
 * the longest configured zone NAME falls in. Blocking (worker threads
 * only); TCP, so a large update is not truncated. */
#ifndef CF_AGENT_DNSUPD_H
#define CF_AGENT_DNSUPD_H

#include <stdbool.h>
#include <stddef.h>

#include "agent/config.h"

/* Add (add = true) or delete one TXT record `_acme-challenge.NAME. TTL IN
 * TXT "value"`. 0, or -1 with why (no zone for NAME, network, TSIG, an
 * rcode other than NOERROR). A delete of an absent record succeeds. */
AGENT_WUR int agent_dns_txt(const agent_cfg *c, const char *name, const char *value, bool add, char *why,
                            size_t whylen);

#endif
