/* confine.h — what certforged gives up once it has started (docs/security.md).
 *
 * After the socket is bound, the HSM logged in, the ledger opened and the
 * first CRLs written, the daemon needs no new privileges, no new programs
 * and no file writes outside a few folders. confine_apply():
 *
 *   1. no_new_privs (prctl PR_SET_NO_NEW_PRIVS);
 *   2. Landlock: the whole file system read-only (read files, list
 *      folders), write access (create, write, remove, rename) only below
 *      the folders given (the ledger's, the CRL publish folder, the
 *      socket's, and what the config adds, e.g. an HSM module's state);
 *      nothing may be executed. Best effort: a kernel without Landlock
 *      leaves this step out (reported in the result) unless required;
 *   3. seccomp (libseccomp): execve/execveat, fork/vfork and process
 *      clones (threads stay allowed), ptrace and cross-process memory,
 *      mount/namespace/module/kexec/bpf/keyring/reboot/swap/uid changes
 *      fail with EPERM. io_uring requests are not seen by seccomp; the
 *      Landlock rules apply to the files they open.
 *
 * Applies to every thread of the process (Landlock's and seccomp's
 * TSYNC). Irreversible.
 */
#ifndef CF_CONFINE_H
#define CF_CONFINE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/compiler.h"

typedef struct confine_result {
    int landlock_abi;  /* 0: Landlock unavailable (nothing restricted on the file system) */
    bool seccomp;      /* the filter is installed */
    size_t n_writable; /* folders left writable */
} confine_result;

/* writable: folders (they must exist). require_landlock: fail when the
 * kernel has no Landlock. Returns 0, or -1 with err (naming the step and
 * the path); after a failure the process may be partly confined. */
CF_WUR int confine_apply(const char *const *writable, size_t n, bool require_landlock,
                         confine_result *res, char *err, size_t errlen);

/* The signer process's confinement, once it has logged in: no_new_privs,
 * Landlock with nothing writable (the token files are read; SoftHSM's
 * attempts to rewrite them on a re-login fail harmlessly) and a seccomp
 * allow-list (confine.c: the PKCS#11 module's needs, measured), every
 * other call failing with EPERM. Same contract as confine_apply. */
CF_WUR int confine_signer(bool require_landlock, confine_result *res, char *err, size_t errlen);

#endif
