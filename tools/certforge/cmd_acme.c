/* certforge acme — administration of certforge-acme's state (docs/acme.md):
 * external account binding keys, accounts, orders. Reads certforge-acme's
 * config for where the state is; works beside a running certforge-acme
 * (every change is one transaction the daemon sees at its next read). */
#include "tools/certforge/cli.h"
#include "tools/certforge/commands.h"

#include <getopt.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acme/acme.h"
#include "acme/config.h"
#include "acme/jws.h"
#include "acme/store.h"
#include "acme/tkauth.h"
#include "common/duration.h"

static const char usage_text[] =
    "usage: certforge acme eab add --config FILE [--kid KID] [--profiles P,...] [--suffixes S,...] [--note TEXT] [--json]\n"
    "       certforge acme eab list --config FILE [--json]\n"
    "       certforge acme eab revoke --config FILE KID\n"
    "       certforge acme accounts list --config FILE [--json]\n"
    "       certforge acme accounts deactivate --config FILE ACCOUNT-ID\n"
    "       certforge acme orders show --config FILE ORDER-ID [--json]\n"
    "       certforge acme status --config FILE [--json]\n"
    "       certforge acme token issue --key URI --cert PEM [--chain PEM] --nf-instance-id UUID\n"
    "             --account-key-thumbprint T [--nf-type TYPE]... [--ttl 10m] [--issuer ISS] [--token URI]\n"
    "\n"
    "Administration of certforge-acme's state (accounts, orders, external account binding\n"
    "keys), found through certforge-acme's configuration file.\n"
    "\n"
    "eab add      a new EAB key (RFC 8555 §7.3.4): prints its key id and HMAC key (base64url,\n"
    "             HS256). The HMAC key is shown once and never again. --profiles limits the\n"
    "             ACME profiles, --suffixes the DNS names (the name or a subdomain of one of\n"
    "             them) that orders of the account it binds may ask for.\n"
    "eab list     every EAB key: id, created, the account it bound, revoked; never the key.\n"
    "eab revoke   refuse the key for new accounts (an account it bound keeps working:\n"
    "             deactivate that account to stop it).\n"
    "accounts list / deactivate   ACME accounts; a deactivated account can do nothing more\n"
    "             and its pending authorizations and orders end (RFC 8555 §7.3.6).\n"
    "orders show  an order with its authorizations, challenges and certificate.\n"
    "token issue  a reference token authority (RFC 9447 tkauth-01, TS 33.310 NfInstanceId):\n"
    "             prints an authority token (JWT, ES256/ES384) for the NF instance ID, bound to\n"
    "             the ACME account whose key has thumbprint T (RFC 7638, base64url), granting\n"
    "             the NF types given; signed in the HSM with --key, whose certificate --cert\n"
    "             (and --chain) go in x5c. The NF presents it to certforge-acme's tkauth-01\n"
    "             challenge as {\"tkauth\": TOKEN}. --token/CERTFORGE_TOKEN select the token as\n"
    "             for 'certforge keys'.\n"
    "status       the running certforge-acme's counters (its status_file, written every\n"
    "             second): requests, orders, issued, validations, store commits, certforged.\n"
    "\n"
    "EXIT STATUS\n"
    "  0 success; 1 failure (state, unknown id); 2 usage\n";

typedef struct opts {
    const char *config, *kid, *profiles, *suffixes, *note;
    bool json;
    int first_arg;
} opts;

static int parse(const char *cmd, int argc, char **argv, opts *o)
{
    static const struct option lo[] = {{"config", required_argument, NULL, 'c'},
                                       {"kid", required_argument, NULL, 'k'},
                                       {"profiles", required_argument, NULL, 'p'},
                                       {"suffixes", required_argument, NULL, 's'},
                                       {"note", required_argument, NULL, 'n'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    memset(o, 0, sizeof(*o));
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'c':
            o->config = optarg;
            break;
        case 'k':
            o->kid = optarg;
            break;
        case 'p':
            o->profiles = optarg;
            break;
        case 's':
            o->suffixes = optarg;
            break;
        case 'n':
            o->note = optarg;
            break;
        case 'j':
            o->json = true;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return 1;
        default:
            return cli_bad_option(cmd, argc, argv);
        }
    }
    if (!o->config)
        return cli_usage("acme %s: --config FILE (certforge-acme's configuration) is required", cmd);
    o->first_arg = optind;
    return 0;
}

static int open_state(const opts *o, acme_cfg **cfg, acme_store **st, acme_db **db)
{
    char err[1024];
    *cfg = NULL;
    *st = NULL;
    *db = NULL;
    if (acme_cfg_load(o->config, cfg, err, sizeof(err)) != 0)
        return cli_fail("%s", err);
    if (acme_store_open(*cfg, st, err, sizeof(err)) != 0 || !(*db = acme_db_open_reader(*st, err, sizeof(err)))) {
        acme_store_close(*st);
        acme_cfg_free(*cfg);
        return cli_fail("%s", err);
    }
    return 0;
}

static void close_state(acme_cfg *cfg, acme_store *st, acme_db *db)
{
    acme_db_close(db);
    acme_store_close(st);
    acme_cfg_free(cfg);
}

static const char *ts(int64_t t, char *buf, size_t len)
{
    if (t <= 0)
        return "-";
    acme_time_rfc3339(t, buf, len);
    return buf;
}

/* a,b,c → JSON array text; each item checked by ok() */
static char *list_json(const char *csv, int (*ok)(const char *))
{
    json_t *a = json_array();
    char *dup = strdup(csv), *save = NULL;
    for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (!*tok || !ok(tok)) {
            free(dup);
            json_decref(a);
            return NULL;
        }
        json_array_append_new(a, json_string(tok));
    }
    free(dup);
    char *s = json_array_size(a) ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    return s;
}

static int name_ok(const char *s)
{
    return strlen(s) <= 64 && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == strlen(s);
}

static int suffix_ok(const char *s)
{
    return strlen(s) <= 253 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789.-") == strlen(s) && s[0] != '.';
}

/* ------------------------------------------------------------ eab */

typedef struct eab_new {
    const char *kid;
    uint8_t key[32];
    char *profiles, *suffixes;
    const char *note;
    int64_t now;
} eab_new;

static int tx_eab_add(acme_db *tx, void *arg)
{
    eab_new *e = arg;
    int n = acme_db_exec(tx,
                         "INSERT INTO eab_keys(kid, hmac, profiles, suffixes, created, note) VALUES(?, ?, ?, ?, ?, ?) "
                         "ON CONFLICT DO NOTHING",
                         "sbssis", e->kid, e->key, sizeof(e->key), e->profiles, e->suffixes, e->now, e->note);
    return n < 0 ? -1 : n == 0 ? 1 : 0;
}

static int eab_add(int argc, char **argv)
{
    opts o;
    int rc = parse("eab add", argc, argv, &o);
    if (rc)
        return rc < 0 ? CLI_USAGE : rc == 1 ? CLI_OK : rc;
    if (o.first_arg != argc)
        return cli_usage("acme eab add: unexpected argument '%s'", argv[o.first_arg]);
    char kid[72];
    eab_new e = {.note = o.note, .now = acme_now()};
    if (o.kid) {
        if (!name_ok(o.kid) || !o.kid[0])
            return cli_usage("acme eab add: --kid is 1-64 characters of A-Z a-z 0-9 . _ -");
        snprintf(kid, sizeof(kid), "%s", o.kid);
    } else if (acme_random_id(kid, 12) != 0) {
        return cli_fail("no randomness for a key id");
    }
    e.kid = kid;
    if (o.profiles && !(e.profiles = list_json(o.profiles, name_ok)))
        return cli_usage("acme eab add: --profiles is a comma-separated list of profile names");
    if (o.suffixes && !(e.suffixes = list_json(o.suffixes, suffix_ok))) {
        free(e.profiles);
        return cli_usage("acme eab add: --suffixes is a comma-separated list of lower-case DNS names");
    }
    acme_cfg *cfg;
    acme_store *st;
    acme_db *db;
    if ((rc = open_state(&o, &cfg, &st, &db)) != 0)
        goto out;
    for (unsigned i = 0; o.profiles && e.profiles && i < 1; i++) {
        json_t *a = json_loads(e.profiles, 0, NULL);
        size_t k;
        json_t *v;
        json_array_foreach(a, k, v)
        {
            if (!acme_cfg_profile_find(cfg, json_string_value(v))) {
                rc = cli_fail("acme eab add: certforge-acme's config has no profile '%s'", json_string_value(v));
                break;
            }
        }
        json_decref(a);
    }
    if (rc == 0) {
        if (RAND_bytes(e.key, sizeof(e.key)) != 1) {
            rc = cli_fail("no randomness for the HMAC key");
        } else {
            int r = acme_store_run(st, tx_eab_add, &e);
            if (r == 1)
                rc = cli_fail("acme eab add: key id '%s' exists already", kid);
            else if (r != 0)
                rc = cli_fail("acme eab add: the state database refused the key");
        }
    }
    if (rc == 0) {
        char b64[64];
        if (!acme_b64url_encode(e.key, sizeof(e.key), b64, sizeof(b64)))
            rc = cli_fail("encoding failed");
        else if (o.json)
            printf("{\"kid\":\"%s\",\"hmac_key\":\"%s\",\"alg\":\"HS256\"}\n", kid, b64);
        else
            printf("kid: %s\nhmac_key: %s\n(shown once: give both to the ACME client, e.g. certbot --eab-kid KID "
                   "--eab-hmac-key KEY)\n",
                   kid, b64);
        OPENSSL_cleanse(b64, sizeof(b64));
    }
    OPENSSL_cleanse(e.key, sizeof(e.key));
    close_state(cfg, st, db);
out:
    free(e.profiles);
    free(e.suffixes);
    return rc;
}

static int eab_list(int argc, char **argv)
{
    opts o;
    int rc = parse("eab list", argc, argv, &o);
    if (rc)
        return rc < 0 ? CLI_USAGE : rc == 1 ? CLI_OK : rc;
    acme_cfg *cfg;
    acme_store *st;
    acme_db *db;
    if ((rc = open_state(&o, &cfg, &st, &db)) != 0)
        return rc;
    acme_q q;
    if (acme_db_query(db, &q, "SELECT kid, created, account, revoked, profiles, suffixes, note FROM eab_keys ORDER BY created",
                      "") != 0) {
        close_state(cfg, st, db);
        return cli_fail("state: %s", acme_db_error(db));
    }
    json_t *arr = json_array();
    int r;
    if (!o.json)
        printf("%-24s %-20s %-22s %-7s %s\n", "KID", "CREATED", "ACCOUNT", "REVOKED", "LIMITS");
    while ((r = acme_q_next(&q)) == 1) {
        char t[32];
        const char *acct = acme_q_text(&q, 2), *pr = acme_q_text(&q, 4), *sf = acme_q_text(&q, 5);
        if (o.json) {
            json_t *j = json_pack("{s:s, s:s, s:s?, s:b}", "kid", acme_q_text(&q, 0), "created",
                                  ts(acme_q_int(&q, 1), t, sizeof(t)), "account", acct, "revoked", acme_q_int(&q, 3) != 0);
            if (pr)
                json_object_set_new(j, "profiles", json_loads(pr, 0, NULL));
            if (sf)
                json_object_set_new(j, "suffixes", json_loads(sf, 0, NULL));
            if (acme_q_text(&q, 6))
                json_object_set_new(j, "note", json_string(acme_q_text(&q, 6)));
            json_array_append_new(arr, j);
        } else {
            printf("%-24s %-20s %-22s %-7s profiles=%s suffixes=%s\n", acme_q_text(&q, 0), ts(acme_q_int(&q, 1), t, sizeof(t)),
                   acct ? acct : "-", acme_q_int(&q, 3) ? "yes" : "no", pr ? pr : "any", sf ? sf : "any");
        }
    }
    acme_q_end(&q);
    if (o.json) {
        char *s = json_dumps(arr, JSON_COMPACT);
        puts(s ? s : "[]");
        free(s);
    }
    json_decref(arr);
    if (r < 0)
        rc = cli_fail("state: %s", acme_db_error(db));
    close_state(cfg, st, db);
    return rc;
}

typedef struct by_id {
    const char *id;
} by_id;

static int tx_eab_revoke(acme_db *tx, void *arg)
{
    by_id *b = arg;
    int n = acme_db_exec(tx, "UPDATE eab_keys SET revoked = 1 WHERE kid = ?", "s", b->id);
    return n < 0 ? -1 : n == 0 ? 1 : 0;
}

static int tx_account_deactivate(acme_db *tx, void *arg)
{
    by_id *b = arg;
    int n = acme_db_exec(tx, "UPDATE accounts SET status = 'deactivated' WHERE id = ?", "s", b->id);
    if (n <= 0)
        return n < 0 ? -1 : 1;
    if (acme_db_exec(tx, "UPDATE authzs SET status = 'deactivated' WHERE account = ? AND status = 'pending'", "s", b->id) < 0)
        return -1;
    return acme_db_exec(tx, "UPDATE orders SET status = 'invalid' WHERE account = ? AND status IN ('pending', 'ready')", "s",
                        b->id) < 0
               ? -1
               : 0;
}

static int by_id_cmd(const char *cmd, int argc, char **argv, acme_tx_fn fn, const char *what)
{
    opts o;
    int rc = parse(cmd, argc, argv, &o);
    if (rc)
        return rc < 0 ? CLI_USAGE : rc == 1 ? CLI_OK : rc;
    if (o.first_arg != argc - 1)
        return cli_usage("acme %s: which %s? (one argument)", cmd, what);
    acme_cfg *cfg;
    acme_store *st;
    acme_db *db;
    if ((rc = open_state(&o, &cfg, &st, &db)) != 0)
        return rc;
    by_id b = {argv[o.first_arg]};
    int r = acme_store_run(st, fn, &b);
    if (r == 1)
        rc = cli_fail("acme %s: no %s '%s'", cmd, what, b.id);
    else if (r != 0)
        rc = cli_fail("acme %s: the state database refused the change", cmd);
    else
        printf("%s %s: done\n", what, b.id);
    close_state(cfg, st, db);
    return rc;
}

static int eab_revoke(int argc, char **argv)
{
    return by_id_cmd("eab revoke", argc, argv, tx_eab_revoke, "EAB key");
}

static int accounts_deactivate(int argc, char **argv)
{
    return by_id_cmd("accounts deactivate", argc, argv, tx_account_deactivate, "account");
}

static int accounts_list(int argc, char **argv)
{
    opts o;
    int rc = parse("accounts list", argc, argv, &o);
    if (rc)
        return rc < 0 ? CLI_USAGE : rc == 1 ? CLI_OK : rc;
    acme_cfg *cfg;
    acme_store *st;
    acme_db *db;
    if ((rc = open_state(&o, &cfg, &st, &db)) != 0)
        return rc;
    acme_q q;
    if (acme_db_query(db, &q,
                      "SELECT a.id, a.status, a.created, a.contact, a.eab_kid, a.thumbprint, "
                      "(SELECT COUNT(*) FROM orders o WHERE o.account = a.id) FROM accounts a ORDER BY a.created",
                      "") != 0) {
        close_state(cfg, st, db);
        return cli_fail("state: %s", acme_db_error(db));
    }
    json_t *arr = json_array();
    if (!o.json)
        printf("%-22s %-11s %-20s %-7s %-20s %s\n", "ID", "STATUS", "CREATED", "ORDERS", "EAB", "CONTACT");
    int r;
    while ((r = acme_q_next(&q)) == 1) {
        char t[32];
        const char *contact = acme_q_text(&q, 3), *eab = acme_q_text(&q, 4);
        if (o.json) {
            json_t *j = json_pack("{s:s, s:s, s:s, s:s?, s:s, s:I}", "id", acme_q_text(&q, 0), "status", acme_q_text(&q, 1),
                                  "created", ts(acme_q_int(&q, 2), t, sizeof(t)), "eab_kid", eab, "key_thumbprint",
                                  acme_q_text(&q, 5), "orders", (json_int_t)acme_q_int(&q, 6));
            json_object_set_new(j, "contact", contact ? json_loads(contact, 0, NULL) : json_array());
            json_array_append_new(arr, j);
        } else {
            printf("%-22s %-11s %-20s %-7lld %-20s %s\n", acme_q_text(&q, 0), acme_q_text(&q, 1),
                   ts(acme_q_int(&q, 2), t, sizeof(t)), (long long)acme_q_int(&q, 6), eab ? eab : "-",
                   contact ? contact : "[]");
        }
    }
    acme_q_end(&q);
    if (o.json) {
        char *s = json_dumps(arr, JSON_COMPACT);
        puts(s ? s : "[]");
        free(s);
    }
    json_decref(arr);
    if (r < 0)
        rc = cli_fail("state: %s", acme_db_error(db));
    close_state(cfg, st, db);
    return rc;
}

static int orders_show(int argc, char **argv)
{
    opts o;
    int rc = parse("orders show", argc, argv, &o);
    if (rc)
        return rc < 0 ? CLI_USAGE : rc == 1 ? CLI_OK : rc;
    if (o.first_arg != argc - 1)
        return cli_usage("acme orders show: which order? (one argument)");
    const char *id = argv[o.first_arg];
    acme_cfg *cfg;
    acme_store *st;
    acme_db *db;
    if ((rc = open_state(&o, &cfg, &st, &db)) != 0)
        return rc;
    acme_q q;
    json_t *j = NULL;
    if (acme_db_query(db, &q,
                      "SELECT id, account, status, expires, identifiers, profile, error, cert, replaces, created "
                      "FROM orders WHERE id = ?",
                      "s", id) == 0 &&
        acme_q_next(&q) == 1) {
        char t1[32], t2[32];
        j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s?, s:s?}", "id", acme_q_text(&q, 0), "account", acme_q_text(&q, 1),
                      "status", acme_q_text(&q, 2), "created", ts(acme_q_int(&q, 9), t1, sizeof(t1)), "expires",
                      ts(acme_q_int(&q, 3), t2, sizeof(t2)), "profile", acme_q_text(&q, 5), "certificate",
                      acme_q_text(&q, 7), "replaces", acme_q_text(&q, 8));
        json_object_set_new(j, "identifiers", json_loads(acme_q_text(&q, 4), 0, NULL));
        if (acme_q_text(&q, 6))
            json_object_set_new(j, "error", json_loads(acme_q_text(&q, 6), 0, NULL));
    }
    acme_q_end(&q);
    if (!j) {
        close_state(cfg, st, db);
        return cli_fail("acme orders show: no order '%s'", id);
    }
    json_t *az = json_array();
    if (acme_db_query(db, &q,
                      "SELECT a.id, a.type, a.value, a.status, c.id, c.type, c.status, c.error FROM order_authzs oa "
                      "JOIN authzs a ON a.id = oa.authz LEFT JOIN challenges c ON c.authz = a.id "
                      "WHERE oa.order_id = ? ORDER BY oa.pos, c.type",
                      "s", id) == 0) {
        json_t *cur = NULL;
        const char *cur_id = NULL;
        char last[ACME_ID_LEN + 1] = "";
        while (acme_q_next(&q) == 1) {
            cur_id = acme_q_text(&q, 0);
            if (strcmp(last, cur_id) != 0) {
                cur = json_pack("{s:s, s:s, s:s, s:s, s:[]}", "id", cur_id, "type", acme_q_text(&q, 1), "value",
                                acme_q_text(&q, 2), "status", acme_q_text(&q, 3), "challenges");
                json_array_append_new(az, cur);
                snprintf(last, sizeof(last), "%s", cur_id);
            }
            if (acme_q_text(&q, 4)) {
                json_t *c = json_pack("{s:s, s:s, s:s}", "id", acme_q_text(&q, 4), "type", acme_q_text(&q, 5), "status",
                                      acme_q_text(&q, 6));
                if (acme_q_text(&q, 7))
                    json_object_set_new(c, "error", json_loads(acme_q_text(&q, 7), 0, NULL));
                json_array_append_new(json_object_get(cur, "challenges"), c);
            }
        }
        acme_q_end(&q);
    }
    json_object_set_new(j, "authorizations", az);
    char *s = json_dumps(j, o.json ? JSON_COMPACT : JSON_INDENT(2));
    puts(s ? s : "{}");
    free(s);
    json_decref(j);
    close_state(cfg, st, db);
    return CLI_OK;
}

static int status(int argc, char **argv)
{
    opts o;
    int rc = parse("status", argc, argv, &o);
    if (rc)
        return rc < 0 ? CLI_USAGE : rc == 1 ? CLI_OK : rc;
    char err[1024];
    acme_cfg *cfg = NULL;
    if (acme_cfg_load(o.config, &cfg, err, sizeof(err)) != 0)
        return cli_fail("%s", err);
    json_error_t je;
    json_t *j = json_load_file(cfg->status_file, 0, &je);
    if (!j) {
        rc = cli_fail("acme status: %s: %s (is certforge-acme running with this config?)", cfg->status_file, je.text);
        acme_cfg_free(cfg);
        return rc;
    }
    json_int_t now = json_integer_value(json_object_get(j, "now"));
    int64_t age = acme_now() - now;
    if (o.json) {
        json_object_set_new(j, "age_s", json_integer(age));
        char *s = json_dumps(j, JSON_COMPACT);
        puts(s ? s : "{}");
        free(s);
    } else {
        printf("certforge-acme %s pid %lld at %s, up %llds%s\n", json_string_value(json_object_get(j, "version")),
               (long long)json_integer_value(json_object_get(j, "pid")), json_string_value(json_object_get(j, "base_url")),
               (long long)(now - json_integer_value(json_object_get(j, "started"))),
               age > 5 ? " (stale: not updated for more than 5 s; stopped?)" : "");
        const char *groups[] = {"http", "acme", "store", "certforged", "tls", "star"};
        for (size_t g = 0; g < 6; g++) {
            json_t *grp = json_object_get(j, groups[g]);
            if (!grp)
                continue;
            printf("%-11s", groups[g]);
            const char *k;
            json_t *v;
            json_object_foreach(grp, k, v) printf(" %s=%lld", k, (long long)json_integer_value(v));
            putchar('\n');
        }
    }
    json_decref(j);
    acme_cfg_free(cfg);
    return age > 5 ? CLI_FAIL : CLI_OK;
}

/* ------------------------------------------------------------ token issue */


static int read_certs(const char *path, STACK_OF(X509) *out)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return cli_fail("%s: %m", path);
    X509 *x;
    int n = 0;
    while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
        sk_X509_push(out, x);
        n++;
    }
    fclose(f);
    ERR_clear_error();
    return n ? CLI_OK : cli_fail("%s: no PEM certificate in it", path);
}

static int token_issue(int argc, char **argv)
{
    static const struct option lo[] = {{"key", required_argument, NULL, 'k'},
                                       {"cert", required_argument, NULL, 'c'},
                                       {"chain", required_argument, NULL, 'C'},
                                       {"nf-instance-id", required_argument, NULL, 'u'},
                                       {"nf-type", required_argument, NULL, 't'},
                                       {"account-key-thumbprint", required_argument, NULL, 'a'},
                                       {"ttl", required_argument, NULL, 'l'},
                                       {"issuer", required_argument, NULL, 'i'},
                                       {"tktype", required_argument, NULL, 'T'},
                                       {"token", required_argument, NULL, 'o'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    const char *key = NULL, *cert = NULL, *chain = NULL, *thumb = NULL, *ttl = "10m", *iss = NULL, *tokuri = NULL;
    const char *tktype = "NfInstanceId";
    char uuid[64] = "";
    const char *nftypes[ACME_TKAUTH_MAX_NFTYPES];
    unsigned n_nft = 0;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'k': key = optarg; break;
        case 'c': cert = optarg; break;
        case 'C': chain = optarg; break;
        case 'u': snprintf(uuid, sizeof(uuid), "%s", optarg); break;
        case 't':
            if (n_nft == ACME_TKAUTH_MAX_NFTYPES || !acme_nftype_ok(optarg))
                return cli_usage("acme token issue: --nf-type is an NFType (RFC 9310), at most %d", ACME_TKAUTH_MAX_NFTYPES);
            nftypes[n_nft++] = optarg;
            break;
        case 'a': thumb = optarg; break;
        case 'l': ttl = optarg; break;
        case 'i': iss = optarg; break;
        case 'T': tktype = optarg; break;
        case 'o': tokuri = optarg; break;
        case 'h': fputs(usage_text, stdout); return CLI_OK;
        default: return cli_bad_option("acme token issue", argc, argv);
        }
    }
    if (optind != argc || !key || !cert || !uuid[0] || !thumb)
        return cli_usage("acme token issue: --key, --cert, --nf-instance-id and --account-key-thumbprint are required");
    if (strcmp(tktype, "NfInstanceId") == 0 && !acme_uuid_ok(uuid))
        return cli_usage("acme token issue: --nf-instance-id is a UUID (RFC 4122 text form)");
    char fp[128], why[200];
    if (acme_tkauth_fingerprint(thumb, fp, sizeof(fp)) != 0)
        return cli_usage("acme token issue: --account-key-thumbprint is the base64url RFC 7638 thumbprint of the ACME "
                         "account key (43 characters)");
    uint64_t ttl_s;
    if (cf_parse_duration(ttl, &ttl_s, why, sizeof(why)) != 0 || ttl_s == 0 || ttl_s > 7 * 86400)
        return cli_usage("acme token issue: --ttl: %s", ttl_s == 0 ? "more than 0s" : why);

    int rc = CLI_FAIL;
    STACK_OF(X509) *certs = sk_X509_new_null();
    hsm_token *t = NULL;
    hsm_signer *sg = NULL;
    EVP_PKEY *pub = NULL;
    json_t *hdr = NULL, *pl = NULL;
    char *hs = NULL, *ps = NULL, *input = NULL;
    hsm_err e = {0};
    if (!certs || (rc = read_certs(cert, certs)) != CLI_OK || (chain && (rc = read_certs(chain, certs)) != CLI_OK))
        goto out;
    rc = CLI_FAIL;
    if ((rc = cli_open_token_for_key(tokuri, key, &t)) != CLI_OK)
        goto out;
    rc = CLI_FAIL;
    if (hsm_signer_open(t, key, 1, &sg, &e) != 0 || !(pub = hsm_signer_public_key(sg, &e))) {
        rc = cli_hsm_fail(&e);
        goto out;
    }
    if (EVP_PKEY_eq(X509_get0_pubkey(sk_X509_value(certs, 0)), pub) != 1) {
        rc = cli_fail("%s does not belong to --key %s (their public keys differ)", cert, key);
        goto out;
    }
    int bits = EVP_PKEY_get_bits(pub);
    const char *alg = NULL;
    cf_sig_alg mech;
    const EVP_MD *md;
    if (EVP_PKEY_is_a(pub, "EC") && bits == 256) {
        alg = "ES256", mech = CF_SIG_ECDSA_SHA256, md = EVP_sha256();
    } else if (EVP_PKEY_is_a(pub, "EC") && bits == 384) {
        alg = "ES384", mech = CF_SIG_ECDSA_SHA384, md = EVP_sha384();
    } else {
        rc = cli_fail("--key %s: the token authority signs with EC P-256 (ES256) or P-384 (ES384)", key);
        goto out;
    }
    hdr = json_pack("{s:s, s:s, s:[]}", "alg", alg, "typ", "JWT", "x5c");
    for (int i = 0; i < sk_X509_num(certs); i++) {
        unsigned char *der = NULL;
        int dl = i2d_X509(sk_X509_value(certs, i), &der);
        char *b64 = dl > 0 ? malloc((size_t)dl * 2 + 4) : NULL;
        if (!b64) {
            OPENSSL_free(der);
            goto out;
        }
        EVP_EncodeBlock((unsigned char *)b64, der, dl); /* x5c: standard base64 (RFC 7515 §4.1.6) */
        json_array_append_new(json_object_get(hdr, "x5c"), json_string(b64));
        free(b64);
        OPENSSL_free(der);
    }
    char jti[32];
    if (acme_random_id(jti, 16) != 0)
        goto out;
    int64_t now = acme_now();
    pl = json_pack("{s:I, s:I, s:s, s:{s:s, s:s, s:s, s:b}}", "iat", (json_int_t)now, "exp", (json_int_t)(now + (int64_t)ttl_s),
                   "jti", jti, "atc", "tktype", tktype, "tkvalue", uuid, "fingerprint", fp, "ca", 0);
    if (iss)
        json_object_set_new(pl, "iss", json_string(iss));
    if (n_nft) {
        json_t *a = json_array();
        for (unsigned i = 0; i < n_nft; i++)
            json_array_append_new(a, json_string(nftypes[i]));
        json_object_set_new(pl, "nftypes", a);
    }
    hs = json_dumps(hdr, JSON_COMPACT);
    ps = json_dumps(pl, JSON_COMPACT);
    size_t hl = hs ? strlen(hs) : 0, pll = ps ? strlen(ps) : 0;
    input = hs && ps ? malloc(acme_b64url_len(hl) + acme_b64url_len(pll) + 2 + 200) : NULL;
    if (!input)
        goto out;
    size_t off = acme_b64url_encode((const uint8_t *)hs, hl, input, acme_b64url_len(hl) + 1);
    input[off++] = '.';
    off += acme_b64url_encode((const uint8_t *)ps, pll, input + off, acme_b64url_len(pll) + 1);
    uint8_t dg[EVP_MAX_MD_SIZE], sig[CF_SIG_MAX], raw[96];
    unsigned dl = 0;
    size_t sl = sizeof(sig);
    if (!EVP_Digest(input, off, dg, &dl, md, NULL) || hsm_sign(sg, mech, dg, dl, sig, &sl, &e) != 0) {
        rc = e.msg[0] ? cli_hsm_fail(&e) : cli_fail("hashing failed");
        goto out;
    }
    /* the HSM returns Ecdsa-Sig-Value DER; a JWS carries r || s (RFC 7518 §3.4) */
    const unsigned char *sp = sig;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &sp, (long)sl);
    size_t half = bits / 8;
    if (!es || BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, (int)half) < 0 ||
        BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + half, (int)half) < 0) {
        ECDSA_SIG_free(es);
        rc = cli_fail("the HSM's signature is not an ECDSA signature");
        goto out;
    }
    ECDSA_SIG_free(es);
    char s64[200];
    acme_b64url_encode(raw, 2 * half, s64, sizeof(s64));
    printf("%s.%s\n", input, s64);
    rc = CLI_OK;
out:
    free(input);
    free(hs);
    free(ps);
    json_decref(hdr);
    json_decref(pl);
    EVP_PKEY_free(pub);
    hsm_signer_close(sg);
    hsm_token_close(t);
    sk_X509_pop_free(certs, X509_free);
    return rc;
}

static int cmd_acme_token(int argc, char **argv)
{
    static const cli_command c[] = {{"issue", token_issue, ""}};
    return cli_dispatch("acme token", c, 1, usage_text, argc, argv);
}

static int cmd_eab(int argc, char **argv)
{
    static const cli_command c[] = {{"add", eab_add, ""}, {"list", eab_list, ""}, {"revoke", eab_revoke, ""}};
    return cli_dispatch("acme eab", c, 3, usage_text, argc, argv);
}

static int cmd_accounts(int argc, char **argv)
{
    static const cli_command c[] = {{"list", accounts_list, ""}, {"deactivate", accounts_deactivate, ""}};
    return cli_dispatch("acme accounts", c, 2, usage_text, argc, argv);
}

static int cmd_orders(int argc, char **argv)
{
    static const cli_command c[] = {{"show", orders_show, ""}};
    return cli_dispatch("acme orders", c, 1, usage_text, argc, argv);
}

int cmd_acme(int argc, char **argv)
{
    static const cli_command c[] = {{"eab", cmd_eab, ""},
                                    {"accounts", cmd_accounts, ""},
                                    {"orders", cmd_orders, ""},
                                    {"status", status, ""},
                                    {"token", cmd_acme_token, ""}};
    return cli_dispatch("acme", c, 5, usage_text, argc, argv);
}
