/* commands.h — the top-level subcommands. A new subcommand adds its
 * handler here and one line to the table in main.c. */
#ifndef CF_COMMANDS_H
#define CF_COMMANDS_H

int cmd_keys(int argc, char **argv);
int cmd_ca(int argc, char **argv);
int cmd_issue(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_csrgen(int argc, char **argv);
int cmd_ledger(int argc, char **argv);
int cmd_revoke(int argc, char **argv);
int cmd_crl(int argc, char **argv);
int cmd_acme(int argc, char **argv);
int cmd_token(int argc, char **argv);

#endif
