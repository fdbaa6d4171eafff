/* certforge ledger — read certforged's issuance ledger (docs/ledger.md):
 * show one record, list with filters, export everything as JSON lines or
 * CSV. Reads the database directly, read-only (no daemon needed; the daemon
 * may be running: SQLite WAL lets readers in while it writes, PostgreSQL
 * sessions see committed batches only). */
#include "common/outfile.h"
#include "common/serial.h"
#include "engine/config/config.h"
#include "engine/ledger/ledger.h"
#include "tools/certforge/cli.h"
#include "tools/certforge/commands.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

static const char ledger_help[] =
    "usage: certforge ledger show SERIAL [--json]  LEDGER\n"
    "       certforge ledger list [FILTERS] [--json] LEDGER\n"
    "       certforge ledger export --format jsonl|csv [--out FILE [--force]] [FILTERS] LEDGER\n"
    "       certforge ledger signs [--key NAME] [--limit N] LEDGER\n"
    "       certforge ledger list --sign [--key NAME] [--limit N] LEDGER  (the same as signs)\n"
    "  LEDGER: --db PATH | --conninfo STRING | --config FILE\n"
    "\n"
    "Reads certforged's ledger: every certificate it issued, recorded before it was\n"
    "released. The ledger is opened read-only (SQLite: the file; PostgreSQL: a\n"
    "read-only session); certforged may be running.\n"
    "\n"
    "  show SERIAL   one record (SERIAL in hex, any case, ':' separators allowed),\n"
    "                then the certificate in PEM\n"
    "  list          one line per record: serial, profile, notAfter, status, subject, SANs\n"
    "  export        every matching record, certificate included (base64 DER)\n"
    "  signs         the raw SIGN operations (the OpenSSL provider's signatures), oldest\n"
    "                first, one line each: time, key, mechanism, requester, digest (hex)\n"
    "\n"
    "OPTIONS\n"
    "  --db PATH              the SQLite ledger database file\n"
    "  --conninfo STRING      a PostgreSQL ledger: libpq conninfo or URI (no password:\n"
    "                         use ~/.pgpass, PGPASSFILE or peer authentication)\n"
    "  --config FILE          certforged's config: its ledger section (either backend)\n"
    "  --profile NAME         only this profile\n"
    "  --nf-instance-id UUID  only this NF instance (any case)\n"
    "  --expiring-before DATE notAfter before DATE: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)\n"
    "  --revoked              only revoked certificates\n"
    "  --limit N              at most N records\n"
    "  --sign                 list: the SIGN records instead of certificates (= signs)\n"
    "  --key NAME             signs: only this key (certforged's config name)\n"
    "  --format jsonl|csv     export: JSON lines (one object per record) or CSV with a header\n"
    "  --out FILE             export: write FILE (mode 0600, through a temporary file renamed\n"
    "                         over it; a symlink, FIFO or device is refused) instead of stdout;\n"
    "                         an existing FILE is refused unless --force\n"
    "  --force                export: replace an existing --out FILE\n"
    "  --json                 show, list: JSON on standard output with the FIELDS below\n"
    "                         (the export's jsonl records): show one object, list an\n"
    "                         array (one record a line; [] when nothing matched)\n"
    "  --help                 this text\n"
    "\n"
    "FIELDS (jsonl keys, csv columns)\n"
    "  serial profile issuer_key subject sans nf_instance_id not_before not_after\n"
    "  requester_uid requester issued_at status revoked_at revocation_reason cert_der_b64\n"
    "  (times in RFC 3339 UTC; absent values null / empty)\n"
    "\n"
    "EXAMPLES\n"
    "  certforge ledger list --config /etc/certforge/certforged.conf --profile nf\n"
    "  certforge ledger show 4a0b0c0d0e0f101112131415161718ff --db state/ledger.db\n"
    "  certforge ledger export --format jsonl --db state/ledger.db | jq -r .serial\n"
    "  certforge ledger list --conninfo 'host=/run/postgresql dbname=certforge' --limit 10\n"
    "  certforge ledger signs --db state/ledger.db --key ca-2025\n"
    "\n"
    "EXIT STATUS\n"
    "  0  success (list/export: also when nothing matched)\n"
    "  1  the ledger cannot be read, or show found no such serial\n"
    "  2  usage error\n";

enum {
    OPT_DB = 256,
    OPT_CONNINFO,
    OPT_CONFIG,
    OPT_PROFILE,
    OPT_REVOKED,
    OPT_NF,
    OPT_EXPIRING,
    OPT_LIMIT,
    OPT_FORMAT,
    OPT_OUT,
    OPT_KEY,
    OPT_FORCE,
    OPT_JSON,
    OPT_HELP,
    OPT_SIGN
};

typedef struct lopts {
    const char *db, *conninfo, *config, *format, *out, *key;
    bool force, json, sign;
    ledger_filter f;
} lopts;

/* YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC. */
static bool parse_date(const char *s, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    char z = 0;
    int n = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &n) != 3)
        return false;
    if (s[n] == 'T') {
        int m = 0;
        if (sscanf(s + n, "T%2d:%2d:%2d%c%n", &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &z, &m) != 4 ||
            z != 'Z' || s[n + m] != 0)
            return false;
    } else if (s[n] != 0) {
        return false;
    }
    if (tm.tm_year < 1970 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
        tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = (int64_t)timegm(&tm);
    return true;
}

static void rfc3339(int64_t t, char *out, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void rfc3339_ms(int64_t ms, char *out, size_t cap)
{
    char s[32];
    rfc3339(ms / 1000, s, sizeof(s));
    s[strlen(s) - 1] = 0; /* drop the Z */
    snprintf(out, cap, "%s.%03dZ", s, (int)(ms % 1000));
}

static char *b64(const uint8_t *p, size_t n)
{
    char *o = malloc(4 * ((n + 2) / 3) + 1);
    if (o)
        EVP_EncodeBlock((unsigned char *)o, p, (int)n);
    return o;
}

/* Parse the options after the subcommand (argv[0]); positional arguments
 * are left at argv[optind..]. */
static int parse(const char *sub, int argc, char **argv, lopts *o)
{
    static const struct option lo[] = {{"db", required_argument, NULL, OPT_DB},
                                       {"conninfo", required_argument, NULL, OPT_CONNINFO},
                                       {"config", required_argument, NULL, OPT_CONFIG},
                                       {"profile", required_argument, NULL, OPT_PROFILE},
                                       {"nf-instance-id", required_argument, NULL, OPT_NF},
                                       {"expiring-before", required_argument, NULL, OPT_EXPIRING},
                                       {"limit", required_argument, NULL, OPT_LIMIT},
                                       {"revoked", no_argument, NULL, OPT_REVOKED},
                                       {"format", required_argument, NULL, OPT_FORMAT},
                                       {"out", required_argument, NULL, OPT_OUT},
                                       {"key", required_argument, NULL, OPT_KEY},
                                       {"force", no_argument, NULL, OPT_FORCE},
                                       {"json", no_argument, NULL, OPT_JSON},
                                       {"help", no_argument, NULL, OPT_HELP},
                                       {"sign", no_argument, NULL, OPT_SIGN},
                                       {0, 0, 0, 0}};
    int c;
    unsigned long v;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case OPT_DB:
            o->db = optarg;
            break;
        case OPT_CONNINFO:
            o->conninfo = optarg;
            break;
        case OPT_CONFIG:
            o->config = optarg;
            break;
        case OPT_PROFILE:
            o->f.profile = optarg;
            break;
        case OPT_NF:
            o->f.nf_instance_id = optarg;
            break;
        case OPT_EXPIRING:
            if (!parse_date(optarg, &o->f.expiring_before))
                return cli_usage("ledger %s: --expiring-before: '%s' is not YYYY-MM-DD or "
                                 "YYYY-MM-DDTHH:MM:SSZ",
                                 sub, optarg);
            break;
        case OPT_REVOKED:
            o->f.revoked_only = true;
            break;
        case OPT_LIMIT:
            if (!cli_parse_uint(optarg, 1, 100000000, &v))
                return cli_usage("ledger %s: --limit must be 1-100000000, not '%s'", sub, optarg);
            o->f.limit = v;
            break;
        case OPT_OUT:
            o->out = optarg;
            break;
        case OPT_SIGN:
            o->sign = true;
            break;
        case OPT_KEY:
            o->key = optarg;
            break;
        case OPT_FORCE:
            o->force = true;
            break;
        case OPT_JSON:
            o->json = true;
            break;
        case OPT_FORMAT:
            if (strcmp(optarg, "jsonl") && strcmp(optarg, "csv"))
                return cli_usage("ledger %s: --format jsonl or csv, not '%s'", sub, optarg);
            o->format = optarg;
            break;
        case OPT_HELP:
            fputs(ledger_help, stdout);
            return -1;
        default:
            return cli_bad_option("ledger", argc, argv);
        }
    }
    if ((o->db != NULL) + (o->conninfo != NULL) + (o->config != NULL) != 1)
        return cli_usage("ledger %s: give the ledger with --db PATH, --conninfo STRING or "
                         "--config FILE",
                         sub);
    return CLI_OK;
}

static int open_ro(const lopts *o, ledger **l)
{
    char err[1024];
    cfg_config *cfg = NULL;
    ledger_opts lo = {.backend = LEDGER_SQLITE, .path = o->db, .read_only = true};
    if (o->conninfo) {
        lo.backend = LEDGER_POSTGRESQL;
        lo.conninfo = o->conninfo;
    }
    if (o->config) {
        if (cfg_load(o->config, &cfg, err, sizeof(err)) != 0)
            return cli_fail("%s", err);
        if (!cfg->ledger.line) {
            cfg_free(cfg);
            return cli_fail("%s: has no ledger section", o->config);
        }
        lo.path = cfg->ledger.path;
        if (cfg->ledger.backend == CFG_LEDGER_POSTGRESQL) {
            lo.backend = LEDGER_POSTGRESQL;
            lo.conninfo = cfg->ledger.conninfo;
            lo.pg_timeout_ms = cfg->ledger.pg_timeout_ms;
        }
    }
    int rc = ledger_open(&lo, l, err, sizeof(err));
    cfg_free(cfg);
    return rc == 0 ? CLI_OK : cli_fail("%s", err);
}

/* --- output --- */

static int show_cb(const ledger_rec *r, void *arg)
{
    (void)arg;
    char t1[40], t2[40], t3[40];
    rfc3339(r->not_before, t1, sizeof(t1));
    rfc3339(r->not_after, t2, sizeof(t2));
    rfc3339_ms(r->issued_at_ms, t3, sizeof(t3));
    printf("%-18s %s\n", "serial", r->serial);
    printf("%-18s %s\n", "status", r->status);
    printf("%-18s %s\n", "profile", r->profile);
    printf("%-18s %s\n", "issuer key", r->issuer_key);
    printf("%-18s %s\n", "subject", r->subject);
    printf("%-18s %s\n", "SANs", r->sans[0] ? r->sans : "(none)");
    printf("%-18s %s\n", "NF instance ID", r->nf_instance_id ? r->nf_instance_id : "(none)");
    printf("%-18s %s\n", "not before", t1);
    printf("%-18s %s\n", "not after", t2);
    printf("%-18s %s\n", "issued at", t3);
    if (r->requester_uid >= 0)
        printf("%-18s uid %lld%s%s\n", "requester", (long long)r->requester_uid,
               r->requester ? ", tag " : "", r->requester ? r->requester : "");
    else
        printf("%-18s %s\n", "requester", r->requester ? r->requester : "(in-process)");
    if (r->revoked_at >= 0) {
        rfc3339(r->revoked_at, t1, sizeof(t1));
        printf("%-18s %s (%s)\n", "revoked at", t1,
               r->revocation_reason ? r->revocation_reason : "no reason");
    }
    char *b = b64(r->cert, r->cert_len);
    if (!b)
        return 1;
    printf("-----BEGIN CERTIFICATE-----\n");
    for (size_t i = 0, n = strlen(b); i < n; i += 64)
        printf("%.64s\n", b + i);
    printf("-----END CERTIFICATE-----\n");
    free(b);
    return 0;
}

static int list_cb(const ledger_rec *r, void *arg)
{
    (*(size_t *)arg)++;
    char t[40];
    rfc3339(r->not_after, t, sizeof(t));
    printf("%-40s %-10s %s %-7s %s %s\n", r->serial, r->profile, t, r->status, r->subject,
           r->sans);
    return 0;
}

static int signs_cb(const ledger_sign_rec *r, void *arg)
{
    (*(size_t *)arg)++;
    char t[48], who[96], hex[2 * 64 + 1];
    rfc3339_ms(r->signed_at_ms, t, sizeof(t));
    if (r->requester_uid >= 0)
        snprintf(who, sizeof(who), "uid=%lld%s%s", (long long)r->requester_uid,
                 r->requester ? "/" : "", r->requester ? r->requester : "");
    else
        snprintf(who, sizeof(who), "%s", r->requester ? r->requester : "(in-process)");
    cf_hex_encode(r->digest, r->digest_len, hex, sizeof(hex));
    printf("%s %-16s %-14s %-28s %s\n", t, r->key, r->mechanism, who, hex);
    return 0;
}

typedef struct exp_arg {
    bool csv;
    size_t n;
    FILE *f;
    bool array; /* list --json: "[", records separated by ",\n", "]" */
} exp_arg;

static void csv_field(FILE *f, const char *v, bool last)
{
    if (v) {
        bool q = strpbrk(v, ",\"\r\n") != NULL;
        if (q) {
            fputc('"', f);
            for (; *v; v++) {
                if (*v == '"')
                    fputc('"', f);
                fputc(*v, f);
            }
            fputc('"', f);
        } else {
            fputs(v, f);
        }
    }
    fputc(last ? '\n' : ',', f);
}

static const char *const exp_fields[] = {
    "serial",     "profile",   "issuer_key",    "subject",   "sans",
    "nf_instance_id", "not_before", "not_after", "requester_uid", "requester",
    "issued_at",  "status",    "revoked_at",    "revocation_reason", "cert_der_b64"};
#define N_EXP_FIELDS (sizeof(exp_fields) / sizeof(exp_fields[0]))

static int export_cb(const ledger_rec *r, void *arg)
{
    exp_arg *a = arg;
    char nb[40], na[40], ia[40], ra[40], uid[24];
    rfc3339(r->not_before, nb, sizeof(nb));
    rfc3339(r->not_after, na, sizeof(na));
    rfc3339_ms(r->issued_at_ms, ia, sizeof(ia));
    if (r->revoked_at >= 0)
        rfc3339(r->revoked_at, ra, sizeof(ra));
    snprintf(uid, sizeof(uid), "%lld", (long long)r->requester_uid);
    char *b = b64(r->cert, r->cert_len);
    if (!b)
        return 1;
    const char *v[N_EXP_FIELDS] = {r->serial,
                                   r->profile,
                                   r->issuer_key,
                                   r->subject,
                                   r->sans,
                                   r->nf_instance_id,
                                   nb,
                                   na,
                                   r->requester_uid >= 0 ? uid : NULL,
                                   r->requester,
                                   ia,
                                   r->status,
                                   r->revoked_at >= 0 ? ra : NULL,
                                   r->revocation_reason,
                                   b};
    int rc = 0;
    if (a->csv) {
        for (size_t i = 0; i < N_EXP_FIELDS; i++)
            csv_field(a->f, v[i], i + 1 == N_EXP_FIELDS);
    } else {
        if (a->array)
            fputs(a->n ? ",\n" : "[\n", a->f);
        json_t *o = json_object();
        for (size_t i = 0; o && i < N_EXP_FIELDS; i++) {
            json_t *x = !v[i] ? json_null()
                        : i == 8 ? json_integer(r->requester_uid)
                                 : json_string(v[i]);
            json_object_set_new(o, exp_fields[i], x);
        }
        if (!o || json_dumpf(o, a->f, JSON_COMPACT | JSON_PRESERVE_ORDER) != 0)
            rc = 1;
        if (!a->array)
            fputc('\n', a->f);
        json_decref(o);
    }
    free(b);
    a->n++;
    return rc;
}

/* --- subcommands --- */

static int run(const char *sub, int argc, char **argv)
{
    lopts o;
    memset(&o, 0, sizeof(o));
    int rc = parse(sub, argc, argv, &o);
    if (rc < 0)
        return CLI_OK; /* --help */
    if (rc != CLI_OK)
        return rc;
    if (o.sign && strcmp(sub, "list") != 0)
        return cli_usage("ledger %s: --sign is for list (ledger list --sign, or ledger signs)", sub);
    if (o.sign)
        sub = "signs"; /* ledger list --sign: the SIGN records */
    bool show = strcmp(sub, "show") == 0, exp = strcmp(sub, "export") == 0,
         signs = strcmp(sub, "signs") == 0;
    if (!signs && o.key)
        return cli_usage("ledger %s: --key is for signs", sub);
    if (signs && (o.f.profile || o.f.nf_instance_id || o.f.expiring_before || o.f.revoked_only))
        return cli_usage("ledger signs: --profile, --nf-instance-id, --expiring-before and "
                         "--revoked are for certificates (signs takes --key and --limit)");
    if (show && optind + 1 != argc)
        return cli_usage("ledger show: give exactly one SERIAL");
    if (!show && optind != argc)
        return cli_usage("ledger %s: unexpected argument '%s'", sub, argv[optind]);
    if (exp && !o.format)
        return cli_usage("ledger export: --format jsonl or csv is required");
    if (!exp && o.format)
        return cli_usage("ledger %s: --format is for export", sub);
    if (!exp && o.out)
        return cli_usage("ledger %s: --out is for export", sub);
    if (!exp && o.force)
        return cli_usage("ledger %s: --force is for export --out", sub);
    if (o.json && !show && strcmp(sub, "list") != 0)
        return cli_usage("ledger %s: --json is for show and list%s", sub,
                         exp ? " (export has --format jsonl)" : "");
    if (exp && o.out && cli_out_check("ledger export", "--out", o.out, o.force, 0) != CLI_OK)
        return CLI_FAIL;
    ledger *l = NULL;
    if ((rc = open_ro(&o, &l)) != CLI_OK)
        return rc;
    char err[1024];
    if (signs) {
        size_t ns = 0;
        rc = ledger_list_signs(l, o.key, o.f.limit, signs_cb, &ns, err, sizeof(err));
        ledger_close(l);
        if (rc != 0)
            return cli_fail("%s", err);
        fprintf(stderr, "%zu signature%s\n", ns, ns == 1 ? "" : "s");
        return fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
    }
    if (show) {
        char serial[CF_SERIAL_HEX_MAX + 1];
        if (cf_serial_norm(argv[optind], serial) != 0) {
            ledger_close(l);
            return cli_usage("ledger show: '%s' is not a serial number (hex)", argv[optind]);
        }
        exp_arg sa = {false, 0, stdout, false};
        int f = ledger_find(l, serial, o.json ? export_cb : show_cb, &sa, err, sizeof(err));
        ledger_close(l);
        if (f < 0)
            return cli_fail("%s", err);
        return f == 1 ? CLI_OK : cli_fail("ledger show: no certificate with serial %s", serial);
    }
    size_t n = 0;
    exp_arg ea = {o.format && strcmp(o.format, "csv") == 0, 0, stdout, o.json};
    cf_outfile of;
    char oerr[4400];
    if (exp && cf_outfile_open(&of, o.out ? o.out : "-", 0600, cli_out_flags(o.force, 0), oerr,
                               sizeof(oerr)) != 0) {
        ledger_close(l);
        return cli_out_fail("ledger export", o.out ? o.out : "-", oerr);
    }
    if (exp)
        ea.f = of.f;
    if (exp && ea.csv)
        for (size_t i = 0; i < N_EXP_FIELDS; i++)
            csv_field(ea.f, exp_fields[i], i + 1 == N_EXP_FIELDS);
    bool records = exp || o.json; /* the export's records */
    rc = ledger_list(l, &o.f, records ? export_cb : list_cb, records ? (void *)&ea : (void *)&n,
                     err, sizeof(err));
    ledger_close(l);
    if (rc != 0) {
        if (exp)
            cf_outfile_abort(&of);
        return cli_fail("%s", rc < 0 ? err : "write error");
    }
    if (o.json) {
        fputs(ea.n ? "\n]\n" : "[]\n", stdout);
        n = ea.n;
    }
    if (!exp)
        fprintf(stderr, "%zu certificate%s\n", n, n == 1 ? "" : "s");
    if (exp && cf_outfile_commit(&of, oerr, sizeof(oerr)) != 0)
        return cli_out_fail("ledger export", o.out ? o.out : "-", oerr);
    return fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
}

static int cmd_show(int argc, char **argv)
{
    return run("show", argc, argv);
}
static int cmd_list(int argc, char **argv)
{
    return run("list", argc, argv);
}
static int cmd_export(int argc, char **argv)
{
    return run("export", argc, argv);
}
static int cmd_signs(int argc, char **argv)
{
    return run("signs", argc, argv);
}

int cmd_ledger(int argc, char **argv)
{
    static const cli_command subs[] = {
        {"show", cmd_show, "one record and its certificate"},
        {"list", cmd_list, "records, filtered"},
        {"export", cmd_export, "records as JSON lines or CSV"},
        {"signs", cmd_signs, "the raw SIGN operations"},
    };
    return cli_dispatch("ledger", subs, sizeof(subs) / sizeof(subs[0]), ledger_help, argc, argv);
}
