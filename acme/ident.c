/* ident.c — see ident.h. */
#include "acme/ident.h"

#include <ctype.h>
#include <jansson.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "acme/jws.h"
#include "engine/csr/csr.h"
#include "engine/der/der.h"

int acme_dns_name_ok(char *v, bool *wildcard)
{
    *wildcard = strncmp(v, "*.", 2) == 0;
    char *s = *wildcard ? v + 2 : v;
    size_t n = strlen(s), lab = 0, labels = 1;
    if (n == 0 || n > ACME_MAX_DNS_NAME)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = (char)tolower((unsigned char)s[i]);
        s[i] = c;
        if (c == '.') {
            if (lab == 0 || s[i - 1] == '-')
                return 0;
            lab = 0;
            labels++;
            continue;
        }
        if (!(isalnum((unsigned char)c) || c == '-') || (lab == 0 && c == '-') || ++lab > 63)
            return 0;
    }
    if (lab == 0 || s[n - 1] == '-' || labels < 2)
        return 0;
    /* a last label of digits only: an IPv4 address (or a TLD that cannot
     * exist), not a name */
    const char *last = strrchr(s, '.') + 1;
    return strspn(last, "0123456789") != strlen(last);
}

int acme_ari_id_ok(const char *s)
{
    const char *dot = strchr(s, '.');
    if (!dot || dot == s || !dot[1] || strchr(dot + 1, '.') || strlen(s) > 190)
        return 0;
    uint8_t b[128];
    return acme_b64url_decode(s, (size_t)(dot - s), b, sizeof(b)) > 0 &&
           acme_b64url_decode(dot + 1, strlen(dot + 1), b, sizeof(b)) > 0;
}

int acme_cert_facts_read(const uint8_t *der, size_t len, acme_cert_facts *f)
{
    static const uint8_t oid_aki[] = {0x55, 0x1d, 0x23};
    memset(f, 0, sizeof(*f));
    der_cur top, cert, tbs, val;
    der_tlv t, tb, x;
    der_cur_init(&top, der, len);
    if (der_expect(&top, DER_SEQUENCE, &t) || der_done(&top) || der_enter(&t, &cert) ||
        der_expect(&cert, DER_SEQUENCE, &tb) || der_enter(&tb, &tbs))
        return -1;
    bool present;
    if (der_optional(&tbs, DER_CTX_CONS(0), &x, &present))
        return -1;
    if (der_expect(&tbs, DER_INTEGER, &x) || x.len == 0)
        return -1;
    f->serial = x.val;
    f->serial_len = x.len;
    /* signature, issuer, validity, subject, spki */
    if (der_expect(&tbs, DER_SEQUENCE, &x) || der_expect(&tbs, DER_SEQUENCE, &x) || der_expect(&tbs, DER_SEQUENCE, &x) ||
        der_enter(&x, &val) || der_read_time(&val, &f->not_before) || der_read_time(&val, &f->not_after) ||
        der_expect(&tbs, DER_SEQUENCE, &x) || der_expect(&tbs, DER_SEQUENCE, &x))
        return -1;
    while (der_next(&tbs, &x) == DER_OK) {
        if (x.tag != DER_CTX_CONS(3))
            continue;
        der_cur exts_c, seq_c;
        der_tlv seq, ext;
        if (der_enter(&x, &exts_c) || der_expect(&exts_c, DER_SEQUENCE, &seq) || der_enter(&seq, &seq_c))
            return -1;
        while (der_next(&seq_c, &ext) == DER_OK) {
            der_cur e;
            der_tlv oid, v;
            if (der_enter(&ext, &e) || der_expect(&e, DER_OID, &oid))
                return -1;
            if (!der_oid_eq(&oid, oid_aki, sizeof(oid_aki)))
                continue;
            if (der_optional(&e, DER_BOOLEAN, &v, &present) || der_expect(&e, DER_OCTET_STRING, &v))
                return -1;
            der_cur a, as;
            der_tlv aseq, kid;
            der_cur_init(&a, v.val, v.len);
            if (der_expect(&a, DER_SEQUENCE, &aseq) || der_enter(&aseq, &as) ||
                der_optional(&as, DER_CTX(0), &kid, &present) || !present || kid.len == 0)
                return -1;
            f->aki = kid.val;
            f->aki_len = kid.len;
        }
    }
    return f->aki ? 0 : -1;
}

int acme_ari_id_of(const acme_cert_facts *f, char *out, size_t cap)
{
    size_t a = acme_b64url_encode(f->aki, f->aki_len, out, cap);
    if (!a || a + 2 >= cap)
        return -1;
    out[a] = '.';
    return acme_b64url_encode(f->serial, f->serial_len, out + a + 1, cap - a - 1) ? 0 : -1;
}

static int add_name(char names[][ACME_MAX_DNS_NAME + 1], unsigned max, unsigned *n, const uint8_t *v, size_t vl)
{
    if (vl == 0 || vl > ACME_MAX_DNS_NAME || *n >= max || memchr(v, 0, vl))
        return -1;
    for (size_t i = 0; i < vl; i++)
        names[*n][i] = (char)tolower(v[i]);
    names[*n][vl] = '\0';
    (*n)++;
    return 0;
}

acme_problem acme_csr_names(const uint8_t *der, size_t len, char names[][ACME_MAX_DNS_NAME + 1], unsigned max,
                            unsigned *n, char *why, size_t whylen)
{
    csr c;
    *n = 0;
    csr_err e = csr_parse(der, len, &c);
    if (e != CSR_OK) {
        snprintf(why, whylen, "the CSR is not acceptable: %s", csr_err_name(e));
        return ACME_P_BAD_CSR;
    }
    csr_san_iter it = {0};
    for (;;) {
        csr_san_type t;
        const uint8_t *v;
        size_t vl;
        bool done;
        if (csr_next_san(&c, &it, &t, &v, &vl, &done) != CSR_OK) {
            snprintf(why, whylen, "the CSR's subjectAltName is malformed");
            return ACME_P_BAD_CSR;
        }
        if (done)
            break;
        /* TS 33.310: an NF instance ID is the URI urn:uuid:<uuid> */
        if (t == CSR_SAN_URI && vl == 45 && strncasecmp((const char *)v, "urn:uuid:", 9) == 0) {
            if (add_name(names, max, n, v, vl) != 0) {
                snprintf(why, whylen, "the CSR asks for too many names");
                return ACME_P_BAD_CSR;
            }
            continue;
        }
        if (t != CSR_SAN_DNS) {
            snprintf(why, whylen, "the CSR asks for a subjectAltName that is neither a DNS name nor urn:uuid:<NF instance ID>");
            return ACME_P_BAD_CSR;
        }
        if (add_name(names, max, n, v, vl) != 0) {
            snprintf(why, whylen, "the CSR asks for too many or too long names");
            return ACME_P_BAD_CSR;
        }
    }
    /* subject commonName, which §7.4 lets carry one of the names */
    const unsigned char *sp = c.subject.raw;
    X509_NAME *nm = d2i_X509_NAME(NULL, &sp, (long)c.subject.rawlen);
    if (!nm) {
        snprintf(why, whylen, "the CSR's subject is malformed");
        return ACME_P_BAD_CSR;
    }
    acme_problem p = ACME_P_NONE;
    int idx = -1;
    while (p == ACME_P_NONE && (idx = X509_NAME_get_index_by_NID(nm, NID_commonName, idx)) >= 0) {
        unsigned char *u = NULL;
        int ul = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, idx)));
        if (ul <= 0 || add_name(names, max, n, u, (size_t)ul) != 0) {
            snprintf(why, whylen, "the CSR's commonName is not a name this order can hold");
            p = ACME_P_BAD_CSR;
        }
        OPENSSL_free(u);
    }
    X509_NAME_free(nm);
    return p;
}

int acme_names_match(char csr_names[][ACME_MAX_DNS_NAME + 1], unsigned n_csr, const char *const *order, unsigned n_order)
{
    if (n_order == 0)
        return 0;
    for (unsigned i = 0; i < n_order; i++) {
        bool found = false;
        for (unsigned k = 0; k < n_csr && !found; k++)
            found = strcmp(csr_names[k], order[i]) == 0;
        if (!found)
            return 0;
    }
    for (unsigned k = 0; k < n_csr; k++) {
        bool found = false;
        for (unsigned i = 0; i < n_order && !found; i++)
            found = strcmp(csr_names[k], order[i]) == 0;
        if (!found)
            return 0;
    }
    return 1;
}

void acme_idents_parse(acme_idents *out, const char *identifiers_json, const char *nf_types_json)
{
    memset(out, 0, sizeof(*out));
    json_t *ids = identifiers_json ? json_loads(identifiers_json, 0, NULL) : NULL;
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        const char *type = json_string_value(json_object_get(v, "type"));
        const char *val = json_string_value(json_object_get(v, "value"));
        if (!type || !val)
            continue;
        if (strcmp(type, "NfInstanceId") == 0)
            snprintf(out->nf_instance_id, sizeof(out->nf_instance_id), "%s", val);
        else if (out->n_names < ACME_MAX_IDENTIFIERS)
            snprintf(out->names[out->n_names++], ACME_MAX_DNS_NAME + 1, "%s", val);
    }
    json_decref(ids);
    json_t *nt = nf_types_json ? json_loads(nf_types_json, 0, NULL) : NULL;
    json_array_foreach(nt, i, v)
    {
        if (json_is_string(v) && out->n_nf_types < ACME_MAX_NF_TYPES)
            snprintf(out->nf_types[out->n_nf_types++], 33, "%s", json_string_value(v));
    }
    json_decref(nt);
}
