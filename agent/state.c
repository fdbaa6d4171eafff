/* state.c — the agent's schema and registry (state.h). */
#include "agent/state.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/ec.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "acme/jws.h"
#include "hsm/hsm.h"
#include "hsm/hsm_admin.h"

/* Version 1. Times are Unix seconds. The same tables for both backends;
 * only the integer and blob types differ. */
#define AGENT_SCHEMA(INT, BLOB)                                                                                        \
    "CREATE TABLE IF NOT EXISTS agent_meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);"                                      \
    "CREATE TABLE IF NOT EXISTS nfs("                                                                                  \
    "  id TEXT PRIMARY KEY, dns TEXT NOT NULL, account_key " BLOB " NOT NULL, thumbprint TEXT NOT NULL,"              \
    "  account_url TEXT, created " INT " NOT NULL);"                                                                   \
    "CREATE TABLE IF NOT EXISTS enrolments("                                                                           \
    "  id TEXT PRIMARY KEY, nf TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,"                               \
    "  csr " BLOB " NOT NULL, spki TEXT NOT NULL, token TEXT, jti TEXT, replaces TEXT, order_url TEXT,"               \
    "  attempts " INT " NOT NULL DEFAULT 0, next_at " INT " NOT NULL, error TEXT, transient " INT " NOT NULL DEFAULT 0," \
    "  cert TEXT, dns_set TEXT, reported " INT " NOT NULL DEFAULT 0, created " INT " NOT NULL, updated " INT           \
    " NOT NULL);"                                                                                                      \
    "CREATE INDEX IF NOT EXISTS enrolments_nf ON enrolments(nf, spki, created);"                                      \
    "CREATE INDEX IF NOT EXISTS enrolments_status ON enrolments(status);"                                              \
    "CREATE TABLE IF NOT EXISTS certs("                                                                                \
    "  id TEXT PRIMARY KEY, nf TEXT NOT NULL, enrolment TEXT NOT NULL, der " BLOB " NOT NULL, chain TEXT NOT NULL,"   \
    "  spki TEXT NOT NULL, not_before " INT " NOT NULL, not_after " INT " NOT NULL, ari_id TEXT,"                      \
    "  renew_at " INT " NOT NULL, ari_next " INT ", renewal TEXT, created " INT " NOT NULL);"                          \
    "CREATE INDEX IF NOT EXISTS certs_nf ON certs(nf, spki, not_after);"                                               \
    "CREATE INDEX IF NOT EXISTS certs_renew ON certs(renew_at);"                                                       \
    "CREATE TABLE IF NOT EXISTS keys(spki TEXT PRIMARY KEY, nf TEXT NOT NULL);"                                        \
    "CREATE TABLE IF NOT EXISTS used_jti(jti TEXT PRIMARY KEY, nf TEXT NOT NULL, spki TEXT NOT NULL, expires " INT     \
    " NOT NULL);"                                                                                                      \
    "CREATE TABLE IF NOT EXISTS nf_eab(nf TEXT PRIMARY KEY, kid TEXT NOT NULL, hmac_key " BLOB " NOT NULL,"         \
    "  created " INT " NOT NULL);"                                                                                     \
    "CREATE TABLE IF NOT EXISTS nf_star(nf TEXT PRIMARY KEY, lifetime " INT " NOT NULL, order_url TEXT, spki TEXT);" \
    "INSERT INTO agent_meta(k, v) VALUES('schema', '1') ON CONFLICT DO NOTHING;"

static const char schema_sqlite[] = AGENT_SCHEMA("INTEGER", "BLOB");
static const char schema_pg[] = AGENT_SCHEMA("BIGINT", "BYTEA");

/* The SQLite state holds the NFs' account keys and EAB HMAC keys: it is
 * made 0600 when new (SQLite gives its -wal and -shm files the database's
 * mode), and refused when others may read it or it belongs to another
 * user than the one running (root, e.g. `nf add` by the operator, may use
 * the agent's). */
static int state_file_check(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "state.path: cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    int rc = -1;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        snprintf(err, errlen, "state.path: %s is not a regular file", path);
    else if (st.st_mode & 077)
        snprintf(err, errlen,
                 "state.path: %s is readable by others (mode %04o): it holds the NFs' account and EAB keys; chmod 600 it",
                 path, (unsigned)(st.st_mode & 07777));
    else if (st.st_uid != geteuid() && geteuid() != 0)
        snprintf(err, errlen, "state.path: %s belongs to uid %u, not to the agent's user (uid %u); chown it", path,
                 (unsigned)st.st_uid, (unsigned)geteuid());
    else
        rc = 0;
    close(fd);
    return rc;
}

int agent_state_open(const agent_cfg *c, acme_store **out, char *err, size_t errlen)
{
    *out = NULL;
    if (c->backend == ACME_BACKEND_SQLITE && c->db_path && state_file_check(c->db_path, err, errlen) != 0)
        return -1;
    acme_store_spec spec = {.backend = c->backend,
                            .path = c->db_path,
                            .conninfo = c->conninfo,
                            .schema_sqlite = schema_sqlite,
                            .schema_pg = schema_pg,
                            .name = "agent-store",
                            .log_tag = "certforge-agent"};
    return acme_store_open_spec(&spec, out, err, errlen);
}

int64_t agent_now(void)
{
    return (int64_t)time(NULL);
}

int64_t agent_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void agent_nf_clear(agent_nf *nf)
{
    for (unsigned i = 0; i < nf->n_dns; i++)
        free(nf->dns[i]);
    EVP_PKEY_free(nf->key);
    if (nf->eab_key) {
        OPENSSL_cleanse(nf->eab_key, nf->eab_key_len);
        free(nf->eab_key);
    }
    memset(nf, 0, sizeof(*nf));
}

int agent_nf_load(acme_db *db, const char *id, bool with_key, agent_nf *out)
{
    memset(out, 0, sizeof(*out));
    acme_q q;
    if (acme_db_query(db, &q,
                      "SELECT n.dns, n.account_key, n.thumbprint, n.account_url, e.kid, e.hmac_key, s.lifetime, "
                      "s.order_url, s.spki FROM nfs n LEFT JOIN nf_eab e ON e.nf = n.id "
                      "LEFT JOIN nf_star s ON s.nf = n.id WHERE n.id = ?",
                      "s", id) != 0)
        return -1;
    int r = acme_q_next(&q);
    if (r != 1) {
        acme_q_end(&q);
        return r;
    }
    int rc = -1;
    snprintf(out->id, sizeof(out->id), "%s", id);
    json_t *dns = json_loads(acme_q_text(&q, 0) ? acme_q_text(&q, 0) : "", 0, NULL);
    for (size_t i = 0; i < json_array_size(dns) && out->n_dns < AGENT_MAX_NF_DNS; i++) {
        const char *v = json_string_value(json_array_get(dns, i));
        if (v && !(out->dns[out->n_dns++] = strdup(v)))
            goto out;
    }
    snprintf(out->thumb, sizeof(out->thumb), "%s", acme_q_text(&q, 2) ? acme_q_text(&q, 2) : "");
    snprintf(out->account_url, sizeof(out->account_url), "%s", acme_q_text(&q, 3) ? acme_q_text(&q, 3) : "");
    snprintf(out->eab_kid, sizeof(out->eab_kid), "%s", acme_q_text(&q, 4) ? acme_q_text(&q, 4) : "");
    out->star_lifetime = acme_q_int(&q, 6);
    snprintf(out->star_order, sizeof(out->star_order), "%s", acme_q_text(&q, 7) ? acme_q_text(&q, 7) : "");
    snprintf(out->star_spki, sizeof(out->star_spki), "%s", acme_q_text(&q, 8) ? acme_q_text(&q, 8) : "");
    if (with_key && out->eab_kid[0]) {
        size_t el = 0;
        const unsigned char *e = acme_q_blob(&q, 5, &el);
        if (!e || el < 32 || !(out->eab_key = malloc(el)))
            goto out;
        memcpy(out->eab_key, e, el);
        out->eab_key_len = el;
    }
    if (with_key) {
        size_t kl = 0;
        const unsigned char *k = acme_q_blob(&q, 1, &kl);
        if (k && kl > 7 && kl < sizeof(out->key_uri) && memcmp(k, "pkcs11:", 7) == 0) {
            /* a token key: the caller opens it (client.c) */
            memcpy(out->key_uri, k, kl);
            out->key_uri[kl] = '\0';
        } else if (!k || !(out->key = d2i_AutoPrivateKey(NULL, &k, (long)kl))) {
            goto out;
        }
    }
    rc = 1;
out:
    json_decref(dns);
    acme_q_end(&q);
    if (rc != 1)
        agent_nf_clear(out);
    return rc;
}

typedef struct nf_add {
    const char *id;
    char *dns_json;
    const uint8_t *key;
    size_t key_len;
    const char *thumb;
    const char *eab_kid;
    const uint8_t *eab_key;
    size_t eab_key_len;
    int64_t star_lifetime;
    int64_t now;
    int existed;
    char thumb_kept[44];
} nf_add;

static int tx_nf_add(acme_db *tx, void *arg)
{
    nf_add *a = arg;
    acme_q q;
    if (acme_db_query(tx, &q, "SELECT thumbprint FROM nfs WHERE id = ?", "s", a->id) != 0)
        return -1;
    int r = acme_q_next(&q);
    if (r == 1)
        snprintf(a->thumb_kept, sizeof(a->thumb_kept), "%s", acme_q_text(&q, 0));
    acme_q_end(&q);
    if (r < 0)
        return -1;
    if (r == 1) {
        /* the account key stays: a token already issued for it keeps working */
        a->existed = 1;
        if (acme_db_exec(tx, "UPDATE nfs SET dns = ? WHERE id = ?", "ss", a->dns_json, a->id) < 0)
            return -1;
    } else if (acme_db_exec(tx, "INSERT INTO nfs(id, dns, account_key, thumbprint, created) VALUES(?, ?, ?, ?, ?)",
                            "ssbsi", a->id, a->dns_json, a->key, a->key_len, a->thumb, a->now) < 0) {
        return -1;
    }
    /* the NF's own EAB credential replaces the one it had; without one
     * given, the one it has stays */
    if (a->eab_kid && acme_db_exec(tx,
                                   "INSERT INTO nf_eab(nf, kid, hmac_key, created) VALUES(?, ?, ?, ?) ON CONFLICT(nf) "
                                   "DO UPDATE SET kid = excluded.kid, hmac_key = excluded.hmac_key, created = excluded.created",
                                   "ssbi", a->id, a->eab_kid, a->eab_key, a->eab_key_len, a->now) < 0)
        return -1;
    /* a new lifetime applies to the next STAR order (the current one keeps its own) */
    if (a->star_lifetime > 0 &&
        acme_db_exec(tx, "INSERT INTO nf_star(nf, lifetime) VALUES(?, ?) ON CONFLICT(nf) DO UPDATE SET lifetime = "
                         "excluded.lifetime",
                     "si", a->id, a->star_lifetime) < 0)
        return -1;
    return 0;
}

typedef struct nf_rm {
    const char *id;
    int64_t now;
    int found;
} nf_rm;

static int tx_nf_remove(acme_db *tx, void *arg)
{
    nf_rm *r = arg;
    int n = acme_db_exec(tx, "DELETE FROM nfs WHERE id = ?", "s", r->id);
    if (n < 0)
        return -1;
    r->found = n > 0;
    if (acme_db_exec(tx, "DELETE FROM nf_eab WHERE nf = ?", "s", r->id) < 0 ||
        acme_db_exec(tx, "DELETE FROM nf_star WHERE nf = ?", "s", r->id) < 0 ||
        acme_db_exec(tx,
                     "UPDATE enrolments SET status = 'failed', error = 'the NF was removed', transient = 0, "
                     "reported = 1, updated = ? WHERE nf = ? AND status = 'pending'",
                     "is", r->now, r->id) < 0 ||
        acme_db_exec(tx, "UPDATE certs SET renewal = 'removed', ari_next = NULL WHERE nf = ? AND renewal IS NULL", "s",
                     r->id) < 0)
        return -1;
    return 0;
}

int agent_nf_remove(acme_store *s, const char *id, char *err, size_t errlen)
{
    nf_rm r = {.id = id, .now = agent_now()};
    if (acme_store_run(s, tx_nf_remove, &r) != 0) {
        snprintf(err, errlen, "cannot remove NF %s from the state", id);
        return -1;
    }
    return r.found;
}

/* The NF's account key in the token: the one labelled cf-agent-<id> if it
 * is there already (an earlier `nf add` that did not reach the state),
 * else a new EC P-256 pair. *uri and *pub (public half) on success. */
static int token_key(hsm_token *tok, const char *id, char uri[1024], EVP_PKEY **pub, bool *made, char *err,
                     size_t errlen)
{
    char label[64], want[128];
    hsm_err he = {0};
    hsm_key_desc d;
    snprintf(label, sizeof(label), "cf-agent-%s", id);
    snprintf(want, sizeof(want), "pkcs11:object=%s;type=private", label);
    *made = false;
    if (hsm_key_get(tok, want, &d, &he) != 0) {
        if (hsm_key_generate(tok, HSM_GEN_EC_P256, label, NULL, 0, &d, &he) != 0) {
            snprintf(err, errlen, "cannot make the account key in the token: %s (%s)", he.msg, hsm_rv_name(he.rv));
            return -1;
        }
        *made = true;
    }
    snprintf(uri, 1024, "%s", d.uri);
    if (!d.type_known || d.type != CF_KEY_EC_P256) {
        snprintf(err, errlen, "the token's key '%s' is not EC P-256", label);
        return -1;
    }
    if (!(*pub = hsm_key_public(tok, d.uri, &he))) {
        snprintf(err, errlen, "cannot read the public key of '%s': %s", label, he.msg);
        return -1;
    }
    return 0;
}

int agent_nf_add(acme_store *s, hsm_token *tok, const char *id, const char *const *dns, unsigned n_dns,
                 const char *eab_kid, const uint8_t *eab_key, size_t eab_key_len, int64_t star_lifetime,
                 char thumb[44], char *err, size_t errlen)
{
    char uri[1024] = "";
    bool made = false;
    int rc = -1;
    EVP_PKEY *k = NULL;
    unsigned char *der = NULL;
    json_t *arr = json_array(), *jwk = NULL;
    nf_add a = {.id = id, .now = agent_now(), .eab_kid = eab_kid, .eab_key = eab_key, .eab_key_len = eab_key_len,
                .star_lifetime = star_lifetime};
    for (unsigned i = 0; i < n_dns; i++)
        json_array_append_new(arr, json_string(dns[i]));
    if (!(a.dns_json = json_dumps(arr, JSON_COMPACT))) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (tok ? token_key(tok, id, uri, &k, &made, err, errlen) != 0 : !(k = EVP_EC_gen("P-256"))) {
        if (!tok)
            snprintf(err, errlen, "cannot make an ACME account key");
        goto out;
    }
    if (!(jwk = acme_jwk_from_pkey(k)) || acme_jwk_thumbprint(jwk, thumb) != 0) {
        snprintf(err, errlen, "cannot make the account key's thumbprint");
        goto out;
    }
    if (tok) {
        a.key = (const uint8_t *)uri;
        a.key_len = strlen(uri);
    } else {
        int dl = i2d_PrivateKey(k, &der);
        if (dl <= 0) {
            snprintf(err, errlen, "cannot encode the account key");
            goto out;
        }
        a.key = der;
        a.key_len = (size_t)dl;
    }
    a.thumb = thumb;
    if (acme_store_run(s, tx_nf_add, &a) != 0) {
        snprintf(err, errlen, "cannot record NF %s in the state", id);
        goto out;
    }
    if (a.existed)
        memcpy(thumb, a.thumb_kept, 44);
    rc = 0;
out:
    if (made && (rc != 0 || a.existed)) {
        /* the NF keeps the key it has (in the state): the new one goes */
        hsm_err he = {0};
        if (hsm_key_delete(tok, uri, NULL, NULL, &he) != 0 && rc == 0) {
            snprintf(err, errlen, "cannot remove the unused token key %s: %s", uri, he.msg);
            rc = -1;
        }
    }
    if (der) {
        OPENSSL_cleanse(der, (size_t)a.key_len);
        OPENSSL_free(der);
    }
    free(a.dns_json);
    json_decref(arr);
    json_decref(jwk);
    EVP_PKEY_free(k);
    return rc;
}

int agent_fingerprint(const char *thumb, char *out, size_t cap)
{
    uint8_t d[40];
    long n = acme_b64url_decode(thumb, strlen(thumb), d, sizeof(d));
    if (n != 32 || cap < 7 + 32 * 3)
        return -1;
    int k = snprintf(out, cap, "SHA256 ");
    for (int i = 0; i < 32; i++)
        k += snprintf(out + k, cap - (size_t)k, i ? ":%02X" : "%02X", d[i]);
    return 0;
}
