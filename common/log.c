/* log.c — see log.h. */
#include "common/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static const char *const names[CF_LOG__MAX] = {"error", "warning", "info", "debug"};

const char *cf_log_level_name(cf_log_level l)
{
    return (unsigned)l < CF_LOG__MAX ? names[l] : "?";
}

static _Atomic int log_level = CF_LOG_INFO;

void cf_log_set_level(cf_log_level lvl)
{
    atomic_store(&log_level, (int)lvl);
}

void cf_log(cf_log_level lvl, const char *event, const char *fmt, ...)
{
    if ((int)lvl > atomic_load(&log_level))
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n =
        snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 ts.tv_nsec / 1000000, names[(unsigned)lvl < CF_LOG__MAX ? lvl : 0], event);
    if (n < 0)
        return;
    if (fmt && fmt[0] && (size_t)n < sizeof(line) - 2) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += m;
    }
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

const char *cf_log_quote(const char *s, char *buf, size_t len)
{
    size_t o = 0;
    if (len < 3) {
        if (len)
            buf[0] = 0;
        return buf;
    }
    buf[o++] = '"';
    for (; *s && o + 3 < len; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else {
            buf[o++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
        }
    }
    buf[o++] = '"';
    buf[o] = 0;
    return buf;
}
