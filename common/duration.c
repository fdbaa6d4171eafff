/* duration.c — see duration.h. */
#include "common/duration.h"

#include <ctype.h>
#include <stdio.h>

int cf_parse_duration(const char *s, uint64_t *secs, char *err, size_t errlen)
{
    const uint64_t limit = 100ull * 365 * 86400;
    uint64_t total = 0;
    const char *p = s;
    if (!s || !*s) {
        snprintf(err, errlen, "empty duration");
        return -1;
    }
    while (*p) {
        if (!isdigit((unsigned char)*p)) {
            snprintf(err, errlen, "'%s' is not a duration such as \"90d\", \"12h\", \"3600s\"", s);
            return -1;
        }
        uint64_t v = 0;
        while (isdigit((unsigned char)*p)) {
            v = v * 10 + (uint64_t)(*p - '0');
            if (v > limit) {
                snprintf(err, errlen, "'%s' is longer than 100 years", s);
                return -1;
            }
            p++;
        }
        uint64_t unit;
        switch (*p) {
        case 's':
            unit = 1;
            break;
        case 'm':
            unit = 60;
            break;
        case 'h':
            unit = 3600;
            break;
        case 'd':
            unit = 86400;
            break;
        case 'w':
            unit = 7 * 86400;
            break;
        case '\0':
            snprintf(err, errlen, "'%s' lacks a unit (s, m, h, d or w)", s);
            return -1;
        default:
            snprintf(err, errlen, "'%s' has an unknown unit '%c' (use s, m, h, d or w)", s, *p);
            return -1;
        }
        p++;
        if (v > limit / unit || total + v * unit > limit) {
            snprintf(err, errlen, "'%s' is longer than 100 years", s);
            return -1;
        }
        total += v * unit;
    }
    *secs = total;
    return 0;
}
