/* HSM administration: token inventory, key pair generation and deletion,
 * public key export, certificate objects. See hsm_admin.h. */
#include "hsm/hsm_admin.h"
#include "common/serial.h"
#include "hsm/hsm_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#define MAX_OBJS 256 /* per C_FindObjects round */

static const CK_BBOOL ck_true = CK_TRUE, ck_false = CK_FALSE;

/* --- small helpers --------------------------------------------------------- */

/* RFC 7512 §2.3 query values: keep unreserved characters plus '/', ':'
 * and '@' (readable paths), percent-encode everything else. */
static void query_escape(const char *in, char *out, size_t cap)
{
    static const char hx[] = "0123456789ABCDEF";
    size_t j = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && j + 4 < cap; p++) {
        unsigned char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr("-._~/:@", c)) {
            out[j++] = (char)c;
        } else {
            out[j++] = '%';
            out[j++] = hx[c >> 4];
            out[j++] = hx[c & 15];
        }
    }
    out[j] = '\0';
}

/* Format a URI naming the token (label and serial) and, if cls is not
 * (CK_ULONG)-1, an object. The token fields are copied blank-padded, as
 * p11-kit wants them. */
static int format_uri(const CK_TOKEN_INFO *ti, CK_OBJECT_CLASS cls, const uint8_t *id,
                      size_t id_len, const char *label, char *out, size_t cap, hsm_err *err)
{
    P11KitUri *u = p11_kit_uri_new();
    if (!u)
        return hsm_fail(err, CKR_HOST_MEMORY, "out of memory");
    CK_TOKEN_INFO *ut = p11_kit_uri_get_token_info(u);
    memcpy(ut->label, ti->label, sizeof(ut->label));
    memcpy(ut->serialNumber, ti->serialNumber, sizeof(ut->serialNumber));
    int type = P11_KIT_URI_FOR_TOKEN;
    if (cls != (CK_OBJECT_CLASS)-1) {
        CK_ATTRIBUTE a[] = {{CKA_CLASS, &cls, sizeof(cls)},
                            {CKA_ID, (void *)id, id_len},
                            {CKA_LABEL, (void *)label, label ? strlen(label) : 0}};
        p11_kit_uri_set_attribute(u, &a[0]);
        if (id_len)
            p11_kit_uri_set_attribute(u, &a[1]);
        if (label && *label)
            p11_kit_uri_set_attribute(u, &a[2]);
        type = P11_KIT_URI_FOR_OBJECT_ON_TOKEN;
    }
    char *s = NULL;
    int rc = p11_kit_uri_format(u, type, &s);
    p11_kit_uri_free(u);
    if (rc != P11_KIT_URI_OK || !s) {
        free(s);
        return hsm_fail(err, CKR_GENERAL_ERROR, "cannot format a PKCS#11 URI: %s",
                        p11_kit_uri_message(rc));
    }
    if (strlen(s) >= cap) {
        free(s);
        return hsm_fail(err, CKR_GENERAL_ERROR, "PKCS#11 URI too long");
    }
    memcpy(out, s, strlen(s) + 1);
    free(s);
    return 0;
}

static CK_ULONG count_objects(hsm_token *t, CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                              int *failed, hsm_err *err)
{
    CK_OBJECT_HANDLE h[1];
    CK_ULONG cnt = 0;
    if (hsm_find(t, s, tmpl, n, h, 1, &cnt, err) != 0)
        *failed = 1;
    return cnt;
}

static bool get_bool(hsm_token *t, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type)
{
    CK_BBOOL v = CK_FALSE;
    CK_ATTRIBUTE a = {type, &v, sizeof(v)};
    if (t->f->C_GetAttributeValue(s, o, &a, 1) != CKR_OK)
        return false;
    return v == CK_TRUE;
}

/* Fill d from the private key object o. */
static int describe(hsm_token *t, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, hsm_key_desc *d,
                    hsm_err *err)
{
    memset(d, 0, sizeof(*d));
    uint8_t *v = NULL, *id = NULL;
    CK_ULONG vlen = 0, idlen = 0;
    hsm_err ignore;
    int rc = -1;
    char *label = NULL;
    if (hsm_get_attr(t, s, o, CKA_LABEL, &v, &vlen, &ignore) == 0) {
        label = malloc(vlen + 1);
        if (!label) {
            hsm_fail(err, CKR_HOST_MEMORY, "out of memory");
            goto out;
        }
        memcpy(label, v, vlen);
        label[vlen] = '\0';
        snprintf(d->label, sizeof(d->label), "%s", label);
    }
    if (hsm_get_attr(t, s, o, CKA_ID, &id, &idlen, &ignore) != 0)
        idlen = 0;
    d->id_len = idlen < sizeof(d->id) ? idlen : sizeof(d->id);
    if (idlen)
        memcpy(d->id, id, d->id_len);
    cf_hex_encode(d->id, d->id_len, d->id_hex, sizeof(d->id_hex));

    d->type_known = hsm_key_info(t, s, o, &d->type, &d->bits, &ignore) == 0;
    d->sensitive = get_bool(t, s, o, CKA_SENSITIVE);
    d->extractable = get_bool(t, s, o, CKA_EXTRACTABLE);
    d->always_sensitive = get_bool(t, s, o, CKA_ALWAYS_SENSITIVE);
    d->never_extractable = get_bool(t, s, o, CKA_NEVER_EXTRACTABLE);
    d->local = get_bool(t, s, o, CKA_LOCAL);
    d->sign = get_bool(t, s, o, CKA_SIGN);
    d->decrypt = get_bool(t, s, o, CKA_DECRYPT);
    d->unwrap = get_bool(t, s, o, CKA_UNWRAP);
    d->derive = get_bool(t, s, o, CKA_DERIVE);

    if (idlen) {
        CK_OBJECT_CLASS pc = CKO_PUBLIC_KEY, cc = CKO_CERTIFICATE;
        CK_ATTRIBUTE tp[] = {{CKA_CLASS, &pc, sizeof(pc)}, {CKA_ID, id, idlen}};
        CK_ATTRIBUTE tc[] = {{CKA_CLASS, &cc, sizeof(cc)}, {CKA_ID, id, idlen}};
        int failed = 0;
        d->has_public = count_objects(t, s, tp, 2, &failed, err) > 0;
        d->has_cert = count_objects(t, s, tc, 2, &failed, err) > 0;
        if (failed)
            goto out;
    }
    if (format_uri(&t->info, CKO_PRIVATE_KEY, id, idlen, label, d->uri, sizeof(d->uri), err) != 0)
        goto out;
    rc = 0;
out:
    free(v);
    free(id);
    free(label);
    return rc;
}

/* The one private key the URI selects, on session s. */
static int find_private(hsm_token *t, CK_SESSION_HANDLE s, const char *key_uri,
                        CK_OBJECT_HANDLE *out, hsm_err *err)
{
    P11KitUri *u = NULL;
    int rc = -1;
    if (hsm_uri_parse(key_uri, &u, err) != 0)
        return -1;
    if (!p11_kit_uri_match_token_info(u, &t->info)) {
        char lab[33];
        CK_TOKEN_INFO *ti = p11_kit_uri_get_token_info(u);
        hsm_trim(lab, ti->label, sizeof(ti->label));
        hsm_fail(err, CKR_ARGUMENTS_BAD, "key URI %s names token '%s', not '%s'", key_uri, lab,
                 t->label);
        goto out;
    }
    CK_ATTRIBUTE tmpl[4];
    CK_ULONG n = hsm_uri_object_template(u, tmpl, 3), m = 0;
    bool has_sel = false;
    for (CK_ULONG i = 0; i < n; i++) {
        if (tmpl[i].type == CKA_CLASS)
            continue; /* a type= in the URI: the key is the private half anyway */
        if (tmpl[i].type == CKA_LABEL || tmpl[i].type == CKA_ID)
            has_sel = true;
        tmpl[m++] = tmpl[i];
    }
    if (!has_sel) {
        hsm_fail(err, CKR_ARGUMENTS_BAD, "key URI %s names no key: add object= or id=", key_uri);
        goto out;
    }
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    tmpl[m++] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
    CK_OBJECT_HANDLE found[2];
    CK_ULONG cnt = 0;
    if (hsm_find(t, s, tmpl, m, found, 2, &cnt, err) != 0)
        goto out;
    if (cnt == 0) {
        hsm_fail(err, CKR_OBJECT_HANDLE_INVALID,
                 "key not found: %s (no private key on token '%s' matches)", key_uri, t->label);
        goto out;
    }
    if (cnt > 1) {
        hsm_fail(err, CKR_ARGUMENTS_BAD,
                 "%s matches more than one private key on token '%s'; add id= or object=", key_uri,
                 t->label);
        goto out;
    }
    *out = found[0];
    rc = 0;
out:
    p11_kit_uri_free(u);
    return rc;
}

static void close_session(hsm_token *t, CK_SESSION_HANDLE s)
{
    if (s != CK_INVALID_HANDLE)
        t->f->C_CloseSession(s);
}

/* --- URIs ------------------------------------------------------------------ */

static bool field_set(const CK_UTF8CHAR *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] != ' ' && v[i] != '\0')
            return true;
    return false;
}

static bool uri_selects_token(P11KitUri *u)
{
    const CK_TOKEN_INFO *ti = p11_kit_uri_get_token_info(u);
    return field_set(ti->label, sizeof(ti->label)) ||
           field_set(ti->serialNumber, sizeof(ti->serialNumber)) ||
           field_set(ti->model, sizeof(ti->model)) ||
           field_set(ti->manufacturerID, sizeof(ti->manufacturerID));
}

int hsm_uri_facts_get(const char *uri, hsm_uri_facts *out, hsm_err *err)
{
    P11KitUri *u = NULL;
    if (hsm_uri_parse(uri, &u, err) != 0)
        return -1;
    memset(out, 0, sizeof(*out));
    const char *mp = p11_kit_uri_get_module_path(u);
    if (mp)
        snprintf(out->module_path, sizeof(out->module_path), "%s", mp);
    out->selects_token = uri_selects_token(u);
    out->has_pin_source = p11_kit_uri_get_pin_source(u) != NULL;
    out->names_object = p11_kit_uri_get_attribute(u, CKA_LABEL) != NULL ||
                        p11_kit_uri_get_attribute(u, CKA_ID) != NULL;
    p11_kit_uri_free(u);
    return 0;
}

int hsm_uri_token_for_key(const char *token_uri, const char *key_uri, char **out, hsm_err *err)
{
    *out = NULL;
    P11KitUri *tu = NULL, *ku = NULL;
    int rc = -1;
    if (!token_uri) {
        if (hsm_uri_parse(key_uri, &ku, err) != 0)
            return -1;
        p11_kit_uri_free(ku);
        *out = strdup(key_uri);
        return *out ? 0 : hsm_fail(err, CKR_HOST_MEMORY, "out of memory");
    }
    if (hsm_uri_parse(token_uri, &tu, err) != 0 || hsm_uri_parse(key_uri, &ku, err) != 0)
        goto out;
    if (uri_selects_token(tu) || !uri_selects_token(ku)) {
        *out = strdup(token_uri);
        rc = *out ? 0 : hsm_fail(err, CKR_HOST_MEMORY, "out of memory");
        goto out;
    }
    memcpy(p11_kit_uri_get_token_info(tu), p11_kit_uri_get_token_info(ku), sizeof(CK_TOKEN_INFO));
    int frc = p11_kit_uri_format(tu, P11_KIT_URI_FOR_ANY, out);
    if (frc != P11_KIT_URI_OK) {
        free(*out);
        *out = NULL;
        hsm_fail(err, CKR_GENERAL_ERROR, "cannot format a PKCS#11 URI: %s",
                 p11_kit_uri_message(frc));
        goto out;
    }
    rc = 0;
out:
    if (tu)
        p11_kit_uri_free(tu);
    if (ku)
        p11_kit_uri_free(ku);
    return rc;
}

/* --- tokens of a module ----------------------------------------------------- */

static const struct {
    CK_FLAGS bit;
    const char *name;
} token_flags[] = {
    {CKF_RNG, "rng"},
    {CKF_WRITE_PROTECTED, "write-protected"},
    {CKF_LOGIN_REQUIRED, "login-required"},
    {CKF_USER_PIN_INITIALIZED, "user-pin-initialized"},
    {CKF_RESTORE_KEY_NOT_NEEDED, "restore-key-not-needed"},
    {CKF_CLOCK_ON_TOKEN, "clock-on-token"},
    {CKF_PROTECTED_AUTHENTICATION_PATH, "protected-authentication-path"},
    {CKF_DUAL_CRYPTO_OPERATIONS, "dual-crypto-operations"},
    {CKF_TOKEN_INITIALIZED, "token-initialized"},
    {CKF_SECONDARY_AUTHENTICATION, "secondary-authentication"},
    {CKF_USER_PIN_COUNT_LOW, "user-pin-count-low"},
    {CKF_USER_PIN_FINAL_TRY, "user-pin-final-try"},
    {CKF_USER_PIN_LOCKED, "user-pin-locked"},
    {CKF_USER_PIN_TO_BE_CHANGED, "user-pin-to-be-changed"},
    {CKF_SO_PIN_COUNT_LOW, "so-pin-count-low"},
    {CKF_SO_PIN_FINAL_TRY, "so-pin-final-try"},
    {CKF_SO_PIN_LOCKED, "so-pin-locked"},
    {CKF_SO_PIN_TO_BE_CHANGED, "so-pin-to-be-changed"},
};

size_t hsm_token_flag_names(CK_FLAGS flags, const char **names, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < sizeof(token_flags) / sizeof(token_flags[0]) && n < max; i++)
        if (flags & token_flags[i].bit)
            names[n++] = token_flags[i].name;
    return n;
}

static long count_of(CK_ULONG v)
{
    if (v == CK_UNAVAILABLE_INFORMATION || v > (CK_ULONG)0x7fffffff)
        return -1;
    return (long)v;
}

int hsm_module_tokens(const char *module_path, hsm_token_desc **out, size_t *n, hsm_err *err)
{
    *out = NULL;
    *n = 0;
    const char *path = module_path ? module_path : CF_SOFTHSM_MODULE;
    hsm_module *m = NULL;
    CK_SLOT_ID *slots = NULL;
    hsm_token_desc *d = NULL;
    int rc = -1;
    if (hsm_module_acquire(path, &m, err) != 0)
        return -1;
    CK_ULONG ns = 0;
    CK_RV rv = m->f->C_GetSlotList(CK_TRUE, NULL, &ns);
    if (rv == CKR_OK) {
        slots = calloc(ns ? ns : 1, sizeof(*slots));
        if (!slots) {
            hsm_fail(err, CKR_HOST_MEMORY, "out of memory");
            goto out;
        }
        rv = m->f->C_GetSlotList(CK_TRUE, slots, &ns);
    }
    if (rv != CKR_OK) {
        hsm_fail(err, rv, "PKCS#11 module %s: C_GetSlotList failed (%s)", path, hsm_rv_name(rv));
        goto out;
    }
    d = calloc(ns ? ns : 1, sizeof(*d));
    if (!d) {
        hsm_fail(err, CKR_HOST_MEMORY, "out of memory");
        goto out;
    }
    char mp[600];
    query_escape(path, mp, sizeof(mp));
    size_t k = 0;
    for (CK_ULONG i = 0; i < ns; i++) {
        CK_TOKEN_INFO ti;
        if (m->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue; /* removed since C_GetSlotList */
        hsm_token_desc *e = &d[k++];
        hsm_trim(e->label, ti.label, sizeof(ti.label));
        hsm_trim(e->serial, ti.serialNumber, sizeof(ti.serialNumber));
        hsm_trim(e->model, ti.model, sizeof(ti.model));
        hsm_trim(e->manufacturer, ti.manufacturerID, sizeof(ti.manufacturerID));
        e->flags = ti.flags;
        e->initialized = (ti.flags & CKF_TOKEN_INITIALIZED) != 0;
        e->sessions_open = count_of(ti.ulSessionCount);
        e->rw_sessions_open = count_of(ti.ulRwSessionCount);
        e->sessions_max =
            ti.ulMaxSessionCount == CK_EFFECTIVELY_INFINITE ? 0 : count_of(ti.ulMaxSessionCount);
        e->rw_sessions_max = ti.ulMaxRwSessionCount == CK_EFFECTIVELY_INFINITE
                                 ? 0
                                 : count_of(ti.ulMaxRwSessionCount);
        e->free_sessions =
            e->sessions_max > 0 && e->sessions_open >= 0 ? e->sessions_max - e->sessions_open : -1;
        if (e->initialized) {
            char tu[400];
            if (format_uri(&ti, (CK_OBJECT_CLASS)-1, NULL, 0, NULL, tu, sizeof(tu), err) != 0)
                goto out;
            snprintf(e->uri, sizeof(e->uri), "%s?module-path=%s", tu, mp);
        }
    }
    *out = d;
    *n = k;
    d = NULL;
    rc = 0;
out:
    free(d);
    free(slots);
    hsm_module_release(m);
    return rc;
}

/* --- keys ------------------------------------------------------------------- */

int hsm_keys_list(hsm_token *t, hsm_key_desc **out, size_t *n, hsm_err *err)
{
    *out = NULL;
    *n = 0;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    hsm_key_desc *d = NULL;
    CK_OBJECT_HANDLE *h = NULL;
    size_t nh = 0, cap = 0;
    int rc = -1;
    if (hsm_token_session(t, false, &s, err) != 0)
        return -1;
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)}};
    CK_RV rv = t->f->C_FindObjectsInit(s, tmpl, 1);
    if (rv != CKR_OK) {
        hsm_fail(err, rv, "token '%s': C_FindObjectsInit failed (%s)", t->label, hsm_rv_name(rv));
        goto out;
    }
    for (;;) {
        if (nh == cap) {
            size_t nc = cap ? cap * 2 : 64;
            CK_OBJECT_HANDLE *nhp = realloc(h, nc * sizeof(*h));
            if (!nhp) {
                t->f->C_FindObjectsFinal(s);
                hsm_fail(err, CKR_HOST_MEMORY, "out of memory");
                goto out;
            }
            h = nhp;
            cap = nc;
        }
        CK_ULONG got = 0;
        rv = t->f->C_FindObjects(s, h + nh, (CK_ULONG)(cap - nh), &got);
        if (rv != CKR_OK) {
            t->f->C_FindObjectsFinal(s);
            hsm_fail(err, rv, "token '%s': C_FindObjects failed (%s)", t->label, hsm_rv_name(rv));
            goto out;
        }
        if (got == 0)
            break;
        nh += got;
    }
    t->f->C_FindObjectsFinal(s);
    d = calloc(nh ? nh : 1, sizeof(*d));
    if (!d) {
        hsm_fail(err, CKR_HOST_MEMORY, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nh; i++)
        if (describe(t, s, h[i], &d[i], err) != 0)
            goto out;
    *out = d;
    *n = nh;
    d = NULL;
    rc = 0;
out:
    free(d);
    free(h);
    close_session(t, s);
    return rc;
}

int hsm_key_get(hsm_token *t, const char *key_uri, hsm_key_desc *out, hsm_err *err)
{
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE o;
    if (hsm_token_session(t, false, &s, err) != 0)
        return -1;
    int rc = -1;
    if (find_private(t, s, key_uri, &o, err) == 0 && describe(t, s, o, out, err) == 0)
        rc = 0;
    close_session(t, s);
    return rc;
}

EVP_PKEY *hsm_key_public(hsm_token *t, const char *key_uri, hsm_err *err)
{
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE o;
    EVP_PKEY *pk = NULL;
    if (hsm_token_session(t, false, &s, err) != 0)
        return NULL;
    if (find_private(t, s, key_uri, &o, err) == 0)
        pk = hsm_public_key(t, s, o, err);
    close_session(t, s);
    return pk;
}

/* --- generation --------------------------------------------------------------- */

static const char *const gen_names[HSM_GEN__MAX] = {
    [HSM_GEN_EC_P256] = "ec-p256",   [HSM_GEN_EC_P384] = "ec-p384",
    [HSM_GEN_RSA_2048] = "rsa-2048", [HSM_GEN_RSA_3072] = "rsa-3072",
    [HSM_GEN_RSA_4096] = "rsa-4096", [HSM_GEN_ED25519] = "ed25519",
};

const char *hsm_gen_type_name(hsm_gen_type g)
{
    return (unsigned)g < HSM_GEN__MAX ? gen_names[g] : "unknown";
}

const char *hsm_gen_type_list(void)
{
    return "ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096, ed25519";
}

int hsm_gen_type_parse(const char *name, hsm_gen_type *out, hsm_err *err)
{
    for (int i = 0; i < HSM_GEN__MAX; i++)
        if (name && strcmp(name, gen_names[i]) == 0) {
            *out = (hsm_gen_type)i;
            return 0;
        }
    return hsm_fail(err, CKR_ARGUMENTS_BAD, "unsupported key type '%s' (valid: %s)",
                    name ? name : "", hsm_gen_type_list());
}

/* CKA_EC_PARAMS: the curve's OBJECT IDENTIFIER, DER (RFC 5480 §2.1.1.1;
 * Ed25519 1.3.101.112, RFC 8410 §3). */
static const uint8_t gen_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const uint8_t gen_p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
static const uint8_t gen_ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
static const uint8_t rsa_e65537[] = {0x01, 0x00, 0x01};

/* Destroy every object carrying both label and id: after a failed or
 * rejected generation these can only be ours, since generation refuses
 * to start while any object has that label. */
static void destroy_by_label_id(hsm_token *t, CK_SESSION_HANDLE s, const char *label,
                                const uint8_t *id, size_t id_len)
{
    CK_ATTRIBUTE tmpl[] = {{CKA_LABEL, (void *)label, strlen(label)}, {CKA_ID, (void *)id, id_len}};
    CK_OBJECT_HANDLE h[16];
    CK_ULONG cnt = 0;
    hsm_err ignore;
    if (hsm_find(t, s, tmpl, 2, h, 16, &cnt, &ignore) != 0)
        return;
    for (CK_ULONG i = 0; i < cnt; i++)
        t->f->C_DestroyObject(s, h[i]);
}

int hsm_key_generate(hsm_token *t, hsm_gen_type g, const char *label, const uint8_t *id_in,
                     size_t id_len, hsm_key_desc *out, hsm_err *err)
{
    if ((unsigned)g >= HSM_GEN__MAX)
        return hsm_fail(err, CKR_ARGUMENTS_BAD, "unsupported key type #%d (valid: %s)", (int)g,
                        hsm_gen_type_list());
    if (!label || !*label)
        return hsm_fail(err, CKR_ARGUMENTS_BAD, "a key needs a label");
    if (strlen(label) > 128)
        return hsm_fail(err, CKR_ARGUMENTS_BAD, "key label is longer than 128 bytes");
    if (id_len > 32)
        return hsm_fail(err, CKR_ARGUMENTS_BAD, "key id is longer than 32 bytes");

    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
    bool attempted = false;
    int rc = -1;
    uint8_t id[32];
    char idhex[65];
    if (hsm_token_session(t, true, &s, err) != 0)
        return -1;

    /* Refuse clashes: the label and the id must both be new on the token. */
    CK_ATTRIBUTE by_label[] = {{CKA_LABEL, (void *)label, strlen(label)}};
    int failed = 0;
    if (count_objects(t, s, by_label, 1, &failed, err) > 0) {
        hsm_fail(err, CKR_ARGUMENTS_BAD,
                 "token '%s' already has an object labelled '%s'; choose another label "
                 "(nothing was changed)",
                 t->label, label);
        goto out;
    }
    if (failed)
        goto out;
    if (id_len) {
        memcpy(id, id_in, id_len);
        cf_hex_encode(id, id_len, idhex, sizeof(idhex));
        CK_ATTRIBUTE by_id[] = {{CKA_ID, id, id_len}};
        if (count_objects(t, s, by_id, 1, &failed, err) > 0) {
            hsm_fail(err, CKR_ARGUMENTS_BAD,
                     "token '%s' already has an object with id %s; choose another id "
                     "(nothing was changed)",
                     t->label, idhex);
            goto out;
        }
        if (failed)
            goto out;
    } else {
        id_len = 8;
        for (int tries = 0;; tries++) {
            if (RAND_bytes(id, (int)id_len) != 1) {
                hsm_fail(err, CKR_GENERAL_ERROR, "cannot draw a random key id (RAND_bytes)");
                goto out;
            }
            CK_ATTRIBUTE by_id[] = {{CKA_ID, id, id_len}};
            if (count_objects(t, s, by_id, 1, &failed, err) == 0 && !failed)
                break;
            if (failed || tries == 4) {
                if (!failed)
                    hsm_fail(err, CKR_GENERAL_ERROR, "cannot find an unused random key id");
                goto out;
            }
        }
        cf_hex_encode(id, id_len, idhex, sizeof(idhex));
    }

    CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_ULONG modbits = 0;
    const uint8_t *params = NULL;
    size_t plen = 0;
    switch (g) {
    case HSM_GEN_EC_P256:
        params = gen_p256, plen = sizeof(gen_p256);
        break;
    case HSM_GEN_EC_P384:
        params = gen_p384, plen = sizeof(gen_p384);
        break;
    case HSM_GEN_ED25519:
        mech.mechanism = CKM_EC_EDWARDS_KEY_PAIR_GEN;
        params = gen_ed25519, plen = sizeof(gen_ed25519);
        break;
    default:
        mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
        modbits = g == HSM_GEN_RSA_2048 ? 2048 : g == HSM_GEN_RSA_3072 ? 3072 : 4096;
        break;
    }
    size_t ll = strlen(label);
    CK_ATTRIBUTE pubt[10] = {
        {CKA_TOKEN, (void *)&ck_true, sizeof(CK_BBOOL)},
        {CKA_PRIVATE, (void *)&ck_false, sizeof(CK_BBOOL)},
        {CKA_VERIFY, (void *)&ck_true, sizeof(CK_BBOOL)},
        {CKA_ENCRYPT, (void *)&ck_false, sizeof(CK_BBOOL)},
        {CKA_WRAP, (void *)&ck_false, sizeof(CK_BBOOL)},
        {CKA_LABEL, (void *)label, ll},
        {CKA_ID, id, id_len},
    };
    CK_ULONG npub = 7;
    if (params) {
        pubt[npub++] = (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *)params, plen};
    } else {
        pubt[npub++] = (CK_ATTRIBUTE){CKA_MODULUS_BITS, &modbits, sizeof(modbits)};
        pubt[npub++] = (CK_ATTRIBUTE){CKA_PUBLIC_EXPONENT, (void *)rsa_e65537, sizeof(rsa_e65537)};
    }
    CK_ATTRIBUTE privt[] = {
        {CKA_TOKEN, (void *)&ck_true, sizeof(CK_BBOOL)},
        {CKA_PRIVATE, (void *)&ck_true, sizeof(CK_BBOOL)},
        {CKA_SENSITIVE, (void *)&ck_true, sizeof(CK_BBOOL)},
        {CKA_EXTRACTABLE, (void *)&ck_false, sizeof(CK_BBOOL)},
        {CKA_SIGN, (void *)&ck_true, sizeof(CK_BBOOL)},
        {CKA_DECRYPT, (void *)&ck_false, sizeof(CK_BBOOL)},
        {CKA_UNWRAP, (void *)&ck_false, sizeof(CK_BBOOL)},
        {CKA_DERIVE, (void *)&ck_false, sizeof(CK_BBOOL)},
        {CKA_LABEL, (void *)label, ll},
        {CKA_ID, id, id_len},
    };
    attempted = true;
    CK_RV rv = t->f->C_GenerateKeyPair(s, &mech, pubt, npub, privt,
                                       sizeof(privt) / sizeof(privt[0]), &pub, &priv);
    if (rv != CKR_OK) {
        if (rv == CKR_MECHANISM_INVALID)
            hsm_fail(err, rv, "token '%s' cannot generate %s keys (%s)", t->label,
                     hsm_gen_type_name(g), hsm_rv_name(rv));
        else
            hsm_fail(err, rv, "token '%s': generating the %s key pair '%s' failed (%s)", t->label,
                     hsm_gen_type_name(g), label, hsm_rv_name(rv));
        goto out;
    }
    hsm_key_desc d;
    if (describe(t, s, priv, &d, err) != 0)
        goto out;
    /* Trust, but check: a token that silently ignored the template would
     * leave a CA key exportable. */
    if (!d.sensitive || d.extractable || !d.sign || d.decrypt || d.unwrap || d.derive) {
        hsm_fail(err, CKR_TEMPLATE_INCONSISTENT,
                 "token '%s' did not honour the key template (sensitive=%d extractable=%d "
                 "sign=%d decrypt=%d unwrap=%d derive=%d); the key pair was destroyed",
                 t->label, d.sensitive, d.extractable, d.sign, d.decrypt, d.unwrap, d.derive);
        goto out;
    }
    if (!d.type_known) {
        hsm_fail(err, CKR_GENERAL_ERROR,
                 "token '%s' generated a key of an unexpected type; the key pair was destroyed",
                 t->label);
        goto out;
    }
    *out = d;
    rc = 0;
out:
    if (rc != 0 && attempted) {
        /* Leave nothing half-created behind. */
        if (priv != CK_INVALID_HANDLE)
            t->f->C_DestroyObject(s, priv);
        if (pub != CK_INVALID_HANDLE)
            t->f->C_DestroyObject(s, pub);
        destroy_by_label_id(t, s, label, id, id_len);
    }
    close_session(t, s);
    return rc;
}

/* --- objects that belong to a key ------------------------------------------- */

/* Objects of class cls that belong to private key o: same CKA_ID, and for
 * an empty id also the same label. */
static int related(hsm_token *t, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_OBJECT_CLASS cls,
                   CK_OBJECT_HANDLE *out, CK_ULONG cap, CK_ULONG *count, hsm_err *err)
{
    uint8_t *id = NULL, *label = NULL;
    CK_ULONG idlen = 0, llen = 0;
    hsm_err ignore;
    int rc = -1;
    if (hsm_get_attr(t, s, o, CKA_ID, &id, &idlen, &ignore) != 0)
        idlen = 0;
    CK_ATTRIBUTE tmpl[3] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, id, idlen}};
    CK_ULONG n = 2;
    if (idlen == 0) {
        if (hsm_get_attr(t, s, o, CKA_LABEL, &label, &llen, &ignore) != 0 || llen == 0) {
            *count = 0; /* neither id nor label: nothing can be matched safely */
            rc = 0;
            goto out;
        }
        tmpl[n++] = (CK_ATTRIBUTE){CKA_LABEL, label, llen};
    }
    rc = hsm_find(t, s, tmpl, n, out, cap, count, err);
out:
    free(id);
    free(label);
    return rc;
}

int hsm_key_delete(hsm_token *t, const char *key_uri, unsigned *npub, unsigned *ncert, hsm_err *err)
{
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE o, pubs[MAX_OBJS], certs[MAX_OBJS];
    CK_ULONG np = 0, nc = 0;
    int rc = -1;
    if (hsm_token_session(t, true, &s, err) != 0)
        return -1;
    if (find_private(t, s, key_uri, &o, err) != 0 ||
        related(t, s, o, CKO_PUBLIC_KEY, pubs, MAX_OBJS, &np, err) != 0 ||
        related(t, s, o, CKO_CERTIFICATE, certs, MAX_OBJS, &nc, err) != 0)
        goto out;
    /* Certificates and public halves first: if the private key cannot be
     * destroyed, the key still exists and the operator can retry. */
    for (CK_ULONG i = 0; i < nc + np; i++) {
        CK_OBJECT_HANDLE h = i < nc ? certs[i] : pubs[i - nc];
        CK_RV rv = t->f->C_DestroyObject(s, h);
        if (rv != CKR_OK) {
            hsm_fail(err, rv, "token '%s': destroying the key's %s object failed (%s)", t->label,
                     i < nc ? "certificate" : "public key", hsm_rv_name(rv));
            goto out;
        }
    }
    CK_RV rv = t->f->C_DestroyObject(s, o);
    if (rv != CKR_OK) {
        hsm_fail(err, rv, "token '%s': destroying the private key failed (%s)", t->label,
                 hsm_rv_name(rv));
        goto out;
    }
    if (npub)
        *npub = (unsigned)np;
    if (ncert)
        *ncert = (unsigned)nc;
    rc = 0;
out:
    close_session(t, s);
    return rc;
}

int hsm_cert_store(hsm_token *t, const char *key_uri, const hsm_cert_der *c, bool replace,
                   hsm_err *err)
{
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE o, old[MAX_OBJS], created = CK_INVALID_HANDLE;
    CK_ULONG nold = 0;
    uint8_t *id = NULL, *label = NULL;
    CK_ULONG idlen = 0, llen = 0;
    hsm_err ignore;
    int rc = -1;
    if (!c || !c->cert || !c->cert_len || !c->subject || !c->issuer || !c->serial)
        return hsm_fail(err, CKR_ARGUMENTS_BAD, "certificate DER pieces missing");
    if (hsm_token_session(t, true, &s, err) != 0)
        return -1;
    if (find_private(t, s, key_uri, &o, err) != 0)
        goto out;
    if (hsm_get_attr(t, s, o, CKA_ID, &id, &idlen, &ignore) != 0 || idlen == 0) {
        hsm_fail(err, CKR_ARGUMENTS_BAD,
                 "key %s has no CKA_ID: a certificate object could not be tied to it", key_uri);
        goto out;
    }
    if (hsm_get_attr(t, s, o, CKA_LABEL, &label, &llen, &ignore) != 0)
        llen = 0;
    if (related(t, s, o, CKO_CERTIFICATE, old, MAX_OBJS, &nold, err) != 0)
        goto out;
    if (nold && !replace) {
        hsm_fail(err, CKR_ARGUMENTS_BAD,
                 "key %s already has a certificate object on token '%s' (nothing was changed)",
                 key_uri, t->label);
        goto out;
    }
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_CERTIFICATE_TYPE ct = CKC_X_509;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_CERTIFICATE_TYPE, &ct, sizeof(ct)},
        {CKA_TOKEN, (void *)&ck_true, sizeof(CK_BBOOL)},
        {CKA_PRIVATE, (void *)&ck_false, sizeof(CK_BBOOL)},
        {CKA_ID, id, idlen},
        {CKA_VALUE, (void *)c->cert, c->cert_len},
        {CKA_SUBJECT, (void *)c->subject, c->subject_len},
        {CKA_ISSUER, (void *)c->issuer, c->issuer_len},
        {CKA_SERIAL_NUMBER, (void *)c->serial, c->serial_len},
        {CKA_LABEL, label, llen},
    };
    CK_ULONG n = sizeof(tmpl) / sizeof(tmpl[0]) - (llen ? 0 : 1);
    CK_RV rv = t->f->C_CreateObject(s, tmpl, n, &created);
    if (rv != CKR_OK) {
        hsm_fail(err, rv, "token '%s': storing the certificate object failed (%s)", t->label,
                 hsm_rv_name(rv));
        goto out;
    }
    for (CK_ULONG i = 0; i < nold; i++) {
        rv = t->f->C_DestroyObject(s, old[i]);
        if (rv != CKR_OK) {
            t->f->C_DestroyObject(s, created);
            hsm_fail(err, rv,
                     "token '%s': removing the old certificate object failed (%s); the new one "
                     "was not kept",
                     t->label, hsm_rv_name(rv));
            goto out;
        }
    }
    rc = 0;
out:
    free(id);
    free(label);
    close_session(t, s);
    return rc;
}

int hsm_cert_load(hsm_token *t, const char *key_uri, uint8_t **der, size_t *len, hsm_err *err)
{
    *der = NULL;
    *len = 0;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE o, certs[2];
    CK_ULONG nc = 0;
    int rc = -1;
    if (hsm_token_session(t, false, &s, err) != 0)
        return -1;
    if (find_private(t, s, key_uri, &o, err) != 0 ||
        related(t, s, o, CKO_CERTIFICATE, certs, 2, &nc, err) != 0)
        goto out;
    if (nc == 0) {
        hsm_fail(err, CKR_OBJECT_HANDLE_INVALID, "key %s has no certificate object on token '%s'",
                 key_uri, t->label);
        goto out;
    }
    if (nc > 1) {
        hsm_fail(err, CKR_ARGUMENTS_BAD,
                 "key %s has several certificate objects on token '%s'; expected one", key_uri,
                 t->label);
        goto out;
    }
    uint8_t *v = NULL;
    CK_ULONG vl = 0;
    if (hsm_get_attr(t, s, certs[0], CKA_VALUE, &v, &vl, err) != 0)
        goto out;
    *der = v;
    *len = vl;
    rc = 0;
out:
    close_session(t, s);
    return rc;
}

/* --- certificate objects, all of them --------------------------------------- */

void hsm_certs_free(hsm_cert_desc *d, size_t n)
{
    for (size_t i = 0; d && i < n; i++)
        free(d[i].der);
    free(d);
}

int hsm_certs_list(hsm_token *t, hsm_cert_desc **out, size_t *n, hsm_err *err)
{
    *out = NULL;
    *n = 0;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE h[256];
    CK_ULONG nh = 0;
    hsm_cert_desc *d = NULL;
    int rc = -1;
    if (hsm_token_session(t, false, &s, err) != 0)
        return -1;
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)}};
    if (hsm_find(t, s, tmpl, 1, h, 256, &nh, err) != 0)
        goto out;
    d = calloc(nh ? nh : 1, sizeof(*d));
    if (!d) {
        hsm_fail(err, CKR_HOST_MEMORY, "out of memory");
        goto out;
    }
    for (CK_ULONG i = 0; i < nh; i++) {
        hsm_cert_desc *c = &d[i];
        uint8_t *v = NULL;
        CK_ULONG vl = 0;
        hsm_err ignore;
        if (hsm_get_attr(t, s, h[i], CKA_LABEL, &v, &vl, &ignore) == 0) {
            snprintf(c->label, sizeof(c->label), "%.*s", (int)(vl < 255 ? vl : 255), (char *)v);
            free(v);
        }
        if (hsm_get_attr(t, s, h[i], CKA_ID, &v, &vl, &ignore) == 0) {
            c->id_len = vl < sizeof(c->id) ? vl : sizeof(c->id);
            memcpy(c->id, v, c->id_len);
            free(v);
        }
        cf_hex_encode(c->id, c->id_len, c->id_hex, sizeof(c->id_hex));
        if (hsm_get_attr(t, s, h[i], CKA_VALUE, &v, &vl, &ignore) == 0) {
            c->der = v;
            c->der_len = vl;
        }
        if (c->id_len) {
            CK_OBJECT_CLASS pc = CKO_PRIVATE_KEY;
            CK_ATTRIBUTE tp[] = {{CKA_CLASS, &pc, sizeof(pc)}, {CKA_ID, c->id, c->id_len}};
            int failed = 0;
            c->has_private = count_objects(t, s, tp, 2, &failed, err) > 0;
            if (failed)
                goto out;
        }
    }
    *out = d;
    *n = nh;
    d = NULL;
    rc = 0;
out:
    hsm_certs_free(d, nh);
    close_session(t, s);
    return rc;
}

/* --- token set-up ----------------------------------------------------------- */

int hsm_token_init(const char *module_path, const char *label, const char *so_pin, size_t so_len,
                   const char *pin, size_t pin_len, char serial[17], hsm_err *err)
{
    const char *path = module_path ? module_path : CF_SOFTHSM_MODULE;
    hsm_module *m = NULL;
    CK_SLOT_ID *slots = NULL, slot = 0;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    bool found = false, logged_in = false;
    int rc = -1;
    size_t ll = strlen(label);
    if (ll == 0 || ll > 32)
        return hsm_fail(err, CKR_ARGUMENTS_BAD, "token label '%s' must be 1 to 32 characters",
                        label);
    if (hsm_module_acquire(path, &m, err) != 0)
        return -1;
    CK_ULONG ns = 0;
    CK_RV rv = m->f->C_GetSlotList(CK_TRUE, NULL, &ns);
    if (rv == CKR_OK && !(slots = calloc(ns ? ns : 1, sizeof(*slots)))) {
        hsm_fail(err, CKR_HOST_MEMORY, "out of memory");
        goto out;
    }
    if (rv == CKR_OK)
        rv = m->f->C_GetSlotList(CK_TRUE, slots, &ns);
    if (rv != CKR_OK) {
        hsm_fail(err, rv, "PKCS#11 module %s: C_GetSlotList failed (%s)", path, hsm_rv_name(rv));
        goto out;
    }
    for (CK_ULONG i = 0; i < ns; i++) {
        CK_TOKEN_INFO ti;
        if (m->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue;
        if (ti.flags & CKF_TOKEN_INITIALIZED) {
            char lab[33];
            hsm_trim(lab, ti.label, sizeof(ti.label));
            if (strcmp(lab, label) == 0) {
                hsm_fail(err, CKR_ARGUMENTS_BAD,
                         "module %s already has a token labelled '%s' (serial %.16s); choose "
                         "another label (nothing was changed)",
                         path, label, (const char *)ti.serialNumber);
                goto out;
            }
        } else if (!found) {
            slot = slots[i];
            found = true;
        }
    }
    if (!found) {
        char hint[300];
        hsm_softhsm_hint(path, hint, sizeof(hint));
        hsm_fail(err, CKR_TOKEN_NOT_PRESENT,
                 "module %s has no token left to initialise (every token present is "
                 "initialised)%s",
                 path, hint);
        goto out;
    }
    CK_UTF8CHAR lab32[32];
    memset(lab32, ' ', sizeof(lab32));
    memcpy(lab32, label, ll);
    rv = m->f->C_InitToken(slot, (CK_UTF8CHAR_PTR)so_pin, so_len, lab32);
    if (rv != CKR_OK) {
        hsm_fail(err, rv, "C_InitToken '%s' failed (%s)", label, hsm_rv_name(rv));
        goto out;
    }
    /* SoftHSM moves a freshly initialised token to a new slot id: find it */
    free(slots);
    slots = NULL;
    found = false;
    rv = m->f->C_GetSlotList(CK_TRUE, NULL, &ns);
    if (rv == CKR_OK && (slots = calloc(ns ? ns : 1, sizeof(*slots))) != NULL)
        rv = m->f->C_GetSlotList(CK_TRUE, slots, &ns);
    for (CK_ULONG i = 0; rv == CKR_OK && slots && i < ns && !found; i++) {
        CK_TOKEN_INFO ti;
        char lab[33];
        if (m->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK || !(ti.flags & CKF_TOKEN_INITIALIZED))
            continue;
        hsm_trim(lab, ti.label, sizeof(ti.label));
        if (strcmp(lab, label) == 0) {
            slot = slots[i];
            hsm_trim(serial, ti.serialNumber, sizeof(ti.serialNumber));
            found = true;
        }
    }
    if (!found) {
        hsm_fail(err, CKR_GENERAL_ERROR, "token '%s' was initialised but is not listed", label);
        goto out;
    }
    rv = m->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    if (rv == CKR_OK) {
        rv = m->f->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)so_pin, so_len);
        logged_in = rv == CKR_OK;
    }
    if (rv == CKR_OK)
        rv = m->f->C_InitPIN(s, (CK_UTF8CHAR_PTR)pin, pin_len);
    if (rv != CKR_OK) {
        hsm_fail(err, rv, "token '%s' initialised, but setting its user PIN failed (%s)", label,
                 hsm_rv_name(rv));
        goto out;
    }
    rc = 0;
out:
    if (logged_in)
        m->f->C_Logout(s);
    if (s != CK_INVALID_HANDLE)
        m->f->C_CloseSession(s);
    free(slots);
    hsm_module_release(m);
    return rc;
}

int hsm_token_change_pin(hsm_token *t, const char *new_pin, size_t new_len, hsm_err *err)
{
    char old[256];
    size_t ol = 0;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    int rc = -1;
    if (hsm_token_read_pin(t, old, sizeof(old), &ol, err) != 0)
        goto out;
    if (hsm_token_session(t, true, &s, err) != 0)
        goto out;
    CK_RV rv = t->f->C_SetPIN(s, (CK_UTF8CHAR_PTR)old, ol, (CK_UTF8CHAR_PTR)new_pin, new_len);
    if (rv != CKR_OK) {
        hsm_fail(err, rv, "token '%s': C_SetPIN failed (%s)%s", t->label, hsm_rv_name(rv),
                 rv == CKR_PIN_LEN_RANGE ? ": the new PIN's length is outside the token's range"
                 : rv == CKR_PIN_INVALID ? ": the token does not accept these characters"
                                         : "");
        goto out;
    }
    rc = 0;
out:
    OPENSSL_cleanse(old, sizeof(old));
    close_session(t, s);
    return rc;
}
