/* Shared by the commands that talk to certforged (issue, status). */
#include "tools/certforge/cli_daemon.h"
#include "tools/certforge/cli.h"

#include <errno.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>

/* The protocol's field length is a u16 (docs/protocol.md, Limits). */
#define CSR_MAX 65535
/* A PEM file holding one CSR is far smaller; refuse anything absurd before
 * reading it into memory. */
#define CSR_FILE_MAX (1u << 20)

const char *cli_socket_path(const char *opt)
{
    if (opt && *opt)
        return opt;
    const char *e = getenv("CERTFORGE_SOCKET");
    return e && *e ? e : CLI_DEFAULT_SOCKET;
}

int cli_connect(const char *cmd, const char *socket_path, cf_client **out)
{
    char err[512];
    if (cf_client_connect(socket_path, out, err, sizeof(err)) == 0)
        return CLI_OK;
    return cli_fail("%s: cannot reach certforged: %s; start it with 'certforged --config FILE', "
                    "or point --socket (or CERTFORGE_SOCKET) at its socket",
                    cmd, err);
}

int cli_decode_csr(const uint8_t *data, size_t n, const char *what, uint8_t **der, size_t *len,
                   char *err, size_t errlen)
{
    int rc = -1;
    BIO *b = NULL;
    char *name = NULL, *header = NULL;
    unsigned char *body = NULL;
    long blen = 0;
    uint8_t *copy = NULL;
    const void *begin = n >= 11 ? memmem(data, n, "-----BEGIN ", 11) : NULL;
    if (begin) {
        const uint8_t *p = begin;
        b = BIO_new_mem_buf(p, (int)(n - (size_t)(p - data)));
        if (!b || !PEM_read_bio(b, &name, &header, &body, &blen)) {
            snprintf(err, errlen,
                     "%s: PEM block does not decode (broken base64 or missing END line)", what);
            goto out;
        }
        if (strcmp(name, "CERTIFICATE REQUEST") != 0 &&
            strcmp(name, "NEW CERTIFICATE REQUEST") != 0) {
            snprintf(err, errlen, "%s: PEM block is '%s', not a CERTIFICATE REQUEST", what, name);
            goto out;
        }
        data = body;
        n = (size_t)blen;
    } else if (n == 0 || data[0] != 0x30) {
        snprintf(err, errlen, "%s: neither a PEM CERTIFICATE REQUEST nor DER (a PKCS#10 CSR)",
                 what);
        goto out;
    }
    if (n == 0 || n > CSR_MAX) {
        snprintf(err, errlen, "%s: CSR of %zu octets (must be 1-%u)", what, n, CSR_MAX);
        goto out;
    }
    copy = malloc(n);
    if (!copy) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    memcpy(copy, data, n);
    *der = copy;
    *len = n;
    copy = NULL;
    rc = 0;
out:
    free(copy);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(body);
    BIO_free(b);
    return rc;
}

int cli_read_csr_file(const char *path, uint8_t **der, size_t *len, char *err, size_t errlen)
{
    int rc = -1;
    uint8_t *buf = NULL;
    size_t n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot read CSR %s: %s", path, strerror(errno));
        goto out;
    }
    buf = malloc(CSR_FILE_MAX + 1);
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    n = fread(buf, 1, CSR_FILE_MAX + 1, f);
    if (ferror(f)) {
        snprintf(err, errlen, "cannot read CSR %s: %s", path, strerror(errno));
        goto out;
    }
    if (n > CSR_FILE_MAX) {
        snprintf(err, errlen, "CSR %s: file larger than %u octets", path, CSR_FILE_MAX);
        goto out;
    }
    char what[1100];
    snprintf(what, sizeof(what), "CSR %s", path);
    rc = cli_decode_csr(buf, n, what, der, len, err, errlen);
out:
    free(buf);
    if (f)
        fclose(f);
    return rc;
}

int cli_mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    struct stat st;
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    if (mkdir(buf, 0755) == 0)
        return 0;
    if (errno == EEXIST && stat(buf, &st) == 0 && !S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return errno == EEXIST ? 0 : -1;
}

void cli_text_of(const cf_str *s, char *out, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; i < s->len && j + 1 < cap; i++) {
        unsigned char ch = (unsigned char)s->p[i];
        out[j++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
    }
    out[j] = 0;
}

int cli_answer(const char *cmd, const char *socket, cf_client *cl, int q, unsigned long timeout_s,
               const cf_response *r)
{
    if (q > 0)
        return cli_fail("%s: no answer from certforged at %s within %lu s", cmd, socket,
                        timeout_s);
    if (q < 0)
        return cli_fail("%s: certforged at %s: %s", cmd, socket, cf_client_error(cl));
    if (r->status == CF_ST_OK)
        return CLI_OK;
    char m[600];
    cli_text_of(&r->message, m, sizeof(m));
    return cli_fail("%s: certforged at %s answered %s: %s", cmd, socket, cf_status_name(r->status),
                    m[0] ? m : "(no message)");
}
