#include "common/sigalg.h"

/* Which keys make which signatures. */
typedef enum family { FAM_EC, FAM_RSA, FAM_EDDSA } family;

/* The one table: name, wire number, digest length and key family of each
 * algorithm. */
static const struct {
    const char *name;
    cf_sign_mech wire;
    unsigned char digest_len;
    family fam;
} algs[] = {
    [CF_SIG_ECDSA_SHA256] = {"ecdsa-sha256", CF_SIGN_ECDSA_SHA256, 32, FAM_EC},
    [CF_SIG_ECDSA_SHA384] = {"ecdsa-sha384", CF_SIGN_ECDSA_SHA384, 48, FAM_EC},
    [CF_SIG_ECDSA_SHA512] = {"ecdsa-sha512", CF_SIGN_ECDSA_SHA512, 64, FAM_EC},
    [CF_SIG_RSA_PKCS1_SHA256] = {"rsa-pkcs1-sha256", CF_SIGN_RSA_PKCS1_SHA256, 32, FAM_RSA},
    [CF_SIG_RSA_PKCS1_SHA384] = {"rsa-pkcs1-sha384", CF_SIGN_RSA_PKCS1_SHA384, 48, FAM_RSA},
    [CF_SIG_RSA_PKCS1_SHA512] = {"rsa-pkcs1-sha512", CF_SIGN_RSA_PKCS1_SHA512, 64, FAM_RSA},
    [CF_SIG_RSA_PSS_SHA256] = {"rsa-pss-sha256", CF_SIGN_RSA_PSS_SHA256, 32, FAM_RSA},
    [CF_SIG_RSA_PSS_SHA384] = {"rsa-pss-sha384", CF_SIGN_RSA_PSS_SHA384, 48, FAM_RSA},
    [CF_SIG_RSA_PSS_SHA512] = {"rsa-pss-sha512", CF_SIGN_RSA_PSS_SHA512, 64, FAM_RSA},
    [CF_SIG_ED25519] = {"ed25519", CF_SIGN_ED25519, 0, FAM_EDDSA},
};
/* Every algorithm has its row (a new one appended without a row would
 * leave the array short), and every wire number its algorithm. */
_Static_assert(sizeof(algs) / sizeof(algs[0]) == CF_SIG__MAX, "a cf_sig_alg without a table row");
_Static_assert(CF_SIGN__MAX - 1 == CF_SIG__MAX, "a wire number without a cf_sig_alg");

static const struct {
    const char *name;
    family fam;
} keys[] = {
    [CF_KEY_EC_P256] = {"ec-p256", FAM_EC},
    [CF_KEY_EC_P384] = {"ec-p384", FAM_EC},
    [CF_KEY_RSA] = {"rsa", FAM_RSA},
    [CF_KEY_ED25519] = {"ed25519", FAM_EDDSA},
};
_Static_assert(sizeof(keys) / sizeof(keys[0]) == CF_KEY__MAX, "a cf_key_type without a table row");

const char *cf_sig_alg_name(cf_sig_alg a)
{
    return (unsigned)a < CF_SIG__MAX ? algs[a].name : "unknown-mechanism";
}

const char *cf_key_type_name(cf_key_type t)
{
    return (unsigned)t < CF_KEY__MAX ? keys[t].name : "unknown-key-type";
}

size_t cf_sig_alg_digest_len(cf_sig_alg a)
{
    return (unsigned)a < CF_SIG__MAX ? algs[a].digest_len : 0;
}

bool cf_sig_alg_fits(cf_sig_alg a, cf_key_type t)
{
    return (unsigned)a < CF_SIG__MAX && (unsigned)t < CF_KEY__MAX && algs[a].fam == keys[t].fam;
}

cf_sign_mech cf_sig_alg_wire(cf_sig_alg a)
{
    return (unsigned)a < CF_SIG__MAX ? algs[a].wire : (cf_sign_mech)0;
}

bool cf_sig_alg_from_wire(unsigned mech, cf_sig_alg *out)
{
    for (unsigned a = 0; mech != 0 && a < CF_SIG__MAX; a++)
        if ((unsigned)algs[a].wire == mech) {
            *out = (cf_sig_alg)a;
            return true;
        }
    return false;
}
