/* provider.c — the certforge OpenSSL 3 provider's entry point: algorithm
 * tables, provider parameters, reason strings, errors (docs/provider.md). */
#include "client/provider/prov.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#define CFP_PROPS "provider=certforge"

static const OSSL_ALGORITHM cfp_stores[] = {
    {CFP_URI_SCHEME, CFP_PROPS, cfp_store_functions, "certforged-held keys (certforge:key=NAME)"},
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM cfp_keymgmts[] = {
    {"EC:id-ecPublicKey:1.2.840.10045.2.1", CFP_PROPS, cfp_ec_keymgmt_functions,
     "certforged-held EC key"},
    {"RSA:rsaEncryption:1.2.840.113549.1.1.1", CFP_PROPS, cfp_rsa_keymgmt_functions,
     "certforged-held RSA key"},
    {"ED25519:1.3.101.112", CFP_PROPS, cfp_ed25519_keymgmt_functions,
     "certforged-held Ed25519 key"},
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM cfp_signatures[] = {
    {"ECDSA", CFP_PROPS, cfp_ecdsa_signature_functions, "ECDSA signed by certforged"},
    {"RSA:rsaEncryption:1.2.840.113549.1.1.1", CFP_PROPS, cfp_rsa_signature_functions,
     "RSA PKCS#1 v1.5 / PSS signed by certforged"},
    {"ED25519:1.3.101.112", CFP_PROPS, cfp_ed25519_signature_functions,
     "Ed25519 signed by certforged"},
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ITEM cfp_reasons[] = {
    {CFP_R_UNREACHABLE, "certforged is not reachable"},
    {CFP_R_UNAUTHORIZED, "certforged refused: this peer is not granted sign on the key"},
    {CFP_R_UNKNOWN_KEY, "certforged has no such key"},
    {CFP_R_HSM_FAILURE, "the HSM failed to sign"},
    {CFP_R_BUSY, "certforged is busy"},
    {CFP_R_BAD_URI, "bad certforge URI"},
    {CFP_R_DAEMON_ERROR, "certforged error"},
    {CFP_R_UNSUPPORTED, "not supported by the certforge provider"},
    {CFP_R_KEY_TYPE, "unsupported key type"},
    {CFP_R_NO_ENGINE_KEY, "public key only: not a certforged key reference"},
    {CFP_R_PRIVATE_EXPORT, "private keys stay in the HSM: only the public key can be exported"},
    {CFP_R_INTERNAL, "internal error in the certforge provider"},
    {0, NULL},
};

void cfp_raise(const cfp_ctx *ctx, int reason, const char *file, int line, const char *func,
               const char *fmt, ...)
{
    if (!ctx || !ctx->new_error || !ctx->vset_error)
        return;
    va_list ap;
    va_start(ap, fmt);
    ctx->new_error(ctx->handle);
    if (ctx->set_error_debug)
        ctx->set_error_debug(ctx->handle, file, line, func);
    ctx->vset_error(ctx->handle, (uint32_t)reason, fmt, ap);
    va_end(ap);
}

void cfp_raise_status(const cfp_ctx *ctx, const char *what, const cfp_key *key,
                      const cf_response *r)
{
    int m = (int)(r->message.len > 300 ? 300 : r->message.len);
    const char *msg = r->message.p ? r->message.p : "";
    switch (r->status) {
    case CF_ST_UNAUTHORIZED:
        CFP_RAISE(ctx, CFP_R_UNAUTHORIZED,
                  "%s: key '%s' on %s: %.*s (add a grant { uid = %u; ops = [\"sign\", \"keys\"]; "
                  "keys = [\"%s\"]; } to certforged's config)",
                  what, key->name, key->socket, m, msg, (unsigned)getuid(), key->name);
        break;
    case CF_ST_NOT_FOUND:
        CFP_RAISE(ctx, CFP_R_UNKNOWN_KEY,
                  "%s: key '%s' on %s: %.*s (certforge:key= must name "
                  "a key in certforged's config)",
                  what, key->name, key->socket, m, msg);
        break;
    case CF_ST_HSM_FAILURE:
        CFP_RAISE(ctx, CFP_R_HSM_FAILURE, "%s: key '%s' on %s: CK_RV 0x%08lx: %.*s", what,
                  key->name, key->socket, (unsigned long)r->detail, m, msg);
        break;
    case CF_ST_BUSY:
        CFP_RAISE(ctx, CFP_R_BUSY, "%s: key '%s' on %s: %.*s (retry later)", what, key->name,
                  key->socket, m, msg);
        break;
    case CF_ST_POLICY_DENIED:
        CFP_RAISE(ctx, CFP_R_UNSUPPORTED, "%s: key '%s' on %s: POLICY_DENIED: %.*s", what,
                  key->name, key->socket, m, msg);
        break;
    default:
        CFP_RAISE(ctx, CFP_R_DAEMON_ERROR, "%s: key '%s' on %s: %s: %.*s", what, key->name,
                  key->socket, cf_status_name(r->status), m, msg);
    }
}

/* ------------------------------------------------------------ provider */

static OSSL_FUNC_provider_teardown_fn cfp_teardown;
static OSSL_FUNC_provider_gettable_params_fn cfp_gettable_params;
static OSSL_FUNC_provider_get_params_fn cfp_get_params;
static OSSL_FUNC_provider_query_operation_fn cfp_query;
static OSSL_FUNC_provider_get_reason_strings_fn cfp_get_reason_strings;

static void cfp_teardown(void *provctx)
{
    cfp_ctx *ctx = provctx;
    if (!ctx)
        return;
    cfp_pool_free(ctx->pool);
    for (int i = 0; i < 3; i++)
        EVP_MD_free(ctx->md[i]);
    OSSL_PROVIDER_unload(ctx->deflt);
    OSSL_LIB_CTX_free(ctx->libctx);
    OPENSSL_free(ctx);
}

static const OSSL_PARAM *cfp_gettable_params(void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_NAME, OSSL_PARAM_UTF8_PTR, NULL, 0),
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_VERSION, OSSL_PARAM_UTF8_PTR, NULL, 0),
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_BUILDINFO, OSSL_PARAM_UTF8_PTR, NULL, 0),
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_STATUS, OSSL_PARAM_INTEGER, NULL, 0),
        OSSL_PARAM_END,
    };
    return p;
}

static int cfp_get_params(void *provctx, OSSL_PARAM params[])
{
    OSSL_PARAM *p;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME)) &&
        !OSSL_PARAM_set_utf8_ptr(p, "certforge provider"))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION)) &&
        !OSSL_PARAM_set_utf8_ptr(p, CFP_VERSION))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO)) &&
        !OSSL_PARAM_set_utf8_ptr(p, "certforge " CFP_VERSION " (signs through certforged)"))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS)) && !OSSL_PARAM_set_int(p, 1))
        return 0;
    return 1;
}

static const OSSL_ALGORITHM *cfp_query(void *provctx, int operation_id, int *no_cache)
{
    *no_cache = 0;
    switch (operation_id) {
    case OSSL_OP_STORE:
        return cfp_stores;
    case OSSL_OP_KEYMGMT:
        return cfp_keymgmts;
    case OSSL_OP_SIGNATURE:
        return cfp_signatures;
    default:
        return NULL;
    }
}

static const OSSL_ITEM *cfp_get_reason_strings(void *provctx)
{
    return cfp_reasons;
}

static const OSSL_DISPATCH cfp_dispatch[] = {
    {OSSL_FUNC_PROVIDER_TEARDOWN, (void (*)(void))cfp_teardown},
    {OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, (void (*)(void))cfp_gettable_params},
    {OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void))cfp_get_params},
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))cfp_query},
    {OSSL_FUNC_PROVIDER_GET_REASON_STRINGS, (void (*)(void))cfp_get_reason_strings},
    {0, NULL},
};

OSSL_provider_init_fn OSSL_provider_init __attribute__((visibility("default")));

int OSSL_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                       const OSSL_DISPATCH **out, void **provctx)
{
    cfp_ctx *ctx = OPENSSL_zalloc(sizeof(*ctx));
    if (!ctx)
        return 0;
    ctx->handle = handle;
    for (; in && in->function_id != 0; in++) {
        switch (in->function_id) {
        case OSSL_FUNC_CORE_NEW_ERROR:
            ctx->new_error = OSSL_FUNC_core_new_error(in);
            break;
        case OSSL_FUNC_CORE_SET_ERROR_DEBUG:
            ctx->set_error_debug = OSSL_FUNC_core_set_error_debug(in);
            break;
        case OSSL_FUNC_CORE_VSET_ERROR:
            ctx->vset_error = OSSL_FUNC_core_vset_error(in);
            break;
        default:
            break;
        }
    }
    /* Digests, public keys and PSS/ECDSA encodings are OpenSSL's default
     * provider's, in a library context of our own: never our own
     * algorithms again through the caller's context (no recursion). */
    ctx->libctx = OSSL_LIB_CTX_new();
    if (!ctx->libctx || !(ctx->deflt = OSSL_PROVIDER_load(ctx->libctx, "default")) ||
        !(ctx->md[0] = EVP_MD_fetch(ctx->libctx, "SHA2-256", NULL)) ||
        !(ctx->md[1] = EVP_MD_fetch(ctx->libctx, "SHA2-384", NULL)) ||
        !(ctx->md[2] = EVP_MD_fetch(ctx->libctx, "SHA2-512", NULL)) ||
        !(ctx->pool = cfp_pool_new())) {
        cfp_teardown(ctx);
        return 0;
    }
    *out = cfp_dispatch;
    *provctx = ctx;
    return 1;
}
