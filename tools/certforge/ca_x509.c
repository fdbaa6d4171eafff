/* X.509 helpers for the admin commands; see ca_x509.h. */
#include "tools/certforge/ca_x509.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>

static void ossl_reason(char *buf, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, buf, cap);
    else
        snprintf(buf, cap, "no OpenSSL error");
    ERR_clear_error();
}

int cax_parse_name(const char *s, X509_NAME **out, char *msg, size_t cap)
{
    *out = NULL;
    if (!s || s[0] != '/') {
        snprintf(msg, cap, "subject '%s' must look like /C=FI/O=Example/CN=Root CA", s ? s : "");
        return -1;
    }
    X509_NAME *n = X509_NAME_new();
    char part[1024];
    if (!n) {
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    const char *p = s + 1;
    while (*p) {
        size_t l = 0;
        while (*p && *p != '/') {
            if (*p == '\\' && p[1])
                p++;
            if (l + 1 >= sizeof(part)) {
                snprintf(msg, cap, "subject part is too long");
                goto fail;
            }
            part[l++] = *p++;
        }
        part[l] = '\0';
        if (*p == '/')
            p++;
        char *eq = strchr(part, '=');
        if (!eq || eq == part || !eq[1]) {
            snprintf(msg, cap, "subject part '%s' is not TYPE=value (e.g. CN=Root CA)", part);
            goto fail;
        }
        *eq = '\0';
        if (OBJ_txt2nid(part) == NID_undef) {
            snprintf(msg, cap,
                     "subject attribute type '%s' is unknown (use C, ST, L, O, OU, CN, ...)", part);
            goto fail;
        }
        if (!X509_NAME_add_entry_by_txt(n, part, MBSTRING_UTF8, (const unsigned char *)eq + 1, -1,
                                        -1, 0)) {
            char r[200];
            ossl_reason(r, sizeof(r));
            snprintf(msg, cap, "subject attribute %s='%s' rejected: %s", part, eq + 1, r);
            goto fail;
        }
    }
    if (X509_NAME_entry_count(n) == 0) {
        snprintf(msg, cap, "subject is empty");
        goto fail;
    }
    *out = n;
    return 0;
fail:
    X509_NAME_free(n);
    return -1;
}

void cax_format_name(const X509_NAME *n, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < X509_NAME_entry_count(n); i++) {
        const X509_NAME_ENTRY *e = X509_NAME_get_entry(n, i);
        int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e));
        const char *sn = nid != NID_undef ? OBJ_nid2sn(nid) : "?";
        unsigned char *u = NULL;
        int ul = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(e));
        int w = snprintf(buf + used, cap - used, "/%s=", sn);
        if (w < 0 || used + (size_t)w >= cap) {
            OPENSSL_free(u);
            return;
        }
        used += (size_t)w;
        for (int k = 0; k < ul && used + 3 < cap; k++) {
            if (u[k] == '/' || u[k] == '\\')
                buf[used++] = '\\';
            buf[used++] = (char)u[k];
        }
        buf[used] = '\0';
        OPENSSL_free(u);
    }
}

ASN1_OCTET_STRING *cax_key_id(X509_PUBKEY *pk)
{
    const unsigned char *bits = NULL;
    int len = 0;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!pk || !X509_PUBKEY_get0_param(NULL, &bits, &len, NULL, pk))
        return NULL;
    /* SHA-1 here is an identifier, not a security function (RFC 5280). */
    if (!EVP_Digest(bits, (size_t)len, md, &mdlen, EVP_sha1(), NULL))
        return NULL;
    ASN1_OCTET_STRING *o = ASN1_OCTET_STRING_new();
    if (o && !ASN1_OCTET_STRING_set(o, md, (int)mdlen)) {
        ASN1_OCTET_STRING_free(o);
        o = NULL;
    }
    return o;
}

/* The signature algorithm that fits the HSM key, for certificates and
 * CSRs alike (RFC 4055 §5: sha256WithRSAEncryption parameters are NULL;
 * RFC 8410 §6: Ed25519 signs the whole TBS, no hash). */
static int pick_alg(hsm_signer *s, cf_sig_alg *mech, const EVP_MD **md, int *nid, int *ptype)
{
    *md = NULL;
    *ptype = V_ASN1_UNDEF;
    switch (hsm_signer_key_type(s)) {
    case CF_KEY_EC_P256:
        *mech = CF_SIG_ECDSA_SHA256, *md = EVP_sha256(), *nid = NID_ecdsa_with_SHA256;
        return 0;
    case CF_KEY_EC_P384:
        *mech = CF_SIG_ECDSA_SHA384, *md = EVP_sha384(), *nid = NID_ecdsa_with_SHA384;
        return 0;
    case CF_KEY_RSA:
        *mech = CF_SIG_RSA_PKCS1_SHA256, *md = EVP_sha256(), *nid = NID_sha256WithRSAEncryption;
        *ptype = V_ASN1_NULL;
        return 0;
    case CF_KEY_ED25519:
        *mech = CF_SIG_ED25519, *nid = NID_ED25519;
        return 0;
    default:
        return -1;
    }
}

/* Hash (unless Ed25519) and sign the DER of a TBS structure in the HSM,
 * and put the signature into sig as a whole number of octets (no unused
 * bits). what names the structure in messages. 0, or -1 with msg. */
static int sign_tbs(hsm_signer *s, cf_sig_alg mech, const EVP_MD *md, const unsigned char *tbs,
                    size_t tbslen, const char *what, ASN1_BIT_STRING *sig, char *msg, size_t cap)
{
    uint8_t dg[EVP_MAX_MD_SIZE], out[CF_SIG_MAX];
    unsigned dglen = 0;
    size_t outlen = 0;
    const uint8_t *in = tbs;
    size_t inlen = tbslen;
    if (md) {
        if (!EVP_Digest(tbs, tbslen, dg, &dglen, md, NULL)) {
            snprintf(msg, cap, "hashing the %s failed", what);
            return -1;
        }
        in = dg, inlen = dglen;
    }
    hsm_err e = {0};
    if (hsm_sign(s, mech, in, inlen, out, &outlen, &e) != 0) {
        snprintf(msg, cap, "%s", e.msg);
        return -1;
    }
    if (!ASN1_BIT_STRING_set(sig, out, (int)outlen)) {
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    sig->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
    sig->flags |= ASN1_STRING_FLAG_BITS_LEFT;
    return 0;
}

int cax_sign(X509 **xp, hsm_signer *s, EVP_PKEY *issuer_pub, char *msg, size_t cap)
{
    X509 *x = *xp;
    cf_sig_alg mech;
    const EVP_MD *md;
    int nid, ptype;
    if (pick_alg(s, &mech, &md, &nid, &ptype) != 0) {
        snprintf(msg, cap, "the issuer key's type cannot sign certificates");
        return -1;
    }
    /* OpenSSL 3.0 has no public setter for a certificate's signature
     * algorithm fields: X509_get0_tbs_sigalg / X509_get0_signature hand out
     * the embedded structures, which we fill (what X509_sign does inside). */
    X509_ALGOR *tbs_alg = (X509_ALGOR *)X509_get0_tbs_sigalg(x);
    const ASN1_BIT_STRING *csig = NULL;
    const X509_ALGOR *calg = NULL;
    X509_get0_signature(&csig, &calg, x);
    ASN1_BIT_STRING *sig = (ASN1_BIT_STRING *)csig;
    X509_ALGOR *alg = (X509_ALGOR *)calg;
    if (!X509_ALGOR_set0(tbs_alg, OBJ_nid2obj(nid), ptype, NULL) ||
        !X509_ALGOR_set0(alg, OBJ_nid2obj(nid), ptype, NULL)) {
        snprintf(msg, cap, "cannot set the signature algorithm");
        return -1;
    }
    unsigned char *tbs = NULL, *der = NULL;
    int tbslen = i2d_re_X509_tbs(x, &tbs);
    int rc = -1;
    X509 *y = NULL;
    if (tbslen <= 0) {
        snprintf(msg, cap, "cannot encode the TBSCertificate");
        goto out;
    }
    if (sign_tbs(s, mech, md, tbs, (size_t)tbslen, "TBSCertificate", sig, msg, cap) != 0)
        goto out;
    int dl = i2d_X509(x, &der);
    const unsigned char *p = der;
    if (dl <= 0 || !(y = d2i_X509(NULL, &p, dl)) || p != der + dl) {
        snprintf(msg, cap, "the signed certificate does not re-decode");
        goto out;
    }
    if (X509_verify(y, issuer_pub) != 1) {
        char r[200];
        ossl_reason(r, sizeof(r));
        snprintf(msg, cap, "the HSM's signature does not verify against the issuer key (%s)", r);
        goto out;
    }
    X509_free(x);
    *xp = y;
    y = NULL;
    rc = 0;
out:
    X509_free(y);
    OPENSSL_free(tbs);
    OPENSSL_free(der);
    return rc;
}

void cax_time(const ASN1_TIME *t, char *buf, size_t cap)
{
    struct tm tm;
    if (!t || !ASN1_TIME_to_tm(t, &tm) || !strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, cap, "?");
}

int cax_sign_req(X509_REQ *req, hsm_signer *s, EVP_PKEY *pub, char *msg, size_t cap)
{
    cf_sig_alg mech;
    const EVP_MD *md;
    int nid, ptype;
    if (pick_alg(s, &mech, &md, &nid, &ptype) != 0) {
        snprintf(msg, cap, "the key's type cannot sign a CSR");
        return -1;
    }
    const ASN1_BIT_STRING *csig = NULL;
    const X509_ALGOR *calg = NULL;
    X509_REQ_get0_signature(req, &csig, &calg);
    if (!X509_ALGOR_set0((X509_ALGOR *)calg, OBJ_nid2obj(nid), ptype, NULL)) {
        snprintf(msg, cap, "cannot set the signature algorithm");
        return -1;
    }
    unsigned char *tbs = NULL;
    int tbslen = i2d_re_X509_REQ_tbs(req, &tbs);
    int rc = -1;
    if (tbslen <= 0) {
        snprintf(msg, cap, "cannot encode the CertificationRequestInfo");
        goto out;
    }
    if (sign_tbs(s, mech, md, tbs, (size_t)tbslen, "CertificationRequestInfo",
                 (ASN1_BIT_STRING *)csig, msg, cap) != 0)
        goto out;
    /* proof of possession as a CA would check it */
    if (X509_REQ_verify(req, pub) != 1) {
        char r[200];
        ossl_reason(r, sizeof(r));
        snprintf(msg, cap, "the HSM's signature on the CSR does not verify (%s)", r);
        goto out;
    }
    rc = 0;
out:
    OPENSSL_free(tbs);
    return rc;
}

void cax_fingerprint(const X509 *x, char *buf, size_t cap)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    buf[0] = 0;
    if (!X509_digest(x, EVP_sha256(), md, &n))
        return;
    size_t o = 0;
    for (unsigned i = 0; i < n && o + 4 <= cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%02X", i ? ":" : "", md[i]);
}

int cax_summary(const uint8_t *der, size_t len, char *subject, size_t scap, char *not_after,
                size_t ncap, char *fp, size_t fcap)
{
    const unsigned char *p = der;
    X509 *x = der ? d2i_X509(NULL, &p, (long)len) : NULL;
    if (!x) {
        snprintf(subject, scap, "(not a certificate)");
        snprintf(not_after, ncap, "-");
        snprintf(fp, fcap, "-");
        ERR_clear_error();
        return -1;
    }
    cax_format_name(X509_get_subject_name(x), subject, scap);
    cax_time(X509_get0_notAfter(x), not_after, ncap);
    cax_fingerprint(x, fp, fcap);
    X509_free(x);
    return 0;
}
