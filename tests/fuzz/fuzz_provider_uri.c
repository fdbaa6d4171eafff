/* libFuzzer target for the provider's URI parser (client/provider/uri.h).
 *
 * Properties checked on every input:
 *  - cfp_uri_parse() never reads outside the input (ASan) and always
 *    either accepts or refuses with a non-empty message;
 *  - an accepted URI keeps the limits: key of 1-64 characters of
 *    A-Z a-z 0-9 . _ -, socket of at most 107 octets with no control
 *    characters or NUL, NUL-terminated fields;
 *  - an accepted URI re-encodes (socket %-escaped) to a URI that parses to
 *    exactly the same result.
 */
#include "client/provider/uri.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_fields(const cfp_uri *u)
{
    size_t kl = strnlen(u->key, sizeof(u->key));
    size_t sl = strnlen(u->socket, sizeof(u->socket));
    if (kl == 0 || kl > CFP_KEY_MAX || sl > CFP_SOCKET_MAX)
        abort();
    for (size_t i = 0; i < kl; i++) {
        char c = u->key[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            abort();
    }
    for (size_t i = 0; i < sl; i++) {
        unsigned char c = (unsigned char)u->socket[i];
        if (c < 0x20 || c == 0x7f)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = 0;
    cfp_uri u, v;
    char err[256] = "";
    if (cfp_uri_parse(s, &u, err, sizeof(err)) != 0) {
        if (!err[0])
            abort();
        free(s);
        return 0;
    }
    check_fields(&u);
    /* Re-encode: every socket octet escaped, so ';' and '%' survive. */
    char again[CFP_URI_MAX + 1];
    int n = snprintf(again, sizeof(again), "certforge:key=%s", u.key);
    if (u.socket[0]) {
        n += snprintf(again + n, sizeof(again) - (size_t)n, ";socket=");
        for (const char *p = u.socket; *p; p++)
            n += snprintf(again + n, sizeof(again) - (size_t)n, "%%%02X", (unsigned char)*p);
    }
    if (n <= 0 || (size_t)n >= sizeof(again))
        abort();
    if (cfp_uri_parse(again, &v, err, sizeof(err)) != 0 || strcmp(u.key, v.key) != 0 ||
        strcmp(u.socket, v.socket) != 0)
        abort();
    free(s);
    return 0;
}
