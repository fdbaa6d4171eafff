/* frontcert.h — the front end's own TLS certificate (docs/acme.md "TLS").
 * With tls.profile set, certforge-acme makes an EC P-256 key, asks
 * certforged for a certificate for tls.dns under that profile, and keeps
 * key (0600) and chain in tls.state_dir; it renews at tls.renew_at of the
 * lifetime (2/3 by default) with a new key and swaps the certificate for
 * new connections. ACME clients trust the operator's root. */
#ifndef CF_ACME_FRONTCERT_H
#define CF_ACME_FRONTCERT_H

#include <stdint.h>

#include "acme/issuer.h"
#include "acme/server.h"

typedef struct acme_frontcert {
    char key_path[4096], chain_path[4096];
    int64_t not_before, not_after, renew_at;
} acme_frontcert;

/* Reuse the kept certificate if it is before its renewal time, else issue
 * one. *ctx: a server SSL_CTX for it. */
CF_WUR int acme_frontcert_load_or_issue(const acme_cfg *cfg, acme_issuer *is, acme_frontcert *fc, SSL_CTX **ctx,
                                          char *err, size_t errlen);
/* Issue a new one now (renewal). */
CF_WUR int acme_frontcert_issue(const acme_cfg *cfg, acme_issuer *is, acme_frontcert *fc, SSL_CTX **ctx, char *err,
                                  size_t errlen);

#endif
