/* certforge issue — one CSR, or a batch of JSON lines pipelined through
 * libcertforge to certforged (many requests in flight on one connection,
 * answers matched by id), with a progress line on a terminal. */
#include "common/duration.h"
#include "common/outfile.h"
#include "common/serial.h"
#include "tools/certforge/ca_x509.h"
#include "tools/certforge/cli.h"
#include "tools/certforge/cli_daemon.h"
#include "tools/certforge/commands.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

static const char issue_help[] =
    "usage: certforge issue --csr FILE --profile NAME [IDENTIFIERS] [--out FILE [--force]]\n"
    "                       [--chain] [--json]\n"
    "       certforge issue --batch FILE [--out-dir DIR [--force]] [--results FILE]\n"
    "                       [--profile NAME] [--chain]\n"
    "\n"
    "Asks certforged to issue certificates. The certificate carries exactly the\n"
    "identifiers given here (the ones the front end has validated), as the profile\n"
    "allows; every SAN the CSR asks for must be among them. Nothing of the CSR but\n"
    "its public key is copied.\n"
    "\n"
    "One CSR:\n"
    "  --csr FILE              PKCS#10 CSR, PEM or DER\n"
    "  --nf-instance-id UUID   NF instance ID (SAN URI urn:uuid:UUID)\n"
    "  --dns NAME              a DNS name for the SAN (repeat, up to 64)\n"
    "  --nf-type TYPE          an NFType, e.g. AMF (repeat, up to 16)\n"
    "  --out FILE              where the PEM certificate goes (default: standard output);\n"
    "                          an existing FILE is refused unless --force\n"
    "  --json                  print one JSON object on standard output instead of the\n"
    "                          line: serial (hex), not_before, not_after (ISO 8601 UTC),\n"
    "                          profile, subject, issuer, out (null without --out) and,\n"
    "                          without --out, certificate (the PEM, with --chain the\n"
    "                          chain after it)\n"
    "\n"
    "Many CSRs (pipelined: up to --inflight requests on the wire at once):\n"
    "  --batch FILE            JSON lines, one request per line ('-': standard input):\n"
    "                            {\"csr\": \"PEM text, or a path relative to FILE's folder\",\n"
    "                             \"profile\": \"nf\", \"nf_instance_id\": \"UUID\",\n"
    "                             \"dns\": [\"amf1.example\"], \"nf_types\": [\"AMF\"],\n"
    "                             \"validity\": \"90d\", \"requester\": \"acme1\",\n"
    "                             \"out\": \"amf1.pem\", \"chain\": true, \"id\": \"amf1\"}\n"
    "                          only \"csr\" is required (\"profile\" unless --profile is\n"
    "                          given); \"id\" (a string or an integer) is only echoed\n"
    "                          in --results; unknown keys are refused; blank lines\n"
    "                          skipped\n"
    "  --out-dir DIR           folder for the certificates (created; default .); a\n"
    "                          line's \"out\" is taken relative to it (default cert-LINE.pem)\n"
    "  --force                 replace existing files (--out, a batch line's file in\n"
    "                          --out-dir, --results): without it an existing file\n"
    "                          is refused (one CSR: before certforged is asked; a\n"
    "                          batch line: that line fails FILE_EXISTS, not sent)\n"
    "  --results FILE          one JSON line per request, in completion order (not\n"
    "                          input order: match them by \"line\"): {\"line\": N,\n"
    "                          \"id\": the line's \"id\" (string or integer; absent\n"
    "                          when the line has none), \"status\": \"issued\" or the\n"
    "                          failure's name (as in the summary), \"serial\" and\n"
    "                          \"not_after\" (null unless issued), \"path\", \"message\"\n"
    "                          (null when issued)}; '-' is standard output (the\n"
    "                          summary then goes to standard error); an existing FILE\n"
    "                          is refused unless --force\n"
    "  --inflight N            requests in flight at once (default 128, 1-65536)\n"
    "  --no-progress           no progress line (it is shown only on a terminal anyway)\n"
    "\n"
    "Both (in a batch, the defaults for lines that do not say):\n"
    "  --profile NAME          profile to issue under, e.g. nf\n"
    "  --validity DURATION     e.g. 90d, 12h, 1d12h (default: the profile's)\n"
    "  --requester TAG         the front end's tag, recorded in the ledger\n"
    "  --chain                 append the issuer chain to each PEM file\n"
    "  --timeout SECONDS       how long to wait for an answer (default 60)\n" CLI_SOCKET_HELP
    "  --help                  this text\n"
    "\n"
    "A batch prints a summary on standard output when done: certificates issued,\n"
    "failures by status (BAD_CSR, POLICY_DENIED, UNKNOWN_PROFILE, UNAUTHORIZED, ...;\n"
    "INVALID_REQUEST for a line that could not be sent, NO_ANSWER when the\n"
    "connection was lost, FILE_EXISTS when the line's file exists and --force is not\n"
    "given, OUTPUT_ERROR when the file could not be written) and the rate (on\n"
    "standard error when --results is '-'). Requests answered BUSY are sent again\n"
    "(up to 50 times each); when certforged refuses the connection itself (BUSY:\n"
    "too many connections) the client connects again after a pause (100 ms,\n"
    "doubling up to 2 s; 20 refusals in a row fail the requests as BUSY), for one\n"
    "CSR as for a batch.\n"
    "\n"
    "Files are written through a temporary file in the same folder, then renamed:\n"
    "an existing regular file is refused, or replaced with --force; a target that\n"
    "is a symlink, FIFO, device or folder is refused ('-' is standard output).\n"
    "Certificates are written with mode 0644; a batch's files are synced to disk\n"
    "once, at the end.\n"
    "\n"
    "EXAMPLES\n"
    "  certforge issue --socket /run/certforge/certforged.sock --csr amf1.csr --profile nf \\\n"
    "      --nf-instance-id 6f1c2a6e-8c0e-4e0b-9a7e-2f1d3c4b5a69 \\\n"
    "      --dns amf1.5gc.mnc001.mcc001.3gppnetwork.org --nf-type AMF --validity 30d \\\n"
    "      --requester acme1 --out amf1.pem --chain\n"
    "  certforge csr-gen --count 1000 --out-dir csrs --batch-out batch.jsonl\n"
    "  certforge issue --batch batch.jsonl --out-dir certs --profile nf\n"
    "\n"
    "EXIT STATUS\n"
    "  0  every certificate issued and written\n"
    "  1  some failed (one line each on stderr: line number, status, message), or\n"
    "     certforged could not be reached, or an input file could not be read\n"
    "  2  usage error: unknown option, missing or invalid argument\n";

enum {
    OPT_SOCKET = 256,
    OPT_CSR,
    OPT_PROFILE,
    OPT_NFID,
    OPT_DNS,
    OPT_NFTYPE,
    OPT_VALIDITY,
    OPT_REQUESTER,
    OPT_OUT,
    OPT_CHAIN,
    OPT_BATCH,
    OPT_OUTDIR,
    OPT_INFLIGHT,
    OPT_TIMEOUT,
    OPT_NO_PROGRESS,
    OPT_FORCE,
    OPT_JSON,
    OPT_RESULTS,
    OPT_HELP
};

/* Failure categories beyond the wire statuses. */
enum {
    FAIL_LOCAL = CF_ST__MAX, /* the line could not be turned into a request */
    FAIL_NO_ANSWER,          /* the connection was lost before the answer */
    FAIL_OUTPUT,             /* issued, but the file could not be written */
    FAIL_EXISTS,             /* the line's file exists (no --force): not sent */
    FAIL_OTHER,              /* a status this client does not know */
    FAIL__N
};

#define BUSY_RETRIES 50
#define CONN_RETRIES 20 /* connection refusals in a row (max_connections) */

static const char *fail_name(unsigned i)
{
    if (i < CF_ST__MAX)
        return cf_status_name((cf_status)i);
    switch (i) {
    case FAIL_LOCAL:
        return "INVALID_REQUEST";
    case FAIL_NO_ANSWER:
        return "NO_ANSWER";
    case FAIL_OUTPUT:
        return "OUTPUT_ERROR";
    case FAIL_EXISTS:
        return "FILE_EXISTS";
    default:
        return "UNKNOWN_STATUS";
    }
}

/* One request, from its line until its answer. In a batch the strings of
 * req point into doc (the line's parsed JSON); for a single CSR, into argv. */
typedef struct job {
    bool used;
    size_t line; /* 1-based; 0: the single CSR of the command line */
    uint64_t id;
    unsigned busy;    /* BUSY answers so far */
    uint64_t seq;     /* x->submits when it was sent */
    struct job *next; /* in its id bucket while in flight */
    bool sent;        /* in flight */
    json_t *doc;
    uint8_t *csr;
    cf_issue_req req;
    char *out;
    bool chain;
} job;

typedef struct issue_ctx {
    /* options */
    const char *socket, *profile, *requester, *out, *out_dir, *batch, *results;
    cf_outfile rf; /* --results */
    bool rf_open, rf_stdout;
    cli_json rj;
    uint32_t validity;
    bool chain, progress, force, json;
    int timeout_ms;
    unsigned window, max_window;
    uint64_t submits, cut; /* requests sent; x->submits at the last window cut */
    /* batch input */
    FILE *bf;
    char base_dir[PATH_MAX];
    char *line;
    size_t line_cap, lineno, total;
    bool eof;
    /* requests */
    cf_client *c;
    job *jobs;
    size_t njobs, inflight;
    job **free_jobs; /* stack of unused slots */
    size_t nfree;
    job **bucket; /* in-flight jobs by id: nbucket (a power of two) chains */
    size_t nbucket;
    job **retry; /* stack of jobs to send (again) */
    size_t nretry;
    bool fatal;
    unsigned refusals; /* connection refusals in a row */
    bool refused_out;  /* gave up after CONN_RETRIES refusals */
    /* outcome */
    size_t issued, failed, unsent;
    size_t by[FAIL__N];
    double t0, t_end, last_draw;
    bool drawn;
} issue_ctx;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- progress and messages ----------------------------------------------------- */

static void progress_clear(issue_ctx *x)
{
    if (x->drawn) {
        fputs("\r\033[K", stderr);
        x->drawn = false;
    }
}

static void progress_draw(issue_ctx *x, bool final)
{
    if (!x->progress)
        return;
    double now = now_s();
    if (!final && now - x->last_draw < 0.1)
        return;
    x->last_draw = now;
    size_t done = x->issued + x->failed;
    double el = now - x->t0;
    double rate = el > 0 ? (double)x->issued / el : 0;
    char bar[33];
    size_t w = sizeof(bar) - 1, fill = x->total ? (done * w) / x->total : 0;
    if (fill > w)
        fill = w;
    memset(bar, '#', fill);
    memset(bar + fill, '.', w - fill);
    bar[w] = 0;
    if (x->total)
        fprintf(stderr, "\r\033[K[%s] %zu/%zu  issued %zu  failed %zu  %.0f/s", bar, done, x->total,
                x->issued, x->failed, rate);
    else
        fprintf(stderr, "\r\033[K%zu done  issued %zu  failed %zu  %.0f/s", done, x->issued,
                x->failed, rate);
    x->drawn = true;
    if (final) {
        fputc('\n', stderr);
        x->drawn = false;
    }
    fflush(stderr);
}

/* Daemon text is untrusted: keep it on one line, printable. */
static void sanitize(const char *p, size_t n, char *out, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; i < n && j + 1 < cap; i++) {
        unsigned char ch = (unsigned char)p[i];
        out[j++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
    }
    out[j] = 0;
}

/* One --results line (JSON lines, completion order). */
static void result_line(issue_ctx *x, size_t line, const json_t *doc, const char *status,
                        const char *serial, const char *not_after, const char *path,
                        const char *msg)
{
    if (!x->rf_open || !line)
        return;
    cli_json *rj = &x->rj;
    cj_init_line(rj, x->rf.f);
    cj_obj(rj, NULL);
    cj_int(rj, "line", (long long)line);
    const json_t *id = json_is_object(doc) ? json_object_get(doc, "id") : NULL;
    if (json_is_string(id))
        cj_str(rj, "id", json_string_value(id));
    else if (json_is_integer(id))
        cj_int(rj, "id", (long long)json_integer_value(id));
    cj_str(rj, "status", status);
    cj_str(rj, "serial", serial);
    cj_str(rj, "not_after", not_after);
    cj_str(rj, "path", path);
    cj_str(rj, "message", msg);
    cj_end_obj(rj);
    fputc('\n', x->rf.f);
}

static void job_fail(issue_ctx *x, const job *j, unsigned cat, const char *msg)
{
    result_line(x, j->line, j->doc, fail_name(cat), NULL, NULL, j->out, msg);
    x->failed++;
    x->by[cat < FAIL__N ? cat : FAIL_OTHER]++;
    progress_clear(x);
    if (j->line)
        cli_fail("issue: line %zu: %s: %s", j->line, fail_name(cat), msg);
    else
        cli_fail("issue: %s: %s", fail_name(cat), msg);
}

static void job_free(job *j)
{
    json_decref(j->doc);
    free(j->csr);
    free(j->out);
    memset(j, 0, sizeof(*j));
}

/* --- output ------------------------------------------------------------------------ */

/* Through the safe writer (common/outfile.h): a temporary file beside the
 * target, renamed over it; a target that is not a regular file (a device,
 * a FIFO, a symlink) is refused. Certificates are public: mode 0644. In a
 * batch each file is synced once at the end (sync), not one by one. */
static int write_pem(const char *path, const cf_response *r, bool chain, bool sync, bool force,
                     char *err, size_t errlen)
{
    cf_outfile o;
    if (cf_outfile_open(&o, path, 0644, cli_out_flags(force, sync ? 0 : CF_OUT_NOSYNC), err,
                        errlen) != 0)
        goto fail;
    BIO *b = BIO_new_fp(o.f, BIO_NOCLOSE);
    bool ok = b && PEM_write_bio(b, "CERTIFICATE", "", r->cert.p, (long)r->cert.len) > 0;
    for (unsigned i = 0; ok && chain && i < r->n_chain; i++)
        ok = PEM_write_bio(b, "CERTIFICATE", "", r->chain[i].p, (long)r->chain[i].len) > 0;
    ok = ok && BIO_flush(b) == 1;
    BIO_free(b);
    if (!ok) {
        snprintf(err, errlen, "cannot write %s: %s", o.to_stdout ? "standard output" : path,
                 strerror(errno));
        cf_outfile_abort(&o);
        return -1;
    }
    if (cf_outfile_commit(&o, err, errlen) == 0)
        return 0;
fail:
    /* a file that turned up since the check (two lines naming one file) */
    if (strstr(err, "already exists; not overwriting"))
        snprintf(err, errlen, "%s exists; use --force to replace it", path);
    return -1;
}

/* --- batch lines ------------------------------------------------------------------- */

static int json_text(json_t *v, const char *key, cf_str *out, char *err, size_t errlen)
{
    if (!json_is_string(v) || json_string_length(v) == 0) {
        snprintf(err, errlen, "\"%s\" must be a non-empty string", key);
        return -1;
    }
    *out = (cf_str){json_string_value(v), json_string_length(v)};
    return 0;
}

/* A string or an array of strings, at most max. */
static int json_texts(json_t *v, const char *key, cf_str *out, unsigned max, unsigned *n, char *err,
                      size_t errlen)
{
    if (json_is_string(v))
        return json_text(v, key, &out[0], err, errlen) == 0 ? (*n = 1, 0) : -1;
    if (!json_is_array(v)) {
        snprintf(err, errlen, "\"%s\" must be an array of strings", key);
        return -1;
    }
    if (json_array_size(v) > max) {
        snprintf(err, errlen, "\"%s\" has %zu entries (at most %u)", key, json_array_size(v), max);
        return -1;
    }
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        char k[64];
        snprintf(k, sizeof(k), "%s[%zu]", key, i);
        if (json_text(e, k, &out[i], err, errlen) != 0)
            return -1;
    }
    *n = (unsigned)json_array_size(v);
    return 0;
}

static int parse_validity(const char *s, uint32_t *out, char *err, size_t errlen)
{
    uint64_t secs = 0;
    char why[200];
    if (cf_parse_duration(s, &secs, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "validity '%s': %s", s, why);
        return -1;
    }
    if (secs > UINT32_MAX) {
        snprintf(err, errlen, "validity '%s' is too long", s);
        return -1;
    }
    *out = (uint32_t)secs;
    return 0;
}

static int join_path(char *out, size_t cap, const char *dir, const char *name)
{
    int n = name[0] == '/' || !dir || !*dir ? snprintf(out, cap, "%s", name)
                                            : snprintf(out, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* Turn one JSON line into a request. */
static int job_from_line(issue_ctx *x, job *j, const char *text, size_t len, char *err,
                         size_t errlen)
{
    json_error_t je;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!doc) {
        snprintf(err, errlen, "not a JSON object: %s (column %d)", je.text, je.column);
        return -1;
    }
    j->doc = doc;
    if (!json_is_object(doc)) {
        snprintf(err, errlen, "not a JSON object");
        return -1;
    }
    cf_issue_req *r = &j->req;
    const char *csr = NULL, *out = NULL;
    bool have_validity = false;
    j->chain = x->chain;
    const char *key;
    json_t *v;
    json_object_foreach(doc, key, v)
    {
        if (strcmp(key, "csr") == 0) {
            cf_str s;
            if (json_text(v, key, &s, err, errlen) != 0)
                return -1;
            csr = s.p;
        } else if (strcmp(key, "profile") == 0) {
            if (json_text(v, key, &r->profile, err, errlen) != 0)
                return -1;
        } else if (strcmp(key, "nf_instance_id") == 0) {
            if (json_text(v, key, &r->nf_instance_id, err, errlen) != 0)
                return -1;
        } else if (strcmp(key, "dns") == 0) {
            if (json_texts(v, key, r->fqdns, CF_MAX_FQDNS, &r->n_fqdns, err, errlen) != 0)
                return -1;
        } else if (strcmp(key, "nf_types") == 0) {
            if (json_texts(v, key, r->nf_types, CF_MAX_NF_TYPES, &r->n_nf_types, err, errlen) != 0)
                return -1;
        } else if (strcmp(key, "validity") == 0) {
            if (json_is_integer(v)) {
                json_int_t s = json_integer_value(v);
                if (s <= 0 || s > (json_int_t)UINT32_MAX) {
                    snprintf(err, errlen, "\"validity\" in seconds must be 1-%u", UINT32_MAX);
                    return -1;
                }
                r->validity_s = (uint32_t)s;
            } else if (!json_is_string(v) ||
                       parse_validity(json_string_value(v), &r->validity_s, err, errlen) != 0) {
                if (!json_is_string(v))
                    snprintf(err, errlen, "\"validity\" must be a duration such as \"90d\"");
                return -1;
            }
            have_validity = true;
        } else if (strcmp(key, "requester") == 0) {
            if (json_text(v, key, &r->requester, err, errlen) != 0)
                return -1;
        } else if (strcmp(key, "out") == 0) {
            cf_str s;
            if (json_text(v, key, &s, err, errlen) != 0)
                return -1;
            out = s.p;
        } else if (strcmp(key, "id") == 0) {
            if (!json_is_integer(v) && !(json_is_string(v) && json_string_length(v) > 0)) {
                snprintf(err, errlen, "\"id\" must be a non-empty string or an integer");
                return -1;
            }
        } else if (strcmp(key, "chain") == 0) {
            if (!json_is_boolean(v)) {
                snprintf(err, errlen, "\"chain\" must be true or false");
                return -1;
            }
            j->chain = json_is_true(v);
        } else {
            snprintf(err, errlen,
                     "unknown key \"%s\" (csr, profile, nf_instance_id, dns, nf_types, "
                     "validity, requester, out, chain, id)",
                     key);
            return -1;
        }
    }
    if (!csr) {
        snprintf(err, errlen, "no \"csr\"");
        return -1;
    }
    if (!r->profile.len) {
        if (!x->profile) {
            snprintf(err, errlen, "no \"profile\" (and no --profile)");
            return -1;
        }
        r->profile = (cf_str){x->profile, strlen(x->profile)};
    }
    if (!have_validity)
        r->validity_s = x->validity;
    if (!r->requester.len && x->requester)
        r->requester = (cf_str){x->requester, strlen(x->requester)};

    size_t csr_len = 0;
    char path[PATH_MAX];
    if (strstr(csr, "-----BEGIN ")) {
        if (cli_decode_csr((const uint8_t *)csr, strlen(csr), "\"csr\"", &j->csr, &csr_len, err,
                           errlen) != 0)
            return -1;
    } else {
        if (join_path(path, sizeof(path), x->base_dir, csr) != 0) {
            snprintf(err, errlen, "\"csr\" path too long");
            return -1;
        }
        if (cli_read_csr_file(path, &j->csr, &csr_len, err, errlen) != 0)
            return -1;
    }
    r->csr_der = j->csr;
    r->csr_len = csr_len;

    char def[64];
    snprintf(def, sizeof(def), "cert-%zu.pem", j->line);
    if (join_path(path, sizeof(path), x->out_dir, out ? out : def) != 0) {
        snprintf(err, errlen, "\"out\" path too long");
        return -1;
    }
    if (!(j->out = strdup(path))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

/* The next request of the batch in slot j: 1 got one, 0 end of input.
 * Lines that cannot become requests are failed here (INVALID_REQUEST). */
static int next_line(issue_ctx *x, job *j)
{
    while (!x->eof) {
        ssize_t n = getline(&x->line, &x->line_cap, x->bf);
        if (n < 0) {
            if (ferror(x->bf)) {
                progress_clear(x);
                cli_fail("issue: reading %s: %s", x->batch, strerror(errno));
                x->fatal = true;
            }
            x->eof = true;
            break;
        }
        x->lineno++;
        if (blank(x->line, (size_t)n))
            continue;
        memset(j, 0, sizeof(*j));
        j->used = true;
        j->line = x->lineno;
        char err[1400];
        if (job_from_line(x, j, x->line, (size_t)n, err, sizeof(err)) != 0) {
            job_fail(x, j, FAIL_LOCAL, err);
            job_free(j);
            continue;
        }
        /* the file is checked before certforged is asked (a refused
         * target costs no signature); the rename checks again */
        int cat = -1;
        if (cli_out_exists(j->out, x->force, err, sizeof(err)))
            cat = FAIL_EXISTS;
        else if (cf_outfile_check(j->out, cli_out_flags(x->force, CF_OUT_NOSTDOUT), err,
                                  sizeof(err)) != 0)
            cat = FAIL_OUTPUT;
        if (cat >= 0) {
            job_fail(x, j, (unsigned)cat, err);
            job_free(j);
            continue;
        }
        return 1;
    }
    return 0;
}

static size_t count_lines(FILE *f)
{
    char *l = NULL;
    size_t cap = 0, n = 0;
    ssize_t r;
    while ((r = getline(&l, &cap, f)) >= 0)
        if (!blank(l, (size_t)r))
            n++;
    free(l);
    rewind(f);
    return n;
}

/* --- the pipelined loop --------------------------------------------------------------- */

static job *free_slot(issue_ctx *x)
{
    return x->nfree ? x->free_jobs[x->nfree - 1] : NULL;
}

/* Slots leave the free stack when their line is read (next_line marks them
 * used) and come back when their request is done. */
static void slot_taken(issue_ctx *x, job *j)
{
    if (x->nfree && x->free_jobs[x->nfree - 1] == j)
        x->nfree--;
}

static void slot_done(issue_ctx *x, job *j)
{
    job_free(j);
    if (x->free_jobs)
        x->free_jobs[x->nfree++] = j;
}

static void track(issue_ctx *x, job *j)
{
    job **b = &x->bucket[j->id & (x->nbucket - 1)];
    j->next = *b;
    j->sent = true;
    *b = j;
}

/* Find and unlink the in-flight job with this id. */
static job *untrack(issue_ctx *x, uint64_t id)
{
    for (job **p = &x->bucket[id & (x->nbucket - 1)]; *p; p = &(*p)->next)
        if ((*p)->id == id) {
            job *j = *p;
            *p = j->next;
            j->next = NULL;
            j->sent = false;
            return j;
        }
    return NULL;
}

/* An answer with op 0 and id 0 is about the connection: BUSY means
 * certforged is at server.max_connections and closes it (docs/protocol.md). */
static bool conn_refused(const cf_response *r)
{
    return r->op == 0 && r->id == 0 && r->status == CF_ST_BUSY;
}

/* "2035-11-23T18:00:00Z" (UTC), "?" when it cannot be read. */
static void iso_time(const ASN1_TIME *t, char *buf, size_t cap)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1 || !strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, cap, "?");
}

/* The serial (hex, as the ledger and revoke take it) and notAfter of an
 * issued certificate; c (when given) gets the decoded certificate. */
static void cert_facts(const cf_response *r, char *hex, size_t hcap, char *na, size_t ncap,
                       X509 **c_out)
{
    const unsigned char *p = r->cert.p;
    X509 *c = d2i_X509(NULL, &p, (long)r->cert.len);
    const ASN1_INTEGER *sn = c ? X509_get0_serialNumber(c) : NULL;
    snprintf(hex, hcap, "?");
    if (sn && ASN1_STRING_length(sn) > 0 && (size_t)ASN1_STRING_length(sn) * 2 < hcap)
        cf_hex_encode(ASN1_STRING_get0_data(sn), (size_t)ASN1_STRING_length(sn), hex, hcap);
    iso_time(c ? X509_get0_notAfter(c) : NULL, na, ncap);
    if (c_out)
        *c_out = c;
    else
        X509_free(c);
}

/* One certificate written to a file: what it is, on standard output
 * ("issued SERIAL, not after TIME: PATH"), so a user sees the serial a
 * later revoke needs without opening the file. */
static void print_issued(const cf_response *r, const char *path)
{
    char hex[CF_SERIAL_HEX_MAX + 1], when[32];
    cert_facts(r, hex, sizeof(hex), when, sizeof(when), NULL);
    printf("issued %s, not after %s: %s\n", hex, when, path);
}

/* --json for one CSR: one object; pem is the certificate text when it
 * went nowhere else (no --out), else NULL. */
static void print_issued_json(const issue_ctx *x, const cf_response *r, const char *path,
                              const char *pem)
{
    char hex[CF_SERIAL_HEX_MAX + 1], na[32], nb[32], sub[1024], iss[1024];
    X509 *c = NULL;
    cert_facts(r, hex, sizeof(hex), na, sizeof(na), &c);
    iso_time(c ? X509_get0_notBefore(c) : NULL, nb, sizeof(nb));
    sub[0] = iss[0] = 0;
    if (c) {
        cax_format_name(X509_get_subject_name(c), sub, sizeof(sub)); /* as ca show */
        cax_format_name(X509_get_issuer_name(c), iss, sizeof(iss));
    }
    cli_json j;
    cj_init(&j, stdout);
    cj_obj(&j, NULL);
    cj_str(&j, "serial", hex);
    cj_str(&j, "not_before", nb);
    cj_str(&j, "not_after", na);
    cj_str(&j, "profile", x->profile);
    cj_str(&j, "subject", sub);
    cj_str(&j, "issuer", iss);
    cj_str(&j, "out", path);
    if (pem)
        cj_str(&j, "certificate", pem);
    cj_end_obj(&j);
    cj_done(&j);
    X509_free(c);
}

/* The PEM text (with the chain when asked) in memory, for --json without
 * --out. NULL when out of memory. */
static char *pem_text(const cf_response *r, bool chain)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *s = NULL, *p = NULL;
    bool ok = b && PEM_write_bio(b, "CERTIFICATE", "", r->cert.p, (long)r->cert.len) > 0;
    for (unsigned i = 0; ok && chain && i < r->n_chain; i++)
        ok = PEM_write_bio(b, "CERTIFICATE", "", r->chain[i].p, (long)r->chain[i].len) > 0;
    long n = ok ? BIO_get_mem_data(b, &p) : 0;
    if (n > 0 && (s = malloc((size_t)n + 1))) {
        memcpy(s, p, (size_t)n);
        s[n] = 0;
    }
    BIO_free(b);
    return s;
}

static void answer(issue_ctx *x, const cf_response *r)
{
    job *j = r->op == CF_OP_ISSUE ? untrack(x, r->id) : NULL;
    if (!j) {
        progress_clear(x);
        cli_note("issue: ignoring an answer to request %llu, which is not in flight",
                 (unsigned long long)r->id);
        return;
    }
    x->inflight--;
    char msg[600], err[PATH_MAX + 200];
    sanitize(r->message.p, r->message.len, msg, sizeof(msg));
    if (r->status == CF_ST_OK && x->json && strcmp(j->out, "-") == 0) {
        char *pem = pem_text(r, j->chain);
        if (!pem) {
            job_fail(x, j, FAIL_OUTPUT, "out of memory");
        } else {
            x->issued++;
            print_issued_json(x, r, NULL, pem);
            free(pem);
        }
    } else if (r->status == CF_ST_OK) {
        if (write_pem(j->out, r, j->chain, !x->batch, x->force, err, sizeof(err)) != 0) {
            job_fail(x, j, strstr(err, "use --force") ? FAIL_EXISTS : FAIL_OUTPUT, err);
        } else {
            x->issued++;
            if (x->rf_open) {
                char hex[CF_SERIAL_HEX_MAX + 1], na[32];
                cert_facts(r, hex, sizeof(hex), na, sizeof(na), NULL);
                result_line(x, j->line, j->doc, "issued", hex, na, j->out, NULL);
            }
            if (!x->batch && x->json)
                print_issued_json(x, r, j->out, NULL);
            else if (!x->batch && strcmp(j->out, "-") != 0)
                print_issued(r, j->out);
            /* Win back what BUSY answers took, slowly. */
            if (x->window < x->max_window && x->issued % 64 == 0)
                x->window++;
        }
    } else if (r->status == CF_ST_BUSY && ++j->busy <= BUSY_RETRIES) {
        /* The daemon's queue, or our share of it, is full: send it again
         * later, and halve the window — once per round trip, not once per
         * BUSY of requests that were all sent before the cut. */
        x->retry[x->nretry++] = j;
        if (j->seq >= x->cut) {
            /* What the daemon held when this one came: those sent before
             * it and still in flight. */
            size_t held = 0;
            for (size_t i = 0; i < x->njobs; i++)
                held += x->jobs[i].sent && x->jobs[i].seq < j->seq;
            unsigned half = x->window > 1 ? x->window / 2 : 1;
            x->window = held && held < half ? (unsigned)held : half;
            x->cut = x->submits;
        }
        return;
    } else {
        if (!msg[0])
            snprintf(msg, sizeof(msg), "(no message)");
        job_fail(x, j, (unsigned)r->status < CF_ST__MAX ? (unsigned)r->status : FAIL_OTHER, msg);
    }
    slot_done(x, j);
}

/* The connection is gone: every request not answered fails. */
static void lose_all(issue_ctx *x, const char *why)
{
    progress_clear(x);
    cli_fail("issue: %s", why);
    for (size_t i = 0; i < x->njobs; i++)
        if (x->jobs[i].used) {
            job_fail(x, &x->jobs[i], FAIL_NO_ANSWER, "connection lost before the answer");
            slot_done(x, &x->jobs[i]);
        }
    x->nretry = 0;
    x->inflight = 0;
    x->fatal = true;
}

/* certforged refused the connection (too many connections): every request
 * in flight goes back to be sent again, on a new connection after a
 * growing pause (100 ms doubling up to 2 s), at most CONN_RETRIES times in
 * a row; then each request fails as BUSY. Returns 0 when reconnected. */
static int reconnect_after_busy(issue_ctx *x, const cf_response *r)
{
    char m[600];
    sanitize(r->message.p, r->message.len, m, sizeof(m));
    for (size_t i = 0; i < x->njobs; i++)
        if (x->jobs[i].sent && untrack(x, x->jobs[i].id))
            x->retry[x->nretry++] = &x->jobs[i];
    x->inflight = 0;
    cf_client_close(x->c);
    x->c = NULL;
    progress_clear(x);
    if (++x->refusals > CONN_RETRIES) {
        char why[800];
        snprintf(why, sizeof(why), "certforged at %s refused the connection %u times: %s",
                 x->socket, x->refusals, m[0] ? m : "too many connections");
        for (size_t i = 0; i < x->njobs; i++)
            if (x->jobs[i].used) {
                job_fail(x, &x->jobs[i], CF_ST_BUSY, why);
                slot_done(x, &x->jobs[i]);
            }
        x->nretry = 0;
        x->fatal = true;
        x->refused_out = true;
        return -1;
    }
    unsigned ms = 100u << (x->refusals - 1 < 5 ? x->refusals - 1 : 5);
    if (ms > 2000)
        ms = 2000;
    cli_note("issue: certforged at %s answered BUSY (%s); connecting again in %u ms", x->socket,
             m[0] ? m : "too many connections", ms);
    usleep(ms * 1000u);
    char err[512];
    if (cf_client_connect(x->socket, &x->c, err, sizeof(err)) != 0) {
        char why[800];
        snprintf(why, sizeof(why), "cannot reach certforged at %s again: %s", x->socket, err);
        lose_all(x, why);
        return -1;
    }
    return 0;
}

/* The connection failed: hand out what certforged sent before it (the
 * answers read before the error). 1 when that was a connection refusal
 * (*refusal filled), 0 otherwise. */
static int drain_before_loss(issue_ctx *x, cf_response *refusal)
{
    cf_response resp;
    while (x->c && cf_client_next_response(x->c, 0, &resp) == 0) {
        if (conn_refused(&resp)) {
            *refusal = resp;
            return 1;
        }
        answer(x, &resp);
    }
    return 0;
}

/* 0: a job taken for sending (*out), 1: nothing to send now. */
static int take_job(issue_ctx *x, job **out, job *single)
{
    if (x->nretry) {
        *out = x->retry[--x->nretry];
        return 0;
    }
    if (single) {
        if (x->eof)
            return 1;
        x->eof = true;
        *out = single;
        return 0;
    }
    job *j = free_slot(x);
    if (!j || next_line(x, j) != 1)
        return 1;
    slot_taken(x, j);
    *out = j;
    return 0;
}

static void run(issue_ctx *x, job *single)
{
    x->t0 = now_s();
    for (;;) {
        /* Fill the window. */
        while (!x->fatal && x->inflight < x->window) {
            job *j = NULL;
            if (take_job(x, &j, single) != 0)
                break;
            if (j->busy && x->inflight == 0)
                usleep(10000); /* BUSY with nothing of ours in flight: others load it */
            uint64_t id = 0;
            int r = cf_client_submit_issue(x->c, &j->req, &id);
            if (r == 0) {
                j->id = id;
                j->seq = x->submits++;
                track(x, j);
                x->inflight++;
                continue;
            }
            if (r == 1 && x->inflight > 0) {
                x->retry[x->nretry++] = j; /* buffers full: collect answers first */
                break;
            }
            char why[300];
            snprintf(why, sizeof(why), "%s", cf_client_error(x->c));
            if (r < 0 && cf_client_flush(x->c, 0) >= 0) {
                /* This request only (e.g. it breaks a protocol limit). */
                job_fail(x, j, FAIL_LOCAL, why);
                slot_done(x, j);
                continue;
            }
            x->retry[x->nretry++] = j;
            cf_response refusal;
            if (drain_before_loss(x, &refusal)) {
                if (reconnect_after_busy(x, &refusal) == 0)
                    continue;
                break;
            }
            char m[400];
            snprintf(m, sizeof(m), "connection to certforged at %s lost: %s", x->socket, why);
            lose_all(x, m);
        }
        if (x->fatal || (x->inflight == 0 && x->nretry == 0 && x->eof))
            break;
        if (x->inflight == 0)
            continue; /* BUSY answers to send again */
        cf_response resp;
        int r = cf_client_next_response(x->c, x->timeout_ms, &resp);
        if (r == 0 && conn_refused(&resp)) {
            if (reconnect_after_busy(x, &resp) != 0)
                break;
            continue;
        }
        if (r == 0) {
            x->refusals = 0; /* served: a later refusal starts the count again */
            answer(x, &resp);
            progress_draw(x, false);
            continue;
        }
        char m[400];
        if (r == 1)
            snprintf(m, sizeof(m), "no answer from certforged at %s within %d s", x->socket,
                     x->timeout_ms / 1000);
        else
            snprintf(m, sizeof(m), "connection to certforged at %s lost: %s", x->socket,
                     cf_client_error(x->c));
        lose_all(x, m);
        break;
    }
    x->t_end = now_s();
    if (x->fatal && x->bf && !x->eof) {
        /* Lines never sent: counted, not listed one by one. */
        size_t first = x->lineno + 1;
        ssize_t n;
        size_t ln = x->lineno;
        while ((n = getline(&x->line, &x->line_cap, x->bf)) >= 0) {
            ln++;
            if (blank(x->line, (size_t)n))
                continue;
            x->unsent++;
            json_t *doc = x->rf_open ? json_loadb(x->line, (size_t)n, 0, NULL) : NULL;
            result_line(x, ln, doc, fail_name(FAIL_NO_ANSWER), NULL, NULL, NULL,
                        "not sent: the batch stopped before this line");
            json_decref(doc);
        }
        if (x->unsent) {
            x->failed += x->unsent;
            x->by[FAIL_NO_ANSWER] += x->unsent;
            cli_fail("issue: %zu request(s) from line %zu on were not sent", x->unsent, first);
        }
    }
}

/* On standard output, or on standard error when --results is '-'. */
static void summary(issue_ctx *x)
{
    FILE *f = x->rf_stdout ? stderr : stdout;
    double el = x->t_end - x->t0;
    size_t all = x->issued + x->failed;
    fprintf(f, "issued %zu of %zu certificates in %.3f s: %.1f certificates/s\n", x->issued, all,
            el, el > 0 ? (double)x->issued / el : 0.0);
    fprintf(f, "failed %zu", x->failed);
    const char *sep = ": ";
    for (unsigned i = 0; i < FAIL__N; i++)
        if (x->by[i]) {
            fprintf(f, "%s%s %zu", sep, fail_name(i), x->by[i]);
            sep = ", ";
        }
    fprintf(f, "\n");
    fflush(f);
}

int cmd_issue(int argc, char **argv)
{
    static const struct option lo[] = {{"socket", required_argument, NULL, OPT_SOCKET},
                                       {"csr", required_argument, NULL, OPT_CSR},
                                       {"profile", required_argument, NULL, OPT_PROFILE},
                                       {"nf-instance-id", required_argument, NULL, OPT_NFID},
                                       {"dns", required_argument, NULL, OPT_DNS},
                                       {"nf-type", required_argument, NULL, OPT_NFTYPE},
                                       {"validity", required_argument, NULL, OPT_VALIDITY},
                                       {"requester", required_argument, NULL, OPT_REQUESTER},
                                       {"out", required_argument, NULL, OPT_OUT},
                                       {"chain", no_argument, NULL, OPT_CHAIN},
                                       {"batch", required_argument, NULL, OPT_BATCH},
                                       {"out-dir", required_argument, NULL, OPT_OUTDIR},
                                       {"inflight", required_argument, NULL, OPT_INFLIGHT},
                                       {"timeout", required_argument, NULL, OPT_TIMEOUT},
                                       {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
                                       {"force", no_argument, NULL, OPT_FORCE},
                                       {"json", no_argument, NULL, OPT_JSON},
                                       {"results", required_argument, NULL, OPT_RESULTS},
                                       {"help", no_argument, NULL, OPT_HELP},
                                       {0, 0, 0, 0}};
    issue_ctx x;
    memset(&x, 0, sizeof(x));
    x.window = 128;
    x.timeout_ms = 60000;
    x.progress = true;
    job single;
    memset(&single, 0, sizeof(single));
    const char *csr_path = NULL, *validity = NULL, *nfid = NULL;
    int rc = CLI_FAIL;
    unsigned long ul;
    char err[1400];
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case OPT_SOCKET:
            x.socket = optarg;
            break;
        case OPT_CSR:
            csr_path = optarg;
            break;
        case OPT_PROFILE:
            x.profile = optarg;
            break;
        case OPT_NFID:
            nfid = optarg;
            break;
        case OPT_DNS:
            if (single.req.n_fqdns == CF_MAX_FQDNS)
                return cli_usage("issue: at most %d --dns", CF_MAX_FQDNS);
            single.req.fqdns[single.req.n_fqdns++] = (cf_str){optarg, strlen(optarg)};
            break;
        case OPT_NFTYPE:
            if (single.req.n_nf_types == CF_MAX_NF_TYPES)
                return cli_usage("issue: at most %d --nf-type", CF_MAX_NF_TYPES);
            single.req.nf_types[single.req.n_nf_types++] = (cf_str){optarg, strlen(optarg)};
            break;
        case OPT_VALIDITY:
            validity = optarg;
            break;
        case OPT_REQUESTER:
            x.requester = optarg;
            break;
        case OPT_OUT:
            x.out = optarg;
            break;
        case OPT_CHAIN:
            x.chain = true;
            break;
        case OPT_BATCH:
            x.batch = optarg;
            break;
        case OPT_OUTDIR:
            x.out_dir = optarg;
            break;
        case OPT_INFLIGHT:
            if (!cli_parse_uint(optarg, 1, 65536, &ul))
                return cli_usage("issue: --inflight must be 1-65536, not '%s'", optarg);
            x.window = (unsigned)ul;
            break;
        case OPT_TIMEOUT:
            if (!cli_parse_uint(optarg, 1, 86400, &ul))
                return cli_usage("issue: --timeout must be 1-86400 seconds, not '%s'", optarg);
            x.timeout_ms = (int)ul * 1000;
            break;
        case OPT_NO_PROGRESS:
            x.progress = false;
            break;
        case OPT_FORCE:
            x.force = true;
            break;
        case OPT_JSON:
            x.json = true;
            break;
        case OPT_RESULTS:
            x.results = optarg;
            break;
        case OPT_HELP:
            fputs(issue_help, stdout);
            return CLI_OK;
        default:
            return cli_bad_option("issue", argc, argv);
        }
    }
    if (optind < argc)
        return cli_usage("issue: unexpected argument '%s'", argv[optind]);
    if (!x.batch == !csr_path)
        return cli_usage("issue: give --csr FILE (one CSR) or --batch FILE (many); see "
                         "'certforge issue --help'");
    if (x.batch) {
        if (x.out)
            return cli_usage("issue: --out is for one CSR; a batch writes into --out-dir");
        if (x.json)
            return cli_usage("issue: --json is for one CSR; a batch writes JSON lines with "
                             "--results FILE");
        if (x.results && !*x.results)
            return cli_usage("issue: --results needs a file name ('-': standard output)");
        if (nfid || single.req.n_fqdns || single.req.n_nf_types)
            return cli_usage("issue: --nf-instance-id, --dns and --nf-type are per CSR: in a "
                             "batch each line carries its own");
    } else {
        if (x.out_dir)
            return cli_usage("issue: --out-dir is for --batch; one CSR goes to --out FILE");
        if (x.results)
            return cli_usage("issue: --results is for --batch; one CSR prints its result "
                             "(--json for JSON)");
        if (!x.profile)
            return cli_usage("issue: --profile NAME is required (e.g. --profile nf)");
    }
    for (unsigned i = 0; i < single.req.n_fqdns; i++)
        if (!single.req.fqdns[i].len)
            return cli_usage("issue: --dns needs a name");
    for (unsigned i = 0; i < single.req.n_nf_types; i++)
        if (!single.req.nf_types[i].len)
            return cli_usage("issue: --nf-type needs a type");
    if (validity && parse_validity(validity, &x.validity, err, sizeof(err)) != 0)
        return cli_usage("issue: --validity: %s", err);
    if (x.profile && !*x.profile)
        return cli_usage("issue: --profile needs a name");
    if (x.requester && !*x.requester)
        x.requester = NULL;
    x.socket = cli_socket_path(x.socket);
    x.progress = x.progress && x.batch && isatty(2);

    /* Inputs first: a missing file is reported before the daemon is asked. */
    if (x.results && (rc = cli_out_check("issue", "--results", x.results, x.force, 0)) != CLI_OK)
        return rc;
    rc = CLI_FAIL;
    if (x.batch) {
        if (strcmp(x.batch, "-") == 0) {
            x.bf = stdin;
        } else if (!(x.bf = fopen(x.batch, "r"))) {
            return cli_fail("issue: cannot read batch %s: %s", x.batch, strerror(errno));
        } else {
            snprintf(x.base_dir, sizeof(x.base_dir), "%s", x.batch);
            char *sl = strrchr(x.base_dir, '/');
            if (sl)
                *(sl == x.base_dir ? sl + 1 : sl) = 0;
            else
                x.base_dir[0] = 0;
            x.total = count_lines(x.bf);
        }
        if (!x.out_dir)
            x.out_dir = ".";
        if (cli_mkdir_p(x.out_dir) != 0) {
            rc = cli_fail("issue: cannot create --out-dir %s: %s", x.out_dir, strerror(errno));
            goto out;
        }
        x.njobs = x.window;
    } else {
        size_t len = 0;
        if (cli_read_csr_file(csr_path, &single.csr, &len, err, sizeof(err)) != 0) {
            rc = cli_fail("issue: %s", err);
            goto out;
        }
        if (x.out && (rc = cli_out_check("issue", "--out", x.out, x.force, 0)) != CLI_OK)
            goto out;
        single.used = true;
        single.req.csr_der = single.csr;
        single.req.csr_len = len;
        single.req.profile = (cf_str){x.profile, strlen(x.profile)};
        if (nfid)
            single.req.nf_instance_id = (cf_str){nfid, strlen(nfid)};
        single.req.validity_s = x.validity;
        if (x.requester)
            single.req.requester = (cf_str){x.requester, strlen(x.requester)};
        single.chain = x.chain;
        if (!(single.out = strdup(x.out ? x.out : "-"))) {
            rc = cli_fail("out of memory");
            goto out;
        }
        x.jobs = &single;
        x.njobs = 1;
        x.window = 1;
    }
    if (x.batch) {
        x.jobs = calloc(x.njobs, sizeof(*x.jobs));
        if (!x.jobs) {
            rc = cli_fail("out of memory");
            goto out;
        }
    }
    x.max_window = x.window;
    x.retry = calloc(x.njobs, sizeof(*x.retry));
    for (x.nbucket = 16; x.nbucket < 2 * x.njobs;)
        x.nbucket *= 2;
    x.bucket = calloc(x.nbucket, sizeof(*x.bucket));
    if (x.batch && (x.free_jobs = calloc(x.njobs, sizeof(*x.free_jobs))))
        for (size_t i = x.njobs; i > 0; i--)
            x.free_jobs[x.nfree++] = &x.jobs[i - 1];
    if (!x.retry || !x.bucket || (x.batch && !x.free_jobs)) {
        rc = cli_fail("out of memory");
        goto out;
    }
    if (x.results) {
        if (cf_outfile_open(&x.rf, x.results, 0644, cli_out_flags(x.force, 0), err,
                            sizeof(err)) != 0) {
            rc = cli_out_fail("issue", x.results, err);
            goto out;
        }
        x.rf_open = true;
        x.rf_stdout = x.rf.to_stdout;
    }
    if ((rc = cli_connect("issue", x.socket, &x.c)) != CLI_OK)
        goto out;

    run(&x, x.batch ? NULL : &single);
    if (x.batch && x.issued) {
        /* the certificates were written without an fsync each: one for all */
        int dfd = open(x.out_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || syncfs(dfd) != 0) {
            cli_fail("issue: cannot sync the certificates in %s to disk: %s", x.out_dir,
                     strerror(errno));
            x.failed++;
        }
        if (dfd >= 0)
            close(dfd);
    }
    if (x.rf_open) {
        x.rf_open = false;
        if (cf_outfile_commit(&x.rf, err, sizeof(err)) != 0) {
            cli_out_fail("issue", x.results, err);
            x.failed++;
        }
    }
    if (x.batch) {
        progress_draw(&x, true);
        summary(&x);
    }
    rc = x.failed || x.fatal ? CLI_FAIL : CLI_OK;
out:
    if (x.rf_open)
        cf_outfile_abort(&x.rf);
    cf_client_close(x.c);
    if (x.batch) {
        for (size_t i = 0; x.jobs && i < x.njobs; i++)
            if (x.jobs[i].used)
                job_free(&x.jobs[i]);
        free(x.jobs);
    }
    job_free(&single);
    free(x.retry);
    free(x.bucket);
    free(x.free_jobs);
    free(x.line);
    if (x.bf && x.bf != stdin)
        fclose(x.bf);
    return rc;
}
