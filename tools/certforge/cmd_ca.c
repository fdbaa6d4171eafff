/* certforge ca — CA ceremonies: init-root, init-intermediate, show.
 *
 * Extensions follow RFC 5280 for CA certificates: basicConstraints
 * critical cA TRUE (§4.2.1.9), keyUsage critical keyCertSign + cRLSign
 * (§4.2.1.3), subjectKeyIdentifier method (1) (§4.2.1.2),
 * authorityKeyIdentifier keyIdentifier = the issuer's SKI (§4.2.1.1). */
#include "common/outfile.h"
#include "common/serial.h"
#include "hsm/hsm_admin.h"
#include "tools/certforge/ca_x509.h"
#include "tools/certforge/cli.h"
#include "tools/certforge/commands.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

static const char ca_usage[] =
    "usage: certforge ca SUBCOMMAND [OPTIONS]\n"
    "\n"
    "Subcommands:\n"
    "  init-root          self-signed root CA certificate, signed in the HSM\n"
    "  init-intermediate  intermediate CA certificate, signed by the root's HSM key\n"
    "  cross-sign         link certificate for a CA rollover (old root signs the new\n"
    "                     root's subject and key, and the other way round)\n"
    "  show               a CA certificate's fields; whether it matches an HSM key\n"
    "\n"
    "Every subcommand takes --token URI (default: $CERTFORGE_TOKEN) and --help.\n"
    "\n"
    "EXAMPLES\n"
    "  certforge ca init-root --key 'pkcs11:token=CA;object=root' \\\n"
    "      --subject '/C=FI/O=Example/CN=Example Root CA' --out root.pem\n"
    "  certforge ca show --key 'pkcs11:token=CA;object=root'\n"
    "\n"
    "EXIT STATUS\n"
    "  0 success, 1 failure, 2 usage error.\n";

#define EXIT_HELP                                                                                  \
    "EXIT STATUS\n"                                                                                \
    "  0  success\n"                                                                               \
    "  1  failure: token, PIN, key, certificate or file problem; nothing is left\n"                \
    "     half-done (no certificate object stored, no --out file written)\n"                       \
    "  2  usage error: unknown option, missing or invalid argument\n"

static const char root_help[] =
    "usage: certforge ca init-root --key URI --subject DN --out FILE\n"
    "                              [--days N] [--pathlen N] [--replace-cert] [--force]\n"
    "                              [--json] [--token URI]\n"
    "\n"
    "Creates a self-signed root CA certificate for the HSM key URI, signed in the HSM:\n"
    "X.509 v3, random positive 128-bit serial, validity from now for N days,\n"
    "basicConstraints critical CA:TRUE (with pathLenConstraint if --pathlen),\n"
    "keyUsage critical keyCertSign+cRLSign, subjectKeyIdentifier (SHA-1 of the\n"
    "public key), authorityKeyIdentifier = the SKI. Signature: ecdsa-with-SHA256\n"
    "(P-256), ecdsa-with-SHA384 (P-384), sha256WithRSAEncryption (RSA), Ed25519.\n"
    "The signature is verified before anything is kept; then the certificate is\n"
    "stored on the token next to the key (same CKA_ID and label) and written to\n"
    "FILE as PEM.\n"
    "\n"
    "OPTIONS\n"
    "  --key URI        the root's key on the token (object= and/or id=)\n"
    "  --subject DN     e.g. '/C=FI/O=Example/CN=Example Root CA'\n"
    "  --days N         validity in days (default 3650)\n"
    "  --pathlen N      pathLenConstraint (default: none)\n"
    "  --out FILE       PEM output; must not exist yet (unless --force)\n"
    "  --force          replace an existing --out FILE (the file only: a\n"
    "                   certificate object on the token needs --replace-cert)\n"
    "  --replace-cert   replace a certificate object the key already has\n"
    "  --json           print the result as one JSON object on standard output:\n"
    "                   subject, issuer, serial (hex), not_before, not_after\n"
    "                   (ISO 8601 UTC), sha256 (fingerprint), out, token, key\n"
    "  --token URI      token (RFC 7512; module-path, pin-source); default $CERTFORGE_TOKEN\n"
    "  --help           this text\n"
    "\n"
    "EXAMPLES\n"
    "  certforge keys generate --type ec-p384 --label root-2025\n"
    "  certforge ca init-root --key 'pkcs11:token=CA;object=root-2025' \\\n"
    "      --subject '/C=FI/O=Example/CN=Example Root CA 2025' --days 7300 --out root.pem\n"
    "\n" EXIT_HELP;

static const char int_help[] =
    "usage: certforge ca init-intermediate --key URI --issuer-key URI --issuer-cert FILE\n"
    "                                      --subject DN --out FILE [--days N] [--pathlen N]\n"
    "                                      [--replace-cert] [--force] [--json] [--token URI]\n"
    "\n"
    "Creates an intermediate CA certificate for the HSM key --key, signed by the\n"
    "issuer's HSM key --issuer-key whose certificate is --issuer-cert. Same\n"
    "extensions as a root; authorityKeyIdentifier = the issuer's SKI; issuer name =\n"
    "the issuer certificate's subject. The validity never exceeds the issuer's\n"
    "notAfter: a longer --days is clamped, with a note on stderr. The issuer\n"
    "certificate must belong to --issuer-key, be a CA with keyCertSign, and allow\n"
    "the requested path length.\n"
    "\n"
    "OPTIONS\n"
    "  --key URI          the intermediate's key on the token\n"
    "  --issuer-key URI   the issuer's key (same token unless the URI names another)\n"
    "  --issuer-cert FILE the issuer's certificate (PEM or DER)\n"
    "  --subject DN       e.g. '/C=FI/O=Example/CN=Example Issuing CA'\n"
    "  --days N           validity in days (default 1825)\n"
    "  --pathlen N        pathLenConstraint (default 0: may issue end-entity certs only)\n"
    "  --out FILE         PEM output; must not exist yet (unless --force)\n"
    "  --force            replace an existing --out FILE (the file only: a\n"
    "                     certificate object on the token needs --replace-cert)\n"
    "  --replace-cert     replace a certificate object the key already has\n"
    "  --json             print the result as one JSON object on standard output:\n"
    "                     subject, issuer, serial (hex), not_before, not_after\n"
    "                     (ISO 8601 UTC), sha256 (fingerprint), out, token, key\n"
    "  --token URI        token (RFC 7512; module-path, pin-source); default $CERTFORGE_TOKEN\n"
    "  --help             this text\n"
    "\n"
    "EXAMPLES\n"
    "  certforge ca init-intermediate --key 'pkcs11:token=CA;object=issuing-2025' \\\n"
    "      --issuer-key 'pkcs11:token=CA;object=root-2025' --issuer-cert root.pem \\\n"
    "      --subject '/C=FI/O=Example/CN=Example Issuing CA 2025' --out int.pem\n"
    "  openssl verify -x509_strict -CAfile root.pem int.pem\n"
    "\n" EXIT_HELP;

static const char show_help[] =
    "usage: certforge ca show [--key URI] [--cert FILE] [--token URI] [--json]\n"
    "\n"
    "Shows a CA certificate: subject, issuer, serial, validity, key type and size,\n"
    "signature algorithm, subject and authority key identifiers, basic constraints,\n"
    "key usage. With --key alone, the certificate is the one stored on the token\n"
    "next to the key; with --cert, the file (PEM or DER); with both, the file is\n"
    "checked against the key. 'matches key' says whether the certificate's public\n"
    "key is the HSM key's; the SHA-256 fingerprint is openssl's -fingerprint -sha256.\n"
    "\n"
    "OPTIONS\n"
    "  --key URI     HSM key whose certificate to show or to compare with\n"
    "  --cert FILE   certificate file\n"
    "  --token URI   token (RFC 7512; module-path, pin-source); default $CERTFORGE_TOKEN\n"
    "  --json        machine-readable output\n"
    "  --help        this text\n"
    "\n"
    "EXAMPLES\n"
    "  certforge ca show --key 'pkcs11:token=CA;object=root-2025'\n"
    "  certforge ca show --cert int.pem --key 'pkcs11:token=CA;object=issuing-2025' --json\n"
    "\n"
    "EXIT STATUS\n"
    "  0  success; with --key, the certificate belongs to the key\n"
    "  1  the certificate does NOT belong to the key (everything is still shown), or\n"
    "     a token, PIN, key or file problem\n"
    "  2  usage error\n";

enum {
    OPT_TOKEN = 256,
    OPT_HELP,
    OPT_KEY,
    OPT_ISSUER_KEY,
    OPT_ISSUER_CERT,
    OPT_SUBJECT,
    OPT_DAYS,
    OPT_PATHLEN,
    OPT_OUT,
    OPT_REPLACE,
    OPT_CERT,
    OPT_JSON,
    OPT_FORCE
};

/* The serial as lowercase hex, as the text output prints it. */
static void serial_hex(const X509 *x, char *buf, size_t cap)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *h = bn ? BN_bn2hex(bn) : NULL;
    snprintf(buf, cap, "%s", h ? h : "?");
    for (char *q = buf; *q; q++)
        *q = (char)(*q >= 'A' && *q <= 'F' ? *q - 'A' + 'a' : *q);
    OPENSSL_free(h);
    BN_free(bn);
}

/* A ceremony's --json: one object on standard output. token and key are
 * NULL for a link certificate (not stored on the token). */
static void ceremony_json(const X509 *x, const char *out, const char *token, const char *key)
{
    char sub[512], iss[512], nb[40], na[40], ser[100], fp[100];
    cax_format_name(X509_get_subject_name(x), sub, sizeof(sub));
    cax_format_name(X509_get_issuer_name(x), iss, sizeof(iss));
    cax_time(X509_get0_notBefore(x), nb, sizeof(nb));
    cax_time(X509_get0_notAfter(x), na, sizeof(na));
    cax_fingerprint(x, fp, sizeof(fp));
    serial_hex(x, ser, sizeof(ser));
    cli_json j;
    cj_init(&j, stdout);
    cj_obj(&j, NULL);
    cj_str(&j, "subject", sub);
    cj_str(&j, "issuer", iss);
    cj_str(&j, "serial", ser);
    cj_str(&j, "not_before", nb);
    cj_str(&j, "not_after", na);
    cj_str(&j, "sha256", fp);
    cj_str(&j, "out", out);
    if (token) {
        cj_str(&j, "token", token);
        cj_str(&j, "key", key);
    }
    cj_end_obj(&j);
    cj_done(&j);
}

static X509 *load_cert(const char *path, int *rc)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *rc = cli_fail("cannot read certificate %s: %s", path, strerror(errno));
        return NULL;
    }
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    if (!x) {
        rewind(f);
        x = d2i_X509_fp(f, NULL);
    }
    fclose(f);
    ERR_clear_error();
    if (!x)
        *rc = cli_fail("%s is not a certificate (neither PEM nor DER)", path);
    return x;
}

static int add_ext(X509 *x, int nid, void *v, int crit)
{
    return X509_add1_ext_i2d(x, nid, v, crit, X509V3_ADD_DEFAULT) == 1 ? 0 : -1;
}

/* Serial: 16 random octets from the CSPRNG, top bit cleared so the
 * INTEGER stays positive within 20 octets (RFC 5280 §4.1.2.2). */
static int set_serial(X509 *x)
{
    unsigned char b[16];
    BIGNUM *bn = NULL;
    int rc = -1;
    do {
        if (RAND_bytes(b, sizeof(b)) != 1)
            return -1;
        b[0] &= 0x7f;
        BN_free(bn);
        bn = BN_bin2bn(b, sizeof(b), NULL);
    } while (bn && BN_is_zero(bn));
    ASN1_INTEGER *ai = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    if (ai && X509_set_serialNumber(x, ai))
        rc = 0;
    ASN1_INTEGER_free(ai);
    BN_free(bn);
    return rc;
}

/* ski_in: the subject key identifier to carry (a cross-certificate keeps
 * the one of the certificate it links); NULL: method (1) from the key. */
static int ca_extensions(X509 *x, long pathlen, const ASN1_OCTET_STRING *aki_id,
                         const ASN1_OCTET_STRING *ski_in)
{
    int rc = -1;
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    ASN1_OCTET_STRING *ski =
        ski_in ? ASN1_OCTET_STRING_dup(ski_in) : cax_key_id(X509_get_X509_PUBKEY(x));
    AUTHORITY_KEYID *aki = AUTHORITY_KEYID_new();
    if (!bc || !ku || !ski || !aki)
        goto out;
    bc->ca = 0xff;
    if (pathlen >= 0) {
        bc->pathlen = ASN1_INTEGER_new();
        if (!bc->pathlen || !ASN1_INTEGER_set(bc->pathlen, pathlen))
            goto out;
    }
    /* keyCertSign (5), cRLSign (6) */
    if (!ASN1_BIT_STRING_set_bit(ku, 5, 1) || !ASN1_BIT_STRING_set_bit(ku, 6, 1))
        goto out;
    aki->keyid = ASN1_OCTET_STRING_dup(aki_id ? aki_id : ski);
    if (!aki->keyid)
        goto out;
    if (add_ext(x, NID_basic_constraints, bc, 1) || add_ext(x, NID_key_usage, ku, 1) ||
        add_ext(x, NID_subject_key_identifier, ski, 0) ||
        add_ext(x, NID_authority_key_identifier, aki, 0))
        goto out;
    rc = 0;
out:
    BASIC_CONSTRAINTS_free(bc);
    ASN1_BIT_STRING_free(ku);
    ASN1_OCTET_STRING_free(ski);
    AUTHORITY_KEYID_free(aki);
    return rc;
}

static int ca_init(bool root, int argc, char **argv)
{
    const char *cmd = root ? "ca init-root" : "ca init-intermediate";
    static const struct option lo[] = {{"token", required_argument, NULL, OPT_TOKEN},
                                       {"help", no_argument, NULL, OPT_HELP},
                                       {"key", required_argument, NULL, OPT_KEY},
                                       {"issuer-key", required_argument, NULL, OPT_ISSUER_KEY},
                                       {"issuer-cert", required_argument, NULL, OPT_ISSUER_CERT},
                                       {"subject", required_argument, NULL, OPT_SUBJECT},
                                       {"days", required_argument, NULL, OPT_DAYS},
                                       {"pathlen", required_argument, NULL, OPT_PATHLEN},
                                       {"out", required_argument, NULL, OPT_OUT},
                                       {"replace-cert", no_argument, NULL, OPT_REPLACE},
                                       {"force", no_argument, NULL, OPT_FORCE},
                                       {"json", no_argument, NULL, OPT_JSON},
                                       {0, 0, 0, 0}};
    const char *token = NULL, *key = NULL, *ikey = NULL, *icert = NULL, *subject = NULL,
               *out = NULL, *days_s = NULL, *pathlen_s = NULL;
    bool replace = false, force = false, json = false;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case OPT_TOKEN:
            token = optarg;
            break;
        case OPT_KEY:
            key = optarg;
            break;
        case OPT_ISSUER_KEY:
        case OPT_ISSUER_CERT:
            if (root)
                return cli_usage("%s: %s is for init-intermediate (a root signs itself)", cmd,
                                 argv[optind - 1]);
            if (c == OPT_ISSUER_KEY)
                ikey = optarg;
            else
                icert = optarg;
            break;
        case OPT_SUBJECT:
            subject = optarg;
            break;
        case OPT_DAYS:
            days_s = optarg;
            break;
        case OPT_PATHLEN:
            pathlen_s = optarg;
            break;
        case OPT_OUT:
            out = optarg;
            break;
        case OPT_REPLACE:
            replace = true;
            break;
        case OPT_FORCE:
            force = true;
            break;
        case OPT_JSON:
            json = true;
            break;
        case OPT_HELP:
            fputs(root ? root_help : int_help, stdout);
            return CLI_OK;
        default:
            return cli_bad_option(cmd, argc, argv);
        }
    }
    if (optind < argc)
        return cli_usage("%s: unexpected argument '%s'", cmd, argv[optind]);
    if (!key)
        return cli_usage("%s: --key URI is required", cmd);
    if (!root && !ikey)
        return cli_usage("%s: --issuer-key URI is required", cmd);
    if (!root && !icert)
        return cli_usage("%s: --issuer-cert FILE is required", cmd);
    if (!subject)
        return cli_usage("%s: --subject is required (e.g. '/C=FI/O=Example/CN=Root CA')", cmd);
    if (!out)
        return cli_usage("%s: --out FILE is required", cmd);
    unsigned long days = root ? 3650 : 1825, pl = 0;
    long pathlen = root ? -1 : 0;
    if (days_s && !cli_parse_uint(days_s, 1, 36500, &days))
        return cli_usage("%s: --days '%s' is not a number of days from 1 to 36500", cmd, days_s);
    if (pathlen_s) {
        if (!cli_parse_uint(pathlen_s, 0, 100, &pl))
            return cli_usage("%s: --pathlen '%s' is not a number from 0 to 100", cmd, pathlen_s);
        pathlen = (long)pl;
    }
    char msg[512];
    X509_NAME *name = NULL;
    if (cax_parse_name(subject, &name, msg, sizeof(msg)) != 0)
        return cli_usage("%s: %s", cmd, msg);

    int rc = CLI_FAIL;
    hsm_token *t = NULL, *it = NULL;
    hsm_signer *signer = NULL;
    EVP_PKEY *pub = NULL, *ipub = NULL;
    X509 *issuer = NULL, *x = NULL;
    ASN1_OCTET_STRING *iski = NULL;
    unsigned char *der = NULL, *sder = NULL, *ider = NULL, *nder = NULL;
    cf_outfile of = {.fd = -1, .dirfd = -1};
    bool of_open = false;
    hsm_err e = {0};

    /* refused before the HSM signs anything; checked again at the rename */
    if ((rc = cli_out_check(cmd, "--out", out, force, CF_OUT_NOSTDOUT)) != CLI_OK)
        goto done;
    rc = CLI_FAIL;
    if (!root) {
        if (!(issuer = load_cert(icert, &rc)))
            goto done;
        if (X509_check_ca(issuer) == 0 || !(X509_get_key_usage(issuer) & KU_KEY_CERT_SIGN)) {
            rc = cli_fail("%s is not a CA certificate allowed to sign certificates "
                          "(basicConstraints CA:TRUE and keyUsage keyCertSign needed)",
                          icert);
            goto done;
        }
        long ipl = X509_get_pathlen(issuer);
        if (ipl == 0) {
            rc = cli_fail("%s has pathLenConstraint 0: it may not certify another CA", icert);
            goto done;
        }
        if (ipl > 0 && pathlen >= ipl) {
            rc = cli_usage("%s: --pathlen %ld is too long: the issuer's pathLenConstraint is %ld, "
                           "so at most %ld",
                           cmd, pathlen, ipl, ipl - 1);
            goto done;
        }
        if (X509_cmp_time(X509_get0_notAfter(issuer), NULL) <= 0) {
            rc = cli_fail("%s has expired", icert);
            goto done;
        }
    }

    rc = cli_open_token_for_key(token, key, &t);
    if (rc != CLI_OK)
        goto done;
    rc = CLI_FAIL;
    hsm_key_desc kd;
    if (hsm_key_get(t, key, &kd, &e) != 0) {
        rc = cli_hsm_fail(&e);
        goto done;
    }
    if (kd.has_cert && !replace) {
        rc = cli_fail("key %s already has a certificate object on token '%s'; add --replace-cert "
                      "to replace it (nothing was changed)",
                      key, hsm_token_label(t));
        goto done;
    }
    if (!(pub = hsm_key_public(t, key, &e))) {
        rc = cli_hsm_fail(&e);
        goto done;
    }
    if (root) {
        it = t;
        ikey = key;
    } else {
        rc = cli_open_token_for_key(token, ikey, &it);
        if (rc != CLI_OK)
            goto done;
        rc = CLI_FAIL;
    }
    if (hsm_signer_open(it, ikey, 1, &signer, &e) != 0 ||
        !(ipub = hsm_signer_public_key(signer, &e))) {
        rc = cli_hsm_fail(&e);
        goto done;
    }
    if (!root) {
        if (EVP_PKEY_eq(X509_get0_pubkey(issuer), ipub) != 1) {
            rc = cli_fail("%s does not belong to --issuer-key %s (their public keys differ)", icert,
                          ikey);
            goto done;
        }
        if (EVP_PKEY_eq(pub, ipub) == 1) {
            rc = cli_fail("--key and --issuer-key are the same key; use init-root for a "
                          "self-signed certificate");
            goto done;
        }
        const ASN1_OCTET_STRING *s = X509_get0_subject_key_id(issuer);
        iski = s ? ASN1_OCTET_STRING_dup(s) : cax_key_id(X509_get_X509_PUBKEY(issuer));
        if (!iski) {
            rc = cli_fail("cannot determine the issuer's key identifier");
            goto done;
        }
    }

    /* Build the certificate. */
    x = X509_new();
    if (!x || !X509_set_version(x, X509_VERSION_3) || set_serial(x) != 0 ||
        !X509_set_subject_name(x, name) ||
        !X509_set_issuer_name(x, root ? name : X509_get_subject_name(issuer)) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), 0) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL) || !X509_set_pubkey(x, pub)) {
        rc = cli_fail("building the certificate failed");
        goto done;
    }
    if (!root && ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(issuer)) > 0) {
        char ia[40];
        cax_time(X509_get0_notAfter(issuer), ia, sizeof(ia));
        if (!X509_set1_notAfter(x, X509_get0_notAfter(issuer))) {
            rc = cli_fail("building the certificate failed");
            goto done;
        }
        cli_note("validity clamped to the issuer's notAfter %s (--days %lu would outlive the "
                 "issuer)",
                 ia, days);
    }
    if (ca_extensions(x, pathlen, iski, NULL) != 0) {
        rc = cli_fail("adding the CA extensions failed");
        goto done;
    }
    if (cax_sign(&x, signer, ipub, msg, sizeof(msg)) != 0) {
        rc = cli_fail("%s", msg);
        goto done;
    }

    /* Keep it: file first (temporary), then the token, then the name. */
    int dl = i2d_X509(x, &der);
    int sl = i2d_X509_NAME(X509_get_subject_name(x), &sder);
    int il = i2d_X509_NAME(X509_get_issuer_name(x), &ider);
    int nl = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &nder);
    if (dl <= 0 || sl <= 0 || il <= 0 || nl <= 0) {
        rc = cli_fail("encoding the certificate failed");
        goto done;
    }
    /* a temporary file beside --out first; renamed (refusing an existing
     * name) only once the certificate is stored on the token */
    if (cf_outfile_open(&of, out, 0644, cli_out_flags(force, CF_OUT_NOSTDOUT), msg,
                        sizeof(msg)) != 0) {
        rc = cli_out_fail(cmd, out, msg);
        goto done;
    }
    of_open = true;
    if (PEM_write_X509(of.f, x) != 1) {
        rc = cli_fail("writing the certificate to %s failed", out);
        goto done;
    }
    hsm_cert_der cd = {der, (size_t)dl, sder, ider, nder, (size_t)sl, (size_t)il, (size_t)nl};
    if (hsm_cert_store(t, key, &cd, replace, &e) != 0) {
        rc = cli_hsm_fail(&e);
        goto done;
    }
    of_open = false;
    if (cf_outfile_commit(&of, msg, sizeof(msg)) != 0) {
        rc = cli_fail("%s (the certificate is stored on token '%s'; 'certforge ca show --key' "
                      "prints it)",
                      msg, hsm_token_label(t));
        goto done;
    }
    if (json) {
        ceremony_json(x, out, hsm_token_label(t), kd.label);
        rc = CLI_OK;
        goto done;
    }
    char sub[512], na[40], ser[80];
    cax_format_name(X509_get_subject_name(x), sub, sizeof(sub));
    cax_time(X509_get0_notAfter(x), na, sizeof(na));
    serial_hex(x, ser, sizeof(ser));
    printf("%s certificate written to %s and stored on token '%s' with key '%s'\n"
           "  subject:   %s\n  serial:    %s\n  not after: %s\n",
           root ? "root" : "intermediate", out, hsm_token_label(t), kd.label, sub, ser, na);
    rc = CLI_OK;
done:
    if (of_open)
        cf_outfile_abort(&of);
    OPENSSL_free(der);
    OPENSSL_free(sder);
    OPENSSL_free(ider);
    OPENSSL_free(nder);
    X509_free(x);
    X509_free(issuer);
    ASN1_OCTET_STRING_free(iski);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(ipub);
    hsm_signer_close(signer);
    if (it && it != t)
        hsm_token_close(it);
    hsm_token_close(t);
    X509_NAME_free(name);
    return rc;
}

static int ca_init_root(int argc, char **argv)
{
    return ca_init(true, argc, argv);
}
static int ca_init_int(int argc, char **argv)
{
    return ca_init(false, argc, argv);
}

/* --- show --------------------------------------------------------------------- */

static void hex_octets(const ASN1_OCTET_STRING *o, char *buf, size_t cap)
{
    if (!o)
        snprintf(buf, cap, "%s", "");
    else
        cf_hex_encode(ASN1_STRING_get0_data(o), (size_t)ASN1_STRING_length(o), buf, cap);
}

static int ca_show(int argc, char **argv)
{
    static const struct option lo[] = {
        {"token", required_argument, NULL, OPT_TOKEN}, {"help", no_argument, NULL, OPT_HELP},
        {"key", required_argument, NULL, OPT_KEY},     {"cert", required_argument, NULL, OPT_CERT},
        {"json", no_argument, NULL, OPT_JSON},         {0, 0, 0, 0}};
    const char *token = NULL, *key = NULL, *certf = NULL;
    bool json = false;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case OPT_TOKEN:
            token = optarg;
            break;
        case OPT_KEY:
            key = optarg;
            break;
        case OPT_CERT:
            certf = optarg;
            break;
        case OPT_JSON:
            json = true;
            break;
        case OPT_HELP:
            fputs(show_help, stdout);
            return CLI_OK;
        default:
            return cli_bad_option("ca show", argc, argv);
        }
    }
    if (optind < argc)
        return cli_usage("ca show: unexpected argument '%s'", argv[optind]);
    if (!key && !certf)
        return cli_usage("ca show: give --key URI, --cert FILE or both");

    int rc = CLI_FAIL;
    hsm_token *t = NULL;
    X509 *x = NULL;
    EVP_PKEY *pub = NULL;
    hsm_err e = {0};
    if (certf && !(x = load_cert(certf, &rc)))
        goto done;
    if (key) {
        rc = cli_open_token_for_key(token, key, &t);
        if (rc != CLI_OK)
            goto done;
        rc = CLI_FAIL;
        if (!(pub = hsm_key_public(t, key, &e))) {
            rc = cli_hsm_fail(&e);
            goto done;
        }
        if (!x) {
            uint8_t *der = NULL;
            size_t len = 0;
            if (hsm_cert_load(t, key, &der, &len, &e) != 0) {
                rc = cli_hsm_fail(&e);
                goto done;
            }
            const unsigned char *p = der;
            x = d2i_X509(NULL, &p, (long)len);
            free(der);
            if (!x) {
                rc = cli_fail("the certificate object of key %s does not decode", key);
                goto done;
            }
        }
    }
    char sub[512], iss[512], nb[40], na[40], ski[130], aki[130], ser[100];
    cax_format_name(X509_get_subject_name(x), sub, sizeof(sub));
    cax_format_name(X509_get_issuer_name(x), iss, sizeof(iss));
    cax_time(X509_get0_notBefore(x), nb, sizeof(nb));
    cax_time(X509_get0_notAfter(x), na, sizeof(na));
    hex_octets(X509_get0_subject_key_id(x), ski, sizeof(ski));
    hex_octets(X509_get0_authority_key_id(x), aki, sizeof(aki));
    const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
    BIGNUM *bn = ASN1_INTEGER_to_BN(sn, NULL);
    char *h = bn ? BN_bn2hex(bn) : NULL;
    snprintf(ser, sizeof(ser), "%s", h ? h : "?");
    for (char *q = ser; *q; q++)
        *q = (char)(*q >= 'A' && *q <= 'F' ? *q - 'A' + 'a' : *q);
    OPENSSL_free(h);
    BN_free(bn);
    EVP_PKEY *cpk = X509_get0_pubkey(x);
    const char *ktype = "unknown";
    int bits = cpk ? EVP_PKEY_get_bits(cpk) : 0;
    char kbuf[48];
    if (cpk && EVP_PKEY_is_a(cpk, "EC")) {
        char grp[32] = "";
        size_t gl = 0;
        EVP_PKEY_get_group_name(cpk, grp, sizeof(grp), &gl);
        snprintf(kbuf, sizeof(kbuf), "%s",
                 strcmp(grp, "prime256v1") == 0  ? "ec-p256"
                 : strcmp(grp, "secp384r1") == 0 ? "ec-p384"
                                                 : grp);
        ktype = kbuf;
    } else if (cpk && EVP_PKEY_is_a(cpk, "RSA")) {
        ktype = "rsa";
    } else if (cpk && EVP_PKEY_is_a(cpk, "ED25519")) {
        ktype = "ed25519";
    }
    int signid = X509_get_signature_nid(x);
    const char *sigalg = signid != NID_undef ? OBJ_nid2ln(signid) : "unknown";
    bool is_ca = X509_check_ca(x) != 0;
    long pathlen = X509_get_pathlen(x);
    uint32_t ku = X509_get_key_usage(x);
    bool self = X509_check_issued(x, x) == X509_V_OK;
    int matches = pub ? EVP_PKEY_eq(cpk, pub) == 1 : -1;
    char fp[100];
    cax_fingerprint(x, fp, sizeof(fp));
    static const struct {
        uint32_t bit;
        const char *name;
    } kus[] = {{KU_DIGITAL_SIGNATURE, "digitalSignature"},
               {KU_NON_REPUDIATION, "nonRepudiation"},
               {KU_KEY_ENCIPHERMENT, "keyEncipherment"},
               {KU_DATA_ENCIPHERMENT, "dataEncipherment"},
               {KU_KEY_AGREEMENT, "keyAgreement"},
               {KU_KEY_CERT_SIGN, "keyCertSign"},
               {KU_CRL_SIGN, "cRLSign"},
               {KU_ENCIPHER_ONLY, "encipherOnly"},
               {KU_DECIPHER_ONLY, "decipherOnly"}};
    size_t nkus = ku == UINT32_MAX ? 0 : sizeof(kus) / sizeof(kus[0]);

    if (json) {
        cli_json j;
        cj_init(&j, stdout);
        cj_obj(&j, NULL);
        cj_str(&j, "subject", sub);
        cj_str(&j, "issuer", iss);
        cj_str(&j, "serial", ser);
        cj_str(&j, "sha256", fp);
        cj_str(&j, "not_before", nb);
        cj_str(&j, "not_after", na);
        cj_str(&j, "key_type", ktype);
        cj_int(&j, "key_bits", bits);
        cj_str(&j, "signature_algorithm", sigalg);
        cj_str(&j, "subject_key_identifier", ski[0] ? ski : NULL);
        cj_str(&j, "authority_key_identifier", aki[0] ? aki : NULL);
        cj_bool(&j, "ca", is_ca);
        if (pathlen >= 0)
            cj_int(&j, "pathlen", pathlen);
        else
            cj_null(&j, "pathlen");
        cj_arr(&j, "key_usage");
        for (size_t i = 0; i < nkus; i++)
            if (ku & kus[i].bit)
                cj_str(&j, NULL, kus[i].name);
        cj_end_arr(&j);
        cj_bool(&j, "self_signed", self);
        if (matches >= 0)
            cj_bool(&j, "matches_key", matches == 1);
        else
            cj_null(&j, "matches_key");
        cj_end_obj(&j);
        cj_done(&j);
    } else {
        printf("subject:             %s\n", sub);
        printf("issuer:              %s%s\n", iss, self ? " (self-signed)" : "");
        printf("serial:              %s\n", ser);
        printf("sha256 fingerprint:  %s\n", fp);
        printf("not before:          %s\n", nb);
        printf("not after:           %s\n", na);
        printf("key:                 %s (%d bits)\n", ktype, bits);
        printf("signature algorithm: %s\n", sigalg);
        printf("subject key id:      %s\n", ski[0] ? ski : "(none)");
        printf("authority key id:    %s\n", aki[0] ? aki : "(none)");
        if (is_ca && pathlen >= 0)
            printf("basic constraints:   CA:TRUE, pathlen:%ld\n", pathlen);
        else
            printf("basic constraints:   %s\n", is_ca ? "CA:TRUE" : "CA:FALSE");
        printf("key usage:          ");
        if (nkus == 0)
            printf(" (none)");
        for (size_t i = 0; i < nkus; i++)
            if (ku & kus[i].bit)
                printf(" %s", kus[i].name);
        printf("\n");
        printf("matches key:         %s\n", matches < 0 ? "(no --key given)"
                                            : matches   ? "yes"
                                                        : "NO");
    }
    rc = CLI_OK;
    if (matches == 0) {
        fflush(stdout);
        rc = cli_fail("ca show: the certificate's public key is not the key %s's", key);
    }
done:
    EVP_PKEY_free(pub);
    X509_free(x);
    hsm_token_close(t);
    return rc;
}

/* --- cross-sign --------------------------------------------------------------- */

static const char cross_help[] =
    "usage: certforge ca cross-sign --issuer-key URI --issuer-cert FILE --cert FILE\n"
    "                               --out FILE [--force] [--days N] [--json] [--token URI]\n"
    "\n"
    "Makes a link certificate for a CA rollover (RFC 4210 §4.4 \"old with new\",\n"
    "\"new with old\"): the subject, public key, subject key identifier and path\n"
    "length of --cert (e.g. the new root), issued and signed by --issuer-key, whose\n"
    "certificate is --issuer-cert (e.g. the old root). Clients that trust only the\n"
    "old root then accept chains under the new one (and, the other way round,\n"
    "clients already on the new root accept the old one's): run it twice, once\n"
    "with each root as issuer. The link is verified against the issuer key before\n"
    "it is written; it is not stored on the token. Validity: from now for --days\n"
    "(default: until --cert's notAfter), never beyond the issuer's notAfter.\n"
    "\n"
    "OPTIONS\n"
    "  --issuer-key URI   the key that signs (its certificate is --issuer-cert)\n"
    "  --issuer-cert FILE the issuer's CA certificate (PEM or DER)\n"
    "  --cert FILE        the CA certificate whose subject and key the link carries\n"
    "  --out FILE         PEM output; must not exist yet (unless --force)\n"
    "  --force            replace an existing --out FILE\n"
    "  --days N           validity in days (default: up to --cert's notAfter)\n"
    "  --json             print the result as one JSON object on standard output:\n"
    "                     subject, issuer, serial (hex), not_before, not_after\n"
    "                     (ISO 8601 UTC), sha256 (fingerprint), out\n"
    "  --token URI        token (RFC 7512; module-path, pin-source); default $CERTFORGE_TOKEN\n"
    "  --help             this text\n"
    "\n"
    "EXAMPLES\n"
    "  certforge ca cross-sign --issuer-key 'pkcs11:token=CA;object=root-2025' \\\n"
    "      --issuer-cert root-2025.pem --cert root-2030.pem --out root-2030-by-2025.pem\n"
    "  certforge ca cross-sign --issuer-key 'pkcs11:token=CA;object=root-2030' \\\n"
    "      --issuer-cert root-2030.pem --cert root-2025.pem --out root-2025-by-2030.pem\n"
    "  openssl verify -CAfile root-2025.pem -untrusted root-2030-by-2025.pem \\\n"
    "      -untrusted int-2030.pem leaf.pem\n"
    "\n" EXIT_HELP;

static int ca_cross_sign(int argc, char **argv)
{
    static const char cmd[] = "ca cross-sign";
    static const struct option lo[] = {{"token", required_argument, NULL, OPT_TOKEN},
                                       {"help", no_argument, NULL, OPT_HELP},
                                       {"issuer-key", required_argument, NULL, OPT_ISSUER_KEY},
                                       {"issuer-cert", required_argument, NULL, OPT_ISSUER_CERT},
                                       {"cert", required_argument, NULL, OPT_CERT},
                                       {"days", required_argument, NULL, OPT_DAYS},
                                       {"out", required_argument, NULL, OPT_OUT},
                                       {"force", no_argument, NULL, OPT_FORCE},
                                       {"json", no_argument, NULL, OPT_JSON},
                                       {0, 0, 0, 0}};
    const char *token = NULL, *ikey = NULL, *icert = NULL, *certf = NULL, *out = NULL,
               *days_s = NULL;
    bool force = false, json = false;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case OPT_TOKEN:
            token = optarg;
            break;
        case OPT_ISSUER_KEY:
            ikey = optarg;
            break;
        case OPT_ISSUER_CERT:
            icert = optarg;
            break;
        case OPT_CERT:
            certf = optarg;
            break;
        case OPT_DAYS:
            days_s = optarg;
            break;
        case OPT_OUT:
            out = optarg;
            break;
        case OPT_FORCE:
            force = true;
            break;
        case OPT_JSON:
            json = true;
            break;
        case OPT_HELP:
            fputs(cross_help, stdout);
            return CLI_OK;
        default:
            return cli_bad_option(cmd, argc, argv);
        }
    }
    if (optind < argc)
        return cli_usage("%s: unexpected argument '%s'", cmd, argv[optind]);
    if (!ikey || !icert || !certf || !out)
        return cli_usage("%s: --issuer-key, --issuer-cert, --cert and --out are required", cmd);
    unsigned long days = 0;
    if (days_s && !cli_parse_uint(days_s, 1, 36500, &days))
        return cli_usage("%s: --days '%s' is not a number of days from 1 to 36500", cmd, days_s);

    int rc = CLI_FAIL;
    char msg[600];
    X509 *issuer = NULL, *subj = NULL, *x = NULL;
    hsm_token *t = NULL;
    hsm_signer *signer = NULL;
    EVP_PKEY *ipub = NULL;
    ASN1_OCTET_STRING *iski = NULL;
    cf_outfile of = {.fd = -1, .dirfd = -1};
    bool of_open = false;
    hsm_err e = {0};
    if ((rc = cli_out_check(cmd, "--out", out, force, CF_OUT_NOSTDOUT)) != CLI_OK)
        goto done;
    rc = CLI_FAIL;
    if (!(issuer = load_cert(icert, &rc)) || !(subj = load_cert(certf, &rc)))
        goto done;
    rc = CLI_FAIL;
    if (X509_check_ca(issuer) == 0 || !(X509_get_key_usage(issuer) & KU_KEY_CERT_SIGN)) {
        rc = cli_fail("%s is not a CA certificate allowed to sign certificates", icert);
        goto done;
    }
    if (X509_check_ca(subj) == 0) {
        rc = cli_fail("%s is not a CA certificate: a link certificate is for CA rollover", certf);
        goto done;
    }
    if (X509_cmp_time(X509_get0_notAfter(issuer), NULL) <= 0) {
        rc = cli_fail("%s has expired", icert);
        goto done;
    }
    if (EVP_PKEY_eq(X509_get0_pubkey(issuer), X509_get0_pubkey(subj)) == 1) {
        rc = cli_fail("%s and %s have the same key: nothing to link", icert, certf);
        goto done;
    }
    rc = cli_open_token_for_key(token, ikey, &t);
    if (rc != CLI_OK)
        goto done;
    rc = CLI_FAIL;
    if (hsm_signer_open(t, ikey, 1, &signer, &e) != 0 ||
        !(ipub = hsm_signer_public_key(signer, &e))) {
        rc = cli_hsm_fail(&e);
        goto done;
    }
    if (EVP_PKEY_eq(X509_get0_pubkey(issuer), ipub) != 1) {
        rc = cli_fail("%s does not belong to --issuer-key %s (their public keys differ)", icert,
                      ikey);
        goto done;
    }
    const ASN1_OCTET_STRING *is = X509_get0_subject_key_id(issuer);
    iski = is ? ASN1_OCTET_STRING_dup(is) : cax_key_id(X509_get_X509_PUBKEY(issuer));
    x = X509_new();
    if (!iski || !x || !X509_set_version(x, X509_VERSION_3) || set_serial(x) != 0 ||
        !X509_set_subject_name(x, X509_get_subject_name(subj)) ||
        !X509_set_issuer_name(x, X509_get_subject_name(issuer)) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), 0) ||
        !X509_set_pubkey(x, X509_get0_pubkey(subj))) {
        rc = cli_fail("building the link certificate failed");
        goto done;
    }
    if (days ? !X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL)
             : !X509_set1_notAfter(x, X509_get0_notAfter(subj))) {
        rc = cli_fail("building the link certificate failed");
        goto done;
    }
    if (ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(issuer)) > 0) {
        char ia[40];
        cax_time(X509_get0_notAfter(issuer), ia, sizeof(ia));
        if (!X509_set1_notAfter(x, X509_get0_notAfter(issuer))) {
            rc = cli_fail("building the link certificate failed");
            goto done;
        }
        cli_note("validity clamped to the issuer's notAfter %s", ia);
    }
    if (ca_extensions(x, X509_get_pathlen(subj), iski, X509_get0_subject_key_id(subj)) != 0) {
        rc = cli_fail("adding the CA extensions failed");
        goto done;
    }
    if (cax_sign(&x, signer, ipub, msg, sizeof(msg)) != 0) {
        rc = cli_fail("%s", msg);
        goto done;
    }
    if (cf_outfile_open(&of, out, 0644, cli_out_flags(force, CF_OUT_NOSTDOUT), msg,
                        sizeof(msg)) != 0) {
        rc = cli_out_fail(cmd, out, msg);
        goto done;
    }
    of_open = true;
    if (PEM_write_X509(of.f, x) != 1) {
        rc = cli_fail("writing the link certificate to %s failed", out);
        goto done;
    }
    of_open = false;
    if (cf_outfile_commit(&of, msg, sizeof(msg)) != 0) {
        rc = cli_out_fail(cmd, out, msg);
        goto done;
    }
    if (json) {
        ceremony_json(x, out, NULL, NULL);
        rc = CLI_OK;
        goto done;
    }
    char sub[512], iss[512], na[40], fp[100];
    cax_format_name(X509_get_subject_name(x), sub, sizeof(sub));
    cax_format_name(X509_get_issuer_name(x), iss, sizeof(iss));
    cax_time(X509_get0_notAfter(x), na, sizeof(na));
    cax_fingerprint(x, fp, sizeof(fp));
    printf("link certificate written to %s\n  subject:   %s\n  issuer:    %s\n  not after: %s\n"
           "  sha256:    %s\n",
           out, sub, iss, na, fp);
    rc = CLI_OK;
done:
    if (of_open)
        cf_outfile_abort(&of);
    X509_free(x);
    X509_free(issuer);
    X509_free(subj);
    ASN1_OCTET_STRING_free(iski);
    EVP_PKEY_free(ipub);
    hsm_signer_close(signer);
    hsm_token_close(t);
    return rc;
}

static const cli_command ca_cmds[] = {
    {"init-root", ca_init_root, "self-signed root"},
    {"init-intermediate", ca_init_int, "intermediate signed by the root"},
    {"cross-sign", ca_cross_sign, "link certificate for a CA rollover"},
    {"show", ca_show, "show a CA certificate"},
};

int cmd_ca(int argc, char **argv)
{
    return cli_dispatch("ca", ca_cmds, sizeof(ca_cmds) / sizeof(ca_cmds[0]), ca_usage, argc, argv);
}
