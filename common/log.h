/* log.h — certforge's log lines: one line per event on stderr,
 *
 *   ts=2026-12-03T08:00:00.123Z level=info event=NAME key=value ...
 *
 * Thread-safe (one write(2) per line, at most 2 KiB). Values with spaces
 * or quotes are the caller's to quote (cf_log_quote). Never pass secrets.
 * docs/certforged.md lists the events certforged logs.
 */
#ifndef CF_LOG_H
#define CF_LOG_H

#include <stddef.h>

/* Levels, most severe first; the config's log.level names them. */
typedef enum cf_log_level {
    CF_LOG_ERROR,
    CF_LOG_WARNING,
    CF_LOG_INFO,
    CF_LOG_DEBUG,
    CF_LOG__MAX
} cf_log_level;
const char *cf_log_level_name(cf_log_level l); /* "error", "warning", "info", "debug"; "?" */

/* Lines above this level are dropped (default: info). Any thread. */
void cf_log_set_level(cf_log_level lvl);
__attribute__((format(printf, 3, 4))) void cf_log(cf_log_level lvl, const char *event,
                                                  const char *fmt, ...);
/* Quote s for a key=value line ("..." with \" and \\ escaped, control
 * characters as ?) into buf; returns buf. */
const char *cf_log_quote(const char *s, char *buf, size_t len);

#endif
