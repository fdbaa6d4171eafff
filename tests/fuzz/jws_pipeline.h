/* jws_pipeline.h — what fuzz_jws and fuzz_jwk run on one input, shared
 * with tests/acme/test_jws.c so that the committed seeds are checked (their
 * names say their outcome) with exactly the code the fuzzers run.
 *
 * jws_pipeline() takes either
 *   - a request body: acme_jws_parse, then for an HS* alg acme_jws_check_eab
 *     + acme_jws_verify_hmac with the RFC 7515 A.1 key; otherwise
 *     acme_jws_check_acme (nonce required) and, with a "jwk",
 *     acme_jwk_import + acme_jws_verify, with a "kid", acme_jws_verify with
 *     the RFC 7515 A.3 P-256 key (the seeds are signed with its private
 *     half, so mutations reach a verify that can succeed); or
 *   - '!' HEADER-JSON NUL PAYLOAD NUL SIGNATURE (raw octets): the harness
 *     base64url-encodes the three parts and builds the body, so that
 *     mutations land in the protected header's JSON itself (crit, b64, jwk
 *     members, ...) instead of breaking its base64url.
 * jwk_pipeline() runs acme_jwk_import on a JSON text.
 *
 * Properties checked on every input (abort() on a violation):
 *  - each call returns 0 exactly when *err is ACME_JWS_OK, returns only the
 *    codes its contract allows (never INTERNAL), and on failure leaves a
 *    non-empty printable-ASCII message;
 *  - a parsed JWS's signing input is "protected.payload" as sent, and the
 *    payload re-encodes to exactly the text it was decoded from (one
 *    encoding per octet string);
 *  - an imported key's JWK re-made with acme_jwk_from_pkey has the same
 *    RFC 7638 thumbprint as the JWK that was sent (so one key cannot pass
 *    for two accounts) and imports again to an equal key;
 *  - a verified signature's alg is the key's;
 *  - the thread's OpenSSL error queue is empty afterwards.
 */
#ifndef CF_JWS_PIPELINE_H
#define CF_JWS_PIPELINE_H

#include "acme/jws.h"

#include <openssl/err.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* RFC 7515 A.3.1: the P-256 key (public half) and A.1.1: the HMAC key. */
#define JWS_RFC7515_A3_X "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"
#define JWS_RFC7515_A3_Y "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
#define JWS_RFC7515_A3_D "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"
#define JWS_RFC7515_A1_K                                                                           \
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"

/* The key every "kid" JWS is verified with, and the EAB key. */
typedef struct jws_pipeline_keys {
    EVP_PKEY *kid_key;
    uint8_t eab_key[64];
    size_t eab_len;
} jws_pipeline_keys;

static inline void jws_pipeline_check(bool ok)
{
    if (!ok)
        abort();
}

/* rc/err agree, err is one of `allowed` (a bit mask of codes), msg says why. */
static inline void jws_pipeline_result(int rc, acme_jws_err err, unsigned allowed, const char *msg)
{
    jws_pipeline_check((unsigned)err < ACME_JWS_E__MAX && (allowed & (1u << err)) != 0);
    jws_pipeline_check((rc == 0) == (err == ACME_JWS_OK));
    if (rc != 0) {
        jws_pipeline_check(msg[0] != 0);
        for (const char *p = msg; *p; p++)
            jws_pipeline_check(*p >= 0x20 && *p <= 0x7e);
    }
}

#define JWS_BIT(e) (1u << (e))

static inline int jws_pipeline_keys_init(jws_pipeline_keys *k)
{
    acme_jws_err err;
    char msg[256];
    json_t *jwk = json_pack("{s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-256", "x",
                            JWS_RFC7515_A3_X, "y", JWS_RFC7515_A3_Y);
    long n = acme_b64url_decode(JWS_RFC7515_A1_K, strlen(JWS_RFC7515_A1_K), k->eab_key,
                                sizeof(k->eab_key));
    int rc = jwk != NULL && n == 64 ? acme_jwk_import(jwk, &k->kid_key, NULL, &err, msg, sizeof(msg))
                                    : -1;
    k->eab_len = n > 0 ? (size_t)n : 0;
    json_decref(jwk);
    return rc;
}

/* The JWK members of an imported key must round-trip (see the top). */
static inline void jws_pipeline_key_roundtrip(const json_t *jwk, EVP_PKEY *key)
{
    char t1[44], t2[44], msg[256];
    EVP_PKEY *again = NULL;
    acme_jws_err err;
    json_t *made = acme_jwk_from_pkey(key);
    jws_pipeline_check(made != NULL);
    jws_pipeline_check(acme_jwk_thumbprint(jwk, t1) == 0 && acme_jwk_thumbprint(made, t2) == 0);
    jws_pipeline_check(strcmp(t1, t2) == 0 && strlen(t1) == 43);
    jws_pipeline_check(acme_jwk_import(made, &again, NULL, &err, msg, sizeof(msg)) == 0);
    jws_pipeline_check(EVP_PKEY_eq(key, again) == 1);
    EVP_PKEY_free(again);
    json_decref(made);
}

/* The outcome of one JSON text as a JWK: ACME_JWS_E_MALFORMED when it is
 * not JSON, else acme_jwk_import's. */
static inline acme_jws_err jwk_pipeline(const uint8_t *data, size_t size)
{
    char msg[256] = "";
    acme_jws_err err = ACME_JWS_E_MALFORMED;
    EVP_PKEY *key = NULL;
    acme_jws_alg fam = ACME_JWS_ALG_NONE;
    char tp[44];
    json_t *jwk = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (jwk == NULL)
        return ACME_JWS_E_MALFORMED;
    int rc = acme_jwk_import(jwk, &key, &fam, &err, msg, sizeof(msg));
    jws_pipeline_result(rc, err, JWS_BIT(ACME_JWS_OK) | JWS_BIT(ACME_JWS_E_BAD_KEY), msg);
    if (rc == 0) {
        jws_pipeline_check(fam == ACME_JWS_ALG_ES256 || fam == ACME_JWS_ALG_ES384 ||
                           fam == ACME_JWS_ALG_RS256 || fam == ACME_JWS_ALG_EDDSA);
        jws_pipeline_key_roundtrip(jwk, key);
    } else {
        /* Any object may be thumbprinted; it must not crash. */
        (void)!acme_jwk_thumbprint(jwk, tp);
    }
    EVP_PKEY_free(key);
    json_decref(jwk);
    jws_pipeline_check(ERR_peek_error() == 0);
    return err;
}

/* '!' HEADER NUL PAYLOAD NUL SIG → a flattened JWS body (malloc'd). */
static inline char *jws_pipeline_wrap(const uint8_t *data, size_t size)
{
    const uint8_t *h = data + 1, *end = data + size;
    const uint8_t *z1 = memchr(h, 0, (size_t)(end - h));
    const uint8_t *z2 = z1 != NULL ? memchr(z1 + 1, 0, (size_t)(end - z1 - 1)) : NULL;
    if (z2 == NULL)
        return NULL;
    const uint8_t *parts[3] = {h, z1 + 1, z2 + 1};
    size_t lens[3] = {(size_t)(z1 - h), (size_t)(z2 - z1 - 1), (size_t)(end - z2 - 1)};
    char *enc[3] = {NULL, NULL, NULL}, *body = NULL;
    json_t *o = NULL;
    for (int i = 0; i < 3; i++) {
        size_t cap = acme_b64url_len(lens[i]) + 1;
        if ((enc[i] = malloc(cap)) == NULL)
            goto out;
        jws_pipeline_check(acme_b64url_encode(parts[i], lens[i], enc[i], cap) ==
                           acme_b64url_len(lens[i]));
    }
    o = json_pack("{s:s, s:s, s:s}", "protected", enc[0], "payload", enc[1], "signature", enc[2]);
    body = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
out:
    json_decref(o);
    for (int i = 0; i < 3; i++)
        free(enc[i]);
    return body;
}

/* The outcome of one input (see the top). */
static inline acme_jws_err jws_pipeline(const uint8_t *data, size_t size,
                                        const jws_pipeline_keys *keys)
{
    char msg[256] = "";
    acme_jws_err err = ACME_JWS_E_MALFORMED;
    acme_jws j;
    EVP_PKEY *key = NULL;
    acme_jws_alg fam = ACME_JWS_ALG_NONE;
    char *wrapped = NULL;
    const char *body = (const char *)data;
    size_t len = size;
    int rc;

    if (size > 0 && data[0] == '!') {
        if ((wrapped = jws_pipeline_wrap(data, size)) == NULL)
            return ACME_JWS_E_MALFORMED;
        body = wrapped, len = strlen(wrapped);
    }
    memset(&j, 0xa5, sizeof(j));
    rc = acme_jws_parse(body, len, &j, &err, msg, sizeof(msg));
    jws_pipeline_result(rc, err,
                        JWS_BIT(ACME_JWS_OK) | JWS_BIT(ACME_JWS_E_MALFORMED) |
                            JWS_BIT(ACME_JWS_E_BAD_ALG),
                        msg);
    if (rc != 0) {
        jws_pipeline_check(j.protected_hdr == NULL && j.payload == NULL && j.sig == NULL &&
                           j.signing_input == NULL);
        goto out;
    }
    /* The signing input is "protected.payload" as sent; the payload
     * re-encodes to the same text. */
    {
        const char *dot = memchr(j.signing_input, '.', j.signing_input_len);
        jws_pipeline_check((unsigned)j.alg < ACME_JWS_ALG__MAX && dot != NULL);
        jws_pipeline_check(strlen(j.signing_input) == j.signing_input_len);
        jws_pipeline_check(j.payload[j.payload_len] == 0);
        size_t tail = j.signing_input_len - (size_t)(dot + 1 - j.signing_input);
        jws_pipeline_check(tail == acme_b64url_len(j.payload_len));
        char *re = malloc(tail + 1);
        jws_pipeline_check(re != NULL);
        jws_pipeline_check(acme_b64url_encode(j.payload, j.payload_len, re, tail + 1) == tail);
        jws_pipeline_check(memcmp(re, dot + 1, tail) == 0);
        free(re);
    }
    const unsigned check_codes =
        JWS_BIT(ACME_JWS_OK) | JWS_BIT(ACME_JWS_E_MALFORMED) | JWS_BIT(ACME_JWS_E_BAD_ALG);
    if (j.alg == ACME_JWS_ALG_HS256 || j.alg == ACME_JWS_ALG_HS384 ||
        j.alg == ACME_JWS_ALG_HS512) {
        rc = acme_jws_check_eab(&j, &err, msg, sizeof(msg));
        jws_pipeline_result(rc, err, check_codes, msg);
        if (rc != 0)
            goto out;
        rc = acme_jws_verify_hmac(&j, keys->eab_key, keys->eab_len, &err, msg, sizeof(msg));
        jws_pipeline_result(rc, err, JWS_BIT(ACME_JWS_OK) | JWS_BIT(ACME_JWS_E_BAD_SIGNATURE),
                            msg);
        goto out;
    }
    rc = acme_jws_check_acme(&j, 1, &err, msg, sizeof(msg));
    jws_pipeline_result(rc, err, check_codes, msg);
    if (rc != 0)
        goto out;
    if (j.jwk != NULL) {
        rc = acme_jwk_import(j.jwk, &key, &fam, &err, msg, sizeof(msg));
        jws_pipeline_result(rc, err, JWS_BIT(ACME_JWS_OK) | JWS_BIT(ACME_JWS_E_BAD_KEY), msg);
        if (rc != 0)
            goto out;
        jws_pipeline_key_roundtrip(j.jwk, key);
    }
    rc = acme_jws_verify(&j, key != NULL ? key : keys->kid_key, &err, msg, sizeof(msg));
    jws_pipeline_result(rc, err,
                        JWS_BIT(ACME_JWS_OK) | JWS_BIT(ACME_JWS_E_BAD_KEY) |
                            JWS_BIT(ACME_JWS_E_BAD_SIGNATURE),
                        msg);
    if (rc == 0)
        jws_pipeline_check(key == NULL ? j.alg == ACME_JWS_ALG_ES256 : j.alg == fam);
out:
    EVP_PKEY_free(key);
    acme_jws_free(&j);
    free(wrapped);
    jws_pipeline_check(ERR_peek_error() == 0);
    return err;
}

#endif
