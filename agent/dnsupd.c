/* dnsupd.c — RFC 2136 updates with TSIG through ldns (dnsupd.h). */
#include "agent/dnsupd.h"

#include <arpa/inet.h>
#include <ldns/ldns.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

int agent_dns_txt(const agent_cfg *c, const char *name, const char *value, bool add, char *why, size_t whylen)
{
    const char *zone = agent_cfg_zone_for(c, name);
    if (!zone) {
        snprintf(why, whylen, "%s is in none of the zones dns_update may change", name);
        return -1;
    }
    int rc = -1;
    ldns_resolver *res = ldns_resolver_new();
    ldns_rdf *ns = NULL, *zrdf = NULL;
    ldns_rr *rr = NULL;
    ldns_rr_list *up = NULL;
    ldns_pkt *pkt = NULL, *ans = NULL;
    char text[700];
    if (!res) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    ns = ldns_rdf_new_frm_str(strchr(c->dns_server_host, ':') ? LDNS_RDF_TYPE_AAAA : LDNS_RDF_TYPE_A,
                              c->dns_server_host);
    if (!ns || ldns_resolver_push_nameserver(res, ns) != LDNS_STATUS_OK) {
        snprintf(why, whylen, "dns_update.server %s is not an IP address", c->dns_server_host);
        goto out;
    }
    ldns_resolver_set_port(res, c->dns_server_port);
    struct timeval tv = {.tv_sec = c->dns_timeout_ms / 1000, .tv_usec = (c->dns_timeout_ms % 1000) * 1000};
    ldns_resolver_set_timeout(res, tv);
    ldns_resolver_set_retry(res, 1);
    ldns_resolver_set_usevc(res, true);
    ldns_resolver_set_recursive(res, false);
    /* RFC 2136 §2.5.1 adds an RR; §2.5.4 deletes one: class NONE, TTL 0 */
    snprintf(text, sizeof(text), "_acme-challenge.%s. %u IN TXT \"%s\"", name, add ? c->dns_ttl : 0, value);
    if (ldns_rr_new_frm_str(&rr, text, 0, NULL, NULL) != LDNS_STATUS_OK) {
        snprintf(why, whylen, "cannot build the TXT record for %s", name);
        goto out;
    }
    if (!add)
        ldns_rr_set_class(rr, LDNS_RR_CLASS_NONE);
    if (!(up = ldns_rr_list_new()) || !ldns_rr_list_push_rr(up, rr)) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    rr = NULL; /* the list owns it */
    char zn[300];
    snprintf(zn, sizeof(zn), "%s.", zone);
    if (!(zrdf = ldns_dname_new_frm_str(zn)) ||
        !(pkt = ldns_update_pkt_new(zrdf, LDNS_RR_CLASS_IN, NULL, up, NULL))) {
        snprintf(why, whylen, "cannot build the update for zone %s", zone);
        goto out;
    }
    zrdf = NULL; /* the packet owns it */
    ldns_pkt_set_random_id(pkt);
    if (c->tsig_name) {
        char kn[300], alg[32];
        snprintf(kn, sizeof(kn), "%s.", c->tsig_name);
        snprintf(alg, sizeof(alg), "%s.", c->tsig_algorithm);
        ldns_resolver_set_tsig_keyname(res, kn);
        ldns_resolver_set_tsig_algorithm(res, alg);
        ldns_resolver_set_tsig_keydata(res, c->tsig_secret);
        if (ldns_update_pkt_tsig_add(pkt, res) != LDNS_STATUS_OK) {
            snprintf(why, whylen, "cannot sign the update with TSIG key %s", c->tsig_name);
            goto out;
        }
    }
    ldns_status st = ldns_send(&ans, res, pkt);
    if (st != LDNS_STATUS_OK || !ans) {
        snprintf(why, whylen, "update of %s at %s:%u: %s", zone, c->dns_server_host, c->dns_server_port,
                 ldns_get_errorstr_by_id(st));
        goto out;
    }
    ldns_pkt_rcode rcode = ldns_pkt_get_rcode(ans);
    if (rcode != LDNS_RCODE_NOERROR) {
        ldns_lookup_table *lt = ldns_lookup_by_id(ldns_rcodes, (int)rcode);
        snprintf(why, whylen, "update of %s refused: %s", zone, lt ? lt->name : "rcode");
        goto out;
    }
    rc = 0;
out:
    ldns_rr_free(rr);
    ldns_rr_list_deep_free(up);
    ldns_rdf_deep_free(zrdf);
    ldns_pkt_free(pkt);
    ldns_pkt_free(ans);
    ldns_rdf_deep_free(ns);
    ldns_resolver_deep_free(res); /* with its copy of the TSIG secret */
    return rc;
}
