/* store.c — the STORE loader for `certforge:` URIs (provider-storemgmt(7)).
 * Loading asks certforged for its keys (KEYS), finds the named one and
 * hands OpenSSL a reference to a key object of our KEYMGMT, which
 * OSSL_STORE turns into an EVP_PKEY (OSSL_OBJECT_PARAM_REFERENCE). */
#include "client/provider/prov.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/params.h>
#include <openssl/store.h>

typedef struct cfp_store {
    cfp_ctx *ctx;
    cfp_uri uri;
    char socket[CFP_SOCKET_MAX + 1];
    int expect; /* OSSL_STORE_INFO_*, 0 = anything */
    bool eof;
} cfp_store;

static OSSL_FUNC_store_open_fn st_open;
static OSSL_FUNC_store_settable_ctx_params_fn st_settable;
static OSSL_FUNC_store_set_ctx_params_fn st_set;
static OSSL_FUNC_store_load_fn st_load;
static OSSL_FUNC_store_eof_fn st_eof;
static OSSL_FUNC_store_close_fn st_close;

static void *st_open(void *provctx, const char *uri)
{
    cfp_ctx *ctx = provctx;
    char err[300];
    cfp_uri u;
    if (cfp_uri_parse(uri, &u, err, sizeof(err)) != 0) {
        CFP_RAISE(ctx, CFP_R_BAD_URI, "%.200s: %s (docs/provider.md)", uri ? uri : "(null)", err);
        return NULL;
    }
    cfp_store *s = OPENSSL_zalloc(sizeof(*s));
    if (!s) {
        CFP_RAISE(ctx, CFP_R_INTERNAL, "out of memory");
        return NULL;
    }
    s->ctx = ctx;
    s->uri = u;
    if (cfp_uri_socket(&u, s->socket, sizeof(s->socket), err, sizeof(err)) != 0) {
        CFP_RAISE(ctx, CFP_R_BAD_URI, "%s", err);
        OPENSSL_free(s);
        return NULL;
    }
    return s;
}

static const OSSL_PARAM *st_settable(void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_int(OSSL_STORE_PARAM_EXPECT, NULL),
        OSSL_PARAM_END,
    };
    return p;
}

static int st_set(void *loaderctx, const OSSL_PARAM params[])
{
    cfp_store *s = loaderctx;
    const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_EXPECT);
    if (p && !OSSL_PARAM_get_int(p, &s->expect))
        return 0;
    return 1;
}

static int keys_req(cf_client *c, void *arg, cf_response *out)
{
    return cf_client_keys(c, CFP_TIMEOUT_MS, out);
}

static int st_load(void *loaderctx, OSSL_CALLBACK *object_cb, void *object_cbarg,
                   OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    cfp_store *s = loaderctx;
    cfp_ctx *ctx = s->ctx;
    int ret = 0;
    cfp_key *key = NULL;
    cfp_lease lease = {0};
    cf_response r;
    s->eof = true; /* one object per URI */
    if (s->expect != 0 && s->expect != OSSL_STORE_INFO_PKEY && s->expect != OSSL_STORE_INFO_PUBKEY)
        return 1; /* nothing of that kind here */
    if (cfp_pool_call(ctx, s->socket, keys_req, NULL, &lease, &r) != 0)
        goto out;
    if (r.status != CF_ST_OK) {
        if (r.status == CF_ST_UNAUTHORIZED)
            CFP_RAISE(ctx, CFP_R_UNAUTHORIZED,
                      "KEYS on %s: %.*s (this uid %u needs a grant with ops = [\"keys\", \"sign\"] "
                      "in certforged's config)",
                      s->socket, (int)(r.message.len > 200 ? 200 : r.message.len),
                      r.message.p ? r.message.p : "", (unsigned)getuid());
        else
            CFP_RAISE(ctx, CFP_R_DAEMON_ERROR, "KEYS on %s: %s: %.*s", s->socket,
                      cf_status_name(r.status), (int)(r.message.len > 200 ? 200 : r.message.len),
                      r.message.p ? r.message.p : "");
        goto out;
    }
    size_t want = strlen(s->uri.key);
    const cf_key *found = NULL;
    char names[256] = "";
    size_t nl = 0;
    for (unsigned i = 0; i < r.n_keys; i++) {
        const cf_key *k = &r.keys[i];
        if (k->name.len == want && memcmp(k->name.p, s->uri.key, want) == 0)
            found = k;
        if (nl < sizeof(names) - 1) {
            int w = snprintf(names + nl, sizeof(names) - nl, "%s%.*s", nl ? ", " : "",
                             (int)k->name.len, k->name.p);
            nl = w > 0 ? nl + (size_t)w : nl;
        }
    }
    if (!found) {
        CFP_RAISE(ctx, CFP_R_UNKNOWN_KEY, "no key '%s' on %s (certforged serves: %s)", s->uri.key,
                  s->socket, r.n_keys ? names : "none");
        goto out;
    }
    if (!(key = cfp_key_new(ctx)))
        goto out;
    snprintf(key->name, sizeof(key->name), "%s", s->uri.key);
    snprintf(key->socket, sizeof(key->socket), "%s", s->socket);
    char type[32];
    snprintf(type, sizeof(type), "%.*s", (int)found->type.len, found->type.p);
    if (cfp_key_set_public(key, type, found->spki.p, found->spki.len) != 0)
        goto out;
    cfp_pool_release(ctx, &lease);

    int objtype = OSSL_OBJECT_PKEY;
    OSSL_PARAM params[] = {
        OSSL_PARAM_int(OSSL_OBJECT_PARAM_TYPE, &objtype),
        OSSL_PARAM_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE, (char *)cfp_keytype_name(key->type), 0),
        OSSL_PARAM_octet_string(OSSL_OBJECT_PARAM_REFERENCE, &key, sizeof(key)),
        OSSL_PARAM_END,
    };
    /* Our KEYMGMT's load() takes the key (and NULLs `key`). */
    ret = object_cb(params, object_cbarg);
out:
    cfp_pool_release(ctx, &lease);
    cfp_key_free(key);
    return ret;
}

static int st_eof(void *loaderctx)
{
    const cfp_store *s = loaderctx;
    return s->eof;
}

static int st_close(void *loaderctx)
{
    OPENSSL_free(loaderctx);
    return 1;
}

const OSSL_DISPATCH cfp_store_functions[] = {
    {OSSL_FUNC_STORE_OPEN, (void (*)(void))st_open},
    {OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS, (void (*)(void))st_settable},
    {OSSL_FUNC_STORE_SET_CTX_PARAMS, (void (*)(void))st_set},
    {OSSL_FUNC_STORE_LOAD, (void (*)(void))st_load},
    {OSSL_FUNC_STORE_EOF, (void (*)(void))st_eof},
    {OSSL_FUNC_STORE_CLOSE, (void (*)(void))st_close},
    {0, NULL},
};
