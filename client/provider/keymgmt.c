/* keymgmt.c — KEYMGMT for certforged-held EC (P-256, P-384), RSA and
 * Ed25519 keys. The key data is the engine's key name and socket plus the
 * public key (an EVP_PKEY of the default provider in our own library
 * context). Parameters are answered from that public key; export hands
 * out the public part only; import makes a public-only key, which is what
 * OpenSSL 3.0 does to compare a certificate's key with ours
 * (X509_check_private_key → EVP_PKEY_eq → match). See provider-keymgmt(7). */
#include "client/provider/prov.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/x509.h>

#define SEL_KEYPAIR OSSL_KEYMGMT_SELECT_KEYPAIR
#define SEL_PUB OSSL_KEYMGMT_SELECT_PUBLIC_KEY
#define SEL_PRIV OSSL_KEYMGMT_SELECT_PRIVATE_KEY
#define SEL_PARAMS OSSL_KEYMGMT_SELECT_ALL_PARAMETERS

const char *cfp_keytype_name(enum cfp_keytype t)
{
    switch (t) {
    case CFP_KT_EC:
        return "EC";
    case CFP_KT_RSA:
        return "RSA";
    case CFP_KT_ED25519:
        return "ED25519";
    default:
        return "?";
    }
}

cfp_key *cfp_key_new(cfp_ctx *ctx)
{
    cfp_key *k = OPENSSL_zalloc(sizeof(*k));
    if (!k) {
        CFP_RAISE(ctx, CFP_R_INTERNAL, "out of memory");
        return NULL;
    }
    k->ctx = ctx;
    return k;
}

void cfp_key_free(cfp_key *k)
{
    if (!k)
        return;
    EVP_PKEY_free(k->pub);
    OPENSSL_free(k);
}

static enum cfp_keytype type_of(const EVP_PKEY *pub)
{
    if (EVP_PKEY_is_a(pub, "EC"))
        return CFP_KT_EC;
    if (EVP_PKEY_is_a(pub, "RSA"))
        return CFP_KT_RSA;
    if (EVP_PKEY_is_a(pub, "ED25519"))
        return CFP_KT_ED25519;
    return CFP_KT_NONE;
}

int cfp_key_set_public(cfp_key *k, const char *type, const uint8_t *spki, size_t len)
{
    const unsigned char *p = spki;
    EVP_PKEY *pub = d2i_PUBKEY_ex(NULL, &p, (long)len, k->ctx->libctx, NULL);
    if (!pub || p != spki + len) {
        EVP_PKEY_free(pub);
        CFP_RAISE(k->ctx, CFP_R_DAEMON_ERROR,
                  "key '%s': certforged sent a public key that does not parse", k->name);
        return -1;
    }
    enum cfp_keytype t = type_of(pub);
    bool ok = false;
    if (t == CFP_KT_EC) {
        char group[32] = "";
        EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL);
        ok = (strcmp(type, "ec-p256") == 0 && strcmp(group, "prime256v1") == 0) ||
             (strcmp(type, "ec-p384") == 0 && strcmp(group, "secp384r1") == 0);
    } else if (t == CFP_KT_RSA) {
        ok = strncmp(type, "rsa-", 4) == 0;
    } else if (t == CFP_KT_ED25519) {
        ok = strcmp(type, "ed25519") == 0;
    }
    if (!ok) {
        EVP_PKEY_free(pub);
        CFP_RAISE(k->ctx, CFP_R_KEY_TYPE,
                  "key '%s' is of type '%s', which the certforge provider does not handle "
                  "(ec-p256, ec-p384, rsa-*, ed25519)",
                  k->name, type);
        return -1;
    }
    EVP_PKEY_free(k->pub);
    k->pub = pub;
    k->type = t;
    k->bits = EVP_PKEY_get_bits(pub);
    return 0;
}

/* ------------------------------------------------------------ generic */

static void *km_new(void *provctx, enum cfp_keytype t)
{
    cfp_key *k = cfp_key_new(provctx);
    if (k)
        k->type = t;
    return k;
}

static void km_free(void *keydata)
{
    cfp_key_free(keydata);
}

static int km_has(const void *keydata, int selection)
{
    const cfp_key *k = keydata;
    if (!k)
        return 0;
    int ok = 1;
    if (selection & SEL_PUB)
        ok = ok && k->pub != NULL;
    if (selection & SEL_PRIV) /* held by certforged: a reference is what we have */
        ok = ok && k->name[0] != 0 && k->pub != NULL;
    if ((selection & OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS) && k->type == CFP_KT_EC)
        ok = ok && k->pub != NULL;
    return ok;
}

static int km_match(const void *keydata1, const void *keydata2, int selection)
{
    const cfp_key *a = keydata1, *b = keydata2;
    if (!a || !b || a->type != b->type || !a->pub || !b->pub)
        return 0;
    if (selection & SEL_KEYPAIR)
        return EVP_PKEY_eq(a->pub, b->pub) == 1;
    if (selection & SEL_PARAMS) {
        int r = EVP_PKEY_parameters_eq(a->pub, b->pub);
        return r == 1 || r == -2; /* -2: the type has no parameters */
    }
    return 1;
}

static int km_get_params(void *keydata, OSSL_PARAM params[])
{
    cfp_key *k = keydata;
    if (!k || !k->pub)
        return 0;
    /* Everything but the default digest is the public key's own answer. */
    if (!EVP_PKEY_get_params(k->pub, params))
        return 0;
    OSSL_PARAM *p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_DEFAULT_DIGEST);
    /* The curve's hash, as certforge signs with it (docs/configuration.md
     * profiles.hash); OpenSSL's default is SHA-256 for every curve. */
    if (p && k->type == CFP_KT_EC && k->bits == 384 && !OSSL_PARAM_set_utf8_string(p, "SHA384"))
        return 0;
    return 1;
}

static const OSSL_PARAM *km_gettable(void *provctx, const char *name)
{
    cfp_ctx *ctx = provctx;
    EVP_KEYMGMT *km = EVP_KEYMGMT_fetch(ctx->libctx, name, NULL);
    /* The default provider's tables are static: valid after the free. */
    const OSSL_PARAM *r = km ? EVP_KEYMGMT_gettable_params(km) : NULL;
    EVP_KEYMGMT_free(km);
    return r;
}

static int km_import(void *keydata, int selection, const OSSL_PARAM params[])
{
    cfp_key *k = keydata;
    if (!k)
        return 0;
    if (OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PRIV_KEY) ||
        OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_D)) {
        CFP_RAISE(k->ctx, CFP_R_UNSUPPORTED,
                  "the certforge provider holds no private keys: import a public key, or use "
                  "another provider for software keys");
        return 0;
    }
    int sel = (selection & SEL_KEYPAIR) ? EVP_PKEY_PUBLIC_KEY : EVP_PKEY_KEY_PARAMETERS;
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(k->ctx->libctx, cfp_keytype_name(k->type), NULL);
    EVP_PKEY *pub = NULL;
    int ok = pc && EVP_PKEY_fromdata_init(pc) > 0 &&
             EVP_PKEY_fromdata(pc, &pub, sel, (OSSL_PARAM *)params) > 0;
    EVP_PKEY_CTX_free(pc);
    if (!ok)
        return 0;
    EVP_PKEY_free(k->pub);
    k->pub = pub;
    k->bits = EVP_PKEY_get_bits(pub);
    k->name[0] = 0; /* public only: cannot sign */
    return 1;
}

static int km_export(void *keydata, int selection, OSSL_CALLBACK *cb, void *cbarg)
{
    cfp_key *k = keydata;
    /* No raise here: OpenSSL 3.0 asks for everything (SELECT_ALL) when it
     * moves a key to another provider and then falls back to importing
     * the other side's public key into ours; an error on the stack would
     * outlive that success. docs/provider.md says what is refused. */
    if (!k || !k->pub || (selection & SEL_PRIV))
        return 0;
    int sel = (selection & SEL_PUB) ? EVP_PKEY_PUBLIC_KEY : EVP_PKEY_KEY_PARAMETERS;
    OSSL_PARAM *params = NULL;
    if (EVP_PKEY_todata(k->pub, sel, &params) <= 0)
        return 0;
    int r = cb(params, cbarg);
    OSSL_PARAM_free(params);
    return r;
}

static void *km_load(const void *reference, size_t reference_sz, enum cfp_keytype t)
{
    if (!reference || reference_sz != sizeof(cfp_key *))
        return NULL;
    cfp_key *k = *(cfp_key *const *)reference;
    if (!k || k->type != t)
        return NULL;
    /* Take ownership: the STORE loader frees what is not taken. */
    *(cfp_key **)reference = NULL;
    return k;
}

static void *km_dup(const void *keydata, int selection)
{
    const cfp_key *k = keydata;
    if (!k)
        return NULL;
    cfp_key *d = cfp_key_new(k->ctx);
    if (!d)
        return NULL;
    memcpy(d, k, sizeof(*d));
    if (d->pub && !EVP_PKEY_up_ref(d->pub)) {
        OPENSSL_free(d);
        return NULL;
    }
    if (!(selection & SEL_PRIV))
        d->name[0] = 0;
    return d;
}

/* ------------------------------------------------------------ per type */

static const OSSL_PARAM ec_types[] = {
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_ENCODING, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_END,
};
static const OSSL_PARAM rsa_types[] = {
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
    OSSL_PARAM_END,
};
static const OSSL_PARAM ed_types[] = {
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_END,
};

#define KEYMGMT(pfx, T, NAME, OPNAME, TYPES)                                                       \
    static OSSL_FUNC_keymgmt_new_fn pfx##_new;                                                     \
    static OSSL_FUNC_keymgmt_free_fn pfx##_free;                                                   \
    static OSSL_FUNC_keymgmt_has_fn pfx##_has;                                                     \
    static OSSL_FUNC_keymgmt_match_fn pfx##_match;                                                 \
    static OSSL_FUNC_keymgmt_get_params_fn pfx##_get_params;                                       \
    static OSSL_FUNC_keymgmt_gettable_params_fn pfx##_gettable_params;                             \
    static OSSL_FUNC_keymgmt_import_fn pfx##_import;                                               \
    static OSSL_FUNC_keymgmt_import_types_fn pfx##_import_types;                                   \
    static OSSL_FUNC_keymgmt_export_fn pfx##_export;                                               \
    static OSSL_FUNC_keymgmt_export_types_fn pfx##_export_types;                                   \
    static OSSL_FUNC_keymgmt_load_fn pfx##_load;                                                   \
    static OSSL_FUNC_keymgmt_dup_fn pfx##_dup;                                                     \
    static OSSL_FUNC_keymgmt_query_operation_name_fn pfx##_query;                                  \
    static void *pfx##_new(void *provctx)                                                          \
    {                                                                                              \
        return km_new(provctx, T);                                                                 \
    }                                                                                              \
    static void pfx##_free(void *kd)                                                               \
    {                                                                                              \
        km_free(kd);                                                                               \
    }                                                                                              \
    static int pfx##_has(const void *kd, int sel)                                                  \
    {                                                                                              \
        return km_has(kd, sel);                                                                    \
    }                                                                                              \
    static int pfx##_match(const void *a, const void *b, int sel)                                  \
    {                                                                                              \
        return km_match(a, b, sel);                                                                \
    }                                                                                              \
    static int pfx##_get_params(void *kd, OSSL_PARAM params[])                                     \
    {                                                                                              \
        return km_get_params(kd, params);                                                          \
    }                                                                                              \
    static const OSSL_PARAM *pfx##_gettable_params(void *provctx)                                  \
    {                                                                                              \
        return km_gettable(provctx, NAME);                                                         \
    }                                                                                              \
    static int pfx##_import(void *kd, int sel, const OSSL_PARAM params[])                          \
    {                                                                                              \
        return km_import(kd, sel, params);                                                         \
    }                                                                                              \
    static const OSSL_PARAM *pfx##_import_types(int sel)                                           \
    {                                                                                              \
        return (sel & SEL_PRIV) ? NULL : TYPES;                                                    \
    }                                                                                              \
    static int pfx##_export(void *kd, int sel, OSSL_CALLBACK *cb, void *cbarg)                     \
    {                                                                                              \
        return km_export(kd, sel, cb, cbarg);                                                      \
    }                                                                                              \
    static const OSSL_PARAM *pfx##_export_types(int sel)                                           \
    {                                                                                              \
        return (sel & SEL_PRIV) ? NULL : TYPES;                                                    \
    }                                                                                              \
    static void *pfx##_load(const void *ref, size_t ref_sz)                                        \
    {                                                                                              \
        return km_load(ref, ref_sz, T);                                                            \
    }                                                                                              \
    static void *pfx##_dup(const void *kd, int sel)                                                \
    {                                                                                              \
        return km_dup(kd, sel);                                                                    \
    }                                                                                              \
    static const char *pfx##_query(int operation_id)                                               \
    {                                                                                              \
        return operation_id == OSSL_OP_SIGNATURE ? OPNAME : NULL;                                  \
    }                                                                                              \
    const OSSL_DISPATCH cfp_##pfx##_keymgmt_functions[] = {                                        \
        {OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))pfx##_new},                                        \
        {OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))pfx##_free},                                      \
        {OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))pfx##_has},                                        \
        {OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))pfx##_match},                                    \
        {OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))pfx##_get_params},                          \
        {OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))pfx##_gettable_params},                \
        {OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))pfx##_import},                                  \
        {OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))pfx##_import_types},                      \
        {OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))pfx##_export},                                  \
        {OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))pfx##_export_types},                      \
        {OSSL_FUNC_KEYMGMT_LOAD, (void (*)(void))pfx##_load},                                      \
        {OSSL_FUNC_KEYMGMT_DUP, (void (*)(void))pfx##_dup},                                        \
        {OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (void (*)(void))pfx##_query},                     \
        {0, NULL},                                                                                 \
    };

KEYMGMT(ec, CFP_KT_EC, "EC", "ECDSA", ec_types)
KEYMGMT(rsa, CFP_KT_RSA, "RSA", "RSA", rsa_types)
KEYMGMT(ed25519, CFP_KT_ED25519, "ED25519", "ED25519", ed_types)
