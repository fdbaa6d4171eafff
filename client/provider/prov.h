/* prov.h — what the parts of the certforge OpenSSL provider share: the
 * provider context, the key object, error raising, the connection pool.
 * Internal to client/provider; OSSL_provider_init is the only export. */
#ifndef CFP_PROV_H
#define CFP_PROV_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/evp.h>

#include "client/certforge.h"
#include "client/provider/uri.h"
#include "common/compiler.h"

/* Reasons on the OpenSSL error stack (get_reason_strings). Never renumbered. */
enum {
    CFP_R_UNREACHABLE = 1, /* connect failed: names the socket */
    CFP_R_UNAUTHORIZED,    /* UNAUTHORIZED from certforged */
    CFP_R_UNKNOWN_KEY,     /* NOT_FOUND, or not in the KEYS answer */
    CFP_R_HSM_FAILURE,     /* HSM_FAILURE: CK_RV and message */
    CFP_R_BUSY,            /* BUSY */
    CFP_R_BAD_URI,         /* cfp_uri_parse refused it */
    CFP_R_DAEMON_ERROR,    /* any other status, or a broken connection */
    CFP_R_UNSUPPORTED,     /* a parameter value the engine cannot do */
    CFP_R_KEY_TYPE,        /* a key type the provider does not handle */
    CFP_R_NO_ENGINE_KEY,   /* a public key imported into the provider: cannot sign */
    CFP_R_PRIVATE_EXPORT,  /* private key material asked for */
    CFP_R_INTERNAL,        /* allocation or OpenSSL failure */
    CFP_R__MAX
};

enum cfp_keytype { CFP_KT_NONE = 0, CFP_KT_EC, CFP_KT_RSA, CFP_KT_ED25519 };

typedef struct cfp_pool cfp_pool;

/* One per OSSL_provider_init (one per library context loading us). */
typedef struct cfp_ctx {
    const OSSL_CORE_HANDLE *handle;
    OSSL_FUNC_core_new_error_fn *new_error;
    OSSL_FUNC_core_set_error_debug_fn *set_error_debug;
    OSSL_FUNC_core_vset_error_fn *vset_error;
    OSSL_LIB_CTX *libctx; /* private: the default provider only, for digests and keys */
    OSSL_PROVIDER *deflt;
    EVP_MD *md[3]; /* SHA-256, SHA-384, SHA-512: fetched once, not per signature */
    cfp_pool *pool;
} cfp_ctx;

/* KEYMGMT key data: an engine key reference plus its public key. A key
 * made by import() (e.g. to compare with a certificate's key) has no name
 * and can only be matched, never used to sign. */
typedef struct cfp_key {
    cfp_ctx *ctx;
    enum cfp_keytype type;
    char name[CFP_KEY_MAX + 1]; /* "" for a public-only key */
    char socket[CFP_SOCKET_MAX + 1];
    EVP_PKEY *pub; /* in ctx->libctx */
    int bits;
} cfp_key;

/* ------------------------------------------------------------- errors */
void cfp_raise(const cfp_ctx *ctx, int reason, const char *file, int line, const char *func,
               const char *fmt, ...) __attribute__((format(printf, 6, 7)));
#define CFP_RAISE(ctx, reason, ...)                                                                \
    cfp_raise((ctx), (reason), OPENSSL_FILE, OPENSSL_LINE, OPENSSL_FUNC, __VA_ARGS__)
/* A daemon answer that is not OK, on the error stack with what to do. */
void cfp_raise_status(const cfp_ctx *ctx, const char *what, const cfp_key *key,
                      const cf_response *r);

/* ------------------------------------------------------------ connections
 * A small pool per provider context: connections keyed by socket path, one
 * user at a time, reconnected in a forked child (the client refuses to
 * work there). The lock covers list operations only, never I/O. */
cfp_pool *cfp_pool_new(void);
void cfp_pool_free(cfp_pool *p);
/* Run one blocking request: fn(client, arg, &resp). On a broken connection
 * (fn returns -1) the connection is dropped and the request retried once
 * on a fresh one. On success (0) *resp is valid until cfp_pool_release. */
typedef int (*cfp_req_fn)(cf_client *c, void *arg, cf_response *out);
typedef struct cfp_lease {
    cf_client *c;
    char socket[CFP_SOCKET_MAX + 1];
} cfp_lease;
CF_WUR int cfp_pool_call(cfp_ctx *ctx, const char *socket, cfp_req_fn fn, void *arg,
                         cfp_lease *lease, cf_response *resp);
void cfp_pool_release(cfp_ctx *ctx, cfp_lease *lease);

#define CFP_TIMEOUT_MS 30000

/* ------------------------------------------------------------ key objects */
cfp_key *cfp_key_new(cfp_ctx *ctx);
void cfp_key_free(cfp_key *k);
/* Fill k from a KEYS entry: type string and SPKI DER. 0, or -1 raised. */
int cfp_key_set_public(cfp_key *k, const char *type, const uint8_t *spki, size_t len);
const char *cfp_keytype_name(enum cfp_keytype t); /* "EC", "RSA", "ED25519" */

/* ------------------------------------------------------------ dispatch */
extern const OSSL_DISPATCH cfp_store_functions[];
extern const OSSL_DISPATCH cfp_ec_keymgmt_functions[];
extern const OSSL_DISPATCH cfp_rsa_keymgmt_functions[];
extern const OSSL_DISPATCH cfp_ed25519_keymgmt_functions[];
extern const OSSL_DISPATCH cfp_ecdsa_signature_functions[];
extern const OSSL_DISPATCH cfp_rsa_signature_functions[];
extern const OSSL_DISPATCH cfp_ed25519_signature_functions[];

#endif
