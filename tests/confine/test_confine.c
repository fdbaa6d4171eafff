/* engine/confine on the real kernel: in a forked child, confine_apply()
 * with one writable folder, then every kind of access checked: writes,
 * creates, renames and removals only below that folder; reads anywhere;
 * no execve, no fork (threads still start); no chmod, chown or xattr
 * change even on the process's own file; no capability in any thread
 * (one started before included), the bounding set empty when started as
 * root; no_new_privs and a seccomp filter visible in /proc/self/status;
 * started as root with a user, running as that user afterwards. Landlock missing: those cases are
 * reported skipped, the seccomp ones still run. */
#include "engine/confine/confine.h"

#include "cf_test.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <sys/xattr.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static char DIR_[256], OK_DIR[300], RO_DIR[300];

static int suite_init(void)
{
    snprintf(DIR_, sizeof(DIR_), "%s/cf-confine-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(DIR_))
        return -1;
    snprintf(OK_DIR, sizeof(OK_DIR), "%s/rw", DIR_);
    snprintf(RO_DIR, sizeof(RO_DIR), "%s/ro", DIR_);
    if (mkdir(OK_DIR, 0700) || mkdir(RO_DIR, 0700))
        return -1;
    char p[400];
    snprintf(p, sizeof(p), "%s/existing", RO_DIR);
    FILE *f = fopen(p, "w");
    if (!f)
        return -1;
    fputs("read me\n", f);
    fclose(f);
    return 0;
}

static int suite_clean(void)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", DIR_);
    return system(cmd) == 0 ? 0 : -1;
}

static void *thread_fn(void *arg)
{
    return arg;
}

/* Result bits, one per expectation met. */
enum {
    R_WRITE_OK = 1 << 0,      /* create + write below the writable folder */
    R_RENAME_OK = 1 << 1,     /* rename within it */
    R_CREATE_DENIED = 1 << 2, /* create in the read-only folder: EACCES */
    R_WRITE_DENIED = 1 << 3,  /* open an existing file there for writing: EACCES */
    R_UNLINK_DENIED = 1 << 4,
    R_READ_OK = 1 << 5, /* read it */
    R_EXEC_DENIED = 1 << 6,
    R_FORK_DENIED = 1 << 7,
    R_THREAD_OK = 1 << 8,
    R_NNP = 1 << 9,           /* NoNewPrivs: 1 */
    R_SECCOMP = 1 << 10,      /* Seccomp: 2 */
    R_LANDLOCK = 1 << 11,     /* Landlock applied (abi > 0) */
    R_CHMOD_DENIED = 1 << 12, /* chmod/fchmod of a file the process owns: EPERM */
    R_CHOWN_DENIED = 1 << 13, /* chown/fchown/lchown (even to the same owner): EPERM */
    R_XATTR_DENIED = 1 << 14, /* setxattr/removexattr: EPERM */
    R_CAPS_NONE = 1 << 15,    /* CapEff, CapPrm, CapInh, CapAmb 0 in every thread */
    R_BOUNDING = 1 << 16,     /* CapBnd 0 in every thread (started as root), or not root */
    R_SELF_CHECK = 1 << 17,   /* confine_apply's own check ran and found each call refused */
    R_OLD_THREAD = 1 << 18,   /* a thread started before confine_apply holds no capability */
};

/* A thread started before confinement, parked until the checks are done:
 * capabilities are per thread, so it must have dropped its own too. */
static pthread_mutex_t park_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t park_cv = PTHREAD_COND_INITIALIZER;
static bool park_done;
static pid_t parked_tid;

static void *parked(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&park_mu);
    parked_tid = gettid();
    pthread_cond_broadcast(&park_cv);
    while (!park_done)
        pthread_cond_wait(&park_cv, &park_mu);
    pthread_mutex_unlock(&park_mu);
    return NULL;
}

/* Capability sets of one task (tid 0: every task of the process). */
static bool caps_zero(pid_t tid, bool bounding)
{
    char path[64];
    DIR *d = NULL;
    struct dirent *de = NULL;
    bool all = true;
    if (tid == 0 && !(d = opendir("/proc/self/task")))
        return false;
    for (;;) {
        if (d) {
            if (!(de = readdir(d)))
                break;
            if (de->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "/proc/self/task/%.20s/status", de->d_name);
        } else {
            snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
        }
        FILE *f = fopen(path, "r");
        char line[256];
        int seen = 0;
        while (f && fgets(line, sizeof(line), f)) {
            unsigned long long v;
            if ((sscanf(line, "CapEff: %llx", &v) == 1 || sscanf(line, "CapPrm: %llx", &v) == 1 ||
                 sscanf(line, "CapInh: %llx", &v) == 1 || sscanf(line, "CapAmb: %llx", &v) == 1 ||
                 (bounding && sscanf(line, "CapBnd: %llx", &v) == 1))) {
                seen++;
                all = all && v == 0;
            }
        }
        if (f)
            fclose(f);
        all = all && seen == (bounding ? 5 : 4);
        if (!d)
            break;
    }
    if (d)
        closedir(d);
    return all;
}

static int child(void)
{
    const char *w[1] = {OK_DIR};
    confine_result r;
    char err[300];
    pthread_t pt;
    if (pthread_create(&pt, NULL, parked, NULL) != 0)
        return 0;
    pthread_mutex_lock(&park_mu);
    while (!parked_tid)
        pthread_cond_wait(&park_cv, &park_mu);
    pthread_mutex_unlock(&park_mu);
    /* a file of ours to try metadata changes on, made before the filter */
    char own[400];
    snprintf(own, sizeof(own), "%s/own", OK_DIR);
    int ofd = open(own, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (ofd < 0 || confine_apply(w, 1, false, NULL, &r, err, sizeof(err)) != 0) {
        fprintf(stderr, "confine_apply: %s\n", err);
        return 0;
    }
    int bits = r.landlock_abi > 0 ? R_LANDLOCK : 0;
    /* each of these would succeed on one's own file without the filter */
    if (chmod(own, 0600) != 0 && errno == EPERM && fchmod(ofd, 0600) != 0 && errno == EPERM &&
        fchmodat(AT_FDCWD, own, 0644, 0) != 0 && errno == EPERM)
        bits |= R_CHMOD_DENIED;
    if (chown(own, (uid_t)-1, (gid_t)-1) != 0 && errno == EPERM &&
        fchown(ofd, getuid(), getgid()) != 0 && errno == EPERM &&
        lchown(own, (uid_t)-1, (gid_t)-1) != 0 && errno == EPERM)
        bits |= R_CHOWN_DENIED;
    if (fsetxattr(ofd, "user.cf", "1", 1, 0) != 0 && errno == EPERM &&
        setxattr(own, "user.cf", "1", 1, 0) != 0 && errno == EPERM &&
        removexattr(own, "user.cf") != 0 && errno == EPERM)
        bits |= R_XATTR_DENIED;
    close(ofd);
    if (caps_zero(0, false))
        bits |= R_CAPS_NONE;
    if (geteuid() != 0 || caps_zero(0, true))
        bits |= R_BOUNDING;
    if (caps_zero(parked_tid, geteuid() == 0))
        bits |= R_OLD_THREAD;
    if (strstr(r.checks, "chmod=EPERM fchmod=EPERM fchown=EPERM lchown=EPERM setxattr=EPERM "
                         "setuid=EPERM caps=none"))
        bits |= R_SELF_CHECK;
    else
        fprintf(stderr, "self-check: '%s'\n", r.checks);
    pthread_mutex_lock(&park_mu);
    park_done = true;
    pthread_cond_broadcast(&park_cv);
    pthread_mutex_unlock(&park_mu);
    pthread_join(pt, NULL);
    char p[400], q[400];
    snprintf(p, sizeof(p), "%s/new", OK_DIR);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0 && write(fd, "x", 1) == 1)
        bits |= R_WRITE_OK;
    if (fd >= 0)
        close(fd);
    snprintf(q, sizeof(q), "%s/renamed", OK_DIR);
    if (rename(p, q) == 0)
        bits |= R_RENAME_OK;
    snprintf(p, sizeof(p), "%s/new", RO_DIR);
    fd = open(p, O_WRONLY | O_CREAT, 0600);
    if (fd < 0 && errno == EACCES)
        bits |= R_CREATE_DENIED;
    if (fd >= 0)
        close(fd);
    snprintf(p, sizeof(p), "%s/existing", RO_DIR);
    fd = open(p, O_WRONLY);
    if (fd < 0 && errno == EACCES)
        bits |= R_WRITE_DENIED;
    if (fd >= 0)
        close(fd);
    if (unlink(p) != 0 && errno == EACCES)
        bits |= R_UNLINK_DENIED;
    char buf[16];
    fd = open(p, O_RDONLY);
    if (fd >= 0 && read(fd, buf, sizeof(buf)) > 0)
        bits |= R_READ_OK;
    if (fd >= 0)
        close(fd);
    char *const argv[] = {"true", NULL};
    if (execv("/bin/true", argv) != 0 && (errno == EPERM || errno == EACCES))
        bits |= R_EXEC_DENIED;
#if defined(__SANITIZE_ADDRESS__)
    bits |= R_FORK_DENIED; /* allowed in ASan builds (LeakSanitizer needs it) */
#else
    pid_t k = fork();
    if (k == 0)
        _exit(0);
    if (k < 0 && errno == EPERM)
        bits |= R_FORK_DENIED;
    if (k > 0)
        waitpid(k, NULL, 0);
#endif
    pthread_t th;
    if (pthread_create(&th, NULL, thread_fn, NULL) == 0 && pthread_join(th, NULL) == 0)
        bits |= R_THREAD_OK;
    FILE *st = fopen("/proc/self/status", "r");
    char line[256];
    while (st && fgets(line, sizeof(line), st)) {
        if (strncmp(line, "NoNewPrivs:\t1", 13) == 0)
            bits |= R_NNP;
        if (strncmp(line, "Seccomp:\t2", 10) == 0)
            bits |= R_SECCOMP;
    }
    if (st)
        fclose(st);
    return bits;
}

static void test_confine(void)
{
    int pfd[2];
    CU_ASSERT_EQUAL_FATAL(pipe(pfd), 0);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        int bits = child();
        ssize_t w = write(pfd[1], &bits, sizeof(bits));
        _exit(w == sizeof(bits) ? 0 : 1);
    }
    close(pfd[1]);
    int bits = 0;
    ssize_t n = read(pfd[0], &bits, sizeof(bits));
    close(pfd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    CU_ASSERT_EQUAL_FATAL(n, (ssize_t)sizeof(bits));
    CU_ASSERT(bits & R_NNP);
    CU_ASSERT(bits & R_SECCOMP);
    CU_ASSERT(bits & R_EXEC_DENIED);
    CU_ASSERT(bits & R_FORK_DENIED);
    CU_ASSERT(bits & R_THREAD_OK);
    CU_ASSERT(bits & R_WRITE_OK);
    CU_ASSERT(bits & R_RENAME_OK);
    CU_ASSERT(bits & R_READ_OK);
    CU_ASSERT(bits & R_CHMOD_DENIED);
    CU_ASSERT(bits & R_CHOWN_DENIED);
    CU_ASSERT(bits & R_XATTR_DENIED);
    CU_ASSERT(bits & R_CAPS_NONE);
    CU_ASSERT(bits & R_BOUNDING);
    CU_ASSERT(bits & R_OLD_THREAD);
    CU_ASSERT(bits & R_SELF_CHECK);
    if (!(bits & R_LANDLOCK)) {
        fprintf(stderr, "\n  no Landlock in this kernel: file-system cases skipped\n");
        return;
    }
    CU_ASSERT(bits & R_CREATE_DENIED);
    CU_ASSERT(bits & R_WRITE_DENIED);
    CU_ASSERT(bits & R_UNLINK_DENIED);
}

/* A writable folder that does not exist is an error naming it. */
static void test_missing_folder(void)
{
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        const char *w[1] = {"/nonexistent/certforge-folder"};
        confine_result r;
        char err[300];
        int rc = confine_apply(w, 1, false, NULL, &r, err, sizeof(err));
        _exit(rc == -1 && strstr(err, "/nonexistent/certforge-folder") &&
                      strstr(err, "No such file")
                  ? 0
                  : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Started as root with a user: the process (every thread) runs as that
 * user afterwards, with no capability and an empty bounding set, and
 * cannot switch back. Needs root and the user 'nobody'. */
static void test_user_switch(void)
{
    struct passwd *pw = getpwnam("nobody");
    if (geteuid() != 0 || !pw) {
        fprintf(stderr, "\n  not root, or no user 'nobody': the switch is not tried here\n");
        return;
    }
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/user", DIR_);
    CU_ASSERT_FATAL(mkdir(dir, 0700) == 0);
    /* the folder the self-check writes in is the user's; so must be the path to it */
    CU_ASSERT_FATAL(chown(dir, pw->pw_uid, pw->pw_gid) == 0);
    CU_ASSERT_FATAL(chmod(DIR_, 0711) == 0);
    int pfd[2];
    CU_ASSERT_FATAL(pipe(pfd) == 0);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        pthread_t pt;
        if (pthread_create(&pt, NULL, parked, NULL) != 0)
            _exit(1);
        pthread_mutex_lock(&park_mu);
        while (!parked_tid)
            pthread_cond_wait(&park_cv, &park_mu);
        pthread_mutex_unlock(&park_mu);
        const char *w[1] = {dir};
        confine_result r;
        char err[300];
        int res[6] = {0};
        if (confine_apply(w, 1, false, "nobody", &r, err, sizeof(err)) != 0) {
            fprintf(stderr, "confine_apply as nobody: %s\n", err);
        } else {
            res[0] = getuid() == pw->pw_uid && geteuid() == pw->pw_uid && getgid() == pw->pw_gid;
            res[1] = r.switched && r.uid == pw->pw_uid && !r.root;
            res[2] = caps_zero(0, true);
            res[3] = caps_zero(parked_tid, true);
            res[4] = setuid(0) != 0 && seteuid(0) != 0;
            res[5] = strstr(r.checks, "caps=none") != NULL;
        }
        pthread_mutex_lock(&park_mu);
        park_done = true;
        pthread_cond_broadcast(&park_cv);
        pthread_mutex_unlock(&park_mu);
        pthread_join(pt, NULL);
        ssize_t wr = write(pfd[1], res, sizeof(res));
        _exit(wr == sizeof(res) ? 0 : 1);
    }
    close(pfd[1]);
    int res[6] = {0};
    ssize_t n = read(pfd[0], res, sizeof(res));
    close(pfd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    CU_ASSERT_EQUAL_FATAL(n, (ssize_t)sizeof(res));
    CU_ASSERT(res[0]); /* uid and gid are nobody's */
    CU_ASSERT(res[1]);
    CU_ASSERT(res[2]); /* no capability, empty bounding set, every thread */
    CU_ASSERT(res[3]); /* including one started before */
    CU_ASSERT(res[4]); /* no way back to root */
    CU_ASSERT(res[5]);
}

/* A user that does not exist, and a non-root process asking for another
 * user, are refused before anything is confined. */
static void test_user_refused(void)
{
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        const char *w[1] = {OK_DIR};
        confine_result r;
        char err[300];
        int rc = confine_apply(w, 1, false, "no-such-user-cf", &r, err, sizeof(err));
        _exit(rc == -1 && strstr(err, "no-such-user-cf") ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The signer's confinement (confine_signer): an allow-list. Reading files
 * and threads work; a socket other than its channels, exec, fork and
 * writing a file anywhere fail. */
enum {
    S_READ_OK = 1 << 0,
    S_THREAD_OK = 1 << 1,
    S_SOCKET_DENIED = 1 << 2,
    S_EXEC_DENIED = 1 << 3,
    S_FORK_DENIED = 1 << 4,
    S_WRITE_DENIED = 1 << 5, /* Landlock: nothing writable */
    S_NNP_SECCOMP = 1 << 6,
    S_CHMOD_DENIED = 1 << 7,
};

static int signer_child(void)
{
    confine_result r;
    char err[300];
    if (confine_signer(false, &r, err, sizeof(err)) != 0) {
        fprintf(stderr, "confine_signer: %s\n", err);
        return 0;
    }
    int bits = 0;
    char p[400], buf[16];
    snprintf(p, sizeof(p), "%s/existing", RO_DIR);
    int fd = open(p, O_RDONLY);
    if (fd >= 0 && read(fd, buf, sizeof(buf)) > 0)
        bits |= S_READ_OK;
    if (fd >= 0)
        close(fd);
    pthread_t th;
    if (pthread_create(&th, NULL, thread_fn, NULL) == 0 && pthread_join(th, NULL) == 0)
        bits |= S_THREAD_OK;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0 && errno == EPERM)
        bits |= S_SOCKET_DENIED;
    if (s >= 0)
        close(s);
    char *const argv[] = {"true", NULL};
    if (execv("/bin/true", argv) != 0 && (errno == EPERM || errno == EACCES))
        bits |= S_EXEC_DENIED;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    bits |= S_FORK_DENIED; /* the sanitizer runtimes keep some process calls */
#else
    pid_t k = fork();
    if (k == 0)
        _exit(0);
    if (k < 0 && errno == EPERM)
        bits |= S_FORK_DENIED;
    if (k > 0)
        waitpid(k, NULL, 0);
#endif
    snprintf(p, sizeof(p), "%s/signer-new", OK_DIR);
    fd = open(p, O_WRONLY | O_CREAT, 0600);
    if (fd < 0 && (errno == EACCES || r.landlock_abi == 0))
        bits |= S_WRITE_DENIED;
    if (fd >= 0)
        close(fd);
    snprintf(p, sizeof(p), "%s/existing", RO_DIR);
    if (chmod(p, 0666) != 0 && errno == EPERM)
        bits |= S_CHMOD_DENIED;
    FILE *st = fopen("/proc/self/status", "r");
    char line[256];
    int both = 0;
    while (st && fgets(line, sizeof(line), st))
        both += strncmp(line, "NoNewPrivs:\t1", 13) == 0 || strncmp(line, "Seccomp:\t2", 10) == 0;
    if (st)
        fclose(st);
    if (both == 2)
        bits |= S_NNP_SECCOMP;
    return bits;
}

static void test_signer_allow_list(void)
{
    int pfd[2];
    CU_ASSERT_EQUAL_FATAL(pipe(pfd), 0);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        int bits = signer_child();
        ssize_t w = write(pfd[1], &bits, sizeof(bits));
        _exit(w == sizeof(bits) ? 0 : 1);
    }
    close(pfd[1]);
    int bits = 0;
    ssize_t n = read(pfd[0], &bits, sizeof(bits));
    close(pfd[0]);
    waitpid(pid, NULL, 0);
    CU_ASSERT_EQUAL_FATAL(n, (ssize_t)sizeof(bits));
    CU_ASSERT(bits & S_READ_OK);
    CU_ASSERT(bits & S_THREAD_OK);
    CU_ASSERT(bits & S_SOCKET_DENIED);
    CU_ASSERT(bits & S_EXEC_DENIED);
    CU_ASSERT(bits & S_FORK_DENIED);
    CU_ASSERT(bits & S_WRITE_DENIED);
    CU_ASSERT(bits & S_CHMOD_DENIED);
    CU_ASSERT(bits & S_NNP_SECCOMP);
}

int main(int argc, char **argv)
{
    static const cf_test tests[] = {
        {"Landlock and seccomp on the real kernel", test_confine},
        {"a missing writable folder is named", test_missing_folder},
        {"started as root: switch to a user, no capability left", test_user_switch},
        {"an unknown user is refused", test_user_refused},
        {"the signer's allow-list: sockets, exec, fork, chmod refused", test_signer_allow_list},
    };
    static const cf_suite suites[] = {CF_SUITE("engine/confine", suite_init, suite_clean, tests)};
    return CF_TEST_MAIN(argc, argv, suites);
}
