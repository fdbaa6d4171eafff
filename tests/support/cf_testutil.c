#include "cf_testutil.h"

#include "cf_test.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
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

/* ------------------------------------------------------------ hung servers */

#define FROZEN_MAX 256
static pid_t frozen[FROZEN_MAX];
static size_t nfrozen;
static pid_t guard_pid = -1;
static int guard_fd = -1; /* the guard's end of file: we closed it, or died */
static pid_t owner;       /* the process that froze them (not a child of it) */

static void guard_main(int fd)
{
    pid_t pids[FROZEN_MAX];
    size_t n = 0;
    uint64_t end = cf_now_ms() + 600000;
    for (;;) {
        uint64_t now = cf_now_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (now >= end || poll(&p, 1, (int)(end - now)) == 0)
            break;
        pid_t pid;
        ssize_t r = read(fd, &pid, sizeof(pid));
        if (r < 0 && errno == EINTR)
            continue;
        if (r != (ssize_t)sizeof(pid))
            break; /* end of file */
        if (n < FROZEN_MAX)
            pids[n++] = pid;
    }
    for (size_t i = 0; i < n; i++)
        (void)kill(pids[i], SIGCONT);
    _exit(0);
}

static int guard_start(void)
{
    if (guard_fd >= 0)
        return 0;
    int p[2];
    if (pipe(p) != 0)
        return -1;
    pid_t g = fork();
    if (g == 0) {
        /* hold nothing of the test's: a connection the test drops must
         * close at the server */
        for (int fd = 3; fd < 1024; fd++)
            if (fd != p[0])
                close(fd);
        guard_main(p[0]);
    }
    close(p[0]);
    if (g < 0) {
        close(p[1]);
        return -1;
    }
    /* not inherited by what the test starts later: only this process's
     * exit (or cf_thaw_all) may end the guard's wait */
    (void)fcntl(p[1], F_SETFD, FD_CLOEXEC);
    guard_pid = g;
    guard_fd = p[1];
    owner = getpid();
    static bool registered;
    if (!registered)
        registered = atexit(cf_thaw_all) == 0;
    return 0;
}

char cf_proc_state(pid_t pid, pid_t *ppid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    char st = 0;
    long pp = -1;
    if (!p || sscanf(p + 1, " %c %ld", &st, &pp) != 2)
        return 0;
    if (ppid)
        *ppid = (pid_t)pp;
    return st;
}

int cf_freeze(pid_t pid)
{
    if (pid <= 0 || nfrozen >= FROZEN_MAX || guard_start() != 0)
        return -1;
    /* the guard knows it before it is stopped */
    if (write(guard_fd, &pid, sizeof(pid)) != (ssize_t)sizeof(pid) || kill(pid, SIGSTOP) != 0)
        return -1;
    frozen[nfrozen++] = pid;
    uint64_t end = cf_now_ms() + 5000;
    char st;
    while ((st = cf_proc_state(pid, NULL)) != 'T' && st != 0 && cf_now_ms() < end)
        cf_sleep_ms(2);
    return st == 'T' ? 0 : -1;
}

void cf_thaw_all(void)
{
    if (guard_fd < 0 || owner != getpid())
        return; /* nothing frozen, or a child of the test exiting */
    for (size_t i = 0; i < nfrozen; i++)
        (void)kill(frozen[i], SIGCONT);
    nfrozen = 0;
    if (guard_fd >= 0) {
        close(guard_fd);
        guard_fd = -1;
    }
    if (guard_pid > 0) {
        (void)waitpid(guard_pid, NULL, 0);
        guard_pid = -1;
    }
}
