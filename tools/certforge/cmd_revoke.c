/* certforge revoke — revoke a certificate through certforged (REVOKE,
 * docs/protocol.md), and certforge crl — fetch or make an issuer's CRL
 * (CRL). */
#include "common/outfile.h"
#include "common/reason.h"
#include "common/serial.h"
#include "tools/certforge/ca_x509.h"
#include "tools/certforge/cli.h"
#include "tools/certforge/cli_daemon.h"
#include "tools/certforge/commands.h"

#include <getopt.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char revoke_help[] =
    "usage: certforge revoke --serial HEX [--reason REASON] [--requester TAG] [--json]\n"
    "                        [--socket PATH]\n"
    "\n"
    "Revokes the certificate with this serial number: certforged records the\n"
    "revocation in its ledger and makes new CRLs within crl.revoke_delay. Revoking\n"
    "a revoked certificate changes nothing: the first revocation (time, reason)\n"
    "stands and is printed.\n"
    "\n"
    "OPTIONS\n"
    "  --serial HEX      the serial number, hex (\"0a1b...\", \"0A:1B:...\", \"0x0a1b\"),\n"
    "                    at most 20 octets, as 'openssl x509 -serial' prints it\n"
    "  --reason REASON   RFC 5280 reason: unspecified (default), keyCompromise,\n"
    "                    cACompromise, affiliationChanged, superseded,\n"
    "                    cessationOfOperation, certificateHold, privilegeWithdrawn,\n"
    "                    aACompromise (any case)\n"
    "  --requester TAG   recorded in the daemon's log\n"
    "  --json            print one JSON object on standard output instead of the line:\n"
    "                    serial (hex), reason, revoked_at (ISO 8601 UTC), and\n"
    "                    already_revoked (true when an earlier revocation stands)\n" CLI_SOCKET_HELP
    "  --timeout SECONDS how long to wait for the answer (default 10)\n"
    "  --help            this text\n"
    "\n"
    "EXAMPLES\n"
    "  certforge revoke --serial $(openssl x509 -in nf.pem -noout -serial | cut -d= -f2) \\\n"
    "      --reason keyCompromise\n"
    "\n"
    "EXIT STATUS\n"
    "  0  revoked (now or before)\n"
    "  1  not revoked: unknown serial, not allowed, daemon unreachable, ledger failure\n"
    "  2  usage error\n";

static const char crl_help[] =
    "usage: certforge crl --issuer NAME [--shard K] [--new] [--out FILE [--force]]\n"
    "                     [--der] [--json] [--socket PATH]\n"
    "\n"
    "Fetches the latest CRL certforged made for an issuer (the name in its config's\n"
    "issuers list), or with --new has it make one now. Writes PEM to stdout, or to\n"
    "FILE (PEM, or DER with --der) and then prints a summary. An issuer with\n"
    "crl_shards = N has N CRLs, shards 0 to N-1: --shard picks one.\n"
    "\n"
    "OPTIONS\n"
    "  --issuer NAME     the issuer's name in certforged's config\n"
    "  --shard K         CRL shard K of the issuer (default 0, the only CRL of an\n"
    "                    issuer without crl_shards)\n"
    "  --new             make a new CRL now (signed in the HSM, published to crl.dir)\n"
    "  --out FILE        write the CRL to FILE instead of stdout (an existing FILE is\n"
    "                    refused unless --force)\n"
    "  --force           replace an existing --out FILE\n"
    "  --der             with --out: DER instead of PEM\n"
    "  --json            print one JSON object on standard output instead of the\n"
    "                    summary: issuer (the config name), shard, issuer_dn, number,\n"
    "                    this_update, next_update (ISO 8601 UTC), entries (how many\n"
    "                    revoked), out (null without --out) and, without --out,\n"
    "                    crl (the PEM)\n" CLI_SOCKET_HELP
    "  --timeout SECONDS how long to wait for the answer (default 30)\n"
    "  --help            this text\n"
    "\n"
    "EXAMPLES\n"
    "  certforge crl --issuer nf-ica --new --out nf-ica.crl --der\n"
    "  certforge crl --issuer nf-ica | openssl crl -noout -text\n"
    "  certforge crl --issuer nf-ica --shard 7 --out nf-ica-7.crl --der\n"
    "\n"
    "EXIT STATUS\n"
    "  0  the CRL was written\n"
    "  1  no CRL: unknown issuer or shard, CRLs not configured, not allowed, daemon\n"
    "     unreachable\n"
    "  2  usage error\n";

enum { OPT_SOCKET = 256, OPT_SERIAL, OPT_REASON, OPT_REQUESTER, OPT_TIMEOUT, OPT_HELP, OPT_ISSUER,
       OPT_NEW, OPT_OUT, OPT_DER, OPT_FORCE, OPT_JSON, OPT_SHARD };

static void iso_time(const ASN1_TIME *t, char *buf, size_t cap)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1 || !strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, cap, "?");
}

int cmd_revoke(int argc, char **argv)
{
    static const struct option lo[] = {{"socket", required_argument, NULL, OPT_SOCKET},
                                       {"serial", required_argument, NULL, OPT_SERIAL},
                                       {"reason", required_argument, NULL, OPT_REASON},
                                       {"requester", required_argument, NULL, OPT_REQUESTER},
                                       {"timeout", required_argument, NULL, OPT_TIMEOUT},
                                       {"json", no_argument, NULL, OPT_JSON},
                                       {"help", no_argument, NULL, OPT_HELP},
                                       {0, 0, 0, 0}};
    const char *socket = NULL, *serial = NULL, *requester = NULL;
    bool json = false;
    int reason = 0;
    unsigned long timeout = 10;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case OPT_SOCKET:
            socket = optarg;
            break;
        case OPT_SERIAL:
            serial = optarg;
            break;
        case OPT_REASON:
            reason = cf_reason_code(optarg);
            if (reason < 0 || reason == 8)
                return cli_usage("revoke: --reason '%s' is not one of unspecified, "
                                 "keyCompromise, cACompromise, affiliationChanged, superseded, "
                                 "cessationOfOperation, certificateHold, privilegeWithdrawn, "
                                 "aACompromise",
                                 optarg);
            break;
        case OPT_REQUESTER:
            requester = optarg;
            break;
        case OPT_JSON:
            json = true;
            break;
        case OPT_TIMEOUT:
            if (!cli_parse_uint(optarg, 1, 3600, &timeout))
                return cli_usage("revoke: --timeout must be 1-3600 seconds, not '%s'", optarg);
            break;
        case OPT_HELP:
            fputs(revoke_help, stdout);
            return CLI_OK;
        default:
            return cli_bad_option("revoke", argc, argv);
        }
    }
    if (optind < argc)
        return cli_usage("revoke: unexpected argument '%s'", argv[optind]);
    if (!serial)
        return cli_usage("revoke: --serial is required (see certforge revoke --help)");
    char norm[CF_SERIAL_HEX_MAX + 1];
    uint8_t sb[CF_SERIAL_MAX];
    size_t sl = 0;
    if (cf_serial_norm(serial, norm) != 0 || cf_hex_decode(norm, sb, sizeof(sb), &sl) != 0)
        return cli_usage("revoke: --serial '%s' is not a serial number (hex, 1-20 octets)",
                         serial);
    socket = cli_socket_path(socket);
    cf_client *cl = NULL;
    int rc = cli_connect("revoke", socket, &cl);
    if (rc != CLI_OK)
        return rc;
    cf_response r;
    cf_str tag = {requester, requester ? strlen(requester) : 0};
    int q = cf_revoke_one(cl, sb, sl, (unsigned)reason, tag, (int)timeout * 1000, &r);
    if ((rc = cli_answer("revoke", socket, cl, q, timeout, &r)) == CLI_OK) {
        char when[32] = "?";
        time_t t = (time_t)r.revoked_at;
        struct tm tm;
        if (gmtime_r(&t, &tm))
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        const char *rn = cf_reason_name((int)r.reason);
        bool before = (int)r.reason != reason || r.revoked_at + 60 < (int64_t)time(NULL);
        if (json) {
            cli_json j;
            cj_init(&j, stdout);
            cj_obj(&j, NULL);
            cj_str(&j, "serial", norm);
            cj_str(&j, "reason", rn ? rn : "?");
            cj_str(&j, "revoked_at", when);
            cj_bool(&j, "already_revoked", before);
            cj_end_obj(&j);
            cj_done(&j);
        } else {
            printf("revoked %s since %s reason %s\n", norm, when, rn ? rn : "?");
            if (before)
                cli_note("revoke: it was revoked before; the first revocation stands");
        }
    }
    cf_client_close(cl);
    return rc;
}

int cmd_crl(int argc, char **argv)
{
    static const struct option lo[] = {{"socket", required_argument, NULL, OPT_SOCKET},
                                       {"issuer", required_argument, NULL, OPT_ISSUER},
                                       {"shard", required_argument, NULL, OPT_SHARD},
                                       {"new", no_argument, NULL, OPT_NEW},
                                       {"out", required_argument, NULL, OPT_OUT},
                                       {"der", no_argument, NULL, OPT_DER},
                                       {"force", no_argument, NULL, OPT_FORCE},
                                       {"json", no_argument, NULL, OPT_JSON},
                                       {"timeout", required_argument, NULL, OPT_TIMEOUT},
                                       {"help", no_argument, NULL, OPT_HELP},
                                       {0, 0, 0, 0}};
    const char *socket = NULL, *issuer = NULL, *out = NULL;
    bool fresh = false, der = false, force = false, json = false;
    unsigned long timeout = 30, shard = 0;
    bool has_shard = false;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case OPT_SOCKET:
            socket = optarg;
            break;
        case OPT_ISSUER:
            issuer = optarg;
            break;
        case OPT_SHARD:
            if (!cli_parse_uint(optarg, 0, 65535, &shard))
                return cli_usage("crl: --shard must be a shard number 0-65535, not '%s'", optarg);
            has_shard = true;
            break;
        case OPT_NEW:
            fresh = true;
            break;
        case OPT_OUT:
            out = optarg;
            break;
        case OPT_DER:
            der = true;
            break;
        case OPT_FORCE:
            force = true;
            break;
        case OPT_JSON:
            json = true;
            break;
        case OPT_TIMEOUT:
            if (!cli_parse_uint(optarg, 1, 3600, &timeout))
                return cli_usage("crl: --timeout must be 1-3600 seconds, not '%s'", optarg);
            break;
        case OPT_HELP:
            fputs(crl_help, stdout);
            return CLI_OK;
        default:
            return cli_bad_option("crl", argc, argv);
        }
    }
    if (optind < argc)
        return cli_usage("crl: unexpected argument '%s'", argv[optind]);
    if (!issuer || !issuer[0])
        return cli_usage("crl: --issuer is required (see certforge crl --help)");
    if (der && !out)
        return cli_usage("crl: --der needs --out FILE (DER is binary)");
    if (out && cli_out_check("crl", "--out", out, force, 0) != CLI_OK)
        return CLI_FAIL;
    socket = cli_socket_path(socket);
    cf_client *cl = NULL;
    int rc = cli_connect("crl", socket, &cl);
    if (rc != CLI_OK)
        return rc;
    cf_response r;
    int q = cf_crl_shard_one(cl, (cf_str){issuer, strlen(issuer)}, (unsigned)shard, fresh,
                             (int)timeout * 1000, &r);
    X509_CRL *x = NULL;
    char *pem = NULL;
    if ((rc = cli_answer("crl", socket, cl, q, timeout, &r)) != CLI_OK)
        goto done;
    const unsigned char *p = r.crl.p;
    if (!(x = d2i_X509_CRL(NULL, &p, (long)r.crl.len))) {
        rc = cli_fail("crl: certforged sent a CRL OpenSSL cannot read");
        goto done;
    }
    cf_outfile of;
    char err[4400];
    if (json && !out) {
        /* standard output carries the JSON: the PEM goes into it */
        BIO *b = BIO_new(BIO_s_mem());
        char *mp = NULL;
        long n = b && PEM_write_bio_X509_CRL(b, x) == 1 ? BIO_get_mem_data(b, &mp) : 0;
        if (n > 0 && (pem = malloc((size_t)n + 1))) {
            memcpy(pem, mp, (size_t)n);
            pem[n] = 0;
        }
        BIO_free(b);
        if (!pem) {
            rc = cli_fail("crl: PEM encoding failed");
            goto done;
        }
        goto summary;
    }
    if (cf_outfile_open(&of, out ? out : "-", 0644, cli_out_flags(force, 0), err, sizeof(err)) !=
        0) {
        rc = cli_out_fail("crl", out ? out : "-", err);
        goto done;
    }
    bool ok =
        der ? fwrite(r.crl.p, 1, r.crl.len, of.f) == r.crl.len : PEM_write_X509_CRL(of.f, x) == 1;
    if (!ok) {
        cf_outfile_abort(&of);
        rc = cli_fail("crl: cannot write %s", out ? out : "stdout");
        goto done;
    }
    if (cf_outfile_commit(&of, err, sizeof(err)) != 0) {
        rc = cli_out_fail("crl", out ? out : "-", err);
        goto done;
    }
summary:
    if (json) {
        ASN1_INTEGER *num = X509_CRL_get_ext_d2i(x, NID_crl_number, NULL, NULL);
        STACK_OF(X509_REVOKED) *rv = X509_CRL_get_REVOKED(x);
        char tu[40], nu[40], dn[1024];
        iso_time(X509_CRL_get0_lastUpdate(x), tu, sizeof(tu));
        iso_time(X509_CRL_get0_nextUpdate(x), nu, sizeof(nu));
        cax_format_name(X509_CRL_get_issuer(x), dn, sizeof(dn));
        cli_json j;
        cj_init(&j, stdout);
        cj_obj(&j, NULL);
        cj_str(&j, "issuer", issuer);
        cj_int(&j, "shard", (long)shard);
        cj_str(&j, "issuer_dn", dn);
        if (num)
            cj_int(&j, "number", ASN1_INTEGER_get(num));
        else
            cj_null(&j, "number");
        cj_str(&j, "this_update", tu);
        cj_str(&j, "next_update", X509_CRL_get0_nextUpdate(x) ? nu : NULL);
        cj_int(&j, "entries", rv ? sk_X509_REVOKED_num(rv) : 0);
        cj_str(&j, "out", out);
        if (pem)
            cj_str(&j, "crl", pem);
        cj_end_obj(&j);
        cj_done(&j);
        ASN1_INTEGER_free(num);
    } else if (out) {
        ASN1_INTEGER *num = X509_CRL_get_ext_d2i(x, NID_crl_number, NULL, NULL);
        STACK_OF(X509_REVOKED) *rv = X509_CRL_get_REVOKED(x);
        char nu[64] = "?";
        const ASN1_TIME *t = X509_CRL_get0_nextUpdate(x);
        struct tm tm;
        if (t && ASN1_TIME_to_tm(t, &tm) == 1)
            strftime(nu, sizeof(nu), "%Y-%m-%dT%H:%M:%SZ", &tm);
        char sh[32] = "";
        if (has_shard)
            snprintf(sh, sizeof(sh), " shard %lu", shard);
        printf("%s: CRL number %ld of issuer %s%s, %d revoked, next update %s\n", out,
               num ? ASN1_INTEGER_get(num) : -1L, issuer, sh, rv ? sk_X509_REVOKED_num(rv) : 0, nu);
        ASN1_INTEGER_free(num);
    }
    rc = CLI_OK;
done:
    free(pem);
    X509_CRL_free(x);
    cf_client_close(cl);
    return rc;
}
