/* confine.c — no_new_privs, Landlock and a seccomp filter (confine.h).
 * Landlock through its system calls (no wrapper in glibc 2.36); seccomp
 * through libseccomp. */
#include "engine/confine/confine.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <sched.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif

static int ll_abi(void)
{
    long v = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    return v < 0 ? 0 : (int)v;
}

/* Every file-system access right this kernel's Landlock knows. */
static uint64_t fs_handled(int abi)
{
    uint64_t a = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
                 LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR |
                 LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
                 LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR |
                 LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK |
                 LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
                 LANDLOCK_ACCESS_FS_MAKE_SYM;
    if (abi >= 2)
        a |= LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3)
        a |= LANDLOCK_ACCESS_FS_TRUNCATE;
    if (abi >= 5)
        a |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
    return a;
}

static int add_path(int rs, const char *path, uint64_t access, char *err, size_t errlen)
{
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "landlock: %s: %s", path, strerror(errno));
        return -1;
    }
    struct landlock_path_beneath_attr pb = {.allowed_access = access, .parent_fd = fd};
    long r = syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
    int e = errno;
    close(fd);
    if (r != 0) {
        snprintf(err, errlen, "landlock: rule for %s: %s", path, strerror(e));
        return -1;
    }
    return 0;
}

static int apply_landlock(int abi, const char *const *writable, size_t n, char *err,
                          size_t errlen)
{
    uint64_t handled = fs_handled(abi);
    struct landlock_ruleset_attr ra = {.handled_access_fs = handled};
    int rs = (int)syscall(SYS_landlock_create_ruleset, &ra, sizeof(ra), 0);
    if (rs < 0) {
        snprintf(err, errlen, "landlock: create ruleset: %s", strerror(errno));
        return -1;
    }
    uint64_t read = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
    /* below a writable folder: everything but executing and device nodes */
    uint64_t write = handled & ~(LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_MAKE_CHAR |
                                 LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_IOCTL_DEV);
    int rc = add_path(rs, "/", read, err, errlen);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = add_path(rs, writable[i], write, err, errlen);
    if (rc == 0 && syscall(SYS_landlock_restrict_self, rs, 0) != 0) {
        snprintf(err, errlen, "landlock: restrict self: %s", strerror(errno));
        rc = -1;
    }
    close(rs);
    return rc;
}

static int apply_seccomp(char *err, size_t errlen)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) {
        snprintf(err, errlen, "seccomp: cannot create a filter");
        return -1;
    }
    static const char *const deny[] = {
        "execve",        "execveat",        "fork",          "vfork",
#if !defined(__SANITIZE_ADDRESS__)
        "ptrace",
#endif
        "process_vm_readv", "process_vm_writev", "mount",     "umount2",       "pivot_root",
        "chroot",        "unshare",         "setns",         "init_module",   "finit_module",
        "delete_module", "kexec_load",      "kexec_file_load", "bpf",         "perf_event_open",
        "keyctl",        "add_key",         "request_key",   "swapon",        "swapoff",
        "reboot",        "setuid",          "setgid",        "setreuid",      "setregid",
        "setresuid",     "setresgid",       "setgroups",     "personality",   "userfaultfd",
        "open_by_handle_at", "name_to_handle_at", "acct",    "settimeofday",  "clock_settime",
        "adjtimex",      "clock_adjtime",   "sethostname",   "setdomainname", "iopl",
        "ioperm",        "mount_setattr",   "move_mount",    "fsopen",        "fsmount",
        "fspick",        "open_tree",
    };
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
    for (size_t i = 0; rc == 0 && i < sizeof(deny) / sizeof(deny[0]); i++) {
        int nr = seccomp_syscall_resolve_name(deny[i]);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not on this architecture */
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
    }
    /* clone: threads only (CLONE_THREAD set); clone3 hides its flags in
     * memory, so it reports ENOSYS and glibc falls back to clone. In ASan
     * builds (tests only) LeakSanitizer stops the world at exit with a
     * ptrace()d clone: there those stay allowed. */
#if !defined(__SANITIZE_ADDRESS__)
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0));
#endif
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    if (rc == 0)
        rc = seccomp_load(ctx);
    seccomp_release(ctx);
    if (rc != 0) {
        snprintf(err, errlen, "seccomp: %s", strerror(-rc));
        return -1;
    }
    return 0;
}

int confine_apply(const char *const *writable, size_t n, bool require_landlock,
                  confine_result *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof(*res));
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        snprintf(err, errlen, "no_new_privs: %s", strerror(errno));
        return -1;
    }
    int abi = ll_abi();
    if (abi == 0 && require_landlock) {
        snprintf(err, errlen, "landlock: not available in this kernel (confine.require_landlock)");
        return -1;
    }
    if (abi > 0) {
        if (apply_landlock(abi, writable, n, err, errlen) != 0)
            return -1;
        res->landlock_abi = abi;
        res->n_writable = n;
    }
    if (apply_seccomp(err, errlen) != 0)
        return -1;
    res->seccomp = true;
    return 0;
}

/* The signer's allow-list: what a signing process with threads needs, and
 * what the PKCS#11 module does through login, signing, recovery (keeper
 * session, re-login reading the PIN file, a token coming back) and its
 * token files. Measured with SoftHSM 2.6.1 and the test shim
 * (strace -f of the signer under tests/daemon/test_faults and
 * test_signer; docs/security.md). Anything else fails with EPERM: a
 * module that needs more reports HSM_FAILURE, it does not kill the
 * process. Threads only (clone with CLONE_THREAD); no sockets but the
 * channels it was given (socket/connect/bind refused), no exec, no fork. */
static const char *const signer_allow[] = {
    /* I/O on its channels and the module's files */
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "pwrite64",
    "recvfrom",
    "recvmsg",
    "sendto",
    "sendmsg",
    "close",
    "poll",
    "ppoll",
    "shutdown",
    "openat",
    "open",
    "newfstatat",
    "fstat",
    "stat",
    "lstat",
    "statx",
    "lseek",
    "fsync",
    "fdatasync",
    "flock",
    "fcntl",
    "ftruncate",
    "getdents64",
    "access",
    "faccessat",
    "faccessat2",
    "readlink",
    "readlinkat",
    "getcwd",
    "rename",
    "renameat",
    "renameat2",
    "unlink",
    "unlinkat",
    "mkdir",
    "mkdirat",
    "umask",
    /* memory, time, threads, signals */
    "mmap",
    "munmap",
    "mprotect",
    "mremap",
    "madvise",
    "brk",
    "futex",
    "get_robust_list",
    "set_robust_list",
    "rseq",
    "clock_gettime",
    "clock_getres",
    "clock_nanosleep",
    "nanosleep",
    "gettimeofday",
    "time",
    "getrandom",
    "sched_yield",
    "sched_getaffinity",
    "sched_setattr",
    "sched_getattr",
    "getpid",
    "gettid",
    "getppid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getresuid",
    "getresgid",
    "getrlimit",
    "prlimit64",
    "rt_sigprocmask",
    "rt_sigaction",
    "rt_sigreturn",
    "sigaltstack",
    "tgkill",
    "exit",
    "exit_group",
    "restart_syscall",
    "prctl",
    "uname",
    "sysinfo",
    "membarrier",
    "set_tid_address",
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    /* the sanitizer runtimes (test builds only) */
    "ptrace",
    "wait4",
    "sched_getparam",
    "personality",
    "mincore",
    "munlock",
    "mlock",
    "ioctl",
    "pipe2",
    "dup",
    "dup2",
    "dup3",
    "kill",
#endif
};

static int apply_signer_seccomp(char *err, size_t errlen)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    if (!ctx) {
        snprintf(err, errlen, "seccomp: cannot create a filter");
        return -1;
    }
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
    for (size_t i = 0; rc == 0 && i < sizeof(signer_allow) / sizeof(signer_allow[0]); i++) {
        int nr = seccomp_syscall_resolve_name(signer_allow[i]);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not on this architecture */
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
    }
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    if (rc == 0)
        rc = seccomp_load(ctx);
    seccomp_release(ctx);
    if (rc != 0) {
        snprintf(err, errlen, "seccomp: %s", strerror(-rc));
        return -1;
    }
    return 0;
}

int confine_signer(bool require_landlock, confine_result *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof(*res));
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        snprintf(err, errlen, "no_new_privs: %s", strerror(errno));
        return -1;
    }
    int abi = ll_abi();
    if (abi == 0 && require_landlock) {
        snprintf(err, errlen, "landlock: not available in this kernel (confine.require_landlock)");
        return -1;
    }
    if (abi > 0) {
        if (apply_landlock(abi, NULL, 0, err, errlen) != 0)
            return -1;
        res->landlock_abi = abi;
    }
    if (apply_signer_seccomp(err, errlen) != 0)
        return -1;
    res->seccomp = true;
    return 0;
}
