/* hsm_internal.h — shared between the hsm/ sources and the admin code.
 * Not part of the public surface (hsm.h, hsm_admin.h). */
#ifndef CF_HSM_INTERNAL_H
#define CF_HSM_INTERNAL_H

#include "hsm/hsm.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#include <p11-kit/uri.h>

/* A loaded PKCS#11 module, shared by every token opened through the same
 * path in this process (C_Initialize is per process). */
typedef struct hsm_module {
    struct hsm_module *next;
    char *path;
    void *dl;
    CK_FUNCTION_LIST *f;
    unsigned refs;
    bool we_initialized; /* we called C_Initialize, so we finalize */
    unsigned fork_gen;   /* hsm_fork_gen value when initialised */
    /* The gate. Every call into the module from a pool or a recovery is
     * made inside it. Shared: signing threads. Exclusive: a token's
     * recovery (so no thread still holds a session handle the recovery is
     * about to declare dead, and no handle is used after its number was
     * reused), and fork() (pthread_atfork prepare waits until no thread is
     * inside the module: otherwise the child inherits the module's
     * internal locks held by threads that do not exist there, and its
     * C_Finalize/C_Initialize deadlocks — seen with SoftHSM2). A mutex and
     * counters rather than a rwlock: glibc's rwlock remembers its writer by
     * thread id, which changes in the child. Never entered recursively,
     * and no token lock is taken while inside. */
    pthread_mutex_t gate_mu;
    pthread_cond_t gate_cv;
    _Atomic unsigned gate_inside;
    _Atomic unsigned gate_block; /* HSM_GATE_CLOSED | HSM_GATE_EXCL */
} hsm_module;

#define HSM_GATE_CLOSED 1u /* fork in progress */
#define HSM_GATE_EXCL 2u   /* a recovery holds the module alone */

/* Shared entry, lock-free unless the gate is blocked: announce, then look
 * (sequentially consistent, pairing with hsm_gate_enter_excl's store then
 * look). */
static inline void hsm_gate_enter(hsm_module *m)
{
    for (;;) {
        atomic_fetch_add(&m->gate_inside, 1);
        if (atomic_load(&m->gate_block) == 0)
            return;
        if (atomic_fetch_sub(&m->gate_inside, 1) == 1) {
            pthread_mutex_lock(&m->gate_mu);
            pthread_cond_broadcast(&m->gate_cv);
            pthread_mutex_unlock(&m->gate_mu);
        }
        pthread_mutex_lock(&m->gate_mu);
        while (atomic_load(&m->gate_block) != 0)
            pthread_cond_wait(&m->gate_cv, &m->gate_mu);
        pthread_mutex_unlock(&m->gate_mu);
    }
}
static inline void hsm_gate_leave(hsm_module *m)
{
    if (atomic_fetch_sub(&m->gate_inside, 1) == 1 && atomic_load(&m->gate_block) != 0) {
        pthread_mutex_lock(&m->gate_mu);
        pthread_cond_broadcast(&m->gate_cv);
        pthread_mutex_unlock(&m->gate_mu);
    }
}
/* Alone in the module: waits for every shared holder to leave. */
static inline void hsm_gate_enter_excl(hsm_module *m)
{
    pthread_mutex_lock(&m->gate_mu);
    while (atomic_load(&m->gate_block) != 0)
        pthread_cond_wait(&m->gate_cv, &m->gate_mu);
    atomic_store(&m->gate_block, HSM_GATE_EXCL);
    while (atomic_load(&m->gate_inside) > 0)
        pthread_cond_wait(&m->gate_cv, &m->gate_mu);
    pthread_mutex_unlock(&m->gate_mu);
}
static inline void hsm_gate_leave_excl(hsm_module *m)
{
    pthread_mutex_lock(&m->gate_mu);
    atomic_store(&m->gate_block, 0);
    pthread_cond_broadcast(&m->gate_cv);
    pthread_mutex_unlock(&m->gate_mu);
}

/* If the process forked since *gen was recorded, run fn(arg) once, under
 * the module registry lock (so two threads of a child cannot both run it),
 * and update *gen. For objects whose mutexes a fork may have caught held. */
void hsm_after_fork_once(_Atomic unsigned *gen, void (*fn)(void *), void *arg);

struct hsm_token {
    hsm_module *mod;
    CK_FUNCTION_LIST *f;
    P11KitUri *uri; /* the selector; kept to find the slot again */
    char *pin_source;
    char *uri_text;
    hsm_token_opts opts;
    CK_SLOT_ID slot;
    CK_TOKEN_INFO info;
    char label[33], serial[17], model[17], manufacturer[33];
    bool login;

    /* Recovery state, under mu. `epoch` moves when the token was logged in
     * again (old sessions and object handles are then presumed dead). */
    pthread_mutex_t mu;
    _Atomic unsigned epoch;
    _Atomic bool faulted;
    uint64_t next_attempt_ms;
    unsigned backoff_ms;
    _Atomic unsigned fork_gen;
    /* A session of our own kept open so the login state survives while
     * signer pools reopen theirs (login is per token, per application,
     * and ends when the application's last session closes). */
    CK_SESSION_HANDLE keeper;
    /* The token rejected the PIN: never try the same PIN again (each try
     * brings a lockout closer). A PIN file is tried again once it changes;
     * an environment PIN needs a restart. */
    bool pin_rejected;
    struct timespec pin_mtime;
    off_t pin_size;
    char last_error[200]; /* why the last recovery attempt failed */
};

/* Bumped in the child after fork (pthread_atfork). */
extern _Atomic unsigned hsm_fork_gen;

/* Fill err and return -1. */
int hsm_fail(hsm_err *err, CK_RV rv, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Milliseconds on CLOCK_MONOTONIC. */
uint64_t hsm_now_ms(void);

/* Parse an RFC 7512 URI with p11-kit; on failure, name the attribute that
 * p11-kit rejects. Unknown attributes are refused by name. pin-value is
 * refused (PINs never on a command line). */
CF_WUR int hsm_uri_parse(const char *text, P11KitUri **out, hsm_err *err);

/* After a fork, or a token-level fault: make the token usable again
 * (re-initialise the module in a child, find the slot, log in). Takes
 * t->mu. Returns 0, or -1 with err (fails fast while backing off). */
CF_WUR int hsm_token_ensure(hsm_token *t, hsm_err *err);

/* Record a fault seen on a session. Returns true if it was token-level
 * (the token will be recovered before the next use). */
bool hsm_token_fault(hsm_token *t, CK_RV rv);
/* Something suggests the token lost its login (e.g. a key that was there
 * is not found on a fresh session): check it before the next use. */
void hsm_token_suspect(hsm_token *t);
bool hsm_rv_is_session_fault(CK_RV rv);
bool hsm_rv_is_token_fault(CK_RV rv);

/* Open a fresh session on the token (read-write if rw), after
 * hsm_token_ensure. Caller closes it with t->f->C_CloseSession. */
CF_WUR int hsm_token_session(hsm_token *t, bool rw, CK_SESSION_HANDLE *out, hsm_err *err);

/* C_FindObjects with a template; up to `max` handles. */
CF_WUR int hsm_find(hsm_token *t, CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                    CK_OBJECT_HANDLE *out, CK_ULONG max, CK_ULONG *count, hsm_err *err);

/* The object-selecting attributes of a URI (object/id/type) as a
 * template; the pointers refer into the URI. Returns count. */
CK_ULONG hsm_uri_object_template(P11KitUri *u, CK_ATTRIBUTE *tmpl, CK_ULONG max);

/* Get one variable-length attribute into a malloc'd buffer. */
CF_WUR int hsm_get_attr(hsm_token *t, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                        CK_ATTRIBUTE_TYPE type, uint8_t **val, CK_ULONG *len, hsm_err *err);

/* Key facts from a private or public key object. */
CF_WUR int hsm_key_info(hsm_token *t, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, cf_key_type *kt,
                        unsigned *bits, hsm_err *err);

/* Public key of a key pair, given either object (looks for the matching
 * public key object by CKA_ID, else uses the object's own attributes). */
CF_WUR EVP_PKEY *hsm_public_key(hsm_token *t, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                                hsm_err *err);

/* A reference to the module at path (NULL: CF_SOFTHSM_MODULE), loaded and
 * initialised through the registry tokens use; for listing a module's
 * tokens before one is selected. Release with hsm_module_release. */
CF_WUR int hsm_module_acquire(const char *path, hsm_module **out, hsm_err *err);
void hsm_module_release(hsm_module *m);

/* Copy a blank-padded PKCS#11 text field into a C string. */
void hsm_trim(char *dst, const CK_UTF8CHAR *src, size_t n);

/* " (SoftHSM: SOFTHSM2_CONF is not set ...)" for messages about a SoftHSM
 * module; "" for other modules. */
void hsm_softhsm_hint(const char *module_path, char *buf, size_t cap);

/* The PIN t's pin-source (or CERTFORGE_PIN) gives, with the usual checks.
 * Wipe it after use. */
CF_WUR int hsm_token_read_pin(const hsm_token *t, char *pin, size_t cap, size_t *len, hsm_err *err);

#endif
