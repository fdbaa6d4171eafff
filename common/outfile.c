/* outfile.c — safe output files (outfile.h). */
#include "common/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* How many unpredictable temporary names to try before giving up: each
 * clash means someone planted that name, which 62^12 makes hopeless. */
#define TMP_TRIES 16

static const char *kind_of(mode_t m)
{
    if (S_ISLNK(m))
        return "a symbolic link";
    if (S_ISFIFO(m))
        return "a FIFO";
    if (S_ISCHR(m))
        return "a character device";
    if (S_ISBLK(m))
        return "a block device";
    if (S_ISSOCK(m))
        return "a socket";
    if (S_ISDIR(m))
        return "a folder";
    return "not a regular file";
}

/* Split path into its folder (opened into *dirfd) and last component. */
static int open_folder(const char *path, char *name, size_t namecap, int *dirfd, char *err,
                       size_t errlen)
{
    char dir[4096];
    *dirfd = -1;
    if (!path || !*path) {
        snprintf(err, errlen, "no output file name given");
        return -1;
    }
    if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir)) {
        snprintf(err, errlen, "%.200s...: path too long", path);
        return -1;
    }
    size_t l = strlen(dir);
    if (dir[l - 1] == '/') {
        snprintf(err, errlen, "%s: names a folder, not a file", path);
        return -1;
    }
    char *slash = strrchr(dir, '/');
    const char *base = slash ? slash + 1 : dir;
    if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
        snprintf(err, errlen, "%s: names a folder, not a file", path);
        return -1;
    }
    if (snprintf(name, namecap, "%s", base) >= (int)namecap) {
        snprintf(err, errlen, "%s: file name too long", path);
        return -1;
    }
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == dir)
        dir[1] = 0;
    else
        *slash = 0;
    /* O_RDONLY so the folder can be fsync()ed after the rename; a folder
     * we may write into but not list falls back to O_PATH (no fsync). */
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && errno == EACCES)
        fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open its folder %s: %s", path, dir, strerror(errno));
        return -1;
    }
    *dirfd = fd;
    return 0;
}

/* 0: absent or a regular file that may be replaced; -1 refused (err). */
static int check_target(int dirfd, const char *name, const char *path, unsigned flags, char *err,
                        size_t errlen)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen,
                 "%s exists and is %s; refusing to replace it (only regular files are written; "
                 "use '-' for standard output)",
                 path, kind_of(st.st_mode));
        return -1;
    }
    if (flags & CF_OUT_NOREPLACE) {
        snprintf(err, errlen, "%s already exists; not overwriting it (remove it or choose another)",
                 path);
        return -1;
    }
    return 0;
}

int cf_outfile_check(const char *path, unsigned flags, char *err, size_t errlen)
{
    if (path && strcmp(path, "-") == 0 && !(flags & CF_OUT_NOSTDOUT))
        return 0;
    char name[256];
    int dirfd = -1;
    if (open_folder(path, name, sizeof(name), &dirfd, err, errlen) != 0)
        return -1;
    int rc = check_target(dirfd, name, path, flags, err, errlen);
    close(dirfd);
    return rc;
}

static void random_tmp(char *tmp, size_t cap, const char *name)
{
    static const char al[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    unsigned char r[12];
    size_t got = 0;
    while (got < sizeof(r)) {
        ssize_t n = getrandom(r + got, sizeof(r) - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* cannot happen on Linux >= 3.17; O_EXCL still guards */
        got += (size_t)n;
    }
    char rnd[sizeof(r) + 1];
    for (size_t i = 0; i < sizeof(r); i++)
        rnd[i] = al[r[i] % (sizeof(al) - 1)];
    rnd[sizeof(r)] = 0;
    /* ".NAME.XXXXXXXXXXXX.tmp", NAME cut so the whole fits NAME_MAX */
    snprintf(tmp, cap, ".%.200s.%s.tmp", name, rnd);
}

int cf_outfile_open_tmp(cf_outfile *o, const char *path, mode_t mode, unsigned flags,
                        const char *first_tmp, char *err, size_t errlen)
{
    memset(o, 0, sizeof(*o));
    o->fd = -1;
    o->dirfd = -1;
    o->flags = flags;
    snprintf(o->path, sizeof(o->path), "%s", path ? path : "");
    if (path && strcmp(path, "-") == 0 && !(flags & CF_OUT_NOSTDOUT)) {
        o->to_stdout = true;
        o->f = stdout;
        return 0;
    }
    if (open_folder(path, o->name, sizeof(o->name), &o->dirfd, err, errlen) != 0 ||
        check_target(o->dirfd, o->name, path, flags, err, errlen) != 0)
        goto fail;
    for (int i = 0; i < TMP_TRIES; i++) {
        if (i == 0 && first_tmp)
            snprintf(o->tmp, sizeof(o->tmp), "%s", first_tmp);
        else
            random_tmp(o->tmp, sizeof(o->tmp), o->name);
        o->fd =
            openat(o->dirfd, o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (o->fd >= 0)
            break;
        if (errno != EEXIST) {
            snprintf(err, errlen, "%s: cannot create a temporary file beside it: %s", path,
                     strerror(errno));
            o->tmp[0] = 0;
            goto fail;
        }
    }
    if (o->fd < 0) {
        snprintf(err, errlen, "%s: no free temporary name beside it after %d tries", path,
                 TMP_TRIES);
        o->tmp[0] = 0;
        goto fail;
    }
    if (!(o->f = fdopen(o->fd, "w"))) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    return 0;
fail:
    cf_outfile_abort(o);
    return -1;
}

int cf_outfile_open(cf_outfile *o, const char *path, mode_t mode, unsigned flags, char *err,
                    size_t errlen)
{
    return cf_outfile_open_tmp(o, path, mode, flags, NULL, err, errlen);
}

void cf_outfile_abort(cf_outfile *o)
{
    if (o->to_stdout) {
        o->f = NULL;
        o->to_stdout = false;
        return;
    }
    if (o->f)
        fclose(o->f); /* closes fd */
    else if (o->fd >= 0)
        close(o->fd);
    o->f = NULL;
    o->fd = -1;
    if (o->tmp[0] && o->dirfd >= 0)
        unlinkat(o->dirfd, o->tmp, 0);
    o->tmp[0] = 0;
    if (o->dirfd >= 0)
        close(o->dirfd);
    o->dirfd = -1;
}

int cf_outfile_commit(cf_outfile *o, char *err, size_t errlen)
{
    if (o->to_stdout) {
        int rc = fflush(stdout) == 0 && !ferror(stdout) ? 0 : -1;
        if (rc)
            snprintf(err, errlen, "cannot write to standard output: %s", strerror(errno));
        o->f = NULL;
        o->to_stdout = false;
        return rc;
    }
    if (!o->f) {
        snprintf(err, errlen, "%s: not open", o->path);
        return -1;
    }
    bool ok = fflush(o->f) == 0 && !ferror(o->f);
    if (ok && !(o->flags & CF_OUT_NOSYNC))
        ok = fsync(o->fd) == 0;
    int e = errno;
    FILE *f = o->f;
    o->f = NULL;
    o->fd = -1;
    if (fclose(f) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (!ok) {
        snprintf(err, errlen, "cannot write %s: %s", o->path, strerror(e));
        goto fail;
    }
    /* again: the target may have changed since open */
    if (check_target(o->dirfd, o->name, o->path, o->flags, err, errlen) != 0)
        goto fail;
    if (o->flags & CF_OUT_NOREPLACE) {
        if (renameat2(o->dirfd, o->tmp, o->dirfd, o->name, RENAME_NOREPLACE) != 0) {
            e = errno;
            if (e == EINVAL || e == ENOSYS) {
                /* no RENAME_NOREPLACE on this file system: link() refuses an
                 * existing name just as atomically */
                if (linkat(o->dirfd, o->tmp, o->dirfd, o->name, 0) != 0) {
                    e = errno;
                    goto rename_failed;
                }
            } else {
                goto rename_failed;
            }
        } else {
            o->tmp[0] = 0;
        }
    } else if (renameat(o->dirfd, o->tmp, o->dirfd, o->name) != 0) {
        e = errno;
        goto rename_failed;
    } else {
        o->tmp[0] = 0;
    }
    if (!(o->flags & CF_OUT_NOSYNC))
        (void)fsync(o->dirfd); /* EBADF for an O_PATH folder: nothing more to do */
    cf_outfile_abort(o);       /* removes the temporary name left by linkat */
    return 0;
rename_failed:
    if (e == EEXIST)
        snprintf(err, errlen, "%s already exists; not overwriting it (remove it or choose another)",
                 o->path);
    else
        snprintf(err, errlen, "cannot create %s: %s", o->path, strerror(e));
fail:
    cf_outfile_abort(o);
    return -1;
}

int cf_write_file(const char *path, const void *data, size_t len, mode_t mode, unsigned flags,
                  char *err, size_t errlen)
{
    cf_outfile o;
    if (cf_outfile_open(&o, path, mode, flags, err, errlen) != 0)
        return -1;
    if (len && fwrite(data, 1, len, o.f) != len) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        cf_outfile_abort(&o);
        return -1;
    }
    return cf_outfile_commit(&o, err, errlen);
}
