/* certforge — command-line tool. main() only dispatches: each subcommand
 * lives in its own cmd_*.c and is listed in the table below. */
#include "tools/certforge/cli.h"
#include "tools/certforge/commands.h"

#include <stdio.h>
#include <string.h>

static const cli_command commands[] = {
    {"token", cmd_token, "initialise a PKCS#11 token, change its user PIN"},
    {"keys", cmd_keys, "list, generate, show, export, CSR and delete keys on a PKCS#11 token"},
    {"ca", cmd_ca, "CA ceremonies: root, intermediate, cross-sign (rollover); show a CA cert"},
    {"issue", cmd_issue, "issue certificates through certforged: one CSR, or a batch pipelined"},
    {"status", cmd_status, "certforged's counters: uptime, issued, rate, queue, HSM sessions"},
    {"csr-gen", cmd_csrgen, "test/demo helper: N NF CSRs and a batch file for 'issue --batch'"},
    {"revoke", cmd_revoke, "revoke a certificate through certforged (RFC 5280 reasons)"},
    {"crl", cmd_crl, "an issuer's (or one shard's) latest CRL from certforged, or a new one"},
    {"ledger", cmd_ledger, "read the issuance ledger: show a serial, list, export (jsonl, csv)"},
    {"acme", cmd_acme, "certforge-acme's state: EAB keys, accounts, orders, status"},
};

static void usage(FILE *f)
{
    fputs("usage: certforge COMMAND [SUBCOMMAND] [OPTIONS]\n"
          "\n"
          "certforge talks to the PKCS#11 token that holds the CA keys (HSM administration)\n"
          "and, through certforged, issues certificates.\n"
          "\n"
          "Commands:\n",
          f);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
    fputs("\n"
          "keys and ca select their token with --token URI (RFC 7512, e.g.\n"
          "'pkcs11:token=CA?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/"
          "certforge/pin'),\n"
          "defaulting to the CERTFORGE_TOKEN environment variable. The PIN comes from the\n"
          "URI's pin-source (file:/path with mode 0600, or env:NAME) or from CERTFORGE_PIN;\n"
          "never from the command line. 'certforge COMMAND --help' describes each command.\n"
          "issue, status, revoke and crl talk to certforged on its Unix socket instead\n"
          "(--socket PATH, default $CERTFORGE_SOCKET, then /run/certforge/certforged.sock).\n"
          "\n"
          "ENVIRONMENT\n"
          "  CERTFORGE_TOKEN   token URI used when --token is not given\n"
          "  CERTFORGE_SOCKET  certforged's socket, when --socket is not given\n"
          "  CERTFORGE_PIN     user PIN, when the URI has no pin-source\n"
          "  SOFTHSM2_CONF     SoftHSM2 configuration (which token folder)\n"
          "\n"
          "EXAMPLES\n"
          "  export "
          "CERTFORGE_TOKEN='pkcs11:token=CA?module-path=/usr/lib/softhsm/"
          "libsofthsm2.so&pin-source=file:/etc/certforge/pin'\n"
          "  certforge keys list\n"
          "  certforge keys generate --type ec-p384 --label root-2025\n"
          "  certforge ca init-root --key 'pkcs11:token=CA;object=root-2025' \\\n"
          "      --subject '/C=FI/O=Example/CN=Example Root CA' --out root.pem\n"
          "\n"
          "EXIT STATUS\n"
          "  0  success\n"
          "  1  failure (token, PIN, key, certificate or file problem); one line on stderr\n"
          "  2  usage error (unknown command or option, missing or invalid argument)\n"
          "\n"
          "See certforge(1) and docs/hsm-admin.md.\n",
          f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return CLI_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("certforge %s\n", CF_VERSION);
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(cmd, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    return cli_usage("unknown command '%s'; see 'certforge --help'", cmd);
}
