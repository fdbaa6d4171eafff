/* libFuzzer target for acme/ident: the checks certforge-acme runs on what
 * clients send besides the JWS — DNS identifiers, ARI certificate ids,
 * RFC 3339 times, and at finalize the CSR's names against an order's
 * identifiers — and the certificate-facts reader. The first octet picks
 * the check; the rest is its input. */
#include "acme/acme.h"
#include "acme/ident.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 16 * 1024)
        return 0;
    uint8_t sel = data[0];
    data++;
    size--;
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = 0;
    switch (sel % 5) {
    case 0: {
        bool w;
        if (acme_dns_name_ok(s, &w)) {
            /* an accepted name is lower case LDH and at most 253 octets */
            const char *n = w ? s + 2 : s;
            if (strlen(n) > ACME_MAX_DNS_NAME || strspn(n, "abcdefghijklmnopqrstuvwxyz0123456789-.") != strlen(n))
                abort();
        }
        break;
    }
    case 1:
        (void)acme_ari_id_ok(s);
        break;
    case 2: {
        int64_t t;
        if (acme_time_parse(s, &t) == 0) {
            char b[32];
            acme_time_rfc3339(t, b, sizeof(b));
        }
        break;
    }
    case 3: {
        acme_cert_facts f;
        if (acme_cert_facts_read(data, size, &f) == 0) {
            char id[400];
            if (f.serial < data || f.serial + f.serial_len > data + size || f.aki < data || f.aki + f.aki_len > data + size)
                abort();
            if (acme_ari_id_of(&f, id, sizeof(id)) == 0 && f.aki_len < 100 && f.serial_len < 100 && !acme_ari_id_ok(id))
                abort(); /* what we make, we accept */
        }
        break;
    }
    default: {
        static char names[ACME_CSR_MAX_NAMES][ACME_MAX_DNS_NAME + 1];
        char why[200];
        unsigned n = 0;
        if (acme_csr_names(data, size, names, ACME_CSR_MAX_NAMES, &n, why, sizeof(why)) == ACME_P_NONE) {
            const char *order[] = {"a.example.test", "b.example.test"};
            (void)acme_names_match(names, n, order, 2);
            for (unsigned i = 0; i < n; i++)
                if (strlen(names[i]) == 0 || strlen(names[i]) > ACME_MAX_DNS_NAME)
                    abort();
        } else if (!why[0]) {
            abort();
        }
    }
    }
    free(s);
    return 0;
}
