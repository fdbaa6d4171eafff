/* anchors.c — see anchors.h. */
#include "acme/anchors.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int acme_anchors_load(const char *file, acme_anchors **out, char *err, size_t errlen)
{
    *out = NULL;
    int rc = -1;
    FILE *f = fopen(file, "r");
    STACK_OF(X509) *certs = sk_X509_new_null();
    PKCS7 *p7 = NULL;
    BIO *pem = BIO_new(BIO_s_mem());
    unsigned char *der = NULL;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    acme_anchors *a = calloc(1, sizeof(*a));
    if (!f) {
        snprintf(err, errlen, "trust_anchors %s: %m", file);
        goto out;
    }
    if (!certs || !pem || !md || !a || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    X509 *x;
    while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
        if (X509_check_ca(x) == 0) {
            char name[256];
            X509_NAME_oneline(X509_get_subject_name(x), name, sizeof(name));
            snprintf(err, errlen, "trust_anchors %s: %s is not a CA certificate", file, name);
            X509_free(x);
            goto out;
        }
        unsigned char *d = NULL;
        int dl = i2d_X509(x, &d);
        if (dl <= 0 || EVP_DigestUpdate(md, d, (size_t)dl) != 1 || PEM_write_bio_X509(pem, x) != 1) {
            OPENSSL_free(d);
            X509_free(x);
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        OPENSSL_free(d);
        sk_X509_push(certs, x);
    }
    ERR_clear_error();
    if (sk_X509_num(certs) == 0) {
        snprintf(err, errlen, "trust_anchors %s: no PEM certificate in it", file);
        goto out;
    }
    a->n_certs = (unsigned)sk_X509_num(certs);
    /* PKCS#7 SignedData with certificates and no signers ("certs-only") */
    if (!(p7 = PKCS7_new()) || !PKCS7_set_type(p7, NID_pkcs7_signed) || !PKCS7_content_new(p7, NID_pkcs7_data)) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (int i = 0; i < sk_X509_num(certs); i++)
        if (!PKCS7_add_certificate(p7, sk_X509_value(certs, i))) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
    int dl = i2d_PKCS7(p7, &der);
    if (dl <= 0) {
        snprintf(err, errlen, "cannot encode PKCS#7");
        goto out;
    }
    a->p7_b64 = malloc((size_t)dl / 3 * 4 + 8);
    char *pd;
    long pl = BIO_get_mem_data(pem, &pd);
    a->pem = malloc((size_t)pl + 1);
    if (!a->p7_b64 || !a->pem) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    a->p7_len = (size_t)EVP_EncodeBlock((unsigned char *)a->p7_b64, der, dl);
    memcpy(a->pem, pd, (size_t)pl);
    a->pem[pl] = 0;
    a->pem_len = (size_t)pl;
    unsigned char h[32];
    unsigned hl = 0;
    EVP_DigestFinal_ex(md, h, &hl);
    char *e = a->etag;
    e += sprintf(e, "\"");
    for (unsigned i = 0; i < 32; i++)
        e += sprintf(e, "%02x", h[i]);
    sprintf(e, "\"");
    a->refs = 1;
    *out = a;
    a = NULL;
    rc = 0;
out:
    if (f)
        fclose(f);
    acme_anchors_free(a);
    sk_X509_pop_free(certs, X509_free);
    PKCS7_free(p7);
    BIO_free(pem);
    OPENSSL_free(der);
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return rc;
}

void acme_anchors_free(acme_anchors *a)
{
    if (!a)
        return;
    free(a->pem);
    free(a->p7_b64);
    free(a);
}
