/* Test helpers shared by the suites: throwaway SoftHSM2 tokens in a
 * temporary folder, clocks, and small process helpers. Not part of
 * certforge. */
#ifndef CF_TESTUTIL_H
#define CF_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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
 * Returns 0, or -1 with a message on stderr. When the SoftHSM2 module,
 * softhsm2-util or pkcs11-tool is missing it creates nothing, calls
 * cf_test_skip() and returns 1: a suite set-up that returns nonzero then
 * is reported skipped (exit 77), not failed. */
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

/* CLOCK_MONOTONIC. For bounded waits (give up after N seconds, so that a
 * hung daemon cannot hang the run) and printed figures; an assertion on a
 * duration belongs in a timing suite (cf_test.h). */
uint64_t cf_now_ms(void);
double cf_now_s(void);
/* Sleep at least `ms` milliseconds, whatever signals arrive. */
void cf_sleep_ms(unsigned ms);

/* Lower-case hex of p[0..n) into out (2n + 1 octets). */
void cf_hex(const uint8_t *p, size_t n, char *out);

/* Run a shell command, return its exit status (-1 if it did not exit). */
int cf_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Path of a built artefact relative to the build tree (CF_BUILD_DIR). */
const char *cf_build_path(const char *rel, char *buf, size_t len);

/* Hung servers: processes a test stops with SIGSTOP (a PostgreSQL server
 * that does not answer). Every frozen process gets SIGCONT from
 * cf_thaw_all(), which a test calls at its end and its suite's clean-up
 * again (a failed FATAL assertion skips the rest of a test), and which is
 * registered with atexit; and from a guard process if the test process
 * dies any other way (the guard reads the PIDs from a pipe and sends
 * SIGCONT when it reads end of file, or after 600 s at the latest), so a
 * failed run never leaves the cluster stopped for the suites after it. */
/* SIGSTOP pid, and wait (at most 5 s) until it is stopped. 0, or -1. */
int cf_freeze(pid_t pid);
void cf_thaw_all(void);
/* A process's state letter ('T' stopped, ...) and parent from
 * /proc/PID/stat; 0 when it cannot be read. ppid may be NULL. */
char cf_proc_state(pid_t pid, pid_t *ppid);

#endif
