/* common/outfile: the safe output writer every command uses. Each case
 * plants what an attacker or a mistake would put at the target or the
 * temporary name (a symlink to a victim file, a FIFO, a device node, a
 * folder, a file at the first temporary name) and checks that the victim
 * is untouched, the planted thing is still what it was, and nothing but
 * the intended file is left in the folder. */
#include "common/outfile.h"

#include "cf_test.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static char DIR_[256];

static int suite_init(void)
{
    snprintf(DIR_, sizeof(DIR_), "%s/cf-outfile-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    return mkdtemp(DIR_) ? 0 : -1;
}

static int suite_clean(void)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", DIR_);
    return system(cmd) == 0 ? 0 : -1;
}

/* A fresh sub-folder per case. */
static void fresh(const char *name, char *dir, size_t cap)
{
    snprintf(dir, cap, "%s/%s", DIR_, name);
    CU_ASSERT_FATAL(mkdir(dir, 0700) == 0);
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs(text, f);
    fclose(f);
}

static bool has(const char *path, const char *text)
{
    char buf[256] = "";
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    return strcmp(buf, text) == 0;
}

static int entries(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static void test_new_and_replace(void)
{
    char d[300], p[400], err[512];
    fresh("plain", d, sizeof(d));
    snprintf(p, sizeof(p), "%s/out.pem", d);
    mode_t old = umask(022);
    CU_ASSERT_EQUAL(cf_write_file(p, "one\n", 4, 0644, 0, err, sizeof(err)), 0);
    umask(old);
    CU_ASSERT(has(p, "one\n"));
    struct stat st;
    CU_ASSERT_FATAL(stat(p, &st) == 0);
    CU_ASSERT_EQUAL(st.st_mode & 07777, 0644);
    /* a regular file is replaced (a new inode: a reader keeps the old one) */
    ino_t ino = st.st_ino;
    CU_ASSERT_EQUAL(cf_write_file(p, "two\n", 4, 0600, 0, err, sizeof(err)), 0);
    CU_ASSERT(has(p, "two\n"));
    CU_ASSERT_FATAL(stat(p, &st) == 0);
    CU_ASSERT_NOT_EQUAL(st.st_ino, ino);
    CU_ASSERT_EQUAL(st.st_mode & 07777, 0600);
    /* NOREPLACE refuses it, before and at the rename */
    CU_ASSERT_EQUAL(cf_write_file(p, "three\n", 6, 0600, CF_OUT_NOREPLACE, err, sizeof(err)), -1);
    CU_ASSERT(strstr(err, "already exists") != NULL);
    CU_ASSERT(has(p, "two\n"));
    cf_outfile o;
    char q[400];
    snprintf(q, sizeof(q), "%s/late.pem", d);
    CU_ASSERT_FATAL(cf_outfile_open(&o, q, 0600, CF_OUT_NOREPLACE, err, sizeof(err)) == 0);
    fputs("mine\n", o.f);
    put(q, "theirs\n"); /* appears between open and commit */
    CU_ASSERT_EQUAL(cf_outfile_commit(&o, err, sizeof(err)), -1);
    CU_ASSERT(has(q, "theirs\n"));
    CU_ASSERT_EQUAL(entries(d), 2); /* out.pem, late.pem: no temporary file left */
    /* abort leaves nothing */
    snprintf(q, sizeof(q), "%s/never.pem", d);
    CU_ASSERT_FATAL(cf_outfile_open(&o, q, 0600, 0, err, sizeof(err)) == 0);
    fputs("x", o.f);
    cf_outfile_abort(&o);
    cf_outfile_abort(&o);
    CU_ASSERT_EQUAL(access(q, F_OK), -1);
    CU_ASSERT_EQUAL(entries(d), 2);
}

static void test_symlink_target(void)
{
    char d[300], victim[400], link_[400], dangling[400], err[512];
    fresh("symlink", d, sizeof(d));
    snprintf(victim, sizeof(victim), "%s/victim", d);
    snprintf(link_, sizeof(link_), "%s/out.pem", d);
    snprintf(dangling, sizeof(dangling), "%s/dangling.pem", d);
    put(victim, "precious\n");
    CU_ASSERT_FATAL(symlink(victim, link_) == 0);
    CU_ASSERT_FATAL(symlink("/nonexistent/cf-outfile-target", dangling) == 0);
    CU_ASSERT_EQUAL(cf_outfile_check(link_, 0, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(cf_write_file(link_, "evil\n", 5, 0600, 0, err, sizeof(err)), -1);
    CU_ASSERT(strstr(err, "symbolic link") != NULL);
    CU_ASSERT_EQUAL(cf_write_file(dangling, "evil\n", 5, 0600, 0, err, sizeof(err)), -1);
    CU_ASSERT(has(victim, "precious\n"));
    struct stat st;
    CU_ASSERT(lstat(link_, &st) == 0 && S_ISLNK(st.st_mode));
    CU_ASSERT(lstat(dangling, &st) == 0 && S_ISLNK(st.st_mode));
    CU_ASSERT_EQUAL(entries(d), 3);
}

static void test_fifo_and_folder(void)
{
    char d[300], fifo[400], sub[400], err[512];
    fresh("fifo", d, sizeof(d));
    snprintf(fifo, sizeof(fifo), "%s/out.pem", d);
    snprintf(sub, sizeof(sub), "%s/sub", d);
    CU_ASSERT_FATAL(mkfifo(fifo, 0600) == 0);
    CU_ASSERT_FATAL(mkdir(sub, 0700) == 0);
    /* refused at once: nothing opens the FIFO (that would block) */
    CU_ASSERT_EQUAL(cf_write_file(fifo, "x\n", 2, 0600, 0, err, sizeof(err)), -1);
    CU_ASSERT(strstr(err, "a FIFO") != NULL);
    CU_ASSERT_EQUAL(cf_write_file(sub, "x\n", 2, 0600, 0, err, sizeof(err)), -1);
    CU_ASSERT(strstr(err, "a folder") != NULL);
    char slash[420];
    snprintf(slash, sizeof(slash), "%s/", sub);
    CU_ASSERT_EQUAL(cf_write_file(slash, "x\n", 2, 0600, 0, err, sizeof(err)), -1);
    struct stat st;
    CU_ASSERT(lstat(fifo, &st) == 0 && S_ISFIFO(st.st_mode));
    CU_ASSERT(lstat(sub, &st) == 0 && S_ISDIR(st.st_mode));
    CU_ASSERT_EQUAL(entries(d), 2);
    CU_ASSERT_EQUAL(entries(sub), 0);
}

static void test_device(void)
{
    char d[300], dev[400], err[512];
    fresh("device", d, sizeof(d));
    snprintf(dev, sizeof(dev), "%s/null", d);
    /* a copy of /dev/null's node (1,3); only root may make one, and a
     * nodev mount still lets us make it (opening it would fail) */
    if (mknod(dev, S_IFCHR | 0666, makedev(1, 3)) != 0) {
        fprintf(stderr, "  (cannot make a device node here: %s; /dev/null itself checked)\n",
                strerror(errno));
    } else {
        CU_ASSERT_EQUAL(cf_write_file(dev, "x\n", 2, 0600, 0, err, sizeof(err)), -1);
        CU_ASSERT(strstr(err, "character device") != NULL);
        struct stat st;
        CU_ASSERT(lstat(dev, &st) == 0 && S_ISCHR(st.st_mode));
        CU_ASSERT_EQUAL(entries(d), 1);
    }
    /* /dev/null itself: refused before anything is created in /dev */
    CU_ASSERT_EQUAL(cf_outfile_check("/dev/null", 0, err, sizeof(err)), -1);
    CU_ASSERT(strstr(err, "character device") != NULL);
}

static void test_planted_tmp(void)
{
    char d[300], victim[400], planted[400], file[400], p[400], err[512];
    fresh("planted", d, sizeof(d));
    snprintf(victim, sizeof(victim), "%s/victim", d);
    snprintf(planted, sizeof(planted), "%s/.out.pem.tmp", d);
    snprintf(file, sizeof(file), "%s/.out.pem.tmp2", d);
    snprintf(p, sizeof(p), "%s/out.pem", d);
    put(victim, "precious\n");
    put(file, "someone else's\n");
    CU_ASSERT_FATAL(symlink(victim, planted) == 0);
    /* the first temporary name tried is a planted symlink, then a planted
     * file: both left alone, another name used */
    const char *firsts[] = {".out.pem.tmp", ".out.pem.tmp2"};
    for (size_t i = 0; i < 2; i++) {
        cf_outfile o;
        CU_ASSERT_FATAL(cf_outfile_open_tmp(&o, p, 0600, 0, firsts[i], err, sizeof(err)) == 0);
        CU_ASSERT_STRING_NOT_EQUAL(o.tmp, firsts[i]);
        fputs("certificate\n", o.f);
        CU_ASSERT_EQUAL(cf_outfile_commit(&o, err, sizeof(err)), 0);
    }
    CU_ASSERT(has(p, "certificate\n"));
    CU_ASSERT(has(victim, "precious\n"));
    CU_ASSERT(has(file, "someone else's\n"));
    struct stat st;
    CU_ASSERT(lstat(planted, &st) == 0 && S_ISLNK(st.st_mode));
    CU_ASSERT_EQUAL(entries(d), 4);
    /* two opens of one target never share a temporary name */
    cf_outfile a, b;
    CU_ASSERT_FATAL(cf_outfile_open(&a, p, 0600, 0, err, sizeof(err)) == 0);
    CU_ASSERT_FATAL(cf_outfile_open(&b, p, 0600, 0, err, sizeof(err)) == 0);
    CU_ASSERT_STRING_NOT_EQUAL(a.tmp, b.tmp);
    cf_outfile_abort(&a);
    cf_outfile_abort(&b);
    CU_ASSERT_EQUAL(entries(d), 4);
}

static void test_stdout_and_bad_names(void)
{
    char err[512];
    cf_outfile o;
    CU_ASSERT_FATAL(cf_outfile_open(&o, "-", 0600, 0, err, sizeof(err)) == 0);
    CU_ASSERT(o.to_stdout && o.f == stdout);
    CU_ASSERT_EQUAL(cf_outfile_commit(&o, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(cf_write_file("", "x", 1, 0600, 0, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(cf_write_file("/nonexistent-cf-dir/x.pem", "x", 1, 0600, 0, err, sizeof(err)),
                    -1);
    CU_ASSERT(strstr(err, "cannot open its folder") != NULL);
    char p[400];
    snprintf(p, sizeof(p), "%s/..", DIR_);
    CU_ASSERT_EQUAL(cf_write_file(p, "x", 1, 0600, 0, err, sizeof(err)), -1);
    /* "-" as a plain name when standard output is not wanted */
    char d[300], cwd[4096];
    fresh("dash", d, sizeof(d));
    CU_ASSERT_FATAL(getcwd(cwd, sizeof(cwd)) != NULL);
    CU_ASSERT_FATAL(chdir(d) == 0);
    CU_ASSERT_EQUAL(cf_write_file("-", "dash\n", 5, 0600, CF_OUT_NOSTDOUT, err, sizeof(err)), 0);
    CU_ASSERT(has("-", "dash\n"));
    CU_ASSERT_FATAL(chdir(cwd) == 0);
}

static const cf_test tests[] = {
    {"new file, replace, NOREPLACE, abort", test_new_and_replace},
    {"symlink target refused", test_symlink_target},
    {"FIFO and folder targets refused", test_fifo_and_folder},
    {"device node target refused", test_device},
    {"planted temporary names left alone", test_planted_tmp},
    {"standard output and bad names", test_stdout_and_bad_names},
};
static const cf_suite suites[] = {CF_SUITE("outfile", suite_init, suite_clean, tests)};

int main(int argc, char **argv)
{
    return CF_TEST_MAIN(argc, argv, suites);
}
