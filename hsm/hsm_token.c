/* Modules, tokens, login and recovery. */
#include "hsm/hsm_internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/param_build.h>

_Atomic unsigned hsm_fork_gen;

/* Registry of loaded modules. mod_mu is also taken around fork (prepare /
 * parent / child), so a child never inherits it locked. */
static pthread_mutex_t mod_mu = PTHREAD_MUTEX_INITIALIZER;
static hsm_module *modules;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* Each gate's mutex stays held from prepare through fork, so no thread
 * can be half-way through hsm_gate_enter/leave when the process forks. */
static void atfork_prepare(void)
{
    pthread_mutex_lock(&mod_mu);
    for (hsm_module *m = modules; m; m = m->next) {
        pthread_mutex_lock(&m->gate_mu);
        while (atomic_load(&m->gate_block) & HSM_GATE_EXCL)
            pthread_cond_wait(&m->gate_cv, &m->gate_mu);
        atomic_store(&m->gate_block, HSM_GATE_CLOSED);
        while (atomic_load(&m->gate_inside) > 0)
            pthread_cond_wait(&m->gate_cv, &m->gate_mu);
    }
}

static void gates_open(bool child)
{
    for (hsm_module *m = modules; m; m = m->next) {
        if (child) {
            /* Threads waiting at the gate exist only in the parent. */
            pthread_cond_init(&m->gate_cv, NULL);
            atomic_store(&m->gate_inside, 0);
        }
        atomic_store(&m->gate_block, 0);
        pthread_cond_broadcast(&m->gate_cv);
        pthread_mutex_unlock(&m->gate_mu);
    }
}

static void atfork_parent(void)
{
    gates_open(false);
    pthread_mutex_unlock(&mod_mu);
}

static void atfork_child(void)
{
    atomic_fetch_add(&hsm_fork_gen, 1);
    gates_open(true);
    pthread_mutex_unlock(&mod_mu);
}

void hsm_after_fork_once(_Atomic unsigned *gen, void (*fn)(void *), void *arg)
{
    if (atomic_load(gen) == atomic_load(&hsm_fork_gen))
        return;
    pthread_mutex_lock(&mod_mu);
    unsigned now = atomic_load(&hsm_fork_gen);
    if (atomic_load(gen) != now) {
        fn(arg);
        atomic_store(gen, now);
    }
    pthread_mutex_unlock(&mod_mu);
}
static void atfork_register(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

int hsm_fail(hsm_err *err, CK_RV rv, const char *fmt, ...)
{
    if (err) {
        err->rv = rv;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* A hint for messages about a SoftHSM module: which configuration it read,
 * or why it probably read none (SOFTHSM2_CONF unset, or naming a file that
 * is not there). "" for other modules. */
void hsm_softhsm_hint(const char *module_path, char *buf, size_t cap)
{
    buf[0] = 0;
    if (!module_path || !strstr(module_path, "softhsm"))
        return;
    const char *conf = getenv("SOFTHSM2_CONF");
    if (!conf || !*conf) {
        snprintf(buf, cap,
                 " (SoftHSM: SOFTHSM2_CONF is not set, so it reads /etc/softhsm/softhsm2.conf and "
                 "its token folder; export SOFTHSM2_CONF=/path/to/softhsm2.conf for another)");
        return;
    }
    if (access(conf, R_OK) != 0)
        snprintf(buf, cap, " (SoftHSM: SOFTHSM2_CONF=%s cannot be read: %s; fix or unset it)", conf,
                 strerror(errno));
    else
        snprintf(buf, cap, " (SoftHSM tokens as configured in SOFTHSM2_CONF=%s)", conf);
}

uint64_t hsm_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void hsm_trim(char *dst, const CK_UTF8CHAR *src, size_t n)
{
    memcpy(dst, src, n);
    while (n > 0 && (dst[n - 1] == ' ' || dst[n - 1] == '\0'))
        n--;
    dst[n] = '\0';
}

bool hsm_rv_is_session_fault(CK_RV rv)
{
    return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED;
}

bool hsm_rv_is_token_fault(CK_RV rv)
{
    return rv == CKR_DEVICE_ERROR || rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT ||
           rv == CKR_USER_NOT_LOGGED_IN || rv == CKR_CRYPTOKI_NOT_INITIALIZED;
}

/* --- modules ----------------------------------------------------------- */

static CK_RV module_initialize(hsm_module *m)
{
    CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
    CK_RV rv = m->f->C_Initialize(&args);
    if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        /* Someone else in this process (e.g. libp11) owns the module. */
        m->we_initialized = false;
        return CKR_OK;
    }
    m->we_initialized = rv == CKR_OK;
    return rv;
}

static int module_get(const char *path, hsm_module **out, hsm_err *err)
{
    pthread_once(&atfork_once, atfork_register);
    pthread_mutex_lock(&mod_mu);
    hsm_module *m;
    for (m = modules; m; m = m->next)
        if (strcmp(m->path, path) == 0)
            break;
    if (m) {
        m->refs++;
        pthread_mutex_unlock(&mod_mu);
        *out = m;
        return 0;
    }
    int rc = -1;
    m = calloc(1, sizeof(*m));
    if (!m) {
        hsm_fail(err, CKR_HOST_MEMORY, "out of memory");
        goto out;
    }
    m->path = strdup(path);
    pthread_mutex_init(&m->gate_mu, NULL);
    pthread_cond_init(&m->gate_cv, NULL);
    /* RTLD_NODELETE: modules keep threads and atexit handlers of their
     * own, and LeakSanitizer can only attribute (and suppress) a module's
     * allocations while its image is still mapped at exit. */
    m->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!m->dl) {
        hsm_fail(err, CKR_GENERAL_ERROR, "cannot load PKCS#11 module %s: %s (check module-path)",
                 path, dlerror());
        goto out;
    }
    CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(m->dl, "C_GetFunctionList");
    if (!gfl || gfl(&m->f) != CKR_OK || !m->f) {
        hsm_fail(err, CKR_GENERAL_ERROR, "%s is not a PKCS#11 module (no C_GetFunctionList)",
                 path);
        goto out;
    }
    CK_RV rv = module_initialize(m);
    if (rv != CKR_OK) {
        char hint[300];
        hsm_softhsm_hint(path, hint, sizeof(hint));
        hsm_fail(err, rv, "PKCS#11 module %s: C_Initialize failed (%s)%s", path, hsm_rv_name(rv),
                 hint);
        goto out;
    }
    m->fork_gen = atomic_load(&hsm_fork_gen);
    m->refs = 1;
    m->next = modules;
    modules = m;
    *out = m;
    rc = 0;
out:
    if (rc != 0 && m) {
        if (m->dl)
            dlclose(m->dl);
        pthread_cond_destroy(&m->gate_cv);
        pthread_mutex_destroy(&m->gate_mu);
        free(m->path);
        free(m);
    }
    pthread_mutex_unlock(&mod_mu);
    return rc;
}

static void module_put(hsm_module *m)
{
    pthread_mutex_lock(&mod_mu);
    if (--m->refs == 0) {
        for (hsm_module **pp = &modules; *pp; pp = &(*pp)->next)
            if (*pp == m) {
                *pp = m->next;
                break;
            }
        if (m->we_initialized)
            m->f->C_Finalize(NULL);
        dlclose(m->dl);
        pthread_cond_destroy(&m->gate_cv);
        pthread_mutex_destroy(&m->gate_mu);
        free(m->path);
        free(m);
    }
    pthread_mutex_unlock(&mod_mu);
}

/* In a child after fork: the module's state belongs to the parent.
 * PKCS#11 v2.40 §6.7.7: the child must call C_Initialize itself. The fork
 * gate guarantees no parent thread was inside the module at the fork, so
 * finalizing the inherited state cannot meet a lock held by a thread that
 * does not exist here. Caller holds mod_mu. */
static CK_RV module_reinit_after_fork_locked(hsm_module *m)
{
    unsigned gen = atomic_load(&hsm_fork_gen);
    if (m->fork_gen == gen)
        return CKR_OK;
    CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
    CK_RV rv = m->f->C_Initialize(&args);
    if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        /* The module did not notice the fork: start it over. */
        m->f->C_Finalize(NULL);
        rv = m->f->C_Initialize(&args);
    }
    if (rv == CKR_OK) {
        m->we_initialized = true;
        m->fork_gen = gen;
    }
    return rv;
}

/* --- PIN --------------------------------------------------------------- */

/* Read the PIN named by pin-source ("file:/path", "/path", "env:NAME") or,
 * without one, CERTFORGE_PIN. The buffer is wiped by the caller. */
static int read_pin(const hsm_token *t, char *pin, size_t cap, size_t *len, hsm_err *err)
{
    const char *src = t->pin_source;
    *len = 0;
    if (!src) {
        const char *v = getenv("CERTFORGE_PIN");
        if (!v)
            return hsm_fail(err, CKR_PIN_INCORRECT,
                            "token '%s': no PIN source: add pin-source=file:/path to the URI or "
                            "set CERTFORGE_PIN",
                            t->label);
        src = "env:CERTFORGE_PIN";
    }
    if (strncmp(src, "env:", 4) == 0) {
        const char *v = getenv(src + 4);
        if (!v)
            return hsm_fail(err, CKR_PIN_INCORRECT,
                            "token '%s': pin-source %s: environment variable is not set", t->label,
                            src);
        size_t n = strlen(v);
        if (n >= cap)
            return hsm_fail(err, CKR_PIN_LEN_RANGE, "token '%s': PIN from %s is too long",
                            t->label, src);
        memcpy(pin, v, n);
        *len = n;
        return 0;
    }
    const char *path = strncmp(src, "file:", 5) == 0 ? src + 5 : src;
    if (path[0] == '/' && path[1] == '/') /* file:///path */
        path += 2;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ELOOP)
        return hsm_fail(err, CKR_PIN_INCORRECT,
                        "token '%s': PIN file %s is a symbolic link (as in a Kubernetes secret "
                        "volume); point pin-source at a regular file of mode 0600",
                        t->label, path);
    if (fd < 0)
        return hsm_fail(err, CKR_PIN_INCORRECT, "token '%s': cannot read PIN file %s: %s",
                        t->label, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return hsm_fail(err, CKR_PIN_INCORRECT, "token '%s': PIN file %s is not a regular file",
                        t->label, path);
    }
    if (st.st_mode & 077) {
        close(fd);
        return hsm_fail(err, CKR_PIN_INCORRECT,
                        "token '%s': PIN file %s is readable by group or others (mode %03o); "
                        "chmod 600 it",
                        t->label, path, (unsigned)(st.st_mode & 0777));
    }
    ssize_t n = read(fd, pin, cap);
    close(fd);
    if (n < 0 || (size_t)n >= cap)
        return hsm_fail(err, CKR_PIN_LEN_RANGE, "token '%s': PIN file %s is unreadable or too long",
                        t->label, path);
    while (n > 0 && (pin[n - 1] == '\n' || pin[n - 1] == '\r'))
        n--;
    *len = (size_t)n;
    return 0;
}

int hsm_token_read_pin(const hsm_token *t, char *pin, size_t cap, size_t *len, hsm_err *err)
{
    return read_pin(t, pin, cap, len, err);
}

/* --- slots and tokens ---------------------------------------------------- */

/* Find the slot whose token matches the URI. On failure, the message lists
 * the tokens that are present. */
static int find_slot(hsm_token *t, hsm_err *err)
{
    CK_ULONG n = 0;
    CK_SLOT_ID *slots = NULL;
    CK_RV rv = t->f->C_GetSlotList(CK_TRUE, NULL, &n);
    if (rv != CKR_OK)
        return hsm_fail(err, rv, "C_GetSlotList failed (%s)", hsm_rv_name(rv));
    slots = calloc(n ? n : 1, sizeof(*slots));
    if (!slots)
        return hsm_fail(err, CKR_HOST_MEMORY, "out of memory");
    rv = t->f->C_GetSlotList(CK_TRUE, slots, &n);
    if (rv != CKR_OK) {
        free(slots);
        return hsm_fail(err, rv, "C_GetSlotList failed (%s)", hsm_rv_name(rv));
    }
    char seen[200] = "";
    size_t used = 0;
    int found = 0;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        if (t->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue;
        if (!(ti.flags & CKF_TOKEN_INITIALIZED))
            continue;
        if (p11_kit_uri_match_token_info(t->uri, &ti)) {
            if (found++ == 0) {
                t->slot = slots[i];
                t->info = ti;
            }
            continue;
        }
        char lab[33];
        hsm_trim(lab, ti.label, sizeof(ti.label));
        int w = snprintf(seen + used, sizeof(seen) - used, "%s'%s'", used ? ", " : "", lab);
        if (w > 0 && used + (size_t)w < sizeof(seen))
            used += (size_t)w;
    }
    free(slots);
    if (found == 1)
        return 0;
    if (found > 1)
        return hsm_fail(err, CKR_ARGUMENTS_BAD,
                        "%s matches %d tokens; add serial= to pick one", t->uri_text, found);
    char hint[300];
    hsm_softhsm_hint(t->mod ? t->mod->path : NULL, hint, sizeof(hint));
    return hsm_fail(err, CKR_TOKEN_NOT_PRESENT, "no token matches %s; tokens present: %s%s",
                    t->uri_text, used ? seen : "none", hint);
}

/* The PIN file behind pin-source, or NULL for an environment PIN. */
static const char *pin_file_path(const hsm_token *t)
{
    const char *src = t->pin_source;
    if (!src || strncmp(src, "env:", 4) == 0)
        return NULL;
    const char *path = strncmp(src, "file:", 5) == 0 ? src + 5 : src;
    if (path[0] == '/' && path[1] == '/')
        path += 2;
    return path;
}

/* Log in on session s. Refuses locked / final-try PINs without an
 * attempt (pkcs11-provider check_pin_flags_ok does the same). */
static int login(hsm_token *t, CK_SESSION_HANDLE s, hsm_err *err)
{
    CK_TOKEN_INFO ti;
    CK_RV rv = t->f->C_GetTokenInfo(t->slot, &ti);
    if (rv != CKR_OK)
        return hsm_fail(err, rv, "token '%s': C_GetTokenInfo failed (%s)", t->label,
                        hsm_rv_name(rv));
    if (ti.flags & CKF_USER_PIN_LOCKED)
        return hsm_fail(err, CKR_PIN_LOCKED,
                        "token '%s': the user PIN is locked; not logging in (unlock it with the "
                        "SO PIN, e.g. pkcs11-tool --init-pin --login --login-type so)",
                        t->label);
    if (ti.flags & CKF_USER_PIN_FINAL_TRY)
        return hsm_fail(err, CKR_PIN_LOCKED,
                        "token '%s': the user PIN is on its final try; not logging in (one more "
                        "wrong PIN would lock it: check the PIN source, then log in once by hand)",
                        t->label);
    struct stat pst;
    const char *pfile = pin_file_path(t);
    bool have_st = pfile && stat(pfile, &pst) == 0;
    if (t->pin_rejected) {
        if (!pfile)
            return hsm_fail(err, CKR_PIN_INCORRECT,
                            "token '%s' rejected the PIN from %s; not trying it again (each "
                            "wrong PIN brings a lockout closer): fix it and restart",
                            t->label, t->pin_source ? t->pin_source : "CERTFORGE_PIN");
        if (have_st && pst.st_mtim.tv_sec == t->pin_mtime.tv_sec &&
            pst.st_mtim.tv_nsec == t->pin_mtime.tv_nsec && pst.st_size == t->pin_size)
            return hsm_fail(err, CKR_PIN_INCORRECT,
                            "token '%s' rejected the PIN from %s; not trying it again until the "
                            "file changes (each wrong PIN brings a lockout closer)",
                            t->label, pfile);
    }
    char pin[256];
    size_t len = 0;
    int rc = read_pin(t, pin, sizeof(pin), &len, err);
    if (rc == 0) {
        rv = t->f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, len);
        if (rv == CKR_USER_ALREADY_LOGGED_IN)
            rv = CKR_OK;
        if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_INVALID || rv == CKR_PIN_LEN_RANGE ||
            rv == CKR_PIN_LOCKED) {
            t->pin_rejected = true;
            if (have_st) {
                t->pin_mtime = pst.st_mtim;
                t->pin_size = pst.st_size;
            }
        } else if (rv == CKR_OK) {
            t->pin_rejected = false;
        }
        if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_INVALID || rv == CKR_PIN_LEN_RANGE) {
            /* what the failed attempt did to the retry counter */
            CK_TOKEN_INFO after;
            const char *left = "";
            if (t->f->C_GetTokenInfo(t->slot, &after) == CKR_OK) {
                if (after.flags & CKF_USER_PIN_LOCKED)
                    left = "; the user PIN is now LOCKED (unlock it with the SO PIN)";
                else if (after.flags & CKF_USER_PIN_FINAL_TRY)
                    left = "; WARNING: the token now reports its final try (user-pin-final-try): "
                           "one more wrong PIN locks it";
                else if (after.flags & CKF_USER_PIN_COUNT_LOW)
                    left = "; WARNING: the token now reports few tries left "
                           "(user-pin-count-low): check the PIN before trying again";
            }
            rc = hsm_fail(err, rv, "token '%s' rejected the PIN from %s (%s)%s", t->label,
                          t->pin_source ? t->pin_source : "CERTFORGE_PIN", hsm_rv_name(rv), left);
        } else if (rv == CKR_PIN_LOCKED)
            rc = hsm_fail(err, rv, "token '%s': the user PIN is locked (%s)", t->label,
                          hsm_rv_name(rv));
        else if (rv != CKR_OK)
            rc = hsm_fail(err, rv, "token '%s': C_Login failed (%s)", t->label, hsm_rv_name(rv));
    }
    OPENSSL_cleanse(pin, sizeof(pin));
    return rc;
}

/* (Re)establish slot, keeper session and login. Caller holds t->mu.
 *
 * If the keeper session still answers, the token kept its state (the fault
 * was transient, or only the login was lost): log in again if needed and
 * keep every pooled session. Otherwise every session of ours is gone: find
 * the slot again (a reinserted token may sit in another slot), open a new
 * keeper, log in, and move the epoch so pools forget their old handles.
 * Dead handles are forgotten, never closed: the module may already have
 * handed the same number to a new session. */
static int recover_locked(hsm_token *t, hsm_err *err)
{
    CK_SESSION_INFO si;
    CK_RV rv;
    if (t->keeper != CK_INVALID_HANDLE) {
        rv = t->f->C_GetSessionInfo(t->keeper, &si);
        if (rv == CKR_OK) {
            if (t->login && si.state != CKS_RO_USER_FUNCTIONS &&
                si.state != CKS_RW_USER_FUNCTIONS && login(t, t->keeper, err) != 0)
                return -1;
            return 0;
        }
        /* Only these say the sessions are gone (and the module has
         * dropped them: nothing leaks); anything else, a transient device
         * error say, is a failed attempt, retried later, and the sessions
         * are kept. */
        if (!hsm_rv_is_session_fault(rv) && rv != CKR_DEVICE_REMOVED &&
            rv != CKR_TOKEN_NOT_PRESENT && rv != CKR_CRYPTOKI_NOT_INITIALIZED)
            return hsm_fail(err, rv, "token '%s': C_GetSessionInfo failed (%s)", t->label,
                            hsm_rv_name(rv));
        t->keeper = CK_INVALID_HANDLE;
    }
    CK_SLOT_ID old_slot = t->slot;
    if (find_slot(t, err) != 0)
        return -1;
    /* A reinserted token may sit in another slot; another token with the
     * same label is not the one we opened. */
    char serial[17];
    hsm_trim(serial, t->info.serialNumber, sizeof(t->info.serialNumber));
    if (t->serial[0] && strcmp(serial, t->serial) != 0) {
        t->slot = old_slot;
        return hsm_fail(err, CKR_TOKEN_NOT_RECOGNIZED,
                        "token '%s' now has serial %s, not %s as when it was opened; refusing "
                        "to sign with another token",
                        t->label, serial, t->serial);
    }
    rv = t->f->C_OpenSession(t->slot, CKF_SERIAL_SESSION, NULL, NULL, &t->keeper);
    if (rv != CKR_OK) {
        t->keeper = CK_INVALID_HANDLE;
        return hsm_fail(err, rv, "token '%s': C_OpenSession failed (%s)", t->label,
                        hsm_rv_name(rv));
    }
    atomic_fetch_add(&t->epoch, 1);
    if (t->login) {
        rv = t->f->C_GetSessionInfo(t->keeper, &si);
        if (rv != CKR_OK)
            return hsm_fail(err, rv, "token '%s': C_GetSessionInfo failed (%s)", t->label,
                            hsm_rv_name(rv));
        if (si.state != CKS_RO_USER_FUNCTIONS && si.state != CKS_RW_USER_FUNCTIONS &&
            login(t, t->keeper, err) != 0)
            return -1;
    }
    return 0;
}

int hsm_token_open(const char *uri, const hsm_token_opts *opts, hsm_token **out, hsm_err *err)
{
    *out = NULL;
    int rc = -1;
    hsm_token *t = calloc(1, sizeof(*t));
    if (!t)
        return hsm_fail(err, CKR_HOST_MEMORY, "out of memory");
    pthread_mutex_init(&t->mu, NULL);
    t->keeper = CK_INVALID_HANDLE;
    if (opts)
        t->opts = *opts;
    if (!t->opts.backoff_min_ms)
        t->opts.backoff_min_ms = 20;
    if (!t->opts.backoff_max_ms)
        t->opts.backoff_max_ms = 2000;
    if (!t->opts.acquire_timeout_ms)
        t->opts.acquire_timeout_ms = 5000;
    t->login = !t->opts.no_login;
    if (hsm_uri_parse(uri, &t->uri, err) != 0)
        goto out;
    t->uri_text = strdup(uri);
    const char *ps = p11_kit_uri_get_pin_source(t->uri);
    t->pin_source = ps ? strdup(ps) : NULL;
    const char *mp = p11_kit_uri_get_module_path(t->uri);
    if (!mp)
        mp = CF_SOFTHSM_MODULE;
    if (module_get(mp, &t->mod, err) != 0)
        goto out;
    t->f = t->mod->f;
    atomic_store(&t->fork_gen, t->mod->fork_gen);
    pthread_mutex_lock(&t->mu);
    hsm_gate_enter(t->mod);
    int crc = find_slot(t, err);
    if (crc == 0) {
        hsm_trim(t->label, t->info.label, sizeof(t->info.label));
        hsm_trim(t->serial, t->info.serialNumber, sizeof(t->info.serialNumber));
        hsm_trim(t->model, t->info.model, sizeof(t->info.model));
        hsm_trim(t->manufacturer, t->info.manufacturerID, sizeof(t->info.manufacturerID));
        crc = recover_locked(t, err);
    }
    hsm_gate_leave(t->mod);
    pthread_mutex_unlock(&t->mu);
    if (crc != 0)
        goto out;
    rc = 0;
    *out = t;
out:
    if (rc != 0)
        hsm_token_close(t);
    return rc;
}

void hsm_token_close(hsm_token *t)
{
    if (!t)
        return;
    if (t->mod) {
        if (t->keeper != CK_INVALID_HANDLE && t->fork_gen == atomic_load(&hsm_fork_gen)) {
            hsm_gate_enter(t->mod);
            t->f->C_CloseSession(t->keeper);
            hsm_gate_leave(t->mod);
        }
        module_put(t->mod);
    }
    if (t->uri)
        p11_kit_uri_free(t->uri);
    free(t->pin_source);
    free(t->uri_text);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

const char *hsm_token_label(const hsm_token *t)
{
    return t->label;
}
const char *hsm_token_serial(const hsm_token *t)
{
    return t->serial;
}
unsigned long hsm_token_max_sessions(const hsm_token *t)
{
    CK_ULONG m = t->info.ulMaxSessionCount;
    if (m == CK_EFFECTIVELY_INFINITE || m == CK_UNAVAILABLE_INFORMATION)
        return 0;
    return m;
}

bool hsm_token_fault(hsm_token *t, CK_RV rv)
{
    if (!hsm_rv_is_token_fault(rv))
        return false;
    pthread_mutex_lock(&t->mu);
    if (!atomic_load(&t->faulted)) {
        atomic_store(&t->faulted, true);
        t->next_attempt_ms = 0; /* first attempt right away */
        t->backoff_ms = 0;
    }
    pthread_mutex_unlock(&t->mu);
    return true;
}

void hsm_token_suspect(hsm_token *t)
{
    pthread_mutex_lock(&t->mu);
    if (!atomic_load(&t->faulted)) {
        atomic_store(&t->faulted, true);
        t->next_attempt_ms = 0;
        t->backoff_ms = 0;
    }
    pthread_mutex_unlock(&t->mu);
}

typedef struct {
    hsm_token *t;
    CK_RV rv;
} fork_fix;

/* In a child, once: t->mu may have been held by a parent thread at the
 * fork, the parent's sessions are not ours (forget them, never close
 * them), and the module needs C_Initialize. Runs under mod_mu. */
static void token_after_fork(void *arg)
{
    fork_fix *ff = arg;
    hsm_token *t = ff->t;
    pthread_mutex_init(&t->mu, NULL);
    ff->rv = module_reinit_after_fork_locked(t->mod);
    t->keeper = CK_INVALID_HANDLE;
    atomic_store(&t->faulted, true);
    t->next_attempt_ms = 0;
    t->backoff_ms = 0;
}

int hsm_token_ensure(hsm_token *t, hsm_err *err)
{
    if (atomic_load(&t->fork_gen) != atomic_load(&hsm_fork_gen)) {
        fork_fix ff = {t, CKR_OK};
        hsm_after_fork_once(&t->fork_gen, token_after_fork, &ff);
        if (ff.rv != CKR_OK)
            return hsm_fail(err, ff.rv,
                            "token '%s': re-initialising the module after fork failed (%s)",
                            t->label, hsm_rv_name(ff.rv));
    }
    if (!atomic_load(&t->faulted))
        return 0;
    int rc = 0;
    /* One thread recovers. The others wait a little (a transient fault
     * recovers in microseconds) but not as long as a login that may take
     * the HSM's network timeout: then they fail fast. */
    /* (pthread_mutex_timedlock counts on CLOCK_REALTIME; a clock step can
     * only shorten or lengthen this 100 ms wait. pthread_mutex_clocklock
     * would avoid that, but ThreadSanitizer in gcc 12 does not know it.) */
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_nsec += 100 * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    if (pthread_mutex_timedlock(&t->mu, &dl) != 0)
        return hsm_fail(err, CKR_DEVICE_ERROR, "token '%s': recovery in progress; retry",
                        t->label);
    if (!atomic_load(&t->faulted))
        goto out;
    uint64_t now = hsm_now_ms();
    if (now < t->next_attempt_ms) {
        rc = hsm_fail(err, CKR_DEVICE_ERROR,
                      "token '%s' is recovering from a fault (%s); next attempt in %llu ms",
                      t->label, t->last_error[0] ? t->last_error : "no detail",
                      (unsigned long long)(t->next_attempt_ms - now));
        goto out;
    }
    hsm_gate_enter_excl(t->mod);
    int r = recover_locked(t, err);
    hsm_gate_leave_excl(t->mod);
    if (r != 0) {
        snprintf(t->last_error, sizeof(t->last_error), "%.199s", err ? err->msg : "");
        t->backoff_ms = t->backoff_ms ? t->backoff_ms * 2 : t->opts.backoff_min_ms;
        if (t->backoff_ms > t->opts.backoff_max_ms)
            t->backoff_ms = t->opts.backoff_max_ms;
        t->next_attempt_ms = now + t->backoff_ms;
        rc = -1;
        goto out;
    }
    atomic_store(&t->faulted, false);
    t->backoff_ms = 0;
out:
    pthread_mutex_unlock(&t->mu);
    return rc;
}

int hsm_token_session(hsm_token *t, bool rw, CK_SESSION_HANDLE *out, hsm_err *err)
{
    if (hsm_token_ensure(t, err) != 0)
        return -1;
    CK_FLAGS fl = CKF_SERIAL_SESSION | (rw ? CKF_RW_SESSION : 0);
    CK_RV rv = t->f->C_OpenSession(t->slot, fl, NULL, NULL, out);
    if (rv != CKR_OK) {
        hsm_token_fault(t, rv);
        return hsm_fail(err, rv, "token '%s': C_OpenSession failed (%s)", t->label,
                        hsm_rv_name(rv));
    }
    return 0;
}

/* --- objects ------------------------------------------------------------- */

int hsm_find(hsm_token *t, CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, CK_ULONG n,
             CK_OBJECT_HANDLE *out, CK_ULONG max, CK_ULONG *count, hsm_err *err)
{
    *count = 0;
    CK_RV rv = t->f->C_FindObjectsInit(s, tmpl, n);
    if (rv != CKR_OK)
        return hsm_fail(err, rv, "token '%s': C_FindObjectsInit failed (%s)", t->label,
                        hsm_rv_name(rv));
    rv = t->f->C_FindObjects(s, out, max, count);
    CK_RV rv2 = t->f->C_FindObjectsFinal(s);
    if (rv == CKR_OK)
        rv = rv2;
    if (rv != CKR_OK)
        return hsm_fail(err, rv, "token '%s': C_FindObjects failed (%s)", t->label,
                        hsm_rv_name(rv));
    return 0;
}

int hsm_get_attr(hsm_token *t, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type,
                 uint8_t **val, CK_ULONG *len, hsm_err *err)
{
    *val = NULL;
    *len = 0;
    CK_ATTRIBUTE a = {type, NULL, 0};
    CK_RV rv = t->f->C_GetAttributeValue(s, o, &a, 1);
    if (rv != CKR_OK || a.ulValueLen == CK_UNAVAILABLE_INFORMATION)
        return hsm_fail(err, rv != CKR_OK ? rv : CKR_ATTRIBUTE_TYPE_INVALID,
                        "token '%s': attribute 0x%lx unavailable (%s)", t->label,
                        (unsigned long)type, hsm_rv_name(rv));
    a.pValue = malloc(a.ulValueLen ? a.ulValueLen : 1);
    if (!a.pValue)
        return hsm_fail(err, CKR_HOST_MEMORY, "out of memory");
    rv = t->f->C_GetAttributeValue(s, o, &a, 1);
    if (rv != CKR_OK) {
        free(a.pValue);
        return hsm_fail(err, rv, "token '%s': C_GetAttributeValue failed (%s)", t->label,
                        hsm_rv_name(rv));
    }
    *val = a.pValue;
    *len = a.ulValueLen;
    return 0;
}

/* DER OIDs of the curves, as they appear in CKA_EC_PARAMS. */
static const uint8_t oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const uint8_t oid_p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
static const uint8_t oid_ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
static const uint8_t str_ed25519[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r', 'd',
                                      's', '2', '5', '5', '1', '9'};

static bool bytes_eq(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

int hsm_key_info(hsm_token *t, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, cf_key_type *kt,
                 unsigned *bits, hsm_err *err)
{
    CK_KEY_TYPE type = 0;
    CK_ATTRIBUTE a = {CKA_KEY_TYPE, &type, sizeof(type)};
    CK_RV rv = t->f->C_GetAttributeValue(s, o, &a, 1);
    if (rv != CKR_OK)
        return hsm_fail(err, rv, "token '%s': object is not a key (%s)", t->label,
                        hsm_rv_name(rv));
    uint8_t *v = NULL;
    CK_ULONG len = 0;
    int rc = -1;
    if (type == CKK_EC || type == CKK_EC_EDWARDS) {
        if (hsm_get_attr(t, s, o, CKA_EC_PARAMS, &v, &len, err) != 0)
            return -1;
        if (type == CKK_EC && bytes_eq(v, len, oid_p256, sizeof(oid_p256))) {
            *kt = CF_KEY_EC_P256, *bits = 256, rc = 0;
        } else if (type == CKK_EC && bytes_eq(v, len, oid_p384, sizeof(oid_p384))) {
            *kt = CF_KEY_EC_P384, *bits = 384, rc = 0;
        } else if (type == CKK_EC_EDWARDS && (bytes_eq(v, len, oid_ed25519, sizeof(oid_ed25519)) ||
                                              bytes_eq(v, len, str_ed25519, sizeof(str_ed25519)))) {
            *kt = CF_KEY_ED25519, *bits = 256, rc = 0;
        } else {
            rc = hsm_fail(err, CKR_KEY_TYPE_INCONSISTENT,
                          "token '%s': unsupported curve (supported: P-256, P-384, Ed25519)",
                          t->label);
        }
    } else if (type == CKK_RSA) {
        if (hsm_get_attr(t, s, o, CKA_MODULUS, &v, &len, err) != 0)
            return -1;
        CK_ULONG i = 0;
        while (i < len && v[i] == 0)
            i++;
        *kt = CF_KEY_RSA;
        *bits = (unsigned)((len - i) * 8);
        rc = 0;
    } else {
        rc = hsm_fail(err, CKR_KEY_TYPE_INCONSISTENT,
                      "token '%s': unsupported key type 0x%lx (supported: EC P-256/P-384, RSA, "
                      "Ed25519)",
                      t->label, (unsigned long)type);
    }
    free(v);
    return rc;
}

/* CKA_EC_POINT is a DER OCTET STRING holding the point (PKCS#11 v2.40);
 * some modules return the raw point. `want` is the raw length (65 for
 * P-256, 97 for P-384, 32 for Ed25519): a value of exactly that length is
 * taken as raw, whatever its first octets look like. */
static const uint8_t *ec_point_raw(const uint8_t *v, CK_ULONG len, size_t want, size_t *out)
{
    if (len != want && len >= 2 && v[0] == 0x04) {
        size_t l = v[1], h = 2;
        if (l == 0x81 && len >= 3)
            l = v[2], h = 3;
        if (h + l == len) {
            *out = l;
            return v + h;
        }
    }
    *out = len;
    return v;
}

static EVP_PKEY *pkey_from_params(const char *alg, OSSL_PARAM_BLD *bld, hsm_err *err)
{
    EVP_PKEY *pk = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, alg, NULL);
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        hsm_fail(err, CKR_GENERAL_ERROR, "cannot build the %s public key from token attributes",
                 alg);
        pk = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pk;
}

EVP_PKEY *hsm_public_key(hsm_token *t, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, hsm_err *err)
{
    cf_key_type kt;
    unsigned bits;
    if (hsm_key_info(t, s, o, &kt, &bits, err) != 0)
        return NULL;
    EVP_PKEY *pk = NULL;
    uint8_t *v = NULL, *e = NULL, *id = NULL, *lab = NULL;
    CK_ULONG vlen = 0, elen = 0, idlen = 0, lablen = 0;
    OSSL_PARAM_BLD *bld = NULL;
    BIGNUM *bn_n = NULL, *bn_e = NULL;

    if (kt == CF_KEY_RSA) {
        if (hsm_get_attr(t, s, o, CKA_MODULUS, &v, &vlen, err) != 0 ||
            hsm_get_attr(t, s, o, CKA_PUBLIC_EXPONENT, &e, &elen, err) != 0)
            goto out;
        bn_n = BN_bin2bn(v, (int)vlen, NULL);
        bn_e = BN_bin2bn(e, (int)elen, NULL);
        bld = OSSL_PARAM_BLD_new();
        if (!bn_n || !bn_e || !bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e)) {
            hsm_fail(err, CKR_HOST_MEMORY, "out of memory");
            goto out;
        }
        pk = pkey_from_params("RSA", bld, err);
        goto out;
    }
    /* EC and Ed25519: the point lives on the public key object. */
    CK_OBJECT_HANDLE pub = o;
    CK_OBJECT_CLASS cls = 0;
    CK_ATTRIBUTE ca = {CKA_CLASS, &cls, sizeof(cls)};
    if (t->f->C_GetAttributeValue(s, o, &ca, 1) == CKR_OK && cls == CKO_PRIVATE_KEY) {
        if (hsm_get_attr(t, s, o, CKA_ID, &id, &idlen, err) != 0)
            goto out;
        CK_OBJECT_CLASS pc = CKO_PUBLIC_KEY;
        CK_ATTRIBUTE tmpl[3] = {{CKA_CLASS, &pc, sizeof(pc)}, {CKA_ID, id, idlen}};
        CK_ULONG nt = 2, cnt = 0;
        if (idlen == 0) {
            /* An empty CKA_ID matches every key without one: add the label. */
            if (hsm_get_attr(t, s, o, CKA_LABEL, &lab, &lablen, err) != 0)
                goto out;
            tmpl[nt++] = (CK_ATTRIBUTE){CKA_LABEL, lab, lablen};
        }
        CK_OBJECT_HANDLE found[2];
        if (hsm_find(t, s, tmpl, nt, found, 2, &cnt, err) != 0)
            goto out;
        if (cnt > 1) {
            hsm_fail(err, CKR_ARGUMENTS_BAD,
                     "token '%s': more than one public key object has the private key's "
                     "CKA_ID; give each key pair its own id",
                     t->label);
            goto out;
        }
        pub = found[0];
        if (cnt == 0) {
            hsm_fail(err, CKR_OBJECT_HANDLE_INVALID,
                     "token '%s': no public key object with the private key's CKA_ID; the "
                     "public half is needed to check signatures",
                     t->label);
            goto out;
        }
    }
    if (hsm_get_attr(t, s, pub, CKA_EC_POINT, &v, &vlen, err) != 0)
        goto out;
    size_t plen;
    const uint8_t *pt = ec_point_raw(v, vlen,
                                     kt == CF_KEY_EC_P256   ? 65
                                     : kt == CF_KEY_EC_P384 ? 97
                                                            : 32,
                                     &plen);
    if (kt == CF_KEY_ED25519) {
        pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pt, plen);
        if (!pk)
            hsm_fail(err, CKR_GENERAL_ERROR, "token '%s': bad Ed25519 public key", t->label);
        goto out;
    }
    bld = OSSL_PARAM_BLD_new();
    if (!bld ||
        !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                         kt == CF_KEY_EC_P256 ? "prime256v1" : "secp384r1", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, plen)) {
        hsm_fail(err, CKR_HOST_MEMORY, "out of memory");
        goto out;
    }
    pk = pkey_from_params("EC", bld, err);
out:
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    free(v);
    free(e);
    free(id);
    free(lab);
    return pk;
}

/* --- module handles for the admin code ----------------------------------- */

/* hsm_admin.c lists the tokens of a module before any token is selected;
 * it goes through the registry so it shares C_Initialize with tokens
 * opened in the same process. */
int hsm_module_acquire(const char *path, hsm_module **out, hsm_err *err)
{
    return module_get(path ? path : CF_SOFTHSM_MODULE, out, err);
}

void hsm_module_release(hsm_module *m)
{
    module_put(m);
}
