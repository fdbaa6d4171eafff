/* uri.c — see uri.h. */
#include "client/provider/uri.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool cfp_uri_is_certforge(const char *uri)
{
    size_t n = sizeof(CFP_URI_SCHEME) - 1;
    return uri && strncasecmp(uri, CFP_URI_SCHEME, n) == 0 && uri[n] == ':';
}

/* Undo %XX escapes of v[0..n) into out (cap octets plus NUL). Decoded NULs
 * and control characters are refused: a key name or a path never holds one. */
static int decode_value(const char *name, const char *v, size_t n, char *out, size_t cap, char *err,
                        size_t errlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '%') {
            int hi = i + 1 < n ? hexval(v[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(v[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                snprintf(err, errlen, "attribute '%s': bad %%-escape (want %%XX, two hex digits)",
                         name);
                return -1;
            }
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
        }
        if (c < 0x20 || c == 0x7f) {
            snprintf(err, errlen, "attribute '%s': control character or NUL in the value", name);
            return -1;
        }
        if (o == cap) {
            snprintf(err, errlen, "attribute '%s': value longer than %zu octets", name, cap);
            return -1;
        }
        out[o++] = (char)c;
    }
    out[o] = 0;
    return 0;
}

int cfp_uri_parse(const char *uri, cfp_uri *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!uri) {
        snprintf(err, errlen, "no URI");
        return -1;
    }
    size_t total = strnlen(uri, CFP_URI_MAX + 1);
    if (total > CFP_URI_MAX) {
        snprintf(err, errlen, "URI longer than %d octets", CFP_URI_MAX);
        return -1;
    }
    if (!cfp_uri_is_certforge(uri)) {
        snprintf(err, errlen, "not a certforge URI (want certforge:key=NAME[;socket=PATH])");
        return -1;
    }
    const char *p = uri + sizeof(CFP_URI_SCHEME); /* past "certforge:" */
    const char *end = uri + total;
    bool have_key = false, have_socket = false;
    if (p == end) {
        snprintf(err, errlen, "no attributes (want certforge:key=NAME[;socket=PATH])");
        return -1;
    }
    while (p <= end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *aend = semi ? semi : end;
        const char *eq = memchr(p, '=', (size_t)(aend - p));
        size_t alen = (size_t)(aend - p);
        if (alen == 0) {
            snprintf(err, errlen, "empty attribute (stray ';')");
            return -1;
        }
        if (!eq) {
            snprintf(err, errlen, "attribute '%.*s' has no '=VALUE'", alen > 32 ? 32 : (int)alen,
                     p);
            return -1;
        }
        size_t nlen = (size_t)(eq - p);
        const char *v = eq + 1;
        size_t vlen = (size_t)(aend - v);
        if (nlen == 3 && memcmp(p, "key", 3) == 0) {
            if (have_key) {
                snprintf(err, errlen, "attribute 'key' given twice");
                return -1;
            }
            if (vlen == 0) {
                snprintf(err, errlen, "attribute 'key' is empty");
                return -1;
            }
            if (decode_value("key", v, vlen, out->key, CFP_KEY_MAX, err, errlen) != 0)
                return -1;
            for (const char *k = out->key; *k; k++) {
                char c = *k;
                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-')) {
                    snprintf(
                        err, errlen,
                        "attribute 'key': '%c' is not allowed in a key name (A-Z a-z 0-9 . _ -)",
                        c);
                    return -1;
                }
            }
            have_key = true;
        } else if (nlen == 6 && memcmp(p, "socket", 6) == 0) {
            if (have_socket) {
                snprintf(err, errlen, "attribute 'socket' given twice");
                return -1;
            }
            if (vlen == 0) {
                snprintf(err, errlen, "attribute 'socket' is empty");
                return -1;
            }
            if (decode_value("socket", v, vlen, out->socket, CFP_SOCKET_MAX, err, errlen) != 0)
                return -1;
            have_socket = true;
        } else {
            snprintf(err, errlen, "unknown attribute '%.*s' (known: key, socket)",
                     nlen > 32 ? 32 : (int)nlen, p);
            return -1;
        }
        if (!semi)
            break;
        p = semi + 1;
    }
    if (!have_key) {
        snprintf(err, errlen, "attribute 'key' is required (certforge:key=NAME)");
        return -1;
    }
    return 0;
}

int cfp_uri_socket(const cfp_uri *u, char *buf, size_t len, char *err, size_t errlen)
{
    const char *s = u->socket[0] ? u->socket : getenv("CERTFORGE_SOCKET");
    if (!s || !*s)
        s = CFP_DEFAULT_SOCKET;
    size_t n = strlen(s);
    if (n > CFP_SOCKET_MAX || n >= len) {
        snprintf(err, errlen, "socket path longer than %d octets: %.40s...", CFP_SOCKET_MAX, s);
        return -1;
    }
    memcpy(buf, s, n + 1);
    return 0;
}
