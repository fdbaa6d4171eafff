/* Shared CLI plumbing: errors, token selection, JSON writer. */
#include "tools/certforge/cli.h"
#include "common/outfile.h"
#include "hsm/hsm_admin.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void vmsg(const char *prefix, const char *fmt, va_list ap)
{
    char buf[1024];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    /* One line, always: a message never spans lines in logs. */
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    fprintf(stderr, "certforge: %s%s\n", prefix, buf);
}

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg("", fmt, ap);
    va_end(ap);
    return CLI_FAIL;
}

int cli_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg("", fmt, ap);
    va_end(ap);
    return CLI_USAGE;
}

void cli_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg("note: ", fmt, ap);
    va_end(ap);
}

int cli_hsm_fail(const hsm_err *e)
{
    return cli_fail("%s", e->msg[0] ? e->msg : "PKCS#11 failure");
}

int cli_bad_option(const char *cmd, int argc, char **argv)
{
    const char *arg = optind > 0 && optind - 1 < argc ? argv[optind - 1] : "?";
    return cli_usage("%s: option '%s' is unknown or needs an argument; see 'certforge %s --help'",
                     cmd, arg, cmd);
}

int cli_dispatch(const char *prog, const cli_command *cmds, size_t n, const char *usage, int argc,
                 char **argv)
{
    if (argc < 2)
        return cli_usage("%s: which subcommand? see 'certforge %s --help'", prog, prog);
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        fputs(usage, stdout);
        return CLI_OK;
    }
    for (size_t i = 0; i < n; i++)
        if (strcmp(sub, cmds[i].name) == 0)
            return cmds[i].run(argc - 1, argv + 1);
    char list[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", cmds[i].name);
        if (w > 0 && used + (size_t)w < sizeof(list))
            used += (size_t)w;
    }
    return cli_usage("%s: unknown subcommand '%s' (one of: %s); see 'certforge %s --help'", prog,
                     sub, list, prog);
}

const char *cli_token_uri(const char *opt)
{
    if (opt && *opt)
        return opt;
    const char *e = getenv("CERTFORGE_TOKEN");
    return e && *e ? e : NULL;
}

static int open_uri(const char *uri, bool no_login, hsm_token **out)
{
    hsm_token_opts o = {.no_login = no_login ? 1 : 0};
    hsm_err e = {0};
    if (hsm_token_open(uri, &o, out, &e) != 0)
        return cli_hsm_fail(&e);
    return CLI_OK;
}

int cli_open_token(const char *token_opt, bool no_login, hsm_token **out)
{
    *out = NULL;
    const char *uri = cli_token_uri(token_opt);
    if (!uri)
        return cli_usage("no token given: use --token URI or set CERTFORGE_TOKEN (e.g. "
                         "pkcs11:token=CA?module-path=/usr/lib/softhsm/libsofthsm2.so&"
                         "pin-source=file:/etc/certforge/pin)");
    return open_uri(uri, no_login, out);
}

int cli_open_token_for_key(const char *token_opt, const char *key_uri, hsm_token **out)
{
    *out = NULL;
    hsm_err e = {0};
    char *uri = NULL;
    const char *tu = cli_token_uri(token_opt);
    if (!tu && strchr(key_uri, '?') == NULL && !getenv("CERTFORGE_PIN"))
        return cli_usage("no token given: use --token URI or set CERTFORGE_TOKEN (the key URI "
                         "%s carries no module-path or pin-source)",
                         key_uri);
    if (hsm_uri_token_for_key(tu, key_uri, &uri, &e) != 0)
        return cli_hsm_fail(&e);
    int rc = open_uri(uri, false, out);
    free(uri);
    return rc;
}

int cli_read_pin_file(const char *what, const char *path, char *buf, size_t cap, size_t *len)
{
    *len = 0;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return cli_fail("%s %s: %s%s", what, path, strerror(errno),
                        errno == ELOOP ? " (a symlink: name the file itself)" : "");
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return cli_fail("%s %s is not a regular file", what, path);
    }
    if (st.st_mode & 077) {
        close(fd);
        return cli_fail("%s %s can be read by others (mode %03o): chmod 600 it", what, path,
                        (unsigned)(st.st_mode & 0777));
    }
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0)
        return cli_fail("%s %s: %s", what, path, strerror(errno));
    size_t l = 0;
    while (l < (size_t)n && buf[l] != '\n' && buf[l] != '\r')
        l++;
    buf[l] = 0;
    if (l == 0)
        return cli_fail("%s %s is empty", what, path);
    if ((size_t)n == cap - 1 && l == (size_t)n)
        return cli_fail("%s %s: longer than %zu characters", what, path, cap - 2);
    *len = l;
    return CLI_OK;
}

bool cli_parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
    if (!s || !isdigit((unsigned char)*s))
        return false;
    errno = 0;
    char *end = NULL;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

bool cli_parse_hex(const char *s, uint8_t *out, size_t cap, size_t *len)
{
    size_t n = 0;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        s += 2;
    while (*s) {
        if (*s == ':') {
            s++;
            continue;
        }
        int hi = hexval((unsigned char)s[0]);
        int lo = s[1] ? hexval((unsigned char)s[1]) : -1;
        if (hi < 0 || lo < 0 || n == cap)
            return false;
        out[n++] = (uint8_t)(hi << 4 | lo);
        s += 2;
    }
    *len = n;
    return n > 0;
}

/* --- output files ------------------------------------------------------------ */

unsigned cli_out_flags(bool force, unsigned extra)
{
    return (force ? 0u : (unsigned)CF_OUT_NOREPLACE) | extra;
}

bool cli_out_exists(const char *path, bool force, char *buf, size_t cap)
{
    struct stat st;
    if (force || !path || lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    snprintf(buf, cap, "%s exists; use --force to replace it", path);
    return true;
}

int cli_out_check(const char *cmd, const char *opt, const char *path, bool force, unsigned extra)
{
    char err[4400];
    if (strcmp(path, "-") == 0 && !(extra & CF_OUT_NOSTDOUT))
        return CLI_OK;
    if (cli_out_exists(path, force, err, sizeof(err)))
        return cli_fail("%s", err);
    if (cf_outfile_check(path, cli_out_flags(force, extra), err, sizeof(err)) != 0)
        return cli_fail("%s: %s %s", cmd, opt, err);
    return CLI_OK;
}

int cli_out_fail(const char *cmd, const char *path, const char *err)
{
    if (strstr(err, "already exists; not overwriting"))
        return cli_fail("%s exists; use --force to replace it", path);
    return cli_fail("%s: %s", cmd, err);
}

/* --- JSON ------------------------------------------------------------------- */

void cj_init(cli_json *j, FILE *f)
{
    memset(j, 0, sizeof(*j));
    j->f = f;
}

void cj_init_line(cli_json *j, FILE *f)
{
    cj_init(j, f);
    j->line = true;
}

static void indent(cli_json *j)
{
    if (j->line) {
        fputc(' ', j->f);
        return;
    }
    fputc('\n', j->f);
    for (int i = 0; i < j->depth; i++)
        fputs("  ", j->f);
}

/* Length of the valid UTF-8 sequence at p (0 if invalid). */
static size_t utf8_len(const unsigned char *p)
{
    unsigned char c = p[0];
    size_t n;
    unsigned cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

static void put_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
            p++;
        } else if (c < 0x20 || c == 0x7f) {
            switch (c) {
            case '\n':
                fputs("\\n", f);
                break;
            case '\t':
                fputs("\\t", f);
                break;
            case '\r':
                fputs("\\r", f);
                break;
            default:
                fprintf(f, "\\u%04x", c);
            }
            p++;
        } else {
            size_t n = utf8_len(p);
            if (n == 0) {
                fputs("\\ufffd", f);
                p++;
            } else {
                fwrite(p, 1, n, f);
                p += n;
            }
        }
    }
    fputc('"', f);
}

static void value_start(cli_json *j, const char *key)
{
    if (j->depth > 0) {
        if (j->comma[j->depth])
            fputc(',', j->f);
        j->comma[j->depth] = true;
        indent(j);
    }
    if (key) {
        put_string(j->f, key);
        fputs(": ", j->f);
    }
}

static void open_(cli_json *j, const char *key, char c)
{
    value_start(j, key);
    fputc(c, j->f);
    if (j->depth < 15)
        j->depth++;
    j->comma[j->depth] = false;
}

static void close_(cli_json *j, char c)
{
    bool any = j->comma[j->depth];
    if (j->depth > 0)
        j->depth--;
    if (any)
        indent(j);
    fputc(c, j->f);
}

void cj_obj(cli_json *j, const char *key)
{
    open_(j, key, '{');
}
void cj_end_obj(cli_json *j)
{
    close_(j, '}');
}
void cj_arr(cli_json *j, const char *key)
{
    open_(j, key, '[');
}
void cj_end_arr(cli_json *j)
{
    close_(j, ']');
}
void cj_str(cli_json *j, const char *key, const char *v)
{
    value_start(j, key);
    if (v)
        put_string(j->f, v);
    else
        fputs("null", j->f);
}
void cj_int(cli_json *j, const char *key, long long v)
{
    value_start(j, key);
    fprintf(j->f, "%lld", v);
}
void cj_bool(cli_json *j, const char *key, bool v)
{
    value_start(j, key);
    fputs(v ? "true" : "false", j->f);
}
void cj_null(cli_json *j, const char *key)
{
    value_start(j, key);
    fputs("null", j->f);
}
void cj_done(cli_json *j)
{
    fputc('\n', j->f);
    fflush(j->f);
}
