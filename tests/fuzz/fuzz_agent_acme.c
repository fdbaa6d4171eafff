/* fuzz_agent_acme — the ACME answers certforge-agent reads
 * (agent/acmemsg.h): directory, order, authorization, problem,
 * renewalInfo, Retry-After. Every parser sees every input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/acmemsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *b = (const char *)data;
    char why[200], t[96], d[256];
    am_directory dir;
    am_order o;
    am_authz z;
    int64_t s, e;
    (void)am_directory_parse(b, size, &dir, why, sizeof(why));
    (void)am_order_parse(b, size, &o, why, sizeof(why));
    if (am_authz_parse(b, size, &z, why, sizeof(why)) == 0)
        (void)am_authz_find(&z, "dns-01");
    (void)am_problem_parse(b, size, t, sizeof(t), d, sizeof(d));
    (void)am_renewal_info_parse(b, size, &s, &e);
    char *v = malloc(size + 1);
    if (v) {
        memcpy(v, data, size);
        v[size] = '\0';
        (void)am_retry_after(v, 1, 3600);
        free(v);
    }
    return 0;
}
