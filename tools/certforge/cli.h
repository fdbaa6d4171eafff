/* cli.h — what every certforge subcommand shares: exit statuses, one-line
 * errors, token selection, a small JSON writer, argument helpers. */
#ifndef CF_CLI_H
#define CF_CLI_H

#include "hsm/hsm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit statuses (documented in every --help). */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* A subcommand: argv[0] is its own name. Returns an exit status. */
typedef int (*cli_handler)(int argc, char **argv);

typedef struct cli_command {
    const char *name;
    cli_handler run;
    const char *help; /* one line for the top-level --help */
} cli_command;

/* Dispatch argv[1] among cmds (for commands with subcommands, e.g. keys).
 * `prog` is the command name used in messages ("keys"). */
int cli_dispatch(const char *prog, const cli_command *cmds, size_t n, const char *usage, int argc,
                 char **argv);

/* "certforge: <message>" on stderr, one line. Return CLI_FAIL / CLI_USAGE. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int cli_hsm_fail(const hsm_err *e);
/* "certforge: note: <message>" on stderr. */
void cli_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* An unknown option or missing argument seen by getopt_long (opterr = 0):
 * print the message naming `cmd` and its --help, return CLI_USAGE. */
int cli_bad_option(const char *cmd, int argc, char **argv);

/* --token, else $CERTFORGE_TOKEN, else NULL. */
const char *cli_token_uri(const char *opt);

/* Open the token for a key URI (the key URI's token attributes complete a
 * token URI that selects none; without any token URI the key URI itself
 * is used). Prints the error and returns an exit status. */
int cli_open_token_for_key(const char *token_opt, const char *key_uri, hsm_token **out);
/* Open the token the token URI selects (log in unless no_login). */
int cli_open_token(const char *token_opt, bool no_login, hsm_token **out);

/* Read a PIN (its first line) from a file only its owner may read: a
 * regular file, not a symlink, mode without group or other bits. On
 * failure prints one line naming the file and what to do, returns
 * CLI_FAIL; the caller wipes buf (OPENSSL_cleanse) after use. */
int cli_read_pin_file(const char *what, const char *path, char *buf, size_t cap, size_t *len);

/* Parse a non-negative decimal integer in [min, max]. */
bool cli_parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out);
/* Parse hex ("0a1b", optional "0x" and ':' separators) into at most cap
 * bytes. */
bool cli_parse_hex(const char *s, uint8_t *out, size_t cap, size_t *len);

/* --- output files (common/outfile.h) -------------------------------------- */

/* The cf_outfile flags of a command's output file: CF_OUT_NOREPLACE unless
 * --force, plus extra. */
unsigned cli_out_flags(bool force, unsigned extra);

/* Check an output file before the work that fills it (an HSM signature, a
 * request): without force an existing file is refused with "FILE exists;
 * use --force to replace it"; a target that is not a regular file always
 * is (cf_outfile_check). "-" passes unless extra has CF_OUT_NOSTDOUT.
 * Prints the error ("certforge: CMD: --out ...") and returns CLI_FAIL, or
 * CLI_OK. */
int cli_out_check(const char *cmd, const char *opt, const char *path, bool force, unsigned extra);

/* Print a cf_outfile_open/commit failure: a target that turned up since
 * the check (CF_OUT_NOREPLACE) gets the --force message. Returns CLI_FAIL. */
int cli_out_fail(const char *cmd, const char *path, const char *err);

/* Into buf: "FILE exists; use --force to replace it" when path names an
 * existing file and force is not given (true), else false. */
bool cli_out_exists(const char *path, bool force, char *buf, size_t cap);

/* --- JSON ------------------------------------------------------------------ */

/* A streaming writer: objects and arrays nest up to 16 deep; every value
 * inside an object takes a key, values inside arrays take key NULL.
 * Strings are escaped (quotes, backslashes, control characters; invalid
 * UTF-8 becomes U+FFFD). */
typedef struct cli_json {
    FILE *f;
    int depth;
    bool comma[16];
    bool line; /* all on one line (JSON lines) */
} cli_json;

void cj_init(cli_json *j, FILE *f);
/* The same writer for JSON lines: no newlines inside the value. */
void cj_init_line(cli_json *j, FILE *f);
void cj_obj(cli_json *j, const char *key);
void cj_end_obj(cli_json *j);
void cj_arr(cli_json *j, const char *key);
void cj_end_arr(cli_json *j);
void cj_str(cli_json *j, const char *key, const char *v); /* NULL: null */
void cj_int(cli_json *j, const char *key, long long v);
void cj_bool(cli_json *j, const char *key, bool v);
void cj_null(cli_json *j, const char *key);
/* After the outermost value: newline. */
void cj_done(cli_json *j);

#endif
