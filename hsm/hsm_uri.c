/* RFC 7512 PKCS#11 URIs, parsed by p11-kit. What this file adds: an error
 * that points at the attribute p11-kit rejected, and certforge's own rules
 * (no slot numbers, no pin-value, no unknown attributes). */
#include "hsm/hsm_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const query_known[] = {"module-path", "module-name", "pin-source", "pin-value",
                                          NULL};

static bool is_known_query(const char *attr, size_t keylen)
{
    for (const char *const *k = query_known; *k; k++)
        if (strlen(*k) == keylen && strncmp(attr, *k, keylen) == 0)
            return true;
    return false;
}

/* Check one attribute on its own: "pkcs11:" + path attribute, or
 * "pkcs11:?" + query attribute. Returns 0 if p11-kit accepts it. */
static int check_piece(const char *piece, size_t len, bool query, hsm_err *err)
{
    if (len == 0)
        return 0;
    const char *eq = memchr(piece, '=', len);
    size_t keylen = eq ? (size_t)(eq - piece) : len;
    if (!query && (keylen == 7 && strncmp(piece, "slot-id", 7) == 0))
        return hsm_fail(err, CKR_ARGUMENTS_BAD,
                        "PKCS#11 URI attribute '%.*s': select tokens by token= or serial=, "
                        "never by slot number (slot numbers change between runs)",
                        (int)len, piece);
    if (query && !is_known_query(piece, keylen))
        return hsm_fail(err, CKR_ARGUMENTS_BAD,
                        "PKCS#11 URI query attribute '%.*s' is not supported (use module-path, "
                        "pin-source)",
                        (int)len, piece);
    char buf[1024];
    int n = snprintf(buf, sizeof(buf), "pkcs11:%s%.*s", query ? "?" : "", (int)len, piece);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return hsm_fail(err, CKR_ARGUMENTS_BAD, "PKCS#11 URI attribute '%.40s...' is too long",
                        piece);
    P11KitUri *u = p11_kit_uri_new();
    if (!u)
        return hsm_fail(err, CKR_HOST_MEMORY, "out of memory");
    int rc = p11_kit_uri_parse(buf, P11_KIT_URI_FOR_ANY, u);
    bool unrec = rc == P11_KIT_URI_OK && p11_kit_uri_any_unrecognized(u);
    p11_kit_uri_free(u);
    if (rc != P11_KIT_URI_OK)
        return hsm_fail(err, CKR_ARGUMENTS_BAD, "malformed PKCS#11 URI at attribute '%.*s': %s",
                        (int)len, piece, p11_kit_uri_message(rc));
    if (unrec)
        return hsm_fail(err, CKR_ARGUMENTS_BAD,
                        "PKCS#11 URI attribute '%.*s' is not recognised (RFC 7512 path "
                        "attributes: token, manufacturer, serial, model, object, id, type)",
                        (int)len, piece);
    return 0;
}

int hsm_uri_parse(const char *text, P11KitUri **out, hsm_err *err)
{
    *out = NULL;
    if (!text || !*text)
        return hsm_fail(err, CKR_ARGUMENTS_BAD,
                        "no PKCS#11 URI given (use --token or set CERTFORGE_TOKEN)");
    if (strncmp(text, "pkcs11:", 7) != 0)
        return hsm_fail(err, CKR_ARGUMENTS_BAD,
                        "'%.60s' is not a PKCS#11 URI: it must start with 'pkcs11:'", text);
    /* Attribute by attribute first, so the error names the bad one. */
    const char *p = text + 7;
    bool query = false;
    while (*p) {
        size_t len = strcspn(p, query ? "&" : ";?");
        if (check_piece(p, len, query, err) != 0)
            return -1;
        p += len;
        if (*p == '?')
            query = true;
        if (*p)
            p++;
    }
    P11KitUri *u = p11_kit_uri_new();
    if (!u)
        return hsm_fail(err, CKR_HOST_MEMORY, "out of memory");
    int rc = p11_kit_uri_parse(text, P11_KIT_URI_FOR_ANY, u);
    if (rc != P11_KIT_URI_OK) {
        p11_kit_uri_free(u);
        return hsm_fail(err, CKR_ARGUMENTS_BAD, "malformed PKCS#11 URI: %s",
                        p11_kit_uri_message(rc));
    }
    if (p11_kit_uri_get_pin_value(u)) {
        p11_kit_uri_free(u);
        return hsm_fail(err, CKR_ARGUMENTS_BAD,
                        "PKCS#11 URI carries pin-value: PINs are never accepted inline; use "
                        "pin-source=file:/path (mode 0600) or pin-source=env:NAME");
    }
    *out = u;
    return 0;
}

CK_ULONG hsm_uri_object_template(P11KitUri *u, CK_ATTRIBUTE *tmpl, CK_ULONG max)
{
    static const CK_ATTRIBUTE_TYPE types[] = {CKA_LABEL, CKA_ID, CKA_CLASS};
    CK_ULONG n = 0;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]) && n < max; i++) {
        CK_ATTRIBUTE *a = p11_kit_uri_get_attribute(u, types[i]);
        if (a)
            tmpl[n++] = *a;
    }
    return n;
}
