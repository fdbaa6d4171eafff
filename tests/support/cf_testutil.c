#include "cf_testutil.h"

#include "cf_test.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CF_SOFTHSM_MODULE
#define CF_SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#endif

uint64_t cf_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

double cf_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void cf_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

void cf_hex(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = 0;
}

int cf_sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(cmd))
        return -1;
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

const char *cf_build_path(const char *rel, char *buf, size_t len)
{
    const char *b = getenv("CF_BUILD_DIR");
    snprintf(buf, len, "%s/%s", b ? b : ".", rel);
    return buf;
}

int cf_softhsm_add_token(cf_softhsm *h, const char *label, const char *pin)
{
    if (cf_sh("softhsm2-util --init-token --free --label '%s' --so-pin 12345678 --pin '%s' "
              ">/dev/null",
              label, pin) != 0) {
        fprintf(stderr, "softhsm2-util --init-token failed for %s\n", label);
        return -1;
    }
    return 0;
}

/* The SoftHSM2 module and the tools the suites drive it with. */
static int softhsm_missing(void)
{
    if (access(CF_SOFTHSM_MODULE, R_OK) != 0) {
        cf_test_skip("no SoftHSM2 module at %s (apt-get install softhsm2)", CF_SOFTHSM_MODULE);
        return 1;
    }
    static const char *const tools[] = {"softhsm2-util", "pkcs11-tool"};
    for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++)
        if (cf_sh("command -v %s >/dev/null 2>&1", tools[i]) != 0) {
            cf_test_skip("%s is not installed (tools/deps.sh)", tools[i]);
            return 1;
        }
    return 0;
}

int cf_softhsm_init(cf_softhsm *h, const char *label, const char *pin)
{
    memset(h, 0, sizeof(*h));
    if (softhsm_missing())
        return 1;
    const char *tmp = getenv("TMPDIR");
    snprintf(h->dir, sizeof(h->dir), "%s/cf-softhsm-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(h->dir)) {
        perror("mkdtemp");
        return -1;
    }
    snprintf(h->conf, sizeof(h->conf), "%s/softhsm2.conf", h->dir);
    snprintf(h->pin_file, sizeof(h->pin_file), "%s/pin", h->dir);
    snprintf(h->label, sizeof(h->label), "%s", label);
    snprintf(h->pin, sizeof(h->pin), "%s", pin);
    snprintf(h->module, sizeof(h->module), "%s", CF_SOFTHSM_MODULE);
    char tokens[300];
    snprintf(tokens, sizeof(tokens), "%s/tokens", h->dir);
    if (mkdir(tokens, 0700) != 0) {
        perror("mkdir tokens");
        return -1;
    }
    FILE *f = fopen(h->conf, "w");
    if (!f)
        return -1;
    fprintf(f, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n"
               "slots.removable = false\n", tokens);
    fclose(f);
    f = fopen(h->pin_file, "w");
    if (!f)
        return -1;
    fputs(pin, f);
    fclose(f);
    chmod(h->pin_file, 0600);
    setenv("SOFTHSM2_CONF", h->conf, 1);
    return cf_softhsm_add_token(h, label, pin);
}

int cf_softhsm_keygen(const cf_softhsm *h, const char *label, const char *pin, const char *keytype,
                      const char *obj_label, const char *id_hex)
{
    if (cf_sh("pkcs11-tool --module '%s' --token-label '%s' --login --pin '%s' --keypairgen "
              "--key-type '%s' --label '%s' --id '%s' >/dev/null 2>&1",
              h->module, label, pin, keytype, obj_label, id_hex) != 0) {
        fprintf(stderr, "pkcs11-tool keypairgen %s %s failed\n", keytype, obj_label);
        return -1;
    }
    return 0;
}

void cf_softhsm_uri(const cf_softhsm *h, const char *obj_label, char *buf, size_t len)
{
    if (obj_label)
        snprintf(buf, len, "pkcs11:token=%s;object=%s?module-path=%s&pin-source=file:%s",
                 h->label, obj_label, h->module, h->pin_file);
    else
        snprintf(buf, len, "pkcs11:token=%s?module-path=%s&pin-source=file:%s", h->label,
                 h->module, h->pin_file);
}

void cf_softhsm_cleanup(cf_softhsm *h)
{
    if (h->dir[0] && strstr(h->dir, "cf-softhsm-"))
        cf_sh("rm -rf '%s'", h->dir);
    h->dir[0] = 0;
}
