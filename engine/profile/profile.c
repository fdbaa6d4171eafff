/* profile.c — certificate profiles compiled to TBS templates (profile.h,
 * docs/profiles.md).
 *
 * Everything a profile fixes (version, signature algorithm, issuer, subject,
 * keyUsage, extendedKeyUsage, authorityKeyIdentifier, cRLDistributionPoints
 * or noRevAvail, authorityInfoAccess) is DER-encoded once by
 * profile_compile(). profile_build_tbs() checks a request against the
 * profile and writes the TBSCertificate with engine/der: the template
 * pieces copied as raw bytes, plus serial, validity, the CSR's SPKI
 * verbatim, subjectAltName, subjectKeyIdentifier and NFTypes. */
#include "engine/oid.h"
#include "engine/profile/profile.h"

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "engine/der/der.h"

/* ------------------------------------------------------------ OIDs */

/* OID contents octets live in engine/oid.h, shared with engine/csr. */

/* version [0] EXPLICIT INTEGER 2 (v3), RFC 5280 §4.1.2.1 */
static const uint8_t VERSION_V3[] = {0xA0, 0x03, 0x02, 0x01, 0x02};

#define URN_UUID "urn:uuid:"
#define URN_UUID_LEN 9
#define UUID_LEN 36
#define FQDN_MAX 253
/* Largest SubjectPublicKeyInfo a CSR can carry (RSA-4096 with e = 65537 is
 * 550 octets; the CSR module refuses larger moduli). */
#define SPKI_MAX 600

struct profile {
    char *name, *issuer, *issuer_key;
    cfg_profile_type type;
    cfg_hash hash;
    cf_sig_alg mech;
    uint32_t vdef, vmax, backdate;
    unsigned key_types;
    bool require_id, require_types, require_fqdn;
    char **nf_types; /* allow-list, copied */
    size_t n_nf_types;
    uint8_t *sigalg; /* AlgorithmIdentifier TLV (inside and outside the TBS) */
    size_t sigalg_len;
    uint8_t *issuer_dn; /* issuer certificate's subject Name TLV */
    size_t issuer_dn_len;
    uint8_t *subject; /* Name TLV composed from the config */
    size_t subject_len;
    /* KU, EKU, AKI, CRL DP | noRevAvail, [AIA]: whole Extension TLVs; one
     * block per CRL shard (the CRL DP names the shard), else one */
    uint8_t **ext_const;
    size_t *ext_const_len;
    unsigned n_shards;
    EVP_MD *sha1;   /* SKI method 1 (RFC 5280 §4.2.1.2): an identifier, not a signature */
    EVP_MD *tbs_md; /* NULL for Ed25519, which signs the TBS itself */
    size_t tbs_max, cert_max;
};

/* ------------------------------------------------------------ helpers */

__attribute__((format(printf, 3, 4))) static void msg(char *buf, size_t n, const char *fmt, ...)
{
    if (!buf || !n)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

/* Untrusted bytes for a message: printable ASCII, others as '?', cut at 80. */
static const char *shown(char out[96], const char *s, size_t len)
{
    size_t n = len > 80 ? 80 : len, i;
    for (i = 0; i < n; i++)
        out[i] = (s[i] >= 0x20 && s[i] < 0x7F) ? s[i] : '?';
    if (len > 80) {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = 0;
    return out;
}

static char *sdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static uint8_t *mdup(const uint8_t *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    if (d)
        memcpy(d, p, n);
    return d;
}

/* Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue
 * OCTET STRING }: DER omits critical when FALSE (X.690 §11.5). */
static void ext_begin(der_w *w, const uint8_t *oid, size_t n, bool critical)
{
    der_w_begin(w, DER_SEQUENCE);
    der_w_oid(w, oid, n);
    if (critical)
        der_w_bool(w, true);
    der_w_begin(w, DER_OCTET_STRING);
}

static void ext_end(der_w *w)
{
    der_w_end(w); /* OCTET STRING */
    der_w_end(w); /* Extension */
}

static const uint8_t *hash_oid(cfg_hash h, size_t *n)
{
    *n = sizeof(OID_SHA256);
    return h == CFG_HASH_SHA512 ? OID_SHA512 : h == CFG_HASH_SHA384 ? OID_SHA384 : OID_SHA256;
}

/* The hash a mechanism signs with; CFG_HASH__MAX for Ed25519. */
static cfg_hash mech_hash(cf_sig_alg m)
{
    switch (m) {
    case CF_SIG_ECDSA_SHA256:
    case CF_SIG_RSA_PKCS1_SHA256:
    case CF_SIG_RSA_PSS_SHA256:
        return CFG_HASH_SHA256;
    case CF_SIG_ECDSA_SHA384:
    case CF_SIG_RSA_PKCS1_SHA384:
    case CF_SIG_RSA_PSS_SHA384:
        return CFG_HASH_SHA384;
    case CF_SIG_ECDSA_SHA512:
    case CF_SIG_RSA_PKCS1_SHA512:
    case CF_SIG_RSA_PSS_SHA512:
        return CFG_HASH_SHA512;
    default:
        return CFG_HASH__MAX;
    }
}

/* signatureAlgorithm AlgorithmIdentifier: ECDSA and Ed25519 without
 * parameters (RFC 5758 §3.2, RFC 8410 §3), PKCS#1 v1.5 with NULL (RFC 4055
 * §5), RSASSA-PSS with explicit parameters: the hash, MGF1 with the same
 * hash, salt length = hash length, trailerField default (RFC 4055 §3.1). */
static void w_sigalg(der_w *w, cf_sig_alg m)
{
    static const struct {
        const uint8_t *oid;
        size_t len;
    } tab[CF_SIG__MAX] = {
        [CF_SIG_ECDSA_SHA256] = {OID_ECDSA_SHA256, sizeof(OID_ECDSA_SHA256)},
        [CF_SIG_ECDSA_SHA384] = {OID_ECDSA_SHA384, sizeof(OID_ECDSA_SHA384)},
        [CF_SIG_ECDSA_SHA512] = {OID_ECDSA_SHA512, sizeof(OID_ECDSA_SHA512)},
        [CF_SIG_RSA_PKCS1_SHA256] = {OID_RSA_SHA256, sizeof(OID_RSA_SHA256)},
        [CF_SIG_RSA_PKCS1_SHA384] = {OID_RSA_SHA384, sizeof(OID_RSA_SHA384)},
        [CF_SIG_RSA_PKCS1_SHA512] = {OID_RSA_SHA512, sizeof(OID_RSA_SHA512)},
        [CF_SIG_RSA_PSS_SHA256] = {OID_RSA_PSS, sizeof(OID_RSA_PSS)},
        [CF_SIG_RSA_PSS_SHA384] = {OID_RSA_PSS, sizeof(OID_RSA_PSS)},
        [CF_SIG_RSA_PSS_SHA512] = {OID_RSA_PSS, sizeof(OID_RSA_PSS)},
        [CF_SIG_ED25519] = {OID_ED25519, sizeof(OID_ED25519)},
    };
    der_w_begin(w, DER_SEQUENCE);
    der_w_oid(w, tab[m].oid, tab[m].len);
    if (m == CF_SIG_RSA_PKCS1_SHA256 || m == CF_SIG_RSA_PKCS1_SHA384 ||
        m == CF_SIG_RSA_PKCS1_SHA512) {
        der_w_null(w);
    } else if (m == CF_SIG_RSA_PSS_SHA256 || m == CF_SIG_RSA_PSS_SHA384 ||
               m == CF_SIG_RSA_PSS_SHA512) {
        cfg_hash h = mech_hash(m);
        size_t hl;
        const uint8_t *ho = hash_oid(h, &hl);
        der_w_begin(w, DER_SEQUENCE); /* RSASSA-PSS-params */
        der_w_begin(w, DER_CTX_CONS(0));
        der_w_begin(w, DER_SEQUENCE);
        der_w_oid(w, ho, hl);
        der_w_end(w);
        der_w_end(w);
        der_w_begin(w, DER_CTX_CONS(1));
        der_w_begin(w, DER_SEQUENCE);
        der_w_oid(w, OID_MGF1, sizeof(OID_MGF1));
        der_w_begin(w, DER_SEQUENCE);
        der_w_oid(w, ho, hl);
        der_w_end(w);
        der_w_end(w);
        der_w_end(w);
        der_w_begin(w, DER_CTX_CONS(2));
        der_w_uint64(w, h == CFG_HASH_SHA512 ? 64 : h == CFG_HASH_SHA384 ? 48 : 32);
        der_w_end(w);
        der_w_end(w);
    }
    der_w_end(w);
}

/* Encode with fn into a scratch buffer and keep a malloc'd copy. */
static int keep(der_w *w, uint8_t **out, size_t *len)
{
    size_t n;
    if (der_w_finish(w, &n) != DER_OK)
        return -1;
    if (!(*out = mdup(w->buf, n)))
        return -1;
    *len = n;
    return 0;
}

/* ------------------------------------------------------------ per thread */

/* One EVP_MD_CTX per thread, reused for every digest (SKI and TBS). It is
 * freed by a pthread key destructor at thread exit. */
static pthread_key_t md_key;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static bool md_key_ok;
static _Thread_local EVP_MD_CTX *tl_md;

static void md_ctx_free(void *p)
{
    EVP_MD_CTX_free(p);
}

static void md_key_init(void)
{
    md_key_ok = pthread_key_create(&md_key, md_ctx_free) == 0;
}

static EVP_MD_CTX *thread_md(void)
{
    if (!tl_md) {
        pthread_once(&md_once, md_key_init);
        tl_md = EVP_MD_CTX_new();
        if (tl_md && md_key_ok)
            pthread_setspecific(md_key, tl_md);
    }
    return tl_md;
}

void profile_thread_cleanup(void)
{
    if (tl_md) {
        if (md_key_ok)
            pthread_setspecific(md_key, NULL);
        EVP_MD_CTX_free(tl_md);
        tl_md = NULL;
    }
}

static int digest(const EVP_MD *md, const uint8_t *p, size_t n, uint8_t *out, unsigned *outlen)
{
    EVP_MD_CTX *ctx = thread_md();
    if (!ctx || EVP_DigestInit_ex(ctx, md, NULL) != 1 || EVP_DigestUpdate(ctx, p, n) != 1 ||
        EVP_DigestFinal_ex(ctx, out, outlen) != 1)
        return -1;
    return 0;
}

/* Random octets for serials: a per-thread buffer filled in bulk. A forked
 * child must never hand out its parent's buffered octets (two processes
 * would issue the same serials): a fork bumps fork_gen and every thread's
 * buffer of an older generation is discarded. */
#define RAND_BUF 1024
static atomic_uint fork_gen;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static _Thread_local struct {
    uint8_t b[RAND_BUF];
    size_t pos; /* next unused octet; RAND_BUF when empty */
    unsigned gen;
    bool init;
} tl_rand;

static void on_fork_child(void)
{
    atomic_fetch_add(&fork_gen, 1);
}

static void fork_init(void)
{
    pthread_atfork(NULL, NULL, on_fork_child);
}

static int rand_take(uint8_t *out, size_t n)
{
    pthread_once(&fork_once, fork_init);
    unsigned gen = atomic_load(&fork_gen);
    if (!tl_rand.init || tl_rand.gen != gen || RAND_BUF - tl_rand.pos < n) {
        if (RAND_bytes(tl_rand.b, RAND_BUF) != 1)
            return -1;
        tl_rand.pos = 0;
        tl_rand.gen = gen;
        tl_rand.init = true;
    }
    memcpy(out, tl_rand.b + tl_rand.pos, n);
    memset(tl_rand.b + tl_rand.pos, 0, n); /* each octet is used once */
    tl_rand.pos += n;
    return 0;
}

int profile_serial(uint8_t out[PROFILE_SERIAL_MAX], size_t *len, const uint8_t *prefix,
                   size_t prefix_len)
{
    if (prefix_len > CFG_SERIAL_PREFIX_MAX ||
        (prefix_len && (!prefix || prefix[0] == 0 || (prefix[0] & 0x80))))
        return -1;
    uint8_t r[PROFILE_SERIAL_RANDOM];
    if (rand_take(r, sizeof(r)))
        return -1;
    if (prefix_len == 0) {
        /* RFC 5280 §4.1.2.2: positive. 0x40 set keeps the length fixed at 16
         * octets (no leading zero octet to strip): 126 random bits. */
        r[0] = (uint8_t)((r[0] & 0x7F) | 0x40);
    }
    if (prefix_len)
        memcpy(out, prefix, prefix_len);
    memcpy(out + prefix_len, r, sizeof(r));
    *len = prefix_len + sizeof(r);
    return 0;
}

/* ------------------------------------------------------------ compile */

/* SHA-256 fingerprint (first 8 octets) of a key's SPKI, for messages. */
static void key_fp(EVP_PKEY *k, char out[40])
{
    unsigned char *der = NULL, md[32];
    unsigned mdlen = 0;
    int n = i2d_PUBKEY(k, &der);
    out[0] = 0;
    if (n > 0 && EVP_Digest(der, (size_t)n, md, &mdlen, EVP_sha256(), NULL) == 1) {
        for (int i = 0; i < 8; i++)
            snprintf(out + 3 * i, 4, "%02x%s", md[i], i < 7 ? ":" : "");
    } else {
        snprintf(out, 40, "?");
    }
    OPENSSL_free(der);
}

static void key_desc(EVP_PKEY *k, char *out, size_t n)
{
    char grp[64] = "";
    size_t gl = 0;
    switch (EVP_PKEY_get_base_id(k)) {
    case EVP_PKEY_EC:
        EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, grp, sizeof(grp), &gl);
        snprintf(out, n, "EC %s", grp);
        break;
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
        snprintf(out, n, "RSA-%d", EVP_PKEY_get_bits(k));
        break;
    case EVP_PKEY_ED25519:
        snprintf(out, n, "Ed25519");
        break;
    default:
        snprintf(out, n, "key type %d", EVP_PKEY_get_base_id(k));
    }
}

/* EC curve of a key: 256 / 384, 0 for other curves. */
static int ec_size(EVP_PKEY *k)
{
    char grp[64] = "";
    size_t gl = 0;
    if (EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, grp, sizeof(grp), &gl) != 1)
        return 0;
    if (strcmp(grp, "prime256v1") == 0 || strcmp(grp, "P-256") == 0)
        return 256;
    if (strcmp(grp, "secp384r1") == 0 || strcmp(grp, "P-384") == 0)
        return 384;
    return 0;
}

int profile_pick_mech(EVP_PKEY *k, cfg_hash hash, cf_sig_alg *mech, char *err, size_t errlen)
{
    char d[64];
    switch (EVP_PKEY_get_base_id(k)) {
    case EVP_PKEY_EC: {
        int bits = ec_size(k);
        if (!bits)
            break;
        cfg_hash h = bits == 384 && hash < CFG_HASH_SHA384 ? CFG_HASH_SHA384 : hash;
        *mech = h == CFG_HASH_SHA512   ? CF_SIG_ECDSA_SHA512
                : h == CFG_HASH_SHA384 ? CF_SIG_ECDSA_SHA384
                                       : CF_SIG_ECDSA_SHA256;
        return 0;
    }
    case EVP_PKEY_RSA:
        *mech = hash == CFG_HASH_SHA512   ? CF_SIG_RSA_PKCS1_SHA512
                : hash == CFG_HASH_SHA384 ? CF_SIG_RSA_PKCS1_SHA384
                                          : CF_SIG_RSA_PKCS1_SHA256;
        return 0;
    case EVP_PKEY_RSA_PSS:
        *mech = hash == CFG_HASH_SHA512   ? CF_SIG_RSA_PSS_SHA512
                : hash == CFG_HASH_SHA384 ? CF_SIG_RSA_PSS_SHA384
                                          : CF_SIG_RSA_PSS_SHA256;
        return 0;
    case EVP_PKEY_ED25519:
        *mech = CF_SIG_ED25519;
        return 0;
    default:
        break;
    }
    key_desc(k, d, sizeof(d));
    msg(err, errlen,
        "issuer key (%s) is not one certforge signs with (EC P-256/P-384, RSA, Ed25519)", d);
    return -1;
}

/* Does mechanism m fit key k? The key's type decides (cf_sig_alg_fits);
 * an RSASSA-PSS key (id-RSASSA-PSS SPKI, RFC 4055 §1.2) is further
 * restricted to PSS signatures. */
static bool mech_fits(EVP_PKEY *k, cf_sig_alg m)
{
    cf_key_type t;
    switch (EVP_PKEY_get_base_id(k)) {
    case EVP_PKEY_EC:
        switch (ec_size(k)) {
        case 256:
            t = CF_KEY_EC_P256;
            break;
        case 384:
            t = CF_KEY_EC_P384;
            break;
        default:
            return false;
        }
        break;
    case EVP_PKEY_RSA:
        t = CF_KEY_RSA;
        break;
    case EVP_PKEY_RSA_PSS:
        if (m < CF_SIG_RSA_PSS_SHA256 || m > CF_SIG_RSA_PSS_SHA512)
            return false;
        t = CF_KEY_RSA;
        break;
    case EVP_PKEY_ED25519:
        t = CF_KEY_ED25519;
        break;
    default:
        return false;
    }
    return cf_sig_alg_fits(m, t);
}

int profile_read_cert(const char *path, uint8_t **der, size_t *len, char *err, size_t errlen)
{
    BIO *b = BIO_new_file(path, "rb");
    X509 *x = NULL;
    unsigned char *out = NULL;
    int rc = -1;
    if (!b) {
        msg(err, errlen, "%s: cannot open", path);
        goto out;
    }
    x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    if (!x) {
        ERR_clear_error();
        (void)BIO_reset(b);
        x = d2i_X509_bio(b, NULL);
    }
    if (!x) {
        ERR_clear_error();
        msg(err, errlen, "%s: not a PEM or DER certificate", path);
        goto out;
    }
    int n = i2d_X509(x, &out);
    if (n <= 0) {
        msg(err, errlen, "%s: cannot encode the certificate", path);
        goto out;
    }
    if (!(*der = mdup(out, (size_t)n))) {
        msg(err, errlen, "out of memory");
        goto out;
    }
    *len = (size_t)n;
    rc = 0;
out:
    OPENSSL_free(out);
    X509_free(x);
    BIO_free(b);
    return rc;
}

void profile_free(profile *p)
{
    if (!p)
        return;
    free(p->name);
    free(p->issuer);
    free(p->issuer_key);
    for (size_t i = 0; i < p->n_nf_types; i++)
        free(p->nf_types[i]);
    free(p->nf_types);
    free(p->sigalg);
    free(p->issuer_dn);
    free(p->subject);
    for (unsigned i = 0; p->ext_const && i < p->n_shards; i++)
        free(p->ext_const[i]);
    free(p->ext_const);
    free(p->ext_const_len);
    EVP_MD_free(p->sha1);
    EVP_MD_free(p->tbs_md);
    free(p);
}

/* Constant extensions, in certificate order after subjectAltName:
 * keyUsage, extendedKeyUsage, authorityKeyIdentifier, then
 * cRLDistributionPoints (nf, sepp) or noRevAvail (star), then the optional
 * authorityInfoAccess. */
static void w_const_exts(der_w *w, const cfg_profile *cp, const char *crl_dp, const uint8_t *ski,
                         size_t ski_len)
{
    /* TS 33.310 §6.1.3c, RFC 5280 §4.2.1.3: critical, digitalSignature only
     * (bit 0). TLS 1.3 and ECDHE suites need nothing else. */
    static const uint8_t ku_ds = 0x80;
    ext_begin(w, OID_KU, sizeof(OID_KU), true);
    der_w_named_bits(w, &ku_ds, 1);
    ext_end(w);

    /* TS 33.310 §6.1.3c, RFC 5280 §4.2.1.12: non-critical. */
    ext_begin(w, OID_EKU, sizeof(OID_EKU), false);
    der_w_begin(w, DER_SEQUENCE);
    if (cp->eku & CFG_EKU_SERVER_AUTH)
        der_w_oid(w, OID_SERVER_AUTH, sizeof(OID_SERVER_AUTH));
    if (cp->eku & CFG_EKU_CLIENT_AUTH)
        der_w_oid(w, OID_CLIENT_AUTH, sizeof(OID_CLIENT_AUTH));
    der_w_end(w);
    ext_end(w);

    /* RFC 5280 §4.2.1.1: keyIdentifier [0] = the issuer's SKI. */
    ext_begin(w, OID_AKI, sizeof(OID_AKI), false);
    der_w_begin(w, DER_SEQUENCE);
    der_w_tlv(w, DER_CTX(0), ski, ski_len);
    der_w_end(w);
    ext_end(w);

    if (crl_dp) {
        /* RFC 5280 §4.2.1.13: DistributionPoint { distributionPoint [0]
         * { fullName [0] { uniformResourceIdentifier [6] } } } */
        ext_begin(w, OID_CRLDP, sizeof(OID_CRLDP), false);
        der_w_begin(w, DER_SEQUENCE);
        der_w_begin(w, DER_SEQUENCE);
        der_w_begin(w, DER_CTX_CONS(0));
        der_w_begin(w, DER_CTX_CONS(0));
        der_w_tlv(w, DER_CTX(6), crl_dp, strlen(crl_dp));
        der_w_end(w);
        der_w_end(w);
        der_w_end(w);
        der_w_end(w);
        ext_end(w);
    } else {
        /* RFC 9608 §2: id-ce-noRevAvail, NULL, non-critical. */
        ext_begin(w, OID_NOREVAVAIL, sizeof(OID_NOREVAVAIL), false);
        der_w_null(w);
        ext_end(w);
    }

    if (cp->aia_ca_issuers) {
        /* RFC 5280 §4.2.2.1: AccessDescription { id-ad-caIssuers, URI } */
        ext_begin(w, OID_AIA, sizeof(OID_AIA), false);
        der_w_begin(w, DER_SEQUENCE);
        der_w_begin(w, DER_SEQUENCE);
        der_w_oid(w, OID_CA_ISSUERS, sizeof(OID_CA_ISSUERS));
        der_w_tlv(w, DER_CTX(6), cp->aia_ca_issuers, strlen(cp->aia_ca_issuers));
        der_w_end(w);
        der_w_end(w);
        ext_end(w);
    }
}

/* TS 33.310 §6.1.3c: subject C, O. RFC 5280 §4.1.2.4: countryName is a
 * PrintableString (X.520), other attributes UTF8String. One attribute per
 * RDN, C first (the usual order, as in the issuing CA certificates). */
static void w_subject(der_w *w, const cfg_profile *cp)
{
    der_w_begin(w, DER_SEQUENCE);
    der_w_begin(w, DER_SET);
    der_w_begin(w, DER_SEQUENCE);
    der_w_oid(w, OID_C, sizeof(OID_C));
    der_w_string(w, DER_PRINTABLE_STRING, cp->subject_c, strlen(cp->subject_c));
    der_w_end(w);
    der_w_end(w);
    der_w_begin(w, DER_SET);
    der_w_begin(w, DER_SEQUENCE);
    der_w_oid(w, OID_O, sizeof(OID_O));
    der_w_string(w, DER_UTF8_STRING, cp->subject_o, strlen(cp->subject_o));
    der_w_end(w);
    der_w_end(w);
    der_w_end(w);
}

int profile_compile(const cfg_profile *cp, const uint8_t *issuer_cert_der, size_t len,
                    EVP_PKEY *issuer_key_pub, cf_sig_alg mech, profile **out, char *err,
                    size_t errlen)
{
    profile *p = NULL;
    X509 *x = NULL;
    unsigned char *dn = NULL;
    uint8_t *scratch = NULL;
    const size_t scratch_cap = 16384;
    int rc = -1;
    char subj[256] = "?";

    if (!cp || !issuer_cert_der || !issuer_key_pub || !out || (unsigned)mech >= CF_SIG__MAX) {
        msg(err, errlen, "profile_compile: missing argument");
        goto out;
    }
    const unsigned char *q = issuer_cert_der;
    x = d2i_X509(NULL, &q, (long)len);
    if (!x || q != issuer_cert_der + len) {
        msg(err, errlen, "profile '%s': issuer '%s': certificate is not one DER certificate",
            cp->name, cp->issuer);
        goto out;
    }
    X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));

    /* The certificate must be the HSM key's, or every certificate issued
     * would carry an issuer and AKI that its signature does not match. */
    EVP_PKEY *cert_key = X509_get0_pubkey(x);
    if (!cert_key || EVP_PKEY_eq(cert_key, issuer_key_pub) != 1) {
        char fc[40] = "?", fk[40], dc[64] = "?", dk[64];
        if (cert_key) {
            key_fp(cert_key, fc);
            key_desc(cert_key, dc, sizeof(dc));
        }
        key_fp(issuer_key_pub, fk);
        key_desc(issuer_key_pub, dk, sizeof(dk));
        msg(err, errlen,
            "profile '%s': issuer '%s': certificate %s holds public key %s (%s), but HSM key "
            "'%s' is %s (%s): they do not match",
            cp->name, cp->issuer, subj, dc, fc, cp->issuer_key ? cp->issuer_key : "?", dk, fk);
        goto out;
    }
    /* RFC 5280 §4.2.1.9, §4.2.1.3: an issuing CA. */
    uint32_t xf = X509_get_extension_flags(x);
    if (!(xf & EXFLAG_CA) ||
        ((xf & EXFLAG_KUSAGE) && !(X509_get_key_usage(x) & KU_KEY_CERT_SIGN))) {
        msg(err, errlen,
            "profile '%s': issuer '%s': certificate %s is not a CA certificate "
            "(basicConstraints CA:TRUE and keyUsage keyCertSign)",
            cp->name, cp->issuer, subj);
        goto out;
    }
    if (!mech_fits(issuer_key_pub, mech)) {
        char dk[64];
        key_desc(issuer_key_pub, dk, sizeof(dk));
        msg(err, errlen, "profile '%s': mechanism %s does not fit issuer key '%s' (%s)", cp->name,
            cf_sig_alg_name(mech), cp->issuer_key ? cp->issuer_key : "?", dk);
        goto out;
    }
    /* TS 33.310 §6.1.1: never weaker than the configured hash. */
    if (mech != CF_SIG_ED25519 && mech_hash(mech) < cp->hash) {
        msg(err, errlen, "profile '%s': mechanism %s is weaker than the profile's hash %s",
            cp->name, cf_sig_alg_name(mech), cfg_hash_name(cp->hash));
        goto out;
    }

    if (!(p = calloc(1, sizeof(*p))) || !(scratch = malloc(scratch_cap)))
        goto oom;
    p->type = cp->type;
    p->hash = cp->hash;
    p->mech = mech;
    p->vdef = cp->validity_default;
    p->vmax = cp->validity_max;
    p->backdate = cp->backdate;
    p->key_types = cp->key_types;
    p->require_id = cp->require_nf_instance_id;
    p->require_types = cp->require_nf_types;
    p->require_fqdn = cp->require_fqdn;
    if (!(p->name = sdup(cp->name)) || !(p->issuer = sdup(cp->issuer)) ||
        (cp->issuer_key && !(p->issuer_key = sdup(cp->issuer_key))))
        goto oom;
    if (cp->n_nf_types) {
        if (!(p->nf_types = calloc(cp->n_nf_types, sizeof(char *))))
            goto oom;
        for (; p->n_nf_types < cp->n_nf_types; p->n_nf_types++)
            if (!(p->nf_types[p->n_nf_types] = sdup(cp->nf_types[p->n_nf_types])))
                goto oom;
    }

    int dnl = i2d_X509_NAME(X509_get_subject_name(x), &dn);
    if (dnl <= 0 || !(p->issuer_dn = mdup(dn, (size_t)dnl)))
        goto oom;
    p->issuer_dn_len = (size_t)dnl;

    p->sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
    const char *mdname = NULL;
    switch (mech_hash(mech)) {
    case CFG_HASH_SHA256:
        mdname = "SHA256";
        break;
    case CFG_HASH_SHA384:
        mdname = "SHA384";
        break;
    case CFG_HASH_SHA512:
        mdname = "SHA512";
        break;
    default:
        break;
    }
    if (!p->sha1 || (mdname && !(p->tbs_md = EVP_MD_fetch(NULL, mdname, NULL)))) {
        msg(err, errlen, "profile '%s': cannot fetch digests from OpenSSL", cp->name);
        goto out;
    }

    /* The issuer's SKI becomes our AKI; without one, method 1 (RFC 5280
     * §4.2.1.2): SHA-1 of the subjectPublicKey BIT STRING value. */
    uint8_t ski_buf[EVP_MAX_MD_SIZE];
    const uint8_t *ski = ski_buf;
    size_t ski_len = 0;
    if (profile_cert_key_id(x, ski_buf, &ski_len) != 0) {
        msg(err, errlen, "profile '%s': cannot compute the issuer's key identifier", cp->name);
        goto out;
    }

    der_w w;
    der_w_init(&w, scratch, scratch_cap);
    w_sigalg(&w, mech);
    if (keep(&w, &p->sigalg, &p->sigalg_len))
        goto enc;
    der_w_init(&w, scratch, scratch_cap);
    w_subject(&w, cp);
    if (keep(&w, &p->subject, &p->subject_len))
        goto enc;
    /* one constant block per CRL shard: the CRL DP names the shard */
    p->n_shards = cp->crl_dp && cp->crl_shards > 1 ? cp->crl_shards : 1;
    if (!(p->ext_const = calloc(p->n_shards, sizeof(*p->ext_const))) ||
        !(p->ext_const_len = calloc(p->n_shards, sizeof(*p->ext_const_len))))
        goto oom;
    size_t ext_max = 0;
    for (unsigned k = 0; k < p->n_shards; k++) {
        char dp[CFG_URL_MAX + 16];
        if (p->n_shards > 1 && profile_crl_dp_uri(cp->crl_dp, k, dp, sizeof(dp)) != 0) {
            msg(err, errlen, "profile '%s': crl_dp too long for shard %u", cp->name, k);
            goto out;
        }
        der_w_init(&w, scratch, scratch_cap);
        w_const_exts(&w, cp, p->n_shards > 1 ? dp : cp->crl_dp, ski, ski_len);
        if (keep(&w, &p->ext_const[k], &p->ext_const_len[k]))
            goto enc;
        if (p->ext_const_len[k] > ext_max)
            ext_max = p->ext_const_len[k];
    }

    /* Worst case of everything a request adds (see profile.h). */
    size_t san = 4 + 2 + sizeof(OID_SAN) + 3 + 4 + 4 + (2 + URN_UUID_LEN + UUID_LEN) +
                 (size_t)CF_MAX_FQDNS * (3 + FQDN_MAX);
    size_t nft = 4 + 2 + sizeof(OID_NFTYPES) + 4 + 4 + (size_t)CF_MAX_NF_TYPES * (2 + 32);
    size_t skie = 2 + 2 + sizeof(OID_SKI) + 2 + 2 + EVP_MAX_MD_SIZE;
    p->tbs_max = 4 + sizeof(VERSION_V3) + (2 + PROFILE_SERIAL_MAX + 1) + p->sigalg_len +
                 p->issuer_dn_len + (2 + 2 * 17) + p->subject_len + SPKI_MAX + 4 + 4 + san +
                 ext_max + skie + nft;
    p->cert_max = 4 + p->tbs_max + p->sigalg_len + 4 + 1 + CF_SIG_MAX;

    *out = p;
    p = NULL;
    rc = 0;
    goto out;
enc:
    msg(err, errlen, "profile '%s': cannot encode its template (%s)", cp->name,
        der_err_name(w.err));
    goto out;
oom:
    msg(err, errlen, "profile '%s': out of memory", cp->name);
out:
    free(scratch);
    OPENSSL_free(dn);
    X509_free(x);
    profile_free(p);
    return rc;
}

/* ------------------------------------------------------------ CRL shards */

unsigned profile_crl_shard(const uint8_t *serial, size_t len, unsigned n_shards)
{
    if (n_shards <= 1)
        return 0;
    uint32_t v = 0; /* the serial's last 4 octets, big-endian */
    for (size_t i = len > 4 ? len - 4 : 0; i < len; i++)
        v = (v << 8) | serial[i];
    return v % n_shards;
}

int profile_crl_dp_uri(const char *tmpl, unsigned shard, char *out, size_t cap)
{
    const char *at = strstr(tmpl, "{shard}");
    int n = at ? snprintf(out, cap, "%.*s%u%s", (int)(at - tmpl), tmpl, shard, at + 7)
               : snprintf(out, cap, "%s", tmpl);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* ------------------------------------------------------------ hot path */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* RFC 4122 §3 text form 8-4-4-4-12 hex digits, any case; written lower
 * case (TS 33.310 §6.1.3c, RFC 4122 §3: output is lower case). */
static bool uuid_lower(const cf_str *s, char out[UUID_LEN])
{
    if (s->len != UUID_LEN)
        return false;
    for (size_t i = 0; i < UUID_LEN; i++) {
        char c = s->p[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
            out[i] = c;
        } else {
            if (hexval(c) < 0)
                return false;
            out[i] = (char)tolower((unsigned char)c);
        }
    }
    return true;
}

/* A host name for dNSName (RFC 5280 §4.2.1.6, RFC 1034 §3.5 preferred
 * syntax as relaxed by RFC 1123 §2.1): LDH labels of 1..63, no leading or
 * trailing hyphen, at least two labels, 253 octets at most, no trailing
 * dot, no wildcard, a last label that is not all digits (an IPv4 address
 * is not a host name). Returns NULL or the reason. Lower-cases into out. */
static const char *fqdn_lower(const cf_str *s, char out[FQDN_MAX])
{
    if (s->len == 0)
        return "empty";
    if (s->len > FQDN_MAX)
        return "longer than 253 characters";
    size_t label = 0, labels = 1;
    bool digits_only = true;
    for (size_t i = 0; i < s->len; i++) {
        char c = s->p[i];
        if (c == '.') {
            if (label == 0)
                return "has an empty label";
            if (s->p[i - 1] == '-')
                return "has a label ending with '-'";
            label = 0;
            labels++;
            digits_only = true;
            out[i] = '.';
            continue;
        }
        if (c == '*')
            return "is a wildcard";
        if (!isalnum((unsigned char)c) && c != '-')
            return "has a character other than letters, digits, '-' and '.'";
        if (c == '-' && label == 0)
            return "has a label starting with '-'";
        if (!isdigit((unsigned char)c))
            digits_only = false;
        if (++label > 63)
            return "has a label longer than 63 characters";
        out[i] = (char)tolower((unsigned char)c);
    }
    if (label == 0)
        return "ends with '.' or has an empty label";
    if (s->p[s->len - 1] == '-')
        return "has a label ending with '-'";
    if (labels < 2)
        return "is not fully qualified";
    if (digits_only)
        return "has an all-numeric top-level label";
    return NULL;
}

/* RFC 9310: NFType ::= IA5String (SIZE (1..32)); printable, no space. */
static bool nftype_ok(const cf_str *s)
{
    if (s->len < 1 || s->len > CFG_NFTYPE_MAX)
        return false;
    for (size_t i = 0; i < s->len; i++)
        if ((unsigned char)s->p[i] <= 0x20 || (unsigned char)s->p[i] >= 0x7F)
            return false;
    return true;
}

static bool str_eq(const cf_str *a, const char *b)
{
    size_t n = strlen(b);
    return a->len == n && memcmp(a->p, b, n) == 0;
}

static int csr_key_type(const csr *c)
{
    switch (c->key) {
    case CSR_KEY_EC_P256:
        return CFG_KT_EC_P256;
    case CSR_KEY_EC_P384:
        return CFG_KT_EC_P384;
    case CSR_KEY_ED25519:
        return CFG_KT_ED25519;
    case CSR_KEY_RSA:
        return c->key_bits == 2048   ? CFG_KT_RSA_2048
               : c->key_bits == 3072 ? CFG_KT_RSA_3072
               : c->key_bits == 4096 ? CFG_KT_RSA_4096
                                     : -1;
    default:
        return -1;
    }
}

static void allowed_list(const profile *p, char *out, size_t n)
{
    size_t used = 0;
    out[0] = 0;
    for (int k = 0; k < CFG_KT__MAX; k++)
        if (p->key_types & (1u << k)) {
            int r = snprintf(out + used, n - used, "%s%s", used ? ", " : "",
                             cfg_key_type_name((cfg_key_type)k));
            if (r < 0 || (size_t)r >= n - used)
                return;
            used += (size_t)r;
        }
}

int profile_build_tbs(const profile *p, const csr *c, const cf_issue_req *req,
                      const uint8_t *serial, size_t serial_len, int64_t now, uint8_t *buf,
                      size_t cap, size_t *len, cf_status *st, char *why, size_t whylen)
{
    char show[96];
    char uri[URN_UUID_LEN + UUID_LEN];
    bool has_uri = false;
    *st = CF_ST_POLICY_DENIED;

    /* ---- the subject key */
    int kt = csr_key_type(c);
    if (kt < 0 || !(p->key_types & (1u << kt))) {
        char allowed[160];
        allowed_list(p, allowed, sizeof(allowed));
        if (kt < 0 && c->key == CSR_KEY_RSA)
            msg(why, whylen, "key type rsa-%u is not allowed by profile '%s' (allowed: %s)",
                c->key_bits, p->name, allowed);
        else
            msg(why, whylen, "key type %s is not allowed by profile '%s' (allowed: %s)",
                kt < 0 ? "?" : cfg_key_type_name((cfg_key_type)kt), p->name, allowed);
        return -1;
    }
    if (c->spki.rawlen > SPKI_MAX) {
        msg(why, whylen, "subject public key info of %zu octets is too large", c->spki.rawlen);
        return -1;
    }

    /* ---- validity: TS 33.310 §6.1.3c limit enforced on the profile max */
    uint32_t v = req->validity_s ? req->validity_s : p->vdef;
    if (v > p->vmax) {
        msg(why, whylen, "requested validity %us exceeds profile '%s' maximum of %us", v, p->name,
            p->vmax);
        return -1;
    }
    int64_t not_before = now - (int64_t)p->backdate, not_after = now + (int64_t)v;

    /* ---- NF instance ID → SAN URI urn:uuid:<uuid> (TS 33.310 §6.1.3c) */
    if (req->nf_instance_id.len) {
        memcpy(uri, URN_UUID, URN_UUID_LEN);
        if (!uuid_lower(&req->nf_instance_id, uri + URN_UUID_LEN)) {
            msg(why, whylen, "NF instance ID '%s' is not a UUID (RFC 4122 8-4-4-4-12 hex)",
                shown(show, req->nf_instance_id.p, req->nf_instance_id.len));
            return -1;
        }
        has_uri = true;
    } else if (p->require_id) {
        msg(why, whylen, "profile '%s' requires an NF instance ID", p->name);
        return -1;
    }

    /* ---- FQDNs → SAN dNSName */
    if (req->n_fqdns > CF_MAX_FQDNS) {
        msg(why, whylen, "more than %d FQDNs", CF_MAX_FQDNS);
        return -1;
    }
    for (unsigned i = 0; i < req->n_fqdns; i++) {
        char low[FQDN_MAX];
        const char *bad = fqdn_lower(&req->fqdns[i], low);
        if (bad) {
            msg(why, whylen, "FQDN '%s' %s", shown(show, req->fqdns[i].p, req->fqdns[i].len), bad);
            return -1;
        }
        for (unsigned j = 0; j < i; j++)
            if (req->fqdns[j].len == req->fqdns[i].len &&
                strncasecmp(req->fqdns[j].p, req->fqdns[i].p, req->fqdns[i].len) == 0) {
                msg(why, whylen, "FQDN '%s' given twice",
                    shown(show, req->fqdns[i].p, req->fqdns[i].len));
                return -1;
            }
    }
    if (p->require_fqdn && req->n_fqdns == 0) {
        msg(why, whylen, "profile '%s' requires at least one FQDN", p->name);
        return -1;
    }
    if (!has_uri && req->n_fqdns == 0) {
        /* TS 33.310 §6.1.3c: subjectAltName is mandatory */
        msg(why, whylen, "no NF instance ID and no FQDN: nothing to put in subjectAltName");
        return -1;
    }

    /* ---- NF types → NFTypes (RFC 9310) */
    if (req->n_nf_types > CF_MAX_NF_TYPES) {
        msg(why, whylen, "more than %d NF types", CF_MAX_NF_TYPES);
        return -1;
    }
    for (unsigned i = 0; i < req->n_nf_types; i++) {
        const cf_str *t = &req->nf_types[i];
        if (!nftype_ok(t)) {
            msg(why, whylen, "NF type '%s' is not an NFType (RFC 9310: 1..32 IA5 characters)",
                shown(show, t->p, t->len));
            return -1;
        }
        if (p->type == CFG_PROFILE_SEPP && !str_eq(t, "SEPP")) {
            msg(why, whylen, "profile '%s' issues NF type SEPP only, not '%s'", p->name,
                shown(show, t->p, t->len));
            return -1;
        }
        if (p->n_nf_types) {
            size_t k;
            for (k = 0; k < p->n_nf_types; k++)
                if (str_eq(t, p->nf_types[k]))
                    break;
            if (k == p->n_nf_types) {
                msg(why, whylen, "NF type '%s' is not allowed by profile '%s'",
                    shown(show, t->p, t->len), p->name);
                return -1;
            }
        }
        for (unsigned j = 0; j < i; j++)
            if (req->nf_types[j].len == t->len && memcmp(req->nf_types[j].p, t->p, t->len) == 0) {
                msg(why, whylen, "NF type '%s' given twice", shown(show, t->p, t->len));
                return -1;
            }
    }
    if (p->require_types && req->n_nf_types == 0) {
        msg(why, whylen, "profile '%s' requires at least one NF type (RFC 9310 NFTypes)", p->name);
        return -1;
    }
    bool sepp = p->type == CFG_PROFILE_SEPP;
    bool has_nft = sepp || req->n_nf_types > 0;

    /* ---- every SAN the CSR asks for must have been authorized */
    csr_san_iter it;
    memset(&it, 0, sizeof(it));
    for (;;) {
        csr_san_type t;
        const uint8_t *val;
        size_t vl;
        bool done;
        if (csr_next_san(c, &it, &t, &val, &vl, &done) != CSR_OK) {
            *st = CF_ST_BAD_CSR;
            msg(why, whylen, "malformed subjectAltName in the CSR's extensionRequest");
            return -1;
        }
        if (done)
            break;
        const char *s = (const char *)val;
        bool ok = false;
        if (t == CSR_SAN_DNS) {
            for (unsigned i = 0; !ok && i < req->n_fqdns; i++)
                ok = req->fqdns[i].len == vl && strncasecmp(req->fqdns[i].p, s, vl) == 0;
            if (!ok) {
                msg(why, whylen, "CSR asks for dNSName '%s', which was not authorized",
                    shown(show, s, vl));
                return -1;
            }
        } else if (t == CSR_SAN_URI) {
            /* URN scheme, NID and UUID compare case-insensitively (RFC 8141
             * §3.1, RFC 4122 §3) */
            ok = has_uri && vl == sizeof(uri) && strncasecmp(uri, s, vl) == 0;
            if (!ok) {
                msg(why, whylen, "CSR asks for URI '%s', which was not authorized",
                    shown(show, s, vl));
                return -1;
            }
        } else {
            msg(why, whylen,
                "CSR asks for a subjectAltName type (not dNSName or URI) this profile never "
                "issues");
            return -1;
        }
    }

    /* ---- serial: RFC 5280 §4.1.2.2 positive, at most 20 octets */
    size_t lead = 0;
    while (lead < serial_len && serial[lead] == 0)
        lead++;
    if (!serial || lead == serial_len || serial_len - lead > PROFILE_SERIAL_MAX ||
        (serial_len - lead == PROFILE_SERIAL_MAX && (serial[lead] & 0x80))) {
        *st = CF_ST_INTERNAL;
        msg(why, whylen, "serial is zero or does not fit 20 octets as a positive INTEGER");
        return -1;
    }

    /* ---- encode */
    uint8_t ski[EVP_MAX_MD_SIZE];
    unsigned ski_len = 0;
    if (digest(p->sha1, c->pub, c->pub_len, ski, &ski_len)) {
        *st = CF_ST_INTERNAL;
        msg(why, whylen, "SHA-1 for the subjectKeyIdentifier failed");
        return -1;
    }

    der_w w;
    der_w_init(&w, buf, cap);
    der_w_begin(&w, DER_SEQUENCE); /* TBSCertificate, RFC 5280 §4.1 */
    der_w_raw(&w, VERSION_V3, sizeof(VERSION_V3));
    der_w_int_mag(&w, serial, serial_len);
    der_w_raw(&w, p->sigalg, p->sigalg_len);
    der_w_raw(&w, p->issuer_dn, p->issuer_dn_len);
    der_w_begin(&w, DER_SEQUENCE); /* Validity, RFC 5280 §4.1.2.5 */
    der_w_time(&w, not_before);
    der_w_time(&w, not_after);
    der_w_end(&w);
    der_w_raw(&w, p->subject, p->subject_len);
    der_w_raw(&w, c->spki.raw, c->spki.rawlen); /* verbatim from the CSR */
    der_w_begin(&w, DER_CTX_CONS(3));
    der_w_begin(&w, DER_SEQUENCE);

    /* subjectAltName, critical (TS 33.310 §6.1.3c; RFC 5280 §4.2.1.6) */
    ext_begin(&w, OID_SAN, sizeof(OID_SAN), true);
    der_w_begin(&w, DER_SEQUENCE);
    if (has_uri)
        der_w_tlv(&w, DER_CTX(6), uri, sizeof(uri));
    for (unsigned i = 0; i < req->n_fqdns; i++) {
        char low[FQDN_MAX];
        (void)fqdn_lower(&req->fqdns[i], low); /* checked above */
        der_w_tlv(&w, DER_CTX(2), low, req->fqdns[i].len);
    }
    der_w_end(&w);
    ext_end(&w);

    unsigned shard = profile_crl_shard(serial, serial_len, p->n_shards);
    der_w_raw(&w, p->ext_const[shard], p->ext_const_len[shard]);

    /* subjectKeyIdentifier, method 1 (RFC 5280 §4.2.1.2) */
    ext_begin(&w, OID_SKI, sizeof(OID_SKI), false);
    der_w_octets(&w, ski, ski_len);
    ext_end(&w);

    if (has_nft) {
        /* NFTypes, non-critical (RFC 9310 §3, TS 33.310 §6.1.3c) */
        ext_begin(&w, OID_NFTYPES, sizeof(OID_NFTYPES), false);
        der_w_begin(&w, DER_SEQUENCE);
        if (sepp && req->n_nf_types == 0)
            der_w_string(&w, DER_IA5_STRING, "SEPP", 4);
        for (unsigned i = 0; i < req->n_nf_types; i++)
            der_w_string(&w, DER_IA5_STRING, req->nf_types[i].p, req->nf_types[i].len);
        der_w_end(&w);
        ext_end(&w);
    }

    der_w_end(&w); /* Extensions */
    der_w_end(&w); /* [3] */
    der_w_end(&w); /* TBSCertificate */
    der_err e = der_w_finish(&w, len);
    if (e != DER_OK) {
        *st = CF_ST_INTERNAL;
        if (e == DER_ERR_OVERFLOW) {
            /* The caller's buffer is its certificate size limit: a request
             * over it is refused, not an engine fault. */
            *st = CF_ST_POLICY_DENIED;
            msg(why, whylen,
                "the certificate would need %zu octets for its TBSCertificate; this engine "
                "takes at most %zu (ask for fewer or shorter names)",
                *len, cap);
        } else
            msg(why, whylen, "TBS encoding failed: %s", der_err_name(e));
        return -1;
    }
    *st = CF_ST_OK;
    return 0;
}

int profile_tbs_digest(const profile *p, const uint8_t *tbs, size_t tbs_len,
                       uint8_t digest_out[PROFILE_DIGEST_MAX], const uint8_t **in, size_t *inlen)
{
    if (!p->tbs_md) { /* Ed25519 (RFC 8032 PureEdDSA) signs the message */
        *in = tbs;
        *inlen = tbs_len;
        return 0;
    }
    unsigned n = 0;
    if (digest(p->tbs_md, tbs, tbs_len, digest_out, &n))
        return -1;
    *in = digest_out;
    *inlen = n;
    return 0;
}

size_t profile_sigalg_der(cf_sig_alg m, uint8_t *buf, size_t cap)
{
    if ((unsigned)m >= CF_SIG__MAX)
        return 0;
    der_w w;
    size_t len = 0;
    der_w_init(&w, buf, cap);
    w_sigalg(&w, m);
    return der_w_finish(&w, &len) == DER_OK ? len : 0;
}

int profile_cert_key_id(const X509 *x, uint8_t *out, size_t *len)
{
    const ASN1_OCTET_STRING *xs = X509_get0_subject_key_id((X509 *)x);
    if (xs) {
        int n = ASN1_STRING_length(xs);
        if (n <= 0 || n > EVP_MAX_MD_SIZE)
            return -1;
        memcpy(out, ASN1_STRING_get0_data(xs), (size_t)n);
        *len = (size_t)n;
        return 0;
    }
    const ASN1_BIT_STRING *bits = X509_get0_pubkey_bitstr(x);
    unsigned n = 0;
    if (!bits || EVP_Digest(ASN1_STRING_get0_data(bits), (size_t)ASN1_STRING_length(bits), out, &n,
                            EVP_sha1(), NULL) != 1)
        return -1;
    *len = n;
    return 0;
}

int profile_assemble(const profile *p, const uint8_t *tbs, size_t tbs_len, const uint8_t *sig,
                     size_t sig_len, uint8_t *buf, size_t cap, size_t *len)
{
    der_w w;
    der_w_init(&w, buf, cap);
    der_w_begin(&w, DER_SEQUENCE);
    der_w_raw(&w, tbs, tbs_len);
    der_w_raw(&w, p->sigalg, p->sigalg_len);
    der_w_bits(&w, sig, sig_len);
    der_w_end(&w);
    return der_w_finish(&w, len) == DER_OK ? 0 : -1;
}

const char *profile_name(const profile *p)
{
    return p->name;
}
cfg_profile_type profile_type(const profile *p)
{
    return p->type;
}
cf_sig_alg profile_mech(const profile *p)
{
    return p->mech;
}
cfg_hash profile_hash(const profile *p)
{
    return p->hash;
}
const char *profile_issuer_name(const profile *p)
{
    return p->issuer;
}
const char *profile_issuer_key(const profile *p)
{
    return p->issuer_key;
}
const uint8_t *profile_issuer_dn(const profile *p, size_t *len)
{
    *len = p->issuer_dn_len;
    return p->issuer_dn;
}
size_t profile_tbs_max(const profile *p)
{
    return p->tbs_max;
}
size_t profile_cert_max(const profile *p)
{
    return p->cert_max;
}
