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
 *      mount/namespace/module/kexec/bpf/keyring/reboot/swap/uid changes,
 *      capset, and every change of file metadata Landlock does not cover:
 *      chmod/fchmod/fchmodat, the chown family, setting and removing
 *      extended attributes, fail with EPERM. io_uring requests are not
 *      seen by seccomp; the Landlock rules apply to the files they open.
 *
 * Before those, privileges (confine_apply, step 0):
 *   - started as root with a `user`: supplementary groups set to the
 *     user's primary group only, the capability bounding set cleared,
 *     then gid and uid (real, effective, saved) switched to the user's;
 *   - always: ambient capabilities cleared, the bounding set cleared where
 *     the process may (CAP_SETPCAP: started as root), and the effective,
 *     permitted and inheritable sets emptied (capset).
 *
 * Afterwards confine_apply checks from inside that the filter holds: on an
 * unnamed file in the first writable folder fchmod, fchown and fsetxattr,
 * on the folder itself chmod and lchown, and setresuid must each fail with
 * EPERM, and capget must report no capability; one that does not is a
 * failure of confine_apply (the daemon refuses to start).
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
    unsigned uid, gid; /* the identity the process runs under afterwards */
    bool switched;     /* switched from root to `user` */
    bool root;         /* still uid 0 (started as root, no user given): warn */
    bool bounding_cleared; /* the capability bounding set is empty */
    /* The self-check: e.g. "chmod=EPERM fchmod=EPERM fchown=EPERM lchown=EPERM
     * setxattr=EPERM setuid=EPERM caps=none"; "" when not run (no writable
     * folder to make a file in). */
    char checks[256];
} confine_result;

/* writable: folders (they must exist). require_landlock: fail when the
 * kernel has no Landlock. user: when running as root, the user to switch
 * to (NULL: stay root; a non-root process must already be that user).
 * Returns 0, or -1 with err (naming the step and the path); after a
 * failure the process may be partly confined. */
CF_WUR int confine_apply(const char *const *writable, size_t n, bool require_landlock,
                         const char *user, confine_result *res, char *err, size_t errlen);

/* The result as key=value pairs for a log line: "no_new_privs=yes
 * landlock_abi=N seccomp=yes writable=A,B uid=N gid=N caps=none
 * bounding=empty|kept checks=\"...\"" (values quoted where they need it). */
void confine_describe(const confine_result *r, const char *const *writable, size_t n, char *buf,
                      size_t cap);

/* Step 0 alone (privileges), for a process that confines itself in
 * stages: see above. 0, or -1 with err. */
CF_WUR int confine_drop_privileges(const char *user, confine_result *res, char *err, size_t errlen);

/* The signer process's confinement, once it has logged in: no_new_privs,
 * Landlock with nothing writable (the token files are read; SoftHSM's
 * attempts to rewrite them on a re-login fail harmlessly) and a seccomp
 * allow-list (confine.c: the PKCS#11 module's needs, measured), every
 * other call failing with EPERM. Same contract as confine_apply. */
CF_WUR int confine_signer(bool require_landlock, confine_result *res, char *err, size_t errlen);

/* The folder a file path names (into buf): "." for a bare name, "/" for
 * one in the root. The daemons' writable folders are their files'. */
const char *confine_folder_of(const char *path, char *buf, size_t len);

#endif
