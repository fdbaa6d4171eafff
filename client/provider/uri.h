/* uri.h — the provider's `certforge:` URI (docs/provider.md):
 *
 *   certforge:key=<name>[;socket=<path>]
 *
 * Attributes are separated by ';', in any order, each at most once; `key`
 * is required. Values may use %XX escapes (e.g. %3B for ';' in a path).
 * Strict: an unknown attribute, a duplicate, an empty or over-long value, a
 * bad escape, a NUL or a control character is refused with a message. The
 * parser reads nothing else (no environment): the default socket is the
 * caller's business (cfp_uri_default_socket). */
#ifndef CFP_URI_H
#define CFP_URI_H

#include <stdbool.h>
#include <stddef.h>

#include "common/compiler.h"

#define CFP_URI_SCHEME "certforge"
#define CFP_URI_MAX 1024   /* whole URI, octets */
#define CFP_KEY_MAX 64     /* a key name in certforged's config (configuration.md) */
#define CFP_SOCKET_MAX 107 /* sizeof(sun_path) - 1 */
#define CFP_DEFAULT_SOCKET "/run/certforge/certforged.sock" /* as the certforge CLI */

typedef struct cfp_uri {
    char key[CFP_KEY_MAX + 1];       /* 1-64 of A-Z a-z 0-9 . _ - */
    char socket[CFP_SOCKET_MAX + 1]; /* "" when the URI names none */
} cfp_uri;

/* 0 and *out filled, or -1 with err saying what is wrong (*out undefined). */
CF_WUR int cfp_uri_parse(const char *uri, cfp_uri *out, char *err, size_t errlen);

/* True when `uri` starts with the scheme (any case) and ':'. */
bool cfp_uri_is_certforge(const char *uri);

/* The socket to use: the URI's, else $CERTFORGE_SOCKET (if set and not
 * empty), else CFP_DEFAULT_SOCKET. Copies at most CFP_SOCKET_MAX octets;
 * -1 when the environment's path is too long. */
CF_WUR int cfp_uri_socket(const cfp_uri *u, char *buf, size_t len, char *err, size_t errlen);

#endif
