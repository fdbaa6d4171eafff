/* certforge keys — list, generate, show, export-pub, delete. */
#include "common/outfile.h"
#include "hsm/hsm_admin.h"
#include "tools/certforge/ca_x509.h"
#include "tools/certforge/cli_daemon.h"
#include "tools/certforge/cli.h"
#include "tools/certforge/commands.h"

#include <errno.h>
#include <getopt.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

static const char keys_usage[] =
    "usage: certforge keys SUBCOMMAND [OPTIONS]\n"
    "\n"
    "Subcommands:\n"
    "  list        tokens of the module and, with a token and PIN, the keys on it\n"
    "  generate    generate a key pair (sensitive, non-extractable, sign-only)\n"
    "  show        one key's attributes\n"
    "  export-pub  the public key as PEM (SubjectPublicKeyInfo)\n"
    "  csr         a CSR signed by the key, for an external or offline CA\n"
    "  delete      destroy a key pair and its certificate object (refused while a\n"
    "              running certforged uses the key)\n"
    "\n"
    "Every subcommand takes --token URI (default: $CERTFORGE_TOKEN) and --help.\n"
    "\n"
    "EXAMPLES\n"
    "  certforge keys list --json\n"
    "  certforge keys generate --type ed25519 --label int-2025\n"
    "\n"
    "EXIT STATUS\n"
    "  0 success, 1 failure, 2 usage error.\n";

#define COMMON_HELP                                                                                \
    "  --token URI   token (RFC 7512; module-path, pin-source); default $CERTFORGE_TOKEN\n"        \
    "  --help        this text\n"

/* The key: --key URI, the spelling `ca` uses; a lone KEY-URI argument is
 * still accepted (what these commands took before). */
#define KEY_HELP                                                                                   \
    "  --key URI     the key: object= and/or id=, its token part completes --token\n"              \
    "                (the URI may also be given alone, as the only argument)\n"

#define EXIT_HELP                                                                                  \
    "EXIT STATUS\n"                                                                                \
    "  0  success\n"                                                                               \
    "  1  failure: module not loadable, no such token, PIN rejected, key not found, ...\n"         \
    "  2  usage error: unknown option, missing or invalid argument\n"

enum {
    OPT_TOKEN = 256,
    OPT_JSON,
    OPT_HELP,
    OPT_TYPE,
    OPT_LABEL,
    OPT_ID,
    OPT_OUT,
    OPT_YES,
    OPT_FORCE,
    OPT_SOCKET,
    OPT_SUBJECT,
    OPT_KEY
};

/* The certificate object of a key, summarised (subject, notAfter,
 * SHA-256 fingerprint); false when the key has none or it cannot be read. */
typedef struct cert_info {
    bool have;
    char subject[512], not_after[40], fp[100];
} cert_info;

static void key_cert(hsm_token *t, const hsm_key_desc *k, cert_info *ci)
{
    memset(ci, 0, sizeof(*ci));
    if (!k->has_cert)
        return;
    uint8_t *der = NULL;
    size_t len = 0;
    hsm_err e = {0};
    if (hsm_cert_load(t, k->uri, &der, &len, &e) != 0)
        return;
    ci->have = cax_summary(der, len, ci->subject, sizeof(ci->subject), ci->not_after,
                           sizeof(ci->not_after), ci->fp, sizeof(ci->fp)) == 0;
    free(der);
}

/* --- output ------------------------------------------------------------------- */

static const char *yn(bool b)
{
    return b ? "yes" : "no";
}

static void type_str(const hsm_key_desc *k, char *buf, size_t n)
{
    if (!k->type_known)
        snprintf(buf, n, "unsupported");
    else if (k->type == CF_KEY_RSA)
        snprintf(buf, n, "rsa-%u", k->bits);
    else
        snprintf(buf, n, "%s", cf_key_type_name(k->type));
}

static void usage_str(const hsm_key_desc *k, char *buf, size_t n)
{
    snprintf(buf, n, "%s%s%s%s", k->sign ? "sign," : "", k->decrypt ? "decrypt," : "",
             k->unwrap ? "unwrap," : "", k->derive ? "derive," : "");
    size_t l = strlen(buf);
    if (l)
        buf[l - 1] = '\0';
    else
        snprintf(buf, n, "-");
}

static void key_json(cli_json *j, const char *key, const hsm_key_desc *k, const char *token,
                     const cert_info *ci)
{
    cj_obj(j, key);
    cj_str(j, "label", k->label);
    cj_str(j, "id", k->id_hex);
    char ty[32];
    type_str(k, ty, sizeof(ty)); /* "rsa-2048": as the table and keys generate --type say it */
    cj_str(j, "type", ty);
    cj_int(j, "bits", k->bits);
    cj_bool(j, "sensitive", k->sensitive);
    cj_bool(j, "extractable", k->extractable);
    cj_bool(j, "always_sensitive", k->always_sensitive);
    cj_bool(j, "never_extractable", k->never_extractable);
    cj_bool(j, "local", k->local);
    cj_bool(j, "sign", k->sign);
    cj_bool(j, "decrypt", k->decrypt);
    cj_bool(j, "unwrap", k->unwrap);
    cj_bool(j, "derive", k->derive);
    cj_bool(j, "public_key", k->has_public);
    cj_bool(j, "certificate", k->has_cert);
    if (ci && ci->have) {
        cj_str(j, "certificate_subject", ci->subject);
        cj_str(j, "certificate_not_after", ci->not_after);
        cj_str(j, "certificate_sha256", ci->fp);
    }
    cj_str(j, "token", token);
    cj_str(j, "uri", k->uri);
    cj_end_obj(j);
}

static void key_text(const hsm_key_desc *k, const char *token, const cert_info *ci)
{
    char ty[32], us[64];
    type_str(k, ty, sizeof(ty));
    usage_str(k, us, sizeof(us));
    printf("label:              %s\n", k->label);
    printf("id:                 %s\n", k->id_hex[0] ? k->id_hex : "(none)");
    printf("type:               %s (%u bits)\n", ty, k->bits);
    printf("token:              %s\n", token);
    printf("sensitive:          %s\n", yn(k->sensitive));
    printf("extractable:        %s\n", yn(k->extractable));
    printf("always sensitive:   %s\n", yn(k->always_sensitive));
    printf("never extractable:  %s\n", yn(k->never_extractable));
    printf("generated on token: %s\n", yn(k->local));
    printf("usage:              %s\n", us);
    printf("public key object:  %s\n", yn(k->has_public));
    printf("certificate object: %s\n", yn(k->has_cert));
    if (ci && ci->have) {
        printf("  subject:          %s\n", ci->subject);
        printf("  not after:        %s\n", ci->not_after);
        printf("  sha256:           %s\n", ci->fp);
    }
    printf("uri:                %s\n", k->uri);
}

/* --- list ----------------------------------------------------------------------- */

static const char list_help[] =
    "usage: certforge keys list [--token URI] [--json]\n"
    "\n"
    "Lists the tokens of the PKCS#11 module named by the token URI's module-path\n"
    "(label, serial, model, manufacturer, flags, free sessions). When the URI selects\n"
    "a token (token=, serial=) and a PIN is available (pin-source or CERTFORGE_PIN),\n"
    "also lists the private keys on it: label, id, type and size, sensitive,\n"
    "extractable, usage, whether public key and certificate objects exist, and the\n"
    "key's RFC 7512 URI; then every certificate object on the token (a key's own,\n"
    "or one another tool stored: its label blocks 'keys generate' all the same)\n"
    "with its subject, notAfter and SHA-256 fingerprint. Objects are found with\n"
    "C_FindObjects, so tokens holding Ed25519 keys list correctly.\n"
    "\n"
    "OPTIONS\n" COMMON_HELP "  --json        machine-readable output (fields named after PKCS#11 "
    "attributes)\n"
    "\n"
    "EXAMPLES\n"
    "  certforge keys list --token 'pkcs11:?module-path=/usr/lib/softhsm/libsofthsm2.so'\n"
    "  certforge keys list --json | jq -r '.keys[] | select(.type==\"ec-p384\") | .uri'\n"
    "\n" EXIT_HELP;

static void token_json(cli_json *j, const hsm_token_desc *d)
{
    cj_obj(j, NULL);
    cj_str(j, "label", d->label);
    cj_str(j, "serial", d->serial);
    cj_str(j, "model", d->model);
    cj_str(j, "manufacturer", d->manufacturer);
    cj_bool(j, "initialized", d->initialized);
    cj_arr(j, "flags");
    const char *names[32];
    size_t nf = hsm_token_flag_names(d->flags, names, 32);
    for (size_t i = 0; i < nf; i++)
        cj_str(j, NULL, names[i]);
    cj_end_arr(j);
    if (d->sessions_open >= 0)
        cj_int(j, "session_count", d->sessions_open);
    else
        cj_null(j, "session_count");
    if (d->sessions_max > 0)
        cj_int(j, "max_session_count", d->sessions_max);
    else
        cj_null(j, "max_session_count"); /* no limit reported */
    if (d->free_sessions >= 0)
        cj_int(j, "free_sessions", d->free_sessions);
    else
        cj_null(j, "free_sessions");
    cj_str(j, "uri", d->uri[0] ? d->uri : NULL);
    cj_end_obj(j);
}

static int keys_list(int argc, char **argv)
{
    static const struct option lo[] = {{"token", required_argument, NULL, OPT_TOKEN},
                                       {"json", no_argument, NULL, OPT_JSON},
                                       {"help", no_argument, NULL, OPT_HELP},
                                       {0, 0, 0, 0}};
    const char *token = NULL;
    bool json = false;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case OPT_TOKEN:
            token = optarg;
            break;
        case OPT_JSON:
            json = true;
            break;
        case OPT_HELP:
            fputs(list_help, stdout);
            return CLI_OK;
        default:
            return cli_bad_option("keys list", argc, argv);
        }
    }
    if (optind < argc)
        return cli_usage("keys list: unexpected argument '%s'", argv[optind]);

    hsm_err e = {0};
    hsm_uri_facts f = {0};
    const char *uri = cli_token_uri(token);
    if (uri && hsm_uri_facts_get(uri, &f, &e) != 0)
        return cli_hsm_fail(&e);
    const char *module = f.module_path[0] ? f.module_path : CF_SOFTHSM_MODULE;
    hsm_token_desc *td = NULL;
    size_t nt = 0;
    if (hsm_module_tokens(module, &td, &nt, &e) != 0)
        return cli_hsm_fail(&e);

    hsm_token *t = NULL;
    hsm_key_desc *kd = NULL;
    hsm_cert_desc *cd = NULL;
    size_t nk = 0, nc = 0;
    bool listed_keys = false;
    int rc = CLI_OK;
    if (uri && f.selects_token) {
        if (f.has_pin_source || getenv("CERTFORGE_PIN")) {
            rc = cli_open_token(uri, false, &t);
            if (rc != CLI_OK)
                goto out;
            if (hsm_keys_list(t, &kd, &nk, &e) != 0 || hsm_certs_list(t, &cd, &nc, &e) != 0) {
                rc = cli_hsm_fail(&e);
                goto out;
            }
            listed_keys = true;
        } else {
            cli_note("no PIN source (pin-source= in the URI or CERTFORGE_PIN): keys not listed");
        }
    }

    if (json) {
        cli_json j;
        cj_init(&j, stdout);
        cj_obj(&j, NULL);
        cj_str(&j, "module", module);
        cj_arr(&j, "tokens");
        for (size_t i = 0; i < nt; i++)
            token_json(&j, &td[i]);
        cj_end_arr(&j);
        if (listed_keys) {
            cj_str(&j, "token", hsm_token_label(t));
            cj_arr(&j, "keys");
            for (size_t i = 0; i < nk; i++) {
                cert_info ci;
                key_cert(t, &kd[i], &ci);
                key_json(&j, NULL, &kd[i], hsm_token_label(t), &ci);
            }
            cj_end_arr(&j);
            cj_arr(&j, "certificates");
            for (size_t i = 0; i < nc; i++) {
                char sub[512], na[40], fp[100];
                bool okc = cax_summary(cd[i].der, cd[i].der_len, sub, sizeof(sub), na, sizeof(na),
                                       fp, sizeof(fp)) == 0;
                cj_obj(&j, NULL);
                cj_str(&j, "label", cd[i].label);
                cj_str(&j, "id", cd[i].id_hex);
                cj_str(&j, "subject", okc ? sub : NULL);
                cj_str(&j, "not_after", okc ? na : NULL);
                cj_str(&j, "sha256", okc ? fp : NULL);
                cj_bool(&j, "private_key", cd[i].has_private);
                cj_end_obj(&j);
            }
            cj_end_arr(&j);
        } else {
            cj_null(&j, "token");
            cj_null(&j, "keys");
            cj_null(&j, "certificates");
        }
        cj_end_obj(&j);
        cj_done(&j);
        goto out;
    }
    printf("module: %s\n\n", module);
    printf("%-24s %-17s %-16s %-14s %s\n", "TOKEN", "SERIAL", "MODEL", "FREE SESSIONS", "FLAGS");
    for (size_t i = 0; i < nt; i++) {
        char fs[32], flags[512] = "";
        if (td[i].free_sessions >= 0)
            snprintf(fs, sizeof(fs), "%ld of %ld", td[i].free_sessions, td[i].sessions_max);
        else
            snprintf(fs, sizeof(fs), "%s", td[i].sessions_max == 0 ? "no limit" : "unknown");
        const char *names[32];
        size_t nf = hsm_token_flag_names(td[i].flags, names, 32), used = 0;
        for (size_t k = 0; k < nf; k++) {
            int w = snprintf(flags + used, sizeof(flags) - used, "%s%s", k ? "," : "", names[k]);
            if (w > 0 && used + (size_t)w < sizeof(flags))
                used += (size_t)w;
        }
        printf("%-24s %-17s %-16s %-14s %s\n",
               td[i].initialized ? td[i].label : "(not initialised)", td[i].serial, td[i].model, fs,
               flags);
    }
    if (listed_keys) {
        printf("\nkeys on token '%s':\n", hsm_token_label(t));
        if (nk == 0)
            printf("(none)\n");
        else
            printf("%-20s %-16s %-9s %-9s %-11s %-7s %-4s %-4s %s\n", "LABEL", "ID", "TYPE",
                   "SENSITIVE", "EXTRACTABLE", "USAGE", "PUB", "CERT", "URI");
        for (size_t i = 0; i < nk; i++) {
            char ty[32], us[64];
            type_str(&kd[i], ty, sizeof(ty));
            usage_str(&kd[i], us, sizeof(us));
            printf("%-20s %-16s %-9s %-9s %-11s %-7s %-4s %-4s %s\n", kd[i].label, kd[i].id_hex, ty,
                   yn(kd[i].sensitive), yn(kd[i].extractable), us, yn(kd[i].has_public),
                   yn(kd[i].has_cert), kd[i].uri);
        }
        printf("\ncertificates on token '%s':\n", hsm_token_label(t));
        if (nc == 0)
            printf("(none)\n");
        else
            printf("%-20s %-16s %-4s %-20s %-24s %s\n", "LABEL", "ID", "KEY", "NOT AFTER",
                   "SUBJECT", "SHA-256");
        for (size_t i = 0; i < nc; i++) {
            char sub[512], na[40], fp[100];
            (void)cax_summary(cd[i].der, cd[i].der_len, sub, sizeof(sub), na, sizeof(na), fp,
                              sizeof(fp));
            printf("%-20s %-16s %-4s %-20s %-24s %s\n", cd[i].label, cd[i].id_hex,
                   yn(cd[i].has_private), na, sub, fp);
        }
    }
out:
    free(kd);
    hsm_certs_free(cd, nc);
    free(td);
    hsm_token_close(t);
    return rc;
}

/* --- generate ---------------------------------------------------------------- */

static const char generate_help[] =
    "usage: certforge keys generate --type TYPE --label LABEL [--id HEX] [--token URI] [--json]\n"
    "\n"
    "Generates a key pair on the token. The private key is a private token object,\n"
    "sensitive and non-extractable (it never leaves the token), allowed to sign and\n"
    "nothing else (no decrypt, unwrap or derive); the public key is a public token\n"
    "object allowed to verify. Both carry LABEL and the id. Refuses, changing nothing,\n"
    "when any object on the token already has that label or id. Prints the new key's\n"
    "RFC 7512 URI.\n"
    "\n"
    "OPTIONS\n"
    "  --type TYPE   ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096 or ed25519\n"
    "  --label L     CKA_LABEL of both halves (the URI's object=)\n"
    "  --id HEX      CKA_ID, 1 to 32 bytes in hex (default: 8 random bytes)\n" COMMON_HELP
    "  --json        print the new key as JSON (fields as in 'keys list --json')\n"
    "\n"
    "EXAMPLES\n"
    "  certforge keys generate --type ec-p384 --label root-2025\n"
    "  certforge keys generate --type rsa-3072 --label legacy-root --id 0a01\n"
    "\n" EXIT_HELP;

static int keys_generate(int argc, char **argv)
{
    static const struct option lo[] = {{"token", required_argument, NULL, OPT_TOKEN},
                                       {"json", no_argument, NULL, OPT_JSON},
                                       {"help", no_argument, NULL, OPT_HELP},
                                       {"type", required_argument, NULL, OPT_TYPE},
                                       {"label", required_argument, NULL, OPT_LABEL},
                                       {"id", required_argument, NULL, OPT_ID},
                                       {0, 0, 0, 0}};
    const char *token = NULL, *type = NULL, *label = NULL, *idhex = NULL;
    bool json = false;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case OPT_TOKEN:
            token = optarg;
            break;
        case OPT_JSON:
            json = true;
            break;
        case OPT_TYPE:
            type = optarg;
            break;
        case OPT_LABEL:
            label = optarg;
            break;
        case OPT_ID:
            idhex = optarg;
            break;
        case OPT_HELP:
            fputs(generate_help, stdout);
            return CLI_OK;
        default:
            return cli_bad_option("keys generate", argc, argv);
        }
    }
    if (optind < argc)
        return cli_usage("keys generate: unexpected argument '%s'", argv[optind]);
    if (!type)
        return cli_usage("keys generate: --type is required (one of: %s)", hsm_gen_type_list());
    if (!label || !*label)
        return cli_usage("keys generate: --label is required");
    hsm_err e = {0};
    hsm_gen_type g;
    if (hsm_gen_type_parse(type, &g, &e) != 0)
        return cli_usage("%s", e.msg);
    uint8_t id[32];
    size_t idlen = 0;
    if (idhex && !cli_parse_hex(idhex, id, sizeof(id), &idlen))
        return cli_usage("keys generate: --id '%s' is not 1 to 32 bytes of hex", idhex);

    hsm_token *t = NULL;
    int rc = cli_open_token(token, false, &t);
    if (rc != CLI_OK)
        return rc;
    hsm_key_desc k;
    if (hsm_key_generate(t, g, label, idlen ? id : NULL, idlen, &k, &e) != 0) {
        rc = cli_hsm_fail(&e);
    } else if (json) {
        cli_json j;
        cj_init(&j, stdout);
        key_json(&j, NULL, &k, hsm_token_label(t), NULL);
        cj_done(&j);
    } else {
        printf("%s\n", k.uri);
    }
    hsm_token_close(t);
    return rc;
}

/* --- show / export-pub / delete ------------------------------------------------- */

static const char show_help[] =
    "usage: certforge keys show --key URI [--token URI] [--json]\n"
    "\n"
    "Shows one private key: label, id, type and size, sensitive, extractable,\n"
    "always-sensitive, never-extractable, generated on the token, usage, whether\n"
    "public key and certificate objects with its id exist (the certificate's\n"
    "subject, notAfter and SHA-256 fingerprint), and its URI.\n"
    "\n"
    "OPTIONS\n" KEY_HELP COMMON_HELP "  --json        machine-readable output\n"
    "\n"
    "EXAMPLES\n"
    "  certforge keys show --key 'pkcs11:token=CA;object=root-2025'\n"
    "\n" EXIT_HELP;

static const char export_help[] =
    "usage: certforge keys export-pub --key URI [--out FILE [--force]] [--token URI]\n"
    "\n"
    "Writes the key's public half as PEM (SubjectPublicKeyInfo, 'BEGIN PUBLIC KEY')\n"
    "to FILE or standard output. The private key never leaves the token.\n"
    "\n"
    "OPTIONS\n" KEY_HELP
    "  --out FILE    write here instead of standard output (mode 0644, through a\n"
    "                temporary file; a symlink, FIFO or device is refused; an\n"
    "                existing FILE is refused unless --force)\n"
    "  --force       replace an existing FILE\n" COMMON_HELP "\n"
    "EXAMPLES\n"
    "  certforge keys export-pub --key 'pkcs11:token=CA;object=root-2025' --out root-2025.pub.pem\n"
    "  openssl pkey -pubin -in root-2025.pub.pem -text -noout\n"
    "\n" EXIT_HELP;

static const char csr_help[] =
    "usage: certforge keys csr --key URI --subject DN [--out FILE [--force]] [--token URI]\n"
    "\n"
    "Writes a PKCS#10 CSR for the key, signed by it inside the token (the signature\n"
    "algorithm that fits the key: ecdsa-with-SHA256/384, sha256WithRSAEncryption,\n"
    "Ed25519), so that a CA outside this token — an offline root, an external CA —\n"
    "can certify it; the CSR is verified before it is written. Import the\n"
    "certificate it gives you with the key's ceremony ('certforge ca show --cert').\n"
    "\n"
    "OPTIONS\n" KEY_HELP
    "  --subject DN  e.g. '/C=FI/O=Example/CN=Example Issuing CA'\n"
    "  --out FILE    PEM output (default: standard output; mode 0644, through a\n"
    "                temporary file; a symlink, FIFO or device is refused; an\n"
    "                existing FILE is refused unless --force)\n"
    "  --force       replace an existing FILE\n" COMMON_HELP "\n"
    "EXAMPLES\n"
    "  certforge keys csr --key 'pkcs11:token=CA;object=issuing-2025' \\\n"
    "      --subject '/C=FI/O=Example/CN=Example Issuing CA' --out issuing.csr\n"
    "  openssl req -in issuing.csr -verify -noout -subject\n"
    "\n" EXIT_HELP;

static const char delete_help[] =
    "usage: certforge keys delete --key URI --yes [--force] [--socket PATH] [--token URI]\n"
    "\n"
    "Destroys the private key --key selects, and the public key and certificate\n"
    "objects that carry its CKA_ID, after printing what will go (with the\n"
    "certificate's subject and notAfter). There is no undo: a sensitive,\n"
    "non-extractable key has no backup outside the token. Without --yes nothing is\n"
    "done (exit 2).\n"
    "\n"
    "A key a running certforged uses is refused: certforged at the socket is asked\n"
    "for its keys (KEYS) and one with the same public key stops the deletion.\n"
    "When certforged runs but will not say (no 'keys' grant for this user), the\n"
    "deletion is refused too; --force deletes all the same.\n"
    "\n"
    "OPTIONS\n"
    "  --yes         really destroy the objects\n"
    "  --force       even when certforged uses the key or cannot be asked\n" CLI_SOCKET_HELP
        COMMON_HELP "\n"
    "EXAMPLES\n"
    "  certforge keys delete 'pkcs11:token=CA;object=test-key' --yes\n"
    "\n" EXIT_HELP;

enum key_op { OP_SHOW, OP_EXPORT, OP_DELETE, OP_CSR };

/* Does the certforged at socket use this public key? 0 no (or no daemon
 * runs there), 1 yes (its name in `name`), -1 cannot tell (why). */
static int daemon_uses_key(const char *sock, EVP_PKEY *pub, char *name, size_t ncap, char *why,
                           size_t wcap)
{
    struct stat st;
    if (stat(sock, &st) != 0)
        return 0; /* no socket: no daemon */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    int r = fd >= 0 ? connect(fd, (struct sockaddr *)&sa, sizeof(sa)) : -1;
    int e = errno;
    if (fd >= 0)
        close(fd);
    if (r != 0 && (e == ECONNREFUSED || e == ENOENT))
        return 0; /* a stale socket: nobody listens */
    if (r != 0) {
        snprintf(why, wcap, "cannot connect to certforged at %s: %s", sock, strerror(e));
        return -1;
    }
    cf_client *c = NULL;
    char err[256];
    if (cf_client_connect(sock, &c, err, sizeof(err)) != 0) {
        snprintf(why, wcap, "certforged at %s: %s", sock, err);
        return -1;
    }
    uint8_t *der = NULL;
    int dl = i2d_PUBKEY(pub, &der);
    cf_response resp;
    int rc = -1;
    int q = cf_client_keys(c, 10000, &resp);
    if (q != 0) {
        snprintf(why, wcap, "certforged at %s did not answer KEYS: %s", sock,
                 q > 0 ? "timeout" : cf_client_error(c));
    } else if (resp.status != CF_ST_OK) {
        snprintf(why, wcap,
                 "certforged at %s answered KEYS with %s (add \"keys\" to this user's "
                 "grant)",
                 sock, cf_status_name(resp.status));
    } else {
        rc = 0;
        for (unsigned i = 0; dl > 0 && i < resp.n_keys; i++)
            if (resp.keys[i].spki.len == (size_t)dl &&
                memcmp(resp.keys[i].spki.p, der, (size_t)dl) == 0) {
                snprintf(name, ncap, "%.*s", (int)resp.keys[i].name.len, resp.keys[i].name.p);
                rc = 1;
                break;
            }
    }
    OPENSSL_free(der);
    cf_client_close(c);
    return rc;
}

static int key_csr(hsm_token *t, const char *key, const char *subject, const char *out,
                   bool force)
{
    char msg[600];
    X509_NAME *name = NULL;
    X509_REQ *req = NULL;
    EVP_PKEY *pub = NULL;
    hsm_signer *sg = NULL;
    hsm_err e = {0};
    cf_outfile of;
    int rc = CLI_FAIL;
    if (cax_parse_name(subject, &name, msg, sizeof(msg)) != 0)
        return cli_usage("keys csr: %s", msg);
    if (out && (rc = cli_out_check("keys csr", "--out", out, force, 0)) != CLI_OK)
        goto done;
    rc = CLI_FAIL;
    if (hsm_signer_open(t, key, 1, &sg, &e) != 0 || !(pub = hsm_signer_public_key(sg, &e))) {
        rc = cli_hsm_fail(&e);
        goto done;
    }
    req = X509_REQ_new();
    if (!req || !X509_REQ_set_version(req, X509_REQ_VERSION_1) ||
        !X509_REQ_set_subject_name(req, name) || !X509_REQ_set_pubkey(req, pub)) {
        rc = cli_fail("keys csr: building the CSR failed");
        goto done;
    }
    if (cax_sign_req(req, sg, pub, msg, sizeof(msg)) != 0) {
        rc = cli_fail("keys csr: %s", msg);
        goto done;
    }
    if (cf_outfile_open(&of, out ? out : "-", 0644, cli_out_flags(force, 0), msg, sizeof(msg)) !=
        0) {
        rc = cli_out_fail("keys csr", out, msg);
        goto done;
    }
    if (PEM_write_X509_REQ(of.f, req) != 1) {
        cf_outfile_abort(&of);
        rc = cli_fail("keys csr: writing the CSR failed");
        goto done;
    }
    if (cf_outfile_commit(&of, msg, sizeof(msg)) != 0) {
        rc = cli_out_fail("keys csr", out, msg);
        goto done;
    }
    rc = CLI_OK;
done:
    X509_REQ_free(req);
    X509_NAME_free(name);
    EVP_PKEY_free(pub);
    hsm_signer_close(sg);
    return rc;
}

static int key_command(enum key_op op, int argc, char **argv)
{
    static const char *const names[] = {"keys show", "keys export-pub", "keys delete", "keys csr"};
    static const char *const helps[] = {show_help, export_help, delete_help, csr_help};
    static const struct option lo[] = {{"token", required_argument, NULL, OPT_TOKEN},
                                       {"json", no_argument, NULL, OPT_JSON},
                                       {"help", no_argument, NULL, OPT_HELP},
                                       {"out", required_argument, NULL, OPT_OUT},
                                       {"yes", no_argument, NULL, OPT_YES},
                                       {"force", no_argument, NULL, OPT_FORCE},
                                       {"socket", required_argument, NULL, OPT_SOCKET},
                                       {"subject", required_argument, NULL, OPT_SUBJECT},
                                       {"key", required_argument, NULL, OPT_KEY},
                                       {0, 0, 0, 0}};
    const char *name = names[op];
    const char *token = NULL, *out = NULL, *sock_opt = NULL, *subject = NULL, *key = NULL;
    bool json = false, yes = false, force = false;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case OPT_TOKEN:
            token = optarg;
            break;
        case OPT_JSON:
            if (op != OP_SHOW)
                return cli_bad_option(name, argc, argv);
            json = true;
            break;
        case OPT_OUT:
            if (op != OP_EXPORT && op != OP_CSR)
                return cli_bad_option(name, argc, argv);
            out = optarg;
            break;
        case OPT_FORCE:
            if (op != OP_DELETE && op != OP_EXPORT && op != OP_CSR)
                return cli_bad_option(name, argc, argv);
            force = true;
            break;
        case OPT_YES:
        case OPT_SOCKET:
            if (op != OP_DELETE)
                return cli_bad_option(name, argc, argv);
            if (c == OPT_YES)
                yes = true;
            else
                sock_opt = optarg;
            break;
        case OPT_SUBJECT:
            if (op != OP_CSR)
                return cli_bad_option(name, argc, argv);
            subject = optarg;
            break;
        case OPT_KEY:
            key = optarg;
            break;
        case OPT_HELP:
            fputs(helps[op], stdout);
            return CLI_OK;
        default:
            return cli_bad_option(name, argc, argv);
        }
    }
    if (key && optind < argc)
        return cli_usage("%s: the key is given twice (--key and '%s'); give it once", name,
                         argv[optind]);
    if (!key && optind >= argc)
        return cli_usage("%s: which key? --key URI, e.g. --key 'pkcs11:token=CA;object=root'",
                         name);
    if (!key && optind + 1 < argc)
        return cli_usage("%s: unexpected argument '%s'", name, argv[optind + 1]);
    if (!key)
        key = argv[optind];
    if (op == OP_DELETE && !yes)
        return cli_usage("%s: refusing to destroy %s without --yes (the private key, its public "
                         "key and certificate objects would be gone for good)",
                         name, key);
    if (op == OP_CSR && !subject)
        return cli_usage("%s: --subject is required (e.g. '/C=FI/O=Example/CN=Issuing CA')", name);

    hsm_token *t = NULL;
    int rc = cli_open_token_for_key(token, key, &t);
    if (rc != CLI_OK)
        return rc;
    hsm_err e = {0};
    hsm_key_desc k;
    cert_info ci;
    if (hsm_key_get(t, key, &k, &e) != 0) {
        rc = cli_hsm_fail(&e);
        goto out;
    }
    key_cert(t, &k, &ci);
    if (op == OP_SHOW) {
        if (json) {
            cli_json j;
            cj_init(&j, stdout);
            key_json(&j, NULL, &k, hsm_token_label(t), &ci);
            cj_done(&j);
        } else {
            key_text(&k, hsm_token_label(t), &ci);
        }
    } else if (op == OP_CSR) {
        rc = key_csr(t, key, subject, out, force);
    } else if (op == OP_EXPORT) {
        EVP_PKEY *pk = hsm_key_public(t, key, &e);
        if (!pk) {
            rc = cli_hsm_fail(&e);
            goto out;
        }
        cf_outfile of;
        char err[4400];
        if (out && (rc = cli_out_check(name, "--out", out, force, 0)) != CLI_OK) {
            EVP_PKEY_free(pk);
            goto out;
        }
        if (cf_outfile_open(&of, out ? out : "-", 0644, cli_out_flags(force, 0), err,
                            sizeof(err)) != 0) {
            EVP_PKEY_free(pk);
            rc = cli_out_fail(name, out ? out : "-", err);
            goto out;
        }
        int ok = PEM_write_PUBKEY(of.f, pk);
        EVP_PKEY_free(pk);
        if (!ok) {
            cf_outfile_abort(&of);
            rc = cli_fail("writing the public key to %s failed", out ? out : "standard output");
        } else if (cf_outfile_commit(&of, err, sizeof(err)) != 0) {
            rc = cli_out_fail(name, out ? out : "-", err);
        }
    } else {
        /* a key certforged signs with is not pulled from under it */
        EVP_PKEY *pk = hsm_key_public(t, key, &e);
        if (!pk) {
            rc = cli_hsm_fail(&e);
            goto out;
        }
        const char *sock = cli_socket_path(sock_opt);
        char used[128] = "", why[600] = "";
        int u = daemon_uses_key(sock, pk, used, sizeof(used), why, sizeof(why));
        EVP_PKEY_free(pk);
        if (u == 1 && !force) {
            rc = cli_fail("%s: refusing: certforged at %s uses this key as '%s'%s%s%s; stop it "
                          "or take the key out of its config first (or --force)",
                          name, sock, used, ci.have ? " (certificate " : "",
                          ci.have ? ci.subject : "", ci.have ? ")" : "");
            goto out;
        }
        if (u < 0 && !force) {
            rc = cli_fail("%s: refusing: cannot tell whether certforged uses this key: %s (or "
                          "--force)",
                          name, why);
            goto out;
        }
        if (u != 0)
            cli_note("%s: --force: %s", name, u == 1 ? "certforged uses this key" : why);
        printf("destroying on token '%s': private key '%s' (id %s, %s)%s%s%s%s%s\n",
               hsm_token_label(t), k.label, k.id_hex, k.uri, ci.have ? ", certificate " : "",
               ci.have ? ci.subject : "", ci.have ? " (not after " : "",
               ci.have ? ci.not_after : "", ci.have ? ")" : "");
        unsigned np = 0, nc = 0;
        if (hsm_key_delete(t, key, &np, &nc, &e) != 0) {
            rc = cli_hsm_fail(&e);
            goto out;
        }
        printf("destroyed on token '%s': private key '%s' (id %s), %u public key object%s, %u "
               "certificate object%s\n",
               hsm_token_label(t), k.label, k.id_hex, np, np == 1 ? "" : "s", nc,
               nc == 1 ? "" : "s");
    }
out:
    hsm_token_close(t);
    return rc;
}

static int keys_show(int argc, char **argv)
{
    return key_command(OP_SHOW, argc, argv);
}
static int keys_export(int argc, char **argv)
{
    return key_command(OP_EXPORT, argc, argv);
}
static int keys_delete(int argc, char **argv)
{
    return key_command(OP_DELETE, argc, argv);
}
static int keys_csr(int argc, char **argv)
{
    return key_command(OP_CSR, argc, argv);
}

static const cli_command keys_cmds[] = {
    {"list", keys_list, "tokens and keys"},      {"generate", keys_generate, "generate a key pair"},
    {"show", keys_show, "one key's attributes"}, {"export-pub", keys_export, "public key as PEM"},
    {"csr", keys_csr, "CSR signed by the key"},  {"delete", keys_delete, "destroy a key pair"},
};

int cmd_keys(int argc, char **argv)
{
    return cli_dispatch("keys", keys_cmds, sizeof(keys_cmds) / sizeof(keys_cmds[0]), keys_usage,
                        argc, argv);
}
