/* fuzz_agent_est — certforge-agent's EST request parsing (agent/estmsg.h):
 * the base64 body, the CSR and its names against an NF, the Bearer header
 * and the token peek. The first octet picks the entry point. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/estmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    data++;
    size--;
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    static uint8_t der[EST_MAX_CSR];
    long n = (sel & 1) ? est_b64_decode(s, size, der, sizeof(der)) : (long)(size < sizeof(der) ? size : 0);
    if (!(sel & 1) && n > 0)
        memcpy(der, data, (size_t)n);
    est_csr c;
    est_err e;
    char why[300];
    if (n > 0 && est_csr_parse(der, (size_t)n, &c, &e, why, sizeof(why)) == 0) {
        const char *allowed[] = {"amf1.5gc.example"};
        (void)est_csr_check(&c, "6f1c2a6e-8c0e-4e0b-9a7e-2f1d3c4b5a69", (sel & 2) != 0, allowed, 1, &e, why,
                            sizeof(why));
        est_csr_free(&c);
    }
    const char *tok;
    size_t tl;
    char nf[37];
    if (est_bearer(s, &tok, &tl) == 0)
        (void)est_token_peek_nf(tok, tl, nf);
    free(s);
    return 0;
}
