/* Test helpers shared by the suites: throwaway SoftHSM2 tokens in a
 * temporary folder, and small process helpers. Not part of certforge. */
#ifndef CF_TESTUTIL_H
#define CF_TESTUTIL_H

#include <stddef.h>

typedef struct cf_softhsm {
    char dir[256];      /* temporary folder holding conf, tokens and pin file */
    char conf[300];     /* softhsm2.conf path (SOFTHSM2_CONF is set to it) */
    char pin_file[300]; /* user PIN, mode 0600 */
    char label[64];
    char pin[32];
    char module[256];   /* path of the real SoftHSM module */
} cf_softhsm;

/* Create a temp folder with its own softhsm2.conf, set SOFTHSM2_CONF, and
 * initialise a token `label` with user PIN `pin` (SO PIN "12345678").
 * Returns 0, or -1 with a message on stderr. */
int cf_softhsm_init(cf_softhsm *h, const char *label, const char *pin);
/* Add another token in the same folder. */
int cf_softhsm_add_token(cf_softhsm *h, const char *label, const char *pin);
/* Generate a key pair on token `label` with pkcs11-tool (OpenSC):
 * keytype as pkcs11-tool's --key-type ("EC:prime256v1", "rsa:2048",
 * "EC:edwards25519"), object label and hex id. */
int cf_softhsm_keygen(const cf_softhsm *h, const char *label, const char *pin,
                      const char *keytype, const char *obj_label, const char *id_hex);
/* Remove the folder. */
void cf_softhsm_cleanup(cf_softhsm *h);

/* URI for the token (and optional object) with module-path and pin-source. */
void cf_softhsm_uri(const cf_softhsm *h, const char *obj_label, char *buf, size_t len);

/* Run a shell command, return its exit status (-1 if it did not exit). */
int cf_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Path of a built artefact relative to the build tree (CF_BUILD_DIR). */
const char *cf_build_path(const char *rel, char *buf, size_t len);

#endif
