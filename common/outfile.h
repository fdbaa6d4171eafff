/* outfile.h — the one way a certforge program writes an output file.
 *
 * Every command that writes a file (certificates, CSRs, CRLs, public keys,
 * ledger exports, batch files, status files) goes through here, so that:
 *
 *   - a reader never sees half a file: the data goes to a fresh temporary
 *     file in the target's own folder, is fsync()ed, then renamed over the
 *     target (and the folder fsync()ed);
 *   - the temporary name is unpredictable and created with O_EXCL |
 *     O_NOFOLLOW: a name planted in advance (a symlink, a file) is never
 *     written through, another name is tried;
 *   - a target that exists and is not a regular file (a symlink — even one
 *     pointing at a regular file —, a FIFO, a device node, a socket, a
 *     folder) is refused with a message, never replaced or written into:
 *     `--out /dev/null` is refused rather than turning /dev/null into a
 *     file, and no symlink is followed at the final component;
 *   - CF_OUT_NOREPLACE refuses an existing target, atomically (the rename
 *     itself refuses, not only a check before it);
 *   - "-" means standard output.
 *
 * The file is created with `mode` (less the umask); 0600 unless the command
 * documents another. Plain libc: any program may use it.
 */
#ifndef CF_OUTFILE_H
#define CF_OUTFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "common/compiler.h"

enum {
    CF_OUT_NOREPLACE = 1u << 0, /* refuse a target that exists */
    CF_OUT_NOSYNC = 1u << 1,    /* no fsync (the caller syncs, e.g. once per batch) */
    CF_OUT_NOSTDOUT = 1u << 2,  /* "-" is a file name like any other, not standard output */
};

#define CF_OUT_TMP_MAX 300

typedef struct cf_outfile {
    FILE *f; /* write here (fwrite, fprintf, PEM_write_...); stdout for "-" */
    int fd;
    int dirfd;
    bool to_stdout;
    unsigned flags;
    char name[256];           /* the target's last component */
    char tmp[CF_OUT_TMP_MAX]; /* the temporary file's name in the same folder */
    char path[4096];          /* the target as given, for messages */
} cf_outfile;

/* Check the target without creating anything: refused when it exists and
 * is not a regular file, or (CF_OUT_NOREPLACE) when it exists at all, or
 * when its folder cannot be opened. For commands that should refuse before
 * doing expensive or irreversible work (an HSM signature, a ceremony). */
CF_WUR int cf_outfile_check(const char *path, unsigned flags, char *err, size_t errlen);

/* Open a temporary file beside `path` (see above). On failure err names
 * the path and the reason and nothing is left behind. */
CF_WUR int cf_outfile_open(cf_outfile *o, const char *path, mode_t mode, unsigned flags, char *err,
                           size_t errlen);

/* The same, trying `first_tmp` (a name in the target's folder) as the
 * first temporary name: the tests plant a symlink or a file there and
 * check that it is left alone. */
CF_WUR int cf_outfile_open_tmp(cf_outfile *o, const char *path, mode_t mode, unsigned flags,
                               const char *first_tmp, char *err, size_t errlen);

/* Flush, fsync, and rename the temporary file over the target (checked
 * again: still absent, or a regular file), then fsync the folder. On
 * failure the temporary file is removed and the target left as it was. */
CF_WUR int cf_outfile_commit(cf_outfile *o, char *err, size_t errlen);

/* Give up: close and remove the temporary file. Safe after a failed open
 * or commit, and twice. */
void cf_outfile_abort(cf_outfile *o);

/* open + write + commit of a buffer. */
CF_WUR int cf_write_file(const char *path, const void *data, size_t len, mode_t mode,
                         unsigned flags, char *err, size_t errlen);

#endif
