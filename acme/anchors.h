/* anchors.h — the operator's trust anchors as certforge-acme publishes
 * them (docs/acme.md "Trust anchors"): every active root, and the link
 * certificates of a CA rollover, from trust_anchors (a PEM file), served
 * as a PEM bundle and as PKCS#7 certs-only (the EST /cacerts form, RFC 7030
 * §4.1.3), each with an ETag. Reloaded on SIGHUP; a request holds the
 * version it started with. */
#ifndef CF_ACME_ANCHORS_H
#define CF_ACME_ANCHORS_H

#include <stddef.h>

#include "acme/acme.h"

typedef struct acme_anchors {
    char *pem;        /* the bundle, normalised (one PEM per certificate) */
    size_t pem_len;
    char *p7_b64;     /* PKCS#7 certs-only, DER, base64 (RFC 7030 §4.1.3) */
    size_t p7_len;
    char etag[70];    /* "\"<sha256 of the DER certificates>\"" */
    unsigned n_certs;
    int refs;         /* under the holder's lock */
} acme_anchors;

/* Load FILE: 0 with *out, or -1 with err (unreadable, no certificate, a
 * certificate that is not a CA). */
CF_WUR int acme_anchors_load(const char *file, acme_anchors **out, char *err, size_t errlen);
void acme_anchors_free(acme_anchors *a);

#endif
