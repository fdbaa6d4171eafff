/* tkauth.c — see tkauth.h. */
#include "acme/tkauth.h"

#include <ctype.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "acme/jws.h"

#define MAX_CHAIN 8
#define X5U_MAX 65536

struct acme_tkauth {
    X509_STORE *store;
    uint32_t max_lifetime_s;
    char **prefixes;
    unsigned n_prefixes;
};

int acme_uuid_ok(char *v)
{
    static const int dash[] = {8, 13, 18, 23};
    if (strlen(v) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        bool d = i == dash[0] || i == dash[1] || i == dash[2] || i == dash[3];
        if (d ? v[i] != '-' : !isxdigit((unsigned char)v[i]))
            return 0;
        v[i] = (char)tolower((unsigned char)v[i]);
    }
    return 1;
}

int acme_nftype_ok(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n > 32)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (v[i] <= 0x20 || v[i] >= 0x7f)
            return 0;
    return 1;
}

int acme_tkauth_fingerprint(const char *thumb_b64, char *out, size_t cap)
{
    uint8_t d[40];
    if (cap < 7 + 32 * 3 || acme_b64url_decode(thumb_b64, strlen(thumb_b64), d, sizeof(d)) != 32)
        return -1;
    char *p = out + sprintf(out, "SHA256 ");
    for (int i = 0; i < 32; i++)
        p += sprintf(p, "%s%02X", i ? ":" : "", d[i]);
    return 0;
}

int acme_tkauth_new(const char *anchors_pem, uint32_t max_lifetime_s, const char *const *x5u_prefixes,
                    unsigned n_prefixes, acme_tkauth **out, char *err, size_t errlen)
{
    *out = NULL;
    acme_tkauth *t = calloc(1, sizeof(*t));
    if (!t || !(t->store = X509_STORE_new())) {
        free(t);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    t->max_lifetime_s = max_lifetime_s;
    FILE *f = fopen(anchors_pem, "r");
    if (!f) {
        snprintf(err, errlen, "tkauth.trust_anchors %s: %m", anchors_pem);
        acme_tkauth_free(t);
        return -1;
    }
    X509 *x;
    unsigned n = 0;
    while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
        X509_STORE_add_cert(t->store, x);
        X509_free(x);
        n++;
    }
    fclose(f);
    ERR_clear_error();
    if (n == 0) {
        snprintf(err, errlen, "tkauth.trust_anchors %s: no PEM certificate in it", anchors_pem);
        acme_tkauth_free(t);
        return -1;
    }
    if (n_prefixes) {
        t->prefixes = calloc(n_prefixes, sizeof(char *));
        for (unsigned i = 0; t->prefixes && i < n_prefixes; i++)
            t->prefixes[t->n_prefixes++] = strdup(x5u_prefixes[i]);
    }
    *out = t;
    return 0;
}

void acme_tkauth_free(acme_tkauth *t)
{
    if (!t)
        return;
    X509_STORE_free(t->store);
    for (unsigned i = 0; i < t->n_prefixes; i++)
        free(t->prefixes[i]);
    free(t->prefixes);
    free(t);
}

/* base64 (standard alphabet, padded: RFC 7515 §4.1.6 x5c) → DER */
static X509 *x5c_cert(const char *b64)
{
    size_t n = strlen(b64);
    if (n == 0 || n > 16384 || n % 4)
        return NULL;
    unsigned char *der = malloc(n);
    if (!der)
        return NULL;
    int l = EVP_DecodeBlock(der, (const unsigned char *)b64, (int)n);
    X509 *x = NULL;
    if (l > 0) {
        if (b64[n - 1] == '=')
            l--;
        if (b64[n - 2] == '=')
            l--;
        const unsigned char *p = der;
        x = d2i_X509(NULL, &p, l);
        if (x && p != der + l) {
            X509_free(x);
            x = NULL;
        }
    }
    free(der);
    return x;
}

typedef struct buf {
    char *p;
    size_t len;
} buf;

static size_t buf_write(char *p, size_t sz, size_t nm, void *arg)
{
    buf *b = arg;
    size_t n = sz * nm;
    if (b->len + n > X5U_MAX)
        return 0;
    char *q = realloc(b->p, b->len + n + 1);
    if (!q)
        return 0;
    memcpy(q + b->len, p, n);
    b->p = q;
    b->len += n;
    b->p[b->len] = 0;
    return n;
}

/* x5u: a PEM chain fetched over https from an allowed prefix. */
static int x5u_chain(acme_tkauth *t, const char *url, STACK_OF(X509) *chain, char *why, size_t whylen)
{
    bool allowed = strncmp(url, "https://", 8) == 0 && !strpbrk(url, " \r\n");
    bool prefix = false;
    for (unsigned i = 0; allowed && i < t->n_prefixes; i++)
        prefix |= strncmp(url, t->prefixes[i], strlen(t->prefixes[i])) == 0;
    if (!allowed || !prefix) {
        snprintf(why, whylen, "x5u %.100s is not under a configured tkauth.x5u_allow prefix", url);
        return -1;
    }
    CURL *c = curl_easy_init();
    buf b = {0};
    if (!c)
        return -1;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    CURLcode cr = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    int rc = -1;
    if (cr != CURLE_OK || code != 200 || !b.p) {
        snprintf(why, whylen, "x5u %.100s: %s", url, cr != CURLE_OK ? curl_easy_strerror(cr) : "not HTTP 200");
    } else {
        BIO *bio = BIO_new_mem_buf(b.p, (int)b.len);
        X509 *x;
        while (bio && sk_X509_num(chain) < MAX_CHAIN && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)))
            sk_X509_push(chain, x);
        BIO_free(bio);
        ERR_clear_error();
        if (sk_X509_num(chain) > 0)
            rc = 0;
        else
            snprintf(why, whylen, "x5u %.100s holds no PEM certificate", url);
    }
    free(b.p);
    return rc;
}

static const char *str(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

acme_problem acme_tkauth_verify(acme_tkauth *t, const char *token, const char *want_type, const char *want_value,
                                const char *thumb_b64, int64_t now, acme_tkauth_claims *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    acme_problem p = ACME_P_MALFORMED;
    acme_jws j = {0};
    json_t *claims = NULL;
    STACK_OF(X509) *chain = sk_X509_new_null();
    X509_STORE_CTX *ctx = NULL;
    char *flat = NULL;
    if (!chain) {
        snprintf(why, whylen, "out of memory");
        return ACME_P_SERVER_INTERNAL;
    }
    /* compact → the flattened form the JWS parser reads */
    size_t n = token ? strlen(token) : 0;
    const char *d1 = n ? strchr(token, '.') : NULL, *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!n || n > ACME_TKAUTH_MAX_TOKEN || !d1 || !d2 || strchr(d2 + 1, '.') ||
        strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") != n) {
        snprintf(why, whylen, "the authority token is not a JWS compact serialization (RFC 9447 §4)");
        goto out;
    }
    flat = malloc(n + 64);
    if (!flat)
        goto out;
    int fl = sprintf(flat, "{\"protected\":\"%.*s\",\"payload\":\"%.*s\",\"signature\":\"%s\"}", (int)(d1 - token), token,
                     (int)(d2 - d1 - 1), d1 + 1, d2 + 1);
    acme_jws_err je;
    char msg[200];
    if (acme_jws_parse(flat, (size_t)fl, &j, &je, msg, sizeof(msg)) != 0) {
        snprintf(why, whylen, "authority token: %s", msg);
        p = je == ACME_JWS_E_BAD_ALG ? ACME_P_BAD_SIGNATURE_ALGORITHM : ACME_P_MALFORMED;
        goto out;
    }
    if (j.alg == ACME_JWS_ALG_NONE || j.alg >= ACME_JWS_ALG_HS256) {
        snprintf(why, whylen, "authority token: alg must be ES256, ES384, RS256 or EdDSA");
        p = ACME_P_BAD_SIGNATURE_ALGORITHM;
        goto out;
    }
    /* the signer's certificate and chain */
    const json_t *x5c = json_object_get(j.protected_hdr, "x5c");
    const char *x5u = str(j.protected_hdr, "x5u");
    p = ACME_P_UNAUTHORIZED;
    if (x5c && json_is_array(x5c) && json_array_size(x5c) >= 1 && json_array_size(x5c) <= MAX_CHAIN) {
        size_t i;
        json_t *v;
        json_array_foreach(x5c, i, v)
        {
            X509 *x = json_is_string(v) ? x5c_cert(json_string_value(v)) : NULL;
            if (!x) {
                snprintf(why, whylen, "authority token: x5c[%zu] is not a base64 DER certificate", i);
                p = ACME_P_MALFORMED;
                goto out;
            }
            sk_X509_push(chain, x);
        }
    } else if (x5u && !x5c) {
        if (x5u_chain(t, x5u, chain, why, whylen) != 0)
            goto out;
    } else {
        snprintf(why, whylen, "authority token: the header needs x5c (or an allowed x5u)");
        p = ACME_P_MALFORMED;
        goto out;
    }
    X509 *leaf = sk_X509_value(chain, 0);
    ctx = X509_STORE_CTX_new();
    if (!ctx || X509_STORE_CTX_init(ctx, t->store, leaf, chain) != 1) {
        snprintf(why, whylen, "out of memory");
        p = ACME_P_SERVER_INTERNAL;
        goto out;
    }
    X509_STORE_CTX_set_time(ctx, 0, (time_t)now);
    if (X509_verify_cert(ctx) != 1) {
        snprintf(why, whylen, "authority token: its certificate does not chain to a token-authority trust anchor: %s",
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
        goto out;
    }
    if ((X509_get_extension_flags(leaf) & EXFLAG_KUSAGE) && !(X509_get_key_usage(leaf) & KU_DIGITAL_SIGNATURE)) {
        snprintf(why, whylen, "authority token: the signer's certificate does not allow digitalSignature");
        goto out;
    }
    if (acme_jws_verify(&j, X509_get0_pubkey(leaf), &je, msg, sizeof(msg)) != 0) {
        snprintf(why, whylen, "authority token: %s", msg);
        p = je == ACME_JWS_E_BAD_ALG ? ACME_P_BAD_SIGNATURE_ALGORITHM : ACME_P_UNAUTHORIZED;
        goto out;
    }
    /* claims */
    claims = json_loadb((const char *)j.payload, j.payload_len, JSON_REJECT_DUPLICATES, NULL);
    const json_t *atc = json_object_get(claims, "atc");
    const json_t *exp = json_object_get(claims, "exp");
    const char *jti = str(claims, "jti");
    if (!json_is_object(claims) || !json_is_object(atc) || !json_is_integer(exp) || !jti || !jti[0] ||
        strlen(jti) >= sizeof(out->jti)) {
        snprintf(why, whylen, "authority token: the payload needs exp, jti and atc (RFC 9447 §4)");
        p = ACME_P_MALFORMED;
        goto out;
    }
    out->exp = json_integer_value(exp);
    snprintf(out->jti, sizeof(out->jti), "%s", jti);
    if (out->exp <= now) {
        snprintf(why, whylen, "authority token: expired");
        goto out;
    }
    if (out->exp - now > (int64_t)t->max_lifetime_s + 60) {
        snprintf(why, whylen, "authority token: exp is more than tkauth.max_lifetime (%us) ahead", t->max_lifetime_s);
        goto out;
    }
    const json_t *nbf = json_object_get(claims, "nbf"), *iat = json_object_get(claims, "iat");
    if ((nbf && (!json_is_integer(nbf) || json_integer_value(nbf) > now + 60)) ||
        (iat && (!json_is_integer(iat) || json_integer_value(iat) > now + 60))) {
        snprintf(why, whylen, "authority token: not valid yet (nbf/iat)");
        goto out;
    }
    const char *tt = str(atc, "tktype"), *tv = str(atc, "tkvalue"), *fp = str(atc, "fingerprint");
    if (!tt || !tv || !fp || strlen(tt) >= sizeof(out->tktype) || strlen(tv) >= sizeof(out->tkvalue)) {
        snprintf(why, whylen, "authority token: atc needs tktype, tkvalue and fingerprint (RFC 9447 §4)");
        p = ACME_P_MALFORMED;
        goto out;
    }
    const json_t *ca = json_object_get(atc, "ca");
    if (ca && !json_is_false(ca)) {
        snprintf(why, whylen, "authority token: atc.ca must be false (end-entity certificates only)");
        goto out;
    }
    snprintf(out->tktype, sizeof(out->tktype), "%s", tt);
    snprintf(out->tkvalue, sizeof(out->tkvalue), "%s", tv);
    if (strcmp(tt, want_type) != 0) {
        snprintf(why, whylen, "authority token: it is for identifier type %.32s, not %s", tt, want_type);
        goto out;
    }
    if (strcasecmp(tv, want_value) != 0) {
        snprintf(why, whylen, "authority token: it is for %.64s, not %s", tv, want_value);
        goto out;
    }
    char want_fp[128];
    if (acme_tkauth_fingerprint(thumb_b64, want_fp, sizeof(want_fp)) != 0 || strcasecmp(fp, want_fp) != 0) {
        snprintf(why, whylen, "authority token: its fingerprint is not this account key's");
        goto out;
    }
    const json_t *nft = json_object_get(claims, "nftypes");
    if (nft) {
        size_t i;
        json_t *v;
        if (!json_is_array(nft) || json_array_size(nft) > ACME_TKAUTH_MAX_NFTYPES) {
            snprintf(why, whylen, "authority token: nftypes is an array of at most %d NF types", ACME_TKAUTH_MAX_NFTYPES);
            p = ACME_P_MALFORMED;
            goto out;
        }
        json_array_foreach(nft, i, v)
        {
            const char *s = json_string_value(v);
            if (!s || !acme_nftype_ok(s)) {
                snprintf(why, whylen, "authority token: nftypes[%zu] is not an NFType (RFC 9310)", i);
                p = ACME_P_MALFORMED;
                goto out;
            }
            snprintf(out->nftypes[out->n_nftypes++], 33, "%s", s);
        }
    }
    p = ACME_P_NONE;
out:
    X509_STORE_CTX_free(ctx);
    sk_X509_pop_free(chain, X509_free);
    json_decref(claims);
    acme_jws_free(&j);
    free(flat);
    ERR_clear_error();
    return p;
}
