/* certforge token — initialise a token, change its user PIN. PINs only
 * from files (mode 0600), never from the command line. */
#include "hsm/hsm_admin.h"
#include "tools/certforge/cli.h"
#include "tools/certforge/commands.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

static const char token_usage[] =
    "usage: certforge token SUBCOMMAND [OPTIONS]\n"
    "\n"
    "Subcommands:\n"
    "  init        initialise a free token of the module: label, SO PIN, user PIN\n"
    "  change-pin  change the user PIN of a token\n"
    "\n"
    "PINs come from files that only their owner can read (chmod 600), never from\n"
    "the command line. 'certforge keys list' shows the module's tokens.\n"
    "\n"
    "EXAMPLES\n"
    "  certforge token init --label CA --so-pin-file so.pin --pin-file user.pin\n"
    "  certforge token change-pin --token 'pkcs11:token=CA?pin-source=file:user.pin' \\\n"
    "      --new-pin-file new.pin\n"
    "\n"
    "EXIT STATUS\n"
    "  0 success, 1 failure, 2 usage error.\n";

static const char init_help[] =
    "usage: certforge token init --label LABEL --so-pin-file FILE --pin-file FILE\n"
    "                            [--module PATH] [--json]\n"
    "\n"
    "Initialises the first token of the PKCS#11 module that is not initialised yet\n"
    "(SoftHSM keeps one free token in every configuration): C_InitToken with the SO\n"
    "PIN and LABEL, then C_InitPIN with the user PIN. A label another token of the\n"
    "module already has is refused, nothing changed. Prints the new token's URI.\n"
    "\n"
    "OPTIONS\n"
    "  --label LABEL       the token label, 1 to 32 characters (the URI's token=)\n"
    "  --so-pin-file FILE  the security officer's PIN (first line; mode 0600)\n"
    "  --pin-file FILE     the user PIN (first line; mode 0600); the URI printed\n"
    "                      names it as pin-source\n"
    "  --module PATH       PKCS#11 module (default: the module-path of $CERTFORGE_TOKEN,\n"
    "                      else " CF_SOFTHSM_MODULE ")\n"
    "  --json              print {\"label\", \"serial\", \"uri\"}\n"
    "  --help              this text\n"
    "\n"
    "ENVIRONMENT\n"
    "  SOFTHSM2_CONF   SoftHSM: the configuration naming the token folder\n"
    "\n"
    "EXAMPLES\n"
    "  (umask 077; openssl rand -hex 8 > so.pin; openssl rand -hex 8 > user.pin)\n"
    "  certforge token init --label CA --so-pin-file so.pin --pin-file user.pin\n"
    "\n"
    "EXIT STATUS\n"
    "  0  the token is initialised and has its user PIN\n"
    "  1  failure: module, no free token, label taken, PIN file problem\n"
    "  2  usage error\n";

static const char change_help[] =
    "usage: certforge token change-pin --new-pin-file FILE [--token URI]\n"
    "\n"
    "Changes the user PIN of the token the URI selects (C_SetPIN): the current PIN\n"
    "comes from the URI's pin-source (or CERTFORGE_PIN), the new one from FILE.\n"
    "Afterwards, point the pin-source of every user of the token (certforged's\n"
    "config, $CERTFORGE_TOKEN) at the new PIN.\n"
    "\n"
    "OPTIONS\n"
    "  --new-pin-file FILE  the new user PIN (first line; mode 0600)\n"
    "  --token URI          token (RFC 7512; module-path, pin-source); default\n"
    "                       $CERTFORGE_TOKEN\n"
    "  --help               this text\n"
    "\n"
    "EXAMPLES\n"
    "  (umask 077; openssl rand -hex 8 > new.pin)\n"
    "  certforge token change-pin --token 'pkcs11:token=CA?pin-source=file:user.pin' \\\n"
    "      --new-pin-file new.pin && mv new.pin user.pin\n"
    "\n"
    "EXIT STATUS\n"
    "  0  the PIN is changed\n"
    "  1  failure: token, current PIN refused, new PIN refused by the token, file problem\n"
    "  2  usage error\n";

enum {
    OPT_LABEL = 256,
    OPT_SO_PIN_FILE,
    OPT_PIN_FILE,
    OPT_MODULE,
    OPT_JSON,
    OPT_HELP,
    OPT_TOKEN,
    OPT_NEW_PIN_FILE
};

static int token_init(int argc, char **argv)
{
    static const struct option lo[] = {{"label", required_argument, NULL, OPT_LABEL},
                                       {"so-pin-file", required_argument, NULL, OPT_SO_PIN_FILE},
                                       {"pin-file", required_argument, NULL, OPT_PIN_FILE},
                                       {"module", required_argument, NULL, OPT_MODULE},
                                       {"json", no_argument, NULL, OPT_JSON},
                                       {"help", no_argument, NULL, OPT_HELP},
                                       {0, 0, 0, 0}};
    const char *label = NULL, *so_file = NULL, *pin_file = NULL, *module = NULL;
    bool json = false;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case OPT_LABEL:
            label = optarg;
            break;
        case OPT_SO_PIN_FILE:
            so_file = optarg;
            break;
        case OPT_PIN_FILE:
            pin_file = optarg;
            break;
        case OPT_MODULE:
            module = optarg;
            break;
        case OPT_JSON:
            json = true;
            break;
        case OPT_HELP:
            fputs(init_help, stdout);
            return CLI_OK;
        default:
            return cli_bad_option("token init", argc, argv);
        }
    }
    if (optind < argc)
        return cli_usage("token init: unexpected argument '%s'", argv[optind]);
    if (!label || !*label)
        return cli_usage("token init: --label is required");
    if (strlen(label) > 32)
        return cli_usage("token init: --label '%s' is longer than 32 characters", label);
    if (!so_file || !pin_file)
        return cli_usage("token init: --so-pin-file and --pin-file are required (PINs never go "
                         "on the command line)");
    hsm_uri_facts f = {0};
    hsm_err e = {0};
    const char *env = cli_token_uri(NULL);
    if (!module && env && hsm_uri_facts_get(env, &f, &e) == 0 && f.module_path[0])
        module = f.module_path;
    if (!module)
        module = CF_SOFTHSM_MODULE;
    char so[256], pin[256], serial[17] = "";
    size_t sl = 0, pl = 0;
    int rc = cli_read_pin_file("--so-pin-file", so_file, so, sizeof(so), &sl);
    if (rc == CLI_OK)
        rc = cli_read_pin_file("--pin-file", pin_file, pin, sizeof(pin), &pl);
    if (rc == CLI_OK && hsm_token_init(module, label, so, sl, pin, pl, serial, &e) != 0)
        rc = cli_hsm_fail(&e);
    OPENSSL_cleanse(so, sizeof(so));
    OPENSSL_cleanse(pin, sizeof(pin));
    if (rc != CLI_OK)
        return rc;
    char *abs = realpath(pin_file, NULL);
    char uri[2048];
    snprintf(uri, sizeof(uri), "pkcs11:token=%s;serial=%s?module-path=%s&pin-source=file:%s", label,
             serial, module, abs ? abs : pin_file);
    free(abs);
    if (json) {
        cli_json j;
        cj_init(&j, stdout);
        cj_obj(&j, NULL);
        cj_str(&j, "label", label);
        cj_str(&j, "serial", serial);
        cj_str(&j, "uri", uri);
        cj_end_obj(&j);
        cj_done(&j);
    } else {
        printf("%s\n", uri);
    }
    return CLI_OK;
}

static int token_change_pin(int argc, char **argv)
{
    static const struct option lo[] = {{"new-pin-file", required_argument, NULL, OPT_NEW_PIN_FILE},
                                       {"token", required_argument, NULL, OPT_TOKEN},
                                       {"help", no_argument, NULL, OPT_HELP},
                                       {0, 0, 0, 0}};
    const char *token = NULL, *new_file = NULL;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case OPT_NEW_PIN_FILE:
            new_file = optarg;
            break;
        case OPT_TOKEN:
            token = optarg;
            break;
        case OPT_HELP:
            fputs(change_help, stdout);
            return CLI_OK;
        default:
            return cli_bad_option("token change-pin", argc, argv);
        }
    }
    if (optind < argc)
        return cli_usage("token change-pin: unexpected argument '%s'", argv[optind]);
    if (!new_file)
        return cli_usage("token change-pin: --new-pin-file is required (PINs never go on the "
                         "command line)");
    char np[256];
    size_t nl = 0;
    int rc = cli_read_pin_file("--new-pin-file", new_file, np, sizeof(np), &nl);
    hsm_token *t = NULL;
    if (rc == CLI_OK)
        rc = cli_open_token(token, false, &t);
    hsm_err e = {0};
    if (rc == CLI_OK && hsm_token_change_pin(t, np, nl, &e) != 0)
        rc = cli_hsm_fail(&e);
    OPENSSL_cleanse(np, sizeof(np));
    if (rc == CLI_OK)
        printf("user PIN of token '%s' changed; point its pin-source at %s\n", hsm_token_label(t),
               new_file);
    hsm_token_close(t);
    return rc;
}

static const cli_command token_cmds[] = {
    {"init", token_init, "initialise a free token"},
    {"change-pin", token_change_pin, "change the user PIN"},
};

int cmd_token(int argc, char **argv)
{
    return cli_dispatch("token", token_cmds, sizeof(token_cmds) / sizeof(token_cmds[0]),
                        token_usage, argc, argv);
}
