/* certforge-acme's parts without the network: configuration (every refusal
 * names FILE:LINE), nonces, rate limits, the state store's group commit,
 * identifier and CSR checks, certificate facts. */
#include "cf_test.h"
#include "cf_testutil.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acme/config.h"
#include "acme/ident.h"
#include "acme/jws.h"
#include "acme/nonce.h"
#include "acme/ratelimit.h"
#include "acme/store.h"
#include "acme/tkauth.h"

static char tmpdir[] = "/tmp/cf-acme-units.XXXXXX";

static int suite_init(void)
{
    if (!mkdtemp(tmpdir))
        return cf_test_setup_failed("mkdtemp: %m");
    return 0;
}

static int suite_clean(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : 1;
}

/* ------------------------------------------------------------ config */

static const char base_conf[] = "tls = { certificate = \"c.pem\"; key = \"k.pem\"; };\n"
                                "state = { path = \"acme.db\"; };\n"
                                "profiles = ( { name = \"default\"; certforged = \"dns\"; } );\n";

static int load_with(const char *extra, acme_cfg **out, char *err, size_t errlen)
{
    char text[4096];
    snprintf(text, sizeof(text), "%s%s", base_conf, extra);
    return acme_cfg_load_string(text, "/etc/certforge", out, err, errlen);
}

static void test_config_defaults(void)
{
    acme_cfg *c = NULL;
    char err[512] = "";
    CU_ASSERT_EQUAL_FATAL(load_with("", &c, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(c->listen_host, "127.0.0.1");
    CU_ASSERT_EQUAL(c->listen_port, 14000);
    CU_ASSERT_STRING_EQUAL(c->base_url, "https://127.0.0.1:14000");
    CU_ASSERT_STRING_EQUAL(c->db_path, "/etc/certforge/acme.db");
    CU_ASSERT_STRING_EQUAL(c->tls_cert_file, "/etc/certforge/c.pem");
    CU_ASSERT_EQUAL(c->order_lifetime_s, 3600);
    CU_ASSERT_EQUAL(c->finalize_wait_ms, 250);
    CU_ASSERT_TRUE(c->challenges[ACME_CH_HTTP01] && c->challenges[ACME_CH_DNS01] && c->challenges[ACME_CH_TLSALPN01]);
    CU_ASSERT_DOUBLE_EQUAL(c->ari_renew_fraction, 2.0 / 3.0, 1e-9);
    CU_ASSERT_PTR_NOT_NULL(acme_cfg_profile_find(c, NULL));
    CU_ASSERT_PTR_NULL(acme_cfg_profile_find(c, "nope"));
    acme_cfg_free(c);
    CU_ASSERT_EQUAL_FATAL(load_with("listen = \"[::1]:8443\"; base_url = \"https://acme.example:8443/\";\n"
                                    "validation = { challenges = [\"dns-01\"]; resolver = \"127.0.0.1:53\"; };",
                                    &c, err, sizeof(err)),
                          0);
    CU_ASSERT_STRING_EQUAL(c->listen_host, "::1");
    CU_ASSERT_STRING_EQUAL(c->base_url, "https://acme.example:8443");
    CU_ASSERT_FALSE(c->challenges[ACME_CH_HTTP01]);
    CU_ASSERT_TRUE(c->challenges[ACME_CH_DNS01]);
    CU_ASSERT_EQUAL(c->resolver_port, 53);
    acme_cfg_free(c);
    /* state.pg_timeout_ms: 5000 by default, 100 and 600000 accepted */
    static const char *const pg_state[] = {"", "pg_timeout_ms = 100;", "pg_timeout_ms = 600000;"};
    static const unsigned pg_want[] = {5000, 100, 600000};
    for (size_t i = 0; i < CF_ARRAY_LEN(pg_state); i++) {
        char text[512];
        snprintf(text, sizeof(text),
                 "tls = { certificate = \"c\"; key = \"k\"; }; state = { backend = \"postgresql\"; "
                 "conninfo = \"dbname=a\"; %s }; profiles = ( { name = \"d\"; certforged = \"d\"; } );",
                 pg_state[i]);
        c = NULL;
        CU_ASSERT_EQUAL_FATAL(acme_cfg_load_string(text, NULL, &c, err, sizeof(err)), 0);
        CU_ASSERT_EQUAL(c->pg_timeout_ms, pg_want[i]);
        acme_cfg_free(c);
    }
}

static void test_config_refusals(void)
{
    static const struct {
        const char *extra, *want; /* want: a substring of the message, which starts "(string):LINE:" */
    } cases[] = {
        {"bogus = 1;", ":4: bogus: unknown setting in the top level"},
        {"confine = { user = \"no-such-user-cf\"; };",
         ":4: confine.user: no user 'no-such-user-cf'"},
        {"confine = { user = \"root\"; };", "confine.user: 'root' is root"},
        {"confine = { users = \"x\"; };", "confine.users: unknown setting in confine"},
        {"limits = { max_conns = 1; };", ":4: limits.max_conns: unknown setting in limits"},
        {"threads = \"2\";", ":4: threads: expected an integer, got a string"},
        {"threads = 0;", ":4: threads: 0 is out of range 1-64"},
        {"listen = \"localhost\";", "listen: 'localhost' is not HOST:PORT"},
        {"listen = \"h:99999\";", "port '99999' is not 1-65535"},
        {"base_url = \"http://x\";", "must be an https:// URL"},
        {"base_url = \"https://x/acme\";", "no path, query or fragment"},
        {"instance = \"a-b\";", "1-8 letters or digits"},
        {"orders = { lifetime = \"10\"; };", "lacks a unit"},
        {"orders = { lifetime = \"10s\"; };", "out of range 60s"},
        {"orders = { max_identifiers = 65; };", "at most 64"},
        {"orders = { default_profile = \"x\"; };", "no profile named 'x'"},
        {"validation = { challenges = [\"http-01\", \"http-01\"]; };", "listed twice"},
        {"validation = { challenges = [\"tls-sni-01\"]; };",
         "expected \"http-01\", \"dns-01\" or \"tls-alpn-01\""},
        {"ari = { renew_at = 0.9; window = 0.4; };", "must lie within the lifetime"},
        {"ari = { renew_at = 1; };", "expected a number such as 0.667"},
        {"log = { level = \"loud\"; };", "expected \"error\""},
        {"certforged = { socket = "
         "\"/a/very/long/path/that/goes/on/and/on/and/on/and/on/and/on/and/on/and/on/and/on/and/on/"
         "and/on/and/on/and/on/x.sock\"; };",
         "longer than a Unix socket path"},
    };
    for (size_t i = 0; i < CF_ARRAY_LEN(cases); i++) {
        acme_cfg *c = NULL;
        char err[512] = "";
        int rc = load_with(cases[i].extra, &c, err, sizeof(err));
        if (rc == 0 || !strstr(err, cases[i].want) || strncmp(err, "(string)", 8) != 0)
            fprintf(stderr, "case %zu (%s): rc %d, '%s'\n", i, cases[i].extra, rc, err);
        CU_ASSERT_EQUAL(rc, -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].want));
        CU_ASSERT_PTR_NULL(c);
    }
    /* whole-file refusals */
    static const struct {
        const char *text, *want;
    } whole[] = {
        {"state = { path = \"a\"; }; profiles = ( { name = \"d\"; certforged = \"d\"; } );", "missing required setting 'tls'"},
        {"tls = { certificate = \"c\"; key = \"k\"; }; profiles = ( { name = \"d\"; certforged = \"d\"; } );",
         "missing required setting 'state'"},
        {"tls = { certificate = \"c\"; key = \"k\"; }; state = { path = \"a\"; };", "missing required setting 'profiles'"},
        {"tls = { certificate = \"c\"; }; state = { path = \"a\"; }; profiles = ( { name = \"d\"; certforged = \"d\"; } );",
         "'certificate' and 'key' go together"},
        {"tls = { profile = \"p\"; state_dir = \"s\"; }; state = { path = \"a\"; }; profiles = ( { name = \"d\"; "
         "certforged = \"d\"; } );",
         "'profile' needs 'dns'"},
        {"tls = { profile = \"p\"; dns = [\"localhost\"]; state_dir = \"s\"; }; state = { path = \"a\"; }; "
         "profiles = ( { name = \"d\"; certforged = \"d\"; }, { name = \"d\"; certforged = \"e\"; } );",
         "defined twice"},
        {"tls = { certificate = \"c\"; key = \"k\"; }; state = { backend = \"postgresql\"; path = \"a\"; }; "
         "profiles = ( { name = \"d\"; certforged = \"d\"; } );",
         "missing required setting 'conninfo'"},
        {"tls = { certificate = \"c\"; key = \"k\" ; state = {", "syntax error"},
        {"tls = { certificate = \"c\"; key = \"k\"; }; state = { path = \"a\"; pg_timeout_ms = 1000; }; "
         "profiles = ( { name = \"d\"; certforged = \"d\"; } );",
         "(string):1: state.pg_timeout_ms: only with backend = \"postgresql\""},
        {"tls = { certificate = \"c\"; key = \"k\"; }; state = { backend = \"postgresql\"; conninfo = \"dbname=a\";\n"
         "  pg_timeout_ms = 99; }; profiles = ( { name = \"d\"; certforged = \"d\"; } );",
         "(string):2: state.pg_timeout_ms: 99 is out of range 100-600000"},
        {"tls = { certificate = \"c\"; key = \"k\"; }; state = { backend = \"postgresql\"; conninfo = \"dbname=a\";\n"
         "  pg_timeout_ms = 600001; }; profiles = ( { name = \"d\"; certforged = \"d\"; } );",
         "(string):2: state.pg_timeout_ms: 600001 is out of range 100-600000"},
    };
    for (size_t i = 0; i < CF_ARRAY_LEN(whole); i++) {
        acme_cfg *c = NULL;
        char err[512] = "";
        int rc = acme_cfg_load_string(whole[i].text, NULL, &c, err, sizeof(err));
        if (rc == 0 || !strstr(err, whole[i].want))
            fprintf(stderr, "whole %zu: rc %d, '%s'\n", i, rc, err);
        CU_ASSERT_EQUAL(rc, -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, whole[i].want));
    }
}

static void test_config_file(void)
{
    char path[300], err[512] = "";
    snprintf(path, sizeof(path), "%s/acme.conf", tmpdir);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fprintf(f, "%s\n\n  threads = 1000;\n", base_conf);
    fclose(f);
    acme_cfg *c = NULL;
    CU_ASSERT_EQUAL(acme_cfg_load(path, &c, err, sizeof(err)), -1);
    char want[400];
    snprintf(want, sizeof(want), "%s:6: threads: 1000 is out of range 1-64", path);
    CU_ASSERT_STRING_EQUAL(err, want);
    snprintf(path, sizeof(path), "%s/missing.conf", tmpdir);
    CU_ASSERT_EQUAL(acme_cfg_load(path, &c, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot open"));
}

/* ------------------------------------------------------------ nonces */

static void test_nonces(void)
{
    acme_nonces *n = NULL, *other = NULL;
    CU_ASSERT_EQUAL_FATAL(acme_nonces_new("a", &n), 0);
    CU_ASSERT_EQUAL_FATAL(acme_nonces_new("b", &other), 0);
    char a[ACME_NONCE_MAX], b[ACME_NONCE_MAX], c[ACME_NONCE_MAX];
    CU_ASSERT_EQUAL(acme_nonce_issue(n, a, sizeof(a)), 0);
    CU_ASSERT_EQUAL(acme_nonce_issue(n, b, sizeof(b)), 0);
    CU_ASSERT_EQUAL(acme_nonce_issue(other, c, sizeof(c)), 0);
    CU_ASSERT_EQUAL(a[0], 'a');
    CU_ASSERT_STRING_NOT_EQUAL(a, b);
    /* every nonce is base64url text whose length is not 1 mod 4 (clients decode it) */
    CU_ASSERT_NOT_EQUAL(strlen(a) % 4, 1);
    CU_ASSERT_EQUAL(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), strlen(a));
    /* used once, in any order */
    CU_ASSERT_EQUAL(acme_nonce_redeem(n, b), 0);
    CU_ASSERT_EQUAL(acme_nonce_redeem(n, a), 0);
    CU_ASSERT_EQUAL(acme_nonce_redeem(n, a), -1);
    CU_ASSERT_EQUAL(acme_nonce_redeem(n, b), -1);
    /* foreign, forged, truncated, empty */
    CU_ASSERT_EQUAL(acme_nonce_redeem(n, c), -1);
    CU_ASSERT_EQUAL(acme_nonce_redeem(other, c), 0);
    char f[ACME_NONCE_MAX];
    CU_ASSERT_EQUAL(acme_nonce_issue(n, f, sizeof(f)), 0);
    char g[ACME_NONCE_MAX];
    snprintf(g, sizeof(g), "%s", f);
    g[strlen(g) - 2] = g[strlen(g) - 2] == 'A' ? 'B' : 'A';
    CU_ASSERT_EQUAL(acme_nonce_redeem(n, g), -1);
    g[strlen(g) - 2] = '\0';
    CU_ASSERT_EQUAL(acme_nonce_redeem(n, g), -1);
    CU_ASSERT_EQUAL(acme_nonce_redeem(n, ""), -1);
    CU_ASSERT_EQUAL(acme_nonce_redeem(n, NULL), -1);
    CU_ASSERT_EQUAL(acme_nonce_redeem(n, f), 0); /* the forgery did not burn the real one */
    /* a prefix of every length keeps the nonce decodable */
    for (int len = 1; len <= 8; len++) {
        char pre[9] = "abcdefgh";
        pre[len] = '\0';
        acme_nonces *p = NULL;
        CU_ASSERT_EQUAL_FATAL(acme_nonces_new(pre, &p), 0);
        char x[ACME_NONCE_MAX];
        CU_ASSERT_EQUAL(acme_nonce_issue(p, x, sizeof(x)), 0);
        CU_ASSERT_NOT_EQUAL(strlen(x) % 4, 1);
        CU_ASSERT_EQUAL(acme_nonce_redeem(p, x), 0);
        acme_nonces_free(p);
    }
    acme_nonces_free(n);
    acme_nonces_free(other);
}

static void test_nonce_window(void)
{
    acme_nonces *n = NULL;
    enum { W = 4096 }; /* the production window is ACME_NONCE_WINDOW; the logic is the same */
    CU_ASSERT_EQUAL(acme_nonces_new_window("w", 100, &n), -1); /* not a multiple of 64 */
    CU_ASSERT_EQUAL_FATAL(acme_nonces_new_window("w", W, &n), 0);
    char first[ACME_NONCE_MAX], second[ACME_NONCE_MAX], x[ACME_NONCE_MAX];
    CU_ASSERT_EQUAL(acme_nonce_issue(n, first, sizeof(first)), 0);
    CU_ASSERT_EQUAL(acme_nonce_issue(n, second, sizeof(second)), 0);
    /* W − 1 more: the first falls out of the window, the second is its oldest */
    for (unsigned i = 0; i < W - 1; i++)
        if (acme_nonce_issue(n, x, sizeof(x)) != 0) {
            CU_FAIL("issue");
            break;
        }
    CU_ASSERT_EQUAL(acme_nonce_redeem(n, first), -1);
    CU_ASSERT_EQUAL(acme_nonce_redeem(n, second), 0);
    CU_ASSERT_EQUAL(acme_nonce_redeem(n, x), 0);
    acme_nonces_free(n);
}

/* ------------------------------------------------------------ rate limits */

static void test_ratelimit(void)
{
    unsigned lim[ACME_RL__MAX] = {[ACME_RL_ORDERS_ACCOUNT] = 3};
    acme_ratelimit *r = NULL;
    CU_ASSERT_EQUAL_FATAL(acme_ratelimit_new(lim, &r), 0);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(acme_ratelimit_take(r, ACME_RL_ORDERS_ACCOUNT, "acct1"), 0);
    int64_t w = acme_ratelimit_take(r, ACME_RL_ORDERS_ACCOUNT, "acct1");
    CU_ASSERT_TRUE(w >= 1 && w <= ACME_RL_WINDOW);
    CU_ASSERT_TRUE(acme_ratelimit_check(r, ACME_RL_ORDERS_ACCOUNT, "acct1") > 0);
    CU_ASSERT_EQUAL(acme_ratelimit_take(r, ACME_RL_ORDERS_ACCOUNT, "acct2"), 0);
    /* unlimited kinds never refuse */
    for (int i = 0; i < 100; i++)
        CU_ASSERT_EQUAL(acme_ratelimit_take(r, ACME_RL_ORDERS_GLOBAL, "*"), 0);
    acme_ratelimit_free(r);
}

/* ------------------------------------------------------------ store */

static int tx_insert(acme_db *tx, void *arg)
{
    const char *id = arg;
    return acme_db_exec(tx, "INSERT INTO used_jti(jti, expires) VALUES(?, 1)", "s", id) == 1 ? 0 : -1;
}

static int tx_refuse(acme_db *tx, void *arg)
{
    /* changes something, then refuses: the savepoint must undo it */
    if (acme_db_exec(tx, "INSERT INTO used_jti(jti, expires) VALUES(?, 2)", "s", (const char *)arg) != 1)
        return -1;
    return ACME_P_MALFORMED;
}

typedef struct wr {
    acme_store *s;
    int base, n, failed;
} wr;

static void *writer(void *arg)
{
    wr *w = arg;
    for (int i = 0; i < w->n; i++) {
        char *id = malloc(32);
        snprintf(id, 32, "w%d-%d", w->base, i);
        if (acme_store_run(w->s, (i % 10 == 9) ? tx_refuse : tx_insert, id) != ((i % 10 == 9) ? ACME_P_MALFORMED : 0))
            w->failed++;
        free(id);
    }
    return NULL;
}

static acme_cfg *store_cfg(const char *name)
{
    acme_cfg *c = calloc(1, sizeof(*c));
    char *p = malloc(400);
    snprintf(p, 400, "%s/%s", tmpdir, name);
    c->db_path = p;
    return c;
}

static void test_store_group_commit(void)
{
    acme_cfg *cfg = store_cfg("group.db");
    acme_store *s = NULL;
    char err[256];
    CU_ASSERT_EQUAL_FATAL(acme_store_open(cfg, &s, err, sizeof(err)), 0);
    enum { T = 8, N = 300 };
    pthread_t t[T];
    wr w[T];
    for (int i = 0; i < T; i++) {
        w[i] = (wr){.s = s, .base = i, .n = N};
        pthread_create(&t[i], NULL, writer, &w[i]);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(t[i], NULL);
        CU_ASSERT_EQUAL(w[i].failed, 0);
    }
    acme_store_stats st;
    acme_store_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.changes, T * N);
    CU_ASSERT_EQUAL(st.failed_commits, 0);
    /* eight threads waiting at once: commits gathered more than one change */
    CU_ASSERT_TRUE(st.commits < st.changes);
    CU_ASSERT_TRUE(st.max_group > 1);
    acme_store_close(s);
    /* reopened: exactly the kept changes, none of the refused ones */
    CU_ASSERT_EQUAL_FATAL(acme_store_open(cfg, &s, err, sizeof(err)), 0);
    acme_db *db = acme_db_open_reader(s, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    acme_q q;
    CU_ASSERT_EQUAL_FATAL(acme_db_query(db, &q, "SELECT COUNT(*), SUM(expires = 2) FROM used_jti", ""), 0);
    CU_ASSERT_EQUAL(acme_q_next(&q), 1);
    CU_ASSERT_EQUAL(acme_q_int(&q, 0), T * (N - N / 10));
    CU_ASSERT_EQUAL(acme_q_int(&q, 1), 0);
    acme_q_end(&q);
    /* a statement error is reported with SQLite's words */
    CU_ASSERT_EQUAL(acme_db_exec(db, "SELECT * FROM no_such_table", ""), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(acme_db_error(db), "no such table"));
    acme_db_close(db);
    acme_store_close(s);
    free(cfg->db_path);
    free(cfg);
}

static void test_store_errors(void)
{
    acme_cfg *cfg = store_cfg("no/such/folder/x.db");
    acme_store *s = NULL;
    char err[256] = "";
    CU_ASSERT_EQUAL(acme_store_open(cfg, &s, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no/such/folder/x.db"));
    free(cfg->db_path);
    cfg->db_path = NULL;
    cfg->backend = ACME_BACKEND_POSTGRESQL;
    cfg->conninfo = "host=/nonexistent-folder dbname=acme connect_timeout=2";
    CU_ASSERT_EQUAL(acme_store_open(cfg, &s, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "state database (postgresql)"));
    free(cfg);
}

/* ------------------------------------------------------------ PostgreSQL */

#include <libpq-fe.h>

static char pg_conninfo[1024];

/* A fresh database in the throwaway cluster tools/test.sh starts
 * (CF_TEST_PG_CONNINFO); skipped without one. */
static int pg_init(void)
{
    const char *ci = getenv("CF_TEST_PG_CONNINFO");
    if (!ci || !*ci) {
        cf_test_skip("CF_TEST_PG_CONNINFO is not set (tools/test.sh starts a throwaway PostgreSQL cluster)");
        return 1;
    }
    PGconn *c = PQconnectdb(ci);
    if (PQstatus(c) != CONNECTION_OK) {
        PQfinish(c);
        cf_test_skip("no PostgreSQL server at CF_TEST_PG_CONNINFO");
        return 1;
    }
    char sql[128];
    snprintf(sql, sizeof(sql), "CREATE DATABASE acme_units_%ld", (long)getpid());
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    PQfinish(c);
    if (!ok)
        return cf_test_setup_failed("cannot create a test database: %s", sql);
    snprintf(pg_conninfo, sizeof(pg_conninfo), "%s dbname=acme_units_%ld", ci, (long)getpid());
    return 0;
}

static int pg_clean(void)
{
    PGconn *c = PQconnectdb(getenv("CF_TEST_PG_CONNINFO"));
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS acme_units_%ld", (long)getpid());
    PQclear(PQexec(c, sql));
    PQfinish(c);
    return 0;
}

static void test_pg_group_commit(void)
{
    acme_cfg cfg = {.backend = ACME_BACKEND_POSTGRESQL, .conninfo = pg_conninfo};
    acme_store *s = NULL;
    char err[256] = "";
    if (acme_store_open(&cfg, &s, err, sizeof(err)) != 0)
        fprintf(stderr, "%s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    enum { T = 4, N = 100 };
    pthread_t t[T];
    wr w[T];
    for (int i = 0; i < T; i++) {
        w[i] = (wr){.s = s, .base = i, .n = N};
        pthread_create(&t[i], NULL, writer, &w[i]);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(t[i], NULL);
        CU_ASSERT_EQUAL(w[i].failed, 0);
    }
    acme_db *db = acme_db_open_reader(s, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    acme_q q;
    CU_ASSERT_EQUAL_FATAL(acme_db_query(db, &q, "SELECT COUNT(*), SUM(CASE WHEN expires = 2 THEN 1 ELSE 0 END) FROM used_jti", ""),
                          0);
    CU_ASSERT_EQUAL(acme_q_next(&q), 1);
    CU_ASSERT_EQUAL(acme_q_int(&q, 0), T * (N - N / 10));
    CU_ASSERT_EQUAL(acme_q_int(&q, 1), 0);
    acme_q_end(&q);
    /* bytea round trip, NULLs, ? → $n with several values */
    static const uint8_t blob[] = {0, 1, 2, 0xff, 0x5c, 0x27};
    CU_ASSERT_EQUAL(acme_db_exec(db, "INSERT INTO eab_keys(kid, hmac, created, note) VALUES(?, ?, ?, ?)", "sbis", "k1", blob,
                                 sizeof(blob), (int64_t)42, (const char *)NULL),
                    1);
    CU_ASSERT_EQUAL_FATAL(acme_db_query(db, &q, "SELECT hmac, created, note FROM eab_keys WHERE kid = ?", "s", "k1"), 0);
    CU_ASSERT_EQUAL_FATAL(acme_q_next(&q), 1);
    size_t bl = 0;
    const void *b = acme_q_blob(&q, 0, &bl);
    CU_ASSERT_EQUAL(bl, sizeof(blob));
    CU_ASSERT_TRUE(b && memcmp(b, blob, sizeof(blob)) == 0);
    CU_ASSERT_EQUAL(acme_q_int(&q, 1), 42);
    CU_ASSERT_TRUE(acme_q_null(&q, 2));
    CU_ASSERT_EQUAL(acme_q_next(&q), 0);
    acme_q_end(&q);
    CU_ASSERT_EQUAL(acme_db_exec(db, "SELECT * FROM no_such_table", ""), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(acme_db_error(db), "no_such_table"));
    acme_db_close(db);
    acme_store_close(s);
    /* a second front end on the same database: the schema is there */
    CU_ASSERT_EQUAL(acme_store_open(&cfg, &s, err, sizeof(err)), 0);
    acme_store_close(s);
}

/* A hung server: the backend of one connection stopped with SIGSTOP
 * (cf_freeze; cf_thaw_all resumes it on every way out). */

/* The backend of db's connection. */
static pid_t backend_pid(acme_db *db)
{
    acme_q q;
    pid_t pid = 0;
    if (acme_db_query(db, &q, "SELECT pg_backend_pid()", "") == 0 && acme_q_next(&q) == 1)
        pid = (pid_t)acme_q_int(&q, 0);
    acme_q_end(&q);
    return pid;
}

static const char hang_want[] =
    "no answer from the server within 300 ms (state.pg_timeout_ms): connection dropped, the next call reconnects";

typedef struct hang_job {
    sem_t *gate;    /* the first job waits here until the others are queued */
    const char *jti; /* inserted */
    bool freeze;     /* then stop this connection's backend and insert again */
    int rc;
    char err[256];
    sem_t done;
} hang_job;

static int hang_fn(acme_db *tx, void *arg)
{
    hang_job *j = arg;
    if (j->gate) {
        sem_wait(j->gate);
        return 0;
    }
    if (acme_db_exec(tx, "INSERT INTO used_jti(jti, expires) VALUES(?, 1)", "s", j->jti) != 1)
        return -1;
    if (!j->freeze)
        return 0;
    if (cf_freeze(backend_pid(tx)) != 0) {
        snprintf(j->err, sizeof(j->err), "cannot stop the writer's backend");
        return -1;
    }
    int rc = acme_db_exec(tx, "INSERT INTO used_jti(jti, expires) VALUES(?, 1)", "s", "hang-b2");
    snprintf(j->err, sizeof(j->err), "%s", acme_db_error(tx));
    return rc == 1 ? 0 : -1;
}

static void hang_done(void *arg, int rc)
{
    hang_job *j = arg;
    j->rc = rc;
    sem_post(&j->done);
}

static int64_t jti_count(acme_db *db, const char *like)
{
    acme_q q;
    int64_t n = -1;
    if (acme_db_query(db, &q, "SELECT COUNT(*) FROM used_jti WHERE jti LIKE ?", "s", like) == 0 && acme_q_next(&q) == 1)
        n = acme_q_int(&q, 0);
    acme_q_end(&q);
    return n;
}

static void test_pg_hang(void)
{
    acme_cfg cfg = {.backend = ACME_BACKEND_POSTGRESQL, .conninfo = pg_conninfo, .pg_timeout_ms = 300};
    acme_store *s = NULL;
    char err[256] = "";
    if (acme_store_open(&cfg, &s, err, sizeof(err)) != 0)
        fprintf(stderr, "%s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    acme_db *db = acme_db_open_reader(s, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);

    /* a reader: the call fails at the deadline with the setting's name;
     * the next call reconnects (the postmaster still answers) and
     * prepares its statement again */
    CU_ASSERT_EQUAL_FATAL(jti_count(db, "hang-%"), 0);
    CU_ASSERT_EQUAL_FATAL(cf_freeze(backend_pid(db)), 0);
    CU_ASSERT_EQUAL(jti_count(db, "hang-%"), -1);
    if (!strstr(acme_db_error(db), hang_want)) {
        fprintf(stderr, "\n  got:  %s\n  want: ...%s\n", acme_db_error(db), hang_want);
        CU_FAIL("the reader's timeout message");
    }
    CU_ASSERT_EQUAL(jti_count(db, "hang-%"), 0);
    cf_thaw_all();

    /* the writer: a group whose second change finds the server hung. Both
     * changes of the group fail (the first one's savepoint was released,
     * but the transaction never commits): nothing of either is kept */
    sem_t gate;
    sem_init(&gate, 0, 0);
    hang_job g = {.gate = &gate}, a = {.jti = "hang-a"}, b = {.jti = "hang-b", .freeze = true};
    sem_init(&g.done, 0, 0);
    sem_init(&a.done, 0, 0);
    sem_init(&b.done, 0, 0);
    CU_ASSERT_EQUAL_FATAL(acme_store_submit(s, hang_fn, hang_done, &g), 0);
    CU_ASSERT_EQUAL_FATAL(acme_store_submit(s, hang_fn, hang_done, &a), 0);
    CU_ASSERT_EQUAL_FATAL(acme_store_submit(s, hang_fn, hang_done, &b), 0);
    sem_post(&gate);
    sem_wait(&g.done);
    sem_wait(&a.done);
    sem_wait(&b.done);
    cf_thaw_all();
    CU_ASSERT_EQUAL(a.rc, -1);
    CU_ASSERT_EQUAL(b.rc, -1);
    if (!strstr(b.err, hang_want)) {
        fprintf(stderr, "\n  got:  %s\n  want: ...%s\n", b.err, hang_want);
        CU_FAIL("the writer's timeout message");
    }
    CU_ASSERT_EQUAL(jti_count(db, "hang-%"), 0);
    /* the next change reconnects the writer */
    hang_job c = {.jti = "hang-c"};
    sem_init(&c.done, 0, 0);
    CU_ASSERT_EQUAL_FATAL(acme_store_submit(s, hang_fn, hang_done, &c), 0);
    sem_wait(&c.done);
    CU_ASSERT_EQUAL(c.rc, 0);
    CU_ASSERT_EQUAL(jti_count(db, "hang-%"), 1);
    CU_ASSERT_EQUAL(jti_count(db, "hang-c"), 1);
    acme_store_stats st;
    acme_store_get_stats(s, &st);
    CU_ASSERT_TRUE(st.failed_commits >= 1);
    acme_db_close(db);
    acme_store_close(s);
    sem_destroy(&gate);

    /* opening against a stopped postmaster (it accepts, never answers):
     * refused at the deadline, start-up fails with the setting's name */
    const char *dir = getenv("CF_TEST_PG_DIR");
    if (!dir || !*dir) {
        fprintf(stderr, "\n    (CF_TEST_PG_DIR not set: opening against a stopped server not tried) ");
        return;
    }
    char path[600];
    snprintf(path, sizeof(path), "%.500s/data/postmaster.pid", dir);
    FILE *f = fopen(path, "r");
    long pm = -1;
    if (f) {
        if (fscanf(f, "%ld", &pm) != 1)
            pm = -1;
        fclose(f);
    }
    CU_ASSERT_FATAL(pm > 0);
    CU_ASSERT_EQUAL_FATAL(cf_freeze((pid_t)pm), 0);
    s = NULL;
    err[0] = '\0';
    int rc = acme_store_open(&cfg, &s, err, sizeof(err));
    cf_thaw_all();
    CU_ASSERT_EQUAL(rc, -1);
    if (rc == 0)
        acme_store_close(s);
    static const char open_want[] =
        "state database (postgresql): no answer from the server within 300 ms (state.pg_timeout_ms)";
    if (strcmp(err, open_want) != 0) {
        fprintf(stderr, "\n  got:  %s\n  want: %s\n", err, open_want);
        CU_FAIL("the open timeout's message");
    }
}

/* ------------------------------------------------------------ identifiers */

static void test_dns_names(void)
{
    static const struct {
        const char *in, *out; /* out NULL: refused */
        bool wildcard;
    } cases[] = {
        {"Example.COM", "example.com", false},
        {"a.b.c.example.org", "a.b.c.example.org", false},
        {"*.example.org", "*.example.org", true},
        {"xn--nxasmq6b.example", "xn--nxasmq6b.example", false},
        {"a-b.example", "a-b.example", false},
        {"localhost", NULL, false},
        {"example.com.", NULL, false},
        {".example.com", NULL, false},
        {"a..example.com", NULL, false},
        {"-a.example.com", NULL, false},
        {"a-.example.com", NULL, false},
        {"a_b.example.com", NULL, false},
        {"10.0.0.1", NULL, false},
        {"host.123", NULL, false},
        {"*.*.example.com", NULL, true},
        {"a.*.example.com", NULL, false},
        {"ex ample.com", NULL, false},
        {"", NULL, false},
    };
    for (size_t i = 0; i < CF_ARRAY_LEN(cases); i++) {
        char v[300];
        bool w = false;
        snprintf(v, sizeof(v), "%s", cases[i].in);
        int ok = acme_dns_name_ok(v, &w);
        if (ok != (cases[i].out != NULL))
            fprintf(stderr, "dns case '%s': %d\n", cases[i].in, ok);
        CU_ASSERT_EQUAL(ok, cases[i].out != NULL);
        if (cases[i].out && ok) {
            CU_ASSERT_STRING_EQUAL(v, cases[i].out);
            CU_ASSERT_EQUAL(w, cases[i].wildcard);
        }
    }
    char label64[100], long_name[300];
    memset(label64, 'a', 64);
    snprintf(label64 + 64, sizeof(label64) - 64, ".example");
    bool w;
    CU_ASSERT_EQUAL(acme_dns_name_ok(label64, &w), 0);
    memset(long_name, 0, sizeof(long_name));
    for (int i = 0; i < 50; i++)
        strcat(long_name, "abcd.");
    strcat(long_name, "com"); /* 253 octets: accepted; one more: refused */
    CU_ASSERT_EQUAL(strlen(long_name), 253);
    CU_ASSERT_EQUAL(acme_dns_name_ok(long_name, &w), 1);
    char longer[sizeof(long_name) + 1];
    snprintf(longer, sizeof(longer), "a%s", long_name);
    CU_ASSERT_EQUAL(acme_dns_name_ok(longer, &w), 0);
}

static void test_ari_ids(void)
{
    CU_ASSERT_TRUE(acme_ari_id_ok("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"));
    CU_ASSERT_FALSE(acme_ari_id_ok("aYhba4dGQEHhs3uEe6CuLN4ByNQ"));
    CU_ASSERT_FALSE(acme_ari_id_ok(".AIdlQyE"));
    CU_ASSERT_FALSE(acme_ari_id_ok("aYhb."));
    CU_ASSERT_FALSE(acme_ari_id_ok("a.b.c"));
    CU_ASSERT_FALSE(acme_ari_id_ok("a+b.AIdl"));
    CU_ASSERT_FALSE(acme_ari_id_ok("aYhb=.AIdl"));
}

/* A certificate made with OpenSSL: serial 0x00d2, AKI keyid 01 02 03 04. */
static uint8_t *make_cert(size_t *len, bool with_aki)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 0xd2);
    X509_set_version(x, 2);
    ASN1_TIME_set(X509_getm_notBefore(x), 1700000000);
    ASN1_TIME_set(X509_getm_notAfter(x), 1700086400);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)"t", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_set_pubkey(x, k);
    if (with_aki) {
        AUTHORITY_KEYID *aki = AUTHORITY_KEYID_new();
        aki->keyid = ASN1_OCTET_STRING_new();
        ASN1_OCTET_STRING_set(aki->keyid, (const unsigned char *)"\x01\x02\x03\x04", 4);
        X509_add1_ext_i2d(x, NID_authority_key_identifier, aki, 0, 0);
        AUTHORITY_KEYID_free(aki);
    }
    X509_sign(x, k, EVP_sha256());
    unsigned char *der = NULL;
    int l = i2d_X509(x, &der);
    X509_free(x);
    EVP_PKEY_free(k);
    *len = (size_t)l;
    return der;
}

static void test_cert_facts(void)
{
    size_t len;
    uint8_t *der = make_cert(&len, true);
    acme_cert_facts f;
    CU_ASSERT_EQUAL_FATAL(acme_cert_facts_read(der, len, &f), 0);
    CU_ASSERT_EQUAL(f.not_before, 1700000000);
    CU_ASSERT_EQUAL(f.not_after, 1700086400);
    CU_ASSERT_EQUAL(f.serial_len, 2);
    CU_ASSERT_EQUAL(memcmp(f.serial, "\x00\xd2", 2), 0);
    CU_ASSERT_EQUAL(f.aki_len, 4);
    char id[100];
    CU_ASSERT_EQUAL(acme_ari_id_of(&f, id, sizeof(id)), 0);
    CU_ASSERT_STRING_EQUAL(id, "AQIDBA.ANI");
    CU_ASSERT_TRUE(acme_ari_id_ok(id));
    CU_ASSERT_EQUAL(acme_ari_id_of(&f, id, 8), -1);
    /* truncated, trailing garbage, no AKI */
    CU_ASSERT_EQUAL(acme_cert_facts_read(der, len - 1, &f), -1);
    uint8_t *more = malloc(len + 1);
    memcpy(more, der, len);
    more[len] = 0;
    CU_ASSERT_EQUAL(acme_cert_facts_read(more, len + 1, &f), -1);
    free(more);
    OPENSSL_free(der);
    der = make_cert(&len, false);
    CU_ASSERT_EQUAL(acme_cert_facts_read(der, len, &f), -1);
    OPENSSL_free(der);
}

/* A CSR with SAN entries (type:value, "DNS:" or "URI:") and an optional CN. */
static uint8_t *make_csr(const char *cn, const char *san, size_t *len)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509_REQ *r = X509_REQ_new();
    X509_REQ_set_pubkey(r, k);
    if (cn)
        X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(r), "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
    if (san) {
        STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
        sk_X509_EXTENSION_push(exts, e);
        X509_REQ_add_extensions(r, exts);
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    }
    X509_REQ_sign(r, k, EVP_sha256());
    unsigned char *der = NULL;
    *len = (size_t)i2d_X509_REQ(r, &der);
    X509_REQ_free(r);
    EVP_PKEY_free(k);
    return der;
}

static void test_csr_names(void)
{
    char names[ACME_CSR_MAX_NAMES][ACME_MAX_DNS_NAME + 1], why[200];
    unsigned n;
    size_t len;
    uint8_t *der = make_csr("A.Example.Test", "DNS:a.example.test,DNS:B.example.test", &len);
    CU_ASSERT_EQUAL(acme_csr_names(der, len, names, ACME_CSR_MAX_NAMES, &n, why, sizeof(why)), ACME_P_NONE);
    CU_ASSERT_EQUAL(n, 3);
    CU_ASSERT_STRING_EQUAL(names[0], "a.example.test");
    CU_ASSERT_STRING_EQUAL(names[1], "b.example.test");
    CU_ASSERT_STRING_EQUAL(names[2], "a.example.test");
    const char *order[] = {"a.example.test", "b.example.test"};
    CU_ASSERT_TRUE(acme_names_match(names, n, order, 2));
    CU_ASSERT_FALSE(acme_names_match(names, n, order, 1));
    const char *more[] = {"a.example.test", "b.example.test", "c.example.test"};
    CU_ASSERT_FALSE(acme_names_match(names, n, more, 3));
    CU_ASSERT_FALSE(acme_names_match(names, n, more, 0));
    /* too many for the buffer */
    CU_ASSERT_EQUAL(acme_csr_names(der, len, names, 2, &n, why, sizeof(why)), ACME_P_BAD_CSR);
    OPENSSL_free(der);
    /* an NF instance ID (urn:uuid:, TS 33.310) is a name; it comes back lower-case */
    der = make_csr(NULL, "DNS:a.example.test,URI:urn:uuid:6F1C2A6E-8C0E-4E0B-9A7E-2F1D3C4B5A69", &len);
    CU_ASSERT_EQUAL(acme_csr_names(der, len, names, ACME_CSR_MAX_NAMES, &n, why, sizeof(why)), ACME_P_NONE);
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT_STRING_EQUAL(names[1], "urn:uuid:6f1c2a6e-8c0e-4e0b-9a7e-2f1d3c4b5a69");
    OPENSSL_free(der);
    /* any other URI: refused */
    der = make_csr(NULL, "DNS:a.example.test,URI:https://a.example.test/", &len);
    CU_ASSERT_EQUAL(acme_csr_names(der, len, names, ACME_CSR_MAX_NAMES, &n, why, sizeof(why)), ACME_P_BAD_CSR);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "neither a DNS name"));
    OPENSSL_free(der);
    /* CN only */
    der = make_csr("only.example.test", NULL, &len);
    CU_ASSERT_EQUAL(acme_csr_names(der, len, names, ACME_CSR_MAX_NAMES, &n, why, sizeof(why)), ACME_P_NONE);
    CU_ASSERT_EQUAL(n, 1);
    OPENSSL_free(der);
    /* not a CSR */
    static const uint8_t junk[] = {0x30, 0x03, 0x02, 0x01, 0x00};
    CU_ASSERT_EQUAL(acme_csr_names(junk, sizeof(junk), names, ACME_CSR_MAX_NAMES, &n, why, sizeof(why)), ACME_P_BAD_CSR);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "malformed"));
}

static void test_nf_identifiers(void)
{
    char u[64];
    snprintf(u, sizeof(u), "6F1C2A6E-8C0E-4E0B-9A7E-2F1D3C4B5A69");
    CU_ASSERT_TRUE(acme_uuid_ok(u));
    CU_ASSERT_STRING_EQUAL(u, "6f1c2a6e-8c0e-4e0b-9a7e-2f1d3c4b5a69");
    static const char *const bad[] = {"6f1c2a6e8c0e4e0b9a7e2f1d3c4b5a69", "6f1c2a6e-8c0e-4e0b-9a7e-2f1d3c4b5a6",
                                      "6f1c2a6e-8c0e-4e0b-9a7e-2f1d3c4b5a69a", "6f1c2a6e-8c0e-4e0b-9a7e_2f1d3c4b5a69",
                                      "gf1c2a6e-8c0e-4e0b-9a7e-2f1d3c4b5a69", ""};
    for (size_t i = 0; i < CF_ARRAY_LEN(bad); i++) {
        snprintf(u, sizeof(u), "%s", bad[i]);
        CU_ASSERT_FALSE(acme_uuid_ok(u));
    }
    CU_ASSERT_TRUE(acme_nftype_ok("AMF"));
    CU_ASSERT_TRUE(acme_nftype_ok("custom-nf.v2"));
    CU_ASSERT_FALSE(acme_nftype_ok(""));
    CU_ASSERT_FALSE(acme_nftype_ok("A M F"));
    CU_ASSERT_FALSE(acme_nftype_ok("123456789012345678901234567890123"));
    /* the fingerprint of the RFC 7638 §3.1 example thumbprint */
    char fp[128];
    CU_ASSERT_EQUAL(acme_tkauth_fingerprint("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs", fp, sizeof(fp)), 0);
    CU_ASSERT_STRING_EQUAL(fp, "SHA256 37:36:CB:B1:78:7C:B8:30:9C:77:EE:8C:37:05:C5:E1:6F:FB:9E:85:97:15:90:1F:1E:4C:59:B1:"
                               "11:82:F5:7B");
    CU_ASSERT_EQUAL(acme_tkauth_fingerprint("short", fp, sizeof(fp)), -1);
}

static void test_time_and_ids(void)
{
    int64_t t;
    CU_ASSERT_EQUAL(acme_time_parse("2026-12-03T08:00:00Z", &t), 0);
    CU_ASSERT_EQUAL(t, 1796284800);
    CU_ASSERT_EQUAL(acme_time_parse("2026-12-03T10:00:00.123+02:00", &t), 0);
    CU_ASSERT_EQUAL(t, 1796284800);
    CU_ASSERT_EQUAL(acme_time_parse("2026-12-03", &t), -1);
    CU_ASSERT_EQUAL(acme_time_parse("2026-12-03T08:00:00", &t), -1);
    CU_ASSERT_EQUAL(acme_time_parse("2026-13-03T08:00:00Z", &t), -1);
    CU_ASSERT_EQUAL(acme_time_parse("2026-12-03T08:00:00Zjunk", &t), -1);
    char buf[32];
    acme_time_rfc3339(1796284800, buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(buf, "2026-12-03T08:00:00Z");
    for (int i = 0; i < 2000; i++) {
        char id[ACME_ID_LEN + 1];
        CU_ASSERT_EQUAL_FATAL(acme_random_id(id, 16), 0);
        CU_ASSERT_EQUAL(strlen(id), ACME_ID_LEN);
        CU_ASSERT_TRUE(id[0] != '-' && id[0] != '_');
    }
    CU_ASSERT_STRING_EQUAL(acme_problem_name(ACME_P_BAD_NONCE), "badNonce");
    CU_ASSERT_EQUAL(acme_problem_http_status(ACME_P_RATE_LIMITED), 429);
    CU_ASSERT_EQUAL(acme_problem_http_status(ACME_P_UNAUTHORIZED), 403);
    CU_ASSERT_EQUAL(acme_status_from_name("processing"), ACME_S_PROCESSING);
    CU_ASSERT_EQUAL(acme_status_from_name("bogus"), -1);
}

int main(int argc, char **argv)
{
    static const cf_test tests[] = {
        {"config: defaults and accepted forms", test_config_defaults},
        {"config: each refusal names its line and setting", test_config_refusals},
        {"config: file errors carry FILE:LINE", test_config_file},
        {"nonces: once, forged, foreign, every prefix length", test_nonces},
        {"nonces: older than the window", test_nonce_window},
        {"rate limits", test_ratelimit},
        {"store: group commit from 8 threads, refused changes undone", test_store_group_commit},
        {"store: open errors", test_store_errors},
        {"DNS identifiers", test_dns_names},
        {"ARI certificate ids", test_ari_ids},
        {"certificate facts", test_cert_facts},
        {"CSR names at finalize", test_csr_names},
        {"NF instance IDs, NF types, token fingerprints", test_nf_identifiers},
        {"times, ids, names", test_time_and_ids},
    };
    static const cf_test pg_tests[] = {
        {"store on PostgreSQL: group commit, bytea, NULL, a second front end", test_pg_group_commit},
        {"store on PostgreSQL: a hung backend fails the call at pg_timeout_ms, the next reconnects", test_pg_hang},
    };
    static const cf_suite suites[] = {CF_SUITE("acme units", suite_init, suite_clean, tests),
                                      CF_SUITE("acme store on PostgreSQL", pg_init, pg_clean, pg_tests)};
    return CF_TEST_MAIN(argc, argv, suites);
}
