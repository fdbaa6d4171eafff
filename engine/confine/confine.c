/* confine.c — no_new_privs, Landlock and a seccomp filter (confine.h).
 * Landlock through its system calls (no wrapper in glibc 2.36); seccomp
 * through libseccomp. */
#include "engine/confine/confine.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <linux/capability.h>
#include <linux/landlock.h>
#include <pwd.h>
#include <sched.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
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
        "execve",
        "execveat",
        "fork",
        "vfork",
#if !defined(__SANITIZE_ADDRESS__)
        "ptrace",
#endif
        "process_vm_readv",
        "process_vm_writev",
        "mount",
        "umount2",
        "pivot_root",
        "chroot",
        "unshare",
        "setns",
        "init_module",
        "finit_module",
        "delete_module",
        "kexec_load",
        "kexec_file_load",
        "bpf",
        "perf_event_open",
        "keyctl",
        "add_key",
        "request_key",
        "swapon",
        "swapoff",
        "reboot",
        "setuid",
        "setgid",
        "setreuid",
        "setregid",
        "setresuid",
        "setresgid",
        "setgroups",
        "personality",
        "userfaultfd",
        "open_by_handle_at",
        "name_to_handle_at",
        "acct",
        "settimeofday",
        "clock_settime",
        "adjtimex",
        "clock_adjtime",
        "sethostname",
        "setdomainname",
        "iopl",
        "ioperm",
        "mount_setattr",
        "move_mount",
        "fsopen",
        "fsmount",
        "fspick",
        "open_tree",
        "setfsuid",
        "setfsgid",
        "capset",
        /* file metadata: Landlock (ABI <= 5) does not restrict mode,
         * owner or extended attributes of files the process may open */
        "chmod",
        "fchmod",
        "fchmodat",
        "fchmodat2",
        "chown",
        "fchown",
        "lchown",
        "fchownat",
        "chown32",
        "fchown32",
        "lchown32",
        "setxattr",
        "lsetxattr",
        "fsetxattr",
        "removexattr",
        "lremovexattr",
        "fremovexattr",
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

/* ------------------------------------------------------------ privileges */

static int capget_all(uint64_t *eff, uint64_t *prm, uint64_t *inh)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof(d));
    if (syscall(SYS_capget, &h, d) != 0)
        return -1;
    *eff = (uint64_t)d[1].effective << 32 | d[0].effective;
    *prm = (uint64_t)d[1].permitted << 32 | d[0].permitted;
    *inh = (uint64_t)d[1].inheritable << 32 | d[0].inheritable;
    return 0;
}

/* Capabilities belong to each thread, not to the process: a capset() or a
 * bounding-set drop in one thread leaves the others as they were. So every
 * thread that exists runs the drop itself, in a signal handler (what glibc
 * does for setuid(); the threads started later inherit the dropped sets
 * from the thread that starts them). Only raw system calls in the handler:
 * it is async-signal-safe. */
enum { DROP_BOUNDING = 1, DROP_ALL = 2 };
static atomic_int drop_mode, drop_done, drop_failed;

static void drop_this_thread(int mode)
{
    for (int cap = 0;; cap++) {
        int r = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
        if (r < 0)
            break;
        if (r == 1)
            (void)prctl(PR_CAPBSET_DROP, cap, 0, 0, 0); /* EPERM without CAP_SETPCAP */
    }
    (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    if (mode == DROP_ALL) {
        struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
        struct __user_cap_data_struct d[2];
        memset(d, 0, sizeof(d));
        if (syscall(SYS_capset, &h, d) != 0)
            atomic_fetch_add(&drop_failed, 1);
    }
}

static void drop_handler(int sig)
{
    (void)sig;
    int e = errno;
    drop_this_thread(atomic_load(&drop_mode));
    atomic_fetch_add(&drop_done, 1);
    errno = e;
}

/* Run drop_this_thread(mode) in every thread of the process. Returns how
 * many threads did not run it within 2 s (their signals blocked). */
static int drop_all_threads(int mode)
{
    atomic_store(&drop_mode, mode);
    atomic_store(&drop_done, 0);
    atomic_store(&drop_failed, 0);
    int sig = SIGRTMIN + 2;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = drop_handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, &old) != 0)
        return -1;
    pid_t self = (pid_t)syscall(SYS_gettid), pid = getpid();
    int sent = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        pid_t tid = (pid_t)atoi(de->d_name);
        if (tid <= 0 || tid == self)
            continue;
        if (syscall(SYS_tgkill, pid, tid, sig) == 0)
            sent++;
    }
    if (d)
        closedir(d);
    drop_this_thread(mode);
    for (int i = 0; i < 400 && atomic_load(&drop_done) < sent; i++) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    int missing = sent - atomic_load(&drop_done);
    sigaction(sig, &old, NULL);
    return missing;
}

/* Every thread: effective, permitted, inheritable, ambient and (when
 * want_bounding) bounding sets empty, read from /proc. Returns how many
 * threads still hold something; *threads counts them all. */
static int threads_holding(bool want_bounding, int *threads)
{
    int holding = 0;
    *threads = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char p[64], line[256];
        snprintf(p, sizeof(p), "/proc/self/task/%.20s/status", de->d_name);
        FILE *f = fopen(p, "re");
        if (!f)
            continue;
        (*threads)++;
        bool held = false;
        while (fgets(line, sizeof(line), f)) {
            unsigned long long v = 0;
            if ((sscanf(line, "CapEff: %llx", &v) == 1 || sscanf(line, "CapPrm: %llx", &v) == 1 ||
                 sscanf(line, "CapInh: %llx", &v) == 1 || sscanf(line, "CapAmb: %llx", &v) == 1 ||
                 (want_bounding && sscanf(line, "CapBnd: %llx", &v) == 1)) &&
                v != 0)
                held = true;
        }
        fclose(f);
        holding += held;
    }
    if (d)
        closedir(d);
    return holding;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
/* a sanitizer's own threads block every signal (tests only) */
#define CF_SANITIZER_THREADS 1
#else
#define CF_SANITIZER_THREADS 0
#endif

int confine_drop_privileges(const char *user, confine_result *res, char *err, size_t errlen)
{
    uid_t euid = geteuid();
    bool root = euid == 0;
    if (user && *user) {
        struct passwd *pw = getpwnam(user);
        if (!pw) {
            snprintf(err, errlen, "user: no user '%s' on this machine", user);
            return -1;
        }
        if (!root && euid != pw->pw_uid) {
            snprintf(err, errlen,
                     "user: running as uid %u, which is not '%s' (%u); only a daemon started as "
                     "root can switch",
                     (unsigned)euid, user, (unsigned)pw->pw_uid);
            return -1;
        }
        if (root) {
            uid_t uid = pw->pw_uid;
            gid_t gid = pw->pw_gid;
            /* glibc applies set*id() to every thread */
            if (initgroups(user, gid) != 0 || setresgid(gid, gid, gid) != 0) {
                snprintf(err, errlen, "user: cannot switch to the groups of '%s': %s", user,
                         strerror(errno));
                return -1;
            }
            /* the bounding sets, while CAP_SETPCAP is still ours */
            int missing = drop_all_threads(DROP_BOUNDING);
            if (missing < 0 || (missing > 0 && !CF_SANITIZER_THREADS)) {
                snprintf(err, errlen, "capabilities: %d thread(s) did not drop their bounding set",
                         missing);
                return -1;
            }
            if (setresuid(uid, uid, uid) != 0) {
                snprintf(err, errlen, "user: cannot switch to '%s' (uid %u): %s", user,
                         (unsigned)uid, strerror(errno));
                return -1;
            }
            /* no way back: check it */
            if (setresuid(0, 0, 0) == 0 || getuid() != uid || geteuid() != uid) {
                snprintf(err, errlen, "user: the switch to '%s' did not hold", user);
                return -1;
            }
            res->switched = true;
        }
    }
    /* whatever the identity, in every thread: no ambient, no bounding
     * (where we may: started as root), effective, permitted and
     * inheritable sets empty */
    int missing = drop_all_threads(DROP_ALL);
    if (missing < 0 || (missing > 0 && !CF_SANITIZER_THREADS) || atomic_load(&drop_failed)) {
        snprintf(err, errlen,
                 "capabilities: %d thread(s) did not drop theirs (capset failures: %d)", missing,
                 atomic_load(&drop_failed));
        return -1;
    }
    int threads = 0, holding = threads_holding(root, &threads);
    if (holding > (CF_SANITIZER_THREADS ? missing : 0)) {
        snprintf(err, errlen, "capabilities: %d of %d threads still hold some", holding, threads);
        return -1;
    }
    res->bounding_cleared = root;
    res->uid = (unsigned)geteuid();
    res->gid = (unsigned)getegid();
    res->root = res->uid == 0;
    return 0;
}

/* ------------------------------------------------------------ self-check */

/* From inside the filter: each metadata change and uid change must fail
 * with EPERM on a file this process made and owns (so nothing but the
 * filter could refuse it), and no capability may be left. */
static int self_check(const char *dir, confine_result *res, char *err, size_t errlen)
{
    char name[64];
    unsigned char r[8] = {0};
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
        memset(r, 0x5a, sizeof(r));
    snprintf(name, sizeof(name), ".cf-confine-check-%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1],
             r[2], r[3], r[4], r[5], r[6], r[7]);
    int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int fd =
        dfd < 0 ? -1 : openat(dfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen,
                 "self-check: cannot make a file in %s: %s (the folders left writable must be "
                 "writable by uid %u itself: it holds no capability now)",
                 dir, strerror(errno), (unsigned)geteuid());
        if (dfd >= 0)
            close(dfd);
        return -1;
    }
    struct {
        const char *name;
        int rc, e;
    } c[6];
    errno = 0;
    c[0].name = "chmod";
    c[0].rc = fchmodat(dfd, name, 0600, 0);
    c[0].e = errno;
    c[1].name = "fchmod";
    c[1].rc = fchmod(fd, 0600);
    c[1].e = errno;
    c[2].name = "fchown";
    c[2].rc = fchown(fd, (uid_t)-1, (gid_t)-1);
    c[2].e = errno;
    c[3].name = "lchown";
    c[3].rc = fchownat(dfd, name, (uid_t)-1, (gid_t)-1, AT_SYMLINK_NOFOLLOW);
    c[3].e = errno;
    c[4].name = "setxattr";
    c[4].rc = fsetxattr(fd, "user.certforge-check", "1", 1, 0);
    c[4].e = errno;
    c[5].name = "setuid";
    c[5].rc = setresuid((uid_t)-1, (uid_t)-1, (uid_t)-1);
    c[5].e = errno;
    close(fd);
    (void)unlinkat(dfd, name, 0);
    close(dfd);
    size_t o = 0;
    int rc = 0;
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        bool held = c[i].rc != 0 && c[i].e == EPERM;
        o += (size_t)snprintf(res->checks + o, sizeof(res->checks) - o, "%s%s=%s", i ? " " : "",
                              c[i].name,
                              held           ? "EPERM"
                              : c[i].rc == 0 ? "ALLOWED"
                                             : "other");
        if (!held && rc == 0) {
            snprintf(err, errlen, "self-check: %s was not refused inside the filter (%s)",
                     c[i].name, c[i].rc == 0 ? "it succeeded" : strerror(c[i].e));
            rc = -1;
        }
    }
    uint64_t eff = 1, prm = 1, inh = 1;
    bool none = capget_all(&eff, &prm, &inh) == 0 && !eff && !prm && !inh;
    snprintf(res->checks + o, sizeof(res->checks) - o, " caps=%s", none ? "none" : "HELD");
    if (!none && rc == 0) {
        snprintf(err, errlen, "self-check: capabilities still held (effective %llx)",
                 (unsigned long long)eff);
        rc = -1;
    }
    return rc;
}

int confine_apply(const char *const *writable, size_t n, bool require_landlock, const char *user,
                  confine_result *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof(*res));
    if (confine_drop_privileges(user, res, err, errlen) != 0)
        return -1;
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
    if (n > 0 && self_check(writable[0], res, err, errlen) != 0)
        return -1;
    return 0;
}

void confine_describe(const confine_result *r, const char *const *writable, size_t n, char *buf,
                      size_t cap)
{
    char list[2048] = "";
    size_t o = 0;
    for (size_t i = 0; i < n && o < sizeof(list) - 2; i++)
        o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s", i ? "," : "", writable[i]);
    bool q = strpbrk(list, " \"") != NULL || !list[0];
    snprintf(buf, cap,
             "no_new_privs=yes landlock_abi=%d seccomp=%s writable=%s%s%s uid=%u gid=%u caps=none "
             "bounding=%s checks=\"%s\"",
             r->landlock_abi, r->seccomp ? "yes" : "no", q ? "\"" : "", list, q ? "\"" : "", r->uid,
             r->gid, r->bounding_cleared ? "empty" : "kept", r->checks);
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

const char *confine_folder_of(const char *path, char *buf, size_t len)
{
    snprintf(buf, len, "%s", path);
    char *slash = strrchr(buf, '/');
    if (!slash)
        snprintf(buf, len, ".");
    else if (slash == buf)
        buf[1] = 0;
    else
        *slash = 0;
    return buf;
}
