/* serial.c — see serial.h. */
#include "common/serial.h"

#include <ctype.h>
#include <string.h>

void cf_hex_encode(const uint8_t *v, size_t n, char *out, size_t cap)
{
    static const char hx[] = "0123456789abcdef";
    size_t j = 0;
    if (cap == 0)
        return;
    for (size_t i = 0; i < n && j + 2 < cap; i++) {
        out[j++] = hx[v[i] >> 4];
        out[j++] = hx[v[i] & 15];
    }
    out[j] = '\0';
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int cf_hex_decode(const char *hex, uint8_t *out, size_t cap, size_t *len)
{
    size_t hl = strlen(hex);
    if (hl == 0 || hl % 2 || hl / 2 > cap)
        return -1;
    for (size_t i = 0; i < hl / 2; i++) {
        int hi = hexval((unsigned char)hex[2 * i]), lo = hexval((unsigned char)hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    *len = hl / 2;
    return 0;
}

int cf_serial_norm(const char *in, char out[CF_SERIAL_HEX_MAX + 1])
{
    size_t o = 0;
    if (in[0] == '0' && (in[1] == 'x' || in[1] == 'X'))
        in += 2;
    for (; *in; in++) {
        if (*in == ':')
            continue;
        if (!isxdigit((unsigned char)*in) || o == CF_SERIAL_HEX_MAX)
            return -1;
        out[o++] = (char)tolower((unsigned char)*in);
    }
    out[o] = 0;
    return o ? 0 : -1;
}
