/* signature.c — SIGNATURE for certforged-held keys (provider-signature(7)):
 * ECDSA with SHA-256/384/512, RSA PKCS#1 v1.5 and PSS with SHA-256/384/512
 * (MGF1 with the same hash, salt length = digest length), Ed25519. The
 * digest is computed here with OpenSSL (default provider, our own library
 * context); certforged signs it (SIGN, docs/protocol.md). Ed25519 sends the
 * whole message (pure EdDSA has no pre-hash). */
#include "client/provider/prov.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

/* A message for Ed25519 must fit in one SIGN frame (docs/protocol.md:
 * 64 KiB frames; the header and the other fields take the rest). */
#define CFP_ED25519_MAX_MSG (65536 - 256)

typedef struct cfp_sig {
    cfp_ctx *ctx;
    cfp_key *key; /* the operation's key (OpenSSL holds the EVP_PKEY) */
    enum cfp_keytype type;
    EVP_MD *md;        /* NULL until set; SHA-256/384/512 only */
    EVP_MD *mgf1;      /* NULL: same as md */
    EVP_MD_CTX *mdctx; /* running digest of digest_sign_update */
    int pad;           /* RSA_PKCS1_PADDING or RSA_PKCS1_PSS_PADDING */
    int saltlen;       /* signing: RSA_PSS_SALTLEN_DIGEST or the digest length;
                        * verifying: anything OpenSSL takes (default auto) */
    bool verify;       /* a verify operation: done locally with the public key */
} cfp_sig;

static OSSL_FUNC_signature_freectx_fn sig_freectx;
static OSSL_FUNC_signature_dupctx_fn sig_dupctx;
static OSSL_FUNC_signature_sign_init_fn sig_sign_init;
static OSSL_FUNC_signature_sign_fn sig_sign;
static OSSL_FUNC_signature_digest_sign_init_fn sig_digest_sign_init;
static OSSL_FUNC_signature_digest_sign_update_fn sig_digest_sign_update;
static OSSL_FUNC_signature_digest_sign_final_fn sig_digest_sign_final;
static OSSL_FUNC_signature_digest_sign_fn sig_digest_sign;
static OSSL_FUNC_signature_get_ctx_params_fn sig_get_ctx_params;
static OSSL_FUNC_signature_gettable_ctx_params_fn sig_gettable;
static OSSL_FUNC_signature_set_ctx_params_fn sig_set_ctx_params;
static OSSL_FUNC_signature_settable_ctx_params_fn sig_settable;
static OSSL_FUNC_signature_verify_init_fn sig_verify_init;
static OSSL_FUNC_signature_verify_fn sig_verify;
static OSSL_FUNC_signature_digest_verify_init_fn sig_digest_verify_init;
static OSSL_FUNC_signature_digest_verify_update_fn sig_digest_verify_update;
static OSSL_FUNC_signature_digest_verify_final_fn sig_digest_verify_final;
static OSSL_FUNC_signature_digest_verify_fn sig_digest_verify;

static int md_index(const EVP_MD *md)
{
    if (!md)
        return -1;
    if (EVP_MD_is_a(md, "SHA2-256"))
        return 0;
    if (EVP_MD_is_a(md, "SHA2-384"))
        return 1;
    if (EVP_MD_is_a(md, "SHA2-512"))
        return 2;
    return -1;
}

static int set_md(cfp_sig *s, EVP_MD **slot, const char *name)
{
    /* The three digests were fetched at provider start: a name lookup,
     * not a fetch, on every signature. */
    EVP_MD *md = NULL;
    for (int i = 0; i < 3 && !md; i++)
        if (EVP_MD_is_a(s->ctx->md[i], name))
            md = s->ctx->md[i];
    if (!md || !EVP_MD_up_ref(md)) {
        CFP_RAISE(s->ctx, CFP_R_UNSUPPORTED,
                  "digest '%s': certforged signs SHA256, SHA384 or SHA512 digests only", name);
        return 0;
    }
    EVP_MD_free(*slot);
    *slot = md;
    return 1;
}

/* ------------------------------------------------------------ context */

static void *sig_newctx(void *provctx, const char *propq, enum cfp_keytype t)
{
    cfp_ctx *ctx = provctx;
    cfp_sig *s = OPENSSL_zalloc(sizeof(*s));
    if (!s) {
        CFP_RAISE(ctx, CFP_R_INTERNAL, "out of memory");
        return NULL;
    }
    s->ctx = ctx;
    s->type = t;
    s->pad = RSA_PKCS1_PADDING;
    s->saltlen = RSA_PSS_SALTLEN_DIGEST;
    return s;
}

static void sig_freectx(void *vctx)
{
    cfp_sig *s = vctx;
    if (!s)
        return;
    EVP_MD_free(s->md);
    EVP_MD_free(s->mgf1);
    EVP_MD_CTX_free(s->mdctx);
    OPENSSL_free(s);
}

static void *sig_dupctx(void *vctx)
{
    const cfp_sig *s = vctx;
    cfp_sig *d = OPENSSL_zalloc(sizeof(*d));
    if (!d)
        return NULL;
    *d = *s;
    d->md = d->mgf1 = NULL;
    d->mdctx = NULL;
    if ((s->md && !EVP_MD_up_ref(s->md)) || (s->mgf1 && !EVP_MD_up_ref(s->mgf1)))
        goto err;
    d->md = s->md;
    d->mgf1 = s->mgf1;
    if (s->mdctx && (!(d->mdctx = EVP_MD_CTX_new()) || !EVP_MD_CTX_copy_ex(d->mdctx, s->mdctx)))
        goto err;
    return d;
err:
    sig_freectx(d);
    return NULL;
}

static int sig_init(cfp_sig *s, void *provkey, const OSSL_PARAM params[], bool verify)
{
    cfp_key *k = provkey;
    if (!k || k->type != s->type || !k->pub) {
        CFP_RAISE(s->ctx, CFP_R_KEY_TYPE, "not a certforge %s key", cfp_keytype_name(s->type));
        return 0;
    }
    s->verify = verify;
    s->saltlen = verify ? RSA_PSS_SALTLEN_AUTO : RSA_PSS_SALTLEN_DIGEST;
    if (!verify && !k->name[0]) {
        CFP_RAISE(s->ctx, CFP_R_NO_ENGINE_KEY,
                  "this %s key was imported as a public key; load it with certforge:key=NAME "
                  "to sign",
                  cfp_keytype_name(k->type));
        return 0;
    }
    s->key = k;
    return sig_set_ctx_params(s, params);
}

/* ------------------------------------------------------------ signing */

static size_t sig_max(const cfp_sig *s)
{
    int n = EVP_PKEY_get_size(s->key->pub);
    return n > 0 ? (size_t)n : 0;
}

static int sign_req(cf_client *c, void *arg, cf_response *out)
{
    return cf_sign_one(c, arg, CFP_TIMEOUT_MS, out);
}

/* Have certforged sign `data` (a digest, or the Ed25519 message). */
static int remote_sign(cfp_sig *s, const unsigned char *data, size_t len, unsigned char *sig,
                       size_t *siglen, size_t sigsize)
{
    cfp_key *k = s->key;
    unsigned mech = 0;
    int idx = md_index(s->md);
    if (s->type == CFP_KT_ED25519) {
        mech = CF_SIGN_ED25519;
        if (len == 0 || len > CFP_ED25519_MAX_MSG) {
            CFP_RAISE(s->ctx, CFP_R_UNSUPPORTED,
                      "Ed25519 message of %zu octets: certforged signs 1 to %d octets", len,
                      CFP_ED25519_MAX_MSG);
            return 0;
        }
    } else {
        if (idx < 0) { /* pre-hashed without a digest set: go by the length */
            idx = len == 32 ? 0 : len == 48 ? 1 : len == 64 ? 2 : -1;
            if (idx < 0 || !set_md(s, &s->md, idx == 0 ? "SHA256" : idx == 1 ? "SHA384" : "SHA512"))
                return 0;
        }
        if ((size_t)EVP_MD_get_size(s->md) != len) {
            CFP_RAISE(s->ctx, CFP_R_UNSUPPORTED, "a %zu-octet digest for %s", len,
                      EVP_MD_get0_name(s->md));
            return 0;
        }
        if (s->type == CFP_KT_EC) {
            mech = CF_SIGN_ECDSA_SHA256 + (unsigned)idx;
        } else if (s->pad == RSA_PKCS1_PADDING) {
            mech = CF_SIGN_RSA_PKCS1_SHA256 + (unsigned)idx;
        } else {
            if (s->mgf1 && md_index(s->mgf1) != idx) {
                CFP_RAISE(s->ctx, CFP_R_UNSUPPORTED,
                          "PSS with MGF1 %s and digest %s: certforged uses MGF1 with the "
                          "signature's digest",
                          EVP_MD_get0_name(s->mgf1), EVP_MD_get0_name(s->md));
                return 0;
            }
            if (s->saltlen != RSA_PSS_SALTLEN_DIGEST && s->saltlen != (int)len) {
                CFP_RAISE(s->ctx, CFP_R_UNSUPPORTED,
                          "PSS salt length %d: certforged signs with salt length = digest "
                          "length (%zu; rsa_pss_saltlen:digest)",
                          s->saltlen, len);
                return 0;
            }
            mech = CF_SIGN_RSA_PSS_SHA256 + (unsigned)idx;
        }
    }
    cf_sign_req req = {
        .key = {k->name, strlen(k->name)},
        .mech = mech,
        .data = data,
        .data_len = len,
        .requester = {"openssl-provider", 16},
    };
    cfp_lease lease = {0};
    cf_response r;
    int ok = 0;
    if (cfp_pool_call(s->ctx, k->socket, sign_req, &req, &lease, &r) != 0)
        goto out;
    if (r.status != CF_ST_OK) {
        cfp_raise_status(s->ctx, "SIGN", k, &r);
        goto out;
    }
    if (r.sig.len == 0 || r.sig.len > sigsize) {
        CFP_RAISE(s->ctx, CFP_R_DAEMON_ERROR, "SIGN: key '%s': %zu-octet signature, room for %zu",
                  k->name, r.sig.len, sigsize);
        goto out;
    }
    memcpy(sig, r.sig.p, r.sig.len);
    *siglen = r.sig.len;
    ok = 1;
out:
    cfp_pool_release(s->ctx, &lease);
    return ok;
}

static int sig_sign_init(void *vctx, void *provkey, const OSSL_PARAM params[])
{
    cfp_sig *s = vctx;
    EVP_MD_CTX_free(s->mdctx);
    s->mdctx = NULL;
    return sig_init(s, provkey, params, false);
}

/* Pre-hashed: tbs is the digest (provider-signature(7) sign). */
static int sig_sign(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                    const unsigned char *tbs, size_t tbslen)
{
    cfp_sig *s = vctx;
    if (!s->key)
        return 0;
    if (!sig) {
        *siglen = sig_max(s);
        return 1;
    }
    return remote_sign(s, tbs, tbslen, sig, siglen, sigsize);
}

static int digest_init(cfp_sig *s, const char *mdname, void *provkey, const OSSL_PARAM params[],
                       bool verify)
{
    EVP_MD_CTX_free(s->mdctx);
    s->mdctx = NULL;
    if (!sig_init(s, provkey, NULL, verify))
        return 0;
    if (s->type == CFP_KT_ED25519) {
        if (mdname && mdname[0]) {
            CFP_RAISE(s->ctx, CFP_R_UNSUPPORTED,
                      "Ed25519 signs the message itself: no digest "
                      "(got '%s')",
                      mdname);
            return 0;
        }
        return sig_set_ctx_params(s, params);
    }
    if (!mdname || !mdname[0])
        mdname = s->type == CFP_KT_EC && s->key->bits == 384 ? "SHA384" : "SHA256";
    if (!set_md(s, &s->md, mdname) || !sig_set_ctx_params(s, params))
        return 0;
    if (!(s->mdctx = EVP_MD_CTX_new()) || !EVP_DigestInit_ex2(s->mdctx, s->md, NULL)) {
        CFP_RAISE(s->ctx, CFP_R_INTERNAL, "cannot start digest %s", EVP_MD_get0_name(s->md));
        return 0;
    }
    return 1;
}

static int sig_digest_sign_init(void *vctx, const char *mdname, void *provkey,
                                const OSSL_PARAM params[])
{
    return digest_init(vctx, mdname, provkey, params, false);
}

static int sig_digest_sign_update(void *vctx, const unsigned char *data, size_t datalen)
{
    cfp_sig *s = vctx;
    if (!s->mdctx) {
        CFP_RAISE(s->ctx, CFP_R_UNSUPPORTED,
                  "Ed25519 signs in one shot (EVP_DigestSign), not update/final");
        return 0;
    }
    return EVP_DigestUpdate(s->mdctx, data, datalen);
}

static int sig_digest_sign_final(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize)
{
    cfp_sig *s = vctx;
    if (!s->key || !s->mdctx)
        return 0;
    if (!sig) {
        *siglen = sig_max(s);
        return 1;
    }
    unsigned char dg[EVP_MAX_MD_SIZE];
    unsigned int dglen = 0;
    if (!EVP_DigestFinal_ex(s->mdctx, dg, &dglen))
        return 0;
    return remote_sign(s, dg, dglen, sig, siglen, sigsize);
}

/* One shot: the whole message (Ed25519 sends it; others digest it here). */
static int sig_digest_sign(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                           const unsigned char *tbs, size_t tbslen)
{
    cfp_sig *s = vctx;
    if (!s->key)
        return 0;
    if (!sig) {
        *siglen = sig_max(s);
        return 1;
    }
    if (s->type == CFP_KT_ED25519)
        return remote_sign(s, tbs, tbslen, sig, siglen, sigsize);
    unsigned char dg[EVP_MAX_MD_SIZE];
    unsigned int dglen = 0;
    if (!EVP_Digest(tbs, tbslen, dg, &dglen, s->md, NULL))
        return 0;
    return remote_sign(s, dg, dglen, sig, siglen, sigsize);
}

/* ------------------------------------------------------------ verifying
 * OpenSSL 3.0 fetches an algorithm from the first provider that has it:
 * when certforge is loaded before the default provider, verifying any
 * EC/RSA/Ed25519 signature (a CSR's, a certificate's) lands here, with the
 * key imported as a public-only key. It is checked with OpenSSL's default
 * provider in our library context. */

static int verify_prehashed(cfp_sig *s, const unsigned char *sig, size_t siglen,
                            const unsigned char *dg, size_t dglen)
{
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(s->ctx->libctx, s->key->pub, NULL);
    int ok = pc && EVP_PKEY_verify_init(pc) > 0 &&
             (!s->md || EVP_PKEY_CTX_set_signature_md(pc, s->md) > 0);
    if (ok && s->type == CFP_KT_RSA) {
        ok = EVP_PKEY_CTX_set_rsa_padding(pc, s->pad) > 0;
        if (ok && s->pad == RSA_PKCS1_PSS_PADDING)
            ok = EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, s->saltlen) > 0 &&
                 (!s->mgf1 || EVP_PKEY_CTX_set_rsa_mgf1_md(pc, s->mgf1) > 0);
    }
    ok = ok && EVP_PKEY_verify(pc, sig, siglen, dg, dglen) == 1;
    EVP_PKEY_CTX_free(pc);
    return ok;
}

static int sig_verify_init(void *vctx, void *provkey, const OSSL_PARAM params[])
{
    cfp_sig *s = vctx;
    EVP_MD_CTX_free(s->mdctx);
    s->mdctx = NULL;
    return sig_init(s, provkey, params, true);
}

static int sig_verify(void *vctx, const unsigned char *sig, size_t siglen, const unsigned char *tbs,
                      size_t tbslen)
{
    cfp_sig *s = vctx;
    return s->key && s->type != CFP_KT_ED25519 && verify_prehashed(s, sig, siglen, tbs, tbslen);
}

static int sig_digest_verify_init(void *vctx, const char *mdname, void *provkey,
                                  const OSSL_PARAM params[])
{
    return digest_init(vctx, mdname, provkey, params, true);
}

static int sig_digest_verify_update(void *vctx, const unsigned char *data, size_t datalen)
{
    return sig_digest_sign_update(vctx, data, datalen);
}

static int sig_digest_verify_final(void *vctx, const unsigned char *sig, size_t siglen)
{
    cfp_sig *s = vctx;
    unsigned char dg[EVP_MAX_MD_SIZE];
    unsigned int dglen = 0;
    if (!s->key || !s->mdctx || !EVP_DigestFinal_ex(s->mdctx, dg, &dglen))
        return 0;
    return verify_prehashed(s, sig, siglen, dg, dglen);
}

static int sig_digest_verify(void *vctx, const unsigned char *sig, size_t siglen,
                             const unsigned char *tbs, size_t tbslen)
{
    cfp_sig *s = vctx;
    if (!s->key)
        return 0;
    if (s->type != CFP_KT_ED25519) {
        unsigned char dg[EVP_MAX_MD_SIZE];
        unsigned int dglen = 0;
        return EVP_Digest(tbs, tbslen, dg, &dglen, s->md, NULL) &&
               verify_prehashed(s, sig, siglen, dg, dglen);
    }
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    int ok = m && EVP_DigestVerifyInit_ex(m, NULL, NULL, s->ctx->libctx, NULL, s->key->pub, NULL) &&
             EVP_DigestVerify(m, sig, siglen, tbs, tbslen) == 1;
    EVP_MD_CTX_free(m);
    return ok;
}

/* ------------------------------------------------------------ params */

/* The signature's AlgorithmIdentifier DER (x509 signing asks for it),
 * made with OpenSSL's X509_ALGOR. RSASSA-PSS parameters per RFC 4055 §3.1:
 * the hash, MGF1 with the same hash, salt length = hash length. */
static int algorithm_id(const cfp_sig *s, unsigned char **der)
{
    X509_ALGOR *alg = X509_ALGOR_new();
    RSA_PSS_PARAMS *pss = NULL;
    X509_ALGOR *mgfmd = NULL;
    ASN1_STRING *packed = NULL;
    int len = -1, nid = NID_undef;
    if (!alg)
        goto out;
    if (s->type == CFP_KT_ED25519) {
        if (!X509_ALGOR_set0(alg, OBJ_nid2obj(NID_ED25519), V_ASN1_UNDEF, NULL))
            goto out;
    } else if (s->type == CFP_KT_RSA && s->pad == RSA_PKCS1_PSS_PADDING) {
        if (!(pss = RSA_PSS_PARAMS_new()) || !(pss->hashAlgorithm = X509_ALGOR_new()) ||
            !(mgfmd = X509_ALGOR_new()) || !(pss->maskGenAlgorithm = X509_ALGOR_new()) ||
            !(pss->saltLength = ASN1_INTEGER_new()))
            goto out;
        X509_ALGOR_set_md(pss->hashAlgorithm, s->md);
        X509_ALGOR_set_md(mgfmd, s->md);
        if (!(packed = ASN1_item_pack(mgfmd, ASN1_ITEM_rptr(X509_ALGOR), NULL)) ||
            !X509_ALGOR_set0(pss->maskGenAlgorithm, OBJ_nid2obj(NID_mgf1), V_ASN1_SEQUENCE, packed))
            goto out;
        packed = NULL;
        if (!ASN1_INTEGER_set(pss->saltLength, EVP_MD_get_size(s->md)) ||
            !(packed = ASN1_item_pack(pss, ASN1_ITEM_rptr(RSA_PSS_PARAMS), NULL)) ||
            !X509_ALGOR_set0(alg, OBJ_nid2obj(NID_rsassaPss), V_ASN1_SEQUENCE, packed))
            goto out;
        packed = NULL;
    } else {
        int pkey_nid = s->type == CFP_KT_EC ? NID_X9_62_id_ecPublicKey : NID_rsaEncryption;
        if (!OBJ_find_sigid_by_algs(&nid, EVP_MD_get_type(s->md), pkey_nid) ||
            !X509_ALGOR_set0(alg, OBJ_nid2obj(nid),
                             s->type == CFP_KT_EC ? V_ASN1_UNDEF : V_ASN1_NULL, NULL))
            goto out;
    }
    len = i2d_X509_ALGOR(alg, der);
out:
    ASN1_STRING_free(packed);
    X509_ALGOR_free(mgfmd);
    RSA_PSS_PARAMS_free(pss);
    X509_ALGOR_free(alg);
    return len;
}

static int sig_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    cfp_sig *s = vctx;
    OSSL_PARAM *p;
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID)) &&
        (s->md || s->type == CFP_KT_ED25519)) {
        unsigned char *der = NULL;
        int len = algorithm_id(s, &der);
        int ok = len > 0 && OSSL_PARAM_set_octet_string(p, der, (size_t)len);
        OPENSSL_free(der);
        if (!ok) {
            CFP_RAISE(s->ctx, CFP_R_INTERNAL, "cannot encode the AlgorithmIdentifier");
            return 0;
        }
    }
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST)) && s->md &&
        !OSSL_PARAM_set_utf8_string(p, EVP_MD_get0_name(s->md)))
        return 0;
    if (s->type != CFP_KT_RSA)
        return 1;
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PAD_MODE))) {
        int ok =
            p->data_type == OSSL_PARAM_INTEGER
                ? OSSL_PARAM_set_int(p, s->pad)
                : OSSL_PARAM_set_utf8_string(p, s->pad == RSA_PKCS1_PSS_PADDING ? "pss" : "pkcs1");
        if (!ok)
            return 0;
    }
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN))) {
        int n = s->saltlen == RSA_PSS_SALTLEN_DIGEST && s->md ? EVP_MD_get_size(s->md) : s->saltlen;
        char buf[16];
        snprintf(buf, sizeof(buf), "%d", n);
        int ok = p->data_type == OSSL_PARAM_INTEGER
                     ? OSSL_PARAM_set_int(p, n)
                     : OSSL_PARAM_set_utf8_string(p, n == RSA_PSS_SALTLEN_DIGEST ? "digest" : buf);
        if (!ok)
            return 0;
    }
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST))) {
        const EVP_MD *m = s->mgf1 ? s->mgf1 : s->md;
        if (m && !OSSL_PARAM_set_utf8_string(p, EVP_MD_get0_name(m)))
            return 0;
    }
    return 1;
}

static int set_saltlen(cfp_sig *s, const OSSL_PARAM *p)
{
    int n = 0;
    if (p->data_type == OSSL_PARAM_UTF8_STRING) {
        const char *v = p->data;
        if (strcmp(v, OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST) == 0) {
            n = RSA_PSS_SALTLEN_DIGEST;
        } else if (s->verify && (strcmp(v, OSSL_PKEY_RSA_PSS_SALT_LEN_MAX) == 0 ||
                                 strcmp(v, OSSL_PKEY_RSA_PSS_SALT_LEN_AUTO) == 0)) {
            n = strcmp(v, OSSL_PKEY_RSA_PSS_SALT_LEN_MAX) == 0 ? RSA_PSS_SALTLEN_MAX
                                                               : RSA_PSS_SALTLEN_AUTO;
        } else if (strcmp(v, OSSL_PKEY_RSA_PSS_SALT_LEN_MAX) == 0 ||
                   strcmp(v, OSSL_PKEY_RSA_PSS_SALT_LEN_AUTO) == 0) {
            CFP_RAISE(s->ctx, CFP_R_UNSUPPORTED,
                      "PSS salt length '%s': certforged signs with salt length = digest length "
                      "(rsa_pss_saltlen:digest)",
                      v);
            return 0;
        } else {
            char *end = NULL;
            long l = strtol(v, &end, 10);
            if (!*v || *end || l < -3 || l > 1024) {
                CFP_RAISE(s->ctx, CFP_R_UNSUPPORTED, "PSS salt length '%s' is not a number", v);
                return 0;
            }
            n = (int)l;
        }
    } else if (!OSSL_PARAM_get_int(p, &n)) {
        return 0;
    }
    if (s->verify) {
        s->saltlen = n;
        return 1;
    }
    if (n == RSA_PSS_SALTLEN_MAX || n == RSA_PSS_SALTLEN_AUTO || n < RSA_PSS_SALTLEN_MAX ||
        (n >= 0 && s->md && n != EVP_MD_get_size(s->md)) ||
        (n >= 0 && !s->md && n != 32 && n != 48 && n != 64)) {
        CFP_RAISE(s->ctx, CFP_R_UNSUPPORTED,
                  "PSS salt length %d: certforged signs with salt length = digest length "
                  "(rsa_pss_saltlen:digest)",
                  n);
        return 0;
    }
    s->saltlen = n;
    return 1;
}

static int sig_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    cfp_sig *s = vctx;
    const OSSL_PARAM *p;
    if (!params)
        return 1;
    if (s->type == CFP_KT_ED25519)
        return 1;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST))) {
        const char *name = NULL;
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &name) || !set_md(s, &s->md, name))
            return 0;
        if (s->mdctx && !EVP_DigestInit_ex2(s->mdctx, s->md, NULL))
            return 0;
    }
    if (s->type != CFP_KT_RSA)
        return 1;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PAD_MODE))) {
        int pad = 0;
        if (p->data_type == OSSL_PARAM_UTF8_STRING) {
            const char *v = p->data;
            pad = strcmp(v, OSSL_PKEY_RSA_PAD_MODE_PKCSV15) == 0 ? RSA_PKCS1_PADDING
                  : strcmp(v, OSSL_PKEY_RSA_PAD_MODE_PSS) == 0   ? RSA_PKCS1_PSS_PADDING
                                                                 : 0;
        } else if (!OSSL_PARAM_get_int(p, &pad)) {
            return 0;
        }
        if (pad != RSA_PKCS1_PADDING && pad != RSA_PKCS1_PSS_PADDING) {
            CFP_RAISE(s->ctx, CFP_R_UNSUPPORTED,
                      "RSA padding mode: certforged signs with pkcs1 or pss only");
            return 0;
        }
        s->pad = pad;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) &&
        !set_saltlen(s, p))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST))) {
        const char *name = NULL;
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &name) || !set_md(s, &s->mgf1, name))
            return 0;
    }
    return 1;
}

static const OSSL_PARAM *sig_gettable(void *vctx, void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_int(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL),
        OSSL_PARAM_int(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
        OSSL_PARAM_END,
    };
    return p;
}

static const OSSL_PARAM *sig_settable(void *vctx, void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
        OSSL_PARAM_END,
    };
    return p;
}

/* ------------------------------------------------------------ tables */

#define SIG_COMMON                                                                                 \
    {OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))sig_freectx},                                    \
        {OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))sig_dupctx},                                  \
        {OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, (void (*)(void))sig_get_ctx_params},                  \
        {OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, (void (*)(void))sig_gettable},                   \
        {OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, (void (*)(void))sig_set_ctx_params},                  \
        {OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, (void (*)(void))sig_settable},                   \
        {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, (void (*)(void))sig_digest_sign_init},              \
        {OSSL_FUNC_SIGNATURE_DIGEST_SIGN, (void (*)(void))sig_digest_sign},                        \
        {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_INIT, (void (*)(void))sig_digest_verify_init},          \
    {                                                                                              \
        OSSL_FUNC_SIGNATURE_DIGEST_VERIFY, (void (*)(void))sig_digest_verify                       \
    }

static OSSL_FUNC_signature_newctx_fn ecdsa_newctx, rsa_newctx, ed25519_newctx;
static void *ecdsa_newctx(void *provctx, const char *propq)
{
    return sig_newctx(provctx, propq, CFP_KT_EC);
}
static void *rsa_newctx(void *provctx, const char *propq)
{
    return sig_newctx(provctx, propq, CFP_KT_RSA);
}
static void *ed25519_newctx(void *provctx, const char *propq)
{
    return sig_newctx(provctx, propq, CFP_KT_ED25519);
}

#define SIG_HASHED                                                                                 \
    {OSSL_FUNC_SIGNATURE_SIGN_INIT, (void (*)(void))sig_sign_init},                                \
        {OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void))sig_sign},                                      \
        {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, (void (*)(void))sig_digest_sign_update},          \
        {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, (void (*)(void))sig_digest_sign_final},            \
        {OSSL_FUNC_SIGNATURE_VERIFY_INIT, (void (*)(void))sig_verify_init},                        \
        {OSSL_FUNC_SIGNATURE_VERIFY, (void (*)(void))sig_verify},                                  \
        {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_UPDATE, (void (*)(void))sig_digest_verify_update},      \
    {                                                                                              \
        OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_FINAL, (void (*)(void))sig_digest_verify_final           \
    }

const OSSL_DISPATCH cfp_ecdsa_signature_functions[] = {
    {OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))ecdsa_newctx}, SIG_COMMON, SIG_HASHED, {0, NULL}};
const OSSL_DISPATCH cfp_rsa_signature_functions[] = {
    {OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))rsa_newctx}, SIG_COMMON, SIG_HASHED, {0, NULL}};
const OSSL_DISPATCH cfp_ed25519_signature_functions[] = {
    {OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))ed25519_newctx}, SIG_COMMON, {0, NULL}};
