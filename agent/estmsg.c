/* estmsg.c — EST messages (estmsg.h). */
#include "agent/estmsg.h"

#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acme/jws.h"
#include "acme/tkauth.h" /* acme_uuid_ok */

static const char *const err_names[EST_E__MAX] = {
    [EST_OK] = "ok",
    [EST_E_BAD_ENCODING] = "bad_encoding",
    [EST_E_BAD_CSR] = "bad_csr",
    [EST_E_BAD_KEY] = "bad_key",
    [EST_E_FOREIGN_NAME] = "foreign_name",
    [EST_E_MISSING_NAME] = "missing_name",
    [EST_E_NAME_TYPE] = "name_type",
    [EST_E_REENROLL_NAMES] = "reenroll_names",
};

const char *est_err_name(est_err e)
{
    return e >= 0 && e < EST_E__MAX ? err_names[e] : "internal";
}

int est_err_status(est_err e)
{
    switch (e) {
    case EST_E_BAD_ENCODING:
    case EST_E_BAD_CSR:
    case EST_E_BAD_KEY:
        return 400;
    case EST_OK:
        return 200;
    default:
        return 403;
    }
}

/* ------------------------------------------------------------ base64 */

static int b64v(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long est_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    size_t o = 0, chars = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            continue;
        if (c == '=') {
            pad++;
            chars++;
            if (pad > 2)
                return -1;
            continue;
        }
        if (pad)
            return -1; /* data after padding */
        int v = b64v(c);
        if (v < 0)
            return -1;
        chars++;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return -1;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    if (o == 0 || (pad && chars % 4 != 0) || chars % 4 == 1)
        return -1;
    if (bits && (acc & ((1u << bits) - 1)))
        return -1; /* non-zero trailing bits: one encoding per octet string */
    return (long)o;
}

char *est_b64_encode(const uint8_t *in, size_t n, size_t *out_len)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t chars = (n + 2) / 3 * 4;
    size_t cap = chars + (chars / 64 + 1) * 2 + 1;
    char *o = malloc(cap);
    if (!o)
        return NULL;
    size_t k = 0, line = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        o[k++] = a[(v >> 18) & 63];
        o[k++] = a[(v >> 12) & 63];
        o[k++] = i + 1 < n ? a[(v >> 6) & 63] : '=';
        o[k++] = i + 2 < n ? a[v & 63] : '=';
        line += 4;
        if (line == 64) {
            o[k++] = '\r';
            o[k++] = '\n';
            line = 0;
        }
    }
    if (line) {
        o[k++] = '\r';
        o[k++] = '\n';
    }
    o[k] = '\0';
    if (out_len)
        *out_len = k;
    return o;
}

void est_sha256_hex(const uint8_t *d, size_t n, char out[65])
{
    unsigned char md[32];
    unsigned int ml = 0;
    EVP_Digest(d, n, md, &ml, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* ------------------------------------------------------------ CSR */

static int set_err(est_err *err, est_err e, char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int set_err(est_err *err, est_err e, char *why, size_t whylen, const char *fmt, ...)
{
    *err = e;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return -1;
}

/* An LDH DNS name of ≥ 2 labels, lower-cased into out (≤ 253). */
static int dns_ok(const unsigned char *s, int n, char *out, size_t cap)
{
    if (n <= 0 || n > 253 || (size_t)n >= cap)
        return 0;
    int lab = 0, labels = 0;
    for (int i = 0; i < n; i++) {
        unsigned char ch = s[i];
        if (ch == '.') {
            if (lab == 0 || s[i - 1] == '-')
                return 0;
            lab = 0;
            labels++;
            out[i] = '.';
            continue;
        }
        if (!(isalnum(ch) || (ch == '-' && lab > 0)) || ++lab > 63)
            return 0;
        out[i] = (char)tolower(ch);
    }
    out[n] = '\0';
    return lab > 0 && s[n - 1] != '-' && labels >= 1;
}

static int key_ok(EVP_PKEY *k)
{
    switch (EVP_PKEY_get_base_id(k)) {
    case EVP_PKEY_EC: {
        char grp[64];
        size_t gl = 0;
        if (!EVP_PKEY_get_utf8_string_param(k, "group", grp, sizeof(grp), &gl))
            return 0;
        return strcmp(grp, "prime256v1") == 0 || strcmp(grp, "secp384r1") == 0;
    }
    case EVP_PKEY_RSA: {
        int bits = EVP_PKEY_get_bits(k);
        return bits >= 2048 && bits <= 8192;
    }
    case EVP_PKEY_ED25519:
        return 1;
    default:
        return 0;
    }
}

void est_csr_free(est_csr *c)
{
    if (!c)
        return;
    X509_REQ_free(c->req);
    free(c->der);
    for (unsigned i = 0; i < c->n_dns; i++)
        free(c->dns[i]);
    memset(c, 0, sizeof(*c));
}

/* The names of a GENERAL_NAMES: dNSNames into dns[], the one urn:uuid:
 * URI into uuid. */
static int read_names(const GENERAL_NAMES *gens, char *uuid, char **dns, unsigned *n_dns, est_err *err, char *why,
                      size_t whylen)
{
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_DNS) {
            char name[256];
            if (!dns_ok(ASN1_STRING_get0_data(g->d.dNSName), ASN1_STRING_length(g->d.dNSName), name, sizeof(name)))
                return set_err(err, EST_E_BAD_CSR, why, whylen, "a dNSName is not a DNS name (LDH labels)");
            for (unsigned k = 0; k < *n_dns; k++)
                if (strcmp(dns[k], name) == 0)
                    return set_err(err, EST_E_BAD_CSR, why, whylen, "dNSName %s is listed twice", name);
            if (*n_dns >= EST_MAX_NAMES)
                return set_err(err, EST_E_BAD_CSR, why, whylen, "more than %d dNSNames", EST_MAX_NAMES);
            if (!(dns[(*n_dns)++] = strdup(name)))
                return set_err(err, EST_E_BAD_CSR, why, whylen, "out of memory");
        } else if (g->type == GEN_URI) {
            const unsigned char *u = ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
            int ul = ASN1_STRING_length(g->d.uniformResourceIdentifier);
            char v[40];
            if (uuid[0])
                return set_err(err, EST_E_NAME_TYPE, why, whylen, "more than one URI SAN");
            if (ul != 9 + 36 || strncasecmp((const char *)u, "urn:uuid:", 9) != 0)
                return set_err(err, EST_E_NAME_TYPE, why, whylen,
                               "a URI SAN other than urn:uuid:<NF instance ID> (TS 33.310 §6.1.3c)");
            memcpy(v, u + 9, 36);
            v[36] = '\0';
            if (memchr(v, '\0', 36) || !acme_uuid_ok(v))
                return set_err(err, EST_E_BAD_CSR, why, whylen, "the urn:uuid: SAN is not a UUID");
            memcpy(uuid, v, 37);
        } else {
            return set_err(err, EST_E_NAME_TYPE, why, whylen,
                           "a subjectAltName of a type the agent does not enrol (only dNSName and urn:uuid: URI)");
        }
    }
    return 0;
}

int est_csr_parse(const uint8_t *der, size_t len, est_csr *out, est_err *err, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    *err = EST_OK;
    if (len == 0 || len > EST_MAX_CSR)
        return set_err(err, EST_E_BAD_ENCODING, why, whylen, "a CSR of %zu octets (1-%d)", len, EST_MAX_CSR);
    const unsigned char *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
    int rc = -1;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    if (!req || p != der + len) {
        set_err(err, EST_E_BAD_CSR, why, whylen, "not a DER PKCS#10 certification request");
        goto out;
    }
    out->req = req;
    EVP_PKEY *pk = X509_REQ_get0_pubkey(req);
    if (!pk) {
        set_err(err, EST_E_BAD_CSR, why, whylen, "the CSR's public key cannot be read");
        goto out;
    }
    if (!key_ok(pk)) {
        set_err(err, EST_E_BAD_KEY, why, whylen, "key type not enrolled (EC P-256/P-384, RSA 2048-8192, Ed25519)");
        goto out;
    }
    if (X509_REQ_verify(req, pk) != 1) {
        set_err(err, EST_E_BAD_CSR, why, whylen, "the CSR's signature does not verify (no proof of possession)");
        goto out;
    }
    /* the SubjectPublicKeyInfo as the CSR carries it: i2d_PUBKEY(pk) would
     * re-encode it from the key through OpenSSL 3's encoder framework
     * (a provider lookup per call) for the same octets */
    unsigned char *spki = NULL;
    int sl = i2d_X509_PUBKEY(X509_REQ_get_X509_PUBKEY(req), &spki);
    if (sl <= 0) {
        set_err(err, EST_E_BAD_CSR, why, whylen, "the CSR's public key cannot be encoded");
        goto out;
    }
    est_sha256_hex(spki, (size_t)sl, out->spki_sha256);
    OPENSSL_free(spki);
    X509_NAME *subj = X509_REQ_get_subject_name(req);
    int cn = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (cn >= 0) {
        if (X509_NAME_get_index_by_NID(subj, NID_commonName, cn) >= 0) {
            set_err(err, EST_E_BAD_CSR, why, whylen, "more than one subject commonName");
            goto out;
        }
        ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, cn));
        if (!dns_ok(ASN1_STRING_get0_data(d), ASN1_STRING_length(d), out->cn, sizeof(out->cn))) {
            set_err(err, EST_E_BAD_CSR, why, whylen, "the subject commonName is not a DNS name");
            goto out;
        }
    }
    exts = X509_REQ_get_extensions(req);
    int crit = 0;
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *e = sk_X509_EXTENSION_value(exts, i);
        if (OBJ_obj2nid(X509_EXTENSION_get_object(e)) != NID_subject_alt_name)
            continue;
        if (crit++) {
            set_err(err, EST_E_BAD_CSR, why, whylen, "more than one subjectAltName extension");
            goto out;
        }
        GENERAL_NAMES *gens = X509V3_EXT_d2i(e);
        if (!gens) {
            set_err(err, EST_E_BAD_CSR, why, whylen, "the subjectAltName extension cannot be read");
            goto out;
        }
        int r = read_names(gens, out->uuid, out->dns, &out->n_dns, err, why, whylen);
        GENERAL_NAMES_free(gens);
        if (r)
            goto out;
    }
    if (!(out->der = malloc(len))) {
        set_err(err, EST_E_BAD_CSR, why, whylen, "out of memory");
        goto out;
    }
    memcpy(out->der, der, len);
    out->der_len = len;
    rc = 0;
out:
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    if (rc) {
        if (!out->req)
            X509_REQ_free(req);
        est_csr_free(out);
    }
    return rc;
}

int est_csr_check(const est_csr *c, const char *nf_uuid, bool uuid_allowed, const char *const *allowed,
                  unsigned n_allowed, est_err *err, char *why, size_t whylen)
{
    *err = EST_OK;
    if (c->uuid[0] && !uuid_allowed)
        return set_err(err, EST_E_NAME_TYPE, why, whylen,
                       "this agent's ACME server is not asked for NfInstanceId: no urn:uuid: SAN");
    if (c->uuid[0] && strcmp(c->uuid, nf_uuid) != 0)
        return set_err(err, EST_E_FOREIGN_NAME, why, whylen, "the CSR names NF instance %s, the client is NF %s",
                       c->uuid, nf_uuid);
    if (!c->uuid[0] && c->n_dns == 0)
        return set_err(err, EST_E_MISSING_NAME, why, whylen,
                       "the CSR names neither the NF instance ID (urn:uuid:) nor a dNSName");
    for (unsigned i = 0; i < c->n_dns; i++) {
        bool ok = false;
        for (unsigned k = 0; k < n_allowed && !ok; k++)
            ok = strcasecmp(c->dns[i], allowed[k]) == 0;
        if (!ok)
            return set_err(err, EST_E_FOREIGN_NAME, why, whylen, "%s is not one of NF %s's names", c->dns[i],
                           nf_uuid);
    }
    if (c->cn[0]) {
        bool ok = false;
        for (unsigned i = 0; i < c->n_dns && !ok; i++)
            ok = strcmp(c->cn, c->dns[i]) == 0;
        if (!ok)
            return set_err(err, EST_E_FOREIGN_NAME, why, whylen,
                           "the subject commonName %s is not one of the CSR's dNSNames", c->cn);
    }
    return 0;
}

int est_csr_same_names(const est_csr *c, X509 *cert, est_err *err, char *why, size_t whylen)
{
    *err = EST_OK;
    GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    char uuid[37] = "";
    char *dns[EST_MAX_NAMES];
    unsigned n = 0;
    char w[200];
    est_err e2;
    int rc = gens ? read_names(gens, uuid, dns, &n, &e2, w, sizeof(w)) : 0;
    GENERAL_NAMES_free(gens);
    bool same = rc == 0 && n == c->n_dns && strcmp(uuid, c->uuid) == 0;
    for (unsigned i = 0; same && i < n; i++) {
        bool found = false;
        for (unsigned k = 0; k < c->n_dns && !found; k++)
            found = strcmp(dns[i], c->dns[k]) == 0;
        same = found;
    }
    for (unsigned i = 0; i < n; i++)
        free(dns[i]);
    if (!same)
        return set_err(err, EST_E_REENROLL_NAMES, why, whylen,
                       "a re-enrolment names exactly the current certificate's names (RFC 7030 §4.2.2)");
    return 0;
}

int est_cert_uuid(X509 *cert, char out[37])
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    int found = 0;
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_URI)
            continue;
        const unsigned char *u = ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
        int ul = ASN1_STRING_length(g->d.uniformResourceIdentifier);
        if (ul != 45 || strncasecmp((const char *)u, "urn:uuid:", 9) != 0)
            continue;
        char v[37];
        memcpy(v, u + 9, 36);
        v[36] = '\0';
        if (memchr(v, '\0', 36) || !acme_uuid_ok(v))
            continue;
        if (found++)
            break;
        memcpy(out, v, 37);
    }
    GENERAL_NAMES_free(gens);
    return found == 1 ? 0 : -1;
}

/* ------------------------------------------------------------ tokens */

int est_bearer(const char *h, const char **tok, size_t *len)
{
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return -1;
    const char *t = h + 7;
    while (*t == ' ')
        t++;
    size_t n = strlen(t);
    while (n && t[n - 1] == ' ')
        n--;
    if (n == 0 || n > ACME_TKAUTH_MAX_TOKEN)
        return -1;
    int dots = 0;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (c == '.')
            dots++;
        else if (!(isalnum((unsigned char)c) || c == '-' || c == '_'))
            return -1;
    }
    if (dots != 2)
        return -1;
    *tok = t;
    *len = n;
    return 0;
}

int est_token_peek_nf(const char *tok, size_t len, char out[37])
{
    const char *d1 = memchr(tok, '.', len);
    if (!d1)
        return -1;
    const char *p = d1 + 1;
    const char *d2 = memchr(p, '.', len - (size_t)(p - tok));
    if (!d2 || d2 == p)
        return -1;
    size_t pl = (size_t)(d2 - p);
    uint8_t *buf = malloc(pl);
    if (!buf)
        return -1;
    long n = acme_b64url_decode(p, pl, buf, pl);
    int rc = -1;
    json_t *j = n > 0 ? json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL) : NULL;
    free(buf);
    const char *v = json_string_value(json_object_get(json_object_get(j, "atc"), "tkvalue"));
    if (v && strlen(v) == 36) {
        char u[37];
        memcpy(u, v, 37);
        if (acme_uuid_ok(u)) {
            memcpy(out, u, 37);
            rc = 0;
        }
    }
    json_decref(j);
    return rc;
}

/* ------------------------------------------------------------ PKCS#7 */

char *est_p7_from_pem(const char *pem, bool first_only, size_t *out_len)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    PKCS7 *p7 = NULL;
    X509 *x = NULL;
    unsigned char *der = NULL;
    char *res = NULL;
    int n = 0;
    if (!b || !(p7 = PKCS7_new()) || !PKCS7_set_type(p7, NID_pkcs7_signed) ||
        !PKCS7_content_new(p7, NID_pkcs7_data))
        goto out;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        if (!PKCS7_add_certificate(p7, x))
            goto out;
        X509_free(x);
        x = NULL;
        n++;
        if (first_only)
            break;
    }
    if (n == 0)
        goto out;
    int dl = i2d_PKCS7(p7, &der);
    if (dl > 0)
        res = est_b64_encode(der, (size_t)dl, out_len);
out:
    ERR_clear_error();
    X509_free(x);
    OPENSSL_free(der);
    PKCS7_free(p7);
    BIO_free(b);
    return res;
}

/* ------------------------------------------------------------ /csrattrs */

static const char *const key_type_names[EST_KEY__MAX] = {
    [EST_KEY_ANY] = "any",           [EST_KEY_EC_P256] = "ec-p256",   [EST_KEY_EC_P384] = "ec-p384",
    [EST_KEY_RSA_2048] = "rsa-2048", [EST_KEY_RSA_3072] = "rsa-3072", [EST_KEY_RSA_4096] = "rsa-4096",
    [EST_KEY_ED25519] = "ed25519",
};

const char *est_key_type_name(est_key_type k)
{
    return (unsigned)k < EST_KEY__MAX ? key_type_names[k] : "?";
}

int est_key_type_from_name(const char *s)
{
    for (int k = 0; s && k < EST_KEY__MAX; k++)
        if (strcmp(s, key_type_names[k]) == 0)
            return k;
    return -1;
}

static int add_name(GENERAL_NAMES *gns, int type, const char *prefix, const char *v)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();
    char buf[300];
    int n = snprintf(buf, sizeof(buf), "%s%s", prefix, v);
    if (!gn || !s || n < 0 || (size_t)n >= sizeof(buf) || ASN1_STRING_set(s, buf, n) != 1) {
        GENERAL_NAME_free(gn);
        ASN1_IA5STRING_free(s);
        return -1;
    }
    GENERAL_NAME_set0_value(gn, type, s);
    if (!sk_GENERAL_NAME_push(gns, gn)) {
        GENERAL_NAME_free(gn);
        return -1;
    }
    return 0;
}

GENERAL_NAMES *est_names_new(const char *uuid, const char *const *dns, unsigned n_dns)
{
    GENERAL_NAMES *gns = GENERAL_NAMES_new();
    int ok = gns != NULL && (!uuid || add_name(gns, GEN_URI, "urn:uuid:", uuid) == 0);
    for (unsigned i = 0; ok && i < n_dns; i++)
        ok = add_name(gns, GEN_DNS, "", dns[i]) == 0;
    if (!ok) {
        GENERAL_NAMES_free(gns);
        return NULL;
    }
    return gns;
}

/* An AttrOrOID element: the DER of an Attribute as an ASN1_TYPE SEQUENCE
 * (the CHOICE's attribute arm); takes attr. */
static int push_attr(STACK_OF(ASN1_TYPE) *seq, X509_ATTRIBUTE *attr)
{
    unsigned char *der = NULL;
    int n = attr ? i2d_X509_ATTRIBUTE(attr, &der) : -1;
    X509_ATTRIBUTE_free(attr);
    ASN1_STRING *str = n > 0 ? ASN1_STRING_type_new(V_ASN1_SEQUENCE) : NULL;
    ASN1_TYPE *t = str ? ASN1_TYPE_new() : NULL;
    if (!t) {
        OPENSSL_free(der);
        ASN1_STRING_free(str);
        return -1;
    }
    ASN1_STRING_set0(str, der, n);
    ASN1_TYPE_set(t, V_ASN1_SEQUENCE, str);
    if (!sk_ASN1_TYPE_push(seq, t)) {
        ASN1_TYPE_free(t);
        return -1;
    }
    return 0;
}

/* An AttrOrOID element: the OID arm. */
static int push_oid(STACK_OF(ASN1_TYPE) *seq, int nid)
{
    ASN1_OBJECT *o = OBJ_nid2obj(nid);
    ASN1_TYPE *t = o ? ASN1_TYPE_new() : NULL;
    if (!t)
        return -1;
    ASN1_TYPE_set(t, V_ASN1_OBJECT, o);
    if (!sk_ASN1_TYPE_push(seq, t)) {
        ASN1_TYPE_free(t);
        return -1;
    }
    return 0;
}

/* PKCS#9 extensionRequest { Extensions { subjectAltName } }, as
 * X509_REQ_add_extensions builds it. */
static X509_ATTRIBUTE *ext_request(const GENERAL_NAMES *names)
{
    STACK_OF(X509_EXTENSION) *exts = NULL;
    X509_ATTRIBUTE *attr = NULL;
    unsigned char *der = NULL;
    ASN1_STRING *str = NULL;
    if (X509V3_add1_i2d(&exts, NID_subject_alt_name, (void *)names, 0, X509V3_ADD_DEFAULT) != 1)
        goto out;
    int n = ASN1_item_i2d((const ASN1_VALUE *)exts, &der, ASN1_ITEM_rptr(X509_EXTENSIONS));
    if (n <= 0 || !(str = ASN1_STRING_type_new(V_ASN1_SEQUENCE)))
        goto out;
    ASN1_STRING_set0(str, der, n);
    der = NULL;
    if ((attr = X509_ATTRIBUTE_create(NID_ext_req, V_ASN1_SEQUENCE, str)) != NULL)
        str = NULL; /* owned by attr */
out:
    ASN1_STRING_free(str);
    OPENSSL_free(der);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return attr;
}

int est_csrattrs_der(const GENERAL_NAMES *names, est_key_type kt, uint8_t **out, size_t *len)
{
    int rc = -1;
    STACK_OF(ASN1_TYPE) *seq = sk_ASN1_TYPE_new_null();
    if (!seq || (unsigned)kt >= EST_KEY__MAX)
        goto out;
    if (names && sk_GENERAL_NAME_num(names) > 0 && push_attr(seq, ext_request(names)) != 0)
        goto out;
    int curve = 0, sig = 0, bits = 0;
    switch (kt) {
    case EST_KEY_EC_P256:
        curve = NID_X9_62_prime256v1, sig = NID_ecdsa_with_SHA256;
        break;
    case EST_KEY_EC_P384:
        curve = NID_secp384r1, sig = NID_ecdsa_with_SHA384;
        break;
    case EST_KEY_RSA_2048:
    case EST_KEY_RSA_3072:
    case EST_KEY_RSA_4096:
        bits = kt == EST_KEY_RSA_2048 ? 2048 : kt == EST_KEY_RSA_3072 ? 3072 : 4096;
        sig = NID_sha256WithRSAEncryption;
        break;
    case EST_KEY_ED25519:
        sig = NID_ED25519; /* the key's OID is the signature algorithm's (RFC 8410 §3) */
        break;
    default:
        break;
    }
    if (curve && push_attr(seq, X509_ATTRIBUTE_create(NID_X9_62_id_ecPublicKey, V_ASN1_OBJECT, OBJ_nid2obj(curve))) != 0)
        goto out;
    if (bits) {
        ASN1_INTEGER *i = ASN1_INTEGER_new();
        X509_ATTRIBUTE *a = i && ASN1_INTEGER_set(i, bits) == 1 ? X509_ATTRIBUTE_create(NID_rsaEncryption, V_ASN1_INTEGER, i)
                                                               : NULL;
        if (!a)
            ASN1_INTEGER_free(i);
        if (push_attr(seq, a) != 0)
            goto out;
    }
    if (sig && push_oid(seq, sig) != 0)
        goto out;
    unsigned char *der = NULL;
    int n = i2d_ASN1_SEQUENCE_ANY(seq, &der);
    if (n <= 0)
        goto out;
    *out = der;
    *len = (size_t)n;
    rc = 0;
out:
    sk_ASN1_TYPE_pop_free(seq, ASN1_TYPE_free);
    ERR_clear_error();
    return rc;
}
