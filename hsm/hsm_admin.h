/*
 * hsm_admin.h — HSM administration: list the tokens of a module, list,
 * generate and delete key pairs, export public keys, store and read the
 * certificate object that belongs to a key.
 *
 * Admin path, not hot path: everything here opens its own short-lived
 * session. Keys are found with C_FindObjects (never libp11 enumeration,
 * which fails on tokens holding Ed25519 keys). This module knows PKCS#11
 * and nothing of X.509: certificates are stored and read as DER blobs with
 * the subject, issuer and serial the caller extracted.
 */
#ifndef CF_HSM_ADMIN_H
#define CF_HSM_ADMIN_H

#include "hsm/hsm.h"

#include <stdbool.h>

/* --- URIs ------------------------------------------------------------------ */

/* What an RFC 7512 URI says, after the checks hsm_token_open applies. */
typedef struct hsm_uri_facts {
    char module_path[512]; /* "" when none is given (CF_SOFTHSM_MODULE is used) */
    bool selects_token;    /* token=, serial=, model= or manufacturer= present */
    bool has_pin_source;
    bool names_object; /* object= or id= present */
} hsm_uri_facts;

CF_WUR int hsm_uri_facts_get(const char *uri, hsm_uri_facts *out, hsm_err *err);

/* The URI that opens the token holding the key key_uri names, for tools
 * that take a token URI (module-path, pin-source) and a key URI apart:
 * token_uri as given, with key_uri's token attributes added when token_uri
 * selects no token itself; key_uri itself when token_uri is NULL. *out is
 * malloc'd (free it). */
CF_WUR int hsm_uri_token_for_key(const char *token_uri, const char *key_uri, char **out,
                                 hsm_err *err);

/* --- tokens of a module -------------------------------------------------- */

/* One token present in a slot of a module (C_GetTokenInfo). Counts are -1
 * when the token does not report them; max_sessions is 0 when the token
 * reports no limit (CK_EFFECTIVELY_INFINITE). free_sessions is
 * max − open when both are known, else -1. */
typedef struct hsm_token_desc {
    char label[33], serial[17], model[17], manufacturer[33];
    CK_FLAGS flags;
    bool initialized; /* CKF_TOKEN_INITIALIZED */
    long sessions_open, sessions_max, free_sessions;
    long rw_sessions_open, rw_sessions_max;
    /* RFC 7512 URI selecting this token (token= and serial=), with the
     * module-path it was listed through. Empty for uninitialised tokens. */
    char uri[1024];
} hsm_token_desc;

/* List every token present in the slots of the module at module_path
 * (NULL: CF_SOFTHSM_MODULE), initialised or not. *out is malloc'd (free
 * it); *n may be 0. */
CF_WUR int hsm_module_tokens(const char *module_path, hsm_token_desc **out, size_t *n,
                             hsm_err *err);

/* Names of the set CKF_* token flags ("rng", "login-required", ...), up to
 * max of them, in bit order. Returns how many were written. */
size_t hsm_token_flag_names(CK_FLAGS flags, const char **names, size_t max);

/* --- keys on a token ------------------------------------------------------ */

/* One private key on a token and what belongs to it. */
typedef struct hsm_key_desc {
    char label[256];
    uint8_t id[64];
    size_t id_len;
    char id_hex[129];
    bool type_known; /* false: a key type or curve this layer cannot use */
    cf_key_type type;
    unsigned bits;
    bool sensitive, extractable, always_sensitive, never_extractable, local;
    bool sign, decrypt, unwrap, derive;
    bool has_public, has_cert; /* objects with the same CKA_ID exist */
    char uri[1024];            /* RFC 7512, type=private, without query */
} hsm_key_desc;

/* Every private key on the (logged-in) token, in C_FindObjects order.
 * *out is malloc'd (free it); *n may be 0. */
CF_WUR int hsm_keys_list(hsm_token *t, hsm_key_desc **out, size_t *n, hsm_err *err);

/* The one private key key_uri selects (object= and/or id=; its token part,
 * if any, must match t). "key not found: <uri>" when none does. */
CF_WUR int hsm_key_get(hsm_token *t, const char *key_uri, hsm_key_desc *out, hsm_err *err);

/* Key pair kinds `certforge keys generate` creates. */
typedef enum hsm_gen_type {
    HSM_GEN_EC_P256,
    HSM_GEN_EC_P384,
    HSM_GEN_RSA_2048,
    HSM_GEN_RSA_3072,
    HSM_GEN_RSA_4096,
    HSM_GEN_ED25519,
    HSM_GEN__MAX
} hsm_gen_type;

/* "ec-p256", "rsa-3072", ... */
const char *hsm_gen_type_name(hsm_gen_type g);
/* Parse a name; on failure err names it and lists the valid ones. */
CF_WUR int hsm_gen_type_parse(const char *name, hsm_gen_type *out, hsm_err *err);
/* "ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096, ed25519" */
const char *hsm_gen_type_list(void);

/*
 * Generate a key pair on the token: the private key sensitive,
 * non-extractable, sign-only (no decrypt, unwrap or derive); the public key
 * a public token object allowed to verify. Both carry `label` and the id
 * (id_len 0: 8 random bytes). Refuses, naming the clash, when any object
 * on the token already has that label or that id. If anything fails after
 * the pair exists, both halves are destroyed again. *out describes the new
 * private key (its uri included).
 */
CF_WUR int hsm_key_generate(hsm_token *t, hsm_gen_type g, const char *label, const uint8_t *id,
                            size_t id_len, hsm_key_desc *out, hsm_err *err);

/* Destroy the private key key_uri selects and the public key and
 * certificate objects that share its CKA_ID (and, for an empty id, its
 * label). Counts of what was destroyed go to *npub / *ncert (may be NULL). */
CF_WUR int hsm_key_delete(hsm_token *t, const char *key_uri, unsigned *npub, unsigned *ncert,
                          hsm_err *err);

/* Public half of the key key_uri selects. Caller frees. */
CF_WUR EVP_PKEY *hsm_key_public(hsm_token *t, const char *key_uri, hsm_err *err);

/* --- certificate objects ------------------------------------------------- */

/* DER pieces of a certificate, as CKA_VALUE, CKA_SUBJECT, CKA_ISSUER and
 * CKA_SERIAL_NUMBER (the DER INTEGER) want them. */
typedef struct hsm_cert_der {
    const uint8_t *cert;
    size_t cert_len;
    const uint8_t *subject, *issuer, *serial;
    size_t subject_len, issuer_len, serial_len;
} hsm_cert_der;

/* Store a CKO_CERTIFICATE / CKC_X_509 token object with the CKA_ID and
 * CKA_LABEL of the private key key_uri selects. If the key already has a
 * certificate object: refused, unless `replace`, in which case the old
 * one is destroyed once the new one exists. */
CF_WUR int hsm_cert_store(hsm_token *t, const char *key_uri, const hsm_cert_der *c, bool replace,
                          hsm_err *err);

/* The DER of the certificate object belonging to the key key_uri selects.
 * *der is malloc'd (free it). */
CF_WUR int hsm_cert_load(hsm_token *t, const char *key_uri, uint8_t **der, size_t *len,
                         hsm_err *err);

/* Every certificate object on the (logged-in) token, whoever put it there
 * (a key's own, or one stored by another tool: its label still blocks
 * `keys generate`). der is malloc'd: free with hsm_certs_free. */
typedef struct hsm_cert_desc {
    char label[256];
    uint8_t id[64];
    size_t id_len;
    char id_hex[129];
    uint8_t *der; /* CKA_VALUE */
    size_t der_len;
    bool has_private; /* a private key with the same CKA_ID */
} hsm_cert_desc;

CF_WUR int hsm_certs_list(hsm_token *t, hsm_cert_desc **out, size_t *n, hsm_err *err);
void hsm_certs_free(hsm_cert_desc *d, size_t n);

/* --- token set-up ------------------------------------------------------- */

/* Initialise the first token of the module (NULL: CF_SOFTHSM_MODULE) that
 * is not initialised yet (C_InitToken with so_pin and label), then set its
 * user PIN (C_InitPIN as the SO). Refuses a label an initialised token of
 * the module already has. The serial of the new token goes to serial
 * (17 octets). PINs are not kept. */
CF_WUR int hsm_token_init(const char *module_path, const char *label, const char *so_pin,
                          size_t so_len, const char *pin, size_t pin_len, char serial[17],
                          hsm_err *err);

/* Change the user PIN of the (logged-in) token t from the one its PIN
 * source gives to new_pin (C_SetPIN). */
CF_WUR int hsm_token_change_pin(hsm_token *t, const char *new_pin, size_t new_len, hsm_err *err);

#endif
