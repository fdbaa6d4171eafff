/* cli_daemon.h — what the certforge commands that talk to certforged
 * (issue, status) share: which socket, connecting with a message that says
 * what to do, and reading a CSR file. */
#ifndef CF_CLI_DAEMON_H
#define CF_CLI_DAEMON_H

#include "client/certforge.h"
#include "common/compiler.h"

#include <stddef.h>
#include <stdint.h>

#define CLI_DEFAULT_SOCKET "/run/certforge/certforged.sock"

#define CLI_SOCKET_HELP                                                                            \
    "  --socket PATH   certforged's socket; default $CERTFORGE_SOCKET, then\n"                     \
    "                  " CLI_DEFAULT_SOCKET "\n"

/* --socket, else $CERTFORGE_SOCKET, else CLI_DEFAULT_SOCKET. */
const char *cli_socket_path(const char *opt);

/* Connect to certforged; on failure print one line naming the socket and
 * what to do, and return CLI_FAIL. `cmd` prefixes the message. */
int cli_connect(const char *cmd, const char *socket_path, cf_client **out);

/* Read a PKCS#10 CSR file: PEM ("CERTIFICATE REQUEST" or "NEW CERTIFICATE
 * REQUEST") or DER. Only the encoding is undone here: certforged judges the
 * CSR itself. On success *der is malloc'd. On failure err says why. */
CF_WUR int cli_read_csr_file(const char *path, uint8_t **der, size_t *len, char *err,
                             size_t errlen);
/* Same for PEM or DER already in memory (`what` names it in messages). */
CF_WUR int cli_decode_csr(const uint8_t *data, size_t n, const char *what, uint8_t **der,
                          size_t *len, char *err, size_t errlen);

/* After a blocking call (cf_client_status, cf_revoke_one, ...) that
 * returned q with answer r: CLI_OK when the daemon answered OK; otherwise
 * one line — no answer within timeout_s, the client's error, or the
 * daemon's status and message — and CLI_FAIL. */
int cli_answer(const char *cmd, const char *socket, cf_client *cl, int q, unsigned long timeout_s,
               const cf_response *r);

/* A daemon's text (not NUL-terminated, untrusted) as a printable C string:
 * control characters become '?', cut to fit cap. */
void cli_text_of(const cf_str *s, char *out, size_t cap);

/* mkdir -p with mode 0755 for the folders made; 0, or -1 with errno. */
int cli_mkdir_p(const char *path);

#endif
