/* libFuzzer target for acme/tkauth: authority tokens (RFC 9447) as
 * certforge-acme's tkauth-01 challenge receives them. First octet even:
 * the rest is the token text (header, x5c, signature, chain paths). Odd:
 * the rest is a JWT payload, which the harness signs with a key whose
 * certificate chains to the trust anchor, so the claims checks (exp, jti,
 * atc, nftypes) see every input. Nothing may crash or leak, and a token
 * accepted must be the identifier and account asked for. */
#include "acme/acme.h"
#include "acme/jws.h"
#include "acme/tkauth.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static acme_tkauth *ta;
static EVP_PKEY *key;
static char x5c[4096];
static const char *thumb = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";
static const char *nf = "6f1c2a6e-8c0e-4e0b-9a7e-2f1d3c4b5a69";

static void setup(void)
{
    key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_set_version(x, 2);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)"fuzz TA", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_set_pubkey(x, key);
    X509_sign(x, key, EVP_sha256());
    char path[] = "/tmp/fuzz-tkauth-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    PEM_write_X509(f, x);
    fclose(f);
    char err[200];
    if (acme_tkauth_new(path, 3600, NULL, 0, &ta, err, sizeof(err)) != 0)
        abort();
    unlink(path);
    unsigned char *der = NULL;
    int dl = i2d_X509(x, &der);
    EVP_EncodeBlock((unsigned char *)x5c, der, dl);
    OPENSSL_free(der);
    X509_free(x);
}

/* flattened JWS (acme_jws_sign's output) → compact */
static char *compact(const char *flat)
{
    json_t *j = json_loads(flat, 0, NULL);
    const char *p = json_string_value(json_object_get(j, "protected"));
    const char *pl = json_string_value(json_object_get(j, "payload"));
    const char *s = json_string_value(json_object_get(j, "signature"));
    char *out = NULL;
    if (p && pl && s && (out = malloc(strlen(p) + strlen(pl) + strlen(s) + 3)))
        sprintf(out, "%s.%s.%s", p, pl, s);
    json_decref(j);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ta)
        setup();
    if (size < 1 || size > 16384)
        return 0;
    char *tok = NULL;
    if (data[0] % 2 == 0) {
        tok = malloc(size);
        if (!tok)
            return 0;
        memcpy(tok, data + 1, size - 1);
        tok[size - 1] = 0;
    } else {
        json_t *hdr = json_pack("{s:s, s:[s]}", "typ", "JWT", "x5c", x5c);
        char *flat = acme_jws_sign(key, hdr, data + 1, size - 1);
        json_decref(hdr);
        if (!flat)
            return 0;
        tok = compact(flat);
        free(flat);
        if (!tok)
            return 0;
    }
    acme_tkauth_claims c;
    char why[300] = "";
    acme_problem p = acme_tkauth_verify(ta, tok, "NfInstanceId", nf, thumb, 1800000000, &c, why, sizeof(why));
    if (p == ACME_P_NONE) {
        if (strcmp(c.tktype, "NfInstanceId") != 0 || strcasecmp(c.tkvalue, nf) != 0 || !c.jti[0] || c.exp <= 1800000000)
            abort();
    } else if (!why[0]) {
        abort(); /* every refusal says why */
    }
    free(tok);
    return 0;
}
