/* jws.c — JWS and JWK for certforge-acme (acme/jws.h).
 *
 * Every input here comes from the network. The rules that shape the code:
 *  - one encoding per value: base64url without padding and with zero
 *    trailing bits, EC coordinates of exactly the field size, RSA integers
 *    without leading zero octets. A key then has exactly one JWK, so its
 *    RFC 7638 thumbprint (computed from the members as sent) is the key's,
 *    and one key cannot be made to look like two accounts;
 *  - keys are built with EVP_PKEY_fromdata from the decoded members, never
 *    through the decoder framework, and EC points are checked on the curve;
 *  - signatures go through EVP_DigestVerify; the only conversion here is
 *    the JWS r || s form of ECDSA (RFC 7518 §3.4) into the DER that
 *    OpenSSL takes, with ECDSA_SIG;
 *  - nothing global: no caches, no prefetched objects (measured: fetching
 *    SHA-256 once saves nothing against EVP_DigestVerifyInit's own lookup,
 *    2.0 µs either way on OpenSSL 3.0; bench/RESULTS.md);
 *  - the OpenSSL error queue is left as it was found (ERR_set_mark /
 *    ERR_pop_to_mark), so a refused request leaves nothing for the next
 *    one on the same thread to trip over;
 *  - messages may quote the request; they are cut to printable ASCII so a
 *    caller can put them in a problem document or a log line as they are.
 */
#include "acme/jws.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <stdarg.h>
#include <stdbool.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Key limits (acme/jws.h). RSA e is at most 64 bits: OpenSSL refuses
 * larger exponents with moduli over 3072 bits, and below that a huge e
 * would make every verify cost as much as a private-key operation. */
#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 8192
#define RSA_MAX_N_OCTETS (RSA_MAX_BITS / 8)
#define RSA_MAX_E_OCTETS 8
#define EC_MAX_OCTETS 48 /* P-384 */
#define ED25519_OCTETS 32
#define HMAC_MAX_OCTETS 64 /* SHA-512 */
/* DER ECDSA-Sig-Value for P-384 at most: SEQUENCE header (2) and two
 * INTEGERs of up to 49 octets with their headers (2 + 49 each). */
#define ECDSA_DER_MAX (2 + 2 * (2 + EC_MAX_OCTETS + 1))

/* RFC 7515 §5.2 step 4 lets a recipient refuse duplicate member names; a
 * JWS whose "url" or "alg" could be read two ways must be refused. */
#define JSON_FLAGS JSON_REJECT_DUPLICATES

/* ------------------------------------------------------------ names */

static const char *const ALG_NAMES[ACME_JWS_ALG__MAX] = {
    [ACME_JWS_ALG_NONE] = "(none)", [ACME_JWS_ALG_ES256] = "ES256", [ACME_JWS_ALG_ES384] = "ES384",
    [ACME_JWS_ALG_RS256] = "RS256", [ACME_JWS_ALG_EDDSA] = "EdDSA", [ACME_JWS_ALG_HS256] = "HS256",
    [ACME_JWS_ALG_HS384] = "HS384", [ACME_JWS_ALG_HS512] = "HS512",
};

const char *acme_jws_alg_name(acme_jws_alg a)
{
    return (unsigned)a < ACME_JWS_ALG__MAX ? ALG_NAMES[a] : "(invalid)";
}

acme_jws_alg acme_jws_alg_from_name(const char *s)
{
    /* RFC 7515 §4.1.1: "alg" is case-sensitive. */
    if (s != NULL)
        for (int a = ACME_JWS_ALG_NONE + 1; a < ACME_JWS_ALG__MAX; a++)
            if (strcmp(s, ALG_NAMES[a]) == 0)
                return (acme_jws_alg)a;
    return ACME_JWS_ALG_NONE;
}

/* RFC 8555 §6.7. A bad signature has no type of its own: malformed. */
static const char *const PROBLEMS[ACME_JWS_E__MAX] = {
    [ACME_JWS_OK] = NULL,
    [ACME_JWS_E_MALFORMED] = "urn:ietf:params:acme:error:malformed",
    [ACME_JWS_E_BAD_ALG] = "urn:ietf:params:acme:error:badSignatureAlgorithm",
    [ACME_JWS_E_BAD_KEY] = "urn:ietf:params:acme:error:badPublicKey",
    [ACME_JWS_E_BAD_SIGNATURE] = "urn:ietf:params:acme:error:malformed",
    [ACME_JWS_E_INTERNAL] = "urn:ietf:params:acme:error:serverInternal",
};

const char *acme_jws_err_problem(acme_jws_err e)
{
    return (unsigned)e < ACME_JWS_E__MAX ? PROBLEMS[e] : PROBLEMS[ACME_JWS_E_INTERNAL];
}

/* ------------------------------------------------------------ messages */

/* Writes the reason into msg (printable ASCII only: it may quote the
 * request) and returns e, so a refusal reads `e = why(...); goto out;`. */
__attribute__((format(printf, 4, 5))) static acme_jws_err why(char *msg, size_t msglen,
                                                              acme_jws_err e, const char *fmt, ...)
{
    if (msg == NULL || msglen == 0)
        return e;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msglen, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            *p = '?';
    return e;
}

/* An OpenSSL call failed for a reason that is not the request's. */
static acme_jws_err internal(char *msg, size_t msglen, const char *what)
{
    char buf[160] = "no OpenSSL error";
    unsigned long e = ERR_peek_last_error();
    if (e != 0)
        ERR_error_string_n(e, buf, sizeof(buf));
    return why(msg, msglen, ACME_JWS_E_INTERNAL, "%s failed: %s", what, buf);
}

/* ------------------------------------------------------------ base64url */

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1; /* '=', '+', '/', whitespace, NUL, ... */
}

/* Octets that n characters decode to; SIZE_MAX for n ≡ 1 (mod 4), a length
 * no encoding has (RFC 4648 §5: 4 characters per 3 octets, 2 or 3 for the
 * last 1 or 2). */
static size_t b64url_decoded_len(size_t n)
{
    return n % 4 == 1 ? SIZE_MAX : n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
}

size_t acme_b64url_encode(const uint8_t *in, size_t n, char *out, size_t cap)
{
    if (out == NULL || (in == NULL && n > 0) || n > (SIZE_MAX - 3) / 4 ||
        cap < acme_b64url_len(n) + 1)
        return 0;
    size_t o = 0, i = 0;
    for (; n - i >= 3; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = B64URL[v >> 18];
        out[o++] = B64URL[(v >> 12) & 63];
        out[o++] = B64URL[(v >> 6) & 63];
        out[o++] = B64URL[v & 63];
    }
    if (n - i > 0) {
        uint32_t v = (uint32_t)in[i] << 16 | (n - i == 2 ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = B64URL[v >> 18];
        out[o++] = B64URL[(v >> 12) & 63];
        if (n - i == 2)
            out[o++] = B64URL[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

/* The decoder; out == NULL only checks the encoding. */
static long b64url_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
    size_t need = b64url_decoded_len(n);
    if (need == SIZE_MAX || need > (size_t)LONG_MAX || (in == NULL && n > 0) ||
        (out != NULL && need > cap))
        return -1;
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_val((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (out != NULL)
                out[o] = (uint8_t)(acc >> bits);
            o++;
            acc &= (1u << bits) - 1;
        }
    }
    /* The 2 or 4 bits left over must be zero (RFC 4648 §3.5): otherwise
     * several strings decode to the same octets. */
    return acc == 0 ? (long)o : -1;
}

long acme_b64url_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
    /* No buffer: only the empty string fits. */
    if (out == NULL)
        return n == 0 ? 0 : -1;
    return b64url_decode(in, n, out, cap);
}

/* A new buffer with the decoded string and a NUL after it (not counted). */
static uint8_t *b64url_decode_alloc(const char *in, size_t n, size_t *len)
{
    size_t need = b64url_decoded_len(n);
    uint8_t *b = need == SIZE_MAX ? NULL : malloc(need + 1);
    long got = b == NULL ? -1 : b64url_decode(in, n, b, need);
    if (got < 0) {
        free(b);
        return NULL;
    }
    b[got] = 0;
    *len = (size_t)got;
    return b;
}

/* A new NUL-terminated base64url string. */
static char *b64url_encode_alloc(const uint8_t *in, size_t n)
{
    char *s = malloc(acme_b64url_len(n) + 1);
    if (s != NULL && acme_b64url_encode(in, n, s, acme_b64url_len(n) + 1) != acme_b64url_len(n)) {
        free(s);
        s = NULL;
    }
    return s;
}

/* ------------------------------------------------------------ JWK */

/* RFC 7517 §4 / RFC 7518 §6.2.2, §6.3.2 / RFC 8037 §2: members that carry
 * private or symmetric key material. A client that sends them has leaked
 * its key; refusing says so instead of quietly using the public half. */
static const char *const PRIVATE_MEMBERS[] = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"};

static bool str_is(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

/* A required string member of the JWK. Lengths come from jansson, not
 * strlen: a programmatically built json_t may hold a NUL. */
static acme_jws_err jwk_str(const json_t *jwk, const char *name, const char **s, size_t *n,
                            char *msg, size_t msglen)
{
    const json_t *v = json_object_get(jwk, name);
    if (v == NULL)
        return why(msg, msglen, ACME_JWS_E_BAD_KEY, "the jwk has no \"%s\"", name);
    if (!json_is_string(v))
        return why(msg, msglen, ACME_JWS_E_BAD_KEY, "the jwk's \"%s\" is not a string", name);
    *s = json_string_value(v);
    *n = json_string_length(v);
    return ACME_JWS_OK;
}

/* A base64url member decoded into out, lo..hi octets long. */
static acme_jws_err jwk_bytes(const json_t *jwk, const char *name, uint8_t *out, size_t lo,
                              size_t hi, size_t *len, char *msg, size_t msglen)
{
    const char *s;
    size_t n;
    acme_jws_err e = jwk_str(jwk, name, &s, &n, msg, msglen);
    if (e != ACME_JWS_OK)
        return e;
    /* The encoding first, so that "x=" is called what it is. */
    if (b64url_decode(s, n, NULL, 0) < 0)
        return why(msg, msglen, ACME_JWS_E_BAD_KEY,
                   "the jwk's \"%s\" is not base64url (RFC 7515, 2: no padding, no '+' or '/', "
                   "zero trailing bits)",
                   name);
    size_t need = b64url_decoded_len(n);
    if (need < lo || need > hi) {
        if (lo == hi)
            return why(msg, msglen, ACME_JWS_E_BAD_KEY,
                       "the jwk's \"%s\" encodes %zu octets; it must be exactly %zu", name, need,
                       lo);
        return why(msg, msglen, ACME_JWS_E_BAD_KEY,
                   "the jwk's \"%s\" encodes %zu octets; accepted are %zu to %zu", name, need, lo,
                   hi);
    }
    long got = b64url_decode(s, n, out, hi);
    if (got < 0)
        return why(msg, msglen, ACME_JWS_E_INTERNAL, "base64url decoder disagrees with itself");
    *len = (size_t)got;
    return ACME_JWS_OK;
}

static EVP_PKEY_CTX *fromdata_ctx(const char *type)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (ctx != NULL && EVP_PKEY_fromdata_init(ctx) != 1) {
        EVP_PKEY_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

static char NAME_P256[] = "P-256";
static char NAME_P384[] = "P-384";

/* RFC 7518 §6.2.1: crv, x, y; x and y "MUST be the full size of a
 * coordinate for the curve", so 32 octets each for P-256, 48 for P-384. */
static acme_jws_err import_ec(const json_t *jwk, EVP_PKEY **pk, acme_jws_alg *fam, char *msg,
                              size_t msglen)
{
    EVP_PKEY_CTX *ctx = NULL, *chk = NULL;
    EVP_PKEY *key = NULL;
    uint8_t pt[1 + 2 * EC_MAX_OCTETS];
    const char *crv;
    size_t crvlen, sz, len;
    char *group;
    acme_jws_alg a;
    acme_jws_err e = jwk_str(jwk, "crv", &crv, &crvlen, msg, msglen);
    if (e != ACME_JWS_OK)
        goto out;
    if (str_is(crv, crvlen, "P-256")) {
        sz = 32, group = NAME_P256, a = ACME_JWS_ALG_ES256;
    } else if (str_is(crv, crvlen, "P-384")) {
        sz = 48, group = NAME_P384, a = ACME_JWS_ALG_ES384;
    } else {
        e = why(msg, msglen, ACME_JWS_E_BAD_KEY,
                "EC curve \"%.32s\" is not accepted: use P-256 (ES256) or P-384 (ES384)", crv);
        goto out;
    }
    /* SEC1 §2.3.3 uncompressed point: 0x04 || x || y. */
    pt[0] = 0x04;
    if ((e = jwk_bytes(jwk, "x", pt + 1, sz, sz, &len, msg, msglen)) != ACME_JWS_OK ||
        (e = jwk_bytes(jwk, "y", pt + 1 + sz, sz, sz, &len, msg, msglen)) != ACME_JWS_OK)
        goto out;
    OSSL_PARAM p[3];
    p[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
    p[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pt, 1 + 2 * sz);
    p[2] = OSSL_PARAM_construct_end();
    if ((ctx = fromdata_ctx("EC")) == NULL) {
        e = internal(msg, msglen, "EC key context");
        goto out;
    }
    /* EC_POINT_oct2point refuses coordinates >= p and points off the
     * curve (a 0x04 encoding cannot name the point at infinity); the quick
     * public check below says so again without relying on that, for 4 µs.
     * Not the full check: P-256 and P-384 have cofactor 1, so a point on
     * the curve is in the group and n·Q = O would cost 45 µs to learn
     * nothing. */
    if (EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, p) != 1) {
        e = why(msg, msglen, ACME_JWS_E_BAD_KEY, "the jwk's (x, y) is not a point on %s", group);
        goto out;
    }
    if ((chk = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL)) == NULL) {
        e = internal(msg, msglen, "EC key check context");
        goto out;
    }
    if (EVP_PKEY_public_check_quick(chk) != 1) {
        e = why(msg, msglen, ACME_JWS_E_BAD_KEY, "the jwk's (x, y) is not a valid %s public key",
                group);
        goto out;
    }
    *pk = key;
    key = NULL;
    *fam = a;
out:
    EVP_PKEY_free(key);
    EVP_PKEY_CTX_free(chk);
    EVP_PKEY_CTX_free(ctx);
    return e;
}

/* OSSL_PARAM_construct_BN takes native-endian integers. */
static void to_native(uint8_t *dst, const uint8_t *src, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (size_t i = 0; i < n; i++)
        dst[i] = src[n - 1 - i];
#else
    memcpy(dst, src, n);
#endif
}

static unsigned bit_len8(uint8_t b)
{
    unsigned n = 0;
    for (; b; b >>= 1)
        n++;
    return n;
}

/* RFC 7518 §6.3.1: n and e are base64urlUInt, which §2 says "MUST utilize
 * the minimum number of octets": no leading zero octet. */
static acme_jws_err import_rsa(const json_t *jwk, EVP_PKEY **pk, acme_jws_alg *fam, char *msg,
                               size_t msglen)
{
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *key = NULL;
    /* One octet more than 8192 bits: such an n is refused below by its
     * leading zero or its size in bits, which says more than its length. */
    uint8_t n[RSA_MAX_N_OCTETS + 1], ex[RSA_MAX_E_OCTETS];
    uint8_t n_ne[RSA_MAX_N_OCTETS + 1], e_ne[RSA_MAX_E_OCTETS];
    size_t nl, el;
    acme_jws_err e = jwk_bytes(jwk, "n", n, 1, sizeof(n), &nl, msg, msglen);
    if (e != ACME_JWS_OK)
        goto out;
    if (n[0] == 0) {
        e = why(msg, msglen, ACME_JWS_E_BAD_KEY,
                "the jwk's \"n\" has a leading zero octet (RFC 7518, 2: minimal base64urlUInt)");
        goto out;
    }
    size_t bits = (nl - 1) * 8 + bit_len8(n[0]);
    if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS) {
        e = why(msg, msglen, ACME_JWS_E_BAD_KEY,
                "RSA modulus of %zu bits: accepted are %d to %d bits", bits, RSA_MIN_BITS,
                RSA_MAX_BITS);
        goto out;
    }
    if ((n[nl - 1] & 1) == 0) {
        e = why(msg, msglen, ACME_JWS_E_BAD_KEY, "the jwk's \"n\" is even: not an RSA modulus");
        goto out;
    }
    if ((e = jwk_bytes(jwk, "e", ex, 1, RSA_MAX_E_OCTETS, &el, msg, msglen)) != ACME_JWS_OK)
        goto out;
    if (ex[0] == 0) {
        e = why(msg, msglen, ACME_JWS_E_BAD_KEY,
                "the jwk's \"e\" has a leading zero octet (RFC 7518, 2: minimal base64urlUInt)");
        goto out;
    }
    if ((ex[el - 1] & 1) == 0 || (el == 1 && ex[0] == 1)) {
        e = why(msg, msglen, ACME_JWS_E_BAD_KEY, "RSA public exponent must be odd and > 1");
        goto out;
    }
    to_native(n_ne, n, nl);
    to_native(e_ne, ex, el);
    OSSL_PARAM p[3];
    p[0] = OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_RSA_N, n_ne, nl);
    p[1] = OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_RSA_E, e_ne, el);
    p[2] = OSSL_PARAM_construct_end();
    /* The RSA import only copies the numbers: a failure is not the key's. */
    if ((ctx = fromdata_ctx("RSA")) == NULL ||
        EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, p) != 1) {
        e = internal(msg, msglen, "RSA key import");
        goto out;
    }
    *pk = key;
    key = NULL;
    *fam = ACME_JWS_ALG_RS256;
out:
    EVP_PKEY_free(key);
    EVP_PKEY_CTX_free(ctx);
    return e;
}

/* RFC 8037 §2: kty OKP, crv Ed25519, x the 32-octet public key. Ed448 is
 * not an ACME account algorithm here. */
static acme_jws_err import_okp(const json_t *jwk, EVP_PKEY **pk, acme_jws_alg *fam, char *msg,
                               size_t msglen)
{
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *key = NULL;
    uint8_t x[ED25519_OCTETS];
    const char *crv;
    size_t crvlen, len;
    acme_jws_err e = jwk_str(jwk, "crv", &crv, &crvlen, msg, msglen);
    if (e != ACME_JWS_OK)
        goto out;
    if (!str_is(crv, crvlen, "Ed25519")) {
        e = why(msg, msglen, ACME_JWS_E_BAD_KEY,
                "OKP curve \"%.32s\" is not accepted: use Ed25519 (EdDSA)", crv);
        goto out;
    }
    if ((e = jwk_bytes(jwk, "x", x, sizeof(x), sizeof(x), &len, msg, msglen)) != ACME_JWS_OK)
        goto out;
    OSSL_PARAM p[2];
    p[0] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, x, sizeof(x));
    p[1] = OSSL_PARAM_construct_end();
    /* Any 32 octets import; one that is no point fails at verify. */
    if ((ctx = fromdata_ctx("ED25519")) == NULL ||
        EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, p) != 1) {
        e = internal(msg, msglen, "Ed25519 key import");
        goto out;
    }
    *pk = key;
    key = NULL;
    *fam = ACME_JWS_ALG_EDDSA;
out:
    EVP_PKEY_free(key);
    EVP_PKEY_CTX_free(ctx);
    return e;
}

int acme_jwk_import(const json_t *jwk, EVP_PKEY **out, acme_jws_alg *alg_family, acme_jws_err *err,
                    char *msg, size_t msglen)
{
    EVP_PKEY *key = NULL;
    acme_jws_alg fam = ACME_JWS_ALG_NONE;
    const char *kty;
    size_t ktylen;
    int rc = -1;
    acme_jws_err e;

    ERR_set_mark();
    if (out == NULL) {
        e = why(msg, msglen, ACME_JWS_E_INTERNAL, "acme_jwk_import: no output");
        goto out;
    }
    if (!json_is_object(jwk)) {
        e = why(msg, msglen, ACME_JWS_E_BAD_KEY, "the jwk is not a JSON object (RFC 7517, 4)");
        goto out;
    }
    for (size_t i = 0; i < ARRAY_LEN(PRIVATE_MEMBERS); i++)
        if (json_object_get(jwk, PRIVATE_MEMBERS[i]) != NULL) {
            e = why(msg, msglen, ACME_JWS_E_BAD_KEY,
                    "the jwk holds the private member \"%s\": send the public key only",
                    PRIVATE_MEMBERS[i]);
            goto out;
        }
    if ((e = jwk_str(jwk, "kty", &kty, &ktylen, msg, msglen)) != ACME_JWS_OK)
        goto out;
    if (str_is(kty, ktylen, "EC"))
        e = import_ec(jwk, &key, &fam, msg, msglen);
    else if (str_is(kty, ktylen, "RSA"))
        e = import_rsa(jwk, &key, &fam, msg, msglen);
    else if (str_is(kty, ktylen, "OKP"))
        e = import_okp(jwk, &key, &fam, msg, msglen);
    else
        e = why(msg, msglen, ACME_JWS_E_BAD_KEY,
                "kty \"%.32s\" is not accepted: use EC, RSA or OKP", kty);
    if (e != ACME_JWS_OK)
        goto out;
    *out = key;
    key = NULL;
    if (alg_family != NULL)
        *alg_family = fam;
    rc = 0;
out:
    EVP_PKEY_free(key);
    ERR_pop_to_mark();
    if (err != NULL)
        *err = e;
    return rc;
}

/* ------------------------------------------------------------ thumbprint */

int acme_jwk_thumbprint(const json_t *jwk, char out[44])
{
    /* RFC 7638 §3.2: the required members only, in lexicographic order. */
    static const char *const EC_M[] = {"crv", "kty", "x", "y", NULL};
    static const char *const RSA_M[] = {"e", "kty", "n", NULL};
    static const char *const OKP_M[] = {"crv", "kty", "x", NULL};
    const char *const *members = NULL;
    EVP_MD_CTX *md = NULL;
    uint8_t h[32];
    unsigned hl = 0;
    int rc = -1;
    const json_t *kty = json_object_get(jwk, "kty");

    ERR_set_mark();
    if (out == NULL || !json_is_string(kty))
        goto out;
    if (str_is(json_string_value(kty), json_string_length(kty), "EC"))
        members = EC_M;
    else if (str_is(json_string_value(kty), json_string_length(kty), "RSA"))
        members = RSA_M;
    else if (str_is(json_string_value(kty), json_string_length(kty), "OKP"))
        members = OKP_M;
    else
        goto out;
    /* §3.3 would have the values JSON-escaped; every accepted value (kty,
     * crv names, base64url) is in the base64url alphabet and needs no
     * escaping, so anything else is refused rather than escaped. */
    for (size_t i = 0; members[i] != NULL; i++) {
        const json_t *v = json_object_get(jwk, members[i]);
        size_t n = json_string_length(v);
        if (!json_is_string(v) || n == 0)
            goto out;
        for (size_t k = 0; k < n; k++)
            if (b64url_val((unsigned char)json_string_value(v)[k]) < 0)
                goto out;
    }
    if ((md = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(md, "{", 1) != 1)
        goto out;
    for (size_t i = 0; members[i] != NULL; i++) {
        const json_t *v = json_object_get(jwk, members[i]);
        if ((i > 0 && EVP_DigestUpdate(md, ",", 1) != 1) || EVP_DigestUpdate(md, "\"", 1) != 1 ||
            EVP_DigestUpdate(md, members[i], strlen(members[i])) != 1 ||
            EVP_DigestUpdate(md, "\":\"", 3) != 1 ||
            EVP_DigestUpdate(md, json_string_value(v), json_string_length(v)) != 1 ||
            EVP_DigestUpdate(md, "\"", 1) != 1)
            goto out;
    }
    if (EVP_DigestUpdate(md, "}", 1) != 1 || EVP_DigestFinal_ex(md, h, &hl) != 1 || hl != 32 ||
        acme_b64url_encode(h, hl, out, 44) != 43)
        goto out;
    rc = 0;
out:
    EVP_MD_CTX_free(md);
    ERR_pop_to_mark();
    return rc;
}

/* ------------------------------------------------------------ key → JWK */

/* Curves a JWK can name (RFC 7518 §6.2.1.1, RFC 8812 §3.1), with
 * OpenSSL's names for them and the coordinate size. Wider than what
 * acme_jwk_import accepts: tests make refused JWKs from real keys. */
static const struct {
    int nid;
    const char *crv;
    size_t sz;
} EC_CURVES[] = {
    {NID_X9_62_prime256v1, "P-256", 32},
    {NID_secp384r1, "P-384", 48},
    {NID_secp521r1, "P-521", 66},
    {NID_secp256k1, "secp256k1", 32},
};

/* The NID of an EC key's named curve, or NID_undef. */
static int ec_curve_nid(EVP_PKEY *key)
{
    char name[64];
    size_t len;
    if (EVP_PKEY_get_group_name(key, name, sizeof(name), &len) != 1)
        return NID_undef;
    int nid = OBJ_sn2nid(name);                              /* "prime256v1", "secp384r1", ... */
    return nid != NID_undef ? nid : EC_curve_nist2nid(name); /* "P-256" */
}

/* Adds member name = base64url(b, n) to o. */
static bool set_b64(json_t *o, const char *name, const uint8_t *b, size_t n)
{
    char *s = b64url_encode_alloc(b, n);
    bool ok = s != NULL && json_object_set_new(o, name, json_string(s)) == 0;
    free(s);
    return ok;
}

json_t *acme_jwk_from_pkey(EVP_PKEY *key)
{
    json_t *j = NULL, *res = NULL;
    BIGNUM *a = NULL, *b = NULL;
    uint8_t buf[2 * 1024]; /* RSA up to 16384 bits */
    size_t len;

    ERR_set_mark();
    if (key == NULL || (j = json_object()) == NULL)
        goto out;
    if (EVP_PKEY_is_a(key, "EC")) {
        int nid = ec_curve_nid(key);
        size_t c = 0;
        while (c < ARRAY_LEN(EC_CURVES) && EC_CURVES[c].nid != nid)
            c++;
        if (c == ARRAY_LEN(EC_CURVES) ||
            EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &a) != 1 ||
            EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &b) != 1)
            goto out;
        size_t sz = EC_CURVES[c].sz;
        if (json_object_set_new(j, "kty", json_string("EC")) != 0 ||
            json_object_set_new(j, "crv", json_string(EC_CURVES[c].crv)) != 0 ||
            BN_bn2binpad(a, buf, (int)sz) != (int)sz || !set_b64(j, "x", buf, sz) ||
            BN_bn2binpad(b, buf, (int)sz) != (int)sz || !set_b64(j, "y", buf, sz))
            goto out;
    } else if (EVP_PKEY_is_a(key, "RSA")) {
        int nl, el;
        if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &a) != 1 ||
            EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &b) != 1 ||
            BN_num_bytes(a) > (int)sizeof(buf) || BN_num_bytes(b) > (int)sizeof(buf))
            goto out;
        /* BN_bn2bin writes the minimal big-endian form (RFC 7518 §2). */
        if (json_object_set_new(j, "kty", json_string("RSA")) != 0 ||
            (nl = BN_bn2bin(a, buf)) <= 0 || !set_b64(j, "n", buf, (size_t)nl) ||
            (el = BN_bn2bin(b, buf)) <= 0 || !set_b64(j, "e", buf, (size_t)el))
            goto out;
    } else if (EVP_PKEY_is_a(key, "ED25519") || EVP_PKEY_is_a(key, "ED448")) {
        len = sizeof(buf);
        if (EVP_PKEY_get_raw_public_key(key, buf, &len) != 1 ||
            json_object_set_new(j, "kty", json_string("OKP")) != 0 ||
            json_object_set_new(
                j, "crv", json_string(EVP_PKEY_is_a(key, "ED25519") ? "Ed25519" : "Ed448")) != 0 ||
            !set_b64(j, "x", buf, len))
            goto out;
    } else {
        goto out;
    }
    res = j;
    j = NULL;
out:
    BN_free(a);
    BN_free(b);
    json_decref(j);
    ERR_pop_to_mark();
    return res;
}

/* ------------------------------------------------------------ JWS parse */

/* A top-level member that must be a string. */
static acme_jws_err part(const json_t *top, const char *name, const char **s, size_t *n, char *msg,
                         size_t msglen)
{
    const json_t *v = json_object_get(top, name);
    if (!json_is_string(v))
        return why(msg, msglen, ACME_JWS_E_MALFORMED,
                   v == NULL ? "the JWS has no \"%s\" (RFC 7515, 7.2.2)"
                             : "the JWS's \"%s\" is not a string (RFC 7515, 7.2.2)",
                   name);
    *s = json_string_value(v);
    *n = json_string_length(v);
    return ACME_JWS_OK;
}

/* An optional string member of the protected header. */
static acme_jws_err hdr_str(const json_t *hdr, const char *name, const char **s, char *msg,
                            size_t msglen)
{
    const json_t *v = json_object_get(hdr, name);
    *s = NULL;
    if (v == NULL)
        return ACME_JWS_OK;
    if (!json_is_string(v))
        return why(msg, msglen, ACME_JWS_E_MALFORMED,
                   "the protected header's \"%s\" is not a string", name);
    *s = json_string_value(v);
    return ACME_JWS_OK;
}

int acme_jws_parse(const char *body, size_t len, acme_jws *out, acme_jws_err *err, char *msg,
                   size_t msglen)
{
    json_t *top = NULL, *hdr = NULL;
    uint8_t *hraw = NULL, *payload = NULL, *sig = NULL;
    char *si = NULL;
    const char *prot, *pay, *sigtxt;
    size_t protl, payl, sigtxtl, hl, pl = 0, sl = 0;
    const json_t *alg, *jwk;
    acme_jws j = {0};
    json_error_t je;
    int rc = -1;
    acme_jws_err e;

    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (out == NULL || (body == NULL && len > 0)) {
        e = why(msg, msglen, ACME_JWS_E_INTERNAL, "acme_jws_parse: no body or no output");
        goto out;
    }
    /* RFC 8555 §6.2: the flattened JSON serialization, one object. */
    if ((top = json_loadb(body, len, JSON_FLAGS, &je)) == NULL) {
        e = why(msg, msglen, ACME_JWS_E_MALFORMED, "the body is not JSON: %s", je.text);
        goto out;
    }
    if (!json_is_object(top)) {
        e = why(msg, msglen, ACME_JWS_E_MALFORMED,
                "the body is not a JSON object (RFC 7515, 7.2.2 flattened serialization)");
        goto out;
    }
    if (json_object_get(top, "header") != NULL) {
        e = why(msg, msglen, ACME_JWS_E_MALFORMED,
                "\"header\": the unprotected header must not be used (RFC 8555, 6.2)");
        goto out;
    }
    if (json_object_get(top, "signatures") != NULL) {
        e = why(msg, msglen, ACME_JWS_E_MALFORMED,
                "\"signatures\": one signature in the flattened serialization (RFC 8555, 6.2)");
        goto out;
    }
    if ((e = part(top, "protected", &prot, &protl, msg, msglen)) != ACME_JWS_OK ||
        (e = part(top, "payload", &pay, &payl, msg, msglen)) != ACME_JWS_OK ||
        (e = part(top, "signature", &sigtxt, &sigtxtl, msg, msglen)) != ACME_JWS_OK)
        goto out;
    if (json_object_size(top) != 3) {
        e = why(msg, msglen, ACME_JWS_E_MALFORMED,
                "the JWS has members other than protected, payload and signature");
        goto out;
    }
    if ((hraw = b64url_decode_alloc(prot, protl, &hl)) == NULL) {
        e = why(msg, msglen, ACME_JWS_E_MALFORMED, "\"protected\" is not base64url (RFC 7515, 2)");
        goto out;
    }
    if ((payload = b64url_decode_alloc(pay, payl, &pl)) == NULL) {
        e = why(msg, msglen, ACME_JWS_E_MALFORMED, "\"payload\" is not base64url (RFC 7515, 2)");
        goto out;
    }
    if ((sig = b64url_decode_alloc(sigtxt, sigtxtl, &sl)) == NULL) {
        e = why(msg, msglen, ACME_JWS_E_MALFORMED, "\"signature\" is not base64url (RFC 7515, 2)");
        goto out;
    }
    if ((hdr = json_loadb((const char *)hraw, hl, JSON_FLAGS, &je)) == NULL) {
        e = why(msg, msglen, ACME_JWS_E_MALFORMED, "the protected header is not JSON: %s", je.text);
        goto out;
    }
    if (!json_is_object(hdr)) {
        e = why(msg, msglen, ACME_JWS_E_MALFORMED,
                "the protected header is not a JSON object (RFC 7515, 4)");
        goto out;
    }
    alg = json_object_get(hdr, "alg");
    if (alg == NULL) {
        e = why(msg, msglen, ACME_JWS_E_BAD_ALG, "the protected header has no \"alg\"");
        goto out;
    }
    if (!json_is_string(alg)) {
        e = why(msg, msglen, ACME_JWS_E_MALFORMED,
                "the protected header's \"alg\" is not a string");
        goto out;
    }
    /* RFC 7515 §4.1.11: a recipient that does not understand every
     * extension listed in "crit" must refuse; we understand none. */
    if (json_object_get(hdr, "crit") != NULL) {
        e = why(msg, msglen, ACME_JWS_E_MALFORMED,
                "\"crit\": no JWS extension is supported (RFC 7515, 4.1.11)");
        goto out;
    }
    /* RFC 7797 unencoded payloads change the signing input; ACME never
     * uses them. Refused even without "crit", which RFC 7797 §6 requires. */
    if (json_object_get(hdr, "b64") != NULL) {
        e = why(msg, msglen, ACME_JWS_E_MALFORMED,
                "\"b64\": unencoded payloads (RFC 7797) are not supported");
        goto out;
    }
    if ((e = hdr_str(hdr, "nonce", &j.nonce, msg, msglen)) != ACME_JWS_OK ||
        (e = hdr_str(hdr, "url", &j.url, msg, msglen)) != ACME_JWS_OK ||
        (e = hdr_str(hdr, "kid", &j.kid, msg, msglen)) != ACME_JWS_OK)
        goto out;
    jwk = json_object_get(hdr, "jwk");
    if (jwk != NULL && !json_is_object(jwk)) {
        e = why(msg, msglen, ACME_JWS_E_MALFORMED,
                "the protected header's \"jwk\" is not a JSON object");
        goto out;
    }
    /* RFC 7515 §5.2 step 8: the signing input is the text as sent. */
    if ((si = malloc(protl + 1 + payl + 1)) == NULL) {
        e = why(msg, msglen, ACME_JWS_E_INTERNAL, "out of memory");
        goto out;
    }
    memcpy(si, prot, protl);
    si[protl] = '.';
    memcpy(si + protl + 1, pay, payl);
    si[protl + 1 + payl] = 0;

    j.alg = acme_jws_alg_from_name(json_string_value(alg));
    j.jwk = jwk;
    j.protected_hdr = hdr;
    j.payload = payload;
    j.payload_len = pl;
    j.signing_input = si;
    j.signing_input_len = protl + 1 + payl;
    j.sig = sig;
    j.sig_len = sl;
    *out = j;
    hdr = NULL, payload = NULL, si = NULL, sig = NULL;
    rc = 0;
    e = ACME_JWS_OK;
out:
    json_decref(top);
    json_decref(hdr);
    free(hraw);
    free(payload);
    free(sig);
    free(si);
    if (err != NULL)
        *err = e;
    return rc;
}

void acme_jws_free(acme_jws *j)
{
    if (j == NULL)
        return;
    json_decref(j->protected_hdr);
    free(j->payload);
    free(j->signing_input);
    free(j->sig);
    memset(j, 0, sizeof(*j));
}

/* ------------------------------------------------------------ RFC 8555 rules */

static bool account_alg(acme_jws_alg a)
{
    return a == ACME_JWS_ALG_ES256 || a == ACME_JWS_ALG_ES384 || a == ACME_JWS_ALG_RS256 ||
           a == ACME_JWS_ALG_EDDSA;
}

static bool mac_alg(acme_jws_alg a)
{
    return a == ACME_JWS_ALG_HS256 || a == ACME_JWS_ALG_HS384 || a == ACME_JWS_ALG_HS512;
}

/* The "alg" string as sent, for messages. */
static const char *alg_text(const acme_jws *j)
{
    const char *s = json_string_value(json_object_get(j->protected_hdr, "alg"));
    return s != NULL ? s : "(absent)";
}

int acme_jws_check_acme(const acme_jws *j, int need_nonce, acme_jws_err *err, char *msg,
                        size_t msglen)
{
    int rc = -1;
    acme_jws_err e;
    if (j == NULL || j->protected_hdr == NULL) {
        e = why(msg, msglen, ACME_JWS_E_INTERNAL, "acme_jws_check_acme: no parsed JWS");
        goto out;
    }
    /* §6.2: "alg" MUST NOT be "none" nor a MAC-based algorithm. */
    if (!account_alg(j->alg)) {
        e = why(msg, msglen, ACME_JWS_E_BAD_ALG,
                "alg \"%.32s\" cannot sign an ACME request: use ES256, ES384, RS256 or EdDSA "
                "(RFC 8555, 6.2)",
                alg_text(j));
        goto out;
    }
    /* §6.2: "jwk" and "kid" are mutually exclusive; one is required. */
    if (j->jwk != NULL && j->kid != NULL) {
        e = why(msg, msglen, ACME_JWS_E_MALFORMED,
                "the protected header has both \"jwk\" and \"kid\" (RFC 8555, 6.2)");
        goto out;
    }
    if (j->jwk == NULL && j->kid == NULL) {
        e = why(msg, msglen, ACME_JWS_E_MALFORMED,
                "the protected header has neither \"jwk\" nor \"kid\" (RFC 8555, 6.2)");
        goto out;
    }
    /* §6.4: "url" MUST be in the protected header. */
    if (j->url == NULL) {
        e = why(msg, msglen, ACME_JWS_E_MALFORMED,
                "the protected header has no \"url\" (RFC 8555, 6.4)");
        goto out;
    }
    if (need_nonce) {
        /* §6.5.2: a "nonce" that is not base64url is malformed. */
        size_t n = j->nonce != NULL ? strlen(j->nonce) : 0;
        if (j->nonce == NULL) {
            e = why(msg, msglen, ACME_JWS_E_MALFORMED,
                    "the protected header has no \"nonce\" (RFC 8555, 6.5)");
            goto out;
        }
        if (n == 0 || b64url_decode(j->nonce, n, NULL, 0) < 0) {
            e = why(msg, msglen, ACME_JWS_E_MALFORMED,
                    "the \"nonce\" is not base64url (RFC 8555, 6.5.1)");
            goto out;
        }
    } else if (j->nonce != NULL) {
        /* §7.3.5: the inner JWS of a key change has no nonce (nor has EAB,
         * §7.3.4, checked by acme_jws_check_eab). */
        e = why(msg, msglen, ACME_JWS_E_MALFORMED,
                "this JWS must not have a \"nonce\" (RFC 8555, 7.3.5)");
        goto out;
    }
    rc = 0;
    e = ACME_JWS_OK;
out:
    if (err != NULL)
        *err = e;
    return rc;
}

int acme_jws_check_eab(const acme_jws *j, acme_jws_err *err, char *msg, size_t msglen)
{
    int rc = -1;
    acme_jws_err e;
    if (j == NULL || j->protected_hdr == NULL) {
        e = why(msg, msglen, ACME_JWS_E_INTERNAL, "acme_jws_check_eab: no parsed JWS");
        goto out;
    }
    /* RFC 8555 §7.3.4: a MAC algorithm, the CA's key identifier in "kid",
     * no "nonce", "url" the outer JWS's. A MAC has no public key: no jwk. */
    if (!mac_alg(j->alg)) {
        e = why(msg, msglen, ACME_JWS_E_BAD_ALG,
                "externalAccountBinding alg \"%.32s\" is not HS256, HS384 or HS512 (RFC 8555, "
                "7.3.4)",
                alg_text(j));
        goto out;
    }
    if (j->kid == NULL || j->jwk != NULL) {
        e = why(msg, msglen, ACME_JWS_E_MALFORMED,
                "externalAccountBinding needs \"kid\" (the EAB key identifier) and no \"jwk\" "
                "(RFC 8555, 7.3.4)");
        goto out;
    }
    if (j->nonce != NULL) {
        e = why(msg, msglen, ACME_JWS_E_MALFORMED,
                "externalAccountBinding must not have a \"nonce\" (RFC 8555, 7.3.4)");
        goto out;
    }
    if (j->url == NULL) {
        e = why(msg, msglen, ACME_JWS_E_MALFORMED,
                "externalAccountBinding has no \"url\" (RFC 8555, 7.3.4)");
        goto out;
    }
    rc = 0;
    e = ACME_JWS_OK;
out:
    if (err != NULL)
        *err = e;
    return rc;
}

/* ------------------------------------------------------------ verify */

/* The JWS alg a key signs with (RFC 7518 §3.1, RFC 8037 §3.1), and for
 * ECDSA the size of r and s; ACME_JWS_ALG_NONE for any other key. */
static acme_jws_alg key_alg(EVP_PKEY *key, size_t *ec_sz)
{
    *ec_sz = 0;
    if (EVP_PKEY_is_a(key, "EC")) {
        int nid = ec_curve_nid(key);
        *ec_sz = nid == NID_X9_62_prime256v1 ? 32 : nid == NID_secp384r1 ? 48 : 0;
        return nid == NID_X9_62_prime256v1 ? ACME_JWS_ALG_ES256
               : nid == NID_secp384r1      ? ACME_JWS_ALG_ES384
                                           : ACME_JWS_ALG_NONE;
    }
    /* "RSA" only: an RSA-PSS-restricted key is not an RS256 key. */
    if (EVP_PKEY_is_a(key, "RSA"))
        return ACME_JWS_ALG_RS256;
    if (EVP_PKEY_is_a(key, "ED25519"))
        return ACME_JWS_ALG_EDDSA;
    return ACME_JWS_ALG_NONE;
}

static const EVP_MD *alg_md(acme_jws_alg a)
{
    switch (a) {
    case ACME_JWS_ALG_ES256:
    case ACME_JWS_ALG_RS256:
    case ACME_JWS_ALG_HS256:
        return EVP_sha256();
    case ACME_JWS_ALG_ES384:
    case ACME_JWS_ALG_HS384:
        return EVP_sha384();
    case ACME_JWS_ALG_HS512:
        return EVP_sha512();
    default:
        return NULL; /* EdDSA: PureEdDSA hashes inside (RFC 8032 §5.1) */
    }
}

/* RFC 7518 §3.4: the JWS signature is R || S, each the curve's size, big
 * endian; OpenSSL verifies the DER ECDSA-Sig-Value. Returns the DER length
 * in der (ECDSA_DER_MAX), 0 on failure. */
static size_t ecdsa_raw_to_der(const uint8_t *raw, size_t sz, uint8_t *der)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, (int)sz, NULL), *s = BN_bin2bn(raw + sz, (int)sz, NULL);
    size_t res = 0;
    int len;
    if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1)
        goto out;
    r = s = NULL; /* owned by es */
    if ((len = i2d_ECDSA_SIG(es, NULL)) <= 0 || len > ECDSA_DER_MAX)
        goto out;
    uint8_t *p = der;
    if (i2d_ECDSA_SIG(es, &p) != len)
        goto out;
    res = (size_t)len;
out:
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return res;
}

int acme_jws_verify(const acme_jws *j, EVP_PKEY *key, acme_jws_err *err, char *msg, size_t msglen)
{
    EVP_MD_CTX *mctx = NULL;
    uint8_t der[ECDSA_DER_MAX];
    const uint8_t *sig;
    size_t siglen, ec_sz;
    int rc = -1;
    acme_jws_err e;

    ERR_set_mark();
    if (j == NULL || j->signing_input == NULL || key == NULL) {
        e = why(msg, msglen, ACME_JWS_E_INTERNAL, "acme_jws_verify: no parsed JWS or no key");
        goto out;
    }
    if (!account_alg(j->alg)) {
        e = why(msg, msglen, ACME_JWS_E_BAD_ALG,
                "alg \"%.32s\" cannot sign an ACME request: use ES256, ES384, RS256 or EdDSA "
                "(RFC 8555, 6.2)",
                alg_text(j));
        goto out;
    }
    /* The header's alg must be the key's (RFC 7515 §10.7: the key, not the
     * sender, decides the algorithm; RFC 8555 §6.2 calls a mismatch a bad
     * public key). */
    acme_jws_alg ka = key_alg(key, &ec_sz);
    if (ka != j->alg) {
        e = why(msg, msglen, ACME_JWS_E_BAD_KEY, "alg %s does not fit the key (which signs %s)",
                acme_jws_alg_name(j->alg),
                ka == ACME_JWS_ALG_NONE ? "no accepted algorithm" : acme_jws_alg_name(ka));
        goto out;
    }
    sig = j->sig;
    siglen = j->sig_len;
    switch (ka) {
    case ACME_JWS_ALG_ES256:
    case ACME_JWS_ALG_ES384:
        /* A DER signature or a short R is refused here, not guessed at. */
        if (j->sig_len != 2 * ec_sz) {
            e = why(msg, msglen, ACME_JWS_E_BAD_SIGNATURE,
                    "%s signature of %zu octets: it is R || S, %zu octets (RFC 7518, 3.4)",
                    acme_jws_alg_name(ka), j->sig_len, 2 * ec_sz);
            goto out;
        }
        if ((siglen = ecdsa_raw_to_der(j->sig, ec_sz, der)) == 0) {
            e = internal(msg, msglen, "ECDSA signature conversion");
            goto out;
        }
        sig = der;
        break;
    case ACME_JWS_ALG_RS256: {
        /* The key may come from elsewhere than acme_jwk_import. */
        int bits = EVP_PKEY_get_bits(key);
        if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS) {
            e = why(msg, msglen, ACME_JWS_E_BAD_KEY,
                    "RSA key of %d bits: accepted are %d to %d bits", bits, RSA_MIN_BITS,
                    RSA_MAX_BITS);
            goto out;
        }
        /* RFC 8017 §8.2.2 step 1: exactly the modulus's length. */
        if (j->sig_len != (size_t)EVP_PKEY_get_size(key)) {
            e = why(msg, msglen, ACME_JWS_E_BAD_SIGNATURE,
                    "RS256 signature of %zu octets for a %d-bit key", j->sig_len, bits);
            goto out;
        }
        break;
    }
    default: /* EdDSA: OpenSSL checks the length (RFC 8032 §5.1.7) */
        break;
    }
    if ((mctx = EVP_MD_CTX_new()) == NULL ||
        EVP_DigestVerifyInit(mctx, NULL, alg_md(ka), NULL, key) != 1) {
        e = internal(msg, msglen, "EVP_DigestVerifyInit");
        goto out;
    }
    /* 1: verified. 0 or < 0: the signature is wrong or does not decode
     * (r or s out of range, EdDSA S >= L): the sender's fault either way. */
    if (EVP_DigestVerify(mctx, sig, siglen, (const uint8_t *)j->signing_input,
                         j->signing_input_len) != 1) {
        e = why(msg, msglen, ACME_JWS_E_BAD_SIGNATURE, "the %s signature does not verify",
                acme_jws_alg_name(ka));
        goto out;
    }
    rc = 0;
    e = ACME_JWS_OK;
out:
    EVP_MD_CTX_free(mctx);
    ERR_pop_to_mark();
    if (err != NULL)
        *err = e;
    return rc;
}

/* ------------------------------------------------------------ HMAC (EAB) */

/* HMAC over data with the alg's hash (RFC 7518 §3.2) into out
 * (HMAC_MAX_OCTETS); returns its length, 0 on an OpenSSL failure. */
static size_t hmac(acme_jws_alg a, const uint8_t *key, size_t keylen, const void *data, size_t len,
                   uint8_t *out)
{
    static char SHA256[] = "SHA2-256", SHA384[] = "SHA2-384", SHA512[] = "SHA2-512";
    char *digest = a == ACME_JWS_ALG_HS256   ? SHA256
                   : a == ACME_JWS_ALG_HS384 ? SHA384
                   : a == ACME_JWS_ALG_HS512 ? SHA512
                                             : NULL;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM p[2];
    size_t outl = 0, res = 0;
    p[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
    p[1] = OSSL_PARAM_construct_end();
    if (ctx != NULL && digest != NULL && EVP_MAC_init(ctx, key, keylen, p) == 1 &&
        EVP_MAC_update(ctx, data, len) == 1 && EVP_MAC_final(ctx, out, &outl, HMAC_MAX_OCTETS) == 1)
        res = outl;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return res;
}

int acme_jws_verify_hmac(const acme_jws *j, const uint8_t *key, size_t keylen, acme_jws_err *err,
                         char *msg, size_t msglen)
{
    uint8_t mac[HMAC_MAX_OCTETS];
    size_t want, got = 0;
    int rc = -1;
    acme_jws_err e;

    ERR_set_mark();
    if (j == NULL || j->signing_input == NULL) {
        e = why(msg, msglen, ACME_JWS_E_INTERNAL, "acme_jws_verify_hmac: no parsed JWS");
        goto out;
    }
    if (!mac_alg(j->alg)) {
        e = why(msg, msglen, ACME_JWS_E_BAD_ALG,
                "externalAccountBinding alg \"%.32s\" is not HS256, HS384 or HS512 (RFC 8555, "
                "7.3.4)",
                alg_text(j));
        goto out;
    }
    want = (size_t)EVP_MD_get_size(alg_md(j->alg));
    /* RFC 7518 §3.2: a key at least as long as the hash output MUST be
     * used; the client chose the alg, so it hears which one to use. */
    if (key == NULL || keylen < want) {
        e = why(msg, msglen, ACME_JWS_E_BAD_KEY,
                "the EAB key has %zu octets, too short for %s (RFC 7518, 3.2): use HS256", keylen,
                acme_jws_alg_name(j->alg));
        goto out;
    }
    if (j->sig_len != want) {
        e = why(msg, msglen, ACME_JWS_E_BAD_SIGNATURE, "%s MAC of %zu octets, want %zu",
                acme_jws_alg_name(j->alg), j->sig_len, want);
        goto out;
    }
    if ((got = hmac(j->alg, key, keylen, j->signing_input, j->signing_input_len, mac)) != want) {
        e = internal(msg, msglen, "HMAC");
        goto out;
    }
    if (CRYPTO_memcmp(mac, j->sig, want) != 0) {
        e = why(msg, msglen, ACME_JWS_E_BAD_SIGNATURE,
                "the externalAccountBinding MAC does not verify");
        goto out;
    }
    rc = 0;
    e = ACME_JWS_OK;
out:
    /* The right MAC for this input is as good as the key for this input. */
    OPENSSL_cleanse(mac, sizeof(mac));
    ERR_pop_to_mark();
    if (err != NULL)
        *err = e;
    return rc;
}

/* ------------------------------------------------------------ sign */

/* {"protected":..,"payload":..,"signature":..} for a header that already
 * has its "alg", signed by sign_fn. */
typedef size_t (*sign_fn)(const void *ctx, const char *input, size_t len, uint8_t *sig, size_t cap);

static char *sign_flattened(json_t *hdr, const uint8_t *payload, size_t payload_len, sign_fn fn,
                            const void *ctx, size_t sig_cap)
{
    char *htxt = NULL, *prot = NULL, *pay = NULL, *si = NULL, *sig64 = NULL, *res = NULL;
    uint8_t *sig = NULL;
    json_t *o = NULL;
    size_t sl, pl, yl;
    if ((htxt = json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS)) == NULL ||
        (prot = b64url_encode_alloc((const uint8_t *)htxt, strlen(htxt))) == NULL ||
        (pay = b64url_encode_alloc(payload, payload == NULL ? 0 : payload_len)) == NULL)
        goto out;
    pl = strlen(prot), yl = strlen(pay);
    if ((si = malloc(pl + 1 + yl + 1)) == NULL || (sig = malloc(sig_cap)) == NULL)
        goto out;
    memcpy(si, prot, pl);
    si[pl] = '.';
    memcpy(si + pl + 1, pay, yl + 1);
    if ((sl = fn(ctx, si, pl + 1 + yl, sig, sig_cap)) == 0 ||
        (sig64 = b64url_encode_alloc(sig, sl)) == NULL)
        goto out;
    if ((o = json_pack("{s:s, s:s, s:s}", "protected", prot, "payload", pay, "signature", sig64)) ==
        NULL)
        goto out;
    res = json_dumps(o, JSON_COMPACT);
out:
    json_decref(o);
    free(htxt);
    free(prot);
    free(pay);
    free(si);
    if (sig != NULL)
        OPENSSL_cleanse(sig, sig_cap);
    free(sig);
    free(sig64);
    return res;
}

typedef struct pkey_signer {
    EVP_PKEY *key;
    acme_jws_alg alg;
    size_t ec_sz;
} pkey_signer;

static size_t sign_pkey(const void *ctx, const char *input, size_t len, uint8_t *out, size_t cap)
{
    const pkey_signer *s = ctx;
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    uint8_t *der = NULL;
    ECDSA_SIG *es = NULL;
    size_t dl = 0, res = 0;
    if (mctx == NULL || EVP_DigestSignInit(mctx, NULL, alg_md(s->alg), NULL, s->key) != 1 ||
        EVP_DigestSign(mctx, NULL, &dl, (const uint8_t *)input, len) != 1 ||
        (der = OPENSSL_malloc(dl)) == NULL ||
        EVP_DigestSign(mctx, der, &dl, (const uint8_t *)input, len) != 1)
        goto out;
    if (s->ec_sz == 0) {
        if (dl <= cap) {
            memcpy(out, der, dl);
            res = dl;
        }
        goto out;
    }
    /* DER ECDSA-Sig-Value → R || S (RFC 7518 §3.4). */
    const uint8_t *p = der;
    const BIGNUM *r, *sv;
    if ((es = d2i_ECDSA_SIG(NULL, &p, (long)dl)) == NULL || 2 * s->ec_sz > cap)
        goto out;
    ECDSA_SIG_get0(es, &r, &sv);
    if (BN_bn2binpad(r, out, (int)s->ec_sz) == (int)s->ec_sz &&
        BN_bn2binpad(sv, out + s->ec_sz, (int)s->ec_sz) == (int)s->ec_sz)
        res = 2 * s->ec_sz;
out:
    ECDSA_SIG_free(es);
    OPENSSL_free(der);
    EVP_MD_CTX_free(mctx);
    return res;
}

char *acme_jws_sign(EVP_PKEY *key, json_t *protected_hdr, const uint8_t *payload,
                    size_t payload_len)
{
    pkey_signer s = {key, ACME_JWS_ALG_NONE, 0};
    char *res = NULL;
    ERR_set_mark();
    if (key == NULL || !json_is_object(protected_hdr) ||
        (s.alg = key_alg(key, &s.ec_sz)) == ACME_JWS_ALG_NONE ||
        json_object_set_new(protected_hdr, "alg", json_string(acme_jws_alg_name(s.alg))) != 0)
        goto out;
    res = sign_flattened(protected_hdr, payload, payload_len, sign_pkey, &s,
                         (size_t)EVP_PKEY_get_size(key) + 2 * EC_MAX_OCTETS);
out:
    ERR_pop_to_mark();
    return res;
}

char *acme_jws_sign_with(EVP_PKEY *pub, acme_jws_sign_cb sign, const void *ctx, json_t *protected_hdr,
                         const uint8_t *payload, size_t payload_len)
{
    size_t ec_sz = 0;
    acme_jws_alg alg = ACME_JWS_ALG_NONE;
    char *res = NULL;
    ERR_set_mark();
    if (pub == NULL || sign == NULL || !json_is_object(protected_hdr) ||
        (alg = key_alg(pub, &ec_sz)) == ACME_JWS_ALG_NONE ||
        json_object_set_new(protected_hdr, "alg", json_string(acme_jws_alg_name(alg))) != 0)
        goto out;
    res = sign_flattened(protected_hdr, payload, payload_len, sign, ctx,
                         (size_t)EVP_PKEY_get_size(pub) + 2 * EC_MAX_OCTETS);
out:
    ERR_pop_to_mark();
    return res;
}

typedef struct mac_signer {
    acme_jws_alg alg;
    const uint8_t *key;
    size_t keylen;
} mac_signer;

static size_t sign_mac(const void *ctx, const char *input, size_t len, uint8_t *out, size_t cap)
{
    const mac_signer *s = ctx;
    return cap >= HMAC_MAX_OCTETS ? hmac(s->alg, s->key, s->keylen, input, len, out) : 0;
}

char *acme_jws_sign_hmac(acme_jws_alg alg, const uint8_t *key, size_t keylen, json_t *protected_hdr,
                         const uint8_t *payload, size_t payload_len)
{
    mac_signer s = {alg, key, keylen};
    char *res = NULL;
    ERR_set_mark();
    /* The same key-length rule as acme_jws_verify_hmac (RFC 7518 §3.2). */
    if (!mac_alg(alg) || key == NULL || keylen < (size_t)EVP_MD_get_size(alg_md(alg)) ||
        !json_is_object(protected_hdr) ||
        json_object_set_new(protected_hdr, "alg", json_string(acme_jws_alg_name(alg))) != 0)
        goto out;
    res = sign_flattened(protected_hdr, payload, payload_len, sign_mac, &s, HMAC_MAX_OCTETS);
out:
    ERR_pop_to_mark();
    return res;
}
