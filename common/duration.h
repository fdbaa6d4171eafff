/* duration.h — durations as people write them in the config and on the
 * command line ("90d", "12h"): the config loader and `certforge issue
 * --validity` share this parser (which so needs neither libconfig nor
 * libpq). */
#ifndef CF_DURATION_H
#define CF_DURATION_H

#include <stddef.h>
#include <stdint.h>

#include "common/compiler.h"

/* "90d", "12h", "30m", "3600s", "2w", also sums such as "1d12h". A bare
 * number is refused (the unit must be explicit). Result in seconds, at
 * most 100 years. Returns 0, or -1 with a reason in err. */
CF_WUR int cf_parse_duration(const char *s, uint64_t *secs, char *err, size_t errlen);

#endif
